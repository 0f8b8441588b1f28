"""Stores for the knowledge graph: an embedded on-disk pyoxigraph store and a remote SPARQL 1.1 server,
with one interface: `load(quads, graph)`, `query(sparql)`, `graphs()`, `drop(graph)`, `len()`.

Loading replaces whole named graphs (reloading a run is idempotent) and is all-or-nothing:

* embedded: quads of graphs the store lacks stream into its bulk loader (fast, not transactional by
  itself); quads of graphs it has are spooled to files first. Graphs whose content would not change
  are left alone; of graphs that change, only the triples that differ are removed and added, from
  files written beside the store first; the load is committed by writing a commit marker (one
  transaction); a big load is followed by a compaction. A journal file beside the store names the
  new graphs (before their first quad arrives) and the files of removed and added triples of a
  load in progress: a failed load is rolled back at once, and opening the store after a crash
  rolls back an uncommitted load, so an interrupted load leaves the store as it was.
  Dropping a graph removes it quad by quad once the journal names it; an interrupted drop is
  finished before the next load or drop, or when the store is next opened.
  Graphs of millions of quads that outweigh the rest of the store are dropped or replaced by
  rebuilding instead: the rest and the new content are bulk-loaded into a new store directory,
  which, once complete, takes the old one's place (the swap commits; a crash before it leaves the
  old store and its journal, one after it is finished when the store is next opened).
* remote: a graph the server lacks is PUT (Graph Store HTTP Protocol) in one request; a graph it
  has is PUT into a staging graph first and replaced by one SPARQL update (one transaction on the
  server) once all uploads are complete; a commit whose answer is lost or interrupted is looked up
  by its receipt once its staging graphs are gone (it cannot take place later then), so that a
  push the server committed keeps its new graphs. Every upload is verified by counting; if
  anything fails, the new graphs are dropped again and the existing ones were never touched (a request that got
  no answer may still be carried out later: the push's marker then stays to name what it puts in
  place). Transient HTTP errors and answers cut off are retried with exponential backoff, but not
  an update or upload that got no answer in time (the server may still be carrying it out). A
  marker graph names a push's new graphs until it is done, so those of a push killed outright are known
  (`unfinished_pushes`); staging them too would have the server copy every new graph once more
  (measured: 928,000 triples, PUT 59 s, ADD 55 s). The marker, written only if no other push that
  is alive names one of its graphs (one update), also claims them: two pushes of a graph at once
  never interleave (they left one graph of each, both reported done); the second is refused.
"""

from __future__ import annotations

import ast
import datetime
import fcntl
import json
import math
import os
import re
import shutil
import socket
import struct
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import compress, islice
from pathlib import Path
from typing import Any, TextIO, TypeVar

import numpy as np
from pyoxigraph import (
    DefaultGraph, Literal, NamedNode, Quad, QueryBoolean, QueryResultsFormat, QuerySolutions, QueryTriples, RdfFormat,
    Store as OxStore, Triple, parse, parse_query_results,
)

from ..config import default_store_path, missing_folders, remove_empty
from ..errors import InterruptedAfterCommit, UserError
from ..interrupts import deferred_signals
from .explanations import OF_RUN
from .queries import Query, names_dataset, query_form, run as run_query
from .vocab import FT, PROV, RDF, XSD, iri

STAGING = "urn:filtag-kg:staging:"  # prefix of the temporary graphs of a load in progress
PUSHES = STAGING + "pushes"  # a push's marker graph (a staging graph) names the new graphs it puts in place,
REPLACES = STAGING + "replaces"  # ... the graphs whose content it replaces,
STAGES = STAGING + "stages"  # ... the staging graphs it uploads and its receipt,
ALIVE = STAGING + "alive"  # ... when it last made progress, in the server's time,
BY = STAGING + "by"  # ... the process pushing ("HOST PID"),
ENDED = STAGING + "ended"  # ... and, once it failed unsure of a request's outcome, that it claims its graphs no more
COMMITTED = STAGING + "committed"  # in a push's receipt graph: its commit took place
STALE_AFTER = datetime.timedelta(hours=1)  # a push that made no progress for this long is taken for dead
COMMITS = NamedNode("urn:filtag-kg:commits")  # graph of commit markers (only during a load)
JOURNAL = "filtag-kg-load.json"  # beside the store directory's data files
BACKUP = "filtag-kg-backup-"  # file name prefix of the triples a load removes and adds (for its rollback)
OPTIMIZE_MIN_QUADS = 1_000_000  # loads and drops from this size on are followed by a compaction
REBUILD_MIN_QUADS = 1_000_000  # graphs from this size on are dropped or replaced by rebuilding the store ...
REBUILD_MAX_KEPT = 4  # ... if the rest of the store has fewer than this many times their quads
REBUILD_SMALL_MIN_QUADS = 100_000  # smaller graphs from this size on, if the rest has fewer quads than they
REBUILDING = ".filtag-kg-rebuild"  # suffix of the store directory's sibling a drop or load rebuilds it in
RETIRED = ".filtag-kg-retired"  # suffix of the old store directory between the swap and its removal
REMOVED = ".filtag-kg-removed-"  # ... of a store a failed first load made, on its way out (then a random token)
REBUILT = "filtag-kg-rebuilt"  # file in a rebuilt store directory once it is complete
BULK_FILE = re.compile(r"bulk-\d+\.sst")  # pyoxigraph's bulk loader writes these, then moves them into RocksDB
OLD_LOG = re.compile(r"LOG\.old\.\d+")  # RocksDB's info log of an earlier opening for writing (never read back)
OLD_LOGS_KEPT = 3  # the newest are kept, to tell what happened at the last openings
# the files of a store directory: RocksDB's (under pyoxigraph) and filtag-kg's own; a rebuild replaces
# the directory, so it is done only where nothing else is
STORE_FILE = re.compile(r"CURRENT|IDENTITY|LOCK|LOG(\.old\.\d+)?|MANIFEST-\d+|OPTIONS-\d+(\.dbtmp)?|\d+\.(sst|log|blob)"
                        r"|filtag-kg-.*")
LEGACY_TAG_LINK = NamedNode(FT + "inSelection")  # a tag's link to its selection in stores filled before 2026-12-01
# how explanations, coarse concepts and ConceptNet graphs named their tagging run until 2026-12-03 (now
# prov:wasInfluencedBy, explanations.OF_RUN); told from other uses of it by its object, a run
LEGACY_RUN_LINK = NamedNode(PROV + "wasDerivedFrom")
MINTED_RUN = "/run/[0-9a-f]{16}$"  # the end of a tagging run's IRI (Minter.run)
# a run's WordNet graph (`link wordnet`) names each filter's tag classes on its `all` coarse concepts
# since 2026-12-03; a graph of coarse concepts without any is of before, and one holding ADDING_TAG_CLASSES
# had its upgrade interrupted (some have them)
COARSE_CONCEPT, TAG_CLASS, RDF_TYPE = NamedNode(FT + "CoarseConcept"), NamedNode(FT + "tagClass"), NamedNode(RDF + "type")
ADDING_TAG_CLASSES = NamedNode(STAGING + "adding-tag-classes")
LEGACY_FORMAT = ("tags linked to their selection (ft:inSelection, until 2026-12-01), runs named with "
                 "prov:wasDerivedFrom or coarse concepts without their filter's tag classes (ft:tagClass; "
                 "both until 2026-12-03), which the queries no longer read or need")

T = TypeVar("T")
Loadable = Iterable[Quad] | Iterable[Triple] | Any  # quads, triples, or an rdflib Graph/Dataset


