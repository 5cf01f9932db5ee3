"""Filters decided in Python on a row already read, exactly as the database
would decide them, or not at all.

A filter's ``Q`` is resolved by Django into a WHERE tree; each leaf is compiled
by the connection's own compiler, and the SQL it produces must be one of a few
pinned forms on a column of the row's own table (no join):

======================  ==========================================================
form                    decided as
======================  ==========================================================
``c = %s``              equality (text: byte for byte, as both SQLite's BINARY and
                        PostgreSQL's deterministic collations compare)
``c IN (%s, …)``        membership
``c IS [NOT] NULL``     never unknown
``c`` / ``NOT c``       a boolean column (``flag: {exact: true}``)
``c < %s`` …, BETWEEN   integers; text on SQLite only (BINARY is code point order;
                        PostgreSQL orders text by its collation)
``c LIKE %s ESCAPE``    SQLite: ``%``, ``_`` and ``\\`` escapes; ASCII letters
                        case-folded (SQLite's LIKE, hence Django's ``contains`` too),
                        the value and pattern cut at a NUL as SQLite's LIKE reads them
``c::text LIKE %s``     PostgreSQL: case-sensitive, ``\\`` escapes
======================  ==========================================================

on Django's own text, integer and boolean fields (no ``db_collation``, no
conversion between the database value and the attribute) with parameters of the
column's Python type. NULL follows SQL's three-valued logic; a branch Django
proved empty or full while compiling (``in: []``, an integer out of the column's
range, an empty ``NOT {}``) is decided as Django compiled it: each node is
folded exactly as ``WhereNode.as_sql`` folds it. Anything else — a join,
PostgreSQL's ``UPPER(…)`` of the case-insensitive lookups (its case mapping
follows the database's locale), regular expressions, dates, a SQLite built with
its own LIKE — is no verdict here, and the caller evaluates the whole filter in
SQL.
"""

from __future__ import annotations

import re
import sqlite3
import weakref
from collections.abc import Callable
from functools import cache
from typing import Any, Final

from django.core.exceptions import EmptyResultSet, FullResultSet
from django.db import connections
from django.db.models import (
    AutoField,
    BigAutoField,
    BigIntegerField,
    BooleanField,
    CharField,
    EmailField,
    Field,
    ForeignKey,
    IntegerField,
    Model,
    PositiveBigIntegerField,
    PositiveIntegerField,
    PositiveSmallIntegerField,
    Q,
    QuerySet,
    SlugField,
    SmallAutoField,
    SmallIntegerField,
    TextField,
    URLField,
)
from django.db.models.expressions import Col
from django.db.models.lookups import Lookup
from django.db.models.sql.compiler import SQLCompiler
from django.db.models.sql.where import AND, OR, WhereNode

from gql_observer.graphql.filter_index import (
    ASCII_LOWER,
    Hint,
    both,
    either,
    folded,
)

__all__ = ["EVERYTHING", "NOTHING", "Verdict", "hint", "verdict"]

#: Whether a row matches: ``True``, ``False`` or ``None`` (SQL's unknown: no match).
Verdict = Callable[[Model], bool | None]

TEXT: Final = frozenset({CharField, TextField, EmailField, SlugField, URLField})
INTEGER: Final = frozenset(
    {
        AutoField,
        BigAutoField,
        SmallAutoField,
        IntegerField,
        BigIntegerField,
        SmallIntegerField,
        PositiveIntegerField,
        PositiveBigIntegerField,
        PositiveSmallIntegerField,
    }
)
#: Integers every backend binds as such (sqlite3 refuses larger ones).
INT_RANGE: Final = range(-(2**63), 2**63)
#: SQLite's default SQLITE_LIMIT_LIKE_PATTERN_LENGTH: a longer pattern is an error there.
LIKE_LIMIT: Final = 50_000


def EVERYTHING(row: Model) -> bool:
    """The verdict of a filter Django compiles to no condition at all."""
    return True


def NOTHING(row: Model) -> bool:
    """The verdict of a filter Django proved matches nothing."""
    return False


#: The hints of verdicts that have one (:mod:`gql_observer.graphql.filter_index`).
_HINTS: weakref.WeakKeyDictionary[Verdict, frozenset[tuple[str, str, Any]]]
_HINTS = weakref.WeakKeyDictionary()
_HINTS[NOTHING] = frozenset()  # no row


def hint(verdict: Verdict) -> Hint:
    """Keys of which every row ``verdict`` matches holds one (``None``: unknown)."""
    return _HINTS.get(verdict)


def _hinted(verdict: Verdict, keys: Hint) -> Verdict:
    if keys is not None:
        _HINTS[verdict] = keys
    return verdict


