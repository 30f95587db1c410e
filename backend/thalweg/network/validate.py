"""Checks on network arrays; every defect names the file, field and reach ids and says how to fix it."""
from __future__ import annotations

import warnings
from typing import Literal

import numpy as np

from ..errors import CycleError, DuplicateIdError, NetworkError, ThalwegWarning, format_ids, opt, render_options
from . import order as _order
from .model import Source

__all__ = ["check_unique_ids", "dense_span", "check_acyclic", "check_lengths", "check_areas", "check_splits",
           "resolve_bifurcations", "Policy"]

Policy = Literal["error", "warn", "ignore"]


def _where(source: Source) -> str:
    return source.path or "network"


def dense_span(ids: np.ndarray) -> int | None:
    """``max - min + 1`` of integer ids when they are dense enough (at most 4 values per id, plus 1,024) that an
    array over their range is cheaper than sorting them; else None."""
    if ids.size == 0 or ids.dtype.kind not in "iu":
        return None
    lo, hi = int(ids.min()), int(ids.max())
    span = hi - lo + 1
    return span if span <= 4 * ids.size + 1024 else None


def check_unique_ids(ids: np.ndarray, source: Source) -> None:
    span = dense_span(ids)
    if span is not None:  # counting, in linear time (the same duplicates, ascending)
        lo = ids.min()
        dup = np.flatnonzero(np.bincount((ids - lo).astype(np.int64), minlength=span) > 1) + lo
    else:
        values, counts = np.unique(ids, return_counts=True)
        dup = values[counts > 1]
    if dup.size:
        raise DuplicateIdError(
            f"{dup.size:,} reach ids appear more than once: {format_ids(dup)}.",
            path=source.path, layer=source.layer, field=source.field("id"), ids=dup.tolist(),
            hint="Every reach needs its own id; remove the duplicate rows or choose another id field.")


def check_acyclic(ids: np.ndarray, downstream: np.ndarray, source: Source) -> np.ndarray:
    """Topological levels; CycleError naming the reaches of one cycle if there is one."""
    levels, stuck = _order.kahn_levels(downstream)
    if stuck.size:
        cycle = _order.find_cycle(downstream, stuck)
        n_cycle = int(stuck.size)
        raise CycleError(
            f"reaches {_chain(ids, cycle)} form a cycle ({n_cycle:,} reaches are on or below cycles).",
            path=source.path, layer=source.layer, field=source.field("downstream"),
            ids=ids[cycle].tolist(),
            hint="Correct the downstream id of one of them; every reach must drain to an outlet.")
    return levels


def _chain(ids: np.ndarray, cycle: list[int], head: int = 4, tail: int = 3) -> str:
    """'5 -> 7 -> 9 -> 5', or for a long cycle its first and last few ids and its length (a 5,000-reach cycle
    would otherwise fill a 39,000-character line)."""
    closed = [str(ids[i]) for i in cycle + cycle[:1]]
    if len(cycle) <= head + tail + 1:
        return " -> ".join(closed)
    return (f"{' -> '.join(closed[:head])} -> ... -> {' -> '.join(closed[-tail - 1:])} "
            f"(a cycle of {len(cycle):,} reaches)")


def check_lengths(ids: np.ndarray, length: np.ndarray, source: Source) -> None:
    bad = ~(np.isfinite(length) & (length > 0))
    if bad.any():
        raise NetworkError(
            f"{int(bad.sum()):,} reaches have a missing, zero or negative length: {format_ids(ids[bad])}.",
            path=source.path, layer=source.layer, field=source.field("length"), ids=ids[bad].tolist(),
            hint="Fix those values, or drop the length field mapping so lengths come from the geometry.")


def check_areas(ids: np.ndarray, downstream: np.ndarray, area: np.ndarray, source: Source,
                policy: Policy = "error", rtol: float = 1e-3) -> None:
    """Upstream drainage area must not decrease downstream (beyond rounding, ``rtol``)."""
    if policy == "ignore":
        return
    has_ds = downstream >= 0
    up = np.flatnonzero(has_ds)
    a_up, a_down = area[up], area[downstream[up]]
    known = np.isfinite(a_up) & np.isfinite(a_down)
    bad = up[known & (a_down < a_up * (1 - rtol))]
    if not bad.size:
        return
    pairs = ", ".join(f"{ids[i]} ({area[i] / 1e6:.4g} km2) -> {ids[downstream[i]]} "
                      f"({area[downstream[i]] / 1e6:.4g} km2)" for i in bad[:3])
    more = f" and {bad.size - 3:,} more" if bad.size > 3 else ""
    message = f"drainage area decreases downstream at {bad.size:,} links: {pairs}{more}."
    hint = ("Lines digitised against the flow, or a wrong area field, cause this; fix the data or "
            "pass check_area='warn' (--check-area warn) to route anyway.")
    if policy == "warn":
        warnings.warn(f"{_where(source)}: {message} {hint}", ThalwegWarning, stacklevel=3)
        return
    raise NetworkError(message, path=source.path, layer=source.layer, field=source.field("area"),
                       ids=ids[bad].tolist(), hint=hint)


