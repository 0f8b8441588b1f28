"""The bundled ontology, shapes and JSON-LD context: well-formed, documented, and covering the export."""

from __future__ import annotations

import json

import pyoxigraph as ox
import pytest

from filtag_kg.kg.export import NNO_LAYER_CLASSES, bundled_path, export_tags
from filtag_kg.kg.vocab import FT, NNO, OWL, PREFIXES, RDF, RDFS, SH

from test_export import synthetic_tags

TERM_TYPES = {OWL + "Class", OWL + "ObjectProperty", OWL + "DatatypeProperty", OWL + "NamedIndividual"}


def _graph(name: str) -> list[ox.Triple]:
    return [q.triple for q in ox.parse(path=str(bundled_path(name)))]


def _defined_ft_terms(triples: list[ox.Triple]) -> set[str]:
    return {t.subject.value for t in triples
            if t.predicate.value == RDF + "type" and t.object.value in TERM_TYPES and t.subject.value.startswith(FT)}


def test_every_term_has_an_english_label_and_comment() -> None:
    triples = _graph("filtag.ttl")
    terms = _defined_ft_terms(triples)
    assert {FT + "Filter", FT + "Tag", FT + "ImageClass", FT + "TaggingRun", FT + "CollectionRun",
            FT + "score", FT + "rank", FT + "k", FT + "q", FT + "wnid", FT + "filterIndex"} <= terms
    for predicate in (RDFS + "label", RDFS + "comment"):
        documented = {t.subject.value for t in triples if t.predicate.value == predicate
                      and isinstance(t.object, ox.Literal) and t.object.language == "en" and t.object.value.strip()}
        assert terms - documented == set(), f"terms without an English {predicate}"


def test_the_export_uses_only_defined_ft_terms() -> None:
    """A misspelt predicate or class in the export would show up here."""
    defined = _defined_ft_terms(_graph("filtag.ttl"))
    used = set()
    for q in export_tags(synthetic_tags()):
        used.add(q.predicate.value)
        if q.predicate.value == RDF + "type" or isinstance(q.object, ox.NamedNode):
            used.add(q.object.value)
    used_ft = {u for u in used if u.startswith(FT)}
    assert used_ft and used_ft - defined == set()


def test_ontology_reuses_nno_prov_and_skos() -> None:
    triples = _graph("filtag.ttl")
    parents = {(t.subject.value, t.object.value) for t in triples if t.predicate.value == RDFS + "subClassOf"}
    assert (FT + "TaggingRun", "http://www.w3.org/ns/prov#Activity") in parents
    assert (FT + "ImageClass", "http://www.w3.org/2004/02/skos/core#Concept") in parents
    domains = {(t.subject.value, t.object.value) for t in triples if t.predicate.value == RDFS + "domain"}
    assert (FT + "hasFilter", NNO + "Layer") in domains
    assert {"Conv2D", "Dense", "MaxPooling2D", "Flatten", "InputLayer"} <= NNO_LAYER_CLASSES


def test_shapes_parse_and_each_is_documented() -> None:
    triples = _graph("shapes.ttl")
    shapes = {t.subject.value for t in triples if t.predicate.value == RDF + "type" and t.object.value == SH + "NodeShape"
              and isinstance(t.subject, ox.NamedNode)}
    assert len(shapes) >= 8
    labelled = {t.subject.value for t in triples if t.predicate.value == RDFS + "comment"}
    assert shapes <= labelled


@pytest.mark.parametrize("prefix", sorted(PREFIXES))
def test_context_declares_every_prefix(prefix: str) -> None:
    context = json.loads(bundled_path("context.jsonld").read_text())["@context"]
    assert context[prefix] == PREFIXES[prefix]
