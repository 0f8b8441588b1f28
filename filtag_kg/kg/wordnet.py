"""WordNet 3.0 linking: image classes → synsets, and the hypernym closure as a SKOS hierarchy.

Where WordNet comes from, in this order:
  0. a directory the user names (`directory=`, `--wordnet DIR` or FILTAG_KG_WORDNET), when given;
  1. NLTK's data directory (`nltk.data.find("corpora/wordnet")`) when it holds WordNet 3.0;
  2. Debian's `wordnet-base` + `wordnet-sense-index` files in /usr/share/wordnet.
NLTK's `WordNetCorpusReader` refuses symlinks and paths outside `nltk.data.path`, and Debian leaves
out the `lexnames` file, so (0) and (2) are copied once into `<cache>/nltk_data/corpora/wordnet`
with `lexnames` added (the fixed list of the 45 lexicographer files, see lexnames(5WN)).

ImageNet classes link through their wnid (its digits are the WordNet 3.0 noun offset), and so do
classes without wnids whose labels are all ImageNet-1k labels or wnids (`imagenet_label_wnids`). Other
labels link by lemma lookup: the *first* noun sense WordNet lists (WordNet orders senses by their frequency
in the SemCor corpus, so this is the most common meaning: bear.n.01 the animal, cow.n.01 "female of
domestic cattle", not the investor or the woman) that is no proper name (an instance: 'crane' lists
Stephen Crane, Hart Crane and the constellation Grus before the machine and the bird) and has the
label or its singular as a lemma; when no sense is such, the first ('Mars' the planet, 'Eiffel Tower';
not March, which 'mars' finds through WordNet's morphology). A label with several noun senses is
reported with the choice made; a mapping file overrides any label.

Synset IRIs follow the Princeton WordNet RDF scheme `http://wordnet-rdf.princeton.edu/wn30/{offset:08d}-{pos}`
(resolvable; the offset is the WordNet 3.0 offset, so an ImageNet wnid n02084071 is .../wn30/02084071-n).
"""

from __future__ import annotations

import csv
import itertools
import os
import re
import shutil
import tempfile
import unicodedata
import warnings
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from pyoxigraph import Literal, NamedNode, Quad

from ..config import cache_dir
from ..errors import UserError, where_not_utf8
from ..imagenet import imagenet_index
from .vocab import FT, RDF, SKOS, WN30, Minter, as_minter, class_keys

if TYPE_CHECKING:
    from nltk.corpus.reader.wordnet import Synset, WordNetCorpusReader

DEBIAN_WORDNET = Path("/usr/share/wordnet")
_IRI = re.compile(re.escape(WN30) + r"(\d{8})-([nvasr])$")
_NEEDED = re.compile(r"^(data|index)\.(noun|verb|adj|adv)$|^(noun|verb|adj|adv)\.exc$|^index\.sense$|^cntlist\.rev$")
# the files of those NLTK's reader opens when it starts (it makes `lexnames` itself, see `install_copy`)
_REQUIRED = tuple(f"{kind}.{pos}" for kind in ("data", "index") for pos in ("noun", "verb", "adj", "adv")) + tuple(
    f"{pos}.exc" for pos in ("noun", "verb", "adj", "adv"))

# lexnames(5WN): number, name, syntactic category (1 noun, 2 verb, 3 adjective, 4 adverb)
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
    "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
    "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
    "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
    "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
    "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()
_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}

# Generic top nouns: a coarse concept at or above one of these says nothing useful about a filter.
GENERIC_NOUNS = (
    "entity.n.01", "physical_entity.n.01", "abstraction.n.06", "object.n.01", "whole.n.02",
    "living_thing.n.01", "organism.n.01", "artifact.n.01", "matter.n.03", "causal_agent.n.01",
)

HOW_TO_GET = (
    "WordNet 3.0 was not found. Install it with one of: `apt-get install wordnet-base wordnet-sense-index` "
    "(Debian/Ubuntu), `python -m nltk.downloader wordnet` (NLTK data), or name a directory holding the "
    "WordNet 3.0 dict files (data.noun, index.noun, …) with --wordnet DIR or FILTAG_KG_WORDNET."
)


