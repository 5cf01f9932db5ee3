"""Testing your own app over graphql-transport-ws (public entry point).
Implemented in :mod:`gql_observer.transport.testing`."""

from __future__ import annotations

from gql_observer.transport.testing import (
    GraphQLTransportWSCommunicator,
    ProtocolError,
    close_runtime,
    settle,
)

__all__ = ["GraphQLTransportWSCommunicator", "ProtocolError", "close_runtime", "settle"]
