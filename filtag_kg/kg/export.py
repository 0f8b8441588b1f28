"""Export of a tagging run (a TagSet) as RDF: the network (NNO, FAIRnets style), its filters, the
classes, the tags and their provenance, streamed as `pyoxigraph.Quad`s; and writers for the usual
RDF formats, JSON-LD with the bundled @context.

IRIs come from `Minter` and stable keys only, so exporting the same run twice gives the same graph.
A run's quads go to three named graphs (see `export_graphs`): the network description (shared by
all runs of that network), the label space (shared by all runs on that class list) and the run
itself (its data set, provenance and tags). Reloading any of them replaces it with identical content.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO, Any

import numpy as np
from pyoxigraph import DefaultGraph, Literal, NamedNode, Quad, RdfFormat, Triple, serialize

from ..errors import UserError, is_whole
from ..models import CONV_TYPES
from ..records import K_BEST, Q_QUANTILE, TagSet, selection_label, write_output
from .vocab import (
    DCAT, DCTERMS, FT, NNO, PREFIXES, PROV, RDF, RDFS, SKOS, XSD, Minter, as_minter, class_keys, layer_keys,
    minter_of_run, stable_hash,
)

# Keras layer classes the NNO ontology has a class of the same name for (checked against NNO's
# published class list); other layers are typed nno:Layer and keep their Keras name in ft:kerasClass.
NNO_LAYER_CLASSES = frozenset({
    "Activation", "ActivityRegularization", "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
    "BatchNormalization", "Conv1D", "Conv2D", "Conv2DTranspose", "Conv3D", "Conv3DTranspose", "ConvLSTM2D",
    "Cropping1D", "Cropping2D", "Cropping3D", "Dense", "DepthwiseConv2D", "Dropout", "Embedding", "Flatten",
    "GRU", "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D", "GlobalMaxPooling1D",
    "GlobalMaxPooling2D", "GlobalMaxPooling3D", "InputLayer", "LSTM", "Lambda", "LocallyConnected1D",
    "LocallyConnected2D", "Masking", "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "Permute", "RepeatVector",
    "Reshape", "SeparableConv1D", "SeparableConv2D", "SimpleRNN", "SpatialDropout1D", "SpatialDropout2D",
    "SpatialDropout3D", "UpSampling1D", "UpSampling2D", "UpSampling3D", "ZeroPadding1D", "ZeroPadding2D",
    "ZeroPadding3D",
})

# format name or file extension -> pyoxigraph format; "jsonld" is written by `_write_jsonld`
FORMATS: dict[str, RdfFormat | str] = {
    "turtle": RdfFormat.TURTLE, "ttl": RdfFormat.TURTLE,
    "ntriples": RdfFormat.N_TRIPLES, "n-triples": RdfFormat.N_TRIPLES, "nt": RdfFormat.N_TRIPLES,
    "nquads": RdfFormat.N_QUADS, "n-quads": RdfFormat.N_QUADS, "nq": RdfFormat.N_QUADS,
    "trig": RdfFormat.TRIG,
    "rdfxml": RdfFormat.RDF_XML, "rdf/xml": RdfFormat.RDF_XML, "rdf": RdfFormat.RDF_XML, "xml": RdfFormat.RDF_XML,
    "owl": RdfFormat.RDF_XML,
    "jsonld": "jsonld", "json-ld": "jsonld",
}
MEDIA_TYPES = {
    RdfFormat.TURTLE: "text/turtle", RdfFormat.N_TRIPLES: "application/n-triples",
    RdfFormat.N_QUADS: "application/n-quads", RdfFormat.TRIG: "application/trig",
    RdfFormat.RDF_XML: "application/rdf+xml", "jsonld": "application/ld+json",
}


def _n(iri: str) -> NamedNode:
    return NamedNode(iri)


A = _n(RDF + "type")
LABEL = _n(RDFS + "label")
COMMENT = _n(RDFS + "comment")
XSD_DECIMAL = _n(XSD + "decimal")
XSD_DATETIME = _n(XSD + "dateTime")
METHOD_NODES = {K_BEST: _n(FT + "KBest"), Q_QUANTILE: _n(FT + "QQuantile")}


class P:
    """The predicates and classes of the export, built once."""

    ft_Filter = _n(FT + "Filter")
    ft_Tag = _n(FT + "Tag")
    ft_ImageClass = _n(FT + "ImageClass")
    ft_TaggingRun = _n(FT + "TaggingRun")
    ft_CollectionRun = _n(FT + "CollectionRun")
    ft_modelHash = _n(FT + "modelHash")
    ft_kerasClass = _n(FT + "kerasClass")
    ft_filterCount = _n(FT + "filterCount")
    ft_kernelSize = _n(FT + "kernelSize")
    ft_parameterCount = _n(FT + "parameterCount")
    ft_activationFunction = _n(FT + "activationFunction")
    ft_hasFilter = _n(FT + "hasFilter")
    ft_ofLayer = _n(FT + "ofLayer")
    ft_filterIndex = _n(FT + "filterIndex")
    ft_classIndex = _n(FT + "classIndex")
    ft_wnid = _n(FT + "wnid")
    ft_labelSpace = _n(FT + "labelSpace")
    ft_filter = _n(FT + "filter")
    ft_class = _n(FT + "class")
    ft_score = _n(FT + "score")
    ft_rank = _n(FT + "rank")
    ft_method = _n(FT + "method")
    ft_k = _n(FT + "k")
    ft_q = _n(FT + "q")
    ft_split = _n(FT + "split")
    ft_splitFraction = _n(FT + "splitFraction")
    ft_seed = _n(FT + "seed")
    ft_imageCount = _n(FT + "imageCount")
    ft_preprocessing = _n(FT + "preprocessing")
    ft_selection = _n(FT + "selection")
    ft_softwareVersion = _n(FT + "softwareVersion")
    # index and summary nodes (see `_summaries`)
    ft_Selection = _n(FT + "Selection")
    ft_LayerSummary = _n(FT + "LayerSummary")
    ft_ClassSummary = _n(FT + "ClassSummary")
    ft_ClassSimilarity = _n(FT + "ClassSimilarity")
    ft_ofRun = _n(FT + "ofRun")
    ft_selectionParameter = _n(FT + "selectionParameter")
    ft_inLayerSummary = _n(FT + "inLayerSummary")
    ft_hasLayerSummary = _n(FT + "hasLayerSummary")
    ft_hasClassSummary = _n(FT + "hasClassSummary")
    ft_hasSimilarity = _n(FT + "hasSimilarity")
    ft_similarClass = _n(FT + "similarClass")
    ft_sharedFilterCount = _n(FT + "sharedFilterCount")
    ft_similarityRank = _n(FT + "similarityRank")
    ft_filterTagSignature = _n(FT + "filterTagSignature")
    ft_summaryOf = _n(FT + "summaryOf")
    ft_selectedTagCount = _n(FT + "selectedTagCount")
    ft_taggedFilterCount = _n(FT + "taggedFilterCount")
    ft_taggedClassCount = _n(FT + "taggedClassCount")
    ft_classSpecificFilterCount = _n(FT + "classSpecificFilterCount")
    ft_classSpecificTag = _n(FT + "classSpecificTag")
    ft_meanTagsPerFilter = _n(FT + "meanTagsPerFilter")
    ft_meanScore = _n(FT + "meanScore")
    ft_maxScore = _n(FT + "maxScore")
    nno_NeuralNetwork = _n(NNO + "NeuralNetwork")
    nno_Model = _n(NNO + "Model")
    nno_Layer = _n(NNO + "Layer")
    nno_hasModel = _n(NNO + "hasModel")
    nno_hasLayer = _n(NNO + "hasLayer")
    nno_hasLayerSequence = _n(NNO + "hasLayerSequence")
    nno_usedFramework = _n(NNO + "usedFramework")
    used, generated_by = _n(PROV + "used"), _n(PROV + "wasGeneratedBy")
    informed_by, ended = _n(PROV + "wasInformedBy"), _n(PROV + "endedAtTime")
    title, source = _n(DCTERMS + "title"), _n(DCTERMS + "source")
    dataset = _n(DCAT + "Dataset")
    scheme, concept = _n(SKOS + "ConceptScheme"), _n(SKOS + "Concept")
    in_scheme, pref_label = _n(SKOS + "inScheme"), _n(SKOS + "prefLabel")


@dataclass(frozen=True)
class ExportGraphs:
    """The named graphs one run's export writes to."""

    network: NamedNode  # the network's NNO description, shared by its runs
    classes: NamedNode  # the label space and its classes, shared by runs on it
    run: NamedNode  # the data set, provenance and tags of this run

    def __iter__(self) -> Iterator[NamedNode]:
        return iter((self.network, self.classes, self.run))


