"""`link`, `explain`, `evaluate` and `errors`, tried by hand with odd input: each test a defect found
so (its docstring says what the command did before). Small synthetic tag sets, no model: fast."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest

import filtag_kg
from filtag_kg.records import ActivationStats, HeldOut


def _tag_set(folder: Path, classes: list[str], ids: list[str] | None = None) -> None:
    """Statistics of `classes` over one layer of 3 filters with held-out images `ids` (default: one) in
    folder/stats, and their k=1 tags in folder/tags."""
    ids = ids or ["i0"]
    n = len(ids)
    rng = np.random.default_rng(0)
    stats = ActivationStats.empty(["l1"], classes, {"l1": 3},
                                  {"dataset": {"name": folder.name, "label_space": folder.name}})
    stats.counts[:] = 1
    stats.sums["l1"] = rng.random((len(classes), 3))
    stats.heldout = HeldOut(ids, np.arange(n), np.zeros(n, np.int64), np.tile([1, 0, -1, -1, -1], (n, 1)),
                            np.tile(np.float32([0.8, 0.2, 0, 0, 0]), (n, 1)), {"l1": rng.random((n, 3), np.float32)})
    stats.save(folder / "stats")
    filtag_kg.tag(stats, k=1).save(folder / "tags")


def _graph_sizes(store: Path) -> dict[str, int]:
    """Triples per named graph of the embedded store at `store`."""
    from filtag_kg.kg.store import Store

    with Store(store, read_only=True) as db:
        return {g: int(n) for g, n in db.rows("SELECT ?g (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } } GROUP BY ?g")}


def test_link_wordnet_refuses_a_run_no_class_of_which_links(run_cli, cli_ok, wn, tmp_path: Path) -> None:
    """`link wordnet` on a run none of whose labels is a WordNet noun wrote an empty WordNet graph with
    exit 0, replacing the one an earlier linking with --mapping had filled."""
    _tag_set(tmp_path, ["xqzzy", "blorpf"])
    store = tmp_path / "store"
    cli_ok("load", tmp_path / "tags", "--store", store)
    mapping = tmp_path / "map.tsv"
    mapping.write_text("xqzzy\tcat.n.01\nblorpf\tdog.n.01\n")
    assert "\n2 of 2 classes of " in cli_ok("link", "wordnet", "--store", store, "--mapping", mapping)
    before = _graph_sizes(store)
    wordnet_graph = next(g for g in before if g.endswith("/wordnet"))
    assert before[wordnet_graph] > 0
    code, out, err = run_cli("link", "wordnet", "--store", store)
    assert code == 2 and "0 of 2 classes" in out and "unmatched: 'xqzzy'" in out and "triples in graph" not in out
    run = wordnet_graph.replace("/graph/", "/run/").rsplit("/", 1)[0]
    assert (f"Error: no class of run {run} is linked to WordNet (none of its 2 classes found a synset; see the "
            "'unmatched' lines above), so the store is unchanged: give their synsets with --mapping FILE") in err, err
    assert _graph_sizes(store) == before
    (tmp_path / "empty.tsv").write_text("# nothing mapped\n")
    code, _, err = run_cli("link", "wordnet", "--store", store, "--mapping", tmp_path / "empty.tsv")
    assert code == 2 and f"the mapping file {tmp_path / 'empty.tsv'} maps none of them either" in err, err
    assert _graph_sizes(store) == before


def test_link_conceptnet_refuses_the_api_options_with_a_dump(run_cli, tmp_path: Path) -> None:
    """`link conceptnet --dump FILE --api URL --offline` read the dump and ignored --api and --offline
    (and --cache, --interval, --timeout, --retries) without a word."""
    dump = tmp_path / "dump.csv.gz"
    for options, named in ((["--api", "http://127.0.0.1:1", "--offline"], "--api, --offline apply"),
                           (["--timeout", "3"], "--timeout applies"),
                           (["--cache", tmp_path, "--retries", "0", "--interval", "0"], "--cache, --interval, --retries apply")):
        code, out, err = run_cli("link", "conceptnet", "--store", tmp_path / "none", "--dump", dump, *options)
        assert (code, out) == (2, "") and (f"Error: {named} to the ConceptNet web API, but --dump reads the local "
                                           "dump instead: give either --dump or the API's options") in err, err
    code, _, err = run_cli("link", "conceptnet", "--store", tmp_path / "none", "--dump", dump)  # the defaults: fine
    assert code == 2 and "no store at" in err


def test_link_conceptnet_writes_no_graph_without_a_linked_class_or_a_fetched_concept(run_cli, cli_ok,
                                                                                     tmp_path: Path) -> None:
    """Classes none of whose labels gives a ConceptNet term ('...') were 'linked' into a graph of one
    triple with exit 0, replacing any earlier one; with --partial, an API that answered nothing (or
    --offline without a cache) emptied the graph; --offline was told to 'run again'."""
    _tag_set(tmp_path / "dots", ["...", "!!!"])
    store = tmp_path / "store"
    cli_ok("load", tmp_path / "dots" / "tags", "--store", store)
    dump = tmp_path / "dump.csv.gz"
    with gzip.open(dump, "wt") as f:
        f.write('/a/[/r/IsA/,/c/en/cat/,/c/en/animal/]\t/r/IsA\t/c/en/cat\t/c/en/animal\t{"weight": 2.0}\n')
    before = _graph_sizes(store)
    code, out, err = run_cli("link", "conceptnet", "--store", store, "--dump", dump)
    assert code == 2 and "skipped class '...'" in out and "triples in graph" not in out
    assert "is linked to ConceptNet (none of its 2 class labels gives a ConceptNet term" in err, err
    assert _graph_sizes(store) == before

    _tag_set(tmp_path / "words", ["cat", "dog"])
    store = tmp_path / "store2"
    cli_ok("load", tmp_path / "words" / "tags", "--store", store)
    before = _graph_sizes(store)
    offline = ["link", "conceptnet", "--store", store, "--offline", "--cache", tmp_path / "cache"]
    code, _, err = run_cli(*offline)
    assert code == 2 and ("2 of 2 concepts could not be fetched, so the store is unchanged: run again without "
                          "--offline to fetch them, or pass --partial") in err, err
    code, _, err = run_cli(*offline, "--partial")
    assert code == 2 and "--partial writes the graph without some concepts, not without all" in err, err
    assert _graph_sizes(store) == before


def test_explain_keeps_the_order_given_and_prints_ids_on_one_line(run_cli, tmp_path: Path) -> None:
    """`explain --heldout b2 --heldout 'i<newline>1' --heldout i0` answered sorted by id (i0 first), and
    the id (or a class label) with a newline was printed across two lines; the JSON file was in yet
    another order (selection by selection)."""
    _tag_set(tmp_path, ["cat", "do\ng"], ["i0", "i\n1", "b2", "10", "9"])
    given = ["b2", "i\n1", "10", "9", "i0"]
    code, out, err = run_cli("explain", "--tags", tmp_path / "tags", *(x for i in given for x in ("--heldout", i)),
                             "--json", tmp_path / "e.json")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == len(given) + 1 and "; true cat — " in lines[0] and "'do\\ng'" in out  # a label too
    assert [line.split(": predicted")[0] for line in lines[:-1]] == ["b2", "'i\\n1'", "10", "9", "i0"]
    assert [e["image"] for e in json.loads((tmp_path / "e.json").read_text())] == given
    code, out, err = run_cli("explain", "--tags", tmp_path / "tags", "--heldout", "x\ny")
    assert (code, out) == (2, "") and "no held-out image with id 'x\\ny' (ids look like i0, 'i\\n1', b2)" in err, err


def test_explain_names_a_missing_image_file_before_it_loads_the_model(run_cli, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """`explain nofile.png` loaded the model (seconds; TensorFlow) before it said the file does not exist,
    and with tags of no loadable model said only 'cannot find the model'."""
    import filtag_kg.models

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before the image files were checked")

    monkeypatch.setattr(filtag_kg.models, "load_from_manifest", no_model)
    _tag_set(tmp_path, ["cat", "dog"])
    code, out, err = run_cli("explain", tmp_path / "nofile.png", "--tags", tmp_path / "tags")
    assert (code, out) == (2, "") and f"Error: image file {tmp_path / 'nofile.png'} does not exist" in err, err


def test_selections_are_read_alike_and_an_unknown_method_is_named(run_cli, tmp_path: Path) -> None:
    """'K-best 1' and 'k-best 1.0' were refused though 'q 10.0' was read; `errors -s 'foo 5'` looked for
    explanations of a method that does not exist (and explain said it is not in the tag set)."""
    _tag_set(tmp_path, ["cat", "dog"])
    code, expected, err = run_cli("explain", "--tags", tmp_path / "tags", "--heldout", "i0", "-s", "k-best 1")
    assert code == 0, err
    for spelling in ("K-best 1", "k-best 1.0", "k=1.0"):
        assert run_cli("explain", "--tags", tmp_path / "tags", "--heldout", "i0", "-s", spelling)[1] == expected
    for command in (("explain", "--tags", tmp_path / "tags", "--heldout", "i0"), ("errors", "--store", tmp_path / "none")):
        code, out, err = run_cli(*command, "-s", "foo 5")
        assert (code, out) == (2, "") and ("Error: --selection 'foo 5': unknown method 'foo'; expected e.g. "
                                           "'k-best 5' or 'q-quantile 10'") in err, err
        code, _, err = run_cli(*command, "-s", "k-best 1.5")
        assert code == 2 and "--selection 'k-best 1.5': expected e.g. 'k-best 5' or 'q-quantile 10' (k a whole number)" in err


@pytest.mark.skipif(not (os.path.exists("/dev/full") and os.access("/dev", os.W_OK)),
                    reason="needs /dev/full and a /dev the probe of --json's folder may write into (root)")
def test_explain_names_a_json_file_it_cannot_write(run_cli, tmp_path: Path) -> None:
    """`explain --json FILE` on a full disk said only 'Error: No space left on device' (exit 1), naming no
    file, and had truncated FILE first: it is written whole or not at all now."""
    _tag_set(tmp_path, ["cat", "dog"])
    code, out, err = run_cli("explain", "--tags", tmp_path / "tags", "--heldout", "i0", "--json", "/dev/full")
    assert code == 2 and out.startswith("i0: predicted") and "Error: cannot write /dev/full: No space left on device" in err


def test_errors_on_explanations_without_image_ids_reports_instead_of_a_traceback(run_cli, tmp_path: Path) -> None:
    """A store whose explanations of misclassified images lack what 'errors-both-tags-active' reads (here
    the images' dcterms:identifier, as written by another tool) failed with a ZeroDivisionError traceback."""
    import pyoxigraph as ox

    from filtag_kg.kg.explanations import load_explanations

    stats = ActivationStats.empty(["l1"], ["cat", "dog"], {"l1": 2}, {"dataset": {"name": "toy", "label_space": "toy"}})
    stats.counts[:] = 1
    stats.sums["l1"] = np.array([[0.7, 0.1], [0.2, 0.6]])
    stats.heldout = HeldOut(["i0"], np.arange(1), np.array([1]), np.array([[0, 1, -1, -1, -1]]),  # a dog taken for a cat
                            np.array([[0.8, 0.2, 0, 0, 0]], np.float32), {"l1": np.array([[0.1, 0.9]], np.float32)})
    load_explanations(filtag_kg.tag(stats, k=1), stats, tmp_path / "store")
    raw = ox.Store(str(tmp_path / "store"))
    raw.update("DELETE WHERE { GRAPH ?g { ?image <http://purl.org/dc/terms/identifier> ?id } }")
    raw.flush()
    del raw
    code, out, err = run_cli("errors", "--store", tmp_path / "store", "-s", "k-best 1")
    assert code == 0 and "dog -> cat: 1 errors" in out, err
    assert "which classes the active filters of the misclassified images were tagged with is not in the store" in out


def test_evaluate_refuses_a_store_with_no_store(run_cli, tmp_path: Path) -> None:
    """`evaluate --store S --no-store` evaluated and ignored --store without a word."""
    _tag_set(tmp_path, ["cat", "dog"])
    code, out, err = run_cli("evaluate", "--tags", tmp_path / "tags", "--no-store", "--store", tmp_path / "store",
                             "--out", tmp_path / "ev")
    assert (code, out) == (2, "") and (f"Error: --store {tmp_path / 'store'} and --no-store: give one (--no-store "
                                       "loads nothing into a store)") in err, err
    assert not (tmp_path / "ev").exists() and not (tmp_path / "store").exists()


def test_errors_prints_ids_and_labels_on_one_line(run_cli, tmp_path: Path) -> None:
    """`errors` printed an image id (or a class label) holding a newline across two lines of its report."""
    from filtag_kg.kg.explanations import load_explanations

    stats = ActivationStats.empty(["l1"], ["cat", "d\nog"], {"l1": 2}, {"dataset": {"name": "toy", "label_space": "toy"}})
    stats.counts[:] = 1
    stats.sums["l1"] = np.array([[0.7, 0.1], [0.2, 0.6]])
    stats.heldout = HeldOut(["i\n0"], np.arange(1), np.array([1]), np.array([[0, 1, -1, -1, -1]]),
                            np.array([[0.8, 0.2, 0, 0, 0]], np.float32), {"l1": np.array([[0.1, 0.9]], np.float32)})
    load_explanations(filtag_kg.tag(stats, k=2), stats, tmp_path / "store")
    code, out, err = run_cli("errors", "--store", tmp_path / "store", "-s", "k-best 2")
    assert code == 0, err
    assert "    'd\\nog' -> cat: 1 errors, 2 shared filters\n" in out
    assert "    e.g. image 'i\\n0': a 'd\\nog' taken for a cat; 2 active filters tagged 'd\\nog', 2 tagged cat\n" in out


def test_tensorflows_import_noise_is_filtered_and_other_stderr_kept(tmp_path: Path) -> None:
    """TensorFlow 2.21 writes two info lines to stderr as it is imported, twice, whatever
    TF_CPP_MIN_LOG_LEVEL says: every command and the demo began with them. A stand-in package named
    tensorflow writes them beside a line that must stay, through the file descriptor as C++ does."""
    import subprocess
    import sys

    from filtag_kg.cli import TENSORFLOW_IMPORT_NOISE

    package = tmp_path / "stand_in" / "tensorflow"
    package.mkdir(parents=True)
    lines = [*TENSORFLOW_IMPORT_NOISE, "E0000 could not load libcudart.so.12", *TENSORFLOW_IMPORT_NOISE]
    package.joinpath("__init__.py").write_text(
        "import os\n" + "".join(f"os.write(2, {(line + chr(10)).encode()!r})\n" for line in lines) + "VALUE = 7\n")
    script = ("import sys; sys.path.insert(0, sys.argv[1]); from filtag_kg.cli import quiet_tensorflow_import; "
              "quiet_tensorflow_import() if sys.argv[2] == 'quiet' else None; print('before', file=sys.stderr); "
              "import tensorflow; print('after', tensorflow.VALUE, type(tensorflow.__loader__).__name__, file=sys.stderr)")
    for mode in ("plain", "quiet"):
        done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "stand_in"), mode], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        expected = ["before", *(lines if mode == "plain" else ["E0000 could not load libcudart.so.12"]),
                    "after 7 SourceFileLoader"]
        assert done.stderr.splitlines() == expected, mode
    real = subprocess.run([sys.executable, "-c", "from filtag_kg.cli import quiet_tensorflow_import; "
                           "quiet_tensorflow_import(); import tensorflow as tf; print(int(tf.constant(3).numpy()))"],
                          capture_output=True, text=True, timeout=300)
    assert real.returncode == 0 and real.stdout == "3\n", real.stderr
    assert not any(noise in real.stderr for noise in TENSORFLOW_IMPORT_NOISE), real.stderr
