"""Coarsening: the WordNet concept that best summarises a filter's tags, its coverage and coherence.

For a filter with tag classes linked to synsets S (n of them):
  * `all`: the most specific synset that is a hypernym (or the synset itself) of every synset in S —
    the lowest common hypernym, by depth = NLTK's max_depth (longest path to `entity`);
  * `share`: the most specific synset that covers at least ⌈share·n⌉ of S (default share 2/3), so one
    odd tag does not push the summary up to `entity`;
  ties go to the higher coverage, then the lower WordNet offset (deterministic).
  * coherence: the mean pairwise Wu–Palmer similarity of S (NLTK's wup_similarity; 1 for one synset,
    NaN for none; over a seeded sample of MAX_PAIRS pairs when S has more).
A concept is "specific" when it is not one of the generic top nouns (`GENERIC_NOUNS`: entity,
physical entity, abstraction, object, whole, living thing, organism, artifact, matter, causal agent).

Everything works on a TagSet without a store; `coarsening_quads` writes the result as scored links
from filter to concept (ft:CoarseConcept nodes) into the run's "wordnet" named graph.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import combinations
from typing import TYPE_CHECKING, Any

import numpy as np
from pyoxigraph import Literal, NamedNode, Quad, Triple
from tqdm import tqdm

from ..errors import UserError
from ..imagenet import imagenet_index
from ..records import K_BEST, Q_QUANTILE, TagSet, selection_label
from .explanations import OF_RUN
from .export import RunIds, check_tag_set, label_space, run_ids, tag_class_iris, tag_layer_keys
from .vocab import FT, RDF, Minter, as_minter, class_keys, minter_of_run
from .wordnet import LinkReport, WordNet, closure, link_classes, offset_of_iri, synset_iri, synset_quads, wordnet_quads

if TYPE_CHECKING:
    from nltk.corpus.reader.wordnet import Synset

DEFAULT_SHARE = 2 / 3
MAX_PAIRS = 500  # coherence is exact up to 32 distinct synsets, a sampled mean above


@dataclass(frozen=True)
class Concept:
    """A coarse concept of a filter: the synset, how many of the filter's synsets it covers, its depth."""

    synset: Synset
    covered: int
    total: int
    depth: int

    @property
    def coverage(self) -> float:
        return self.covered / self.total


@dataclass
class FilterConcepts:
    """The coarsening of one filter's tags."""

    filter: int
    classes: list[int]  # the tag classes
    synsets: list[Synset]  # their distinct linked synsets
    all: Concept | None  # covers every synset
    share: Concept | None  # most specific covering ≥ the share
    coherence: float


@dataclass
class LayerConcepts:
    """The coarsening of all filters of one layer for one tag selection, with its summary counts."""

    layer: str
    selection: tuple[str, float]
    share: float
    filters: list[FilterConcepts]
    generic: frozenset[Synset]

    def specific(self, concept: Concept | None) -> bool:
        return concept is not None and concept.synset not in self.generic

    def counts(self) -> dict[str, int]:
        """Filters with tags (linked to WordNet or not: a filter tagged only with classes WordNet lacks
        is tagged too), with several linked tags, and multi-tag filters whose concept is specific."""
        multi = [f for f in self.filters if len(f.synsets) > 1]
        return {
            "filters": len(self.filters),
            "tagged": sum(1 for f in self.filters if f.classes),
            "multi_tag": len(multi),
            "specific_all": sum(self.specific(f.all) for f in multi),
            "specific_share": sum(self.specific(f.share) for f in multi),
        }


def coarsen_filter(wordnet: WordNet, filter_index: int, classes: list[int], synsets: Sequence[Synset],
                   share: float = DEFAULT_SHARE) -> FilterConcepts:
    """Coarsen one filter whose tag classes link to `synsets` (see the module doc for the rules)."""
    distinct = sorted(set(synsets), key=lambda s: s.offset())
    n = len(distinct)
    if not n:
        return FilterConcepts(filter_index, classes, [], None, None, math.nan)
    covered: dict[Synset, int] = defaultdict(int)
    for s in distinct:
        for a in wordnet.ancestors(s):
            covered[a] += 1

    def best(minimum: int) -> Concept:
        synset = max((a for a, c in covered.items() if c >= minimum),
                     key=lambda a: (wordnet.depth(a), covered[a], -a.offset()))
        return Concept(synset, covered[synset], n, wordnet.depth(synset))

    pairs = [(distinct[i], distinct[j]) for i, j in _pair_sample(n, filter_index)]
    coherence = sum(wordnet.wup(a, b) for a, b in pairs) / len(pairs) if pairs else 1.0
    return FilterConcepts(filter_index, classes, distinct, best(n), best(max(1, math.ceil(share * n - 1e-9))),
                          coherence)


