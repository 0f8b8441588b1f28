"""Explanations in the graph: SHACL-valid export, and the error-analysis queries on a hand-made case."""

from __future__ import annotations

import copy
import re
from itertools import chain

import numpy as np
import pytest
from pyoxigraph import NamedNode, Store
from test_explain import hand_case

import filtag_kg
from filtag_kg.errors import UserError
from filtag_kg.kg.coarsen import link_wordnet
from filtag_kg.kg.error_analysis import error_report
from filtag_kg.kg.explanations import explanations_graph, export_explanations
from filtag_kg.kg.export import export_tags, validate
from filtag_kg.kg.queries import run
from filtag_kg.kg.vocab import FT, PROV
from filtag_kg.records import ActivationStats, HeldOut

from kg_helpers import run_iri


@pytest.fixture(scope="module")
def case():
    """The hand case of test_explain plus image c: a cat, predicted cat, whose active filters say cow,
    and image d: a dog taken for a cat, whose active filters say dog and cow (tied at rank 1), not cat."""
    tags, heldout = hand_case()
    tags.manifest["dataset"] = {"name": "toy", "label_space": "toy"}
    c_and_d = HeldOut(
        image_ids=["c", "d"], positions=np.array([2, 3]), labels=np.array([0, 1]),
        top_classes=np.array([[0, 2, 1, -1, -1], [0, 1, 2, -1, -1]]),
        top_probs=np.array([[0.6, 0.3, 0.1, 0, 0], [0.5, 0.4, 0.1, 0, 0]], np.float32),
        vectors={"l1": np.array([[0.0, 0.1, 0.9], [0.1, 0.2, 0.8]], np.float32),  # c, d: filter 2 (cow)
                 "l2": np.array([[0.0, 0.1, 0.2, 0.9], [0.1, 0.0, 0.9, 0.2]], np.float32)},  # c: 3 (cow), d: 2 (dog)
    )
    heldout = HeldOut.concatenate([heldout, c_and_d])
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
        ("a", "cat", "cat", 2, 1), ("a", "cat", "dog", 1, 2), ("d", "cat", "cow", 1, 1), ("d", "cat", "dog", 1, 1)]
    assert run("errors-misclassified", store, {"class": "cat"}).values() == []  # c is right


def test_true_and_predicted_tags_active(case) -> None:
    _, _, store = case
    rows = run("errors-both-tags-active", store).values()
    assert [(r["id"], r["true"], r["predicted"], r["trueCount"], r["predictedCount"], r["pattern"]) for r in rows] == [
        ("a", "dog", "cat", 1, 2, "both"), ("d", "dog", "cat", 1, 0, "true only")]


def test_confused_pairs_with_shared_filters(case) -> None:
    _, _, store = case
    rows = run("errors-confused-pairs", store, {"selection": "k-best 1"}).values()
    # k=1: filter l1#0 is the best filter of both cat and dog; a and d are dogs taken for cats
    assert [(r["true"], r["predicted"], r["errors"], r["sharedFilters"]) for r in rows] == [("dog", "cat", 2, 1)]


def test_explanations_that_disagree_with_the_prediction(case) -> None:
    _, _, store = case
    rows = run("errors-explanation-disagrees", store, {"n": 1}).values()
    # a: cat rank 1 (agrees); b: cow tied at rank 1 (agrees); c: cat untagged, cow on top; d: cat untagged,
    # cow and dog tied on top (a row each)
    assert [(r["id"], r["predicted"], r["predictedRank"], r["topTag"]) for r in rows] == [
        ("c", "cat", "untagged", "cow"), ("d", "cat", "untagged", "cow"), ("d", "cat", "untagged", "dog")]
    with pytest.raises(UserError, match="n=0: out of range; n must be >= 1"):  # no top tag to agree with
        run("errors-explanation-disagrees", store, {"n": 0})


