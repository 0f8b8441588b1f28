"""Coarsening of filter tags to WordNet concepts: rules against references, the graph, real VGG16 tags."""

from __future__ import annotations

import math
import random
import shlex
from itertools import chain, combinations, product
from pathlib import Path

import numpy as np
import pyoxigraph
import pytest

import filtag_kg
from filtag_kg.data import ANIMAL_SHAPE_CLASSES
from filtag_kg.errors import UserError
from filtag_kg.imagenet import imagenet_index, parse_filtag_file
from filtag_kg.kg.coarsen import coarse_groups_summary, coarsen, coarsen_filter, layer_summary, link_wordnet
from filtag_kg.kg.export import export_tags, run_ids
from filtag_kg.kg.wordnet import WN30, WordNet
from filtag_kg.records import ActivationStats

from kg_helpers import rows as query_rows

ANIMALS = ANIMAL_SHAPE_CLASSES
# filter → the classes whose best filter it is (k=1)
GROUPS = {0: ["bear", "cat", "dog"], 1: ["horse", "zebra"], 2: ["cow", "giraffe", "sheep", "bird"], 3: ["elephant"]}


@pytest.fixture(scope="module")
def animal_tags() -> filtag_kg.TagSet:
    return filtag_kg.tag(animal_stats(), k=[1, 2])


def animal_stats() -> ActivationStats:
    """Synthetic statistics of a 6-filter layer where each class peaks on the filter of its group."""
    stats = ActivationStats.empty(["conv1", "conv2"], ANIMALS, {"conv1": 4, "conv2": 6},
                                  manifest={"dataset": {"name": "Animal-Shape", "label_space": "animal-shape"},
                                            "model": {"name": "tiny", "hash": "ab" * 32}})
    means = {"conv1": np.zeros((10, 4)), "conv2": np.full((10, 6), 0.1)}
    for f, classes in GROUPS.items():
        for c in classes:
            means["conv2"][ANIMALS.index(c), f] = 1.0
            means["conv1"][ANIMALS.index(c), 0] = 1.0
    stats.add_batch(np.arange(10), means)
    return stats


def test_rules_on_animal_groups(wn: WordNet) -> None:
    s = {a: wn.synset(f"{a}.n.01") for a in ANIMALS}
    f = coarsen_filter(wn, 0, [], [s["horse"], s["zebra"]])
    assert f.all.synset.name() == f.share.synset.name() == "equine.n.01" and f.all.coverage == 1.0
    f = coarsen_filter(wn, 0, [], [s["cow"], s["giraffe"], s["sheep"], s["horse"]])
    assert (f.all.synset.name(), f.share.synset.name(), f.share.covered, f.share.total) == \
        ("ungulate.n.01", "ruminant.n.01", 3, 4)
    assert f.share.depth == wn.depth(wn.synset("ruminant.n.01")) > f.all.depth
    # a stricter share needs all four again
    assert coarsen_filter(wn, 0, [], [s["cow"], s["giraffe"], s["sheep"], s["horse"]], share=0.8).share.synset.name() \
        == "ungulate.n.01"
    one = coarsen_filter(wn, 5, [9], [s["zebra"]])
    assert one.all.synset == one.share.synset == s["zebra"] and one.coherence == 1.0
    none = coarsen_filter(wn, 6, [], [])
    assert none.all is None and math.isnan(none.coherence)


def test_lowest_common_hypernym_matches_nltk(wn: WordNet) -> None:
    """`all` for two synsets is one of NLTK's lowest common hypernyms (by max depth)."""
    synsets = [wn.synset_of_wnid(w) for w in imagenet_index().wnids]
    rng = random.Random(1)
    for _ in range(200):
        a, b = rng.sample(synsets, 2)
        f = coarsen_filter(wn, 0, [], [a, b])
        assert f.all.synset in a.lowest_common_hypernyms(b, use_min_depth=False)
        assert f.coherence == pytest.approx(a.wup_similarity(b), abs=1e-12)


def test_share_concept_against_brute_force(wn: WordNet) -> None:
    synsets = [wn.synset_of_wnid(w) for w in imagenet_index().wnids]
    rng = random.Random(2)
    for _ in range(60):
        group = rng.sample(synsets[:400], rng.randint(2, 7))  # animals: deep shared hierarchy
        f = coarsen_filter(wn, 0, [], group)
        need = math.ceil(2 * len(group) / 3)
        cover = {}
        for s in group:  # a set: NLTK 3.8's closure yields a synset reached by two paths twice
            for a in {s, *s.closure(lambda x: x.hypernyms() + x.instance_hypernyms())}:
                cover[a] = cover.get(a, 0) + 1
        deepest = max(a.max_depth() for a, c in cover.items() if c >= need)
        assert f.share.covered == cover[f.share.synset] >= need and f.share.depth == deepest
        assert f.all.covered == len(group) and f.all.depth == max(a.max_depth() for a, c in cover.items() if c == len(group))
        pairs = list(combinations(sorted(set(group)), 2))
        assert f.coherence == pytest.approx(np.mean([a.wup_similarity(b) for a, b in pairs]), abs=1e-12)


def test_coarsen_tagset_counts_and_summary(wn: WordNet, animal_tags: filtag_kg.TagSet) -> None:
    result = coarsen(animal_tags, wn, "conv2", ("k-best", 1))
    names = {f.filter: (f.all.synset.name(), f.share.synset.name()) for f in result.filters if f.all}
    assert names == {0: ("carnivore.n.01", "carnivore.n.01"), 1: ("equine.n.01", "equine.n.01"),
                     2: ("vertebrate.n.01", "ruminant.n.01"), 3: ("elephant.n.01", "elephant.n.01")}
    assert result.counts() == {"filters": 6, "tagged": 4, "multi_tag": 3, "specific_all": 3, "specific_share": 3}
    text = coarse_groups_summary(animal_tags, "conv2", wn)
    assert "carnivore (02075296-n): filter 0 — bear, cat, dog" in text
    assert "ruminant (02399000-n): filter 2 — cow, giraffe, sheep (also tagged: bird)" in text  # a bird is no ruminant
    assert "3 with several tags; of these 3 (100%)" in text
    # conv1: all ten classes on filter 0 → only 'vertebrate' covers all, 'placental' 9 of 10
    first = coarsen(animal_tags, wn, "conv1", ("k-best", 1)).filters[0]
    assert (first.all.synset.name(), first.share.synset.name(), first.share.covered) == \
        ("vertebrate.n.01", "placental.n.01", 9)
    with pytest.raises(UserError, match="share"):
        coarsen(animal_tags, wn, share=0)
    with pytest.raises(UserError, match="layer 'conv9'"):
        coarsen(animal_tags, wn, "conv9")
    with pytest.raises(UserError, match="no selection"):
        coarsen(animal_tags, wn, "conv2", ("k-best", 3))


