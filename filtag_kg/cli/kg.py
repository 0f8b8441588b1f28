"""CLI commands of the knowledge graph (registered by filtag_kg.cli). Heavy imports stay inside commands.

export (tag set -> RDF file), load (into the embedded store), drop (graphs or a run), upgrade (a
store of a format before 2026-12-03), push (to a SPARQL 1.1 server), import-filtag (the FilTag
authors' tag files), publish (DCAT + schema.org description with distributions), serve (the store
as a SPARQL endpoint on loopback), query (bundled SPARQL queries or a file, with typed parameters),
graph (filter-class / class-class graphs as GraphML).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from ..errors import UserError
from ..kg.export import SIMILAR_CLASSES

PASSWORD_ENV = "FILTAG_KG_PASSWORD"


def _minter(base: str | None) -> Any:
    from ..kg.vocab import DEFAULT_BASE, Minter

    try:
        return Minter(base or DEFAULT_BASE)
    except ValueError as e:
        raise UserError(f"--base: {e}") from None


def _source_quads(
    source: Path, base: str | None, progress: bool = True, similar_classes: int = SIMILAR_CLASSES,
    into: Any = None, fmt: str | None = None, graph: str | None = None,
) -> Iterator[Any]:
    """Quads of a tag-set folder (exported on the fly) or of an RDF file (parsed as it streams), in
    `fmt` or the format its extension names. A file in a triple format goes whole into `graph` if
    given, else it must be a tag set's export, whose triples go back into the graphs it was exported
    from. `into`: the store they go to, which must not hold the tag set's label space with other classes."""
    from pyoxigraph import RdfFormat

    from ..kg.export import check_label_space, export_in_graphs, export_tags, rdf_format
    from ..records import TagSet

    if source.is_dir():
        if fmt is not None:
            raise UserError(f"--format {fmt}: {source} is a tag set folder, not an RDF file")
        try:
            tags = TagSet.load(source)
        except FileNotFoundError as e:
            raise UserError(str(e)) from None
        minter = _minter(base)
        if into is not None:
            check_label_space(into, tags, minter)
        return export_tags(tags, minter, progress=progress, similar_classes=similar_classes)
    try:
        rdf = rdf_format(fmt, source)
    except UserError as e:  # a file named without an RDF extension can still be loaded
        raise UserError(f"--format {fmt}: {e}" if fmt else f"{source}: {e} (give it with --format)") from None
    parse_format = RdfFormat.JSON_LD if rdf == "jsonld" else rdf
    if graph is None and not parse_format.supports_datasets:
        return export_in_graphs(lambda: (q.triple for q in _parsed(source, parse_format)), str(source), into)
    return _parsed(source, parse_format)


def _parsed(source: Path, fmt: Any) -> Iterator[Any]:
    """Parse an RDF file as it streams; syntax errors name the file."""
    from pyoxigraph import parse

    try:
        yield from parse(path=str(source), format=fmt)
    except SyntaxError as e:
        raise UserError(f"{source}: not valid {fmt.name}: {e}") from None


def _store_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--store", type=click.Path(path_type=Path),
                        help="Embedded store directory (default: 'store' in the filtag-kg data folder).")(f)


def _similar_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--similar-classes", type=click.IntRange(min=0), default=SIMILAR_CLASSES, show_default=True,
        help="For a tag set: per class and selection, how many of the classes sharing most filters with it "
             "the export lists (the similar-classes query reads them).")(f)


def _format_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--format", "-f", "fmt", help="RDF format of a SOURCE file: turtle, ntriples, nquads, trig, "
                                                      "rdfxml or jsonld (default: from its extension).")(f)


