"""Stores: embedded loads replace graphs and are all-or-nothing (also across a killed process); the
remote store against a real Oxigraph server on loopback: push, replace, drop, union queries, failed
pushes that leave the remote graph as it was, retries of transient errors, HTTP basic auth. A store
(embedded or a server) of the format before 2026-12-01 is refused until upgraded, and the upgrade
gives today's export, also when interrupted and run again. Drops (of a graph or a run)
remove quad by quad, or rebuild the store without a graph that outweighs the rest, and are
finished after an interruption."""

from __future__ import annotations

import base64
import datetime as dt
import gc
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pyoxigraph as ox
import pytest
import requests

from filtag_kg.errors import UserError
from filtag_kg.kg.export import export_graphs, export_tags
from filtag_kg.kg import queries, store as store_module
from filtag_kg.kg.store import BY, JOURNAL, STAGING, RemoteError, RemoteStore, Store
from filtag_kg.kg.vocab import sparql_prefixes
from filtag_kg.records import TagSet

from kg_helpers import TAG_COUNT, run_iri
from oxigraph_server import free_port, oxigraph  # noqa: F401  (fixture)


def _count(store: Store | RemoteStore, sparql: str = TAG_COUNT) -> int:
    return int(next(iter(store.query(sparql)))["n"].value)


def _snapshot(store: Store) -> set[ox.Quad]:
    return set(store.quads())


def _failing(quads: Iterator[ox.Quad], after: int) -> Iterator[ox.Quad]:
    for i, q in enumerate(quads):
        if i == after:
            raise RuntimeError("interrupted")
        yield q


# -- embedded ------------------------------------------------------------------------------------

def test_load_query_and_idempotent_reload(tmp_path: Path, run_a: TagSet, run_b: TagSet) -> None:
    store = Store(tmp_path / "store")
    n = store.load(export_tags(run_a))
    assert n == len(store) and _count(store) == len(run_a)
    assert store.graphs() == sorted(export_graphs(run_a), key=lambda g: g.value)
    before = _snapshot(store)
    real, store.oxigraph = store.oxigraph, _FailingBulkLoad(store.oxigraph)
    assert store.load(export_tags(run_a)) == n  # same run again: nothing is written at all
    store.oxigraph = real
    assert _snapshot(store) == before and len(store) == n
    assert not list(store.path.glob("filtag-kg-backup-*"))
    store.load(export_tags(run_b))  # another run on the same network and classes adds only its graph
    assert _count(store) == len(run_a) + len(run_b)
    assert len(store.graphs()) == 4
    store.drop(export_graphs(run_b).run)
    assert _snapshot(store) == before
    store.drop(export_graphs(run_b).run)  # dropping what is not there is fine


class _StopRemoving:
    """Stands in for the pyoxigraph store: removes `after` quads, then is interrupted."""

    def __init__(self, inner: ox.Store, after: int) -> None:
        self.inner, self.left = inner, after

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def remove(self, quad: ox.Quad) -> None:
        if self.left == 0:
            raise KeyboardInterrupt
        self.left -= 1
        self.inner.remove(quad)


def test_an_interrupted_drop_is_finished_before_anything_else(
    tmp_path: Path, run_a: TagSet, run_b: TagSet, cli_ok: Callable[..., str],
) -> None:
    store = Store(tmp_path / "store")
    store.load(export_tags(run_a))
    before = _snapshot(store)
    graph = export_graphs(run_b).run
    for next_step in ("open the store", "load into it"):
        store.load(export_tags(run_b))
        n = store.count(graph)
        real, store.oxigraph = store.oxigraph, _StopRemoving(store.oxigraph, after=100)
        with pytest.raises(KeyboardInterrupt):
            store.drop(graph)
        store.oxigraph = real
        assert store.count(graph) == n - 100 and (store.path / JOURNAL).exists()
        if next_step == "open the store":
            store.close()
            del real
            gc.collect()  # the traceback holds the pyoxigraph store (and its lock) otherwise
            out = cli_ok("drop", graph.value, "--store", tmp_path / "store")  # the same drop again: finished
            assert out == f"dropped {graph.value} (finishing the interrupted drop)\n"
            store = Store(tmp_path / "store")
        else:
            store.load(export_tags(run_a))  # unchanged, so this load writes nothing itself
        assert _snapshot(store) == before and not (store.path / JOURNAL).exists()
    run_graph = export_graphs(run_a).run
    expected = sum(1 for q in export_tags(run_a) if q.graph_name == run_graph)
    assert store.drop(run_graph) == expected and run_graph not in store.graphs()


def test_drop_command_removes_a_run_or_named_graphs(
    tmp_path: Path, run_a: TagSet, run_b: TagSet, cli_ok: Callable[..., str], run_cli: Callable[..., tuple[int, str, str]],
) -> None:
    path = tmp_path / "store"
    tags_graph = export_graphs(run_b).run.value
    beside = ox.NamedNode(tags_graph.removesuffix("tags") + "explanations")  # minted beside the run's graph
    below = ox.NamedNode(tags_graph + "/more")  # not a sibling: stays
    other = ox.NamedNode("https://example.org/other")
    extra = {ox.Quad(ox.NamedNode("https://example.org/s"), ox.NamedNode("https://example.org/p"), ox.Literal("x"), g)
             for g in (beside, below, other)}
    with Store(path) as store:
        store.load(export_tags(run_a))
        before = _snapshot(store)
        store.load(export_tags(run_b))
        store.load(extra)
    for args, message in [((), "name the graphs"), (("https://example.org/nope", other.value), "nothing dropped"),
                          (("--run", "https://example.org/run/nope"), "no tagging run")]:
        code, _, err = run_cli("drop", *args, "--store", path)
        assert code == 2 and message in err
    out = cli_ok("drop", "--run", run_iri(run_b).rsplit("/", 1)[1], "--store", path)  # by its id, as errors --run
    assert [line.split()[1] for line in out.splitlines()] == sorted([tags_graph, beside.value])
    with Store(path, read_only=True) as store:
        assert _snapshot(store) == before | {q for q in extra if q.graph_name != beside}
    assert cli_ok("drop", other.value, below.value, "--store", path).count("(1 statements)") == 2
    with Store(path, read_only=True) as store:
        assert _snapshot(store) == before


@pytest.mark.parametrize("by", ["run", "graphs"])
def test_a_drop_interrupted_and_run_again_drops_all_its_graphs(
    tmp_path: Path, run_a: TagSet, run_b: TagSet, monkeypatch: pytest.MonkeyPatch,
    run_cli: Callable[..., tuple[int, str, str]], by: str,
) -> None:
    """Ctrl-C in `drop --run` while it removes the graph holding the run: the same command again
    finishes the drop. Before, the graphs were dropped by IRI, so .../wordnet came after .../tags and
    stayed, and the command again said 'the store holds no tagging run' (exit 2) with it left. The
    same for graphs named one by one: again, those it had dropped were 'not in' the store (exit 2)."""
    path = tmp_path / "store"
    tags = export_graphs(run_b).run
    beside = [ox.NamedNode(tags.value.removesuffix("tags") + part) for part in ("explanations", "wordnet")]
    args = ["--run", run_iri(run_b)] if by == "run" else [g.value for g in [*beside, tags]]
    with Store(path) as store:
        store.load(export_tags(run_a))
        before = _snapshot(store)
        store.load(export_tags(run_b))
        store.load(ox.Quad(ox.NamedNode("https://example.org/s"), ox.NamedNode("https://example.org/p"),
                           ox.Literal("x"), g) for g in beside)
    remove = Store._remove_graph

    def interrupted(self: Store, g: ox.NamedNode, progress: bool = False) -> tuple[int, bool]:
        if g != tags:
            return remove(self, g, progress)
        for q in list(self.oxigraph.quads_for_pattern(None, None, None, g))[:10]:
            self.oxigraph.remove(q)
        raise KeyboardInterrupt

    monkeypatch.setattr(Store, "_remove_graph", interrupted)
    code, out, _ = run_cli("drop", *args, "--store", path)
    assert code == 130 and out == "".join(f"dropped {g.value} (1 statements)\n" for g in beside)
    monkeypatch.undo()
    gc.collect()
    code, out, err = run_cli("drop", *args, "--store", path)
    assert (code, out) == (0, f"dropped {tags.value} (finishing the interrupted drop)\n"), err
    with Store(path, read_only=True) as store:
        assert _snapshot(store) == before


def _with_extras(path: Path, run_a: TagSet, run_b: TagSet) -> tuple[Store, ox.NamedNode, set[ox.Quad]]:
    """A store holding two runs, a default-graph triple and an empty named graph; returns it, the
    graph of run b and the quads that are not in that graph."""
    store = Store(path)
    store.load(export_tags(run_a))
    store.load(export_tags(run_b))
    store.oxigraph.add_graph(ox.NamedNode("https://example.org/empty"))
    store.oxigraph.add(ox.Quad(ox.NamedNode("https://example.org/s"), ox.NamedNode("https://example.org/p"), ox.Literal("d")))
    graph = export_graphs(run_b).run
    return store, graph, {q for q in store.quads() if q.graph_name != graph}


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p != path)


