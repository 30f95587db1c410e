"""Triton kernels of the Nash cascade with a whole number of reservoirs on GPU, one launch per pass.

Reach i's kernel a^n C(k+n-1, k) (1-a)^k is the n-fold convolution of the linear-storage kernel a (1-a)^k
(ROUTING.md section 3), so its outflow is n passes of the first-order recursion

    y_s[t] = r y_s[t-1] + a x_s[t],   r = 1 - a,   x_0 = U + q,   x_{s+1} = y_s,   Q = y_{n-1},

cold start, g = h: n recursions per step whatever the kernel's length (the CPU's ``cascade_forward`` in
``_native/routing.c``). The work items and the flag protocol are the recursions' (``iir.py``): one
(reach, batch element) over all its time chunks, reaches in level order, a per-(batch, reach) count of
finished chunks published with release stores and awaited with acquire loads. Inside a chunk each stage is
one associative scan in float64; the stages' carried states live in a per-item row of ``st_ptr`` ([B N, NMAX]
float64), each written and read back by the same program across a barrier.

Backward (reverse tickets, outlets first, last chunk first): the chunk's stage signals are recomputed from x_0
(runoff plus the upstream rows of the forward output, complete by then) and the stage states the forward saved at
every chunk start (``ck_ptr`` [B N, chunks, NMAX]), into the program's scratch rows; then through each stage,
backwards in time, lambda[t] = A[t] + r lambda[t+1] (a reverse scan carried across chunks), the stage input's
adjoint a lambda[t], and dL/da += lambda[t] (x_s[t] - y_s[t-1]). A = dL/dQ + the downstream reach's adjoint
inflow, which is its dL/dq (g = h): each item writes its dL/dq row, which its upstream reaches read.
"""
from __future__ import annotations

import triton
import triton.language as tl

from .common import affine, wait

__all__ = ["cascade_backward_kernel", "cascade_forward_kernel"]


