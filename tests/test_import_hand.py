"""`import-filtag` on malformed tag files and options, found by trying them by hand: each is refused
with the file, line or option named, and leaves the store (and --out) as they were."""

from __future__ import annotations

from pathlib import Path

import pytest

from filtag_kg.errors import UserError
from filtag_kg.imagenet import parse_filtag_file

VGG16_FILE = "filter tags k=1\n" + "".join(f"{i}:[{' zebra ' if i == 7 else ''!r}]\n".replace("['']", "[]")
                                           for i in range(512))


def _write(tmp_path: Path, text: str | bytes, name: str = "tags.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_two_quoted_labels_without_a_comma_are_refused(tmp_path: Path) -> None:
    """Python joins adjacent string literals: `[' chiton ' ' soccer_ball ']` was read as the one
    (unknown) label 'chiton  soccer_ball', imported with exit 0 and both tags lost."""
    path = _write(tmp_path, "filter tags k=1\n0:[' zebra ']\n1:[' chiton ' ' soccer_ball ']\n")
    with pytest.raises(UserError, match=f"^{path}, line 3: two quoted labels without a comma between them"):
        parse_filtag_file(path, model="TinyNet", layer="conv")
    _write(tmp_path, "filter tags k=1\n0:[' zebra ']\n1:[' chiton ', \" soccer_ball \",]\n")
    tags, report = parse_filtag_file(path, model="TinyNet", layer="conv")  # a trailing comma is fine
    assert report.ok and report.n_tags == 3


def test_a_file_in_another_encoding_is_named_by_line(tmp_path: Path) -> None:
    """Latin-1 bytes were named by their offset in the whole file ('position 188') only."""
    path = _write(tmp_path, "filter tags k=1\n0:[' zebra ']\n1:[' caf\u00e9 ']\n".encode("latin-1"))
    with pytest.raises(UserError, match=f"^{path}: not UTF-8 text \\(line 3, column 9 has the byte 0xe9"):
        parse_filtag_file(path, model="TinyNet", layer="conv")
    _write(tmp_path, b"\xef\xbb\xbffilter tags k=1\r\n0:[' zebra ']\r\n1:[' caf\xe9 ']\r\n")  # BOM and CRLF
    with pytest.raises(UserError, match=f"^{path}: not UTF-8 text \\(line 3, column 9 has the byte 0xe9"):
        parse_filtag_file(path, model="TinyNet", layer="conv")
    _write(tmp_path, b"filter tags k=1\n0:[' ze\x00bra ']\n")
    with pytest.raises(UserError, match=f"^{path}, line 2: a NUL byte"):
        parse_filtag_file(path, model="TinyNet", layer="conv")


@pytest.mark.parametrize(("index", "shown"), [("-1", "'-1'"), ("five", "'five'"), ("\uff15", "'\uff15'"), ("", "''")])
def test_a_filter_index_that_is_no_whole_number_is_named(tmp_path: Path, index: str, shown: str) -> None:
    path = _write(tmp_path, f"filter tags k=1\n0:[' zebra ']\n{index}:[' zebra ']\n")
    with pytest.raises(UserError, match=f"^{path}, line 3: the filter index {shown} is not a whole number"):
        parse_filtag_file(path, model="TinyNet", layer="conv")


def test_a_filter_beyond_the_layer_is_named_by_its_line(tmp_path: Path) -> None:
    """A filter 600 in a file of VGG16's 512 was reported as 'filters [512, …, 521] are missing', with
    no line; for a network of unknown layers the message names the line of the highest filter."""
    path = _write(tmp_path, VGG16_FILE + "600:[' zebra ']\n")
    with pytest.raises(UserError, match=f"^{path}, line 514: filter 600 is out of range: VGG16's block5_conv3 has "
                                        "512 filters \\(0..511\\)"):
        parse_filtag_file(path)
    with pytest.raises(UserError, match=r"filters \[512, .*\] … are missing \(the file lists 0..600, filter 600 "
                                        r"on line 514\)"):
        parse_filtag_file(path, model="TinyNet", layer="conv")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"layer": "block5_pool"}, "--layer block5_pool: VGG16's layer block5_pool is a MaxPooling2D layer, it has no "
                                   "filters; conv layers: block1_conv1"),
        ({"layer": "fc1"}, "--layer fc1: VGG16's layer fc1 is a Dense layer"),
        ({"model": ""}, "--model '': give the name of the network"),
        ({"model": "  ", "layer": "conv"}, "--model '  ': give the name of the network"),
        ({"model": "TinyNet", "layer": ""}, "--layer '': give the name of the layer"),
    ],
)
def test_a_layer_without_filters_or_an_empty_name_is_refused(tmp_path: Path, options: dict, message: str) -> None:
    """VGG16's pooling and dense layers 'had None filters'; an empty --model made a network named ''."""
    path = _write(tmp_path, VGG16_FILE)
    with pytest.raises(UserError, match=f"^{message}"):
        parse_filtag_file(path, **options)


