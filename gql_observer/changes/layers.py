"""The channel layer, typed: what gql_observer calls on it, which layer a setting
names, and a hub channel's capacity."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final, Protocol, cast

from channels.layers import InMemoryChannelLayer, channel_layers
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured

from gql_observer.core.conf import Settings

__all__ = [
    "HUB_CHANNEL_PREFIX",
    "ChannelLayer",
    "channel_layer",
    "hub_capacity",
    "in_memory",
    "own_channel_layer",
]


class ChannelLayer(Protocol):
    """The part of Channels' channel layer API gql_observer uses (channels'
    ``InMemoryChannelLayer`` and channels_redis's layers have it)."""

    async def new_channel(self, prefix: str = ...) -> str: ...

    async def receive(self, channel: str) -> dict[str, Any]: ...

    async def group_add(self, group: str, channel: str) -> None: ...

    async def group_discard(self, group: str, channel: str) -> None: ...

    async def group_send(self, group: str, message: Mapping[str, Any]) -> None: ...


#: Hubs' channels are named ``gqlobs-hub.<layer instance>!<random>``.
HUB_CHANNEL_PREFIX: Final = "gqlobs-hub"
_HUB_CHANNEL: Final = re.compile(rf"^{re.escape(HUB_CHANNEL_PREFIX)}\.")

_fallback: InMemoryChannelLayer | None = None


def channel_layer(settings: Settings) -> ChannelLayer:
    """The layer ``settings.channel_layer`` names (Channels' shared instance).

    Without any ``CHANNEL_LAYERS`` setting, one in-memory layer serves this
    process (the embedded default: nothing to install, one process).
    """
    global _fallback
    alias = settings.channel_layer
    if not getattr(django_settings, "CHANNEL_LAYERS", None) and alias == "default":
        if _fallback is None:
            _fallback = InMemoryChannelLayer()
        return cast(ChannelLayer, _fallback)
    try:
        layer: ChannelLayer = channel_layers[alias]
    except KeyError:
        raise ImproperlyConfigured(
            f"GQL_OBSERVER['CHANNEL_LAYER'] is {alias!r} but CHANNEL_LAYERS has no such "
            f"alias (it has: {', '.join(django_settings.CHANNEL_LAYERS) or 'none'})."
        ) from None
    return layer


def in_memory(layer: ChannelLayer) -> bool:
    """Whether ``layer`` lives in this process (nothing outside it can listen)."""
    return isinstance(layer, InMemoryChannelLayer)


def own_channel_layer(settings: Settings) -> ChannelLayer:
    """A new instance of the layer, for a hub or a publisher: channels_redis
    receives every process-local channel of one instance through one prefix and
    one receive loop, and its connection pools belong to one event loop. An
    in-memory layer is shared (its groups live in the instance)."""
    layer = channel_layer(settings)
    if in_memory(layer):
        return layer
    own: ChannelLayer = channel_layers.make_backend(settings.channel_layer)
    return own


def hub_capacity(layer: object, capacity: int) -> None:
    """Let ``layer`` send up to ``capacity`` messages into a hub's channel.

    channels_redis drops a ``group_send`` message, silently, when the
    receiving channel already holds its capacity (100 by default, set per
    layer instance on the *sending* side). A hub's channel carries every
    change of every instance its process watches, so publishers and hubs
    raise that bound for hub channels on their own layer instances.
    """
    # vars(): a proxy layer (channels_redis.pubsub) must not build a layer here.
    capacities = vars(layer).get("channel_capacity") if hasattr(layer, "__dict__") else None
    if isinstance(capacities, list) and not any(p is _HUB_CHANNEL for p, _ in capacities):
        capacities.insert(0, (_HUB_CHANNEL, capacity))
