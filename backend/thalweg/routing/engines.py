"""Engine dispatch behind ``route()``: warm-state kinds, kernel lengths, and ``engine='auto'``."""
from __future__ import annotations

import dataclasses
import logging
from typing import Any

import torch

from ..irf import Recursion, Scheme
from ..network import RiverNetwork
from .state import RoutingState
from .topology import Topology

__all__ = ["Job", "OPTIONS", "resolve", "run"]

# the keyword options each engine takes through route(**engine_options); anything else is refused
OPTIONS: dict[str, tuple[str, ...]] = {
    "exact": (),
    "fft": (),
    "closure": ("block_size", "cluster_length", "precision", "tol", "max_pairs"),
}

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Job:
    """One routing call, validated: everything an engine needs."""

    network: RiverNetwork
    topo: Topology
    runoff: torch.Tensor  # [B, N, T]
    scheme: Scheme
    params: dict  # float64 [N] tensors on the device
    dt: float
    kernel_length: int | None
    state: RoutingState | None
    want_state: bool
    at: torch.Tensor | None
    progress: Any
    options: dict
    fractions: Any = None  # split fractions [E] replacing the network's (networks with splits only)
    # what a prepared route (``routing.PreparedRoute``) keeps between its calls: the scheme's recursion and the
    # kernels, computed from the same params and dt every time (None: computed on each call)
    cache: dict | None = None

    def kernels(self, n_steps: int, kernel_length: int | None = None):
        from . import kernels_from

        if self.cache is None or kernel_length is None:  # whole-series kernels: as long as each call's series
            return kernels_from(self.scheme, self.params, dt=self.dt, n_steps=n_steps, kernel_length=kernel_length)
        key = ("kernels", int(kernel_length))  # a given length fixes the kernels whatever the series length
        if key not in self.cache:
            self.cache[key] = kernels_from(self.scheme, self.params, dt=self.dt, n_steps=n_steps,
                                           kernel_length=kernel_length)
        return self.cache[key]

    def recursion_scheme(self) -> Scheme:
        """The scheme, its recursion computed once per prepared route (the scheme itself without a cache)."""
        if self.cache is None or self.scheme.recursion is None:
            return self.scheme
        if "scheme" not in self.cache:
            # the coefficients in a box of their own, not in the cache: a closure over the cache, itself kept in
            # the cache, made a reference cycle, so every route() call's parameters and coefficients (10 MB at 100k
            # reaches) waited for Python's cyclic collector, and the next call's came from fresh pages
            box, compute = [self.cache.get("recursion")], self.scheme.recursion  # precompute's, or None

            def recursion(params, dt):  # always this job's params and dt (route_exact, fft)
                if box[0] is None:
                    box[0] = _Stacked.of(compute(params, dt))
                return box[0]

            self.cache["scheme"] = dataclasses.replace(self.scheme, recursion=recursion)
        return self.cache["scheme"]


@dataclasses.dataclass(frozen=True)
class _Stacked(Recursion):
    """A recursion whose stacked coefficients [N, 5] are computed once (a prepared route's)."""

    both: torch.Tensor | None = None

    @classmethod
    def of(cls, rec: Recursion) -> _Stacked:
        return cls(rec.r, rec.b0, rec.b1, rec.c0, rec.c1, rec.stacked())

    def stacked(self) -> torch.Tensor:
        return self.both


def precompute(cache: dict, scheme: Scheme, params: dict, dt: float, engine: str, kernel_length: int | None) -> None:
    """Fill a prepared route's ``cache`` ahead of its first call: the recursion coefficients, where the engine
    runs the scheme's recursion (the kind of state ``_kind`` picks for a recursion without a given length)."""
    if scheme.recursion is not None and kernel_length is None and resolve(engine) in ("exact", "fft"):
        cache["recursion"] = _Stacked.of(scheme.recursion(params, dt))


def _kind(engine: str, job: Job) -> str:
    """'recursive' or 'history': the state an engine keeps for this scheme."""
    recursive = job.scheme.recursion is not None and job.kernel_length is None
    continues_history = job.state is not None and job.state.kind == "history"
    return "recursive" if engine in ("exact", "fft") and recursive and not continues_history else "history"


def _history_length(job: Job) -> int:
    if job.kernel_length is not None:
        return int(job.kernel_length)
    if job.state is not None and job.state.kernel_length:
        return int(job.state.kernel_length)
    return job.scheme.auto_length(job.params, job.dt)


