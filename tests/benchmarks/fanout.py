"""Side-by-side fan-out benchmark: gql_observer (P0) against its peers and a floor.

Systems (tests/benchmarks/systems.py), each server in its own process on a loopback port:
  F   bare ``websockets`` server broadcasting one pre-encoded frame (the floor)
  U   the same fan-out as a bare ASGI app under uvicorn, like P0 (the ASGI floor)
  P0  gql_observer's demo: ``python -m schema_examples serve`` (project venv), when present
  P1  djangochannelsrestframework 1.3 ObserverModelInstanceMixin under uvicorn (.venv-bench)
  P2  strawberry channels recipe (listen_to_channel + post_save group_send) under uvicorn

Every subscriber sends what real clients send: one named document with its arguments in
``variables`` and its OWN requestId (a millisecond timestamp + its index), see loadgen.py.
W1: N clients subscribe to user 1; one save; time from the trigger request (and from the
server's save() call) to the LAST subscriber's frame (see loadgen.py for the exact clock
points). Saves alternate between the systems (F, U, P0, P1, P2, F, U, ...) so that machine
drift hits all alike. Run with the in-memory channel layer, then with channels_redis. Also:
  M  server RSS (process tree) with 0 and with N idle subscriptions -> KiB per subscription;
  R  Redis commands per save (INFO commandstats delta around the publish and delivery).
W1same: W1 with every subscriber the very same document and requestId (the old W1).
W1v: W1 with each subscriber logged in as a different user (P0: gql_observer tokens in
     connection_init; P1, P2: session cookies); floors ignore credentials.
W1p: W1v's viewers on P0's ``userP`` (observed with a permission callable that allows them);
     P2: a permission function per message; P1: W1v's traffic.
W1x: W1v's viewers on P0's ``userX`` (``email`` behind a strawberry permission class); P2:
     the same field permission; P1: W1v's traffic.
W2: W1's N subscribers spread over 10 distinct selections (systems.SELECTIONS).
W5 (full mode): W1 at N=1000 plus one subscriber that never reads its socket.
W3 (full mode): 1000 subscribers, each of its own instance; all 1000 saved in one burst.
Each scenario gets freshly started servers (so its M starts from a fresh process) and its
share of the time budget. The targets block compares P0 with the peers and F per layer and N.
W4 (``--scenarios W4``, channels_redis only): a writer process (writer.py) saves 10 hot rows
through the ORM at 1,000 saves/s for 10 s (quick; full: 30 s) while 100 clients subscribe to
each row; after the system drains, every subscriber's last frame must carry the row's committed
value.

Usage (from the repo root; see tests/benchmarks/README.md):
  python -m tests.benchmarks.fanout --setup        # creates .venv-bench (peers, plot, psutil)
  python -m tests.benchmarks.fanout --quick        # W1 family, N=100,1000, 4 saves: ~6 min
  python -m tests.benchmarks.fanout                # N=100,1000,5000 x 21 saves, + W2, W5, W3
  python -m tests.benchmarks.fanout --quick --scenarios W4 --layers redis   # W4, 10 s/system
The tool re-executes itself with .venv-bench's interpreter; it is a tool, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import ctypes
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
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.benchmarks.systems import (
    BENCH_VENV,
    DEFAULT_SYSTEMS,
    LEAN_WS,
    ORDER,
    REPO,
    SYSTEMS,
    System,
)

REQUIREMENTS = Path(__file__).with_name("requirements.txt")
LOG_DIR = Path("/tmp/gqlo-bench-logs")
# every child started in its own session: killed (the whole group) at exit, whatever happens
_CHILDREN: list[int] = []


def _kill_children() -> None:
    for pid in _CHILDREN:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
except OSError:
    _LIBC = None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it if the orchestrator dies, even by SIGKILL.

    Children are only ever spawned from the event loop's thread, which lives as long as the
    orchestrator does (the death signal follows the spawning thread)."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


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
    # the system's other server processes (P0x2), as (port, process)
    more: list[tuple[int, subprocess.Popen[bytes]]] = field(default_factory=list)

    def alive(self) -> bool:
        return self.proc.poll() is None and all(p.poll() is None for _, p in self.more)

    def rss_kib(self) -> float:
        import psutil

        try:
            total = 0
            for pid in [self.proc.pid, *(p.pid for _, p in self.more)]:
                root = psutil.Process(pid)
                total += sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
            return float(total) / 1024
        except psutil.Error:
            return float("nan")

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        for port, proc in self.more:
            Server(self.system, port, proc, self.log_path).stop()
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
    async def start(cls, key: str, port: int, more_ports: tuple[int, ...] = ()) -> WorkerProc:
        cmd = [sys.executable, "-m", "tests.benchmarks.loadgen", "--system", key]
        cmd += ["--port", str(port), *(a for p in more_ports for a in ("--more-port", str(p)))]
        return cls(key, await spawn_piped(cmd, f"worker-{key}.log", limit=1 << 20))

    async def call(self, wait: float, on_progress: Any = None, **cmd: Any) -> dict[str, Any]:
        """Send one command; ``on_progress`` (async) runs on each progress line before the reply."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        await self.proc.stdin.drain()
        async with asyncio.timeout(wait):
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    raise RuntimeError(
                        f"worker {self.key} exited (see {LOG_DIR}/worker-{self.key}.log)"
                    )
                reply = json.loads(line)
                if "progress" not in reply:
                    return reply  # type: ignore[no-any-return]
                if on_progress is not None:
                    await on_progress()

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                await self.call(30, cmd="exit")
        await stop_process(self.proc, 5)


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
    waiting = [server.port, *(port for port, _ in server.more)]
    while time.monotonic() < deadline:
        if not server.alive():
            return False
        port = waiting[0]
        if server.system.trigger == "mutation":
            ok = await http_ok(
                port, "POST", "/graphql/", json.dumps({"query": "{ __typename }"}).encode()
            )
        else:
            ok = await http_ok(port, "GET", "/bench/ping/")
        if ok:
            waiting.pop(0)
            if not waiting:
                return True
            continue
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
    """One (scenario, layer, system, N): all that was measured there."""

    saves: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    connect: dict[str, Any] = field(default_factory=dict)
    rss0_kib: float | None = None
    rssn_kib: float | None = None
    redis_cmds: list[float] = field(default_factory=list)
    redis_breakdown: dict[str, float] = field(default_factory=dict)
    backlog: dict[str, Any] = field(default_factory=dict)
    w4: dict[str, Any] = field(default_factory=dict)

    def latencies(self) -> list[float]:
        return [s["last_ms"] for s in self.saves if s.get("complete")]

    def since_save(self) -> list[float]:
        """From the server's first ``save()`` call to the last frame, per complete save; empty
        unless every complete save has the server's stamp."""
        done = [s for s in self.saves if s.get("complete")]
        if not done or any("save_call_ms" not in s for s in done):
            return []
        return [s["last_ms"] - s["save_call_ms"] for s in done]


CellKey = tuple[str, str, str, int]  # scenario, layer, system, N


@dataclass
class Run:
    args: argparse.Namespace
    info: dict[str, str]
    cells: dict[CellKey, Cell] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    deadline: float = 0.0  # no new save after this (the --budget)
    layer_deadline: float = float("inf")  # this layer's share of what is left of the budget
    scenario_deadline: float = float("inf")  # this scenario's share of the layer's

    def cell(self, scenario: str, layer: str, key: str, n: int) -> Cell:
        return self.cells.setdefault((scenario, layer, key, n), Cell())

    def out_of_time(self) -> bool:
        return time.monotonic() > min(self.deadline, self.layer_deadline, self.scenario_deadline)


def database_url(args: argparse.Namespace, key: str) -> str:
    if args.db == "sqlite":
        return f"sqlite:///{args.tmp}/{key.lower()}.sqlite3"
    return f"{args.pg_url}?options=-c%20search_path%3D{pg_schema(args, key)}"


def pg_schema(args: argparse.Namespace, key: str) -> str:
    """The system's PostgreSQL schema: ``bench_p0``, ... (``lists_fanout.py``: ``lists_p0``)."""
    return f"{getattr(args, 'schema_prefix', 'bench')}_{key.lower()}"


def writer_database_url(args: argparse.Namespace, key: str) -> str:
    """W4's writers' database: the system's, on PostgreSQL with ``synchronous_commit`` as
    ``--w4-sync-commit`` says (default off: a commit does not wait for the WAL to reach the
    disk, which on this machine's virtual disk cost ~0.4 ms of a ~1.1 ms save). Every system's
    writers get the same setting; transactions, locks and visibility are unchanged."""
    url = database_url(args, key)
    if args.db == "postgres" and args.w4_sync_commit == "off":
        url += "%20-c%20synchronous_commit%3Doff"
    return url


_OPEN_LOGS: list[int] = []