@dataclass(frozen=True)
class RunIds:
    """Stable ids of an export: the network (`model`), the collection run and the tagging run."""

    model: str
    collection: str
    tagging: str


def run_iri(tags: TagSet, minter: Minter | str | None = None) -> str:
    """The IRI of a TagSet's tagging run (under `minter`'s base, by default the default base)."""
    return as_minter(minter).run(run_ids(tags).tagging).value


def network_title(tags: TagSet) -> str:
    """The title of a TagSet's network in the graph: its model's name."""
    return str((tags.manifest.get("model") or {}).get("name") or "unnamed network")


def run_ids(tags: TagSet) -> RunIds:
    """The ids of a TagSet's network and runs, from its manifest, selections and tag content only.

    The model id is the first 16 hex digits of the manifest's model hash (architecture + weights),
    or, without one, a hash of the layer names and filter counts.
    """
    check_tag_set(tags)
    manifest = tags.manifest
    model = manifest.get("model") or {}
    model_hash = str(model.get("hash") or "")
    model_id = model_hash[:16] if model_hash else stable_hash(
        "architecture", json.dumps([[m, tags.n_filters[m]] for m in tags.layers]))
    collection = stable_hash(
        "collection", model_id, _canonical(manifest.get("dataset")), _canonical(manifest.get("split")),
        str(manifest.get("created") or ""), _canonical(manifest.get("source_file")),
    )
    content = hashlib.sha256()
    for column in (tags.layer_index, tags.filter_index, tags.class_index, tags.rank, tags.selection_index):
        content.update(np.ascontiguousarray(column).tobytes())
    tagging = stable_hash(
        "tagging", collection, _canonical(tags.selections), _canonical(tags.layers), _canonical(tags.classes),
        content.hexdigest(),
    )
    return RunIds(model_id, collection, tagging)


def label_space(tags: TagSet) -> str:
    """The label space of a TagSet's classes (manifest dataset.label_space, else the data set name)."""
    dataset = tags.manifest.get("dataset") or {}
    return str(dataset.get("label_space") or dataset.get("name") or "classes")


def export_graphs(tags: TagSet, minter: Minter | str | None = None) -> ExportGraphs:
    """The named graphs `export_tags` writes this TagSet to."""
    minter = as_minter(minter)
    ids = run_ids(tags)
    return ExportGraphs(
        network=minter.run_graph(ids.model, "network"),
        classes=minter.classes_graph(label_space(tags)),
        run=minter.run_graph(ids.tagging, "tags"),
    )


def check_label_space(store: Any, tags: TagSet, minter: Minter | str | None = None) -> None:
    """Refuse a tag set whose label space the store (embedded or remote) holds with other classes:
    loading it would replace the classes graph that other runs share, and change their answers.
    (Data sets named alike, e.g. two folders called 'train', get label spaces of their own from
    their class lists, see `filtag_kg.data`; this catches tag sets of a name given twice.)"""
    _check_classes(store, export_graphs(tags, minter).classes, label_space(tags),
                   {str(i): label for i, label in enumerate(tags.classes)}, "tag set")


