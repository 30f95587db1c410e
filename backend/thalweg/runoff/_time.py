"""Time axes of runoff and discharge files: CF decoding, step length, step starts.

Shared by the runoff readers and the discharge reader, so both judge a time axis the same way.
Every function returns ``datetime64[ns]`` (naive, UTC as CF files are) and step lengths in seconds.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import RunoffError, format_ids
from ._warn import warn

__all__ = ["decode_cf_times", "encode_cf_times", "cf_bounds", "regular_step", "step_starts", "as_datetimes", "iso",
           "TIME_LABELS"]

TIME_LABELS = ("start", "end")
_NS = np.timedelta64(1, "ns")


def iso(t: Any) -> str:
    """``2020-01-01T03:00:00`` (seconds shown only when not zero; no trailing nanoseconds)."""
    text = str(np.datetime64(t, "s"))
    return text[:-3] if text.endswith(":00") else text


def decode_cf_times(values: Any, units: str | None, calendar: str | None = None, *, path: Any = None,
                    field: str = "time") -> np.ndarray:
    """Numbers with CF ``units`` ('seconds since 1970-01-01') -> datetime64[ns].

    Non-standard calendars (noleap, 365_day) are mapped onto real dates with a warning; dates that do not
    exist in the real calendar (30 February of a 360_day calendar) raise RunoffError.
    """
    import xarray as xr

    raw = np.asarray(values)
    if raw.dtype.kind == "M":
        return raw.astype("datetime64[ns]")
    if not units or " since " not in str(units):
        raise RunoffError(f"the time variable has no CF units (found {units!r}).", path=path, field=field,
                          hint="Give it units such as 'seconds since 1970-01-01 00:00:00'.")
    attrs = {"units": str(units)}
    if calendar:
        attrs["calendar"] = str(calendar)
    ds = xr.Dataset({"t": (("n",), raw.reshape(-1), attrs)})
    try:
        decoded = xr.decode_cf(ds)["t"].values
    except Exception as exc:  # xarray raises several types for bad units
        raise RunoffError(f"cannot decode the time axis with units {units!r}: {exc}", path=path, field=field,
                          hint="Use CF units such as 'hours since 2000-01-01 00:00:00'.") from None
    if decoded.dtype.kind == "O":
        warn(f"{_name(path)}: field {field} uses the '{calendar}' calendar; its dates are mapped onto "
                      f"the standard calendar.")
        try:
            decoded = np.array([np.datetime64(d.isoformat()) for d in decoded], dtype="datetime64[ns]")
        except ValueError as exc:
            raise RunoffError(f"the '{calendar}' calendar holds dates that do not exist in the standard "
                              f"calendar ({exc}).", path=path, field=field,
                              hint="Convert the file to a standard calendar first.") from None
    return decoded.astype("datetime64[ns]").reshape(raw.shape)


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
    """datetime64 -> (int64 offsets, CF units), in whole seconds when exact, else microseconds/nanoseconds."""
    t = np.asarray(times, dtype="datetime64[ns]").astype(np.int64)
    for unit, factor in (("seconds", 10**9), ("microseconds", 10**3), ("nanoseconds", 1)):
        if np.all(t % factor == 0):
            return t // factor, f"{unit} since 1970-01-01 00:00:00"
    raise AssertionError("unreachable")


def regular_step(times: np.ndarray, *, path: Any = None, field: str = "time") -> float:
    """The step length (s) of an increasing, regular time axis; RunoffError naming the first step that
    differs from the most common step (or that does not increase)."""
    t = np.asarray(times, dtype="datetime64[ns]")
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
            f"{diffs[k] / 1e9:,.0f} s where the others last {step / 1e9:,.0f} s "
            f"({odd.size:,} irregular steps: {format_ids([iso(t[i + 1]) for i in odd[:4]], 3)}).",
            path=path, field=field, ids=[iso(t[i + 1]) for i in odd[:100]],
            hint="Resample the runoff to a regular step (fill gaps) before routing.")
    return step / 1e9


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
    starts : datetime64[ns] [T]; dt : float, s; how : a short phrase saying how they were found.
    """
    if label not in TIME_LABELS:
        raise ValueError(f"time_label must be one of {TIME_LABELS}, not {label!r}")
    t = np.asarray(times, dtype="datetime64[ns]").reshape(-1)
    if bounds is not None:
        b = np.asarray(bounds, dtype="datetime64[ns]").reshape(-1, 2)
        lengths = (b[:, 1] - b[:, 0]).astype(np.int64)
        bad = np.flatnonzero(lengths != lengths[0]) if lengths.size else np.array([], int)
        if lengths.size and lengths[0] <= 0:
            bad = np.array([0])
        if bad.size:
            k = int(bad[0])
            raise RunoffError(f"the time bounds are irregular: step {k + 1} ({iso(b[k, 0])} to {iso(b[k, 1])}) "
                              f"lasts {lengths[k] / 1e9:,.0f} s where step 1 lasts {lengths[0] / 1e9:,.0f} s.",
                              path=path, field=field, ids=[iso(b[k, 0])],
                              hint="Resample the runoff to a regular step before routing.")
        step = lengths[0] / 1e9 if lengths.size else float(dt or 0)
        if b.shape[0] > 1:
            regular_step(b[:, 0], path=path, field=field)
            gap = np.flatnonzero(b[1:, 0] != b[:-1, 1])
            if gap.size:
                k = int(gap[0])
                raise RunoffError(f"the time bounds leave a gap or overlap after step {k + 1} "
                                  f"({iso(b[k, 1])} then {iso(b[k + 1, 0])}).", path=path, field=field,
                                  ids=[iso(b[k + 1, 0])], hint="Fill the gap so that steps follow each other.")
        _check_dt(dt, step, path, field)
        return b[:, 0].copy(), float(step), "time bounds"
    if t.size >= 2:
        step = regular_step(t, path=path, field=field)
        _check_dt(dt, step, path, field)
    elif dt is not None:
        step = float(dt)
    else:
        raise RunoffError("the file holds a single time step and no time bounds, so its step length is unknown.",
                          path=path, field=field, hint="Pass dt= (seconds), or add time_bnds to the file.")
    if step <= 0:
        raise RunoffError(f"the step length must be positive (got {step} s).", path=path, field=field)
    starts = t if label == "start" else t - np.timedelta64(int(round(step * 1e9)), "ns")
    return starts.copy(), float(step), f"time stamps as step {label}s"


