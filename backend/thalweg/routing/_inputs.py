"""What ``route`` accepts as runoff, turned into one shape: values in the network's reach order, the step dt,
and (for labelled inputs) the reach ids and step times that make the result a :class:`Discharge`.

Accepted: numpy arrays, torch tensors, dask arrays, xarray DataArray / Dataset (numpy- or dask-backed) and
Thalweg's :class:`~thalweg.runoff.Runoff`. Dask-backed inputs are read one time chunk at a time.
"""
from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import InputError, RunoffError, RunoffMismatchError, ThalwegWarning, format_ids, opt
from ..network import RiverNetwork

__all__ = ["Labels", "RunoffInput", "as_runoff_input"]

# names of the reach dimension of a labelled runoff array (RAPID, river-route, GEOGloWS, Thalweg)
REACH_DIMS = ("reach", "rivid", "river_id", "riverId", "COMID", "LINKNO", "feature_id", "reach_id", "id")


@dataclasses.dataclass(frozen=True)
class Labels:
    """Reach ids [N] (network order), step START times [T] (datetime64[ns]), dt (s) and the source: what
    ``Discharge.from_routing`` reads of a runoff (it stamps Q at the end of each step)."""

    ids: np.ndarray
    time: np.ndarray
    dt: float
    source: str | None = None

    @property
    def n_steps(self) -> int:
        return int(self.time.size)


@dataclasses.dataclass
class RunoffInput:
    """Runoff ready to route: ``values`` (array or tensor [B, N, T] or [N, T]) or, for dask-backed input,
    ``chunks()`` yielding numpy blocks [..., N, t] along time; ``labels`` when the result is a Discharge."""

    dt: float | None
    values: Any = None
    blocks: Any = None  # callable -> iterator of numpy blocks, time last
    labels: Labels | None = None
    shape: tuple[int, ...] = ()
    n_blocks: int = 1

    def chunks(self) -> Iterator[np.ndarray]:
        return self.blocks()


def _check_dt(given: float | None, carried: float, what: str) -> float:
    if given is not None and not np.isclose(float(given), carried, rtol=1e-9, atol=0.0):
        raise InputError(f"dt is {float(given):g} s, but the runoff's {what} says {carried:g} s.",
                         field="dt", hint=f"Leave out {opt('route.dt')} (it is taken from the runoff), or resample "
                                          f"the runoff.")
    return float(carried)


def _dask_blocks(array: Any, time_axis: int) -> Any:
    bounds = np.cumsum((0,) + tuple(array.chunks[time_axis]))

    def blocks() -> Iterator[np.ndarray]:
        for a, b in zip(bounds[:-1], bounds[1:]):
            index = [slice(None)] * array.ndim
            index[time_axis] = slice(int(a), int(b))
            yield np.asarray(array[tuple(index)].compute())
    return blocks


def _is_dask(value: Any) -> bool:
    return type(value).__module__.split(".")[0] == "dask" and hasattr(value, "chunks")


def _from_runoff(network: RiverNetwork, runoff: Any, dt: float | None) -> RunoffInput:
    values, ids = runoff.values, np.asarray(runoff.ids)
    if not np.array_equal(ids, network.ids):
        order = _positions(network, ids, "the Runoff's reach ids")
        values = values[order]
    labels = Labels(network.ids, np.asarray(runoff.time, dtype="datetime64[ns]"), float(runoff.dt),
                    getattr(runoff, "source", None))
    return RunoffInput(dt=_check_dt(dt, float(runoff.dt), "time step (Runoff.dt)"), values=values, labels=labels,
                       shape=tuple(values.shape))


def _positions(network: RiverNetwork, ids: np.ndarray, what: str) -> np.ndarray:
    """Rows of ``ids`` holding each network reach, in network order; errors name the reaches without runoff."""
    ids = np.asarray(ids)
    if ids.dtype.kind not in "iu":
        raise RunoffMismatchError(f"{what} are not integer reach ids (dtype {ids.dtype}).",
                                  hint="Label the reach dimension with the network's reach ids.")
    order = np.argsort(ids, kind="stable")
    where = np.clip(np.searchsorted(ids[order], network.ids), 0, max(ids.size - 1, 0))
    found = ids[order][where] == network.ids if ids.size else np.zeros(network.n_reaches, bool)
    if not found.all():
        missing = network.ids[~found]
        raise RunoffMismatchError(f"{missing.size:,} reaches of the network have no runoff in {what}: "
                                  f"{format_ids(missing)}.", ids=missing.tolist(),
                                  hint="Give runoff for every reach (read it with thalweg.read_runoff, which can "
                                       f"fill absent reaches with {opt('read_runoff.missing', 'zero')}).")
    extra = ids.size - network.n_reaches
    if extra > 0:
        warnings.warn(f"{what}: {extra:,} runoff reaches are not in the network and are left out.", ThalwegWarning,
                      stacklevel=5)
    return order[where]


