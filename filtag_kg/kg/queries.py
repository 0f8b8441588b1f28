"""Bundled SPARQL queries and the runner that binds their parameters safely.

A query file (`queries/*.rq`, or any file) starts with a comment header::

    # title: Tags of a filter
    # description: The classes a filter is tagged with, in every run and selection.
    #   Continuation lines are indented.
    # param: layer (string): the layer's name, e.g. block5_conv3
    # param: run (iri, optional): restrict to one tagging run
    # param: n (integer, >= 1): how many top-ranked tags count
    # example: filtag-kg query filter-tags --param layer=block5_conv3 --param filter=7

A parameter `name` is the query variable `?name`. Values become RDF terms of the declared type and
are never pasted into the query text as given: they are serialized by pyoxigraph (IRIs validated,
literals escaped, so a string cannot close its literal) into a `VALUES` block that opens the WHERE
group, for the embedded and the remote store alike. Optional parameters left out (or given as None)
stay unbound. An IRI or literal given as such is taken as a value of the declared type too.
A number parameter may state its range after its type (`>= 1`, `> 0, <= 1`): a value outside is
refused with the parameter named, rather than answering with rows that mean nothing (a share of -1)
or none.
Queries are written against the union of the named graphs (see docs/graph-model.md).

Why not pyoxigraph's `substitutions` for the embedded store: in pyoxigraph 0.5.13 the planner does
not see substituted values (a filter's tags at VGG16 scale: 3 s with substitutions, 0.1 s with the
same values in a VALUES block), substituted variables read as unbound in BIND and BOUND, and a
substituted number is compared as a term (5 ≠ 5.0); one binding mechanism also gives both stores
the same answers.

Rule for query authors: a VALUES block joins with the WHERE group, so use parameters in triple
patterns and in FILTERs of the top-level group (or EXISTS), not in FILTERs of nested groups. With the
header line `# bind: sub-selects`, a sub-select that projects a parameter by name (`SELECT ?concept …`,
or `SELECT *`) and has no LIMIT or OFFSET gets a VALUES block of its own, opening its WHERE group, so
that it is evaluated for the value given rather than for all (and then joined).
"""

from __future__ import annotations

import csv
import io
import json
import math
import operator
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation, Overflow
from importlib import resources
from pathlib import Path
from typing import Any, Union
from urllib.parse import quote as percent_encoded

from pyoxigraph import (
    BlankNode,
    Literal,
    NamedNode,
    QueryBoolean,
    QuerySolutions,
    QueryTriples,
    Triple,
)

from ..errors import UserError
from ..imagenet import imagenet_index
from .vocab import FT, PREFIXES, RDFS, XSD

Term = Union[NamedNode, BlankNode, Literal, Triple]

PARAM_TYPES = ("iri", "string", "integer", "decimal", "double", "boolean")
# what a value of each type must look like, for the message when one cannot be converted
_EXPECTED = {
    "iri": "an absolute IRI, <IRI>, or a prefixed name such as ft:KBest",
    "string": "text",
    "integer": "a whole number in digits 0-9, e.g. 7",
    "decimal": "a decimal number in digits 0-9, e.g. 2.5",
    "double": "a finite number in digits 0-9, e.g. 0.5",  # not 0.67, which is not 2/3
    "boolean": "true or false",
}
FORMATS = ("table", "csv", "tsv", "json")

_HEADER = re.compile(r"^#\s?(\w+):\s*(.*)$")
_CONTINUATION = re.compile(r"^#\s{2,}(\S.*)$")
_WHERE = re.compile(r"(?<![\w?$:])WHERE(?![\w-])", re.IGNORECASE)
_IRIREF = re.compile(r"<[^<>\"{}|^`\\\x00-\x20]*>")
# numbers as SPARQL writes them: int(), Decimal() and float() also take "1_000", other scripts' digits
# ("١٢"), "nan" and "inf", which would bind a number nobody meant or one no FILTER compares with
_INTEGER = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
_PARAM = re.compile(r"^(\w+)\s*\(\s*(\w+)\s*(?:,\s*(required|optional)\s*)?((?:,[^,():]+)*)\)\s*:\s*(.+)$")
_BOUND = re.compile(r"\s*(<=|>=|<|>)\s*([+-]?[0-9]+(?:\.[0-9]+)?)\s*")
# where pyoxigraph's (and Oxigraph's server's) syntax errors say they are
_POSITION = re.compile(r"\bat (\d+):(\d+)")
_COMPARE = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}


