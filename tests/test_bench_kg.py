"""bench/bench_kg.py: its baseline ways measure what they name."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pyoxigraph as ox
import pytest

from filtag_kg.kg import store as store_module
from filtag_kg.kg.store import Store
from filtag_kg.kg.vocab import FT, RDF

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench_kg  # noqa: E402  (bench/ holds its own modules)

EX = "https://example.org/"


def _store_with_a_run(path: Path, quads: int) -> None:
    """A store holding a tagging run's graph of `quads` quads and a smaller graph beside it."""
    run, other = ox.NamedNode(f"{EX}run-graph"), ox.NamedNode(f"{EX}other")
    filler = [ox.Quad(ox.NamedNode(f"{EX}s{i}"), ox.NamedNode(f"{EX}p"), ox.Literal(str(i)), run)
              for i in range(quads - 1)]
    with Store(path) as store:
        store.load([ox.Quad(ox.NamedNode(f"{EX}run"), ox.NamedNode(f"{RDF}type"), ox.NamedNode(f"{FT}TaggingRun"), run),
                    *filler, ox.Quad(ox.NamedNode(f"{EX}x"), ox.NamedNode(f"{EX}p"), ox.Literal("y"), other)])


def test_drop_removal_baseline_removes_even_a_graph_the_smaller_graphs_rule_would_rebuild(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the run's 40 quads stand for a run between REBUILD_SMALL_MIN_QUADS and REBUILD_MIN_QUADS;
    # monkeypatch restores both sizes, which the benchmark (in a child process of its own) sets
    monkeypatch.setattr(store_module, "REBUILD_MIN_QUADS", store_module.REBUILD_MIN_QUADS)
    monkeypatch.setattr(store_module, "REBUILD_SMALL_MIN_QUADS", 10)
    for way, rebuilt in (("rebuild", True), ("removal", False)):
        path = tmp_path / way
        _store_with_a_run(path, 40)
        inode = os.stat(path).st_ino
        result = bench_kg._timed_drop(str(path), [], [], way)
        assert (result["store_before"], result["store_after"]) == (41, 1)
        assert (os.stat(path).st_ino != inode) == rebuilt, way  # a rebuilt store is a new directory


def test_explanations_case_has_a_seeded_heldout_and_every_error_query_with_its_parameters() -> None:
    from filtag_kg.kg import queries
    from filtag_kg.kg.explanations import CORRECT, IMAGE, PREDICTED, TRUE, export_explanations
    from filtag_kg.kg.export import tag_class_iris
    from filtag_kg.kg.vocab import Minter

    tags = bench_kg.vgg16_tags([5], [])  # the selection the cases ask about, k-best 5
    heldout = bench_kg.synthetic_heldout(tags, 1000)
    again, other = bench_kg.synthetic_heldout(tags, 1000), bench_kg.synthetic_heldout(tags, 1000, seed=1)
    assert heldout == again and heldout != other
    assert len(heldout) == len(heldout.image_ids) == len(set(heldout.image_ids)) == 1000
    assert heldout.top_classes.shape == heldout.top_probs.shape == (1000, 5)
    assert all(len(set(row)) == 5 for row in heldout.top_classes.tolist())
    right = heldout.labels == heldout.top_classes[:, 0]
    assert 0.65 < right.mean() < 0.75
    assert ((heldout.labels >= 0) & (heldout.labels < len(tags.classes))).all()
    assert {m: v.shape for m, v in heldout.vectors.items()} == {m: (1000, tags.n_filters[m]) for m in tags.layers}

    small = bench_kg.synthetic_heldout(tags, 30)
    cases = bench_kg.explanation_params(tags, small)
    errors = [n for n in queries.bundled_names() if n.startswith("errors-")]
    assert "errors-confused-pairs" in errors and "errors-pair-filters" in errors
    assert list(cases) == errors + ["coarse-errors", "coarse-image-explanation"]
    for case, (name, params) in cases.items():
        q = queries.load(name)
        q.bind(params)  # raises on a missing required parameter, an unknown one or a bad value
        assert {p.name for p in q.parameters if p.required} <= set(params), case
        if "selection" in {p.name for p in q.parameters}:  # optional, but the one the cases ask about
            assert params["selection"] == "k-best 5", case
    # the image and classes asked about are one misclassified image's, as the explanations name them
    image = ox.NamedNode(cases["coarse-image-explanation"][1]["image"])
    facts = {(quad.predicate, quad.object) for quad in export_explanations(tags, small) if quad.subject == image}
    assert (ox.NamedNode(f"{RDF}type"), IMAGE) in facts and (CORRECT, ox.Literal(False)) in facts
    label = dict(zip(tag_class_iris(tags, Minter()), tags.classes))
    pair = cases["errors-pair-filters"][1]
    assert {label[o] for p, o in facts if p == TRUE} == {pair["true"]} == {cases["errors-misclassified"][1]["class"]}
    assert {label[o] for p, o in facts if p == PREDICTED} == {pair["predicted"]} != {pair["true"]}
