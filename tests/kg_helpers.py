"""Helpers the knowledge-graph tests share: a run's IRI, a bundled query's rows, the tag count, an
in-memory store of tag sets, one of explanations of four selections."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import chain

import numpy as np
from pyoxigraph import Store

import filtag_kg

from filtag_kg.kg import queries
from filtag_kg.kg.export import export_tags
from filtag_kg.kg.export import run_iri  # noqa: F401  (the tests import it from here)
from filtag_kg.kg.vocab import sparql_prefixes
from filtag_kg.kg.explanations import export_explanations
from filtag_kg.records import ActivationStats, HeldOut, TagSet

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


def four_selections_store(n_images: int) -> Store:
    """Tags of one 20-filter layer over cat, dog and cow (k = 1; q = 25, 10, 5, given out of order) and
    explanations of `n_images` held-out images (a multiple of 3: all misclassified, a, b, c repeated):
    selections that sort otherwise as text than by number."""
    rng = np.random.default_rng(2)
    stats = ActivationStats.empty(["l1"], ["cat", "dog", "cow"], {"l1": 20},
                                  manifest={"dataset": {"name": "toy", "label_space": "toy"}})
    stats.add_batch(np.arange(3), {"l1": rng.random((3, 20))})
    tags = filtag_kg.tag(stats, k=[1], q=[25, 10, 5])
    repeat = n_images // 3
    heldout = HeldOut(image_ids=list("abcdef"[:n_images]), positions=np.arange(n_images),
                      labels=np.array([1, 2, 0] * repeat),
                      top_classes=np.array([[0, 1, 2, -1, -1], [0, 2, 1, -1, -1], [1, 0, 2, -1, -1]] * repeat),
                      top_probs=np.array([[0.7, 0.2, 0.1, 0, 0]] * n_images, np.float32),
                      vectors={"l1": rng.random((n_images, 20)).astype(np.float32)})
    store = Store()
    store.extend(chain(export_tags(tags), export_explanations(tags, heldout)))
    return store
