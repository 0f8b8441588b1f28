"""A real Oxigraph SPARQL server on loopback for tests: started on a free port, stopped afterwards.

    with oxigraph_server(tmp_path / "db") as base:      # base = "http://127.0.0.1:PORT"
        RemoteStore.at(base) ...

or use the `oxigraph` pytest fixture (import it into the test module).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from filtag_kg.kg.fair import free_port

__all__ = ["oxigraph", "oxigraph_binary", "oxigraph_server", "wait_until_up"]


def oxigraph_binary() -> str:
    """The `oxigraph` server binary of PyPI's `oxigraph` package."""
    beside = Path(sys.executable).parent / "oxigraph"
    found = str(beside) if beside.is_file() else shutil.which("oxigraph")
    if not found:
        raise RuntimeError("serving needs the Oxigraph server binary: pip install oxigraph")
    return found


def wait_until_up(base: str, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Poll an Oxigraph server's query endpoint until it answers (or fail with its error output)."""
    import requests

    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            error = process.stderr.read().decode().strip()[-400:] if process.stderr else ""
            raise RuntimeError(f"oxigraph exited with {process.returncode}: {error}")
        try:
            requests.get(f"{base}/query", params={"query": "ASK {}"}, timeout=1)
            return
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"oxigraph did not answer at {base} within {timeout} s") from None
            time.sleep(0.05)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Terminate a server process, killing it if it does not end within `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def oxigraph_server(location: Path, *extra: str, read_only: bool = False) -> Iterator[str]:
    """Run `oxigraph serve` (or `serve-read-only`) on `location` at 127.0.0.1; yield its base URL."""
    port = free_port()
    command = [oxigraph_binary(), "serve-read-only" if read_only else "serve", "--location", str(location),
               "--bind", f"127.0.0.1:{port}", *extra]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base, process)
        yield base
    finally:
        stop_process(process)


@pytest.fixture
def oxigraph(tmp_path: Path) -> Iterator[str]:
    """Base URL of a fresh Oxigraph server with an on-disk store in tmp_path."""
    with oxigraph_server(tmp_path / "oxigraph-server") as base:
        yield base