def _log_fd(name: str, *, append: bool = False) -> int:
    """A log file in LOG_DIR for a child's output; the parent's copy is closed after spawning."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(LOG_DIR / name, flags, 0o644)
    _OPEN_LOGS.append(fd)
    return fd


def _close_log_fds() -> None:
    while _OPEN_LOGS:
        os.close(_OPEN_LOGS.pop())


async def spawn_piped(
    cmd: list[str], log_name: str, *, append: bool = True, **kwargs: Any
) -> asyncio.subprocess.Process:
    """Start a child speaking JSON lines on stdin/stdout, stderr to a log, in its own session,
    killed with the orchestrator (load workers, W4's writer, the soak's load processes)."""
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        cwd=kwargs.pop("cwd", REPO),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=_log_fd(log_name, append=append),
        start_new_session=True,
        preexec_fn=_die_with_parent,
        **kwargs,
    )
    _CHILDREN.append(proc.pid)
    _close_log_fds()
    return proc


def wait_child(proc: subprocess.Popen[bytes], timeout: float = 240) -> int:
    """Wait for a one-shot child (a prepare step); killed past ``timeout``. Its return code."""
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        rc = proc.wait(timeout=5)
    _forget(proc.pid)
    return rc


def _spawn(
    cmd: list[str], log_name: str, *, append: bool = False, **kwargs: Any
) -> subprocess.Popen[bytes]:
    """Start a child in its own session (so its whole group can be killed), output to a log
    (``append``: after what earlier children wrote there)."""
    try:
        proc = subprocess.Popen(
            cmd,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            stdout=_log_fd(log_name, append=append),
            stderr=subprocess.STDOUT,
            **kwargs,
        )
    finally:
        _close_log_fds()
    _CHILDREN.append(proc.pid)
    return proc


def prepare_databases(run: Run, systems: list[System]) -> list[System]:
    """Migrate and seed users for every Django system (in parallel); drop those that fail."""
    procs = {}
    for system in systems:
        if not system.uses_database:
            continue
        env = system.env(database_url(run.args, system.key), None)
        env["BENCH_PG_SCHEMA"] = pg_schema(run.args, system.key)
        log_path = LOG_DIR / f"prepare-{system.key}.log"
        procs[system.key] = (
            _spawn(
                [system.python, "-m", "tests.benchmarks.peers.prepare", str(run.args.users)],
                log_path.name,
                cwd=REPO,
                env=env,
            ),
            log_path,
        )
    ok = []
    for system in systems:
        if system.key not in procs:
            ok.append(system)
            continue
        proc, log_path = procs[system.key]
        if wait_child(proc) == 0:
            ok.append(system)
        else:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            run.skipped[system.key] = f"prepare failed ({log_path}): {' | '.join(tail)}"
            log(f"{system.key}: {run.skipped[system.key]}")
    return ok


def new_marker() -> str:
    return f"bm-{secrets.token_hex(4)}"


@dataclass
class Layer:
    """The servers and load workers of one channel-layer configuration."""

    run: Run
    name: str  # "inmem" | "redis" | "pubsub"
    servers: dict[str, Server] = field(default_factory=dict)
    workers: dict[str, WorkerProc] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)  # systems still in the race, in ORDER
    stats: RedisStats | None = None
    rss0: dict[str, float] = field(default_factory=dict)
    redis_urls: dict[str, str | None] = field(default_factory=dict)

    async def connect_all(
        self,
        n: int,
        *,
        distinct: bool = False,
        pks: list[str] | None = None,
        traffic: Traffic | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Top every system up to n subscribers, all systems at once (connecting is CPU-bound
        on the servers; the machine has few cores). Connect time is logged, not reported.
        ``traffic``: what each subscriber sends (default: W1's, own requestIds)."""
        spec = (traffic or Traffic()).spec()
        replies = await asyncio.gather(
            *(
                self.workers[key].call(
                    150 + n * 0.2,
                    cmd="connect",
                    n=n,
                    pk="1",
                    distinct=distinct,
                    pks=pks,
                    spec=spec,
                    concurrency=32,
                    timeout=90 + n * 0.12,
                )
                for key in self.keys
            )
        )
        out = dict(zip(self.keys, replies, strict=True))
        for key, res in out.items():
            extra = (
                f" ({res['failed']} attempts failed: {res['first_error']})" if res["failed"] else ""
            )
            log(f"{key}/{self.name} N={n}: {res['connected']} subscribed in {res['secs']} s{extra}")
        return out

    async def close_all(self) -> None:
        await asyncio.gather(*(self.workers[k].call(120, cmd="close") for k in self.keys))

    async def rounds(
        self,
        scenario: str,
        n: int,
        pks: list[str],
        rounds: int,
        warm: int,
        save_timeout: float,
        *,
        redis_until_first: bool = True,
    ) -> None:
        """``warm + rounds`` rounds; each round saves once on every system, in ORDER, so that
        machine drift hits all systems alike. R (Redis commands) is read per save, up to
        ``settle`` s after the first frame, or (``redis_until_first=False``) after the last."""
        run, args, stats = self.run, self.run.args, self.stats
        active = list(self.keys)
        consecutive_fail = dict.fromkeys(self.keys, 0)
        for rep in range(warm + rounds):
            # past the budget, stop, but not before MIN_ROUNDS measured rounds: a median needs them
            if rep >= warm + MIN_ROUNDS and run.out_of_time():
                run.notes.append(
                    f"{scenario}/{self.name} N={n}: stopped after {max(rep - warm, 0)} of "
                    f"{rounds} rounds (time budget)"
                )
                break
            for key in list(active):
                cell = run.cell(scenario, self.name, key, n)
                # R: Redis commands from just before the trigger to `settle` s after the first
                # subscriber's frame: the publish and the layer's delivery are done by then, and
                # the window stays short whatever the socket writes cost afterwards
                before = stats.snapshot() if stats is not None else {}
                snap: dict[str, dict[str, int]] = {}

                async def first_frame(snap: dict[str, dict[str, int]] = snap) -> None:
                    if stats is not None:
                        await asyncio.sleep(args.settle)
                        snap["after"] = stats.snapshot()

                res = await self.workers[key].call(
                    save_timeout + 60,
                    on_progress=first_frame,
                    cmd="save",
                    marker=new_marker(),
                    pks=pks,
                    timeout=save_timeout,
                    progress=stats is not None and redis_until_first,
                )
                if rep < warm:
                    continue
                if stats is not None:
                    if "after" not in snap:
                        await asyncio.sleep(args.settle)
                    d = RedisStats.delta(before, snap.get("after") or stats.snapshot())
                    cell.redis_cmds.append(sum(d.values()))
                    for name, count in d.items():
                        cell.redis_breakdown[name] = cell.redis_breakdown.get(name, 0) + count
                cell.saves.append(res)
                if res.get("complete"):
                    consecutive_fail[key] = 0
                    continue
                reason = res.get("error") or (
                    f"{res.get('received')}/{res.get('expected')} frames within "
                    f"{save_timeout:.0f} s ({res.get('closed')} sockets closed)"
                )
                cell.failures.append(reason)
                consecutive_fail[key] += 1
                log(f"{key}/{self.name} {scenario} N={n}: save incomplete: {reason}")
                if consecutive_fail[key] >= 2:
                    active.remove(key)
                    run.notes.append(
                        f"{key}/{self.name} {scenario} N={n}: dropped after 2 failures"
                    )
        for key in self.keys:
            cell = run.cell(scenario, self.name, key, n)
            lat = cell.latencies()
            if lat:
                log(
                    f"{key}/{self.name} {scenario} N={n}: median {statistics.median(lat):.1f} ms "
                    f"p90 {pct(lat, 0.9):.1f} ms over {len(lat)} saves"
                )
            if cell.redis_cmds:
                count = len(cell.redis_cmds)
                cell.redis_breakdown = {
                    k: v / count
                    for k, v in sorted(cell.redis_breakdown.items(), key=lambda kv: -kv[1])
                }

    def record_connect(self, scenario: str, n: int, replies: dict[str, dict[str, Any]]) -> None:
        for key, res in replies.items():
            cell = self.run.cell(scenario, self.name, key, n)
            cell.connect = res
            if res["connected"] < n:
                cell.failures.append(f"connected {res['connected']}/{n}: {res['first_error']}")


MIN_ROUNDS = 2


def save_timeout(n: int) -> float:
    return 10 + n * 0.012


@dataclass(frozen=True)
class Traffic:
    """What every subscriber of a scenario sends: loadgen's ``spec`` (see loadgen.py)."""

    rid: str = "own"  # "own": each its own requestId, as a variable; "same": W1same
    selections: int = 1  # W2: distinct selections, systems.SELECTIONS
    field: str = "user"  # P0's and P2's subscription field
    auth: bool = False  # each subscriber logged in as its own user
    must: str | None = None  # what every data frame must carry (Django systems)

    def spec(self) -> dict[str, Any]:
        return {
            "rid": self.rid,
            "selections": self.selections,
            "field": self.field,
            "auth": self.auth,
            "must": self.must,
        }


#: The W1 family: N subscribers of user 1, one save at a time, M measured; only what the
#: subscribers send differs.
FANOUT: dict[str, Traffic] = {
    "W1": Traffic(),
    "W1same": Traffic(rid="same"),
    "W1v": Traffic(auth=True),
    "W1p": Traffic(auth=True, field="userP"),
    # an anonymous viewer gets no email from P0's userX nor P2's: every frame must have it
    "W1x": Traffic(auth=True, field="userX", must="@example.com"),
}
#: What each system runs in a scenario where it has no equivalent of its own.
STAND_INS = {
    ("W1p", "P1"): "W1v's traffic",
    ("W1x", "P1"): "W1v's traffic",
}


async def scenario_fanout(lay: Layer, scenario: str) -> None:
    """W1 and its variants (FANOUT), and W2: N subscribers of one instance, one save at a
    time; M (RSS with N idle subscriptions against the fresh server's baseline) at every N."""
    args = lay.run.args
    w2 = Traffic(selections=args.w2_selections)
    traffic = w2 if scenario == "W2" else FANOUT[scenario]
    for n in args.ns:
        if lay.run.out_of_time():
            lay.run.notes.append(f"{scenario}/{lay.name}: stopped before N={n} (time budget)")
            break
        lay.record_connect(scenario, n, await lay.connect_all(n, traffic=traffic))
        await asyncio.sleep(1.0)
        for key in lay.keys:  # M: RSS with N idle subscriptions against the warm baseline
            cell = lay.run.cell(scenario, lay.name, key, n)
            cell.rss0_kib = lay.rss0[key]
            cell.rssn_kib = lay.servers[key].rss_kib()
        await lay.rounds(scenario, n, ["1"], args.saves, args.warm, save_timeout(n))
    await lay.close_all()


