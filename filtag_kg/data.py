"""Labelled image sources behind one interface: the embedded Animal-Shape set, image folders, arrays.

A source has a class list and named splits ("train", "heldout"). A split knows its image ids and
labels and makes a tf.data pipeline that yields (images, labels, positions) batches in a fixed order,
so that a run can be sharded and resumed by position.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pickle
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import UserError, is_whole
from .imagenet import WNID, imagenet_index

if TYPE_CHECKING:
    import tensorflow as tf

ANIMAL_SHAPE_CLASSES = ["bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra"]
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}

Preprocess = Callable[["tf.Tensor"], "tf.Tensor"]
PARALLEL_CALLS = os.cpu_count() or 1  # decoding and preprocessing threads of a pipeline
PREFETCH_BATCHES = 2  # batches prepared while the model runs on the current one


@dataclass(frozen=True)
class InputSpec:
    """What a model wants as input: spatial size, channels, its family's preprocessing, and whether it
    takes images channels-first ([batch, channels, height, width], as models ported from PyTorch)."""

    height: int
    width: int
    channels: int
    preprocess: Preprocess | None = None
    channels_first: bool = False

    @property
    def shape(self) -> tuple[int, int, int]:
        """One image's shape as the model takes it."""
        if self.channels_first:
            return self.channels, self.height, self.width
        return self.height, self.width, self.channels

    @property
    def layout(self) -> str:
        """The axes of `shape` in words, for messages."""
        return "channels×height×width" if self.channels_first else "height×width×channels"


