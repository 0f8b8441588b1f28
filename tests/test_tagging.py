"""k-best and q-quantile tags against a brute-force selection; records round trips and errors."""

from __future__ import annotations

import re

import numpy as np
import pytest

import filtag_kg
from filtag_kg.errors import UserError
from filtag_kg.records import ActivationStats, TagSet
from filtag_kg.tagging import heatmap_layout, plot_class_means, quantile_count


def random_stats(seed: int = 0, ties: bool = False) -> ActivationStats:
    rng = np.random.default_rng(seed)
    stats = ActivationStats.empty(["a", "b"], ["x", "y", "z", "w"], {"a": 7, "b": 40})
    for m in stats.layers:
        values = rng.random((4, stats.n_filters[m]))
        if ties:
            values = np.round(values, 1)  # many equal z: ties break by lower filter index
        stats.sums[m] = values * np.array([[3], [5], [2], [0]])
    stats.counts[:] = [3, 5, 2, 0]  # class "w" has no images
    return stats


def brute_force(stats: ActivationStats, layer: str, c: int, count: int) -> list[tuple[int, float, int]]:
    """The `count` filters of highest z for class c: sort (−z, index) pairs the slow way."""
    z = stats.sums[layer][c] / stats.counts[c]
    ordered = sorted(range(len(z)), key=lambda i: (-z[i], i))
    return [(i, float(z[i]), r + 1) for r, i in enumerate(ordered[:count])]


@pytest.mark.parametrize("ties", [False, True])
def test_k_best_and_quantile_match_brute_force(ties: bool) -> None:
    stats = random_stats(ties=ties)
    tags = filtag_kg.tag(stats, k=[1, 3], q=[5, 25, 100])
    assert tags.selections == [("k-best", 1), ("k-best", 3), ("q-quantile", 5.0), ("q-quantile", 25.0),
                               ("q-quantile", 100.0)]
    got: dict[tuple, list] = {}
    for t in tags:
        got.setdefault((t.layer, t.class_index, t.method, t.parameter), []).append((t.filter, t.score, t.rank))
    for m in stats.layers:
        n = stats.n_filters[m]
        for c in range(3):
            for method, p, count in [("k-best", 1, 1), ("k-best", 3, 3), ("q-quantile", 5.0, max(1, round(0.05 * n))),
                                     ("q-quantile", 25.0, round(0.25 * n)), ("q-quantile", 100.0, n)]:
                expected = brute_force(stats, m, c, count)
                actual = sorted(got[(m, c, method, p)], key=lambda r: r[2])
                assert [(f, r) for f, _, r in actual] == [(f, r) for f, _, r in expected]
                np.testing.assert_allclose([s for _, s, _ in actual], [s for _, s, _ in expected])
        assert not any(key[1] == 3 for key in got)  # no images, no tags
    # the layer of 7 filters: 5% rounds to 0 filters, FilTag-kg tags 1 (the original tagged all 7)
    assert len(got[("a", 0, "q-quantile", 5.0)]) == 1


def test_quantile_count() -> None:
    assert quantile_count(5, 512) == 26  # round(25.6)
    assert quantile_count(1, 64) == 1  # round(0.64)
    assert quantile_count(1, 20) == 1  # round(0.2) = 0 -> at least 1
    assert quantile_count(100, 13) == 13
    assert quantile_count(12.5, 4) == 1  # round(0.5) = 0 (half to even) -> 1
    assert quantile_count(37.5, 4) == 2  # round(1.5) = 2


def test_selection_views() -> None:
    stats = random_stats()
    tags = filtag_kg.tag(stats, k=[2], q=[50])
    only = tags.select("k-best", 2)
    assert len(only) == 2 * 3 * 2 and {t.method for t in only} == {"k-best"}
    matrix = tags.tag_matrix("b", "k-best", 2)
    assert matrix.shape == (40, 4) and matrix.sum() == 6 and matrix[:, 3].sum() == 0
    per_filter = tags.filter_tags("b", "k-best", 2)
    assert sum(len(v) for v in per_filter) == 6
    assert all(matrix[f, c] for f, cs in enumerate(per_filter) for c in cs)


