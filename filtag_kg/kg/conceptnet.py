"""ConceptNet 5: link classes to concepts (`http://conceptnet.io/c/en/…`) and import their edges.

Edges of the relations that help to coarsen and group (RELATIONS) come from
  (a) the web API (`GET {base}/query?node=/c/en/dog&other=/c/en&limit=…`, JSON-LD with `edges` and a
      `view.nextPage` link), through `ConceptNetClient`: configurable base URL, an on-disk cache of
      complete answers, a minimum interval between requests, retries with exponential backoff on
      timeouts, connection errors, 429 (honouring Retry-After), 5xx and malformed JSON, and an offline
      mode that answers from the cache only. A concept that cannot be fetched is reported as missing,
      what was fetched stays cached, and a re-run fetches only what is missing; after several
      concepts in a row failed (API down), the rest are reported without being tried; or
  (b) a local copy of the official assertions dump (`conceptnet-assertions-5.7.0.csv.gz`: tab-separated
      edge URI, relation, start, end, JSON metadata with `weight`), streamed line by line.

In the graph (the run's "conceptnet" named graph, which states `graph prov:wasInfluencedBy run`): class
skos:relatedMatch concept; each edge as a direct triple `start <http://conceptnet.io/r/Rel> end` for
property paths, and as an rdf:Statement (rdf:subject / rdf:predicate / rdf:object, as ConceptNet's
own JSON-LD context maps start/rel/end) with ft:weight.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import time
import unicodedata
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urljoin, urlsplit

import regex
from pyoxigraph import Literal, NamedNode, Quad
from tqdm import tqdm

from ..config import cache_dir
from ..errors import UserError
from ..records import TagSet, atomic_write
from .explanations import OF_RUN
from .vocab import FT, RDF, RDFS, SKOS, Minter, as_minter

if TYPE_CHECKING:
    from .export import RunIds

CN = "http://conceptnet.io"
DEFAULT_API = "https://api.conceptnet.io"
MAX_WAIT = 86_400.0  # seconds: the longest --interval and --timeout (time.sleep and sockets overflow on inf)
MAX_BACKOFF = 60.0  # seconds: the longest wait between retries, as for a 429's Retry-After
RELATIONS = ("IsA", "PartOf", "HasA", "RelatedTo", "Synonym", "SimilarTo", "AtLocation", "UsedFor")
# a word of wordfreq's simple_tokenize (ConceptNet's tokenizer; Unicode word segmentation by the
# `regex` module, which NLTK requires): a word character or symbol, then what no word break separates
_WORD = regex.compile(r"[\w\p{So}](?:\B\S|\p{M})*", regex.V1 | regex.WORD)
_ARTICLES = frozenset({"a", "an", "the"})  # ConceptNet's English stopwords


def concept_uri(label: str, language: str = "en") -> str:
    """The ConceptNet term of a label, standardised as ConceptNet standardises text
    (`conceptnet5.nodes.standardized_concept_uri`): '_' read as a space, NFC, split into words by
    Unicode word segmentation (wordfreq's `simple_tokenize`: a hyphen, '/', '.' or '%' between words
    separates them, an apostrophe inside a word stays), lower case, then for English the articles
    'a', 'an', 'the' and a leading 'to' dropped (unless nothing else is left), joined by '_'. So
    'hen-of-the-woods' is /c/en/hen_of_woods, 'potter's_wheel' /c/en/potter's_wheel and 'AC/DC'
    /c/en/ac_dc: terms ConceptNet has, where keeping the hyphens or dropping the apostrophe gave
    terms it has not (24 of the 1,000 ImageNet labels got no edges)."""
    words = [w.strip("'").casefold() for w in _WORD.findall(unicodedata.normalize("NFC", label.replace("_", " ")))]
    if language == "en":
        kept = [w for w in words if w not in _ARTICLES]
        while kept and kept[0] == "to":
            kept = kept[1:]
        words = kept or words
    text = "_".join(words)
    if not text:
        raise UserError(f"label {label!r} gives an empty ConceptNet term")
    return f"/c/{language}/{text}"


def term_of(uri: str) -> str:
    """The term part of a concept URI: /c/en/dog/n/wn/animal → /c/en/dog."""
    return "/".join(uri.split("/")[:4])


def node(uri: str) -> NamedNode:
    """The IRI of a ConceptNet URI (/c/…, /r/…, /a/[…]) under http://conceptnet.io, IRI-safe.

    ConceptNet URIs are plain Unicode text, so a '%' in one is a percent sign (/c/en/100%_beef):
    it is encoded as %25 like any other character outside the path's safe set."""
    return NamedNode(CN + quote(uri, safe="/_-.~:"))


