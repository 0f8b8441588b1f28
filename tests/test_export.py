"""RDF export of tagging runs: SHACL-valid, deterministic, complete against the TagSet, every format
round-trips, and the export streams."""

from __future__ import annotations

import hashlib
import io
import json
import math
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pyoxigraph as ox
import pytest
import rdflib

import filtag_kg
from filtag_kg.errors import UserError
from filtag_kg.imagenet import parse_filtag_file
from filtag_kg.kg import queries
from filtag_kg.kg.export import (
    export_graphs, export_tags, jsonld_context, label_space, rdf_format, run_ids, run_iri, tag_class_keys,
    tag_signature, validate, write,
)
from filtag_kg.kg.vocab import FT, NNO, Minter, layer_keys, sparql_prefixes
from filtag_kg.records import ActivationStats, TagSet

CLASSES = ["bear", "bird", "cat", "cow", "dog", "elephant"]
WNIDS = ["n02131653", "n01503061", "n02121808", "n01887787", "n02084071", None]
LAYERS = [
    dict(name="input_layer", type="InputLayer", index=0, filters=None, kernel_size=None, params=0, activation=None),
    dict(name="conv1", type="Conv2D", index=1, filters=8, kernel_size=[3, 3], params=80, activation="relu"),
    dict(name="pool1", type="MaxPooling2D", index=2, filters=None, kernel_size=[2, 2], params=0, activation=None),
    dict(name="conv2", type="Conv2D", index=3, filters=12, kernel_size=[5, 3], params=2412, activation="relu"),
    dict(name="odd", type="MyCustomLayer", index=4, filters=None, kernel_size=None, params=7, activation=None),
    dict(name="predictions", type="Dense", index=5, filters=None, kernel_size=None, params=66, activation="softmax"),
]


def synthetic_stats(seed: int = 0, model_hash: str = "ab" * 32) -> ActivationStats:
    manifest = {
        "model": {"name": "tiny-cnn", "hash": model_hash, "family": "cnn", "source": "built in the test",
                  "layers": LAYERS},
        "dataset": {"name": "Animal-Shape", "label_space": "animal-shape", "root": None, "wnids": WNIDS},
        "split": {"name": "train", "fraction": 0.2, "seed": 0},
        "software": {"filtag-kg": "0.1.0", "keras": "3.1.0", "numpy": "2.0"},
        "created": "2026-11-21T10:00:00+00:00",
    }
    stats = ActivationStats.empty(["conv1", "conv2"], CLASSES, {"conv1": 8, "conv2": 12}, manifest)
    rng = np.random.default_rng(seed)
    labels = np.arange(60) % len(CLASSES)
    stats.add_batch(labels, {"conv1": rng.random((60, 8)), "conv2": rng.random((60, 12))})
    return stats


def synthetic_tags(seed: int = 0, k: tuple[int, ...] = (1, 3), q: tuple[float, ...] = (25.0,)) -> TagSet:
    return filtag_kg.tag(synthetic_stats(seed), k=list(k), q=list(q))


@pytest.fixture(scope="module")
def tags() -> TagSet:
    return synthetic_tags()


@pytest.fixture(scope="module")
def quads(tags: TagSet) -> list[ox.Quad]:
    return list(export_tags(tags))


def _store(quads: list[ox.Quad]) -> ox.Store:
    store = ox.Store()
    store.extend(quads)
    return store


def _rows(store: ox.Store, sparql: str) -> list[tuple]:
    return [tuple(None if t is None else t.value for t in row)
            for row in store.query(sparql_prefixes() + sparql, use_default_graph_as_union=True)]


def _ask(store: ox.Store, sparql: str) -> bool:
    return bool(store.query(sparql_prefixes() + sparql, use_default_graph_as_union=True))


def test_export_conforms_to_the_shapes(quads: list[ox.Quad]) -> None:
    conforms, report = validate(quads)
    assert conforms, report


def test_shapes_catch_broken_exports(quads: list[ox.Quad]) -> None:
    """Removing a tag's filter, giving a k-best tag a q, a malformed wnid, a similar class without
    its class or a malformed tag signature each fail validation."""
    tag = next(q.subject for q in quads if q.predicate.value == FT + "filter")
    without_filter = [q for q in quads if not (q.subject == tag and q.predicate.value == FT + "filter")]
    assert not validate(without_filter)[0]
    kbest = next(q.subject for q in quads if q.predicate.value == FT + "k")
    both = quads + [ox.Quad(kbest, ox.NamedNode(FT + "q"), ox.Literal("5", datatype=ox.NamedNode(
        "http://www.w3.org/2001/XMLSchema#decimal")), quads[-1].graph_name)]
    conforms, report = validate(both)
    assert not conforms and "xone" in report.lower()
    wnid = next(q for q in quads if q.predicate.value == FT + "wnid")
    bad = [q if q != wnid else ox.Quad(q.subject, q.predicate, ox.Literal("02131653"), q.graph_name) for q in quads]
    assert not validate(bad)[0]
    similar = next(q for q in quads if q.predicate.value == FT + "similarClass")
    assert not validate([q for q in quads if q != similar])[0]
    signature = next(q for q in quads if q.predicate.value == FT + "filterTagSignature")
    garbled = ox.Quad(signature.subject, signature.predicate, ox.Literal("conv#7"), signature.graph_name)
    assert not validate([q if q != signature else garbled for q in quads])[0]