def test_errors_name_the_value_and_layer() -> None:
    stats = random_stats()
    with pytest.raises(UserError, match="k=8 is larger than the 7 filters of layer 'a'"):
        filtag_kg.tag(stats, k=8)
    with pytest.raises(UserError, match=r"q must be in \(0, 100\], got 0"):
        filtag_kg.tag(stats, q=0)
    with pytest.raises(UserError, match=r"got 100.5"):
        filtag_kg.tag(stats, q=100.5)
    with pytest.raises(UserError, match="whole number"):
        filtag_kg.tag(stats, k=1.5)
    with pytest.raises(UserError, match="layer 'c' matches no collected layer"):
        filtag_kg.tag(stats, layers=["c"])
    assert filtag_kg.tag(stats, k=8, layers="b").tagged_layers == ["b"]


def test_a_k_too_large_for_a_layer_says_what_to_do() -> None:
    """`tag -k 40` over layers of 7 and 40 filters was refused with the first layer's name only; the
    message now names every layer too small, the layers k fits, and the ways out (--layer, or -q)."""
    stats = random_stats()
    stats.layers.append("c")
    stats.n_filters["c"], stats.sums["c"] = 3, np.ones((4, 3))
    with pytest.raises(UserError, match=r"^k=8 is larger than the 7 filters of layer 'a' \(and than those of 'c'\); "
                                        r"tag only the layers of at least 8 filters \(b\) with `tag --layer` \(layers= "
                                        r"in Python\), or use a q-quantile \(`tag -q`, or q= in Python\), which tags "
                                        r"a share of each layer's filters$"):
        filtag_kg.tag(stats, k=8)
    with pytest.raises(UserError, match=r"^k=41 is larger than the 7 filters of layer 'a' \(and than those of 'b', "
                                        r"'c'\); no layer has 41 filters: use a q-quantile \(`tag -q`"):
        filtag_kg.tag(stats, k=41)


def test_stats_and_tags_round_trip(tmp_path) -> None:
    stats = random_stats()
    stats.manifest["model"] = {"name": "m", "hash": "abc"}
    stats.save(tmp_path / "stats")
    loaded = ActivationStats.load(tmp_path / "stats")
    for m in stats.layers:
        np.testing.assert_array_equal(loaded.sums[m], stats.sums[m])
    assert loaded.manifest["model"] == {"name": "m", "hash": "abc"}
    tags = filtag_kg.tag(loaded, k=[1, 2], q=[12.5])
    tags.save(tmp_path / "tags")
    back = TagSet.load(tmp_path / "tags")
    assert list(back) == list(tags)
    assert back.selections == tags.selections
    with pytest.raises(UserError, match="no tag set here"):
        TagSet.load(tmp_path / "stats")


def test_merge_rejects_different_layers() -> None:
    a = random_stats()
    b = ActivationStats.empty(["a"], a.classes, {"a": 7})
    with pytest.raises(ValueError, match="cannot merge"):
        a.merge(b)


def test_a_k_or_q_given_twice_is_one_selection() -> None:
    stats = random_stats()
    tags = filtag_kg.tag(stats, k=[2, 1, 2], q=[5, 5.0], layers=["b", "b"])
    assert tags.selections == [("k-best", 2), ("k-best", 1), ("q-quantile", 5.0)]
    assert len(tags) == 3 * (2 + 1 + 2)  # 3 classes with images, layer b once: 2 + 1 + round(0.05·40) tags each
    assert filtag_kg.tag(stats, layers=["?"]).layers == ["a", "b"]  # glob patterns, as for collect


