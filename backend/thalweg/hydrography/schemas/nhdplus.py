"""NHDPlusV2 flowlines (and nhdplusTools' lower-case tables): COMID, with the downstream COMID from

1. a ``TOCOMID`` field (nhdplusTools ``get_tocomid``), else
2. a PlusFlow table (FROMCOMID -> TOCOMID, several rows at divergences): a layer ``PlusFlow`` of the same
   file, or a file ``PlusFlow.dbf/.csv/.parquet`` beside it; the minor paths (``Divergence`` == 2 on the
   receiving flowline) are the minor links of splits (routed with ``bifurcations='split'``; fractions from a
   ``DivFrac`` field of the table or of the receiving flowline where present), else
3. ``DnHydroseq`` -> ``Hydroseq`` (the main path; ``DnMinorHyd`` links are the minor links of splits).
"""
from __future__ import annotations

import warnings

import numpy as np

from ...errors import SchemaError, ThalwegWarning, format_ids, opt
from ...network import Links
from ...network.validate import resolve_bifurcations
from .._context import Context, Resolved, require
from .._schema import Schema, find_field
from ..vector import Table, read_table

_PLUSFLOW_SUFFIXES = (".dbf", ".csv", ".parquet", ".gpkg")


def _plusflow(ctx: Context) -> tuple[Table, str] | None:
    table = ctx.read_layer("PlusFlow", "plusflow", "NHDPlusFlow")
    if table is not None:
        return table, f"layer {table.layer}"
    if ctx.table.path is None:  # a data frame: no file around it
        return None
    folder = ctx.path.parent
    for candidate in sorted(folder.iterdir()):
        if candidate.stem.lower() == "plusflow" and candidate.suffix.lower() in _PLUSFLOW_SUFFIXES:
            return read_table(candidate, geometry=False), candidate.name
    return None


def _divergence(ctx: Context) -> np.ndarray | None:
    field = ctx.fields.get("divergence")
    return None if field is None else np.nan_to_num(np.asarray(ctx.table.columns[field], float)).astype(np.int64)


_FRACTION_FIELDS = ("DivFrac", "Fraction", "SplitFrac", "split_fraction")


def _receiving(comid: np.ndarray, to_ids: np.ndarray, values: np.ndarray | None) -> np.ndarray | None:
    """``values`` (one per flowline) of each link's receiving flowline (NaN where it is not in the layer)."""
    if values is None:
        return None
    sorter = np.argsort(comid, kind="stable")
    where = np.clip(np.searchsorted(comid, to_ids, sorter=sorter), 0, comid.size - 1)
    found = comid[sorter[where]] == to_ids
    return np.where(found, np.asarray(values, float)[sorter[where]], np.nan)


def _from_links(ctx: Context, comid: np.ndarray, from_ids: np.ndarray, to_ids: np.ndarray,
                fraction: np.ndarray | None = None, where: str | None = None):
    """One main downstream COMID per flowline from a link table, and the links of the flowlines that split
    (main path = receiving flowline's Divergence != 2; fractions from the table, else the receiving flowline's
    flow-split field, where present)."""
    divergence = _divergence(ctx)
    received = _receiving(comid, to_ids, divergence)
    main = np.ones(to_ids.size, dtype=bool) if received is None else ~(received == 2)
    if fraction is None and "split_fraction" in ctx.fields:
        fraction = _receiving(comid, to_ids, np.asarray(ctx.column("split_fraction"), float))
    count = np.unique(from_ids, return_counts=True)
    multi = np.isin(from_ids, count[0][count[1] > 1])
    links = None
    if multi.any():
        links = Links(from_ids[multi], to_ids[multi], None if fraction is None else np.asarray(fraction)[multi],
                      main=main[multi], origin="field", where=where or ctx.source.path)
    from_ids, to_ids = resolve_bifurcations(from_ids, to_ids, main=main, source=ctx.source, quiet=True)
    downstream = np.zeros(comid.size, dtype=np.int64)
    sorter = np.argsort(comid, kind="stable")
    at = np.clip(np.searchsorted(comid, from_ids, sorter=sorter), 0, comid.size - 1)
    found = comid[sorter[at]] == from_ids
    downstream[sorter[at[found]]] = to_ids[found]
    return downstream, links