def test_graph_of_coarse_concepts(wn: WordNet, animal_tags: filtag_kg.TagSet) -> None:
    linking = link_wordnet(animal_tags, wn)
    assert [(r.layer, r.selection) for r in linking.layers] == [
        ("conv1", ("k-best", 1)), ("conv1", ("k-best", 2)), ("conv2", ("k-best", 1)), ("conv2", ("k-best", 2))]
    store = pyoxigraph.Store()
    store.extend(export_tags(animal_tags))
    store.extend(linking.quads)
    assert {q.graph_name for q in linking.quads} == {linking.graph}
    assert linking.graph.value.endswith(f"/graph/{run_ids(animal_tags).tagging}/wordnet")
    rows = list(store.query("""
        PREFIX ft: <https://w3id.org/filtag-kg/ontology#>
        SELECT ?i ?concept ?coverage ?min WHERE {
          ?cc a ft:CoarseConcept ; ft:coarsens ?f ; ft:concept ?concept ; ft:coverage ?coverage ;
              ft:minCoverage ?min ; ft:tagSelection "k-best 1" .
          ?f ft:filterIndex ?i ; ft:ofLayer/<http://www.w3.org/2000/01/rdf-schema#label> "conv2" .
          FILTER(?min < 1) } ORDER BY ?i""", use_default_graph_as_union=True))
    got = [(int(r["i"].value), r["concept"].value.removeprefix(WN30), float(r["coverage"].value)) for r in rows]
    assert got == [(0, "02075296-n", 1.0), (1, "02374149-n", 1.0), (2, "02399000-n", 0.75), (3, "02503517-n", 1.0)]
    n_nodes = sum(1 for r in linking.layers for f in r.filters if f.all) * 2
    count = store.query("SELECT (COUNT(?c) AS ?n) WHERE { ?c a <https://w3id.org/filtag-kg/ontology#CoarseConcept> }",
                        use_default_graph_as_union=True)
    assert int(next(iter(count))["n"].value) == n_nodes
    assert link_wordnet(animal_tags, wn).quads == linking.quads  # deterministic


def test_real_vgg16_tags(wn: WordNet, filtag_vgg16_file: Path) -> None:
    """Item 7: the FilTag authors' block5_conv3 tags (cranes resolved by their filters' other tags)."""
    tags, _ = parse_filtag_file(filtag_vgg16_file, resolve={"372:crane": "n02012849", "424:crane": "n03126707"})
    result = coarsen(tags, wn)
    assert result.counts() == {"filters": 512, "tagged": 342, "multi_tag": 219, "specific_all": 138,
                               "specific_share": 170}
    by_filter = {f.filter: f for f in result.filters}
    assert by_filter[1].all.synset.name() == "brass.n.02"  # cornet, French horn, trombone
    assert by_filter[29].all.synset.name() == "rodent.n.01"  # hamster, guinea pig
    assert by_filter[28].share.synset.name() == "primate.n.02"  # sloth + three monkeys/lemurs


def test_link_command_on_a_stored_run(
    wn: WordNet, animal_tags: filtag_kg.TagSet, tmp_path: Path, run_cli, cli_ok,
) -> None:
    """`filtag-kg link wordnet` reads the run back from the store and writes the same graph as the API."""
    from filtag_kg.kg.store import Store

    with Store(tmp_path / "store") as store:
        store.load(export_tags(animal_tags))
    out = cli_ok("link", "wordnet", "--store", tmp_path / "store")
    assert "10 of 10 classes of 'animal-shape' linked" in out
    assert "conv2 (k-best 1): 4 of 6 filters tagged, 3 with several tags; of these 3 (100%)" in out
    expected = link_wordnet(animal_tags, wn)
    with Store(tmp_path / "store") as store:
        got = set(store.quads(expected.graph))
        assert got == set(expected.quads)
    code, _, err = run_cli("link", "wordnet", "--store", tmp_path / "store", "--layer", "conv9")
    assert code == 2 and "conv9" in err
    code, _, err = run_cli("link", "wordnet", "--store", tmp_path / "empty")
    assert code == 2 and f"no store at {tmp_path / 'empty'}" in err and not (tmp_path / "empty").exists()
    Store(tmp_path / "empty").close()
    code, _, err = run_cli("link", "wordnet", "--store", tmp_path / "empty")
    assert code == 2 and f"the store {tmp_path / 'empty'} holds no tagging run: load one first" in err


# -- bundled semantic queries -----------------------------------------------------------------------

FT = "https://w3id.org/filtag-kg/ontology#"


# image: true class, predicted class, the classes its explanation counts (k-best 1 tags of its active filters)
IMAGES = {"a": ("bear", "bear", {"bear": 2, "cat": 1, "dog": 1, "cow": 1, "giraffe": 1, "sheep": 1, "bird": 1}),
          "b": ("zebra", "horse", {"horse": 1, "zebra": 1}), "c": ("bear", "giraffe", {"bear": 1}),
          "d": ("cow", "sheep", {"cow": 1})}


