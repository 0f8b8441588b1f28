"""The networkx filter–class and class–class graphs: from a TagSet and from a store, equal, with
weights checked against tag matrices, and GraphML round trips."""

from __future__ import annotations

import math
from pathlib import Path

import networkx as nx
import pytest
from pyoxigraph import Store
from test_queries import ANIMALS, run_iri, synthetic_tags

from filtag_kg.errors import UserError
from filtag_kg.kg import graphs, queries
from filtag_kg.kg.export import export_tags
from filtag_kg.records import K_BEST, Q_QUANTILE, TagSet


@pytest.fixture(scope="module")
def tags() -> TagSet:
    return synthetic_tags(3, "net-g", k=(1, 3), q=(25.0,))


@pytest.fixture(scope="module")
def store(tags: TagSet) -> Store:
    store = Store()
    store.extend(export_tags(tags))
    return store


def _edges(graph: nx.Graph) -> dict[frozenset[str], dict[str, object]]:
    return {frozenset((u, v)): d for u, v, d in graph.edges(data=True)}


@pytest.mark.parametrize("selection", [(K_BEST, 3), (Q_QUANTILE, 25.0)])
def test_filter_class_graph_from_tags(tags: TagSet, selection: tuple[str, float]) -> None:
    graph = graphs.filter_class_graph(tags, *selection)
    one = tags.select(*selection)
    assert graph.number_of_edges() == len(one)
    filters = {n for n, d in graph.nodes(data="bipartite") if d == 0}
    classes = {n for n, d in graph.nodes(data="bipartite") if d == 1}
    assert nx.bipartite.is_bipartite_node_set(graph, filters)
    assert len(filters) == sum(tags.tag_matrix(m, *selection).any(axis=1).sum() for m in tags.layers)
    assert {graph.nodes[c]["label"] for c in classes} == set(ANIMALS)
    for t in list(one)[:50]:
        edge = graph.edges[graphs.filter_node(t.layer, t.filter), graphs.class_node(t.class_index)]
        assert (edge["score"], edge["rank"]) == (t.score, t.rank)
    assert graph.nodes[graphs.filter_node("conv2d_1", int(one.filter_index[0]))]["sequence"] in (1, 3, 5)


def test_store_route_gives_the_same_graph(tags: TagSet, store: Store) -> None:
    for method, p in tags.selections:
        from_tags = graphs.filter_class_graph(tags, method, p)
        from_store = graphs.store_filter_class_graph(store, run_iri(tags), method, p)
        assert dict(from_store.nodes(data=True)) == dict(from_tags.nodes(data=True))
        assert _edges(from_store) == _edges(from_tags)
    for method, p in tags.selections:  # one layer: that layer's tags, read through its layer summary
        one_layer = graphs.store_filter_class_graph(store, run_iri(tags), method, p, layer="conv2d")
        assert {d for _, d in one_layer.nodes(data="layer") if d} == {"conv2d"}
        assert _edges(one_layer) == _edges(graphs.filter_class_graph(tags, method, p, layers=["conv2d"]))


def test_class_class_weights_count_shared_filters(tags: TagSet, store: Store) -> None:
    selection = (Q_QUANTILE, 25.0)
    graph = graphs.class_class_graph(graphs.filter_class_graph(tags, *selection))
    shared = sum(m.T.astype(int) @ m.astype(int) for m in (tags.tag_matrix(n, *selection) for n in tags.layers))
    assert graph.number_of_nodes() == len(ANIMALS)
    for a in range(len(ANIMALS)):
        for b in range(a + 1, len(ANIMALS)):
            weight = graph.edges[graphs.class_node(a), graphs.class_node(b)]["weight"] if graph.has_edge(
                graphs.class_node(a), graphs.class_node(b)) else 0
            assert weight == shared[a, b]
    # the SPARQL question "which classes share filters with cat" has the same answer
    rows = queries.run("similar-classes", store, {"class": "cat", "run": run_iri(tags)}).values()
    cat = graphs.class_node(ANIMALS.index("cat"))
    assert {r["label"]: r["sharedFilters"] for r in rows if r["selection"] == "q-quantile 25"} == {
        graph.nodes[n]["label"]: d["weight"] for n, d in graph[cat].items()}