def synset_iri(synset: Synset) -> NamedNode:
    """The public IRI of a synset: .../wn30/{offset:08d}-{pos} (satellite adjectives as 's')."""
    return NamedNode(f"{WN30}{synset.offset():08d}-{synset.pos()}")


def offset_of_iri(iri: str) -> tuple[int, str]:
    """(offset, pos) back from a synset IRI; UserError for IRIs of another scheme."""
    match = _IRI.match(iri)
    if match is None:
        raise UserError(f"{iri!r} is not a WordNet 3.0 synset IRI ({WN30}OFFSET-POS)")
    return int(match.group(1)), match.group(2)


def lexnames_text() -> str:
    """The `lexnames` file NLTK needs and Debian leaves out: number, name, syntactic category."""
    return "".join(f"{i:02d}\t{name}\t{_CATEGORY[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES))


def install_copy(source: Path) -> Path:
    """Copy the WordNet dict files of `source` (as real files) to <cache>/nltk_data/corpora/wordnet,
    adding `lexnames` when missing; a no-op when the copy is current (same files, sizes, times)."""
    names = sorted(p.name for p in source.iterdir() if _NEEDED.match(p.name))
    missing = [n for n in _REQUIRED if n not in names]
    if missing:  # (NLTK's reader named the file missing in the copy, not here)
        raise UserError(f"{source}: not a WordNet dict directory (no {', '.join(missing)}). {HOW_TO_GET}")
    target = cache_dir() / "nltk_data" / "corpora" / "wordnet"
    stamp = "".join(f"{source / n}\t{(source / n).stat().st_size}\t{(source / n).stat().st_mtime_ns}\n" for n in names)
    if not _copy_of(target, stamp):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix="wordnet.partial-"))  # concurrent installs
        for n in names:
            shutil.copyfile(source / n, tmp / n)  # real files: NLTK refuses symlinks
        if not (source / "lexnames").is_file():
            (tmp / "lexnames").write_text(lexnames_text())
        else:
            shutil.copyfile(source / "lexnames", tmp / "lexnames")
        (tmp / ".source").write_text(stamp)
        if not _copy_of(target, stamp):  # another process may have installed it while this one copied
            shutil.rmtree(target, ignore_errors=True)
            try:
                os.replace(tmp, target)
            except OSError as e:  # another process's copy landed between the two lines above (ENOTEMPTY)
                if not _copy_of(target, stamp):
                    raise UserError(f"could not install the WordNet copy at {target}: {e}") from None
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _copy_of(target: Path, stamp: str) -> bool:
    """True when `target` holds the complete copy `stamp` describes: processes that installed WordNet
    at the same time (a first run of parallel jobs) failed with OSError 'Directory not empty'."""
    try:
        return (target / ".source").read_text() == stamp
    except OSError:
        return False


def _reader(root: object) -> WordNetCorpusReader:
    """NLTK's reader without the WordNet-3.0 → 3.0 sense-key map: only multilingual OMW uses it, and
    building it reads index.sense twice and takes seconds."""
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class Reader(WordNetCorpusReader):
        def map_wn(self, version: str = "wordnet") -> None:
            return None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available": we pass no OMW
        return Reader(root, None)


@lru_cache(maxsize=4)
def _open(directory: str | None) -> tuple[WordNetCorpusReader, str]:
    """The reader and a description of where WordNet came from, in the order of the module doc."""
    import nltk

    root = cache_dir() / "nltk_data"
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    if directory:
        path = Path(directory)
        if not path.is_dir():
            raise UserError(f"WordNet directory {path} {'is not a directory' if path.exists() else 'does not exist'}. "
                            f"{HOW_TO_GET}")
        install_copy(path)
        reader, source = _reader(nltk.data.find("corpora/wordnet")), f"directory {path}"
    else:
        reader, source = None, ""
        others = [p for p in nltk.data.path if p != str(root)]  # our own copy is re-checked below
        try:
            reader, source = _reader(nltk.data.find("corpora/wordnet", paths=others)), "NLTK data"
        except LookupError:
            pass
        if reader is not None and reader.get_version() != "3.0":
            reader = None
        if reader is None:
            if not (DEBIAN_WORDNET / "data.noun").is_file():
                raise UserError(HOW_TO_GET)
            install_copy(DEBIAN_WORDNET)
            reader, source = _reader(nltk.data.find("corpora/wordnet")), f"Debian {DEBIAN_WORDNET}"
    version = reader.get_version()
    if version != "3.0":
        raise UserError(f"WordNet from {source} is version {version}; ImageNet wnids need WordNet 3.0. {HOW_TO_GET}")
    return reader, source


