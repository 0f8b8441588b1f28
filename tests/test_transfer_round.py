"""A transfer-learning practitioner's own Keras model (a keras.applications base nested in it) and own
image folder: the preprocessing a saved model gets (--preprocess), recorded and used again; a folder
given to `collect` by path; a saved .h5 model that Keras cannot restore."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import filtag_kg
from filtag_kg.data import image_folder
from filtag_kg.errors import UserError
from filtag_kg.records import ActivationStats

CLASSES = ["cat", "golden retriever", "café au lait"]
LAYER = "mobilenetv2_1.00_32/block_1_depthwise"


@pytest.fixture(scope="module")
def transfer_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MobileNetV2 (random weights, 32×32) nested in a Sequential model with a 3-class head, saved as .keras."""
    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    model = keras.Sequential([keras.Input((32, 32, 3)), base, keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(3, activation="softmax")], name="transfer")
    path = tmp_path_factory.mktemp("model") / "transfer.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three class folders named by labels (spaces, unicode) of RGB PNGs of odd sizes, plus a zero-byte file."""
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for name in CLASSES:
        (root / name).mkdir()
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (30 + 7 * i, 41, 3), np.uint8)).save(root / name / f"p{i}.png")
    (root / "cat" / "zero.png").touch()
    return root


def hand_means(model_file: Path, image: Path, scale: float, shift: float) -> np.ndarray:
    """ā of LAYER for one PNG by hand: resize to 32×32, pixels·scale + shift, the nested layer's output
    min-max scaled over the whole output, the mean per filter."""
    base = keras.models.load_model(model_file, compile=False).layers[0]
    inner = keras.Model(base.inputs, base.get_layer(LAYER.split("/")[1]).output)
    pixels = np.asarray(Image.open(image).convert("RGB"), np.float32)
    x = tf.image.resize(pixels, (32, 32)).numpy()[None] * scale + shift
    a = inner(x, training=False).numpy()[0]
    return ((a - a.min()) / (a.max() - a.min())).mean(axis=(0, 1))


def test_collect_preprocess_option_feeds_a_saved_model_as_trained_and_is_recorded(
        transfer_model: Path, folder: Path, tmp_path: Path, run_cli) -> None:
    """A saved transfer model trained on mobilenet_v2.preprocess_input outside the model got pixels 0–255
    (no option chose otherwise); `--preprocess` gives it its family's scaling, [-1, 1], checked against a
    hand computation of one nested layer, and the manifest records it."""
    out = tmp_path / "stats"
    code, _, err = run_cli("collect", "-m", transfer_model, "-d", folder, "-o", out, "--preprocess", "MobileNetV2")
    assert code == 0, err
    assert "1 unreadable image(s) skipped" in err and "cat/zero.png" in err
    stats = ActivationStats.load(out)
    assert stats.manifest["model"]["preprocess"] == "mobilenet_v2"
    assert stats.manifest["skipped"]["train"] + stats.manifest["skipped"]["heldout"] == ["cat/zero.png"]
    assert LAYER in stats.layers and stats.n_images + len(stats.heldout) == 12
    i = 0
    expected = hand_means(transfer_model, folder / stats.heldout.image_ids[i], 1 / 127.5, -1.0)
    np.testing.assert_allclose(stats.heldout.vectors[LAYER][i], expected, atol=1e-5)
    raw = hand_means(transfer_model, folder / stats.heldout.image_ids[i], 1.0, 0.0)
    assert np.abs(raw - expected).max() > 1e-3  # the preprocessing changes the numbers

    # explain's model, found from the manifest, gets the same preprocessing again
    from filtag_kg.data import image_files
    from filtag_kg.models import load_from_manifest

    loaded = load_from_manifest(stats.manifest["model"])
    assert loaded.preprocess == "mobilenet_v2"
    again = filtag_kg.collect(loaded, image_files([folder / stats.heldout.image_ids[i]], stats.classes),
                              layers=[LAYER], splits=["heldout"], progress=False)
    np.testing.assert_allclose(again.heldout.vectors[LAYER][0], stats.heldout.vectors[LAYER][i], atol=1e-6)


def test_preprocess_option_refused_by_value(transfer_model: Path, folder: Path, tmp_path: Path, run_cli) -> None:
    """An unknown name is refused naming it and the known ones; models with preprocessing of their own refuse it."""
    code, _, err = run_cli("collect", "-m", transfer_model, "-d", folder, "-o", tmp_path / "a", "--preprocess", "imgnet")
    assert code == 2 and "unknown preprocessing 'imgnet'" in err and "mobilenet_v2" in err and "unit" in err
    code, _, err = run_cli("collect", "-m", "VGG16", "--weights", "none", "-d", folder, "-o", tmp_path / "b",
                           "--preprocess", "unit")
    assert code == 2 and "--preprocess unit" in err and "VGG16 has its own" in err and "vgg16" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    inputs = keras.Input((8, 8, 1))  # a family's preprocess_input is for RGB: it failed in the pipeline, a traceback
    gray = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(
        keras.layers.Conv2D(2, 3)(inputs))), name="gray")
    with pytest.raises(UserError, match="preprocessing 'vgg16' is keras.applications' for RGB images "
                                        r"\(3 channels\), but model 'gray' takes 1"):
        filtag_kg.collect(gray, np.zeros((2, 8, 8, 1)), [0, 1], preprocess="vgg16", progress=False)


