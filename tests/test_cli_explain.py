"""The demo end to end, then explain, evaluate and errors on what it made (one slow run, shared)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

from filtag_kg.data import animal_shape, load_animal_shape_arrays
from filtag_kg.records import ActivationStats, TagSet


def test_demo_then_explain_evaluate_errors(run_cli, default_model, tmp_path, cli_ok) -> None:
    demo = tmp_path / "demo"
    store = tmp_path / "store"
    out = cli_ok("demo", "--out", demo, "--store", store)
    assert "Layer conv5 (64 filters)" in out and "  zebra " in out
    assert "Hits@n against the network's prediction (2,000 held-out images" in out
    assert "Error analysis (tag selection k-best 5)" in out and "most confused class pairs" in out
    assert "WordNet coarse groups" in out
    assert "ungulate" in out or "equine" in out or "placental" in out  # real hypernyms of the animals
    with (demo / "evaluation" / "hits.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 * 2 * 2  # selections x scopes x targets
    for name in ("evaluation-hits.png", "evaluation-hits.svg", "evaluation-per-class.png"):
        assert (demo / "evaluation" / name).stat().st_size > 1000
    # a second demo collects anew (a new run): it replaces its first run, so its report is of one run
    again = cli_ok("demo", "--out", demo, "--store", store)
    assert "(the previous demo run https://w3id.org/filtag-kg/id/run/" in again and "is replaced)" in again
    assert again.count("most confused class pairs") == 1
    assert len(cli_ok("query", "runs", "--store", store, "--format", "csv").strip().splitlines()) == 1 + 1

    stats = ActivationStats.load(demo / "stats")
    wrong = [i for i, (p, t) in enumerate(zip(stats.heldout.predictions, stats.heldout.labels)) if p != t]
    image_id = stats.heldout.image_ids[wrong[0]]
    out = cli_ok("explain", "--tags", demo / "tags", "--heldout", image_id, "-s", "k-best 5",
                 "--json", tmp_path / "e.json")
    truth = stats.classes[stats.heldout.labels[wrong[0]]]
    assert f"{image_id}: predicted " in out and f"; true {truth} — active filters tagged (k-best 5):" in out
    saved = json.loads((tmp_path / "e.json").read_text())
    assert saved[0]["image"] == image_id and saved[0]["true"] == truth

    # an image file in a folder named after its class: same numbers as the held-out record
    images, _ = load_animal_shape_arrays()
    held = animal_shape().split("heldout")
    (tmp_path / truth).mkdir()
    Image.fromarray(images[int(image_id)]).save(tmp_path / truth / "x.png")
    out_file = cli_ok("explain", tmp_path / truth / "x.png", "--tags", demo / "tags", "-s", "k-best 5")
    assert out_file.split(": ", 1)[1] == out.split(": ", 1)[1].splitlines()[0] + "\n"

    out = cli_ok("evaluate", "--tags", demo / "tags", "--out", tmp_path / "ev", "--store", store,
                 "--max-n", "5")
    assert "k-best 5" in out and (tmp_path / "ev" / "per-class.csv").is_file()
    out = cli_ok("errors", "--store", store, "--selection", "q-quantile 10")
    assert "Error analysis (tag selection q-quantile 10)" in out and "misclassified images" in out

    code, _, err = run_cli("explain", "--tags", demo / "tags", "--heldout", "no-such-id")
    assert code == 2 and "no held-out image with id no-such-id" in err
    code, _, err = run_cli("explain", "--tags", demo / "tags", "--heldout", image_id, "-s", "k-best 7")
    assert code == 2 and "'k-best 7' is not in the tag set" in err
    code, _, err = run_cli("evaluate", "--tags", tmp_path / "nothing")
    assert code == 2 and "no tag set in" in err
    cli_ok("collect", "--out", tmp_path / "conv1", "--layer", "conv1")
    cli_ok("tag", tmp_path / "conv1", "--out", tmp_path / "conv1-tags")
    code, _, err = run_cli("evaluate", "--tags", tmp_path / "conv1-tags", "--stats", tmp_path / "conv1-tags", "--no-store")
    assert code == 2 and "conv1-tags: no statistics here" in err
    code, _, err = run_cli("evaluate", "--tags", demo / "tags", "--stats", tmp_path / "conv1", "--no-store",
                           "--out", tmp_path / "ev1")
    assert code == 0 and "lacks the tagged layer(s) conv2, conv3, conv4, conv5; explaining with conv1" in err
    code, _, err = run_cli("evaluate", "--tags", demo / "tags", "--stats", tmp_path / "conv1", "--store", tmp_path / "ev1" / "hits.csv")
    assert code == 2 and "hits.csv" in err and "evaluated for" not in _  # the store fails before the work
    renamed = TagSet.load(tmp_path / "conv1-tags")
    renamed.classes = ["grizzly", *renamed.classes[1:]]
    renamed.save(tmp_path / "renamed-tags")
    code, _, err = run_cli("evaluate", "--tags", tmp_path / "renamed-tags", "--stats", tmp_path / "conv1", "--no-store")
    assert code == 2 and "are of other classes than the tags in" in err and "(class 0: 'bear' vs 'grizzly')" in err
    assert TagSet.load(demo / "tags").selections[0] == ("k-best", 1)
    assert sorted(p.name for p in (demo / "tags").glob("z-*.png"))[-1] == "z-004-conv5.png"
    np.testing.assert_array_equal(stats.heldout.labels, held.labels)


def test_explain_heldout_with_statistics_of_some_layers_and_repeats(run_cli, tmp_path) -> None:
    """The CLI warned 'explaining with l2' and then failed on l1 (its tags); an id or selection given
    twice was explained twice; a missing default stats folder was called one without held-out records;
    --model or --weights with --heldout only were ignored without a word."""
    import filtag_kg
    from filtag_kg.records import HeldOut

    stats = ActivationStats.empty(["l1", "l2"], ["cat", "dog"], {"l1": 3, "l2": 2})
    stats.counts[:] = 1
    stats.sums["l1"], stats.sums["l2"] = np.array([[0.9, 0.1, 0.2], [0.1, 0.2, 0.8]]), np.array([[0.7, 0.1], [0.2, 0.6]])
    filtag_kg.tag(stats, k=1).save(tmp_path / "tags")
    only_l2 = ActivationStats.empty(["l2"], ["cat", "dog"], {"l2": 2})
    only_l2.counts[:] = 1
    only_l2.heldout = HeldOut(["i0"], np.arange(1), np.array([1]), np.array([[1, 0, -1, -1, -1]]),
                              np.array([[0.8, 0.2, 0, 0, 0]], np.float32), {"l2": np.array([[0.1, 0.9]], np.float32)})
    only_l2.save(tmp_path / "l2")
    code, out, err = run_cli("explain", "--tags", tmp_path / "tags", "--stats", tmp_path / "l2", "--heldout", "i0",
                             "--heldout", "i0", "-s", "k 1", "-s", "k-best 1")
    assert code == 0, err
    assert "lacks the tagged layer(s) l1; explaining with l2" in err
    assert out == "i0: predicted dog (80%); true dog — active filters tagged (k-best 1): dog 1\n"
    code, _, err = run_cli("explain", "--tags", tmp_path / "tags", "--heldout", "i0")
    assert code == 2 and f"no statistics in {tmp_path / 'stats'} (the default: 'stats' beside the tags)" in err
    for option in ("--model", "--weights"):  # ignored: the records hold the collection's own predictions
        code, _, err = run_cli("explain", "--tags", tmp_path / "tags", "--stats", tmp_path / "l2", "--heldout", "i0",
                               option, "other.keras")
        assert code == 2 and f"Error: {option} applies to image files; --heldout explains the records" in err, err


def _one_image_tag_set(folder) -> None:
    """Statistics of two classes with one held-out image (a dog), in folder/stats, and their k=1 tags
    in folder/tags."""
    import filtag_kg
    from filtag_kg.records import HeldOut

    stats = ActivationStats.empty(["l1"], ["cat", "dog"], {"l1": 2})
    stats.counts[:] = 1
    stats.sums["l1"] = np.array([[0.7, 0.1], [0.2, 0.6]])
    stats.heldout = HeldOut(["i0"], np.arange(1), np.array([1]), np.array([[1, 0, -1, -1, -1]]),
                            np.array([[0.8, 0.2, 0, 0, 0]], np.float32), {"l1": np.array([[0.1, 0.9]], np.float32)})
    stats.save(folder / "stats")
    filtag_kg.tag(stats, k=1).save(folder / "tags")


def test_explain_checks_its_json_file_before_the_work(run_cli, tmp_path) -> None:
    """`explain --json PATH` printed the explanations and only then failed (exit 1) on PATH's missing folder."""
    _one_image_tag_set(tmp_path)
    missing = tmp_path / "missing" / "e.json"
    code, out, err = run_cli("explain", "--tags", tmp_path / "tags", "--heldout", "i0", "--json", missing)
    assert (code, out) == (2, "") and f"Error: --json {missing}: the folder {missing.parent} does not exist" in err
    (tmp_path / "file").write_text("")
    code, out, err = run_cli("explain", "--tags", tmp_path / "tags", "--heldout", "i0",
                             "--json", tmp_path / "file" / "e.json")
    assert (code, out) == (2, "") and f"e.json: {tmp_path / 'file'} is not a folder" in err
    code, out, err = run_cli("explain", "--tags", tmp_path / "tags", "--heldout", "i0", "--json", tmp_path / "e.json")
    assert code == 0, err
    assert out.startswith("i0: predicted dog") and json.loads((tmp_path / "e.json").read_text())[0]["image"] == "i0"


