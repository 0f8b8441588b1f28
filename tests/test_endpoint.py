"""The in-process SPARQL endpoint of `filtag-kg serve --allow-updates` (filtag_kg.kg.endpoint):
queries, updates and the Graph Store HTTP Protocol on the embedded store, updates behind basic auth,
and the project's own remote client (RemoteStore) pushing through it."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pyoxigraph as ox
import pytest
import requests

from filtag_kg.kg import endpoint
from filtag_kg.kg.endpoint import STAGING, sparql_endpoint
from filtag_kg.kg.export import export_graphs, export_tags
from filtag_kg.kg.fair import free_port
from filtag_kg.kg.store import RemoteError, RemoteStore
from filtag_kg.records import TagSet

from oxigraph_server import oxigraph_server, wait_until_up

EX = "http://example.org/"
AUTH = ("filtag-kg", "open sesame")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, ox.Store]]:
    store = ox.Store(str(tmp_path / "store"))
    store.add(ox.Quad(ox.NamedNode(EX + "a"), ox.NamedNode(EX + "p"), ox.Literal(1), ox.NamedNode(EX + "g1")))
    store.add(ox.Quad(ox.NamedNode(EX + "b"), ox.NamedNode(EX + "p"), ox.Literal(2), ox.NamedNode(EX + "g2")))
    server = sparql_endpoint(store, free_port(), AUTH[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", store
    server.shutdown()
    server.server_close()


def _quads(store: ox.Store) -> set[tuple[str, ...]]:
    return {tuple(str(t) for t in (q.subject, q.predicate, q.object, q.graph_name)) for q in store}


def test_queries_see_the_union_of_the_graphs_in_the_format_asked_for(served: tuple[str, ox.Store]) -> None:
    url, _ = served
    count = "SELECT (SUM(?o) AS ?n) WHERE { ?s ?p ?o }"
    by_get = requests.get(f"{url}/query", params={"query": count}, timeout=10)
    assert by_get.headers["Content-Type"] == "application/sparql-results+json"
    assert by_get.json()["results"]["bindings"][0]["n"]["value"] == "3"  # both graphs: the union
    by_form = requests.post(f"{url}/query", data={"query": count, "default-graph-uri": EX + "g2"},
                            headers={"Accept": "text/csv"}, timeout=10)
    assert by_form.status_code == 200 and by_form.text.splitlines() == ["n", "2"]  # only the graph named
    direct = requests.post(f"{url}/query", data=f"CONSTRUCT WHERE {{ ?s <{EX}p> 1 }}",
                           headers={"Content-Type": "application/sparql-query",
                                    "Accept": "application/rdf+xml;q=0.5, text/turtle"}, timeout=10)
    assert direct.headers["Content-Type"] == "text/turtle"
    assert [q.triple for q in ox.parse(direct.content, format=ox.RdfFormat.TURTLE)] == [
        ox.Triple(ox.NamedNode(EX + "a"), ox.NamedNode(EX + "p"), ox.Literal(1))]
    bad = requests.get(f"{url}/query", params={"query": "SELECT WHERE"}, timeout=10)
    assert bad.status_code == 400 and "expected" in bad.text.lower()
    refused = requests.get(f"{url}/query", params={"query": count}, headers={"Accept": "image/png"}, timeout=10)
    assert refused.status_code == 406 and "application/sparql-results+json" in refused.text


def test_updates_and_graph_store_writes_need_the_password(served: tuple[str, ox.Store]) -> None:
    url, store = served
    before = _quads(store)
    drop = f"DROP GRAPH <{EX}g1>"
    for auth, says in ((None, "need HTTP basic auth"), (("filtag-kg", "guess"), "wrong credentials")):
        for method, path, kwargs in (
            ("POST", "/update", {"data": drop, "headers": {"Content-Type": "application/sparql-update"}}),
            ("POST", "/update", {"data": {"update": drop}}),  # a form, as a web page could post it
            ("PUT", "/store", {"params": {"graph": EX + "g1"}, "data": b"",
                               "headers": {"Content-Type": "application/n-triples"}}),
            ("DELETE", "/store", {"params": {"graph": EX + "g1"}}),
            ("POST", "/%75pdate", {"data": {"update": drop}}),  # requests sends it as /update
        ):
            r = requests.request(method, url + path, auth=auth, timeout=10, **kwargs)
            assert r.status_code == 401 and says in r.text, (method, path, auth)
        # a path that is no service is named as such, with or without auth (a wrong --endpoint got "need
        # HTTP basic auth" for its query)
        for path in ("/query/query", "/updates"):
            r = requests.post(url + path, data={"update": drop, "query": "ASK {}"}, auth=auth, timeout=10)
            assert r.status_code == 404 and f"no such service: {path}" in r.text, (path, auth)
    assert _quads(store) == before
    assert requests.get(f"{url}/store", params={"graph": EX + "g1"}, timeout=10).status_code == 200  # reads are open
    r = requests.post(f"{url}/update", data={"update": drop}, auth=AUTH, timeout=10)
    assert r.status_code == 204 and {q[3] for q in _quads(store)} == {f"<{EX}g2>"}


def test_graph_store_protocol_replaces_adds_reads_and_deletes_graphs(served: tuple[str, ox.Store]) -> None:
    url, store = served
    nt = {"Content-Type": "application/n-triples"}
    g = {"graph": EX + "g1"}
    triples = f"<{EX}x> <{EX}q> \"x\" .\n<{EX}y> <{EX}q> _:b .\n"
    assert requests.put(f"{url}/store", params=g, data=triples, headers=nt, auth=AUTH, timeout=10).status_code == 204
    got = requests.get(f"{url}/store", params=g, headers={"Accept": "application/n-triples"}, timeout=10)
    assert len(list(ox.parse(got.content, format=ox.RdfFormat.N_TRIPLES))) == 2  # replaced: the old triple is gone
    assert requests.post(f"{url}/store", params=g, data=f"<{EX}z> <{EX}q> 3 .", headers={"Content-Type": "text/turtle"},
                         auth=AUTH, timeout=10).status_code == 204
    assert sum(1 for _ in store.quads_for_pattern(None, None, None, ox.NamedNode(EX + "g1"))) == 3
    before = _quads(store)
    broken = requests.put(f"{url}/store", params=g, data=f"<{EX}x> <{EX}q> .", headers=nt, auth=AUTH, timeout=10)
    assert broken.status_code == 400 and _quads(store) == before  # parsed whole before the graph is touched
    assert not any(q[3].startswith(f"<{STAGING}") for q in _quads(store))
    new = requests.put(f"{url}/store", params={"graph": EX + "g3"}, data=triples, headers=nt, auth=AUTH, timeout=10)
    assert new.status_code == 201
    wrong = requests.put(f"{url}/store", params=g, data=triples, headers={"Content-Type": "image/png"}, auth=AUTH,
                         timeout=10)
    assert wrong.status_code == 415 and "application/n-triples" in wrong.text
    assert requests.delete(f"{url}/store", params=g, auth=AUTH, timeout=10).status_code == 204
    assert requests.get(f"{url}/store", params=g, timeout=10).status_code == 404
    assert {q[3] for q in _quads(store)} == {f"<{EX}g2>", f"<{EX}g3>"}
    everything = requests.get(f"{url}/store", headers={"Accept": "application/n-quads"}, timeout=10)
    assert {tuple(str(t) for t in q) for q in ox.parse(everything.content, format=ox.RdfFormat.N_QUADS)
            if not isinstance(q.object, ox.BlankNode)} == {q for q in _quads(store) if not q[2].startswith("_:")}


def test_the_remote_client_pushes_queries_and_drops_through_it(served: tuple[str, ox.Store], run_a: TagSet) -> None:
    """RemoteStore's push (marker, uploads, guarded commit) works on this endpoint as on Oxigraph's server."""
    url, store = served
    graphs = export_graphs(run_a)
    with RemoteStore.at(url, auth=AUTH) as remote:
        n = remote.load(export_tags(run_a))
        assert n == sum(1 for _ in export_tags(run_a))
        assert remote.count(graphs.run) == sum(1 for q in export_tags(run_a) if q.graph_name == graphs.run)
        remote.load(export_tags(run_a, similar_classes=1))  # replaces the run graph: staging and commit
        assert remote.count(graphs.run) == sum(1 for q in export_tags(run_a, similar_classes=1)
                                               if q.graph_name == graphs.run)
        assert not any(g.value.startswith("urn:filtag-kg:") for g in store.named_graphs() if isinstance(g, ox.NamedNode))
        remote.drop(graphs.run)
        assert not store.contains_named_graph(graphs.run)
    with RemoteStore.at(url) as anonymous, pytest.raises(Exception, match="401|auth"):
        anonymous.load(export_tags(run_a))


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_a_request_without_the_password_is_refused_before_its_body_is_read(served: tuple[str, ox.Store]) -> None:
    """The credentials are checked before the body is read, and a refused request's body is read to
    its end without being kept. Before, every body was read into memory first: an anonymous client
    (another user, a web page posting to loopback) took `serve` to 3.6 GB with a 1.5 GB POST."""
    url, store = served
    with socket.create_connection(("127.0.0.1", _port(url)), timeout=5) as raw:  # 10 GB announced, never sent
        raw.sendall(b"POST /update HTTP/1.1\r\nHost: x\r\nContent-Type: application/sparql-update\r\n"
                    b"Content-Length: 10000000000\r\n\r\nDROP ALL")
        assert raw.recv(65536).split(b" ")[1] == b"401"
    tracemalloc.start()
    try:  # 13 MB in chunks, sent whole before the client reads: it gets its answer, the server keeps none of it
        refused = requests.post(f"{url}/update", data=(b"x" * 65536 for _ in range(200)), timeout=30,
                                headers={"Content-Type": "application/sparql-update"})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert refused.status_code == 401 and peak < 4 << 20, peak
    assert sum(1 for _ in store) == 2


def test_a_reader_that_stalls_holds_up_no_write(served: tuple[str, ox.Store]) -> None:
    """Graph store reads stream without the lock that writes take. Before, a client that asked for the
    dataset and stopped reading (anyone may read) held up every update and graph store request."""
    url, store = served
    big = ox.NamedNode(EX + "big")
    store.bulk_extend(ox.Quad(ox.NamedNode(f"{EX}s{i}"), ox.NamedNode(EX + "p"), ox.Literal("x" * 300), big)
                      for i in range(100_000))  # 40 MB of N-Quads: more than the sockets' buffers hold
    with socket.socket() as reader:
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader.settimeout(10)
        reader.connect(("127.0.0.1", _port(url)))
        reader.sendall(b"GET /store HTTP/1.1\r\nHost: x\r\n\r\n")
        assert reader.recv(4096).split(b" ")[1] == b"200"  # ... and reads no more
        update = requests.post(f"{url}/update", data=f"INSERT DATA {{ GRAPH <{EX}g1> {{ <{EX}c> <{EX}p> 3 }} }}",
                               headers={"Content-Type": "application/sparql-update"}, auth=AUTH, timeout=5)
        assert update.status_code == 204
        assert requests.get(f"{url}/store", params={"graph": EX + "g1"}, timeout=5).status_code == 200


def test_an_answer_cut_off_by_an_error_is_told_from_a_whole_one(
    served: tuple[str, ox.Store], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """Streamed answers come in chunks, so an error halfway (or a server killed) leaves an answer its
    client sees is cut off, and the error goes to no terminal. Before, the answer ended by closing,
    and an error halfway appended a second status line to the triples ('HTTP/1.0 500 ...') that
    ended a seemingly whole answer, and a client that went away printed a traceback in `serve`."""
    url, _ = served

    def failing(data: object, output: BinaryIO, fmt: ox.RdfFormat) -> None:
        output.write(f"<{EX}a> <{EX}p> 1 .\n".encode() * (written // 20))
        raise OSError("the disk went away")

    monkeypatch.setattr(endpoint, "serialize", failing)
    written = endpoint.HELD_BACK * 2  # an answer begun ...
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(f"{url}/store", params={"graph": EX + "g1"}, timeout=10)
    written = 100  # ... and one failing before it was: its status tells
    early = requests.get(f"{url}/store", params={"graph": EX + "g1"}, timeout=10)
    assert (early.status_code, early.text) == (500, "the disk went away\n")
    monkeypatch.undo()
    whole = requests.get(f"{url}/store", params={"graph": EX + "g1"}, headers={"Accept": "application/n-triples"},
                         timeout=10)
    line = f'<{EX}a> <{EX}p> "1"^^<http://www.w3.org/2001/XMLSchema#integer> .\n'
    assert whole.headers["Transfer-Encoding"] == "chunked" and whole.text == line
    with socket.create_connection(("127.0.0.1", _port(url)), timeout=10) as raw:  # HTTP/1.0 knows no chunks
        raw.sendall(f"GET /store?graph={EX}g1 HTTP/1.0\r\nAccept: application/n-triples\r\n\r\n".encode())
        answer = b"".join(iter(lambda: raw.recv(65536), b""))
    assert b"chunked" not in answer and answer.endswith(f"\r\n\r\n{line}".encode()), answer
    assert capsys.readouterr().err == ""


def test_a_query_naming_graphs_gets_those_and_no_others_as_from_oxigraphs_server(
    served: tuple[str, ox.Store], tmp_path: Path,
) -> None:
    """default-graph-uri and named-graph-uri make the dataset (SPARQL 1.1 Protocol 2.1.4): a graph
    not named is in neither, as `oxigraph serve --union-default-graph` answers. Before, a query naming
    only named graphs had the union of all as default graph, and one naming only default graphs saw
    every named graph in GRAPH patterns."""
    url, store = served
    count = "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }"
    in_graphs = "SELECT (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } }"
    cases = [(count, {}), (count, {"named-graph-uri": EX + "g1"}), (count, {"default-graph-uri": EX + "g1"}),
             (in_graphs, {}), (in_graphs, {"default-graph-uri": EX + "g1"}), (in_graphs, {"named-graph-uri": EX + "g2"}),
             (in_graphs, {"default-graph-uri": EX + "g1", "named-graph-uri": [EX + "g1", EX + "g2"]})]

    def answers(base: str) -> list[str]:
        return [requests.get(f"{base}/query", params={"query": q, **dataset}, headers={"Accept": "text/csv"},
                             timeout=10).text.split()[1] for q, dataset in cases]

    with oxigraph_server(tmp_path / "oxigraph", "--union-default-graph") as oxigraph:
        for q in store:
            requests.post(f"{oxigraph}/store", params={"graph": q.graph_name.value}, timeout=10,
                          data=f"{q.subject} {q.predicate} {q.object} .", headers={"Content-Type": "application/n-triples"})
        assert answers(url) == answers(oxigraph) == ["2", "0", "1", "2", "0", "1", "2"]


def test_a_graph_put_with_no_triples_is_there_and_queries_are_only_asked(served: tuple[str, ox.Store]) -> None:
    """A graph PUT with no triples exists, empty (before: 201 Created, then 404 for it); a query
    endpoint PUT or DELETE to is 405 (before: 400 'expected one query parameter')."""
    url, store = served
    nt = {"Content-Type": "application/n-triples"}
    for graph, status in ((EX + "empty", 201), (EX + "g1", 204)):
        put = requests.put(f"{url}/store", params={"graph": graph}, data=b"", headers=nt, auth=AUTH, timeout=10)
        assert put.status_code == status
        got = requests.get(f"{url}/store", params={"graph": graph}, headers={"Accept": "application/n-triples"},
                           timeout=10)
        assert (got.status_code, got.text) == (200, ""), graph
    assert {g.value for g in store.named_graphs()} == {EX + "empty", EX + "g1", EX + "g2"}
    for method in ("PUT", "DELETE"):
        r = requests.request(method, f"{url}/query", params={"query": "ASK {}"}, auth=AUTH, timeout=10)
        assert (r.status_code, r.headers.get("Allow")) == (405, "GET, HEAD, POST"), method



def test_graphs_are_answered_in_the_quad_formats_too_as_from_oxigraphs_server(
    served: tuple[str, ox.Store], tmp_path: Path,
) -> None:
    """A CONSTRUCT, DESCRIBE or graph store read asked for N-Quads or TriG gets its triples in the
    default graph, as Oxigraph's server answers (before: 406 Not Acceptable); the dataset is not
    answered in a triple format, and a query's solutions in no RDF format, by either."""
    url, store = served
    asked = [("/query", {"query": f"CONSTRUCT WHERE {{ ?s <{EX}p> 1 }}"}, "application/n-quads"),
             ("/query", {"query": f"DESCRIBE <{EX}a>"}, "application/n-quads"),
             ("/query", {"query": f"CONSTRUCT WHERE {{ ?s <{EX}p> 1 }}"}, "application/trig"),
             ("/store", {"graph": EX + "g1"}, "application/n-quads"),
             ("/store", {"graph": EX + "g1"}, "application/trig"),
             ("/query", {"query": "SELECT * WHERE { ?s ?p ?o }"}, "application/n-quads"),
             ("/store", {}, "text/turtle")]

    def answers(base: str) -> list[tuple[int, str, list[ox.Quad]]]:
        found = []
        for path, params, accept in asked:
            r = requests.get(base + path, params=params, headers={"Accept": accept}, timeout=10)
            kind = r.headers["Content-Type"].split(";")[0]
            parsed = list(ox.parse(r.content, format=ox.RdfFormat.from_media_type(kind))) if r.ok else []
            found.append((r.status_code // 100, kind if r.ok else "", parsed))
        return found

    a = ox.Quad(ox.NamedNode(EX + "a"), ox.NamedNode(EX + "p"), ox.Literal(1))
    with oxigraph_server(tmp_path / "oxigraph", "--union-default-graph") as oxigraph:
        for q in store:
            requests.post(f"{oxigraph}/store", params={"graph": q.graph_name.value}, timeout=10,
                          data=f"{q.subject} {q.predicate} {q.object} .", headers={"Content-Type": "application/n-triples"})
        assert answers(url) == answers(oxigraph) == [
            (2, "application/n-quads", [a]), (2, "application/n-quads", [a]), (2, "application/trig", [a]),
            (2, "application/n-quads", [a]), (2, "application/trig", [a]), (4, "", []), (4, "", [])]


@pytest.mark.parametrize("scheme", ["basic", "BASIC", "Basic  "])
def test_the_auth_scheme_is_matched_in_any_case(served: tuple[str, ox.Store], scheme: str) -> None:
    """RFC 9110 (11.1): the authentication scheme is case-insensitive (before: only 'Basic' was taken)."""
    url, store = served
    credentials = base64.b64encode(f"{AUTH[0]}:{AUTH[1]}".encode()).decode()
    r = requests.post(f"{url}/update", data=f"DROP GRAPH <{EX}g1>", timeout=10,
                      headers={"Content-Type": "application/sparql-update", "Authorization": f"{scheme} {credentials}"})
    assert r.status_code == 204 and {q.graph_name.value for q in store} == {EX + "g2"}
    wrong = requests.post(f"{url}/update", data=f"DROP GRAPH <{EX}g2>", timeout=10,
                          headers={"Content-Type": "application/sparql-update", "Authorization": f"Bearer {credentials}"})
    assert wrong.status_code == 401 and {q.graph_name.value for q in store} == {EX + "g2"}


def test_a_server_killed_outright_leaves_its_writes_in_the_stores_data_files(tmp_path: Path) -> None:
    """Writes are flushed from RocksDB's write-ahead log within about a second, so a `serve
    --allow-updates` killed outright leaves none there for every read-only opening to replay (before:
    until the store was next opened for writing, each read-only opening replayed all the writes of
    the server's life: 18 s instead of 0.3 s for the demo store after 400,000 triples were PUT).
    Seen here without timing: a copy of the store without its log files holds the write."""
    path = tmp_path / "store"
    path.mkdir()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "filtag_kg", "serve", "--allow-updates", "--store", str(path),
                               "--port", str(port)], env={**os.environ, "FILTAG_KG_PASSWORD": AUTH[1]},
                              stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, server)
        put = requests.put(f"{url}/store", params={"graph": EX + "g"}, data=f"<{EX}a> <{EX}p> \"1\" .", auth=AUTH,
                           headers={"Content-Type": "application/n-triples"}, timeout=10)
        assert put.status_code == 201
        time.sleep(endpoint.FLUSH_EVERY + 2)
    finally:
        server.kill()
        server.wait()
    shutil.copytree(path, tmp_path / "copy", ignore=shutil.ignore_patterns("*.log"))
    assert [q.graph_name for q in ox.Store.read_only(str(tmp_path / "copy"))] == [ox.NamedNode(EX + "g")]


