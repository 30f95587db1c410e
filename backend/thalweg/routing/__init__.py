"""Routing: ``route(network, runoff, params, scheme, engine)`` -> discharge [batch, reach, time].

Engines share one interface and agree to float rounding (ROUTING.md section 4):

- ``exact``: each reach's own filter in topological order (recursions where the scheme has one,
  convolutions otherwise); compiled C on CPU, one Triton launch on GPU, torch FFT as fallback.
- ``closure``: DiffRoute's block-sparse transitive closure (path kernels, block-sparse causal
  convolution, staged clusters), Triton on GPU.
- ``fft``: level-by-level FFT convolution in plain torch (portable, autograd throughout).
- ``auto``: ``exact``, measured fastest on every device and scheme (docs/routing-engines.md).

``reference`` (float64 numpy, tests only) judges them.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..errors import InputError, RunoffError, ThalwegWarning, format_ids, render_options
from ..irf import Kernels, get_scheme, truncate
from ..network import RiverNetwork
from . import engines as _engines
from .params import scheme_params
from .reference import route_reference
from .state import RoutingState
from .topology import topology

__all__ = ["ENGINES", "RoutingState", "build_kernels", "resolve_device", "route", "route_reference"]

log = logging.getLogger(__name__)

ENGINES = ("auto", "exact", "closure", "fft")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The torch device for ``device``: None or 'auto' is a GPU when torch sees one, else the CPU; asking for
    CUDA without a GPU is an InputError with the fix."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("a CUDA device was asked for, but torch sees no GPU.",
                         hint="Use --device cpu, or install a CUDA build of torch (README: GPU).")
    return dev


def kernels_from(sch, p: Mapping[str, torch.Tensor], *, dt: float, n_steps: int, kernel_length: int | None = None,
                 report: bool = True) -> Kernels:
    """Float64 kernels [N, L] from per-reach float64 parameters: ``n_steps`` long, or ``kernel_length``
    long when given (renormalised to keep mass, the cut tail measured over 4 L steps and reported when
    it matters)."""
    if kernel_length is None:
        return sch.kernels(p, dt, n_steps)
    # a given length fixes the kernels whatever the series length, so time chunks use the same ones
    full = sch.kernels(p, dt, 4 * kernel_length)
    h, tail = truncate(full.h, kernel_length)
    g = h if full.g is full.h else truncate(full.g, kernel_length)[0]
    if report:
        with torch.no_grad():
            worst = float(tail.abs().max()) if tail.numel() else 0.0
            count = int((tail.abs() > 1e-4).sum())
        if count:
            import warnings

            warnings.warn(f"kernels cut at {kernel_length} steps lose more than 1e-4 of their mass (renormalised) "
                          f"on {count:,} reaches (worst {worst:.2e}); pass a longer kernel_length to keep the "
                          f"hydrograph shape.", ThalwegWarning, stacklevel=4)
        else:
            log.info("kernels cut at %d steps: largest tail %.2e (renormalised)", kernel_length, worst)
    return Kernels(h, g)


def report_adjusted(network: RiverNetwork, sch, p: Mapping[str, torch.Tensor], dt: float) -> None:
    """One ThalwegWarning naming the reaches (count and first ids) where ``sch`` routes with other parameter
    values than those given (``muskingum_nonneg`` lowering x); nothing for schemes that never do."""
    if sch.adjusted is None:
        return
    with torch.no_grad():
        mask, text = sch.adjusted(p, float(dt))
        where = torch.nonzero(mask).flatten().cpu().numpy()
    if where.size:
        import warnings

        warnings.warn(render_options(f"'{sch.name}' on {where.size:,} of {network.n_reaches:,} reaches "
                                     f"({format_ids(network.ids[where], 5)}): {text}."), ThalwegWarning, stacklevel=3)


def build_kernels(network: RiverNetwork, scheme, params: Mapping[str, Any], *, dt: float, n_steps: int,
                  dtype: torch.dtype, device: torch.device, kernel_length: int | None = None) -> Kernels:
    """Kernels of every reach, computed in float64 (lgamma, CDF differences and long geometric tails lose
    digits in float32) and cast to ``dtype``; truncated to ``kernel_length`` keeping mass when asked."""
    sch = get_scheme(scheme)
    p = scheme_params(network, sch, params, dtype=torch.float64, device=device)
    report_adjusted(network, sch, p, dt)
    k = kernels_from(sch, p, dt=dt, n_steps=n_steps, kernel_length=kernel_length)
    h = k.h.to(dtype)
    return Kernels(h, h if k.g is k.h else k.g.to(dtype))


def route(
    network: RiverNetwork,
    runoff: Any,
    params: Mapping[str, Any],
    scheme: str = "muskingum_nonneg",
    *,
    dt: float,
    engine: str = "auto",
    at: Any = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
    kernel_length: int | None = None,
    progress=None,
    state: RoutingState | None = None,
    return_state: bool = False,
    **engine_options,
):
    """Route lateral runoff through the network.

    Parameters
    ----------
    network : the river network (N reaches).
    runoff : array or tensor [B, N, T] or [N, T], m3/s, mean rate over each step, reaches in network order.
    params : the scheme's parameters, each an array [N] or a scalar, SI units (see ``irf.SCHEMES``).
        Tensors requiring grad receive gradients.
    scheme : a name in ``irf.SCHEMES`` or a Scheme.
    dt : step length, s.
    engine : 'auto', 'exact', 'closure' or 'fft' (module docstring).
    at : optional reach ids; return only those reaches (gauges), in that order.
    dtype : torch.float32 (default) or torch.float64.
    device : 'cpu', 'cuda', or None/'auto' (the runoff tensor's device, else a GPU when there is one).
    kernel_length : steps kept of each kernel (renormalised to keep mass, the cut reported); default:
        the whole series for one pass, the scheme's automatic length for runs with a warm state that
        convolve (recursions need no length).
    progress : optional callable(done, total) (the fft engine calls it after each level).
    state : the :class:`RoutingState` returned by the previous chunk (warm start); None: cold start.
    return_state : also return the state after the last step, to continue in a later call.
    **engine_options : passed to the engine (closure: ``block_size``, ``cluster_length``, ``precision``).

    Returns
    -------
    Q : tensor [B, N or len(at), T] (or without B if runoff had none), m3/s at the end of each step;
        ``(Q, state)`` when ``return_state``.
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
        dev = resolve_device(device)
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
    out_index = None
    if at is not None:
        out_index = torch.as_tensor(network.index_of(at, what="output reach ids"), device=dev)
    p = scheme_params(network, sch, params, dtype=torch.float64, device=dev)
    report_adjusted(network, sch, p, dt)
    topo = topology(network)
    job = _engines.Job(network=network, topo=topo, runoff=q, scheme=sch, params=p, dt=float(dt),
                       kernel_length=kernel_length, state=state, want_state=return_state, at=out_index,
                       progress=progress, options=engine_options)
    out, new_state = _engines.run(engine, job)
    if out_index is not None and out.shape[1] != out_index.numel():
        out = out.index_select(1, out_index)
    out = out[0] if squeeze else out
    return (out, new_state) if return_state else out
