"""The exported graph as linked data (the provenance round): the shared network graph names no local
file, the shapes check what the export must hold, the ontology is OWL 2 DL with PROV-O generation of
selections, every format reads back alike with an independent parser, and exports are byte-identical
across processes."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyoxigraph as ox
import pytest
import rdflib

import filtag_kg
from filtag_kg.errors import UserError
from filtag_kg.kg.export import bundled_path, export_graphs, export_tags, validate, write
from filtag_kg.kg.vocab import DCTERMS, FT, PROV, RDF, XSD, Minter
from filtag_kg.records import ActivationStats, TagSet

from test_export import LAYERS, synthetic_stats, synthetic_tags

N = ox.NamedNode


@pytest.fixture(scope="module")
def quads() -> list[ox.Quad]:
    return list(export_tags(synthetic_tags()))


def _tags_with_model_source(source: str) -> TagSet:
    stats = synthetic_stats()
    stats.manifest["model"] = {**stats.manifest["model"], "source": source}
    return filtag_kg.tag(stats, k=[1])


def test_the_network_graph_names_no_local_model_file() -> None:
    """The default model's source was its cache file (/home/…/.cache/…/default-cnn-v1-seed0.keras):
    in dcterms:source, the network graph that all runs of the network share differed by cache folder
    (a load from another one replaced it with other content) and published a user's home folder."""
    graphs = []
    for source in ("/home/alice/.cache/filtag-kg/models/default-cnn-v1-seed0.keras",
                   "/tmp/other-cache/models/default-cnn-v1-seed0.keras", r"C:\Users\bob\model.keras"):
        tags = _tags_with_model_source(source)
        network = export_graphs(tags).network
        graphs.append({q for q in export_tags(tags) if q.graph_name == network})
    assert graphs[0] == graphs[1] == graphs[2]
    assert not any(q.predicate.value == DCTERMS + "source" for q in graphs[0])
    applications = _tags_with_model_source("keras.applications:VGG16 (weights=imagenet)")
    assert {q.object.value for q in export_tags(applications) if q.predicate.value == DCTERMS + "source"} \
        == {"keras.applications:VGG16 (weights=imagenet)"}


def test_the_network_graph_is_the_same_under_every_keras_version() -> None:
    """nno:usedFramework was "Keras {version of the collection}": two collections of one model under two
    Keras versions gave the network graph they share two contents (each load replacing the other's).
    It names the framework; the versions stay on the runs (ft:softwareVersion)."""
    graphs = []
    for version in ("3.12.0", "3.15.1"):
        stats = synthetic_stats()
        stats.manifest["software"] = {**stats.manifest.get("software", {}), "keras": version}
        tags = filtag_kg.tag(stats, k=[1])
        network = export_graphs(tags).network
        graphs.append({q for q in export_tags(tags) if q.graph_name == network})
    assert graphs[0] == graphs[1]
    assert {q.object.value for q in graphs[0] if q.predicate.value.endswith("#usedFramework")} == {"Keras"}


def test_a_base_whose_scheme_is_a_jsonld_prefix_is_refused() -> None:
    """JSON-LD readers expanded the '@id' 'wn:data/…' with the context's wn: prefix (another IRI)."""
    with pytest.raises(UserError, match="'wn'.*prefix of the export's JSON-LD context"):
        Minter("wn:data/")
    assert Minter("urn:x:data/").base == "urn:x:data/"


def _replaced(
    quads: list[ox.Quad], predicate: str, value: ox.Literal, subject_type: str | None = None,
) -> list[ox.Quad]:
    """The quads with the first `predicate` statement (of a subject of `subject_type`) given `value`."""
    typed = {q.subject for q in quads
             if subject_type and q.predicate.value == RDF + "type" and q.object.value == subject_type}
    target = next(q for q in quads if q.predicate.value == predicate and (not subject_type or q.subject in typed))
    return [q if q != target else ox.Quad(q.subject, q.predicate, value, q.graph_name) for q in quads]


def _without_first(quads: list[ox.Quad], predicate: str) -> list[ox.Quad]:
    target = next(q for q in quads if q.predicate.value == predicate)
    return [q for q in quads if q != target]


