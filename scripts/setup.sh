#!/usr/bin/env bash
# Idempotent setup of Thalweg on a fresh Debian 12 machine:
#   1. Debian packages: QGIS 3.22 (python3-qgis, qgis-providers), pytest-qt, Xvfb, venv support;
#   2. the backend's virtual environment .venv (Python >= 3.11) with torch and the thalweg package;
#   3. .venv-qgis, a --system-site-packages venv over Debian's /usr/bin/python3 for the plugin's tests
#      (numpy stays Debian's: pip's numpy 2 breaks QGIS's GDAL bindings).
# Re-running it does only what is missing. Environment:
#   THALWEG_PYTHON   interpreter for .venv (default: python3 on PATH, must be >= 3.11)
#   THALWEG_TORCH    pip arguments for torch (default: torch==2.13.0, the CPU build, when no NVIDIA GPU
#                    is visible; on a GPU machine: torch, which pulls a CUDA build; may add --index-url ...)
#   THALWEG_SKIP_APT=1  skip the Debian packages (no root, or QGIS not wanted)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
log() { printf '[setup] %s\n' "$*" >&2; }

# gcc + libc6-dev: the CPU routing kernels (backend/thalweg/routing/_native/routing.c) compile at first use
APT_PACKAGES=(qgis python3-qgis qgis-providers python3-pytestqt python3-pytest xvfb python3-venv gcc libc6-dev poppler-utils)
if [[ "${THALWEG_SKIP_APT:-0}" != 1 ]]; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    log "installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

PY="${THALWEG_PYTHON:-python3}"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "[setup] $PY is $("$PY" --version 2>&1); Thalweg's backend needs Python >= 3.11 (set THALWEG_PYTHON)." >&2; exit 1; }
if [[ ! -x .venv/bin/python ]]; then
  log "creating .venv with $("$PY" --version)"
  "$PY" -m venv .venv
fi
if [[ -z "${THALWEG_TORCH:-}" ]]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then THALWEG_TORCH="torch"; else THALWEG_TORCH="torch==2.13.0"; fi
fi
stamp=".venv/.thalweg-setup"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16) $THALWEG_TORCH"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  log "installing $THALWEG_TORCH and thalweg[gis,server,test,scale] into .venv"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  # shellcheck disable=SC2086  # THALWEG_TORCH may carry pip options (an index for a CUDA build)
  .venv/bin/python -m pip install -q $THALWEG_TORCH
  .venv/bin/python -m pip install -q -e ".[gis,server,test,scale]"
  # a CUDA torch brings its own triton; with the CPU build, triton 3.6 (the version the GPU kernels are tested
  # with on the H100) lets the tests run the Triton kernels in its interpreter on a machine without a GPU
  if ! .venv/bin/python -c 'import triton' 2>/dev/null; then
    .venv/bin/python -m pip install -q "triton==3.6.0" || log "triton not installed: the interpreter tests of the GPU kernels will skip"
  fi
  echo "$want" > "$stamp"
fi

if [[ -x /usr/bin/python3 ]] && /usr/bin/python3 -c 'import qgis.core' 2>/dev/null; then
  if [[ ! -x .venv-qgis/bin/python ]]; then
    log "creating .venv-qgis over Debian's Python (QGIS $(/usr/bin/python3 -c 'from qgis.core import Qgis; print(Qgis.QGIS_VERSION)' 2>/dev/null))"
    /usr/bin/python3 -m venv --system-site-packages .venv-qgis
  fi
fi
log "ready: .venv/bin/thalweg ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