def test_every_tag_is_in_the_graph_with_its_numbers(tags: TagSet, quads: list[ox.Quad]) -> None:
    store = _store(quads)
    got = _rows(store, """
        SELECT ?layer ?i ?label ?score ?rank ?method ?k ?q WHERE {
          ?t a ft:Tag ; ft:filter ?f ; ft:class ?c ; ft:score ?score ; ft:rank ?rank ; ft:method ?method .
          OPTIONAL { ?t ft:k ?k } OPTIONAL { ?t ft:q ?q }
          ?f ft:filterIndex ?i ; ft:ofLayer ?l . ?l rdfs:label ?layer . ?c rdfs:label ?label }""")
    assert len(got) == len(tags)
    expected = {(t.layer, t.filter, t.class_name, t.score, t.rank, t.method, t.parameter) for t in tags}
    method = {FT + "KBest": "k-best", FT + "QQuantile": "q-quantile"}
    seen = {(layer, int(i), label, float(score), int(rank), method[m], float(k if k is not None else q))
            for layer, i, label, score, rank, m, k, q in got}
    assert seen == expected


def test_architecture_is_fairnets_style(tags: TagSet, quads: list[ox.Quad]) -> None:
    store = _store(quads)
    layers = {row[0]: row[1:] for row in _rows(store, """
        SELECT ?name ?type ?seq ?filters ?kernel ?params WHERE {
          ?net a nno:NeuralNetwork ; nno:hasModel/nno:hasLayer ?l . ?l a ?type ; rdfs:label ?name .
          OPTIONAL { ?l nno:hasLayerSequence ?seq } OPTIONAL { ?l ft:filterCount ?filters }
          OPTIONAL { ?l ft:kernelSize ?kernel } OPTIONAL { ?l ft:parameterCount ?params } }""")}
    assert set(layers) == {e["name"] for e in LAYERS}
    assert layers["conv2"] == (NNO + "Conv2D", "4", "12", "5x3", "2412")  # sequence = index + 1
    assert layers["pool1"][0] == NNO + "MaxPooling2D" and layers["predictions"][0] == NNO + "Dense"
    assert layers["odd"][0] == NNO + "Layer"  # no NNO class for it; its Keras name is kept
    assert ("MyCustomLayer",) in _rows(store, "SELECT ?k WHERE { ?l rdfs:label 'odd' ; ft:kerasClass ?k }")
    per_layer = dict(_rows(store, """SELECT ?name (COUNT(?f) AS ?n) WHERE {
        ?l rdfs:label ?name ; ft:hasFilter ?f . ?f ft:ofLayer ?l } GROUP BY ?name"""))
    assert per_layer == {"conv1": "8", "conv2": "12"}


def test_classes_and_provenance(tags: TagSet, quads: list[ox.Quad]) -> None:
    store = _store(quads)
    classes = sorted(_rows(store, """SELECT ?i ?label ?wnid WHERE {
        ?c a ft:ImageClass ; ft:classIndex ?i ; rdfs:label ?label ; skos:inScheme ?s . OPTIONAL { ?c ft:wnid ?wnid } }
        """), key=lambda r: int(r[0]))
    assert [(int(i), label, wnid) for i, label, wnid in classes] == list(zip(range(6), CLASSES, WNIDS))
    ids = run_ids(tags)
    minter = Minter()
    run = minter.run(ids.tagging).value
    selections = {r[0] for r in _rows(store, f"SELECT ?s WHERE {{ <{run}> ft:selection ?s }}")}
    assert selections == {"k-best 1", "k-best 3", "q-quantile 25"}
    (ended,) = _rows(store, f"""SELECT ?t WHERE {{ <{run}> prov:wasInformedBy ?c . ?c a ft:CollectionRun ;
        prov:endedAtTime ?t }}""")
    assert ended == ("2026-11-21T10:00:00Z",)  # the manifest time, as xsd:dateTime