async def scenario_w5(lay: Layer, scenario: str = "W5") -> None:
    """W5: W1 at N=w5_n while one more subscriber of the instance never reads its socket.

    Before the N readers connect, each system gets the stalled subscriber and up to
    ``w5_prefill`` saves (no other subscriber) so that the server's writes to it back up;
    the kernel queues towards it are reported (ss). Compare with W1 at the same N."""
    args = lay.run.args
    n = args.w5_n
    if lay.run.out_of_time():
        lay.run.notes.append(f"W5/{lay.name}: not run (time budget)")
        return
    for key in lay.keys:
        w = lay.workers[key]
        res = await w.call(60, cmd="stall", pk="1", timeout=30)
        if "error" in res:
            lay.run.cell("W5", lay.name, key, n).failures.append(f"stall: {res['error']}")
            continue
        deadline = time.monotonic() + args.w5_prefill_secs
        done = 0
        while done < args.w5_prefill and time.monotonic() < deadline:
            await w.call(60, cmd="save", marker=new_marker(), pks=["1"], timeout=5)
            done += 1
        backlog = await w.call(30, cmd="backlog")
        backlog["prefill_saves"] = done
        lay.run.cell("W5", lay.name, key, n).backlog = backlog
        log(f"{key}/{lay.name} W5: stalled subscriber after {done} saves: {backlog}")
    lay.record_connect("W5", n, await lay.connect_all(n))
    await lay.rounds("W5", n, ["1"], args.w5_saves, 1, save_timeout(n))
    for key in lay.keys:
        lay.run.cell("W5", lay.name, key, n).backlog.update(
            {"after": await lay.workers[key].call(30, cmd="backlog")}
        )
        await lay.workers[key].call(30, cmd="unstall")
    await lay.close_all()


async def scenario_w3(lay: Layer, scenario: str = "W3") -> None:
    """W3: w3_n subscribers, each of its own instance; one request saves all instances."""
    args = lay.run.args
    m = args.w3_n
    if lay.run.out_of_time():
        lay.run.notes.append(f"W3/{lay.name}: not run (time budget)")
        return
    lay.record_connect("W3", m, await lay.connect_all(m, distinct=True))
    pks = [str(i) for i in range(1, m + 1)]
    await lay.rounds("W3", m, pks, args.w3_saves, 1, 30 + m * 0.05, redis_until_first=False)
    await lay.close_all()


async def http_json(port: int, path: str, timeout: float = 10.0) -> dict[str, Any] | None:
    """GET ``path`` from a server; its JSON body, or None."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            head = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            writer.write(head.encode())
            raw = await reader.read()
            writer.close()
        header, _, body = raw.partition(b"\r\n\r\n")
        if header.split(b"\r\n", 1)[0].split()[1:2] != [b"200"]:
            return None
        if b"transfer-encoding: chunked" in header.lower():
            from tests.benchmarks.loadgen import _dechunk

            body = _dechunk(body)
        reply = json.loads(body)
        return reply if isinstance(reply, dict) else None
    except (OSError, TimeoutError, IndexError, ValueError):
        return None


async def wait_server_idle(server: Server, cap: float, busy: float = 0.15) -> float:
    """Wait until the server's process tree uses less than ``busy`` of a CPU over 0.5 s (at
    most ``cap`` s), so that a system still working off a backlog does not load the next."""
    import psutil

    start = time.monotonic()
    try:
        proc = psutil.Process(server.proc.pid)
        while time.monotonic() - start < cap:
            before = proc.cpu_times()
            await asyncio.sleep(0.5)
            after = proc.cpu_times()
            used = (after.user + after.system) - (before.user + before.system)
            if used / 0.5 < busy:
                break
    except psutil.Error:
        pass
    return time.monotonic() - start


class Sampler:
    """Peaks, every 0.5 s while W4 writes and drains: the server's RSS, Redis's used_memory,
    and the longest queue of messages waiting in Redis for the server process (channels_redis
    keeps one sorted set per receiving process, ``<prefix>specific.<id>!``, all its channels'
    messages in it, at most ``capacity`` = 100 by default: ``group_send`` leaves out what
    does not fit)."""

    def __init__(self, server: Server, redis_client: Any, system_db: Any) -> None:
        self.server = server
        self.redis = redis_client
        self.system_db = system_db
        self.rss_peak_kib = 0.0
        self.redis_peak = 0
        self.queue_peak = 0
        self.task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        rss = self.server.rss_kib()
        if rss == rss:  # not nan
            self.rss_peak_kib = max(self.rss_peak_kib, rss)
        if self.redis is not None:
            with contextlib.suppress(Exception):
                used = int(self.redis.info("memory")["used_memory"])
                self.redis_peak = max(self.redis_peak, used)
        if self.system_db is not None:
            with contextlib.suppress(Exception):
                for pattern in ("*specific.*!", "*gqlobs-hub.*!"):  # P0's hub: its own name
                    for key in self.system_db.scan_iter(match=pattern, count=1000):
                        self.queue_peak = max(self.queue_peak, int(self.system_db.zcard(key)))

    async def _loop(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(0.5)

    def __enter__(self) -> Sampler:
        self.task = asyncio.ensure_future(self._loop())
        return self

    def __exit__(self, *exc: object) -> None:
        if self.task is not None:
            self.task.cancel()
        self.sample()


async def start_writer(
    lay: Layer, key: str, marker: str, pks: list[str], rate: float, index: int = 0
) -> Any:
    """One of W4's writers for one system, with that system's interpreter and environment."""
    args, system = lay.run.args, SYSTEMS[key]
    cmd = [
        system.python,
        "-m",
        "tests.benchmarks.writer",
        "--pks",
        ",".join(pks),
        "--marker",
        marker,
        "--rate",
        str(rate),
        "--seconds",
        str(args.w4_secs),
        "--writer",
        f"{index}/{args.w4_writers}",
    ]
    if system.uses_database:
        env = system.env(writer_database_url(args, key), lay.redis_urls.get(key))
        env["CONN_MAX_AGE"] = str(args.conn_max_age)
        for module in system.writer_imports:
            cmd += ["--import", module]
    else:
        env = system.env(None, None)
        cmd += ["--floor-port", str(lay.servers[key].port)]
    return await spawn_piped(cmd, f"writer-{lay.name}-{key}-{index}.log", env=env)


async def stop_process(proc: Any, wait: float = 15.0) -> None:
    if proc.returncode is None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), wait)
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), 5)
    if proc.returncode is not None:
        _forget(proc.pid)


async def read_json_line(proc: Any, timeout: float) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        line = await proc.stdout.readline()
    if not line:
        raise RuntimeError("the writer exited without a reply")
    reply = json.loads(line)
    if "error" in reply:
        raise RuntimeError(str(reply["error"]))
    return reply  # type: ignore[no-any-return]


async def w4_one(lay: Layer, key: str, pks: list[str], redis_client: Any) -> dict[str, Any]:
    """One system's W4: writer ready -> clients count from zero -> write -> drain -> check."""
    args = lay.run.args
    server, worker = lay.servers[key], lay.workers[key]
    stats_path = "/bench/stats/" if SYSTEMS[key].uses_database else None
    out: dict[str, Any] = {
        "target_rate": args.w4_rate,
        "rows": len(pks),
        "writers": args.w4_writers,
    }
    marker = new_marker()
    # Each writer owns its own rows (every row has one writer, so its values still grow
    # with every save) and saves them at its share of the rate.
    shares = [pks[i :: args.w4_writers] for i in range(args.w4_writers)]
    rate = args.w4_rate / args.w4_writers
    procs = [
        await start_writer(lay, key, marker, share, rate, index)
        for index, share in enumerate(shares)
    ]
    try:
        for proc in procs:
            await read_json_line(proc, 120)
        out["stats_before"] = await http_json(server.port, stats_path) if stats_path else None
        out["rss_before_kib"] = server.rss_kib()
        if redis_client is not None:
            out["redis_mem_before"] = int(redis_client.info("memory")["used_memory"])
        await worker.call(30, cmd="track", marker=marker)
        url = lay.redis_urls.get(key)
        system_db = RedisStats(url).client if url else None
        with Sampler(server, redis_client, system_db) as sampler:
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write(b"go\n")
            for proc in procs:
                await proc.stdin.drain()
            writer = merge_writers(
                [await read_json_line(proc, args.w4_secs + 120) for proc in procs]
            )
            out["writer"] = writer
            settle = await worker.call(
                args.w4_drain + 60,
                cmd="settle",
                final=writer["final"],
                quiet=args.w4_quiet,
                timeout=args.w4_drain,
            )
        out["settle"] = settle
        out["rss_peak_kib"] = sampler.rss_peak_kib
        out["redis_mem_peak"] = sampler.redis_peak or None
        out["redis_queue_peak"] = sampler.queue_peak if system_db is not None else None
        out["rss_after_kib"] = server.rss_kib()
        out["stats_after"] = await http_json(server.port, stats_path) if stats_path else None
        if settle.get("t_hold_last") is not None:
            out["tail_ms"] = (settle["t_hold_last"] - writer["t_last_save"]) * 1e3
    finally:
        for proc in procs:
            await stop_process(proc)
    return out


def merge_writers(results: list[dict[str, Any]]) -> dict[str, Any]:
    """W4's writers' results as one writer's: saves and rows added up, the rate over the span
    from the first writer's start to the last save of any, save() p50 the median of theirs
    and p99 / max the worst of theirs."""
    if len(results) == 1:
        return results[0]
    t_first = min(r["t_first"] for r in results)
    t_last = max(r["t_last_save"] for r in results)
    saves = sum(r["saves"] for r in results)
    secs = t_last - t_first
    present = [r for r in results if r.get("save_ms_p50") is not None]
    return {
        "saves": saves,
        "secs": secs,
        "saves_per_s": saves / secs if secs > 0 else 0.0,
        "t_first": t_first,
        "t_last_save": t_last,
        "saves_per_pk": {pk: n for r in results for pk, n in r["saves_per_pk"].items()},
        "save_ms_p50": statistics.median(r["save_ms_p50"] for r in present) if present else None,
        "save_ms_p99": max((r["save_ms_p99"] for r in present), default=None),
        "save_ms_max": max((r["save_ms_max"] for r in present), default=None),
        "final": {pk: v for r in results for pk, v in r["final"].items()},
        "over_capacity_sends": sum(r.get("over_capacity_sends") or 0 for r in results),
        "writers": len(results),
    }


