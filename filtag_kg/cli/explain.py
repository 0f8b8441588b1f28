"""CLI of explanations: explain (single images), evaluate (Hits@n over the held-out split), errors."""

from __future__ import annotations

import errno
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from ..config import probe_writable
from ..errors import UserError
from ..records import selection_label, write_output
from .kg import _store_option


def _tags_and_stats(tags_dir: Path | None, stats_dir: Path | None, need_stats: bool) -> tuple[Any, Any]:
    """The tag set and (optionally) the statistics with held-out records; default: the demo's."""
    from ..explain import check_same_network
    from ..records import ActivationStats, TagSet

    tags_dir = tags_dir or _default_tags()
    if not (tags_dir / "tags.csv").is_file():
        hint = " (run `filtag-kg demo` first, or pass --tags)" if tags_dir == _default_tags() else ""
        raise UserError(f"no tag set in {tags_dir}{hint}")
    tags = TagSet.load(tags_dir)
    stats = None
    if stats_dir is not None and not stats_dir.is_dir():
        raise UserError(f"--stats {stats_dir}: no such folder")
    given = stats_dir is not None
    stats_dir = stats_dir or _default_stats(tags, tags_dir)
    # a --stats folder without them is named as such; the default one is read only when needed (explaining
    # image files needs none, and was refused for a 'stats' beside the tags of another model)
    if given or (need_stats and (stats_dir / "manifest.json").is_file()):
        stats = ActivationStats.load(stats_dir)
        stats.require_complete()
        check_same_network(tags, stats, f"the statistics in {stats_dir}", f"the tags in {tags_dir}")
    if need_stats and stats is None:
        recorded = tags.manifest.get("statistics")
        gone = f"; the tags were made from {recorded}, which holds none now" if isinstance(recorded, str) else ""
        raise UserError(f"no statistics in {stats_dir} (the default: 'stats' beside the tags){gone}; pass --stats")
    if need_stats and stats.heldout is None:
        raise UserError(f"no held-out records in {stats_dir}: collect with a held-out split, or pass --stats")
    if need_stats:
        tagged = tags.tagged_layers
        common = [m for m in tagged if m in stats.layers]
        if not common:
            raise UserError(f"the tags in {tags_dir} (tagged layers {', '.join(tagged) or 'none'}) and the statistics "
                            f"in {stats_dir} (layers {', '.join(stats.layers)}) share no layer")
        if len(common) < len(tagged):
            click.echo(f"warning: {stats_dir} lacks the tagged layer(s) "
                       f"{', '.join(m for m in tagged if m not in common)}; explaining with {', '.join(common)}",
                       err=True)
        _warn_if_split_differs(tags, stats, tags_dir, stats_dir)
    return tags, stats


def _default_stats(tags: Any, tags_dir: Path) -> Path:
    """The statistics folder of a tag set when --stats is not given: the one `tag` read (recorded in the
    tag set's manifest as 'statistics') while it still holds statistics, else 'stats' beside the tags (the
    demo's layout). Only the latter was tried: `tag stats_vgg --out tags_vgg` then `evaluate --tags
    tags_vgg` was refused for want of a 'stats' folder the user never made."""
    recorded = tags.manifest.get("statistics")
    if isinstance(recorded, str) and (Path(recorded) / "manifest.json").is_file():
        return Path(recorded)
    return tags_dir.parent / "stats"


def _warn_if_split_differs(tags: Any, stats: Any, tags_dir: Path, stats_dir: Path) -> None:
    """Warn when the held-out images are of the tags' data set split otherwise (another --seed or
    --fraction): some of them are training images the tags were made from, so Hits@n is optimistic."""
    def split(manifest: dict[str, Any]) -> tuple[Any, Any]:
        return (manifest.get("split") or {}).get("fraction"), (manifest.get("split") or {}).get("seed")

    def data(manifest: dict[str, Any]) -> tuple[Any, ...]:  # its images_sha256 covers the split too
        return tuple((manifest.get("dataset") or {}).get(key) for key in ("name", "label_space", "root"))

    if data(stats.manifest) == data(tags.manifest) and split(stats.manifest) != split(tags.manifest):
        (fraction, seed), (tag_fraction, tag_seed) = split(stats.manifest), split(tags.manifest)
        click.echo(f"warning: the held-out images in {stats_dir} are split from the data set of the tags in {tags_dir} "
                   f"with seed {seed} and fraction {fraction}, the tags' z with seed {tag_seed} and fraction "
                   f"{tag_fraction}: some held-out images are images the tags were made from (Hits@n is optimistic)",
                   err=True)


