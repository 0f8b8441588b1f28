"""The core CLI: collect, tag, merge, demo, and the clear errors it promises for bad input."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from filtag_kg.records import ActivationStats, TagSet


def test_collect_tag_and_errors(run_cli, default_model, tmp_path, cli_ok) -> None:
    stats_dir = tmp_path / "stats"
    cli_ok("collect", "--out", stats_dir, "--layer", "conv4", "--layer", "conv5")
    stats = ActivationStats.load(stats_dir)
    assert stats.layers == ["conv4", "conv5"] and stats.n_images == 8000 and len(stats.heldout) == 2000

    cli_ok("tag", stats_dir, "-k", "1", "-k", "2", "-q", "10", "--out", tmp_path / "tags")
    tags = TagSet.load(tmp_path / "tags")
    assert tags.selections == [("k-best", 1), ("k-best", 2), ("q-quantile", 10.0)]
    # 10 classes x (1 + 2 + round(0.1*32)=3 | round(0.1*64)=6) per layer
    assert len(tags) == 10 * (1 + 2 + 3) + 10 * (1 + 2 + 6)
    heatmaps = sorted(p.name for p in (tmp_path / "tags").glob("z-*.png"))
    assert heatmaps == ["z-000-conv4.png", "z-001-conv5.png"]
    cli_ok("tag", stats_dir, "-l", "conv5", "--no-plots", "--out", tmp_path / "tags", "--overwrite")  # the earlier ones go
    assert not list((tmp_path / "tags").glob("*.png"))

    code, _, err = run_cli("tag", stats_dir, "-k", "40", "--out", tmp_path / "bad")
    assert code == 2 and "k=40 is larger than the 32 filters of layer 'conv4'" in err
    assert "tag only the layers of at least 40 filters (conv5) with `tag --layer`" in err and "`tag -q`" in err
    code, _, err = run_cli("tag", stats_dir, "-q", "0", "--out", tmp_path / "bad")
    assert code == 2 and "q must be in (0, 100], got 0" in err
    code, _, err = run_cli("tag", stats_dir, "--out", stats_dir)
    assert code == 2 and "holds statistics" in err
    code, _, err = run_cli("collect", "--out", tmp_path / "bad", "--batch-size", "0")
    assert code == 2 and "--batch-size" in err
    (tmp_path / "file").write_text("")
    code, _, err = run_cli("tag", stats_dir, "--out", tmp_path / "file" / "tags")
    assert code == 1 and f"Error: {tmp_path / 'file' / 'tags'}: Not a directory" in err
    assert not (tmp_path / "bad").exists()  # nothing written on bad input


def test_shards_merge_on_the_command_line(run_cli, default_model, tmp_path, cli_ok) -> None:
    for i in range(2):
        cli_ok("collect", "--out", tmp_path / f"s{i}", "--shard", f"{i}/2", "-l", "conv5")
    cli_ok("merge", tmp_path / "s0", tmp_path / "s1", "-o", tmp_path / "merged")
    cli_ok("collect", "--out", tmp_path / "whole", "-l", "conv5")
    merged, whole = ActivationStats.load(tmp_path / "merged"), ActivationStats.load(tmp_path / "whole")
    np.testing.assert_allclose(merged.sums["conv5"], whole.sums["conv5"], rtol=1e-12)
    assert merged.heldout.image_ids == whole.heldout.image_ids
    code, _, err = run_cli("collect", "--out", tmp_path / "x", "--shard", "2/2")
    assert code == 2 and "--shard 2/2" in err
    before = (tmp_path / "s0" / "arrays.npz").read_bytes()
    code, _, err = run_cli("merge", tmp_path / "s0", tmp_path / "s1")
    assert code == 2 and "--out" in err
    code, _, err = run_cli("merge", tmp_path / "s0", tmp_path / "s1", "-o", tmp_path / "s0")
    assert code == 2 and "--out" in err and "is one of the shards" in err
    code, _, err = run_cli("merge", tmp_path / "s0", tmp_path / "s0", "-o", tmp_path / "m2")
    assert code == 2 and "given twice" in err
    code, _, err = run_cli("merge", tmp_path / "s0", tmp_path / "s1", "-o", tmp_path / "merged")
    assert code == 2 and "merged already holds statistics" in err
    code, _, err = run_cli("merge", tmp_path / "s0", tmp_path / "whole", "-o", tmp_path / "m3")
    assert code == 2 and "whole is not a shard" in err
    assert (tmp_path / "s0" / "arrays.npz").read_bytes() == before and not (tmp_path / "m3").exists()


def test_model_and_data_errors(run_cli, default_model, tmp_path) -> None:
    no_conv = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    no_conv.save(tmp_path / "dense.keras")
    code, _, err = run_cli("collect", "--model", tmp_path / "dense.keras", "--out", tmp_path / "o")
    assert code == 2 and "has no convolutional layer" in err

    three = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(2, 3), keras.layers.Flatten(),
                              keras.layers.Dense(3)])
    three.save(tmp_path / "three.keras")
    code, _, err = run_cli("collect", "--model", tmp_path / "three.keras", "--out", tmp_path / "o")
    assert code == 2 and "has 10 classes but the model has 3 outputs" in err

    (tmp_path / "images" / "cat").mkdir(parents=True)
    code, _, err = run_cli("collect", "--data", tmp_path / "images", "--out", tmp_path / "o")
    assert code == 2 and "images/cat has no JPEG or PNG images" in err

    code, _, err = run_cli("collect", "--model", "NoSuchNet", "--out", tmp_path / "o")
    assert code == 2 and "unknown model 'NoSuchNet'" in err
    code, _, err = run_cli("collect", "--model", tmp_path / "missing.keras", "--out", tmp_path / "o")
    assert code == 2 and "missing.keras does not exist" in err


def test_help_is_there(run_cli) -> None:
    code, out, _ = run_cli("collect", "--help")
    assert code == 0 and "--shard" in out and "wnids" in out


def test_imagenet_weights_offline_say_how_to_pass_a_file(run_cli, tmp_path, monkeypatch) -> None:
    """Keras' download goes to a closed port on loopback (as offline); the error says what to do."""
    import urllib.request

    # urllib caches its proxy settings in a global opener on first use: keep ours out of later tests
    monkeypatch.setattr(urllib.request, "_opener", None)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    for var in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    code, _, err = run_cli("collect", "--model", "MobileNetV2", "--out", tmp_path / "o")
    assert code == 2 and "could not get the ImageNet weights of MobileNetV2" in err and "--weights FILE" in err


