"""The one exception family for bad user input: the CLI prints the message and exits with 2."""

from __future__ import annotations


class UserError(ValueError):
    """Bad input (a file, option or value); the message names it and says what would work."""


class InterruptedAfterCommit(KeyboardInterrupt):
    """Ctrl-C after the work was committed (during the compaction that follows): the message says what
    is done, so that "Aborted." does not send the user to do it again."""