def test_graphml_round_trip(tags: TagSet, tmp_path) -> None:
    graph = graphs.filter_class_graph(tags, K_BEST, 1)
    path = tmp_path / "fc.graphml"
    graphs.write_graphml(graph, path)
    back = nx.read_graphml(path)
    assert dict(back.nodes(data=True)) == dict(graph.nodes(data=True))
    assert _edges(back) == _edges(graph)
    projected = graphs.class_class_graph(graph)
    graphs.write_graphml(projected, tmp_path / "cc.graphml")
    back = nx.read_graphml(tmp_path / "cc.graphml")
    assert dict(back.nodes(data=True)) == dict(projected.nodes(data=True))
    assert _edges(back) == _edges(projected) and projected.number_of_edges() > 0
    assert {k: back.graph[k] for k in projected.graph} == projected.graph


def test_graphml_leaves_out_missing_values(tmp_path) -> None:
    graph = nx.Graph()
    graph.add_edge("a", "b", score=None, rank=1)
    graphs.write_graphml(graph, tmp_path / "g.graphml")
    assert dict(nx.read_graphml(tmp_path / "g.graphml").edges["a", "b"]) == {"rank": 1}
    assert graph.edges["a", "b"]["score"] is None  # the caller's graph is unchanged


def test_bad_requests_are_user_errors(tags: TagSet, store: Store) -> None:
    with pytest.raises(UserError, match="k-best 1, k-best 3, q-quantile 25"):
        graphs.filter_class_graph(tags)
    with pytest.raises(UserError, match="unknown layer dense"):
        graphs.filter_class_graph(tags, K_BEST, 1, layers=["dense"])
    with pytest.raises(UserError, match="unknown selection method"):
        graphs.store_filter_class_graph(store, run_iri(tags), "top", 1)
    with pytest.raises(UserError, match="no tags of run"):
        graphs.store_filter_class_graph(store, run_iri(tags), K_BEST, 7)
    for bad in (-1, 0, math.nan, math.inf):  # named as the selection, not as the query's --param parameter
        with pytest.raises(UserError, match=f"^k-best {bad}: a selection's k or q is a number above 0$"):
            graphs.store_filter_class_graph(store, run_iri(tags), K_BEST, bad)
    single = tags.select(K_BEST, 1)
    assert graphs.filter_class_graph(single).number_of_edges() == len(single) > 0


def test_graphml_refuses_what_xml_cannot_hold_and_a_selection_is_named_as_asked(
    tmp_path: Path, store: Store, tags: TagSet,
) -> None:
    """networkx writes a control character of a class label as it is, into GraphML that no XML reader (its
    own included) reads: refused by name, nothing written. A selection not in the store is named as asked
    (q-quantile 25.0000001 read 'q-quantile 25', which the run has)."""
    graph = nx.Graph()
    graph.add_node("class:0", label="form\x0cfeed", index=0)
    with pytest.raises(UserError, match=r"'form\\x0cfeed' \(of 'class:0'\) holds a character XML 1.0 does not allow"):
        graphs.write_graphml(graph, tmp_path / "g.graphml")
    assert not (tmp_path / "g.graphml").exists()
    graph.nodes["class:0"]["label"] = "tab\tand new\nline"  # XML holds these
    graphs.write_graphml(graph, tmp_path / "g.graphml")
    assert nx.read_graphml(tmp_path / "g.graphml").nodes["class:0"]["label"] == "tab\tand new\nline"
    with pytest.raises(UserError, match="with q-quantile 25.0000001 in the store"):
        graphs.store_filter_class_graph(store, run_iri(tags), Q_QUANTILE, 25.0000001)


