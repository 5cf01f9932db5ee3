"""Coalesced reads (:class:`gql_observer.graphql.reads.Batch`) and calls
(:class:`~gql_observer.core.calls.Calls`): what several asks share is one
query or one hop to Django's thread, but a failure is only the failing ask's own."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from django.db import OperationalError

from gql_observer.core.conf import get_settings
from gql_observer.graphql.reads import Reads
from tests.support.hops import count_hops
from tests.support.waiting import wait_until


def _reads_of(calls: list[list[str]], retry_window: float = 30.0) -> tuple[Reads, Any]:
    """A ``Reads`` and one kind of read on it whose fetch records each call and
    fails when it is asked for "bad" (as a database refusing a value would) or
    for "down" (as a database out of reach would)."""

    def fetch(values: list[str], plan: object) -> dict[str, str]:
        calls.append(list(values))
        if "bad" in values:
            raise ValueError("the database refused 'bad'")
        if "down" in values:
            raise OperationalError("connection refused")
        return {value: value.upper() for value in values}

    reads = Reads(get_settings().replace(read_retry_window=retry_window))
    return reads, lambda: reads.batch(("test",), lambda: fetch, "test values")


async def test_asks_of_one_kind_share_one_read() -> None:
    calls: list[list[str]] = []
    reads, batch = _reads_of(calls)
    answers = await asyncio.gather(batch().ask("a"), batch().ask_all(["b", "c"]))
    assert answers == ["A", {"b": "B", "c": "C"}]
    assert calls == [["a", "b", "c"]]
    await wait_until(lambda: len(reads) == 0, 5, "the kind gone once nothing is left to read")


async def test_an_ask_that_fails_the_shared_read_fails_alone() -> None:
    """One client's value that the database refuses must not fail the others'
    reads coalesced with it: they are read again, each alone."""
    calls: list[list[str]] = []
    reads, batch = _reads_of(calls)
    outcomes = await asyncio.gather(
        batch().ask("a"),
        batch().ask("bad"),
        batch().ask_all(["b", "c"]),
        return_exceptions=True,
    )
    assert outcomes[0] == "A" and outcomes[2] == {"b": "B", "c": "C"}
    assert isinstance(outcomes[1], ValueError)
    assert calls == [["a", "bad", "b", "c"], ["a"], ["bad"], ["b", "c"]]
    # A failure with nobody beside it is not read again.
    with pytest.raises(ValueError, match="refused"):
        await batch().ask("bad")
    assert calls[-1] == ["bad"] and len(calls) == 5
    await wait_until(lambda: len(reads) == 0, 5, "the kind gone once nothing is left to read")


async def test_a_database_out_of_reach_fails_everybody_once() -> None:
    """A read that still cannot reach the database after ``READ_RETRY_WINDOW``
    is everybody's failure: the asks are not read again one by one (each would
    wait out the window again)."""
    calls: list[list[str]] = []
    reads, batch = _reads_of(calls, retry_window=0.3)
    outcomes = await asyncio.gather(batch().ask("a"), batch().ask("down"), return_exceptions=True)
    assert all(isinstance(outcome, OperationalError) for outcome in outcomes)
    assert calls and all(call == ["a", "down"] for call in calls)  # retried together only
    await wait_until(lambda: len(reads) == 0, 5, "the kind gone once nothing is left to read")


async def test_calls_of_one_kind_share_one_hop_and_each_fails_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Calls on Django's thread (:class:`gql_observer.core.calls.Calls`):
    those asked together are made in one hop, a failing one fails alone, and
    one the database was out of reach for is made again (only it)."""
    hops = count_hops(monkeypatch)
    reads = Reads(get_settings().replace(read_retry_window=30.0))
    made: list[str] = []
    out_of_reach = [2]  # the "down" call fails this many times, then works

    def call(name: str) -> Any:
        def work() -> str:
            made.append(name)
            if name == "bad":
                raise ValueError("a bug in a permission hook")
            if name == "down" and out_of_reach[0]:
                out_of_reach[0] -= 1
                raise OperationalError("connection refused")
            return name.upper()

        return reads.call(("verdicts",), "test values", work)

    outcomes = await asyncio.gather(
        call("a"), call("bad"), call("down"), call("b"), return_exceptions=True
    )
    assert outcomes[0] == "A" and outcomes[2] == "DOWN" and outcomes[3] == "B"
    assert isinstance(outcomes[1], ValueError)
    # One hop for all four, then the one out of reach alone, twice more.
    assert made == ["a", "bad", "down", "b", "down", "down"]
    assert hops == [4, 1, 1]
    await wait_until(lambda: len(reads) == 0, 5, "the kind gone once nothing is left to call")
