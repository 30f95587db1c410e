"""Hydrography readers: any vector river network file -> :class:`~thalweg.network.RiverNetwork` (SI units).

``read_network(path)`` detects the schema (DATA.md section 1) from the fields, as xarray guesses an
engine; ``schema=`` or ``fields=`` override the guess. Layers without id fields get their topology
from the line geometry. See :func:`read_network` for every option; it also takes a GeoDataFrame, and
``RiverNetwork.to_geodataframe()`` (:func:`.frames.to_geodataframe`) gives one back. Catchment polygons are
read by :func:`read_catchments` and measured by :func:`polygon_areas`, for networks and gridded runoff alike.
"""
from __future__ import annotations

from pathlib import Path

from ._choose import choose
from ._context import Context, Resolved
from ._read import read_network
from ._schema import SCHEMAS, Schema, SchemaMatch, register_schema
from . import schemas as _schemas  # noqa: F401  (registers the built-in schemas)
from .catchments import read_catchments, polygon_areas
from .vector import check_path

__all__ = ["read_network", "detect_schema", "SCHEMAS", "Schema", "SchemaMatch", "register_schema", "Context",
           "Resolved", "read_catchments", "polygon_areas"]


def detect_schema(path: str | Path, layer: str | None = None) -> SchemaMatch:
    """The schema of a file, from its field names (no features are read).

    Returns
    -------
    SchemaMatch with ``.name``, ``.fields`` (role -> field), ``.reasons`` (the fields that decided) and
    ``.layer`` (the layer chosen in a multi-layer file).

    Raises
    ------
    SchemaError when no schema fits or several fit equally well (naming them and their fields).
    """
    choice = choose(check_path(path), schema=None, fields={}, layer=layer)
    return choice.match
