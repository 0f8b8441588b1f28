"""The one exception family for bad user input: the CLI prints the message and exits with 2."""

from __future__ import annotations

from numbers import Integral


class UserError(ValueError):
    """Bad input (a file, option or value); the message names it and says what would work."""


def is_whole(value: object) -> bool:
    """An int (Python or numpy), not a bool nor a float: the whole numbers taken for counts, sizes,
    positions and seeds (True would count as 1; 2.5 failed later, in slicing or in TensorFlow)."""
    return isinstance(value, Integral) and not isinstance(value, bool)


class InterruptedAfterCommit(KeyboardInterrupt):
    """Ctrl-C after the work was committed (during the compaction that follows): the message says what
    is done, so that "Aborted." does not send the user to do it again."""
