"""``read_network``: file -> schema -> arrays in SI units -> validated :class:`RiverNetwork`."""
from __future__ import annotations

import warnings
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GeometryError, InputError, NetworkError, SchemaError, ThalwegWarning
from ..names import as_ids
from ..network import RiverNetwork, Source, from_arrays
from ..units import guess_area_unit, guess_length_unit, to_si
from ._choose import choose
from ._context import Context, Resolved, default_resolve, field_option
from ._geometry import crs_facts, line_lengths, prepare_lines
from ._schema import CORE_ROLES, QUANTITY_KIND, STANDARD_ATTRS, find_field
from .vector import FRAME_NAME, Table, check_path, read_table

__all__ = ["read_network"]


def _apply_overrides(found: dict[str, str], fields: Mapping[str, str | None], table: Table, ctx_path: Path,
                     layer: str | None) -> dict[str, str]:
    out = dict(found)
    for role, name in fields.items():
        if name is None:
            out.pop(role, None)
            continue
        column = find_field(table.names, name)
        if column is None:
            shown = ", ".join(table.names[:30])
            shown += f" and {len(table.names) - 30} more" if len(table.names) > 30 else ""
            raise SchemaError(f"there is no field {name} (asked for the {role}); the fields are {shown or 'none'}.",
                              path=ctx_path, layer=layer, field=name,
                              hint="Check the spelling (case is ignored) or choose another layer.")
        out[role] = column
    return out


def _numeric(ctx: Context, field: str) -> np.ndarray:
    """A numeric column as float64 (nulls NaN); SchemaError if it holds text."""
    values = ctx.table.columns[field]
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        bad = [v for v in values[:200] if not _is_number(v)][:3]
        raise SchemaError(f"field {field} holds text, not numbers ({', '.join(map(repr, bad))}).", path=ctx.path,
                          layer=ctx.layer, field=field,
                          hint=f"Map a numeric field for this role with {field_option(_role_of(ctx, field))}, "
                               f"or fix the values.") from None


def _role_of(ctx: Context, field: str) -> str:
    return next((role for role, name in ctx.fields.items() if name == field), "length")


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return value is None
    return True


def _quantity(ctx: Context, role: str, declared: str | None) -> np.ndarray | None:
    field = ctx.fields.get(role)
    if field is None:
        return None
    kind = QUANTITY_KIND[role]
    values = _numeric(ctx, field)
    unit = declared or ctx.schema.unit(field)
    if unit is None:
        guess = guess_length_unit if kind == "length" else guess_area_unit
        unit = guess(field, values, source=ctx.path.name)
    return to_si(values, unit, kind)


def _strings(values: np.ndarray) -> np.ndarray:
    """Gauge ids as stripped strings ('' for none); numeric ids lose no digits."""
    import pandas as pd

    series = pd.Series(values)
    if series.dtype.kind == "f":
        series = series.astype("Int64")
    return series.astype("string").fillna("").str.strip().to_numpy(dtype=object)


def _attrs(ctx: Context) -> dict[str, np.ndarray]:
    """Standard attributes under their standard names, every other column under its own name."""
    attrs: dict[str, np.ndarray] = {}
    used = {ctx.fields[r] for r in CORE_ROLES if r in ctx.fields}
    for role in STANDARD_ATTRS:
        field = ctx.fields.get(role)
        if field is None:
            continue
        values = ctx.table.columns[field]
        used.add(field)
        if role == "gauge_id":
            attrs[role] = _strings(values)
        elif role == "muskingum_k":
            attrs[role] = to_si(_numeric(ctx, field), ctx.schema.unit(field) or "s", "time")
        else:
            attrs[role] = _numeric(ctx, field)
    for name, values in ctx.table.columns.items():
        if name not in used and name not in attrs:
            attrs[name] = values
    return attrs


def _slope(ctx: Context) -> np.ndarray | None:
    field = ctx.fields.get("slope")
    if field is None:
        return None
    slope = _numeric(ctx, field)
    bad = slope < 0
    if bad.any():  # NHDPlus and others write -9998 / -9999 for "no slope"
        warnings.warn(f"{ctx.path.name}: {int(bad.sum()):,} values of {field} are negative (no-data codes); "
                      f"their slope is unknown (NaN).", ThalwegWarning, stacklevel=4)
        slope = np.where(bad, np.nan, slope)
    return slope


def _labels(ctx: Context) -> np.ndarray:
    field = ctx.fields.get("id")
    if field is None:
        return np.arange(1, ctx.table.n + 1, dtype=np.int64)
    return np.asarray(ctx.table.columns[field])


