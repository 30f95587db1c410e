"""Upstream drainage area sampled from a flow-accumulation raster (rasterio).

Each reach is sampled near its downstream end, 0.75 raster cell upstream of its last vertex along
the line (half-way along lines shorter than that). The last vertex itself sits on the confluence,
whose cell also drains the other tributaries (and, for lines vectorised from D8 grids, is the first
cell of the downstream reach); stepping back 0.75 cell lands in the reach's own last cell for lines
through cell centres, whether the last segment is straight (1 cell) or diagonal (1.41 cells).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..errors import InputError, ThalwegWarning, UnitError, format_ids, opt, render_options
from ..network import Source
from ..units import parse_unit

__all__ = ["sample_area", "cell_areas"]

_MAX_WINDOW_CELLS = 100_000_000  # read a window up to this size at once; sample point by point beyond


def _transformer(src_crs, dst_crs):
    from pyproj import Transformer

    return Transformer.from_crs(src_crs, dst_crs, always_xy=True)


def cell_areas(dataset, rows: np.ndarray) -> np.ndarray:
    """Area in m^2 of the cells on the given raster rows (geodesic for geographic rasters)."""
    from pyproj import CRS

    t = dataset.transform
    if abs(t.b) > 0 or abs(t.d) > 0:
        raise InputError("rotated rasters are not supported.", path=dataset.name,
                         hint="Warp the raster to a north-up grid (gdalwarp) first.")
    crs = CRS.from_user_input(dataset.crs) if dataset.crs else None
    if crs is None or not crs.is_geographic:
        factor = 1.0
        if crs is not None:
            factor = float(crs.axis_info[0].unit_conversion_factor or 1.0)
        return np.full(rows.shape, abs(t.a * t.e) * factor**2)
    geod = crs.get_geod()
    unique, inverse = np.unique(rows, return_inverse=True)
    areas = np.empty(unique.size)
    for k, row in enumerate(unique):  # one polygon per distinct raster row, not per reach
        top = t.f + row * t.e
        bottom = top + t.e
        lons = [t.c, t.c + t.a, t.c + t.a, t.c]
        lats = [top, top, bottom, bottom]
        areas[k] = abs(geod.polygon_area_perimeter(lons, lats)[0])
    return areas[inverse]


def _sample_points(lines: np.ndarray, back: float) -> np.ndarray:
    import shapely

    length = shapely.length(lines)
    at = np.where(length > back, length - back, 0.5 * length)
    return shapely.get_coordinates(shapely.line_interpolate_point(lines, at))


def _cell_in_layer_units(dataset, to_layer) -> float:
    t = dataset.transform
    cx = t.c + t.a * dataset.width / 2
    cy = t.f + t.e * dataset.height / 2
    size = min(abs(t.a), abs(t.e))
    if to_layer is None:
        return size
    x, y = to_layer.transform([cx, cx + size], [cy, cy])
    return float(np.hypot(x[1] - x[0], y[1] - y[0]))


def sample_area(path: str | Path, lines: np.ndarray, crs: str | None, ids: np.ndarray, *, unit: str | None = None,
                source: Source | None = None) -> np.ndarray:
    """Drainage area in m^2 at each line's downstream end, read from a flow-accumulation raster.

    Parameters
    ----------
    path : GeoTIFF (or any raster GDAL reads) of upstream area or accumulated cell counts.
    lines : object array [N] of LineStrings in ``crs``, digitised downstream.
    crs : CRS of the lines; points are reprojected when the raster's CRS differs.
    ids : int64 [N], reach ids for messages.
    unit : 'cells' (counts, multiplied by each cell's area, geodesic for geographic rasters), or an area unit
        ('km2', 'm2', ...). None: integer rasters are taken as cell counts, with a warning.

    Returns
    -------
    float64 [N], m^2; NaN where the point falls off the raster or on nodata (with a warning naming ids).
    """
    import rasterio
    from rasterio.windows import Window

    from .._paths import check_input

    source = source or Source()
    path = check_input(path, what="flow-accumulation raster")
    try:
        dataset = rasterio.open(path)
    except Exception as exc:  # RasterioIOError and friends
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(f"cannot read the flow-accumulation raster ({detail}).", path=path,
                         hint="Give a GeoTIFF of upstream area or of accumulated cell counts.") from None
    with dataset:
        if unit is None:
            if dataset.dtypes[0].startswith(("int", "uint")):
                unit = "cells"
                warnings.warn(render_options(
                    f"{path.name}: no raster unit given; the raster holds integers, taken as accumulated cell "
                    f"counts. Pass {opt('read_network.area_raster_unit', 'cells')} to silence this."),
                              ThalwegWarning, stacklevel=3)
            else:
                raise UnitError("the unit of the flow-accumulation raster is not known.", path=path,
                                hint=f"Give the unit with {opt('read_network.area_raster_unit', 'cells')} "
                                     f"(or 'm2', 'km2').")
        factor = None if unit == "cells" else parse_unit(unit, "area")
        to_layer = to_raster = None
        if crs is not None and dataset.crs is not None:
            from pyproj import CRS

            if not CRS.from_user_input(crs).equals(CRS.from_user_input(dataset.crs)):
                to_layer = _transformer(dataset.crs, crs)
                to_raster = _transformer(crs, dataset.crs)
        points = _sample_points(lines, 0.75 * _cell_in_layer_units(dataset, to_layer))
        xs, ys = points[:, 0], points[:, 1]
        if to_raster is not None:
            xs, ys = to_raster.transform(xs, ys)
        rows, cols = rasterio.transform.rowcol(dataset.transform, xs, ys)
        rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
        inside = (rows >= 0) & (rows < dataset.height) & (cols >= 0) & (cols < dataset.width)
        values = np.full(rows.size, np.nan)
        if inside.any():
            r0, r1 = rows[inside].min(), rows[inside].max() + 1
            c0, c1 = cols[inside].min(), cols[inside].max() + 1
            if (r1 - r0) * (c1 - c0) <= _MAX_WINDOW_CELLS:
                block = dataset.read(1, window=Window(c0, r0, c1 - c0, r1 - r0), masked=True)
                picked = block[rows[inside] - r0, cols[inside] - c0]
                values[inside] = np.ma.filled(picked.astype(float), np.nan)
            else:
                coords = np.column_stack(dataset.xy(rows[inside], cols[inside]))
                sampled = np.array([v[0] for v in dataset.sample(coords, masked=True)], dtype=object)
                values[inside] = [np.nan if np.ma.is_masked(v) else float(v) for v in sampled]
        if unit == "cells":
            values = values * cell_areas(dataset, np.clip(rows, 0, dataset.height - 1))
        else:
            values = values * factor
    bad = ~np.isfinite(values) | (values <= 0)
    if bad.any():
        values[bad] = np.nan
        warnings.warn(f"{path.name}: {int(bad.sum()):,} reaches fall outside the raster or on nodata/zero cells "
                      f"({format_ids(np.asarray(ids)[bad])}); their drainage area is unknown.",
                      ThalwegWarning, stacklevel=3)
    return values