def test_tags_without_scores_give_the_same_graph_by_both_routes(tmp_path: Path) -> None:
    """An imported FilTag file has no scores (NaN): its TagSet's graph had score NaN on every edge (and
    GraphML 'nan'), the store route none, so the two routes gave different graphs of one run."""
    from filtag_kg.imagenet import parse_filtag_file

    path = tmp_path / "tags.txt"
    path.write_text("filter tags k=1\n0:[' zebra ', ' crane ', ' crane ']\n1:[]\n2:[' tench ']\n")
    tags, _ = parse_filtag_file(path, model="TinyNet", layer="conv")
    store = Store()
    store.extend(export_tags(tags))
    from_tags = graphs.filter_class_graph(tags)
    from_store = graphs.store_filter_class_graph(store, run_iri(tags), K_BEST, 1)
    assert dict(from_store.nodes(data=True)) == dict(from_tags.nodes(data=True))
    assert _edges(from_tags) == _edges(from_store) and len(_edges(from_tags)) == 4
    assert all(d == {"score": None, "rank": 1} for d in _edges(from_tags).values())
    graphs.write_graphml(from_tags, tmp_path / "g.graphml")
    assert "nan" not in (tmp_path / "g.graphml").read_text()


def test_a_layer_without_tags_is_an_error_by_both_routes(tmp_path: Path) -> None:
    """The in-memory route gave an empty graph for a layer `tag --layer` left untagged, the store
    route a UserError: both say so now."""
    import filtag_kg
    from filtag_kg.kg.store import Store as FiltagStore
    from test_export import synthetic_stats

    stats = synthetic_stats(seed=1)
    tagged, untagged = stats.layers[0], stats.layers[1]
    some = filtag_kg.tag(stats, k=1, layers=[tagged])
    with pytest.raises(UserError, match=f"no tags with k-best 1 in layer\\(s\\) {untagged}; tagged layers: {tagged}"):
        graphs.filter_class_graph(some, K_BEST, 1, layers=[untagged])
    with FiltagStore(tmp_path / "store") as store:
        store.load(export_tags(some))
        with pytest.raises(UserError, match=f"no tags of run .* in layer '{untagged}'"):
            graphs.store_filter_class_graph(store, run_iri(some), K_BEST, 1, untagged)


def test_graphml_is_written_whole_or_not_at_all(tags: TagSet, tmp_path: Path) -> None:
    """networkx opens the file before it builds the XML: an error on the way (here a value GraphML has
    no type for; as well Ctrl-C in a big class-class graph) left the file written before empty."""
    path = tmp_path / "g.graphml"
    graphs.write_graphml(graphs.filter_class_graph(tags, K_BEST, 1), path)
    before = path.read_bytes()
    broken = nx.Graph()
    broken.add_node("a", tags=["not", "a", "GraphML value"])
    with pytest.raises(nx.NetworkXError):
        graphs.write_graphml(broken, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["g.graphml"]
    assert graphs.write_graphml(graphs.filter_class_graph(tags, K_BEST, 1), Path("/dev/null")) is None


def test_the_store_route_names_the_layers_with_tags_and_writing_names_a_missing_folder(
    tags: TagSet, store: Store, tmp_path: Path,
) -> None:
    """`graph --layer conv9` (a typo) said 'no tags of run … in layer 'conv9' in the store' and named no
    layer it has; a GraphML file in a missing folder was 'No such file or directory', as if of the file."""
    with pytest.raises(UserError, match=r"with k-best 1 in layer 'conv9'; layers with such tags: "
                                        r"conv2d, conv2d_1, conv2d_2$"):
        graphs.store_filter_class_graph(store, run_iri(tags), K_BEST, 1, "conv9")
    graph = graphs.filter_class_graph(tags, K_BEST, 1)
    missing = tmp_path / "missing"
    with pytest.raises(UserError, match=f"^cannot write {missing / 'g.graphml'}: the folder {missing} does not exist$"):
        graphs.write_graphml(graph, missing / "g.graphml")
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match=f"the folder {tmp_path / 'file'} is not a folder$"):
        graphs.write_graphml(graph, tmp_path / "file" / "g.graphml")
    assert not missing.exists() and (tmp_path / "file").read_text() == ""