class Unsupported(Exception):
    """A part of the filter that is not one of the pinned forms."""


class _Full(Exception):
    pass


class _Empty(Exception):
    pass


@cache
def _sqlite_like_folds_ascii_only() -> bool:
    """Whether this process's SQLite has the stock LIKE (no ICU): ASCII letters
    alone are case-folded."""
    probe = sqlite3.connect(":memory:")
    try:
        row = probe.execute("SELECT 'a' LIKE 'A', 'é' LIKE 'É', 'ß' LIKE 'SS'").fetchone()
    finally:
        probe.close()
    return tuple(row) == (1, 0, 0)


def verdict(model: type[Model], q: Q, using: str) -> Verdict | None:
    """Whether a row of ``model`` (read whole, from its own table) matches
    ``filter(q)`` on the database ``using``, decided in Python; ``None`` when
    some part of ``q`` is not one of the pinned forms."""
    connection = connections[using]
    if connection.vendor not in ("sqlite", "postgresql"):
        return None
    query = QuerySet(model=model, using=using).filter(q).query
    if len(query.alias_map) > 1:
        return None  # a join: a related row decides
    compiler = query.get_compiler(using=using)
    try:
        return _node(query.where, compiler, query.get_initial_alias())
    except _Full:
        return EVERYTHING
    except _Empty:
        return NOTHING
    except Unsupported:
        return None


def _node(node: Any, compiler: SQLCompiler, alias: str) -> Verdict:
    """``node``'s verdict; raises :class:`_Full` or :class:`_Empty` where Django's
    compiler raises FullResultSet or EmptyResultSet (WhereNode.as_sql's folding)."""
    if isinstance(node, Lookup):
        return _leaf(node, compiler, alias)
    if not isinstance(node, WhereNode) or node.connector not in (AND, OR):
        raise Unsupported(type(node).__name__)
    if node.connector == AND:
        full_needed, empty_needed = len(node.children), 1
    else:
        full_needed, empty_needed = 1, len(node.children)
    parts: list[Verdict] = []
    for child in node.children:
        try:
            parts.append(_node(child, compiler, alias))
        except _Empty:
            empty_needed -= 1
        except _Full:
            full_needed -= 1
        if empty_needed == 0:
            raise _Full if node.negated else _Empty
        if full_needed == 0:
            raise _Empty if node.negated else _Full
    if not parts:
        raise _Full  # as Django: no condition at all, negated or not
    combined = _connected(parts, deciding=node.connector == OR)
    return _not(combined) if node.negated else combined


def _connected(parts: list[Verdict], deciding: bool) -> Verdict:
    """SQL's three-valued AND (``deciding`` False) or OR (True) of ``parts``:
    the first part that gives ``deciding`` decides; else NULL if any part is
    NULL; else the other truth value."""
    if len(parts) == 1:
        return parts[0]
    hints = [hint(part) for part in parts]

    def connected(row: Model) -> bool | None:
        result: bool | None = not deciding
        for part in parts:
            value = part(row)
            if value is deciding:
                return deciding
            if value is None:
                result = None
        return result

    return _hinted(connected, either(hints) if deciding else both(hints))


def _not(part: Verdict) -> Verdict:
    def not_(row: Model) -> bool | None:
        value = part(row)
        return None if value is None else not value

    return not_


def _kind(field: Field[Any, Any]) -> str:
    """``text``, ``int`` or ``bool`` for a field decided here; raises otherwise."""
    if type(field) is ForeignKey:
        target = field.target_field
        if type(target) in TEXT | INTEGER:
            return _kind(target)
        raise Unsupported("a foreign key to another kind of column")
    if type(field) in TEXT and getattr(field, "db_collation", None) is None:
        return "text"
    if type(field) in INTEGER:
        return "int"
    if type(field) is BooleanField:
        return "bool"
    raise Unsupported(type(field).__name__)


def _param(kind: str, value: object) -> object:
    """``value`` when it has the column's Python type; raises otherwise."""
    if kind == "text" and type(value) is str:
        return value
    if kind == "int" and type(value) is int and value in INT_RANGE:
        return value
    if kind == "bool" and type(value) is bool:
        return value
    raise Unsupported(f"a {type(value).__name__} parameter for a {kind} column")