async def scenario_w4(lay: Layer, scenario: str = "W4") -> None:
    """W4: w4_rows hot rows, w4_per_row subscribers each; a writer process saves them at
    w4_rate saves/s for w4_secs; after the drain, every subscriber must hold its row's
    committed value. One system at a time; each system's clients are closed after its turn."""
    run, args = lay.run, lay.run.args
    n = args.w4_rows * args.w4_per_row
    if lay.name != "redis":
        run.notes.append(
            f"W4/{lay.name}: not run (W4 runs on the redis layer: a writer process cannot "
            "reach an in-memory layer, and its queue sampler reads RedisChannelLayer's keys)"
        )
        return
    if run.out_of_time():
        run.notes.append(f"W4/{lay.name}: not run (time budget)")
        return
    pks = [str(i) for i in range(1, args.w4_rows + 1)]
    lay.record_connect("W4", n, await lay.connect_all(n, pks=pks))
    redis_client = lay.stats.client if lay.stats is not None else None
    for key in list(lay.keys):
        if key in ("U", "Ul"):  # the ASGI floor has no writer feed (F stands for the floor here)
            continue
        cell = run.cell("W4", lay.name, key, n)
        if run.out_of_time():
            run.notes.append(f"W4/{lay.name} {key}: not run (time budget)")
            continue
        await asyncio.sleep(1.0)
        log(f"{key}/{lay.name} W4: writing {args.w4_secs:g} s at {args.w4_rate:g} saves/s")
        try:
            cell.w4 = await w4_one(lay, key, pks, redis_client)
        except Exception as exc:
            cell.failures.append(f"{type(exc).__name__}: {exc}"[:300])
            log(f"{key}/{lay.name} W4: failed: {exc!r}")
        w4 = cell.w4
        if w4.get("settle"):
            st, wr = w4["settle"], w4["writer"]
            log(
                f"{key}/{lay.name} W4: {wr['saves']} saves in {wr['secs']:.1f} s "
                f"({wr['saves_per_s']:.0f}/s); {st['frames']} frames; {st['correct']}/"
                f"{st['subs']} at the final state; tail {fmt(w4.get('tail_ms'))} ms; "
                f"{'drained' if st['quiet'] else 'NOT drained'} after {st['waited_s']:.1f} s"
            )
            if not st["quiet"]:
                run.notes.append(
                    f"W4/{lay.name} {key}: still delivering {args.w4_drain:g} s after the "
                    "last save (cut there)"
                )
        await lay.workers[key].call(120, cmd="close")
        idle = await wait_server_idle(lay.servers[key], 30)
        if idle > 1:
            log(f"{key}/{lay.name} W4: server busy for {idle:.1f} s after its clients left")


SCENARIOS: dict[str, Any] = {
    **dict.fromkeys(FANOUT, scenario_fanout),
    "W2": scenario_fanout,
    "W5": scenario_w5,
    "W3": scenario_w3,
    "W4": scenario_w4,
}
#: Each scenario's share of a layer's time, relative (W4 writes and drains per system).
SCENARIO_WEIGHT = {"W4": 4.0}
LAYER_TITLES = {
    "inmem": "in-memory layer",
    "redis": "channels_redis",
    "pubsub": "channels_redis pub/sub",
}
#: Layers on Redis and the channels_redis layer each one uses (``BENCH_REDIS_LAYER``).
REDIS_LAYERS = {"redis": "core", "pubsub": "pubsub"}


async def run_layer(run: Run, layer: str, systems: list[System]) -> None:
    """Every scenario of the run on this layer, each with freshly started servers and
    workers (so that its M starts from a fresh process and nothing one scenario left in a
    server weighs on the next), each within its share of the layer's time."""
    args = run.args
    scenarios = list(args.scenarios)
    weights = [SCENARIO_WEIGHT.get(x, 1.0) for x in scenarios]
    for i, scenario in enumerate(scenarios):
        now = time.monotonic()
        end = min(run.deadline, run.layer_deadline)
        run.scenario_deadline = now + (end - now) * weights[i] / sum(weights[i:])
        if run.out_of_time():
            run.notes.append(f"{scenario}/{layer}: not run (time budget)")
            continue
        if scenario == "W4" and layer != "redis":
            await scenario_w4(Layer(run=run, name=layer))  # only says why it does not run
            continue
        log(f"{layer} {scenario}: starting servers")
        lay = await start_layer(run, layer, systems, scenario)
        try:
            if lay.keys:
                await SCENARIOS[scenario](lay, scenario)
        finally:
            await stop_layer(lay, systems)
    run.scenario_deadline = float("inf")


#: Server logs this run has written to: the first server of a run truncates its log, the
#: next scenarios' servers append to it, after a header line.
_SERVER_LOGS: set[str] = set()


def _log_header(name: str, text: str) -> bool:
    """Start or continue ``name`` in LOG_DIR with a header line; True to append after it."""
    first = name not in _SERVER_LOGS
    _SERVER_LOGS.add(name)
    with open(LOG_DIR / name, "w" if first else "a") as f:
        f.write(f"----- {text} ({time.strftime('%H:%M:%S')}) -----\n")
    return True


async def start_layer(run: Run, layer: str, systems: list[System], scenario: str = "") -> Layer:
    """Start every system's servers and load worker on ``layer``, warm each up (one client,
    two saves) and take the RSS baseline with 0 subscriptions."""
    args = run.args
    redis_urls: dict[str, str | None] = {}
    # One Redis db per system of this run that uses the layer (the floors do not), numbered
    # from --redis-db-base: Redis has 16.
    chosen = {s.key for s in systems}
    on_redis = [key for key in ORDER if key in chosen and key not in ("F", "U", "Ul", "LU", "LUr")]
    for key in ORDER:
        redis_urls[key] = (
            f"{args.redis_url.rstrip('/')}/{args.redis_db_base + on_redis.index(key)}"
            if layer in REDIS_LAYERS and key in on_redis
            else None
        )
    lay = Layer(run=run, name=layer, redis_urls=redis_urls)
    if layer in REDIS_LAYERS:
        lay.stats = RedisStats(f"{args.redis_url.rstrip('/')}/0")
        for system in systems:
            url = redis_urls[system.key]
            if url:
                lay.stats.flushdb(url)
    try:
        for system in systems:
            if system.processes > 1 and layer not in REDIS_LAYERS:
                run.notes.append(f"{system.key}/{layer}: not run (its processes need Redis)")
                continue
            log_path = LOG_DIR / f"server-{layer}-{system.key}.log"
            env = system.env(database_url(args, system.key), redis_urls[system.key])
            env["CONN_MAX_AGE"] = str(args.conn_max_age)
            env["BENCH_DB_POOL"] = "1" if args.db_pool else ""
            env["BENCH_REDIS_LAYER"] = REDIS_LAYERS.get(layer, "")
            procs = []
            for i in range(system.processes):
                port = free_port()
                name = log_path.name if i == 0 else f"server-{layer}-{system.key}-{i}.log"
                cmd = system.server_cmd(port)
                if "uvicorn" in system.module_args:
                    cmd += ["--ws", system.uvicorn_ws or args.uvicorn_ws]
                append = _log_header(name, f"{scenario or 'servers'} on {layer}, port {port}")
                procs.append((port, _spawn(cmd, name, cwd=REPO, env=env, append=append)))
            (port, proc), more = procs[0], procs[1:]
            lay.servers[system.key] = Server(system, port, proc, log_path, more)
        ready = await asyncio.gather(*(wait_ready(s, 90) for s in lay.servers.values()))
        for (key, server), ok in zip(list(lay.servers.items()), ready, strict=True):
            if not ok:
                run.skipped[f"{key}/{layer}"] = f"server not ready: {server.log_tail(5)}"
                log(f"{key}/{layer}: server did not come up; log {server.log_path}")
                server.stop()
                del lay.servers[key]
        for key, server in lay.servers.items():
            lay.workers[key] = await WorkerProc.start(
                key, server.port, tuple(port for port, _ in server.more)
            )
        lay.keys = [k for k in ORDER if k in lay.workers]
        log(f"{layer}: servers up: {', '.join(f'{k}:{lay.servers[k].port}' for k in lay.keys)}")

        # warm-up: one client, two saves, then 0 subscriptions -> RSS baseline
        for key in list(lay.keys):
            w = lay.workers[key]
            res = await w.call(90, cmd="connect", n=1, pk="1", timeout=60)
            warm = [
                await w.call(60, cmd="save", marker=new_marker(), pks=["1"], timeout=10)
                for _ in range(2)
            ]
            await w.call(60, cmd="close")
            bad = (res.get("first_error") if res.get("connected", 0) < 1 else None) or next(
                (s.get("error") or "no frame" for s in warm if not s.get("complete")), None
            )
            if bad:
                run.skipped[f"{key}/{layer}"] = f"warm-up failed: {bad}"
                log(f"{key}/{layer}: warm-up failed: {bad}")
                lay.keys.remove(key)
        await asyncio.sleep(0.5)
        lay.rss0 = {k: lay.servers[k].rss_kib() for k in lay.keys}
    except BaseException:
        await stop_layer(lay, systems)
        raise
    return lay


async def stop_layer(lay: Layer, systems: list[System]) -> None:
    await asyncio.gather(*(w.stop() for w in lay.workers.values()), return_exceptions=True)
    for server in lay.servers.values():
        server.stop()
    if lay.stats is not None:
        for system in systems:
            url = lay.redis_urls.get(system.key)
            if url:
                with contextlib.suppress(Exception):
                    lay.stats.flushdb(url)


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------
SCENARIO_ORDER = ("W1", "W1same", "W1v", "W1p", "W1x", "W2", "W3", "W5", "W4")


