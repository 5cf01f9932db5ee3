"""Channel-layer group names: valid for every layer, bounded in length."""

from __future__ import annotations

import hashlib
import re

__all__ = ["MAX_GROUP_NAME", "instance_group"]

#: Channels refuses names of 100 characters or more.
MAX_GROUP_NAME = 99
_VALID = re.compile(r"^[a-zA-Z0-9\-_.]+$")


def instance_group(prefix: str, model_label: str, pk: object) -> str:
    """The group every change of one instance is sent to.

    ``gqlobs.auth.user.1`` where the primary key is made of safe characters;
    a digest of it otherwise (UUIDs with braces, text keys with spaces, long keys).
    """
    key = str(pk)
    name = f"{prefix}.{model_label}.{key}"
    if _VALID.match(key) and len(name) <= MAX_GROUP_NAME:
        return name
    digest = hashlib.blake2b(key.encode(), digest_size=16).hexdigest()
    return f"{prefix}.{model_label}.h{digest}"[:MAX_GROUP_NAME]
