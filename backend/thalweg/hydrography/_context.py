"""What a schema hook sees while a file is read (:class:`Context`) and what ``resolve`` returns (:class:`Resolved`)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..errors import SchemaError, opt
from ..network import Links, Source
from ._geometry import CrsFacts
from ._schema import Schema
from .vector import Table, list_layers, read_table

__all__ = ["Context", "Resolved", "default_resolve", "require", "field_option", "FIELD_KEYWORDS"]

# roles that read_network takes as keywords of their own (the CLI has a flag for each)
FIELD_KEYWORDS = ("id", "downstream", "length", "area")


def field_option(role: str) -> str:
    """The option that maps a field to ``role``, as an opt() placeholder: ``id_field='FIELD'`` for the roles with
    a keyword of their own, else ``fields={'slope': 'FIELD'}``."""
    if role in FIELD_KEYWORDS:
        return opt(f"read_network.{role}_field", "FIELD")
    return opt("read_network.fields", "{'%s': 'FIELD'}" % role)


@dataclasses.dataclass
class Context:
    """The table being read and everything known about it so far.

    Attributes
    ----------
    table : attribute table (after the schema's ``prepare``).
    fields : role -> field name.
    source : path, layer, schema and fields, for messages.
    lines : prepared LineStrings per table row, or None.
    facts : CRS facts of ``lines``.
    area : upstream drainage area per table row, m^2, or None (helps name reversed lines).
    tolerance : end-point snapping tolerance in layer units, or None for the default.
    """

    path: Path
    layer: str | None
    schema: Schema
    table: Table
    fields: dict[str, str]
    source: Source
    lines: np.ndarray | None = None
    facts: CrsFacts | None = None
    area: np.ndarray | None = None
    tolerance: float | None = None

    def column(self, role: str) -> np.ndarray:
        return self.table.columns[self.fields[role]]

    def read_layer(self, *names: str) -> Table | None:
        """The first of ``names`` that is a layer of the same file (without geometry), or None."""
        if self.table.path is None:  # a data frame: no file around it
            return None
        layers = list_layers(self.path)  # [] for single-table formats
        lowered = {name.lower(): name for name in layers}
        for name in names:
            if name.lower() in lowered:
                return read_table(self.path, lowered[name.lower()], geometry=False)
        return None


@dataclasses.dataclass
class Resolved:
    """Topology decided by a schema: reach ids, downstream ids, and which table rows are reaches.

    Attributes
    ----------
    ids, downstream_ids : array [N] (integers, or values ``from_arrays`` turns into integers).
    rows : table rows of the N reaches, in order (None: every row, in table order).
    fields : role -> field name updates for ``Source`` (e.g. 'downstream': 'PlusFlow.TOCOMID').
    outlet_codes : replaces the schema's outlet codes when not None.
    links : downstream links of the reaches that split (every branch, the main one marked; fractions where the
        data has them), or None; ``read_network(bifurcations=...)`` decides whether they are routed.
    """

    ids: np.ndarray
    downstream_ids: np.ndarray
    rows: np.ndarray | None = None
    fields: dict[str, str] = dataclasses.field(default_factory=dict)
    outlet_codes: tuple[int, ...] | None = None
    links: Links | None = None


def require(ctx: Context, *roles: str) -> None:
    """SchemaError naming the missing roles and the available fields."""
    missing = [role for role in roles if role not in ctx.fields]
    if not missing:
        return
    wanted = {role: "/".join(ctx.schema.fields.get(role, ())) or "?" for role in missing}
    shown = ", ".join(ctx.table.names[:30]) + (f" and {len(ctx.table.names) - 30} more"
                                               if len(ctx.table.names) > 30 else "")
    raise SchemaError(f"no field for {', '.join(f'the {r} ({wanted[r]})' for r in missing)}; the fields are "
                      f"{shown or 'none'}.", path=ctx.path, layer=ctx.layer, field=next(iter(wanted.values())),
                      hint=f"Name it with {field_option(missing[0])}, or choose the schema with "
                           f"{opt('read_network.schema')} or the layer with {opt('read_network.layer')}.")


def default_resolve(ctx: Context) -> Resolved:
    """One row per reach with its downstream id in a field."""
    require(ctx, "id", "downstream")
    return Resolved(ctx.column("id"), ctx.column("downstream"))
