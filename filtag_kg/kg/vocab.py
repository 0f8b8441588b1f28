"""Namespaces and deterministic IRI minting: one place that says what every node is called.

IRIs of data are minted under a configurable base (default `DEFAULT_BASE`), from stable keys only
(hashes, names, indices), so exporting the same run twice gives the same graph.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from urllib.parse import quote

from pyoxigraph import NamedNode

from ..errors import UserError
from ..records import number_text

NNO = "https://w3id.org/nno/ontology#"
FT = "https://w3id.org/filtag-kg/ontology#"
PROV = "http://www.w3.org/ns/prov#"
DCTERMS = "http://purl.org/dc/terms/"
DCAT = "http://www.w3.org/ns/dcat#"
SKOS = "http://www.w3.org/2004/02/skos/core#"
SCHEMA = "https://schema.org/"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
RDFS = "http://www.w3.org/2000/01/rdf-schema#"
OWL = "http://www.w3.org/2002/07/owl#"
XSD = "http://www.w3.org/2001/XMLSchema#"
SH = "http://www.w3.org/ns/shacl#"
FOAF = "http://xmlns.com/foaf/0.1/"
WN30 = "http://wordnet-rdf.princeton.edu/wn30/"  # Princeton WordNet 3.0 RDF synsets ({offset:08d}-{pos})

PREFIXES: dict[str, str] = {
    "nno": NNO, "ft": FT, "prov": PROV, "dcterms": DCTERMS, "dcat": DCAT, "skos": SKOS,
    "schema": SCHEMA, "rdf": RDF, "rdfs": RDFS, "owl": OWL, "xsd": XSD, "foaf": FOAF, "wn": WN30,
}

DEFAULT_BASE = "https://w3id.org/filtag-kg/id/"


def iri(value: str, what: str = "IRI") -> NamedNode:
    """`value` as an IRI; a UserError naming `what` (the option or role) if it is not an absolute IRI."""
    try:
        return NamedNode(value)
    except ValueError as e:
        raise UserError(f"{what} {value!r} is not an IRI ({e})") from None


def sparql_prefixes() -> str:
    """PREFIX lines for all namespaces above, to put in front of a query."""
    return "".join(f"PREFIX {p}: <{ns}>\n" for p, ns in PREFIXES.items())


@lru_cache(maxsize=65536)
def slug(text: str) -> str:
    """A readable, IRI-safe path segment for a name (spaces and punctuation become '_')."""
    s = re.sub(r"[^A-Za-z0-9._~-]+", "_", text.strip()).strip("_")
    return s or _hashed(text)


@lru_cache(maxsize=4096)
def name_key(name: str) -> str:
    """The IRI key of a name that other runs in a store may give otherwise (a label space, a data
    set): its `slug` where that is the name itself, else the slug with a hash of the name appended
    ('my space' → 'my_space~1a2b3c4d'), so that 'my space' and another run's 'my_space' never share
    nodes or graphs (unlike `class_keys` and `layer_keys`, the other names are not at hand to hash
    only on a clash)."""
    key = slug(name)
    return key if key == name else f"{key}~{_digest(name)}"


def _hashed(text: str) -> str:
    """A path segment standing for a name that cannot be one as it is (empty, '.' or '..')."""
    return "_" + _digest(text)


def _digest(text: str) -> str:
    """8 hex digits of a name's SHA-1: what keeps apart names whose slugs are alike."""
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def class_keys(labels: Sequence[str], wnids: Sequence[str | None] | None = None) -> list[str]:
    """The IRI key of each class: its wnid where it has one, else its label. A label that `slug`
    changes (dropping what an IRI segment cannot hold readably) and whose slug another class has
    too gets a hash of itself appended, and a label given to several classes their indices, so that
    distinct classes never share an IRI ("α-helix" and "β-helix", "elephant" and "elephant 🐘")."""
    keys = [str(wnids[i]) if wnids and i < len(wnids) and wnids[i] else label for i, label in enumerate(labels)]
    clash = _slugs_alike(keys)
    per_key = Counter(keys)
    out = []
    for i, key in enumerate(keys):
        if key in clash:
            key = f"{key}~{_digest(key)}"
        out.append(f"{key}~{i}" if per_key[keys[i]] > 1 else key)
    return out


