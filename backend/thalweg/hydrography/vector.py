"""The one vector reader: any supported file -> an attribute table plus line geometries.

Formats, picked by suffix:

- GeoPackage, Shapefile, GeoJSON, FlatGeobuf and anything else GDAL opens: pyogrio (Arrow I/O);
- GeoParquet and plain Parquet: pyarrow (``geo`` metadata gives the geometry column and CRS);
- CSV: pyarrow's CSV reader (typed columns); a ``geometry``/``WKT`` column holds WKT lines;
- NetCDF (NWM ``Route_Link.nc``, mizuRoute topology): xarray, see :mod:`._netcdf`.

Everything comes back as a :class:`Table`: numpy columns (numbers, strings as object arrays) and a
shapely geometry array. GIS libraries are imported inside the functions that use them.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, opt

__all__ = ["Table", "LayerInfo", "describe", "list_layers", "read_table", "format_of", "crs_string", "is_frame",
           "table_from_frame", "FRAME_NAME"]

FRAME_NAME = "GeoDataFrame"  # what messages call a network or catchments given as a data frame

PARQUET = {".parquet", ".geoparquet", ".pq"}
CSV = {".csv", ".txt", ".tsv"}
NETCDF = {".nc", ".nc4", ".netcdf", ".cdf"}
WKT_COLUMNS = ("geometry", "wkt", "geom", "the_geom")


@dataclasses.dataclass
class Table:
    """An attribute table with optional geometries.

    Attributes
    ----------
    columns : name -> array [n] (numbers as numeric arrays, NaN for nulls; strings as object arrays).
    geometry : object array [n] of shapely geometries, or None when the layer has none (or it was not read).
    crs : 'EPSG:xxxx' or WKT of the geometry, or None.
    path, layer : where it was read.
    side : further tables found in the same file (NetCDF variables on other dimensions), by name.
    """

    columns: dict[str, np.ndarray]
    geometry: np.ndarray | None = None
    crs: str | None = None
    path: Path | None = None
    layer: str | None = None
    geometry_type: str | None = None
    side: dict[str, Table] = dataclasses.field(default_factory=dict)
    n_rows: int | None = None

    @property
    def n(self) -> int:
        if self.n_rows is not None:
            return self.n_rows
        for values in self.columns.values():
            return len(values)
        return 0 if self.geometry is None else len(self.geometry)

    @property
    def names(self) -> list[str]:
        return list(self.columns)

    def info(self) -> LayerInfo:
        """The table described as :func:`describe` describes a layer."""
        return LayerInfo(path=self.path or Path(FRAME_NAME), layer=self.layer, columns=tuple(self.names),
                         geometry_type=self.geometry_type, crs=self.crs, n=self.n)

    def take(self, rows: np.ndarray) -> Table:
        rows = np.asarray(rows)
        return dataclasses.replace(
            self, columns={k: v[rows] for k, v in self.columns.items()},
            geometry=None if self.geometry is None else self.geometry[rows], n_rows=int(rows.size))


@dataclasses.dataclass(frozen=True)
class LayerInfo:
    """What a layer holds, read without reading its features."""

    path: Path
    layer: str | None
    columns: tuple[str, ...]
    geometry_type: str | None
    crs: str | None
    n: int | None
    layers: tuple[str, ...] = ()

    @property
    def has_lines(self) -> bool:
        return bool(self.geometry_type) and "line" in self.geometry_type.lower()


def format_of(path: Path) -> str:
    """'parquet', 'csv', 'netcdf' or 'ogr' (anything GDAL opens)."""
    suffix = path.suffix.lower()
    if suffix in PARQUET:
        return "parquet"
    if suffix in CSV:
        return "csv"
    if suffix in NETCDF:
        return "netcdf"
    return "ogr"


def _fail(path: Path, exc: Exception, layer: str | None = None) -> InputError:
    detail = (str(exc).strip().splitlines() or ["no detail"])[0]  # one line: engines print paragraphs
    return InputError(f"cannot read the file ({type(exc).__name__}: {detail}).",
                      path=path, layer=layer,
                      hint="Check that it is a GeoPackage, Shapefile, GeoParquet/Parquet, GeoJSON, FlatGeobuf, "
                           "CSV or NetCDF file and that it is not damaged or still being written.")


def check_path(path: str | Path, what: str = "file") -> Path:
    """The path of a vector file or folder (FileGDB, RAPID folder), refused when missing or not a regular file."""
    from .._paths import check_input

    return check_input(path, what=what, folder=True)


def is_frame(value: Any) -> bool:
    """A pandas DataFrame (GeoDataFrame included), without importing pandas when it is not loaded."""
    import sys

    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(value, pd.DataFrame)


def table_from_frame(frame: Any, *, geometry: bool = True) -> Table:
    """A pandas DataFrame or geopandas GeoDataFrame as a :class:`Table` (the index is dropped unless named)."""
    import pandas as pd

    frame = frame.reset_index() if frame.index.name is not None else frame
    geom_col = getattr(frame, "_geometry_column_name", None) if hasattr(frame, "geometry") else None
    columns: dict[str, np.ndarray] = {}
    for name in frame.columns:
        if name == geom_col:
            continue
        series = frame[name]
        if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
            if isinstance(series.dtype, pd.api.extensions.ExtensionDtype):  # nullable Int64, Float64
                kind = "float64" if series.isna().any() or series.dtype.kind == "f" else series.dtype.numpy_dtype
                values = series.to_numpy(dtype=kind, na_value=np.nan if kind == "float64" else None)
            else:
                values = series.to_numpy()
        elif pd.api.types.is_string_dtype(series) or series.dtype == object:
            values = series.to_numpy(dtype=object)
        else:
            continue  # dates and others: not reach attributes Thalweg uses, as in arrow_columns
        columns[str(name)] = values
    geoms, crs, gtype = None, None, None
    if geom_col is not None:
        gtype = "/".join(sorted({str(t) for t in frame.geometry.geom_type.dropna().unique()})) or "Unknown"
        crs = crs_string(frame.crs) if frame.crs is not None else None
        if geometry:
            geoms = np.asarray(frame.geometry.values, dtype=object)
    return Table(columns=columns, geometry=geoms, crs=crs, path=None, layer=None, geometry_type=gtype,
                 n_rows=len(frame))


def crs_string(crs: Any) -> str | None:
    """'EPSG:xxxx' when the CRS has an EPSG code, else WKT; None for no CRS."""
    if crs is None or crs == "":
        return None
    from pyproj import CRS

    crs = CRS.from_user_input(crs)
    epsg = crs.to_epsg(min_confidence=90)
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


# ---- listing and describing ---------------------------------------------------------------

def list_layers(path: str | Path) -> list[str]:
    """Layer names of a multi-layer file (GeoPackage ...); [] for single-table formats."""
    path = check_path(path)
    if format_of(path) != "ogr" or path.is_dir() and not path.suffix:
        return []
    import pyogrio

    try:
        return [str(name) for name, _ in pyogrio.list_layers(path)]
    except Exception as exc:  # pyogrio raises DataSourceError and friends for unreadable files
        raise _fail(path, exc) from None


def describe(path: str | Path, layer: str | None = None) -> LayerInfo:
    """Fields, geometry type, CRS and row count of one layer, without reading its features."""
    path = check_path(path)
    kind = format_of(path)
    if kind == "parquet":
        return _describe_parquet(path)
    if kind == "csv":
        return _describe_csv(path)
    if kind == "netcdf":
        from ._netcdf import describe_netcdf

        return describe_netcdf(path)
    import pyogrio

    layers = tuple(list_layers(path))
    if layer is not None and layer not in layers:
        raise InputError(f"there is no layer '{layer}'; the file has {', '.join(map(repr, layers)) or 'no layers'}.",
                         path=path, layer=layer,
                         hint=f"Name one of them with {opt('read_network.layer', layers[0] if layers else 'LAYER')}.")
    try:
        info = pyogrio.read_info(path, layer=layer)
    except Exception as exc:
        raise _fail(path, exc, layer) from None
    return LayerInfo(path=path, layer=info.get("layer_name") or layer or (layers[0] if layers else None),
                     columns=tuple(str(c) for c in info["fields"]), geometry_type=info.get("geometry_type"),
                     crs=info.get("crs"), n=info.get("features"), layers=layers)


def _geo_metadata(schema) -> dict | None:
    meta = schema.metadata or {}
    raw = meta.get(b"geo")
    return json.loads(raw) if raw else None


def _describe_parquet(path: Path) -> LayerInfo:
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
        n = pq.ParquetFile(path).metadata.num_rows
    except Exception as exc:
        raise _fail(path, exc) from None
    geo = _geo_metadata(schema)
    geom_col = geo.get("primary_column") if geo else None
    columns = tuple(name for name in schema.names if name != geom_col and not name.startswith("__index_level"))
    gtype, crs = None, None
    if geo:
        spec = geo.get("columns", {}).get(geom_col, {})
        types = spec.get("geometry_types") or []
        gtype = "/".join(types) if types else "Unknown"
        crs = _geoparquet_crs(spec)
    return LayerInfo(path=path, layer=None, columns=columns, geometry_type=gtype, crs=crs, n=n)


def _geoparquet_crs(spec: Mapping[str, Any]) -> str | None:
    if "crs" not in spec:
        return "EPSG:4326"  # GeoParquet: a missing crs means OGC:CRS84 (lon/lat WGS 84)
    if spec["crs"] is None:
        return None
    from pyproj import CRS

    return crs_string(CRS.from_json_dict(spec["crs"]) if isinstance(spec["crs"], dict) else spec["crs"])


def _csv_read_options(path: Path):
    import pyarrow.csv as pacsv

    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    return pacsv.ParseOptions(delimiter=delimiter)


def _describe_csv(path: Path) -> LayerInfo:
    import pyarrow.csv as pacsv

    try:
        with pacsv.open_csv(path, parse_options=_csv_read_options(path)) as reader:
            names = tuple(reader.schema.names)
    except Exception as exc:
        raise _fail(path, exc) from None
    wkt = _wkt_column(names)
    columns = tuple(c for c in names if c != wkt)
    return LayerInfo(path=path, layer=None, columns=columns, geometry_type="Unknown" if wkt else None,
                     crs=None, n=None)


def _wkt_column(names: Sequence[str]) -> str | None:
    lowered = {n.lower(): n for n in names}
    for candidate in WKT_COLUMNS:
        if candidate in lowered:
            return lowered[candidate]
    return None


# ---- reading ------------------------------------------------------------------------------

def read_table(path: str | Path, layer: str | None = None, *, geometry: bool = True,
               columns: Sequence[str] | None = None) -> Table:
    """Read one layer (or table) whole.

    Parameters
    ----------
    path : the file.
    layer : layer name in multi-layer files (GeoPackage); None: the first (or only) one.
    geometry : decode geometries (skipping them is much faster when they are not needed).
    columns : read only these attribute columns (None: all).

    Raises
    ------
    InputError naming the path when the file is missing or cannot be read.
    """
    path = check_path(path)
    kind = format_of(path)
    if kind == "netcdf":
        from ._netcdf import read_netcdf

        return read_netcdf(path)
    if kind == "parquet":
        return _read_parquet(path, geometry=geometry, columns=columns)
    if kind == "csv":
        return _read_csv(path, geometry=geometry, columns=columns)
    return _read_ogr(path, layer, geometry=geometry, columns=columns)


def arrow_columns(table, skip: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Arrow table -> numpy columns: numbers (nulls as NaN), strings (object arrays); others dropped."""
    import pyarrow as pa
    import pyarrow.types as pat

    out: dict[str, np.ndarray] = {}
    for name, col in zip(table.column_names, table.columns):
        if name in skip or name.startswith("__index_level"):
            continue
        kind = col.type
        if pat.is_dictionary(kind):
            col = col.cast(kind.value_type)
            kind = col.type
        if pat.is_integer(kind) or pat.is_floating(kind) or pat.is_boolean(kind):
            values = col.to_numpy()
        elif pat.is_string(kind) or pat.is_large_string(kind):
            values = col.to_numpy(zero_copy_only=False)
            values = values.astype(object) if values.dtype != object else values
        elif pat.is_decimal(kind):
            values = col.cast(pa.float64()).to_numpy()
        else:
            continue  # dates, binary, nested: not reach attributes Thalweg uses
        out[str(name)] = values
    return out


