"""Backoff against a channel layer or a database that does not answer: 0.1 s,
doubling up to 2 s (tenacity), the same everywhere."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_delay,
    stop_never,
    wait_exponential,
)

__all__ = ["MAX_DELAY", "MIN_DELAY", "next_delay", "persist"]

R = TypeVar("R")

#: The first wait after a failure, and the longest (seconds).
MIN_DELAY: Final = 0.1
MAX_DELAY: Final = 2.0


def _wait() -> wait_exponential:
    return wait_exponential(multiplier=MIN_DELAY, max=MAX_DELAY)


def next_delay(delay: float | None) -> float:
    """The wait after ``delay`` (``None``: the first failure)."""
    return MIN_DELAY if delay is None else min(delay * 2, MAX_DELAY)


async def persist(
    call: Callable[[], Awaitable[R]],
    *,
    failing: tuple[type[BaseException], ...] = (Exception,),
    window: float | None = None,
    failed: Callable[[int, BaseException], None] | None = None,
    again: Callable[[], Awaitable[None]] | None = None,
) -> R:
    """``await call()`` until it returns, waiting with backoff after each of the
    ``failing`` exceptions; after ``window`` seconds (``None``: never), the last
    failure is raised. ``failed(attempt, error)`` is told of each failure before
    the wait; ``again()`` runs after the wait, before the next attempt."""

    def before_sleep(state: RetryCallState) -> None:
        if failed is not None and state.outcome is not None:
            error = state.outcome.exception()
            assert error is not None
            failed(state.attempt_number, error)

    async def before(state: RetryCallState) -> None:
        if again is not None and state.attempt_number > 1:
            await again()

    retrying = AsyncRetrying(
        retry=retry_if_exception_type(failing),
        wait=_wait(),
        stop=stop_never if window is None else stop_after_delay(window),
        before=before,
        before_sleep=before_sleep,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await call()
    raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover
