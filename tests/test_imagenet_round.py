"""The ImageNet-scale round: 1,000 classes named by wnids, statistics built by hand (no collection),
linked to WordNet and read back through the store and the bundled queries."""

from __future__ import annotations

import tracemalloc
from itertools import combinations

import numpy as np
import pyoxigraph as ox
import pytest

import filtag_kg
from filtag_kg.imagenet import imagenet_index
from filtag_kg.kg.coarsen import MAX_PAIRS, coarse_groups_summary, coarsen, coarsen_filter, link_wordnet
from filtag_kg.kg.export import export_tags
from filtag_kg.kg.graphs import class_class_graph, filter_class_graph, store_filter_class_graph, write_graphml
from filtag_kg.kg.queries import MAX_CELL, Results, run, unmatched_parameters
from filtag_kg.kg.store import Store
from filtag_kg.kg.wordnet import link_classes
from filtag_kg.records import ActivationStats, TagSet

DOGS = ["n02085620", "n02088364", "n02099601", "n02110958", "n02106662"]  # Chihuahua, beagle, golden, pug, GSD
DOG = "02084071-n"  # dog.n.01


def imagenet_stats(n_filters: int = 8) -> ActivationStats:
    """One layer over the 1,000 ImageNet classes, as a folder of wnid sub-folders collects it (classes
    are the wnids): five dog breeds activate filter 0 most, every other class one of filters 1…"""
    index = imagenet_index()
    manifest = {
        "model": {"name": "inet-small", "hash": "cd" * 32, "family": "keras", "source": "built in the test",
                  "layers": [dict(name="conv", type="Conv2D", index=1, filters=n_filters, kernel_size=[3, 3],
                                  params=10, activation="relu")]},
        "dataset": {"name": "inet", "label_space": "imagenet1k", "root": None, "wnids": list(index.wnids)},
        "split": {"name": "train", "fraction": 0.8, "seed": 0},
        "software": {"filtag-kg": "0.1.0"},
        "created": "2026-12-03T15:00:00+00:00",
    }
    stats = ActivationStats.empty(["conv"], list(index.wnids), {"conv": n_filters}, manifest)
    z = np.zeros((1000, n_filters))
    z[np.arange(1000), 1 + np.arange(1000) % (n_filters - 1)] = 1.0
    for wnid in DOGS:
        z[index.index_of_wnid(wnid)] = 0.0
        z[index.index_of_wnid(wnid), 0] = 1.0
    stats.counts[:] = 2
    stats.sums["conv"] = z * 2
    return stats


@pytest.fixture(scope="module")
def tags() -> TagSet:
    return filtag_kg.tag(imagenet_stats(), k=[1])


def test_a_filter_of_dog_breeds_coarsens_to_dog(tags: TagSet, wn) -> None:
    """Filter 0, tagged with five dog breeds of the 1,000 wnid classes, is a *dog* filter (all five under
    dog.n.01), and its tags are the breeds' classes, found through their wnids."""
    result = coarsen(tags, wn, "conv", ("k-best", 1.0))
    first = next(f for f in result.filters if f.filter == 0)
    assert sorted(tags.classes[c] for c in first.classes) == sorted(DOGS)
    assert first.all is not None and f"{first.all.synset.offset():08d}-n" == DOG
    assert first.all.covered == first.all.total == 5


def test_the_coarse_groups_name_wnid_classes_by_their_imagenet_names(tags: TagSet, wn) -> None:
    """The demo's summary of a layer's coarse groups listed a dog filter of a wnid run as 'n02085620,
    n02088364, …'; it now reads as the breeds it is."""
    text = coarse_groups_summary(tags, "conv", wn)
    assert "dog (02084071-n): filter 0 — Chihuahua, German shepherd, beagle, golden retriever, pug" in text, text


