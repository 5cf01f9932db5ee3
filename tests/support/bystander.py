"""One client's worst documents against everybody else: the bystander probe.

An attacker sends the worst documents the limits allow, over HTTP (bodies up
to the size limit holding documents at the token limit whose validation costs
most, padded with a comment so that no cache ever helps) and over the websocket
(frames up to the frame limit, at the subscribe rate: valid subscriptions that
stay open and invalid ones that cost a full validation each), plus one client
that sends a body far beyond the limit. Meanwhile a bystander sends a tiny
query over HTTP, one after the other, and times each answer; the server's RSS
is sampled from ``/proc``.

The attacker runs in a process of its own (``python -m tests.support.bystander
attack ...``), so that its work never delays the bystander's clock. Everything
is bounded in time: the attack stops after ``seconds``, every request has a
timeout. Used by ``tests/e2e/test_bystander.py`` (bounds) and
``tests/benchmarks/bystander.py`` (figures).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import itertools
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]

#: The bystander's query.
TINY_QUERY = "{ user(pk: 1) { responseStatus } }"
#: What the limits allow by default (``MAX_QUERY_TOKENS``, ``MAX_MESSAGE_SIZE`` and
#: the HTTP body limit).
TOKENS = 2000
SIZE = 64 * 1024
#: Room for what wraps a document (the JSON of a body or a subscribe message).
WRAPPING = 128
#: Seconds the bystander waits for one answer; a request that times out counts as this.
BYSTANDER_TIMEOUT = 10.0


def _padded(document: str, n: int, size: int) -> str:
    """``document`` behind a comment naming ``n`` (no cache ever holds it) and
    padded with a second comment to ``size`` characters (comments are no tokens)."""
    head = f"# attack {n}\n"
    room = size - len(head) - len(document) - 3
    pad = "#" + "x" * (room - 1) + "\n" if room > 1 else ""
    return head + pad + document


def costly_query(n: int, size: int) -> str:
    """A query at the token limit (its two comments count) whose validation costs
    most: graphql-core's overlapping-fields check on many fields of one name."""
    return _padded("{user(pk:1){data{" + " id" * (TOKENS - 15) + "}}}", n, size)


def valid_subscription(n: int, size: int) -> str:
    """A valid subscription of the observed ``user`` with the most fields it may
    select before the overlapping-fields check gives up: it joins a watch."""
    return _padded("subscription{user(pk:1){data{" + " id" * 600 + "}}}", n, size)


def costly_subscription(n: int, size: int) -> str:
    """A subscription at the token limit that fails validation after its full cost."""
    return _padded("subscription{user(pk:1){data{" + " id" * (TOKENS - 16) + "}}}", n, size)


