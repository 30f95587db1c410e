"""Catchment polygons: the one reader (:func:`read_catchments`) and the one area method (:func:`polygon_areas`).

``read_network(catchments=...)`` takes each reach's own catchment area from them; gridded runoff
(``runoff.weights``) intersects them with the grid cells. Both read the polygons here and measure areas
here, so a catchment has one area whichever path reads it.

Areas are measured in a Lambert azimuthal equal-area projection on the CRS's ellipsoid, centred on the
polygons (on each 10-degree tile of them when they spread wider than 20 degrees, so no polygon lies far
from its projection centre); edges of projected layers are densified first (they are straight in the layer's
CRS), edges in degrees are taken as geodesics between their vertices. Equal-area, so the result is the area on
the ellipsoid for geographic layers and undistorted for projected ones (even Web Mercator), within 1e-6 relative
of pyproj's geodesic areas for catchment-sized polygons.
"""
from __future__ import annotations

import dataclasses
import hashlib
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GeometryError, InputError, SchemaError, ThalwegWarning, format_ids, opt
from ..names import REACH_ID_NAMES, as_ids, find_name
from ..network import Source
from .vector import FRAME_NAME, describe, is_frame, list_layers, read_table, table_from_frame

__all__ = ["Catchments", "read_catchments", "polygon_areas", "catchment_areas", "integer_part"]

_POLYGON_TYPES = (3, 6)  # shapely type ids of Polygon, MultiPolygon


def integer_part(values: np.ndarray) -> np.ndarray:
    """Ids as int64; strings such as 'wb-123', 'cat-123' or 'nex-123' give their integer part (NaN-safe: -1)."""
    values = np.asarray(values)
    if values.dtype.kind in "iu":
        return as_ids(values, what="catchment ids")
    if values.dtype.kind == "f":
        return np.where(np.isfinite(values), values, -1).astype(np.int64)
    import pandas as pd

    text = pd.Series(values, dtype="object").astype("string").str.strip()
    number = pd.to_numeric(text, errors="coerce")
    digits = pd.to_numeric(text.str.extract(r"(\d+)$", expand=False), errors="coerce")
    return number.fillna(digits).fillna(-1).astype(np.int64).to_numpy()


def polygon_areas(polygons: np.ndarray, crs: Any) -> np.ndarray:
    """Area of each polygon in m^2 (equal-area projections centred on the polygons; see the module note).

    Polygons without a CRS are measured in their own units (planar), as nothing better can be known.
    """
    import shapely
    from pyproj import CRS, Transformer

    polygons = np.asarray(polygons, dtype=object)
    out = np.zeros(polygons.size)
    if polygons.size == 0:
        return out
    if crs is None:
        return shapely.area(polygons)
    source = CRS.from_user_input(crs)
    geographic = source.geodetic_crs or CRS.from_epsg(4326)
    to_geo = Transformer.from_crs(source, geographic, always_xy=True)
    valid = ~(shapely.is_missing(polygons) | shapely.is_empty(polygons))
    if not valid.any():
        return out
    centre = shapely.centroid(polygons[valid])
    lon, lat = to_geo.transform(shapely.get_x(centre), shapely.get_y(centre))
    lon = (np.asarray(lon) + 180.0) % 360.0 - 180.0
    lat = np.asarray(lat)
    if np.ptp(lon) <= 20.0 and np.ptp(lat) <= 20.0:
        groups = np.zeros(lon.size, dtype=np.int64)
    else:  # continental or global layers: one projection per 10-degree tile
        groups = np.floor((lat + 90.0) / 10.0).astype(np.int64) * 36 + np.floor((lon + 180.0) / 10.0).astype(np.int64)
    ellipsoid = geographic.ellipsoid
    rows = np.flatnonzero(valid)
    for group in np.unique(groups):
        members = groups == group
        lat0, lon0 = float(np.mean(lat[members])), _mean_longitude(lon[members])
        shape = (f"+a={ellipsoid.semi_major_metre} +rf={ellipsoid.inverse_flattening}"
                 if ellipsoid.inverse_flattening else f"+R={ellipsoid.semi_major_metre}")
        laea = CRS.from_proj4(f"+proj=laea +lat_0={lat0} +lon_0={lon0} {shape} +units=m +no_defs")
        forward = Transformer.from_crs(source, laea, always_xy=True)

        def project(xy: np.ndarray, forward=forward) -> np.ndarray:
            x, y = forward.transform(xy[:, 0], xy[:, 1])
            return np.column_stack([x, y])

        part = polygons[rows[members]]
        if not source.is_geographic:
            # edges are straight in a projected CRS: densify them (to 1/32 of each polygon's size) so that the
            # projection follows them, not the chord between far-apart vertices; in degrees, edges are taken as
            # geodesics between their vertices, as pyproj's Geod measures them
            x0, y0, x1, y1 = shapely.bounds(part).T
            size = np.hypot(x1 - x0, y1 - y0)
            part = shapely.segmentize(part, np.where(size > 0, size / 32.0, 1.0))
        out[rows[members]] = shapely.area(shapely.transform(part, project))
    return out


