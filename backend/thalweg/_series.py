"""ReachSeries: the shape Runoff and Discharge share, per-reach series [N, T] on a regular time axis."""
from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["ReachSeries", "TIME_DTYPE", "TIME_UNIT", "step_delta"]

# milliseconds: any CF date fits (years -290 million .. 290 million; nanoseconds overflow after 2262), and so do
# sub-second steps; readers return this, and series store it
TIME_UNIT = "ms"
TIME_DTYPE = np.dtype(f"datetime64[{TIME_UNIT}]")


def step_delta(dt: float) -> np.timedelta64:
    """A step of ``dt`` seconds as a timedelta64 in TIME_UNIT (add it to series times without overflow)."""
    return np.timedelta64(int(round(float(dt) * 1000.0)), TIME_UNIT)


@dataclasses.dataclass(frozen=True, eq=False)
class ReachSeries:
    """Values [N, T] (float32) for reach ``ids`` [N] (int64) at ``time`` [T] (TIME_DTYPE, datetime64[ms]), step
    ``dt`` s.

    Subclasses say what ``time`` marks (step starts for runoff, step ends for discharge).
    """

    values: np.ndarray
    ids: np.ndarray
    time: np.ndarray
    dt: float
    attrs: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=np.float32)
        ids = np.asarray(self.ids, dtype=np.int64)
        time = np.asarray(self.time)
        time = time.astype(TIME_DTYPE) if time.dtype.kind == "M" else np.asarray(time, dtype=TIME_DTYPE)
        name = type(self).__name__
        if values.ndim != 2 or values.shape != (ids.size, time.size):
            raise AssertionError(f"{name} values {values.shape} do not match ids ({ids.size}) x time ({time.size})")
        if not float(self.dt) > 0:
            raise AssertionError(f"{name} dt must be positive, got {self.dt}")
        for field, value in (("values", values), ("ids", ids), ("time", time), ("dt", float(self.dt)),
                             ("attrs", dict(self.attrs))):
            object.__setattr__(self, field, value)

    @property
    def n_reaches(self) -> int:
        return int(self.ids.size)

    @property
    def n_steps(self) -> int:
        return int(self.time.size)

    @property
    def step(self) -> np.timedelta64:
        """The step as a timedelta64 in TIME_UNIT."""
        return step_delta(self.dt)
