"""The contexts of a connection's operations (``info.context``): one per
connection, made when the first operation needs it, or one per operation made
by the context hook (:mod:`gql_observer.graphql.context`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gql_observer.graphql.context import Context, ContextGetter

if TYPE_CHECKING:
    from gql_observer.transport.operation import Operation

__all__ = ["Contexts"]


class Contexts:
    """The context part of a :class:`~gql_observer.transport.connection.Connection`."""

    __slots__ = ("_context", "context_getter")

    _context: Context | None
    #: The context hook of this connection's operations (``None``: none).
    context_getter: ContextGetter | None
    scope: dict[str, Any]
    connection_params: dict[str, Any] | None

    @property
    def context(self) -> Context:
        """``info.context`` of this connection's operations that have none of their
        own (made when the first one needs it: observed subscriptions whose fields
        are all read off the instance never do)."""
        if self._context is None:
            self._context = Context(**self.context_defaults())
        return self._context

    def context_defaults(self) -> dict[str, Any]:
        """What every context of this connection holds before the context hook."""
        return {
            "request": self,
            "ws": self,
            "response": None,
            "user": self.scope.get("user"),
            "connection_params": self.connection_params,
        }

    def context_of(self, operation: Operation) -> Any:
        """``info.context`` of ``operation``: its own, else the connection's."""
        return self.context if operation.context is None else operation.context
