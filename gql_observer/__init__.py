"""gql_observer: Django model instances on a live GraphQL API.

``observe`` a strawberry-django type, build the schema with ``build_schema``,
serve it with ``gql_observer.asgi.application``.
"""

from __future__ import annotations

from .decorator import observe
from .definition import ObservedDefinition
from .publish import flush
from .schema import build_schema, query_type, subscription_type

__all__ = [
    "ObservedDefinition",
    "build_schema",
    "flush",
    "observe",
    "query_type",
    "subscription_type",
]