MUTATIONS = {
    # a tag no layer summary counts is invisible to the queries, which reach tags through them
    "tag without layer summary": (lambda qs: _without_first(qs, FT + "inLayerSummary"), "inLayerSummary"),
    # the comment said selectionParameter is k or q; nothing checked it
    "k-best selection parameter other than k": (lambda qs: _replaced(
        qs, FT + "selectionParameter", ox.Literal("6", datatype=N(XSD + "decimal"))), "not the selection's k or q"),
    "q-quantile selection parameter other than q": (lambda qs: _replaced(
        qs, FT + "q", ox.Literal("20", datatype=N(XSD + "decimal")), FT + "Selection"), "not the selection's k or q"),
    "end time without time zone": (lambda qs: _replaced(
        qs, PROV + "endedAtTime", ox.Literal("2026-11-21T10:00:00", datatype=N(XSD + "dateTime"))), "endedAtTime"),
    "filter index beyond its layer": (lambda qs: _replaced(qs, FT + "filterIndex", ox.Literal(99)),
                                      "not below the filter count"),
}


def test_the_unbroken_export_conforms(quads: list[ox.Quad]) -> None:
    """The new constraints accept what the export writes (k as integer vs decimal parameter, q, a +00:00 time)."""
    conforms, report = validate(quads)
    assert conforms, report


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_the_shapes_catch_a_broken_export(mutation: str, quads: list[ox.Quad]) -> None:
    mutate, said = MUTATIONS[mutation]
    conforms, report = validate(mutate(quads))
    assert not conforms and said in report, report


def test_the_shapes_bound_an_explanations_true_class_rank() -> None:
    """ft:trueClassRank, like ft:predictedClassRank, is one integer from 1 (a rank 0 passed)."""
    from test_explain import hand_case

    from filtag_kg.kg.explanations import export_explanations

    tags, heldout = hand_case()
    tags.manifest["dataset"] = {"name": "toy", "label_space": "toy"}
    quads = [*export_tags(tags), *export_explanations(tags, heldout)]
    assert validate(quads)[0]
    conforms, report = validate(_replaced(quads, FT + "trueClassRank", ox.Literal(0)))
    assert not conforms and "trueClassRank" in report, report


def _ontology() -> rdflib.Graph:
    return rdflib.Graph().parse(bundled_path("filtag.ttl"), format="turtle")


def test_the_ontology_declares_what_its_axioms_name() -> None:
    """OWL 2 DL: every class and property an axiom names is declared (NNO, PROV-O and SKOS terms were
    not), no class of the reserved RDF vocabulary (ft:weight's domain was rdf:Statement), a union
    class is typed owl:Class, and no property is both an object and a datatype property."""
    from rdflib.namespace import OWL, RDFS

    g = _ontology()
    kinds: dict[rdflib.term.Node, set[rdflib.term.Node]] = {}
    for s, o in g.subject_objects(rdflib.RDF.type):
        kinds.setdefault(s, set()).add(o)
    of_kind = {kind: {s for s, k in kinds.items() if kind in k}
               for kind in (OWL.Class, OWL.ObjectProperty, OWL.DatatypeProperty, OWL.AnnotationProperty)}
    assert not of_kind[OWL.ObjectProperty] & of_kind[OWL.DatatypeProperty]
    problems = []
    for predicate in (RDFS.domain, RDFS.range, RDFS.subClassOf):
        for s, o in g.subject_objects(predicate):
            if isinstance(o, rdflib.BNode):
                continue
            if s in of_kind[OWL.DatatypeProperty] and predicate == RDFS.range:
                if not str(o).startswith(XSD):
                    problems.append(f"{s} range {o}")
            elif o not in of_kind[OWL.Class] or str(o).startswith((str(rdflib.RDF), str(RDFS), str(OWL))):
                problems.append(f"{s} {predicate} {o}")
    for s, o in g.subject_objects(RDFS.subPropertyOf):
        if not any({s, o} <= of_kind[kind] for kind in (OWL.ObjectProperty, OWL.DatatypeProperty)):
            problems.append(f"{s} subPropertyOf {o}")
    problems += [f"union {s} not an owl:Class" for s in g.subjects(OWL.unionOf) if OWL.Class not in kinds.get(s, ())]
    ontology = rdflib.URIRef("https://w3id.org/filtag-kg/ontology")
    problems += [f"annotation {p}" for p in g.predicates(ontology)
                 if p not in (rdflib.RDF.type, RDFS.label, RDFS.comment, RDFS.seeAlso, OWL.versionInfo)
                 and p not in of_kind[OWL.AnnotationProperty]]
    assert problems == []