def _pair_sample(n: int, seed: int) -> list[tuple[int, int]]:
    """The pairs (i, j), i < j < n, whose Wu–Palmer similarity makes a filter's coherence: all of them,
    or a seeded sample of MAX_PAIRS when there are more (q-quantile tags of big layers). The sample is
    the one drawn from the list of all pairs in `combinations` order, taken by index without making that
    list: a filter tagged with most of 1,000 ImageNet classes made ~500,000 pairs, and a layer's
    coarsening spent 10 s of its 11 in making and dropping such lists."""
    total = n * (n - 1) // 2
    if total <= MAX_PAIRS:
        return list(combinations(range(n), 2))
    picked = np.random.default_rng(seed).choice(total, MAX_PAIRS, replace=False)
    starts = np.concatenate([[0], np.cumsum(np.arange(n - 1, 0, -1))])  # index of the first pair of each i
    first = np.searchsorted(starts, picked, side="right") - 1
    return [(int(i), int(k - starts[i] + i + 1)) for i, k in zip(first, picked)]


def coarsen(
    tags: TagSet,
    wordnet: WordNet,
    layer: str | None = None,
    selection: tuple[str, float] | None = None,
    share: float = DEFAULT_SHARE,
    links: LinkReport | None = None,
) -> LayerConcepts:
    """Coarsen every filter of `layer` (default: the last) for `selection` (default: the first)."""
    if not 0 < share <= 1:
        raise UserError(f"share must be in (0, 1], got {share}")
    layer = layer or tags.layers[-1]
    if layer not in tags.layers:
        raise UserError(f"layer {layer!r} is not in the tag set; layers: {', '.join(tags.layers)}")
    selection = selection or tags.selections[0]
    try:  # as the tag set holds it: ['k-best', 1] (read from JSON) was refused beside its ('k-best', 1)
        selection = next(s for s in tags.selections if s == tuple(selection))
    except (StopIteration, TypeError):
        raise UserError(f"no selection {selection!r} in the tag set; have {tags.selections}") from None
    links = links or link_tags(tags, wordnet)
    synset_of = [link.synset for link in links.links]
    filters = []
    for f, classes in enumerate(tqdm(tags.filter_tags(layer, *selection), desc=f"coarsening {layer}",
                                     unit="filter", leave=False, disable=None)):
        synsets = [synset_of[c] for c in classes if synset_of[c] is not None]
        filters.append(coarsen_filter(wordnet, f, classes, synsets, share))
    return LayerConcepts(layer, selection, share, filters, wordnet.generic())


def link_tags(tags: TagSet, wordnet: WordNet, mapping: dict[str, str] | None = None) -> LinkReport:
    """Link the classes of a tag set to synsets (wnids from the manifest where there are any)."""
    wnids = (tags.manifest.get("dataset") or {}).get("wnids")
    return link_classes(tags.classes, wnids, wordnet, label_space(tags), mapping)


def share_text(share: float) -> str:
    """'all', or '≥' a share as a fraction when it is one of small terms ('≥2/3'), else as a percentage
    with the digits it needs: the default ⅔ printed as '≥67%' read as if filters with 2 of 3 tags
    under the concept did not count, which they do (and --share 0.67 leaves them out)."""
    fraction = Fraction(share).limit_denominator(12)
    if abs(float(fraction) - share) >= 1e-9:
        return f"≥{100 * share:.10g}%"
    return "all" if fraction == 1 else f"≥{fraction.numerator}/{fraction.denominator}"


def layer_summary(result: LayerConcepts) -> str:
    """One line: how many multi-tag filters get a concept more specific than the generic top nouns."""
    c = result.counts()
    method, parameter = result.selection
    pct = (lambda x: f"{100 * x / c['multi_tag']:.0f}%") if c["multi_tag"] else (lambda x: "–")
    return (
        f"{result.layer} ({selection_label(method, parameter)}): {c['tagged']} of {c['filters']} filters tagged, "
        f"{c['multi_tag']} with several tags; of these {c['specific_share']} ({pct(c['specific_share'])}) get a "
        f"concept covering {share_text(result.share)} of their tags that is more specific than the generic top nouns, "
        f"{c['specific_all']} ({pct(c['specific_all'])}) one covering all"
    )


