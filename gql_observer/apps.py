"""The Django app: connects receivers for observed models when Django is ready."""

from __future__ import annotations

from django.apps import AppConfig
from django.utils.module_loading import import_string

from gql_observer.changes import relations, signals
from gql_observer.changes.layers import channel_layer
from gql_observer.core.conf import get_settings

__all__ = ["GqlObserverConfig"]


class GqlObserverConfig(AppConfig):
    name = "gql_observer"
    verbose_name = "GraphQL observer"

    def ready(self) -> None:
        """Called when Django is ready: import the schema (so every process that
        writes models knows the observed ones) and connect their receivers
        (saves, deletes, the many-to-many relations they expose)."""
        settings = get_settings()
        channel_layer(settings)  # a missing alias is a configuration error, said now
        if settings.schema:
            import_string(settings.schema)
        signals.connect_all()
        relations.connect_all()
