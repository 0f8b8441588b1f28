"""Coarse concepts name their filter's tag classes (ft:tagClass), from which
`semantic-filters-under-concept` finds the filters under a concept without reading every tag of its
classes; the query runner binds parameters inside the sub-selects that project them; stores linked
before are refused until `upgrade` adds the tag classes."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pyoxigraph as ox
import pytest

import filtag_kg
from filtag_kg.errors import UserError
from filtag_kg.kg.coarsen import link_wordnet
from filtag_kg.kg.export import export_tags, run_ids, tag_class_iris, tag_layer_keys
from filtag_kg.kg.queries import Query, run as run_query
from filtag_kg.kg.store import Store
from filtag_kg.kg.vocab import FT, Minter
from filtag_kg.kg.wordnet import WN30, WordNet
from filtag_kg.records import selection_label
from kg_helpers import rows as query_rows
from oxigraph_server import oxigraph  # noqa: F401  (fixture)
from test_coarsen import animal_stats

TAG_CLASS = ox.NamedNode(FT + "tagClass")
UNDER = [("semantic-filters-under-concept", {"concept": WN30 + "02075296-n"}),  # carnivore
         ("semantic-filters-under-concept", {"concept": WN30 + "02370806-n", "share": 0.5})]  # ungulate


@pytest.fixture(scope="module")
def tags() -> filtag_kg.TagSet:
    return filtag_kg.tag(animal_stats(), k=[1, 2])


def test_the_all_coarse_concepts_name_every_class_of_their_filters_tags(wn: WordNet, tags: filtag_kg.TagSet) -> None:
    linking = link_wordnet(tags, wn)
    got: dict[str, set[str]] = defaultdict(set)
    for q in linking.quads:
        if q.predicate == TAG_CLASS:
            got[q.subject.value].add(q.object.value)
    minter, ids, keys, classes = Minter(), run_ids(tags), tag_layer_keys(tags), tag_class_iris(tags)
    expected: dict[str, set[str]] = defaultdict(set)
    for layer, f, c, s in zip(tags.layer_index, tags.filter_index, tags.class_index, tags.selection_index):
        node = minter.coarse_concept(ids.tagging, keys[tags.layers[layer]], int(f),
                                     selection_label(*tags.selections[s]), "all")
        expected[node.value].add(classes[c].value)
    assert got == expected and len(got) == len({(m, f, s) for m, f, s in zip(
        tags.layer_index, tags.filter_index, tags.selection_index)})  # every tagged filter, no `share` node


def test_parameters_are_bound_inside_the_sub_selects_that_project_them() -> None:
    """A VALUES block opening the query's WHERE group does not reach into a sub-select, whose
    variables are its own: Oxigraph evaluated it for every value and joined after (16 s for
    semantic-filters-under-concept). The runner binds a parameter in each sub-select projecting it by
    name, not in one that makes it with AS (a syntax error there) or does not project it; only in a
    query asking for it (`# bind: sub-selects`: Oxigraph plans some sub-selects worse so bound)."""
    store = ox.Store()
    e = "http://e/"
    for s, n in (("a", 2), ("b", 3)):
        for i in range(n):
            store.add(ox.Quad(ox.NamedNode(e + s), ox.NamedNode(e + "p"), ox.Literal(i), ox.DefaultGraph()))
    text = (f"# param: x (iri): a subject\n# bind: sub-selects\n"
            f"SELECT ?x ?n ?y ?m WHERE {{\n"
            f"  {{ SELECT ?x (COUNT(?o) AS ?n) WHERE {{ ?x <{e}p> ?o }} GROUP BY ?x }}\n"
            f"  {{ SELECT (<{e}b> AS ?y) (COUNT(*) AS ?m) WHERE {{ ?x <{e}p> ?o }} }}\n"
            f"  {{ SELECT ?x WHERE {{ VALUES ?x {{ <{e}a> <{e}b> }} }} }}\n"
            f"  {{ SELECT * WHERE {{ ?x <{e}p> 0 }} }}\n"
            f"}}")
    query = Query.parse(text, "t")
    bound = query.with_values({"x": ox.NamedNode(e + "a"), "y": ox.NamedNode(e + "b")})
    assert bound.count("VALUES (?x ?y) { (<http://e/a> <http://e/b>) }") == 2  # the query's own and `*`'s
    assert bound.count("VALUES (?x) { (<http://e/a>) }") == 2  # the two projecting ?x by name
    assert "AS ?y) (COUNT(*) AS ?m) WHERE { ?x" in bound  # made by AS, not bound: ?m counts 5, not 2
    rows = run_query(query, store, {"x": e + "a"})
    assert [(r["x"], r["n"], r["m"]) for r in rows.values()] == [(e + "a", 2, 5)]
    unasked = Query.parse(text.replace("# bind: sub-selects\n", ""), "t")
    assert unasked.with_values({"x": ox.NamedNode(e + "a")}).count("VALUES (?x)") == 1
    assert run_query(unasked, store, {"x": e + "a"}).rows == rows.rows
    with pytest.raises(UserError, match=r"t: bad header line '# bind: everything'"):
        Query.parse(text.replace("# bind: sub-selects", "# bind: everything"), "t")


def test_a_syntax_error_after_sub_select_blocks_is_placed_in_the_query_as_written() -> None:
    text = ("# param: x (iri, optional): a subject\n# bind: sub-selects\n"
            "SELECT ?x WHERE { { SELECT ?x WHERE { ?x ?p ?o } } { SELECT ?x WHERE { ?x ?p ?o } } ?x ?p ) }")
    messages = []
    for params in ({}, {"x": "http://e/a"}):  # as written, and with three VALUES blocks on that line
        with pytest.raises(UserError) as caught:
            run_query(Query.parse(text, "t"), ox.Store(), params)
        messages.append(str(caught.value))
    assert messages[0] == messages[1] and "at line 3, column 93" in messages[0]  # Oxigraph's column for the text


def _without_tag_classes(store: Store) -> None:
    """The WordNet graphs as `link wordnet` wrote them before 2026-12-03."""
    store.update(f"DELETE WHERE {{ GRAPH ?g {{ ?c <{TAG_CLASS.value}> ?x }} }}")


def _linked_before(path: Path, tags: filtag_kg.TagSet, wn: WordNet) -> tuple[ox.NamedNode, set[ox.Quad], list[object]]:
    """A store of the tags and their WordNet links as linked before 2026-12-03; the graph of the links,
    the quads and the answers of UNDER as they are now."""
    linking = link_wordnet(tags, wn)
    with Store(path) as store:
        store.load(export_tags(tags))
        store.load(linking.quads, linking.graph)
        current = set(store.quads())
        answers = [query_rows(name, store, **params) for name, params in UNDER]
        _without_tag_classes(store)
    return linking.graph, current, answers


def test_a_store_linked_before_is_refused_until_upgrade_adds_the_tag_classes(
    wn: WordNet, tags: filtag_kg.TagSet, tmp_path: Path, cli_ok: Callable[..., str],
    run_cli: Callable[..., tuple[int, str, str]],
) -> None:
    path = tmp_path / "store"
    _, current, answers = _linked_before(path, tags, wn)
    added = sum(q.predicate == TAG_CLASS for q in current)
    assert added == len(tags)  # each tag: its class on its filter's `all` node
    with pytest.raises(UserError, match=rf"ft:tagClass.*upgrade --store {path}` \(1 graph"):
        Store(path, read_only=True)
    code, _, err = run_cli("query", "semantic-filters-under-concept", "--param", f"concept={UNDER[0][1]['concept']}",
                           "--store", path)
    assert code == 2 and "filtag-kg upgrade" in err
    assert cli_ok("upgrade", "--store", path) == f"{added:,} links rewritten in {path}\n"
    with Store(path, read_only=True) as store:
        assert set(store.quads()) == current
        assert [query_rows(name, store, **params) for name, params in UNDER] == answers
        assert answers[0] and answers[1]


def test_upgrade_names_a_linked_run_whose_tags_are_gone(wn: WordNet, tags: filtag_kg.TagSet, tmp_path: Path) -> None:
    linking = link_wordnet(tags, wn)
    with Store(tmp_path / "store") as store:
        store.load(linking.quads, linking.graph)  # the links without the tags they summarise
        _without_tag_classes(store)
    with Store(tmp_path / "store", upgrade=True) as store:
        with pytest.raises(UserError, match=rf"cannot upgrade graph {linking.graph.value}: the tags of the run"):
            store.upgrade()
        assert not any(q.predicate == TAG_CLASS for q in store.quads())


def test_a_server_linked_before_is_refused_until_upgraded(
    oxigraph: str, wn: WordNet, tags: filtag_kg.TagSet, cli_ok: Callable[..., str],
) -> None:
    from filtag_kg.kg.store import RemoteStore

    remote = RemoteStore.at(oxigraph)
    linking = link_wordnet(tags, wn)
    remote.load(export_tags(tags))
    remote.load(linking.quads, linking.graph)
    remote.update(f"DELETE WHERE {{ GRAPH ?g {{ ?c <{TAG_CLASS.value}> ?x }} }}")
    with pytest.raises(UserError, match="1 graph.*ft:tagClass.*upgrade --endpoint"):
        RemoteStore.at(oxigraph).query("SELECT * WHERE { ?s ?p ?o } LIMIT 1")
    assert cli_ok("upgrade", "--endpoint", oxigraph) == f"{len(tags):,} links rewritten in {oxigraph}\n"
    rows = query_rows(UNDER[0][0], RemoteStore.at(oxigraph), **UNDER[0][1])
    assert [(r["layer"], r["filter"], sorted(r["classesUnder"].split(", "))) for r in rows if r["parameter"] == 1] == [
        ("conv2", 0, ["bear", "cat", "dog"])]  # as test_coarsen's test_filters_under_concept on the embedded store


def test_an_interrupted_tag_class_upgrade_is_found_and_finished(
    wn: WordNet, tags: filtag_kg.TagSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tag classes are added one layer summary at a time: a graph left with some of them would pass
    for an upgraded one by 'has ft:tagClass' alone, so a marker stays in it until the last."""
    path = tmp_path / "store"
    graph, current, _ = _linked_before(path, tags, wn)
    calls = []
    update = Store.update

    def interrupted(self: Store, sparql: str) -> None:
        calls.append(sparql)
        if len(calls) == 3:  # the marker, the first layer summary, then Ctrl-C
            raise KeyboardInterrupt
        update(self, sparql)

    monkeypatch.setattr(Store, "update", interrupted)
    with Store(path, upgrade=True) as store, pytest.raises(KeyboardInterrupt):
        store.upgrade()
    monkeypatch.setattr(Store, "update", update)
    with Store(path, upgrade=True) as store:
        assert 0 < sum(q.predicate == TAG_CLASS for q in store.quads()) < len(tags)  # some, not all
        assert store.legacy_graphs() == [graph]
        assert store.upgrade() == len(tags)
    with Store(path, read_only=True) as store:
        assert set(store.quads()) == current


def test_a_sub_select_with_limit_or_offset_is_not_bound_inside() -> None:
    """Bound inside, a sub-select with LIMIT or OFFSET would cut other rows: its first subject is a,
    so x = b joins with nothing, where binding b inside gave the row of b."""
    store = ox.Store()
    for s in "ab":
        store.add(ox.Quad(ox.NamedNode("http://e/" + s), ox.NamedNode("http://e/p"), ox.Literal(1), ox.DefaultGraph()))
    for modifier in ("LIMIT 1", "OFFSET 0 LIMIT 1", "limit 1"):
        text = f"# param: x (iri): a subject\n# bind: sub-selects\nSELECT ?x WHERE {{ {{ SELECT ?x WHERE {{ ?x <http://e/p> 1 }} ORDER BY ?x {modifier} }} }}"
        query = Query.parse(text, "t")
        assert query.with_values({"x": ox.NamedNode("http://e/b")}).count("VALUES") == 1, modifier
        assert len(run_query(query, store, {"x": "http://e/b"})) == 0
        assert len(run_query(query, store, {"x": "http://e/a"})) == 1
