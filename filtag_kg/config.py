"""Where filtag-kg keeps things: a cache (trained default model, downloads) and a data directory (the store).

Both follow the platform's conventions (platformdirs) and can be moved with environment variables
FILTAG_KG_CACHE and FILTAG_KG_DATA.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import takewhile
from pathlib import Path

import platformdirs

from .errors import UserError


def cache_dir() -> Path:
    return _folder("FILTAG_KG_CACHE", platformdirs.user_cache_dir("filtag-kg"), "cache")


def data_dir() -> Path:
    return _folder("FILTAG_KG_DATA", platformdirs.user_data_dir("filtag-kg"), "data")


def _folder(variable: str, default: str, what: str) -> Path:
    """The folder `variable` names (else `default`), made if missing; one that cannot be made (a file
    is in the way, no permission) is named with the variable that moves it."""
    path = Path(os.environ.get(variable) or default)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot use {path} as the filtag-kg {what} folder ({e.strerror or e}); "
                        f"set {variable} to another folder") from e
    return path


def probe_writable(folder: Path, make: bool = True) -> None:
    """Make `folder` (with `make`) and write a probe file into it, raising OSError if it cannot be
    written: checked before work whose result would be lost (training, a collection, explanations)."""
    if make:
        folder.mkdir(parents=True, exist_ok=True)
    tempfile.NamedTemporaryFile(dir=folder, prefix=".filtag-kg-probe-").close()


@contextmanager
def locked_folder(folder: Path, unwritable: str, busy: str) -> Iterator[None]:
    """Make `folder`, check it can be written and hold an exclusive lock on it for the block, so that
    one process at a time writes there (flock: the lock ends with the process, however it ends).
    `unwritable` (with `{reason}`) and `busy` are the UserErrors when it cannot be written, or when
    another process holds it. When the block fails (bad input found in it, Ctrl-C), the folders made
    here are removed again while still empty: a failed run leaves no empty folder behind, and a folder
    that holds anything (a checkpoint, a user's earlier work) is never removed."""
    made = missing_folders(folder)
    try:
        probe_writable(folder)
        handle = os.open(folder, os.O_RDONLY)
    except OSError as e:
        raise UserError(unwritable.replace("{reason}", str(e.strerror or e))) from e
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(busy) from None  # another process's folder: not ours to remove
        try:
            yield
        except BaseException:
            remove_empty(made)  # under the lock, so no other writer is using it
            raise
    finally:
        os.close(handle)  # and so unlocked


def missing_folders(folder: Path) -> list[Path]:
    """`folder` and those above it that do not exist (what making it makes), deepest first."""
    return list(takewhile(lambda path: not path.exists(), (folder, *folder.absolute().parents)))


def remove_empty(folders: list[Path]) -> None:
    """Remove `folders` (deepest first) as long as each is empty; stop at the first that is not
    (another process may have written there)."""
    for path in folders:
        try:
            path.rmdir()
        except OSError:
            return


def default_store_path() -> Path:
    """The embedded store used when no --store is given."""
    return data_dir() / "store"


def demo_dir() -> Path:
    """Where `filtag-kg demo` writes (stats/, tags/, evaluation/), and where explain/evaluate look by default."""
    return data_dir() / "demo"