def semantic_quads(wn: WordNet, tags: filtag_kg.TagSet, images: dict,
                   selections: tuple[str, ...] = ("k-best 1",)) -> list[pyoxigraph.Quad]:
    """A run, its WordNet links, and images/explanations (one per selection, with the same counts) in
    the shape the coarse queries expect."""
    from filtag_kg.kg.vocab import Minter

    minter, ids = Minter(), run_ids(tags)
    quads = list(export_tags(tags)) + link_wordnet(tags, wn).quads
    g = minter.run_graph(ids.tagging, "explanations")
    node = pyoxigraph.NamedNode

    def cls(label: str) -> pyoxigraph.NamedNode:
        return minter.image_class("animal-shape", label)

    for (name, (true, predicted, counts)), selection in product(images.items(), selections):
        image = minter.image("animal-shape", name)
        explanation = node(f"https://example.org/{ids.tagging}/explanation/{name}/{selection.replace(' ', '/')}")
        triples = [(image, "trueClass", cls(true)), (image, "predictedClass", cls(predicted)),
                   (explanation, "image", image), (explanation, "tagSelection", pyoxigraph.Literal(selection))]
        for label, count in counts.items():
            class_count = node(f"{explanation.value}/count/{label}")
            triples += [(explanation, "hasClassCount", class_count), (class_count, "countedClass", cls(label)),
                        (class_count, "count", pyoxigraph.Literal(count))]
        quads += [pyoxigraph.Quad(s, node(FT + p), o, g) for s, p, o in triples]
        quads.append(pyoxigraph.Quad(explanation, node("http://www.w3.org/ns/prov#wasInfluencedBy"),
                                     minter.run(ids.tagging), g))
    return quads


@pytest.fixture(scope="module")
def semantic_store(wn: WordNet, animal_tags: filtag_kg.TagSet) -> pyoxigraph.Store:
    store = pyoxigraph.Store()
    store.extend(semantic_quads(wn, animal_tags, IMAGES))
    return store


def test_filters_under_concept(semantic_store: pyoxigraph.Store) -> None:
    carnivore, ungulate = WN30 + "02075296-n", WN30 + "02370806-n"
    rows = [r for r in query_rows("semantic-filters-under-concept", semantic_store, concept=carnivore) if r["parameter"] == 1]
    assert [(r["layer"], r["filter"], r["synsets"], r["under"], sorted(r["classesUnder"].split(", "))) for r in rows] == [
        ("conv2", 0, 3, 3, ["bear", "cat", "dog"])]
    prefixed = query_rows("semantic-filters-under-concept", semantic_store, concept="wn:02075296-n")
    assert [r for r in prefixed if r["parameter"] == 1] == rows  # the docs' wn: prefix (matched nothing before)
    rows = query_rows("semantic-filters-under-concept", semantic_store, concept=ungulate, share=0.5)
    got = {(r["layer"], r["filter"], float(r["coverage"])) for r in rows if r["parameter"] == 1}
    assert got == {("conv2", 1, 1.0), ("conv2", 2, 0.75), ("conv1", 0, 0.5)}
    second = next(r for r in rows if r["parameter"] == 1 and r["filter"] == 2)
    assert sorted(second["classesUnder"].split(", ")) == ["cow", "giraffe", "sheep"]  # not the bird


def test_filters_under_every_concept_match_a_reference(semantic_store: pyoxigraph.Store,
                                                       animal_tags: filtag_kg.TagSet) -> None:
    """For every synset of the closure and several shares: the filters, counts and classes the tags
    and the WordNet graph's links give when walked in Python, counted as coarsening counts (the
    distinct synsets of a filter's linked classes)."""
    skos = "http://www.w3.org/2004/02/skos/core#"
    synsets = {q.subject.value: q.object.value for p in ("exactMatch", "closeMatch")
               for q in semantic_store.quads_for_pattern(None, pyoxigraph.NamedNode(skos + p), None)}
    broader: dict[str, set[str]] = {}
    for q in semantic_store.quads_for_pattern(None, pyoxigraph.NamedNode(skos + "broader"), None):
        broader.setdefault(q.subject.value, set()).add(q.object.value)

    def above(synset: str) -> set[str]:
        return {synset}.union(*(above(b) for b in broader.get(synset, ())))

    from filtag_kg.kg.vocab import Minter

    classes = {Minter().image_class("animal-shape", c).value: c for c in ANIMALS}
    filters: dict[tuple, set[str]] = {}
    for t in animal_tags:
        filters.setdefault((float(t.parameter), t.layer, t.filter), set()).add(t.class_name)
    label_of = {v: k for k, v in classes.items()}
    found = 0
    for concept in sorted(set().union(*(above(s) for s in synsets.values()))):
        for share in (None, 0.5, 2 / 3, 1):
            expected = set()
            for (parameter, layer, f), tagged in filters.items():
                linked = {synsets[label_of[c]] for c in tagged if label_of[c] in synsets}
                under = {s for s in linked if concept in above(s)}
                inside = {c for c in tagged if synsets.get(label_of[c]) in under}
                if under and len(under) >= (share or 1) * len(linked) - 1e-9:
                    expected.add((parameter, layer, f, len(linked), len(under), tuple(sorted(inside))))
            got = {(float(r["parameter"]), r["layer"], r["filter"], r["synsets"], r["under"],
                    tuple(sorted(r["classesUnder"].split(", "))))
                   for r in query_rows("semantic-filters-under-concept", semantic_store, concept=concept, share=share)}
            assert got == expected, (concept, share)
            found += len(got)
    assert found > 100


def _filter_0_tagged(labels: list[str], tagged: tuple[str, ...], space: str) -> filtag_kg.TagSet:
    """k=1 tags of one layer of 2 filters over `labels`: filter 0 is the best of the `tagged` classes,
    filter 1 of the others."""
    stats = ActivationStats.empty(["conv"], labels, {"conv": 2}, manifest={"dataset": {"label_space": space}})
    means = np.zeros((len(labels), 2))
    means[:, 1] = 1.0
    means[[labels.index(c) for c in tagged]] = [1.0, 0.0]
    stats.add_batch(np.arange(len(labels)), {"conv": means})
    return filtag_kg.tag(stats, k=1)


