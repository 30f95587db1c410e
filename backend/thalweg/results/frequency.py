"""Flow statistics for planners: annual maxima, flood frequency by L-moments, low flows, exceedance.

Everything works on a :class:`Discharge` (end-of-step Q per reach, m3/s) and is vectorised over reaches.

Conventions
-----------
- **Water year**: it starts on the first day of ``water_year_start`` (a month, 1-12; default 10, October, as
  the USGS) and is named after the calendar year in which it ENDS (water year 2015 = 2014-10-01 .. 2015-09-30).
  With ``water_year_start=1`` water years are calendar years. A step belongs to the water year holding the
  end of the step. Only complete water years count (at least ``min_coverage`` of their steps routed, default
  0.95): a run that starts in March gives no maximum for that water year.
- **Flood frequency** by the method of L-moments (Hosking 1990; Hosking & Wallis 1997, "Regional Frequency
  Analysis", ch. 2 and appendix A): sample L-moments from unbiased probability-weighted moments, then
  - Gumbel (EV1): scale a = l2 / ln 2, location u = l1 - 0.5772 a; Q(F) = u - a ln(-ln F);
  - GEV: shape k from Hosking, Wallis & Wood (1985)'s approximation k = 7.8590 c + 2.9554 c^2 with
    c = 2 / (3 + t3) - ln 2 / ln 3; a = l2 k / ((1 - 2^-k) Gamma(1 + k)); u = l1 - a (1 - Gamma(1 + k)) / k;
    Q(F) = u + a (1 - (-ln F)^k) / k (k > 0: bounded upper tail; the sign is scipy's ``genextreme`` ``c``).
  The flow of return period T years is Q(1 - 1/T). Confidence intervals by bootstrap: the annual maxima of
  each reach resampled with replacement (``n_boot`` times, seeded), refitted, and the percentiles of the
  refitted quantiles taken (percentile interval).
- **Low flows**: MAM7, the mean over complete water years of the annual minimum of the 7-day moving mean
  (the window in steps is 7 days / dt; needs dt <= 1 day), and the lowest 7-day mean of the run.
- **Flow-duration quantiles**: q05 / q50 / q95 exceeded 5 / 50 / 95 % of the time (``summary.py``).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from ..errors import InputError, count, format_ids, opt
from .discharge import Discharge
from .summary import summarize

__all__ = ["AnnualMaxima", "annual_maxima", "lmoments", "fit_gumbel", "fit_gev", "gumbel_quantile", "gev_quantile",
           "return_period_flows", "flow_statistics", "exceedance", "DISTRIBUTIONS", "MIN_YEARS",
           "DEFAULT_RETURN_PERIODS", "STATISTICS", "run_period"]

DISTRIBUTIONS = ("gev", "gumbel")
# fewest complete years for a fit: two parameters from 5 maxima is already loose; a shape parameter needs more
MIN_YEARS = {"gumbel": 5, "gev": 10}
DEFAULT_RETURN_PERIODS = (2, 5, 10, 20, 50, 100)
# which statistics flow_statistics computes: all (refused when the run is too short for one of them), auto (what
# the run allows, the others skipped and said so), duration (mean, max, flow-duration quantiles, min7: no years)
STATISTICS = ("auto", "all", "duration")
_EULER = 0.5772156649015329


@dataclasses.dataclass(frozen=True)
class AnnualMaxima:
    """Annual maxima [N, Y] (m3/s) of complete water years ``years`` [Y] (named by the year they end in),
    with the end of the step holding each maximum (``when`` [N, Y], datetime64[ns])."""

    ids: np.ndarray
    years: np.ndarray
    values: np.ndarray
    when: np.ndarray
    water_year_start: int


def _water_years(time: np.ndarray, start_month: int) -> np.ndarray:
    """Water year of each step end: the calendar year in which the water year ends."""
    if not 1 <= int(start_month) <= 12:
        raise InputError(f"the water year must start in a month 1..12, not {start_month}.",
                         hint=f"Pass {opt('flow_statistics.water_year_start', 10)} (October) or 1 (January).")
    # the instant that closes a step belongs to that step: shift by 1 ns so a stamp at midnight on the first
    # day of the water year counts for the year before
    t = (np.asarray(time, dtype="datetime64[ns]") - np.timedelta64(1, "ns"))
    year = t.astype("datetime64[Y]").astype(np.int64) + 1970
    month = t.astype("datetime64[M]").astype(np.int64) % 12 + 1
    return year + (month >= start_month).astype(np.int64) if start_month > 1 else year


def annual_maxima(discharge: Discharge, *, water_year_start: int = 10, min_coverage: float = 0.95) -> AnnualMaxima:
    """Maximum of each complete water year for every reach (see the module's conventions)."""
    wy = _water_years(discharge.time, water_year_start)
    years, counts = np.unique(wy, return_counts=True)
    steps_per_day = 86400.0 / discharge.dt
    keep = []
    for y, c in zip(years, counts):
        first = np.datetime64(f"{y - 1 if water_year_start > 1 else y}-{water_year_start:02d}-01", "D")
        last = np.datetime64(f"{y + 1 if water_year_start == 1 else y}-{water_year_start:02d}-01", "D")
        expected = (last - first).astype(np.int64) * steps_per_day
        if c >= min_coverage * expected:
            keep.append(y)
    keep = np.asarray(keep, dtype=np.int64)
    q = discharge.values
    values = np.full((discharge.n_reaches, keep.size), np.nan)
    when = np.full((discharge.n_reaches, keep.size), np.datetime64("NaT"), dtype="datetime64[ns]")
    for j, y in enumerate(keep):
        cols = np.flatnonzero(wy == y)
        block = np.where(np.isfinite(q[:, cols]), q[:, cols], -np.inf)
        arg = np.argmax(block, axis=1)
        best = block[np.arange(q.shape[0]), arg]
        ok = np.isfinite(best)
        values[ok, j] = best[ok]
        when[ok, j] = discharge.time[cols[arg[ok]]]
    return AnnualMaxima(discharge.ids.copy(), keep, values, when, int(water_year_start))


def lmoments(sample: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample L-moments l1, l2 and L-skewness t3 along ``axis`` from unbiased probability-weighted moments.

    Parameters
    ----------
    sample : array [..., Y] (NaN-free along ``axis``; Y >= 3).
    """
    x = np.sort(np.moveaxis(np.asarray(sample, dtype=np.float64), axis, -1), axis=-1)
    n = x.shape[-1]
    if n < 3:
        raise AssertionError(f"L-moments up to t3 need at least 3 values, got {n}")
    j = np.arange(n, dtype=np.float64)  # rank - 1 in ascending order
    b0 = x.mean(axis=-1)
    b1 = (x * j / (n - 1)).sum(axis=-1) / n
    b2 = (x * j * (j - 1) / ((n - 1) * (n - 2))).sum(axis=-1) / n
    l1, l2, l3 = b0, 2 * b1 - b0, 6 * b2 - 6 * b1 + b0
    with np.errstate(divide="ignore", invalid="ignore"):
        t3 = np.where(l2 > 0, l3 / l2, 0.0)
    return l1, l2, t3


def fit_gumbel(sample: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Gumbel location and scale by L-moments."""
    l1, l2, _ = lmoments(sample, axis)
    scale = l2 / math.log(2.0)
    return l1 - _EULER * scale, scale


def fit_gev(sample: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GEV location, scale and shape k (Hosking's sign: scipy's ``genextreme`` c) by L-moments."""
    import torch

    l1, l2, t3 = lmoments(sample, axis)
    c = 2.0 / (3.0 + t3) - math.log(2.0) / math.log(3.0)
    k = 7.8590 * c + 2.9554 * c * c
    gam = torch.from_numpy(np.ascontiguousarray(1.0 + k, dtype=np.float64)).lgamma().exp().numpy()
    small = np.abs(k) < 1e-6  # the Gumbel limit
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(small, l2 / math.log(2.0), l2 * k / ((1.0 - 2.0 ** (-k)) * gam))
        loc = np.where(small, l1 - _EULER * l2 / math.log(2.0), l1 - scale * (1.0 - gam) / k)
    return loc, scale, k


def gumbel_quantile(loc, scale, prob) -> np.ndarray:
    """Gumbel quantile at non-exceedance probability ``prob``."""
    return np.asarray(loc) - np.asarray(scale) * np.log(-np.log(prob))


def gev_quantile(loc, scale, shape, prob) -> np.ndarray:
    """GEV quantile at non-exceedance probability ``prob`` (Hosking's parameterisation)."""
    loc, scale, shape = (np.asarray(v, dtype=np.float64) for v in (loc, scale, shape))
    y = -np.log(prob)
    small = np.abs(shape) < 1e-6
    with np.errstate(divide="ignore", invalid="ignore"):
        general = loc + scale * (1.0 - y ** shape) / np.where(small, 1.0, shape)
    return np.where(small, loc - scale * np.log(y), general)


def _fit_quantiles(sample: np.ndarray, distribution: str, probs: np.ndarray) -> np.ndarray:
    """Quantiles [..., P] of the distribution fitted to ``sample`` [..., Y]."""
    if distribution == "gumbel":
        loc, scale = fit_gumbel(sample)
        return gumbel_quantile(loc[..., None], scale[..., None], probs)
    loc, scale, k = fit_gev(sample)
    return gev_quantile(loc[..., None], scale[..., None], k[..., None], probs)


def _check_distribution(distribution: str) -> None:
    if distribution not in DISTRIBUTIONS:
        raise InputError(f"unknown distribution '{distribution}'.",
                         hint=f"Pass {opt('return_period_flows.distribution', 'gev')} or 'gumbel'.")


def _check_years(n_years: int, distribution: str, what: str, more: str = "") -> None:
    need = MIN_YEARS[distribution]
    if n_years < need:
        raise InputError(
            f"{what} has {count(n_years, 'complete water year')}; a {distribution.upper()} fit needs at least {need}.",
            hint=f"Route a longer period (at least {need} complete water years), or use "
                 f"{opt('return_period_flows.distribution', 'gumbel')} (needs {MIN_YEARS['gumbel']}){more}.")


def _stamp(t) -> str:
    return np.datetime_as_string(np.datetime64(t, "m")).replace("T", " ")


def run_period(discharge: Discharge) -> str:
    """'steps ending 2014-09-15 00:00 .. 2015-01-15 00:00': the time stamps of the file (ends of steps)."""
    if discharge.n_steps == 0:
        return "no steps"
    return f"steps ending {_stamp(discharge.time[0])} .. {_stamp(discharge.time[-1])}"


def _water_year_words(start_month: int) -> str:
    import calendar

    if start_month == 1:
        return "calendar years"
    return f"{calendar.month_name[start_month]} to {calendar.month_name[start_month - 1]}"


def return_period_flows(maxima: AnnualMaxima, return_periods: Sequence[float] = DEFAULT_RETURN_PERIODS, *,
                        distribution: str = "gev", n_boot: int = 200, confidence: float = 0.9,
                        rng: np.random.Generator | None = None, chunk: int = 1024) -> dict[str, np.ndarray]:
    """Flows of the given return periods for every reach, with bootstrap confidence intervals.

    Parameters
    ----------
    maxima : annual maxima from :func:`annual_maxima` (reaches with a missing year are NaN).
    return_periods : years, each > 1.
    distribution : 'gev' or 'gumbel' (fitted by L-moments).
    n_boot : bootstrap resamples (0: no interval).
    confidence : width of the interval (0.9: the 5th and 95th percentiles of the refitted quantiles).
    rng : the random generator of the bootstrap (default: seeded 0, so the same call gives the same numbers).

    Returns
    -------
    dict with ``flow`` [N, P], ``lower`` [N, P], ``upper`` [N, P] (m3/s; NaN without bootstrap), and
    ``params`` [N, 2 or 3] (location, scale[, shape]).
    """
    _check_distribution(distribution)
    periods = np.asarray(return_periods, dtype=np.float64)
    if periods.size == 0 or np.any(~(periods > 1)):
        raise InputError(f"return periods must be years greater than 1, not {format_ids(periods.tolist())}.",
                         hint=f"Pass for example {opt('return_period_flows.return_periods', '[2, 10, 100]')}.")
    if not 0 < confidence < 1:
        raise InputError(f"confidence must be between 0 and 1, not {confidence}.",
                         hint=f"Pass {opt('return_period_flows.confidence', 0.9)}.")
    _check_years(maxima.years.size, distribution, "the run")
    rng = np.random.default_rng(0) if rng is None else rng
    probs = 1.0 - 1.0 / periods
    x = maxima.values
    n, y = x.shape
    flow = np.full((n, periods.size), np.nan)
    lower, upper = np.full_like(flow, np.nan), np.full_like(flow, np.nan)
    n_par = 3 if distribution == "gev" else 2
    params = np.full((n, n_par), np.nan)
    ok = np.isfinite(x).all(axis=1)
    rows = np.flatnonzero(ok)
    alpha = (1.0 - confidence) / 2.0
    # one resampling of year indices shared by all reaches: the years are the unit of sampling, and a shared
    # draw keeps the intervals of neighbouring reaches consistent
    draws = rng.integers(0, y, size=(n_boot, y)) if n_boot > 0 else None
    for start in range(0, rows.size, chunk):
        sel = rows[start:start + chunk]
        sample = x[sel]
        if distribution == "gumbel":
            params[sel] = np.stack(fit_gumbel(sample), axis=1)
        else:
            params[sel] = np.stack(fit_gev(sample), axis=1)
        flow[sel] = _fit_quantiles(sample, distribution, probs)
        if draws is not None:
            boot = _fit_quantiles(sample[:, draws], distribution, probs)  # [n, B, P]
            lower[sel] = np.nanquantile(boot, alpha, axis=1)
            upper[sel] = np.nanquantile(boot, 1.0 - alpha, axis=1)
    return {"flow": flow, "lower": lower, "upper": upper, "params": params}


def _seven_day_minima(discharge: Discharge, water_year: np.ndarray, years: np.ndarray) -> tuple[np.ndarray, ...]:
    """Annual minima [N, Y] of the 7-day moving mean (windows ending in each water year) and the run's lowest."""
    window = int(round(7 * 86400.0 / discharge.dt))
    if window < 1 or discharge.dt > 86400.0:
        raise InputError(f"7-day low flows need steps of at most one day; this run's step is {discharge.dt:g} s.",
                         hint="Route at a daily or finer step for low-flow statistics.")
    q = discharge.values.astype(np.float64)
    n, t = q.shape
    if t < window:
        nan = np.full(n, np.nan)
        return np.full((n, years.size), np.nan), nan
    c = np.cumsum(np.concatenate([np.zeros((n, 1)), q], axis=1), axis=1)
    moving = (c[:, window:] - c[:, :-window]) / window  # [N, T - window + 1], window ending at step window-1+i
    wy_end = water_year[window - 1:]
    minima = np.full((n, years.size), np.nan)
    for j, yv in enumerate(years):
        cols = wy_end == yv
        if cols.any():
            minima[:, j] = moving[:, cols].min(axis=1)
    return minima, moving.min(axis=1)


def flow_statistics(discharge: Discharge, *, return_periods: Sequence[float] = DEFAULT_RETURN_PERIODS,
                    distribution: str = "gev", water_year_start: int = 10, n_boot: int = 200,
                    confidence: float = 0.9, rng: np.random.Generator | None = None, min_coverage: float = 0.95,
                    statistics: str | None = None):
    """Per-reach statistics a planner asks for: the run's mean and maximum, flow-duration quantiles, low flows,
    mean annual flow, and the flows of the given return periods with bootstrap intervals (see the module's
    conventions).

    Parameters
    ----------
    statistics : which to compute (:data:`STATISTICS`): ``'all'`` (the default when None), refused when the run
        is too short for one of them; ``'auto'``: what the run allows, ``attrs['skipped']`` saying what was left
        out and why (years needed and present); ``'duration'``: ``mean``, ``max``, ``q05``/``q50``/``q95`` and
        ``min7`` only, which need no complete water year.

    Returns
    -------
    pandas.DataFrame indexed by ``reach_id``, all m3/s: ``mean`` and ``max`` (the whole run), ``q05``/``q50``/
    ``q95``, ``min7`` (the run's lowest 7-day mean), ``mean_annual`` (mean over complete water years),
    ``mam7``, and for each return period T: ``q{T}y`` with ``q{T}y_lo`` and ``q{T}y_hi``. ``attrs`` carries the
    method, the years used, the confidence level and ``skipped`` (a list of ``{kind, columns, reason}``, kind
    'annual', 'frequency' or 'low flows').

    Raises
    ------
    InputError when the run holds fewer complete water years than a statistic asked for needs (saying how many
    it has and needs), for steps longer than a day (low flows), or for bad options.
    """
    import pandas as pd

    mode = statistics or "all"
    if mode not in STATISTICS:
        raise InputError(f"unknown statistics '{mode}'.",
                         hint=f"Pass {opt('flow_statistics.statistics', 'auto')}, 'all' or 'duration'.")
    more = (f", or {opt('flow_statistics.statistics', 'auto')} for the statistics this run allows"
            if statistics is not None else "")
    _check_distribution(distribution)
    periods = np.asarray(return_periods, dtype=np.float64)
    maxima = annual_maxima(discharge, water_year_start=water_year_start, min_coverage=min_coverage)
    n_years, need = int(maxima.years.size), MIN_YEARS[distribution]
    what = f"the run ({run_period(discharge)})"
    seasons = f"water years {_water_year_words(int(water_year_start))}"
    skipped: list[dict[str, str]] = []
    frequency_names = [f"q{p:g}y" for p in periods.tolist()]
    annual = mode != "duration" and (mode == "all" or n_years >= 1)
    frequency = mode != "duration" and (mode == "all" or n_years >= need)
    if mode == "all":
        _check_years(n_years, distribution, what, more)
    elif mode == "auto":
        if not annual:
            skipped.append({"kind": "annual", "columns": "mean_annual, mam7",
                            "reason": f"they need at least 1 complete water year ({seasons}); {what} has 0"})
        if not frequency:
            skipped.append({"kind": "frequency", "columns": f"{', '.join(frequency_names)} (flood frequency)",
                            "reason": f"a {distribution.upper()} fit needs at least {need} complete water years "
                                      f"({seasons}); {what} has {n_years}"})
    rp = (return_period_flows(maxima, periods, distribution=distribution, n_boot=n_boot, confidence=confidence,
                              rng=rng) if frequency else None)
    wy = _water_years(discharge.time, water_year_start)
    complete = np.isin(wy, maxima.years)
    q = discharge.values.astype(np.float64)
    n = q.shape[0]
    duration = summarize(discharge)  # the run's mean, max and flow-duration quantiles: the map summary's numbers
    cols: dict[str, np.ndarray] = {name: duration[name].to_numpy(np.float64)
                                   for name in ("mean", "max", "q05", "q50", "q95")}
    low = mode == "all" or discharge.dt <= 86400.0
    if low:
        minima, lowest = _seven_day_minima(discharge, wy, maxima.years)
        cols["min7"] = lowest
    else:
        skipped.append({"kind": "low flows", "columns": "min7, mam7" if annual else "min7",
                        "reason": f"7-day low flows need steps of at most one day; this run's step is "
                                  f"{discharge.dt:g} s"})
    if annual:
        cols["mean_annual"] = q[:, complete].mean(axis=1)
        if low:
            cols["mam7"] = np.nanmean(minima, axis=1) if np.isfinite(minima).any() else np.full(n, np.nan)
    if rp is not None:
        for j, name in enumerate(frequency_names):
            cols[name] = rp["flow"][:, j]
            cols[f"{name}_lo"] = rp["lower"][:, j]
            cols[f"{name}_hi"] = rp["upper"][:, j]
    frame = pd.DataFrame(cols, index=pd.Index(discharge.ids, name="reach_id"))
    method = (f"{distribution.upper()} by L-moments (Hosking & Wallis 1997); bootstrap percentile interval of "
              f"{n_boot} resamples of the annual maxima at {confidence:.0%}" if rp is not None
              else "flow duration of the whole run (no flood-frequency fit)")
    frame.attrs.update({
        "method": method,
        "water_year_start_month": int(water_year_start),
        "years": [int(v) for v in maxima.years] if annual else [],
        "units": "m3 s-1",
        "statistics": mode,
        "period": run_period(discharge),
        "skipped": skipped,
    })
    return frame


def exceedance(discharge: Discharge, threshold):
    """Where and when discharge exceeds a threshold, per reach (for a warning-style map).

    Parameters
    ----------
    threshold : m3/s, a number or an array [N] in the discharge's reach order (e.g. a return-period flow or a
        network field); NaN thresholds leave a reach out.

    Returns
    -------
    pandas.DataFrame indexed by ``reach_id``: ``threshold``, ``exceeded`` (bool), ``first`` (end of the first
    step above the threshold, NaT if never), ``duration_h`` (hours above it in all), ``events`` (separate
    spells above it), ``peak`` (the run's maximum) and ``peak_excess`` (peak - threshold, m3/s).
    """
    import pandas as pd

    q = discharge.values.astype(np.float64)
    thr = np.broadcast_to(np.asarray(threshold, dtype=np.float64), (q.shape[0],)).copy() \
        if np.ndim(threshold) == 0 else np.asarray(threshold, dtype=np.float64)
    if thr.shape != (q.shape[0],):
        raise InputError(f"the threshold has {thr.size:,} values; the discharge has {q.shape[0]:,} reaches.",
                         hint="Give one threshold, or one per reach in the discharge's order.")
    above = q > thr[:, None]
    any_above = above.any(axis=1)
    first_idx = np.argmax(above, axis=1)
    first = np.where(any_above, discharge.time[first_idx], np.datetime64("NaT", "ns"))
    starts = above & ~np.concatenate([np.zeros((q.shape[0], 1), bool), above[:, :-1]], axis=1)
    peak = np.nanmax(np.where(np.isfinite(q), q, -np.inf), axis=1) if q.shape[1] else np.full(q.shape[0], np.nan)
    return pd.DataFrame({
        "threshold": thr, "exceeded": any_above, "first": first.astype("datetime64[ns]"),
        "duration_h": above.sum(axis=1) * discharge.dt / 3600.0, "events": starts.sum(axis=1),
        "peak": peak, "peak_excess": peak - thr,
    }, index=pd.Index(discharge.ids, name="reach_id"))
