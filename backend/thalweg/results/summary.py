"""Per-reach statistics of routed discharge.

Flow quantiles follow the hydrological (flow-duration curve) convention: Qp is the flow EXCEEDED p % of
the time. So q05 is a high flow (the 95th percentile of the series), q50 the median and q95 a low flow
(the 5th percentile). Percentiles interpolate linearly between order statistics (numpy's default).
"""
from __future__ import annotations

import warnings

import numpy as np

from .discharge import Discharge

__all__ = ["summarize", "exceedance_quantile", "SUMMARY_COLUMNS"]

SUMMARY_COLUMNS = ("mean", "max", "time_of_max", "q05", "q50", "q95")


def exceedance_quantile(values: np.ndarray, percent, axis: int = -1) -> np.ndarray:
    """The flow exceeded ``percent`` % of the time along ``axis`` (NaN ignored): the (100 - percent)th percentile.
    ``percent`` may be a sequence: the quantiles then stack along a new first axis (one sort for all)."""
    arr = np.asarray(values, dtype=np.float64)
    q = 100.0 - np.asarray(percent, dtype=np.float64)
    with np.errstate(all="ignore"):
        if arr.ndim < 2:
            return np.nanpercentile(arr, q, axis=axis)
        # np.nanpercentile with an axis loops in Python over every row (60 s for 100k reaches x 365 steps);
        # np.percentile is vectorised and gives the same numbers on rows without NaN, so only those with NaN loop
        rows = np.moveaxis(arr, axis, -1)
        has_nan = np.isnan(rows).any(axis=-1)
        out = np.percentile(rows, q, axis=-1)
        if has_nan.any():
            out[..., has_nan] = np.nanpercentile(rows[has_nan], q, axis=-1)
        return out


def summarize(discharge: Discharge):
    """Statistics of each reach's discharge.

    Returns
    -------
    pandas.DataFrame indexed by reach id (``reach_id``) with columns, all m3/s except time_of_max:
    mean, max, time_of_max (datetime64, the end of the step holding the maximum; the first if tied),
    q05 (exceeded 5 % of the time: high flow), q50 (median), q95 (exceeded 95 % of the time: low flow).
    Reaches whose series is all NaN get NaN and NaT.
    """
    import pandas as pd

    q = discharge.values.astype(np.float64)
    n, t = q.shape
    index = pd.Index(discharge.ids, name="reach_id")
    if t == 0:
        nan = np.full(n, np.nan)
        return pd.DataFrame({"mean": nan, "max": nan, "time_of_max": np.full(n, np.datetime64("NaT"), "datetime64[ns]"),
                             "q05": nan, "q50": nan, "q95": nan}, index=index)
    finite = np.isfinite(q)
    if finite.all():  # the usual case: no masked copies of the whole table (they cost seconds at 100k x 365)
        valid = np.ones(n, dtype=bool)
        mean = q.mean(axis=1)
        quant = dict(zip(("q05", "q50", "q95"), exceedance_quantile(q, [5, 50, 95], axis=1)))
        where = np.argmax(q, axis=1)
    else:
        valid = finite.any(axis=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows give NaN, as documented
            mean = np.nanmean(q, axis=1)
            quant = dict(zip(("q05", "q50", "q95"), exceedance_quantile(q, [5, 50, 95], axis=1)))
        where = np.argmax(np.where(finite, q, -np.inf), axis=1)
    qmax = np.where(valid, q[np.arange(n), where], np.nan)
    tmax = np.where(valid, discharge.time[where], np.datetime64("NaT", "ns"))
    return pd.DataFrame({"mean": mean, "max": qmax, "time_of_max": tmax.astype("datetime64[ns]"), **quant},
                        index=index)
