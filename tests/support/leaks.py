"""The password-hash scan: every frame and HTTP body the server sends to an
in-process client (``channels.testing``'s communicators, and so
``GraphQLTransportWSCommunicator``) is recorded for the test whose client reads
it; no test may be sent one that holds a password hash."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

__all__ = ["HASH", "SentFrames", "recording"]

#: What a password hash looks like, whatever the hasher.
HASH = re.compile(r"(md5|pbkdf2_sha256|pbkdf2_sha1|argon2|bcrypt_sha256|scrypt)\$")


class SentFrames:
    """What the server sent: the current test's frames and bodies, and a count
    for the whole run."""

    def __init__(self) -> None:
        #: The frames and bodies of the test that runs.
        self.frames: list[str] = []
        #: How many were recorded in the whole run.
        self.total = 0
        #: Whether a test used the in-process application (then frames must exist).
        self.application_used = False

    def record(self, frame: str) -> None:
        self.frames.append(frame)
        self.total += 1

    def begin_test(self) -> None:
        """A test starts: what came before was another test's."""
        self.frames = []

    def leaked(self) -> list[str]:
        """The current test's frames and bodies that hold a password hash."""
        return [frame for frame in self.frames if HASH.search(frame)]


@contextmanager
def recording() -> Iterator[SentFrames]:
    """Record what the server sends to in-process clients while in the block."""
    from channels.testing import ApplicationCommunicator

    sent = SentFrames()
    original = ApplicationCommunicator.receive_output

    async def receive_output(self: Any, timeout: float = 1) -> Any:
        output = await original(self, timeout)
        for key in ("text", "body"):
            value = output.get(key)
            if value:
                sent.record(value if isinstance(value, str) else value.decode("utf-8", "replace"))
        return output

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ApplicationCommunicator, "receive_output", receive_output)
        yield sent
