"""The SPARQL endpoint of `filtag-kg serve --allow-updates`: the embedded store served from this
process on loopback, by the SPARQL 1.1 Protocol (/query, /update) and the Graph Store HTTP
Protocol (/store), reads open to all and updates behind HTTP basic auth (user `filtag-kg`); GET
/query without parameters answers a SPARQL 1.1 Service Description. `read_only_endpoint` serves
a store read-only the same way, opening it again whenever another process changed it.

It replaces an Oxigraph server behind an auth proxy: that server's own port, on loopback too, took
updates from anyone who found it, such as another user of the machine, or a web page whose script
posts a form to loopback ports (browsers send such a request without asking). Here the store is
reached through this port only. Queries and updates run on pyoxigraph, the engine of Oxigraph's
server, with the default graph the union of the named graphs, as `oxigraph serve
--union-default-graph` answers (a query naming graphs by `default-graph-uri` or `named-graph-uri`
gets those and no others). Answers of unknown length are streamed in chunks, each answer closing its
connection. A graph store write's body goes to a temporary file as it arrives (in memory up to
SPOOLED bytes), then to the parser (pyoxigraph's load is one transaction, so the parsed triples are
still held until it commits); a query or update is held whole and refused with 413 above MAX_TEXT
bytes.
"""

from __future__ import annotations

import base64
import csv
import hmac
import io
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any, BinaryIO, TypeVar
from urllib.parse import parse_qs, urlsplit

from pyoxigraph import (
    BlankNode, DefaultGraph, NamedNode, QueryResultsFormat, QuerySolutions, QueryTriples, RdfFormat, Store, Triple,
    serialize,
)

from ..errors import UserError
from .queries import csv_cell
from .store import STAGING as STORE_STAGING
from .store import Store as EmbeddedStore
from .vocab import RDF

USER = "filtag-kg"
# a PUT's new content before it replaces the graph: one of the store's own graphs (`store._own`), which
# its listings leave out and which opening it for writing removes, should a crash leave one
STAGING = STORE_STAGING + "serve:"
RESULT_FORMATS = (QueryResultsFormat.JSON, QueryResultsFormat.XML, QueryResultsFormat.CSV, QueryResultsFormat.TSV)
TRIPLE_FORMATS = (RdfFormat.TURTLE, RdfFormat.N_TRIPLES, RdfFormat.RDF_XML, RdfFormat.N3, RdfFormat.JSON_LD)
QUAD_FORMATS = (RdfFormat.N_QUADS, RdfFormat.TRIG)
GRAPH_FORMATS = TRIPLE_FORMATS + QUAD_FORMATS  # a graph is answered in any of them (quads: in the default graph)
FLUSH_EVERY = 1.0  # seconds: how often at most the store's writes are flushed from its write-ahead log
SERVICES = ("/", "/query", "/update", "/store")  # the paths answered (the URL's path as sent, not decoded)
HELD_BACK = 1 << 16  # bytes of a streamed answer held back before it is begun, so that an early error gets its status
MAX_TEXT = 64 << 20  # bytes: a query or update (or a form holding one) above this is refused with 413
SPOOLED = 1 << 18  # bytes of a graph store write kept in memory; more goes to a temporary file
RETRY_AFTER = "5"  # seconds a read-only endpoint asks a client to wait while the store is being changed
SD = "http://www.w3.org/ns/sparql-service-description#"
F = TypeVar("F", QueryResultsFormat, RdfFormat)
Payload = bytes | Callable[[BinaryIO], object]  # an answer's body, or what writes it


