"""The embedded default end to end, as `filtag-kg demo` runs it: no internet, GPU or user files."""

from __future__ import annotations

import time
from pathlib import Path

import click
import numpy as np

from .config import demo_dir
from .records import K_BEST, ActivationStats, TagSet

DEMO_K = (1, 3, 5)
DEMO_Q = (5.0, 10.0, 25.0)


def layer_summary(stats: ActivationStats, tags: TagSet, layer: str, k_many: int = 3) -> str:
    """What the filters of one layer are tagged with: each class's best filter, and multi-tag filters."""
    z = stats.class_means(layer)
    lines = [f"Layer {layer} ({stats.n_filters[layer]} filters), k=1: the filter each class activates most"]
    width = max(len(c) for c in stats.classes)
    per_filter = tags.filter_tags(layer, K_BEST, 1)
    for c, name in enumerate(stats.classes):
        f = int(np.argmax(z[c]))
        others = np.delete(z[:, f], c).mean()
        shared = [stats.classes[o] for o in per_filter[f] if o != c]
        note = f"  (also tag of: {', '.join(shared)})" if shared else ""
        lines.append(f"  {name:<{width}}  filter {f:>3}  z={z[c, f]:.3f}  vs {others:.3f} for other classes{note}")
    if (K_BEST, k_many) in tags.selections:
        many = tags.filter_tags(layer, K_BEST, k_many)
        counts = np.array([len(v) for v in many])
        lines.append(f"k={k_many}: {int((counts > 0).sum())} filters carry tags, {int((counts > 1).sum())} carry several; "
                     "the most shared:")
        for f in np.argsort(-counts, kind="stable")[:3]:
            if counts[f] > 1:
                lines.append(f"  filter {f:>3}: {', '.join(stats.classes[c] for c in many[f])}")
    return "\n".join(lines)


def run_demo(out: Path | None = None, retrain: bool = False, store: Path | None = None) -> Path:
    """Train (once) the default CNN, collect, tag, print what the last layer's filters respond to,
    evaluate the tag-based explanations, load everything into the store, analyse errors, coarsen."""
    from .explain import hits_table, write_evaluation
    from .kg.explanations import load_explanations
    from .collection import collect
    from .data import animal_shape
    from .errors import UserError
    from .explain import evaluate
    from .kg.error_analysis import error_report
    from .kg.export import run_iri
    from .kg.store import Store, run_graphs
    from .models import default_model, default_model_info, default_model_path
    from .tagging import plot_class_means, tag

    out = out or demo_dir()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot make the demo folder {out}: {e.strerror or e}") from e
    Store(store).close()  # a store that cannot be opened fails now, not after the work
    if retrain or not default_model_path().is_file():
        click.echo("Training the default CNN on Animal-Shape (once; about half a minute on 2 cores) ...")
    loaded = default_model(retrain=retrain)
    info = default_model_info()
    click.echo(f"Default CNN: held-out accuracy {info['heldout_accuracy']:.1%} "
               f"(trained in {info['train_seconds']:.0f} s, cached at {default_model_path()})")
    source = animal_shape()
    start = time.perf_counter()
    stats = collect(loaded, source)
    seconds = time.perf_counter() - start
    stats.save(out / "stats")
    click.echo(f"Collected {stats.n_images:,} training and {len(stats.heldout or []):,} held-out images over "
               f"{len(stats.layers)} conv layers ({sum(stats.n_filters.values())} filters) in {seconds:.1f} s")
    tags = tag(stats, k=DEMO_K, q=DEMO_Q)
    previous = _previous_run(out / "tags")
    tags.save(out / "tags")
    plot_class_means(stats, tags, out / "tags")
    click.echo(f"{len(tags):,} tags (k={', '.join(map(str, DEMO_K))}; q={', '.join(f'{q:g}' for q in DEMO_Q)}%) "
               f"-> {out / 'tags'}, with a heatmap of z per layer (z-*.png)\n")
    click.echo(layer_summary(stats, tags, stats.layers[-1]))

    start = time.perf_counter()
    result = evaluate(tags, stats.heldout)
    seconds = time.perf_counter() - start
    written = write_evaluation(result, out / "evaluation")
    click.echo("\n" + hits_table(result))
    click.echo(f"(evaluated in {seconds:.2f} s; table and plots: {', '.join(p.name for p in written[:3])} … "
               f"in {out / 'evaluation'})")
    this_run = run_iri(tags)
    if previous is not None and previous != this_run:  # each demo collects anew: one demo run in the store
        with Store(store) as db:
            try:
                for graph in run_graphs(db, previous):
                    db.drop(graph)
                click.echo(f"\n(the previous demo run {previous} is replaced)")
            except UserError:
                pass  # no longer in the store
    n = load_explanations(tags, stats, store, progress=True)
    click.echo(f"\n{n:,} triples (network, tags, explanations) loaded into the store {store or 'in the data folder'}")
    with Store(store) as db:
        click.echo(error_report(db, "k-best 5", this_run, top=3))

    try:
        from .kg.coarsen import coarse_groups_summary

        click.echo("\n" + coarse_groups_summary(tags.select(K_BEST, 3), stats.layers[-1]))
    except UserError as e:
        click.echo(f"\n(WordNet step skipped: {e})")
    click.echo("\nNext: `filtag-kg query --list`, `filtag-kg errors`, `filtag-kg explain --heldout ID`.")
    return out


def _previous_run(tags_dir: Path) -> str | None:
    """The run IRI of the tag set an earlier demo left in `tags_dir` (None if there is none)."""
    from .errors import UserError
    from .kg.export import run_iri

    if not tags_dir.is_dir():
        return None
    try:
        return run_iri(TagSet.load(tags_dir))
    except (UserError, OSError, ValueError):
        return None
