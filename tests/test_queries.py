"""The query runner (headers, typed binding, VALUES for remote stores, result formats) and every
bundled query, checked against reference answers computed from the TagSet in Python."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from pyoxigraph import (
    BlankNode,
    Literal,
    NamedNode,
    Quad,
    QueryResultsFormat,
    Store,
    parse_query_results,
)

import filtag_kg
from filtag_kg.data import ANIMAL_SHAPE_CLASSES
from filtag_kg.errors import UserError
from filtag_kg.kg import queries
from filtag_kg.kg.queries import Parameter, Query, Results
from filtag_kg.kg.vocab import FT, RDFS, XSD
from filtag_kg.records import K_BEST, Q_QUANTILE, ActivationStats, TagSet

from kg_helpers import four_selections_store, rows, run_iri, store_of

REQUIRED = {
    "filter-tags", "class-filters", "class-specific-filters", "similar-classes", "layer-tag-statistics",
    "run-diff", "networks",
}
INJECTION = 'x" } ; DROP ALL ; #'
LABEL_QUERY = """# title: Things by label
# param: label (string): the label
PREFIX rdfs: <http://www.w3.org/2000/01/rdf-schema#>
SELECT ?thing ?label WHERE { ?thing rdfs:label ?label }
"""


# -- headers and binding ------------------------------------------------------------------------

def test_bundled_set_covers_the_issue_and_headers_are_complete() -> None:
    bundled = {q.name: q for q in queries.bundled()}
    assert REQUIRED <= set(bundled)
    for q in bundled.values():
        assert q.title and q.description, q.name
        assert q.example.startswith(f"filtag-kg query {q.name}"), q.name
        for p in q.parameters:
            if p.required:
                assert f"{p.name}=" in q.example, (q.name, p.name)


def test_image_example_names_a_held_out_image_of_the_embedded_default() -> None:
    # only held-out images have explanations: the example must answer on the demo's store
    from filtag_kg.data import animal_shape

    example = {q.name: q for q in queries.bundled()}["coarse-image-explanation"].example
    image_id = example.split("/image/animal-shape/")[1].split()[0]
    assert image_id in animal_shape().split("heldout").ids


def test_header_parsing_with_continuations_and_optional_parameters() -> None:
    q = Query.parse(
        "# title: A test\n# description: first line\n#   second line\n"
        "# param: n (integer): a number\n#   of things\n# param: who (iri, optional): someone\n"
        "# example: filtag-kg query t --param n=1\n"
        "SELECT ?n ?who WHERE { ?who <http://x/p> ?n }\n",
        "t",
    )
    assert q.title == "A test"
    assert q.description == "first line second line"
    assert [(p.name, p.type, p.required) for p in q.parameters] == [("n", "integer", True), ("who", "iri", False)]
    assert q.parameters[0].description == "a number of things"


@pytest.mark.parametrize(
    "text, message",
    [
        ("# param: n (integr): x\nSELECT ?n WHERE { ?s ?p ?n }", "unknown type"),
        ("# param: n integer x\nSELECT ?n WHERE { ?s ?p ?n }", "bad parameter line"),
        ("# param: m (integer): x\nSELECT ?n WHERE { ?s ?p ?n }", "does not occur"),
    ],
)
def test_bad_headers_are_reported(text: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        Query.parse(text, "bad")


@pytest.mark.parametrize(("name", "values", "message"), [
    ("semantic-filters-under-concept", {"concept": "wn:02084071-n", "share": -1}, "share=-1: out of range; share must be > 0 and <= 1"),
    ("semantic-filters-under-concept", {"concept": "wn:02084071-n", "share": "67"}, "share=67: out of range"),
    ("semantic-filters-under-concept", {"concept": "wn:02084071-n", "share": "1e-400"}, "share=1e-400: out of range"),
    ("errors-explanation-disagrees", {"n": 0}, "n=0: out of range; n must be >= 1"),
    ("filter-tags", {"layer": "conv", "filter": -1}, "filter=-1: out of range; filter must be >= 0"),
    ("similar-classes", {"class": "zebra", "parameter": "0.0"}, "parameter=0.0: out of range; parameter must be > 0"),
])
def test_values_outside_a_stated_range_are_refused(name: str, values: dict[str, object], message: str) -> None:
    """A share of -1 or 67 or n = 0 changed or emptied the answer: the header states the range."""
    with pytest.raises(UserError, match=re.escape(message)):
        queries.load(name).bind(values)


def test_values_on_the_bounds_of_a_range_are_taken() -> None:
    bound = queries.load("semantic-filters-under-concept").bind({"concept": "wn:02084071-n", "share": 1})
    assert bound["share"] == Literal(1.0)
    assert queries.load("errors-explanation-disagrees").bind({"n": 1})["n"] == Literal(1)


@pytest.mark.parametrize(("line", "message"), [
    ("# param: n (string, >= 1): x", "of type string cannot have a range"),
    ("# param: n (integer, about 1): x", "bad bound 'about 1'"),
])
def test_bad_ranges_are_reported(line: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        Query.parse(line + "\nSELECT ?n WHERE { ?s ?p ?n }", "bad")


@pytest.mark.parametrize(("text", "form"), [
    ("# the first\n# a comment that describes it\n# the third\nSELECT * WHERE { ?s ?p ?o }", "SELECT"),
    ("PREFIX describe: <http://example.org/describe#>\nselect ?describe WHERE { ?describe describe:p 1 }", "SELECT"),
    ('ASK { ?s <http://example.org/select> "construct" }  # describe', "ASK"),
    ("CONSTRUCT WHERE { ?s ?p ?o }", "CONSTRUCT"),
    ("DESCRIBE <http://example.org/x>", "DESCRIBE"),
    ("# SELECT\nINSERT DATA { <http://a> <http://b> <http://c> }", ""),
])
def test_the_query_form_is_read_past_comments_iris_strings_and_names(text: str, form: str) -> None:
    assert queries.query_form(text) == form


@pytest.mark.parametrize(("text", "named"), [
    ("SELECT * FROM <http://example.org/g> WHERE { ?s ?p ?o }", True),
    ("select * from named <http://example.org/g> { GRAPH ?g { ?s ?p ?o } }", True),
    ('SELECT * WHERE { ?s <http://example.org/from> "from" } # FROM', False),
    ('SELECT * WHERE { ?s ?p """a long string\nFROM its second line""" }', False),
    ("SELECT * WHERE { ?s ?p '''\nfrom '' here''' }", False),
    ("PREFIX from: <http://example.org/>\nSELECT ?from WHERE { ?from from:p ?o }", False),
])
def test_a_dataset_clause_is_told_from_the_word_elsewhere(text: str, named: bool) -> None:
    assert queries.names_dataset(text) is named


def test_values_become_typed_terms() -> None:
    q = queries.load("filter-tags")
    terms = q.bind({"layer": "block5_conv3", "filter": "7", "run": "ft:KBest"})
    assert terms["layer"] == Literal("block5_conv3")
    assert terms["filter"] == Literal(7)
    assert terms["run"] == NamedNode(FT + "KBest")
    diff = queries.load("run-diff")
    d = diff.bind({"run1": "http://a/1", "run2": "<http://a/2>", "method1": "ft:KBest", "method2": "ft:QQuantile",
                   "parameter1": "5.0", "parameter2": 2.50})
    assert d["run2"] == NamedNode("http://a/2")
    assert d["parameter1"] == Literal("5", datatype=NamedNode(XSD + "decimal"))
    assert d["parameter2"] == Literal("2.5", datatype=NamedNode(XSD + "decimal"))


@pytest.mark.parametrize(
    "values, message",
    [
        ({"layer": "a", "filter": "seven"}, "^--param filter=seven: expected a whole number in digits 0-9, e.g. 7$"),
        ({"layer": "a", "filter": 1.5}, "^--param filter=1.5: expected a whole number in digits 0-9, e.g. 7$"),
        ({"layer": "a", "filter": 1, "run": "http://a/b> } DROP ALL"},
         "^--param run=http://a/b> } DROP ALL: expected an absolute IRI, <IRI>, or a prefixed name such as "
         "ft:KBest \\(Invalid IRI code point '>'\\)$"),
        ({"layer": "a"}, "needs --param filter="),
        ({"layer": "a", "filter": 1, "run": BlankNode("b")}, "must be an IRI or a literal"),
        ({"layer": "a", "filter": 1, "nope": 1}, "has no parameter nope"),
    ],
)
def test_bad_values_are_user_errors(values: dict[str, object], message: str) -> None:
    with pytest.raises(UserError, match=message):
        queries.load("filter-tags").bind(values)


@pytest.mark.parametrize(
    "kind, value, expected",
    [
        ("decimal", "five", "a decimal number in digits 0-9, e.g. 2.5"),
        ("decimal", "inf", "a decimal number in digits 0-9, e.g. 2.5"),
        ("integer", "2.5", "a whole number in digits 0-9, e.g. 7"),
        ("double", "high", "a finite number in digits 0-9, e.g. 0.5"),
        ("boolean", "yes", "true or false"),
        ("iri", "zebra",
         "an absolute IRI, <IRI>, or a prefixed name such as ft:KBest (No scheme found in an absolute IRI)"),
    ],
)
def test_a_value_of_the_wrong_type_says_what_was_expected(kind: str, value: str, expected: str) -> None:
    """Not Python's reason ("[<class 'decimal.ConversionSyntax'>]"): the option and what its type takes."""
    with pytest.raises(UserError) as error:
        Parameter("p", kind, True, "").term(value)
    assert str(error.value) == f"--param p={value}: expected {expected}"


