"""Models of unusual shapes, found by hand: two inputs, Conv1D/Conv3D or no conv layer, files Keras
cannot load (Lambda, custom layers), logits behind pooling or dropout, nested models saved and loaded."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

import filtag_kg
from filtag_kg.collection import outputs_logits
from filtag_kg.data import array_source
from filtag_kg.errors import UserError
from filtag_kg.models import conv_layers, describe_layers, input_spec_of, load_saved

layers = keras.layers


def _head(x: object, n_classes: int = 3) -> object:
    return layers.Dense(n_classes, activation="softmax")(layers.GlobalAveragePooling2D()(x))


@pytest.fixture(scope="module")
def images() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=16)
    labels[:3] = [0, 1, 2]
    return rng.normal(size=(16, 10, 10, 1)).astype(np.float32), labels


def test_a_model_of_two_inputs_is_refused_by_name(tmp_path: Path, images, run_cli) -> None:
    """A model taking two images failed deep in TensorFlow with a traceback (exit 1): 'Layer "functional"
    expects 2 named input(s) … but it received 1 input tensors'."""
    a, b = keras.Input((10, 10, 1), name="left"), keras.Input((10, 10, 1), name="right")
    x = layers.Conv2D(2, 3, name="c")(layers.Concatenate()([a, b]))
    model = keras.Model([a, b], _head(x), name="pair")
    with pytest.raises(UserError, match=r"model 'pair' takes 2 inputs \('left'.*'right'.*single-input"):
        input_spec_of(model)
    with pytest.raises(UserError, match="single-input"):
        filtag_kg.collect(model, *images, progress=False)
    model.save(tmp_path / "pair.h5")
    code, _, err = run_cli("collect", "--model", tmp_path / "pair.h5", "--out", tmp_path / "o")
    assert code == 2 and "model 'pair' takes 2 inputs" in err and "Traceback" not in err


@pytest.mark.parametrize("kind", ["Conv1D", "Conv3D", "Conv1D on images", "none"])
def test_models_without_a_2d_conv_layer_name_the_layer_types_they_have(kind: str) -> None:
    """A Conv1D or Conv3D model was told its input was not [batch, height, width, channels] (true, but not
    why it cannot be tagged), or that it had 'no convolutional layer' though it had Conv1D layers."""
    if kind == "Conv1D":
        inputs = keras.Input((10, 10))
        x = layers.GlobalAveragePooling1D()(layers.Conv1D(2, 3, name="wave")(inputs))
    elif kind == "Conv3D":
        inputs = keras.Input((4, 10, 10, 1))
        x = layers.GlobalAveragePooling3D()(layers.Conv3D(2, 3, name="volume")(inputs))
    elif kind == "Conv1D on images":
        inputs = keras.Input((10, 10, 1))
        x = layers.GlobalAveragePooling1D()(layers.Conv1D(2, 3, name="wave")(layers.Reshape((10, 10))(inputs)))
    else:
        inputs = keras.Input((10, 10, 1))
        x = layers.Flatten()(inputs)
    model = keras.Model(inputs, layers.Dense(3, activation="softmax")(x), name="odd")
    found = {"Conv1D": "Conv1D ('wave')", "Conv3D": "Conv3D ('volume')", "Conv1D on images": "Conv1D ('wave')",
             "none": "its layers are of type(s) InputLayer, Flatten, Dense"}[kind]
    with pytest.raises(UserError, match=r"model 'odd' has no convolutional layer") as raised:
        shape = (3, *inputs.shape[1:])
        filtag_kg.collect(model, np.zeros(shape, np.float32), [0, 1, 2], progress=False)
    assert found in str(raised.value)


def test_the_cli_names_the_conv_layer_types_of_a_conv1d_file(tmp_path: Path, run_cli) -> None:
    """The same through `collect --model FILE.h5`: exit 2, the layer type named."""
    inputs = keras.Input((28, 28))
    x = layers.GlobalAveragePooling1D()(layers.Conv1D(2, 3, name="wave")(inputs))
    keras.Model(inputs, layers.Dense(10, activation="softmax")(x), name="signal").save(tmp_path / "signal.h5")
    code, _, err = run_cli("collect", "--model", tmp_path / "signal.h5", "--out", tmp_path / "o")
    assert code == 2 and "Conv1D ('wave')" in err and "has no convolutional layer" in err


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_saved_models_keras_cannot_load_are_named_with_what_to_do(tmp_path: Path, suffix: str) -> None:
    """A file with a Lambda layer or an unregistered custom layer was named, but with Keras' whole
    message: for a custom layer in a .keras file the model's entire config (kilobytes on one line)."""
    inputs = keras.Input((10, 10, 1))
    lam = keras.Model(inputs, _head(layers.Conv2D(2, 3)(layers.Lambda(lambda t: t * 2.0)(inputs))))
    lam.save(tmp_path / f"lambda{suffix}")
    with pytest.raises(UserError) as raised:
        load_saved(tmp_path / f"lambda{suffix}")
    message = str(raised.value)
    assert f"lambda{suffix} has a Lambda layer" in message and "safe_mode=False) and pass the model" in message

    @keras.saving.register_keras_serializable(package="filtag_hand_test")
    class Twice(layers.Layer):
        def call(self, t: object) -> object:
            return t * 2.0

    custom = keras.Model(inputs, _head(layers.Conv2D(2, 3)(Twice(name="twice")(inputs))), name="custom")
    custom.save(tmp_path / f"custom{suffix}")
    keras.saving.get_custom_objects().pop("filtag_hand_test>Twice")  # as in a process without its code
    with pytest.raises(UserError) as raised:
        load_saved(tmp_path / f"custom{suffix}")
    message = str(raised.value)
    assert f"custom{suffix} uses the custom object" in message and "Twice" in message
    assert len(message) < 500 and "\n" not in message


