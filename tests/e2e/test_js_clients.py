"""Run the JavaScript end-to-end tests in tests/node with Node's test runner.

They start the demo server (``python -m schema_examples serve``) themselves and
drive it with graphql-ws, Apollo Client, urql and GraphiQL in Chromium (also
with every host but 127.0.0.1 blocked, its assets served by the demo from the
directory the session's ``graphiql_assets`` fixture fetched). Their npm packages
are installed with ``npm ci`` in tests/node.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = REPO_ROOT / "tests" / "node"
NODE_TIMEOUT_S = 270


@pytest.mark.timeout(300)
def test_javascript_clients_and_graphiql_pass_against_the_demo_server(
    graphiql_assets: Path,
) -> None:
    if not (NODE_DIR / "node_modules").is_dir():
        pytest.skip(f"{NODE_DIR / 'node_modules'} is missing: run `npm ci` in {NODE_DIR}")
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not on PATH: install Node.js >= 20 to run tests/node")

    env = dict(os.environ)
    # The demo server runs under this interpreter (the one with the project installed).
    env["GQL_OBSERVER_PYTHON"] = sys.executable
    env["GQL_OBSERVER_GRAPHIQL_ASSETS_DIR"] = str(graphiql_assets)
    env.pop("REDIS_URL", None)
    env.pop("NODE_OPTIONS", None)
    # From tests/node, `node --test` finds *.test.mjs there (never node_modules),
    # exactly as `npm test` does, on every Node version.
    proc = subprocess.Popen(
        [node, "--test", "--test-reporter=spec"],
        cwd=NODE_DIR,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=NODE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        # Take down node and whatever it started (demo servers, Chromium).
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"node --test did not finish within {NODE_TIMEOUT_S} s; its output:\n{output}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    assert proc.returncode == 0, f"node --test exited with {proc.returncode}; its output:\n{output}"