def test_coarse_concepts_name_their_run_as_the_queries_read_it(tags: TagSet, wn, tmp_path) -> None:
    """`link wordnet` wrote its coarse concepts' run as prov:wasDerivedFrom after explanations and the
    queries had moved to prov:wasInfluencedBy: the store then refused every query as 'filled by a
    filtag-kg of before 2026-12-03' (upgrade needed right after a link), and semantic-layer-groups
    found none of the run's concepts. Now the concepts are linked to the run as explanations are."""
    linking = link_wordnet(tags, wn)
    predicates = {q.predicate.value for q in linking.quads}
    assert "http://www.w3.org/ns/prov#wasDerivedFrom" not in predicates
    with Store(tmp_path / "store") as db:
        db.load(export_tags(tags))
        db.load(linking.quads)
    with Store(tmp_path / "store", read_only=True) as db:  # refused as a legacy store before the fix
        rows = run("semantic-layer-groups", db, {"layer": "conv", "multiTag": True}).values()
    dog = [r for r in rows if str(r.get("concept", "")).endswith(DOG)]
    assert dog and dog[0]["filters"] == 1, rows


def test_a_table_cuts_a_cell_of_a_thousand_classes_short_and_says_so() -> None:
    """coarse-image-explanation lists an image's counted classes in one cell: at ImageNet scale thousands
    of wnids, and the table padded every row to that width (1,863 lines of 11,202 columns). Long
    cells are now cut to MAX_CELL columns, marked, and the table says where the whole values are."""
    wnids = ", ".join(imagenet_index().wnids)
    table = Results(["concept", "classes"], [(ox.Literal("dog"), ox.Literal(wnids)),
                                             (ox.Literal("cat"), ox.Literal("n02123045"))]).serialize("table")
    lines = table.splitlines()
    assert max(len(line) for line in lines) <= len("concept") + 2 + MAX_CELL
    assert lines[2].startswith("dog      n01440764, n01443537") and lines[2].endswith(" …")
    assert lines[3].rstrip() == "cat      n02123045"
    assert lines[-1] == (f"(2 rows; cells over {MAX_CELL} columns cut short, ending in '…': --format csv, tsv or "
                         "json gives them whole)")
    assert wnids in Results(["classes"], [(ox.Literal(wnids),)]).serialize("csv")  # whole there


def test_an_image_iri_typed_from_its_id_is_pointed_to_its_node() -> None:
    """An ImageNet image's id is 'n01440764/x.png' (class folder/file), so its node ends in
    'n01440764%2Fx.png'; the IRI typed from the id ('…/n01440764/x.png') was only said to be in no
    triple of the store. The note now names the node."""
    store = ox.Store()
    image = ox.NamedNode("https://w3id.org/filtag-kg/id/image/imagenet1k/n01440764%2Fn01440764_1.png")
    store.add(ox.Quad(image, ox.NamedNode("http://purl.org/dc/terms/identifier"),
                      ox.Literal("n01440764/n01440764_1.png")))
    typed = "https://w3id.org/filtag-kg/id/image/imagenet1k/n01440764/n01440764_1.png"
    notes = unmatched_parameters("coarse-image-explanation", store, {"image": typed})
    assert notes == [f"<{typed}> is in no triple of the store (--param image); did you mean <{image.value}>?"]
    other = "https://w3id.org/filtag-kg/id/image/imagenet1k/n01440764/nothing.png"  # no twin: as before
    assert unmatched_parameters("coarse-image-explanation", store, {"image": other}) == [
        f"<{other}> is in no triple of the store (--param image)"]


def test_graph_nodes_of_wnid_classes_carry_their_imagenet_name(tags: TagSet, tmp_path) -> None:
    """A class-class graph of 1,000 classes labelled 'n02085620', 'n02088364', … said nothing in a graph
    tool; the class nodes now carry the common name too (both routes, and in GraphML)."""
    graph = filter_class_graph(tags)
    assert graph.nodes["class:151"] == dict(bipartite=1, kind="class", label="n02085620", index=151, name="Chihuahua")
    with Store(tmp_path / "store") as db:
        db.load(export_tags(tags))
        from_store = store_filter_class_graph(db, graph.graph["run"], "k-best", 1)
    assert dict(from_store.nodes(data=True)) == dict(graph.nodes(data=True))
    write_graphml(class_class_graph(graph), tmp_path / "classes.graphml")
    assert ">German shepherd</data>" in (tmp_path / "classes.graphml").read_text()
    stats = imagenet_stats()  # a class labelled otherwise gets no name
    stats.classes[0] = "tench"
    stats.manifest["dataset"] = {"name": "own", "label_space": "own", "root": None}
    plain = filter_class_graph(filtag_kg.tag(stats, k=[1]))
    assert "name" not in plain.nodes["class:0"]


