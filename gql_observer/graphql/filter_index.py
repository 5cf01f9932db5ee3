"""Which of many filters a row can match, without asking each of them.

A live list's group decides every changed row against every distinct filter of
its subscribers (:mod:`gql_observer.graphql.matching`); a filter's Python
verdict (:mod:`gql_observer.graphql.lookups`) costs a call per row and filter,
so a burst of a thousand rows against a hundred filters cost a hundred
thousand calls. Most filters name a value or a prefix the row must have: the
verdict also gives a *hint*, a set of keys of which a row it matches holds at
least one, and :class:`FilterIndex` looks the row's own values up in the hints
of all filters at once. Only the filters found, and those without a hint, are
asked; their verdicts decide as before, so the index only ever skips a filter
that would have said no.

A key is ``(attname, mode, value)``:

==========  ===================================================================
``eq``      the row's value equals ``value`` (``=`` and ``IN``)
``prefix``  the row's text starts with ``value`` (a LIKE pattern's literal
            start: PostgreSQL's case-sensitive LIKE)
``fold``    the same on the text cut at its first NUL and with ASCII letters
            lower-cased, as SQLite's LIKE reads it
==========  ===================================================================

A hint of ``None`` says nothing (the filter is always asked); an empty hint
says no row matches. ``OR`` unites its parts' hints (and has none if one part
has none), ``AND`` takes the smallest of its parts', ``NOT`` has none.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Any, Final

from django.db.models import Model

__all__ = ["ASCII_LOWER", "FilterIndex", "Hint", "both", "either", "folded"]

#: Keys of which a matching row holds one; ``None``: no such keys are known.
Hint = frozenset[tuple[str, str, Any]] | None

ASCII_LOWER: Final = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def folded(value: str) -> str:
    """``value`` as SQLite's LIKE compares it: up to its first NUL, ASCII
    letters lower-cased."""
    return value.split("\0", 1)[0].translate(ASCII_LOWER)


def either(hints: Iterable[Hint]) -> Hint:
    """The hint of an ``OR`` of parts with ``hints``."""
    keys: set[tuple[str, str, Any]] = set()
    for hint in hints:
        if hint is None:
            return None
        keys |= hint
    return frozenset(keys)


def both(hints: Iterable[Hint]) -> Hint:
    """The hint of an ``AND`` of parts with ``hints``: the one with fewest keys."""
    known = [hint for hint in hints if hint is not None]
    return min(known, key=len) if known else None


Entry = tuple[Hashable, Callable[[Model], Any]]


class FilterIndex:
    """The filters of one read (key, verdict, hint), by the keys of their hints."""

    __slots__ = ("_always", "_equal", "_prefix")

    def __init__(self, filters: Iterable[tuple[Hashable, Callable[[Model], Any], Hint]]) -> None:
        self._always: list[Entry] = []
        self._equal: dict[str, dict[Any, list[Entry]]] = {}
        # (attname, fold) -> (the distinct prefix lengths; entries by prefix)
        self._prefix: dict[tuple[str, bool], tuple[list[int], dict[str, list[Entry]]]] = {}
        for key, verdict, hint in filters:
            entry = (key, verdict)
            if hint is None:
                self._always.append(entry)
                continue
            for attname, mode, value in hint:
                if mode == "eq":
                    self._equal.setdefault(attname, {}).setdefault(value, []).append(entry)
                else:
                    lengths, by = self._prefix.setdefault((attname, mode == "fold"), ([], {}))
                    if len(value) not in lengths:
                        lengths.append(len(value))
                    by.setdefault(value, []).append(entry)

    def candidates(self, row: Model) -> Iterable[Entry]:
        """The filters ``row`` may match (each once): those whose hint holds one
        of the row's keys, and those without a hint."""
        values = row.__dict__
        found: dict[Hashable, Entry] = {}
        for attname, table in self._equal.items():
            value = values[attname]
            if value is not None:
                for entry in table.get(value, ()):
                    found[entry[0]] = entry
        for (attname, fold), (lengths, by) in self._prefix.items():
            value = values[attname]
            if not isinstance(value, str):
                continue
            if fold:
                value = folded(value)
            for length in lengths:
                if length <= len(value):
                    for entry in by.get(value[:length], ()):
                        found[entry[0]] = entry
        if not found:
            return self._always
        for entry in self._always:
            found[entry[0]] = entry
        return found.values()
