"""A real Oxigraph SPARQL server on loopback for tests: started on a free port, stopped afterwards.

    with oxigraph_server(tmp_path / "db") as base:      # base = "http://127.0.0.1:PORT"
        RemoteStore.at(base) ...

or use the `oxigraph` pytest fixture (import it into the test module).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from filtag_kg.kg.fair import free_port, oxigraph_binary, stop_process, wait_until_up

__all__ = ["free_port", "oxigraph", "oxigraph_binary", "oxigraph_server", "wait_until_up"]


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