class Store:
    """The embedded on-disk store (pyoxigraph/RocksDB), by default in the user's data directory.

    Queries see the union of all named graphs as their default graph, like the bundled queries expect.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, read_only: bool = False,
                 upgrade: bool = False, create: bool = True) -> None:
        """Open the store at `path`, creating it if `create` and not `read_only` (commands that only
        read or remove refuse a path with no store, so a mistyped one is named instead of created). A store
        filled before 2026-12-01, whose tags link to their selection (ft:inSelection), is refused
        (the queries would miss its tags) unless `upgrade`: then it opens for its `upgrade()` or
        for dropping graphs. Read-only, a store whose load or drop is under way or was interrupted
        is refused, as its graphs are half there, unless it is being rebuilt (which leaves the
        old store as it was until the swap)."""
        self.path = Path(path) if path is not None else default_store_path()
        self.read_only = read_only
        self.finished_drop: str | None = None  # the graph of an interrupted drop that opening finished
        self.finished_request: str | None = None  # ... and the `request` that drop was part of
        if (read_only or not create) and not (self.path / "CURRENT").is_file() and not _swap_pending(self.path):
            raise UserError(f"no store at {self.path} (a load, `filtag-kg evaluate` or `filtag-kg import-filtag` "
                            "makes one; `filtag-kg errors` needs the explanations `evaluate` loads)")
        if not read_only:
            _finish_swap(self.path)
        try:
            if read_only:
                writer = _writer(self.path)
                if writer is not None:  # RocksDB is not read beside a writer (pyoxigraph: "undefined behavior")
                    raise UserError(f"the store at {self.path} is open for writing by process {writer} (`filtag-kg serve "
                                    "--allow-updates`, a load or drop): ask that server (--endpoint), or wait for it")
                self.oxigraph = OxStore.read_only(str(self.path))
            else:
                self.oxigraph = self._open_for_writing()
        except OSError as e:
            locked = "lock" in str(e).lower()
            writer = _writer(self.path) if locked else None
            hint = (f" (process {writer} has it open for writing: `filtag-kg serve --allow-updates`, a load or drop; "
                    "ask that server with --endpoint, or wait for it)" if writer is not None else
                    " (this process has it open already: close that Store first)" if "current process" in str(e) else
                    " (another process, e.g. `filtag-kg serve`, has it open)" if locked else "")
            if _swap_pending(self.path):
                hint = (" (a drop or load was interrupted while its rebuilt copy took the store's place: open it for "
                        f"writing once to finish that, e.g. `filtag-kg upgrade --store {self.path}`)")
            raise UserError(f"cannot open the store at {self.path}{hint}: {e}") from None
        except RuntimeError as e:  # RocksDB's "Corruption: …" (a damaged file) was a traceback, exit 1
            damaged = str(e).startswith("Corruption")
            raise UserError(f"cannot open the store at {self.path}: {e}" + (
                "; its files are damaged (a disk error, or a file changed by hand): restore the folder from a "
                "backup, or load its runs into a new store" if damaged else "")) from None
        if not read_only:
            self._recover()
        elif _half_changed(self.path):
            del self.oxigraph
            raise UserError(f"the store at {self.path} is being changed by a load or drop, or one was interrupted: "
                            f"its graphs are half there; wait for it, or open the store for writing once to finish or "
                            f"undo it (e.g. `filtag-kg upgrade --store {self.path}`)")
        legacy = self.legacy_graphs()
        if legacy and (read_only or not upgrade):
            del self.oxigraph  # released at once (the error's traceback keeps this object)
            how = ("a read-only store cannot be upgraded" if upgrade else
                   f"upgrade it in place with `filtag-kg upgrade --store {self.path}`")
            raise UserError(f"the store at {self.path} was filled by a filtag-kg of before 2026-12-03, in a format "
                            f"of {LEGACY_FORMAT}; {how} ({len(legacy)} graph(s) to rewrite)")

    def _open_for_writing(self, attempts: int = 3) -> OxStore:
        """Open (or create) the store for writing. A folder that vanishes meanwhile (a failed first
        load in another process removing the store it made, and the folders made for it) is made
        again, up to `attempts` times."""
        attempt = 1
        while True:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
                foreign = _foreign_files(self.path)
                if foreign and not (self.path / "CURRENT").is_file():
                    raise UserError(f"{self.path} holds other files ({', '.join(foreign[:3])}"
                                    f"{' …' if len(foreign) > 3 else ''}) and no store; a store needs a folder of its "
                                    "own: give a new or empty one")
                return OxStore(str(self.path))
            except OSError:
                if attempt == attempts or self.path.is_dir():
                    raise
                attempt += 1

    # -- reading ---------------------------------------------------------------------------------
    def query(self, sparql: str, **kwargs: Any) -> QuerySolutions | QueryBoolean | QueryTriples:
        """Run a SPARQL query; the default graph is the union of the named graphs unless the query
        names its dataset (FROM, FROM NAMED: then those graphs, as SPARQL 1.1 says) or `default_graph`
        is given. Other keyword arguments go to `pyoxigraph.Store.query`."""
        if "default_graph" not in kwargs and not names_dataset(sparql):
            kwargs.setdefault("use_default_graph_as_union", True)
        try:
            return self.oxigraph.query(sparql, **kwargs)
        except SyntaxError as e:
            raise UserError(f"invalid SPARQL query: {e}") from None

    def update(self, sparql: str) -> None:
        """Run a SPARQL 1.1 update (one transaction)."""
        try:
            self.oxigraph.update(sparql)
        except SyntaxError as e:
            raise UserError(f"invalid SPARQL update: {e}") from None

    def graphs(self) -> list[NamedNode]:
        """The named graphs, sorted by IRI, but for the store's own (`_own`): a push into `serve
        --allow-updates` of this store keeps its marker and staging graphs in it while it runs, or
        for good if killed, until the store is next opened for writing."""
        return sorted((g for g in self.oxigraph.named_graphs() if isinstance(g, NamedNode) and not _own(g)),
                      key=lambda g: g.value)

    def quads(self, graph: NamedNode | None = None) -> Iterator[Quad]:
        """All quads, or those of one graph."""
        return self.oxigraph.quads_for_pattern(None, None, None, graph)

    def count(self, graph: NamedNode) -> int:
        """Number of triples in one graph."""
        result = self.oxigraph.query(f"SELECT (COUNT(*) AS ?n) WHERE {{ GRAPH {_node(graph)} {{ ?s ?p ?o }} }}")
        return int(next(iter(result))["n"].value)

    def __len__(self) -> int:
        return len(self.oxigraph)

    def holds_nothing(self) -> bool:
        """Whether the store is open and holds no quad and no named graph."""
        return "oxigraph" in vars(self) and next(self.quads(), None) is None and not self.graphs()

    # -- writing ---------------------------------------------------------------------------------
    def load(
        self, quads_or_graph: Loadable, graph: NamedNode | str | None = None, progress: bool = False,
        optimize: bool | None = None,
    ) -> int:
        """Replace the named graphs the quads belong to (or `graph`, for all of them) with the quads.

        Quads of graphs the store lacks stream straight into its bulk loader; graphs it has are
        spooled to files first, compared with what the store holds, and left alone when their
        content would not change (reloading a run costs a read); of a graph that changes, only the
        triples that differ are removed and added (another export option of the same run changes a
        small part of its millions of triples), or, when such graphs hold at least REBUILD_MIN_QUADS
        quads and the rest of the store fewer than REBUILD_MAX_KEPT times as many, the store is
        rebuilt with their new content (`_rebuild`; a full-size VGG16 run graph: 199 s at 1.9 GB
        peak RSS instead of 545 s at 3.4 GB, whether or not its content changes). `optimize`
        compacts the store afterwards: a bulk load leaves many small files, and compacting them
        makes look-ups several times faster (at VGG16 scale: 4-8x, for a fifth more load time).
        Compaction rewrites the whole store (20 s at 16 M triples, however small the load), so by
        default (None) it follows loads of at least OPTIMIZE_MIN_QUADS quads only.
        Returns the number of quads given. All-or-nothing, also across a crash.
        """
        target = _node(graph) if graph is not None else None
        self._finish_unfinished()
        journal: dict[str, Any] = {"token": uuid.uuid4().hex, "fresh": [], "replaced": {}}

        def fresh(g: str) -> None:  # the journal names a graph before its first quad reaches the store
            journal["fresh"].append(g)
            self._write_journal(journal)

        with tempfile.TemporaryDirectory(prefix="filtag-kg-load-") as tmp:
            spool = _Spool(target, Path(tmp))
            try:
                self.oxigraph.bulk_extend(spool.split(_as_quads(quads_or_graph), self.oxigraph, progress, fresh))
                for g in spool.fresh:  # (graphs it replaces are checked as they are spooled)
                    if self._legacy(NamedNode(g)):
                        raise _legacy_data(g)
                if not self._replace(spool, journal, progress):
                    return spool.count
            except _SwapPending:
                raise  # the rebuilt store holds the whole load and takes the old one's place when next opened
            except BaseException:
                if self._journal_path.exists():
                    self._rollback(journal)
                    self._journal_path.unlink()
                self._cleanup()
                raise
            self._journal_path.unlink(missing_ok=True)
            self._cleanup()
        if optimize or (optimize is None and spool.count >= OPTIMIZE_MIN_QUADS):
            self._compact("load")
        return spool.count

    def _replace(self, spool: _Spool, journal: dict[str, Any], progress: bool) -> bool:
        """Give the graphs the store has the content `spool` holds for them and commit the load;
        False if the load changes nothing at all. Big graphs that outweigh the rest of the store go
        by rebuilding it (`_rebuild`, whose swap commits the load), others by removing and adding
        the triples that differ, named by the journal first (`_diff`)."""
        files = spool.files()
        if self._rebuild({NamedNode(g): path for g, (path, _) in files.items()}, sum(n for _, n in files.values()),
                         progress, "load"):
            return True
        changed = spool.changed(self.oxigraph, str(self.path / f"{BACKUP}{journal['token']}-"), progress)
        if not journal["fresh"] and not changed:
            return False
        for g, change in changed.items():
            _fsync(str(change.remove))
            _fsync(str(change.add))
            journal["replaced"][g] = {"remove": str(change.remove), "add": str(change.add)}
        self._write_journal(journal)
        for g, change in changed.items():
            self._remove_quads(change.remove, NamedNode(g))
            self.oxigraph.bulk_load(path=str(change.add), format=RdfFormat.N_TRIPLES, to_graph=NamedNode(g),
                                    lenient=True)  # written by pyoxigraph: valid
        self.oxigraph.update(
            f"INSERT DATA {{ GRAPH {COMMITS} {{ <{STAGING}{journal['token']}> a <{STAGING}Commit> }} }}")
        return True

    def upgrade(self, progress: bool = False) -> int:
        """Rewrite the graphs of an earlier format (`legacy_graphs`) the way exports now do (see
        `_upgrade`); returns the number of links rewritten."""
        return _upgrade(self, self.legacy_graphs(), progress)

    def legacy_graphs(self) -> list[NamedNode]:
        """Named graphs in a format of before 2026-12-03 (LEGACY_FORMAT; two look-ups per graph)."""
        return [g for g in self.graphs() if self._legacy(g)]

    def _legacy(self, graph: NamedNode) -> bool:
        """Whether a graph is in a format of before 2026-12-03: its first quad of each legacy predicate."""
        def first(predicate: NamedNode, obj: NamedNode | None = None) -> list[Quad]:
            return list(islice(self.oxigraph.quads_for_pattern(None, predicate, obj, graph), 1))

        return (any(_legacy_quad(q) for p in (LEGACY_TAG_LINK, LEGACY_RUN_LINK) for q in first(p))
                or bool(first(RDF_TYPE, COARSE_CONCEPT) and not first(TAG_CLASS))
                or bool(first(RDF_TYPE, ADDING_TAG_CLASSES)))

    def rows(self, sparql: str) -> list[list[str]]:
        """The rows of a SELECT over the dataset as stored, each value an IRI or a lexical form."""
        return [[term.value for term in row] for row in self.oxigraph.query(sparql)]

    def drop(self, graph: NamedNode | str, progress: bool = False, optimize: bool | None = None,
             request: str | None = None) -> int:
        """Remove a named graph (nothing happens if it is not there); returns its number of quads.
        Once the journal has named the graph, it is removed quad by quad, so memory stays flat
        however big the graph; a graph of at least REBUILD_MIN_QUADS quads whose store holds fewer
        than REBUILD_MAX_KEPT times as many other quads is dropped by copying the others into a new
        store that replaces this one (`_rebuild`: a full-size VGG16 run graph in seconds
        instead of 10 minutes). A drop that is interrupted (also by a crash) is finished before the
        next load or drop, or when the store is next opened. `optimize` compacts the store
        afterwards, by default (None) after drops of at least OPTIMIZE_MIN_QUADS quads by removal:
        deletions leave tombstones that keep the disk space (a full-size VGG16 run graph: 7.8 GB
        before, 0.2 GB after, 37 s); a rebuilt store has none. `request` names the drop of several
        graphs this one is part of (e.g. a run's): the journal keeps it, and a store opened after
        the drop was interrupted tells it (`finished_request`), so that the same request made again
        knows its graphs that are gone were dropped by it."""
        g = _node(graph)
        if not self.oxigraph.contains_named_graph(g):
            return 0
        self._finish_unfinished()
        self._write_journal({"drop": g.value, "request": request})
        removed, rebuilt = self._remove_graph(g, progress)
        self.oxigraph.flush()
        self._journal_path.unlink()
        if optimize or (optimize is None and removed >= OPTIMIZE_MIN_QUADS and not rebuilt):
            self._compact("drop")
        return removed

    def _compact(self, done: str) -> None:
        """Compact the store after a committed `done` (load or drop); Ctrl-C during it leaves the
        store complete and says so."""
        try:
            self.oxigraph.optimize()
        except KeyboardInterrupt:
            raise InterruptedAfterCommit(f"the {done} is complete; only the compaction after it was interrupted "
                                         "(it makes look-ups faster, and the next big load or drop does it)") from None

    def close(self) -> None:
        """Flush and release the store (its files stay). A rebuild whose swap is pending
        (`_SwapPending`) has released it already."""
        oxigraph = self.__dict__.pop("oxigraph", None)
        if oxigraph is not None and not self.read_only:
            oxigraph.flush()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- crash safety ----------------------------------------------------------------------------
    @property
    def _journal_path(self) -> Path:
        return self.path / JOURNAL

    def _write_journal(self, entry: dict[str, Any]) -> None:
        tmp = self._journal_path.with_suffix(".tmp")
        with _writing(tmp) as f:
            json.dump(entry, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._journal_path)

    def _recover(self) -> None:
        """Finish what a crashed load or drop left: roll back an uncommitted load, finish a drop,
        remove leftovers."""
        if self._journal_path.exists():
            entry = self._read_journal()
            if "drop" in entry:
                self._remove_graph(NamedNode(entry["drop"]))
                self.finished_drop, self.finished_request = entry["drop"], entry.get("request")
            else:
                load = NamedNode(STAGING + entry["token"])
                committed = self.oxigraph.query(f"ASK {{ GRAPH {COMMITS} {{ {load} a <{STAGING}Commit> }} }}")
                if not bool(committed):
                    self._rollback(entry)
            self._journal_path.unlink()
        self._cleanup()

    def _read_journal(self) -> dict[str, Any]:
        """The journal of an interrupted load or drop. It is written whole or not at all, so one that
        does not read was damaged outside filtag-kg: what to undo or finish is then unknown."""
        try:
            entry = json.loads(self._journal_path.read_text(encoding="utf-8"))
            if isinstance(entry, dict) and ("drop" in entry or "token" in entry):
                return entry
            problem = "not a journal of filtag-kg"
        except (ValueError, OSError) as e:
            problem = str(e)
        raise UserError(f"{self._journal_path}: the journal of an interrupted load or drop cannot be read ({problem}), "
                        "so it is unknown what to undo or finish; remove the file to use the store as it is, "
                        "then load or drop again what was interrupted")

    def _finish_unfinished(self) -> None:
        """Before a load or drop: finish what an interrupted one left in this process (its journal
        would otherwise be overwritten)."""
        if self._journal_path.exists():
            self._recover()

    def _rollback(self, journal: dict[str, Any]) -> None:
        """Remove the graphs a load created and undo its changes to the others: remove what it
        added, put back what it removed (both idempotent, so an interrupted rollback can run again)."""
        for g in journal["fresh"]:
            if self.oxigraph.contains_named_graph(NamedNode(g)):
                self._remove_graph(NamedNode(g))
        for g, change in journal["replaced"].items():
            if isinstance(change, str):  # a backup of the whole graph, as loads wrote until 2026-12-01
                if self.oxigraph.contains_named_graph(NamedNode(g)):
                    self._remove_graph(NamedNode(g))
                change = {"remove": change}
            else:
                self._remove_quads(Path(change["add"]), NamedNode(g))
            self.oxigraph.bulk_load(path=change["remove"], format=RdfFormat.N_TRIPLES, to_graph=NamedNode(g))
        self.oxigraph.flush()

    def _remove_quads(self, path: Path, g: NamedNode) -> None:
        """Remove from graph `g` the triples of an N-Triples file (those not there are skipped)."""
        for t in parse(path=str(path), format=RdfFormat.N_TRIPLES):
            self.oxigraph.remove(Quad(t.subject, t.predicate, t.object, g))

    def _remove_graph(self, g: NamedNode, progress: bool = False) -> tuple[int, bool]:
        """Remove a graph, for a drop or a load's rollback (whose journal makes the removal safe to
        interrupt); returns the number of quads removed and whether the store was rebuilt without
        it (see `drop`) instead. Quad by quad otherwise: Oxigraph's remove_graph is one transaction
        holding every deletion in memory, and it slows with the graph's size: a 1.4 M-quad run
        graph took 67 s and 1.9 GiB that way, 44 s quad by quad
        (bench/results/bench_kg-replace-20261201T041129.json)."""
        from tqdm import tqdm

        size = self.count(g)
        if self._rebuild({g: None}, size, progress, f"drop {g.value}"):
            return size, True
        for q in tqdm(self.oxigraph.quads_for_pattern(None, None, None, g), total=size, disable=not progress,
                      desc=f"drop {g.value}", unit=" quads", mininterval=1.0):
            self.oxigraph.remove(q)
        self.oxigraph.remove_graph(g)  # the graph's name
        return size, False

    def _rebuild(self, graphs: dict[NamedNode, Path | None], size: int, progress: bool, what: str) -> bool:
        """Replace the store by a copy in which each of `graphs` (`size` quads in all) is gone (None)
        or holds the triples of an N-Triples file instead, if that is worth it: `size` is at least
        REBUILD_MIN_QUADS and the rest of the store has fewer than REBUILD_MAX_KEPT times as many
        quads (bulk-loading a quad costs a fraction of removing one). Returns whether it did.

        The rest is bulk-loaded into a sibling directory, then the files, and for a drop hard links
        to this store's own files (journal, backups); a marker file completes the copy, which then
        takes the store directory's place (`_finish_swap`, which also finishes a swap that a crash
        interrupted; an incomplete copy is discarded). Nothing happens if the copy cannot be
        written (the folder holding the store is read-only, the disk is full), if something else
        holds the pyoxigraph store, which must be closed for the swap, if the store directory
        holds files that are not the store's (`STORE_FILE`), which the swap would take away, or if
        it cannot be renamed (a mount point)."""
        from tqdm import tqdm

        # 2 = this attribute + getrefcount's argument (CPython); any other count means removal instead
        if size >= REBUILD_MIN_QUADS:
            max_kept = REBUILD_MAX_KEPT
        elif size >= REBUILD_SMALL_MIN_QUADS:  # removal is fast enough unless the rest is small (the demo's run)
            max_kept = 1
        else:
            return False
        if not isinstance(self.oxigraph, OxStore) or sys.getrefcount(self.oxigraph) != 2:
            return False
        if _foreign_files(self.path):  # the swap would take them away
            return False
        if os.path.ismount(self.path.resolve()):  # the swap cannot rename it
            return False
        others = [h for h in [DefaultGraph(), *self.oxigraph.named_graphs()] if h not in graphs]
        kept, limit = 0, max_kept * size
        for h in others:  # counted up to the limit; no reference to a query result may outlive its line
            if kept < limit:
                kept += int(next(iter(self.oxigraph.query(
                    f"SELECT (COUNT(*) AS ?n) WHERE {{ {{ SELECT * WHERE {{ ?s ?p ?o }} LIMIT {limit - kept} }} }}",
                    default_graph=h)))["n"].value)
        if kept >= limit:
            return False
        fresh = _beside(self.path, REBUILDING)
        rest = (q for h in others for q in self.oxigraph.quads_for_pattern(None, None, None, h))
        try:
            shutil.rmtree(fresh, ignore_errors=True)
            copy = OxStore(str(fresh))
            shutil.copymode(self.path, fresh)  # e.g. a store shared by a group stays so
            copy.bulk_extend(tqdm(rest, total=kept, disable=not progress, desc=f"{what}: copy the rest",
                                  unit=" quads", mininterval=1.0))
            for g, path in graphs.items():
                if path is not None:
                    triples = parse(path=str(path), format=RdfFormat.N_TRIPLES)
                    copy.bulk_extend(tqdm((Quad(t.subject, t.predicate, t.object, g) for t in triples),
                                          disable=not progress, desc=f"{what}: {g.value}", unit=" quads",
                                          mininterval=1.0))
            for h in others:
                if isinstance(h, NamedNode):
                    copy.add_graph(h)  # empty named graphs too
            copy.flush()
            del copy
            if any(path is None for path in graphs.values()):  # a drop: its journal and a rollback's files
                for own in self.path.glob("filtag-kg-*"):
                    try:
                        os.link(own, fresh / own.name)
                    except OSError:
                        shutil.copy2(own, fresh / own.name)
            with open(fresh / REBUILT, "w") as f:
                os.fsync(f.fileno())
            _fsync(str(fresh))
        except OSError:
            copy = None  # closes a half-written copy before it is deleted
            shutil.rmtree(fresh, ignore_errors=True)
            return False
        del self.oxigraph  # the only reference (checked), so RocksDB closes and releases its lock ...
        try:
            try:
                OxStore(str(self.path))  # ... unless a query or iterator still reads it: then this fails
            except OSError:
                raise _SwapPending("it is still read from in this process") from None
            if not _finish_swap(self.path):  # the store directory cannot be renamed: removal instead
                self.oxigraph = OxStore(str(self.path))
                return False
        except BaseException as e:  # the copy is complete: opening the store finishes the swap
            raise _SwapPending(f"the store at {self.path} was rebuilt, but the copy could not take its place yet "
                               f"({e or type(e).__name__}); it does when the store is next opened") from None
        self.oxigraph = OxStore(str(self.path))
        return True

    def _cleanup(self) -> None:
        """Remove the files of removed and added triples, commit markers and staging graphs no load
        needs any more, a journal a process was killed writing (never in place, so naming nothing
        to do), and the files a bulk load killed or failed (a full disk) left unmoved: they would
        stay for good, as big as the load, and block rebuilds (`_foreign_files`)."""
        for backup in self.path.glob(f"{BACKUP}*.nt"):
            backup.unlink()
        self._journal_path.with_suffix(".tmp").unlink(missing_ok=True)
        for left in self.path.iterdir():
            if BULK_FILE.fullmatch(left.name):
                left.unlink()
        _prune_old_logs(self.path)
        for g in list(self.oxigraph.named_graphs()):
            if isinstance(g, NamedNode) and _own(g):
                self.oxigraph.remove_graph(g)
        self.oxigraph.flush()


@contextmanager
def loading_into(path: str | os.PathLike[str] | None) -> Iterator[Store]:
    """The store at `path` (default: the user's) open for writing, closed afterwards. A store this
    creates (where nothing was, or in an empty folder) is removed again, with the folders made for
    it, if what is done in it fails while it is still empty: a failed first load leaves nothing
    behind to be taken for a store. Not if another process opened it meanwhile (`_remove_made`)."""
    path = Path(path) if path is not None else default_store_path()
    made = missing_folders(path)
    new = bool(made) or path.is_dir() and not any(path.iterdir())
    store = None
    try:
        store = Store(path)
        yield store
    except BaseException:
        if new and (store is None or store.holds_nothing()):
            manifest = None
            if store is not None:
                manifest = _manifest(path)  # read while this process holds the store
                store.close()
                # RocksDB closes with the last reference to its store, which the failed load's frames in the
                # traceback may hold (its spool's generator): their locals go, else it writes on after the removal
                traceback.clear_frames(sys.exc_info()[2])
            _remove_made(path, made, manifest)
        raise
    finally:
        if store is not None:
            store.close()


def _remove_made(path: Path, made: list[Path], manifest: bytes | None) -> None:
    """Remove the store at `path` that a failed first load made, and then the folders `made` for it
    (deepest first) that are empty, unless another process has it open or opened it for writing since
    this one closed it (then it is that process's): the store is locked the way RocksDB locks it
    (an open file description lock on its LOCK file, which RocksDB's POSIX lock conflicts with, and
    which no other file's closing in this process releases), and it is removed only if its CURRENT
    file names the MANIFEST it named while this process held it (`manifest`; every opening for
    writing writes a new one), or, where this process never opened it (`manifest` None), if it has
    none (nothing was made that holds data). A store directory made for it is renamed away before
    it is removed, so that a process opening the store meanwhile makes a new one instead of writing
    into the files being removed; a folder that was there (empty) is emptied, LOCK last."""
    try:
        fd = os.open(path / "LOCK", os.O_RDWR)
    except OSError:  # no store was made
        remove_empty(made)
        return
    try:
        try:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0))
        except OSError:
            return  # another process has it open
        if _manifest(path) != manifest:
            return  # another process opened it for writing meanwhile
        if made:
            removed = path.with_name(f"{path.name}{REMOVED}{uuid.uuid4().hex}")
            path.rename(removed)
            shutil.rmtree(removed, ignore_errors=True)
        else:
            for entry in sorted(path.iterdir(), key=lambda entry: entry.name == "LOCK"):  # the folder was empty
                entry.unlink()
    finally:
        os.close(fd)
    remove_empty(made[1:])


def _manifest(path: Path) -> bytes | None:
    """The content of the store's CURRENT file (the name of its MANIFEST), None if it has none."""
    try:
        return (path / "CURRENT").read_bytes()
    except FileNotFoundError:
        return None


def unfinished(path: Path) -> bool:
    """Whether the store at `path` has an interrupted load or drop (its journal) or a rebuild's swap to
    finish, which only an opening for writing does."""
    return (path / JOURNAL).exists() or _swap_pending(path)


TAGGING_RUNS = Query.parse(f"SELECT DISTINCT ?run WHERE {{ GRAPH ?g {{ ?run a <{FT}TaggingRun> }} }}", "tagging-runs")


def named_run(store: Store | RemoteStore | OxStore, text: str) -> str:
    """The IRI of the tagging run `text` names (a --run): as `filtag-kg query runs` lists it, also
    with the spaces of its table or the <> of its TSV copied along, or by its id (the IRI's last
    part, as in the store's graph names). A UserError naming --run otherwise."""
    if not isinstance(text, str):
        raise UserError(f"--run must be a run IRI (see `filtag-kg query runs`), got {text!r}")
    text = text.strip()
    text = text[1:-1].strip() if text.startswith("<") and text.endswith(">") else text
    if re.fullmatch(r"[\w.~-]+", text):  # an id: a path segment of the minter's slugs
        runs = sorted({row["run"] for row in run_query(TAGGING_RUNS, store).values() if row["run"].rsplit("/", 1)[-1] == text})
        if len(runs) != 1:
            raise UserError(f"--run {text}: the id of several tagging runs ({', '.join(runs)}); give the IRI" if runs
                            else f"--run {text}: no tagging run in the store has this id (the last part of its IRI; "
                                 "`filtag-kg query runs` lists them)")
        return runs[0]
    return iri(text, "--run").value


def run_graphs(store: Store | RemoteStore, run: NamedNode | str) -> list[NamedNode]:
    """The named graphs of one tagging run: the graphs minted beside it (explanations, WordNet and
    ConceptNet links), then the graph holding the run, not the network and class graphs, which
    other runs share. Raises UserError if the store has no such run. Dropped in this order, an
    interrupted drop leaves the run to be found again while any of its graphs is left."""
    r = _node(run)
    holding = store.rows(f"SELECT DISTINCT ?g WHERE {{ GRAPH ?g {{ {r} a <{FT}TaggingRun> }} }}")
    if not holding:
        raise UserError(f"the store holds no tagging run {r.value} (see `filtag-kg query runs`)")
    found = {g for g, in holding}
    minted = {g.removesuffix("tags") for g in found if g.endswith("/tags")}  # e.g. …/graph/RUN_ID/
    graphs = [g for g in store.graphs() if g.value in found or any(
        g.value.startswith(p) and "/" not in g.value.removeprefix(p) for p in minted)]
    return sorted(graphs, key=lambda g: g.value in found)  # stable: by IRI otherwise


def _upgrade(store: Store | RemoteStore, graphs: list[NamedNode], progress: bool) -> int:
    """Rewrite `graphs` from the formats of before 2026-12-03 (LEGACY_FORMAT); returns the number of
    links rewritten.

    Each tag is relinked from its selection (ft:inSelection, exports until 2026-12-01) to the
    selection's summary of the tag's layer (ft:inLayerSummary), one SPARQL 1.1 update per layer
    summary: each is one transaction holding at most one layer's tags of one selection (memory),
    and an interrupted upgrade leaves whole summaries relinked, which the next run finds nothing
    left to do in. A tag whose layer summary is missing (not an export of filtag-kg) keeps its link
    and is reported. Then a graph's links to its run by prov:wasDerivedFrom (until 2026-12-03)
    become prov:wasInfluencedBy, in one update per graph. Last, the `all` coarse concepts of a WordNet
    graph of before 2026-12-03 get their filter's tag classes (ft:tagClass) from the run's tags, one
    update per layer summary; a run whose tags are not in the store is reported."""
    from tqdm import tqdm

    rewritten = 0
    for i, g in enumerate(graphs):
        (n,), = store.rows(f"SELECT (COUNT(*) AS ?n) WHERE {{ GRAPH {g} {{ ?tag {LEGACY_TAG_LINK} ?s }} }}")
        summaries = store.rows(f"""PREFIX ft: <{FT}> SELECT ?selection ?summary ?layer WHERE {{ GRAPH {g} {{
            ?selection a ft:Selection ; ft:hasLayerSummary ?summary . ?summary ft:summaryOf ?layer }} }}""") if int(n) else []
        for selection, summary, layer in tqdm(summaries, disable=not progress or not summaries,  # none: run links only
                                              desc=f"upgrade graph {i + 1}/{len(graphs)}",
                                              unit=" layer summaries"):
            store.update(f"""PREFIX ft: <{FT}>
                DELETE {{ GRAPH {g} {{ ?tag {LEGACY_TAG_LINK} <{selection}> }} }}
                INSERT {{ GRAPH {g} {{ ?tag ft:inLayerSummary <{summary}> }} }}
                WHERE {{ GRAPH ?network {{ ?filter ft:ofLayer <{layer}> }}
                         GRAPH {g} {{ ?tag ft:filter ?filter ; {LEGACY_TAG_LINK} <{selection}> }} }}""")
        left = store.rows(f"SELECT ?tag ?s WHERE {{ GRAPH {g} {{ ?tag {LEGACY_TAG_LINK} ?s }} }} LIMIT 1")
        if left:
            (tag, selection), = left
            raise UserError(f"cannot upgrade graph {g.value} fully: tag {tag} has no layer summary in its "
                            f"selection {selection} for the layer of its filter")
        links = f'GRAPH {g} {{ ?x {LEGACY_RUN_LINK} ?run FILTER(REGEX(STR(?run), "{MINTED_RUN}")) }}'
        (m,), = store.rows(f"SELECT (COUNT(*) AS ?n) WHERE {{ {links} }}")
        if int(m):
            store.update(f"DELETE {{ GRAPH {g} {{ ?x {LEGACY_RUN_LINK} ?run }} }} "
                         f"INSERT {{ GRAPH {g} {{ ?x {OF_RUN} ?run }} }} WHERE {{ {links} }}")
        rewritten += int(n) + int(m) + _add_tag_classes(store, g, progress, f"upgrade graph {i + 1}/{len(graphs)}")
    return rewritten


def _add_tag_classes(store: Store | RemoteStore, g: NamedNode, progress: bool, desc: str) -> int:
    """Give the `all` coarse concepts of a WordNet graph without ft:tagClass their filter's tag classes,
    read from the run's tags: one update per layer summary of the run's selections, between a marker's
    insertion and its removal, so that an interrupted upgrade (some nodes with their classes) is found
    and resumed. Returns the number of links in the graph (0 for a graph that had them, or no coarse
    concepts)."""
    from tqdm import tqdm

    def has(predicate: NamedNode, obj: str = "?y") -> bool:
        return bool(store.rows(f"SELECT ?x WHERE {{ GRAPH {g} {{ ?x {predicate} {obj} }} }} LIMIT 1"))

    marker = f"GRAPH {g} {{ {ADDING_TAG_CLASSES} {RDF_TYPE} {ADDING_TAG_CLASSES} }}"
    if not has(RDF_TYPE, str(ADDING_TAG_CLASSES)):
        if not has(RDF_TYPE, str(COARSE_CONCEPT)) or has(TAG_CLASS):
            return 0
        store.update(f"INSERT DATA {{ {marker} }}")
    parts = store.rows(f"""PREFIX ft: <{FT}> PREFIX rdfs: <http://www.w3.org/2000/01/rdf-schema#>
        SELECT DISTINCT ?tags ?label ?part WHERE {{
          {{ SELECT DISTINCT ?run WHERE {{ GRAPH {g} {{ ?c a ft:CoarseConcept ; {OF_RUN} ?run }} }} }}
          GRAPH ?tags {{ ?selection ft:ofRun ?run ; rdfs:label ?label ; ft:hasLayerSummary ?part }} }}""")
    for tags, label, part in tqdm(parts, disable=not progress, desc=desc, unit=" layer summaries"):
        store.update(f"""PREFIX ft: <{FT}>
            INSERT {{ GRAPH {g} {{ ?coarse ft:tagClass ?class }} }}
            WHERE {{ GRAPH <{tags}> {{ ?tag ft:inLayerSummary <{part}> ; ft:filter ?filter ; ft:class ?class }}
                     # OPTIONAL: looked up per tag; as a required pattern Oxigraph 0.5.13 joined every
                     # coarse concept by hashing (203 s, not 0.26 s, for 5,000 tags of a VGG16 layer)
                     OPTIONAL {{ GRAPH {g} {{ ?coarse ft:coarsens ?filter ; ft:tagSelection {Literal(label)} }} }}
                     FILTER(STRENDS(STR(?coarse), "/all")) }}""")
    (n,), = store.rows(f"SELECT (COUNT(*) AS ?n) WHERE {{ GRAPH {g} {{ ?c {TAG_CLASS} ?x }} }}")
    if not int(n):
        raise UserError(f"cannot upgrade graph {g.value}: the tags of the run its coarse concepts summarise are not in "
                        f"the store; load the run's tags and upgrade again, or link the run again (`filtag-kg link "
                        f"wordnet`)")
    store.update(f"DELETE DATA {{ {marker} }}")
    return int(n)


