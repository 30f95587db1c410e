"""Time stamps of results: numpy datetime64 that hold any date, and their CF encoding.

``datetime64[ns]`` covers only 1678-2261; a run dated in the year 3000 (a scenario, a synthetic test) would
wrap around. Discharge keeps nanoseconds when the dates fit (the usual case, what pandas and the rest of
Thalweg use) and microseconds otherwise (+-290,000 years). Files get numeric CF time (float64, exact: the
encoder checks) with an explicit calendar: numpy's dates are proleptic Gregorian, which CF's 'standard'
calendar equals from 1582-10-15 on; earlier dates are written with calendar 'proleptic_gregorian'.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["as_times", "shift", "step_delta", "encode_times", "decode_times", "iso_utc", "GREGORIAN_START"]

GREGORIAN_START = np.datetime64("1582-10-15", "us")
_NS_LIMIT_US = np.iinfo(np.int64).max // 1000 - 1  # |t| in microseconds that datetime64[ns] holds
_PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}


def as_times(values: Any) -> np.ndarray:
    """datetime64[ns] when every date fits in it, else datetime64[us] (NaT kept)."""
    t = np.asarray(values)
    if t.dtype.kind != "M":
        t = t.astype("datetime64[ns]")
    unit = np.datetime_data(t.dtype)[0]
    if unit == "ns":
        return t
    if unit in ("ps", "fs", "as"):
        return t.astype("datetime64[ns]")
    us = t.astype("datetime64[us]")
    raw = us.astype(np.int64)
    fine = np.isnat(us) | (np.abs(raw) <= _NS_LIMIT_US)
    return us.astype("datetime64[ns]") if fine.all() else us


def step_delta(times: np.ndarray, dt: float) -> np.timedelta64:
    """``dt`` seconds as a timedelta64 in the unit of ``times`` (ns or us)."""
    unit = np.datetime_data(np.asarray(times).dtype)[0]
    return np.timedelta64(int(round(float(dt) * _PER_SECOND.get(unit, 10**9))), unit)


def shift(times: np.ndarray, dt: float) -> np.ndarray:
    """``times + dt`` seconds, moving to microseconds where nanoseconds would overflow."""
    t = as_times(times)
    if np.datetime_data(t.dtype)[0] == "ns":
        d = step_delta(t, dt)
        with np.errstate(over="ignore"):
            out = t + d
        valid = ~np.isnat(t)
        moved = (out[valid] > t[valid]) if d > np.timedelta64(0, "ns") else (out[valid] <= t[valid])
        if moved.all():
            return out
        t = t.astype("datetime64[us]")
    return as_times(t + step_delta(t, dt))


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


def decode_times(values: Any, units: str | None, calendar: str | None) -> np.ndarray | None:
    """Numeric CF times of the Gregorian calendars -> datetime64 (see :func:`as_times`); None otherwise.

    Exact for integral offsets (as Thalweg writes); other calendars and unit strings are left to the caller.
    """
    import re

    if not units:
        return None
    cal = (calendar or "standard").lower()
    if cal not in ("standard", "gregorian", "proleptic_gregorian"):
        return None
    m = re.fullmatch(r"\s*(seconds?|secs?|s|milliseconds?|ms|microseconds?|us|nanoseconds?|ns|minutes?|mins?|"
                     r"hours?|hrs?|h|days?|d)\s+since\s+(\S+)(?:[ T](\S+))?\s*(Z|UTC|[+-]00:?00)?\s*",
                     str(units), flags=re.IGNORECASE)
    if m is None:
        return None
    word = m.group(1).lower()
    factor_us = {"s": 10**6, "ms": 10**3, "us": 1, "ns": None, "m": 60 * 10**6, "h": 3600 * 10**6,
                 "d": 86400 * 10**6}
    key = ("ms" if word.startswith("milli") or word == "ms" else "us" if word.startswith("micro") or word == "us"
           else "ns" if word.startswith("nano") or word == "ns" else "m" if word.startswith("min")
           else "h" if word.startswith("h") else "d" if word.startswith("d") else "s")
    try:
        ref = np.datetime64(m.group(2) + ("T" + m.group(3) if m.group(3) else ""), "us")
    except ValueError:
        return None
    if cal != "proleptic_gregorian" and ref < GREGORIAN_START:
        return None  # the mixed Julian/Gregorian calendar: leave it to cftime
    raw = np.asarray(values, dtype=np.float64)
    if key == "ns":
        ticks = np.round(raw).astype(np.int64)
        out = ref.astype("datetime64[ns]") + ticks.astype("timedelta64[ns]") if np.all(
            np.abs(ticks) < 2**62) else None
        return None if out is None else as_times(out)
    ticks = raw * factor_us[key]
    whole = np.round(ticks)
    if not np.allclose(ticks, whole, rtol=0, atol=1e-3):
        return None
    return as_times(ref + whole.astype(np.int64).astype("timedelta64[us]"))


def iso_utc(times: np.ndarray, unit: str = "s") -> np.ndarray:
    """ISO 8601 text with 'Z' (UTC), e.g. 2021-03-01T01:00:00Z."""
    return np.char.add(np.datetime_as_string(np.asarray(times), unit=unit), "Z")
