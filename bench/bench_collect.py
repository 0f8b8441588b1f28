"""Collection speed and memory, side by side in one run (issue: FilTag core, item 8).

For each model, on the same decoded batches:
  bare      a compiled forward pass of the model alone: the limit;
  filtag-kg `filtag_kg.collect` (all conv layers, in-graph scaled means, streamed sums);
  baseline  the way the original FilTag scripts work: one image per `predict` call, scikit-learn's
            MinMaxScaler over each layer's output, a Python running mean.
For VGG16 also end to end from an image folder of JPEGs on disk (decoding counts; each side in a
fresh process, as from the CLI, and again in this process after the decoded cases), and peak memory
(max RSS of a fresh process) of `filtag-kg`-style collection from a folder as the image count grows
tenfold.

    .venv/bin/python bench/bench_collect.py            # full run (several minutes on 2 cores)
    .venv/bin/python bench/bench_collect.py --quick    # smaller counts
Results: a table on stdout and JSON in bench/results/collect.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CNN_BATCH_SIZES = (64, 128, 256)  # 64: filtag_kg.collect's default


def bare_and_filtag(model, batches, labels, rounds: int = 3) -> tuple[float, float]:
    """Seconds of the bare forward pass and of filtag-kg's collection step over the same batches,
    alternating batch by batch (best of `rounds` passes each), so that load on the machine hits both alike."""
    import tensorflow as tf

    from filtag_kg.collection import feature_model, make_step
    from filtag_kg.models import conv_layers
    from filtag_kg.records import ActivationStats

    forward = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    names = conv_layers(model)
    features = feature_model(model, names)
    step = make_step(features, len(names))
    for x in {b.shape[0]: b for b in batches}.values():  # trace each batch shape once
        forward(x)
        step(x)

    stats = ActivationStats.empty(names, [str(i) for i in range(int(model.outputs[0].shape[-1]))],
                                  {m: int(features.outputs[j].shape[-1]) for j, m in enumerate(names)})

    def ours(x: tf.Tensor, y: np.ndarray) -> None:
        means, top, probs = step(x)
        stats.add_batch(y, {m: t.numpy() for m, t in zip(names, means)})
        top.numpy(), probs.numpy()

    # batch by batch, bare and ours in turn, so that both see the same load on the machine
    times: dict[str, list[float]] = {"bare": [], "ours": []}
    for _ in range(rounds):
        total = {"bare": 0.0, "ours": 0.0}
        for x, y in zip(batches, labels):
            start = time.perf_counter()
            forward(x).numpy()
            middle = time.perf_counter()
            ours(x, y)
            total["bare"] += middle - start
            total["ours"] += time.perf_counter() - middle
        for name in times:
            times[name].append(total[name])
    return min(times["bare"]), min(times["ours"])


def baseline_collect(model, images, labels, include_setup: bool = False) -> float:
    """The original scripts' way: per image predict, MinMaxScaler per layer output, running means.
    Seconds of the loop; with `include_setup`, also of building the layer taps and the first
    (compiling) predict call, as `filtag_kg.collect`'s own set-up counts in the end-to-end case."""
    import keras
    from sklearn.preprocessing import MinMaxScaler

    from filtag_kg.models import conv_layers

    setup = time.perf_counter()
    names = conv_layers(model)
    taps = keras.Model(model.inputs, [model.get_layer(m).output for m in names])
    taps.predict(images[:1], verbose=0)
    means: dict[tuple[int, str], np.ndarray] = {}
    counts: dict[int, int] = {}
    start = setup if include_setup else time.perf_counter()
    for image, label in zip(images, labels):
        outputs = taps.predict(image[None], verbose=0)
        counts[label] = counts.get(label, 0) + 1
        for m, a in zip(names, outputs):
            scaled = MinMaxScaler().fit_transform(a.reshape(-1, 1)).reshape(a.shape)
            mean = scaled[0].mean(axis=(0, 1))
            old = means.get((label, m), np.zeros_like(mean))
            means[(label, m)] = old + (mean - old) / counts[label]
    return time.perf_counter() - start


