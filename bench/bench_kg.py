"""Benchmark of the knowledge graph at VGG16 scale: export+load rate and bundled-query latency,
embedded pyoxigraph store side by side with rdflib's in-memory Dataset, in one run.

The tagging is synthetic but full size: VGG16's 13 conv layers (4,224 filters, from the real layer
list), the 1,000 ImageNet-1k classes with their wnids, gamma-distributed class means z, and the
selections k ∈ {1,5,25}, q ∈ {1,5,25} (1.7 million tags). Targets: ≥ 200,000 triples/s loaded
into the embedded (on-disk) store, every bundled query under 100 ms.

rdflib keeps about a kilobyte per triple in memory, so the full graph does not fit on a laptop; it
is compared on the same VGG16 shape with fewer selections (`--rdflib-k/--rdflib-q`), and the
embedded store is measured again on exactly that graph for the ratio. rdflib's memory per triple
is measured, and its answers are checked against the embedded store's (row counts).

    python bench/bench_kg.py                       # full run, JSON into bench/results/
    python bench/bench_kg.py --k 1 --q 1 --repeat 3  # a quick one
    python bench/bench_kg.py --semantic --k 1 5 --q 1  # the WordNet queries on a linked tagging
    python bench/bench_kg.py --explanations --k 1 5 --q 1  # error-analysis queries on 200 explained images

`--semantic` links the tagging of --k/--q to WordNet (`filtag-kg link wordnet`: every layer and
selection coarsened), loads tags and links into the embedded store and into rdflib, and times the
bundled semantic queries that need only the links (`SEMANTIC_CASES`) on both.

`--explanations [N]` (N images, 200 if no number is given) explains a synthetic held-out set of N
images (`synthetic_heldout`) with the tagging of --k/--q, loads tags and explanations into a new
embedded store as `filtag-kg evaluate` does (default `class_counts`), links the tagging to WordNet,
and times the bundled error-analysis queries (`explanation_params`) on it and on rdflib, and the
whole `filtag-kg errors` report (`error_report`) once.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

import filtag_kg
from filtag_kg.imagenet import imagenet_index, vgg16_layers
from filtag_kg.kg import queries
from filtag_kg.kg.export import METHOD_NODES, export_tags, run_ids
from filtag_kg.kg.vocab import Minter
from filtag_kg.records import ActivationStats, HeldOut, TagSet
from peak_rss import peak_rss_bytes

TARGET_LOAD = 200_000  # triples/s
TARGET_QUERY = 0.100  # s
SLOW = 2.0  # s: queries slower than this run once
# the bundled queries of the knowledge-graph issue (the semantic and explanation queries need
# linked or per-image data this benchmark does not make), each with typical parameters
# (`query_params`); selection-tags a second time narrowed to one layer
CASES = ("filter-tags", "class-filters", "class-specific-filters", "similar-classes", "layer-tag-statistics",
         "run-diff", "networks", "runs", "selection-tags", "selection-tags, one layer")


def vgg16_tags(k: Iterable[int], q: Iterable[float], seed: int = 0) -> TagSet:
    """A synthetic tagging of VGG16's conv layers on ImageNet-1k (real layer list, labels, wnids)."""
    layers = vgg16_layers()
    conv = {e["name"]: int(e["filters"]) for e in layers if e["type"] == "Conv2D"}
    index = imagenet_index()
    manifest = {
        "model": {"name": "VGG16 (synthetic z)", "hash": "5e" * 32, "family": "VGG16", "source": "bench",
                  "layers": layers},
        "dataset": {"name": "ImageNet-1k", "label_space": "imagenet1k", "root": None, "wnids": list(index.wnids)},
        "split": {"name": "train", "fraction": 1.0, "seed": seed},
        "software": {"filtag-kg": "bench"},
        "created": "2026-01-01T00:00:00+00:00",
        "n_images": 50_000,
    }
    stats = ActivationStats.empty(list(conv), list(index.keras_labels), conv, manifest)
    rng = np.random.default_rng(seed)
    stats.counts[:] = 50
    for m in conv:
        stats.sums[m] = rng.gamma(2.0, 1.0, stats.sums[m].shape) * 50
    return filtag_kg.tag(stats, k=list(k), q=list(q))


