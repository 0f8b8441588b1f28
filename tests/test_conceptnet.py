"""ConceptNet client against a loopback stand-in of the JSON-LD API (with injected failures), the dump
reader on a small dump in the official format, and the graph."""

from __future__ import annotations

import gzip
import json
import os
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

import numpy as np
import pyoxigraph
import pytest

import filtag_kg
from filtag_kg.errors import UserError
from filtag_kg.imagenet import imagenet_index
from filtag_kg.kg.conceptnet import (
    CN, ConceptNetClient, Edge, concept_uri, conceptnet_quads, fetch_edges, link_conceptnet, node, read_dump,
    shared_neighbours, term_of,
)
from filtag_kg.records import ActivationStats

from kg_helpers import run_iri

GRAPH = pyoxigraph.NamedNode("https://example.org/graph/conceptnet")


def edge_json(rel: str, start: str, end: str, weight: float) -> dict:
    """An edge as the API sends it (ConceptNet 5.7 JSON-LD)."""
    def term(uri: str) -> dict:
        return {"@id": uri, "@type": "Node", "label": uri.split("/")[3].replace("_", " "),
                "language": uri.split("/")[2], "term": term_of(uri)}
    return {
        "@id": f"/a/[/r/{rel}/,{start}/,{end}/]", "@type": "Edge", "dataset": "/d/conceptnet/4/en",
        "license": "cc:by/4.0", "rel": {"@id": f"/r/{rel}", "@type": "Relation", "label": rel},
        "start": term(start), "end": term(end), "sources": [{"@id": "/s/contributor/omcs/x", "@type": "Source"}],
        "surfaceText": f"[[{start}]] {rel} [[{end}]]", "weight": weight,
    }


DATA = {
    "/c/en/dog": [edge_json("IsA", "/c/en/dog/n", "/c/en/animal", 6.9), edge_json("IsA", "/c/en/dog", "/c/en/pet", 4.0),
                  edge_json("Antonym", "/c/en/dog", "/c/en/cat", 1.0), edge_json("RelatedTo", "/c/en/dog", "/c/fr/chien", 2.0),
                  edge_json("AtLocation", "/c/en/dog", "/c/en/kennel", 2.5), edge_json("IsA", "/c/en/dog", "/c/en/carnivore", 1.0)],
    "/c/en/cat": [edge_json("IsA", "/c/en/cat", "/c/en/animal", 5.0), edge_json("IsA", "/c/en/cat", "/c/en/pet", 3.0),
                  edge_json("IsA", "/c/en/cat", "/c/en/carnivore", 1.5)],
    "/c/en/bear": [edge_json("IsA", "/c/en/bear", "/c/en/animal", 3.0), edge_json("IsA", "/c/en/bear", "/c/en/carnivore", 2.0)],
    "/c/en/cow": [edge_json("IsA", "/c/en/cow", "/c/en/animal", 3.0)],
    "/c/en/horse": [edge_json("IsA", "/c/en/horse", "/c/en/animal", 3.0), edge_json("UsedFor", "/c/en/horse", "/c/en/riding", 2.0)],
    "/c/en/sheep": [edge_json("PartOf", "/c/en/sheep", "/c/en/flock", 1.0)],
    "/c/en/zebra": [edge_json("IsA", "/c/en/zebra", "/c/en/animal", 2.0), edge_json("IsA", "/c/en/zebra", "/c/en/equine", 1.0),
                    edge_json("AtLocation", "/c/en/zebra", "/c/en/zoo", 1.0)],
}