@dataclass
class Split:
    """One split of a labelled image set, in a fixed order.

    `dataset(spec, batch_size, start, shard)` yields batches (images, labels, positions) of the items
    from position `start` on (with `shard=(i, n)`: those whose position is i modulo n); `positions`
    index into `ids`/`labels`. Items that cannot be decoded are left out of the batches; the caller
    finds them as the positions that never appear.
    """

    name: str
    ids: list[str]
    labels: np.ndarray
    _make: Callable[[InputSpec, int, np.ndarray], "tf.data.Dataset"] = field(repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    def positions(self, start: int = 0, shard: tuple[int, int] | None = None) -> np.ndarray:
        """The positions a (resumed, sharded) pass reads, in order."""
        positions = np.arange(start, len(self.ids), dtype=np.int64)
        return positions if shard is None else positions[positions % shard[1] == shard[0]]

    def dataset(
        self, spec: InputSpec, batch_size: int, start: int = 0, shard: tuple[int, int] | None = None
    ) -> "tf.data.Dataset":
        return self._make(spec, batch_size, self.positions(start, shard))


@dataclass
class ImageSource:
    """A labelled image set: class names (in the model's output order), optional wnids, and splits."""

    name: str
    classes: list[str]
    splits: dict[str, Split]
    wnids: list[str | None] | None = None
    root: str | None = None
    split_info: dict[str, Any] = field(default_factory=dict)
    label_space: str = ""

    def __post_init__(self) -> None:
        self.label_space = self.label_space or self.name

    def image_list_sha256(self) -> str:
        """SHA-256 of every split's image ids and labels, in order: the images a run reads. A checkpoint
        or shard must share it with the run that resumes or joins it (a folder whose files changed does not)."""
        digest = hashlib.sha256()
        for name in sorted(self.splits):
            split = self.splits[name]
            digest.update(json.dumps([name, split.ids]).encode())
            digest.update(np.asarray(split.labels, "<i8").tobytes())
        return digest.hexdigest()

    def split(self, name: str) -> Split:
        if name not in self.splits:
            raise UserError(f"data set {self.name!r} has no split {name!r}; it has: {', '.join(self.splits)}")
        return self.splits[name]


def _prefetched(ds: "tf.data.Dataset") -> "tf.data.Dataset":
    """Prefetch, with tf.data's autotuning off. Deleting an autotuned iterator waits for the tuning
    thread's next wake-up, whose period doubles as a run goes on: collecting 320 JPEGs with VGG16
    took 41 or 82 s instead of 25, the difference spent after the last batch."""
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.prefetch(PREFETCH_BATCHES).with_options(options)


# -- arrays -------------------------------------------------------------------------------------
def _array_split(name: str, images: np.ndarray, labels: np.ndarray, ids: list[str],
                 channels_last: bool = False) -> Split:
    """A split of in-memory images, shaped for the model as given, or (`channels_last`: the embedded
    data, [n, h, w, c]) turned channels-first for a model that takes them so (it was refused, as
    28×28×1 against the model's 1×28×28)."""
    def make(spec: InputSpec, batch_size: int, positions: np.ndarray) -> "tf.data.Dataset":
        import tensorflow as tf

        chosen = images[positions]
        if channels_last and spec.channels_first:
            chosen = chosen.transpose(0, 3, 1, 2)
        if chosen.shape[1:] != spec.shape:
            raise UserError(f"the {name} images are {'×'.join(map(str, chosen.shape[1:]))} but the model takes "
                            f"{'×'.join(map(str, spec.shape))} ({spec.layout})")
        ds = tf.data.Dataset.from_tensor_slices((chosen, labels[positions], positions))
        ds = ds.batch(batch_size)
        if spec.preprocess is not None:
            pre = spec.preprocess
            ds = ds.map(lambda x, y, p: (pre(tf.cast(x, tf.float32)), y, p), num_parallel_calls=PARALLEL_CALLS)
        return _prefetched(ds)

    return Split(name, ids, labels, make)


def array_source(
    images: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    classes: Sequence[str] | None = None,
    heldout: tuple[np.ndarray, Sequence[int] | np.ndarray] | None = None,
    name: str = "arrays",
) -> ImageSource:
    """Images already shaped for the model ([n, h, w, c], or [n, c, h, w] for a channels-first model) with
    integer labels; no preprocessing applied.

    `heldout` = (images, labels) adds a held-out split (per-image records are kept for it).
    """
    images = _finite_images("train", images)
    labels_arr = _class_indices("labels", labels, len(images))
    n_classes = int(labels_arr.max()) + 1 if labels_arr.size else 0
    if classes is None:
        classes = [str(c) for c in range(n_classes)]
    classes = _class_names(classes)
    if n_classes > len(classes):
        raise UserError(f"label {n_classes - 1} is beyond the {len(classes)} classes (labels 0 … {len(classes) - 1})")
    splits = {"train": _array_split("train", images, labels_arr, [str(i) for i in range(len(images))])}
    if heldout is not None:
        hx = _finite_images("held-out", heldout[0])
        if hx.shape[1:] != images.shape[1:]:
            raise UserError(f"held-out images are {hx.shape[1:]}, the training images {images.shape[1:]}: they must match")
        hy = _class_indices("held-out labels", heldout[1], len(hx))
        if hy.size and int(hy.max()) >= len(classes):  # was taken, and refused only later by collect
            raise UserError(f"held-out label {int(hy.max())} is beyond the {len(classes)} classes "
                            f"(labels 0 … {len(classes) - 1})")
        splits["heldout"] = _array_split("heldout", hx, hy, [str(i) for i in range(len(hx))])
    return ImageSource(name=name, classes=classes, splits=splits, label_space=own_label_space(name, classes))


def _class_names(classes: Any) -> list[str]:
    """A class list as text: whole numbers (`np.arange(10)`, a LabelEncoder's integer classes) become their
    digits, as the classes of unnamed labels are; anything else but text is refused by value. Numbers were
    kept: numpy ints broke the manifest's JSON, Python ints the knowledge-graph export."""
    names = []
    for c in classes:
        if is_whole(c):
            c = str(int(c))
        if not isinstance(c, str):
            raise UserError(f"class names must be text (or whole numbers), got {c!r}")
        names.append(str(c))  # np.str_ as str
    return names


def _finite_images(which: str, images: Any) -> np.ndarray:
    """`images` as an array [n, h, w, c] of real numbers without NaN or infinite pixels: the activations of
    such an image are NaN or arbitrary (ReLU turns NaN into 0), and one NaN image makes its class's z NaN.
    Text, objects and complex numbers are refused here, not by TensorFlow once the model is set up (or,
    for complex pixels, with the imaginary parts silently dropped)."""
    try:
        array = np.asarray(images)
    except ValueError as e:  # numpy: "inhomogeneous shape", a list of images of different sizes
        raise UserError(f"{which} images must all have one shape, to stack as [n, height, width, channels]: "
                        f"{e}") from None
    if array.ndim != 4:
        raise UserError(f"{which} images must be an array [n, height, width, channels] (or [n, channels, height, "
                        f"width] for a channels-first model), got "
                        f"{type(images).__name__} of shape {array.shape}")
    if array.dtype.kind not in "biuf":
        raise UserError(f"{which} images must be numbers (bool, integer or float pixels), got an array of dtype "
                        f"{array.dtype}; convert them, e.g. np.asarray(images, dtype=np.float32)")
    if array.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(array).all(axis=(1, 2, 3)))
        if len(bad):
            raise UserError(f"{which} image {int(bad[0])} has NaN or infinite pixels ({len(bad)} such image(s)); "
                            "replace or drop them")
    return array