def _check_classes(store: Any, graph: NamedNode, space: str, ours: dict[str, str], what: str) -> None:
    """`check_label_space` for the classes `ours` (index → label) of label space `space`, whose graph
    is `graph`; `what` is being loaded."""
    held = dict(store.rows(f"SELECT ?index ?label WHERE {{ GRAPH <{graph.value}> {{ "
                           f"?class <{FT}classIndex> ?index ; <{RDFS}label> ?label }} }}"))
    if held and held != ours:
        differ = next((f"class {i}: {held.get(str(i))!r} in the store, {ours.get(str(i))!r} here"
                       for i in range(max(len(held), len(ours))) if held.get(str(i)) != ours.get(str(i))))
        raise UserError(f"the store holds the label space {space!r} with other classes ({differ}); "
                        f"loading this {what} would change the classes of the runs there. Give its data set a "
                        "label space of its own (the manifest's dataset.label_space) and load it again")


def export_in_graphs(triples: Callable[[], Iterable[Triple]], source: str, into: Any = None) -> Iterator[Quad]:
    """The triples of one tag set's export written in a triple format (Turtle, N-Triples, RDF/XML,
    which hold no graph names) in the named graphs `export_graphs` gave them: the network's, the label
    space's and the run's. Loaded into one graph of its own instead, the export repeated the network
    and classes that other runs' graphs describe (the union held them twice, and another version of
    them beside). `triples` is called twice: a first pass finds the run, network and label space.
    `source` names the file in errors; `into`: the store they go to, which must not hold the label
    space with other classes (`check_label_space`)."""
    runs, networks, models, spaces, labels, indices = set(), set(), set(), set(), {}, {}
    for t in triples():
        if t.predicate == A and t.object in (P.ft_TaggingRun, P.nno_NeuralNetwork):
            (runs if t.object == P.ft_TaggingRun else networks).add(t.subject)
        elif t.predicate == P.nno_hasModel:
            models.add(t.object)
        elif t.predicate == P.ft_labelSpace:
            spaces.add(t.object)
        elif t.predicate == LABEL and isinstance(t.object, Literal):
            labels[t.subject] = t.object.value
        elif t.predicate == P.ft_classIndex and isinstance(t.object, Literal):
            indices[t.subject] = t.object.value
    found = {"tagging run": runs, "network": networks, "model": models, "label space": spaces}
    wrong = [f"{len(nodes)} {what}{'s' * (len(nodes) != 1)}" for what, nodes in found.items() if len(nodes) != 1]
    if wrong or next(iter(spaces)) not in labels:
        why = ", ".join(wrong) if wrong else "a label space without rdfs:label"
        raise UserError(f"{source}: not the export of one tag set ({why}); load it into a graph of its own (--graph)")
    (run,), (network,), (model,), (space,) = runs, networks, models, spaces
    if not all(isinstance(node, NamedNode) for node in (run, network, model, space)):
        raise UserError(f"{source}: its run, network, model or label space is a blank node, not an export's IRI")
    minter = minter_of_run(run.value)
    network_graph = minter.run_graph(network.value.rsplit("/", 1)[-1], "network")
    classes_graph = minter.classes_graph(labels[space])
    run_graph = minter.run_graph(run.value.rsplit("/", 1)[-1], "tags")
    if into is not None:
        classes = {index: labels.get(node) for node, index in indices.items()
                   if node.value.startswith(space.value + "/")}
        _check_classes(into, classes_graph, labels[space], classes, f"file {source}")
    for t in triples():
        subject = t.subject.value if isinstance(t.subject, NamedNode) else ""
        if t.subject in (network, model) or subject.startswith(model.value + "/"):  # layers and filters
            yield Quad(t.subject, t.predicate, t.object, network_graph)
        elif t.subject == space or subject.startswith(space.value + "/"):  # classes
            yield Quad(t.subject, t.predicate, t.object, classes_graph)
        else:
            yield Quad(t.subject, t.predicate, t.object, run_graph)


SIMILAR_CLASSES = 20  # classes per class summary, most shared filters first
SIGNATURE_INDEX_LIMIT = 2**16  # filter indices a tag signature holds (its low 16 bits)


def export_tags(
    tags: TagSet, minter: Minter | str | None = None, progress: bool = False, similar_classes: int = SIMILAR_CLASSES,
) -> Iterator[Quad]:
    """Stream the RDF of one tagging run: network, label space, provenance, then one tag at a time.

    Nothing but small lookup tables (one node per filter and class) is kept in memory, so a full
    VGG16 tagging streams without a second copy of the TagSet. `similar_classes`: how many of the
    classes sharing most filters with a class each class summary lists (see `_summaries`).
    """
    check_tag_set(tags)
    # 2.5 and '3' failed with a TypeError deep in the summaries, True counted as 1
    if not is_whole(similar_classes) or similar_classes < 0:
        raise UserError(f"similar_classes must be a whole number, 0 or more, got {similar_classes!r}")
    similar_classes = int(similar_classes)
    minter = as_minter(minter)
    ids = run_ids(tags)
    graphs = export_graphs(tags, minter)
    space = label_space(tags)
    layers = tag_layer_keys(tags)
    filters = yield from _network(tags, minter, ids.model, layers, graphs.network)
    keys = tag_class_keys(tags)
    classes = yield from _classes(tags, minter, space, keys, graphs.classes)
    run = yield from _provenance(tags, minter, ids, space, graphs.run)
    yield from _summaries(tags, minter, ids, layers, keys, classes, run, graphs.run, similar_classes)
    yield from _tag_quads(tags, minter, ids.tagging, layers, keys, filters, classes, run, graphs.run, progress)


def check_tag_set(tags: object) -> None:
    """Refuse what is no TagSet by name: a folder's path or an ActivationStats failed with an
    AttributeError (in `run_iri`, `run_ids`, `export_graphs` and `coarsen.link_wordnet` too)."""
    if not isinstance(tags, TagSet):
        raise UserError(f"tags must be a filtag_kg.TagSet (TagSet.load reads a folder), got {type(tags).__name__}")


