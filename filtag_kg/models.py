"""Models: the small default CNN (trained once, cached), saved Keras models, keras.applications by name.

Also: finding conv layers by type (nested models included), the model's input spec, and a model
identity (architecture + weights hash) for provenance.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import secrets
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import cache_dir, probe_writable
from .data import ANIMAL_SHAPE_CLASSES, InputSpec, animal_shape
from .errors import UserError
from .imagenet import ARCHITECTURE_ONLY

if TYPE_CHECKING:
    import keras

CONV_TYPES = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D")
DEFAULT_MODEL_NAME = "default-cnn"
DEFAULT_MODEL_VERSION = 1

# keras.applications by name: (module, constructor, preprocess family, input size)
APPLICATIONS: dict[str, tuple[str, str, int]] = {
    "VGG16": ("vgg16", "VGG16", 224),
    "VGG19": ("vgg19", "VGG19", 224),
    "ResNet50": ("resnet", "ResNet50", 224),
    "ResNet101": ("resnet", "ResNet101", 224),
    "ResNet50V2": ("resnet_v2", "ResNet50V2", 224),
    "InceptionV3": ("inception_v3", "InceptionV3", 299),
    "Xception": ("xception", "Xception", 299),
    "MobileNet": ("mobilenet", "MobileNet", 224),
    "MobileNetV2": ("mobilenet_v2", "MobileNetV2", 224),
    "DenseNet121": ("densenet", "DenseNet121", 224),
    "EfficientNetB0": ("efficientnet", "EfficientNetB0", 224),
}


@dataclass
class LoadedModel:
    """A Keras model with what collection and provenance need to know about it."""

    model: "keras.Model"
    name: str
    family: str  # "default-cnn", "vgg16", …, or "keras" for a saved model
    source: str  # where it came from: a path, "keras.applications:VGG16 (weights=…)", the cache file
    input_spec: InputSpec
    classes: list[str] | None = None  # the output class names when known (default model, ImageNet)
    precision: str = "float32"  # or "mixed_float16" (see with_mixed_precision)
    preprocess: str | None = None  # the preprocessing chosen for a saved model (`preprocessing`), if any

    def describe(self) -> dict[str, Any]:
        """The manifest entry: name, hash, family, source, compute precision, the preprocessing chosen for a
        saved model (only when one was) and the layer list (architecture)."""
        chosen = {"preprocess": self.preprocess} if self.preprocess not in (None, NO_PREPROCESSING) else {}
        return {
            "name": self.name, "hash": model_hash(self.model), "family": self.family, "source": self.source,
            "precision": self.precision, **chosen, "layers": describe_layers(self.model),
        }


# -- preprocessing of a saved model's input --------------------------------------------------------
NO_PREPROCESSING = "none"
UNIT_SCALE = "unit"  # pixels / 255, as Rescaling(1/255) or ImageDataGenerator(rescale=1/255) outside a model
PREPROCESS_HELP = (
    f"'{NO_PREPROCESSING}' (the model takes RGB pixels 0–255 as they are: its preprocessing is in the model), "
    f"'{UNIT_SCALE}' (pixels / 255, to [0, 1]), or a keras.applications family whose preprocess_input the "
    "model was trained with: a module such as mobilenet_v2, resnet, vgg16, efficientnet, or a model name such "
    "as MobileNetV2"
)


def preprocess_families() -> list[str]:
    """The keras.applications modules with a preprocess_input (vgg16, resnet, mobilenet_v2, …)."""
    import keras

    return sorted(n for n in dir(keras.applications) if not n.startswith("_") and n != "imagenet_utils"
                  and callable(getattr(getattr(keras.applications, n), "preprocess_input", None)))


def preprocessing(name: str) -> tuple[str, Any]:
    """A preprocessing by name (`PREPROCESS_HELP`) as (its recorded name, the function or None). A saved
    model got none, and nothing let a user choose one: a base trained on preprocess_input outside the
    model (the usual transfer-learning recipe) was fed pixels 0–255, and its tags were of the wrong input."""
    import keras

    if not isinstance(name, str):
        raise UserError(f"preprocess must be a name ({PREPROCESS_HELP}), got {name!r}")
    key = name.strip()
    if key.lower() == NO_PREPROCESSING:
        return NO_PREPROCESSING, None
    if key.lower() == UNIT_SCALE:
        return UNIT_SCALE, lambda x: x / 255.0
    by_name = {n.lower(): entry[0] for n, entry in APPLICATIONS.items()}
    module = by_name.get(key.lower(), key.lower())  # MobileNetV2, mobilenetv2 or mobilenet_v2
    if module not in preprocess_families():
        raise UserError(f"unknown preprocessing {name!r}: expected {NO_PREPROCESSING}, {UNIT_SCALE}, a "
                        f"keras.applications family ({', '.join(preprocess_families())}) or a model name "
                        f"({', '.join(APPLICATIONS)})")
    return module, getattr(keras.applications, module).preprocess_input


def with_preprocessing(model: "keras.Model", name: str) -> tuple[InputSpec, str]:
    """The model's input spec with the preprocessing named `name` (`preprocessing`), and its recorded name.
    A keras.applications family's is for RGB images: a model of other channels is refused by name (its
    preprocess_input failed inside the image pipeline, with a traceback)."""
    chosen, function = preprocessing(name)
    spec = input_spec_of(model)
    if chosen not in (NO_PREPROCESSING, UNIT_SCALE) and spec.channels != 3:
        raise UserError(f"preprocessing {name!r} is keras.applications' for RGB images (3 channels), but model "
                        f"{model.name!r} takes {spec.channels}; choose {NO_PREPROCESSING} or {UNIT_SCALE}")
    return replace(spec, preprocess=function), chosen


# -- conv layers ---------------------------------------------------------------------------------
def iter_layers(model: "keras.Model", prefix: str = "") -> list[tuple[str, Any]]:
    """All layers in network order with path names; layers of nested models as 'outer/inner'."""
    out: list[tuple[str, Any]] = []
    for layer in model.layers:
        name = prefix + layer.name
        if _is_nested(layer):
            out.extend(iter_layers(layer, name + "/"))
        else:
            out.append((name, layer))
    return out


def _is_nested(layer: Any) -> bool:
    """Whether a layer is a model of its own (functional, Sequential), whose layers are listed as 'outer/inner'."""
    return hasattr(layer, "layers") and layer.__class__.__name__ in ("Functional", "Sequential", "Model")


def layer_calls(model: "keras.Model", prefix: str = "", times: int = 1) -> dict[str, int]:
    """How often each layer (by path name, as `iter_layers`) is called in one pass of `model`: more than
    once for a layer shared within the model (called at two places of a functional model, or put twice
    into a Sequential one), or inside a nested model that is. Counted from the model's own config,
    which lists the calls made within this model only (not those of other models built on its layers)."""
    if model.__class__.__name__ == "Functional":
        own = {entry["name"]: len(entry["inbound_nodes"]) for entry in model.get_config()["layers"]}
    else:
        own = Counter(layer.name for layer in model.layers)
    out: dict[str, int] = {}
    for layer in dict.fromkeys(model.layers):  # a layer put twice into a Sequential model is counted by `own`
        name, calls = prefix + layer.name, times * own[layer.name]
        if _is_nested(layer):
            out.update(layer_calls(layer, name + "/", calls))
        else:
            out[name] = calls
    return out


def conv_type(layer: Any) -> str | None:
    """The Keras conv type of a layer (one of CONV_TYPES), also for a subclass of one (a user's
    `class MyConv(keras.layers.Conv2D)`, which a look at the class name missed); None for others."""
    return next((c.__name__ for c in type(layer).__mro__
                 if c.__name__ in CONV_TYPES and c.__module__.split(".")[0] == "keras"), None)


def conv_layers(model: "keras.Model") -> list[str]:
    """Names of the convolutional layers (Conv2D, DepthwiseConv2D, SeparableConv2D and their subclasses),
    by type, not name; a layer listed twice (put twice into a Sequential model) is named once."""
    return list(dict.fromkeys(name for name, layer in iter_layers(model) if conv_type(layer)))


def select_layers(model: "keras.Model", patterns: str | Sequence[str] | None = None) -> list[str]:
    """The conv layers to collect: all of them, or those matching names or glob patterns (in network order).

    A shared conv layer (called more than once in a pass: reused at two places, or in a nested model
    used twice) is refused: FilTag reads one feature map per layer, and a shared layer has one per
    call; collection read the first call's (the last one's when a nested layer was chosen too)."""
    convs = conv_layers(model)
    if not convs:
        raise _no_conv_error(model)
    chosen = match_layers(convs, patterns, "conv layer")
    calls = layer_calls(model)
    shared = [name for name in chosen if calls[name] > 1]
    if shared:
        others = ", ".join(name for name in convs if calls[name] == 1)
        others = f"not shared: {others}" if others else "none is unshared"
        raise UserError(
            f"conv layer(s) {', '.join(f'{name!r} ({calls[name]} calls)' for name in shared)} of model {model.name!r} "
            "are shared: called more than once in one pass, so each has several feature maps, and FilTag reads one "
            f"per layer. Choose other layers with --layer ({others}), or collect from a model that calls each "
            "layer once"
        )
    return chosen


def _no_conv_error(model: "keras.Model") -> UserError:
    """The error for a model without a Conv2D-family layer, naming the layer types it has instead: its
    conv layers of other kinds (Conv1D, Conv3D, Conv2DTranspose …) or, without any, all its layer types,
    so that the user sees why (before: "no convolutional layer" of a Conv1D model, or a message about
    its input shape)."""
    kinds: dict[str, list[str]] = defaultdict(list)
    for name, layer in iter_layers(model):
        kinds[layer.__class__.__name__].append(name)
    other = {kind: names for kind, names in kinds.items() if "Conv" in kind}
    if other:
        found = "its conv layers are of other kinds: " + "; ".join(
            f"{kind} ({', '.join(map(repr, names[:3]))}{' …' if len(names) > 3 else ''})"
            for kind, names in other.items())
    else:
        found = f"its layers are of type(s) {', '.join(kinds) or 'none'}"
    return UserError(f"model {model.name!r} has no convolutional layer of the 2-D types FilTag reads "
                     f"({', '.join(CONV_TYPES)}); {found}. filtag-kg tags the filters of 2-D conv layers over images")


LISTED_LAYERS = 20  # layer names an error lists


def match_layers(names: list[str], patterns: str | Sequence[str] | None, what: str = "layer") -> list[str]:
    """The `names` matching any of the names or glob patterns (all with None; one string is one
    pattern), in their order; a nested layer ('base/conv1') matches by its path or by its own name. A
    pattern that matches none is a UserError listing the names. Anything but text is refused by value
    (layers=5 failed with "'int' object is not iterable"), and so is an empty list, which chose every
    layer as if none had been named."""
    if patterns is None:
        return list(names)
    if isinstance(patterns, str):
        patterns = [patterns]
    elif isinstance(patterns, Iterable):
        patterns = list(patterns)
    else:
        raise UserError(f"layers must be a layer name or pattern, or a list of them, got {patterns!r}")
    bad = next((p for p in patterns if not isinstance(p, str)), None)
    if bad is not None:
        raise UserError(f"layers must be layer names or patterns (text), got {bad!r}")
    if not patterns:
        raise UserError(f"layers is empty; name at least one {what}, or leave layers out for all of them")
    chosen: set[str] = set()
    for pattern in patterns:
        # a nested layer by its path or its own name, each also as a glob ('block_16_*': it took only exact names)
        matched = [c for c in names
                   if fnmatch.fnmatchcase(c, pattern) or fnmatch.fnmatchcase(c.split("/")[-1], pattern)]
        if not matched:  # the first names only: EfficientNetB0's 81 made a message of 4,000 characters
            listed = ", ".join(names[:LISTED_LAYERS]) + (f" … ({len(names)} in all)" if len(names) > LISTED_LAYERS else "")
            raise UserError(f"layer {pattern!r} matches no {what}; {what}s: {listed}")
        chosen.update(matched)
    return [c for c in names if c in chosen]


def describe_layers(model: "keras.Model") -> list[dict[str, Any]]:
    """Every layer's name, Keras type (a conv subclass's conv type), position, filters/units, kernel size,
    parameter count, activation."""
    out = []
    for index, (name, layer) in enumerate(iter_layers(model)):
        kind = conv_type(layer) or layer.__class__.__name__
        filters = getattr(layer, "filters", None) or getattr(layer, "units", None)
        if kind == "DepthwiseConv2D":
            filters = _output_channels(layer)
        kernel = getattr(layer, "kernel_size", None)
        activation = getattr(layer, "activation", None)
        out.append({
            "name": name, "type": kind, "index": index,
            "filters": int(filters) if filters else None,
            "kernel_size": [int(k) for k in kernel] if kernel else None,
            "params": int(layer.count_params()) if layer.built else 0,
            "activation": getattr(activation, "__name__", None),
        })
    return out


def is_channels_first(layer: Any) -> bool:
    """Whether a layer's outputs are [batch, channels, height, width] (e.g. models ported from PyTorch)."""
    return getattr(layer, "data_format", None) == "channels_first"


