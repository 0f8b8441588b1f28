"""CLI of the FilTag core: collect, merge, tag, demo. Heavy imports stay inside the commands."""

from __future__ import annotations

import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from ..errors import UserError
from ..models import PREPROCESS_HELP

DEFAULT = "default"


def _shard(value: str | None) -> tuple[int, int] | None:
    """--shard INDEX/COUNT as (index, count), refused with the bounds that hold for it (the message said
    "INDEX must be in 0..COUNT-1" for 0/0 too, whose COUNT is wrong, and came only once the model was loaded)."""
    if value is None:
        return None
    match = re.fullmatch(r"\s*([-+]?\d+)\s*/\s*([-+]?\d+)\s*", value, re.ASCII)
    if match is None:
        raise UserError(f"--shard must look like INDEX/COUNT, e.g. 0/4 (the first of 4 shards); got {value!r}")
    index, count = int(match[1]), int(match[2])
    if count < 1:
        raise UserError(f"--shard {value}: COUNT must be at least 1 (the number of shards), got {count}")
    if not 0 <= index < count:
        bounds = "be 0" if count == 1 else f"be in 0 … {count - 1}"
        raise UserError(f"--shard {value}: INDEX must {bounds} for COUNT {count} (shards are numbered from 0), "
                        f"got {index}")
    return index, count


def load_source(data: str, loaded: Any, heldout: str | None, fraction: float, seed: int) -> Any:
    """The image source named on the command line: 'default' (Animal-Shape) or an image folder."""
    from ..data import animal_shape, image_folder

    if data == DEFAULT:
        return animal_shape(fraction=fraction, seed=seed)
    return image_folder(data, classes=loaded.classes, heldout=heldout, fraction=fraction, seed=seed)


def read_class_list(path: str) -> list[str]:
    """The class labels of a --classes file, one a line in the model's output order (trailing blank lines
    left out); a blank line between labels or a label given twice is refused by line number."""
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"--classes {path}: cannot read it as UTF-8 text ({e})") from e
    labels = [line.strip() for line in lines]
    while labels and not labels[-1]:
        labels.pop()
    if not labels:
        raise UserError(f"--classes {path} is empty; it lists the model's class labels, one a line")
    seen: dict[str, int] = {}
    for number, label in enumerate(labels, start=1):
        if not label:
            raise UserError(f"--classes {path}, line {number}: blank; each line is the label of one output, in order")
        if label in seen:
            raise UserError(f"--classes {path}, line {number}: {label!r} is on line {seen[label]} already")
        seen[label] = number
    return labels


def load_model_option(model: str, weights: str, mixed_precision: bool = False, preprocess: str | None = None) -> Any:
    from ..models import load_model

    return load_model(None if model == DEFAULT else model, weights=weights, mixed_precision=mixed_precision,
                      preprocess=preprocess)


def tag_set_out(out: Path, overwrite: bool) -> bool:
    """Check that the folder `out` (--out) may take a tag set: not one of statistics, and one holding a
    tag set only with --overwrite, as collect and merge refuse a folder of finished work (tags written
    over went unsaid, and with them what evaluations or the store were made from). Whether a tag set
    is replaced."""
    from ..records import ARRAYS_NAME, MANIFEST_NAME, TAGS_NAME

    if (out / ARRAYS_NAME).exists():
        raise UserError(f"--out {out} holds statistics; write the tags into a folder of their own")
    replacing = [name for name in (TAGS_NAME, MANIFEST_NAME) if (out / name).exists()]
    if replacing and not overwrite:
        raise UserError(f"--out {out} already holds a tag set ({', '.join(replacing)}); choose another folder, "
                        "or pass --overwrite to replace it")
    return bool(replacing)