def test_a_query_or_update_that_is_not_utf8_is_a_bad_request(served: tuple[str, ox.Store]) -> None:
    """As from Oxigraph's server, 400 (before: 500 with Python's UnicodeDecodeError message)."""
    url, store = served
    before = _quads(store)
    for what, auth in (("query", None), ("update", AUTH)):
        r = requests.post(f"{url}/{what}", data=f'INSERT DATA {{ GRAPH <{EX}g9> {{ <{EX}a> <{EX}p> "\xff" }} }}'
                          .encode("latin-1"), headers={"Content-Type": f"application/sparql-{what}"}, auth=auth,
                          timeout=10)
        assert r.status_code == 400 and f"the {what} is not UTF-8" in r.text, (what, r.text)
    assert _quads(store) == before


def test_a_query_answer_is_streamed_and_one_failing_early_gets_its_status(served: tuple[str, ox.Store]) -> None:
    """Query answers stream as graph store reads do (before: serialized whole in memory first; the demo
    store's 270 MB SELECT * took `serve --allow-updates` to 440 MB and began after 11 s, now 110 MB
    and 4 ms); a query failing before HELD_BACK bytes of its answer, such as one whose SERVICE cannot be
    reached, is still answered with its error status."""
    url, store = served
    store.bulk_extend(ox.Quad(ox.NamedNode(f"{EX}s{i}"), ox.NamedNode(EX + "p"), ox.Literal("x" * 300),
                              ox.NamedNode(EX + "big")) for i in range(20_000))
    tracemalloc.start()
    try:
        with requests.post(f"{url}/query", data={"query": "SELECT * WHERE { ?s ?p ?o }"}, stream=True,
                           timeout=30) as answer:
            size = sum(len(piece) for piece in answer.iter_content(65536))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert answer.status_code == 200 and size > 6 << 20 and peak < 3 << 20, (size, peak)
    assert answer.headers["Transfer-Encoding"] == "chunked"
    service = f"SERVICE <http://127.0.0.1:{free_port()}/sparql> {{ ?x ?y ?z }}"
    failed = requests.post(f"{url}/query", data={"query": f"SELECT * WHERE {{ ?s ?p ?o {service} }}"}, timeout=30)
    assert failed.status_code == 500 and "Connection refused" in failed.text, failed.text


