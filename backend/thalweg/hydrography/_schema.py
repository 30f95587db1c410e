"""Schemas of vector hydrography and their detection (xarray-engine style, DATA.md section 1).

A :class:`Schema` names the fields that play each *role* (``id``, ``downstream``, ``length``, ``area``,
``catchment_area``, ``slope``, ``muskingum_k``, ``muskingum_x``, ``stream_order``, ``gauge_id`` and
schema-private roles), the unit of each quantity field, and the outlet codes. ``score(columns)`` says
how well a table's columns fit; detection asks every registered schema and refuses to guess between
equal scores. Schemas with their own file layout or topology add hooks (``open``, ``prepare``,
``resolve``).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..errors import SchemaError, opt

__all__ = ["Schema", "SchemaMatch", "SCHEMAS", "register_schema", "find_field", "match_columns",
           "CORE_ROLES", "STANDARD_ATTRS"]

CORE_ROLES = ("id", "downstream", "length", "area", "slope", "catchment_area")
# roles mapped to standard RiverNetwork.attrs names (the attr takes the role's name)
STANDARD_ATTRS = ("muskingum_k", "muskingum_x", "stream_order", "gauge_id")
QUANTITY_KIND = {"length": "length", "area": "area", "catchment_area": "area"}


def find_field(columns: Iterable[str], name: str) -> str | None:
    """The column called ``name``: exact spelling first, then ignoring case (nhdplusTools writes lower case)."""
    columns = list(columns)
    if name in columns:
        return name
    lowered = name.lower()
    for column in columns:
        if column.lower() == lowered:
            return column
    return None


@dataclasses.dataclass(frozen=True)
class Schema:
    """One hydrography dataset's layout.

    Attributes
    ----------
    name : registry key ('hydrorivers').
    title : the dataset's name for people ('HydroRIVERS v1.0').
    fields : role -> candidate field names, best first (matched exactly, then ignoring case).
    units : field name -> unit of a quantity field ('LENGTH_KM': 'km'); fields absent here get their unit
        guessed by :mod:`thalweg.units` with a warning.
    outlet_codes : downstream values that mean "no downstream reach".
    required : roles that must be found for the schema to match.
    signature : further field names typical of the dataset; they raise the score.
    any_of : if given, at least one of these field names must be present (NHDPlus: its typical fields).
    layers : preferred layer names in multi-layer files ('flowpaths').
    file_names : file names recognised from the name alone ('rapid_connect.csv').
    open : ``open(path, layer) -> Table`` for datasets with their own file layout (RAPID CSVs).
    prepare : ``prepare(table, ctx) -> Table`` run after reading (join side layers, sum HRU areas).
    resolve : ``resolve(ctx) -> Resolved`` for topology that is not one downstream id per row
        (NHDPlus PlusFlow/Hydroseq, hydrofabric nexus ids, plain lines).
    """

    name: str
    title: str
    fields: Mapping[str, tuple[str, ...]]
    units: Mapping[str, str] = dataclasses.field(default_factory=dict)
    outlet_codes: tuple[int, ...] = (-1, 0)
    required: tuple[str, ...] = ("id", "downstream")
    signature: tuple[str, ...] = ()
    any_of: tuple[str, ...] = ()
    layers: tuple[str, ...] = ()
    file_names: tuple[str, ...] = ()
    open: Callable[..., Any] | None = None
    prepare: Callable[..., Any] | None = None
    resolve: Callable[..., Any] | None = None
    description: str = ""
    url: str = ""

    def find(self, columns: Iterable[str]) -> dict[str, str]:
        """role -> the column that plays it, for every role found in ``columns``."""
        columns = list(columns)
        found = {}
        for role, candidates in self.fields.items():
            for candidate in candidates:
                column = find_field(columns, candidate)
                if column is not None:
                    found[role] = column
                    break
        return found

    def score(self, columns: Iterable[str]) -> int:
        """Number of this schema's fields present; 0 when a required role or every ``any_of`` field is missing."""
        columns = list(columns)
        found = self.find(columns)
        if any(role not in found for role in self.required):
            return 0
        if self.any_of and not any(find_field(columns, name) for name in self.any_of):
            return 0
        extra = {find_field(columns, name) for name in self.signature + self.any_of} - {None} - set(found.values())
        return len(found) + len(extra)

    def unit(self, field: str) -> str | None:
        """Unit of a quantity field of this schema, None if the schema does not know it."""
        lowered = {k.lower(): v for k, v in self.units.items()}
        return lowered.get(field.lower())

    def matched_names(self, columns: Iterable[str]) -> list[str]:
        columns = list(columns)
        found = self.find(columns)
        names = list(found.values())
        for name in self.signature + self.any_of:
            column = find_field(columns, name)
            if column and column not in names:
                names.append(column)
        return names


