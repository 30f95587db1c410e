"""The Scheme protocol: a routing scheme is a named, differentiable kernel function (ROUTING.md section 3).

A scheme maps per-reach parameters to two unit-mass causal kernels: ``h`` (upstream inflow -> outflow)
and ``g`` (the reach's own lateral runoff -> outflow; ``None`` means ``g = h``). Engines only ever see
kernels, so adding a scheme never touches an engine.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["PRIORS", "SUPPORT_TOL", "Compact", "Kernels", "Parameter", "Recursion", "Scheme", "cdf_support",
           "shared", "shared_scope", "steps_index", "support_tol", "taps_support", "truncate"]

Params = Mapping[str, torch.Tensor]

_SHARED: contextvars.ContextVar[dict | None] = contextvars.ContextVar("thalweg_irf_shared", default=None)


@contextlib.contextmanager
def shared_scope() -> Iterator[None]:
    """A block in which a scheme's hooks share what they derive, without grad, from the same parameter tensors
    (:func:`shared`): a prepared route calls ``adjusted`` and then ``recursion`` on one set of parameters, and
    ``muskingum_nonneg`` chooses its sub-steps for both. Inside the block the parameters must not change (the
    routing changes none); outside it nothing is kept, so an optimizer's step, however it writes, is always seen."""
    token = _SHARED.set({})
    try:
        yield
    finally:
        _SHARED.reset(token)


def shared(name: str, tensors: tuple[torch.Tensor, ...], extra: tuple, make: Callable[[], Any]) -> Any:
    """``make()``, made once per ``(name, tensors, extra)`` inside a :func:`shared_scope` (tensors matched by
    identity and held until the block ends), on every call outside one. ``make`` must be a pure function of the
    tensors' values and ``extra``, without grad."""
    store = _SHARED.get()
    if store is None:
        return make()
    key = (name, tuple(id(t) for t in tensors), extra)
    hit = store.get(key)
    if hit is None:
        hit = store[key] = (tensors, make())  # the tensors kept alive: their ids stay theirs in the block
    return hit[1]


PRIORS = ("default", "travel_time", "velocity")


@dataclasses.dataclass(frozen=True)
class Parameter:
    """One kernel parameter, the one place that says what values it takes and where its prior comes from.

    Attributes
    ----------
    name, unit, description : the parameter's name, SI unit and meaning.
    lower, upper : physical bounds (inclusive); routing refuses values outside them.
    default : the value used when nothing else gives one (``prior='default'``).
    typical : where the bounds are much wider than usual values, the range tests and benchmarks sample.
    positive : the value must be > 0 even where ``lower`` is 0 (a time constant, a speed).
    prior : where :func:`thalweg.params.resolve_params` takes the value when the user gives none:
        'default' (``default``), 'travel_time' (the GEOGloWS travel time length / velocity(area), s) or
        'velocity' (the GEOGloWS velocity, m/s).
    prior_divisor : name of another parameter the prior is divided by (a Nash cascade's residence time per
        reservoir: travel time / n).
    network_field : a network attribute that, when present, gives the value before the prior
        (``muskingum_k`` from RAPID ``k.csv`` or river-route ``muskingumK``).
    """

    name: str
    unit: str
    description: str
    lower: float
    upper: float
    default: float
    typical: tuple[float, float] | None = None
    positive: bool = False
    prior: str = "default"
    prior_divisor: str | None = None
    network_field: str | None = None

    def __post_init__(self) -> None:
        if self.prior not in PRIORS:
            raise ValueError(f"parameter '{self.name}': prior must be one of {', '.join(PRIORS)}, not {self.prior!r}")
        if not self.lower <= self.default <= self.upper:
            raise ValueError(f"parameter '{self.name}': default {self.default} is outside [{self.lower}, {self.upper}]")

    def bounds_text(self) -> str:
        """'[0.1, 2.592e+06] s' or '(0, 10] m s-1' for messages."""
        unit = "" if self.unit in ("1", "-", "") else f" {self.unit}"
        opening = "(" if self.positive and self.lower == 0 else "["
        return f"{opening}{self.lower:g}, {self.upper:g}]{unit}"

    def outside(self, values):
        """Bool mask (numpy or torch, as given) of values that are not finite or outside the bounds."""
        if hasattr(values, "isfinite") or type(values).__module__.startswith("torch"):
            bad = ~torch.isfinite(values) | (values < self.lower) | (values > self.upper)
        else:
            values = np.asarray(values, dtype=np.float64)
            bad = ~np.isfinite(values) | (values < self.lower) | (values > self.upper)
        if self.positive:
            bad = bad | (values <= 0)
        return bad

    def to_dict(self) -> dict:
        """JSON-ready: ``typical`` as a [low, high] list or None."""
        out = dataclasses.asdict(self)
        out["typical"] = list(self.typical) if self.typical else None
        return out


