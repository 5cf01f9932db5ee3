"""Real demo servers (``python -m schema_examples serve``) on free loopback ports."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("GQLOBS_E2E_REDIS", "redis://127.0.0.1:6379/11")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DemoServer:
    """One ``serve`` process (the ASGI application under uvicorn); stopped with SIGTERM."""

    def __init__(
        self,
        env: dict[str, str],
        log: Path,
        *,
        args: tuple[str, ...] = (),
    ) -> None:
        self.port = free_port()
        self.env = env
        self.log = log
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}/graphql/"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql/"

    def start(self, timeout: float = 60) -> DemoServer:
        command = ["serve", "--port", str(self.port), "--log-level", "warning", *self.args]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "schema_examples", *command],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited early:\n{self.log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"serve did not open its port:\n{self.log.read_text()}")

    def stop(self, timeout: float = 15) -> int:
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

    def post(self, query: str, variables: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            self.http,
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())


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


@pytest.fixture
def demo_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DJANGO_SETTINGS_MODULE"}}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    return env


@pytest.fixture
def redis_env(demo_env: dict[str, str], tmp_path: Path) -> Iterator[dict[str, str]]:
    import redis

    prefix = f"e2e{os.getpid()}{tmp_path.name[-8:]}"
    connection = redis.Redis.from_url(REDIS_URL)
    yield {**demo_env, "REDIS_URL": REDIS_URL, "CHANNELS_PREFIX": prefix}
    for key in connection.scan_iter(f"{prefix}*"):
        connection.delete(key)
    connection.close()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[DemoServer]]:
    started: list[DemoServer] = []
    yield started
    for server in started:
        if server.process is not None and server.process.poll() is None:
            server.process.kill()
            server.process.wait()


def start(
    servers: list[DemoServer],
    env: dict[str, str],
    tmp_path: Path,
    *,
    args: tuple[str, ...] = (),
) -> DemoServer:
    server = DemoServer(env, tmp_path / f"server-{len(servers)}.log", args=args)
    servers.append(server)
    return server.start()