def test_owl_rl_gives_each_selection_its_generating_run(quads: list[ox.Quad]) -> None:
    """ft:Selection is a prov:Entity: with ft:ofRun ⊑ prov:wasGeneratedBy a reasoner knows the run
    that generated it, as the tags state theirs."""
    import owlrl

    g = _ontology()
    g.parse(data=ox.serialize((q.triple for q in quads if q.predicate.value in (FT + "ofRun", RDF + "type")),
                              format=ox.RdfFormat.N_TRIPLES), format="nt")
    owlrl.DeductiveClosure(owlrl.OWLRL_Semantics, axiomatic_triples=False, datatype_axioms=False).expand(g)
    ofrun = {(str(s), str(o)) for s, o in g.subject_objects(rdflib.URIRef(FT + "ofRun"))}
    generated = {(str(s), str(o)) for s, o in g.subject_objects(rdflib.URIRef(PROV + "wasGeneratedBy"))}
    entities = {str(s) for s in g.subjects(rdflib.RDF.type, rdflib.URIRef(PROV + "Entity"))}
    assert len(ofrun) == 3 and ofrun <= generated and {s for s, _ in ofrun} <= entities


def test_an_export_holds_the_terms_a_store_loaded_from_it_holds() -> None:
    """Oxigraph stores an xsd:double and an xsd:dateTime in its canonical form: scores written as
    Python's repr ("1e-05", "1.0") and the end time as "+00:00" were other RDF terms than the store's
    ("0.00001", "1", "Z"), so that `export`'s file and `publish`'s (read from the store) were not the
    same graph. The values still round-trip exactly."""
    tags = synthetic_tags()
    special = [1e-05, 1.0, -0.0, 1e20, 0.1 + 0.2, 5e-324]
    tags.score[:len(special)] = special
    quads = list(export_tags(tags))
    store = ox.Store()
    store.extend(quads)
    assert set(store) == set(quads)
    scores = {float(q.object.value) for q in quads if q.predicate.value == FT + "score"}
    assert set(special) <= scores and set(tags.score.tolist()) == scores
    (ended,) = {q.object for q in quads if q.predicate.value == PROV + "endedAtTime"}
    assert ended == ox.Literal("2026-11-21T10:00:00Z", datatype=N(XSD + "dateTime"))


CLASSES = ["red fox", "crème brûlée", 'say "hi"', "C#", "100%", "<tag>", "a\\b", "日本", "x'y", "tab\there",
           "new\nline", "🐘", "{b}|^`"]


def awkward_tags() -> TagSet:
    """Labels with spaces, quotes, '#', '%', '<>', backslashes, line breaks and non-ASCII, in a label
    space, data set, network and layers named likewise."""
    layers = ["conv 1", "conv#2"]
    manifest = {
        "model": {"name": 'net "quoted" <x>', "hash": "cd" * 32, "source": "built in the test",
                  "layers": [dict(LAYERS[1], name=layers[0]), dict(LAYERS[3], name=layers[1])]},
        "dataset": {"name": "data %20 <set>", "label_space": "my space #1"},
        "split": {"name": "train", "fraction": 0.2, "seed": 0},
        "software": {"filtag-kg": "0.1.0"},
        "created": "2026-11-21T10:00:00+00:00",
    }
    stats = ActivationStats.empty(layers, CLASSES, {layers[0]: 8, layers[1]: 12}, manifest)
    rng = np.random.default_rng(0)
    stats.add_batch(np.arange(130) % len(CLASSES), {layers[0]: rng.random((130, 8)), layers[1]: rng.random((130, 12))})
    return filtag_kg.tag(stats, k=[1], q=[12.5])