def _network(tags: TagSet, minter: Minter, model_id: str, layers: Mapping[str, str], g: NamedNode) -> Iterator[Quad]:
    """The FAIRnets-style description: network, model, layers in sequence, the filters of every conv
    layer the manifest describes and of every tagged layer.

    The graph is shared by all runs of the network and each load replaces it, so it must not depend
    on which layers a run tagged: filters of tagged layers only would drop the filters of another
    run's layers (a second FilTag file of VGG16, or a collection of other layers, emptied the first
    run's answers). Returns {(layer index in tags.layers, filter index): filter node} for the tag quads.
    """
    manifest_model = tags.manifest.get("model") or {}
    network, model = minter.network(model_id), minter.model(model_id)
    yield Quad(network, A, P.nno_NeuralNetwork, g)
    yield Quad(network, P.title, Literal(network_title(tags)), g)
    yield Quad(network, P.nno_hasModel, model, g)
    if manifest_model.get("hash"):
        yield Quad(network, P.ft_modelHash, Literal(str(manifest_model["hash"])), g)
    source = str(manifest_model.get("source") or "")
    if source and not _local_path(source):
        yield Quad(network, P.source, Literal(source), g)
    if (tags.manifest.get("software") or {}).get("keras"):  # the framework; its version is the run's
        # (ft:softwareVersion): with it here, two collections under two Keras versions gave the network
        # graph that all runs of the network share two contents, each load replacing the other's
        yield Quad(network, P.nno_usedFramework, Literal("Keras"), g)
    yield Quad(model, A, P.nno_Model, g)

    described = {str(e["name"]): e for e in manifest_model.get("layers") or []}
    for name in tags.layers:  # tagged layers the manifest does not describe
        described.setdefault(name, {"name": name, "type": None, "index": None, "filters": tags.n_filters[name]})
    for name in described:
        yield Quad(model, P.nno_hasLayer, minter.layer(model_id, layers[name]), g)
    filters: dict[tuple[int, int], NamedNode] = {}
    for entry in described.values():
        name = str(entry["name"])
        layer = minter.layer(model_id, layers[name])
        yield from _layer(entry, layer, g)
        conv = entry.get("type") in CONV_TYPES and entry.get("filters") is not None
        count = tags.n_filters.get(name, int(entry["filters"]) if conv else 0)
        li = tags.layers.index(name) if name in tags.layers else None
        for i in range(count):
            node = minter.filter(model_id, layers[name], i)
            if li is not None:
                filters[li, i] = node
            yield Quad(layer, P.ft_hasFilter, node, g)
            yield Quad(node, A, P.ft_Filter, g)
            yield Quad(node, P.ft_filterIndex, Literal(i), g)
            yield Quad(node, P.ft_ofLayer, layer, g)
            yield Quad(node, LABEL, Literal(f"{name}#{i}"), g)
    return filters


def _local_path(source: str) -> bool:
    """Whether a model's source is an absolute file path (a saved model, the default model's cache file), which
    the network graph leaves out: it names a file on one machine only (and its user's home folder),
    and made the graph that all runs of the network share differ by where the model file lay, so that
    loading a run from another cache folder replaced it with other content. The network is
    identified by ft:modelHash; sources such as 'keras.applications:VGG16 (weights=imagenet)' stay."""
    return PurePosixPath(source).is_absolute() or PureWindowsPath(source).is_absolute()


def _layer(entry: Mapping[str, Any], layer: NamedNode, g: NamedNode) -> Iterator[Quad]:
    """One layer: its NNO class, name, position (1-based, as NNO counts) and size."""
    keras_class = entry.get("type")
    nno_class = _n(NNO + keras_class) if keras_class in NNO_LAYER_CLASSES else P.nno_Layer
    yield Quad(layer, A, nno_class, g)
    yield Quad(layer, LABEL, Literal(str(entry["name"])), g)
    if keras_class:
        yield Quad(layer, P.ft_kerasClass, Literal(str(keras_class)), g)
    if entry.get("index") is not None:
        yield Quad(layer, P.nno_hasLayerSequence, Literal(int(entry["index"]) + 1), g)
    if entry.get("filters") is not None:
        yield Quad(layer, P.ft_filterCount, Literal(int(entry["filters"])), g)
    kernel = entry.get("kernel_size")
    if kernel:
        yield Quad(layer, P.ft_kernelSize, Literal("x".join(str(int(k)) for k in kernel)), g)
    if entry.get("params") is not None:
        yield Quad(layer, P.ft_parameterCount, Literal(int(entry["params"])), g)
    if entry.get("activation"):
        yield Quad(layer, P.ft_activationFunction, Literal(str(entry["activation"])), g)


def tag_layer_keys(tags: TagSet) -> dict[str, str]:
    """The IRI keys of the layers of a TagSet's network (`vocab.layer_keys` over every layer its
    manifest describes and every tagged layer)."""
    described = [str(e["name"]) for e in (tags.manifest.get("model") or {}).get("layers") or []]
    return layer_keys([*described, *tags.layers])


def tag_class_keys(tags: TagSet) -> list[str]:
    """The IRI keys of a TagSet's classes (`vocab.class_keys`, with the manifest's wnids)."""
    return class_keys(tags.classes, (tags.manifest.get("dataset") or {}).get("wnids"))


def tag_class_iris(tags: TagSet, minter: Minter | str | None = None) -> list[NamedNode]:
    """The IRIs of a TagSet's classes, by class index, in its label space."""
    minter, space = as_minter(minter), label_space(tags)
    return [minter.image_class(space, key) for key in tag_class_keys(tags)]


def _classes(tags: TagSet, minter: Minter, space: str, keys: list[str], g: NamedNode) -> Iterator[Quad]:
    """The label space (skos:ConceptScheme) and one ft:ImageClass per class. (Not the data set: data
    sets of other names share a label space, ImageNet's train and val folders and an imported FilTag
    file, and each load replaces this graph; `_provenance` describes it.)"""
    dataset_info = tags.manifest.get("dataset") or {}
    scheme = minter.label_space(space)
    yield Quad(scheme, A, P.scheme, g)
    yield Quad(scheme, LABEL, Literal(space), g)
    wnids = dataset_info.get("wnids")
    nodes: list[NamedNode] = []
    for c, label in enumerate(tags.classes):
        node = minter.image_class(space, keys[c])
        nodes.append(node)
        yield Quad(node, A, P.ft_ImageClass, g)
        yield Quad(node, A, P.concept, g)
        yield Quad(node, LABEL, Literal(label), g)
        yield Quad(node, P.pref_label, Literal(label), g)
        yield Quad(node, P.ft_classIndex, Literal(c), g)
        if wnids and c < len(wnids) and wnids[c]:
            yield Quad(node, P.ft_wnid, Literal(str(wnids[c])), g)
        yield Quad(node, P.in_scheme, scheme, g)
    return nodes


