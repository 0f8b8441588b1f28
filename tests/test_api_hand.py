"""The Python API as a researcher uses it: bad arguments refused by name and value (not failing deep
inside with an AttributeError, TypeError or "'x' is not in list"), explicit empty lists not read as
"all", TagSet indexing and `==`, and z and k-best against a plain float64 numpy computation on a tiny CNN."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from pyoxigraph import Store

import filtag_kg
from filtag_kg.errors import UserError
from filtag_kg.kg import graphs, queries
from filtag_kg.kg.export import export_tags, media_type, rdf_format, run_iri, write
from filtag_kg.kg.queries import python_value
from filtag_kg.records import ActivationStats, HeldOut, Tag, TagSet


def small_stats() -> ActivationStats:
    rng = np.random.default_rng(1)
    stats = ActivationStats.empty(["a", "b"], ["x", "y", "z"], {"a": 4, "b": 6})
    for m in stats.layers:
        stats.sums[m] = rng.random((3, stats.n_filters[m])) * 2
    stats.counts[:] = [2, 2, 2]
    return stats


@pytest.fixture(scope="module")
def tags() -> TagSet:
    return filtag_kg.tag(small_stats(), k=[1, 2], q=[50])


# -- tag(): its arguments ----------------------------------------------------------------------------

@pytest.mark.parametrize("stats", [None, [1, 2], "stats/"])
def test_tag_refuses_what_is_no_statistics(stats: object) -> None:
    with pytest.raises(UserError, match=f"stats must be a filtag_kg.ActivationStats .*got {type(stats).__name__}"):
        filtag_kg.tag(stats, k=1)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [{"k": []}, {"q": []}, {"k": [], "q": []}, {"k": np.array([])}])
def test_tag_refuses_empty_k_and_q_instead_of_k_1(kwargs: dict) -> None:
    with pytest.raises(UserError, match="no k or q to tag with"):
        filtag_kg.tag(small_stats(), **kwargs)
    assert filtag_kg.tag(small_stats(), k=[], q=[50]).selections == [("q-quantile", 50.0)]  # one of them is enough
    assert filtag_kg.tag(small_stats()).selections == [("k-best", 1)]  # neither given: k = 1


@pytest.mark.parametrize("layers, message", [
    (5, "layers must be a layer name or pattern, or a list of them, got 5"),
    (["a", 3], "layers must be layer names or patterns \\(text\\), got 3"),
    ([], "layers is empty"),
])
def test_tag_refuses_bad_layers(layers: object, message: str) -> None:
    with pytest.raises(UserError, match=message):
        filtag_kg.tag(small_stats(), k=1, layers=layers)  # type: ignore[arg-type]
    assert filtag_kg.tag(small_stats(), k=1, layers="b").tagged_layers == ["b"]
    assert filtag_kg.tag(small_stats(), k=1, layers=("a",)).tagged_layers == ["a"]


# -- TagSet: indexing and lookups ---------------------------------------------------------------------

def test_tagset_index_gives_the_tag_iteration_gives(tags: TagSet) -> None:
    listed = list(tags)
    assert [tags[i] for i in range(len(tags))] == listed
    assert tags[-1] == listed[-1] and tags[np.int64(2)] == listed[2]
    assert isinstance(tags[0], Tag) and type(tags[0].filter) is int and type(tags[0].score) is float
    with pytest.raises(IndexError, match=f"tag {len(tags)} is not among the {len(tags)} tags"):
        tags[len(tags)]
    for bad in ("a", 1.0, True, slice(0, 2)):
        with pytest.raises(TypeError, match="indexed by a whole number"):
            tags[bad]  # type: ignore[index]


def test_tagset_lookups_name_the_unknown_layer_or_selection(tags: TagSet) -> None:
    for lookup in (tags.filter_tags, tags.tag_matrix):
        with pytest.raises(KeyError, match="layer 'nope' is not in this tag set; layers: a, b"):
            lookup("nope", "k-best", 1)
        with pytest.raises(KeyError, match="no selection k-best 7 in this tag set"):
            lookup("a", "k-best", 7)
    with pytest.raises(UserError, match="must be a number .*got '50'"):  # not "no selection q-quantile 50"
        tags.select("q-quantile", "50")  # type: ignore[arg-type]
    assert tags.tag_matrix("b", "q-quantile", 50).shape == (6, 3)


@pytest.mark.parametrize("labels, means, message", [
    ([0.5, 1.0], None, "labels must be one class index per image .*got \\[0.5, 1.0\\]"),
    (["0", "1"], None, "labels must be one class index .*got \\['0', '1'\\]"),
    ([True, False], None, "labels must be one class index .*got \\[True, False\\]"),
    ([0, 3], None, "whole numbers 0 … 2"),
    ([[0, 1]], None, "labels must be one class index per image"),
    ([0, 1], {"a": np.ones(4), "b": np.ones((2, 6))},
     "the means of layer 'a' must be numbers \\[batch, n_filters\\] = \\[2, 4\\], got float64 of shape \\(4,\\)"),
    ([0, 1], {"a": np.ones((2, 4))}, "no means for layer 'b'"),
    ([0, 1, 2], {"a": np.ones((2, 4)), "b": np.ones((2, 6))}, "= \\[3, 4\\], got float64 of shape \\(2, 4\\)"),
])
def test_add_batch_refuses_a_bad_batch_and_adds_nothing(labels: list, means: dict | None, message: str) -> None:
    """Fractional, text and boolean labels were added as classes 0 and 1; a means row [n_filters] was
    added to every image's class; a missing layer left the counts raised and the sums of that layer not."""
    stats = ActivationStats.empty(["a", "b"], ["x", "y", "z"], {"a": 4, "b": 6})
    means = means if means is not None else {"a": np.ones((len(labels), 4)), "b": np.ones((len(labels), 6))}
    with pytest.raises(UserError, match=message):
        stats.add_batch(labels, means)  # type: ignore[arg-type]
    assert stats.n_images == 0 and not any(stats.sums[m].any() for m in stats.layers)
    stats.add_batch(np.array([2.0, 0.0]), {"a": np.ones((2, 4)), "b": np.ones((2, 6), np.float32)})
    assert stats.counts.tolist() == [1, 0, 1] and stats.sums["b"].sum() == 12