def register(cli: click.Group) -> None:
    """Add the core commands to the main group."""

    @cli.command()
    @click.option("--model", "-m", default=DEFAULT, show_default=True,
                  help="'default' (small CNN, trained once and cached), a keras.applications name "
                       "(VGG16, VGG19, ResNet50, InceptionV3, MobileNetV2, …) or a .keras/.h5 file "
                       "(see --preprocess).")
    @click.option("--weights", default="imagenet", show_default=True,
                  help="For keras.applications models: 'imagenet' (downloaded by Keras), 'none', or a weights file.")
    @click.option("--preprocess", metavar="NAME",
                  help=f"For a .keras/.h5 file: how the RGB pixels (0–255) are prepared for it: {PREPROCESS_HELP}. "
                       "Default: none. keras.applications models get their family's preprocess_input, the "
                       "default CNN none (it scales in the model). Recorded, so explain uses it too.")
    @click.option("--classes", "classes_file", type=click.Path(exists=True, dir_okay=False),
                  help="For a .keras/.h5 file: a text file of the model's class labels, one a line in the order of "
                       "its outputs (default: the --data folder's class folder names, sorted, as Keras' "
                       "image_dataset_from_directory orders them). Class folders are then matched by name.")
    @click.option("--data", "-d", default=DEFAULT, show_default=True,
                  help="'default' (Animal-Shape, embedded) or a folder of class sub-folders of JPEG/PNG images "
                       "(folder names: the model's class labels or ImageNet wnids; ImageNet's two crane and two "
                       "maillot classes by wnid only). Each image is resized to the model's input size (bilinear, "
                       "aspect ratio not kept) and given to it as pixel values 0–255 unless --preprocess says "
                       "otherwise.")
    @click.option("--heldout", type=click.Path(exists=True, file_okay=False),
                  help="A second folder of the same layout used as held-out split (instead of splitting --data).")
    @click.option("--fraction", default=0.8, show_default=True,
                  help="Share of each class used for tagging (0 < FRACTION <= 1); the rest is held out.")
    @click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Seed of the train/held-out split.")
    @click.option("--layer", "-l", "layers", multiple=True, help="Conv layer name or glob pattern (repeatable); default: all conv layers.")
    @click.option("--batch-size", "-b", type=click.IntRange(min=1),
                  help="Images per batch (default: by input size, 64 for small images, 16 at 224×224, fewer above).")
    @click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
                  help="Folder for the statistics (arrays.npz + manifest.json); an interrupted run resumes from it.")
    @click.option("--shard", help="Process only shard INDEX/COUNT of the images (merge the shards with `filtag-kg merge`).")
    @click.option("--checkpoint-every", default=50, show_default=True, type=click.IntRange(min=1),
                  help="Batches between checkpoints (more while saving one takes over a tenth of that time).")
    @click.option("--mixed-precision", is_flag=True,
                  help="Compute in float16 with float32 weights (Keras mixed_float16): faster on GPUs with float16 units.")
    def collect(model: str, weights: str, data: str, heldout: str | None, fraction: float, seed: int,
                layers: tuple[str, ...], batch_size: int | None, out: str, shard: str | None, checkpoint_every: int,
                mixed_precision: bool, preprocess: str | None, classes_file: str | None) -> None:
        """Collect the activation statistics z_c(m,i) of every conv filter over a labelled image set."""
        from ..collection import collect as run_collect

        if not 0 < fraction <= 1:  # before the model is loaded (or trained); NaN too
            raise UserError(f"--fraction {fraction}: expected a share of each class, 0 < FRACTION <= 1")
        if data == DEFAULT and heldout is not None:
            raise UserError(f"--heldout {heldout}: the embedded default data set holds out its own images "
                            "(--fraction); --heldout goes with a --data folder")
        context = click.get_current_context()
        splitting = [f"--{name}" for name in ("fraction", "seed")
                     if context.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT]
        if heldout is not None and splitting:  # they would be ignored: --data is all training images
            raise UserError(f"{' and '.join(splitting)} split --data into training and held-out images, but "
                            f"--heldout {heldout} gives the held-out images; leave out {' and '.join(splitting)}")
        if classes_file is not None and data == DEFAULT:
            raise UserError(f"--classes {classes_file}: the embedded default data set has its own classes; "
                            "--classes goes with a --data folder")
        shard_index = _shard(shard)  # before the model is loaded (or trained) and the folder listed
        classes = read_class_list(classes_file) if classes_file is not None else None
        loaded = load_model_option(model, weights, mixed_precision, preprocess)
        if classes is not None:  # a saved model's output order, which need not be its folders' sorted names
            if loaded.classes is not None:
                raise UserError(f"--classes {classes_file}: the model {loaded.name} has its own class list "
                                f"({len(loaded.classes):,} classes: {', '.join(loaded.classes[:3])} …)")
            loaded = replace(loaded, classes=classes)
        source = load_source(data, loaded, heldout, fraction, seed)
        start = time.perf_counter()
        stats = run_collect(loaded, source, layers=list(layers) or None, batch_size=batch_size, output=out,
                            checkpoint_every=checkpoint_every, shard=shard_index)
        seconds = time.perf_counter() - start
        held = len(stats.heldout) if stats.heldout is not None else 0
        click.echo(f"{stats.n_images:,} images (+{held:,} held out), {len(stats.layers)} conv layers, "
                   f"{sum(stats.n_filters.values()):,} filters in {seconds:.1f} s -> {out}")

    @cli.command()
    @click.argument("shards", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
    @click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
                  help="New folder for the merged statistics (arrays.npz + manifest.json).")
    def merge(shards: tuple[str, ...], out: str) -> None:
        """Merge the statistics of all shards of one collection (from `collect --shard I/N`):
        `filtag-kg merge SHARD0 SHARD1 … -o OUT`."""
        from ..records import MANIFEST_NAME, ActivationStats

        out_path, paths = Path(out).resolve(), [Path(s).resolve() for s in shards]
        if len(set(paths)) < len(paths):
            raise UserError("a shard folder is given twice: " + ", ".join(s for s, p in zip(shards, paths) if paths.count(p) > 1))
        if out_path in paths:
            raise UserError(f"--out {out} is one of the shards; give the merged statistics a folder of their own")
        if (out_path / MANIFEST_NAME).exists():
            raise UserError(f"--out {out} already holds statistics or tags; choose another folder or delete it")
        merged = ActivationStats.merge_shards({s: ActivationStats.load(s) for s in shards})
        merged.save(out)
        click.echo(f"merged {len(shards)} shards: {merged.n_images:,} images -> {out}")

    @cli.command()
    @click.argument("stats_dir", type=click.Path(exists=True, file_okay=False))
    @click.option("-k", "ks", multiple=True, type=int, help="k-best: tag the k filters of highest z per class and layer (repeatable).")
    @click.option("-q", "qs", multiple=True, type=float, help="q-quantile: tag the top q percent of a layer's filters (repeatable).")
    @click.option("--layer", "-l", "layers", multiple=True, help="Only these layers, names or glob patterns (repeatable; default: all collected).")
    @click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Folder for tags.csv + manifest.json.")
    @click.option("--plots/--no-plots", default=True, show_default=True,
                  help="Also a heatmap of z per layer (z-NNN-LAYER.png, classes × filters, the first selection's tags in red).")
    @click.option("--overwrite", is_flag=True, help="Replace the tag set --out holds (else it is refused).")
    def tag(stats_dir: str, ks: tuple[int, ...], qs: tuple[float, ...], layers: tuple[str, ...], out: str,
            plots: bool, overwrite: bool) -> None:
        """Tag filters with classes from collected statistics (default: k=1)."""
        from ..records import ActivationStats, selection_label
        from ..tagging import plot_class_means, remove_heatmaps
        from ..tagging import tag as run_tag

        replacing = tag_set_out(Path(out), overwrite)
        stats = ActivationStats.load(stats_dir)
        # the library refuses an unfinished collection and warns of a single shard's statistics
        tags = run_tag(stats, k=list(ks) or None, q=list(qs) or None, layers=list(layers) or None)
        tags.save(out)
        # selections named as in tags.csv and the graph (`:g` cut q=33.3333333 to 33.3333, a selection not in the set)
        click.echo(f"{len(tags):,} tags ({', '.join(selection_label(m, p) for m, p in tags.selections)}) -> {out}"
                   + (" (the tag set that was there is replaced)" if replacing else ""))
        if not plots:
            remove_heatmaps(out)
        elif written := plot_class_means(stats, tags, out):
            click.echo(f"heatmaps of z: {written[0].name}" + (f" … {written[-1].name}" if len(written) > 1 else ""))

    @cli.command()
    @click.option("--out", "-o", type=click.Path(file_okay=False),
                  help="Folder for what the demo makes (default: 'demo' in the filtag-kg data folder).")
    @click.option("--retrain", is_flag=True, help="Train the default CNN again instead of using the cached one.")
    @click.option("--store", type=click.Path(file_okay=False),
                  help="Embedded store to load the graph into (default: 'store' in the filtag-kg data folder).")
    def demo(out: str | None, retrain: bool, store: str | None) -> None:
        """The embedded default end to end: train (once) the small CNN on Animal-Shape, collect, tag,
        evaluate the explanations, load the graph into the store, analyse errors, group with WordNet."""
        from ..demo import run_demo

        run_demo(Path(out) if out else None, retrain=retrain, store=Path(store) if store else None)
