"""Gauges: where observed discharge sits on the network, and the observations themselves."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, SchemaError, format_ids
from ..network import RiverNetwork

__all__ = ["Gauges", "read_gauges", "gauges_from_arrays", "REACH_ID_COLUMNS", "check_series", "gauge_roles"]

REACH_ID_COLUMNS = ("reach_id", "LINKNO", "COMID", "HYRIV_ID", "riverId", "rivid", "link", "segId", "id")
GAUGE_ID_COLUMNS = ("gauge_id", "code", "station", "site_no", "gauge")


@dataclasses.dataclass(frozen=True)
class Gauges:
    """Gauges snapped to reaches.

    Attributes
    ----------
    ids : gauge ids (str) [G].
    reach_ids : id of the reach each gauge sits on [G].
    positions : positions of those reaches in the network [G].
    names : display names [G] (the id when the table has none).
    observed : pandas DataFrame or None, index = time at the END of each step, one column per gauge id, m3/s,
        NaN where missing.
    """

    ids: np.ndarray
    reach_ids: np.ndarray
    positions: np.ndarray
    names: list[str]
    observed: Any = None

    def observed_on(self, time: np.ndarray) -> np.ndarray | None:
        """Observations [G, T] at the given step-end times (NaN where none), or None without observations."""
        if self.observed is None:
            return None
        frame = self.observed.reindex(columns=list(self.ids)).reindex(index=time.astype("datetime64[ns]"))
        return frame.to_numpy(dtype=np.float64).T

    def reach_of(self, gauge_id: str) -> int:
        where = np.flatnonzero(self.ids == str(gauge_id))
        if not where.size:
            raise InputError(f"unknown gauge '{gauge_id}'.", hint=f"Known gauges: {format_ids(self.ids, 10)}.")
        return int(self.reach_ids[where[0]])


def _pick(columns: list[str], candidates: tuple[str, ...]) -> str | None:
    lowered = {c.lower(): c for c in columns}
    for name in candidates:
        if name.lower() in lowered:
            return lowered[name.lower()]
    return None


def gauges_from_arrays(network: RiverNetwork, gauge_ids: Any, reach_ids: Any, *, observed: Any = None,
                       time_end: Any = None, names: Any = None) -> Gauges:
    """Gauges given as arrays (the service's inline gauges): ids [G], reach ids [G], and optionally observations
    [G, T] m3/s (NaN where missing) at the step ends ``time_end`` [T] (datetime64).

    Raises InputError naming the gauges on reaches the network lacks, or observations of the wrong shape.
    """
    import pandas as pd

    ids = np.asarray([str(g) for g in gauge_ids])
    positions = network.index_of(np.asarray(reach_ids, dtype=np.int64), what="gauge reach ids")
    frame = None
    if observed is not None:
        obs = np.asarray(observed, dtype=np.float64)
        times = np.asarray(time_end).astype("datetime64[ns]")
        if obs.shape != (ids.size, times.size):
            raise InputError(f"observed has shape {obs.shape}; expected [{ids.size} gauges, {times.size:,} steps] "
                             f"(one value per runoff step).", field="observed")
        frame = pd.DataFrame(obs.T, index=times, columns=list(ids))
    return Gauges(ids=ids, reach_ids=network.ids[positions], positions=positions,
                  names=[str(n) for n in (names if names is not None else ids)], observed=frame)


def read_gauges(path: str | Path, network: RiverNetwork, *, observed: str | Path | None = None) -> Gauges:
    """Read a gauge table (CSV: a gauge id column and the id of the reach each gauge sits on) and,
    optionally, observed discharge (CSV: a time column marking the END of each step, one column per gauge).
    """
    import pandas as pd

    path = Path(path)
    try:
        table = pd.read_csv(path, dtype={c: str for c in GAUGE_ID_COLUMNS})
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the gauge table: {exc}.", path=path) from None
    columns = list(table.columns)
    id_field = network.source.field("id")
    reach_col = _pick(columns, ((id_field,) if id_field else ()) + REACH_ID_COLUMNS)
    gauge_col = _pick(columns, GAUGE_ID_COLUMNS)
    if reach_col is None or gauge_col is None:
        raise SchemaError(f"the gauge table needs a gauge id column ({', '.join(GAUGE_ID_COLUMNS)}) and a reach id "
                          f"column ({', '.join(REACH_ID_COLUMNS)}); it has {', '.join(columns)}.", path=path,
                          hint="Rename the columns, e.g. gauge_id and reach_id.")
    reach_ids = table[reach_col].to_numpy()
    positions = network.index_of(reach_ids, what=f"reach ids in {path.name} column {reach_col}")
    ids = table[gauge_col].astype(str).to_numpy()
    names = list(ids)
    if "name" in table.columns:
        names = [str(n) if isinstance(n, str) and n.strip() else str(i) for n, i in zip(table["name"], ids)]
    obs = None
    if observed is not None:
        obs = _read_observed(Path(observed), ids)
    return Gauges(ids=ids, reach_ids=network.ids[positions], positions=positions, names=names, observed=obs)


def _read_observed(path: Path, gauge_ids: np.ndarray):
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read observed discharge: {exc}.", path=path) from None
    time_col = _pick(list(frame.columns), ("time", "date", "datetime")) or frame.columns[0]
    frame.index = pd.to_datetime(frame.pop(time_col), utc=True).dt.tz_localize(None).to_numpy()
    frame.columns = [str(c) for c in frame.columns]
    unknown = [g for g in gauge_ids if g not in frame.columns]
    if len(unknown) == len(gauge_ids):
        raise SchemaError(f"no column matches a gauge id ({format_ids(gauge_ids)}); columns are "
                          f"{format_ids(list(frame.columns), 6)}.", path=path,
                          hint="Name one column per gauge with its gauge_id.")
    frame = frame.apply(pd.to_numeric, errors="coerce")
    frame = frame.where(frame >= 0)  # negative values are missing-data codes in many archives
    matched = [g for g in gauge_ids if g in frame.columns]
    if not np.isfinite(frame[matched].to_numpy(dtype=np.float64)).any():
        raise InputError(f"the observations are all missing: every value of the {len(matched):,} gauge column(s) "
                         f"({format_ids(matched)}) over {len(frame):,} rows is empty, not a number, or negative (a "
                         f"missing-data code).", path=path,
                         hint="Give observed discharge in m3/s, one column per gauge_id, with a time column.")
    return frame


def gauge_roles(network: RiverNetwork, gauges: Any, validation_gauges: Any = (), gauge_names: Any = None, *,
                what: str, hint: str) -> tuple[np.ndarray, list[str], np.ndarray]:
    """The checks fitting and training share on their gauges: at least one, each a reach of the network, the
    held-out ones among them. Returns ``(gauge reach ids, labels, held-out mask)``.

    ``what`` names the caller in messages ('fitting', 'training'); ``hint`` is the way to give gauges in the
    caller's terms.
    """
    gauge_ids = np.asarray(list(gauges), dtype=np.int64).ravel()
    if gauge_ids.size == 0:
        raise InputError(f"{what} needs at least one gauge; none was given.", field="gauges", hint=hint)
    network.index_of(gauge_ids, what="gauge reach ids")
    labels = [str(g) for g in (gauge_names if gauge_names is not None else gauge_ids.tolist())]
    held_ids = np.asarray(list(validation_gauges), dtype=np.int64)
    unknown = np.setdiff1d(held_ids, gauge_ids)
    if unknown.size:
        raise InputError(f"validation gauges {format_ids(unknown)} are not among the gauges.",
                         field="validation_gauges", ids=unknown.tolist(),
                         hint="Held-out gauges must be gauges with observations too.")
    return gauge_ids, labels, np.isin(gauge_ids, held_ids)


def check_series(network: RiverNetwork, runoff: Any, observed: Any, n_gauges: int, warmup: Any, *, what: str,
                 warmup_hint: str | None = None) -> tuple[int, np.ndarray]:
    """The checks calibration and fitting share on their series: runoff [N, T], observed [G, T] and a warm-up
    inside the run. Returns ``(T, observed as float64)``; InputError naming the argument otherwise.

    ``what`` names the caller in messages ('calibration', 'fitting').
    """
    shape = tuple(runoff.shape) if hasattr(runoff, "shape") else np.shape(runoff)
    if len(shape) != 2 or shape[0] != network.n_reaches:
        raise InputError(f"runoff has shape {shape}; {what} needs [{network.n_reaches:,} reaches, time].",
                         field="runoff")
    n_steps = int(shape[1])
    obs = np.asarray(observed, dtype=np.float64)
    if obs.shape != (n_gauges, n_steps):
        raise InputError(f"observed has shape {obs.shape}; expected [{n_gauges} gauges, {n_steps:,} steps] "
                         f"(one row per gauge, aligned to the runoff's steps).", field="observed")
    if isinstance(warmup, bool) or int(warmup) != warmup or not 0 <= warmup < n_steps:
        raise InputError(f"warmup must be a whole number of steps in 0..{n_steps - 1} (got {warmup!r}).",
                         field="warmup", hint=warmup_hint)
    return n_steps, obs
