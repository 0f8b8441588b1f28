"""The one exception family for bad user input: the CLI prints the message and exits with 2."""

from __future__ import annotations

from numbers import Integral
from pathlib import Path


class UserError(ValueError):
    """Bad input (a file, option or value); the message names it and says what would work."""


def is_whole(value: object) -> bool:
    """An int (Python or numpy), not a bool nor a float: the whole numbers taken for counts, sizes,
    positions and seeds (True would count as 1; 2.5 failed later, in slicing or in TensorFlow)."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def where_not_utf8(path: Path, error: UnicodeDecodeError) -> str:
    """Where a text file stops being UTF-8, as "line L, column C has the byte 0xNN", for messages
    that named only the offset in the whole file. `error` is from reading it with utf-8-sig (a
    byte-order mark is not counted in its offsets)."""
    raw = path.read_bytes()
    start = error.start + (3 if raw.startswith(b"\xef\xbb\xbf") else 0)
    before = raw[:start]
    line = before.count(b"\n") + 1 if b"\n" in raw else before.count(b"\r") + 1
    column = start - max(before.rfind(b"\n"), before.rfind(b"\r"))
    return f"line {line}, column {column} has the byte 0x{raw[start]:02x}"


class InterruptedAfterCommit(KeyboardInterrupt):
    """Ctrl-C after the work was committed (during the compaction that follows): the message says what
    is done, so that "Aborted." does not send the user to do it again."""