TAILS = {  # what follows a conv layer: (layers, whether the scores are logits)
    "Dense": (lambda x: layers.Dense(3)(layers.GlobalAveragePooling2D()(x)), True),
    "1×1 conv, pooled": (lambda x: layers.GlobalAveragePooling2D()(layers.Conv2D(3, 1)(x)), True),
    "Dense, dropout": (lambda x: layers.Dropout(0.2)(layers.Dense(3)(layers.GlobalAveragePooling2D()(x))), True),
    "Dense, reshaped": (lambda x: layers.Flatten()(layers.Reshape((3, 1))(layers.Dense(3)(layers.Flatten()(x)))), True),
    "nested head": (lambda x: keras.Sequential([keras.Input(x.shape[1:]), layers.GlobalAveragePooling2D(),
                                                layers.Dense(3)], name="head")(x), True),
    "softmax Dense": (lambda x: layers.Dense(3, activation="softmax")(layers.GlobalAveragePooling2D()(x)), False),
    "Softmax layer": (lambda x: layers.Softmax()(layers.Dense(3)(layers.GlobalAveragePooling2D()(x))), False),
    "softmax, pooled": (lambda x: layers.GlobalAveragePooling2D()(layers.Conv2D(3, 1, activation="softmax")(x)), False),
}


