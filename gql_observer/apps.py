"""The Django app: connects receivers for observed models when Django is ready."""

from __future__ import annotations

import logging

from django.apps import AppConfig
from django.conf import settings as django_settings
from django.utils.module_loading import import_string

from gql_observer.changes import relations, signals
from gql_observer.core.conf import get_settings, problems

__all__ = ["GqlObserverConfig"]

logger = logging.getLogger(__name__)


class GqlObserverConfig(AppConfig):
    name = "gql_observer"
    verbose_name = "GraphQL observer"

    def ready(self) -> None:
        """Called when Django is ready: register the system checks, import the
        schema (so every process that writes models knows the observed ones) and
        connect their receivers (saves, deletes, the many-to-many relations they
        expose).

        A wrong ``GQL_OBSERVER`` is left to the checks (``manage.py check`` and
        ``runserver`` say what is wrong; :mod:`gql_observer.checks`), and raised by
        whatever uses the settings first (building the ASGI application does)."""
        from gql_observer import checks  # noqa: F401  (registers them)

        if problems(getattr(django_settings, "GQL_OBSERVER", {})):
            logger.error(
                "settings.GQL_OBSERVER is wrong, nothing is observed: "
                "`python manage.py check` says what to fix."
            )
            return
        settings = get_settings()
        if settings.schema:
            import_string(settings.schema)
        signals.connect_all()
        relations.connect_all()
