"""Live lists side by side (issue 18's L1 and L2): gql_observer (P0) against DCRF's
``model_observer`` with a group per filter (P1) and strawberry's channels recipe with a group
per filter (P2), next to the floors LU and LUr, in the fan-out benchmark's harness (systems.py,
fanout.py's servers, layers and databases, loadgen.py's client worker). A tool, not a test.

  python -m tests.benchmarks.lists_fanout --quick                 # L1, L2; inmem and redis
  python -m tests.benchmarks.lists_fanout --quick --layers inmem --scenarios L1
  python -m tests.benchmarks.lists_fanout --quick --systems LU,LUr,P0

LU (``lists_floor.py``) is what the machine allows a Django server: a bare ASGI app under U's
uvicorn command line, on P0's websocket protocol and its direct frame write, that runs the
same ``User.objects.create`` loop in a view thread on the
peers' database settings and writes each created row's frame, encoded once, to the
subscribers of the filters it matches (``matching_keys``). It reads nothing back after the
commit, has no filter engine, no channel layer and no GraphQL library, so it ignores the
layer (it runs under each, to appear in each table). The report gives every system's
deliveries/s as a multiple of LU's; LU is not a peer, the targets stay P0 against P1 and P2,
and the targets table says for each whether the floors themselves reach it (a target above
LU's figure is out of any Django server's reach on this machine).
LUr is LU plus what gql_observer's contract adds: each frame carries the row as read after its
commit, one ``User.objects.filter(pk__in=...)`` per batch of created pks on Django's one sync
thread (while the creates go on in the view thread), so it is the floor of a server that sends
committed state; the report gives P0, P1 and P2 as multiples of it too (only P0 sends
committed state: the peers send the values ``save()`` had, so they may pass it).

Every system gets ``--subscribers`` (1,000) list subscribers over ``--filters`` (100) distinct
filters (``peers/list_filters.py``: filter k = username starts with ``f<k>-`` OR e-mail is
``g<k // 10>@x``), each its own requestId (a millisecond timestamp + its slot), sent as
variables of one named document (P0, P2) or as DCRF's ``request_id`` (P1). By default
(``--viewers signed-in``) every subscriber is a different logged-in user, s + 1 for slot s,
as real screens are: a gql_observer token in ``connection_init`` for P0, a session cookie at
the peer's ``ws_auth_path`` (DCRF's consumer with ``IsAuthenticated``) for P1 and P2; the
floors authenticate nobody. ``--viewers anonymous`` is what the runs before 2026-12-07's
third session measured.
L1: one ``User.objects.create`` with e-mail ``g<j>@x`` (through ``GET /bench/create/`` on the
server): it enters the 10 filters of group j, so 10 x 10 subscribers get one frame each.
L2: one request that creates ``--burst`` (1,000) users, the i-th entering filter ``i % 100``:
every subscriber gets every create of its filter (10 x 1,000 frames).
Measured: from the server's first ``create()`` call to the last expected frame (and from the
trigger request), deliveries/s (frames due / median from save), and the SQL statements the
server ran besides the INSERTs themselves (``peers/queries.py``, read ``--settle`` s after the
last frame), per save. A frame without the subscriber's requestId, or one for a subscriber
whose filter the row does not match, fails the save.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.benchmarks.systems import BENCH_VENV, REPO, SYSTEMS


def _ensure_bench_interpreter() -> None:
    """Re-execute with .venv-bench's interpreter (the peers and the clients live there)."""
    if Path(sys.prefix).resolve() == BENCH_VENV.resolve():
        return
    python = BENCH_VENV / "bin" / "python"
    if not python.exists():
        sys.exit(f"{BENCH_VENV} missing: run `python -m tests.benchmarks.fanout --setup`")
    os.chdir(REPO)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    argv = [str(python), "-m", "tests.benchmarks.lists_fanout", *sys.argv[1:]]
    os.execve(str(python), argv, env)


if __name__ == "__main__":  # before the imports that only .venv-bench has
    _ensure_bench_interpreter()

from websockets.asyncio.client import ClientConnection, connect  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

from tests.benchmarks import fanout  # noqa: E402
from tests.benchmarks.loadgen import (  # noqa: E402
    Worker,
    close_subs,
    raise_fd_limit,
    serve_commands,
)
from tests.benchmarks.peers.list_filters import (  # noqa: E402
    filter_of,
    l2_username,
    matching_keys,
)

