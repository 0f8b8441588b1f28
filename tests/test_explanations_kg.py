"""Explanations in the graph: SHACL-valid export, and the error-analysis queries on a hand-made case."""

from __future__ import annotations

from itertools import chain

import numpy as np
import pytest
from pyoxigraph import Store
from test_explain import hand_case

from filtag_kg.errors import UserError
from filtag_kg.kg.error_analysis import error_report
from filtag_kg.kg.explanations import explanations_graph, export_explanations
from filtag_kg.kg.export import export_tags, validate
from filtag_kg.kg.queries import run
from filtag_kg.records import HeldOut


@pytest.fixture(scope="module")
def case():
    """The hand case of test_explain plus image c: a cat, predicted cat, whose active filters say cow."""
    tags, heldout = hand_case()
    tags.manifest["dataset"] = {"name": "toy", "label_space": "toy"}
    c = HeldOut(
        image_ids=["c"], positions=np.array([2]), labels=np.array([0]),
        top_classes=np.array([[0, 2, 1, -1, -1]]), top_probs=np.array([[0.6, 0.3, 0.1, 0, 0]], np.float32),
        vectors={"l1": np.array([[0.0, 0.1, 0.9]], np.float32), "l2": np.array([[0.0, 0.1, 0.2, 0.9]], np.float32)},
    )
    heldout = HeldOut.concatenate([heldout, c])
    store = Store()
    store.extend(chain(export_tags(tags), export_explanations(tags, heldout)))
    return tags, heldout, store


def test_export_validates_and_has_its_own_graph(case) -> None:
    tags, heldout, store = case
    conforms, report = validate(chain(export_tags(tags), export_explanations(tags, heldout)))
    assert conforms, report
    g = explanations_graph(tags)
    assert len(list(store.quads_for_pattern(None, None, None, g))) > 0
    assert list(export_explanations(tags, heldout)) == list(export_explanations(tags, heldout))  # deterministic


def test_misclassified_images_and_their_tags(case) -> None:
    _, _, store = case
    rows = run("errors-misclassified", store, {"class": "dog"}).values()
    assert [(r["id"], r["predicted"], r["tag"], r["count"], r["rank"]) for r in rows] == [
        ("a", "cat", "cat", 2, 1), ("a", "cat", "dog", 1, 2)]
    assert run("errors-misclassified", store, {"class": "cat"}).values() == []  # c is right


def test_true_and_predicted_tags_active(case) -> None:
    _, _, store = case
    rows = run("errors-both-tags-active", store).values()
    assert [(r["id"], r["true"], r["predicted"], r["trueCount"], r["predictedCount"], r["pattern"]) for r in rows] == [
        ("a", "dog", "cat", 1, 2, "both")]


def test_confused_pairs_with_shared_filters(case) -> None:
    _, _, store = case
    rows = run("errors-confused-pairs", store, {"selection": "k-best 1"}).values()
    # k=1: filter l1#0 is the best filter of both cat and dog
    assert [(r["true"], r["predicted"], r["errors"], r["sharedFilters"]) for r in rows] == [("dog", "cat", 1, 1)]


def test_explanations_that_disagree_with_the_prediction(case) -> None:
    _, _, store = case
    rows = run("errors-explanation-disagrees", store, {"n": 1}).values()
    # a: cat rank 1 (agrees); b: cow tied at rank 1 (agrees); c: cat untagged, cow on top
    assert [(r["id"], r["predicted"], r["predictedRank"], r["topTag"]) for r in rows] == [("c", "cat", "untagged", "cow")]
    rows = run("errors-explanation-disagrees", store, {"n": 0}).values()
    assert sorted({r["id"] for r in rows}) == ["a", "b", "c"]


def test_error_report_text(case) -> None:
    _, _, store = case
    text = error_report(store, "k-best 1")
    assert "dog -> cat: 1 errors, 1 shared filters" in text
    assert "of 1 misclassified images" in text and "in 1 (100%)" in text
    assert "1 images whose prediction is not the top tag" in text
    with pytest.raises(UserError, match="no explanations with tag selection 'k-best 7' in the store; it has: k-best 1"):
        error_report(store, "k-best 7")  # not "no misclassified images": nothing of k-best 7 was explained
