"""``write_layer``: a small hydrography file in any schema of DATA.md section 1, for tests of every module.

The format follows the path's suffix (.gpkg, .shp, .parquet, .geojson, .fgb, .csv, .nc; RAPID writes
``rapid_connect.csv`` and its side files). Values are given in SI units and written in the schema's
units (km, km^2, ...), so a test can assert that ``read_network`` gives them back.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._files import atomic_path

__all__ = ["write_layer", "catchment_from_upstream"]

# role -> (field name, unit) written for each schema (the first candidate of the schema's fields)
_NHD_LOWER = {"COMID": "comid", "TOCOMID": "tocomid", "LENGTHKM": "lengthkm", "TotDASqKM": "totdasqkm",
              "AreaSqKM": "areasqkm", "SLOPE": "slope", "StreamOrde": "streamorde", "Divergence": "divergence",
              "Hydroseq": "hydroseq", "DnHydroseq": "dnhydroseq"}


def catchment_from_upstream(ids: np.ndarray, downstream: np.ndarray, area: np.ndarray) -> np.ndarray:
    """Each reach's own catchment area: its upstream area minus that of the reaches draining into it."""
    ids, downstream, area = np.asarray(ids), np.asarray(downstream), np.asarray(area, dtype=float)
    sorter = np.argsort(ids, kind="stable")
    where = np.clip(np.searchsorted(ids, downstream, sorter=sorter), 0, ids.size - 1)
    found = ids[sorter[where]] == downstream
    inflow = np.bincount(sorter[where[found]], weights=area[found], minlength=ids.size)
    return area - inflow


def _schema(name: str):
    from ..hydrography import SCHEMAS

    if name not in SCHEMAS:
        raise ValueError(f"unknown schema {name!r}; known: {', '.join(sorted(SCHEMAS))}")
    return SCHEMAS[name]


def _field(schema, role: str) -> str:
    names = schema.fields.get(role) or ()
    if not names:
        raise ValueError(f"schema {schema.name!r} has no field for {role}")
    return names[0]


def _in_unit(schema, field: str, values, kind: str) -> np.ndarray:
    from ..units import from_si

    unit = schema.unit(field) or ("m" if kind == "length" else "m2" if kind == "area" else "s")
    return from_si(values, unit, kind)


def _columns(schema, ids, downstream, *, lengths, areas, catchment, quantities: Mapping[str, Any]) -> dict:
    ids = np.asarray(ids, dtype=np.int64)
    ds = np.asarray(downstream, dtype=np.int64)
    code = schema.outlet_codes[0]
    cols: dict[str, Any] = {_field(schema, "id"): ids}
    if schema.fields.get("downstream"):
        cols[_field(schema, "downstream")] = np.where(ds <= 0, code, ds)
    if lengths is not None:
        f = _field(schema, "length")
        cols[f] = _in_unit(schema, f, lengths, "length")
    if areas is not None and schema.fields.get("area"):
        f = _field(schema, "area")
        cols[f] = _in_unit(schema, f, areas, "area")
    elif areas is not None and not schema.fields.get("catchment_area"):
        raise ValueError(f"schema {schema.name!r} stores no drainage area")
    if catchment is not None and schema.fields.get("catchment_area"):
        f = _field(schema, "catchment_area")
        cols[f] = _in_unit(schema, f, catchment, "area")
    for role, values in quantities.items():
        if values is None:
            continue
        f = _field(schema, role)
        cols[f] = _in_unit(schema, f, values, "time") if role == "muskingum_k" else np.asarray(values)
    return cols


def _write_table(path: Path, columns: Mapping[str, Any], geometry, crs, layer: str | None, *,
                 append: bool = False) -> None:
    """One table to ``path`` (format from the suffix), written in place (callers use atomic_path)."""
    import pandas as pd

    frame = pd.DataFrame({k: (list(v) if np.asarray(v).dtype == object else np.asarray(v)) for k, v in columns.items()})
    suffix = path.suffix.lower()
    if suffix == ".csv":
        if geometry is not None:
            import shapely

            frame["geometry"] = shapely.to_wkt(np.asarray(geometry, dtype=object), rounding_precision=-1)
        frame.to_csv(path, index=False)
        return
    if geometry is None:
        if suffix in (".parquet", ".pq"):
            frame.to_parquet(path, index=False)
            return
        if suffix in (".shp", ".fgb"):
            raise ValueError(f"{suffix} files need a geometry; pass geometry=")
        import pyogrio

        pyogrio.write_dataframe(frame, path, layer=layer, append=append)
        return
    import geopandas

    gdf = geopandas.GeoDataFrame(frame, geometry=list(geometry), crs=crs)
    if suffix in (".parquet", ".pq", ".geoparquet"):
        gdf.to_parquet(path, index=False)
    else:
        gdf.to_file(path, layer=layer, engine="pyogrio", append=append)


