"""A researcher's own folder and model through the CLI, end to end: what the hand-run round of
2026-12-03 (VGG16, MobileNetV2 and ResNet50 with random weights on a generated ImageNet-layout folder)
found in the workflow, with a tiny model and a dozen images."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from filtag_kg import collection as collect_module
from filtag_kg.records import TagSet


@pytest.fixture
def own_data(tmp_path: Path) -> tuple[Path, Path]:
    """A .keras model of 3 classes and a folder of 3 class folders × 4 PNGs of varied sizes."""
    from PIL import Image

    keras.utils.set_random_seed(3)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="c1")(inputs)
    x = keras.layers.DepthwiseConv2D(3, name="dw")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x), name="own")
    model_file = tmp_path / "own.keras"
    model.save(model_file)
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for name in ("ant", "bee", "cow"):
        (root / name).mkdir(parents=True)
        for j in range(4):
            size = tuple(int(s) for s in rng.integers(12, 40, 2))
            Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(root / name / f"{j}.png")
    return model_file, root


def test_a_refused_resume_names_the_options_the_checkpoint_was_collected_with(
        own_data, tmp_path, run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """Resuming a collection interrupted with another --batch-size (or --shard, --seed) was refused as
    "not the same: batch size": the value to resume with was nowhere to be seen."""
    model_file, root = own_data
    out = tmp_path / "stats"
    real_make_step = collect_module.make_step
    monkeypatch.setattr(collect_module, "make_step", _interrupted_at(3))
    code, _, err = run_cli("collect", "--model", model_file, "--data", root, "--out", out, "-b", "2",
                           "--checkpoint-every", "1", "--shard", "0/1", "--seed", "4")
    assert code == 130 and "interrupted" in err
    monkeypatch.setattr(collect_module, "make_step", real_make_step)

    code, _, err = run_cli("collect", "--model", model_file, "--data", root, "--out", out)
    assert code == 2
    assert "split (fraction, seed, held-out), batch size, shard)" in err  # the data set too: another split
    assert "it was collected with --fraction 0.8 --seed 4, --batch-size 2, --shard 0/1; resume with" in err
    code, _, err = run_cli("collect", "--model", model_file, "--data", root, "--out", out, "-b", "2",
                           "--shard", "0/1", "--seed", "4")
    assert code == 0, err


def test_evaluate_and_explain_find_the_statistics_the_tags_were_made_from(own_data, tmp_path, run_cli, cli_ok) -> None:
    """`tag STATS --out TAGS` then `evaluate --tags TAGS` looked only for a 'stats' folder beside the tags
    (the demo's layout) and was refused for any other name: the tag set now records its statistics folder."""
    model_file, root = own_data
    cli_ok("collect", "--model", model_file, "--data", root, "--out", tmp_path / "st_own", "-b", "4")
    cli_ok("tag", tmp_path / "st_own", "-k", "1", "--no-plots", "--out", tmp_path / "work" / "tags_own")
    tags_dir = tmp_path / "work" / "tags_own"
    assert TagSet.load(tags_dir).manifest["statistics"] == str(tmp_path / "st_own")

    out = cli_ok("evaluate", "--tags", tags_dir, "--no-store", "-o", tmp_path / "eval")
    assert "held-out images evaluated" in out
    held = cli_ok("explain", "--tags", tags_dir, "--heldout", "ant/3.png")
    assert held.startswith("ant/3.png: predicted ")

    (tmp_path / "st_own").rename(tmp_path / "moved")  # gone: the message names the folders tried
    code, _, err = run_cli("evaluate", "--tags", tags_dir, "--no-store", "-o", tmp_path / "eval2")
    assert code == 2 and "no statistics in " + str(tmp_path / "work" / "stats") in err
    assert f"the tags were made from {tmp_path / 'st_own'}, which holds none now; pass --stats" in err


def test_the_default_batch_size_follows_the_input_size(own_data, tmp_path, cli_ok) -> None:
    """Batches of 64 were the default for every model: VGG16 at 224×224 peaked at 5.0 GB (2.1 GB at 16,
    no slower on CPU) and a 600×600 input would need seven times that. Small inputs keep 64."""
    from filtag_kg.collection import default_batch_size
    from filtag_kg.data import InputSpec

    assert [default_batch_size(InputSpec(s, s, 3)) for s in (28, 32, 128, 224, 299, 600, 2000)] == [64, 64, 49, 16, 8, 2, 1]
    _, root = own_data
    inputs = keras.Input((240, 240, 3))  # a large input: 16·224² // 240² = 13 images a batch
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3, strides=4, name="c")(inputs))
    keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x)).save(tmp_path / "large.keras")
    cli_ok("collect", "--model", tmp_path / "large.keras", "--data", root, "--out", tmp_path / "st")
    from filtag_kg.records import ActivationStats

    assert ActivationStats.load(tmp_path / "st").manifest["batch_size"] == 13