def _output_channels(layer: Any) -> int:
    return int(layer.output.shape[1 if is_channels_first(layer) else -1])


def model_hash(model: "keras.Model") -> str:
    """SHA-256 of the architecture (JSON, without the layers' compute dtype policies) and all weights:
    the model's identity in the graph, the same for a model and its mixed-precision twin, and for a
    model compiled or not (its optimizer, loss and metrics are no part of the network: one model, as
    Keras' load_model compiles it and as `load_saved` does not, was two networks in the store)."""
    import tensorflow as tf

    config = _without_dtypes(json.loads(model.to_json()))
    if isinstance(config, dict) and "compile_config" in config:
        config["compile_config"] = {}
    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for w in model.weights:
        # a view of the variable's buffer: `w.numpy()` copies it (VGG16: 528 MB, 1 s in a fresh process)
        h.update(memoryview(np.ascontiguousarray(tf.convert_to_tensor(w))).cast("B"))
    return h.hexdigest()


def _without_dtypes(config: Any) -> Any:
    if isinstance(config, dict):
        return {k: _without_dtypes(v) for k, v in config.items() if k != "dtype"}
    if isinstance(config, list):
        return [_without_dtypes(v) for v in config]
    return config


# -- loading -------------------------------------------------------------------------------------
def input_spec_of(model: "keras.Model") -> InputSpec:
    """The input size and layout of a model: channels-first ([batch, channels, height, width]) when its
    first layer with a data format (a conv or pooling layer, in network order) is channels_first."""
    try:
        shape = model.inputs[0].shape
    except AttributeError:  # Keras' own words, a traceback: "'M' object has no attribute 'inputs'"
        raise UserError(f"model {model.name!r} has no defined inputs (a subclassed keras.Model, or a Sequential model "
                        "without keras.Input that was never called); filtag-kg reads the layers of a functional or "
                        "Sequential model with an input shape, e.g. one starting with keras.Input((224, 224, 3))"
                        ) from None
    if len(model.inputs) != 1:
        names = ", ".join(f"{getattr(x, 'name', '?')!r} {tuple(x.shape)}" for x in model.inputs)
        raise UserError(f"model {model.name!r} takes {len(model.inputs)} inputs ({names}); filtag-kg supports only "
                        "single-input models, one image per example")
    formats = (getattr(layer, "data_format", None) for _, layer in iter_layers(model))
    first = next((f for f in formats if f is not None), None) == "channels_first"
    if len(shape) != 4 and not conv_layers(model):  # a Conv1D or Conv3D model: say that, not that its input is 3-D
        raise _no_conv_error(model)
    if len(shape) != 4 or None in tuple(shape[1:]):
        raise UserError(
            f"model {model.name!r} takes input of shape {tuple(shape)}; filtag-kg needs fixed-size images "
            f"[batch, {'channels, height, width' if first else 'height, width, channels'}]"
        )
    if first:
        return InputSpec(int(shape[2]), int(shape[3]), int(shape[1]), channels_first=True)
    return InputSpec(int(shape[1]), int(shape[2]), int(shape[3]))