def _write_shapefile(path: Path, columns, geometry, crs) -> None:
    # a shapefile is several files: write them in a scratch folder, then move each into place
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        tmp = Path(scratch) / path.name
        _write_table(tmp, columns, geometry, crs, None)
        for part in Path(scratch).iterdir():
            os.replace(part, path.parent / part.name)


def _write_netcdf(path: Path, dims: Mapping[str, Mapping[str, Any]]) -> None:
    import xarray as xr

    data = {}
    for dim, cols in dims.items():
        for name, values in cols.items():
            values = np.asarray(values)
            if values.dtype == object:
                values = values.astype("S15")
            data[name] = (dim, values)
    xr.Dataset(data).to_netcdf(path)


def write_layer(
    path: str | os.PathLike,
    schema: str,
    ids: Sequence[int],
    downstream: Sequence[int],
    *,
    lengths: Sequence[float] | None = None,
    areas: Sequence[float] | None = None,
    geometry: Sequence[Any] | None = None,
    crs: Any = None,
    extra: Mapping[str, Sequence[Any]] | None = None,
    layer: str | None = None,
    catchment_areas: Sequence[float] | None = None,
    muskingum_k: Sequence[float] | None = None,
    muskingum_x: Sequence[float] | None = None,
    slope: Sequence[float] | None = None,
    stream_order: Sequence[int] | None = None,
    gauge_id: Sequence[str] | None = None,
    variant: str | None = None,
    minor: Mapping[int, int] | None = None,
    riv_bas_id: Sequence[int] | None = None,
) -> Path:
    """Write a small network file in ``schema``'s layout; returns the path to read.

    Parameters
    ----------
    path : target file; its suffix picks the format. For 'rapid', a folder or ``.../rapid_connect.csv``.
    schema : a name of :data:`thalweg.hydrography.SCHEMAS`.
    ids, downstream : reach ids and downstream ids; a downstream id <= 0 is written as the schema's outlet code.
    lengths : m; areas : upstream drainage area, m^2 (schemas storing only catchment areas get
        ``catchment_from_upstream``); catchment_areas : m^2, else derived from ``areas`` where the schema has
        a catchment field; muskingum_k : s; muskingum_x, slope, stream_order, gauge_id : as is.
    geometry : shapely lines (needed for .shp and .fgb); crs : their CRS.
    extra : more columns, written as given.
    layer : layer name in a GeoPackage (default: the schema's preferred layer, else the file stem).
    variant : schema-specific layout. 'nhdplus': 'tocomid' (default), 'lower' (nhdplusTools lower case),
        'plusflow' (a PlusFlow layer or PlusFlow.<suffix> beside the file), 'hydroseq' (Hydroseq/DnHydroseq).
        'hydrofabric': 'nexus' (default for .gpkg: flowpaths + nexus + flowpath-attributes layers, 'wb-'/'nex-'
        string ids), 'network' (default otherwise: one table with flowpath and nexus rows), 'direct' (integer
        toid = downstream flowpath).
    minor : NHDPlus minor paths {from id: to id}: extra links to reaches written with Divergence = 2.
    riv_bas_id : RAPID: the reaches listed in riv_bas_id.csv (default: none written).
    """
    spec = _schema(schema)
    path = Path(path)
    ids = np.asarray(ids, dtype=np.int64)
    downstream = np.asarray(downstream, dtype=np.int64)
    if areas is not None and catchment_areas is None and spec.fields.get("catchment_area"):
        catchment_areas = catchment_from_upstream(ids, downstream, areas)
    quantities = {"muskingum_k": muskingum_k, "muskingum_x": muskingum_x, "slope": slope,
                  "stream_order": stream_order, "gauge_id": gauge_id}
    if schema == "rapid":
        return _write_rapid(path, ids, downstream, muskingum_k, muskingum_x, riv_bas_id)
    if schema == "lines":
        cols = dict(extra or {})
        return _write(path, cols, geometry, crs, layer or path.stem)
    if schema == "hydrofabric" and variant != "direct":
        cols = _columns(spec, ids, downstream, lengths=lengths, areas=areas, catchment=catchment_areas,
                        quantities=quantities)
        return _write_hydrofabric(path, ids, downstream, cols, extra, geometry, crs, layer, variant)
    cols = _columns(spec, ids, downstream, lengths=lengths, areas=areas, catchment=catchment_areas,
                    quantities={k: v for k, v in quantities.items() if v is not None})
    side: dict[str, dict] = {}
    if schema == "nhdplus":
        cols, side = _nhdplus_columns(cols, ids, downstream, variant or "tocomid", minor or {})
    cols.update(extra or {})
    if path.suffix.lower() in (".nc", ".nc4"):
        if schema == "mizuroute":
            hru = {"hruId": ids, "hruSegId": ids, "area": cols.pop("area", np.zeros(ids.size))}
            _write_nc_atomic(path, {"seg": cols, "hru": hru})
        else:
            _write_nc_atomic(path, {"feature_id" if schema == "nwm" else "reach": cols})
        return path
    default_layer = spec.layers[0] if spec.layers else path.stem
    _write(path, cols, geometry, crs, layer or default_layer, side=side)
    return path