def test_documented_share_example_finds_what_coarsening_covers_by_default(wn: WordNet) -> None:
    """The example's share was 0.67, which left out a filter with 2 of its 3 tags under the concept
    that coarsening's default share (2/3) picks for it."""
    from filtag_kg.kg import queries
    from filtag_kg.kg.wordnet import synset_iri

    example = queries.load("semantic-filters-under-concept").example
    share = float(next(p for p in shlex.split(example) if p.startswith("share=")).removeprefix("share="))
    tags = _filter_0_tagged(ANIMALS, ("bear", "cat", "cow"), "animal-shape")  # two carnivores and a cow
    concept = coarsen(tags, wn, "conv", ("k-best", 1)).filters[0].share
    assert (concept.synset.name(), concept.covered, concept.total) == ("carnivore.n.01", 2, 3)
    store = pyoxigraph.Store()
    store.extend(list(export_tags(tags)) + link_wordnet(tags, wn).quads)
    rows = query_rows("semantic-filters-under-concept", store, concept=synset_iri(concept.synset).value, share=share)
    assert [(r["filter"], r["under"], r["synsets"]) for r in rows] == [(0, 2, 3)]


def test_the_share_is_compared_as_coarsening_compares_it() -> None:
    """7 of 50 tags under a concept is a share of 0.14, but 0.14 * 50 is 7.000000000000001 in floating
    point: coarsening allows 1e-9 for that (math.ceil(share * n - 1e-9)), and the query must too."""
    from filtag_kg.kg.vocab import Minter

    labels = [f"class{c}" for c in range(50)]
    stats = ActivationStats.empty(["conv"], labels, {"conv": 2}, manifest={"dataset": {"label_space": "many"}})
    means = np.zeros((50, 2))
    means[:, 0] = 1.0  # filter 0 is every class's best: 50 tags
    stats.add_batch(np.arange(50), {"conv": means})
    store = pyoxigraph.Store()
    tags = filtag_kg.tag(stats, k=1)
    store.extend(export_tags(tags))
    classes = {row["c"].value: int(row["i"].value) for row in store.query(
        "SELECT ?c ?i WHERE { ?c <https://w3id.org/filtag-kg/ontology#classIndex> ?i }",
        use_default_graph_as_union=True)}
    assert len(classes) == 50
    skos, ex = "http://www.w3.org/2004/02/skos/core#", "http://example.org/"
    graph = pyoxigraph.NamedNode(f"{ex}links")
    for c, i in classes.items():  # a synset of its own for each class, the first 7 under the concept
        synset = pyoxigraph.NamedNode(f"{ex}{'under' if i < 7 else 'elsewhere'}{i}")
        store.add(pyoxigraph.Quad(pyoxigraph.NamedNode(c), pyoxigraph.NamedNode(f"{skos}exactMatch"), synset, graph))
        if i < 7:
            store.add(pyoxigraph.Quad(synset, pyoxigraph.NamedNode(f"{skos}broader"), pyoxigraph.NamedNode(f"{ex}concept"), graph))
    run = Minter().run(run_ids(tags).tagging)  # the graph is the run's, as its coarse concepts say
    coarse = pyoxigraph.NamedNode(f"{ex}coarse")
    filter_node = next(iter(store.query(f"SELECT ?f WHERE {{ ?f <{FT}filterIndex> 0 }}", use_default_graph_as_union=True)))["f"]
    for p, o in (("http://www.w3.org/ns/prov#wasInfluencedBy", run), (FT + "coarsens", filter_node),
                 (FT + "tagSelection", pyoxigraph.Literal("k-best 1")), (FT + "tagCount", pyoxigraph.Literal(50)),
                 *((FT + "tagClass", pyoxigraph.NamedNode(c)) for c in classes)):  # filter 0's tag classes
        store.add(pyoxigraph.Quad(coarse, pyoxigraph.NamedNode(p), o, graph))
    assert math.ceil(0.14 * 50 - 1e-9) == 7 < 0.14 * 50  # coarsening takes 7 of 50 as a share of 0.14
    rows = query_rows("semantic-filters-under-concept", store, concept=f"{ex}concept", share=0.14)
    assert [(r["filter"], r["under"], r["synsets"]) for r in rows] == [(0, 7, 50)]


def test_the_share_of_a_filter_leaves_out_classes_wordnet_lacks_as_coarsening_does(wn: WordNet) -> None:
    """A filter tagged bear, cat and a class WordNet lacks: coarsening finds carnivore covering all
    of its linked tags, and the query counted the unlinked class too (2 of 3, not listed for share 1)."""
    from filtag_kg.kg.wordnet import synset_iri

    labels = [c if c != "bird" else "qwzxv gadget" for c in ANIMALS]
    tags = _filter_0_tagged(labels, ("bear", "cat", "qwzxv gadget"), "odd")
    concept = coarsen(tags, wn, "conv", ("k-best", 1)).filters[0].all
    assert (concept.synset.name(), concept.covered, concept.total) == ("carnivore.n.01", 2, 2)
    store = pyoxigraph.Store()
    store.extend(list(export_tags(tags)) + link_wordnet(tags, wn).quads)
    rows = query_rows("semantic-filters-under-concept", store, concept=synset_iri(concept.synset).value)
    assert [(r["filter"], r["synsets"], r["under"], r["coverage"], sorted(r["classesUnder"].split(", "))) for r in rows] == [
        (0, 2, 2, 1.0, ["bear", "cat"])]


def test_layer_groups(semantic_store: pyoxigraph.Store) -> None:
    rows = [r for r in query_rows("semantic-layer-groups", semantic_store, layer="conv2") if r["selection"] == "k-best 1"]
    assert sorted((r["label"], r["filters"], r["filterIndices"]) for r in rows) == [
        ("carnivore", 1, "0"), ("elephant", 1, "3"), ("equine", 1, "1"), ("ruminant", 1, "2")]
    multi = [r for r in query_rows("semantic-layer-groups", semantic_store, layer="conv2", multiTag=True)
             if r["selection"] == "k-best 1"]
    assert sorted(r["label"] for r in multi) == ["carnivore", "equine", "ruminant"]


