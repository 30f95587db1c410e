"""Triton kernels of the exact engine on GPU: direct convolution over each kernel's support, one launch per pass.

The schemes without a first-order recursion (pure lag, Nash cascade, Hayami, custom kernels) go through
the same single-launch ticket design as the recursions (``iir.py``): work items (time chunk, reach,
batch element) in an order where every item comes after the items it needs, a per-(batch, reach)
count of finished chunks published with release atomics and awaited with acquire loads.

Each reach's kernels are given compacted to their support: taps ``k0 + j`` for ``j < K`` (``hc``,
``gc`` [N, KMAX], zero past K). Forward, per item (chunk [t0, t0 + BT)): the inflow I = U + q (U the
upstream outflow; U and q apart when g != h) over the window [t0 - k0 - K + 1, t0 + BT - k0) is summed
once into the program's scratch row (float64, L1/L2 resident), then

    Q[t0 + m] = sum_j hc[j] I[t0 + m - k0 - j]

is K shifted loads of the scratch row, four taps per loop trip (K rounded up, zero taps past it). Loads
and products are in the run's precision (float32 scratch for float32 runs: half the bytes), each trip's
four products summed in it and added to a float64 accumulator: a float32 sum over all taps was measured
2.7e-5 off on 1,000-tap Hayami kernels (H200), the target being 1e-5. Float64 runs: double throughout.

Backward (reverse tickets: last chunk first, outlets first):
A = dL/dQ + adjoint inflow of the downstream reach, windowed [t0 + k0, t0 + BT + k0 + K - 1) into
scratch; the reach's adjoint inflow is ``adjU[t0 + m] = sum_j hc[j] A[t0 + m + k0 + j]`` (its runoff
gradient is the same with g), and ``dhc[j] += sum_m A[t0 + m] I[t0 + m - k0 - j]`` (relaxed float64
atomics: no read latency per tap).
"""
from __future__ import annotations

import triton
import triton.language as tl

from .common import wait

__all__ = ["fir_backward_kernel", "fir_forward_kernel"]