def _provenance(tags: TagSet, minter: Minter, ids: RunIds, space: str, g: NamedNode) -> Iterator[Quad]:
    """The data set, the collection run (when the manifest records one) and the tagging run, with parameters."""
    manifest = tags.manifest
    network = minter.network(ids.model)
    dataset_info = manifest.get("dataset") or {}
    split = manifest.get("split") or {}
    dataset = minter.dataset(str(dataset_info["name"])) if dataset_info.get("name") else None
    software = [f"{name} {version}" for name, version in sorted((manifest.get("software") or {}).items()) if version]
    n_images = manifest.get("n_images")
    preprocessing = (manifest.get("model") or {}).get("preprocess")  # chosen for a saved model (collect --preprocess)

    def inputs(run: NamedNode) -> Iterator[Quad]:
        yield Quad(run, P.used, network, g)
        if dataset is not None:
            yield Quad(run, P.used, dataset, g)
        name = split.get("name") or ("train" if "train" in (split.get("collected") or []) else None)  # z's split
        if name:
            yield Quad(run, P.ft_split, Literal(str(name)), g)
        if split.get("fraction") is not None:
            yield Quad(run, P.ft_splitFraction, _decimal(split["fraction"]), g)
        if split.get("seed") is not None:
            yield Quad(run, P.ft_seed, Literal(int(split["seed"])), g)
        if n_images is not None:
            yield Quad(run, P.ft_imageCount, Literal(int(n_images)), g)
        if preprocessing:
            yield Quad(run, P.ft_preprocessing, Literal(str(preprocessing)), g)

    if dataset is not None:  # in the run's graph: the label-space graph other data sets' runs replace
        yield Quad(dataset, A, P.dataset, g)
        yield Quad(dataset, P.title, Literal(str(dataset_info["name"])), g)
    run = minter.run(ids.tagging)
    yield Quad(run, A, P.ft_TaggingRun, g)
    yield Quad(run, LABEL, Literal(f"tagging run {ids.tagging}"), g)
    yield from inputs(run)
    yield Quad(run, P.ft_labelSpace, minter.label_space(space), g)
    for method, parameter in tags.selections:
        yield Quad(run, P.ft_selection, Literal(selection_label(method, parameter)), g)
    for entry in software:
        yield Quad(run, P.ft_softwareVersion, Literal(entry), g)
    source = manifest.get("source_file")
    if source:
        yield Quad(run, COMMENT, Literal(f"Imported from {source.get('name')} (sha256 {source.get('sha256')})"), g)
    if manifest.get("created"):
        collection = minter.run(ids.collection)
        yield Quad(run, P.informed_by, collection, g)
        yield Quad(collection, A, P.ft_CollectionRun, g)
        yield Quad(collection, LABEL, Literal(f"collection run {ids.collection}"), g)
        yield from inputs(collection)
        yield Quad(collection, P.ended, _datetime(str(manifest["created"])), g)
        for entry in software:
            yield Quad(collection, P.ft_softwareVersion, Literal(entry), g)
    return run


def _summaries(
    tags: TagSet, minter: Minter, ids: RunIds, layers: Mapping[str, str], keys: list[str], classes: list[NamedNode],
    run: NamedNode, g: NamedNode, similar_classes: int,
) -> Iterator[Quad]:
    """Index and summary nodes computed from the TagSet, so that aggregate queries are look-ups.

    Per selection an ft:Selection (method, k or q, its run, its tag count). Per selection and layer
    with tags an ft:LayerSummary, which each of its tags links to with ft:inLayerSummary (so one
    layer's tags are read without the others'): tags, tagged filters,
    classes, class-specific filters and their tags, mean tags per filter, mean and max score, and
    one ft:filterTagSignature per tagged filter (`tag_signature`), so that two selections, runs or
    models are compared filter by filter without reading tags. Per selection
    and class with tags an ft:ClassSummary: its tagged filters and the `similar_classes` classes
    that share most filters with it (ft:ClassSimilarity, ranked). The selection links to its summaries
    (ft:hasLayerSummary, ft:hasClassSummary), so reaching them never passes through its tags.
    """
    n_classes = max(len(tags.classes), 1)
    for name in tags.layers:
        if tags.n_filters[name] > SIGNATURE_INDEX_LIMIT:
            raise UserError(f"layer {name} has {tags.n_filters[name]:,} filters; the export's filter tag "
                            f"signatures hold at most {SIGNATURE_INDEX_LIMIT:,} per layer")
    offsets = np.cumsum([0] + [tags.n_filters[name] for name in tags.layers])
    for si, (method, parameter) in enumerate(tags.selections):
        node = minter.selection(ids.tagging, method, parameter)
        in_selection = tags.selection_index == si
        yield Quad(node, A, P.ft_Selection, g)
        yield Quad(node, LABEL, Literal(selection_label(method, parameter)), g)
        yield Quad(node, P.ft_ofRun, run, g)
        yield Quad(node, P.ft_method, METHOD_NODES[method], g)
        yield Quad(node, *_parameter_term(method, parameter), g)
        # one predicate and datatype for k and q: queries bind it without ?p patterns or value filters
        yield Quad(node, P.ft_selectionParameter, _decimal(parameter), g)
        yield Quad(node, P.ft_selectedTagCount, Literal(int(in_selection.sum())), g)
        for li, name in enumerate(tags.layers):
            keep = np.flatnonzero(in_selection & (tags.layer_index == li))
            if not len(keep):
                continue
            fi, ci, scores = tags.filter_index[keep], tags.class_index[keep], tags.score[keep]
            per_filter = np.bincount(fi, minlength=tags.n_filters[name])
            specific = np.flatnonzero(per_filter[fi] == 1)  # positions in keep of the filters' only tags
            summary = minter.layer_summary(ids.tagging, method, parameter, layers[name])
            yield Quad(summary, A, P.ft_LayerSummary, g)
            yield Quad(node, P.ft_hasLayerSummary, summary, g)
            yield Quad(summary, P.ft_summaryOf, minter.layer(ids.model, layers[name]), g)
            yield Quad(summary, P.ft_selectedTagCount, Literal(len(keep)), g)
            yield Quad(summary, P.ft_taggedFilterCount, Literal(int((per_filter > 0).sum())), g)
            yield Quad(summary, P.ft_taggedClassCount,
                       Literal(int((np.bincount(ci, minlength=n_classes) > 0).sum())), g)
            yield Quad(summary, P.ft_classSpecificFilterCount, Literal(len(specific)), g)
            yield Quad(summary, P.ft_meanTagsPerFilter, _double(len(keep) / tags.n_filters[name]), g)
            scored = scores[~np.isnan(scores)]
            if len(scored):
                yield Quad(summary, P.ft_meanScore, _double(float(scored.mean())), g)
                yield Quad(summary, P.ft_maxScore, _double(float(scored.max())), g)
            for f, c in zip(fi[specific].tolist(), ci[specific].tolist()):
                tag = minter.tag(ids.tagging, layers[name], f, keys[c], method, parameter)
                yield Quad(summary, P.ft_classSpecificTag, tag, g)
            order = np.lexsort((ci, fi))
            fi, ci = fi[order], ci[order]
            starts = np.flatnonzero(np.r_[True, fi[1:] != fi[:-1]])
            for f, members in zip(fi[starts].tolist(), np.split(ci, starts[1:])):
                signature = tag_signature(f, [classes[c].value for c in members.tolist()])
                yield Quad(summary, P.ft_filterTagSignature, Literal(signature), g)
        keep = np.flatnonzero(in_selection)
        rows = offsets[tags.layer_index[keep]] + tags.filter_index[keep]
        summaries = [minter.class_summary(ids.tagging, method, parameter, key) for key in keys]
        yield from _class_summaries(minter, node, summaries, rows, tags.class_index[keep], int(offsets[-1]),
                                    classes, similar_classes, g)


