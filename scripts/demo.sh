#!/usr/bin/env bash
# Set up and run the demo: http://127.0.0.1:8000/graphql/ (GraphiQL in a browser).
# Extra arguments go to `serve` (e.g. --port 8001). Set REDIS_URL to share events
# with other processes, DATABASE_URL to use another database.
#
# The demo's settings keep DEBUG off unless the environment turns it on; this
# script turns it on (GraphiQL and introspection follow DEBUG). Run it with
# DEBUG=0 to see the demo as it would be deployed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh demo
export DEBUG="${DEBUG:-1}"
exec .venv/bin/python -m schema_examples serve "$@"