@pytest.mark.parametrize("fmt,rdflib_format", [("turtle", "turtle"), ("ntriples", "nt"), ("nquads", "nquads"),
                                               ("trig", "trig"), ("rdfxml", "xml"), ("jsonld", "json-ld")])
def test_every_format_reads_back_alike_with_rdflib(fmt: str, rdflib_format: str) -> None:
    """An independent parser reads the awkward labels' export into the very terms pyoxigraph wrote
    (datatypes, exact doubles, graph names where the format holds them); every IRI is valid."""
    quads = list(export_tags(awkward_tags()))
    out = io.BytesIO()
    write(quads, out, fmt)
    dataset = rdflib.Dataset()
    dataset.parse(data=out.getvalue(), format=rdflib_format)
    expected = rdflib.Dataset()
    expected.parse(data=ox.serialize(quads, format=ox.RdfFormat.N_QUADS), format="nquads")
    if fmt in ("nquads", "trig", "jsonld"):
        assert set(dataset.quads()) == set(expected.quads())
    else:
        assert {t[:3] for t in dataset.quads()} == {t[:3] for t in expected.quads()}
    scores = {o for _, p, o, _ in dataset.quads((None, rdflib.URIRef(FT + "score"), None, None))}
    assert {float(o) for o in scores} == {float(s) for s in awkward_tags().score}
    assert all(o.datatype == rdflib.XSD.double for o in scores)
    labels = {str(o) for _, p, o, _ in dataset.quads((None, rdflib.RDFS.label, None, None))}
    assert set(CLASSES) <= labels
    iris = {t for q in dataset.quads() for t in q if isinstance(t, rdflib.URIRef)}
    assert iris and not [i for i in iris if any(c in ' "<>{}|^`\\\n\t' or ord(c) > 126 for c in i)]


def test_line_formats_are_byte_identical_across_processes(tmp_path: Path) -> None:
    """Two processes with other hash seeds and locales write the same bytes (no set or dict order,
    time or locale reaches the export)."""
    script = ("import sys; sys.path.insert(0, sys.argv[2]); from test_export import synthetic_tags; "
              "from filtag_kg.kg.export import export_tags, write; "
              "[write(export_tags(synthetic_tags()), f'{sys.argv[1]}.{e}', e) for e in ('nq', 'ttl', 'jsonld')]")
    tests = str(Path(__file__).parent)
    for name, seed, locale in (("a", "1", "C.UTF-8"), ("b", "2", "C")):
        env = {**os.environ, "PYTHONHASHSEED": seed, "LC_ALL": locale, "TZ": "Pacific/Kiritimati"}
        subprocess.run([sys.executable, "-c", script, str(tmp_path / name), tests], check=True, env=env)
    for ext in ("nq", "ttl", "jsonld"):
        assert (tmp_path / f"a.{ext}").read_bytes() == (tmp_path / f"b.{ext}").read_bytes(), ext


def test_a_chosen_preprocessing_is_in_the_runs_provenance() -> None:
    """`collect --preprocess` changes the network's inputs, and with them every z; the graph did not say
    so (two runs of one network, other preprocessing: nothing told why their tags differ)."""
    stats = synthetic_stats()
    stats.manifest["model"] = {**stats.manifest["model"], "preprocess": "mobilenet_v2"}
    stats.manifest["created"] = "2026-12-03T15:00:00+00:00"
    quads = list(export_tags(filtag_kg.tag(stats, k=[1])))
    said = {(q.subject.value.rsplit("/", 2)[-2], q.object.value) for q in quads if q.predicate.value == FT + "preprocessing"}
    assert said == {("run", "mobilenet_v2")} and len({q.subject for q in quads if q.predicate.value == FT + "preprocessing"}) == 2
    conforms, report = validate(quads)
    assert conforms, report
    plain = list(export_tags(synthetic_tags()))
    assert not any(q.predicate.value == FT + "preprocessing" for q in plain)
