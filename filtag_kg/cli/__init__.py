"""The `filtag-kg` command: a thin layer over the library. Each area registers its commands here."""

from __future__ import annotations

import os
import signal
import sys

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


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM or SIGHUP (`kill`, `timeout`, a closed terminal): stop as Ctrl-C does, so that a load
    or drop is rolled back and a collection checkpointed instead of cut off where it stood."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main() -> None:
    """Console entry point: library errors that name bad input become a clean message and exit 2;
    Ctrl-C, SIGTERM and SIGHUP stop a command the same way (exit 130)."""
    from ..errors import InterruptedAfterCommit, UserError

    # a signal ignored already stays so (`nohup filtag-kg collect …` must outlive its terminal)
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)
                if signal.getsignal(sig) is not signal.SIG_IGN}
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort as e:  # Ctrl-C (click turns KeyboardInterrupt into Abort)
        click.echo(f"Interrupted: {e.__cause__}" if isinstance(e.__cause__, InterruptedAfterCommit) else "Aborted.",
                   err=True)
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
