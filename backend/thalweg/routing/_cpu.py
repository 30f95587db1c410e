"""CPU exact engine: the compiled recursions and short convolutions of ``_native``, with custom backward.

Work items are (batch element, run of whole basins): such runs are post-order segments, so items touch
disjoint reaches and run in any order. One compiled call routes all items of a pass, in ``torch.get_num_threads()``
threads started in C (``*_items`` in ``routing.c``): no Python runs while they route.
The backward pass is routing on the reversed tree in reversed time (see ``routing.c``).

The recursions also route a network whose rivers split in one pass (``SplitLinks``, built by
``routing.dag.native_plan``): the topology is then the main tree in an order where every minor link's
source comes before its receiver, and its ``basin_ptr`` holds the groups of basins joined by minor links,
so work items never split a link; the fractions are an input with a gradient.
"""
from __future__ import annotations

import collections
import ctypes
import dataclasses
import mmap
import os
import sys
import threading
import weakref
from concurrent import futures

import numpy as np
import torch

from ..config import physical_memory
from ..irf.base import SUPPORT_TOL, support_tol, taps_support
from . import _native
from .topology import Topology

__all__ = ["SplitLinks", "available", "fir_route", "iir_route", "kernel_support", "kernel_support_on"]

STACK_BYTES = 2 << 20  # the depth-indexed inflow stack of one pass over the tree stays in L2/L3


def _chunk(t_len: int, seg_depth: int) -> int:
    """Time steps per pass over the tree: long passes amortise per-reach work, the stack must stay cached."""
    fit = STACK_BYTES // (8 * max(seg_depth, 1))
    return int(max(64, min(t_len, 2048, fit)))


