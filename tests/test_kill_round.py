"""Interruptions of store-writing commands at points found by killing them at random moments
(SIGKILL, SIGINT, SIGTERM; scratch harness), each replayed here at a known point."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pyoxigraph as ox
import pytest

from filtag_kg.errors import InterruptedAfterCommit
from filtag_kg.kg.export import export_tags
from filtag_kg.kg.store import JOURNAL, STAGING, RemoteError, RemoteStore, Store, _NoAnswer
from filtag_kg.records import TagSet

from oxigraph_server import oxigraph  # noqa: F401  (fixture)


class _SignalsWhenFinalized:
    """An object whose finalizer gets a signal while it runs, as the `__del__` of a load's progress bar
    does when a signal came during the bulk loader's work in Rust (handled at the next Python code)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum

    def __del__(self) -> None:
        os.kill(os.getpid(), self.signum)
        sum(range(1000))  # the handler runs here, inside the finalizer


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_a_signal_during_a_finalizer_still_stops_the_command(
        tmp_path: Path, run_cli, monkeypatch: pytest.MonkeyPatch, signame: str) -> None:
    """A SIGTERM sent to `load` while it replaced a run by rebuilding was printed as 'Exception ignored
    in tqdm.__del__' and the load ran on to its end (exit 0): KeyboardInterrupt raised in a finalizer is
    ignored. Now the signal is sent again once the finalizer has run, and the command stops (exit 130)."""
    nquads = tmp_path / "g.nq"
    nquads.write_text('<http://example.org/s> <http://example.org/p> "1" <http://example.org/g> .\n')

    def load(self: Store, *args: object, **kwargs: object) -> int:
        _SignalsWhenFinalized(getattr(signal, signame))  # dropped at once: its finalizer runs
        time.sleep(5)  # the signal sent again raises in here
        raise AssertionError(f"{signame} did not stop the load")

    monkeypatch.setattr(Store, "load", load)
    before = signal.getsignal(signal.SIGINT)
    code, _, err = run_cli("load", nquads, "--store", tmp_path / "store")
    assert (code, err.strip()) == (130, "Aborted."), err
    assert signal.getsignal(signal.SIGINT) is before


def _graph_contents(remote: RemoteStore) -> dict[str, set[str]]:
    """Each named graph's triples on a server, as N-Triples lines, the store's own graphs too."""
    rows = remote.rows("SELECT ?g ?s ?p ?o WHERE { GRAPH ?g { ?s ?p ?o } }")
    graphs: dict[str, set[str]] = {}
    for g, *triple in rows:
        graphs.setdefault(g, set()).add(" ".join(triple))
    return graphs


def _by_graph(quads: list[ox.Quad]) -> dict[str, set[str]]:
    """`_graph_contents` of a server holding just `quads` (literals in the server's canonical form)."""
    reference = ox.Store()
    reference.extend(quads)
    graphs: dict[str, set[str]] = {}
    for q in reference:
        graphs.setdefault(q.graph_name.value, set()).add(f"{q.subject.value} {q.predicate.value} {q.object.value}")
    return graphs


@pytest.mark.parametrize("lost", ["interrupted", "no answer"])
def test_a_push_whose_commit_took_place_unanswered_keeps_its_new_graphs(
        oxigraph: str, run_a: TagSet, run_b: TagSet, monkeypatch: pytest.MonkeyPatch, lost: str) -> None:  # noqa: F811
    """A push that replaces a graph and adds new ones, stopped (Ctrl-C, SIGTERM) or timed out while
    waiting for its commit's answer, dropped its new graphs although the server carried the commit
    out: the server held the replaced graph's new content without the new graphs. Now the receipt
    of the commit is read once its staging graphs are gone (so that it cannot take place later):
    committed, the push is complete (Ctrl-C then says so; a lost answer is no failure)."""
    remote = RemoteStore.at(oxigraph, timeout=10)
    remote.load(export_tags(run_a))
    real_commit = RemoteStore._commit

    def answer_lost(self: RemoteStore, *args: Any) -> None:
        real_commit(self, *args)  # the server carries it out ...
        if lost == "interrupted":  # ... while the client is stopped
            raise KeyboardInterrupt("SIGTERM")
        raise _NoAnswer("POST update: no answer within 10 s")

    monkeypatch.setattr(RemoteStore, "_commit", answer_lost)
    pushed = [*export_tags(run_a, similar_classes=2), *export_tags(run_b)]
    try:
        outcome: int | BaseException = remote.load(pushed)
    except (KeyboardInterrupt, RemoteError) as e:
        outcome = e
    monkeypatch.undo()
    assert _graph_contents(remote) == _by_graph(pushed)  # every graph of the push, as pushed; nothing of its own left
    if lost == "interrupted":
        assert isinstance(outcome, InterruptedAfterCommit) and "the push is complete" in str(outcome)
    else:
        assert outcome == len(pushed)