def test_get_query_without_a_query_describes_the_service(served: tuple[str, ox.Store]) -> None:
    """GET /query with no parameters answers a SPARQL 1.1 Service Description (Turtle unless asked
    otherwise), as SPARQL 1.1 Service Description 3 asks. Before: 400 'expected one query parameter'."""
    url, _ = served
    sd = "http://www.w3.org/ns/sparql-service-description#"
    described = requests.get(f"{url}/query", timeout=10)
    assert described.status_code == 200 and described.headers["Content-Type"] == "text/turtle"
    graph = ox.Store()
    graph.load(described.content, format=ox.RdfFormat.TURTLE)
    a = ox.NamedNode("http://www.w3.org/1999/02/22-rdf-syntax-ns#type")
    service, = [q.subject for q in graph.quads_for_pattern(None, a, ox.NamedNode(sd + "Service"))]

    def objects(name: str) -> set[str]:
        return {q.object.value for q in graph.quads_for_pattern(service, ox.NamedNode(sd + name), None)}

    assert objects("endpoint") == {f"{url}/query"}
    assert objects("supportedLanguage") == {sd + "SPARQL11Query"}
    assert {sd + "UnionDefaultGraph", sd + "BasicFederatedQuery"} <= objects("feature")
    assert {"http://www.w3.org/ns/formats/SPARQL_Results_JSON", "http://www.w3.org/ns/formats/Turtle"} <= objects(
        "resultFormat")
    as_nt = requests.get(f"{url}/query", headers={"Accept": "application/n-triples"}, timeout=10)
    assert as_nt.headers["Content-Type"] == "application/n-triples" and len(as_nt.text.splitlines()) == len(graph)
    assert requests.get(f"{url}/query", params={"default-graph-uri": EX + "g1"}, timeout=10).status_code == 400


