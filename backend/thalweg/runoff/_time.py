"""Time axes of runoff and discharge files: CF decoding, step length, step starts, the bounds on dt.

Shared by the runoff readers and the discharge reader, so both judge a time axis the same way.
Every function returns :data:`TIME_DTYPE` (``datetime64[ms]``, naive, UTC as CF files are: it holds any
date of years -290,000,000 .. 290,000,000, where nanoseconds overflow after 2262) and step lengths in seconds.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._series import TIME_DTYPE, step_delta
from ..errors import RunoffError, format_ids, opt
from ._warn import warn

__all__ = ["decode_cf_times", "encode_cf_times", "cf_bounds", "regular_step", "step_starts", "as_datetimes", "iso",
           "TIME_LABELS", "TIME_DTYPE", "MIN_DT", "MAX_DT", "check_dt", "step_delta", "step_axis"]

TIME_LABELS = ("start", "end")
MIN_DT = 1e-3  # s: one tick of TIME_DTYPE, so that successive stamps stay distinct
MAX_DT = 366 * 86400.0  # s: a year; longer steps are not routing
_MS = {"day": 86400e3, "days": 86400e3, "d": 86400e3, "hour": 3600e3, "hours": 3600e3, "hr": 3600e3, "hrs": 3600e3,
       "h": 3600e3, "minute": 60e3, "minutes": 60e3, "min": 60e3, "mins": 60e3, "second": 1e3, "seconds": 1e3,
       "sec": 1e3, "secs": 1e3, "s": 1e3, "millisecond": 1.0, "milliseconds": 1.0, "ms": 1.0,
       "microsecond": 1e-3, "microseconds": 1e-3, "us": 1e-3}
_GREGORIAN = (None, "", "standard", "gregorian", "proleptic_gregorian")
_REFORM = np.datetime64("1582-10-15", "ms")  # before it, 'standard' counts days in the Julian calendar


def check_dt(dt: Any, *, path: Any = None, field: str | None = "dt", error: type = RunoffError) -> float:
    """``dt`` in seconds as a float, or ``error`` unless it is finite and within [MIN_DT, MAX_DT]."""
    try:
        value = float(dt)
    except (TypeError, ValueError):
        raise error(f"the step length dt={dt!r} is not a number of seconds.", path=path, field=field,
                    hint=f"Give it in seconds, e.g. {opt('read_runoff.dt', 3600)}.") from None
    if not np.isfinite(value) or not MIN_DT <= value <= MAX_DT:
        raise error(f"the step length {value:g} s is outside {MIN_DT:g} s .. {MAX_DT:,.0f} s (a year).", path=path,
                    field=field, hint="Give the step length in seconds (3600 for hourly steps).")
    ticks = value * 1e3
    if abs(ticks - round(ticks)) > 1e-6 * ticks:
        raise error(f"the step length {value!r} s is not a whole number of milliseconds, so time stamps would drift.",
                    path=path, field=field, hint="Round the step length to milliseconds.")
    return value


def step_axis(start: Any, dt: float, n: int, *, path: Any = None, field: str | None = "time") -> np.ndarray:
    """``n`` step starts from ``start`` every ``dt`` seconds, as TIME_DTYPE."""
    first = as_datetimes([start], path=path, field=field or "time")[0]
    return first + step_delta(dt) * np.arange(n)


def iso(t: Any) -> str:
    """``2020-01-01T03:00`` (seconds shown only when not zero; no fraction of a second)."""
    text = str(np.datetime64(t).astype("datetime64[s]"))
    return text[:-3] if text.endswith(":00") else text


def decode_cf_times(values: Any, units: str | None, calendar: str | None = None, *, path: Any = None,
                    field: str = "time") -> np.ndarray:
    """Numbers with CF ``units`` ('seconds since 1970-01-01') -> TIME_DTYPE, for any date.

    Gregorian calendars are decoded by integer arithmetic on milliseconds (exact, no overflow); other calendars
    (noleap, 365_day, julian) through cftime and mapped onto real dates with a warning; dates that do not
    exist in the real calendar (30 February of a 360_day calendar) raise RunoffError.
    """
    raw = np.asarray(values)
    if raw.dtype.kind == "M":
        return _as_series_times(raw, path=path, field=field)
    if raw.dtype.kind == "O":  # cftime or datetime objects, decoded by the caller (xarray's decode_times)
        return _from_objects(raw.reshape(-1), calendar, path=path, field=field).reshape(raw.shape)
    if not units or " since " not in str(units):
        raise RunoffError(f"the time variable has no CF units (found {units!r}).", path=path, field=field,
                          hint="Give it units such as 'seconds since 1970-01-01 00:00:00'.")
    if raw.dtype.kind not in "iuf":
        raise RunoffError(f"the time variable holds {raw.dtype} values, not numbers.", path=path, field=field,
                          hint="Store times as numbers with CF units such as 'hours since 2000-01-01'.")
    flat = raw.reshape(-1).astype(np.float64)
    if not np.isfinite(flat).all():
        bad = np.flatnonzero(~np.isfinite(flat))
        raise RunoffError(f"{bad.size:,} time values are missing or not finite (positions {format_ids(bad)}).",
                          path=path, field=field, hint="Every step needs a time.")
    word, _, reference = str(units).partition(" since ")
    factor = _MS.get(word.strip().lower())
    cal = None if calendar is None else str(calendar).strip().lower()
    import cftime

    try:
        ref = cftime.num2date(0, str(units), cal or "standard")
    except Exception as exc:  # cftime raises ValueError/TypeError for units it cannot parse
        raise RunoffError(f"cannot decode the time axis with units {units!r}: {exc}", path=path, field=field,
                          hint="Use CF units such as 'hours since 2000-01-01 00:00:00'.") from None
    if factor is not None and cal in _GREGORIAN:
        ref_ms = np.datetime64(_iso_of(ref), "ms")
        offsets = np.round(flat * factor)
        if np.abs(offsets).max(initial=0) > 2.0 ** 62:
            raise RunoffError(f"the time values reach {np.abs(flat).max():g} {word.strip()}, beyond any date.",
                              path=path, field=field, hint="Check the time variable and its units.")
        decoded = ref_ms + offsets.astype(np.int64).astype("timedelta64[ms]")
        if cal != "proleptic_gregorian" and decoded.size and (decoded.min() < _REFORM or ref_ms < _REFORM):
            decoded = _from_objects(cftime.num2date(flat, str(units), cal or "standard"), cal, path=path,
                                    field=field)
        return decoded.reshape(raw.shape)
    try:
        objects = cftime.num2date(flat, str(units), cal or "standard")
    except Exception as exc:
        raise RunoffError(f"cannot decode the time axis with units {units!r}: {exc}", path=path, field=field,
                          hint="Use CF units such as 'hours since 2000-01-01 00:00:00'.") from None
    return _from_objects(np.asarray(objects, dtype=object).reshape(-1), cal, path=path, field=field).reshape(raw.shape)


def _iso_of(date: Any) -> str:
    return f"{date.year:04d}-{date.month:02d}-{date.day:02d}T{date.hour:02d}:{date.minute:02d}:{date.second:02d}." \
           f"{date.microsecond // 1000:03d}" if date.year >= 0 else date.isoformat()


def _from_objects(objects: np.ndarray, calendar: str | None, *, path: Any, field: str) -> np.ndarray:
    """cftime / datetime objects -> TIME_DTYPE; dates of other calendars are mapped onto real ones, warned."""
    objects = np.asarray(objects, dtype=object)
    real = [getattr(d, "calendar", "standard") or "standard" for d in objects[:1]]
    name = calendar or (real[0] if real else "standard")
    if name not in ("standard", "gregorian", "proleptic_gregorian"):
        warn(f"{_name(path)}: field {field} uses the '{name}' calendar; its dates are mapped onto the standard "
             f"calendar.")
    try:
        return np.array([np.datetime64(_iso_of(d), "ms") for d in objects], dtype=TIME_DTYPE)
    except ValueError as exc:
        raise RunoffError(f"the '{name}' calendar holds dates that do not exist in the standard calendar ({exc}).",
                          path=path, field=field, hint="Convert the file to a standard calendar first.") from None


def _as_series_times(values: np.ndarray, *, path: Any, field: str) -> np.ndarray:
    """datetime64 of any unit -> TIME_DTYPE (NaT refused)."""
    t = np.asarray(values)
    if np.isnat(t).any():
        bad = np.flatnonzero(np.isnat(t.reshape(-1)))
        raise RunoffError(f"{bad.size:,} times are empty (NaT; positions {format_ids(bad)}).", path=path,
                          field=field, hint="Every step needs a time.")
    return t.astype(TIME_DTYPE)


def cf_bounds(ds, tdim: Any, path: Any = None) -> np.ndarray | None:
    """Decoded CF time bounds [T, 2] of an xarray Dataset opened with ``decode_times=False``, or None.

    The bounds variable is the one named by the time variable's ``bounds`` attribute, else ``time_bnds`` or
    ``time_bounds``; without units of its own it uses the time variable's (as CF says).
    """
    tvar = ds[tdim]
    name = tvar.attrs.get("bounds") or next((n for n in (f"{tdim}_bnds", f"{tdim}_bounds") if n in ds.variables),
                                            None)
    if name is None or name not in ds.variables:
        return None
    units = ds[name].attrs.get("units", tvar.attrs.get("units"))
    calendar = ds[name].attrs.get("calendar", tvar.attrs.get("calendar"))
    return decode_cf_times(np.asarray(ds[name].values), units, calendar, path=path, field=str(name)).reshape(-1, 2)


def encode_cf_times(times: np.ndarray) -> tuple[np.ndarray, str]:
    """datetime64 -> (int64 offsets, CF units), in whole seconds when exact, else milliseconds."""
    t = np.asarray(times).astype(TIME_DTYPE).astype(np.int64)
    for unit, factor in (("seconds", 1000), ("milliseconds", 1)):
        if np.all(t % factor == 0):
            return t // factor, f"{unit} since 1970-01-01 00:00:00"
    raise AssertionError("unreachable")


def regular_step(times: np.ndarray, *, path: Any = None, field: str = "time") -> float:
    """The step length (s) of an increasing, regular time axis; RunoffError naming the first step that
    differs from the most common step (or that does not increase)."""
    t = np.asarray(times).astype(TIME_DTYPE)
    if t.size < 2:
        raise AssertionError("regular_step needs two times or more")
    diffs = np.diff(t).astype(np.int64)
    bad_order = np.flatnonzero(diffs <= 0)
    if bad_order.size:
        k = int(bad_order[0])
        raise RunoffError(f"the time axis does not increase at step {k + 1} ({iso(t[k])} then {iso(t[k + 1])}).",
                          path=path, field=field, ids=[iso(t[k + 1])],
                          hint="Sort the file by time and remove repeated times.")
    values, counts = np.unique(diffs, return_counts=True)
    step = int(values[np.argmax(counts)])
    odd = np.flatnonzero(diffs != step)
    if odd.size:
        k = int(odd[0])
        raise RunoffError(
            f"the time axis is irregular: step {k + 1} ({iso(t[k])} to {iso(t[k + 1])}) lasts "
            f"{diffs[k] / 1e3:,.0f} s where the others last {step / 1e3:,.0f} s "
            f"({odd.size:,} irregular steps: {format_ids([iso(t[i + 1]) for i in odd[:4]], 3)}).",
            path=path, field=field, ids=[iso(t[i + 1]) for i in odd[:100]],
            hint="Resample the runoff to a regular step (fill gaps) before routing.")
    return step / 1e3


def step_starts(times: np.ndarray, *, bounds: np.ndarray | None = None, label: str = "start",
                dt: float | None = None, path: Any = None, field: str = "time") -> tuple[np.ndarray, float, str]:
    """Step starts (datetime64[ns]) and step length (s) of a time axis.

    Parameters
    ----------
    times : datetime64 [T], the file's time stamps.
    bounds : datetime64 [T, 2] or None, CF ``time_bnds``; when given they decide (start = bounds[:, 0]).
    label : what a bare time stamp marks, 'start' or 'end' of its step (used without bounds).
    dt : s, the step length when the file has a single step and no bounds (checked against the file otherwise).

    Returns
    -------
    starts : TIME_DTYPE [T]; dt : float, s (within MIN_DT .. MAX_DT); how : a short phrase saying how they were
    found.
    """
    if label not in TIME_LABELS:
        raise ValueError(f"time_label must be one of {TIME_LABELS}, not {label!r}")
    t = np.asarray(times).astype(TIME_DTYPE).reshape(-1)
    if bounds is not None:
        b = np.asarray(bounds).astype(TIME_DTYPE).reshape(-1, 2)
        lengths = (b[:, 1] - b[:, 0]).astype(np.int64)
        bad = np.flatnonzero(lengths != lengths[0]) if lengths.size else np.array([], int)
        if lengths.size and lengths[0] <= 0:
            bad = np.array([0])
        if bad.size:
            k = int(bad[0])
            raise RunoffError(f"the time bounds are irregular: step {k + 1} ({iso(b[k, 0])} to {iso(b[k, 1])}) "
                              f"lasts {lengths[k] / 1e3:,.0f} s where step 1 lasts {lengths[0] / 1e3:,.0f} s.",
                              path=path, field=field, ids=[iso(b[k, 0])],
                              hint="Resample the runoff to a regular step before routing.")
        step = lengths[0] / 1e3 if lengths.size else float(dt or 0)
        if b.shape[0] > 1:
            regular_step(b[:, 0], path=path, field=field)
            gap = np.flatnonzero(b[1:, 0] != b[:-1, 1])
            if gap.size:
                k = int(gap[0])
                raise RunoffError(f"the time bounds leave a gap or overlap after step {k + 1} "
                                  f"({iso(b[k, 1])} then {iso(b[k + 1, 0])}).", path=path, field=field,
                                  ids=[iso(b[k + 1, 0])], hint="Fill the gap so that steps follow each other.")
        _check_dt(dt, step, path, field)
        step = check_dt(step, path=path, field=field)
        return b[:, 0].copy(), float(step), "time bounds"
    if t.size >= 2:
        step = regular_step(t, path=path, field=field)
        _check_dt(dt, step, path, field)
    elif dt is not None:
        step = float(dt)
    else:
        raise RunoffError("the file holds a single time step and no time bounds, so its step length is unknown.",
                          path=path, field=field,
                          hint=f"Give it with {opt('read_runoff.dt', 3600)} (seconds), or add time_bnds to the file.")
    step = check_dt(step, path=path, field=field)
    starts = t if label == "start" else t - step_delta(step)
    return starts.copy(), float(step), f"time stamps as step {label}s"


def _check_dt(dt: float | None, step: float, path: Any, field: str) -> None:
    if dt is not None and abs(float(dt) - step) > 1e-6 * max(step, 1.0):
        raise RunoffError(f"a step length of {dt:g} s was given but the file's steps last {step:g} s.", path=path,
                          field=field, hint=f"Leave {opt('read_runoff.dt')} out; it is read from the file.")


def _name(path: Any) -> str:
    from pathlib import Path

    return Path(str(path)).name if path else "runoff"


def as_datetimes(values: Sequence[Any] | np.ndarray, *, path: Any = None, field: str = "time") -> np.ndarray:
    """Any sequence of dates (strings, datetimes, pandas timestamps, tz-aware: converted to UTC) -> TIME_DTYPE."""
    import pandas as pd

    raw = np.asarray(values)
    if raw.dtype.kind == "M":
        return _as_series_times(raw.reshape(-1), path=path, field=field)
    try:
        idx = pd.to_datetime(pd.Index(raw.reshape(-1)), utc=True)
    except (ValueError, TypeError, OverflowError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunoffError(f"cannot read the times: {first}", path=path, field=field,
                          hint="Use ISO 8601 times such as 2020-01-01T00:00:00.") from None
    if idx.isna().any():
        bad = np.flatnonzero(np.asarray(idx.isna()))
        raise RunoffError(f"{bad.size:,} times are empty (rows {format_ids(bad + 1)}).", path=path, field=field,
                          hint="Every row needs a time.")
    return idx.tz_convert(None).values.astype(TIME_DTYPE)
