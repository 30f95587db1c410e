"""The block-sparse transitive-closure engine: DiffRoute's method (papers 000, 002), done exactly.

    Q_j = sum over i upstream of j (j included) of K_ij * q_i,   K_ij = g_i * h_d(i) * ... * h_j

1. Clusters and stages (``closure_plan.py``): a cluster holds reaches whose path kernels all fit in
   L_c steps (a Chernoff bound on the cut tail, not a guess), staged so that a cluster's outlet
   discharge enters the next stage as a virtual source. Staged results equal unsplit ones.
2. Path kernels, per stage, in subtree post-order blocks: K_(i,j) = K_(i,c) * h_j for the child c of j
   on the path, computed level by level in the Fourier domain with zero padding to 2 L_c (a linear,
   not circular, convolution) and cut to the first L_c taps, which a causal convolution's first L_c
   taps depend on alone. No relu, no renormalisation: the kernels are the exact path kernels.
   Built in float64, differentiable in every kernel parameter.
3. Block-sparse causal convolution of each stage's inputs (runoff; upstream stages' discharge for
   virtual sources): Triton on GPU in true float32 (``precision='ieee'``; 'tf32x3' and 'tf32' on
   request), torch conv1d per target block on CPU and whenever gradients are needed.
"""
from __future__ import annotations

import hashlib
import logging
import math
import weakref

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from .closure_plan import THETAS, ClosurePlan, Stage, build_plan, plan_clusters
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
    """log M(theta) [N, n_theta] of |kern| at theta = THETAS / L_c, on the kernels' device (logsumexp)."""
    with torch.no_grad():
        a = kern.detach().abs().to(torch.float64)
        logk = torch.log(a)  # -inf at zero taps, which logsumexp handles
        k = torch.arange(a.shape[-1], dtype=torch.float64, device=a.device)
        cols = [torch.logsumexp(logk + (float(th) / length) * k, dim=-1) for th in THETAS]
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


def path_kernels(stage: Stage, h: torch.Tensor, g: torch.Tensor, length: int, block: int) -> torch.Tensor:
    """Block storage [n_bp, block (source), block (target), L_c] of one stage's path kernels (float64)."""
    dev = h.device
    rows = stage.n_bp * block * block
    w = torch.zeros(rows, length, dtype=torch.float64, device=dev)
    diag = stage.on("diag_rows", dev)
    reach = stage.on("reach", dev)
    virtual = stage.on("is_virtual", dev)
    own = g.index_select(0, reach)[:, :length].to(torch.float64)
    delta = torch.zeros_like(own)
    delta[:, 0] = 1.0
    # in place: each level writes rows no earlier level wrote, and index_select saves only indices,
    # so autograd needs no copies of the (large) block storage
    w.index_copy_(0, diag, torch.where(virtual[:, None], delta, own))
    nfft = fft_size(2 * length - 1)
    h_hat = torch.fft.rfft(h[:, :length].to(torch.float64), n=nfft)
    for lv in range(len(stage.level_edges)):
        src_t, dst_t = stage.on("src", dev, lv), stage.on("dst", dev, lv)
        spec = torch.fft.rfft(w.index_select(0, src_t), n=nfft) * h_hat.index_select(0, stage.on("kern", dev, lv))
        w.index_copy_(0, dst_t, torch.fft.irfft(spec, n=nfft)[:, :length])
    return w.view(stage.n_bp, block, block, length)


def _apply_torch(stage: Stage, w: torch.Tensor, x: torch.Tensor, block: int) -> torch.Tensor:
    """Block-sparse causal convolution with torch conv1d, one call per target block (differentiable).

    x : [B, n_pad, T] stage inputs; returns [B, n_pad, T]."""
    _b, _, _t_len = x.shape
    length = w.shape[-1]
    out_dtype = x.dtype
    # float64 throughout: a float32 convolution summing (sources x taps) terms per output drifts by ~1e-5
    xp = F.pad(x.to(torch.float64), (length - 1, 0))
    w = w.to(torch.float64)
    outs = []
    for jb in range(stage.bp_ptr.size - 1):
        a, z = int(stage.bp_ptr[jb]), int(stage.bp_ptr[jb + 1])
        lo = int(stage.bp_src[a]) * block
        hi = (jb + 1) * block
        wj = w[a:z]  # [nb, src, tgt, L]
        weight = wj.permute(2, 0, 1, 3).reshape(block, (z - a) * block, length).flip(-1)
        outs.append(F.conv1d(xp[:, lo:hi], weight))
    return torch.cat(outs, dim=1).to(out_dtype)


def _apply_triton(stage: Stage, w: torch.Tensor, x: torch.Tensor, block: int, precision: str) -> torch.Tensor:
    from ._triton.closure import block_conv

    return block_conv(x, w, stage.on("bp_ptr", x.device), stage.on("bp_src", x.device), block=block,
                      precision=precision)


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
    x_all = runoff
    out = torch.zeros(b, n, total, dtype=dtype, device=dev)
    if history is not None:
        # warm start: the runoff of the last h_len steps leads each series, and a virtual source's
        # inputs before t = 0 are its cut reach's outflow then (from the state)
        x_all = torch.cat([history[1].to(device=dev, dtype=dtype), runoff], -1)
        out = torch.cat([history[2].to(device=dev, dtype=dtype), out[..., h_len:]], -1)
    grad = torch.is_grad_enabled() and (runoff.requires_grad or h.requires_grad or g.requires_grad)
    use_triton = dev.type == "cuda" and not grad and dtype == torch.float32
    for stage in plan.stages:
        reach = stage.on("reach", dev)
        virtual = stage.on("is_virtual", dev)
        x = torch.where(virtual[None, :, None], out.index_select(1, reach), x_all.index_select(1, reach))
        x = F.pad(x, (0, 0, 0, stage.n_pad - stage.n))
        w = path_kernels(stage, h, g, length, block)
        if use_triton:
            w = w.to(dtype)
        y = _apply_triton(stage, w, x, block, precision) if use_triton else _apply_torch(stage, w, x, block)
        tgt = stage.on("targets", dev)
        new = y.index_select(1, tgt)[..., h_len:]
        if h_len:
            new = torch.cat([out.index_select(1, reach.index_select(0, tgt))[..., :h_len], new], -1)
        out = out.index_copy(1, reach.index_select(0, tgt), new)
    return out[..., h_len:]
