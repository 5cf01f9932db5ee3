"""Where the suite finds its services and its repository."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["E2E_REDIS_URL", "REDIS_URL", "ROOT"]

#: The repository (the demo servers run from it).
ROOT = Path(__file__).resolve().parents[2]
#: The Redis database of the in-process tests (``redis_layer``), flushed by them.
REDIS_URL = os.environ.get("GQLOBS_TEST_REDIS", "redis://127.0.0.1:6379/9")
#: The Redis database the end-to-end servers share (each test under a prefix of its own).
E2E_REDIS_URL = os.environ.get("GQLOBS_E2E_REDIS", "redis://127.0.0.1:6379/11")