def _leaf(lookup: Lookup[Any], compiler: SQLCompiler, alias: str) -> Verdict:
    lhs = lookup.lhs
    if type(lhs) is not Col or lhs.alias != alias:
        raise Unsupported("not a column of the row's table")
    field = lhs.target
    kind = _kind(field)
    attname = field.attname
    connection = compiler.connection
    try:
        sql, params = compiler.compile(lookup)
    except EmptyResultSet:
        raise _Empty from None
    except FullResultSet:
        raise _Full from None
    column, column_params = compiler.compile(lhs)
    if kind == "bool" and not params and sql == f"NOT {column}":
        return lambda row: None if (value := row.__dict__[attname]) is None else not value
    if column_params or not sql.startswith(column):
        # PostgreSQL's UPPER("t"."c"::text) = UPPER(%s), and anything else.
        raise Unsupported(sql)
    rest = sql[len(column) :]
    values = [_param(kind, value) for value in params]
    vendor = connection.vendor

    def get(row: Model) -> Any:
        return row.__dict__[attname]

    if rest == " = %s" and len(values) == 1:
        return _hinted(_equal(get, values[0]), frozenset({(attname, "eq", values[0])}))
    if rest == " IN (" + ", ".join(["%s"] * len(values)) + ")" and values:
        keys = frozenset((attname, "eq", value) for value in values)
        return _hinted(_member(get, frozenset(values)), keys)
    if rest == " IS NULL" and not values:
        return lambda row: get(row) is None
    if rest == " IS NOT NULL" and not values:
        return lambda row: get(row) is not None
    if rest == "" and not values and kind == "bool":
        return lambda row: None if (value := get(row)) is None else bool(value)
    ordered = kind == "int" or (kind == "text" and vendor == "sqlite")
    if ordered and rest in _ORDER and len(values) == 1:
        return _order(get, _ORDER[rest], values[0])
    if ordered and rest == " BETWEEN %s AND %s" and len(values) == 2:
        return _between(get, values[0], values[1])
    if kind == "text" and len(values) == 1:
        pattern = values[0]
        assert isinstance(pattern, str)
        if (
            vendor == "sqlite"
            and rest == " LIKE %s ESCAPE '\\'"
            and _sqlite_like_folds_ascii_only()
            and not connection.settings_dict.get("OPTIONS", {}).get("init_command")
        ):
            return _like(get, attname, pattern, sqlite=True)
        if vendor == "postgresql" and rest == "::text LIKE %s":
            return _like(get, attname, pattern, sqlite=False)
    raise Unsupported(sql)


def _equal(get: Callable[[Model], Any], expected: object) -> Verdict:
    def equal(row: Model) -> bool | None:
        value = get(row)
        return None if value is None else value == expected

    return equal


def _member(get: Callable[[Model], Any], expected: frozenset[object]) -> Verdict:
    def member(row: Model) -> bool | None:
        value = get(row)
        return None if value is None else value in expected

    return member


_ORDER: Final[dict[str, Callable[[Any, Any], bool]]] = {
    " < %s": lambda a, b: a < b,
    " <= %s": lambda a, b: a <= b,
    " > %s": lambda a, b: a > b,
    " >= %s": lambda a, b: a >= b,
}


def _order(get: Callable[[Model], Any], compare: Callable[[Any, Any], bool], bound: Any) -> Verdict:
    def order(row: Model) -> bool | None:
        value = get(row)
        return None if value is None else compare(value, bound)

    return order


def _between(get: Callable[[Model], Any], low: Any, high: Any) -> Verdict:
    def between(row: Model) -> bool | None:
        value = get(row)
        return None if value is None else low <= value <= high

    return between


def _like(get: Callable[[Model], Any], attname: str, pattern: str, *, sqlite: bool) -> Verdict:
    """SQL's LIKE with ``\\`` as the escape; on SQLite ASCII letters match either
    case and the value and the pattern end at a NUL (SQLite reads both as C
    strings)."""
    if sqlite:
        pattern = pattern.split("\0", 1)[0]
    if len(pattern.encode()) > LIKE_LIMIT:
        raise Unsupported("a LIKE pattern SQLite refuses")
    if sqlite:
        pattern = pattern.translate(ASCII_LOWER)
    regex: list[str] = []
    prefix = ""  # the literal start, which every text the pattern matches starts with
    chars = iter(pattern)
    for char in chars:
        if char in "%_":
            regex.append(".*" if char == "%" else ".")
            continue
        if char == "\\":
            escaped = next(chars, None)
            if escaped is None:
                raise Unsupported("a LIKE pattern ending with its escape")
            char = escaped
        if len(prefix) == len(regex):  # no wildcard yet
            prefix += char
        regex.append(re.escape(char))
    match = re.compile("".join(regex), re.DOTALL).fullmatch

    def like(row: Model) -> bool | None:
        value = get(row)
        if value is None:
            return None
        return match(folded(value) if sqlite else value) is not None

    return _hinted(
        like, frozenset({(attname, "fold" if sqlite else "prefix", prefix)}) if prefix else None
    )