def test_damaged_artifacts_are_named_user_errors(tmp_path) -> None:
    import json

    stats, tags = random_stats(), None
    stats.save(tmp_path / "stats")
    tags = filtag_kg.tag(stats, k=[1, 2])
    tags.save(tmp_path / "tags")
    arrays = tmp_path / "stats" / "arrays.npz"
    arrays.write_bytes(arrays.read_bytes()[:200])  # truncated
    with pytest.raises(UserError, match=r"stats: unreadable statistics \(BadZipFile"):
        ActivationStats.load(tmp_path / "stats")
    with pytest.raises(UserError, match="no statistics here"):
        ActivationStats.load(tmp_path / "tags")
    csv_path, manifest_path = tmp_path / "tags" / "tags.csv", tmp_path / "tags" / "manifest.json"
    good_csv, good_manifest = csv_path.read_text(), manifest_path.read_text()
    csv_path.write_text(good_csv.replace("\na,", "\nz9,", 1))
    with pytest.raises(UserError, match="tags.csv line 2: layer 'z9'"):
        TagSet.load(tmp_path / "tags")
    csv_path.write_text(good_csv.rsplit(",", 3)[0])  # last row cut short
    with pytest.raises(UserError, match="unreadable tag set"):
        TagSet.load(tmp_path / "tags")
    csv_path.write_text(good_csv)
    manifest = json.loads(good_manifest)
    manifest["selections"].append(manifest["selections"][0])
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="repeat one"):
        TagSet.load(tmp_path / "tags")
    manifest_path.write_text(good_manifest[:-20])
    with pytest.raises(UserError, match="JSONDecodeError"):
        TagSet.load(tmp_path / "tags")


def test_artifacts_are_readable_as_the_umask_allows(tmp_path) -> None:
    import os

    old = os.umask(0o027)
    try:
        random_stats().save(tmp_path / "stats")
    finally:
        os.umask(old)
    assert {f.name: f.stat().st_mode & 0o777 for f in (tmp_path / "stats").iterdir()} == {
        "arrays.npz": 0o640, "manifest.json": 0o640}


@pytest.mark.parametrize("ties", [False, True])
def test_heatmap_layout_groups_filters_by_their_best_class(ties: bool) -> None:
    z = random_stats(1, ties=ties).class_means("b")[:3]
    best = [min(range(3), key=lambda c: (-z[c, i], c)) for i in range(z.shape[1])]  # first class of highest z
    expected = sorted(range(z.shape[1]), key=lambda i: (best[i], -z[best[i], i], i))
    assert heatmap_layout(z).tolist() == expected


def test_heatmaps_one_per_tagged_layer_and_stale_ones_removed(tmp_path) -> None:
    stats = random_stats()
    stats.layers[1] = "block/b"  # a name that is not a file name
    stats.sums["block/b"] = stats.sums.pop("b")
    stats.n_filters["block/b"] = stats.n_filters.pop("b")
    (tmp_path / "z-notes.png").write_bytes(b"the user's")
    written = plot_class_means(stats, filtag_kg.tag(stats, k=[2, 1]), tmp_path)
    assert [p.name for p in written] == ["z-000-a.png", "z-001-block_b.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") for p in written)
    plot_class_means(stats, filtag_kg.tag(stats, layers=["a"]), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["z-000-a.png", "z-notes.png"]


def test_k_and_q_of_other_types_are_refused_by_value() -> None:
    """Text, booleans and infinities got misleading messages ("got 2" for '2') or tracebacks; numpy
    scalars and 0-d arrays are numbers."""
    stats = random_stats()
    for kwargs, message in ((dict(k="2"), "k must be a number, got '2'"), (dict(q="5"), "q must be a number, got '5'"),
                            (dict(k=True), "k must be a number, got True"), (dict(q=[5, False]), "got False"),
                            (dict(k=float("inf")), "k must be a whole number of at least 1, got inf"),
                            (dict(k=float("nan")), "got nan")):
        with pytest.raises(UserError, match=message):
            filtag_kg.tag(stats, **kwargs)
    tags = filtag_kg.tag(stats, k=np.array(2), q=np.array([25.0, 5.0]))
    assert tags.selections == [("k-best", 2), ("q-quantile", 25.0), ("q-quantile", 5.0)]


def test_tag_set_cut_at_a_line_end_or_of_another_version_is_refused(tmp_path) -> None:
    """A tags.csv cut at the end of a line read as a tag set with tags missing (wrong hit rates);
    an empty one as a tag set without tags; a newer artifact version was read silently."""
    import json

    filtag_kg.tag(random_stats(), k=[1, 2]).save(tmp_path)
    csv_path, manifest_path = tmp_path / "tags.csv", tmp_path / "manifest.json"
    lines = csv_path.read_text().splitlines(keepends=True)
    assert json.loads(manifest_path.read_text())["n_tags"] == len(lines) - 1 == len(TagSet.load(tmp_path))
    csv_path.write_text("".join(lines[:-3]))
    with pytest.raises(UserError, match=f"tags.csv has {len(lines) - 4} tags, the manifest says {len(lines) - 1}"):
        TagSet.load(tmp_path)
    csv_path.write_text("")
    with pytest.raises(UserError, match="tags.csv lacks the header row"):
        TagSet.load(tmp_path)
    csv_path.write_text("".join(lines))
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "artifact_version": 2}))
    with pytest.raises(UserError, match="a tag set of artifact version 2; this filtag-kg reads version 1"):
        TagSet.load(tmp_path)
    manifest_path.write_text("[]")
    with pytest.raises(UserError, match="unreadable tag set .*manifest.json is a JSON list"):
        TagSet.load(tmp_path)


