"""Calibration and validation splits: periods of time steps and held-out gauges.

A period is a half-open range of step indices ``[start, end)`` of the routed series (Q[t] is the discharge at the
end of runoff step t). Dates given as days (``2014-11-14``) include the whole day.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InputError, opt

__all__ = ["Period", "period_of", "leave_one_out", "period_mask"]


@dataclasses.dataclass(frozen=True)
class Period:
    """Steps ``start`` .. ``end - 1`` of a series (indices into the time axis), with a label for reports."""

    start: int
    end: int
    label: str = ""

    def __post_init__(self) -> None:
        if not (isinstance(self.start, (int, np.integer)) and isinstance(self.end, (int, np.integer))):
            raise InputError(f"a period needs whole step indices (got {self.start!r}, {self.end!r}).", field="period")
        if not 0 <= self.start < self.end:
            name = f"the {self.label} period" if self.label else "the period"
            raise InputError(f"{name} [{self.start}, {self.end}) is empty or negative.", field=self.label or "period",
                             hint=f"Give a start before the end, e.g. {opt('fit.calibration', '(0, 1000)')}.")

    @property
    def steps(self) -> int:
        return int(self.end - self.start)

    def to_dict(self) -> dict[str, Any]:
        return {"start": int(self.start), "end": int(self.end), "label": self.label}


def _instant(text: Any, end: bool) -> np.datetime64:
    value = np.datetime64(str(text).replace("Z", ""), "ns")
    # a bare day means the whole day: its end is the next midnight
    if end and len(str(text).strip()) == 10:
        value = value + np.timedelta64(1, "D")
    return value


def period_of(time_end: np.ndarray, start: Any, end: Any, *, label: str = "", what: str = "period") -> Period:
    """The steps whose end time lies in [start, end] (dates: whole days; ``end`` inclusive).

    Parameters
    ----------
    time_end : datetime64 [T], the end of each step (the routed discharge's time stamps).
    start, end : ISO dates or times (``2014-09-15`` or ``2014-09-15T06:00``), UTC.
    label, what : the period's label in reports, and its name in messages (e.g. ``--calibration``).
    """
    times = np.asarray(time_end).astype("datetime64[ns]")
    try:
        t0, t1 = _instant(start, end=False), _instant(end, end=True)
    except ValueError:
        raise InputError(f"{what} '{start}/{end}' is not a pair of ISO dates.", field=label or what,
                         hint="Write it as START/END, e.g. "
                              f"{opt('fit.' + (label or 'calibration'), '2014-09-15/2014-11-14')}.") from None
    # a step ending exactly at midnight of a first day covers the day before it
    after = times > t0 if len(str(start).strip()) == 10 else times >= t0
    inside = after & (times <= t1)
    steps = np.flatnonzero(inside)
    if steps.size == 0:
        raise InputError(f"{what} {start} .. {end} holds no step of the series ({times[0]} .. {times[-1]}, end of "
                         f"each step).", field=label or what, hint="Choose dates inside the runoff period.")
    return Period(int(steps[0]), int(steps[-1]) + 1, label)


def period_mask(observed: np.ndarray, period: Period | None, warmup: int = 0) -> np.ndarray:
    """Observations [G, T] with NaN outside ``period`` and in the first ``warmup`` steps."""
    obs = np.array(observed, dtype=np.float64)
    keep = np.zeros(obs.shape[-1], dtype=bool)
    if period is not None:
        keep[period.start:min(period.end, obs.shape[-1])] = True
    keep[:warmup] = False
    obs[..., ~keep] = np.nan
    return obs


def leave_one_out(gauges: Sequence[Any]) -> list[tuple[list[Any], Any]]:
    """[(the other gauges, the held-out gauge)] for each gauge, in order."""
    gauges = list(gauges)
    if len(gauges) < 2:
        raise InputError(f"leave-one-gauge-out needs at least 2 gauges (got {len(gauges)}).", field="gauges",
                         hint="Give more gauges, or validate on a period instead.")
    return [([g for g in gauges if g != held], held) for held in gauges]
