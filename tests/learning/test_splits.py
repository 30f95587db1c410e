"""Periods from dates: whole days, step-end time stamps, errors naming the fix."""
from __future__ import annotations

import numpy as np
import pytest

from thalweg.errors import InputError
from thalweg.learning.splits import Period, leave_one_out, period_mask, period_of


def test_days_are_whole_and_periods_meet_without_overlap():
    # hourly steps ending 2014-09-15T00:00 (the last hour of the 14th) .. 2014-09-17T00:00
    end = np.datetime64("2014-09-15T00:00", "ns") + np.arange(49) * np.timedelta64(1, "h")
    first = period_of(end, "2014-09-15", "2014-09-15")
    second = period_of(end, "2014-09-16", "2014-09-16")
    assert (first.start, first.end) == (1, 25) and (second.start, second.end) == (25, 49)
    timed = period_of(end, "2014-09-15T06:00", "2014-09-15T08:00")
    assert (timed.start, timed.end) == (6, 9)
    daily = np.datetime64("2014-09-16", "ns") + np.arange(10) * np.timedelta64(1, "D")  # step ends at midnight
    assert period_of(daily, "2014-09-15", "2014-09-17").to_dict() == {"start": 0, "end": 3, "label": ""}


def test_masks_and_leave_one_out():
    obs = np.arange(20.0).reshape(2, 10)
    masked = period_mask(obs, Period(2, 6), warmup=3)
    assert np.isfinite(masked).sum(axis=1).tolist() == [3, 3] and masked[0, 3] == 3.0 and np.isnan(masked[0, 6])
    assert leave_one_out([5, 7, 9]) == [([7, 9], 5), ([5, 9], 7), ([5, 7], 9)]


def test_period_errors():
    end = np.datetime64("2014-09-15T00:00", "ns") + np.arange(10) * np.timedelta64(1, "h")
    with pytest.raises(InputError, match=r"2015-01-01 .. 2015-02-01 holds no step.*inside the runoff period"):
        period_of(end, "2015-01-01", "2015-02-01", what="--validation")
    with pytest.raises(InputError, match="not a pair of ISO dates.*START/END"):
        period_of(end, "yesterday", "today")
    with pytest.raises(InputError, match="empty or negative"):
        Period(5, 5)
    with pytest.raises(InputError, match="at least 2 gauges"):
        leave_one_out([1])


def test_a_reversed_period_says_its_start_is_after_its_end():
    end = np.datetime64("2014-09-01T00:00", "ns") + np.arange(24 * 120) * np.timedelta64(1, "h")
    with pytest.raises(InputError, match=r"calibration 2014-11-14/2014-09-15 starts after it ends.*"
                                         r"calibration='2014-09-15/2014-11-14'"):
        period_of(end, "2014-11-14", "2014-09-15", label="calibration", what="calibration")
    one_day = period_of(end, "2014-09-15", "2014-09-15")  # a single day is no reversed period
    assert one_day.steps == 24


def test_periods_from_dates_describe_themselves_by_time_and_overlaps_show_times():
    end = np.datetime64("2014-09-15T01:00", "ns") + np.arange(24 * 10) * np.timedelta64(1, "h")
    cal = period_of(end, "2014-09-15", "2014-09-18", label="calibration")
    assert cal.describe() == "2014-09-15T01:00 .. 2014-09-19T00:00 (step ends)"
    assert (cal.start, cal.end) == (0, 96) and cal == Period(0, 96, "calibration")  # times do not change equality
    assert Period(3, 7).describe() == "steps [3, 7)"


def test_held_out_gauges_must_leave_one_to_train_on():
    from thalweg.errors import option_names
    from thalweg.learning.splits import check_held_out

    check_held_out(3, 2)
    with option_names({"fit.validation_gauges": "--validate-gauges", "run_fit.leave_one_out": "--leave-one-out"}):
        with pytest.raises(InputError) as info:
            check_held_out(3, 3)
        text = str(info.value)
        assert "every gauge (3) is held out" in text and "(--validate-gauges)" in text, text
        assert "held out in turn with --leave-one-out" in text and "leave_one_gauge_out" not in text
        with pytest.raises(InputError) as info:
            check_held_out(2, 2, leave_one_out=False)  # train: no leave-one-out to offer
        assert "--leave-one-out" not in str(info.value)
