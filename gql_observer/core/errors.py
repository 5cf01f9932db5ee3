"""Errors whose message is meant for the client, and the masking of all others."""

from __future__ import annotations

from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError
from graphql import GraphQLError

__all__ = ["ClientError", "is_client_mistake", "should_mask"]


class ClientError(Exception):
    """Raise it in a resolver to tell the client why: its message is shown as it is.

    Any other exception reaches the client as "Unexpected error." (the server
    logs it), so no traceback, SQL or setting ever leaves the server.
    """


_PUBLIC = (ClientError, ValidationError, PermissionDenied, ObjectDoesNotExist)


def should_mask(error: GraphQLError) -> bool:
    """Mask errors raised by code, except the ones written for clients; GraphQL's
    own errors (syntax, validation) are always shown."""
    original = error.original_error
    if original is None or isinstance(original, GraphQLError):
        return False
    return not isinstance(original, _PUBLIC)


def is_client_mistake(error: GraphQLError) -> bool:
    """Whether ``error`` is the client's doing (a syntax error, a document that does
    not validate, variables that do not fit, an error written for clients) rather
    than the server's own failure: the former is logged without a traceback."""
    return not should_mask(error)
