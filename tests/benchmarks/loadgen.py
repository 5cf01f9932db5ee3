"""Load worker: holds the websocket clients of ONE system and times its saves.

The orchestrator (fanout.py) starts one worker per system and drives it with JSON lines on
stdin; every command is answered with one JSON line on stdout. One process per system keeps
each worker under the fd limit (N=5000 clients x 4 systems would not fit in one process) and
keeps one system's client objects from slowing another's reads; only one worker is busy at a
time, so they do not compete for the CPU.

Timing (all ``time.monotonic()``, CLOCK_MONOTONIC, comparable across processes on Linux):
  t0       just before the worker writes the trigger request (HTTP GET or GraphQL mutation);
  t_first  when the first subscriber's reader task sees the save's frame;
  t_last   when the last subscriber's reader task sees it.
Latency = t_last - t0: the HTTP hop, the save, the fan-out and the load process's own reads
(the floor system F shows how much of that is websockets + this process alone).

Commands: connect {n, pk, concurrency, timeout} | save {marker, pk, timeout} |
          close {} | exit {}
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.benchmarks.systems import GQL_SUBSCRIPTION, SYSTEMS, System


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass
class Tally:
    """What one save produced across all subscribers of this worker."""

    marker: str | None = None
    expected: int = 0
    count: int = 0
    t_first: float = 0.0
    t_last: float = 0.0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def reset(self, marker: str, expected: int) -> None:
        self.marker = marker
        self.expected = expected
        self.count = 0
        self.t_first = self.t_last = 0.0
        self.done = asyncio.Event()
        if expected == 0:
            self.done.set()

    def hit(self) -> None:
        now = time.monotonic()
        self.count += 1
        if self.count == 1:
            self.t_first = now
        self.t_last = now
        if self.count >= self.expected:
            self.done.set()


@dataclass
class Sub:
    ws: ClientConnection
    pk: str
    last: str | None = None
    task: asyncio.Task[None] | None = None


class Worker:
    def __init__(self, system: System, port: int) -> None:
        self.system = system
        self.port = port
        self.subs: list[Sub] = []
        self.tally = Tally()
        self.closed_unexpectedly = 0
        self.mutation_selection: str | None = None

    # ---- subscribing -------------------------------------------------------------------
    async def _open(self, pk: str, timeout: float) -> Sub:
        system = self.system
        url = f"ws://127.0.0.1:{self.port}{system.ws_path}"
        subprotocols = ["graphql-transport-ws"] if system.client == "gql" else None
        ws = await connect(
            url,
            subprotocols=subprotocols,  # type: ignore[arg-type]
            compression=None,  # no permessage-deflate anywhere: we time fan-out, not zlib
            ping_interval=None,
            open_timeout=timeout,
            close_timeout=2,
            max_queue=None,
        )
        try:
            async with asyncio.timeout(timeout):
                if system.client == "floor":
                    await ws.recv()
                elif system.client == "dcrf":
                    await ws.send(
                        json.dumps({"action": "subscribe_instance", "pk": int(pk), "request_id": 1})
                    )
                    while True:
                        reply = json.loads(await ws.recv())
                        if reply.get("action") == "subscribe_instance":
                            if reply.get("response_status") != 201:
                                raise RuntimeError(f"subscribe refused: {reply}")
                            break
                else:
                    await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
                    reply = json.loads(await ws.recv())
                    if reply.get("type") != "connection_ack":
                        raise RuntimeError(f"expected connection_ack, got {reply}")
                    await ws.send(
                        json.dumps(
                            {
                                "id": "1",
                                "type": "subscribe",
                                "payload": {"query": GQL_SUBSCRIPTION % {"pk": pk}},
                            }
                        )
                    )
                    while True:
                        reply = json.loads(await ws.recv())
                        kind = reply.get("type")
                        if kind == "next":
                            # the first result is the subscribe_instance/201 envelope
                            payload = reply.get("payload", {})
                            if payload.get("errors"):
                                raise RuntimeError(f"subscription failed: {payload}")
                            break
                        if kind in ("error", "complete"):
                            raise RuntimeError(f"subscription failed: {reply}")
        except BaseException:
            await ws.close()
            raise
        sub = Sub(ws=ws, pk=pk)
        sub.task = asyncio.create_task(self._read(sub))
        return sub

    async def _read(self, sub: Sub) -> None:
        try:
            async for msg in sub.ws:
                tally = self.tally
                marker = tally.marker
                if marker is not None and sub.last != marker and marker in msg:
                    sub.last = marker
                    tally.hit()
        except ConnectionClosed:
            pass
        self.closed_unexpectedly += 1

    async def connect(self, n: int, pk: str, concurrency: int, timeout: float) -> dict[str, Any]:
        start = time.monotonic()
        deadline = start + timeout
        want = n - len(self.subs)
        errors: list[str] = []
        sem = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with sem:
                left = deadline - time.monotonic()
                if left <= 0:
                    errors.append("connect deadline passed")
                    return
                try:
                    self.subs.append(await self._open(pk, min(left, 30.0)))
                except Exception as exc:  # report, don't crash the worker
                    errors.append(f"{type(exc).__name__}: {exc}"[:300])

        await asyncio.gather(*(one() for _ in range(max(want, 0))))
        return {
            "connected": len(self.subs),
            "failed": len(errors),
            "first_error": errors[0] if errors else None,
            "secs": round(time.monotonic() - start, 3),
        }

    async def close(self, timeout: float = 20.0) -> dict[str, Any]:
        subs, self.subs = self.subs, []

        async def one(sub: Sub) -> None:
            with contextlib.suppress(Exception):
                await sub.ws.close()
            if sub.task is not None:
                sub.task.cancel()

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(one(s) for s in subs))
        for sub in subs:
            sub.ws.transport.abort()
        self.closed_unexpectedly = 0
        return {"closed": len(subs)}

    # ---- triggering --------------------------------------------------------------------
    async def http(
        self, method: str, path: str, body: bytes | None = None, timeout: float = 60.0
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
        if any(h.lower().startswith("transfer-encoding:") and "chunked" in h.lower() for h in lines):
            payload = _dechunk(payload)
        return status, payload

    async def _selection(self) -> str:
        """``updateUser``'s return type decides whether the mutation needs a selection set."""
        if self.mutation_selection is None:
            query = (
                "{ __schema { mutationType { fields { name type { kind name ofType "
                "{ kind name ofType { kind name } } } } } } }"
            )
            selection = " { __typename }"
            with contextlib.suppress(Exception):
                _, raw = await self.http("POST", "/graphql/", json.dumps({"query": query}).encode())
                fields = json.loads(raw)["data"]["__schema"]["mutationType"]["fields"]
                for f in fields:
                    if f["name"] == "updateUser":
                        t = f["type"]
                        while t.get("ofType") and t["kind"] in ("NON_NULL", "LIST"):
                            t = t["ofType"]
                        if t["kind"] in ("SCALAR", "ENUM"):
                            selection = ""
            self.mutation_selection = selection
        return self.mutation_selection

    async def save(self, marker: str, pk: str, timeout: float) -> dict[str, Any]:
        selection = await self._selection() if self.system.trigger == "mutation" else ""
        expected = sum(1 for s in self.subs if s.pk == pk)
        gc.collect()
        gc.disable()
        try:
            self.tally.reset(f'{marker}"', expected)  # the closing quote: "bm-7" must not match "bm-70"
            t0 = time.monotonic()
            if self.system.trigger == "get":
                status, raw = await self.http("GET", f"/bench/save/?pk={pk}&marker={marker}")
            else:
                doc = (
                    "mutation ($pk: ID!, $username: String) "
                    "{ updateUser(pk: $pk, username: $username)%s }" % selection
                )
                body = {"query": doc, "variables": {"pk": pk, "username": marker}}
                status, raw = await self.http("POST", "/graphql/", json.dumps(body).encode())
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
            result = {
                "expected": expected,
                "received": tally.count,
                "t0": t0,
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
            self.tally.marker = None
            return result
        finally:
            gc.enable()


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


async def serve_commands(worker: Worker) -> None:
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
            if name == "connect":
                reply = await worker.connect(
                    cmd["n"], str(cmd.get("pk", "1")), cmd.get("concurrency", 100), cmd["timeout"]
                )
            elif name == "save":
                reply = await worker.save(cmd["marker"], str(cmd.get("pk", "1")), cmd["timeout"])
            elif name == "close":
                reply = await worker.close()
            elif name == "exit":
                await worker.close()
                reply = {"bye": True}
            else:
                reply = {"error": f"unknown command {name}"}
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
        if name == "exit":
            break


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--system", required=True, choices=sorted(SYSTEMS))
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    raise_fd_limit()
    worker = Worker(SYSTEMS[args.system], args.port)
    try:
        import uvloop

        uvloop.run(serve_commands(worker))
    except ImportError:
        asyncio.run(serve_commands(worker))


if __name__ == "__main__":
    main()