@dataclass(frozen=True)
class Parameter:
    """A declared query parameter: the variable `?name`, its type, whether it must be given, and for a
    number the bounds of its range (operator, limit), each of which a value must meet."""

    name: str
    type: str
    required: bool
    description: str
    bounds: tuple[tuple[str, Decimal], ...] = ()

    @property
    def range_text(self) -> str:
        """The range in words ("> 0 and <= 1"); empty when there is none."""
        return " and ".join(f"{op} {limit}" for op, limit in self.bounds)

    def term(self, value: object) -> Term:
        """The RDF term for `value` (a string from the command line, a Python value, an IRI or literal).

        An IRI or literal given as such becomes a term of the declared type too, read from its text
        as a command-line value is (the integer 1 for a decimal parameter is the decimal 1: bound as
        it was, it matched no ft:selectionParameter); a language-tagged literal stays as it is for a
        string parameter. An IRI is taken for an IRI parameter only."""
        if isinstance(value, (BlankNode, Triple)):
            raise UserError(f"parameter {self.name!r}: a value must be an IRI or a literal, not {value}")
        if isinstance(value, NamedNode) and self.type == "iri":
            return value
        if isinstance(value, Literal) and value.language and self.type == "string":
            return value
        if isinstance(value, NamedNode) or (isinstance(value, Literal) and value.language):
            raise UserError(f"--param {self.name}={value}: expected {_EXPECTED[self.type]}")
        try:
            term = self._convert(value.value if isinstance(value, Literal) else value)
        except (ValueError, InvalidOperation, Overflow, TypeError) as e:
            # pyoxigraph names what is wrong with an IRI; a decimal's exponent can exceed Python's decimals
            why = f" ({e})" if self.type == "iri" else " (out of range)" if isinstance(e, Overflow) else ""
            raise UserError(f"--param {self.name}={value}: expected {_EXPECTED[self.type]}{why}") from None
        if not all(_COMPARE[op](Decimal(term.value), limit) for op, limit in self.bounds):
            raise UserError(f"--param {self.name}={value}: out of range; {self.name} must be {self.range_text}")
        return term

    def _convert(self, value: object) -> Term:
        if self.type == "string":
            return Literal(str(value))
        text = value.strip() if isinstance(value, str) else value
        if self.type == "iri":
            return NamedNode(expand_iri(str(text)))
        if self.type == "integer":
            if not ((isinstance(text, float) and text.is_integer()) or _INTEGER.fullmatch(str(text))):
                raise ValueError
            return Literal(int(text))  # type: ignore[call-overload]
        if self.type in ("decimal", "double") and not _NUMBER.fullmatch(str(text)):
            raise ValueError
        if self.type == "decimal":
            number = Decimal(str(text))
            # canonical form ("5.0" -> "5"), as oxigraph stores decimals, so triple patterns match
            return Literal(f"{number.normalize():f}", datatype=NamedNode(XSD + "decimal"))
        if self.type == "double":
            if not math.isfinite(double := float(text)):  # type: ignore[arg-type]
                raise ValueError  # "1e400"
            return Literal(double)
        if isinstance(text, bool):
            return Literal(text)
        if str(text).lower() not in ("true", "false", "1", "0"):
            raise ValueError
        return Literal(str(text).lower() in ("true", "1"))


def _bounds(text: str, name: str, type_: str, where: object) -> tuple[tuple[str, Decimal], ...]:
    """The bounds of a parameter line's range (", > 0, <= 1" after its type), for number types only."""
    parts = text.split(",")[1:]  # the text starts with the comma after the type
    if parts and type_ not in ("integer", "decimal", "double"):
        raise UserError(f"{where}: parameter {name!r} of type {type_} cannot have a range")
    bounds = []
    for part in parts:
        m = _BOUND.fullmatch(part)
        if not m:
            raise UserError(f"{where}: parameter {name!r} has a bad bound {part.strip()!r}; expected e.g. '>= 1' or '< 0.5'")
        bounds.append((m.group(1), Decimal(m.group(2))))
    return tuple(bounds)


def expand_iri(text: str) -> str:
    """An absolute IRI from `<iri>`, `iri`, or a prefixed name with a known prefix (e.g. `ft:KBest`)."""
    if text.startswith("<") and text.endswith(">"):
        return text[1:-1]
    prefix, sep, local = text.partition(":")
    if sep and prefix in PREFIXES and not local.startswith("//"):
        return PREFIXES[prefix] + local
    return text


