"""The fast summary statistics agree with numpy's nan-aware percentiles (the slow oracle) to the last bit."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from thalweg.results import Discharge, summarize


def oracle(values: np.ndarray) -> dict[str, np.ndarray]:
    q = values.astype(np.float64)
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning) if np.isnan(q).all(axis=1).any() else _nothing():
        return {"mean": np.nanmean(q, axis=1), "q05": np.nanpercentile(q, 95, axis=1),
                "q50": np.nanpercentile(q, 50, axis=1), "q95": np.nanpercentile(q, 5, axis=1),
                "max": np.nanmax(q, axis=1)}


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("steps", [1, 2, 7, 2160])
def test_summary_matches_nanpercentile(steps, threads):
    rng = np.random.default_rng(steps)
    n = 5000  # more than one block of reaches
    values = rng.lognormal(0.0, 2.0, (n, steps)).astype(np.float32)
    values[rng.random((n, steps)) < 0.001] = np.nan  # a few rows with gaps take the nan-aware path
    values[3] = np.nan  # all NaN: NaN and NaT
    values[4, :] = 2.5  # ties: the first step holds the maximum
    time = np.datetime64("2020-01-01T01", "ns") + np.arange(steps) * np.timedelta64(1, "h")
    d = Discharge(values, np.arange(n) + 100, time, 3600.0)
    s = summarize(d, threads=threads)
    expected = oracle(values)
    for column in ("q05", "q50", "q95", "max"):
        np.testing.assert_array_equal(s[column].to_numpy(), expected[column], err_msg=column)
    np.testing.assert_allclose(s["mean"].to_numpy(), expected["mean"], rtol=1e-12)
    assert pd.isna(s["time_of_max"].iloc[3]) and np.isnan(s["q50"].iloc[3])
    assert s["time_of_max"].iloc[4] == pd.Timestamp(time[0])
    row = 10 if np.isfinite(values[10]).all() else 11
    assert s["time_of_max"].iloc[row] == pd.Timestamp(time[np.nanargmax(values[row])])


def test_summary_of_empty_discharge():
    d = Discharge(np.zeros((0, 4), np.float32), np.zeros(0, np.int64),
                  np.datetime64("2020-01-01", "ns") + np.arange(4) * np.timedelta64(1, "h"), 3600.0)
    assert summarize(d).empty