def test_errors_takes_the_selections_explain_takes_and_stats_given_are_named(run_cli, tmp_path) -> None:
    """`errors -s 'k 1'` (or 'k=1', 'q 10.0') found no explanations though explain and evaluate take these
    spellings; an empty --stats folder was reported as the missing default ('pass --stats', which was given)."""
    import filtag_kg
    from filtag_kg.kg.explanations import load_explanations
    from filtag_kg.records import HeldOut

    stats = ActivationStats.empty(["l1"], ["cat", "dog"], {"l1": 2}, {"dataset": {"name": "toy", "label_space": "toy"}})
    stats.counts[:] = 1
    stats.sums["l1"] = np.array([[0.7, 0.1], [0.2, 0.6]])
    stats.heldout = HeldOut(["i0"], np.arange(1), np.array([1]), np.array([[0, 1, -1, -1, -1]]),  # a dog taken for a cat
                            np.array([[0.8, 0.2, 0, 0, 0]], np.float32), {"l1": np.array([[0.1, 0.9]], np.float32)})
    tags = filtag_kg.tag(stats, k=1, q=50)
    load_explanations(tags, stats, tmp_path / "store")
    code, expected, err = run_cli("errors", "--store", tmp_path / "store", "-s", "k-best 1")
    assert code == 0, err
    assert "dog -> cat: 1 errors, 0 shared filters" in expected
    for spelling in ("k 1", "k=1", " k-best 1 "):
        assert run_cli("errors", "--store", tmp_path / "store", "-s", spelling)[1] == expected
    code, out, err = run_cli("errors", "--store", tmp_path / "store", "-s", "q 50.0")
    assert code == 0 and out.startswith("Error analysis (tag selection q-quantile 50):"), err
    code, _, err = run_cli("errors", "--store", tmp_path / "store", "-s", "k-best one")
    assert code == 2 and "--selection 'k-best one': expected e.g. 'k-best 5' or 'q-quantile 10'" in err

    stats.save(tmp_path / "stats")
    tags.save(tmp_path / "tags")
    (tmp_path / "empty").mkdir()
    for command in (("explain", "--heldout", "i0"), ("evaluate", "--no-store")):
        code, out, err = run_cli(*command, "--tags", tmp_path / "tags", "--stats", tmp_path / "empty")
        assert (code, out) == (2, "") and f"Error: {tmp_path / 'empty'}: no statistics here (expected" in err, err


