"""Test settings: the demo project's, on SQLite (default) or PostgreSQL
(``GQLOBS_TEST_DB=postgres``), with the in-memory channel layer unless a test
switches to Redis."""

from __future__ import annotations

import os
import tempfile

from schema_examples.settings import *  # noqa: F403
from schema_examples.settings import channel_layers

if os.environ.get("GQLOBS_TEST_DB") == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "test",
            "USER": os.environ.get("PGUSER", "postgres"),
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
            "TEST": {"NAME": f"test_gqlobs_{os.getpid()}"},
        }
    }
else:
    # A file, not :memory:: the async tests' ORM calls run in another thread.
    _db = os.path.join(tempfile.gettempdir(), f"gqlobs-test-{os.getpid()}.sqlite3")
    DATABASES = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": _db, "TEST": {"NAME": _db}}
    }

CHANNEL_LAYERS = channel_layers(None)
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEBUG = True

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "tests.support.backends.ObjectPermissionBackend",
]