@triton.jit
def cascade_forward_kernel(q_ptr, out_ptr, a_ptr, nres_ptr, st_ptr, ck_ptr, order_ptr, child_ptr, child_idx,
                           flag_ptr, ticket_ptr, n_reach, n_batch, t_len, n_chunks,
                           NMAX: tl.constexpr, SAVE: tl.constexpr, BT: tl.constexpr):
    n_items = n_reach * n_batch
    offs0 = tl.arange(0, BT)
    ticket = tl.atomic_add(ticket_ptr, 1)
    while ticket < n_items:
        nxt = tl.atomic_add(ticket_ptr, 1)  # its latency overlaps this item
        i = tl.load(order_ptr + ticket // n_batch)
        b = ticket % n_batch
        bi = b.to(tl.int64) * n_reach + i
        row = bi * t_len
        a = tl.load(a_ptr + i)
        r = 1.0 - a
        m = tl.load(nres_ptr + i)
        e0 = tl.load(child_ptr + i)
        e1 = tl.load(child_ptr + i + 1)
        sp = st_ptr + bi * NMAX  # the stages' states at the step before the chunk (zero: cold start)
        chunk = 0
        while chunk < n_chunks:
            offs = chunk * BT + offs0
            mask = offs < t_len
            x = tl.load(q_ptr + row + offs, mask=mask, other=0.0).to(tl.float64)
            e = e0
            while e < e1:
                c = tl.load(child_idx + e)
                wait(flag_ptr + b * n_reach + c, chunk + 1)
                crow = (b.to(tl.int64) * n_reach + c) * t_len
                x += tl.load(out_ptr + crow + offs, mask=mask, other=0.0, cache_modifier=".cg").to(tl.float64)
                e += 1
            ra = tl.where(mask, r, 1.0) + tl.zeros([BT], dtype=tl.float64)
            last = offs == tl.minimum(chunk * BT + BT, t_len) - 1
            s = 0
            while s < m:
                y0 = tl.load(sp + s)
                if SAVE:
                    tl.store(ck_ptr + (bi * n_chunks + chunk) * NMAX + s, y0)
                pa, px = tl.associative_scan((ra, tl.where(mask, a * x, 0.0)), 0, affine)
                x = px + pa * y0
                tl.store(sp + s, tl.sum(tl.where(last, x, 0.0), axis=0))
                s += 1
            tl.store(out_ptr + row + offs, x.to(out_ptr.dtype.element_ty), mask=mask)
            tl.debug_barrier()  # the states and the row stored before the flag (and before the next chunk reads)
            tl.atomic_xchg(flag_ptr + b * n_reach + i, chunk + 1, sem="release")
            chunk += 1
        ticket = nxt


@triton.jit
def cascade_backward_kernel(q_ptr, out_ptr, grad_ptr, dq_ptr, da_ptr, a_ptr, nres_ptr, ck_ptr, order_ptr,
                            down_ptr, child_ptr, child_idx, flag_ptr, ticket_ptr, scratch_ptr,
                            n_reach, n_batch, t_len, n_chunks, gs_b, gs_n, gs_t,
                            NMAX: tl.constexpr, BT: tl.constexpr):
    n_items = n_reach * n_batch
    offs0 = tl.arange(0, BT)
    scr = scratch_ptr + tl.program_id(0).to(tl.int64) * ((NMAX + 1) * BT + NMAX)  # rows x_0, y_0 .. y_{n-1}
    lc = scr + (NMAX + 1) * BT  # each stage's lambda just past the chunk
    ticket = tl.atomic_add(ticket_ptr, 1)
    while ticket < n_items:
        nxt = tl.atomic_add(ticket_ptr, 1)
        i = tl.load(order_ptr + (n_reach - 1 - ticket // n_batch))  # outlets first
        b = ticket % n_batch
        bi = b.to(tl.int64) * n_reach + i
        row = bi * t_len
        grow = b.to(tl.int64) * gs_b + i.to(tl.int64) * gs_n  # dL/dQ by strides
        a = tl.load(a_ptr + i)
        r = 1.0 - a
        m = tl.load(nres_ptr + i)
        d = tl.load(down_ptr + i)
        drow = (b.to(tl.int64) * n_reach + d) * t_len
        e0 = tl.load(child_ptr + i)
        e1 = tl.load(child_ptr + i + 1)
        s = 0
        while s < m:
            tl.store(lc + s, a * 0.0)
            s += 1
        dsum = a * 0.0
        k = 0
        while k < n_chunks:
            chunk = n_chunks - 1 - k
            offs = chunk * BT + offs0
            mask = offs < t_len
            # the forward over the chunk again: x_0 = q + U (the forward is complete: no waits), the stages
            x = tl.load(q_ptr + row + offs, mask=mask, other=0.0).to(tl.float64)
            e = e0
            while e < e1:
                crow = (b.to(tl.int64) * n_reach + tl.load(child_idx + e)) * t_len
                x += tl.load(out_ptr + crow + offs, mask=mask, other=0.0).to(tl.float64)
                e += 1
            tl.store(scr + offs0, x)
            ra = tl.where(mask, r, 1.0) + tl.zeros([BT], dtype=tl.float64)
            ck = ck_ptr + (bi * n_chunks + chunk) * NMAX
            s = 0
            while s < m:
                pa, px = tl.associative_scan((ra, tl.where(mask, a * x, 0.0)), 0, affine)
                x = px + pa * tl.load(ck + s)
                tl.store(scr + (s + 1) * BT + offs0, x)
                s += 1
            # A = dL/dQ + the downstream reach's dL/dq
            lam = tl.load(grad_ptr + grow + offs * gs_t, mask=mask, other=0.0).to(tl.float64)
            if d >= 0:
                wait(flag_ptr + b * n_reach + d, k + 1)
                lam += tl.load(dq_ptr + drow + offs, mask=mask, other=0.0, cache_modifier=".cg").to(tl.float64)
            tl.debug_barrier()  # the stage rows stored before any lane reads its neighbour's
            s = m - 1
            while s >= 0:
                xs = tl.load(scr + s * BT + offs0)
                yp = tl.load(scr + (s + 1) * BT + offs0 - 1, mask=offs0 > 0, other=0.0)
                yp = tl.where(offs0 == 0, tl.load(ck + s), yp)  # y_s[t0 - 1]: the chunk's saved state
                pa, px = tl.associative_scan((ra, tl.where(mask, lam, 0.0)), 0, affine, reverse=True)
                lv = px + pa * tl.load(lc + s)
                dsum += tl.sum(tl.where(mask, lv * (xs - yp), 0.0), axis=0)
                tl.store(lc + s, tl.sum(tl.where(offs0 == 0, lv, 0.0), axis=0))
                lam = a * lv
                s -= 1
            tl.store(dq_ptr + row + offs, lam.to(dq_ptr.dtype.element_ty), mask=mask)
            tl.debug_barrier()  # the dL/dq row, the carried lambdas and the scratch reads done before the flag
            tl.atomic_xchg(flag_ptr + b * n_reach + i, k + 1, sem="release")
            k += 1
        tl.store(da_ptr + bi, dsum)
        ticket = nxt