@dataclass(frozen=True)
class Edge:
    """One ConceptNet assertion between two terms (sense suffixes stripped), with its weight."""

    uri: str
    rel: str  # "IsA"
    start: str  # "/c/en/dog"
    end: str  # "/c/en/animal"
    weight: float


@dataclass
class EdgeSet:
    """Edges per concept, the concepts whose edges could not be fetched (with the reason), the
    classes left unlinked because their label gives no term (by label, with the reason): these are
    reported, but unlike missing concepts a re-run would not link them; and the terms several classes
    link to (ConceptNet has no senses to tell them apart: 'Cardigan' the corgi and 'cardigan' the
    sweater are both /c/en/cardigan), each with those classes."""

    edges: dict[str, list[Edge]] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    shared: dict[str, list[str]] = field(default_factory=dict)

    def all_edges(self) -> list[Edge]:
        """Each edge once, in a stable order."""
        unique = {e.uri: e for edges in self.edges.values() for e in edges}
        return [unique[u] for u in sorted(unique)]

    def summary(self) -> str:
        lines = [f"ConceptNet: edges of {len(self.edges)} concepts ({len(self.all_edges())} edges), "
                 f"{len(self.missing)} missing" + (f", {len(self.skipped)} classes skipped" if self.skipped else "")]
        lines += _first_ten([f"  skipped class {label!r}: {why}" for label, why in sorted(self.skipped.items())])
        lines += _first_ten([f"  shared term {term}: {' and '.join(classes)}; ConceptNet does not tell their senses "
                             "apart, so each class gets the edges of all"
                             for term, classes in sorted(self.shared.items())])
        empty = sorted(c for c, edges in self.edges.items() if not edges)
        if empty:  # "edges of 997 concepts" read as if all had some, where most had none
            lines.append(f"  without edges: {len(empty)} of the {len(self.edges)} concepts (a term ConceptNet has not, "
                         f"or none of its edges of the relations imported): {', '.join(empty[:10])}"
                         + (" …" if len(empty) > 10 else ""))
        lines += _first_ten([f"  missing {c}: {why}" for c, why in sorted(self.missing.items())])
        if self.missing:
            lines.append("  run again to fetch what is missing (what was fetched is cached)")
        return "\n".join(lines)


def _first_ten(lines: list[str]) -> list[str]:
    """At most ten report lines, then how many more there are (a broken API misses every concept)."""
    return lines[:10] + [f"  … and {len(lines) - 10} more"] * (len(lines) > 10)


def _edge(uri: str, rel: str, start: str, end: str, weight: Any, relations: Iterable[str]) -> Edge | None:
    """An Edge from raw URIs when its relation is wanted and both ends are English terms, else None.
    A weight that is not a finite number raises FetchError (it was a TypeError's traceback)."""
    name = rel.strip("/").split("/")[-1]
    if name not in relations or not start.startswith("/c/en/") or not end.startswith("/c/en/"):
        return None
    try:
        number = math.nan if isinstance(weight, bool) else float(weight)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise FetchError(f"edge {uri} has the weight {weight!r}, not a number")
    return Edge(uri, name, term_of(start), term_of(end), number)


def _well_formed(edge: Any) -> bool:
    """True when a raw edge has the text @id, rel, start and end that make an Edge: an @id or end
    that was a number passed the check and stopped the run with a traceback (AttributeError)."""
    try:
        return all(isinstance(x, str) for x in (edge["@id"], edge["rel"]["@id"], edge["start"]["@id"],
                                                  edge["end"]["@id"]))
    except (KeyError, TypeError):
        return False


