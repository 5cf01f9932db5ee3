"""Sending change events to the channel layer, after the commit, in order.

The writer (a request thread, a shell, a task runner) only hands the event to
a :class:`Publisher`, which sends it from one event loop with one connection
pool, batching whatever queued up meanwhile. ``async_to_sync(group_send)`` per
save, as the peers do, builds an event loop and a Redis connection every time.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import logging
import os
import threading
from collections.abc import Callable
from typing import Any, Final

from channels.layers import InMemoryChannelLayer, channel_layers
from django.core.signals import setting_changed

from gql_observer.changes.events import CHANGES, ChangeBatch, ChangeEvent
from gql_observer.changes.groups import hub_capacity, model_group
from gql_observer.core.conf import channel_layer, get_settings

__all__ = [
    "RETRY_LIMIT",
    "WINDOW_GROWTH",
    "Publisher",
    "flush",
    "publish",
    "release_in_process_hub",
    "reset",
    "set_in_process_hub",
    "set_local_publisher",
]

logger = logging.getLogger(__name__)


class Publisher:
    """Sends events from one event loop, in the order they were submitted.

    Events queued while a send is in flight go out as one batch, merged per
    instance: the last action of an instance wins. Changes of several
    instances of one model in a batch go out as one message to the model's
    group (:func:`~gql_observer.groups.model_group`), where every hub with a
    subscriber of that model listens; a single change goes to its instance's
    group. After a quiet spell the first event is sent at once; after that a
    send starts at most once per window, so a burst of saves to many instances
    costs a message per window, not one per save. The window is
    ``batch_window`` seconds and doubles after every send that more changes
    were waiting behind, up to :data:`WINDOW_GROWTH` times ``batch_window``.

    A send that fails or takes longer than ``timeout`` never reaches the
    writer: the event is kept (the latest per instance, at most
    :data:`RETRY_LIMIT` instances) and sent again with backoff for
    ``retry_window`` seconds, then given up and logged. The hubs resynchronise
    their subscribers when they get the layer back, so a given-up event costs
    latency, not the committed state.
    """

    __slots__ = (
        "_batch_window",
        "_done",
        "_failing",
        "_inbox",
        "_layer",
        "_lingering",
        "_local",
        "_loop",
        "_pending",
        "_prefix",
        "_queue",
        "_retry",
        "_retry_window",
        "_task",
        "_timeout",
        "dropped",
        "failed",
        "sent",
        "window",
    )

    def __init__(
        self,
        layer: Any,
        loop: asyncio.AbstractEventLoop,
        timeout: float,
        retry_window: float = 30.0,
        local: Callable[[dict[str, Any]], None] | None = None,
        batch_window: float = 0.0,
    ) -> None:
        self._layer = layer
        self._batch_window = batch_window
        self._prefix = get_settings()["GROUP_PREFIX"]
        # The hub of this loop, for the in-memory layer: the layer would only
        # hand the event back to it, at a cost that grows with every group
        # (channels' InMemoryChannelLayer scans them all on each message).
        self._local = local
        self._loop = loop
        self._timeout = timeout
        self._retry_window = retry_window
        self._queue: asyncio.Queue[ChangeEvent] = asyncio.Queue()
        # Events from other threads. While the publisher lingers they wait
        # here without waking its loop (a wake-up per save costs the writer a
        # pipe write and the process a switch of threads); the loop takes them
        # when the window ends.
        self._inbox: collections.deque[ChangeEvent] = collections.deque()
        self._lingering = False
        # Submitted, or kept for a retry, and not yet handed to the layer;
        # guarded by ``_done``.
        self._pending = 0
        self._done = threading.Condition()
        self._task: asyncio.Task[None] | None = None
        # group -> (latest unsent event, when its first send failed)
        self._retry: dict[str, tuple[ChangeEvent, float]] = {}
        # Failed attempts since the last successful send (0: the layer is fine).
        self._failing = 0
        #: Messages handed to the channel layer so far (for tests and metrics).
        self.sent = 0
        #: Sends that failed or timed out (each is retried).
        self.failed = 0
        #: Events given up after ``retry_window`` or beyond :data:`RETRY_LIMIT`.
        self.dropped = 0
        #: The batching window now (seconds): ``batch_window``, or more during a burst.
        self.window = batch_window

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def start(self) -> None:
        """Start the send loop; call from the publisher's own loop."""
        self._task = self._loop.create_task(self._run(), name="gql_observer.publisher")

    @property
    def layer(self) -> Any:
        """The channel-layer instance this publisher sends with."""
        return self._layer

    async def stop(self, timeout: float | None = None) -> None:
        """Send what is queued (for at most ``timeout`` seconds), then stop."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drained(), self._timeout if timeout is None else timeout)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    def submit(self, event: ChangeEvent) -> None:
        """Queue ``event``; safe from any thread, never blocks."""
        with self._done:
            self._pending += 1
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._queue.put_nowait(event)
            return
        # Appended before ``_lingering`` is read: if the loop has stopped
        # lingering by then, it is woken; if not, it takes the inbox after.
        self._inbox.append(event)
        if not self._lingering:
            self._loop.call_soon_threadsafe(self._take_inbox)

    def _take_inbox(self) -> None:
        inbox = self._inbox
        while inbox:
            self._queue.put_nowait(inbox.popleft())

    def wait_idle(self, timeout: float) -> bool:
        """Block (from another thread) until everything submitted was sent or given up."""
        with self._done:
            return self._done.wait_for(lambda: self._pending == 0, timeout)

    async def _drained(self) -> None:
        while self._pending:  # noqa: ASYNC110 - the counter is shared with other threads
            await asyncio.sleep(0.01)

    def _settle(self, count: int) -> None:
        if not count:
            return
        with self._done:
            self._pending -= count
            if self._pending == 0:
                self._done.notify_all()

    async def _next_batch(self, wait: float | None) -> list[ChangeEvent]:
        if wait is None:
            batch = [await self._queue.get()]
        else:
            try:
                batch = [await asyncio.wait_for(self._queue.get(), wait)]
            except TimeoutError:
                batch = []
        while not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    async def _run(self) -> None:
        delay = _RETRY_MIN_DELAY
        while True:
            batch = await self._next_batch(delay if self._retry else None)
            now = self._loop.time()
            in_play = len(self._retry) + len(batch)
            # Retries first; a newer event of the same instance replaces its retry.
            merged: dict[str, tuple[ChangeEvent, float | None]] = dict(self._retry)
            self._retry.clear()
            for event in batch:
                merged.pop(event["group"], None)  # keep the latest, in its place
                merged[event["group"]] = (event, None)
            failing = False
            for target, message, members in self._messages(merged):
                if not failing and await self._send(target, message, members[0][0]):
                    continue
                # Once a send failed, the rest of the batch waits for the retry:
                # against an unreachable layer each would cost ``timeout``.
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
            delay = min(delay * 2, _RETRY_MAX_DELAY) if failing else _RETRY_MIN_DELAY
            # Every event submitted or kept is pending until sent, superseded or given up.
            self._settle(in_play - len(self._retry))
            if self._batch_window > 0 and not failing:
                # Linger: what is submitted meanwhile goes out together. While
                # changes keep coming, each linger is twice the last (up to
                # WINDOW_GROWTH times the setting): a long burst costs a few
                # messages, and a single change still goes out at once.
                wait = now + self.window - self._loop.time()
                if wait > 0:
                    self._lingering = True
                    try:
                        await asyncio.sleep(wait)
                    finally:
                        self._lingering = False
                self._take_inbox()
                if self._queue.empty():
                    self.window = self._batch_window
                else:
                    self.window = min(self.window * 2, self._batch_window * WINDOW_GROWTH)

    def _messages(
        self, merged: dict[str, tuple[ChangeEvent, float | None]]
    ) -> list[tuple[str, dict[str, Any], list[tuple[ChangeEvent, float | None]]]]:
        """(group, message, the events it carries) for one batch: one message per
        model with several changed instances (to the model's group, at most
        :data:`BATCH_LIMIT` events each), one per instance otherwise."""
        by_model: dict[str, list[tuple[ChangeEvent, float | None]]] = {}
        for event, since in merged.values():
            by_model.setdefault(event["model"], []).append((event, since))
        messages: list[tuple[str, dict[str, Any], list[tuple[ChangeEvent, float | None]]]] = []
        for model, members in by_model.items():
            if len(members) == 1:
                event = members[0][0]
                messages.append((event["group"], dict(event), members))
                continue
            family = model_group(self._prefix, model)
            for start in range(0, len(members), BATCH_LIMIT):
                chunk = members[start : start + BATCH_LIMIT]
                batch: ChangeBatch = {"type": CHANGES, "events": [e for e, _ in chunk]}
                messages.append((family, dict(batch), chunk))
        return messages

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
        if self._local is not None:
            self._local(message)
            self.sent += 1
            return True
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


#: Instances whose latest event may wait for a retry at once.
RETRY_LIMIT: Final = 10_000
#: Most change events in one channel-layer message.
BATCH_LIMIT: Final = 200
#: How far a publisher's batching window grows during a burst (times the setting).
WINDOW_GROWTH: Final = 8
_RETRY_MIN_DELAY: Final = 0.1
_RETRY_MAX_DELAY: Final = 2.0


class _ThreadPublisher:
    """A :class:`Publisher` on a daemon thread of its own (one per process)."""

    def __init__(
        self, alias: str, timeout: float, retry_window: float, batch_window: float
    ) -> None:
        self.pid = os.getpid()
        self.loop = loop = asyncio.new_event_loop()
        # A layer instance of its own: connection pools belong to one loop.
        layer = channel_layers.make_backend(alias)
        hub_capacity(layer, get_settings()["HUB_CAPACITY"])
        self.publisher = Publisher(layer, loop, timeout, retry_window, batch_window=batch_window)
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            self.publisher.start()
            loop.call_soon(started.set)
            loop.run_forever()

        self.thread = threading.Thread(target=run, name="gql_observer.publisher", daemon=True)
        self.thread.start()
        started.wait()

    def stop(self, timeout: float) -> None:
        """Send what is queued (for at most ``timeout`` seconds), close the
        layer's connections, end the thread and close its loop."""
        loop, publisher = self.loop, self.publisher

        async def finish() -> None:
            await publisher.stop(timeout)
            close_pools = getattr(publisher.layer, "close_pools", None)
            if close_pools is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(close_pools(), timeout)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(finish(), loop).result(2 * timeout)
        loop.call_soon_threadsafe(loop.stop)
        self.thread.join(timeout)
        if not self.thread.is_alive():
            loop.close()