def test_python_collect_takes_a_preprocessing_and_a_folder_path(transfer_model: Path, folder: Path, capsys) -> None:
    """`collect(model, 'imgs/')` asked for labels ("images given as str need labels"); it reads the folder as
    image_folder does. `preprocess='unit'` scales a keras.Model's pixels by 1/255, as the arrays divided by hand."""
    model = keras.models.load_model(transfer_model, compile=False)
    by_path = filtag_kg.collect(model, str(folder), layers=[LAYER], progress=False)
    by_source = filtag_kg.collect(model, image_folder(folder), layers=[LAYER], progress=False)
    np.testing.assert_allclose(by_path.sums[LAYER], by_source.sums[LAYER], rtol=1e-6)
    assert by_path.classes == sorted(CLASSES) and by_path.manifest["dataset"]["root"] == str(folder)
    with pytest.raises(UserError, match="labels are given with the image folder"):
        filtag_kg.collect(model, folder, labels=[0, 1], progress=False)

    x = np.random.default_rng(1).integers(0, 256, (6, 32, 32, 3)).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1, 2])
    unit = filtag_kg.collect(model, x, y, layers=[LAYER], preprocess="unit", progress=False)
    by_hand = filtag_kg.collect(model, x / 255, y, layers=[LAYER], progress=False)
    np.testing.assert_allclose(unit.sums[LAYER], by_hand.sums[LAYER], atol=1e-5)
    assert unit.manifest["model"]["preprocess"] == "unit" and "preprocess" not in by_hand.manifest["model"]


def test_resume_and_merge_tell_another_preprocessing() -> None:
    """A checkpoint or shard collected with another preprocessing is not this run's (it was: the identity had
    no preprocessing, and shards of other inputs merged); one made before preprocessing was recorded still is."""
    from filtag_kg.collection import _difference, _identity, _saved_options
    from filtag_kg.records import _collection_differences

    def manifest(preprocess: str | None) -> dict:
        model = {"hash": "h", "precision": "float32", **({"preprocess": preprocess} if preprocess else {})}
        return {"model": model, "layers": ["c"], "dataset": {"name": "d"}, "split": {"fraction": 0.8, "seed": 0},
                "batch_size": 8, "shard": None}

    plain, unit = manifest(None), manifest("unit")
    old = json.dumps(["h", "float32", ["c"], {"name": "d"}, {"fraction": 0.8, "seed": 0}, 8, None], sort_keys=True)
    assert _identity(plain) == old  # a checkpoint written before resumes
    assert _identity(unit) != old
    assert _difference(_identity(unit), plain) == "preprocessing (--preprocess)"
    assert _saved_options(_identity(unit), plain) == "; it was collected with --preprocess unit"
    assert _saved_options(old, unit) == "; it was collected with --preprocess none"

    def stats(m: dict) -> ActivationStats:
        return ActivationStats.empty(["c"], ["a", "b"], {"c": 2}, m)

    assert ("preprocessing", "unit vs none") in _collection_differences(stats(unit), stats(plain))
    assert _collection_differences(stats(unit), stats(manifest("unit"))) == []


def test_h5_with_a_keras_operation_says_to_save_as_keras(tmp_path: Path) -> None:
    """The usual recipe, preprocess_input called on the input of a functional model, saves to .h5 but Keras
    cannot load it again ('Unknown layer: TrueDivide'); the message said to import the custom object's code,
    which does not exist: it now says to save as .keras, which loads and collects."""
    from filtag_kg.models import load_saved

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.applications.mobilenet_v2.preprocess_input(inputs)
    x = keras.layers.Conv2D(4, 3, name="c")(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))
    model.save(tmp_path / "recipe.h5")
    with pytest.raises(UserError, match=r"recipe\.h5: the legacy \.h5 format cannot restore the Keras operation "
                                        r"'TrueDivide'.*Save the model as \.keras"):
        load_saved(tmp_path / "recipe.h5")
    model.save(tmp_path / "recipe.keras")
    assert load_saved(tmp_path / "recipe.keras").model.count_params() == model.count_params()