# the WordNet queries that need no explanations or ConceptNet: a broad concept (dog: 118 of the
# 1,000 classes) and a narrow one (retriever: 5), the default share 1 and coarsening's 2/3
SEMANTIC_CASES = {
    "semantic-filters-under-concept, dog": ("dog.n.01", {}),
    "semantic-filters-under-concept, dog, share 2/3": ("dog.n.01", {"share": 2 / 3}),
    "semantic-filters-under-concept, retriever": ("retriever.n.01", {}),
    "semantic-layer-groups, one layer": (None, {"layer": "block5_conv3"}),
    "semantic-layer-groups": (None, {}),
}


def semantic_params() -> dict[str, tuple[str, dict[str, object]]]:
    """`SEMANTIC_CASES` as (bundled query, parameters), concepts as their synset IRIs."""
    from filtag_kg.kg.wordnet import WordNet, synset_iri

    wordnet = WordNet.load()
    return {case: (case.split(",")[0], {**p, **({"concept": synset_iri(wordnet.synset(c)).value} if c else {})})
            for case, (c, p) in SEMANTIC_CASES.items()}


def semantic(tags: TagSet, directory: str, repeat: int, timeout: float) -> dict[str, Any]:
    """Link `tags` to WordNet, load tags and links into a new embedded store and into rdflib, and
    time `SEMANTIC_CASES` on both."""
    from filtag_kg.kg.coarsen import link_wordnet
    from filtag_kg.kg.store import Store

    start = time.perf_counter()
    linking = link_wordnet(tags)
    link_s = time.perf_counter() - start
    with Store(directory) as store:
        store.load(export_tags(tags))
        store.load(linking.quads, linking.graph)
        triples = len(store)
    print(f"  linked and coarsened in {link_s:.1f} s: {len(linking.quads):,} quads; {triples:,} in the store",
          flush=True)
    dataset, r_triples, r_seconds, _ = load_rdflib([*export_tags(tags), *linking.quads])
    result = {"tags": len(tags), "selections": tags.selections, "link_s": link_s, "triples": triples,
              "rdflib_triples": r_triples, "rdflib_load_s": r_seconds}
    result["queries"] = run_queries(directory, semantic_params(), repeat, timeout, dataset)
    return result


# the error-analysis queries timed besides every bundled `errors-*` query, and the one selection they
# are asked about (where they take one)
EXPLANATION_QUERIES = ("coarse-errors", "coarse-image-explanation")
EXPLAINED_SELECTION = "k-best 5"
RIGHT = 0.7  # share of the synthetic held-out images classified right


def synthetic_heldout(tags: TagSet, n_images: int, seed: int = 0) -> HeldOut:
    """Held-out records of `n_images` images of the classes of `tags`, seeded: 5 distinct random
    predictions per image, the true label the top-1 for about `RIGHT` of them (another class for
    the rest), random top-5 probabilities, random activations per layer."""
    rng = np.random.default_rng(seed)
    n_classes = len(tags.classes)
    top = np.array([rng.choice(n_classes, 5, replace=False) for _ in range(n_images)], dtype=np.int64)
    wrong = (top[:, 0] + rng.integers(1, n_classes, n_images)) % n_classes  # never the top-1
    labels = np.where(rng.random(n_images) < RIGHT, top[:, 0], wrong)
    probs = -np.sort(-rng.dirichlet(np.ones(10), n_images)[:, :5], axis=1)
    wnids = tags.manifest["dataset"]["wnids"]
    return HeldOut([f"{wnids[c]}/img{i}.JPEG" for i, c in enumerate(labels)], np.arange(n_images, dtype=np.int64),
                   labels, top, probs.astype(np.float32),
                   {m: rng.random((n_images, tags.n_filters[m])).astype(np.float32) for m in tags.layers})