def test_predictions_among_the_top_tags_only_by_a_tie(case) -> None:
    """Ranks are shared by ties, so b (cow tied with dog for the top) agrees for errors-explanation-disagrees;
    errors-explanation-tied names it at n = 1, and at n = 2 (both tied classes fit) no image."""
    _, _, store = case
    rows = run("errors-explanation-tied", store, {"n": 1, "selection": "k-best 1"}).values()
    assert [(r["id"], r["predicted"], r["predictedRank"], r["tiedClasses"], r["correct"]) for r in rows] == [
        ("b", "cow", 1, 2, True)]
    assert not run("errors-explanation-tied", store, {"n": 2}).values()


def test_error_report_text(case) -> None:
    _, _, store = case
    text = error_report(store, "k-best 1")
    assert "dog -> cat: 2 errors, 1 shared filters" in text
    assert ("of 2 misclassified images, the active filters were tagged with both the true and the predicted class "
            "in 1 (50%), the predicted class only in 0, the true class only in 1, neither in 0") in text
    assert "e.g. image a: a dog taken for a cat; 1 active filters tagged dog, 2 tagged cat" in text
    with pytest.raises(UserError, match="no explanations with tag selection 'k-best 7' in the store; it has: k-best 1"):
        error_report(store, "k-best 7")  # not "no misclassified images": nothing of k-best 7 was explained


def test_an_image_whose_top_tags_tie_is_counted_once(case) -> None:
    """errors-explanation-disagrees gives a row per tied top tag (d: cow and dog), but the report counts
    images: counting rows, a tie made the demo say 446 images, 104 misclassified, for 370 and 79."""
    _, _, store = case
    rows = run("errors-explanation-disagrees", store, {"n": 1, "selection": "k-best 1"}).values()
    assert [(r["id"], r["topTag"], r["correct"]) for r in rows] == [("c", "cow", True), ("d", "cow", False),
                                                                     ("d", "dog", False)]
    assert error_report(store, "k-best 1").endswith(
        "\n  2 images whose prediction is not the top tag of their active filters, nor tied for it (1 of them "
        "misclassified); in 1 more it shares the top only by a tie with other classes (0 of them misclassified)")


def test_error_report_names_n_and_refuses_what_would_mislead(case) -> None:
    """n=2 was reported as 'not the top tag'; selection None (or '') reported every selection's errors as
    one (the demo: 'of 780 misclassified images' of 130); top=-1 left out the last pair, top=2.5 was a
    TypeError from slicing; n=0 was refused as '--param n=0', an option of another command."""
    _, _, store = case
    # c and d: cat untagged, which no n explains
    assert error_report(store, "k-best 1", n=2).endswith(
        "\n  2 images whose prediction is not among the top 2 tags of their active filters, nor tied for a place "
        "among them (1 of them misclassified); in 0 more it is among them only by a tie with classes beyond them "
        "(0 of them misclassified)")
    for selection in (None, ""):
        with pytest.raises(UserError, match=rf"^selection must name a tag selection, e\.g\. 'k-best 5', "
                                            rf"got {selection!r}$"):
            error_report(store, selection)
    for name, bad in (("top", -1), ("top", 0), ("top", 2.5), ("top", True), ("n", 0), ("n", "2"), ("n", None)):
        with pytest.raises(UserError, match=rf"^{name} must be a whole number of at least 1, "
                                            rf"got {re.escape(repr(bad))}$"):
            error_report(store, "k-best 1", **{name: bad})
    assert error_report(store, "k-best 1", top=np.int64(1)) == error_report(store, "k-best 1", top=1)


ERROR_QUERIES = ("errors-confused-pairs", "errors-both-tags-active", "errors-explanation-disagrees",
                 "errors-misclassified")


