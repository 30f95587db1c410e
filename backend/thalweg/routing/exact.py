"""The exact engine: every reach's own filter, applied in topological order.

Schemes with a recursion (Muskingum, linear storage, sub-stepped Muskingum) run it: cost per step
independent of the kernel length, exact over any horizon, and a compact warm state. Other schemes
(pure lag, Nash, Hayami, custom) are convolved with their kernels: directly over each kernel's
support when that is short, by FFT per level otherwise.

Where it runs:
- CPU: compiled C (``_native``), post-order with a depth-indexed inflow stack; torch FFT fallback. Schemes with
  ``Scheme.compact`` (pure lag, Hayami) hand over their kernels over each reach's support only.
- CUDA: one Triton launch for the whole tree, for recursions (``_triton/iir.py``), for the Nash cascade
  with whole n as n recursions (``_triton/cascade.py``) and for direct convolutions over each kernel's
  support (``_triton/fir.py``; long float32 kernels as block-Toeplitz products on tensor cores,
  ``_triton/toeplitz.py``; cold starts). Schemes with ``Scheme.compact`` hand over their taps as on the CPU
  (the pure lag's two; Hayami's built by Triton kernels, ``_triton/hayami.py``); torch FFT by level for
  supports over ``_gpu.MAX_TAPS`` taps and warm-started convolutions.
Gradients: custom backward passes (routing on the reversed tree in reversed time) for the compiled
and Triton recursions and convolutions; autograd through the torch FFT path.
"""
from __future__ import annotations

import logging
import math

import torch

from ..irf import Kernels, Scheme, lag, nash
from . import _cpu, _gpu
from .fft import route_fft
from .topology import Topology

__all__ = ["plan_exact", "route_exact"]

log = logging.getLogger(__name__)

# how many taps of the compiled direct convolution cost one of the FFT path's 6 log2(2 (T + L)) operations per
# reach-step: measured 2026-12-02 on the 2-core VM at 100k x 366, Hayami (88 taps): direct 0.25 s, torch FFT
# by level 57 s (break-even near 20,000 taps); 64 keeps the FFT for supports over ~4,000 taps at T = 366
FIR_OVER_FFT = 64.0
_LOGGED: set[str] = set()


def _once(msg: str) -> None:
    if msg not in _LOGGED:
        _LOGGED.add(msg)
        log.info(msg)


def _direct_pays(taps: float, n: int, t_len: int, length: int) -> bool:
    """Whether the compiled direct convolution over supports of ``taps`` taps in all costs less than the FFT path
    with kernels of ``length`` steps (``FIR_OVER_FFT``)."""
    return taps <= FIR_OVER_FFT * n * 6.0 * math.log2(2 * (t_len + length))


def _kept(cache: dict | None, name: str, key, make):
    """``make()``, kept in a prepared route's ``cache`` under ``name`` while ``key`` stays the same (one entry a
    name: a stream's chunks share one, its shorter last chunk replaces it); made on each call without a cache."""
    if cache is None:
        return make()
    hit = cache.get(name)
    if hit is None or hit[0] != key:
        hit = cache[name] = (key, make())
    return hit[1]


def _compact(cache: dict | None, scheme: Scheme, p: dict, dt: float, t_len: int, dtype: torch.dtype):
    """The scheme's kernels over each reach's support (``Scheme.compact``) for ``t_len`` steps of ``dtype``
    runoff (its support rule's tolerance), kept in ``cache``."""
    return _kept(cache, "compact", (t_len, dtype),
                 lambda: scheme.compact(p, dt, t_len, _cpu.support_tol(dtype)))


def plan_exact(scheme: Scheme, device: torch.device, *, kernel_length: int | None, history: bool) -> str:
    """Which path the exact engine takes: 'iir-native', 'iir-triton', 'iir-fft', 'fir-native' or 'fft'
    ('fft' on a GPU becomes 'fir-triton' in ``route_exact`` for a cold start with supports <= MAX_TAPS)."""
    recursive = scheme.recursion is not None and kernel_length is None and not history
    if recursive:
        if device.type == "cpu" and _cpu.available():
            return "iir-native"
        if _gpu.available(device):
            return "iir-triton"
        return "iir-fft"
    if device.type == "cpu" and _cpu.available():
        return "fir-native"
    return "fft"


