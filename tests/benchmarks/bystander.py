"""Bystander probe: one client's worst documents against another client's tiny query.

Starts ``python -m schema_examples serve`` of a checkout (``--repo``, default this
one) on a free loopback port with a fresh SQLite database and ``DEBUG=0``, times a
bystander's tiny HTTP query quietly and then while an attacker sends the worst
documents the limits allow over HTTP and the websocket (``tests.support.bystander``),
and prints the bystander's p50/p99 latency and the server's RSS.

Usage (repo root, project venv):
  python -m tests.benchmarks.bystander
  python -m tests.benchmarks.bystander --repo /tmp/base15 --python /tmp/base15/.venv/bin/python
A tool, not a test; tests/e2e/test_bystander.py asserts bounds on the same probe.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.bystander import SIZE, probe

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.bystander")
    parser.add_argument("--repo", type=Path, default=ROOT, help="checkout whose demo is served")
    parser.add_argument("--python", default=None, help="its interpreter (default: <repo>/.venv)")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of the attack")
    parser.add_argument("--quiet-seconds", type=float, default=5.0)
    parser.add_argument("--http-clients", type=int, default=4)
    parser.add_argument("--ws-clients", type=int, default=2)
    parser.add_argument("--huge", type=int, default=11 * 1024 * 1024, help="bytes; 0: none")
    parser.add_argument("--size", type=int, default=SIZE, help="largest body or frame sent")
    parser.add_argument("--rate", type=float, default=20.0, help="subscribes/s per websocket")
    args = parser.parse_args()
    python = args.python or str(args.repo / ".venv" / "bin" / "python")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SETTINGS_MODULE"}}
        env.pop("REDIS_URL", None)
        env.update(
            DATABASE_URL=f"sqlite:///{tmp}/demo.sqlite3", DEBUG="0", SECRET_KEY="bystander-probe"
        )
        log = Path(tmp) / "server.log"
        with log.open("wb") as out:
            server = subprocess.Popen(
                [python, "-m", "schema_examples", "serve", "--port", str(port), "--log-level",
                 "warning"],
                cwd=args.repo,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + 60
            while True:
                if server.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"the server did not start:\n{log.read_text()}")
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    time.sleep(0.05)
            report = probe(
                f"http://127.0.0.1:{port}/graphql/",
                f"ws://127.0.0.1:{port}/graphql/",
                server.pid,
                seconds=args.seconds,
                quiet_seconds=args.quiet_seconds,
                http_clients=args.http_clients,
                ws_clients=args.ws_clients,
                huge=args.huge,
                size=args.size,
                rate=args.rate,
                python=sys.executable,
            )
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    print(f"repo: {args.repo}  commit: {_commit(args.repo)}")
    print(
        f"attack: {args.seconds:g} s, {args.http_clients} HTTP clients, {args.ws_clients} "
        f"websocket clients at {args.rate:g} subscribes/s, bodies/frames up to {args.size} "
        f"bytes, huge body {args.huge} bytes"
    )
    print(report.summary())


def _commit(repo: Path) -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


if __name__ == "__main__":
    main()
