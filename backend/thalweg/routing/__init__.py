"""Routing: ``route(network, runoff, params, scheme, engine)`` -> discharge [batch, reach, time].

Engines share one interface and agree to float rounding (ROUTING.md section 4):

- ``exact``: each reach's own filter in topological order (recursions where the scheme has one,
  convolutions otherwise); compiled C on CPU, one Triton launch on GPU, torch FFT as fallback.
- ``closure``: DiffRoute's block-sparse transitive closure (path kernels, block-sparse causal
  convolution, staged clusters), Triton on GPU.
- ``fft``: level-by-level FFT convolution in plain torch (portable, autograd throughout).
- ``auto``: ``exact``, measured fastest on every device and scheme (docs/routing-engines.md).

``reference`` (float64 numpy, tests only) judges them. A network whose rivers split (``network.splits``) is
routed by the same engines stage by stage (``dag.py``, docs/bifurcations.md).
"""
from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..errors import InputError, RunoffError, ThalwegWarning, format_ids, opt, render_options
from ..irf import Kernels, get_scheme, truncate
from ..irf.base import shared_scope
from ..network import RiverNetwork
from . import engines as _engines
from .params import scheme_params
from .reference import route_reference
from .state import RoutingState
from .topology import topology

__all__ = ["ENGINES", "PreparedRoute", "RoutingState", "build_kernels", "resolve_device", "route", "route_reference"]

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
            warnings.warn(f"kernels cut at {kernel_length} steps lose more than 1e-4 of their mass (renormalised) "
                          f"on {count:,} reaches (worst {worst:.2e}); pass a longer kernel_length to keep the "
                          f"hydrograph shape.", ThalwegWarning, stacklevel=4)
        else:
            log.info("kernels cut at %d steps: largest tail %.2e (renormalised)", kernel_length, worst)
    return Kernels(h, g)


def report_adjusted(network: RiverNetwork, sch, p: Mapping[str, torch.Tensor], dt: float, *,
                    stacklevel: int = 3) -> None:
    """One ThalwegWarning naming the reaches (count and first ids) where ``sch`` routes with other parameter
    values than those given (``muskingum_nonneg`` lowering x); nothing for schemes that never do."""
    if sch.adjusted is None:
        return
    with torch.no_grad():
        mask, text = sch.adjusted(p, float(dt))
        where = torch.nonzero(mask).flatten().cpu().numpy()
    if where.size:
        warnings.warn(render_options(f"'{sch.name}' on {where.size:,} of {network.n_reaches:,} reaches "
                                     f"({format_ids(network.ids[where], 5)}): {text}."), ThalwegWarning,
                      stacklevel=stacklevel)


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


def _as_batch(network: RiverNetwork, values: Any, dev: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, bool]:
    """Runoff [B, N, T] as a ``dtype`` tensor on ``dev``, and whether it came without the batch axis."""
    try:
        q = torch.as_tensor(values, device=dev)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise RunoffError(f"runoff of type {type(values).__name__} cannot be routed ({exc}).",
                          hint="Pass a numpy array, a torch tensor, an xarray DataArray or a thalweg Runoff.") from None
    if not (q.is_floating_point() or q.dtype in (torch.int32, torch.int64, torch.int16, torch.uint8)):
        raise RunoffError(f"runoff has dtype {q.dtype}; route takes numbers.")
    q = q.to(dtype)
    squeeze = q.ndim == 2
    if squeeze:
        q = q.unsqueeze(0)
    if q.ndim != 3 or q.shape[1] != network.n_reaches:
        raise RunoffError(f"runoff has shape {tuple(np.shape(values))}; expected [batch, {network.n_reaches:,} "
                          f"reaches, time] in the network's reach order.",
                          hint="Read runoff with thalweg.read_runoff(path, network), which aligns reaches, or pass "
                               "an xarray DataArray whose reach dimension carries the ids.")
    if q.shape[-1] == 0:
        raise RunoffError("runoff has no time steps.")
    return q, squeeze


def check_engine_options(engine: str, options: Mapping[str, Any]) -> None:
    """InputError for an option that ``engine`` does not take, listing those it does."""
    valid = _engines.OPTIONS[_engines.resolve(engine)]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        takes = f"its options are {', '.join(valid)}" if valid else "it takes no options"
        others = "; ".join(f"{name}: {', '.join(opts)}" for name, opts in _engines.OPTIONS.items() if opts)
        raise InputError(f"the '{engine}' engine takes no option(s) {', '.join(unknown)}; {takes}.",
                         hint=f"Remove {', '.join(unknown)}, or choose an engine that takes it ({others}).")


