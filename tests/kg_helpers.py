"""Helpers the knowledge-graph tests share: a run's IRI, a bundled query's rows, the tag count."""

from __future__ import annotations

from filtag_kg.kg import queries
from filtag_kg.kg.export import run_ids
from filtag_kg.kg.vocab import Minter, sparql_prefixes
from filtag_kg.records import TagSet

TAG_COUNT = sparql_prefixes() + "SELECT (COUNT(*) AS ?n) WHERE { ?t a ft:Tag }"


def run_iri(tags: TagSet) -> str:
    """The IRI of a TagSet's tagging run under the default base."""
    return Minter().run(run_ids(tags).tagging).value


def rows(name: str, store: object, **params: object) -> list[dict[str, object]]:
    """A bundled query's rows as dicts of Python values."""
    return queries.run(name, store, params).values()