def test_a_second_network_on_the_same_images_changes_no_answer_about_the_first(case) -> None:
    """Image nodes are shared by every run on the data set, and the union default graph repeats a
    triple once per graph that holds it (Oxigraph 0.5): each run's answers must stay its own."""
    tags, heldout, store = case
    other = copy.deepcopy(tags)  # the same tags, as if of another network …
    other.manifest["model"] = {"name": "other-cnn", "hash": "0" * 64}
    other_heldout = copy.deepcopy(heldout)  # … that gets a right, takes b (a cow) for a dog, c and d right
    other_heldout.top_classes = np.array([[1, 0, 2, -1, -1], [1, 2, 0, -1, -1], [0, 2, 1, -1, -1], [1, 0, 2, -1, -1]])
    alone = Store()
    alone.extend(chain(export_tags(other), export_explanations(other, other_heldout)))
    both = Store()
    both.extend(chain(store, alone))
    first, second = (run_iri(t) for t in (tags, other))
    assert first != second
    for name in ERROR_QUERIES:
        params = {"errors-explanation-disagrees": {"n": 1}, "errors-misclassified": {"class": "cow"}}.get(name, {})
        for iri, single in ((first, store), (second, alone)):
            assert run(name, both, {**params, "run": iri}).values() == run(name, single, params).values(), name
        assert len(run(name, both, params)) == len(run(name, store, params)) + len(run(name, alone, params)), name
    for iri, single in ((first, store), (second, alone)):
        assert error_report(both, "k-best 1", run_iri=iri) == error_report(single, "k-best 1")
    assert "cow -> dog: 1 errors" in error_report(both, "k-best 1", run_iri=second)
    # without a run: each run's report in turn, never their counts added up
    assert error_report(both, "k-best 1") == "\n\n".join(
        f"Run {iri}:\n{error_report(single, 'k-best 1')}" for iri, single in sorted(
            ((first, store), (second, alone)), key=lambda pair: pair[0]))


def test_a_run_linked_to_wordnet_only_is_no_run_with_explanations(case, wn) -> None:
    """A run's coarse concepts (`link wordnet`) carry ft:tagSelection and prov:wasInfluencedBy as
    explanations do, but explain no image: the report must not take such a run for an explained one."""
    tags, _, store = case
    stats = ActivationStats.empty(["l1"], tags.classes, {"l1": 3}, manifest={
        "dataset": {"name": "toy", "label_space": "toy"}, "model": {"name": "other-cnn", "hash": "0" * 64}})
    stats.counts[:] = 1
    stats.sums["l1"] = np.array([[0.9, 0.5, 0.1], [0.8, 0.6, 0.1], [0.1, 0.5, 0.7]])
    other = filtag_kg.tag(stats, k=[1, 2])  # tags only, no explanations
    linked = Store()
    linked.extend(chain(store, export_tags(other), link_wordnet(other, wn).quads))
    first, second = run_iri(tags), run_iri(other)
    # the nodes the report must not count: coarse concepts of run 2's k-best 2
    assert linked.query(f"""ASK {{ ?c a <{FT}CoarseConcept> ; <{FT}tagSelection> "k-best 2" ;
                                     <{PROV}wasInfluencedBy> <{second}> }}""", use_default_graph_as_union=True)
    with pytest.raises(UserError, match=re.escape(f"no explanations of run {second} in the store; "
                                                  f"runs with explanations: {first}") + "$"):
        error_report(linked, "k-best 2", run_iri=second)
    with pytest.raises(UserError, match="no explanations with tag selection 'k-best 2' in the store; "
                                        "it has: k-best 1$"):
        error_report(linked, "k-best 2")
    assert error_report(linked, "k-best 1") == error_report(store, "k-best 1")  # not a report per run


def test_confused_pairs_of_classes_with_one_label_stay_apart() -> None:
    """ImageNet has two cranes (bird, machine): their confusions with one class are two pairs, each with
    its own errors and shared filters. Grouped by label they were one row with one pair's errors (1, not
    2 images) and the filters of both (2 shared, where each pair shares 1)."""
    stats = ActivationStats.empty(["l1"], ["crane", "crane", "cat"], {"l1": 3},
                                  {"dataset": {"name": "toy", "label_space": "toy"}})
    stats.counts[:] = 1
    stats.sums["l1"] = np.array([[0.9, 0.1, 0.8], [0.1, 0.9, 0.8], [0.9, 0.8, 0.1]])
    tags = filtag_kg.tag(stats, k=2)  # crane 0: filters 0, 2; crane 1: 1, 2; cat: 0, 1
    heldout = HeldOut(
        image_ids=["x", "y"], positions=np.arange(2), labels=np.array([0, 1]),  # both taken for a cat
        top_classes=np.array([[2, 0, 1], [2, 1, 0]]), top_probs=np.array([[0.6, 0.3, 0.1]] * 2, np.float32),
        vectors={"l1": np.array([[0.9, 0.1, 0.5], [0.1, 0.9, 0.5]], np.float32)},
    )
    store = Store()
    store.extend(chain(export_tags(tags), export_explanations(tags, heldout)))
    rows = run("errors-confused-pairs", store).values()
    assert sorted((r["trueNode"].rsplit("/", 1)[1], r["predicted"], r["errors"], r["sharedFilters"]) for r in rows) \
        == [("crane~0", "cat", 1, 1), ("crane~1", "cat", 1, 1)]
    assert error_report(store, "k-best 2").count("crane -> cat: 1 errors, 1 shared filters") == 2