def coarse_groups_summary(tags: TagSet, layer: str, wordnet: WordNet | None = None, limit: int = 12) -> str:
    """The coarse groups of a layer's filters as text, for the demo: filters grouped by their concept
    (covering ≥ 2/3 of their tags), specific concepts first; filters whose tags meet only at a generic
    top noun are counted on one line."""
    wordnet = wordnet or WordNet.load()
    selection = next((s for s in tags.selections if s[0] == K_BEST), tags.selections[0])
    links = link_tags(tags, wordnet)
    result = coarsen(tags, wordnet, layer, selection, links=links)
    groups: dict[Synset, list[FilterConcepts]] = defaultdict(list)
    for f in result.filters:
        if f.share is not None:
            groups[f.share.synset].append(f)
    generic = sorted(f.filter for g, members in groups.items() if g in result.generic for f in members)
    ranked = sorted(((g, m) for g, m in groups.items() if g not in result.generic),
                    key=lambda g: (-len(g[1]), -wordnet.depth(g[0]), g[0].offset()))
    lines = [f"WordNet coarse groups — {layer_summary(result)}"]
    index = imagenet_index()  # wnid labels (a folder of wnid sub-folders) by their names: 'Chihuahua', not n02085620
    shown = [index.name_of_wnid(label) or label for label in tags.classes]
    for synset, members in ranked[:limit]:
        classes = {c for f in members for c in f.classes}
        under = {c for c in classes if links.links[c].synset is not None
                 and synset in wordnet.ancestors(links.links[c].synset)}
        inside = sorted(shown[c] for c in under)
        outside = sorted(shown[c] for c in classes - under)
        names = ", ".join(inside[:8]) + (" …" if len(inside) > 8 else "")
        if outside:  # the concept covers only a share of the tags: name the others, apart
            names += f" (also tagged: {', '.join(outside[:4])}{' …' if len(outside) > 4 else ''})"
        lines.append(f"  {wordnet.name(synset)} ({synset.offset():08d}-n): filter{'s' * (len(members) > 1)} "
                     f"{', '.join(str(f.filter) for f in members)} — {names}")
    if len(ranked) > limit:
        lines.append(f"  … and {len(ranked) - limit} more groups")
    if generic:
        lines.append(f"  only a generic top noun in common: {len(generic)} filters")
    return "\n".join(lines)


def coarsening_quads(result: LayerConcepts, layer_key: str, model_id: str, run_id: str, graph: NamedNode,
                     classes: Sequence[NamedNode], minter: Minter | str | None = None) -> Iterator[Quad]:
    """Each filter's concepts as ft:CoarseConcept nodes: the filter (ft:coarsens), concept (synset IRI), coverage, the
    coverage asked for (ft:minCoverage: 1 for `all`, the share for `share`), depth, coherence and the
    tag selection they summarise; the `all` node also names the filter's tag classes (ft:tagClass), so
    that a query for the filters under a concept starts from the concept's classes and reads these,
    not every tag of those classes. `layer_key`: the layer's IRI key (`export.tag_layer_keys`);
    `classes`: the IRI of each class of the run, by index (`tag_class_iris`)."""
    minter = as_minter(minter)
    selection = selection_label(*result.selection)
    p = {n: NamedNode(FT + n) for n in ("coarsens", "concept", "coverage", "minCoverage", "coveredCount",
                                         "tagCount", "synsetDepth", "coherence", "tagSelection", "tagClass")}
    a, kind_class = NamedNode(RDF + "type"), NamedNode(FT + "CoarseConcept")
    run = minter.run(run_id)
    for f in result.filters:
        for kind, concept, wanted in (("all", f.all, 1.0), ("share", f.share, result.share)):
            if concept is None:
                continue
            node = minter.coarse_concept(run_id, layer_key, f.filter, selection, kind)
            for predicate, obj in (
                (a, kind_class),
                (p["coarsens"], minter.filter(model_id, layer_key, f.filter)),
                (p["concept"], synset_iri(concept.synset)),
                (p["coverage"], Literal(float(concept.coverage))),
                (p["minCoverage"], Literal(float(wanted))),
                (p["coveredCount"], Literal(int(concept.covered))),
                (p["tagCount"], Literal(int(concept.total))),
                (p["synsetDepth"], Literal(int(concept.depth))),
                (p["coherence"], Literal(float(f.coherence))),
                (p["tagSelection"], Literal(selection)),
                (OF_RUN, run),  # as explanations name their run: the queries read it, `upgrade` rewrites others
            ):
                yield Quad(node, predicate, obj, graph)
            if kind == "all":
                for c in f.classes:
                    yield Quad(node, p["tagClass"], classes[c], graph)


