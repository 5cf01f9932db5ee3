"""gql_observer: Django model instances on a live GraphQL API.

``observe`` a strawberry-django type, build the schema with ``build_schema``,
serve it with ``gql_observer.asgi.application``.
"""

from __future__ import annotations

from gql_observer.changes.outbox import flush
from gql_observer.core.auth import issue_token
from gql_observer.core.errors import ClientError
from gql_observer.graphql.schema import build_schema, query_type, subscription_type
from gql_observer.observe.decorator import observe
from gql_observer.observe.definition import ObservedDefinition

__all__ = [
    "ClientError",
    "ObservedDefinition",
    "build_schema",
    "flush",
    "issue_token",
    "observe",
    "query_type",
    "subscription_type",
]
