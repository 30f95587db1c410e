"""Triton kernels of the exact engine on GPU: long convolutions as block-Toeplitz products on tensor cores.

The same single-launch ticket design and items (time chunk of BT steps, reach, batch element) as ``fir.py``,
for float32 runs with long kernels (Hayami, real-n Nash, custom kernels: hundreds of taps), where ``fir.py``'s
shifted scalar-times-row products are bound by their K row loads per item. Here a chunk's BT outputs are a
[R, C] tile (t = t0 + c R + r) and, with tap j = m R + r - s,

    Q[r, c] = sum_m sum_s h[m R + r - s] I[t0 - k0 + (c - m) R + s]      = sum_m  H_m @ X_m

H_m [R, R] a Toeplitz block of the taps (gathered, zero outside [0, K)) and X_m [R, C] the inflow window
shifted by m blocks (a contiguous run of the window read as a tile): ceil((K + R - 1) / R) products of
R x R x C on tensor cores, each product's sum (R taps) in float32 and the sum over blocks in float64. Precision
``fp16x3`` (the default, ``_gpu.TOEPLITZ_PRECISION``): the taps and the window each scaled by a power of two to a
largest magnitude of 2^14 (``_pow2_scale``; float16 spans 6e-5 to 65504) and split into float16 high and low
parts, three products (hi hi + hi lo + lo hi: 11 + 11 bits, float32 accuracy) at twice TF32's rate; Triton's
``tf32x3`` (the same split on TF32) and its other input precisions are taken as they are.

Backward (reverse tickets, as ``fir.py``): the adjoint inflow is the correlation
adjU[r, c] = sum_m sum_s h[m R + s - r] A[t0 + k0 + (c + m) R + s] (A = dL/dQ + the downstream reach's adjoint
inflow), and the kernel gradient dh[j] = sum_tau a[tau] I[t0 - k0 + tau - j] (a = A over the chunk) is, with
j = w R + v and u = tau - w R, the product P @ W of the Hankel tile P[w, u] = a[u + w R] and the Toeplitz tile
W[u, v] = I[t0 - k0 + u - v], WB block rows of taps at a time, added to dh with relaxed float64 atomics.
"""
from __future__ import annotations

import triton
import triton.language as tl

from .fir import _adjoint_window, _backward_item, _forward_item, _inflow_window

__all__ = ["toeplitz_backward_kernel", "toeplitz_forward_kernel"]


@triton.jit
def _block_product(acc, tap_ptr, scr, kn, nm, base_blk, sign, R: tl.constexpr, C: tl.constexpr,
                   PREC: tl.constexpr):
    """acc [R, C] float64 += sum_m H_m @ X_m: H_m[r, s] = tap[m R + sign (r - s)], X_m[s, c] =
    scr[(c + base_blk - sign m) R + s] (forward: sign 1, base_blk nm - 1; adjoint: sign -1, base_blk 0)."""
    r = tl.arange(0, R)
    c = tl.arange(0, C)
    d = sign * (r[:, None] - r[None, :])
    xoff = (c[None, :] + base_blk) * R + r[:, None]
    if PREC == "fp16x3":
        # float16 high and low parts (11 + 11 bits, as tf32x3's) at twice TF32's rate; the taps and the window
        # scaled by powers of two to a largest magnitude near 2^14 (float16's range is 6e-5 to 65504)
        sh = _pow2_scale(tap_ptr, kn)
        sx = _pow2_scale(scr, (C + nm - 1) * R)
        part = tl.zeros([R, C], dtype=tl.float64)
        m = 0
        while m < nm:
            j = m * R + d
            hm = tl.load(tap_ptr + j, mask=(j >= 0) & (j < kn), other=0.0) * sh
            xm = tl.load(scr + xoff - sign * m * R) * sx
            h_hi = hm.to(tl.float16)
            x_hi = xm.to(tl.float16)
            h_lo = (hm - h_hi.to(tl.float32)).to(tl.float16)
            x_lo = (xm - x_hi.to(tl.float32)).to(tl.float16)
            small = tl.dot(h_lo, x_hi, tl.dot(h_hi, x_lo))
            part += tl.dot(h_hi, x_hi, small).to(tl.float64)
            m += 1
        acc += part / (sh.to(tl.float64) * sx.to(tl.float64))
    else:
        m = 0
        while m < nm:  # software pipelining (tl.range num_stages 2-3) measured 0-10 % at 4 warps, 2x the registers
            j = m * R + d
            hm = tl.load(tap_ptr + j, mask=(j >= 0) & (j < kn), other=0.0)
            xm = tl.load(scr + xoff - sign * m * R)
            acc += tl.dot(hm, xm, input_precision=PREC).to(tl.float64)
            m += 1
    return acc