# letters NFKD does not decompose into an ASCII letter and accents, as WordNet 3.0 spells them
_LIGATURES = str.maketrans({"æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ß": "ss", "ø": "o", "Ø": "O",
                            "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "þ": "th", "Þ": "Th"})


def _spellings(lemma: str, most: int = 6) -> Iterator[str]:
    """`lemma` as written, then with its word separators ('_' for a space, '-') exchanged, every way for
    up to `most` separators (German_short-haired_pointer from any mix), else all '_' and all '-', and
    last without separators (hotdog): WordNet writes a compound one way, labels another."""
    yield lemma
    separators = re.findall(r"[_-]", lemma)
    if not separators:
        return
    words = re.split(r"[_-]", lemma)
    if len(separators) <= most:
        choices: Iterable[tuple[str, ...]] = itertools.product("_-", repeat=len(separators))
    else:
        choices = (("_",) * len(separators), ("-",) * len(separators))
    for choice in choices:
        form = words[0] + "".join(sep + word for sep, word in zip(choice, words[1:]))
        if form != lemma:
            yield form
    yield "".join(words)


class WordNet:
    """WordNet 3.0 with the look-ups linking and coarsening need, cached (ancestors, depths)."""

    def __init__(self, reader: WordNetCorpusReader, source: str) -> None:
        self.reader = reader
        self.source = source
        self._ancestors: dict[Synset, dict[Synset, int]] = {}
        self._depth: dict[Synset, int] = {}
        self._min_depth: dict[Synset, int] = {}

    @classmethod
    def load(cls, directory: str | os.PathLike[str] | None = None) -> WordNet:
        """WordNet from `directory`, FILTAG_KG_WORDNET, NLTK data or Debian's files (see module doc)."""
        directory = directory or os.environ.get("FILTAG_KG_WORDNET") or None
        return cls(*_open(str(directory) if directory else None))

    def synset_of_wnid(self, wnid: str) -> Synset:
        """The noun synset of an ImageNet wnid ('n' + 8-digit WordNet 3.0 offset)."""
        if not re.fullmatch(r"n\d{8}", wnid):
            raise UserError(f"{wnid!r} is not a wnid (n + 8 digits)")
        synset = self._by_offset("n", int(wnid[1:]))
        if synset is None:
            raise UserError(f"wnid {wnid} is not a noun synset of WordNet 3.0")
        return synset

    def _by_offset(self, pos: str, offset: int) -> Synset | None:
        """The synset at `offset` of the `pos` data file, None when no synset starts there."""
        from nltk.corpus.reader.wordnet import WordNetError

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NLTK warns and returns None for an offset it does not find
            try:
                return self.reader.synset_from_pos_and_offset(pos, offset)
            except (WordNetError, ValueError):
                return None

    def synset(self, name: str) -> Synset:
        """A synset by name ('cow.n.01'), offset-pos ('02403454-n') or wnid ('n02403454'), three names of one."""
        from nltk.corpus.reader.wordnet import WordNetError

        name = name.strip()
        if re.fullmatch(r"n\d{8}", name):
            return self.synset_of_wnid(name)
        match = re.fullmatch(r"(\d{8})-([nvasr])", name)
        try:
            synset = self._by_offset(match.group(2), int(match.group(1))) if match else self.reader.synset(name)
        except (WordNetError, ValueError):
            synset = None
        if synset is None:
            raise UserError(f"{name!r} is not a WordNet 3.0 synset (give a name like cow.n.01, its offset-pos "
                            "02403454-n or its wnid n02403454)")
        if synset.pos() != "n":  # classes are things: coarsening walks the noun hierarchy
            raise UserError(f"{name!r} is not a noun synset ({synset.name()}: {synset.definition()}); "
                            "map classes to nouns, like cow.n.02")
        return synset

    @staticmethod
    def lookup_form(label: str) -> str:
        """A label as a WordNet lemma is written: spaces '_', accents and ligatures dropped."""
        decomposed = unicodedata.normalize("NFKD", re.sub(r"\s+", "_", label.strip()).translate(_LIGATURES))
        return "".join(c for c in decomposed if not unicodedata.combining(c))

    def lookup(self, label: str) -> tuple[str | None, list[Synset]]:
        """The noun synsets of a label in WordNet's sense order, with the spelling that found them
        (None when nothing was found): the label's lemma form (`lookup_form`: spaces '_', WordNet's
        morphology). Accents are dropped first: WordNet 3.0's lemmas are ASCII ('café au lait' is
        cafe_au_lait, and was unmatched), and so are ligatures ('Æon' is aeon). A label that is no lemma
        as written is looked up with its word separators spelled otherwise (see `_spellings`):
        'sea-lion', 'Shih_Tzu' and 'ice-cream' were unmatched, WordNet writing sea_lion, Shih-Tzu,
        ice_cream."""
        for form in _spellings(self.lookup_form(label)):
            senses = self.reader.synsets(form, "n")
            if senses:
                return form, senses
        return None, []

    def ancestors(self, synset: Synset) -> dict[Synset, int]:
        """Every hypernym (and instance hypernym) of `synset`, itself included, with its shortest distance."""
        found = self._ancestors.get(synset)
        if found is None:
            found = {synset: 0}
            queue = deque([synset])
            while queue:
                s = queue.popleft()
                for h in s.hypernyms() + s.instance_hypernyms():
                    if h not in found:
                        found[h] = found[s] + 1
                        queue.append(h)
            self._ancestors[synset] = found
        return found

    def depth(self, synset: Synset) -> int:
        """The longest hypernym path to the root (NLTK's max_depth): the specificity used throughout."""
        d = self._depth.get(synset)
        if d is None:
            d = self._depth[synset] = synset.max_depth()
        return d

    def wup(self, a: Synset, b: Synset) -> float | None:
        """Wu–Palmer similarity of two nouns as NLTK's `wup_similarity` computes it (None: no common
        hypernym), from the cached ancestors and depths: NLTK's re-reads its data file's header on
        every call, which took 860 of the 870 s of linking a synthetic VGG16 run of 121,000 tags."""
        above_a, above_b = self.ancestors(a), self.ancestors(b)
        common = above_a.keys() & above_b.keys()
        if not common:
            return None
        deepest = max(map(self._shortest_depth, common))
        lowest = sorted(s for s in common if self._shortest_depth(s) == deepest)
        subsumer = a if a in lowest else lowest[0]
        depth = self.depth(subsumer) + 1
        return 2 * depth / (self._distance(a, subsumer) + self._distance(b, subsumer) + 2 * depth)

    def _distance(self, a: Synset, b: Synset) -> int:
        """The shortest path between two synsets through a common hypernym (NLTK's shortest_path_distance:
        from `a` up to its hypernym `b` it may go higher, then down)."""
        above_a, above_b = self.ancestors(a), self.ancestors(b)
        return min(d + above_b[s] for s, d in above_a.items() if s in above_b)

    def _shortest_depth(self, synset: Synset) -> int:
        """The shortest hypernym path to a root (NLTK's min_depth)."""
        d = self._min_depth.get(synset)
        if d is None:
            d = self._min_depth[synset] = min(n for s, n in self.ancestors(synset).items()
                                               if not s.hypernyms() and not s.instance_hypernyms())
        return d

    @lru_cache(maxsize=1)  # noqa: B019 — one WordNet per process in practice
    def generic(self) -> frozenset[Synset]:
        """The generic top nouns (GENERIC_NOUNS) as synsets."""
        return frozenset(self.reader.synset(n) for n in GENERIC_NOUNS)

    def name(self, synset: Synset) -> str:
        """A readable name: the first lemma with spaces ('domestic animal')."""
        return synset.lemma_names()[0].replace("_", " ")


# -- linking --------------------------------------------------------------------------------------

@dataclass
class ClassLink:
    """One class of a label space and the synset it links to (None when nothing matched)."""

    class_index: int
    label: str
    key: str  # the class IRI key (vocab.class_keys): wnid where there is one, else the label
    synset: Synset | None
    method: str  # "wnid" | IMAGENET_LABEL | "lemma" | "mapping" | "none"


@dataclass
class LinkReport:
    """The links of all classes, and what was unmatched or ambiguous (never dropped silently)."""

    space: str
    links: list[ClassLink]
    unmatched: list[str] = field(default_factory=list)
    ambiguous: list[str] = field(default_factory=list)
    respelled: list[str] = field(default_factory=list)  # found as another spelling of the label's separators

    @property
    def linked(self) -> list[ClassLink]:
        return [link for link in self.links if link.synset is not None]

    def summary(self) -> str:
        lines = [f"{len(self.linked)} of {len(self.links)} classes of {self.space!r} linked to WordNet 3.0 synsets"]
        by_label = sum(link.method == IMAGENET_LABEL for link in self.links)
        if by_label:
            lines.append(f"  {by_label} through the ImageNet-1k class their label names (every label is one of "
                         "ImageNet's): its wnid, not the label's first WordNet sense")
        lines += [f"  respelled: {m}" for m in self.respelled]
        lines += [f"  ambiguous: {m}" for m in self.ambiguous]
        lines += [f"  unmatched: {m}" for m in self.unmatched]
        return "\n".join(lines)


def read_mapping(path: str | os.PathLike[str], wordnet: WordNet | None = None,
                 classes: Sequence[str] | None = None, keys: Sequence[str] = ()) -> dict[str, str]:
    """A user mapping file: one `class<TAB or comma>synset` per line (synset as cow.n.01, 02403454-n or
    a wnid; class as a label, which maps every class of that label, or a class's IRI key `keys`, its
    wnid or `crane~134`, which maps that class alone: ImageNet's two `crane` are one label). A line
    starting with '#' is a comment, and so is the rest of a line from a '#' after the label: a label
    may hold '#' ('C#'; cutting lines at any '#' left 'C' and refused the line).
    With `wordnet`, each synset is looked up as the line is read, so that one that is no noun synset
    is named with its file and line (linking named only the synset, not where it came from); with
    `classes`, so is a name that is no label of them and none of `keys`. A name is read without the
    spaces around it, unless it is one of the `classes` as written ('  cat ': stripped, it could not
    be mapped at all), and matches a name written in another Unicode normalization form (NFC, NFD).
    Returns class label or key → synset reference."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"mapping file {path} {'is a directory' if path.is_dir() else 'does not exist'}")
    names = None if classes is None else {*classes, *keys}
    # names by their NFC form: a file saved on macOS may write 'Zoë' decomposed (NFD), folder names
    # give labels in either form, and the two look alike ("'Zoë' is not a class label")
    composed: dict[str, list[str]] = {}
    for name in names or ():
        composed.setdefault(unicodedata.normalize("NFC", name.strip()), []).append(name)
    out: dict[str, str] = {}
    try:
        raw = path.read_text(encoding="utf-8-sig")  # a byte-order mark would stick to the first label
    except UnicodeDecodeError as e:
        raise UserError(f"mapping file {path} is not UTF-8 text ({where_not_utf8(path, e)}; text in another "
                        "encoding such as Latin-1? save it as UTF-8)") from None
    lines = [(number, line) for number, line in enumerate(raw.splitlines(), start=1)
             if not line.lstrip().startswith("#")]
    delimiter = "\t" if any("\t" in line for _, line in lines) else ","
    for number, line in lines:
        row = _without_comment(next(csv.reader([line], delimiter=delimiter), []))
        if not row or not "".join(row).strip():
            continue
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            raise UserError(f"{path}, line {number}: expected 'label<TAB>synset', got {row!r}")
        label = row[0] if names is not None and row[0] in names else row[0].strip()
        same = composed.get(unicodedata.normalize("NFC", label), []) if names is not None and label not in names else []
        if len(same) == 1:  # the name as the run writes it (two names of one NFC form stay refused: which?)
            label = same[0]
        synset = row[1].strip()
        if out.get(label, synset) != synset:
            raise UserError(f"{path}, line {number}: {label!r} is mapped to {out[label]} already, here to {synset}")
        if names is not None and label not in names:
            raise UserError(f"{path}, line {number}: {label!r} is not a class label or key of this run")
        if wordnet is not None:
            try:
                wordnet.synset(synset)
            except UserError as e:
                raise UserError(f"{path}, line {number}: {e}") from None
        out[label] = synset
    return out


def _without_comment(row: list[str]) -> list[str]:
    """A mapping row without its trailing comment: from the first '#' in a field after the label."""
    for j in range(1, len(row)):
        if "#" in row[j]:
            head = row[j].split("#", 1)[0]
            return row[:j] + ([head] if head.strip() or j == 1 else [])
    return row


def link_classes(
    classes: Sequence[str],
    wnids: Sequence[str | None] | None,
    wordnet: WordNet,
    space: str,
    mapping: Mapping[str, str] | None = None,
) -> LinkReport:
    """Link every class to a synset: mapping override (by its key, else its label), else its wnid,
    else the first noun sense of its label that is no proper name (see the module doc). Report lines
    name the class by index, and by key where that is not its label, so that classes sharing a label
    can be told apart and mapped one by one."""
    mapping = dict(mapping or {})
    keys = class_keys(classes, wnids)
    unknown = set(mapping) - set(classes) - set(keys)
    if unknown:
        raise UserError(f"mapping names no class label or key of {space!r}: {', '.join(sorted(unknown))}")
    report = LinkReport(space=space, links=[])
    of_label = imagenet_label_wnids(classes)
    for i, (label, key) in enumerate(zip(classes, keys)):
        wnid = wnids[i] if wnids else None
        reference = mapping.get(key, mapping.get(label))
        which = f"{label!r} (class {i}{'' if key == label else f', key {key}'})"
        if reference is not None:
            synset, method = wordnet.synset(reference), "mapping"
        elif wnid:
            synset, method = wordnet.synset_of_wnid(wnid), "wnid"
        elif label in of_label:
            synset, method = wordnet.synset_of_wnid(of_label[label]), IMAGENET_LABEL
        else:
            form, senses = wordnet.lookup(label)
            # a class is a kind of thing: 'crane' was linked to its first sense, Stephen Crane the writer.
            # The first sense that is no named instance and has the label (or its singular) as a lemma, not
            # only through WordNet's morphology ('mars' would be March), else the first (Eiffel Tower, Mars)
            words = {form.casefold(), (wordnet.reader.morphy(form, "n") or form).casefold()} if form else set()
            synset = next((s for s in senses if not (s.instance_hypernyms() and not s.hypernyms())
                           and words & {name.casefold() for name in s.lemma_names()}),
                          senses[0] if senses else None)
            method = "lemma" if senses else "none"
            if synset is not None and form != wordnet.lookup_form(label):  # a guess the user should see
                report.respelled.append(f"{which}: no WordNet noun as written; found as {form!r}, "
                                        f"{synset.name()} ({synset.definition()})")
            if not senses:
                report.unmatched.append(f"{which}: no WordNet noun; add it to a mapping file")
            elif len(senses) > 1:
                skipped = senses[:senses.index(synset)]
                rest = senses[len(skipped) + 1:]
                others = ", ".join(s.name() for s in rest[:3]) + (" …" if len(rest) > 3 else "")
                which_sense = "first" if not skipped else (
                    f"sense {len(skipped) + 1}, the first that is no proper name "
                    f"({', '.join(s.name() for s in skipped)} {'is' if len(skipped) == 1 else 'are'}),")
                report.ambiguous.append(
                    f"{which}: chose {synset.name()} ({synset.definition()}), {which_sense} of "
                    f"{len(senses)} noun senses" + (f"; others: {others}" if others else "")
                )
        report.links.append(ClassLink(i, label, key, synset, method))
    return report


IMAGENET_LABEL = "imagenet label"  # a ClassLink's method: the wnid of the ImageNet-1k class of its label


def imagenet_label_wnids(classes: Sequence[str]) -> dict[str, str]:
    """label → wnid of the ImageNet-1k class it names, for classes whose labels are all ImageNet-1k labels
    (Keras') or wnids, else {}. Such classes are ImageNet's (a folder of label-named class folders,
    crane and maillot by wnid; a subset of ImageNet) without the manifest's wnids, and their lemmas'
    first senses were other things: 'badger' a Wisconsinite, 'Loafer' an idler, 'Samoyed' a people,
    'beaver' a fur, and the wnid folders were left unlinked. A label two classes share (crane) has no
    one wnid: it is looked up as a lemma and reported."""
    index = imagenet_index()
    if not classes or not all(index.knows(c) for c in classes):
        return {}
    wnids = set(index.wnids)
    unique = {c: [index.wnids[i] for i in index.indices_of_label(c)] for c in classes}
    return {c: found[0] for c, found in unique.items() if len(found) == 1} | {c: c for c in classes if c in wnids}


def closure(wordnet: WordNet, synsets: Iterable[Synset]) -> list[Synset]:
    """The linked synsets and all their hypernyms, each once, in a stable order (by offset)."""
    seen: set[Synset] = set()
    for s in synsets:
        seen.update(wordnet.ancestors(s))
    return sorted(seen, key=lambda s: (s.pos(), s.offset()))


def wordnet_quads(report: LinkReport, wordnet: WordNet, graph: NamedNode, minter: Minter | str | None = None) -> Iterator[Quad]:
    """Class → synset links (skos:exactMatch by wnid, skos:closeMatch by lemma, ImageNet label or mapping),
    and each synset of the hypernym closure as a skos:Concept with labels, gloss, depth and skos:broader."""
    minter = as_minter(minter)
    exact, close = NamedNode(SKOS + "exactMatch"), NamedNode(SKOS + "closeMatch")
    for link in report.linked:
        predicate = exact if link.method == "wnid" else close
        yield Quad(minter.image_class(report.space, link.key), predicate, synset_iri(link.synset), graph)
    yield from synset_quads(wordnet, closure(wordnet, (link.synset for link in report.linked)), graph)


def synset_quads(wordnet: WordNet, synsets: Iterable[Synset], graph: NamedNode) -> Iterator[Quad]:
    """The SKOS description of synsets (their hypernyms must be in the set for skos:broader to resolve)."""
    a, concept = NamedNode(RDF + "type"), NamedNode(SKOS + "Concept")
    pref, alt, definition = NamedNode(SKOS + "prefLabel"), NamedNode(SKOS + "altLabel"), NamedNode(SKOS + "definition")
    notation, broader, depth = NamedNode(SKOS + "notation"), NamedNode(SKOS + "broader"), NamedNode(FT + "synsetDepth")
    for s in synsets:
        node = synset_iri(s)
        yield Quad(node, a, concept, graph)
        names = [n.replace("_", " ") for n in s.lemma_names()]
        yield Quad(node, pref, Literal(names[0], language="en"), graph)
        for n in names[1:]:
            yield Quad(node, alt, Literal(n, language="en"), graph)
        yield Quad(node, definition, Literal(s.definition(), language="en"), graph)
        yield Quad(node, notation, Literal(f"{s.offset():08d}-{s.pos()}"), graph)
        yield Quad(node, depth, Literal(wordnet.depth(s)), graph)
        for h in s.hypernyms() + s.instance_hypernyms():
            yield Quad(node, broader, synset_iri(h), graph)