@pytest.mark.parametrize(
    "kind, value",
    [
        ("double", "nan"), ("double", "-inf"), ("double", "Infinity"), ("double", "1e400"), ("double", float("nan")),
        ("double", "1_000"), ("double", "\u0660.5"),
        ("integer", "1_000"), ("integer", "\u0661\u0662"), ("integer", "\uff17"), ("integer", float("inf")),
        ("decimal", "1_000.5"), ("decimal", "\u0661.5"), ("decimal", "NaN"),
    ],
)
def test_numbers_python_reads_but_sparql_does_not_are_refused(kind: str, value: object) -> None:
    """float() and int() took "nan", "inf", "1_000" and Arabic-Indic digits ("١٢" = 12): a double NaN
    bound a share no filter reaches, without a word; the error names the parameter and the value."""
    with pytest.raises(UserError) as error:
        Parameter("p", kind, True, "").term(value)
    assert str(error.value).startswith(f"--param p={value}: expected ") and "in digits 0-9" in str(error.value)


def test_a_decimal_beyond_range_is_a_user_error() -> None:
    """'1e10000000' is a decimal as SPARQL writes it, but beyond what Python's decimals hold: the
    query command ended in a traceback (decimal.Overflow) instead of naming the parameter."""
    with pytest.raises(UserError) as error:
        Parameter("p", "decimal", True, "").term("1e10000000")
    assert str(error.value) == "--param p=1e10000000: expected a decimal number in digits 0-9, e.g. 2.5 (out of range)"


@pytest.mark.parametrize(
    "kind, value, expected",
    [("integer", " +7 ", Literal(7)), ("integer", 3.0, Literal(3)), ("double", "-.5e1", Literal(-5.0)),
     ("double", "1.", Literal(1.0)), ("double", 0.25, Literal(0.25)),
     ("decimal", "2.50", Literal("2.5", datatype=NamedNode(XSD + "decimal")))],
)
def test_numbers_as_sparql_writes_them_are_taken(kind: str, value: object, expected: Literal) -> None:
    assert Parameter("p", kind, True, "").term(value) == expected


@pytest.mark.parametrize(
    "kind, value, expected",
    [
        ("decimal", Literal(1), Literal("1", datatype=NamedNode(XSD + "decimal"))),
        ("decimal", Literal(2.5), Literal("2.5", datatype=NamedNode(XSD + "decimal"))),
        ("decimal", Literal("25.0", datatype=NamedNode(XSD + "decimal")), Literal("25", datatype=NamedNode(XSD + "decimal"))),
        ("integer", Literal("7", datatype=NamedNode(XSD + "decimal")), Literal(7)),
        ("double", Literal(1), Literal(1.0)),
        ("string", Literal("zebra"), Literal("zebra")),
        ("string", Literal("zebra", language="en"), Literal("zebra", language="en")),
        ("iri", NamedNode(FT + "KBest"), NamedNode(FT + "KBest")),
        ("iri", Literal(FT + "KBest"), NamedNode(FT + "KBest")),
    ],
)
def test_terms_given_as_rdf_become_terms_of_the_declared_type(kind: str, value: object, expected: object) -> None:
    """A literal or IRI given as it is was bound as it was: the integer 1 for a decimal parameter
    (ft:selectionParameter 1) or a literal for an IRI matched nothing, without a word."""
    assert Parameter("p", kind, True, "").term(value) == expected


