"""Counting the hops of coalesced calls to Django's thread
(:class:`gql_observer.core.calls.Calls`)."""

from __future__ import annotations

from typing import Any

import pytest

from gql_observer.core import calls

__all__ = ["count_hops"]


def count_hops(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that gets, for each hop made from now on (until the test ends),
    how many calls it made."""
    made: list[int] = []
    each = calls._each

    def counted(works: list[Any]) -> Any:
        made.append(len(works))
        return each(works)

    monkeypatch.setattr(calls, "_each", counted)
    return made
