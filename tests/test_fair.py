"""FAIR publishing (distributions, DCAT with sizes and checksums, schema.org), serving the store on
loopback (read-only; updates only with basic auth), and the knowledge-graph CLI commands."""

from __future__ import annotations

import datetime as dt
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import socket
import sys
from pathlib import Path

import pyoxigraph as ox
import pyshacl
import pytest
import rdflib
import requests
from tqdm import tqdm

import filtag_kg
from filtag_kg.errors import UserError
from filtag_kg.kg.export import bundled_path, export_graphs, export_tags
from filtag_kg.kg.fair import free_port, publish, serving
from filtag_kg.kg.store import JOURNAL, RemoteStore, Store
from filtag_kg.kg.vocab import FT, sparql_prefixes
from filtag_kg.records import TagSet

from kg_helpers import TAG_COUNT, run_iri
from oxigraph_server import oxigraph  # noqa: F401  (fixture)
from test_export import synthetic_stats

DCAT = rdflib.Namespace("http://www.w3.org/ns/dcat#")
SPDX = rdflib.Namespace("http://spdx.org/rdf/terms#")


@pytest.fixture
def store(tmp_path: Path, run_a: TagSet, run_b: TagSet) -> Store:
    db = Store(tmp_path / "store")
    db.load(export_tags(run_a))
    db.load(export_tags(run_b))
    return db


def test_publish_describes_exactly_the_files_it_wrote(store: Store, run_a: TagSet, tmp_path: Path) -> None:
    out = tmp_path / "pub"
    result = publish(store, run_iri(run_a), out, license="https://creativecommons.org/licenses/by/4.0/",
                     creator="Lab of Tests", issued="2026-01-02", download_url="https://example.org/data/")
    assert sorted(result.graphs, key=lambda g: g.value) == sorted(export_graphs(run_a), key=lambda g: g.value)
    description = rdflib.Graph().parse(out / "dataset.ttl", format="turtle")
    distributions = list(description.subjects(rdflib.RDF.type, DCAT.Distribution))
    assert len(distributions) == 3
    media = {}
    for dist in distributions:
        url = str(description.value(dist, DCAT.downloadURL))
        path = out / url.rsplit("/", 1)[1]
        assert url == "https://example.org/data/" + path.name
        assert int(description.value(dist, DCAT.byteSize)) == path.stat().st_size
        checksum = description.value(dist, SPDX.checksum)
        assert str(description.value(checksum, SPDX.checksumValue)) == hashlib.sha256(path.read_bytes()).hexdigest()
        media[path.suffix] = str(description.value(dist, DCAT.mediaType)).rsplit("media-types/", 1)[1]
    assert media == {".nq": "application/n-quads", ".trig": "application/trig", ".jsonld": "application/ld+json"}
    # each distribution holds the run's three graphs, nothing of the other run
    expected = {q for g in export_graphs(run_a) for q in store.quads(g)}
    for fmt, suffix in ((ox.RdfFormat.N_QUADS, ".nq"), (ox.RdfFormat.TRIG, ".trig"), (ox.RdfFormat.JSON_LD, ".jsonld")):
        (path,) = out.glob(f"filtag-*{suffix}")
        assert set(ox.parse(path=str(path), format=fmt)) == expected
    # the description carries the NNO architecture (layers) but not the filters, and the run's provenance
    NNO = rdflib.Namespace("https://w3id.org/nno/ontology#")
    assert len(list(description.objects(None, NNO.hasLayer))) == 6
    assert not list(description.subjects(rdflib.RDF.type, rdflib.URIRef(FT + "Filter")))
    assert (rdflib.URIRef(run_iri(run_a)), rdflib.RDF.type, rdflib.URIRef(FT + "TaggingRun")) in description
    schema = json.loads((out / "dataset.jsonld").read_text())
    assert schema["@type"] == "Dataset" and schema["datePublished"] == "2026-01-02"
    assert schema["license"] == "https://creativecommons.org/licenses/by/4.0/"
    sizes = {d["contentUrl"].rsplit("/", 1)[1]: (d["contentSize"], d["sha256"]) for d in schema["distribution"]}
    for name, (size, sha) in sizes.items():
        assert size == f"{(out / name).stat().st_size} B" and sha == hashlib.sha256((out / name).read_bytes()).hexdigest()