@dataclass
class WordNetLinking:
    """The result of linking a run to WordNet: its named graph, quads, class links and coarsening."""

    graph: NamedNode
    quads: list[Quad]
    links: LinkReport
    layers: list[LayerConcepts]


def link_wordnet(
    tags: TagSet,
    wordnet: WordNet | None = None,
    mapping: dict[str, str] | None = None,
    share: float = DEFAULT_SHARE,
    layers: str | Sequence[str] | None = None,
    minter: Minter | str | None = None,
    ids: RunIds | None = None,
    kept: Iterable[Triple] = (),
) -> WordNetLinking:
    """Link a run's classes to WordNet and coarsen its filters (every layer and selection by default;
    one string is one layer), as quads for the run's "wordnet" named graph (`ids`: those of a run
    read back from a store). `kept`: coarse concepts of other layers to keep in the graph
    (`other_layers_concepts`), with the SKOS description of their synsets."""
    check_tag_set(tags)
    if isinstance(layers, str):  # 'conv5' was read as the layers c, o, n, v, 5
        layers = [layers]
    wordnet = wordnet or WordNet.load()
    minter = as_minter(minter)
    ids = ids or run_ids(tags)
    graph = minter.run_graph(ids.tagging, "wordnet")
    links = link_tags(tags, wordnet, mapping)
    quads = list(wordnet_quads(links, wordnet, graph, minter))
    others = [Quad(t.subject, t.predicate, t.object, graph) for t in kept]
    if others:  # their synsets are described in the graph too, whatever the classes link to now
        described = set(closure(wordnet, (link.synset for link in links.linked)))
        concepts = [wordnet.synset("{:08d}-{}".format(*offset_of_iri(q.object.value)))
                    for q in others if q.predicate.value == FT + "concept"]
        quads += others
        quads += synset_quads(wordnet, [s for s in closure(wordnet, concepts) if s not in described], graph)
    results = []
    keys = tag_layer_keys(tags)
    classes = tag_class_iris(tags, minter)
    for layer in layers or tags.layers:
        for selection in tags.selections:
            result = coarsen(tags, wordnet, layer, selection, share, links)
            results.append(result)
            quads.extend(coarsening_quads(result, keys[layer], ids.model, ids.tagging, graph, classes, minter))
    return WordNetLinking(graph, quads, links, results)


def other_layers_concepts(store: Any, graph: NamedNode, layers: Sequence[str]) -> list[Triple]:
    """The coarse concepts a run's WordNet graph in `store` holds for filters of layers other than
    `layers`: `link wordnet --layer` coarsens only its layers and keeps these (it replaced the graph,
    so the concepts of every other layer were lost)."""
    query = f"""PREFIX ft: <{FT}>
        PREFIX rdfs: <http://www.w3.org/2000/01/rdf-schema#>
        CONSTRUCT {{ ?link ?p ?o }} WHERE {{
          GRAPH <{graph.value}> {{ ?link a ft:CoarseConcept ; ft:coarsens ?filter ; ?p ?o }}
          ?filter ft:ofLayer/rdfs:label ?layer .
          FILTER(?layer NOT IN ({", ".join(str(Literal(m)) for m in layers)}))
        }}"""
    return list(store.query(query))


