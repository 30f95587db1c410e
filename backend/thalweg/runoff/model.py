"""Runoff: lateral inflow per reach and step, in the network's reach order (m3/s, step means)."""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .._series import ReachSeries

__all__ = ["Runoff"]


@dataclasses.dataclass(frozen=True, eq=False)
class Runoff(ReachSeries):
    """Lateral runoff of every reach, ready to route (ROUTING.md section 1).

    Parameters
    ----------
    values : float32 [N, T], m3/s, the mean rate over each step, rows in the network's reach order.
    ids : int64 [N], reach ids, equal to ``network.ids``.
    time : datetime64[ms] [T], the START of each step; step t covers (time[t], time[t] + dt].
    dt : step length, s.
    source : the path read, if any.
    attrs : what was read and done: variable, units, conversion, time convention, nan and missing policies.
    """

    source: str | None = None

    @property
    def end_time(self) -> np.ndarray:
        """datetime64[ms] [T], the end of each step (where routed discharge is stamped)."""
        return self.time + self.step

    def volume(self) -> float:
        """Total lateral volume, m^3."""
        return float(self.values.astype(np.float64).sum() * self.dt)

    def __repr__(self) -> str:
        span = f"{self.time[0]} .. {self.end_time[-1]}" if self.n_steps else "empty"
        name = f" from {self.source}" if self.source else ""
        return f"<Runoff{name}: {self.n_reaches:,} reaches x {self.n_steps:,} steps of {self.dt:g} s, {span}>"

    def to_dict(self) -> dict[str, Any]:
        """A short description for logs and the server."""
        return {"n_reaches": self.n_reaches, "n_steps": self.n_steps, "dt": self.dt, "source": self.source,
                "start": str(self.time[0]) if self.n_steps else None, "attrs": self.attrs}