@pytest.mark.parametrize("tail", list(TAILS))
def test_logits_are_found_behind_pooling_dropout_and_nested_heads(tail: str, images) -> None:
    """Only the output layer's own activation was looked at: the logits of an all-convolutional net
    (1×1 Conv2D, then GlobalAveragePooling2D), or of a Dense layer followed by Dropout or Flatten, were
    kept as probabilities (explanations said 'predicted cat (310%)')."""
    make, logits = TAILS[tail]
    keras.utils.set_random_seed(2)
    inputs = keras.Input((10, 10, 1))
    model = keras.Model(inputs, make(layers.Conv2D(4, 3, activation="relu", name="c")(inputs)))
    assert outputs_logits(model) is logits
    if not logits:
        return
    x, y = images
    model.layers[-1].set_weights([w * 50 for w in model.layers[-1].get_weights()])  # scores far outside [0, 1]
    stats = filtag_kg.collect(model, array_source(x[:8], y[:8], heldout=(x[8:], y[8:])), progress=False)
    scores = np.asarray(model.predict(x[8:], verbose=0), np.float64)
    probs = np.exp(scores - scores.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    np.testing.assert_allclose(stats.heldout.top_probs[:, :3], -np.sort(-probs, axis=1), rtol=1e-4, atol=1e-6)


class _ScaledConv(layers.Conv2D):
    """A user's conv layer: a Conv2D subclass with a name of its own."""


def test_subclasses_of_the_conv_types_are_found_by_type_and_collected_as_their_type(images) -> None:
    """Conv layers were found by class name, so a subclass of Conv2D (or of DepthwiseConv2D) was left out
    of collection and of the layer list's conv types; it is now collected like the Keras layer it extends."""
    keras.utils.set_random_seed(5)
    inputs = keras.Input((10, 10, 1))
    x = _ScaledConv(3, 3, activation="relu", name="mine")(inputs)
    plain = keras.Model(inputs, _head(layers.Conv2D(3, 3, activation="relu", name="mine")(inputs)), name="plain")
    model = keras.Model(inputs, _head(x), name="sub")
    plain.set_weights(model.get_weights())
    assert conv_layers(model) == ["mine"]
    assert [e["type"] for e in describe_layers(model)][:2] == ["InputLayer", "Conv2D"]
    stats, reference = (filtag_kg.collect(m, *images, progress=False) for m in (model, plain))
    assert stats.layers == ["mine"] and stats.n_filters == {"mine": 3}
    np.testing.assert_allclose(stats.sums["mine"], reference.sums["mine"], rtol=1e-6)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_sequential_base_inside_a_functional_model_collects_the_same_when_saved(
        tmp_path: Path, suffix: str, images) -> None:
    """The conv layers of a Sequential base are found as 'base/…' in a saved and loaded file of either
    format, with the numbers of the model in memory."""
    keras.utils.set_random_seed(4)
    base = keras.Sequential([keras.Input((10, 10, 1)), layers.Conv2D(3, 3, activation="relu", name="c1"),
                             layers.Conv2D(3, 3, activation="relu", name="c2")], name="base")
    inputs = keras.Input((10, 10, 1))
    model = keras.Model(inputs, _head(layers.Conv2D(2, 3, activation="relu", name="top")(base(inputs))), name="outer")
    model.save(tmp_path / f"outer{suffix}")
    x, y = images
    before = filtag_kg.collect(model, x, y, progress=False)
    after = filtag_kg.collect(load_saved(tmp_path / f"outer{suffix}"), x, y, progress=False)
    assert before.layers == after.layers == ["base/c1", "base/c2", "top"]
    for m in before.layers:
        np.testing.assert_allclose(after.sums[m], before.sums[m], rtol=1e-6)


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_a_signal_during_a_batch_stops_after_it_and_the_checkpoint_keeps_it(
        tmp_path: Path, images, monkeypatch: pytest.MonkeyPatch, capsys, signame: str) -> None:
    """Ctrl-C (or SIGTERM under the CLI) raised KeyboardInterrupt wherever the main thread was, inside
    TensorFlow's Python code too: the batch under way was lost, and by hand the process twice aborted
    ('free(): invalid next size') before writing its checkpoint. Now the batch is finished, saved, then
    the collection stops; resuming gives the numbers of one uninterrupted run."""
    import os
    import signal

    from filtag_kg import collection as collect_module
    from filtag_kg.records import ActivationStats

    def raising(signum: int, frame: object) -> None:  # what the CLI installs for SIGTERM and SIGHUP
        raise KeyboardInterrupt(signal.Signals(signum).name)

    if signame == "SIGTERM":
        old = signal.signal(signal.SIGTERM, raising)
    x, y = images
    keras.utils.set_random_seed(5)
    inputs = keras.Input((10, 10, 1))
    model = keras.Model(inputs, _head(layers.Conv2D(3, 3, activation="relu", name="c")(inputs)), name="small")
    source = array_source(x[:12], y[:12], heldout=(x[12:], y[12:]))
    whole = filtag_kg.collect(model, source, batch_size=2, progress=False)
    real_make_step = collect_module.make_step

    def signalled_step(*args: object, **kwargs: object) -> object:
        step = real_make_step(*args, **kwargs)
        calls = {"n": 0}

        def signalled(batch: object) -> object:
            calls["n"] += 1
            if calls["n"] == 3:  # in the middle of the third batch
                os.kill(os.getpid(), getattr(signal, signame))
            return step(batch)

        return signalled

    monkeypatch.setattr(collect_module, "make_step", signalled_step)
    try:
        with pytest.raises(KeyboardInterrupt):
            filtag_kg.collect(model, source, batch_size=2, output=tmp_path, checkpoint_every=100, progress=False)
    finally:
        if signame == "SIGTERM":
            signal.signal(signal.SIGTERM, old)
    assert "the statistics collected so far are saved" in capsys.readouterr().err
    partial = ActivationStats.load(tmp_path)
    assert partial.manifest["progress"]["position"] == 6 and partial.n_images == 6  # the third batch is in
    monkeypatch.setattr(collect_module, "make_step", real_make_step)
    resumed = filtag_kg.collect(model, source, batch_size=2, output=tmp_path, progress=False)
    np.testing.assert_allclose(resumed.sums["c"], whole.sums["c"], rtol=1e-12)
    np.testing.assert_array_equal(resumed.heldout.vectors["c"], whole.heldout.vectors["c"])
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers are put back


def test_a_second_signal_stops_at_once_and_ignored_signals_stay_ignored() -> None:
    """The deferral of Ctrl-C to the end of a batch keeps a way out of a batch that never ends (a
    second Ctrl-C), and leaves a signal ignored under nohup ignored."""
    import os
    import signal

    from filtag_kg.interrupts import deferred_signals

    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with pytest.raises(KeyboardInterrupt):
            with deferred_signals() as check:
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGHUP)  # ignored: nothing
                for _ in range(1000):  # the first Ctrl-C is noted only
                    pass
                os.kill(os.getpid(), signal.SIGINT)  # the second raises here
                pytest.fail("a second Ctrl-C did not stop the batch")
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        with deferred_signals() as check:
            os.kill(os.getpid(), signal.SIGHUP)
            check()  # nothing pending
    finally:
        signal.signal(signal.SIGHUP, old)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