def summarise(run: Run) -> list[dict[str, Any]]:
    rows = []
    for (scenario, layer, key, n), cell in sorted(
        run.cells.items(),
        key=lambda kv: (
            SCENARIO_ORDER.index(kv[0][0]),
            kv[0][1] != "inmem",
            kv[0][3],
            ORDER.index(kv[0][2]),
        ),
    ):
        lat = cell.latencies()
        firsts = [s["first_ms"] for s in cell.saves if s.get("complete")]
        calls = [s["save_call_ms"] for s in cell.saves if s.get("complete") and "save_call_ms" in s]
        row: dict[str, Any] = {
            "scenario": scenario,
            "layer": layer,
            "system": key,
            "n": n,
            "saves": len(lat),
            "failed": len(cell.failures),
            # frames the subscribers held of every recorded save, against what was due (a
            # frame without the subscriber's own requestId, or W1x's email, is "bad")
            "frames_received": sum(int(x.get("received") or 0) for x in cell.saves),
            "frames_expected": sum(int(x.get("expected") or 0) for x in cell.saves),
            "frames_bad": sum(int(x.get("bad") or 0) for x in cell.saves),
            "connected": cell.connect.get("connected"),
            "credentials": cell.connect.get("credentials"),
        }
        if (scenario, key) in STAND_INS:
            row["stand_in"] = STAND_INS[(scenario, key)]
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
        # The issue's definition of W1's latency: from save() to the last frame. The server
        # stamps save() with time.monotonic(), which is system-wide, so the load process can
        # subtract it from its own stamps; what came before (the HTTP request, Django's
        # request handling) is the trigger's cost, not the fan-out's.
        since = cell.since_save()
        if since:
            med_s = statistics.median(since)
            row |= {
                "save_median_ms": med_s,
                "save_p90_ms": pct(since, 0.9),
                "save_deliveries_per_s": n / (med_s / 1000) if med_s > 0 else float("inf"),
            }
        if cell.rss0_kib is not None and cell.rssn_kib is not None:
            row["kib_per_sub"] = (cell.rssn_kib - cell.rss0_kib) / n
            row["rss0_mib"] = cell.rss0_kib / 1024
        if cell.redis_cmds:
            row["redis_cmds_per_save"] = statistics.median(cell.redis_cmds)
            row["redis_top"] = {k: round(v, 1) for k, v in list(cell.redis_breakdown.items())[:4]}
        if cell.backlog:
            row["backlog"] = cell.backlog
        if cell.w4:
            row |= w4_fields(cell.w4)
        if cell.failures:
            row["failure"] = cell.failures[0]
        rows.append(row)
    by = {(r["scenario"], r["layer"], r["system"], r["n"]): r for r in rows}
    for r in rows:
        if r["scenario"] not in ("W1", "W3", "W4") and "median_ms" in r:
            w1 = by.get(("W1", r["layer"], r["system"], r["n"]), {}).get("median_ms")
            if w1:
                r["vs_w1"] = r["median_ms"] / w1
    return rows


def _delta(after: dict[str, Any] | None, before: dict[str, Any] | None, *path: str) -> Any:
    values = []
    for d in (after, before):
        for name in path:
            d = d.get(name) if isinstance(d, dict) else None
        values.append(d)
    a, b = values
    return a - b if isinstance(a, int) and isinstance(b, int) else None


def w4_fields(w4: dict[str, Any]) -> dict[str, Any]:
    """The W4 figures of one system, flat, for the tables and the JSON rows."""
    wr, st = w4.get("writer") or {}, w4.get("settle") or {}
    if not wr or not st:
        return {}
    per_pk = wr.get("saves_per_pk") or {}
    frames_by_pk = st.get("frames_by_pk") or {}
    subs_by_pk = st["subs"] / max(len(per_pk), 1)
    row: dict[str, Any] = {
        "w4_target_rate": w4.get("target_rate"),
        "w4_saves": wr["saves"],
        "w4_write_secs": wr["secs"],
        "w4_saves_per_s": wr["saves_per_s"],
        "w4_save_ms_p50": wr.get("save_ms_p50"),
        "w4_save_ms_p99": wr.get("save_ms_p99"),
        "w4_saves_per_row_max": max(per_pk.values(), default=0),
        "w4_subs": st["subs"],
        "w4_correct": st["correct"],
        "w4_wrong_examples": st.get("wrong_examples"),
        "w4_no_frame": st["no_frame"],
        "w4_frames": st["frames"],
        "w4_frames_per_s": st["frames"] / wr["secs"] if wr["secs"] else None,
        "w4_frames_min": st["frames_min"],
        "w4_frames_median": st["frames_median"],
        "w4_frames_max": st["frames_max"],
        # the most any subscriber of a row got per save of that row (<= 1: no more frames
        # than states)
        "w4_frames_per_save_max": max(
            (frames_by_pk.get(pk, 0) / subs_by_pk / n for pk, n in per_pk.items() if n),
            default=None,
        ),
        "w4_over_capacity_sends": wr.get("over_capacity_sends"),
        "w4_redis_queue_peak": w4.get("redis_queue_peak"),
        "w4_repeats": st["repeats"],
        "w4_regressions": st["regressions"],
        "w4_tail_ms": w4.get("tail_ms"),
        "w4_drained": st["quiet"],
        "w4_drain_wait_s": st["waited_s"],
        "w4_closed": st["closed"],
        "w4_rss_before_mib": w4["rss_before_kib"] / 1024,
        "w4_rss_peak_mib": w4["rss_peak_kib"] / 1024,
        "w4_rss_after_mib": w4["rss_after_kib"] / 1024,
    }
    if w4.get("redis_mem_before") is not None and w4.get("redis_mem_peak"):
        row["w4_redis_growth_mib"] = (w4["redis_mem_peak"] - w4["redis_mem_before"]) / 2**20
    before, after = w4.get("stats_before"), w4.get("stats_after")
    if after and after.get("hub"):
        row["w4_hub_dropped"] = _delta(after, before, "hub", "dropped")
        row["w4_hub_pending_after"] = after["hub"].get("pending")
        row["w4_hub_subscriptions"] = after["hub"].get("subscriptions")
        row["w4_members_dropped"] = _delta(after, before, "members_dropped")
        row["w4_members_busy_after"] = after.get("members_busy")
        row["w4_hub_layer_failures"] = _delta(after, before, "hub", "layer_failures")
        row["w4_hub_resyncs"] = _delta(after, before, "hub", "resyncs")
    return row


def fmt(value: Any, spec: str = ".1f") -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if value != value:  # nan
            return "—"
        return format(value, spec)
    return str(value)


def ratio_rows(
    rows: list[dict[str, Any]], field: str = "median_ms", scenarios: tuple[str, ...] = ()
) -> list[tuple[str, str, int, str, str, str, str]]:
    """P0's median latency (``field``) over each other system's, per scenario, layer and N;
    only ``scenarios`` when given."""
    by = {(r["scenario"], r["layer"], r["system"], r["n"]): r for r in rows}
    groups = sorted(
        {
            (r["scenario"], r["layer"], r["n"])
            for r in rows
            if r["scenario"] != "W4" and (not scenarios or r["scenario"] in scenarios)
        },
        key=lambda t: (SCENARIO_ORDER.index(t[0]), t[1] != "inmem", t[2]),
    )
    out = []
    for scenario, layer, n in groups:
        p0 = by.get((scenario, layer, "P0", n), {}).get(field)
        cols = []
        for other in ("P1", "P2", "F", "U"):
            o = by.get((scenario, layer, other, n), {}).get(field)
            cols.append(f"{p0 / o:.2f}" if p0 and o else "—")
        out.append((scenario, layer, n, cols[0], cols[1], cols[2], cols[3]))
    return out


def _backlog_text(r: dict[str, Any]) -> str:
    b = r.get("backlog") or {}
    after = b.get("after") or {}
    if not b:
        return "—"
    return (
        f"{b.get('prefill_saves')} saves; kernel q {fmt(after.get('server_send_q'))}"
        f"+{fmt(after.get('client_recv_q'))} B"
    )


def _db_connections(args: argparse.Namespace) -> str:
    if args.db_pool and args.db == "postgres":
        return "servers: psycopg pool, CONN_MAX_AGE=0"
    return f"peers CONN_MAX_AGE={args.conn_max_age}"


#: The W1 family and W2: one table, one row per scenario, layer, N and system.
FANOUT_TABLE = (*FANOUT, "W2")
#: The other scenarios' table (vs W1, Redis per burst, the stalled client).
OTHER_TABLE = ("W3", "W5")

#: The targets, per layer and N: (name, scenario, measure, reference, goal). measure
#: "deliveries": P0's deliveries/s from save() over the reference's ("peers": the better of
#: P1 and P2 in the same scenario; "F": F's in the same scenario), at least ``goal``;
#: "memory": P0's KiB per idle subscription minus F's (same scenario), at most ``goal`` KiB.
TARGETS: tuple[tuple[str, str, str, str, float, bool], ...] = (
    ("W1 >= 10x better peer", "W1", "deliveries", "peers", 10.0, True),
    ("W1 >= 0.5x F", "W1", "deliveries", "F", 0.5, True),
    ("W1v >= 10x better peer", "W1v", "deliveries", "peers", 10.0, True),
    ("W1v >= 0.5x F", "W1v", "deliveries", "F", 0.5, True),
    ("W1p >= 0.4x F", "W1p", "deliveries", "F", 0.4, True),
    ("W1x >= 5x better peer", "W1x", "deliveries", "peers", 5.0, True),
    ("M (W1, own requestIds) <= F + 4 KiB", "W1", "memory", "F", 4.0, True),
    ("Mv (W1v, token viewers) vs F + 4 KiB", "W1v", "memory", "F", 4.0, False),
)