class _Refused(Exception):
    """A request answered with an HTTP error status and a plain-text reason."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status, self.headers = status, headers or {}


def sparql_endpoint(store: Store, port: int, password: str) -> ThreadingHTTPServer:
    """An HTTP server (not yet serving: call its `serve_forever`) on 127.0.0.1:`port` over `store`;
    updates need the password."""
    return _endpoint(lambda: store, port, password)


def read_only_endpoint(path: Path, port: int) -> ThreadingHTTPServer:
    """An HTTP server (not yet serving) on 127.0.0.1:`port` answering queries and graph store reads
    from the embedded store at `path`, opened read-only and opened again once another process
    changed it (`_Reopening`), so that what a load or drop did is answered without a restart;
    writes are refused (403). Raises UserError if the store cannot be opened read-only now."""
    return _endpoint(_Reopening(Path(path)).current, port, None)


def _endpoint(current: Callable[[], Store], port: int, password: str | None) -> ThreadingHTTPServer:
    """The server over the store `current()` gives each request; writes need `password`, and
    without one (read-only) are refused."""
    expected = None if password is None else base64.b64encode(f"{USER}:{password}".encode())  # basic auth's

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # for chunked answers; each answer still closes its connection
        server: _Server

        def log_message(self, *args: object) -> None:
            pass

        def _handle(self) -> None:
            self._unread, self._answered = True, False
            try:
                try:
                    self._route()
                except Exception as e:
                    if self._answered:  # cut off: a chunked answer then lacks its end, which its client notices
                        raise
                    status, reason, headers = _error(e)
                    self._answer(status, f"{reason}\n".encode(), "text/plain", headers)
                self._discard()
            except Exception:  # an answer cut off, or a client that went away: nothing more can be said to it
                self.close_connection = True

        def _route(self) -> None:
            url = urlsplit(self.path)
            params = parse_qs(url.query, keep_blank_values=True)
            if self.command == "OPTIONS":  # no CORS headers, so browsers send no cross-origin request after it
                self._answer(204, b"", None, {"Allow": "GET, HEAD, POST, PUT, DELETE, OPTIONS"})
                return
            if url.path not in SERVICES or url.path == "/" and self.command not in ("GET", "HEAD"):
                raise _no_service(url.path)  # named as a wrong URL before auth, which it is no use asking for
            reads = _reads(url.path, self.command)
            if not reads:
                if expected is None:
                    raise _Refused(403, "this endpoint is read-only: `filtag-kg serve --allow-updates` takes updates")
                self._authorize()  # before the body is read: no anonymous body is held in memory
            if url.path == "/query" and self.command in ("GET", "HEAD") and not url.query:
                self._answer(200, *_description(self.server.server_address[1], self.headers))
                return
            if url.path == "/":
                self._answer(200, b"filtag-kg SPARQL endpoint: /query (SPARQL 1.1 queries; GET without a query: "
                                  b"its service description), " + (
                                      b"/store (Graph Store HTTP Protocol, reads only)\n" if expected is None else
                                      b"/update (updates, HTTP basic auth), /store (Graph Store HTTP Protocol; "
                                      b"writes need the auth)\n"), "text/plain")
                return
            store = current()
            if url.path == "/query":
                self._answer(200, *_query(store, self.command, params, self._text(), self.headers))
            elif url.path == "/update":
                with self.server.writing():
                    _update(store, self.command, params, self._text(), self.headers)
                self._answer(204, b"", None)
            elif reads:  # /store, streamed without holding up writes
                self._answer(*_graph_store(store, self.command, params, io.BytesIO(), self.headers))
            else:  # received whole before the lock is taken: a client that stalls holds up no other write
                with self._spooled() as body, self.server.writing():
                    self._answer(*_graph_store(store, self.command, params, body, self.headers))

        def _authorize(self) -> None:
            given = self.headers.get("Authorization")
            scheme, _, credentials = (given or "").strip().partition(" ")
            # the scheme in any case (RFC 9110); bytes, as a header may hold any octet
            if not (scheme.lower() == "basic"
                    and hmac.compare_digest(credentials.strip().encode("latin-1", "replace"), expected)):
                raise _Refused(401, "updates need HTTP basic auth (user filtag-kg)" if given is None else
                               "wrong credentials: updates need HTTP basic auth with user filtag-kg and the password "
                               "`filtag-kg serve` printed or took from $FILTAG_KG_PASSWORD",
                               {"WWW-Authenticate": 'Basic realm="filtag-kg updates"'})

        def _text(self) -> bytes:
            """The request body whole (a query, an update, a form), refused above MAX_TEXT bytes."""
            body = bytearray()
            for piece in self._pieces():
                body += piece
                if len(body) > MAX_TEXT:
                    raise _Refused(413, f"the request body is over {MAX_TEXT:,} bytes, the most a query or update "
                                        "may be: send data by the Graph Store HTTP Protocol (/store)")
            return bytes(body)

        def _spooled(self) -> IO[bytes]:
            """The request body (a graph store write) in a temporary file, kept in memory up to
            SPOOLED bytes."""
            body = tempfile.SpooledTemporaryFile(SPOOLED, prefix="filtag-kg-serve-")
            try:
                for piece in self._pieces():
                    body.write(piece)
                body.seek(0)
            except BaseException:
                body.close()
                raise
            return body

        def _discard(self) -> None:
            """Read to its end, keeping none of it, the body of a request answered without it (refused,
            OPTIONS), so that its client, which sends all of it before reading, gets the answer instead
            of a connection reset."""
            for _ in self._pieces():
                pass

        def _pieces(self) -> Iterator[bytes]:
            """The request body in pieces of at most 64 KiB, once."""
            if not self._unread:
                return
            self._unread = False
            try:
                if "chunked" not in self.headers.get("Transfer-Encoding", "").lower():
                    left = int(self.headers.get("Content-Length") or 0)
                    if left < 0:
                        raise ValueError(left)
                    while left and (piece := self.rfile.read(min(left, 65536))):
                        left -= len(piece)
                        yield piece
                    if left:  # the client went away: what arrived may end at a line, and parse, but is not all
                        raise _Refused(400, f"the request body ended {left:,} bytes before its Content-Length")
                    return
                while size := int(self.rfile.readline().split(b";")[0].strip(), 16):
                    while size and (piece := self.rfile.read(min(size, 65536))):
                        size -= len(piece)
                        yield piece
                    self.rfile.readline()  # the CRLF after the chunk
                while self.rfile.readline().strip():  # trailer lines, up to the empty one
                    pass
            except ValueError:
                raise _Refused(400, "bad Content-Length or chunk size") from None

        def _answer(self, status: int, payload: Payload, kind: str | None, extra: dict[str, str] | None = None) -> None:
            """Answer with `payload`, bytes or a function writing them: streamed (`_Body`: a graph or
            query answer of millions of triples is not held in memory), in chunks, so that a client
            can tell an answer cut off by an error from a whole one, to an HTTP/1.0 client ended by
            closing; to a HEAD request with the headers only. One request per connection."""
            chunked = not isinstance(payload, bytes) and self.request_version != "HTTP/1.0"

            def begin() -> None:
                self.send_response(status)
                if kind is not None:
                    self.send_header("Content-Type", kind)
                if isinstance(payload, bytes):
                    framing = {"Content-Length": str(len(payload))}
                else:
                    framing = {"Transfer-Encoding": "chunked"} if chunked else {}
                for k, v in {**framing, **(extra or {}), "Connection": "close"}.items():
                    self.send_header(k, v)
                self.end_headers()
                self._answered = True

            if isinstance(payload, bytes) or self.command == "HEAD":
                begin()
                if self.command != "HEAD":
                    self.wfile.write(payload)
                return
            body = _Body(self.wfile, begin, chunked)
            payload(body)
            body.end()

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = _handle

    try:
        return _Server(("127.0.0.1", port), Handler, current)
    except OSError as e:
        raise UserError(f"--port {port}: cannot listen on 127.0.0.1:{port} ({e.strerror or e})") from None


class _Server(ThreadingHTTPServer):
    """The HTTP server over the store `current()` gives, flushing the store's writes from RocksDB's
    write-ahead log into its data files within about a second: a server killed outright (SIGKILL, a crash) then leaves
    only the writes of its last moments in the log, which every read-only opening of the store
    replays until it is next opened for writing (measured on the demo store after PUTs of 400,000
    triples: 250 MB of log, 18 s per read-only opening instead of 0.3 s). Not after every write:
    a flush takes some 35 ms (300 small updates took 11 s instead of 0.01 s)."""

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 current: Callable[[], Store]) -> None:
        super().__init__(address, handler)
        self.current = current
        self.lock = threading.Lock()  # a PUT's check for its graph and its replacement, apart from other writes
        self.written = False  # whether the store took writes since its last flush
        self.flushed = time.monotonic()

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the write lock; the store may then have writes to flush, also if this one failed."""
        with self.lock:
            try:
                yield
            finally:
                self.written = True

    def service_actions(self) -> None:
        """Flush writes at most every FLUSH_EVERY seconds (`serve_forever` calls this between requests
        and every half second); a flush that fails (a full disk) is tried again, the writes stay in the log."""
        if self.written and time.monotonic() - self.flushed >= FLUSH_EVERY:
            self.written, self.flushed = False, time.monotonic()
            try:
                self.current().flush()
            except OSError:
                self.written = True