def test_quads_go_to_three_graphs(tags: TagSet, quads: list[ox.Quad]) -> None:
    graphs = export_graphs(tags)
    by_graph: dict[str, int] = {}
    for q in quads:
        by_graph[q.graph_name.value] = by_graph.get(q.graph_name.value, 0) + 1
    assert set(by_graph) == {g.value for g in graphs}
    # the run graph holds 7 or 8 quads per tag (8 with a score) plus the provenance
    assert by_graph[graphs.run.value] > 8 * len(tags)
    assert by_graph[graphs.network.value] < by_graph[graphs.run.value]


def test_export_is_deterministic_and_ids_follow_the_inputs(tags: TagSet, quads: list[ox.Quad], tmp_path: Path) -> None:
    assert list(export_tags(synthetic_tags())) == quads
    stats = synthetic_stats()
    stats.save(tmp_path / "stats")  # saving adds layers/classes/n_images to the manifest: same ids
    assert run_ids(filtag_kg.tag(ActivationStats.load(tmp_path / "stats"), k=[1, 3], q=[25.0])) == run_ids(tags)
    assert run_ids(synthetic_tags(k=(1,))).tagging != run_ids(tags).tagging
    assert run_ids(synthetic_tags(seed=1)).tagging != run_ids(tags).tagging  # other tags, other run
    assert run_ids(synthetic_tags(seed=1)).model == run_ids(tags).model  # same network
    other_base = list(export_tags(tags, Minter("https://example.org/kg/")))
    assert len(other_base) == len(quads)
    assert all(q.subject.value.startswith("https://example.org/kg/") for q in other_base)


@pytest.mark.parametrize("fmt", ["turtle", "ntriples", "nquads", "trig", "rdfxml", "jsonld"])
def test_every_format_round_trips(fmt: str, quads: list[ox.Quad]) -> None:
    out = io.BytesIO()
    assert write(iter(quads), out, fmt) == len(quads)
    parse_format = {"turtle": ox.RdfFormat.TURTLE, "ntriples": ox.RdfFormat.N_TRIPLES, "nquads": ox.RdfFormat.N_QUADS,
                    "trig": ox.RdfFormat.TRIG, "rdfxml": ox.RdfFormat.RDF_XML, "jsonld": ox.RdfFormat.JSON_LD}[fmt]
    back = list(ox.parse(out.getvalue(), format=parse_format))
    if parse_format.supports_datasets:
        assert set(back) == set(quads)
    else:
        assert {q.triple for q in back} == {q.triple for q in quads}


@pytest.mark.parametrize("fmt", ["turtle", "ntriples", "rdfxml"])
def test_a_triple_format_export_goes_back_into_its_graphs(
    fmt: str, tags: TagSet, quads: list[ox.Quad], tmp_path: Path,
) -> None:
    """A Turtle export holds no graph names: loaded into one graph, its network and classes repeated
    those the network and label-space graphs of other runs hold (the union gave each network row
    twice). `export_in_graphs` puts every triple back into the graph the export gave it, under the
    run's own base, and refuses a file that is not one tag set's export, or whose label space the
    store holds with other classes."""
    from filtag_kg.kg.export import export_in_graphs
    from filtag_kg.kg.store import Store

    out = io.BytesIO()
    write(iter(quads), out, fmt)
    parse_format = {"turtle": ox.RdfFormat.TURTLE, "ntriples": ox.RdfFormat.N_TRIPLES,
                    "rdfxml": ox.RdfFormat.RDF_XML}[fmt]

    def triples(data: bytes = out.getvalue()) -> Iterator[ox.Triple]:
        return (q.triple for q in ox.parse(data, format=parse_format))

    assert set(export_in_graphs(triples, "run.ttl")) == set(quads)
    other_base = list(export_tags(tags, Minter("https://example.org/kg/")))
    data = ox.serialize((q.triple for q in other_base), format=parse_format)
    assert set(export_in_graphs(lambda: triples(data), "run.ttl")) == set(other_base)
    two = ox.serialize((q.triple for q in [*quads, *export_tags(synthetic_tags(seed=3))]), format=parse_format)
    with pytest.raises(UserError, match=r"run\.ttl: not the export of one tag set \(2 tagging runs\)"):
        list(export_in_graphs(lambda: triples(two), "run.ttl"))
    with Store(tmp_path / "store") as store:
        store.load(export_in_graphs(triples, "run.ttl", into=store))
        assert set(store.quads()) == set(_store(quads))  # (literals in the store's canonical form)
        other = synthetic_tags(seed=5)
        other.classes = ["lion", *other.classes[1:]]
        lion = ox.serialize((q.triple for q in export_tags(other)), format=parse_format)
        with pytest.raises(UserError, match="holds the label space 'animal-shape' with other classes .class 0: "
                                            "'bear' in the store, 'lion' here.; loading this file lion.ttl"):
            list(export_in_graphs(lambda: triples(lion), "lion.ttl", into=store))


