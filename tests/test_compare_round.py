"""Comparing two networks in one store (hand-testing round C): two networks whose conv layers have the
same names (both `conv1`, `conv2`), tagged and loaded side by side, and two runs of one network."""

from __future__ import annotations

from collections import defaultdict

import networkx as nx
import pytest
from pyoxigraph import NamedNode, Store
from test_queries import ANIMALS, synthetic_tags

from filtag_kg.kg import graphs, queries
from filtag_kg.kg.export import run_ids
from filtag_kg.kg.vocab import as_minter
from filtag_kg.records import K_BEST, TagSet
from kg_helpers import rows, run_iri, store_of

FT = "https://w3id.org/filtag-kg/ontology#"


@pytest.fixture(scope="module")
def nets() -> dict[str, TagSet]:
    """Two networks with layers of the same names (other filter counts), and a second run of the first."""
    return {
        "a": synthetic_tags(1, "net-a", k=(1, 3), q=(), layers={"conv1": 8, "conv2": 12}),
        "b": synthetic_tags(2, "net-b", k=(1, 3), q=(), layers={"conv1": 6, "conv2": 12}),
        "a2": synthetic_tags(1, "net-a", k=(2,), q=(), layers={"conv1": 8, "conv2": 12}),
    }


@pytest.fixture(scope="module")
def store(nets: dict[str, TagSet]) -> Store:
    return store_of(nets.values())


def network_iri(tags: TagSet) -> str:
    return as_minter(None).network(run_ids(tags).model).value


def test_store_graphs_name_their_run_and_network(nets: dict[str, TagSet], store: Store, tmp_path) -> None:
    """Node ids (`conv1#3`, `class:0`) are alike for both networks, so without the run and network on the
    graph two GraphML files of `graph --kind class-class` could not be told apart."""
    seen = {}
    for name in ("a", "b"):
        fc = graphs.store_filter_class_graph(store, run_iri(nets[name]), K_BEST, 1)
        cc = graphs.class_class_graph(fc)
        for g in (fc, cc):
            assert g.graph["run"] == run_iri(nets[name])
            assert g.graph["network"] == network_iri(nets[name])
            assert g.graph["network_title"] == f"net-{name}"
        graphs.write_graphml(cc, tmp_path / f"{name}.graphml")
        back = nx.read_graphml(tmp_path / f"{name}.graphml")
        seen[name] = (back.graph["run"], back.graph["network"])
    assert seen["a"] != seen["b"] and seen["a"][1] == network_iri(nets["a"])
    # the edges are still the tags of the run named (the same node ids as the TagSet route)
    fc = graphs.store_filter_class_graph(store, NamedNode(run_iri(nets["b"])), K_BEST, 3)
    assert fc.graph["run"] == run_iri(nets["b"])
    from_tags = graphs.filter_class_graph(nets["b"], K_BEST, 3)
    assert {frozenset(e) for e in fc.edges} == {frozenset(e) for e in from_tags.edges}
    assert from_tags.graph == fc.graph  # the TagSet route names them alike


def test_layer_statistics_and_class_filters_name_the_network(nets: dict[str, TagSet], store: Store) -> None:
    """With no run given, rows of `conv1` of both networks stand side by side: each names its network."""
    by_run = {run_iri(t): network_iri(t) for t in nets.values()}
    stats = rows("layer-tag-statistics", store, layer="conv1")
    assert {r["run"] for r in stats} == set(by_run)
    for r in stats:
        assert r["network"] == by_run[r["run"]]
        assert r["filterCount"] == (6 if r["network"] == network_iri(nets["b"]) else 8)
    filters = rows("class-filters", store, **{"class": "cat"})
    assert {r["run"] for r in filters} == set(by_run)
    assert all(r["network"] == by_run[r["run"]] for r in filters)
    only_b = rows("class-filters", store, **{"class": "cat", "run": run_iri(nets["b"])})
    assert only_b and {r["network"] for r in only_b} == {network_iri(nets["b"])}


def _filter_classes(tags: TagSet, k: int) -> dict[tuple[str, int], set[int]]:
    out: dict[tuple[str, int], set[int]] = defaultdict(set)
    for t in tags.select(K_BEST, k):
        out[t.layer, t.filter].add(t.class_index)
    return out


@pytest.mark.parametrize("pair", [("a", 1, "b", 1), ("a", 1, "a", 3), ("a", 3, "a2", 2), ("b", 3, "a2", 2)])
def test_run_diff_between_networks_and_runs(nets: dict[str, TagSet], store: Store, pair) -> None:
    """run-diff's rows against a brute-force diff of the tags: two networks with same-named layers, two
    selections of one run, two runs of one network's statistics."""
    n1, k1, n2, k2 = pair
    one, two = _filter_classes(nets[n1], k1), _filter_classes(nets[n2], k2)
    expected = {}
    for key in set(one) | set(two):
        if key not in two:
            expected[key] = "tagged only in 1"
        elif key not in one:
            expected[key] = "tagged only in 2"
        elif one[key] != two[key]:
            expected[key] = "tags differ"
    got = rows("run-diff", store, run1=run_iri(nets[n1]), method1=FT + "KBest", parameter1=k1,
               run2=run_iri(nets[n2]), method2=FT + "KBest", parameter2=k2)
    assert {(r["layer"], r["filter"]): r["change"] for r in got} == expected
    assert len(got) == len(expected) > 0


def test_similar_classes_per_run_counts_shared_filters(nets: dict[str, TagSet], store: Store) -> None:
    for name in ("a", "b"):
        tags = nets[name]
        by_filter = _filter_classes(tags, 3)
        cat = ANIMALS.index("cat")
        shared = defaultdict(int)
        for classes in by_filter.values():
            if cat in classes:
                for c in classes - {cat}:
                    shared[c] += 1
        got = queries.run("similar-classes", store, {"class": "cat", "run": run_iri(tags)}).values()
        mine = {r["label"]: r["sharedFilters"] for r in got if r["selection"] == "k-best 3"}
        assert {r["run"] for r in got} == {run_iri(tags)}
        assert mine == {ANIMALS[c]: n for c, n in shared.items()}


def test_networks_counts_runs_and_says_0_after_the_last_run_is_dropped(nets: dict[str, TagSet]) -> None:
    """`drop --run` keeps the network's graph: a network whose runs were all dropped listed no run
    count at all (blank), not 0."""
    store = store_of(nets.values())
    count = {r["network"]: r["runs"] for r in rows("networks", store)}
    assert count == {network_iri(nets["a"]): 2, network_iri(nets["b"]): 1}  # a and a2: one network, two runs
    store.remove_graph(NamedNode(as_minter(None).run_graph(run_ids(nets["b"]).tagging, "tags").value))
    count = {r["network"]: r["runs"] for r in rows("networks", store)}
    assert count == {network_iri(nets["a"]): 2, network_iri(nets["b"]): 0}


def test_a_model_compiled_or_not_is_one_network() -> None:
    """Keras' load_model compiles a saved model, `load_saved` does not: the compile config (optimizer,
    loss) went into the model hash, so one .keras file collected from Python and by the CLI was two
    networks in the store. Weights still count."""
    import keras

    from filtag_kg.models import model_hash

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    plain = model_hash(model)
    model.compile("adam", "sparse_categorical_crossentropy")
    assert model_hash(model) == plain
    model.layers[1].kernel.assign(model.layers[1].kernel + 1.0)
    assert model_hash(model) != plain
