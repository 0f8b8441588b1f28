"""Explanations of held-out images as RDF, in the tagging run's `explanations` named graph.

```turtle
<image/{dataset}/{id}> a ft:Image ; dcterms:identifier "{id}" ;
    ft:trueClass <classes/…/horse> ; ft:predictedClass <classes/…/zebra> ;
    ft:confidence 0.91 ; ft:correct false .
<run/{run}/explanation/{id}/{method}/{p}> a ft:Explanation ; ft:image <image/…> ;
    ft:tagSelection "k-best 5" ; prov:wasInfluencedBy <run/{run}> ;
    ft:activatedFilter <…/filter/7>, … ;                 # the image's active filters, all layers
    ft:trueClassCount 2 ; ft:predictedClassCount 5 ;    # active filters tagged with either
    ft:trueClassRank 3 ; ft:predictedClassRank 1 ;      # their ranks (absent when count is 0)
    ft:hasClassCount <…/count/{class}> ;
    ft:classCountLimit 50 .                              # only where the limit left a counted class out
<run/{run}/explanation/{id}/{method}/{p}/count/{class}> a ft:ClassCount ;
    ft:countedClass <classes/…/zebra> ; ft:count 5 ; ft:classRank 1 .   # tags over all layers
```
An explanation has a ClassCount node for each class of rank ≤ N (`class_counts`, default 50, the
largest n of Hits@n; classes tied at a rank ≤ N all kept), and for the true and the predicted class
whenever they have a count: a node for every class with a count was ~740 per explanation at ImageNet
scale (11 M triples for 1,000 images × 3 selections). `ft:classCountLimit N` marks an explanation
whose nodes leave a counted class out; without it (older stores, explanations of no class ranked
beyond N) the nodes are every count.
Predictions belong to the run's network, so images of one data set explained by two networks carry
two predictions; queries that compare networks scope by the run (`prov:wasInfluencedBy`).
"""

from __future__ import annotations

import numbers
import os
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from itertools import chain

from pyoxigraph import Literal, NamedNode, Quad

from ..errors import UserError
from ..explain import MAX_N, Explanation, check_same_network, explain, known_selections, require_true_classes
from ..records import ActivationStats, HeldOut, TagSet, selection_label
from .export import (
    A, _double, check_label_space, export_tags, label_space, run_ids, tag_class_iris, tag_class_keys, tag_layer_keys,
)
from .vocab import DCTERMS, FT, PROV, Minter, as_minter


def _ft(name: str) -> NamedNode:
    return NamedNode(FT + name)


IMAGE, EXPLANATION, CLASS_COUNT = _ft("Image"), _ft("Explanation"), _ft("ClassCount")
TRUE, PREDICTED, CONFIDENCE, CORRECT = _ft("trueClass"), _ft("predictedClass"), _ft("confidence"), _ft("correct")
OF_IMAGE, SELECTION, ACTIVATED = _ft("image"), _ft("tagSelection"), _ft("activatedFilter")
HAS_COUNT, COUNTED, COUNT, CLASS_RANK = _ft("hasClassCount"), _ft("countedClass"), _ft("count"), _ft("classRank")
TRUE_COUNT, PREDICTED_COUNT = _ft("trueClassCount"), _ft("predictedClassCount")
TRUE_RANK, PREDICTED_RANK = _ft("trueClassRank"), _ft("predictedClassRank")
COUNT_LIMIT = _ft("classCountLimit")
# classes ranked up to this keep their ClassCount node by default: the largest n of Hits@n (explain.MAX_N)
CLASS_COUNTS = MAX_N
IDENTIFIER = NamedNode(DCTERMS + "identifier")
# an explanation's run: prov:wasInfluencedBy, whose domain and range take entities and activities alike
# (prov:wasDerivedFrom, used until 2026-12-03, runs from entity to entity: it made the run, a
# prov:Activity, a prov:Entity too, which PROV-O declares disjoint, so a reasoner found the graph inconsistent)
OF_RUN = NamedNode(PROV + "wasInfluencedBy")


def explanations_graph(tags: TagSet, minter: Minter | str | None = None) -> NamedNode:
    """The named graph holding the explanations of a tagging run."""
    return as_minter(minter).run_graph(run_ids(tags).tagging, "explanations")


def export_explanations(
    tags: TagSet, heldout: HeldOut, minter: Minter | str | None = None,
    selections: Sequence[tuple[str, float]] | None = None, dataset: Mapping[str, Any] | None = None,
    class_counts: int | None = CLASS_COUNTS,
) -> Iterator[Quad]:
    """Stream the explanations of every held-out image for each selection (default: all of the run's).
    `dataset`: the data set the images are of, as a manifest describes it (default: the one the tags
    were made on); its `images_key` is in the images' IRIs. `class_counts`: the ClassCount nodes of
    the classes ranked up to it, and of the true and predicted class (None: of every class with a
    count). Records, selections and `class_counts` are checked at the call, before any quad (an
    image's ft:confidence was yielded before a NaN in its records failed)."""
    check_class_counts(class_counts)
    explained = explain(tags, heldout, selections)  # checks the records first (check_heldout); one sort for all
    require_true_classes(heldout, "the graph (ft:trueClass, ft:correct of each explained image)")
    repeated = next((i for i, count in Counter(heldout.image_ids).items() if count > 1), None)
    if repeated is not None:  # one image node with two true classes and predictions
        raise UserError(f"image id {repeated!r} is in heldout.image_ids more than once; ids name images in the graph")
    chosen = known_selections(tags, selections or tags.selections)
    return _quads(tags, heldout, as_minter(minter), chosen, explained, dataset, class_counts)


