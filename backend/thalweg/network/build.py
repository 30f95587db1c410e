"""ids -> positional indices, once, at the edge; validation on the way."""
from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ..errors import NetworkError, ThalwegWarning, format_ids
from . import validate
from .links import Links, resolve_links, splits_from_rows
from .model import RiverNetwork, Source
from .order import accumulate

__all__ = ["from_arrays"]


def _as_ids(values: Any, role: str, source: Source) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind == "f":
        finite = np.isfinite(arr)
        if role == "downstream":
            arr = np.where(finite, arr, -1)  # empty downstream cell = outlet
        elif not finite.all():
            raise NetworkError(f"{int((~finite).sum()):,} reach ids are empty.", path=source.path,
                               layer=source.layer, field=source.field(role),
                               hint="Every row needs an id; remove rows without one.")
        if np.any(arr != np.round(arr)):
            raise NetworkError("ids must be whole numbers.", path=source.path, layer=source.layer,
                               field=source.field(role), hint="Choose an integer id field.")
    if arr.dtype.kind not in "iuf":
        try:
            arr = arr.astype(np.int64)
        except (TypeError, ValueError):
            raise NetworkError(f"{role} ids must be integers (found {arr.dtype}).", path=source.path,
                               layer=source.layer, field=source.field(role),
                               hint="Choose integer id fields, or map them with --id-field/--downstream-field.",
                               ) from None
    return arr.astype(np.int64)