@dataclasses.dataclass(frozen=True)
class Kernels:
    """Kernels of every reach: ``h`` [N, L] and ``g`` [N, L] (``g is h`` when the scheme uses one kernel)."""

    h: torch.Tensor
    g: torch.Tensor

    @property
    def length(self) -> int:
        return int(self.h.shape[-1])


@dataclasses.dataclass(frozen=True)
class Compact:
    """Every reach's kernel over its support only: ``h[first + j] = taps[:, j]`` for ``j < count``, h = 0 elsewhere
    (beyond the taps kept by the support rule, :func:`taps_support`); ``g = h``.

    first, count : [N] int64, the support ``[first, first + count)`` of each reach, count >= 1 (taps at or past
        the horizon may be given, a lag longer than it: they meet no input).
    taps : [N, K] float64, K >= every count; zero past each reach's count (no gradient there); differentiable in
        the parameters.
    """

    first: torch.Tensor
    count: torch.Tensor
    taps: torch.Tensor

    @property
    def support(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(k0, k1)``, int64 [N]: the taps [k0, k1) of each reach (``_cpu.fir_route``'s ``support``)."""
        return self.first, self.first + self.count


@dataclasses.dataclass(frozen=True)
class Recursion:
    """A first-order recursive form of a reach's two kernels, each coefficient a tensor [N]:

        Q[t] = r Q[t-1] + b0 U[t] + b1 U[t-1] + c0 q[t] + c1 q[t-1]

    Its impulse responses are h[0] = b0, h[k] = r^(k-1) (r b0 + b1) for the inflow U and
    g[0] = c0, g[k] = r^(k-1) (r c0 + c1) for the runoff q. Engines that run recursions (cost per
    step independent of the kernel length) use it; schemes without one are convolved with their kernels.
    """

    r: torch.Tensor
    b0: torch.Tensor
    b1: torch.Tensor
    c0: torch.Tensor
    c1: torch.Tensor

    def stacked(self) -> torch.Tensor:
        """Coefficients as one tensor [N, 5] in the order r, b0, b1, c0, c1."""
        return torch.stack([self.r, self.b0, self.b1, self.c0, self.c1], dim=-1)


@dataclasses.dataclass(frozen=True)
class Scheme:
    """A routing scheme.

    Attributes
    ----------
    name : registry key, e.g. 'muskingum'.
    parameters : the per-reach parameters it takes (besides the network's own ``length``).
    kernel : ``kernel(params, dt, n_steps) -> (h, g or None)``, each [N, n_steps], differentiable in params.
        ``params`` holds float tensors [N] in SI units; ``length`` [m] is added when ``uses_length``.
    travel_time : ``travel_time(params, dt) -> tensor [N]`` (s), the kernel's mean delay; sets the
        automatic kernel length.
    uses_length : the kernel needs each reach's length (Hayami).
    description : one line for ``thalweg schemes`` and ``GET /schemes``.
    recursion : optional ``recursion(params, dt) -> Recursion``, the same kernels as a first-order
        recursion (exact, differentiable in params); lets engines skip convolutions.
    compact : optional ``compact(params, dt, n_steps, tol) -> Compact``, the kernel ``h`` (with g = h) of
        ``n_steps`` taps cut to each reach's support by the support rule at ``tol`` (:func:`taps_support`),
        without building the [N, n_steps] kernels; the same taps as ``kernel`` over the support.
    adjusted : optional ``adjusted(params, dt) -> (bool tensor [N], text)``: the reaches where the scheme
        routes with other values than the parameters given (``muskingum_nonneg`` lowering x) and a sentence
        saying what it does; ``route`` reports them once, with their ids.
    """

    name: str
    parameters: tuple[Parameter, ...]
    kernel: Callable[[Params, float, int], tuple[torch.Tensor, torch.Tensor | None]]
    travel_time: Callable[[Params, float], torch.Tensor]
    description: str = ""
    uses_length: bool = False
    recursion: Callable[[Params, float], Recursion] | None = None
    adjusted: Callable[[Params, float], tuple[torch.Tensor, str]] | None = None
    compact: Callable[[Params, float, int, float], Compact] | None = None

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    def kernels(self, params: Params, dt: float, n_steps: int) -> Kernels:
        h, g = self.kernel(params, float(dt), int(n_steps))
        return Kernels(h, h if g is None else g)

    def auto_length(self, params: Params, dt: float, *, spread: float = 8.0, minimum: int = 8) -> int:
        """Kernel length covering ``spread`` times the largest travel time (in steps)."""
        with torch.no_grad():
            tt = self.travel_time(params, float(dt))
            longest = float(tt.max()) if tt.numel() else 0.0
        return max(minimum, math.ceil(spread * longest / dt) + 2)

    def sample_params(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Random parameters inside physical bounds (tests and benchmarks)."""
        out = {}
        for p in self.parameters:
            lo, hi = p.typical or (p.lower, p.upper)
            if lo > 0 and hi / lo > 100:
                out[p.name] = np.exp(rng.uniform(np.log(lo), np.log(hi), n))
            else:
                out[p.name] = rng.uniform(lo, hi, n)
        return out

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "uses_length": self.uses_length,
                "parameters": [p.to_dict() for p in self.parameters]}


def steps_index(n_steps: int, like: torch.Tensor) -> torch.Tensor:
    """k = 0..n_steps-1 as a [1, n_steps] tensor of ``like``'s dtype and device."""
    return torch.arange(n_steps, dtype=like.dtype, device=like.device)[None, :]


def truncate(kernel: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut kernels [N, L0] to ``length`` steps keeping their mass (renormalise the kept part).

    Returns ``(kernel [N, length], tail [N])`` with ``tail`` the fraction of each kernel's mass that lay
    beyond the cut, so callers can report it (ROUTING.md section 2).
    """
    kept = kernel[..., :length]
    total = kernel.sum(-1)
    part = kept.sum(-1)
    tail = (total - part) / total
    return kept * (total / part)[..., None], tail


# The support rule, in this one place: a kernel h of L taps is convolved over [k0, k1), where
# k0 is the number of leading taps whose running mass stays <= tol * M and k1 the end after which the trailing
# taps' mass is <= tol * M, M = sum |h| over the L taps (at least 1e-300); k0 <= L - 1 and k1 >= k0 + 1 (one
# tap at least). Statements of it: taps_support (torch, whole kernels), routing.c's kernel_support (compiled,
# whole kernels, behind routing._cpu.kernel_support), cdf_support (torch, from a scheme's CDF by bisection) and
# routing.c's hayami_support (compiled, the inverse-Gaussian CDF); tests/irf/test_compact.py holds them together.
# tol by the routing's storage type: 1e-9 is 60x below a float32 ulp (6e-8, the rounding of every stored value),
# so float32 results do not change; it cuts Hayami's daily supports by 40 % (147 -> 88 taps at 100k x 366).
# float64 keeps 1e-13.
SUPPORT_TOL = {torch.float32: 1e-9, torch.float64: 1e-13}


def support_tol(dtype: torch.dtype) -> float:
    """The support tolerance for routing in ``dtype`` (``SUPPORT_TOL``; 1e-13 for other types)."""
    return SUPPORT_TOL.get(dtype, 1e-13)


def taps_support(h: torch.Tensor, g: torch.Tensor | None, tol: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The support rule on whole kernels h (and g: both kernels' absolute mass together) [N, L], in torch on
    their own device: ``(k0, k1)`` int64 [N]."""
    hh = h.detach().to(torch.float64)
    a = hh.abs() if g is None else hh.abs() + g.detach().to(torch.float64).abs()
    klen = a.shape[-1]
    head = torch.cumsum(a, -1)  # one scan: the mass from tap k on is total - head[k] + a[k]
    total = head[..., -1:]
    cut = tol * total.clamp(min=1e-300)
    k0 = (head <= cut).sum(-1).clamp(max=klen - 1)
    k1 = torch.maximum(((total - head + a) > cut).sum(-1), k0 + 1)
    return k0, k1


def cdf_support(cdf_at: Callable[[torch.Tensor], torch.Tensor], n_steps: int, tol: float,
                like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The support rule for a kernel that is a CDF's increments, h[k] = F(k + 1) - F(k) with F(0) = 0 and F
    monotone, from F alone: ``(first, count)`` int64 [N] on ``like``'s device.

    ``cdf_at(m)`` gives F at whole steps ``m`` (a float64 tensor [N] of step counts) for every reach. The running
    mass of the taps before k is F(k), the mass from k on F(n_steps) - F(k), so both ends come by bisection on
    whole steps: 2 ceil(log2 n_steps) + 1 evaluations of F per reach, none of them [N, n_steps].
    """
    if n_steps < 1:
        raise ValueError(f"cdf_support: n_steps must be >= 1, not {n_steps}")
    steps = float(n_steps)
    iters = max(0, math.ceil(math.log2(n_steps)))
    with torch.no_grad():
        full = torch.full(like.shape, steps, dtype=torch.float64, device=like.device)
        total = cdf_at(full)
        cut = tol * total.clamp(min=1e-300)
        lo, hi = torch.zeros_like(full), full.clone()  # F(lo) <= cut < F(hi): the head's first kept tap is hi - 1
        for _ in range(iters):
            mid = torch.floor(0.5 * (lo + hi))
            above = cdf_at(mid) > cut
            hi, lo = torch.where(above, mid, hi), torch.where(above, lo, mid)
        k0 = hi - 1.0  # n_steps - 1 when even F(n_steps) <= cut
        lo, hi = k0.clone(), full.clone()  # the tail: the smallest k with F(n_steps) - F(k) <= cut, k = hi
        for _ in range(iters):
            mid = torch.floor(0.5 * (lo + hi))
            done = total - cdf_at(mid) <= cut
            hi, lo = torch.where(done, mid, hi), torch.where(done, lo, mid)
        first = k0.to(torch.int64)
        return first, torch.clamp(hi.to(torch.int64) - first, min=1)
