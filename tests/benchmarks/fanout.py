"""Side-by-side fan-out benchmark: gql_observer (P0) against its peers and a floor.

Systems (tests/benchmarks/systems.py), each server in its own process on a loopback port:
  F   bare ``websockets`` server broadcasting one pre-encoded frame (the floor)
  P0  gql_observer's demo: ``python -m schema_examples serve`` (project venv), when present
  P1  djangochannelsrestframework 1.3 ObserverModelInstanceMixin under uvicorn (.venv-bench)
  P2  strawberry channels recipe (listen_to_channel + post_save group_send) under uvicorn

W1: N clients subscribe to user 1; one save; time from the trigger request to the LAST
subscriber's frame (see loadgen.py for the exact clock points). Saves alternate between the
systems (F, P0, P1, P2, F, P0, ...) so that machine drift hits all alike. Run with the
in-memory channel layer, then with channels_redis. Also:
  M  server RSS (process tree) with 0 and with N idle subscriptions -> KiB per subscription;
  R  Redis commands per save (INFO commandstats delta, idle background subtracted).

Usage (from the repo root):
  python -m tests.benchmarks.fanout --setup        # creates .venv-bench (peers, plot, psutil)
  python -m tests.benchmarks.fanout --quick        # ~2.5 min: N=100,1000, few saves
  python -m tests.benchmarks.fanout                # full: N=100,1000,5000, 21 saves each
The tool re-executes itself with .venv-bench's interpreter; it is a tool, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import datetime as dt
import json
import os
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.benchmarks.systems import BENCH_VENV, ORDER, REPO, SYSTEMS, System

REQUIREMENTS = Path(__file__).with_name("requirements.txt")
LOG_DIR = Path("/tmp/gqlo-bench-logs")
# every child started in its own session: killed (the whole group) at exit, whatever happens
_CHILDREN: list[int] = []


def _kill_children() -> None:
    for pid in _CHILDREN:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def _forget(pid: int) -> None:
    """Called once a child has been reaped: its pid may be reused, never signal it again."""
    with contextlib.suppress(ValueError):
        _CHILDREN.remove(pid)


atexit.register(_kill_children)


# ---------------------------------------------------------------------------------------------
# setup and interpreter
# ---------------------------------------------------------------------------------------------
def setup_venv() -> int:
    python = BENCH_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {BENCH_VENV}")
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
    cmd = [str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)]
    print(" ".join(cmd))
    return subprocess.run(cmd, check=False).returncode


def ensure_bench_interpreter() -> None:
    python = BENCH_VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == BENCH_VENV.resolve():
        return
    if not python.exists():
        sys.exit(f"{BENCH_VENV} missing: run `python -m tests.benchmarks.fanout --setup` first")
    os.chdir(REPO)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    os.execve(str(python), [str(python), "-m", "tests.benchmarks.fanout", *sys.argv[1:]], env)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def machine_info() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    rev = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    commit = rev.stdout.strip() if rev.returncode == 0 else "no-commit"
    if rev.returncode == 0 and dirty.stdout.strip():
        commit += "+dirty"
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "commit": commit,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation, honest with few samples)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 1))))
    return ordered[rank - 1]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# servers and workers
# ---------------------------------------------------------------------------------------------
@dataclass
class Server:
    system: System
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_kib(self) -> float:
        import psutil

        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
            return sum(p.memory_info().rss for p in procs) / 1024
        except psutil.Error:
            return float("nan")

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        if self.proc.poll() is not None:
            _forget(self.proc.pid)


class WorkerProc:
    """One loadgen worker process (one system's clients)."""

    def __init__(self, key: str, proc: asyncio.subprocess.Process) -> None:
        self.key = key
        self.proc = proc

    @classmethod
    async def start(cls, key: str, port: int) -> WorkerProc:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.benchmarks.loadgen",
            "--system",
            key,
            "--port",
            str(port),
            cwd=REPO,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=open(LOG_DIR / f"worker-{key}.log", "ab"),  # noqa: SIM115
            start_new_session=True,
            limit=1 << 20,
        )
        _CHILDREN.append(proc.pid)
        return cls(key, proc)

    async def call(self, wait: float, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), wait)
        if not line:
            raise RuntimeError(f"worker {self.key} exited (see {LOG_DIR}/worker-{self.key}.log)")
        return json.loads(line)  # type: ignore[no-any-return]

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                await self.call(30, cmd="exit")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.proc.wait(), 5)
        if self.proc.returncode is not None:
            _forget(self.proc.pid)
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.proc.wait(), 5)
        if self.proc.returncode is not None:
            _forget(self.proc.pid)