def check_class_counts(class_counts: object) -> None:
    """Refuse a limit of ClassCount nodes other than a positive integer or None (True was rank 1)."""
    if class_counts is not None and (isinstance(class_counts, bool) or not isinstance(class_counts, numbers.Integral)
                                     or class_counts < 1):
        raise UserError(f"class_counts={class_counts!r}: give a positive integer (the classes ranked up to it keep "
                        "their ft:ClassCount nodes) or None (every class with a count)")


def _quads(tags: TagSet, heldout: HeldOut, minter: Minter, chosen: list[tuple[str, float]],
           explained: list[Explanation], dataset: Mapping[str, Any] | None,
           class_counts: int | None) -> Iterator[Quad]:
    """The quads of `export_explanations`, of records it checked (`explained`: per selection, each image)."""
    ids = run_ids(tags)
    g = explanations_graph(tags, minter)
    run = minter.run(ids.tagging)
    space = label_space(tags)
    key = images_key(dataset if dataset is not None else tags.manifest.get("dataset") or {"name": space})
    keys = tag_class_keys(tags)
    classes = tag_class_iris(tags, minter)
    layers = tag_layer_keys(tags)
    filters = {m: [minter.filter(ids.model, layers[m], i) for i in range(tags.n_filters[m])] for m in tags.layers}
    images = [minter.image(key, image_id) for image_id in heldout.image_ids]
    for i, image in enumerate(images):
        predicted = int(heldout.top_classes[i, 0])
        yield Quad(image, A, IMAGE, g)
        yield Quad(image, IDENTIFIER, Literal(heldout.image_ids[i]), g)
        yield Quad(image, TRUE, classes[int(heldout.labels[i])], g)
        yield Quad(image, PREDICTED, classes[predicted], g)
        yield Quad(image, CONFIDENCE, _double(float(heldout.top_probs[i, 0])), g)
        yield Quad(image, CORRECT, Literal(predicted == int(heldout.labels[i])), g)
    for s, (method, parameter) in enumerate(chosen):
        label = Literal(selection_label(method, parameter))
        for i, e in enumerate(explained[s * len(heldout):(s + 1) * len(heldout)]):
            node = minter.explanation(ids.tagging, heldout.image_ids[i], method, parameter)
            yield Quad(node, A, EXPLANATION, g)
            yield Quad(node, OF_IMAGE, images[i], g)
            yield Quad(node, SELECTION, label, g)
            yield Quad(node, OF_RUN, run, g)
            for m, active in e.active.items():
                for f in active:
                    yield Quad(node, ACTIVATED, filters[m][f], g)
            ranking = e.ranking()
            rank_of = {c: rank for c, _, rank in ranking}
            truth, predicted = int(heldout.labels[i]), int(heldout.top_classes[i, 0])
            yield Quad(node, TRUE_COUNT, Literal(int(e.counts[truth])), g)
            yield Quad(node, PREDICTED_COUNT, Literal(int(e.counts[predicted])), g)
            if truth in rank_of:
                yield Quad(node, TRUE_RANK, Literal(rank_of[truth]), g)
            if predicted in rank_of:
                yield Quad(node, PREDICTED_RANK, Literal(rank_of[predicted]), g)
            kept = [(c, count, rank) for c, count, rank in ranking
                    if class_counts is None or rank <= class_counts or c in (truth, predicted)]
            if len(kept) < len(ranking):
                yield Quad(node, COUNT_LIMIT, Literal(int(class_counts)), g)
            for c, count, rank in kept:
                count_node = minter.class_count(node, keys[c])
                yield Quad(node, HAS_COUNT, count_node, g)
                yield Quad(count_node, A, CLASS_COUNT, g)
                yield Quad(count_node, COUNTED, classes[c], g)
                yield Quad(count_node, COUNT, Literal(count), g)
                yield Quad(count_node, CLASS_RANK, Literal(rank), g)


def images_key(dataset: Mapping[str, Any]) -> str:
    """The key of a data set's images in their IRIs (`<image/{key}/{id}>`): its label space, which
    tells apart data sets of one name with other classes (two folders called 'train': the image
    'cat/1.jpg' of each was one node with two true classes), else its name. The data sets of one label
    space are ImageNet's, whose file names differ, or one data set split otherwise."""
    return str(dataset.get("label_space") or dataset.get("name") or "images")


def load_explanations(tags: TagSet, stats: ActivationStats, store: str | os.PathLike[str] | None = None,
                      progress: bool = False, class_counts: int | None = CLASS_COUNTS) -> int:
    """Load the tag run and its held-out explanations into the embedded store (replacing older copies;
    `progress`: bars, as a re-run of evaluate spends seconds replacing the run's graphs). The images
    are named as images of the statistics' data set, which may be another than the tags'
    (`evaluate --stats` of a collection on a test folder): an image id means another image there.
    `class_counts`: as `export_explanations`'s, checked before the store is opened."""
    from .store import Store

    check_class_counts(class_counts)
    if stats.heldout is None:
        raise UserError("no held-out records to explain (collect with a held-out split)")
    check_same_network(tags, stats)
    with Store(store) as db:
        check_label_space(db, tags)
        return db.load(chain(export_tags(tags), export_explanations(
            tags, stats.heldout, dataset=stats.manifest.get("dataset"), class_counts=class_counts)),
                       progress=progress)