def _finish_swap(path: Path) -> bool:
    """Put a store rebuilt by a drop or load (`Store._rebuild`) in the place of the old one, or
    finish doing so after a crash; discard an incomplete rebuild and a retired store. A complete
    one is discarded too if the store directory cannot be renamed (a mount point: the store was
    never opened for writing again, 'Device or resource busy'); the old store's journal then has
    its drop or load done again, by removal. Returns whether a rebuilt store took the place."""
    fresh, retired, path = _beside(path, REBUILDING), _beside(path, RETIRED), path.resolve()
    swapped = False
    if (fresh / REBUILT).exists():
        if path.exists():
            shutil.rmtree(retired, ignore_errors=True)
            try:
                path.rename(retired)
            except OSError:
                shutil.rmtree(fresh)
                return False
        fresh.rename(path)
        _fsync(str(path.parent))
        (path / REBUILT).unlink()
        swapped = True
    elif fresh.is_dir():
        shutil.rmtree(fresh)
    shutil.rmtree(retired, ignore_errors=True)
    return swapped


def _writer(path: Path) -> int | None:
    """The process, other than this one, that holds the store at `path` open for writing (RocksDB's
    POSIX lock on its LOCK file, read from /proc/locks: probing the lock through a file descriptor
    would release this process's own lock on closing it); None if none, or where that cannot be told."""
    try:
        lock = os.stat(path / "LOCK")
        table = Path("/proc/locks").read_text()
    except OSError:
        return None
    file = f"{os.major(lock.st_dev):02x}:{os.minor(lock.st_dev):02x}:{lock.st_ino}"
    for line in table.splitlines():  # "1: POSIX  ADVISORY  WRITE 7317 fe:00:2180252 0 EOF"
        fields = line.split()
        if len(fields) > 5 and fields[1] == "POSIX" and fields[5] == file and fields[4] != str(os.getpid()):
            return int(fields[4])
    return None