def test_semantic_queries_list_selections_by_method_then_number(wn: WordNet) -> None:
    """q-quantile 50 before q-quantile 100 (text sorts them the other way round)."""
    from filtag_kg.kg.vocab import Minter

    tags = filtag_kg.tag(animal_stats(), k=[1], q=[100, 50])
    in_order = ["k-best 1", "q-quantile 50", "q-quantile 100"]
    store = pyoxigraph.Store()
    store.extend(semantic_quads(wn, tags, IMAGES, selections=("q-quantile 100", "k-best 1", "q-quantile 50")))
    groups = query_rows("semantic-layer-groups", store, layer="conv2")
    image = query_rows("coarse-image-explanation", store, image=Minter().image("animal-shape", "a"))
    for listed in (groups, image):
        assert list(dict.fromkeys(r["selection"] for r in listed)) == in_order


def test_coarse_image_explanation(semantic_store: pyoxigraph.Store) -> None:
    from filtag_kg.kg.vocab import Minter

    rows = query_rows("coarse-image-explanation", semantic_store, image=Minter().image("animal-shape", "a"),
                 selection="k-best 1")
    counts = {r["label"]: r["tags"] for r in rows}
    assert rows[0]["label"] == "vertebrate" and rows[0]["tags"] == 8  # bear ×2, cat, dog, cow, giraffe, sheep, bird
    assert (counts["placental"], counts["carnivore"], counts["ruminant"], counts["bird"]) == (7, 4, 3, 1)
    assert "equine" not in counts
    assert not query_rows("coarse-image-explanation", semantic_store, image=Minter().image("animal-shape", "a"),
                     selection="k-best 2")


def test_coarse_errors(semantic_store: pyoxigraph.Store) -> None:
    rows = query_rows("coarse-errors", semantic_store)
    got = [(r["trueLabel"], r["predictedLabel"], r["commonLabel"]) for r in rows]
    assert got == [("cow", "sheep", "bovid"), ("zebra", "horse", "equine"), ("bear", "giraffe", "placental")]
    within = query_rows("coarse-errors", semantic_store, concept=WN30 + "02370806-n")  # ungulate
    assert [(r["trueLabel"], r["predictedLabel"]) for r in within] == [("cow", "sheep"), ("zebra", "horse")]


def test_semantic_query_on_a_remote_server(semantic_store: pyoxigraph.Store, animal_tags: filtag_kg.TagSet,
                                           tmp_path: Path) -> None:
    """The same answers through a real Oxigraph server (parameters as a VALUES block)."""
    from filtag_kg.kg.store import RemoteStore
    from oxigraph_server import oxigraph_server

    with oxigraph_server(tmp_path / "db") as base:
        remote = RemoteStore.at(base)
        remote.load(semantic_store.quads_for_pattern(None, None, None))
        for name, params in (("semantic-filters-under-concept", {"concept": WN30 + "02370806-n", "share": 0.5}),
                             ("coarse-errors", {"concept": WN30 + "02370806-n"})):
            def canonical(rows: list[dict]) -> list[dict]:  # GROUP_CONCAT order is unspecified
                return [{k: sorted(v.split(", ")) if k == "classesUnder" else v for k, v in r.items()} for r in rows]

            assert canonical(query_rows(name, remote, **params)) == canonical(query_rows(name, semantic_store, **params))
        # the link command's reading of a run works through the remote store as well
        from filtag_kg.kg.coarsen import tags_from_store
        from filtag_kg.kg.vocab import Minter

        run = Minter().run(run_ids(animal_tags).tagging).value
        local, local_ids = tags_from_store(semantic_store, run)
        far, far_ids = tags_from_store(remote, run)
        assert far_ids == local_ids and far.classes == local.classes and far.selections == local.selections

        def rows(t: filtag_kg.TagSet) -> list[tuple[int, ...]]:
            return sorted(zip(t.layer_index.tolist(), t.filter_index.tolist(), t.class_index.tolist(),
                              t.selection_index.tolist()))

        assert rows(far) == rows(local) and len(local) == 10 * 2 * 3  # 10 classes, 2 layers, k=1 and k=2
        assert rows(local) == rows(animal_tags)


def test_linked_graph_validates_against_the_shapes(wn: WordNet, animal_tags: filtag_kg.TagSet, tmp_path: Path) -> None:
    """Export + WordNet + ConceptNet graphs pass the SHACL shapes; a coarse concept without coverage fails."""
    from filtag_kg.kg.conceptnet import link_conceptnet
    from filtag_kg.kg.export import validate

    dump = tmp_path / "dump.csv"
    dump.write_text('/a/[/r/IsA/,/c/en/zebra/,/c/en/horse/]\t/r/IsA\t/c/en/zebra/n\t/c/en/horse\t{"weight": 1.5}\n')
    quads = list(export_tags(animal_tags)) + link_wordnet(animal_tags, wn).quads + \
        link_conceptnet(animal_tags, dump=dump).quads
    ok, report = validate(quads)
    assert ok, report
    coverage = pyoxigraph.NamedNode(FT + "coverage")
    victim = next(q.subject for q in quads if q.predicate == coverage)
    ok, report = validate([q for q in quads if not (q.subject == victim and q.predicate == coverage)])
    assert not ok and "coverage" in report