@triton.jit
def _pow2_scale(ptr, n):
    """2^(14 - e), e the binary exponent of the largest |ptr[0:n]| (1 where all are 0): float32."""
    k = tl.arange(0, 1024)
    big = tl.zeros([1024], dtype=tl.float32)
    o = 0
    while o < n:
        big = tl.maximum(big, tl.abs(tl.load(ptr + o + k, mask=o + k < n, other=0.0).to(tl.float32)))
        o += 1024
    top = tl.max(big, 0)
    e = tl.ceil(tl.log2(tl.maximum(top, 1e-30)))
    return tl.where(top > 0.0, tl.exp2(14.0 - e), 1.0)


@triton.jit
def toeplitz_forward_kernel(q_ptr, out_ptr, hc_ptr, gc_ptr, k0_ptr, kn_ptr, order_ptr, child_ptr, child_idx,
                            flag_ptr, ticket_ptr, scratch_ptr, n_reach, n_batch, t_len, n_chunks, kmax, sw,
                            SAME: tl.constexpr, BT: tl.constexpr, R: tl.constexpr, PREC: tl.constexpr):
    C: tl.constexpr = BT // R
    n_items = n_chunks * n_reach * n_batch
    r = tl.arange(0, R)
    c = tl.arange(0, C)
    tile = c[None, :] * R + r[:, None]  # step offset of each tile element in its chunk
    scr = scratch_ptr + tl.program_id(0).to(tl.int64) * (2 * sw)
    scr_q = scr + sw
    ticket = tl.atomic_add(ticket_ptr, 1)
    while ticket < n_items:
        nxt = tl.atomic_add(ticket_ptr, 1)
        chunk, i, b = _forward_item(ticket, order_ptr, child_ptr, child_idx, flag_ptr, n_reach, n_batch)
        row = (b.to(tl.int64) * n_reach + i) * t_len
        t0 = chunk * BT
        k0 = tl.load(k0_ptr + i)
        kn = tl.load(kn_ptr + i)
        nm = (kn + 2 * R - 2) // R  # tap blocks: ceil((K + R - 1) / R)
        _inflow_window(q_ptr, out_ptr, child_ptr, child_idx, scr, scr_q, i, b, n_reach, t_len,
                       t0 - k0 - (nm - 1) * R, BT + (nm - 1) * R, SAME, BT)
        tl.debug_barrier()
        acc = tl.zeros([R, C], dtype=tl.float64)
        acc = _block_product(acc, hc_ptr + i.to(tl.int64) * kmax, scr, kn, nm, nm - 1, 1, R, C, PREC)
        if not SAME:
            acc = _block_product(acc, gc_ptr + i.to(tl.int64) * kmax, scr_q, kn, nm, nm - 1, 1, R, C, PREC)
        t = t0 + tile
        tl.store(out_ptr + row + t, acc.to(out_ptr.dtype.element_ty), mask=t < t_len)
        tl.debug_barrier()
        tl.atomic_xchg(flag_ptr + b * n_reach + i, chunk + 1, sem="release")
        ticket = nxt


@triton.jit
def _tap_gradient(dtap_ptr, av_scr, win, kn, kmax, nm, BT: tl.constexpr, R: tl.constexpr, WB: tl.constexpr,
                  UB: tl.constexpr, PREC: tl.constexpr):
    """dtap[w R + v] += sum_u a[u + w R] I[u - v] over the chunk, WB block rows of taps at a time (module
    docstring); ``av_scr`` holds a [0, BT), ``win`` the inflow window (I[x] at win[x + (nm - 1) R])."""
    w0 = tl.arange(0, WB)
    v = tl.arange(0, R)
    ub = tl.arange(0, UB)
    nw = (kn + R - 1) // R
    if PREC == "fp16x3":  # as _block_product: a and the window scaled by powers of two, float16 high and low parts
        sp = _pow2_scale(av_scr, BT)
        sx = _pow2_scale(win, BT + (nm - 1) * R)
        unscale = 1.0 / (sp.to(tl.float64) * sx.to(tl.float64))
    wt = 0
    while wt < nw:
        w = wt + w0
        acc = tl.zeros([WB, R], dtype=tl.float64)
        u = -(wt + WB - 1) * R  # the first u any row of the tile reaches (a is zero before)
        u_end = BT - wt * R
        while u < u_end:
            uu = u + ub
            ai = uu[None, :] + w[:, None] * R
            p = tl.load(av_scr + ai, mask=(ai >= 0) & (ai < BT), other=0.0)  # [WB, UB]
            xi = uu[:, None] - v[None, :] + (nm - 1) * R
            inside = xi >= 0
            if R % UB != 0:  # the last trip can pass the window's end (its span, BT + (WB - 1) R, is no multiple)
                inside = inside & (xi < BT + (nm - 1) * R)
            x = tl.load(win + xi, mask=inside, other=0.0)  # [UB, R]
            if PREC == "fp16x3":
                p = p * sp
                x = x * sx
                p_hi = p.to(tl.float16)
                x_hi = x.to(tl.float16)
                p_lo = (p - p_hi.to(tl.float32)).to(tl.float16)
                x_lo = (x - x_hi.to(tl.float32)).to(tl.float16)
                acc += tl.dot(p_hi, x_hi, tl.dot(p_lo, x_hi, tl.dot(p_hi, x_lo))).to(tl.float64)
            else:
                acc += tl.dot(p, x, input_precision=PREC).to(tl.float64)
            u += UB
        if PREC == "fp16x3":
            acc = acc * unscale
        j = w[:, None] * R + v[None, :]
        tl.atomic_add(dtap_ptr + j, acc, mask=j < kmax, sem="relaxed")
        wt += WB