def _mean_longitude(lon: np.ndarray) -> float:
    angle = np.deg2rad(lon)
    return float(np.rad2deg(np.arctan2(np.sin(angle).mean(), np.cos(angle).mean())))


@dataclasses.dataclass(frozen=True, eq=False)
class Catchments:
    """Catchment polygons as read.

    ids : int64 [P], the reach id of each polygon (several polygons may share one).
    geometry : shapely Polygon/MultiPolygon [P], in ``crs``.
    crs : 'EPSG:xxxx' or WKT, or None.
    digest : a hash of the polygons' source and id field (keys the grid-weight cache).
    source : where they came from, for messages ('cat.gpkg', or 'GeoDataFrame').
    id_field, layer : the field holding reach ids, and the layer read.
    """

    ids: np.ndarray
    geometry: np.ndarray
    crs: Any
    digest: str
    source: str
    id_field: str
    layer: str | None = None

    @property
    def name(self) -> str:
        return Path(self.source).name

    def areas(self) -> np.ndarray:
        """float64 [P], m^2, by :func:`polygon_areas`."""
        return polygon_areas(self.geometry, self.crs)


def _polygon_layer(path: Path, layer: str | None) -> str | None:
    """The layer to read: the one named, else the only layer, else the only polygon layer."""
    if layer is not None:
        return layer
    layers = list_layers(path)
    if len(layers) <= 1:
        return layers[0] if layers else None
    polygons = [name for name in layers if "polygon" in (describe(path, name).geometry_type or "").lower()]
    if len(polygons) == 1:
        return polygons[0]
    names = polygons or layers
    raise SchemaError(f"the catchment file has several {'polygon ' if polygons else ''}layers "
                      f"({', '.join(map(repr, names))}).", path=path,
                      hint=f"Choose one with {opt('read_runoff.catchment_layer', names[0])}.")


def _pick_id_field(columns: dict[str, np.ndarray], reach_ids: np.ndarray, id_field: str | None, prefer: tuple,
                   where: Any, layer: str | None) -> str:
    """The field holding reach ids: the one named, else the field whose values match the most reach ids (ties go
    to the network's own id field, then the usual id names), when it matches at least half of them."""
    fields = ", ".join(columns) or "none"
    if id_field is not None:
        found = find_name(columns, (id_field,))
        if found is None:
            raise SchemaError(f"the catchments have no field {id_field!r} (fields: {fields}).", path=where,
                              layer=layer, field=id_field,
                              hint=f"Name the field that holds reach ids with "
                                   f"{opt('read_runoff.catchment_id_field', 'FIELD')}.")
        return found
    ranked = []
    preferred = [find_name(columns, (name,)) for name in (*prefer, *REACH_ID_NAMES) if name]
    for name, values in columns.items():
        if values.dtype.kind not in "iufO":
            continue
        try:
            hits = int(np.isin(integer_part(values), reach_ids).sum())
        except InputError:
            continue
        rank = preferred.index(name) if name in preferred else len(preferred)
        ranked.append((-hits, rank, name))
    ranked.sort()
    if not ranked or -ranked[0][0] < max(1, 0.5 * min(len(next(iter(columns.values()), [])), reach_ids.size)):
        raise SchemaError(f"no field of the catchments holds the reach ids (fields: {fields}).", path=where,
                          layer=layer, hint=f"Name the field that holds reach ids with "
                                            f"{opt('read_runoff.catchment_id_field', 'FIELD')}.")
    return ranked[0][2]


