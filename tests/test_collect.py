"""Collection against a plain float64 reference of FilTag's formulas; shards, resume, folders, errors."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import filtag_kg
from filtag_kg import collection as collect_module
from filtag_kg.data import array_source, image_folder
from filtag_kg.errors import UserError
from filtag_kg.models import conv_layers
from filtag_kg.records import ActivationStats


def small_model(n_classes: int = 3) -> keras.Model:
    keras.utils.set_random_seed(1)
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="c1")(inputs)
    x = keras.layers.DepthwiseConv2D(3, name="dw")(x)
    x = keras.layers.SeparableConv2D(5, 3, activation="relu", name="sep")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="small")


def reference_means(model: keras.Model, layers: list[str], images: np.ndarray) -> dict[str, np.ndarray]:
    """ā(m,i,d) by the formula, image by image, in float64: scale the layer output to [0,1], average."""
    taps = keras.Model(model.inputs[0], [model.get_layer(m).output for m in layers])
    out: dict[str, list[np.ndarray]] = {m: [] for m in layers}
    for image in images:
        outputs = taps(image[None], training=False)
        for m, a in zip(layers, outputs if len(layers) > 1 else [outputs]):
            a = np.asarray(a, np.float64)[0]  # [h, w, filters]
            low, high = a.min(), a.max()
            scaled = (a - low) / (high - low) if high > low else np.zeros_like(a)
            out[m].append(scaled.reshape(-1, a.shape[-1]).mean(axis=0))
    return {m: np.stack(v) for m, v in out.items()}


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.normal(size=(37, 12, 12, 3)).astype(np.float32)
    images[5] = 0.25  # a constant image: some layer outputs are constant and must scale to 0
    labels = rng.integers(0, 3, size=37)
    labels[:3] = [0, 1, 2]
    return images, labels


@pytest.fixture(scope="module")
def split_run(data: tuple[np.ndarray, np.ndarray]):
    """(model, a source with train and held-out splits, its uninterrupted single-run statistics)."""
    images, labels = data
    model = small_model()
    source = array_source(images[:25], labels[:25], heldout=(images[25:], labels[25:]))
    return model, source, filtag_kg.collect(model, source, batch_size=4, progress=False)


def test_means_and_z_match_float64_reference(data: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = data
    model = small_model()
    stats = filtag_kg.collect(model, images, labels=labels, batch_size=8, progress=False)
    assert stats.layers == ["c1", "dw", "sep"]  # found by type, in network order
    ref = reference_means(model, stats.layers, images)
    for m in stats.layers:
        z_ref = np.stack([ref[m][labels == c].mean(axis=0) for c in range(3)])
        np.testing.assert_allclose(stats.class_means(m), z_ref, atol=1e-5)
    assert stats.counts.tolist() == np.bincount(labels, minlength=3).tolist()


def test_heldout_vectors_and_predictions(data: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = data
    model = small_model()
    source = array_source(images[:20], labels[:20], heldout=(images[20:], labels[20:]))
    stats = filtag_kg.collect(model, source, batch_size=8, progress=False)
    ref = reference_means(model, stats.layers, images[20:])
    assert stats.heldout is not None and len(stats.heldout) == 17
    for m in stats.layers:
        np.testing.assert_allclose(stats.heldout.vectors[m], ref[m], atol=1e-5)
    probs = model.predict(images[20:], verbose=0)
    np.testing.assert_array_equal(stats.heldout.top_classes[:, :3], np.argsort(-probs, axis=1, kind="stable"))
    np.testing.assert_allclose(stats.heldout.top_probs[:, 0], probs.max(axis=1), rtol=1e-5)
    assert (stats.heldout.top_classes[:, 3:] == -1).all()  # 3 outputs: top-5 padded
    np.testing.assert_array_equal(stats.heldout.labels, labels[20:])
    assert stats.n_images == 20  # held-out images are not part of z


def test_shards_merge_to_single_run(split_run) -> None:
    model, source, whole = split_run
    parts = [filtag_kg.collect(model, source, batch_size=4, shard=(i, 3), progress=False) for i in range(3)]
    merged = ActivationStats.merge_shards({f"s{i}": part for i, part in enumerate(reversed(parts))})
    assert merged.manifest["shard"] is None
    for m in whole.layers:
        np.testing.assert_allclose(merged.sums[m], whole.sums[m], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(merged.heldout.vectors[m], whole.heldout.vectors[m], atol=1e-6)
    np.testing.assert_array_equal(merged.counts, whole.counts)
    assert merged.heldout.image_ids == whole.heldout.image_ids


def test_merge_refuses_what_is_not_all_shards_of_one_collection(split_run, data) -> None:
    model, source, whole = split_run
    parts = [filtag_kg.collect(model, source, batch_size=4, shard=(i, 2), progress=False) for i in range(2)]
    with pytest.raises(UserError, match="shard\\(s\\) 1/2 missing"):
        ActivationStats.merge_shards({"s0": parts[0]})
    with pytest.raises(UserError, match="s0 and again are both shard 0/2"):
        ActivationStats.merge_shards({"s0": parts[0], "again": parts[0], "s1": parts[1]})
    with pytest.raises(UserError, match="whole is not a shard"):
        ActivationStats.merge_shards({"s0": parts[0], "whole": whole})
    images, labels = data
    other_split = array_source(images[:20], labels[:20], heldout=(images[20:], labels[20:]))
    stranger = filtag_kg.collect(model, other_split, batch_size=4, shard=(1, 2), progress=False)
    stranger.manifest["dataset"]["name"] = "other"
    with pytest.raises(UserError, match="s0 are not shards of one collection: their data set differs"):
        ActivationStats.merge_shards({"s0": parts[0], "x1": stranger})
    float16 = ActivationStats(**{**parts[1].__dict__, "manifest": {
        **parts[1].manifest, "model": {**parts[1].manifest["model"], "precision": "mixed_float16"}}})
    with pytest.raises(UserError, match="s0 are not shards of one collection: their precision differs"):
        ActivationStats.merge_shards({"s0": parts[0], "h1": float16})
    three = filtag_kg.collect(model, source, batch_size=4, shard=(1, 3), progress=False)
    with pytest.raises(UserError, match="shards of different splittings"):
        ActivationStats.merge_shards({"s0": parts[0], "t1": three})


def interrupted_at_batch(n: int):
    """A `make_step` whose step raises KeyboardInterrupt on its n-th batch (as Ctrl-C would)."""
    real_make_step = collect_module.make_step
    calls = {"n": 0}

    def make_failing_step(*args, **kwargs):
        step = real_make_step(*args, **kwargs)

        def failing(images):
            calls["n"] += 1
            if calls["n"] == n:
                raise KeyboardInterrupt
            return step(images)

        return failing

    return make_failing_step


def test_interrupted_run_resumes_to_same_numbers(split_run, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, source, whole = split_run

    real_make_step = collect_module.make_step
    # interrupted at the 3rd held-out batch, after checkpoints in both splits
    monkeypatch.setattr(collect_module, "make_step", interrupted_at_batch(10))
    with pytest.raises(KeyboardInterrupt):
        filtag_kg.collect(model, source, batch_size=4, output=tmp_path, checkpoint_every=2, progress=False)
    partial = ActivationStats.load(tmp_path)
    assert partial.manifest["complete"] is False
    assert partial.manifest["progress"]["split"] == "heldout"
    with pytest.raises(UserError, match="are an unfinished collection .*resuming the collection"):
        filtag_kg.tag(partial)  # its z covers the images read before the interruption only
    monkeypatch.setattr(collect_module, "make_step", real_make_step)
    resumed = filtag_kg.collect(model, source, batch_size=4, output=tmp_path, checkpoint_every=2, progress=False)
    for m in whole.layers:
        np.testing.assert_allclose(resumed.sums[m], whole.sums[m], rtol=1e-12)
        np.testing.assert_array_equal(resumed.heldout.vectors[m], whole.heldout.vectors[m])
    assert resumed.heldout.image_ids == whole.heldout.image_ids
    loaded = ActivationStats.load(tmp_path)
    assert loaded.manifest["complete"] is True
    np.testing.assert_array_equal(loaded.class_means("sep"), whole.class_means("sep"))
    with pytest.raises(UserError, match="already holds a finished collection"):
        filtag_kg.collect(model, source, batch_size=4, output=tmp_path, progress=False)


def test_ctrl_c_keeps_the_batches_since_the_last_checkpoint(split_run, tmp_path, monkeypatch, capsys) -> None:
    """Ctrl-C lost every batch since the last checkpoint (50 by default: minutes of VGG16); now the
    batches finished are saved at the interruption, and resuming gives the numbers of one run."""
    model, source, whole = split_run
    real_make_step = collect_module.make_step
    monkeypatch.setattr(collect_module, "make_step", interrupted_at_batch(6))  # no checkpoint before
    with pytest.raises(KeyboardInterrupt):
        filtag_kg.collect(model, source, batch_size=4, output=tmp_path, progress=False)
    assert f"the statistics collected so far are saved in {tmp_path}" in capsys.readouterr().err
    partial = ActivationStats.load(tmp_path)
    assert partial.manifest["progress"]["split"] == "train" and partial.manifest["progress"]["position"] == 20
    assert partial.n_images == 20
    monkeypatch.setattr(collect_module, "make_step", real_make_step)
    resumed = filtag_kg.collect(model, source, batch_size=4, output=tmp_path, progress=False)
    for m in whole.layers:
        np.testing.assert_allclose(resumed.sums[m], whole.sums[m], rtol=1e-12)
        np.testing.assert_array_equal(resumed.heldout.vectors[m], whole.heldout.vectors[m])


def test_folder_source_skips_corrupt_files(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    rng = np.random.default_rng(3)
    for c, name in enumerate(["alpha", "beta"]):
        (tmp_path / name).mkdir()
        for j in range(4):
            pixels = rng.integers(0, 255, size=(16, 20, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / name / f"{j}.{'png' if j % 2 else 'jpg'}")
    (tmp_path / "alpha" / "broken.jpg").write_bytes(b"not a jpeg at all")
    (tmp_path / "beta" / "truncated.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    model = small_model(n_classes=2)
    source = image_folder(tmp_path, fraction=1.0)
    assert source.classes == ["alpha", "beta"]
    stats = filtag_kg.collect(model, source, batch_size=3, progress=False)
    assert stats.counts.tolist() == [4, 4]
    assert sorted(stats.manifest["skipped"]["train"]) == ["alpha/broken.jpg", "beta/truncated.png"]
    # the warning names them as they are (it printed a Python list: a \\xff in a name was doubled) and
    # says where the whole list is (it gave three, without saying the manifest holds them all)
    warning = capsys.readouterr().err
    assert "warning: 2 unreadable image(s) skipped: " in warning and "alpha/broken.jpg" in warning
    assert "[" not in warning and "manifest" not in warning  # no file to point to
    filtag_kg.collect(model, source, batch_size=3, progress=False, output=tmp_path / "stats")
    assert f"{tmp_path / 'stats' / 'manifest.json'} lists them all" in capsys.readouterr().err
    # the pipeline decodes with TensorFlow and resizes bilinearly to the model's input size
    import tensorflow as tf

    def decoded(path) -> np.ndarray:
        image = tf.io.decode_image(path.read_bytes(), channels=3, expand_animations=False)
        return tf.image.resize(tf.cast(image, tf.float32), (12, 12)).numpy()

    decoded = np.stack([
        decoded(tmp_path / name / f"{j}.{'png' if j % 2 else 'jpg'}") for name in ["alpha", "beta"] for j in range(4)
    ])
    ref = reference_means(model, stats.layers, decoded)
    np.testing.assert_allclose(stats.class_means("sep"), np.stack([ref["sep"][:4].mean(0), ref["sep"][4:].mean(0)]),
                               atol=1e-5)


def test_pipelines_run_without_tf_data_autotuning(tmp_path, data: tuple[np.ndarray, np.ndarray]) -> None:
    """Deleting an autotuned iterator waits for the tuning thread (up to tens of seconds after a long run)."""
    from PIL import Image

    from filtag_kg.data import InputSpec

    (tmp_path / "a").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a" / "0.png")
    spec = InputSpec(8, 8, 3, lambda x: x / 255.0)
    images, labels = data
    for source in (image_folder(tmp_path, fraction=1.0), array_source(images[:, :8, :8], labels)):
        options = source.split("train").dataset(spec, 4).options()
        assert options.autotune.enabled is False


def test_bad_input_is_named(tmp_path, data: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = data
    model = small_model()
    with pytest.raises(UserError, match="3 outputs"):
        filtag_kg.collect(model, array_source(images, np.arange(37) % 5), progress=False)
    dense_only = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    with pytest.raises(UserError, match="no convolutional layer"):
        filtag_kg.collect(dense_only, np.zeros((2, 4, 4, 1)), labels=[0, 1], progress=False)
    with pytest.raises(UserError, match="matches no conv layer"):
        filtag_kg.collect(model, images, labels=labels, layers=["nope*"], progress=False)
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(UserError, match="empty_class has no JPEG or PNG"):
        image_folder(tmp_path)
    with pytest.raises(UserError, match=r"the train images are 6×6×3 but the model takes 12×12×3 \(height×width×channels\)"):
        filtag_kg.collect(model, images[:, :6, :6], labels=labels, progress=False)
    with pytest.raises(UserError, match="the batch size must be a whole number of at least 1, got 0"):
        filtag_kg.collect(model, images, labels=labels, batch_size=0, progress=False)
    with pytest.raises(UserError, match="'train' split of 'arrays' has no images in this shard .*shard 2/3 of 2 "
                                        "training images gets none: use at most 2 shards"):
        filtag_kg.collect(model, images[:2], labels=[0, 2], shard=(2, 3), progress=False)
    (tmp_path / "a_file").write_text("")
    with pytest.raises(UserError, match="cannot write the statistics into .*a_file"):
        filtag_kg.collect(model, images, labels=labels, output=tmp_path / "a_file" / "stats", progress=False)


def test_a_failed_collection_leaves_no_folder_it_made(tmp_path, data: tuple[np.ndarray, np.ndarray]) -> None:
    """Bad input found once the output folder was made (images of another size, found by the pipeline)
    left the empty folder, and its parents, behind. They are removed; a folder that was there, empty or
    holding a user's files, stays as it was."""
    images, labels = data
    model = small_model()
    (tmp_path / "empty").mkdir()
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "notes.txt").write_text("mine")
    for out in ("new/deeper/stats", "empty", "kept"):
        with pytest.raises(UserError, match="the train images are 6×6×3"):
            filtag_kg.collect(model, images[:, :6, :6], labels=labels, output=tmp_path / out, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "kept"]
    assert [p.name for p in (tmp_path / "kept").iterdir()] == ["notes.txt"]


