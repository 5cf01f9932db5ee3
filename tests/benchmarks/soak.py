"""Soak run: P0 (gql_observer) under a steady save rate for minutes; does anything grow?

One P0 server (``soak_server.py``: the benchmark's P0 application plus ``GET /bench/stats/``
with the server's asyncio task count, fds, threads and gc-tracked objects) on a loopback port,
PostgreSQL (schema ``bench_soak``, seeded by ``peers/prepare.py``) and channels_redis on its
own Redis db (flushed before and after). Load processes (``--load-procs``, asyncio +
``websockets``, fd limit raised) hold ``--instances`` x ``--per-instance`` graphql-transport-ws
subscribers (default 10 x 100 = 1,000); they answer the server's ``ping`` with ``pong``.
For ``--seconds`` (default 600; ``--quick``: 60) the orchestrator triggers ``--rate`` saves/s
(default 10) round-robin over the instances with the benchmark's save view
(``GET /bench/save/?pk=<pk>&marker=k<n>``), and every ``--interval`` s (10) samples the
server's RSS (/proc/PID/status VmRSS), tasks, fds and the clients' frames/s.

At the end: every subscriber's last username must equal PostgreSQL's, every save must have
reached each of its subscribers once, no socket may have closed; the slopes of RSS and tasks
(and fds) over the second half must stay within the bounds below ("flat").

Usage (repo root, project venv):
  python -m tests.benchmarks.soak --quick     # 60 s
  python -m tests.benchmarks.soak             # 600 s (about 11 minutes in all)
A tool, not a test. Logs in /tmp/gqlo-bench-logs/soak-*.log, raw samples in --json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.benchmarks.fanout import (
    LOG_DIR,
    Server,
    _kill_children,
    _spawn,
    free_port,
    log,
    machine_info,
    run_bounded,
    run_loop,
    spawn_piped,
    stop_process,
    wait_child,
    wait_ready,
)
from tests.benchmarks.systems import REPO, SYSTEMS, main_python

# ---- "flat": the bounds, over the second half of the run (least-squares slope) -------------
# The run delivers ~600 saves/min and ~60,000 frames/min. A leak of one small object per
# delivered frame (>= ~100 B) grows RSS by >= 5.7 MiB/min; one per save of >= 1 KiB by
# >= 0.6 MiB/min. 0.5 MiB/min (2.5 MiB over a 5-minute half, ~2 % of a ~130 MiB server)
# catches both yet sits above pymalloc's arena noise (arenas are 1 MiB, freed only when empty).
RSS_SLOPE_MAX = 0.5  # MiB/min
# A task kept per save would be +600/min, per delivery +60,000/min; 1/min catches a task
# leaked by as few as 1 save in 600. Samples can include 0-3 in-flight save requests and the
# transient ping tasks (1,000 connections / 20 s), hence a slope, not "constant".
TASK_SLOPE_MAX = 1.0  # tasks/min
# fds: one kept per save would be +600/min. The count includes the save requests' sockets
# in flight (the quick run saw +-8 between samples), so the bound is 3/min, several standard
# errors of a 31-point fit of that noise, and still catches one fd kept per 200 saves.
FD_SLOPE_MAX = 3.0  # fds/min
STATS_PATH = "/bench/stats/"


# =============================================================================================
# load process: holds the subscribers of some instances
# =============================================================================================
@dataclass
class Sub:
    pk: str
    ws: Any
    task: asyncio.Task[None] | None = None
    last: str | None = None  # username in the last data frame
    nexts: int = 0


class LoadWorker:
    def __init__(self, port: int) -> None:
        from tests.benchmarks.loadgen import Worker

        self.opener = Worker(SYSTEMS["P0"], port)  # its _open: connect, init, subscribe, ack
        self.subs: list[Sub] = []
        self.frames = self.nexts = self.pings = self.errors = self.closed = 0
        self.first_error: str | None = None
        self.closing = False

    def _error(self, what: str) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = what[:300]

    async def _read(self, sub: Sub) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for raw in sub.ws:
                self.frames += 1
                try:
                    msg = json.loads(raw)
                    kind = msg.get("type")
                except (ValueError, AttributeError):
                    self._error(f"unparsable frame {raw[:100]!r}")
                    continue
                if kind == "next":
                    payload = msg.get("payload") or {}
                    if payload.get("errors"):
                        self._error(f"errors in next: {payload['errors']}")
                    data = ((payload.get("data") or {}).get("user") or {}).get("data")
                    if isinstance(data, dict) and "username" in data:
                        sub.last = data["username"]
                    sub.nexts += 1
                    self.nexts += 1
                elif kind == "ping":
                    self.pings += 1
                    await sub.ws.send('{"type": "pong"}')
                elif kind != "pong":
                    self._error(f"unexpected frame {raw[:200]}")
        except ConnectionClosed:
            pass
        if not self.closing:
            self.closed += 1

    async def connect(
        self, pks: list[str], per_pk: int, concurrency: int, timeout: float
    ) -> dict[str, Any]:
        start = time.monotonic()
        deadline = start + timeout
        errors: list[str] = []
        sem = asyncio.Semaphore(concurrency)

        async def one(pk: str) -> None:
            async with sem:
                left = deadline - time.monotonic()
                if left <= 0:
                    errors.append("connect deadline passed")
                    return
                try:
                    ws = await self.opener._open(pk, min(left, 30.0))
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}"[:300])
                    return
                sub = Sub(pk=pk, ws=ws)
                sub.task = asyncio.create_task(self._read(sub))
                self.subs.append(sub)

        for _attempt in range(3):
            have = Counter(s.pk for s in self.subs)
            wanted = [pk for pk in pks for _ in range(max(per_pk - have[pk], 0))]
            if not wanted or time.monotonic() > deadline:
                break
            await asyncio.gather(*(one(pk) for pk in wanted))
        return {
            "connected": len(self.subs),
            "failed": len(errors),
            "first_error": errors[0] if errors else None,
            "secs": round(time.monotonic() - start, 2),
        }

    def stats(self) -> dict[str, Any]:
        return {
            "subs": len(self.subs),
            "frames": self.frames,
            "nexts": self.nexts,
            "pings": self.pings,
            "errors": self.errors,
            "closed": self.closed,
            "first_error": self.first_error,
        }

    def final(self) -> dict[str, Any]:
        out: dict[str, dict[str, int]] = {}
        for sub in self.subs:
            per = out.setdefault(sub.pk, {})
            key = sub.last if sub.last is not None else "<none>"
            per[key] = per.get(key, 0) + 1
        nexts = sorted(s.nexts for s in self.subs)
        return {
            "last": out,
            "nexts_min": nexts[0] if nexts else 0,
            "nexts_max": nexts[-1] if nexts else 0,
        }

    async def close(self) -> dict[str, Any]:
        from tests.benchmarks.loadgen import close_subs

        self.closing = True
        subs, self.subs = self.subs, []
        await close_subs(subs)
        return {"closed": len(subs)}


async def worker_main(port: int) -> None:
    from tests.benchmarks.loadgen import serve_commands

    worker = LoadWorker(port)

    async def handle(name: str, cmd: dict[str, Any]) -> dict[str, Any]:
        if name == "connect":
            return await worker.connect(**cmd)
        if name == "stats":
            return worker.stats()
        if name == "final":
            return worker.final()
        if name in ("close", "exit"):
            return await worker.close()
        return {"error": f"unknown command {name}"}

    await serve_commands(handle)


class LoadProc:
    def __init__(self, index: int, proc: asyncio.subprocess.Process, pks: list[str]) -> None:
        self.index = index
        self.proc = proc
        self.pks = pks
        self.lock = asyncio.Lock()

    @classmethod
    async def start(cls, index: int, port: int, pks: list[str]) -> LoadProc:
        proc = await spawn_piped(
            [sys.executable, "-m", "tests.benchmarks.soak", "--worker-port", str(port)],
            f"soak-load-{index}.log",
            append=False,
            env=dict(os.environ, PYTHONPATH=str(REPO)),
            limit=1 << 22,
        )
        return cls(index, proc, pks)

    async def call(self, wait: float, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        async with self.lock, asyncio.timeout(wait):
            self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
            await self.proc.stdin.drain()
            line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"load process {self.index} exited (see {LOG_DIR})")
        return json.loads(line)  # type: ignore[no-any-return]

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                await self.call(45, cmd="exit")
        await stop_process(self.proc, 5)


# =============================================================================================
# orchestrator
# =============================================================================================
@dataclass
class SaveResult:
    k: int
    t_end: float
    ms: float
    ok: bool
    error: str | None = None


@dataclass
class Soak:
    args: argparse.Namespace
    info: dict[str, str]
    server: Server | None = None
    loads: list[LoadProc] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    extra_rows: list[dict[str, Any]] = field(default_factory=list)  # pre / drained / closed
    saves: list[SaveResult] = field(default_factory=list)
    late_max_ms: float = 0.0
    notes: list[str] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)
    t0: float = 0.0
    _prev: tuple[float, int] | None = None

    # ---- probes ----------------------------------------------------------------------------
    async def http_get(self, path: str, timeout: float) -> tuple[int, bytes]:
        from tests.benchmarks.loadgen import Worker

        assert self.server is not None
        return await Worker(SYSTEMS["P0"], self.server.port).http("GET", path, timeout=timeout)

    def rss_mib(self) -> float:
        assert self.server is not None
        with contextlib.suppress(OSError), open(f"/proc/{self.server.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    async def sample(self, label: float | str, *, types: bool = False) -> dict[str, Any]:
        now = time.monotonic()
        row: dict[str, Any] = {"t": label, "rss_mib": self.rss_mib()}
        try:
            status, body = await self.http_get(STATS_PATH + ("?types=1" if types else ""), 10)
            st = json.loads(body) if status == 200 else {}
        except Exception as exc:  # the server may be busy or gone: a sample without stats
            st = {}
            self.notes.append(f"stats at t={label}: {type(exc).__name__}: {exc}")
        for key in ("tasks", "fds", "threads", "gc_objects", "stats_ms", "types"):
            row[key] = st.get(key)
        if self.loads:
            replies = await asyncio.gather(*(lp.call(30, cmd="stats") for lp in self.loads))
            for key in ("subs", "frames", "nexts", "pings", "errors", "closed"):
                row[key] = sum(r.get(key, 0) for r in replies)
            if self._prev is not None and now > self._prev[0] and isinstance(label, float):
                row["frames_s"] = (row["frames"] - self._prev[1]) / (now - self._prev[0])
            self._prev = (now, row["frames"])
        if not isinstance(label, float):  # pre / drained / closed: no save window
            return row
        window = [s for s in self.saves if now - self.args.interval < s.t_end <= now]
        row["saves_s"] = len(window) / self.args.interval
        row["save_ms_p90"] = (
            sorted(s.ms for s in window)[max(0, int(len(window) * 0.9) - 1)] if window else None
        )
        row["save_fail"] = sum(1 for s in self.saves if not s.ok)
        return row

    # ---- phases ----------------------------------------------------------------------------
    async def start_server(self) -> None:
        args = self.args
        system = SYSTEMS["P0"]
        port = free_port()
        env = system.env(args.db_url, args.redis_db_url)
        env["CONN_MAX_AGE"] = str(args.conn_max_age)
        cmd = [
            main_python(),
            *(a.replace("{port}", str(port)) for a in system.module_args[:-1]),
            "tests.benchmarks.soak_server:application",
        ]
        if system.uvicorn_ws:  # P0 as deployed: gql_observer.uvicorn's websocket protocol
            cmd += ["--ws", system.uvicorn_ws]
        proc = _spawn(cmd, "soak-server.log", cwd=REPO, env=env)
        self.server = Server(system, port, proc, LOG_DIR / "soak-server.log")
        if not await wait_ready(self.server, 90):
            raise RuntimeError(f"server did not come up: {self.server.log_tail(8)}")
        log(f"server up on 127.0.0.1:{port}, pid {proc.pid}")

    async def connect(self) -> None:
        args = self.args
        assert self.server is not None
        pks = [str(i) for i in range(1, args.instances + 1)]
        for i in range(args.load_procs):
            mine = pks[i :: args.load_procs]
            if mine:
                self.loads.append(await LoadProc.start(i, self.server.port, mine))
        want = args.instances * args.per_instance
        replies = await asyncio.gather(
            *(
                lp.call(
                    300,
                    cmd="connect",
                    pks=lp.pks,
                    per_pk=args.per_instance,
                    concurrency=16,
                    timeout=240,
                )
                for lp in self.loads
            )
        )
        got = sum(r.get("connected", 0) for r in replies)
        errs = [r.get("first_error") or r.get("error") for r in replies]
        secs = max(r.get("secs", 0) for r in replies)
        log(f"{got}/{want} subscribed in {secs} s" + (f" ({errs})" if any(errs) else ""))
        self.checks["connected"] = got
        if got < want:
            raise RuntimeError(f"only {got}/{want} subscribers connected: {errs}")

    async def drive_saves(self) -> None:
        """``rate`` saves/s, round-robin over the instances, on an absolute schedule."""
        args = self.args
        total = int(args.seconds * args.rate)
        sem = asyncio.Semaphore(args.max_in_flight)
        pending: set[asyncio.Task[None]] = set()

        async def one(k: int, pk: int) -> None:
            t = time.monotonic()
            try:
                status, body = await self.http_get(f"/bench/save/?pk={pk}&marker=k{k}", 10)
                ok = status == 200 and b'"saved": 1' in body
                err = None if ok else f"HTTP {status}: {body[:200]!r}"
            except Exception as exc:
                ok, err = False, f"{type(exc).__name__}: {exc}"
            finally:
                sem.release()
            end = time.monotonic()
            self.saves.append(SaveResult(k, end, (end - t) * 1e3, ok, err))
            if err and sum(1 for s in self.saves if not s.ok) <= 3:
                log(f"save k={k} pk={pk} failed: {err}")

        for k in range(total):
            target = self.t0 + k / args.rate
            delay = target - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await sem.acquire()
            self.late_max_ms = max(self.late_max_ms, (time.monotonic() - target) * 1e3)
            task = asyncio.create_task(one(k, k % args.instances + 1))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.wait(pending, timeout=15)

    async def sample_loop(self) -> None:
        args = self.args
        last = int(args.seconds // args.interval)
        for i in range(last + 1):
            delay = self.t0 + i * args.interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            row = await self.sample(float(i * args.interval), types=i in (0, last))
            self.samples.append(row)
            log(fmt_row(row))

    async def drain(self) -> None:
        """Wait (<= 30 s) until every ok save's frames arrived or nothing moves for 3 s."""
        expected = sum(1 for s in self.saves if s.ok) * self.args.per_instance
        last, still_since = -1, time.monotonic()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            replies = await asyncio.gather(*(lp.call(30, cmd="stats") for lp in self.loads))
            got = sum(r["nexts"] for r in replies) - self.checks["nexts_before"]
            if got >= expected:
                break
            if got != last:
                last, still_since = got, time.monotonic()
            elif time.monotonic() - still_since > 3:
                break
            await asyncio.sleep(0.5)

    async def verify(self) -> None:
        import psycopg

        args = self.args
        replies = await asyncio.gather(*(lp.call(30, cmd="final") for lp in self.loads))
        stats = await asyncio.gather(*(lp.call(30, cmd="stats") for lp in self.loads))
        with psycopg.connect(args.db_url, connect_timeout=5) as conn:
            rows = conn.execute(
                "SELECT id, username FROM auth_user WHERE id <= %s", (args.instances,)
            ).fetchall()
        db = {str(pk): name for pk, name in rows}
        mismatched = 0
        examples: list[str] = []
        for reply in replies:
            for pk, lasts in reply["last"].items():
                for name, count in lasts.items():
                    if name != db.get(pk):
                        mismatched += count
                        if len(examples) < 3:
                            examples.append(f"pk {pk}: {count} subs at {name!r}, db {db.get(pk)!r}")
        ok_saves = sum(1 for s in self.saves if s.ok)
        nexts = sum(r["nexts"] for r in stats) - self.checks["nexts_before"]
        self.checks.update(
            {
                "saves_total": len(self.saves),
                "saves_failed": len(self.saves) - ok_saves,
                "frames_expected": ok_saves * args.per_instance,
                "frames_received": nexts,
                "closed": sum(r["closed"] for r in stats),
                "frame_errors": sum(r["errors"] for r in stats),
                "first_error": next((r["first_error"] for r in stats if r["first_error"]), None),
                "mismatched": mismatched,
                "mismatch_examples": examples,
                "per_sub_nexts": (
                    min(r["nexts_min"] for r in replies),
                    max(r["nexts_max"] for r in replies),
                ),
                "db": db,
            }
        )

    async def run(self) -> None:
        args = self.args
        await self.start_server()
        self.extra_rows.append(await self.sample("pre"))
        await self.connect()
        await asyncio.sleep(2)
        first = await asyncio.gather(*(lp.call(30, cmd="stats") for lp in self.loads))
        self.checks["nexts_before"] = sum(r["nexts"] for r in first)
        log(
            f"driving {args.rate:g} saves/s for {args.seconds:.0f} s, "
            f"sampling every {args.interval:g} s"
        )
        self.t0 = time.monotonic()
        await asyncio.gather(self.drive_saves(), self.sample_loop())
        await self.drain()
        self.extra_rows.append(await self.sample("drained"))
        await self.verify()
        await asyncio.gather(*(lp.call(60, cmd="close") for lp in self.loads))
        await asyncio.sleep(3)
        self.extra_rows.append(await self.sample("closed"))


