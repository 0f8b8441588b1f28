"""Defects found by hand-testing the semantic linking as a user would (2026-12-03): option values
that ended in tracebacks or were refused without naming the option, an unbounded retry backoff,
ConceptNet terms shared by classes of different senses, and a share printed so that it misled."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

import filtag_kg
from filtag_kg.errors import UserError
from filtag_kg.kg.coarsen import coarsen, layer_summary
from filtag_kg.kg.conceptnet import MAX_BACKOFF, ConceptNetClient, fetch_edges, link_conceptnet
from filtag_kg.records import ActivationStats, TagSet

from test_conceptnet import StandIn, write_dump


def one_filter_tags(classes: list[str]) -> TagSet:
    """k = 1 tags of a one-layer run in which every class activates filter 0 most: one filter, all tags."""
    stats = ActivationStats.empty(["conv"], classes, {"conv": 2}, manifest={"dataset": {"label_space": "toy"}})
    stats.add_batch(np.arange(len(classes)), {"conv": np.tile([1.0, 0.0], (len(classes), 1))})
    return filtag_kg.tag(stats, k=1)


@pytest.mark.parametrize(("options", "message"), [
    ({"min_interval": math.inf}, "--interval inf"),
    ({"min_interval": math.nan}, "--interval nan"),
    ({"min_interval": 1e300}, "--interval 1e+300"),
    ({"timeout": math.inf}, "--timeout inf"),
    ({"timeout": math.nan}, "--timeout nan"),
])
def test_seconds_that_sleep_or_sockets_cannot_take_are_refused_by_name(tmp_path: Path, options: dict,
                                                                        message: str) -> None:
    # `link conceptnet --interval inf` ended in OverflowError from time.sleep, `--timeout nan` in
    # ValueError from the socket, both as tracebacks after the first request
    with pytest.raises(UserError, match=re.escape(message)):
        ConceptNetClient("http://127.0.0.1:9", cache=tmp_path, **options)


def test_the_backoff_between_retries_stops_growing_at_a_minute(tmp_path: Path) -> None:
    # --retries 20 against an API answering 500 waited 2**19 s (six days) before its last attempt
    api = StandIn()
    try:
        api.script["/c/en/dog"] = ["500"] * 12
        sleeps: list[float] = []
        client = ConceptNetClient(api.url, cache=tmp_path, min_interval=0.0, timeout=2.0, retries=11,
                                  backoff=1.0, sleep=sleeps.append)
        result = fetch_edges(["/c/en/dog"], client)
    finally:
        api.server.shutdown()
        api.server.server_close()
    assert "HTTP 500" in result.missing["/c/en/dog"] and len(sleeps) == 11
    assert sleeps[:3] == [1.0, 2.0, 4.0] and max(sleeps) == MAX_BACKOFF == 60.0


def test_classes_that_share_a_conceptnet_term_are_reported(tmp_path: Path) -> None:
    # ImageNet's 'Cardigan' (the corgi) and 'cardigan' (the sweater) are both /c/en/cardigan, and
    # the two 'crane' one /c/en/crane: each class got the edges of every sense without a word
    tags = one_filter_tags(["Cardigan", "cardigan", "dog"])
    path = tmp_path / "dump.csv.gz"
    write_dump(path)
    linking = link_conceptnet(tags, dump=path)
    assert linking.edges.shared == {"/c/en/cardigan": ["'Cardigan' (class 0)", "'cardigan' (class 1)"]}
    assert ("shared term /c/en/cardigan: 'Cardigan' (class 0) and 'cardigan' (class 1); ConceptNet does not "
            "tell their senses apart") in linking.edges.summary()


def test_the_layer_summary_states_the_share_as_coarsening_applies_it(wn) -> None:
    # the default share 2/3 was printed "covering ≥67% of their tags", which reads as if a filter with
    # 2 of its 3 tags under the concept (66.7 %) did not count; it does (and --share 0.67 leaves it out)
    tags = one_filter_tags(["dog", "cat", "table"])
    summary = {share: layer_summary(coarsen(tags, wn, share=share)) for share in (2 / 3, 0.67, 0.5, 1.0)}
    assert "concept covering ≥2/3 of their tags" in summary[2 / 3] and "67%" not in summary[2 / 3]
    assert "concept covering ≥67% of their tags" in summary[0.67]
    assert "concept covering ≥1/2 of their tags" in summary[0.5]
    assert "concept covering all of their tags" in summary[1.0]
    assert "of these 1 (100%) get a concept covering ≥2/3" in summary[2 / 3]  # carnivore: dog and cat


def test_share_nan_is_refused_by_the_option(tmp_path: Path, run_cli) -> None:
    # click's FloatRange lets NaN through; coarsening then refused "share must be in (0, 1], got nan"
    # without naming the option
    code, _, err = run_cli("link", "wordnet", "--share", "nan", "--store", tmp_path / "store")
    assert code == 2 and "Invalid value for '--share': nan is not a number" in err


def test_the_mapping_help_names_one_synset_three_ways(wn, run_cli) -> None:
    # the help gave "cow.n.02, 02403454-n or a wnid" as the forms of a synset: 02403454-n is cow.n.01
    # (female of domestic cattle); cow.n.02 (mature female of mammals) is 01887787-n, under placental
    _, out, _ = run_cli("link", "wordnet", "--help")
    assert "cow.n.01, or as its offset-pos 02403454-n or wnid n02403454" in " ".join(out.split())
    assert wn.synset("cow.n.01") == wn.synset("02403454-n") == wn.synset("n02403454") != wn.synset("cow.n.02")


def test_concepts_without_edges_are_named(tmp_path: Path) -> None:
    # "edges of 997 concepts (19 edges), 0 missing" read as if every concept had edges, where 988 had
    # none: a term ConceptNet has not (a label it spells otherwise) passed without a word
    path = tmp_path / "dump.csv.gz"
    write_dump(path)
    summary = link_conceptnet(one_filter_tags(["dog", "unicorn_ride"]), dump=path).edges.summary()
    assert "edges of 2 concepts" in summary
    assert "without edges: 1 of the 2 concepts" in summary and summary.endswith(": /c/en/unicorn_ride")


def test_wordnet_installed_by_two_processes_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # parallel first runs (a fresh cache) each copied Debian's WordNet and moved the copy into place:
    # the one that came second failed with OSError "Directory not empty" (2 of 4 processes, 8 tries)
    import shutil

    from filtag_kg.kg import wordnet as module

    if not (module.DEBIAN_WORDNET / "data.noun").is_file():
        pytest.skip(f"Debian's WordNet is not in {module.DEBIAN_WORDNET}")
    monkeypatch.setenv("FILTAG_KG_CACHE", str(tmp_path))
    target = tmp_path / "nltk_data" / "corpora" / "wordnet"
    remove = shutil.rmtree
    other: list[Path] = []

    def rmtree_then_the_other_process_installs(path: object, *args: object, **kwargs: object) -> None:
        remove(path, *args, **kwargs)
        if Path(str(path)) == target and not other:
            other.append(target)  # the other process's install, which removes the folder too
            module.install_copy(module.DEBIAN_WORDNET)

    monkeypatch.setattr(shutil, "rmtree", rmtree_then_the_other_process_installs)
    assert module.install_copy(module.DEBIAN_WORDNET) == target and other == [target]
    assert (target / "data.noun").is_file() and (target / "lexnames").is_file()
    assert [p.name for p in target.parent.iterdir()] == ["wordnet"]  # no wordnet.partial-* left behind


def test_a_plain_label_links_to_a_kind_not_to_a_proper_name(wn) -> None:
    # a class 'crane' (an image folder of its own, no wnid) was linked to WordNet's first sense of the
    # word, Stephen Crane the writer: its filters then coarsened with people, not with machines or birds
    from filtag_kg.kg.wordnet import link_classes

    report = link_classes(["crane", "cranes", "Mars", "Eiffel Tower", "bear"], None, wn, "toy")
    assert [link.synset.name() for link in report.links] == [
        "crane.n.04", "crane.n.04", "mars.n.01", "eiffel_tower.n.01", "bear.n.01"]  # not March (through 'mar')
    assert ("'crane' (class 0): chose crane.n.04 (lifts and moves heavy objects; lifting tackle is suspended from "
            "a pivoted boom that rotates around a vertical axis), sense 4, the first that is no proper name "
            "(crane.n.01, crane.n.02, grus.n.01 are), of 5 noun senses; others: crane.n.05") in report.summary()
