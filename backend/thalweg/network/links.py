"""A link table (from_id -> to_id, fraction) -> each reach's main downstream id and the network's splits.

Readers hand :func:`thalweg.network.from_arrays` the links they find (NHDPlus PlusFlow, lines whose end
meets several starts, a ``--links`` table); the rules that turn them into a tree or a DAG live here, once:

- a reach listed in the table takes its downstream links from it (the layer's downstream field is overridden);
- a reach with several links is a split; its main path is the link marked main (NHDPlus ``Divergence`` 1),
  else the one the layer's downstream field names, else the largest fraction, else the first;
- ``bifurcations='split'`` keeps every link (fractions from the table; where a split has none, by the
  receiving reaches' drainage area, or equal shares without areas, and a warning says so); ``'main'`` keeps
  the main path only (a warning lists the minor paths dropped); ``None`` splits when the table gives
  fractions and keeps the main path otherwise, saying so.
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Literal

import numpy as np

from ..errors import count as counted
from ..errors import CycleError, NetworkError, ThalwegWarning, format_ids, opt, render_options
from .dag import Splits
from .model import Source

__all__ = ["Links", "BIFURCATIONS", "resolve_links"]

BIFURCATIONS = ("main", "split")
Bifurcations = Literal["main", "split"] | None


@dataclasses.dataclass(frozen=True)
class Links:
    """Downstream links of some reaches, one row per link (external ids).

    Attributes
    ----------
    from_ids, to_ids : int64 [M].
    fraction : float64 [M] share of the from-reach's outflow (NaN: not given), or None.
    main : bool [M], True on the main path of a split (NHDPlus Divergence != 2), or None.
    origin : 'field' (read from the hydrography) or 'links' (a --links table), for messages.
    where : the table and fields, for messages (e.g. 'PlusFlow.dbf: TOCOMID').
    """

    from_ids: np.ndarray
    to_ids: np.ndarray
    fraction: np.ndarray | None = None
    main: np.ndarray | None = None
    origin: str = "field"
    where: str | None = None
    row: np.ndarray | None = None  # int [M]: each link's data row in ``where`` (0-based; -1: not from it); None: M rows


def _where(source: Source, links: Links) -> str:
    return links.where or source.path or "network"


def _shown(from_ids, to_ids, rows, limit: int = 3) -> str:
    text = ", ".join(f"{from_ids[i]} -> {to_ids[i]}" for i in rows[:limit])
    return text + (f" and {len(rows) - limit:,} more" if len(rows) > limit else "")


def resolve_links(ids: np.ndarray, ds_ids: np.ndarray, links: Links, *, area: np.ndarray | None,
                  bifurcations: Bifurcations, source: Source, outlet_codes: np.ndarray) -> tuple[np.ndarray, Any]:
    """``(downstream ids [N], link rows of the splits or None)`` from the layer's ``ds_ids`` and ``links``.

    The split rows are ``(from_pos [E], to_pos [E], fraction [E], origin)`` in positions, main link first per
    reach; :func:`thalweg.network.validate.check_splits` checks them. ``area`` (m^2, NaN unknown) gives
    default fractions. A cycle closed by a row of the table is blamed on that row (CycleError).
    """
    downstream, rows = _resolve(ids, ds_ids, links, area=area, bifurcations=bifurcations, source=source,
                                outlet_codes=outlet_codes)
    _check_link_cycles(ids, downstream, rows, links, _where(source, links), source)
    return downstream, rows


def _resolve(ids: np.ndarray, ds_ids: np.ndarray, links: Links, *, area: np.ndarray | None,
             bifurcations: Bifurcations, source: Source, outlet_codes: np.ndarray) -> tuple[np.ndarray, Any]:
    """``(downstream ids [N], link rows of the splits or None)`` from the layer's ``ds_ids`` and ``links``.

    The split rows are ``(from_pos [E], to_pos [E], fraction [E], origin)`` in positions, main link first per
    reach; :func:`thalweg.network.validate.check_splits` checks them. ``area`` (m^2, NaN unknown) gives
    default fractions.
    """
    if bifurcations not in (None, *BIFURCATIONS):
        raise NetworkError(f"bifurcations must be 'main' or 'split' (got {bifurcations!r}).",
                           hint=f"Use {opt('read_network.bifurcations', 'split')} or 'main'.")
    where = _where(source, links)
    f_ids = np.asarray(links.from_ids, dtype=np.int64)
    t_ids = np.asarray(links.to_ids, dtype=np.int64)
    frac = np.full(f_ids.size, np.nan) if links.fraction is None else np.asarray(links.fraction, dtype=np.float64)
    sort = np.argsort(ids, kind="stable")

    def positions(values: np.ndarray) -> np.ndarray:
        at = np.clip(np.searchsorted(ids[sort], values), 0, ids.size - 1)
        return np.where(ids[sort][at] == values, sort[at], -1)

    f_pos, t_pos = positions(f_ids), positions(t_ids)
    unknown_from = f_pos < 0
    if unknown_from.any():
        bad = np.unique(f_ids[unknown_from])
        raise NetworkError(f"{bad.size:,} from_id values of the link table are not reach ids ({format_ids(bad)}).",
                           path=where, field="from_id", ids=bad.tolist(),
                           hint="Give links only for reaches of the network (check the id field).")
    if (frac < 0).any() or (frac > 1).any():
        rows = np.flatnonzero((frac < 0) | (frac > 1))
        raise NetworkError(f"{rows.size:,} links have a fraction outside [0, 1] ({_shown(f_ids, t_ids, rows)}).",
                           path=where, field="fraction", ids=np.unique(f_ids[rows]).tolist(),
                           hint="A fraction is the share of the reach's outflow taken by that link, from 0 to 1.")
    # links to outlet codes or to ids outside the network leave it: a clipped extract's minor paths
    leaves = (t_pos < 0)
    coded = np.isin(t_ids, outlet_codes) | (t_ids < 0)
    if (leaves & ~coded).any():
        lost = np.unique(t_ids[leaves & ~coded])
        warnings.warn(f"{where}: {lost.size:,} links lead to ids that are not reaches ({format_ids(lost)}); "
                      f"those links are dropped (the other links of their reaches share the water), as expected "
                      f"for a clipped extract.", ThalwegWarning, stacklevel=4)
    pair = f_pos * (ids.size + 1) + np.where(leaves, ids.size, t_pos)
    _, first_rows, counts = np.unique(pair, return_index=True, return_counts=True)
    if (counts > 1).any():
        rows = first_rows[counts > 1]
        raise NetworkError(f"{rows.size:,} links appear more than once ({_shown(f_ids, t_ids, rows)}).",
                           path=where, ids=np.unique(f_ids[rows]).tolist(),
                           hint="List each from_id -> to_id link once.")
    n_links_of = np.bincount(f_pos, minlength=ids.size)
    keep = ~leaves | (n_links_of[f_pos] == 1)  # a lone link to an outlet code makes the reach an outlet
    lost = np.zeros(ids.size, dtype=bool)
    lost[f_pos[~keep]] = True
    f_pos, t_pos, frac, t_ids, f_ids = f_pos[keep], t_pos[keep], frac[keep], t_ids[keep], f_ids[keep]
    if lost.any():  # the links that stay share the water of those that left
        total = np.bincount(f_pos, weights=np.nan_to_num(frac), minlength=ids.size)
        frac = np.where(lost[f_pos] & (total[f_pos] > 0), frac / np.where(total[f_pos] > 0, total[f_pos], 1.0), frac)
    main = None if links.main is None else np.asarray(links.main, bool)[keep]

    downstream = np.array(ds_ids, dtype=np.int64, copy=True)
    listed = np.zeros(ids.size, dtype=bool)
    listed[f_pos] = True
    count = np.bincount(f_pos[t_pos >= 0], minlength=ids.size)
    single = (count[f_pos] <= 1)
    alone = single & (np.bincount(f_pos, minlength=ids.size)[f_pos] == 1)
    lone_frac = alone & np.isfinite(frac) & (np.abs(frac - 1.0) > 1e-6) & (t_pos >= 0)
    if lone_frac.any():
        rows = np.flatnonzero(lone_frac)
        raise NetworkError(f"{rows.size:,} reaches have one downstream link with a fraction other than 1 "
                           f"({', '.join(f'{f_ids[i]} -> {t_ids[i]}: {frac[i]:g}' for i in rows[:3])}): a split "
                           f"with one outlet.", path=where, field="fraction", ids=np.unique(f_ids[rows]).tolist(),
                           hint="Add the reach's other downstream links, or give this one fraction 1 (or none).")
    # reaches with one link (or whose other links all left the network): a downstream override
    one = single & (t_pos >= 0)
    downstream[f_pos[one]] = t_ids[one]
    gone = (t_pos < 0) & (count[f_pos] == 0)  # every link of the reach leaves the network: an outlet
    downstream[f_pos[gone]] = -1
    multi = ~single & (t_pos >= 0)
    if not multi.any():
        return downstream, None
    rows = np.flatnonzero(multi)
    s, t, fr = f_pos[rows], t_pos[rows], frac[rows]
    mk = np.zeros(rows.size, dtype=bool) if main is None else main[rows]
    layer_main = t_ids[rows] == np.asarray(ds_ids, dtype=np.int64)[s]
    order = np.lexsort((rows, -np.nan_to_num(fr, nan=-1.0), ~layer_main, ~mk, s))
    s, t, fr, rows = s[order], t[order], fr[order], rows[order]
    reaches, first, counts = np.unique(s, return_index=True, return_counts=True)
    downstream[reaches] = ids[t[first]]

    given = np.isfinite(fr)
    partial = np.add.reduceat(given.astype(np.int64), first)
    mixed = (partial > 0) & (partial < counts)
    if mixed.any():
        bad = reaches[mixed]
        raise NetworkError(f"{bad.size:,} split reaches give fractions for some of their links only "
                           f"({format_ids(ids[bad])}).", path=where, field="fraction", ids=ids[bad].tolist(),
                           hint="Give a fraction on every link of a split reach, or on none (they then follow the "
                                "receiving reaches' drainage areas).")
    has_fractions = partial.any()
    explicit = bifurcations is not None
    if bifurcations is None:
        bifurcations = "split" if has_fractions else "main"
        if not has_fractions:
            warnings.warn(render_options(
                f"{where}: {reaches.size:,} reaches split into several downstream reaches ({format_ids(ids[reaches])}) "
                f"and the data gives no split fractions; the main path is kept and the minor paths "
                f"{_shown(f_ids[rows], t_ids[rows], np.setdiff1d(np.arange(rows.size), first))} are ignored. Pass "
                f"{opt('read_network.bifurcations', 'split')} to route every branch (fractions by the receiving "
                f"reaches' drainage area), or a {opt('read_network.links', 'FILE')} table with fractions."),
                ThalwegWarning, stacklevel=4)
    if bifurcations == "main":
        if explicit:  # (the default's own warning above already said so)
            warnings.warn(f"{where}: {reaches.size:,} reaches split into several downstream reaches; as asked "
                          f"(bifurcations='main'), the main path is kept and the minor paths "
                          f"{_shown(f_ids[rows], t_ids[rows], np.setdiff1d(np.arange(rows.size), first))} are "
                          f"ignored.", ThalwegWarning, stacklevel=4)
        return downstream, None
    origin = links.origin
    if not given.all():
        a = np.full(t.size, np.nan) if area is None else np.asarray(area, dtype=np.float64)[t]
        seg = np.repeat(np.arange(reaches.size), counts)
        need = np.repeat(partial == 0, counts)
        ok_area = np.isfinite(a) & (a > 0)
        by_area = np.add.reduceat((ok_area | ~need).astype(np.int64), first) == counts
        use_area = need & by_area[seg]
        share = np.where(use_area, np.nan_to_num(a, nan=0.0), np.where(need, 1.0, 0.0))
        total = np.add.reduceat(share, first)
        fr = np.where(need, share / total[seg], fr)
        n_area = int((by_area & (partial == 0)).sum())
        n_equal = int(((partial == 0) & ~by_area).sum())
        how = []
        if n_area:
            how.append(f"{'its' if n_area == 1 else 'their'} outflow is divided by the receiving reaches' drainage "
                       f"area" if not n_equal else f"{counted(n_area, 'reach', 'reaches')} by drainage area")
        if n_equal:
            how.append(f"{'its' if n_equal == 1 else 'their'} outflow is divided in equal shares (no drainage area)"
                       if not n_area else f"{counted(n_equal, 'reach', 'reaches')} in equal shares (no drainage area)")
        n_none = int((partial == 0).sum())
        lead = f"{counted(n_none, 'split reach has', 'split reaches have')} no split fractions in the data"
        how_text = how[0] if len(how) == 1 else f"their outflow is divided: {' and '.join(how)}"
        text = (f"{where}: {lead} ({format_ids(ids[reaches[partial == 0]])}); {how_text}. Give fractions with "
                f"{opt('read_network.links', 'FILE')} (from_id, to_id, fraction) to set them.")
        warnings.warn(render_options(text), ThalwegWarning, stacklevel=4)
        origin = ("area" if n_area else "equal") if not has_fractions else "mixed"
    total = np.add.reduceat(fr, first)
    off = np.abs(total - 1.0) > 1e-3
    if off.any():  # here, where the rows are known (the network check would blame the layer)
        shown = "; ".join(" + ".join(f"{f_ids[rows[i]]} -> {t_ids[rows[i]]}: {fr[i]:g}"
                                     for i in range(first[k], first[k] + counts[k])) + f" = {total[k]:.4g}"
                          for k in np.flatnonzero(off)[:3])
        raise NetworkError(f"the split fractions of {counted(int(off.sum()), 'reach', 'reaches')} do not sum to 1 "
                           f"({shown}{' and more' if off.sum() > 3 else ''}).", path=where,
                           layer=source.layer if where == source.path else None, field="fraction",
                           ids=ids[reaches[off]].tolist(),
                           hint="Make the fractions of each reach's downstream links sum to 1, or leave them all "
                                "empty to split by the receiving reaches' drainage area.")
    return downstream, (s, t, fr, origin)


def _check_link_cycles(ids: np.ndarray, downstream_ids: np.ndarray, split_rows: Any, links: Links,
                       where: str, source: Source) -> None:
    """CycleError naming the link table's row that closes a cycle (the layer's downstream field is not to blame
    when a row of the table made the cycle); a cycle of the layer's own is left to the network's checks."""
    from .dag import dag_levels
    from .validate import _chain, _dag_cycle

    sort = np.argsort(ids, kind="stable")

    def positions(values: np.ndarray) -> np.ndarray:
        at = np.clip(np.searchsorted(ids[sort], values), 0, ids.size - 1)
        return np.where(ids[sort][at] == values, sort[at], -1)

    down = positions(np.asarray(downstream_ids, dtype=np.int64))
    is_split = np.zeros(ids.size, dtype=bool)
    s = t = np.zeros(0, dtype=np.int64)
    if split_rows is not None:
        s, t = np.asarray(split_rows[0], np.int64), np.asarray(split_rows[1], np.int64)
        is_split[s] = True
    tree = np.flatnonzero((down >= 0) & ~is_split)
    src, dst = np.r_[tree, s], np.r_[down[tree], t]
    _, stuck = dag_levels(ids.size, src, dst)
    if not stuck.size:
        return
    cycle = _dag_cycle(ids.size, src, dst, stuck)
    f_pos, t_pos = positions(np.asarray(links.from_ids, np.int64)), positions(np.asarray(links.to_ids, np.int64))
    data_row = np.arange(f_pos.size) if links.row is None else np.asarray(links.row, np.int64)
    row_of = {(int(a), int(b)): i for i, (a, b) in enumerate(zip(f_pos.tolist(), t_pos.tolist()))
              if a >= 0 <= b and data_row[i] >= 0}
    rows = sorted((row_of[(a, b)] for a, b in zip(cycle, cycle[1:] + cycle[:1]) if (a, b) in row_of),
                  key=lambda i: data_row[i])
    if not rows:
        return
    shown = ", ".join(f"{links.from_ids[r]} -> {links.to_ids[r]} (data row {data_row[r] + 1})" for r in rows[:3])
    raise CycleError(f"the link table's {'row' if len(rows) == 1 else 'rows'} {shown} "
                     f"{'closes' if len(rows) == 1 else 'close'} a cycle: reaches {_chain(ids, cycle)}.",
                     path=where, layer=source.layer if where == source.path else None,
                     ids=[int(ids[i]) for i in cycle],
                     hint=f"Correct or remove {'that row' if len(rows) == 1 else 'one of those rows'}; every "
                          f"reach must drain to an outlet.")


def splits_from_rows(n: int, rows: Any) -> Splits:
    """:class:`Splits` from checked rows ``(from_pos, to_pos, fraction, origin)`` (main link first per reach)."""
    s, t, fr, origin = rows
    reaches, first, counts = np.unique(s, return_index=True, return_counts=True)
    assert np.all(np.diff(s) >= 0), "split rows must come grouped by reach"
    return Splits(reach=reaches, ptr=np.r_[0, np.cumsum(counts)], to=t, fraction=fr, origin=origin)
