"""CF encoding of result time stamps (series hold ``datetime64[ms]``, any date: see ``_series.TIME_DTYPE``).

Files get numeric CF time (float64, exact: the encoder checks) with an explicit calendar: numpy's dates are
proleptic Gregorian, which CF's 'standard' calendar equals from 1582-10-15 on; earlier dates are written with
calendar 'proleptic_gregorian'. Decoding is the readers' one rule (``runoff._time.decode_cf_times``).
"""
from __future__ import annotations

import numpy as np

__all__ = ["encode_times", "iso_utc", "GREGORIAN_START"]

GREGORIAN_START = np.datetime64("1582-10-15", "us")


def encode_times(times: np.ndarray) -> tuple[np.ndarray, dict[str, str]]:
    """datetime64 (any unit) -> (float64 offsets, CF attributes ``units`` and ``calendar``).

    Whole seconds are written as 'seconds since 1970-01-01 00:00:00'; finer stamps in the coarsest unit
    that holds them exactly, counted from the first day. float64 holds the offsets exactly (checked).
    """
    t = np.asarray(times)
    if t.dtype.kind != "M":
        raise AssertionError(f"encode_times needs datetime64, got {t.dtype}")
    if np.isnat(t).any():
        raise AssertionError("time stamps of a result are never NaT")
    calendar = "standard" if t.size == 0 or t.min().astype("datetime64[us]") >= GREGORIAN_START \
        else "proleptic_gregorian"
    for unit, name in (("s", "seconds"), ("ms", "milliseconds"), ("us", "microseconds"), ("ns", "nanoseconds")):
        coarse = t.astype(f"datetime64[{unit}]")
        if np.array_equal(coarse.astype(t.dtype), t):
            ref = np.datetime64("1970-01-01", unit) if unit == "s" or t.size == 0 \
                else t.min().astype("datetime64[D]").astype(f"datetime64[{unit}]")
            offsets = (coarse - ref).astype(np.int64)
            values = offsets.astype(np.float64)
            if not np.array_equal(values.astype(np.int64), offsets):
                continue  # beyond 2**53 of this unit: try a finer reference (never for seconds)
            stamp = str(ref.astype("datetime64[s]")).replace("T", " ")
            return values, {"units": f"{name} since {stamp}", "calendar": calendar}
    raise AssertionError("time stamps cannot be encoded exactly as float64")


def iso_utc(times: np.ndarray, unit: str = "s") -> np.ndarray:
    """ISO 8601 text with 'Z' (UTC), e.g. 2021-03-01T01:00:00Z."""
    return np.char.add(np.datetime_as_string(np.asarray(times), unit=unit), "Z")
