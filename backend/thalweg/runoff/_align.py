"""Runoff units to m3/s, and the alignment of file reaches onto the network's reaches.

Every reader ends here, so units, missing reaches, unknown reaches, NaN and negative values are
judged once, with the same messages whatever the format.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any

import numpy as np

from ..errors import MissingValueError, RunoffError, RunoffMismatchError, UnitError, format_ids
from ..units import parse_unit
from ._time import iso
from ._warn import warn

__all__ = ["UnitInfo", "Aligner", "classify_unit", "to_m3s", "align", "POLICIES"]

POLICIES = ("error", "zero")
KINDS = ("volume", "discharge", "depth", "depth_rate", "volume_rate")
_ACCEPTED = ("a volume per step (m3), a discharge (m3 s-1), a depth per step (m, mm, kg m-2) or a depth "
             "rate (kg m-2 s-1, mm/h, m s-1)")
# '<amount> s-1', '<amount>/s', '<amount> s^-1': the time part is the last token
_RATE = re.compile(r"^(?P<amount>.+?)\s*(?:/\s*(?P<slash>[a-z]+)|\s+(?P<neg>[a-z]+)(?:-1|\^-1|\*\*-1))$")


@dataclasses.dataclass(frozen=True)
class UnitInfo:
    """How a runoff unit converts to m3/s.

    kind : 'volume' (m3 per step), 'discharge' (m3/s), 'depth' (m per step, times the catchment area),
        'depth_rate' (m/s, times the catchment area) or 'volume_rate' (m3 per time unit).
    factor : multiplies the file's numbers into m3, m3/s, m or m/s.
    unit : the unit string as found.
    """

    kind: str
    factor: float
    unit: str

    @property
    def needs_area(self) -> bool:
        return self.kind in ("depth", "depth_rate")

    @property
    def per_step(self) -> bool:
        return self.kind in ("volume", "depth")


def classify_unit(unit: Any, *, variable: str | None, path: Any = None, allowed: tuple[str, ...] = KINDS) -> UnitInfo:
    """Kind and SI factor of a runoff unit, through ``thalweg.units``; UnitError naming variable and unit."""
    if unit is None or str(unit).strip() == "":
        raise UnitError(f"the runoff variable has no units; expected {_ACCEPTED}.", path=path, field=variable,
                        hint="Pass units= (for example units='mm'), or set the variable's units attribute.")
    text = " ".join(str(unit).strip().split())
    found: UnitInfo | None = None
    for kind in ("volume", "discharge", "depth"):
        try:
            found = UnitInfo(kind, parse_unit(text, kind), text)
            break
        except UnitError:
            continue
    if found is None:
        match = _RATE.match(text.lower())
        if match:
            per = match.group("slash") or match.group("neg")
            try:
                seconds = parse_unit(per, "time")
            except UnitError:
                seconds = None
            if seconds:
                for kind, rate in (("depth", "depth_rate"), ("volume", "volume_rate")):
                    try:
                        found = UnitInfo(rate, parse_unit(match.group("amount"), kind) / seconds, text)
                        break
                    except UnitError:
                        continue
    if found is None:
        raise UnitError(f"unknown runoff unit '{text}'; expected {_ACCEPTED}.", path=path, field=variable,
                        hint="Pass units= with one of these, or fix the variable's units attribute.")
    if found.kind not in allowed:
        raise UnitError(f"runoff unit '{text}' is a {found.kind.replace('_', ' ')}, which this format does not "
                        f"take (expected: {', '.join(k.replace('_', ' ') for k in allowed)}).", path=path,
                        field=variable, hint="Check the units attribute or the units= argument.")
    return found


def to_m3s(values: np.ndarray, info: UnitInfo, dt: float, area: np.ndarray | None, *, ids: np.ndarray,
           path: Any = None, variable: str | None = None) -> np.ndarray:
    """File numbers [M, T] in ``info``'s unit -> m3/s float64 (step means).

    area : m^2 [M] catchment area of each row, needed for depths; NaN where unknown (an error for those rows).
    """
    out = np.asarray(values, dtype=np.float64) * info.factor  # one copy, then in place
    if info.per_step:
        out /= dt
    if info.needs_area:
        if area is None:
            raise UnitError(f"runoff in '{info.unit}' is a depth, and depths need catchment areas.", path=path,
                            field=variable, hint="Add catchment_area (m2) to the file, or read the network with "
                                                 "catchment areas (a catchment area field or catchments=).")
        area = np.asarray(area, dtype=np.float64)
        bad = ~np.isfinite(area) | (area < 0)
        if bad.any():
            raise RunoffError(f"runoff in '{info.unit}' is a depth, but {int(bad.sum()):,} reaches have no valid "
                              f"catchment area: {format_ids(ids[bad])}.", path=path, field=variable,
                              ids=ids[bad].tolist(), hint="Give every reach a catchment area in m2.")
        out *= area[:, None]
    return out


class Aligner:
    """Places file rows (m3/s) into a float32 [N, T] array in the network's reach order, block by block in time,
    so that a large file never needs more than one block in float64 besides the result.

    On construction: duplicate ids raise RunoffError; ids unknown to the network are warned about and ignored;
    network reaches absent from the file raise RunoffMismatchError (``missing='zero'``: zeros, warned).
    ``put`` fills steps; ``finish`` judges NaN (MissingValueError naming reaches and times, or zeros with
    ``nan='zero'``) and negative values (kept, warned) over the whole series.
    """

    def __init__(self, file_ids: np.ndarray, network, n_steps: int, *, path: Any = None, field: str | None = None,
                 nan: str = "error", missing: str = "error") -> None:
        if nan not in POLICIES:
            raise ValueError(f"nan must be one of {POLICIES}, not {nan!r}")
        if missing not in POLICIES:
            raise ValueError(f"missing must be one of {POLICIES}, not {missing!r}")
        self.network, self.path, self.field, self.nan = network, path, field, nan
        name = _name(path)
        file_ids = np.asarray(file_ids).astype(np.int64)
        uniq, counts = np.unique(file_ids, return_counts=True)
        if (counts > 1).any():
            dup = uniq[counts > 1]
            raise RunoffError(f"{dup.size:,} reach ids appear more than once: {format_ids(dup)}.", path=path,
                              field=field, ids=dup.tolist(), hint="Give one series per reach.")
        self.record: dict[str, Any] = {"nan_policy": nan, "missing_policy": missing}
        self.known = np.isin(file_ids, network.ids)
        if not self.known.all():
            extra = file_ids[~self.known]
            warn(f"{name}: {extra.size:,} reach ids are not in the network and are ignored "
                 f"({format_ids(np.sort(extra))}).")
            self.record["ignored_ids"] = int(extra.size)
        n = network.n_reaches
        self.rows = network.index_of(file_ids[self.known]) if self.known.any() else np.array([], dtype=np.int64)
        covered = np.zeros(n, dtype=bool)
        covered[self.rows] = True
        if not covered.all():
            absent = network.ids[~covered]
            if missing == "error":
                raise RunoffMismatchError(
                    f"the runoff covers {int(covered.sum()):,} of the network's {n:,} reaches; missing "
                    f"{absent.size:,}: {format_ids(absent)}.", path=path, field=field, ids=absent.tolist(),
                    hint="Give runoff for every reach, or pass missing='zero' to route them with no lateral inflow.")
            warn(f"{name}: {absent.size:,} of the network's {n:,} reaches have no runoff ({format_ids(absent)}); "
                 f"they get zero lateral inflow (missing='zero').")
            self.record["missing_reaches"] = int(absent.size)
        self.out = np.zeros((n, n_steps), dtype=np.float32)
        self._nan_rows = np.zeros(n, dtype=bool)
        self._nan_steps = np.zeros(n_steps, dtype=bool)
        self._nan_count = 0
        self._neg_rows = np.zeros(n, dtype=bool)
        self._neg_count = 0
        self._neg_min = 0.0

    def put(self, t0: int, block: np.ndarray) -> None:
        """Rows of the file (all M of them, m3/s) for steps t0 .. t0 + block.shape[1]."""
        part = np.asarray(block)[self.known]
        bad = ~np.isfinite(part)
        if bad.any():
            self._nan_rows[self.rows[bad.any(axis=1)]] = True
            self._nan_steps[t0 + np.flatnonzero(bad.any(axis=0))] = True
            self._nan_count += int(bad.sum())
            part = np.where(bad, 0.0, part)  # zero now; finish() raises instead when nan='error'
        neg = part < 0
        if neg.any():
            self._neg_rows[self.rows[neg.any(axis=1)]] = True
            self._neg_count += int(neg.sum())
            self._neg_min = min(self._neg_min, float(part.min()))
        self.out[self.rows, t0:t0 + part.shape[1]] = part

    def finish(self, time: np.ndarray) -> tuple[np.ndarray, dict]:
        """The float32 [N, T] array (m3/s) and a record for ``Runoff.attrs``; raises on NaN with nan='error'."""
        ids, name = self.network.ids, _name(self.path)
        if self._nan_count:
            r_bad, t_bad = ids[self._nan_rows], np.flatnonzero(self._nan_steps)
            if self.nan == "error":
                times = format_ids([iso(time[i]) for i in t_bad[:3]])
                if t_bad.size > 3:
                    times += f" and {t_bad.size - 3:,} more"
                raise MissingValueError(
                    f"{self._nan_count:,} runoff values are missing (NaN) in {r_bad.size:,} reaches "
                    f"({format_ids(r_bad)}) at {t_bad.size:,} times ({times}).",
                    path=self.path, field=self.field, ids=r_bad.tolist(),
                    hint="Fill the gaps, or pass nan='zero' to treat missing runoff as zero.")
            warn(f"{name}: {self._nan_count:,} missing (NaN) runoff values in {r_bad.size:,} reaches "
                 f"({format_ids(r_bad)}) are treated as zero (nan='zero').")
            self.record["nan_replaced"] = self._nan_count
        if self._neg_count:
            r_neg = ids[self._neg_rows]
            warn(f"{name}: {self._neg_count:,} runoff values are negative (down to {self._neg_min:.4g} m3/s) in "
                 f"{r_neg.size:,} reaches ({format_ids(r_neg)}); they are routed as they are (losing reaches). "
                 f"Clip them beforehand if they are errors.")
            self.record["negative_values"] = self._neg_count
        return self.out, self.record


def align(file_ids: np.ndarray, values: np.ndarray, network, *, path: Any = None, field: str | None = None,
          time: np.ndarray, nan: str = "error", missing: str = "error") -> tuple[np.ndarray, dict]:
    """Rows of ``values`` [M, T] (m3/s, one per ``file_ids``) -> float32 [N, T] in the network's reach order,
    in one block (see :class:`Aligner` for the checks)."""
    aligner = Aligner(file_ids, network, values.shape[1], path=path, field=field, nan=nan, missing=missing)
    aligner.put(0, values)
    return aligner.finish(time)


def _name(path: Any) -> str:
    from pathlib import Path

    return Path(str(path)).name if path else "runoff"
