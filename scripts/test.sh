#!/usr/bin/env bash
# The whole test suite, on a fresh Debian 12 machine: sets up what is missing first (scripts/setup.sh),
# lints, then runs the backend tests in .venv. Extra arguments go to pytest (e.g. -k route, -x).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
.venv/bin/ruff check backend tests scripts  # lint (rules in pyproject.toml) before the tests
exec .venv/bin/python -m pytest "$@"
