"""WordNet 3.0 from Debian's files through NLTK, class linking, and the SKOS graph of the closure."""

from __future__ import annotations

from pathlib import Path

import pyoxigraph
import pytest

from filtag_kg.config import cache_dir
from filtag_kg.data import ANIMAL_SHAPE_CLASSES
from filtag_kg.errors import UserError
from filtag_kg.imagenet import imagenet_index
from filtag_kg.kg.wordnet import (
    DEBIAN_WORDNET, LEXNAMES, WN30, WordNet, closure, lexnames_text, link_classes, offset_of_iri, read_mapping,
    synset_iri, wordnet_quads,
)

ANIMALS = ANIMAL_SHAPE_CLASSES
GRAPH = pyoxigraph.NamedNode("https://example.org/graph/wordnet")


def test_loads_debian_copy_with_lexnames(wn: WordNet) -> None:
    assert wn.source == f"Debian {DEBIAN_WORDNET}"  # the test cache is fresh and NLTK has no data here
    copy = cache_dir() / "nltk_data" / "corpora" / "wordnet"
    assert (copy / "data.noun").is_file() and not (copy / "data.noun").is_symlink()
    assert len((copy / "lexnames").read_text().splitlines()) == len(LEXNAMES) == 45
    # lexnames numbering must agree with the lexicographer file numbers in data.noun
    assert wn.synset("dog.n.01").lexname() == "noun.animal"
    assert wn.synset_of_wnid("n03126707").lexname() == "noun.artifact"  # crane, the machine
    assert wn.synset("entity.n.01").lexname() == "noun.Tops"


def test_user_directory_of_symlinks_is_copied(tmp_path: Path) -> None:
    for f in DEBIAN_WORDNET.iterdir():
        if f.is_file():
            (tmp_path / f.name).symlink_to(f)
    wn = WordNet.load(tmp_path)
    assert wn.source == f"directory {tmp_path}"
    assert wn.synset_of_wnid("n02391049").name() == "zebra.n.01"


def test_missing_or_wrong_directory_says_how_to_get_wordnet(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="apt-get install wordnet-base"):
        WordNet.load(tmp_path / "nowhere")
    with pytest.raises(UserError, match="not a WordNet dict directory"):
        WordNet.load(tmp_path)
    (tmp_path / "tags.ttl").write_text("")
    with pytest.raises(UserError, match="WordNet directory .*tags.ttl is not a directory"):
        WordNet.load(tmp_path / "tags.ttl")


def test_a_directory_missing_files_nltk_reads_is_named(tmp_path: Path) -> None:
    """A directory with data.noun and index.noun but not the other files was copied over the cache's
    WordNet, and the error named the copy's missing file (…/nltk_data/corpora/wordnet/data.adj), not
    the directory given."""
    for name in ("data.noun", "index.noun", "noun.exc"):
        (tmp_path / name).symlink_to(DEBIAN_WORDNET / name)
    with pytest.raises(UserError, match=f"{tmp_path}: not a WordNet dict directory .no data.verb, data.adj, "
                                        "data.adv, index.verb, index.adj, index.adv, verb.exc, adj.exc, adv.exc."):
        WordNet.load(tmp_path)


def test_synset_iris_keep_the_offset(wn: WordNet) -> None:
    dog = wn.synset_of_wnid("n02084071")
    assert synset_iri(dog).value == WN30 + "02084071-n"
    assert offset_of_iri(synset_iri(dog).value) == (2084071, "n")
    assert wn.synset("02084071-n") == wn.synset("dog.n.01") == dog
    with pytest.raises(UserError, match="not a WordNet 3.0 synset IRI"):
        offset_of_iri("http://wordnet-rdf.princeton.edu/wn31/02084071-n")
    for bad in ("n0208407", "n99999999", "n02084072", "dog.n.99", "00000001-v"):
        with pytest.raises(UserError):
            wn.synset(bad)


