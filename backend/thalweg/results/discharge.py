"""Discharge: routed Q per reach, instantaneous at the END of each step (ROUTING.md section 1)."""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .._series import TIME_DTYPE, ReachSeries, step_delta
from ..errors import InputError, NetworkError, format_ids

__all__ = ["Discharge", "check_unique_ids"]


def check_unique_ids(reach_ids: Any, what: str = "reach ids of the discharge written") -> None:
    """InputError naming the ids that ``reach_ids`` repeats (the rows of one discharge file)."""
    ids = np.atleast_1d(np.asarray(reach_ids))
    values, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        twice = values[counts > 1]
        raise InputError(f"the {what} repeat {twice.size:,} ids: {format_ids(twice)}.",
                         hint="Give each reach id once.")


@dataclasses.dataclass(frozen=True, eq=False)
class Discharge(ReachSeries):
    """Routed discharge.

    Parameters
    ----------
    values : float32 [N, T], m3/s, instantaneous outflow of each reach at the END of each step.
    ids : int64 [N], reach ids.
    time : datetime64[ms] [T], the END of each step (step t covers (time[t] - dt, time[t]]); milliseconds hold
        any CF date (nanoseconds end in 2262).
    dt : step length, s.
    attrs : provenance written into files (scheme, engine, network and runoff paths, version).
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.step <= np.timedelta64(0, "ms"):  # 1e-12 s would stamp every step alike
            raise InputError(f"the step length {self.dt:g} s is shorter than the time stamps' resolution "
                             f"({np.datetime_data(self.time.dtype)[0]}).", field="dt",
                             hint="Give the step length in seconds (at least 1e-3 s).")

    @property
    def start_time(self) -> np.ndarray:
        """datetime64[ms] [T], the start of each step."""
        return self.time - self.step

    def index_of(self, reach_ids: Any) -> np.ndarray:
        """Rows of the given reach ids; NetworkError naming the ids that have no discharge."""
        wanted = np.atleast_1d(np.asarray(reach_ids)).astype(np.int64)
        order = np.argsort(self.ids, kind="stable")
        pos = np.clip(np.searchsorted(self.ids[order], wanted), 0, max(self.n_reaches - 1, 0))
        ok = self.ids[order][pos] == wanted if self.n_reaches else np.zeros(wanted.shape, bool)
        if not ok.all():
            bad = wanted[~ok]
            raise NetworkError(f"{bad.size:,} reach ids have no discharge: {format_ids(bad)}.", ids=bad.tolist(),
                               hint="Use ids of the routed network (or of the reaches kept with at=).")
        return order[pos]

    def series(self, reach_id: Any) -> np.ndarray:
        """Q [T] of one reach, m3/s; NetworkError naming the id if absent."""
        return self.values[self.index_of([reach_id])[0]]

    def at(self, time: Any) -> np.ndarray:
        """Q [N] at the end of the step ending nearest ``time``; InputError naming the covered range otherwise."""
        if self.n_steps == 0:
            raise InputError("the discharge holds no time step.", field="time")
        t = np.datetime64(time) if not isinstance(time, np.datetime64) else time
        t = t.astype(self.time.dtype)
        first, last = self.start_time[0], self.time[-1]
        if t < first or t > last:
            raise InputError(f"time {t} is outside the routed period {first} .. {last}.", field="time",
                             hint="Pick a time inside the routed period.")
        k = int(np.argmin(np.abs((self.time - t).astype(np.int64))))
        return self.values[:, k]

    def select(self, reach_ids: Any) -> Discharge:
        """The series of ``reach_ids`` only, in that order (a discharge file of some reaches: ``--discharge-at``);
        InputError naming ids given twice (a file's reach ids are unique)."""
        check_unique_ids(reach_ids)
        rows = self.index_of(reach_ids)
        return dataclasses.replace(self, values=self.values[rows], ids=self.ids[rows].copy())

    def to_xarray(self):
        """xarray Dataset with Q(reach, time), time = step ends, and the provenance in attributes."""
        import xarray as xr

        q = xr.DataArray(self.values, dims=("reach", "time"),
                         attrs={"units": "m3 s-1", "long_name": "discharge at the downstream end of each reach",
                                "cell_methods": "time: point"})
        return xr.Dataset({"Q": q}, coords={"reach": self.ids, "time": self.time},
                          attrs={**{k: v for k, v in self.attrs.items() if isinstance(v, (str, int, float))},
                                 "dt_seconds": self.dt, "thalweg_time_convention": "end"})

    @classmethod
    def from_routing(cls, q: Any, runoff, attrs: dict | None = None, *, ids: Any = None) -> Discharge:
        """Wrap routed Q ([N, T] or [1, N, T], numpy or torch) with the runoff's ids and time axis.

        Q[:, t] is stamped at the end of runoff step t: ``runoff.time[t] + runoff.dt``.
        ids : the reach ids of the rows when routing kept only some reaches (``route(..., at=ids)``);
            default ``runoff.ids``.
        """
        if hasattr(q, "detach"):
            q = q.detach().cpu().numpy()
        q = np.asarray(q)
        if q.ndim == 3 and q.shape[0] == 1:
            q = q[0]
        rows = runoff.ids if ids is None else np.atleast_1d(np.asarray(ids)).astype(np.int64)
        if q.ndim != 2 or q.shape != (rows.size, runoff.n_steps):
            raise AssertionError(f"routed discharge {q.shape} does not match {rows.size} reaches x "
                                 f"{runoff.n_steps} runoff steps (route one batch member at a time)")
        # any runoff-like object (Runoff, route's labels): step starts + dt, in the series' time unit
        end = np.asarray(runoff.time).astype(TIME_DTYPE) + step_delta(runoff.dt)
        meta = {"runoff": runoff.source} if runoff.source else {}
        meta.update(attrs or {})
        return cls(q.astype(np.float32, copy=False), rows.copy(), end, runoff.dt, meta)  # routed Q is not reused

    def __repr__(self) -> str:
        span = f"{self.time[0]} .. {self.time[-1]}" if self.n_steps else "empty"
        return f"<Discharge: {self.n_reaches:,} reaches x {self.n_steps:,} steps of {self.dt:g} s ending {span}>"
