"""Build a C file of the package with the system compiler, once per source, compiler, flags and CPU, cached.

Shared by the compiled kernels (``routing/_native`` for the routing, ``network/_native`` for the network
order); torch-free, so that reading a network does not import torch. The build lands in ``$THALWEG_CACHE_DIR``
(default ``~/.cache/thalweg``)/native/<hash>/, the hash covering the source, the compiler, its flags and the
CPU's feature flags (the builds use ``-march=native``); concurrent first uses build into temporary names and
rename atomically.
"""
from __future__ import annotations

import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["build", "cache_dir", "compiler", "once"]


def once(load: Callable[[], object]) -> Callable[[], object]:
    """``load()`` run at most once, under a lock, its result kept (None too: nothing to load): a thread that asks
    while another is loading waits for that result instead of taking the library as missing (which sent a
    concurrent first route through the torch path). The compiled modules' ``load`` functions are wrapped in it."""
    lock = threading.Lock()
    box: list = []

    @functools.wraps(load)
    def loaded():
        if not box:
            with lock:
                if not box:
                    box.append(load())
        return box[0]
    return loaded


def _cpu_tag() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return line
    except OSError:
        pass
    return platform.processor() + platform.machine()


def compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def cache_dir() -> Path:
    root = os.environ.get("THALWEG_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "thalweg"


def build(source_path: Path, name: str, flags: Sequence[str]) -> Path:
    """The shared library ``name`` built from ``source_path`` with ``flags`` (RuntimeError saying why not)."""
    cc = compiler()
    if cc is None:
        raise RuntimeError("no C compiler (cc, gcc or clang) on PATH")
    if sys.platform == "win32":
        raise RuntimeError("building the C kernels is not set up on Windows")
    source = source_path.read_bytes()
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30, check=False).stdout
    key = hashlib.sha256(source + version.encode() + " ".join(flags).encode() + _cpu_tag().encode()).hexdigest()
    target = cache_dir() / "native" / key[:16] / name
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        res = subprocess.run([cc, *flags, "-o", tmp, str(source_path), "-lm"], capture_output=True, text=True,
                             timeout=300, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"{cc} failed: {res.stderr.strip()[:2000]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target