def targets(run: Run, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every target (TARGETS) for every layer and N of the run: P0's figure, the
    reference's, the measured ratio (or difference) and pass / miss ("info" for what is
    shown next to a target without being one)."""
    by = {(r["scenario"], r["layer"], r["system"], r["n"]): r for r in rows}
    out = []
    for layer in run.args.layers:
        for n in run.args.ns:
            for name, scenario, measure, ref, goal, is_target in TARGETS:
                if scenario not in run.args.scenarios:
                    continue
                t: dict[str, Any] = {"layer": layer, "n": n, "target": name, "goal": goal}
                p0 = by.get((scenario, layer, "P0", n), {})
                if measure == "memory":
                    mine, f = p0.get("kib_per_sub"), by.get((scenario, layer, "F", n), {})
                    theirs = f.get("kib_per_sub")
                    t["p0"] = f"{fmt(mine)} KiB"
                    t["ref"] = f"F {fmt(theirs)} KiB"
                    if mine is not None and theirs is not None:
                        t["value"] = mine - theirs
                        t["measured"] = f"{mine - theirs:+.1f} KiB"
                        ok = mine - theirs <= goal
                else:
                    mine = p0.get("save_deliveries_per_s")
                    if ref == "peers":
                        peers = [
                            (k, by.get((scenario, layer, k, n), {}).get("save_deliveries_per_s"))
                            for k in ("P1", "P2")
                        ]
                        measured = [(k, v) for k, v in peers if v]
                        best = max(measured, key=lambda kv: kv[1]) if measured else None
                        if best is not None and len(measured) < 2:
                            t["note"] = "one peer not measured"
                    else:
                        v = by.get((scenario, layer, ref, n), {}).get("save_deliveries_per_s")
                        best = (ref, v) if v else None
                    t["p0"] = f"{fmt(mine, ',.0f')}/s"
                    t["ref"] = f"{best[0]} {best[1]:,.0f}/s" if best else f"{ref} —"
                    if mine and best:
                        t["value"] = mine / best[1]
                        t["measured"] = f"{mine / best[1]:.2f}x"
                        ok = mine / best[1] >= goal
                if "value" not in t:
                    t["measured"] = "—"
                    t["result"] = "not measured"
                elif not is_target:
                    t["result"] = "info (" + ("within" if ok else "over") + ")"
                else:
                    t["result"] = "pass" if ok else "MISS"
                out.append(t)
    return out


def _frames_text(r: dict[str, Any]) -> str:
    """Frames held of the recorded saves / frames due (and bad ones, if any)."""
    if not r.get("frames_expected"):
        return "—"
    text = f"{r['frames_received']}/{r['frames_expected']}"
    if r.get("frames_bad"):
        text += f" ({r['frames_bad']} bad)"
    return text


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def markdown(run: Run, rows: list[dict[str, Any]]) -> str:
    info, args = run.info, run.args
    mode = "quick" if args.quick else "full"
    lines = [
        f"### Fan-out ({mode} run, {info['date']}, commit `{info['commit']}`)",
        "",
        f"Machine: {info['nproc']} CPUs, {info['cpu']}, Linux {info['kernel']}, "
        f"Python {info['python']}; database {args.db} ({_db_connections(args)}); "
        f"every server is one uvicorn process (`--ws {args.uvicorn_ws}`; P0, P0l, P0x2 and Ul: "
        f"`--ws {LEAN_WS}`; F: one `websockets` process), started afresh for every scenario; "
        "servers, Redis and "
        "the load workers share these CPUs. Latency = from the load process sending the save "
        "trigger (HTTP) to the last subscriber's frame read; from save() = from the server's "
        "stamp just before `save()` (F, U: before their broadcast) to the same frame, the "
        "issue's definition; deliveries/s = N / median latency; "
        "KiB/sub = (server RSS with N idle subscriptions - RSS with 0) / N; Redis cmds/save = "
        "INFO commandstats delta from the trigger to 0.1 s after the first subscriber's frame "
        "(Lua-internal calls included; channels_redis's idle BZPOPMIN cycle, 4 commands per "
        "process every 5 s, may add one or two). Every subscriber sends one named document "
        "with `$pk` and its own `$requestId` (a 13-digit millisecond timestamp + its index) in "
        "the variables, except in W1same; frames = frames the subscribers held of the "
        "recorded saves / frames due (each must carry the subscriber's own requestId; W1x's "
        "on P0 and P2 also the email).",
    ]
    fan = [r for r in rows if r["scenario"] in FANOUT_TABLE]
    if fan:
        lines += [
            "",
            "N subscribers of one instance, one save. W1: own requestIds. W1same: every "
            "subscriber the very same document and `requestId: 1` (the old W1). W1v: each "
            "subscriber logged in as a different user (P0: gql_observer token in "
            "`connection_init`; P1, P2: session cookie; F, U: none). W1p: W1v's viewers on "
            "P0's `userP` (a `permission` callable allowing them) and P2's `userP` (a "
            "permission function per message). W1x: W1v's viewers on P0's and P2's `userX` "
            "(`email` behind a permission class). P1 has neither: in W1p and W1x it runs W1v's "
            "traffic (DCRF's `IsAuthenticated` consumer, checked per action, not per change). "
            + (
                f"W2: W1 spread over {args.w2_selections} distinct selections (documents "
                "differing in the fields they select and their aliases). "
                if "W2" in args.scenarios
                else ""
            )
            + "vs W1 = median / W1's median.",
            "",
            "| scenario | layer | N | system | saves | frames | median ms | p90 ms | first ms "
            "| deliveries/s | from save(): median ms | p90 ms | deliveries/s | vs W1 | KiB/sub "
            "| Redis cmds/save |",
            "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
    for r in fan:
        system = r["system"] + (f" ({r['stand_in']})" if r.get("stand_in") else "")
        lines.append(
            f"| {r['scenario']} | {r['layer']} | {r['n']} | {system} | {r['saves']} "
            f"| {_frames_text(r)} "
            f"| {fmt(r.get('median_ms'))} | {fmt(r.get('p90_ms'))} | {fmt(r.get('first_ms'))} "
            f"| {fmt(r.get('deliveries_per_s'), ',.0f')} | {fmt(r.get('save_median_ms'))} "
            f"| {fmt(r.get('save_p90_ms'))} | {fmt(r.get('save_deliveries_per_s'), ',.0f')} "
            f"| {fmt(r.get('vs_w1'), '.2f')} "
            f"| {fmt(r.get('kib_per_sub'))} | {fmt(r.get('redis_cmds_per_save'), '.0f')} |"
        )
    others = [r for r in rows if r["scenario"] in OTHER_TABLE]
    if others:
        lines += [
            "",
            f"W3: {args.w3_n} subscribers, each of its own instance; one request saves "
            f"all {args.w3_n}. W5: W1 at N={args.w5_n} plus one subscriber that never reads "
            "(its socket backed up first); vs W1 = W5 median / W1 median.",
            "",
            "| scenario | layer | N | system | saves | frames | median ms | p90 ms "
            "| deliveries/s | vs W1 | Redis cmds/save (W3: /burst) | stalled client |",
            "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in others:
            lines.append(
                f"| {r['scenario']} | {r['layer']} | {r['n']} | {r['system']} | {r['saves']} "
                f"| {_frames_text(r)} | {fmt(r.get('median_ms'))} | {fmt(r.get('p90_ms'))} "
                f"| {fmt(r.get('deliveries_per_s'), ',.0f')} | {fmt(r.get('vs_w1'), '.2f')} "
                f"| {fmt(r.get('redis_cmds_per_save'), '.0f')} | {_backlog_text(r)} |"
            )
    w4 = [r for r in rows if r["scenario"] == "W4"]
    if w4:
        lines += ["", *w4_markdown(run, w4)]
    for measure, title in (
        ("median_ms", "Median-latency ratios, from the trigger (below 1 = P0 faster):"),
        (
            "save_median_ms",
            "Median-latency ratios from save() (the server's stamp before `save()`) to the "
            "last frame (below 1 = P0 faster):",
        ),
    ):
        ratios = ratio_rows(rows, measure)
        if ratios:
            lines += [
                "",
                title,
                "",
                "| scenario | layer | N | P0/P1 | P0/P2 | P0/F | P0/U |",
                "|---|---|---:|---:|---:|---:|---:|",
            ]
        for scenario, layer, n, a, b, c, d in ratios:
            lines.append(f"| {scenario} | {layer} | {n} | {a} | {b} | {c} | {d} |")
    goals = targets(run, rows)
    if goals:
        lines += [
            "",
            "Targets (deliveries/s from save() = N / median from save(); the better peer = "
            "the higher of P1 and P2 in the same scenario; F = F in the same scenario; M = "
            "KiB per idle subscription, P0 minus F):",
            "",
            "| layer | N | target | P0 | reference | measured | result |",
            "|---|---:|---|---:|---|---:|---|",
        ]
        for t in goals:
            note = f" ({t['note']})" if t.get("note") else ""
            lines.append(
                f"| {t['layer']} | {t['n']} | {t['target']} | {t.get('p0', '—')} "
                f"| {t.get('ref', '—')}{note} | {t['measured']} | {t['result']} |"
            )
    incomplete = [r for r in rows if r.get("failure")]
    if run.skipped or run.notes or incomplete:
        lines += ["", "Not measured / incomplete:", ""]
        for key, why in run.skipped.items():
            lines.append(f"- {key}: {why}")
        for note in _dedupe(run.notes):
            lines.append(f"- {note}")
        for r in incomplete:
            lines.append(
                f"- {r['scenario']} {r['system']}/{r['layer']} N={r['n']}: "
                f"{r['failed']} failed: {r['failure']}"
            )
    return "\n".join(lines)


def plain_table(run: Run, rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'scen':6} {'layer':6} {'N':>5} {'sys':4} {'saves':>5} {'frames':>13} {'med ms':>8} "
        f"{'p90 ms':>8} {'first ms':>8} {'deliv/s':>9} {'save ms':>8} {'s-deliv/s':>9} "
        f"{'KiB/sub':>8} {'redis/save':>10}  notes"
    )
    out: list[str] = []
    latency_rows = [r for r in rows if r["scenario"] != "W4"]
    if latency_rows:
        out += [head, "-" * len(head)]
    for r in latency_rows:
        note = ", ".join(f"{k}={v:g}" for k, v in (r.get("redis_top") or {}).items())
        if r["scenario"] == "W5":
            note = f"vs W1 {fmt(r.get('vs_w1'), '.2f')}; {_backlog_text(r)}"
        elif r.get("vs_w1") is not None:
            note = f"vs W1 {fmt(r.get('vs_w1'), '.2f')}; {note}"
        if r.get("stand_in"):
            note = f"{r['stand_in']}; {note}"
        if r.get("failure"):
            note += f"; FAILED {r['failed']}: {r['failure'][:160]}"
        out.append(
            f"{r['scenario']:6} {r['layer']:6} {r['n']:>5} {r['system']:4} {r['saves']:>5} "
            f"{_frames_text(r):>13} "
            f"{fmt(r.get('median_ms')):>8} {fmt(r.get('p90_ms')):>8} {fmt(r.get('first_ms')):>8} "
            f"{fmt(r.get('deliveries_per_s'), ',.0f'):>9} {fmt(r.get('save_median_ms')):>8} "
            f"{fmt(r.get('save_deliveries_per_s'), ',.0f'):>9} "
            f"{fmt(r.get('kib_per_sub')):>8} {fmt(r.get('redis_cmds_per_save'), '.0f'):>10}  {note}"
        )
    for measure, label in (
        ("median_ms", "(median latency from the trigger)"),
        ("save_median_ms", "(median from save() to the last frame)"),
    ):
        ratios = ratio_rows(rows, measure)
        if ratios:
            out += [
                "",
                f"{'scen':6} {'layer':6} {'N':>5} {'P0/P1':>7} {'P0/P2':>7} {'P0/F':>7} "
                f"{'P0/U':>7}   {label}",
            ]
        for scenario, layer, n, a, b, c, d in ratios:
            out.append(f"{scenario:6} {layer:6} {n:>5} {a:>7} {b:>7} {c:>7} {d:>7}")
    goals = targets(run, rows)
    if goals:
        out += ["", "targets (deliveries/s from save(); M: KiB per idle subscription, P0 - F)"]
        for layer in run.args.layers:
            for n in run.args.ns:
                mine = [t for t in goals if t["layer"] == layer and t["n"] == n]
                if not mine:
                    continue
                out.append(f"  {layer} N={n}")
                for t in mine:
                    note = f" ({t['note']})" if t.get("note") else ""
                    out.append(
                        f"    {t['target']:40} P0 {t.get('p0', '—'):>14}  "
                        f"vs {t.get('ref', '—'):>18}  {t['measured']:>10}  {t['result']}{note}"
                    )
    w4 = [r for r in rows if r["scenario"] == "W4"]
    if w4:
        out += ["", *w4_plain(w4)]
    return "\n".join(out).strip("\n")


def _w4_correct(r: dict[str, Any]) -> str:
    if "w4_subs" not in r:
        return "—"
    return f"{r['w4_correct']}/{r['w4_subs']}"


def _w4_rss(r: dict[str, Any]) -> str:
    if "w4_rss_before_mib" not in r:
        return "—"
    return (
        f"{r['w4_rss_before_mib']:.0f} / {r['w4_rss_peak_mib']:.0f} / {r['w4_rss_after_mib']:.0f}"
    )


def _w4_drained(r: dict[str, Any]) -> str:
    if "w4_drained" not in r:
        return "—"
    return "yes" if r["w4_drained"] else f"no (cut at {r['w4_drain_wait_s']:.0f} s)"


def _w4_buffers(r: dict[str, Any]) -> str:
    """P0's own counters (the peers expose none): hub and watch members' drops, pending."""
    if r.get("w4_hub_dropped") is None:
        return "—"
    return (
        f"hub merged {r['w4_hub_dropped']:,}, pending {r.get('w4_hub_pending_after')}; "
        f"members skipped {fmt(r.get('w4_members_dropped'), ',')}, "
        f"busy {r.get('w4_members_busy_after')}; layer failures "
        f"{r.get('w4_hub_layer_failures')}, resyncs {r.get('w4_hub_resyncs')}"
    )


def _w4_layer(r: dict[str, Any]) -> str:
    """The layer's own bound: the longest Redis queue towards the server, and how many of the
    writer's group_sends found it full (their message left out)."""
    if r.get("w4_redis_queue_peak") is None and r.get("w4_over_capacity_sends") is None:
        return "—"
    return f"{fmt(r.get('w4_redis_queue_peak'))} / {fmt(r.get('w4_over_capacity_sends'))}"


