"""Tag-based explanations and Hits@n: hand computations, a brute-force definition, the paper's shape."""

from __future__ import annotations

import re

import numpy as np
import pytest

import filtag_kg
from filtag_kg.errors import UserError
from filtag_kg.explain import evaluate, explain, hits_at
from filtag_kg.records import ActivationStats, HeldOut


def hand_case() -> tuple[filtag_kg.TagSet, HeldOut]:
    """Two layers (3 and 4 filters), three classes, z chosen so that the k=1 tags are easy to see."""
    stats = ActivationStats.empty(["l1", "l2"], ["cat", "dog", "cow"], {"l1": 3, "l2": 4})
    stats.counts[:] = 1
    stats.sums["l1"] = np.array([[0.9, 0.1, 0.2],   # cat -> filter 0
                                 [0.8, 0.3, 0.1],   # dog -> filter 0
                                 [0.1, 0.2, 0.7]])  # cow -> filter 2
    stats.sums["l2"] = np.array([[0.1, 0.9, 0.0, 0.3],   # cat -> filter 1
                                 [0.0, 0.2, 0.8, 0.1],   # dog -> filter 2
                                 [0.3, 0.1, 0.2, 0.6]])  # cow -> filter 3
    tags = filtag_kg.tag(stats, k=1)
    heldout = HeldOut(
        image_ids=["a", "b"], positions=np.arange(2), labels=np.array([1, 2]),
        top_classes=np.array([[0, 1, 2, -1, -1], [2, 0, 1, -1, -1]]),
        top_probs=np.array([[0.7, 0.2, 0.1, 0, 0], [0.5, 0.3, 0.2, 0, 0]], np.float32),
        vectors={"l1": np.array([[0.5, 0.2, 0.1], [0.1, 0.3, 0.9]], np.float32),
                 "l2": np.array([[0.2, 0.8, 0.1, 0.0], [0.1, 0.2, 0.7, 0.4]], np.float32)},
    )
    return tags, heldout


def test_explanation_counts_by_hand() -> None:
    tags, heldout = hand_case()
    a, b = explain(tags, heldout)
    # image a: l1 most active filter 0 (tags cat, dog); l2 filter 1 (tag cat) -> cat 2, dog 1
    assert a.active == {"l1": [0], "l2": [1]}
    assert a.counts.tolist() == [2, 1, 0]
    assert a.ranking() == [(0, 2, 1), (1, 1, 2)]
    # image b: l1 filter 2 (cow); l2 filter 2 (dog) -> dog 1, cow 1, tied at rank 1
    assert b.counts.tolist() == [0, 1, 1]
    assert [r for _, _, r in b.ranking()] == [1, 1]
    assert a.text(tags.classes).startswith("a: predicted cat (70%); true dog — active filters tagged (k-best 1): cat 2, dog 1")
    assert a.to_json(tags.classes)["tags_per_layer"] == {"l1": {"cat": 1, "dog": 1}, "l2": {"cat": 1}}


def brute_force_hits(counts: np.ndarray, target: int, n: int) -> bool:
    """The definition, slowly: the target has a count and fewer than n classes have a higher one."""
    if counts[target] == 0:
        return False
    return sum(1 for c in counts if c > counts[target]) + 1 <= n


def test_hits_against_brute_force() -> None:
    rng = np.random.default_rng(7)
    counts = rng.integers(0, 4, size=(60, 12))
    targets = rng.integers(0, 12, size=60)
    hits = hits_at(counts, targets, max_n=12)
    for i in range(60):
        for n in range(1, 13):
            assert hits[i, n - 1] == brute_force_hits(counts[i], targets[i], n)


def brute_force_tie_aware_hits(counts: np.ndarray, target: int, n: int) -> float:
    """The definition, slowly: the share of all orders of the classes, ties in every order, that put
    the target (which has a count) among the first n."""
    from itertools import permutations

    if counts[target] == 0:
        return 0.0
    tied = [c for c in range(len(counts)) if counts[c] == counts[target]]
    above = sum(1 for c in counts if c > counts[target])
    orders = list(permutations(tied))
    return sum(above + order.index(target) + 1 <= n for order in orders) / len(orders)