def explanation_params(tags: TagSet, heldout: HeldOut) -> dict[str, tuple[str, dict[str, object]]]:
    """Every bundled `errors-*` query and `EXPLANATION_QUERIES`, each with the parameters it declares
    out of: `EXPLAINED_SELECTION`, n=1, and the first misclassified image of `heldout` (its node, its
    true and predicted class); a required parameter not among them is refused, naming the query."""
    from filtag_kg.kg.explanations import images_key

    wrong = next((i for i in range(len(heldout)) if heldout.labels[i] != heldout.top_classes[i, 0]), None)
    if wrong is None:
        raise ValueError(f"no misclassified image among the {len(heldout)} held-out images: give more images")
    truth, predicted = tags.classes[heldout.labels[wrong]], tags.classes[heldout.top_classes[wrong, 0]]
    values: dict[str, object] = {
        "selection": EXPLAINED_SELECTION, "n": 1, "class": truth, "true": truth, "predicted": predicted,
        "image": Minter().image(images_key(tags.manifest["dataset"]), heldout.image_ids[wrong]).value,
    }
    cases = {}
    for name in [n for n in queries.bundled_names() if n.startswith("errors-")] + list(EXPLANATION_QUERIES):
        declared = queries.load(name).parameters
        missing = [p.name for p in declared if p.required and p.name not in values]
        if missing:
            raise ValueError(f"bundled query {name!r} requires {', '.join(missing)}, which explanation_params "
                             "gives no value")
        cases[name] = (name, {p.name: values[p.name] for p in declared if p.name in values})
    return cases


def explanations(tags: TagSet, n_images: int, directory: str, repeat: int, timeout: float) -> dict[str, Any]:
    """Explain `n_images` synthetic held-out images with `tags`, load tags and explanations into a new
    embedded store as `load_explanations` does and link the tagging to WordNet (for the coarse
    queries), load the same into rdflib, and time `explanation_params` on both and `error_report`
    once on the embedded store."""
    from itertools import chain

    from filtag_kg.kg.coarsen import link_wordnet
    from filtag_kg.kg.error_analysis import error_report
    from filtag_kg.kg.explanations import CLASS_COUNTS, export_explanations
    from filtag_kg.kg.store import Store

    heldout = synthetic_heldout(tags, n_images)
    explained = list(export_explanations(tags, heldout, class_counts=CLASS_COUNTS))
    start = time.perf_counter()
    with Store(directory) as store:
        loaded = store.load(chain(export_tags(tags), explained))
    load_s = time.perf_counter() - start
    linking = link_wordnet(tags)
    with Store(directory) as store:
        store.load(linking.quads, linking.graph)
        triples = len(store)
    mb = _disk_bytes(directory) / 2**20
    right = float(np.mean(heldout.labels == heldout.top_classes[:, 0]))
    print(f"  {n_images} images ({right:.0%} right), {len(explained):,} explanation quads; tags and explanations "
          f"loaded in {load_s:.1f} s; with {len(linking.quads):,} WordNet quads {triples:,} triples, {mb:.0f} MB",
          flush=True)
    dataset, r_triples, r_seconds, _ = load_rdflib([*export_tags(tags), *explained, *linking.quads])
    print(f"  rdflib: {r_triples:,} triples loaded in {r_seconds:.1f} s", flush=True)
    result: dict[str, Any] = {
        "tags": len(tags), "selections": tags.selections, "images": n_images, "right": right,
        "class_counts": CLASS_COUNTS, "explanation_quads": len(explained), "loaded_quads": loaded, "load_s": load_s,
        "wordnet_quads": len(linking.quads), "triples": triples, "store_mb": mb,
        "rdflib_triples": r_triples, "rdflib_load_s": r_seconds,
    }
    result["queries"] = run_queries(directory, explanation_params(tags, heldout), repeat, timeout, dataset)
    result["row_count_mismatches"] = [n for n, r in result["queries"].items()
                                      if None not in (r["rows"], r["rdflib_rows"]) and r["rows"] != r["rdflib_rows"]]
    with open_read_only(directory) as store:
        start = time.perf_counter()
        result["error_report"] = error_report(store, EXPLAINED_SELECTION)
        result["error_report_s"] = time.perf_counter() - start
    print(f"  error_report (filtag-kg errors --selection '{EXPLAINED_SELECTION}'): {result['error_report_s']:.1f} s",
          flush=True)
    return result


