"""Collection of FilTag activation statistics with TensorFlow: batched, streaming, shardable, resumable.

For every chosen conv layer m and image d, one compiled function per batch computes in-graph

    ā(m,i,d) = (mean_j a(m,i,d,j) − min a(m,·,d,·)) / (max a(m,·,d,·) − min a(m,·,d,·))

i.e. the mean of filter i's feature map after min-max scaling of the layer's whole output for that
image to [0,1] (a constant output scales to 0; scaling is affine, so scaling the mean equals the mean
of the scaled map). Only [batch, filters] arrays leave the device. Per-class sums of ā over the
"train" split give z_c(m,i); for the "heldout" split the per-image vectors and the top-5 predictions
are kept as well, for explanations and evaluation.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import locked_folder
from .data import ImageSource, InputSpec, array_source, image_folder
from .errors import UserError, is_whole
from .interrupts import deferred_signals
from .models import (NO_PREPROCESSING, LoadedModel, class_count, is_channels_first, iter_layers, select_layers,
                     with_preprocessing)
from .records import ARRAYS_NAME, MANIFEST_NAME, ActivationStats, HeldOut

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

TOP = 5
TRAIN, HELDOUT = "train", "heldout"


def feature_model(model: "keras.Model", layers: Sequence[str]) -> "keras.Model":
    """A model from the input to the chosen layers' outputs and the predictions.

    The outputs are those of the layers' calls within `model`, found by rebuilding the network on new
    inputs with the same layer objects (same weights): a functional model with
    `keras.models.clone_model(call_function=...)`, a Sequential one layer by layer. A layer's own
    `output` is that of its first call anywhere: for layers called before in another model (a model
    built from another's layers) it was not connected to this model's inputs, or was another graph's.
    Layers of nested models ('base/block1_conv1', any depth) are reached the same way: a nested model
    with chosen layers is called as its own multi-output twin (this function, one level down), so
    every chosen output is a tensor of one graph.
    """
    import keras

    wanted = set(layers)
    found: dict[str, Any] = {}

    def call(layer: Any, *args: Any, **kwargs: Any) -> Any:
        inner = [n for n in layers if n.startswith(layer.name + "/")]
        if not inner:
            out = layer(*args, **kwargs)
            if layer.name in wanted:
                found[layer.name] = out
            return out
        twin = feature_model(layer, [n.split("/", 1)[1] for n in inner])
        taps = list(twin(args[0]))
        found.update(zip(inner, taps[: len(inner)]))
        rest = taps[len(inner):]
        return rest[0] if len(rest) == 1 else rest

    inputs = [keras.Input(x.shape[1:], dtype=x.dtype) for x in model.inputs]
    if isinstance(model, keras.Sequential):
        x = inputs[0]
        for layer in model.layers:
            x = call(layer, x)
        outputs = [x]
    else:
        rebuilt = keras.models.clone_model(model, input_tensors=keras.tree.pack_sequence_as(model.input, inputs),
                                           clone_function=lambda layer: layer, call_function=call)
        outputs = list(rebuilt.outputs)
    return keras.Model(_input_structure(inputs), [*(found[n] for n in layers), *outputs])


def _input_structure(inputs: list[Any]) -> Any:
    """One input tensor as itself, several as a list: how the model is then called (no structure warning)."""
    return inputs[0] if len(inputs) == 1 else inputs


XLA_MIN_ELEMENTS = 50_000  # feature maps per image from which a fused XLA reduction beats TensorFlow's


def make_step(features: "keras.Model", n_layers: int, channels_first: Sequence[bool] = (), logits: bool = False) -> Any:
    """The compiled per-batch function: scaled feature-map means of every layer, and top-k predictions
    (with `logits`, the model's scores are turned into probabilities by softmax first).

    The three reductions of a layer's output (min, max, per-filter mean) read the whole feature map;
    for large maps they are compiled with XLA into one fused pass (measured: VGG16 as fast as its bare
    forward pass), for small maps plain TensorFlow ops avoid XLA's per-call cost. The convolutions
    stay with TensorFlow's own kernels. Outputs of the layers flagged in `channels_first`
    ([batch, filters, h, w]) are transposed to filters-last first.
    """
    import tensorflow as tf

    top = min(TOP, int(features.outputs[n_layers].shape[-1]))
    firsts = list(channels_first) or [False] * n_layers

    def scaled_means(a: tf.Tensor) -> tf.Tensor:
        a = tf.cast(a, tf.float32)
        low = tf.reduce_min(a, axis=[1, 2, 3])[:, None]
        span = tf.reduce_max(a, axis=[1, 2, 3])[:, None] - low
        return tf.math.divide_no_nan(tf.reduce_mean(a, axis=[1, 2]) - low, span)  # constant output -> 0

    fused = tf.function(scaled_means, jit_compile=True, reduce_retracing=True)
    reducers = [fused if int(np.prod(out.shape[1:])) >= XLA_MIN_ELEMENTS else scaled_means
                for out in features.outputs[:n_layers]]

    @tf.function(reduce_retracing=True)
    def step(images: tf.Tensor) -> tuple[list[tf.Tensor], tf.Tensor, tf.Tensor]:
        outputs = features(images, training=False)
        means = [reduce(tf.transpose(a, [0, 2, 3, 1]) if first else a)
                 for reduce, a, first in zip(reducers, outputs[:n_layers], firsts)]
        scores = tf.cast(outputs[n_layers], tf.float32)
        best = tf.math.top_k(tf.nn.softmax(scores) if logits else scores, k=top)
        return means, best.indices, best.values

    return step


# layers after the last activation that keep scores logits: logits through them are logits still
_KEEP_LOGITS = frozenset({
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout", "GaussianNoise",
    "AlphaDropout", "ActivityRegularization", "Identity", "Flatten", "Reshape", "BatchNormalization",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
})


def outputs_logits(model: "keras.Model") -> bool:
    """Whether the model's class scores are logits: the layer that last applied an activation to them
    has a linear one (a Dense layer without softmax, as models trained with `from_logits=True` end, or a
    1×1 Conv2D of an all-convolutional net). Layers that keep logits logits (global pooling, Flatten,
    Reshape, Dropout …) are looked through, and nested models into: before, only the output layer itself
    was looked at, so the logits of a net ending in Conv2D → GlobalAveragePooling2D were kept as
    probabilities, and an explanation said 'predicted cat (310%)'."""
    tensor = model.outputs[0]
    for _ in range(1000):  # a walk back along the output's history; the bound only guards against a cycle
        history = getattr(tensor, "_keras_history", None)  # (layer, node, tensor) that made the tensor
        layer = getattr(history, "operation", None)
        if layer is None:
            return False
        if layer.__class__.__name__ in ("Functional", "Sequential") and getattr(layer, "outputs", None):
            tensor = layer.outputs[history.tensor_index]  # the nested model's own output tensor
            continue
        if layer.__class__.__name__ in _KEEP_LOGITS:
            inputs = layer._inbound_nodes[history.node_index].input_tensors
            if len(inputs) != 1:
                return False
            tensor = inputs[0]
            continue
        return getattr(getattr(layer, "activation", None), "__name__", None) == "linear"
    return False


def software_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in ("filtag-kg", "tensorflow", "tensorflow-cpu", "keras", "numpy"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return out


def collect(
    model: "keras.Model | LoadedModel",
    source: ImageSource | np.ndarray | Sequence[np.ndarray],
    labels: Sequence[int] | np.ndarray | None = None,
    layers: str | Sequence[str] | None = None,
    batch_size: int | None = None,
    splits: str | Sequence[str] | None = None,
    output: str | Path | None = None,
    checkpoint_every: int = 50,
    shard: tuple[int, int] | None = None,
    progress: bool = True,
    preprocess: str | None = None,
) -> ActivationStats:
    """Collect FilTag statistics of `model`'s conv layers over a labelled image source.

    `source` is an ImageSource (see filtag_kg.data), the path of an image folder (`image_folder` with its
    defaults), or images [n, h, w, c] (an array or a list of them; [n, c, h, w] for a channels-first
    model) with `labels`. `preprocess` names the preprocessing a keras.Model given here gets
    (`models.preprocessing`: 'unit', 'mobilenet_v2', …; default none: the pixels as they are).
    `layers` are names or glob patterns (default: every conv layer; one string is one pattern). The
    "train" split gives the class sums z_c(m,i); the "heldout" split, when present, per-image records.
    With `output`, the result is saved there, checkpoints are written atomically every
    `checkpoint_every` batches, and a run that was interrupted resumes from its last checkpoint.
    `batch_size` defaults to `default_batch_size` of the model's input (64 for small images, 16 at
    224×224). `shard=(i, n)` processes the images whose position is i modulo n, for runs spread over
    machines; `ActivationStats.merge_shards` joins the shards.
    """
    if isinstance(model, (str, os.PathLike)):
        raise UserError(f"model {str(model)!r}: pass a keras.Model, or load it by name or file with "
                        "filtag_kg.models.load_model")
    if not isinstance(model, LoadedModel):
        import keras

        if not isinstance(model, keras.Model):  # None was an AttributeError
            raise UserError(f"model must be a keras.Model (or a filtag_kg.models.LoadedModel), got "
                            f"{type(model).__name__}")
        spec, chosen = with_preprocessing(model, preprocess or NO_PREPROCESSING)
        model = LoadedModel(model, model.name, "keras", "python", spec, preprocess=chosen)
    elif preprocess is not None:
        raise UserError(f"preprocess={preprocess!r} goes with a keras.Model; the LoadedModel {model.name!r} has its "
                        "preprocessing already (load_model(..., preprocess=...) chooses it for a saved model)")
    keras_model, spec = model.model, model.input_spec
    n_out = class_count(keras_model)
    if isinstance(source, (str, os.PathLike)):  # was taken for images and asked for labels
        if labels is not None:
            raise UserError(f"labels are given with the image folder {os.fspath(source)!r}, whose class folders "
                            "label its images; pass images as an array with labels")
        source = image_folder(source, classes=model.classes)  # says what a path that is no image folder is
    if not isinstance(source, ImageSource):
        if labels is None:
            raise UserError(f"images given as {type(source).__name__} need labels (one class index per image); "
                            "or pass an ImageSource (filtag_kg.data)")
        source = array_source(source, labels, classes=model.classes or [str(c) for c in range(n_out)])
    elif labels is not None:
        raise UserError(f"labels are given with the image source {source.name!r}, which has its own")
    names = select_layers(keras_model, layers)
    classes = _check_classes(source, n_out)
    if batch_size is None:
        batch_size = default_batch_size(spec)
    for what, value in (("batch size", batch_size), ("checkpoint interval", checkpoint_every)):
        if not is_whole(value) or value < 1:
            raise UserError(f"the {what} must be a whole number of at least 1, got {value!r}")
    if shard is not None and not (isinstance(shard, (tuple, list)) and len(shard) == 2 and all(map(is_whole, shard))
                                  and 0 <= shard[0] < shard[1]):
        raise UserError(f"shard must be (index, count) with 0 <= index < count, got {shard!r}")
    batch_size = int(batch_size)  # numpy ints go into the JSON manifest as ints
    shard = (int(shard[0]), int(shard[1])) if shard is not None else None
    splits = [splits] if isinstance(splits, str) else splits  # one name is one split, as one layer pattern
    splits = list(splits) if splits is not None else [s for s in (TRAIN, HELDOUT) if s in source.splits]
    if not splits:
        raise UserError(f"data set {source.name!r} has neither a 'train' nor a 'heldout' split to collect")
    for name in splits:  # now, not after the splits before it were collected (hours, for ImageNet's training images)
        source.split(name)
    if TRAIN in splits and splits[0] != TRAIN:
        raise UserError(f"splits {splits}: the 'train' split (class sums) must come first")
    if TRAIN in splits and not len(source.split(TRAIN).positions(0, shard)):
        n_train = len(source.split(TRAIN))
        fewer = (f"; shard {shard[0]}/{shard[1]} of {n_train:,} training images gets none: use at most {n_train:,} "
                 "shards" if shard and n_train else "")
        raise UserError(f"the 'train' split of {source.name!r} has no images{' in this shard' if shard else ''} "
                        f"(split settings {source.split_info}){fewer}; nothing to compute z from")

    features = feature_model(keras_model, names)
    by_name = dict(iter_layers(keras_model))
    firsts = [is_channels_first(by_name[m]) for m in names]
    step = make_step(features, len(names), firsts, logits=outputs_logits(keras_model))
    n_filters = {m: int(features.outputs[j].shape[1 if first else -1]) for j, (m, first) in enumerate(zip(names, firsts))}
    manifest = {
        "model": model.describe(),
        "dataset": {
            "name": source.name, "label_space": source.label_space, "root": source.root, "wnids": source.wnids,
            "images_sha256": source.image_list_sha256(),
        },
        "layers": names,
        "split": {"collected": splits, **source.split_info},
        "batch_size": batch_size,
        "shard": list(shard) if shard else None,
        "software": software_versions(),
    }
    stats = ActivationStats.empty(names, classes, n_filters, manifest)
    progress_state: dict[str, Any] = {"split": splits[0], "position": 0, "heldout_parts": []}
    out_dir = Path(output) if output is not None else None
    with _claimed(out_dir):
        resumed = _resume(out_dir, manifest) if out_dir is not None else None
        if resumed is not None:
            stats, progress_state = resumed
        for split_name in splits[splits.index(progress_state["split"]):]:
            if split_name != progress_state["split"]:
                progress_state = {"split": split_name, "position": 0, "heldout_parts": progress_state["heldout_parts"]}
            _run_split(
                source.split(split_name), spec, step, stats, names, batch_size, progress_state, shard,
                keep_images=split_name == HELDOUT, out_dir=out_dir, checkpoint_every=checkpoint_every,
                progress=progress,
            )
        for split_name, skipped in stats.manifest["skipped"].items():
            if skipped:  # the split named only beside another (image files to explain are one split, 'heldout')
                where = f" in split {split_name!r}" if len(splits) > 1 else ""
                listed = f"; {out_dir / 'manifest.json'} lists them all (\"skipped\")" if out_dir else ""
                print(f"warning: {len(skipped):,} unreadable image(s) skipped{where}: {', '.join(skipped[:3])}"
                      f"{' …' if len(skipped) > 3 else ''}{listed}", file=sys.stderr)
        if TRAIN in splits and stats.n_images == 0:
            raise UserError(f"none of the images of the 'train' split of {source.name!r} could be read "
                            f"(skipped: {', '.join(stats.manifest['skipped'][TRAIN][:3])} …); nothing to compute z from")
        if TRAIN in splits:
            _warn_of_unread_classes(source.split(TRAIN), shard, stats)
        parts = progress_state["heldout_parts"]
        stats.heldout = HeldOut.concatenate(parts) if parts and any(len(p) for p in parts) else None
        _warn_of_overflow(stats)
        stats.manifest["complete"] = True
        stats.manifest["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        stats.manifest.pop("progress", None)
        if out_dir is not None:
            stats.save(out_dir)
    return stats


BATCH_PIXELS = 16 * 224 * 224  # input pixels per batch by default: VGG16's batch of 16
MAX_DEFAULT_BATCH = 64
CHECKPOINT_SPACING = 10  # a checkpoint waits until 10 times its predecessor's duration has passed: at most ~10 % of a run


def default_batch_size(spec: InputSpec) -> int:
    """The batch size for a model's input when none is given: as many images as make BATCH_PIXELS, at
    most 64 and at least 1 (64 for 28×28 or 32×32 images, 16 at 224×224, 8 at 299×299, 2 at 600×600).
    A fixed 64 took VGG16 at 224×224 to 5.0 GB peak memory against 2.1 GB at 16, and was no faster on
    CPU (measured 2026-12-03: 55 against 43 s for 200 images); inputs of 600×600 would take 7 times more."""
    return max(1, min(MAX_DEFAULT_BATCH, BATCH_PIXELS // max(1, spec.height * spec.width)))


@contextmanager
def _claimed(out_dir: Path | None) -> Iterator[None]:
    """The output folder (if any), checked writable now, not after the collection, and locked for this
    collection: a second one into it is refused (two wrote checkpoints over each other's), and the
    temporary files of the checkpoints a killed run was writing (as large as the statistics) are removed."""
    if out_dir is None:
        yield
        return
    with locked_folder(out_dir, f"cannot write the statistics into {out_dir}: {{reason}}",
                       f"{out_dir}: another collection is writing there; wait for it to end or choose another "
                       "output folder"):
        for name in (ARRAYS_NAME, MANIFEST_NAME):
            for left in out_dir.glob(f".{name}.*.tmp"):  # records.atomic_write's
                left.unlink(missing_ok=True)
        yield


def _warn_of_overflow(stats: ActivationStats) -> None:
    """Warn on stderr of layers whose scaled means are NaN or infinite: an activation overflowed (float16,
    under --mixed-precision, ends at 65,504), so the min-max scaling of the images concerned failed and
    the z and tags of those layers mean nothing; before, nothing said so."""
    vectors = stats.heldout.vectors if stats.heldout is not None else {}
    bad = [m for m in stats.layers if not (np.isfinite(stats.sums[m]).all() and np.isfinite(vectors.get(m, 0)).all())]
    if bad:
        cause = ("float16 overflowed: collect without --mixed-precision" if stats.manifest["model"].get("precision")
                 == "mixed_float16" else "an activation overflowed")
        print(f"warning: the scaled means of layer(s) {', '.join(bad)} are NaN or infinite for some images ({cause}); "
              "their z and tags mean nothing", file=sys.stderr)


def _warn_of_unread_classes(split: Any, shard: tuple[int, int] | None, stats: ActivationStats) -> None:
    """Warn on stderr of classes with training images none of which could be read: they have no z and
    get no tags, which the list of skipped files alone does not tell (e.g. a class folder of broken files)."""
    listed = np.bincount(split.labels[split.positions(0, shard)], minlength=len(stats.classes))
    lost = np.flatnonzero((listed > 0) & (stats.counts == 0))
    if len(lost):
        print(f"warning: no training image of class(es) {', '.join(repr(stats.classes[c]) for c in lost[:10])}"
              f"{' …' if len(lost) > 10 else ''} could be read ({int(listed[lost].sum())} image(s)): "
              "they have no z and get no tags", file=sys.stderr)


def _check_classes(source: ImageSource, n_out: int) -> list[str]:
    if len(source.classes) != n_out:
        raise UserError(
            f"the data set {source.name!r} has {len(source.classes)} classes but the model has {n_out} outputs; "
            "labels must index the model's outputs"
        )
    for split in source.splits.values():
        if len(split.labels) and int(split.labels.max()) >= n_out:
            raise UserError(f"split {split.name!r} has label {int(split.labels.max())}, beyond the model's {n_out} outputs")
    return list(source.classes)


def _run_split(
    split: Any, spec: InputSpec, step: Any, stats: ActivationStats, names: list[str], batch_size: int,
    state: dict[str, Any], shard: tuple[int, int] | None, keep_images: bool, out_dir: Path | None,
    checkpoint_every: int, progress: bool,
) -> None:
    from tqdm.auto import tqdm

    start = state["position"]
    skipped_before = state.get("skipped", [])  # unreadable images before the checkpoint this run resumed from
    expected = split.positions(start, shard)
    seen = np.ones(len(split), bool)
    seen[expected] = False
    bar = tqdm(total=len(split), initial=start, desc=f"collect {split.name}", unit="img", disable=None if progress else True,
               leave=False, file=sys.stderr)
    batches_since = 0
    committing = False  # while a batch goes into the statistics and the position: no checkpoint of half of it
    saving = {"seconds": 0.0, "ended": time.monotonic()}  # the last checkpoint's duration and end

    def checkpoint(folder: Path) -> None:
        state["skipped"] = skipped_before + [split.ids[i] for i in np.flatnonzero(~seen[:state["position"]])]
        started = time.monotonic()
        _checkpoint(folder, stats, state, split.name)
        saving.update(seconds=time.monotonic() - started, ended=time.monotonic())

    def checkpoint_due() -> bool:
        """After `checkpoint_every` batches, and once CHECKPOINT_SPACING times as long as the last checkpoint
        took has passed since it: each saves all held-out records so far, so with many filters (MobileNetV2:
        68 KB an image) checkpoints every 50 batches grew to take longer than the batches between them."""
        return batches_since >= checkpoint_every and \
            time.monotonic() - saving["ended"] >= CHECKPOINT_SPACING * saving["seconds"]

    try:
        with deferred_signals() as check_signals:  # a signal takes effect between batches
            for images, labels, positions in split.dataset(spec, batch_size, start, shard):
                positions_np = positions.numpy()
                means, top_idx, top_prob = step(images)
                means_np = {m: t.numpy() for m, t in zip(names, means)}
                labels_np = labels.numpy().astype(np.int64)
                committing = True
                if keep_images:
                    state["heldout_parts"].append(HeldOut(
                        image_ids=[split.ids[p] for p in positions_np], positions=positions_np.astype(np.int64),
                        labels=labels_np,
                        top_classes=_pad(top_idx.numpy().astype(np.int64)), top_probs=_pad(top_prob.numpy()),
                        vectors=means_np,  # float32 from the step
                    ))
                else:
                    stats.add_batch(labels_np, means_np)
                seen[positions_np] = True
                bar.update(int(positions_np[-1]) + 1 - state["position"])
                state["position"] = int(positions_np[-1]) + 1
                committing = False
                batches_since += 1
                if out_dir is not None and checkpoint_due():
                    checkpoint(out_dir)
                    batches_since = 0
                check_signals()  # a signal that came during this batch: the batch is in, stop here
    except KeyboardInterrupt:  # Ctrl-C: keep the batches since the last checkpoint (50 by default: minutes of VGG16)
        if out_dir is not None and not committing and batches_since:
            checkpoint(out_dir)
        if out_dir is not None and (out_dir / MANIFEST_NAME).is_file():
            print(f"\ninterrupted: the statistics collected so far are saved in {out_dir}; the same collection "
                  "into it resumes from there", file=sys.stderr)
        raise
    bar.close()
    skipped = skipped_before + [split.ids[i] for i in np.flatnonzero(~seen)]
    stats.manifest.setdefault("skipped", {})[split.name] = skipped


def _pad(a: np.ndarray) -> np.ndarray:
    """Top-k arrays padded to TOP columns (-1 / 0) for models with fewer than TOP outputs."""
    if a.shape[1] == TOP:
        return a
    fill = -1 if a.dtype.kind == "i" else 0
    return np.concatenate([a, np.full((a.shape[0], TOP - a.shape[1]), fill, a.dtype)], axis=1)


_IDENTITY = {"model": "model", "precision": "precision (--mixed-precision)", "layers": "layers",
             "dataset": "data set (its name, folder or images)", "split": "split (fraction, seed, held-out)",
             "batch_size": "batch size", "shard": "shard", "preprocess": "preprocessing (--preprocess)"}


def _identity(manifest: dict[str, Any]) -> str:
    """What a checkpoint must share with the run resuming it: model, precision, layers, data set
    (with its image list), split, batch size, shard and the preprocessing chosen for a saved model (the
    keys of _IDENTITY, in that order; the last only when one was chosen, so that checkpoints made before
    it was recorded resume)."""
    chosen = manifest["model"].get("preprocess")
    return json.dumps([manifest["model"]["hash"], manifest["model"].get("precision"),
                       *(manifest.get(k) for k in list(_IDENTITY)[2:-1]), *([chosen] if chosen else [])],
                      sort_keys=True)


def _identity_parts(identity: str | None) -> dict[str, Any] | None:
    """An identity (`_identity`) by the keys of _IDENTITY (no preprocessing: None), or None if unreadable."""
    try:
        parts = json.loads(identity or "")
    except (ValueError, TypeError):
        return None
    if not isinstance(parts, list) or len(parts) not in (len(_IDENTITY) - 1, len(_IDENTITY)):
        return None
    return dict(zip(_IDENTITY, parts + [None] * (len(_IDENTITY) - len(parts))))


def _difference(saved_identity: str | None, manifest: dict[str, Any]) -> str:
    """Which parts of the identity a checkpoint does not share with this run, as option-like words."""
    saved, now = _identity_parts(saved_identity), _identity_parts(_identity(manifest))
    if saved is None or now is None:
        return "record"
    return ", ".join(name for key, name in _IDENTITY.items() if saved[key] != now[key]) or "record"


def _saved_options(saved_identity: str | None, manifest: dict[str, Any]) -> str:
    """The command-line options a checkpoint was collected with where this run's differ (precision, split,
    batch size, shard), as '; it was collected with --batch-size 8': the refusal said only "not the same:
    batch size", and a run interrupted yesterday left no trace of the value to resume with."""
    old, now = _identity_parts(saved_identity), _identity_parts(_identity(manifest))
    if old is None or now is None:
        return ""
    options = []
    if old["precision"] != now["precision"]:
        options.append("--mixed-precision" if old["precision"] == "mixed_float16" else "no --mixed-precision")
    split, split_now = (s if isinstance(s, dict) else {} for s in (old["split"], now["split"]))
    if {"fraction", "seed"} <= split.keys() and any(split[k] != split_now.get(k) for k in ("fraction", "seed")):
        options.append(f"--fraction {split['fraction']} --seed {split['seed']}")
    if old["batch_size"] != now["batch_size"]:
        options.append(f"--batch-size {old['batch_size']}")
    if old["shard"] != now["shard"]:
        options.append(f"--shard {old['shard'][0]}/{old['shard'][1]}" if old["shard"] else "no --shard")
    if old["preprocess"] != now["preprocess"]:
        options.append(f"--preprocess {old['preprocess'] or NO_PREPROCESSING}")
    return f"; it was collected with {', '.join(options)}" if options else ""


def _checkpoint(out_dir: Path, stats: ActivationStats, state: dict[str, Any], split_name: str) -> None:
    """Save the statistics so far with how far the run got (atomically; the last one wins)."""
    parts = state["heldout_parts"]
    stats.heldout = HeldOut.concatenate(parts) if parts else None
    parts[:] = [stats.heldout] if parts else []  # joined once: the next checkpoint adds only the new batches
    stats.manifest["complete"] = False
    stats.manifest["progress"] = {"split": split_name, "position": state["position"], "skipped": state["skipped"],
                                  "identity": _identity(stats.manifest)}
    stats.save(out_dir)


def _resume(out_dir: Path, manifest: dict[str, Any]) -> tuple[ActivationStats, dict[str, Any]] | None:
    """The checkpointed statistics and position in `out_dir`, if they belong to this very run."""
    if not (out_dir / MANIFEST_NAME).is_file():
        return None
    if not (out_dir / ARRAYS_NAME).is_file():
        raise UserError(f"{out_dir} holds a {MANIFEST_NAME} but no statistics ({ARRAYS_NAME}): a tag set or "
                        "another tool's files; choose another output folder")
    saved = ActivationStats.load(out_dir)
    if saved.manifest.get("complete", False):
        raise UserError(f"{out_dir} already holds a finished collection; choose another output folder or delete it")
    progress = saved.manifest.get("progress") or {}
    if progress.get("identity") != _identity(manifest):
        raise UserError(f"{out_dir} holds a checkpoint of a different run (not the same: "
                        f"{_difference(progress.get('identity'), manifest)})"
                        f"{_saved_options(progress.get('identity'), manifest)}; resume with the same settings, "
                        "or choose another output folder")
    print(f"resuming from checkpoint in {out_dir}: split {progress['split']!r}, image {progress['position']}",
          file=sys.stderr)
    parts = [saved.heldout] if saved.heldout is not None else []
    saved.heldout = None
    return saved, {"split": progress["split"], "position": progress["position"], "skipped": progress.get("skipped", []),
                   "heldout_parts": parts}