def test_nested_model_layers_are_found_and_collected(data: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = data
    inner = small_model()
    base = keras.Model(inner.input, inner.get_layer("sep").output, name="base")
    outer = keras.Sequential([keras.Input((12, 12, 3)), base, keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(3, activation="softmax")], name="outer")
    stats = filtag_kg.collect(outer, images, labels=labels, layers=["base/sep"], progress=False)
    assert stats.layers == ["base/sep"]
    ref = reference_means(inner, ["sep"], images)["sep"]
    np.testing.assert_allclose(stats.class_means("base/sep"),
                               np.stack([ref[labels == c].mean(0) for c in range(3)]), atol=1e-5)
    # a functional model around a functional base around a Sequential block, as in transfer learning
    block = keras.Sequential([keras.Input((12, 12, 3)), keras.layers.Conv2D(3, 3, padding="same", activation="relu",
                                                                          name="c")], name="block")
    x = inputs = keras.Input((12, 12, 3))
    mid = keras.Model(inputs, base(block(x)), name="mid")
    x = outer_inputs = keras.Input((12, 12, 3))
    y = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(mid(x)))
    functional = keras.Model(outer_inputs, y, name="functional")
    names = conv_layers(functional)
    assert names == ["mid/block/c", *(f"mid/base/{n}" for n in conv_layers(inner))]
    stats = filtag_kg.collect(functional, array_source(images, labels, heldout=(images, labels)), progress=False)
    shifted = block.predict(images, verbose=0)
    ref_base = reference_means(inner, conv_layers(inner), shifted)
    ref_block = reference_means(block, ["c"], images)["c"]
    np.testing.assert_allclose(stats.class_means("mid/block/c"),
                               np.stack([ref_block[labels == c].mean(0) for c in range(3)]), atol=1e-5)
    for n in conv_layers(inner):
        np.testing.assert_allclose(stats.class_means(f"mid/base/{n}"),
                                   np.stack([ref_base[n][labels == c].mean(0) for c in range(3)]), atol=1e-5)
    assert np.array_equal(stats.heldout.top_classes[:, 0], functional.predict(images, verbose=0).argmax(axis=1))


