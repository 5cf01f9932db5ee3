"""P0w: gql_observer on its own websocket server (``gql_observer.server``, what
``manage.py gql_observer_serve`` runs) instead of uvicorn, with P0's settings.

The benchmark's HTTP GET paths (``/bench/save/``, ``/bench/ping/``, ``/bench/stats/``,
``/bench/credentials/``) are answered before the handshake, as the floor server answers them:
the save runs the same ``save_burst`` as the Django servers' view, on a thread of its own (as
Django runs a sync view on a thread per request), the credentials too, and the stats are read
on the event loop.

    python -m tests.benchmarks.peers.p0_ws --port 8766
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.benchmarks.peers.p0_settings")

import django  # noqa: E402

django.setup()

from websockets.asyncio.server import ServerConnection  # noqa: E402
from websockets.http11 import Request, Response  # noqa: E402

from gql_observer.server import GraphQLWebsocketServer, run  # noqa: E402
from tests.benchmarks.peers.urls import credentials, p0_stats, save_burst  # noqa: E402

_SAVES = ThreadPoolExecutor(1, thread_name_prefix="bench-save")


def _json(connection: ServerConnection, body: dict[str, Any]) -> Response:
    response = connection.respond(HTTPStatus.OK, json.dumps(body))
    response.headers["Content-Type"] = "application/json"
    return response


class BenchServer(GraphQLWebsocketServer):
    async def process_request(  # type: ignore[override]
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        url = urlsplit(request.path)
        if url.path == "/bench/ping/":
            return _json(connection, {"ok": True})
        if url.path == "/bench/stats/":
            return _json(connection, p0_stats())
        if url.path == "/bench/save/":
            query = parse_qs(url.query)
            pks = [int(p) for p in query["pk"][0].split(",")]
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(_SAVES, save_burst, pks, query["marker"][0])
            return _json(connection, result)
        if url.path == "/bench/credentials/":
            n = int(parse_qs(url.query)["n"][0])
            loop = asyncio.get_running_loop()
            return _json(connection, await loop.run_in_executor(_SAVES, credentials, n))
        return super().process_request(connection, request)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(run(args.host, args.port, endpoint_class=BenchServer))


if __name__ == "__main__":
    main()
