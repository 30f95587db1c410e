"""exceedance_quantile: the vectorised path gives numpy's nanpercentile numbers exactly, NaN rows included."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from thalweg.results.summary import exceedance_quantile


@pytest.mark.parametrize("percent", [5, 50, 95, [5, 50, 95]], ids=str)
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_matches_nanpercentile(percent, axis, rng):
    values = rng.gamma(2.0, 1.0, (300, 41))
    values[3, 5] = np.nan
    values[7, :] = np.nan
    values[:, 11] = np.nan if axis == 0 else values[:, 11]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanpercentile(values, 100.0 - np.asarray(percent), axis=axis)
        got = exceedance_quantile(values, percent, axis=axis)
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)  # NaN where nanpercentile gives NaN, equal numbers elsewhere


def test_one_series():
    series = np.array([1.0, 5.0, np.nan, 3.0, 2.0])
    assert exceedance_quantile(series, 50) == pytest.approx(2.5)
    assert exceedance_quantile(series, 5) == pytest.approx(np.nanpercentile(series, 95))


def test_summary_fast_path_equals_the_masked_path(rng):
    """A table without NaN takes the unmasked path; one NaN elsewhere switches to the masked path: the rows without
    NaN must get the same statistics either way."""
    from thalweg.results import Discharge, summarize

    values = rng.gamma(2.0, 1.0, (50, 30)).astype(np.float32)
    time = np.datetime64("2020-01-01T01", "ns") + np.arange(30) * np.timedelta64(1, "h")
    clean = summarize(Discharge(values, np.arange(50), time, 3600.0))
    holed = values.copy()
    holed[0, 4] = np.nan
    masked = summarize(Discharge(holed, np.arange(50), time, 3600.0))
    for column in clean.columns:
        np.testing.assert_array_equal(clean[column].to_numpy()[1:], masked[column].to_numpy()[1:], err_msg=column)
    assert clean["max"].to_numpy()[3] == values[3].max()