def test_images_of_unknown_class_are_not_exported_as_the_last_class(case) -> None:
    """Label -1 (an image file outside a class folder) indexed the class list from its end: image a went
    into the graph as a cow, the last class, and as misclassified."""
    tags, heldout, _ = case
    unknown = copy.deepcopy(heldout)
    unknown.labels = np.array([-1, 2, 0, 1])
    with pytest.raises(UserError, match=r"^1 of the 4 images have no known true class \(e\.g\. a\); the graph "):
        list(export_explanations(tags, unknown))


def test_classes_outside_the_tag_set_are_refused_by_the_export(case) -> None:
    """Records of a network with more outputs than the tag set's classes: a label or prediction of 3 (of 3
    classes) failed with 'list index out of range', and a prediction of -1 went into the graph as a cow."""
    tags, heldout, _ = case
    for field, value, what in (("labels", 3, "true"), ("top_classes", 3, "predicted"), ("top_classes", -1, "predicted")):
        records = copy.deepcopy(heldout)
        getattr(records, field)[1] = value  # image b
        with pytest.raises(UserError, match=rf"^image b: {what} class {value} is not among the tag set's 3 classes "
                                            r"\(0 … 2\); are the held-out records of another network or data set\?$"):
            list(export_explanations(tags, records))


def test_report_of_a_network_without_errors_still_counts_disagreeing_explanations(case) -> None:
    """With no misclassified image the report stopped at 'no misclassified held-out images' and left out
    the correct predictions its tags do not explain (image c: a cat whose active filters say cow)."""
    tags, heldout, _ = case
    store = Store()
    store.extend(chain(export_tags(tags), export_explanations(tags, heldout.order(np.array([1, 2])))))  # b, c
    assert error_report(store, "k-best 1") == (
        "Error analysis (tag selection k-best 1): no misclassified held-out images with explanations in the store.\n"
        "  1 images whose prediction is not the top tag of their active filters, nor tied for it (0 of them "
        "misclassified); in 1 more it shares the top only by a tie with other classes (0 of them misclassified)")


def test_images_of_another_data_set_keep_their_data_set_in_their_iri(case, tmp_path) -> None:
    """`evaluate --tags T --stats S` with S collected on another data set (a test folder, same model
    and classes) named S's images as images of T's data set: image 'a' of the test folder became
    <image/toy/a>, the node of another image, which other runs on 'toy' describe."""
    from filtag_kg.kg.explanations import load_explanations
    from filtag_kg.kg.store import Store as FiltagStore

    tags, heldout, _ = case
    stats = ActivationStats.empty(tags.layers, tags.classes, tags.n_filters,
                                  {"dataset": {"name": "toy-test", "label_space": "toy-test"}})
    stats.heldout = heldout
    load_explanations(tags, stats, tmp_path / "store")
    with FiltagStore(tmp_path / "store", read_only=True, create=False) as db:
        images = sorted({q.object.value for q in db.oxigraph.quads_for_pattern(None, NamedNode(FT + "image"), None)})
    assert images == [f"https://w3id.org/filtag-kg/id/image/toy-test/{i}" for i in ("a", "b", "c", "d")]


