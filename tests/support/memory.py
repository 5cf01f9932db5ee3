"""What an object keeps alive, seen from outside: the tests of memory per
connection ask what it holds, not what its private attributes are called."""

from __future__ import annotations

import collections
import gc
from typing import Any

__all__ = ["containers"]

_CONTAINERS = (list, set, dict, collections.deque)


def containers(obj: object) -> list[Any]:
    """The lists, sets, dicts and deques ``obj`` refers to directly (the values of
    its attributes, slots included), in the order of its attributes."""
    return [r for r in gc.get_referents(obj) if isinstance(r, _CONTAINERS)]