def w4_plain(rows: list[dict[str, Any]]) -> list[str]:
    head = (
        f"{'W4':4} {'sys':4} {'saves/s':>8} {'frames':>8} {'fr/sub min/med/max':>19} "
        f"{'fr/save':>7} {'final ok':>10} {'tail ms':>8} {'drained':>8} "
        f"{'RSS MiB before/peak/after':>25}  notes"
    )
    out = [head, "-" * len(head)]
    for r in rows:
        frames = (
            f"{r['w4_frames_min']}/{r['w4_frames_median']:g}/{r['w4_frames_max']}"
            if "w4_frames" in r
            else "—"
        )
        note = f"redis queue peak / sends over capacity {_w4_layer(r)}; {_w4_buffers(r)}"
        if r.get("w4_redis_growth_mib") is not None:
            note = f"redis +{r['w4_redis_growth_mib']:.1f} MiB; {note}"
        if r.get("w4_regressions"):
            note += f"; {r['w4_regressions']} older frames after newer"
        if r.get("failure"):
            note += f"; {r['failure']}"
        out.append(
            f"{r['layer'][:4]:4} {r['system']:4} {fmt(r.get('w4_saves_per_s'), '.0f'):>8} "
            f"{fmt(r.get('w4_frames'), ',')!s:>8} {frames:>19} "
            f"{fmt(r.get('w4_frames_per_save_max'), '.2f'):>7} {_w4_correct(r):>10} "
            f"{fmt(r.get('w4_tail_ms')):>8} {_w4_drained(r):>8} {_w4_rss(r):>25}  {note}"
        )
    return out


