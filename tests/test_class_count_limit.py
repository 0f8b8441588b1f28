"""The explanations' ClassCount nodes cut to the classes ranked up to N (plus the true and predicted
class), marked by ft:classCountLimit: at ImageNet scale a node for every class with a count made
~740 per explanation (11 M triples for 1,000 images × 3 selections)."""

from __future__ import annotations

import re
from collections import defaultdict
from itertools import chain

import numpy as np
import pyoxigraph as ox
import pytest

import filtag_kg
from filtag_kg.errors import UserError
from filtag_kg.explain import explain
from filtag_kg.imagenet import imagenet_index
from filtag_kg.kg.explanations import export_explanations, load_explanations
from filtag_kg.kg.export import export_tags, validate
from filtag_kg.kg.store import Store
from filtag_kg.kg.vocab import FT, sparql_prefixes
from filtag_kg.records import ActivationStats, HeldOut, TagSet, selection_label

from kg_helpers import rows

N_CLASSES, N_FILTERS, N_IMAGES = 70, 40, 12
NODES = sparql_prefixes() + """
SELECT ?id ?selection ?index ?count ?rank WHERE {
  ?e ft:image/dcterms:identifier ?id ; ft:tagSelection ?selection ; ft:hasClassCount ?cc .
  ?cc ft:countedClass/ft:classIndex ?index ; ft:count ?count ; ft:classRank ?rank .
}"""
LIMITS = sparql_prefixes() + """
SELECT ?id ?selection ?limit WHERE { ?e ft:image/dcterms:identifier ?id ; ft:tagSelection ?selection ;
                                        ft:classCountLimit ?limit }"""


@pytest.fixture(scope="module")
def case() -> tuple[TagSet, ActivationStats]:
    """70 classes (ImageNet's first 70 wnids, labelled c00 … c69) tagged on two 40-filter layers
    (k-best 3, q-quantile 10): an explanation counts 16 to 48 classes, with many ties. Image i6 is
    predicted as a class its k-best 3 filters rank 4th, tied with its true class and 21 others; i1 as
    their top class, though of a class they do not count; i0 rightly as a class they rank beyond 5th;
    the others at random."""
    rng = np.random.default_rng(7)
    dataset = {"name": "many", "label_space": "many", "wnids": imagenet_index().wnids[:N_CLASSES]}
    stats = ActivationStats.empty(["l1", "l2"], [f"c{i:02d}" for i in range(N_CLASSES)],
                                  {"l1": N_FILTERS, "l2": N_FILTERS}, {"dataset": dataset})
    stats.counts[:] = 1
    for m in stats.layers:
        stats.sums[m] = rng.gamma(2.0, 1.0, (N_CLASSES, N_FILTERS))
    tags = filtag_kg.tag(stats, k=[3], q=[10])
    vectors = {m: rng.random((N_IMAGES, N_FILTERS)).astype(np.float32) for m in stats.layers}
    ids = [f"i{i}" for i in range(N_IMAGES)]
    probs = np.tile(np.array([0.5, 0.2, 0.1, 0.1, 0.1], np.float32), (N_IMAGES, 1))
    unlabelled = HeldOut(ids, np.arange(N_IMAGES), np.zeros(N_IMAGES, np.int64), np.tile(np.arange(5), (N_IMAGES, 1)),
                         probs, vectors)
    counts = [e.counts for e in explain(tags, unlabelled, [("k-best", 3)])]  # the counts need no labels
    labels, predicted = rng.integers(0, N_CLASSES, N_IMAGES), rng.integers(0, N_CLASSES, N_IMAGES)
    fourth = [int(c) for c in np.flatnonzero(ranks(counts[6]) == 4)]
    assert len(fourth) > 2
    predicted[6], labels[6] = fourth[:2]
    predicted[1], labels[1] = int(np.argmax(counts[1])), int(np.flatnonzero(counts[1] == 0)[0])
    predicted[0] = labels[0] = int(np.flatnonzero(ranks(counts[0]) > 5)[0])
    top = np.array([[p, *[c for c in rng.permutation(N_CLASSES) if c != p][:4]] for p in predicted])
    stats.heldout = HeldOut(ids, np.arange(N_IMAGES), labels, top, probs, vectors)
    return tags, stats


def ranks(counts: np.ndarray) -> np.ndarray:
    """Competition rank of each class by count (1 + classes counted more); 0 for a class without a count."""
    return np.where(counts > 0, (counts[None, :] > counts[:, None]).sum(axis=1) + 1, 0)


def expected_nodes(tags: TagSet, heldout: HeldOut, limit: int | None) -> dict[tuple[str, str], dict]:
    """Per (image id, selection): class index -> (count, rank) of the classes that must have a node,
    recomputed from the explanations' counts."""
    out = {}
    for e in explain(tags, heldout):
        i = heldout.image_ids.index(e.image_id)
        keep = {int(heldout.labels[i]), int(heldout.top_classes[i, 0])}
        rank = ranks(e.counts)
        out[e.image_id, selection_label(e.method, e.parameter)] = {
            c: (int(e.counts[c]), int(rank[c])) for c in np.flatnonzero(e.counts)
            if limit is None or rank[c] <= limit or c in keep}
    return out