def _base_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--base", help="Base IRI of minted nodes (default https://w3id.org/filtag-kg/id/).")(f)


# HTTP options of every command that talks to a SPARQL server
_HTTP_OPTIONS = (
    click.option("--user", help=f"HTTP basic auth user (password from ${PASSWORD_ENV} or a prompt)."),
    click.option("--timeout", default=60.0, show_default=True, type=click.FloatRange(0, min_open=True),
                 help="Seconds per HTTP request."),
    click.option("--retries", default=4, show_default=True, type=click.IntRange(0),
                 help="Retries of transient HTTP errors."),
)


def _remote_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed((
        click.option("--endpoint", required=True,
                     help="Base URL of the server (Oxigraph: /query, /update, /store below it)."),
        click.option("--query-url", help="Query endpoint, if not ENDPOINT/query."),
        click.option("--update-url", help="Update endpoint, if not ENDPOINT/update."),
        click.option("--store-url", help="Graph Store Protocol endpoint, if not ENDPOINT/store (Fuseki: /ds/data)."),
        *_HTTP_OPTIONS,
    )):
        f = option(f)
    return f


def _remote(endpoint: str, query_url: str | None, update_url: str | None, store_url: str | None,
            user: str | None, timeout: float, retries: int) -> Any:
    from ..kg.store import RemoteStore

    base = endpoint.rstrip("/")
    auth = None
    if user:
        password = os.environ.get(PASSWORD_ENV)
        try:
            password = password or click.prompt(f"password for {user}", hide_input=True)
        except click.exceptions.Abort:
            if sys.stdin.isatty():  # Ctrl-C at the prompt
                raise
            raise UserError(f"--user {user}: no password: set ${PASSWORD_ENV}, or give it on standard input "
                            "(which ended)") from None
        auth = (user, password)
    return RemoteStore(query_url or f"{base}/query", update_url or f"{base}/update", store_url or f"{base}/store",
                       auth=auth, timeout=timeout, retries=retries)


def _only_run(db: Any, run: str | None) -> str:
    """The run given (`named_run`: checked here, as the queries' '--param run' error named an option not
    given), or the only tagging run in the store."""
    from ..kg.store import named_run

    if run:
        return named_run(db, run)
    rows = db.query("SELECT DISTINCT ?run WHERE { ?run a <https://w3id.org/filtag-kg/ontology#TaggingRun> }")
    runs = sorted(r["run"].value for r in rows)
    if not runs:  # "--run is needed" sent the user looking for a run to name
        where = getattr(db, "path", None) or getattr(db, "query_url", db)
        raise UserError(f"the store {where} holds no tagging run: load one first "
                        "(`filtag-kg load TAGS_DIR`, or `filtag-kg import-filtag FILE`)")
    if len(runs) > 1:
        listed = "\n  ".join(runs)
        raise UserError(f"--run is needed: the store holds {len(runs)} tagging runs:\n  {listed}")
    return runs[0]


def register(cli: click.Group) -> None:
    """Add this area's commands to the main group."""

    @cli.command("export")
    @click.argument("tags_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
    @click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path),
                  help="Output file (format from its extension unless --format); default: standard output.")
    @click.option("--format", "-f", "fmt",
                  help="turtle, ntriples, nquads, trig, rdfxml or jsonld (default: from --out, else trig).")
    @_base_option
    @_similar_option
    @click.option("--validate", is_flag=True, help="Check the export against the SHACL shapes (in memory).")
    def export_command(
        tags_dir: Path, out: Path | None, fmt: str | None, base: str | None, similar_classes: int, validate: bool,
    ) -> None:
        """Write a tag set (folder from `filtag-kg tag`) as RDF: network, filters, classes, tags, provenance."""
        import sys

        from ..kg.export import validate as shacl_validate
        from ..kg.export import write

        if fmt is None and out is None:
            fmt = "trig"
        quads = _source_quads(tags_dir, base, progress=out is not None, similar_classes=similar_classes)
        if validate:
            quads = list(quads)
            conforms, report = shacl_validate(quads)
            if not conforms:
                raise UserError(f"the export of {tags_dir} does not conform to the shapes:\n{report}")
        n = write(quads, out if out is not None else sys.stdout.buffer, fmt)
        if out is not None:
            click.echo(f"{n:,} statements -> {out}", err=True)

    @cli.command("load")
    @click.argument("source", type=click.Path(exists=True, path_type=Path))
    @_store_option
    @click.option("--graph", help="Load everything into this named graph (a file in a triple format that is not "
                                  "a tag set's export needs one).")
    @_format_option
    @_base_option
    @_similar_option
    @click.option("--optimize/--no-optimize", default=None,
                  help="Compact the store after loading, or not (default: after loads of a million quads or more). "
                       "Compacting makes queries several times faster after a big load and rewrites the whole store.")
    def load_command(
        source: Path, store: Path | None, graph: str | None, fmt: str | None, base: str | None,
        similar_classes: int, optimize: bool | None,
    ) -> None:
        """Load a tag set folder or an RDF file into the embedded store, replacing the graphs it fills."""
        from ..kg.store import loading_into

        with loading_into(store) as db:
            n = db.load(_source_quads(source, base, similar_classes=similar_classes, into=db, fmt=fmt, graph=graph), graph,
                        progress=True, optimize=optimize)
            click.echo(f"{n:,} statements loaded into {db.path} ({len(db):,} in the store)")

    @cli.command("drop")
    @click.argument("graphs", nargs=-1)
    @click.option("--run", help="Drop this tagging run's graphs (its IRI or id): the one holding it and those minted beside it "
                                "(explanations, WordNet and ConceptNet links); the network and class graphs stay.")
    @_store_option
    @_query_remote_options
    def drop_command(graphs: tuple[str, ...], run: str | None, store: Path | None, endpoint: str | None,
                     user: str | None, timeout: float, retries: int) -> None:
        """Remove named GRAPHS (IRIs) or a tagging run (--run) from the store or a SPARQL server.
        Graphs not in the store are an error and nothing is dropped. In the embedded store a graph of
        a million statements or more that outweighs the rest is dropped by rebuilding the store
        without it (seconds for a full-size VGG16 run), a smaller one statement by statement; a drop
        that is interrupted is finished before the next load or drop, or when the store is next opened."""
        import json

        from ..kg.store import named_run, run_graphs

        if not graphs and not run:
            raise UserError("name the graphs to drop (IRIs) or a tagging run (--run IRI)")
        request = json.dumps({"graphs": graphs, "run": run})
        # a store of before 2026-12-01 opens too: its graphs can be dropped without upgrading them first
        with _open_store(store, endpoint, user, timeout, retries, read_only=False, upgrade=True) as db:
            present = {g.value for g in db.graphs()}
            # this very drop, interrupted before: the graph it was dropping was finished when the store
            # opened, and the graphs it names that are gone are gone by it
            again = db.finished_drop is not None and db.finished_request == request
            if again or db.finished_drop in graphs:
                click.echo(f"dropped {db.finished_drop} (finishing the interrupted drop)")
            missing = [g for g in graphs if g not in present and g != db.finished_drop and not again]
            if missing:
                raise UserError(f"not in {endpoint or db.path}: graph(s) {', '.join(missing)}; nothing dropped")
            chosen = list(dict.fromkeys(graphs))
            if run:
                try:  # the run's graphs, the one holding it last
                    chosen = list(dict.fromkeys([*chosen, *(g.value for g in run_graphs(db, named_run(db, run)))]))
                except UserError:
                    if not again:  # (else the graph holding the run was the one finished)
                        raise
            for g in (g for g in chosen if g in present):
                n = db.drop(g, progress=True, request=request)
                click.echo(f"dropped {g} ({n:,} statements)")

    @cli.command("upgrade")
    @_store_option
    @_query_remote_options
    def upgrade_command(store: Path | None, endpoint: str | None, user: str | None, timeout: float,
                        retries: int) -> None:
        """Upgrade in place a store (or, with --endpoint, a SPARQL server) filled by a filtag-kg of
        before 2026-12-03 (it is refused until then): tags linked to their selection instead of its
        layer summary (until 2026-12-01), runs named with prov:wasDerivedFrom instead of
        prov:wasInfluencedBy, WordNet coarse concepts without their filter's tag classes (both until
        2026-12-03). One transaction per layer of a selection and per graph, so an interrupted upgrade
        is resumed by running it again."""
        with _open_store(store, endpoint, user, timeout, retries, read_only=False, upgrade=True) as db:
            where = endpoint or db.path
            graphs = db.legacy_graphs()
            if not graphs:
                click.echo(f"{where} is up to date")
                return
            click.echo(f"rewriting {len(graphs)} graph(s), one transaction per layer summary and graph "
                       "(a full VGG16 run takes minutes) ...", err=True)
            n = db.upgrade(progress=True)
            click.echo(f"{n:,} links rewritten in {where}")

    @cli.command("push")
    @click.argument("source", required=False, type=click.Path(exists=True, path_type=Path))
    @_remote_options
    @_store_option
    @click.option("--graph", "graphs", multiple=True,
                  help="With SOURCE: the one graph to push into. Without: the store's graphs to push (default all).")
    @_format_option
    @_base_option
    def push_command(source: Path | None, endpoint: str, query_url: str | None, update_url: str | None,
                     store_url: str | None, user: str | None, timeout: float, retries: int, store: Path | None,
                     graphs: tuple[str, ...], fmt: str | None, base: str | None) -> None:
        """Push a tag set, an RDF file, or graphs of the embedded store to a SPARQL 1.1 server.

        Each graph is replaced whole; a push that fails leaves the server's graphs as they were. One
        killed outright (no chance to clean up), or failing on a request that got no answer (a
        timeout: the server may still carry it out), may leave new graphs in place: the next push
        names them, and pushing the same again completes it. A push of graphs another running push
        is writing is refused.
        """
        import itertools

        from ..kg.store import Store
        from ..kg.vocab import iri

        if source is None and fmt is not None:
            raise UserError(f"--format {fmt}: give the RDF file it is the format of (SOURCE)")
        if source is not None and store is not None:
            raise UserError(f"--store {store}: push either SOURCE ({source}) or the store's graphs, not both")
        remote = _remote(endpoint, query_url, update_url, store_url, user, timeout, retries)

        def push(quads: Iterable[Any], graph: str | None = None) -> int:
            """Push, once what is pushed is checked here: the server is asked nothing before."""
            left = remote.unfinished_pushes()
            if left:
                click.echo(f"warning: a push that did not finish (killed, or still running elsewhere) put graph(s) "
                           f"{', '.join(left)} on the server without the rest of its graphs; push the same again to "
                           "complete it, or drop them", err=True)
            return remote.load(quads, graph, progress=True)

        if source is not None:
            if len(graphs) > 1:
                raise UserError("--graph: give at most one graph when pushing a SOURCE")
            graph = iri(graphs[0], "--graph").value if graphs else None
            n = push(_source_quads(source, base, into=remote, fmt=fmt, graph=graph), graph)
        else:
            with Store(store, read_only=True) as db:
                present = db.graphs()
                chosen = [iri(g, "--graph") for g in graphs] if graphs else present
                missing = [g.value for g in chosen if g not in set(present)]
                if missing:
                    raise UserError(f"--graph {', '.join(missing)}: not in the store {db.path}")
                # all graphs in one push: one commit on the server
                n = push(itertools.chain.from_iterable(db.quads(g) for g in chosen))
        if remote.sent:
            click.echo(f"{n:,} statements pushed to {endpoint}")
        else:  # said 'pushed', also to a server that would have refused a push without credentials
            click.echo(f"{n:,} statements: the server at {endpoint} holds them already; nothing sent")

    @cli.command("import-filtag")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--model", default="VGG16", show_default=True, help="The network the tags are of.")
    @click.option("--layer", default="block5_conv3", show_default=True, help="The layer the tags are of.")
    @click.option("--resolve", "resolutions", multiple=True, metavar="FILTER:LABEL=WNID",
                  help="Class of an ambiguous label in one filter, e.g. 424:crane=n02012849 (repeatable).")
    @_store_option
    @_base_option
    @click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path),
                  help="Also save the tags as a tag set folder (tags.csv + manifest.json).")
    @click.option("--overwrite", is_flag=True, help="Replace the tag set --out holds (else it is refused).")
    def import_filtag_command(file: Path, model: str, layer: str, resolutions: tuple[str, ...], store: Path | None,
                              base: str | None, out: Path | None, overwrite: bool) -> None:
        """Import a FilTag tag file (header, then INDEX:[' label ', ...]) and load it as a tagging run.

        ImageNet labels become wnids; ambiguous and unknown labels are reported, never guessed.
        """
        from ..imagenet import parse_filtag_file
        from ..kg.export import check_label_space, export_tags, run_iri
        from ..kg.store import loading_into
        from .core import tag_set_out

        replacing = out is not None and tag_set_out(out, overwrite)
        resolve: dict[str, str] = {}
        for item in resolutions:
            key, sep, wnid = item.partition("=")
            if not sep:  # FILTER:LABEL is checked by parse_filtag_file
                raise UserError(f"--resolve {item!r}: expected FILTER:LABEL=WNID, e.g. 424:crane=n02012849")
            if resolve.get(key.strip(), wnid.strip()) != wnid.strip():  # the last one won, without a word
                raise UserError(f"--resolve {key.strip()}={resolve[key.strip()]} and --resolve {item}: two classes "
                                f"for one label; give one")
            resolve[key.strip()] = wnid.strip()
        tags, report = parse_filtag_file(file, model=model, layer=layer, resolve=resolve)
        click.echo(report.summary())
        minter = _minter(base)
        # the store first, --out after: a load that failed (a layer too large for the export, another
        # label space in the store) left the tag set in --out behind an exit status of 2
        with loading_into(store) as db:
            check_label_space(db, tags, minter)
            n = db.load(export_tags(tags, minter, progress=True))
            click.echo(f"{len(tags):,} tags of {model} {layer}: {n:,} statements loaded into {db.path}")
        if out is not None:
            tags.save(out)
            click.echo(f"tag set -> {out}" + (" (the tag set that was there is replaced)" if replacing else ""))
        click.echo(f"run: {run_iri(tags, minter)}")

    @cli.command("publish")
    @_store_option
    @click.option("--run", help="The tagging run: its IRI or id, as `filtag-kg query runs` lists it (default: the only one in the store).")
    @click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
                  help="Folder for the distributions, dataset.ttl (DCAT) and dataset.jsonld (schema.org).")
    @click.option("--license", "license_", default="https://creativecommons.org/licenses/by/4.0/", show_default=True,
                  help="License IRI of the published data.")
    @click.option("--creator", required=True, help="Name of the person or organisation publishing.")
    @click.option("--issued", help="Publication date YYYY-MM-DD (default: today).")
    @click.option("--download-url", help="URL the folder will be published at (for download links).")
    def publish_command(store: Path | None, run: str | None, out: Path, license_: str, creator: str,
                        issued: str | None, download_url: str | None) -> None:
        """Write a run's graphs as distributions with a DCAT dataset description and schema.org JSON-LD."""
        from ..kg.fair import publish
        from ..kg.store import Store

        with Store(store, read_only=True) as db:
            result = publish(db, _only_run(db, run), out, license=license_, creator=creator, issued=issued,
                             download_url=download_url, progress=True)
        for path in result.files:
            click.echo(f"{path.stat().st_size:>12,}  {path}")

    @cli.command("serve")
    @_store_option
    @click.option("--port", default=7878, show_default=True, type=click.IntRange(1, 65535), help="Port on 127.0.0.1.")
    @click.option("--allow-updates", is_flag=True,
                  help=f"Accept SPARQL updates and graph store writes, with HTTP basic auth (user 'filtag-kg', "
                       f"password from ${PASSWORD_ENV}, else one printed at start); "
                       "a store not made yet is made, to push into.")
    def serve_command(store: Path | None, port: int, allow_updates: bool) -> None:
        """Serve the store as a SPARQL endpoint on loopback (read-only unless --allow-updates).
        A read-only server opens the store again once a later load or drop changed it (and answers 503,
        try again, while one runs); with --allow-updates it holds the store, and other commands that
        write to it are refused until it stops. Serving read-only needs no write access to the
        store unless a load or drop was interrupted (it is finished first). Stops on Ctrl-C, SIGTERM
        or SIGHUP."""
        from ..config import default_store_path
        from ..kg.fair import serve

        serve(store or default_store_path(), port, allow_updates=allow_updates,
              password=os.environ.get(PASSWORD_ENV), echo=click.echo)

    @cli.command("query")
    @click.argument("name", required=False)
    @click.option("--param", "-p", "params", multiple=True, metavar="NAME=VALUE",
                  help="A query parameter (repeatable); bound as a typed RDF term, never pasted into the text.")
    @click.option("--format", "-f", "fmt", type=click.Choice(["table", "csv", "tsv", "json"]), default="table",
                  show_default=True, help="Output: a table, or W3C SPARQL results CSV, TSV or JSON.")
    @click.option("--list", "list_", is_flag=True, help="List the bundled queries with their parameters.")
    @_store_option
    @_query_remote_options
    def query_command(name: str | None, params: tuple[str, ...], fmt: str, list_: bool, store: Path | None,
                      endpoint: str | None, user: str | None, timeout: float, retries: int) -> None:
        """Run a bundled query (by NAME, see --list) or a .rq file on the store or a SPARQL endpoint."""
        from ..kg import queries

        if list_ or name is None:
            click.echo(_describe_queries(), nl=False)
            return
        query = queries.load(name)
        values: dict[str, str] = {}
        for item in params:
            key, value = _split_param(item)
            if key in values:
                raise UserError(f"--param {key} is given twice ({values[key]!r} and {value!r}); give each once")
            values[key] = value
        with _open_store(store, endpoint, user, timeout, retries) as db:
            results = queries.run(query, db, values)
            click.echo(results.serialize(fmt), nl=False)
            if results.boolean is None and not len(results):
                for note in queries.unmatched_parameters(query, db, values):
                    click.echo(f"Note: {note}", err=True)

    @cli.command("graph")
    @click.option("--run", help="The tagging run: its IRI or id, as `filtag-kg query runs` lists it (default: the only one in the store).")
    @click.option("--method", type=click.Choice(["k-best", "q-quantile"]), default="k-best", show_default=True)
    @click.option("--parameter", type=float, default=1, show_default=True, help="The selection's k or q.")
    @click.option("--layer", help="Only the filters of this layer.")
    @click.option("--kind", type=click.Choice(["filter-class", "class-class"]), default="filter-class",
                  show_default=True, help="Bipartite filter-class graph, or classes joined by shared filters.")
    @click.option("--out", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path),
                  help="GraphML file to write.")
    @_store_option
    @_query_remote_options
    def graph_command(run: str | None, method: str, parameter: float, layer: str | None, kind: str, out: Path,
                      store: Path | None, endpoint: str | None, user: str | None, timeout: float,
                      retries: int) -> None:
        """Write the filter-class or class-class graph of one run's selection as GraphML."""
        from ..kg import graphs

        with _open_store(store, endpoint, user, timeout, retries) as db:
            graph = graphs.store_filter_class_graph(db, _only_run(db, run), method, parameter, layer)
        if kind == "class-class":
            graph = graphs.class_class_graph(graph)
        graphs.write_graphml(graph, out)
        click.echo(f"{kind} graph: {graph.number_of_nodes():,} nodes, {graph.number_of_edges():,} edges -> {out}")


