"""CPU exact engine: the compiled recursions and short convolutions of ``_native``, with custom backward.

Work items are (batch element, basin): basins are contiguous post-order segments, so items touch
disjoint reaches and run in threads (ctypes releases the GIL) when torch allows several threads.
The backward pass is routing on the reversed tree in reversed time (see ``routing.c``).

The recursions also route a network whose rivers split in one pass (``SplitLinks``, built by
``routing.dag.native_plan``): the topology is then the main tree in an order where every minor link's
source comes before its receiver, and its ``basin_ptr`` holds the groups of basins joined by minor links,
so work items never split a link; the fractions are an input with a gradient.
"""
from __future__ import annotations

import ctypes
import dataclasses
import mmap
import os
import sys
import threading
from concurrent import futures

import numpy as np
import torch

from ..irf.base import SUPPORT_TOL, support_tol, taps_support
from . import _native
from .topology import Topology

__all__ = ["SplitLinks", "available", "fir_route", "iir_route", "kernel_support", "kernel_support_on"]

STACK_BYTES = 2 << 20  # the depth-indexed inflow stack of one pass over the tree stays in L2/L3


def _chunk(t_len: int, seg_depth: int) -> int:
    """Time steps per pass over the tree: long passes amortise per-reach work, the stack must stay cached."""
    fit = STACK_BYTES // (8 * max(seg_depth, 1))
    return int(max(64, min(t_len, 2048, fit)))


def empty(shape, dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised CPU tensor; large ones on transparent huge pages where Linux offers them.

    First-touch page faults of a fresh 4 KiB-page buffer cost as much as the routing itself here
    (146 MB: ~60 ms against ~5 ms on huge pages).
    """
    nbytes = int(np.prod(shape)) * torch.empty(0, dtype=dtype).element_size()
    if nbytes < (16 << 20) or not sys.platform.startswith("linux") or not hasattr(mmap, "MADV_HUGEPAGE"):
        return torch.empty(shape, dtype=dtype)
    buf = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    buf.madvise(mmap.MADV_HUGEPAGE)
    return torch.frombuffer(buf, dtype=dtype).view(shape)


def available() -> bool:
    return _native.load() is not None


def _suffix(dtype: torch.dtype) -> str:
    if dtype == torch.float32:
        return "f32"
    if dtype == torch.float64:
        return "f64"
    raise TypeError(f"the CPU engine routes float32 or float64, not {dtype}")


ITEMS_PER_THREAD = 4  # work items per thread: enough to balance, few enough that Python costs nothing


def _segments(topo: Topology, parts: int) -> list[tuple[int, int]]:
    """Consecutive basins packed into post-order segments [a, b) of at most n / ``parts`` reaches (or one basin).

    A run of whole basins is itself a valid post-order segment (every reach's upstream lies in it), so the
    compiled passes route it in one call: one call per segment instead of one per basin (a 100k-reach
    lattice has 755 basins; their Python calls cost more than the routing of the small ones).
    """
    bp = np.asarray(topo.basin_ptr, dtype=np.int64)
    n = int(bp[-1]) if bp.size else 0
    target = max(1, -(-n // max(1, parts)))
    out, start = [], int(bp[0]) if bp.size else 0
    for begin, end in zip(bp[:-1].tolist(), bp[1:].tolist()):
        # a segment ends before the basin that would take it past the target (not after it: the segment holding
        # the biggest basin and its neighbours was 21 % of the 100k lattice, two threads' shares 47 / 53 %)
        if begin > start and end - start > target:
            out.append((start, begin))
            start = begin
    if bp.size and start < n:
        out.append((start, n))
    return out


def _items(topo: Topology, batch: int) -> list[tuple[int, int, int, int]]:
    """(batch, first post-order position, count, largest depth + 1 in the segment) per work item."""
    threads = max(1, torch.get_num_threads())
    parts = 1 if threads == 1 else -(-threads * ITEMS_PER_THREAD // max(1, batch))
    out = []
    for a, b in _segments(topo, parts):
        seg_depth = int(topo.depth[topo.order[a:b]].max(initial=0)) + 1
        for k in range(batch):
            out.append((k, a, b - a, seg_depth))
    # biggest first: threads finish together
    out.sort(key=lambda it: -it[2])
    return out


_POOLS: dict[int, futures.ThreadPoolExecutor] = {}  # by thread count
_POOL_LOCK = threading.Lock()


def _pool(threads: int) -> futures.ThreadPoolExecutor:
    """One pool per thread count for the process (starting threads per call cost ~0.1 ms each, a few % of a
    100k x 366 recursion); a pool is never shut down under a caller that may still submit to it, and a forked
    child starts without the parent's (its threads are not there)."""
    with _POOL_LOCK:
        pool = _POOLS.get(threads)
        if pool is None:
            pool = _POOLS[threads] = futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="thalweg-cpu")
        return pool


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_POOLS.clear)