def _class_indices(which: str, labels: Any, n_images: int) -> np.ndarray:
    """`labels` as int64 class indices, one per image; whole numbers stored as floats are taken, anything
    else (fractions, negatives, text, booleans) is refused by its first offending value."""
    array = np.asarray(labels)
    if array.shape != (n_images,):
        raise UserError(f"{which} must be one class index per image: {n_images} images, {which} of shape {array.shape}")
    if array.dtype.kind in "iu":
        valid = not array.size or array.min() >= 0
    else:
        valid = array.dtype.kind == "f" and bool(np.all(np.isfinite(array) & (array == np.round(array)) & (array >= 0)))
    if not valid:
        bad = next((v for v in array.tolist() if isinstance(v, bool) or not isinstance(v, (int, float))
                     or not float(v).is_integer() or v < 0), array.dtype)
        raise UserError(f"{which} must be non-negative whole numbers (class indices); got {bad!r}")
    return array.astype(np.int64)


def own_label_space(name: str, classes: Sequence[str]) -> str:
    """The label space of a data set known only by its name: the name and a hash of its class list,
    so that data sets named alike (two folders called 'train') with other classes never share the
    class nodes of the knowledge graph, while the same classes under the same name do."""
    return f"{name}-{hashlib.sha256(json.dumps(list(classes)).encode()).hexdigest()[:8]}"


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a seeded stratified (train, held-out) split, each sorted: same inputs, same split.
    Each class keeps round(fraction·n) images for training, at least one: a class whose share rounded
    to 0 (one image at fraction 0.5, a few at 0.1) had no z, so no tags, and nothing said so."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.integer, np.floating)) \
            or not 0 < fraction <= 1:  # '0.5' was a TypeError of the comparison
        raise UserError(f"the training fraction must be a number in (0, 1], got {fraction!r}")
    if not is_whole(seed) or seed < 0:
        raise UserError(f"the split's seed must be a non-negative whole number, got {seed!r}")
    rng = np.random.default_rng(seed)
    train: list[np.ndarray] = []
    held: list[np.ndarray] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n_train = max(1, int(round(fraction * len(idx))))
        train.append(idx[:n_train])
        held.append(idx[n_train:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(held))


# -- the embedded default: Animal-Shape ---------------------------------------------------------
_NUMPY_CORE = "numpy._core" if int(np.__version__.split(".")[0]) >= 2 else "numpy.core"  # renamed in numpy 2


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else: the package's pickles are data, never code."""

    ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")
        if module != "numpy":  # numpy.core or numpy._core, as pickled by numpy 1 or 2: read by either
            module = _NUMPY_CORE + module.split("core", 1)[1]
        import importlib

        return getattr(importlib.import_module(module), name)


def _animal_shape_dir() -> Path:
    try:
        import animal_shape_mnist  # a namespace package (its init file is misnamed): use __path__
    except ImportError as e:  # pragma: no cover - a dependency
        raise UserError("the default data set needs the package animal-shape-mnist (pip install animal-shape-mnist)") from e
    for base in animal_shape_mnist.__path__:
        path = Path(base) / "data" / "Animal Shape"
        if path.is_dir():
            return path
    raise UserError("animal-shape-mnist is installed but its data folder 'data/Animal Shape' is missing")


def load_animal_shape_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 Animal-Shape silhouettes (uint8 [n, 28, 28]) and labels (0–9, alphabetical classes)."""
    directory = _animal_shape_dir()
    arrays = []
    for name in ("animal_data_version_3.gz", "animal_label_version_3.gz"):
        with gzip.open(directory / name, "rb") as f:
            arrays.append(_NumpyOnlyUnpickler(io.BytesIO(f.read())).load())
    images, labels = (np.asarray(a) for a in arrays)
    return images.astype(np.uint8), labels.astype(np.int64)


def animal_shape(fraction: float = 0.8, seed: int = 0) -> ImageSource:
    """The embedded default: Animal-Shape, 10 classes × 1,000, split stratified and seeded (80/20)."""
    images, labels = load_animal_shape_arrays()
    images = images[..., None]  # [n, 28, 28, 1]
    train_idx, held_idx = stratified_split(labels, fraction, seed)
    splits = {
        "train": _array_split("train", images[train_idx], labels[train_idx], [str(i) for i in train_idx], True),
        "heldout": _array_split("heldout", images[held_idx], labels[held_idx], [str(i) for i in held_idx], True),
    }
    return ImageSource(
        name="animal-shape", classes=list(ANIMAL_SHAPE_CLASSES), splits=splits,
        split_info={"fraction": fraction, "seed": seed},
    )


# -- image folders ------------------------------------------------------------------------------
def _list_folder(root: Path) -> tuple[list[str], list[list[Path]]]:
    if not root.is_dir():
        raise UserError(f"image folder {_shown(root)} does not exist or is not a folder")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    # a class folder linked from elsewhere whose target is gone (unmounted, moved) was left out unsaid
    dangling = sorted(p.name for p in root.iterdir()
                      if not p.name.startswith(".") and p.is_symlink() and not p.exists())
    lost = (f"{len(dangling):,} link(s) lead to nothing (the target is missing, or links lead in a loop) and are left "
            f"out: {', '.join(_shown(n) for n in dangling[:5])}{' …' if len(dangling) > 5 else ''}")
    if not class_dirs:
        raise UserError(f"image folder {_shown(root)} has no class sub-folders (expected ROOT/<class>/<image>.jpg)"
                        + (f"; {lost}" if dangling else ""))
    if dangling:
        print(f"warning: {_shown(root)}: {lost}", file=sys.stderr)
    files = []
    ignored: Counter[str] = Counter()  # files of other kinds, by suffix
    unlisted: list[OSError] = []  # sub-folders that cannot be listed
    for d in class_dirs:
        if _printable(d.name) != d.name:
            raise UserError(f"class folder {_printable(str(d))}: its name is not valid UTF-8; rename it")
        errors: list[OSError] = []
        found = _files_under(d, errors)
        for e in errors:
            if e.filename is not None and os.fspath(e.filename) == os.fspath(d):  # said to hold no images
                raise UserError(f"class folder {_shown(d)} cannot be read ({e.strerror or e}); make it readable")
        unlisted += errors
        images = sorted(p for p in found if p.suffix.lower() in IMAGE_SUFFIXES)
        ignored.update(_shown(p.suffix.lower()) or "(none)" for p in found if p.suffix.lower() not in IMAGE_SUFFIXES)
        if not images:  # what it holds instead, so that a folder of GIF or BMP files is not a puzzle
            others = Counter(_shown(p.suffix.lower()) or "(none)" for p in found)
            holds = (f" (it holds {len(found):,} other file(s): "
                     f"{', '.join(f'{suffix} ×{n:,}' for suffix, n in others.most_common())})" if found else "")
            raise UserError(f"class folder {_shown(d)} has no JPEG or PNG images{holds}")
        files.append(images)
    if unlisted:  # their images were left out unsaid
        which = "; ".join(f"{_shown(e.filename or '?')}: {e.strerror or e}" for e in unlisted[:3])
        print(f"warning: {_shown(root)}: {len(unlisted):,} sub-folder(s) of the class folders cannot be read and are "
              f"left out ({which}{' …' if len(unlisted) > 3 else ''})", file=sys.stderr)
    if ignored:  # a folder of BMP or WebP images lost them without a word
        kinds = ", ".join(f"{suffix} ×{n:,}" for suffix, n in ignored.most_common())
        print(f"warning: {_shown(root)}: {sum(ignored.values()):,} file(s) in the class folders are not JPEG or PNG "
              f"and are left out ({kinds})", file=sys.stderr)
    classless = [p.name for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
                 and p.is_file()]
    if classless:  # images beside the class folders were left out without a word
        print(f"warning: {_shown(root)}: {len(classless):,} image file(s) are in no class folder and are left out "
              f"(e.g. {', '.join(_shown(n) for n in sorted(classless)[:3])})", file=sys.stderr)
    return [d.name for d in class_dirs], files


def _files_under(folder: Path, unlisted: list[OSError] | None = None) -> list[Path]:
    """The files in `folder` and its sub-folders at any depth, hidden ones (and those in hidden folders)
    left out. Links to folders are followed, as data sets assembled from links to others' folders need
    (they were not: rglob lists such a sub-folder as nothing), each folder once, by its first path in
    name order: a link back up (a loop) or a second link to a folder read already adds nothing.
    Folders that cannot be listed (no permission) go into `unlisted`: os.walk passed them over unsaid."""
    seen: set[tuple[int, int]] = set()
    files = []
    for directory, subfolders, names in os.walk(folder, followlinks=True,
                                                onerror=unlisted.append if unlisted is not None else None):
        status = os.stat(directory)
        if (status.st_dev, status.st_ino) in seen:
            subfolders.clear()
            continue
        seen.add((status.st_dev, status.st_ino))
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))  # the same ids everywhere
        # a broken link (an annexed file not fetched) is kept, to be named as unreadable: it was left out unsaid
        files.extend(path for path in (Path(directory) / name for name in names if not name.startswith("."))
                     if path.is_file() or not path.exists())
    return files


def _shown(path: str | os.PathLike[str]) -> str:
    """A path as messages and manifests show it: `_printable`, so that a name that is not UTF-8 reads as
    \\xNN (it read as \\udcNN in messages) and never reaches JSON or RDF as a lone surrogate (a data set
    folder so named was collected, then its tags failed to export with a UnicodeEncodeError)."""
    return _printable(os.fspath(path))


def _printable(text: str) -> str:
    """A file name as text: bytes that are not UTF-8 (kept by Python as surrogates) as \\xNN escapes."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _decode(raw: "tf.Tensor", channels: int) -> "tf.Tensor":
    """An image file's bytes as uint8 [height, width, channels] (1, 3 or 4). For one channel, PNGs and
    JPEGs of one or three components decode to gray themselves; CMYK JPEGs (and GIF, BMP or WebP data
    under a JPEG or PNG name) decode only to RGB, so they are converted with the luma weights of
    tf.image.rgb_to_grayscale: before, TensorFlow refused them and they were skipped as unreadable.
    For four channels (RGBA), images other than PNGs decode to RGB and get an opaque alpha channel:
    TensorFlow decodes no JPEG to four channels, so a model taking RGBA had every JPEG skipped."""
    import tensorflow as tf

    def direct() -> tf.Tensor:
        return tf.io.decode_image(raw, channels=channels, expand_animations=False)

    def rgb() -> tf.Tensor:
        return tf.io.decode_image(raw, channels=3, expand_animations=False)

    if channels == 3:
        return direct()
    is_png = tf.strings.substr(raw, 0, 8) == b"\x89PNG\r\n\x1a\n"
    if channels == 4:
        def opaque() -> tf.Tensor:
            return tf.pad(rgb(), [[0, 0], [0, 0], [0, 1]], constant_values=255)

        return tf.cond(is_png, direct, opaque)

    def from_rgb() -> tf.Tensor:
        return tf.cast(tf.round(tf.image.rgb_to_grayscale(tf.cast(rgb(), tf.float32))), tf.uint8)

    is_jpeg = tf.io.is_jpeg(raw)
    gray_itself = tf.cond(is_jpeg, lambda: tf.io.extract_jpeg_shape(raw)[2] != 4, lambda: is_png)
    return tf.cond(gray_itself, direct, from_rgb)


FILE_CHANNELS = (1, 3, 4)  # what image files decode to: gray, RGB, RGBA


def _folder_split(name: str, root: Path, paths: list[Path], labels: np.ndarray) -> Split:
    path_strings = [os.fsencode(p) for p in paths]  # bytes: any file name the system has, UTF-8 or not

    def make(spec: InputSpec, batch_size: int, positions: np.ndarray) -> "tf.data.Dataset":
        import tensorflow as tf

        if spec.channels not in FILE_CHANNELS:  # TensorFlow's decoder failed with a traceback
            raise UserError(f"the model takes images of {spec.channels} channels; JPEG and PNG files give 1 (gray), "
                            "3 (RGB) or 4 (RGBA): pass such images as arrays (filtag_kg.data.array_source)")

        def load(path: tf.Tensor, label: tf.Tensor, position: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
            image = _decode(tf.io.read_file(path), spec.channels)
            image = tf.image.resize(tf.cast(image, tf.float32), (spec.height, spec.width))
            image = tf.ensure_shape(image, (spec.height, spec.width, spec.channels))
            if spec.preprocess is not None:
                image = spec.preprocess(image)
            if spec.channels_first:  # files decode height×width×channels
                image = tf.transpose(image, [2, 0, 1])
            return image, label, position

        chosen = [path_strings[p] for p in positions]
        ds = tf.data.Dataset.from_tensor_slices((tf.constant(chosen, tf.string), labels[positions], positions))
        ds = ds.map(load, num_parallel_calls=PARALLEL_CALLS, deterministic=True).ignore_errors()
        return _prefetched(ds.batch(batch_size))

    return Split(name, [_printable(str(p.relative_to(root))) for p in paths], labels, make)


def image_folder(
    root: str | Path,
    classes: Sequence[str] | None = None,
    heldout: str | Path | None = None,
    fraction: float = 0.8,
    seed: int = 0,
    name: str | None = None,
) -> ImageSource:
    """A folder of class sub-folders of JPEG/PNG files (ImageNet layout; names are wnids or labels).

    `classes` is the model's output class list: each folder name must be one of its entries (or the
    wnid of one, for ImageNet); without it, the sorted folder names are the classes. `heldout` names a
    second folder of the same layout as held-out split; otherwise the images are split stratified and
    seeded, `fraction` for training (1.0: no held-out split). The folders are recorded by absolute path
    (as given, symbolic links kept), so that a run resumed or a shard collected from another working
    directory, or with the path spelled otherwise ('imgs/', './imgs'), reads as the same data set.
    """
    root = Path(os.path.abspath(root))
    name = name or _shown(root.name)
    folder_names, files = _list_folder(root)
    wnids: list[str | None] | None = None
    from_folders = classes is None  # the classes are the training folder's names, not a model's
    if classes is None:
        classes = folder_names
        if all(WNID.match(n) for n in folder_names):
            wnids = list(folder_names)
        elif _imagenet_by_label(folder_names):
            print(f"warning: {_shown(root)}: its {len(folder_names):,} class folders are ImageNet-1k's classes named by "
                  "label, taken in the order of their names (as Keras' image_dataset_from_directory takes them); a "
                  "model trained on ImageNet orders its outputs by wnid (tench, goldfish, …): name the folders by "
                  "wnid, or give the model's class order (collect --classes)", file=sys.stderr)
    else:
        classes = _class_names(classes)
        wnids = _imagenet_wnids(classes)
    index = _class_index(classes)
    shared = _shared_labels(classes)

    def labels_of(names: list[str], where: Path) -> list[int]:
        out = []
        for n in names:
            if n in shared:
                raise UserError(f"class folder {_shown(where / n)} names {len(shared[n])} of the model's classes "
                                f"(indices {', '.join(map(str, shared[n]))}{_wnids_text(wnids, shared[n])}); name the "
                                "folder by the wnid of its class")
            if n not in index and from_folders:  # a held-out class the training folder lacks: no model to blame
                shown = ", ".join(classes[:5]) + (" …" if len(classes) > 5 else "")
                raise UserError(f"class folder {_shown(where / n)} is none of the {len(classes)} class folders of "
                                f"{_shown(root)} ({shown}), whose names are the classes: a held-out class needs "
                                "training images of its own")
            if n not in index:
                raise UserError(
                    f"class folder {_shown(where / n)} does not match any of the model's {len(classes)} classes "
                    "(folder names must be class labels or ImageNet wnids)"
                )
            out.append(index[n])
        return out

    folder_labels = labels_of(folder_names, root)
    paths = [p for fs in files for p in fs]
    labels = np.asarray([lab for lab, fs in zip(folder_labels, files) for _ in fs], np.int64)
    splits: dict[str, Split] = {}
    if heldout is not None:
        held_root = Path(os.path.abspath(heldout))
        if held_root.is_dir() and os.path.samefile(held_root, root):  # Hits@n over the images tagged from
            raise UserError(f"the held-out folder {_shown(held_root)} is the training folder {_shown(root)}: the "
                            "held-out images must be others; leave the held-out folder out to split the training "
                            "folder (fraction, seed)")
        held_names, held_files = _list_folder(held_root)
        held_labels = labels_of(held_names, held_root)
        held_paths = [p for fs in held_files for p in fs]
        hl = np.asarray([lab for lab, fs in zip(held_labels, held_files) for _ in fs], np.int64)
        splits["train"] = _folder_split("train", root, paths, labels)
        splits["heldout"] = _folder_split("heldout", held_root, held_paths, hl)
        split_info: dict[str, Any] = {"heldout_root": _shown(held_root)}
    else:
        train_idx, held_idx = stratified_split(labels, fraction, seed)
        splits["train"] = _folder_split("train", root, [paths[i] for i in train_idx], labels[train_idx])
        if len(held_idx):
            splits["heldout"] = _folder_split("heldout", root, [paths[i] for i in held_idx], labels[held_idx])
        split_info = {"fraction": fraction, "seed": seed}
    return ImageSource(
        name=name, classes=classes, splits=splits, wnids=wnids, root=_shown(root), split_info=split_info,
        label_space="imagenet1k" if _imagenet_wnids(classes) else own_label_space(name, classes),
    )


def image_files(paths: Sequence[str | Path], classes: Sequence[str]) -> ImageSource:
    """Single image files as a held-out split (for explanations); a file's true class is that of the
    nearest folder on its path named after one of `classes` (a label or ImageNet wnid), as image_folder
    reads class folders at any depth (class/sub/x.jpg), else unknown (-1)."""
    files = [Path(p) for p in paths]
    for f in files:
        if not f.is_file():  # a folder or a link to nothing was said not to exist
            problem = ("is a folder, not a file" if f.is_dir() else "is a symbolic link to nothing (its target is "
                       "missing, or links lead in a loop)" if f.is_symlink() else "does not exist")
            raise UserError(f"image file {_shown(f)} {problem}")
        if f.suffix.lower() not in IMAGE_SUFFIXES:
            raise UserError(f"image file {_shown(f)}: expected a JPEG or PNG file")
    index, shared = _class_index(list(classes)), _shared_labels(list(classes))
    labels = np.asarray([_class_of_file(f, index, shared) for f in files], np.int64)
    split = _folder_split("heldout", Path("/"), [f.resolve() for f in files], labels)
    split.ids = [_printable(str(f)) for f in files]
    return ImageSource(name="images", classes=list(classes), splits={"heldout": split})


def _class_of_file(path: Path, index: dict[str, int], shared: dict[str, list[int]]) -> int:
    """The class index (`_class_index`) of the nearest folder on `path` named after a class (-1: none).
    The folders the path names, not a symbolic link's target's: as image_folder reads class folders of
    links. A folder named by a label several classes share (`_shared_labels`: ImageNet's 'crane') ends
    the search: its class is unknown."""
    for folder in Path(os.path.abspath(path)).parents:
        if folder.name in index:
            return index[folder.name]
        if folder.name in shared:
            return -1
    return -1


def _class_index(classes: list[str]) -> dict[str, int]:
    """Map class labels, and the wnids and Keras labels of ImageNet classes, to class indices: a folder
    named 'Chihuahua' holds class n02085620 of a run on wnid folders (`explain` gave its images no true
    class). A label several classes share (ImageNet's two 'crane's and 'maillot's) maps to none: it went
    to the last of them, so the bird crane's images were counted as the machine's."""
    shared = _shared_labels(classes)
    index = {c: i for i, c in enumerate(classes) if c not in shared}
    wnids = _imagenet_wnids(classes)
    if wnids:
        labels = list(imagenet_index().keras_labels)
        shared_labels = _shared_labels(labels)
        for i, (w, label) in enumerate(zip(wnids, labels)):
            index.setdefault(w, i)
            if label not in shared_labels:
                index.setdefault(label, i)
    return index


def _shared_labels(classes: list[str]) -> dict[str, list[int]]:
    """The labels that several classes share, with their class indices."""
    where: dict[str, list[int]] = {}
    for i, c in enumerate(classes):
        where.setdefault(c, []).append(i)
    return {c: idx for c, idx in where.items() if len(idx) > 1}


def _wnids_text(wnids: list[str | None] | None, indices: list[int]) -> str:
    """': wnids n…, n…' for classes with known wnids (for messages), else ''."""
    known = [w for w in (wnids[i] for i in indices) if w] if wnids else []
    return f": wnids {', '.join(known)}" if known else ""


def _imagenet_by_label(names: list[str]) -> bool:
    """Whether folder names are the 1,000 ImageNet-1k classes, some named by label (Keras'), the rest by wnid."""
    if len(names) != 1000:
        return False
    index = imagenet_index()
    return all(index.knows(n) for n in names) and not all(WNID.match(n) for n in names)


def _imagenet_wnids(classes: list[str]) -> list[str | None] | None:
    """The wnids of ImageNet-1k classes in index order, when `classes` is the ImageNet class list (Keras'
    labels, or the wnids). Any 1,000 classes were taken for ImageNet's: a model of 1,000 classes of its
    own got ImageNet's wnids and label space, so its classes were ImageNet's in the graph."""
    if len(classes) != 1000:
        return None
    index = imagenet_index()
    return list(index.wnids) if tuple(classes) in (index.keras_labels, index.wnids) else None