async def http_ok(port: int, method: str, path: str, body: bytes | None = None) -> bool:
    try:
        async with asyncio.timeout(5):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            if body is not None:
                head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            writer.write((head + "\r\n").encode() + (body or b""))
            raw = await reader.read()
            writer.close()
        return raw.split(b"\r\n", 1)[0].split()[1:2] == [b"200"]
    except (OSError, TimeoutError, IndexError):
        return False


async def wait_ready(server: Server, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            return False
        if server.system.trigger == "mutation":
            ok = await http_ok(
                server.port, "POST", "/graphql/", json.dumps({"query": "{ __typename }"}).encode()
            )
        else:
            ok = await http_ok(server.port, "GET", "/bench/ping/")
        if ok:
            return True
        await asyncio.sleep(0.2)
    return False


# ---------------------------------------------------------------------------------------------
# Redis commandstats
# ---------------------------------------------------------------------------------------------
class RedisStats:
    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url)

    def snapshot(self) -> dict[str, int]:
        info = self.client.info("commandstats")
        out: dict[str, int] = {}
        for key, value in info.items():
            name = key.removeprefix("cmdstat_")
            if name in ("info",):  # our own probes
                continue
            out[name] = int(value["calls"]) if isinstance(value, dict) else 0
        return out

    @staticmethod
    def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
        d = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        return {k: v for k, v in d.items() if v}

    def flushdb(self, url: str) -> None:
        import redis

        redis.Redis.from_url(url).flushdb()


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------
@dataclass
class Cell:
    """One (layer, system, N): all that was measured there."""

    saves: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    connect: dict[str, Any] = field(default_factory=dict)
    rss0_kib: float | None = None
    rssn_kib: float | None = None
    redis_cmds: list[float] = field(default_factory=list)
    redis_breakdown: dict[str, float] = field(default_factory=dict)

    def latencies(self) -> list[float]:
        return [s["last_ms"] for s in self.saves if s.get("complete")]


@dataclass
class Run:
    args: argparse.Namespace
    info: dict[str, str]
    cells: dict[tuple[str, str, int], Cell] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    deadline: float = 0.0

    def cell(self, layer: str, key: str, n: int) -> Cell:
        return self.cells.setdefault((layer, key, n), Cell())

    def out_of_time(self) -> bool:
        return time.monotonic() > self.deadline


def database_url(args: argparse.Namespace, key: str) -> str:
    if args.db == "sqlite":
        return f"sqlite:///{args.tmp}/{key.lower()}.sqlite3"
    return f"{args.pg_url}?options=-c%20search_path%3Dbench_{key.lower()}"


def _spawn(cmd: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, start_new_session=True, **kwargs)
    _CHILDREN.append(proc.pid)
    return proc


def prepare_databases(run: Run, systems: list[System]) -> list[System]:
    """Migrate and seed users for every Django system (in parallel); drop those that fail."""
    procs = {}
    for system in systems:
        if not system.uses_database:
            continue
        env = system.env(database_url(run.args, system.key), None)
        env["BENCH_PG_SCHEMA"] = f"bench_{system.key.lower()}"
        log_path = LOG_DIR / f"prepare-{system.key}.log"
        procs[system.key] = (
            _spawn(
                [system.python, "-m", "tests.benchmarks.peers.prepare", str(run.args.users)],
                cwd=REPO,
                env=env,
                stdout=open(log_path, "wb"),  # noqa: SIM115
                stderr=subprocess.STDOUT,
            ),
            log_path,
        )
    ok = []
    for system in systems:
        if system.key not in procs:
            ok.append(system)
            continue
        proc, log_path = procs[system.key]
        try:
            rc = proc.wait(timeout=240)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait(timeout=5)
        _forget(proc.pid)
        if rc == 0:
            ok.append(system)
        else:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            run.skipped[system.key] = f"prepare failed ({log_path}): {' | '.join(tail)}"
            log(f"{system.key}: {run.skipped[system.key]}")
    return ok


