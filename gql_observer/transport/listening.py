"""A connection's own channel-layer channel, for subscriptions written for
strawberry's Channels integration: ``info.context["ws"].channel_layer``,
``.channel_name``, ``.listen_to_channel(...)`` and the older
``.channel_listen(...)``, with strawberry's semantics (messages dispatched by
their ``type``, ``groups=`` joined for the listener's lifetime and counted per
group, ``timeout=`` ending the listener after that long without a message).

The channel is made only when an operation asks for one: observed
subscriptions never do, so an idle connection has no channel, no reader task
and no group. From its first listener on, one task reads the channel until the
connection goes (a message of a type nobody listens to is dropped, as in
strawberry); before it, messages wait in the layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from collections import Counter, defaultdict
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine, Sequence
from typing import Any, ClassVar
from weakref import WeakSet

from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import get_channel_layer

from gql_observer.core.backoff import next_delay
from gql_observer.transport.contexts import Contexts

__all__ = ["LayerChannel", "Listening"]

logger = logging.getLogger(__name__)

_NO_LAYER = (
    "Layers integration is required listening for channels.\n"
    "Check https://channels.readthedocs.io/en/stable/topics/channel_layers.html "
    "for more information"
)


class LayerChannel:
    """The channel of one connection and what listens to it."""

    __slots__ = ("group_refs", "layer", "lock", "name", "queues", "reader")

    def __init__(self, layer: Any, name: str) -> None:
        self.layer = layer
        self.name = name
        # Queues die with their listeners (strawberry's WeakSet).
        self.queues: defaultdict[str, WeakSet[asyncio.Queue[Any]]] = defaultdict(WeakSet)
        self.group_refs: Counter[str] = Counter()
        self.lock = asyncio.Lock()
        self.reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        """Hand each message of the channel to the listeners of its ``type``
        (a message nobody listens to is dropped, as strawberry's consumer does)."""
        delay: float | None = None
        while True:
            try:
                message = await self.layer.receive(self.name)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                delay = next_delay(delay)
                logger.warning("Could not read a connection's channel (%s); retrying", error)
                await asyncio.sleep(delay)
                continue
            delay = None
            kind = message.get("type", "") if isinstance(message, dict) else ""
            for queue in list(self.queues.get(kind, ())):
                queue.put_nowait(message)


class Listening(Contexts):
    """What a connection offers a resolver as strawberry's Channels consumer does
    (the connection is ``info.context["ws"]``). (On :class:`Contexts`: slotted
    classes combine only in a line.)"""

    __slots__ = ("_listening",)

    #: The alias of the channel layer in ``CHANNEL_LAYERS`` (as Channels' consumers).
    channel_layer_alias: ClassVar[str] = DEFAULT_CHANNEL_LAYER

    _listening: LayerChannel | None

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        raise NotImplementedError

    @property
    def channel_layer(self) -> Any:
        """The channel layer (``None`` without ``CHANNEL_LAYERS``); no channel is made."""
        return get_channel_layer(self.channel_layer_alias)

    @property
    def channel_name(self) -> str:
        """This connection's channel, made now if it has none yet (and read from
        its first listener on). The layer's ``new_channel()`` must not wait (Channels' in-memory
        layer and channels_redis' ``RedisChannelLayer`` do not); with a layer whose
        does, enter ``listen_to_channel`` first."""
        if self._listening is not None:
            return self._listening.name
        layer = self._layer()
        coro = layer.new_channel()
        try:
            coro.send(None)
        except StopIteration as done:
            name: str = done.value
        else:
            coro.close()
            raise RuntimeError(
                f"{type(layer).__name__}.new_channel() waits: enter "
                "`async with ws.listen_to_channel(...)` before reading ws.channel_name."
            )
        return self._open(layer, name).name

    async def ensure_channel(self) -> LayerChannel:
        """This connection's channel, made if it has none yet."""
        if self._listening is None:
            layer = self._layer()
            name = await layer.new_channel()
            if self._listening is None:
                self._open(layer, name)
        assert self._listening is not None
        return self._listening

    def _layer(self) -> Any:
        layer = self.channel_layer
        if layer is None:
            raise RuntimeError(_NO_LAYER)
        return layer

    def _open(self, layer: Any, name: str) -> LayerChannel:
        # Nothing reads the channel until the first listener is there: what was
        # sent to it before (a greeting to a group just joined) waits in the layer.
        channel = self._listening = LayerChannel(layer, name)
        return channel

    @contextlib.asynccontextmanager
    async def listen_to_channel(
        self, type: str, *, timeout: float | None = None, groups: Sequence[str] = ()
    ) -> AsyncIterator[AsyncGenerator[Any, None]]:
        """Listen for messages of ``type`` sent to this connection's channel (or to
        ``groups``, joined until the block ends); strawberry's semantics::

            async with info.context["ws"].listen_to_channel("chat.message", groups=rooms) as cm:
                yield None  # subscribed: nothing sent to the groups from now on is missed
                async for message in cm:
                    yield message["text"]

        ``timeout``: the iteration ends after that many seconds without a message.
        """
        if self.channel_layer is None:
            raise RuntimeError(_NO_LAYER)
        channel = await self.ensure_channel()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        channel.queues[type].add(queue)
        if channel.reader is None:
            channel.reader = self.spawn(channel.read())
        added: list[str] = []
        try:
            for group in groups:
                async with channel.lock:
                    # Added every time: a membership can expire on its own.
                    await channel.layer.group_add(group, channel.name)
                    channel.group_refs[group] += 1
                added.append(group)
            yield _messages(queue, timeout)
        finally:
            channel.queues[type].discard(queue)
            for group in added:
                async with channel.lock:
                    channel.group_refs[group] -= 1
                    if channel.group_refs[group] <= 0:
                        del channel.group_refs[group]
                        with contextlib.suppress(Exception):
                            await channel.layer.group_discard(group, channel.name)

    async def channel_listen(
        self, type: str, *, timeout: float | None = None, groups: Sequence[str] = ()
    ) -> AsyncGenerator[Any, None]:
        """Deprecated by strawberry in favour of :meth:`listen_to_channel` (the
        groups are joined only when the iteration starts); kept for old code."""
        warnings.warn("Use listen_to_channel instead", DeprecationWarning, stacklevel=2)
        async with self.listen_to_channel(type, timeout=timeout, groups=groups) as messages:
            async for message in messages:
                yield message

    async def close_channel(self) -> None:
        """The connection went: stop reading its channel (the listeners' groups
        are left as their blocks end)."""
        channel, self._listening = self._listening, None
        if channel is not None and channel.reader is not None:
            channel.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await channel.reader


async def _messages(queue: asyncio.Queue[Any], timeout: float | None) -> AsyncGenerator[Any, None]:
    while True:
        try:
            if timeout is None:
                message = await queue.get()
            else:
                async with asyncio.timeout(timeout):
                    message = await queue.get()
        except TimeoutError:
            return
        yield message