@triton.jit
def _forward_item(ticket, order_ptr, child_ptr, child_idx, flag_ptr, n_reach, n_batch):
    """(time chunk, reach, batch element) of a forward ticket, once its inputs are published: its own earlier
    chunk (keeps the published counts monotone) and this chunk of every upstream reach."""
    chunk = ticket // (n_reach * n_batch)
    rest = ticket % (n_reach * n_batch)
    i = tl.load(order_ptr + rest // n_batch)
    b = rest % n_batch
    wait(flag_ptr + b * n_reach + i, chunk)
    e = tl.load(child_ptr + i)
    e1 = tl.load(child_ptr + i + 1)
    while e < e1:
        c = tl.load(child_idx + e)
        e += 1
        wait(flag_ptr + b * n_reach + c, chunk + 1)
    return chunk, i, b


@triton.jit
def _backward_item(ticket, order_ptr, down_ptr, flag_ptr, n_reach, n_batch, n_chunks):
    """(tickets done of this reach, time chunk, reach, batch element, downstream reach or -1) of a backward
    ticket (last chunk first, outlets first), once its own later chunk and the downstream reach's adjoint of this
    chunk and every later one are published."""
    k = ticket // (n_reach * n_batch)
    chunk = n_chunks - 1 - k
    rest = ticket % (n_reach * n_batch)
    i = tl.load(order_ptr + (n_reach - 1 - rest // n_batch))
    b = rest % n_batch
    wait(flag_ptr + b * n_reach + i, k)
    d = tl.load(down_ptr + i)
    if d >= 0:
        wait(flag_ptr + b * n_reach + d, k + 1)
    return k, chunk, i, b, d


@triton.jit
def _adjoint_window(grad_ptr, adj_ptr, scr, row, drow, d, base, wl, t_len, BT: tl.constexpr):
    """scratch[s] = A[base + s] for s < wl (zero past t_len): dL/dQ plus, when there is a downstream reach
    (d >= 0), its adjoint inflow."""
    offs0 = tl.arange(0, BT)
    s = 0
    while s < wl:
        so = s + offs0
        t = base + so
        m = (so < wl) & (t < t_len)
        a = tl.load(grad_ptr + row + t, mask=m, other=0.0).to(tl.float64)
        if d >= 0:
            a += tl.load(adj_ptr + drow + t, mask=m, other=0.0, cache_modifier=".cg").to(tl.float64)
        tl.store(scr + so, a.to(scr.dtype.element_ty), mask=so < wl)
        s += BT


@triton.jit
def _inflow_window(q_ptr, out_ptr, child_ptr, child_idx, scr, scr_q, i, b, n_reach, t_len, base, wl,
                   SAME: tl.constexpr, BT: tl.constexpr):
    """scratch[s] = I[base + s] (U + q, or U and q apart) for s < wl, zero outside [0, t_len)."""
    offs0 = tl.arange(0, BT)
    row = (b.to(tl.int64) * n_reach + i) * t_len
    e0 = tl.load(child_ptr + i)
    e1 = tl.load(child_ptr + i + 1)
    s = 0
    while s < wl:
        offs = s + offs0
        t = base + offs
        m = (offs < wl) & (t >= 0) & (t < t_len)
        x = tl.load(q_ptr + row + t, mask=m, other=0.0).to(tl.float64)
        u = tl.zeros([BT], dtype=tl.float64)  # the inflow sum in double, stored in the compute type
        e = e0
        while e < e1:
            c = tl.load(child_idx + e)
            e += 1
            crow = (b.to(tl.int64) * n_reach + c) * t_len
            u += tl.load(out_ptr + crow + t, mask=m, other=0.0, cache_modifier=".cg").to(tl.float64)
        if SAME:
            tl.store(scr + offs, (u + x).to(scr.dtype.element_ty), mask=offs < wl)
        else:
            tl.store(scr + offs, u.to(scr.dtype.element_ty), mask=offs < wl)
            tl.store(scr_q + offs, x.to(scr.dtype.element_ty), mask=offs < wl)
        s += BT


@triton.jit
def fir_forward_kernel(q_ptr, out_ptr, hc_ptr, gc_ptr, k0_ptr, kn_ptr, order_ptr, child_ptr, child_idx,
                       flag_ptr, ticket_ptr, scratch_ptr, n_reach, n_batch, t_len, n_chunks, kmax, sw,
                       SAME: tl.constexpr, BT: tl.constexpr):
    n_items = n_chunks * n_reach * n_batch
    offs0 = tl.arange(0, BT)
    scr = scratch_ptr + tl.program_id(0).to(tl.int64) * (2 * sw)
    scr_q = scr + sw
    ticket = tl.atomic_add(ticket_ptr, 1)
    while ticket < n_items:
        nxt = tl.atomic_add(ticket_ptr, 1)  # its latency overlaps this item (deadlock-free, see iir.py)
        chunk, i, b = _forward_item(ticket, order_ptr, child_ptr, child_idx, flag_ptr, n_reach, n_batch)
        row = (b.to(tl.int64) * n_reach + i) * t_len
        t0 = chunk * BT
        offs = t0 + offs0
        mask = offs < t_len
        k0 = tl.load(k0_ptr + i)
        kn = (tl.load(kn_ptr + i) + 3) // 4 * 4  # taps four at a time (zero past the support)
        _inflow_window(q_ptr, out_ptr, child_ptr, child_idx, scr, scr_q, i, b, n_reach, t_len,
                       t0 - k0 - (kn - 1), BT + kn - 1, SAME, BT)
        tl.debug_barrier()
        acc = tl.zeros([BT], dtype=tl.float64)
        hp = hc_ptr + i.to(tl.int64) * kmax
        gp = gc_ptr + i.to(tl.int64) * kmax
        j = 0
        while j < kn:  # four independent shifted loads per trip: latency overlapped
            wp = scr + offs0 + (kn - 1 - j)
            acc += (tl.load(hp + j) * tl.load(wp) + tl.load(hp + j + 1) * tl.load(wp - 1)
                    + tl.load(hp + j + 2) * tl.load(wp - 2) + tl.load(hp + j + 3) * tl.load(wp - 3)).to(tl.float64)
            if not SAME:
                qp = scr_q + offs0 + (kn - 1 - j)
                acc += (tl.load(gp + j) * tl.load(qp) + tl.load(gp + j + 1) * tl.load(qp - 1)
                        + tl.load(gp + j + 2) * tl.load(qp - 2) + tl.load(gp + j + 3) * tl.load(qp - 3)
                        ).to(tl.float64)
            j += 4
        tl.store(out_ptr + row + offs, acc.to(out_ptr.dtype.element_ty), mask=mask)
        tl.debug_barrier()  # every thread's stores (and scratch reads) done before the flag
        tl.atomic_xchg(flag_ptr + b * n_reach + i, chunk + 1, sem="release")
        ticket = nxt


@triton.jit
def fir_backward_kernel(q_ptr, out_ptr, grad_ptr, adj_ptr, dq_ptr, hc_ptr, gc_ptr, dh_ptr, dg_ptr, k0_ptr, kn_ptr,
                        order_ptr, down_ptr, child_ptr, child_idx, flag_ptr, ticket_ptr, scratch_ptr,
                        n_reach, n_batch, t_len, n_chunks, kmax, sw,
                        SAME: tl.constexpr, BT: tl.constexpr):
    n_items = n_chunks * n_reach * n_batch
    offs0 = tl.arange(0, BT)
    scr = scratch_ptr + tl.program_id(0).to(tl.int64) * (3 * sw)
    scr_q = scr + sw
    scr_a = scr + 2 * sw
    ticket = tl.atomic_add(ticket_ptr, 1)
    while ticket < n_items:
        nxt = tl.atomic_add(ticket_ptr, 1)
        k, chunk, i, b, d = _backward_item(ticket, order_ptr, down_ptr, flag_ptr, n_reach, n_batch, n_chunks)
        bi = b.to(tl.int64) * n_reach + i
        row = bi * t_len
        t0 = chunk * BT
        offs = t0 + offs0
        mask = offs < t_len
        drow = (b.to(tl.int64) * n_reach + d) * t_len
        k0 = tl.load(k0_ptr + i)
        kn = (tl.load(kn_ptr + i) + 3) // 4 * 4
        wl = BT + kn - 1
        _adjoint_window(grad_ptr, adj_ptr, scr_a, row, drow, d, t0 + k0, wl, t_len, BT)  # [t0 + k0, + BT + K - 1)
        # the forward inflow window, for the kernel gradients
        _inflow_window(q_ptr, out_ptr, child_ptr, child_idx, scr, scr_q, i, b, n_reach, t_len,
                       t0 - k0 - (kn - 1), wl, SAME, BT)
        av = tl.load(grad_ptr + row + offs, mask=mask, other=0.0).to(tl.float64)
        if d >= 0:
            av += tl.load(adj_ptr + drow + offs, mask=mask, other=0.0, cache_modifier=".cg").to(tl.float64)
        av = av.to(scr.dtype.element_ty)
        tl.debug_barrier()
        acc_h = tl.zeros([BT], dtype=tl.float64)
        acc_g = tl.zeros([BT], dtype=tl.float64)
        hp = hc_ptr + i.to(tl.int64) * kmax
        gp = gc_ptr + i.to(tl.int64) * kmax
        dhp = dh_ptr + bi * kmax
        dgp = dg_ptr + bi * kmax
        j = 0
        while j < kn:
            aw = tl.load(scr_a + offs0 + j)
            iw = tl.load(scr + offs0 + (kn - 1 - j))
            acc_h += (tl.load(hp + j) * aw).to(tl.float64)
            tl.atomic_add(dhp + j, tl.sum(av * iw, axis=0).to(tl.float64), sem="relaxed")
            if not SAME:
                acc_g += (tl.load(gp + j) * aw).to(tl.float64)
                qw = tl.load(scr_q + offs0 + (kn - 1 - j))
                tl.atomic_add(dgp + j, tl.sum(av * qw, axis=0).to(tl.float64), sem="relaxed")
            j += 1
        tl.store(adj_ptr + row + offs, acc_h.to(adj_ptr.dtype.element_ty), mask=mask)
        if not SAME:
            tl.store(dq_ptr + row + offs, acc_g.to(dq_ptr.dtype.element_ty), mask=mask)
        tl.debug_barrier()
        tl.atomic_xchg(flag_ptr + b * n_reach + i, k + 1, sem="release")
        ticket = nxt
