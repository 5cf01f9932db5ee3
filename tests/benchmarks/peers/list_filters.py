"""The live-lists benchmark's family of filters (L1, L2), shared by its load worker and the
peers' group-per-filter code (P1's ``groups_for_signal``/``groups_for_consumer``, P2's
``post_save`` and resolver). No Django import: the load worker uses it too.

Filter k (the value of ``users(filters: ...)`` on P0 and P2, of the ``filters`` argument of
P1's ``subscribe_to_users`` action): ``username`` starts with ``f<k>-``, OR ``email`` is
``g<k // 10>@x`` (so the filters come in groups of ten sharing an e-mail). A row enters every
filter whose prefix its username has and the ten filters of its e-mail's group.

The peers have no filter engine: as DCRF's docs do with a post's pk, their group names are
computed by hand, one group per filter, ``users.f<k>``, from the filter (subscriber side) and
from the saved row (signal side: the filters the row matches).
"""

from __future__ import annotations

import re
from typing import Any

_PREFIX = re.compile(r"^f(\d+)-")
_EMAIL = re.compile(r"^g(\d+)@x$")


def filter_of(k: int) -> dict[str, Any]:
    """Filter k, as a ``UserFilter`` input value."""
    return {"username": {"startsWith": f"f{k}-"}, "OR": {"email": {"exact": f"g{k // 10}@x"}}}


def key_of(filters: dict[str, Any]) -> int:
    """k of filter k (ValueError for anything else)."""
    prefix = str(((filters or {}).get("username") or {}).get("startsWith") or "")
    found = _PREFIX.match(prefix)
    if found is None or prefix != f"f{found.group(1)}-" or filters != filter_of(int(found[1])):
        raise ValueError(f"not one of the benchmark's filters: {filters!r}")
    return int(found.group(1))


def matching_keys(username: str, email: str) -> list[int]:
    """Every k whose filter a row with ``username`` and ``email`` matches."""
    keys = set()
    found = _PREFIX.match(username)
    if found is not None:
        keys.add(int(found.group(1)))
    found = _EMAIL.match(email)
    if found is not None:
        group = int(found.group(1))
        keys.update(range(group * 10, group * 10 + 10))
    return sorted(keys)


def group_of(k: int) -> str:
    """The peers' channel-layer group of filter k."""
    return f"users.f{k}"


def l2_username(marker: str, filters: int, n: int) -> str:
    """L2's n-th create: it enters filter ``n % filters`` only."""
    return f"f{n % filters}-{marker}-{n}"
