"""Runoff units to m3/s, and the one alignment of runoff rows onto the network's reaches.

Every reader ends here (files, xarray objects, arrays, the service's inline and packed bodies), so units,
missing reaches, unknown reaches, NaN, infinite, out-of-range and negative values are judged once, with the
same messages whatever the source.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any

import numpy as np

from ..errors import MissingValueError, RunoffError, RunoffMismatchError, UnitError, format_ids, opt, render_options
from ..names import as_ids
from ..units import parse_unit
from ._time import check_dt, iso, step_axis
from ._warn import warn

__all__ = ["UnitInfo", "Aligner", "Findings", "classify_unit", "to_m3s", "align", "runoff_from_array", "POLICIES",
           "routable_limit"]

_FLOAT32_MAX = float(np.finfo(np.float32).max)
BLOCK_VALUES = 2e7  # values per block judged at a time (160 MB in float64)


def routable_limit(n_reaches: int, n_steps: int) -> float:
    """The largest |runoff| (m3/s) routed without float32 overflow: routing sums at most every reach's runoff over
    every step (non-negative kernels weigh each by at most 1), so values up to float32's maximum / (N T), with a
    factor 10 to spare, cannot overflow."""
    return _FLOAT32_MAX / max(n_reaches * n_steps, 1) / 10.0

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
                        hint=f"Give them with {opt('read_runoff.units', 'mm')}, or set the variable's units "
                             f"attribute.")
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
                        hint=f"Give one of these with {opt('read_runoff.units', 'm3')}, or fix the variable's units "
                             f"attribute.")
    if found.kind not in allowed:
        raise UnitError(f"runoff unit '{text}' is a {found.kind.replace('_', ' ')}, which this format does not "
                        f"take (expected: {', '.join(k.replace('_', ' ') for k in allowed)}).", path=path,
                        field=variable, hint=f"Check the units attribute, or {opt('read_runoff.units')}.")
    return found


def to_m3s(values: np.ndarray, info: UnitInfo, dt: float, area: np.ndarray | None, *, ids: np.ndarray,
           path: Any = None, variable: str | None = None) -> np.ndarray:
    """File numbers [M, T] in ``info``'s unit -> m3/s float64 (step means); float32 numbers already in m3/s are
    returned as they are (no copy: float64 and back would give the same numbers).

    area : m^2 [M] catchment area of each row, needed for depths; NaN where unknown (an error for those rows).
    """
    if (getattr(values, "dtype", None) == np.float32 and info.factor == 1.0 and not info.per_step
            and not info.needs_area):
        return values
    out = np.asarray(values, dtype=np.float64) * info.factor  # one copy, then in place
    if info.per_step:
        out /= dt
    if info.needs_area:
        if area is None:
            raise UnitError(f"runoff in '{info.unit}' is a depth, and depths need catchment areas.", path=path,
                            field=variable, hint=f"Add catchment_area (m2) to the file, or read the network with "
                                                 f"catchment areas (a catchment area field, or "
                                                 f"{opt('read_network.catchments', 'catchments.gpkg')}).")
        area = np.asarray(area, dtype=np.float64)
        bad = ~np.isfinite(area) | (area < 0)
        if bad.any():
            raise RunoffError(f"runoff in '{info.unit}' is a depth, but {int(bad.sum()):,} reaches have no valid "
                              f"catchment area: {format_ids(ids[bad])}.", path=path, field=variable,
                              ids=ids[bad].tolist(), hint="Give every reach a catchment area in m2.")
        out *= area[:, None]
    return out


@dataclasses.dataclass
class Tally:
    """One kind of odd value found: the reaches (bool [N], the aligner's reach order) and steps (bool [T]) holding
    one, how many, and the extreme (the largest magnitude of infinite and too large values, the lowest negative)."""

    rows: np.ndarray
    steps: np.ndarray
    count: int = 0
    extreme: float = 0.0


class Findings:
    """What an :class:`Aligner`'s checks found over its steps, per kind: 'nan', 'inf', 'big' (beyond the routable
    limit) and 'neg' (a :class:`Tally` each). ``Aligner.finish`` words them; the findings of aligners that judged
    pieces of the network apart (Dask workers) are added up with :meth:`Aligner.absorb` and worded as one."""

    KINDS = ("nan", "inf", "big", "neg")

    def __init__(self, n_reaches: int, n_steps: int) -> None:
        self.tallies = {kind: Tally(np.zeros(n_reaches, dtype=bool), np.zeros(n_steps, dtype=bool))
                        for kind in self.KINDS}

    def __getitem__(self, kind: str) -> Tally:
        return self.tallies[kind]

    def note(self, kind: str, rows: np.ndarray, steps: np.ndarray, count: int, extreme: float) -> None:
        """Record ``count`` values of ``kind`` in reaches ``rows`` at steps ``steps`` (positions)."""
        tally = self.tallies[kind]
        tally.rows[rows] = True
        tally.steps[steps] = True
        tally.count += int(count)
        tally.extreme = min(tally.extreme, extreme) if kind == "neg" else max(tally.extreme, extreme)

    def fails(self, nan: str) -> bool:
        """Whether wording them raises: infinite or too large values, or NaN under the policy nan='error'."""
        return bool(self["inf"].count or self["big"].count or (self["nan"].count and nan == "error"))


class Aligner:
    """Places file rows (m3/s) into a float32 [N, T] array in the network's reach order, block by block in time,
    so that a large file never needs more than one block in float64 besides the result.

    On construction: duplicate ids raise RunoffError; ids unknown to the network are warned about and ignored;
    network reaches absent from the file raise RunoffMismatchError (``missing='zero'``: zeros, warned).
    ``put`` fills steps (the values are judged in float64, before the float32 cast); ``finish`` judges, over the
    whole series: infinite values and values beyond :func:`routable_limit` (RunoffError naming reaches and
    times: a float32 cast or the routing sums would turn them into inf), NaN (MissingValueError naming reaches and
    times, or zeros with ``nan='zero'``) and negative values (kept, warned). What ``put`` found is ``findings``
    (:class:`Findings`); :meth:`fails` tells whether ``finish`` will raise, and :meth:`absorb` adds the findings
    of another aligner that judged some of the reaches over the same steps, so that pieces judged apart (Dask
    workers) are worded once, for the whole network.
    """

    def __init__(self, file_ids: np.ndarray, network, n_steps: int, *, path: Any = None, field: str | None = None,
                 nan: str = "error", missing: str = "error") -> None:
        if nan not in POLICIES:
            raise ValueError(f"nan must be one of {POLICIES}, not {nan!r}")
        if missing not in POLICIES:
            raise ValueError(f"missing must be one of {POLICIES}, not {missing!r}")
        self.network, self.path, self.field, self.nan = network, path, field, nan
        name = _name(path)
        file_ids = as_ids(file_ids, path=path, field=field, error=RunoffError)
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
                    hint=f"Give runoff for every reach, or route them with no lateral inflow: "
                         f"{opt('read_runoff.missing', 'zero')}.")
            warn(render_options(f"{name}: {absent.size:,} of the network's {n:,} reaches have no runoff "
                                f"({format_ids(absent)}); they get zero lateral inflow "
                                f"({opt('read_runoff.missing', 'zero')})."))
            self.record["missing_reaches"] = int(absent.size)
        self.out = np.zeros((n, n_steps), dtype=np.float32)
        self.findings = Findings(n, n_steps)
        self.limit = routable_limit(n, n_steps)
        self._in_order = self.rows.size == n and bool(np.array_equal(self.rows, np.arange(n)))

    def put(self, t0: int, block: np.ndarray) -> None:
        """Rows of the file (all M of them, m3/s) for steps t0 .. t0 + block.shape[1] (a transposed view of the
        file's [time, reach] block is placed without a copy of its own)."""
        part = np.asarray(block)
        if part.dtype != np.float32:  # judged in float64, before the float32 cast (float32 is judged exactly as is)
            part = np.asarray(part, dtype=np.float64)
        if not self.known.all():
            part = part[self.known]
        # fast path first: the largest and the smallest value (two reductions, no temporary) tell whether anything
        # is odd (NaN, inf, too large: NaN propagates and fails the comparison) or negative
        hi, lo = (float(part.max()), float(part.min())) if part.size else (0.0, 0.0)
        odd = not (max(hi, -lo) <= self.limit)
        if odd:
            part = np.asarray(part, dtype=np.float64)  # the rare path, in float64 as ever
            nan = np.isnan(part)
            if nan.any():
                self._note("nan", t0, nan, 0.0)
                part = np.where(nan, 0.0, part)  # zero now; finish() raises instead when nan='error'
            for kind, bad in (("inf", np.isinf(part)), ("big", np.isfinite(part) & (np.abs(part) > self.limit))):
                if bad.any():
                    self._note(kind, t0, bad, float(np.abs(part[bad]).max()))
        low = (float(part.min()) if part.size else 0.0) if odd else lo
        if low < 0:
            self._note("neg", t0, part < 0, low)
        with np.errstate(over="ignore"):  # values beyond float32 are refused in finish(), with their reaches
            if self._in_order:
                self.out[:, t0:t0 + part.shape[1]] = part
            else:
                self.out[self.rows, t0:t0 + part.shape[1]] = part

    def _note(self, kind: str, t0: int, mask: np.ndarray, extreme: float) -> None:
        """Record the values ``mask`` [placed rows, steps from t0] marks as ``kind``."""
        self.findings.note(kind, self.rows[mask.any(axis=1)], t0 + np.flatnonzero(mask.any(axis=0)), int(mask.sum()),
                           extreme)

    def fails(self) -> bool:
        """Whether :meth:`finish` will raise on what was found so far (infinite or too large values, or NaN with
        nan='error'): a piece that fails need not be routed."""
        return self.findings.fails(self.nan)

    def absorb(self, reaches: np.ndarray, findings: Findings) -> None:
        """Add the ``findings`` of an aligner of ``reaches`` (positions in this aligner's network, in the order of
        that aligner's reaches) over the same steps, as if this aligner had judged those values itself."""
        reaches = np.asarray(reaches, dtype=np.int64)
        for kind in Findings.KINDS:
            theirs = findings[kind]
            if theirs.rows.shape != reaches.shape or theirs.steps.shape != self.findings[kind].steps.shape:
                raise AssertionError(f"findings of {theirs.rows.size} reaches x {theirs.steps.size} steps given for "
                                     f"{reaches.size} reaches x {self.findings[kind].steps.size} steps")
            self.findings.note(kind, reaches[theirs.rows], np.flatnonzero(theirs.steps), theirs.count, theirs.extreme)

    def finish(self, time: np.ndarray) -> tuple[np.ndarray, dict]:
        """The float32 [N, T] array (m3/s) and a record for ``Runoff.attrs``; raises on NaN with nan='error'."""
        ids, name, found = self.network.ids, _name(self.path), self.findings
        bad = found["inf"]
        if bad.count:
            r_bad, t_bad = ids[bad.rows], np.flatnonzero(bad.steps)
            raise RunoffError(
                f"{bad.count:,} runoff values are infinite in {r_bad.size:,} reaches ({format_ids(r_bad)}) at "
                f"{t_bad.size:,} times ({_times(time, t_bad)}).", path=self.path, field=self.field,
                ids=r_bad.tolist(), hint="Fix them at the source (often a division by zero in the preparation); "
                                         "missing values are NaN, not infinite.")
        bad = found["big"]
        if bad.count:
            r_bad, t_bad = ids[bad.rows], np.flatnonzero(bad.steps)
            raise RunoffError(
                f"{bad.count:,} runoff values are too large to route (up to {bad.extreme:.3g} m3/s, beyond "
                f"{self.limit:.3g} m3/s, where float32 routing of {ids.size:,} reaches x {self.out.shape[1]:,} steps "
                f"could overflow to inf) in {r_bad.size:,} reaches ({format_ids(r_bad)}) at {t_bad.size:,} times "
                f"({_times(time, t_bad)}).", path=self.path, field=self.field, ids=r_bad.tolist(),
                hint=f"Check the units ({opt('read_runoff.units')}) and the values; no river carries that much.")
        nan = found["nan"]
        if nan.count:
            r_bad, t_bad = ids[nan.rows], np.flatnonzero(nan.steps)
            if self.nan == "error":
                raise MissingValueError(
                    f"{nan.count:,} runoff values are missing (NaN) in {r_bad.size:,} reaches "
                    f"({format_ids(r_bad)}) at {t_bad.size:,} times ({_times(time, t_bad)}).",
                    path=self.path, field=self.field, ids=r_bad.tolist(),
                    hint=f"Fill the gaps, or treat missing runoff as zero with {opt('read_runoff.nan', 'zero')}.")
            warn(render_options(f"{name}: {nan.count:,} missing (NaN) runoff values in {r_bad.size:,} reaches "
                                f"({format_ids(r_bad)}) are treated as zero ({opt('read_runoff.nan', 'zero')})."))
            self.record["nan_replaced"] = nan.count
        neg = found["neg"]
        if neg.count:
            r_neg = ids[neg.rows]
            warn(f"{name}: {neg.count:,} runoff values are negative (down to {neg.extreme:.4g} m3/s) in "
                 f"{r_neg.size:,} reaches ({format_ids(r_neg)}); they are routed as they are (losing reaches). "
                 f"Clip them beforehand if they are errors.")
            self.record["negative_values"] = neg.count
        return self.out, self.record


def align(file_ids: np.ndarray, values: np.ndarray, network, *, path: Any = None, field: str | None = None,
          time: np.ndarray, nan: str = "error", missing: str = "error") -> tuple[np.ndarray, dict]:
    """Rows of ``values`` [M, T] (m3/s, one per ``file_ids``) -> float32 [N, T] in the network's reach order,
    in one block (see :class:`Aligner` for the checks)."""
    aligner = Aligner(file_ids, network, values.shape[1], path=path, field=field, nan=nan, missing=missing)
    aligner.put(0, values)
    return aligner.finish(time)


def runoff_from_array(values: Any, network, *, ids: Any = None, dt: float, time: Any = None,
                      units: str = "m3 s-1", nan: str = "error", missing: str = "error", path: Any = None,
                      field: str | None = None, attrs: dict | None = None):
    """A :class:`Runoff` from an array [reach, time] (numpy, torch, nested lists; dask computes here), through the
    same checks as every file reader (:class:`Aligner`).

    Parameters
    ----------
    values : [M, T] in ``units`` (m3/s by default; 'm3' volumes per step; depths use the network's catchment
        areas); a leading batch axis of size 1 is dropped.
    ids : int [M], the reach of each row; None: the rows are the network's reaches, in its order.
    dt : step length, s (checked: MIN_DT .. MAX_DT, whole milliseconds).
    time : the start of the first step (a date), or the start of every step [T]; None: 1970-01-01.
    field : what messages call the values ('runoff.values' in the service).
    """
    from .model import Runoff

    where = path if path is not None else None
    dt = check_dt(dt, path=where, field="dt" if field is None else f"{field.rsplit('.', 1)[0]}.dt")
    if hasattr(values, "detach"):  # torch: leave the graph and the device
        values = values.detach().cpu().numpy()
    arr = np.asarray(values)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise RunoffError(f"runoff must be a table [reach, time]; got an array of shape {arr.shape}.", path=where,
                          field=field, hint="Give one row per reach and one column per step.")
    if arr.dtype.kind not in "iufb":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise RunoffError(f"runoff holds {arr.dtype} values, not numbers.", path=where, field=field,
                              hint="Give numbers (null or NaN for a missing value).") from None
    n_steps = arr.shape[1]
    if ids is None:
        if arr.shape[0] != network.n_reaches:
            raise RunoffMismatchError(
                f"runoff has {arr.shape[0]:,} rows but the network has {network.n_reaches:,} reaches.", path=where,
                field=field, hint="Give one row per reach in the network's order, or give the reach id of each row.")
        ids = network.ids
    else:
        ids = as_ids(ids, path=where, field=field, error=RunoffError)
        if ids.shape != (arr.shape[0],):
            raise RunoffError(f"{ids.size:,} ids were given for {arr.shape[0]:,} runoff rows.", path=where,
                              field=field, hint="Give one reach id per row.")
    if time is None:
        starts, how = step_axis("1970-01-01", dt, n_steps), "none given: steps counted from 1970-01-01"
    elif np.ndim(time) == 0:
        starts, how = step_axis(time, dt, n_steps, path=where), "first step start given"
    else:
        from ._time import as_datetimes, regular_step

        starts, how = as_datetimes(list(time), path=where, field="time"), "step starts given"
        if starts.size != n_steps:
            raise RunoffError(f"{starts.size:,} step times were given for {n_steps:,} steps.", path=where,
                              field="time", hint="Give one time per step, or only the start of the first step.")
        if starts.size > 1 and abs(regular_step(starts, path=where) - dt) > 1e-6 * dt:
            raise RunoffError(f"the step times are {regular_step(starts, path=where):g} s apart, not dt={dt:g} s.",
                              path=where, field="time", hint="Give times one dt apart.")
    info = classify_unit(units, variable=field, path=where)
    area = None
    if info.needs_area:
        if network.catchment_area is not None:
            area = np.full(ids.size, np.nan)
            known = np.isin(ids, network.ids)
            area[known] = network.catchment_area[network.index_of(ids[known])]
            area[~known] = 0.0  # rows of unknown reaches are dropped by the aligner
    aligner = Aligner(ids, network, n_steps, path=where, field=field, nan=nan, missing=missing)
    chunk = max(1, int(BLOCK_VALUES // max(arr.shape[0], 1)))  # float64 temporaries of one block, not the whole
    for t0 in range(0, n_steps, chunk):
        aligner.put(t0, to_m3s(arr[:, t0:t0 + chunk], info, dt, area, ids=ids, path=where, variable=field))
    out, record = aligner.finish(starts)
    meta = {"format": "array", "units": info.unit, "unit_kind": info.kind, "time_stamps": how, **record,
            **(attrs or {})}
    return Runoff(out, network.ids, starts, dt, source=None if path is None else str(path), attrs=meta)


def _times(time: np.ndarray, steps: np.ndarray) -> str:
    text = format_ids([iso(time[i]) for i in steps[:3]])
    return text + (f" and {steps.size - 3:,} more" if steps.size > 3 else "")


def _name(path: Any) -> str:
    from pathlib import Path

    return Path(str(path)).name if path else "runoff"
