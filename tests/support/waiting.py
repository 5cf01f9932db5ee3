"""Waiting for what happens in another task, thread or process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["wait_until"]


async def wait_until(condition: Callable[[], object], timeout: float, what: str) -> float:
    """Poll ``condition`` every 50 ms until it holds; the seconds that took. Fails
    with ``what`` after ``timeout`` seconds."""
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - began
