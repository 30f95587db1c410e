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

__all__ = ["Period", "period_of", "leave_one_out", "period_mask", "check_held_out"]


@dataclasses.dataclass(frozen=True)
class Period:
    """Steps ``start`` .. ``end - 1`` of a series (indices into the time axis), with a label for reports."""

    start: int
    end: int
    label: str = ""
    # the step-end times it spans, when made from dates (period_of): messages show them rather than indices
    first_time: str | None = dataclasses.field(default=None, compare=False)
    last_time: str | None = dataclasses.field(default=None, compare=False)

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

    def describe(self) -> str:
        """``2014-09-15T01:00 .. 2014-11-15T00:00 (step ends)`` when made from dates, else ``steps [0, 1,000)``."""
        if self.first_time is not None and self.last_time is not None:
            return f"{self.first_time} .. {self.last_time} (step ends)"
        return f"steps [{self.start:,}, {self.end:,})"

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
    if t0 > _instant(end, end=False):
        raise InputError(f"{what} {start}/{end} starts after it ends ({start} is later than {end}).",
                         field=label or what, hint="Give START before END, e.g. "
                                                   f"{opt('fit.' + (label or 'calibration'), f'{end}/{start}')}.")
    # a step ending exactly at midnight of a first day covers the day before it
    after = times > t0 if len(str(start).strip()) == 10 else times >= t0
    inside = after & (times <= t1)
    steps = np.flatnonzero(inside)
    if steps.size == 0:
        raise InputError(f"{what} {start} .. {end} holds no step of the series ({times[0]} .. {times[-1]}, end of "
                         f"each step).", field=label or what, hint="Choose dates inside the runoff period.")
    return Period(int(steps[0]), int(steps[-1]) + 1, label, first_time=_stamp(times[steps[0]]),
                  last_time=_stamp(times[steps[-1]]))


def _stamp(value: np.datetime64) -> str:
    """``2014-09-15T01:00`` (minutes; seconds where they are not zero)."""
    text = str(np.datetime64(value, "s"))
    return text[:-3] if text.endswith(":00") else text


def period_mask(observed: np.ndarray, period: Period | None, warmup: int = 0) -> np.ndarray:
    """Observations [G, T] with NaN outside ``period`` and in the first ``warmup`` steps."""
    obs = np.array(observed, dtype=np.float64)
    keep = np.zeros(obs.shape[-1], dtype=bool)
    if period is not None:
        keep[period.start:min(period.end, obs.shape[-1])] = True
    keep[:warmup] = False
    obs[..., ~keep] = np.nan
    return obs


def check_held_out(n_gauges: int, n_held: int, *, leave_one_out: bool = True) -> None:
    """InputError when held-out gauges leave no gauge to train on (calibrate, train and the service alike);
    ``leave_one_out``: the surface can score each gauge held out in turn (calibrate's, not train's)."""
    if n_gauges and n_held >= n_gauges:
        turn = f", or score every gauge held out in turn with {opt('run_fit.leave_one_out')}" if leave_one_out else ""
        raise InputError(f"every gauge ({n_gauges}) is held out, so nothing is left to train on.",
                         field="validation_gauges",
                         hint=f"Hold out fewer gauges ({opt('fit.validation_gauges')}){turn}.")


def leave_one_out(gauges: Sequence[Any]) -> list[tuple[list[Any], Any]]:
    """[(the other gauges, the held-out gauge)] for each gauge, in order."""
    gauges = list(gauges)
    if len(gauges) < 2:
        raise InputError(f"leave-one-gauge-out needs at least 2 gauges (got {len(gauges)}).", field="gauges",
                         hint="Give more gauges, or validate on a period instead.")
    return [([g for g in gauges if g != held], held) for held in gauges]