def test_data_sets_of_one_name_with_other_classes_do_not_share_images(case) -> None:
    """Two folders called 'train' with other classes: image 'a' of each was <image/train/a>, one node
    with two true classes (SHACL's ImageShape failed on the union). Images are keyed by label space."""
    tags, heldout, _ = case

    def images(dataset: dict[str, str]) -> set[str]:
        return {q.object.value for q in export_explanations(tags, heldout, dataset=dataset)
                if q.predicate.value == FT + "image"}

    first = images({"name": "train", "label_space": "train-1a2b"})
    second = images({"name": "train", "label_space": "train-3c4d"})
    assert first and not first & second
    assert images({"name": "train"}) == {f"https://w3id.org/filtag-kg/id/image/train/{i}" for i in ("a", "b", "c", "d")}


def test_records_that_would_break_the_shapes_are_refused_before_any_quad(case, tmp_path) -> None:
    """A NaN top-1 probability became ft:confidence "NaN" (the SHACL ImageShape wants 0 … 1), written after
    the quads of the images before it; a repeated image id made one image node with two true classes; an
    unknown selection failed only after every image's quads. All are refused at the call now."""
    from filtag_kg.kg.explanations import load_explanations
    from filtag_kg.kg.store import Store as FiltagStore

    tags, heldout, _ = case
    nan = copy.deepcopy(heldout)
    nan.top_probs[2, 0] = np.nan
    with pytest.raises(UserError, match=r"^heldout\.top_probs\[2, 0\] \(image c\) is nan, not a probability \(0 … 1\)$"):
        export_explanations(tags, nan)  # not iterated: refused before the first quad
    stats = ActivationStats.empty(tags.layers, tags.classes, tags.n_filters, {"dataset": {"name": "toy"}})
    stats.heldout = nan
    with pytest.raises(UserError, match=r"^heldout\.top_probs\[2, 0\]"):
        load_explanations(tags, stats, tmp_path / "store")
    with FiltagStore(tmp_path / "store", read_only=True, create=False) as db:
        assert list(db.graphs()) == []
    repeated = copy.deepcopy(heldout)
    repeated.image_ids = ["a", "b", "c", "a"]
    with pytest.raises(UserError, match=r"^image id 'a' is in heldout\.image_ids more than once; ids name images"):
        export_explanations(tags, repeated)
    with pytest.raises(UserError, match=r"^selection k-best 7 is not in the tag set; it has: k-best 1$"):
        export_explanations(tags, heldout, selections=[("k-best", 7)])
    nan_vectors = copy.deepcopy(heldout)
    nan_vectors.vectors["l2"][3] = np.inf
    with pytest.raises(UserError, match=r"^1 of the 4 images have NaN or infinite activations in layer 'l2' "
                                        r"\(heldout\.vectors\['l2'\]\), e\.g\. image d at position 3"):
        export_explanations(tags, nan_vectors)


def test_a_run_is_named_as_query_runs_lists_it_or_by_its_id(case) -> None:
    """`errors --run` took the run IRI only exactly: copied from the table of `query runs` with its padding,
    or from its TSV with <>, it was 'not an IRI'; the run's id (the IRI's last part) too. A run the store
    does not hold was reported as one without explanations."""
    tags, _, store = case
    first = run_iri(tags)
    expected = error_report(store, "k-best 1", run_iri=first)
    for given in (f"  {first}  ", f"<{first}>", f"<{first}>\n", first.rsplit("/", 1)[1]):
        assert error_report(store, "k-best 1", run_iri=given) == expected, given
    with pytest.raises(UserError, match=r"^--run 0123abcd: no tagging run in the store has this id \(the last part "
                                        r"of its IRI; `filtag-kg query runs` lists them\)$"):
        error_report(store, "k-best 1", run_iri="0123abcd")
    with pytest.raises(UserError, match=rf"^--run {re.escape(first)}/: the store holds no such tagging run "
                                        rf"\(`filtag-kg query runs` lists them\); runs with explanations: "
                                        rf"{re.escape(first)}$"):
        error_report(store, "k-best 1", run_iri=first + "/")
    with pytest.raises(UserError, match=r"^--run 'a b' is not an IRI"):
        error_report(store, "k-best 1", run_iri="a b")
