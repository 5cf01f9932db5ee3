"""Building the schema: the Query and Subscription types of every observed type,
your own root types merged with them, and the safe default extensions."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Final

import strawberry
from django.conf import settings as django_settings
from graphql import GraphQLError
from strawberry.extensions import (
    DisableIntrospection,
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
)
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext
from strawberry.types.field import StrawberryField
from strawberry.utils.logging import StrawberryLogger

from gql_observer.core.conf import get_settings
from gql_observer.core.errors import is_client_mistake, should_mask
from gql_observer.graphql.documents import PreparedDocuments
from gql_observer.graphql.execution import EventScopedExecutionContext
from gql_observer.graphql.fields import query_field, subscription_field
from gql_observer.graphql.lists import list_query_field, list_subscription_field
from gql_observer.observe import registry

__all__ = [
    "CLIENT_LOGGER",
    "Schema",
    "build_schema",
    "default_extensions",
    "query_type",
    "subscription_type",
]

#: The logger of clients' mistakes (at INFO, without a traceback).
CLIENT_LOGGER: Final = "gql_observer.client"
client_logger = logging.getLogger(CLIENT_LOGGER)


class Schema(strawberry.Schema):
    """strawberry's Schema, logging clients' mistakes (syntax errors, documents that
    do not validate, variables that do not fit, :class:`ClientError` and the other
    errors written for clients) at INFO on ``gql_observer.client``, without a
    traceback; the server's own failures are logged as strawberry logs them (ERROR
    on ``strawberry.execution``, with the traceback)."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        for error in errors:
            if is_client_mistake(error):
                client_logger.info("%s", _one_line(error))
            else:
                StrawberryLogger.error(error, execution_context)


def _one_line(error: GraphQLError) -> str:
    where = ", ".join(f"{loc.line}:{loc.column}" for loc in error.locations or ())
    path = ".".join(map(str, error.path or ()))
    return " ".join(part for part in (error.message, f"at {where}" if where else "", path) if part)


def _type(name: str, fields: dict[str, StrawberryField], doc: str) -> type[Any]:
    return strawberry.type(type(name, (), {**fields, "__doc__": doc, "__module__": __name__}))


def query_type(name: str = "ObservedQuery") -> type[Any]:
    """A Query type with the retrieve field of every observed type (and its list
    field, for a type observed with ``filters=``)."""
    fields = {d.field_name: query_field(d) for d in registry.definitions()}
    for d in registry.definitions():
        if d.list_name is not None:
            fields[d.list_name] = list_query_field(d)
    return _type(name, fields, "Retrieve observed instances.")


def subscription_type(name: str = "ObservedSubscription") -> type[Any]:
    """A Subscription type with the live field of every observed type (and its
    live list field, for a type observed with ``filters=``)."""
    fields = {d.field_name: subscription_field(d) for d in registry.definitions()}
    for d in registry.definitions():
        if d.list_name is not None:
            fields[d.list_name] = list_subscription_field(d)
    return _type(name, fields, "Watch observed instances.")


def build_schema(
    *,
    query: type[Any] | None = None,
    mutation: type[Any] | None = None,
    subscription: type[Any] | None = None,
    types: Sequence[type[Any]] = (),
    **schema_options: Any,
) -> Schema:
    """A strawberry :class:`Schema` with your own root types plus every observed field.

    ``query``/``subscription`` are merged with the observed fields (a name
    clash is an error); everything in ``schema_options`` goes to
    ``strawberry.Schema`` as it is.
    """
    if not any(True for _ in registry.definitions()):
        raise ValueError(
            "No observed types: decorate a strawberry-django type with @observe(Model) "
            "and import its module before build_schema()."
        )
    root_query = merge_types("Query", (*([query] if query else []), query_type()))
    root_subscription = merge_types(
        "Subscription", (*([subscription] if subscription else []), subscription_type())
    )
    schema_options.setdefault("extensions", default_extensions())
    schema_options.setdefault("execution_context_class", EventScopedExecutionContext)
    return Schema(
        query=root_query,
        mutation=mutation,
        subscription=root_subscription,
        types=types,
        **schema_options,
    )


def default_extensions() -> list[Any]:
    """The safe defaults ``build_schema`` installs unless given ``extensions=``:
    depth, token and alias limits, masked errors, documents parsed and validated
    once (:class:`gql_observer.graphql.documents.PreparedDocuments`), and introspection
    only where ``INTROSPECTION`` (default: ``DEBUG``) allows it."""
    options = get_settings()
    # Factories: strawberry builds fresh extensions for every operation.
    depth, tokens, aliases = (
        options.max_query_depth,
        options.max_query_tokens,
        options.max_aliases,
    )
    extensions: list[Any] = [
        lambda: QueryDepthLimiter(max_depth=depth),
        lambda: MaxTokensLimiter(max_token_count=tokens),
        lambda: MaxAliasesLimiter(max_alias_count=aliases),
        lambda: MaskErrors(should_mask_error=should_mask),
        # The transports' parse and validation, done once (and off the event loop
        # for long documents), are what strawberry executes.
        PreparedDocuments,
    ]
    introspection = options.introspection
    if introspection is None:
        introspection = bool(django_settings.DEBUG)
    if not introspection:
        extensions.append(DisableIntrospection)
    return extensions