_RUN_QUERY = """
PREFIX ft: <https://w3id.org/filtag-kg/ontology#>
PREFIX rdfs: <http://www.w3.org/2000/01/rdf-schema#>
PREFIX skos: <http://www.w3.org/2004/02/skos/core#>
PREFIX prov: <http://www.w3.org/ns/prov#>
PREFIX nno: <https://w3id.org/nno/ontology#>
SELECT ?run ?part ?a ?b ?c ?d ?e ?f WHERE {
  { ?run ft:labelSpace/rdfs:label ?a . BIND("space" AS ?part) }
  UNION
  { ?run ft:labelSpace ?space . ?class skos:inScheme ?space ; ft:classIndex ?a ; rdfs:label ?b .
    OPTIONAL { ?class ft:wnid ?c } BIND(STR(?class) AS ?d) BIND("class" AS ?part) }
  UNION
  { ?tag prov:wasGeneratedBy ?run ; ft:filter ?filter ; ft:class/ft:classIndex ?c ; ft:method ?d ; ?selector ?e ;
         ft:rank ?f .
    VALUES ?selector { ft:k ft:q }
    ?filter ft:filterIndex ?b ; ft:ofLayer ?layer . ?layer rdfs:label ?a .
    BIND("tag" AS ?part) }
  UNION
  { ?run prov:used/nno:hasModel/nno:hasLayer ?layer . ?layer rdfs:label ?a ; ft:filterCount ?b .
    FILTER EXISTS { ?layer ft:hasFilter ?any }
    OPTIONAL { ?layer nno:hasLayerSequence ?c } BIND(STR(?layer) AS ?d) BIND("layer" AS ?part) }
}
"""


def tags_from_store(store: Any, run: str | NamedNode) -> tuple[TagSet, RunIds]:
    """A tagging run (its IRI, a string or NamedNode) read back from a store (embedded or remote) as
    a TagSet with the ids of its IRIs (model id from its layers' IRIs, run id from the run IRI),
    so that links written for it land on the same class, filter and run nodes. Scores are NaN.
    A run whose classes are not where this version mints them (a label space named by its raw name
    before 2026-12-02) is refused: links written for it would miss its classes."""
    from . import queries

    run = run.value if isinstance(run, NamedNode) else run  # a NamedNode failed with an AttributeError
    query = queries.Query.parse("# param: run (iri): the tagging run\n" + _RUN_QUERY, "run-from-store")
    rows = queries.run(query, store, {"run": run}).values()
    space = next((r["a"] for r in rows if r["part"] == "space"), None)
    if space is None:
        raise UserError(f"no tagging run {run} with a label space in the store")
    classes = sorted({(int(r["a"]), r["b"], r["c"], r["d"]) for r in rows if r["part"] == "class"})
    labels, wnids = [label for _, label, _, _ in classes], [wnid for _, _, wnid, _ in classes]
    minter = minter_of_run(run)
    stale = next((node for (_, _, _, node), key in zip(classes, class_keys(labels, wnids))
                  if minter.image_class(space, key).value != node), None)
    if stale is not None:
        raise UserError(f"run {run}: its class <{stale}> is not where this version of filtag-kg names the classes "
                        f"of label space {space!r} ({minter.label_space(space).value}/…); load its tag set again")
    tag_rows = [r for r in rows if r["part"] == "tag"]
    tagged = {r["a"] for r in tag_rows}  # the network describes the filters of layers other runs tagged too
    layers: dict[str, tuple[int, int, str]] = {}
    for r in rows:
        if r["part"] == "layer" and r["a"] in tagged:
            layers[r["a"]] = (int(r["c"]) if r["c"] is not None else 0, int(r["b"]), r["d"])
    order = sorted(layers, key=lambda m: (layers[m][0], m))
    methods = {FT + "KBest": K_BEST, FT + "QQuantile": Q_QUANTILE}
    selections = sorted({(methods[r["d"]], float(r["e"])) for r in tag_rows})
    selections = [(m, int(p) if m == K_BEST else p) for m, p in selections]
    index = {(m, float(p)): i for i, (m, p) in enumerate(selections)}
    # the model id from a layer IRI, under the run's base (which may end with '#': no '/' before 'model')
    model = re.match(re.escape(minter.base) + r"model/([^/]+)/layer/", layers[order[0]][2]) if order else None
    run_id = run.rsplit("/", 1)[-1]
    if model is None:
        raise UserError(f"run {run} has no tags on filters of a model in the store")
    tags = TagSet(
        layers=order,
        classes=labels,
        n_filters={m: layers[m][1] for m in order},
        selections=selections,
        layer_index=np.array([order.index(r["a"]) for r in tag_rows], np.int32),
        filter_index=np.array([int(r["b"]) for r in tag_rows], np.int32),
        class_index=np.array([int(r["c"]) for r in tag_rows], np.int32),
        score=np.full(len(tag_rows), np.nan),
        rank=np.array([int(r["f"]) for r in tag_rows], np.int32),
        selection_index=np.array([index[(methods[r["d"]], float(r["e"]))] for r in tag_rows], np.int16),
        manifest={"dataset": {"label_space": space, "wnids": wnids if any(wnids) else None}},
    )
    return tags, RunIds(model.group(1), "", run_id)

