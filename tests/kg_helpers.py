"""Helpers the knowledge-graph tests share: a run's IRI, a bundled query's rows, the tag count."""

from __future__ import annotations

from filtag_kg.kg import queries
from filtag_kg.kg.export import run_iri  # noqa: F401  (the tests import it from here)
from filtag_kg.kg.vocab import sparql_prefixes

TAG_COUNT = sparql_prefixes() + "SELECT (COUNT(*) AS ?n) WHERE { ?t a ft:Tag }"


def rows(name: str, store: object, **params: object) -> list[dict[str, object]]:
    """A bundled query's rows as dicts of Python values."""
    return queries.run(name, store, params).values()
