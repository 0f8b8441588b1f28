"""bench/bench_kg.py: its baseline ways measure what they name."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pyoxigraph as ox
import pytest

from filtag_kg.kg import store as store_module
from filtag_kg.kg.store import Store
from filtag_kg.kg.vocab import FT, RDF

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench_kg  # noqa: E402  (bench/ holds its own modules)

EX = "https://example.org/"


def _store_with_a_run(path: Path, quads: int) -> None:
    """A store holding a tagging run's graph of `quads` quads and a smaller graph beside it."""
    run, other = ox.NamedNode(f"{EX}run-graph"), ox.NamedNode(f"{EX}other")
    filler = [ox.Quad(ox.NamedNode(f"{EX}s{i}"), ox.NamedNode(f"{EX}p"), ox.Literal(str(i)), run)
              for i in range(quads - 1)]
    with Store(path) as store:
        store.load([ox.Quad(ox.NamedNode(f"{EX}run"), ox.NamedNode(f"{RDF}type"), ox.NamedNode(f"{FT}TaggingRun"), run),
                    *filler, ox.Quad(ox.NamedNode(f"{EX}x"), ox.NamedNode(f"{EX}p"), ox.Literal("y"), other)])


def test_drop_removal_baseline_removes_even_a_graph_the_smaller_graphs_rule_would_rebuild(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the run's 40 quads stand for a run between REBUILD_SMALL_MIN_QUADS and REBUILD_MIN_QUADS;
    # monkeypatch restores both sizes, which the benchmark (in a child process of its own) sets
    monkeypatch.setattr(store_module, "REBUILD_MIN_QUADS", store_module.REBUILD_MIN_QUADS)
    monkeypatch.setattr(store_module, "REBUILD_SMALL_MIN_QUADS", 10)
    for way, rebuilt in (("rebuild", True), ("removal", False)):
        path = tmp_path / way
        _store_with_a_run(path, 40)
        inode = os.stat(path).st_ino
        result = bench_kg._timed_drop(str(path), [], [], way)
        assert (result["store_before"], result["store_after"]) == (41, 1)
        assert (os.stat(path).st_ino != inode) == rebuilt, way  # a rebuilt store is a new directory