def read_catchments(catchments: Any, reach_ids: np.ndarray, *, layer: str | None = None,
                    id_field: str | None = None, prefer: tuple[str | None, ...] = ()) -> Catchments:
    """Read catchment polygons and find their reach-id field.

    Parameters
    ----------
    catchments : a polygon file (any format :func:`~thalweg.hydrography.vector.read_table` reads) or a
        GeoDataFrame.
    reach_ids : int64 [N], the network's reach ids (to find the id field).
    layer : the layer of a multi-layer file (None: the only one, or the only polygon layer).
    id_field : the field holding reach ids (None: the one matching most reach ids; 'cat-123' matches 123).
    prefer : field names preferred among equally good ones (the network's own id field).

    Raises
    ------
    SchemaError (no id field), GeometryError (not polygons, or empty), InputError (unreadable file).
    """
    import shapely

    reach_ids = np.asarray(reach_ids, dtype=np.int64)
    if is_frame(catchments):
        table = table_from_frame(catchments)
        where, source = None, FRAME_NAME
    else:
        from .._paths import check_input

        path = check_input(catchments, what="catchment file", folder=True)
        table = read_table(path, _polygon_layer(path, layer), geometry=True)
        where, source = path, str(path)
    field = _pick_id_field(table.columns, reach_ids, id_field, prefer, where, table.layer)
    ids = integer_part(table.columns[field])
    geometry = table.geometry
    if geometry is None:
        raise GeometryError("the catchment layer has no geometry.", path=where, layer=table.layer,
                            hint="Give the catchment polygons (not a table).")
    geometry = np.asarray(geometry, dtype=object)
    bad = ~np.isin(shapely.get_type_id(geometry), _POLYGON_TYPES) | shapely.is_empty(geometry)
    if bad.any():
        raise GeometryError(f"{int(bad.sum()):,} catchments are not polygons or are empty: {format_ids(ids[bad])}.",
                            path=where, layer=table.layer, field=field, ids=ids[bad].tolist(),
                            hint="Catchments must be Polygon or MultiPolygon features; remove or fix those rows.")
    digest = _digest_file(Path(source)) if where is not None else _digest_frame(ids, geometry, table.crs)
    digest = hashlib.sha256(f"{digest}|{table.layer}|{field}".encode()).hexdigest()
    return Catchments(ids, geometry, table.crs, digest, source, field, table.layer)


def catchment_areas(catchments: Any, reach_ids: np.ndarray, *, layer: str | None = None,
                    id_field: str | None = None, source: Source | None = None) -> tuple[np.ndarray, str, str]:
    """Each reach's own catchment area in m^2 from catchment polygons (see :func:`read_catchments`).

    Returns
    -------
    (area, id_field, name): float64 [N] m^2 (0 for reaches without a polygon, with a warning; the sum where
    several polygons share a reach), the field used, and the catchments' name for records.
    """
    source = source or Source()
    reach_ids = np.asarray(reach_ids, dtype=np.int64)
    cats = read_catchments(catchments, reach_ids, layer=layer, id_field=id_field, prefer=(source.field("id"),))
    areas = cats.areas()
    sorter = np.argsort(reach_ids, kind="stable")
    where = np.clip(np.searchsorted(reach_ids, cats.ids, sorter=sorter), 0, reach_ids.size - 1)
    pos = sorter[where]
    found = reach_ids[pos] == cats.ids
    network = Path(source.path).name if source.path else "the network"
    if (~found).any():
        warnings.warn(f"{cats.name}: {int((~found).sum()):,} catchments are not reaches of {network} "
                      f"({format_ids(cats.ids[~found])}); they are ignored.", ThalwegWarning, stacklevel=3)
    out = np.bincount(pos[found], weights=areas[found], minlength=reach_ids.size)
    has = np.zeros(reach_ids.size, dtype=bool)
    has[pos[found]] = True
    if (~has).any():
        warnings.warn(f"{cats.name}: {int((~has).sum()):,} reaches have no catchment polygon "
                      f"({format_ids(reach_ids[~has])}); their own catchment area is taken as 0.",
                      ThalwegWarning, stacklevel=3)
    return out, cats.id_field, cats.name


def _digest_file(path: Path) -> str:
    h = hashlib.sha256()
    parts = [path]
    if path.suffix.lower() == ".shp":  # a shapefile lives in several files
        parts += [path.with_suffix(s) for s in (".dbf", ".shx", ".prj") if path.with_suffix(s).exists()]
    if path.is_dir():  # a FileGDB: every file inside
        parts = sorted(p for p in path.rglob("*") if p.is_file())
    for part in parts:
        with open(part, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _digest_frame(ids: np.ndarray, geometry: np.ndarray, crs: Any) -> str:
    import shapely

    h = hashlib.sha256(np.ascontiguousarray(ids, "<i8").tobytes())
    for wkb in shapely.to_wkb(geometry):
        h.update(wkb)
    h.update(str(crs).encode())
    return h.hexdigest()