@triton.jit
def toeplitz_backward_kernel(q_ptr, out_ptr, grad_ptr, adj_ptr, dq_ptr, hc_ptr, gc_ptr, dh_ptr, dg_ptr, k0_ptr,
                             kn_ptr, order_ptr, down_ptr, child_ptr, child_idx, flag_ptr, ticket_ptr, scratch_ptr,
                             n_reach, n_batch, t_len, n_chunks, kmax, sw,
                             SAME: tl.constexpr, BT: tl.constexpr, R: tl.constexpr, WB: tl.constexpr,
                             UB: tl.constexpr, PREC: tl.constexpr):
    C: tl.constexpr = BT // R
    n_items = n_chunks * n_reach * n_batch
    r = tl.arange(0, R)
    c = tl.arange(0, C)
    tile = c[None, :] * R + r[:, None]
    scr = scratch_ptr + tl.program_id(0).to(tl.int64) * (4 * sw)
    scr_q = scr + sw
    scr_a = scr + 2 * sw
    scr_v = scr + 3 * sw
    ticket = tl.atomic_add(ticket_ptr, 1)
    while ticket < n_items:
        nxt = tl.atomic_add(ticket_ptr, 1)
        k, chunk, i, b, d = _backward_item(ticket, order_ptr, down_ptr, flag_ptr, n_reach, n_batch, n_chunks)
        bi = b.to(tl.int64) * n_reach + i
        row = bi * t_len
        t0 = chunk * BT
        drow = (b.to(tl.int64) * n_reach + d) * t_len
        k0 = tl.load(k0_ptr + i)
        kn = tl.load(kn_ptr + i)
        nm = (kn + 2 * R - 2) // R
        wl = BT + (nm - 1) * R
        # A over [t0 + k0, t0 + k0 + wl), and over the chunk itself
        _adjoint_window(grad_ptr, adj_ptr, scr_a, row, drow, d, t0 + k0, wl, t_len, BT)
        _adjoint_window(grad_ptr, adj_ptr, scr_v, row, drow, d, t0, BT, t_len, BT)
        _inflow_window(q_ptr, out_ptr, child_ptr, child_idx, scr, scr_q, i, b, n_reach, t_len,
                       t0 - k0 - (nm - 1) * R, wl, SAME, BT)
        tl.debug_barrier()
        acc = tl.zeros([R, C], dtype=tl.float64)
        acc = _block_product(acc, hc_ptr + i.to(tl.int64) * kmax, scr_a, kn, nm, 0, -1, R, C, PREC)
        tt = t0 + tile
        tl.store(adj_ptr + row + tt, acc.to(adj_ptr.dtype.element_ty), mask=tt < t_len)
        # the upstream reaches need this chunk's adjoint inflow only: published before the kernel gradients (and
        # dL/dq), which stay off the tree's chain (this reach's earlier chunk may start meanwhile: atomics)
        tl.debug_barrier()
        tl.atomic_xchg(flag_ptr + b * n_reach + i, k + 1, sem="release")
        _tap_gradient(dh_ptr + bi * kmax, scr_v, scr, kn, kmax, nm, BT, R, WB, UB, PREC)
        if not SAME:
            acc = tl.zeros([R, C], dtype=tl.float64)
            acc = _block_product(acc, gc_ptr + i.to(tl.int64) * kmax, scr_a, kn, nm, 0, -1, R, C, PREC)
            tl.store(dq_ptr + row + tt, acc.to(dq_ptr.dtype.element_ty), mask=tt < t_len)
            _tap_gradient(dg_ptr + bi * kmax, scr_v, scr_q, kn, kmax, nm, BT, R, WB, UB, PREC)
        tl.debug_barrier()  # every thread done with the scratch before the next item fills it
        ticket = nxt
