"""FAIR publishing of a tagging run and serving the store.

`publish` writes a run's graphs (tags, provenance, links, network, classes) as distributions in
N-Quads, TriG and JSON-LD, a DCAT description (dataset.ttl: dataset, distributions with media types,
byte sizes and SHA-256 checksums, license, creator, issue date, the NNO description of the network
and the run's provenance) and a schema.org Dataset (dataset.jsonld) for web indexing.

`serving` serves the store on 127.0.0.1 from this process by the endpoint of `filtag_kg.kg.endpoint`:
read-only, or, when asked for, with updates behind HTTP basic auth.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyoxigraph import BlankNode, Literal, NamedNode, Quad, RdfFormat, serialize
from tqdm import tqdm

from ..config import locked_folder
from ..errors import UserError
from .endpoint import read_only_endpoint, sparql_endpoint
from .export import media_type, rdf_format, write
from .store import Store, unfinished
from .vocab import DCAT, DCTERMS, FOAF, FT, NNO, PREFIXES, PROV, RDF, RDFS, XSD, Minter, as_minter, iri, sparql_prefixes

SPDX = "http://spdx.org/rdf/terms#"
IANA = "https://www.iana.org/assignments/media-types/"
ONTOLOGY = "https://w3id.org/filtag-kg/ontology"
DISTRIBUTIONS = (("nq", "N-Quads"), ("trig", "TriG"), ("jsonld", "JSON-LD"))
# dataset.jsonld's context, in the file: "https://schema.org/" had every JSON-LD reader fetch schema.org's
# context (no facts at all offline, e.g. rdflib's URLError); URLs and the date typed as in dataset.ttl
SCHEMA_CONTEXT = {
    "@vocab": "https://schema.org/",
    "license": {"@type": "@id"},
    "contentUrl": {"@type": "@id"},
    "datePublished": {"@type": XSD + "date"},
}


@dataclass
class Published:
    """What `publish` wrote: the dataset IRI, its graphs and the files (distributions first)."""

    dataset: NamedNode
    graphs: list[NamedNode]
    files: list[Path] = field(default_factory=list)


def run_graphs(store: Store, run: str) -> tuple[NamedNode, list[NamedNode]]:
    """The network of a run and the graphs that make up its publication: its own graph(s) (tags
    and links, which share the run graph's IRI prefix), the network graph and the label-space graph."""
    rows = list(store.query(sparql_prefixes() + f"""
        SELECT ?g ?net ?ng ?cg WHERE {{
          GRAPH ?g {{ <{run}> a ft:TaggingRun ; prov:used ?net ; ft:labelSpace ?space }}
          OPTIONAL {{ GRAPH ?ng {{ ?net a nno:NeuralNetwork }} }}
          OPTIONAL {{ GRAPH ?cg {{ ?space a skos:ConceptScheme }} }} }}""", use_default_graph_as_union=False))
    rows = [r for r in rows if isinstance(r["net"], NamedNode) and r["ng"] is not None]
    if not rows:
        raise UserError(f"no tagging run <{run}> with its network in the store {store.path}")
    row = rows[0]
    run_graph = row["g"]
    prefix = run_graph.value.rsplit("/", 1)[0] + "/"
    graphs = [g for g in store.graphs() if g.value.startswith(prefix)]
    graphs += [g for g in (row["ng"], row["cg"]) if g is not None and g not in graphs]
    return row["net"], graphs


def publish(
    store: Store, run: str | NamedNode, out: str | os.PathLike[str], *, license: str, creator: str,
    issued: str | dt.date | None = None, download_url: str | None = None, minter: Minter | str | None = None,
    progress: bool = False,
) -> Published:
    """Write the distributions of a run, `dataset.ttl` (DCAT) and `dataset.jsonld` (schema.org) to `out`.

    `store`: the embedded store the run is in; `run`: its IRI (a string or NamedNode); `issued`: a
    date, or its text YYYY-MM-DD (default today); `progress`: a bar of the quads written per distribution.
    (A str `out`, a NamedNode `run` and a date failed with an AttributeError or TypeError.)"""
    if not isinstance(store, Store):  # a RemoteStore or pyoxigraph.Store failed with an AttributeError
        raise UserError(f"publish reads the run from the embedded store (filtag_kg.kg.store.Store), got "
                        f"{type(store).__module__}.{type(store).__qualname__}")
    out = Path(out)
    run = run.value if isinstance(run, NamedNode) else run
    minter = as_minter(minter)
    if isinstance(issued, dt.date):
        issued = (issued.date() if isinstance(issued, dt.datetime) else issued).isoformat()
    issued = issued or dt.date.today().isoformat()
    try:  # only YYYY-MM-DD is an xsd:date: fromisoformat alone took 20261202 and 2026-W49-3 as they were
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", issued, re.ASCII):
            raise ValueError(issued)
        dt.date.fromisoformat(issued)
    except ValueError:
        raise UserError(f"--issued {issued!r}: expected a date YYYY-MM-DD") from None
    if not license.startswith(("http://", "https://")):
        raise UserError(f"--license {license!r}: give the license as an IRI, e.g. https://creativecommons.org/licenses/by/4.0/")
    iri(license, "--license")
    if not creator.strip():
        raise UserError("--creator is empty: give the name of the person or organisation publishing")
    if download_url is not None:
        if not download_url.startswith(("http://", "https://")) or "?" in download_url or "#" in download_url:
            raise UserError(f"--download-url {download_url!r}: expected the http(s) URL of the folder the files "
                            "will be in, without query or fragment")
        iri(download_url, "--download-url")
    network, graphs = run_graphs(store, iri(run, "--run").value)
    # one publish per folder at a time: another's staging folder is not a leftover, nor are its files ours
    with locked_folder(out, f"--out {out}: cannot write there ({{reason}})",
                       f"--out {out}: another publish is writing there; wait for it to end"):
        _refuse_another_run(out, run)
        try:
            for left in out.glob(".publishing-*"):  # of a publish that was killed
                shutil.rmtree(left, ignore_errors=True)
            staging = Path(tempfile.mkdtemp(dir=out, prefix=".publishing-"))
        except OSError as e:
            raise UserError(f"--out {out}: cannot write there ({e.strerror or e})") from None
        try:  # written in a staging folder, then moved into `out`: a failure leaves no partial file in `out`
            staged = _write_publication(store, run, network, graphs, staging, license=license, creator=creator,
                                        issued=issued, download_url=download_url, minter=minter, progress=progress)
            files = [out / path.name for path in staged.files]
            for path, moved in zip(staged.files, files):
                os.replace(path, moved)
        except OSError as e:
            raise UserError(f"--out {out}: cannot write there ({e.strerror or e})") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return Published(staged.dataset, staged.graphs, files)


def _refuse_another_run(out: Path, run: str) -> None:
    """Refuse a folder holding the distributions of another run: its dataset.ttl and dataset.jsonld
    describe one run, so the other's files were left there undescribed (published, not findable)."""
    own = {f"{_stem(run)}.{ext}" for ext, _ in DISTRIBUTIONS}
    others = sorted(p.name for ext, _ in DISTRIBUTIONS for p in out.glob(f"filtag-*.{ext}") if p.name not in own)
    if others:
        raise UserError(f"--out {out} holds the distributions of another run ({', '.join(others[:3])}"
                        f"{' …' if len(others) > 3 else ''}), which its dataset.ttl would no longer describe: "
                        "publish each run into a folder of its own, or remove those files first")


def _stem(run: str) -> str:
    """The file name stem of a run's distributions, by its id (the IRI's last part)."""
    return f"filtag-{run.rstrip('/').rsplit('/', 1)[-1]}"


def _write_publication(
    store: Store, run: str, network: NamedNode, graphs: list[NamedNode], out: Path, *, license: str, creator: str,
    issued: str, download_url: str | None, minter: Minter, progress: bool = False,
) -> Published:
    """Write the distributions and the two descriptions of a run into the folder `out`."""
    run_id = run.rstrip("/").rsplit("/", 1)[-1]
    dataset = minter.dataset(f"tags-{run_id}")
    result = Published(dataset, graphs)

    total = sum(store.count(g) for g in graphs) if progress else None

    def all_quads(title: str) -> Iterator[Quad]:
        """The run's quads, with a progress bar (a VGG16 run's distributions take about a minute)."""
        with tqdm(total=total, desc=f"publish: {title}", unit=" quads", unit_scale=True, disable=not progress,
                  leave=False, file=sys.stderr) as bar:
            for g in graphs:
                for quad in store.quads(g):
                    yield quad
                    bar.update()

    stem = _stem(run)
    distributions = []
    for ext, title in DISTRIBUTIONS:
        path = out / f"{stem}.{ext}"
        write(all_quads(title), path, ext)
        distributions.append((path, title, media_type(rdf_format(ext))))
        result.files.append(path)

    title = _network_title(store, network)
    selections = _selections(store, NamedNode(run))
    name = f"FilTag tags of {title} ({', '.join(selections)})"
    description = (f"Filters of the network {title} tagged with the image classes that activate them most "
                   f"(FilTag; {', '.join(selections)}), with the network's architecture, the classes and the "
                   f"provenance of the run, as RDF (FilTag ontology on the FAIRnets NNO, PROV-O, SKOS).")
    checksums = [(path, title_, media, path.stat().st_size, _sha256(path)) for path, title_, media in distributions]

    quads = list(_dcat(dataset, run, network, name, description, license, creator, issued, checksums, download_url))
    quads += _context_quads(store, run, network, graphs)
    description_path = out / "dataset.ttl"
    serialize((q.triple for q in quads), str(description_path), RdfFormat.TURTLE,
              prefixes={**PREFIXES, "spdx": SPDX})
    result.files.append(description_path)

    schema_path = out / "dataset.jsonld"
    schema_path.write_text(json.dumps(
        _schema_org(dataset, run, name, description, license, creator, issued, title, selections, checksums,
                    download_url), indent=1) + "\n", encoding="utf-8")
    result.files.append(schema_path)
    return result


def _network_title(store: Store, network: NamedNode) -> str:
    rows = list(store.query(f"SELECT ?t WHERE {{ {network} <{DCTERMS}title> ?t }}"))
    return rows[0]["t"].value if rows else network.value


def _selections(store: Store, run: NamedNode) -> list[str]:
    """The labels of a run's selections by method, then k or q as a number (k-best 5 before k-best 25)."""
    return [r["s"].value for r in store.query(f"""
        SELECT DISTINCT ?s ?method ?parameter WHERE {{
          ?selection <{FT}ofRun> {run} ; <{RDFS}label> ?s ; <{FT}method> ?method ;
                     <{FT}selectionParameter> ?parameter }}
        ORDER BY ?method ?parameter""")]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _url(download_url: str | None, path: Path) -> str | None:
    return f"{download_url.rstrip('/')}/{path.name}" if download_url else None


def _dcat(
    dataset: NamedNode, run: str, network: NamedNode, name: str, description: str, license: str, creator: str,
    issued: str, checksums: list[tuple[Path, str, str, int, str]], download_url: str | None,
) -> Iterator[Quad]:
    """The DCAT dataset and its distributions (as default-graph quads)."""

    def q(s: Any, p: str, o: Any) -> Quad:
        return Quad(s, NamedNode(p), o)

    yield q(dataset, RDF + "type", NamedNode(DCAT + "Dataset"))
    yield q(dataset, DCTERMS + "title", Literal(name))
    yield q(dataset, DCTERMS + "description", Literal(description))
    yield q(dataset, DCTERMS + "identifier", Literal(run.rsplit("/", 1)[-1]))
    yield q(dataset, DCTERMS + "license", NamedNode(license))
    agent = BlankNode("creator")
    yield q(dataset, DCTERMS + "creator", agent)
    yield q(dataset, DCTERMS + "publisher", agent)
    yield q(dataset, DCTERMS + "issued", Literal(issued, datatype=NamedNode(XSD + "date")))
    yield q(dataset, DCTERMS + "conformsTo", NamedNode(ONTOLOGY))
    yield q(dataset, DCTERMS + "subject", network)
    yield q(dataset, PROV + "wasGeneratedBy", NamedNode(run))
    for keyword in ("FilTag", "explainable AI", "convolutional neural network", "filter tagging", "knowledge graph"):
        yield q(dataset, DCAT + "keyword", Literal(keyword))
    yield q(agent, RDF + "type", NamedNode(FOAF + "Agent"))
    yield q(agent, FOAF + "name", Literal(creator))
    for path, title, media, size, sha in checksums:
        dist, checksum = BlankNode(f"dist-{path.suffix[1:]}"), BlankNode(f"checksum-{path.suffix[1:]}")
        yield q(dataset, DCAT + "distribution", dist)
        yield q(dist, RDF + "type", NamedNode(DCAT + "Distribution"))
        yield q(dist, DCTERMS + "title", Literal(f"{name} ({title})"))
        yield q(dist, DCAT + "mediaType", NamedNode(IANA + media))
        yield q(dist, DCAT + "byteSize", Literal(str(size), datatype=NamedNode(XSD + "nonNegativeInteger")))
        yield q(dist, DCTERMS + "license", NamedNode(license))
        yield q(dist, SPDX + "checksum", checksum)
        yield q(checksum, RDF + "type", NamedNode(SPDX + "Checksum"))
        yield q(checksum, SPDX + "algorithm", NamedNode(SPDX + "checksumAlgorithm_sha256"))
        yield q(checksum, SPDX + "checksumValue", Literal(sha, datatype=NamedNode(XSD + "hexBinary")))
        url = _url(download_url, path)
        if url:
            yield q(dist, DCAT + "downloadURL", NamedNode(url))
            yield q(dist, DCAT + "accessURL", NamedNode(url))


def _context_quads(store: Store, run: str, network: NamedNode, graphs: list[NamedNode]) -> list[Quad]:
    """The NNO description of the network (without its filters), the run's provenance, its data set
    and label space (without the classes)."""
    network_graph = next(g for g in graphs if any(True for _ in store.oxigraph.quads_for_pattern(
        network, NamedNode(RDF + "type"), NamedNode(NNO + "NeuralNetwork"), g)))
    filters = {q.subject for q in store.oxigraph.quads_for_pattern(
        None, NamedNode(RDF + "type"), NamedNode(FT + "Filter"), network_graph)}
    keep = [Quad(q.subject, q.predicate, q.object) for q in store.quads(network_graph)
            if q.subject not in filters and q.predicate.value != FT + "hasFilter"]
    runs = {NamedNode(run)} | {q.object for q in store.oxigraph.quads_for_pattern(
        NamedNode(run), NamedNode(PROV + "wasInformedBy"), None, None)}
    used = set()
    for activity in runs:
        for q in store.oxigraph.quads_for_pattern(activity, None, None, None):
            keep.append(Quad(q.subject, q.predicate, q.object))
            if q.predicate.value in (PROV + "used", FT + "labelSpace") and q.object != network:
                used.add(q.object)
    for node in used:  # the data set and the label space, without the classes
        keep += [Quad(q.subject, q.predicate, q.object) for q in store.oxigraph.quads_for_pattern(node, None, None, None)]
    return list(dict.fromkeys(keep))  # each once, though several graphs hold some (a collection with two taggings)


def _schema_org(
    dataset: NamedNode, run: str, name: str, description: str, license: str, creator: str, issued: str,
    network_title: str, selections: list[str], checksums: list[tuple[Path, str, str, int, str]],
    download_url: str | None,
) -> dict[str, Any]:
    """A schema.org Dataset for web indexing (Google Dataset Search and the like)."""
    downloads = []
    for path, title, media, size, sha in checksums:
        item = {"@type": "DataDownload", "name": f"{name} ({title})", "encodingFormat": media,
                "contentSize": f"{size} B", "sha256": sha}
        url = _url(download_url, path)
        if url:
            item["contentUrl"] = url
        downloads.append(item)
    return {
        "@context": SCHEMA_CONTEXT,
        "@type": "Dataset",
        "@id": dataset.value,
        "name": name,
        "description": description,
        "identifier": run.rsplit("/", 1)[-1],
        "license": license,
        "creator": {"@type": "Organization", "name": creator},
        "datePublished": issued,
        "keywords": ["FilTag", "explainable AI", "convolutional neural network", "filter tagging", network_title],
        "measurementTechnique": "FilTag: " + ", ".join(selections),
        "isAccessibleForFree": True,
        "distribution": downloads,
    }


# -- serving -------------------------------------------------------------------------------------

def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _check_port_free(port: int) -> None:
    """Refuse a port that is out of range or that something already listens on."""
    import socket

    # a str ('7878', as from an environment variable) failed with "'<' not supported between …"
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise UserError(f"--port {port!r}: expected a TCP port from 1 to 65535")
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: a recent stop is no refusal
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            raise UserError(f"--port {port}: cannot listen on 127.0.0.1:{port} ({e.strerror or e})") from None


@contextmanager
def serving(path: Path, port: int, allow_updates: bool = False, password: str | None = None) -> Iterator[tuple[str, str | None]]:
    """Serve the store at `path` on 127.0.0.1:`port`; yield (URL, password or None).

    Both from this process: read-only (`endpoint.read_only_endpoint`, which opens the store again
    once a load or drop changed it), or with updates (`endpoint.sparql_endpoint`), which asks HTTP
    basic auth (user 'filtag-kg') for updates and graph store writes; no other port reaches the store.
    """
    path = Path(path)
    if not path.is_dir() and not allow_updates:  # with updates, a new store is made: a server to push into
        raise UserError(f"no store at {path}: load or import a run first, or serve it --allow-updates to push into")
    _check_port_free(port)  # else the server would fail, or another server there would answer for it
    _prepare_store(path, allow_updates)
    url = f"http://127.0.0.1:{port}"
    password = password or secrets.token_urlsafe(12) if allow_updates else None
    with Store(path) if allow_updates else nullcontext() as store:
        server = sparql_endpoint(store.oxigraph, port, password) if allow_updates else read_only_endpoint(path, port)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield url, password
        finally:
            server.shutdown()
            server.server_close()


def _prepare_store(path: Path, allow_updates: bool) -> None:
    """Open the store at `path` for writing only where needed: to finish or roll back an interrupted
    load or drop (its journal) or a rebuild's swap, and for updates (the server writes anyway).
    Otherwise it is only checked read-only, so that a store on a read-only file system, or one
    this user may not write to, can be served."""
    if not (allow_updates or unfinished(path)):
        Store(path, read_only=True).close()  # refuses a store of the format before 2026-12-01, as writing does
        return
    if path.exists() and not os.access(path, os.W_OK):  # a new one is made by Store, which names what fails
        if allow_updates:
            raise UserError(f"--allow-updates: cannot write to the store at {path} (read-only file system or "
                            "folder): serve it read-only, without --allow-updates")
        raise UserError(f"the store at {path} has an interrupted load or drop to finish before it can be served, "
                        f"and cannot be written to here (read-only file system or folder): open it for writing once "
                        f"where it can be, e.g. `filtag-kg upgrade --store {path}` as its owner, then serve it")
    Store(path).close()


class _Stopped(BaseException):
    """SIGTERM or SIGHUP: stop serving as Ctrl-C does (a BaseException, like KeyboardInterrupt)."""


def _stop(signum: int, frame: object) -> None:
    """Signal handler: unwind `serving`, which stops the server."""
    raise _Stopped(signal.Signals(signum).name)


def serve(path: Path, port: int, allow_updates: bool = False, password: str | None = None,
          echo: Callable[[str], Any] = print) -> None:
    """Serve until interrupted (Ctrl-C, SIGTERM or SIGHUP), printing the endpoint (and the password when
    one is made up; a `password` given is not printed, so that it stays out of logs). The endpoint runs
    in this process (`serving`), so nothing outlives it however it ends."""
    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        with serving(path, port, allow_updates, password) as (url, secret):
            echo(f"SPARQL endpoint: {url}/query (store {path}, default graph = union of the named graphs)")
            if secret is None:
                echo("read-only; use --allow-updates to accept updates")
            else:
                given = "the password given" if password else f"password {secret}"
                echo(f"updates: {url}/update and {url}/store, HTTP basic auth user 'filtag-kg' {given}")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                echo("stopped")
    except _Stopped as stopped:
        echo(f"stopped ({stopped})")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