def tag_signature(index: int, class_iris: Iterable[str]) -> int:
    """The identity of one filter's tag set in a selection, an integer below 2^63 (kept inline by
    Oxigraph): 2^16 × the first 47 bits of SHA-256 over the sorted class IRIs + the filter index.
    Two layer summaries (of one run, two runs, or two models) give a filter the same classes exactly
    when both have its signature (up to a 2^-47 chance of a hash collision per pair); the index is
    the signature modulo 65,536 (`SIGNATURE_INDEX_LIMIT`), which the index must be below."""
    digest = hashlib.sha256("\n".join(sorted(class_iris)).encode()).digest()
    return (int.from_bytes(digest[:8], "big") >> 17) * SIGNATURE_INDEX_LIMIT + int(index)


def _class_summaries(
    minter: Minter, selection: NamedNode, summaries: list[NamedNode], rows: np.ndarray, class_index: np.ndarray,
    n_rows: int, classes: list[NamedNode], similar_classes: int, g: NamedNode, block: int = 256,
) -> Iterator[Quad]:
    """Per class with tags in the selection: its tagged filters and the classes sharing most filters.

    Shared filters of classes a and b = the filters tagged with both: MᵀM of the filter × class
    incidence matrix M (float32, exact for counts below 2^24), `block` rows of it at a time.
    The similar classes are ranked by shared filters (descending), ties by class index.
    """
    n_classes = len(classes)
    incidence = np.zeros((n_rows, n_classes), np.float32)
    incidence[rows, class_index] = 1.0
    tagged = incidence.sum(axis=0)
    for first in range(0, n_classes, block):
        shared = np.rint(incidence[:, first:first + block].T @ incidence).astype(np.int64)
        for c in range(first, min(first + block, n_classes)):
            if not tagged[c]:
                continue
            row = shared[c - first]
            row[c] = 0
            candidates = np.flatnonzero(row)
            ranked = candidates[np.lexsort((candidates, -row[candidates]))][:similar_classes]
            summary = summaries[c]
            yield Quad(summary, A, P.ft_ClassSummary, g)
            yield Quad(selection, P.ft_hasClassSummary, summary, g)
            yield Quad(summary, P.ft_summaryOf, classes[c], g)
            yield Quad(summary, P.ft_taggedFilterCount, Literal(int(tagged[c])), g)
            for rank, other in enumerate(ranked.tolist(), start=1):
                similarity = minter.class_similarity(summary, rank)
                yield Quad(summary, P.ft_hasSimilarity, similarity, g)
                yield Quad(similarity, A, P.ft_ClassSimilarity, g)
                yield Quad(similarity, P.ft_similarClass, classes[other], g)
                yield Quad(similarity, P.ft_sharedFilterCount, Literal(int(row[other])), g)
                yield Quad(similarity, P.ft_similarityRank, Literal(rank), g)


def _tag_quads(
    tags: TagSet, minter: Minter, run_id: str, layers: Mapping[str, str], keys: list[str],
    filters: Mapping[tuple[int, int], NamedNode], classes: list[NamedNode], run: NamedNode, g: NamedNode, progress: bool,
) -> Iterator[Quad]:
    from tqdm import tqdm

    selection_quads = [(METHOD_NODES[m], *_parameter_term(m, p)) for m, p in tags.selections]
    layer_of = [layers[name] for name in tags.layers]
    summaries = [[minter.layer_summary(run_id, m, p, layer) for layer in layer_of] for m, p in tags.selections]
    columns = zip(tags.layer_index.tolist(), tags.filter_index.tolist(), tags.class_index.tolist(),
                  tags.score.tolist(), tags.rank.tolist(), tags.selection_index.tolist())
    for li, fi, ci, score, rank, si in tqdm(columns, total=len(tags), disable=not progress, desc="export",
                                            unit="tag", mininterval=1.0):
        method, parameter = tags.selections[si]
        node = minter.tag(run_id, layer_of[li], fi, keys[ci], method, parameter)
        method_node, parameter_predicate, parameter_value = selection_quads[si]
        yield Quad(node, A, P.ft_Tag, g)
        yield Quad(node, P.ft_filter, filters[li, fi], g)
        yield Quad(node, P.ft_class, classes[ci], g)
        if not math.isnan(score):
            yield Quad(node, P.ft_score, _double(score), g)
        yield Quad(node, P.ft_rank, Literal(rank), g)
        yield Quad(node, P.ft_method, method_node, g)
        yield Quad(node, parameter_predicate, parameter_value, g)
        yield Quad(node, P.generated_by, run, g)
        yield Quad(node, P.ft_inLayerSummary, summaries[si][li], g)