def _run(items, fn) -> None:
    threads = max(1, torch.get_num_threads())
    if threads == 1 or len(items) == 1:
        for it in items:
            fn(it)
        return
    pool = _pool(threads)
    for f in [pool.submit(fn, it) for it in items]:
        f.result()


def _check(rc: int, what: str) -> None:
    if rc != 0:
        raise RuntimeError(f"native {what} returned {rc}")


@dataclasses.dataclass(frozen=True, eq=False)
class SplitLinks:
    """The links of split reaches for the compiled recursions (``split_links`` in routing.c), int64 arrays.

    link_ptr : [N + 1] CSR over reaches of the E links out of each split reach (``network.splits`` order).
    link_row : [E] where each link's water goes: >= 0 a side row, < 0 the stack row -row - 1 (an ancestor's).
    side_of : [N] the side row each reach reads its minor inflow from, -1 for none.
    in_ptr, in_src, in_link : [N + 1], [E], [E] CSR over receivers: source reach and link of each link.
    n_side : number of side rows.
    """

    link_ptr: np.ndarray
    link_row: np.ndarray
    side_of: np.ndarray
    in_ptr: np.ndarray
    in_src: np.ndarray
    in_link: np.ndarray
    n_side: int

    def native(self, frac: np.ndarray, in_frac: np.ndarray, side, wbuf=None, dfrac=None) -> ctypes.Structure:
        p = _native.ptr
        return _native.SplitLinks(p(self.link_ptr), p(self.link_row), p(frac), p(self.side_of), p(self.in_ptr),
                                  p(self.in_src), p(in_frac), p(side), p(wbuf), p(dfrac))


def _split_arg(links: SplitLinks | None, frac64: np.ndarray | None, in_frac: np.ndarray | None, chunk: int,
               backward: bool = False, dfrac: np.ndarray | None = None):
    """(the ``split_links`` argument of one work item or None for a tree, the buffers it points to)."""
    if links is None:
        return None, None
    side = np.zeros(max(links.n_side, 1) * chunk)
    wbuf = np.empty(chunk) if backward else None
    struct = links.native(frac64, in_frac, side, wbuf, dfrac)
    return ctypes.addressof(struct), (struct, side, wbuf)


