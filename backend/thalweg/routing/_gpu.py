"""GPU exact engine: the Triton recursion kernels of ``_triton/iir.py`` behind an autograd Function.

One launch for the forward pass and one for the backward, whatever the depth of the tree.
``available()`` says whether Triton can run here (a CUDA device, or ``TRITON_INTERPRET=1`` for tests
on CPU tensors).
"""
from __future__ import annotations

import dataclasses
import functools
import os
import weakref

import numpy as np
import torch

from .topology import Topology

__all__ = ["BT", "MAX_TAPS", "DagLinks", "available", "cascade_route", "compact_kernels", "dag_links", "fir_route",
           "fir_route_taps", "iir_route", "iir_route_dag"]

# Launch shapes, swept on an H200 at 1M reaches x 1000 steps (docs/routing-engines.md has the table). Forward
# items are latency-bound chains of memory round trips: many small programs (one warp, 256-step chunks) keep the
# most in flight, and registers bound how many are resident (69 per thread: 29 programs per SM; 6.3 ms, against
# 8.3 for 128-step chunks; with 128 registers, 16 resident, it took 9.0 ms). The backward: the same item shape.
FWD_BT, FWD_WARPS, FWD_PROGRAMS_PER_SM = 256, 1, 32
BWD_BT, BWD_WARPS, BWD_PROGRAMS_PER_SM = 256, 1, 32  # the recursions' backward: the same item shape
# the convolution kernels (_triton/fir.py): items (time chunk, reach), long chunks amortise the per-item latency
BT = 1024
NUM_WARPS = 4
PROGRAMS_PER_SM = 16
# long float32 kernels go as block-Toeplitz products on tensor cores (_triton/toeplitz.py): R x R tap blocks,
# chunks of BT steps as [R, BT / R] tiles; from TOEPLITZ_MIN_TAPS taps (shorter ones: fir.py's shifted rows)
TOEPLITZ_MIN_TAPS = 128
TOEPLITZ_R = 32
# float32 accuracy from float16 tensor cores: each operand scaled by a power of two and split in a high and a low
# part, three products, 11 + 11 bits as tf32x3's at twice its rate (H200, Hayami 100k x 1,000, kernel alone:
# 9.8 ms forward and 42.3 ms f+b against tf32x3's 14.2 and 54.0; max error 5.6e-6 against float64; bf16x3 is
# 4.0e-5 off). "tf32x3" and Triton's other input precisions are taken too.
TOEPLITZ_PRECISION = "fp16x3"
TOEPLITZ_UB = 32  # steps per product of the kernel gradient's Hankel x Toeplitz tiles (``_tap_gradient``)
TOEPLITZ_WARPS = 2  # H200, tf32x3: 14.2 ms forward, 52.8 ms f+b (4 warps: 16.9, 70.9); fp16x3: 9.8 (4 warps: 11.4)


@functools.lru_cache(maxsize=1)
def _triton_ok() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def available(device: torch.device) -> bool:
    """Triton kernels run on ``device``: CUDA with triton installed, or the interpreter on CPU."""
    if not _triton_ok():
        return False
    if device.type == "cuda":
        return True
    return device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1"


def _grid(items: int, device: torch.device, per_sm: int = PROGRAMS_PER_SM) -> int:
    if device.type != "cuda":
        return 1  # the interpreter runs programs one after the other: one program takes every ticket
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    return max(1, min(items, sms * per_sm))


