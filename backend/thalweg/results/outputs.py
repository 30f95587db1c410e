"""The outputs of a routing run, as one set: which files, in which format, written together.

The format of the main discharge file follows its name unless given: a ``.zarr`` name gets a river-route 3
zarr store, a name holding ``Qout`` a RAPID ``Qout`` NetCDF, any other ``.nc`` name a river-route ``Q``
NetCDF (a RAPID file when only step means are asked for, as those are RAPID's). With the 'both' convention
the other convention goes beside it (``NAME_Qout.nc``, or ``NAME_Q.nc`` beside a RAPID main file).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._files import OutputSet
from ..errors import InputError, opt
from .discharge import Discharge

__all__ = ["FORMATS", "output_format", "output_paths", "write_route_outputs"]

FORMATS = ("auto", "river-route", "rapid", "zarr")
_SUFFIX = {"river-route": ".nc", "rapid": ".nc", "zarr": ".zarr"}
_DEFAULT_ID = {"river-route": "riverId", "rapid": "rivid", "zarr": "river_id"}


def output_format(path: str | Path, fmt: str = "auto", convention: str = "end") -> str:
    """The format of a main discharge file: 'river-route', 'rapid' or 'zarr' (``fmt`` when given, else by name).

    InputError when an explicit format contradicts the file's suffix or cannot hold the convention.
    """
    if fmt not in FORMATS:
        raise InputError(f"the output format '{fmt}' is unknown.",
                         hint=f"Use {opt('route.format', 'rapid')} with one of: {', '.join(FORMATS)}.")
    p = Path(path)
    suffix = p.suffix.lower()
    if fmt == "auto":
        if suffix == ".zarr":
            fmt = "zarr"
        elif "qout" in p.stem.lower() or convention == "mean":
            fmt = "rapid"
        else:
            fmt = "river-route"
    if suffix and suffix not in (".nc", ".nc4", ".zarr"):
        raise InputError("the output must be a NetCDF file (.nc) or a zarr store (.zarr).", path=p,
                         hint=f"Name it OUT.nc or OUT.zarr, or pick the format with {opt('route.format', 'zarr')}.")
    if suffix and (suffix == ".zarr") != (fmt == "zarr"):
        raise InputError(f"the output '{p.name}' does not match the format '{fmt}' "
                         f"({'a zarr store ends in .zarr' if fmt == 'zarr' else 'NetCDF files end in .nc'}).",
                         path=p, hint=f"Rename the output to {p.stem}{_SUFFIX[fmt]}, or drop "
                                      f"{opt('route.format', fmt)}.")
    if fmt != "rapid" and convention == "mean":
        raise InputError(f"a {fmt} discharge file holds end-of-step discharge, not step means.", path=p,
                         hint=f"Use {opt('route.convention', 'end')} (or both), or {opt('route.format', 'rapid')} "
                              f"for RAPID step means.")
    return fmt


def output_paths(out_dir: str | Path, name: str, fmt: str, convention: str) -> dict[str, tuple[Path, str, str]]:
    """kind -> (path, format, convention) of the discharge files of a run ('q': river-route, 'qout': RAPID)."""
    folder = Path(out_dir)
    main = folder / f"{name}{_SUFFIX[fmt]}"
    kind = "qout" if fmt == "rapid" else "q"
    if convention != "both":
        return {kind: (main, fmt, convention)}
    if fmt == "rapid":
        return {"qout": (main, "rapid", "mean"), "q": (folder / f"{name}_Q.nc", "river-route", "end")}
    return {"q": (main, fmt, "end"), "qout": (folder / f"{name}_Qout.nc", "rapid", "mean")}


def _possible_members(folder: Path, name: str) -> list[Path]:
    """Every file a run named ``name`` may write (their stale parts are swept before writing)."""
    return [folder / f"{name}{s}" for s in (".nc", ".zarr", ".gpkg", ".settings.json")] + \
        [folder / f"{name}{s}" for s in ("_Q.nc", "_Qout.nc", "_hydrographs.csv", "_hydrographs_long.csv")]


def hydrograph_reaches(gauges: Any, reaches: Sequence[int] = ()) -> list[int]:
    """The reach ids whose hydrographs a run writes: the gauges' (a ``thalweg.learning.Gauges`` or None), then
    ``reaches`` (``--hydrograph``), each once, in that order."""
    return list(dict.fromkeys([*(gauges.reach_ids.tolist() if gauges is not None else []),
                               *[int(r) for r in reaches]]))


def check_discharge_at(which: str, has_hydrographs: bool) -> None:
    """InputError unless ``--discharge-at`` ``which`` can be written: one of ``config.DISCHARGE_AT``, and 'gauges'
    only with gauges or hydrograph reaches (checked from the settings, before any input is read)."""
    from ..config import DISCHARGE_AT

    if which not in DISCHARGE_AT:
        raise InputError(f"discharge_at must be one of {', '.join(DISCHARGE_AT)}, not {which!r}.",
                         hint=f"Give {opt('route.discharge_at', 'outlets')}.")
    if which == "gauges" and not has_hydrographs:
        raise InputError(f"{opt('route.discharge_at', 'gauges')} writes the gauges' and hydrograph reaches' "
                         f"discharge, and this run has none.",
                         hint=f"Give {opt('route.gauges')} or {opt('route.hydrograph_reaches')}, or "
                              f"{opt('route.discharge_at', 'outlets')}.")


def discharge_reaches(network: Any, which: str, hydrographs: Sequence[int] = ()) -> np.ndarray | None:
    """The reach ids, in network order, that a run's discharge file holds for ``--discharge-at`` ``which``
    (``RouteSettings.discharge_at``): None for all; 'outlets': each basin's last reach and the ``hydrographs``
    reaches (gauges and ``--hydrograph``: their CSVs are read from the file); 'gauges': those reaches only."""
    check_discharge_at(which, len(hydrographs) > 0)
    if which == "all":
        return None
    rows = network.index_of(list(hydrographs), what="hydrograph reach ids") if len(hydrographs) else \
        np.zeros(0, dtype=np.int64)
    if which == "outlets":
        rows = np.concatenate([np.asarray(network.outlets, dtype=np.int64), rows])
    return np.asarray(network.ids)[np.unique(rows)]


def write_route_outputs(out_dir: str | Path, name: str, discharge: Discharge, network: Any = None, *,
                        convention: str = "end", fmt: str = "auto", id_name: str | None = None,
                        gpkg: bool = True, gauges: Any = None, reaches: Sequence[int] = (),
                        texts: dict[str, tuple[str, str]] | None = None,
                        progress: Callable[[float, str], None] | None = None,
                        compression: int = 1, discharge_at: Any = None) -> dict[str, Path]:
    """Write every output of a routing run as one set (all published together, or none).

    Parameters
    ----------
    out_dir, name : the folder and the outputs' stem (``NAME.nc``, ``NAME.gpkg``, ``NAME_hydrographs.csv``).
    discharge : the routed discharge; network : the routed RiverNetwork (geometry gives lat/lon and the map).
    convention : 'end', 'mean' or 'both' (see the module docstring); fmt : one of ``FORMATS``.
    id_name : the reach-id dimension of the discharge files ('rivid', 'riverId', 'river_id'); default per
        format (RAPID: rivid, river-route NetCDF: riverId, zarr: river_id).
    gpkg : write ``NAME.gpkg`` (reaches, and gauges with ``gauges``) when the network has geometry.
    gauges : thalweg.learning.Gauges or None: their hydrographs go to the CSVs (headed by gauge id, with the
        observed series when they carry observations), their points to the map (with NSE, KGE, PBIAS then).
    reaches : more reach ids whose hydrographs go to the CSVs.
    texts : kind -> (file name, text) of more files of the set (the settings record).
    progress : ``progress(fraction, message)`` as each file is written.
    compression : zlib level of the NetCDF discharge (0: none; see ``write_qout``).
    discharge_at : reach ids the discharge files hold (:func:`discharge_reaches`); None: every reach. The map and
        the hydrographs use every routed reach either way.

    Returns kind -> final path: 'q', 'qout', 'gpkg', 'hydrographs', 'hydrographs_long' and the ``texts`` kinds.
    """
    from .._files import atomic_write_text
    from .summary import summarize
    from .writers import (reach_lonlat, write_hydrographs_csv, write_hydrographs_long_csv, write_q, write_qout,
                          write_summary_gpkg, write_zarr)

    folder = Path(out_dir)
    report = progress or (lambda fraction, message: None)
    fmt = output_format(folder / f"{name}{'.zarr' if fmt == 'zarr' else '.nc'}", fmt, convention)
    files = output_paths(folder, name, fmt, convention)
    # every check before anything is written: reach ids of the hydrographs
    hydro = hydrograph_reaches(gauges, reaches)
    if hydro:
        discharge.index_of(hydro)
    filed = discharge if discharge_at is None else discharge.select(discharge_at)
    where = reach_lonlat(network, filed.ids) if network is not None else None
    lat, lon = where if where is not None else (None, None)
    steps = len(files) + 2 + (1 if hydro else 0)
    done = 0
    outputs: dict[str, Path] = {}
    with OutputSet(folder, name, _possible_members(folder, name)) as out:
        for kind, (path, f, conv) in files.items():
            report(done / steps, f"writing {path.name}")
            rid = id_name or _DEFAULT_ID[f]
            tmp = out.path(path)
            if f == "rapid":
                write_qout(tmp, filed, conv, lat=lat, lon=lon, id_name=rid, compression=compression)
            elif f == "zarr":
                write_zarr(tmp, filed, id_name=rid, lat=lat, lon=lon)
            else:
                write_q(tmp, filed, id_name=rid, lat=lat, lon=lon, compression=compression)
            outputs[kind] = path
            done += 1
        if gpkg and network is not None and network.geometry is not None:
            report(done / steps, "summary statistics")
            stats = summarize(discharge)
            done += 1
            path = folder / f"{name}.gpkg"
            report(done / steps, f"writing {path.name}")
            write_summary_gpkg(out.path(path), network, discharge, gauges=gauges, stats=stats)
            outputs["gpkg"] = path
            done += 1
        if hydro:
            report(done / steps, "writing hydrographs")
            path = folder / f"{name}_hydrographs.csv"
            write_hydrographs_csv(out.path(path), discharge, hydro, gauges=gauges)
            outputs["hydrographs"] = path
            path = folder / f"{name}_hydrographs_long.csv"
            write_hydrographs_long_csv(out.path(path), discharge, [int(r) for r in reaches], gauges=gauges)
            outputs["hydrographs_long"] = path
        for kind, (file_name, text) in (texts or {}).items():
            atomic_write_text(out.path(folder / file_name), text)
            outputs[kind] = folder / file_name
    report(1.0, "outputs written")
    return outputs