def class_count(model: "keras.Model") -> int:
    """The number of classes the model scores: its first output, which must be [batch, classes]."""
    shape = tuple(model.outputs[0].shape)
    if len(shape) != 2 or not shape[1]:
        raise UserError(f"model {model.name!r}: its first output has shape {shape}; filtag-kg takes it as the "
                        "class scores and needs [batch, classes]")
    return int(shape[1])


def load_saved(path: str | Path, preprocess: str = NO_PREPROCESSING) -> LoadedModel:
    """A saved Keras model (.keras or .h5). Its inputs get the preprocessing named by `preprocess`
    (`preprocessing`; by default none: RGB pixels 0–255, for a model that preprocesses them itself)."""
    import keras

    preprocessing(preprocess)  # before loading: a misspelt name is said at once
    path = Path(path)
    if not path.is_file():
        raise UserError(f"model file {path} does not exist")
    if path.suffix not in (".keras", ".h5"):
        raise UserError(f"model file {path}: expected a .keras or .h5 file")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as e:  # Keras says "File not found" of a file it cannot parse: say what it is
        raise _load_failure(path, e) from e
    spec, preprocess = with_preprocessing(model, preprocess)
    return LoadedModel(model, model.name, "keras", str(path.resolve()), spec, preprocess=preprocess)