_lock = threading.Lock()
_thread_publisher: _ThreadPublisher | None = None
#: Set by the hub when the layer is in-memory: only its loop can reach receivers.
_local_publisher: Publisher | None = None
#: Set by the hub of a server process when the layer crosses processes (Redis).
_in_process_hub: Callable[[ChangeEvent], str | None] | None = None


def reset() -> None:
    """Stop this process's thread publisher; the next publish starts a new one
    (called when ``CHANNEL_LAYERS`` or ``GQL_OBSERVER`` change, as in tests)."""
    global _thread_publisher
    with _lock:
        current, _thread_publisher = _thread_publisher, None
    if current is not None and current.pid == os.getpid():
        current.stop(1.0)


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in {"CHANNEL_LAYERS", "GQL_OBSERVER"}:
        reset()


setting_changed.connect(_on_setting_changed)


def set_local_publisher(publisher: Publisher | None) -> None:
    """Route events to ``publisher`` (the in-memory layer's hub) or stop doing so."""
    global _local_publisher
    _local_publisher = publisher


def set_in_process_hub(deliver: Callable[[ChangeEvent], str | None] | None) -> None:
    """Hand every change committed in this process to ``deliver`` (a hub's) as
    well as to the channel layer, or stop doing so.

    ``deliver(event)`` passes the change to the hub's own subscribers at once,
    from any thread, and returns the hub's token (``None`` when it could not).
    The event then goes to the layer marked ``delivered`` with that token, for
    the other processes; the hub skips the copy that comes back to it. A writer
    in a server process (an HTTP or websocket mutation) so reaches that
    process's subscribers without the round trip through Redis.
    """
    global _in_process_hub
    _in_process_hub = deliver