def two_class_tags(folder: Path, n: int) -> Path:
    """A tag set (k=1) of one 3-filter layer and two classes, with `n` held-out images whose prediction
    is their class, and its statistics beside it, in `folder`; returns the tag set's folder."""
    import filtag_kg
    from filtag_kg.records import HeldOut

    rng = np.random.default_rng(0)
    stats = ActivationStats.empty(["l1"], ["cat", "dog"], {"l1": 3})
    stats.counts[:] = 1
    stats.sums["l1"] = np.array([[0.7, 0.1, 0.3], [0.2, 0.6, 0.1]])
    labels = rng.integers(0, 2, n)
    stats.heldout = HeldOut([str(i) for i in range(n)], np.arange(n), labels, np.stack([labels, 1 - labels], 1),
                            np.tile(np.float32([0.9, 0.1]), (n, 1)), {"l1": rng.random((n, 3), np.float32)})
    stats.save(folder / "stats")
    filtag_kg.tag(stats, k=1).save(folder / "tags")
    return folder / "tags"


def test_evaluate_counts_images_with_thousands_separators(run_cli, tmp_path) -> None:
    """The table said '1,200 held-out images' and the line after it '1200 held-out images evaluated'."""
    two_class_tags(tmp_path, 1200)
    code, out, err = run_cli("evaluate", "--tags", tmp_path / "tags", "--no-store", "--out", tmp_path / "ev")
    assert code == 0, err
    assert "(1,200 held-out images, accuracy 100.0%)" in out and "\n1,200 held-out images evaluated for 1 selections" in out