@dataclass(frozen=True)
class Query:
    """One SPARQL query with its header: what it asks and which parameters it takes."""

    name: str
    title: str
    description: str
    parameters: tuple[Parameter, ...]
    example: str
    text: str
    path: Path | None = None
    bind_sub_selects: bool = False  # header `# bind: sub-selects` (`with_values`)

    @classmethod
    def parse(cls, text: str, name: str, path: Path | None = None) -> Query:
        """Read the header comment of a query; every declared parameter must occur as ?name in the body."""
        fields: dict[str, list[str]] = {}
        params: list[str] = []
        last: list[str] | None = None
        for line in text.splitlines():
            if not line.startswith("#"):
                if line.strip():
                    break
                continue
            cont = _CONTINUATION.match(line)
            head = _HEADER.match(line)
            if cont and last is not None:
                last[-1] += " " + cont.group(1).strip()
            elif head:
                key, value = head.group(1).lower(), head.group(2).strip()
                last = params if key == "param" else fields.setdefault(key, [])
                last.append(value)
            else:
                last = None
        where = path or name
        parameters: list[Parameter] = []
        for p in params:
            m = _PARAM.match(p)
            if not m:
                raise UserError(f"{where}: bad parameter line {p!r}; expected "
                                f"'name (type[, optional][, >= low][, <= high]): description'")
            pname, ptype, req, range_text, desc = m.groups()
            if ptype not in PARAM_TYPES:
                raise UserError(f"{where}: parameter {pname!r} has unknown type {ptype!r}; types: {', '.join(PARAM_TYPES)}")
            bounds = _bounds(range_text, pname, ptype, where)
            if not re.search(rf"[?$]{pname}\b", _strip_comments(text)):
                raise UserError(f"{where}: parameter {pname!r} is declared but ?{pname} does not occur in the query")
            parameters.append(Parameter(pname, ptype, req != "optional", desc.strip(), bounds))
        bind = " ".join(fields.get("bind", [])).strip()
        if bind not in ("", "sub-selects"):
            raise UserError(f"{where}: bad header line '# bind: {bind}'; the one choice is '# bind: sub-selects'")
        return cls(
            name=name,
            title=" ".join(fields.get("title", [name])),
            description=" ".join(fields.get("description", [])),
            parameters=tuple(parameters),
            example=" ".join(fields.get("example", [])),
            text=text,
            path=path,
            bind_sub_selects=bool(bind),
        )

    @property
    def label(self) -> str:
        """The query as messages name it: its file ("query file queries/x.rq"), or a bundled one by name."""
        return f"query file {self.path}" if self.path else f"query {self.name!r}"

    def bind(self, values: Mapping[str, object] | None = None) -> dict[str, Term]:
        """Check names and required parameters and convert the values to RDF terms (None: not given)."""
        try:
            values = dict(values or {})
        except (TypeError, ValueError):  # ['x']: "dictionary update sequence element #0 has length 1"
            raise UserError(f"the parameters of {self.label} are a mapping of names to values, e.g. "
                            f"{{'run': RUN_IRI}}; got {values!r}") from None
        declared = {p.name: p for p in self.parameters}
        unknown = sorted(str(n) for n in set(values) - set(declared))  # {1: …} failed in the join
        if unknown:
            have = ", ".join(declared) or "none"
            raise UserError(f"{self.label} has no parameter {', '.join(unknown)}; its parameters: {have}")
        values = {n: v for n, v in values.items() if v is not None}  # None: not given (run=args.run)
        missing = [p.name for p in self.parameters if p.required and p.name not in values]
        if missing:
            raise UserError(f"{self.label} needs --param {' --param '.join(m + '=…' for m in missing)}")
        return {n: declared[n].term(v) for n, v in values.items()}

    def with_values(self, bindings: Mapping[str, Term]) -> str:
        """The query text with `bindings` as a VALUES block opening its WHERE group, on the line of its
        brace, so that the lines of a syntax error's position are those of the query as written (on
        new lines, an error at line 5 of a file was reported at line 7). A query whose header says
        `# bind: sub-selects` gets one too opening the WHERE group of each sub-select that projects a
        parameter by name, with the parameters it projects. The outer block does not reach into a
        sub-select, whose variables are its own, so Oxigraph evaluated it for every value and joined
        after (`semantic-filters-under-concept`: every concept, 16 s); bound inside it gives the same
        rows, as a projected variable is a group key of the sub-select (or is not aggregated), and the
        outer block joins the same values again; but not in one with LIMIT or OFFSET, which would then
        cut other rows. Only on request: Oxigraph 0.5.13 plans some sub-selects worse so bound (the
        pairs' sub-select of `errors-confused-pairs` on the demo store: 0.11 s unbound, 1.07 s bound
        inside, which that query keeps unbound with a LIMIT of 10^9)."""
        if not bindings:
            return self.text
        blocks = self._values_blocks(bindings)
        if blocks[0][0] is None:
            return self.text + "\n" + blocks[0][1] + "\n"
        text = self.text
        for at, block in sorted(blocks, key=lambda b: -(b[0] or 0)):
            text = text[: at + 1] + block + text[at + 1 :]
        return text

    def _values_blocks(self, bindings: Mapping[str, Term]) -> list[tuple[int | None, str]]:
        """Where the VALUES blocks of `bindings` go (after the index of a WHERE brace; None: at the
        end) and their text: the query's own first, then its sub-selects' (`_sub_select_braces`)."""
        def block(names: Sequence[str]) -> str:
            return f" VALUES ({' '.join('?' + n for n in names)}) {{ ({' '.join(str(bindings[n]) for n in names)}) }} "

        at = _where_brace(self.text)
        blocks: list[tuple[int | None, str]] = [(at, block(list(bindings)))]
        if at is not None and self.bind_sub_selects:
            for brace, projected in _sub_select_braces(self.text):
                names = [n for n in bindings if n in projected or "*" in projected]
                if names:
                    blocks.append((brace, block(names)))
        return blocks

    def syntax_error(self, message: str, bindings: Mapping[str, Term]) -> UserError:
        """The error for pyoxigraph's or a server's syntax error `message` about the text `with_values`
        made: naming the query file, and its position ("error at LINE:COLUMN", COLUMN in bytes) moved
        back to the query as written where the VALUES block shifted it."""
        blocks = [(at, block) for at, block in self._values_blocks(bindings) if at is not None] if bindings else []

        def position(m: re.Match[str]) -> str:
            line, column = int(m.group(1)), int(m.group(2))
            for at, block in sorted(blocks, key=lambda b: b[0]):  # the blocks before it on its line, left to right
                brace_line = self.text.count("\n", 0, at) + 1
                brace_column = len(self.text[self.text.rfind("\n", 0, at) + 1 : at + 1].encode()) + 1
                if line == brace_line and column > brace_column:
                    column = max(brace_column, column - len(block.encode()))
            return f"at line {line}, column {column}"

        return UserError(f"{self.label} is not valid SPARQL: {_POSITION.sub(position, message, count=1)}")


