"""Helpers the knowledge-graph tests share: a run's IRI, a bundled query's rows, the tag count, an
in-memory store of tag sets."""

from __future__ import annotations

from collections.abc import Iterable

from pyoxigraph import Store

from filtag_kg.kg import queries
from filtag_kg.kg.export import export_tags
from filtag_kg.kg.export import run_iri  # noqa: F401  (the tests import it from here)
from filtag_kg.kg.vocab import sparql_prefixes
from filtag_kg.records import TagSet

TAG_COUNT = sparql_prefixes() + "SELECT (COUNT(*) AS ?n) WHERE { ?t a ft:Tag }"


def rows(name: str, store: object, **params: object) -> list[dict[str, object]]:
    """A bundled query's rows as dicts of Python values."""
    return queries.run(name, store, params).values()


def store_of(tag_sets: Iterable[TagSet]) -> Store:
    """An in-memory pyoxigraph store holding the export of each tag set."""
    store = Store()
    for tags in tag_sets:
        store.extend(export_tags(tags))
    return store
