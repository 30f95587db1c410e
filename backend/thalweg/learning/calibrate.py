"""Calibrate routing parameters against observed discharge by gradient descent.

Each calibrated parameter is the prior times one multiplier per zone, ``p = prior * exp(theta[zone])``,
clamped to the parameter's physical bounds in log space. Zones are the sub-basins between gauges (every reach
belongs to the nearest gauge at or downstream of it) or one global zone. The loss is the mean over gauges of
``1 - NSE`` (ROUTING.md section 5), minimised with Adam through the differentiable routing; the best
multipliers seen are kept.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import Cancelled, InputError, ThalwegError, ThalwegWarning, format_ids
from ..irf import Scheme, get_scheme
from ..network import RiverNetwork
from .gauges import check_series
from ..params.checks import check_calibrated, check_missing, default_calibrated

__all__ = ["calibrate", "CalibrationResult", "gauge_zones", "default_calibrated", "ZONINGS", "MIN_OBSERVATIONS"]

ZONINGS = ("gauges", "global")
MIN_OBSERVATIONS = 10
PATIENCE = 25  # iterations without a relative improvement > TOLERANCE: converged
TOLERANCE = 1e-6


@dataclasses.dataclass
class CalibrationResult:
    """What :func:`calibrate` found.

    Attributes
    ----------
    params : name -> float64 [N], every parameter of the scheme per reach (calibrated ones at their best value,
        the others at their prior), SI units.
    zones : int64 [N], the zone of each reach; -1 where no gauge is downstream (not calibrated).
    zone_gauges : int64 [Z], reach id of the gauge that closes each zone (-1 for the one zone of 'global').
    multipliers : name -> float64 [Z], ``exp(theta)`` of each calibrated parameter per zone (before clamping
        to the parameter's bounds).
    history : one dict per iteration: ``iteration`` (1-based) and ``loss`` (mean 1 - NSE over gauges).
    iterations : iterations run.
    metrics_before, metrics_after : gauge reach id -> {"nse", "kge", "pbias"} at the prior and at the result,
        over the valid observations after the warm-up.
    converged : True when the loss stopped improving before the iteration limit.
    calibrated : names of the calibrated parameters.
    loss : the best loss.
    """

    params: dict[str, np.ndarray]
    zones: np.ndarray
    zone_gauges: np.ndarray
    multipliers: dict[str, np.ndarray]
    history: list[dict[str, float]]
    iterations: int
    metrics_before: dict[int, dict[str, float]]
    metrics_after: dict[int, dict[str, float]]
    converged: bool
    calibrated: list[str] = dataclasses.field(default_factory=list)
    loss: float = math.nan


def gauge_zones(network: RiverNetwork, gauge_positions: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Zone of each reach: the nearest gauge at or downstream of it.

    Returns ``(zones int64 [N] with -1 where no gauge is downstream, positions [Z] of each zone's gauge)``.
    Walks the topological levels from outlets to headwaters (a reach's downstream neighbour has a higher level),
    so each level takes its zone from the level below it, vectorised over the reaches of a level.
    """
    positions = np.asarray(list(dict.fromkeys(int(p) for p in np.asarray(gauge_positions).ravel())), dtype=np.int64)
    own = np.full(network.n_reaches, -1, dtype=np.int64)
    own[positions] = np.arange(positions.size)
    zones = np.full(network.n_reaches, -1, dtype=np.int64)
    ds = network.downstream
    for group in reversed(network.level_groups):
        down = ds[group]
        inherited = np.where(down >= 0, zones[np.clip(down, 0, None)], -1)
        zones[group] = np.where(own[group] >= 0, own[group], inherited)
    return zones, positions


def _label(i: int, reach_ids: np.ndarray, names: Sequence[str] | None) -> str:
    reach = int(reach_ids[i])
    return f"gauge {names[i]} (reach {reach})" if names is not None else f"the gauge on reach {reach}"


def _check_observed(observed: np.ndarray, reach_ids: np.ndarray, warmup: int,
                    names: Sequence[str] | None) -> np.ndarray:
    """Observations with the warm-up masked; errors for gauges too sparse or constant to calibrate on."""
    obs = np.array(observed, dtype=np.float64)
    obs[~np.isfinite(obs)] = np.nan
    obs[:, :warmup] = np.nan
    counts = np.isfinite(obs).sum(axis=1)
    few = np.flatnonzero(counts < MIN_OBSERVATIONS)
    if few.size:
        which = [_label(i, reach_ids, names) for i in few]
        ids = [names[i] for i in few] if names is not None else reach_ids[few].tolist()
        numbers = ", ".join(str(int(counts[i])) for i in few[:3])
        raise InputError(
            f"{', '.join(which[:3])}{f' and {few.size - 3} more' if few.size > 3 else ''} "
            f"{'has' if few.size == 1 else 'have'} {numbers} valid observations after the warm-up of {warmup} "
            f"steps; calibration needs at least {MIN_OBSERVATIONS} per gauge.", field="observed", ids=ids,
            hint="Give observations overlapping the runoff period, shorten the warm-up, or leave that gauge out.")
    with np.errstate(invalid="ignore"):
        spread = np.nanmax(obs, axis=1) - np.nanmin(obs, axis=1)
    flat = np.flatnonzero(~(spread > 0))
    if flat.size:
        ids = [names[i] for i in flat] if names is not None else reach_ids[flat].tolist()
        raise InputError(f"{_label(int(flat[0]), reach_ids, names)} has constant observations, so its NSE is "
                         f"undefined ({format_ids(ids)}).", field="observed", ids=ids,
                         hint="Calibrate on gauges whose observations vary, or leave those gauges out.")
    return obs


def _metrics(q: np.ndarray, obs: np.ndarray, reach_ids: np.ndarray) -> dict[int, dict[str, float]]:
    from ..metrics import kge, nse, pbias

    values = {"nse": nse(q, obs), "kge": kge(q, obs), "pbias": pbias(q, obs)}
    return {int(r): {name: float(v[i]) for name, v in values.items()} for i, r in enumerate(reach_ids)}


def calibrate(network: RiverNetwork, runoff: Any, params: Mapping[str, Any],
              scheme: str | Scheme = "muskingum_nonneg", *, dt: float, gauge_reaches: Sequence[int], observed: Any,
              parameters: Sequence[str] | None = None,
              zones: str = "gauges", iterations: int = 200, learning_rate: float = 0.05, warmup: int = 0,
              engine: str = "auto", device: Any = None, progress: Callable[[float, str], None] | None = None,
              should_stop: Callable[[], bool] | None = None, gauge_names: Sequence[str] | None = None
              ) -> CalibrationResult:
    """Fit per-zone multipliers of routing parameters to observed discharge.

    Parameters
    ----------
    network : the river network (N reaches).
    runoff : [N, T] lateral runoff, m3/s (mean over each step), reaches in network order.
    params : prior of every scheme parameter, arrays [N] or scalars, SI (e.g. ``thalweg.params.resolve_params``).
    scheme : routing scheme name or Scheme.
    dt : step length, s.
    gauge_reaches : reach ids [G] of the gauged reaches (as ``route(at=...)`` takes them).
    observed : [G, T] observed discharge, m3/s, aligned to the routed Q (end of each step); NaN where missing.
    parameters : names of the parameters to calibrate; default those in s or m/s (:func:`default_calibrated`).
    zones : 'gauges' (one multiplier per sub-basin between gauges) or 'global' (one for every reach).
    iterations : most Adam steps; fewer when the loss stops improving (relative gain <= 1e-6 over 25 steps).
    learning_rate : Adam step on the log-multipliers.
    warmup : first steps left out of the loss and metrics (initial state spin-up).
    engine, device : as in :func:`thalweg.routing.route`.
    progress : ``progress(fraction, message)`` after each iteration.
    should_stop : polled before each iteration; True raises ``thalweg.errors.Cancelled``.
    gauge_names : gauge ids [G] used in messages (default: the reach ids).

    Returns
    -------
    CalibrationResult

    Raises
    ------
    InputError : no gauges, ``observed`` not [G, T], an unknown parameter name, a gauge with fewer than 10 valid
        observations after the warm-up or with constant observations, or a loss that is not finite.
    """
    import torch

    from ..metrics import nse
    from ..routing import resolve_device, route

    sch = get_scheme(scheme)
    report = progress or (lambda fraction, message: None)
    if np.asarray(gauge_reaches).size == 0:
        raise InputError("calibration needs at least one gauge; none was given.", field="gauges",
                         hint="Give gauges on reaches of the network with observed discharge.")
    gauge_pos = network.index_of(np.asarray(gauge_reaches).ravel(), what="gauge reach ids (gauge_reaches)")
    reach_ids = network.ids[gauge_pos]
    runoff_arr = runoff if isinstance(runoff, torch.Tensor) else np.asarray(runoff)
    n_steps, obs_in = check_series(network, runoff_arr, observed, gauge_pos.size, warmup, what="calibration")
    if zones not in ZONINGS:
        raise InputError(f"zones is '{zones}'.", field="zones", hint=f"Use one of: {', '.join(ZONINGS)}.")
    if isinstance(iterations, bool) or int(iterations) != iterations or iterations < 1:
        raise InputError(f"iterations must be a positive integer (got {iterations!r}).", field="iterations")
    if not (math.isfinite(learning_rate) and learning_rate > 0):
        raise InputError(f"learning_rate must be a positive number (got {learning_rate!r}).", field="learning_rate")
    names = check_calibrated(sch, parameters)
    check_missing(sch, params, what="a prior for parameter(s)")
    obs = _check_observed(obs_in, reach_ids, int(warmup), gauge_names)

    if zones == "gauges":
        zone_of, zone_pos = gauge_zones(network, gauge_pos)
        zone_gauges = network.ids[zone_pos]
    else:
        zone_of = np.zeros(network.n_reaches, dtype=np.int64)
        zone_gauges = np.array([-1], dtype=np.int64)
    n_zones = zone_gauges.size

    dev = resolve_device(device)
    q_in = torch.as_tensor(runoff_arr, dtype=torch.float32).to(dev)
    obs_t = torch.as_tensor(obs, dtype=torch.float32, device=dev)
    # zone -1 (no gauge downstream) reads a fixed theta of 0 appended after the Z free ones
    index = torch.as_tensor(np.where(zone_of >= 0, zone_of, n_zones), device=dev)
    spec = {p.name: p for p in sch.parameters}
    prior = {name: np.broadcast_to(np.asarray(params[name], dtype=np.float64), (network.n_reaches,)).copy()
             for name in sch.parameter_names}
    log_prior, bounds = {}, {}
    for name in names:
        p = prior[name]
        if not np.isfinite(p).all():
            bad = network.ids[~np.isfinite(p)]
            raise InputError(f"the prior of '{name}' is missing at {bad.size:,} reaches: {format_ids(bad)}.",
                             ids=bad.tolist(), hint="Give a prior value for every reach.")
        with np.errstate(divide="ignore"):
            log_prior[name] = torch.as_tensor(np.log(p), dtype=torch.float64, device=dev)
        lo, hi = spec[name].lower, spec[name].upper
        bounds[name] = (math.log(lo) if lo > 0 else -math.inf, math.log(hi))
    fixed = {name: torch.as_tensor(prior[name], dtype=torch.float64, device=dev)
             for name in sch.parameter_names if name not in names}
    theta = {name: torch.zeros(n_zones, dtype=torch.float64, device=dev, requires_grad=True) for name in names}
    pad = torch.zeros(1, dtype=torch.float64, device=dev)

    free = index == n_zones
    prior_t = {name: torch.as_tensor(prior[name], dtype=torch.float64, device=dev) for name in names}

    def values(th: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = dict(fixed)
        for name in names:
            logv = log_prior[name] + torch.cat([th[name], pad])[index]
            # the second clamp absorbs exp(log(bound)) rounding past the bound, which routing would refuse;
            # reaches without a gauge downstream keep their prior exactly (exp(log p) is not always p)
            value = torch.clamp(torch.exp(torch.clamp(logv, *bounds[name])), spec[name].lower, spec[name].upper)
            out[name] = torch.where(free, prior_t[name], value)
        return out

    at = reach_ids.tolist()

    def simulate(th: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return route(network, q_in, values(th), sch, dt=dt, engine=engine, at=at, dtype=torch.float32, device=dev)

    optimiser = torch.optim.Adam(list(theta.values()), lr=learning_rate)
    history: list[dict[str, float]] = []
    best_loss, best_theta = math.inf, {name: t.detach().clone() for name, t in theta.items()}
    best_trace: list[float] = []
    q_before = None
    converged = False
    for it in range(1, int(iterations) + 1):
        if should_stop is not None and should_stop():
            raise Cancelled(f"calibration iteration {it}")
        optimiser.zero_grad()
        with warnings.catch_warnings():
            if it > 1:  # the prior's warnings (e.g. negative Muskingum coefficients) are shown once
                warnings.simplefilter("ignore", ThalwegWarning)
            q = simulate(theta)
        loss = (1.0 - nse(q, obs_t)).mean()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise InputError(f"the calibration loss is not finite at iteration {it}.",
                             hint="Check the runoff and observations for extreme values, or lower the learning rate.")
        if q_before is None:
            q_before = q.detach().cpu().numpy().astype(np.float64)
        if value < best_loss:
            best_loss = value
            best_theta = {name: t.detach().clone() for name, t in theta.items()}
        history.append({"iteration": it, "loss": value})
        best_trace.append(best_loss)
        report(it / iterations, f"calibration iteration {it:,} of {int(iterations):,}: 1 - NSE {value:.4g}")
        if len(best_trace) > PATIENCE:
            old = best_trace[-1 - PATIENCE]
            if old - best_loss <= TOLERANCE * abs(old):
                converged = True
                break
        loss.backward()
        optimiser.step()

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        final = values(best_theta)
        q_after = simulate(best_theta).cpu().numpy().astype(np.float64)
    if not np.isfinite(q_after).all():  # the routing engines never give NaN for parameters within bounds
        raise ThalwegError("the calibrated routing gave non-finite discharge.")
    return CalibrationResult(
        params={name: final[name].detach().cpu().numpy().astype(np.float64) for name in sch.parameter_names},
        zones=zone_of, zone_gauges=np.asarray(zone_gauges, dtype=np.int64),
        multipliers={name: np.exp(best_theta[name].cpu().numpy()) for name in names},
        history=history, iterations=len(history),
        metrics_before=_metrics(q_before, obs, reach_ids), metrics_after=_metrics(q_after, obs, reach_ids),
        converged=converged, calibrated=names, loss=best_loss)
