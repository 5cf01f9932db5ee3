"""uvicorn's websocket protocol holding less per connection (public entry point):
``uvicorn --ws gql_observer.uvicorn:WebSocketProtocol``. Implemented in
:mod:`gql_observer.transport.uvicorn`."""

from __future__ import annotations

from gql_observer.transport.uvicorn import WebSocketProtocol

__all__ = ["WebSocketProtocol"]