class _IIR(torch.autograd.Function):
    @staticmethod
    def forward(ctx, runoff, coef, topo: Topology, state, links: SplitLinks | None = None, fractions=None):
        lib = _native.load()
        b, n, t_len = runoff.shape
        q = runoff.detach().contiguous()
        coef64 = coef.detach().to(torch.float64).contiguous()
        out = empty(q.shape, q.dtype)
        st = (torch.zeros(b, n, 3, dtype=torch.float64) if state is None
              else state.detach().to(torch.float64).clone().contiguous())
        prev = st.clone() if state is not None else None
        fn = getattr(lib, f"iir_forward_{'' if links is None else 'split_'}{_suffix(q.dtype)}")
        p = _native.ptr
        order, depth, down = topo.order, topo.depth, topo.downstream
        nt = n * t_len
        frac64 = in_frac = None
        if links is not None:
            frac64 = np.array(fractions.detach().cpu().numpy(), dtype=np.float64)  # a copy: the backward's too
            in_frac = np.ascontiguousarray(frac64[links.in_link])
        n_side = 0 if links is None else links.n_side

        def work(item):
            k, start, count, seg_depth = item
            chunk = _chunk(t_len, seg_depth + n_side)
            stack = np.zeros(seg_depth * chunk)
            xbuf = np.empty(chunk)
            sl, _keep = _split_arg(links, frac64, in_frac, chunk)
            _check(fn(count, t_len, chunk, order.ctypes.data + 8 * start, p(depth), p(down), p(coef64),
                      q.data_ptr() + k * nt * q.element_size(), out.data_ptr() + k * nt * out.element_size(),
                      st.data_ptr() + k * n * 3 * 8, p(stack), p(xbuf), sl), "iir_forward")

        _run(_items(topo, b), work)
        ctx.topo, ctx.links, ctx.split = topo, links, (frac64, in_frac)
        ctx.save_for_backward(q, coef64, out, prev if prev is not None else torch.empty(0))
        ctx.has_prev = prev is not None
        ctx.mark_non_differentiable(st)
        return out, st

    @staticmethod
    def backward(ctx, grad_out, _grad_state):
        q, coef64, out, prev = ctx.saved_tensors
        topo: Topology = ctx.topo
        lib = _native.load()
        b, n, t_len = q.shape
        grad = grad_out.contiguous().to(q.dtype)
        dq = empty(q.shape, q.dtype)
        dcoef = torch.zeros(b, n, 5, dtype=torch.float64)
        links: SplitLinks | None = ctx.links
        fn = getattr(lib, f"iir_backward_{'' if links is None else 'split_'}{_suffix(q.dtype)}")
        p = _native.ptr
        nt, es = n * t_len, q.element_size()
        frac64, in_frac = ctx.split
        n_side = 0 if links is None else links.n_side
        dfrac = None if links is None else np.zeros((b, frac64.size))

        def work(item):
            k, start, count, seg_depth = item
            chunk = _chunk(t_len, seg_depth + n_side)
            stack = np.zeros(seg_depth * chunk)
            lam = np.zeros(n)
            abuf = np.empty(chunk + 1)
            ubuf = np.empty(chunk + 1)
            prev_ptr = prev.data_ptr() + k * n * 3 * 8 if ctx.has_prev else None
            sl, _keep = _split_arg(links, frac64, in_frac, chunk, backward=True,
                                   dfrac=None if dfrac is None else dfrac[k])
            _check(fn(count, t_len, chunk, topo.order.ctypes.data + 8 * start, p(topo.depth), p(topo.downstream),
                      p(topo.child_ptr), p(topo.child_idx), p(coef64), q.data_ptr() + k * nt * es,
                      out.data_ptr() + k * nt * es, grad.data_ptr() + k * nt * es, prev_ptr,
                      dq.data_ptr() + k * nt * es, dcoef.data_ptr() + k * n * 5 * 8, p(lam), p(stack), p(abuf),
                      p(ubuf), sl), "iir_backward")

        _run(_items(topo, b), work)
        dfr = None if dfrac is None else torch.from_numpy(dfrac.sum(0))
        return dq, dcoef.sum(0), None, None, None, dfr


def iir_route(runoff: torch.Tensor, coef: torch.Tensor, topo: Topology, state: torch.Tensor | None = None,
              links: SplitLinks | None = None, fractions: torch.Tensor | None = None):
    """Q [B, N, T] and the final filter state [B, N, 3] (Q, U, q at the last step, float64).

    runoff : [B, N, T] float32 or float64 on CPU. coef : [N, 5] (r, b0, b1, c0, c1), differentiable.
    state : optional [B, N, 3], the state after the previous chunk (warm start).
    links, fractions : a network whose rivers split: its ``SplitLinks`` (with ``topo`` the matching order,
    ``routing.dag.native_plan``) and the split fractions [E] (``network.splits`` order), differentiable.
    """
    if links is None:
        return _IIR.apply(runoff, coef, topo, state)
    return _IIR.apply(runoff, coef, topo, state, links, fractions)


__all__ += ["SUPPORT_TOL", "cascade_route", "support_tol"]  # the convolution schemes' paths (below)

# the support rule and its tolerances by storage type live in irf/base.py (one place); here the compiled statement


def kernel_support(h: torch.Tensor, g: torch.Tensor | None, tol: float = 1e-13) -> tuple[np.ndarray, np.ndarray]:
    """Per-reach [k0, k1): the support rule (``irf.base``: the taps holding all but ``tol`` of each kernel's
    absolute mass at either end, both kernels together when ``g`` is given), compiled (torch without it)."""
    hh = h.detach().to(device="cpu", dtype=torch.float64).contiguous()
    gg = None if g is None else g.detach().to(device="cpu", dtype=torch.float64).contiguous()
    n, klen = hh.shape
    k0 = np.empty(n, dtype=np.int64)
    k1 = np.empty(n, dtype=np.int64)
    lib = _native.load()
    if lib is not None:
        _check(lib.kernel_support(n, klen, hh.data_ptr(), None if gg is None else gg.data_ptr(), float(tol),
                                  k0.ctypes.data, k1.ctypes.data), "kernel_support")
        return k0, k1
    t0, t1 = taps_support(hh, gg, tol)
    k0[:] = t0.numpy()
    k1[:] = t1.numpy()
    return k0, k1