class _Body:
    """A writable stream for a streamed answer's body. Its first HELD_BACK bytes are held back before
    `begin` sends the status line and headers, so that an answer failing early (a query whose SERVICE
    cannot be reached, after the results' head was written) is answered with its error status, as a
    whole answer is, instead of a 200 cut off without a word; then what is written is sent on, as
    HTTP/1.1 chunks if `chunked`."""

    def __init__(self, out: BinaryIO, begin: Callable[[], None], chunked: bool) -> None:
        self.out, self.begin, self.chunked = out, begin, chunked
        self.held: bytearray | None = bytearray()  # None once begun

    def write(self, data: bytes) -> int:
        if self.held is None:
            self._send(data)
        else:
            self.held += data
            if len(self.held) >= HELD_BACK:
                self._release()
        return len(data)

    def flush(self) -> None:
        if self.held is None:
            self.out.flush()

    def end(self) -> None:
        """The body is complete: begin the answer if not yet done, and end it."""
        if self.held is not None:
            self._release()
        if self.chunked:
            self.out.write(b"0\r\n\r\n")

    def _release(self) -> None:
        held, self.held = bytes(self.held or b""), None
        self.begin()
        self._send(held)

    def _send(self, data: bytes) -> None:
        if data:
            self.out.write(b"%X\r\n%s\r\n" % (len(data), data) if self.chunked else data)