def _positions(ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Position of each ``wanted`` id among the (unique, non-negative) ``ids``, -1 where it is not one: an
    array over the id range when the ids are dense (:func:`validate.dense_span`), else a sorted search."""
    n = ids.size
    span = validate.dense_span(ids)
    if span is not None:
        lo = ids.min()
        slot = np.full(span, -1, dtype=np.int64)
        slot[ids - lo] = np.arange(n)
        q = wanted - lo  # no wrap into [0, span): ids >= 0, and any int64 id minus lo stays out of range or exact
        inside = (q >= 0) & (q < span)
        return np.where(inside, slot[np.where(inside, q, 0)], -1)
    sort = np.argsort(ids, kind="stable")
    where = np.clip(np.searchsorted(ids[sort], wanted), 0, n - 1)
    return np.where(ids[sort][where] == wanted, sort[where], -1).astype(np.int64)


def _optional(values: Any, n: int, name: str) -> np.ndarray | None:
    if values is None:
        return None
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (n,):
        raise AssertionError(f"{name} has shape {arr.shape}, expected ({n},)")
    return arr


def from_arrays(
    ids: Any,
    downstream_ids: Any,
    length: Any = None,
    area: Any = None,
    *,
    slope: Any = None,
    catchment_area: Any = None,
    attrs: Mapping[str, Any] | None = None,
    geometry: Any = None,
    crs: Any = None,
    outlet_codes: Iterable[int] = (-1, 0),
    source: Source | None = None,
    check_area: validate.Policy = "error",
    accumulate_catchments: bool = False,
    links: Links | None = None,
    bifurcations: str | None = None,
) -> RiverNetwork:
    """Build and validate a :class:`RiverNetwork` from external ids.

    Parameters
    ----------
    ids, downstream_ids : array [N] of integer ids; a downstream id that is negative, empty or absent from
        ``ids`` marks an outlet (absent ids with a warning naming how many), and so does one in
        ``outlet_codes`` unless it is a reach's id. Reach ids must be >= 0 (negative values are outlet codes:
        a reach -1 would drain to "-1"). Id 0 may be a reach: links to 0 then go to it; a reach that names
        itself as downstream with an outlet code (``0 -> 0``) is refused with that explanation.
    length : array [N], m (None: unknown, NaN; schemes and rules that need lengths then say so).
    area : array [N], upstream drainage area, m^2 (None: unknown, NaN).
    accumulate_catchments : when ``area`` is None, accumulate ``catchment_area`` downstream into it.
    slope, catchment_area (m^2), attrs, geometry, crs : optional per-reach data carried along.
    source : file and field names used in error messages.
    check_area : what to do when drainage area decreases downstream: 'error', 'warn' or 'ignore'.
    links : optional :class:`thalweg.network.links.Links` (from_id -> to_id, fraction, main): the downstream
        links of the reaches it lists, overriding ``downstream_ids`` for them; several links make a split.
    bifurcations : 'split' (route every branch), 'main' (keep the main path) or None (split when the links
        give fractions, else main; a warning says what was done). See :mod:`thalweg.network.links`.

    Raises
    ------
    DuplicateIdError, CycleError, NetworkError
    """
    source = source or Source()
    ids = _as_ids(ids, "id", source)
    n = ids.size
    if n == 0:
        raise NetworkError("the network has no reaches.", path=source.path, layer=source.layer,
                           hint="Check the layer and any filter; it must hold river lines.")
    ds_ids = _as_ids(downstream_ids, "downstream", source)
    if ds_ids.shape != ids.shape:
        raise AssertionError(f"downstream ids {ds_ids.shape} and ids {ids.shape} differ in shape")
    validate.check_unique_ids(ids, source)
    negative = ids < 0
    if negative.any():
        raise NetworkError(f"{int(negative.sum()):,} reach ids are negative ({format_ids(ids[negative])}); negative "
                           f"downstream ids mark outlets, so a reach cannot have one.", path=source.path,
                           layer=source.layer, field=source.field("id"), ids=ids[negative].tolist(),
                           hint="Renumber those reaches with ids >= 0 (and the downstream ids that point to them).")
    codes = np.fromiter(outlet_codes, dtype=np.int64)
    split_rows = None
    if links is not None:
        given_area = None if area is None else np.asarray(area, dtype=np.float64)
        ds_ids, split_rows = resolve_links(ids, ds_ids, links, area=given_area, bifurcations=bifurcations,
                                           source=source, outlet_codes=codes)
    self_coded = (ds_ids == ids) & np.isin(ids, codes)
    if self_coded.any():
        bad = ids[self_coded]
        raise NetworkError(f"reach {format_ids(bad)} has itself as downstream id, and {bad[0]} is also an outlet code: "
                           f"it is ambiguous whether it is an outlet or a one-reach cycle.", path=source.path,
                           layer=source.layer, field=source.field("downstream"), ids=bad.tolist(),
                           hint=f"Give outlets the downstream id -1, or renumber reach {bad[0]}.")

    downstream = _positions(ids, ds_ids)
    found = downstream >= 0
    is_code = np.isin(ds_ids, codes) | (ds_ids < 0)
    dangling = ~found & ~is_code
    if dangling.any():
        missing = np.unique(ds_ids[dangling])
        warnings.warn(
            f"{source.path or 'network'}: {missing.size:,} values in {source.field('downstream') or 'downstream id'} "
            f"are not reach ids ({format_ids(missing)}); treating {int(dangling.sum()):,} reaches as outlets, "
            f"as expected for a clipped extract.", ThalwegWarning, stacklevel=2)

    levels = validate.check_acyclic(ids, downstream, source)
    splits = None
    if split_rows is not None:
        split_rows = validate.check_splits(ids, downstream, split_rows, source, where=links.where)
        splits = splits_from_rows(n, split_rows)
    length = _optional(length, n, "length")
    if length is None:
        length = np.full(n, np.nan)
    else:
        validate.check_lengths(ids, length, source)
    area = _optional(area, n, "area")
    catchment_area = _optional(catchment_area, n, "catchment_area")
    if area is None and accumulate_catchments and catchment_area is not None:
        area = accumulate(downstream, np.nan_to_num(catchment_area, nan=0.0), levels)
        source = dataclasses.replace(source, fields={**source.fields, "area": "accumulated catchment_area"})
    if area is None:
        area = np.full(n, np.nan)
    # a split reach's branches share its area (NHDPlus minor paths carry little): only tree links are checked
    tree_down = downstream if splits is None else np.where(np.isin(np.arange(n), splits.reach), -1, downstream)
    validate.check_areas(ids, tree_down, area, source, policy=check_area)

    network = RiverNetwork(
        ids=ids, downstream=downstream, length=length, area=area,
        slope=_optional(slope, n, "slope"), catchment_area=catchment_area,
        attrs={k: np.asarray(v) for k, v in (attrs or {}).items()}, geometry=geometry, crs=crs, source=source,
        splits=splits)
    levels.setflags(write=False)
    object.__setattr__(network, "levels", levels)  # already computed by the cycle check
    return network