def _wkb(values) -> np.ndarray:
    import shapely

    arr = values.to_numpy(zero_copy_only=False) if hasattr(values, "to_numpy") else np.asarray(values)
    return shapely.from_wkb(arr, on_invalid="warn")


def _read_ogr(path: Path, layer: str | None, *, geometry: bool, columns: Sequence[str] | None) -> Table:
    import pyogrio

    info = describe(path, layer)
    try:
        meta, table = pyogrio.read_arrow(path, layer=info.layer, read_geometry=geometry,
                                         columns=None if columns is None else list(columns))
    except Exception as exc:
        raise _fail(path, exc, info.layer) from None
    geom_name = meta.get("geometry_name") or "wkb_geometry"
    geoms = _wkb(table.column(geom_name)) if geometry and geom_name in table.column_names else None
    return Table(columns=arrow_columns(table, skip=(geom_name,)), geometry=geoms, crs=crs_string(meta.get("crs")),
                 path=path, layer=info.layer, geometry_type=info.geometry_type, n_rows=table.num_rows)


def _read_parquet(path: Path, *, geometry: bool, columns: Sequence[str] | None) -> Table:
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
        geo = _geo_metadata(schema)
        geom_col = geo.get("primary_column") if geo else None
        names = list(schema.names) if columns is None else list(columns)
        wanted = [c for c in names if c != geom_col] + ([geom_col] if geom_col and geometry else [])
        table = pq.read_table(path, columns=wanted)
    except Exception as exc:
        raise _fail(path, exc) from None
    geoms, crs, gtype = None, None, None
    if geo:
        spec = geo.get("columns", {}).get(geom_col, {})
        crs = _geoparquet_crs(spec)
        gtype = "/".join(spec.get("geometry_types") or []) or "Unknown"
        if geometry and geom_col in table.column_names:
            if spec.get("encoding", "WKB").upper() == "WKB":
                geoms = _wkb(table.column(geom_col))
            else:  # GeoArrow native encodings: let geopandas decode them
                import geopandas

                geoms = geopandas.read_parquet(path, columns=[geom_col]).geometry.to_numpy()
    return Table(columns=arrow_columns(table, skip=(geom_col,) if geom_col else ()), geometry=geoms, crs=crs,
                 path=path, layer=None, geometry_type=gtype, n_rows=table.num_rows)


def _read_csv(path: Path, *, geometry: bool, columns: Sequence[str] | None) -> Table:
    import pyarrow.csv as pacsv

    try:
        table = pacsv.read_csv(path, parse_options=_csv_read_options(path),
                               convert_options=pacsv.ConvertOptions(include_columns=columns))
    except Exception as exc:
        raise _fail(path, exc) from None
    wkt = _wkt_column(table.column_names)
    geoms = None
    if wkt and geometry:
        import shapely

        text = table.column(wkt).to_numpy(zero_copy_only=False)
        try:
            geoms = shapely.from_wkt(text, on_invalid="raise")
        except shapely.errors.GEOSException as exc:
            raise InputError(f"column {wkt} holds text that is not WKT geometry ({exc}).", path=path, field=wkt,
                             hint="Write geometries as WKT (LINESTRING (x y, ...)) or drop the column.") from None
    return Table(columns=arrow_columns(table, skip=(wkt,) if wkt else ()), geometry=geoms, crs=None, path=path,
                 layer=None, geometry_type="Unknown" if wkt else None, n_rows=table.num_rows)