def _time_dim(da: Any) -> str | None:
    for dim in da.dims:
        if dim in da.coords and np.issubdtype(da[dim].dtype, np.datetime64):
            return dim
    return "time" if "time" in da.dims else None


def _from_xarray(network: RiverNetwork, da: Any, dt: float | None) -> RunoffInput:
    import xarray as xr

    if isinstance(da, xr.Dataset):
        names = [name for name, var in da.data_vars.items() if var.ndim == 2]
        if len(names) != 1:
            raise RunoffError(f"the Dataset holds {len(names)} variables of two dimensions "
                              f"({', '.join(map(str, names)) or 'none'}); route takes one.",
                              hint="Pass one variable, e.g. route(network, ds['runoff'], ...).")
        da = da[names[0]]
    time_dim = _time_dim(da)
    if da.ndim != 2 or time_dim is None:
        raise RunoffError(f"the runoff DataArray has dimensions {da.dims}; route takes (reach, time), with time "
                          f"a datetime coordinate.", hint="Select one member (da.isel(member=0)) or rename the "
                                                          "time dimension to 'time'.")
    (reach_dim,) = [d for d in da.dims if d != time_dim]
    da = da.transpose(reach_dim, time_dim)
    if reach_dim in da.coords:
        rows = _positions(network, np.asarray(da[reach_dim].values), f"dimension '{reach_dim}'")
        if not np.array_equal(rows, np.arange(da.sizes[reach_dim])):
            da = da.isel({reach_dim: rows})
    elif da.sizes[reach_dim] != network.n_reaches:
        raise RunoffMismatchError(f"the runoff has {da.sizes[reach_dim]:,} rows along '{reach_dim}' without reach "
                                  f"ids; the network has {network.n_reaches:,} reaches.",
                                  hint=f"Label '{reach_dim}' with reach ids (one of: {', '.join(REACH_DIMS)}).")
    labels = None
    carried = None
    if time_dim in da.coords and np.issubdtype(da[time_dim].dtype, np.datetime64):
        times = np.asarray(da[time_dim].values, dtype="datetime64[ns]")
        if times.size >= 2:
            steps = np.unique(np.diff(times).astype(np.int64))
            if steps.size != 1 or steps[0] <= 0:
                raise RunoffError(f"the runoff's times along '{time_dim}' are not evenly spaced (steps of "
                                  f"{format_ids(steps / 1e9)} s).", field=time_dim,
                                  hint="Resample the runoff to a regular step.")
            carried = float(steps[0]) / 1e9
        elif dt is None:
            raise RunoffError("the runoff has one time step, so its step length is unknown.",
                              hint=f"Give it with {opt('route.dt', 3600)} (seconds).")
        step = _check_dt(dt, carried, f"time coordinate '{time_dim}'") if carried is not None else float(dt)
        labels = Labels(network.ids, times, step, da.encoding.get("source"))
    else:
        step = dt
    if da.chunks is not None:
        data = da.data
        return RunoffInput(dt=step, blocks=_dask_blocks(data, 1), labels=labels, shape=tuple(data.shape),
                           n_blocks=len(data.chunks[1]))
    return RunoffInput(dt=step, values=np.asarray(da.values), labels=labels, shape=tuple(da.shape))


def as_runoff_input(network: RiverNetwork, runoff: Any, dt: float | None) -> RunoffInput:
    """Recognise the runoff's type (see the module docstring); errors name what was given and what fits."""
    from ..runoff.model import Runoff

    if isinstance(runoff, Runoff):
        return _from_runoff(network, runoff, dt)
    module = type(runoff).__module__.split(".")[0]
    if module == "xarray":
        return _from_xarray(network, runoff, dt)
    if _is_dask(runoff):
        return RunoffInput(dt=dt, blocks=_dask_blocks(runoff, runoff.ndim - 1), shape=tuple(runoff.shape),
                           n_blocks=len(runoff.chunks[-1]))
    if module == "pandas":
        raise RunoffError("route does not take a pandas table.",
                          hint="Read it with thalweg.read_runoff(table, network), or pass table.to_numpy() "
                               "[reaches, time] in the network's reach order.")
    if module != "torch" and not isinstance(runoff, np.ndarray):
        try:
            runoff = np.asarray(runoff, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise RunoffError(f"runoff of type {type(runoff).__name__} cannot be routed ({exc}).",
                              hint="Pass a numpy array, a torch tensor, an xarray DataArray or a thalweg Runoff."
                              ) from None
    return RunoffInput(dt=dt, values=runoff, shape=tuple(runoff.shape))
