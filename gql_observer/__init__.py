"""gql_observer: Django model instances on a live GraphQL API.

``observe`` a strawberry-django type, build the schema with ``build_schema``,
serve it with ``gql_observer.asgi.application``. Writes Django sends no signal
for reach subscribers through ``ObservedManager`` (bulk writes) and ``notify``.
"""

from __future__ import annotations

from gql_observer.changes.bulk import (
    ObservedManager,
    ObservedQuerySet,
    ObservedQuerySetMixin,
    notify,
)
from gql_observer.changes.outbox import flush
from gql_observer.core.auth import (
    AuthenticationFailed,
    Authenticator,
    Credential,
    issue_token,
    signed_token_authenticator,
)
from gql_observer.core.conf import Settings, get_settings
from gql_observer.core.errors import ClientError
from gql_observer.graphql.context import Context, ContextGetter, get_current_user
from gql_observer.graphql.documents import PreparedDocuments
from gql_observer.graphql.execution import EventScopedExecutionContext
from gql_observer.graphql.runtime import hub_stats
from gql_observer.graphql.schema import (
    Schema,
    build_schema,
    default_extensions,
    query_type,
    subscription_type,
)
from gql_observer.observe.decorator import observe
from gql_observer.observe.definition import ObservedDefinition

__all__ = [
    "AuthenticationFailed",
    "Authenticator",
    "ClientError",
    "Context",
    "ContextGetter",
    "Credential",
    "EventScopedExecutionContext",
    "ObservedDefinition",
    "ObservedManager",
    "ObservedQuerySet",
    "ObservedQuerySetMixin",
    "PreparedDocuments",
    "Schema",
    "Settings",
    "build_schema",
    "default_extensions",
    "flush",
    "get_current_user",
    "get_settings",
    "hub_stats",
    "issue_token",
    "notify",
    "observe",
    "query_type",
    "signed_token_authenticator",
    "subscription_type",
]
