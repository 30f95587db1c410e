"""Line geometry helpers: checks, merging, CRS facts, lengths (geodesic or planar), end points.

All vectorised with shapely 2 and pyproj: no Python loop over features.
"""
from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np

from ..errors import GeometryError, ThalwegWarning, format_ids
from ..network import Source

__all__ = ["CrsFacts", "crs_facts", "prepare_lines", "line_lengths", "end_points", "degree_like",
           "default_tolerance"]

_LINE_TYPES = {1, 2}  # LineString, LinearRing
_MULTILINE = 5
_TYPE_NAMES = {-1: "missing", 0: "Point", 1: "LineString", 2: "LinearRing", 3: "Polygon", 4: "MultiPoint",
               5: "MultiLineString", 6: "MultiPolygon", 7: "GeometryCollection"}


@dataclasses.dataclass(frozen=True)
class CrsFacts:
    """What matters about a layer's CRS: geographic or not, and the linear unit in metres."""

    crs: str | None
    geographic: bool
    metres_per_unit: float
    assumed: bool = False  # True when the layer had no CRS and one was assumed

    @property
    def name(self) -> str:
        return self.crs if self.crs and len(self.crs) < 40 else "its CRS"


def degree_like(lines: np.ndarray) -> bool:
    """Coordinates that fit in [-180, 180] x [-90, 90] and span less than a few degrees per feature."""
    import shapely

    bounds = shapely.total_bounds(lines)
    return bool(np.all(np.isfinite(bounds)) and bounds[0] >= -180 and bounds[2] <= 360
                and bounds[1] >= -90 and bounds[3] <= 90)


def crs_facts(crs: str | None, lines: np.ndarray | None, source: Source) -> CrsFacts:
    """Facts about ``crs``; without a CRS, degree-like coordinates are taken as WGS 84 with a warning."""
    if crs is None:
        name = Path(source.path).name if source.path else "the layer"
        if lines is not None and len(lines) and degree_like(lines):
            warnings.warn(f"{name} has no CRS and its coordinates look like degrees; assuming WGS 84 "
                          f"(EPSG:4326) and measuring on the ellipsoid. Set the layer's CRS to silence this.",
                          ThalwegWarning, stacklevel=3)
            return CrsFacts("EPSG:4326", True, 1.0, assumed=True)
        return CrsFacts(None, False, 1.0)
    from pyproj import CRS

    parsed = CRS.from_user_input(crs)
    if parsed.is_geographic:
        return CrsFacts(crs, True, 1.0)
    factor = 1.0
    try:
        factor = float(parsed.axis_info[0].unit_conversion_factor or 1.0)
    except (IndexError, AttributeError):
        pass
    return CrsFacts(crs, False, factor)


def default_tolerance(facts: CrsFacts) -> float:
    """Snapping tolerance for end points, in layer units: 1e-6 degree (about 0.1 m) or 0.01 m.

    Lines exported from one GIS share end vertices exactly; the tolerance only absorbs rounding
    (text formats, reprojection), and stays far below any real reach length.
    """
    return 1e-6 if facts.geographic else 0.01 / facts.metres_per_unit