def resolve(ctx: Context) -> Resolved:
    require(ctx, "id")
    comid = np.asarray(ctx.column("id")).astype(np.int64)
    if "downstream" in ctx.fields:
        return Resolved(comid, ctx.column("downstream"))
    plusflow = _plusflow(ctx)
    if plusflow is not None:
        table, where = plusflow
        f_from, f_to = find_field(table.names, "FROMCOMID"), find_field(table.names, "TOCOMID")
        if f_from is None or f_to is None:
            raise SchemaError(f"the PlusFlow table ({where}) has no FROMCOMID/TOCOMID fields; its fields are "
                              f"{', '.join(table.names)}.", path=table.path, field="TOCOMID",
                              hint="Give the NHDPlusV2 PlusFlow table, or a TOCOMID field on the flowlines.")
        from_ids = np.nan_to_num(np.asarray(table.columns[f_from], float)).astype(np.int64)
        to_ids = np.nan_to_num(np.asarray(table.columns[f_to], float)).astype(np.int64)
        keep = (from_ids != 0) & np.isin(from_ids, comid)
        f_frac = next((find_field(table.names, name) for name in _FRACTION_FIELDS
                       if find_field(table.names, name)), None)
        fraction = None if f_frac is None else np.asarray(table.columns[f_frac], float)[keep]
        downstream, links = _from_links(ctx, comid, from_ids[keep], to_ids[keep], fraction,
                                        where=f"{ctx.path.name} ({where})")
        return Resolved(comid, downstream, fields={"downstream": f"{where}: TOCOMID"}, links=links)
    if "hydroseq" in ctx.fields and "dn_hydroseq" in ctx.fields:
        hydroseq = np.nan_to_num(np.asarray(ctx.column("hydroseq"), float)).astype(np.int64)
        dn = np.nan_to_num(np.asarray(ctx.column("dn_hydroseq"), float)).astype(np.int64)
        sorter = np.argsort(hydroseq, kind="stable")
        where = np.clip(np.searchsorted(hydroseq, dn, sorter=sorter), 0, hydroseq.size - 1)
        found = hydroseq[sorter[where]] == dn
        lost = ~found & (dn != 0)
        if lost.any():
            warnings.warn(f"{ctx.path.name}: {int(lost.sum()):,} flowlines have a DnHydroseq that is no Hydroseq of "
                          f"this layer ({format_ids(comid[lost])}); they are outlets, as expected for a clipped "
                          f"extract.", ThalwegWarning, stacklevel=4)
        from_ids, to_ids, main = comid[found], comid[sorter[where[found]]], np.ones(int(found.sum()), bool)
        if "dn_minor_hydroseq" in ctx.fields:
            minor = np.nan_to_num(np.asarray(ctx.column("dn_minor_hydroseq"), float)).astype(np.int64)
            w2 = np.clip(np.searchsorted(hydroseq, minor, sorter=sorter), 0, hydroseq.size - 1)
            f2 = (hydroseq[sorter[w2]] == minor) & (minor != 0)
            from_ids = np.r_[from_ids, comid[f2]]
            to_ids = np.r_[to_ids, comid[sorter[w2[f2]]]]
            main = np.r_[main, np.zeros(int(f2.sum()), bool)]
        values, counts = np.unique(from_ids, return_counts=True)
        multi = np.isin(from_ids, values[counts > 1])
        links = None
        if multi.any():  # DnMinorHyd names the minor path itself
            links = Links(from_ids[multi], to_ids[multi], main=main[multi], origin="field", where=ctx.path.name)
        from_ids, to_ids = resolve_bifurcations(from_ids, to_ids, main=main, source=ctx.source, quiet=True)
        downstream = np.zeros(comid.size, dtype=np.int64)
        pos = np.searchsorted(comid, from_ids, sorter=np.argsort(comid, kind="stable"))
        downstream[np.argsort(comid, kind="stable")[pos]] = to_ids
        return Resolved(comid, downstream, fields={"downstream": f"{ctx.fields['dn_hydroseq']} -> "
                                                                 f"{ctx.fields['hydroseq']}"}, links=links)
    raise SchemaError("NHDPlus flowlines need a TOCOMID field, a PlusFlow table (a layer of the file or "
                      "PlusFlow.dbf beside it), or Hydroseq and DnHydroseq fields to know the downstream reach.",
                      path=ctx.path, layer=ctx.layer, field="TOCOMID",
                      hint=f"Add the NHDPlusV2 PlusFlow table, or name the field with "
                           f"{opt('read_network.downstream_field', 'FIELD')}.")


SCHEMA = Schema(
    name="nhdplus",
    title="NHDPlusV2 flowlines",
    fields={
        "id": ("COMID",),
        "downstream": ("TOCOMID",),
        "length": ("LENGTHKM",),
        "area": ("TotDASqKM",),
        "catchment_area": ("AreaSqKM",),
        "slope": ("SLOPE",),
        "stream_order": ("StreamOrde",),
        "hydroseq": ("Hydroseq",),
        "dn_hydroseq": ("DnHydroseq",),
        "dn_minor_hydroseq": ("DnMinorHyd",),
        "divergence": ("Divergence",),
        "split_fraction": ("DivFrac",),
    },
    units={"LENGTHKM": "km", "TotDASqKM": "km2", "AreaSqKM": "km2"},
    outlet_codes=(0,),
    required=("id",),
    any_of=("TOCOMID", "Hydroseq", "DnHydroseq", "TotDASqKM", "Divergence", "StreamOrde", "FTYPE", "FCODE",
            "REACHCODE", "LevelPathI", "TerminalPa", "StartFlag"),
    layers=("NHDFlowline", "NHDFlowline_Network", "flowlines"),
    resolve=resolve,
    url="https://www.epa.gov/waterdata/nhdplus-national-hydrography-dataset-plus",
)
