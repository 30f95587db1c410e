"""The block-sparse transitive-closure engine: DiffRoute's method (papers 000, 002), done exactly.

    Q_j = sum over i upstream of j (j included) of K_ij * q_i,   K_ij = g_i * h_d(i) * ... * h_j

1. Clusters and stages (``closure_plan.py``): a cluster holds reaches whose path kernels all fit in
   L_c steps (a Chernoff bound on the cut tail, not a guess), staged so that a cluster's outlet
   discharge enters the next stage as a virtual source. Staged results equal unsplit ones.
2. Path kernels, per stage, in subtree post-order blocks: K_(i,j) = K_(i,c) * h_j for the child c of j
   on the path, computed level by level in the Fourier domain with zero padding to 2 L_c (a linear,
   not circular, convolution) and cut to the first L_c taps, which a causal convolution's first L_c
   taps depend on alone. No relu, no renormalisation: the kernels are the exact path kernels.
   Built in float64, without autograd (item 4 differentiates in every kernel parameter).
3. Block-sparse causal convolution of each stage's inputs (runoff; upstream stages' discharge for
   virtual sources): Triton on GPU in true float32 (``precision='ieee'``; 'tf32x3' and 'tf32' on
   request; long blocks by FFT when GPU_FFT_MIN_TAPS is set); in torch (CPU, float64 runs) per target
   block, by direct convolution over the block's kernel support when it is short and by FFT over the
   path kernels that exist when it is long (``_uses_fft``: support >= FFT_MIN_TAPS).
4. Backward (``_Closure``, a custom autograd function; nothing of the forward's per-block work is kept):
   with A_j the adjoint of reach j's outflow (dL/dQ_j plus what flows back from downstream),
   A_i = sum over j downstream of i (i included) of H_ij (*) dL/dQ_j, H_ij = h_d(i) * ... * h_j the path
   kernels with a delta at the source: the same block-sparse convolution with transposed blocks on
   reversed time (a correlation), stage by stage from the last, a virtual source's A added to its cut
   reach's dL/dQ. Then per reach, by FFT: dL/dq_i = g_i (*) A_i, dL/dg_i[k] = sum_t A_i[t] q_i[t - k],
   dL/dh_j[k] = sum_t A_j[t] U_j[t - k] (U_j the inflow). The path kernels H are rebuilt per stage, so
   the backward holds one stage's blocks at a time, as the forward does.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import weakref

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from .closure_plan import THETAS, ClosurePlan, Stage, build_plan, plan_clusters
from .topology import Topology
from .fft import fft_size

__all__ = ["closure_plan_for", "path_kernels", "route_closure"]

log = logging.getLogger(__name__)

_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
PRECISIONS = ("ieee", "tf32x3", "tf32")


def _support(kern: torch.Tensor, tol: float) -> int:
    """Largest per-reach support (taps holding all but ``tol`` of the absolute mass)."""
    a = kern.detach().abs().to(torch.float64)
    tail = torch.flip(torch.cumsum(torch.flip(a, [-1]), -1), [-1]) / a.sum(-1, keepdim=True).clamp(min=1e-300)
    return int((tail > tol).sum(-1).max())


def _log_mgf(kern: torch.Tensor, length: int) -> np.ndarray:
    """log M(theta) [N, n_theta] of |kern| at theta = THETAS / L_c, on the kernels' device.

    One matrix product |kern| @ exp(theta k) when exp(theta k) stays far from float64's range (a sum of
    positive terms: accurate to rounding), else logsumexp per theta (8x the time)."""
    with torch.no_grad():
        a = kern.detach().abs().to(torch.float64)
        k = torch.arange(a.shape[-1], dtype=torch.float64, device=a.device)
        thetas = torch.as_tensor(THETAS, dtype=torch.float64, device=a.device) / length
        if float(thetas.max()) * max(a.shape[-1] - 1, 0) < 600.0:
            return torch.log(a @ torch.exp(k[:, None] * thetas[None, :])).cpu().numpy()
        logk = torch.log(a)  # -inf at zero taps, which logsumexp handles
        cols = [torch.logsumexp(logk + float(th) * k, dim=-1) for th in thetas]
        return torch.stack(cols, -1).cpu().numpy()


def closure_plan_for(network, topo, h: torch.Tensor, g: torch.Tensor, *, length: int, block: int,
                     tol: float = 1e-9, max_pairs: int = 1 << 21) -> ClosurePlan:
    """The plan for these kernels (cached per network and cut pattern)."""
    lh = _log_mgf(h, length)
    lg = lh if g is h else _log_mgf(g, length)
    root = plan_clusters(topo, lh, lg, length, tol=tol, max_pairs=max_pairs)
    key = (length, block, hashlib.sha1(root.tobytes()).hexdigest())
    cache = _PLANS.setdefault(network, {})
    if key not in cache:
        cache.clear()  # one plan per network at a time: plans can be large
        cache[key] = build_plan(topo, root, length, block)
    return cache[key]


def path_kernels(stage: Stage, h: torch.Tensor, g: torch.Tensor | None, length: int, block: int) -> torch.Tensor:
    """Block storage [n_bp, block (source), block (target), L_c] of one stage's path kernels (float64).

    g : the runoff kernels [N, >= L_c]; None puts a delta at every source (the kernels H of the backward).
    Built in place, level by level: each level writes rows no earlier level wrote."""
    dev = h.device
    rows = stage.n_bp * block * block
    w = torch.zeros(rows, length, dtype=torch.float64, device=dev)
    diag = stage.on("diag_rows", dev)
    delta = torch.zeros(stage.n, length, dtype=torch.float64, device=dev)
    delta[:, 0] = 1.0
    if g is None:
        w.index_copy_(0, diag, delta)
    else:
        own = g.index_select(0, stage.on("reach", dev))[:, :length].to(torch.float64)
        w.index_copy_(0, diag, torch.where(stage.on("is_virtual", dev)[:, None], delta, own))
    del delta
    nfft = fft_size(2 * length - 1)
    h_hat = torch.fft.rfft(h[:, :length].to(torch.float64), n=nfft)
    for lv in range(len(stage.level_edges)):
        src_t, dst_t = stage.on("src", dev, lv), stage.on("dst", dev, lv)
        spec = torch.fft.rfft(w.index_select(0, src_t), n=nfft) * h_hat.index_select(0, stage.on("kern", dev, lv))
        w.index_copy_(0, dst_t, torch.fft.irfft(spec, n=nfft)[:, :length])
    return w.view(stage.n_bp, block, block, length)


# Per target block: direct convolution over the block's support K, or FFT. Measured on the 2-core VM (float64,
# block 16, T = 2,000; docs/routing-engines.md): direct costs ~K, FFT ~log(T + L); they cross near 24 taps.
FFT_MIN_TAPS = 24
SUPPORT_TOL = 1e-15  # a kernel's taps past the block support hold at most this share of its absolute mass
_FFT_CHUNK_BYTES = 1 << 26  # block spectra per FFT product (complex128)


def _uses_fft(support):
    """The per-block rule: FFT when the block's kernel support is at least FFT_MIN_TAPS taps."""
    return support >= FFT_MIN_TAPS