@dataclasses.dataclass(frozen=True)
class SchemaMatch:
    """The outcome of detection: the schema, the role -> field map, and why it was chosen."""

    name: str
    fields: dict[str, str]
    reasons: tuple[str, ...]
    layer: str | None = None
    score: int = 0

    @property
    def schema(self) -> Schema:
        return SCHEMAS[self.name]


SCHEMAS: dict[str, Schema] = {}


def register_schema(schema: Schema, *, replace: bool = False) -> Schema:
    """Add a schema to the registry (detection asks every registered schema)."""
    if schema.name in SCHEMAS and not replace:
        raise ValueError(f"a schema named '{schema.name}' is already registered; pass replace=True to replace it")
    SCHEMAS[schema.name] = schema
    return schema


def get_schema(name: str, *, path=None, layer=None) -> Schema:
    if name not in SCHEMAS:
        raise SchemaError(f"unknown schema '{name}'.", path=path, layer=layer,
                          hint=f"Use one of: {', '.join(sorted(SCHEMAS))}.")
    return SCHEMAS[name]


def _candidates(columns: list[str]) -> list[tuple[int, Schema]]:
    scored = [(schema.score(columns), schema) for schema in SCHEMAS.values()]
    return sorted([(s, schema) for s, schema in scored if s > 0], key=lambda item: -item[0])


def _listing(items: list[tuple[Schema, list[str]]]) -> str:
    parts = [f"'{schema.name}' ({', '.join(names)})" for schema, names in items]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _hint(names: list[str]) -> str:
    choice = " or ".join(opt("read_network.schema", n) for n in names)
    return (f"Pass {choice}, or name the fields with {opt('read_network.id_field', 'FIELD')} and "
            f"{opt('read_network.downstream_field', 'FIELD')}.")


def match_columns(columns: Iterable[str], *, path=None, layer=None, quiet: bool = False) -> SchemaMatch | None:
    """Detect the schema of a table from its column names.

    Returns None when nothing matches and ``quiet``; raises :class:`SchemaError` when several schemas
    match equally well (naming them and their fields) or, unless ``quiet``, when none matches
    (naming the schemas that matched in part and the available fields).
    """
    columns = list(columns)
    ranked = _candidates(columns)
    if ranked and (len(ranked) == 1 or ranked[0][0] > ranked[1][0]):
        score, schema = ranked[0]
        names = schema.matched_names(columns)
        found = schema.find(columns)
        return SchemaMatch(schema.name, found, tuple(f"{f} ({r})" for r, f in found.items()) +
                           tuple(f"{n} (typical)" for n in names if n not in found.values()), layer, score)
    if ranked:
        tied = [schema for score, schema in ranked if score == ranked[0][0]]
        items = [(schema, schema.matched_names(columns)) for schema in tied]
        raise SchemaError(f"cannot tell the schema: it matches {_listing(items)} equally well.", path=path,
                          layer=layer, hint=_hint([s.name for s in tied]))
    if quiet:
        return None
    partial = []
    for schema in SCHEMAS.values():
        names = schema.matched_names(columns)
        if names:
            partial.append((schema, names))
    shown = ", ".join(columns[:25]) + (f" and {len(columns) - 25} more" if len(columns) > 25 else "")
    what = f"; it matches {_listing(partial)} only in part" if partial else ""
    raise SchemaError(f"no known hydrography schema fits the fields ({shown or 'none'}){what}.", path=path,
                      layer=layer, hint=_hint([s.name for s, _ in partial[:2]] or ["hydrorivers"]) +
                      f" Known schemas: {', '.join(sorted(SCHEMAS))}.")