class _Reopening:
    """The embedded store at `path` opened read-only, and opened again once a process opened it for
    writing since (RocksDB then names a new MANIFEST in its CURRENT file) or a rebuild replaced its
    directory: a read-only opening reads the store's files as they were when it opened, and fails
    on those a later load, drop or compaction removed. While the store cannot be opened read-only
    (a process has it open for writing, a load or drop is half done), requests get 503 saying why."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.store: Store | None = None
        self.version: tuple[int, int, bytes] | None = None
        self._open()  # a store that cannot be served now is refused at once, with its reason

    def current(self) -> Store:
        """The store as it is now (opened again if it changed)."""
        with self.lock:
            try:
                if self.store is None or _version(self.path) != self.version:
                    self._open()
            except (UserError, OSError) as e:
                raise _Refused(503, f"the store cannot be read now: {e}", {"Retry-After": RETRY_AFTER}) from None
            assert self.store is not None
            return self.store

    def _open(self) -> None:
        self.store = None  # (answers still streaming from the old opening keep it until they end)
        version = _version(self.path)  # before opening: a change while it opens is seen at the next request
        self.store = EmbeddedStore(self.path, read_only=True).oxigraph
        self.version = version


def _version(path: Path) -> tuple[int, int, bytes]:
    """What changes whenever a process opens the store at `path` for writing (RocksDB names a new
    MANIFEST in CURRENT; closing it does not) and when a rebuild replaces its directory."""
    real = path.resolve()
    info = os.stat(real)
    return info.st_dev, info.st_ino, (real / "CURRENT").read_bytes()


def _description(port: int, headers: Any) -> tuple[Payload, str]:
    """The SPARQL 1.1 Service Description of the query endpoint, in the RDF format the Accept header
    asks (default Turtle): its URL, language, result formats and features (the default graph is the
    union of the named graphs; SERVICE is supported)."""
    service = BlankNode()

    def sd(name: str) -> NamedNode:
        return NamedNode(SD + name)

    triples = [Triple(service, NamedNode(RDF + "type"), sd("Service")),
               Triple(service, sd("endpoint"), NamedNode(f"http://127.0.0.1:{port}/query")),
               Triple(service, sd("supportedLanguage"), sd("SPARQL11Query")),
               *(Triple(service, sd("feature"), sd(f)) for f in ("UnionDefaultGraph", "BasicFederatedQuery")),
               *(Triple(service, sd("resultFormat"), NamedNode(f.iri)) for f in (*RESULT_FORMATS, *GRAPH_FORMATS))]
    fmt = _negotiate(headers.get("Accept"), GRAPH_FORMATS, RdfFormat.from_media_type)
    return serialize(triples, format=fmt, prefixes={"sd": SD}), fmt.media_type


def _no_service(path: str) -> _Refused:
    return _Refused(404, f"no such service: {path} (services: /query, /update, /store)")


def _error(e: Exception) -> tuple[int, str, dict[str, str]]:
    """The status, reason and headers answering a request that failed with `e`."""
    if isinstance(e, _Refused):
        return e.status, str(e), e.headers
    if isinstance(e, SyntaxError):  # a query, update or RDF payload that does not parse
        return 400, str(e), {}
    return 500, str(e), {}  # e.g. an update's graph that does not exist (OSError): answered, not dropped


def _reads(path: str, method: str) -> bool:
    """Requests that pass without auth: queries, graph store reads and the service description."""
    return (path == "/query" and method in ("GET", "HEAD", "POST")) or (
        path in ("/", "/store") and method in ("GET", "HEAD"))


def _query(store: Store, method: str, params: dict[str, list[str]], body: bytes, headers: Any) -> tuple[Payload, str]:
    """Run a query (GET ?query=, POST of a form or of the query itself); its results are serialized
    as they are read, as the Accept header asks (default: SPARQL JSON results, Turtle for graphs)."""
    if method not in ("GET", "HEAD", "POST"):
        raise _Refused(405, f"{method} is no way to ask a query: GET or POST it", {"Allow": "GET, HEAD, POST"})
    if method == "POST":
        text, params = _posted(params, body, headers, "query")
    else:
        text = _one(params, "query")
    defaults, named = params.get("default-graph-uri", []), params.get("named-graph-uri", [])
    if defaults or named:  # the protocol's dataset: the graphs named and no others, as Oxigraph's server has it
        results = store.query(text, default_graph=[_iri(g, "default-graph-uri") for g in defaults],
                              named_graphs=[_iri(g, "named-graph-uri") for g in named])
    else:
        results = store.query(text, use_default_graph_as_union=True)
    if isinstance(results, QueryTriples):
        fmt = _negotiate(headers.get("Accept"), GRAPH_FORMATS, RdfFormat.from_media_type)
        return lambda out: results.serialize(out, format=fmt), fmt.media_type
    chosen = _negotiate(headers.get("Accept"), RESULT_FORMATS, QueryResultsFormat.from_media_type)
    if chosen == QueryResultsFormat.CSV and isinstance(results, QuerySolutions):
        return lambda out: _write_csv(results, out), chosen.media_type
    return lambda out: results.serialize(out, format=chosen), chosen.media_type


def _write_csv(solutions: QuerySolutions, out: BinaryIO) -> None:
    """SPARQL 1.1 CSV results, streamed in pieces of about HELD_BACK bytes, every field that holds a comma,
    quote or line break quoted, as the format says: pyoxigraph 0.5.13 leaves IRIs unquoted, so an IRI
    with a comma (`http://e/a,b`) came out as two fields."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(v.value for v in solutions.variables)
    for solution in solutions:
        writer.writerow(csv_cell(term) for term in solution)
        if text.tell() >= HELD_BACK:
            out.write(text.getvalue().encode())
            text.seek(0)
            text.truncate()
    out.write(text.getvalue().encode())


