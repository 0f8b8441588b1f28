"""The tags as networkx graphs, for analysis outside SPARQL (centrality, communities, GraphML tools).

* filter–class graph: bipartite, one node per filter (`bipartite=0`) and per class (`bipartite=1`),
  an edge where the filter carries the class as a tag (attributes `score`, `rank`);
  Classes labelled by an ImageNet-1k wnid (a folder of wnid sub-folders) also carry their common
  `name` ('German shepherd'), for tools that show one attribute per node;
* class–class graph: classes joined by the number of filters they share (`weight`), the projection
  of the filter–class graph onto its classes: which classes the network sees as alike.

Both come from a TagSet in memory or from a store (one run's selection, via the bundled
`selection-tags` query), with the same node ids, so the two routes give equal graphs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import networkx as nx
import numpy as np
from pyoxigraph import NamedNode

from ..errors import UserError
from ..imagenet import imagenet_index
from ..records import METHODS, TagSet, selection_label, write_output
from . import queries
from .export import METHOD_NODES, NOT_XML, network_title, run_ids
from .vocab import Minter


class Edge(NamedTuple):
    """One tag as an edge: filter `index` of `layer` (nno:hasLayerSequence `sequence`) → class."""

    layer: str
    sequence: int | None
    index: int
    class_index: int
    class_label: str
    score: float | None
    rank: int


def filter_node(layer: str, index: int) -> str:
    """Node id of a filter: `layer#index`."""
    return f"{layer}#{index}"


def class_node(class_index: int) -> str:
    """Node id of a class: `class:index` (labels are not unique, e.g. ImageNet's two `crane`s)."""
    return f"class:{class_index}"


def filter_class_graph(
    tags: TagSet, method: str | None = None, parameter: float | None = None,
    layers: str | Sequence[str] | None = None,
) -> nx.Graph:
    """The bipartite filter–class graph of one selection of a TagSet (the only one if not named), of
    `layers` (names; one string is one layer; default all). Its graph attributes name the run and
    network as the store route does (their IRIs under the default base).

    Like the store route, it holds the filters that carry a tag (untagged filters are not nodes).
    """
    method, parameter = _selection(tags, method, parameter)
    one = tags.select(method, parameter)
    sequence = {  # as in the export: 1-based position in the network, where the manifest has it
        str(e["name"]): int(e["index"]) + 1
        for e in (tags.manifest.get("model") or {}).get("layers") or [] if e.get("index") is not None
    }
    wanted = _check_layers(layers, tags.layers)
    edges = [
        Edge(t.layer, sequence.get(t.layer), t.filter, t.class_index, t.class_name, t.score, t.rank)
        for t in one if t.layer in wanted
    ]
    if not edges:  # as the store route says (an untagged layer gave an empty graph here)
        raise UserError(f"no tags with {selection_label(method, parameter)} in layer(s) {', '.join(wanted)}; "
                        f"tagged layers: {', '.join(tags.tagged_layers)}")
    graph = _build(edges, method, parameter)
    ids, minter = run_ids(tags), Minter()  # as the store route names them, under the default base
    graph.graph.update(run=minter.run(ids.tagging).value, network=minter.network(ids.model).value,
                       network_title=network_title(tags))
    return graph


def store_filter_class_graph(
    store: Any, run: str | NamedNode, method: str, parameter: float, layer: str | None = None,
) -> nx.Graph:
    """The filter–class graph of one run's selection in a store (`run`: its IRI), of one `layer`
    (its name; default all). Its graph attributes name the run and its network (`run`, `network`,
    `network_title`), which GraphML keeps."""
    if method not in METHOD_NODES:
        raise UserError(f"unknown selection method {method!r}; methods: {', '.join(METHODS)}")
    _check_parameter(parameter)
    if not (math.isfinite(parameter) and parameter > 0):  # the query's refusal named its `--param parameter`
        raise UserError(f"{selection_label(method, parameter)}: a selection's k or q is a number above 0")
    params: dict[str, object] = {"run": run, "method": METHOD_NODES[method], "parameter": parameter}
    if layer is not None:
        if not isinstance(layer, str):  # ['conv5'] was looked up as the layer named "['conv5']"
            raise UserError(f"layer must be one layer's name, got {layer!r}")
        params["layer"] = layer
    rows = queries.run("selection-tags", store, params).values()
    if not rows and layer is not None:  # name the layers that have tags, as the TagSet route does
        tagged = {r["layer"]: r["sequence"] for r in
                  queries.run("selection-tags", store, {k: v for k, v in params.items() if k != "layer"}).values()}
        if tagged:
            listed = ", ".join(sorted(tagged, key=lambda m: (tagged[m] is None, tagged[m] or 0, m)))
            raise UserError(f"no tags of run {run} with {selection_label(method, parameter)} in layer {layer!r}; "
                            f"layers with such tags: {listed}")
    if not rows:
        where = f" in layer {layer!r}" if layer is not None else ""
        raise UserError(f"no tags of run {run} with {selection_label(method, parameter)}{where} in the store "
                        "(`filtag-kg query runs` lists the runs and their selections)")
    edges = (
        Edge(r["layer"], r["sequence"], int(r["filter"]), int(r["classIndex"]), r["class"], r["score"], int(r["rank"]))
        for r in rows
    )
    graph = _build(edges, method, parameter)
    # which run and network the graph is of: node ids (`conv1#3`, `class:0`) are the same for every
    # network with such layers, so two runs' graphs (and GraphML files) could not be told apart
    graph.graph.update(_provenance(store, run))
    return graph


def _provenance(store: Any, run: str | NamedNode) -> dict[str, str]:
    """The run's IRI, its network's IRI and title (as `query runs` lists them), for the graph's attributes."""
    iri = run.value if isinstance(run, NamedNode) else str(run)
    found: dict[str, str] = {"run": iri}
    for r in queries.run("runs", store, {}).values():
        if r["run"] == iri:
            found["network"] = str(r["network"])
            if r.get("title") is not None:
                found["network_title"] = str(r["title"])
            break
    return found


def class_class_graph(filter_class: nx.Graph) -> nx.Graph:
    """Classes joined by the number of filters tagged with both (`weight`); unconnected classes stay."""
    if not isinstance(filter_class, nx.Graph) or filter_class.graph.get("kind", "filter-class") != "filter-class":
        # a TagSet failed with an AttributeError, a class-class graph with networkx's "not a valid bipartite partition"
        kind = filter_class.graph.get("kind") if isinstance(filter_class, nx.Graph) else None
        raise UserError(f"class_class_graph projects a filter-class graph (from filter_class_graph or "
                        f"store_filter_class_graph), got {f'a {kind} graph' if kind else type(filter_class).__name__}")
    classes = [n for n, kind in filter_class.nodes(data="kind") if kind == "class"]
    graph = nx.bipartite.weighted_projected_graph(filter_class, classes)
    graph.graph.update(filter_class.graph, kind="class-class")
    return graph


def write_graphml(graph: nx.Graph, path: str | os.PathLike[str]) -> None:
    """Write a graph as GraphML (attributes with None values are left out: GraphML has no null), the
    whole file or nothing (networkx opens the file before it builds the XML, so an error or Ctrl-C on
    the way left an existing file empty).

    A text that XML cannot hold (control characters such as U+0007 in a class label) is refused by
    name: networkx writes it as it is, into a file no XML reader, networkx's own included, reads."""
    if not isinstance(graph, nx.Graph):  # None failed with "'NoneType' object has no attribute 'copy'"
        raise UserError(f"write_graphml writes a networkx graph, got {type(graph).__name__}")
    folder = Path(path).parent
    if not folder.is_dir():  # said as 'cannot write …: No such file or directory', as if of the file itself
        problem = "is not a folder" if folder.exists() else "does not exist"
        raise UserError(f"cannot write {os.fspath(path)}: the folder {folder} {problem}")
    clean = graph.copy()
    items = [*clean.nodes(data=True), *(((a, b), data) for a, b, data in clean.edges(data=True))]
    for where, data in items:
        for key in [k for k, v in data.items() if v is None]:
            del data[key]
        for text in (where if isinstance(where, tuple) else (where,)) + tuple(data.values()):
            if isinstance(text, str) and NOT_XML.search(text):
                raise UserError(f"cannot write {os.fspath(path)} as GraphML: {text!r} (of {where!r}) holds a "
                                "character XML 1.0 does not allow")
    write_output(Path(path), lambda f: nx.write_graphml(clean, f))


def _build(edges: Iterable[Edge], method: str, parameter: float) -> nx.Graph:
    graph = nx.Graph(kind="filter-class", method=method, parameter=float(parameter))
    index = imagenet_index()
    for e in edges:
        f, c = filter_node(e.layer, e.index), class_node(e.class_index)
        graph.add_node(f, bipartite=0, kind="filter", layer=e.layer, index=e.index, sequence=e.sequence)
        if c not in graph:  # each class once (it has an edge per filter tagged with it)
            name = index.name_of_wnid(e.class_label)  # no None attribute: GraphML has no null, a round trip dropped it
            graph.add_node(c, bipartite=1, kind="class", label=e.class_label, index=e.class_index,
                           **({"name": name} if name is not None else {}))
        # no score (a tag file imported without scores: NaN) is None, as the store route reads it
        score = None if e.score is None or math.isnan(e.score) else float(e.score)
        graph.add_edge(f, c, score=score, rank=e.rank)
    return graph


def _check_parameter(parameter: object) -> None:
    """Refuse a k or q that is no number: '1' was taken by the TagSet route (float('1')) and failed
    with a TypeError in the store route; True was read as 1 in one and blamed on `--param` in the other."""
    if isinstance(parameter, (bool, np.bool_)) or not isinstance(parameter, (int, float, np.integer, np.floating)):
        raise UserError(f"parameter (the selection's k or q) must be a number, got {parameter!r}")


def _selection(tags: TagSet, method: str | None, parameter: float | None) -> tuple[str, float]:
    if not isinstance(tags, TagSet):
        raise UserError(f"tags must be a filtag_kg.TagSet, got {type(tags).__name__}")
    if method is None and parameter is None and len(tags.selections) == 1:
        return tags.selections[0]
    if parameter is not None:
        _check_parameter(parameter)
    for m, p in tags.selections:
        if m == method and parameter is not None and float(p) == float(parameter):
            return m, p
    have = ", ".join(selection_label(m, p) for m, p in tags.selections)
    if method is not None and parameter is not None:  # 'k-best 7' was told to 'name one selection', as if none was
        raise UserError(f"{method} {parameter:g} is not a selection of this tag set; it has: {have}")
    raise UserError(f"name one selection of this tag set (method and parameter); it has: {have}")


def _check_layers(layers: str | Sequence[str] | None, known: Sequence[str]) -> list[str]:
    """The layers asked for (one string is one layer: 'conv5' was read as the layers c, o, n, v, 5)."""
    if layers is None:
        return list(known)
    if isinstance(layers, str):
        layers = [layers]
    names = list(layers) if isinstance(layers, Iterable) else None
    if names is None or not all(isinstance(m, str) for m in names):
        raise UserError(f"layers must be a layer name or a list of them, got {layers!r}")
    if not names:  # said "no tags with k-best 1 in layer(s) ; tagged layers: …"
        raise UserError(f"layers is empty: name one layer or more, or leave it out for all; layers: {', '.join(known)}")
    layers = names
    unknown = [m for m in layers if m not in known]
    if unknown:
        raise UserError(f"unknown layer {', '.join(unknown)}; layers: {', '.join(known)}")
    return list(layers)
