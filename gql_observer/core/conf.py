"""Library settings: one frozen :class:`Settings` object, the defaults merged with
``settings.GQL_OBSERVER``.

Components take the object they are built with (a runtime, a connection, a
publisher); :func:`get_settings` gives the current one to whoever builds them.
It is read once, and again after Django's ``setting_changed`` (tests'
``settings`` fixture, ``override_settings``) says ``GQL_OBSERVER`` changed.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

__all__ = ["DEFAULTS", "Settings", "get_settings", "problems"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Every ``GQL_OBSERVER`` key, in lower case (``GROUP_PREFIX`` is
    ``group_prefix``); docs/settings.md says what each one does."""

    #: Dotted path to the strawberry Schema, imported in ``AppConfig.ready()``
    #: so that every process that writes models registers the observed ones.
    schema: str | None = None
    #: Alias in ``CHANNEL_LAYERS`` used to publish and receive events.
    channel_layer: str = "default"
    #: Prefix of every channel-layer group name.
    group_prefix: str = "gqlobs"
    #: Seconds a client has to send ``connection_init`` before 4408.
    connection_init_timeout: float = 3.0
    #: Operations in flight per websocket connection.
    max_operations_per_connection: int = 100
    #: Seconds one ``group_send`` may take before it counts as failed.
    publish_timeout: float = 5.0
    #: Seconds an event that could not be published is retried.
    publish_retry_window: float = 30.0
    #: Seconds between two sends of a publisher in a burst (batching).
    publish_batch_window: float = 0.01
    #: Seconds between a hub's probes of the channel layer; ``None``: none.
    hub_probe_interval: float | None = 3.0
    #: Messages a hub's channel may hold in channels_redis.
    hub_capacity: int = 10_000
    #: Seconds between two reads of one kind in a burst (batching).
    read_batch_window: float = 0.01
    #: Seconds a read that cannot reach the database is retried.
    read_retry_window: float = 30.0
    #: Seconds a client may take to accept one message (then 1013).
    send_timeout: float = 30.0
    #: Seconds between the server's graphql-transport-ws pings; ``None``: none.
    keep_alive_interval: float | None = 20.0
    #: Seconds between refreshes of group memberships; ``None``: from the layer.
    group_refresh_interval: float | None = None
    #: Serve GraphiQL on GET; ``None``: follow ``DEBUG``.
    graphiql: bool | None = None
    #: Base URL of GraphiQL's assets; ``None``: strawberry's defaults.
    graphiql_assets_url: str | None = None
    #: Directory of GraphiQL's assets, served from the GraphQL path's origin.
    graphiql_assets_dir: str | None = None
    #: Introspection allowed; ``None``: follow ``DEBUG``.
    introspection: bool | None = None
    #: Dotted path of the context hook (``info.context``); ``None``: none.
    context_getter: str | None = None
    #: Dotted path of the token authenticator.
    authenticator: str = "gql_observer.core.auth.signed_token_authenticator"
    #: Seconds a token of the default authenticator stays valid.
    token_max_age: int = 24 * 3600
    #: Largest websocket message a client may send, in bytes (1009 beyond).
    max_message_size: int = 64 * 1024
    #: Largest HTTP request body, in bytes (413 beyond).
    max_request_size: int = 64 * 1024
    #: Deepest query accepted.
    max_query_depth: int = 10
    #: Most tokens in one document, applied by its first parse.
    max_query_tokens: int = 2000
    #: Most aliases in one document.
    max_aliases: int = 30
    #: Subscribe messages a connection may send per second (a burst of twice that).
    subscribe_rate: float = 20.0
    #: Serve the subscribers of one instance together (watches).
    cohorts: bool = True
    #: Build results of plain selections without graphql-core's execution.
    planned_results: bool = True
    #: Hand a change committed in a server process to its own subscribers at once.
    deliver_in_process: bool = True
    #: Pause Python's cyclic garbage collector while a watch delivers an event.
    gc_pause: bool = True
    #: Rows of a list Query page when the client gives no ``limit``.
    list_page_size: int = 100
    #: Most rows of a list Query page (a larger ``limit`` is cut to it).
    list_max_page_size: int = 1000
    #: Serve regular-expression lookups in list filters on SQLite, where Django
    #: runs them in the server process (Python's ``re``, holding the GIL).
    list_regex_on_sqlite: bool = False

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> Settings:
        """The settings ``options`` (upper-case keys, as in ``GQL_OBSERVER``) ask
        for; :class:`ImproperlyConfigured` naming every problem if they are wrong."""
        found = problems(options)
        if found:
            raise ImproperlyConfigured(" ".join(found))
        return cls(**{key.lower(): value for key, value in options.items()})

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` (lower-case names)."""
        return dataclasses.replace(self, **changes)


#: The defaults, by ``GQL_OBSERVER`` key.
DEFAULTS: Final[dict[str, Any]] = {
    field.name.upper(): field.default for field in dataclasses.fields(Settings)
}
_HINTS: Final = typing.get_type_hints(Settings)
#: Keys whose value must not be negative (seconds, sizes, rates), or must be at least 1.
_NOT_NEGATIVE: Final = frozenset(
    {
        "CONNECTION_INIT_TIMEOUT",
        "PUBLISH_TIMEOUT",
        "PUBLISH_RETRY_WINDOW",
        "PUBLISH_BATCH_WINDOW",
        "READ_BATCH_WINDOW",
        "READ_RETRY_WINDOW",
        "SEND_TIMEOUT",
        "KEEP_ALIVE_INTERVAL",
    }
)
_POSITIVE: Final = frozenset(
    {
        "MAX_OPERATIONS_PER_CONNECTION",
        "HUB_CAPACITY",
        "HUB_PROBE_INTERVAL",
        "GROUP_REFRESH_INTERVAL",
        "MAX_MESSAGE_SIZE",
        "MAX_REQUEST_SIZE",
        "MAX_QUERY_DEPTH",
        "MAX_QUERY_TOKENS",
        "MAX_ALIASES",
        "SUBSCRIBE_RATE",
        "LIST_PAGE_SIZE",
        "LIST_MAX_PAGE_SIZE",
    }
)


def _fits(value: Any, hint: Any) -> bool:
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for option in options:
        if option is type(None) and value is None:
            return True
        if option is bool and isinstance(value, bool):
            return True
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if option is float and isinstance(value, int | float) and not isinstance(value, bool):
            return True
        if option is str and isinstance(value, str):
            return True
    return False


def problems(options: Any) -> list[str]:
    """What is wrong with ``options`` (``settings.GQL_OBSERVER``), one sentence each."""
    if not isinstance(options, Mapping):
        return [f"settings.GQL_OBSERVER must be a dict, not {type(options).__name__}."]
    found = []
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        found.append(
            f"Unknown GQL_OBSERVER setting(s): {', '.join(map(str, unknown))}. "
            f"Known: {', '.join(DEFAULTS)}."
        )
    for key, value in options.items():
        if key not in DEFAULTS:
            continue
        hint = _HINTS[key.lower()]
        if not _fits(value, hint):
            found.append(f"GQL_OBSERVER[{key!r}] must be {_describe(hint)}, not {value!r}.")
        elif key in _NOT_NEGATIVE and value is not None and value < 0:
            found.append(f"GQL_OBSERVER[{key!r}] must be >= 0, not {value!r}.")
        elif key in _POSITIVE and value is not None and value <= 0:
            found.append(f"GQL_OBSERVER[{key!r}] must be > 0, not {value!r}.")
    return found


def _describe(hint: Any) -> str:
    names = {bool: "True or False", int: "a whole number", float: "a number", str: "a string"}
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    return " or ".join("None" if o is type(None) else names.get(o, str(o)) for o in options)


_cached: Settings | None = None


def _forget(*, setting: str, **kwargs: Any) -> None:
    global _cached
    if setting == "GQL_OBSERVER":
        _cached = None


setting_changed.connect(_forget)


def get_settings() -> Settings:
    """The current settings: the defaults merged with ``settings.GQL_OBSERVER``
    (read once; again after it changed)."""
    global _cached
    if _cached is None:
        _cached = Settings.from_mapping(getattr(django_settings, "GQL_OBSERVER", {}))
    return _cached