def test_a_journal_killed_while_written_is_removed_when_the_store_opens(tmp_path: Path, run_a: TagSet) -> None:
    """A load or drop killed outright (SIGKILL) between writing its journal's temporary file and
    moving it into place left filtag-kg-load.tmp in the store directory for good (opening the store
    removed everything else a killed load leaves). It named nothing done yet, so it goes."""
    with Store(tmp_path / "store") as store:
        store.load(export_tags(run_a))
        quads = set(store.quads())
    killed = tmp_path / "store" / JOURNAL.replace(".json", ".tmp")
    killed.write_text('{"token": "0123", "fr')  # cut off where the process was killed
    with Store(tmp_path / "store") as store:
        assert set(store.quads()) == quads
    assert not killed.exists() and not (tmp_path / "store" / JOURNAL).exists()


def test_a_signal_during_a_push_commit_waits_for_its_answer(
        oxigraph: str, run_a: TagSet, run_b: TagSet, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """SIGTERM while a push's commit (one SPARQL update) was under way cut the request off, which the
    server may still carry out after the push dropped its new graphs (seen killing pushes to `serve
    --allow-updates`: the replaced graph's new content and the commit's receipt graph, no new graphs).
    Now the answer is awaited, then the push stops, saying that it is complete."""
    from filtag_kg.cli import _interrupt

    remote = RemoteStore.at(oxigraph, timeout=10)
    remote.load(export_tags(run_a))
    real_update = RemoteStore.update

    def signalled(self: RemoteStore, sparql: str) -> None:
        if "committed" in sparql:  # the commit's update: SIGTERM while it is on its way
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)  # the handler runs in here
        real_update(self, sparql)

    monkeypatch.setattr(RemoteStore, "update", signalled)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    pushed = [*export_tags(run_a, similar_classes=2), *export_tags(run_b)]
    try:
        with pytest.raises(KeyboardInterrupt) as stopped:
            remote.load(pushed)
    finally:
        signal.signal(signal.SIGTERM, previous)
    monkeypatch.undo()
    assert isinstance(stopped.value, InterruptedAfterCommit), repr(stopped.value)
    assert _graph_contents(remote) == _by_graph(pushed)


def test_a_push_killed_right_after_its_commit_leaves_no_staging_copy(
        oxigraph: str, run_a: TagSet, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """A push killed outright after the server carried out its commit (seen killing pushes during
    their commit) left the staging copy of each graph it replaced on the server for good: the
    commit removes the push's marker, so no later push knew of the copies. Now the commit drops them."""
    remote = RemoteStore.at(oxigraph, timeout=10)
    remote.load(export_tags(run_a))
    real_commit = RemoteStore._commit

    def killed_after(self: RemoteStore, *args: Any) -> None:
        real_commit(self, *args)
        raise SystemExit(-9)  # SIGKILL: nothing runs after the commit ...

    monkeypatch.setattr(RemoteStore, "_commit", killed_after)
    monkeypatch.setattr(RemoteStore, "_drop_quietly", lambda self, graphs: None)  # ... no clean-up either
    pushed = list(export_tags(run_a, similar_classes=2))
    with pytest.raises(SystemExit):
        remote.load(pushed)
    monkeypatch.undo()
    contents = _graph_contents(remote)
    own = {g: triples for g, triples in contents.items() if g.startswith(STAGING)}
    assert [g.rsplit(":", 1)[1] for g in own] == ["receipt"] and len(next(iter(own.values()))) == 1
    assert {g: t for g, t in contents.items() if g not in own} == _by_graph(pushed)
