"""CLI commands of this area (registered by filtag_kg.cli). Heavy imports stay inside commands.

`filtag-kg link wordnet|conceptnet`: link a tagging run in the store to WordNet 3.0 (classes →
synsets, hypernym closure, coarse concepts of every filter) or to ConceptNet 5 (classes → concepts,
their weighted edges), written to the run's "wordnet" / "conceptnet" named graph.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click

from ..errors import UserError
from .kg import _HTTP_OPTIONS, _only_run, _open_store


def _store_options(f: Any) -> Any:
    for option in reversed((
        click.option("--store", type=click.Path(path_type=Path),
                     help="Embedded store directory (default: 'store' in the filtag-kg data folder)."),
        click.option("--endpoint", help="Base URL of a SPARQL server with /query, /update, /store (Oxigraph)."),
        _HTTP_OPTIONS[0],  # --user (the server's own --timeout and --retries are its defaults here)
        click.option("--run", "run", help="The tagging run: its IRI or id, as `filtag-kg query runs` lists it (default: the only one in the store)."),
    )):
        f = option(f)
    return f


_API_OPTIONS = ("api", "offline", "cache", "interval", "timeout", "retries")  # of `link conceptnet` without --dump


def _refuse_api_options_with_dump(ctx: click.Context) -> None:
    """Refuse options of the web API given with --dump, which reads the dump alone: they were ignored
    without a word (an --api of one's own server or --offline did not apply)."""
    from click.core import ParameterSource

    given = [f"--{name}" for name in _API_OPTIONS
             if ctx.get_parameter_source(name) not in (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)]
    if given:
        raise UserError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to the ConceptNet web API, "
                        "but --dump reads the local dump instead: give either --dump or the API's options")


def _not_nan(ctx: click.Context, param: click.Parameter, value: float) -> float:
    """Refuse NaN, which click's FloatRange lets through (it compares false with both bounds): `--share
    nan` was refused by coarsening without naming the option."""
    if math.isnan(value):
        raise click.BadParameter(f"{value} is not a number")
    return value


def _nothing_linked(run: str, n_classes: int, mapping: Path | None) -> str:
    """The refusal of a WordNet linking in which no class of `run` found a synset: its graph would
    hold no link and no coarse concept, and replace the run's WordNet graph of an earlier linking."""
    given = f"the mapping file {mapping} maps none of them either; " if mapping else ""
    return (f"no class of run {run} is linked to WordNet (none of its {n_classes} classes found a synset; "
            f"{given}see the 'unmatched' lines above), so the store is unchanged: give their synsets with "
            "--mapping FILE, a file of 'label<TAB>synset' lines such as 'tabby<TAB>tabby.n.01'")


