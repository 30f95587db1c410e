"""The planners' three tables as the CLI (``thalweg stats|compare|exceed``) and the job service make them.

One place for what both surfaces share: the per-column units of each table (field aliases of the map layer),
the reading of an exceedance threshold (a value, a network field or a return-period flow), the layer names
and the gauges' hydrographs and metrics of a report.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InputError

__all__ = ["LAYERS", "units_of", "stats_table", "compare_table", "exceedance_table", "gauge_hydrographs",
           "run_names", "stats_summary"]

# table -> GeoPackage layer name (the plugin opens these layers and styles them by name)
LAYERS = {"stats": "stats", "compare": "change", "exceedance": "exceedance"}
_EXCEED_UNITS = {"threshold": "m3/s", "duration_h": "h", "peak": "m3/s", "peak_excess": "m3/s"}
_COMPARE_UNITS = {"baseline": "m3/s", "scenario": "m3/s", "difference": "m3/s", "relative": "1"}
# columns that say how a table was made, on every row: a map layer copied elsewhere (a Processing sink, a
# report) keeps them, where layer metadata would be lost
_STATS_TEXT = ("fit", "years")


def units_of(table: str, frame) -> dict[str, str]:
    """Column -> unit of one of the planners' tables (``stats``, ``compare``, ``exceedance``)."""
    if table == "stats":
        return {str(c): "m3/s" for c in frame.columns if c not in _STATS_TEXT}
    if table == "compare":
        return dict(_COMPARE_UNITS)
    if table == "exceedance":
        return dict(_EXCEED_UNITS)
    raise AssertionError(f"unknown table {table!r}")


def stats_table(discharge, *, return_periods: Sequence[float] | None, distribution: str, water_year_start: int,
                n_boot: int, confidence: float, seed: int, statistics: str = "all"):
    """:func:`~.frequency.flow_statistics` with a seeded bootstrap (the same numbers each run), and the columns
    ``fit`` (distribution and water years, in words) and ``years`` (complete water years used).

    ``return_periods`` None: the default ones. Given with ``statistics='auto'``, their flows were asked for: a run
    too short for them is refused (not skipped)."""
    from ..errors import opt
    from .frequency import DEFAULT_RETURN_PERIODS, flow_statistics

    periods = DEFAULT_RETURN_PERIODS if return_periods is None else return_periods
    frame = flow_statistics(discharge, return_periods=periods, n_boot=n_boot, confidence=confidence,
                            rng=np.random.default_rng(seed), distribution=distribution,
                            water_year_start=water_year_start, statistics=statistics)
    asked = [s for s in frame.attrs["skipped"] if s["kind"] == "frequency"] if return_periods is not None else []
    if asked:
        raise InputError(f"the return-period flows asked for cannot be fitted: {asked[0]['reason']}.",
                         hint=f"Route a longer period, use {opt('return_period_flows.distribution', 'gumbel')} "
                              f"(needs fewer years), or leave {opt('return_period_flows.return_periods')} out to "
                              f"get the statistics this run allows.")
    years = frame.attrs["years"]
    fitted = any(c.endswith("y") and c.startswith("q") for c in frame.columns)
    frame["fit"] = (f"{distribution.upper()} by L-moments, water years {years[0]}-{years[-1]}" if fitted
                    else f"flow duration only ({frame.attrs['period']})")
    frame["years"] = len(years)
    return frame


def stats_summary(frame) -> str:
    """What a stats table holds, in words, with the statistics skipped and why (for the CLI and job results)."""
    from ..errors import count

    years = frame.attrs["years"]
    span = f" ({years[0]}..{years[-1]})" if years else ""
    lines = [f"{count(len(years), 'complete water year')}{span}: {frame.attrs['method']}"]
    lines += [f"  skipped      {s['columns']}: {s['reason']}" for s in frame.attrs["skipped"]]
    return "\n".join(lines)