def write_folder(root: Path, n: int, size: int, n_classes: int, suffix: str = ".jpg") -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / f"class{i % n_classes}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 255, size=(size, size, 3 if suffix == ".jpg" else 1), dtype=np.uint8)
        Image.fromarray(pixels.squeeze()).save(folder / f"{i:06d}{suffix}")


def baseline_folder(model, root: Path, preprocess, size: int) -> float:
    """Baseline from disk: PIL decode + resize per file, then the per-image loop above, set-up included."""
    from PIL import Image

    files = sorted(root.rglob("*.jpg"))
    start = time.perf_counter()
    images = np.stack([np.asarray(Image.open(f).convert("RGB").resize((size, size)), np.float32) for f in files])
    labels = [int(f.parent.name[5:]) for f in files]
    decode = time.perf_counter() - start
    return decode + baseline_collect(model, preprocess(images), labels, include_setup=True)


def ours_folder(model, root: Path, preprocess, size: int, batch_size: int) -> float:
    """One whole `filtag_kg.collect` run from the folder, set-up (tracing, compiling) included."""
    import filtag_kg
    from filtag_kg.data import InputSpec, image_folder
    from filtag_kg.models import LoadedModel

    n_out = int(model.outputs[0].shape[-1])
    source = image_folder(root, classes=[f"class{c}" for c in range(n_out)], fraction=1.0)
    loaded = LoadedModel(model, model.name, "vgg16", "bench", InputSpec(size, size, 3, preprocess))
    start = time.perf_counter()
    filtag_kg.collect(loaded, source, batch_size=batch_size, progress=False)
    return time.perf_counter() - start


MEMORY_CHILD = """
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
sys.path.insert(0, sys.argv[2])
import filtag_kg
from filtag_kg.data import image_folder
from filtag_kg.models import default_model
from peak_rss import peak_rss_bytes
source = image_folder(sys.argv[1], classes=[f"class{c}" for c in range(10)], fraction=1.0)
filtag_kg.collect(default_model(), source, batch_size=128, progress=False)
print(peak_rss_bytes() // 1024)
"""