def _check_dt(dt: float | None, step: float, path: Any, field: str) -> None:
    if dt is not None and abs(float(dt) - step) > 1e-6 * max(step, 1.0):
        raise RunoffError(f"dt={dt:g} s was given but the file's steps last {step:g} s.", path=path, field=field,
                          hint="Leave dt out; it is read from the file.")


def _name(path: Any) -> str:
    from pathlib import Path

    return Path(str(path)).name if path else "runoff"


def as_datetimes(values: Sequence[Any] | np.ndarray, *, path: Any = None, field: str = "time") -> np.ndarray:
    """Any sequence of dates (strings, datetimes, pandas timestamps, tz-aware: converted to UTC) -> datetime64[ns]."""
    import pandas as pd

    try:
        idx = pd.to_datetime(pd.Index(np.asarray(values)), utc=True)
    except (ValueError, TypeError) as exc:
        raise RunoffError(f"cannot read the times: {exc}", path=path, field=field,
                          hint="Use ISO 8601 times such as 2020-01-01T00:00:00.") from None
    if idx.isna().any():
        bad = np.flatnonzero(np.asarray(idx.isna()))
        raise RunoffError(f"{bad.size:,} times are empty (rows {format_ids(bad + 1)}).", path=path, field=field,
                          hint="Every row needs a time.")
    return idx.tz_convert(None).values.astype("datetime64[ns]")
