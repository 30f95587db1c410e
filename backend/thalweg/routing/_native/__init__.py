"""The CPU routing kernels in C (``routing.c``), compiled at first use and cached, called through ctypes.

Why C through ctypes: the CPU target (>= 5e8 reach-steps/s on one thread) needs a compiled loop,
and a plain C file built by the system compiler takes a second, needs neither torch's headers nor
ninja (``torch.utils.cpp_extension`` needs both and a minute), and ctypes releases the GIL, so basins
and batch elements run in threads. Where no C compiler exists (a stock Windows QGIS), ``load()``
returns None, logs why once, and the engines use their torch path.

The build lands in ``$THALWEG_CACHE_DIR`` (default ``~/.cache/thalweg``)/native/<hash>/, the hash
covering the source, the compiler, its flags and the CPU's feature flags (the build uses
``-march=native``); concurrent first uses build into temporary names and rename atomically.
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

__all__ = ["load", "ptr", "unavailable_reason"]

log = logging.getLogger(__name__)

_SOURCE = Path(__file__).with_name("routing.c")
_FLAGS = ["-O3", "-march=native", "-fPIC", "-shared", "-fno-math-errno"]
_LIB = None
_REASON: str | None = None
_TRIED = False

P = ctypes.c_void_p
I64 = ctypes.c_int64


def _cpu_tag() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return line
    except OSError:
        pass
    return platform.processor() + platform.machine()


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cache_dir() -> Path:
    root = os.environ.get("THALWEG_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "thalweg"


def _build() -> Path:
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler (cc, gcc or clang) on PATH")
    if sys.platform == "win32":
        raise RuntimeError("building the C kernels is not set up on Windows")
    source = _SOURCE.read_bytes()
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30, check=False).stdout
    key = hashlib.sha256(source + version.encode() + " ".join(_FLAGS).encode() + _cpu_tag().encode()).hexdigest()
    target = _cache_dir() / "native" / key[:16] / "libthalweg_routing.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        res = subprocess.run([cc, *_FLAGS, "-o", tmp, str(_SOURCE), "-lm"], capture_output=True, text=True,
                             timeout=300, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"{cc} failed: {res.stderr.strip()[:2000]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _declare(lib) -> None:
    for real in ("f32", "f64"):
        getattr(lib, f"iir_forward_{real}").argtypes = [I64, I64, I64, P, P, P, P, P, P, P, P, P]
        getattr(lib, f"iir_backward_{real}").argtypes = [I64, I64, I64, P, P, P, P, P, P, P, P, P, P, P, P, P, P, P, P]
        getattr(lib, f"fir_forward_{real}").argtypes = [I64, I64, I64, I64, P, P, P, P, P, ctypes.c_int, P, P, P, P, P,
                                                        P, P, P]
        getattr(lib, f"fir_backward_{real}").argtypes = [I64, I64, I64, P, P, P, P, P, P, P, ctypes.c_int, P, P, P, P,
                                                         P, P, P, P, P, P]
        getattr(lib, f"cascade_forward_{real}").argtypes = [I64, I64, P, P, P, P, P, P, P, P, P]
        getattr(lib, f"cascade_backward_{real}").argtypes = [I64, I64, P, P, P, P, P, P, P, P, P, P, P, P, P, P, P]
        for kind in ("iir_forward", "iir_backward", "fir_forward", "fir_backward", "cascade_forward",
                     "cascade_backward"):
            getattr(lib, f"{kind}_{real}").restype = ctypes.c_int
    lib.kernel_support.argtypes = [I64, I64, P, P, ctypes.c_double, P, P]
    lib.kernel_support.restype = ctypes.c_int


def load():
    """The loaded library, or None (with the reason logged once) when it cannot be built or loaded."""
    global _LIB, _REASON, _TRIED
    if _TRIED:
        return _LIB
    _TRIED = True
    if os.environ.get("THALWEG_NO_NATIVE"):
        _REASON = "THALWEG_NO_NATIVE is set"
    else:
        try:
            lib = ctypes.CDLL(str(_build()))
            _declare(lib)
            _LIB = lib
        except (OSError, RuntimeError, AttributeError, subprocess.SubprocessError) as exc:  # use torch, say why
            _REASON = f"{type(exc).__name__}: {exc}"
    if _LIB is None:
        log.warning("thalweg: the compiled CPU routing kernels are unavailable (%s); routing on CPU uses "
                    "the slower torch path.", _REASON)
    return _LIB


def unavailable_reason() -> str | None:
    load()
    return _REASON


def ptr(t: torch.Tensor | np.ndarray | None):
    if t is None:
        return None
    if isinstance(t, np.ndarray):
        assert t.flags.c_contiguous
        return t.ctypes.data
    assert t.is_contiguous() and t.device.type == "cpu", (t.shape, t.device)
    return t.data_ptr()
