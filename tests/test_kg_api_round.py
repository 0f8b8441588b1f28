"""The knowledge-graph Python API used as from a notebook: a tiny Keras model collected and tagged,
exported, written and read back, loaded into the embedded store and a served one, queried, turned
into graphs and published; and the plausible inputs (str or Path, NamedNode or str, an RdfFormat,
triples, one string for one name) that failed with tracebacks or gave wrong results."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
from pathlib import Path

import numpy as np
import pyoxigraph as ox
import pytest

import filtag_kg
from filtag_kg.errors import UserError
from filtag_kg.kg import coarsen, graphs, queries
from filtag_kg.kg.conceptnet import fetch_edges, read_dump
from filtag_kg.kg.export import export_graphs, export_tags, media_type, rdf_format, run_ids, run_iri, write
from filtag_kg.kg.fair import free_port, publish, serving
from filtag_kg.kg.store import RemoteStore, Store
from filtag_kg.records import TagSet

from test_export import synthetic_tags

LICENSE = "https://creativecommons.org/licenses/by/4.0/"
XSD = "http://www.w3.org/2001/XMLSchema#"


@pytest.fixture(scope="module")
def tags() -> TagSet:
    """The tags of a tiny random Keras CNN on random images of three classes."""
    import keras

    keras.utils.set_random_seed(1)
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="c1")(inputs)
    x = keras.layers.Conv2D(5, 3, activation="relu", name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x), name="tiny")
    images = np.random.default_rng(0).normal(size=(30, 12, 12, 3)).astype(np.float32)
    stats = filtag_kg.collect(model, images, labels=np.arange(30) % 3, batch_size=8, progress=False)
    return filtag_kg.tag(stats, k=[1, 2], q=[25])


@pytest.fixture(scope="module")
def store(tags: TagSet, tmp_path_factory: pytest.TempPathFactory) -> Store:
    db = Store(tmp_path_factory.mktemp("kgapi") / "store")
    db.load(export_tags(tags))
    return db


def _rows(results: queries.Results) -> list[str]:
    return sorted(map(repr, results.rows))


def test_embedded_and_served_store_answer_alike(tags: TagSet, store: Store, tmp_path: Path) -> None:
    run = run_iri(tags)
    params = {"run": run, "method": "ft:KBest", "parameter": 1}
    with serving(tmp_path / "served", free_port(), allow_updates=True, password="pw") as (url, password):
        remote = RemoteStore.at(url, auth=("filtag-kg", password))
        assert remote.load(export_tags(tags)) == len(store)
        for name in ("runs", "networks", "layer-tag-statistics", "class-specific-filters"):
            assert _rows(queries.run(name, remote)) == _rows(queries.run(name, store)), name
        selected = [_rows(queries.run("selection-tags", db, params)) for db in (remote, store)]
        assert selected[0] == selected[1]
        for method, parameter in tags.selections:
            from_tags = graphs.filter_class_graph(tags, method, parameter)
            for db in (store, remote):
                from_store = graphs.store_filter_class_graph(db, ox.NamedNode(run), method, parameter)
                assert dict(from_store.nodes(data=True)) == dict(from_tags.nodes(data=True))
                assert {frozenset(e[:2]): e[2] for e in from_store.edges(data=True)} == \
                       {frozenset(e[:2]): e[2] for e in from_tags.edges(data=True)}


def test_write_and_parse_give_the_same_quads_in_every_format(tags: TagSet) -> None:
    quads = list(export_tags(tags))
    for name in ("turtle", "nt", "nq", "trig", "rdfxml", "jsonld"):
        out = io.BytesIO()
        assert write(quads, out, name) == len(quads)
        fmt = rdf_format(name)
        back = set(ox.parse(out.getvalue(), ox.RdfFormat.JSON_LD if fmt == "jsonld" else fmt))
        keep_graphs = fmt == "jsonld" or fmt.supports_datasets
        assert back == {q if keep_graphs else ox.Quad(q.subject, q.predicate, q.object) for q in quads}, name


def test_a_pyoxigraph_rdf_format_is_taken() -> None:
    """rdf_format and write failed with "'RdfFormat' object has no attribute 'lower'"; media_type
    called RdfFormat.JSON_LD "not an RDF format"."""
    quads = [ox.Quad(ox.NamedNode("http://example.org/s"), ox.NamedNode("http://example.org/p"), ox.Literal("o"))]
    assert rdf_format(ox.RdfFormat.TURTLE) == ox.RdfFormat.TURTLE
    assert rdf_format(ox.RdfFormat.JSON_LD) == "jsonld"  # written with the bundled @context
    assert media_type(ox.RdfFormat.JSON_LD) == "application/ld+json"
    by_name, by_format = io.BytesIO(), io.BytesIO()
    write(quads, by_name, "turtle")
    write(quads, by_format, ox.RdfFormat.TURTLE)
    assert by_format.getvalue() == by_name.getvalue()
    with pytest.raises(UserError, match="RDF format N3 is not one filtag-kg writes; use one of: "):
        write(quads, io.BytesIO(), ox.RdfFormat.N3)
    with pytest.raises(UserError, match="an RDF format is a name such as 'turtle' or a pyoxigraph.RdfFormat, got 3"):
        rdf_format(3)  # type: ignore[arg-type]


def test_write_takes_triples_and_names_what_is_neither(tmp_path: Path) -> None:
    """Triples failed with "'Triple' object has no attribute 'triple'" (Turtle) or 'graph_name'
    (JSON-LD); one Quad, which iterates over its terms, with an AttributeError of a NamedNode."""
    s, p = ox.NamedNode("http://example.org/s"), ox.NamedNode("http://example.org/p")
    integer = ox.Literal("1", datatype=ox.NamedNode(XSD + "integer"))
    triples = [ox.Triple(s, p, ox.Literal("a", language="en")), ox.Triple(s, p, integer)]
    for name in ("nt", "jsonld", "nq"):
        out = io.BytesIO()
        assert write(triples, out, name) == 2
        back = ox.parse(out.getvalue(), ox.RdfFormat.JSON_LD if name == "jsonld" else rdf_format(name))
        assert {q.triple for q in back} == set(triples)
    target = tmp_path / "one.nt"
    target.write_bytes(b"kept")
    with pytest.raises(TypeError, match="an iterable of pyoxigraph Quads or Triples; item 1 is a NamedNode"):
        write(ox.Quad(s, p, s), target)  # type: ignore[arg-type]
    assert target.read_bytes() == b"kept"  # written whole or not at all


def test_json_ld_keeps_a_blank_node_graph() -> None:
    """A quad in a graph named by a blank node came back in the default graph from JSON-LD (N-Quads
    and TriG kept it)."""
    s, p = ox.NamedNode("http://example.org/s"), ox.NamedNode("http://example.org/p")
    quads = [ox.Quad(s, p, ox.Literal("in a blank graph"), ox.BlankNode("g")), ox.Quad(s, p, ox.Literal("default"))]
    out = io.BytesIO()
    write(quads, out, "jsonld")
    back = {q.object.value: q.graph_name for q in ox.parse(out.getvalue(), ox.RdfFormat.JSON_LD)}
    assert isinstance(back["in a blank graph"], ox.BlankNode)
    assert back["default"] == ox.DefaultGraph()


@pytest.mark.parametrize("call", [run_iri, run_ids, export_graphs])
def test_the_run_of_what_is_no_tag_set_is_a_user_error(call, tmp_path: Path) -> None:
    """A folder's path failed with "'PosixPath' object has no attribute 'manifest'"."""
    with pytest.raises(UserError, match="tags must be a filtag_kg.TagSet .* got PosixPath"):
        call(tmp_path)