def test_application_weights_random_seeded_from_a_file_or_refused_briefly(run_cli, tmp_path, monkeypatch) -> None:
    """Random weights and layer names are the same on every build, in one process too (a resumed run or
    a shard finds its model again, a notebook the same network); a weights file is recorded by its absolute path; another model's weights get a short message."""
    from filtag_kg.errors import UserError
    from filtag_kg.models import load_application, model_hash

    first, second = (load_application("MobileNetV2", "none").model for _ in range(2))
    assert all(np.array_equal(a, b) for a, b in zip(first.get_weights(), second.get_weights()))
    assert [layer.name for layer in first.layers] == [layer.name for layer in second.layers]
    assert model_hash(first) == model_hash(second)  # auto-named layers got '_1' the second time
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    other.save_weights(tmp_path / "other.weights.h5")
    monkeypatch.chdir(tmp_path)  # given relative, named (and recorded) absolute
    with pytest.raises(UserError, match=f"could not build MobileNetV2 with weights {tmp_path}/other.weights.h5: ") as error:
        load_application("MobileNetV2", "other.weights.h5")
    assert len(str(error.value)) < 500
    code, _, err = run_cli("collect", "--heldout", tmp_path, "--out", tmp_path / "o")
    assert code == 2 and f"--heldout {tmp_path}: the embedded default data set holds out its own images" in err


def test_negative_seed_and_unusable_cache_folder_are_named(run_cli, tmp_path, monkeypatch) -> None:
    """A negative --seed ended in numpy's traceback; a cache folder that is a file in the OSError's
    'File exists' without saying which folder or how to move it."""
    from filtag_kg.data import stratified_split
    from filtag_kg.errors import UserError

    code, _, err = run_cli("collect", "--seed", "-1", "--out", tmp_path / "o")
    assert code == 2 and "'--seed': -1 is not in the range x>=0" in err
    for seed in (-1, 1.5):
        with pytest.raises(UserError, match=f"the split's seed must be a non-negative whole number, got {seed}"):
            stratified_split(np.zeros(4, np.int64), 0.5, seed)
    (tmp_path / "cache").write_text("")
    monkeypatch.setenv("FILTAG_KG_CACHE", str(tmp_path / "cache"))
    code, _, err = run_cli("collect", "--out", tmp_path / "o")
    assert code == 2 and f"cannot use {tmp_path / 'cache'} as the filtag-kg cache folder" in err
    assert "set FILTAG_KG_CACHE to another folder" in err and not (tmp_path / "o").exists()


