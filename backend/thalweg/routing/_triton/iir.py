"""Triton kernels of the exact engine on GPU: first-order recursions over the tree, one launch per pass.

Work items are handed out by an atomic ticket counter in an order where every item comes after the
items it needs, so a program only ever waits on items that running programs hold: no deadlock,
whatever the grid. Forward: an item is one (reach, batch element) over all its time chunks, reaches in
level order; after each chunk it publishes the number of chunks done with a release store; a reach
waits (acquire loads) for its upstream reaches' same chunk, then reads their rows past L1 (``.cg``).
Time chunks pipeline the main stem: the outlet's first chunk runs while headwaters do their last.
Backward: the same item shape in reverse (outlets first, last chunk first).

Inside a chunk the recursion y[t] = r y[t-1] + x[t] is an associative scan on (r, x) pairs, in
float64, carried across chunks through a per-item state.

Forward: Q[t] = r Q[t-1] + b0 U[t] + b1 U[t-1] + c0 q[t] + c1 q[t-1], U = sum of upstream Q (on a
network whose rivers split, ``WEIGHTED``: U = sum over links u -> i of f_ui Q_u).
Backward (reverse tickets): lambda[t] = A[t] + r lambda[t+1] with A = dL/dQ + adjoint of the downstream
reach's inflow, b0_d lambda_d[t] + b1_d lambda_d[t+1]; each item stores its lambda in the dL/dq buffer, where its
upstream reaches read it, and one pass after turns it into dL/dq = c0 lambda[t] + c1 lambda[t+1]. Where every
c1 is 0 (every scheme's recursion; ``DQ``) the item stores dL/dq = c0 lambda itself, and its upstream reaches
divide by c0 as they read it: no pass after, one read and one write of [B, N, T] fewer. The
coefficient gradients are sums of lambda times the forward signals, kept in registers over the chunks, except
the inflow terms, which each upstream reach adds for its downstream one (float64 atomics), so no item reads
its upstream rows. Memory beyond input, output and dL/dQ: the dL/dq buffer (allocated even when the runoff
needs no gradient) whatever T.
"""
from __future__ import annotations

import triton
import triton.language as tl

from .common import affine, wait

__all__ = ["iir_backward_kernel", "iir_forward_kernel", "lam_to_dq_kernel"]