def query_params(tags: TagSet) -> dict[str, tuple[str, dict[str, object]]]:
    """Every case of `CASES`: (bundled query, its parameters): a late layer, the first class, the
    first selection, k=1 vs k=5 for the diff."""
    run = Minter().run(run_ids(tags).tagging).value
    first = tags.selections[0]
    second = tags.selections[1] if len(tags.selections) > 1 else first
    cls = tags.classes[0]
    selection = {"run": run, "method": METHOD_NODES[first[0]], "parameter": first[1]}
    params: dict[str, dict[str, object]] = {
        "filter-tags": {"layer": "block5_conv3", "filter": 7},
        "class-filters": {"class": cls, "run": run},
        "class-specific-filters": {"run": run},
        "similar-classes": {"class": cls, "run": run},
        "layer-tag-statistics": {"run": run},
        "run-diff": {"run1": run, "method1": METHOD_NODES[first[0]], "parameter1": first[1],
                     "run2": run, "method2": METHOD_NODES[second[0]], "parameter2": second[1]},
        "selection-tags": selection,
        "selection-tags, one layer": {**selection, "layer": "block5_conv3"},
    }
    return {case: (case.split(",")[0], params.get(case, {})) for case in CASES}


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """(median, first, result) of `repeat` timed calls after the first (cold) one; a call slower
    than SLOW seconds is not repeated (its one time is reported)."""
    start = time.perf_counter()
    result = fn()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeat if first < SLOW else 0):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return (statistics.median(times) if times else first), first, result


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def load_embedded(tags: TagSet, directory: str) -> dict[str, Any]:
    """Export and load into a new on-disk store the way `filtag-kg load` does, timing the load
    (streamed bulk load and commit) and the compaction after it apart; the store is closed after."""
    from filtag_kg.kg.store import Store

    with Store(directory) as store:
        start = time.perf_counter()
        store.load(export_tags(tags), optimize=False)
        loaded = time.perf_counter()
        store.oxigraph.optimize()
        compaction = time.perf_counter() - loaded
        triples = len(store)
    seconds = loaded - start
    return {"tags": len(tags), "selections": tags.selections, "triples": triples, "load_s": seconds,
            "load_rate": triples / seconds, "compaction_s": compaction,
            "load_rate_with_compaction": triples / (seconds + compaction)}


def load_breakdown(tags: TagSet, directory: str) -> dict[str, float]:
    """Where export+load time goes: the export alone (quads consumed, nothing stored), and
    pyoxigraph's bulk loader alone on the same quads built beforehand (on disk, then flushed)."""
    import pyoxigraph

    start = time.perf_counter()
    n = sum(1 for _ in export_tags(tags))
    export_s = time.perf_counter() - start
    quads = list(export_tags(tags))
    store = pyoxigraph.Store(directory)
    start = time.perf_counter()
    store.bulk_extend(quads)
    store.flush()
    loader_s = time.perf_counter() - start
    return {"quads": n, "export_s": export_s, "export_rate": n / export_s,
            "bulk_loader_s": loader_s, "bulk_loader_rate": n / loader_s}


def side_by_side(k: list[int], q: list[float], directory: str, ways: tuple[str, ...],
                 measure: Callable[[str, list[int], list[float], str], dict[str, float]], timeout: float) -> dict[str, Any]:
    """`measure(path, k, q, way)` for each way, on copies of one store holding the tagging
    of `k`/`q`, each in a fresh process (RocksDB's background threads do not survive a fork),
    given up after `timeout` s."""
    import multiprocessing
    import shutil

    first = os.path.join(directory, ways[0])
    load_embedded(vgg16_tags(k, q), first)
    for way in ways[1:]:
        shutil.copytree(first, os.path.join(directory, way))
    out: dict[str, Any] = {}
    for way in ways:
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            try:
                out[way] = pool.apply_async(measure, (os.path.join(directory, way), k, q, way)).get(timeout)
            except multiprocessing.TimeoutError:
                out[way] = {"timeout_s": timeout}
    return out