def test_weights_of_a_model_with_its_own_and_a_tag_folder_as_out_are_refused(run_cli, default_model, tmp_path,
                                                                           cli_ok) -> None:
    """--weights none with the default CNN or a model file was ignored (the trained weights were
    used); collect --out into a tag set's folder said 'no statistics here'."""
    model_file = tmp_path / "m.keras"
    default_model.model.save(model_file)
    for model in ("default", str(model_file)):
        code, _, err = run_cli("collect", "--model", model, "--weights", "none", "--out", tmp_path / "o")
        assert code == 2 and "--weights none: only keras.applications models take weights; the model" in err
    assert not (tmp_path / "o").exists()
    import filtag_kg

    stats = ActivationStats.empty(["conv5"], default_model.classes, {"conv5": 64},
                                  {"model": {"name": "default-cnn", "family": "default-cnn"}})
    stats.counts[:] = 1
    filtag_kg.tag(stats).save(tmp_path / "tags")
    code, _, err = run_cli("collect", "--out", tmp_path / "tags", "--layer", "conv5")
    assert code == 2 and "tags holds a manifest.json but no statistics (arrays.npz): a tag set" in err
    from PIL import Image

    Image.new("L", (28, 28)).save(tmp_path / "x.png")
    code, _, err = run_cli("explain", "--tags", tmp_path / "tags", "--weights", "none", tmp_path / "x.png")
    assert code == 2 and "--weights none: only keras.applications models take weights" in err


def test_split_options_with_a_heldout_folder_are_refused(run_cli, tmp_path) -> None:
    """With --heldout, --fraction and --seed were ignored: all of --data went to training."""
    (tmp_path / "held" / "cat").mkdir(parents=True)
    code, _, err = run_cli("collect", "--data", tmp_path, "--heldout", tmp_path / "held", "--fraction", "0.5",
                           "--out", tmp_path / "o")
    assert code == 2 and f"--fraction split --data into training and held-out images, but --heldout {tmp_path / 'held'}" in err
    code, _, err = run_cli("collect", "--data", tmp_path, "--heldout", tmp_path / "held", "--seed", "0", "--fraction",
                           "0.8", "--out", tmp_path / "o")
    assert code == 2 and "leave out --fraction and --seed" in err and not (tmp_path / "o").exists()


def test_tag_refuses_an_unfinished_collection_and_warns_of_a_shard(run_cli, tmp_path) -> None:
    """`tag` checks a checkpoint as the library does (one check, in filtag_kg.tag), and said nothing
    when given the statistics of one shard, before `merge`."""
    stats = ActivationStats.empty(["l1"], ["cat", "dog"], {"l1": 3})
    stats.counts[:] = 1
    stats.manifest.update(complete=False, progress={"split": "train", "position": 2})
    stats.save(tmp_path / "partial")
    code, _, err = run_cli("tag", tmp_path / "partial", "--out", tmp_path / "tags")
    assert code == 2 and f"the statistics in {tmp_path / 'partial'} are an unfinished collection" in err
    assert "finish them by resuming the collection" in err and not (tmp_path / "tags").exists()
    stats.manifest.update(complete=True, progress=None, shard=[0, 2])
    stats.save(tmp_path / "s0")
    code, out, err = run_cli("tag", tmp_path / "s0", "--no-plots", "--out", tmp_path / "tags")
    assert code == 0 and "2 tags (k-best 1)" in out
    assert f"warning: the statistics in {tmp_path / 's0'} are those of shard 0 of 2 only (collect --shard 0/2)" in err
    assert "merge the 2 shards first" in err


def write_pngs(root, per_class: dict[str, int], size: int = 28) -> None:
    """Class folders of random grayscale PNGs (the default CNN's input size)."""
    from PIL import Image

    rng = np.random.default_rng(7)
    for name, count in per_class.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for j in range(count):
            Image.fromarray(rng.integers(0, 255, size=(size, size), dtype=np.uint8)).save(root / name / f"{j}.png")


def test_shards_of_one_folder_spelled_two_ways_merge(run_cli, default_model, tmp_path, cli_ok, monkeypatch) -> None:
    """The folder is one data set whether given relative, absolute or with a trailing slash: shards
    collected from two working directories were refused by merge ('their data set differs')."""
    write_pngs(tmp_path / "imgs", {"cat": 3, "dog": 3})
    monkeypatch.chdir(tmp_path)
    cli_ok("collect", "--data", "imgs", "--fraction", "1", "--shard", "0/2", "-l", "conv5", "--out", "s0")
    monkeypatch.chdir(tmp_path / "imgs")
    cli_ok("collect", "--data", f"{tmp_path}/imgs/", "--fraction", "1", "--shard", "1/2", "-l", "conv5",
           "--out", tmp_path / "s1")
    assert "merged 2 shards: 6 images" in cli_ok("merge", tmp_path / "s0", tmp_path / "s1", "-o", tmp_path / "m")
    merged = ActivationStats.load(tmp_path / "m")
    assert merged.manifest["dataset"]["root"] == str(tmp_path / "imgs") and merged.manifest["dataset"]["name"] == "imgs"


