"""Publishing and sharing a tagged model, checked against the standards: query files' syntax errors
placed in the file (from the embedded store and from a server), the schema.org description readable offline with the facts of the DCAT one,
SPARQL 1.1 CSV results from `serve`, and `serve` keeping a given password out of its output."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pyoxigraph as ox
import pytest
import rdflib
import rdflib.parser
import requests

from filtag_kg.errors import UserError
from filtag_kg.kg import queries
from filtag_kg.kg.export import export_tags
from filtag_kg.kg.fair import free_port, publish, serve, serving
from filtag_kg.kg.store import RemoteStore, Store
from filtag_kg.records import TagSet

from kg_helpers import run_iri
from oxigraph_server import oxigraph  # noqa: F401  (fixture)

SCHEMA = rdflib.Namespace("https://schema.org/")
DCTERMS = rdflib.Namespace("http://purl.org/dc/terms/")
DCAT = rdflib.Namespace("http://www.w3.org/ns/dcat#")
SPDX = rdflib.Namespace("http://spdx.org/rdf/terms#")


def test_a_syntax_error_names_the_query_file_and_its_line(tmp_path: Path) -> None:
    """The VALUES block of a parameter moved the lines: an error on line 5 was reported at line 7,
    of "query 'bad'" rather than of its file."""
    path = tmp_path / "bad.rq"
    path.write_text("# title: Bad\n# param: label (string): a label\nSELECT ?s WHERE {\n  ?s ?p ?label .\n"
                    "  ?s rdfs:label ?o .\n}\n", encoding="utf-8")
    with pytest.raises(UserError) as e:
        queries.run(path, ox.Store(), {"label": "x"})
    assert str(e.value).startswith(f"query file {path} is not valid SPARQL: error at line 5, column "), e.value


def test_a_syntax_error_on_the_line_of_the_where_brace_keeps_its_column(tmp_path: Path) -> None:
    """The VALUES block sits on the brace's line: columns after it are moved back to the file's."""
    path = tmp_path / "bad.rq"
    text = "# param: label (string): a label\nSELECT ?s WHERE { ?s ?p ?label . ?s rdfs:label ?o }\n"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SyntaxError) as raw:  # where pyoxigraph places the error in the text as written
        ox.Store().query(text)
    with pytest.raises(UserError) as e:
        queries.run(path, ox.Store(), {"label": "x"})
    line, column = str(raw.value).removeprefix("error at ").split(":")[:2]
    assert line == "2" and f"error at line 2, column {column}:" in str(e.value), (raw.value, e.value)


def test_a_syntax_error_from_a_server_names_the_file_and_line_too(tmp_path: Path, oxigraph: str) -> None:
    """A real Oxigraph server's refusal came out as SPARQLWrapper's bytes repr of its answer
    (b"error at 5:65: …" with doubled escapes), positioned in the text with the VALUES block."""
    path = tmp_path / "bad.rq"
    path.write_text("# title: Bad\n# param: label (string): a label\nSELECT ?s WHERE {\n  ?s ?p ?label .\n"
                    "  ?s rdfs:label ?o .\n}\n", encoding="utf-8")
    with pytest.raises(UserError) as e:
        queries.run(path, RemoteStore.at(oxigraph), {"label": "x"})
    assert str(e.value).startswith(f"query file {path} is not valid SPARQL: error at line 5, column "), e.value
    assert "b'" not in str(e.value) and 'b"' not in str(e.value), e.value


@pytest.fixture
def published(tmp_path: Path, run_a: TagSet) -> Path:
    db = Store(tmp_path / "store")
    db.load(export_tags(run_a))
    publish(db, run_iri(run_a), tmp_path / "pub", license="https://creativecommons.org/licenses/by/4.0/",
            creator="Lab of Tests", issued="2026-01-02", download_url="https://example.org/data/")
    db.close()
    return tmp_path / "pub"


def test_the_schema_org_description_reads_offline_with_the_facts_of_dcat(
        published: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its context was "https://schema.org/", which every JSON-LD reader fetches (offline: no facts,
    rdflib raised URLError) and which maps the terms to http://schema.org/ with the license a string."""

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("no network in this test")

    monkeypatch.setattr(rdflib.parser, "_urlopen", offline)  # what rdflib fetches a remote context with
    schema = rdflib.Graph().parse(published / "dataset.jsonld", format="json-ld")
    dcat = rdflib.Graph().parse(published / "dataset.ttl", format="turtle")
    (dataset,) = set(dcat.subjects(DCAT.distribution, None))  # (the images a run used are a dcat:Dataset too)
    assert (dataset, rdflib.RDF.type, SCHEMA.Dataset) in schema
    assert schema.value(dataset, SCHEMA.name) == dcat.value(dataset, DCTERMS.title)
    assert schema.value(dataset, SCHEMA.license) == dcat.value(dataset, DCTERMS.license)  # both the IRI
    assert schema.value(dataset, SCHEMA.datePublished) == dcat.value(dataset, DCTERMS.issued)  # both an xsd:date
    downloads = {str(schema.value(d, SCHEMA.contentUrl)): (str(schema.value(d, SCHEMA.sha256)),
                                                           str(schema.value(d, SCHEMA.encodingFormat)))
                 for d in schema.objects(dataset, SCHEMA.distribution)}
    distributions = {str(dcat.value(d, DCAT.downloadURL)): (
        str(dcat.value(dcat.value(d, SPDX.checksum), SPDX.checksumValue)),
        str(dcat.value(d, DCAT.mediaType)).removeprefix("https://www.iana.org/assignments/media-types/"))
        for d in dcat.objects(dataset, DCAT.distribution)}
    assert len(downloads) == 3 and downloads == distributions
    assert all(isinstance(schema.value(d, SCHEMA.contentUrl), rdflib.URIRef)
               for d in schema.objects(dataset, SCHEMA.distribution))