def too_many_tokens(n: int, size: int) -> str:
    """Short tokens up to the size limit: far beyond the token limit."""
    return _padded("{" + " a" * (size // 2 - 40) + "}", n, size)


def short_costly(n: int, size: int) -> str:
    """The costliest document short enough to be parsed in the event loop: unknown
    fields, each with its suggestions (the limit is ``INLINE_LENGTH``, 256)."""
    head = f"#{n}\n{{"
    return head + " a" * ((256 - len(head) - 1) // 2) + "}"


#: What the HTTP attackers send, one kind each in turn.
HTTP_DOCUMENTS = (costly_query, too_many_tokens, short_costly)


# ---- the attacker (its own process) ----------------------------------------------------


async def _post(host: str, port: int, body: bytes, timeout: float) -> str:
    """POST ``body`` to /graphql/ on a connection of its own; the status, or why none."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(
                    b"POST /graphql/ HTTP/1.1\r\nHost: %s:%d\r\n"
                    b"Content-Type: application/json\r\nContent-Length: %d\r\n"
                    b"Connection: close\r\n\r\n" % (host.encode(), port, len(body))
                )
                try:
                    for start in range(0, len(body), 1 << 16):
                        writer.write(body[start : start + (1 << 16)])
                        await writer.drain()
                except ConnectionError:
                    pass  # the server answered (and closed) before it took the whole body
                with contextlib.suppress(ConnectionError):
                    status = (await reader.readline()).split(b" ")[1:2]
                    with contextlib.suppress(ConnectionError):
                        await reader.read()
                    return status[0].decode() if status else "closed unanswered"
                return "reset"
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
    except TimeoutError:
        return "timeout"
    except OSError as error:
        return type(error).__name__


async def _http_attacker(
    url: str, deadline: float, documents: Any, size: int, stats: Counter[str]
) -> None:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    for n in itertools.count():
        if time.monotonic() > deadline:
            return
        body = json.dumps({"query": documents(n, size - WRAPPING)}).encode()
        status = await _post(parts.hostname, parts.port, body, 30.0)
        stats[f"http {documents.__name__} {status}"] += 1


async def _huge_attacker(url: str, deadline: float, size: int, stats: Counter[str]) -> None:
    """One body far beyond any limit: ``{ __typename __typename ... }``, as in the issue."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    query = "{" + " __typename" * (size // 11) + "}"
    body = json.dumps({"query": query}).encode()
    while time.monotonic() < deadline:
        status = await _post(parts.hostname, parts.port, body, 30.0)
        stats[f"http huge {status}"] += 1


async def _ws_attacker(
    url: str, deadline: float, size: int, rate: float, stats: Counter[str]
) -> None:
    """One websocket after the other (a closed one is replaced) until ``deadline``."""
    numbers = itertools.count()
    while time.monotonic() < deadline:
        await _ws_connection(url, deadline, size, rate, stats, numbers)


async def _ws_connection(
    url: str,
    deadline: float,
    size: int,
    rate: float,
    stats: Counter[str],
    numbers: Iterator[int],
) -> None:
    """Subscribe at ``rate``: one valid subscription (kept open, at most 50) for
    three that fail validation after its full cost."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    open_ops: deque[str] = deque()
    try:
        async with connect(
            url,
            subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
            max_size=None,
            compression=None,
        ) as ws:
            await ws.send(json.dumps({"type": "connection_init"}))
            await asyncio.wait_for(ws.recv(), 30)

            async def drain() -> None:
                with contextlib.suppress(ConnectionClosed):
                    async for frame in ws:
                        message = json.loads(frame)
                        stats[f"ws {message.get('type')}"] += 1
                        if message.get("type") == "ping":
                            await ws.send(json.dumps({"type": "pong"}))
                stats[f"ws closed {ws.close_code}"] += 1

            reader = asyncio.ensure_future(drain())
            try:
                for n in numbers:
                    if time.monotonic() > deadline or reader.done():
                        break
                    valid = n % 4 == 0
                    make = valid_subscription if valid else costly_subscription
                    document = make(n, size - WRAPPING)
                    op = str(n)
                    await ws.send(
                        json.dumps({"type": "subscribe", "id": op, "payload": {"query": document}})
                    )
                    stats["ws subscribe sent"] += 1
                    if valid:
                        open_ops.append(op)
                        if len(open_ops) > 50:
                            await ws.send(
                                json.dumps({"type": "complete", "id": open_ops.popleft()})
                            )
                    await asyncio.sleep(1 / rate)
            finally:
                reader.cancel()
                with contextlib.suppress(BaseException):
                    await reader
    except (ConnectionClosed, OSError, TimeoutError) as error:
        stats[f"ws failed {type(error).__name__}"] += 1


async def attack(
    http_url: str,
    ws_url: str,
    *,
    seconds: float,
    http_clients: int,
    ws_clients: int,
    huge: int,
    size: int,
    rate: float,
) -> dict[str, int]:
    """Attack for ``seconds``; what was sent and answered, by kind."""
    stats: Counter[str] = Counter()
    deadline = time.monotonic() + seconds
    tasks = [
        _http_attacker(http_url, deadline, HTTP_DOCUMENTS[i % len(HTTP_DOCUMENTS)], size, stats)
        for i in range(http_clients)
    ]
    tasks += [_ws_attacker(ws_url, deadline, size, rate, stats) for _ in range(ws_clients)]
    if huge:
        tasks.append(_huge_attacker(http_url, deadline, huge, stats))
    await asyncio.gather(*tasks)
    return dict(stats)


# ---- the bystander and the report ---------------------------------------------------


def _rss(pid: int) -> int:
    """The resident set of process ``pid`` in bytes (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def percentile(values: list[float], q: float) -> float:
    """The ``q``-quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


@dataclass
class Report:
    """What the bystander saw, and what the server's memory did."""

    quiet: list[float] = field(default_factory=list)
    attacked: list[float] = field(default_factory=list)
    rss_before: int = 0
    rss_peak: int = 0
    rss_after: int = 0
    attack: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        def line(name: str, values: list[float]) -> str:
            if not values:
                return f"{name}: no samples"
            return (
                f"{name}: n={len(values)} p50={1000 * statistics.median(values):.1f} ms "
                f"p99={1000 * percentile(values, 0.99):.1f} ms max={1000 * max(values):.1f} ms"
            )

        mib = 1024 * 1024
        return "\n".join(
            [
                line("bystander, quiet", self.quiet),
                line("bystander, under attack", self.attacked),
                f"server RSS: before {self.rss_before / mib:.0f} MiB, peak "
                f"{self.rss_peak / mib:.0f} MiB, after {self.rss_after / mib:.0f} MiB",
                "attack: " + ", ".join(f"{k}={v}" for k, v in sorted(self.attack.items())),
                *(f"bystander failure: {f}" for f in self.failures[:5]),
            ]
        )


class _Bystander:
    """Sends the tiny query, one after the other, on one keep-alive connection."""

    def __init__(self, http_url: str) -> None:
        parts = urlsplit(http_url)
        assert parts.hostname is not None and parts.port is not None
        self.host, self.port, self.path = parts.hostname, parts.port, parts.path
        self.body = json.dumps({"query": TINY_QUERY}).encode()
        self.connection: http.client.HTTPConnection | None = None

    def once(self) -> tuple[float, str | None]:
        """Seconds until the answer came, and what was wrong with it."""
        start = time.monotonic()
        try:
            if self.connection is None:
                self.connection = http.client.HTTPConnection(
                    self.host, self.port, timeout=BYSTANDER_TIMEOUT
                )
            self.connection.request(
                "POST", self.path, self.body, {"content-type": "application/json"}
            )
            response = self.connection.getresponse()
            data = response.read()
            elapsed = time.monotonic() - start
            expected = {"data": {"user": {"responseStatus": 200}}}
            if response.status != 200 or json.loads(data) != expected:
                return elapsed, f"{response.status} {data[:200]!r}"
            return elapsed, None
        except (OSError, http.client.HTTPException) as error:
            if self.connection is not None:
                self.connection.close()
                self.connection = None
            return max(time.monotonic() - start, BYSTANDER_TIMEOUT), repr(error)

    def until(self, stop: threading.Event | float, into: list[float], failures: list[str]) -> None:
        while not (stop.is_set() if isinstance(stop, threading.Event) else time.monotonic() > stop):
            elapsed, failure = self.once()
            into.append(elapsed)
            if failure is not None:
                failures.append(failure)
            time.sleep(0.02)


def probe(
    http_url: str,
    ws_url: str,
    pid: int,
    *,
    seconds: float = 10.0,
    quiet_seconds: float = 3.0,
    http_clients: int = 4,
    ws_clients: int = 2,
    huge: int = 11 * 1024 * 1024,
    size: int = SIZE,
    rate: float = 20.0,
    python: str = sys.executable,
) -> Report:
    """Time the bystander quietly, then under the attack; sample the server's RSS."""
    report = Report()
    bystander = _Bystander(http_url)
    for _ in range(5):  # warm up: the first answers pay for imports and connections
        bystander.once()
    report.rss_before = _rss(pid)
    bystander.until(time.monotonic() + quiet_seconds, report.quiet, report.failures)

    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            report.rss_peak = max(report.rss_peak, _rss(pid))
            sampling.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    attacker = subprocess.Popen(
        [
            python,
            "-m",
            "tests.support.bystander",
            "attack",
            http_url,
            ws_url,
            f"--seconds={seconds}",
            f"--http-clients={http_clients}",
            f"--ws-clients={ws_clients}",
            f"--huge={huge}",
            f"--size={size}",
            f"--rate={rate}",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    done = threading.Event()
    measuring = threading.Thread(
        target=bystander.until, args=(done, report.attacked, report.failures), daemon=True
    )
    time.sleep(0.5)  # let the attack start before the first timed answer
    measuring.start()
    try:
        output, _ = attacker.communicate(timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        attacker.kill()
        output, _ = attacker.communicate()
    done.set()
    measuring.join(BYSTANDER_TIMEOUT + 5)
    sampling.set()
    sampler.join(5)
    report.rss_after = _rss(pid)
    with contextlib.suppress(ValueError):
        report.attack = json.loads(output.strip().splitlines()[-1])
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.bystander")
    parser.add_argument("command", choices=["attack"])
    parser.add_argument("http_url")
    parser.add_argument("ws_url")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--http-clients", type=int, default=4)
    parser.add_argument("--ws-clients", type=int, default=2)
    parser.add_argument("--huge", type=int, default=0)
    parser.add_argument("--size", type=int, default=SIZE)
    parser.add_argument("--rate", type=float, default=20.0)
    args = parser.parse_args(argv)
    stats = asyncio.run(
        attack(
            args.http_url,
            args.ws_url,
            seconds=args.seconds,
            http_clients=args.http_clients,
            ws_clients=args.ws_clients,
            huge=args.huge,
            size=args.size,
            rate=args.rate,
        )
    )
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