# =============================================================================================
# reporting
# =============================================================================================
def slope_per_min(points: list[tuple[float, float]]) -> float | None:
    """Theil-Sen slope (median of the pairwise slopes), per minute.

    Robust to a lone transient sample (a ping wave, a thread-pool hiccup caught mid-way),
    which would tilt a least-squares fit when it falls at either end of the window."""
    pts = [(t, v) for t, v in points if v is not None and v == v]
    if len(pts) < 3:
        return None
    pairs = [
        (b[1] - a[1]) / (b[0] - a[0])
        for i, a in enumerate(pts)
        for b in pts[i + 1 :]
        if b[0] != a[0]
    ]
    return statistics.median(pairs) * 60 if pairs else None


def ls_slope_per_min(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope per minute (printed next to Theil-Sen, for comparison)."""
    pts = [(t, v) for t, v in points if v is not None and v == v]
    if len(pts) < 3:
        return None
    mt = statistics.fmean(t for t, _ in pts)
    mv = statistics.fmean(v for _, v in pts)
    den = sum((t - mt) ** 2 for t, _ in pts)
    return sum((t - mt) * (v - mv) for t, v in pts) / den * 60 if den else None


def _f(v: Any, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def fmt_row(r: dict[str, Any]) -> str:
    t = r["t"] if isinstance(r["t"], str) else f"{r['t']:.0f}"
    objs = None if r.get("gc_objects") is None else r["gc_objects"] / 1000
    return (
        f"{t:>7} {_f(r.get('rss_mib'), '8.1f')} {_f(r.get('tasks'), '6d')} "
        f"{_f(r.get('fds'), '5d')} {_f(r.get('threads'), '4d')} {_f(objs, '8.1f')} "
        f"{_f(r.get('frames_s'), '8.0f')} {_f(r.get('saves_s'), '6.1f')} "
        f"{_f(r.get('save_ms_p90'), '8.1f')} {_f(r.get('closed'), '6d')}"
    )


HEADER = (
    f"{'t s':>7} {'RSS MiB':>8} {'tasks':>6} {'fds':>5} {'thr':>4} {'gc kobj':>8} "
    f"{'frames/s':>8} {'save/s':>6} {'save p90':>8} {'closed':>6}"
)


def md_row(r: dict[str, Any]) -> str:
    t = r["t"] if isinstance(r["t"], str) else f"{r['t']:.0f}"
    objs = None if r.get("gc_objects") is None else r["gc_objects"] / 1000
    return (
        f"| {t} | {_f(r.get('rss_mib'), '.1f')} | {_f(r.get('tasks'), 'd')} | "
        f"{_f(r.get('fds'), 'd')} | {_f(objs, '.1f')} | {_f(r.get('frames_s'), ',.0f')} | "
        f"{_f(r.get('save_ms_p90'), '.1f')} |"
    )


def type_growth(soak: Soak, top: int = 8) -> str:
    typed = [r["types"] for r in soak.samples if r.get("types")]
    if len(typed) < 2:
        return ""
    a, b = typed[0], typed[-1]
    diff = sorted(((b.get(k, 0) - a.get(k, 0), k) for k in set(a) | set(b)), reverse=True)
    return ", ".join(f"{k} {d:+,}" for d, k in diff[:top] if d)


def verdict(soak: Soak) -> tuple[dict[str, Any], bool, bool]:
    args = soak.args
    half = [r for r in soak.samples if r["t"] >= args.seconds / 2]
    slopes = {
        key: slope_per_min([(r["t"], r.get(key)) for r in half])
        for key in ("rss_mib", "tasks", "fds", "gc_objects")
    }
    bounds = {"rss_mib": RSS_SLOPE_MAX, "tasks": TASK_SLOPE_MAX, "fds": FD_SLOPE_MAX}
    flat = all(slopes[k] is not None and slopes[k] <= b for k, b in bounds.items())
    c = soak.checks
    delivered = (
        c.get("connected") == args.instances * args.per_instance
        and c.get("saves_failed", 1) == 0
        and c.get("frames_received") == c.get("frames_expected")
        and c.get("mismatched", 1) == 0
        and c.get("closed", 1) == 0
        and c.get("frame_errors", 1) == 0
    )
    return slopes, flat, delivered


def report(soak: Soak, elapsed: float) -> str:
    args, c, info = soak.args, soak.checks, soak.info
    slopes, flat, delivered = verdict(soak)
    half = [r for r in soak.samples if r["t"] >= args.seconds / 2]
    print()
    print(HEADER)
    for r in [soak.extra_rows[0], *soak.samples, *soak.extra_rows[1:]] if soak.extra_rows else []:
        print(fmt_row(r))
    print()

    def s(key: str, unit: str, scale: float = 1.0) -> str:
        v = slopes.get(key)
        return "—" if v is None else f"{v / scale:+.3f} {unit}"

    lines = [
        f"second half slopes: RSS {s('rss_mib', 'MiB/min')} (bound {RSS_SLOPE_MAX}), "
        f"tasks {s('tasks', 'tasks/min')} (bound {TASK_SLOPE_MAX}), "
        f"fds {s('fds', 'fds/min')} (bound {FD_SLOPE_MAX}), "
        f"gc objects {s('gc_objects', 'k/min', 1000)}",
        "least squares, for comparison: "
        + ", ".join(
            f"{k} {_f(ls_slope_per_min([(r['t'], r.get(k)) for r in half]), '+.3f')}/min"
            for k in ("rss_mib", "tasks", "fds")
        ),
        f"flat: {'PASS' if flat else 'FAIL'}",
        f"delivery: {'PASS' if delivered else 'FAIL'}: {c.get('connected')} subscribers, "
        f"{c.get('saves_total')} saves ({c.get('saves_failed')} failed), "
        f"{c.get('frames_received')}/{c.get('frames_expected')} data frames, "
        f"{c.get('mismatched')} subscribers not at the database's state, "
        f"{c.get('closed')} sockets closed, {c.get('frame_errors')} bad frames"
        + (f" (first: {c['first_error']})" if c.get("first_error") else ""),
        f"per-subscriber data frames min/max: {c.get('per_sub_nexts')}; "
        f"trigger lag max {soak.late_max_ms:.0f} ms; total {elapsed:.0f} s",
    ]
    growth = type_growth(soak)
    if growth:
        lines.append("gc-tracked objects by type, first to last sample: " + growth)
    lines += [f"note: {n}" for n in soak.notes]
    lines += [f"mismatch: {e}" for e in c.get("mismatch_examples", [])]
    print("\n".join(lines))

    # condensed table: ~7 evenly spaced samples, plus the drained/closed rows
    n = len(soak.samples)
    idx = sorted({round(i * (n - 1) / 6) for i in range(7)}) if n > 1 else list(range(n))
    rows = [soak.extra_rows[0]] if soak.extra_rows else []
    rows += [soak.samples[i] for i in idx] + soak.extra_rows[1:]
    cmd = "python -m tests.benchmarks.soak" + (" --quick" if args.quick else "")
    md = [
        f"`{cmd}`, {info['date']}, commit `{info['commit']}`. Machine: {info['nproc']} CPUs "
        f"({info['cpu']}), Linux {info['kernel']}, Python {info['python']}; server, "
        "PostgreSQL, Redis and the load processes share them.",
        "",
        f"{args.instances * args.per_instance:,} graphql-transport-ws subscribers "
        f"({args.instances} users x {args.per_instance}, {args.load_procs} load processes), "
        f"{args.rate:g} saves/s round-robin for {args.seconds:.0f} s through the save view, "
        f"channels_redis; one P0 process (uvicorn, `--ws {SYSTEMS['P0'].uvicorn_ws}`). "
        f"Sampled every {args.interval:g} s.",
        "",
        "| t s | RSS MiB | tasks | fds | gc objects (k) | frames/s | save p90 ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *(md_row(r) for r in rows),
        "",
        f"Second half (Theil-Sen slope): RSS {s('rss_mib', 'MiB/min')}, "
        f"tasks {s('tasks', 'tasks/min')}, "
        f"fds {s('fds', 'fds/min')}, gc objects {s('gc_objects', 'k/min', 1000)}. "
        f"Bounds: RSS ≤ {RSS_SLOPE_MAX} MiB/min, tasks ≤ {TASK_SLOPE_MAX}/min, "
        f"fds ≤ {FD_SLOPE_MAX}/min → **flat: {'PASS' if flat else 'FAIL'}**."
        + (f" Growth by type (gc-tracked, first to last sample): {growth}." if growth else ""),
        "",
        f"Delivery: {_f(c.get('saves_total'), ',d')} saves ({c.get('saves_failed')} failed), "
        f"{_f(c.get('frames_received'), ',d')} of {_f(c.get('frames_expected'), ',d')} data "
        f"frames, {c.get('closed')} sockets closed, {c.get('mismatched')} of "
        f"{_f(c.get('connected'), ',d')} subscribers away from PostgreSQL's final state → "
        f"**{'PASS' if delivered else 'FAIL'}**.",
    ]
    return "\n".join(md)


# =============================================================================================
# main
# =============================================================================================
def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="60 s instead of 600 s")
    p.add_argument("--seconds", type=float, default=None, help="saving time (default 600)")
    p.add_argument("--rate", type=float, default=10.0, help="saves per second")
    p.add_argument("--interval", type=float, default=10.0, help="s between samples")
    p.add_argument("--instances", type=int, default=10, help="users subscribed to")
    p.add_argument("--per-instance", type=int, default=100, help="subscribers per user")
    p.add_argument("--load-procs", type=int, default=2, help="load processes")
    p.add_argument("--max-in-flight", type=int, default=16, help="save requests at once")
    p.add_argument("--pg-url", default="postgres://postgres@127.0.0.1:5432/test")
    p.add_argument("--pg-schema", default="bench_soak")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379")
    p.add_argument("--redis-db", type=int, default=15, help="flushed before and after")
    p.add_argument("--conn-max-age", type=int, default=60)
    p.add_argument("--json", default="/tmp/gqlo-soak.json", help="raw samples")
    p.add_argument("--from-json", default=None, help="only re-render the report of a --json")
    p.add_argument("--worker-port", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    args.seconds = args.seconds or (60.0 if args.quick else 600.0)
    args.db_url = f"{args.pg_url}?options=-c%20search_path%3D{args.pg_schema}"
    args.redis_db_url = f"{args.redis_url.rstrip('/')}/{args.redis_db}"
    return args


def prepare(args: argparse.Namespace) -> None:
    env = SYSTEMS["P0"].env(args.db_url, None)
    env["BENCH_PG_SCHEMA"] = args.pg_schema
    proc = _spawn(
        [main_python(), "-m", "tests.benchmarks.peers.prepare", str(args.instances)],
        "soak-prepare.log",
        cwd=REPO,
        env=env,
    )
    if wait_child(proc) != 0:
        tail = (LOG_DIR / "soak-prepare.log").read_text(errors="replace").splitlines()[-5:]
        raise RuntimeError(f"prepare failed: {' | '.join(tail)}")


async def amain(soak: Soak, hard_limit: float) -> None:
    try:
        await run_bounded(soak.run(), soak.notes, hard_limit)
    finally:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(60):
                await asyncio.gather(*(lp.stop() for lp in soak.loads))
        if soak.server is not None:
            soak.server.stop()


def main() -> None:
    args = parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the children
    if args.worker_port is not None:
        run_loop(worker_main(args.worker_port))
        return
    if args.from_json:  # re-render the report of an earlier run
        raw = json.loads(Path(args.from_json).read_text())
        soak = Soak(args=argparse.Namespace(**raw["args"]), info=raw["info"])
        soak.samples, soak.extra_rows = raw["samples"], raw["pre_and_after"]
        soak.checks, soak.notes = raw["checks"], raw["notes"]
        soak.late_max_ms = raw.get("late_max_ms", float("nan"))
        print(report(soak, raw.get("elapsed", float("nan"))))
        return
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    import psycopg
    import redis

    psycopg.connect(args.pg_url, connect_timeout=3).close()
    redis.Redis.from_url(args.redis_db_url).flushdb()
    log(f"preparing PostgreSQL schema {args.pg_schema}; Redis db {args.redis_db} flushed")
    started = time.monotonic()
    soak = Soak(args=args, info=machine_info())
    try:
        prepare(args)
        run_loop(amain(soak, args.seconds + 420))
    finally:
        _kill_children()
        with contextlib.suppress(Exception):
            redis.Redis.from_url(args.redis_db_url).flushdb()
    md = report(soak, time.monotonic() - started)
    Path(args.json).write_text(
        json.dumps(
            {
                "info": soak.info,
                "args": vars(args),
                "pre_and_after": soak.extra_rows,
                "samples": soak.samples,
                "checks": soak.checks,
                "notes": soak.notes,
                "late_max_ms": soak.late_max_ms,
                "elapsed": time.monotonic() - started,
            },
            indent=1,
            default=str,
        )
    )
    print(f"\nraw: {args.json}   logs: {LOG_DIR}/soak-*.log")
    print("\n----- markdown for docs/performance.md -----")
    print(md)
    print("----- end -----")
    _, flat, delivered = verdict(soak)
    sys.exit(0 if flat and delivered else 1)


if __name__ == "__main__":
    main()