def _load_failure(path: Path, error: Exception) -> UserError:
    """Why a saved model could not be loaded, in a few lines: a Lambda layer (Python code Keras loads only
    when told the file is trusted) or a custom layer whose class is not imported are named with what to
    do; other errors are cut short. Keras' own message for a custom class holds the model's whole config."""
    text = str(error)
    if "Lambda" in text and "safe_mode" in text:
        return UserError(
            f"model file {path} has a Lambda layer (Python code), which Keras loads only from a trusted file "
            f"(loading runs the code). If you trust it, load it in Python with keras.models.load_model({str(path)!r}, "
            "safe_mode=False) and pass the model to filtag_kg.collect; or save the model with a registered "
            "custom layer instead of the Lambda layer")
    custom = re.search(r"Could not locate (?:class|function) '([^']+)'|Unknown (?:layer|object|[a-z ]+): '([^']+)'",
                       text)
    if custom and path.suffix == ".h5" and _is_keras_operation(custom.group(1) or custom.group(2)):
        return UserError(
            f"model file {path}: the legacy .h5 format cannot restore the Keras operation "
            f"{custom.group(1) or custom.group(2)!r}, a math operation applied to tensors in a functional model "
            "(e.g. keras.applications' preprocess_input called on its input). Save the model as .keras "
            "(model.save('model.keras')) and pass that file")
    if custom:
        name = custom.group(1) or custom.group(2)
        return UserError(
            f"model file {path} uses the custom object {name!r}, which Keras cannot find: its code is not part of "
            "the file. Load the model in Python with that code imported (the class registered with "
            "@keras.saving.register_keras_serializable) and pass the model to filtag_kg.collect")
    reason = text.splitlines()[0] if text else ""
    reason = f"{reason[:300]}{' …' if len(reason) > 300 or len(text.splitlines()) > 1 else ''}"
    return UserError(f"model file {path} could not be loaded as a Keras model ({type(error).__name__}: {reason})")


