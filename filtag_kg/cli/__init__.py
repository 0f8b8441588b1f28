"""The `filtag-kg` command: a thin layer over the library. Each area registers its commands here."""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import signal
import sys
import tempfile
import threading
from types import FrameType
from typing import Any

import click

from . import core, explain, kg, semantic


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="filtag-kg")
def cli() -> None:
    """Tag the filters of a convolutional network with the classes that activate them (FilTag),
    and publish the tags as a knowledge graph (RDF, SPARQL, WordNet, ConceptNet).

    Start with `filtag-kg demo`: it trains a small CNN on the embedded Animal-Shape data,
    tags its filters and shows what they respond to.
    """


for module in (core, kg, semantic, explain):
    module.register(cli)


# what TensorFlow 2.21 writes to stderr as it is imported, whatever TF_CPP_MIN_LOG_LEVEL says (twice)
TENSORFLOW_IMPORT_NOISE = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
                           "oneDNN custom operations are on")


class _TensorFlowImportFilter(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Drop TensorFlow's import-time info lines from stderr (`TENSORFLOW_IMPORT_NOISE`), keeping every other
    line written while it loads (a GPU library that cannot be loaded, a Python warning): they are written
    by C++ before absl's logging is set up, so no setting hides them, and every command and the demo
    printed them twice. Stderr goes to a temporary file during the import and is written back filtered."""

    def __init__(self) -> None:
        self._loader: Any = None

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once, and out of the way of the search below
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            self._loader, spec.loader = spec.loader, self
        return spec

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as captured:
            os.dup2(captured.fileno(), 2)
            try:
                self._loader.exec_module(module)
            finally:
                module.__loader__ = module.__spec__.loader = self._loader  # resources and source as they were
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                captured.seek(0)
                kept = [line for line in captured.read().decode("utf-8", "replace").splitlines(keepends=True)
                        if not any(noise in line for noise in TENSORFLOW_IMPORT_NOISE)]
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def quiet_tensorflow_import() -> None:
    """Filter TensorFlow's import-time noise from stderr when it is imported later (`_TensorFlowImportFilter`);
    for the command line only, which owns its process and its stderr."""
    if "tensorflow" not in sys.modules and not any(isinstance(f, _TensorFlowImportFilter) for f in sys.meta_path):
        sys.meta_path.insert(0, _TensorFlowImportFilter())


REDELIVER_AFTER = 0.05  # seconds: a signal that came while a finalizer ran is sent again this much later


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM or SIGHUP (`kill`, `timeout`, a closed terminal), and Ctrl-C: stop as Ctrl-C does, so
    that a load or drop is rolled back and a collection checkpointed instead of cut off where it
    stood. One that comes while a finalizer (`__del__`) runs is sent again once it has run: raised
    there, Python prints the exception and ignores it, and the command ran on to its end (a SIGTERM
    during a load's bulk loading, handled in the `__del__` of its progress bar, which runs next)."""
    if _in_finalizer(frame):
        timer = threading.Timer(REDELIVER_AFTER, os.kill, (os.getpid(), signum))
        timer.daemon = True
        timer.start()
        return
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _in_finalizer(frame: FrameType | None) -> bool:
    """Whether `frame` or one of its callers is a `__del__`, whose exceptions Python ignores."""
    while frame is not None:
        if frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def main() -> None:
    """Console entry point: library errors that name bad input become a clean message and exit 2;
    Ctrl-C, SIGTERM and SIGHUP stop a command the same way (exit 130)."""
    from ..errors import InterruptedAfterCommit, UserError

    quiet_tensorflow_import()
    # a signal ignored already stays so (`nohup filtag-kg collect …` must outlive its terminal); Ctrl-C
    # too, unless Python's own handler is not in place (a shell's background job ignores it)
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
                if signal.getsignal(sig) is not signal.SIG_IGN
                and (sig != signal.SIGINT or signal.getsignal(sig) is signal.default_int_handler)}
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort as e:  # Ctrl-C (click turns KeyboardInterrupt into Abort, `from None` in click 8.1.0)
        cause = e.__cause__ or e.__context__
        click.echo(f"Interrupted: {cause}" if isinstance(cause, InterruptedAfterCommit) else "Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except UserError as e:
        click.echo(f"Error: {e}", err=True)
        sys.exit(2)
    except BrokenPipeError:  # output piped into a reader that stopped early (`| head`): end quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except OSError as e:  # a file or folder that cannot be read or written: name it, no traceback
        where = f"{e.filename}: " if e.filename else ""
        click.echo(f"Error: {where}{e.strerror or e}", err=True)
        sys.exit(1)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