def test_held_out_images_of_another_split_of_the_tags_data_set_are_warned_of(run_cli, tmp_path) -> None:
    """`evaluate --stats` of a collection of the same data set with another --seed evaluated without a word
    on held-out images that were among the images the tags were made from (Hits@n optimistic)."""
    import filtag_kg
    from filtag_kg.records import HeldOut

    def stats_of(seed: int) -> ActivationStats:
        stats = ActivationStats.empty(["l1"], ["cat", "dog"], {"l1": 2}, {
            "dataset": {"name": "toy", "label_space": "toy", "root": "/data/toy", "images_sha256": f"{seed}" * 64},
            "split": {"collected": ["train", "heldout"], "fraction": 0.8, "seed": seed}})
        stats.counts[:] = 1
        stats.sums["l1"] = np.array([[0.7, 0.1], [0.2, 0.6]])
        stats.heldout = HeldOut(["i0"], np.arange(1), np.array([1]), np.array([[1, 0, -1, -1, -1]]),
                                np.array([[0.8, 0.2, 0, 0, 0]], np.float32), {"l1": np.array([[0.1, 0.9]], np.float32)})
        return stats

    stats_of(0).save(tmp_path / "stats")
    stats_of(1).save(tmp_path / "seed1")
    filtag_kg.tag(stats_of(0), k=1).save(tmp_path / "tags")
    code, _, err = run_cli("evaluate", "--tags", tmp_path / "tags", "--no-store", "--out", tmp_path / "ev")
    assert code == 0 and "warning" not in err, err
    code, _, err = run_cli("evaluate", "--tags", tmp_path / "tags", "--stats", tmp_path / "seed1", "--no-store",
                           "--out", tmp_path / "ev")
    assert code == 0 and (f"warning: the held-out images in {tmp_path / 'seed1'} are split from the data set of the "
                          f"tags in {tmp_path / 'tags'} with seed 1 and fraction 0.8, the tags' z with seed 0 and "
                          "fraction 0.8: some held-out images are images the tags were made from") in err, err


