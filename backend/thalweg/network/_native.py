"""The network-order kernels in C (``order.c``), compiled at first use and cached (:mod:`thalweg._cbuild`, as the
routing kernels), called through ctypes on numpy arrays; torch-free.

:mod:`.order` uses them where they load and its numpy kernels elsewhere (no C compiler, or
``THALWEG_NO_NATIVE`` set), with the same results: the C walks each reach once or twice, where numpy needs a
pass per topological level (thousands in a basin as deep as the Amazon's).
"""
from __future__ import annotations

import ctypes
import logging
import os
import subprocess
from pathlib import Path

import numpy as np

from .._cbuild import build, once

__all__ = ["children", "counting_sort", "cut_clusters", "kahn_levels", "load", "postorder"]

log = logging.getLogger(__name__)

_SOURCE = Path(__file__).with_name("order.c")
_FLAGS = ["-O2", "-fPIC", "-shared"]  # integer walks: nothing for -march=native to win

P = ctypes.c_void_p
I64 = ctypes.c_int64


@once
def load():
    """The loaded library, or None (the reason logged once at debug level: numpy does the same work)."""
    if os.environ.get("THALWEG_NO_NATIVE"):
        return None
    try:
        lib = ctypes.CDLL(str(build(_SOURCE, "libthalweg_order.so", _FLAGS)))
        lib.kahn_levels.argtypes = [I64, P, P, P]
        lib.kahn_levels.restype = I64
        lib.children.argtypes = [I64, P, P, P]
        lib.children.restype = None
        lib.counting_sort.argtypes = [I64, P, I64, P, P]
        lib.counting_sort.restype = None
        lib.postorder.argtypes = [I64, P, P, P, P, P, P, P, P, P]
        lib.postorder.restype = I64
        lib.cut_clusters.argtypes = [I64, P, P, I64, P, P, P]
        lib.cut_clusters.restype = None
    except (OSError, RuntimeError, AttributeError, subprocess.SubprocessError) as exc:
        log.debug("thalweg: the compiled network-order kernels are unavailable (%s: %s); numpy does their work",
                  type(exc).__name__, exc)
        return None
    return lib


def _p(a: np.ndarray):
    assert a.dtype == np.int64 and a.flags.c_contiguous
    return a.ctypes.data


def _down(a) -> np.ndarray:
    """``a`` as contiguous int64 downstream positions; IndexError (as numpy indexing gives) for one past the end,
    which the C would write through."""
    down = np.ascontiguousarray(a, dtype=np.int64)
    if down.size and int(down.max()) >= down.size:
        raise IndexError(f"downstream position {int(down.max())} is out of bounds for {down.size} reaches")
    return down


def kahn_levels(lib, downstream: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    down = _down(downstream)
    n = down.size
    levels, rem = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    lib.kahn_levels(n, _p(down), _p(levels), _p(rem))
    return levels, np.flatnonzero(levels < 0)


def children(lib, downstream: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    down = _down(downstream)
    n = down.size
    ptr = np.empty(n + 1, dtype=np.int64)
    idx = np.empty(int(np.count_nonzero(down >= 0)), dtype=np.int64)
    lib.children(n, _p(down), _p(ptr), _p(idx))
    return ptr, idx


def counting_sort(lib, key: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    key = np.ascontiguousarray(key, dtype=np.int64)
    order, ptr = np.empty(key.size, dtype=np.int64), np.empty(n_keys + 1, dtype=np.int64)
    lib.counting_sort(key.size, _p(key), int(n_keys), _p(ptr), _p(order))
    return order, ptr


def postorder(lib, downstream: np.ndarray) -> tuple[np.ndarray, ...]:
    """(order, position, size, depth, basin) of an acyclic network."""
    down = _down(downstream)
    n = down.size
    ptr, idx = children(lib, down)
    out = [np.empty(n, dtype=np.int64) for _ in range(5)]
    stack = np.empty(3 * n, dtype=np.int64)
    placed = lib.postorder(n, _p(down), _p(ptr), _p(idx), *(_p(a) for a in out), _p(stack))
    if placed != n:
        raise AssertionError(f"post-order placed {placed} of {n} reaches: the network holds a cycle")
    return tuple(out)


def cut_clusters(lib, downstream: np.ndarray, level_order: np.ndarray, max_reaches: int) -> tuple[np.ndarray, ...]:
    """(cut bool [n], root int64 [n]) of :func:`thalweg.scale.partition.clusters`."""
    down = _down(downstream)
    n = down.size
    level_order = np.ascontiguousarray(level_order, dtype=np.int64)
    assert level_order.size == n
    cut, root, work = np.empty(n, dtype=np.int8), np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    lib.cut_clusters(n, _p(down), _p(level_order), int(max_reaches), cut.ctypes.data, _p(root), _p(work))
    return cut.view(bool), root
