"""``manage.py gql_observer_serve``: the GraphQL websocket endpoint without an ASGI server."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from gql_observer.server import run


class Command(BaseCommand):
    help = (
        "Serve the GraphQL websocket endpoint (graphql-transport-ws and legacy graphql-ws) "
        "with the websockets library, without an ASGI server; HTTP stays with your ASGI or "
        "WSGI server. Stops cleanly on SIGTERM or SIGINT."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8001)
        parser.add_argument("--path", default="graphql/", help="the websocket's path")
        parser.add_argument(
            "--ping-interval",
            type=float,
            default=20.0,
            help="seconds between websocket-level pings that detect dead peers (0: none)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["ping_interval"] < 0:
            raise CommandError("--ping-interval is a number of seconds >= 0 (0: no pings).")
        if options["verbosity"] < 2:
            # Not a line per connection opened and closed.
            logging.getLogger("websockets").setLevel(logging.WARNING)
        host, port = options["host"], options["port"]

        def ready(server: Any) -> None:
            self.stdout.write(f"Serving GraphQL websockets on ws://{host}:{port}/{options['path']}")
            self.stdout.flush()

        asyncio.run(
            run(
                host,
                port,
                path=options["path"],
                ping_interval=options["ping_interval"] or None,
                ready=ready,
            )
        )
