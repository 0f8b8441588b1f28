"""A real Oxigraph SPARQL server on loopback for tests: started on a free port, stopped afterwards.

    with oxigraph_server(tmp_path / "db") as base:      # base = "http://127.0.0.1:PORT"
        RemoteStore.at(base) ...

or use the `oxigraph` pytest fixture (import it into the test module).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests


def oxigraph_binary() -> str:
    """The `oxigraph` server binary of PyPI's `oxigraph` package (beside this Python, or on PATH)."""
    beside = Path(sys.executable).parent / "oxigraph"
    found = str(beside) if beside.is_file() else shutil.which("oxigraph")
    if not found:
        raise RuntimeError("the oxigraph server binary is not installed (pip install oxigraph)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until_up(base: str, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Poll the query endpoint until the server answers (or fail with its error output)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"oxigraph exited with {process.returncode}: {process.stderr.read().decode()[-500:]}")
        try:
            requests.get(f"{base}/query", params={"query": "ASK {}"}, timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError(f"oxigraph did not answer at {base} within {timeout} s")


@pytest.fixture
def oxigraph(tmp_path: Path) -> Iterator[str]:
    """Base URL of a fresh Oxigraph server with an on-disk store in tmp_path."""
    with oxigraph_server(tmp_path / "oxigraph-server") as base:
        yield base