def test_a_smaller_graph_is_dropped_by_rebuilding_only_when_the_rest_is_smaller_still(
    tmp_path: Path, run_a: TagSet, run_b: TagSet, monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, graph, rest = _with_extras(tmp_path / "store", run_a, run_b)
    n, kept = store.count(graph), len(rest)
    monkeypatch.setattr(store_module, "REBUILD_MIN_QUADS", 10**9)  # the big-graph rule never applies
    monkeypatch.setattr(store_module, "REBUILD_SMALL_MIN_QUADS", n)
    inode = os.stat(store.path).st_ino
    assert kept >= n  # run a's graph and more: the rest outweighs the graph, so removal
    assert store.drop(graph) == n and os.stat(store.path).st_ino == inode and _snapshot(store) == rest
    store.drop(export_graphs(run_a).run)  # now the rest (network, classes, extras) is smaller: rebuilding
    rest = {q for q in store.quads() if q.graph_name != graph}
    store.load(export_tags(run_b))
    assert len(rest) < n
    inode = os.stat(store.path).st_ino
    assert store.drop(graph) == n and os.stat(store.path).st_ino != inode and _snapshot(store) == rest
    monkeypatch.setattr(store_module, "REBUILD_SMALL_MIN_QUADS", n + 1)  # a graph below both sizes: removal
    store.load(export_tags(run_b))
    inode = os.stat(store.path).st_ino
    assert store.drop(graph) == n and os.stat(store.path).st_ino == inode


def test_a_graph_outweighing_the_rest_is_dropped_by_rebuilding_the_store(
    tmp_path: Path, run_a: TagSet, run_b: TagSet, monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, graph, rest = _with_extras(tmp_path / "store", run_a, run_b)
    n, kept = store.count(graph), len(rest)
    monkeypatch.setattr(store_module, "REBUILD_MIN_QUADS", n)
    monkeypatch.setattr(store_module, "REBUILD_MAX_KEPT", kept // n)  # the rest is more than that: removal
    inode = os.stat(store.path).st_ino
    assert store.drop(graph) == n and os.stat(store.path).st_ino == inode
    store.load(export_tags(run_b))
    monkeypatch.setattr(store_module, "REBUILD_MAX_KEPT", kept // n + 1)
    blocker = store.path.with_name(store.path.name + store_module.REBUILDING)
    blocker.write_text("not a directory")  # the copy cannot be written there: removal instead
    assert store.drop(graph) == n and os.stat(store.path).st_ino == inode and _snapshot(store) == rest
    blocker.unlink()
    store.load(export_tags(run_b))
    (store.path / "notes.txt").write_text("a file of the user's, which the swap would take away: removal")
    assert store.drop(graph) == n and os.stat(store.path).st_ino == inode and _snapshot(store) == rest
    (store.path / "notes.txt").unlink()
    store.load(export_tags(run_b))
    assert store.drop(graph) == n and os.stat(store.path).st_ino != inode  # a new directory took its place
    assert _snapshot(store) == rest and ox.NamedNode("https://example.org/empty") in store.graphs()
    assert _siblings(store.path) == [] and not list(store.path.glob("filtag-kg-*"))
    store.load(export_tags(run_b))  # the rebuilt store works as any other
    assert _count(store) == len(run_a) + len(run_b)


def test_the_files_of_a_killed_bulk_load_are_removed(
    tmp_path: Path, run_a: TagSet, run_b: TagSet, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pyoxigraph's bulk loader leaves its bulk-N.sst files in the store directory when the load is
    killed or the disk fills up; they stayed for good and, taken for the user's files, made every
    later drop of a big graph remove it quad by quad instead of rebuilding."""
    path = tmp_path / "store"
    store, graph, rest = _with_extras(path, run_a, run_b)
    store.close()
    left = path / "bulk-259515625222076063814838300784861189567.sst"
    left.write_bytes(b"\0" * 4096)
    monkeypatch.setattr(store_module, "REBUILD_MIN_QUADS", 1)
    with Store(path) as store:
        assert not left.exists()
        inode = os.stat(path).st_ino
        store.drop(graph)
        assert os.stat(path).st_ino != inode and _snapshot(store) == rest


class _FullDisk:
    """A file open for writing on a full disk: writes fail as the kernel's do (ENOSPC, naming no file)."""

    def __init__(self, file: Any) -> None:
        self.file, self.name = file, file.name

    def write(self, _: Any) -> None:
        raise OSError(28, os.strerror(28))

    writelines = write

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> _FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.mark.parametrize("full", [r"filtag-kg-backup-.*\.new\.nt", r"\d+\.nt"])  # beside the store, spooled
def test_a_full_disk_is_named_by_the_file_a_load_could_not_write(
    tmp_path: Path, run_a: TagSet, monkeypatch: pytest.MonkeyPatch, run_cli: Callable[..., tuple[int, str, str]],
    full: str,
) -> None:
    """An error of a write names no file, so a load that filled the disk (seen on a small tmpfs)
    said only 'Error: No space left on device'."""
    path, tags = tmp_path / "store", tmp_path / "tags"
    run_a.save(tags)
    with Store(path) as store:
        store.load(export_tags(run_a, similar_classes=2))
        before = _snapshot(store)
    real = open

    def filling(file: Any, mode: str = "r", **kwargs: Any) -> Any:
        opened = real(file, mode, **kwargs)
        return _FullDisk(opened) if "w" in mode and re.fullmatch(full, Path(file).name) else opened

    monkeypatch.setattr(store_module, "open", filling, raising=False)
    code, _, err = run_cli("load", tags, "--similar-classes", "4", "--store", path)
    written = re.search(r"^Error: (.*): No space left on device\n\Z", err, re.MULTILINE)
    assert code == 1 and written and re.fullmatch(full, Path(written[1]).name), err
    folder = Path(written[1]).parent
    assert folder == path if "backup" in full else folder.name.startswith("filtag-kg-load-")
    with Store(path, read_only=True) as store:
        assert _snapshot(store) == before


def test_a_store_directory_that_cannot_be_renamed_is_not_rebuilt(
    tmp_path: Path, run_a: TagSet, run_b: TagSet, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A store directory that is a mount point (a volume of its own; seen on a tmpfs) cannot be
    renamed: the swap of a rebuild failed ('Device or resource busy') and left the complete copy,
    which every later opening for writing tried to swap in again, failing the same way, so the
    store was never written to again. Now the copy is given up for removal, and a mount point is
    not copied at all."""
    path = tmp_path / "store"
    store, graph, rest = _with_extras(path, run_a, run_b)
    n = store.count(graph)
    monkeypatch.setattr(store_module, "REBUILD_MIN_QUADS", n)
    rename, tried = Path.rename, []

    def busy(self: Path, target: Any) -> Path:
        if self == path.resolve():
            tried.append(self)
            raise OSError(16, os.strerror(16), str(self), str(target))
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", busy)
    inode = os.stat(path).st_ino
    assert store.drop(graph) == n and tried and os.stat(path).st_ino == inode
    assert _snapshot(store) == rest and _siblings(path) == []
    store.load(export_tags(run_b))
    store.close()
    tried.clear()
    monkeypatch.setattr(os.path, "ismount", lambda p: Path(p) == path.resolve())
    with Store(path) as store:
        assert store.drop(graph) == n and not tried and _snapshot(store) == rest and _siblings(path) == []


def test_a_store_is_not_made_in_a_folder_of_other_files(tmp_path: Path) -> None:
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "notes.txt").write_text("my notes")
    with pytest.raises(UserError, match=r"project holds other files \(notes.txt\) and no store; a store needs a folder"):
        Store(tmp_path / "project")
    assert os.listdir(tmp_path / "project") == ["notes.txt"]
    (tmp_path / "empty").mkdir()
    Store(tmp_path / "empty").close()  # an empty folder is fine


def test_a_store_behind_a_symbolic_link_is_rebuilt_where_it_is_with_its_mode(
    tmp_path: Path, run_a: TagSet, run_b: TagSet, monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, graph, rest = _with_extras(tmp_path / "disk" / "store", run_a, run_b)
    store.close()
    (tmp_path / "disk" / "store").chmod(0o2770)  # a store shared by a group keeps its mode
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "disk" / "store")
    store = Store(link)
    monkeypatch.setattr(store_module, "REBUILD_MIN_QUADS", store.count(graph))
    store.drop(graph)
    assert link.is_symlink() and sorted(p.name for p in tmp_path.iterdir()) == ["disk", "link"]
    assert _siblings(tmp_path / "disk" / "store") == [] and _snapshot(store) == rest
    assert (tmp_path / "disk" / "store").stat().st_mode & 0o7777 == 0o2770


def test_a_drop_interrupted_while_rebuilding_is_finished_when_the_store_is_opened(
    tmp_path: Path, run_a: TagSet, run_b: TagSet, monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "store"
    store, graph, rest = _with_extras(path, run_a, run_b)
    swap = store_module._finish_swap

    def crash(_: Path) -> None:
        raise KeyboardInterrupt

    for crashed in ("copying", "before the swap", "between the renames"):
        monkeypatch.setattr(store_module, "REBUILD_MIN_QUADS", store.count(graph))
        if crashed == "copying":
            store._write_journal({"drop": graph.value})
            (path.parent / (path.name + store_module.REBUILDING)).mkdir()  # an incomplete copy
            store.close()
            monkeypatch.setattr(store_module, "REBUILD_MIN_QUADS", 10**9)  # the reopened store drops by removal
        else:
            monkeypatch.setattr(store_module, "_finish_swap", crash)
            with pytest.raises(UserError, match="when the store is next opened"):
                store.drop(graph)
            monkeypatch.setattr(store_module, "_finish_swap", swap)
            assert (path.parent / (path.name + store_module.REBUILDING) / store_module.REBUILT).exists()
            if crashed == "between the renames":
                path.rename(path.parent / (path.name + store_module.RETIRED))
        gc.collect()
        store = Store(path)
        assert _snapshot(store) == rest and _siblings(path) == [] and not list(path.glob("filtag-kg-*")), crashed
        store.load(export_tags(run_b))


def test_a_drop_command_interrupted_during_its_swap_says_so(
    tmp_path: Path, run_a: TagSet, run_b: TagSet, monkeypatch: pytest.MonkeyPatch,
    run_cli: Callable[..., tuple[int, str, str]],
) -> None:
    """Ctrl-C while the rebuilt copy takes the store's place: the command names the pending swap
    (closing the store after it was an AttributeError traceback), and the next opening finishes it."""
    path = tmp_path / "store"
    store, graph, rest = _with_extras(path, run_a, run_b)
    monkeypatch.setattr(store_module, "REBUILD_MIN_QUADS", store.count(graph))
    store.close()
    swap = store_module._finish_swap

    def interrupted(at: Path) -> None:  # only the swap of a complete copy (opening the store swaps too)
        if (store_module._beside(at, store_module.REBUILDING) / store_module.REBUILT).exists():
            raise KeyboardInterrupt
        swap(at)

    monkeypatch.setattr(store_module, "_finish_swap", interrupted)
    code, _, err = run_cli("drop", graph.value, "--store", path)
    assert code == 2 and "it does when the store is next opened" in err and "Traceback" not in err
    monkeypatch.setattr(store_module, "_finish_swap", swap)
    gc.collect()
    with Store(path) as store:
        assert _snapshot(store) == rest and _siblings(path) == []


def test_a_crashed_loads_big_new_graph_is_rolled_back_by_rebuilding(
    tmp_path: Path, run_a: TagSet, run_b: TagSet, monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "store"
    store, graph, rest = _with_extras(path, run_a, run_b)
    store._write_journal({"token": "crashed", "fresh": [graph.value], "replaced": {}})  # as a load left it
    monkeypatch.setattr(store_module, "REBUILD_MIN_QUADS", store.count(graph))
    store.close()
    inode = os.stat(path).st_ino
    with Store(path) as store:
        assert _snapshot(store) == rest and os.stat(path).st_ino != inode
        assert not (path / JOURNAL).exists() and _siblings(path) == []


def test_a_rebuilding_drop_waits_while_the_store_is_read(
    tmp_path: Path, run_a: TagSet, run_b: TagSet, monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "store"
    store, graph, rest = _with_extras(path, run_a, run_b)
    n = store.count(graph)
    monkeypatch.setattr(store_module, "REBUILD_MIN_QUADS", n)
    held, inode = store.oxigraph, os.stat(path).st_ino  # a second reference to the pyoxigraph store ...
    assert store.drop(graph) == n and os.stat(path).st_ino == inode  # ... and the graph is removed instead
    del held
    store.load(export_tags(run_b))
    reading = store.quads()  # keeps RocksDB open after the store object lets go of it
    with pytest.raises(UserError, match="still read from in this process"):
        store.drop(graph)
    assert next(reading) is not None
    del reading, store
    gc.collect()
    with Store(path, read_only=True) as store:  # the old store, untouched until it is opened to write
        assert store.count(graph) > 0
    with Store(path) as store:
        assert _snapshot(store) == rest and _siblings(path) == []


@pytest.mark.parametrize("crash", [None, "copying", "before the swap"])
def test_a_big_graph_that_changes_is_replaced_by_rebuilding_the_store(
    tmp_path: Path, run_a: TagSet, run_b: TagSet, monkeypatch: pytest.MonkeyPatch, crash: str | None,
) -> None:
    def changed() -> Iterator[ox.Quad]:  # run a exported otherwise, and run b, whose graph is new
        yield from export_tags(run_a, similar_classes=4)
        yield from export_tags(run_b)

    path = tmp_path / "kept" / "store"
    store = Store(path)
    store.load(export_tags(run_a, similar_classes=2))
    before = _snapshot(store)
    monkeypatch.setattr(store_module, "REBUILD_MIN_QUADS", store.count(export_graphs(run_a).run))
    reference = Store(tmp_path / "reference")
    reference.load(changed())
    inode, parse = os.stat(path).st_ino, store_module.parse
    if crash == "copying":
        monkeypatch.setattr(store_module, "parse", lambda **kw: _failing(parse(**kw), after=50))
        with pytest.raises(RuntimeError, match="interrupted"):
            store.load(changed())
        assert _snapshot(store) == before and os.stat(path).st_ino == inode
        store.close()
    elif crash == "before the swap":
        monkeypatch.setattr(store_module, "_finish_swap", lambda _: (_ for _ in ()).throw(KeyboardInterrupt()))
        with pytest.raises(UserError, match="when the store is next opened"):
            store.load(changed())
    else:
        assert store.load(changed()) == sum(1 for _ in changed())
        store.close()
    monkeypatch.undo()
    gc.collect()
    with Store(path) as store:
        assert _snapshot(store) == (before if crash == "copying" else _snapshot(reference))
        assert (os.stat(path).st_ino == inode) == (crash == "copying")
        assert _siblings(path) == [] and not list(path.glob("filtag-kg-*"))


def test_compaction_follows_big_loads_or_when_asked(
    tmp_path: Path, run_a: TagSet, run_b: TagSet, monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = Store(tmp_path / "store")
    real, calls = store.oxigraph, []

    class Counting:
        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

        def optimize(self) -> None:
            calls.append(1)
            real.optimize()

    store.oxigraph = Counting()
    n_a = len(list(export_tags(run_a)))
    monkeypatch.setattr(store_module, "OPTIMIZE_MIN_QUADS", n_a)
    store.load(export_tags(run_a))  # as big as the threshold: compacted
    store.load(export_tags(run_b), optimize=False)
    assert len(calls) == 1
    monkeypatch.setattr(store_module, "OPTIMIZE_MIN_QUADS", n_a + 1)
    store.drop(export_graphs(run_a).run)
    store.load(export_tags(run_a))  # below it: not
    assert len(calls) == 1
    store.drop(export_graphs(run_a).run)
    store.load(export_tags(run_a), optimize=True)
    assert len(calls) == 2
    monkeypatch.setattr(store_module, "OPTIMIZE_MIN_QUADS", store.count(export_graphs(run_a).run))
    store.drop(export_graphs(run_a).run)  # a drop as big as the threshold: compacted
    assert len(calls) == 3
    store.load(export_tags(run_a), optimize=False)
    store.oxigraph = real
    assert _count(store) == len(run_a) + len(run_b)


def test_load_into_a_given_graph_replaces_it(tmp_path: Path, run_a: TagSet, run_b: TagSet) -> None:
    store = Store(tmp_path / "store")
    graph = ox.NamedNode("https://example.org/graph/x")
    store.load(export_tags(run_a), graph)
    assert store.graphs() == [graph] and _count(store) == len(run_a)
    store.load(export_tags(run_b), graph)
    assert _count(store) == len(run_b)
    assert store.count(graph) == len(store)


class _Recording:
    """Stands in for the pyoxigraph store: records the quads removed and the lines bulk-loaded from files."""

    def __init__(self, inner: ox.Store) -> None:
        self.inner, self.removed, self.loaded = inner, 0, 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def remove(self, quad: ox.Quad) -> None:
        self.removed += 1
        self.inner.remove(quad)

    def bulk_load(self, **kwargs: Any) -> None:
        self.loaded += sum(1 for _ in open(kwargs["path"], encoding="utf-8"))
        self.inner.bulk_load(**kwargs)


@pytest.mark.parametrize("collide", [False, True])
def test_replacing_a_graph_removes_and_adds_only_what_differs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, collide: bool,
) -> None:
    import builtins

    graph, p = ox.NamedNode("https://example.org/graph/x"), ox.NamedNode("https://example.org/p")
    decimal = ox.NamedNode("http://www.w3.org/2001/XMLSchema#decimal")
    old = [ox.Triple(ox.NamedNode(f"https://example.org/s{i}"), p, ox.Literal(str(i))) for i in range(100)]
    new = old[10:] + [ox.Triple(ox.NamedNode(f"https://example.org/t{i}"), p, ox.Literal("t")) for i in range(5)]
    same_value = ox.Triple(ox.NamedNode("https://example.org/q"), p, ox.Literal("25", datatype=decimal))
    store = Store(tmp_path / "store")
    store.load([*old, same_value], graph)
    if collide:  # one half of every key alike: the other half still tells the triples apart
        monkeypatch.setattr(store_module, "hash", lambda x: 0 if isinstance(x, tuple) else builtins.hash(x),
                            raising=False)
    store.oxigraph = recording = _Recording(store.oxigraph)
    store.load([*new, ox.Triple(same_value.subject, p, ox.Literal("25.0", datatype=decimal))], graph)
    store.oxigraph = recording.inner
    assert recording.removed == 10  # "25.0" is the stored "25": no change
    assert recording.loaded == 5
    reference = Store(tmp_path / "reference")
    reference.load([*new, same_value], graph)
    assert _snapshot(store) == _snapshot(reference)


def test_interrupted_load_leaves_the_store_as_it_was(
    tmp_path: Path, run_a: TagSet, run_b: TagSet, monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = Store(tmp_path / "kept" / "store")
    store.load(export_tags(run_a))
    before, inode = _snapshot(store), os.stat(store.path).st_ino
    with pytest.raises(RuntimeError, match="interrupted"):
        store.load(_failing(export_tags(run_b), after=300))  # new graph
    with pytest.raises(RuntimeError, match="interrupted"):
        store.load(_failing(export_tags(run_b), after=300), export_graphs(run_a).run)  # replacing one
    assert _snapshot(store) == before and os.stat(store.path).st_ino == inode
    monkeypatch.setattr(store_module, "REBUILD_MIN_QUADS", 1)
    monkeypatch.setattr(store_module, "REBUILD_MAX_KEPT", 10**6)

    def interrupted(_: object) -> None:  # after the new graph is in the store, before the old ones change
        raise RuntimeError("interrupted")

    monkeypatch.setattr(store_module._Spool, "files", interrupted)
    with pytest.raises(RuntimeError, match="interrupted"):  # the new graph goes by rebuilding the store
        store.load(export_tags(run_b))
    assert _snapshot(store) == before and os.stat(store.path).st_ino != inode and _siblings(store.path) == []


class _FailingBulkLoad:
    """Stands in for the pyoxigraph store: its first `failures` bulk loads that get data write it, then fail."""

    def __init__(self, inner: ox.Store, failures: int = 1) -> None:
        self.inner, self.failures = inner, failures

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def bulk_load(self, **kwargs: object) -> None:
        self.inner.bulk_load(**kwargs)
        self._fail()

    def bulk_extend(self, quads: Iterable[ox.Quad]) -> None:
        quads = list(quads)
        self.inner.bulk_extend(quads)
        if quads:
            self._fail()

    def _fail(self) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise OSError("disk full")


def test_failure_after_the_data_is_written_rolls_back(tmp_path: Path, run_a: TagSet, run_b: TagSet) -> None:
    store = Store(tmp_path / "store")
    store.load(export_tags(run_a))
    before = _snapshot(store)
    real = store.oxigraph
    for graph in (None, export_graphs(run_a).run):  # fresh graphs, and a graph being replaced
        store.oxigraph = _FailingBulkLoad(real)
        with pytest.raises(OSError, match="disk full"):
            store.load(export_tags(run_b), graph)
        store.oxigraph = real
        assert _snapshot(store) == before and not (store.path / JOURNAL).exists()
    # when putting the replaced graph back fails too, the journal stays and the next opening recovers
    store.oxigraph = _FailingBulkLoad(real, failures=2)
    with pytest.raises(OSError, match="disk full"):
        store.load(export_tags(run_b), export_graphs(run_a).run)
    store.oxigraph = real
    assert (store.path / JOURNAL).exists()
    store.close()
    del real
    gc.collect()  # the tracebacks above hold the pyoxigraph store (and its lock) otherwise
    store = Store(tmp_path / "store")
    assert _snapshot(store) == before and not (store.path / JOURNAL).exists()
    assert not list(store.path.glob("filtag-kg-backup-*"))


def test_a_journal_of_before_2026_12_01_is_still_rolled_back(tmp_path: Path, run_a: TagSet, run_b: TagSet) -> None:
    path = tmp_path / "store"
    graph = export_graphs(run_a).run
    with Store(path) as store:
        store.load(export_tags(run_a))
        before = _snapshot(store)
        backup = path / "filtag-kg-backup-0123-0.nt"
        store.oxigraph.dump(str(tmp_path / "backup.nt"), ox.RdfFormat.N_TRIPLES, from_graph=graph)
        store.load(export_tags(run_b), graph)  # as if a load of then had got this far when it died
        (tmp_path / "backup.nt").rename(backup)
        (path / JOURNAL).write_text(json.dumps({"token": "0123", "fresh": [], "replaced": {graph.value: str(backup)}}))
    with Store(path) as store:
        assert _snapshot(store) == before and not backup.exists()


KILLED_LOAD = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from filtag_kg.kg.store import Store
    from filtag_kg.kg.export import export_tags
    from test_export import synthetic_tags

    class Stop:
        def __init__(self, inner): self.inner = inner
        def __getattr__(self, name): return getattr(self.inner, name)
        def {stop_after}(self, *args, **kwargs):
            self.inner.{stop_after}(*args, **kwargs)
            self.inner.flush()
            print("reached", flush=True)
            time.sleep(120)

    store = Store({path!r})
    store.oxigraph = Stop(store.oxigraph)
    store.load(export_tags(synthetic_tags(seed=3, k=(2,), q=())), {graph})
""")


@pytest.mark.parametrize("stop_after, replace, committed", [
    ("bulk_extend", False, False),  # killed after streaming new graphs in, before the commit
    ("bulk_load", True, False),  # killed after staging a replacement, before the commit
    ("update", True, True),  # killed after the commit, before cleaning up
])
def test_killed_load_is_rolled_back_or_kept_whole(
    tmp_path: Path, run_a: TagSet, run_b: TagSet, stop_after: str, replace: bool, committed: bool,
) -> None:
    path = tmp_path / "store"
    graph = export_graphs(run_a).run
    store = Store(path)
    store.load(export_tags(run_a))
    before = _snapshot(store)
    store.close()
    script = KILLED_LOAD.format(tests=str(Path(__file__).parent), stop_after=stop_after, path=str(path),
                                graph=f"'{graph.value}'" if replace else "None")
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)})
    try:
        line = child.stdout.readline().decode()
        assert line.strip() == "reached", child.stderr.read().decode()[-2000:]
        assert (path / JOURNAL).exists()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    store = Store(path)  # opening recovers
    after = _snapshot(store)
    assert not (path / JOURNAL).exists()
    assert not any(g.value.startswith(STAGING) for g in store.graphs())
    if not committed:
        assert after == before
    else:
        assert store.count(graph) > 0 and _count(store) == len(run_b)  # the new content, whole
        assert after != before


KILLED_SWAP = textwrap.dedent("""
    import pathlib, time
    from filtag_kg.kg import store as store_module

    rename = pathlib.Path.rename

    def stop(self, target):  # the old store moved aside, the rebuilt one not yet in its place
        moved = rename(self, target)
        if str(target).endswith(store_module.RETIRED):
            print("reached", flush=True)
            time.sleep(120)
        return moved

    pathlib.Path.rename = stop
    store_module.REBUILD_MIN_QUADS = 1
    store_module.Store({path!r}).drop({graph!r})
""")


def test_a_rebuild_killed_in_the_middle_of_its_swap_is_finished_when_the_store_is_opened(
    tmp_path: Path, run_a: TagSet,
) -> None:
    path = tmp_path / "kept" / "store"
    graph = export_graphs(run_a).run
    with Store(path) as store:
        store.load(export_tags(run_a))
        rest = {q for q in store.quads() if q.graph_name != graph}
    child = subprocess.Popen([sys.executable, "-c", KILLED_SWAP.format(path=str(path), graph=graph.value)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = child.stdout.readline().decode()
        assert line.strip() == "reached", child.stderr.read().decode()[-2000:]
        assert not path.exists()  # the moment of the kill: no store directory at all
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    for create in (True, False):  # also as commands that read or remove open it (before: 'no store at …')
        with pytest.raises(UserError, match="open it for writing once"):  # reading alone cannot finish the swap
            Store(path, read_only=True, create=create)
    with Store(path, upgrade=True, create=False) as store:  # as `filtag-kg upgrade`, which that error names
        assert _snapshot(store) == rest and _siblings(path) == []


def test_a_damaged_store_is_named_not_a_traceback(tmp_path: Path, run_a: TagSet, run_cli) -> None:
    """RocksDB's 'Corruption: …' (a damaged CURRENT or table file) was a RuntimeError's traceback, exit 1."""
    path = tmp_path / "store"
    with Store(path) as store:
        store.load(export_tags(run_a))
    (path / "CURRENT").write_text("garbage\n")
    for read_only in (False, True):
        with pytest.raises(UserError, match=f"cannot open the store at {path}: Corruption: .*its files are damaged"):
            Store(path, read_only=read_only)
    code, out, err = run_cli("query", "runs", "--store", path)
    assert (code, out) == (2, "") and f"Error: cannot open the store at {path}: Corruption" in err


def test_bad_input_is_a_user_error(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    triple = ox.Triple(ox.NamedNode("http://a"), ox.NamedNode("http://p"), ox.Literal("x"))
    with pytest.raises(UserError, match="named graphs only"):
        store.load([triple])
    with pytest.raises(UserError, match="reserved"):
        store.load([triple], STAGING + "mine")
    with pytest.raises(UserError, match="invalid SPARQL"):
        store.query("SELECT WHERE")
    assert store.load([triple], "http://g") == 1 and len(store) == 1
    store.close()
    reader = Store(tmp_path / "store", read_only=True)
    assert len(reader) == 1


@pytest.mark.parametrize("damage", ["", "{\"dro", "[1, 2]"])
def test_a_damaged_journal_is_named_and_the_store_usable_without_it(tmp_path: Path, damage: str) -> None:
    triple = ox.Triple(ox.NamedNode("http://a"), ox.NamedNode("http://p"), ox.Literal("x"))
    with Store(tmp_path / "store") as store:
        store.load([triple], "http://g")
    journal = tmp_path / "store" / JOURNAL
    journal.write_text(damage)  # empty, cut, or another file: a JSON traceback on every opening before
    with pytest.raises(UserError, match=f"{journal}: the journal of an interrupted load or drop cannot be read"):
        Store(tmp_path / "store")
    journal.unlink()
    with Store(tmp_path / "store") as store:
        assert len(store) == 1


def test_rdflib_graphs_load(tmp_path: Path) -> None:
    import rdflib

    graph = rdflib.Graph()
    graph.add((rdflib.URIRef("http://a"), rdflib.URIRef("http://p"), rdflib.Literal(5)))
    store = Store(tmp_path / "store")
    store.load(graph, "http://g")
    (row,) = store.query("SELECT ?o WHERE { <http://a> <http://p> ?o }")
    assert row["o"] == ox.Literal("5", datatype=ox.NamedNode("http://www.w3.org/2001/XMLSchema#integer"))


def _as_before_layer_summaries(store: Store | RemoteStore) -> None:
    """Link every tag to its selection, as exports did until 2026-12-01."""
    store.update(sparql_prefixes() + """
        DELETE { GRAPH ?g { ?tag ft:inLayerSummary ?part } } INSERT { GRAPH ?g { ?tag ft:inSelection ?selection } }
        WHERE { GRAPH ?g { ?tag ft:inLayerSummary ?part . ?selection ft:hasLayerSummary ?part } }""")


def test_store_of_the_earlier_format_is_refused_until_upgraded(
    tmp_path: Path, run_a: TagSet, run_b: TagSet, run_cli: Callable[..., tuple[int, str, str]],
    cli_ok: Callable[..., str],
) -> None:
    path = tmp_path / "store"
    with Store(path) as store:
        store.load(export_tags(run_a))
        store.load(export_tags(run_b))
        current = _snapshot(store)
        _as_before_layer_summaries(store)
        legacy = _snapshot(store)
    assert len(legacy) == len(current) and len(legacy - current) == len(run_a) + len(run_b)
    for read_only in (False, True):
        with pytest.raises(UserError, match=f"upgrade --store {path}.*2 graph"):
            Store(path, read_only=read_only)
    code, _, err = run_cli("query", "runs", "--store", path)
    assert code == 2 and "filtag-kg upgrade" in err
    with pytest.raises(UserError, match="read-only"):
        Store(path, read_only=True, upgrade=True)
    assert cli_ok("upgrade", "--store", path) == f"{len(run_a) + len(run_b):,} links rewritten in {path}\n"
    with Store(path, read_only=True) as store:
        assert _snapshot(store) == current and _count(store) == len(run_a) + len(run_b)
    assert cli_ok("upgrade", "--store", path) == f"{path} is up to date\n"


def _explained_store(store: Store | RemoteStore) -> None:
    """The hand case's tags and explanations, linked to WordNet-free coarse data: graphs that name their run."""
    from test_explain import hand_case

    from filtag_kg.kg.explanations import export_explanations

    tags, heldout = hand_case()
    tags.manifest["dataset"] = {"name": "toy", "label_space": "toy"}
    store.load(export_tags(tags))
    store.load(export_explanations(tags, heldout))


def _as_before_influence(store: Store | RemoteStore) -> None:
    """Name each run with prov:wasDerivedFrom, as explanations, coarse concepts and ConceptNet graphs did
    until 2026-12-03."""
    store.update("""PREFIX prov: <http://www.w3.org/ns/prov#>
        DELETE { GRAPH ?g { ?x prov:wasInfluencedBy ?run } } INSERT { GRAPH ?g { ?x prov:wasDerivedFrom ?run } }
        WHERE { GRAPH ?g { ?x prov:wasInfluencedBy ?run } }""")


@pytest.mark.parametrize("where", ["embedded", "server"])
def test_runs_named_by_wasDerivedFrom_are_refused_until_upgraded(
    where: str, tmp_path: Path, request: pytest.FixtureRequest, run_cli: Callable[..., tuple[int, str, str]],
    cli_ok: Callable[..., str],
) -> None:
    """prov:wasDerivedFrom runs from entity to entity: naming a run (a prov:Activity) with it made the run
    an entity too, which PROV-O declares disjoint, and a reasoner found the graph inconsistent. A store
    of that format is refused by name and `upgrade` rewrites it to prov:wasInfluencedBy; other
    prov:wasDerivedFrom triples (a user's own data) are no sign of it and stay."""
    every_quad = "SELECT ?s ?p ?o ?g WHERE { GRAPH ?g { ?s ?p ?o } }"
    own = ox.Quad(ox.NamedNode("http://x/b"), ox.NamedNode("http://www.w3.org/ns/prov#wasDerivedFrom"),
                  ox.NamedNode("http://x/a"), ox.NamedNode("http://x/mine"))
    if where == "embedded":
        path = tmp_path / "store"
        target, option = str(path), ("--store", path)
        with Store(path) as store:
            _explained_store(store)
            store.load([own])
            current = _snapshot(store)
            _as_before_influence(store)
            assert len(_snapshot(store) - current) == 2  # the two explanations (the user's triple stays)
        with pytest.raises(UserError, match=rf"before 2026-12-03.*prov:wasDerivedFrom.*upgrade --store {path}` \(1 graph"):
            Store(path)
    else:
        target = request.getfixturevalue("oxigraph")
        option = ("--endpoint", target)
        remote = RemoteStore.at(target)
        _explained_store(remote)
        remote.load([own])
        current = {tuple(row) for row in remote.query(every_quad, union=False)}
        _as_before_influence(remote)
        with pytest.raises(UserError, match="1 graph.*before 2026-12-03.*prov:wasDerivedFrom.*upgrade --endpoint"):
            RemoteStore.at(target).query(TAG_COUNT)
    code, _, err = run_cli("query", "runs", *option)
    assert code == 2 and "filtag-kg upgrade" in err
    assert cli_ok("upgrade", *option) == f"2 links rewritten in {target}\n"
    if where == "embedded":
        with Store(path, read_only=True) as store:
            assert _snapshot(store) == current
    else:
        assert {tuple(row) for row in RemoteStore.at(target).query(every_quad, union=False)} == current
    assert cli_ok("upgrade", *option) == f"{target} is up to date\n"
    # the queries read the run of an explanation again: b's predicted cow ties with dog for the top
    assert [row.split(",")[2] for row in cli_ok("query", "errors-explanation-tied", "--param", "n=1", "--format", "csv",
                                                 *option).splitlines()[1:]] == ["b"]


def test_an_interrupted_upgrade_keeps_whole_layer_summaries_and_is_resumed(
    tmp_path: Path, run_a: TagSet, monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "store"
    with Store(path) as store:
        store.load(export_tags(run_a))
        current = _snapshot(store)
        _as_before_layer_summaries(store)
    summary_sizes = set(Counter(zip(run_a.selection_index.tolist(), run_a.layer_index.tolist())).values())
    updates = []

    def update_then_stop(self: Store, sparql: str) -> None:
        if updates:
            raise KeyboardInterrupt
        updates.append(sparql)
        self.oxigraph.update(sparql)

    with monkeypatch.context() as patch, Store(path, upgrade=True) as store:
        patch.setattr(Store, "update", update_then_stop)
        with pytest.raises(KeyboardInterrupt):
            store.upgrade()
        halfway = _snapshot(store)
    left = len(halfway - current)  # the tags still linked as before
    assert len(run_a) - left in summary_sizes  # the tags of one layer of one selection relinked
    with pytest.raises(UserError, match="upgrade --store"):
        Store(path, read_only=True)
    with Store(path, upgrade=True) as store:
        assert store.upgrade() == left
        assert _snapshot(store) == current


def test_upgrade_reports_a_tag_without_its_layer_summary(tmp_path: Path, run_a: TagSet) -> None:
    with Store(tmp_path / "store") as store:
        store.load(export_tags(run_a))
        _as_before_layer_summaries(store)
        (link,) = list(store.query(sparql_prefixes() + """SELECT ?selection ?part WHERE {
            ?selection ft:hasLayerSummary ?part } LIMIT 1"""))
        store.update(sparql_prefixes() + f"DELETE DATA {{ GRAPH {export_graphs(run_a).run} {{ "
                     f"{link['selection']} ft:hasLayerSummary {link['part']} }} }}")
    with Store(tmp_path / "store", upgrade=True) as store, pytest.raises(UserError, match="has no layer summary"):
        store.upgrade()


# -- remote --------------------------------------------------------------------------------------

def test_push_replace_drop_and_union_queries(
    oxigraph: str, tmp_path: Path, run_a: TagSet, run_b: TagSet, cli_ok: Callable[..., str],  # noqa: F811
) -> None:
    remote = RemoteStore.at(oxigraph, timeout=10)
    assert len(remote) == 0 and remote.graphs() == []
    n = remote.load(export_tags(run_a))
    assert len(remote) == n and _count(remote) == len(run_a)
    assert remote.graphs() == sorted(export_graphs(run_a), key=lambda g: g.value)
    assert remote.load(export_tags(run_a)) == n and len(remote) == n  # idempotent
    remote.load(export_tags(run_b))
    local = Store(tmp_path / "store")
    local.load(export_tags(run_a))
    local.load(export_tags(run_b))
    question = sparql_prefixes() + """SELECT ?label (COUNT(?t) AS ?n) WHERE {
        ?t a ft:Tag ; ft:class/rdfs:label ?label } GROUP BY ?label ORDER BY ?label"""
    assert [tuple(r) for r in remote.query(question)] == [tuple(r) for r in local.query(question)]
    commented = "# the tags per class\n# (a comment that describes the query)\n# of both runs\n" + question
    assert [tuple(r) for r in remote.query(commented)] == [tuple(r) for r in local.query(question)]
    assert bool(remote.query(sparql_prefixes() + "ASK { ?r a ft:TaggingRun }"))
    assert not bool(remote.query(sparql_prefixes() + "ASK { ?r a ft:TaggingRun }", union=False))
    run_graph_b = export_graphs(run_b).run
    expected = f"dropped {run_graph_b.value} ({remote.count(run_graph_b):,} statements)\n"
    assert cli_ok("drop", "--run", run_iri(run_b), "--endpoint", oxigraph) == expected
    assert len(remote) == n
    triple = ox.Triple(ox.NamedNode("http://a"), ox.NamedNode("http://p"), ox.Literal("x"))
    assert remote.load([triple, triple], "http://example.org/twice") == 2  # the server keeps one
    assert remote.count("http://example.org/twice") == 1
    remote.update("CREATE GRAPH <http://example.org/empty>")  # a graph holding no triple is not listed
    assert "http://example.org/empty" not in {g.value for g in remote.graphs()}
    assert "http://example.org/twice" in {g.value for g in remote.graphs()}


def test_a_query_naming_its_dataset_gets_those_graphs_as_from_oxigraphs_server(
    oxigraph: str, tmp_path: Path,  # noqa: F811
) -> None:
    """FROM and FROM NAMED make the dataset, as SPARQL 1.1 and a plain Oxigraph server have it;
    queries without them still see the union of the named graphs."""
    quads = [ox.Quad(ox.NamedNode(f"http://s{i}"), ox.NamedNode("http://p"), ox.Literal(i), ox.NamedNode(f"http://g{i}"))
             for i in (1, 2)]
    local = Store(tmp_path / "store")
    local.load(quads)
    remote = RemoteStore.at(oxigraph, timeout=10)
    remote.load(quads)
    with_dataset = {
        "SELECT ?g ?s FROM <http://g1> WHERE { ?s ?p ?o OPTIONAL { GRAPH ?g { ?s ?p ?o } } }": [(None, "http://s1")],
        "SELECT ?s FROM NAMED <http://g1> WHERE { ?s ?p ?o }": [],  # the default graph is then empty
        "SELECT ?g ?s from named <http://g1> WHERE { GRAPH ?g { ?s ?p ?o } }": [("http://g1", "http://s1")],
    }
    without = {
        "# FROM in a comment\nSELECT ?g ?s ?from WHERE { GRAPH ?g { ?s ?p ?o } BIND('FROM' AS ?from) } ORDER BY ?s":
            [("http://g1", "http://s1", "FROM"), ("http://g2", "http://s2", "FROM")],
        "SELECT ?s WHERE { ?s ?p ?o } ORDER BY ?s": [("http://s1",), ("http://s2",)],  # the union
    }

    def values(rows: Iterable[ox.QuerySolution]) -> list[tuple[str | None, ...]]:
        return [tuple(None if t is None else t.value for t in r) for r in rows]

    for query, rows in {**with_dataset, **without}.items():
        assert values(local.query(query)) == rows, query
        assert values(remote.query(query)) == rows, query
    for query, rows in with_dataset.items():  # the server's own answer, asked without a protocol dataset
        answer = requests.post(f"{oxigraph}/query", data={"query": query},
                               headers={"Accept": "application/sparql-results+json"}, timeout=10)
        assert values(ox.parse_query_results(answer.content, format=ox.QueryResultsFormat.JSON)) == rows, query


def _as_killed_outright(remote: RemoteStore) -> None:
    """Have the push markers on the server name a process of this machine that has ended, as a push
    killed outright (SIGKILL) leaves them: a push this test process interrupted names a live one."""
    ended = subprocess.Popen([sys.executable, "-c", ""])
    ended.wait()
    remote.update(f"DELETE {{ GRAPH ?m {{ ?m <{BY}> ?by }} }} INSERT {{ GRAPH ?m {{ ?m <{BY}> "
                  f"\"{socket.gethostname()} {ended.pid}\" }} }} WHERE {{ GRAPH ?m {{ ?m <{BY}> ?by }} }}")


def test_a_push_killed_before_its_commit_is_named_and_completed_by_pushing_again(
    oxigraph: str, tmp_path: Path, run_a: TagSet, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
    run_cli: Callable[..., tuple[int, str, str]],
) -> None:
    remote = RemoteStore.at(oxigraph, timeout=10)
    graphs = sorted(g.value for g in export_graphs(run_a))
    real_put, puts = RemoteStore._put, []

    def killed_at_the_third_graph(self, *args):  # two graphs, then SIGKILL
        puts.append(args[-1])
        if len(puts) == 3:
            raise KeyboardInterrupt
        real_put(self, *args)

    def killed_push() -> list[str]:
        puts.clear()
        monkeypatch.setattr(RemoteStore, "_put", killed_at_the_third_graph)
        monkeypatch.setattr(RemoteStore, "_drop_quietly", lambda self, graphs: None)  # no chance to clean up
        with pytest.raises(KeyboardInterrupt):
            remote.load(export_tags(run_a))
        monkeypatch.undo()
        _as_killed_outright(remote)
        return remote.unfinished_pushes()

    left = killed_push()
    assert len(left) == 2 and set(left) < set(graphs) and {g.value for g in remote.graphs()} == set(left)
    remote.drop(left[0])
    assert remote.unfinished_pushes() == [left[1]]
    remote.drop(left[1])  # all of it gone: so is the marker
    assert remote.unfinished_pushes() == [] and remote.rows("SELECT ?g WHERE { GRAPH ?g { ?s ?p ?o } }") == []
    assert killed_push() == left
    run_a.save(tmp_path / "tags")
    code, _, err = run_cli("push", tmp_path / "tags", "--endpoint", oxigraph)
    assert code == 0 and f"a push that did not finish (killed, or still running elsewhere) put graph(s) {', '.join(left)}" in err
    assert remote.unfinished_pushes() == [] and sorted(g.value for g in remote.graphs()) == graphs
    assert _count(remote) == len(run_a)
    # killed after uploading a changed graph beside the old one, before the commit: the staging copy stays ...
    staged = f"SELECT DISTINCT ?g WHERE {{ GRAPH ?g {{ ?s ?p ?o }} FILTER STRSTARTS(STR(?g), '{STAGING}') }}"

    def killed(self, *args):
        raise KeyboardInterrupt

    monkeypatch.setattr(RemoteStore, "_commit", killed)
    monkeypatch.setattr(RemoteStore, "_drop_quietly", lambda self, graphs: None)
    with pytest.raises(KeyboardInterrupt):
        remote.load(export_tags(run_a, similar_classes=2))
    monkeypatch.undo()
    _as_killed_outright(remote)
    assert len(remote.rows(staged)) == 2  # the changed run graph's copy and the marker
    remote.load(export_tags(run_a))  # ... until the next push
    assert remote.rows(staged) == [] and _count(remote) == len(run_a)


def test_a_store_served_for_pushes_lists_and_pushes_its_own_graphs_only(
    oxigraph: str, tmp_path: Path, run_a: TagSet, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
    run_cli: Callable[..., tuple[int, str, str]],
) -> None:
    """A push into `serve --allow-updates` keeps its marker and staging copies in the served store
    while it runs, or for good if killed before its commit; the store's graphs (`push`, `drop`, a
    run's graphs) leave them out. Before, `push --store` of that store to another server failed:
    'graph name urn:filtag-kg:staging:…:push is reserved for the store's own use'."""
    from filtag_kg.kg.fair import free_port, serving

    path = tmp_path / "served"
    with Store(path) as db:
        db.load(export_tags(run_a))
    with serving(path, free_port(), allow_updates=True, password="pw") as (url, _):
        def killed(self: RemoteStore, *args: object) -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(RemoteStore, "_commit", killed)
        monkeypatch.setattr(RemoteStore, "_drop_quietly", lambda self, graphs: None)  # killed: no chance to clean up
        with pytest.raises(KeyboardInterrupt):
            RemoteStore.at(url, auth=("filtag-kg", "pw")).load(export_tags(run_a, similar_classes=2))
        monkeypatch.undo()
        with Store(path, read_only=True) as db:
            assert db.graphs() == sorted(export_graphs(run_a), key=lambda g: g.value)
            assert len(list(db.oxigraph.named_graphs())) == len(db.graphs()) + 2  # the marker, the changed graph's copy
        code, out, err = run_cli("push", "--store", path, "--endpoint", oxigraph)
    assert code == 0, err
    assert RemoteStore.at(oxigraph).graphs() == sorted(export_graphs(run_a), key=lambda g: g.value)
    assert _count(RemoteStore.at(oxigraph)) == len(run_a)


@pytest.mark.parametrize("stale", [False, True])
def test_a_running_push_is_left_alone_by_others_or_changes_nothing_once_taken_for_dead(
    oxigraph: str, run_a: TagSet, run_b: TagSet, stale: bool, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    remote = RemoteStore.at(oxigraph, timeout=10)
    remote.load(export_tags(run_a))
    every_quad = "SELECT ?s ?p ?o ?g WHERE { GRAPH ?g { ?s ?p ?o } }"
    before = {tuple(row) for row in remote.rows(every_quad)}
    real_commit = RemoteStore._commit

    def another_client_pushes_first(self, *args):  # with its staging graphs uploaded, before its commit
        monkeypatch.setattr(RemoteStore, "_commit", real_commit)  # the other client's commit
        if stale:  # the other client takes the push for dead (a laptop asleep for an hour, say)
            monkeypatch.setattr("filtag_kg.kg.store.STALE_AFTER", dt.timedelta(0))
        RemoteStore.at(oxigraph).load(export_tags(run_b))
        monkeypatch.undo()
        real_commit(self, *args)

    monkeypatch.setattr(RemoteStore, "_commit", another_client_pushes_first)
    changed = export_tags(run_a, similar_classes=2)
    if stale:
        with pytest.raises(RemoteError, match="another client removed this push.s staging graphs.*replaced nothing"):
            remote.load(changed)
        expected = before
    else:
        remote.load(changed)
        pushed = ox.Store()
        pushed.extend(export_tags(run_a, similar_classes=2))
        expected = {tuple(term.value for term in row) for row in pushed.query(every_quad)}
    b_graphs = {g.value for g in export_graphs(run_b)}  # the network's and classes' graphs among them
    assert {tuple(row) for row in remote.rows(every_quad) if row[3] not in b_graphs} == \
        {row for row in expected if row[3] not in b_graphs}
    assert remote.rows(f"SELECT ?g WHERE {{ GRAPH ?g {{ }} FILTER STRSTARTS(STR(?g), '{STAGING}') }}") == []


def test_remote_store_of_the_earlier_format_is_refused_until_upgraded(
    oxigraph: str, tmp_path: Path, run_a: TagSet, cli_ok: Callable[..., str], run_cli: Callable[..., tuple[int, str, str]],  # noqa: F811
) -> None:
    every_quad = "SELECT ?s ?p ?o ?g WHERE { GRAPH ?g { ?s ?p ?o } }"
    remote = RemoteStore.at(oxigraph)
    remote.load(export_tags(run_a))
    current = {tuple(row) for row in remote.query(every_quad, union=False)}
    _as_before_layer_summaries(remote)
    with pytest.raises(UserError, match="1 graph.*before 2026-12-03.*upgrade --endpoint"):
        RemoteStore.at(oxigraph).query(TAG_COUNT)
    code, _, err = run_cli("query", "runs", "--endpoint", oxigraph)
    assert code == 2 and "filtag-kg upgrade --endpoint" in err
    assert cli_ok("upgrade", "--endpoint", oxigraph) == f"{len(run_a):,} links rewritten in {oxigraph}\n"
    upgraded = RemoteStore.at(oxigraph)
    assert {tuple(row) for row in upgraded.query(every_quad, union=False)} == current
    assert _count(upgraded) == len(run_a)
    assert cli_ok("upgrade", "--endpoint", oxigraph) == f"{oxigraph} is up to date\n"


class _Proxy:
    """A loopback HTTP proxy in front of the Oxigraph server; `policy(method, path, headers)` may
    answer a request itself with (status, body) instead of forwarding it."""

    def __init__(self, upstream: str, policy: Callable[[str, str, dict[str, str]], tuple[int, bytes] | None],
                 by_body: Callable[[bytes], tuple[int, bytes] | None] = lambda body: None) -> None:
        """`by_body(body)` may answer a request by its body, before `policy` is asked."""
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                answer = by_body(body) or policy(self.command, self.path, dict(self.headers))
                if answer is None:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "authorization")}
                    r = requests.request(self.command, upstream + self.path, data=body, headers=headers, timeout=10)
                    status, payload, kind = r.status_code, r.content, r.headers.get("Content-Type", "text/plain")
                else:
                    (status, payload), kind = answer, "text/plain"
                proxy.log.append((self.command, self.path.split("?")[0], status))
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.log: list[tuple[str, str, int]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _like_virtuoso(body: bytes) -> tuple[int, bytes] | None:
    """Answers as Virtuoso 7.2 gives them (seen by hand on 2026-12-03): `GRAPH ?g { }` matched once
    with ?g unbound (a binding without it), and date arithmetic refused (SPARQL 1.1 has none)."""
    text = parse_qs(body.decode()).get("query", parse_qs(body.decode()).get("update", [""]))[0]
    if "GRAPH ?g { }" in text:
        return 200, b'{ "head": { "link": [], "vars": ["g"] }, "results": { "bindings": [ {} ] } }'
    if "dayTimeDuration" in text:
        return 500, b"Virtuoso S0022 Error SQ200: No column PT1HD."
    return None


def test_pushes_and_queries_work_with_a_server_answering_as_virtuoso(
    oxigraph: str, run_a: TagSet, run_b: TagSet,  # noqa: F811
) -> None:
    """A server that lists no graphs for `GRAPH ?g { }` (one row, ?g unbound) and knows no arithmetic of
    dates and durations, as Virtuoso 7.2: every query failed ("its answer breaks off (KeyError: 'g')"),
    and so did every push (its liveness check subtracted "PT1H"^^xsd:dayTimeDuration from NOW())."""
    proxy = _Proxy(oxigraph, lambda *request: None, _like_virtuoso)
    try:
        remote = RemoteStore.at(proxy.url, timeout=10, retries=0)
        remote.load(export_tags(run_a))
        remote.load(export_tags(run_b))
        remote.load(export_tags(run_a, similar_classes=2))  # replaced: staged, marked alive, committed
        direct = RemoteStore.at(oxigraph)
        assert remote.graphs() == direct.graphs() and len(remote.graphs()) > 3
        assert sorted(r["run"] for r in queries.run("runs", remote).values()) == sorted([run_iri(run_a), run_iri(run_b)])
        assert _count(remote) == len(run_a) + len(run_b)
        assert not [entry for entry in proxy.log if entry[2] >= 400]
    finally:
        proxy.close()


@pytest.mark.parametrize("page", [b"<html><body>Welcome to nginx</body></html>", b"{}",
                                  b'{"head": {"vars": ["g"]}, "results": {"bindings": [{"g": 1}]}}'])
def test_an_answer_that_is_not_query_results_is_named(
    page: bytes, run_cli: Callable[..., tuple[int, str, str]],
) -> None:
    """A URL that is no SPARQL endpoint (a web page, a proxy's answer, broken JSON): a message naming
    it, exit 2. Before: 'Error: Expecting value: line 1 column 1 (char 0)' (exit 1), or a KeyError or
    SyntaxError traceback."""
    empty = b'{"head": {"vars": ["g"]}, "results": {"bindings": []}}'
    for what, policy in [
        ("every answer", lambda *_: (200, page)),
        ("SPARQLWrapper's queries", lambda m, p, headers: (  # those of RemoteStore.rows accept only this
            200, empty if headers.get("Accept") == "application/sparql-results+json" else page)),
    ]:
        web = _Proxy("http://127.0.0.1:9", policy)
        try:
            code, _, err = run_cli("query", "runs", "--endpoint", web.url, "--retries", "0")
        finally:
            web.close()
        assert code == 2 and f"query at {web.url}/query: the answer is not SPARQL JSON results" in err, what
        assert "is this a SPARQL query endpoint" in err and repr(page[:20])[:-1] in err, what


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_that_would_turn_a_request_into_a_get_is_named(
    oxigraph: str, run_a: TagSet, status: int,  # noqa: F811
) -> None:
    """An endpoint that moved (e.g. http to https): by 301, 302 or 303 a POST or PUT would follow as a
    GET, and the server's answer to that misled ('406 Not Acceptable: The accept header does not
    provide any accepted format'); a redirect that keeps the method (307, 308) is followed."""

    class Moved(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _handle(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(status)
            self.send_header("Location", oxigraph + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = do_PUT = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), Moved)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    moved = RemoteStore.at(f"http://127.0.0.1:{server.server_address[1]}", retries=0)
    try:
        if status in (307, 308):
            assert moved.load(export_tags(run_a)) == len(RemoteStore.at(oxigraph))
        else:
            with pytest.raises(RemoteError, match=f"{status} .*: the server redirects to {oxigraph}/query; give"):
                moved.load(export_tags(run_a))
            assert len(RemoteStore.at(oxigraph)) == 0
    finally:
        server.shutdown()
        server.server_close()


def test_failed_push_leaves_the_remote_graph_as_it_was(oxigraph: str, run_a: TagSet, run_b: TagSet) -> None:  # noqa: F811
    direct = RemoteStore.at(oxigraph)
    direct.load(export_tags(run_a))
    run_graph = export_graphs(run_a).run
    before = direct.count(run_graph), len(direct)
    puts = []

    def second_put_fails(method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes] | None:
        if method == "PUT":
            puts.append(path)
            if len(puts) == 2:
                return 400, b"refused"
        return None

    # run b's graph is new (PUT in place first), run a's graph gets new content (PUT to staging: fails)
    change = ox.Quad(ox.NamedNode("http://a"), ox.NamedNode("http://p"), ox.Literal("new"), run_graph)
    proxy = _Proxy(oxigraph, second_put_fails)
    try:
        with pytest.raises(RemoteError, match="400"):
            RemoteStore.at(proxy.url, retries=0).load([*export_tags(run_b), change])
    finally:
        proxy.close()
    assert len(puts) == 2
    assert (direct.count(run_graph), len(direct)) == before
    assert export_graphs(run_b).run not in direct.graphs()
    watching = _Proxy(oxigraph, lambda *request: None)
    try:
        RemoteStore.at(watching.url).load(export_tags(run_a))  # what the server holds already
    finally:
        watching.close()
    assert [method for method, *_ in watching.log].count("PUT") == 0
    assert not any(g.value.startswith(STAGING) for g in direct.graphs())
    with pytest.raises(RuntimeError, match="interrupted"):
        direct.load(_failing(export_tags(run_b), after=100), run_graph)
    assert (direct.count(run_graph), len(direct)) == before


@pytest.mark.parametrize("gateway", [False, True])
def test_a_graph_a_push_puts_in_place_after_it_failed_is_named(
    oxigraph: str, run_a: TagSet, gateway: bool,  # noqa: F811
) -> None:
    """A PUT that times out, or that a gateway in front of the server gave up waiting for (504), may
    still be carried out after the failed push dropped its graphs (seen with a 0.4 M-triple graph and
    --timeout 2: the server committed it 10 s later). Its marker now stays, so the graph is named
    by the next push; before, it stayed on the server unnamed."""
    import time

    landed = threading.Event()

    def late(path: str, body: bytes, headers: dict[str, str], wait: float) -> None:
        time.sleep(wait)  # the server writes the graph after the client gave up
        requests.put(oxigraph + path, data=body, headers=headers, timeout=10)
        landed.set()

    class Slow(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            if self.command == "PUT" and not landed.is_set():
                if not gateway:  # no answer before the client's timeout
                    late(self.path, body, headers, 1.0)
                    return
                threading.Thread(target=late, args=(self.path, body, headers, 0.5)).start()
                status, payload = 504, b"gateway timeout"
            else:
                r = requests.request(self.command, oxigraph + self.path, data=body, headers=headers, timeout=10)
                status, payload = r.status_code, r.content
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(RemoteError, match=f"{'504' if gateway else 'Read timed out'}.*may still carry it out"
                           ".*named by the next push as those of an unfinished one") as failed:
            RemoteStore.at(f"http://127.0.0.1:{server.server_address[1]}", timeout=0.3, retries=0).load(
                export_tags(run_a))
        assert str(failed.value).count("carry it out") == 1  # said once (before: twice, and asked for a longer timeout
        # twice when it timed out, and for one where a gateway gave up)
        assert landed.wait(10)
    finally:
        server.shutdown()
        server.server_close()
    direct = RemoteStore.at(oxigraph)
    pushed = [g.value for g in direct.graphs()]
    assert len(pushed) == 1 and direct.unfinished_pushes() == pushed
    direct.load(export_tags(run_a))  # pushing the same again completes it and forgets the marker
    assert direct.unfinished_pushes() == [] and not direct.rows(
        f"SELECT ?g WHERE {{ GRAPH ?g {{ ?s ?p ?o }} FILTER(STRSTARTS(STR(?g), '{STAGING}')) }}")


def test_a_timeout_under_a_second_holds_for_queries_too(oxigraph: str) -> None:  # noqa: F811
    """SPARQLWrapper takes whole seconds: 0.5 became 0, which it takes for no timeout at all, so a
    slow server kept the query waiting (here 3 s); the timeout is now rounded up to a second."""
    import time

    def slow_queries(method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes] | None:
        if headers.get("Accept") != "application/sparql-results+json":  # SPARQLWrapper's, not RemoteStore.rows'
            time.sleep(3)
        return None

    proxy = _Proxy(oxigraph, slow_queries)
    try:
        started = time.monotonic()
        with pytest.raises(RemoteError, match="timed out") as failed:
            RemoteStore.at(proxy.url, timeout=0.5, retries=0).query("ASK {}")
        assert time.monotonic() - started < 2.5
        assert "carry it out" not in str(failed.value)  # a query changes nothing
    finally:
        proxy.close()


def test_a_write_that_times_out_is_not_sent_again(oxigraph: str, run_a: TagSet) -> None:  # noqa: F811
    """An update or upload the server took but did not answer in time is not sent again: it may still
    be carried out, and was carried out once per attempt (a push's commit of 600,000 triples to `serve
    --allow-updates`, 2 minutes each, queued 5 times: the push failed after 9 minutes)."""
    import time

    sent: Counter[str] = Counter()

    def slow(method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes] | None:
        sent[path.split("?")[0]] += 1
        if path.startswith("/update"):
            time.sleep(1.5)
        return None

    RemoteStore.at(oxigraph).load(export_tags(run_a))
    proxy = _Proxy(oxigraph, slow)
    try:
        remote = RemoteStore.at(proxy.url, timeout=0.5, retries=2, backoff=0.01)
        with pytest.raises(RemoteError, match=f"POST {proxy.url}/update: no answer within 0.5 s, not sent again .*"
                           "big graphs need a larger --timeout") as failed:
            remote.drop(export_graphs(run_a).run)
        assert "push" not in str(failed.value)  # before: 'the next push names what it put in place', of a drop
        time.sleep(1.5)
        assert sent["/update"] == 1
    finally:
        proxy.close()


def test_transient_errors_are_retried(oxigraph: str, run_a: TagSet) -> None:  # noqa: F811
    answers = iter([(503, b"busy"), (502, b"bad gateway"), None, (503, b"busy")])

    def flaky(method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes] | None:
        return next(answers, None)

    proxy = _Proxy(oxigraph, flaky)
    try:
        remote = RemoteStore.at(proxy.url, retries=3, backoff=0.01)
        n = remote.load(export_tags(run_a))
        assert len(RemoteStore.at(oxigraph)) == n
        assert [status for *_, status in proxy.log].count(503) == 2
        always_busy = _Proxy(oxigraph, lambda *a: (503, b"busy"))
        try:
            with pytest.raises(RemoteError, match="after 3 attempts"):
                RemoteStore.at(always_busy.url, retries=2, backoff=0.01).graphs()
        finally:
            always_busy.close()
    finally:
        proxy.close()


class _Cutting:
    """A loopback HTTP server that answers RemoteStore.rows' graph list with `graph` (and lists no
    legacy graph) and cuts off
    every other answer halfway: a chunked one without its end, or (`closing`) one whose end is the
    connection's, mid-line. Counts the requests it answered so (`cut`)."""

    def __init__(self, graph: str, closing: bool = False) -> None:
        rows = json.dumps({"head": {"vars": ["g"]}, "results": {"bindings": [{"g": {"type": "uri", "value": graph}}]}})
        none = json.dumps({"head": {"vars": ["g"]}, "results": {"bindings": []}})
        self.cut = 0
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"

        def serve() -> None:
            while True:
                try:
                    connection, _ = self.socket.accept()
                except OSError:  # closed
                    return
                with connection:
                    request = connection.recv(65536)
                    while b"\r\n\r\n" not in request:
                        request += connection.recv(65536)
                    length = re.search(rb"Content-Length: (\d+)", request, re.IGNORECASE)
                    while length and len(request.partition(b"\r\n\r\n")[2]) < int(length[1]):
                        request += connection.recv(65536)
                    if b"Accept: application/sparql-results+json\r\n" in request:  # no legacy graph, but `graph`
                        legacy = (b"inSelection", b"wasDerivedFrom", b"adding-tag-classes")
                        answer = (none if any(word in request for word in legacy) else rows).encode()
                        # "Connection: close", as it closes: else a client may send its next request on this
                        # connection, pooled, and fail without it being counted (a flaky `cut` of 1)
                        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/sparql-results+json\r\n"
                                           b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer))
                        continue
                    self.cut += 1
                    framing = b"Connection: close\r\n\r\n" if closing else b"Transfer-Encoding: chunked\r\n\r\n40\r\n"
                    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/n-triples\r\n" + framing
                                       + b"<http://example.org/a> <http://exa")

        threading.Thread(target=serve, daemon=True).start()

    def close(self) -> None:
        self.socket.close()


def test_an_answer_cut_off_is_retried_and_named() -> None:
    """An answer cut off by a server that ended (killed, or its connection broken) is retried as
    a broken connection is, then named: before, requests' ChunkedEncodingError or http.client's
    IncompleteRead (SPARQLWrapper's queries) came out as a traceback, after no retry. Cut off where
    a server ends its answers by closing, a graph the push compares is named as no N-Triples (before:
    a SyntaxError traceback, as when `serve --allow-updates` was killed during a push)."""
    graph = "http://example.org/g"
    quads = [ox.Quad(ox.NamedNode("http://example.org/a"), ox.NamedNode("http://example.org/p"), ox.Literal(1),
                     ox.NamedNode(graph))]
    server = _Cutting(graph)
    try:
        remote = RemoteStore.at(server.url, retries=1, backoff=0.01)
        for call in (lambda: remote.query("SELECT * WHERE { ?s ?p ?o }", union=False), lambda: remote.load(quads)):
            before = server.cut
            with pytest.raises(RemoteError, match="failed after 2 attempts: .*IncompleteRead"):
                call()
            assert server.cut - before == 2
    finally:
        server.close()
    server = _Cutting(graph, closing=True)
    try:
        with pytest.raises(RemoteError, match=f"graph store at {server.url}/store: the server failed while answering: "
                                              "its answer \\(application/n-triples\\) breaks off .* it ends "):
            RemoteStore.at(server.url, retries=0).load(quads)
    finally:
        server.close()


def test_basic_auth(oxigraph: str, run_a: TagSet) -> None:  # noqa: F811
    expected = "Basic " + base64.b64encode(b"curator:s3cret").decode()

    def needs_auth(method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes] | None:
        return None if headers.get("Authorization") == expected else (401, b"who are you?")

    proxy = _Proxy(oxigraph, needs_auth)
    try:
        with pytest.raises(RemoteError, match="401"):
            RemoteStore.at(proxy.url).load(export_tags(run_a))
        remote = RemoteStore.at(proxy.url, auth=("curator", "s3cret"))
        remote.load(export_tags(run_a))
        assert _count(remote) == len(run_a)  # SPARQLWrapper sends the credentials too
    finally:
        proxy.close()


def test_unreachable_server_is_a_clear_error() -> None:
    from oxigraph_server import free_port

    remote = RemoteStore.at(f"http://127.0.0.1:{free_port()}", retries=1, backoff=0.01, timeout=2)
    with pytest.raises(RemoteError, match="failed after 2 attempts"):
        len(remote)


class _CompactionInterrupted:
    """A pyoxigraph store whose compaction is interrupted by Ctrl-C."""

    def __init__(self, path: str) -> None:
        self.inner = ox.Store(path)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def optimize(self) -> None:
        raise KeyboardInterrupt


def test_ctrl_c_during_the_compaction_after_a_load_says_the_load_is_complete(
    tmp_path: Path, run_a: TagSet, monkeypatch: pytest.MonkeyPatch, run_cli: Callable[..., tuple[int, str, str]],
) -> None:
    """The load is committed before the compaction: Ctrl-C there printed 'Aborted.', as if nothing was loaded."""
    source = tmp_path / "run.nq"
    source.write_bytes(ox.serialize(export_tags(run_a), format=ox.RdfFormat.N_QUADS))
    monkeypatch.setattr(store_module, "OxStore", _CompactionInterrupted)
    code, _, err = run_cli("load", source, "--store", tmp_path / "store", "--optimize")
    assert code == 130 and "Interrupted: the load is complete; only the compaction after it was interrupted" in err
    monkeypatch.undo()
    with Store(tmp_path / "store", read_only=True) as store:
        assert len(store) == sum(1 for _ in export_tags(run_a))


def test_a_store_another_process_writes_is_not_opened_read_only_beside_it(tmp_path: Path) -> None:
    """RocksDB is not read beside a writer (pyoxigraph: undefined behaviour): beside a `serve
    --allow-updates` taking PUTs, 5 of 81 read-only openings failed with "No such file ... may be
    corrupted" (scratch ro_race.py). The writer is named instead; this process's own writer is not one."""
    path = tmp_path / "store"
    with Store(path) as store:
        store.load([ox.Quad(ox.NamedNode("http://example.org/s"), ox.NamedNode("http://example.org/p"),
                            ox.Literal(1), ox.NamedNode("http://example.org/g"))])
        with Store(path, read_only=True) as reader:  # beside this process's own writer
            assert len(reader) == 1
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from filtag_kg.kg.store import Store
        with Store({str(path)!r}):
            print("open", flush=True)
            sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        with pytest.raises(UserError, match=rf"the store at {re.escape(str(path))} is open for writing by process "
                                            rf"{holder.pid} .*ask that server \(--endpoint\), or wait for it"):
            Store(path, read_only=True)
        with pytest.raises(UserError, match=rf"\(process {holder.pid} has it open for writing: .*ask that server"):
            Store(path)  # a load beside it: named too (before: RocksDB's "While lock file … unavailable")
    finally:
        holder.communicate("")
    with Store(path, read_only=True) as reader:
        assert len(reader) == 1


def test_an_endpoint_given_as_the_query_url_is_named(oxigraph: str, tmp_path: Path,  # noqa: F811
                                                     run_cli: Callable[..., tuple[int, str, str]]) -> None:
    """--endpoint given the query endpoint's URL (so /query/query was asked for): the 404 says what
    --endpoint is (before: '404 Not Found' and nothing more)."""
    (tmp_path / "t.nq").write_text("<http://a> <http://p> <http://o> <http://g> .\n")
    for args in (("query", "runs"), ("push", tmp_path / "t.nq"), ("drop", "http://g")):
        code, _, err = run_cli(*args, "--endpoint", f"{oxigraph}/query", "--retries", "0")
        assert code == 2 and f"{oxigraph}/query/query: 404 Not Found" in err, (args, err)
        assert "--endpoint is the server's base URL" in err and "--query-url" in err, (args, err)


def test_a_service_that_fails_inside_a_query_is_named(oxigraph: str) -> None:  # noqa: F811
    """Oxigraph's server answers 200 and begins the results before a SERVICE the query calls fails,
    then appends the error to them: the error says so and ends with the server's message (before:
    'is this a SPARQL query endpoint?')."""
    remote = RemoteStore.at(oxigraph, retries=0)
    remote.load([ox.Quad(ox.NamedNode("http://a"), ox.NamedNode("http://p"), ox.Literal("o"), ox.NamedNode("http://g"))])
    service = f"SERVICE <http://127.0.0.1:{free_port()}/sparql> {{ ?s ?p ?o }}"
    for call in (lambda: remote.query(f"SELECT * WHERE {{ GRAPH ?g {{ ?a ?b ?c }} {service} }}"),
                 lambda: remote.query(f"CONSTRUCT {{ ?s ?p ?o }} WHERE {{ {service} }}"),
                 lambda: remote.rows(f"SELECT * WHERE {{ {service} }}")):
        with pytest.raises(RemoteError, match="the server failed while answering: its answer .* breaks off") as error:
            call()
        assert "is this a SPARQL" not in str(error.value) and "Connection refused" in str(error.value)


def test_old_rocksdb_logs_do_not_pile_up(tmp_path: Path) -> None:
    """Each opening for writing leaves RocksDB's log before as LOG.old.<time>, up to 1,000 of them
    (before: one more file per command that wrote); the newest OLD_LOGS_KEPT stay."""
    path = tmp_path / "store"
    for _ in range(6):
        Store(path).close()
    Store(path, read_only=True).close()
    logs = sorted(p.name for p in path.iterdir() if p.name.startswith("LOG.old."))
    assert len(logs) == 3 == store_module.OLD_LOGS_KEPT
    Store(path).close()
    newer = sorted(p.name for p in path.iterdir() if p.name.startswith("LOG.old."))
    assert newer[:-1] == logs[1:] and len(newer) == store_module.OLD_LOGS_KEPT


def _holder(path: Path, graph: str) -> subprocess.Popen[str]:
    """Another process that opens the store at `path` for writing, loads one triple into `graph`, says
    'open' and holds the store until its standard input ends."""
    script = ("import sys, pyoxigraph as ox; s = ox.Store(sys.argv[1]); "
              "s.add(ox.Quad(ox.NamedNode('http://ex.org/s'), ox.NamedNode('http://ex.org/p'), ox.Literal(1), "
              "ox.NamedNode(sys.argv[2]))); s.flush(); print('open', flush=True); sys.stdin.read()")
    process = subprocess.Popen([sys.executable, "-c", script, str(path), graph], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline() == "open\n"
    return process


@pytest.mark.parametrize("when", ["before its opening", "after its closing", "after its closing, held"])
def test_a_failed_first_load_removes_no_store_another_process_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str,
) -> None:
    """A failed first load removes the store it made only if no other process opened it meanwhile:
    one that made the store between this load's look at the folder and its opening (this one then
    fails on RocksDB's lock), one that loaded into it between this load's closing it and removing it,
    and one holding it open then, keep their store. Before, the clean-up removed it under them."""
    path = tmp_path / "new" / "store"
    graph = "http://ex.org/theirs"
    holders: list[subprocess.Popen[str]] = []
    if when == "before its opening":
        missing_folders = store_module.missing_folders

        def look(folder: Path) -> list[Path]:
            made = missing_folders(folder)
            holders.append(_holder(path, graph))  # (the folders are there: made by this test)
            return made

        monkeypatch.setattr(store_module, "missing_folders", look)
        path.parent.mkdir()
    else:
        close = Store.close

        def closing(self: Store) -> None:
            close(self)
            if not holders:
                holders.append(_holder(path, graph))
                if when == "after its closing":
                    holders[0].communicate("")

        monkeypatch.setattr(Store, "close", closing)
    try:
        with pytest.raises((RuntimeError, UserError)), store_module.loading_into(path):
            raise RuntimeError("the load failed")
    finally:
        for holder in holders:
            holder.communicate("")
    monkeypatch.undo()
    with Store(path, read_only=True) as store:
        assert [g.value for g in store.graphs()] == [graph]


def test_a_failed_first_load_removes_its_store_and_the_folders_it_made(tmp_path: Path) -> None:
    """The store a failed first load made goes, with the folders made for it; in an empty folder
    that was there, only the store's files go."""
    for path, kept in ((tmp_path / "a" / "b" / "store", tmp_path), (tmp_path / "empty", tmp_path / "empty")):
        if path == tmp_path / "empty":
            path.mkdir()
        with pytest.raises(RuntimeError), store_module.loading_into(path) as db:
            assert (db.path / "CURRENT").is_file()
            raise RuntimeError("the load failed")
        assert sorted(tmp_path.rglob("*")) == ([] if kept == tmp_path else [kept])


def test_a_store_opened_as_another_process_removes_its_folder_is_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Opening a store whose folder a failed first load elsewhere removes meanwhile makes it again.
    Before, the opening failed ('While mkdir if missing: ... No such file or directory')."""
    path = tmp_path / "new" / "store"
    real = store_module.OxStore
    removed: list[bool] = []

    def opening(location: str) -> ox.Store:
        if not removed:
            removed.append(True)
            store_module.remove_empty([path, path.parent])  # as a failed first load elsewhere removes them
        return real(location)

    monkeypatch.setattr(store_module, "OxStore", opening)
    with Store(path) as store:
        assert removed and len(store) == 0 and (path / "CURRENT").is_file()


def test_a_push_of_graphs_another_running_push_claimed_is_refused(oxigraph: str,  # noqa: F811
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Another push of the same graphs while this one uploads is refused, changing nothing, and this
    one completes. Before, a graph the server lacked was PUT straight into place by both: the other
    push replaced the first graph after this one had, and this one the second graph after the other,
    so the server held one graph of each push, and both pushes reported success. A push of other
    graphs meanwhile is not held up."""
    graphs = [ox.NamedNode(f"http://ex.org/g{i}") for i in (1, 2)]

    def push(value: str, to: list[ox.NamedNode]) -> list[ox.Quad]:
        return [ox.Quad(ox.NamedNode(f"http://ex.org/s{i}"), ox.NamedNode("http://ex.org/p"), ox.Literal(value), g)
                for g in to for i in range(3)]

    real_put, others = RemoteStore._put, []

    def put(self: RemoteStore, *args: Any) -> None:
        real_put(self, *args)
        if not others:  # after this push's first upload, another push of the second graph, then of a third
            other = RemoteStore.at(oxigraph)
            with pytest.raises(RemoteError) as refused:
                other.load(push("other", graphs[1:]))
            others.append(str(refused.value))
            others.append(other.load(push("third", [ox.NamedNode("http://ex.org/g3")])))

    monkeypatch.setattr(RemoteStore, "_put", put)
    remote = RemoteStore.at(oxigraph)
    assert remote.load(push("this", graphs)) == 6
    assert re.fullmatch(rf"push to {re.escape(oxigraph)}/store: another push of http://ex.org/g2 is running \(it last "
                        r"made progress at \S+, server time\); push again when it is done \(a push that makes no "
                        r"progress for an hour, or whose process on this machine has ended, is taken for dead\); "
                        r"nothing was changed", others[0]), others[0]
    assert others[1] == 3
    rows = remote.rows("SELECT ?g ?o (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } } GROUP BY ?g ?o ORDER BY ?g")
    assert rows == [[g.value, "this", "3"] for g in graphs] + [["http://ex.org/g3", "third", "3"]]
    assert remote.rows(f"SELECT ?g WHERE {{ GRAPH ?g {{ }} FILTER STRSTARTS(STR(?g), '{STAGING}') }}") == []


def test_a_store_opened_twice_in_one_process_says_so(tmp_path: Path) -> None:
    """A second Store of one path in the same process was blamed on 'another process, e.g. `filtag-kg
    serve`' (found using the Python API: a Store left open, then `serving` of its path)."""
    with Store(tmp_path / "store"):
        with pytest.raises(UserError, match=r"this process has it open already: close that Store first"):
            Store(tmp_path / "store")
