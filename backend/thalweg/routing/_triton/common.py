"""Pieces shared by the exact engine's Triton kernels (``iir.py``, ``cascade.py``, ``fir.py``).

``affine`` is the combine of the associative scan of a first-order recursion y[t] = a[t] y[t-1] + x[t]
on (a, x) pairs; ``wait`` is the acquire side of the flag protocol: spin until a (batch, reach) count of finished
chunks reaches ``need`` (the release side is each kernel's ``atomic_xchg(..., sem="release")``).
"""
from __future__ import annotations

import triton
import triton.language as tl

__all__ = ["affine", "wait"]


@triton.jit
def affine(a1, b1, a2, b2):
    return a1 * a2, b1 * a2 + b2


@triton.jit
def wait(flag_ptr, need):
    seen = tl.atomic_add(flag_ptr, 0, sem="acquire")
    while seen < need:
        seen = tl.atomic_add(flag_ptr, 0, sem="acquire")
