"""The numbers auditing round: tags, explanations and Hits@n recomputed from the raw arrays with plain
numpy (not with filtag_kg's own functions) and compared with what filtag-kg computes."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

import filtag_kg
from filtag_kg.explain import explain
from filtag_kg.records import ActivationStats, HeldOut
from filtag_kg.tagging import quantile_count


def _stats(n_filters: int, n_heldout: int = 3, seed: int = 0) -> ActivationStats:
    """Statistics of one layer of `n_filters` over three classes, with held-out records."""
    rng = np.random.default_rng(seed)
    stats = ActivationStats.empty(["conv"], ["a", "b", "c"], {"conv": n_filters})
    stats.counts[:] = [2, 3, 4]
    stats.sums["conv"] = rng.random((3, n_filters)) * stats.counts[:, None]
    stats.heldout = HeldOut([str(i) for i in range(n_heldout)], np.arange(n_heldout), np.arange(n_heldout) % 3,
                            np.tile(np.arange(3), (n_heldout, 1)), np.full((n_heldout, 3), 1 / 3, np.float32),
                            {"conv": rng.random((n_heldout, n_filters)).astype(np.float32)})
    return stats


def test_quantile_count_rounds_the_exact_product_half_to_even() -> None:
    """p = round(q/100·n) of q as written: 54.5 % and 57.5 % of 100 filters are 54.5 and 57.5, which
    round half to even to 54 and 58; in floats they were 54.50000000000001 (55) and 57.49999999999999 (57)."""
    assert quantile_count(54.5, 100) == 54
    assert quantile_count(57.5, 100) == 58
    assert quantile_count(3.5, 300) == 10  # 10.5 -> 10 (was 11)
    assert quantile_count(20.5, 300) == 62  # 61.5 -> 62 (was 61)
    assert quantile_count(12.5, 4) == 1 and quantile_count(37.5, 4) == 2  # 0.5 -> 0 -> at least 1; 1.5 -> 2
    assert quantile_count(np.float32(33.3), 10) == 3 and quantile_count(1e-320, 10) == 1


def test_quantile_tags_and_active_filters_take_the_exact_count() -> None:
    """Tagging and explaining with q = 57.5 over 100 filters: 58 tags per class (the top 58 by z,
    recomputed here) and 58 active filters per image (the top 58 by ā)."""
    stats = _stats(100)
    tags = filtag_kg.tag(stats, q=57.5)
    z = stats.sums["conv"] / stats.counts[:, None]
    for c in range(3):
        mine = sorted(range(100), key=lambda i: (-z[c, i], i))[:58]
        assert tags.filter_index[tags.class_index == c].tolist() == mine
    for e in explain(tags, stats.heldout):
        d = int(e.image_id)
        assert e.active["conv"] == sorted(range(100), key=lambda i: (-stats.heldout.vectors["conv"][d, i], i))[:58]


# -- the figures of tag, evaluate, explain and the errors queries, against plain numpy ---------------

def _edge_stats() -> ActivationStats:
    """Statistics with every edge case of the audit: a layer of one filter (p = round(q/100·1) = 0 -> 1
    at every q below 100), a class without training images ('cod': no z, no tags), equal z (ant's
    filters 1 and 3 of 'four', all of bee's in 'six'), and held-out images whose ā tie at the cut-off."""
    rng = np.random.default_rng(3)
    n_filters = {"one": 1, "four": 4, "six": 6}
    stats = ActivationStats.empty(list(n_filters), ["ant", "bee", "cod", "dab"], n_filters,
                                  manifest={"dataset": {"name": "audit"}})
    stats.counts[:] = [3, 2, 0, 4]
    for m, n in n_filters.items():
        stats.sums[m] = rng.random((4, n)) * stats.counts[:, None]
    stats.sums["four"][0] = [1.5, 2.4, 0.3, 2.4]
    stats.sums["six"][1] = 1.0
    n = 40
    vectors = {m: rng.random((n, k)).astype(np.float32) for m, k in n_filters.items()}
    vectors["six"][0] = [0.5, 0.5, 0.5, 0.2, 0.5, 0.1]
    vectors["four"][1] = 0.3
    probs = np.sort(rng.random((n, 4)), axis=1)[:, ::-1]
    stats.heldout = HeldOut([str(i) for i in range(n)], np.arange(n), np.arange(n) % 4,
                            np.stack([rng.permutation(4) for _ in range(n)]),
                            (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32), vectors)
    return stats


def _top(values: np.ndarray, count: int) -> list[int]:
    """The `count` indices of the highest values, ties to the lower index (written out, not argsort)."""
    return sorted(range(len(values)), key=lambda i: (-values[i], i))[:count]


def _count(method: str, parameter: float, n: int) -> int:
    return min(int(parameter), n) if method == "k-best" else max(1, round(Fraction(str(parameter)) * n / 100))


def _reference(stats: ActivationStats, selections: list[tuple[str, float]]) -> tuple[set, dict, dict]:
    """Tags {(selection, layer, filter, class, rank, score)}, and per selection the tag counts of each
    held-out image per layer {layer: int [images, classes]} and its active filters, from the definitions."""
    tags, counts, active = set(), {}, {}
    n_classes, h = len(stats.classes), stats.heldout
    for sel in selections:
        counts[sel], active[sel] = {}, {}
        for m in stats.layers:
            n = stats.n_filters[m]
            matrix = np.zeros((n, n_classes), int)
            for c in np.flatnonzero(stats.counts):
                z = stats.sums[m][c] / stats.counts[c]
                for rank, f in enumerate(_top(z, _count(*sel, n)), 1):
                    tags.add((sel, m, f, int(c), rank, float(z[f])))
                    matrix[f, c] = 1
            active[sel][m] = [_top(v, _count(*sel, n)) for v in h.vectors[m]]
            counts[sel][m] = np.array([matrix[a].sum(axis=0) for a in active[sel][m]])
    return tags, counts, active


def _rank(counts: np.ndarray, c: int) -> int | None:
    """Competition rank of class c by count (None: count 0, never a hit)."""
    return None if counts[c] == 0 else 1 + int((counts > counts[c]).sum())


def test_tags_explanations_and_hits_of_the_edge_cases_recomputed() -> None:
    """Tags (ranks and scores), each image's active filters and tag counts per layer and over all
    layers, and Hits@1…4 for both scopes and targets agree with a from-the-definitions recomputation."""
    from filtag_kg.explain import evaluate

    stats = _edge_stats()
    tags = filtag_kg.tag(stats, k=1, q=[12.5, 30, 50])
    ref_tags, ref_counts, ref_active = _reference(stats, tags.selections)
    assert {((t.method, t.parameter), t.layer, t.filter, t.class_index, t.rank, t.score) for t in tags} == ref_tags
    assert len(tags) == len(ref_tags)
    h = stats.heldout
    for e in explain(tags, h):
        sel, d = (e.method, e.parameter), int(e.image_id)
        assert e.active == {m: ref_active[sel][m][d] for m in stats.layers}
        for m in stats.layers:
            assert e.layer_counts[m].tolist() == ref_counts[sel][m][d].tolist()
        total = sum(ref_counts[sel][m][d] for m in stats.layers)
        assert [(c, n, r) for c, n, r in e.ranking()] == sorted(
            ((c, int(total[c]), _rank(total, c)) for c in range(4) if total[c]), key=lambda x: (-x[1], x[0]))
    result = evaluate(tags, h, max_n=4)
    for (method, parameter, scope, target), curve in result.hits.items():
        per = ref_counts[method, parameter]
        counts = sum(per.values()) if scope == "all" else per["six"]
        goal = h.top_classes[:, 0] if target == "predicted" else h.labels
        ranks = [_rank(counts[d], goal[d]) for d in range(len(h))]
        expected = [np.mean([r is not None and r <= n for r in ranks]) for n in range(1, 5)]
        assert curve.tolist() == expected, (method, parameter, scope, target)


def test_error_queries_of_the_edge_cases_recomputed() -> None:
    """The figures `filtag-kg errors` prints, through its SPARQL queries on the exported explanations:
    confused pairs with their errors and shared filters (none for 'cod', which has no tags), the
    both / predicted only / true only / neither split, the images whose prediction is not the top tag and
    those where it ties for it."""
    from collections import Counter

    from pyoxigraph import Store

    from filtag_kg.kg.explanations import export_explanations
    from filtag_kg.kg.export import export_tags
    from kg_helpers import rows

    stats = _edge_stats()
    tags = filtag_kg.tag(stats, k=1, q=[12.5, 50])
    store = Store()
    store.extend(export_tags(tags))
    store.extend(export_explanations(tags, stats.heldout))
    _, ref_counts, _ = _reference(stats, tags.selections)
    h, names = stats.heldout, stats.classes
    truth, predicted = h.labels, h.top_classes[:, 0]
    wrong = np.flatnonzero(truth != predicted)
    for sel in tags.selections:
        label = f"{sel[0]} {sel[1]:g}"
        matrix = {m: tags.tag_matrix(m, *sel) for m in stats.layers}
        pairs = {(r["true"], r["predicted"]): (r["errors"], r["sharedFilters"])
                 for r in rows("errors-confused-pairs", store, selection=label)}
        assert pairs == {(names[a], names[b]): (n, sum(int((matrix[m][:, a] & matrix[m][:, b]).sum()) for m in matrix))
                         for (a, b), n in Counter(zip(truth[wrong], predicted[wrong])).items()}, label
        total = sum(ref_counts[sel].values())
        split = Counter(r["pattern"] for r in rows("errors-both-tags-active", store, selection=label))
        assert split == Counter("both" if t and p else "predicted only" if p else "true only" if t else "neither"
                                for t, p in ((total[d, truth[d]], total[d, predicted[d]]) for d in wrong)), label
        disagree = {r["id"] for r in rows("errors-explanation-disagrees", store, selection=label, n=1)}
        assert disagree == {str(d) for d in range(len(h)) if (_rank(total[d], predicted[d]) or 2) > 1}, label
        tied = {r["id"] for r in rows("errors-explanation-tied", store, selection=label, n=1)}
        assert tied == {str(d) for d in range(len(h)) if _rank(total[d], predicted[d]) == 1
                        and (total[d] == total[d, predicted[d]]).sum() > 1}, label
