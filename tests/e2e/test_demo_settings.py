"""End to end: the demo is safe to copy. ``DEBUG`` is off unless the environment
turns it on, and tokens are signed with a key of this checkout's own (or the
environment's), never with a constant anybody can read in the repository."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import websockets
from django.core import signing
from django.utils.crypto import salted_hmac

from tests.support.environment import ROOT
from tests.support.servers import Servers

pytestmark = pytest.mark.timeout(120)

#: The demo's former SECRET_KEY, public in the repository's history.
PUBLIC_KEY = "schema-examples-not-a-secret"
SALT = "gql_observer.token"


@pytest.fixture
def plain_env(demo_env: dict[str, str]) -> dict[str, str]:
    """The demo's environment with neither DEBUG nor SECRET_KEY."""
    return {k: v for k, v in demo_env.items() if k not in {"DEBUG", "SECRET_KEY"}}


def get(url: str, accept: str = "text/html") -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_debug_is_off_unless_the_environment_turns_it_on(
    plain_env: dict[str, str], servers: Servers
) -> None:
    server = servers.demo(plain_env)
    base = f"http://127.0.0.1:{server.port}"
    status, page = get(f"{base}/no-such-page/")
    assert status == 404
    assert "URLconf" not in page and "Traceback" not in page and "DEBUG" not in page
    assert get(server.http)[0] == 404  # no GraphiQL either: it follows DEBUG
    assert server.stop() == 0

    # scripts/demo.sh turns it on: Django's pages for developers, and GraphiQL.
    debug = servers.demo({**plain_env, "DEBUG": "1"})
    status, page = get(f"http://127.0.0.1:{debug.port}/no-such-page/")
    assert "DEBUG=True" in page
    status, page = get(debug.http)
    assert status == 200 and "graphiql" in page.lower()
    assert debug.stop() == 0


def token(path: Path, key: str, username: str = "test 1") -> str:
    """A token as ``issue_token`` makes it, signed with ``key``: what anybody who
    knows the key (and the user's password hash) can make."""
    with sqlite3.connect(path) as db:
        pk, password = db.execute(
            "SELECT id, password FROM auth_user WHERE username = ?", (username,)
        ).fetchone()
    fingerprint = salted_hmac(SALT, password, secret=key, algorithm="sha256").hexdigest()[:16]
    return signing.dumps({"u": str(pk), "p": fingerprint}, key=key, salt=SALT, compress=True)


def issued(env: dict[str, str]) -> str:
    """A token from ``python -m schema_examples gql_observer_token`` (another process)."""
    return subprocess.run(
        [sys.executable, "-m", "schema_examples", "gql_observer_token", "test 1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()


async def init(url: str, credential: str) -> dict[str, object] | tuple[int, str]:
    """``connection_init`` with ``credential``: the ack, or the close code and reason."""
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": {"token": credential}}))
        try:
            return dict(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        except websockets.ConnectionClosed:
            pass
        assert ws.close_code is not None
        return ws.close_code, ws.close_reason or ""


async def test_tokens_signed_with_the_former_public_key_are_refused(
    plain_env: dict[str, str], servers: Servers, tmp_path: Path
) -> None:
    server = servers.demo(plain_env)
    database = tmp_path / "demo.sqlite3"
    assert await init(server.ws, token(database, PUBLIC_KEY)) == (4403, "Forbidden")
    # The key this checkout made for itself, once, is every demo process's key.
    assert await init(server.ws, await asyncio.to_thread(issued, plain_env)) == {
        "type": "connection_ack"
    }
    key_file = ROOT / "var" / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert await init(server.ws, token(database, key_file.read_text().strip())) == {
        "type": "connection_ack"
    }
    ignored = await asyncio.to_thread(
        subprocess.run, ["git", "check-ignore", "-q", str(key_file)], cwd=ROOT, check=False
    )
    assert ignored.returncode == 0, "var/secret_key must never be committed"


async def test_a_secret_key_from_the_environment_is_the_one_used(
    plain_env: dict[str, str], servers: Servers, tmp_path: Path
) -> None:
    env = {**plain_env, "SECRET_KEY": "a key of the environment's own"}
    server = servers.demo(env)
    database = tmp_path / "demo.sqlite3"
    assert await init(server.ws, token(database, "a key of the environment's own")) == {
        "type": "connection_ack"
    }
    assert await init(server.ws, await asyncio.to_thread(issued, plain_env)) == (4403, "Forbidden")