def test_tie_aware_hits_against_brute_force() -> None:
    """Every order of the tied classes counted (0.5 for a target tied with one other class at n = 1,
    where `hits_at` says 1); never above the ranked Hits, equal to it without ties."""
    from filtag_kg.explain import tie_aware_hits_at

    rng = np.random.default_rng(1)
    counts = rng.integers(0, 3, size=(80, 6))  # small counts over few classes: many ties
    targets = rng.integers(0, 6, size=80)
    chance = tie_aware_hits_at(counts, targets, max_n=6)
    for i in range(80):
        for n in range(1, 7):
            assert chance[i, n - 1] == pytest.approx(brute_force_tie_aware_hits(counts[i], targets[i], n), abs=1e-12)
    hits = hits_at(counts, targets, max_n=6)
    assert (chance <= hits).all()
    alone = np.array([(counts[i] == counts[i, targets[i]]).sum() == 1 for i in range(80)])
    np.testing.assert_array_equal(chance[alone], hits[alone])
    assert tie_aware_hits_at(np.array([[2, 2, 0]]), np.array([1]), max_n=2).tolist() == [[0.5, 1.0]]


def test_evaluation_by_hand() -> None:
    tags, heldout = hand_case()
    result = evaluate(tags, heldout, max_n=3)
    # against the prediction: a predicted cat (rank 1) -> hit@1; b predicted cow (rank 1, tied) -> hit@1
    np.testing.assert_array_equal(result.hits[("k-best", 1, "all", "predicted")], [1, 1, 1])
    # against the truth: a is dog (rank 2) -> hit from n=2; b is cow (rank 1)
    np.testing.assert_array_equal(result.hits[("k-best", 1, "all", "true")], [0.5, 1, 1])
    # last layer alone: a -> cat only (dog has 0: never a hit); b -> dog only (cow has 0)
    np.testing.assert_array_equal(result.hits[("k-best", 1, "last", "true")], [0, 0, 0])
    assert result.accuracy == 0.5
    # tie-aware: b's predicted cow ties with dog at rank 1 -> 0.5 at n = 1; a's dog (truth) is second alone
    np.testing.assert_array_equal(result.tie_aware[("k-best", 1, "all", "predicted")], [0.75, 1, 1])
    np.testing.assert_array_equal(result.tie_aware[("k-best", 1, "all", "true")], [0.25, 1, 1])
    rows = result.rows()
    assert len(rows) == 4 and rows[0]["hits@1"] == 1.0 and rows[0]["tie_aware@1"] == 0.75
    assert len(evaluate(tags, heldout).hits[("k-best", 1, "all", "true")]) == 3  # max_n: at most the 3 classes


def test_default_model_hits_follow_the_paper(default_stats) -> None:
    """Hits@n grows with n, and with k and q at fixed n (the shape of the paper's Figure 4)."""
    tags = filtag_kg.tag(default_stats, k=[1, 3, 5], q=[5, 10, 25])
    result = evaluate(tags, default_stats.heldout)
    for key, curve in result.hits.items():
        assert (np.diff(curve) >= 0).all(), key  # monotone in n by definition of the ranking
    for scope in ("all", "last"):
        for target in ("predicted", "true"):
            for method, params in (("k-best", (1, 3, 5)), ("q-quantile", (5.0, 10.0, 25.0))):
                at5 = [result.hits[(method, p, scope, target)][4] for p in params]
                assert at5[0] <= at5[1] + 0.02 and at5[1] <= at5[2] + 0.02, (scope, target, method, at5)
    best = result.hits[("k-best", 5, "all", "predicted")]
    assert best[0] >= 0.5 and best[2] >= 0.85  # tags explain most predictions within the top 3
    # the tags explain the classification: per-class hit rate correlates with per-class accuracy
    assert result.correlation[("k-best", 5, "all", "true")]["spearman_rho"] > 0


