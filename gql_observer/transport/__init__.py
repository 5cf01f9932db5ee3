"""The wire: the ASGI application, graphql-transport-ws and legacy graphql-ws on
the websocket, Django's request guards, and the testing communicator."""