def prepare_lines(geometry: np.ndarray, labels: np.ndarray, source: Source, *, needed: bool = True) -> np.ndarray:
    """Check that every feature is one line; merge MultiLineStrings whose parts join end to start.

    Parameters
    ----------
    geometry : object array [n] of shapely geometries.
    labels : array [n] of reach ids (or row numbers) used in messages.
    needed : geometries are needed (lengths, topology, sampling): missing or empty ones are errors;
        otherwise they only warn, and a layer of points or polygons only (no line at all) is read
        without geometry, with a warning. Lines mixed with other types are always an error.

    Returns
    -------
    object array [n] of LineStrings (None where missing, when not ``needed``).

    Raises
    ------
    GeometryError naming the features and their geometry types.
    """
    import shapely

    geometry = np.asarray(geometry, dtype=object)
    missing = shapely.is_missing(geometry) | shapely.is_empty(geometry)
    if missing.any():
        message = f"{int(missing.sum()):,} features have no geometry (empty or null): {format_ids(labels[missing])}."
        if needed:
            raise GeometryError(message, path=source.path, layer=source.layer, ids=labels[missing].tolist(),
                                hint="Delete them or draw their lines; lengths and topology come from the lines.")
        warnings.warn(f"{source.path}: {message} They are kept without geometry.", ThalwegWarning, stacklevel=3)
    types = shapely.get_type_id(geometry)
    bad = ~missing & ~np.isin(types, [1, 2, _MULTILINE])
    if bad.any() and not needed and bad.sum() == (~missing).sum():
        # a table of points (NWM lat/lon, nexus points) with length and ids in fields: usable without lines
        kinds = sorted({_TYPE_NAMES.get(int(t), str(t)) for t in types[bad]})
        warnings.warn(f"{source.path}: the features are {', '.join(kinds)}, not lines; the network is read from "
                      f"its fields and keeps no geometry.", ThalwegWarning, stacklevel=3)
        return np.full(geometry.size, None, dtype=object)
    if bad.any():
        kinds = sorted({_TYPE_NAMES.get(int(t), str(t)) for t in types[bad]})
        shown = ", ".join(f"{_plain(i)} ({_TYPE_NAMES.get(int(t), t)})"
                          for i, t in zip(labels[bad][:3], types[bad][:3]))
        more = f" and {int(bad.sum()) - 3:,} more" if bad.sum() > 3 else ""
        raise GeometryError(f"{int(bad.sum()):,} features are not lines ({', '.join(kinds)}): {shown}{more}.",
                            path=source.path, layer=source.layer, ids=labels[bad].tolist(),
                            hint="A river network needs LineString geometries; choose the river lines layer "
                                 "(not catchments or points), or convert the features to lines.")
    multi = np.flatnonzero(types == _MULTILINE)
    if multi.size:
        merged = shapely.line_merge(geometry[multi], directed=True)
        still = shapely.get_type_id(merged) != 1
        if still.any():
            ids = labels[multi[still]]
            raise GeometryError(f"{ids.size:,} MultiLineStrings have parts that do not join end to start into one "
                                f"line: {format_ids(ids)}.", path=source.path, layer=source.layer, ids=ids.tolist(),
                                hint="Split them into one feature per reach (QGIS: Multipart to singleparts), or "
                                     "snap and reverse parts so they join.")
        geometry = geometry.copy()
        geometry[multi] = merged
    if missing.any():
        geometry = geometry.copy()
        geometry[missing] = None
    return geometry


def _plain(value):
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def line_lengths(lines: np.ndarray, facts: CrsFacts, source: Source, *, warn: bool = True) -> np.ndarray:
    """Length of each line in m: geodesic on the CRS's ellipsoid for geographic CRSs, planar otherwise.

    Geodesic lengths sum pyproj ``Geod.inv`` over every segment in one vectorised call, which is what
    ``Geod.geometry_length`` does line by line.
    """
    import shapely

    lines = np.asarray(lines, dtype=object)
    n = lines.size
    name = Path(source.path).name if source.path else "the layer"
    if not facts.geographic:
        if facts.crs is None and warn:
            warnings.warn(f"{name} has no CRS and no length field; measuring lengths in its coordinate units, "
                          f"taken as metres. Set the layer's CRS or map a length field to silence this.",
                          ThalwegWarning, stacklevel=3)
        return shapely.length(lines) * facts.metres_per_unit
    from pyproj import CRS

    geod = CRS.from_user_input(facts.crs).get_geod()
    coords, index = shapely.get_coordinates(lines, return_index=True)
    same = index[1:] == index[:-1]
    x0, y0 = coords[:-1, 0][same], coords[:-1, 1][same]
    x1, y1 = coords[1:, 0][same], coords[1:, 1][same]
    _, _, dist = geod.inv(x0, y0, x1, y1)
    lengths = np.bincount(index[1:][same], weights=np.abs(dist), minlength=n)
    if warn and not facts.assumed:
        warnings.warn(f"{name} is in {facts.name} (degrees) and has no length field; using geodesic lengths on "
                      f"the ellipsoid. Map a length field to silence this.", ThalwegWarning, stacklevel=3)
    return lengths


def end_points(lines: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last vertex of each line, arrays [n, 2]."""
    import shapely

    coords, index = shapely.get_coordinates(lines, return_index=True)
    counts = np.bincount(index, minlength=len(lines))
    if (counts < 2).any():
        raise AssertionError("end_points needs lines of at least two vertices")
    ends = np.cumsum(counts)
    return coords[ends - counts], coords[ends - 1]