def _swap_pending(path: Path) -> bool:
    """Whether a complete rebuilt store waits beside `path` to take its place (`_finish_swap`), also
    when a crash left no store directory at `path` between the two renames."""
    return (_beside(path, REBUILDING) / REBUILT).exists()


def _half_changed(path: Path) -> bool:
    """Whether the journal of the store at `path` names a load or drop that has changed the store
    in place and is not finished (a rebuild leaves the old store untouched until its swap, unless
    the load streamed new graphs into it first)."""
    try:
        entry = json.loads((path / JOURNAL).read_text())
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return True
    rebuilding = _beside(path, REBUILDING).exists()
    return not (rebuilding and ("drop" in entry or not entry.get("fresh")))


def _prune_old_logs(path: Path) -> None:
    """Remove all but the newest OLD_LOGS_KEPT of RocksDB's old info logs: every opening for writing
    renames the log to LOG.old.<microseconds> and RocksDB keeps up to 1,000 of them (pyoxigraph sets
    no limit and offers none). Called with the store open for writing, whose lock keeps other writers
    out; RocksDB never reads these files, and read-only openings write none."""
    logs = sorted((p for p in path.iterdir() if OLD_LOG.fullmatch(p.name)),
                  key=lambda p: int(p.name.rsplit(".", 1)[1]))
    for log in logs[:-OLD_LOGS_KEPT]:
        log.unlink(missing_ok=True)