def resolve_bifurcations(from_ids: np.ndarray, to_ids: np.ndarray, *, main: np.ndarray | None = None,
                         source: Source | None = None, quiet: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Reduce a link table (one row per from -> to link) to one downstream id per reach.

    Where a reach has several downstream links, the row with ``main`` True (NHDPlus: Divergence != 2),
    or else the first row, is kept; the minor paths are reported in one warning. To route every branch, readers
    pass the whole link table to ``from_arrays(links=...)`` with ``bifurcations='split'`` (``network.links``).
    """
    source = source or Source()
    from_ids = np.asarray(from_ids)
    to_ids = np.asarray(to_ids)
    rank = np.zeros(from_ids.size, dtype=np.int64) if main is None else (~np.asarray(main, bool)).astype(np.int64)
    order = np.lexsort((np.arange(from_ids.size), rank, from_ids))
    f_sorted = from_ids[order]
    first = np.r_[True, f_sorted[1:] != f_sorted[:-1]]
    keep = order[first]
    dropped = order[~first]
    if dropped.size and not quiet:  # quiet: the caller hands every link to from_arrays, which reports
        minor = ", ".join(f"{from_ids[i]} -> {to_ids[i]}" for i in dropped[:3])
        more = f" and {dropped.size - 3:,} more" if dropped.size > 3 else ""
        warnings.warn(render_options(
            f"{_where(source)}: {np.unique(from_ids[dropped]).size:,} reaches have more than one downstream "
            f"link; the main path is kept and the minor paths {minor}{more} are ignored (pass "
            f"{opt('read_network.bifurcations', 'split')} to route every branch)."), ThalwegWarning, stacklevel=2)
    keep = np.sort(keep)
    return from_ids[keep], to_ids[keep]


def check_splits(ids: np.ndarray, downstream: np.ndarray, rows, source: Source, *, where: str | None = None):
    """Check the split rows ``(from_pos, to_pos, fraction, origin)`` (main link first per reach) and return
    them with fractions renormalised where they miss 1 by rounding (at most 1e-3).

    Raises NetworkError for fractions that do not sum to 1, CycleError for links that close a cycle (the
    ids of one cycle named).
    """
    s, t, fr, origin = rows
    place = where or source.path
    reaches, first, counts = np.unique(s, return_index=True, return_counts=True)
    total = np.add.reduceat(fr, first)
    bad = np.abs(total - 1.0) > 1e-3
    if bad.any():
        shown = ", ".join(f"{ids[r]} ({total[k]:.4g})" for k, r in zip(np.flatnonzero(bad)[:3], reaches[bad][:3]))
        raise NetworkError(f"the split fractions of {int(bad.sum()):,} reaches do not sum to 1: {shown}"
                           f"{' and more' if bad.sum() > 3 else ''}.", path=place, layer=source.layer,
                           field="fraction", ids=ids[reaches[bad]].tolist(),
                           hint="Make the fractions of each reach's downstream links sum to 1, or leave them all "
                                "empty to split by the receiving reaches' drainage area.")
    fr = fr / np.repeat(total, counts)
    # the whole graph (main paths and split links) must be acyclic
    from .dag import dag_levels

    is_split = np.zeros(ids.size, dtype=bool)
    is_split[reaches] = True
    tree = np.flatnonzero((downstream >= 0) & ~is_split)
    src, dst = np.r_[tree, s], np.r_[downstream[tree], t]
    _, stuck = dag_levels(ids.size, src, dst)
    if stuck.size:
        cycle = _dag_cycle(ids.size, src, dst, stuck)
        raise CycleError(f"reaches {_chain(ids, cycle)} form a cycle through split links.", path=place,
                         layer=source.layer, field=source.field("downstream"), ids=ids[cycle].tolist(),
                         hint="Correct one of those links (a link table row, or the downstream id); every "
                              "branch of a split must lead on to an outlet.")
    return s, t, fr, origin


def _dag_cycle(n: int, src: np.ndarray, dst: np.ndarray, stuck: np.ndarray) -> list[int]:
    """One cycle among ``stuck`` reaches (error path only). Every stuck reach has a stuck reach upstream, so
    walking upstream from one must close a cycle; it is returned in the direction of flow."""
    on = np.zeros(n, dtype=bool)
    on[stuck] = True
    prev: dict[int, int] = {}
    for a, b in zip(src.tolist(), dst.tolist()):
        if on[a] and on[b] and b not in prev:
            prev[b] = a
    node, seen = int(stuck[0]), {}
    path: list[int] = []
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = prev[node]
    return path[seen[node]:][::-1]
