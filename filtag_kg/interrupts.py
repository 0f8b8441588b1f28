"""Ctrl-C, SIGTERM and SIGHUP held back while work that must not be cut off runs."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


@contextmanager
def deferred_signals() -> Iterator[Callable[[], None]]:
    """While the block runs, a stop signal whose handler raises (Python's KeyboardInterrupt for Ctrl-C;
    the CLI's for SIGTERM and SIGHUP) is noted, and the check yielded calls that handler (at the latest
    when the block ends). For work a signal must not cut through: a collection's batch (raised inside
    TensorFlow's Python code it lost the batch under way, and twice in about 50 interrupts by hand the
    process aborted, "free(): invalid next size"), a push's commit (the server carries out an update
    whose client went away, so an interrupted push dropped the graphs the server had just committed).
    A second signal raises at once, so that a block that never ends can still be stopped. Outside the
    main thread (where no handler can be set) and for ignored or default signals nothing changes."""
    pending: list[int] = []
    previous: dict[int, Any] = {}

    def note(signum: int, frame: Any) -> None:
        if pending:  # a second one: stop now
            pending.clear()
            previous[signum](signum, frame)
        pending.append(signum)

    def check() -> None:
        if pending:
            signum = pending.pop(0)
            pending.clear()
            previous[signum](signum, None)  # raises (KeyboardInterrupt), as it would have when the signal came

    if threading.current_thread() is threading.main_thread():
        for name in STOP_SIGNALS:
            signum = getattr(signal, name, None)
            handler = signal.getsignal(signum) if signum is not None else None
            if callable(handler):  # not SIG_IGN (nohup), SIG_DFL or one set outside Python (None)
                previous[signum] = handler
                signal.signal(signum, note)
    try:
        yield check
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        check()  # one that came after the last check is not lost