def _update(store: Store, method: str, params: dict[str, list[str]], body: bytes, headers: Any) -> None:
    """Run an update (POST of a form or of the update itself), in one transaction."""
    if method != "POST":
        raise _Refused(405, "updates are POSTed", {"Allow": "POST"})
    text, params = _posted(params, body, headers, "update")
    if params.get("using-graph-uri") or params.get("using-named-graph-uri"):
        raise _Refused(400, "using-graph-uri and using-named-graph-uri are not supported: say USING in the update")
    store.update(text)


def _posted(params: dict[str, list[str]], body: bytes, headers: Any, what: str) -> tuple[str, dict[str, list[str]]]:
    """The query or update (`what`) of a POST, sent as a form (its fields join the URL's parameters,
    returned with it) or directly as application/sparql-`what`."""
    kind = _media_type(headers.get("Content-Type"))
    if kind == "application/x-www-form-urlencoded":
        params = {**params, **parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)}
        return _one(params, what), params
    if kind != f"application/sparql-{what}":
        raise _Refused(415, f"{'an' if what == 'update' else 'a'} {what} is POSTed as application/sparql-{what} "
                            f"or a form, not {kind or 'without a type'}")
    try:
        return body.decode("utf-8"), params
    except UnicodeDecodeError as e:
        raise _Refused(400, f"the {what} is not UTF-8 ({e})") from None