def layer_keys(names: Iterable[str]) -> dict[str, str]:
    """The IRI key of each of a model's layers (nested ones named 'outer/inner'): its `slug`, with a
    hash of the name appended where the slug changes the name and another layer's name has the same
    slug ('conv 1' and 'conv_1', a nested 'backbone/conv' and a layer 'backbone_conv'), so that
    distinct layers never share an IRI. Give it every layer of the model: its keys are then the
    same whichever layers a run tagged."""
    unique = list(dict.fromkeys(names))
    clash = _slugs_alike(unique)
    return {n: f"{slug(n)}~{_digest(n)}" if n in clash else slug(n) for n in unique}


def _slugs_alike(names: Iterable[str]) -> set[str]:
    """The names that `slug` changes and whose slug another of the (distinct) names has too: those that
    need a hash of themselves to keep an IRI of their own."""
    unique = set(names)
    per_slug = Counter(slug(n) for n in unique)
    return {n for n in unique if per_slug[slug(n)] > 1 and slug(n) != n}


class Minter:
    """Mints the IRIs of one knowledge graph under `base` (which ends with '/' or '#'). Layers are
    named by their key (`layer_keys`), classes by theirs (`class_keys`)."""

    def __init__(self, base: str = DEFAULT_BASE) -> None:
        if not base.endswith(("/", "#")):
            raise UserError(f"base IRI must end with '/' or '#': {base!r}")
        scheme = base.split(":", 1)[0]
        if scheme in PREFIXES:  # JSON-LD readers expand 'wn:data/…' with the context's prefix wn: another IRI
            raise UserError(f"base IRI {base!r}: its scheme {scheme!r} is a prefix of the export's JSON-LD "
                            f"context, which would read its IRIs back as {PREFIXES[scheme]}…; use an http(s) IRI")
        self.base = iri(base, "base IRI").value

    def _iri(self, *parts: str) -> NamedNode:
        return NamedNode(self.base + "/".join(map(_segment, parts)))

    # networks and their parts; `model_id` is the hash of architecture and weights
    def network(self, model_id: str) -> NamedNode:
        return self._iri("network", model_id)

    def model(self, model_id: str) -> NamedNode:
        return self._iri("model", model_id)

    def layer(self, model_id: str, layer: str) -> NamedNode:
        return self._iri("model", model_id, "layer", slug(layer))

    def filter(self, model_id: str, layer: str, index: int) -> NamedNode:
        return self._iri("model", model_id, "layer", slug(layer), "filter", str(int(index)))

    # classes live in a label space (a data set's class list, e.g. "imagenet1k", "animal-shape"),
    # named by its `name_key` in the IRIs of its scheme, classes, graph and images
    def label_space(self, space: str) -> NamedNode:
        return self._iri("classes", name_key(space))

    def image_class(self, space: str, key: str) -> NamedNode:
        """`key`: the wnid where there is one, else the label."""
        return self._iri("classes", name_key(space), slug(key))

    def classes_graph(self, space: str) -> NamedNode:
        """The named graph of a label space: its scheme and classes, shared by the runs on it."""
        return self.run_graph(name_key(space), "classes")

    # runs (prov:Activity) and what they generate; `run_id` is a hash of the run's inputs
    def run(self, run_id: str) -> NamedNode:
        return self._iri("run", run_id)

    def run_graph(self, run_id: str, part: str = "tags") -> NamedNode:
        """The named graph holding one run's records (`part`: tags, explanations, links …)."""
        return self._iri("graph", run_id, part)

    def tag(self, run_id: str, layer: str, index: int, key: str, method: str, parameter: float) -> NamedNode:
        return self._iri("run", run_id, "tag", slug(layer), str(int(index)), slug(key), method, number_text(parameter))

    def selection(self, run_id: str, method: str, parameter: float) -> NamedNode:
        """One selection (k-best k, q-quantile q) of a tagging run: the index node its tags link to."""
        return self._iri("run", run_id, "selection", method, number_text(parameter))

    def layer_summary(self, run_id: str, method: str, parameter: float, layer: str) -> NamedNode:
        """The summary of one selection's tags in one layer."""
        return self._iri("run", run_id, "selection", method, number_text(parameter), "layer", slug(layer))

    def class_summary(self, run_id: str, method: str, parameter: float, key: str) -> NamedNode:
        """The summary of one selection's tags of one class (its key: wnid or label)."""
        return self._iri("run", run_id, "selection", method, number_text(parameter), "class", slug(key))

    def class_similarity(self, summary: NamedNode, rank: int) -> NamedNode:
        """The `rank`-th most similar class of a class summary."""
        return NamedNode(f"{summary.value}/similar/{int(rank)}")

    def coarse_concept(self, run_id: str, layer: str, index: int, selection: str, kind: str) -> NamedNode:
        """A coarse-concept link of one filter (under its run, like tags); `kind` is 'all' or 'share'."""
        return self._iri("run", run_id, "coarse", slug(layer), str(int(index)), slug(selection), kind)

    def explanation(self, run_id: str, image_id: str, method: str, parameter: float) -> NamedNode:
        """The explanation of one image by one selection (k-best k, q-quantile q) of a tagging run."""
        return self._iri("run", run_id, "explanation", image_id, method, number_text(parameter))

    def class_count(self, explanation: NamedNode, key: str) -> NamedNode:
        """How often a class (by class key) is tagged among an explanation's active filters."""
        return NamedNode(f"{explanation.value}/count/{_segment(slug(key))}")

    def image(self, dataset: str, image_id: str) -> NamedNode:
        """An image; `dataset`: the key of its data set's images (`explanations.images_key`)."""
        return self._iri("image", name_key(dataset), image_id)

    def dataset(self, name: str) -> NamedNode:
        return self._iri("dataset", name_key(name))