FOLDER_CHILD = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from bench_collect import baseline_folder, ours_folder  # first: it quiets TensorFlow's log
import keras
keras.utils.set_random_seed(0)
vgg = keras.applications.VGG16(weights=None)
pre = keras.applications.vgg16.preprocess_input
root = Path(sys.argv[2])
print(ours_folder(vgg, root, pre, 224, 16) if sys.argv[3] == "ours" else baseline_folder(vgg, root, pre, 224))
"""


def folder_in_fresh_process(root: Path, side: str) -> float:
    """Seconds of one side's end-to-end folder run in a new Python process, as a CLI run would be."""
    out = subprocess.run([sys.executable, "-c", FOLDER_CHILD, str(Path(__file__).parent), str(root), side],
                         check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def peak_memory(root: Path) -> int:
    out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(root), str(Path(__file__).parent)], check=True,
                         capture_output=True, text=True)
    return int(out.stdout.strip().splitlines()[-1])  # KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    import keras
    import tensorflow as tf

    from filtag_kg.data import animal_shape
    from filtag_kg.models import _arrays, default_model

    n_vgg = 32 if args.quick else 64
    n_folder = 48 if args.quick else 320
    n_cnn = 2000 if args.quick else 8000
    n_base_cnn = 300 if args.quick else 1000
    rows = []

    def row(name: str, n: int, bare: float | None, ours: float, base: float, n_base: int) -> None:
        rows.append({
            "case": name, "images": n,
            "bare_img_s": n / bare if bare else None, "filtag_img_s": n / ours, "baseline_img_s": n_base / base,
            "vs_bare": (bare / ours) if bare else None, "vs_baseline": (n / ours) / (n_base / base),
        })

    # default CNN on decoded batches
    loaded_cnn, shapes = default_model(), animal_shape()
    cnn = loaded_cnn.model
    x, y = _arrays(shapes.split("train"))
    x, y = x[:n_cnn], y[:n_cnn]
    base_cnn = baseline_collect(cnn, x[:n_base_cnn].astype(np.float32), y[:n_base_cnn])
    for size in CNN_BATCH_SIZES:  # the reductions' share of the work depends on the batch size
        batches = [tf.constant(x[i:i + size]) for i in range(0, len(x), size)]
        labels = [y[i:i + size] for i in range(0, len(y), size)]
        row(f"default CNN, decoded batches of {size}", len(x), *bare_and_filtag(cnn, batches, labels),
            base_cnn, n_base_cnn)

    # evaluation (explanations of every held-out image, all selections) beside collection
    import filtag_kg
    from filtag_kg.explain import evaluate

    stats = filtag_kg.collect(loaded_cnn, shapes, progress=False)
    tags = filtag_kg.tag(stats, k=[1, 3, 5], q=[5, 10, 25])
    start = time.perf_counter()
    evaluate(tags, stats.heldout)
    seconds = time.perf_counter() - start
    evaluation = {"images": len(stats.heldout), "selections": len(tags.selections),
                  "img_s": len(stats.heldout) / seconds}

    # VGG16 (weights none) on decoded batches
    keras.utils.set_random_seed(0)
    vgg = keras.applications.VGG16(weights=None)
    pre = keras.applications.vgg16.preprocess_input
    rng = np.random.default_rng(0)
    images = pre(rng.uniform(0, 255, size=(n_vgg, 224, 224, 3)).astype(np.float32))
    vlabels = rng.integers(0, 1000, n_vgg)
    vb = [tf.constant(images[i:i + 16]) for i in range(0, n_vgg, 16)]
    vl = [vlabels[i:i + 16] for i in range(0, n_vgg, 16)]
    n_base_vgg = n_vgg // 2
    row("VGG16 224x224, decoded batches", n_vgg, *bare_and_filtag(vgg, vb, vl),
        baseline_collect(vgg, images[:n_base_vgg], vlabels[:n_base_vgg]), n_base_vgg)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "vgg"
        write_folder(root, n_folder, 256, 1000)
        ours = folder_in_fresh_process(root, "ours")
        base = folder_in_fresh_process(root, "baseline")
        row("VGG16 224x224, JPEG folder end to end", n_folder, None, ours, base, n_folder)
        # the same in this process, which has run VGG16 above: collection from the folder is slower then
        ours = ours_folder(vgg, root, pre, 224, 16)
        base = baseline_folder(vgg, root, pre, 224)
        row("VGG16 JPEG folder, same process after", n_folder, None, ours, base, n_folder)

        memory = {}
        for n in ((500, 5000) if args.quick else (2000, 20000)):
            folder = Path(tmp) / f"mem{n}"
            write_folder(folder, n, 28, 10, suffix=".png")
            memory[n] = peak_memory(folder)

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())  # ratios differ by CPU: an Intel Xeon and an AMD EPYC VM gave 0.81 and 0.92
    print(f"machine: {cpu}, {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}, "
          f"tensorflow {tf.__version__}")
    print(f"{'case':<40} {'images':>7} {'bare img/s':>11} {'filtag-kg':>10} {'baseline':>9} {'vs bare':>8} {'vs baseline':>12}")
    for r in rows:
        bare = f"{r['bare_img_s']:.1f}" if r["bare_img_s"] else "-"
        vs_bare = f"{r['vs_bare']:.2f}x" if r["vs_bare"] else "-"
        print(f"{r['case']:<40} {r['images']:>7} {bare:>11} {r['filtag_img_s']:>10.1f} {r['baseline_img_s']:>9.1f} "
              f"{vs_bare:>8} {r['vs_baseline']:>11.1f}x")
    print(f"evaluate (Hits@1..50, 6 selections, both scopes and targets) on the default CNN's "
          f"{evaluation['images']} held-out images: {evaluation['img_s']:,.0f} img/s "
          f"(collection: {rows[0]['filtag_img_s']:,.0f} img/s)")
    (n1, m1), (n2, m2) = sorted(memory.items())
    print(f"peak RSS collecting a PNG folder with the default CNN: {n1} images {m1 / 1024:.0f} MiB, "
          f"{n2} images {m2 / 1024:.0f} MiB (ratio {m2 / m1:.2f})")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "collect.json").write_text(json.dumps({
        "machine": {"cpu": cpu, "arch": platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version(), "tensorflow": tf.__version__},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rows": rows, "peak_rss_kib": memory, "evaluate": evaluation,
    }, indent=1))


if __name__ == "__main__":
    main()
