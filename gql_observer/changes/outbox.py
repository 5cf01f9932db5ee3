"""Where this process's committed changes go: :data:`outbox`.

A change committed in any thread (a request, a shell, a task runner) is handed
to the process's :class:`Outbox`, which passes it on without waiting:

- to the channel layer, through a :class:`~gql_observer.changes.publisher.Publisher`
  on a daemon thread of its own with its own event loop and connection pool
  (one per process; a forked child starts its own on its first publish);
- with the in-memory layer, to the local publisher of the hub of this
  process's server loop instead (nothing outside the process can listen);
- with a layer between processes and in-process delivery on, also straight to
  this process's hub (``attach_hub``), marked so that the hub skips the
  layer's copy when it comes back.

Nothing here knows about hubs or websockets: a hub attaches itself.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import threading
from collections.abc import Callable
from typing import Any, Protocol

from django.core.signals import setting_changed

from gql_observer.changes.events import ChangeEvent
from gql_observer.changes.layers import channel_layer, hub_capacity, in_memory, own_channel_layer
from gql_observer.changes.publisher import Publisher
from gql_observer.core.conf import Settings, get_settings

__all__ = ["Outbox", "Sink", "flush", "outbox", "publish", "publish_many"]

logger = logging.getLogger(__name__)

#: ``deliver(event)`` hands a change to a hub's subscribers at once, from any
#: thread; the token the layer's copy is then marked with (``None``: not taken).
Deliver = Callable[[ChangeEvent], str | None]


class Sink(Protocol):
    """What takes a process's changes from any thread: a publisher, or a hub's
    in-process batcher."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    def submit(self, event: ChangeEvent) -> None: ...

    def submit_many(self, events: list[ChangeEvent]) -> None: ...


class _Thread:
    """A :class:`Publisher` on a daemon thread of its own."""

    def __init__(self, settings: Settings) -> None:
        self.pid = os.getpid()
        self.settings = settings
        self.loop = loop = asyncio.new_event_loop()
        # A layer instance of its own: connection pools belong to one loop.
        layer = own_channel_layer(settings)
        hub_capacity(layer, settings.hub_capacity)
        self.publisher = Publisher(layer, loop, settings)
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


class Outbox:
    """This process's way out for committed changes (see the module)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: _Thread | None = None
        #: The in-memory layer's hub: only its loop can reach receivers.
        self._local: Sink | None = None
        #: A server loop's hub, for in-process delivery beside the layer.
        self._hub: Deliver | None = None

    @property
    def publisher(self) -> Publisher | None:
        """This process's thread publisher, once a publish started it."""
        current = self._thread
        return current.publisher if current is not None and current.pid == os.getpid() else None

    # ---- who else gets the changes ---------------------------------------------------

    def attach_local(self, sink: Sink) -> None:
        """With the in-memory layer, send every change to ``sink`` (the hub's)
        instead of the layer."""
        self._local = sink

    def detach_local(self, sink: Sink) -> None:
        if self._local is sink:
            self._local = None

    def attach_hub(self, deliver: Deliver) -> None:
        """Hand every change committed in this process to ``deliver`` (a hub's)
        as well as to the channel layer. The event then goes to the layer marked
        ``delivered`` with the token ``deliver`` returned, for the other
        processes; the hub skips the copy that comes back to it. A writer in a
        server process (an HTTP or websocket mutation) so reaches that process's
        subscribers without the round trip through Redis."""
        self._hub = deliver

    def detach_hub(self, deliver: Deliver) -> None:
        if self._hub == deliver:
            self._hub = None

    # ---- publishing -------------------------------------------------------------------

    def publish(self, event: ChangeEvent) -> None:
        """Hand ``event`` on; never raises into the writer."""
        try:
            publisher = self._publisher()
            if publisher is None:
                logger.debug("No subscriber can be reached in this process; dropped %s", event)
                return
            if publisher is not self._local:
                event = self._delivered_here(event)
            publisher.submit(event)
        except Exception:
            logger.exception(
                "Could not queue %s of %s %s", event["action"], event["model"], event["pk"]
            )

    def publish_many(self, events: list[ChangeEvent]) -> None:
        """Hand ``events`` on together (one bulk write's); never raises into the writer."""
        if not events:
            return
        try:
            publisher = self._publisher()
            if publisher is None:
                logger.debug(
                    "No subscriber can be reached in this process; dropped %d", len(events)
                )
                return
            if publisher is not self._local:
                events = [self._delivered_here(event) for event in events]
            publisher.submit_many(events)
        except Exception:
            logger.exception("Could not queue %d change(s) of %s", len(events), events[0]["model"])

    def _delivered_here(self, event: ChangeEvent) -> ChangeEvent:
        deliver = self._hub
        token = deliver(event) if deliver is not None else None
        return event if token is None else {**event, "delivered": token}

    def _publisher(self) -> Sink | None:
        settings = get_settings()
        if in_memory(channel_layer(settings)):
            local = self._local
            return None if local is None or local.loop.is_closed() else local
        current = self._thread
        if current is None or current.pid != os.getpid():  # first use, or forked
            with self._lock:
                current = self._thread
                if current is None or current.pid != os.getpid():
                    current = self._thread = _Thread(settings)
        return current.publisher

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the thread publisher has sent everything queued."""
        current = self._thread
        if current is None or current.pid != os.getpid():
            return True
        return current.publisher.wait_idle(
            current.settings.publish_timeout if timeout is None else timeout
        )

    def reset(self) -> None:
        """Stop the thread publisher; the next publish starts a new one (with the
        settings of then)."""
        with self._lock:
            current, self._thread = self._thread, None
        if current is not None and current.pid == os.getpid():
            current.stop(1.0)


#: This process's outbox.
outbox = Outbox()


def publish(event: ChangeEvent) -> None:
    """Hand ``event`` to this process's outbox; never raises into the writer."""
    outbox.publish(event)


def publish_many(events: list[ChangeEvent]) -> None:
    """Hand ``events`` to this process's outbox together; never raises into the writer."""
    outbox.publish_many(events)


def flush(timeout: float | None = None) -> bool:
    """Wait until this process's thread publisher has sent everything queued.

    Registered with ``atexit``, so a shell that exits right after ``save()``
    still delivers its change.
    """
    return outbox.flush(timeout)


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in {"CHANNEL_LAYERS", "GQL_OBSERVER"}:
        outbox.reset()


setting_changed.connect(_on_setting_changed)
atexit.register(flush)