def _foreign_files(path: Path) -> list[str]:
    """Names in a store directory that neither RocksDB nor filtag-kg made (a user's files)."""
    return sorted(p.name for p in path.iterdir() if not STORE_FILE.fullmatch(p.name))


def _beside(path: Path, suffix: str) -> Path:
    """The sibling of a store directory named with `suffix`: beside the directory itself where
    `path` is a symbolic link to it, which then points to the rebuilt store."""
    real = path.resolve()
    return real.with_name(real.name + suffix)


@contextmanager
def _writing(path: str | os.PathLike[str]) -> Iterator[TextIO]:
    """A text file open for writing whose errors while writing or closing it (a full disk) name
    it, as those of opening it do."""
    try:
        with open(path, "w", encoding="utf-8") as f:
            yield f
    except OSError as e:
        raise _named(e, path) from None


def _named(error: OSError, path: str | os.PathLike[str]) -> OSError:
    """`error`, naming `path` if it names no file (an error of a write names none)."""
    return error if error.filename else OSError(error.errno, error.strerror, str(path))


def _fsync(path: str) -> None:
    """Make a file's content, or a directory's entries, durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _SwapPending(UserError):
    """A rebuilt store is complete but could not take the old one's place in this process (which
    still reads the old one, or was interrupted); opening the store finishes the swap."""


class RemoteError(UserError):
    """A remote SPARQL server refused a request or could not be reached (after retries)."""


class RemoteSyntaxError(RemoteError):
    """A server refused a query as not valid SPARQL; `said` is its own message (with the position)."""

    def __init__(self, message: str, said: str) -> None:
        super().__init__(message)
        self.said = said


class _NoAnswer(RemoteError):
    """A request got no answer (a timeout, a broken connection), so the server may still carry it out."""


class RemoteStore:
    """A SPARQL 1.1 server: SPARQLWrapper for queries, the Graph Store HTTP Protocol (requests) for
    pushing graphs, SPARQL 1.1 Update for deletes and commits.

    `query_url`, `update_url` and `store_url` are the three endpoints (Oxigraph: /query, /update,
    /store; Fuseki: /ds/query, /ds/update, /ds/data). `RemoteStore.at(base)` fills them in for an
    Oxigraph server. Queries see the union of the named graphs (named with default-graph-uri) as
    default graph, like the embedded store, unless `union=False` or they name their dataset.
    """

    TRANSIENT = frozenset({408, 425, 429, 500, 502, 503, 504})
    MAX_TIMEOUT = 365 * 24 * 3600  # seconds (a socket takes no timeout of 10^10 s or more)

    def __init__(
        self, query_url: str, update_url: str | None = None, store_url: str | None = None, *,
        auth: tuple[str, str] | None = None, timeout: float = 30.0, retries: int = 4, backoff: float = 0.25,
    ) -> None:
        import requests

        for url in (query_url, update_url, store_url):
            if url is not None and not url.startswith(("http://", "https://")):
                raise UserError(f"endpoint URL {url!r}: expected http:// or https://")
        if not 0 < timeout <= self.MAX_TIMEOUT or retries < 0:
            raise UserError(f"timeout must be more than 0 s and at most a year ({self.MAX_TIMEOUT:,} s), and "
                            f"retries at least 0, got {timeout} and {retries}")
        self.query_url, self.update_url, self.store_url = query_url, update_url, store_url
        self.auth, self.timeout, self.retries, self.backoff = auth, timeout, retries, backoff
        self.session = requests.Session()
        if auth is not None:
            self.session.auth = auth
        self._checked = False  # whether the server's graphs were checked for the format of before 2026-12-01
        self.sent: list[str] = []  # the graphs the last load sent (those the server held as given are not)
        self.finished_drop: str | None = None  # never set: a server drops a graph in one request
        self.finished_request: str | None = None  # never set either

    @classmethod
    def at(cls, base: str, **kwargs: Any) -> RemoteStore:
        """An Oxigraph server at `base` (e.g. http://127.0.0.1:7878)."""
        base = base.rstrip("/")
        return cls(f"{base}/query", f"{base}/update", f"{base}/store", **kwargs)

    # -- reading ---------------------------------------------------------------------------------
    def query(self, sparql: str, union: bool = True, **kwargs: Any) -> QuerySolutions | QueryBoolean | list[Triple]:
        """Run a query with SPARQLWrapper; SELECT/ASK give pyoxigraph results, CONSTRUCT/DESCRIBE triples.

        `default_graph` (an IRI or a list) names the default graph explicitly; otherwise, with
        `union` and a query that does not name its dataset (FROM, FROM NAMED), the default graph is
        the union of all named graphs. Either way GRAPH patterns see every named graph (the protocol
        gives a request with default-graph-uri only the named graphs it lists in named-graph-uri).
        """
        from SPARQLWrapper import JSON, POST, TURTLE, URLENCODED, SPARQLWrapper

        default = kwargs.pop("default_graph", None)
        if kwargs:
            raise TypeError(f"unknown arguments for a remote query: {', '.join(kwargs)}")
        if not self._checked:
            legacy = self.legacy_graphs()
            if legacy:
                raise UserError(
                    f"the SPARQL server at {self.query_url} holds {len(legacy)} graph(s) exported by a filtag-kg of "
                    f"before 2026-12-03, in a format of {LEGACY_FORMAT}; upgrade them on the server with "
                    f"`filtag-kg upgrade --endpoint URL`")
            self._checked = True
        union = union and not names_dataset(sparql)  # a query naming its dataset gets it, as from the server
        named = [g.value for g in self.graphs()] if default is not None or union else []
        if default is not None:
            defaults = [_node(g).value for g in (default if isinstance(default, list) else [default])]
        else:
            defaults = named
        wrapper = SPARQLWrapper(self.query_url)
        wrapper.setQuery(sparql)
        wrapper.setMethod(POST)
        wrapper.setRequestMethod(URLENCODED)
        wrapper.setTimeout(math.ceil(self.timeout))  # whole seconds: int() made 0.5 s 0, which is no timeout
        if self.auth is not None:
            wrapper.setCredentials(*self.auth)
        for g in defaults:
            wrapper.addDefaultGraph(g)
        for g in named:  # a request that names its default graph has only the named graphs it names too
            wrapper.addNamedGraph(g)
        form = query_form(sparql)  # SPARQLWrapper's own guess takes a word of a comment for the form
        wrapper.setReturnFormat(TURTLE if form in ("CONSTRUCT", "DESCRIBE") else JSON)

        def answer() -> tuple[bytes, str]:
            response = wrapper.query().response
            return response.read(), response.info().get_content_type()

        body, content_type = self._retry(answer, f"query at {self.query_url}")
        try:
            if form in ("CONSTRUCT", "DESCRIBE"):
                return list(parse(body, format=RdfFormat.TURTLE))
            results = parse_query_results(body, format=QueryResultsFormat.JSON)
            if isinstance(results, QuerySolutions):  # parsed as they are read: read once here, not in the caller
                for _ in results:
                    pass
                results = parse_query_results(body, format=QueryResultsFormat.JSON)
            return results
        except SyntaxError as e:
            expected = "Turtle" if form in ("CONSTRUCT", "DESCRIBE") else "SPARQL JSON results"
            raise _not_results(self.query_url, expected, body, e, content_type) from None

    def graphs(self) -> list[NamedNode]:
        """The named graphs holding triples (the store's own staging graphs left out), sorted."""
        return [g for g in self._graphs_with("?s ?p ?o") if not _own(g)]

    def count(self, graph: NamedNode | str) -> int:
        """Number of triples in one graph."""
        (n,), = self.rows(f"SELECT (COUNT(*) AS ?n) WHERE {{ GRAPH <{_node(graph).value}> {{ ?s ?p ?o }} }}")
        return int(n)

    def __len__(self) -> int:
        """Number of quads in the named graphs (where this package keeps everything)."""
        (n,), = self.rows("SELECT (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } }")
        return int(n)

    def legacy_graphs(self) -> list[NamedNode]:
        """Named graphs in a format of before 2026-12-03 (LEGACY_FORMAT)."""
        runs = f'?x {LEGACY_RUN_LINK} ?run FILTER(REGEX(STR(?run), "{MINTED_RUN}"))'
        coarse = set(self._graphs_with(f"?c a {COARSE_CONCEPT}")) - set(self._graphs_with(f"?c {TAG_CLASS} ?x"))
        return sorted({*self._graphs_with(f"?tag {LEGACY_TAG_LINK} ?s"), *self._graphs_with(runs), *coarse,
                       *self._graphs_with(f"?u a {ADDING_TAG_CLASSES}")}, key=lambda g: g.value)

    def _graphs_with(self, pattern: str) -> list[NamedNode]:
        """The named graphs holding a match of a triple pattern, sorted: the server's graph list, each
        checked for a first match, not a scan of every match (an Oxigraph server holding 2 M quads in
        5 graphs, best of 3: 621 ms scanning, 1.1 ms so). A server that matches `GRAPH ?g { }` once
        with ?g unbound instead of once per graph (Virtuoso 7) is asked for the graphs of the matches."""
        rows = self.rows(f"SELECT ?g WHERE {{ GRAPH ?g {{ }} FILTER EXISTS {{ GRAPH ?g {{ {pattern} }} }} }}")
        if any(g is None for g, in rows):
            rows = self.rows(f"SELECT DISTINCT ?g WHERE {{ GRAPH ?g {{ {pattern} }} }}")
        return sorted((NamedNode(g) for g, in rows), key=lambda g: g.value)

    def upgrade(self, progress: bool = False) -> int:
        """Rewrite the graphs of an earlier format on the server (`legacy_graphs`) the way exports
        now do (see `_upgrade`); returns the number of links rewritten."""
        return _upgrade(self, self.legacy_graphs(), progress)

    # -- writing ---------------------------------------------------------------------------------
    def load(self, quads_or_graph: Loadable, graph: NamedNode | str | None = None, progress: bool = False) -> int:
        """Push quads, replacing each named graph they belong to (or `graph`); complete or nothing.

        Graphs the server already holds unchanged are not sent again (`sent` names those that were).
        Returns the number of quads given.
        """
        if self.store_url is None or self.update_url is None:
            raise UserError("pushing needs the server's graph store (store_url) and update (update_url) endpoints")
        target = _node(graph) if graph is not None else None
        token = uuid.uuid4().hex
        with tempfile.TemporaryDirectory(prefix="filtag-kg-push-") as tmp:
            spool = _Spool(target, Path(tmp))
            n = spool.write(_as_quads(quads_or_graph), progress)
            files = spool.files()
            sizes = {g: size for g, (_, size) in files.items()}
            present = {g.value for g in self.graphs()}
            fresh = [g for g in files if g not in present]
            changed = [g for g in files if g in present and not self._holds(g, files[g][0])]
            self.sent = [*fresh, *changed]
            staging = {g: f"{STAGING}{token}:{i}" for i, g in enumerate(changed)}
            marker, receipt = f"{STAGING}{token}:push", f"{STAGING}{token}:receipt"
            written: list[str] = []  # new graphs already in place
            committed = unsure = committing = False
            try:
                if fresh or staging:  # claimed and named first, so that what a push killed before its commit left is known
                    dead = [m for m, push in self._push_markers().items() if push.dead]
                    self._mark(marker, fresh, changed, [*staging.values(), receipt], dead)
                for g in fresh:  # a graph the server lacks: one PUT straight into place
                    written.append(g)
                    self._put(files[g][0], g, sizes[g], g)
                    self._beat(marker)
                for g, s in staging.items():  # a graph the server has: PUT beside it first
                    self._put(files[g][0], s, sizes[g], g)
                    self._beat(marker)
                if staging:
                    committing = True
                    with deferred_signals():  # the commit's answer is awaited: cut off, whether it took place is unknown
                        self._commit(staging, receipt, marker)
                committed = True
            except (_NoAnswer, KeyboardInterrupt) as e:
                if committing:  # the commit may have taken place unanswered: its staging copies dropped first, it
                    self._drop_quietly(staging.values())  # cannot take place later (its guard; unless still under way
                    committed = self._committed_quietly(receipt)  # after a timeout), and its receipt tells
                if committed and isinstance(e, KeyboardInterrupt):  # new graphs dropped now would leave half a push
                    raise InterruptedAfterCommit("the push is complete; it was interrupted after its commit") from None
                if not committed and isinstance(e, _NoAnswer):  # e.g. a PUT that timed out: the server may put its
                    unsure = True  # graph in place later, after the graphs are dropped below, so the marker stays to name it
                    raise RemoteError(
                        f"{e}. Graphs a request of this push puts in place after it failed are named by the next push "
                        "as those of an unfinished one (push the same again to complete it, or drop them)") from None
                if not committed:
                    raise
            finally:
                self._drop_quietly([*staging.values(), *([] if committed else written), receipt,
                                    *([] if unsure else [marker])])
                if unsure:  # the marker stays, to name what a late request puts in place, but claims nothing
                    self._update_quietly(f"INSERT DATA {{ GRAPH <{marker}> {{ <{marker}> <{ENDED}> true }} }}")
        self._forget_pushes(set(files))
        return n

    def unfinished_pushes(self) -> list[str]:
        """Graphs that pushes killed before their commit (with no chance to clean up), or still running
        elsewhere, put in place while others of theirs never arrived. Pushing the same again completes
        them; `drop` removes them."""
        present = {g.value for g in self.graphs()}
        return sorted({g for push in self._push_markers().values() for g in push.pushed if g in present})

    def _mark(self, marker: str, fresh: list[str], replaced: list[str], staged: list[str], dead: list[str]) -> None:
        """Write a push's marker graph: what it will put in place, replace and stage, by which process,
        and that it is alive; in the same update, only if no other push that is alive (made progress
        within STALE_AFTER, and not one of the markers `dead`) names one of these graphs, so that two
        pushes of a graph never interleave (the server held one graph of each, both reported done).
        Refused with a RemoteError naming the graphs and when the other push last made progress."""
        named = [f"<{marker}> <{PUSHES}> <{g}> ." for g in fresh] + [f"<{marker}> <{REPLACES}> <{g}> ." for g in replaced]
        named += [f"<{marker}> <{STAGES}> <{g}> ." for g in staged]
        named.append(f"<{marker}> <{BY}> {Literal(f'{socket.gethostname()} {os.getpid()}')} .")
        others = (f"VALUES ?g {{ {' '.join(f'<{g}>' for g in [*fresh, *replaced])} }} VALUES ?p {{ <{PUSHES}> <{REPLACES}> }} "
                  f"GRAPH ?m {{ ?m ?p ?g ; <{ALIVE}> ?alive FILTER NOT EXISTS {{ ?m <{ENDED}> ?ended }} }} "
                  f"FILTER(?m NOT IN ({', '.join(f'<{m}>' for m in [marker, *dead])}) && "
                  f"?alive >= {self._stale_before()})")
        self.update(f"INSERT {{ GRAPH <{marker}> {{ {' '.join(named)} <{marker}> <{ALIVE}> ?now }} }} "
                    f"WHERE {{ BIND(NOW() AS ?now) FILTER NOT EXISTS {{ {others} }} }}")
        if not self.rows(f"SELECT ?alive WHERE {{ GRAPH <{marker}> {{ <{marker}> <{ALIVE}> ?alive }} }}"):
            running = self.rows(f"SELECT DISTINCT ?g ?alive WHERE {{ {others} }} ORDER BY ?g")
            raise RemoteError(f"push to {self.store_url}: another push of {', '.join(sorted({g for g, _ in running}))} "
                              f"is running (it last made progress at {max(a for _, a in running)}, server time); "
                              "push again when it is done (a push that makes no progress for an hour, or whose "
                              "process on this machine has ended, is taken for dead); nothing was changed")

    def _beat(self, marker: str) -> None:
        """Mark a push alive now, so that other clients leave its staging graphs alone."""
        self.update(f"DELETE {{ GRAPH <{marker}> {{ <{marker}> <{ALIVE}> ?then }} }} "
                    f"INSERT {{ GRAPH <{marker}> {{ <{marker}> <{ALIVE}> ?now }} }} "
                    f"WHERE {{ GRAPH <{marker}> {{ <{marker}> <{ALIVE}> ?then }} BIND(NOW() AS ?now) }}")

    def _commit(self, staging: dict[str, str], receipt: str, marker: str) -> None:
        """Replace each graph by its staging copy in one update, one transaction, only if every staging
        copy is still there (another client may have taken the push for dead and removed them); the
        update leaves a receipt when it took place, and removes the push's marker and the staging copies
        (also when the server carries it out after its answer was lost, or after the push was killed:
        no marker then names the copies any more, which stayed on the server for good). Idempotent,
        so retrying it after a lost answer is safe."""
        guard = " ".join(f"{{ SELECT * WHERE {{ GRAPH <{s}> {{ ?s{i} ?p{i} ?o{i} }} }} LIMIT 1 }}"
                         for i, s in enumerate(staging.values()))
        replace = [f"DELETE {{ GRAPH <{g}> {{ ?s ?p ?o }} }} WHERE {{ {guard} GRAPH <{g}> {{ ?s ?p ?o }} }} ; "
                   f"INSERT {{ GRAPH <{g}> {{ ?s ?p ?o }} }} WHERE {{ {guard} GRAPH <{s}> {{ ?s ?p ?o }} }}"
                   for g, s in staging.items()]
        self.update(" ; ".join([*replace, f"INSERT {{ GRAPH <{receipt}> {{ <{receipt}> <{COMMITTED}> true }} }} "
                                          f"WHERE {{ {guard} }}",
                                f"DELETE {{ GRAPH <{marker}> {{ ?s ?p ?o }} }} WHERE {{ {guard} GRAPH <{marker}> "
                                f"{{ ?s ?p ?o }} }}", *(f"DROP SILENT GRAPH <{s}>" for s in staging.values())]))
        if not self._committed(receipt):
            raise RemoteError(f"push to {self.store_url}: another client removed this push's staging graphs "
                              f"before its commit (it pushed the same graphs meanwhile, or took this push for dead); "
                              f"this push replaced nothing: push again")

    def _committed(self, receipt: str) -> bool:
        """Whether a push's commit took place (its receipt graph says so)."""
        return bool(self.rows(f"SELECT ?done WHERE {{ GRAPH <{receipt}> {{ <{receipt}> <{COMMITTED}> ?done }} }}"))

    def _committed_quietly(self, receipt: str) -> bool:
        """`_committed`, False if the server cannot tell (it cannot be reached)."""
        try:
            return self._committed(receipt)
        except RemoteError:
            return False

    def _forget_pushes(self, done: set[str], dropped: str | None = None) -> None:
        """Drop the markers of other pushes, with the staging graphs they name, that this push (of the
        graphs `done`) or this drop made pointless: those that would write only graphs in `done`, those
        one of whose new graphs was `dropped` and which left none of the others, and those that made no
        progress for STALE_AFTER and left no new graph but in `done`."""
        present = {g.value for g in self.graphs()}
        for marker, push in self._push_markers().items():
            left = {g for g in push.pushed if g in present} - done
            if push.pushed | push.replaced <= done or (dropped in push.pushed or push.stale) and not left:
                self._drop_quietly([*push.staged, marker])

    def _stale_before(self) -> str:
        """The server's time STALE_AFTER ago, as an xsd:dateTime literal: a push alive before it is taken
        for dead. Computed here from the server's NOW(), since SPARQL 1.1 has no arithmetic of dates
        and durations (Oxigraph has it, Virtuoso refuses `NOW() - "PT1H"^^xsd:dayTimeDuration`)."""
        (now,), = self.rows("SELECT (NOW() AS ?now) WHERE { }")
        try:
            before = datetime.datetime.fromisoformat(now) - STALE_AFTER
        except (TypeError, ValueError):
            raise RemoteError(f"query at {self.query_url}: the server's NOW() is no xsd:dateTime: {now!r}") from None
        return f'"{before.isoformat()}"^^<{XSD}dateTime>'

    def _push_markers(self) -> dict[str, _Push]:
        """The marker graphs of pushes on the server, with what each names and whether it is stale."""
        markers: dict[str, _Push] = {}
        rows = self.rows(
            # the predicates bound by VALUES, so that the server reads them by index (a FILTER on ?p scanned
            # every quad: 536 ms against 1.4 ms on an Oxigraph server holding 2 M quads)
            f"SELECT ?m ?p ?g ?stale (COALESCE(?process, '') AS ?by) WHERE {{ VALUES ?p {{ <{PUSHES}> <{REPLACES}> <{STAGES}> }} "
            f"GRAPH ?m {{ ?m ?p ?g OPTIONAL {{ ?m <{ALIVE}> ?alive }} OPTIONAL {{ ?m <{BY}> ?process }} }} "
            f"BIND(!BOUND(?alive) || ?alive < {self._stale_before()} AS ?stale) }}")
        for m, p, g, stale, by in rows:  # a retried marking may have left two times: the later one counts
            push = markers.setdefault(m, _Push(stale == "true", dead=_ended(by)))
            push.stale &= stale == "true"
            {PUSHES: push.pushed, REPLACES: push.replaced, STAGES: push.staged}[p].add(g)
        for push in markers.values():
            push.stale |= push.dead
        return markers

    def _holds(self, graph: str, path: Path) -> bool:
        """Whether the server's graph already holds exactly the triples of an N-Triples file."""
        assert self.store_url is not None
        response = self._request("GET", self.store_url, params={"graph": graph},
                                 headers={"Accept": "application/n-triples"})
        current = OxStore()
        try:
            current.load(response.content, format=RdfFormat.N_TRIPLES, to_graph=NamedNode(graph))
        except SyntaxError as e:
            raise _not_results(self.store_url, "N-Triples", response.content, e, _content_type(response),
                               "graph store") from None
        return _unchanged(path, graph, current.quads_for_pattern(None, None, None, NamedNode(graph)))

    def _put(self, body: Path, target: str, size: int, graph: str) -> None:
        """PUT an N-Triples file of `size` triples as `graph`, or as `target`, its staging graph, and
        check by counting that all of it arrived."""
        assert self.store_url is not None
        self._request("PUT", self.store_url, body_file=body, params={"graph": target},
                      headers={"Content-Type": "application/n-triples"})
        n = self.count(target)
        if n != size:
            staged = f" (staged as {target})" if target != graph else ""
            raise RemoteError(f"push to {self.store_url}: graph {graph}{staged} holds {n} triples after its upload, "
                              f"expected {size}")

    def update(self, sparql: str) -> None:
        """Run a SPARQL 1.1 update."""
        if self.update_url is None:
            raise UserError("this remote store has no update endpoint (update_url)")
        self._request("POST", self.update_url, data=sparql.encode("utf-8"),
                      headers={"Content-Type": "application/sparql-update"})

    def drop(self, graph: NamedNode | str, progress: bool = False, request: str | None = None) -> int:
        """Remove a named graph (nothing happens if it is not there) with one update, one transaction
        on the server, so never half (`progress` has nothing to show, `request` nothing to keep);
        returns its number of triples."""
        n = self.count(graph)
        self.update(f"DROP SILENT GRAPH <{_node(graph).value}>")
        self._forget_pushes(set(), dropped=_node(graph).value)
        return n

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> RemoteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- HTTP ------------------------------------------------------------------------------------
    def rows(self, sparql: str) -> list[list[str]]:
        """The rows of a SELECT over the dataset as stored, each value an IRI or a lexical form."""
        response = self._request("POST", self.query_url, data={"query": sparql},
                                 headers={"Accept": "application/sparql-results+json"})
        try:
            results = response.json()
            # a variable a row leaves unbound is missing from its binding (None here)
            return [[row[name]["value"] if name in row else None for name in results["head"]["vars"]]
                    for row in results["results"]["bindings"]]
        except (ValueError, KeyError, TypeError) as e:  # e.g. a web page: the URL is no SPARQL endpoint
            raise _not_results(self.query_url, "SPARQL JSON results", response.content, e,
                               _content_type(response)) from None

    def _request(self, method: str, url: str, body_file: Path | None = None, **kwargs: Any) -> Any:
        """One HTTP request with retries; `body_file` is streamed (opened again for each attempt)."""
        import requests

        write = method != "GET" and url != self.query_url

        def send() -> requests.Response:
            try:
                if body_file is None:
                    response = self.session.request(method, url, timeout=self.timeout, **kwargs)
                else:
                    with open(body_file, "rb") as body:
                        response = self.session.request(method, url, timeout=self.timeout, data=body, **kwargs)
            except requests.ReadTimeout as e:
                if not write:  # a read: sent again
                    raise
                # a write the server took and may still be carrying out: sent again, it would be carried out once
                # per attempt (a push's commit of 600,000 triples to `serve --allow-updates`: 2 minutes, 5 times)
                raise _NoAnswer(f"{method} {url}: no answer within {self.timeout:g} s, not sent again ({e}); the "
                                "server may still carry it out (big graphs need a larger --timeout: replacing "
                                "600,000 triples took 2 minutes)") from None
            for hop in response.history:  # a redirect by 301, 302 or 303 turns a POST or PUT into a GET
                if hop.request.method != response.request.method:  # ... whose answer would mislead
                    raise RemoteError(f"{method} {url}: {hop.status_code} {hop.reason}: the server redirects to "
                                      f"{hop.headers.get('Location')}; give the endpoint it names (--endpoint, or "
                                      "--query-url, --update-url, --store-url)")
            if response.status_code in self.TRANSIENT:
                raise _Transient(response.status_code, response.reason, response.content)
            if response.status_code >= 400:
                raise _refused(f"{method} {url}", response.status_code, response.reason, response.content)
            return response

        return self._retry(send, f"{method} {url}", write)

    def _retry(self, call: Callable[[], T], what: str, write: bool = False) -> T:
        """Call, retrying transient failures (connection errors, timeouts, answers cut off, 5xx/429) with
        backoff; `write`: the call asks the server to change something, which it may do unanswered."""
        import http.client
        import urllib.error

        import requests
        from urllib3.exceptions import ConnectTimeoutError

        for attempt in range(self.retries + 1):
            try:
                return call()
            except urllib.error.HTTPError as e:  # from SPARQLWrapper
                if e.code not in self.TRANSIENT:
                    raise _refused(what, e.code, e.reason, e.read()) from None
                error: Exception = _Transient(e.code, e.reason, e.read())
            except (_Transient, requests.ConnectionError, requests.Timeout, urllib.error.URLError,
                    TimeoutError, ConnectionError, requests.exceptions.ChunkedEncodingError,
                    http.client.IncompleteRead) as e:  # the last two: an answer cut off (the server ended)
                error = e
            except Exception as e:  # SPARQLWrapper wraps HTTP 400 etc. in its own exceptions
                if type(e).__module__.startswith("SPARQLWrapper"):
                    said = _server_words(e)
                    if type(e).__name__ == "QueryBadFormed" and said is not None:
                        raise RemoteSyntaxError(f"{what}: the server finds the query not valid SPARQL: "
                                                f"{said[:2000]}", said) from None
                    raise RemoteError(f"{what}: {e}") from None
                raise
            if attempt < self.retries:
                time.sleep(self.backoff * 2**attempt)
        # the server answered, or never got the request (refused, or not connected in time), or may carry it out
        # (also when a gateway in front of it timed out: 504)
        unsent = isinstance(getattr(error.args[0] if error.args else None, "reason", None), ConnectTimeoutError)
        answered = isinstance(error, _Transient) and error.status != 504
        failed = f"{what}: failed after {self.retries + 1} attempts: {error}"
        if answered or unsent:
            raise RemoteError(failed)
        raise _NoAnswer(f"{failed}; the server may still carry it out" if write else failed)

    def _drop_quietly(self, graphs: Iterable[str]) -> None:
        for g in graphs:
            self._update_quietly(f"DROP SILENT GRAPH <{g}>")

    def _update_quietly(self, sparql: str) -> None:
        """An update of a push's own bookkeeping: an unreachable server keeps a staging graph (graphs()
        hides it) or a marker as it was."""
        try:
            self.update(sparql)
        except RemoteError:
            pass


def _server_words(error: Exception) -> str | None:
    """What the server answered, from a SPARQLWrapper exception: it keeps the answer only in its
    message, as the repr of its bytes after "Response:" (None without one)."""
    _, found, answer = str(error).partition("\n\nResponse:\n")
    try:
        body = ast.literal_eval(answer) if found else None
    except (ValueError, SyntaxError):
        return None
    return body.decode("utf-8", "replace").strip() if isinstance(body, bytes) else None


def _refused(what: str, status: int, reason: str, body: bytes) -> RemoteError:
    """A server's refusal of a request; a 404 most likely means a URL that is no endpoint, such as an
    --endpoint given as the query endpoint's URL (whose /query then has /query appended)."""
    hint = (" (is this URL the endpoint? --endpoint is the server's base URL, with /query, /update and /store "
            "below it; push also takes the endpoints themselves: --query-url, --update-url, --store-url)"
            if status == 404 else "")
    return RemoteError(f"{what}: {status} {reason}: {body[:300].decode('utf-8', 'replace')}{hint}")


# the media types of the answers RemoteStore parses, by the name its errors give them
_MEDIA_TYPES = {"SPARQL JSON results": ("application/sparql-results+json", "application/json"),
                "Turtle": ("text/turtle",), "N-Triples": ("application/n-triples",)}


def _not_results(url: str, expected: str, body: bytes, error: Exception, content_type: str,
                 what: str = "query") -> RemoteError:
    """A server's answer to a query (or a graph store read, `what` 'graph store') that is not what a
    SPARQL endpoint gives (a login page, a proxy's error page, the home page of a wrong URL); or one
    of the media type asked for that breaks off: the server failed after it began answering (and
    ended the answer by closing; Oxigraph's server appends its error message, such as that of a
    SERVICE it could not reach, to the answer begun with status 200)."""
    if content_type in _MEDIA_TYPES[expected]:
        return RemoteError(f"{what} at {url}: the server failed while answering: its answer ({content_type}) breaks "
                           f"off ({type(error).__name__}: {error}); it ends {body[-300:]!r}")
    option = "--store-url" if what == "graph store" else "--query-url"
    return RemoteError(f"{what} at {url}: the answer is not {expected} ({type(error).__name__}: {error}): is this "
                       f"a SPARQL {what} endpoint (see --endpoint, {option})? It begins {body[:200]!r}")


def _content_type(response: Any) -> str:
    """The media type of a `requests` response, without its parameters."""
    return response.headers.get("Content-Type", "").partition(";")[0].strip().lower()


def _ended(by: str) -> bool:
    """Whether a push's process ("HOST PID", or '' for a push of before 2026-12-02) is one of this
    machine that has ended."""
    host, _, pid = by.rpartition(" ")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's
        pass
    return False


@dataclass
class _Push:
    """A push as its marker graph tells: stale (no progress for STALE_AFTER, or dead), dead (its process,
    on this machine, has ended: killed outright), and the graphs it names."""
    stale: bool
    dead: bool = False
    pushed: set[str] = field(default_factory=set)
    replaced: set[str] = field(default_factory=set)
    staged: set[str] = field(default_factory=set)


class _Transient(Exception):
    """An HTTP answer worth retrying (`status`: its code), with the start of its body (the server's reason)."""

    def __init__(self, status: int, reason: str, body: bytes) -> None:
        said = body[:300].decode("utf-8", "replace").strip()
        super().__init__(f"{status} {reason}{f': {said}' if said else ''}")
        self.status = status


class _Spool:
    """The quads of a load, split by graph: quads of graphs the store does not have are passed on
    (to stream into its bulk loader); quads of graphs it has (or, for a push, of every graph) go
    to one N-Triples file per graph, to be compared with the graph and swapped in as a whole."""

    def __init__(self, target: NamedNode | None, directory: Path) -> None:
        self.target, self.directory = target, directory
        self.count = 0
        self.fresh: set[str] = set()
        self.existing: dict[str, tuple[Any, list[int]]] = {}  # graph -> (N-Triples file, [triple count])
        self.seen: dict[str, set[int]] = {}  # for a push: hashes of the lines written per graph

    def split(self, quads: Iterable[Quad], store: OxStore | None, progress: bool,
              on_fresh: Callable[[str], None] | None = None) -> Iterator[Quad]:
        """Yield the quads of graphs `store` lacks, calling `on_fresh(graph)` before the first quad
        of each such graph; write the quads of the other graphs to their files. Without a store
        (a push) every graph gets a file. The spool keeps no reference to the store, which a
        rebuild must hold alone (`Store._rebuild`)."""
        from tqdm import tqdm

        try:
            for q in tqdm(quads, disable=not progress, desc="load", unit=" quads", mininterval=1.0):
                self.count += 1
                g = self.target or q.graph_name
                if not isinstance(g, NamedNode):
                    raise UserError("the store keeps data in named graphs only: give a graph to load triples into "
                                    "(--graph; from Python, the graph argument of load)")
                if g.value in self.fresh:
                    yield q if self.target is None else Quad(q.subject, q.predicate, q.object, g)
                    continue
                if g.value not in self.existing:
                    if _own(g):
                        raise UserError(f"graph name {g.value} is reserved for the store's own use")
                    if store is not None and not store.contains_named_graph(g):
                        if on_fresh is not None:
                            on_fresh(g.value)
                        self.fresh.add(g.value)
                        yield q if self.target is None else Quad(q.subject, q.predicate, q.object, g)
                        continue
                    path = self.directory / f"{len(self.existing)}.nt"
                    self.existing[g.value] = (open(path, "w", encoding="utf-8"), [0])
                if _legacy_quad(q):
                    raise _legacy_data(g.value)
                file, size = self.existing[g.value]
                line = _line(q)
                if store is None:  # a push counts distinct triples, as the server will
                    seen = self.seen.setdefault(g.value, set())
                    if hash(line) in seen:
                        continue
                    seen.add(hash(line))
                try:
                    file.write(line)
                except OSError as e:
                    raise _named(e, file.name) from None
                size[0] += 1
        finally:
            for file, _ in self.existing.values():
                try:
                    file.close()
                except OSError as e:  # its last write
                    raise _named(e, file.name) from None

    def write(self, quads: Iterable[Quad], progress: bool) -> int:
        """Write every quad to its graph's file (a push: no store, so no graph is passed on)."""
        for _ in self.split(quads, None, progress):  # nothing is yielded without a store
            pass
        return self.count

    def files(self) -> dict[str, tuple[Path, int]]:
        """The N-Triples file and triple count of each graph with a file of its own."""
        return {g: (Path(file.name), size[0]) for g, (file, size) in self.existing.items()}

    def changed(self, store: OxStore, prefix: str, progress: bool = False) -> dict[str, _Change]:
        """The existing graphs whose content differs from what the load brings, with the files
        (named `prefix` + graph number + .remove.nt / .add.nt) of the triples to remove from them
        and to add to them (see `_diff`)."""
        changes = {g: _diff(Path(file.name), NamedNode(g), store, f"{prefix}{i}", progress)
                   for i, (g, (file, _)) in enumerate(self.existing.items())}
        return {g: change for g, change in changes.items() if change is not None}


@dataclass(frozen=True)
class _Change:
    """How a graph changes: N-Triples files of the triples to remove (all in the graph) and of
    those to add (none in it), so that removing the added and adding the removed undoes it."""
    remove: Path
    add: Path


def _diff(path: Path, graph: NamedNode, store: OxStore, prefix: str, progress: bool) -> _Change | None:
    """What turns `graph` in `store` into the triples of the N-Triples file `path`, or None if
    nothing would change. Triples are compared by 128-bit keys (`_keys`) of their canonical form
    (`_canonical`), so memory holds 16 bytes per triple, not the triples."""
    from tqdm import tqdm

    canonical = Path(f"{prefix}.new.nt")
    parts = []
    with _writing(canonical) as out:
        for batch in _canonical(parse(path=str(path), format=RdfFormat.N_TRIPLES)):
            parts.append(_keys(batch))
            out.writelines(map(_line, batch))
    new_keys = np.concatenate(parts) if parts else np.empty(0, dtype="S16")
    del parts
    incoming = np.sort(new_keys)
    change = _Change(Path(f"{prefix}.remove.nt"), Path(f"{prefix}.add.nt"))
    kept = [np.empty(0, dtype="S16")]
    with _writing(change.remove) as out:
        quads = iter(tqdm(store.quads_for_pattern(None, None, None, graph), disable=not progress,
                          desc=f"compare {graph.value}", unit=" quads", mininterval=1.0))
        while batch := list(islice(quads, _BATCH)):
            keys = _keys(batch)
            at = np.minimum(np.searchsorted(incoming, keys), max(len(incoming) - 1, 0))
            there = incoming[at] == keys if len(incoming) else np.zeros(len(batch), dtype=bool)
            kept.append(keys[there])
            out.writelines(map(_line, compress(batch, ~there)))
        removed = out.tell() > 0
    del incoming
    to_add = ~np.isin(new_keys, np.concatenate(kept))
    with open(canonical, encoding="utf-8") as lines, _writing(change.add) as out:
        out.writelines(compress(lines, to_add))
    canonical.unlink()
    if not removed and not to_add.any():
        change.remove.unlink()
        change.add.unlink()
        return None
    return change


_BATCH = 65536  # quads per batch of `_diff`
_PLAIN = frozenset({NamedNode("http://www.w3.org/2001/XMLSchema#string"),
                    NamedNode("http://www.w3.org/1999/02/22-rdf-syntax-ns#langString")})


def _canonical(quads: Iterator[Quad]) -> Iterator[list[Quad]]:
    """Batches of quads with their typed literals in the store's canonical form (e.g.
    "25.0"^^xsd:decimal as "25"), which an in-memory store gives them; strings pass as they are."""
    while batch := list(islice(quads, _BATCH)):
        plain, typed = [], OxStore()
        for q in batch:
            if isinstance(q.object, Literal) and q.object.datatype not in _PLAIN:
                typed.add(q)
            else:
                plain.append(q)
        yield plain + list(typed)


def _line(q: Quad) -> str:
    """A quad's triple as an N-Triples line."""
    return f"{q.subject} {q.predicate} {q.object} .\n"


def _keys(quads: list[Quad]) -> np.ndarray:
    """A 128-bit key (numpy S16) per quad's triple, its graph left out: two independent 64-bit
    hashes, so two different triples share a key with a probability of about 2^-128."""
    keys = np.empty((len(quads), 2), dtype=np.int64)
    keys[:, 0] = np.fromiter((hash((q.subject, q.predicate, q.object)) for q in quads), dtype=np.int64, count=len(quads))
    keys[:, 1] = np.fromiter((hash(q.triple) for q in quads), dtype=np.int64, count=len(quads))
    return keys.view("S16").ravel()


def _unchanged(path: Path, graph: str, current: Iterable[Quad]) -> bool:
    """Whether an N-Triples file holds exactly the quads `current` has in `graph`. The file is read
    into an in-memory store first, so both sides have the store's canonical literal forms."""
    incoming = OxStore()
    incoming.bulk_load(path=str(path), format=RdfFormat.N_TRIPLES, to_graph=NamedNode(graph))
    return _fingerprint(incoming.quads_for_pattern(None, None, None, NamedNode(graph))) == _fingerprint(current)


def _fingerprint(quads: Iterable[Quad]) -> tuple[int, int]:
    """(count, sum of hashes mod 2^64) of a set of quads: equal sets give equal fingerprints."""
    count = total = 0
    for q in quads:
        count += 1
        total = (total + hash(q)) & 0xFFFFFFFFFFFFFFFF
    return count, total


def _legacy_data(graph: str) -> UserError:
    """Loading data in a format of before 2026-12-03 would make the store one to upgrade."""
    return UserError(f"the data for graph {graph} is in a format of filtag-kg before 2026-12-03, of {LEGACY_FORMAT}: "
                     "export the run again with this filtag-kg (or load it into a store of that version and "
                     "`filtag-kg upgrade` it)")


def _legacy_quad(q: Quad) -> bool:
    """Whether a quad is of a format of before 2026-12-03 (LEGACY_FORMAT)."""
    return q.predicate == LEGACY_TAG_LINK or (q.predicate == LEGACY_RUN_LINK and isinstance(q.object, NamedNode)
                                              and re.search(MINTED_RUN, q.object.value) is not None)


def _as_quads(data: Loadable) -> Iterable[Quad]:
    """Quads from quads, triples (in the default graph until routed) or an rdflib graph."""
    from ..records import TagSet

    if isinstance(data, TagSet):  # was an AttributeError ('Tag' object has no attribute 'subject')
        raise UserError("a TagSet is loaded as RDF: store.load(filtag_kg.kg.export.export_tags(tags))")
    if hasattr(data, "serialize") and hasattr(data, "triples"):  # rdflib Graph / Dataset
        quads = hasattr(data, "quads") and callable(data.quads) and type(data).__name__ in ("Dataset", "ConjunctiveGraph")
        text = data.serialize(format="nquads" if quads else "nt", encoding="utf-8")
        return parse(text, format=RdfFormat.N_QUADS if quads else RdfFormat.N_TRIPLES)
    return (q if isinstance(q, Quad) else Quad(q.subject, q.predicate, q.object, DefaultGraph()) for q in data)


def _own(graph: NamedNode) -> bool:
    """Whether a graph is one of the store's own: a load's commit markers, a load's or push's staging graphs."""
    return graph.value.startswith(STAGING) or graph == COMMITS


def _node(graph: NamedNode | str) -> NamedNode:
    return graph if isinstance(graph, NamedNode) else iri(str(graph), "graph or run")