@pytest.mark.parametrize("base", ["https://example.org/kg/", "https://example.org/kg#"])
def test_link_command_keeps_the_runs_own_base(
    wn: WordNet, animal_tags: filtag_kg.TagSet, tmp_path: Path, cli_ok, base: str,
) -> None:
    """A run exported under another base gets its coarse concepts on its own filter nodes. (A base
    ending with '#' was refused: "has no tags on filters of a model", as the model id was read from
    a layer IRI by '/model/', which such a base has as '#model/'.)"""
    from filtag_kg.kg.coarsen import minter_of_run
    from filtag_kg.kg.store import Store
    from filtag_kg.kg.vocab import Minter

    with Store(tmp_path / "store") as store:
        store.load(export_tags(animal_tags, Minter(base)))
    cli_ok("link", "wordnet", "--store", tmp_path / "store")
    with Store(tmp_path / "store") as store:
        rows = list(store.query(f"""SELECT ?cc WHERE {{ ?cc <{FT}coarsens> ?f . ?f <{FT}filterIndex> ?i }}"""))
        graphs = [g.value for g in store.graphs()]
    assert len(rows) == 2 * sum(1 for r in link_wordnet(animal_tags, wn).layers for f in r.filters if f.all)
    assert all(r["cc"].value.startswith(base + "run/") for r in rows)
    assert f"{base}graph/{run_ids(animal_tags).tagging}/wordnet" in graphs
    assert minter_of_run(base + "run/abc").base == base
    with pytest.raises(UserError, match="not a run IRI"):
        minter_of_run(base + "model/abc")


def test_a_second_network_on_the_same_images_changes_no_semantic_answer_about_the_first(
    wn: WordNet, animal_tags: filtag_kg.TagSet, semantic_store: pyoxigraph.Store,
) -> None:
    """Each run's WordNet graph repeats the synsets, images are shared by the runs on a data set, and
    the union default graph repeats a triple once per graph that holds it (Oxigraph 0.5): each run's
    answers must stay its own."""
    import copy

    from filtag_kg.kg.vocab import Minter

    other = copy.deepcopy(animal_tags)
    other.manifest["model"] = {"name": "other", "hash": "cd" * 32}
    other_images = {"a": ("bear", "cat", IMAGES["a"][2]), "b": ("zebra", "zebra", {"zebra": 2}),
                    "c": ("bear", "bear", {"bear": 1}), "d": ("cow", "horse", {"cow": 1, "horse": 1})}
    alone = pyoxigraph.Store()
    alone.extend(semantic_quads(wn, other, other_images))
    both = pyoxigraph.Store()
    both.extend(chain(semantic_store, alone))
    runs = [(Minter().run(run_ids(t).tagging).value, single) for t, single in ((animal_tags, semantic_store), (other, alone))]
    cases = (("semantic-layer-groups", {"layer": "conv2"}),
             ("semantic-filters-under-concept", {"concept": WN30 + "02370806-n", "share": 0.5}),
             ("coarse-image-explanation", {"image": Minter().image("animal-shape", "a")}),
             ("coarse-errors", {}))
    def canonical(rows: list[dict]) -> list[dict]:  # GROUP_CONCAT order is unspecified
        return [{k: sorted(v.replace(",", " ").split()) if k in ("filterIndices", "classesUnder", "classes") else v
                 for k, v in r.items()} for r in rows]

    for name, params in cases:
        for run, single in runs:
            got = canonical(query_rows(name, both, **params, run=run))
            assert got == canonical(query_rows(name, single, **params)) and got, name
    errors = {r["image"].rsplit("/", 1)[1]: r["commonLabel"] for r in query_rows("coarse-errors", both, run=runs[1][0])}
    assert errors == {"a": "carnivore", "d": "ungulate"}


def test_a_run_read_back_has_only_its_own_layers() -> None:
    """The network graph describes the filters of every conv layer (of every run of the network), so
    reading a run of one layer back gives that layer only, not the others with no tags of its own."""
    from filtag_kg.kg.coarsen import tags_from_store
    from filtag_kg.kg.vocab import Minter

    model = {"name": "tiny", "hash": "ab" * 32, "layers": [
        {"name": "conv1", "type": "Conv2D", "index": 0, "filters": 4},
        {"name": "conv2", "type": "Conv2D", "index": 1, "filters": 6}]}
    manifest = {"dataset": {"name": "Animal-Shape", "label_space": "animal-shape"}, "model": model}
    stats = ActivationStats.empty(["conv2"], ANIMALS, {"conv2": 6}, manifest=manifest)
    stats.add_batch(np.arange(10), {"conv2": np.random.default_rng(0).random((10, 6))})
    tags = filtag_kg.tag(stats, k=1)
    store = pyoxigraph.Store()
    store.extend(export_tags(tags))
    back, _ = tags_from_store(store, Minter().run(run_ids(tags).tagging).value)
    assert back.layers == ["conv2"] and back.n_filters == {"conv2": 6}
    assert sorted(zip(back.filter_index.tolist(), back.class_index.tolist())) == \
        sorted(zip(tags.filter_index.tolist(), tags.class_index.tolist()))


def test_link_command_with_layer_keeps_the_other_layers(
    wn: WordNet, animal_tags: filtag_kg.TagSet, tmp_path: Path, cli_ok,
) -> None:
    """`link wordnet --layer conv2` coarsens conv2 again and keeps conv1's coarse concepts (it replaced
    the run's WordNet graph, so the other layers' concepts were gone and their groups with them)."""
    from filtag_kg.kg.store import Store

    with Store(tmp_path / "store") as store:
        store.load(export_tags(animal_tags))
    cli_ok("link", "wordnet", "--store", tmp_path / "store")
    graph = link_wordnet(animal_tags, wn).graph

    def coarse(store: Store) -> dict[str, set[tuple[str, str, str]]]:
        rows = store.query(f"""SELECT ?layer ?c ?p ?o WHERE {{ GRAPH <{graph.value}> {{ ?c a <{FT}CoarseConcept> ;
            <{FT}coarsens> ?f ; ?p ?o }} ?f <{FT}ofLayer>/<http://www.w3.org/2000/01/rdf-schema#label> ?layer }}""")
        out: dict[str, set[tuple[str, str, str]]] = {"conv1": set(), "conv2": set()}
        for r in rows:
            out[r["layer"].value].add((r["c"].value, r["p"].value, str(r["o"])))
        return out

    with Store(tmp_path / "store") as store:
        before = coarse(store)
        groups = query_rows("semantic-layer-groups", store, layer="conv1")
    cli_ok("link", "wordnet", "--store", tmp_path / "store", "--layer", "conv2", "--share", "0.75")
    with Store(tmp_path / "store") as store:
        after = coarse(store)
        assert query_rows("semantic-layer-groups", store, layer="conv1") == groups  # labels of the synsets too
    tag_classes = int(np.sum(animal_tags.layer_index == animal_tags.layers.index("conv1")))  # on the `all` nodes
    assert len(before["conv1"]) == 3 * 2 * 11 + tag_classes and after["conv1"] == before["conv1"]  # 3 filter-selections, all + share
    shares = {o for _, p, o in after["conv2"] if p == FT + "minCoverage"}
    assert shares == {str(pyoxigraph.Literal(1.0)), str(pyoxigraph.Literal(0.75))}
    assert [(r["selection"], r["label"], r["filters"]) for r in groups] == [
        ("k-best 1", "placental", 1), ("k-best 2", "placental", 2)]
    # with the mammals mapped elsewhere, conv1's kept concept (placental) is still described in the graph
    mapping = tmp_path / "mapping.tsv"
    mapping.write_text("".join(f"{a}\tcar.n.01\n" for a in ANIMALS if a != "bird"))
    cli_ok("link", "wordnet", "--store", tmp_path / "store", "--layer", "conv2", "--mapping", mapping)
    with Store(tmp_path / "store") as store:
        assert query_rows("semantic-layer-groups", store, layer="conv1") == groups


