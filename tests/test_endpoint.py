"""The in-process SPARQL endpoint of `filtag-kg serve --allow-updates` (filtag_kg.kg.endpoint):
queries, updates and the Graph Store HTTP Protocol on the embedded store, updates behind basic auth,
and the project's own remote client (RemoteStore) pushing through it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pyoxigraph as ox
import pytest
import requests

from filtag_kg.kg.endpoint import STAGING, sparql_endpoint
from filtag_kg.kg.export import export_graphs, export_tags
from filtag_kg.kg.fair import free_port
from filtag_kg.kg.store import RemoteStore
from filtag_kg.records import TagSet

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
            ("POST", "/%75pdate", {"data": {"update": drop}}),
        ):
            r = requests.request(method, url + path, auth=auth, timeout=10, **kwargs)
            assert r.status_code == 401 and says in r.text, (method, path, auth)
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