def _never_rebuild() -> None:
    """Make `Store` drop and replace graphs of any size without rebuilding the store, for the ways
    measured against rebuilding: both size rules off, since a run of the tagging of --k/--q that
    the big graphs' rule misses still meets the smaller graphs' (at least REBUILD_SMALL_MIN_QUADS
    quads, the rest of the store fewer)."""
    from filtag_kg.kg import store as store_module

    store_module.REBUILD_MIN_QUADS = 2**63
    store_module.REBUILD_SMALL_MIN_QUADS = 2**63


def _timed_reload(path: str, k: list[int], q: list[float], way: str) -> dict[str, float]:
    """Reloading a run exported otherwise (`similar_classes` 20 -> 10: the run's graph changes a
    little): as `Store.load` does for a graph that outweighs the rest of the store ("rebuild": the
    store rebuilt with the new content), as it does for others ("differing triples": removing and
    adding only the triples that differ), or as it did before 2026-12-01 ("whole graph": removing
    the whole old graph quad by quad and bulk-loading the new one, `_full_replacement`); with the
    peak RSS."""
    from filtag_kg.kg import store as store_module
    from filtag_kg.kg.store import Store

    tags = vgg16_tags(k, q)
    if way != "rebuild":
        _never_rebuild()
    if way == "whole graph":
        store_module._diff = _full_replacement
    with Store(path) as store:
        before = len(store)
        start = time.perf_counter()
        given = store.load(export_tags(tags, similar_classes=10), optimize=False)
        seconds = time.perf_counter() - start
        after = len(store)
    return {"quads_given": given, "store_before": before, "store_after": after, "seconds": seconds,
            "max_rss_gb": peak_rss_bytes() / 2**30}


def _timed_drop(path: str, k: list[int], q: list[float], way: str) -> dict[str, float]:
    """Dropping the run's graph as `Store.drop` does ("rebuild": the graph outweighs the rest of the
    store, which is copied into a new store), or quad by quad and compacted afterwards, as it did
    before commit daac377 ("removal"); with the peak RSS and the store's size on disk afterwards."""
    from filtag_kg.kg.store import Store
    from filtag_kg.kg.vocab import FT

    if way == "removal":
        _never_rebuild()
    with Store(path) as store:
        (graph,), = store.rows(f"SELECT ?g WHERE {{ GRAPH ?g {{ ?run a <{FT}TaggingRun> }} }}")
        before = len(store)
        start = time.perf_counter()
        store.drop(graph)
        seconds = time.perf_counter() - start
        after = len(store)
    return {"store_before": before, "store_after": after, "seconds": seconds,
            "max_rss_gb": peak_rss_bytes() / 2**30,
            "disk_gb": _disk_bytes(path) / 2**30}


def _disk_bytes(path: str) -> int:
    """The size of a store's files on disk."""
    return sum(f.stat().st_size for f in Path(path).iterdir())


def _full_replacement(path: Path, graph: Any, store: Any, prefix: str, progress: bool) -> Any:
    """The change `Store.load` made before 2026-12-01: every old triple out (after a dump of the
    graph, as its backup was), every new one in."""
    from pyoxigraph import RdfFormat

    from filtag_kg.kg.store import _Change

    remove = Path(f"{prefix}.remove.nt")
    store.dump(str(remove), RdfFormat.N_TRIPLES, from_graph=graph)
    return _Change(remove, path)


def load_rdflib(quads: Iterable[Any]) -> tuple[Any, int, float, int]:
    """Serialize `quads` (an export) as N-Quads and parse them into rdflib's in-memory Dataset;
    (dataset, triples, seconds, bytes)."""
    import rdflib
    from pyoxigraph import RdfFormat, serialize

    before = rss_bytes()
    start = time.perf_counter()
    data = serialize(quads, format=RdfFormat.N_QUADS)
    dataset = rdflib.Dataset(default_union=True)
    dataset.parse(data=data, format="nquads")
    seconds = time.perf_counter() - start
    del data
    return dataset, len(dataset), seconds, rss_bytes() - before