def _write_nc_atomic(path: Path, dims) -> None:
    with atomic_path(path) as tmp:
        _write_netcdf(tmp, dims)


def _write(path: Path, cols, geometry, crs, layer, *, side: Mapping[str, Mapping] | None = None) -> Path:
    side = side or {}
    if path.suffix.lower() == ".shp":
        _write_shapefile(path, cols, geometry, crs)
    else:
        with atomic_path(path) as tmp:
            _write_table(tmp, cols, geometry, crs, layer)
            if path.suffix.lower() == ".gpkg":
                for name, table in side.items():
                    _write_table(tmp, table, None, None, name, append=False)
    if path.suffix.lower() != ".gpkg":
        for name, table in side.items():  # e.g. PlusFlow beside the flowlines, same format
            suffix = ".csv" if path.suffix.lower() in (".shp", ".fgb", ".geojson") else path.suffix
            target = path.parent / f"{name}{suffix}"
            with atomic_path(target) as tmp:
                _write_table(tmp, table, None, None, name)
    return path


# ---- schema-specific layouts ------------------------------------------------------------------

def _nhdplus_columns(cols: dict, ids: np.ndarray, downstream: np.ndarray, variant: str,
                     minor: Mapping[int, int]) -> tuple[dict, dict]:
    ds = np.where(downstream <= 0, 0, downstream)
    divergence = np.zeros(ids.size, dtype=np.int64)
    minor_from = np.array(list(minor.keys()), dtype=np.int64)
    minor_to = np.array(list(minor.values()), dtype=np.int64)
    divergence[np.isin(ids, minor_to)] = 2
    divergence[np.isin(ids, ds[np.isin(ids, minor_from)])] = 1  # the main branch of each divergence
    cols = dict(cols)
    cols["Divergence"] = divergence
    side: dict[str, dict] = {}
    if variant in ("tocomid", "lower"):
        if minor:
            raise ValueError("minor paths need variant='plusflow' or 'hydroseq'")
        if variant == "lower":
            cols = {_NHD_LOWER.get(k, k): v for k, v in cols.items()}
    elif variant == "plusflow":
        cols.pop("TOCOMID")
        has_up = np.isin(ids, ds) | np.isin(ids, minor_to)
        side["PlusFlow"] = {
            "FROMCOMID": np.r_[ids, minor_from, np.zeros(int((~has_up).sum()), np.int64)],
            "TOCOMID": np.r_[ds, minor_to, ids[~has_up]],
            "DIRECTION": np.r_[np.full(ids.size + minor_from.size, 709), np.full(int((~has_up).sum()), 712)]}
    elif variant == "hydroseq":
        cols.pop("TOCOMID")
        hydroseq = 5000 + 7 * np.arange(ids.size, dtype=np.int64)[::-1]
        lookup = dict(zip(ids.tolist(), hydroseq.tolist()))
        cols["Hydroseq"] = hydroseq
        cols["DnHydroseq"] = np.array([lookup.get(int(d), 0) for d in ds], dtype=np.int64)
        minor_of = dict(zip(minor_from.tolist(), minor_to.tolist()))
        cols["DnMinorHyd"] = np.array([lookup.get(minor_of.get(int(i), -1), 0) for i in ids], dtype=np.int64)
    else:
        raise ValueError(f"unknown NHDPlus variant {variant!r}")
    return cols, side


