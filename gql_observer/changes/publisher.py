"""Sending change events to the channel layer from one event loop, in order,
batched and retried (:class:`Publisher`).

The writer (a request thread, a shell, a task runner) only hands the event to
a publisher (through :mod:`gql_observer.changes.outbox`), which sends it from
one event loop with one connection pool, batching whatever queued up
meanwhile (:class:`~gql_observer.changes.batching.Batcher`).
``async_to_sync(group_send)`` per save, as the peers do, builds an event loop
and a Redis connection every time.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from gql_observer.changes.batching import Batcher
from gql_observer.changes.events import CHANGES, ChangeBatch, ChangeEvent
from gql_observer.changes.groups import model_group
from gql_observer.changes.layers import ChannelLayer
from gql_observer.core.conf import Settings
from gql_observer.observe.registry import has_lists

__all__ = ["BATCH_LIMIT", "RETRY_LIMIT", "Publisher", "messages"]

logger = logging.getLogger(__name__)

#: Instances whose latest event may wait for a retry at once.
RETRY_LIMIT: Final = 10_000
#: Most change events in one channel-layer message.
BATCH_LIMIT: Final = 200

#: (group, message, the events it carries and when each first failed to go out).
Message = tuple[str, dict[str, Any], list[tuple[ChangeEvent, float | None]]]


class Publisher:
    """Sends events to the channel layer from one event loop, in the order they
    were submitted.

    The changes of a batch (the latest per instance) go out as one message per
    instance, or, for several instances of one model, as one message to the
    model's group (:func:`~gql_observer.changes.groups.model_group`), where
    every hub with a subscriber of that model listens.

    A send that fails or takes longer than ``PUBLISH_TIMEOUT`` never reaches
    the writer: the event is kept (the latest per instance, at most
    :data:`RETRY_LIMIT` instances) and sent again with backoff for
    ``PUBLISH_RETRY_WINDOW`` seconds, then given up and logged. The hubs
    resynchronise their subscribers when they get the layer back, so a
    given-up event costs latency, not the committed state.
    """

    __slots__ = (
        "_batcher",
        "_failing",
        "_layer",
        "_prefix",
        "_retry",
        "_retry_window",
        "_timeout",
        "dropped",
        "failed",
        "sent",
    )

    def __init__(
        self, layer: ChannelLayer, loop: asyncio.AbstractEventLoop, settings: Settings
    ) -> None:
        self._layer = layer
        self._prefix = settings.group_prefix
        self._timeout = settings.publish_timeout
        self._retry_window = settings.publish_retry_window
        self._batcher = Batcher(loop, settings.publish_batch_window, self._send_batch)
        # group -> (latest unsent event, when its first send failed)
        self._retry: dict[str, tuple[ChangeEvent, float]] = {}
        # Failed attempts since the last successful send (0: the layer is fine).
        self._failing = 0
        #: Messages handed to the channel layer so far (for tests and metrics).
        self.sent = 0
        #: Sends that failed or timed out (each is retried).
        self.failed = 0
        #: Events given up after the retry window or beyond :data:`RETRY_LIMIT`.
        self.dropped = 0

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._batcher.loop

    @property
    def layer(self) -> ChannelLayer:
        """The channel-layer instance this publisher sends with."""
        return self._layer

    @property
    def window(self) -> float:
        """The batching window now (seconds)."""
        return self._batcher.window

    def start(self) -> None:
        """Start sending; call from the publisher's own loop."""
        self._batcher.start("gql_observer.publisher")

    async def stop(self, timeout: float | None = None) -> None:
        """Send what is queued (for at most ``timeout`` seconds), then stop."""
        await self._batcher.stop(self._timeout if timeout is None else timeout)

    def submit(self, event: ChangeEvent) -> None:
        """Queue ``event``; safe from any thread, never blocks."""
        self._batcher.submit(event)

    def submit_many(self, events: list[ChangeEvent]) -> None:
        """Queue ``events`` in order; safe from any thread, never blocks."""
        self._batcher.submit_many(events)

    def wait_idle(self, timeout: float) -> bool:
        """Block (from another thread) until everything submitted was sent or given up."""
        return self._batcher.wait_idle(timeout)

    async def _send_batch(self, batch: list[ChangeEvent]) -> int:
        """Send ``batch`` and what waits for a retry; how many events wait now."""
        now = self.loop.time()
        # Retries first; a newer event of the same instance replaces its retry.
        merged: dict[str, tuple[ChangeEvent, float | None]] = dict(self._retry)
        self._retry.clear()
        for event in batch:
            merged.pop(event["group"], None)
            merged[event["group"]] = (event, None)
        failing = False
        for target, message, members in messages(merged, self._prefix):
            if not failing and await self._send(target, message, members[0][0]):
                continue
            # Once a send failed, the rest of the batch waits for the retry:
            # against an unreachable layer each would cost the timeout.
            failing = True
            for event, since in members:
                first = now if since is None else since
                if now - first >= self._retry_window:
                    self._give_up(event, f"retried for {now - first:.0f}s")
                else:
                    self._retry[event["group"]] = (event, first)
        while len(self._retry) > RETRY_LIMIT:
            oldest = next(iter(self._retry))
            self._give_up(self._retry.pop(oldest)[0], "too many instances waiting")
        return len(self._retry)

    def _give_up(self, event: ChangeEvent, why: str) -> None:
        self.dropped += 1
        logger.error(
            "Gave up publishing %s of %s %s (%s); its subscribers are resynchronised "
            "when their hub gets the channel layer back",
            event["action"],
            event["model"],
            event["pk"],
            why,
        )

    async def _send(self, group: str, message: dict[str, Any], event: ChangeEvent) -> bool:
        """Send ``message`` to ``group``; ``event`` (one it carries) names it in logs."""
        try:
            async with asyncio.timeout(self._timeout):
                await self._layer.group_send(group, message)
        except Exception:
            self.failed += 1
            self._failing += 1
            if self._failing == 1:
                # One traceback per outage, not one per save.
                logger.exception(
                    "Could not publish %s of %s %s; retrying with backoff",
                    event["action"],
                    event["model"],
                    event["pk"],
                )
            return False
        self.sent += 1
        if self._failing:
            logger.warning("Publishing works again after %d failed attempt(s)", self._failing)
            self._failing = 0
        return True


def messages(merged: dict[str, tuple[ChangeEvent, float | None]], prefix: str) -> list[Message]:
    """(group, message, the events it carries) for one batch: one message per
    model with several changed instances (to the model's group, at most
    :data:`BATCH_LIMIT` events each), one per instance otherwise (to the
    model's group too for a model with list fields)."""
    by_model: dict[str, list[tuple[ChangeEvent, float | None]]] = {}
    for event, since in merged.values():
        by_model.setdefault(event["model"], []).append((event, since))
    out: list[Message] = []
    for model, members in by_model.items():
        family = model_group(prefix, model)
        if len(members) == 1:
            event = members[0][0]
            # List subscribers of a model need each of its changes: they listen
            # in the model's group (so do the instance's subscribers).
            out.append((family if has_lists(model) else event["group"], dict(event), members))
            continue
        for start in range(0, len(members), BATCH_LIMIT):
            chunk = members[start : start + BATCH_LIMIT]
            batch: ChangeBatch = {"type": CHANGES, "events": [e for e, _ in chunk]}
            out.append((family, dict(batch), chunk))
    return out