def store_of(tags: TagSet, heldout: HeldOut, limit: int | None) -> ox.Store:
    """An in-memory store of the tags and the explanations exported with `class_counts=limit`."""
    store = ox.Store()
    store.extend(chain(export_tags(tags), export_explanations(tags, heldout, class_counts=limit)))
    return store


def nodes_and_limits(store: ox.Store | Store) -> tuple[dict, dict]:
    """The ClassCount nodes as `expected_nodes` gives them, and the ft:classCountLimit of each explanation."""
    nodes: dict[tuple[str, str], dict[int, tuple[int, int]]] = defaultdict(dict)
    for r in store.query(NODES, use_default_graph_as_union=True):
        nodes[r["id"].value, r["selection"].value][int(r["index"].value)] = (int(r["count"].value),
                                                                             int(r["rank"].value))
    limits = {(r["id"].value, r["selection"].value): r["limit"]
              for r in store.query(LIMITS, use_default_graph_as_union=True)}
    return dict(nodes), limits


@pytest.mark.parametrize("limit", [1, 3, 5])
def test_the_nodes_are_the_classes_ranked_up_to_the_limit_and_the_true_and_predicted(case, limit: int) -> None:
    tags, stats = case
    nodes, limits = nodes_and_limits(store_of(tags, stats.heldout, limit))
    everything = expected_nodes(tags, stats.heldout, None)
    assert nodes == expected_nodes(tags, stats.heldout, limit)
    cut = {key for key, classes in everything.items() if len(nodes[key]) < len(classes)}
    assert len(cut) > len(everything) // 2  # the cut bites: 70 classes, 16 to 48 counted per explanation
    assert limits == {key: ox.Literal(limit) for key in cut}  # an xsd:integer, only where a class was left out
    # ties at the boundary are kept whole: more than `limit` classes ranked up to it
    assert any(sum(rank <= limit for _, rank in classes.values()) > limit for classes in nodes.values())
    beyond = {(key, c) for key, classes in nodes.items() for c, (_, rank) in classes.items() if rank > limit}
    if limit < 4:  # i6's predicted and true class, tied at rank 4
        i6 = ("i6", "k-best 3")
        assert {(i6, int(stats.heldout.top_classes[6, 0])), (i6, int(stats.heldout.labels[6]))} <= beyond
    assert (("i0", "k-best 3"), int(stats.heldout.labels[0])) in beyond  # true = predicted, rank > 5


def test_none_or_a_limit_beyond_every_rank_gives_every_count(case) -> None:
    """No limit, or one no explanation's ranks reach, is the export of before: stores of small label
    spaces stay triple for triple as they were."""
    tags, stats = case
    nodes, limits = nodes_and_limits(store_of(tags, stats.heldout, None))
    assert nodes == expected_nodes(tags, stats.heldout, None) and limits == {}
    assert list(export_explanations(tags, stats.heldout, class_counts=N_CLASSES)) == \
        list(export_explanations(tags, stats.heldout, class_counts=None))


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3", np.float64(3)])
def test_a_limit_that_is_no_positive_integer_is_refused(case, bad: object, tmp_path) -> None:
    tags, stats = case
    with pytest.raises(UserError, match=rf"^{re.escape(f'class_counts={bad!r}')}: give a positive integer .* or None"):
        export_explanations(tags, stats.heldout, class_counts=bad)
    with pytest.raises(UserError, match=rf"^{re.escape(f'class_counts={bad!r}')}"):
        load_explanations(tags, stats, tmp_path / "store", class_counts=bad)
    assert not (tmp_path / "store").exists()  # refused before the store was opened
    assert len(list(export_explanations(tags, stats.heldout, class_counts=np.int64(3)))) == \
        len(list(export_explanations(tags, stats.heldout, class_counts=3)))


def test_the_shapes_accept_a_cut_export_and_catch_a_broken_one(case) -> None:
    tags, stats = case
    quads = [*export_tags(tags), *export_explanations(tags, stats.heldout, class_counts=3)]
    conforms, report = validate(quads)
    assert conforms, report
    limit = ox.NamedNode(FT + "classCountLimit")
    zero = [ox.Quad(q.subject, q.predicate, ox.Literal(0), q.graph_name) if q.predicate == limit else q for q in quads]
    conforms, report = validate(zero)
    assert not conforms and "classCountLimit" in report, report
    rank = ox.NamedNode(FT + "classRank")
    lowered = [ox.Quad(q.subject, q.predicate, ox.Literal(9), q.graph_name)
               if q.predicate == rank and q.object == ox.Literal(1) else q for q in quads]
    conforms, report = validate(lowered)  # every top class now ranked 9th, beyond the limit, and kept
    assert not conforms and "counts neither its image's true nor its predicted class" in report, report


def test_the_error_queries_answer_alike_within_the_limit(case) -> None:
    """Rank-1 reads and ties within the limit give the same rows whatever the cut; errors-misclassified
    lists the classes kept; errors-explanation-tied leaves out a prediction ranked beyond the limit, whose
    tie is not stored (i6 at n = 4, limit 3: ranked 4th, tied with 22 classes, of which the cut keeps its
    true class alone: counted from the nodes, its row said 2 tied classes)."""
    tags, stats = case
    full = store_of(tags, stats.heldout, None)
    for limit in (1, 3):
        cut = store_of(tags, stats.heldout, limit)
        for n in range(1, limit + 1):
            for name in ("errors-explanation-disagrees", "errors-explanation-tied"):
                assert rows(name, cut, n=n) == rows(name, full, n=n), (name, n, limit)
        assert rows("errors-both-tags-active", cut) == rows("errors-both-tags-active", full)
        for c in range(N_CLASSES):
            got = rows("errors-misclassified", cut, **{"class": f"c{c:02d}"})
            assert got == [r for r in rows("errors-misclassified", full, **{"class": f"c{c:02d}"})
                           if r["rank"] <= limit or r["tag"] in (r["class"], r["predicted"])]
    tied = rows("errors-explanation-tied", full, n=4, selection="k-best 3")
    assert [(r["id"], r["predictedRank"]) for r in tied if r["predictedRank"] > 3] == [("i6", 4)]
    assert next(r["tiedClasses"] for r in tied if r["id"] == "i6") == 23
    assert rows("errors-explanation-tied", cut, n=4, selection="k-best 3") == [r for r in tied
                                                                              if r["predictedRank"] <= 3]
    assert rows("errors-explanation-tied", full, n=1) and rows("errors-explanation-disagrees", full, n=1)


def test_coarse_image_explanation_counts_every_class_of_a_cut_explanation(case, wn) -> None:
    """coarse-image-explanation sums counts up the WordNet hierarchy: from the ClassCount nodes alone, a
    cut explanation gave 'entity' 311 tags of its 1,650 (VGG16-sized run, limit 50); from its active
    filters' tags the sums are those of all its counts."""
    from filtag_kg.kg.coarsen import link_wordnet
    from filtag_kg.kg.vocab import Minter

    tags, stats = case
    links = link_wordnet(tags, wn).quads

    def coarse(limit: int | None, image: str) -> dict:
        store = store_of(tags, stats.heldout, limit)
        store.extend(links)
        got = rows("coarse-image-explanation", store, image=Minter().image("many", image))
        # the order of the classes GROUP_CONCAT lists is the engine's
        return {(r["selection"], r["concept"]): (r["tags"], r["depth"], sorted(r["classes"].split(", "))) for r in got}

    for image in ("i0", "i6"):
        full = coarse(None, image)
        assert len(full) > 50 and coarse(1, image) == full and coarse(3, image) == full


def test_evaluate_takes_class_counts_and_refuses_a_bad_one(case, run_cli, tmp_path) -> None:
    tags, stats = case
    tags.save(tmp_path / "tags")
    stats.save(tmp_path / "stats")
    common = ("evaluate", "--tags", tmp_path / "tags", "--stats", tmp_path / "stats", "--out", tmp_path / "eval")
    for bad in ("0", "-1", "2.5", "some", ""):
        code, out, err = run_cli(*common, "--store", tmp_path / "store", "--class-counts", bad)
        assert (code, out) == (2, ""), err
        assert f"Invalid value for '--class-counts': {bad!r} is neither a positive integer nor 'all'" in err, err
    assert not (tmp_path / "store").exists() and not (tmp_path / "eval").exists()
    code, _, err = run_cli(*common, "--no-store", "--class-counts", "3")
    assert code == 2 and "--class-counts and --no-store: give one" in err, err
    for given, limit in (("3", 3), ("ALL", None)):
        code, _, err = run_cli(*common, "--store", tmp_path / given, "--class-counts", given)
        assert code == 0, err
        with Store(tmp_path / given) as db:
            nodes, limits = nodes_and_limits(db)
        assert nodes == expected_nodes(tags, stats.heldout, limit)
        assert set(limits.values()) == ({ox.Literal(3)} if limit else set())


def test_the_ontology_declares_the_limit(case) -> None:
    """ft:classCountLimit is a functional datatype property of explanations, an xsd:integer, documented."""
    from filtag_kg.kg.export import bundled_path
    from filtag_kg.kg.vocab import OWL, RDF, RDFS

    tags, stats = case
    used = {q.predicate.value for q in export_explanations(tags, stats.heldout, class_counts=1)}
    assert FT + "classCountLimit" in used
    about = {(t.predicate.value, t.object.value) for t in ox.parse(path=str(bundled_path("filtag.ttl")))
             if t.subject == ox.NamedNode(FT + "classCountLimit")}
    assert {(RDF + "type", OWL + "DatatypeProperty"), (RDF + "type", OWL + "FunctionalProperty"),
            (RDFS + "domain", FT + "Explanation"),
            (RDFS + "range", "http://www.w3.org/2001/XMLSchema#integer")} <= about
    assert {p for p, _ in about} >= {RDFS + "label", RDFS + "comment"}