LIST_SUBSCRIPTION = (
    "subscription OnUsers($filters: UserFilter, $requestId: JSON!) "
    "{ users(filters: $filters, requestId: $requestId) "
    "{ action responseStatus requestId pk data { id username email } } }"
)
KEYS = ("LU", "LUr", "P0", "P1", "P2")
#: the floors the others are measured against (not peers: the targets leave them out), each
#: measuring the systems after it in KEYS, and what it does (the caption of its table)
FLOORS = {
    "LU": "the same creates in a view thread, each row's frame written to its filters' "
    "subscribers, nothing read back, no filter engine, no channel layer",
    "LUr": "LU plus the read after commit a server that sends committed state needs: one "
    "`User.objects.filter(pk__in=...)` per batch of created pks on Django's sync thread, each "
    "frame built from the row as read; only P0 sends committed state, the peers may pass it",
}
LOG_DIR = Path("/tmp/gqlo-lists-logs")


# ---------------------------------------------------------------------------------------------
# the load worker (one per system)
# ---------------------------------------------------------------------------------------------
@dataclass
class ListSub:
    ws: ClientConnection
    k: int
    rid: int
    expected: int = 0
    got: int = 0
    task: asyncio.Task[None] | None = None


@dataclass
class Tally:
    marker: str | None = None
    due: int = 0
    count: int = 0
    bad: int = 0  # frames without the subscriber's requestId, or beyond what its filter gets
    bad_example: str = ""
    t_last: float = 0.0
    done: asyncio.Event = field(default_factory=asyncio.Event)