@pytest.mark.parametrize(
    "kind, value, expected",
    [("integer", Literal(True), "a whole number"), ("decimal", Literal("zebra", language="en"), "a decimal number"),
     ("integer", NamedNode("http://e/7"), "a whole number"), ("string", NamedNode("http://e/zebra"), "text")],
)
def test_terms_given_as_rdf_of_another_type_are_refused(kind: str, value: object, expected: str) -> None:
    with pytest.raises(UserError, match=f"^--param p=.*: expected {expected}"):
        Parameter("p", kind, True, "").term(value)


def test_a_typed_literal_finds_what_its_value_finds(runs: dict[str, TagSet], store: Store) -> None:
    a = run_iri(runs["a"])
    as_text = rows("selection-tags", store, run=a, method=KB, parameter="3")
    as_terms = rows("selection-tags", store, run=NamedNode(a), method=NamedNode(KB), parameter=Literal(3))
    assert as_text and sorted(map(str, as_terms)) == sorted(map(str, as_text))


def test_optional_parameters_given_as_none_stay_unbound(runs: dict[str, TagSet], store: Store) -> None:
    """Python callers pass None for 'no value' (run=args.run): it was taken for the IRI 'None'."""
    everything = rows("filter-tags", store, layer="conv2d", filter=3)
    unbound = rows("filter-tags", store, layer="conv2d", filter=3, run=None)
    assert everything and sorted(map(str, unbound)) == sorted(map(str, everything))
    with pytest.raises(UserError, match=r"needs --param filter="):
        queries.load("filter-tags").bind({"layer": "conv2d", "filter": None})
    with pytest.raises(UserError, match=r"has no parameter nope"):
        queries.load("filter-tags").bind({"layer": "conv2d", "filter": 1, "nope": None})


def test_unknown_query_names_the_bundled_ones(tmp_path) -> None:
    with pytest.raises(UserError, match="bundled: .*filter-tags"):
        queries.load("no-such-query")
    with pytest.raises(UserError, match="does not exist"):
        queries.load(tmp_path / "missing.rq")
    path = tmp_path / "mine.rq"
    path.write_text(LABEL_QUERY)
    assert queries.load(path).name == "mine" and queries.load(str(path)).parameters[0].name == "label"


def test_a_query_file_with_a_byte_order_mark_keeps_its_header(tmp_path) -> None:
    """A file saved with a UTF-8 byte-order mark (as Windows editors save) lost its header ("query 'mine'
    has no parameter label; its parameters: none") and was no SPARQL to pyoxigraph."""
    path = tmp_path / "mine.rq"
    path.write_text(LABEL_QUERY, encoding="utf-8-sig")
    query = queries.load(path)
    assert (query.title, [p.name for p in query.parameters]) == ("Things by label", ["label"])
    assert [t.value for t in queries.run(query, _label_store(), {"label": "plain"}).column("thing")] == ["http://e/a"]


@pytest.mark.parametrize(
    "text, head",
    [
        ('SELECT ?x WHERE { ?x ?p "a { WHERE } \\" {" }', "SELECT ?x WHERE {"),
        ("# a { WHERE {\nPREFIX e: <http://e/a#b>\nSELECT ?x { ?x e:p ?o FILTER(?o < 3) }",
         "# a { WHERE {\nPREFIX e: <http://e/a#b>\nSELECT ?x {"),
        ("CONSTRUCT { ?x <http://e/p> ?o } WHERE { ?x ?p ?o }", "CONSTRUCT { ?x <http://e/p> ?o } WHERE {"),
        ("SELECT ?x ?whereabouts WHERE { ?x <http://e/where> ?whereabouts { SELECT ?x WHERE { ?x ?p ?o } } }",
         "SELECT ?x ?whereabouts WHERE {"),
        ("ASK { ?x ?p ?o }", "ASK {"),
        ("DESCRIBE ?x", "DESCRIBE ?x\n"),
        ("CONSTRUCT WHERE { ?x ?p ?o }", "CONSTRUCT WHERE { ?x ?p ?o }\n"),  # no VALUES in a short form's template
    ],
)
def test_values_block_opens_the_where_group(text: str, head: str) -> None:
    store = Store()
    store.add(Quad(NamedNode("http://e/s"), NamedNode("http://e/p"), Literal(1)))
    bound = Query.parse(text, "t").with_values({"x": NamedNode("http://e/s")})
    assert bound.startswith(head) and bound[len(head):].lstrip().startswith("VALUES (?x) { (<http://e/s>) }"), bound
    store.query(bound)  # still valid SPARQL


# -- injection -----------------------------------------------------------------------------------

def _label_store() -> Store:
    store = Store()
    g = NamedNode("http://e/g")
    store.add(Quad(NamedNode("http://e/a"), NamedNode(RDFS + "label"), Literal("plain"), g))
    store.add(Quad(NamedNode("http://e/b"), NamedNode(RDFS + "label"), Literal(INJECTION), g))
    return store


def test_injection_is_a_plain_literal_on_the_embedded_store() -> None:
    store = _label_store()
    before = sorted(map(str, store))
    q = Query.parse(LABEL_QUERY, "labels")
    hit = queries.run(q, store, {"label": INJECTION})
    assert [str(t.value) for t in hit.column("thing")] == ["http://e/b"]
    assert queries.run(q, store, {"label": INJECTION + " "}).rows == []
    assert sorted(map(str, store)) == before


def test_injection_in_a_values_block_stays_inside_the_literal() -> None:
    store = _label_store()
    before = sorted(map(str, store))
    q = Query.parse(LABEL_QUERY, "labels")
    text = q.with_values(q.bind({"label": INJECTION}))
    assert text.count("DROP ALL") == 1 and '"x\\" } ; DROP ALL ; #"' in text
    rows = Results.of(store.query(text, use_default_graph_as_union=True)).rows
    assert [str(r[0].value) for r in rows] == ["http://e/b"]
    assert sorted(map(str, store)) == before


# -- result formats ------------------------------------------------------------------------------

def _mixed_results() -> tuple[Store, str]:
    store = Store()
    s = NamedNode("http://e/s")
    for o in (Literal(3), Literal(0.5), Literal('he said "hi",\tthen\nleft'), Literal("chat", language="fr"),
              NamedNode("http://e/o"), Literal(True)):
        store.add(Quad(s, NamedNode("http://e/p"), o))
    return store, "SELECT ?s ?o ?missing WHERE { ?s ?p ?o OPTIONAL { ?s <http://e/none> ?missing } } ORDER BY STR(?o)"


def test_json_and_tsv_round_trip_through_a_reference_parser() -> None:
    store, text = _mixed_results()
    results = Results.of(store.query(text))
    for fmt, parser_format in (("json", QueryResultsFormat.JSON), ("tsv", QueryResultsFormat.TSV)):
        parsed = parse_query_results(results.serialize(fmt).encode(), format=parser_format)
        again = Results.of(parsed)
        assert again.variables == ["s", "o", "missing"]
        assert again.rows == results.rows, fmt
    assert len(results) == 6 and all(r[2] is None for r in results.rows)


