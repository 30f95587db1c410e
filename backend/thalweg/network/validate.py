"""Checks on network arrays; every defect names the file, field and reach ids and says how to fix it."""
from __future__ import annotations

import warnings
from typing import Literal

import numpy as np

from ..errors import CycleError, DuplicateIdError, NetworkError, ThalwegWarning, format_ids
from . import order as _order
from .model import Source

__all__ = ["check_unique_ids", "check_acyclic", "check_lengths", "check_areas", "resolve_bifurcations",
           "Policy"]

Policy = Literal["error", "warn", "ignore"]


def _where(source: Source) -> str:
    return source.path or "network"


def check_unique_ids(ids: np.ndarray, source: Source) -> None:
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
                         source: Source | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Reduce a link table (one row per from -> to link) to one downstream id per reach.

    Where a reach has several downstream links, the row with ``main`` True (NHDPlus: Divergence != 2),
    or else the first row, is kept; the minor paths are reported in one warning. Full bifurcation
    support (splitting discharge) comes later.
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
    if dropped.size:
        minor = ", ".join(f"{from_ids[i]} -> {to_ids[i]}" for i in dropped[:3])
        more = f" and {dropped.size - 3:,} more" if dropped.size > 3 else ""
        warnings.warn(
            f"{_where(source)}: {np.unique(from_ids[dropped]).size:,} reaches have more than one downstream "
            f"link; the main path is kept and the minor paths {minor}{more} are ignored (bifurcations are not "
            f"routed yet).", ThalwegWarning, stacklevel=2)
    keep = np.sort(keep)
    return from_ids[keep], to_ids[keep]