def _graph_store(store: Store, method: str, params: dict[str, list[str]], body: IO[bytes],
                 headers: Any) -> tuple[int, Payload, str | None]:
    """The Graph Store HTTP Protocol on ?graph=IRI or ?default (GET of neither: the whole dataset);
    `body`: a write's payload."""
    if "graph" in params:
        graph: NamedNode | DefaultGraph | None = _iri(_one(params, "graph"), "graph")
    else:
        graph = DefaultGraph() if "default" in params else None
    exists = graph is None or isinstance(graph, DefaultGraph) or store.contains_named_graph(graph)
    if method in ("GET", "HEAD"):
        if not exists:
            raise _Refused(404, f"no graph {graph}")
        if graph is None:
            fmt = _negotiate(headers.get("Accept"), QUAD_FORMATS, RdfFormat.from_media_type)
            return 200, lambda out: serialize(store, out, fmt), fmt.media_type
        fmt = _negotiate(headers.get("Accept"), GRAPH_FORMATS, RdfFormat.from_media_type)
        triples = (q.triple for q in store.quads_for_pattern(None, None, None, graph))
        return 200, lambda out: serialize(triples, out, fmt), fmt.media_type
    if graph is None:
        raise _Refused(400, "name the graph: ?graph=IRI or ?default")
    if method == "DELETE":
        if not exists:
            raise _Refused(404, f"no graph {graph}")
        store.update(f"DROP {_graph_ref(graph)}")
        return 204, b"", None
    if method not in ("PUT", "POST"):
        raise _Refused(405, f"{method} is not a graph store method", {"Allow": "GET, HEAD, PUT, POST, DELETE"})
    kind = _media_type(headers.get("Content-Type"))
    fmt = RdfFormat.from_media_type(kind) if kind else None
    if fmt is None or fmt in QUAD_FORMATS:
        raise _Refused(415, f"unsupported RDF media type {kind or '(none)'}: send "
                            f"{', '.join(f.media_type for f in TRIPLE_FORMATS)}")
    if method == "POST" or not exists:  # into the graph as it is: one transaction
        store.load(body, format=fmt, to_graph=graph)
    else:
        staging = NamedNode(f"{STAGING}{uuid.uuid4().hex}")  # parsed whole before the graph is touched
        store.load(body, format=fmt, to_graph=staging)
        store.update(f"MOVE SILENT GRAPH {staging} TO {_graph_ref(graph)}")  # the replacement: one transaction
    if isinstance(graph, NamedNode):
        store.add_graph(graph)  # given no triples, it exists too (empty): a 201 names a graph that is there
    return (201 if not exists else 204), b"", None


def _graph_ref(graph: NamedNode | DefaultGraph) -> str:
    """A graph as SPARQL Update names it: DEFAULT or GRAPH <iri>."""
    return "DEFAULT" if isinstance(graph, DefaultGraph) else f"GRAPH {graph}"


def _iri(value: str, name: str) -> NamedNode:
    try:
        return NamedNode(value)
    except ValueError as e:
        raise _Refused(400, f"{name} {value!r} is not an IRI ({e})") from None


def _one(params: dict[str, list[str]], name: str) -> str:
    values = params.get(name, [])
    if len(values) != 1:
        raise _Refused(400, f"expected one {name} parameter, got {len(values)}")
    return values[0]


def _media_type(header: str | None) -> str:
    return (header or "").split(";")[0].strip().lower()


def _negotiate(accept: str | None, formats: Sequence[F], parse: Callable[[str], F | None]) -> F:
    """The format the Accept header prefers among `formats` (the first of them for */* or no header)."""
    ranges = []
    for i, part in enumerate((accept or "*/*").split(",")):
        media, *options = (p.strip() for p in part.split(";"))
        quality = next((o[2:] for o in options if o.startswith("q=")), "1")
        try:
            q = float(quality)
        except ValueError:
            q = 0.0
        if q > 0 and media:
            ranges.append((-q, i, media.lower()))
    for _, _, media in sorted(ranges):
        if media == "*/*":
            return formats[0]
        if media.endswith("/*"):
            found = next((f for f in formats if f.media_type.startswith(media[:-1])), None)
        else:
            parsed = parse(media)
            found = parsed if parsed in formats else None
        if found is not None:
            return found
    raise _Refused(406, f"cannot answer in {accept}: available {', '.join(f.media_type for f in formats)}")