def test_a_query_or_update_above_the_limit_is_refused_with_413(
    served: tuple[str, ox.Store], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A query or update, which is held whole, is refused with 413 above MAX_TEXT bytes, and no more
    of it is kept. Before, any body was held whole, whatever its size."""
    url, store = served
    monkeypatch.setattr(endpoint, "MAX_TEXT", 1000)
    update = f"INSERT DATA {{ GRAPH <{EX}g1> {{ <{EX}c> <{EX}p> \"{'x' * 2000}\" }} }}"
    refused = requests.post(f"{url}/update", data=update, auth=AUTH, timeout=10,
                            headers={"Content-Type": "application/sparql-update"})
    assert refused.status_code == 413 and "over 1,000 bytes" in refused.text and "/store" in refused.text
    query = requests.post(f"{url}/query", data={"query": f"ASK {{ ?s ?p \"{'x' * 2000}\" }}"}, timeout=10)
    assert query.status_code == 413
    assert sum(1 for _ in store) == 2


def test_a_graph_store_write_is_not_held_in_memory(served: tuple[str, ox.Store]) -> None:
    """A PUT's body goes to a temporary file as it arrives, and from there to the parser (Python's heap,
    which tracemalloc sees, holds none of its 5 MB; the triples parsed are held by pyoxigraph's
    transaction). Before, the whole body was read into memory first."""
    url, store = served
    lines = [f"<{EX}s{i}> <{EX}p> \"{'x' * 100}\" .\n".encode() for i in range(40_000)]
    tracemalloc.start()
    try:  # sent in chunks of 1,000 lines
        chunks = (b"".join(lines[i:i + 1000]) for i in range(0, len(lines), 1000))
        put = requests.put(f"{url}/store", params={"graph": EX + "big"}, data=chunks, auth=AUTH, timeout=60,
                           headers={"Content-Type": "application/n-triples"})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert put.status_code == 201 and peak < 2 << 20, peak
    assert sum(1 for _ in store.quads_for_pattern(None, None, None, ox.NamedNode(EX + "big"))) == 40_000


def test_a_graph_store_write_broken_off_changes_nothing(served: tuple[str, ox.Store]) -> None:
    """A PUT whose client goes away before all of its Content-Length arrived is refused (400), in the
    middle of a triple or at the end of one. Before, one broken off at the end of a line replaced the
    graph with the triples that had arrived (201 Created, 50 of them)."""
    url, store = served
    lines = [f"<{EX}s{i}> <{EX}p> \"{'x' * 100}\" .\n".encode() for i in range(50)]
    credentials = base64.b64encode(":".join(AUTH).encode())
    g1 = ox.NamedNode(EX + "g1")
    before = (len(store), list(store.quads_for_pattern(None, None, None, g1)))
    for body, says in ((b"".join(lines) + b"<" + EX.encode() + b"s", b""),  # in the middle of a triple
                       (b"".join(lines), b"bytes before its Content-Length")):  # at the end of one
        with socket.create_connection(("127.0.0.1", _port(url)), timeout=10) as raw:
            raw.sendall(b"PUT /store?graph=" + EX.encode() + b"g1 HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                        b"Content-Type: application/n-triples\r\nAuthorization: Basic " + credentials + b"\r\n\r\n"
                        + body)
            raw.shutdown(socket.SHUT_WR)
            answer = b"".join(iter(lambda: raw.recv(65536), b""))
        assert answer.split(b" ")[1] == b"400" and says in answer, answer
        assert (len(store), list(store.quads_for_pattern(None, None, None, g1))) == before


def _embedded_store(path: Path, graphs: dict[str, int]) -> None:
    """Load graphs of the given sizes (names below EX) into the embedded store at `path`."""
    from filtag_kg.kg.store import Store

    with Store(path) as db:
        for name, size in graphs.items():
            db.load((ox.Quad(ox.NamedNode(f"{EX}{name}{i}"), ox.NamedNode(EX + "p"), ox.Literal(i),
                             ox.NamedNode(EX + name)) for i in range(size)))


def test_a_read_only_endpoint_answers_from_the_store_as_later_loads_and_drops_left_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Served read-only, the store is opened again once another opening wrote to it: a load, a drop,
    and a drop that rebuilt the store in a new directory are answered without a restart; while a
    process has it open for writing, requests get 503 naming it; writes are refused with 403.
    Before (`oxigraph serve-read-only`), the server answered from the store as it was when it started,
    and after a rebuild from files that were gone."""
    from filtag_kg.kg import store as store_module
    from filtag_kg.kg.store import Store

    path = tmp_path / "store"
    _embedded_store(path, {"a": 3})
    server = endpoint.read_only_endpoint(path, free_port())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"

    def graphs() -> dict[str, str]:
        r = requests.get(f"{url}/query", params={"query": "SELECT ?g (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } } "
                                                          "GROUP BY ?g"}, headers={"Accept": "text/csv"}, timeout=10)
        assert r.status_code == 200, r.text
        return dict(line.split(",") for line in r.text.splitlines()[1:])

    try:
        assert graphs() == {EX + "a": "3"}
        _embedded_store(path, {"b": 5})  # a load
        assert graphs() == {EX + "a": "3", EX + "b": "5"}
        monkeypatch.setattr(store_module, "REBUILD_SMALL_MIN_QUADS", 5)  # b outweighs the rest: a rebuild
        inode = path.stat().st_ino
        with Store(path) as db:
            db.drop(EX + "b")
        assert path.stat().st_ino != inode  # (the store's directory was replaced)
        assert graphs() == {EX + "a": "3"}
        holder = subprocess.Popen([sys.executable, "-c", "import sys, pyoxigraph; s = pyoxigraph.Store(sys.argv[1]); "
                                   "print('open', flush=True); sys.stdin.read()", str(path)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "open\n"
            busy = requests.get(f"{url}/query", params={"query": "ASK {}"}, timeout=10)
            assert busy.status_code == 503 and f"process {holder.pid}" in busy.text, busy.text
            assert busy.headers["Retry-After"] == endpoint.RETRY_AFTER
            remote = RemoteStore.at(url, retries=0)  # the project's client says why (before: '503 Service Unavailable')
            for ask in (remote.graphs, lambda: remote.query("ASK {}")):
                with pytest.raises(RemoteError, match=f"503 Service Unavailable: the store cannot be read now: .*"
                                                      f"open for writing by process {holder.pid}"):
                    ask()
        finally:
            holder.communicate("")
        assert graphs() == {EX + "a": "3"}
        for method, path_, kwargs in (("POST", "/update", {"data": {"update": "DROP ALL"}}),
                                      ("PUT", "/store", {"params": {"graph": EX + "a"}, "data": b""}),
                                      ("DELETE", "/store", {"params": {"graph": EX + "a"}})):
            r = requests.request(method, url + path_, auth=AUTH, timeout=10, **kwargs)
            assert r.status_code == 403 and "read-only" in r.text, (method, path_)
        assert graphs() == {EX + "a": "3"}
    finally:
        server.shutdown()
        server.server_close()


def test_a_graph_store_write_that_stalls_holds_up_no_other_write(served: tuple[str, ox.Store]) -> None:
    """A graph store write is received whole before it takes the write lock: a client that stops
    sending its body halfway (suspended, a network that hangs) holds up no update or other write."""
    url, store = served
    credentials = base64.b64encode(":".join(AUTH).encode())
    with socket.create_connection(("127.0.0.1", _port(url)), timeout=10) as stalled:
        stalled.sendall(b"PUT /store?graph=" + EX.encode() + b"g1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
                        b"Content-Type: application/n-triples\r\nAuthorization: Basic " + credentials + b"\r\n\r\n"
                        + f"<{EX}a> <{EX}p> ".encode())  # ... and no more
        update = requests.post(f"{url}/update", data=f"INSERT DATA {{ GRAPH <{EX}g2> {{ <{EX}c> <{EX}p> 3 }} }}",
                               headers={"Content-Type": "application/sparql-update"}, auth=AUTH, timeout=5)
        put = requests.put(f"{url}/store", params={"graph": EX + "g3"}, data=f"<{EX}d> <{EX}p> \"4\" .",
                           headers={"Content-Type": "application/n-triples"}, auth=AUTH, timeout=5)
        assert (update.status_code, put.status_code) == (204, 201)
    assert len(store) == 4