def _row_supports(rows: torch.Tensor, cap: int) -> torch.Tensor:
    """Per kernel [r, L] -> [r]: the taps [0, K) holding all but SUPPORT_TOL of its absolute mass when K <= cap,
    else L (``cap`` + 1 or more: a long kernel, whose exact support no rule needs). Zero kernels: 1."""
    a = rows.abs().to(torch.float64)
    length = a.shape[-1]
    cap = min(cap, length)
    mass = a.sum(-1, keepdim=True)
    rest = a[:, cap:].sum(-1, keepdim=True)
    tail = torch.flip(torch.cumsum(torch.flip(a[:, :cap], [-1]), -1), [-1]) + rest
    k = torch.arange(1, cap + 1, device=a.device)
    sup = ((tail > SUPPORT_TOL * mass) * k).amax(-1).clamp(min=1)
    return torch.where(rest[:, 0] > SUPPORT_TOL * mass[:, 0], torch.full_like(sup, length), sup)


def _target_supports(stage: Stage, w: torch.Tensor, block: int, cap: int) -> np.ndarray:
    """Per target block, the largest ``_row_supports`` of its path kernels (the rows that exist), in slices."""
    rows, _, tgt = _written_rows(stage, block)
    flat = w.reshape(-1, w.shape[-1])
    dev = w.device
    out = torch.ones(stage.bp_ptr.size - 1, dtype=torch.int64, device=dev)
    step = max(1, (1 << 26) // (flat.shape[-1] * 8))
    for c0 in range(0, rows.size, step):
        r = torch.as_tensor(rows[c0:c0 + step], device=dev)
        t = torch.as_tensor(tgt[c0:c0 + step] // block, device=dev)
        out.scatter_reduce_(0, t, _row_supports(flat.index_select(0, r), cap), "amax")
    return out.cpu().numpy()


def _written_rows(stage: Stage, block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows of the [n_bp * block * block, L] block storage that hold a path kernel (the rest are zero:
    source not upstream of target), sorted, with their source and target elements."""
    key = ("written", block)
    if key not in stage.cache:
        rows = np.sort(np.concatenate([stage.diag_rows] + [e[1] for e in stage.level_edges]))
        n_blocks = stage.bp_ptr.size - 1
        tgt_block = np.repeat(np.arange(n_blocks, dtype=np.int64), np.diff(stage.bp_ptr))
        bp = rows // (block * block)
        src = stage.bp_src[bp] * block + (rows // block) % block
        tgt = tgt_block[bp] * block + rows % block
        stage.cache[key] = (rows, src, tgt)
    return stage.cache[key]


def _apply_torch(stage: Stage, w: torch.Tensor, x: torch.Tensor, block: int, *, adjoint: bool = False) -> torch.Tensor:
    """Block-sparse causal convolution in torch (float64), by target block: a direct convolution over the
    block's kernel support when it is short, else an FFT product of the block's path kernels (``_uses_fft``;
    only the kernels that exist: a block's sources are not all upstream of all its targets).

    x : [B, n_pad, T] stage inputs; returns [B, n_pad, T]. ``adjoint``: the transposed operator (x is then
    dL/dy and the result dL/dx): the same blocks, transposed, applied on reversed time (a correlation)."""
    b, n_pad, t_len = x.shape
    out_dtype = x.dtype
    dev = x.device
    # float64 throughout: a float32 convolution summing (sources x taps) terms per output drifts by ~1e-5
    x = x.to(torch.float64)
    w = w.to(torch.float64)
    res = torch.zeros(b, n_pad, t_len, dtype=torch.float64, device=dev)
    n_blocks = stage.bp_ptr.size - 1
    support = _target_supports(stage, w, block, FFT_MIN_TAPS)
    fft_blocks = _uses_fft(support)
    k_fft = int(support[fft_blocks].max()) if fft_blocks.any() else 1
    for jb in range(n_blocks):
        a, z = int(stage.bp_ptr[jb]), int(stage.bp_ptr[jb + 1])
        hi = (jb + 1) * block
        if z == a:  # no sources (plans always hold the diagonal block; kept for direct callers)
            continue
        if fft_blocks[jb]:
            continue
        lo = int(stage.bp_src[a]) * block
        wj = w[a:z]  # [nb, src, tgt, L]; sources lo..hi are contiguous
        k_sup = int(support[jb])
        weight = wj[..., :k_sup].permute(2, 0, 1, 3).reshape(block, (z - a) * block, k_sup).flip(-1)
        if adjoint:  # dL/dx over [lo, hi) from dL/dy of block jb: conv1d's transpose
            res[:, lo:hi] += F.conv_transpose1d(x[:, jb * block:hi], weight)[..., k_sup - 1:]
        else:
            res[:, jb * block:hi] = F.conv1d(F.pad(x[:, lo:hi], (k_sup - 1, 0)), weight)
    if fft_blocks.any():
        res += _fft_rows(stage, w, x, block, fft_blocks, k_fft, adjoint=adjoint)
    return res.to(out_dtype)


def _fft_rows(stage: Stage, w: torch.Tensor, x: torch.Tensor, block: int, fft_blocks: np.ndarray, k_fft: int, *,
              adjoint: bool = False) -> torch.Tensor:
    """The target blocks marked in ``fft_blocks`` by FFT (float64), over the path kernels that exist: y_j +=
    K_ij * x_i per kernel (``adjoint``: x_i += K_ij (*) y_j). Returns [B, n_pad, T] (zero elsewhere)."""
    b, n_pad, t_len = x.shape
    dev = x.device
    length = w.shape[-1]
    rows, src, tgt = _written_rows(stage, block)
    pick = fft_blocks[tgt // block]
    rows, src, tgt = (torch.as_tensor(a[pick], device=dev) for a in (rows, src, tgt))
    if adjoint:
        src, tgt = tgt, src  # dX[i] += conj(W_ij) dY[j]
    nfft = fft_size(t_len + k_fft - 1)
    nf = nfft // 2 + 1
    x_hat = torch.fft.rfft(x.to(torch.float64), n=nfft)
    y_hat = torch.zeros(b, n_pad, nf, dtype=x_hat.dtype, device=dev)
    flat = w.reshape(-1, length)
    step = max(1, _FFT_CHUNK_BYTES // (nf * 16 * max(1, b)))
    for c0 in range(0, rows.numel(), step):
        w_hat = torch.fft.rfft(flat.index_select(0, rows[c0:c0 + step])[:, :k_fft].to(torch.float64), n=nfft)
        if adjoint:
            w_hat = w_hat.conj()
        y_hat.index_add_(1, tgt[c0:c0 + step], w_hat[None] * x_hat.index_select(1, src[c0:c0 + step]))
    del x_hat
    return torch.fft.irfft(y_hat, n=nfft)[..., :t_len]


# GPU: target blocks whose kernel support reaches this many taps go by FFT (torch, float64) instead of the
# Triton direct convolution; None (the default): Triton for every block. Not measured on a GPU yet
# (scripts/bench_routing.py --closure-gpu-fft-taps sets it for a run).
GPU_FFT_MIN_TAPS: int | None = None


def _apply_triton(stage: Stage, w: torch.Tensor, x: torch.Tensor, block: int, precision: str, *,
                  adjoint: bool = False) -> torch.Tensor:
    from ._triton.closure import block_conv, block_conv_adjoint

    fft_blocks = None
    if GPU_FFT_MIN_TAPS is not None:
        sup = _target_supports(stage, w, block, GPU_FFT_MIN_TAPS)
        fft_blocks = sup >= GPU_FFT_MIN_TAPS
        if not fft_blocks.any():
            fft_blocks = None
    w32 = w.to(torch.float32)  # (no copy when the caller converted already)
    if adjoint:
        y = block_conv_adjoint(x, w32, *_transposed(stage, x.device, fft_blocks), block=block, precision=precision)
    else:
        end = None if fft_blocks is None else np.where(fft_blocks, stage.bp_ptr[:-1], stage.bp_ptr[1:])
        y = block_conv(x, w32, stage.on("bp_ptr", x.device), stage.on("bp_src", x.device), block=block,
                       precision=precision, bp_end=end)
    del w32
    if fft_blocks is not None:
        y += _fft_rows(stage, w, x, block, fft_blocks, int(sup[fft_blocks].max()), adjoint=adjoint).to(y.dtype)
    return y


def _transposed(stage: Stage, device, skip: np.ndarray | None = None):
    """The block pairs source-block-major: (ptr [n_blocks + 1], pair index, target block), for the adjoint;
    pairs of the target blocks in ``skip`` left out."""
    key = ("transposed", str(device))
    if key not in stage.cache or skip is not None:
        n_blocks = stage.bp_ptr.size - 1
        tgt = np.repeat(np.arange(n_blocks, dtype=np.int64), np.diff(stage.bp_ptr))
        keep = np.ones(tgt.size, dtype=bool) if skip is None else ~skip[tgt]
        pairs = np.flatnonzero(keep)
        order = pairs[np.argsort(stage.bp_src[pairs], kind="stable")]
        ptr = np.r_[0, np.cumsum(np.bincount(stage.bp_src[pairs], minlength=n_blocks))].astype(np.int64)
        value = tuple(torch.as_tensor(a, device=device) for a in (ptr, order.astype(np.int64), tgt[order]))
        if skip is not None:
            return value
        stage.cache[key] = value
    return stage.cache[key]


@dataclasses.dataclass(frozen=True)
class _Run:
    """What one closure run needs besides its tensors."""

    plan: ClosurePlan
    topo: Topology
    length: int
    block: int
    precision: str
    h_len: int  # warm-start history steps leading every series
    triton: bool  # the GPU float32 path


def _stage_inputs(stage: Stage, x_all: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    dev = x_all.device
    reach = stage.on("reach", dev)
    virtual = stage.on("is_virtual", dev)
    x = torch.where(virtual[None, :, None], out.index_select(1, reach), x_all.index_select(1, reach))
    return F.pad(x, (0, 0, 0, stage.n_pad - stage.n))


def _kernels_for(run: _Run, w: torch.Tensor) -> torch.Tensor:
    """The block storage as the convolution reads it: float32 for an all-Triton GPU run (the float64 storage is
    then freed by the caller), else as built."""
    return w.to(torch.float32) if run.triton and GPU_FFT_MIN_TAPS is None else w


def _convolve(run: _Run, stage: Stage, w: torch.Tensor, x: torch.Tensor, *, adjoint: bool = False) -> torch.Tensor:
    if run.triton:
        return _apply_triton(stage, w, x, run.block, run.precision, adjoint=adjoint)
    return _apply_torch(stage, w, x, run.block, adjoint=adjoint)


def _forward(run: _Run, x_all: torch.Tensor, h: torch.Tensor, g: torch.Tensor | None,
             out: torch.Tensor) -> torch.Tensor:
    """Route stage by stage into ``out`` [B, N, total] (its first h_len steps hold the history)."""
    dev, h_len = x_all.device, run.h_len
    for stage in run.plan.stages:
        x = _stage_inputs(stage, x_all, out)
        w = _kernels_for(run, path_kernels(stage, h, h if g is None else g, run.length, run.block))
        y = _convolve(run, stage, w, x)
        del w, x
        tgt = stage.on("targets", dev)
        t_reach = stage.on("reach", dev).index_select(0, tgt)
        out[..., h_len:].index_copy_(1, t_reach, y.index_select(1, tgt)[..., h_len:])
    return out


def _reach_correlations(a: torch.Tensor, kern: torch.Tensor | None, series: list, length: int, total: int):
    """Per reach, by FFT in float64: (kern (*) a, the series' correlation with a, and for each of ``series``
    sum over batch and t of a[t] s[t - k], k < length). a, series: [B, n, total]; kern: [n, length] or None."""
    nfft = fft_size(total + length - 1)
    a_hat = torch.fft.rfft(a.to(torch.float64), n=nfft)
    back = None
    if kern is not None:
        back = torch.fft.irfft(a_hat * torch.fft.rfft(kern.to(torch.float64), n=nfft).conj(), n=nfft)[..., :total]
    grads = [None if s is None else
             torch.fft.irfft(a_hat * torch.fft.rfft(s.to(torch.float64), n=nfft).conj(), n=nfft)[..., :length].sum(0)
             for s in series]
    return back, grads


class _Closure(torch.autograd.Function):
    """Q [B, N, total] from x_all [B, N, total], h, g ([N, L_c]; g None when it is h) and the warm start's
    outflow history hist_q [B, N, h_len] (or None); the backward of the module docstring (item 4)."""

    @staticmethod
    def forward(ctx, x_all, h, g, hist_q, run):
        out = torch.zeros_like(x_all)
        if hist_q is not None:
            out[..., :run.h_len] = hist_q
        with torch.no_grad():
            out = _forward(run, x_all, h, g, out)
        ctx.run = run
        ctx.save_for_backward(x_all, h, g, out)
        return out

    @staticmethod
    def backward(ctx, d_out):
        run = ctx.run
        x_all, h, g, out = ctx.saved_tensors
        need_x, need_h, need_g = ctx.needs_input_grad[:3]
        dev, h_len, length = x_all.device, run.h_len, run.length
        b, n, total = out.shape
        work = torch.float32 if run.triton else torch.float64
        # the adjoint of every reach's outflow: dL/dQ, plus what later stages hand back through virtual sources
        gq = d_out.to(work).clone()
        gq[..., :h_len] = 0.0  # the history steps are the state's, not this run's
        inflow = None
        if need_h:
            from .engines import _upstream_sum

            inflow = _upstream_sum(run.topo, out)
        dx = torch.zeros_like(x_all) if need_x else None
        dh = torch.zeros_like(h, dtype=torch.float64) if need_h else None
        dg = dh if g is None else (torch.zeros_like(g, dtype=torch.float64) if need_g else None)
        g_eff = h if g is None else g
        for stage in reversed(run.plan.stages):
            reach = stage.on("reach", dev)
            tgt = stage.on("targets", dev)
            t_reach = reach.index_select(0, tgt)
            dy = torch.zeros(b, stage.n_pad, total, dtype=work, device=dev)
            dy.index_copy_(1, tgt, gq.index_select(1, t_reach))
            with torch.no_grad():
                w = _kernels_for(run, path_kernels(stage, h, None, length, run.block))
                adj = _convolve(run, stage, w, dy, adjoint=True)[:, :stage.n]  # [B, n, total]
            del w, dy
            virt = torch.nonzero(stage.on("is_virtual", dev)).flatten()
            if virt.numel():  # a virtual source's adjoint is its cut reach's (an earlier stage's) outflow's
                gq[..., h_len:].index_add_(1, reach.index_select(0, virt), adj.index_select(1, virt)[..., h_len:])
            a_t = adj.index_select(1, tgt)
            del adj
            # a warm start's history outflow is the state's, a constant (as for the other engines): no adjoint
            # there, so no kernel gradient from it (A at t >= h_len is unchanged: its paths never pass t < h_len)
            a_t[..., :h_len] = 0.0
            # per reach, in slices that keep the spectra near 256 MiB
            nfft = fft_size(total + length - 1)
            step = max(1, (1 << 28) // max(1, b * (nfft // 2 + 1) * 16 * 3))
            for c0 in range(0, t_reach.numel(), step):
                rc = t_reach[c0:c0 + step]
                ac = a_t[:, c0:c0 + step]
                series = [x_all.index_select(1, rc) if (need_g or (need_h and g is None)) else None,
                          inflow.index_select(1, rc) if need_h else None]
                back, (d_g, d_h) = _reach_correlations(ac, g_eff.index_select(0, rc) if need_x else None, series,
                                                       length, total)
                if need_x:
                    dx.index_copy_(1, rc, back.to(dx.dtype))
                if d_g is not None:
                    dg.index_add_(0, rc, d_g)
                if d_h is not None:
                    dh.index_add_(0, rc, d_h)
        if dx is not None and h_len:
            dx[..., :h_len] = 0.0
        grad_h = dh.to(h.dtype) if need_h else None
        grad_g = dg.to(g.dtype) if (g is not None and need_g) else None
        return dx, grad_h, grad_g, None, None


def route_closure(job, *, kernel_length: int | None, history=None) -> torch.Tensor:
    """Route ``job`` (see ``engines.Job``) with the closure engine; returns Q [B, N, T].

    history : optional (U, q, Q) histories [B, N, H] of the steps before the first (warm start); then
        L_c is the kernel length H + 1, which the histories cover.
    """
    opts = dict(job.options)
    block = int(opts.pop("block_size", 16))
    precision = opts.pop("precision", "ieee")
    length_opt = opts.pop("cluster_length", None)
    tol = float(opts.pop("tol", 1e-9))
    max_pairs = int(opts.pop("max_pairs", 1 << 21))
    if opts:  # route() refuses these first (engines.OPTIONS); this guards direct calls
        from .engines import OPTIONS

        raise InputError(f"the closure engine takes no option(s) {', '.join(sorted(opts))}.",
                         hint=f"Its options are {', '.join(OPTIONS['closure'])}.")
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision '{precision}'.", hint=f"Choose one of: {', '.join(PRECISIONS)}.")
    if block not in (16, 32, 64):
        raise InputError(f"block_size must be 16, 32 or 64 (got {block}).")
    runoff = job.runoff
    b, n, t_len = runoff.shape
    dev, dtype = runoff.device, runoff.dtype
    h_len = 0 if history is None else history[0].shape[-1]
    total = h_len + t_len
    kern = job.kernels(max(total, kernel_length or 0), kernel_length)
    h, g = kern.h, kern.g
    if kernel_length is None:
        h, g = h[:, :total], (h[:, :total] if g is kern.h else g[:, :total])
    single = max(_support(h, tol), 1 if g is h else _support(g, tol))
    if length_opt:
        length = int(length_opt)
    elif kernel_length is not None:  # a fixed kernel length is the cluster length (chunks == one pass)
        length = int(kernel_length)
    else:
        length = min(total, max(32, 16 * math.ceil(2 * single / 16)))
    length = max(1, min(length, total))
    if history is not None:
        length = h_len + 1
    if h.shape[-1] < length:  # paths outgrow single kernels: pad the kernels with zeros
        pad = length - h.shape[-1]
        h, g = F.pad(h, (0, pad)), (F.pad(h, (0, pad)) if g is h else F.pad(g, (0, pad)))
    if single > length and length < total:  # (taps past the horizon never matter)
        raise InputError(f"cluster_length {length} is shorter than the longest reach kernel ({single} steps).",
                         hint="Raise cluster_length, or use engine='exact'.")
    plan = closure_plan_for(job.network, job.topo, h, g, length=length, block=block, tol=tol, max_pairs=max_pairs)
    log.info("closure: %d clusters in %d stages, L_c = %d, %d pairs, %.3g block elements", plan.n_clusters,
             len(plan.stages), length, plan.pairs, plan.block_elements)
    x_all, hist_q = runoff, None
    if history is not None:
        # warm start: the runoff of the last h_len steps leads each series, and a virtual source's
        # inputs before t = 0 are its cut reach's outflow then (from the state)
        x_all = torch.cat([history[1].to(device=dev, dtype=dtype), runoff], -1)
        hist_q = history[2].to(device=dev, dtype=dtype)
    run = _Run(plan=plan, topo=job.topo, length=length, block=block, precision=precision, h_len=h_len,
               triton=dev.type == "cuda" and dtype == torch.float32)
    hc = h[:, :length]
    gc = None if g is h else g[:, :length]
    return _Closure.apply(x_all, hc, gc, hist_q, run)[..., h_len:]