def test_imagenet_labels_without_wnids_link_to_their_imagenet_synsets(wn) -> None:
    """A folder of ImageNet's label-named class folders (crane and maillot by wnid) gives classes without
    wnids, which were linked by their labels' first WordNet senses: 'badger' a Wisconsinite, 'Loafer'
    an idler, 'Samoyed' a Siberian people, and the wnid-named folders not at all. Labels that are all
    ImageNet-1k's now link through the wnid of their class; other label sets as before."""
    index = imagenet_index()
    classes = sorted({*index.keras_labels} - {"crane", "maillot"})
    classes += ["n02012849", "n03126707", "n03710637", "n03710721"]  # their folders are named by wnid
    report = link_classes(classes, None, wn, "inet-labels")
    synset = {link.label: f"{link.synset.offset():08d}-n" for link in report.linked}
    assert len(report.linked) == 1000 and not report.ambiguous and not report.unmatched
    for label, wnid in (("badger", "n02447366"), ("Loafer", "n03680355"), ("Samoyed", "n02111889"),
                        ("n02012849", "n02012849"), ("Chihuahua", "n02085620")):
        assert synset[label] == f"{wnid[1:]}-n", label
    assert "1000 through the ImageNet-1k class their label names" in report.summary()
    own = link_classes(["badger", "cat"], None, wn, "own")  # 'cat' is no ImageNet-1k label: lemmas, as before
    assert [link.method for link in own.links] == ["lemma", "lemma"]
    assert own.links[0].synset.name() == "wisconsinite.n.01"


def test_coherence_of_a_filter_of_a_thousand_classes_samples_pairs_without_listing_them(wn) -> None:
    """A filter tagged with all 1,000 ImageNet classes has 499,500 pairs of synsets; coarsening listed them
    all to sample MAX_PAIRS (10 of the 11 s of `link wordnet` on a 1,000-class run, ~32 MB per filter).
    The sample is the same, drawn by index: coherence as before, in a fraction of the memory."""
    synsets = [wn.synset_of_wnid(w) for w in imagenet_index().wnids]
    distinct = sorted(set(synsets), key=lambda s: s.offset())
    pairs = list(combinations(distinct, 2))
    sample = [pairs[i] for i in np.random.default_rng(7).choice(len(pairs), MAX_PAIRS, replace=False)]
    expected = sum(wn.wup(a, b) for a, b in sample) / MAX_PAIRS
    del pairs
    tracemalloc.start()
    try:
        result = coarsen_filter(wn, 7, list(range(1000)), synsets)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.coherence == pytest.approx(expected, rel=1e-12)
    assert peak < 8_000_000, peak


def test_a_class_named_as_imagenet_names_it_is_pointed_to_its_wnid(tags: TagSet, tmp_path) -> None:
    """A run on wnid folders labels its classes 'n02085620', …: `query class-filters --param
    class=Chihuahua` answered (0 rows) and 'no node is labelled' with nothing close. The note now names
    the wnid (both of crane's); a name that is no ImageNet class's gets the note as before."""
    with Store(tmp_path / "store") as db:
        db.load(export_tags(tags))
    with Store(tmp_path / "store", read_only=True) as db:
        notes = {c: unmatched_parameters("class-filters", db, {"class": c}) for c in ("Chihuahua", "crane", "doge")}
    assert notes["Chihuahua"] == ["no node in the store is labelled 'Chihuahua' (--param class); ImageNet's "
                                  "'Chihuahua' is labelled n02085620 here"]
    assert "ImageNet's 'crane' is labelled n02012849 or n03126707 here" in notes["crane"][0]
    assert notes["doge"] == ["no node in the store is labelled 'doge' (--param class)"]