class ListWorker(Worker):
    """loadgen's worker (its HTTP client) with list subscribers instead of instance ones."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.lsubs: list[ListSub] = []
        self.ltally = Tally()

    async def _subscribe(
        self, k: int, rid: int, timeout: float, credential: str | None = None
    ) -> ClientConnection:
        """Subscribe to filter ``k`` with requestId ``rid``; ``credential``: the viewer's
        token (sent in ``connection_init``) or session key (the handshake's cookie, at the
        system's ``ws_auth_path``), as ``credential_kind`` says; ``None``: anonymous."""
        gql = self.system.client == "gql"
        path, headers, init = self.system.ws_path, None, {}
        if credential is not None and self.credential_kind == "session":
            path = self.system.ws_auth_path or path
            headers = {"Cookie": f"{self.cookie_name}={credential}"}
        elif credential is not None:
            init = {"token": credential}
        ws = await connect(
            f"ws://127.0.0.1:{self.port}{path}",
            subprotocols=["graphql-transport-ws"] if gql else None,  # type: ignore[list-item]
            compression=None,
            ping_interval=None,
            open_timeout=timeout,
            close_timeout=2,
            max_queue=None,
            additional_headers=headers,
        )
        try:
            async with asyncio.timeout(timeout):
                if gql:
                    await ws.send(json.dumps({"type": "connection_init", "payload": init}))
                    if json.loads(await ws.recv()).get("type") != "connection_ack":
                        raise RuntimeError("no connection_ack")
                    payload = {
                        "query": LIST_SUBSCRIPTION,
                        "operationName": "OnUsers",
                        "variables": {"filters": filter_of(k), "requestId": rid},
                    }
                    await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
                    reply = json.loads(await ws.recv())
                    env = ((reply.get("payload") or {}).get("data") or {}).get("users") or {}
                    ok = env.get("responseStatus") == 201 and env.get("requestId") == rid
                else:
                    await ws.send(
                        json.dumps(
                            {
                                "action": "subscribe_to_users",
                                "filters": filter_of(k),
                                "request_id": rid,
                            }
                        )
                    )
                    reply = json.loads(await ws.recv())
                    ok = reply.get("response_status") == 201 and reply.get("request_id") == rid
                if not ok:
                    raise RuntimeError(f"subscription failed: {str(reply)[:300]}")
        except BaseException:
            ws.transport.abort()
            raise
        return ws

    async def _read_list(self, sub: ListSub) -> None:
        rid = str(sub.rid)
        try:
            async for msg in sub.ws:
                tally = self.ltally
                if tally.marker is None or tally.marker not in msg:
                    continue
                if rid not in msg or sub.got >= sub.expected:
                    tally.bad += 1
                    tally.bad_example = tally.bad_example or f"filter {sub.k}: {str(msg)[:200]}"
                    continue
                sub.got += 1
                tally.count += 1
                if tally.count >= tally.due:
                    tally.t_last = time.monotonic()
                    tally.done.set()
        except ConnectionClosed:
            pass

    async def lconnect(
        self, n: int, filters: int, timeout: float, signed_in: bool = False
    ) -> dict[str, Any]:
        """Top up to ``n`` list subscribers, slot s on filter ``s % filters`` with its own
        requestId; ``signed_in``: slot s is user s + 1, with the credential the server gives
        (the floors, which authenticate nobody, get none)."""
        start = time.monotonic()
        sem = asyncio.Semaphore(32)
        errors: list[str] = []
        if signed_in and self.system.key not in FLOORS:
            failed = await self.credentials_or_failure(n, len(self.lsubs), start)
            if failed is not None:
                return failed

        async def one(slot: int) -> None:
            async with sem:
                k, rid = slot % filters, self.rid_base + slot
                credential = self.credentials[slot] if self.credentials else None
                try:
                    ws = await self._subscribe(k, rid, timeout, credential)
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}"[:300])
                    return
                sub = ListSub(ws=ws, k=k, rid=rid)
                sub.task = asyncio.create_task(self._read_list(sub))
                self.lsubs.append(sub)

        await asyncio.gather(*(one(slot) for slot in range(len(self.lsubs), n)))
        return {
            "connected": len(self.lsubs),
            "failed": len(errors),
            "first_error": errors[0] if errors else None,
            "secs": round(time.monotonic() - start, 3),
            "viewers": self.credential_kind or "anonymous",
        }

    async def lsave(
        self, marker: str, query: str, rows: list[tuple[str, str]], timeout: float, settle: float
    ) -> dict[str, Any]:
        """Trigger ``GET /bench/create/?marker=..&<query>`` (which creates ``rows``) and wait
        until every subscriber has one frame per row its filter matches."""
        per_filter: dict[int, int] = {}
        for username, email in rows:
            for k in matching_keys(username, email):
                per_filter[k] = per_filter.get(k, 0) + 1
        tally = self.ltally = Tally(marker=marker)
        for sub in self.lsubs:
            sub.expected, sub.got = per_filter.get(sub.k, 0), 0
            tally.due += sub.expected
        q0 = json.loads((await self.http("GET", "/bench/queries/"))[1])
        t0 = time.monotonic()
        status, raw = await self.http("GET", f"/bench/create/?marker={marker}&{query}", None, 600)
        server = json.loads(raw) if status == 200 else {}
        error = None if status == 200 else f"HTTP {status}: {raw[:200]!r}"
        if error is None:
            try:
                await asyncio.wait_for(tally.done.wait(), timeout)
            except TimeoutError:
                error = f"{tally.count}/{tally.due} frames within {timeout:.0f} s"
        await asyncio.sleep(settle)
        q1 = json.loads((await self.http("GET", "/bench/queries/"))[1])
        if error is None and tally.bad:
            error = f"{tally.bad} unexpected frames, e.g. {tally.bad_example}"
        tally.marker = None
        result: dict[str, Any] = {
            "due": tally.due,
            "received": tally.count,
            "complete": error is None,
            "error": error,
            "saves": len(rows),
            "inserts": q1["inserts"] - q0["inserts"],
            "queries": q1["other"] - q0["other"],
        }
        if error is None:
            result["last_ms"] = (tally.t_last - t0) * 1e3
            result["save_call_ms"] = (server["t_call"] - t0) * 1e3
            result["save_return_ms"] = (server["t_return"] - t0) * 1e3
        return result

    async def lclose(self) -> dict[str, Any]:
        subs, self.lsubs = self.lsubs, []
        await close_subs(subs)
        return {"closed": len(subs)}


async def handle(worker: ListWorker, name: str, cmd: dict[str, Any]) -> dict[str, Any]:
    if name == "lconnect":
        return await worker.lconnect(
            cmd["n"], cmd["filters"], cmd["timeout"], bool(cmd.get("signed_in"))
        )
    if name == "lsave":
        rows = [(str(name), str(email)) for name, email in cmd["rows"]]
        return await worker.lsave(cmd["marker"], cmd["query"], rows, cmd["timeout"], cmd["settle"])
    if name in ("close", "exit"):
        return await worker.lclose()
    return {"error": f"unknown command {name}"}


def worker_main(key: str, port: int) -> None:
    raise_fd_limit()
    worker = ListWorker(SYSTEMS[key], port)
    fanout.run_loop(serve_commands(functools.partial(handle, worker)))