def test_csv_matches_pyoxigraph_and_table_shows_every_row() -> None:
    store, text = _mixed_results()
    results = Results.of(store.query(text))
    reference = store.query(text).serialize(format=QueryResultsFormat.CSV).decode()
    assert results.serialize("csv") == reference
    table = results.serialize("table").splitlines()
    assert table[0].split() == ["s", "o", "missing"]
    assert table[-1] == "(6 rows)" and len(table) == 2 + 6 + 1
    with pytest.raises(UserError, match="formats: table, csv, tsv, json"):
        results.serialize("xml")


def test_table_columns_line_up_under_combining_and_wide_characters() -> None:
    """A label with a combining mark (decomposed 'Zoë') or wide characters ('犬') shifted the columns
    after it: the table padded by len(), not by the columns a terminal gives the text."""
    table = Results(["label", "n"], [(Literal("Zoe\u0308"), Literal(1)), (Literal("犬"), Literal(2)),
                                     (Literal("dog"), Literal(3))]).serialize("table")
    assert table == "label  n\n-----  -\nZoe\u0308    1\n犬     2\ndog    3\n(3 rows)\n"


def test_table_keeps_language_tags_and_datatypes_that_csv_drops() -> None:
    """The table showed "hello"@en-gb as hello and "2026"^^xsd:gYear as 2026 (an integer?): a cell that
    said less than the value. It writes them as Turtle does and keeps strings, numbers, booleans, dates
    and times bare; csv drops tags and datatypes as the W3C format says; escape sequences reach no terminal."""
    store = Store()
    s, p = NamedNode("http://e/s"), NamedNode("http://e/p")
    cells = {  # object -> its table cell
        Literal("hello", language="en-gb"): '"hello"@en-gb',
        Literal('say "hi"\n', language="en"): '"say \\"hi\\"\\n"@en',
        Literal("2026", datatype=NamedNode(XSD + "gYear")): '"2026"^^xsd:gYear',
        Literal("2026-12-02T16:23:18Z", datatype=NamedNode(XSD + "dateTime")): "2026-12-02T16:23:18Z",
        Literal("7", datatype=NamedNode("http://e/unit")): '"7"^^<http://e/unit>',
        Literal("plain"): "plain", Literal(3): "3", Literal(0.5): "0.5", Literal(True): "true",
        Literal("\x1b[31mred\x9b0m"): "\\u001B[31mred\\u009B0m",
    }
    for o in cells:
        store.add(Quad(s, p, o))
    text = "SELECT ?o WHERE { ?s ?p ?o }"
    results = Results.of(store.query(text))
    table = results.serialize("table").splitlines()[2:-1]
    assert sorted(line.rstrip() for line in table) == sorted(cells.values())
    assert results.serialize("csv") == store.query(text).serialize(format=QueryResultsFormat.CSV).decode()
    assert "hello\r\n" in results.serialize("csv")
    assert {"type": "literal", "value": "hello", "xml:lang": "en-gb"} in [
        b["o"] for b in json.loads(results.serialize("json"))["results"]["bindings"]]


def test_ask_results() -> None:
    store, _ = _mixed_results()
    yes = Results.of(store.query("ASK { ?s ?p 3 }"))
    assert yes.boolean is True
    assert json.loads(yes.serialize("json")) == {"head": {}, "boolean": True}
    assert bool(parse_query_results(yes.serialize("json").encode(), format=QueryResultsFormat.JSON)) is True
    assert Results.of(store.query("ASK { ?s ?p 4 }")).serialize("table") == "false\n"


# -- the bundled queries on exported synthetic runs -------------------------------------------------

ANIMALS = ANIMAL_SHAPE_CLASSES
LAYERS = {"conv2d": 8, "conv2d_1": 16, "conv2d_2": 16}
KB, QQ = FT + "KBest", FT + "QQuantile"
METHOD_IRI = {K_BEST: KB, Q_QUANTILE: QQ}


def synthetic_tags(seed: int, model: str, k: tuple[int, ...] = (1, 3), q: tuple[float, ...] = (25.0,),
                   layers: dict[str, int] = LAYERS, classes: list[str] = ANIMALS) -> TagSet:
    """A TagSet of random class means for a small CNN with a full manifest (as collect writes it)."""
    manifest = {
        "model": {
            "name": model, "hash": filtag_kg.kg.vocab.stable_hash(model) * 4, "family": "cnn", "source": "test",
            "layers": [
                {"name": m, "type": "Conv2D", "index": 2 * i, "filters": n, "kernel_size": [3, 3],
                 "params": 9 * n, "activation": "relu"}
                for i, (m, n) in enumerate(layers.items())
            ],
        },
        "dataset": {"name": "Animal-Shape", "label_space": "animal-shape", "root": None, "wnids": None},
        "split": {"name": "train", "fraction": 0.8, "seed": seed},
        "software": {"filtag-kg": "0.1.0"},
        "created": "2026-01-01T00:00:00+00:00",
        "n_images": 100 * len(classes),
    }
    stats = ActivationStats.empty(list(layers), classes, layers, manifest)
    rng = np.random.default_rng(seed)
    stats.counts[:] = 100
    for m in layers:
        stats.sums[m] = rng.gamma(2.0, 1.0, stats.sums[m].shape) * 100
    return filtag_kg.tag(stats, k=list(k), q=list(q))


def selection_of(tag: filtag_kg.Tag) -> tuple[str, float]:
    return METHOD_IRI[tag.method], float(tag.parameter)


@pytest.fixture(scope="module")
def runs() -> dict[str, TagSet]:
    return {"a": synthetic_tags(0, "net-a"), "b": synthetic_tags(1, "net-b", k=(1,), q=())}


@pytest.fixture(scope="module")
def store(runs: dict[str, TagSet]) -> Store:
    return store_of(runs.values())


def test_runs_and_networks(store: Store, runs: dict[str, TagSet]) -> None:
    listed = rows("runs", store)
    assert sorted(r["run"] for r in listed) == sorted(run_iri(t) for t in runs.values())
    a = next(r for r in listed if r["run"] == run_iri(runs["a"]))
    assert (a["title"], a["dataset"], a["split"], a["images"]) == ("net-a", "Animal-Shape", "train", 1000)
    assert sorted(a["selections"].split(", ")) == ["k-best 1", "k-best 3", "q-quantile 25"]
    assert a["ended"] is not None
    networks = rows("networks", store)
    assert [(n["title"], n["layers"], n["filters"], n["runs"]) for n in networks] == [
        ("net-a", 3, 40, 1), ("net-b", 3, 40, 1)]
    only_b = rows("runs", store, network=listed[0]["network"] if listed[0]["title"] == "net-b" else listed[1]["network"])
    assert [r["title"] for r in only_b] == ["net-b"]


