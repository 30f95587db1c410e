"""Scenario comparison: per-reach differences of a statistic between two runs on the same network and period."""
from __future__ import annotations

import re

import numpy as np

from ..errors import InputError, count, format_ids, opt
from .discharge import Discharge

__all__ = ["compare", "most_changed", "STATISTICS"]

# statistics of summarize() and flow_statistics() that a comparison can take (q{T}y: any return period)
STATISTICS = ("mean", "max", "q05", "q50", "q95", "mean_annual", "mam7", "min7", "q{T}y")
_RETURN = re.compile(r"^q(\d+(?:\.\d+)?)y$")


def _aligned(baseline: Discharge, scenario: Discharge, names: tuple[str, str]) -> Discharge:
    """``scenario`` in ``baseline``'s reach order; InputError saying why two runs cannot be compared."""
    a, b = names
    base_ids, scen_ids = np.asarray(baseline.ids), np.asarray(scenario.ids)
    only_base = np.setdiff1d(base_ids, scen_ids)
    only_scen = np.setdiff1d(scen_ids, base_ids)
    if only_base.size or only_scen.size:
        parts = []
        if only_base.size:
            parts.append(f"{count(only_base.size, 'reach', 'reaches')} only in {a} ({format_ids(only_base)})")
        if only_scen.size:
            parts.append(f"{count(only_scen.size, 'reach', 'reaches')} only in {b} ({format_ids(only_scen)})")
        raise InputError(f"the runs are on different networks: {'; '.join(parts)}.",
                         ids=np.concatenate([only_base, only_scen])[:100].tolist(),
                         hint="Compare runs routed on the same network.")
    if not np.isclose(baseline.dt, scenario.dt, rtol=0, atol=1e-6):
        raise InputError(f"the runs have different steps: {a} {baseline.dt:g} s, {b} {scenario.dt:g} s.",
                         hint="Compare runs routed at the same step.")
    if baseline.n_steps != scenario.n_steps or not np.array_equal(baseline.time, scenario.time):
        span = lambda d: (f"{np.datetime_as_string(d.start_time[0], 's')} .. "  # noqa: E731
                          f"{np.datetime_as_string(d.time[-1], 's')}" if d.n_steps else "empty")
        raise InputError(f"the runs cover different periods: {a} {span(baseline)} ({baseline.n_steps:,} steps), "
                         f"{b} {span(scenario)} ({scenario.n_steps:,} steps).",
                         hint="Compare runs over the same period.")
    if np.array_equal(base_ids, scen_ids):
        return scenario
    rows = scenario.index_of(base_ids)
    return Discharge(scenario.values[rows], base_ids.copy(), scenario.time, scenario.dt, dict(scenario.attrs))


def _statistic(discharge: Discharge, statistic: str, options: dict) -> np.ndarray:
    from .frequency import flow_statistics
    from .summary import summarize

    if statistic in ("mean", "max", "q05", "q50", "q95"):
        return summarize(discharge)[statistic].to_numpy(np.float64)
    match = _RETURN.match(statistic)
    if match:
        frame = flow_statistics(discharge, return_periods=(float(match.group(1)),), n_boot=0, **options)
        return frame[f"q{float(match.group(1)):g}y"].to_numpy(np.float64)
    if statistic in ("mean_annual", "mam7", "min7"):  # min7 needs no complete year: what the run allows
        frame = flow_statistics(discharge, n_boot=0, statistics="auto", **options)
        if statistic not in frame:
            reason = next(s["reason"] for s in frame.attrs["skipped"] if statistic in s["columns"])
            raise InputError(f"{statistic} cannot be compared: {reason}.",
                             hint=f"Compare {opt('compare.statistic', 'mean')} (or max, q05, q50, q95, min7), "
                                  f"which need no complete water year, or route a longer period.")
        return frame[statistic].to_numpy(np.float64)
    raise InputError(f"unknown statistic '{statistic}'.",
                     hint=f"Pass {opt('compare.statistic', 'mean')}, one of {', '.join(STATISTICS)} "
                          "(q{T}y: the flow of return period T years, e.g. q100y).")


def compare(baseline: Discharge, scenario: Discharge, *, statistic: str = "mean",
            names: tuple[str, str] = ("the baseline", "the scenario"), **options):
    """Per-reach change of ``statistic`` from ``baseline`` to ``scenario``.

    Parameters
    ----------
    baseline, scenario : discharge of two runs on the same network (same reach ids, any order) and period.
    statistic : one of :data:`STATISTICS` (``q{T}y``: flow of return period T years, GEV by L-moments).
    names : how the two runs are called in messages (their file names, say).
    options : passed to :func:`thalweg.results.frequency.flow_statistics` for annual statistics
        (``water_year_start``, ``distribution``).

    Returns
    -------
    pandas.DataFrame indexed by ``reach_id`` in the baseline's order: ``baseline``, ``scenario`` (m3/s),
    ``difference`` (scenario - baseline, m3/s) and ``relative`` (difference / baseline; NaN where the baseline
    is 0). ``attrs['statistic']`` names the statistic.

    Raises
    ------
    InputError when the runs are on different networks, steps or periods (saying which), or for an unknown
    statistic.
    """
    import pandas as pd

    scenario = _aligned(baseline, scenario, names)
    base = _statistic(baseline, statistic, options)
    scen = _statistic(scenario, statistic, options)
    diff = scen - base
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(base != 0, diff / np.abs(base), np.nan)
    frame = pd.DataFrame({"baseline": base, "scenario": scen, "difference": diff, "relative": rel},
                         index=pd.Index(baseline.ids, name="reach_id"))
    frame.attrs.update({"statistic": statistic, "units": "m3 s-1", "baseline": names[0], "scenario": names[1]})
    return frame


def most_changed(frame, n: int = 10, by: str = "relative"):
    """The ``n`` reaches with the largest absolute change (``by``: 'relative' or 'difference')."""
    if by not in ("relative", "difference"):
        raise InputError(f"cannot rank by '{by}'.", hint=f"Pass {opt('most_changed.by', 'relative')} "
                                                         "or 'difference'.")
    order = frame[by].abs().sort_values(ascending=False, na_position="last").index[:n]
    return frame.loc[order]