def test_publish_takes_a_str_folder_an_iri_node_and_a_date(tags: TagSet, store: Store, tmp_path: Path) -> None:
    """A str `out` failed with "'str' object has no attribute 'absolute'", a NamedNode run with a
    TypeError, a datetime.date `issued` with "expected string or bytes-like object"."""
    run = run_iri(tags)
    out = tmp_path / "site"
    published = publish(store, ox.NamedNode(run), str(out), license=LICENSE, creator="Me", issued=dt.date(2026, 1, 2))
    stem = f"filtag-{run.rsplit('/', 1)[1]}"
    names = [f"{stem}.nq", f"{stem}.trig", f"{stem}.jsonld", "dataset.ttl", "dataset.jsonld"]
    assert [f.name for f in published.files] == names
    assert all(f.parent == out and f.is_file() for f in published.files)
    assert json.loads((out / "dataset.jsonld").read_text())["datePublished"] == "2026-01-02"
    held = {q for g in published.graphs for q in store.quads(g)}
    assert set(ox.parse(path=str(published.files[0]), format=ox.RdfFormat.N_QUADS)) == held
    with pytest.raises(UserError, match="publish reads the run from the embedded store .*, got pyoxigraph.Store"):
        publish(store.oxigraph, run, out, license=LICENSE, creator="Me")  # type: ignore[arg-type]