def _cached_edges(path: Path) -> list[dict[str, Any]] | None:
    """The raw edges of a cached answer; None when there is none, or when it is damaged (cut short,
    edited, of another program: a JSONDecodeError's traceback before), so that it is fetched again."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))["edges"]
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None
    return raw if isinstance(raw, list) and all(map(_well_formed, raw)) else None


def _checked_base_url(base_url: str) -> str:
    """The API's base URL with one trailing '/'; one that is no http(s) URL with a host is refused up
    front ('not a url', 'ftp://…', 'http://[::1' stopped the run with requests' or urllib's exception)."""
    try:
        parts = urlsplit(base_url.strip())
        parts.port  # noqa: B018 — raises ValueError for a port that is no number
    except ValueError as e:
        raise UserError(f"--api {base_url!r}: not a URL ({e}); expected one like {DEFAULT_API}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"--api {base_url!r}: expected an http(s) URL with a host, like {DEFAULT_API}")
    return base_url.strip().rstrip("/") + "/"


def _check_seconds(option: str, value: float, positive: bool = False) -> None:
    """Refuse a number of seconds that is not finite, negative (or 0, when it must be `positive`) or
    over MAX_WAIT: --interval inf and --timeout nan stopped the run with an OverflowError's or
    ValueError's traceback from time.sleep or the socket."""
    if not (math.isfinite(value) and (value > 0 if positive else value >= 0) and value <= MAX_WAIT):
        raise UserError(f"{option} {value!r}: expected seconds {'>' if positive else '>='} 0 and <= {MAX_WAIT:,.0f}")


class FetchError(RuntimeError):
    """A concept's edges could not be fetched (after retries, or offline without a cached answer)."""


