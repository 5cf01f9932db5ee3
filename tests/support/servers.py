"""Real servers on loopback ports. The ``servers`` fixture (tests/conftest.py)
hands a test a :class:`Servers`, which starts them and, when the test ends,
stops whatever it left running:

- ``servers.in_thread()``: the demo application under uvicorn in a thread of the
  test's own process (:class:`ThreadServer`), where a test reads the server's
  hub or uvicorn's protocol objects;
- ``servers.demo(env)``: ``python -m schema_examples serve`` in a process of its
  own (:class:`DemoServer`), where processes must be separate (several servers
  with Redis between them, signals, the demo's own settings);
- ``servers.redis()``: a ``redis-server`` of the test's own (:class:`RedisServer`),
  to stop and start at will.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gql_observer.fanout.hub import Hub
from gql_observer.uvicorn import WebSocketProtocol
from tests.support import runtime
from tests.support.environment import ROOT

__all__ = [
    "DemoServer",
    "ProcessServer",
    "RedisServer",
    "Server",
    "Servers",
    "ThreadServer",
    "free_port",
    "run_shell",
]


def free_port() -> int:
    """A loopback port nobody listens on (now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A server of the demo's application on a loopback port."""

    port: int

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}/graphql/"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql/"

    def post(self, query: str, variables: dict[str, Any] | None = None) -> Any:
        """POST a GraphQL request; the decoded answer."""
        request = urllib.request.Request(
            self.http,
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def ensure_stopped(self) -> None:
        """Stop it if it still runs, without ceremony (the end of a test)."""
        raise NotImplementedError


class ThreadServer(Server):
    """The demo application on uvicorn, in a thread with its own loop; ``ws`` is
    uvicorn's websocket implementation (gql_observer's by default).

    Its listening socket has a small send buffer, which accepted sockets inherit:
    a client that stops reading stalls the server's writes after kilobytes, not
    after the megabytes Linux would otherwise buffer."""

    def __init__(self, ws: str | type[asyncio.Protocol] = WebSocketProtocol) -> None:
        import uvicorn

        from schema_examples.asgi import application

        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        config = uvicorn.Config(
            application, lifespan="on", log_level="warning", timeout_graceful_shutdown=2, ws=ws
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name="live-server", daemon=True
        )

    def start(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        if self.thread.is_alive():
            self.server.force_exit = True
            self.thread.join(10)
        self.sock.close()

    def ensure_stopped(self) -> None:
        if self.thread.is_alive():
            self.stop()
        self.sock.close()

    @property
    def connections(self) -> set[Any]:
        """uvicorn's protocol objects of the open connections (use them on :attr:`loop`)."""
        connections: set[Any] = self.server.server_state.connections
        return connections

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The server's event loop (of its first connection: uvicorn has one)."""
        loop: asyncio.AbstractEventLoop = next(iter(self.connections)).loop
        return loop

    async def on_hub(self, function: Callable[[Hub], Any]) -> Any:
        """Run ``function(hub)`` on the server's loop, where its hub lives."""

        def call() -> Any:
            hub = runtime.started_hub()
            assert hub is not None
            return function(hub)

        return await self.on_loop(call)

    async def on_loop(self, function: Callable[[], Any]) -> Any:
        """Run ``function()`` on the server's loop (uvicorn's protocol objects are its)."""

        async def call() -> Any:
            return function()

        future = asyncio.run_coroutine_threadsafe(call(), self.loop)
        return await asyncio.wait_for(asyncio.wrap_future(future), 5)


class ProcessServer(Server):
    """A server in a process of its own, its output in ``log``; stopped with SIGTERM."""

    #: What the errors call it.
    name = "server"
    #: Where it runs.
    cwd = ROOT

    def __init__(self, log: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.log = log
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        """Whether it serves (by default: whether its port takes a connection)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def start(self, timeout: float = 60) -> Any:
        """Start it (again, after :meth:`stop`) and wait until it is :meth:`ready`."""
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.command(), cwd=self.cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log.read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.name} did not start in {timeout}s:\n{self.log.read_text()}"
                )
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM, and wait for it to exit; its exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise
        return int(self.process.returncode)

    def ensure_stopped(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class DemoServer(ProcessServer):
    """One ``python -m schema_examples serve`` (the demo under uvicorn)."""

    name = "serve"

    def __init__(self, env: dict[str, str], log: Path, *, args: tuple[str, ...] = ()) -> None:
        super().__init__(log, env)
        self.args = args

    def command(self) -> list[str]:
        serve = ["serve", "--port", str(self.port), "--log-level", "warning", *self.args]
        return [sys.executable, "-m", "schema_examples", *serve]

    def start(self, timeout: float = 60) -> DemoServer:
        started: DemoServer = super().start(timeout)
        return started


class RedisServer(ProcessServer):
    """A ``redis-server`` without persistence, of one test's own."""

    name = "redis-server"

    def __init__(self, log: Path) -> None:
        super().__init__(log)
        self.cwd = log.parent

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            "redis-server",
            *("--port", str(self.port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--daemonize", "no"),
        ]

    def ready(self) -> bool:
        import redis

        connection = redis.Redis.from_url(self.url)
        try:
            return bool(connection.ping())
        except redis.ConnectionError:
            return False
        finally:
            connection.close()

    def start(self, timeout: float = 10) -> RedisServer:
        started: RedisServer = super().start(timeout)
        return started


class Servers:
    """The servers of one test (its ``servers`` fixture); logs go to ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[Server] = []
        self.demos = 0

    def in_thread(self, ws: str | type[asyncio.Protocol] = WebSocketProtocol) -> ThreadServer:
        """The demo application on uvicorn in a thread of this process, started."""
        server = ThreadServer(ws)
        self.started.append(server)
        return server.start()

    def demo(self, env: dict[str, str], *, args: tuple[str, ...] = ()) -> DemoServer:
        """A demo server in a process of its own, started; its log is ``server-<n>.log``."""
        server = DemoServer(env, self.directory / f"server-{self.demos}.log", args=args)
        self.demos += 1
        self.started.append(server)
        return server.start()

    def redis(self) -> RedisServer:
        """A Redis of the test's own, started."""
        server = RedisServer(self.directory / "redis.log")
        self.started.append(server)
        return server.start()

    def close(self) -> None:
        for server in reversed(self.started):
            server.ensure_stopped()


def run_shell(
    env: dict[str, str], code: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -m schema_examples shell -c CODE`` in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "schema_examples", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
