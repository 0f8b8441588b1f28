"""Explaining single classifications by the tags of the filters an image activates, and Hits@n.

For an image d and a selection (k-best k, or q-quantile q) of a tagging run:
- the *active filters* of layer m are the filters with the highest ā(m,·,d) — the top k, or the top
  round(q/100·|I_m|) (at least 1), as in the original FilTag evaluation (ties: lower filter index);
- the *tag counts* of layer m count, per class, the active filters tagged with it; over all layers
  they are summed;
- classes are ranked by count (standard competition ranking: rank = 1 + the number of classes with a
  higher count; a class with count 0 is never ranked).
Hits@n of a target class (the network's prediction, or the true class) is 1 when it has rank ≤ n.
Where classes tie, that ranking counts every one of them at the best place the tie holds, which
flatters small n (at k = 1 a filter tagged with many classes ties them all); the evaluation also
gives the tie-aware Hits@n: the expected hit with tied classes ordered at random (McSherry and
Najork, ECIR 2008), (n - classes ranked above) / classes tied with the target, clipped to [0, 1].

Everything is computed for all images at once from the per-image vectors that collection keeps for
the held-out split, so evaluation needs no second forward pass.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UserError, is_whole
from .imagenet import display_label
from .records import K_BEST, ActivationStats, HeldOut, TagSet, number_text, selection_key, selection_label
from .tagging import quantile_count

MAX_N = 50
SCOPES = ("all", "last")  # tags from all layers, or from the last layer alone
EVALUATION_CHUNK = 2048  # held-out images evaluated at a time: memory bounded whatever their number
TARGETS = ("predicted", "true")


def active_count(method: str, parameter: float, n_filters: int) -> int:
    """How many filters of a layer count as active for a selection (k, or the q-quantile's count)."""
    return min(int(parameter), n_filters) if method == K_BEST else quantile_count(parameter, n_filters)


def filter_order(vectors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per layer, each image's filters by ā, highest first (ties: lower index): int [n_images, filters].
    The active filters of a selection are the first `active_count` columns, so one sort serves all."""
    return {m: np.argsort(-v, axis=1, kind="stable") for m, v in vectors.items()}


def tag_counts(
    tags: TagSet, order: Mapping[str, np.ndarray], method: str, parameter: float, layers: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Per layer: int [n_images, n_classes], how many of an image's active filters carry each class
    (`order`: the layers' `filter_order`)."""
    out = {}
    for m in layers or tags.layers:
        if m not in order:
            raise UserError(f"layer {m!r} of the tag set has no activations here; have {', '.join(order)}")
        out[m] = _counts(order[m], sparse_tags(tags, m, method, parameter),
                         active_count(method, parameter, tags.n_filters[m]))
    return out


def sparse_tags(tags: TagSet, layer: str, method: str, parameter: float) -> Any:
    """A layer's tags of one selection as a sparse int32 matrix [n_filters, n_classes] (scipy CSR): a
    filter carries a few of 1,000 classes, and the dense product of every image's active filters with
    it cost 24 s and 2.8 GB for 5,000 images of MobileNetV2 over ImageNet's classes."""
    from scipy import sparse

    return sparse.csr_matrix(tags.tag_matrix(layer, method, parameter), dtype=np.int32)


def _counts(order: np.ndarray, matrix: Any, count: int) -> np.ndarray:
    """int32 [n_images, n_classes]: per image, the tags of its `count` first filters in `order`, counted."""
    from scipy import sparse

    top = order[:, :count]
    active = sparse.csr_matrix((np.ones(top.size, np.int32), top.ravel(), np.arange(0, top.size + 1, count)),
                               shape=order.shape)
    return (active @ matrix).toarray().astype(np.int32, copy=False)


def hits_at(counts: np.ndarray, targets: np.ndarray, max_n: int = MAX_N) -> np.ndarray:
    """Bool [n_images, max_n]: column n-1 says whether the target class has rank ≤ n."""
    target_counts = counts[np.arange(len(targets)), targets]
    rank = (counts > target_counts[:, None]).sum(axis=1) + 1
    rank = np.where(target_counts > 0, rank, max_n + 1)
    return rank[:, None] <= np.arange(1, max_n + 1)[None, :]


def tie_aware_hits_at(counts: np.ndarray, targets: np.ndarray, max_n: int = MAX_N) -> np.ndarray:
    """Float [n_images, max_n]: column n-1 is the chance that the target class is among the first n
    when classes of equal count are ordered at random: (n - classes above) / classes tied with it
    (itself included), clipped to [0, 1]; 0 for a target without a count, as in `hits_at`."""
    target_counts = counts[np.arange(len(targets)), targets][:, None]
    above = (counts > target_counts).sum(axis=1)[:, None]
    tied = (counts == target_counts).sum(axis=1)[:, None]
    chance = np.clip((np.arange(1, max_n + 1)[None, :] - above) / tied, 0.0, 1.0)
    return np.where(target_counts > 0, chance, 0.0)


def shown(text: object) -> str:
    """`text` as one line of output: as it is when every character of it is printable, else quoted with
    escapes (Python's repr): an image id or file name holding a newline was printed across two lines,
    read as two explanations, and one holding a terminal escape sequence acted on the terminal."""
    text = str(text)
    return text if text.isprintable() else repr(text)


def shown_class(label: str) -> str:
    """A class label as output shows it: on one line (`shown`), with its ImageNet name where it is a wnid."""
    return shown(display_label(label))


@dataclass
class Explanation:
    """One image explained by one selection's tags."""

    image_id: str
    method: str
    parameter: float
    predicted: list[tuple[int, float]]  # top-5 (class index, probability)
    true_class: int | None
    active: dict[str, list[int]]  # active filters per layer, best first
    layer_counts: dict[str, np.ndarray]  # per layer: int [n_classes]
    counts: np.ndarray  # over all layers: int [n_classes]

    def ranking(self) -> list[tuple[int, int, int]]:
        """(class index, count, rank) of every class with a count, highest count first."""
        order = [int(c) for c in np.lexsort((np.arange(len(self.counts)), -self.counts)) if self.counts[c] > 0]
        out: list[tuple[int, int, int]] = []
        for position, c in enumerate(order):
            count = int(self.counts[c])
            rank = out[-1][2] if out and out[-1][1] == count else position + 1  # competition ranking
            out.append((c, count, rank))
        return out

    def text(self, classes: Sequence[str], top: int = 6) -> str:
        """One line a non-expert can read: prediction, truth, and what the active filters are tagged."""
        def name(k: int) -> str:  # a label holding a newline must not break the line either
            return shown_class(classes[k])

        c, p = self.predicted[0]
        truth = f"; true {name(self.true_class)}" if self.true_class is not None else ""
        ranking = self.ranking()
        tags = ", ".join(f"{name(k)} {n}" for k, n, _ in ranking[:top]) or "none"
        more = " …" if len(ranking) > top else ""
        # the predicted and true class where the first `top` leave them out: for a bear taken for a bird,
        # 'bird 4, cat 4, cow 4, dog 4, giraffe 4, horse 4 …' hid how many active filters said bear
        rank_of = {k: (n, r) for k, n, r in ranking}
        listed = {k for k, _, _ in ranking[:top]}
        left_out = [f"{which} {name(k)}: " + (f"{rank_of[k][0]}, rank {rank_of[k][1]}" if k in rank_of else "untagged")
                    for which, k in (("predicted", c), ("true", self.true_class))
                    if k is not None and k >= 0 and k not in listed and (which == "predicted" or k != c)]
        beyond = f" ({'; '.join(left_out)})" if left_out else ""
        return (f"{shown(self.image_id)}: predicted {name(c)} ({percent(p)}){truth} — active filters tagged "
                f"({selection_label(self.method, self.parameter)}): {tags}{more}{beyond}")

    def to_json(self, classes: Sequence[str]) -> dict[str, Any]:
        return {
            "image": self.image_id, "selection": {"method": self.method, "parameter": self.parameter},
            "predicted": [{"class": classes[c], "probability": p} for c, p in self.predicted if c >= 0],
            "true": classes[self.true_class] if self.true_class is not None else None,
            "active_filters": self.active,
            "tags": [{"class": classes[c], "count": n, "rank": r} for c, n, r in self.ranking()],
            "tags_per_layer": {m: {classes[c]: int(v[c]) for c in np.flatnonzero(v)} for m, v in self.layer_counts.items()},
        }


def percent(p: float) -> str:
    """A probability as a whole percentage, one significant digit below 1 % ('0.1%', '<0.01%'): a weak or
    untrained model over ImageNet's 1,000 classes predicts at ~0.1 %, shown as 'predicted bassinet (0%)'."""
    if p >= 0.01 or p <= 0:
        return f"{p:.0%}"
    return f"{p * 100:.1g}%" if p >= 0.0001 else "<0.01%"


def explained_layers(tags: TagSet, heldout: HeldOut) -> list[str]:
    """The layers explanations read: those carrying tags whose per-image vectors the records hold.
    A layer without tags counts nothing, and as the last layer it would zero the 'last' scope."""
    layers = [m for m in tags.tagged_layers if m in heldout.vectors]
    if not layers:
        raise UserError(f"the tagged layers ({', '.join(tags.tagged_layers) or 'none'}) have no per-image "
                        f"activations in these held-out records (layers {', '.join(heldout.vectors) or 'none'})")
    for m in layers:  # records of another network (no model hash to tell) failed in a matrix product
        _require_array(f"heldout.vectors[{m!r}]", heldout.vectors[m], "f", (len(heldout), None),
                       "scaled feature-map means [images, filters]")
        if heldout.vectors[m].shape[1] != tags.n_filters[m]:
            raise UserError(f"layer {m!r} has {tags.n_filters[m]} filters in the tag set but "
                            f"{heldout.vectors[m].shape[1]} in the held-out records: they are of different networks")
    return layers


def check_heldout(tags: TagSet, heldout: HeldOut, rows: np.ndarray | None = None) -> list[str]:
    """Refuse records that are no HeldOut of the tag set's network and classes, naming the field and
    value, and return the layers explanations read (`explained_layers`). Types, shapes and lengths are
    checked for all images (numpy failed on them, or read another image silently); positions `rows`
    (default: all) must be among the images, and their classes, probabilities and activations valid:
    a class outside the tag set's failed or was read as another, a NaN activation was never active
    (explained without a word), a NaN probability became ft:confidence "NaN" (refused by the shapes)."""
    if not isinstance(tags, TagSet):
        raise UserError(f"tags must be a filtag_kg.records.TagSet, got {type(tags).__name__}")
    if not isinstance(heldout, HeldOut):
        raise UserError(f"held-out records must be a filtag_kg.records.HeldOut, got {type(heldout).__name__}")
    ids = heldout.image_ids
    if not isinstance(ids, (list, tuple)):
        raise UserError(f"heldout.image_ids must be a list of strings (an id per image), got {type(ids).__name__}")
    bad_id = next((i for i in ids if not isinstance(i, str)), None)
    if bad_id is not None:
        raise UserError(f"heldout.image_ids must be strings (an id per image), got {bad_id!r}")
    n = len(ids)
    _require_array("heldout.labels", heldout.labels, "iu", (n,), "true class indices [images]")
    _require_array("heldout.top_classes", heldout.top_classes, "iu", (n, None), "top-5 class indices [images, 5]")
    _require_array("heldout.top_probs", heldout.top_probs, "f", heldout.top_classes.shape,
                   "top-5 probabilities [images, 5]")
    layers = explained_layers(tags, heldout)
    rows = np.arange(n) if rows is None else rows
    outside = rows[(rows < 0) | (rows >= n)]
    if len(outside):  # a negative position would count from the end
        raise UserError(f"image position {int(outside[0])} is not among the {n} held-out images (0 … {n - 1})")
    n_classes = len(tags.classes)
    labels, top = heldout.labels[rows, None], heldout.top_classes[rows]
    for what, values, low in (("true", labels, -1), ("predicted", top[:, :1], 0), ("top-5", top[:, 1:], -1)):
        r, c = next(iter(np.argwhere((values < low) | (values >= n_classes))), (None, None))  # -1: unknown, or none
        if r is not None:
            raise UserError(f"image {ids[rows[r]]}: {what} class {int(values[r, c])} is not among the tag set's "
                            f"{n_classes} classes (0 … {n_classes - 1}); are the held-out records of another "
                            "network or data set?")
    probs = heldout.top_probs[rows]
    r, c = next(iter(np.argwhere(~((probs >= 0) & (probs <= 1)))), (None, None))  # NaN is neither
    if r is not None:
        raise UserError(f"heldout.top_probs[{rows[r]}, {c}] (image {ids[rows[r]]}) is {float(probs[r, c])}, "
                        "not a probability (0 … 1)")
    for m in layers:
        bad = np.flatnonzero(~np.isfinite(heldout.vectors[m][rows]).all(axis=1))
        if len(bad):
            raise UserError(f"{len(bad)} of the {len(rows)} images have NaN or infinite activations in layer {m!r} "
                            f"(heldout.vectors[{m!r}]), e.g. image {ids[rows[bad[0]]]} at position {rows[bad[0]]}: "
                            "their active filters are unknown (an activation overflowed in collection, as float16 "
                            "does under --mixed-precision)")
    return layers


def _require_array(name: str, value: Any, kinds: str, shape: tuple[int | None, ...], what: str) -> None:
    """A UserError naming `name` unless `value` is a numpy array of a dtype kind in `kinds` (numpy's
    `dtype.kind`) and of `shape` (None: any length of at least 1)."""
    if not isinstance(value, np.ndarray) or value.dtype.kind not in kinds:
        got = f"{value.dtype} array" if isinstance(value, np.ndarray) else type(value).__name__
        raise UserError(f"{name} must be a numpy array of {what}, got {got}")
    if value.ndim == len(shape) and value.shape[0] != shape[0]:
        raise UserError(f"{name} has {value.shape[0]} rows for the {shape[0]} images of heldout.image_ids: {what}")
    if value.ndim != len(shape) or any(have != want if want is not None else have < 1
                                       for have, want in zip(value.shape, shape)):
        expected = "×".join("n" if want is None else str(want) for want in shape)
        raise UserError(f"{name} has shape {'×'.join(map(str, value.shape)) or '()'}, expected {expected}: {what}")


def require_true_classes(heldout: HeldOut, purpose: str) -> None:
    """Refuse records with images of unknown true class (label -1: an image file outside a class folder),
    which `purpose` needs: their label would index the last class (numpy) or break the class counts."""
    unknown = np.flatnonzero(heldout.labels < 0)
    if len(unknown):
        raise UserError(f"{len(unknown)} of the {len(heldout)} images have no known true class (e.g. "
                        f"{heldout.image_ids[unknown[0]]}); {purpose} needs the true class of every image: "
                        "put image files in folders named after their classes")


def explain(tags: TagSet, heldout: HeldOut, selections: Sequence[tuple[str, float]] | None = None,
            images: Sequence[int] | None = None) -> list[Explanation]:
    """Explanations of images of a HeldOut record (all, or the given positions), for each selection,
    from the tagged layers the records hold."""
    index = None if images is None else _positions(images)
    layers = check_heldout(tags, heldout, index)
    index = np.arange(len(heldout)) if index is None else index
    chosen = known_selections(tags, selections or tags.selections)
    order = filter_order({m: heldout.vectors[m][index] for m in layers})
    out = []
    for method, parameter in chosen:
        per_layer = tag_counts(tags, order, method, parameter, layers)
        total = sum(per_layer.values())
        actives = {m: order[m][:, :active_count(method, parameter, tags.n_filters[m])] for m in per_layer}
        for row, i in enumerate(index):
            out.append(Explanation(
                image_id=heldout.image_ids[i], method=method, parameter=parameter,
                predicted=[(int(c), float(p)) for c, p in zip(heldout.top_classes[i], heldout.top_probs[i])],
                true_class=int(heldout.labels[i]) if heldout.labels[i] >= 0 else None,
                active={m: actives[m][row].tolist() for m in per_layer},
                layer_counts={m: v[row] for m, v in per_layer.items()},
                counts=total[row],
            ))
    return out


def _positions(images: Sequence[int]) -> np.ndarray:
    """Image positions as int64, each a whole number: numpy turned the id '17' into position 17, 0.9 into 0
    and True into 1, so that another image was explained silently."""
    values = np.asarray(images).ravel().tolist()
    bad = next((v for v in values if isinstance(v, bool) or not isinstance(v, int)), None)
    if bad is not None:
        raise UserError(f"images are positions in the held-out records (whole numbers), got {bad!r}; "
                        "the position of an image id is heldout.image_ids.index(id)")
    return np.asarray(values, np.int64)


def check_same_network(tags: TagSet, stats: ActivationStats, stats_name: str = "the statistics",
                       tags_name: str = "the tags") -> None:
    """Refuse statistics of another model (both hashes known and different) or of other classes than the
    tags: their predictions and explanations would go under the tags' run without a word."""
    hashes = [(x.manifest.get("model") or {}).get("hash") for x in (tags, stats)]
    if all(hashes) and hashes[0] != hashes[1]:
        names = [(x.manifest.get("model") or {}).get("name") or "unnamed" for x in (tags, stats)]
        raise UserError(f"{stats_name} are of another model ({names[1]}, hash {str(hashes[1])[:16]}) than {tags_name} "
                        f"({names[0]}, hash {str(hashes[0])[:16]}): explain with the statistics the tags were made "
                        "from, or of a collection with the same model")
    if list(stats.classes) != list(tags.classes):
        differ = next((f"class {i}: {a!r} vs {b!r}" for i, (a, b) in enumerate(zip(stats.classes, tags.classes))
                       if a != b), f"{len(stats.classes)} vs {len(tags.classes)} classes")
        raise UserError(f"{stats_name} are of other classes than {tags_name} ({differ})")


def parse_selection(text: str, option: str = "selection") -> tuple[str, float]:
    """(method, k or q) of a selection as written: 'k-best 5', 'k 5', 'k=5', 'K-best 5.0', 'q-quantile 10',
    'q 10.0'; `option` names it in errors ('--selection' in the CLI). A method that is none of these is
    named as such: 'foo 5' was looked for in the store, and 'k-best 5.0' refused though 'q-quantile 10.0'
    was taken. The CLI and `kg.error_analysis.error_report` take the same spellings."""
    if not isinstance(text, str):
        raise UserError(f"{option} must be a text such as 'k-best 5' or 'q-quantile 10', got {text!r}")
    method, _, value = text.strip().replace("=", " ").partition(" ")
    method = method.lower()
    method = {"k": "k-best", "q": "q-quantile"}.get(method, method)
    if method not in ("k-best", "q-quantile") and method:
        raise UserError(f"{option} {text!r}: unknown method {method!r}; expected e.g. 'k-best 5' or 'q-quantile 10'")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if method == "k-best" and number.is_integer():
        return method, int(number)
    if method == "q-quantile" and math.isfinite(number):
        return method, number
    if method and not value.strip():  # `-s k-best 5` unquoted: the shell gave the 5 to the next argument
        letter = method[0]
        quote = f": quote the selection with its number, e.g. -s '{method} 5' (or -s {letter}=5)" \
            if option == "--selection" else f", e.g. '{method} 5'"
        raise UserError(f"{option} {text!r} lacks its {letter}{quote}")
    hint = {"k-best": " (k a whole number)", "q-quantile": " (q a number)"}.get(method, "")
    raise UserError(f"{option} {text!r}: expected e.g. 'k-best 5' or 'q-quantile 10'{hint}")


def known_selections(tags: TagSet, selections: Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
    """`selections` as the tag set keys them (`selection_key`), each one it has (else a UserError listing those)."""
    if isinstance(selections, str) or any(isinstance(s, str) or not isinstance(s, Sequence) or len(s) != 2
                                          for s in selections):  # 'k-best 1' or one pair failed to unpack
        raise UserError(f"selections must be (method, k or q) pairs, e.g. [('k-best', 5)], got {selections!r}")
    chosen = [selection_key(method, parameter) for method, parameter in selections]
    for key in chosen:
        if key not in tags.selections:
            have = ", ".join(selection_label(m, p) for m, p in tags.selections)
            raise UserError(f"selection {selection_label(*key)} is not in the tag set; it has: {have}")
    return chosen


@dataclass
class Evaluation:
    """Hits@n over a held-out split, for every selection, scope and target; per-class hit rates."""

    classes: list[str]
    n_images: int
    accuracy: float
    hits: dict[tuple[str, float, str, str], np.ndarray] = field(default_factory=dict)  # -> float [MAX_N]
    tie_aware: dict[tuple[str, float, str, str], np.ndarray] = field(default_factory=dict)  # same, ties at random
    per_class: dict[tuple[str, float, str, str], np.ndarray] = field(default_factory=dict)  # -> [n_classes]
    class_accuracy: np.ndarray = field(default_factory=lambda: np.zeros(0))
    correlation: dict[tuple[str, float, str, str], dict[str, float]] = field(default_factory=dict)
    per_class_n: int = 1

    def rows(self) -> list[dict[str, Any]]:
        """One row per (selection, scope, target) with Hits@1 … Hits@max_n, then the tie-aware
        Hits@1 … Hits@max_n (`tie_aware@n`): the CSV table."""
        out = []
        for (method, p, scope, target), curve in self.hits.items():
            # the parameter as tags.csv writes it: q=10 was '10.0' here, '10' there
            row: dict[str, Any] = {"method": method, "parameter": number_text(p), "scope": scope, "target": target}
            row.update({f"hits@{n}": round(float(curve[n - 1]), 6) for n in range(1, len(curve) + 1)})
            tie_aware = self.tie_aware[method, p, scope, target]
            row.update({f"tie_aware@{n}": round(float(tie_aware[n - 1]), 6) for n in range(1, len(curve) + 1)})
            corr = self.correlation.get((method, p, scope, target), {})
            row.update({k: (round(v, 6) if v == v else "") for k, v in corr.items()})
            out.append(row)
        return out


def evaluate(tags: TagSet, heldout: HeldOut | None, max_n: int = MAX_N, per_class_n: int = 1) -> Evaluation:
    """Hits@n (n = 1…max_n, at most the number of classes) against prediction and truth, from all tagged layers and the last of them
    alone, as ranked (ties share a rank) and tie-aware (ties ordered at random, expected).

    Per-class hit rates (Hits@per_class_n against the true class) are correlated with per-class
    accuracy (Pearson and Spearman, with p-values): the paper's evidence that tags explain.
    """
    from scipy import stats as sps

    if heldout is None or isinstance(heldout, HeldOut) and len(heldout) == 0:
        raise UserError("no held-out images to evaluate on (collect with a held-out split)")
    layers = check_heldout(tags, heldout)
    require_true_classes(heldout, "evaluation (Hits@n against the true class, per-class accuracy)")
    if not is_whole(max_n) or max_n < 1:
        raise UserError(f"max_n must be a whole number of at least 1, got {max_n!r}")  # 0 blamed per_class_n
    max_n = min(max_n, len(tags.classes))  # beyond, every curve is flat (the demo's hits.csv repeated Hits@10 to @50)
    if not is_whole(per_class_n) or not 1 <= per_class_n <= max_n:  # 0 read the hits at max_n, 1.5 failed
        raise UserError(f"per_class_n must be in 1 … max_n ({max_n}: at most the number of classes), got {per_class_n}")
    last = layers[-1]
    n_classes = len(tags.classes)
    labels = heldout.labels
    predictions = heldout.predictions
    correct = predictions == labels
    counts_per_class = np.bincount(labels, minlength=n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        class_accuracy = np.bincount(labels, weights=correct, minlength=n_classes) / counts_per_class
    result = Evaluation(classes=list(tags.classes), n_images=len(heldout), accuracy=float(correct.mean()),
                        class_accuracy=class_accuracy, per_class_n=per_class_n)
    present = counts_per_class > 0
    matrices = {(m, sel): sparse_tags(tags, m, *sel) for m in layers for sel in tags.selections}
    keys = [(method, parameter, scope, target) for method, parameter in tags.selections for scope in SCOPES
            for target in TARGETS]
    hit_sums = {key: np.zeros(max_n) for key in keys}
    tie_aware_sums = {key: np.zeros(max_n) for key in keys}
    class_hits = {key: np.zeros(n_classes) for key in keys}
    # images in chunks, layers one by one: every layer's [images, filters] order and [images, classes] counts
    # held at once took 2.8 GB for 5,000 images of MobileNetV2 (52 layers) over 1,000 classes, and would
    # have taken ten times that for ImageNet's 50,000 held-out images
    for start in range(0, len(heldout), EVALUATION_CHUNK):
        rows = slice(start, start + EVALUATION_CHUNK)
        totals: dict[tuple[str, float], np.ndarray] = {}
        lasts: dict[tuple[str, float], np.ndarray] = {}
        for m in layers:
            order = filter_order({m: heldout.vectors[m][rows]})[m]
            for sel in tags.selections:
                counts = _counts(order, matrices[m, sel], active_count(*sel, tags.n_filters[m]))
                totals[sel] = totals[sel] + counts if sel in totals else counts
                if m == last:
                    lasts[sel] = counts
        for method, parameter, scope, target in keys:
            counts = (totals if scope == "all" else lasts)[method, parameter]
            targets = (predictions if target == "predicted" else labels)[rows]
            hits = hits_at(counts, targets, max_n)
            hit_sums[method, parameter, scope, target] += hits.sum(axis=0)
            tie_aware_sums[method, parameter, scope, target] += tie_aware_hits_at(counts, targets, max_n).sum(axis=0)
            class_hits[method, parameter, scope, target] += np.bincount(
                labels[rows], weights=hits[:, per_class_n - 1], minlength=n_classes)
    for key in keys:
        result.hits[key] = hit_sums[key] / len(heldout)
        result.tie_aware[key] = tie_aware_sums[key] / len(heldout)
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = class_hits[key] / counts_per_class
        result.per_class[key] = rate
        if key[3] == "true":
            result.correlation[key] = _correlations(rate[present], class_accuracy[present], sps)
    return result


def _correlations(x: np.ndarray, y: np.ndarray, sps: Any) -> dict[str, float]:
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        nan = float("nan")
        return {"pearson_r": nan, "pearson_p": nan, "spearman_rho": nan, "spearman_p": nan}
    pearson = sps.pearsonr(x, y)
    spearman = sps.spearmanr(x, y)
    return {"pearson_r": float(pearson[0]), "pearson_p": float(pearson[1]),
            "spearman_rho": float(spearman[0]), "spearman_p": float(spearman[1])}


def plot_evaluation(result: Evaluation, path_stem: str) -> list[str]:
    """Hits@n curves per selection (as the paper's Figure 4), ranked and tie-aware, and per-class hit rate
    vs accuracy: PNG + SVG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    n_max = min(len(next(iter(result.hits.values()))), len(result.classes))  # beyond: flat by definition
    for curves, suffix, what, title in (
            (result.hits, "hits", "Hits@n", "Hits@n"),
            (result.tie_aware, "hits-tie-aware", "tie-aware Hits@n", "Tie-aware Hits@n (ties in random order)")):
        fig, axes = plt.subplots(2, 2, figsize=(11, 8), sharex=True, sharey=True)
        for (row, scope), (col, target) in ((s, t) for s in enumerate(SCOPES) for t in enumerate(TARGETS)):
            ax = axes[row][col]
            for (method, p, sc, tg), curve in curves.items():
                if sc == scope and tg == target:
                    ax.plot(np.arange(1, n_max + 1), curve[:n_max], marker="." if n_max <= 20 else None,
                            label=selection_label(method, p), linestyle="-" if method == K_BEST else "--")
            ax.set_title(f"{'all layers' if scope == 'all' else 'last layer'}, against the {target} class")
            ax.set_xlabel("n")
            ax.set_ylabel(what)
            ax.set_ylim(0, 1.02)
            if n_max > 1:  # a single n: matplotlib warned of identical limits
                ax.set_xlim(1, n_max)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(f"{title} of tag-based explanations ({result.n_images} held-out images)")
        fig.tight_layout()
        for ext in ("png", "svg"):
            fig.savefig(f"{path_stem}-{suffix}.{ext}", dpi=120)
            written.append(f"{path_stem}-{suffix}.{ext}")
        plt.close(fig)

    keys = [k for k in result.per_class if k[2] == "all" and k[3] == "true"]
    fig, ax = plt.subplots(figsize=(6.5, 5))
    for key in keys:
        ax.scatter(result.class_accuracy, result.per_class[key], s=18, label=selection_label(*key[:2]))
    if len(result.classes) <= 20 and keys:
        for c, name in enumerate(result.classes):
            ax.annotate(name, (result.class_accuracy[c], result.per_class[keys[0]][c]), fontsize=7, alpha=0.7)
    ax.set_xlabel("per-class accuracy of the network")
    ax.set_ylabel(f"per-class Hits@{result.per_class_n} against the true class (all layers)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    for ext in ("png", "svg"):
        fig.savefig(f"{path_stem}-per-class.{ext}", dpi=120)
        written.append(f"{path_stem}-per-class.{ext}")
    plt.close(fig)
    return written


def hits_table(result: Evaluation, ns: tuple[int, ...] = (1, 3, 5, 10)) -> str:
    """Hits@n against the prediction, all layers and last layer, one row per selection (named as in the tag
    set: `:g` cut q=33.3333333 to 33.3333, a selection `explain --selection` did not know); then the same
    tie-aware, since ties sharing a rank flatter small n."""
    ns = tuple(n for n in ns if n <= len(next(iter(result.hits.values()))))
    selections = list(dict.fromkeys((m, p) for m, p, _, _ in result.hits))
    width = max(16, *(len(selection_label(m, p)) + 1 for m, p in selections))
    header = (f"{'selection':<{width}}" + "".join(f"{f'all@{n}':>8}" for n in ns)
              + "".join(f"{f'last@{n}':>9}" for n in ns))
    lines = []
    for title, curves in ((f"Hits@n against the network's prediction ({result.n_images:,} held-out images, "
                           f"accuracy {result.accuracy:.1%}); classes of equal tag count share a rank:", result.hits),
                          ("Tie-aware Hits@n (classes of equal tag count in random order, expected):", result.tie_aware)):
        lines += [title, header]
        for method, p in selections:
            cells = [curves[(method, p, scope, "predicted")][n - 1] for scope in ("all", "last") for n in ns]
            lines.append(f"{selection_label(method, p):<{width}}" + "".join(
                f"{c:>8.3f}" if i < len(ns) else f"{c:>9.3f}" for i, c in enumerate(cells)))
    return "\n".join(lines)


def write_evaluation(result: Evaluation, out: Path) -> list[Path]:
    """hits.csv (one row per selection, scope and target), per-class.csv and the plots."""
    out.mkdir(parents=True, exist_ok=True)
    rows = result.rows()
    with (out / "hits.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for row in rows for k in row)), restval="")
        writer.writeheader()
        writer.writerows(rows)
    with (out / "per-class.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        keys = list(result.per_class)
        writer.writerow(["class", "accuracy", *(f"{selection_label(m, p)} {s} {t}" for m, p, s, t in keys)])
        for c, name in enumerate(result.classes):
            writer.writerow([name, result.class_accuracy[c], *(result.per_class[k][c] for k in keys)])
    plots = plot_evaluation(result, str(out / "evaluation"))
    return [out / "hits.csv", out / "per-class.csv", *map(Path, plots)]