# ---------------------------------------------------------------------------------------------
# the orchestrator
# ---------------------------------------------------------------------------------------------
def rows_of(
    scenario: str, marker: str, rep: int, args: argparse.Namespace
) -> tuple[str, list[tuple[str, str]]]:
    """The trigger's query string and the rows it creates."""
    if scenario == "L1":
        email = f"g{rep % max(args.filters // 10, 1)}@x"
        return f"email={email}", [(f"{marker}-l1", email)]
    rows = [(l2_username(marker, args.filters, i), "") for i in range(args.burst)]
    return f"n={args.burst}&filters={args.filters}", rows


async def run_layer(run: fanout.Run, layer: str, systems: list[Any]) -> None:
    args = run.args
    log = fanout.log
    lay = await fanout.start_layer(run, layer, systems, "L1,L2")
    workers: dict[str, fanout.WorkerProc] = {}
    try:
        for key in lay.keys:
            cmd = [sys.executable, "-m", "tests.benchmarks.lists_fanout", "--worker", key]
            cmd += ["--port", str(lay.servers[key].port)]
            workers[key] = fanout.WorkerProc(
                key, await fanout.spawn_piped(cmd, f"lists-worker-{key}.log", limit=1 << 20)
            )
        for key, w in list(workers.items()):  # one at a time: connecting is CPU-bound
            res = await w.call(
                600,
                cmd="lconnect",
                n=args.subscribers,
                filters=args.filters,
                timeout=60,
                signed_in=args.viewers == "signed-in",
            )
            log(f"{key}/{layer}: {res}")
            if res["connected"] < args.subscribers:
                run.skipped[f"{key}/{layer}"] = (
                    f"connected {res['connected']}: {res['first_error']}"
                )
                await w.stop()
                del workers[key]
        for scenario in args.scenarios:
            saves, warm = (args.saves, 1) if scenario == "L1" else (args.bursts, 0)
            for rep in range(warm + saves):
                for key, w in list(workers.items()):  # alternate, so drift hits all alike
                    marker = fanout.new_marker()
                    query, rows = rows_of(scenario, marker, rep, args)
                    res = await w.call(
                        args.timeout + 660,
                        cmd="lsave",
                        marker=marker,
                        query=query,
                        rows=rows,
                        timeout=args.timeout,
                        settle=args.settle,
                    )
                    if rep < warm:
                        continue
                    run.cell(scenario, layer, key, args.subscribers).saves.append(res)
                    if not res["complete"]:
                        log(f"{key}/{layer} {scenario}: {res['error']}")
                    else:
                        log(
                            f"{key}/{layer} {scenario}: {res['received']} frames, last "
                            f"{res['last_ms'] - res['save_call_ms']:.0f} ms after save(); "
                            f"{res['queries']} queries besides {res['inserts']} inserts"
                        )
    finally:
        await asyncio.gather(*(w.stop() for w in workers.values()), return_exceptions=True)
        await fanout.stop_layer(lay, systems)


async def measure(run: fanout.Run) -> None:
    args = run.args
    systems = [SYSTEMS[k] for k in KEYS if k in args.systems and not SYSTEMS[k].unavailable()]
    if args.db == "postgres":
        import psycopg

        try:
            psycopg.connect(args.pg_url, connect_timeout=3).close()
        except psycopg.Error:
            args.db = "sqlite"
    systems = fanout.prepare_databases(run, systems)
    for layer in args.layers:
        await run_layer(run, layer, systems)


def summarise(run: fanout.Run) -> list[dict[str, Any]]:
    out = []
    for (scenario, layer, key, _n), cell in sorted(run.cells.items()):
        done = [s for s in cell.saves if s.get("complete")]
        if not done:
            out.append(
                {
                    "scenario": scenario,
                    "layer": layer,
                    "key": key,
                    "failed": len(cell.saves),
                    "error": next((s["error"] for s in cell.saves), "no save"),
                }
            )
            continue
        since = [s["last_ms"] - s["save_call_ms"] for s in done]
        med = statistics.median(since)
        out.append(
            {
                "scenario": scenario,
                "layer": layer,
                "key": key,
                "saves": len(done),
                "failed": len(cell.saves) - len(done),
                "frames": done[0]["due"],
                "from_save_ms": med,
                "p90_ms": fanout.pct(since, 0.9),
                "from_trigger_ms": statistics.median(s["last_ms"] for s in done),
                # the writer's own time (P1 and P2 send inside save()), and how long after
                # the last save() returned the last frame came
                "writes_ms": statistics.median(
                    s["save_return_ms"] - s["save_call_ms"] for s in done
                ),
                "tail_ms": statistics.median(s["last_ms"] - s["save_return_ms"] for s in done),
                "per_s": done[0]["due"] / med * 1e3,
                "queries_per_save": statistics.median(s["queries"] / s["saves"] for s in done),
            }
        )
    return out