def _is_keras_operation(name: str) -> bool:
    """Whether `name` is the class of a Keras operation on tensors (keras.ops: TrueDivide, Add …), which a
    functional model records as a node of its own and the legacy .h5 loader cannot find: Keras' own
    code, not a custom object (the message said to import its code)."""
    import inspect

    try:  # Keras' own modules, not its public API: another layout of them is no such operation
        from keras.src import ops
        from keras.src.ops.operation import Operation
    except ImportError:
        return False
    found = (getattr(module, name, None) for module in vars(ops).values() if inspect.ismodule(module))
    return any(isinstance(c, type) and issubclass(c, Operation) for c in found)


RANDOM_WEIGHTS_SEED = 0  # random weights (weights none) are drawn seeded, so a run resumes and shards merge


def load_application(name: str, weights: str | None = "imagenet") -> LoadedModel:
    """A keras.applications model by name, weights 'imagenet' (downloaded by Keras), a file, or None
    ('none': random weights, the same in every process: Keras' global random seed is set)."""
    import keras

    if name not in APPLICATIONS:
        raise UserError(f"unknown model {name!r}; known: {', '.join(APPLICATIONS)} (or a .keras/.h5 file)")
    module_name, ctor, size = APPLICATIONS[name]
    module = getattr(keras.applications, module_name)
    if weights not in (None, "none", "imagenet"):
        if not Path(weights).is_file():
            raise UserError(f"weights file {weights} does not exist")
        weights = str(Path(weights).resolve())  # recorded: found again from any folder
    if weights in (None, "none"):
        weights = "none"
        keras.utils.set_random_seed(RANDOM_WEIGHTS_SEED)  # the same random weights in every process
    try:
        with _fresh_layer_names():
            model = getattr(module, ctor)(weights=None if weights == "none" else weights, input_shape=(size, size, 3))
    except Exception as e:
        if weights == "imagenet":
            raise UserError(
                f"could not get the ImageNet weights of {name} ({type(e).__name__}: {e}). Keras downloads them "
                f"when online; offline, download the weights file elsewhere and pass it with --weights FILE "
                f"(or --weights none for random weights)"
            ) from e
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__  # Keras appends whole weight arrays
        raise UserError(f"could not build {name} with weights {weights}: "
                        f"{reason[:300]}{' …' if len(reason) > 300 else ''}") from e
    from .imagenet import imagenet_index

    return LoadedModel(
        model, name, module_name, f"keras.applications:{ctor} (weights={weights})",
        InputSpec(size, size, 3, module.preprocess_input), classes=list(imagenet_index().keras_labels),
    )