def test_records_compare_by_value_and_survive_a_round_trip(tmp_path) -> None:
    """`==` on two TagSets (or statistics, or held-out records) raised "The truth value of an array with
    more than one element is ambiguous"; a saved and loaded one now equals the original."""
    stats = small_stats()
    stats.heldout = HeldOut(["0", "1"], np.arange(2), np.array([0, 2]), np.array([[0, 1, 2, 1, 1], [2, 1, 0, 0, 0]]),
                            np.full((2, 5), 0.2, np.float32), {"a": np.ones((2, 4), np.float32),
                                                                "b": np.zeros((2, 6), np.float32)})
    tags = filtag_kg.tag(stats, k=[1, 2], q=[50])
    loaded_stats = ActivationStats.load(stats.save(tmp_path / "stats"))
    assert loaded_stats == stats and loaded_stats.heldout == stats.heldout
    assert TagSet.load(tags.save(tmp_path / "tags")) == tags == filtag_kg.tag(loaded_stats, k=[1, 2], q=[50])
    assert tags != tags.select("k-best", 1) and tags != filtag_kg.tag(stats, k=[2, 1], q=[50])
    other = small_stats()
    other.sums["b"] = other.sums["b"] + 1e-9
    assert other != small_stats() and tags != stats and (tags == "tags") is False


# -- export and graphs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("similar", [2.5, "3", True, -1])
def test_export_refuses_bad_similar_classes(tags: TagSet, similar: object) -> None:
    with pytest.raises(UserError, match=f"similar_classes must be a whole number, 0 or more, got {similar!r}"):
        list(export_tags(tags, similar_classes=similar))  # type: ignore[arg-type]
    assert next(export_tags(tags, similar_classes=np.int64(2))) is not None


def test_export_refuses_what_is_no_tag_set() -> None:
    with pytest.raises(UserError, match="tags must be a filtag_kg.TagSet .*got ActivationStats"):
        next(export_tags(small_stats()))  # type: ignore[arg-type]


