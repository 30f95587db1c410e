#!/usr/bin/env bash
# The whole test suite, on a fresh Debian 12 machine: sets up what is missing first (scripts/setup.sh),
# lints, then runs the backend tests in .venv and the plugin tests in .venv-qgis. Extra arguments go to the
# backend's pytest (e.g. -k route, -x).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
.venv/bin/ruff check backend tests scripts plugin  # lint (rules in pyproject.toml) before the tests
status=0
.venv/bin/python -m pytest "$@" || status=$?
# The plugin's tests run under QGIS's Python (.venv-qgis: Debian's QGIS 3.22, offscreen, no GPU needed) against a
# real backend started from .venv; THALWEG_SKIP_PLUGIN_TESTS=1 skips them, as THALWEG_SKIP_APT=1 does without QGIS.
if [[ "${THALWEG_SKIP_APT:-0}" == 1 && ! -x .venv-qgis/bin/python ]]; then
  echo "skipping the plugin tests: no .venv-qgis (THALWEG_SKIP_APT=1 installed no QGIS)" >&2
elif [[ "${THALWEG_SKIP_PLUGIN_TESTS:-0}" != 1 ]]; then
  if [[ ! -x .venv-qgis/bin/python ]]; then
    echo "error: .venv-qgis is missing (QGIS 3.22 not installed?): run scripts/setup.sh, or set THALWEG_SKIP_PLUGIN_TESTS=1" >&2
    exit 1
  fi
  QT_QPA_PLATFORM=offscreen THALWEG_BACKEND_PYTHON="$ROOT/.venv/bin/python" \
    .venv-qgis/bin/python -m pytest -c tests/plugin/pytest.ini tests/plugin || status=$?
fi
exit "$status"
