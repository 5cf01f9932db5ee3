"""Library settings: defaults merged with ``settings.GQL_OBSERVER``."""

from __future__ import annotations

from typing import Any, TypedDict, cast

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

__all__ = ["DEFAULTS", "ObserverSettings", "channel_layer", "get_settings"]


class ObserverSettings(TypedDict):
    #: Dotted path to the strawberry Schema (``"myproject.schema.schema"``).
    #: Imported in ``AppConfig.ready()`` so that every process that writes
    #: models (a shell, a task runner) registers the observed models too.
    SCHEMA: str | None
    #: Alias in ``CHANNEL_LAYERS`` used to publish and receive events.
    CHANNEL_LAYER: str
    #: Prefix of every channel-layer group name.
    GROUP_PREFIX: str
    #: Seconds a client has to send ``connection_init`` before 4408.
    CONNECTION_INIT_TIMEOUT: float
    #: Operations in flight per websocket connection (queries and subscriptions).
    MAX_OPERATIONS_PER_CONNECTION: int
    #: Seconds a publish may take before it is given up (and logged).
    PUBLISH_TIMEOUT: float
    #: Seconds an event that could not be published is retried (with backoff,
    #: the latest per instance) before it is given up and logged.
    PUBLISH_RETRY_WINDOW: float
    #: Seconds between two channel-layer sends of a process's publisher in a
    #: burst of saves: the first change after a quiet spell is sent at once,
    #: the changes submitted within the window after it go out together (one
    #: message per model). ``0``: send as soon as the previous send is done.
    PUBLISH_BATCH_WINDOW: float
    #: Seconds between a hub's probes of the channel layer: a message to itself
    #: through a group of its own. A probe not back by the next one (a layer
    #: that hangs, or lost the hub's group memberships in a restart) makes the
    #: hub re-join its groups and resynchronise its subscribers. ``None``: no
    #: probes. Never used with the in-memory layer.
    HUB_PROBE_INTERVAL: float | None
    #: Capacity of each hub's channel on channels_redis (messages waiting to be
    #: received); channels_redis drops messages beyond it without an error.
    HUB_CAPACITY: int
    #: Seconds between two database reads of one type for one viewer in a
    #: burst of changes: the first change after a quiet spell is read at once,
    #: the changes that arrive within the window after it are read together by
    #: one query. ``0``: read as soon as the previous read is done.
    READ_BATCH_WINDOW: float
    #: Seconds a read that failed because the database could not be reached
    #: (``OperationalError``, ``InterfaceError``) is retried, with backoff,
    #: before its subscribers get an error. ``0``: no retry.
    READ_RETRY_WINDOW: float
    #: Seconds a websocket may take to accept one message before the server
    #: gives up on the client and closes the connection (code 1013).
    SEND_TIMEOUT: float
    #: Seconds between the server's graphql-transport-ws ``ping`` messages on
    #: an acknowledged connection (clients answer ``pong``; the traffic keeps
    #: proxies from closing idle connections). ``None``: no pings.
    KEEP_ALIVE_INTERVAL: float | None
    #: Seconds between refreshes of the hub's group memberships. ``None``: half
    #: the channel layer's ``group_expiry``.
    GROUP_REFRESH_INTERVAL: float | None
    #: Serve GraphiQL on GET. ``None``: follow ``DEBUG``.
    GRAPHIQL: bool | None
    #: Base URL GraphiQL's scripts and styles are loaded from, with the same
    #: layout as unpkg (``<base>/graphiql@3.8.3/graphiql.min.js``). ``None``:
    #: strawberry's defaults (a public CDN). Set it on air-gapped networks.
    GRAPHIQL_ASSETS_URL: str | None
    #: Introspection queries allowed. ``None``: follow ``DEBUG``.
    INTROSPECTION: bool | None
    #: Dotted path of the authenticator for tokens in ``connection_init`` and
    #: ``Authorization: Bearer`` (see ``gql_observer.auth.Authenticator``).
    AUTHENTICATOR: str
    #: Seconds a token of the default authenticator stays valid.
    TOKEN_MAX_AGE: int
    #: Largest websocket message a client may send, in bytes (close 1009 beyond).
    MAX_MESSAGE_SIZE: int
    #: Largest HTTP request body to the GraphQL endpoint, in bytes (413 beyond,
    #: before the rest is read); also the longest query string of a GET (414).
    MAX_REQUEST_SIZE: int
    #: Deepest query accepted (strawberry's QueryDepthLimiter).
    MAX_QUERY_DEPTH: int
    #: Most tokens in one document: the first parse of every document stops
    #: there (graphql-core's ``parse(max_tokens=...)``), and strawberry's
    #: MaxTokensLimiter of the default extensions.
    MAX_QUERY_TOKENS: int
    #: Most aliases in one document (strawberry's MaxAliasesLimiter).
    MAX_ALIASES: int
    #: Subscribe messages a connection may send per second (a burst of twice
    #: that is allowed); beyond, the operation gets an error.
    SUBSCRIBE_RATE: float
    #: Serve the subscribers of one instance together: one read per change,
    #: the viewer-independent part of each result built and encoded once, each
    #: subscriber's requestId and context-dependent fields its own (see
    #: ``gql_observer.watch``). ``False``: each runs alone through strawberry.
    COHORTS: bool
    #: Build the per-event results of an observed subscription that selects
    #: only plain attributes from a plan compiled once, instead of running
    #: graphql-core's execution for every event (see ``gql_observer.plan``).
    PLANNED_RESULTS: bool
    #: With a channel layer between processes (channels_redis), hand a change
    #: committed in a server process to that process's own subscribers at
    #: once, besides sending it to the layer for the other processes (whose
    #: copy this process's hub then skips). ``False``: every change reaches
    #: every subscriber through the layer.
    DELIVER_IN_PROCESS: bool