def test_selections_of_tiny_q_sort_by_number() -> None:
    """A q too small for a plain decimal is labelled in exponent form (q-quantile 1e-320), which
    xsd:decimal does not parse: the queries sorted every such selection as unbound, in storage order."""
    from filtag_kg.kg.export import export_tags

    tags = synthetic_tags(4, "net-t", k=(1,), q=(3e-320, 1e-320, 2e-320, 5.0))
    store = Store()
    store.extend(export_tags(tags))
    assert [r["selections"] for r in rows("runs", store)] == [
        "k-best 1, q-quantile 1e-320, q-quantile 2e-320, q-quantile 3e-320, q-quantile 5"]


def test_runs_list_selections_by_method_then_number(tmp_path) -> None:
    """k-best 2 before k-best 12 and q-quantile 5 before q-quantile 25, on the embedded store and a
    server, also when the network is given (GROUP_CONCAT had them in storage order)."""
    from oxigraph_server import oxigraph_server

    from filtag_kg.kg.export import export_tags
    from filtag_kg.kg.store import RemoteStore

    tags = synthetic_tags(4, "net-d", k=(12, 2), q=(25.0, 5.0, 10.0, 2.5), layers={"conv2d_1": 16})
    other = synthetic_tags(5, "net-e", k=(3, 1), q=(50.0, 7.5))
    store = Store()
    for one in (tags, other):
        store.extend(export_tags(one))
    expected = {"net-d": "k-best 2, k-best 12, q-quantile 2.5, q-quantile 5, q-quantile 10, q-quantile 25",
                "net-e": "k-best 1, k-best 3, q-quantile 7.5, q-quantile 50"}
    with oxigraph_server(tmp_path / "oxigraph") as base:
        remote = RemoteStore.at(base)
        for one in (tags, other):
            remote.load(export_tags(one))
        for db in (store, remote):
            listed = rows("runs", db)
            assert {r["title"]: r["selections"] for r in listed} == expected
            network = next(r["network"] for r in listed if r["title"] == "net-d")
            assert [r["selections"] for r in rows("runs", db, network=network)] == [expected["net-d"]]


def test_error_queries_list_selections_by_method_then_number() -> None:
    """q-quantile 5 before q-quantile 10 and 25 (text sorts them the other way round)."""
    store = four_selections_store(6)
    for name, params in (("errors-both-tags-active", {}), ("errors-misclassified", {"class": "dog"}),
                         ("errors-explanation-disagrees", {"n": 1})):
        listed = [r["selection"] for r in rows(name, store, **params)]
        assert list(dict.fromkeys(listed)) == ["k-best 1", "q-quantile 5", "q-quantile 10", "q-quantile 25"], name
    pairs = [(-r["errors"], -r["sharedFilters"], r["true"], r["predicted"], r["selection"].split()[0],
              float(r["selection"].split()[1])) for r in rows("errors-confused-pairs", store)]
    assert pairs == sorted(pairs) and len({p[:4] for p in pairs}) < len(pairs)  # ties broken by the selection


def test_networks_count_the_filters_of_conv_layers_only() -> None:
    """A Dense layer's units are in the manifest's `filters` too (ft:filterCount), but are no filters;
    a tagged layer the manifest does not describe (no Keras class) has its tagged filters."""
    from filtag_kg.kg.export import export_tags

    tags = synthetic_tags(2, "net-c")
    described = [e for e in tags.manifest["model"]["layers"] if e["name"] != "conv2d_2"]  # conv2d_2: undescribed
    tags.manifest["model"]["layers"] = [
        {"name": "image", "type": "InputLayer", "index": 0, "filters": None, "kernel_size": None, "params": 0,
         "activation": None},
        *described,
        {"name": "predictions", "type": "Dense", "index": 6, "filters": 10, "kernel_size": None, "params": 170,
         "activation": "softmax"},
    ]
    store = Store()
    store.extend(export_tags(tags))
    assert [(n["title"], n["layers"], n["filters"]) for n in rows("networks", store)] == [
        ("net-c", 5, 8 + 16 + 16)]  # layers: image, conv2d, conv2d_1, predictions, conv2d_2


def test_filter_tags(store: Store, runs: dict[str, TagSet]) -> None:
    tagged = [{int(f) for f, li in zip(one.filter_index, one.layer_index) if one.layers[li] == "conv2d_1"}
              for one in (t.select(K_BEST, 1) for t in runs.values())]
    f = min(set.intersection(*tagged))  # a filter both runs tag at k=1 (so an order ignoring the run mixes them)
    expected = {
        (run_iri(t), *selection_of(tag), tag.rank, tag.class_name, tag.score)
        for t in runs.values() for tag in t if (tag.layer, tag.filter) == ("conv2d_1", f)
    }
    got = rows("filter-tags", store, layer="conv2d_1", filter=f)
    assert {(r["run"], r["method"], r["parameter"], r["rank"], r["label"], r["score"]) for r in got} == expected
    assert len(got) == len(expected) > 0
    # each run's rows together, k-best before q-quantile, then by k or q and rank
    order = [r["run"] for r in got]
    blocks = [r for i, r in enumerate(order) if i == 0 or r != order[i - 1]]
    assert len(blocks) == len(set(order)) == 2
    for run in set(order):
        keys = [(r["method"] == QQ, r["parameter"], r["rank"]) for r in got if r["run"] == run]
        assert keys == sorted(keys) and keys[0][0] is False
    only_a = rows("filter-tags", store, layer="conv2d_1", filter=f, run=run_iri(runs["a"]))
    assert {r["run"] for r in only_a} == {run_iri(runs["a"])} and 0 < len(only_a) < len(got)
    assert rows("filter-tags", store, layer="conv2d_1", filter=99) == []


def test_class_filters(store: Store, runs: dict[str, TagSet]) -> None:
    tags = runs["a"]
    got = rows("class-filters", store, **{"class": "zebra", "run": run_iri(tags)})
    expected = {}
    for method, p in tags.selections:
        for m in tags.layers:
            filters = np.flatnonzero(tags.tag_matrix(m, method, p)[:, ANIMALS.index("zebra")])
            if len(filters):
                expected[METHOD_IRI[method], float(p), m] = sorted(filters.tolist())
    assert {(r["method"], r["parameter"], r["layer"]): sorted(map(int, r["indices"].split())) for r in got} == expected
    assert all(r["filters"] == len(r["indices"].split()) for r in got)
    assert [r["layer"] for r in got][:3] == list(LAYERS)  # network order


