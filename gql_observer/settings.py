"""Library settings: defaults merged with ``settings.GQL_OBSERVER``."""

from __future__ import annotations

from typing import Any, TypedDict, cast

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured

__all__ = ["DEFAULTS", "ObserverSettings", "get_settings"]


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
    #: Seconds between refreshes of the hub's group memberships. ``None``: half
    #: the channel layer's ``group_expiry``.
    GROUP_REFRESH_INTERVAL: float | None
    #: Serve GraphiQL on GET. ``None``: follow ``DEBUG``.
    GRAPHIQL: bool | None
    #: Base URL GraphiQL's scripts and styles are loaded from, with the same
    #: layout as unpkg (``<base>/graphiql@3.8.3/graphiql.min.js``). ``None``:
    #: strawberry's defaults (a public CDN). Set it on air-gapped networks.
    GRAPHIQL_ASSETS_URL: str | None


DEFAULTS: ObserverSettings = {
    "SCHEMA": None,
    "CHANNEL_LAYER": "default",
    "GROUP_PREFIX": "gqlobs",
    "CONNECTION_INIT_TIMEOUT": 3.0,
    "MAX_OPERATIONS_PER_CONNECTION": 100,
    "PUBLISH_TIMEOUT": 5.0,
    "GROUP_REFRESH_INTERVAL": None,
    "GRAPHIQL": None,
    "GRAPHIQL_ASSETS_URL": None,
}


def get_settings() -> ObserverSettings:
    """Return the defaults merged with ``settings.GQL_OBSERVER``."""
    user: Any = getattr(django_settings, "GQL_OBSERVER", {})
    if not isinstance(user, dict):
        raise ImproperlyConfigured("settings.GQL_OBSERVER must be a dict.")
    unknown = set(user) - set(DEFAULTS)
    if unknown:
        raise ImproperlyConfigured(
            f"Unknown GQL_OBSERVER setting(s): {', '.join(sorted(unknown))}. "
            f"Known: {', '.join(DEFAULTS)}."
        )
    return cast(ObserverSettings, {**DEFAULTS, **user})