@contextmanager
def _fresh_layer_names() -> Iterator[None]:
    """Keras' automatic layer names counted from scratch, as in a fresh process: they are part of the
    architecture (so of the model hash and the layer IRIs), and a model built again in the same process
    got other names ('input_layer_1', 'global_average_pooling2d_1'), hence another identity.
    Keras has no public way to reset these counters but `clear_session`, which resets all its state."""
    from keras.src.backend.common import global_state

    held = global_state.get_global_attribute("object_name_uids")
    global_state.set_global_attribute("object_name_uids", defaultdict(int))
    try:
        yield
    finally:
        global_state.set_global_attribute("object_name_uids", held)


def load_model(spec: str | None = None, weights: str | None = "imagenet", mixed_precision: bool = False,
               preprocess: str | None = None) -> LoadedModel:
    """One entry point for the CLI: None → the default CNN, a path → saved model (with the preprocessing
    named by `preprocess`, see `preprocessing`), a name → application; `mixed_precision` → its float16
    twin (`with_mixed_precision`)."""
    if spec is None or spec == DEFAULT_MODEL_NAME:
        _own_weights(DEFAULT_MODEL_NAME, weights)
        _own_preprocessing(DEFAULT_MODEL_NAME, "a Rescaling layer", preprocess)
        loaded = default_model()
    elif names_model_file(spec):
        _own_weights(spec, weights)
        loaded = load_saved(spec, preprocess or NO_PREPROCESSING)
    else:
        if spec in APPLICATIONS:  # (an unknown name is said by load_application)
            _own_preprocessing(spec, f"that of its keras.applications family, {APPLICATIONS[spec][0]}", preprocess)
        loaded = load_application(spec, weights)
    return with_mixed_precision(loaded) if mixed_precision else loaded


def names_model_file(spec: str) -> bool:
    """Whether a --model value names a saved model file (.keras, .h5, or any path) rather than a model by name."""
    return spec.endswith((".keras", ".h5")) or os.sep in spec