def test_class_specific_filters(store: Store, runs: dict[str, TagSet]) -> None:
    tags = runs["a"]
    expected = set()
    for method, p in tags.selections:
        for m in tags.layers:
            matrix = tags.tag_matrix(m, method, p)
            for f in np.flatnonzero(matrix.sum(axis=1) == 1):
                expected.add((METHOD_IRI[method], float(p), m, int(f), ANIMALS[int(np.flatnonzero(matrix[f])[0])]))
    got = rows("class-specific-filters", store, run=run_iri(tags))
    assert {(r["method"], r["parameter"], r["layer"], r["filter"], r["class"]) for r in got} == expected
    assert expected
    keys = [(r["method"] == QQ, r["parameter"], list(LAYERS).index(r["layer"]), r["filter"]) for r in got]
    assert keys == sorted(keys)  # k-best first, then by k or q, network order, filter index
    in_layer = rows("class-specific-filters", store, run=run_iri(tags), layer="conv2d")
    assert {r["layer"] for r in in_layer} == {"conv2d"} and len(in_layer) == sum(e[2] == "conv2d" for e in expected)


def test_similar_classes_ranked_by_shared_filters(store: Store, runs: dict[str, TagSet]) -> None:
    tags = runs["a"]
    got = rows("similar-classes", store, **{"class": "cat", "run": run_iri(tags)})
    cat = ANIMALS.index("cat")
    for method, p in tags.selections:
        shared = sum(
            (tags.tag_matrix(m, method, p)[:, [cat]] & tags.tag_matrix(m, method, p)).sum(axis=0)
            for m in tags.layers
        )
        ranked = sorted((c for c, n in enumerate(shared) if n and c != cat), key=lambda c: (-shared[c], c))
        mine = [r for r in got if r["selection"] == f"{method} {p:g}"]
        assert [(r["rank"], r["label"], r["sharedFilters"]) for r in mine] == [
            (i, ANIMALS[c], int(shared[c])) for i, c in enumerate(ranked, start=1)]
    only = rows("similar-classes", store, **{"class": "cat", "run": run_iri(tags), "method": KB, "parameter": 3})
    assert only and all(r["selection"] == "k-best 3" for r in only)


def test_similar_classes_keeps_the_top_n(runs: dict[str, TagSet]) -> None:
    from filtag_kg.kg.export import export_tags

    tags = runs["a"]
    two = Store()
    two.extend(export_tags(tags, similar_classes=2))
    got = queries.run("similar-classes", two, {"class": "cat", "run": run_iri(tags)}).values()
    per_selection: dict[tuple[object, object], list[int]] = {}
    for r in got:
        per_selection.setdefault(r["selection"], []).append(r["rank"])
    assert per_selection and all(ranks == [1, 2][:len(ranks)] for ranks in per_selection.values())
    with pytest.raises(UserError, match="similar_classes"):
        list(export_tags(tags, similar_classes=-1))


def test_layer_tag_statistics(store: Store, runs: dict[str, TagSet]) -> None:
    tags = runs["a"]
    got = rows("layer-tag-statistics", store, run=run_iri(tags))
    assert len(got) == len(tags.selections) * len(tags.layers)
    for r in got:
        method = next(m for m, iri in METHOD_IRI.items() if iri == r["method"])
        p = next(p for m, p in tags.selections if m == method and float(p) == r["parameter"])
        matrix = tags.tag_matrix(r["layer"], method, p)
        one = tags.select(method, p)
        scores = one.score[one.layer_index == tags.layers.index(r["layer"])]
        assert r["filterCount"] == LAYERS[r["layer"]]
        assert r["tags"] == matrix.sum() == len(scores)
        assert r["taggedFilters"] == matrix.any(axis=1).sum()
        assert r["classes"] == matrix.any(axis=0).sum()
        assert r["untaggedShare"] == pytest.approx(1 - matrix.any(axis=1).mean())
        assert r["meanScore"] == pytest.approx(scores.mean()) and r["maxScore"] == pytest.approx(scores.max())


def _diff(t1: TagSet, sel1: tuple[str, float], t2: TagSet, sel2: tuple[str, float]) -> set[tuple[str, int, str]]:
    """Brute force: per layer and filter, how the two selections' class sets differ."""
    out = set()
    for m in t1.layers:
        a, b = t1.tag_matrix(m, *sel1), t2.tag_matrix(m, *sel2)
        for f in range(a.shape[0]):
            if (a[f] != b[f]).any():
                change = "tags differ" if a[f].any() and b[f].any() else "tagged only in 1" if a[f].any() else "tagged only in 2"
                out.add((m, f, change))
    return out


@pytest.mark.parametrize("second", ["same run k=3", "same run q=25", "other model k=1", "same selection"])
def test_run_diff(store: Store, runs: dict[str, TagSet], second: str) -> None:
    a = runs["a"]
    other, sel2 = {"same run k=3": (a, (K_BEST, 3)), "same run q=25": (a, (Q_QUANTILE, 25.0)),
                   "other model k=1": (runs["b"], (K_BEST, 1)), "same selection": (a, (K_BEST, 1))}[second]
    got = rows("run-diff", store, run1=run_iri(a), method1=KB, parameter1=1,
               run2=run_iri(other), method2=METHOD_IRI[sel2[0]], parameter2=sel2[1])
    expected = _diff(a, (K_BEST, 1), other, sel2)
    assert {(r["layer"], r["filter"], r["change"]) for r in got} == expected
    assert len(got) == len(expected)
    assert (len(expected) == 0) == (second == "same selection")
    if second in ("same run k=3", "same run q=25"):  # they keep every k=1 tag: nothing is tagged only in 1
        assert {r["change"] for r in got} == {"tags differ", "tagged only in 2"}


def test_tag_signature_identifies_class_sets() -> None:
    from filtag_kg.kg.export import SIGNATURE_INDEX_LIMIT, tag_signature

    signature = tag_signature(7, ["http://c/b", "http://c/a"])
    assert signature == tag_signature(7, ["http://c/a", "http://c/b"])
    assert signature != tag_signature(7, ["http://c/a"]) and signature != tag_signature(8, ["http://c/a", "http://c/b"])
    assert signature % SIGNATURE_INDEX_LIMIT == 7 and 0 <= signature < 2**63
    last = tag_signature(SIGNATURE_INDEX_LIMIT - 1, ["http://c/a"])
    assert last % SIGNATURE_INDEX_LIMIT == SIGNATURE_INDEX_LIMIT - 1 and last < 2**63