def register(cli: click.Group) -> None:
    """Add this area's commands to the main group."""

    @cli.group()
    def link() -> None:
        """Link a tagging run to WordNet or ConceptNet (coarse concepts of filters, semantic grouping)."""

    @link.command("wordnet")
    @_store_options
    @click.option("--wordnet", "wordnet_dir", type=click.Path(path_type=Path),
                  help="Directory of WordNet 3.0 dict files (default: $FILTAG_KG_WORDNET, else NLTK data, else "
                       "/usr/share/wordnet).")
    @click.option("--mapping", type=click.Path(path_type=Path),
                  help="File of 'label<TAB>synset' lines (synset as cow.n.01, or as its offset-pos 02403454-n or "
                       "wnid n02403454) overriding the synset of those labels, wnid classes too; a class's key "
                       "(its wnid, or crane~134 as the report names it) instead of a label maps that class alone.")
    @click.option("--share", type=click.FloatRange(0, 1, min_open=True), default=2 / 3, show_default="2/3",
                  callback=_not_nan,
                  help="Share of a filter's tags the 'share' concept must cover.")
    @click.option("--layer", "layers", multiple=True,
                  help="Coarsen only these layers (repeatable); the coarse concepts of the others stay as they are.")
    def link_wordnet_command(store: Path | None, endpoint: str | None, user: str | None, run: str | None,
                             wordnet_dir: Path | None, mapping: Path | None, share: float,
                             layers: tuple[str, ...]) -> None:
        """Link classes to WordNet synsets, add their hypernym closure and each filter's coarse concepts."""
        from ..kg.coarsen import layer_summary, link_wordnet, other_layers_concepts, tags_from_store
        from ..kg.export import tag_class_keys
        from ..kg.vocab import minter_of_run
        from ..kg.wordnet import WordNet, read_mapping

        with _open_store(store, endpoint, user, read_only=False) as db:
            iri = _only_run(db, run)
            tags, ids = tags_from_store(db, iri)
            unknown = set(layers) - set(tags.layers)
            if unknown:
                raise UserError(f"--layer {', '.join(sorted(unknown))}: not tagged in run {iri}; layers: {', '.join(tags.layers)}")
            wordnet = WordNet.load(wordnet_dir)
            minter = minter_of_run(iri)
            kept = other_layers_concepts(db, minter.run_graph(ids.tagging, "wordnet"), layers) if layers else []
            overrides = read_mapping(mapping, wordnet, tags.classes, tag_class_keys(tags)) if mapping else None
            result = link_wordnet(tags, wordnet, overrides, share, layers or None, minter, ids, kept)
            click.echo(f"WordNet 3.0 from {wordnet.source}")
            click.echo(result.links.summary())
            if not result.links.linked:  # the graph would be emptied, one an earlier --mapping filled too
                raise UserError(_nothing_linked(iri, len(result.links.links), mapping))
            n = db.load(result.quads, result.graph)
            for layer in result.layers:
                click.echo(layer_summary(layer))
            click.echo(f"{n:,} triples in graph <{result.graph.value}>")

    @link.command("conceptnet")
    @_store_options
    @click.option("--dump", type=click.Path(path_type=Path),
                  help="Local copy of conceptnet-assertions-5.7.0.csv.gz (read instead of the web API).")
    @click.option("--api", default="https://api.conceptnet.io", show_default=True, help="Base URL of the web API.")
    @click.option("--offline", is_flag=True, help="Use only answers cached by earlier runs.")
    @click.option("--cache", type=click.Path(path_type=Path), help="Cache directory (default: the user's cache).")
    @click.option("--interval", type=click.FloatRange(0), default=1.0, show_default=True,
                  help="Minimum seconds between API requests.")
    @click.option("--timeout", type=click.FloatRange(0, min_open=True), default=10.0, show_default=True,
                  help="Seconds to wait for one API answer.")
    @click.option("--retries", type=click.IntRange(0), default=4, show_default=True,
                  help="Retries of a request after a timeout, 429 or 5xx (exponential backoff).")
    @click.option("--partial", is_flag=True,
                  help="Write the graph even when some concepts could not be fetched (without their edges; "
                       "not when none was).")
    def link_conceptnet_command(store: Path | None, endpoint: str | None, user: str | None, run: str | None,
                                dump: Path | None,
                                api: str, offline: bool, cache: Path | None, interval: float, timeout: float,
                                retries: int, partial: bool) -> None:
        """Link classes to ConceptNet concepts and import their IsA, PartOf, … edges with weights.
        The run's ConceptNet graph is replaced only when every concept was fetched (or with --partial,
        some), so an API that is down does not empty a graph an earlier run filled."""
        from ..kg.coarsen import tags_from_store
        from ..kg.conceptnet import ConceptNetClient, link_conceptnet
        from ..kg.vocab import minter_of_run

        if dump is not None:
            _refuse_api_options_with_dump(click.get_current_context())
        with _open_store(store, endpoint, user, read_only=False) as db:
            iri = _only_run(db, run)
            tags, ids = tags_from_store(db, iri)
            client = None if dump else ConceptNetClient(api, cache, offline, interval, timeout, retries)
            result = link_conceptnet(tags, client, dump, minter_of_run(iri), ids)
            click.echo(result.edges.summary())
            if not result.concepts:  # the graph would be emptied, one an earlier linking filled too
                raise UserError(f"no class of run {iri} is linked to ConceptNet (none of its {len(tags.classes)} "
                                "class labels gives a ConceptNet term; see the 'skipped' lines above), so the store "
                                "is unchanged")
            n_missing, n_concepts = len(result.edges.missing), len(set(result.concepts.values()))
            if n_missing and (not partial or n_missing >= n_concepts):
                again = ("run again without --offline to fetch them" if offline
                         else "run again (what was fetched is cached)")
                raise UserError(f"{n_missing} of {n_concepts} concepts could not be fetched, so the store is unchanged: "
                                + (f"{again}; --partial writes the graph without some concepts, not without all"
                                   if partial else f"{again}, or pass --partial to write the graph without them"))
            n = db.load(result.quads, result.graph)
            click.echo(f"{n:,} triples in graph <{result.graph.value}>")