@triton.jit
def iir_forward_kernel(q_ptr, out_ptr, coef_ptr, state_ptr, order_ptr, child_ptr, child_idx, child_w, flag_ptr,
                       ticket_ptr, n_reach, n_batch, t_len, n_chunks,
                       WARM: tl.constexpr, WEIGHTED: tl.constexpr, BT: tl.constexpr):
    # A work item is one (reach, batch element) over all its time chunks: the filter state stays in
    # registers from chunk to chunk, and an item only ever waits on its upstream reaches' chunks
    # (smaller tickets: the smallest item in progress always has its inputs done).
    n_items = n_reach * n_batch
    offs0 = tl.arange(0, BT)
    ticket = tl.atomic_add(ticket_ptr, 1)
    while ticket < n_items:
        nxt = tl.atomic_add(ticket_ptr, 1)  # its latency overlaps this item
        i = tl.load(order_ptr + ticket // n_batch)  # reaches in topological (level) order
        b = ticket % n_batch
        bi = b.to(tl.int64) * n_reach + i
        row = bi * t_len
        cp = coef_ptr + i * 5
        r = tl.load(cp)
        b0 = tl.load(cp + 1)
        b1 = tl.load(cp + 2)
        c0 = tl.load(cp + 3)
        c1 = tl.load(cp + 4)
        e0 = tl.load(child_ptr + i)
        e1 = tl.load(child_ptr + i + 1)
        sp = state_ptr + bi * 3
        y = r * 0.0  # float64 scalars: Q, U and q at the step before the chunk
        u_before = r * 0.0
        q_before = r * 0.0
        if WARM:
            y = tl.load(sp)
            u_before = tl.load(sp + 1)
            q_before = tl.load(sp + 2)
        # x = b0 U[t] + b1 U[t-1] + c0 q[t] + c1 q[t-1] is summed as each row arrives: one float64 array live
        # besides the scan's (registers bound the resident programs: docs/routing-engines.md)
        chunk = 0
        while chunk < n_chunks:
            t0 = chunk * BT
            offs = t0 + offs0
            mask = offs < t_len
            prev = mask & (offs > 0)
            x = c0 * tl.load(q_ptr + row + offs, mask=mask, other=0.0).to(tl.float64)
            x += c1 * tl.load(q_ptr + row + offs - 1, mask=prev, other=0.0).to(tl.float64)
            e = e0
            while e < e1:  # (a while loop: the interpreter cannot range() over loaded bounds)
                c = tl.load(child_idx + e)
                wait(flag_ptr + b * n_reach + c, chunk + 1)
                crow = (b.to(tl.int64) * n_reach + c) * t_len
                uc = tl.load(out_ptr + crow + offs, mask=mask, other=0.0, cache_modifier=".cg").to(tl.float64)
                ucp = tl.load(out_ptr + crow + offs - 1, mask=prev, other=0.0, cache_modifier=".cg").to(tl.float64)
                if WEIGHTED:
                    w = tl.load(child_w + e)
                    x += w * (b0 * uc + b1 * ucp)
                else:
                    x += b0 * uc + b1 * ucp
                e += 1
            if WARM:  # t = 0: U[-1] and q[-1] from the state (the shifted loads gave 0 there)
                x = tl.where(offs == 0, x + b1 * u_before + c1 * q_before, x)
            # past t_len (x = 0) the scan only decays the last value, which is read at t_len - 1, before them
            a = r + tl.zeros([BT], dtype=tl.float64)
            pa, px = tl.associative_scan((a, x), 0, affine)
            yv = px + pa * y
            tl.store(out_ptr + row + offs, yv.to(out_ptr.dtype.element_ty), mask=mask)
            last = offs == tl.minimum(t0 + BT, t_len) - 1
            y = tl.sum(tl.where(last, yv, 0.0), axis=0)  # the carry: on the chain to the next chunk
            tl.debug_barrier()
            tl.atomic_xchg(flag_ptr + b * n_reach + i, chunk + 1, sem="release")
            chunk += 1
        if n_chunks > 0:  # the final state's U and q: the last step's, read once (every upstream row is done)
            t_end = t_len - 1
            q_before = tl.load(q_ptr + row + t_end).to(tl.float64)
            u_before = r * 0.0
            e = e0
            while e < e1:
                c = tl.load(child_idx + e)
                uc = tl.load(out_ptr + (b.to(tl.int64) * n_reach + c) * t_len + t_end,
                             cache_modifier=".cg").to(tl.float64)
                if WEIGHTED:
                    uc = uc * tl.load(child_w + e)
                u_before += uc
                e += 1
        tl.store(sp, y)
        tl.store(sp + 1, u_before)
        tl.store(sp + 2, q_before)
        ticket = nxt


@triton.jit
def iir_backward_kernel(q_ptr, out_ptr, grad_ptr, lam_ptr, dcoef_ptr, coef_ptr, inv_c0_ptr, prev_ptr, order_ptr,
                        down_ptr,
                        dn_ptr, dn_idx, dn_w, dn_link, dfrac_ptr, n_links,
                        flag_ptr, ticket_ptr, n_reach, n_batch, t_len, n_chunks, gs_b, gs_n, gs_t,
                        HAS_PREV: tl.constexpr, WEIGHTED: tl.constexpr, DQ: tl.constexpr, BT: tl.constexpr):
    # An item is one (reach, batch element) over all its chunks, last chunk first, outlets first; it waits only
    # on its downstream reach's chunks (smaller tickets). lambda[t] = A[t] + r lambda[t+1], A = dL/dQ + the
    # downstream reach's adjoint inflow b0_d lambda_d[t] + b1_d lambda_d[t+1], computed here from lambda_d, which
    # each item stores (lam_ptr, [B, N, T]: the dL/dq buffer, turned into dL/dq by lam_to_dq_kernel after); with DQ
    # (every c1 = 0) it stores dL/dq = c0 lambda, and a reader of reach d's row scales it by 1 / c0_d (inv_c0_ptr,
    # [N] float64, one torch division before the launch: no float64 division per item).
    # WEIGHTED (rivers that split): the links out of each reach are the CSR dn_ptr/dn_idx (receivers), dn_w
    # (fractions), dn_link (link numbers); A sums f times each receiver's adjoint inflow, and
    # dL/df = sum_t adjU_receiver[t] Q[t] adds into dfrac [B, M]. down_ptr is unused then.
    # The inflow terms of the downstream reach's coefficient gradients, sum_t lambda_d[t] U_d[t] and
    # sum_t lambda_d[t] U_d[t-1], are each upstream reach's share (f) sum_t lambda_d Q[t] and lambda_d Q[t-1],
    # added here by float64 atomics into dcoef [B, N, 5] (zeroed): no reach reads its upstream rows.
    n_items = n_reach * n_batch
    offs0 = tl.arange(0, BT)
    ticket = tl.atomic_add(ticket_ptr, 1)
    while ticket < n_items:
        nxt = tl.atomic_add(ticket_ptr, 1)
        i = tl.load(order_ptr + (n_reach - 1 - ticket // n_batch))  # outlets first
        b = ticket % n_batch
        bi = b.to(tl.int64) * n_reach + i
        row = bi * t_len
        cp = coef_ptr + i * 5
        r = tl.load(cp)
        grow = b.to(tl.int64) * gs_b + i.to(tl.int64) * gs_n  # dL/dQ by strides (a broadcast one stays so)
        keep = r * 0.0 + 1.0  # what this item's lambda is stored times: c0 with DQ (then dL/dq), else 1
        if DQ:
            keep = tl.load(cp + 3)
        d = i * 0 - 1
        bd0 = r * 0.0
        bd1 = r * 0.0
        sd = r * 0.0 + 1.0  # 1 / the downstream reach's keep: its stored row times sd is its lambda
        if not WEIGHTED:
            d = tl.load(down_ptr + i)
            if d >= 0:
                if DQ:
                    sd = tl.load(inv_c0_ptr + d)
                bd0 = tl.load(coef_ptr + d * 5 + 1) * sd
                bd1 = tl.load(coef_ptr + d * 5 + 2) * sd
        lam_after = r * 0.0  # lambda just past the chunk (0 past the end)
        dr = r * 0.0
        dc0 = r * 0.0
        dc1 = r * 0.0
        dpd = dcoef_ptr + (b.to(tl.int64) * n_reach + d) * 5  # the downstream reach's (tree)
        k = 0
        while k < n_chunks:
            chunk = n_chunks - 1 - k
            t0 = chunk * BT
            offs = t0 + offs0
            mask = offs < t_len
            mnext = (offs + 1) < t_len
            prev = mask & (offs > 0)
            # A = dL/dQ + the downstream reaches' adjoint inflow: all that the chain to the upstream reaches needs
            av = tl.load(grad_ptr + grow + offs * gs_t, mask=mask, other=0.0).to(tl.float64)
            if WEIGHTED:
                f = tl.load(dn_ptr + i)
                f1 = tl.load(dn_ptr + i + 1)
                while f < f1:
                    dd = tl.load(dn_idx + f)
                    wait(flag_ptr + b * n_reach + dd, k + 1)
                    drow = (b.to(tl.int64) * n_reach + dd) * t_len
                    ld = tl.load(lam_ptr + drow + offs, mask=mask, other=0.0, cache_modifier=".cg").to(tl.float64)
                    ldn = tl.load(lam_ptr + drow + offs + 1, mask=mnext, other=0.0,
                                  cache_modifier=".cg").to(tl.float64)
                    adj = tl.load(coef_ptr + dd * 5 + 1) * ld + tl.load(coef_ptr + dd * 5 + 2) * ldn
                    if DQ:
                        adj = adj * tl.load(inv_c0_ptr + dd)
                    av += tl.load(dn_w + f) * adj
                    f += 1
            else:
                if d >= 0:
                    wait(flag_ptr + b * n_reach + d, k + 1)
                    drow = (b.to(tl.int64) * n_reach + d) * t_len
                    ld = tl.load(lam_ptr + drow + offs, mask=mask, other=0.0, cache_modifier=".cg").to(tl.float64)
                    ldn = tl.load(lam_ptr + drow + offs + 1, mask=mnext, other=0.0,
                                  cache_modifier=".cg").to(tl.float64)
                    av += bd0 * ld + bd1 * ldn
            a = tl.where(mask, r, 1.0) + tl.zeros([BT], dtype=tl.float64)
            # lambda[t] = sum_{j>=t} r^(j-t) A[j] + r^(end-t+1) lambda[end+1] (reverse scan, carried)
            pa, px = tl.associative_scan((a, tl.where(mask, av, 0.0)), 0, affine, reverse=True)
            lam = px + pa * lam_after
            tl.store(lam_ptr + row + offs, (keep * lam).to(lam_ptr.dtype.element_ty), mask=mask)
            tl.debug_barrier()
            tl.atomic_xchg(flag_ptr + b * n_reach + i, k + 1, sem="release")
            # the gradient sums, off the chain (the upstream reaches have this chunk's lambda already); the
            # forward signals and the downstream lambda are read again here rather than kept live over the scan
            ov = tl.load(out_ptr + row + offs, mask=mask, other=0.0).to(tl.float64)
            op_in = tl.load(out_ptr + row + offs - 1, mask=prev, other=0.0).to(tl.float64)  # as U[t-1] downstream
            if WEIGHTED:
                f = tl.load(dn_ptr + i)
                f1 = tl.load(dn_ptr + i + 1)
                while f < f1:
                    dd = tl.load(dn_idx + f)
                    wd = tl.load(dn_w + f)
                    drow = (b.to(tl.int64) * n_reach + dd) * t_len
                    ld = tl.load(lam_ptr + drow + offs, mask=mask, other=0.0, cache_modifier=".cg").to(tl.float64)
                    ldn = tl.load(lam_ptr + drow + offs + 1, mask=mnext, other=0.0,
                                  cache_modifier=".cg").to(tl.float64)
                    adj = tl.load(coef_ptr + dd * 5 + 1) * ld + tl.load(coef_ptr + dd * 5 + 2) * ldn
                    if DQ:  # the row read is c0_dd lambda_dd
                        sdd = tl.load(inv_c0_ptr + dd)
                        wd = wd * sdd
                        adj = adj * sdd
                    fp = dfrac_ptr + b.to(tl.int64) * n_links + tl.load(dn_link + f)
                    tl.store(fp, tl.load(fp) + tl.sum(adj * ov, axis=0))
                    dpw = dcoef_ptr + (b.to(tl.int64) * n_reach + dd) * 5
                    tl.atomic_add(dpw + 1, wd * tl.sum(ld * ov, axis=0), sem="relaxed")
                    tl.atomic_add(dpw + 2, wd * tl.sum(ld * op_in, axis=0), sem="relaxed")
                    f += 1
            else:
                if d >= 0:
                    drow = (b.to(tl.int64) * n_reach + d) * t_len
                    ld = tl.load(lam_ptr + drow + offs, mask=mask, other=0.0, cache_modifier=".cg").to(tl.float64)
                    tl.atomic_add(dpd + 1, sd * tl.sum(ld * ov, axis=0), sem="relaxed")
                    tl.atomic_add(dpd + 2, sd * tl.sum(ld * op_in, axis=0), sem="relaxed")
            # this reach's own coefficient gradients: Q[t-1], q[t], q[t-1] (t = 0 from the warm state)
            op = op_in
            qv = tl.load(q_ptr + row + offs, mask=mask, other=0.0).to(tl.float64)
            qp = tl.load(q_ptr + row + offs - 1, mask=prev, other=0.0).to(tl.float64)
            if HAS_PREV:
                if chunk == 0:
                    pp = prev_ptr + bi * 3
                    op = tl.where(offs == 0, tl.load(pp), op)
                    qp = tl.where(offs == 0, tl.load(pp + 2), qp)
                    # U[-1] from the state: this reach's own term of dL/db1
                    u0 = tl.sum(tl.where(offs == 0, lam, 0.0), axis=0) * tl.load(pp + 1)
                    tl.atomic_add(dcoef_ptr + bi * 5 + 2, u0, sem="relaxed")
            dr += tl.sum(lam * op, axis=0)
            dc0 += tl.sum(lam * qv, axis=0)
            dc1 += tl.sum(lam * qp, axis=0)
            lam_after = tl.sum(tl.where(offs == t0, lam, 0.0), axis=0)
            k += 1
        dp = dcoef_ptr + bi * 5  # slots 1 and 2 are the upstream reaches' (atomics)
        tl.store(dp, dr)
        tl.store(dp + 3, dc0)
        tl.store(dp + 4, dc1)
        ticket = nxt


@triton.jit
def lam_to_dq_kernel(lam_ptr, coef_ptr, n_reach, t_len, n_chunks, BT: tl.constexpr):
    # in place, one (batch, reach) row per program, chunks in time order: dL/dq[t] = c0 lambda[t] + c1 lambda[t+1]
    bi = tl.program_id(0).to(tl.int64)
    i = bi % n_reach
    c0 = tl.load(coef_ptr + i * 5 + 3)
    c1 = tl.load(coef_ptr + i * 5 + 4)
    row = lam_ptr + bi * t_len
    offs0 = tl.arange(0, BT)
    chunk = 0
    while chunk < n_chunks:
        offs = chunk * BT + offs0
        lv = tl.load(row + offs, mask=offs < t_len, other=0.0).to(tl.float64)
        ln = tl.load(row + offs + 1, mask=(offs + 1) < t_len, other=0.0).to(tl.float64)
        tl.debug_barrier()  # every lane has read lambda[t + 1] before any overwrites it
        tl.store(row + offs, (c0 * lv + c1 * ln).to(lam_ptr.dtype.element_ty), mask=offs < t_len)
        chunk += 1
