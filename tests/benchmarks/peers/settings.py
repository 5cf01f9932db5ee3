"""Django settings shared by the peer servers (P1, P2); everything comes from the environment.

BENCH_DATABASE_URL  dj-database-url string (default: a SQLite file in /tmp)
BENCH_REDIS_URL     redis://127.0.0.1:6379/<db>; unset = InMemoryChannelLayer
BENCH_REDIS_LAYER   "pubsub": channels_redis's RedisPubSubChannelLayer (default: RedisChannelLayer)
BENCH_SYSTEM        "P1", "P2", "LU" or "LUr" (only changes which apps are installed)
CONN_MAX_AGE        seconds a database connection is kept (default 60: persistent, the
                    peers' best case; with Django's default 0, DCRF's read per subscriber
                    would open a new PostgreSQL connection each time)
BENCH_DB_POOL       "1": PostgreSQL through psycopg's pool with CONN_MAX_AGE 0, as Django
                    advises under ASGI (uvicorn runs each sync view on a new thread, so
                    CONN_MAX_AGE alone still connects once per request)
"""

from __future__ import annotations

import os

import dj_database_url

SYSTEM = os.environ.get("BENCH_SYSTEM", "P1")

SECRET_KEY = "fanout-benchmark-not-secret"
DEBUG = False  # DEBUG=True would keep every SQL query in memory and skew RSS and latency
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
ROOT_URLCONF = "tests.benchmarks.peers.urls"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
]
if SYSTEM == "P1":
    INSTALLED_APPS += ["rest_framework"]

MIDDLEWARE: list[str] = []

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("BENCH_DATABASE_URL", "sqlite:////tmp/gqlo-bench-peers.sqlite3"),
        conn_max_age=int(os.environ.get("CONN_MAX_AGE", "60")),
    )
}
if os.environ.get("BENCH_DB_POOL") == "1" and DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # What Django advises under ASGI: no persistent connections, psycopg's pool instead (an
    # ASGI server runs each sync request on a new thread, whose connection dies with it).
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = True

_redis_url = os.environ.get("BENCH_REDIS_URL")
if _redis_url and os.environ.get("BENCH_REDIS_LAYER") == "pubsub":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [_redis_url]},
        }
    }
elif _redis_url:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # the same read timeout as gql_observer's demo: channels_redis blocks 5 s in
            # BZPOPMIN, and an equal socket timeout cuts idle receivers (channels_redis #422)
            "CONFIG": {"hosts": [{"address": _redis_url, "socket_timeout": 30}]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}
