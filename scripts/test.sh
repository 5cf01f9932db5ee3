#!/usr/bin/env bash
# Set up and run every test: lint, types, the Python suite on SQLite (with the
# Node clients and GraphiQL in Chromium), then the transaction tests on PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
bash scripts/services.sh

if [ ! -x /usr/bin/chromium ]; then
    echo "test: installing Debian's chromium for the GraphiQL test"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
        || echo "test: chromium could not be installed; the GraphiQL test will be skipped" >&2
fi
(cd tests/node && npm ci --no-audit --no-fund --loglevel=error)

. .venv/bin/activate
ruff check gql_observer schema_examples tests scripts
ruff format --check gql_observer schema_examples tests scripts
mypy
python scripts/check_dist.py
GQLOBS_TEST_DB=postgres python -m pytest -m db_matrix -q -p no:cacheprovider
# gql_observer.uvicorn on the lowest uvicorn the package allows (the suite below
# runs the highest, which setup.sh installed).
lowest="$(python -c 'from gql_observer.transport.uvicorn import SUPPORTED; print("%d.%d.0" % SUPPORTED[0])')"
uvicorn_low="$(mktemp -d)"
python -m pip install -q --no-deps --target "$uvicorn_low" "uvicorn==$lowest"
PYTHONPATH="$uvicorn_low" python -m pytest -m uvicorn_protocol -q -p no:cacheprovider
rm -rf "$uvicorn_low"
python -m pytest "$@"