def test_jsonld_is_read_by_rdflib_with_the_published_context(quads: list[ox.Quad]) -> None:
    """An independent JSON-LD implementation reads the same dataset; the context is the bundled one."""
    out = io.BytesIO()
    write(quads, out, "jsonld")
    document = json.loads(out.getvalue())
    assert document["@context"] == jsonld_context()
    assert jsonld_context()["ft"] == FT and jsonld_context()["nno"] == NNO
    dataset = rdflib.Dataset()
    dataset.parse(data=out.getvalue(), format="json-ld")
    expected = rdflib.Dataset()
    expected.parse(data=ox.serialize(quads, format=ox.RdfFormat.N_QUADS), format="nquads")
    assert len(dataset) == len(expected) and set(dataset.quads()) == set(expected.quads())
    referenced = io.BytesIO()
    write(quads[:3], referenced, "jsonld", context="https://w3id.org/filtag-kg/context.jsonld")
    assert json.loads(referenced.getvalue())["@context"] == "https://w3id.org/filtag-kg/context.jsonld"


def test_write_to_paths_and_format_errors(quads: list[ox.Quad], tmp_path: Path) -> None:
    write(quads, tmp_path / "run.ttl")
    write(quads, tmp_path / "run.nq")
    assert {q.triple for q in ox.parse(path=str(tmp_path / "run.ttl"))} == {q.triple for q in quads}
    assert set(ox.parse(path=str(tmp_path / "run.nq"))) == set(quads)
    with pytest.raises(UserError, match="unknown RDF format 'yaml'"):
        write(quads, tmp_path / "run.yaml")
    with pytest.raises(UserError, match="no RDF format"):
        rdf_format(None, tmp_path / "noextension")


def test_imported_filtag_file_exports_valid_rdf(filtag_vgg16_file: Path) -> None:
    tags, _report = parse_filtag_file(filtag_vgg16_file, model="VGG16", layer="block5_conv3")
    quads = list(export_tags(tags))
    conforms, report = validate(quads)
    assert conforms, report
    store = _store(quads)
    assert _rows(store, "SELECT (COUNT(*) AS ?n) WHERE { ?t a ft:Tag }") == [(str(len(tags)),)]
    assert not _ask(store, "ASK { ?t ft:score ?s }")  # the files have no scores
    assert not _ask(store, "ASK { ?r a ft:CollectionRun }")  # nor a collection we could describe
    assert _ask(store, "ASK { ?r a ft:TaggingRun ; rdfs:comment ?c FILTER(CONTAINS(?c, 'EXAMPLE_FilterTags')) }")
    # VGG16's block5_conv3 is 18th in NNO's 1-based layer sequence (the input layer is 1st)
    assert _rows(store, "SELECT ?s WHERE { ?l rdfs:label 'block5_conv3' ; nno:hasLayerSequence ?s }") == [("18",)]
    zebra = _rows(store, "SELECT ?c WHERE { ?c ft:wnid 'n02391049' ; rdfs:label 'zebra' }")
    assert len(zebra) == 1 and zebra[0][0].endswith("/classes/imagenet1k/n02391049")


def test_export_streams_without_a_second_copy() -> None:
    """Consuming the export of 20,000 tags one quad at a time needs far less memory than the quads."""
    stats = ActivationStats.empty(["conv"], [f"c{i}" for i in range(100)], {"conv": 512},
                                  {"model": {"name": "wide", "hash": "cd" * 32}})
    rng = np.random.default_rng(1)
    stats.add_batch(np.arange(200) % 100, {"conv": rng.random((200, 512))})
    tags = filtag_kg.tag(stats, k=[50, 150])  # 100 classes x 200 = 20,000 tags
    assert len(tags) == 20_000
    tracemalloc.start()
    count = sum(1 for _ in export_tags(tags))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count > 8 * len(tags) * 0.99
    tracemalloc.start()
    materialized = list(export_tags(tags))
    _, peak_list = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(materialized) == count
    assert peak < peak_list / 10, (peak, peak_list)
    assert not math.isnan(tags.score[0])