def test_layers_called_before_in_another_model_are_read_in_this_one(data: tuple[np.ndarray, np.ndarray]) -> None:
    """A model built from the layers of another (calling them anew, as when adapting a trained network)
    failed with "Output with path `0` is not connected to `inputs`"; on the other model's input tensor it
    read that model's feature maps (here: without the new model's preprocessing), silently."""
    images, labels = data
    keras.utils.set_random_seed(3)
    inputs = keras.Input((12, 12, 3))
    conv_a = keras.layers.Conv2D(4, 3, activation="relu", name="a")
    conv_b = keras.layers.Conv2D(5, 3, activation="relu", name="b")
    keras.Model(inputs, conv_b(conv_a(inputs)), name="first")  # the layers' first calls
    head = keras.layers.Dense(3, activation="softmax")
    for new_inputs in (keras.Input((12, 12, 3)), inputs):
        x = conv_b(conv_a(keras.layers.Rescaling(2.0, -1.0)(new_inputs)))
        model = keras.Model(new_inputs, head(keras.layers.GlobalAveragePooling2D()(x)))
        stats = filtag_kg.collect(model, images, labels=labels, progress=False)
        taps = keras.Model(new_inputs, x)(images, training=False).numpy().astype(np.float64)
        low = taps.min(axis=(1, 2, 3), keepdims=True)
        ref = ((taps - low) / (taps.max(axis=(1, 2, 3), keepdims=True) - low)).mean(axis=(1, 2))
        np.testing.assert_allclose(stats.class_means("b"), np.stack([ref[labels == c].mean(0) for c in range(3)]),
                                   atol=1e-5)


def test_a_shared_conv_layer_is_refused_by_name_and_the_others_collect(data: tuple[np.ndarray, np.ndarray]) -> None:
    """A conv layer called at two places of a model has two feature maps per image; collection read the
    first call's (the last one's inside a nested model used twice), silently. It is refused by name."""
    images, labels = data
    keras.utils.set_random_seed(1)
    inputs = keras.Input((12, 12, 3))
    shared = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="shared")
    x = shared(keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="first")(inputs))
    x = shared(keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="mid")(x))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x)))
    for layers in (None, ["shared"], ["shar*", "mid"]):
        with pytest.raises(UserError, match=r"conv layer\(s\) 'shared' \(2 calls\) of model .* are shared.*"
                                            r"--layer \(not shared: first, mid\)"):
            filtag_kg.collect(model, images, labels=labels, layers=layers, progress=False)
    stats = filtag_kg.collect(model, images, labels=labels, layers=["first", "mid"], progress=False)
    ref = reference_means(model, ["first", "mid"], images)
    np.testing.assert_allclose(stats.class_means("mid"), np.stack([ref["mid"][labels == c].mean(0) for c in range(3)]),
                               atol=1e-5)
    # a nested model called twice; a layer put twice into a Sequential model
    block = keras.Sequential([keras.Input((12, 12, 3)), keras.layers.Conv2D(3, 3, padding="same", name="c")],
                             name="block")
    inputs = keras.Input((12, 12, 3))
    twice = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(block(block(inputs)))))
    conv = keras.layers.Conv2D(3, 3, padding="same", name="c")
    sequential = keras.Sequential([keras.Input((12, 12, 3)), conv, conv, keras.layers.GlobalAveragePooling2D(),
                                   keras.layers.Dense(3)])
    for model, name in ((twice, "block/c"), (sequential, "c")):
        with pytest.raises(UserError, match=rf"'{name}' \(2 calls\).*none is unshared"):
            filtag_kg.collect(model, images, labels=labels, progress=False)


def test_model_hash_covers_architecture_and_every_weight() -> None:
    import hashlib
    import json

    from filtag_kg.models import _without_dtypes, model_hash

    model = small_model()
    reference = hashlib.sha256(json.dumps(_without_dtypes(json.loads(model.to_json())), sort_keys=True).encode())
    for w in model.weights:
        reference.update(np.asarray(w.numpy(), dtype=w.dtype).tobytes())
    assert model_hash(model) == reference.hexdigest()
    kernel = model.weights[-1]
    changed = kernel.numpy().copy()
    changed.flat[0] += 1.0
    kernel.assign(changed)
    assert model_hash(model) != reference.hexdigest()


def test_mixed_precision_twin_computes_in_float16_with_the_same_identity(
    data: tuple[np.ndarray, np.ndarray],
) -> None:
    from filtag_kg.models import LoadedModel, input_spec_of, with_mixed_precision

    images, labels = data
    model = small_model()
    loaded = LoadedModel(model, "small", "keras", "test", input_spec_of(model))
    mixed = with_mixed_precision(loaded)
    assert mixed.precision == "mixed_float16" and mixed.describe()["hash"] == loaded.describe()["hash"]
    assert mixed.model.get_layer("c1").compute_dtype == "float16" and model.get_layer("c1").compute_dtype == "float32"
    full = filtag_kg.collect(loaded, images, labels=labels, progress=False)
    half = filtag_kg.collect(mixed, images, labels=labels, progress=False)
    assert half.manifest["model"]["precision"] == "mixed_float16"
    for m in full.layers:
        np.testing.assert_allclose(half.class_means(m), full.class_means(m), atol=5e-3)
        assert not np.array_equal(half.class_means(m), full.class_means(m))  # it did compute in float16


def test_mixed_precision_of_a_saved_sequential_model(tmp_path, data: tuple[np.ndarray, np.ndarray]) -> None:
    """A Sequential model read from a file has no input tensor of its own to clone on."""
    from filtag_kg.models import load_saved, with_mixed_precision

    keras.utils.set_random_seed(2)
    base = keras.Sequential([keras.Input((12, 12, 3)), keras.layers.Conv2D(4, 3, name="s1")], name="base")
    keras.Sequential([keras.Input((12, 12, 3)), base, keras.layers.Conv2D(3, 3, name="c2"),
                      keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)], name="seq").save(tmp_path / "s.keras")
    loaded = load_saved(tmp_path / "s.keras")
    mixed = with_mixed_precision(loaded)
    assert mixed.describe()["hash"] == loaded.describe()["hash"]
    images, labels = data
    half = filtag_kg.collect(mixed, images, labels=labels, progress=False)
    assert half.layers == ["base/s1", "c2"] and half.manifest["model"]["precision"] == "mixed_float16"


def test_killed_collection_resumes_to_same_numbers(tmp_path) -> None:
    """A real SIGKILL of `filtag-kg collect` after a checkpoint; the rerun resumes and matches."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from PIL import Image

    rng = np.random.default_rng(5)
    for c, name in enumerate(["alpha", "beta", "gamma"]):
        (tmp_path / "images" / name).mkdir(parents=True)
        for j in range(200):
            Image.fromarray(rng.integers(0, 255, size=(12, 12, 3), dtype=np.uint8)).save(
                tmp_path / "images" / name / f"{j}.png")
    small_model().save(tmp_path / "small.keras")
    command = [sys.executable, "-m", "filtag_kg", "collect", "--model", str(tmp_path / "small.keras"), "--data",
               str(tmp_path / "images"), "--batch-size", "2"]
    # 300 batches, each followed by a checkpoint: the kill after the first one lands mid-run
    process = subprocess.Popen([*command, "--checkpoint-every", "1", "--out", str(tmp_path / "killed")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = tmp_path / "killed" / "manifest.json"
    deadline = time.monotonic() + 120
    while not manifest.is_file() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    partial = ActivationStats.load(tmp_path / "killed")
    assert partial.manifest["complete"] is False and partial.manifest["progress"]["position"] < 480
    subprocess.run([*command, "--out", str(tmp_path / "killed")], check=True, capture_output=True)
    subprocess.run([*command, "--out", str(tmp_path / "whole")], check=True, capture_output=True)
    resumed, whole = ActivationStats.load(tmp_path / "killed"), ActivationStats.load(tmp_path / "whole")
    for m in whole.layers:
        np.testing.assert_allclose(resumed.sums[m], whole.sums[m], rtol=1e-12)
        np.testing.assert_array_equal(resumed.heldout.vectors[m], whole.heldout.vectors[m])
    np.testing.assert_array_equal(resumed.counts, whole.counts)


def test_large_feature_maps_take_the_fused_path() -> None:
    """Feature maps above XLA_MIN_ELEMENTS are reduced by the XLA-compiled function: same formula."""
    from filtag_kg.collection import XLA_MIN_ELEMENTS

    keras.utils.set_random_seed(2)
    inputs = keras.Input((96, 96, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="big")(inputs)  # 73,728 per image
    x = keras.layers.Conv2D(2, 3, strides=8, name="small")(x)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    assert 96 * 96 * 8 >= XLA_MIN_ELEMENTS > 12 * 12 * 2
    images = np.random.default_rng(4).normal(size=(10, 96, 96, 3)).astype(np.float32)
    labels = np.array([0, 1] * 5)
    stats = filtag_kg.collect(model, images, labels=labels, batch_size=4, progress=False)
    ref = reference_means(model, ["big", "small"], images)
    for m in ("big", "small"):
        np.testing.assert_allclose(stats.class_means(m), np.stack([ref[m][labels == c].mean(0) for c in (0, 1)]),
                                   atol=1e-5)


def test_death_between_the_two_checkpoint_files_loses_nothing(
    split_run, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after arrays.npz but before manifest.json of a checkpoint: the resume still matches."""
    from filtag_kg import records

    model, source, whole = split_run
    # a checkpoint after every batch: on a busy machine the spacing rule skipped some, and the third
    # manifest written was the final one (the resume then found a finished collection)
    monkeypatch.setattr(collect_module, "CHECKPOINT_SPACING", 0)
    real_write = records.atomic_write
    manifests = {"n": 0}

    def dying_write(path, write):
        if path.name == records.MANIFEST_NAME:
            manifests["n"] += 1
            if manifests["n"] == 3:  # the third checkpoint: its arrays are written, its manifest is not
                raise KeyboardInterrupt
        real_write(path, write)

    monkeypatch.setattr(records, "atomic_write", dying_write)
    with pytest.raises(KeyboardInterrupt):
        filtag_kg.collect(model, source, batch_size=4, output=tmp_path, checkpoint_every=1, progress=False)
    monkeypatch.setattr(records, "atomic_write", real_write)
    resumed = filtag_kg.collect(model, source, batch_size=4, output=tmp_path, progress=False)
    for m in whole.layers:
        np.testing.assert_allclose(resumed.sums[m], whole.sums[m], rtol=1e-12)
    np.testing.assert_array_equal(resumed.counts, whole.counts)


def test_resume_only_the_same_run_and_keep_the_images_skipped_before(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint of other layers, precision or folder contents is refused; unreadable images
    skipped before the checkpoint are still listed after the resume."""
    from PIL import Image

    from filtag_kg.models import LoadedModel, input_spec_of, with_mixed_precision

    root = tmp_path / "images"
    rng = np.random.default_rng(4)
    for name in ("alpha", "beta"):
        (root / name).mkdir(parents=True)
        for j in range(4):
            Image.fromarray(rng.integers(0, 255, size=(12, 12, 3), dtype=np.uint8)).save(root / name / f"{j}.png")
    (root / "alpha" / "4-broken.png").write_bytes(b"not a png")  # position 4 of 9
    model = small_model(n_classes=2)
    whole = filtag_kg.collect(model, image_folder(root, fraction=1.0), batch_size=2, progress=False)
    assert whole.manifest["skipped"]["train"] == ["alpha/4-broken.png"]

    real_make_step = collect_module.make_step
    out = tmp_path / "stats"
    monkeypatch.setattr(collect_module, "CHECKPOINT_SPACING", 0)  # a checkpoint after every batch, however busy the machine
    # interrupted after three checkpoints, the third past the broken image
    monkeypatch.setattr(collect_module, "make_step", interrupted_at_batch(4))
    with pytest.raises(KeyboardInterrupt):
        filtag_kg.collect(model, image_folder(root, fraction=1.0), batch_size=2, output=out, checkpoint_every=1,
                          progress=False)
    monkeypatch.setattr(collect_module, "make_step", real_make_step)
    assert ActivationStats.load(out).manifest["progress"]["skipped"] == ["alpha/4-broken.png"]

    def resume(model=model, **kwargs) -> ActivationStats:
        return filtag_kg.collect(model, image_folder(root, fraction=1.0), **{"batch_size": 2, "output": out,
                                 "progress": False, **kwargs})

    with pytest.raises(UserError, match=r"not the same: layers\)"):
        resume(layers="sep")
    mixed = with_mixed_precision(LoadedModel(model, model.name, "keras", "python", input_spec_of(model)))
    with pytest.raises(UserError, match=r"not the same: precision \(--mixed-precision\)\)"):
        resume(model=mixed)
    (root / "beta" / "4.png").write_bytes((root / "beta" / "0.png").read_bytes())
    with pytest.raises(UserError, match=r"not the same: data set \(its name, folder or images\)\)"):
        resume()
    (root / "beta" / "4.png").unlink()
    resumed = resume()
    assert resumed.manifest["skipped"]["train"] == ["alpha/4-broken.png"]
    np.testing.assert_allclose(resumed.sums["sep"], whole.sums["sep"], rtol=1e-12)


def test_hidden_files_are_left_out_and_any_file_name_is_read(tmp_path) -> None:
    import os

    from PIL import Image

    rng = np.random.default_rng(5)
    for name in ("alpha", "beta"):
        (tmp_path / name / ".thumbnails").mkdir(parents=True)
        for j in range(2):
            Image.fromarray(rng.integers(0, 255, size=(12, 12, 3), dtype=np.uint8)).save(tmp_path / name / f"{j}.png")
        (tmp_path / name / ".thumbnails" / "0.png").write_bytes((tmp_path / name / "0.png").read_bytes())
        (tmp_path / name / "._0.png").write_bytes(b"macOS resource fork")
    latin1 = tmp_path / "beta" / os.fsdecode(b"caf\xe9.png")  # not UTF-8
    latin1.write_bytes((tmp_path / "alpha" / "0.png").read_bytes())
    stats = filtag_kg.collect(small_model(n_classes=2), image_folder(tmp_path, fraction=1.0), progress=False)
    assert stats.counts.tolist() == [2, 3]
    assert stats.manifest["skipped"]["train"] == []
    (tmp_path / os.fsdecode(b"gamma-\xff")).mkdir()
    with pytest.raises(UserError, match=r"gamma-\\xff: its name is not valid UTF-8"):
        image_folder(tmp_path)


def test_links_to_folders_inside_class_folders_are_followed_once(tmp_path) -> None:
    """A class folder with a sub-folder that is a link (a data set assembled from links) lost that
    sub-folder's images without a word; a link back up (a loop) or a second link to a folder read
    already adds nothing."""
    from PIL import Image

    for folder in ("pool/beta-extra/deeper", "data/alpha", "data/beta"):
        (tmp_path / folder).mkdir(parents=True)
    for path in ("data/alpha/a.png", "data/beta/b.png", "pool/beta-extra/c.png", "pool/beta-extra/deeper/d.png"):
        Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(tmp_path / path)
    (tmp_path / "data/beta/extra").symlink_to(tmp_path / "pool/beta-extra")
    (tmp_path / "data/beta/more").symlink_to(tmp_path / "pool/beta-extra/deeper")  # read already, through extra
    (tmp_path / "pool/beta-extra/deeper/loop").symlink_to(tmp_path / "pool/beta-extra")
    split = image_folder(tmp_path / "data", fraction=1.0).split("train")
    assert split.ids == ["alpha/a.png", "beta/b.png", "beta/extra/c.png", "beta/extra/deeper/d.png"]
    assert split.labels.tolist() == [0, 1, 1, 1]


def test_broken_links_in_class_folders_are_named_as_unreadable(tmp_path) -> None:
    """A link to a missing file (a git-annex data set whose content is not fetched) was left out without
    a word; it is now listed, and skipped as unreadable, by name."""
    from PIL import Image

    for name in ("alpha", "beta"):
        (tmp_path / name).mkdir()
        Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(tmp_path / name / "0.png")
    (tmp_path / "beta" / "annexed.jpg").symlink_to(tmp_path / "not-fetched.jpg")
    source = image_folder(tmp_path, fraction=1.0)
    assert source.split("train").ids == ["alpha/0.png", "beta/0.png", "beta/annexed.jpg"]
    stats = filtag_kg.collect(small_model(n_classes=2), source, progress=False)
    assert stats.manifest["skipped"]["train"] == ["beta/annexed.jpg"] and stats.counts.tolist() == [1, 1]


def test_model_outputs_labels_and_layer_strings(data: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = data
    model = small_model()
    stats = filtag_kg.collect(model, images[:10], labels=[0, 1] * 5, layers="sep", progress=False)  # class 2: none
    assert stats.layers == ["sep"] and stats.classes == ["0", "1", "2"] and stats.counts.tolist() == [5, 5, 0]
    assert filtag_kg.tag(stats, layers="sep").layers == ["sep"]

    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(4, 3, name="c")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(x)
    two_heads = keras.Model(inputs, [keras.layers.Dense(3, activation="softmax")(pooled), keras.layers.Dense(7)(pooled)])
    stats = filtag_kg.collect(two_heads, images[:25], labels=labels[:25], progress=False)  # the first output: 3 classes
    assert stats.classes == ["0", "1", "2"]
    with pytest.raises(UserError, match=r"its first output has shape \(None, 10, 10, 4\); .* needs \[batch, classes\]"):
        filtag_kg.collect(keras.Model(inputs, x, name="maps"), images, labels=labels, progress=False)


def test_models_without_defined_inputs_are_named(data: tuple[np.ndarray, np.ndarray]) -> None:
    """A subclassed keras.Model, or a Sequential one without keras.Input never called, failed with
    Keras' AttributeError ("'Classifier' object has no attribute 'inputs'")."""
    images, labels = data

    class Classifier(keras.Model):
        def __init__(self) -> None:
            super().__init__(name="subclassed")
            self.conv = keras.layers.Conv2D(3, 3, name="c")
            self.head = keras.layers.Dense(3, activation="softmax")

        def call(self, x):
            return self.head(keras.ops.mean(self.conv(x), axis=(1, 2)))

    subclassed = Classifier()
    subclassed(images[:1])
    unbuilt = keras.Sequential([keras.layers.Conv2D(3, 3), keras.layers.GlobalAveragePooling2D(),
                                keras.layers.Dense(3)], name="unbuilt")
    for model in (subclassed, unbuilt):
        with pytest.raises(UserError, match=rf"model '{model.name}' has no defined inputs \(a subclassed keras.Model, "
                                            r"or a Sequential model without keras.Input that was never called\)"):
            filtag_kg.collect(model, images, labels=labels, progress=False)


def test_non_finite_pixels_are_refused_by_image(data: tuple[np.ndarray, np.ndarray]) -> None:
    """A NaN pixel gave finite but arbitrary means (ReLU maps NaN to 0), an infinite one NaN vectors
    and NaN z for its whole class; both are refused, naming the image."""
    images, labels = data
    model = small_model()
    nan, inf = images.copy(), images[:5].copy()
    nan[3, 4, 4, 0], nan[7, 0, 0, 2] = np.nan, np.nan
    inf[2, 1, 1, 1] = -np.inf
    with pytest.raises(UserError, match=r"train image 3 has NaN or infinite pixels \(2 such image"):
        filtag_kg.collect(model, nan, labels=labels, progress=False)
    with pytest.raises(UserError, match="held-out image 2 has NaN or infinite pixels"):
        array_source(images, labels, heldout=(inf, labels[:5]))


def test_images_and_labels_as_a_scikit_learn_user_passes_them(data: tuple[np.ndarray, np.ndarray]) -> None:
    """A list of images, whole-number float labels, numpy sizes and one split name give the numbers of
    the array case; other types are refused by value instead of a TensorFlow or attribute error."""
    images, labels = data
    model = small_model()
    reference = filtag_kg.collect(model, images, labels=labels, batch_size=8, progress=False)
    same = filtag_kg.collect(model, list(images), labels=labels.astype(np.float64), batch_size=np.int64(8),
                             splits="train", shard=(np.int64(0), np.int64(1)), progress=False)
    for m in reference.layers:
        np.testing.assert_array_equal(same.sums[m], reference.sums[m])
    assert same.manifest["batch_size"] == 8 and same.manifest["shard"] == [0, 1]
    for bad, value in (([0.5] + [0] * 36, "0.5"), (["0"] * 37, "'0'"), ([True] * 37, "True"), ([-1] + [0] * 36, "-1")):
        with pytest.raises(UserError, match=f"labels must be non-negative whole numbers .*; got {value}$"):
            filtag_kg.collect(model, images, labels=bad, progress=False)
    for size in (2.5, "8", True):
        with pytest.raises(UserError, match=f"batch size must be a whole number of at least 1, got {size!r}"):
            filtag_kg.collect(model, images, labels=labels, batch_size=size, progress=False)
    with pytest.raises(UserError, match="shard must be"):
        filtag_kg.collect(model, images, labels=labels, shard=3, progress=False)
    with pytest.raises(UserError, match=r"label 3 is beyond the 3 classes \(labels 0 … 2"):  # was: '3 classes given'
        filtag_kg.collect(model, images, labels=np.r_[labels[:-1], 3], progress=False)
    with pytest.raises(UserError, match="labels are given with the image source 'arrays'"):
        filtag_kg.collect(model, array_source(images, labels), labels=labels, progress=False)
    with pytest.raises(UserError, match="model 'VGG16': pass a keras.Model"):
        filtag_kg.collect("VGG16", images, labels=labels, progress=False)
    with pytest.raises(UserError, match="images must be an array .*got generator"):
        filtag_kg.collect(model, (x for x in images), labels=labels, progress=False)


def test_channels_first_layers_are_read_by_their_filter_axis(data: tuple[np.ndarray, np.ndarray]) -> None:
    """A channels_first conv layer ([batch, filters, h, w], as in models ported from PyTorch) was read
    with the last axis as filters: 10 'filters' of width for a layer of 4, and z over the wrong axis."""
    images, labels = data

    def build(data_format: str) -> keras.Model:
        keras.utils.set_random_seed(1)
        inputs = keras.Input((3, 12, 12) if data_format == "channels_first" else (12, 12, 3))
        x = keras.layers.Conv2D(4, 3, activation="relu", name="c1", data_format=data_format)(inputs)
        x = keras.layers.DepthwiseConv2D(3, name="dw", data_format=data_format)(x)
        x = keras.layers.GlobalAveragePooling2D(data_format=data_format)(x)
        return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))

    first, last = build("channels_first"), build("channels_last")
    last.set_weights(first.get_weights())
    ported = filtag_kg.collect(first, images.transpose(0, 3, 1, 2), labels=labels, progress=False)
    reference = filtag_kg.collect(last, images, labels=labels, progress=False)
    assert ported.n_filters == reference.n_filters == {"c1": 4, "dw": 4}
    for m in ported.layers:
        np.testing.assert_allclose(ported.class_means(m), reference.class_means(m), atol=1e-6)
    assert [d["filters"] for d in ported.manifest["model"]["layers"]][1:3] == [4, 4]


def test_channels_first_model_collects_from_an_image_folder(tmp_path) -> None:
    """The input [batch, channels, h, w] of a channels_first model was read as h×w×channels, so folder
    images were decoded with 14 'channels' and failed; now they are resized to (h, w) and transposed."""
    from PIL import Image

    keras.utils.set_random_seed(1)
    inputs = keras.Input((3, 10, 14))  # not square: height and width cannot be swapped unnoticed
    x = keras.layers.Conv2D(4, 3, activation="relu", name="c1", data_format="channels_first")(inputs)
    x = keras.layers.GlobalAveragePooling2D(data_format="channels_first")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    images = np.random.default_rng(7).integers(0, 255, size=(6, 10, 14, 3), dtype=np.uint8)
    labels = np.arange(6) % 2
    for j, (image, label) in enumerate(zip(images, labels)):
        (tmp_path / "ab"[label]).mkdir(exist_ok=True)
        Image.fromarray(image).save(tmp_path / "ab"[label] / f"{j}.png")
    folder = filtag_kg.collect(model, image_folder(tmp_path, fraction=1.0), batch_size=4, progress=False)
    chw = filtag_kg.collect(model, images.transpose(0, 3, 1, 2), labels=labels, batch_size=4, progress=False)
    assert folder.manifest["skipped"]["train"] == [] and folder.counts.tolist() == [3, 3]
    np.testing.assert_allclose(folder.class_means("c1"), chw.class_means("c1"), atol=1e-6)
    with pytest.raises(UserError, match=r"the train images are 10×14×3 but the model takes 3×10×14 "
                                        r"\(channels×height×width\)"):
        filtag_kg.collect(model, images, labels=labels, progress=False)


def test_channels_first_model_collects_the_embedded_data() -> None:
    """The embedded Animal-Shape images (28×28×1) were offered as they are to a channels_first model
    (1×28×28) and refused; they are turned channels-first, and collect as a channels_last twin does."""
    from filtag_kg.data import animal_shape

    def build(data_format: str) -> keras.Model:
        keras.utils.set_random_seed(3)
        inputs = keras.Input((1, 28, 28) if data_format == "channels_first" else (28, 28, 1))
        x = keras.layers.Conv2D(4, 3, activation="relu", name="c1", data_format=data_format)(inputs)
        x = keras.layers.GlobalAveragePooling2D(data_format=data_format)(x)
        return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))

    first, last = build("channels_first"), build("channels_last")
    last.set_weights(first.get_weights())
    source = animal_shape(fraction=0.05)
    ported = filtag_kg.collect(first, source, splits=("train",), progress=False)
    reference = filtag_kg.collect(last, source, splits=("train",), progress=False)
    assert ported.n_images == reference.n_images == 500
    np.testing.assert_allclose(ported.class_means("c1"), reference.class_means("c1"), atol=1e-6)


def test_single_files_take_their_class_from_the_folder_a_link_is_in(tmp_path) -> None:
    """Class folders of symbolic links into a pool of images: image_folder labels a link by its own
    folder; image_files (explain) took the target's folder ('pool': unknown truth)."""
    from PIL import Image

    from filtag_kg.data import image_files

    (tmp_path / "pool").mkdir()
    (tmp_path / "links" / "beta").mkdir(parents=True)
    Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(tmp_path / "pool" / "x.png")
    (tmp_path / "links" / "beta" / "x.png").symlink_to(tmp_path / "pool" / "x.png")
    assert image_folder(tmp_path / "links", ["alpha", "beta"], fraction=1.0).split("train").labels.tolist() == [1]
    held = image_files([tmp_path / "links" / "beta" / "x.png", tmp_path / "pool" / "x.png"], ["alpha", "beta"])
    assert held.split("heldout").labels.tolist() == [1, -1]


def test_single_files_in_sub_folders_of_a_class_folder_take_its_class(tmp_path) -> None:
    """image_folder labels beta/sub/x.png as beta (sub-folders at any depth), image_files (explain)
    took the parent 'sub' only: unknown truth. Now the nearest folder named after a class counts; one
    named by a label two classes share ends the search (unknown truth, as a file right in it)."""
    from PIL import Image

    from filtag_kg.data import image_files

    for folder in ("beta/sub/deeper", "alpha/beta-like", "crane/sub", "alpha/crane"):
        (tmp_path / folder).mkdir(parents=True)
        Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(tmp_path / folder / "x.png")
    classes = ["alpha", "beta", "crane", "crane"]
    held = image_files([tmp_path / f / "x.png" for f in ("beta/sub/deeper", "alpha/beta-like", "crane/sub",
                                                            "alpha/crane")], classes)
    assert held.split("heldout").labels.tolist() == [1, 0, -1, -1]


def test_a_class_of_unreadable_files_is_named(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """A class folder whose files are all broken left the class without z and tags, and only the
    skipped files were listed; now the class is named."""
    from PIL import Image

    for name in ("alpha", "beta", "gamma"):
        (tmp_path / name).mkdir()
    for j in range(3):
        Image.fromarray(np.full((12, 12, 3), 40 * j, np.uint8)).save(tmp_path / "alpha" / f"{j}.png")
    (tmp_path / "beta" / "a.png").write_bytes(b"not a png")
    (tmp_path / "beta" / "b.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (tmp_path / "gamma" / "c.png").write_bytes(b"")
    stats = filtag_kg.collect(small_model(n_classes=3), image_folder(tmp_path, fraction=1.0), progress=False)
    assert stats.counts.tolist() == [3, 0, 0]
    err = capsys.readouterr().err
    assert ("warning: no training image of class(es) 'beta', 'gamma' could be read (3 image(s)): "
            "they have no z and get no tags") in err
    filtag_kg.collect(small_model(n_classes=3), array_source(np.zeros((2, 12, 12, 3)), [0, 2]), progress=False)
    assert "no training image" not in capsys.readouterr().err  # classes without images are no loss


def test_images_of_other_shapes_or_kinds_are_refused_by_name(data: tuple[np.ndarray, np.ndarray]) -> None:
    """Images of different sizes gave numpy's 'inhomogeneous shape' ValueError; text or object pixels
    a TensorFlow conversion error once the model was set up; complex ones were collected without
    their imaginary parts. Each is a UserError naming the split, before any work."""
    images, labels = data
    with pytest.raises(UserError, match="train images must all have one shape, to stack as"):
        array_source([images[0], images[1, :8]], [0, 1])
    for dtype, shown in ((object, "object"), (str, "<U32"), (np.complex64, "complex64")):
        with pytest.raises(UserError, match=f"held-out images must be numbers .*got an array of dtype {shown};"):
            array_source(images, labels, heldout=(images[:2].astype(dtype), [0, 1]))
    same = array_source(images > 0, labels)  # booleans are numbers
    assert same.split("train").ids == [str(i) for i in range(37)]


def test_cmyk_jpegs_and_other_formats_read_for_a_grayscale_model(tmp_path) -> None:
    """TensorFlow decodes a CMYK JPEG, and GIF, BMP or WebP data under an image name, to RGB only: for a
    one-channel model they were skipped as unreadable. They are now converted to gray, the same as the
    grayscale files' pixels (GIF, BMP: lossless) or close to them (the CMYK JPEG's own compression)."""
    from PIL import Image

    from filtag_kg.data import image_files

    keras.utils.set_random_seed(2)
    inputs = keras.Input((12, 12, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="c1")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(x)))
    gray = Image.fromarray(np.random.default_rng(5).integers(0, 255, size=(12, 12), dtype=np.uint8))
    (tmp_path / "a").mkdir()
    files = {"gray.png": (gray, "PNG"), "gif.png": (gray, "GIF"), "bmp.jpg": (gray, "BMP"),
             "gray.jpg": (gray, "JPEG"), "cmyk.jpg": (gray.convert("CMYK"), "JPEG")}
    for name, (image, kind) in files.items():
        image.save(tmp_path / "a" / name, kind, **({"quality": 100} if kind == "JPEG" else {}))
    stats = filtag_kg.collect(model, image_files([tmp_path / "a" / n for n in files], ["a", "b"]), splits="heldout",
                              progress=False)
    assert stats.manifest["skipped"]["heldout"] == [] and len(stats.heldout) == 5
    v = dict(zip(files, stats.heldout.vectors["c1"]))
    np.testing.assert_array_equal(v["gif.png"], v["gray.png"])
    np.testing.assert_array_equal(v["bmp.jpg"], v["gray.png"])
    np.testing.assert_allclose(v["cmyk.jpg"], v["gray.jpg"], atol=0.02)


def test_jpegs_read_for_an_rgba_model_and_other_channel_counts_are_refused(tmp_path) -> None:
    """TensorFlow decodes no JPEG to four channels: a model taking RGBA had every JPEG skipped as
    unreadable; they now get an opaque alpha channel, as an RGB PNG does. A model of 2 or 5 channels,
    which no image file has, failed with TensorFlow's traceback; it is now named."""
    from PIL import Image

    from filtag_kg.data import image_files

    def model_of(channels: int) -> keras.Model:
        keras.utils.set_random_seed(2)
        inputs = keras.Input((12, 12, channels))
        x = keras.layers.Conv2D(4, 3, activation="relu", name="c1")(inputs)
        return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(x)))

    rgb = Image.fromarray(np.random.default_rng(5).integers(0, 255, size=(12, 12, 3), dtype=np.uint8))
    (tmp_path / "a").mkdir()
    rgb.save(tmp_path / "a" / "rgb.png")
    rgb.save(tmp_path / "a" / "rgb.jpg", quality=100, subsampling=0)
    source = image_files([tmp_path / "a" / "rgb.png", tmp_path / "a" / "rgb.jpg"], ["a", "b"])
    stats = filtag_kg.collect(model_of(4), source, splits="heldout", progress=False)
    assert stats.manifest["skipped"]["heldout"] == [] and len(stats.heldout) == 2
    np.testing.assert_allclose(stats.heldout.vectors["c1"][1], stats.heldout.vectors["c1"][0], atol=0.02)
    for channels in (2, 5):
        with pytest.raises(UserError, match=rf"the model takes images of {channels} channels; JPEG and PNG files "
                                            r"give 1 \(gray\), 3 \(RGB\) or 4 \(RGBA\)"):
            filtag_kg.collect(model_of(channels), source, splits="heldout", progress=False)


def test_a_folder_named_by_a_label_two_classes_share_is_refused(tmp_path) -> None:
    """ImageNet has two 'crane's (bird 134, machine 517) and two 'maillot's: a folder 'crane' went to the
    machine, so the birds' images counted for it. It is refused (its wnid folder reads); a single file
    under it has unknown truth."""
    from PIL import Image

    from filtag_kg.data import image_files
    from filtag_kg.imagenet import imagenet_index

    classes = list(imagenet_index().keras_labels)
    for folder in ("crane", "n02012849", "tench"):
        (tmp_path / folder).mkdir()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / folder / "x.png")
    with pytest.raises(UserError, match=r"class folder .*/crane names 2 of the model's classes \(indices 134, 517: "
                                        r"wnids n02012849, n03126707\); name the folder by the wnid of its class"):
        image_folder(tmp_path, classes)
    held = image_files([tmp_path / f / "x.png" for f in ("crane", "n02012849", "tench")], classes)
    assert held.split("heldout").labels.tolist() == [-1, 134, 0]
    (tmp_path / "crane" / "x.png").unlink()
    (tmp_path / "crane").rmdir()
    assert image_folder(tmp_path, classes, fraction=1.0).split("train").labels.tolist() == [134, 0]


