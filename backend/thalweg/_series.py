"""ReachSeries: the shape Runoff and Discharge share, per-reach series [N, T] on a regular time axis."""
from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["ReachSeries"]


@dataclasses.dataclass(frozen=True, eq=False)
class ReachSeries:
    """Values [N, T] (float32) for reach ``ids`` [N] (int64) at ``time`` [T] (datetime64[ns]), step ``dt`` s.

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
        time = self._coerce_time(self.time)
        name = type(self).__name__
        if values.ndim != 2 or values.shape != (ids.size, time.size):
            raise AssertionError(f"{name} values {values.shape} do not match ids ({ids.size}) x time ({time.size})")
        if not float(self.dt) > 0:
            raise AssertionError(f"{name} dt must be positive, got {self.dt}")
        for field, value in (("values", values), ("ids", ids), ("time", time), ("dt", float(self.dt)),
                             ("attrs", dict(self.attrs))):
            object.__setattr__(self, field, value)

    @staticmethod
    def _coerce_time(time) -> np.ndarray:
        """The time axis as stored (datetime64[ns] here; Discharge keeps dates beyond its range)."""
        return np.asarray(time, dtype="datetime64[ns]")

    @property
    def n_reaches(self) -> int:
        return int(self.ids.size)

    @property
    def n_steps(self) -> int:
        return int(self.time.size)

    @property
    def step(self) -> np.timedelta64:
        return np.timedelta64(int(round(self.dt * 1e9)), "ns")
