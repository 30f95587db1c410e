"""Export of the routing parameters per reach in RAPID's and river-route's layouts (``thalweg export-params``).

So that a user can run RAPID or river-route on the same network with the same Muskingum parameters:

RAPID (all CSV without header, one row per reach, the same order in every file: upstream reaches first):
``rapid_connect.csv`` (reach id, downstream id or 0 at an outlet, number of upstream reaches, their ids padded
with 0 to the largest number), ``riv_bas_id.csv`` (reach ids), ``k.csv`` (Muskingum k, s) and ``x.csv``
(Muskingum x, -). RAPID reserves id 0 for "no reach", so reach ids must be positive.

river-route: ``params.parquet`` with river_id, downstream_river_id (-1 at an outlet), k (s) and x, one row per
reach in topological order (upstream first), as river-route's routing parameter file.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._files import OutputSet
from ..errors import InputError, NetworkError, format_ids, opt

__all__ = ["LAYOUTS", "export_params", "resolve_params", "RAPID_FILES", "RIVER_ROUTE_FILE"]

LAYOUTS = ("rapid", "river-route")
RAPID_FILES = ("rapid_connect.csv", "riv_bas_id.csv", "k.csv", "x.csv")
RIVER_ROUTE_FILE = "params.parquet"


def resolve_params(network, scheme: str, spec: Mapping[str, Any] | None):
    """Thalweg's per-reach parameters of ``scheme`` (the one rule the routing itself uses).

    The one place this module reaches the parameter rules (``thalweg.params.resolve_params``).
    """
    from ..params import resolve_params as resolve

    return resolve(network, scheme, spec)


def _topological(network) -> np.ndarray:
    """Reach positions with every reach after all the reaches upstream of it (level by level, then by id)."""
    return np.lexsort((network.ids, network.levels))


def export_params(out_dir: str | Path, network, scheme: str = "muskingum", spec: Mapping[str, Any] | None = None,
                  layouts: Sequence[str] = LAYOUTS) -> tuple[dict[str, Path], dict[str, str]]:
    """Write the Muskingum k and x of every reach in RAPID's and/or river-route's layout.

    Parameters
    ----------
    out_dir : folder for the files (created).
    network : the RiverNetwork.
    scheme : a Muskingum scheme of Thalweg (its parameters k, s, and x); the parameters are those a
        ``thalweg route`` with the same options would use.
    spec : parameter name -> constant (SI) or network field name, as ``route``'s params.
    layouts : 'rapid' and/or 'river-route'.

    Returns
    -------
    files : name -> path written; used : parameter -> where its values came from.
    """
    from ..irf import get_scheme

    unknown = [lay for lay in layouts if lay not in LAYOUTS]
    if unknown or not layouts:
        raise InputError(f"unknown parameter layout(s) {', '.join(unknown) or 'none'}.",
                         hint=f"Use {opt('export_params.layouts', 'rapid')} with: {', '.join(LAYOUTS)}.")
    sch = get_scheme(scheme)
    if not {"k", "x"} <= set(sch.parameter_names):
        raise InputError(f"RAPID and river-route route with Muskingum k and x; the '{sch.name}' scheme has "
                         f"{', '.join(sch.parameter_names)}.",
                         hint=f"Use {opt('export_params.scheme', 'muskingum')}.")
    params, used = resolve_params(network, sch.name, spec)
    k, x = np.asarray(params["k"], np.float64), np.asarray(params["x"], np.float64)
    bad = ~(np.isfinite(k) & (k > 0) & np.isfinite(x) & (x >= 0) & (x <= 0.5))
    if bad.any():
        raise NetworkError(f"{int(bad.sum()):,} reaches have k <= 0 or x outside 0..0.5, which RAPID and "
                           f"river-route refuse: {format_ids(network.ids[bad])}.", path=network.source.path,
                           ids=network.ids[bad].tolist(), hint="Give k (s) > 0 and 0 <= x <= 0.5 for every reach.")
    order = _topological(network)
    ids = network.ids[order]
    down = network.downstream[order]
    down_ids = np.where(down >= 0, network.ids[np.maximum(down, 0)], -1)
    folder = Path(out_dir)
    files: dict[str, Path] = {}
    members = [folder / name for name in (*RAPID_FILES, RIVER_ROUTE_FILE)]
    with OutputSet(folder, "params", members) as out:
        if "rapid" in layouts:
            if (network.ids <= 0).any():
                nonpos = network.ids[network.ids <= 0]
                raise NetworkError(f"{nonpos.size:,} reach ids are 0 or negative, which RAPID reads as 'no reach': "
                                   f"{format_ids(nonpos)}.", path=network.source.path, ids=nonpos.tolist(),
                                   hint=f"Renumber the reaches, or export only "
                                        f"{opt('export_params.layouts', 'river-route')}.")
            files.update(_write_rapid(out, folder, ids, down_ids, k[order], x[order]))
        if "river-route" in layouts:
            files[RIVER_ROUTE_FILE] = _write_river_route(out, folder / RIVER_ROUTE_FILE, ids, down_ids, k[order],
                                                         x[order])
    return files, used


def _write_rapid(out: OutputSet, folder: Path, ids: np.ndarray, down_ids: np.ndarray, k: np.ndarray,
                 x: np.ndarray) -> dict[str, Path]:
    n = ids.size
    pos = {int(r): i for i, r in enumerate(ids)}
    has_down = down_ids >= 0
    targets = np.array([pos[int(d)] for d in down_ids[has_down]], np.int64)
    counts = np.bincount(targets, minlength=n)
    width = int(counts.max(initial=0))
    upstream = np.zeros((n, width), np.int64)
    fill = np.zeros(n, np.int64)
    for src, dst in zip(np.flatnonzero(has_down), targets):  # in topological order: upstream ids come sorted
        upstream[dst, fill[dst]] = ids[src]
        fill[dst] += 1
    connect = np.column_stack([ids, np.where(has_down, down_ids, 0), counts, upstream]).astype(np.int64)
    written = {}
    for name, table, fmt in (("rapid_connect.csv", connect, "%d"), ("riv_bas_id.csv", ids[:, None], "%d"),
                             ("k.csv", k[:, None], "%.10g"), ("x.csv", x[:, None], "%.10g")):
        path = folder / name
        np.savetxt(out.path(path), table, fmt=fmt, delimiter=",")
        written[name] = path
    return written


def _write_river_route(out: OutputSet, path: Path, ids, down_ids, k, x) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"river_id": pa.array(ids, pa.int64()), "downstream_river_id": pa.array(down_ids, pa.int64()),
                      "k": pa.array(k, pa.float64()), "x": pa.array(x, pa.float64())})
    table = table.replace_schema_metadata({"k_units": "s", "x_units": "1", "source": "thalweg export-params",
                                           "order": "topological (upstream first)"})
    pq.write_table(table, out.path(path))
    return path
