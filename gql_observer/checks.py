"""Django system checks of gql_observer's configuration (``manage.py check``,
and every ``runserver``/``migrate``): a wrong ``GQL_OBSERVER``, a channel-layer
alias that does not exist, the in-memory channel layer outside ``DEBUG``, and a
``GRAPHIQL_ASSETS_DIR`` without GraphiQL's assets."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from channels.layers import InMemoryChannelLayer
from django.apps import AppConfig
from django.conf import settings as django_settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.utils.module_loading import import_string

from gql_observer.core.conf import DEFAULTS, problems
from gql_observer.transport.graphiql import missing_assets

__all__ = [
    "BAD_SETTINGS",
    "IN_MEMORY_LAYER",
    "MISSING_ASSETS",
    "MISSING_LAYER",
    "check_settings",
]

#: The ids of gql_observer's checks.
BAD_SETTINGS: Final = "gql_observer.E001"
MISSING_LAYER: Final = "gql_observer.E002"
IN_MEMORY_LAYER: Final = "gql_observer.W001"
MISSING_ASSETS: Final = "gql_observer.W002"


@register(Tags.compatibility)
def check_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Called by Django's system checks: what is wrong with ``GQL_OBSERVER`` and
    the channel layer it uses."""
    options = getattr(django_settings, "GQL_OBSERVER", {})
    found: list[CheckMessage] = [
        Error(
            problem,
            hint="docs/settings.md lists every GQL_OBSERVER key with its type and default.",
            obj="settings.GQL_OBSERVER",
            id=BAD_SETTINGS,
        )
        for problem in problems(options)
    ]
    if found:
        return found
    alias = options.get("CHANNEL_LAYER", DEFAULTS["CHANNEL_LAYER"])
    layers = getattr(django_settings, "CHANNEL_LAYERS", None) or {}
    if layers and alias not in layers:
        return [
            Error(
                f"GQL_OBSERVER['CHANNEL_LAYER'] is {alias!r} but CHANNEL_LAYERS has no such "
                f"alias (it has: {', '.join(layers)}).",
                hint="Name an alias of CHANNEL_LAYERS, or add one.",
                obj="settings.GQL_OBSERVER",
                id=MISSING_LAYER,
            )
        ]
    if not django_settings.DEBUG and _in_memory(layers.get(alias)):
        found.append(
            Warning(
                "gql_observer uses the in-memory channel layer while DEBUG is off: "
                "changes saved by any other process (another worker, a shell, a task "
                "runner) never reach this process's subscribers, and nothing says so.",
                hint="Use channels_redis in CHANNEL_LAYERS when more than one process "
                "serves or writes (docs/deployment.md); silence this check with "
                f"SILENCED_SYSTEM_CHECKS = [{IN_MEMORY_LAYER!r}] if you run exactly one.",
                obj="settings.CHANNEL_LAYERS",
                id=IN_MEMORY_LAYER,
            )
        )
    assets = options.get("GRAPHIQL_ASSETS_DIR")
    missing = missing_assets(Path(assets)) if assets else []
    if missing:
        found.append(
            Warning(
                f"GQL_OBSERVER['GRAPHIQL_ASSETS_DIR'] ({assets}) lacks {', '.join(missing)}: "
                "GraphiQL stays on 'Loading...'.",
                hint=f"Run `python manage.py gql_observer_graphiql_assets --dir {assets}`.",
                obj="settings.GQL_OBSERVER",
                id=MISSING_ASSETS,
            )
        )
    return found


def _in_memory(layer: Any) -> bool:
    """Whether the ``CHANNEL_LAYERS`` entry ``layer`` (``None``: no setting, the
    library's own in-memory layer) is in-memory."""
    if layer is None:
        return True
    backend = layer.get("BACKEND") if isinstance(layer, dict) else None
    if not isinstance(backend, str):
        return False
    try:
        cls = import_string(backend)
    except ImportError:
        return False  # channels says so, when it builds the layer
    return isinstance(cls, type) and issubclass(cls, InMemoryChannelLayer)