def _own_weights(model: str, weights: str | None) -> None:
    """Refuse weights other than the default for a model that brings its own (the default CNN, a
    saved file): they were ignored, so `--weights none` still gave the trained model."""
    if weights not in (None, "imagenet"):
        raise UserError(f"--weights {weights}: only keras.applications models take weights; "
                        f"the model {model} has its own")


def _own_preprocessing(model: str, why: str, preprocess: str | None) -> None:
    """Refuse a preprocessing for a model whose preprocessing is fixed (the default CNN, keras.applications)."""
    if preprocess is not None:
        raise UserError(f"--preprocess {preprocess}: only saved models (.keras/.h5) take a preprocessing; "
                        f"the model {model} has its own ({why})")


def with_mixed_precision(loaded: LoadedModel) -> LoadedModel:
    """The same model computing in float16 with float32 weights (Keras' 'mixed_float16' policy, for GPUs
    with fast float16), nested models included. Same weights, same hash; the manifest records the precision.
    The scaling and means are computed in float32 (see collection.make_step), but the activations carry
    float16 rounding: where a layer's output spans little relative to its size (e.g. deep layers of
    untrained networks) the scaled means can differ markedly from a float32 run."""
    import keras

    def clone(layer: Any) -> Any:
        if isinstance(layer, keras.Sequential):  # rebuilt from its own input shape
            return keras.models.clone_model(layer, clone_function=clone)
        if isinstance(layer, keras.Model):  # nested: built on its own input tensors, so input names (and the hash) stay
            return keras.models.clone_model(layer, input_tensors=layer.input, clone_function=clone)
        return layer.__class__.from_config({**layer.get_config(), "dtype": "mixed_float16"})

    twin = clone(loaded.model)
    twin.set_weights(loaded.model.get_weights())
    return replace(loaded, model=twin, precision="mixed_float16")


def has_model_hash(model_info: dict[str, Any]) -> bool:
    """Whether a manifest's model entry has a hash a model can be checked against: not an import's,
    which covers the architecture only (`hash_of`)."""
    return bool(model_info.get("hash")) and model_info.get("hash_of") != ARCHITECTURE_ONLY


def load_from_manifest(model_info: dict[str, Any], weights: str | None = None) -> LoadedModel:
    """The model a collection's manifest describes, checked against its hash (same architecture and weights)."""
    family, source = model_info.get("family"), str(model_info.get("source") or "")
    if family == DEFAULT_MODEL_NAME:
        _own_weights(DEFAULT_MODEL_NAME, weights)
        loaded = default_model()
    elif source.startswith("keras.applications:"):
        recorded = source.split("weights=", 1)[-1].rstrip(")") if "weights=" in source else "imagenet"
        loaded = load_application(model_info.get("name") or "", weights or recorded)
    elif source and Path(source).is_file():
        _own_weights(source, weights)
        loaded = load_saved(source, model_info.get("preprocess") or NO_PREPROCESSING)  # as it was collected
    else:
        raise UserError(f"cannot find the model of this run ({model_info.get('name')}, from {source!r}); pass --model")
    if model_info.get("precision") == "mixed_float16":
        loaded = with_mixed_precision(loaded)
    if has_model_hash(model_info) and model_hash(loaded.model) != model_info["hash"]:
        raise UserError(
            f"the model found for this run ({loaded.source}) is not the one the tags were made with "
            "(its architecture or weights differ); pass the right one with --model"
        )
    return loaded