def test_statistics_with_edited_arrays_or_manifest_are_refused(tmp_path) -> None:
    """A manifest that is not a JSON object gave an AttributeError; held-out arrays of other lengths
    or class indices out of range loaded and failed (or counted wrong) later."""
    import json

    stats = random_stats()
    stats.heldout = filtag_kg.HeldOut(
        image_ids=["p", "q"], positions=np.arange(2), labels=np.array([0, 2]),
        top_classes=np.array([[0, 1, 2, 3, -1]] * 2), top_probs=np.full((2, 5), 0.2, np.float32),
        vectors={"a": np.zeros((2, 7), np.float32), "b": np.zeros((2, 40), np.float32)})
    stats.save(tmp_path / "good")
    assert len(ActivationStats.load(tmp_path / "good").heldout) == 2

    def edited(name: str, change) -> str:
        with np.load(tmp_path / "good" / "arrays.npz") as z:
            arrays = dict(z)
        change(arrays)
        (tmp_path / name).mkdir()
        np.savez(tmp_path / name / "arrays.npz", **arrays)
        (tmp_path / name / "manifest.json").write_text(str(arrays["manifest.json"]))
        return str(tmp_path / name)

    cases = {
        "list": (lambda a: a.update({"manifest.json": np.array("[1]")}), "its manifest is a JSON list"),
        "labels": (lambda a: a.update({"heldout/labels": np.array([0])}), "held-out arrays disagree"),
        "vectors": (lambda a: a.update({"heldout/vectors/1": np.zeros((2, 7), np.float32)}), "held-out arrays disagree"),
        "ids": (lambda a: a.update({"manifest.json": np.array(json.dumps(
            {**json.loads(str(a["manifest.json"])), "heldout_image_ids": ["p"]}))}), "held-out arrays disagree"),
        "top": (lambda a: a.update({"heldout/top_classes": np.full((2, 5), 4)}), "top classes must be class indices below 4"),
        "counts": (lambda a: a.update({"counts": -a["counts"]}), "counts must be non-negative integers"),
    }
    for name, (change, message) in cases.items():
        with pytest.raises(UserError, match=f"{name}: unreadable statistics .*{message}"):
            ActivationStats.load(edited(name, change))


def test_statistics_without_training_images_are_not_tagged() -> None:
    """Statistics of the held-out split alone gave an empty tag set ('0 tags'), refused only by evaluate."""
    stats = random_stats()
    stats.counts[:] = 0
    with pytest.raises(UserError, match="the statistics hold no training images"):
        filtag_kg.tag(stats, k=1)


