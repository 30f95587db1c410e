"""Plain lines: no downstream field; a line drains into the line whose first vertex is on its last vertex
(see :mod:`..topology`). Ids come from an ``id`` field named in ``fields=`` or are the row numbers + 1."""
from __future__ import annotations

import numpy as np

from ...errors import GeometryError, opt
from ...network.validate import check_unique_ids
from .._context import Context, Resolved
from .._geometry import default_tolerance
from .._schema import Schema
from ..catchments import integer_part
from ..topology import line_links


def resolve(ctx: Context) -> Resolved:
    import dataclasses

    if ctx.lines is None:
        raise GeometryError("the layer has neither a downstream id field nor line geometries to derive one.",
                            path=ctx.path, layer=ctx.layer,
                            hint=f"Give river lines, or name the fields with "
                                 f"{opt('read_network.id_field', 'FIELD')} and "
                                 f"{opt('read_network.downstream_field', 'FIELD')}.")
    id_field = ctx.fields.get("id")
    ids = integer_part(ctx.column("id")) if id_field else np.arange(1, ctx.table.n + 1, dtype=np.int64)
    tolerance = ctx.tolerance if ctx.tolerance is not None else default_tolerance(ctx.facts)
    label = f"geometry (end meets start within {tolerance:g})"
    fields = {"id": id_field or "row number", "downstream": label}
    source = dataclasses.replace(ctx.source, fields={**ctx.source.fields, **fields})
    check_unique_ids(ids, source)
    downstream, links = line_links(ctx.lines, ids, tolerance=tolerance, area=ctx.area, source=source)
    return Resolved(ids, downstream, fields=fields, outlet_codes=(-1,), links=links)


SCHEMA = Schema(
    name="lines",
    title="plain river lines",
    fields={"id": ()},
    required=("never matched by fields",),
    resolve=resolve,
)