def test_tags_of_some_layers_explain_with_those_layers() -> None:
    """`tag --layer l1` keeps l2 in the tag set's layers without tags: the 'last' scope read l2 and
    every hit rate there was 0; explaining records without l2 failed although l2 carries no tags."""
    tags, heldout = hand_case()
    stats = ActivationStats.empty(["l1", "l2"], tags.classes, tags.n_filters)
    stats.counts[:] = 1
    stats.sums["l1"] = np.array([[0.9, 0.1, 0.2], [0.8, 0.3, 0.1], [0.1, 0.2, 0.7]])
    only_l1 = filtag_kg.tag(stats, k=1, layers="l1")
    assert only_l1.layers == ["l1", "l2"] and only_l1.tagged_layers == ["l1"]
    result = evaluate(only_l1, heldout, max_n=3)
    # a: l1 filter 0 (cat, dog), predicted cat and true dog: both rank 1; b: l1 filter 2 (cow): predicted and true cow
    for scope in ("all", "last"):
        for target in ("predicted", "true"):
            np.testing.assert_array_equal(result.hits[("k-best", 1, scope, target)], [1, 1, 1])
    without_l2 = HeldOut(heldout.image_ids, heldout.positions, heldout.labels, heldout.top_classes, heldout.top_probs,
                         {"l1": heldout.vectors["l1"]})
    a, _ = explain(only_l1, without_l2)
    assert a.active == {"l1": [0]} and a.counts.tolist() == [1, 1, 0]
    with pytest.raises(UserError, match=r"the tagged layers \(l1, l2\) have no per-image activations .*\(layers l9\)"):
        evaluate(tags, HeldOut(heldout.image_ids, heldout.positions, heldout.labels, heldout.top_classes,
                               heldout.top_probs, {"l9": heldout.vectors["l1"]}))


def test_bad_positions_selections_and_per_class_n_are_named() -> None:
    """per_class_n=0 reported the hit rates at max_n as per-class Hits@0; position -1 explained the
    last image; an unknown selection or position and records of None were tracebacks."""
    tags, heldout = hand_case()
    with pytest.raises(UserError, match=r"per_class_n must be in 1 … max_n \(3: at most the number of classes\), got 0"):
        evaluate(tags, heldout, max_n=3, per_class_n=0)
    with pytest.raises(UserError, match="got 4"):
        evaluate(tags, heldout, max_n=3, per_class_n=4)
    with pytest.raises(UserError, match="no held-out images to evaluate on"):
        evaluate(tags, None)
    with pytest.raises(UserError, match=r"image position -1 is not among the 2 held-out images \(0 … 1\)"):
        explain(tags, heldout, images=[-1])
    with pytest.raises(UserError, match="image position 2 is not"):
        explain(tags, heldout, images=[0, 2])
    with pytest.raises(UserError, match="selection k-best 2 is not in the tag set; it has: k-best 1"):
        explain(tags, heldout, selections=[("k-best", 2)])
    assert [e.image_id for e in explain(tags, heldout, selections=[["k-best", 1]], images=[1])] == ["b"]


def test_images_of_unknown_class_are_refused_by_evaluation() -> None:
    """Image files outside class folders have label -1: evaluate failed with numpy's 'list argument must
    have no negative elements' (and Hits@n against the truth read the last class); explain explains them."""
    tags, heldout = hand_case()
    heldout.labels = np.array([-1, 2])
    with pytest.raises(UserError, match=r"^1 of the 2 images have no known true class \(e\.g\. a\); evaluation "):
        evaluate(tags, heldout, max_n=3)
    a, _ = explain(tags, heldout)
    assert a.true_class is None and a.to_json(tags.classes)["true"] is None


def test_image_positions_must_be_whole_numbers() -> None:
    """numpy converted images=['1'] (an id) to position 1, 0.9 to 0 and True to 1: another image was
    explained without a word."""
    tags, heldout = hand_case()
    heldout.image_ids = ["1", "0"]  # ids that read as positions of the other image
    for bad, shown in (("1", "'1'"), (0.9, "0.9"), (True, "True")):
        with pytest.raises(UserError, match=rf"^images are positions in the held-out records \(whole numbers\), "
                                            rf"got {shown}; the position of an image id is heldout"):
            explain(tags, heldout, images=[bad])
    assert [e.image_id for e in explain(tags, heldout, images=np.array([1, 0]))] == ["0", "1"]
    assert explain(tags, heldout, images=[]) == []


