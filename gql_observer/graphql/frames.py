"""Payloads as they go on the wire."""

from __future__ import annotations

import json
from typing import Any

from strawberry.types.execution import ExecutionResult

__all__ = ["encode", "result_payload"]


def encode(payload: Any) -> str:
    """JSON as it goes on the wire (compact)."""
    return json.dumps(payload, separators=(",", ":"))


def result_payload(result: ExecutionResult) -> dict[str, Any]:
    """The payload of a result message (``next``, or legacy ``data``)."""
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = [error.formatted for error in result.errors]
    if result.extensions:
        payload["extensions"] = result.extensions
    return payload