class StandIn:
    """A loopback server speaking the API's /query JSON-LD with pagination, and scripted failures:
    `script[concept]` is a list of actions taken by successive requests for it ("500", "429", "404",
    "timeout", "malformed", "ok"); `fail_page2` makes every request for a second page answer 500."""

    def __init__(self) -> None:
        self.script: dict[str, list[str]] = defaultdict(list)
        self.fail_page2: set[str] = set()
        self.requests: Counter[str] = Counter()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 — http.server's name
                url = urlparse(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                concept, offset, limit = q.get("node", ""), int(q.get("offset", 0)), int(q.get("limit", 20))
                stand_in.requests[concept] += 1
                action = stand_in.script[concept].pop(0) if stand_in.script[concept] else "ok"
                if offset and concept in stand_in.fail_page2:
                    action = "500"
                if action == "timeout":
                    time.sleep(0.6)
                if action in ("500", "429", "404"):
                    self.send_response(int(action))
                    if action == "429":
                        self.send_header("Retry-After", "3")
                    self.end_headers()
                    self.wfile.write(b'{"error": {"status": %s}}' % action.encode())
                    return
                if url.path != "/query":
                    self.send_response(404)
                    self.end_headers()
                    return
                edges = DATA.get(concept, [])
                body: dict = {"@context": ["http://api.conceptnet.io/ld/conceptnet5.7/context.ld.json"],
                              "@id": f"/query?node={concept}", "edges": edges[offset:offset + limit], "version": "5.8.1"}
                view = {"@id": "/query?" + urlencode({"node": concept, "other": "/c/en", "offset": offset, "limit": limit}),
                        "@type": "PartialCollectionView", "paginatedProperty": "edges"}
                if offset + limit < len(edges):
                    view["nextPage"] = "/query?" + urlencode({"node": concept, "other": "/c/en",
                                                              "offset": offset + limit, "limit": limit})
                body["view"] = view
                data = json.dumps(body).encode()
                if action == "malformed":
                    data = data[: len(data) // 2]
                self.send_response(200)
                self.send_header("Content-Type", "application/ld+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture()
def api() -> Iterator[StandIn]:
    stand_in = StandIn()
    yield stand_in
    stand_in.server.shutdown()
    stand_in.server.server_close()


def client(api: StandIn, cache: Path, **kwargs: object) -> ConceptNetClient:
    options = dict(cache=cache, min_interval=0.0, timeout=0.3, retries=2, backoff=0.01, page_size=2)
    options.update(kwargs)
    return ConceptNetClient(api.url, **options)  # type: ignore[arg-type]


def test_concept_uris() -> None:
    assert concept_uri("French_horn") == "/c/en/french_horn"
    assert concept_uri(" great white  shark ") == "/c/en/great_white_shark"
    assert concept_uri("potter's_wheel") == "/c/en/potter's_wheel"
    assert term_of("/c/en/dog/n/wn/animal") == "/c/en/dog"
    with pytest.raises(UserError):
        concept_uri(" '. ")


def test_pages_filter_and_cache(api: StandIn, tmp_path: Path) -> None:
    edges = client(api, tmp_path).edges("/c/en/dog")
    assert api.requests["/c/en/dog"] == 3  # 6 edges, 2 per page
    assert [(e.rel, e.start, e.end, e.weight) for e in edges] == [
        ("IsA", "/c/en/dog", "/c/en/animal", 6.9), ("IsA", "/c/en/dog", "/c/en/pet", 4.0),
        ("AtLocation", "/c/en/dog", "/c/en/kennel", 2.5), ("IsA", "/c/en/dog", "/c/en/carnivore", 1.0)]
    offline = client(api, tmp_path, offline=True)
    assert offline.edges("/c/en/dog") == edges and offline.requests_made == 0
    assert api.requests["/c/en/dog"] == 3


def test_failures_are_reported_and_a_rerun_completes(api: StandIn, tmp_path: Path) -> None:
    api.script.update({
        "/c/en/cat": ["500"] * 3,  # more failures than attempts
        "/c/en/cow": ["429", "ok"],
        "/c/en/horse": ["timeout", "ok"],
        "/c/en/sheep": ["malformed"] * 3,
        "/c/en/bear": ["404"],
    })
    api.fail_page2.add("/c/en/zebra")  # first page arrives, the second never: nothing of zebra is kept
    sleeps: list[float] = []
    first = fetch_edges(DATA, client(api, tmp_path, sleep=sleeps.append))
    assert set(first.edges) == {"/c/en/dog", "/c/en/cow", "/c/en/horse"}
    assert sorted(first.missing) == ["/c/en/bear", "/c/en/cat", "/c/en/sheep", "/c/en/zebra"]
    assert "HTTP 500" in first.missing["/c/en/cat"] and "after 3 attempts" in first.missing["/c/en/cat"]
    assert "malformed JSON" in first.missing["/c/en/sheep"]
    assert "HTTP 404" in first.missing["/c/en/bear"] and api.requests["/c/en/bear"] == 1  # not retried
    assert api.requests["/c/en/cow"] == 2 and 3.0 in sleeps  # Retry-After honoured …
    assert sorted(set(sleeps)) == [0.01, 0.02, 3.0]  # … instead of the backoff, which doubles
    assert api.requests["/c/en/horse"] == 2  # the timeout was retried
    assert "run again" in first.summary()
    before = dict(api.requests)
    api.fail_page2.clear()
    second = fetch_edges(DATA, client(api, tmp_path))
    assert not second.missing and set(second.edges) == set(DATA)
    fetched_again = {c for c in DATA if api.requests[c] > before.get(c, 0)}
    assert fetched_again == {"/c/en/bear", "/c/en/cat", "/c/en/sheep", "/c/en/zebra"}
    assert [e.end for e in second.edges["/c/en/zebra"]] == ["/c/en/animal", "/c/en/equine", "/c/en/zoo"]


def test_offline_without_cache_and_rate_limit(api: StandIn, tmp_path: Path) -> None:
    result = fetch_edges(["/c/en/cat"], client(api, tmp_path, offline=True))
    assert result.missing == {"/c/en/cat": "offline and not in the cache"} and not api.requests
    many = [f"/c/en/c{i}" for i in range(8)]  # offline, each is missing for its own reason, not "not tried"
    assert set(fetch_edges(many, client(api, tmp_path, offline=True)).missing.values()) == {"offline and not in the cache"}
    start = time.monotonic()
    fetch_edges(["/c/en/cat", "/c/en/cow", "/c/en/bear"], client(api, tmp_path, min_interval=0.1, page_size=10))
    assert time.monotonic() - start >= 0.2  # three requests, at least 0.1 s apart


def write_dump(path: Path) -> None:
    """A small dump in the official format: edge URI, relation, start, end, JSON metadata."""
    rows = [
        ("IsA", "/c/en/dog/n", "/c/en/animal/n", 2.0),
        ("IsA", "/c/en/cat/n/wn/animal", "/c/en/animal", 1.5),
        ("RelatedTo", "/c/en/kennel", "/c/en/dog", 0.5),
        ("Antonym", "/c/en/dog", "/c/en/cat", 1.0),
        ("IsA", "/c/fr/chien", "/c/fr/animal", 1.0),
        ("Synonym", "/c/en/dog", "/c/de/hund", 1.0),
        ("IsA", "/c/en/table", "/c/en/furniture", 3.0),
        ("IsA", "/c/en/bear", "/c/en/animal", 1.0),
        ("HasA", "/c/en/bear", "/c/en/claw", 1.0),
    ]
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for rel, start, end, weight in rows:
            meta = {"dataset": "/d/wordnet/3.1", "license": "cc:by-sa/4.0",
                    "sources": [{"@id": "/s/resource/wordnet/rdf/3.1"}], "weight": weight}
            f.write(f"/a/[/r/{rel}/,{start}/,{end}/]\t/r/{rel}\t{start}\t{end}\t{json.dumps(meta)}\n")


def test_dump_reader(tmp_path: Path) -> None:
    path = tmp_path / "conceptnet-assertions-5.7.0.csv.gz"
    write_dump(path)
    result = read_dump(path, ["/c/en/dog", "/c/en/cat", "/c/en/zebra"])
    got = {c: [(e.rel, e.start, e.end, e.weight) for e in es] for c, es in result.edges.items()}
    assert got == {
        "/c/en/dog": [("IsA", "/c/en/dog", "/c/en/animal", 2.0), ("RelatedTo", "/c/en/kennel", "/c/en/dog", 0.5)],
        "/c/en/cat": [("IsA", "/c/en/cat", "/c/en/animal", 1.5)],
        "/c/en/zebra": [],
    }
    bad = tmp_path / "bad.csv"
    bad.write_text("/a/x\t/r/IsA\t/c/en/dog\t/c/en/animal\t{\"weight\": 1}\n/a/y\t/r/IsA\t/c/en/dog\n")
    with pytest.raises(UserError, match="line 2: expected 5 tab-separated fields"):
        read_dump(bad, ["/c/en/dog"])
    plain_named_gz = tmp_path / "plain.csv.gz"
    plain_named_gz.write_text("/a/x\t/r/IsA\t/c/en/dog\t/c/en/animal\t{}\n")
    with pytest.raises(UserError, match=f"ConceptNet dump {plain_named_gz} is not gzip-compressed UTF-8 text"):
        read_dump(plain_named_gz, ["/c/en/dog"])
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(path.read_bytes()[:-20])  # a download that stopped early
    with pytest.raises(UserError, match=f"ConceptNet dump {cut} is not gzip-compressed"):
        read_dump(cut, ["/c/en/dog"])
    latin = tmp_path / "latin.csv"
    latin.write_bytes("/a/x\t/r/IsA\t/c/en/b\u00e4r\t/c/en/animal\t{}\n".encode("latin-1"))
    with pytest.raises(UserError, match=f"ConceptNet dump {latin} is not UTF-8 text"):
        read_dump(latin, ["/c/en/dog"])


def test_graph_and_shared_neighbours(api: StandIn, tmp_path: Path) -> None:
    edges = fetch_edges(["/c/en/dog", "/c/en/cat", "/c/en/bear", "/c/en/zebra"], client(api, tmp_path))
    assert shared_neighbours(["/c/en/dog", "/c/en/cat", "/c/en/bear"], edges) == [
        ("/c/en/animal", 3, 14.9), ("/c/en/carnivore", 3, 4.5), ("/c/en/pet", 2, 7.0)]
    assert shared_neighbours(["/c/en/dog", "/c/en/zebra"], edges) == [("/c/en/animal", 2, 8.9)]
    store = pyoxigraph.Store()
    store.extend(conceptnet_quads({"n02084071": "/c/en/dog"}, "imagenet1k", edges, GRAPH))
    prefix = f"PREFIX cn: <{CN}/c/en/> PREFIX r: <{CN}/r/> PREFIX ft: <https://w3id.org/filtag-kg/ontology#> "
    assert bool(store.query(prefix + "ASK { cn:dog r:IsA cn:animal . cn:zebra r:AtLocation cn:zoo }",
                            use_default_graph_as_union=True))
    rows = list(store.query(prefix + """PREFIX rdf: <http://www.w3.org/1999/02/22-rdf-syntax-ns#>
        SELECT ?w WHERE { ?e rdf:subject cn:dog ; rdf:predicate r:IsA ; rdf:object cn:animal ; ft:weight ?w }""",
                            use_default_graph_as_union=True))
    assert [float(r["w"].value) for r in rows] == [6.9]
    rows = list(store.query("SELECT ?c WHERE { ?c <http://www.w3.org/2004/02/skos/core#relatedMatch> ?x }",
                            use_default_graph_as_union=True))
    assert [r["c"].value.rsplit("/", 1)[1] for r in rows] == ["n02084071"]


def test_a_directory_given_as_dump_is_named_so(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=f"ConceptNet dump {tmp_path} is a directory"):
        read_dump(tmp_path, ["/c/en/dog"])


def test_link_run_from_dump(tmp_path: Path) -> None:
    classes = ["bear", "cat", "dog", "zebra"]
    stats = ActivationStats.empty(["conv"], classes, {"conv": 2}, manifest={"dataset": {"label_space": "toy"}})
    stats.add_batch(np.arange(4), {"conv": np.eye(4)[:, :2]})
    tags = filtag_kg.tag(stats, k=1)
    path = tmp_path / "dump.csv.gz"
    write_dump(path)
    linking = link_conceptnet(tags, dump=path)
    assert linking.concepts == {c: f"/c/en/{c}" for c in classes}
    assert linking.graph.value.endswith("/conceptnet") and {q.graph_name for q in linking.quads} == {linking.graph}
    assert sorted((e.start, e.rel, e.end) for e in linking.edges.all_edges()) == [
        ("/c/en/bear", "HasA", "/c/en/claw"), ("/c/en/bear", "IsA", "/c/en/animal"),
        ("/c/en/cat", "IsA", "/c/en/animal"), ("/c/en/dog", "IsA", "/c/en/animal"),
        ("/c/en/kennel", "RelatedTo", "/c/en/dog")]
    assert isinstance(linking.edges.edges["/c/en/dog"][0], Edge)


def test_link_command_from_dump(tmp_path: Path, cli_ok) -> None:
    from filtag_kg.kg.export import export_tags
    from filtag_kg.kg.store import Store

    classes = ["bear", "cat", "dog"]
    stats = ActivationStats.empty(["conv"], classes, {"conv": 3}, manifest={"dataset": {"label_space": "toy"}})
    stats.add_batch(np.arange(3), {"conv": np.eye(3)[[0, 0, 0]]})  # filter 0 is every class's best
    tags = filtag_kg.tag(stats, k=1)
    with Store(tmp_path / "store") as store:
        store.load(export_tags(tags))
    write_dump(tmp_path / "dump.csv.gz")
    out = cli_ok("link", "conceptnet", "--store", tmp_path / "store", "--dump", tmp_path / "dump.csv.gz")
    assert "edges of 3 concepts (5 edges), 0 missing" in out
    from filtag_kg.kg import queries

    with Store(tmp_path / "store") as store:
        rows = list(store.query("""SELECT ?label WHERE {
            ?c <http://www.w3.org/2004/02/skos/core#relatedMatch>/<http://conceptnet.io/r/IsA> ?a .
            ?c <http://www.w3.org/2000/01/rdf-schema#label> ?label } ORDER BY ?label"""))
        shared = queries.run("semantic-conceptnet-neighbours", store, {"layer": "conv", "filter": 0}).values()
    assert [r["label"].value for r in rows] == classes  # all three are animals in the dump
    assert [(r["neighbourLabel"], r["tags"], r["totalWeight"]) for r in shared] == [("animal", 3, 4.5)]
    # a second network tagged on the same classes, linked too: its graph repeats the edges, and the
    # first run's answer stays the same (the union default graph repeats a triple per graph holding it)
    other = filtag_kg.tag(stats, k=1)
    other.manifest["model"] = {"name": "other", "hash": "0" * 64}
    with Store(tmp_path / "store") as store:
        store.load(export_tags(other))
    first, second = shared[0]["run"], run_iri(other)
    cli_ok("link", "conceptnet", "--store", tmp_path / "store", "--dump", tmp_path / "dump.csv.gz", "--run", second)
    with Store(tmp_path / "store") as store:
        for run in (first, second):
            again = queries.run("semantic-conceptnet-neighbours", store, {"layer": "conv", "filter": 0, "run": run})
            assert [(r["neighbourLabel"], r["tags"], r["totalWeight"]) for r in again.values()] == [("animal", 3, 4.5)]


def test_neighbour_weight_counts_each_class_once_whatever_the_selections(tmp_path: Path) -> None:
    """A class tags a filter in several selections of a run (k-best 2 holds the k-best 1 tags): its
    edges count once in totalWeight, as the class counts once in tags."""
    from filtag_kg.kg import queries
    from filtag_kg.kg.export import export_tags

    classes = ["bear", "cat", "dog"]
    stats = ActivationStats.empty(["conv"], classes, {"conv": 3}, manifest={"dataset": {"label_space": "toy"}})
    stats.add_batch(np.arange(3), {"conv": np.array([[1.0, 0, 0], [1.0, 0, 0], [0.5, 1.0, 0]])})  # dog: second best 0
    write_dump(tmp_path / "dump.csv.gz")

    def animal(tags: filtag_kg.TagSet) -> list[tuple[str, int, float, list[str]]]:
        store = pyoxigraph.Store()
        store.extend(export_tags(tags))
        store.extend(link_conceptnet(tags, dump=tmp_path / "dump.csv.gz").quads)
        rows = queries.run("semantic-conceptnet-neighbours", store, {"layer": "conv", "filter": 0}).values()
        return [(r["neighbourLabel"], r["tags"], r["totalWeight"], sorted(r["classes"].split(", "))) for r in rows]

    # IsA animal: bear 1.0, cat 1.5, dog 2.0 (write_dump)
    assert animal(filtag_kg.tag(stats, k=1)) == [("animal", 2, 2.5, ["bear", "cat"])]
    # four selections: k-best 1 and q-quantile 34 (1 filter) tag filter 0 with bear and cat, k-best 2
    # and q-quantile 50 (2 filters) with bear, cat and dog
    assert animal(filtag_kg.tag(stats, k=[1, 2], q=[34.0, 50.0])) == [("animal", 3, 4.5, ["bear", "cat", "dog"])]


def test_neighbours_keep_to_the_runs_own_conceptnet_graph(tmp_path: Path) -> None:
    """Two runs on one label space linked from different dumps: each run's answer has its own
    graph's edges only (the classes' skos:relatedMatch is in both graphs, so the union mixed them)."""
    from filtag_kg.kg import queries
    from filtag_kg.kg.export import export_tags

    stats = ActivationStats.empty(["conv"], ["bear", "cat", "dog"], {"conv": 3}, manifest={"dataset": {"label_space": "toy"}})
    stats.add_batch(np.arange(3), {"conv": np.eye(3)[[0, 0, 0]]})  # filter 0 is every class's best
    first, second = filtag_kg.tag(stats, k=1), filtag_kg.tag(stats, k=1)
    second.manifest["model"] = {"name": "other", "hash": "0" * 64}
    write_dump(tmp_path / "dump.csv.gz")
    with gzip.open(tmp_path / "pets.csv.gz", "wt", encoding="utf-8") as f:
        for animal in ("bear", "cat", "dog"):
            f.write(f"/a/[/r/IsA/,/c/en/{animal}/,/c/en/pet/]\t/r/IsA\t/c/en/{animal}\t/c/en/pet\t{{\"weight\": 1.0}}\n")
    store = pyoxigraph.Store()
    for tags, dump in ((first, "dump.csv.gz"), (second, "pets.csv.gz")):
        store.extend(export_tags(tags))
        store.extend(link_conceptnet(tags, dump=tmp_path / dump).quads)
    for tags, expected in ((first, [("animal", 3, 4.5)]), (second, [("pet", 3, 3.0)])):
        rows = queries.run("semantic-conceptnet-neighbours", store, {"layer": "conv", "filter": 0, "run": run_iri(tags)})
        assert [(r["neighbourLabel"], r["tags"], r["totalWeight"]) for r in rows.values()] == expected


def test_percent_sign_in_a_term(tmp_path: Path, cli_ok) -> None:
    """ConceptNet URIs are plain text: a '%' is a percent sign, encoded as %25 (it stopped `link
    conceptnet --dump` with "Invalid IRI percent encoding"), and no other URI gets the same IRI."""
    from filtag_kg.kg.export import export_tags
    from filtag_kg.kg.store import Store

    assert node("/c/en/100%_beef").value == f"{CN}/c/en/100%25_beef"
    assert node("/c/en/a%2C").value == f"{CN}/c/en/a%252C" != node("/c/en/a,").value == f"{CN}/c/en/a%2C"
    stats = ActivationStats.empty(["conv"], ["cow", "dog"], {"conv": 2}, manifest={"dataset": {"label_space": "toy"}})
    stats.add_batch(np.arange(2), {"conv": np.eye(2)})
    with Store(tmp_path / "store") as store:
        store.load(export_tags(filtag_kg.tag(stats, k=1)))
    with gzip.open(tmp_path / "dump.csv.gz", "wt", encoding="utf-8") as f:
        f.write("/a/[/r/RelatedTo/,/c/en/cow/,/c/en/100%_beef/]\t/r/RelatedTo\t/c/en/cow\t/c/en/100%_beef\t"
                '{"weight": 1.0}\n')
    out = cli_ok("link", "conceptnet", "--store", tmp_path / "store", "--dump", tmp_path / "dump.csv.gz")
    assert "edges of 2 concepts (1 edges), 0 missing" in out
    with Store(tmp_path / "store") as store:
        rows = list(store.query(f"""SELECT ?label ?w WHERE {{
            <{CN}/c/en/cow> <{CN}/r/RelatedTo> ?beef . ?beef <http://www.w3.org/2000/01/rdf-schema#label> ?label .
            <{CN}/a/%5B/r/RelatedTo/%2C/c/en/cow/%2C/c/en/100%25_beef/%5D>
                <http://www.w3.org/1999/02/22-rdf-syntax-ns#object> ?beef ;
                <https://w3id.org/filtag-kg/ontology#weight> ?w }}"""))
    assert [(r["label"].value, float(r["w"].value)) for r in rows] == [("100% beef", 1.0)]


def test_unreachable_api_gives_up_but_uses_the_cache(api: StandIn, tmp_path: Path) -> None:
    fetch_edges(["/c/en/zebra"], client(api, tmp_path))  # cached while the API was up
    api.server.shutdown()
    api.server.server_close()  # now the port refuses connections
    down = client(api, tmp_path, retries=1)
    concepts = ["/c/en/a1", "/c/en/a2", "/c/en/a3", "/c/en/b", "/c/en/zebra", "/c/en/zz"]
    result = fetch_edges(concepts, down, give_up_after=3)
    assert down.requests_made == 3 * 2  # three concepts tried, each with one retry
    assert all("ConnectionError" in result.missing[c] for c in concepts[:3])
    assert result.missing["/c/en/b"] == result.missing["/c/en/zz"] == "not tried: the 3 concepts before it failed"
    assert [e.end for e in result.edges["/c/en/zebra"]] == ["/c/en/animal", "/c/en/equine", "/c/en/zoo"]


def test_link_command_keeps_the_graph_when_concepts_are_missing(api: StandIn, tmp_path: Path, cli_ok, run_cli) -> None:
    from filtag_kg.kg.export import export_tags
    from filtag_kg.kg.store import Store

    classes = ["bear", "cat", "dog"]
    stats = ActivationStats.empty(["conv"], classes, {"conv": 3}, manifest={"dataset": {"label_space": "toy"}})
    stats.add_batch(np.arange(3), {"conv": np.eye(3)})
    with Store(tmp_path / "store") as store:
        store.load(export_tags(filtag_kg.tag(stats, k=1)))
    options = ("link", "conceptnet", "--store", tmp_path / "store", "--api", api.url,
               "--interval", "0", "--timeout", "1", "--retries", "0")
    out = cli_ok(*options, "--cache", tmp_path / "cache")
    assert "edges of 3 concepts" in out and "0 missing" in out
    with Store(tmp_path / "store") as store:
        before = set(store.quads())
    api.script["/c/en/cat"] = ["500"]
    code, out, err = run_cli(*options, "--cache", tmp_path / "empty-cache")
    assert code == 2 and "missing /c/en/cat" in out
    assert "1 of 3 concepts could not be fetched, so the store is unchanged" in err and "--partial" in err
    with Store(tmp_path / "store") as store:
        assert set(store.quads()) == before
    api.script["/c/en/cat"] = ["500"]
    cli_ok(*options, "--cache", tmp_path / "cache-2", "--partial")
    with Store(tmp_path / "store") as store:
        after = set(store.quads())
    lost = {q for q in before - after if q.subject.value.endswith("/c/en/cat") or "/c/en/cat/" in q.subject.value}
    assert lost and after < before  # with --partial the cat's edges are gone, as asked


def test_a_slash_in_a_label_separates_words(tmp_path: Path) -> None:
    """A '/' in a label separates words, as in ConceptNet's own standardisation: kept, it made the rest
    of the label a part of speech ('AC/DC' was linked to /c/en/ac/dc, labelled 'ac', without its edges)."""
    assert concept_uri("AC/DC") == "/c/en/ac_dc" == term_of(concept_uri("AC/DC"))
    assert concept_uri(" x / y ") == "/c/en/x_y"
    stats = ActivationStats.empty(["conv"], ["AC/DC", "cat"], {"conv": 2}, manifest={"dataset": {"label_space": "toy"}})
    stats.add_batch(np.arange(2), {"conv": np.eye(2)})
    dump = tmp_path / "dump.csv"
    dump.write_text('/a/[/r/IsA/,/c/en/ac_dc/,/c/en/band/]\t/r/IsA\t/c/en/ac_dc/n\t/c/en/band\t{"weight": 2.0}\n')
    store = pyoxigraph.Store()
    store.extend(link_conceptnet(filtag_kg.tag(stats, k=1), dump=dump).quads)
    rows = store.query("""SELECT ?label ?other WHERE { ?class <http://www.w3.org/2004/02/skos/core#relatedMatch> ?c .
        ?c <http://www.w3.org/2000/01/rdf-schema#label> ?label ; <http://conceptnet.io/r/IsA> ?other }""",
                       use_default_graph_as_union=True)
    assert [(r["label"].value, r["other"].value) for r in rows] == [("ac dc", f"{CN}/c/en/band")]


def test_an_edge_weight_that_is_no_number_is_named(tmp_path: Path) -> None:
    """A weight null or text in the dump or an API answer was a TypeError's traceback: the dump names its
    line, and a concept whose answer has one is reported missing with the reason."""
    dump = tmp_path / "dump.csv"
    dump.write_text('/a/x\t/r/IsA\t/c/en/dog\t/c/en/animal\t{"weight": 2.0}\n'
                    '/a/y\t/r/IsA\t/c/en/dog\t/c/en/pet\t{"weight": null}\n')
    with pytest.raises(UserError, match=f"{dump}, line 2: edge /a/y has the weight None, not a number"):
        read_dump(dump, ["/c/en/dog"])
    offline = ConceptNetClient("http://127.0.0.1:9", tmp_path / "cache", offline=True)
    bad = edge_json("IsA", "/c/en/cat", "/c/en/pet", 1.0) | {"weight": "heavy"}
    cached = offline._cache_path("/c/en/cat")
    cached.parent.mkdir(parents=True)
    cached.write_text(json.dumps({"edges": [edge_json("IsA", "/c/en/cat", "/c/en/animal", 1.5), bad]}))
    result = fetch_edges(["/c/en/cat"], offline)
    assert not result.edges and "has the weight 'heavy', not a number" in result.missing["/c/en/cat"]


def test_a_label_without_a_term_skips_its_class(tmp_path: Path, cli_ok) -> None:
    """A label that gives an empty ConceptNet term ("...", "") stopped the whole run: its class is
    skipped and reported by label (not as missing, which a re-run would fetch), the others are linked."""
    from filtag_kg.kg.export import export_tags
    from filtag_kg.kg.store import Store

    classes = ["bear", "...", "cat", ""]
    stats = ActivationStats.empty(["conv"], classes, {"conv": 4}, manifest={"dataset": {"label_space": "toy"}})
    stats.add_batch(np.arange(4), {"conv": np.eye(4)})
    with Store(tmp_path / "store") as store:
        store.load(export_tags(filtag_kg.tag(stats, k=1)))
    write_dump(tmp_path / "dump.csv.gz")
    out = cli_ok("link", "conceptnet", "--store", tmp_path / "store", "--dump", tmp_path / "dump.csv.gz")
    assert "edges of 2 concepts (3 edges), 0 missing, 2 classes skipped" in out
    assert "skipped class '': its label gives an empty ConceptNet term" in out
    assert "skipped class '...': its label gives an empty ConceptNet term" in out
    with Store(tmp_path / "store") as store:
        rows = list(store.query("""SELECT ?label ?concept WHERE {
            ?c <http://www.w3.org/2004/02/skos/core#relatedMatch> ?concept ;
               <http://www.w3.org/2000/01/rdf-schema#label> ?label } ORDER BY ?label"""))
    assert [(r["label"].value, r["concept"].value) for r in rows] == [
        ("bear", f"{CN}/c/en/bear"), ("cat", f"{CN}/c/en/cat")]


def test_terms_are_standardised_as_conceptnet_does(tmp_path: Path) -> None:
    """Labels become the terms ConceptNet has (its text standardisation: words split at hyphens,
    apostrophes inside words kept, English articles dropped). Hyphens kept ('hen-of-the-woods') and
    apostrophes dropped ('potters_wheel') made terms ConceptNet has not: 24 ImageNet classes got no edges."""
    assert [concept_uri(label) for label in ("hen-of-the-woods", "potter's_wheel", "jack-o'-lantern", "Shih-Tzu",
                                             "German_short-haired_pointer", "St. Bernard", "to go", "the")] == [
        "/c/en/hen_of_woods", "/c/en/potter's_wheel", "/c/en/jack_o_lantern", "/c/en/shih_tzu",
        "/c/en/german_short_haired_pointer", "/c/en/st_bernard", "/c/en/go", "/c/en/the"]
    labels = imagenet_index().keras_labels
    assert sum("-" in concept_uri(label) for label in labels) == 0
    assert concept_uri("yellow_lady's_slipper") == "/c/en/yellow_lady's_slipper"
    classes = ["hen-of-the-woods", "potter's_wheel"]
    stats = ActivationStats.empty(["conv"], classes, {"conv": 1}, manifest={"dataset": {"label_space": "toy"}})
    stats.add_batch(np.arange(2), {"conv": np.ones((2, 1))})
    dump = tmp_path / "dump.csv"
    dump.write_text("/a/x\t/r/IsA\t/c/en/hen_of_woods/n\t/c/en/mushroom\t{\"weight\": 1.0}\n"
                    "/a/y\t/r/UsedFor\t/c/en/potter's_wheel/n\t/c/en/pottery\t{\"weight\": 2.0}\n")
    edges = link_conceptnet(filtag_kg.tag(stats, k=1), dump=dump).edges
    assert {c: [e.end for e in found] for c, found in edges.edges.items()} == {
        "/c/en/hen_of_woods": ["/c/en/mushroom"], "/c/en/potter's_wheel": ["/c/en/pottery"]}


def test_a_damaged_cache_entry_is_fetched_again(api: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cached answer cut short or edited was a JSONDecodeError's (or KeyError's) traceback: it is
    fetched again, and offline it is reported missing with its file. Two runs caching the same concept
    at once each write a file of their own (they shared one .tmp: FileNotFoundError for the second)."""
    import filtag_kg.kg.conceptnet as conceptnet

    fetch = client(api, tmp_path, page_size=10)
    path = fetch._cache_path("/c/en/cat")  # in tmp_path
    for damaged in ('{"edges": [', '{"edges": [{"@id": "/a/x"}]}', '["edges"]'):
        path.write_text(damaged)
        result = fetch_edges(["/c/en/cat"], client(api, tmp_path, offline=True))
        assert result.missing == {"/c/en/cat": f"offline, and its cached answer {path} is damaged "
                                                "(not the JSON this client writes)"}
        before = api.requests["/c/en/cat"]
        assert [e.end for e in fetch.edges("/c/en/cat")] == ["/c/en/animal", "/c/en/pet", "/c/en/carnivore"]
        assert api.requests["/c/en/cat"] == before + 1
    path.unlink()
    replace, nested = os.replace, []

    def other_run_in_between(src: str, dst: str) -> None:  # a second run caches the concept meanwhile
        if not nested:
            nested.append([])
            nested[0] = client(api, tmp_path, page_size=10).edges("/c/en/cat")
        replace(src, dst)

    monkeypatch.setattr(conceptnet.os, "replace", other_run_in_between)
    assert fetch.edges("/c/en/cat") == nested[0] and len(nested[0]) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_a_class_named_by_its_wnid_is_linked_by_its_imagenet_name(tmp_path: Path) -> None:
    """An image folder of wnid sub-folders (an ImageNet subset) names its classes by wnid: they were
    linked to /c/en/n01440764 and the like, terms ConceptNet has not (no edges, nothing reported)."""
    classes = ["n01440764", "n02102040", "n99999999"]
    stats = ActivationStats.empty(["conv"], classes, {"conv": 1},
                                  manifest={"dataset": {"label_space": "subset", "wnids": classes}})
    stats.add_batch(np.arange(3), {"conv": np.ones((3, 1))})
    dump = tmp_path / "dump.csv"
    dump.write_text('/a/x\t/r/IsA\t/c/en/tench\t/c/en/fish\t{"weight": 1.0}\n'
                    '/a/y\t/r/IsA\t/c/en/english_springer\t/c/en/dog\t{"weight": 2.0}\n')
    result = link_conceptnet(filtag_kg.tag(stats, k=1), dump=dump)
    assert sorted(result.concepts.values()) == ["/c/en/english_springer", "/c/en/tench"]
    assert len(result.edges.all_edges()) == 2
    assert result.edges.skipped == {"n99999999": "its label is a wnid of no ImageNet-1k class, which names no word to link"}


@pytest.mark.parametrize(
    ("page", "reason"),
    [
        ({"edges": [], "view": {"nextPage": 5}}, "has a view.nextPage that is no URL: 5"),
        ({"edges": [], "view": {"nextPage": "http://elsewhere.example/query?node=/c/en/cat&offset=20"}},
         "links its next page to another server: http://elsewhere.example/"),  # was fetched from there
        ({"edges": [], "view": "next"}, "has a 'view' that is no JSON object"),
        ({"edges": [edge_json("IsA", "/c/en/cat", "/c/en/pet", 1.0) | {"@id": 5}]},
         "has an edge whose @id, rel, start or end is missing or not text"),
        ({"edges": [edge_json("IsA", "/c/en/cat", "/c/en/pet", 1.0) | {"end": {"@id": None}}]},
         "has an edge whose @id, rel, start or end is missing or not text"),
    ],
)
def test_an_answer_of_the_wrong_shape_is_reported_missing(tmp_path: Path, page: dict, reason: str) -> None:
    """A nextPage or an edge's @id that was no text, or a view that was no object, stopped the whole
    run with a traceback (AttributeError, TypeError): the concept is reported missing, nothing cached."""
    fetch = ConceptNetClient("http://127.0.0.1:9", tmp_path, min_interval=0.0)
    fetch._get = lambda url: json.loads(json.dumps(page))  # type: ignore[method-assign]
    result = fetch_edges(["/c/en/cat", "/c/en/dog"], fetch)
    assert set(result.missing) == {"/c/en/cat", "/c/en/dog"} and not result.edges
    assert reason in result.missing["/c/en/cat"]
    assert not list(tmp_path.iterdir())


def test_a_cached_edge_whose_ids_are_no_text_is_fetched_again(tmp_path: Path) -> None:
    """A cache entry whose edge had a number for its start passed the check and was a traceback."""
    offline = ConceptNetClient("http://127.0.0.1:9", tmp_path, offline=True)
    bad = edge_json("IsA", "/c/en/cat", "/c/en/pet", 1.0)
    bad["start"]["@id"] = 7
    path = offline._cache_path("/c/en/cat")
    path.write_text(json.dumps({"edges": [bad]}))
    result = fetch_edges(["/c/en/cat"], offline)
    assert result.missing == {"/c/en/cat": f"offline, and its cached answer {path} is damaged "
                                            "(not the JSON this client writes)"}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "--api 'not a url': expected an http\\(s\\) URL with a host"),
        ("ftp://example.org", "--api 'ftp://example.org': expected an http\\(s\\) URL"),
        ("http://[::1", "--api 'http://\\[::1': not a URL \\(Invalid IPv6 URL\\)"),
        ("http://127.0.0.1:99999", "--api 'http://127.0.0.1:99999': not a URL"),
        ("", "--api '': expected"),
    ],
)
def test_an_api_url_that_is_no_http_url_is_refused(tmp_path: Path, url: str, message: str) -> None:
    """'not a url', 'ftp://…' or 'http://[::1' stopped `link conceptnet` with requests' or urllib's
    exception (exit 1, a traceback for the last) on the first concept."""
    with pytest.raises(UserError, match=f"^{message}"):
        ConceptNetClient(url, tmp_path)
    assert ConceptNetClient(" http://127.0.0.1:9// ", tmp_path).base_url == "http://127.0.0.1:9/"


def test_an_empty_dump_is_refused_and_the_graph_kept(tmp_path: Path, cli_ok, run_cli) -> None:
    """An empty dump (a download that wrote nothing, gzip'd or not) replaced the run's ConceptNet graph
    with one without edges, with exit 0: what an earlier run filled was gone."""
    from filtag_kg.kg.export import export_tags
    from filtag_kg.kg.store import Store

    stats = ActivationStats.empty(["conv"], ["bear", "cat"], {"conv": 2}, manifest={"dataset": {"label_space": "toy"}})
    stats.add_batch(np.arange(2), {"conv": np.eye(2)})
    with Store(tmp_path / "store") as store:
        store.load(export_tags(filtag_kg.tag(stats, k=1)))
    write_dump(tmp_path / "dump.csv.gz")
    cli_ok("link", "conceptnet", "--store", tmp_path / "store", "--dump", tmp_path / "dump.csv.gz")
    with Store(tmp_path / "store") as store:
        before = set(store.quads())
    (tmp_path / "empty.csv").write_bytes(b"")
    with gzip.open(tmp_path / "empty.csv.gz", "wb"):
        pass
    for empty in ("empty.csv", "empty.csv.gz"):
        code, _, err = run_cli("link", "conceptnet", "--store", tmp_path / "store", "--dump", tmp_path / empty)
        assert code == 2 and f"ConceptNet dump {tmp_path / empty} holds no assertions (it is empty)" in err
    with Store(tmp_path / "store") as store:
        assert set(store.quads()) == before