def test_max_n_is_checked_and_one_n_plots_without_warnings(tmp_path) -> None:
    """max_n=0 was reported as a bad per_class_n (the default 1, not given); with max_n=1 (or one class)
    the Hits@n plot set identical x limits, a matplotlib UserWarning on every `evaluate --max-n 1`."""
    import warnings

    from filtag_kg.explain import write_evaluation

    tags, heldout = hand_case()
    for bad in (0, -2, 2.5, True):
        with pytest.raises(UserError, match=rf"^max_n must be a whole number of at least 1, got {bad!r}$"):
            evaluate(tags, heldout, max_n=bad)
    result = evaluate(tags, heldout, max_n=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        written = write_evaluation(result, tmp_path)
    assert [p.name for p in written][:3] == ["hits.csv", "per-class.csv", "evaluation-hits.png"]
    assert (tmp_path / "hits.csv").read_text().splitlines()[0].startswith(
        "method,parameter,scope,target,hits@1,tie_aware@1,pearson")


def test_records_of_another_layer_size_are_named() -> None:
    """Held-out records whose layer has other filters than the tag set's (another network, no model
    hash to tell) failed in numpy's matmul ('mismatch in its core dimension')."""
    tags, heldout = hand_case()
    heldout.vectors["l2"] = np.zeros((2, 5), np.float32)
    for run in (explain, evaluate):
        with pytest.raises(UserError, match=r"^layer 'l2' has 4 filters in the tag set but 5 in the held-out "
                                            r"records: they are of different networks$"):
            run(tags, heldout)


def test_selections_are_named_as_the_tag_set_names_them() -> None:
    """q = 33.3333333 printed as 'q-quantile 33.3333' (`:g`), which names no selection of the tag set:
    explanations, the list of selections in errors and the per-class table now say 'q-quantile 33.3333333'."""
    tags, heldout = hand_case()
    stats = ActivationStats.empty(["l1", "l2"], list(tags.classes), dict(tags.n_filters))
    stats.counts[:] = 1
    stats.sums["l1"], stats.sums["l2"] = np.eye(3), np.eye(3, 4)
    thirds = filtag_kg.tag(stats, q=[33.3333333])
    (explanation,) = explain(thirds, heldout, images=[0])
    assert "(q-quantile 33.3333333)" in explanation.text(thirds.classes)
    with pytest.raises(UserError, match=r"it has: q-quantile 33\.3333333$"):
        explain(thirds, heldout, [("k-best", 1)])


def test_hits_table_names_selections_as_the_tag_set_does() -> None:
    """The table cut q = 100/3 to 'q-quantile 33.3333', a selection the tag set (and `explain -s`) does not have."""
    from filtag_kg.explain import hits_table
    from filtag_kg.records import selection_label

    _, heldout = hand_case()
    stats = ActivationStats.empty(["l1", "l2"], ["cat", "dog", "cow"], {"l1": 3, "l2": 4})
    stats.counts[:] = 1
    tags = filtag_kg.tag(stats, k=1, q=100 / 3)
    label = selection_label(*tags.selections[1])
    assert label == "q-quantile 33.333333333333336"
    lines = hits_table(evaluate(tags, heldout, max_n=3)).splitlines()
    assert lines[4].startswith("Tie-aware Hits@n")
    for header, k1, q in (lines[1:4], lines[5:8]):
        assert q.startswith(f"{label} ") and k1.startswith("k-best 1 ")
        assert len(header) == len(k1) == len(q)  # columns aligned under the header


def test_a_q_given_as_float32_is_named_as_written_everywhere(tmp_path) -> None:
    """q = np.float32(33.3) became the selection 'q-quantile 33.29999923706055' (its float64 value):
    in tags.csv, the explanations and the graph's labels; the plots' legends cut q = 33.3333333 to
    'q=33.3333%'. The selection is now the value written, and the plots name it as the tag set does."""
    import matplotlib

    from filtag_kg.explain import write_evaluation
    from filtag_kg.records import TagSet

    _, heldout = hand_case()
    stats = ActivationStats.empty(["l1", "l2"], ["cat", "dog", "cow"], {"l1": 3, "l2": 4})
    stats.counts[:] = 1
    tags = filtag_kg.tag(stats, q=[np.float32(33.3), 33.3, 33.3333333])
    assert tags.selections == [("q-quantile", 33.3), ("q-quantile", 33.3333333)]
    tags.save(tmp_path / "tags")
    assert {row.rsplit(",", 1)[1] for row in (tmp_path / "tags" / "tags.csv").read_text().splitlines()[1:]} == {
        "33.3", "33.3333333"}
    assert TagSet.load(tmp_path / "tags").selections == tags.selections
    (explanation,) = explain(tags, heldout, [("q-quantile", np.float32(33.3))], images=[0])
    assert "(q-quantile 33.3)" in explanation.text(tags.classes)
    assert len(tags.select("q-quantile", np.float32(33.3))) == len(tags) // 2
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # the legends as text in the SVG
        write_evaluation(evaluate(tags, heldout, max_n=3), tmp_path / "ev")
    with (tmp_path / "ev" / "hits.csv").open() as f:  # q=33.3 was '33.3' in tags.csv, but a q of 10 '10.0' here
        assert {row.split(",")[1] for row in f.read().splitlines()[1:]} == {"33.3", "33.3333333"}
    write_evaluation(evaluate(filtag_kg.tag(stats, k=1, q=10), heldout, max_n=3), tmp_path / "ev10")
    with (tmp_path / "ev10" / "hits.csv").open() as f:
        assert {row.split(",")[1] for row in f.read().splitlines()[1:]} == {"1", "10"}
    for plot in ("evaluation-hits.svg", "evaluation-per-class.svg"):
        svg = (tmp_path / "ev" / plot).read_text()
        assert "q-quantile 33.3333333" in svg and "q-quantile 33.3<" in svg and "33.2999" not in svg, plot


def _with(heldout: HeldOut, **fields: object) -> HeldOut:
    """A copy of `heldout` with some fields replaced (`vectors_l1`: the vectors of layer l1)."""
    import copy

    out = copy.deepcopy(heldout)
    for name, value in fields.items():
        if name == "vectors_l1":
            out.vectors["l1"] = value
        else:
            setattr(out, name, value)
    return out


@pytest.mark.parametrize("fields, message", [
    ({"labels": np.array([1])}, r"heldout\.labels has 1 rows for the 2 images of heldout\.image_ids: true class"),
    ({"image_ids": ["a"]}, r"heldout\.labels has 2 rows for the 1 images of heldout\.image_ids"),
    ({"labels": np.array([[1], [2]])}, r"heldout\.labels has shape 2×1, expected 2: true class indices"),
    ({"labels": np.array([1.0, 2.0])}, r"heldout\.labels must be a numpy array of true class indices \[images\], "
                                       r"got float64 array"),
    ({"labels": [1, 2]}, r"heldout\.labels must be a numpy array of true class indices \[images\], got list"),
    ({"labels": np.array([1, 5])}, r"image b: true class 5 is not among the tag set's 3 classes \(0 … 2\)"),
    ({"labels": np.array([1, -2])}, r"image b: true class -2 is not among the tag set's 3 classes"),
    ({"top_classes": np.array([0, 2])}, r"heldout\.top_classes has shape 2, expected 2×n: top-5 class indices"),
    ({"top_classes": np.zeros((2, 0), np.int64)}, r"heldout\.top_classes has shape 2×0, expected 2×n"),
    ({"top_classes": np.array([[7, 1, 2, -1, -1], [2, 0, 1, -1, -1]])}, r"image a: predicted class 7 is not among"),
    ({"top_classes": np.array([[0, 1, 2, -1, -1], [-1, 0, 1, -1, -1]])}, r"image b: predicted class -1 is not among"),
    ({"top_classes": np.array([[0, 1, 2, -1, 3], [2, 0, 1, -1, -1]])}, r"image a: top-5 class 3 is not among"),
    ({"top_classes": np.array([[0, 1, 2, -1, -1]])}, r"heldout\.top_classes has 1 rows for the 2 images"),
    ({"top_probs": np.array([[0.7, 0.2, 0.1, 0, 0]], np.float32)}, r"heldout\.top_probs has 1 rows for the 2 images"),
    ({"top_probs": np.zeros((2, 4), np.float32)}, r"heldout\.top_probs has shape 2×4, expected 2×5: top-5 probabilities"),
    ({"top_probs": np.array([[0.7, 0.2, 0.1, 0, 0], [1.5, 0, 0, 0, 0]])}, r"heldout\.top_probs\[1, 0\] \(image b\) "
                                                                          r"is 1\.5, not a probability \(0 … 1\)"),
    ({"vectors_l1": np.zeros((1, 3), np.float32)}, r"heldout\.vectors\['l1'\] has 1 rows for the 2 images"),
    ({"vectors_l1": np.zeros(3, np.float32)}, r"heldout\.vectors\['l1'\] has shape 3, expected 2×n"),
    ({"vectors_l1": [[0.5, 0.2, 0.1], [0.1, 0.3, 0.9]]}, r"heldout\.vectors\['l1'\] must be a numpy array of scaled "
                                                         r"feature-map means \[images, filters\], got list"),
    ({"image_ids": [1, 2]}, r"heldout\.image_ids must be strings \(an id per image\), got 1"),
    ({"image_ids": "ab"}, r"heldout\.image_ids must be a list of strings \(an id per image\), got str"),
], ids=lambda value: "+".join(value) if isinstance(value, dict) else "")
def test_malformed_records_are_named_by_field(fields: dict, message: str) -> None:
    """Records built by hand with a wrong shape, length or dtype failed deep in numpy ('index 1 is out of
    bounds', 'weights and list don't have the same length', 'arrays used as indices must be of integer
    type'), or were explained without a word (float labels, a label of 5 of 3 classes, 1 label for 2 ids)."""
    tags, heldout = hand_case()
    bad = _with(heldout, **fields)
    for run in (explain, evaluate):
        with pytest.raises(UserError, match=f"^{message}"):
            run(tags, bad)


def test_records_that_are_no_heldout_are_named() -> None:
    tags, _ = hand_case()
    for run in (explain, evaluate):
        with pytest.raises(UserError, match=r"^held-out records must be a filtag_kg\.records\.HeldOut, got str$"):
            run(tags, "records")


def test_nan_activations_and_probabilities_are_refused_naming_the_image() -> None:
    """A NaN (an activation that overflowed, as float16 does) sorted last: that filter was never active,
    and the image was explained as if it were not there; a NaN probability printed 'nan%'. The images
    explained are checked, so the others of the records can still be explained."""
    tags, heldout = hand_case()
    vectors = heldout.vectors["l1"].copy()
    vectors[1, 2] = np.nan
    nan_vectors = _with(heldout, vectors_l1=vectors)
    for run in (explain, evaluate):
        with pytest.raises(UserError, match=r"^1 of the 2 images have NaN or infinite activations in layer 'l1' "
                                            r"\(heldout\.vectors\['l1'\]\), e\.g\. image b at position 1: their "
                                            r"active filters are unknown"):
            run(tags, nan_vectors)
    with pytest.raises(UserError, match=r"^1 of the 1 images have NaN .* image b at position 1"):
        explain(tags, nan_vectors, images=[1])
    assert [e.image_id for e in explain(tags, nan_vectors, images=[0])] == ["a"]
    probs = heldout.top_probs.copy()
    probs[0, 0] = np.nan
    for run in (explain, evaluate):
        with pytest.raises(UserError, match=r"^heldout\.top_probs\[0, 0\] \(image a\) is nan, not a probability"):
            run(tags, _with(heldout, top_probs=probs))


def test_selections_per_class_n_and_tags_of_the_wrong_kind_are_named() -> None:
    """selections='k-best 1' (or one pair, not a list of pairs) failed to unpack ('not enough values');
    per_class_n=1.5 failed in numpy indexing and True counted as 1; tags=None was an AttributeError."""
    tags, heldout = hand_case()
    for bad in ("k-best 1", ("k-best", 1), [("k-best", 1, 2)]):
        with pytest.raises(UserError, match=rf"^selections must be \(method, k or q\) pairs, e\.g\. \[\('k-best', 5\)\], "
                                            rf"got {re.escape(repr(bad))}$"):
            explain(tags, heldout, selections=bad)
    for bad in (1.5, True):
        with pytest.raises(UserError, match=rf"^per_class_n must be in 1 … max_n \(3: at most the number of classes\), got {bad}$"):
            evaluate(tags, heldout, max_n=3, per_class_n=bad)
    assert evaluate(tags, heldout, max_n=3, per_class_n=np.int64(2)).per_class_n == 2
    for run in (explain, evaluate):
        with pytest.raises(UserError, match=r"^tags must be a filtag_kg\.records\.TagSet, got NoneType$"):
            run(None, heldout)
