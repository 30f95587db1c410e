"""The CPU routing kernels in C (``routing.c``), compiled at first use and cached, called through ctypes.

Why C through ctypes: the CPU target (>= 5e8 reach-steps/s on one thread) needs a compiled loop,
and a plain C file built by the system compiler takes a second, needs neither torch's headers nor
ninja (``torch.utils.cpp_extension`` needs both and a minute). One call routes all basins and batch
elements of a pass, in threads that the C code starts (ctypes releases the GIL for the call). Where no C
compiler exists (a stock Windows QGIS), ``load()`` returns None, logs why once, and the engines use their
torch path.

The build lands in ``$THALWEG_CACHE_DIR`` (default ``~/.cache/thalweg``)/native/<hash>/, the hash
covering the source, the compiler, its flags and the CPU's feature flags (the build uses
``-march=native``); concurrent first uses build into temporary names and rename atomically.
"""
from __future__ import annotations

import ctypes
import logging
import os
import subprocess
from pathlib import Path

import numpy as np
import torch

from ..._cbuild import build, once

__all__ = ["SplitLinks", "load", "ptr", "unavailable_reason"]

log = logging.getLogger(__name__)

_SOURCE = Path(__file__).with_name("routing.c")
_FLAGS = ["-O3", "-march=native", "-fPIC", "-shared", "-fno-math-errno", "-pthread"]
_REASON: str | None = None  # why load() found no library

P = ctypes.c_void_p
I64 = ctypes.c_int64


def _build() -> Path:
    target = build(_SOURCE, "libthalweg_routing.so", _FLAGS)
    return target


class SplitLinks(ctypes.Structure):
    """``split_links`` of routing.c: the links of a network whose rivers split, for the IIR passes."""

    _fields_ = [(name, P) for name in ("link_ptr", "link_row", "link_frac", "side_of", "in_ptr", "in_src", "in_frac",
                                       "side", "wbuf", "dfrac")]


INT = ctypes.c_int
ITEMS = [I64, P, INT]  # the *_items entry points: how many work items, the items (int64 [n_items, 5]), threads


def _declare(lib) -> None:
    for real in ("f32", "f64"):
        # the trees' passes (vector where AVX-512 is there), their scalar statement, and those of networks whose
        # rivers split
        for split in ("", "scalar_", "split_"):
            getattr(lib, f"iir_forward_{split}{real}").argtypes = [I64, I64, I64, P, P, P, P, P, P, P, P, P, P]
            getattr(lib, f"iir_backward_{split}{real}").argtypes = [I64, I64, I64, P, P, P, P, P, P, P, P, P, P, P, P,
                                                                    P, P, P, P, P]
            for kind in ("iir_forward", "iir_backward"):
                getattr(lib, f"{kind}_{split}{real}").restype = INT
        # one call for all work items of a pass, in threads
        items = {"iir_forward": [I64, I64, P, P, P, P, P, P, P, P, I64],
                 "iir_backward": [I64, I64, P, P, P, P, P, P, P, P, P, P, P, P, P, I64, I64, P],
                 "fir_forward": [I64, I64, I64, I64, P, P, P, P, P, INT, P, P, P, P, P, P, P],
                 "fir_backward": [I64, I64, I64, P, P, P, P, P, P, P, INT, P, P, P, P, P, P, P, P, P, I64, P, P],
                 "cascade_forward": [I64, I64, P, P, P, P, P, P, P],
                 "cascade_backward": [I64, I64, P, P, P, P, P, P, P, I64, P, P, P, P, P]}
        for kind, args in items.items():
            fn = getattr(lib, f"{kind}_items_{real}")
            fn.argtypes = ITEMS + args
            fn.restype = INT
        getattr(lib, f"fir_forward_{real}").argtypes = [I64, I64, I64, I64, P, P, P, P, P, ctypes.c_int, P, P, P, P, P,
                                                        P, P, P]
        getattr(lib, f"fir_backward_{real}").argtypes = [I64, I64, I64, P, P, P, P, P, P, P, ctypes.c_int, P, P, P, P,
                                                         P, P, P, P, P, I64, P, P, P]
        getattr(lib, f"cascade_forward_{real}").argtypes = [I64, I64, P, P, P, P, P, P, P, P, P]
        getattr(lib, f"cascade_backward_{real}").argtypes = [I64, I64, P, P, P, P, P, P, P, P, P, P, P, P, P, P, P]
        for kind in ("iir_forward", "iir_backward", "fir_forward", "fir_backward", "cascade_forward",
                     "cascade_backward"):
            getattr(lib, f"{kind}_{real}").restype = ctypes.c_int
    lib.kernel_support.argtypes = [I64, I64, P, P, ctypes.c_double, P, P]
    lib.kernel_support.restype = ctypes.c_int


@once
def load():
    """The loaded library, or None (with the reason logged once) when it cannot be built or loaded."""
    global _REASON
    if os.environ.get("THALWEG_NO_NATIVE"):
        _REASON = "THALWEG_NO_NATIVE is set"
    else:
        try:
            lib = ctypes.CDLL(str(_build()))
            _declare(lib)
            return lib
        except (OSError, RuntimeError, AttributeError, subprocess.SubprocessError) as exc:  # use torch, say why
            _REASON = f"{type(exc).__name__}: {exc}"
    log.warning("thalweg: the compiled CPU routing kernels are unavailable (%s); routing on CPU uses "
                "the slower torch path.", _REASON)
    return None


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