def test_served_csv_quotes_an_iri_holding_a_comma(tmp_path: Path) -> None:
    """SPARQL 1.1 CSV quotes every field with a comma; pyoxigraph's writer left IRIs unquoted, so
    `http://e/a,b` was two fields and every later column moved."""
    path = tmp_path / "store"
    with Store(path) as db:
        db.oxigraph.add(ox.Quad(ox.NamedNode("http://e/a,b"), ox.NamedNode("http://e/p"),
                                ox.Literal('say "hi", then\ngo'), ox.NamedNode("http://e/g")))
    with serving(path, free_port()) as (url, _):
        answer = requests.get(f"{url}/query", params={"query": "SELECT ?s ?o ?none WHERE { ?s ?p ?o }"},
                              headers={"Accept": "text/csv"}, timeout=30)
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/csv")
    assert list(csv.reader(io.StringIO(answer.content.decode(), newline=""))) == [
        ["s", "o", "none"], ["http://e/a,b", 'say "hi", then\ngo', ""]]
    assert answer.content.endswith(b"\r\n")


def test_serve_keeps_a_given_password_out_of_its_output(tmp_path: Path) -> None:
    """The README: the password comes from $FILTAG_KG_PASSWORD, else one is printed; a given one was
    printed too, into every log of the server."""
    lines: list[str] = []

    def echo(line: str) -> None:
        lines.append(line)
        if line.startswith("updates:"):
            raise KeyboardInterrupt  # stop before serving forever

    with pytest.raises(KeyboardInterrupt):
        serve(tmp_path / "store", free_port(), allow_updates=True, password="open sesame", echo=echo)
    assert lines[-1].startswith("updates:") and "open sesame" not in "\n".join(lines), lines


def test_parameter_errors_name_the_query_file(tmp_path: Path) -> None:
    """A query file's parameter errors said "query 'x'", its stem, which names no file."""
    path = tmp_path / "x.rq"
    path.write_text("# param: label (string): a label\nSELECT ?s WHERE { ?s ?p ?label }\n", encoding="utf-8")
    with pytest.raises(UserError, match=rf"^query file {re.escape(str(path))} needs --param label="):
        queries.run(path, ox.Store())
    with pytest.raises(UserError, match=rf"^query file {re.escape(str(path))} has no parameter nope; its parameters: label$"):
        queries.run(path, ox.Store(), {"label": "a", "nope": 1})
