"""The level-by-level exact engine.

Reaches are processed by topological level (headwaters first). For a level, the upstream inflow U of
every reach is final (its upstream lies in earlier levels), so Q = h * U + g * q is one batched causal
convolution, done in the Fourier domain with zero padding to T + L - 1 (no wrap-around). With kernels
as long as the series (the default) the result is exact over the horizon for every scheme, recursive
or not. Cost grows with reaches x T log T and the number of levels, never with the number of paths.
Differentiable with autograd in the kernels and the runoff.
"""
from __future__ import annotations

import torch

from ..irf import Kernels
from ..network import RiverNetwork

__all__ = ["route_exact"]


def _fft_size(n: int) -> int:
    # 2^a 3^b: fast sizes for pocketfft and cuFFT
    best = 1 << (n - 1).bit_length()
    p3 = 1
    while p3 < best:
        p2 = p3
        while p2 < n:
            p2 *= 2
        best = min(best, p2)
        p3 *= 3
    return best


def route_exact(network: RiverNetwork, runoff: torch.Tensor, kernels: Kernels,
                progress=None) -> torch.Tensor:
    """Q [B, N, T] from runoff [B, N, T] and per-reach kernels (h, g each [N, L])."""
    b, n, t_len = runoff.shape
    length = kernels.length
    nfft = _fft_size(t_len + length - 1)
    device = runoff.device
    h_hat = torch.fft.rfft(kernels.h, n=nfft)
    same = kernels.g is kernels.h
    g_hat = h_hat if same else torch.fft.rfft(kernels.g, n=nfft)
    inflow = torch.zeros_like(runoff)
    pieces, order = [], []
    groups = network.level_groups
    downstream = torch.as_tensor(network.downstream, device=device)
    for i, group_np in enumerate(groups):
        group = torch.as_tensor(group_np, device=device)
        lateral = torch.fft.rfft(runoff.index_select(1, group), n=nfft) * g_hat.index_select(0, group)
        if i == 0:  # headwaters: no upstream inflow
            spectrum = lateral
        else:
            upstream = torch.fft.rfft(inflow.index_select(1, group), n=nfft) * h_hat.index_select(0, group)
            spectrum = lateral + upstream
        q_level = torch.fft.irfft(spectrum, n=nfft)[..., :t_len]
        pieces.append(q_level)
        order.append(group)
        ds = downstream.index_select(0, group)
        keep = ds >= 0
        if bool(keep.any()):
            inflow.index_add_(1, ds[keep], q_level[:, keep])
        if progress is not None:
            progress(i + 1, len(groups))
    stacked = torch.cat(pieces, dim=1)
    position = torch.empty(n, dtype=torch.long, device=device)
    position[torch.cat(order)] = torch.arange(n, device=device)
    return stacked.index_select(1, position)