def test_one_label_resolved_two_ways_is_refused(tmp_path: Path) -> None:
    """Two --resolve of one filter's label with other wnids: the last won without a word."""
    path = _write(tmp_path, "filter tags k=1\n0:[' crane ']\n")
    with pytest.raises(UserError, match="--resolve 0:crane=n02012849 and --resolve 0 : crane=n03126707: filter 0's "
                                        "'crane' is given two classes"):
        parse_filtag_file(path, model="TinyNet", layer="conv",
                          resolve={"0:crane": "n02012849", "0 : crane": "n03126707"})
    tags, _ = parse_filtag_file(path, model="TinyNet", layer="conv",
                                resolve={"0:crane": "n02012849", "0 : crane": "n02012849"})
    assert len(tags) == 1


def test_the_report_of_a_file_of_other_labels_is_cut_short(tmp_path: Path) -> None:
    """A file of 100,000 filters of unknown labels printed 100,000 report lines."""
    unknown = "".join(f"{i}:[' unicorn{i} ']\n" for i in range(1, 1001))
    path = _write(tmp_path, "filter tags k=1\n0:[' zebra ']\n" + unknown)
    _, report = parse_filtag_file(path, model="TinyNet", layer="conv")
    lines = report.summary().splitlines()
    assert len(lines) == 22 and lines[0].endswith("1001 filters (1000 without tags), 1 tags")
    assert lines[1] == "  line 3, filter 1: unknown label 'unicorn1'; left out"
    assert lines[-1] == "  … and 980 more (of 1000 unknown and 0 ambiguous labels in all)"
    assert len(report.unknown) == 1000


def test_cli_refusals_leave_store_and_out_as_they_were(tmp_path: Path, run_cli) -> None:
    """Every refusal exits 2 and changes nothing: the store keeps its quads; and a load that failed
    after the file was read (a layer too large for the export) left the tag set in --out behind."""
    from filtag_kg.kg.store import Store

    good = _write(tmp_path, VGG16_FILE, "good.txt")
    code, _, err = run_cli("import-filtag", good, "--store", tmp_path / "store")
    assert code == 0, err
    with Store(tmp_path / "store", read_only=True) as db:
        before = set(db.quads())
    bad = [
        (_write(tmp_path, "filter tags k=1\n0:[' zebra ' ' horse ']\n", "a.txt"), (), "a.txt, line 2: two quoted"),
        (_write(tmp_path, b"filter tags k=1\n0:[' caf\xe9 ']\n", "b.txt"), (), "b.txt: not UTF-8 text (line 2, column"),
        (good, ("--resolve", "7:zebra=n02391049", "--resolve", "7:zebra=n00000000"), "two classes for one label"),
        (good, ("--layer", "block5_pool"), "is a MaxPooling2D layer"),
        (_write(tmp_path, "filter tags k=1\n0:[' zebra ']\n" + "".join(f"{i}:[]\n" for i in range(1, 70_000)),
                "big.txt"),
         ("--model", "Big", "--layer", "conv", "--out", tmp_path / "out"), "at most 65,536 per layer"),
    ]
    for path, options, message in bad:
        code, _, err = run_cli("import-filtag", path, "--store", tmp_path / "store", *options)
        assert code == 2 and message in err, (path, options, err)
    with Store(tmp_path / "store", read_only=True) as db:
        assert set(db.quads()) == before
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("filter tags k=1\n0:[' cat ', ' crane ']\n1:[' dog ']\n",
         "none of its labels is one ImageNet-1k class \\(2 unknown, 1 ambiguous, the first 'cat' on line 2\\)"),
        ("filter tags k=1\n0:[]\n1:[]\n", "no filter has a tag \\(all 2 label lists are empty\\)"),
    ],
)
def test_a_file_that_gives_no_tag_is_refused(tmp_path: Path, text: str, message: str) -> None:
    """A file of another label set (CIFAR's 'cat', 'dog') was imported as an ImageNet run of no tags,
    with exit 0."""
    path = _write(tmp_path, text)
    with pytest.raises(UserError, match=f"^{path}: {message}"):
        parse_filtag_file(path, model="TinyNet", layer="conv")