def _double(x: float) -> Literal:
    """An xsd:double literal in the lexical form Oxigraph stores it in (1.0 -> "1", 1e-05 -> "0.00001",
    inf -> "INF"), as `_decimal` does for decimals: an export then holds the very terms that a store
    loaded from it holds, and the file `export` writes and the one `publish` writes from the store are
    the same graph (Python's repr, "1.0" and "1e-05", were other terms of the same values)."""
    return Literal(float(x))


def _datetime(text: str) -> Literal:
    """An xsd:dateTime literal, UTC written "Z" (the XSD canonical form, which Oxigraph stores:
    "+00:00" was another term than the store's, as `_double` says)."""
    return Literal(text[:-len("+00:00")] + "Z" if text.endswith("+00:00") else text, datatype=XSD_DATETIME)


def _parameter_term(method: str, parameter: float) -> tuple[NamedNode, Literal]:
    """(ft:k, integer) for k-best, (ft:q, decimal) for q-quantile: how tags and selections state their parameter."""
    return (P.ft_k, Literal(int(parameter))) if method == K_BEST else (P.ft_q, _decimal(parameter))


def _decimal(x: float) -> Literal:
    """An xsd:decimal in the form Oxigraph stores and the query runner binds (5 -> "5", 0.5 -> "0.5",
    no exponent), so that triple patterns match on stores that compare literals by their text."""
    return Literal(f"{Decimal(repr(float(x))).normalize():f}", datatype=XSD_DECIMAL)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


# -- writing ------------------------------------------------------------------------------------

def rdf_format(format: str | RdfFormat | None, path: str | os.PathLike[str] | None = None) -> RdfFormat | str:
    """The format for a name ("turtle", "nq", "jsonld", …), a `pyoxigraph.RdfFormat` this module
    writes (RdfFormat.JSON_LD is "jsonld": written with the bundled @context) or, without either,
    a file's extension. (An RdfFormat failed with an AttributeError, in `write` too.)"""
    if isinstance(format, RdfFormat):
        if format == RdfFormat.JSON_LD:
            return "jsonld"
        if format not in MEDIA_TYPES:
            raise UserError(f"RDF format {format} is not one filtag-kg writes; "
                            f"use one of: {', '.join(sorted(FORMATS))}")
        return format
    if format is not None and not isinstance(format, str):
        raise UserError(f"an RDF format is a name such as 'turtle' or a pyoxigraph.RdfFormat, got {format!r}")
    name = format
    if name is None and path is not None:
        suffix = Path(path).suffix.lstrip(".").lower()
        name = suffix or None
    if name is None:
        raise UserError("no RDF format given and none can be told from the file name; "
                        f"use one of: {', '.join(sorted(FORMATS))}")
    try:
        return FORMATS[name.lower()]
    except KeyError:
        raise UserError(f"unknown RDF format {name!r}; use one of: {', '.join(sorted(FORMATS))}") from None


def media_type(format: RdfFormat | str) -> str:
    """The IANA media type of a format returned by `rdf_format`, of a format's name ("ttl", "nq"; an
    unknown name is a UserError listing the names, where it was a bare KeyError) or of an RdfFormat
    this module writes (RdfFormat.JSON_LD was refused as "not an RDF format")."""
    return MEDIA_TYPES[rdf_format(format)]


def jsonld_context() -> dict[str, Any]:
    """The published JSON-LD @context (ontology/context.jsonld) as a dict."""
    text = (resources.files("filtag_kg.ontology") / "context.jsonld").read_text(encoding="utf-8")
    return json.loads(text)["@context"]


def write(
    quads: Iterable[Quad | Triple], path_or_file: str | os.PathLike[str] | IO[bytes],
    format: str | RdfFormat | None = None, *, context: str | None = None,
) -> int:
    """Write quads (or triples, as quads of the default graph) as RDF, streaming; return the number
    of statements written.

    Triple formats (Turtle, N-Triples, RDF/XML) drop graph names; N-Quads, TriG and JSON-LD keep
    them. JSON-LD embeds the bundled @context, or refers to `context` when given (its URL).
    Anything else among the quads is a TypeError naming it, and a file given by path is then left
    as it was.
    """
    is_path = isinstance(path_or_file, (str, os.PathLike))
    if isinstance(path_or_file, io.TextIOBase):  # failed once writing began: "string argument expected, got 'bytes'"
        raise UserError("RDF is written as bytes: give a file opened in binary mode ('wb'), a BytesIO or a path, "
                        f"not the text stream {getattr(path_or_file, 'name', type(path_or_file).__name__)!r}")
    fmt = rdf_format(format, path_or_file if is_path else None)
    counted = _Counter(quads)
    if not is_path:
        _serialize(counted, path_or_file, fmt, context)
        return counted.n
    write_output(Path(path_or_file), lambda f: _serialize(counted, f, fmt, context))
    return counted.n


def _serialize(quads: Iterable[Quad], out: IO[bytes], fmt: RdfFormat | str, context: str | None) -> None:
    """Stream the quads into a binary stream in one format."""
    if fmt == "jsonld":
        _write_jsonld(quads, out, context)
        return
    assert isinstance(fmt, RdfFormat)
    items: Iterable[Any] = quads if fmt.supports_datasets else (q.triple for q in quads)
    if fmt == RdfFormat.RDF_XML:
        items = _xml_safe(items)
        out = _CarriageReturnsEscaped(out)
    prefixes = None if fmt in (RdfFormat.N_TRIPLES, RdfFormat.N_QUADS) else dict(PREFIXES)
    serialize(items, out, fmt, prefixes=prefixes)