def _nexus_ids(ids: np.ndarray, downstream: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nexus of each flowpath: 'nex-<1e6 + downstream id>' (numbers unlike the flowpath ids, so that
    readers must follow the nexus table), or a terminal 'tnx-<2e6 + id>' at outlets."""
    to_nexus = np.where(downstream > 0, [f"nex-{1_000_000 + d}" for d in downstream],
                        [f"tnx-{2_000_000 + i}" for i in ids]).astype(object)
    nexus, first = np.unique(to_nexus, return_index=True)
    nexus_to = np.array([f"wb-{d}" if d > 0 else "wb-0" for d in downstream[first]], dtype=object)
    return to_nexus, np.column_stack([nexus, nexus_to])


def _write_hydrofabric(path: Path, ids, downstream, cols: dict, extra, geometry, crs, layer, variant) -> Path:
    variant = variant or ("nexus" if path.suffix.lower() == ".gpkg" else "network")
    to_nexus, nexus = _nexus_ids(ids, downstream)
    routing = {k: cols.pop(k) for k in ("MusK", "MusX", "So", "rl_gages") if k in cols}
    flow = {"id": np.array([f"wb-{i}" for i in ids], dtype=object), "toid": to_nexus}
    flow.update({k: v for k, v in cols.items() if k not in ("id", "toid")})
    flow.update(extra or {})
    if variant == "network":
        if geometry is not None:
            raise ValueError("the hydrofabric 'network' table has no geometry (its nexus rows are points)")
        n_nex = nexus.shape[0]
        table = {"id": np.r_[flow["id"], nexus[:, 0]].astype(object),
                 "toid": np.r_[flow["toid"], nexus[:, 1]].astype(object)}
        for k, v in {**flow, **routing}.items():
            if k in ("id", "toid"):
                continue
            v = np.asarray(v)
            table[k] = np.r_[v.astype(float), np.full(n_nex, np.nan)] if v.dtype.kind in "iuf" else \
                np.r_[v.astype(object), np.full(n_nex, None, dtype=object)]
        return _write(path, table, None, crs, layer or "network")
    if variant != "nexus" or path.suffix.lower() != ".gpkg":
        raise ValueError("hydrofabric variant 'nexus' is a GeoPackage (flowpaths, nexus, flowpath-attributes)")
    attributes = {"id": flow["id"], **routing}
    if "lengthkm" in flow:
        attributes["Length_m"] = np.asarray(flow["lengthkm"], dtype=float) * 1000.0
    with atomic_path(path) as tmp:
        _write_table(tmp, flow, geometry, crs, layer or "flowpaths")
        _write_table(tmp, {"id": nexus[:, 0], "toid": nexus[:, 1]}, None, None, "nexus")
        _write_table(tmp, attributes, None, None, "flowpath-attributes")
    return path


def _write_rapid(path: Path, ids, downstream, k, x, riv_bas_id) -> Path:
    folder = path if path.suffix.lower() != ".csv" else path.parent
    folder.mkdir(parents=True, exist_ok=True)
    ds = np.where(downstream <= 0, 0, downstream)
    ups = [ids[ds == i] for i in ids]
    width = max((u.size for u in ups), default=0)
    lines = []
    for i, d, u in zip(ids, ds, ups):
        lines.append(",".join(str(int(v)) for v in [i, d, u.size, *u, *([0] * (width - u.size))]))
    files = {"rapid_connect.csv": lines}
    if k is not None:
        files["k.csv"] = [repr(float(v)) for v in k]
    if x is not None:
        files["x.csv"] = [repr(float(v)) for v in x]
    if riv_bas_id is not None:
        files["riv_bas_id.csv"] = [str(int(v)) for v in riv_bas_id]
    for name, rows in files.items():
        with atomic_path(folder / name) as tmp:
            tmp.write_text("\n".join(rows) + "\n")
    return folder / "rapid_connect.csv"