def test_filter_class_graph_takes_one_layer_name_as_a_string() -> None:
    stats = small_stats()
    stats.layers = ["conv1", "conv2"]  # names of more than one character: 'conv2' was read as c, o, n, v, 2
    stats.n_filters = {"conv1": 4, "conv2": 6}
    stats.sums = {"conv1": stats.sums["a"], "conv2": stats.sums["b"]}
    tags = filtag_kg.tag(stats, k=2)
    one = graphs.filter_class_graph(tags, "k-best", 2, layers="conv2")
    assert one.number_of_edges() == 6
    assert {d["layer"] for _, d in one.nodes(data=True) if d["kind"] == "filter"} == {"conv2"}
    assert set(graphs.filter_class_graph(tags, "k-best", 2, layers=["conv2"]).edges) == set(one.edges)
    for bad in (5, [1]):
        with pytest.raises(UserError, match=re.escape(f"layers must be a layer name or a list of them, got {bad!r}")):
            graphs.filter_class_graph(tags, "k-best", 2, layers=bad)  # type: ignore[arg-type]


def test_class_class_graph_refuses_what_is_no_filter_class_graph(tags: TagSet) -> None:
    fc = graphs.filter_class_graph(tags, "k-best", 2)
    cc = graphs.class_class_graph(fc)
    assert sorted(cc.nodes) == ["class:0", "class:1", "class:2"]
    for bad, what in ((tags, "TagSet"), (cc, "a class-class graph")):
        with pytest.raises(UserError, match=f"projects a filter-class graph .*got {what}"):
            graphs.class_class_graph(bad)  # type: ignore[arg-type]
    fc.graph.clear()  # a bipartite graph of one's own, without the graph attributes, is projected as well
    assert set(graphs.class_class_graph(fc).edges) == set(cc.edges)


def test_results_column_names_an_unknown_variable(tags: TagSet) -> None:
    store = Store()
    store.extend(export_tags(tags))
    params = {"run": run_iri(tags), "method": "ft:KBest", "parameter": 1}
    results = queries.run("selection-tags", store, params)
    assert [python_value(t) for t in results.column("layer")] == [r["layer"] for r in results.values()]
    with pytest.raises(KeyError, match="no variable 'nope' in these results; variables: layer, sequence, filter"):
        results.column("nope")
    with pytest.raises(UserError, match="the parameters of query 'runs' are a mapping of names to values"):
        queries.run("runs", store, ["network"])  # type: ignore[arg-type]


def test_media_type_takes_format_names_and_names_an_unknown_one() -> None:
    assert media_type(rdf_format("ttl")) == media_type("ttl") == media_type("Turtle") == "text/turtle"
    assert media_type("nq") == "application/n-quads" and media_type("jsonld") == "application/ld+json"
    with pytest.raises(UserError, match="unknown RDF format 'json'; use one of: "):
        media_type("json")


def test_write_refuses_a_text_stream_before_writing(tags: TagSet, tmp_path) -> None:
    """A file opened with 'w' failed after the first quads with "string argument expected, got 'bytes'"."""
    with open(tmp_path / "tags.nt", "w") as text, pytest.raises(UserError, match="binary mode"):
        write(export_tags(tags), text, "nt")
    assert (tmp_path / "tags.nt").read_text() == ""
    with pytest.raises(UserError, match="binary mode"):
        write(export_tags(tags), io.StringIO(), "turtle")
    out = io.BytesIO()
    assert write(export_tags(tags), out, "nt") == out.getvalue().count(b"\n") > 0


@pytest.mark.parametrize("parameter", ["1", True])
def test_graph_routes_refuse_a_parameter_that_is_no_number(tags: TagSet, parameter: object) -> None:
    store = Store()
    store.extend(export_tags(tags))
    message = re.escape(f"parameter (the selection's k or q) must be a number, got {parameter!r}")
    with pytest.raises(UserError, match=message):
        graphs.filter_class_graph(tags, "k-best", parameter)  # type: ignore[arg-type]
    with pytest.raises(UserError, match=message):
        graphs.store_filter_class_graph(store, run_iri(tags), "k-best", parameter)  # type: ignore[arg-type]


# -- z and k-best against numpy, on a tiny CNN ----------------------------------------------------------