def test_an_unknown_split_is_refused_before_any_work(split_run, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """splits=['train', 'test'] collected the whole training split, then failed on 'test', its checkpoint
    resumable only with the same wrong splits; now nothing runs."""
    model, source, _ = split_run
    monkeypatch.setattr(collect_module, "make_step", lambda *a, **k: pytest.fail("a split was collected"))
    with pytest.raises(UserError, match="data set 'arrays' has no split 'test'; it has: train, heldout"):
        filtag_kg.collect(model, source, splits=["train", "test"], output=tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_each_class_keeps_a_training_image_in_a_split() -> None:
    """A class whose share rounded to no training image (1 image at fraction 0.5: round(0.5) = 0) had
    no z and got no tags, silently; it keeps one. Other classes split as before."""
    from filtag_kg.data import stratified_split

    labels = np.repeat([0, 1, 2], [1, 10, 3])
    train, held = stratified_split(labels, 0.1, seed=0)
    assert np.bincount(labels[train]).tolist() == [1, 1, 1] and np.bincount(labels[held]).tolist() == [0, 9, 2]
    train, held = stratified_split(labels, 0.5, seed=0)
    assert np.bincount(labels[train]).tolist() == [1, 5, 2] and len(held) == 6


def test_logits_of_a_model_without_softmax_are_kept_as_probabilities(data: tuple[np.ndarray, np.ndarray]) -> None:
    """A model ending in a linear Dense layer (trained with from_logits=True) gave its raw scores as the
    top-5 'probabilities': explanations said 'predicted 2 (310%)', and the graph's confidence left [0, 1]."""
    images, labels = data
    keras.utils.set_random_seed(3)
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="c1")(inputs)
    logits = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(x)))
    source = array_source(images[:20], labels[:20], heldout=(images[20:], labels[20:]))
    stats = filtag_kg.collect(logits, source, progress=False)
    scores = logits.predict(images[20:], verbose=0)
    probs = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    np.testing.assert_array_equal(stats.heldout.top_classes[:, :3], np.argsort(-scores, axis=1, kind="stable"))
    np.testing.assert_allclose(stats.heldout.top_probs[:, :3], -np.sort(-probs, axis=1), rtol=1e-5)
    softmaxed = filtag_kg.collect(small_model(), source, progress=False)  # a softmax output stays as it is
    np.testing.assert_allclose(softmaxed.heldout.top_probs[:, 0],
                               small_model().predict(images[20:], verbose=0).max(axis=1), rtol=1e-5)


def test_a_model_of_1000_classes_of_its_own_is_not_imagenet(tmp_path) -> None:
    """Any 1,000 classes were taken for ImageNet's: a folder 'n01440764' matched class 0 of a model with
    other classes, which got ImageNet's wnids and its label space (one set of class nodes in the graph)."""
    from PIL import Image

    from filtag_kg.imagenet import imagenet_index

    own = [f"class{i:04d}" for i in range(1000)]
    for folder in ("class0003", "n01440764"):
        (tmp_path / folder).mkdir()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / folder / "x.png")
    with pytest.raises(UserError, match="class folder .*n01440764 does not match any of the model's 1000 classes"):
        image_folder(tmp_path, own)
    (tmp_path / "n01440764" / "x.png").unlink()
    (tmp_path / "n01440764").rmdir()
    source = image_folder(tmp_path, own, fraction=1.0, name="mine")
    assert source.wnids is None and source.label_space.startswith("mine-")
    assert source.split("train").labels.tolist() == [3]
    imagenet = list(imagenet_index().keras_labels)
    (tmp_path / "n01440764").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "n01440764" / "x.png")
    (tmp_path / "class0003" / "x.png").unlink()
    (tmp_path / "class0003").rmdir()
    source = image_folder(tmp_path, imagenet, fraction=1.0)
    assert source.label_space == "imagenet1k" and source.wnids[0] == "n01440764"
    assert source.split("train").labels.tolist() == [0]


def test_class_names_given_as_numbers_are_text(tmp_path, data: tuple[np.ndarray, np.ndarray]) -> None:
    """classes=np.arange(3) broke the label space's JSON (int64); Python ints got through to the
    artifacts and broke the knowledge-graph export ('int' object has no attribute 'strip')."""
    from filtag_kg.kg.export import export_tags

    images, labels = data
    stats = filtag_kg.collect(small_model(), array_source(images, labels, classes=np.arange(3)), progress=False)
    assert stats.classes == ["0", "1", "2"]
    stats.save(tmp_path / "stats")
    tags = filtag_kg.tag(ActivationStats.load(tmp_path / "stats"), k=1)
    assert tags.classes == ["0", "1", "2"] and len(list(export_tags(tags))) > 0
    assert array_source(images, labels, classes=[7, np.str_("b"), "c"]).classes == ["7", "b", "c"]
    with pytest.raises(UserError, match=r"class names must be text \(or whole numbers\), got 1.5"):
        array_source(images, labels, classes=["a", 1.5, "c"])


def test_files_that_are_not_jpeg_or_png_are_reported(tmp_path, capsys) -> None:
    """A class folder's BMP, WebP or other files, and images beside the class folders, were left out
    without a word (hidden files stay silent)."""
    from PIL import Image

    for name in ("alpha", "beta"):
        (tmp_path / name).mkdir()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / name / "0.png")
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / name / "1.bmp")
    (tmp_path / "beta" / "notes").write_text("x")
    (tmp_path / "beta" / ".DS_Store").write_text("x")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "stray.JPG")  # in no class folder
    image_folder(tmp_path)
    err = capsys.readouterr().err
    assert f"warning: {tmp_path}: 3 file(s) in the class folders are not JPEG or PNG and are left out " \
           "(.bmp ×2, (none) ×1)" in err
    assert f"warning: {tmp_path}: 1 image file(s) are in no class folder and are left out (e.g. stray.JPG)" in err
    (tmp_path / "stray.JPG").unlink()
    (tmp_path / "beta" / "notes").unlink()
    for bmp in tmp_path.glob("*/1.bmp"):
        bmp.unlink()
    image_folder(tmp_path)
    assert "warning" not in capsys.readouterr().err


def test_activations_overflowing_float16_are_warned_of(data: tuple[np.ndarray, np.ndarray], capsys) -> None:
    """A layer whose float16 activations overflow to inf scales to NaN: its z and tags were NaN and
    meaningless without a word. The same model in float32 is not warned of."""
    from filtag_kg.models import LoadedModel, input_spec_of, with_mixed_precision

    images, labels = data
    model = small_model()
    c1 = model.get_layer("c1")
    c1.set_weights([np.full_like(w, 1e4) for w in c1.get_weights()])  # outputs far beyond float16's 65,504
    loaded = LoadedModel(model, "small", "keras", "test", input_spec_of(model))
    filtag_kg.collect(loaded, images[:8], labels=labels[:8], layers="c1", progress=False)
    assert "warning" not in capsys.readouterr().err
    half = filtag_kg.collect(with_mixed_precision(loaded), images[:8], labels=labels[:8], layers="c1", progress=False)
    assert not np.isfinite(half.sums["c1"]).all()
    assert ("warning: the scaled means of layer(s) c1 are NaN or infinite for some images (float16 overflowed: "
            "collect without --mixed-precision)") in capsys.readouterr().err


def test_an_output_folder_takes_one_collection_at_a_time(tmp_path, data: tuple[np.ndarray, np.ndarray]) -> None:
    """A second collection into a folder another one writes to is refused (they wrote checkpoints over each
    other's); the temporary checkpoint files a killed run left (as large as the statistics) are removed."""
    import fcntl
    import os

    images, labels = data
    out = tmp_path / "stats"
    out.mkdir()
    (out / ".arrays.npz.k1ll3d.tmp").write_bytes(b"half a checkpoint")
    (out / ".other-tool.tmp").write_bytes(b"not ours")
    other = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(other, fcntl.LOCK_EX)  # as a running collection holds it
        with pytest.raises(UserError, match=f"{out}: another collection is writing there"):
            filtag_kg.collect(small_model(), images[:8], labels=labels[:8], output=out, progress=False)
        assert (out / ".arrays.npz.k1ll3d.tmp").exists()  # not touched while the other runs
    finally:
        os.close(other)
    filtag_kg.collect(small_model(), images[:8], labels=labels[:8], output=out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == [".other-tool.tmp", "arrays.npz", "manifest.json"]