def test_small_probabilities_are_not_shown_as_zero_percent() -> None:
    """An untrained VGG16 over ImageNet predicts at ~0.1 %: explanations said 'predicted bassinet (0%)'."""
    from filtag_kg.explain import Explanation, percent

    assert [percent(p) for p in (0.0, 0.0012, 0.00004, 0.004, 0.01, 0.8)] == ["0%", "0.1%", "<0.01%", "0.4%", "1%", "80%"]
    e = Explanation(image_id="a.jpg", method="k-best", parameter=1, true_class=None, predicted=[(0, 0.0012)],
                    active={}, layer_counts={}, counts=np.zeros(2, np.int64))
    assert e.text(["bassinet", "tench"]).startswith("a.jpg: predicted bassinet (0.1%) — ")


def test_an_unquoted_selection_says_to_quote_it(own_data, tmp_path, run_cli, cli_ok) -> None:
    """`explain x.png -s k-best 5` (unquoted) was refused as "expected e.g. 'k-best 5'", the form typed."""
    model_file, root = own_data
    cli_ok("collect", "--model", model_file, "--data", root, "--out", tmp_path / "st")
    cli_ok("tag", tmp_path / "st", "--no-plots", "--out", tmp_path / "tags")
    code, _, err = run_cli("explain", root / "ant" / "0.png", "--tags", tmp_path / "tags", "-s", "k-best", "1")
    assert code == 2 and "--selection 'k-best' lacks its k: quote the selection with its number, e.g. " \
                          "-s 'k-best 5' (or -s k=5)" in err


def test_evaluation_memory_does_not_grow_with_layers_times_images_times_classes(monkeypatch: pytest.MonkeyPatch) -> None:
    """evaluate held every layer's [images, classes] tag counts (and [images, filters] filter orders) at
    once: 5,000 held-out images of MobileNetV2 over ImageNet's 1,000 classes took 2.8 GB and 24 s, 50,000
    would not fit in 23 GB. Now images go in chunks and layers one by one: the same Hits@n, bounded memory."""
    import tracemalloc

    import scipy.sparse
    import scipy.stats  # noqa: F401  (imported before, not measured)

    import filtag_kg
    from filtag_kg import explain as explain_module
    from filtag_kg.records import ActivationStats, HeldOut

    rng = np.random.default_rng(0)
    layers, n_classes, n_images = [f"l{j}" for j in range(8)], 1000, 5000
    stats = ActivationStats.empty(layers, [f"c{c}" for c in range(n_classes)], {m: 16 for m in layers})
    for m in layers:
        stats.sums[m] = rng.random((n_classes, 16))
    stats.counts[:] = 1
    tags = filtag_kg.tag(stats, k=[1, 3], q=[25])
    labels = rng.integers(0, n_classes, n_images)
    top = np.stack([labels, *(rng.integers(0, n_classes, n_images) for _ in range(4))], axis=1)
    heldout = HeldOut(image_ids=[str(i) for i in range(n_images)], positions=np.arange(n_images), labels=labels,
                      top_classes=top, top_probs=np.full((n_images, 5), 0.2),
                      vectors={m: rng.random((n_images, 16), dtype=np.float32) for m in layers})
    tracemalloc.start()
    result = explain_module.evaluate(tags, heldout)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 120e6, f"evaluate peaked at {peak / 1e6:.0f} MB"  # 62 MB; before: 346 MB

    # the same numbers as image by image through explain(): the chunks change nothing
    some = np.arange(0, n_images, 97)
    small = HeldOut(image_ids=[str(i) for i in some], positions=some, labels=labels[some], top_classes=top[some],
                    top_probs=heldout.top_probs[some], vectors={m: v[some] for m, v in heldout.vectors.items()})
    whole = explain_module.evaluate(tags, small)
    monkeypatch.setattr(explain_module, "EVALUATION_CHUNK", 7)
    chunked = explain_module.evaluate(tags, small)
    for key, curve in whole.hits.items():
        np.testing.assert_array_equal(chunked.hits[key], curve)
        np.testing.assert_array_equal(chunked.per_class[key], whole.per_class[key])
    explained = explain_module.explain(tags, small, [("k-best", 3)])
    ranks = [next((r for c, _, r in e.ranking() if c == e.true_class), None) for e in explained]
    hits1 = np.mean([r == 1 for r in ranks])
    assert whole.hits[("k-best", 3, "all", "true")][0] == hits1
    assert result.n_images == n_images