def release_in_process_hub(deliver: Callable[[ChangeEvent], str | None]) -> None:
    """Stop handing changes to ``deliver``, if it is still the one that gets them."""
    global _in_process_hub
    if _in_process_hub == deliver:
        _in_process_hub = None


def _deliver_here(event: ChangeEvent) -> ChangeEvent:
    deliver = _in_process_hub
    if deliver is None:
        return event
    token = deliver(event)
    if token is None:
        return event
    return {**event, "delivered": token}


def _publisher() -> Publisher | None:
    global _thread_publisher
    alias = get_settings()["CHANNEL_LAYER"]
    layer = channel_layer()
    if isinstance(layer, InMemoryChannelLayer):
        # Nobody outside this process can listen; inside it, only the hub's loop.
        local = _local_publisher
        if local is None or local.loop.is_closed():
            return None
        return local
    current = _thread_publisher
    if current is None or current.pid != os.getpid():  # first use, or forked
        with _lock:
            current = _thread_publisher
            if current is None or current.pid != os.getpid():
                options = get_settings()
                current = _ThreadPublisher(
                    alias,
                    options["PUBLISH_TIMEOUT"],
                    options["PUBLISH_RETRY_WINDOW"],
                    options["PUBLISH_BATCH_WINDOW"],
                )
                _thread_publisher = current
    return current.publisher


def publish(event: ChangeEvent) -> None:
    """Hand ``event`` to this process's publisher; never raises into the writer."""
    try:
        publisher = _publisher()
        if publisher is None:
            logger.debug("No subscriber can be reached in this process; dropped %s", event)
            return
        if publisher is not _local_publisher:
            event = _deliver_here(event)
        publisher.submit(event)
    except Exception:
        logger.exception(
            "Could not queue %s of %s %s", event["action"], event["model"], event["pk"]
        )


def flush(timeout: float | None = None) -> bool:
    """Wait until this process's thread publisher has sent everything queued.

    Registered with ``atexit``, so a shell that exits right after ``save()``
    still delivers its change.
    """
    current = _thread_publisher
    if current is None or current.pid != os.getpid():
        return True
    return current.publisher.wait_idle(
        get_settings()["PUBLISH_TIMEOUT"] if timeout is None else timeout
    )


atexit.register(flush)