def tiny_tag_set(cli_ok, folder) -> None:
    """A saved model of 12×12 RGB images, a folder of two classes (alpha, beta) with three PNGs each,
    the statistics of all of them in folder/stats and their k=1 tags in folder/tags."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, activation="relu", name="c")(inputs))
    keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x)).save(folder / "m.keras")
    rng = np.random.default_rng(0)
    for name in ("alpha", "beta"):
        (folder / "data" / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(folder / "data" / name / f"{i}.png")
    cli_ok("collect", "--model", folder / "m.keras", "--data", folder / "data", "--fraction", "1", "--out",
           folder / "stats")
    cli_ok("tag", folder / "stats", "--out", folder / "tags", "--no-plots")


def test_explain_names_image_files_it_cannot_decode_and_fails_after_the_others(run_cli, cli_ok, tmp_path) -> None:
    """`explain good.png empty.png` explained good.png and exited 0 (a warning 'skipped in split heldout'
    aside), and with undecodable files only said 'none of the images could be decoded', naming none. The
    collection's warning of "unreadable image(s) skipped in split 'heldout'" named a split of a data set
    the user never made."""
    tiny_tag_set(cli_ok, tmp_path)
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    good = tmp_path / "data" / "beta" / "0.png"
    code, out, err = run_cli("explain", good, tmp_path / "empty.png", "--tags", tmp_path / "tags",
                             "--json", tmp_path / "e.json")
    assert code == 2 and out.startswith(f"{good}: predicted ") and "; true beta" in out
    assert f"Error: 1 of the 2 image files could not be decoded (damaged, empty, or not JPEG or PNG inside): " \
           f"{tmp_path / 'empty.png'}" in err
    assert "warning: 1 unreadable image(s) skipped: " in err and "split" not in err, err
    assert [e["image"] for e in json.loads((tmp_path / "e.json").read_text())] == [str(good)]
    code, out, err = run_cli("explain", tmp_path / "empty.png", tmp_path / "text.jpg", "--tags", tmp_path / "tags")
    assert (code, out) == (2, "")
    assert f"none of the image files could be decoded: {tmp_path / 'empty.png'}, {tmp_path / 'text.jpg'}" in err
    assert "split" not in err, err


def test_explaining_image_files_ignores_the_statistics_beside_the_tags(run_cli, cli_ok, tmp_path) -> None:
    """Image files need no statistics, but the default 'stats' beside the tags was read and checked:
    one of another model (a collection of another network into that folder) refused the explanation."""
    tiny_tag_set(cli_ok, tmp_path)
    other = ActivationStats.empty(["c"], ["alpha", "beta"], {"c": 4}, {"model": {"hash": "of-another-model"}})
    other.save(tmp_path / "stats")
    image = tmp_path / "data" / "alpha" / "1.png"
    code, out, err = run_cli("explain", image, "--tags", tmp_path / "tags")
    assert code == 0 and out.startswith(f"{image}: predicted ") and "; true alpha" in out, err
    code, _, err = run_cli("explain", image, "--tags", tmp_path / "tags", "--stats", tmp_path / "stats")  # given
    assert code == 2 and "are of another model (" in err and ") than the tags in " in err, err


def test_explain_with_a_model_of_other_classes_names_the_model_and_the_tags(run_cli, cli_ok, tmp_path) -> None:
    """`explain IMAGE --model M` with M scoring 3 classes and tags of 2 was refused as "the data set
    'images' has 2 classes but the model has 3 outputs": a data set the user never named."""
    import keras

    tiny_tag_set(cli_ok, tmp_path)
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, name="c")(inputs))
    keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x)).save(tmp_path / "three.keras")
    code, out, err = run_cli("explain", tmp_path / "data" / "alpha" / "1.png", "--tags", tmp_path / "tags",
                             "--model", tmp_path / "three.keras")
    assert (code, out) == (2, "")
    assert (f"Error: --model {tmp_path / 'three.keras'} has 3 outputs, but the tags in {tmp_path / 'tags'} are of 2 "
            "classes: explain with the model the tags were made with") in err and "'images'" not in err


def test_errors_takes_the_run_as_query_runs_lists_it(run_cli, cli_ok, tmp_path) -> None:
    """`errors --run` refused the run as copied from `query runs --format tsv` (<IRI>: 'not an IRI') and by
    its id; a run the store does not hold was called one without explanations."""
    import filtag_kg
    from filtag_kg.kg.explanations import load_explanations
    from filtag_kg.kg.export import run_iri
    from filtag_kg.records import HeldOut

    stats = ActivationStats.empty(["l1"], ["cat", "dog"], {"l1": 2}, {"dataset": {"name": "toy", "label_space": "toy"}})
    stats.counts[:] = 1
    stats.sums["l1"] = np.array([[0.7, 0.1], [0.2, 0.6]])
    stats.heldout = HeldOut(["i0"], np.arange(1), np.array([1]), np.array([[0, 1, -1, -1, -1]]),
                            np.array([[0.8, 0.2, 0, 0, 0]], np.float32), {"l1": np.array([[0.1, 0.9]], np.float32)})
    tags = filtag_kg.tag(stats, k=1)
    store = tmp_path / "store"
    load_explanations(tags, stats, store)
    iri = run_iri(tags)
    expected = cli_ok("errors", "--store", store, "-s", "k-best 1", "--run", iri)
    assert "dog -> cat: 1 errors" in expected
    copied = cli_ok("query", "runs", "--store", store, "--format", "tsv").splitlines()[1].split("\t")[0]
    assert copied == f"<{iri}>"
    for given in (copied, iri.rsplit("/", 1)[1], f"{iri}   "):
        assert cli_ok("errors", "--store", store, "-s", "k-best 1", "--run", given) == expected, given
    code, out, err = run_cli("errors", "--store", store, "-s", "k-best 1", "--run", iri[:-1])
    assert (code, out) == (2, "") and (f"Error: --run {iri[:-1]}: the store holds no such tagging run "
                                       f"(`filtag-kg query runs` lists them); runs with explanations: {iri}") in err