def kernel_support_on(h: torch.Tensor, g: torch.Tensor | None, tol: float = 1e-13) -> tuple[torch.Tensor, torch.Tensor]:
    """``kernel_support`` as int64 tensors on the kernels' device (computed there: no copy of [N, L])."""
    if h.device.type == "cpu":
        k0, k1 = kernel_support(h, g, tol)
        return torch.from_numpy(k0), torch.from_numpy(k1)
    return taps_support(h, g, tol)


class _FIR(torch.autograd.Function):
    @staticmethod
    def forward(ctx, runoff, h, g, topo: Topology, support, history, offset):
        lib = _native.load()
        b, n, t_len = runoff.shape
        q = runoff.detach().contiguous()
        same = g is None
        h64 = h.detach().to(torch.float64).contiguous()
        g64 = h64 if same else g.detach().to(torch.float64).contiguous()
        klen = h64.shape[-1]
        k0, k1 = support
        out = empty(q.shape, q.dtype)
        fn = getattr(lib, f"fir_forward_{_suffix(q.dtype)}")
        p = _native.ptr
        if history is not None:
            hu = history[0].detach().to(torch.float64).clone().contiguous()
            hq = history[1].detach().to(torch.float64).clone().contiguous()
            hlen = hu.shape[-1]
        else:
            hu = hq = None
            hlen = 0
        nt, es = n * t_len, q.element_size()

        def work(item):
            k, start, count, seg_depth = item
            stack = np.zeros(seg_depth * t_len)
            hu_p = None if hu is None else hu.data_ptr() + k * n * hlen * 8
            hq_p = None if hq is None else hq.data_ptr() + k * n * hlen * 8
            _check(fn(count, t_len, klen, hlen, topo.order.ctypes.data + 8 * start, p(topo.depth), p(topo.downstream),
                      p(h64), p(g64), int(same), p(k0), p(k1), p(offset), q.data_ptr() + k * nt * es,
                      out.data_ptr() + k * nt * es, hu_p, hq_p, p(stack)), "fir_forward")

        _run(_items(topo, b), work)
        ctx.topo, ctx.same, ctx.support, ctx.warm, ctx.offset = topo, same, support, history is not None, offset
        ctx.save_for_backward(q, h64, g64, out)
        new_hist = (hu, hq) if history is not None else (torch.empty(0), torch.empty(0))
        ctx.mark_non_differentiable(*new_hist)
        return (out, *new_hist)

    @staticmethod
    def backward(ctx, grad_out, _g1, _g2):
        if ctx.warm:
            raise NotImplementedError("gradients through a warm-started convolution run are not supported; "
                                      "route the whole period in one call to train")
        q, h64, g64, out = ctx.saved_tensors
        topo: Topology = ctx.topo
        lib = _native.load()
        b, n, t_len = q.shape
        klen = h64.shape[-1]
        grad = grad_out.contiguous().to(q.dtype)
        dq = empty(q.shape, q.dtype)
        dh = torch.zeros(b, n, klen, dtype=torch.float64)
        dg = dh if ctx.same else torch.zeros(b, n, klen, dtype=torch.float64)
        fn = getattr(lib, f"fir_backward_{_suffix(q.dtype)}")
        p = _native.ptr
        k0, k1 = ctx.support
        nt, es = n * t_len, q.element_size()

        def work(item):
            k, start, count, seg_depth = item
            stack = np.zeros(seg_depth * t_len)
            _check(fn(count, t_len, klen, topo.order.ctypes.data + 8 * start, p(topo.depth), p(topo.downstream),
                      p(topo.child_ptr), p(topo.child_idx), p(h64), p(g64), int(ctx.same), p(k0), p(k1),
                      p(ctx.offset), q.data_ptr() + k * nt * es, out.data_ptr() + k * nt * es,
                      grad.data_ptr() + k * nt * es, dq.data_ptr() + k * nt * es, dh.data_ptr() + k * n * klen * 8,
                      dg.data_ptr() + k * n * klen * 8, p(stack)), "fir_backward")

        _run(_items(topo, b), work)
        dh_total = dh.sum(0)
        return dq, dh_total, (None if ctx.same else dg.sum(0)), None, None, None, None