def test_selection_and_summary_nodes_repeat_the_tagsets_numbers(tags: TagSet, quads: list[ox.Quad]) -> None:
    """The index nodes the aggregate queries read (selections, layer and filter summaries) agree with
    the TagSet; a layer summary without its selection fails the shapes."""
    store = _store(quads)
    selections = {(m, float(p)): int(n) for m, p, n in _rows(store, """
        SELECT ?label ?p ?n WHERE { ?s a ft:Selection ; ft:selectionParameter ?p ; ft:selectedTagCount ?n ;
                                       rdfs:label ?label }""")
                  for m in [m.rsplit(" ", 1)[0]]}
    assert selections == {(m, float(p)): len(tags.select(m, p)) for m, p in tags.selections}
    # every tag links to the layer summary of its own layer and selection, and to no other
    assert _rows(store, "SELECT (COUNT(?x) AS ?n) WHERE { ?t ft:inLayerSummary ?x }")[0][0] == str(len(tags))
    assert _rows(store, """
        SELECT (COUNT(?t) AS ?n) WHERE {
          ?t ft:inLayerSummary ?x ; ft:filter/ft:ofLayer ?l ; ft:method ?m ; ft:k|ft:q ?tp .
          ?x ft:summaryOf ?l . ?s ft:hasLayerSummary ?x ; ft:method ?m ; ft:selectionParameter ?p .
          FILTER(?tp = ?p) }""")[0][0] == str(len(tags))
    layers = _rows(store, """
        SELECT ?label ?layer ?n ?filters ?classes ?specific (COUNT(?only) AS ?specificTags) ?mean ?max WHERE {
          ?s ft:hasLayerSummary ?x ; rdfs:label ?label .
          ?x ft:summaryOf ?l ; ft:selectedTagCount ?n ; ft:taggedFilterCount ?filters ;
             ft:taggedClassCount ?classes ; ft:classSpecificFilterCount ?specific ; ft:meanScore ?mean ;
             ft:maxScore ?max .
          ?l rdfs:label ?layer .
          OPTIONAL { ?x ft:classSpecificTag ?only } }
        GROUP BY ?label ?layer ?n ?filters ?classes ?specific ?mean ?max""")
    assert len(layers) == len(tags.selections) * len(tags.layers)
    for label, layer, n, filters, classes, specific, specific_tags, mean, top in layers:
        method, p = label.rsplit(" ", 1)
        matrix = tags.tag_matrix(layer, method, float(p))
        one = tags.select(method, float(p))
        scores = one.score[one.layer_index == tags.layers.index(layer)]
        assert (int(n), int(filters), int(classes)) == (matrix.sum(), matrix.any(axis=1).sum(), matrix.any(axis=0).sum())
        assert int(specific) == int(specific_tags) == (matrix.sum(axis=1) == 1).sum()
        assert float(mean) == pytest.approx(scores.mean()) and float(top) == scores.max()
    signatures = _rows(store, """
        SELECT ?label ?layer ?signature WHERE {
          ?s a ft:Selection ; rdfs:label ?label ; ft:hasLayerSummary ?x .
          ?x ft:summaryOf/rdfs:label ?layer ; ft:filterTagSignature ?signature }""")
    minter, space, keys = Minter(), label_space(tags), tag_class_keys(tags)
    expected = set()
    for m, p in tags.selections:
        for layer in tags.layers:
            matrix = tags.tag_matrix(layer, m, p)
            for i in np.flatnonzero(matrix.any(axis=1)):
                iris = [minter.image_class(space, keys[c]).value for c in np.flatnonzero(matrix[i])]
                expected.add((f"{m} {p:g}", layer, str(tag_signature(int(i), iris))))
    assert set(signatures) == expected
    summary = next(q.object for q in quads if q.predicate.value == FT + "hasLayerSummary")
    assert not validate([q for q in quads if not (q.object == summary and q.predicate.value == FT + "hasLayerSummary")])[0]


def test_distinct_classes_get_distinct_iris() -> None:
    """Labels whose readable IRI segment coincides, and a label given twice, still name distinct classes."""
    from filtag_kg.kg.vocab import class_keys

    labels = ["α-helix", "β-helix", "elephant", "elephant 🐘", "great white shark", "crane", "crane", "cat"]
    keys = class_keys(labels, [None] * 7 + ["n02121808"])
    assert keys[2] == "elephant" and keys[4] == "great white shark" and keys[7] == "n02121808"  # no clash: as before
    assert keys[5:7] == ["crane~5", "crane~6"]
    iris = [Minter().image_class("space", key).value for key in keys]
    assert len(set(iris)) == len(labels)
    stats = ActivationStats.empty(["conv1"], labels, {"conv1": 4}, {"dataset": {"label_space": "space"}})
    stats.add_batch(np.arange(16) % 8, {"conv1": np.random.default_rng(0).random((16, 4))})
    store = _store(list(export_tags(filtag_kg.tag(stats, k=1))))
    assert _rows(store, "SELECT (COUNT(DISTINCT ?c) AS ?n) WHERE { ?c ft:classIndex ?i }") == [('8',)]
    assert _rows(store, "SELECT (COUNT(*) AS ?n) WHERE { ?t ft:class ?c }") == [('8',)]  # one k=1 tag per class