def test_a_label_named_folder_gives_the_true_class_of_a_wnid_run(tmp_path) -> None:
    """`explain photos/Chihuahua/x.png` on a run of wnid folders (its classes are the wnids) gave the image
    no true class: only the class labels (here wnids) and wnids were looked up, not ImageNet's labels.
    A label two classes share (crane) still names none."""
    from PIL import Image

    from filtag_kg.data import image_files
    from filtag_kg.imagenet import imagenet_index

    wnids = list(imagenet_index().wnids)
    files = []
    for folder in ("Chihuahua", "n02085620", "crane"):
        (tmp_path / folder).mkdir()
        Image.new("RGB", (4, 4)).save(tmp_path / folder / "x.png")
        files.append(tmp_path / folder / "x.png")
    source = image_files(files, wnids)
    assert source.splits["heldout"].labels.tolist() == [wnids.index("n02085620")] * 2 + [-1]


def test_explanations_and_error_reports_name_wnid_classes() -> None:
    """A run on wnid folders labels its classes by wnid: explanations and the error report read as
    numbers ('predicted n01843065; true n02085620'). They now give each wnid its ImageNet name; other
    labels, and the labels the report's query command takes, stay as they are."""
    from itertools import chain

    from pyoxigraph import Store

    from filtag_kg.explain import explain
    from filtag_kg.kg.error_analysis import error_report
    from filtag_kg.kg.explanations import export_explanations
    from filtag_kg.kg.export import export_tags
    from test_explain import hand_case

    tags, heldout = hand_case()  # classes cat, dog, cow: a dog image taken for a cat
    tags.classes = ["n02123045", "n02085620", "cow"]  # tabby, Chihuahua, a label of no ImageNet class
    tags.manifest["dataset"] = {"name": "toy", "label_space": "toy"}
    a = explain(tags, heldout)[0]
    assert a.text(tags.classes).startswith("a: predicted n02123045 (tabby) (70%); true n02085620 (Chihuahua) — "
                                           "active filters tagged (k-best 1): n02123045 (tabby) 2, n02085620 (Chihuahua) 1")
    store = Store()
    store.extend(chain(export_tags(tags), export_explanations(tags, heldout)))
    report = error_report(store, "k-best 1")
    assert "    n02085620 (Chihuahua) -> n02123045 (tabby): 1 errors" in report
    assert "--param true=n02085620 --param predicted=n02123045" in report


def test_imagenet_class_folders_named_by_label_are_said_to_be_in_label_order(tmp_path, capsys) -> None:
    """1,000 folders named by ImageNet label (crane and maillot by wnid) became classes in the order of their
    names: a model trained on ImageNet (outputs in wnid order) had output 0, tench, called Afghan_hound,
    without a word. The order stays (Keras' own for such a folder); a warning says what it means."""
    from PIL import Image

    from filtag_kg.data import image_folder
    from filtag_kg.imagenet import imagenet_index

    index = imagenet_index()
    shared = {"crane", "maillot"}
    png = tmp_path / "x.png"
    Image.new("RGB", (2, 2)).save(png)
    for layout, names in (("labels", [w if l in shared else l for w, l in zip(index.wnids, index.keras_labels)]),
                          ("wnids", list(index.wnids))):
        for name in names:
            (tmp_path / layout / name).mkdir(parents=True)
            (tmp_path / layout / name / "x.png").write_bytes(png.read_bytes())
        source = image_folder(tmp_path / layout, fraction=1.0)
        err = capsys.readouterr().err
        if layout == "labels":
            assert source.classes == sorted(names) and source.classes[0] == "Afghan_hound"
            assert "1,000 class folders are ImageNet-1k's classes named by label" in err and "--classes" in err
        else:
            assert source.classes == list(index.wnids) and "named by label" not in err