def test_every_imagenet_wnid_is_its_synset(wn: WordNet) -> None:
    index = imagenet_index()
    report = link_classes(index.keras_labels, index.wnids, wn, "imagenet1k")
    assert len(report.linked) == 1000 and not report.unmatched and not report.ambiguous
    for link, wnid, names in zip(report.links, index.wnids, index.names):
        assert (link.method, link.key, link.synset.offset(), link.synset.pos()) == ("wnid", wnid, int(wnid[1:]), "n")
        assert names[0].replace(" ", "_") in link.synset.lemma_names()
    assert len(closure(wn, (link.synset for link in report.links))) == 1860  # 1000 classes + 860 hypernyms


def test_animal_shape_first_noun_sense(wn: WordNet) -> None:
    report = link_classes(ANIMALS, None, wn, "animal-shape")
    chosen = {link.label: link.synset.name() for link in report.links}
    assert chosen == {a: f"{a}.n.01" for a in ANIMALS}
    assert all(link.method == "lemma" and link.key == link.label for link in report.links)
    # giraffe and zebra have one noun sense; the other eight are reported with the choice made
    assert len(report.ambiguous) == 8 and not any("giraffe" in m or "zebra" in m for m in report.ambiguous)
    assert any(f"'cow' (class {ANIMALS.index('cow')}): chose cow.n.01 (female of domestic cattle" in m
               for m in report.ambiguous)


def test_unmatched_labels_are_reported(wn: WordNet) -> None:
    report = link_classes(["zebra", "blorfish"], None, wn, "s")
    assert [link.synset is None for link in report.links] == [False, True]
    assert report.unmatched == ["'blorfish' (class 1): no WordNet noun; add it to a mapping file"]
    assert "1 of 2 classes" in report.summary()
    quads = list(wordnet_quads(report, wn, GRAPH))
    assert not any("blorfish" in q.subject.value for q in quads)


def test_mapping_file_overrides(wn: WordNet, tmp_path: Path) -> None:
    path = tmp_path / "map.tsv"
    path.write_text("# label\tsynset\ncow\tcow.n.02\nbear\tn02131653\n\n")
    mapping = read_mapping(path)
    assert mapping == {"cow": "cow.n.02", "bear": "n02131653"}
    report = link_classes(ANIMALS, None, wn, "animal-shape", mapping)
    links = {link.label: link for link in report.links}
    assert links["cow"].synset.name() == "cow.n.02" and links["cow"].method == "mapping"
    assert links["bear"].synset.name() == "bear.n.01" and len(report.ambiguous) == 6
    path.write_text("cow\tcow.n.02\textra\n")
    with pytest.raises(UserError, match="line 1"):
        read_mapping(path)
    path.write_bytes("cow\tcow.n.02 # K\u00fch\n".encode("latin-1"))
    with pytest.raises(UserError, match=f"mapping file {path} is not UTF-8 text"):
        read_mapping(path)
    with pytest.raises(UserError, match="names no class label or key of 'animal-shape': unicorn"):
        link_classes(ANIMALS, None, wn, "animal-shape", {"unicorn": "horse.n.01"})
    path.write_text("\ufeffbear\tbear.n.01\n")  # a byte-order mark, as some editors write
    assert read_mapping(path) == {"bear": "bear.n.01"}
    path.write_text("bear\tbear.n.01\ncow\tcow.n.02\nbear\tcow.n.01\n")
    with pytest.raises(UserError, match="line 3: 'bear' is mapped to bear.n.01 already, here to cow.n.01"):
        read_mapping(path)
    for verb_or_adjective in ("run.v.01", "red.s.01"):
        with pytest.raises(UserError, match=f"'{verb_or_adjective}' is not a noun synset"):
            link_classes(ANIMALS, None, wn, "animal-shape", {"bear": verb_or_adjective})


def test_classes_sharing_a_label_are_named_and_mapped_one_by_one(wn: WordNet, tmp_path: Path) -> None:
    """Two classes labelled `crane` gave two identical "ambiguous" lines, and a mapping line could
    only map both: the report names each by index and key, and a line may name a class by its key."""
    classes = ["crane", "crane", "bear"]
    report = link_classes(classes, None, wn, "s")
    assert [m.split(": chose")[0] for m in report.ambiguous] == [
        "'crane' (class 0, key crane~0)", "'crane' (class 1, key crane~1)", "'bear' (class 2)"]
    path = tmp_path / "map.tsv"
    path.write_text("crane\tn02012849\ncrane~1\tn03126707\n")  # the label maps the other crane
    mapping = read_mapping(path, wn, classes, ["crane~0", "crane~1", "bear"])
    chosen = [link.synset.offset() for link in link_classes(classes, None, wn, "s", mapping).links[:2]]
    assert chosen == [2012849, 3126707]
    # ImageNet's cranes by their wnids, which are their keys: one mapped, the other linked by its wnid
    index = imagenet_index()
    path.write_text("n02012849\tcrane.n.04\n")
    mapping = read_mapping(path, wn, index.keras_labels, index.wnids)
    links = link_classes(index.keras_labels, index.wnids, wn, "imagenet1k", mapping).links
    cranes = [(link.method, link.synset.name()) for link in links if link.label == "crane"]
    assert cranes == [("mapping", "crane.n.04"), ("wnid", wn.synset_of_wnid("n03126707").name())]


def test_a_label_in_another_unicode_normalization_form_is_mapped(wn: WordNet, tmp_path: Path) -> None:
    """'Zoë' written decomposed (NFD, as macOS writes names) in the file or in the labels was refused:
    "'Zoë' is not a class label or key of this run", naming a label that looks the same."""
    composed, decomposed = "Zo\u00eb", "Zoe\u0308"
    path = tmp_path / "map.tsv"
    for in_file, label in ((decomposed, composed), (composed, decomposed)):
        path.write_text(f"{in_file}\tperson.n.01\n", encoding="utf-8")
        assert read_mapping(path, wn, [label, "bear"]) == {label: "person.n.01"}
        links = link_classes([label, "bear"], None, wn, "s", read_mapping(path, wn, [label, "bear"])).links
        assert (links[0].method, links[0].synset.name()) == ("mapping", "person.n.01")
    with pytest.raises(UserError, match="is not a class label or key of this run"):  # which of the two?
        read_mapping(path, wn, [decomposed + " ", composed + "  ", "bear"])


def test_a_directory_given_as_mapping_file_is_named_so(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=f"mapping file {tmp_path} is a directory"):
        read_mapping(tmp_path)


def test_a_label_with_a_hash_sign_can_be_mapped(tmp_path: Path) -> None:
    """'#' starts a comment at a line's start or after the label, not inside it: 'C#' was cut to 'C'
    and its line refused ("expected 'label<TAB>synset', got ['C']")."""
    path = tmp_path / "map.tsv"
    path.write_text("# label\tsynset\nC#\tlanguage.n.01\ncow\tcow.n.02  # the female\n #1 pick\tx.n.01\n"
                    "bear\tn02131653\t# the animal\n")
    assert read_mapping(path) == {"C#": "language.n.01", "cow": "cow.n.02", "bear": "n02131653"}
    path.write_text('"comma, #2",comma.n.01 # a note, with a comma\nC#,language.n.01\n')
    assert read_mapping(path) == {"comma, #2": "comma.n.01", "C#": "language.n.01"}
    path.write_text("C#\t# no synset\n")
    with pytest.raises(UserError, match="line 1: expected 'label<TAB>synset', got \\['C#', ''\\]"):
        read_mapping(path)


def test_a_label_with_spaces_around_it_can_be_mapped(tmp_path: Path) -> None:
    """A class label with spaces around it ('  spaced  ', a folder name) was reported as unmatched
    with "add it to a mapping file", but the file's labels were stripped, so its line was refused as
    no class of the run. A label is taken as written where it is a class, else stripped."""
    path = tmp_path / "map.tsv"
    path.write_text("  spaced  \tspace.n.01\ncow \tcow.n.02\n")
    assert read_mapping(path, classes=["  spaced  ", "cow"]) == {"  spaced  ": "space.n.01", "cow": "cow.n.02"}
    assert read_mapping(path) == {"spaced": "space.n.01", "cow": "cow.n.02"}


def test_labels_with_accents_link_to_their_ascii_lemmas(wn: WordNet) -> None:
    """WordNet 3.0's lemmas are ASCII: 'café au lait' and 'crème brûlée' were reported as no WordNet
    noun, though WordNet has cafe_au_lait and creme_brulee."""
    report = link_classes(["café au lait", "crème brûlée", "piñata", "Ünïcödé"], None, wn, "food")
    assert [(link.method, link.synset and link.synset.name()) for link in report.links] == [
        ("lemma", "cafe_au_lait.n.01"), ("lemma", "creme_brulee.n.01"), ("lemma", "pinata.n.01"), ("none", None)]


