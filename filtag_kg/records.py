"""Plain records passed between the stages: activation statistics and tag sets.

Nothing here imports TensorFlow, so the knowledge-graph and linking code can use these records
without loading a deep-learning runtime.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from glob import escape as glob_escape
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .errors import UserError

ARTIFACT_VERSION = 1
MANIFEST_NAME = "manifest.json"
ARRAYS_NAME = "arrays.npz"
TAGS_NAME = "tags.csv"
TAG_COLUMNS = ("layer", "filter", "class_index", "class_name", "score", "rank", "method", "parameter")

K_BEST = "k-best"
Q_QUANTILE = "q-quantile"
METHODS = (K_BEST, Q_QUANTILE)


@dataclass
class HeldOut:
    """Per-image records of the held-out split: what explanations and evaluation need.

    `vectors[layer]` is float32 [n_images, n_filters] of scaled feature-map means ā(m,i,d);
    `top_classes`/`top_probs` are the model's top-5 predictions (probabilities: the softmax of the scores
    of a model ending in logits), `labels` the true class indices,
    `image_ids` a stable id per image (file path relative to the data root, or an index), and
    `positions` each image's position in its split (records of shards merge in that order).
    """

    image_ids: list[str]
    positions: np.ndarray  # int64 [n]
    labels: np.ndarray  # int64 [n]
    top_classes: np.ndarray  # int64 [n, 5]
    top_probs: np.ndarray  # float32 [n, 5]
    vectors: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.image_ids)

    def __eq__(self, other: object) -> bool:
        """Equal records: the same images, labels, predictions and activations (the generated `==`
        raised "the truth value of an array … is ambiguous")."""
        if not isinstance(other, HeldOut):
            return NotImplemented
        return list(self.image_ids) == list(other.image_ids) and _arrays_equal(
            [self.positions, self.labels, self.top_classes, self.top_probs], [other.positions, other.labels,
                                                                               other.top_classes, other.top_probs]) \
            and _mappings_equal(self.vectors, other.vectors)

    @property
    def predictions(self) -> np.ndarray:
        """The predicted class index of each image (top-1)."""
        return self.top_classes[:, 0]

    def accuracy(self) -> float:
        return float(np.mean(self.predictions == self.labels)) if len(self) else float("nan")

    def order(self, order: np.ndarray) -> HeldOut:
        return HeldOut(
            image_ids=[self.image_ids[i] for i in order],
            positions=self.positions[order],
            labels=self.labels[order],
            top_classes=self.top_classes[order],
            top_probs=self.top_probs[order],
            vectors={k: v[order] for k, v in self.vectors.items()},
        )

    @staticmethod
    def concatenate(parts: Sequence[HeldOut]) -> HeldOut:
        parts = [p for p in parts if len(p)]
        if not parts:
            raise ValueError("no held-out records to concatenate")
        layers = list(parts[0].vectors)
        return HeldOut(
            image_ids=[i for p in parts for i in p.image_ids],
            positions=np.concatenate([p.positions for p in parts]),
            labels=np.concatenate([p.labels for p in parts]),
            top_classes=np.concatenate([p.top_classes for p in parts]),
            top_probs=np.concatenate([p.top_probs for p in parts]),
            vectors={m: np.concatenate([p.vectors[m] for p in parts]) for m in layers},
        )


@dataclass
class ActivationStats:
    """Per-layer, per-class sums of scaled feature-map means, streamed over a labelled image set.

    z_c(m,i) = sums[m][c, i] / counts[c]. Sums are float64 so that shards merge exactly (up to
    float64 rounding) into the result of one run.
    """

    layers: list[str]
    classes: list[str]
    n_filters: dict[str, int]
    sums: dict[str, np.ndarray]  # float64 [n_classes, n_filters]
    counts: np.ndarray  # int64 [n_classes]
    heldout: HeldOut | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    folder: Path | None = None  # where `load` read them from, for messages; None for statistics made in memory

    @classmethod
    def empty(
        cls, layers: Sequence[str], classes: Sequence[str], n_filters: Mapping[str, int],
        manifest: Mapping[str, Any] | None = None,
    ) -> ActivationStats:
        return cls(
            layers=list(layers),
            classes=list(classes),
            n_filters={m: int(n_filters[m]) for m in layers},
            sums={m: np.zeros((len(classes), int(n_filters[m])), np.float64) for m in layers},
            counts=np.zeros(len(classes), np.int64),
            manifest=dict(manifest or {}),
        )

    def __eq__(self, other: object) -> bool:
        """Equal statistics: the same layers, classes, filter counts, sums, counts and held-out records;
        the manifest (provenance, which `save` adds to) and folder are not compared."""
        if not isinstance(other, ActivationStats):
            return NotImplemented
        return (self.layers, self.classes, self.n_filters) == (other.layers, other.classes, other.n_filters) \
            and _arrays_equal([self.counts], [other.counts]) and _mappings_equal(self.sums, other.sums) \
            and self.heldout == other.heldout

    @property
    def n_images(self) -> int:
        return int(self.counts.sum())

    def class_means(self, layer: str) -> np.ndarray:
        """z_c(m,i) as float64 [n_classes, n_filters]; NaN rows for classes without images."""
        if layer not in self.sums:
            raise KeyError(f"layer {layer!r} is not in these statistics; layers: {', '.join(self.layers)}")
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sums[layer] / self.counts[:, None]

    @property
    def origin(self) -> str:
        """How messages name these statistics: by their folder, when loaded from one."""
        return f"the statistics in {self.folder}" if self.folder is not None else "these statistics"

    def require_complete(self) -> None:
        """Refuse the checkpoint of an interrupted collection (manifest 'complete': false, only ever read
        from a folder), whose z covers only the images read before the interruption; the message says how
        to finish. Statistics made in memory without a 'complete' entry pass."""
        if self.manifest.get("complete", True):
            return
        progress = self.manifest.get("progress") or {}
        stopped = f", stopped in split {progress['split']!r} at image {progress['position']}" if progress else ""
        raise UserError(f"{self.origin} are an unfinished collection (a checkpoint{stopped}); finish them by resuming "
                        f"the collection: run the same `filtag-kg collect` with --out {self.folder or 'their folder'} "
                        "(or filtag_kg.collect with that output folder) and the same settings again")

    def add_batch(self, labels: np.ndarray, means: Mapping[str, np.ndarray]) -> None:
        """Add one batch of per-image means (float [batch, n_filters] per layer) to the sums.

        Checked first, so that a bad batch adds nothing: labels must be class indices (whole numbers,
        0 … n_classes − 1; 0.5, '1' and True were added as classes 0 and 1), and every layer's means an
        array [batch, n_filters] of numbers (a row [n_filters] was added to every image's class)."""
        raw = np.asarray(labels)
        n = len(self.classes)
        whole = raw.dtype.kind in "iu" or (raw.dtype.kind == "f"
                                            and bool(np.all(np.isfinite(raw) & (raw == np.round(raw)))))
        if raw.ndim != 1 or not whole or (raw.size and (raw.min() < 0 or raw.max() >= n)):
            shown = raw.tolist() if raw.size <= 8 else f"an array of shape {raw.shape} and dtype {raw.dtype}"
            raise UserError(f"labels must be one class index per image (whole numbers 0 … {n - 1}), got {shown!r}")
        values = {}
        for m in self.layers:
            if m not in means:
                raise UserError(f"no means for layer {m!r} in this batch; layers: {', '.join(self.layers)}")
            value = np.asarray(means[m])
            if value.dtype.kind not in "iuf" or value.shape != (len(raw), self.n_filters[m]):
                raise UserError(f"the means of layer {m!r} must be numbers [batch, n_filters] = [{len(raw)}, "
                                 f"{self.n_filters[m]}], got {value.dtype} of shape {value.shape}")
            values[m] = value.astype(np.float64)
        labels = raw.astype(np.int64)
        self.counts += np.bincount(labels, minlength=n)
        for m in self.layers:
            np.add.at(self.sums[m], labels, values[m])

    def merge(self, other: ActivationStats) -> ActivationStats:
        """The statistics of the union of two disjoint image sets (e.g. shards of one data set)."""
        if self.layers != other.layers or self.classes != other.classes or self.n_filters != other.n_filters:
            raise ValueError("cannot merge statistics of different layers, classes or filter counts")
        heldouts = [h for h in (self.heldout, other.heldout) if h is not None and len(h)]
        heldout = None
        if heldouts:
            heldout = HeldOut.concatenate(heldouts)
            heldout = heldout.order(np.argsort(heldout.positions, kind="stable"))
        manifest = dict(self.manifest)
        manifest["shard"] = None
        return ActivationStats(
            layers=list(self.layers),
            classes=list(self.classes),
            n_filters=dict(self.n_filters),
            sums={m: self.sums[m] + other.sums[m] for m in self.layers},
            counts=self.counts + other.counts,
            heldout=heldout,
            manifest=manifest,
        )

    @classmethod
    def merge_shards(cls, shards: Mapping[str, ActivationStats]) -> ActivationStats:
        """The statistics of a whole collection from those of its shards (`collect --shard i/n`), given
        by their folders: refuses unfinished parts, parts of another collection (model, precision,
        data set, split or layers differ), and shards repeated or missing, naming the folders."""
        if not shards:
            raise UserError("no shards to merge")
        (first_path, first), *rest = shards.items()
        seen: dict[int, str] = {}
        count = None
        for path, part in shards.items():
            part.require_complete()
            shard = part.manifest.get("shard")
            if not shard:
                raise UserError(f"{path} is not a shard (collected without --shard); there is nothing to merge it with")
            index, n = int(shard[0]), int(shard[1])
            if count is not None and n != count:
                raise UserError(f"{path} is shard {index}/{n}, {first_path} one of {count}: shards of different splittings")
            count = n
            if index in seen:
                raise UserError(f"{seen[index]} and {path} are both shard {index}/{n}")
            seen[index] = path
            differences = _collection_differences(part, first)
            if differences:
                raise UserError(f"{path} and {first_path} are not shards of one collection: "
                                + "; ".join(f"their {what} {'differ' if what.endswith('s') else 'differs'} ({detail})"
                                            for what, detail in differences))
        missing = sorted(set(range(count or 0)) - set(seen))
        if missing:
            raise UserError(f"shard(s) {', '.join(f'{i}/{count}' for i in missing)} missing: "
                            "merge needs every shard of the collection once")
        merged = first
        for _, part in rest:
            merged = merged.merge(part)
        skipped: dict[str, list[str]] = {}
        for part in shards.values():
            for split, ids in (part.manifest.get("skipped") or {}).items():
                skipped.setdefault(split, []).extend(ids)
        merged.manifest = {**merged.manifest, "shard": None,
                           "skipped": {split: sorted(ids) for split, ids in skipped.items()},
                           "created": max(str(p.manifest.get("created", "")) for p in shards.values())}
        return merged

    # -- on-disk artifact -------------------------------------------------------------------
    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write `arrays.npz` and `manifest.json` into `directory`, each atomically."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {"counts": self.counts}
        for j, m in enumerate(self.layers):
            arrays[f"sums/{j}"] = self.sums[m]
        h = self.heldout
        if h is not None:
            arrays.update(
                {"heldout/positions": h.positions, "heldout/labels": h.labels, "heldout/top_classes": h.top_classes, "heldout/top_probs": h.top_probs}
            )
            for j, m in enumerate(self.layers):
                arrays[f"heldout/vectors/{j}"] = h.vectors[m]
        manifest = dict(self.manifest)
        manifest.update(
            artifact_version=ARTIFACT_VERSION,
            layers=self.layers,
            classes=self.classes,
            n_filters=[self.n_filters[m] for m in self.layers],
            n_images=self.n_images,
            heldout_image_ids=h.image_ids if h is not None else None,
        )
        text = json.dumps(manifest, indent=1)
        # the arrays file carries its own copy of the manifest, so that arrays and manifest (with a
        # checkpoint's progress) always agree, even if the process dies between the two writes
        arrays[MANIFEST_NAME] = np.array(text)
        atomic_write(directory / ARRAYS_NAME, lambda f: np.savez(f, **arrays))
        atomic_write(directory / MANIFEST_NAME, lambda f: f.write(text.encode()))
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> ActivationStats:
        """Read an artifact written by `save` (the manifest inside the arrays file is authoritative).
        A missing, truncated or foreign artifact is a UserError that names the folder."""
        directory = Path(directory)
        if not (directory / MANIFEST_NAME).is_file() or not (directory / ARRAYS_NAME).is_file():
            raise UserError(f"{directory}: no statistics here (expected {MANIFEST_NAME} and {ARRAYS_NAME} "
                            "from `filtag-kg collect`)")
        try:
            return cls._read(directory)
        except (OSError, EOFError, zipfile.BadZipFile, ValueError, KeyError, TypeError) as e:
            if isinstance(e, UserError):
                raise
            raise UserError(f"{directory}: unreadable statistics ({type(e).__name__}: {e}); "
                            "collect them again into an empty folder") from e

    @classmethod
    def _read(cls, directory: Path) -> ActivationStats:
        with np.load(directory / ARRAYS_NAME, allow_pickle=False) as z:
            text = str(z[MANIFEST_NAME]) if MANIFEST_NAME in z.files else (directory / MANIFEST_NAME).read_text()
            manifest = json.loads(text)
            if not isinstance(manifest, dict):
                raise ValueError(f"its manifest is a JSON {type(manifest).__name__}, not an object")
            if manifest.get("artifact_version") != ARTIFACT_VERSION:
                raise UserError(f"{directory}: statistics of artifact version {manifest.get('artifact_version')!r}; "
                                f"this filtag-kg reads version {ARTIFACT_VERSION}")
            layers = list(manifest["layers"])
            sums = {m: z[f"sums/{j}"] for j, m in enumerate(layers)}
            counts = z["counts"]
            heldout = None
            if manifest.get("heldout_image_ids") is not None:
                heldout = HeldOut(
                    image_ids=list(manifest["heldout_image_ids"]),
                    positions=z["heldout/positions"],
                    labels=z["heldout/labels"],
                    top_classes=z["heldout/top_classes"],
                    top_probs=z["heldout/top_probs"],
                    vectors={m: z[f"heldout/vectors/{j}"] for j, m in enumerate(layers)},
                )
        n_filters = dict(zip(layers, (int(n) for n in manifest["n_filters"])))
        classes = list(manifest["classes"])
        if any(sums[m].shape != (len(classes), n_filters[m]) for m in layers) or counts.shape != (len(classes),):
            raise ValueError("array shapes disagree with the manifest's classes and filter counts")
        if counts.dtype.kind not in "iu" or (counts < 0).any() or any(sums[m].dtype.kind != "f" for m in layers):
            raise ValueError("class counts must be non-negative integers and sums floats")
        if heldout is not None:
            _check_heldout(heldout, n_filters, len(classes))
        return cls(
            layers=layers,
            classes=classes,
            n_filters=n_filters,
            sums=sums,
            counts=counts,
            heldout=heldout,
            manifest={k: v for k, v in manifest.items() if k != "heldout_image_ids"},
            folder=directory,
        )


def _arrays_equal(ours: Sequence[np.ndarray], theirs: Sequence[np.ndarray]) -> bool:
    """Pairwise equal arrays (same shape and values, NaN equal to NaN: a score imported without one)."""
    pairs = [(np.asarray(a), np.asarray(b)) for a, b in zip(ours, theirs, strict=True)]
    return all(np.array_equal(a, b, equal_nan=a.dtype.kind == b.dtype.kind == "f") for a, b in pairs)


def _mappings_equal(ours: Mapping[str, np.ndarray], theirs: Mapping[str, np.ndarray]) -> bool:
    """Arrays by layer: the same layers, each array equal."""
    return list(ours) == list(theirs) and _arrays_equal(list(ours.values()), [theirs[k] for k in ours])


def _collection_differences(part: ActivationStats, first: ActivationStats) -> list[tuple[str, str]]:
    """What two parts of a merge do not share that the shards of one collection do, as (what, "this vs
    that") pairs, `part`'s value first: model, precision, data set, split, layers, classes, filter counts.
    `merge` said only "their layers, classes or filter counts differ", or "their data set differs" for
    shards of one folder split otherwise, so one had to compare the manifests to find out."""
    a, b = part.manifest, first.manifest
    found: list[tuple[str, str]] = []
    model_a, model_b = a.get("model") or {}, b.get("model") or {}
    if model_a.get("hash") != model_b.get("hash"):
        def model(m: Mapping[str, Any]) -> str:
            return f"{m.get('name')} from {m.get('source')}, hash {str(m.get('hash'))[:12]}"
        found.append(("model", f"{model(model_a)} vs {model(model_b)}"))
    if model_a.get("precision") != model_b.get("precision"):
        found.append(("precision", f"{model_a.get('precision')} vs {model_b.get('precision')}"))
    if model_a.get("preprocess") != model_b.get("preprocess"):  # shards of other inputs were merged
        found.append(("preprocessing", " vs ".join(m.get("preprocess") or "none" for m in (model_a, model_b))))
    data_a, data_b = a.get("dataset") or {}, b.get("dataset") or {}
    if data_a != data_b:
        def data(d: Mapping[str, Any]) -> str:
            return f"{d.get('name')!r}" + (f" in {d['root']}" if d.get("root") else "")
        if (data_a.get("name"), data_a.get("root")) != (data_b.get("name"), data_b.get("root")):
            found.append(("data set", f"{data(data_a)} vs {data(data_b)}"))
        elif a.get("split") == b.get("split"):  # (another split lists other images: said below)
            found.append(("data set", f"{data(data_a)} both, with other images or labels: its files changed between "
                                      "the collections"))
    if a.get("split") != b.get("split"):
        def split(s: Any) -> str:
            if not isinstance(s, Mapping):
                return str(s)
            return ", ".join(f"{k} {', '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in s.items())
        found.append(("train/held-out split", f"{split(a.get('split'))} vs {split(b.get('split'))}"))
    if part.layers != first.layers:
        found.append(("layers", _layers_differ(part.layers, first.layers)))
    elif part.n_filters != first.n_filters:
        found.append(("filter counts", ", ".join(f"{m}: {part.n_filters[m]} vs {first.n_filters[m]}"
                                                 for m in part.layers if part.n_filters[m] != first.n_filters[m])))
    if part.classes != first.classes:
        at = next((i for i, (x, y) in enumerate(zip(part.classes, first.classes)) if x != y),
                  min(len(part.classes), len(first.classes)))
        found.append(("classes", f"{len(part.classes)} vs {len(first.classes)} classes, from index {at} on: "
                                 f"{part.classes[at:at + 3]} vs {first.classes[at:at + 3]}"))
    return found


def _layers_differ(a: Sequence[str], b: Sequence[str]) -> str:
    """Two layer lists that differ, `a` first: both in full when short, else their counts and the layers
    only one of them has (a few each). Both lists in full were 80 names of MobileNetV2 to compare by eye."""
    if len(a) + len(b) <= 8:
        return f"{', '.join(a)} vs {', '.join(b)}"

    def few(names: list[str]) -> str:
        return ", ".join(names[:4]) + (f" … ({len(names) - 4} more)" if len(names) > 4 else "")

    only_a, only_b = [m for m in a if m not in b], [m for m in b if m not in a]
    return ", ".join([f"{len(a)} vs {len(b)} layers"] + ([f"only the first has {few(only_a)}"] if only_a else [])
                     + ([f"only the second has {few(only_b)}"] if only_b else [])
                     + ([] if only_a or only_b else ["the same ones in another order"]))


def _check_heldout(heldout: HeldOut, n_filters: Mapping[str, int], n_classes: int) -> None:
    """Raise ValueError unless the held-out arrays have one row per image id, the manifest's filter
    counts, and class indices in range (-1: unknown truth, or no prediction in a top-k slot)."""
    n = len(heldout.image_ids)
    shapes = [heldout.positions.shape == (n,), heldout.labels.shape == (n,),
              heldout.top_classes.ndim == 2 and heldout.top_classes.shape[0] == n,
              heldout.top_probs.shape == heldout.top_classes.shape,
              *(heldout.vectors[m].shape == (n, n_filters[m]) for m in heldout.vectors)]
    if not all(shapes):
        raise ValueError(f"the held-out arrays disagree with the manifest's {n} held-out image ids and filter counts")
    for name, values in (("labels", heldout.labels), ("top classes", heldout.top_classes)):
        if values.dtype.kind not in "iu" or (values.size and (values.min() < -1 or values.max() >= n_classes)):
            raise ValueError(f"held-out {name} must be class indices below {n_classes}")


class Tag(NamedTuple):
    """One tag: filter `filter` of `layer` is tagged with `class_name` by `method` with `parameter`."""

    layer: str
    filter: int
    class_index: int
    class_name: str
    score: float  # z_c(m,i)
    rank: int  # 1 = the filter with the highest z for this class in this layer
    method: str  # "k-best" | "q-quantile"
    parameter: float  # k or q


@dataclass
class TagSet:
    """All tags of one tagging run, stored column-wise (one row per tag) for speed at VGG16 scale.

    `selections` lists the (method, parameter) pairs in the run, e.g. [("k-best", 1), ("q-quantile", 5)].
    Iterating yields `Tag` records, and `tags[i]` the i-th of them.
    """

    layers: list[str]
    classes: list[str]
    n_filters: dict[str, int]
    selections: list[tuple[str, float]]
    layer_index: np.ndarray  # int32, index into layers
    filter_index: np.ndarray  # int32
    class_index: np.ndarray  # int32
    score: np.ndarray  # float64
    rank: np.ndarray  # int32
    selection_index: np.ndarray  # int16, index into selections
    manifest: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.filter_index)

    def __eq__(self, other: object) -> bool:
        """Equal tag sets: the same tags, in the same order, of the same layers, classes and selections
        (a saved and loaded one equals the original); the manifest (provenance) is not compared."""
        if not isinstance(other, TagSet):
            return NotImplemented
        columns = ("layer_index", "filter_index", "class_index", "score", "rank", "selection_index")
        return (self.layers, self.classes, self.n_filters) == (other.layers, other.classes, other.n_filters) \
            and [selection_key(*s) for s in self.selections] == [selection_key(*s) for s in other.selections] \
            and _arrays_equal([getattr(self, c) for c in columns], [getattr(other, c) for c in columns])

    @property
    def tagged_layers(self) -> list[str]:
        """The layers that carry tags, in network order (`tag --layer` tags some; `layers` lists all collected)."""
        tagged = set(self.layer_index.tolist())
        return [m for i, m in enumerate(self.layers) if i in tagged]

    def __iter__(self) -> Iterator[Tag]:
        for li, fi, ci, s, r, si in zip(
            self.layer_index.tolist(), self.filter_index.tolist(), self.class_index.tolist(),
            self.score.tolist(), self.rank.tolist(), self.selection_index.tolist(),
        ):
            yield self._tag(li, fi, ci, s, r, si)

    def __getitem__(self, index: int) -> Tag:
        """The tag at row `index` (negative counts from the end), as iteration yields it."""
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"a TagSet is indexed by a whole number (a tag's row), got {index!r}; "
                            "select(method, parameter) picks a selection")
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"tag {index} is not among the {n} tags of this tag set")
        i = int(index) % n
        return self._tag(int(self.layer_index[i]), int(self.filter_index[i]), int(self.class_index[i]),
                         float(self.score[i]), int(self.rank[i]), int(self.selection_index[i]))

    def _tag(self, li: int, fi: int, ci: int, score: float, rank: int, si: int) -> Tag:
        """The Tag of one row's values (layer, filter, class, score, rank, selection), as Python numbers."""
        method, parameter = self.selections[si]
        return Tag(self.layers[li], fi, ci, self.classes[ci], score, rank, method, parameter)

    def select(self, method: str, parameter: float) -> TagSet:
        """The tags of one selection (e.g. k-best with k=5) as a TagSet of their own."""
        si = self._selection_position(method, parameter)
        keep = self.selection_index == si
        return self._subset(keep, [self.selections[si]], np.zeros(int(keep.sum()), np.int16))

    def _subset(self, keep: np.ndarray, selections: list[tuple[str, float]], selection_index: np.ndarray) -> TagSet:
        return TagSet(
            layers=self.layers, classes=self.classes, n_filters=self.n_filters, selections=selections,
            layer_index=self.layer_index[keep], filter_index=self.filter_index[keep],
            class_index=self.class_index[keep], score=self.score[keep], rank=self.rank[keep],
            selection_index=selection_index, manifest=self.manifest,
        )

    def filter_tags(self, layer: str, method: str, parameter: float) -> list[list[int]]:
        """For one layer and selection: the class indices each filter is tagged with, by filter index."""
        keep = self._layer_mask(layer, method, parameter)
        out: list[list[int]] = [[] for _ in range(self.n_filters[layer])]
        for f, c in zip(self.filter_index[keep].tolist(), self.class_index[keep].tolist()):
            out[f].append(c)
        return out

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write `tags.csv` (one row per tag, columns TAG_COLUMNS) and `manifest.json`, atomically."""
        import csv
        import io

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        text = io.StringIO()
        # Python 3.11's csv quotes a field with '\n' but not one with a lone '\r', which a reader takes
        # for a line end (a class labelled 'a\rb' made a tags.csv that no longer loaded): a tag set
        # with such a name is written with every field quoted
        carriage_return = any("\r" in name for name in (*self.layers, *self.classes))
        writer = csv.writer(text, lineterminator="\n", quoting=csv.QUOTE_ALL if carriage_return else csv.QUOTE_MINIMAL)
        writer.writerow(TAG_COLUMNS)
        writer.writerows((t.layer, t.filter, t.class_index, t.class_name, repr(t.score), t.rank, t.method,
                          number_text(t.parameter)) for t in self)
        data = text.getvalue().encode()
        manifest = dict(self.manifest)
        manifest.update(
            artifact_version=ARTIFACT_VERSION, kind="tags", layers=self.layers, classes=self.classes,
            n_filters=[self.n_filters[m] for m in self.layers],
            selections=[[m, p] for m, p in self.selections], n_tags=len(self),
            tags_sha256=hashlib.sha256(data).hexdigest(),  # the two files are replaced one after the other
        )
        atomic_write(directory / TAGS_NAME, lambda f: f.write(data))
        atomic_write(directory / MANIFEST_NAME, lambda f: f.write(json.dumps(manifest, indent=1).encode()))
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> TagSet:
        """Read a tag set written by `save`; a missing or damaged one is a UserError naming the folder."""
        directory = Path(directory)
        if not (directory / TAGS_NAME).is_file() or not (directory / MANIFEST_NAME).is_file():
            raise UserError(f"{directory}: no tag set here (expected {TAGS_NAME} and {MANIFEST_NAME} "
                            "from `filtag-kg tag`)")
        try:
            return cls._read(directory)
        except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
            if isinstance(e, UserError):
                raise
            raise UserError(f"{directory}: unreadable tag set ({type(e).__name__}: {e}); "
                            "tag the statistics again into an empty folder") from e

    @classmethod
    def _read(cls, directory: Path) -> TagSet:
        import csv

        manifest = json.loads((directory / MANIFEST_NAME).read_text())
        if not isinstance(manifest, dict):
            raise ValueError(f"{MANIFEST_NAME} is a JSON {type(manifest).__name__}, not an object")
        if manifest.get("artifact_version") != ARTIFACT_VERSION:
            raise UserError(f"{directory}: a tag set of artifact version {manifest.get('artifact_version')!r}; "
                            f"this filtag-kg reads version {ARTIFACT_VERSION}")
        layers, classes = list(manifest["layers"]), list(manifest["classes"])
        selections = [selection_key(m, p) for m, p in manifest["selections"]]
        if len(set(selections)) < len(selections) or not {m for m, _ in selections} <= set(METHODS):
            raise ValueError(f"selections {selections} repeat one or name an unknown method")
        layer_pos = {m: i for i, m in enumerate(layers)}
        sel_pos = {(m, float(p)): i for i, (m, p) in enumerate(selections)}
        with (directory / TAGS_NAME).open(newline="") as f:
            reader = csv.DictReader(f)
            if not set(TAG_COLUMNS) <= set(reader.fieldnames or ()):
                raise ValueError(f"{TAGS_NAME} lacks the header row {','.join(TAG_COLUMNS)}")
            rows = list(reader)
        if manifest.get("n_tags", len(rows)) != len(rows):  # a file cut at a line's end reads, with tags missing
            raise ValueError(f"{TAGS_NAME} has {len(rows)} tags, the manifest says {manifest['n_tags']}: truncated?")
        for line, r in enumerate(rows, start=2):
            if r["layer"] not in layer_pos or (r["method"], float(r["parameter"])) not in sel_pos:
                raise ValueError(f"{TAGS_NAME} line {line}: layer {r['layer']!r} or selection "
                                 f"{r['method']} {r['parameter']} is not in the manifest")
        tags = cls(
            layers=layers, classes=classes, n_filters=dict(zip(layers, (int(n) for n in manifest["n_filters"]))),
            selections=selections,
            layer_index=np.array([layer_pos[r["layer"]] for r in rows], np.int32),
            filter_index=np.array([int(r["filter"]) for r in rows], np.int32),
            class_index=np.array([int(r["class_index"]) for r in rows], np.int32),
            score=np.array([float(r["score"]) for r in rows], np.float64),
            rank=np.array([int(r["rank"]) for r in rows], np.int32),
            selection_index=np.array([sel_pos[(r["method"], float(r["parameter"]))] for r in rows], np.int16),
            manifest={k: v for k, v in manifest.items() if k not in ("kind", "selections", "n_tags", "tags_sha256")},
        )
        limits = np.array([tags.n_filters[m] for m in layers])[tags.layer_index]
        bad = np.flatnonzero((tags.filter_index < 0) | (tags.filter_index >= limits) | (tags.class_index < 0)
                             | (tags.class_index >= len(classes)))
        if len(bad):
            raise ValueError(f"{TAGS_NAME} line {int(bad[0]) + 2}: filter or class index beyond the manifest's")
        # after the checks that name a line: a tags.csv that passes them may still be another save's
        recorded = manifest.get("tags_sha256")  # none in tag sets saved before 2026-12-03
        if recorded is not None and hashlib.sha256((directory / TAGS_NAME).read_bytes()).hexdigest() != recorded:
            raise UserError(f"{directory}: {TAGS_NAME} is not the one its {MANIFEST_NAME} was written with (a save "
                            "interrupted between the two files, or one of them changed by hand); tag the statistics "
                            "again with --overwrite")
        return tags

    def tag_matrix(self, layer: str, method: str, parameter: float) -> np.ndarray:
        """Boolean [n_filters, n_classes]: True where the filter carries the class as a tag."""
        keep = self._layer_mask(layer, method, parameter)
        matrix = np.zeros((self.n_filters[layer], len(self.classes)), bool)
        matrix[self.filter_index[keep], self.class_index[keep]] = True
        return matrix

    def _selection_position(self, method: str, parameter: float) -> int:
        """The index of a selection in `selections`; a KeyError naming it and those there are if it is not
        one of them (a parameter that is no number is a UserError from `selection_key`)."""
        key = selection_key(method, parameter)
        if key not in self.selections:
            raise KeyError(f"no selection {method} {parameter} in this tag set; have {self.selections}")
        return self.selections.index(key)

    def _layer_mask(self, layer: str, method: str, parameter: float) -> np.ndarray:
        """Boolean [n_tags]: the tags of `layer` in one selection. An unknown layer or selection is a
        KeyError naming it (it was a ValueError "'x' is not in list")."""
        if layer not in self.layers:
            raise KeyError(f"layer {layer!r} is not in this tag set; layers: {', '.join(self.layers)}")
        si = self._selection_position(method, parameter)
        return (self.selection_index == si) & (self.layer_index == self.layers.index(layer))


NUMBER_TEXT_MAX = 32  # characters of a k or q written without an exponent; longer ones get one


def number_text(x: float) -> str:
    """A k or q as text, the same in labels, IRIs and files: 5 -> "5", 2.5 -> "2.5", 0.00001 -> "0.00001";
    the shortest text of its own precision, as `selection_key` reads it (np.float32(33.3) -> "33.3").
    Without an exponent (as xsd:decimal is written) unless that takes more than NUMBER_TEXT_MAX
    characters (the queries sort labels as xsd:double, which reads both forms): q=1e-320 was labelled
    by a 320-digit number (in tags.csv, the graph, the evaluation table); it is "1e-320" now, the
    shortest text that reads back as that q."""
    text = str(int(x)) if float(x).is_integer() else np.format_float_positional(x, trim="-")
    if len(text) > NUMBER_TEXT_MAX:
        text = np.format_float_scientific(x, trim="-").replace("e+", "e")
    return text


def selection_key(method: str, parameter: float) -> tuple[str, float]:
    """A selection as tag sets key it: k as an int, q as the float its shortest text says, the value
    the user meant (np.float32(33.3) is 33.29999923706055 as a Python float, and was labelled so)."""
    if isinstance(parameter, (bool, np.bool_)) or not isinstance(parameter, (int, float, np.integer, np.floating)):
        raise UserError(f"the parameter of selection {method} must be a number (k or q), got {parameter!r}")
    return method, int(parameter) if method == K_BEST else float(np.format_float_positional(parameter, trim="-"))


def selection_label(method: str, parameter: float) -> str:
    """'k-best 1', 'q-quantile 2.5': how a selection is named in the graph (labels, ft:selection, ft:tagSelection)."""
    return f"{method} {number_text(parameter)}"


ABANDONED_AFTER = 3600  # seconds: a temporary file of `atomic_write` unchanged this long was left by a killed writer


def atomic_write(path: Path, write: Any) -> None:
    """Write through a temporary file in the same directory, then rename: never a half-written file.
    Temporary files of this path that a killed writer left (unchanged for ABANDONED_AFTER; one being
    written changes as it grows) are removed first: they stayed for good, each as big as the file."""
    for left in path.parent.glob(f".{glob_escape(path.name)}.*.tmp"):
        try:
            if time.time() - left.stat().st_mtime > ABANDONED_AFTER:
                left.unlink()
        except OSError:  # gone meanwhile, or not ours to remove
            pass
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(fd, _default_file_mode())  # mkstemp makes it 0600; the result is shared like any file
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_output(path: Path, write: Any) -> None:
    """Write a command's output file: a regular file whole or not at all (`atomic_write`), a pipe or
    a device such as /dev/stdout written into; an OSError becomes a UserError naming the file."""
    try:
        if path.exists() and not path.is_file():
            with open(path, "wb") as f:
                write(f)
        else:
            atomic_write(path, write)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None


def _default_file_mode() -> int:
    """The mode `open` gives a new file under the process's umask (reading the umask means setting
    it, so it is set back at once); for files written through a temporary file, which is 0600."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask
