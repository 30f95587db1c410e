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


def exceedance_quantile(values: np.ndarray, percent: float, axis: int = -1) -> np.ndarray:
    """The flow exceeded ``percent`` % of the time along ``axis`` (NaN ignored): the (100 - percent)th percentile."""
    values = np.asarray(values, dtype=np.float64)
    with np.errstate(all="ignore"):
        if not np.isnan(values).any():  # the same numbers: nanpercentile loops over rows in Python (~50 s for 100k)
            return np.percentile(values, 100.0 - percent, axis=axis)
        return np.nanpercentile(values, 100.0 - percent, axis=axis)


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
    valid = finite.any(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows give NaN, as documented
        mean = np.nanmean(q, axis=1)
        quant = {name: exceedance_quantile(q, p, axis=1) for name, p in (("q05", 5), ("q50", 50), ("q95", 95))}
    where = np.argmax(np.where(finite, q, -np.inf), axis=1)
    qmax = np.where(valid, q[np.arange(n), where], np.nan)
    tmax = np.where(valid, discharge.time[where], np.datetime64("NaT", "ns"))
    return pd.DataFrame({"mean": mean, "max": qmax, "time_of_max": tmax.astype("datetime64[ns]"), **quant},
                        index=index)