def run_names(baseline, scenario) -> tuple[str, str]:
    """How messages call two runs' files: their names, or as many trailing folders as tell them apart
    (``r1/Q.nc`` and ``y1/Q.nc``), or their full paths."""
    from pathlib import Path

    a, b = Path(baseline).absolute().parts, Path(scenario).absolute().parts
    for n in range(1, max(len(a), len(b)) + 1):
        if a[-n:] != b[-n:]:
            return str(Path(*a[-n:])), str(Path(*b[-n:]))
    return str(Path(baseline).absolute()), str(Path(scenario).absolute())


def compare_table(baseline, scenario, *, statistic: str, names: tuple[str, str], distribution: str,
                  water_year_start: int):
    """:func:`~.compare.compare` of two runs (names: how messages call them), with a ``statistic`` column."""
    from .compare import compare

    frame = compare(baseline, scenario, statistic=statistic, names=names, distribution=distribution,
                    water_year_start=water_year_start)
    frame["statistic"] = statistic  # what changed, kept with the layer (see _STATS_TEXT)
    return frame


def exceedance_table(discharge, *, network=None, threshold: float | None = None, field: str | None = None,
                     return_period: float | None = None, distribution: str = "gev", water_year_start: int = 10):
    """:func:`~.frequency.exceedance` of one threshold rule, and its wording (``"10 m3/s"``, ...).

    Exactly one of ``threshold`` (m3/s, every reach), ``field`` (a numeric network field, m3/s; reaches of the
    discharge missing from the network get none) or ``return_period`` (years: each reach's flow of that return
    period, fitted on the same run with ``distribution``).
    """
    from .frequency import exceedance, flow_statistics

    given = [name for name, value in (("threshold", threshold), ("field", field), ("return_period", return_period))
             if value is not None]
    if len(given) != 1:
        raise AssertionError(f"one threshold rule is needed, got {given or 'none'}")
    if threshold is not None:
        values, what = float(threshold), f"{threshold:g} m3/s"
    elif field is not None:
        if network is None:
            raise AssertionError("a threshold field needs the network")
        if field not in network.attrs:
            raise InputError(f"field '{field}' is not a numeric field of the network.", path=network.source.path,
                             field=field, hint=f"Numeric fields: {', '.join(sorted(network.attrs)) or 'none'}.")
        by_id = dict(zip(network.ids.tolist(), np.asarray(network.attrs[field], float).tolist()))
        values = np.array([by_id.get(int(r), np.nan) for r in discharge.ids])
        what = f"field {field}"
    else:
        stats = flow_statistics(discharge, return_periods=[return_period], n_boot=0, distribution=distribution,
                                water_year_start=water_year_start)
        values = stats[f"q{return_period:g}y"].to_numpy()
        what = f"the {return_period:g}-year flow ({distribution.upper()})"
    frame = exceedance(discharge, values)
    frame.attrs["threshold"] = what
    return frame, what


def gauge_hydrographs(discharge, gauges) -> list[dict[str, Any]]:
    """Simulated and observed discharge at each gauge with the metrics of :func:`thalweg.metrics.all_metrics`
    (NSE, KGE, PBIAS, ...; None where a gauge has no observation), for a report's hydrograph page and table.

    ``gauges``: :class:`thalweg.learning.Gauges` read against the routed network. Values in m3/s; times are the
    ends of the steps (the discharge's ``time``)."""
    from ..metrics import all_metrics

    rows = discharge.index_of([int(r) for r in gauges.reach_ids])
    observed = gauges.observed_on(discharge.time)
    out = []
    for i, gauge_id in enumerate(gauges.ids):
        sim = discharge.values[rows[i]].astype(np.float64)
        obs = None if observed is None else np.asarray(observed[i], dtype=np.float64)
        metrics = None
        if obs is not None and np.isfinite(obs).any():
            metrics = {k: (float(v) if v is not None and np.isfinite(float(v)) else None)
                       for k, v in all_metrics(sim, obs).items()}
        out.append({"gauge_id": str(gauge_id), "name": str(gauges.names[i]), "reach_id": int(gauges.reach_ids[i]),
                    "simulated": sim, "observed": obs, "metrics": metrics,
                    "peak": float(np.nanmax(sim)) if sim.size else None,
                    "mean": float(np.nanmean(sim)) if sim.size else None})
    return out
