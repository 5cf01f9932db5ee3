"""Load worker: holds the websocket clients of ONE system and times its saves.

The orchestrator (fanout.py) starts one worker per system and drives it with JSON lines on
stdin; every command is answered with one JSON line on stdout. One process per system keeps
each worker under the fd limit (N=5000 clients x 4 systems would not fit in one process) and
keeps one system's client objects from slowing another's reads; only one worker is busy at a
time, so they do not compete for the CPU.

Timing (all ``time.monotonic()``, CLOCK_MONOTONIC, comparable across processes on Linux):
  t0       just before the worker writes the trigger request (HTTP GET or GraphQL mutation);
  t_first  when the first subscriber's reader task sees its frame of this save;
  t_last   when the last subscriber's reader task sees it.
Latency = t_last - t0: the HTTP hop, the save, the fan-out and the load process's own reads
(the floor system F shows how much of that is websockets + this process alone).

A save of instance ``pk`` sets its username to ``<marker>-<pk>``; a subscriber of ``pk``
counts the first frame containing ``<marker>-<pk>"`` (the quote: ``-1"`` is not ``-10"``).
That frame must also carry the subscriber's own requestId (a 13-digit number, so it cannot be
another's) and, in W1x, the email only a signed-in viewer gets; one that does not is counted
as received but makes the save fail (``bad``, with an example), so a system that sent every
subscriber the same frame, or an anonymous one, is not timed.

What each subscriber sends, as real clients do (``spec`` of ``connect``):
  rid        "own" (default): requestId = a millisecond timestamp taken when the worker starts
             + the subscriber's slot (0..n-1), sent in the document's variables, the document
             text the same for all; "same" (W1same): every subscriber the very same document,
             ``requestId: 1`` inline (DCRF: ``request_id`` 1).
  selections W2: slot % selections picks one of systems.SELECTIONS (default 1: W1's).
  field      the subscription field: "user", or P0's and P2's "userP" (W1p), "userX" (W1x).
  auth       logged-in viewers: subscriber ``slot`` is user ``slot + 1``, with the credential
             the server's ``GET /bench/credentials/?n=`` gives: a gql_observer token in
             ``connection_init``'s payload (``{"token": ...}``), or a session key sent as the
             handshake's ``Cookie`` (P1 at its ``ws_auth_path``). The floors get none.
  must       a string every data frame must contain (W1x: the email), on Django systems.

W4 (many saves of a few rows, see ``track``): each subscriber keeps the number of the last
value it got (``<marker>-<number>``, numbers grow with every save), when it first got it, and
how many data frames came; nothing is parsed beyond finding that number.

Commands (JSON objects with "cmd"):
  connect {n, pk | distinct | pks, concurrency, timeout, spec}  top up to n subscribers, slots
                                                    0..n-1 (of pk, of pk slot+1 when distinct,
                                                    or pks[slot % len(pks)]); spec: see above
  save {marker, pks, timeout, progress}             trigger one save of each pk, wait
  stall {pk, timeout}                               one more subscriber that never reads
  backlog {}                                        kernel bytes queued towards it (ss)
  track {marker}                                    W4: start counting from zero
  settle {final, quiet, timeout}                    W4: wait until no frame came for quiet s
                                                    (or timeout), then check every subscriber's
                                                    last value against final {pk: value}
  unstall {} | close {} | exit {}
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import json
import resource
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.benchmarks.fanout import run_loop
from tests.benchmarks.systems import GQL_SUBSCRIPTION_SAME, SYSTEMS, System, gql_document

# graphql-core parses at most 2000 tokens per document and gql_observer's schema allows 30
# aliases: a W3 burst goes to P0 as several documents, sent one after the other
MUTATIONS_PER_DOCUMENT = 25


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass
class Tally:
    """What one save produced across all subscribers of this worker."""

    expected: int = 0
    count: int = 0
    t_first: float = 0.0
    t_last: float = 0.0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    on_first: Any = None
    bad: int = 0  # frames of this save without the subscriber's requestId (or W1x's email)
    bad_example: str | None = None

    def reset(self, expected: int, on_first: Any = None) -> None:
        self.expected = expected
        self.on_first = on_first
        self.count = self.bad = 0
        self.bad_example = None
        self.t_first = self.t_last = 0.0
        self.done = asyncio.Event()
        if expected == 0:
            self.done.set()

    def hit(self, bad: str | None = None) -> None:
        now = time.monotonic()
        self.count += 1
        if bad is not None:
            self.bad += 1
            if self.bad_example is None:
                self.bad_example = bad[:300]
        if self.count == 1:
            self.t_first = now
            if self.on_first is not None:
                self.on_first()
        self.t_last = now
        if self.count >= self.expected:
            self.done.set()


@dataclass
class Sub:
    ws: ClientConnection
    pk: str
    slot: int = -1
    check: tuple[str, ...] = ()  # what each of its data frames must also contain
    expect: str | None = None  # what this save's frame contains, while a save is timed
    task: asyncio.Task[None] | None = None
    # W4, while tracking: data frames, the number of the last value, when it first came
    frames: int = 0
    seq: int = 0
    t_value: float = 0.0
    repeats: int = 0  # frames carrying the value the subscriber already held
    regressions: int = 0  # frames carrying an older value than one already held


class Worker:
    def __init__(self, system: System, port: int, more_ports: tuple[int, ...] = ()) -> None:
        self.system = system
        self.port = port  # saves are triggered here
        # subscribers alternate between every server of the system (P0x2: two processes)
        self.ports = (port, *more_ports)
        self._opened = 0
        self.subs: list[Sub] = []
        self.stalled: ClientConnection | None = None
        self.tally = Tally()
        self.closed_unexpectedly = 0
        self.track_prefix: str | None = None  # W4: '"<marker>-' while tracking
        self.frames = 0
        self.t_last_frame = 0.0
        # requestIds: a millisecond timestamp (Date.now()) + the subscriber's slot
        self.rid_base = int(time.time() * 1000)
        self._extra_rids = 0
        # logged-in viewers' credentials from the server (kind, cookie name, one per user)
        self.credentials: list[str] = []
        self.credential_kind = ""
        self.cookie_name = "sessionid"

    def next_rid(self) -> int:
        """A requestId for a subscriber outside the slots (the stalled one, the soak's)."""
        self._extra_rids += 1
        return self.rid_base + 1_000_000 + self._extra_rids

    async def fetch_credentials(self, n: int) -> None:
        """Credentials of users 1..n from the server (``GET /bench/credentials/?n=``)."""
        if len(self.credentials) >= n:
            return
        status, raw = await self.http("GET", f"/bench/credentials/?n={n}", timeout=300)
        if status != 200:
            raise RuntimeError(f"/bench/credentials/: HTTP {status}: {raw[:200]!r}")
        reply = json.loads(raw)
        self.credentials = list(reply["credentials"])
        self.credential_kind = reply["kind"]
        self.cookie_name = reply.get("cookie") or "sessionid"

    async def credentials_or_failure(
        self, n: int, connected: int, start: float
    ) -> dict[str, Any] | None:
        """``fetch_credentials(n)``; ``None``, or what ``connect`` answers when it failed
        (``connected`` subscribers so far, started at ``start``)."""
        try:
            await self.fetch_credentials(n)
        except Exception as exc:
            return {
                "connected": connected,
                "failed": n,
                "first_error": f"credentials: {type(exc).__name__}: {exc}"[:300],
                "secs": round(time.monotonic() - start, 3),
            }
        return None

    # ---- subscribing -------------------------------------------------------------------
    async def _open(
        self,
        pk: str,
        timeout: float,
        *,
        stalled: bool = False,
        rid: int | None = None,
        same: bool = False,
        selection: int = 0,
        field: str = "user",
        credential: str | None = None,
    ) -> ClientConnection:
        """Connect and subscribe to ``pk``; return once the server has acknowledged with a
        201 carrying the subscriber's requestId. ``rid``: its own requestId (default: a fresh
        one), sent as a variable; ``same``: W1same's document (``requestId: 1`` inline).
        ``credential``: a token (sent in ``connection_init``) or a session key (the
        handshake's cookie), as ``credential_kind`` says."""
        system = self.system
        if rid is None:
            rid = 1 if same else self.next_rid()
        port = self.ports[self._opened % len(self.ports)]
        self._opened += 1
        path = system.ws_path
        headers: dict[str, str] | None = None
        init_payload: dict[str, Any] = {}
        if credential is not None:
            if self.credential_kind == "session":
                headers = {"Cookie": f"{self.cookie_name}={credential}"}
                path = system.ws_auth_path or path
            else:
                init_payload = {"token": credential}
        url = f"ws://127.0.0.1:{port}{path}"
        if system.client == "floor":
            url += f"?pk={pk}"
        subprotocols = ["graphql-transport-ws"] if system.client == "gql" else None
        sock = None
        if stalled:
            # a tiny receive window, so that what the server sends piles up on its side soon
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        ws = await connect(
            url,
            sock=sock,
            subprotocols=subprotocols,  # type: ignore[arg-type]
            compression=None,  # no permessage-deflate anywhere: we time fan-out, not zlib
            ping_interval=None,
            open_timeout=timeout,
            close_timeout=2,
            max_queue=None,
            additional_headers=headers,
        )
        try:
            async with asyncio.timeout(timeout):
                if system.client == "floor":
                    await ws.recv()
                elif system.client == "dcrf":
                    await ws.send(
                        json.dumps(
                            {"action": "subscribe_instance", "pk": int(pk), "request_id": rid}
                        )
                    )
                    while True:
                        reply = json.loads(await ws.recv())
                        if reply.get("action") == "subscribe_instance":
                            if reply.get("response_status") != 201:
                                raise RuntimeError(f"subscribe refused: {reply}")
                            if reply.get("request_id") != rid:
                                raise RuntimeError(f"not our request_id {rid}: {reply}")
                            break
                else:
                    await ws.send(json.dumps({"type": "connection_init", "payload": init_payload}))
                    reply = json.loads(await ws.recv())
                    if reply.get("type") != "connection_ack":
                        raise RuntimeError(f"expected connection_ack, got {reply}")
                    if same:
                        payload: dict[str, Any] = {"query": GQL_SUBSCRIPTION_SAME % {"pk": pk}}
                    else:
                        payload = {
                            "query": gql_document(field, selection),
                            "operationName": "OnUser",
                            "variables": {"pk": pk, "requestId": rid},
                        }
                    await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
                    while True:
                        reply = json.loads(await ws.recv())
                        kind = reply.get("type")
                        if kind == "next":
                            # the first result is the subscribe_instance/201 envelope, with
                            # the subscriber's requestId (under whatever alias it selected)
                            result = reply.get("payload", {})
                            data = result.get("data") or {}
                            env = next(iter(data.values()), None) if data else None
                            values = list(env.values()) if isinstance(env, dict) else []
                            if result.get("errors") or 201 not in values or rid not in values:
                                raise RuntimeError(f"subscription failed: {str(reply)[:300]}")
                            break
                        if kind in ("error", "complete"):
                            raise RuntimeError(f"subscription failed: {str(reply)[:300]}")
        except BaseException:
            ws.transport.abort()
            raise
        return ws

    async def _read(self, sub: Sub) -> None:
        try:
            async for msg in sub.ws:
                prefix = self.track_prefix
                if prefix is not None:
                    self._track(sub, str(msg), prefix)
                    continue
                expect = sub.expect
                if expect is not None and expect in msg:
                    sub.expect = None
                    check = sub.check
                    if check and not all(c in msg for c in check):
                        self.tally.hit(bad=str(msg))
                    else:
                        self.tally.hit()
        except ConnectionClosed:
            pass
        self.closed_unexpectedly += 1

    def _track(self, sub: Sub, msg: str, prefix: str) -> None:
        start = msg.find(prefix)
        if start < 0:
            return  # not a data frame of this run (an ack, a ping)
        start += len(prefix)
        end = msg.find('"', start)
        if end < 0 or not msg[start:end].isdigit():
            return
        seq = int(msg[start:end])
        now = time.monotonic()
        self.frames += 1
        self.t_last_frame = now
        sub.frames += 1
        if seq > sub.seq:
            sub.seq = seq
            sub.t_value = now
        elif seq == sub.seq:
            sub.repeats += 1
        else:
            sub.regressions += 1

    async def connect(
        self,
        n: int,
        pk: str,
        distinct: bool,
        concurrency: int,
        timeout: float,
        pks: list[str] | None = None,
        spec: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Top up to ``n`` subscribers, in slots 0..n-1; failed attempts are retried until
        ``timeout``. ``spec`` says what each sends (see the module's docstring)."""
        spec = spec or {}
        same = spec.get("rid", "own") == "same"
        selections = max(int(spec.get("selections", 1)), 1)
        field_name = str(spec.get("field", "user"))
        must = spec.get("must") if self.system.uses_database else None
        start = time.monotonic()
        deadline = start + timeout
        errors: list[str] = []
        sem = asyncio.Semaphore(concurrency)
        if spec.get("auth") and self.system.uses_database:
            failed = await self.credentials_or_failure(n, len(self.subs), start)
            if failed is not None:
                return failed
        auth = bool(spec.get("auth")) and bool(self.credentials)

        def slot_pk(slot: int) -> str:
            if pks:
                return pks[slot % len(pks)]
            return str(slot + 1) if distinct else pk

        async def one(slot: int) -> None:
            async with sem:
                left = deadline - time.monotonic()
                if left <= 0:
                    errors.append("connect deadline passed")
                    return
                rid = 1 if same else self.rid_base + slot
                sub_pk = slot_pk(slot)
                try:
                    ws = await self._open(
                        sub_pk,
                        min(left, 30.0),
                        rid=rid,
                        same=same,
                        selection=slot % selections,
                        field=field_name,
                        credential=self.credentials[slot] if auth else None,
                    )
                except Exception as exc:  # report, don't crash the worker
                    errors.append(f"{type(exc).__name__}: {exc}"[:300])
                    return
                check: tuple[str, ...] = ()
                if not same and self.system.client != "floor":
                    check += (str(rid),)
                if must:
                    check += (str(must),)
                sub = Sub(ws=ws, pk=sub_pk, slot=slot, check=check)
                sub.task = asyncio.create_task(self._read(sub))
                self.subs.append(sub)

        for _attempt in range(3):
            have = {s.slot for s in self.subs}
            wanted = [slot for slot in range(n) if slot not in have]
            if not wanted or time.monotonic() > deadline:
                break
            await asyncio.gather(*(one(slot) for slot in wanted))
        return {
            "connected": len(self.subs),
            "failed": len(errors),
            "first_error": errors[0] if errors else None,
            "secs": round(time.monotonic() - start, 3),
            "credentials": self.credential_kind if auth else None,
        }

    async def close(self, timeout: float = 30.0) -> dict[str, Any]:
        subs, self.subs = self.subs, []
        await close_subs(subs, timeout)
        self.closed_unexpectedly = 0
        return {"closed": len(subs)}

    # ---- W4: many saves of a few rows --------------------------------------------------
    def track(self, marker: str) -> dict[str, Any]:
        for sub in self.subs:
            sub.frames = sub.seq = sub.repeats = sub.regressions = 0
            sub.t_value = 0.0
        self.frames = 0
        self.t_last_frame = time.monotonic()
        self.track_prefix = f'"{marker}-'
        return {"tracking": len(self.subs)}

    async def settle(self, final: dict[str, str], quiet: float, timeout: float) -> dict[str, Any]:
        """Wait until no data frame came for ``quiet`` s (at most ``timeout`` s), then compare
        each subscriber's last value with ``final`` (pk -> the committed value)."""
        start = time.monotonic()
        while True:
            now = time.monotonic()
            if now - self.t_last_frame >= quiet or now - start >= timeout:
                break
            await asyncio.sleep(0.05)
        waited = time.monotonic() - start
        quiet_reached = time.monotonic() - self.t_last_frame >= quiet
        self.track_prefix = None
        want = {pk: int(value.rpartition("-")[2]) for pk, value in final.items()}
        frames = sorted(s.frames for s in self.subs)
        correct = [s for s in self.subs if s.seq == want.get(s.pk, -1)]
        wrong = [s for s in self.subs if s.seq != want.get(s.pk, -1)]
        frames_by_pk: Counter[str] = Counter()
        for sub in self.subs:
            frames_by_pk[sub.pk] += sub.frames
        return {
            "subs": len(self.subs),
            "correct": len(correct),
            "wrong": len(wrong),
            "no_frame": sum(1 for s in self.subs if s.frames == 0),
            "wrong_examples": [
                {"pk": s.pk, "got": s.seq, "want": want.get(s.pk)} for s in wrong[:3]
            ],
            "frames": sum(frames),
            "frames_min": frames[0] if frames else 0,
            "frames_median": statistics.median(frames) if frames else 0,
            "frames_max": frames[-1] if frames else 0,
            "frames_by_pk": dict(frames_by_pk),
            "repeats": sum(s.repeats for s in self.subs),
            "regressions": sum(s.regressions for s in self.subs),
            "t_hold_last": max((s.t_value for s in correct), default=None),
            "t_last_frame": self.t_last_frame,
            "waited_s": waited,
            "quiet": quiet_reached,
            "closed": self.closed_unexpectedly,
        }

    # ---- the stalled client (W5) -------------------------------------------------------
    async def stall(self, pk: str, timeout: float) -> dict[str, Any]:
        if self.stalled is None:
            self.stalled = await self._open(pk, timeout, stalled=True)
            # nobody reads it again: once its receive window is full, the server's writes to
            # it stay queued in the server
            self.stalled.transport.pause_reading()
        return {"stalled": True}

    def backlog(self) -> dict[str, Any]:
        """Bytes queued in the kernel towards the stalled client, both ends (from ``ss``)."""
        if self.stalled is None:
            return {"client_recv_q": None, "server_send_q": None}
        host, port = self.stalled.transport.get_extra_info("sockname")[:2]
        local = f"{host}:{port}"
        remote = f"127.0.0.1:{self.port}"
        out = subprocess.run(["ss", "-tnH"], capture_output=True, text=True, check=False).stdout
        recv_q = send_q = None
        for line in out.splitlines():
            cols = line.split()
            if len(cols) < 5:
                continue
            if cols[3] == local and cols[4] == remote:
                recv_q = int(cols[1])
            elif cols[3] == remote and cols[4] == local:
                send_q = int(cols[2])
        return {"client_recv_q": recv_q, "server_send_q": send_q}

    async def unstall(self) -> dict[str, Any]:
        if self.stalled is not None:
            self.stalled.transport.abort()
            self.stalled = None
        return {"stalled": False}

    # ---- triggering --------------------------------------------------------------------
    async def http(
        self, method: str, path: str, body: bytes | None = None, timeout: float = 120.0
    ) -> tuple[int, bytes]:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            try:
                head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                head += "Connection: close\r\nAccept: application/json\r\n"
                if body is not None:
                    head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                writer.write((head + "\r\n").encode() + (body or b""))
                raw = await reader.read()
            finally:
                writer.close()
        header, _, payload = raw.partition(b"\r\n\r\n")
        lines = header.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
        if any(
            h.lower().startswith("transfer-encoding:") and "chunked" in h.lower() for h in lines
        ):
            payload = _dechunk(payload)
        return status, payload

    async def _trigger(self, marker: str, pks: list[str]) -> tuple[int, bytes]:
        if self.system.trigger == "get":
            return await self.http("GET", f"/bench/save/?pk={','.join(pks)}&marker={marker}")
        # one updateUser per instance, executed in order like the peers' view
        status, raw = 0, b""
        for start in range(0, len(pks), MUTATIONS_PER_DOCUMENT):
            fields = " ".join(
                f'u{i}: updateUser(pk: "{pk}", username: "{marker}-{pk}") {{ __typename }}'
                for i, pk in enumerate(pks[start : start + MUTATIONS_PER_DOCUMENT])
            )
            body = json.dumps({"query": f"mutation {{ {fields} }}"}).encode()
            status, raw = await self.http("POST", "/graphql/", body)
            if status != 200 or b'"errors"' in raw:
                break
        return status, raw

    async def save(
        self, marker: str, pks: list[str], timeout: float, progress: bool = False
    ) -> dict[str, Any]:
        """Save every pk in ``pks`` and wait until each of their subscribers saw its frame.

        With ``progress``, a ``{"progress": "first"}`` line is written as soon as the first
        subscriber has its frame, so the orchestrator can read Redis counters right then.
        """
        wanted = set(pks)
        expected = 0
        for sub in self.subs:
            if sub.pk in wanted:
                sub.expect = f'{marker}-{sub.pk}"'
                expected += 1
        gc.collect()
        gc.disable()
        try:
            self.tally.reset(expected, _announce_first if progress else None)
            t0 = time.monotonic()
            status, raw = await self._trigger(marker, pks)
            t_resp = time.monotonic()
            error = None
            server: dict[str, Any] = {}
            try:
                server = json.loads(raw)
                if server.get("errors"):
                    error = json.dumps(server["errors"])[:300]
            except ValueError:
                error = f"HTTP {status}: {raw[:200]!r}"
            if status != 200 and error is None:
                error = f"HTTP {status}: {raw[:200]!r}"
            if error is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.tally.done.wait(), timeout)
            tally = self.tally
            if error is None and tally.bad:
                error = (
                    f"{tally.bad} of {tally.count} frames without the subscriber's own "
                    f"requestId or the expected field, e.g. {tally.bad_example}"
                )[:500]
            result = {
                "expected": expected,
                "received": tally.count,
                "bad": tally.bad,
                "resp_ms": (t_resp - t0) * 1e3,
                "first_ms": (tally.t_first - t0) * 1e3 if tally.count else None,
                "last_ms": (tally.t_last - t0) * 1e3 if tally.count else None,
                "complete": tally.count >= expected and error is None,
                "error": error,
                "closed": self.closed_unexpectedly,
            }
            if "t_call" in server:
                result["save_call_ms"] = (server["t_call"] - t0) * 1e3
                result["save_return_ms"] = (server["t_return"] - t0) * 1e3
            return result
        finally:
            for sub in self.subs:
                sub.expect = None
            gc.enable()


def _announce_first() -> None:
    sys.stdout.write('{"progress": "first"}\n')
    sys.stdout.flush()


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return bytes(out)


async def handle(worker: Worker, name: str, cmd: dict[str, Any]) -> dict[str, Any]:
    if name == "connect":
        return await worker.connect(
            cmd["n"],
            str(cmd.get("pk", "1")),
            bool(cmd.get("distinct", False)),
            cmd.get("concurrency", 32),
            cmd["timeout"],
            [str(p) for p in cmd["pks"]] if cmd.get("pks") else None,
            cmd.get("spec"),
        )
    if name == "track":
        return worker.track(str(cmd["marker"]))
    if name == "settle":
        return await worker.settle(cmd["final"], cmd.get("quiet", 2.0), cmd["timeout"])
    if name == "save":
        return await worker.save(
            cmd["marker"], [str(p) for p in cmd["pks"]], cmd["timeout"], cmd.get("progress", False)
        )
    if name == "stall":
        return await worker.stall(str(cmd.get("pk", "1")), cmd.get("timeout", 30))
    if name == "backlog":
        return worker.backlog()
    if name == "unstall":
        return await worker.unstall()
    if name == "close":
        return await worker.close()
    if name == "exit":
        await worker.unstall()
        await worker.close()
        return {"bye": True}
    return {"error": f"unknown command {name}"}


async def serve_commands(
    handler: Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]],
) -> None:
    """Answer JSON-line commands (``{"cmd": name, ...}``) from stdin with ``handler``'s
    replies on stdout, one line each, until stdin closes or after ``exit``."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = json.loads(line)
        name = cmd.pop("cmd")
        try:
            reply = await handler(name, cmd)
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
        if name == "exit":
            break


async def close_subs(subs: list[Any], timeout: float = 30.0) -> None:
    """Close subscribers (anything with ``ws`` and ``task``), 32 at a time, within ``timeout``;
    then abort what is left. Bounded like connecting: 1000 disconnects at once exhaust the
    peers' Redis pool."""
    sem = asyncio.Semaphore(32)

    async def one(sub: Any) -> None:
        async with sem:
            with contextlib.suppress(Exception):
                await sub.ws.close()
            if sub.task is not None:
                sub.task.cancel()

    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await asyncio.gather(*(one(s) for s in subs))
    for sub in subs:
        sub.ws.transport.abort()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--system", required=True, choices=sorted(SYSTEMS))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--more-port", type=int, action="append", default=[])
    args = parser.parse_args()
    raise_fd_limit()
    worker = Worker(SYSTEMS[args.system], args.port, tuple(args.more_port))
    run_loop(serve_commands(functools.partial(handle, worker)))


if __name__ == "__main__":
    main()