def minter_of_run(run: str) -> Minter:
    """The Minter whose base the run IRI was minted under (`{base}run/{run_id}`), so that links
    written for a run read back from a store land on its own nodes whatever base it was exported with."""
    head, sep, run_id = run.rpartition("run/")
    if not sep or not run_id or "/" in run_id:
        raise UserError(f"{run!r} is not a run IRI of the form BASE/run/RUN_ID")
    return Minter(head)


@lru_cache(maxsize=65536)
def _segment(part: str) -> str:
    """A percent-encoded path segment (cached: the same layer, class and run names recur millions of times).
    A segment "." or ".." becomes a hash, as `slug` names an empty name: as a dot segment, IRI
    normalisation (RFC 3986 remove_dot_segments) would drop it, with the segment before it for "..",
    giving another node's IRI; and normalisation decodes %2E to "." first."""
    if part in (".", ".."):
        return _hashed(part)
    return quote(part, safe="._~-")


def stable_hash(*parts: str | bytes) -> str:
    """A short hex id from stable inputs (16 hex digits of SHA-256)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else p.encode())
        h.update(b"\x00")
    return h.hexdigest()[:16]


def as_minter(minter: Minter | str | None) -> Minter:
    """The Minter a function mints with: the one given, one under a base IRI given as text (a str
    failed deep inside with an AttributeError), or the default's."""
    if minter is None:
        return Minter()
    if isinstance(minter, str):
        return Minter(minter)
    if not isinstance(minter, Minter):
        raise UserError(f"minter must be a filtag_kg.kg.vocab.Minter or a base IRI, got {type(minter).__name__}")
    return minter
