"""RAPID inputs: ``rapid_connect.csv`` (no header; column 1 the reach id, column 2 the downstream id, 0 or -1
at outlets, then the upstream count and ids), with ``k.csv`` [s] and ``x.csv`` beside it, one value per
line in the order of rapid_connect.csv (as RAPID reads them), and optionally ``riv_bas_id.csv``, the
reaches to route, in routing order."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import InputError, NetworkError, SchemaError, format_ids
from .._schema import Schema
from ..vector import Table, _fail

CONNECT = "rapid_connect.csv"


def _headerless(path: Path):
    import pyarrow.csv as pacsv

    try:
        return pacsv.read_csv(path, read_options=pacsv.ReadOptions(autogenerate_column_names=True))
    except Exception as exc:
        raise _fail(path, exc) from None


def _one_column(path: Path, n: int, what: str) -> np.ndarray:
    values = _headerless(path).column(0).to_numpy().astype(np.float64)
    if values.size != n:
        raise SchemaError(f"{path.name} has {values.size:,} values but {CONNECT} has {n:,} reaches.", path=path,
                          field=path.name, hint=f"Give one {what} per line of {CONNECT}, in the same order.")
    return values


def open_rapid(path: Path, layer: str | None = None) -> Table:
    connect = path / CONNECT if path.is_dir() else path
    if not connect.exists():
        raise InputError(f"there is no {CONNECT} here.", path=connect, hint="Point to the RAPID input folder.")
    folder = connect.parent
    table = _headerless(connect)
    if table.num_columns < 2:
        raise SchemaError(f"{CONNECT} needs at least two columns (reach id, downstream id).", path=connect,
                          hint="Check the delimiter (comma) and that the file has no header line.")
    columns = {"column 1": table.column(0).to_numpy().astype(np.int64),
               "column 2": np.nan_to_num(table.column(1).to_numpy().astype(float), nan=0).astype(np.int64)}
    n = columns["column 1"].size
    for name, what in (("k.csv", "Muskingum k in seconds"), ("x.csv", "Muskingum x")):
        if (folder / name).exists():
            columns[name] = _one_column(folder / name, n, what)
    out = Table(columns=columns, path=connect, n_rows=n)
    bas = folder / "riv_bas_id.csv"
    if bas.exists():
        wanted = _headerless(bas).column(0).to_numpy().astype(np.int64)
        ids = columns["column 1"]
        sorter = np.argsort(ids, kind="stable")
        where = np.clip(np.searchsorted(ids, wanted, sorter=sorter), 0, n - 1)
        found = ids[sorter[where]] == wanted
        if not found.all():
            raise NetworkError(f"{int((~found).sum()):,} ids of riv_bas_id.csv are not in {CONNECT}: "
                               f"{format_ids(wanted[~found])}.", path=bas, field="riv_bas_id.csv",
                               ids=wanted[~found].tolist(), hint=f"riv_bas_id.csv must list reaches of {CONNECT}.")
        out = out.take(sorter[where])
    return out


SCHEMA = Schema(
    name="rapid",
    title="RAPID inputs (rapid_connect.csv, k.csv, x.csv)",
    fields={
        "id": ("column 1",),
        "downstream": ("column 2",),
        "muskingum_k": ("k.csv",),
        "muskingum_x": ("x.csv",),
    },
    units={"k.csv": "s"},
    outlet_codes=(0, -1),
    file_names=(CONNECT,),
    open=open_rapid,
    url="https://github.com/c-h-david/rapid",
)