def test_checkpoints_take_at_most_a_tenth_of_the_run(own_data, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each checkpoint saves every held-out record so far: with MobileNetV2's 17,056 filters (68 KB an
    image) one of 20,000 records took 5 s to write and as long to join, more than the 50 batches between
    two checkpoints. A checkpoint now waits until ten times the last one's duration has passed; Ctrl-C
    still saves at once."""
    import time

    import filtag_kg
    from filtag_kg.data import image_folder
    from filtag_kg.models import load_model

    model_file, root = own_data
    real_checkpoint, saved = collect_module._checkpoint, []

    def slow_checkpoint(*args, **kwargs) -> None:
        time.sleep(0.3)  # as a checkpoint of many records
        saved.append(args[3])
        real_checkpoint(*args, **kwargs)

    monkeypatch.setattr(collect_module, "_checkpoint", slow_checkpoint)
    filtag_kg.collect(load_model(str(model_file)), image_folder(root, fraction=0.5), batch_size=1, checkpoint_every=1,
                      output=tmp_path / "stats", progress=False)
    assert saved == ["train", "heldout"]  # the first of each split; was one per batch: 12

    saved.clear()
    monkeypatch.setattr(collect_module, "make_step", _interrupted_at(4))
    with pytest.raises(KeyboardInterrupt):
        filtag_kg.collect(load_model(str(model_file)), image_folder(root, fraction=0.5), batch_size=1,
                          checkpoint_every=1, output=tmp_path / "again", progress=False)
    assert saved == ["train", "train"]  # the first, and the batches since at the interrupt
    assert collect_module.ActivationStats.load(tmp_path / "again").manifest["progress"]["position"] == 3


def _interrupted_at(n: int):
    """A `make_step` whose step raises KeyboardInterrupt on its n-th batch, as Ctrl-C would."""
    real_make_step = collect_module.make_step

    def make(*args, **kwargs):
        step, calls = real_make_step(*args, **kwargs), []

        def failing(images):
            calls.append(1)
            if len(calls) == n:
                raise KeyboardInterrupt
            return step(images)

        return failing

    return make


def test_merging_shards_of_other_layers_names_the_layers_only_one_has() -> None:
    """A shard collected with `--layer 'block_1*'` beside one of all 52 layers of MobileNetV2: merge
    listed both lists in full (76 names) for the reader to compare."""
    from filtag_kg.errors import UserError
    from filtag_kg.records import ActivationStats

    def shard(index: int, layers: list[str]) -> ActivationStats:
        stats = ActivationStats.empty(layers, ["a", "b"], {m: 2 for m in layers},
                                      {"shard": [index, 2], "complete": True, "model": {"hash": "h"}})
        stats.counts[:] = 1
        return stats

    every = [f"block_{j}_project" for j in range(1, 17)]
    with pytest.raises(UserError) as refused:
        ActivationStats.merge_shards({"s0": shard(0, every), "s1": shard(1, ["block_1_project", "block_10_project"])})
    assert str(refused.value) == (
        "s1 and s0 are not shards of one collection: their layers differ (2 vs 16 layers, only the second has "
        "block_2_project, block_3_project, block_4_project, block_5_project … (10 more))")