def floor_lines(
    args: argparse.Namespace, by: dict[tuple[str, str, str], Any], key: str
) -> list[str]:
    """The systems after floor ``key`` in KEYS, their deliveries/s as a multiple of its (same
    scenario and layer), when it was measured: how much of what the machine allows a Django
    server doing that much each one gets."""
    others = [k for k in KEYS[KEYS.index(key) + 1 :] if k in args.systems]
    floors = [(s, layer) for s in args.scenarios for layer in args.layers if (s, layer, key) in by]
    if not floors or not others:
        return []
    lines = [
        "",
        f"{key}, a floor (`lists_floor.py`: {FLOORS[key]}): deliveries/s of each system as a "
        "multiple of its.",
        "",
        f"| scenario | layer | {key} deliveries/s | {key} from save() ms | "
        + " | ".join(f"{k} / {key}" for k in others)
        + " |",
        "|---|---|---|---|" + "---|" * len(others),
    ]
    for scenario, layer in floors:
        floor = by[(scenario, layer, key)]
        cells = [
            f"{by[(scenario, layer, k)]['per_s'] / floor['per_s']:.2f}x"
            if (scenario, layer, k) in by
            else "—"
            for k in others
        ]
        lines.append(
            f"| {scenario} | {layer} | {floor['per_s']:,.0f} | {floor['from_save_ms']:.1f} | "
            + " | ".join(cells)
            + " |"
        )
    return lines