def test_labels_dot_and_dot_dot_give_no_dot_segments() -> None:
    """Labels "." and ".." gave the IRIs …/classes/space/. and …/classes/space/.., which IRI normalisation
    (RFC 3986 remove_dot_segments) turns into …/classes/space/ and …/classes/: such a segment becomes a
    hash (not %2E, which normalisation decodes to a dot first), and no other IRI changes."""
    minter = Minter()
    space = minter.label_space("space").value
    dot, dots = "_" + hashlib.sha1(b".").hexdigest()[:8], "_" + hashlib.sha1(b"..").hexdigest()[:8]
    assert [minter.image_class("space", key).value for key in (".", "..", "...", ".a", "a.")] == [
        f"{space}/{dot}", f"{space}/{dots}", f"{space}/...", f"{space}/.a", f"{space}/a."]
    assert minter.layer("m", "..").value.endswith(f"/model/m/layer/{dots}")
    assert minter.image("data", "..").value.endswith(f"/image/data/{dots}")
    explanation = minter.explanation("r", "img", "k-best", 1)
    assert minter.class_count(explanation, ".").value == f"{explanation.value}/count/{dot}"
    labels = [".", "..", "cat"]
    stats = ActivationStats.empty(["conv1"], labels, {"conv1": 3}, {"dataset": {"label_space": "space"}})
    stats.add_batch(np.arange(3), {"conv1": np.eye(3)})
    exported = list(export_tags(filtag_kg.tag(stats, k=1)))
    nodes = {t.value for q in exported for t in (q.subject, q.object, q.graph_name) if isinstance(t, ox.NamedNode)}
    assert not [n for n in nodes if {".", ".."} & set(urlsplit(n).path.split("/"))]
    store = _store(exported)
    assert _rows(store, "SELECT (COUNT(DISTINCT ?c) AS ?n) WHERE { ?c ft:classIndex ?i }") == [('3',)]


def test_a_label_space_held_with_other_classes_is_not_replaced(tmp_path: Path, run_a: TagSet, run_cli) -> None:
    from filtag_kg.kg.store import Store

    path = tmp_path / "store"
    with Store(path) as store:
        store.load(export_tags(run_a))
        before = set(store.quads())
    other = synthetic_tags(seed=5)
    other.classes = ["lion", *other.classes[1:]]  # same label space 'animal-shape', another class 0
    other.save(tmp_path / "other")
    code, _, err = run_cli("load", tmp_path / "other", "--store", path)
    assert code == 2 and ("holds the label space 'animal-shape' with other classes (class 0: 'bear' in the store, "
                          "'lion' here)") in err
    with Store(path, read_only=True) as store:
        assert set(store.quads()) == before
    synthetic_tags(seed=5).save(tmp_path / "same")  # the same classes: loads beside run a
    assert run_cli("load", tmp_path / "same", "--store", path)[0] == 0


def test_label_spaces_whose_names_slug_alike_share_no_nodes() -> None:
    """Label spaces 'my space' and 'my_space' (other classes): the scheme and classes were named by the
    slug, the graph by the raw name, so the two runs had graphs of their own (and no refusal) but one
    node per class with two class indices. Scheme, classes, graph and images now share one key."""
    def tags(space: str, classes: list[str]) -> TagSet:
        stats = ActivationStats.empty(["conv"], classes, {"conv": 2}, {"dataset": {"label_space": space}})
        stats.add_batch(np.arange(2), {"conv": np.eye(2)})
        return filtag_kg.tag(stats, k=1)

    spaced, underscored = tags("my space", ["cat", "dog"]), tags("my_space", ["dog", "cat"])
    store = _store([*export_tags(spaced), *export_tags(underscored)])
    assert _rows(store, "SELECT ?c WHERE { ?c ft:classIndex ?i } GROUP BY ?c HAVING (COUNT(DISTINCT ?i) > 1)") == []
    assert len(_rows(store, "SELECT DISTINCT ?c WHERE { ?c ft:classIndex ?i }")) == 4
    from filtag_kg.kg.vocab import name_key

    minter = Minter()
    key = name_key("my space")
    assert key.startswith("my_space~") and name_key("my_space") == "my_space"
    assert export_graphs(spaced).classes == minter.run_graph(key, "classes")
    assert minter.label_space("my space").value.endswith(f"/classes/{key}")
    assert minter.image("my space", "1").value.endswith(f"/image/{key}/1")


def test_data_sets_whose_names_slug_alike_share_no_node() -> None:
    """Data sets 'my data' and 'my_data' were one node <dataset/my_data> with both titles, so `runs`
    listed each run twice, once with the other's data set."""
    def tags(name: str) -> TagSet:
        stats = ActivationStats.empty(["conv"], ["cat", "dog"], {"conv": 2}, {"dataset": {"name": name}})
        stats.add_batch(np.arange(2), {"conv": np.eye(2)})
        return filtag_kg.tag(stats, k=1)

    store = _store([q for name in ("my data", "my_data") for q in export_tags(tags(name))])
    rows = queries.run("runs", store, {}).values()
    assert sorted(r["dataset"] for r in rows) == ["my data", "my_data"]


