#!/usr/bin/env bash
# Create .venv and install the project with what the demo and the tests need.
# Sourced by demo.sh and test.sh; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[${1:-demo}]"