# characters XML 1.0 has no place for, not even as character references
NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_safe(triples: Iterable[Any]) -> Iterator[Any]:
    """The triples, refusing by name a literal XML cannot hold (a control character such as U+0007 in
    a class label): pyoxigraph writes it as it is, into RDF/XML that no XML parser reads."""
    for t in triples:
        if isinstance(t.object, Literal) and NOT_XML.search(t.object.value):
            raise UserError(f"cannot write RDF/XML: {t.object.value!r} (of {t.subject} {t.predicate}) "
                            "holds a character XML 1.0 does not allow; write Turtle, N-Triples or JSON-LD instead")
        yield t


class _CarriageReturnsEscaped:
    """A binary stream writing RDF/XML with each carriage return as the reference &#13;. pyoxigraph
    writes it as it is, and XML parsers read line ends as line feeds (a literal 'a\\r\\nb' came back
    as 'a\\nb'); RDF/XML holds a carriage return nowhere but in literal text (its layout uses line
    feeds and tabs, IRIs cannot hold one), where the reference stands for it."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out

    def write(self, data: bytes) -> int:
        self.out.write(bytes(data).replace(b"\r", b"&#13;"))
        return len(data)

    def flush(self) -> None:
        self.out.flush()


class _Counter:
    """The quads of an iterable of quads or triples (a triple as a quad of the default graph),
    counted as they pass. Triples failed with an AttributeError (in Turtle: 'Triple' object has no
    attribute 'triple'), and so did a single Quad, which iterates over its terms."""

    def __init__(self, items: Iterable[Quad | Triple]) -> None:
        self.items, self.n = items, 0

    def __iter__(self) -> Iterator[Quad]:
        for item in self.items:
            if not isinstance(item, Quad):
                if not isinstance(item, Triple):
                    raise TypeError(f"write takes an iterable of pyoxigraph Quads or Triples; item {self.n + 1} "
                                    f"is a {type(item).__name__}: {item!r:.80}")
                item = Quad(item.subject, item.predicate, item.object)
            self.n += 1
            yield item


def _write_jsonld(quads: Iterable[Quad], out: IO[bytes], context: str | None) -> None:
    """Streaming JSON-LD: one node object per run of quads with the same graph and subject.

    Property keys and types are compacted with the context's prefixes; literal values keep their
    lexical form and datatype (`@value`/`@type`), so a round trip gives back the same quads.
    """
    ctx = jsonld_context()
    prefixes = sorted(((v, k) for k, v in ctx.items() if isinstance(v, str) and v.endswith(("/", "#"))),
                      key=lambda p: -len(p[0]))

    def compact(iri: str) -> str:
        for ns, prefix in prefixes:
            if iri.startswith(ns) and len(iri) > len(ns):
                local = iri[len(ns):]
                if "/" not in local and "#" not in local:
                    return f"{prefix}:{local}"
        return iri

    def term(o: Any) -> Any:
        if isinstance(o, NamedNode):
            return {"@id": o.value}
        if isinstance(o, Literal):
            if o.language:
                return {"@value": o.value, "@language": o.language}
            if o.datatype.value == XSD + "string":
                return o.value
            return {"@value": o.value, "@type": compact(o.datatype.value)}
        return {"@id": str(o)}  # blank node: _:id

    text = io.TextIOWrapper(out, encoding="utf-8", newline="\n", write_through=True)
    text.write('{"@context": ' + json.dumps(context if context else ctx, indent=1) + ',\n "@graph": [')
    open_graph: str | None = None  # the named graph whose "@graph" array is open
    started = False  # a graph has been seen
    first_top, first_inner = True, True
    node: dict[str, Any] | None = None

    def flush() -> None:
        nonlocal first_top, first_inner
        if node is None:
            return
        if open_graph is None:
            text.write(("\n " if first_top else ",\n ") + json.dumps(node, ensure_ascii=False))
            first_top = False
        else:
            text.write(("\n  " if first_inner else ",\n  ") + json.dumps(node, ensure_ascii=False))
            first_inner = False

    for q in quads:
        # a blank node graph is named "_:id" (it was written into the default graph)
        g = None if isinstance(q.graph_name, DefaultGraph) else term(q.graph_name)["@id"]
        subject = q.subject.value if isinstance(q.subject, NamedNode) else str(q.subject)
        if not started or g != open_graph:
            flush()
            node = None
            if open_graph is not None:
                text.write("\n ]}")
            if g is not None:
                text.write(("\n " if first_top else ",\n ") + '{"@id": ' + json.dumps(g) + ', "@graph": [')
                first_top, first_inner = False, True
            open_graph, started = g, True
        if node is None or node["@id"] != subject:
            flush()
            node = {"@id": subject}
        predicate = q.predicate.value
        if predicate == RDF + "type" and isinstance(q.object, NamedNode):
            node.setdefault("@type", []).append(compact(q.object.value))
        else:
            node.setdefault(compact(predicate), []).append(term(q.object))
    flush()
    if open_graph is not None:
        text.write("\n ]}")
    text.write("\n]}\n")
    text.detach()


# -- validation ----------------------------------------------------------------------------------

def bundled_path(name: str) -> Path:
    """Path of a bundled ontology file (filtag.ttl, shapes.ttl, context.jsonld)."""
    return Path(str(resources.files("filtag_kg.ontology") / name))


def validate(quads: Iterable[Quad]) -> tuple[bool, str]:
    """SHACL-validate an export (the union of its graphs) against ontology/shapes.ttl.

    Returns (conforms, report text). Loads the data into memory: meant for tests and for checking
    exports of moderate size.
    """
    import pyshacl
    import rdflib

    data = rdflib.Graph()
    data.parse(data=serialize((q.triple for q in quads), format=RdfFormat.N_TRIPLES), format="nt")
    shapes = rdflib.Graph().parse(bundled_path("shapes.ttl"), format="turtle")
    ontology = rdflib.Graph().parse(bundled_path("filtag.ttl"), format="turtle")
    conforms, _, text = pyshacl.validate(data, shacl_graph=shapes, ont_graph=ontology, inference="none",
                                         allow_warnings=True)
    return bool(conforms), str(text)