class ConceptNetClient:
    """The ConceptNet web API through `requests`, with cache, rate limit, retries and offline mode."""

    def __init__(
        self,
        base_url: str = DEFAULT_API,
        cache: str | os.PathLike[str] | None = None,
        offline: bool = False,
        min_interval: float = 1.0,
        timeout: float = 10.0,
        retries: int = 4,
        backoff: float = 1.0,
        page_size: int = 1000,
        relations: Sequence[str] = RELATIONS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        import requests

        self.base_url = _checked_base_url(base_url)
        _check_seconds("--interval", min_interval)
        _check_seconds("--timeout", timeout, positive=True)
        self.cache = Path(cache) if cache else cache_dir() / "conceptnet"
        self.offline, self.min_interval, self.timeout = offline, min_interval, timeout
        self.retries, self.backoff, self.page_size = retries, backoff, page_size
        self.relations = tuple(relations)
        self.sleep = sleep
        self.session = requests.Session()
        self.session.headers["Accept"] = "application/json"
        self._last = -math.inf
        self.requests_made = 0

    def _cache_path(self, concept: str) -> Path:
        key = hashlib.sha256(f"{self.base_url}\0{concept}".encode()).hexdigest()[:24]
        return self.cache / f"{key}.json"

    def is_cached(self, concept: str) -> bool:
        return self._cache_path(concept).is_file()

    def edges(self, concept: str) -> list[Edge]:
        """All edges of `concept` with another English term, of the wanted relations (cached)."""
        path = self._cache_path(concept)
        raw = _cached_edges(path)
        if raw is None and self.offline:
            raise FetchError("offline and not in the cache" if not path.exists() else
                             f"offline, and its cached answer {path} is damaged (not the JSON this client writes)")
        if raw is None:
            raw = self._fetch_all(concept)
            self.cache.mkdir(parents=True, exist_ok=True)
            # through a temporary file of its own (two runs fetching the same concept shared one .tmp file, so
            # one moved the other's half-written answer into place): only complete answers are cached
            answer = json.dumps({"concept": concept, "base_url": self.base_url, "edges": raw}).encode()
            atomic_write(path, lambda f: f.write(answer))
        out = []
        for e in raw:
            edge = _edge(e["@id"], e["rel"]["@id"], e["start"]["@id"], e["end"]["@id"], e.get("weight", 1.0),
                         self.relations)
            if edge is not None:
                out.append(edge)
        return out

    def _fetch_all(self, concept: str) -> list[dict[str, Any]]:
        """Every page of the API's answer for `concept`, following view.nextPage."""
        url = urljoin(self.base_url, "query?" + urlencode({"node": concept, "other": "/c/en",
                                                           "limit": self.page_size}))
        edges: list[dict[str, Any]] = []
        seen: set[str] = set()
        while url:
            if url in seen:
                raise FetchError(f"the API's nextPage links loop at {url}")
            seen.add(url)
            page = self._get(url)
            if not isinstance(page.get("edges"), list):
                raise FetchError(f"answer from {url} has no 'edges' list")
            if not all(map(_well_formed, page["edges"])):
                raise FetchError(f"answer from {url} has an edge whose @id, rel, start or end is missing or not text")
            edges.extend(page["edges"])
            view = page.get("view") or {}
            following = view.get("nextPage") if isinstance(view, dict) else None
            if following is not None and not isinstance(following, str):  # was a traceback (AttributeError)
                raise FetchError(f"answer from {url} has a view.nextPage that is no URL: {following!r}"[:300])
            if view and not isinstance(view, dict):
                raise FetchError(f"answer from {url} has a 'view' that is no JSON object")
            url = urljoin(self.base_url, following.lstrip("/")) if following else ""
            if url and urlsplit(url)[:2] != urlsplit(self.base_url)[:2]:  # the API's pages are its own
                raise FetchError(f"answer from {self.base_url} links its next page to another server: {url}"[:300])
        return edges

    def _get(self, url: str) -> dict[str, Any]:
        """One GET with rate limiting and retries; returns the parsed JSON object."""
        import requests

        problem, retry_after = "", None
        for attempt in range(self.retries + 1):
            if attempt:  # exponential backoff up to a minute (--retries 20 waited 6 days), or what a 429 asked for
                self.sleep(retry_after if retry_after is not None
                           else min(self.backoff * 2.0 ** min(attempt - 1, 64), MAX_BACKOFF))
                retry_after = None
            wait = self._last + self.min_interval - time.monotonic()
            if wait > 0:
                self.sleep(wait)
            self._last = time.monotonic()
            self.requests_made += 1
            try:
                response = self.session.get(url, timeout=self.timeout)
            except (requests.Timeout, requests.ConnectionError) as e:
                problem = f"{type(e).__name__} from {url}"
                continue
            if response.status_code == 429 or response.status_code >= 500:
                problem = f"HTTP {response.status_code} from {url}"
                asked = response.headers.get("Retry-After", "")
                if response.status_code == 429 and asked.isdigit():
                    retry_after = min(float(asked), 60.0)
                continue
            if response.status_code != 200:
                raise FetchError(f"HTTP {response.status_code} from {url}")
            try:
                body = response.json()
            except ValueError:
                problem = f"malformed JSON from {url}"
                continue
            if not isinstance(body, dict):
                problem = f"malformed answer (not a JSON object) from {url}"
                continue
            return body
        raise FetchError(f"{problem} (after {self.retries + 1} attempts)")


def _concept_set(concepts: str | Iterable[str]) -> set[str]:
    """The distinct concepts, one string being one concept: '/c/en/dog' was read as the concepts
    '/', 'c', 'e', 'n', 'd', 'o', 'g', which the dump has no edges of (and the API was asked for)."""
    return {concepts} if isinstance(concepts, str) else set(concepts)


def fetch_edges(concepts: str | Iterable[str], client: ConceptNetClient, give_up_after: int = 5) -> EdgeSet:
    """The edges of every concept from the API; failures are reported as missing, never raised.

    After `give_up_after` concepts in a row failed (the API is down or unreachable), the remaining
    ones are not tried and are reported as missing too, so an offline machine does not wait for
    every retry of every concept; cached answers are still used."""
    result = EdgeSet()
    failed_in_a_row = 0
    for concept in tqdm(sorted(_concept_set(concepts)), desc="ConceptNet", unit="concept", disable=None):
        cached = client.is_cached(concept)
        if failed_in_a_row >= give_up_after and not cached and not client.offline:  # offline: each says why
            result.missing[concept] = f"not tried: the {give_up_after} concepts before it failed"
            continue
        try:
            result.edges[concept] = client.edges(concept)
            failed_in_a_row = failed_in_a_row if cached else 0  # a cache hit says nothing about the API
        except FetchError as e:
            result.missing[concept] = str(e)
            failed_in_a_row += 1
    return result


def read_dump(
    path: str | os.PathLike[str], concepts: str | Iterable[str], relations: Sequence[str] = RELATIONS,
) -> EdgeSet:
    """Edges of `concepts` (start or end) from the official assertions dump, streamed (gzip or plain)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"ConceptNet dump {path} {'is a directory' if path.is_dir() else 'does not exist'}")
    wanted = _concept_set(concepts)
    result = EdgeSet(edges={c: [] for c in sorted(wanted)})
    try:
        _read_dump_lines(path, wanted, relations, result)
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise UserError(f"ConceptNet dump {path} is not {'gzip-compressed ' if path.suffix == '.gz' else ''}"
                        f"UTF-8 text in the assertions format ({e})") from None
    return result


def _read_dump_lines(path: Path, wanted: set[str], relations: Sequence[str], result: EdgeSet) -> None:
    """Add the edges of the `wanted` concepts in the dump at `path` to `result`. A dump without a
    line is refused: an empty file (a download that wrote nothing) replaced the run's ConceptNet graph
    with one of no edges, emptying what an earlier run filled."""
    opener = gzip.open if path.suffix == ".gz" else open
    number = 0
    with opener(path, "rt", encoding="utf-8") as f:
        for number, line in enumerate(tqdm(f, desc="ConceptNet dump", unit=" lines", disable=None), start=1):
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 5:
                raise UserError(f"{path}, line {number}: expected 5 tab-separated fields "
                                f"(edge URI, relation, start, end, JSON), got {len(fields)}")
            uri, rel, start, end, info = fields
            if term_of(start) not in wanted and term_of(end) not in wanted:
                continue
            try:
                weight = json.loads(info).get("weight", 1.0)
            except (ValueError, AttributeError):
                raise UserError(f"{path}, line {number}: the metadata field is not a JSON object") from None
            try:
                edge = _edge(uri, rel, start, end, weight, relations)
            except FetchError as e:
                raise UserError(f"{path}, line {number}: {e}") from None
            if edge is None:
                continue
            for concept in {edge.start, edge.end} & wanted:
                result.edges[concept].append(edge)
    if not number:
        raise UserError(f"ConceptNet dump {path} holds no assertions (it is empty); expected "
                        "conceptnet-assertions-5.7.0.csv.gz, one tab-separated edge per line")


def conceptnet_quads(
    class_concepts: Mapping[str, str], space: str, edges: EdgeSet, graph: NamedNode, minter: Minter | str | None = None,
) -> Iterator[Quad]:
    """Class → concept (skos:relatedMatch), concepts as skos:Concept, edges as triples and statements."""
    minter = as_minter(minter)
    a, label = NamedNode(RDF + "type"), NamedNode(RDFS + "label")
    related, concept_class = NamedNode(SKOS + "relatedMatch"), NamedNode(SKOS + "Concept")
    statement = NamedNode(RDF + "Statement")
    subject, predicate, obj = NamedNode(RDF + "subject"), NamedNode(RDF + "predicate"), NamedNode(RDF + "object")
    weight = NamedNode(FT + "weight")
    for key, concept in class_concepts.items():
        yield Quad(minter.image_class(space, key), related, node(concept), graph)
    all_edges = edges.all_edges()
    concepts = sorted(set(class_concepts.values()) | {c for e in all_edges for c in (e.start, e.end)})
    for c in concepts:
        yield Quad(node(c), a, concept_class, graph)
        yield Quad(node(c), label, Literal(c.split("/")[3].replace("_", " "), language=c.split("/")[2]), graph)
    for e in all_edges:
        rel = node("/r/" + e.rel)
        yield Quad(node(e.start), rel, node(e.end), graph)
        n = node(e.uri)
        yield Quad(n, a, statement, graph)
        yield Quad(n, subject, node(e.start), graph)
        yield Quad(n, predicate, rel, graph)
        yield Quad(n, obj, node(e.end), graph)
        yield Quad(n, weight, Literal(float(e.weight)), graph)


def shared_neighbours(concepts: Sequence[str], edges: EdgeSet, share: float = 2 / 3,
                      relations: Sequence[str] = ("IsA", "PartOf", "AtLocation", "UsedFor", "RelatedTo")) -> list[tuple[str, int, float]]:
    """Concepts that at least ⌈share·n⌉ of `concepts` point to (by `relations`): (neighbour, how many,
    summed weight), most shared first — ConceptNet's version of a coarse concept of a filter."""
    pointing: dict[str, set[str]] = defaultdict(set)
    weights: dict[str, float] = defaultdict(float)
    distinct = sorted(set(concepts))
    for c in distinct:
        for e in edges.edges.get(c, ()):
            if e.rel in relations and e.start == c and e.end not in distinct:
                pointing[e.end].add(c)
                weights[e.end] += e.weight
    need = max(2, math.ceil(share * len(distinct) - 1e-9))
    found = [(n, len(cs), weights[n]) for n, cs in pointing.items() if len(cs) >= need]
    return sorted(found, key=lambda t: (-t[1], -t[2], t[0]))


@dataclass
class ConceptNetLinking:
    """The result of linking a run to ConceptNet: its named graph, quads, class concepts and edges."""

    graph: NamedNode
    quads: list[Quad]
    concepts: dict[str, str]  # class key → concept, of the classes linked
    edges: EdgeSet


def link_conceptnet(
    tags: TagSet,
    client: ConceptNetClient | None = None,
    dump: str | os.PathLike[str] | None = None,
    minter: Minter | str | None = None,
    ids: RunIds | None = None,
) -> ConceptNetLinking:
    """Link a run's classes to ConceptNet terms (from their labels) and import the edges of those terms
    from `dump` when given, else through `client` (default: the public API with the on-disk cache).
    A class whose label gives no term ("...") is left unlinked and reported in `edges.skipped`. A class
    whose label is its wnid (an image folder of wnid sub-folders) is linked by its ImageNet-1k name
    (its label gave the term /c/en/n01440764, which ConceptNet has not), or skipped when it has none.
    `ids`: those of a run read back from a store."""
    from ..imagenet import imagenet_index
    from .export import label_space, run_ids, tag_class_keys

    minter = as_minter(minter)
    ids = ids or run_ids(tags)
    concepts: dict[str, str] = {}
    skipped: dict[str, str] = {}
    classes_of: dict[str, list[str]] = defaultdict(list)
    wnids = (tags.manifest.get("dataset") or {}).get("wnids") or [None] * len(tags.classes)
    for index, (key, label, wnid) in enumerate(zip(tag_class_keys(tags), tags.classes, wnids)):
        text = label
        if wnid and label == wnid:
            try:
                text = imagenet_index().keras_labels[imagenet_index().index_of_wnid(wnid)]
            except UserError:
                skipped[label] = "its label is a wnid of no ImageNet-1k class, which names no word to link"
                continue
        try:
            concepts[key] = concept_uri(text)
            classes_of[concepts[key]].append(f"{label!r} (class {index}{f', {wnid}' if wnid else ''})")
        except UserError:  # nothing of the label is left for a term ("..."): one class must not stop the run
            skipped[label] = "its label gives an empty ConceptNet term, so it is not linked"
    if dump is not None:
        edges = read_dump(dump, concepts.values())
    else:
        edges = fetch_edges(concepts.values(), client or ConceptNetClient())
    edges.skipped = skipped
    edges.shared = {term: classes for term, classes in classes_of.items() if len(classes) > 1}
    graph = minter.run_graph(ids.tagging, "conceptnet")
    # the graph names the run it links, as a WordNet graph's coarse concepts do, so that queries keep
    # to one run's edges where runs on one label space were linked from other sources
    of_run = Quad(graph, OF_RUN, minter.run(ids.tagging), graph)
    quads = [of_run, *conceptnet_quads(concepts, label_space(tags), edges, graph, minter)]
    return ConceptNetLinking(graph, quads, concepts, edges)
