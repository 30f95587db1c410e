"""The level-by-level FFT engine (pure torch, CPU and GPU, autograd throughout).

Reaches are processed by topological level (headwaters first). For a level, the upstream inflow U of
every reach is final (its upstream lies in earlier levels), so Q = h * U + g * q is one batched causal
convolution, done in the Fourier domain with zero padding to T + L - 1 (no wrap-around). With kernels
as long as the series (the default) the result is exact over the horizon for every scheme, recursive
or not. Cost grows with reaches x T log T and the number of levels, never with the number of paths.

It is the portable fallback of the exact engine (no compiler, no Triton) and its engine for kernels
too long for direct convolution; it takes both kinds of warm state (``state.py``). It computes in
float64 whatever the storage type: float32 FFTs spread a rounding error of ~1e-7 of each series' peak
over all its steps, which biases volumes by ~1e-6 on deep trees.
"""
from __future__ import annotations

import torch

from ..irf import Kernels
from .topology import Topology

__all__ = ["fft_size", "route_fft"]


def fft_size(n: int) -> int:
    """Smallest 2^a 3^b >= n: fast sizes for pocketfft and cuFFT."""
    best = 1 << (n - 1).bit_length()
    p3 = 1
    while p3 < best:
        p2 = p3
        while p2 < n:
            p2 *= 2
        best = min(best, p2)
        p3 *= 3
    return best


def route_fft(topo: Topology, runoff: torch.Tensor, kernels: Kernels, *, coef: torch.Tensor | None = None,
              filter_state: torch.Tensor | None = None, history: tuple[torch.Tensor, torch.Tensor] | None = None,
              progress=None):
    """Q [B, N, T] from runoff [B, N, T] and per-reach kernels (h, g each [N, L]).

    Parameters
    ----------
    coef : [N, 5] recursion coefficients (r, b0, b1, c0, c1); needed with ``filter_state``.
    filter_state : [B, N, 3] (Q, U, q) at the step before the first (recursive warm start): each reach
        adds its free response z r^t, z = r Q + b1 U + c1 q, which flows downstream like any outflow.
    history : (U, q) [B, N, H] inputs of the H steps before the first (convolution warm start).

    Returns
    -------
    (Q, None): the state after the last step is built from Q by the caller (``engines.py``).
    """
    b, n, t_len = runoff.shape
    device, out_dtype = runoff.device, runoff.dtype
    dtype = torch.float64
    runoff = runoff.to(dtype)
    h_len = 0 if history is None else history[0].shape[-1]
    length = kernels.length
    total = h_len + t_len
    nfft = fft_size(total + length - 1)
    h_hat = torch.fft.rfft(kernels.h.to(dtype), n=nfft)
    same = kernels.g is kernels.h
    g_hat = h_hat if same else torch.fft.rfft(kernels.g.to(dtype), n=nfft)
    inflow = torch.zeros(b, n, t_len, dtype=dtype, device=device)
    idx = topo.on(device)
    level_ptr = topo.level_ptr
    down = idx["downstream"]
    if filter_state is not None:
        fs = filter_state.to(device=device, dtype=torch.float64)
        c = coef.to(device=device, dtype=torch.float64)
        z = c[:, 0] * fs[..., 0] + c[:, 2] * fs[..., 1] + c[:, 4] * fs[..., 2]  # [B, N]
        steps = torch.arange(1, t_len + 1, dtype=torch.float64, device=device)
        # free response: Q[t] += r^(t+1) Q[-1] + r^t (b1 U[-1] + c1 q[-1]) = r^t z
        free = z[..., None] * torch.pow(c[:, 0, None], steps[None, :] - 1.0)
    pieces, order = [], []
    for lv in range(topo.n_levels):
        group = idx["level_order"][int(level_ptr[lv]):int(level_ptr[lv + 1])]
        q_g = runoff.index_select(1, group)
        u_g = inflow.index_select(1, group)
        if history is not None:
            q_g = torch.cat([history[1].to(device=device, dtype=dtype).index_select(1, group), q_g], -1)
            u_g = torch.cat([history[0].to(device=device, dtype=dtype).index_select(1, group), u_g], -1)
        spectrum = torch.fft.rfft(q_g, n=nfft) * g_hat.index_select(0, group)
        if lv > 0:  # headwaters have no upstream inflow
            spectrum = spectrum + torch.fft.rfft(u_g, n=nfft) * h_hat.index_select(0, group)
        q_level = torch.fft.irfft(spectrum, n=nfft)[..., h_len:total]
        if filter_state is not None:
            q_level = q_level + free.index_select(1, group).to(dtype)
        pieces.append(q_level)
        order.append(group)
        ds = down.index_select(0, group)
        keep = ds >= 0
        if bool(keep.any()):
            inflow = inflow.index_add(1, ds[keep], q_level[:, keep])
        if progress is not None:
            progress(lv + 1, topo.n_levels)
    stacked = torch.cat(pieces, dim=1)
    position = torch.empty(n, dtype=torch.long, device=device)
    position[torch.cat(order)] = torch.arange(n, device=device)
    out = stacked.index_select(1, position).to(out_dtype)
    return out, None