def route_exact(topo: Topology, runoff: torch.Tensor, scheme: Scheme, p: dict, dt: float, *,
                kernels_fn, kernel_length: int | None, state=None, want: str | None = None, progress=None,
                cache: dict | None = None):
    """Route with the exact engine.

    Parameters
    ----------
    topo : the network's topology.
    runoff : [B, N, T] tensor (float32 or float64) on the target device.
    scheme, p, dt : the scheme, its per-reach float64 parameters, the step (s).
    kernels_fn : ``kernels_fn(n_steps) -> Kernels`` (float64), called only for convolution paths.
    kernel_length : fixed kernel length or None (whole horizon).
    state : 'filter' tensor [B, N, 3] (recursive) or (U, q) histories [B, N, H] (history), or None.
    want : None, 'recursive' or 'history': the kind of state the run keeps (sets the path).
    cache : a prepared route's (``Job.cache``), where the Nash cascade and the compact taps, fixed by ``p`` and
        ``dt``, are kept from call to call; None: made on each call.

    Returns
    -------
    (Q [B, N, T], state tensors dict or None, path name)
    """
    device = runoff.device
    history = isinstance(state, tuple) or want == "history"
    path = plan_exact(scheme, device, kernel_length=kernel_length, history=history)
    _once(f"thalweg: exact engine on {device.type}: {path}")
    if path in ("iir-native", "iir-triton"):
        coef = scheme.recursion(p, dt).stacked().to(device)
        fn = _cpu.iir_route if path == "iir-native" else _gpu.iir_route
        out, _ = fn(runoff, coef, topo, state)
        return out, None, path
    t_len = runoff.shape[-1]
    if path == "iir-fft":
        kern = kernels_fn(t_len)
        coef = scheme.recursion(p, dt).stacked().to(device) if state is not None or want else None
        out, _ = route_fft(topo, runoff, kern, coef=coef, filter_state=state, progress=progress)
        return out, None, path
    if path == "fir-native" and kernel_length is None and not history and scheme.kernel is nash.kernel:
        cascade = _kept(cache, "cascade", None, lambda: nash.whole_cascade(p, dt))
        if cascade is not None:  # n reservoirs per reach, n recursions per step: no kernels to build or convolve
            _once(f"thalweg: exact engine on {device.type}: cascade-native")
            return _cpu.cascade_route(runoff, cascade[0], cascade[1], topo), None, "cascade-native"
    if path == "fir-native" and kernel_length is None and not history and scheme.compact is not None:
        # the kernels over their supports only (pure lag: two taps; Hayami: the CDF over each support), placed at
        # a per-reach tap offset: no [N, T] kernels built or scanned
        comp = _compact(cache, scheme, p, dt, t_len, runoff.dtype)
        first = comp.first.cpu().numpy()
        last = first + comp.count.cpu().numpy()
        # a scheme wrapper that adds kernel rows without adding them to its compact hook (routing.dag.with_virtual
        # adds them to both) would give other rows than the network's: the full kernels then
        if first.shape[0] == topo.n and _direct_pays(float((last - first).sum()), topo.n, t_len, t_len):
            name = "lag-native" if scheme.kernel is lag.kernel else "fir-compact"
            _once(f"thalweg: exact engine on {device.type}: {name}")
            out, _, _ = _cpu.fir_route(runoff, comp.taps, None, topo, support=(first, last), offset=first)
            return out, None, name
    if path == "fft" and _gpu.available(device) and kernel_length is None and not history:
        # GPU, cold start: the schemes whose kernels need not be built (as on the CPU, above)
        if scheme.kernel is nash.kernel:
            cascade = _kept(cache, "cascade", None, lambda: nash.whole_cascade(p, dt))
            if cascade is not None:
                _once(f"thalweg: exact engine on {device.type}: cascade-triton")
                return _gpu.cascade_route(runoff, cascade[0], cascade[1], topo), None, "cascade-triton"
        # the kernels over their supports only (the pure lag's two taps; Hayami's built by Triton kernels, its
        # support by bisection in registers: no [N, T] kernels built, scanned or cut)
        if scheme.compact is not None:
            comp = _compact(cache, scheme, p, dt, t_len, runoff.dtype)
            if comp.first.shape[0] == topo.n and int(comp.taps.shape[1]) <= _gpu.MAX_TAPS:
                name = "lag-triton" if scheme.kernel is lag.kernel else "fir-compact-triton"
                _once(f"thalweg: exact engine on {device.type}: {name}")
                return _gpu.fir_route_taps(runoff, comp.first, comp.taps, topo, counts=comp.count), None, name
    length = kernel_length or t_len
    kern: Kernels = kernels_fn(length)
    if path == "fft" and _gpu.available(device) and not isinstance(state, tuple):
        # GPU, cold start: direct convolution over each kernel's support in one Triton launch
        g = None if kern.g is kern.h else kern.g
        k0, k1 = _cpu.kernel_support_on(kern.h, g, _cpu.support_tol(runoff.dtype))
        if int((k1 - k0).max()) <= _gpu.MAX_TAPS:
            _once(f"thalweg: exact engine on {device.type}: fir-triton")
            out = _gpu.fir_route(runoff, kern.h, g, topo, (k0.to(device), k1.to(device)))
            return out, None, "fir-triton"
    if path == "fir-native":
        k0, k1 = _cpu.kernel_support(kern.h, None if kern.g is kern.h else kern.g, _cpu.support_tol(runoff.dtype))
        if _direct_pays(float((k1 - k0).sum()), topo.n, t_len, length) or history:
            hist = state if isinstance(state, tuple) else None
            out, _, _ = _cpu.fir_route(runoff, kern.h, None if kern.g is kern.h else kern.g, topo, hist,
                                       support=(k0, k1))
            return out, None, path
        path = "fft"
    out, _ = route_fft(topo, runoff, kern, history=state if isinstance(state, tuple) else None, progress=progress)
    return out, None, path