def markdown(run: fanout.Run, rows: list[dict[str, Any]]) -> str:
    args, info = run.args, run.info
    limit = 1 + math.ceil(args.filters / 500)
    lines = [
        f"Machine: {info.get('cpu', '?')}, {info.get('nproc', '?')} cores; commit "
        f"{info.get('commit', '?')}; database {args.db}; {args.subscribers} subscribers over "
        f"{args.filters} filters, {args.viewers} viewers; L1: {args.saves} saves per system "
        "(after 1 unrecorded), "
        f"L2: {args.bursts} bursts of {args.burst} creates. Command: `python -m "
        f"tests.benchmarks.lists_fanout {' '.join(sys.argv[1:])}`.",
        "",
        "| scenario | layer | system | frames per save | from save() median ms | p90 ms "
        "| from trigger ms | save() calls ms | after the last save() ms | deliveries/s "
        "| queries per change |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "per_s" not in r:
            lines.append(
                f"| {r['scenario']} | {r['layer']} | {r['key']} | failed: {r['error']} |" + " |" * 7
            )
            continue
        lines.append(
            f"| {r['scenario']} | {r['layer']} | {r['key']} | {r['frames']} "
            f"| {r['from_save_ms']:.1f} | {r['p90_ms']:.1f} | {r['from_trigger_ms']:.1f} "
            f"| {r['writes_ms']:.1f} | {r['tail_ms']:.1f} "
            f"| {r['per_s']:,.0f} | {r['queries_per_save']:.2f} |"
        )
    by = {(r["scenario"], r["layer"], r["key"]): r for r in rows if "per_s" in r}
    for floor in FLOORS:
        lines += floor_lines(args, by, floor)
    lines += [
        "",
        "| target | layer | P0 | better peer | ratio | result |",
        "|---|---|---|---|---|---|",
    ]
    for scenario in args.scenarios:
        for layer in args.layers:
            p0 = by.get((scenario, layer, "P0"))
            peers = [by[(scenario, layer, k)] for k in ("P1", "P2") if (scenario, layer, k) in by]
            if p0 is None or not peers:
                lines.append(f"| {scenario} >= 10x | {layer} | | | | not measured |")
                continue
            best = max(peers, key=lambda r: r["per_s"])
            ratio = p0["per_s"] / best["per_s"]
            lines.append(
                f"| {scenario} deliveries/s >= 10x the better peer | {layer} "
                f"| {p0['per_s']:,.0f} | {best['key']} {best['per_s']:,.0f} | {ratio:.1f}x "
                f"| {'pass' if ratio >= 10 else 'MISS'} |"
            )
            for key in FLOORS:
                floor = by.get((scenario, layer, key))
                if floor is None:
                    continue
                # What the target asks of P0, next to what the floor itself reaches.
                due = 10 * best["per_s"]
                lines.append(
                    f"| {scenario}: 10x the better peer within {key}'s reach | {layer} "
                    f"| {key} {floor['per_s']:,.0f} | 10x {best['key']} {due:,.0f} "
                    f"| {floor['per_s'] / due:.2f}x "
                    f"| {'yes' if floor['per_s'] >= due else 'NO: above the floor'} |"
                )
            q = p0["queries_per_save"]
            lines.append(
                f"| {scenario} P0 queries per change <= {limit} | {layer} | {q:.2f} | | "
                f"| {'pass' if q <= limit else 'MISS'} |"
            )
    for note in [*run.notes, *(f"{k}: {v}" for k, v in run.skipped.items())]:
        lines.append(f"\n- {note}")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.lists_fanout",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="L1: 5 saves, L2: 2 bursts per system")
    p.add_argument("--systems", default=",".join(KEYS))
    p.add_argument("--layers", default="inmem,redis", help="comma list of inmem, redis, pubsub")
    p.add_argument("--scenarios", default="L1,L2")
    p.add_argument("--subscribers", type=int, default=1000)
    p.add_argument("--filters", type=int, default=100)
    p.add_argument("--burst", type=int, default=1000, help="L2: creates per burst")
    p.add_argument("--saves", type=int, default=None, help="L1: measured saves (quick 5, 15)")
    p.add_argument("--bursts", type=int, default=None, help="L2: measured bursts (quick 2, 5)")
    p.add_argument("--timeout", type=float, default=300.0, help="s to wait for a save's frames")
    p.add_argument(
        "--settle",
        type=float,
        default=0.3,
        help="s after the last frame, then the server's statement count is read",
    )
    p.add_argument(
        "--viewers",
        choices=("signed-in", "anonymous"),
        default="signed-in",
        help="signed-in (default): subscriber s is user s + 1 (a gql_observer token in "
        "connection_init for P0, a session cookie for the peers); anonymous: nobody signs in",
    )
    p.add_argument("--db", choices=("postgres", "sqlite"), default="postgres")
    p.add_argument("--pg-url", default="postgres://postgres@127.0.0.1:5432/test")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379")
    p.add_argument("--redis-db-base", type=int, default=1, help="Redis dbs base.. (one each)")
    p.add_argument("--uvicorn-ws", default="auto")
    p.add_argument("--json", default="/tmp/gqlo-lists.json", help="raw results")
    args = p.parse_args()
    args.systems = args.systems.split(",")
    args.layers = args.layers.split(",")
    args.scenarios = [s for s in args.scenarios.split(",") if s in ("L1", "L2")]
    args.saves = args.saves or (5 if args.quick else 15)
    args.bursts = args.bursts or (2 if args.quick else 5)
    # what fanout.start_layer and prepare_databases read
    args.users = args.subscribers if args.viewers == "signed-in" else 1
    args.conn_max_age, args.db_pool = 60, True
    args.schema_prefix = "lists"  # its own PostgreSQL schemas: it adds users to them
    args.tmp = tempfile.mkdtemp(prefix="gqlo-lists-")
    return args


def main() -> None:
    if "--worker" in sys.argv:
        at = sys.argv.index("--worker")
        worker_main(sys.argv[at + 1], int(sys.argv[sys.argv.index("--port") + 1]))
        return
    args = parse_args()
    raise_fd_limit()
    fanout.LOG_DIR = LOG_DIR  # read by fanout's spawning helpers when they run
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    run = fanout.Run(args=args, info=fanout.machine_info(), deadline=float("inf"))
    fanout.run_loop(fanout.run_bounded(measure(run), run.notes, 3600))
    fanout._kill_children()
    rows = summarise(run)
    Path(args.json).write_text(
        json.dumps(
            {
                "info": run.info,
                "rows": rows,
                "notes": run.notes,
                "skipped": run.skipped,
                "raw": {"/".join(map(str, k)): c.saves for k, c in run.cells.items()},
            },
            indent=1,
            default=str,
        )
    )
    print("----- markdown for docs/performance.md -----")
    print(markdown(run, rows))


if __name__ == "__main__":
    main()