def test_a_tag_set_with_line_breaks_in_its_labels_saves_and_exports(tmp_path: Path) -> None:
    """Python 3.11's csv writer leaves a field with a lone carriage return unquoted, and the reader
    takes it for a line end: a class labelled 'a\\rb' gave a tags.csv that `export` and `load`
    refused as truncated ("tags.csv has 8 tags, the manifest says 7")."""
    labels = ["cr\rx", "new\nline", "both\r\n", 'quote"d, comma', "plain"]
    stats = ActivationStats.empty(["conv"], labels, {"conv": 3}, {"dataset": {"name": "odd"}})
    stats.add_batch(np.arange(5), {"conv": np.random.default_rng(0).random((5, 3))})
    tags = filtag_kg.tag(stats, k=1)
    back = TagSet.load(tags.save(tmp_path / "tags"))
    assert back.classes == labels and list(back) == list(tags)
    assert set(export_tags(back)) == set(export_tags(tags))


def test_folders_named_alike_with_other_classes_have_label_spaces_of_their_own(tmp_path: Path) -> None:
    from PIL import Image

    from filtag_kg.data import image_folder

    spaces = []
    for where, classes in (("a", ["cat", "dog"]), ("b", ["cat", "emu"]), ("c", ["cat", "dog"])):
        for name in classes:
            (tmp_path / where / "train" / name).mkdir(parents=True)
            Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / where / "train" / name / "0.png")
        spaces.append(image_folder(tmp_path / where / "train").label_space)
    assert spaces[0].startswith("train-") and spaces[0] != spaces[1] and spaces[0] == spaces[2]


def test_a_collections_split_and_image_count_reach_the_graph() -> None:
    """Statistics as `collect` leaves them in memory: the split names what it collected, no image count."""
    stats = synthetic_stats()
    stats.manifest["split"] = {"collected": ["train", "heldout"], "fraction": 0.8, "seed": 0}
    store = _store(list(export_tags(filtag_kg.tag(stats, k=1))))
    assert set(_rows(store, "SELECT ?s ?n WHERE { ?r ft:split ?s ; ft:imageCount ?n }")) == {("train", "60")}


@contextmanager
def _loaded_one_after_the_other(tmp_path: Path, first: TagSet, second: TagSet, shared: str) -> Iterator[Any]:
    """A store loaded with `first`, then `second`, whose exports give their `shared` graph (network,
    classes) the same IRI and the same content: the second load replaces it and must lose nothing."""
    from filtag_kg.kg.store import Store

    graph = getattr(export_graphs(first), shared)
    assert graph == getattr(export_graphs(second), shared)
    assert {q for q in export_tags(first) if q.graph_name == graph} == {q for q in export_tags(second) if q.graph_name == graph}
    with Store(tmp_path / "store") as store:
        store.load(export_tags(first))
        store.load(export_tags(second))
        yield store


def test_a_run_of_other_layers_keeps_the_filters_of_the_first(tmp_path: Path) -> None:
    """The network graph is shared by a network's runs and each load replaces it: it describes the
    filters of every conv layer, not only the tagged ones, so a run of other layers of the same
    network leaves the first run's filters (a second FilTag file of VGG16 emptied the first's answers)."""
    both = synthetic_tags()
    stats = ActivationStats.empty(["conv2"], CLASSES, {"conv2": 12}, synthetic_stats().manifest)
    stats.add_batch(np.arange(60) % 6, {"conv2": np.random.default_rng(1).random((60, 12))})
    conv2 = filtag_kg.tag(stats, k=1)
    with _loaded_one_after_the_other(tmp_path, both, conv2, "network") as store:
        rows = queries.run("filter-tags", store, {"layer": "conv1", "filter": 3}).values()
    expected = sorted((t.class_name, t.method, t.parameter) for t in both if t.layer == "conv1" and t.filter == 3)
    assert expected and sorted((r["label"], "k-best" if r["method"].endswith("KBest") else "q-quantile",
                                r["parameter"]) for r in rows) == expected


def test_runs_on_data_sets_sharing_a_label_space_keep_their_data_set(tmp_path: Path) -> None:
    """Data sets of other names share a label space (ImageNet's train and val folders, an imported
    FilTag file), whose graph each load replaces: the data set is described in the run's graph, so
    a run on another data set leaves the first run's (`runs` showed it without its data set)."""
    first = synthetic_tags()
    stats = synthetic_stats(seed=1)
    stats.manifest["dataset"] = {**stats.manifest["dataset"], "name": "Animal-Shape, held-out half"}
    second = filtag_kg.tag(stats, k=1)
    with _loaded_one_after_the_other(tmp_path, first, second, "classes") as store:
        runs = {r["run"]: r["dataset"] for r in queries.run("runs", store).values()}
    assert runs == {run_iri(first): "Animal-Shape", run_iri(second): "Animal-Shape, held-out half"}


