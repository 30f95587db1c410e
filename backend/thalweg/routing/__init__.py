"""Routing: ``route(network, runoff, params, scheme, engine)`` -> discharge [batch, reach, time].

Engines share one interface; ``reference`` (float64 numpy, tests only) judges them.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..errors import InputError, RunoffError
from ..irf import Kernels, get_scheme, truncate
from ..network import RiverNetwork
from .exact import route_exact
from .params import scheme_params
from .reference import route_reference

__all__ = ["route", "route_reference", "build_kernels", "ENGINES"]

log = logging.getLogger(__name__)

ENGINES = ("auto", "exact")


def _device(device: str | torch.device | None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("a CUDA device was asked for, but torch sees no GPU.",
                         hint="Use --device cpu, or install a CUDA build of torch (README: GPU).")
    return dev


def build_kernels(network: RiverNetwork, scheme, params: Mapping[str, Any], *, dt: float, n_steps: int,
                  dtype: torch.dtype, device: torch.device, kernel_length: int | None = None) -> Kernels:
    """Kernels of every reach, computed in float64 (lgamma, CDF differences and long geometric tails lose
    digits in float32) and cast to ``dtype``; truncated to ``kernel_length`` keeping mass when asked."""
    sch = get_scheme(scheme)
    p = scheme_params(network, sch, params, dtype=torch.float64, device=device)
    full = sch.kernels(p, dt, n_steps)
    h, g = full.h, full.g
    if kernel_length is not None and kernel_length < n_steps:
        h_cut, _ = truncate(h, kernel_length)
        g = h_cut if g is h else truncate(g, kernel_length)[0]
        h = h_cut
    same = g is h
    h = h.to(dtype)
    return Kernels(h, h if same else g.to(dtype))


def route(
    network: RiverNetwork,
    runoff: Any,
    params: Mapping[str, Any],
    scheme: str = "muskingum",
    *,
    dt: float,
    engine: str = "auto",
    at: Any = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
    kernel_length: int | None = None,
    progress=None,
) -> torch.Tensor:
    """Route lateral runoff through the network.

    Parameters
    ----------
    network : the river network (N reaches).
    runoff : array or tensor [B, N, T] or [N, T], m3/s, mean rate over each step, reaches in network order.
    params : the scheme's parameters, each an array [N] or a scalar, SI units (see ``irf.SCHEMES``).
        Tensors requiring grad receive gradients.
    scheme : a name in ``irf.SCHEMES`` or a Scheme.
    dt : step length, s.
    engine : 'auto' or 'exact'.
    at : optional reach ids; return only those reaches (gauges), in that order.
    dtype : torch.float32 (default) or torch.float64.
    device : 'cpu', 'cuda', or None/'auto' (the runoff tensor's device, else a GPU when there is one).
    kernel_length : steps kept of each kernel; default: the whole series (exact over the horizon).
        Shorter kernels are renormalised to keep mass.
    progress : optional callable(done, total) called after each level.

    Returns
    -------
    Q : tensor [B, N or len(at), T] (or without B if runoff had none), m3/s at the end of each step.
    """
    sch = get_scheme(scheme)
    if engine not in ENGINES:
        raise InputError(f"unknown engine '{engine}'.", hint=f"Choose one of: {', '.join(ENGINES)}.")
    if dtype not in (torch.float32, torch.float64):
        raise InputError(f"dtype {dtype} is not supported.", hint="Use torch.float32 or torch.float64.")
    if not dt or dt <= 0:
        raise InputError(f"the time step must be positive (got {dt!r} s).")
    if isinstance(runoff, torch.Tensor) and device is None:
        dev = runoff.device
    else:
        dev = _device(device)
    q = torch.as_tensor(runoff, device=dev)
    q = q.to(dtype)
    squeeze = q.ndim == 2
    if squeeze:
        q = q.unsqueeze(0)
    if q.ndim != 3 or q.shape[1] != network.n_reaches:
        raise RunoffError(f"runoff has shape {tuple(np.shape(runoff))}; expected [batch, {network.n_reaches:,} "
                          f"reaches, time] in the network's reach order.",
                          hint="Read runoff with thalweg.read_runoff(path, network), which aligns reaches.")
    if q.shape[-1] == 0:
        raise RunoffError("runoff has no time steps.")
    kernels = build_kernels(network, sch, params, dt=dt, n_steps=q.shape[-1], dtype=dtype, device=dev,
                            kernel_length=kernel_length)
    out = route_exact(network, q, kernels, progress=progress)
    if at is not None:
        out = out.index_select(1, torch.as_tensor(network.index_of(at, what="output reach ids"), device=dev))
    return out[0] if squeeze else out
