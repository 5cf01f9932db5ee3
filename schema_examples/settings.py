"""Settings of the demo project; ``DATABASE_URL``, ``REDIS_URL``, ``REDIS_LAYER``,
``ALLOWED_HOSTS``, ``CSRF_TRUSTED_ORIGINS``, ``DEBUG``, ``SECRET_KEY`` and
``GRAPHIQL_ASSETS_DIR`` / ``GRAPHIQL_ASSETS_URL`` come from the environment.

What people copy from a demo must be safe: ``DEBUG`` is off unless the
environment turns it on (``scripts/demo.sh`` does, for GraphiQL), and without a
``SECRET_KEY`` in the environment each checkout makes its own, once, and keeps it
in ``var/secret_key`` beside the demo database (untracked, readable by its owner
only): no key in the repository can sign tokens for anybody's demo.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.core.management.utils import get_random_secret_key

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"


def _list(name: str) -> list[str]:
    return [item for item in os.environ.get(name, "").split(",") if item]


def secret_key(directory: Path = VAR) -> str:
    """``SECRET_KEY`` from the environment, else the one kept in
    ``directory/secret_key``, made (randomly, once) by the first process that
    needs it; processes that start together all read the same one."""
    key = os.environ.get("SECRET_KEY")
    if key:
        return key
    path = directory / "secret_key"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        draft = directory / f".secret_key.{os.getpid()}"
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(get_random_secret_key() + "\n")
        try:
            os.link(draft, path)  # atomic; another process may have been first
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    key = path.read_text().strip()
    if not key:
        raise ImproperlyConfigured(f"{path} is empty: delete it, or set SECRET_KEY.")
    return key


SECRET_KEY = secret_key()
DEBUG = os.environ.get("DEBUG", "0") not in {"0", "false", "False", ""}
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]", *_list("ALLOWED_HOSTS")]
# Browser pages on other origins that may use the session (CSRF) and open websockets.
CSRF_TRUSTED_ORIGINS = _list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "strawberry_django",
    "gql_observer",
    "schema_examples.users.apps.UsersConfig",
    "schema_examples.notes.apps.NotesConfig",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "schema_examples.urls"
ASGI_APPLICATION = "schema_examples.asgi.application"

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{VAR / 'demo.sqlite3'}",
        conn_max_age=int(os.environ.get("CONN_MAX_AGE", "0")),
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# `python -m schema_examples gql_observer_graphiql_assets` fetches GraphiQL's assets
# into STATIC_ROOT/gql_observer/graphiql; GRAPHIQL_ASSETS_DIR=<that> serves them.
STATIC_ROOT = VAR / "static"


def channel_layers(redis_url: str | None, kind: str = "core") -> dict[str, Any]:
    """The in-memory layer for one process; channels_redis when ``redis_url`` is set:
    its ``RedisChannelLayer`` (``kind="core"``) or its ``RedisPubSubChannelLayer``
    (``kind="pubsub"``)."""
    if not redis_url:
        return {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    prefix = os.environ.get("CHANNELS_PREFIX", "asgi")
    if kind == "pubsub":
        return {
            "default": {
                "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                "CONFIG": {"hosts": [redis_url], "prefix": prefix},
            }
        }
    if kind != "core":
        raise ImproperlyConfigured(f"REDIS_LAYER must be core or pubsub, not {kind!r}")
    return {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # channels_redis blocks 5 s in BZPOPMIN; a read timeout of the same
                # length would cut idle connections (channels_redis #422).
                "hosts": [{"address": redis_url, "socket_timeout": 30}],
                "prefix": prefix,
            },
        }
    }


CHANNEL_LAYERS = channel_layers(os.environ.get("REDIS_URL"), os.environ.get("REDIS_LAYER", "core"))

GQL_OBSERVER = {
    "SCHEMA": "schema_examples.schema.schema",
    # "0": every change, the server's own mutations' too, goes through the channel layer.
    "DELIVER_IN_PROCESS": os.environ.get("DELIVER_IN_PROCESS", "1") != "0",
    # GraphiQL without internet: its assets from this server (or from another host).
    "GRAPHIQL_ASSETS_DIR": os.environ.get("GRAPHIQL_ASSETS_DIR") or None,
    "GRAPHIQL_ASSETS_URL": os.environ.get("GRAPHIQL_ASSETS_URL") or None,
}

USE_TZ = True
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"gql_observer": {"handlers": ["console"], "level": "INFO"}},
}