# -- the default model ---------------------------------------------------------------------------
def build_default_cnn(n_classes: int = 10) -> "keras.Model":
    """A small VGG-style CNN for 28×28 grayscale images: 5 ReLU conv layers, global average pooling.

    As in VGG, the activation is part of each conv layer, so FilTag reads rectified feature maps;
    batch normalisation after the first four makes training quick.
    """
    import keras
    from keras import layers

    inputs = keras.Input((28, 28, 1), name="image")
    x = layers.Rescaling(1 / 255.0, name="rescale")(inputs)
    for i, filters in enumerate((16, 16, 32, 32, 64), start=1):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        if i < 5:
            x = layers.BatchNormalization(name=f"bn{i}")(x)
        if i in (2, 4):
            x = layers.MaxPooling2D(name=f"pool{i // 2}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(0.3, name="dropout")(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=DEFAULT_MODEL_NAME)


def default_model_path(seed: int = 0) -> Path:
    return cache_dir() / "models" / f"{DEFAULT_MODEL_NAME}-v{DEFAULT_MODEL_VERSION}-seed{seed}.keras"


def train_default_model(seed: int = 0, epochs: int = 6, verbose: int = 0) -> tuple["keras.Model", dict[str, Any]]:
    """Train the default CNN on the default split with a fixed seed; returns the model and its metrics."""
    import keras

    keras.utils.set_random_seed(seed)
    source = animal_shape(seed=seed)
    train, held = source.split("train"), source.split("heldout")
    x_train, y_train = _arrays(train)
    x_held, y_held = _arrays(held)
    model = build_default_cnn(len(source.classes))
    steps = epochs * int(np.ceil(len(x_train) / 64))
    model.compile(
        optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(3e-3, steps)),
        loss="sparse_categorical_crossentropy", metrics=["accuracy"],
    )
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=64, epochs=epochs, verbose=verbose, shuffle=True)
    seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(x_held, y_held, batch_size=256, verbose=0)
    return model, {"heldout_accuracy": float(accuracy), "train_seconds": seconds, "epochs": epochs, "seed": seed}


def _arrays(split: Any) -> tuple[np.ndarray, np.ndarray]:
    ds = split.dataset(InputSpec(28, 28, 1), batch_size=len(split))
    x, y, _ = next(iter(ds))
    return x.numpy(), y.numpy()


def default_model(seed: int = 0, retrain: bool = False) -> LoadedModel:
    """The default CNN from the cache, trained (≈1 minute on 2 cores) and cached the first time."""
    import keras

    from .records import atomic_write

    path = default_model_path(seed)
    info_path = path.with_suffix(".json")
    model = None
    if not retrain and path.is_file() and info_path.is_file():
        model = _cached_default(path, info_path)
    if model is None:
        _check_writable(path.parent)  # before the half minute of training, not after
        model, info = train_default_model(seed)
        # a name of this process's own: runs started together on a fresh cache (shards) each train
        # and save; with one shared name one moved away the file another was writing, or half of it
        tmp = path.with_name(f".{path.stem}.{os.getpid()}-{secrets.token_hex(4)}.tmp.keras")
        try:
            model.save(tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        atomic_write(info_path, lambda f: f.write(json.dumps(info, indent=1).encode()))
        model = keras.models.load_model(path, compile=False)
    return LoadedModel(
        model, DEFAULT_MODEL_NAME, DEFAULT_MODEL_NAME, str(path), input_spec_of(model),
        classes=list(ANIMAL_SHAPE_CLASSES),
    )


def _check_writable(folder: Path) -> None:
    """Make `folder` and write a probe file into it; a UserError names it and how to move the cache."""
    try:
        probe_writable(folder)
    except OSError as e:
        raise UserError(f"cannot cache the default model in {folder} ({e.strerror or e}); "
                        "set FILTAG_KG_CACHE to a folder you can write") from e


def _cached_default(path: Path, info_path: Path) -> "keras.Model | None":
    """The cached default model, or None (with a warning) when it or its metrics file is damaged:
    the cache is filtag-kg's own, so a damaged copy is trained again rather than reported."""
    import keras

    try:
        info = json.loads(info_path.read_text())
        if isinstance(info, dict) and {"heldout_accuracy", "train_seconds"} <= info.keys():
            return keras.models.load_model(path, compile=False)
    except Exception:  # Keras says 'File not found' of a damaged file, or raises zip/HDF5 errors
        pass
    print(f"warning: the cached default model {path} or its metrics {info_path.name} is unreadable; "
          "training it again", file=sys.stderr)
    return None


def default_model_info(seed: int = 0) -> dict[str, Any]:
    """Training metrics of the cached default model (held-out accuracy, seconds)."""
    return json.loads(default_model_path(seed).with_suffix(".json").read_text())
