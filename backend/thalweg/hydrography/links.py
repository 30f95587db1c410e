"""The ``--links FILE`` table: from_id, to_id[, fraction] rows (CSV or parquet) giving reaches' downstream links.

A reach the table lists takes its downstream links from it, overriding the layer's downstream field and any
links the layer's schema found (NHDPlus PlusFlow, lines that split); several rows for one reach make it split
(see :mod:`thalweg.network.links`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import SchemaError
from ..network import Links
from ._schema import find_field
from .vector import check_path, read_table

__all__ = ["read_links", "merge_links"]


def read_links(path: str | Path) -> Links:
    """The link table at ``path`` (columns ``from_id``, ``to_id`` and optionally ``fraction``, any case)."""
    path = check_path(path, "link table")
    table = read_table(path, geometry=False)
    f_from, f_to = find_field(table.names, "from_id"), find_field(table.names, "to_id")
    f_frac = find_field(table.names, "fraction")
    if f_from is None or f_to is None:
        raise SchemaError(f"the link table has no {'from_id' if f_from is None else 'to_id'} column; its columns are "
                          f"{', '.join(table.names) or 'none'}.", path=path,
                          field="from_id" if f_from is None else "to_id",
                          hint="Give a CSV or parquet table with columns from_id, to_id and (optionally) fraction, "
                               "one row per downstream link.")
    cols = {}
    for name, field in (("from_id", f_from), ("to_id", f_to)):
        values = np.asarray(table.columns[field], dtype=float)
        if not np.isfinite(values).all() or np.any(values != np.round(values)):
            bad = int((~np.isfinite(values) | (values != np.round(values))).sum())
            raise SchemaError(f"{bad:,} values of {field} are empty or not whole numbers.", path=path, field=field,
                              hint="Every row needs integer reach ids in from_id and to_id.")
        cols[name] = values.astype(np.int64)
    fraction = None if f_frac is None else np.asarray(table.columns[f_frac], dtype=float)
    return Links(cols["from_id"], cols["to_id"], fraction, origin="links", where=str(path))


def merge_links(found: Links | None, given: Links | None) -> Links | None:
    """The schema's links with the reaches ``given`` lists replaced by its rows."""
    if given is None or found is None:
        return given if found is None else found
    drop = np.isin(found.from_ids, given.from_ids)
    n_found = int((~drop).sum())

    def join(a, b, fill):
        if a is None and b is None:
            return None
        a = np.full(found.from_ids.size, fill) if a is None else np.asarray(a)
        b = np.full(given.from_ids.size, fill) if b is None else np.asarray(b)
        return np.r_[a[~drop], b]

    main = join(found.main, given.main, False)
    if main is not None and found.main is not None and given.main is None:
        main[n_found:] = False
    given_rows = np.arange(given.from_ids.size) if given.row is None else np.asarray(given.row, np.int64)
    return Links(np.r_[found.from_ids[~drop], given.from_ids], np.r_[found.to_ids[~drop], given.to_ids],
                 join(found.fraction, given.fraction, np.nan), main=main,
                 origin="links" if n_found == 0 else "mixed", where=given.where,
                 row=np.r_[np.full(n_found, -1, np.int64), given_rows])  # messages name rows of the given table
