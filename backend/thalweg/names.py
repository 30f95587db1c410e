"""The names Thalweg recognises for reach ids, times and grid axes, and the one conversion of id values to int64.

Every reader (runoff files, discharge files, catchment layers, gauge tables) looks names up here, so a file
that reads as runoff reads back as discharge and a catchment layer is matched by the same id names.
Names are compared ignoring case.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .errors import InputError, format_ids

__all__ = ["REACH_ID_NAMES", "TIME_NAMES", "X_NAMES", "Y_NAMES", "find_name", "is_reach_id_name", "is_time_name",
           "as_ids"]

# RAPID rivid; GEOGloWS v2 / river-route 2.x river_id; river-route 3 riverId; NWM feature_id; GEOGloWS LINKNO;
# MERIT/NHDPlus COMID; HydroRIVERS HYRIV_ID; mizuRoute segId; TauDEM streamID; generic names last
REACH_ID_NAMES = ("rivid", "river_id", "riverid", "reach_id", "reachid", "linkno", "comid", "feature_id",
                  "hyriv_id", "segid", "streamid", "reach", "id")
# NetCDF time dimensions and table time columns
TIME_NAMES = ("time", "valid_time", "date", "datetime", "timestamp", "times", "dates", "t")
X_NAMES = ("lon", "longitude", "x", "rlon", "easting", "long", "nav_lon")
Y_NAMES = ("lat", "latitude", "y", "rlat", "northing", "nav_lat")

_INT64_MAX = np.iinfo(np.int64).max


def find_name(names: Iterable[Any], candidates: Sequence[str], *, also: Sequence[str | None] = ()) -> Any | None:
    """The first of ``names`` that matches ``also`` (e.g. the network's own id field) or ``candidates``, in the
    order of preference of ``also`` then ``candidates``, ignoring case; None when none does."""
    lowered: dict[str, Any] = {}
    for name in names:
        lowered.setdefault(str(name).strip().lower(), name)
    for candidate in [a for a in also if a] + list(candidates):
        hit = lowered.get(str(candidate).lower())
        if hit is not None:
            return hit
    return None


def is_reach_id_name(name: Any) -> bool:
    return str(name).strip().lower() in REACH_ID_NAMES


def is_time_name(name: Any) -> bool:
    return str(name).strip().lower() in TIME_NAMES


def as_ids(values: Any, *, path: Any = None, field: str | None = None, layer: str | None = None,
           error: type[InputError] = InputError, what: str = "reach ids", hint: str | None = None) -> np.ndarray:
    """Id values (integers, whole floats, numeric strings) -> int64, exactly, or ``error`` naming the bad ones.

    Refused: empty values (NaN, None), fractions, text, and integers outside int64 (uint64 ids above
    9,223,372,036,854,775,807 would wrap to negative ids in a plain cast).
    """
    arr = np.asarray(values)
    if arr.dtype.kind in "i":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "b":
        raise error(f"{what} are booleans, not ids.", path=path, layer=layer, field=field,
                    hint=hint or "Choose the field that holds the ids.")
    if arr.dtype.kind == "u":
        big = arr > _INT64_MAX
        if big.any():
            shown = np.unique(arr[big])
            raise error(f"{int(big.sum()):,} {what} are larger than the largest 64-bit signed integer "
                        f"(9,223,372,036,854,775,807): {format_ids(shown)}.", path=path, layer=layer, field=field,
                        ids=[int(v) for v in shown[:100]],
                        hint=hint or "Renumber those ids below 2**63 (keep a lookup table to the original ids).")
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        finite = np.isfinite(arr)
        if not finite.all():
            rows = np.flatnonzero(~finite)
            raise error(f"{rows.size:,} {what} are empty (rows {format_ids(rows + 1)}).", path=path, layer=layer,
                        field=field, hint=hint or "Every row needs an id; remove the rows without one.")
        frac = arr != np.round(arr)
        big = np.abs(arr) >= 2.0 ** 63
        if frac.any() or big.any():
            bad = arr[frac | big]
            raise error(f"{bad.size:,} {what} are not whole numbers within 64-bit integers: {format_ids(bad)}.",
                        path=path, layer=layer, field=field, hint=hint or "Choose the field that holds integer ids.")
        if (np.abs(arr) > 2.0 ** 53).any():
            big = arr[np.abs(arr) > 2.0 ** 53]
            raise error(f"{big.size:,} {what} are stored as floating point above 2**53, where they lose digits: "
                        f"{format_ids(big)}.", path=path, layer=layer, field=field,
                        hint=hint or "Store the ids as integers.")
        return arr.astype(np.int64)
    # text or objects (ids read from a CSV as strings, Python ints of any size)
    flat = arr.reshape(-1)
    out = np.empty(flat.size, dtype=np.int64)
    bad: list[Any] = []
    for i, value in enumerate(flat):
        try:
            number = int(str(value).strip()) if not isinstance(value, (int, np.integer)) else int(value)
        except (TypeError, ValueError):
            try:
                as_float = float(str(value).strip())
            except (TypeError, ValueError):
                bad.append(value)
                continue
            if not np.isfinite(as_float) or as_float != round(as_float):
                bad.append(value)
                continue
            number = int(as_float)
        if not -_INT64_MAX - 1 <= number <= _INT64_MAX:
            bad.append(value)
            continue
        out[i] = number
    if bad:
        raise error(f"{len(bad):,} {what} are not integers within 64 bits: {format_ids([repr(b) for b in bad])}.",
                    path=path, layer=layer, field=field, hint=hint or "Choose the field that holds integer ids.")
    return out.reshape(arr.shape)