def test_evaluate_after_tag_overwrite_names_the_replaced_run_in_the_store(run_cli, cli_ok, tmp_path) -> None:
    """`tag --overwrite` then `evaluate` left the replaced tag set's run and explanations in the store
    unsaid: `errors` reported the old run beside the new. It stays (the store may hold its only copy),
    named with the way to drop it."""
    from filtag_kg.kg.export import run_iri
    from filtag_kg.records import HeldOut

    stats = ActivationStats.empty(["l1"], ["cat", "dog"], {"l1": 3}, {
        "dataset": {"name": "toy", "label_space": "toy"}, "created": "2026-12-01T00:00:00Z"})
    stats.counts[:] = 1
    stats.sums["l1"] = np.array([[0.7, 0.1, 0.3], [0.2, 0.6, 0.1]])
    stats.heldout = HeldOut(["i0"], np.arange(1), np.array([1]), np.array([[0, 1, -1, -1, -1]]),
                            np.array([[0.8, 0.2, 0, 0, 0]], np.float32), {"l1": np.array([[0.1, 0.9, 0.2]], np.float32)})
    stats.save(tmp_path / "stats")
    tags, store = tmp_path / "tags", tmp_path / "store"
    cli_ok("tag", tmp_path / "stats", "-k", "1", "--out", tags, "--no-plots")
    first = run_iri(TagSet.load(tags))
    assert "note:" not in cli_ok("evaluate", "--tags", tags, "--store", store)
    cli_ok("tag", tmp_path / "stats", "-k", "2", "--out", tags, "--overwrite", "--no-plots")
    out = cli_ok("evaluate", "--tags", tags, "--store", store)
    assert (f"note: the store also holds explanations of other tag sets of these statistics: {first} "
            "(`filtag-kg errors` reports each run; `filtag-kg drop --run IRI` removes one)") in out
    assert "note:" not in cli_ok("evaluate", "--tags", tags, "--store", tmp_path / "store2")  # a store without the first run


def test_evaluate_names_an_out_folder_it_cannot_write(run_cli, tmp_path) -> None:
    """`evaluate --out FILE/sub` failed with exit 1 (an unexpected error) and 'FILE/sub: Not a directory',
    not naming the option."""
    _one_image_tag_set(tmp_path)
    (tmp_path / "file").write_text("")
    code, out, err = run_cli("evaluate", "--tags", tmp_path / "tags", "--no-store", "--out", tmp_path / "file" / "ev")
    assert (code, out) == (2, "") and f"Error: --out {tmp_path / 'file' / 'ev'}: cannot write there (Not a directory)" in err


def test_explain_answers_image_files_in_the_order_given(run_cli, cli_ok, tmp_path) -> None:
    """`explain b.png a.png` answered sorted by image id (a.png first), not in the order given (the
    --json file holds them in that order too)."""
    tiny_tag_set(cli_ok, tmp_path)
    given = [tmp_path / "data" / "beta" / "2.png", tmp_path / "data" / "alpha" / "0.png", tmp_path / "data" / "beta" / "0.png"]
    code, out, err = run_cli("explain", *given, "--tags", tmp_path / "tags", "--json", tmp_path / "e.json")
    assert code == 0, err
    assert [line.split(": predicted")[0] for line in out.splitlines()[:-1]] == [str(p) for p in given]
    assert [e["image"] for e in json.loads((tmp_path / "e.json").read_text())] == [str(p) for p in given]


def test_evaluate_refuses_an_out_folder_it_cannot_write_before_the_evaluation(run_cli, tmp_path, monkeypatch) -> None:
    """`evaluate --out FILE/sub` evaluated every held-out image (minutes for ImageNet) before it found it
    could not write there; the default folder beside the tags likewise."""
    import filtag_kg.explain

    def not_now(*args, **kwargs):
        raise AssertionError("evaluated before the --out folder was checked")

    monkeypatch.setattr(filtag_kg.explain, "evaluate", not_now)
    _one_image_tag_set(tmp_path)
    (tmp_path / "file").write_text("")
    code, out, err = run_cli("evaluate", "--tags", tmp_path / "tags", "--no-store", "--out", tmp_path / "file" / "a" / "ev")
    assert (code, out) == (2, "") and f"Error: --out {tmp_path / 'file' / 'a' / 'ev'}: cannot write there (Not a directory)" in err
    (tmp_path / "evaluation").write_text("")  # where the default folder goes
    code, out, err = run_cli("evaluate", "--tags", tmp_path / "tags", "--no-store")
    assert (code, out) == (2, "") and (f"Error: the evaluation folder {tmp_path / 'evaluation'} (default: 'evaluation' "
                                       "beside the tags): cannot write there (Not a directory)") in err, err
