"""Grid-to-catchment weights: the area of each grid cell inside each catchment, as GEOGloWS weight tables.

A gridded runoff depth d (m per step) becomes a catchment volume V = sum over cells of d_cell * A_cell,
with A_cell the area (m^2) of the cell-catchment intersection, on the ellipsoid whatever the grid's CRS
(:func:`thalweg.hydrography.catchments.polygon_areas`, the area method shared with ``read_network``).

The table is cached in a CSV file keyed by a hash of the grid definition (edges, CRS) and of the
catchments (file bytes, or geometries and ids), so a second run over the same grid and catchments
reuses it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .._files import atomic_path
from ..errors import RunoffError, format_ids, opt
from ..hydrography.catchments import Catchments, polygon_areas, read_catchments
from ._warn import warn

__all__ = ["Grid", "WeightTable", "Catchments", "load_catchments", "compute_weights", "grid_weights",
           "aggregate", "aggregate_blocks", "CACHE_VERSION"]

CACHE_VERSION = "2"  # 2: areas on the ellipsoid in every grid CRS (one area method with catchments.py)


@dataclasses.dataclass(frozen=True, eq=False)
class Grid:
    """A rectilinear grid: cell (row, col) spans x_edges[col]..x_edges[col+1], y_edges[row]..y_edges[row+1].

    x_edges : [nx + 1], y_edges : [ny + 1], monotonic, in the units of ``crs``; rows and columns follow the
    file's array order (a north-up raster has decreasing y_edges). crs : WKT or 'EPSG:xxxx'.
    """

    x_edges: np.ndarray
    y_edges: np.ndarray
    crs: str

    @property
    def shape(self) -> tuple[int, int]:
        return self.y_edges.size - 1, self.x_edges.size - 1

    @classmethod
    def from_transform(cls, transform, width: int, height: int, crs: Any, *, path: Any = None) -> Grid:
        """From a rasterio/affine transform; rotated grids are refused."""
        if abs(transform.b) > 0 or abs(transform.d) > 0:
            raise RunoffError("the raster grid is rotated, which Thalweg cannot aggregate.", path=path,
                              hint="Warp it to a north-up grid first (gdalwarp).")
        x = transform.c + transform.a * np.arange(width + 1)
        y = transform.f + transform.e * np.arange(height + 1)
        return cls(x.astype(np.float64), y.astype(np.float64), _crs_text(crs))

    @classmethod
    def from_centres(cls, x: np.ndarray, y: np.ndarray, crs: Any, *, path: Any = None) -> Grid:
        """From cell-centre coordinates (NetCDF): edges half-way between centres, the ends extrapolated."""
        return cls(_edges(np.asarray(x, np.float64), "x", path), _edges(np.asarray(y, np.float64), "y", path),
                   _crs_text(crs))

    @property
    def geographic(self) -> bool:
        from pyproj import CRS

        return CRS.from_user_input(self.crs).is_geographic

    def key(self) -> str:
        h = hashlib.sha256()
        for part in (self.x_edges, self.y_edges):
            h.update(np.ascontiguousarray(part, dtype="<f8").tobytes())
        h.update(self.crs.encode())
        return h.hexdigest()

    def span(self, lo: float, hi: float, axis: str) -> tuple[int, int]:
        """Index range [a, b) of cells along ``axis`` that overlap the interval (lo, hi)."""
        edges = self.x_edges if axis == "x" else self.y_edges
        n = edges.size - 1
        if edges[-1] < edges[0]:
            a, b = self.span_sorted(edges[::-1], lo, hi)
            return n - b, n - a
        return self.span_sorted(edges, lo, hi)

    @staticmethod
    def span_sorted(edges: np.ndarray, lo: float, hi: float) -> tuple[int, int]:
        n = edges.size - 1
        a = int(np.searchsorted(edges, lo, side="right")) - 1
        b = int(np.searchsorted(edges, hi, side="left"))
        return max(a, 0), min(max(b, 0), n)

    def boxes(self, r0: int, r1: int, c0: int, c1: int):
        """Shapely boxes of the cells in rows r0:r1 and columns c0:c1, row-major."""
        import shapely

        xe, ye = self.x_edges, self.y_edges
        cols, rows = np.meshgrid(np.arange(c0, c1), np.arange(r0, r1))
        cols, rows = cols.ravel(), rows.ravel()
        xa, xb = xe[cols], xe[cols + 1]
        ya, yb = ye[rows], ye[rows + 1]
        return shapely.box(np.minimum(xa, xb), np.minimum(ya, yb), np.maximum(xa, xb), np.maximum(ya, yb)), rows, cols


@dataclasses.dataclass(frozen=True, eq=False)
class WeightTable:
    """reach_id int64 [K], row/col int64 [K] (grid cell), area float64 [K] m^2; key identifies grid and catchments."""

    reach_id: np.ndarray
    row: np.ndarray
    col: np.ndarray
    area: np.ndarray
    key: str
    shape: tuple[int, int]

    @property
    def cell(self) -> np.ndarray:
        """Flat cell index row * nx + col."""
        return self.row * self.shape[1] + self.col

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame({"reach_id": self.reach_id, "cell": self.cell, "row": self.row, "col": self.col,
                             "area_m2": self.area})


def load_catchments(catchments: Any, id_field: str | None, network, *, layer: str | None = None) -> Catchments:
    """The catchments of ``network`` (a polygon file or a GeoDataFrame), read by
    :func:`thalweg.hydrography.catchments.read_catchments` (the one catchment reader)."""
    return read_catchments(catchments, network.ids, layer=layer, id_field=id_field,
                           prefer=(network.source.field("id"),))


def compute_weights(grid: Grid, catchments: Catchments, *, progress: bool = True) -> WeightTable:
    """Intersection areas (m^2, by :func:`~thalweg.hydrography.catchments.polygon_areas`) of every catchment with
    every grid cell it touches.

    Warns about catchments that lie partly or wholly outside the grid (their runoff is underestimated or
    missing).
    """
    import shapely

    geoms = _to_grid_crs(catchments, grid)
    wraps = grid.geographic and max(grid.x_edges.max(), -grid.x_edges.min()) > 180.0 + 1e-9
    out_id, out_row, out_col, out_part = [], [], [], []
    for i in _progress(range(len(geoms)), progress and len(geoms) > 200, "grid weights"):
        geom = geoms[i]
        shifts = (0.0, 360.0, -360.0) if wraps else (0.0,)  # a 0..360 grid meets -180..180 polygons
        for s in shifts:
            g = geom if s == 0.0 else shapely.transform(geom, lambda xy, s=s: xy + np.array([s, 0.0]))
            xmin, ymin, xmax, ymax = g.bounds
            r0, r1 = grid.span(ymin, ymax, "y")
            c0, c1 = grid.span(xmin, xmax, "x")
            if r1 <= r0 or c1 <= c0:
                continue
            boxes, rows, cols = grid.boxes(r0, r1, c0, c1)
            shapely.prepare(g)
            hit = shapely.intersects(g, boxes)
            if not hit.any():
                continue
            boxes, rows, cols = boxes[hit], rows[hit], cols[hit]
            # cells wholly inside need no intersection: most of a large catchment's cells
            inside = shapely.contains_properly(g, boxes)
            parts = boxes.copy()
            parts[~inside] = shapely.intersection(boxes[~inside], g)
            if s != 0.0:  # measured where the polygon lies, so all parts of it share one projection
                parts = shapely.transform(parts, lambda xy, s=s: xy - np.array([s, 0.0]))
            out_id.append(np.full(rows.size, catchments.ids[i], dtype=np.int64))
            out_row.append(rows)
            out_col.append(cols)
            out_part.append(parts)

    def cat(parts, dt):
        return np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt)

    # one area method for every polygon Thalweg measures (catchments.polygon_areas), over all parts at once
    area = polygon_areas(cat(out_part, object), grid.crs)
    keep = area > 0
    own_area = polygon_areas(geoms, grid.crs)
    table = WeightTable(cat(out_id, np.int64)[keep], cat(out_row, np.int64)[keep], cat(out_col, np.int64)[keep],
                        area[keep], _cache_key(grid, catchments), grid.shape)
    _warn_coverage(table, catchments, own_area)
    return table


def grid_weights(grid: Grid, catchments: Catchments, *, cache: Any = None, default_dir: Path | None = None,
                 compute: Callable[..., WeightTable] | None = None) -> tuple[WeightTable, dict]:
    """The weight table, read from its cache when the key matches, else computed and cached.

    cache : None (a file in ``default_dir``), False (no cache), a folder (a file named by the key inside it)
        or a ``.csv`` file path (reused only when its key matches, else recomputed and replaced).
    Returns the table and a record for ``Runoff.attrs`` (cache path, whether it was reused).
    """
    key = _cache_key(grid, catchments)
    path = _cache_path(cache, default_dir, key)
    if path is not None and path.exists():
        cached = _read_cache(path, key, grid.shape)
        if cached is not None:
            return cached, {"weights_cache": str(path), "weights_reused": True}
        warn(f"{path.name} holds weights for another grid or other catchments; recomputing it.")
    table = (compute or compute_weights)(grid, catchments)
    record: dict[str, Any] = {"weights_cache": None, "weights_reused": False}
    if path is not None:
        try:
            _write_cache(path, table, catchments)
            record["weights_cache"] = str(path)
        except OSError as exc:  # a read-only folder must not stop the run
            warn(f"cannot write the weight cache {path}: {exc}; weights will be recomputed next time. "
                          f"Give a writable folder with {opt('read_runoff.weights_cache', 'FOLDER')}.")
    return table, record


def aggregate_blocks(table: WeightTable, read_block: Callable[[int, int, tuple[int, int, int, int]], np.ndarray],
                     n_steps: int, *, progress: bool = True,
                     block_values: float = 2e7) -> Iterator[tuple[int, np.ndarray]]:
    """Sum ``area * value`` over each reach's cells, a block of steps at a time.

    read_block(t0, t1, (r0, r1, c0, c1)) returns the grid values float [t1 - t0, r1 - r0, c1 - c0] of that
    window (the bounding box of the cells in the table). Yields (t0, sums [M, t1 - t0]) with the reaches
    in ``np.unique(table.reach_id)`` order and sums in (value unit) * m^2.
    """
    import torch

    order = np.argsort(table.reach_id, kind="stable")
    rid, row, col, area = (a[order] for a in (table.reach_id, table.row, table.col, table.area))
    if rid.size == 0:
        return
    window = (int(row.min()), int(row.max()) + 1, int(col.min()), int(col.max()) + 1)
    height, width = window[1] - window[0], window[3] - window[2]
    local = (row - window[0]) * width + (col - window[2])
    starts = np.flatnonzero(np.r_[True, rid[1:] != rid[:-1]])
    # a sparse (reach x cell) matrix: only stored weights multiply, so NaN in cells outside every
    # catchment stays out, and the product is ~30x faster than gathering cells with numpy
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        matrix = torch.sparse_csr_tensor(torch.from_numpy(np.r_[starts, rid.size].astype(np.int64)),
                                         torch.from_numpy(local.astype(np.int64)), torch.from_numpy(area),
                                         size=(starts.size, height * width), dtype=torch.float64)
    chunk = max(1, int(block_values // max(height * width, 1)))
    for t0 in _progress(range(0, n_steps, chunk), progress and n_steps > chunk, "aggregating runoff"):
        t1 = min(t0 + chunk, n_steps)
        block = np.asarray(read_block(t0, t1, window), dtype=np.float64).reshape(t1 - t0, height * width)
        yield t0, (matrix @ torch.from_numpy(np.ascontiguousarray(block.T))).numpy()


def aggregate(table: WeightTable, read_block: Callable[[int, int, tuple[int, int, int, int]], np.ndarray],
              n_steps: int, *, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """All steps at once: (reach ids [M], sums [M, T]); see :func:`aggregate_blocks`."""
    ids = np.unique(table.reach_id)
    out = np.zeros((ids.size, n_steps))
    for t0, sums in aggregate_blocks(table, read_block, n_steps, progress=progress):
        out[:, t0:t0 + sums.shape[1]] = sums
    return ids, out


# ---- helpers ----------------------------------------------------------------------------------------
def _edges(centres: np.ndarray, axis: str, path: Any) -> np.ndarray:
    if centres.ndim != 1 or centres.size < 2:
        raise RunoffError(f"the grid's {axis} coordinate needs 1-D cell centres with two values or more "
                          f"(found shape {centres.shape}).", path=path, field=axis,
                          hint="Curvilinear grids are not supported; regrid to a regular grid first.")
    d = np.diff(centres)
    if not (np.all(d > 0) or np.all(d < 0)):
        raise RunoffError(f"the grid's {axis} coordinate is not monotonic.", path=path, field=axis)
    mid = (centres[:-1] + centres[1:]) / 2
    return np.concatenate([[centres[0] - d[0] / 2], mid, [centres[-1] + d[-1] / 2]])


def _crs_text(crs: Any) -> str:
    """'EPSG:xxxx' when the CRS matches one (so one grid keys the same from any file), else WKT."""
    from pyproj import CRS

    parsed = CRS.from_user_input(crs)
    code = parsed.to_epsg(min_confidence=90)
    return f"EPSG:{code}" if code else parsed.to_wkt()


def _cache_key(grid: Grid, catchments: Catchments) -> str:
    return hashlib.sha256(f"v{CACHE_VERSION}|{grid.key()}|{catchments.digest}".encode()).hexdigest()


def _cache_path(cache: Any, default_dir: Path | None, key: str) -> Path | None:
    if cache is False:
        return None
    name = f"thalweg_weights_{key[:16]}.csv"
    if cache is None:
        return None if default_dir is None else Path(default_dir) / name
    path = Path(cache)
    if path.is_dir() or not path.suffix:
        return path / name
    return path


def _read_cache(path: Path, key: str, shape: tuple[int, int]) -> WeightTable | None:
    import pandas as pd

    with open(path) as fh:
        head = fh.readline()
    if f"key={key}" not in head:
        return None
    df = pd.read_csv(path, comment="#")
    return WeightTable(df["reach_id"].to_numpy(np.int64), df["row"].to_numpy(np.int64), df["col"].to_numpy(np.int64),
                       df["area_m2"].to_numpy(np.float64), key, shape)


def _write_cache(path: Path, table: WeightTable, catchments: Catchments) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            fh.write(f"# thalweg grid weights v{CACHE_VERSION} key={table.key} grid={table.shape[0]}x{table.shape[1]} "
                     f"catchments={Path(catchments.source).name} id_field={catchments.id_field}\n")
            table.to_frame().to_csv(fh, index=False)


def _to_grid_crs(catchments: Catchments, grid: Grid) -> np.ndarray:
    import geopandas as gpd

    if catchments.crs is None:
        warn(f"{Path(catchments.source).name}: the catchments have no CRS; assuming the runoff grid's.")
        return catchments.geometry
    series = gpd.GeoSeries(catchments.geometry, crs=catchments.crs)
    return np.asarray(series.to_crs(grid.crs).values, dtype=object)


def _warn_coverage(table: WeightTable, catchments: Catchments, own_area: np.ndarray) -> None:
    covered = np.zeros(catchments.ids.size)
    if table.reach_id.size:
        uniq, inv = np.unique(catchments.ids, return_inverse=True)
        sums = np.zeros(uniq.size)
        np.add.at(sums, np.searchsorted(uniq, table.reach_id), table.area)
        own = np.zeros(uniq.size)
        np.add.at(own, inv, own_area)
        covered = np.where(own > 0, sums / np.where(own > 0, own, 1.0), 0.0)[inv]
    outside = catchments.ids[covered <= 0]
    partial = catchments.ids[(covered > 0) & (covered < 0.99)]
    name = Path(catchments.source).name
    if outside.size:
        warn(f"{name}: {outside.size:,} catchments do not overlap the runoff grid ({format_ids(outside)}); "
                      f"they get no runoff.")
    if partial.size:
        lo = covered[(covered > 0) & (covered < 0.99)].min()
        warn(f"{name}: {partial.size:,} catchments lie partly outside the runoff grid (down to "
                      f"{lo:.0%} covered: {format_ids(partial)}); their runoff is underestimated.")


def _progress(iterable, show: bool, desc: str) -> Iterator:
    if not show:
        return iter(iterable)
    from tqdm.auto import tqdm

    return iter(tqdm(iterable, desc=desc, unit="it", leave=False, disable=None))