def _check_call(network: RiverNetwork, engine: str, engine_options: Mapping[str, Any], fractions: Any,
                dtype: torch.dtype) -> None:
    if engine not in ENGINES:
        raise InputError(f"unknown engine '{engine}'.", hint=f"Choose one of: {', '.join(ENGINES)}.")
    check_engine_options(engine, engine_options)
    if fractions is not None and network.splits is None:
        raise InputError("split fractions were given, but the network has no splits.",
                         hint="Leave fractions out, or read the network with its bifurcations (bifurcations='split').")
    if dtype not in (torch.float32, torch.float64):
        raise InputError(f"dtype {dtype} is not supported.", hint="Use torch.float32 or torch.float64.")


def _check_dt(step: Any) -> float:
    if step is None:
        raise InputError("the step length dt is needed: this runoff carries no time axis.",
                         hint=f"Give it in seconds ({opt('route.dt', 3600)}), or pass a thalweg Runoff or an "
                              f"xarray DataArray with a time coordinate.")
    if isinstance(step, bool) or not isinstance(step, (int, float, np.floating, np.integer)) \
            or not np.isfinite(step) or step <= 0:
        raise InputError(f"the time step must be positive, in seconds (got {step!r}).", field="dt")
    return float(step)


class PreparedRoute:
    """:func:`route` for one network, parameter set, scheme, dt, engine, device and dtype, called again and again
    (time chunks of a stream): the parameters are checked and converted, the reaches the scheme adjusts reported
    and the topology looked up once, here; the scheme's recursion coefficients (and fixed-length kernels) are
    computed on the first call and reused by the next ones.

    ``prepared(runoff, state=None, return_state=False)`` routes a numpy array or torch tensor [B, N, T] or
    [N, T] (reaches in network order) and returns what ``route(network, runoff, params, scheme, dt=dt, ...,
    state=state, return_state=return_state)`` returns for it, the same values. Parameters that require grad
    keep their gradients: their coefficients and kernels are recomputed on each call, so each call has its own
    graph and sees the values an optimizer has given them since (in place, under ``torch.no_grad()`` too).
    """

    def __init__(self, network: RiverNetwork, params: Mapping[str, Any], scheme: str | Any = "muskingum_nonneg", *,
                 dt: float, engine: str = "auto", dtype: torch.dtype = torch.float32,
                 device: str | torch.device | None = None, kernel_length: int | None = None, at: Any = None,
                 fractions: Any = None, _stacklevel: int = 3, **engine_options) -> None:
        _check_call(network, engine, engine_options, fractions, dtype)
        self.network, self.scheme, self.dt = network, get_scheme(scheme), _check_dt(dt)
        self.engine, self.dtype, self.device = engine, dtype, resolve_device(device)
        self.kernel_length, self.fractions, self.engine_options = kernel_length, fractions, engine_options
        self.out_index = None
        if at is not None:
            self.out_index = torch.as_tensor(network.index_of(at, what="output reach ids"), device=self.device)
        self.params = scheme_params(network, self.scheme, params, dtype=torch.float64, device=self.device)
        self.topo = topology(network)
        self._cache: dict = {}
        self._grad = any(v.requires_grad for v in self.params.values())
        self._given = params if self._grad else None  # the user's tensors: converted again on each call
        with shared_scope():  # the report and the coefficients derive from the same tensors (muskingum_nonneg's s)
            report_adjusted(network, self.scheme, self.params, self.dt, stacklevel=_stacklevel)  # at the caller
            if not self._grad and network.splits is None:
                with torch.no_grad():
                    _engines.precompute(self._cache, self.scheme, self.params, self.dt, engine, kernel_length)

    def _one(self, values, state, want, progress):
        q, squeeze = _as_batch(self.network, values, self.device, self.dtype)
        # an optimizer changes parameters that require grad in place, no_grad or not: their float64 copies (a float32
        # leaf's conversion is a copy) and what they fix are made again on each call
        cache, params = self._cache, self.params
        if self._grad:
            cache, params = None, scheme_params(self.network, self.scheme, self._given, dtype=torch.float64,
                                                device=self.device)
        job = _engines.Job(network=self.network, topo=self.topo, runoff=q, scheme=self.scheme, params=params,
                           dt=self.dt, kernel_length=self.kernel_length, state=state, want_state=want,
                           at=self.out_index, progress=progress, options=self.engine_options,
                           fractions=self.fractions, cache=cache)
        out, new_state = _engines.run(self.engine, job)
        if self.out_index is not None and out.shape[1] != self.out_index.numel():
            out = out.index_select(1, self.out_index)
        return (out[0] if squeeze else out), new_state

    def __call__(self, runoff: Any, state: RoutingState | None = None, return_state: bool = False, progress=None):
        out, new_state = self._one(runoff, state, return_state, progress)
        return (out, new_state) if return_state else out