def w4_markdown(run: Run, rows: list[dict[str, Any]]) -> list[str]:
    args = run.args
    lines = [
        f"W4: {args.w4_rows} hot rows, {args.w4_per_row} subscribers each; "
        f"{args.w4_writers} writer process(es), each owning its share of the rows, "
        f"save them round-robin through the ORM, target {args.w4_rate:,.0f} saves/s in all for "
        f"{args.w4_secs:g} s (F: messages to the floor's feed)"
        + (
            f"; the writers' PostgreSQL sessions: synchronous_commit={args.w4_sync_commit}"
            if args.db == "postgres"
            else ""
        )
        + ". frames/save = the most data "
        "frames one subscriber got per save of its row; final ok = subscribers whose last frame "
        "carries the committed value; tail = last save returned → last subscriber holding its "
        "final value.",
        "",
        "| system | saves/s | save p50/p99 ms | frames | frames/sub min/med/max | frames/save "
        "| final ok | tail ms | drained | RSS MiB before/peak/after | Redis queue peak / sends "
        "over capacity | P0's buffers |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in rows:
        if "w4_frames" not in r:
            lines.append(
                f"| {r['system']} | — | — | — | — | — | — | — | — | — | — | "
                f"{r.get('failure') or 'not measured'} |"
            )
            continue
        lines.append(
            f"| {r['system']} | {r['w4_saves_per_s']:,.0f} "
            f"| {fmt(r.get('w4_save_ms_p50'), '.2f')}/{fmt(r.get('w4_save_ms_p99'), '.2f')} "
            f"| {r['w4_frames']:,} "
            f"| {r['w4_frames_min']}/{r['w4_frames_median']:g}/{r['w4_frames_max']} "
            f"| {fmt(r.get('w4_frames_per_save_max'), '.2f')} | {_w4_correct(r)} "
            f"| {fmt(r.get('w4_tail_ms'))} | {_w4_drained(r)} | {_w4_rss(r)} "
            f"| {_w4_layer(r)} | {_w4_buffers(r)} |"
        )
    return lines


def plot(run: Run, rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["scenario"] == "W1"]
    layers = [layer for layer in run.args.layers if any(r["layer"] == layer for r in rows)]
    if not layers:
        return
    fig, axes = plt.subplots(1, len(layers), figsize=(6 * len(layers), 4.5), squeeze=False)
    colours = {
        "F": "tab:gray",
        "U": "tab:olive",
        "Ul": "olive",
        "P0": "tab:green",
        "P0s": "darkgreen",
        "P0l": "tab:brown",
        "P0x2": "tab:cyan",
        "P1": "tab:red",
        "P2": "tab:blue",
    }
    for ax, layer in zip(axes[0], layers, strict=True):
        for key in ORDER:
            pts = [
                r for r in rows if r["layer"] == layer and r["system"] == key and "median_ms" in r
            ]
            if not pts:
                continue
            ax.errorbar(
                [r["n"] for r in pts],
                [r["median_ms"] for r in pts],
                yerr=[[0] * len(pts), [r["p90_ms"] - r["median_ms"] for r in pts]],
                marker="o",
                capsize=3,
                color=colours.get(key),
                label=SYSTEMS[key].label,
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("subscribers of one instance (N)")
        ax.set_ylabel("save → last frame, ms (median, bar to p90)")
        ax.set_title(f"W1 fan-out, {LAYER_TITLES.get(layer, layer)}")
        ax.grid(True, which="both", alpha=0.3)
    # One legend for both panels, below them, so that no line hides behind it.
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=2, frameon=False)
    info = run.info
    fig.suptitle(
        f"gql_observer fan-out ({'quick' if run.args.quick else 'full'}) · {info['commit']} · "
        f"{info['nproc']} x {info['cpu']}",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0.04 + 0.035 * ((len(labels) + 1) // 2), 1, 1))
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
    p.add_argument(
        "--quick",
        action="store_true",
        help="N=100,1000, 4 saves; scenarios W1,W1same,W1v,W1p,W1x (~6 minutes)",
    )
    p.add_argument(
        "--systems",
        default=",".join(DEFAULT_SYSTEMS),
        help="comma list of F,U,Ul,P0,P0s,P0l,P0x2,P1,P2 (P0l: P0 with DELIVER_IN_PROCESS off, "
        "every change through the channel layer; P0x2: gql_observer on two server processes "
        "behind one Redis, subscribers alternating between them; Redis layers only)",
    )
    p.add_argument(
        "--layers",
        default="inmem,redis",
        help="comma list of inmem, redis (channels_redis RedisChannelLayer), pubsub "
        "(channels_redis RedisPubSubChannelLayer)",
    )
    p.add_argument("--ns", default=None, help="comma list of N (default 100,1000[,5000 full])")
    p.add_argument("--saves", type=int, default=None, help="measured saves per system and N")
    p.add_argument(
        "--warm", type=int, default=None, help="unrecorded saves per system and N (full: 1)"
    )
    p.add_argument("--db", choices=("postgres", "sqlite"), default="postgres")
    p.add_argument(
        "--conn-max-age",
        type=int,
        default=60,
        help="CONN_MAX_AGE env for every server (peers honour it; P0 if its settings do)",
    )
    p.add_argument(
        "--db-pool",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="servers reach PostgreSQL through psycopg's pool with CONN_MAX_AGE 0, as Django "
        "advises under ASGI (default); --no-db-pool: --conn-max-age alone, which under uvicorn "
        "still connects once per request (each sync view runs on a new thread). W4's writer "
        "processes keep --conn-max-age either way",
    )
    p.add_argument(
        "--uvicorn-ws",
        choices=("auto", "websockets", "websockets-sansio", "wsproto"),
        default="auto",
        help="uvicorn's websocket implementation for every uvicorn server that names none of "
        "its own (U, P0s, P1, P2; P0, P0l, P0x2 and Ul run gql_observer.uvicorn's); "
        "auto = websockets-sansio when websockets is installed",
    )
    p.add_argument("--pg-url", default="postgres://postgres@127.0.0.1:5432/test")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379")
    p.add_argument(
        "--redis-db-base",
        type=int,
        default=10,
        help="Redis db index of the first system of the run that uses the layer; the others "
        "get the next ones, in ORDER (flushed before and after; Redis has dbs 0-15)",
    )
    p.add_argument(
        "--settle",
        type=float,
        default=0.1,
        help="s after the first subscriber's frame at which Redis counters are read",
    )
    p.add_argument(
        "--scenarios",
        default=None,
        help="comma list of W1,W1same,W1v,W1p,W1x,W2,W5,W3,W4, run in the order given, each "
        "on freshly started servers (quick: W1,W1same,W1v,W1p,W1x; full: those and W2,W5,W3; "
        "W4 only when asked, on channels_redis)",
    )
    p.add_argument("--w3-n", type=int, default=1000, help="W3: instances, one subscriber each")
    p.add_argument("--w3-saves", type=int, default=None, help="W3: measured bursts per system")
    p.add_argument("--w5-n", type=int, default=1000, help="W5: readers besides the stalled one")
    p.add_argument("--w5-saves", type=int, default=None, help="W5: measured saves per system")
    p.add_argument(
        "--w2-selections",
        type=int,
        default=10,
        help="W2: distinct selections among W1's N subscribers (at most 10)",
    )
    p.add_argument(
        "--w5-prefill", type=int, default=400, help="W5: saves to back up the stalled socket"
    )
    p.add_argument("--w5-prefill-secs", type=float, default=20.0, help="W5: prefill time cap")
    p.add_argument("--w4-rate", type=float, default=1000.0, help="W4: target saves/s")
    p.add_argument(
        "--w4-secs", type=float, default=None, help="W4: s of writing per system (quick 10, 30)"
    )
    p.add_argument(
        "--w4-writers",
        type=int,
        default=2,
        help="W4: writer processes, each saving its own rows at its share of the rate",
    )
    p.add_argument(
        "--w4-sync-commit",
        choices=("on", "off"),
        default="off",
        help="W4, PostgreSQL: the writers' synchronous_commit (off: commits do not wait for "
        "the disk, so the writers reach the rate on a slow disk; the same for every system)",
    )
    p.add_argument("--w4-rows", type=int, default=10, help="W4: hot rows")
    p.add_argument("--w4-per-row", type=int, default=100, help="W4: subscribers per row")
    p.add_argument(
        "--w4-drain",
        type=float,
        default=None,
        help="W4: s a system may go on delivering after the last save (quick 30, full 120)",
    )
    p.add_argument(
        "--w4-quiet", type=float, default=3.0, help="W4: drained = no frame for this many s"
    )
    p.add_argument("--plot", default="docs/perf/fanout.png")
    p.add_argument("--json", default="/tmp/gqlo-fanout.json", help="raw results")
    p.add_argument("--budget", type=float, default=None, help="s after which no new saves start")
    args = p.parse_args()
    args.quick = bool(args.quick)
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    args.layers = [s.strip() for s in args.layers.split(",") if s.strip()]
    args.ns = (
        [int(x) for x in args.ns.split(",")]
        if args.ns
        else ([100, 1000] if args.quick else [100, 1000, 5000])
    )
    args.saves = args.saves or (4 if args.quick else 21)
    args.warm = args.warm if args.warm is not None else (0 if args.quick else 1)
    names = {x.upper(): x for x in SCENARIOS}
    args.scenarios = (
        [names.get(x.strip().upper(), x.strip()) for x in args.scenarios.split(",") if x.strip()]
        if args.scenarios
        else [*FANOUT]
        if args.quick
        else [*FANOUT, "W2", "W5", "W3"]
    )
    args.w3_saves = args.w3_saves or (3 if args.quick else 7)
    args.w5_saves = args.w5_saves or (4 if args.quick else 11)
    args.w4_secs = args.w4_secs or (10.0 if args.quick else 30.0)
    args.w4_drain = args.w4_drain or (30.0 if args.quick else 120.0)
    args.users = max(1, args.w3_n) if "W3" in args.scenarios else 1
    if "W4" in args.scenarios:
        args.users = max(args.users, args.w4_rows)
    if any(FANOUT.get(x, Traffic()).auth for x in args.scenarios):
        args.users = max(args.users, max(args.ns))  # one user per logged-in viewer
    latency = [x for x in args.scenarios if x != "W4"]
    if args.budget is None:
        # per scenario and layer: quick 75 s (servers started afresh, two Ns connected and
        # measured), full 600 s
        args.budget = (75.0 if args.quick else 600.0) * len(latency) * len(args.layers)
        if "W4" in args.scenarios:  # connecting, then per system: writing, draining, settling
            args.budget += 60 + len(args.systems) * (args.w4_secs + args.w4_drain + 40)
    # past the budget: the last connects, closes and server stops of every scenario
    args.hard_margin = (45.0 if args.quick else 600.0) + 20.0 * len(latency) * len(args.layers)
    bad = (
        [s for s in args.systems if s not in SYSTEMS]
        + [layer for layer in args.layers if layer != "inmem" and layer not in REDIS_LAYERS]
        + [x for x in args.scenarios if x not in SCENARIOS]
    )
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
    systems = prepare_databases(run, systems)  # blocking on purpose: nothing else runs yet
    for i, layer in enumerate(args.layers):
        # each layer gets an equal share of what is left, so a slow machine measures every
        # layer with fewer rounds instead of the last layer not at all
        now = time.monotonic()
        run.layer_deadline = now + (run.deadline - now) / (len(args.layers) - i)
        if run.out_of_time():
            run.notes.append(f"layer {layer} not run (time budget)")
            continue
        if layer in REDIS_LAYERS:
            try:
                RedisStats(f"{args.redis_url.rstrip('/')}/0").client.ping()
            except Exception as exc:
                run.notes.append(f"redis layer not run: {exc}")
                continue
        await run_layer(run, layer, systems)


def run_loop(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` on uvloop when it is installed (the bench venv), else on asyncio."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


async def run_bounded(work: Awaitable[None], notes: list[str], hard_limit: float) -> None:
    """Await ``work``, bounded by ``hard_limit`` seconds and by SIGINT/SIGTERM; what ended it
    early goes into ``notes`` (the results are partial), never into an exception."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        async with asyncio.timeout(hard_limit):
            await work
    except TimeoutError:
        notes.append(f"hard time limit ({hard_limit:.0f} s) hit: results are partial")
    except asyncio.CancelledError:
        notes.append("interrupted: results are partial")
    except Exception as exc:
        notes.append(f"aborted by {type(exc).__name__}: {exc}")
        log(f"aborted: {exc!r}")


async def amain(run: Run, hard_limit: float) -> None:
    """Measure, bounded by ``hard_limit`` seconds and by SIGINT/SIGTERM."""
    await run_bounded(measure(run), run.notes, hard_limit)


def main() -> None:
    if "--setup" in sys.argv[1:]:
        sys.exit(setup_venv())
    ensure_bench_interpreter()
    args = parse_args()
    import resource
    import tempfile

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by servers and workers
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    args.tmp = tempfile.mkdtemp(prefix="gqlo-bench-")
    hard_limit = args.budget + args.hard_margin

    run = Run(args=args, info=machine_info(), deadline=time.monotonic() + args.budget)
    started = time.monotonic()
    run_loop(amain(run, hard_limit))
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
                "raw": {"/".join(map(str, k)): vars(c) for k, c in run.cells.items()},
            },
            indent=1,
            default=str,
        )
    )
    print()
    print(plain_table(run, rows))
    print()
    print(f"plot: {plot_path}   raw: {args.json}   logs: {LOG_DIR}")
    print(f"total {time.monotonic() - started:.0f} s")
    print()
    print("----- markdown for docs/performance.md -----")
    print(markdown(run, rows))
    print("----- end -----")


if __name__ == "__main__":
    main()
