"""Bad input to the knowledge-graph commands: named in a clear message, with a non-zero exit, and
never a changed store (found by exploratory testing of the CLI)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pyoxigraph as ox
import pytest

from filtag_kg.errors import UserError
from filtag_kg.kg import queries
from filtag_kg.kg.export import export_tags, write
from filtag_kg.kg.store import JOURNAL, RemoteStore, Store
from filtag_kg.kg.vocab import Minter
from filtag_kg.records import TagSet

from kg_helpers import run_iri
from oxigraph_server import oxigraph  # noqa: F401  (fixture)

FT = "https://w3id.org/filtag-kg/ontology#"
RunCli = Callable[..., tuple[int, str, str]]


def test_data_of_the_earlier_format_is_refused_by_load_and_its_graphs_can_be_dropped(
    tmp_path: Path, run_a: TagSet, run_cli: RunCli,
) -> None:
    path = tmp_path / "store"
    with Store(path) as store:
        store.load(export_tags(run_a))
        before = set(store.quads())
    legacy = tmp_path / "legacy.nq"
    legacy.write_text(f"<http://t1> <{FT}inSelection> <http://s1> <http://legacy> .\n")
    derived = tmp_path / "derived.nq"  # an explanation naming its run as exports did until 2026-12-03
    derived.write_text(f"<http://e1> <http://www.w3.org/ns/prov#wasDerivedFrom> <{run_iri(run_a)}> <http://legacy> .\n")
    for data in (legacy, derived):
        for graph in ("http://legacy", run_iri(run_a)):  # a new graph, and one the store has (replaced)
            code, _, err = run_cli("load", data, "--store", path, "--graph", graph)
            assert code == 2 and "tags linked to their selection (ft:inSelection" in err and "export the run again" in err
            with Store(path, read_only=True) as store:
                assert set(store.quads()) == before
    # a store that holds such graphs all the same (filled by an earlier filtag-kg) can drop them
    with Store(path) as store:
        store.oxigraph.add(ox.Quad(ox.NamedNode("http://t1"), ox.NamedNode(FT + "inSelection"),
                                   ox.NamedNode("http://s1"), ox.NamedNode("http://legacy")))
    code, _, err = run_cli("query", "runs", "--store", path)
    assert code == 2 and "upgrade it in place" in err
    code, out, err = run_cli("drop", "http://legacy", "--store", path)
    assert code == 0, err
    with Store(path, read_only=True) as store:
        assert set(store.quads()) == before


def test_read_only_opening_refuses_a_store_in_the_middle_of_a_change(tmp_path: Path, run_a: TagSet) -> None:
    path = tmp_path / "store"
    with Store(path) as store:
        store.load(export_tags(run_a))
    (path / JOURNAL).write_text('{"drop": "http://x"}')  # what a drop killed half-way leaves
    with pytest.raises(UserError, match="being changed by a load or drop, or one was interrupted"):
        Store(path, read_only=True)
    Store(path).close()  # opened for writing, the drop is finished (nothing to remove here)
    assert not (path / JOURNAL).exists()
    Store(path, read_only=True).close()


def test_commands_that_read_or_remove_do_not_create_a_store(tmp_path: Path, run_cli: RunCli) -> None:
    """A missing path, or an existing folder without a store, is named as such and left as it was
    (before: `drop` and `upgrade` made a store in an empty folder, and `query` failed there with
    RocksDB's 'CURRENT: No such file')."""
    missing, empty = tmp_path / "no-such-store", tmp_path / "empty"
    empty.mkdir()
    for args in (("drop", "http://g"), ("upgrade",), ("query", "runs"), ("errors",),
                 ("link", "wordnet", "--run", "http://r")):
        for path in (missing, empty):
            code, _, err = run_cli(*args, "--store", path)
            assert code == 2 and f"no store at {path}" in err, (args, err)
    assert not missing.exists() and list(empty.iterdir()) == []


def test_iris_and_remote_options_are_checked(tmp_path: Path, run_a: TagSet, run_cli: RunCli) -> None:
    with pytest.raises(UserError, match="base IRI 'http://x/a b/' is not an IRI"):
        Minter("http://x/a b/")
    with pytest.raises(UserError, match="must end with '/' or '#'"):
        Minter("http://x/a")
    (tmp_path / "t.nt").write_text("<http://a> <http://b> <http://c> .\n")
    store = ("--store", tmp_path / "s")
    assert run_cli("load", tmp_path / "t.nt", "--graph", "http://g", *store)[0] == 0  # a store to drop from
    for args, message in (
        (("load", tmp_path / "t.nt", "--graph", "not an iri", *store), "graph or run 'not an iri' is not an IRI"),
        (("drop", "--run", "x> } ; DROP ALL #", *store), "is not an IRI"),
        (("query", "runs", "--endpoint", "notaurl"), "endpoint URL 'notaurl/query': expected http://"),
        (("query", "runs", "--endpoint", "http://127.0.0.1:9", "--timeout", "0"), "--timeout"),
        (("query", "runs", "--endpoint", "http://127.0.0.1:9", "--retries", "-1"), "--retries"),
        # a timeout no socket takes (an OverflowError traceback before)
        (("query", "runs", "--endpoint", "http://127.0.0.1:9", "--timeout", "inf"), "timeout must be more than 0 s "
         "and at most a year (31,536,000 s), and retries at least 0, got inf"),
        (("push", tmp_path / "t.nt", "--graph", "http://g", "--endpoint", "http://127.0.0.1:9", "--timeout", "1e10"),
         "got 10000000000.0"),
    ):
        code, _, err = run_cli(*args)
        assert code == 2 and message in err, (args, err)
    with pytest.raises(UserError, match="timeout must be more than 0"):
        RemoteStore.at("http://127.0.0.1:9", timeout=0)


def test_query_files_and_failures_while_running_are_named(tmp_path: Path, run_a: TagSet) -> None:
    bad = tmp_path / "bad.rq"
    bad.write_bytes(b"SELECT * WHERE { ?s ?p \x9e }")
    with pytest.raises(UserError, match="bad.rq is not UTF-8 text"):
        queries.load(bad)
    service = tmp_path / "service.rq"
    service.write_text("SELECT * WHERE { SERVICE <http://127.0.0.1:9/sparql> { ?s ?p ?o } }")
    with Store(tmp_path / "store") as store, pytest.raises(UserError, match=r"^query file \S*service\.rq failed while running"):
        queries.run(queries.load(service), store)


def test_export_to_a_path_writes_all_or_nothing(tmp_path: Path, run_a: TagSet) -> None:
    with pytest.raises(UserError, match=f"cannot write {tmp_path / 'nodir' / 'x.ttl'}"):
        write(export_tags(run_a), tmp_path / "nodir" / "x.ttl")

    def failing():
        yield from list(export_tags(run_a))[:100]
        raise RuntimeError("interrupted")

    (tmp_path / "x.trig").write_text("earlier")
    with pytest.raises(RuntimeError):
        write(failing(), tmp_path / "x.trig")
    assert [p.name for p in tmp_path.iterdir()] == ["x.trig"] and (tmp_path / "x.trig").read_text() == "earlier"
    n = write(export_tags(run_a), tmp_path / "x.trig")
    assert len(list(ox.parse(path=str(tmp_path / "x.trig"), format=ox.RdfFormat.TRIG))) == n
    assert [p.name for p in tmp_path.iterdir()] == ["x.trig"]


def test_export_to_a_fifo_writes_into_it_not_over_it(tmp_path: Path, run_a: TagSet) -> None:
    import threading

    fifo = tmp_path / "pipe.nt"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    n = write(export_tags(run_a), fifo)
    reader.join(timeout=30)
    assert fifo.is_fifo() and len(got[0].splitlines()) == n > 0


def test_error_analysis_names_a_selection_or_run_it_has_no_explanations_of(tmp_path: Path, run_cli: RunCli) -> None:
    Store(tmp_path / "store").close()
    code, _, err = run_cli("errors", "--store", tmp_path / "store", "-s", "garbage")
    assert code == 2 and "--selection 'garbage': unknown method 'garbage'; expected e.g. 'k-best 5' or 'q-quantile 10'" in err
    code, _, err = run_cli("errors", "--store", tmp_path / "store", "-s", "k=7")
    assert code == 2 and "no explanations with tag selection 'k-best 7' in the store; it has: none" in err
    code, _, err = run_cli("errors", "--store", tmp_path / "store", "--run", "http://nope")
    assert code == 2 and "--run http://nope: the store holds no such tagging run" in err
    code, _, err = run_cli("errors", "--store", tmp_path / "store", "--top", "-1")
    assert code == 2 and "--top" in err


def test_a_run_option_that_is_no_iri_is_named_as_given(tmp_path: Path, run_a: TagSet, run_cli: RunCli) -> None:
    """--run is checked as an IRI by the commands that take it: the queries' error named '--param run', an
    option not given, and publish pasted the run into its query ('invalid SPARQL query: … expected OPTIONAL').
    They also take a run by its id, and name an id no run has."""
    path = tmp_path / "store"
    with Store(path) as store:
        store.load(export_tags(run_a))
    for args in (("graph", "-o", tmp_path / "g.graphml"), ("link", "wordnet"), ("link", "conceptnet", "--offline"),
                 ("errors",), ("publish", "--creator", "Me", "--out", tmp_path / "site")):
        for run in ("nope", "http://x/run/a b"):
            code, _, err = run_cli(*args, "--run", run, "--store", path)
            says = ("--run nope: no tagging run in the store has this id" if run == "nope" else
                    f"--run {run!r} is not an IRI")
            assert code == 2 and says in err and "--param" not in err, (args, err)
    assert not (tmp_path / "site").exists() and not (tmp_path / "g.graphml").exists()
    from filtag_kg.kg.fair import publish

    with Store(path, read_only=True) as store, pytest.raises(UserError, match="--run 'nope' is not an IRI"):
        publish(store, "nope", tmp_path / "site", license="https://example.org/l", creator="Me")


def test_a_password_that_cannot_be_asked_for_is_named(monkeypatch: pytest.MonkeyPatch, run_cli: RunCli) -> None:
    """--user without $FILTAG_KG_PASSWORD and with no terminal to ask on (a cron job, CI): standard
    input ends at the prompt. It said 'Aborted.' (exit 130) as for a Ctrl-C."""
    import io

    def ended(prompt: str = "") -> str:
        raise EOFError  # as getpass at the end of a standard input that is not a terminal

    monkeypatch.delenv("FILTAG_KG_PASSWORD", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    monkeypatch.setattr("getpass.getpass", ended)
    code, _, err = run_cli("query", "runs", "--endpoint", "http://127.0.0.1:9", "--user", "bob")
    assert code == 2 and "--user bob: no password: set $FILTAG_KG_PASSWORD, or give it on standard input" in err


def test_an_rdf_file_named_without_its_format_is_loaded_with_format(tmp_path: Path, run_cli: RunCli) -> None:
    """An RDF file whose name tells no format (a dump, data.txt) is named with the option that gives
    it, and loads with --format (before: no such option, and the error named neither file nor option)."""
    dump = tmp_path / "dump"
    dump.write_text('<http://a> <http://p> "x" <http://g> .\n')
    path = tmp_path / "store"
    code, _, err = run_cli("load", dump, "--store", path)
    assert code == 2 and f"{dump}: no RDF format given" in err and "--format" in err
    code, _, err = run_cli("load", dump, "--store", path, "--format", "turtle")
    assert code == 2 and f"{dump}: not valid Turtle" in err  # as told, not as guessed
    code, _, err = run_cli("load", dump, "--store", path, "--format", "nquads")
    assert code == 0, err
    with Store(path, read_only=True) as store:
        assert [g.value for g in store.graphs()] == ["http://g"]
    code, _, err = run_cli("load", tmp_path, "--store", tmp_path / "other", "--format", "nquads")
    assert code == 2 and "is a tag set folder, not an RDF file" in err


def test_push_names_a_graph_that_is_no_iri(oxigraph: str, tmp_path: Path, run_a: TagSet,  # noqa: F811
                                           run_cli: RunCli) -> None:
    """`push --graph` of the store's graphs checks the IRI (before: a ValueError traceback, exit 1)."""
    path = tmp_path / "store"
    with Store(path) as store:
        store.load(export_tags(run_a))
    code, _, err = run_cli("push", "--store", path, "--graph", "http://a b", "--endpoint", oxigraph)
    assert code == 2 and "--graph 'http://a b' is not an IRI" in err
    assert RemoteStore.at(oxigraph).graphs() == []


def test_push_refuses_a_source_and_a_store_at_once(oxigraph: str, tmp_path: Path, run_a: TagSet,  # noqa: F811
                                                   run_cli: RunCli) -> None:
    """`push SOURCE --store PATH` says which of the two it would push (before: it pushed SOURCE and
    left --store unsaid, so the store's graphs the user meant were never pushed)."""
    path = tmp_path / "store"
    with Store(path) as store:
        store.load(export_tags(run_a))
    run_a.save(tmp_path / "tags")
    code, _, err = run_cli("push", tmp_path / "tags", "--store", path, "--endpoint", oxigraph)
    assert code == 2 and f"--store {path}: push either SOURCE ({tmp_path / 'tags'}) or the store's graphs" in err
    assert RemoteStore.at(oxigraph).graphs() == []


def test_the_query_command_honours_from_on_the_embedded_store(tmp_path: Path, run_cli: RunCli) -> None:
    path = tmp_path / "store"
    with Store(path) as store:
        store.load([ox.Quad(ox.NamedNode(f"http://example.org/s{i}"), ox.NamedNode("http://example.org/p"),
                            ox.Literal(i), ox.NamedNode(f"http://example.org/g{i}")) for i in (1, 2)])
    asked = tmp_path / "from.rq"
    asked.write_text("SELECT ?s FROM <http://example.org/g1> WHERE { ?s ?p ?o }")
    code, out, err = run_cli("query", asked, "--store", path, "--format", "csv")
    assert code == 0 and out.splitlines() == ["s", "http://example.org/s1"], err


def test_a_turtle_export_loads_into_the_graphs_of_its_tag_set(tmp_path: Path, run_a: TagSet, run_cli: RunCli) -> None:
    """`load run.ttl` puts an export back into the graphs loading its tag set fills (before: it needed
    --graph, and the network and classes then sat twice in the union); other Turtle still needs --graph."""
    run_a.save(tmp_path / "tags")
    assert run_cli("export", tmp_path / "tags", "-o", tmp_path / "run.ttl")[0] == 0
    for source, name in ((tmp_path / "tags", "folder"), (tmp_path / "run.ttl", "file")):
        code, _, err = run_cli("load", source, "--store", tmp_path / name)
        assert code == 0, err
    with Store(tmp_path / "folder", read_only=True) as folder, Store(tmp_path / "file", read_only=True) as file:
        assert len(folder.graphs()) == 3 and set(file.quads()) == set(folder.quads())
    other = tmp_path / "other.ttl"
    other.write_text("<http://example.org/a> <http://example.org/p> 1 .\n")
    code, _, err = run_cli("load", other, "--store", tmp_path / "file")
    assert code == 2 and f"{other}: not the export of one tag set" in err and "--graph" in err
    assert run_cli("load", other, "--store", tmp_path / "file", "--graph", "http://example.org/g")[0] == 0


def test_sigterm_stops_a_command_as_ctrl_c_does(tmp_path: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM (kill, timeout) raised KeyboardInterrupt nowhere: a load or drop was cut off where it
    stood, without the rollback Ctrl-C gets. Now it stops the command as Ctrl-C does (exit 130)."""
    import signal
    import time

    nquads = tmp_path / "g.nq"
    nquads.write_text('<http://example.org/s> <http://example.org/p> "1" <http://example.org/g> .\n')

    def killed(self: Store, *args: object, **kwargs: object) -> int:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises in here
        raise AssertionError("SIGTERM did not stop the load")

    monkeypatch.setattr(Store, "load", killed)
    before = signal.getsignal(signal.SIGTERM)
    code, _, err = run_cli("load", nquads, "--store", tmp_path / "store")
    assert (code, err.strip()) == (130, "Aborted.")
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is this command's only


def test_a_signal_ignored_before_stays_ignored(tmp_path: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    """`nohup filtag-kg …` ignores SIGHUP so that the command outlives its terminal: the command's own
    Ctrl-C-like handler must not take that back."""
    import signal

    nquads = tmp_path / "g.nq"
    nquads.write_text('<http://example.org/s> <http://example.org/p> "1" <http://example.org/g> .\n')
    seen = []
    monkeypatch.setattr(Store, "load", lambda self, *args, **kwargs: seen.append(signal.getsignal(signal.SIGHUP)) or 0)
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        code, _, err = run_cli("load", nquads, "--store", tmp_path / "store")
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert code == 0 and seen == [signal.SIG_IGN], err


def test_a_failed_load_into_a_new_store_leaves_nothing_behind(tmp_path: Path, run_a: TagSet, run_cli: RunCli) -> None:
    """A load or import that fails into a store it creates removes that store again, with the folders
    made for it, and an empty folder given is left empty (before: an empty store stayed there, which
    later commands took for one); a store that held data before keeps it."""
    bad = tmp_path / "bad.ttl"
    bad.write_text("garbage <<\n")
    run_a.save(tmp_path / "tags")
    empty = tmp_path / "empty"
    empty.mkdir()
    for args in ((bad,), (tmp_path / "tags", "--format", "turtle")):
        for path in (tmp_path / "new" / "deep" / "store", empty):
            code, _, err = run_cli("load", *args, "--store", path)
            assert code == 2 and "Error:" in err, (args, err)
            assert not (tmp_path / "new").exists() and list(empty.iterdir()) == [], args
    good = tmp_path / "good.nq"
    good.write_text("<http://a> <http://p> <http://o> <http://g> .\n")
    path = tmp_path / "store"
    assert run_cli("load", good, "--store", path)[0] == 0
    assert run_cli("load", bad, "--store", path)[0] == 2
    with Store(path, read_only=True) as store:
        assert [g.value for g in store.graphs()] == ["http://g"]


def test_push_names_its_bad_input_before_asking_the_server(tmp_path: Path, run_a: TagSet, run_cli: RunCli) -> None:
    """A --graph that is no IRI, a --store with no store and a --graph it lacks are named before the
    server is asked anything (before: the server was asked first, so a server not running hid them
    behind 'Connection refused')."""
    path = tmp_path / "store"
    with Store(path) as store:
        store.load(export_tags(run_a))
    (tmp_path / "a.nt").write_text("<http://a> <http://p> <http://o> .\n")
    nowhere = ("--endpoint", "http://127.0.0.1:1", "--retries", "0")  # (nothing listens on port 1)
    for args, says in (((tmp_path / "a.nt", "--graph", "not an iri"), "--graph 'not an iri' is not an IRI"),
                       (("--store", tmp_path / "none"), f"no store at {tmp_path / 'none'}"),
                       (("--store", path, "--graph", "http://nope"), f"--graph http://nope: not in the store {path}")):
        code, _, err = run_cli("push", *args, *nowhere)
        assert code == 2 and says in err and "127.0.0.1:1" not in err, (args, err)