def read_network(
    path: str | Path | Any,
    *,
    schema: str | None = None,
    fields: Mapping[str, str | None] | None = None,
    layer: str | None = None,
    id_field: str | None = None,
    downstream_field: str | None = None,
    length_field: str | None = None,
    area_field: str | None = None,
    length_unit: str | None = None,
    area_unit: str | None = None,
    area_raster: str | Path | None = None,
    area_raster_unit: str | None = None,
    catchments: str | Path | Any = None,
    catchment_layer: str | None = None,
    catchment_id_field: str | None = None,
    tolerance: float | None = None,
    check_area: str = "error",
    keep_geometry: bool = True,
    bifurcations: str | None = None,
    links: str | Path | None = None,
) -> RiverNetwork:
    """Read a river network from any supported hydrography file (DATA.md section 1) or data frame.

    Parameters
    ----------
    path : GeoPackage, Shapefile, GeoParquet/Parquet, GeoJSON, FlatGeobuf, CSV, NetCDF (NWM ``Route_Link.nc``,
        mizuRoute topology), a RAPID ``rapid_connect.csv`` (or its folder), a river-route 2.x ``params.parquet``;
        or a geopandas GeoDataFrame, or a pandas DataFrame without geometry (read as the same table would be).
    schema : a name in :data:`SCHEMAS` ('geoglows', 'hydrorivers', ...); None: detected from the fields.
        'lines' builds the topology from the line geometry.
    fields : role -> field name ('id', 'downstream', 'length', 'area', 'catchment_area', 'slope',
        'muskingum_k', 'muskingum_x', 'stream_order', 'gauge_id'), overriding detection; None drops a role.
    layer : layer of a multi-layer file; None: the layer that holds a known schema.
    id_field, downstream_field, length_field, area_field : the same as ``fields={'id': ...}`` etc., one role each
        (the CLI's --id-field, ...); they win over ``fields``.
    length_unit, area_unit : units of the length and area fields ('m', 'km', 'm2', 'km2'), overriding
        the schema's units and any guess.
    area_raster, area_raster_unit : flow-accumulation raster sampled at each reach's downstream end when
        the layer has no area field; unit 'cells', 'm2', 'km2' (see :mod:`.raster`).
    catchments : polygon layer (file or GeoDataFrame) whose id field matches reach ids; its areas are the
        reaches' catchment areas and, without an area field, accumulate into upstream drainage areas.
    catchment_layer : the layer of ``catchments`` in a multi-layer file (None: its only polygon layer).
    catchment_id_field : the catchments' field holding reach ids (None: the field matching most reach ids).
    tolerance : end-point snapping tolerance (layer units) for topology from geometry; default 1e-6 degree or
        0.01 m.
    check_area : 'error', 'warn' or 'ignore' when drainage area decreases downstream.
    keep_geometry : keep the lines on the network (for maps); False skips decoding them when not needed.
    bifurcations : reaches whose outflow splits (NHDPlus divergences, lines whose end touches several starts,
        ``links`` rows): 'split' routes every branch (fractions from the data, else by the receiving reaches'
        drainage area, or equal), 'main' keeps the main path only; None (default): split when the data gives
        fractions, else main, with a warning saying what was done.
    links : a CSV or parquet table (from_id, to_id[, fraction]) of downstream links; the reaches it lists take
        their links from it (overriding the downstream field); several rows for a reach make it split.

    Returns
    -------
    RiverNetwork in SI units (length m, area m^2, ``attrs['muskingum_k']`` s).

    Raises
    ------
    InputError (unreadable file, empty layer), SchemaError (fields), GeometryError, NetworkError and its
    subclasses (topology), UnitError; each names the file, layer, field and ids.
    """
    from .vector import is_frame, table_from_frame

    fields = dict(fields or {})
    for role, name in (("id", id_field), ("downstream", downstream_field), ("length", length_field),
                       ("area", area_field)):
        if name is not None:
            fields[role] = name
    frame = None
    if is_frame(path):
        frame = table_from_frame(path, geometry=keep_geometry or schema == "lines" or area_raster is not None)
        path = Path(FRAME_NAME)
        choice = choose(path, schema=schema, fields=fields, layer=None, infos=[frame.info()])
    else:
        path = check_path(path)
        choice = choose(path, schema=schema, fields=fields, layer=layer)
    chosen = choice.schema
    found = dict(choice.match.fields)
    needs_geometry = (keep_geometry or area_raster is not None or chosen.name == "lines"
                      or ("length" not in found and "length" not in fields))
    if frame is not None:
        if chosen.open is not None:
            raise SchemaError(f"the {chosen.title} layout is a set of files, not one table.", path=path,
                              hint="Give the file path instead of a data frame.")
        table = frame
    elif chosen.open is not None:
        table = chosen.open(path, choice.layer)
    else:
        table = read_table(path, choice.layer, geometry=needs_geometry)
    layer = table.layer if chosen.open is None else None
    if table.n == 0:
        raise InputError("the layer has no features.", path=path, layer=layer,
                         hint="Choose the layer that holds the river lines, or check any filter applied on export.")
    source_path = None if frame is not None else str(path)
    ctx = Context(path=path, layer=layer, schema=chosen, table=table, fields={},
                  source=Source(source_path, layer, chosen.name, {}), tolerance=tolerance)
    if chosen.prepare is not None:
        ctx.table = table = chosen.prepare(table, ctx)
    ctx.fields = _apply_overrides(chosen.find(table.names), fields, table, path, layer)
    ctx.source = Source(source_path, layer, chosen.name, dict(ctx.fields))

    labels = _labels(ctx)
    lines = None
    if table.geometry is not None:
        needed = area_raster is not None or chosen.name == "lines" or "length" not in ctx.fields
        lines = prepare_lines(table.geometry, labels, ctx.source, needed=needed)
        import shapely

        if shapely.is_missing(lines).all():
            lines = None  # points only, read from the fields (prepare_lines warned)
        else:
            ctx.facts = crs_facts(table.crs, lines if needed else None, ctx.source)
    ctx.lines = lines

    length = _quantity(ctx, "length", length_unit)
    length_field = ctx.fields.get("length")
    if length is None and lines is not None:
        length = line_lengths(lines, ctx.facts, ctx.source)
        length_field = "geometry (geodesic)" if ctx.facts.geographic else "geometry"
    area = _quantity(ctx, "area", area_unit)
    area_field = ctx.fields.get("area")
    if area is None and area_raster is not None:
        if lines is None:
            raise GeometryError("a flow-accumulation raster needs line geometries to sample, and the layer has none.",
                                path=path, layer=layer, hint="Read the layer with its lines, or map an area field.")
        from .raster import sample_area

        area = sample_area(area_raster, lines, ctx.facts.crs, labels, unit=area_raster_unit, source=ctx.source)
        area_field = f"raster {Path(area_raster).name}"
    ctx.area = area
    catchment = _quantity(ctx, "catchment_area", area_unit)

    resolved = (chosen.resolve or default_resolve)(ctx)
    rows = resolved.rows
    if rows is not None:
        ctx.table = table.take(rows)
        length, area, catchment, lines = (None if a is None else a[rows] for a in (length, area, catchment, lines))

    role_fields = dict(ctx.fields)
    role_fields.update(resolved.fields)
    if length_field:
        role_fields["length"] = length_field
    if area_field:
        role_fields["area"] = area_field
    ids = as_ids(resolved.ids, path=source_path, layer=layer, field=role_fields.get("id"), error=NetworkError) \
        if np.asarray(resolved.ids).dtype.kind in "uif" else resolved.ids
    downstream_ids = resolved.downstream_ids
    if np.asarray(downstream_ids).dtype.kind == "u":  # outlet codes are negative: keep them out of uint64
        downstream_ids = as_ids(downstream_ids, path=source_path, layer=layer, field=role_fields.get("downstream"),
                                error=NetworkError, what="downstream ids")
    resolved = dataclasses.replace(resolved, ids=ids, downstream_ids=downstream_ids)
    if catchments is not None:
        from .catchments import catchment_areas, integer_part

        catchment, cat_field, cat_name = catchment_areas(catchments, integer_part(resolved.ids), layer=catchment_layer,
                                                         id_field=catchment_id_field, source=ctx.source)
        role_fields["catchment_area"] = f"{cat_name}:{cat_field}"
    source = Source(source_path, layer, chosen.name, role_fields)
    if links is not None:
        from .links import merge_links, read_links

        resolved = dataclasses.replace(resolved, links=merge_links(resolved.links, read_links(links)))
    return _build(ctx, resolved, source, length=length, area=area, catchment=catchment, lines=lines,
                  keep_geometry=keep_geometry, check_area=check_area, bifurcations=bifurcations)


def _build(ctx: Context, resolved: Resolved, source: Source, *, length, area, catchment, lines, keep_geometry,
           check_area, bifurcations=None) -> RiverNetwork:
    attrs = _attrs(ctx)
    slope = _slope(ctx)
    unknown_length = length is None and "muskingum_k" in attrs
    if unknown_length:
        warnings.warn(f"{ctx.path.name} ({ctx.schema.title}) gives no reach lengths and no line geometry; "
                      f"lengths are unknown (NaN). Schemes that use only muskingum_k/muskingum_x can route it; give "
                      f"lines or a length field for the others.", ThalwegWarning, stacklevel=3)
    outlet_codes = resolved.outlet_codes or ctx.schema.outlet_codes
    return from_arrays(
        resolved.ids, resolved.downstream_ids, length, area, slope=slope, catchment_area=catchment, attrs=attrs,
        geometry=lines if keep_geometry else None, crs=ctx.facts.crs if (ctx.facts and keep_geometry) else None,
        outlet_codes=outlet_codes, source=source, check_area=check_area, accumulate_catchments=True,
        links=resolved.links, bifurcations=bifurcations)