def test_a_nested_layer_is_chosen_by_a_glob_of_its_own_name(transfer_model: Path, folder: Path, tmp_path: Path,
                                                            run_cli) -> None:
    """`--layer Conv_1` chose the nested 'mobilenetv2_1.00_32/Conv_1' but `--layer 'block_16_*'` matched no
    conv layer: a nested layer's own name was taken exactly only, never as a glob."""
    code, _, err = run_cli("collect", "-m", transfer_model, "-d", folder, "-o", tmp_path / "s", "--fraction", "1",
                           "-l", "block_16_*", "-l", "Conv_1")
    assert code == 0, err
    base = "mobilenetv2_1.00_32/"
    assert ActivationStats.load(tmp_path / "s").layers == [
        base + "block_16_expand", base + "block_16_depthwise", base + "block_16_project", base + "Conv_1"]
    code, out, err = run_cli("tag", tmp_path / "s", "-l", "block_16_*", "-o", tmp_path / "t", "--no-plots")
    assert code == 0 and out.startswith("9 tags (k-best 1)"), err


def test_classes_file_gives_a_saved_model_its_output_order(transfer_model: Path, folder: Path, tmp_path: Path,
                                                           run_cli) -> None:
    """A saved model's outputs were always taken to be the sorted class folder names; a model trained with
    another class order had its z and tags under the wrong classes, and no option said otherwise.
    `--classes FILE` gives the order; each folder's images count for its own class."""
    order = ["golden retriever", "cat", "café au lait"]
    (tmp_path / "classes.txt").write_text("\n".join(order) + "\n\n", encoding="utf-8")
    runs = {}
    for name, extra in (("sorted", []), ("given", ["--classes", tmp_path / "classes.txt"])):
        code, _, err = run_cli("collect", "-m", transfer_model, "-d", folder, "-o", tmp_path / name, "--fraction", "1",
                               "-l", "Conv_1", *extra)
        assert code == 0, err
        runs[name] = ActivationStats.load(tmp_path / name)
    assert runs["sorted"].classes == sorted(order) and runs["given"].classes == order
    layer = runs["given"].layers[0]
    for c, label in enumerate(order):
        s = runs["sorted"].classes.index(label)
        assert runs["given"].counts[c] == runs["sorted"].counts[s] == 4  # (cat/zero.png is skipped)
        np.testing.assert_allclose(runs["given"].sums[layer][c], runs["sorted"].sums[layer][s], rtol=1e-6)

    (tmp_path / "bad.txt").write_text("cat\n\ndog\n", encoding="utf-8")
    code, _, err = run_cli("collect", "-m", transfer_model, "-d", folder, "-o", tmp_path / "bad", "--classes",
                           tmp_path / "bad.txt")
    assert code == 2 and "bad.txt, line 2: blank" in err
    code, _, err = run_cli("collect", "-m", "VGG16", "--weights", "none", "-d", folder, "-o", tmp_path / "vgg",
                           "--classes", tmp_path / "classes.txt")
    assert code == 2 and "the model VGG16 has its own class list (1,000 classes" in err


def test_explain_with_the_model_file_uses_the_recorded_preprocessing(
        transfer_model: Path, folder: Path, tmp_path: Path, run_cli, cli_ok) -> None:
    """`explain IMAGE --model FILE` gave the saved model no preprocessing, whatever the statistics were
    collected with: the same image was explained from other inputs (other tag counts) than its held-out
    record. It now takes the recorded one, unless --preprocess says otherwise."""
    stats, tags = tmp_path / "stats", tmp_path / "tags"
    cli_ok("collect", "-m", transfer_model, "-d", folder, "-o", stats, "--preprocess", "mobilenet_v2", "--fraction", "0.5")
    cli_ok("tag", stats, "-k", "2", "--out", tags)
    image_id = ActivationStats.load(stats).heldout.image_ids[0]
    (held,) = cli_ok("explain", "--tags", tags, "--heldout", image_id).splitlines()
    (again,) = cli_ok("explain", folder / image_id, "--tags", tags, "--model", transfer_model).splitlines()
    assert again.removeprefix(str(folder / image_id)) == held.removeprefix(image_id)
    (raw,) = cli_ok("explain", folder / image_id, "--tags", tags, "--model", transfer_model,
                    "--preprocess", "none").splitlines()
    assert raw.removeprefix(str(folder / image_id)) != held.removeprefix(image_id)  # pixels 0–255: other counts
    code, _, err = run_cli("explain", folder / image_id, "--tags", tags, "--preprocess", "unit")
    assert code == 2 and "--preprocess unit goes with --model FILE" in err


def test_a_layer_matching_nothing_lists_the_first_layers_only() -> None:
    """The refusal listed every conv layer: about 4,000 characters for EfficientNetB0's 81."""
    from filtag_kg.models import LISTED_LAYERS, match_layers

    names = [f"base/block{i}_conv" for i in range(81)]
    with pytest.raises(UserError) as refused:
        match_layers(names, "blok1_*", "conv layer")
    assert str(refused.value) == (f"layer 'blok1_*' matches no conv layer; conv layers: "
                                  f"{', '.join(names[:LISTED_LAYERS])} … (81 in all)")
    with pytest.raises(UserError, match=r"conv layers: a, b$"):
        match_layers(["a", "b"], "c", "conv layer")