def _check_class_count(loaded: Any, model: str | None, tags: Any, tags_dir: Path) -> None:
    """Refuse a model that scores another number of classes than the tags have, naming both: the
    collection refused it as 'the data set 'images'', a name the user never gave."""
    from ..models import class_count

    n_out = class_count(loaded.model)
    if n_out != len(tags.classes):
        given = f"--model {model}" if model else f"the model recorded with the tags ({loaded.name})"
        raise UserError(f"{given} has {n_out} outputs, but the tags in {tags_dir} are of {len(tags.classes)} "
                        "classes: explain with the model the tags were made with")


def _check_output_file(option: str, path: Path) -> None:
    """Refuse an output file whose folder is missing or cannot be written, before any work (not after
    the results were printed)."""
    folder = path.parent
    if not folder.is_dir():
        problem = f"{folder} is not a folder" if folder.exists() else f"the folder {folder} does not exist"
        raise UserError(f"{option} {path}: {problem}")
    try:
        probe_writable(folder, make=False)
    except OSError as e:
        raise UserError(f"{option} {path}: cannot write into {folder} ({e.strerror or e})") from e


def _check_output_folder(where: str, folder: Path) -> None:
    """Refuse an output folder that cannot be made or written (`where` names it), before any work: the
    evaluation was done first and then failed on it. Nothing is made here (a failed run leaves no folder)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:  # the nearest folder on the path that exists
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(existing))
        probe_writable(existing, make=False)
    except OSError as e:
        raise UserError(f"{where}: cannot write there ({e.strerror or e})") from e


def _parse_selection(text: str) -> tuple[str, float]:
    """(method, k or q) of a --selection as written (`filtag_kg.explain.parse_selection`)."""
    from ..explain import parse_selection

    return parse_selection(text, "--selection")


def _selections(tags: Any, selection: tuple[str, ...]) -> list[tuple[str, float]]:
    if not selection:
        return list(tags.selections)
    chosen = []
    for text in selection:
        key = _parse_selection(text)
        if key not in tags.selections:
            have = ", ".join(selection_label(m, p) for m, p in tags.selections)
            raise UserError(f"--selection {text!r} is not in the tag set; it has: {have}")
        chosen.append(key)
    return list(dict.fromkeys(chosen))  # 'k 5' and 'k-best 5' are one selection, explained once


def _in_given_order(explanations: list[Any], given: list[Sequence[str]]) -> list[Any]:
    """The explanations in the order the images were given (the --heldout ids, then the image files,
    each in command-line order), an image's selections together in the order chosen: they were sorted
    by image id, so 'b.png a.png' was answered 'a.png', 'b.png', and held-out '10' came before '9'."""
    rank: dict[str, tuple[int, int]] = {}
    for group, ids in enumerate(given):
        for position, image_id in enumerate(ids):
            rank.setdefault(image_id, (group, position))
    return sorted(explanations, key=lambda e: rank[e.image_id])  # stable: selections stay in their order


def _class_counts(ctx: click.Context, param: click.Parameter, value: str) -> int | None:
    """--class-counts: a positive integer, or 'all' (None)."""
    if value.strip().lower() == "all":
        return None
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise click.BadParameter(f"{value!r} is neither a positive integer nor 'all'")
    return n


def register(cli: click.Group) -> None:
    """Add the explanation commands to the main group."""

    tags_option = click.option("--tags", "tags_dir", type=click.Path(file_okay=False, path_type=Path),
                               help="Tag set folder (from `filtag-kg tag`; default: the demo's).")
    stats_option = click.option("--stats", "stats_dir", type=click.Path(file_okay=False, path_type=Path),
                                help="Statistics folder with held-out records (default: 'stats' beside the tags).")
    selection_option = click.option("--selection", "-s", multiple=True,
                                    help="Tag selection(s) to use, e.g. 'k-best 5' or 'q-quantile 10' (default: all).")

    @cli.command()
    @click.argument("images", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
    @tags_option
    @stats_option
    @selection_option
    @click.option("--heldout", "heldout_ids", multiple=True, help="Explain held-out images by id (repeatable).")
    @click.option("--model", "-m", help="The model, if not the one recorded with the tags.")
    @click.option("--weights", help="Weights of a keras.applications model, if not the recorded ones.")
    @click.option("--preprocess", metavar="NAME",
                  help="For a --model .keras/.h5 file: its preprocessing, as collect's --preprocess (default: the "
                       "one the tags' statistics were collected with).")
    @click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the explanations as JSON.")
    def explain(images: tuple[Path, ...], tags_dir: Path | None, stats_dir: Path | None, selection: tuple[str, ...],
                heldout_ids: tuple[str, ...], model: str | None, weights: str | None, preprocess: str | None,
                json_out: Path | None) -> None:
        """Explain classifications by the tags of the filters an image activates.

        IMAGES are JPEG/PNG files (the nearest folder on a file's path named by one of the model's class
        labels or ImageNet wnids names its true class, as in an image folder; else it is unknown);
        --heldout explains held-out images of the collection by id.
        """
        from ..explain import explain as run_explain
        from ..explain import shown

        if not images and not heldout_ids:
            raise UserError("give image files to explain, or --heldout ID for images of the held-out split")
        given = next((f"--{name}" for name, value in (("model", model), ("weights", weights), ("preprocess", preprocess))
                      if value), None)
        if not images and given:  # held-out records carry their collection's predictions: ignored
            raise UserError(f"{given} applies to image files; --heldout explains the "
                            "records of the collection, made with its own model")
        if preprocess and not model:  # the recorded model is loaded with its recorded preprocessing
            raise UserError(f"--preprocess {preprocess} goes with --model FILE: the model recorded with the tags "
                            "gets the preprocessing it was collected with")
        if json_out is not None:
            _check_output_file("--json", json_out)
        images, heldout_ids = tuple(dict.fromkeys(images)), tuple(dict.fromkeys(heldout_ids))  # each explained once
        tags, stats = _tags_and_stats(tags_dir, stats_dir, need_stats=bool(heldout_ids))
        chosen = _selections(tags, selection)
        explanations = []
        undecoded: list[str] = []  # image files that could not be decoded
        if heldout_ids:
            positions = {image_id: i for i, image_id in enumerate(stats.heldout.image_ids)}
            missing = [i for i in heldout_ids if i not in positions]
            if missing:
                raise UserError(f"--heldout: no held-out image with id {', '.join(map(shown, missing))} "
                                f"(ids look like {', '.join(map(shown, stats.heldout.image_ids[:3]))})")
            explanations += run_explain(tags, stats.heldout, chosen, [positions[i] for i in heldout_ids])
        if images:
            from ..collection import collect
            from ..data import image_files
            from ..models import has_model_hash, load_from_manifest, names_model_file
            from .core import load_model_option

            source = image_files(images, tags.classes)  # a file missing is named now, not after loading the model
            recorded = tags.manifest.get("model") or {}
            if model and names_model_file(model):  # as collected (it got none: other inputs, other tag counts)
                preprocess = preprocess or recorded.get("preprocess")
            loaded = (load_model_option(model, weights or "imagenet", preprocess=preprocess) if model
                      else load_from_manifest(recorded, weights))
            _check_class_count(loaded, model, tags, tags_dir or _default_tags())
            if has_model_hash(recorded) and loaded.describe().get("hash") != recorded["hash"]:
                click.echo(f"warning: the model {loaded.name!r} is not the one the tags were made with "
                           "(its architecture or weights differ)", err=True)
            records = collect(loaded, source, layers=tags.tagged_layers, splits=["heldout"],
                              progress=False)
            undecoded = records.manifest["skipped"]["heldout"]
            if records.heldout is None:
                raise UserError(f"none of the image files could be decoded: {', '.join(map(shown, undecoded))}")
            explanations += run_explain(tags, records.heldout, chosen)
        explanations = _in_given_order(explanations, [heldout_ids, records.heldout.image_ids if images else []])
        for e in explanations:
            click.echo(e.text(tags.classes))
        if json_out:
            text = json.dumps([e.to_json(tags.classes) for e in explanations], indent=1)
            write_output(json_out, lambda f: f.write(text.encode()))  # whole or not at all: an earlier file kept
            click.echo(f"-> {json_out}")
        if undecoded:  # after the others' explanations; a script must not take the run for a full one
            raise UserError(f"{len(undecoded)} of the {len(images)} image files could not be decoded (damaged, empty, "
                            f"or not JPEG or PNG inside): {', '.join(map(shown, undecoded))}")

    @cli.command()
    @tags_option
    @stats_option
    @click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path),
                  help="Folder for hits.csv, per-class.csv and the plots (default: 'evaluation' beside the tags).")
    @click.option("--max-n", default=50, show_default=True, type=click.IntRange(min=1),
                  help="Hits@n for n = 1 … MAX_N (at most the number of classes).")
    @click.option("--per-class-n", default=1, show_default=True, type=click.IntRange(min=1),
                  help="n of the per-class hit rates correlated with accuracy.")
    @_store_option
    @click.option("--no-store", is_flag=True, help="Do not load the tags and explanations into the store.")
    @click.option("--class-counts", default="50", show_default=True, callback=_class_counts, metavar="N|all",
                  help="Per explanation in the store, the counts of the classes ranked up to N (ties kept) and of "
                       "the true and predicted class; 'all': of every class with a count (at ImageNet scale ~740 "
                       "per explanation).")
    def evaluate(tags_dir: Path | None, stats_dir: Path | None, out: Path | None, max_n: int, per_class_n: int,
                 store: Path | None, no_store: bool, class_counts: int | None) -> None:
        """Hits@n of tag-based explanations over the held-out split, per k and q, with plots; and the
        explanations into the store (for `filtag-kg errors`)."""
        from ..explain import evaluate as run_evaluate
        from ..explain import hits_table, write_evaluation
        from ..kg.explanations import load_explanations

        if no_store and store is not None:  # the --store was ignored without a word
            raise UserError(f"--store {store} and --no-store: give one (--no-store loads nothing into a store)")
        if no_store and click.get_current_context().get_parameter_source("class_counts") is not \
                click.core.ParameterSource.DEFAULT:  # it limits what is loaded, so it was ignored too
            raise UserError("--class-counts and --no-store: give one (--class-counts limits the counts loaded "
                            "into the store)")
        tags, stats = _tags_and_stats(tags_dir, stats_dir, need_stats=True)
        max_n = min(max_n, len(tags.classes))  # beyond, every curve is at 1
        if per_class_n > max_n:
            raise UserError(f"--per-class-n {per_class_n} is more than --max-n or the number of classes ({max_n})")
        if not no_store:
            from ..kg.store import Store

            Store(store).close()  # a store that cannot be opened fails now, not after the evaluation
        given = out is not None
        out = out or (tags_dir or _default_tags()).parent / "evaluation"
        where = f"--out {out}" if given else f"the evaluation folder {out} (default: 'evaluation' beside the tags)"
        _check_output_folder(where, out)
        # the libraries evaluation uses, imported before the clock starts: their 0.45 s of imports was
        # reported as evaluation time, at 24,000 image-selections/s for the 500,000 it reaches
        import scipy.sparse  # noqa: F401
        import scipy.stats  # noqa: F401

        start = time.perf_counter()
        result = run_evaluate(tags, stats.heldout, max_n=max_n, per_class_n=per_class_n)
        seconds = time.perf_counter() - start
        try:
            write_evaluation(result, out)
        except OSError as e:  # a file on the path was a traceback's 'Not a directory', exit 1, the option unnamed
            raise UserError(f"{where}: cannot write there ({e.strerror or e})") from e
        click.echo(hits_table(result))
        click.echo(f"{result.n_images:,} held-out images evaluated for {len(tags.selections)} selections in {seconds:.2f} s "
                   f"({result.n_images * len(tags.selections) / max(seconds, 1e-9):,.0f} image-selections/s) -> {out}")
        if not no_store:
            n = load_explanations(tags, stats, store, progress=True, class_counts=class_counts)
            click.echo(f"{n:,} triples of tags and explanations loaded into the store")
            _note_other_runs(tags, store)

    @cli.command()
    @_store_option
    @click.option("--selection", "-s", default="k-best 5", show_default=True, help="The tag selection to analyse.")
    @click.option("--run", "run_iri", help="The tagging run: its IRI, as `filtag-kg query runs` lists it, or its id "
                  "(the IRI's last part; default: each run with explanations in turn).")
    @click.option("--top", default=5, show_default=True, type=click.IntRange(1), help="How many confused pairs to list.")
    def errors(store: Path | None, selection: str, run_iri: str | None, top: int) -> None:
        """Error analysis of the network through SPARQL over the explanations in the store."""
        from ..kg.error_analysis import error_report
        from ..kg.store import Store
        label = selection_label(*_parse_selection(selection))  # 'k 5' as explain and evaluate take it: 'k-best 5'
        with Store(store, read_only=True, create=False) as db:
            click.echo(error_report(db, label, run_iri, top=top))


def _note_other_runs(tags: Any, store: Path | None) -> None:
    """Name the other runs of the same statistics whose explanations the store holds: after `tag
    --overwrite`, the replaced tag set's run stays (the store may hold its only copy, so it is not
    dropped unasked), and `errors` reports it beside the new one."""
    from ..kg.export import run_ids, run_iri
    from ..kg.store import Store
    from ..kg.vocab import FT, PROV, Minter

    this_run, collection = run_iri(tags), Minter().run(run_ids(tags).collection).value
    with Store(store, read_only=True) as db:
        others = sorted(r for r, in db.rows(f"""SELECT DISTINCT ?run WHERE {{
            GRAPH ?g {{ ?run <{PROV}wasInformedBy> <{collection}> }}
            GRAPH ?h {{ ?explanation a <{FT}Explanation> ; <{PROV}wasInfluencedBy> ?run }} }}""") if r != this_run)
    if others:
        click.echo(f"note: the store also holds explanations of other tag sets of these statistics: {', '.join(others)} "
                   "(`filtag-kg errors` reports each run; `filtag-kg drop --run IRI` removes one)")


def _default_tags() -> Path:
    from ..config import demo_dir

    return demo_dir() / "tags"