def _sync_buffers(items: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The ticket design's counters for one launch: a finished-chunk count per (batch, reach) item and the ticket
    counter, int32 zeros."""
    return (torch.zeros(items, dtype=torch.int32, device=device), torch.zeros(1, dtype=torch.int32, device=device))


def _tap_width(k: int) -> int:
    """Columns of a compact kernel array for ``_triton/fir.py``: at least ``k``, a multiple of 4 (taps four at a
    time per loop trip, zero past each reach's count)."""
    return -(-max(k, 1) // 4) * 4


def _forward(q, c, st, order, child_ptr, child_idx, child_w=None, *, warm: bool) -> torch.Tensor:
    """The recursions' forward pass: Q [B, N, T] of the contiguous runoff ``q``; ``st`` [B, N, 3] float64 holds the
    warm state when ``warm`` and receives the final one. ``child_w``: the link fractions of a network whose rivers
    split (CSR order of ``child_idx``), else None."""
    from ._triton.iir import iir_forward_kernel

    b, n, t_len = q.shape
    dev = q.device
    out = torch.empty_like(q)
    flags, ticket = _sync_buffers(b * n, dev)
    iir_forward_kernel[(_grid(n * b, dev, FWD_PROGRAMS_PER_SM),)](
        q, out, c, st, order, child_ptr, child_idx, c if child_w is None else child_w, flags, ticket,
        n, b, t_len, -(-t_len // FWD_BT), WARM=warm, WEIGHTED=child_w is not None, BT=FWD_BT, num_warps=FWD_WARPS)
    return out


class _IIR(torch.autograd.Function):
    @staticmethod
    def forward(ctx, runoff, coef, topo: Topology, state):
        b, n, _ = runoff.shape
        dev = runoff.device
        q = runoff.detach().contiguous()
        c = coef.detach().to(torch.float64).contiguous()
        idx = topo.on(dev)
        st = (torch.zeros(b, n, 3, dtype=torch.float64, device=dev) if state is None
              else state.detach().to(device=dev, dtype=torch.float64).clone().contiguous())
        prev = st.clone() if state is not None else None
        out = _forward(q, c, st, idx["level_order"], idx["child_ptr"], idx["child_idx"], warm=state is not None)
        ctx.topo = topo
        ctx.has_prev = prev is not None
        ctx.save_for_backward(q, c, out, prev if prev is not None else torch.empty(0, device=dev))
        ctx.mark_non_differentiable(st)
        return out, st

    @staticmethod
    def backward(ctx, grad_out, _grad_state):
        q, c, out, prev = ctx.saved_tensors
        idx = ctx.topo.on(q.device)
        dq, dcoef, _ = _backward(q, c, out, prev if ctx.has_prev else None, grad_out, ctx.needs_input_grad[0],
                                 idx["level_order"], down=idx["downstream"])
        return dq, dcoef, None, None


# the backward stores dL/dq = c0 lambda in place of lambda when every c1 is 0 and every |c0| is at least this: the
# stored row divided by c0 as the upstream reaches read it keeps lambda's float32 precision (no underflow)
DQ_MIN_C0 = 2.0 ** -20


def _dq_as_stored(c: torch.Tensor) -> bool:
    """Every reach's dL/dq is c0 lambda (c1 = 0) with |c0| >= DQ_MIN_C0: the backward stores it for lambda."""
    return bool(((c[:, 4] == 0) & (c[:, 3].abs() >= DQ_MIN_C0)).all()) if len(c) else False


def _backward(q, c, out, prev, grad_out, want_dq: bool, order, *, down=None, links=None):
    """The recursions' reverse pass: (dL/dq or None, dL/dcoef [N, 5], dL/dfractions [M] or None). ``links``:
    (out_ptr, out_dst, out_w, out_link, n_links) for a network whose rivers split, else ``down``."""
    from ._triton.iir import iir_backward_kernel, lam_to_dq_kernel

    b, n, t_len = q.shape
    dev = q.device
    grad = grad_out if grad_out.dtype == q.dtype else grad_out.to(q.dtype)  # read by strides: no copy
    n_chunks = -(-t_len // BWD_BT)
    lam = torch.empty_like(q)  # lambda of every reach, then (in place) dL/dq; or dL/dq = c0 lambda at once
    fused = want_dq and _dq_as_stored(c)
    dcoef = torch.zeros(b, n, 5, dtype=torch.float64, device=dev)
    weighted = links is not None
    if weighted:
        dn_ptr, dn_idx, dn_w, dn_link, n_links = links
        dfrac = torch.zeros(b, n_links, dtype=torch.float64, device=dev)
    else:
        dn_ptr = dn_idx = dn_w = dn_link = dfrac = c
        n_links = 0
    flags, ticket = _sync_buffers(b * n, dev)
    iir_backward_kernel[(_grid(n * b, dev, BWD_PROGRAMS_PER_SM),)](
        q, out, grad, lam, dcoef, c, (1.0 / c[:, 3]).contiguous() if fused else c, c if prev is None else prev,
        order, c if down is None else down,
        dn_ptr, dn_idx, dn_w, dn_link, dfrac, n_links, flags, ticket, n, b, t_len, n_chunks,
        *grad.stride(), HAS_PREV=prev is not None, WEIGHTED=weighted, DQ=fused, BT=BWD_BT, num_warps=BWD_WARPS)
    dq = lam if fused else None
    if want_dq and not fused:
        lam_to_dq_kernel[(b * n,)](lam, c, n, t_len, n_chunks, BT=BWD_BT, num_warps=BWD_WARPS)
        dq = lam
    return dq, dcoef.sum(0), (dfrac.sum(0) if weighted else None)


def iir_route(runoff: torch.Tensor, coef: torch.Tensor, topo: Topology, state: torch.Tensor | None = None):
    """Q [B, N, T] and the final filter state [B, N, 3] (float64); see ``_cpu.iir_route``."""
    return _IIR.apply(runoff, coef, topo, state)


class _Cascade(torch.autograd.Function):
    @staticmethod
    def forward(ctx, runoff, a, nres, topo: Topology):
        from ._triton.cascade import cascade_forward_kernel

        b, n, t_len = runoff.shape
        dev = runoff.device
        q = runoff.detach().contiguous()
        a64 = a.detach().to(torch.float64).contiguous()
        nmax = int(nres.max()) if n else 1
        n_chunks = -(-t_len // FWD_BT)
        save = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        idx = topo.on(dev)
        out = torch.empty_like(q)
        st = torch.zeros(b * n * nmax, dtype=torch.float64, device=dev)
        ck = torch.empty(b * n * n_chunks * nmax if save else 1, dtype=torch.float64, device=dev)
        flags, ticket = _sync_buffers(b * n, dev)
        cascade_forward_kernel[(_grid(n * b, dev, FWD_PROGRAMS_PER_SM),)](
            q, out, a64, nres, st, ck, idx["level_order"], idx["child_ptr"], idx["child_idx"], flags, ticket,
            n, b, t_len, n_chunks, NMAX=nmax, SAVE=save, BT=FWD_BT, num_warps=FWD_WARPS)
        ctx.topo, ctx.nmax = topo, nmax
        ctx.save_for_backward(q, a64, nres, out, ck)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        from ._triton.cascade import cascade_backward_kernel

        q, a64, nres, out, ck = ctx.saved_tensors
        b, n, t_len = q.shape
        dev = q.device
        nmax = ctx.nmax
        idx = ctx.topo.on(dev)
        grad = grad_out if grad_out.dtype == q.dtype else grad_out.to(q.dtype)  # read by strides: no copy
        dq = torch.empty_like(q)  # every reach's dL/dq, which is its upstream reaches' adjoint inflow
        da = torch.empty(b, n, dtype=torch.float64, device=dev)
        grid = _grid(n * b, dev, BWD_PROGRAMS_PER_SM)
        scratch = torch.empty(grid * ((nmax + 1) * FWD_BT + nmax), dtype=torch.float64, device=dev)
        flags, ticket = _sync_buffers(b * n, dev)
        cascade_backward_kernel[(grid,)](
            q, out, grad, dq, da, a64, nres, ck, idx["level_order"], idx["downstream"], idx["child_ptr"],
            idx["child_idx"], flags, ticket, scratch, n, b, t_len, -(-t_len // FWD_BT), *grad.stride(),
            NMAX=nmax, BT=FWD_BT, num_warps=BWD_WARPS)
        return dq, da.sum(0), None, None


def cascade_route(runoff: torch.Tensor, a: torch.Tensor, nres, topo: Topology) -> torch.Tensor:
    """Q [B, N, T] through ``nres[i]`` equal linear reservoirs per reach, cold start, g = h (``_cpu.cascade_route``
    on GPU): a [N] the reservoirs' a = dt / (tau + dt), differentiable like the runoff; nres [N] whole numbers >= 1
    (int32 on the device, the kernels' stage counters' type)."""
    nres = torch.as_tensor(nres)
    # host values are checked before their copy; device ones come from irf.nash.whole_cascade, which keeps n >= 1
    # (checking them here would wait for the device on every call)
    if nres.device.type == "cpu" and nres.numel() and int(nres.min()) < 1:
        raise ValueError("cascade_route: every reach needs at least one reservoir (nres >= 1)")
    nres = nres.to(device=runoff.device, dtype=torch.int32).contiguous()
    return _Cascade.apply(runoff, a, nres, topo)


MAX_TAPS = 8192  # longest kernel support the direct GPU convolution takes; longer ones go by FFT


def compact_kernels(h: torch.Tensor, g: torch.Tensor | None, k0: torch.Tensor, kn: torch.Tensor,
                    dtype: torch.dtype = torch.float64):
    """Kernels cut to their support, [N, KMAX] of ``dtype``: tap j of a reach is its kernel's tap k0 + j
    (zero past kn; KMAX a multiple of 4); differentiable in h and g (a gather)."""
    kmax = _tap_width(int(kn.max()) if kn.numel() else 1)
    j = torch.arange(kmax, device=h.device)
    idx = (k0[:, None] + j[None, :]).clamp(max=h.shape[-1] - 1)
    valid = j[None, :] < kn[:, None]

    def cut(x):
        return torch.where(valid, x.to(torch.float64).gather(1, idx),
                           torch.zeros((), dtype=torch.float64, device=h.device)).to(dtype)
    return cut(h), (None if g is None else cut(g))


def _toeplitz(kmax: int, dtype: torch.dtype) -> bool:
    """The tensor-core kernels for this run: float32 and kernels of at least TOEPLITZ_MIN_TAPS taps."""
    return dtype == torch.float32 and kmax >= TOEPLITZ_MIN_TAPS


def _tap_rows(kmax: int) -> int:
    """Block rows of taps per tile of the tensor-core kernel gradient: a power of two, 16 to 32."""
    blocks = -(-kmax // TOEPLITZ_R)
    return min(32, max(16, 1 << (blocks - 1).bit_length()))


class _FIR(torch.autograd.Function):
    @staticmethod
    def forward(ctx, runoff, hc, gc, topo: Topology, k0, kn):
        b, n, t_len = runoff.shape
        dev = runoff.device
        q = runoff.detach().contiguous()
        same = gc is None
        # the taps in the run's precision, converted here, off the graph: their gradient goes back in the taps'
        # own dtype (float64 from the taps' builders) with no conversion pass either way
        ht = hc.detach().to(q.dtype).contiguous()
        gt = ht if same else gc.detach().to(q.dtype).contiguous()
        ctx.tap_dtypes = (hc.dtype, hc.dtype if same else gc.dtype)
        kmax = ht.shape[-1]
        idx = topo.on(dev)
        out = torch.empty_like(q)
        n_chunks = -(-t_len // BT)
        items = n_chunks * n * b
        grid = _grid(items, dev)
        flags, ticket = _sync_buffers(b * n, dev)
        args = (q, out, ht, gt, k0, kn, idx["level_order"], idx["child_ptr"], idx["child_idx"], flags, ticket)
        if _toeplitz(kmax, q.dtype):
            from ._triton.toeplitz import toeplitz_forward_kernel

            sw = BT + kmax + TOEPLITZ_R
            scratch = torch.empty(grid * 2 * sw, dtype=ht.dtype, device=dev)
            toeplitz_forward_kernel[(grid,)](*args, scratch, n, b, t_len, n_chunks, kmax, sw, SAME=same, BT=BT,
                                             R=TOEPLITZ_R, PREC=TOEPLITZ_PRECISION, num_warps=TOEPLITZ_WARPS)
        else:
            from ._triton.fir import fir_forward_kernel

            sw = BT + kmax
            scratch = torch.empty(grid * 2 * sw, dtype=ht.dtype, device=dev)  # the taps' compute type
            fir_forward_kernel[(grid,)](*args, scratch, n, b, t_len, n_chunks, kmax, sw, SAME=same, BT=BT,
                                        num_warps=NUM_WARPS)
        ctx.topo, ctx.same = topo, same
        ctx.save_for_backward(q, out, ht, gt, k0, kn)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, out, ht, gt, k0, kn = ctx.saved_tensors
        topo: Topology = ctx.topo
        b, n, t_len = q.shape
        dev = q.device
        same = ctx.same
        kmax = ht.shape[-1]
        idx = topo.on(dev)
        grad = grad_out.contiguous().to(q.dtype)
        adj = torch.empty_like(q)  # adjoint inflow of every reach; it is dL/dq too when g = h
        dq = adj if same else torch.empty_like(q)
        dh = torch.zeros(b, n, kmax, dtype=torch.float64, device=dev)
        dg = dh if same else torch.zeros(b, n, kmax, dtype=torch.float64, device=dev)
        n_chunks = -(-t_len // BT)
        items = n_chunks * n * b
        grid = _grid(items, dev)
        flags, ticket = _sync_buffers(b * n, dev)
        args = (q, out, grad, adj, dq, ht, gt, dh, dg, k0, kn, idx["level_order"], idx["downstream"],
                idx["child_ptr"], idx["child_idx"], flags, ticket)
        if _toeplitz(kmax, q.dtype):
            from ._triton.toeplitz import toeplitz_backward_kernel

            sw = BT + kmax + TOEPLITZ_R
            scratch = torch.empty(grid * 4 * sw, dtype=ht.dtype, device=dev)
            toeplitz_backward_kernel[(grid,)](*args, scratch, n, b, t_len, n_chunks, kmax, sw, SAME=same, BT=BT,
                                              R=TOEPLITZ_R, WB=_tap_rows(kmax), UB=TOEPLITZ_UB,
                                              PREC=TOEPLITZ_PRECISION, num_warps=TOEPLITZ_WARPS)
        else:
            from ._triton.fir import fir_backward_kernel

            sw = BT + kmax
            scratch = torch.empty(grid * 3 * sw, dtype=ht.dtype, device=dev)
            fir_backward_kernel[(grid,)](*args, scratch, n, b, t_len, n_chunks, kmax, sw, SAME=same, BT=BT,
                                         num_warps=NUM_WARPS)
        # over the batch (one element needs no sum), in the taps' dtypes: [N, KMAX]
        dh_t, dg_t = ctx.tap_dtypes
        dh_out = (dh[0] if b == 1 else dh.sum(0)).to(dh_t)
        dg_out = None if same else (dg[0] if b == 1 else dg.sum(0)).to(dg_t)
        return dq, dh_out, dg_out, None, None, None


def fir_route(runoff: torch.Tensor, h: torch.Tensor, g: torch.Tensor | None, topo: Topology,
              support: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Q [B, N, T] by direct convolution with each reach's kernels over their support, in one launch.

    h, g : [N, L] kernels (g None when g = h), differentiable. support : (k0, k1) int64 [N] on the
    device (``_cpu.kernel_support``'s rule). Cold start only (warm histories go by FFT).
    """
    k0, k1 = support
    kn = (k1 - k0).clamp(min=1)
    hc, gc = compact_kernels(h, g, k0, kn)  # float64; _FIR takes them to the run's precision
    return _FIR.apply(runoff, hc, gc, topo, k0.contiguous(), kn.contiguous())


def fir_route_taps(runoff: torch.Tensor, first, taps: torch.Tensor, topo: Topology, counts=None) -> torch.Tensor:
    """Q [B, N, T] by direct convolution with compact kernels, cold start, g = h: reach i's kernel is ``taps[i, j]``
    at tap ``first[i] + j`` for ``j < counts[i]`` (default: every column) and zero elsewhere (``irf.base.Compact``;
    a pure lag's two taps). taps [N, K] is differentiable; no [N, T] kernel is built or scanned."""
    n, k = taps.shape
    kmax = _tap_width(k)
    hc = taps if k == kmax else torch.nn.functional.pad(taps, (0, kmax - k))  # _FIR takes them to the run's dtype
    k0 = torch.as_tensor(first, dtype=torch.int64).to(runoff.device).contiguous()
    if counts is None:
        kn = torch.full((n,), k, dtype=torch.int64, device=runoff.device)
    else:
        kn = torch.as_tensor(counts, dtype=torch.int64).to(runoff.device).clamp(min=1).contiguous()
    return _FIR.apply(runoff, hc.contiguous(), None, topo, k0, kn)


# ---------------------------------------------------------------------------------------------------------------
# Networks whose rivers split (a DAG): the same kernels with weighted links, in one launch each way.

@dataclasses.dataclass(frozen=True, eq=False)
class DagLinks:
    """Index arrays of a DAG for the weighted kernels (``network.dag.edges``'s links, M of them).

    level_order : reaches by topological level over all links. in_ptr, in_src, in_link : the links into each
    reach (CSR: sources, link numbers). out_ptr, out_dst, out_link : the links out of each reach.
    """

    n: int
    n_links: int
    n_tree_links: int
    level_order: np.ndarray
    in_ptr: np.ndarray
    in_src: np.ndarray
    in_link: np.ndarray
    out_ptr: np.ndarray
    out_dst: np.ndarray
    out_link: np.ndarray
    cache: dict = dataclasses.field(default_factory=dict, repr=False)

    def on(self, device: torch.device) -> dict[str, torch.Tensor]:
        key = str(device)
        if key not in self.cache:
            names = ("level_order", "in_ptr", "in_src", "in_link", "out_ptr", "out_dst", "out_link")
            self.cache[key] = {k: torch.as_tensor(getattr(self, k), device=device) for k in names}
        return self.cache[key]


_DAGS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def dag_links(network) -> DagLinks:
    """The cached :class:`DagLinks` of a network with splits."""
    got = _DAGS.get(network)
    if got is not None:
        return got
    from ..network.dag import dag_levels, edges

    n = network.n_reaches
    src, dst, _ = edges(network)  # tree links first, then the split reaches' links (network.splits.to order)
    levels, stuck = dag_levels(n, src, dst)
    if stuck.size:
        raise ValueError(f"the links of {stuck.size} reaches form a cycle")
    link = np.arange(src.size, dtype=np.int64)
    by_dst = np.lexsort((src, dst))
    by_src = np.lexsort((dst, src))
    n_split = 0 if network.splits is None else int(network.splits.n_links)
    got = DagLinks(n=n, n_links=int(src.size), n_tree_links=int(src.size) - n_split,
                   level_order=np.argsort(levels, kind="stable").astype(np.int64),
                   in_ptr=np.r_[0, np.cumsum(np.bincount(dst, minlength=n))].astype(np.int64),
                   in_src=src[by_dst].astype(np.int64), in_link=link[by_dst],
                   out_ptr=np.r_[0, np.cumsum(np.bincount(src, minlength=n))].astype(np.int64),
                   out_dst=dst[by_src].astype(np.int64), out_link=link[by_src])
    _DAGS[network] = got
    return got


class _IIRDag(torch.autograd.Function):
    @staticmethod
    def forward(ctx, runoff, coef, link_frac, links: DagLinks):
        b, n, _ = runoff.shape
        dev = runoff.device
        q = runoff.detach().contiguous()
        c = coef.detach().to(torch.float64).contiguous()
        f = link_frac.detach().to(device=dev, dtype=torch.float64)
        idx = links.on(dev)
        st = torch.zeros(b, n, 3, dtype=torch.float64, device=dev)
        out = _forward(q, c, st, idx["level_order"], idx["in_ptr"], idx["in_src"],
                       f.index_select(0, idx["in_link"]).contiguous(), warm=False)
        ctx.links = links
        ctx.frac_dtype = link_frac.dtype
        ctx.save_for_backward(q, c, out, f)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, c, out, f = ctx.saved_tensors
        idx = ctx.links.on(q.device)
        w_out = f.index_select(0, idx["out_link"]).contiguous()
        dq, dcoef, dfrac = _backward(q, c, out, None, grad_out, ctx.needs_input_grad[0], idx["level_order"],
                                     links=(idx["out_ptr"], idx["out_dst"], w_out, idx["out_link"], ctx.links.n_links))
        return dq, dcoef, (dfrac.to(ctx.frac_dtype) if ctx.needs_input_grad[2] else None), None


def iir_route_dag(runoff: torch.Tensor, coef: torch.Tensor, network, fractions: torch.Tensor) -> torch.Tensor:
    """Q [B, N, T] of a network whose rivers split, by the recursion over all its links in one launch.

    coef : [N, 5] recursion coefficients; fractions : [E] the split reaches' link fractions
    (``network.splits.to`` order; ``dag.check_fractions``), differentiable like runoff and coef. Cold start only.
    """
    links = dag_links(network)
    ones = torch.ones(links.n_tree_links, dtype=fractions.dtype, device=fractions.device)
    return _IIRDag.apply(runoff, coef, torch.cat([ones, fractions]), links)
