"""Channel-layer group names: valid for every layer, bounded in length."""

from __future__ import annotations

import hashlib
import re

__all__ = ["MAX_GROUP_NAME", "instance_group", "model_group"]

#: Channels refuses names of 100 characters or more.
MAX_GROUP_NAME = 99
_VALID = re.compile(r"^[a-zA-Z0-9\-_.]+$")


def instance_group(prefix: str, model_label: str, pk: object) -> str:
    """The group every change of one instance is sent to.

    ``gqlobs.auth.user.1`` where the primary key is made of safe characters;
    a digest of it otherwise (UUIDs with braces, text keys with spaces, long keys).
    """
    return _group_name(f"{prefix}.{model_label}", str(pk))


def model_group(prefix: str, model_label: str) -> str:
    """The group of every hub that has a subscriber of some instance of a model.

    ``gqlobs-model.auth.user``: the ``-model`` suffix keeps it apart from every
    instance group (those start with ``<prefix>.``). A publisher sends a batch
    of changes to several instances of one model here, once.
    """
    return _group_name(f"{prefix}-model", model_label)


def _group_name(head: str, key: str) -> str:
    """``<head>.<key>`` where ``key`` is made of safe characters and the name is
    short enough; ``<head>.h<digest of key>`` otherwise."""
    name = f"{head}.{key}"
    if _VALID.match(key) and len(name) <= MAX_GROUP_NAME:
        return name
    digest = hashlib.blake2b(key.encode(), digest_size=16).hexdigest()
    return f"{head}.h{digest}"[:MAX_GROUP_NAME]