async def run_layer(run: Run, layer: str, systems: list[System]) -> None:
    args = run.args
    redis_urls: dict[str, str | None] = {}
    for i, key in enumerate(ORDER):
        redis_urls[key] = (
            f"{args.redis_url.rstrip('/')}/{args.redis_db_base + i}" if layer == "redis" else None
        )
    stats = RedisStats(f"{args.redis_url.rstrip('/')}/0") if layer == "redis" else None
    if stats is not None:
        for system in systems:
            url = redis_urls[system.key]
            if url and system.key != "F":
                stats.flushdb(url)

    servers: dict[str, Server] = {}
    workers: dict[str, WorkerProc] = {}
    try:
        for system in systems:
            port = free_port()
            log_path = LOG_DIR / f"server-{layer}-{system.key}.log"
            redis_url = redis_urls[system.key] if system.key != "F" else None
            env = system.env(database_url(args, system.key), redis_url)
            env["CONN_MAX_AGE"] = str(args.conn_max_age)
            proc = subprocess.Popen(
                system.server_cmd(port),
                cwd=REPO,
                env=env,
                stdout=open(log_path, "wb"),  # noqa: SIM115
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            _CHILDREN.append(proc.pid)
            servers[system.key] = Server(system, port, proc, log_path)
        ready = await asyncio.gather(*(wait_ready(s, 90) for s in servers.values()))
        for (key, server), ok in zip(list(servers.items()), ready, strict=True):
            if not ok:
                run.skipped[f"{key}/{layer}"] = f"server not ready: {server.log_tail(5)}"
                log(f"{key}/{layer}: server did not come up; log {server.log_path}")
                server.stop()
                del servers[key]
        for key, server in servers.items():
            workers[key] = await WorkerProc.start(key, server.port)
        keys = [k for k in ORDER if k in workers]
        log(f"{layer}: servers up: {', '.join(f'{k}:{servers[k].port}' for k in keys)}")

        # warm-up: one client, two saves, then 0 subscriptions -> RSS baseline
        for key in list(keys):
            w = workers[key]
            res = await w.call(60, cmd="connect", n=1, pk="1", timeout=45)
            warm = [await w.call(30, cmd="save", marker=new_marker(), pk="1", timeout=10)]
            warm.append(await w.call(30, cmd="save", marker=new_marker(), pk="1", timeout=10))
            await w.call(30, cmd="close")
            bad = res.get("first_error") or next(
                (s.get("error") or "no frame" for s in warm if not s.get("complete")), None
            )
            if bad:
                run.skipped[f"{key}/{layer}"] = f"warm-up failed: {bad}"
                log(f"{key}/{layer}: warm-up failed: {bad}")
                keys.remove(key)
        await asyncio.sleep(0.5)
        rss0 = {k: servers[k].rss_kib() for k in keys}

        for n in args.ns:
            if run.out_of_time():
                run.notes.append(f"{layer}: stopped before N={n} (time budget)")
                break
            for key in list(keys):
                res = await workers[key].call(
                    60 + n * 0.1, cmd="connect", n=n, pk="1", concurrency=64, timeout=30 + n * 0.05
                )
                cell = run.cell(layer, key, n)
                cell.connect = res
                if res["connected"] < n:
                    cell.failures.append(f"connected {res['connected']}/{n}: {res['first_error']}")
                    log(f"{key}/{layer} N={n}: only {res['connected']} connected: {res['first_error']}")
                log(f"{key}/{layer} N={n}: {res['connected']} subscribed in {res['secs']} s")
            await asyncio.sleep(1.0)
            for key in keys:
                cell = run.cell(layer, key, n)
                cell.rss0_kib = rss0[key]
                cell.rssn_kib = servers[key].rss_kib()
            background_per_s = 0.0
            if stats is not None:
                before = stats.snapshot()
                await asyncio.sleep(1.0)
                background_per_s = sum(RedisStats.delta(before, stats.snapshot()).values())
            active = list(keys)
            consecutive_fail = dict.fromkeys(keys, 0)
            save_timeout = 10 + n * 0.01
            for rep in range(args.warm + args.saves):
                if run.out_of_time():
                    run.notes.append(f"{layer} N={n}: stopped after {rep} rounds (time budget)")
                    break
                for key in list(active):
                    cell = run.cell(layer, key, n)
                    t_before = time.monotonic()
                    before = stats.snapshot() if stats is not None else {}
                    res = await workers[key].call(
                        save_timeout + 30,
                        cmd="save",
                        marker=new_marker(),
                        pk="1",
                        timeout=save_timeout,
                    )
                    if stats is not None:
                        await asyncio.sleep(args.settle)
                        d = RedisStats.delta(before, stats.snapshot())
                        window = time.monotonic() - t_before
                        if rep >= args.warm:
                            cell.redis_cmds.append(sum(d.values()) - background_per_s * window)
                            for cmd_name, count in d.items():
                                cell.redis_breakdown[cmd_name] = (
                                    cell.redis_breakdown.get(cmd_name, 0) + count
                                )
                    if rep < args.warm:
                        continue
                    cell.saves.append(res)
                    if not res.get("complete"):
                        reason = res.get("error") or (
                            f"{res.get('received')}/{res.get('expected')} frames within "
                            f"{save_timeout:.0f} s"
                        )
                        cell.failures.append(reason)
                        consecutive_fail[key] += 1
                        log(f"{key}/{layer} N={n}: save incomplete: {reason}")
                        if consecutive_fail[key] >= 2:
                            active.remove(key)
                            run.notes.append(f"{key}/{layer} N={n}: dropped after 2 failed saves")
                    else:
                        consecutive_fail[key] = 0
            for key in keys:
                cell = run.cell(layer, key, n)
                lat = cell.latencies()
                if lat:
                    log(
                        f"{key}/{layer} N={n}: median {statistics.median(lat):.1f} ms "
                        f"p90 {pct(lat, 0.9):.1f} ms over {len(lat)} saves"
                    )
                if cell.redis_cmds:
                    nsaves = len(cell.redis_cmds)
                    cell.redis_breakdown = {
                        k: v / nsaves
                        for k, v in sorted(cell.redis_breakdown.items(), key=lambda kv: -kv[1])
                    }
    finally:
        await asyncio.gather(*(w.stop() for w in workers.values()), return_exceptions=True)
        for server in servers.values():
            server.stop()
        if stats is not None:
            for system in systems:
                url = redis_urls[system.key]
                if url and system.key != "F":
                    with contextlib.suppress(Exception):
                        stats.flushdb(url)


def new_marker() -> str:
    return f"bm-{secrets.token_hex(4)}"


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------
def summarise(run: Run) -> list[dict[str, Any]]:
    rows = []
    for (layer, key, n), cell in sorted(
        run.cells.items(), key=lambda kv: (kv[0][0] != "inmem", kv[0][2], ORDER.index(kv[0][1]))
    ):
        lat = cell.latencies()
        firsts = [s["first_ms"] for s in cell.saves if s.get("complete")]
        calls = [s["save_call_ms"] for s in cell.saves if s.get("complete") and "save_call_ms" in s]
        row: dict[str, Any] = {
            "layer": layer,
            "system": key,
            "n": n,
            "saves": len(lat),
            "failed": len(cell.failures),
        }
        if lat:
            med = statistics.median(lat)
            row |= {
                "median_ms": med,
                "p90_ms": pct(lat, 0.9),
                "first_ms": statistics.median(firsts),
                "deliveries_per_s": n / (med / 1000) if med > 0 else float("inf"),
            }
        if calls:
            row["save_call_ms"] = statistics.median(calls)
        if cell.rss0_kib is not None and cell.rssn_kib is not None:
            row["kib_per_sub"] = (cell.rssn_kib - cell.rss0_kib) / n
            row["rss0_mib"] = cell.rss0_kib / 1024
        if cell.redis_cmds:
            row["redis_cmds_per_save"] = statistics.median(cell.redis_cmds)
            row["redis_top"] = {
                k: round(v, 1) for k, v in list(cell.redis_breakdown.items())[:4]
            }
        if cell.failures:
            row["failure"] = cell.failures[0]
        rows.append(row)
    return rows


def fmt(value: Any, spec: str = ".1f") -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if value != value:  # nan
            return "—"
        return format(value, spec)
    return str(value)


def ratio_rows(rows: list[dict[str, Any]]) -> list[tuple[str, int, str, str, str]]:
    by = {(r["layer"], r["system"], r["n"]): r for r in rows}
    out = []
    for layer, n in sorted({(r["layer"], r["n"]) for r in rows}, key=lambda t: (t[0] != "inmem", t[1])):
        p0 = by.get((layer, "P0", n), {}).get("median_ms")
        cols = []
        for other in ("P1", "P2", "F"):
            o = by.get((layer, other, n), {}).get("median_ms")
            cols.append(f"{p0 / o:.2f}" if p0 and o else "—")
        out.append((layer, n, *cols))
    return out


def markdown(run: Run, rows: list[dict[str, Any]]) -> str:
    info = run.info
    mode = "quick" if run.args.quick else "full"
    lines = [
        f"### Fan-out W1 ({mode} run, {info['date']}, commit `{info['commit']}`)",
        "",
        f"Machine: {info['nproc']} CPUs, {info['cpu']}, Linux {info['kernel']}, "
        f"Python {info['python']}; database {run.args.db}; servers, Redis and the load "
        "workers share these CPUs. Latency = from the load process sending the save trigger "
        "(HTTP) to the last subscriber's frame read; deliveries/s = N / median latency; "
        "KiB/sub = (server RSS with N idle subscriptions − RSS with 0) / N; Redis cmds/save = "
        "INFO commandstats delta per save (Lua-internal calls included, idle background "
        "subtracted).",
        "",
        "| layer | N | system | saves | median ms | p90 ms | first ms | deliveries/s "
        "| KiB/sub | Redis cmds/save |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['layer']} | {r['n']} | {r['system']} | {r['saves']} "
            f"| {fmt(r.get('median_ms'))} | {fmt(r.get('p90_ms'))} | {fmt(r.get('first_ms'))} "
            f"| {fmt(r.get('deliveries_per_s'), ',.0f')} | {fmt(r.get('kib_per_sub'))} "
            f"| {fmt(r.get('redis_cmds_per_save'), '.0f')} |"
        )
    lines += [
        "",
        "Median-latency ratios (below 1 = P0 faster):",
        "",
        "| layer | N | P0/P1 | P0/P2 | P0/F |",
        "|---|---:|---:|---:|---:|",
    ]
    for layer, n, a, b, c in ratio_rows(rows):
        lines.append(f"| {layer} | {n} | {a} | {b} | {c} |")
    if run.skipped or run.notes or any(r.get("failure") for r in rows):
        lines += ["", "Not measured / incomplete:", ""]
        for key, why in run.skipped.items():
            lines.append(f"- {key}: {why}")
        for note in run.notes:
            lines.append(f"- {note}")
        for r in rows:
            if r.get("failure"):
                lines.append(
                    f"- {r['system']}/{r['layer']} N={r['n']}: {r['failed']} failed: {r['failure']}"
                )
    return "\n".join(lines)


def plain_table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'layer':6} {'N':>5} {'sys':4} {'saves':>5} {'med ms':>8} {'p90 ms':>8} "
        f"{'first ms':>8} {'deliv/s':>9} {'KiB/sub':>8} {'redis/save':>10}  redis top"
    )
    out = [head, "-" * len(head)]
    for r in rows:
        top = ", ".join(f"{k}={v:g}" for k, v in (r.get("redis_top") or {}).items())
        out.append(
            f"{r['layer']:6} {r['n']:>5} {r['system']:4} {r['saves']:>5} "
            f"{fmt(r.get('median_ms')):>8} {fmt(r.get('p90_ms')):>8} {fmt(r.get('first_ms')):>8} "
            f"{fmt(r.get('deliveries_per_s'), ',.0f'):>9} {fmt(r.get('kib_per_sub')):>8} "
            f"{fmt(r.get('redis_cmds_per_save'), '.0f'):>10}  {top}"
        )
    out += ["", f"{'layer':6} {'N':>5} {'P0/P1':>7} {'P0/P2':>7} {'P0/F':>7}   (median latency)"]
    for layer, n, a, b, c in ratio_rows(rows):
        out.append(f"{layer:6} {n:>5} {a:>7} {b:>7} {c:>7}")
    return "\n".join(out)