def test_link_command_names_the_mapping_line_of_an_unknown_synset(
    animal_tags: filtag_kg.TagSet, tmp_path: Path, run_cli,
) -> None:
    """`link wordnet --mapping` names the file and line of a synset WordNet does not have, and of a
    label that is no class of the run (the message named neither the file nor the line)."""
    from filtag_kg.kg.store import Store

    with Store(tmp_path / "store") as store:
        store.load(export_tags(animal_tags))
    mapping = tmp_path / "mapping.tsv"
    mapping.write_text("cow\tcow.n.02\nbear\tn99999999\n")
    code, _, err = run_cli("link", "wordnet", "--store", tmp_path / "store", "--mapping", mapping)
    assert code == 2 and f"{mapping}, line 2: wnid n99999999 is not a noun synset of WordNet 3.0" in err
    mapping.write_text("cow\tcow.n.02\nunicorn\thorse.n.01\n")
    code, _, err = run_cli("link", "wordnet", "--store", tmp_path / "store", "--mapping", mapping)
    assert code == 2 and f"{mapping}, line 2: 'unicorn' is not a class label or key of this run" in err


def test_link_command_maps_one_of_two_classes_with_one_label(tmp_path: Path, cli_ok) -> None:
    """`link wordnet` names each of two `crane` classes in its report, and its mapping file may map
    one of them by the key the report names (a line could only name the label, which maps both)."""
    from filtag_kg.kg.store import Store

    stats = ActivationStats.empty(["conv"], ["crane", "crane", "bear"], {"conv": 3}, manifest={"dataset": {"label_space": "birds"}})
    stats.add_batch(np.arange(3), {"conv": np.eye(3)})
    tags = filtag_kg.tag(stats, k=1)
    with Store(tmp_path / "store") as store:
        store.load(export_tags(tags))
    mapping = tmp_path / "mapping.tsv"
    mapping.write_text("crane\tn02012849\ncrane~1\tn03126707\n")
    out = cli_ok("link", "wordnet", "--store", tmp_path / "store", "--mapping", mapping)
    assert "ambiguous: 'bear' (class 2): chose" in out
    with Store(tmp_path / "store") as store:
        linked = {r["c"].value.rsplit("/", 1)[1]: r["s"].value.rsplit("/", 1)[1] for r in store.query(
            "SELECT ?c ?s WHERE { ?c <http://www.w3.org/2004/02/skos/core#closeMatch> ?s }")}
    assert linked == {"crane~0": "02012849-n", "crane~1": "03126707-n", "bear": "02131653-n"}


def test_a_filter_tagged_only_with_unlinked_classes_counts_as_tagged(wn: WordNet) -> None:
    """The layer summary counted only filters with a tag linked to WordNet as tagged: a filter whose
    only tag is a class WordNet lacks ('plugh') was left out ('2 of 4 filters tagged' for 3)."""
    classes = ["horse", "zebra", "xyzzy", "plugh", "cat"]
    stats = ActivationStats.empty(["conv"], classes, {"conv": 4}, manifest={"dataset": {"label_space": "toy"}})
    means = np.zeros((5, 4))
    means[[0, 1, 2], 0] = means[3, 1] = means[4, 2] = 1.0  # filter 3 untagged
    stats.add_batch(np.arange(5), {"conv": means})
    result = coarsen(filtag_kg.tag(stats, k=1), wn)
    assert result.counts() == {"filters": 4, "tagged": 3, "multi_tag": 1, "specific_all": 1, "specific_share": 1}
    assert layer_summary(result).startswith("conv (k-best 1): 3 of 4 filters tagged, 1 with several tags")