DEFAULTS: ObserverSettings = {
    "SCHEMA": None,
    "CHANNEL_LAYER": "default",
    "GROUP_PREFIX": "gqlobs",
    "CONNECTION_INIT_TIMEOUT": 3.0,
    "MAX_OPERATIONS_PER_CONNECTION": 100,
    "PUBLISH_TIMEOUT": 5.0,
    "PUBLISH_RETRY_WINDOW": 30.0,
    "PUBLISH_BATCH_WINDOW": 0.01,
    "HUB_PROBE_INTERVAL": 3.0,
    "HUB_CAPACITY": 10_000,
    "READ_BATCH_WINDOW": 0.01,
    "READ_RETRY_WINDOW": 30.0,
    "SEND_TIMEOUT": 30.0,
    "KEEP_ALIVE_INTERVAL": 20.0,
    "GROUP_REFRESH_INTERVAL": None,
    "GRAPHIQL": None,
    "GRAPHIQL_ASSETS_URL": None,
    "INTROSPECTION": None,
    "AUTHENTICATOR": "gql_observer.core.auth.signed_token_authenticator",
    "TOKEN_MAX_AGE": 24 * 3600,
    "MAX_MESSAGE_SIZE": 64 * 1024,
    "MAX_REQUEST_SIZE": 64 * 1024,
    "MAX_QUERY_DEPTH": 10,
    "MAX_QUERY_TOKENS": 2000,
    "MAX_ALIASES": 30,
    "SUBSCRIBE_RATE": 20.0,
    "COHORTS": True,
    "PLANNED_RESULTS": True,
    "DELIVER_IN_PROCESS": True,
}


_cached: ObserverSettings | None = None


def _forget(*, setting: str, **kwargs: Any) -> None:
    global _cached
    if setting == "GQL_OBSERVER":
        _cached = None


setting_changed.connect(_forget)


def get_settings() -> ObserverSettings:
    """Return the defaults merged with ``settings.GQL_OBSERVER`` (read once;
    again after ``override_settings`` changes it). Do not modify the result."""
    global _cached
    if _cached is None:
        _cached = _read_settings()
    return _cached


def _read_settings() -> ObserverSettings:
    user: Any = getattr(django_settings, "GQL_OBSERVER", {})
    if not isinstance(user, dict):
        raise ImproperlyConfigured("settings.GQL_OBSERVER must be a dict.")
    unknown = set(user) - set(DEFAULTS)
    if unknown:
        raise ImproperlyConfigured(
            f"Unknown GQL_OBSERVER setting(s): {', '.join(sorted(unknown))}. "
            f"Known: {', '.join(DEFAULTS)}."
        )
    merged = {**DEFAULTS, **user}
    # Read by the hub's and the publisher's loops, where a wrong type would
    # stop delivery in a background task instead of failing here.
    for key in ("READ_BATCH_WINDOW", "PUBLISH_BATCH_WINDOW", "READ_RETRY_WINDOW"):
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ImproperlyConfigured(
                f"GQL_OBSERVER[{key!r}] must be a number of seconds >= 0, not {value!r}."
            )
    # Read by every request and parse, where a wrong type would fail each of them.
    for key in ("HUB_CAPACITY", "MAX_REQUEST_SIZE", "MAX_QUERY_TOKENS"):
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ImproperlyConfigured(
                f"GQL_OBSERVER[{key!r}] must be a whole number >= 1, not {value!r}."
            )
    return cast(ObserverSettings, merged)


_fallback_layer: Any = None


def channel_layer() -> Any:
    """The channel layer named by ``CHANNEL_LAYER``.

    Without any ``CHANNEL_LAYERS`` setting, one in-memory layer serves this
    process (the embedded default: nothing to install, one process).
    """
    global _fallback_layer
    from channels.layers import InMemoryChannelLayer, channel_layers

    alias = get_settings()["CHANNEL_LAYER"]
    if not getattr(django_settings, "CHANNEL_LAYERS", None) and alias == "default":
        if _fallback_layer is None:
            _fallback_layer = InMemoryChannelLayer()
        return _fallback_layer
    try:
        return channel_layers[alias]
    except KeyError:
        raise ImproperlyConfigured(
            f"GQL_OBSERVER['CHANNEL_LAYER'] is {alias!r} but CHANNEL_LAYERS has no such "
            f"alias (it has: {', '.join(django_settings.CHANNEL_LAYERS) or 'none'})."
        ) from None


def own_channel_layer() -> Any:
    """A new instance of the ``CHANNEL_LAYER`` layer, for a hub: channels_redis
    receives every process-local channel of one instance through one prefix
    and one receive loop, so the hub's channel gets an instance of its own.
    An in-memory layer is shared (its groups live in the instance)."""
    from channels.layers import InMemoryChannelLayer, channel_layers

    layer = channel_layer()
    if isinstance(layer, InMemoryChannelLayer):
        return layer
    return channel_layers.make_backend(get_settings()["CHANNEL_LAYER"])