def plot(run: Run, rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = [layer for layer in run.args.layers if any(r["layer"] == layer for r in rows)]
    if not layers:
        return
    fig, axes = plt.subplots(1, len(layers), figsize=(6 * len(layers), 4.5), squeeze=False)
    colours = {"F": "tab:gray", "P0": "tab:green", "P1": "tab:red", "P2": "tab:blue"}
    for ax, layer in zip(axes[0], layers, strict=True):
        for key in ORDER:
            pts = [
                r for r in rows if r["layer"] == layer and r["system"] == key and "median_ms" in r
            ]
            if not pts:
                continue
            xs = [r["n"] for r in pts]
            med = [r["median_ms"] for r in pts]
            upper = [r["p90_ms"] - r["median_ms"] for r in pts]
            ax.errorbar(
                xs,
                med,
                yerr=[[0] * len(pts), upper],
                marker="o",
                capsize=3,
                color=colours.get(key),
                label=SYSTEMS[key].label,
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("subscribers of one instance (N)")
        ax.set_ylabel("save → last frame, ms (median, bar to p90)")
        ax.set_title(f"W1 fan-out, {'in-memory layer' if layer == 'inmem' else 'channels_redis'}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    info = run.info
    fig.suptitle(
        f"gql_observer fan-out ({'quick' if run.args.quick else 'full'}) · {info['commit']} · "
        f"{info['nproc']}× {info['cpu']}",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.fanout",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--setup", action="store_true", help="create/update .venv-bench and exit")
    p.add_argument("--quick", action="store_true", help="N=100,1000, 7 saves, ~2.5 minutes")
    p.add_argument("--systems", default=",".join(ORDER), help="comma list of F,P0,P1,P2")
    p.add_argument("--layers", default="inmem,redis", help="comma list of inmem,redis")
    p.add_argument("--ns", default=None, help="comma list of N (default 100,1000[,5000 full])")
    p.add_argument("--saves", type=int, default=None, help="measured saves per system and N")
    p.add_argument("--warm", type=int, default=1, help="unrecorded saves per system and N")
    p.add_argument("--db", choices=("postgres", "sqlite"), default="postgres")
    p.add_argument(
        "--conn-max-age",
        type=int,
        default=60,
        help="CONN_MAX_AGE env for every server (peers honour it; P0 if its settings do)",
    )
    p.add_argument("--pg-url", default="postgres://postgres@127.0.0.1:5432/test")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379")
    p.add_argument(
        "--redis-db-base",
        type=int,
        default=11,
        help="Redis db index of F; P0, P1, P2 get the next ones (flushed before and after)",
    )
    p.add_argument("--settle", type=float, default=0.05, help="s to wait before reading Redis stats")
    p.add_argument("--plot", default="docs/perf/fanout.png")
    p.add_argument("--json", default="/tmp/gqlo-fanout.json", help="raw results")
    p.add_argument("--budget", type=float, default=None, help="s after which no new saves start")
    args = p.parse_args()
    args.quick = bool(args.quick)
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    args.layers = [s.strip() for s in args.layers.split(",") if s.strip()]
    args.ns = (
        [int(x) for x in args.ns.split(",")] if args.ns else ([100, 1000] if args.quick else [100, 1000, 5000])
    )
    args.saves = args.saves or (7 if args.quick else 21)
    args.budget = args.budget or (140.0 if args.quick else 3000.0)
    args.users = 1
    bad = [s for s in args.systems if s not in SYSTEMS] + [
        layer for layer in args.layers if layer not in ("inmem", "redis")
    ]
    if bad:
        p.error(f"unknown: {bad}")
    return args


async def measure(run: Run) -> None:
    args = run.args
    systems = []
    for key in ORDER:
        if key not in args.systems:
            continue
        why = SYSTEMS[key].unavailable()
        if why:
            run.skipped[key] = why
            log(f"{key}: skipped: {why}")
        else:
            systems.append(SYSTEMS[key])
    if args.db == "postgres":
        import psycopg

        try:
            psycopg.connect(args.pg_url, connect_timeout=3).close()
        except psycopg.Error as exc:
            log(f"PostgreSQL unreachable ({exc}); using SQLite files")
            args.db = "sqlite"
    log(f"preparing databases ({args.db})")
    systems = await asyncio.to_thread(prepare_databases, run, systems)
    for layer in args.layers:
        if run.out_of_time():
            run.notes.append(f"layer {layer} not run (time budget)")
            continue
        if layer == "redis":
            try:
                RedisStats(f"{args.redis_url.rstrip('/')}/0").client.ping()
            except Exception as exc:
                run.notes.append(f"redis layer not run: {exc}")
                continue
        await run_layer(run, layer, systems)


async def amain(run: Run, hard_limit: float) -> None:
    """Measure, bounded by ``hard_limit`` seconds and by SIGINT/SIGTERM; cleanup always runs."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        async with asyncio.timeout(hard_limit):
            await measure(run)
    except TimeoutError:
        run.notes.append(f"hard time limit ({hard_limit:.0f} s) hit: results are partial")
    except asyncio.CancelledError:
        run.notes.append("interrupted: results are partial")
    except Exception as exc:
        run.notes.append(f"aborted by {type(exc).__name__}: {exc}")
        log(f"aborted: {exc!r}")


def main() -> None:
    if "--setup" in sys.argv[1:]:
        sys.exit(setup_venv())
    ensure_bench_interpreter()
    args = parse_args()
    import resource
    import tempfile

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by servers and workers
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    args.tmp = tempfile.mkdtemp(prefix="gqlo-bench-")
    hard_limit = args.budget + (100 if args.quick else 600)

    run = Run(args=args, info=machine_info(), deadline=time.monotonic() + args.budget)
    started = time.monotonic()
    try:
        import uvloop

        uvloop.run(amain(run, hard_limit))
    except ImportError:
        asyncio.run(amain(run, hard_limit))
    _kill_children()
    rows = summarise(run)
    plot_path = (REPO / args.plot) if not Path(args.plot).is_absolute() else Path(args.plot)
    with contextlib.suppress(Exception):
        plot(run, rows, plot_path)
    Path(args.json).write_text(
        json.dumps(
            {
                "info": run.info,
                "args": {k: v for k, v in vars(args).items() if k != "tmp"},
                "rows": rows,
                "skipped": run.skipped,
                "notes": run.notes,
                "raw": {f"{k[0]}/{k[1]}/{k[2]}": vars(c) for k, c in run.cells.items()},
            },
            indent=1,
            default=str,
        )
    )
    print()
    print(plain_table(rows))
    print()
    print(f"plot: {plot_path}   raw: {args.json}   logs: {LOG_DIR}")
    print(f"total {time.monotonic() - started:.0f} s")
    print()
    print("----- markdown for docs/performance.md -----")
    print(markdown(run, rows))
    print("----- end -----")


if __name__ == "__main__":
    main()