# Freed huge-page buffers kept for the next buffer of the same size, at most this many bytes in all: a fresh
# buffer's first-touch zeroing (146 MB of output: about 19 ms) is a quarter of a routing call here, and
# calibration, training and streaming ask for the same sizes call after call. 0 keeps none.
POOL_BYTES = int(min(1 << 30, (physical_memory() or 16 << 30) // 16))  # 1 GiB, or RAM / 16 where that is less
_freed: list[tuple[int, mmap.mmap]] = []  # (bytes, buffer), oldest first; changed only under _freed_lock
_returned: collections.deque = collections.deque()  # given back by finalizers, not yet in _freed
_freed_lock = threading.Lock()


def _settle() -> None:
    """Move the returned buffers into the pool and let the oldest go past ``POOL_BYTES`` (under ``_freed_lock``;
    a finalizer that runs meanwhile, from a collection this starts, only appends to ``_returned``)."""
    while _returned:
        _freed.append(_returned.popleft())
    held = sum(size for size, _ in _freed)
    while _freed and held > POOL_BYTES:
        held -= _freed.pop(0)[0]  # unmapped when the last export of it is gone (closing it could raise)


def _take(nbytes: int) -> mmap.mmap:
    """A pooled buffer of exactly ``nbytes``, or a fresh one on transparent huge pages."""
    with _freed_lock:
        _settle()
        for j, (size, buf) in enumerate(_freed):
            if size == nbytes:
                del _freed[j]
                return buf
    buf = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    buf.madvise(mmap.MADV_HUGEPAGE)
    return buf


def _give(nbytes: int, buf: mmap.mmap) -> None:
    """``buf`` back to the pool once no tensor uses it (a finalizer: it may run inside any allocation, in any
    thread, even one holding ``_freed_lock``, so it never waits for the lock: a deque append, then the pool
    settled only if the lock is free; whoever holds it settles before letting go)."""
    if nbytes <= POOL_BYTES:
        _returned.append((nbytes, buf))
    if _freed_lock.acquire(blocking=False):
        try:
            _settle()
        finally:
            _freed_lock.release()


def _forget_pool() -> None:
    """In a forked child: a lock another thread of the parent held stays held there, and the parent's pooled
    pages would be copied on the child's first write to them."""
    global _freed_lock
    _freed_lock = threading.Lock()
    _freed.clear()
    _returned.clear()


_NUMPY = {torch.float32: np.dtype(np.float32), torch.float64: np.dtype(np.float64), torch.int64: np.dtype(np.int64),
          torch.int32: np.dtype(np.int32)}  # the pooled dtypes (the tensor's storage holds a numpy array)


def empty(shape, dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised CPU tensor; large ones on transparent huge pages where Linux offers them, reused
    from the buffers of freed tensors of the same size (``POOL_BYTES``).

    First-touch page faults of a fresh 4 KiB-page buffer cost as much as the routing itself here
    (146 MB: ~60 ms against ~5 ms on huge pages, plus ~19 ms of zeroing that a reused buffer saves).
    """
    nbytes = int(np.prod(shape)) * torch.empty(0, dtype=dtype).element_size()
    if nbytes < (16 << 20) or not sys.platform.startswith("linux") or not hasattr(mmap, "MADV_HUGEPAGE") \
            or dtype not in _NUMPY:
        return torch.empty(shape, dtype=dtype)
    np_dtype = _NUMPY[dtype]
    buf = _take(nbytes)
    # the tensor's storage holds ``array`` until the last view of it is freed; then ``buf`` goes back to the pool
    array = np.frombuffer(buf, dtype=np_dtype)
    weakref.finalize(array, _give, nbytes, buf).atexit = False
    return torch.from_numpy(array).view(shape)


def available() -> bool:
    return _native.load() is not None


def _suffix(dtype: torch.dtype) -> str:
    if dtype == torch.float32:
        return "f32"
    if dtype == torch.float64:
        return "f64"
    raise TypeError(f"the CPU engine routes float32 or float64, not {dtype}")


ITEMS_PER_THREAD = 4  # work items per thread: enough to balance (items are taken in turn, biggest first)
MIN_THREAD_WORK = 1 << 16  # reach-steps per thread below which more threads cost more than they give


def _segments(topo: Topology, parts: int) -> list[tuple[int, int]]:
    """Consecutive basins packed into post-order segments [a, b) of at most n / ``parts`` reaches (or one basin).

    A run of whole basins is itself a valid post-order segment (every reach's upstream lies in it), so the
    compiled passes route it in one piece: a 100k-reach lattice has 755 basins.
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


def _threads(work: int) -> int:
    return max(1, min(torch.get_num_threads(), work // MIN_THREAD_WORK))


_ITEMS: weakref.WeakKeyDictionary[Topology, dict] = weakref.WeakKeyDictionary()  # per topology, by arguments


def _items(topo: Topology, batch: int, t_len: int | None = None, n_side: int = 0, threads: int | None = None,
           whole: bool = False) -> np.ndarray:
    """The work items, int64 [n_items, 5]: (batch element, first post-order position, reaches, largest depth + 1,
    time steps per pass), biggest first (threads take them in turn and finish together). The steps per pass are
    the recursions' chunk (``_chunk``) of ``t_len``, or ``t_len`` itself with ``whole`` (the convolutions).
    Cached per topology (1.4 ms a call at 100k reaches and 2 threads, 2 % of the routing)."""
    threads = max(1, torch.get_num_threads()) if threads is None else threads
    key = (batch, t_len, n_side, threads, whole, STACK_BYTES, ITEMS_PER_THREAD)
    cache = _ITEMS.setdefault(topo, {})
    if key in cache:
        return cache[key]
    parts = 1 if threads == 1 else -(-threads * ITEMS_PER_THREAD // max(1, batch))
    rows = []
    for a, b in _segments(topo, parts):
        seg_depth = int(topo.depth[topo.order[a:b]].max(initial=0)) + 1
        chunk = 0 if t_len is None else t_len if whole else _chunk(t_len, seg_depth + n_side)
        rows.extend((k, a, b - a, seg_depth, chunk) for k in range(batch))
    items = np.array(rows, dtype=np.int64).reshape(-1, 5)
    items = np.ascontiguousarray(items[np.argsort(-items[:, 2], kind="stable")])
    items.flags.writeable = False
    cache[key] = items
    return items


_POOLS: dict[int, futures.ThreadPoolExecutor] = {}  # by thread count
_POOL_LOCK = threading.Lock()


def _pool(threads: int) -> futures.ThreadPoolExecutor:
    """One Python thread pool per thread count for the process, for callers that split work in Python (Hayami's
    compiled taps); the routing passes start their threads in C. A forked child starts without the parent's."""
    with _POOL_LOCK:
        pool = _POOLS.get(threads)
        if pool is None:
            pool = _POOLS[threads] = futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="thalweg-cpu")
        return pool


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_POOLS.clear)
    os.register_at_fork(after_in_child=_forget_pool)


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

    def native(self, frac: np.ndarray, in_frac: np.ndarray) -> ctypes.Structure:
        """The ``split_links`` struct; its side rows, work row and dL/df are set per thread and batch element in C."""
        p = _native.ptr
        return _native.SplitLinks(p(self.link_ptr), p(self.link_row), p(frac), p(self.side_of), p(self.in_ptr),
                                  p(self.in_src), p(in_frac), None, None, None)


def _dense(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``t`` as a C-contiguous CPU tensor of ``dtype``, copied (into ``empty``: huge pages) only when it is not one:
    the gradient of ``Q.sum()`` is one value expanded to [B, N, T], whose ``contiguous()`` on 4 KiB pages took 64 ms
    at 100k x 366, as long as the backward pass itself."""
    if t.is_contiguous() and t.dtype == dtype:
        return t
    return empty(t.shape, dtype).copy_(t)


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
        p = _native.ptr
        frac64 = in_frac = sl = None
        n_side = 0 if links is None else links.n_side
        if links is not None:
            frac64 = np.array(fractions.detach().cpu().numpy(), dtype=np.float64)  # a copy: the backward's too
            in_frac = np.ascontiguousarray(frac64[links.in_link])
            sl = links.native(frac64, in_frac)
        threads = _threads(b * n * t_len)
        items = _items(topo, b, t_len, n_side, threads)
        fn = getattr(lib, f"iir_forward_items_{_suffix(q.dtype)}")
        _check(fn(len(items), p(items), threads, n, t_len, p(topo.order), p(topo.depth), p(topo.downstream),
                  p(coef64), p(q), p(out), p(st), None if sl is None else ctypes.addressof(sl), n_side),
               "iir_forward")
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
        grad = _dense(grad_out, q.dtype)
        dq = empty(q.shape, q.dtype)
        dcoef = torch.zeros(b, n, 5, dtype=torch.float64)
        links: SplitLinks | None = ctx.links
        p = _native.ptr
        frac64, in_frac = ctx.split
        n_side = 0 if links is None else links.n_side
        dfrac = sl = None
        if links is not None:
            dfrac = np.zeros((b, frac64.size))
            sl = links.native(frac64, in_frac)
        threads = _threads(b * n * t_len)
        items = _items(topo, b, t_len, n_side, threads)
        fn = getattr(lib, f"iir_backward_items_{_suffix(q.dtype)}")
        _check(fn(len(items), p(items), threads, n, t_len, p(topo.order), p(topo.depth), p(topo.downstream),
                  p(topo.child_ptr), p(topo.child_idx), p(coef64), p(q), p(out), p(grad),
                  p(prev) if ctx.has_prev else None, p(dq), p(dcoef), None if sl is None else ctypes.addressof(sl),
                  n_side, 0 if frac64 is None else frac64.size, p(dfrac)), "iir_backward")
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
        p = _native.ptr
        if history is not None:
            # the inputs before the call, kept for the backward (their kernel gradient terms); the copies receive
            # the next call's
            h0 = tuple(x.detach().to(torch.float64).contiguous() for x in history)
            hu, hq = (x.clone() for x in h0)
            hlen = hu.shape[-1]
        else:
            hu = hq = None
            h0 = (torch.empty(0, dtype=torch.float64),) * 2
            hlen = 0
        threads = _threads(b * n * t_len)
        items = _items(topo, b, t_len, threads=threads, whole=True)
        fn = getattr(lib, f"fir_forward_items_{_suffix(q.dtype)}")
        _check(fn(len(items), p(items), threads, n, t_len, klen, hlen, p(topo.order), p(topo.depth),
                  p(topo.downstream), p(h64), p(g64), int(same), p(k0), p(k1), p(offset), p(q), p(out), p(hu), p(hq)),
               "fir_forward")
        ctx.topo, ctx.same, ctx.support, ctx.warm, ctx.offset = topo, same, support, history is not None, offset
        ctx.save_for_backward(q, h64, g64, out, *h0)
        new_hist = (hu, hq) if history is not None else (torch.empty(0), torch.empty(0))
        ctx.mark_non_differentiable(*new_hist)
        return (out, *new_hist)

    @staticmethod
    def backward(ctx, grad_out, _g1, _g2):
        q, h64, g64, out, hu0, hq0 = ctx.saved_tensors
        topo: Topology = ctx.topo
        lib = _native.load()
        b, n, t_len = q.shape
        klen = h64.shape[-1]
        grad = _dense(grad_out, q.dtype)
        dq = empty(q.shape, q.dtype)
        # the kernel gradients [B, N, K] float64 (92 MB at 100k reaches x 115 taps): pooled, zeroed in place (a
        # fresh torch.zeros faulted in 4 KiB pages, then summed over the batch into another such array)
        dh = empty((b, n, klen), torch.float64).zero_()
        dg = dh if ctx.same else empty((b, n, klen), torch.float64).zero_()
        p = _native.ptr
        k0, k1 = ctx.support
        threads = _threads(b * n * t_len)
        items = _items(topo, b, t_len, threads=threads, whole=True)
        hist = (hu0.shape[-1], p(hu0), p(hq0)) if ctx.warm else (0, None, None)  # the inputs the forward met
        fn = getattr(lib, f"fir_backward_items_{_suffix(q.dtype)}")
        _check(fn(len(items), p(items), threads, n, t_len, klen, p(topo.order), p(topo.depth), p(topo.downstream),
                  p(topo.child_ptr), p(topo.child_idx), p(h64), p(g64), int(ctx.same), p(k0), p(k1), p(ctx.offset),
                  p(q), p(out), p(grad), p(dq), p(dh), p(dg), *hist), "fir_backward")
        if b == 1:  # over the batch: one element needs no sum
            return dq, dh[0], (None if ctx.same else dg[0]), None, None, None, None
        return dq, dh.sum(0), (None if ctx.same else dg.sum(0)), None, None, None, None


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
        p = _native.ptr
        threads = _threads(b * n * t_len)
        items = _items(topo, b, t_len, threads=threads, whole=True)
        fn = getattr(lib, f"cascade_forward_items_{_suffix(q.dtype)}")
        _check(fn(len(items), p(items), threads, n, t_len, p(topo.order), p(topo.depth), p(topo.downstream), p(a64),
                  p(nres), p(q), p(out)), "cascade_forward")
        ctx.topo, ctx.nres = topo, nres
        ctx.save_for_backward(q, a64, out)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, a64, out = ctx.saved_tensors
        topo: Topology = ctx.topo
        lib = _native.load()
        b, n, t_len = q.shape
        grad = _dense(grad_out, q.dtype)
        dq = empty(q.shape, q.dtype)
        da = torch.zeros(b, n, dtype=torch.float64)
        p = _native.ptr
        stages = int(ctx.nres.max(initial=1)) + 1
        threads = _threads(b * n * t_len)
        items = _items(topo, b, t_len, threads=threads, whole=True)
        fn = getattr(lib, f"cascade_backward_items_{_suffix(q.dtype)}")
        _check(fn(len(items), p(items), threads, n, t_len, p(topo.order), p(topo.depth), p(topo.downstream),
                  p(topo.child_ptr), p(topo.child_idx), p(a64), p(ctx.nres), stages, p(q), p(out), p(grad), p(dq),
                  p(da)), "cascade_backward")
        return dq, da.sum(0), None, None


def cascade_route(runoff: torch.Tensor, a: torch.Tensor, nres, topo: Topology) -> torch.Tensor:
    """Q [B, N, T] through ``nres[i]`` equal linear reservoirs per reach (cold start; g = h).

    a : [N] the reservoirs' a = dt / (tau + dt), differentiable. nres : [N] whole numbers >= 1 (an array or a
    CPU tensor). The kernel is the Nash cascade's for a whole number of reservoirs (``irf.nash``), exactly.
    """
    nres = np.ascontiguousarray(torch.as_tensor(nres).numpy(), dtype=np.int64)
    return _Cascade.apply(runoff, a, nres, topo)
