"""FilTag's tag selection: k-best and q-quantile filters per class and layer.

Given z_c(m,i) (`ActivationStats.class_means`), the class c is a tag of the k filters of layer m
with the highest z_c(m,·) (k-best), or of the top q percent of them (q-quantile, with
p = round(q/100·|I_m|) filters, at least 1). Ties are broken by the lower filter index, so the
selection is deterministic.

Deviation from the original scripts: there, a q that rounds to p = 0 tags *every* filter of the
layer; here p is at least 1, so a small q always means "the best filter or few".
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import UserError
from .models import match_layers
from .records import K_BEST, Q_QUANTILE, ActivationStats, TagSet, selection_key, selection_label


class TaggingError(UserError):
    """A k or q that cannot be applied to the statistics (the message names the value and layer)."""


def quantile_count(q: float, n_filters: int) -> int:
    """Number of filters a q-quantile selects in a layer of `n_filters`: round(q/100·n), at least 1.

    Rounds half to even like Python's round(), as the original scripts do, but exactly (they round the
    float product): q as written (its shortest decimal text) times n over 100 as a fraction. In floats,
    54.5 % of 100 filters was 54.50000000000001 (55) and 57.5 % was 57.49999999999999 (57), not
    round(54.5) = 54 and round(57.5) = 58.
    """
    return max(1, round(Fraction(np.format_float_positional(q, trim="-")) * n_filters / 100))


def rank_filters(z: np.ndarray) -> np.ndarray:
    """Filter indices of each class, best first: int [n_classes, n_filters] (ties: lower index first)."""
    return np.argsort(-z, axis=1, kind="stable")


def tag(
    stats: ActivationStats,
    k: int | Iterable[int] | None = None,
    q: float | Iterable[float] | None = None,
    layers: str | Sequence[str] | None = None,
) -> TagSet:
    """Tag the filters of `stats` with k-best and/or q-quantile selection; several k and q in one go.

    With neither k nor q, k = 1 (empty lists of both are refused, not read as k = 1); a k or q given
    twice counts once. `layers` are names or glob patterns (default: all collected; one string is one
    pattern; an empty list is refused). Classes without images in the statistics get no tags.
    An unfinished collection (an interrupted run's checkpoint) is refused; the statistics of one shard are
    tagged with a warning on stderr, as they cover only part of the images.
    """
    if not isinstance(stats, ActivationStats):  # a list or None failed with an AttributeError
        raise TaggingError(f"stats must be a filtag_kg.ActivationStats (from filtag_kg.collect or "
                           f"ActivationStats.load), got {type(stats).__name__}")
    stats.require_complete()
    ks = _as_list(k, "k")
    qs = _as_list(q, "q")
    if not ks and not qs:
        if k is not None or q is not None:  # k=[] silently became k=1
            raise TaggingError(f"no k or q to tag with: k={k!r}, q={q!r}; give at least one value "
                               "(or leave both out for k=1)")
        ks = [1]
    layers = match_layers(stats.layers, layers, "collected layer")
    for kv in ks:
        if not float(kv).is_integer() or kv < 1:
            raise TaggingError(f"k must be a whole number of at least 1, got {kv!r}")
        _check_k_fits(int(kv), layers, stats.n_filters)
    for qv in qs:
        if not 0 < qv <= 100:
            raise TaggingError(f"q must be in (0, 100], got {qv!r}")

    # a k or q given twice is one selection (dict keys keep the order given)
    selections: list[tuple[str, float]] = list(dict.fromkeys(
        [selection_key(K_BEST, kv) for kv in ks] + [selection_key(Q_QUANTILE, qv) for qv in qs]))
    present = np.flatnonzero(stats.counts > 0)
    if not len(present):  # an empty tag set would explain nothing, and evaluate would say so only later
        raise TaggingError("the statistics hold no training images (collected with the held-out split only?); "
                           "there is no z to tag from")
    _warn_if_shard(stats)
    cols: dict[str, list[np.ndarray]] = {n: [] for n in ("layer", "filter", "class", "score", "rank", "sel")}
    for li, m in ((stats.layers.index(m), m) for m in layers):
        z = stats.class_means(m)[present]
        order = rank_filters(z)
        for si, (method, p) in enumerate(selections):
            count = int(p) if method == K_BEST else quantile_count(p, stats.n_filters[m])
            top = order[:, :count]  # [n_present, count]
            cols["layer"].append(np.full(top.size, li, np.int32))
            cols["filter"].append(top.ravel().astype(np.int32))
            cols["class"].append(np.repeat(present, count).astype(np.int32))
            cols["score"].append(np.take_along_axis(z, top, axis=1).ravel())
            cols["rank"].append(np.tile(np.arange(1, count + 1, dtype=np.int32), len(present)))
            cols["sel"].append(np.full(top.size, si, np.int16))

    def cat(name: str, dtype: type) -> np.ndarray:
        return np.concatenate(cols[name]).astype(dtype) if cols[name] else np.zeros(0, dtype)

    return TagSet(
        layers=list(stats.layers),
        classes=list(stats.classes),
        n_filters=dict(stats.n_filters),
        selections=selections,
        layer_index=cat("layer", np.int32),
        filter_index=cat("filter", np.int32),
        class_index=cat("class", np.int32),
        score=cat("score", np.float64),
        rank=cat("rank", np.int32),
        selection_index=cat("sel", np.int16),
        manifest={**stats.manifest, "n_images": stats.n_images,  # the images z is computed from
                  # where they were read, so that explain and evaluate find the held-out records unasked
                  **({"statistics": os.path.abspath(stats.folder)} if stats.folder is not None else {})},
    )


def _check_k_fits(k: int, layers: Sequence[str], n_filters: dict[str, int]) -> None:
    """Refuse a k larger than some layer's filter count, naming the layer(s) and the way out: the
    layers that have k filters (tagged alone), or a q-quantile, which takes a share of every layer."""
    small = [m for m in layers if k > n_filters[m]]
    if not small:
        return
    others = f" (and than those of {', '.join(repr(m) for m in small[1:])})" if len(small) > 1 else ""
    large = [m for m in layers if k <= n_filters[m]]
    quantile = "use a q-quantile (`tag -q`, or q= in Python), which tags a share of each layer's filters"
    way_out = (f"tag only the layers of at least {k} filters ({', '.join(large)}) with `tag --layer` (layers= in "
               f"Python), or {quantile}" if large else f"no layer has {k} filters: {quantile}")
    raise TaggingError(f"k={k} is larger than the {n_filters[small[0]]} filters of layer {small[0]!r}{others}; {way_out}")


def _warn_if_shard(stats: ActivationStats) -> None:
    """Warn on stderr when `stats` are those of one shard (`collect --shard i/n`, not merged): their z
    is computed from about 1/n of the images, so tags made from them differ from the whole collection's.
    The one shard of `--shard 0/1` is the whole collection: no warning."""
    shard = stats.manifest.get("shard")
    if shard and int(shard[1]) > 1:
        index, count = int(shard[0]), int(shard[1])
        print(f"warning: {stats.origin} are those of shard {index} of {count} only (collect --shard {index}/{count}), "
              f"about 1/{count} of the images; merge the {count} shards first (`filtag-kg merge SHARD… -o OUT`, or "
              "ActivationStats.merge_shards) and tag the merged statistics", file=sys.stderr)


def _as_list(value: float | Iterable[float] | None, name: str) -> list[float]:
    """One k or q, or several, as a list of numbers; text and booleans (True is not k=1) are refused by value."""
    if value is None:
        return []
    if isinstance(value, np.ndarray):
        values = value.ravel().tolist()
    elif isinstance(value, (int, float, np.number, np.bool_, str, bytes)):
        values = [value]
    else:
        values = list(value)
    for v in values:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise TaggingError(f"{name} must be a number, got {v!r}")
    return values


PLOT_PATTERN = "z-[0-9][0-9][0-9]-*.png"  # the heatmaps of `plot_class_means`: z-{position in the network:03d}-{layer}.png


def heatmap_layout(z: np.ndarray) -> np.ndarray:
    """The filter order of a z heatmap: grouped by the class each filter responds to most (in class
    order), within a group by that highest z, descending; so class-specific filters form a diagonal."""
    best = np.argmax(z, axis=0)
    return np.lexsort((np.arange(z.shape[1]), -z[best, np.arange(z.shape[1])], best))


def plot_class_means(stats: ActivationStats, tags: TagSet, directory: str | os.PathLike[str]) -> list[Path]:
    """One PNG heatmap per tagged layer of z_c(m,i) (classes × filters, filters in `heatmap_layout`
    order), the tags of the tag set's first selection outlined; heatmaps of layers no longer tagged
    are removed, so the folder shows this tag set only."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    method, parameter = tags.selections[0]
    first = tags.select(method, parameter)
    present = np.flatnonzero(stats.counts > 0)
    names = [stats.classes[i] for i in present]
    written = []
    for layer in tags.tagged_layers:
        li = tags.layers.index(layer)
        z = stats.class_means(layer)[present]
        order = heatmap_layout(z)
        column = np.empty_like(order)
        column[order] = np.arange(len(order))
        row = np.searchsorted(present, first.class_index[first.layer_index == li])
        x = column[first.filter_index[first.layer_index == li]]
        n_classes, n_filters = z.shape
        fig, ax = plt.subplots(figsize=(min(16, 3 + n_filters / 12), min(14, 2 + n_classes / 4)))
        image = ax.imshow(z[:, order], aspect="auto", interpolation="nearest", cmap="viridis")
        small = n_classes * n_filters <= 20_000
        ax.scatter(x, row, s=30 if small else 2, marker="s" if small else ".", facecolors="none" if small else "red",
                   edgecolors="red", linewidths=1)
        if n_filters <= 64:
            ax.set_xticks(np.arange(n_filters), [str(i) for i in order], fontsize=6, rotation=90)
        if n_classes <= 60:
            ax.set_yticks(np.arange(n_classes), names, fontsize=7)
        ax.set_xlabel("filter index, grouped by the class of highest z" if n_filters <= 64 else
                      "filters, grouped by the class of highest z")
        ax.set_ylabel("class")
        ax.set_title(f"z_c(m,i) of layer {layer}; red: the tags of {selection_label(method, parameter)}", fontsize=10)
        fig.colorbar(image, ax=ax, label="z (mean scaled activation)")
        fig.tight_layout()
        path = directory / f"z-{stats.layers.index(layer):03d}-{re.sub(r'[^A-Za-z0-9_.-]', '_', layer)}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    remove_heatmaps(directory, keep=written)
    return written


def remove_heatmaps(directory: str | os.PathLike[str], keep: Sequence[Path] = ()) -> None:
    """Remove the heatmaps `plot_class_means` wrote into `directory` (but those in `keep`), so
    that a tag set written there is not shown with an earlier one's."""
    for stale in set(Path(directory).glob(PLOT_PATTERN)) - set(keep):
        stale.unlink()
