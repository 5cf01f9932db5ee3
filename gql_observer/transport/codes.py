"""The close codes of the GraphQL websocket: the protocol's (graphql-transport-ws,
4400-4499) and the WebSocket standard's we use."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["CloseCode"]


class CloseCode(IntEnum):
    """Why the server closed a websocket."""

    #: A legacy graphql-ws client asked to end (``connection_terminate``), or its
    #: ``connection_init`` payload was not an object.
    NORMAL = 1000
    #: Legacy graphql-ws: a binary frame.
    PROTOCOL_ERROR = 1002
    #: A frame over ``MAX_MESSAGE_SIZE``.
    MESSAGE_TOO_BIG = 1009
    #: Legacy graphql-ws: the credential was refused.
    INTERNAL_ERROR = 1011
    #: The client took no message for ``SEND_TIMEOUT`` ("Client too slow"), or the
    #: database could not be reached to check its credential ("Try again later").
    TRY_AGAIN_LATER = 1013
    #: A message the protocol does not allow (a reason says which).
    BAD_REQUEST = 4400
    #: ``subscribe`` before the ``connection_ack``.
    UNAUTHORIZED = 4401
    #: A credential in ``connection_init`` that is not valid.
    FORBIDDEN = 4403
    #: The handshake offered neither graphql-transport-ws nor graphql-ws.
    SUBPROTOCOL_NOT_ACCEPTABLE = 4406
    #: No ``connection_init`` within ``CONNECTION_INIT_TIMEOUT``.
    CONNECTION_INIT_TIMEOUT = 4408
    #: A ``subscribe`` with the id of an operation still running.
    SUBSCRIBER_ALREADY_EXISTS = 4409
    #: A second ``connection_init``.
    TOO_MANY_INITIALISATION_REQUESTS = 4429