def test_store_graph_refuses_a_list_for_its_one_layer(tags: TagSet, store: Store) -> None:
    """['c1'] was looked up as the layer named "['c1']": 'no tags … in layer ['c1']; layers with such
    tags: c1, c2'."""
    with pytest.raises(UserError, match=r"layer must be one layer's name, got \['c1'\]"):
        graphs.store_filter_class_graph(store, run_iri(tags), "k-best", 1, layer=["c1"])  # type: ignore[arg-type]


def test_python_values_of_every_xsd_integer_type_are_ints() -> None:
    """xsd:byte, xsd:unsignedInt and the like (another server keeps them) came back as text."""
    for name in ("byte", "unsignedInt", "unsignedLong", "unsignedShort", "unsignedByte", "nonPositiveInteger"):
        assert queries.python_value(ox.Literal("0", datatype=ox.NamedNode(XSD + name))) == 0, name


def test_bind_names_a_parameter_name_that_is_no_string() -> None:
    """{1: …} failed with "sequence item 0: expected str instance, int found"."""
    with pytest.raises(UserError, match="query 'filter-tags' has no parameter 1; its parameters: layer, filter, run"):
        queries.load("filter-tags").bind({1: "c1"})  # type: ignore[dict-item]


def test_wordnet_linking_takes_one_layer_a_node_and_a_listed_selection(wn, tmp_path: Path) -> None:
    """link_wordnet(layers='conv1') coarsened the layers 'c', 'o', … ("layer 'c' is not in the tag
    set"); tags_from_store with a NamedNode failed with an AttributeError; coarsen refused
    ['k-best', 1] (a selection read from JSON) while naming ('k-best', 1) among those it has."""
    animals = synthetic_tags()
    linking = coarsen.link_wordnet(animals, wn, layers="conv1")
    assert {(r.layer, r.selection) for r in linking.layers} == {("conv1", s) for s in animals.selections}
    db = Store(tmp_path / "store")
    db.load(export_tags(animals))
    read, ids = coarsen.tags_from_store(db, ox.NamedNode(run_iri(animals)))
    assert ids.tagging == run_ids(animals).tagging and read.layers == animals.layers
    listed = coarsen.coarsen(animals, wn, "conv1", ["k-best", 1])  # type: ignore[arg-type]
    assert listed.selection == ("k-best", 1)
    assert listed.filters == coarsen.coarsen(animals, wn, "conv1", ("k-best", 1)).filters
    with pytest.raises(UserError, match="tags must be a filtag_kg.TagSet"):
        coarsen.link_wordnet(str(tmp_path), wn)  # type: ignore[arg-type]