def test_tag_names_selections_as_the_tag_set_does(run_cli, tmp_path) -> None:
    """The summary line printed q=33.3333333 as 'q-quantile 33.3333' and q=0.00001 as '1e-05': names
    no --selection of the tag set matches."""
    stats = ActivationStats.empty(["l1"], ["cat", "dog"], {"l1": 3})
    stats.counts[:] = 1
    stats.save(tmp_path / "stats")
    code, out, err = run_cli("tag", tmp_path / "stats", "-q", "33.3333333", "-q", "0.00001", "-k", "2", "--no-plots",
                             "--out", tmp_path / "tags")
    assert code == 0, err
    assert "8 tags (k-best 2, q-quantile 33.3333333, q-quantile 0.00001)" in out
    assert {r.split(",")[-1] for r in (tmp_path / "tags" / "tags.csv").read_text().splitlines()[1:]} == {
        "33.3333333", "0.00001", "2"}


def test_tag_over_a_tag_set_is_refused_without_overwrite(run_cli, tmp_path) -> None:
    """`tag --out DIR` over an earlier tag set replaced it without a word, as collect and merge never do
    with finished work: it is refused unless --overwrite, which replaces it and says so."""
    stats = ActivationStats.empty(["l1"], ["cat", "dog"], {"l1": 3})
    stats.counts[:] = 1
    stats.save(tmp_path / "stats")
    assert run_cli("tag", tmp_path / "stats", "-k", "2", "--no-plots", "--out", tmp_path / "tags")[0] == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "tags").iterdir()}
    code, out, err = run_cli("tag", tmp_path / "stats", "--no-plots", "--out", tmp_path / "tags")
    assert (code, out) == (2, "")
    assert (f"Error: --out {tmp_path / 'tags'} already holds a tag set (tags.csv, manifest.json); choose another "
            "folder, or pass --overwrite to replace it") in err
    assert {p.name: p.read_bytes() for p in (tmp_path / "tags").iterdir()} == before
    code, out, err = run_cli("tag", tmp_path / "stats", "--no-plots", "--out", tmp_path / "tags", "--overwrite")
    assert code == 0 and f"2 tags (k-best 1) -> {tmp_path / 'tags'} (the tag set that was there is replaced)" in out
    assert TagSet.load(tmp_path / "tags").selections == [("k-best", 1)]


def test_a_fraction_outside_0_1_is_named_before_the_model_loads(run_cli, tmp_path) -> None:
    """--fraction 0 or 1.5 was refused only after the model had loaded, by a message without the option."""
    for value in ("0", "1.5", "nan"):
        code, _, err = run_cli("collect", "--fraction", value, "--out", tmp_path / "o")
        assert code == 2 and "--fraction" in err and not (tmp_path / "o").exists(), (value, err)


@pytest.mark.parametrize("value, message", [
    ("0/0", "--shard 0/0: COUNT must be at least 1 (the number of shards), got 0"),
    ("3/2", "--shard 3/2: INDEX must be in 0 … 1 for COUNT 2 (shards are numbered from 0), got 3"),
    ("2/2", "--shard 2/2: INDEX must be in 0 … 1 for COUNT 2"),
    ("-1/2", "--shard -1/2: INDEX must be in 0 … 1 for COUNT 2 (shards are numbered from 0), got -1"),
    ("1/1", "--shard 1/1: INDEX must be 0 for COUNT 1 (shards are numbered from 0), got 1"),
    ("0/-3", "--shard 0/-3: COUNT must be at least 1"),
    ("a/b", "--shard must look like INDEX/COUNT, e.g. 0/4 (the first of 4 shards); got 'a/b'"),
    ("1/2/3", "--shard must look like INDEX/COUNT, e.g. 0/4 (the first of 4 shards); got '1/2/3'"),
    # a full-width digit, which int() took
    ("\uff10/2", "--shard must look like INDEX/COUNT, e.g. 0/4 (the first of 4 shards); got '\uff10/2'"),
])
def test_a_bad_shard_is_named_with_its_bounds_before_the_model_loads(run_cli, tmp_path, monkeypatch, value,
                                                                     message) -> None:
    """--shard 0/0 was told 'INDEX must be in 0..COUNT-1' (its COUNT is what is wrong), 3/2 got no bounds
    of its own, and every bad --shard was refused only after the model was loaded (or trained)."""
    import filtag_kg.cli.core as core

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before --shard was checked")

    monkeypatch.setattr(core, "load_model_option", no_model)
    code, out, err = run_cli("collect", "--shard", value, "--out", tmp_path / "o")
    assert (code, out) == (2, "") and f"Error: {message}" in err, err
    assert not (tmp_path / "o").exists()