def test_skos_graph_walks_the_hierarchy(wn: WordNet) -> None:
    report = link_classes(ANIMALS, None, wn, "animal-shape")
    store = pyoxigraph.Store()
    store.extend(wordnet_quads(report, wn, GRAPH))
    prefix = "PREFIX skos: <http://www.w3.org/2004/02/skos/core#> PREFIX ft: <https://w3id.org/filtag-kg/ontology#> "

    def under(offset: str) -> list[str]:
        rows = store.query(prefix + f"SELECT ?c WHERE {{ ?c skos:closeMatch/skos:broader* <{WN30}{offset}> }}",
                           use_default_graph_as_union=True)
        return sorted(r["c"].value.rsplit("/", 1)[1] for r in rows)

    assert under("02075296-n") == ["bear", "cat", "dog"]  # carnivore
    assert under("02399000-n") == ["cow", "giraffe", "sheep"]  # ruminant
    assert under("02374149-n") == ["horse", "zebra"]  # equine
    assert under("02370806-n") == ["cow", "giraffe", "horse", "sheep", "zebra"]  # ungulate
    # the closure is closed: every broader concept is described, each with one label, gloss and depth
    dangling = store.query(prefix + "ASK { ?s skos:broader ?b FILTER NOT EXISTS { ?b a skos:Concept } }",
                           use_default_graph_as_union=True)
    assert not bool(dangling)
    rows = list(store.query(prefix + """SELECT ?s (COUNT(DISTINCT ?l) AS ?n) (COUNT(DISTINCT ?d) AS ?m) (SAMPLE(?depth) AS ?dp)
        WHERE { ?s a skos:Concept ; skos:prefLabel ?l ; skos:definition ?d ; ft:synsetDepth ?depth } GROUP BY ?s""",
                            use_default_graph_as_union=True))
    assert len(rows) == len(closure(wn, (link.synset for link in report.links))) == 35
    assert all(int(r["n"].value) == 1 and int(r["m"].value) == 1 for r in rows)
    depth = {r["s"].value: int(r["dp"].value) for r in rows}
    assert depth[WN30 + "00001740-n"] == 0 and depth[WN30 + "02391049-n"] == wn.synset("zebra.n.01").max_depth() == 14


def test_nltk_data_comes_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """WordNet 3.0 in NLTK's data path (as nltk.download puts it) is used before Debian's files."""
    import shutil

    import nltk

    from filtag_kg.kg import wordnet as module

    corpus = tmp_path / "corpora" / "wordnet"
    corpus.mkdir(parents=True)
    for f in DEBIAN_WORDNET.iterdir():
        if f.is_file() and (f.name.startswith(("data.", "index.")) or f.name.endswith(".exc")):
            shutil.copyfile(f, corpus / f.name)
    (corpus / "lexnames").write_text(lexnames_text())
    monkeypatch.setattr(nltk.data, "path", [*nltk.data.path, str(tmp_path)])
    module._open.cache_clear()
    try:
        wn = WordNet.load()
        assert wn.source == "NLTK data" and str(tmp_path) in str(wn.reader.root)
        assert wn.synset_of_wnid("n02084071").name() == "dog.n.01"
    finally:
        module._open.cache_clear()


def test_other_wordnet_versions_are_refused(tmp_path: Path) -> None:
    from filtag_kg.kg.wordnet import install_copy

    for f in DEBIAN_WORDNET.iterdir():
        if f.is_file() and f.name != "data.adj":
            (tmp_path / f.name).symlink_to(f)
    text = (DEBIAN_WORDNET / "data.adj").read_bytes()
    assert b"WordNet 3.0 Copyright" in text[:2000]
    (tmp_path / "data.adj").write_bytes(text.replace(b"WordNet 3.0 Copyright", b"WordNet 3.1 Copyright", 1))
    try:
        with pytest.raises(UserError, match="version 3.1; ImageNet wnids need WordNet 3.0"):
            WordNet.load(tmp_path)
    finally:
        install_copy(DEBIAN_WORDNET)  # put the Debian copy back for the other tests


def test_a_synset_no_noun_of_wordnet_is_named_with_its_line(wn: WordNet, tmp_path: Path) -> None:
    """A mapping to a synset WordNet does not have was refused by linking with the synset alone
    ("wnid n99999999 is not a noun synset"): which file and line is said, as the file is read."""
    path = tmp_path / "map.tsv"
    for wrong, why in (("n99999999", "wnid n99999999 is not a noun synset of WordNet 3.0"),
                       ("1440764", "'1440764' is not a WordNet 3.0 synset"), ("run.v.01", "'run.v.01' is not a noun synset")):
        path.write_text(f"# label\tsynset\ncow\tcow.n.02\nbear\t{wrong}\n")
        with pytest.raises(UserError, match=f"^{path}, line 3: {why}"):
            read_mapping(path, wn)
        assert read_mapping(path) == {"cow": "cow.n.02", "bear": wrong}  # without WordNet: read only


def test_wu_palmer_similarity_is_nltks(wn: WordNet) -> None:
    """`WordNet.wup` (from the cached ancestors; NLTK's re-reads a file on every call) equals NLTK's
    wup_similarity on pairs of ImageNet's classes, and on pairs with instance hypernyms and with the
    root, both ways round."""
    import numpy as np

    wnids = imagenet_index().wnids
    rng = np.random.default_rng(0)
    synsets = [wn.synset_of_wnid(wnids[i]) for i in rng.choice(len(wnids), 60, replace=False)]
    synsets += [wn.reader.synset(name) for name in ("einstein.n.01", "paris.n.01", "entity.n.01", "dog.n.01",
                                                    "physical_entity.n.01", "thing.n.12")]
    pairs = [(a, b) for a in synsets for b in synsets]
    mine, nltk = [wn.wup(a, b) for a, b in pairs], [a.wup_similarity(b) for a, b in pairs]
    assert mine == pytest.approx(nltk, abs=1e-12) and len(set(nltk)) > 50


def test_labels_spelling_compounds_otherwise_are_found_and_reported(wn: WordNet) -> None:
    """A label writing a compound with '-' where WordNet writes '_' (or the other way round, or
    without a separator) was unmatched: 'sea-lion', 'Shih_Tzu', 'German short haired pointer',
    'hot-dog'; ligatures were not dropped as accents are ('Æon'). Another spelling is reported."""
    labels = ["sea-lion", "Shih_Tzu", "German short haired pointer", "hot-dog", "Æon", "sea lion", "xyzzy-plugh"]
    report = link_classes(labels, None, wn, "spellings")
    assert [link.synset and link.synset.name() for link in report.links] == [
        "sea_lion.n.01", "shih-tzu.n.01", "german_short-haired_pointer.n.01", "hotdog.n.01", "eon.n.03",
        "sea_lion.n.01", None]
    assert [m.split(";")[0] for m in report.respelled] == [
        "'sea-lion' (class 0): no WordNet noun as written", "'Shih_Tzu' (class 1): no WordNet noun as written",
        "'German short haired pointer' (class 2): no WordNet noun as written",
        "'hot-dog' (class 3): no WordNet noun as written"]
    assert "found as 'sea_lion', sea_lion.n.01 (" in report.respelled[0]
    assert "respelled: 'Shih_Tzu' (class 1)" in report.summary()
    assert report.unmatched == ["'xyzzy-plugh' (class 6): no WordNet noun; add it to a mapping file"]


def test_a_mapping_file_in_another_encoding_is_named_by_line(tmp_path: Path) -> None:
    """A Latin-1 byte in a mapping file was named by its offset in the whole file only."""
    path = tmp_path / "map.tsv"
    path.write_bytes(b"\xef\xbb\xbfcow\tcow.n.02\n" + "K\u00fch\tcow.n.02\n".encode("latin-1"))  # after a BOM
    with pytest.raises(UserError, match=f"mapping file {path} is not UTF-8 text \\(line 2, column 2 has the byte 0xfc"):
        read_mapping(path)
