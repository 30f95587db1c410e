"""Triton block-sparse causal convolution of the closure engine.

y[j, t] = sum over source blocks I of target block J, sources i in I, taps k < L of
w[I, J][i, j, k] x[i, t - k]. One program per (target block, time tile, batch element); per source
block and tap chunk one matrix product of A [block (target), block x KT] (kernel taps) and
B [block x KT, BT] (the source series, shifted per tap). Products are float32 in the chosen precision
('ieee' by default: true float32 arithmetic; 'tf32x3' or 'tf32' on request); they accumulate in
float64 across source blocks and tap chunks, so long closures keep float32 accuracy. Offsets are
64-bit: kernel storage passes 2^31 elements on large stages.

The adjoint (``block_conv_adjoint``, the closure engine's backward): dx[i, t] = sum over target blocks J
holding source block I, targets j in J, taps k of w[I, J][i, j, k] dy[j, t + k], the same blocks
transposed on reversed time, one program per (source block, time tile, batch element), the pairs of a
source block listed source-major (``t_ptr``, ``t_bp``, ``t_tgt``); no transposed copy of the blocks. Both
directions are one kernel (``ADJ`` picks the pair list, the block's orientation and the time direction).
"""
from __future__ import annotations

import numpy as np
import torch
import triton
import triton.language as tl

__all__ = ["block_conv", "block_conv_adjoint"]


@triton.jit
def _block_conv_kernel(x_ptr, w_ptr, y_ptr, p_lo, p_hi, p_bp, p_blk, n_pad, t_len, length,
                       BS: tl.constexpr, BT: tl.constexpr, KT: tl.constexpr, PREC: tl.constexpr,
                       ADJ: tl.constexpr):
    # One output block per program: forward, the target block J over its pairs p_lo[J] <= p < p_hi[J] (pair p,
    # source block p_blk[p]); ADJ, the source block I over its pairs listed source-major (pair p_bp[p], target
    # block p_blk[p]), the block transposed and time reversed: y[t] += w x[t + k] instead of w x[t - k].
    ob = tl.program_id(0)
    t0 = tl.program_id(1) * BT
    b = tl.program_id(2).to(tl.int64)
    rows_o = tl.arange(0, BS)
    cols_t = t0 + tl.arange(0, BT)
    ik = tl.arange(0, BS * KT)
    i_of = ik // KT  # the input block's row of each (row, tap) column
    kk_of = ik % KT
    acc = tl.zeros([BS, BT], dtype=tl.float64)
    p = tl.load(p_lo + ob)
    p_end = tl.load(p_hi + ob)
    while p < p_end:
        bp = p
        if ADJ:
            bp = tl.load(p_bp + p)
        ib = tl.load(p_blk + p)
        in_row = (b * n_pad + ib * BS + i_of).to(tl.int64) * t_len
        w_base = bp.to(tl.int64) * BS * BS * length
        k0 = 0
        while k0 < length:
            kk = k0 + kk_of
            if ADJ:  # w[bp][i, j, k] with i this block's row (output), j the input's
                a_off = w_base + (rows_o[:, None] * BS + i_of[None, :]).to(tl.int64) * length + kk[None, :]
                tsrc = cols_t[None, :] + kk[:, None]
                b_mask = (tsrc < t_len) & (kk < length)[:, None]
            else:  # w[bp][i, j, k] with i the input's row (source), j this block's (target)
                a_off = w_base + (i_of[None, :] * BS + rows_o[:, None]).to(tl.int64) * length + kk[None, :]
                tsrc = cols_t[None, :] - kk[:, None]
                b_mask = (tsrc >= 0) & (tsrc < t_len) & (kk < length)[:, None]
            a = tl.load(w_ptr + a_off, mask=(kk < length)[None, :], other=0.0)
            xb = tl.load(x_ptr + in_row[:, None] + tsrc, mask=b_mask, other=0.0)
            acc += tl.dot(a, xb, input_precision=PREC).to(tl.float64)
            k0 += KT
        p += 1
    y_off = (b * n_pad + ob * BS + rows_o).to(tl.int64)[:, None] * t_len + cols_t[None, :]
    tl.store(y_ptr + y_off, acc.to(y_ptr.dtype.element_ty), mask=(cols_t < t_len)[None, :])


def block_conv(x: torch.Tensor, w: torch.Tensor, bp_ptr, bp_src, *, block: int, precision: str = "ieee",
               bt: int = 64, kt: int = 16, bp_end=None) -> torch.Tensor:
    """y [B, n_pad, T] from x [B, n_pad, T] (float32) and blocks w [n_bp, block, block, L] (float32).

    Target block J sums block pairs bp_ptr[J] <= p < bp_end[J] (default bp_ptr[J + 1]; an empty range
    leaves J zero), of source block bp_src[p]."""
    b, n_pad, t_len = x.shape
    length = w.shape[-1]
    x = x.contiguous().to(torch.float32)
    w = w.contiguous().to(torch.float32)
    y = torch.empty(b, n_pad, t_len, dtype=torch.float32, device=x.device)
    ptr, src = (a if torch.is_tensor(a) else torch.as_tensor(np.ascontiguousarray(a), device=x.device)
                for a in (bp_ptr, bp_src))
    lo, hi = ptr[:-1], ptr[1:]
    if bp_end is not None:
        hi = bp_end if torch.is_tensor(bp_end) else torch.as_tensor(np.ascontiguousarray(bp_end), device=x.device)
    n_blocks = n_pad // block
    grid = (n_blocks, -(-t_len // bt), b)
    _block_conv_kernel[grid](x, w, y, lo, hi, src, src, n_pad, t_len, length, BS=block, BT=bt, KT=kt,
                             PREC=precision, ADJ=False, num_warps=4)
    return y


def block_conv_adjoint(dy: torch.Tensor, w: torch.Tensor, t_ptr: torch.Tensor, t_bp: torch.Tensor,
                       t_tgt: torch.Tensor, *, block: int, precision: str = "ieee", bt: int = 64,
                       kt: int = 16) -> torch.Tensor:
    """dx [B, n_pad, T] from dy [B, n_pad, T] and the forward's blocks w [n_bp, block, block, L] (float32):
    the transpose of ``block_conv``. t_ptr [n_blocks + 1], t_bp, t_tgt: the pairs source-block-major."""
    b, n_pad, t_len = dy.shape
    length = w.shape[-1]
    dy = dy.contiguous().to(torch.float32)
    w = w.contiguous().to(torch.float32)
    dx = torch.empty(b, n_pad, t_len, dtype=torch.float32, device=dy.device)
    grid = (n_pad // block, -(-t_len // bt), b)
    _block_conv_kernel[grid](dy, w, dx, t_ptr[:-1], t_ptr[1:], t_bp, t_tgt, n_pad, t_len, length, BS=block, BT=bt,
                             KT=kt, PREC=precision, ADJ=True, num_warps=4)
    return dx