def test_rdfxml_refuses_a_literal_xml_cannot_hold(tmp_path: Path) -> None:
    """pyoxigraph writes a control character of a class label as it is, into RDF/XML no XML parser reads
    (rdflib: 'not well-formed (invalid token)'): refused by name, no file; the other formats hold it."""
    stats = ActivationStats.empty(["conv1"], ["bell\x07", "cat"], {"conv1": 2}, {"dataset": {"label_space": "ctl"}})
    stats.add_batch(np.arange(2), {"conv1": np.eye(2)})
    quads = list(export_tags(filtag_kg.tag(stats, k=1)))
    with pytest.raises(UserError, match=r"cannot write RDF/XML: 'bell\\x07' \(of <.*/classes/ctl/bell> "
                                        r"<http://www.w3.org/2000/01/rdf-schema#label>\)"):
        write(quads, tmp_path / "out.rdf")
    assert list(tmp_path.iterdir()) == []
    write(quads, tmp_path / "out.ttl")
    assert len(rdflib.Graph().parse(tmp_path / "out.ttl", format="turtle")) == len(quads)


def test_layers_whose_names_slug_alike_get_distinct_iris() -> None:
    """'conv 1' and 'conv_1', or a nested 'backbone/conv' and a layer 'backbone_conv', have the same
    readable IRI segment: they shared their layer and filter nodes, so each filter had two layers and
    each layer the other's tags. The name the slug changes gets a hash of itself; the others keep their IRIs."""
    names = ["conv 1", "conv_1", "backbone/conv", "backbone_conv", "block 2"]
    described = [{"name": n, "type": "Conv2D", "index": i, "filters": 3} for i, n in enumerate(names)]
    stats = ActivationStats.empty(names, ["a", "b"], dict.fromkeys(names, 3),
                                  {"model": {"hash": "0" * 64, "layers": described}, "dataset": {"label_space": "s"}})
    stats.add_batch(np.arange(4) % 2, {n: np.random.default_rng(i).random((4, 3)) for i, n in enumerate(names)})
    tags = filtag_kg.tag(stats, k=1)
    keys = layer_keys(names)
    assert keys["conv_1"] == "conv_1" and keys["backbone_conv"] == "backbone_conv" and keys["block 2"] == "block_2"
    assert keys["conv 1"].startswith("conv_1~") and keys["backbone/conv"].startswith("backbone_conv~")
    store = _store(list(export_tags(tags)))
    assert _rows(store, "SELECT (COUNT(DISTINCT ?l) AS ?n) WHERE { ?l a nno:Conv2D }") == [("5",)]
    assert _rows(store, "SELECT (COUNT(*) AS ?n) WHERE { ?f ft:ofLayer ?l }") == [("15",)]  # one layer per filter
    # each tag's filter lies in the layer of its layer summary, under that layer's name
    assert sorted(_rows(store, """
        SELECT ?name (COUNT(*) AS ?n) WHERE {
          ?t ft:filter/ft:ofLayer ?l ; ft:inLayerSummary/ft:summaryOf ?l . ?l rdfs:label ?name } GROUP BY ?name""")) == \
        sorted((n, "2") for n in names)  # k=1: one tag per class and layer


def test_rdfxml_keeps_carriage_returns(tmp_path: Path) -> None:
    """pyoxigraph writes a carriage return of a literal as it is, and XML parsers turn line ends
    into line feeds ('a\\r\\nb' came back as 'a\\nb' from rdflib, 'a\\rb' too): written as a character
    reference, every RDF/XML reader gets the literal back."""
    stats = ActivationStats.empty(["conv1"], ["two\r\nlines", "one\rline", "cat"], {"conv1": 3},
                                  {"dataset": {"label_space": "cr"}, "model": {"name": "net\r"}})
    stats.add_batch(np.arange(3), {"conv1": np.eye(3)})
    quads = list(export_tags(filtag_kg.tag(stats, k=1)))
    write(quads, tmp_path / "out.rdf")
    back = rdflib.Graph().parse(tmp_path / "out.rdf", format="xml")
    expected = rdflib.Graph().parse(data=ox.serialize((q.triple for q in quads), format=ox.RdfFormat.N_TRIPLES),
                                    format="nt")
    assert set(back) == set(expected)
    assert {q.triple for q in ox.parse(path=str(tmp_path / "out.rdf"))} == {q.triple for q in quads}