def fir_route(runoff: torch.Tensor, h: torch.Tensor, g: torch.Tensor | None, topo: Topology,
              history: tuple[torch.Tensor, torch.Tensor] | None = None, support=None, offset: np.ndarray | None = None):
    """Q [B, N, T] by direct convolution with each reach's kernels over their support.

    h, g : [N, L] kernels (g None when g = h), differentiable. history : optional (U, q) inputs of the
    last H steps [B, N, H] (warm start); returns (Q, U_hist, q_hist), the histories empty when cold.
    offset : optional [N] int64, the tap index of each row's first column (column c is tap offset + c:
    short rows for kernels far from tap 0); ``support`` is then required, in tap indices, within
    [offset, offset + L).
    """
    if offset is not None:
        if support is None:
            raise ValueError("fir_route: a kernel offset needs the support in tap indices")
        offset = np.ascontiguousarray(offset, dtype=np.int64)
    if support is None:
        support = kernel_support(h, g)
    return _FIR.apply(runoff, h, g, topo, support, history, offset)


class _Cascade(torch.autograd.Function):
    @staticmethod
    def forward(ctx, runoff, a, nres: np.ndarray, topo: Topology):
        lib = _native.load()
        b, n, t_len = runoff.shape
        q = runoff.detach().contiguous()
        a64 = a.detach().to(torch.float64).contiguous()
        out = empty(q.shape, q.dtype)
        fn = getattr(lib, f"cascade_forward_{_suffix(q.dtype)}")
        p = _native.ptr
        nt, es = n * t_len, q.element_size()

        def work(item):
            k, start, count, seg_depth = item
            stack = np.zeros(seg_depth * t_len)
            xbuf = np.empty(t_len)
            _check(fn(count, t_len, topo.order.ctypes.data + 8 * start, p(topo.depth), p(topo.downstream), p(a64),
                      p(nres), q.data_ptr() + k * nt * es, out.data_ptr() + k * nt * es, p(stack), p(xbuf)),
                   "cascade_forward")

        _run(_items(topo, b), work)
        ctx.topo, ctx.nres = topo, nres
        ctx.save_for_backward(q, a64, out)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, a64, out = ctx.saved_tensors
        topo: Topology = ctx.topo
        lib = _native.load()
        b, n, t_len = q.shape
        grad = grad_out.contiguous().to(q.dtype)
        dq = empty(q.shape, q.dtype)
        da = torch.zeros(b, n, dtype=torch.float64)
        fn = getattr(lib, f"cascade_backward_{_suffix(q.dtype)}")
        p = _native.ptr
        nt, es = n * t_len, q.element_size()
        stages = int(ctx.nres.max(initial=1)) + 1

        def work(item):
            k, start, count, seg_depth = item
            stack = np.zeros(seg_depth * t_len)
            xs, lam = np.empty(stages * t_len), np.empty(t_len)
            _check(fn(count, t_len, topo.order.ctypes.data + 8 * start, p(topo.depth), p(topo.downstream),
                      p(topo.child_ptr), p(topo.child_idx), p(a64), p(ctx.nres), q.data_ptr() + k * nt * es,
                      out.data_ptr() + k * nt * es, grad.data_ptr() + k * nt * es, dq.data_ptr() + k * nt * es,
                      da.data_ptr() + k * n * 8, p(stack), p(xs), p(lam)), "cascade_backward")

        _run(_items(topo, b), work)
        return dq, da.sum(0), None, None


def cascade_route(runoff: torch.Tensor, a: torch.Tensor, nres: np.ndarray, topo: Topology) -> torch.Tensor:
    """Q [B, N, T] through ``nres[i]`` equal linear reservoirs per reach (cold start; g = h).

    a : [N] the reservoirs' a = dt / (tau + dt), differentiable. nres : [N] int64, >= 1.
    The kernel is the Nash cascade's for a whole number of reservoirs (``irf.nash``), exactly.
    """
    nres = np.ascontiguousarray(nres, dtype=np.int64)
    return _Cascade.apply(runoff, a, nres, topo)
