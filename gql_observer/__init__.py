"""gql_observer: Django model instances on a live GraphQL API.

``observe`` a strawberry-django type, build the schema with ``build_schema``,
serve it with ``gql_observer.asgi.application``.
"""

from __future__ import annotations

from .auth import issue_token
from .decorator import observe
from .definition import ObservedDefinition
from .errors import ClientError
from .publish import flush
from .schema import build_schema, query_type, subscription_type

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