def bundled_names() -> list[str]:
    """Names of the queries shipped with the package (`queries/*.rq`), sorted."""
    return sorted(f.name[:-3] for f in resources.files("filtag_kg.queries").iterdir() if f.name.endswith(".rq"))


def bundled() -> list[Query]:
    """All queries shipped with the package, by name (a malformed one raises UserError)."""
    return [load(name) for name in bundled_names()]


def load(name_or_path: str | Path) -> Query:
    """A bundled query by name (e.g. `filter-tags`), or a query file by path."""
    path = Path(name_or_path)
    if path.suffix == ".rq" or path.is_file():
        if not path.is_file():
            raise UserError(f"query file {path} does not exist")
        try:
            text = path.read_text(encoding="utf-8-sig")  # a byte-order mark would hide the header
        except UnicodeDecodeError as e:
            raise UserError(f"query file {path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
        return Query.parse(text, path.stem, path)
    name = str(name_or_path)
    bundled_file = resources.files("filtag_kg.queries") / f"{name}.rq"
    if "/" in name or not bundled_file.is_file():
        raise UserError(f"no bundled query {name!r}; bundled: {', '.join(bundled_names())} (or give a .rq file)")
    return Query.parse(bundled_file.read_text(encoding="utf-8"), name)


@dataclass
class Results:
    """Query results: a table of RDF terms (None = unbound), or the answer of an ASK query."""

    variables: list[str]
    rows: list[tuple[Term | None, ...]]
    boolean: bool | None = None

    @classmethod
    def of(cls, results: QuerySolutions | QueryBoolean | QueryTriples | list[Triple]) -> Results:
        """From pyoxigraph results (a remote store gives CONSTRUCT results as a list of triples)."""
        if isinstance(results, QueryBoolean):
            return cls([], [], bool(results))
        if isinstance(results, (QueryTriples, list)):
            return cls(["subject", "predicate", "object"], [(t.subject, t.predicate, t.object) for t in results])
        variables = [v.value for v in results.variables]
        return cls(variables, [tuple(s) for s in results])  # a solution iterates in the order of `variables`

    def __len__(self) -> int:
        return len(self.rows)

    def column(self, name: str) -> list[Term | None]:
        """The terms of one variable, a row each; an unknown name is a KeyError listing the variables
        (it was ValueError "'x' is not in list")."""
        if name not in self.variables:
            listed = ", ".join(self.variables) or "none (an ASK query's answer is `boolean`)"
            raise KeyError(f"no variable {name!r} in these results; variables: {listed}")
        i = self.variables.index(name)
        return [r[i] for r in self.rows]

    def values(self) -> list[dict[str, Any]]:
        """Rows as dicts of Python values (IRIs as strings, literals as int/float/str/bool)."""
        return [{v: python_value(t) for v, t in zip(self.variables, r)} for r in self.rows]

    def serialize(self, fmt: str = "table") -> str:
        """Text in one of FORMATS: an aligned table, or W3C SPARQL results CSV, TSV or JSON."""
        if fmt == "json":
            return json.dumps(self._json(), indent=1) + "\n"
        if self.boolean is not None:
            return {"csv": "_askResult\r\n{}\r\n", "tsv": "?_askResult\n{}\n"}.get(fmt, "{}\n").format(
                str(self.boolean).lower())
        if fmt == "csv":
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\r\n")
            writer.writerow(self.variables)
            writer.writerows([csv_cell(t) for t in r] for r in self.rows)
            return out.getvalue()
        if fmt == "tsv":
            lines = ["\t".join("?" + v for v in self.variables)]
            lines += ["\t".join("" if t is None else str(t) for t in r) for r in self.rows]
            return "\n".join(lines) + "\n"
        if fmt == "table":
            return _table(self.variables, [[_short(t) for t in r] for r in self.rows])
        raise UserError(f"unknown output format {fmt!r}; formats: {', '.join(FORMATS)}")

    def _json(self) -> dict[str, Any]:
        if self.boolean is not None:
            return {"head": {}, "boolean": self.boolean}
        bindings = [{v: _json_term(t) for v, t in zip(self.variables, r) if t is not None} for r in self.rows]
        return {"head": {"vars": self.variables}, "results": {"bindings": bindings}}


def run(query: Query | str | Path, store: Any, params: Mapping[str, object] | None = None) -> Results:
    """Run a query (a `Query`, a bundled name or a file) on a store with parameters bound as RDF terms.

    `store`: filtag_kg.kg.store's `Store` (embedded), its `RemoteStore`, or a `pyoxigraph.Store`.
    """
    from pyoxigraph import Store as OxStore

    from .store import RemoteStore, RemoteSyntaxError, Store

    if not isinstance(query, Query):
        query = load(query)
    bindings = query.bind(params)
    text = query.with_values(bindings)
    if isinstance(store, RemoteStore):
        try:
            return Results.of(store.query(text))
        except RemoteSyntaxError as e:  # its position, in the query as written, as from the embedded store
            raise query.syntax_error(e.said, bindings) from None
    if isinstance(store, Store):
        store = store.oxigraph
    if not isinstance(store, OxStore):
        raise TypeError(f"not a store the query runner knows: {type(store).__name__}")
    try:
        return Results.of(store.query(text, use_default_graph_as_union=not names_dataset(text)))
    except SyntaxError as e:
        raise query.syntax_error(str(e), bindings) from None
    except OSError as e:  # raised while the results are read, e.g. by a SERVICE call that fails
        raise UserError(f"{query.label} failed while running: {e}") from None


# XSD local names: xsd:integer and every type derived from it (xsd:byte, xsd:unsignedInt … read as text)
_INTEGER_TYPES = ("integer", "long", "int", "short", "byte", "nonNegativeInteger", "positiveInteger", "unsignedLong",
                  "unsignedInt", "unsignedShort", "unsignedByte", "nonPositiveInteger", "negativeInteger")
_FLOAT_TYPES = ("double", "float", "decimal")


def python_value(term: Term | None) -> Any:
    """A plain Python value for a term: IRIs as strings, numbers as int/float, booleans as bool."""
    if term is None:
        return None
    if not isinstance(term, Literal):
        return str(term.value) if isinstance(term, NamedNode) else str(term)
    dt = term.datatype.value[len(XSD):] if term.datatype.value.startswith(XSD) else ""
    if dt in _INTEGER_TYPES:
        return int(term.value)
    if dt in _FLOAT_TYPES:
        return float(term.value)
    if dt == "boolean":
        return term.value in ("true", "1")
    return term.value


def _where_brace(text: str) -> int | None:
    """Index of the '{' that opens the WHERE group (outside strings, IRIs and comments), or None."""
    depth = 0
    first: int | None = None
    i, n = 0, len(text)
    seen_where = False
    while i < n:
        c = text[i]
        if c == "#":
            i = text.find("\n", i)
            i = n if i < 0 else i
            continue
        if c in "'\"":
            quote = c * 3 if text.startswith(c * 3, i) else c
            j = i + len(quote)
            while j < n and not text.startswith(quote, j):
                j += 2 if text[j] == "\\" else 1
            i = j + len(quote)
            continue
        if c == "<":
            m = _IRIREF.match(text, i)
            if m:
                i = m.end()
                continue
        if c == "{":
            if depth == 0 and (seen_where or first is None):
                if seen_where:  # CONSTRUCT WHERE { … } (no template) takes no VALUES inside: it goes after
                    return None if first is None and query_form(text) == "CONSTRUCT" else i
                first = i
            depth += 1
        elif c == "}":
            depth -= 1
        elif depth == 0 and _WHERE.match(text, i):
            seen_where = True
        i += 1
    return None if query_form(text) in ("CONSTRUCT", "DESCRIBE") else first


def _sub_select_braces(text: str) -> list[tuple[int, set[str]]]:
    """The sub-selects of a query: the index of the '{' opening each one's WHERE group and the
    variables it projects by name (`?x`, not `(… AS ?x)`, whose value the sub-select makes; `*`: all).
    A sub-select with LIMIT or OFFSET projects none here: bound inside, it would cut other rows."""
    plain = _NO_KEYWORDS.sub(lambda m: " " * len(m.group()), text)  # same indices, no keywords inside
    out = []
    for m in _SELECT.finditer(plain):
        if plain.count("{", 0, m.start()) == plain.count("}", 0, m.start()):
            continue  # the query's own SELECT
        brace = plain.find("{", m.end())
        if brace < 0:
            continue
        projection = plain[m.end():brace]
        depth, end = 0, brace
        while end < len(plain):  # the '}' closing its WHERE group; then its modifiers, up to the next '}'
            depth += {"{": 1, "}": -1}.get(plain[end], 0)
            if depth == 0:
                break
            end += 1
        close = plain.find("}", end + 1)
        if _LIMIT_OR_OFFSET.search(plain, end + 1, close if close >= 0 else len(plain)):
            continue
        while "(" in projection:  # expressions, innermost first
            stripped = re.sub(r"\([^()]*\)", " ", projection)
            if stripped == projection:
                break
            projection = stripped
        out.append((brace, {"*"} if "*" in projection else set(re.findall(r"[?$](\w+)", projection))))
    return out


_SELECT = re.compile(r"(?<![\w:?$])SELECT(?![\w:-])", re.IGNORECASE)
_LIMIT_OR_OFFSET = re.compile(r"(?<![\w:?$])(LIMIT|OFFSET)(?![\w:-])", re.IGNORECASE)
# IRIs, strings (long ones first) and comments, where a word is no keyword
_NO_KEYWORDS = re.compile("|".join((
    r"""<[^<>"{}|^`\\\s]*>""",
    r'"""(?:[^"\\]|\\.|"(?!""))*"""', r"'''(?:[^'\\]|\\.|'(?!''))*'''",
    r'"(?:[^"\\\n]|\\.)*"', r"'(?:[^'\\\n]|\\.)*'", r"#[^\n]*")))


def query_form(text: str) -> str:
    """SELECT, ASK, CONSTRUCT or DESCRIBE ('' if none): the first such keyword outside IRIs, strings,
    comments and prefixed names (a comment saying 'describes' or a prefix `describe:` is no query form)."""
    m = re.search(r"(?<![\w:?$])(SELECT|ASK|CONSTRUCT|DESCRIBE)(?![\w:])", _NO_KEYWORDS.sub(" ", text), re.IGNORECASE)
    return m.group(1).upper() if m else ""


def names_dataset(sparql: str) -> bool:
    """Whether a query names its dataset by FROM or FROM NAMED, which then replaces the union default
    graph (pyoxigraph's union option, like the protocol's dataset, would override it). The keyword
    stands nowhere else in a query: it is looked for outside IRIs, strings, comments and names."""
    return _DATASET_CLAUSE.search(_NO_KEYWORDS.sub(" ", sparql)) is not None


_DATASET_CLAUSE = re.compile(r"(?<![\w:?$@.\-\\%])FROM(?![\w:])", re.IGNORECASE)


def _strip_comments(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def csv_cell(term: Term | None) -> str:
    """A term as a cell of SPARQL 1.1 CSV results: its bare value (a blank node as _:label, unbound empty)."""
    if term is None:
        return ""
    if isinstance(term, BlankNode):
        return f"_:{term.value}"
    if isinstance(term, (NamedNode, Literal)):
        return term.value
    return str(term)


def _json_term(term: Term) -> dict[str, Any]:
    if isinstance(term, NamedNode):
        return {"type": "uri", "value": term.value}
    if isinstance(term, BlankNode):
        return {"type": "bnode", "value": term.value}
    if isinstance(term, Literal):
        out: dict[str, Any] = {"type": "literal", "value": term.value}
        if term.language:
            out["xml:lang"] = term.language
        elif term.datatype.value != XSD + "string":
            out["datatype"] = term.datatype.value
        return out
    return {"type": "triple", "value": {
        "subject": _json_term(term.subject), "predicate": _json_term(term.predicate), "object": _json_term(term.object),
    }}


def _short(term: Term | None) -> str:
    """A readable one-line cell: IRIs with known prefixes shortened; strings, numbers, booleans, dates
    and times by their lexical value; other literals as Turtle writes them ("hello"@en-gb,
    "2026"^^xsd:gYear), since their language or datatype tells what the value is (csv, as its W3C
    format says, drops both)."""
    if term is None:
        return ""
    if isinstance(term, NamedNode):
        return _prefixed(term.value) or term.value
    if isinstance(term, Literal):
        if term.language:
            return f"{_quoted(term.value)}@{term.language}"
        if term.datatype.value in _BARE_DATATYPES:
            return term.value.translate(_CONTROL)
        return f"{_quoted(term.value)}^^{_prefixed(term.datatype.value) or str(term.datatype)}"
    return str(term)


def _prefixed(iri: str) -> str | None:
    """`prefix:local` for an IRI in a namespace of PREFIXES, else None."""
    for prefix, ns in PREFIXES.items():
        if iri.startswith(ns) and len(iri) > len(ns):
            return f"{prefix}:{iri[len(ns):]}"
    return None


def _quoted(text: str) -> str:
    """A string in double quotes with N-Triples escapes (quotes, backslashes, control characters)."""
    return str(Literal(text)).translate(_CONTROL)  # N-Triples leaves U+0080 … U+009F as they are


# control characters escaped as N-Triples does, so that a cell stays on its line and moves no cursor
_CONTROL = {c: f"\\u{c:04X}" for c in (*range(0x20), *range(0x7F, 0xA0))} | {
    ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"}
# the datatypes whose lexical value reads as what it is: strings, the numbers and booleans of python_value, dates, times
_BARE_DATATYPES = frozenset(XSD + name for name in (
    "string", "boolean", *_INTEGER_TYPES, *_FLOAT_TYPES, "date", "dateTime", "time"))


MAX_CELL = 100  # columns of a table cell; longer ones are cut (the whole value: --format csv, tsv or json)


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """An aligned table, a row a line. A cell over MAX_CELL columns is cut short and the table says so:
    at ImageNet scale a GROUP_CONCAT of an image's counted classes (coarse-image-explanation) held
    thousands of wnids, and padding every row to it made 1,863 lines of 11,202 columns each."""
    rows = [[_cut(c) for c in r] for r in rows]
    cut = any(c.endswith(_CUT) for r in rows for c in r)
    widths = [max([_width(h), *(_width(r[i]) for r in rows)]) for i, h in enumerate(header)]
    lines = ["  ".join(_pad(h, w) for h, w in zip(header, widths)).rstrip(), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(_pad(c, w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''}"
                 + (f"; cells over {MAX_CELL} columns cut short, ending in {_CUT.strip()!r}: --format csv, tsv or json "
                    "gives them whole)" if cut else ")"))
    return "\n".join(lines) + "\n"


_CUT = " …"


def _cut(text: str) -> str:
    """`text`, or its first columns and _CUT when it takes over MAX_CELL columns."""
    if _width(text) <= MAX_CELL:
        return text
    kept, width = [], 0
    for c in text:
        width += _width(c)
        if width > MAX_CELL - _width(_CUT):
            break
        kept.append(c)
    return "".join(kept) + _CUT


def _width(text: str) -> int:
    """The columns a text takes in a terminal: none for a combining mark (the 'ë' of 'Zoe\u0308'), two
    for a wide or full-width character ('犬'); len() counted one for each and shifted the columns."""
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _pad(text: str, width: int) -> str:
    """`text` with spaces after it up to `width` columns."""
    return text + " " * (width - _width(text))


def unmatched_parameters(query: Query | str | Path, store: Any, params: Mapping[str, object]) -> list[str]:
    """Notes for an empty answer: each parameter given whose value is nowhere in the store, an IRI in
    no triple, a text labelling nothing (with the labels of classes, layers and selections close to
    it). A mistyped class ('doge', 'Dog') or concept (wn:99999999-n) answered "(0 rows)" just as a
    class the network never confused, or a concept with no filter under it, does."""
    import difflib

    if not isinstance(query, Query):
        query = load(query)
    notes: list[str] = []
    labels: list[str] | None = None  # those of classes, layers and selections, read once when first needed
    for p in query.parameters:
        value = params.get(p.name)
        if value is None or p.type not in ("iri", "string"):
            continue
        term = p.term(value)
        if p.type == "iri":
            if not run(_USED, store, {"node": term}).boolean:
                encoded = _encoded_twin(term, store)
                notes.append(f"{term} is in no triple of the store (--param {p.name})"
                             + (f"; did you mean <{encoded.value}>?" if encoded else ""))
            continue
        if run(_LABELLED, store, {"label": term}).boolean:
            continue
        if labels is None:
            labels = [v.value for v in run(_LABELS, store).column("label") if v is not None]
        close = [label for label in labels if label.casefold() == term.value.casefold()]
        close += [label for label in difflib.get_close_matches(term.value, labels, n=3) if label not in close]
        wnids = [w for w in _imagenet_wnids_named(term.value) if w in labels]
        notes.append(f"no node in the store is labelled {term.value!r} (--param {p.name})"
                     + (f"; ImageNet's {term.value!r} is labelled {' or '.join(wnids)} here" if wnids else "")
                     + (f"; close: {', '.join(repr(c) for c in close[:3])}" if close else ""))
    return notes


def _imagenet_wnids_named(text: str) -> list[str]:
    """The wnids of the ImageNet-1k classes `text` names (a Keras label such as 'German_shepherd', or one of
    the names, 'Alsatian'; case aside): a run on a folder of wnid sub-folders labels its classes by wnid,
    so `--param class=Chihuahua` found nothing and no label close to it."""
    index, wanted = imagenet_index(), text.strip().casefold()
    return [wnid for wnid, label, names in zip(index.wnids, index.keras_labels, index.names)
            if wanted in {label.casefold(), *(n.casefold() for n in names)}]


def _encoded_twin(term: NamedNode, store: Any) -> NamedNode | None:
    """The node of the store whose IRI is `term` with a '/' of its last segments percent-encoded, as
    IRIs are minted (`vocab._segment`): an ImageNet image's id is 'n01440764/x.png', so its node ends
    in `n01440764%2Fx.png`, and the IRI typed from the id was only said to be in no triple."""
    parts = term.value.split("/")
    prefix, segments = "/".join(parts[:3]), parts[3:]  # 'scheme://host', then the path's segments
    for cut in range(len(segments) - 2, 0, -1):
        last = percent_encoded("/".join(segments[cut:]), safe="._~-%")
        candidate = NamedNode("/".join([prefix, *segments[:cut], last]))
        if run(_USED, store, {"node": candidate}).boolean:
            return candidate
    return None


_USED = Query.parse("# param: node (iri): a node\nASK { { ?node ?p ?o } UNION { ?s ?p ?node } }", "used")
_LABELLED = Query.parse(f"# param: label (string): a label\nASK {{ ?node <{RDFS}label> ?label }}", "labelled")
_LABELS = Query.parse(  # of classes, layers (through their summaries) and selections
    f"SELECT DISTINCT ?label WHERE {{ {{ ?node a <{FT}ImageClass> }} UNION {{ ?summary <{FT}summaryOf> ?node }} "
    f"UNION {{ ?node <{FT}ofRun> ?run }} ?node <{RDFS}label> ?label }}", "labels")