def test_filters_under_concept_follow_the_runs_own_class_links(wn: WordNet, animal_tags: filtag_kg.TagSet) -> None:
    """Two runs of the same classes, the second linked with a mapping (bird → dog): the first run's
    filters were counted with the second run's links too (its bird tag lay under dog), since every
    run's WordNet graph links the shared class nodes."""
    import copy

    other = copy.deepcopy(animal_tags)
    other.manifest["model"] = {"name": "other", "hash": "cd" * 32}
    store = pyoxigraph.Store()
    for tags, mapping in ((animal_tags, None), (other, {"bird": "dog.n.01"})):
        store.extend(export_tags(tags))
        store.extend(link_wordnet(tags, wn, mapping).quads)
    dog = WN30 + "02084071-n"
    runs = {run_ids(t).tagging: name for t, name in ((animal_tags, "first"), (other, "second"))}
    rows = query_rows("semantic-filters-under-concept", store, concept=dog, share=0.1)
    got = sorted((runs[r["run"].rsplit("/", 1)[1]], r["parameter"], r["layer"], r["filter"], r["under"],
                  sorted(r["classesUnder"].split(", "))) for r in rows)
    first = [row for row in got if row[0] == "first"]
    assert first == [("first", 1, "conv1", 0, 1, ["dog"]), ("first", 1, "conv2", 0, 1, ["dog"]),
                     ("first", 2, "conv1", 0, 1, ["dog"]), ("first", 2, "conv1", 1, 1, ["dog"]),
                     ("first", 2, "conv2", 0, 1, ["dog"]), ("first", 2, "conv2", 1, 1, ["dog"])]
    second = [row[1:] for row in got if row[0] == "second"]  # bird and dog: one synset, counted once
    assert second == [(1, "conv1", 0, 1, ["bird", "dog"]), (1, "conv2", 0, 1, ["dog"]), (1, "conv2", 2, 1, ["bird"]),
                      (2, "conv1", 0, 1, ["bird", "dog"]), (2, "conv1", 1, 1, ["bird", "dog"]),
                      (2, "conv2", 0, 1, ["bird", "dog"]), (2, "conv2", 1, 1, ["dog"]), (2, "conv2", 2, 1, ["bird"])]


def test_layer_groups_of_a_run_coarsened_with_share_1(wn: WordNet, animal_tags: filtag_kg.TagSet) -> None:
    """`link wordnet --share 1`: a filter's 'share' link asks coverage 1 like its 'all' link, and the
    query took the share links as those asking less than 1, so it found no group at all."""
    store = pyoxigraph.Store()
    store.extend(export_tags(animal_tags))
    store.extend(link_wordnet(animal_tags, wn, share=1.0).quads)
    rows = [r for r in query_rows("semantic-layer-groups", store, layer="conv2") if r["selection"] == "k-best 1"]
    assert sorted((r["label"], r["filters"], r["filterIndices"], r["meanCoverage"]) for r in rows) == [
        ("carnivore", 1, "0", 1.0), ("elephant", 1, "3", 1.0), ("equine", 1, "1", 1.0), ("vertebrate", 1, "2", 1.0)]


def test_link_writes_to_a_server_that_asks_for_auth(animal_tags: filtag_kg.TagSet, tmp_path: Path, run_cli,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """`link wordnet --endpoint` had no --user, so it could not write to `serve --allow-updates` (401)."""
    from filtag_kg.kg.fair import free_port, serving
    from filtag_kg.kg.store import RemoteStore, Store
    from filtag_kg.kg.vocab import Minter

    with Store(tmp_path / "store") as store:
        store.load(export_tags(animal_tags))
    monkeypatch.setenv("FILTAG_KG_PASSWORD", "open sesame")
    with serving(tmp_path / "store", free_port(), allow_updates=True, password="open sesame") as (url, _):
        code, out, err = run_cli("link", "wordnet", "--endpoint", url, "--user", "filtag-kg")
        assert code == 0, err
        wordnet_graph = Minter().run_graph(run_ids(animal_tags).tagging, "wordnet")
        assert RemoteStore.at(url).count(wordnet_graph) > 0


def test_coarse_image_queries_follow_the_runs_own_class_links(
    wn: WordNet, animal_tags: filtag_kg.TagSet, semantic_store: pyoxigraph.Store,
) -> None:
    """A second run of the same classes linked with a mapping (zebra → horse, sheep → car): the first
    run's coarse errors and image explanations went up from both runs' links (zebra for horse met at
    'horse', the sheep also counted under 'car'), since every linked run's graph links the shared classes."""
    import copy

    from filtag_kg.kg.vocab import Minter

    other = copy.deepcopy(animal_tags)
    other.manifest["model"] = {"name": "other", "hash": "cd" * 32}
    both = pyoxigraph.Store()
    both.extend(chain(semantic_store, export_tags(other),
                      link_wordnet(other, wn, {"zebra": "horse.n.01", "sheep": "car.n.01"}).quads))
    run = Minter().run(run_ids(animal_tags).tagging).value

    def canonical(rows: list[dict]) -> list[dict]:  # GROUP_CONCAT order is unspecified
        return [{k: sorted(v.split(", ")) if k == "classes" else v for k, v in r.items()} for r in rows]

    for name, params in (("coarse-errors", {}),
                         ("coarse-image-explanation", {"image": Minter().image("animal-shape", "a")})):
        got = canonical(query_rows(name, both, **params, run=run))
        assert got and got == canonical(query_rows(name, semantic_store, **params)), name


def test_link_refuses_a_run_whose_classes_were_named_by_an_older_version(tmp_path: Path, run_cli) -> None:
    """A label space whose name is no IRI segment as it is ('my space') named its classes by the bare
    slug before its key got a hash: linking such a stored run wrote its links to class nodes it does
    not have. It is refused, naming what to do, and the store is left as it was."""
    from filtag_kg.kg.store import Store
    from filtag_kg.kg.vocab import name_key

    stats = ActivationStats.empty(["conv"], ANIMALS, {"conv": 10}, manifest={"dataset": {"label_space": "my space"}})
    stats.add_batch(np.arange(10), {"conv": np.eye(10)})
    key = name_key("my space")

    def old(term: pyoxigraph.NamedNode | pyoxigraph.Literal) -> pyoxigraph.NamedNode | pyoxigraph.Literal:
        if isinstance(term, pyoxigraph.NamedNode):
            return pyoxigraph.NamedNode(term.value.replace(key, "my_space"))
        return term

    with Store(tmp_path / "store") as store:
        store.load(pyoxigraph.Quad(old(q.subject), q.predicate, old(q.object), old(q.graph_name))
                   for q in export_tags(filtag_kg.tag(stats, k=1)))
        before = set(store.quads())
    code, _, err = run_cli("link", "wordnet", "--store", tmp_path / "store")
    assert code == 2 and "classes/my_space/bear> is not where this version" in err and "load its tag set again" in err
    with Store(tmp_path / "store", read_only=True) as store:
        assert set(store.quads()) == before
