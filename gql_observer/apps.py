"""The Django app: connects receivers for observed models when Django is ready."""

from __future__ import annotations

from django.apps import AppConfig
from django.utils.module_loading import import_string

from gql_observer.core.conf import channel_layer, get_settings

__all__ = ["GqlObserverConfig"]


class GqlObserverConfig(AppConfig):
    name = "gql_observer"
    verbose_name = "GraphQL observer"

    def ready(self) -> None:
        """Called when Django is ready: import the schema (so every process that
        writes models knows the observed ones) and connect their receivers."""
        from gql_observer.changes import signals

        channel_layer()  # a missing alias is a configuration error, said now
        schema = get_settings()["SCHEMA"]
        if schema:
            import_string(schema)
        signals.connect_all()