def test_an_unfinished_collection_is_refused_as_by_the_cli(tmp_path) -> None:
    """Statistics loaded from an interrupted run's checkpoint were tagged from Python without a word
    (only `filtag-kg tag` refused them); statistics made in memory carry no 'complete' and still tag."""
    stats = random_stats()
    stats.manifest.update(complete=False, progress={"split": "train", "position": 8})
    stats.save(tmp_path / "stats")
    message = (f"the statistics in {tmp_path / 'stats'} are an unfinished collection (a checkpoint, stopped in "
               f"split 'train' at image 8); finish them by resuming the collection: run the same `filtag-kg "
               f"collect` with --out {tmp_path / 'stats'}")
    with pytest.raises(UserError, match=re.escape(message)):
        filtag_kg.tag(ActivationStats.load(tmp_path / "stats"), k=1)
    assert "complete" not in random_stats().manifest and len(filtag_kg.tag(random_stats(), k=1)) == 6


def test_the_statistics_of_one_shard_are_tagged_with_a_warning(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """Tagging one shard's statistics (before `filtag-kg merge`) gave no hint that z covers part of the images."""
    shard = random_stats()
    shard.manifest["shard"] = [1, 3]
    shard.save(tmp_path / "s1")
    tags = filtag_kg.tag(ActivationStats.load(tmp_path / "s1"), k=1)
    assert len(tags) == 6 and tags.manifest["shard"] == [1, 3]
    err = capsys.readouterr().err
    assert f"warning: the statistics in {tmp_path / 's1'} are those of shard 1 of 3 only (collect --shard 1/3)" in err
    assert "merge the 3 shards first (`filtag-kg merge SHARD… -o OUT`" in err
    filtag_kg.tag(random_stats(), k=1)  # a whole collection (shard None, or no entry): no warning
    whole = random_stats()
    whole.manifest["shard"] = None
    filtag_kg.tag(whole, k=1)
    whole.manifest["shard"] = [0, 1]  # `collect --shard 0/1`: the one shard is all images (it said 'merge the 1 shards')
    filtag_kg.tag(whole, k=1)
    assert capsys.readouterr().err == ""


def test_a_tiny_q_is_labelled_by_its_shortest_text(tmp_path) -> None:
    """q=1e-320 was labelled 'q-quantile 0.000…0001' with 320 digits (the summary line, tags.csv, the graph's
    labels and IRIs, the evaluation table); an exponent only where the text would be that long."""
    from filtag_kg.records import number_text, selection_label

    assert [number_text(x) for x in (5, 2.5, 1e-5, 33.3333333, np.float32(33.3))] == [
        "5", "2.5", "0.00001", "33.3333333", "33.3"]  # as before: no exponent
    assert [number_text(x) for x in (1e-320, 5e-324, 1.5e-31, np.float32(1e-40))] == [
        "1e-320", "5e-324", "1.5e-31", "1e-40"]
    tags = filtag_kg.tag(random_stats(), q=[1e-320, 5])
    assert [selection_label(m, p) for m, p in tags.selections] == ["q-quantile 1e-320", "q-quantile 5"]
    tags.save(tmp_path / "tags")
    assert {row.rsplit(",", 1)[1] for row in (tmp_path / "tags" / "tags.csv").read_text().splitlines()[1:]} == {
        "1e-320", "5"}
    back = TagSet.load(tmp_path / "tags")
    assert back.selections == [("q-quantile", 1e-320), ("q-quantile", 5.0)] and list(back) == list(tags)


def _shard(index: int, layers: dict[str, int] | None = None, classes: tuple[str, ...] = ("cat", "dog"),
           **manifest: object) -> ActivationStats:
    """A finished shard `index` of 2 in memory, of a default collection unless `manifest` says otherwise."""
    base = {"model": {"name": "cnn", "source": "/m/cnn.keras", "hash": "a" * 64, "precision": "float32"},
            "dataset": {"name": "imgs", "root": "/d/imgs", "images_sha256": "1" * 64},
            "split": {"collected": ["train"], "fraction": 1, "seed": 0}, "complete": True, "shard": [index, 2]}
    layers = layers or {"l1": 3}
    stats = ActivationStats.empty(list(layers), list(classes), layers, {**base, **manifest})
    stats.counts[:] = 1
    return stats


@pytest.mark.parametrize("other, message", [
    (_shard(1, {"l2": 3}), "their layers differ (l2 vs l1)"),
    (_shard(1, {"l1": 4}), "their filter counts differ (l1: 4 vs 3)"),
    (_shard(1, classes=("cat", "cow")), "their classes differ (2 vs 2 classes, from index 1 on: ['cow'] vs ['dog'])"),
    (_shard(1, model={"name": "cnn", "source": "/m/other.keras", "hash": "b" * 64, "precision": "float32"}),
     "their model differs (cnn from /m/other.keras, hash bbbbbbbbbbbb vs cnn from /m/cnn.keras, hash aaaaaaaaaaaa)"),
    (_shard(1, dataset={"name": "imgs2", "root": "/d/imgs2", "images_sha256": "2" * 64}),
     "their data set differs ('imgs2' in /d/imgs2 vs 'imgs' in /d/imgs)"),
    (_shard(1, dataset={"name": "imgs", "root": "/d/imgs", "images_sha256": "2" * 64}),
     "their data set differs ('imgs' in /d/imgs both, with other images or labels: its files changed"),
    (_shard(1, dataset={"name": "imgs", "root": "/d/imgs", "images_sha256": "2" * 64},
            split={"collected": ["train", "heldout"], "fraction": 0.5, "seed": 0}),
     "their train/held-out split differs (collected train, heldout, fraction 0.5, seed 0 vs collected train, "
     "fraction 1, seed 0)"),
])
def test_merge_names_what_differs_between_shards(other: ActivationStats, message: str) -> None:
    """Shards of other layers, classes or filter counts were refused by "their layers, classes or filter counts
    differ" (which?), of another model or folder by "their model (data set) differs" (which one?), and shards of
    one folder split otherwise by "their data set differs": the message says what differs, with both values."""
    with pytest.raises(UserError) as raised:
        ActivationStats.merge_shards({"s0": _shard(0), "s1": other})
    assert str(raised.value).startswith(f"s1 and s0 are not shards of one collection: {message}"), str(raised.value)
    assert len(ActivationStats.merge_shards({"s0": _shard(0), "s1": _shard(1)}).counts) == 2


def test_a_save_interrupted_between_its_two_files_is_refused(tmp_path) -> None:
    """`tag --out --overwrite` killed after writing tags.csv and before manifest.json left the new tags
    beside the old manifest, which loaded as a tag set with the old provenance (found by the
    interruption round); the manifest now records the tags.csv it was written with."""
    import json
    import shutil

    filtag_kg.tag(random_stats(), k=[1]).save(tmp_path / "old")
    filtag_kg.tag(random_stats(seed=1), k=[1]).save(tmp_path / "new")
    shutil.copy(tmp_path / "new" / "tags.csv", tmp_path / "old" / "tags.csv")  # the first file of the new save
    assert json.loads((tmp_path / "old" / "manifest.json").read_text())["n_tags"] == len(TagSet.load(tmp_path / "new"))
    with pytest.raises(UserError, match="tags.csv is not the one its manifest.json was written with"):
        TagSet.load(tmp_path / "old")
    assert "tags_sha256" not in TagSet.load(tmp_path / "new").manifest  # kept out of the records, as n_tags


def test_temporary_files_a_killed_save_left_are_removed_by_the_next(tmp_path) -> None:
    """A save killed outright (SIGKILL) left its '.tags.csv.XXXX.tmp', as big as the file, for good
    (found by the interruption round); the next write of that file removes those unchanged for an
    hour, not one being written now nor those of other files."""
    import os
    import time

    folder = tmp_path / "tags"
    folder.mkdir()
    stale, fresh, other = folder / ".tags.csv.k1ll3d.tmp", folder / ".tags.csv.wr1t1ng.tmp", folder / ".notes.txt.old.tmp"
    for path in (stale, fresh, other):
        path.write_text("partial")
    hours_ago = time.time() - 7200
    for path in (stale, other):
        os.utime(path, (hours_ago, hours_ago))
    tags = filtag_kg.tag(random_stats(), k=[1])
    tags.save(folder)
    assert not stale.exists() and fresh.exists() and other.exists()
    assert TagSet.load(folder) == tags