def route(
    network: RiverNetwork,
    runoff: Any,
    params: Mapping[str, Any],
    scheme: str | Any = "muskingum_nonneg",
    *,
    dt: float | None = None,
    engine: str = "auto",
    at: Any = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
    kernel_length: int | None = None,
    progress=None,
    state: RoutingState | None = None,
    return_state: bool = False,
    fractions: Any = None,
    **engine_options,
):
    """Route lateral runoff through the network.

    Parameters
    ----------
    network : the river network (N reaches).
    runoff : m3/s, the mean rate over each step, one of:

        - a numpy array or torch tensor [B, N, T] or [N, T], reaches in network order;
        - a :class:`thalweg.Runoff` (from :func:`thalweg.read_runoff`);
        - an xarray DataArray (reach, time), or a Dataset holding one such variable: the reach dimension's
          coordinate (any name) holds reach ids, aligned to the network here (without one, rows are in network
          order); the time coordinate marks the START of each step, as in ``Runoff``, and gives dt;
        - dask-backed DataArrays and dask arrays are routed one time chunk at a time, the exact warm state
          carried from chunk to chunk (memory: one chunk of runoff plus the discharge).
    params : the scheme's parameters, each an array [N] or a scalar, SI units (see ``irf.SCHEMES``).
        Tensors requiring grad receive gradients.
    scheme : a name in ``irf.SCHEMES`` or a Scheme; the default ``muskingum_nonneg`` never gives negative
        discharge from non-negative runoff (docs/parameters.md).
    dt : step length, s. Taken from the runoff when it carries one (Runoff, a DataArray's time axis); giving a
        different value is an error. Needed for plain arrays.
    engine : 'auto', 'exact', 'closure' or 'fft' (module docstring).
    at : optional reach ids; return only those reaches (gauges), in that order.
    dtype : torch.float32 (default) or torch.float64.
    device : 'cpu', 'cuda', or None/'auto' (the runoff tensor's device, else a GPU when there is one).
    kernel_length : steps kept of each kernel (renormalised to keep mass, the cut reported); default:
        the whole series for one pass, the scheme's automatic length for runs with a warm state that
        convolve (recursions need no length).
    progress : optional callable(done, total): after each level (fft engine), or after each time chunk of a
        dask-backed runoff.
    state : the :class:`RoutingState` returned by the previous chunk (warm start); None: cold start.
    return_state : also return the state after the last step, to continue in a later call.
    fractions : for a network whose rivers split, the fraction of each split reach's outflow taken by each of
        its links ([E], in the order of ``network.splits.to``), replacing the network's; a tensor requiring
        grad receives gradients (learned fractions: ``thalweg.network.softmax_fractions(network, logits)``).
    **engine_options : options of the engine (closure: ``block_size``, ``cluster_length``, ``precision``,
        ``tol``, ``max_pairs``; exact and fft take none); any other name is refused, with the valid ones.

    Returns
    -------
    Q : m3/s at the END of each step: a :class:`thalweg.Discharge` (ids, step-end times, ``to_xarray()``) for a
        Runoff or a DataArray with a time axis; else a tensor [B, N or len(at), T] (without B if the runoff
        had none) on the routing device. ``(Q, state)`` when ``return_state``.
    """
    from ._inputs import as_runoff_input

    _check_call(network, engine, engine_options, fractions, dtype)
    src = as_runoff_input(network, runoff, dt)
    step = _check_dt(src.dt)
    if isinstance(src.values, torch.Tensor) and device is None:
        dev = src.values.device
    else:
        dev = resolve_device(device)
    prepared = PreparedRoute(network, params, scheme, dt=step, engine=engine, dtype=dtype, device=dev,
                             kernel_length=kernel_length, at=at, fractions=fractions, _stacklevel=4, **engine_options)
    sch, out_index = prepared.scheme, prepared.out_index
    one = prepared._one

    if src.blocks is None:
        out, new_state = one(src.values, state, return_state, progress)
    else:
        pieces, new_state = [], state
        done = 0
        for block in src.chunks():
            with warnings.catch_warnings():
                if done:  # each chunk would repeat the first one's warnings
                    warnings.simplefilter("ignore", ThalwegWarning)
                piece, new_state = one(block, new_state, True, None)
            pieces.append(piece)
            done += 1
            if progress is not None:
                progress(done, src.n_blocks)
        out = torch.cat(pieces, dim=-1)
    if src.labels is not None:
        from ..results.discharge import Discharge

        ids = None if at is None else network.ids[out_index.cpu().numpy()]
        attrs = {"scheme": sch.name, "engine": _engines.resolve(engine)}
        out = Discharge.from_routing(out, src.labels, attrs, ids=ids)
    return (out, new_state) if return_state else out