def test_collect_and_tag_match_a_float64_numpy_reference() -> None:
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="c1")(inputs)
    x = keras.layers.Conv2D(6, 3, activation="relu", name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x), name="tiny")
    rng = np.random.default_rng(0)
    images = rng.random((12, 8, 8, 1)).astype("float32")
    images[5] = 0.25  # a constant image: ReLU outputs that may be constant too (scaled to 0)
    labels = np.array([0, 1, 2] * 4)
    stats = filtag_kg.collect(model, images, labels, batch_size=5, progress=False)
    features = keras.Model(model.input, [model.get_layer("c1").output, model.get_layer("c2").output])
    tags = filtag_kg.tag(stats, k=[1, 2, 3])
    for name, a in zip(["c1", "c2"], features.predict(images, verbose=0)):
        a = a.astype(np.float64)
        low, high = a.min(axis=(1, 2, 3), keepdims=True), a.max(axis=(1, 2, 3), keepdims=True)
        scaled = np.where(high > low, (a - low) / np.where(high > low, high - low, 1), 0.0)
        z = np.stack([scaled.mean(axis=(1, 2))[labels == c].mean(axis=0) for c in range(3)])
        np.testing.assert_allclose(stats.class_means(name), z, atol=1e-6)
        for k in (1, 2, 3):
            one = tags.select("k-best", k)
            got = {(int(c), int(f)) for c, f, m in zip(one.class_index, one.filter_index, one.layer_index)
                   if one.layers[m] == name}
            assert got == {(c, int(f)) for c in range(3) for f in np.argsort(-z[c], kind="stable")[:k]}
    again = filtag_kg.collect(model, images, labels, batch_size=5, progress=False)
    assert all(np.array_equal(stats.sums[m], again.sums[m]) for m in stats.layers)  # deterministic


def test_collect_shows_its_own_signature_and_docstring_without_importing_tensorflow() -> None:
    """filtag_kg.collect was a wrapper `(*args, **kwargs)` whose docstring only pointed elsewhere."""
    import inspect
    import subprocess
    import sys

    from filtag_kg import collection

    assert inspect.signature(filtag_kg.collect) == inspect.signature(collection.collect)
    assert list(inspect.signature(filtag_kg.collect).parameters)[:3] == ["model", "source", "labels"]
    assert "labelled image source" in (filtag_kg.collect.__doc__ or "")
    code = "import sys, filtag_kg; print('tensorflow' in sys.modules or 'keras' in sys.modules)"
    answer = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert answer.stdout.strip() == "False"


# -- collect, the sources and the store: their arguments -----------------------------------------------

def test_collect_and_sources_refuse_bad_arguments_by_name(tmp_path) -> None:
    """collect(None, …) was an AttributeError, collect(layers=[]) collected every layer,
    image_folder(fraction='0.5') a TypeError of a comparison, array_source took held-out labels beyond
    its classes (refused only later, by collect), and Store.load(a TagSet) an AttributeError."""
    import keras

    from filtag_kg.data import array_source, stratified_split
    from filtag_kg.kg.store import Store as FiltagStore

    inputs = keras.Input((6, 6, 1))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3, name="c1")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    images, labels = np.zeros((4, 6, 6, 1), np.float32), [0, 1, 0, 1]
    with pytest.raises(UserError, match="model must be a keras.Model .*got NoneType"):
        filtag_kg.collect(None, images, labels=labels, progress=False)  # type: ignore[arg-type]
    with pytest.raises(UserError, match="layers is empty; name at least one conv layer"):
        filtag_kg.collect(model, images, labels=labels, layers=[], progress=False)
    with pytest.raises(UserError, match="layers must be layer names or patterns \\(text\\), got 1"):
        filtag_kg.collect(model, images, labels=labels, layers=["c1", 1], progress=False)  # type: ignore[list-item]
    assert filtag_kg.collect(model, images, labels=labels, layers="c1", progress=False).layers == ["c1"]
    with pytest.raises(UserError, match="the training fraction must be a number in \\(0, 1\\], got '0.5'"):
        stratified_split(np.array(labels), "0.5", 0)  # type: ignore[arg-type]
    with pytest.raises(UserError, match="held-out label 2 is beyond the 2 classes"):
        array_source(images, labels, heldout=(images[:1], [2]))
    with FiltagStore(tmp_path / "store") as store, pytest.raises(UserError, match="export_tags"):
        store.load(filtag_kg.tag(small_stats(), k=1))