def test_one_string_is_one_conceptnet_concept(tmp_path: Path) -> None:
    """read_dump(path, '/c/en/dog') looked for the concepts '/', 'c', 'e', … and found no edge;
    fetch_edges asked the API for each character."""
    dump = tmp_path / "assertions.csv.gz"
    with gzip.open(dump, "wt", encoding="utf-8") as f:
        f.write('/a/[/r/IsA/,/c/en/dog/,/c/en/animal/]\t/r/IsA\t/c/en/dog\t/c/en/animal\t{"weight": 2.0}\n')
    edges = read_dump(dump, "/c/en/dog")
    assert list(edges.edges) == ["/c/en/dog"]
    assert [(e.start, e.end, e.weight) for e in edges.edges["/c/en/dog"]] == [("/c/en/dog", "/c/en/animal", 2.0)]

    class Offline:
        offline = True
        asked: list[str] = []

        def is_cached(self, concept: str) -> bool:
            return False

        def edges(self, concept: str) -> list:
            self.asked.append(concept)
            return []

    client = Offline()
    fetch_edges("/c/en/dog", client)  # type: ignore[arg-type]
    assert client.asked == ["/c/en/dog"]


def test_serving_names_a_port_that_is_no_number(tmp_path: Path) -> None:
    """A port given as text (read from an environment variable) failed with "'<' not supported
    between instances of 'int' and 'str'"."""
    with pytest.raises(UserError, match="--port '7878': expected a TCP port from 1 to 65535"):
        with serving(tmp_path / "store", "7878", allow_updates=True):  # type: ignore[arg-type]
            pass
    assert not (tmp_path / "store").exists()  # refused before a store was made


def test_graph_calls_name_an_empty_layer_list_and_what_is_no_graph(tags: TagSet, tmp_path: Path) -> None:
    """layers=[] said "no tags with k-best 1 in layer(s) ; tagged layers: c1, c2"; write_graphml of
    None failed with "'NoneType' object has no attribute 'copy'"."""
    with pytest.raises(UserError, match="layers is empty: name one layer or more, or leave it out for all; layers: c1"):
        graphs.filter_class_graph(tags, "k-best", 1, layers=[])
    with pytest.raises(UserError, match="write_graphml writes a networkx graph, got TagSet"):
        graphs.write_graphml(tags, tmp_path / "tags.graphml")  # type: ignore[arg-type]
    assert not (tmp_path / "tags.graphml").exists()


def test_results_round_trip_through_json_and_tsv() -> None:
    """The W3C JSON and TSV results keep language tags, datatypes, blank nodes, unbound cells and text
    that needs escaping (CSV drops language and datatype, as its format says)."""
    s = ox.NamedNode("http://example.org/s")
    terms = [ox.Literal("chat", language="fr"), ox.Literal("5", datatype=ox.NamedNode(XSD + "integer")),
             ox.Literal("x", datatype=ox.NamedNode("http://example.org/type")), ox.Literal('a\t"b"\r\nc'),
             ox.BlankNode("b1"), ox.NamedNode("http://example.org/o"), None]
    results = queries.Results(["s", "o"], [(s, o) for o in terms])
    for name, fmt in (("json", ox.QueryResultsFormat.JSON), ("tsv", ox.QueryResultsFormat.TSV)):
        back = ox.parse_query_results(results.serialize(name).encode(), fmt)
        assert [v.value for v in back.variables] == results.variables
        assert [(row["s"], row["o"]) for row in back] == results.rows, name


def test_a_minter_is_given_as_one_or_as_its_base_iri(tags: TagSet) -> None:
    """`export_tags(tags, minter="http://…/")` failed with an AttributeError deep inside (a str has no
    .run); a base IRI now mints as Minter(base) does, and anything else is named."""
    from filtag_kg.kg.vocab import Minter

    base = "http://example.org/kg/"
    assert list(export_tags(tags, minter=base)) == list(export_tags(tags, minter=Minter(base)))
    assert run_iri(tags, base) == run_iri(tags, Minter(base)) and run_iri(tags, base).startswith(base)
    assert export_graphs(tags, base) == export_graphs(tags, Minter(base))
    with pytest.raises(UserError, match="minter must be a filtag_kg.kg.vocab.Minter or a base IRI, got int"):
        run_iri(tags, 5)  # type: ignore[arg-type]
    with pytest.raises(UserError, match="base IRI must end with '/' or '#'"):
        run_iri(tags, "http://example.org/kg")