def _links(topo: Topology, device, cache: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(reaches that flow into another, the reach each flows into), int64 on ``device`` (kept in ``cache``)."""
    key = ("links", str(device))
    if cache is not None and key in cache:
        return cache[key]
    down = topo.on(device)["downstream"]
    has = down >= 0
    links = (torch.nonzero(has).flatten(), down[has])
    if cache is not None:
        cache[key] = links
    return links


def _upstream_sum(topo: Topology, series: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
    """Inflow U [B, N, ...] of every reach from the outflow Q [B, N, ...] of every reach."""
    src, dst = _links(topo, series.device, cache)
    if series.ndim == 3 and series.shape[-1] == 1:  # one step: a [B, N] sum (index_add over a size-1 axis is slow)
        flat = series[..., 0]
        return torch.zeros_like(flat).index_add_(1, dst, flat.index_select(1, src)).unsqueeze(-1)
    return torch.zeros_like(series).index_add_(1, dst, series.index_select(1, src))


def _state_in(state: RoutingState | None, topo: Topology, device, cache: dict | None = None):
    """Engine-side warm state: the filter tensor, or (U, q, Q) histories."""
    if state is None:
        return None
    st = state.to(device)
    if st.kind == "recursive":
        return st.tensors["filter"]
    q_out = st.tensors["outflow"]
    return (_upstream_sum(topo, q_out, cache), st.tensors["runoff"], q_out)


def _state_out(kind: str, job: Job, out: torch.Tensor, kernel_length: int | None) -> dict:
    """The state after the last step, from the routed discharge (the same for every engine). Only the steps
    kept are converted to float64 (the last one, or the last L - 1), not the whole chunk."""
    if kind == "recursive":
        last = out.detach()[..., -1:].to(torch.float64)
        runoff = job.runoff.detach()[..., -1].to(torch.float64)
        return {"filter": torch.stack([last[..., 0], _upstream_sum(job.topo, last, job.cache)[..., 0], runoff], -1)}
    keep = int(kernel_length) - 1
    tail = max(keep, 0)
    q_out = (out.detach()[..., -tail:] if tail else out.detach()[..., :0]).to(torch.float64)
    runoff = (job.runoff.detach()[..., -tail:] if tail else job.runoff.detach()[..., :0]).to(torch.float64)
    if job.state is not None:
        prev = job.state.to(out.device).tensors
        q_out = torch.cat([prev["outflow"], q_out], -1)
        runoff = torch.cat([prev["runoff"], runoff], -1)
    if q_out.shape[-1] < keep:
        pad = keep - q_out.shape[-1]
        q_out, runoff = torch.nn.functional.pad(q_out, (pad, 0)), torch.nn.functional.pad(runoff, (pad, 0))
    start = q_out.shape[-1] - keep
    return {"outflow": q_out[..., start:].contiguous(), "runoff": runoff[..., start:].contiguous()}


def _run_one(engine: str, job: Job):
    b, n, t_len = job.runoff.shape
    uses_state = job.state is not None or job.want_state
    kind = _kind(engine, job) if uses_state else None
    if job.state is not None:
        job.state.check(kind=kind, scheme=job.scheme.name, dt=job.dt, n_reaches=n, batch=b)
    kernel_length = job.kernel_length
    if kind == "history" and kernel_length is None:
        kernel_length = _history_length(job)
    st_in = _state_in(job.state, job.topo, job.runoff.device, job.cache)
    fir_hist = st_in[:2] if isinstance(st_in, tuple) else st_in
    scheme = job.recursion_scheme()
    if engine == "exact":
        from .exact import route_exact

        out, _, _path = route_exact(job.topo, job.runoff, scheme, job.params, job.dt,
                                    kernels_fn=lambda L: _cast(job.kernels(max(L, t_len), kernel_length),
                                                               job.runoff.dtype, exact_path=True),
                                    kernel_length=kernel_length, state=fir_hist, want=kind, progress=job.progress,
                                    cache=job.cache)
    elif engine == "fft":
        from .fft import route_fft

        length = kernel_length or t_len
        kern = _cast(job.kernels(max(length, t_len), kernel_length), job.runoff.dtype)
        coef = scheme.recursion(job.params, job.dt).stacked() if kind == "recursive" else None
        out, _ = route_fft(job.topo, job.runoff, kern, coef=coef, filter_state=st_in if kind == "recursive" else None,
                           history=fir_hist if kind == "history" else None, progress=job.progress)
    elif engine == "closure":
        from .closure import route_closure

        out = route_closure(job, kernel_length=kernel_length, history=st_in)
    else:
        raise AssertionError(engine)
    new_state = None
    if job.want_state:
        steps = (job.state.steps if job.state is not None else 0) + t_len
        new_state = RoutingState(kind=kind, scheme=job.scheme.name, dt=job.dt, n_reaches=n, batch=b, steps=steps,
                                 tensors=_state_out(kind, job, out, kernel_length),
                                 kernel_length=kernel_length if kind == "history" else None)
    return out, new_state


def _cast(kern, dtype, exact_path: bool = False):
    """Kernels for an engine: the compiled paths take float64 (they accumulate in double); torch FFT
    paths compute in the runoff's dtype."""
    from ..irf import Kernels

    if exact_path:  # the compiled and Triton paths take float64 kernels; the FFT path computes in float64
        return kern
    h = kern.h.to(dtype)
    return Kernels(h, h if kern.g is kern.h else kern.g.to(dtype))


def resolve(engine: str) -> str:
    """The engine that runs: ``auto`` is ``exact`` on every device and scheme.

    Measured (docs/routing-engines.md, "closure"): the exact engine is faster than the closure engine
    on every shape measured, those that favour the closure engine included (short kernels, few levels:
    15-280x on CPU; pure lag at 100k x 1,000 on GPU: 256 ms against 7.8 ms), with less memory; the closure
    engine's work is pairs x support per step against the exact engine's reaches x support. Timing both
    on first use would cost the closure engine's seconds and gigabytes for nothing. ``closure`` stays
    available by name.
    """
    return "exact" if engine == "auto" else engine


def run(engine: str, job: Job):
    """Route ``job`` with ``engine`` ('auto' resolved here); returns (Q [B, N, T], RoutingState or None).
    A network whose rivers split is routed by ``dag.py``: in one compiled pass (the exact engine on the CPU,
    recursive schemes) or stage by stage by the same engine."""
    if job.network.splits is not None:
        from .dag import route_dag

        # the stages route sub-networks with their own params: nothing of the whole network's cache applies
        return route_dag(resolve(engine), dataclasses.replace(job, cache=None), _run_one)
    return _run_one(resolve(engine), job)
