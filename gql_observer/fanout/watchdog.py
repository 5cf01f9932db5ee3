"""Keeping a hub's channel alive: it receives, probes the layer, recovers.

A channel layer can fail loudly (channels_redis's ``receive`` raises when
Redis stops) or silently (a connection that hangs; a Redis that restarted and
forgot the hub's group memberships while its receive goes on). The
:class:`Watchdog` receives the hub's messages, backs off and recovers after a
failure, sends the hub a probe through a group of its own every
``HUB_PROBE_INTERVAL`` and recovers when one does not come back, counts a probe
lost among delivered ones as an overflow of the hub's channel, and renews the
hub's group memberships before channels_redis expires them. A recovery
re-joins every group and hands every subscription a resync delivery: what was
published meanwhile may be lost, the committed state is not.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from gql_observer.changes.events import PROBE, ProbeMessage
from gql_observer.core.backoff import persist
from gql_observer.core.conf import Settings

if TYPE_CHECKING:
    from gql_observer.fanout.hub import Hub

__all__ = ["Watchdog"]

logger = logging.getLogger(__name__)


class Watchdog:
    """The receiving, probing and recovering of one :class:`~gql_observer.fanout.hub.Hub`."""

    def __init__(self, hub: Hub, settings: Settings) -> None:
        self.hub = hub
        self.interval = settings.hub_probe_interval
        self.timeout = settings.publish_timeout
        self.refresh = settings.group_refresh_interval
        self.group = f"{settings.group_prefix}.hub.{hub.token}"
        self.recovering = asyncio.Lock()
        #: The newest probe that came back, and the newest the layer took.
        self.probes_seen = 0
        self.probes_sent = 0
        self._received = 0
        self._receiver: asyncio.Task[None] | None = None
        # The layer failed and no probe has come back since: what was published
        # meanwhile may be lost, even after a re-join (a pub/sub layer
        # re-subscribes in the background), so the first probe back resyncs.
        self._unconfirmed = False
        #: Times the layer failed (a receive raised, or a probe did not come back).
        self.layer_failures = 0
        #: Recoveries completed (groups re-joined, subscriptions resynchronised).
        self.resyncs = 0
        #: Probes that never came while later ones did: the hub's channel was
        #: full and the layer dropped messages (each one resynchronises).
        self.overflows = 0

    def start(self) -> None:
        """Receive, renew memberships, and probe (unless probes are off)."""
        self._receiver = self.hub.spawn(self._receive_loop(), "gql_observer.hub.receive")
        self.hub.spawn(self._refresh_loop(), "gql_observer.hub.refresh")
        if self.interval is not None:
            self.hub.spawn(self._probe_loop(self.interval), "gql_observer.hub.probe")

    def groups(self) -> list[str]:
        """The groups the hub's channel must be in: the hub's, and the probes'."""
        groups = list(self.hub.joined)
        if self.interval is not None:
            groups.append(self.group)
        return groups

    # ---- receiving ----------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        hub = self.hub
        assert hub.channel is not None
        channel = hub.channel
        while True:
            message = await persist(
                lambda: hub.layer.receive(channel), failed=self._receive_failed, again=self.recover
            )
            self._received += 1
            hub.dispatch(message)

    def _receive_failed(self, attempt: int, error: BaseException) -> None:
        self.layer_failures += 1
        logger.warning(
            "Channel layer receive failed (%s); reconnecting", error, exc_info=attempt == 1
        )

    async def _refresh_loop(self) -> None:
        # channels_redis forgets memberships after group_expiry; renew them well before.
        interval = self.refresh
        if interval is None:
            interval = max(1.0, float(getattr(self.hub.layer, "group_expiry", 86400)) / 2)
        while True:
            await asyncio.sleep(interval)
            if self.recovering.locked():
                continue  # the recovery re-joins everything
            try:
                await self._add_all()
            except Exception:
                logger.warning("Could not refresh group memberships", exc_info=True)

    async def _add_all(self) -> None:
        assert self.hub.channel is not None
        for group in self.groups():
            await asyncio.wait_for(self.hub.layer.group_add(group, self.hub.channel), self.timeout)

    # ---- probing ------------------------------------------------------------------------

    async def _probe_loop(self, interval: float) -> None:
        # A receive can wait forever on a layer that lost the hub's memberships
        # (Redis restarted and the client reconnected) or on a connection that
        # hangs; a message to itself that does not come back shows both.
        channel = self.hub.channel
        assert channel is not None
        await persist(
            lambda: asyncio.wait_for(self.hub.layer.group_add(self.group, channel), self.timeout),
            failed=lambda _, error: logger.warning("Could not join the probe group (%s)", error),
        )
        while True:
            received, nonce = self._received, self.probes_sent + 1
            sent = await self._send_probe(nonce)
            await asyncio.sleep(interval)
            if self.recovering.locked():
                continue
            if self.probes_seen >= nonce:
                if self._unconfirmed:
                    self._unconfirmed = False
                    logger.warning(
                        "Channel layer back (a probe came through after a failure): "
                        "resynchronising %d subscription(s)",
                        self._resync(),
                    )
                continue
            if not sent or self._received > received:
                # Not sent: the layer is down, a later probe tells when it is back.
                # Messages still arrive: the layer works, and the probe waits
                # behind a backlog in the hub's channel (a burst of writes).
                continue
            self.layer_failures += 1
            logger.warning(
                "The channel layer did not deliver this process's probe within %.1fs; "
                "re-joining groups",
                interval,
            )
            await self._restart_receiving()

    async def _send_probe(self, nonce: int) -> bool:
        # Nonces count probes the layer took: a gap among those that come back
        # means the layer dropped one (see probe_came).
        probe: ProbeMessage = {"type": PROBE, "nonce": nonce}
        try:
            await asyncio.wait_for(self.hub.layer.group_send(self.group, probe), self.timeout)
        except Exception:
            logger.debug("Probe %d could not be sent", nonce, exc_info=True)
            if not self._unconfirmed:
                self.layer_failures += 1
                self._unconfirmed = True
            return False
        self.probes_sent = nonce
        return True

    async def _restart_receiving(self) -> None:
        if self._receiver is not None:
            self._receiver.cancel()
            await asyncio.gather(self._receiver, return_exceptions=True)
        await self.recover()
        self._receiver = self.hub.spawn(self._receive_loop(), "gql_observer.hub.receive")

    def probe_came(self, message: dict[str, Any]) -> None:
        """A probe came back (called by the hub's dispatch)."""
        nonce = int(message.get("nonce", 0))
        if nonce > self.probes_seen + 1 and not self.recovering.locked():
            # A probe the layer took never came, and a later one did: the hub's
            # channel was full, and changes may have been dropped too.
            self.overflows += 1
            logger.warning(
                "The channel layer dropped messages to this process's hub (its channel "
                "was full: raise HUB_CAPACITY); resynchronising %d subscription(s)",
                self._resync(),
            )
        self.probes_seen = max(self.probes_seen, nonce)

    # ---- recovering ---------------------------------------------------------------------

    async def recover(self) -> None:
        """Re-join every group, then let every subscriber re-read: what was
        published while the layer was unreachable is lost, the state is not."""
        async with self.recovering:
            attempts = 0

            def failed(attempt: int, error: BaseException) -> None:
                nonlocal attempts
                attempts = attempt
                logger.warning("Channel layer still unreachable (%s); retrying", error)

            await persist(self._add_all, failed=failed)
            count = self._resync()
            # Probes lost with the outage are no news any more.
            self.probes_seen = max(self.probes_seen, self.probes_sent)
            # Until a probe comes back, changes may still be lost.
            self._unconfirmed = self.interval is not None
            logger.warning(
                "Channel layer back after %d failed attempt(s): re-joined %d group(s), "
                "resynchronising %d subscription(s)",
                attempts,
                len(self.hub.joined),
                count,
            )

    def _resync(self) -> int:
        self.resyncs += 1
        return self.hub.resync_all()