def test_publish_shows_its_progress_per_distribution_and_writes_the_same(
    store: Store, run_a: TagSet, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """publish wrote its distributions with no sign of life (16 s for a VGG16 run's 352,000 quads); with
    `progress` a bar per distribution counts the run's quads, and the files are the same as without."""
    args = dict(license="https://opensource.org/licenses/MIT", creator="x", issued="2026-12-03")
    quiet = publish(store, run_iri(run_a), tmp_path / "quiet", **args)
    assert capsys.readouterr().err == ""
    shown = publish(store, run_iri(run_a), tmp_path / "shown", progress=True, **args)
    err = capsys.readouterr().err
    total = tqdm.format_sizeof(sum(store.count(g) for g in quiet.graphs))  # as the bar shows it, e.g. 1.46k
    for title in ("N-Quads", "TriG", "JSON-LD"):
        assert re.search(rf"publish: {title}: +0%.* 0\.00/{re.escape(total)} ", err), (title, err[-300:])
    assert [p.read_bytes() for p in quiet.files] == [p.read_bytes() for p in shown.files]


def test_published_description_conforms_to_the_shapes(store: Store, run_a: TagSet, tmp_path: Path) -> None:
    publish(store, run_iri(run_a), tmp_path, license="https://opensource.org/licenses/MIT", creator="x")
    shapes = rdflib.Graph().parse(bundled_path("shapes.ttl"), format="turtle")
    description = rdflib.Graph().parse(tmp_path / "dataset.ttl", format="turtle")
    conforms, _, report = pyshacl.validate(description, shacl_graph=shapes)
    assert conforms, report
    description.remove((None, DCAT.byteSize, None))
    conforms, _, report = pyshacl.validate(description, shacl_graph=shapes)
    assert not conforms and "byteSize" in report


def test_publish_refuses_a_folder_of_another_runs_distributions(store: Store, run_a: TagSet, run_b: TagSet,
                                                                tmp_path: Path) -> None:
    """A second run published into the same folder replaced dataset.ttl, leaving the first run's files
    there, described by nothing. The same run again is a re-publication."""
    args = {"license": "https://x.org/l", "creator": "x", "issued": "2026-01-02"}
    first = publish(store, run_iri(run_a), tmp_path / "pub", **args)
    before = {p.name: p.read_bytes() for p in (tmp_path / "pub").iterdir()}
    with pytest.raises(UserError, match=rf"^--out {re.escape(str(tmp_path / 'pub'))} holds the distributions of another "
                                        rf"run \(filtag-\S+\.jsonld, filtag-\S+\.nq, filtag-\S+\.trig\), which"):
        publish(store, run_iri(run_b), tmp_path / "pub", **args)
    assert {p.name: p.read_bytes() for p in (tmp_path / "pub").iterdir()} == before
    assert publish(store, run_iri(run_a), tmp_path / "pub", **args).files == first.files


def test_publish_errors(store: Store, run_a: TagSet, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no tagging run"):
        publish(store, "https://example.org/run/none", tmp_path, license="https://x.org/l", creator="x")
    with pytest.raises(UserError, match="--issued"):
        publish(store, run_iri(run_a), tmp_path, license="https://x.org/l", creator="x", issued="02/01/2026")
    with pytest.raises(UserError, match="--license"):
        publish(store, run_iri(run_a), tmp_path, license="CC-BY", creator="x")
    with pytest.raises(UserError, match="--creator"):
        publish(store, run_iri(run_a), tmp_path, license="https://x.org/l", creator=" ")
    with pytest.raises(UserError, match="--license 'https://x.org/{by}' is not an IRI"):
        publish(store, run_iri(run_a), tmp_path, license="https://x.org/{by}", creator="x")
    for url in ("https://x.org/my data/", "https://x.org/d?v=1"):
        with pytest.raises(UserError, match="--download-url"):
            publish(store, run_iri(run_a), tmp_path / "pub", license="https://x.org/l", creator="x", download_url=url)
    assert not (tmp_path / "pub").exists()  # refused before anything is written
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(UserError, match=f"--out {tmp_path / 'a-file'}"):
        publish(store, run_iri(run_a), tmp_path / "a-file", license="https://x.org/l", creator="x")


def test_a_failed_publish_leaves_no_partial_file(
    store: Store, run_a: TagSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "pub"
    out.mkdir()
    (out / "dataset.ttl").write_text("earlier")

    def failing(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("filtag_kg.kg.fair.serialize", failing)  # the description, after the distributions
    with pytest.raises(UserError, match="No space left on device"):
        publish(store, run_iri(run_a), out, license="https://x.org/l", creator="x")
    assert [p.name for p in out.iterdir()] == ["dataset.ttl"] and (out / "dataset.ttl").read_text() == "earlier"
    monkeypatch.undo()
    (out / ".publishing-killed").mkdir()  # what a publish killed outright leaves
    (out / ".publishing-killed" / "part.nq").write_text("half")
    result = publish(store, run_iri(run_a), out, license="https://x.org/l", creator="x")
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in result.files) and len(result.files) == 5


def test_a_publish_into_a_folder_another_publish_writes_to_is_refused(
    store: Store, run_a: TagSet, tmp_path: Path,
) -> None:
    """It took the other's staging folder for a killed publish's and deleted it mid-write."""
    import fcntl

    out = tmp_path / "pub"
    (out / ".publishing-running").mkdir(parents=True)
    other = os.open(out, os.O_RDONLY)  # as the running publish holds it
    try:
        fcntl.flock(other, fcntl.LOCK_EX)
        with pytest.raises(UserError, match=f"--out {out}: another publish is writing there"):
            publish(store, run_iri(run_a), out, license="https://x.org/l", creator="x")
        assert [p.name for p in out.iterdir()] == [".publishing-running"]
    finally:
        os.close(other)
    assert len(publish(store, run_iri(run_a), out, license="https://x.org/l", creator="x").files) == 5


def test_the_description_states_each_triple_once(store: Store, run_a: TagSet, tmp_path: Path) -> None:
    """Another tagging of the same collection puts the collection's description in a second graph."""
    again = filtag_kg.tag(synthetic_stats(seed=0), k=[2])  # run_a's statistics, another selection
    store.load(export_tags(again))
    publish(store, run_iri(run_a), tmp_path, license="https://x.org/l", creator="x")
    triples = list(ox.parse(path=str(tmp_path / "dataset.ttl"), format=ox.RdfFormat.TURTLE))  # as written
    assert len(triples) == len(set(triples))


def test_serve_read_only(store: Store, run_a: TagSet, run_b: TagSet) -> None:
    path, size = store.path, len(store)
    store.close()
    with serving(path, free_port()) as (url, password):
        assert password is None
        remote = RemoteStore.at(url)
        assert int(next(iter(remote.query(TAG_COUNT, union=False)))["n"].value) == len(run_a) + len(run_b)
        refused = requests.post(f"{url}/update", data="DROP ALL", headers={"Content-Type": "application/sparql-update"})
        assert refused.status_code >= 400
        assert len(remote) == size


def test_serve_with_updates_needs_the_password(store: Store) -> None:
    path, size = store.path, len(store)
    store.close()
    with serving(path, free_port(), allow_updates=True, password="open sesame") as (url, password):
        assert password == "open sesame"
        update = "INSERT DATA { GRAPH <http://example.org/g> { <http://a> <http://p> 1 } }"
        headers = {"Content-Type": "application/sparql-update"}
        assert requests.post(f"{url}/update", data=update, headers=headers).status_code == 401
        assert requests.post(f"{url}/update", data=update, headers=headers, auth=("filtag-kg", "wrong")).status_code == 401
        assert requests.put(f"{url}/store", params={"graph": "http://x"}, data="<http://a> <http://p> 2 .",
                            headers={"Content-Type": "application/n-triples"}).status_code == 401
        assert len(RemoteStore.at(url)) == size  # queries need no password
        assert requests.post(f"{url}/update", data=update, headers=headers,
                             auth=("filtag-kg", "open sesame")).status_code in (200, 204)
        assert len(RemoteStore.at(url)) == size + 1
        port = int(url.rsplit(":", 1)[1])
        for spelling in ("/%75pdate", "/upd%61te", "/update/", "//update", "/query/../update", "/./update"):
            # sent as spelled (requests would normalise the path); Oxigraph resolves most of these to /update
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("POST", spelling, body=update.replace("1 }", "2 }"), headers=headers)
            # refused either way: as /update without auth (Python's server makes //update that), or as no service
            assert connection.getresponse().status in (401, 404), spelling
            connection.close()
        assert requests.post(f"{url}/store", params={"graph": "http://y"}, data="<http://a> <http://p> 3 .",
                             headers={"Content-Type": "application/n-triples"}).status_code == 401
        assert requests.get(f"{url}/store", params={"graph": "http://example.org/g"}).status_code == 200
        chunked = requests.post(f"{url}/query", data=iter([b"SELECT (COUNT(*) AS ?n) ", b"WHERE { ?s ?p ?o }"]),
                                headers={"Content-Type": "application/sparql-query", "Accept": "text/csv"})
        assert chunked.status_code == 200 and chunked.text.splitlines()[0] == "n"
        chunked = requests.put(f"{url}/store", params={"graph": "http://z"}, data=iter([b"<http://a> ", b"<http://p> \"4\" ."]),
                               headers={"Content-Type": "application/n-triples"}, auth=("filtag-kg", "open sesame"))
        assert chunked.status_code in (200, 201, 204), chunked.text
        assert RemoteStore.at(url).count("http://z") == 1
        size += 1
        assert len(RemoteStore.at(url)) == size + 1
        with pytest.raises(UserError, match=f"--port {url.rsplit(':', 1)[1]}: cannot listen"):
            with serving(path, int(url.rsplit(":", 1)[1])):
                pass
    with pytest.raises(UserError, match="no store .* or serve it --allow-updates"):
        with serving(path.parent / "nothing", free_port()):
            pass


def test_serve_with_updates_makes_a_store_to_push_into(tmp_path: Path, run_a: TagSet) -> None:
    """`serve --allow-updates` of a store not made yet said 'no store: load or import a run first', so a
    server to push runs into could not be started on a new machine; it now makes the store."""
    with serving(tmp_path / "new" / "store", free_port(), allow_updates=True, password="open sesame") as (url, _):
        remote = RemoteStore.at(url, auth=("filtag-kg", "open sesame"))
        assert len(remote) == 0
        remote.load(export_tags(run_a))
        assert int(next(iter(remote.query(TAG_COUNT, union=False)))["n"].value) == len(run_a)
    with Store(tmp_path / "new" / "store", read_only=True) as store:  # kept once the server stopped
        assert int(next(iter(store.query(TAG_COUNT)))["n"].value) == len(run_a)


def test_the_endpoint_tells_wrong_credentials_and_answers_options(store: Store) -> None:
    path, size = store.path, len(store)
    store.close()
    with serving(path, free_port(), allow_updates=True, password="open sesame") as (url, _):
        update = "INSERT DATA { GRAPH <http://example.org/g> { <http://a> <http://p> 1 } }"
        headers = {"Content-Type": "application/sparql-update"}
        missing = requests.post(f"{url}/update", data=update, headers=headers)
        assert missing.status_code == 401 and "wrong" not in missing.text and "need HTTP basic auth" in missing.text
        for auth in (("filtag-kg", "wrong"), ("someone", "open sesame")):
            wrong = requests.post(f"{url}/update", data=update, headers=headers, auth=auth)
            assert wrong.status_code == 401 and wrong.text.startswith("wrong credentials"), auth
            assert wrong.headers["WWW-Authenticate"] == 'Basic realm="filtag-kg updates"'
        connection = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=10)
        connection.request("POST", "/update", body=update, headers={**headers, "Authorization": "Basic pässe"})
        wrong = connection.getresponse()  # not base64, not ASCII: no crash of the handler, no answer missing
        assert wrong.status == 401 and wrong.read().startswith(b"wrong credentials")
        connection.close()
        for where in ("/update", "/store", "/query"):  # answered without touching the store
            options = requests.options(f"{url}{where}", data=update, headers=headers)
            assert options.status_code == 204 and options.content == b"", where
            assert "OPTIONS" in options.headers["Allow"] and "POST" in options.headers["Allow"]
        assert len(RemoteStore.at(url)) == size
        for where, status in (("/update", 401), ("/store?default", 200)):  # headers only, as HTTP has it
            with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10) as raw:
                raw.sendall(f"HEAD {where} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                answer = b"".join(iter(lambda: raw.recv(65536), b""))
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(f"HTTP/1.1 {status}".encode()) and body == b"", (where, answer)


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state_and_parent = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except OSError:  # ended meanwhile
            continue
        if int(state_and_parent[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize(("sent", "allow_updates"), [(signal.SIGKILL, True), (signal.SIGTERM, False), (signal.SIGHUP, True),
                                                     (signal.SIGKILL, False)],
                         ids=["SIGKILL-updates", "SIGTERM-read-only", "SIGHUP-updates", "SIGKILL-read-only"])
def test_serve_leaves_no_server_behind(tmp_path: Path, sent: signal.Signals, allow_updates: bool) -> None:
    """`serve` serves the store itself, read-only or with updates: no other process holds the store
    or the port (an Oxigraph server behind an auth proxy took updates without auth on its own port;
    `oxigraph serve-read-only` had to be stopped with `serve`). Killed outright, or sent SIGTERM or
    SIGHUP (it alone, not its process group), it leaves the port and the store free."""
    path = tmp_path / "store"
    with Store(path) as db:
        db.load([ox.Quad(ox.NamedNode("http://a"), ox.NamedNode("http://p"), ox.Literal("1"), ox.NamedNode("http://g"))])
    port = free_port()
    command = [sys.executable, "-m", "filtag_kg", "serve", "--store", str(path), "--port", str(port)]
    with subprocess.Popen(command + ["--allow-updates"] * allow_updates, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as serve:
        try:
            started = serve.stdout.readline()
            if "SPARQL endpoint" not in started:
                serve.kill()
                pytest.fail(f"serve did not start: {started}{serve.stderr.read()}")
            assert _children(serve.pid) == []
            serve.send_signal(sent)
            serve.wait(timeout=10)
        finally:
            if serve.poll() is None:
                serve.kill()
        said = serve.stdout.read()
    if sent != signal.SIGKILL:  # stopped as by Ctrl-C
        assert serve.returncode == 0 and said.splitlines()[-1:] == [f"stopped ({sent.name})"], said
    with serving(path, port, allow_updates=allow_updates):  # the port and the store are free again
        pass


RO_SERVE = """
import json, sys
from pathlib import Path
import requests
from filtag_kg.errors import UserError
from filtag_kg.kg.fair import free_port, serving
root, out = Path(sys.argv[1]), {}
with serving(root / "clean", free_port()) as (url, _):
    out["rows"] = requests.get(url + "/query", params={"query": "SELECT ?o { ?s ?p ?o }"}, headers={"Accept": "text/csv"}).text
for name, updates in (("unfinished", False), ("clean", True)):
    try:
        with serving(root / name, free_port(), allow_updates=updates):
            out[name, updates] = "served"
    except UserError as e:
        out[name, updates] = str(e)
print(json.dumps({str(k): v for k, v in out.items()}))
"""


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1) for a read-only bind mount")
def test_serve_a_store_on_a_read_only_file_system(tmp_path: Path) -> None:
    """Served read-only, a store is opened for writing only to finish an interrupted load or drop,
    so a store on a read-only file system (or not the user's) serves; one with something to finish
    is refused with what to do. Root writes through chmod, so the store is bind-mounted read-only
    in a mount namespace of its own."""
    quad = ox.Quad(ox.NamedNode("http://a"), ox.NamedNode("http://p"), ox.Literal("kept"), ox.NamedNode("http://g"))
    dropped = ox.NamedNode("http://dropped")
    root = tmp_path / "ro"
    with Store(root / "clean") as db:
        db.load([quad])
    shutil.copytree(root / "clean", root / "unfinished")
    (root / "unfinished" / JOURNAL).write_text(json.dumps({"drop": dropped.value}))
    with Store(tmp_path / "writable") as db:  # a drop interrupted: served read-only, it is finished first
        db.load([quad, ox.Quad(quad.subject, quad.predicate, ox.Literal("gone"), dropped)])
    (tmp_path / "writable" / JOURNAL).write_text(json.dumps({"drop": dropped.value}))
    with serving(tmp_path / "writable", free_port()) as (url, _):
        assert RemoteStore.at(url).graphs() == [quad.graph_name]
    assert not (tmp_path / "writable" / JOURNAL).exists()

    mounted = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" || exit 77; exec "$2" -c "$3" "$1"',
         "sh", str(root), sys.executable, RO_SERVE], capture_output=True, text=True, timeout=120)
    if mounted.returncode == 77 or mounted.stderr.startswith("unshare:"):
        pytest.skip(f"no read-only bind mount here: {mounted.stderr.strip()}")
    assert mounted.returncode == 0, mounted.stderr
    out = json.loads(mounted.stdout)
    assert out["rows"].split() == ["o", "kept"]
    unfinished = root / "unfinished"
    assert out[str(("unfinished", False))] == (
        f"the store at {unfinished} has an interrupted load or drop to finish before it can be served, and cannot "
        f"be written to here (read-only file system or folder): open it for writing once where it can be, e.g. "
        f"`filtag-kg upgrade --store {unfinished}` as its owner, then serve it")
    assert out[str(("clean", True))].startswith(f"--allow-updates: cannot write to the store at {root / 'clean'}")


# -- CLI -----------------------------------------------------------------------------------------

def test_import_filtag_loads_the_real_file(filtag_vgg16_file: Path, tmp_path: Path, cli_ok, run_cli) -> None:
    output = cli_ok("import-filtag", str(filtag_vgg16_file), "--model", "VGG16", "--layer", "block5_conv3",
                    "--store", str(tmp_path / "store"), "--resolve", "424:crane=n02012849", "-o", str(tmp_path / "tags"))
    assert "'crane' is ambiguous" in output and "filter 372" in output  # the unresolved one is reported
    run = output.strip().splitlines()[-1].removeprefix("run: ")
    db = Store(tmp_path / "store")
    tags = TagSet.load(tmp_path / "tags")
    assert int(next(iter(db.query(TAG_COUNT)))["n"].value) == len(tags) == 999  # 998 + the resolved crane
    (row,) = db.query(sparql_prefixes() + f"""SELECT ?wnid WHERE {{ ?t prov:wasGeneratedBy <{run}> ;
        ft:filter/ft:filterIndex 424 ; ft:class/ft:wnid ?wnid }}""")
    assert row["wnid"].value == "n02012849"
    size = len(db)
    db.close()
    again = cli_ok("import-filtag", str(filtag_vgg16_file), "--store", str(tmp_path / "store"),
                   "--resolve", "424:crane=n02012849")
    assert again.strip().splitlines()[-1] == f"run: {run}" and len(Store(tmp_path / "store")) == size
    # a tag set at --out is kept unless --overwrite, as `tag` keeps one (it was written over unsaid)
    code, _, err = run_cli("import-filtag", filtag_vgg16_file, "--store", tmp_path / "store", "-o", tmp_path / "tags")
    assert code == 2 and f"--out {tmp_path / 'tags'} already holds a tag set" in err
    assert TagSet.load(tmp_path / "tags").selections == tags.selections and len(TagSet.load(tmp_path / "tags")) == 999
    replaced = cli_ok("import-filtag", str(filtag_vgg16_file), "--store", str(tmp_path / "store"), "-o",
                      str(tmp_path / "tags"), "--overwrite")
    assert "(the tag set that was there is replaced)" in replaced and len(TagSet.load(tmp_path / "tags")) == 998


def test_import_filtag_errors(tmp_path: Path, run_cli) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("filter tags k=1\n0:[' zebra ']\n1 [' tabby ']\n")
    code, _, err = run_cli("import-filtag", bad, "--store", tmp_path / "s")
    assert code == 2 and "line 3" in err
    code, _, err = run_cli("import-filtag", bad, "--resolve", "crane", "--store", tmp_path / "s")
    assert code == 2 and "FILTER:LABEL=WNID" in err
    zero = tmp_path / "zero.txt"
    zero.write_text("filter tags k=0\n0:[' zebra ']\n")
    code, _, err = run_cli("import-filtag", zero, "--store", tmp_path / "s")
    assert code == 2 and f"{zero}, line 1: k=0" in err
    assert not (tmp_path / "s").exists()  # refused before a store is made


def test_export_load_and_push_commands(oxigraph: str, run_a: TagSet, tmp_path: Path, cli_ok) -> None:  # noqa: F811
    run_a.save(tmp_path / "tags")
    cli_ok("export", str(tmp_path / "tags"), "-o", str(tmp_path / "run.ttl"), "--validate")
    assert {q.triple for q in ox.parse(path=str(tmp_path / "run.ttl"))} == {q.triple for q in export_tags(run_a)}
    trig = cli_ok("export", str(tmp_path / "tags"), "--format", "trig")
    assert set(ox.parse(trig.encode(), format=ox.RdfFormat.TRIG)) == set(export_tags(run_a))
    cli_ok("load", str(tmp_path / "run.ttl"), "--graph", "https://example.org/g", "--store", str(tmp_path / "s1"),
           "--no-optimize")
    assert Store(tmp_path / "s1").graphs() == [ox.NamedNode("https://example.org/g")]
    cli_ok("load", str(tmp_path / "tags"), "--store", str(tmp_path / "s3"), "--similar-classes", "2")
    with Store(tmp_path / "s3", read_only=True) as db:  # the option reaches the export
        ranks = db.query("SELECT (MAX(?r) AS ?top) WHERE { ?s <https://w3id.org/filtag-kg/ontology#similarityRank> ?r }")
        assert int(next(iter(ranks))["top"].value) == 2
    assert "statements pushed to" in cli_ok("push", "--endpoint", oxigraph, "--store", str(tmp_path / "s3"))
    again = cli_ok("push", "--endpoint", oxigraph, "--store", str(tmp_path / "s3"))  # said 'pushed' too
    assert again.endswith(f"statements: the server at {oxigraph} holds them already; nothing sent\n"), again
    remote = RemoteStore.at(oxigraph)
    assert remote.graphs() == Store(tmp_path / "s3", read_only=True).graphs()
    assert int(next(iter(remote.query(TAG_COUNT)))["n"].value) == len(run_a)
    cli_ok("push", str(tmp_path / "run.ttl"), "--endpoint", oxigraph)  # a Turtle export, into its own graphs
    assert remote.graphs() == Store(tmp_path / "s3", read_only=True).graphs()
    assert int(next(iter(remote.query(TAG_COUNT)))["n"].value) == len(run_a)
    cli_ok("push", str(tmp_path / "run.ttl"), "--endpoint", oxigraph, "--graph", "https://example.org/g")
    assert remote.count("https://example.org/g") == Store(tmp_path / "s1").count(ox.NamedNode("https://example.org/g"))


def test_issued_is_an_xsd_date(store: Store, run_a: TagSet, tmp_path: Path) -> None:
    """--issued takes YYYY-MM-DD only: Python's fromisoformat also took 20261202 and 2026-W49-3, which
    were written as they were, an ill-typed xsd:date in dataset.ttl and a datePublished search engines misread."""
    for issued in ("20261202", "2026-W49-3", "2026-12-2", "２０２６-12-02"):
        with pytest.raises(UserError, match=f"--issued '{issued}': expected a date YYYY-MM-DD"):
            publish(store, run_iri(run_a), tmp_path / "pub", license="https://x.org/l", creator="x", issued=issued)
    assert not (tmp_path / "pub").exists()
    publish(store, run_iri(run_a), tmp_path / "pub", license="https://x.org/l", creator="x", issued="2026-12-02")
    issued = next(rdflib.Graph().parse(tmp_path / "pub" / "dataset.ttl").objects(None, rdflib.DCTERMS.issued))
    assert issued.datatype == rdflib.XSD.date and issued.toPython() == dt.date(2026, 12, 2)
    assert json.loads((tmp_path / "pub" / "dataset.jsonld").read_text())["datePublished"] == "2026-12-02"


def test_titles_list_the_selections_by_method_then_number(tmp_path: Path) -> None:
    """k = 10 after k = 2 and q = 25 after q = 5, not as text sorts them (k-best 10, k-best 2)."""
    tags = filtag_kg.tag(synthetic_stats(seed=0), k=[10, 2], q=[25, 5, 10, 2.5], layers="conv2")
    with Store(tmp_path / "store") as db:
        db.load(export_tags(tags))
        publish(db, run_iri(tags), tmp_path / "pub", license="https://x.org/l", creator="x")
    listed = "k-best 2, k-best 10, q-quantile 2.5, q-quantile 5, q-quantile 10, q-quantile 25"
    schema = json.loads((tmp_path / "pub" / "dataset.jsonld").read_text())
    assert schema["name"] == f"FilTag tags of tiny-cnn ({listed})"
    assert schema["measurementTechnique"] == f"FilTag: {listed}"
    description = rdflib.Graph().parse(tmp_path / "pub" / "dataset.ttl")
    titles = {str(t) for t in description.objects(None, rdflib.DCTERMS.title)}
    assert f"FilTag tags of tiny-cnn ({listed})" in titles and f"FilTag tags of tiny-cnn ({listed}) (TriG)" in titles