def _query_remote_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options of the commands that query, upgrade or drop from a SPARQL server instead of the embedded store."""
    for option in reversed((
        click.option("--endpoint", help="Use this SPARQL server (base URL; Oxigraph: /query and /update below "
                                        "it) instead of the embedded store."),
        *_HTTP_OPTIONS,
    )):
        f = option(f)
    return f


@contextmanager
def _open_store(store: Path | None, endpoint: str | None, user: str | None = None, timeout: float = 60.0,
                retries: int = 4, read_only: bool = True, upgrade: bool = False) -> Iterator[Any]:
    """The embedded store at `store` (default: the user's; opened for its upgrade with `upgrade`)
    or, with `endpoint`, the SPARQL server below that base URL (Oxigraph layout: /query, /update,
    /store); closed afterwards."""
    if endpoint is not None:
        if store is not None:
            raise UserError("give either --store or --endpoint, not both")
        with _remote(endpoint, None, None, None, user, timeout, retries) as remote:
            yield remote
        return
    from ..kg.store import Store

    with Store(store, read_only=read_only, upgrade=upgrade, create=False) as db:
        yield db


def _split_param(item: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name.strip():
        raise UserError(f"--param {item!r}: expected NAME=VALUE, e.g. --param layer=block5_conv3")
    return name.strip(), value


def _describe_queries() -> str:
    """The bundled queries: name, title, parameters (type and range, optional) and an example."""
    from ..kg import queries

    lines = []
    for name in queries.bundled_names():
        try:
            q = queries.load(name)
        except UserError as e:
            lines.append(f"{name}: (cannot be used: {e})")
            continue
        lines.append(f"{q.name}: {q.title}")
        lines.extend(f"    --param {p.name}=<{p.type}{', ' + p.range_text if p.bounds else ''}>"
                     f"{'' if p.required else ' (optional)'}  {p.description}" for p in q.parameters)
        if q.example:
            lines.append(f"    e.g. {q.example}")
    return "\n".join(lines) + "\n"