def test_export_refuses_layers_beyond_the_signature_index() -> None:
    from filtag_kg.kg.export import SIGNATURE_INDEX_LIMIT, export_tags

    stats = ActivationStats.empty(["huge"], ["a", "b"], {"huge": SIGNATURE_INDEX_LIMIT + 1}, {})
    stats.counts[:] = 1
    with pytest.raises(UserError, match=r"layer huge has 65,537 filters"):
        list(export_tags(filtag_kg.tag(stats, k=1)))


def test_selection_tags(store: Store, runs: dict[str, TagSet]) -> None:
    a = runs["a"]
    got = rows("selection-tags", store, run=run_iri(a), method=QQ, parameter="25.0", layer="conv2d_2")
    one = a.select(Q_QUANTILE, 25.0)
    keep = one.layer_index == a.layers.index("conv2d_2")
    assert sorted((r["filter"], r["classIndex"], r["rank"]) for r in got) == sorted(
        zip(one.filter_index[keep].tolist(), one.class_index[keep].tolist(), one.rank[keep].tolist()))
    assert {r["sequence"] for r in got} == {5}  # manifest index 4, NNO counts from 1


# -- the remote path: a real Oxigraph server on loopback ----------------------------------------------

@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory, runs: dict[str, TagSet]):
    from oxigraph_server import oxigraph_server

    from filtag_kg.kg.export import export_tags
    from filtag_kg.kg.store import RemoteStore

    with oxigraph_server(tmp_path_factory.mktemp("oxigraph")) as base:
        store = RemoteStore.at(base)
        for tags in runs.values():
            store.load(export_tags(tags))
        store.load(_label_store().quads_for_pattern(None, None, None, None))
        yield store


def _comparable(results: Results) -> list[tuple[str, ...]]:
    """Rows as sorted tuples of terms; GROUP_CONCAT cells sorted (their order is unspecified) and
    doubles to 12 digits (sums in another order round differently)."""
    def cell(name: str, term: object) -> str:
        if name in ("indices", "selections", "software") and term is not None:
            return ",".join(sorted(term.value.replace(", ", " ").split()))
        if isinstance(term, Literal) and term.datatype.value == XSD + "double":
            return f"{float(term.value):.12g}"
        return "" if term is None else str(term)
    return sorted(tuple(cell(v, t) for v, t in zip(results.variables, row)) for row in results.rows)


def _bundled_calls(runs: dict[str, TagSet]) -> list[tuple[str, dict[str, object]]]:
    a, b = run_iri(runs["a"]), run_iri(runs["b"])
    return [
        ("runs", {}), ("networks", {}),
        ("filter-tags", {"layer": "conv2d", "filter": 3}),
        ("filter-tags", {"layer": "conv2d", "filter": 3, "run": b}),
        ("class-filters", {"class": "horse"}), ("class-filters", {"class": "horse", "run": a}),
        ("class-specific-filters", {}), ("class-specific-filters", {"run": a, "layer": "conv2d_2"}),
        ("similar-classes", {"class": "zebra", "run": a}),
        ("layer-tag-statistics", {}),
        ("run-diff", {"run1": a, "method1": KB, "parameter1": 1, "run2": a, "method2": QQ, "parameter2": "25.0"}),
        ("run-diff", {"run1": a, "method1": KB, "parameter1": 3, "run2": b, "method2": KB, "parameter2": 1}),
        ("selection-tags", {"run": b, "method": KB, "parameter": 1}),
        ("selection-tags", {"run": a, "method": QQ, "parameter": 25, "layer": "conv2d_1"}),
    ]


def test_remote_and_embedded_give_the_same_answers(store: Store, remote, runs: dict[str, TagSet]) -> None:
    mine = {name for name, _ in _bundled_calls(runs)}  # every bundled query of the tags (the others need linked data)
    assert mine == {n for n in queries.bundled_names() if not n.startswith(("semantic-", "coarse-", "errors-"))}
    for name, params in _bundled_calls(runs):
        here = queries.run(name, store, params)
        there = queries.run(name, remote, params)
        assert there.variables == here.variables, name
        assert _comparable(there) == _comparable(here), (name, params)
        assert len(here) > 0, (name, params)


def test_injection_on_the_remote_store_changes_nothing(remote) -> None:
    before = len(remote)
    q = Query.parse(LABEL_QUERY, "labels")
    assert [t.value for t in queries.run(q, remote, {"label": INJECTION}).column("thing")] == ["http://e/b"]
    assert queries.run(q, remote, {"label": 'plain" } ; DROP ALL ; #'}).rows == []
    assert len(remote) == before > 0


# -- the commands ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory, runs: dict[str, TagSet]):
    from filtag_kg.kg.export import export_tags
    from filtag_kg.kg.store import Store as DiskStore

    path = tmp_path_factory.mktemp("store")
    with DiskStore(path) as db:
        db.load(export_tags(runs["a"]))
    return path


def test_query_command_prints_csv_and_json(store_dir, runs: dict[str, TagSet], cli_ok) -> None:
    args = ["query", "filter-tags", "--param", "layer=conv2d", "--param", "filter=2", "--store", str(store_dir)]
    out = cli_ok(*args, "--format", "csv")
    lines = out.strip().splitlines()
    expected = [t for t in runs["a"] if (t.layer, t.filter) == ("conv2d", 2)]
    assert lines[0].split(",")[:3] == ["run", "layer", "filter"] and len(lines) == 1 + len(expected)
    js = json.loads(cli_ok(*args, "--format", "json"))
    assert sorted(b["label"]["value"] for b in js["results"]["bindings"]) == sorted(t.class_name for t in expected)
    listing = cli_ok("query", "--list")
    assert "run-diff: Difference between two runs" in listing and "--param run1=<iri>" in listing
    assert "--param filter=<integer, >= 0>  the filter's index" in listing  # its range, as the header states it


def test_query_command_errors_exit_2(store_dir, run_cli) -> None:
    code, out, err = run_cli("query", "filter-tags", "--param", "layer=conv2d", "--param", "filter=two",
                             "--store", store_dir)
    assert code == 2 and out == "" and err == ("Error: --param filter=two: expected a whole number in digits 0-9, "
                                               "e.g. 7\n")
    code, out, err = run_cli("query", "similar-classes", "--param", "class=zebra", "--param", "parameter=five",
                             "--store", store_dir)
    assert code == 2 and out == "" and err == ("Error: --param parameter=five: expected a decimal number in digits 0-9, "
                                               "e.g. 2.5\n")
    code, out, err = run_cli("query", "semantic-filters-under-concept", "--param", "concept=http://e/c",
                             "--param", "share=nan", "--store", store_dir)
    assert code == 2 and out == "" and err == "Error: --param share=nan: expected a finite number in digits 0-9, e.g. 0.5\n"
    code, out, err = run_cli("query", "filter-tags", "--param", "layer=conv2d", "--param", "filter=1",
                             "--param", "filter=2", "--store", store_dir)
    assert code == 2 and out == "" and "--param filter is given twice ('1' and '2')" in err