def in_child(fn: Callable[[], Any], timeout: float) -> Any:
    """fn() in a forked process, or None if it takes longer than `timeout` seconds (then killed)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=lambda: send.send(fn()), daemon=True)
    process.start()
    ready = receive.poll(timeout)
    result = receive.recv() if ready else None
    process.kill()
    process.join()
    return result


def open_read_only(path: str) -> Any:
    """A second, read-only handle on the embedded store (used in the forked query processes)."""
    from filtag_kg.kg.store import Store

    return Store(path, read_only=True)


def run_queries(
    path: str, cases: dict[str, tuple[str, dict[str, object]]], repeat: int, timeout: float,
    rdflib_dataset: Any = None,
) -> dict[str, dict[str, Any]]:
    """Latency of every bundled query on the store at `path` (and on rdflib, with the same
    VALUES-bound text); each query runs in a child process and is given up after `timeout` s."""
    out: dict[str, dict[str, Any]] = {}
    for case, (name, p) in cases.items():
        q = queries.load(name)

        def embedded(q: queries.Query = q, p: dict[str, object] = p) -> tuple[float, float, int]:
            store = open_read_only(path)
            median, first, result = timed(lambda: queries.run(q, store, p), repeat)
            return median, first, len(result)

        row: dict[str, Any] = {"params": {k: str(v) for k, v in p.items()}}
        measured = in_child(embedded, timeout)
        row.update(dict(zip(("median_s", "first_s", "rows"), measured)) if measured else
                   {"median_s": None, "first_s": None, "rows": None, "timeout_s": timeout})
        if rdflib_dataset is not None:
            text = q.with_values(q.bind(p))

            def in_rdflib(text: str = text) -> tuple[float, float, int]:
                median, first, result = timed(lambda: list(rdflib_dataset.query(text)), max(1, repeat // 3))
                return median, first, len(result)

            measured = in_child(in_rdflib, timeout)
            row.update(dict(zip(("rdflib_median_s", "rdflib_first_s", "rdflib_rows"), measured)) if measured else
                       {"rdflib_median_s": None, "rdflib_first_s": None, "rdflib_rows": None})
        out[case] = row
        print(f"  {case:28s} {_ms(row['median_s'], timeout):>12s}  ({row['rows']} rows)"
              + (f"   rdflib {_ms(row['rdflib_median_s'], timeout):>12s} ({row['rdflib_rows']} rows)"
                 if rdflib_dataset is not None else ""), flush=True)
    return out


def _ms(seconds: float | None, timeout: float) -> str:
    return f"> {timeout:.0f} s" if seconds is None else f"{seconds * 1000:.1f} ms"


def machine() -> dict[str, Any]:
    import pyoxigraph
    import rdflib

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(mem_kb / 2**20, 1), "os": platform.platform(),
            "python": platform.python_version(), "pyoxigraph": pyoxigraph.__version__, "rdflib": rdflib.__version__}


def table(full: dict[str, Any], small: dict[str, Any], timeout: float) -> str:
    """The results as a Markdown table: full size on the embedded store; the smaller graph on both."""
    lines = [
        f"| | embedded, full ({full['triples']:,} triples) | embedded, {small['triples']:,} triples "
        f"| rdflib, {small['rdflib_triples']:,} triples | rdflib / embedded |",
        "|---|---:|---:|---:|---:|",
        f"| export+load, triples/s | {full['load_rate']:,.0f} | {small['load_rate']:,.0f} "
        f"| {small['rdflib_load_rate']:,.0f} | {small['rdflib_load_s'] / small['load_s']:.1f}× the time |",
        f"| export+load+compaction, triples/s | {full['load_rate_with_compaction']:,.0f} "
        f"| {small['load_rate_with_compaction']:,.0f} | | |",
    ]
    for name, row in full["queries"].items():
        s = small["queries"][name]
        ratio = (f"{s['rdflib_median_s'] / s['median_s']:.0f}×" if s["median_s"] and s["rdflib_median_s"]
                 else "n/a")
        flag = "" if row["median_s"] is not None and row["median_s"] < TARGET_QUERY else " ✗"
        lines.append(f"| `{name}` | {_ms(row['median_s'], timeout)}{flag} | {_ms(s['median_s'], timeout)} "
                     f"| {_ms(s['rdflib_median_s'], timeout)} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, nargs="+", default=[1, 5, 25])
    parser.add_argument("--q", type=float, nargs="+", default=[1.0, 5.0, 25.0])
    parser.add_argument("--rdflib-k", type=int, nargs="+", default=[1])
    parser.add_argument("--rdflib-q", type=float, nargs="*", default=[])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per query after a cold one")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds before a query is given up")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--load-breakdown", action="store_true",
                        help="only measure the export alone and the bulk loader alone at full size (~3 minutes)")
    parser.add_argument("--replace", action="store_true",
                        help="only measure reloading a run exported otherwise (a few of its triples change) by "
                             "rebuilding the store, by changing only the triples that differ and by replacing "
                             "the whole graph, on the tagging of --k/--q (try --k 1 5 --q 1)")
    parser.add_argument("--drop", action="store_true",
                        help="only measure dropping the run of the tagging of --k/--q from a store that holds "
                             "nothing else but its network and classes, by rebuilding the store and by removal")
    parser.add_argument("--semantic", action="store_true",
                        help="only time the WordNet queries on the tagging of --k/--q linked to WordNet, "
                             "side by side with rdflib (try --k 1 5 --q 1)")
    parser.add_argument("--explanations", type=int, nargs="?", const=200, metavar="N",
                        help="only time the error-analysis queries on N synthetic held-out images (200 if N is "
                             "left out) explained with the tagging of --k/--q and linked to WordNet, side by side "
                             "with rdflib, and the whole errors report (try --k 1 5 --q 1)")
    args = parser.parse_args(argv)

    result: dict[str, Any] = {"machine": machine(), "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}"
    if args.load_breakdown:
        with tempfile.TemporaryDirectory(prefix="bench-kg-") as tmp:
            result["load_breakdown"] = parts = load_breakdown(vgg16_tags(args.k, args.q), tmp)
        print(f"{parts['quads']:,} quads: export alone {parts['export_rate']:,.0f}/s ({parts['export_s']:.1f} s), "
              f"bulk loader alone {parts['bulk_loader_rate']:,.0f}/s ({parts['bulk_loader_s']:.1f} s)")
        return _save(result, args.out / f"bench_kg-load-{stamp}.json")
    if args.semantic:
        with tempfile.TemporaryDirectory(prefix="bench-kg-") as tmp:
            tags = vgg16_tags(args.k, args.q)
            print(f"{len(tags):,} tags, selections {tags.selections}", flush=True)
            result["semantic"] = done = semantic(tags, os.path.join(tmp, "linked"), args.repeat, args.timeout)
        slow = [n for n, r in done["queries"].items() if r["median_s"] is None or r["median_s"] >= TARGET_QUERY]
        print(f"queries over {TARGET_QUERY * 1000:.0f} ms: {', '.join(slow) or 'none'}")
        return _save(result, args.out / f"bench_kg-semantic-{stamp}.json")
    if args.explanations is not None:
        if args.explanations < 1:
            parser.error(f"--explanations {args.explanations}: give a number of images of at least 1")
        with tempfile.TemporaryDirectory(prefix="bench-kg-") as tmp:
            tags = vgg16_tags(args.k, args.q)
            print(f"{len(tags):,} tags, selections {tags.selections}", flush=True)
            result["explanations"] = done = explanations(tags, args.explanations, os.path.join(tmp, "explained"),
                                                         args.repeat, args.timeout)
        slow = [n for n, r in done["queries"].items() if r["median_s"] is None or r["median_s"] >= TARGET_QUERY]
        print(f"queries over {TARGET_QUERY * 1000:.0f} ms: {', '.join(slow) or 'none'}; "
              f"rdflib row-count mismatches: {', '.join(done['row_count_mismatches']) or 'none'}")
        return _save(result, args.out / f"bench_kg-explanations-{stamp}.json")
    for mode, ways, measure in (("replace", ("rebuild", "differing triples", "whole graph"), _timed_reload),
                                ("drop", ("rebuild", "removal"), _timed_drop)):
        if not getattr(args, mode):
            continue
        with tempfile.TemporaryDirectory(prefix="bench-kg-") as tmp:
            result[mode] = done = side_by_side(args.k, args.q, tmp, ways, measure, timeout=3600)
        for way, r in done.items():
            print(f"{way:17s} " + (f"{r['store_before']:,} -> {r['store_after']:,} quads in {r['seconds']:.1f} s, "
                                   f"peak RSS {r['max_rss_gb']:.2f} GiB" if "seconds" in r else "given up"))
        result["ratios"] = {}
        for way in ways[1:]:
            ours, other = done[ways[0]], done[way]
            if "seconds" in ours and "seconds" in other:
                result["ratios"][way] = {"time": ours["seconds"] / other["seconds"],
                                         "memory": ours["max_rss_gb"] / other["max_rss_gb"]}
                print(f"{ways[0]} vs {way}: {other['seconds'] / ours['seconds']:.1f}x faster, "
                      f"{result['ratios'][way]['memory']:.2f}x the memory")
        return _save(result, args.out / f"bench_kg-{mode}-{stamp}.json")
    with tempfile.TemporaryDirectory(prefix="bench-kg-") as tmp:
        tags = vgg16_tags(args.k, args.q)
        print(f"full: {len(tags):,} tags of {sum(tags.n_filters.values())} filters, {len(tags.classes)} classes, "
              f"selections {tags.selections}", flush=True)
        path = os.path.join(tmp, "full")
        full = load_embedded(tags, path)
        print(f"  export+load: {full['triples']:,} triples in {full['load_s']:.1f} s = {full['load_rate']:,.0f} "
              f"triples/s; compaction {full['compaction_s']:.1f} s (with it: {full['load_rate_with_compaction']:,.0f} "
              "triples/s)", flush=True)
        full["queries"] = run_queries(path, query_params(tags), args.repeat, args.timeout)
        del tags

        small_tags = vgg16_tags(args.rdflib_k, args.rdflib_q)
        print(f"comparison: {len(small_tags):,} tags, selections {small_tags.selections}", flush=True)
        path = os.path.join(tmp, "small")
        small = load_embedded(small_tags, path)
        dataset, r_triples, r_seconds, r_bytes = load_rdflib(export_tags(small_tags))
        small.update(rdflib_triples=r_triples, rdflib_load_s=r_seconds, rdflib_load_rate=r_triples / r_seconds,
                     rdflib_bytes_per_triple=r_bytes / max(r_triples, 1))
        print(f"  embedded: {small['load_rate']:,.0f} triples/s; rdflib: {r_triples / r_seconds:,.0f} triples/s, "
              f"{small['rdflib_bytes_per_triple']:.0f} bytes/triple "
              f"(the full graph would need ~{small['rdflib_bytes_per_triple'] * full['triples'] / 2**30:.0f} GiB)",
              flush=True)
        small["queries"] = run_queries(path, query_params(small_tags), args.repeat, args.timeout, dataset)
        mismatched = [n for n, r in small["queries"].items()
                      if None not in (r["rows"], r["rdflib_rows"]) and r["rows"] != r["rdflib_rows"]]
        small["row_count_mismatches"] = mismatched

    result.update(full=full, comparison=small, targets={"load_triples_per_s": TARGET_LOAD, "query_s": TARGET_QUERY})
    missed = [n for n, r in full["queries"].items() if r["median_s"] is None or r["median_s"] >= TARGET_QUERY]
    result["missed"] = {"load": full["load_rate"] < TARGET_LOAD, "queries": missed}
    print()
    print(table(full, small, args.timeout))
    print(f"\nload target {TARGET_LOAD:,}/s: {'met' if full['load_rate'] >= TARGET_LOAD else 'MISSED'}; "
          f"queries over {TARGET_QUERY * 1000:.0f} ms: {', '.join(missed) or 'none'}; "
          f"rdflib row-count mismatches: {', '.join(mismatched) or 'none'}")
    return _save(result, args.out / f"bench_kg-{stamp}.json")


def _save(result: dict[str, Any], path: Path) -> int:
    """Write a benchmark's results as JSON and say where; the exit code."""
    path.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
