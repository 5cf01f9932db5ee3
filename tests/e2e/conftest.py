"""The environments of the demo servers the end-to-end tests start (through the
``servers`` fixture: tests/support/servers.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.environment import E2E_REDIS_URL
from tests.support.servers import RedisServer, Servers


@pytest.fixture
def demo_env(tmp_path: Path) -> dict[str, str]:
    """The demo's environment, on a SQLite database of the test's own."""
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DJANGO_SETTINGS_MODULE"}}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    return env


@pytest.fixture
def redis_env(demo_env: dict[str, str], tmp_path: Path) -> Iterator[dict[str, str]]:
    """The demo's environment on the shared Redis, under a prefix of the test's own
    (its keys are deleted after it)."""
    import redis

    prefix = f"e2e{os.getpid()}{tmp_path.name[-8:]}"
    connection = redis.Redis.from_url(E2E_REDIS_URL)
    yield {**demo_env, "REDIS_URL": E2E_REDIS_URL, "CHANNELS_PREFIX": prefix}
    for key in connection.scan_iter(f"{prefix}*"):
        connection.delete(key)
    connection.close()


@pytest.fixture
def own_redis(servers: Servers) -> RedisServer:
    """A Redis of the test's own, to stop and start at will."""
    return servers.redis()