def test_an_empty_answer_names_a_value_the_store_has_not(store_dir, run_cli) -> None:
    """A mistyped class or run answered "(0 rows)" and nothing more, as a class without such filters does."""
    code, out, err = run_cli("query", "class-filters", "--param", "class=Zebr", "--store", store_dir)
    assert code == 0 and out.endswith("(0 rows)\n")
    assert err == "Note: no node in the store is labelled 'Zebr' (--param class); close: 'zebra'\n", err
    code, out, err = run_cli("query", "filter-tags", "--param", "layer=conv2", "--param", "filter=999",
                             "--store", store_dir)
    assert code == 0 and "(0 rows)" in out and err.startswith("Note: no node in the store is labelled 'conv2' (--param layer); close: 'conv2d'"), err
    code, out, err = run_cli("query", "filter-tags", "--param", "layer=conv2d", "--param", "filter=999",
                             "--store", store_dir)  # a label it has: no note
    assert code == 0 and "(0 rows)" in out and err == ""
    code, out, err = run_cli("query", "class-filters", "--param", "class=zebra", "--param", "run=http://e.org/run/x",
                             "--store", store_dir)
    assert code == 0 and err == "Note: <http://e.org/run/x> is in no triple of the store (--param run)\n", err


def test_graph_command_writes_the_class_class_graph(store_dir, runs: dict[str, TagSet], tmp_path, cli_ok) -> None:
    import networkx as nx

    from filtag_kg.kg import graphs

    out = tmp_path / "cc.graphml"
    cli_ok("graph", "--store", store_dir, "--method", "q-quantile", "--parameter", "25",
           "--kind", "class-class", "-o", out)
    expected = graphs.class_class_graph(graphs.filter_class_graph(runs["a"], Q_QUANTILE, 25.0))
    back = nx.read_graphml(out)
    assert {frozenset(e): d["weight"] for *e, d in back.edges(data=True)} == {
        frozenset(e): d["weight"] for *e, d in expected.edges(data=True)}


def test_query_command_on_an_endpoint(remote, store: Store, runs: dict[str, TagSet], cli_ok) -> None:
    endpoint = remote.query_url.removesuffix("/query")
    out = cli_ok("query", "similar-classes", "-p", "class=zebra", "-p", f"run={run_iri(runs['a'])}",
                 "--endpoint", endpoint, "--format", "tsv")
    here = queries.run("similar-classes", store, {"class": "zebra", "run": run_iri(runs["a"])})
    assert out == here.serialize("tsv")


def test_similar_classes_of_two_classes_with_one_label_stay_apart() -> None:
    """ImageNet has two maillots: their similar classes came interleaved by rank under one label, like
    rows repeated ('1 bikini', '1 bikini'); each class's rows are now together, named by its node."""
    from filtag_kg.kg.export import export_tags

    stats = ActivationStats.empty(["conv"], ["maillot", "maillot", "bikini"], {"conv": 3},
                                  {"dataset": {"label_space": "toy"}})
    stats.counts[:] = 1
    stats.sums["conv"] = np.array([[0.9, 0.8, 0.1], [0.9, 0.1, 0.8], [0.9, 0.8, 0.7]])
    tags = filtag_kg.tag(stats, k=2)  # maillot 0: filters 0, 1; maillot 1: 0, 2; bikini: 0, 1
    store = Store()
    store.extend(export_tags(tags))
    got = [(r["classNode"].rsplit("/", 1)[1], r["rank"], r["label"], r["sharedFilters"])
           for r in rows("similar-classes", store, **{"class": "maillot"})]
    assert got == [("maillot~0", 1, "bikini", 2), ("maillot~0", 2, "maillot", 1),
                   ("maillot~1", 1, "maillot", 1), ("maillot~1", 2, "bikini", 1)]  # a tie: by class index


def test_class_filters_of_two_classes_with_one_label_stay_apart() -> None:
    """Two classes of one label (ImageNet's maillots): their rows came interleaved layer by layer
    (maillot 0 in conv, maillot 1 in conv, maillot 0 in conv2 …); each class's rows are together."""
    from filtag_kg.kg.export import export_tags

    layers = {"conv": 3, "conv2": 3}
    manifest = {"dataset": {"label_space": "toy"}, "model": {"layers": [
        {"name": m, "type": "Conv2D", "index": i, "filters": n} for i, (m, n) in enumerate(layers.items())]}}
    stats = ActivationStats.empty(list(layers), ["maillot", "maillot", "bikini"], layers, manifest)
    stats.counts[:] = 1
    for m in layers:
        stats.sums[m] = np.array([[0.9, 0.8, 0.1], [0.9, 0.1, 0.8], [0.9, 0.8, 0.7]])
    store = Store()
    store.extend(export_tags(filtag_kg.tag(stats, k=2)))
    got = [(r["classNode"].rsplit("/", 1)[1], r["layer"], sorted(r["indices"].split()))
           for r in rows("class-filters", store, **{"class": "maillot"})]
    assert got == [("maillot~0", "conv", ["0", "1"]), ("maillot~0", "conv2", ["0", "1"]),
                   ("maillot~1", "conv", ["0", "2"]), ("maillot~1", "conv2", ["0", "2"])]


def test_class_specific_filters_name_which_of_two_classes_with_one_label() -> None:
    """Filters 0 and 1 are each specific to one of two maillots: both rows said 'maillot', so which
    maillot (the swimsuit or the tights) a filter responds to was lost; `classNode` names it."""
    from filtag_kg.kg.export import export_tags

    stats = ActivationStats.empty(["conv"], ["maillot", "maillot", "bikini"], {"conv": 4},
                                  {"dataset": {"label_space": "toy"}})
    stats.counts[:] = 1
    stats.sums["conv"] = np.array([[0.9, 0.1, 0.1, 0.0], [0.1, 0.9, 0.1, 0.0], [0.1, 0.1, 0.9, 0.0]])
    store = Store()
    store.extend(export_tags(filtag_kg.tag(stats, k=1)))
    got = [(r["filter"], r["class"], r["classNode"].rsplit("/", 1)[1]) for r in rows("class-specific-filters", store)]
    assert got == [(0, "maillot", "maillot~0"), (1, "maillot", "maillot~1"), (2, "bikini", "bikini")]
