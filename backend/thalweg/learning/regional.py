"""Regionalisation: one parameter model trained across several basins at once, scored on basins it never saw.

:func:`merge_basins` joins basins into one network (a forest: the routing handles every basin in the same pass,
which is the batched routing of several basins) with unique reach ids; a regression model built on it standardises
attributes over all of them, and ``fit(..., validation_gauges=<the gauges of some basins>)`` measures spatial
validation skill: those basins' gauges never enter the training loss (paper 003's spatial validation, on routing).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from ..network import RiverNetwork, from_arrays
from ..network.model import Source

__all__ = ["Merged", "merge_basins"]


@dataclasses.dataclass(frozen=True)
class Merged:
    """Several basins as one network.

    Attributes
    ----------
    network : the joined network; reach ids 1..N; attributes ``basin`` (index of each reach's basin) and
        ``source_id`` (its id in its own network).
    runoff : float64 [N, T], the basins' runoff stacked in the same order, m3/s.
    names : basin names [B].
    starts : int64 [B + 1], the positions of basin b are ``starts[b]:starts[b + 1]``.
    """

    network: RiverNetwork
    runoff: np.ndarray
    names: list[str]
    starts: np.ndarray

    def reach_ids(self, basin: int | str, source_ids: Sequence[int]) -> list[int]:
        """The joined network's ids of reaches ``source_ids`` of one basin (by index or name)."""
        b = self.names.index(basin) if isinstance(basin, str) else int(basin)
        part = slice(self.starts[b], self.starts[b + 1])
        own = self.network.attrs["source_id"][part]
        order = np.argsort(own, kind="stable")
        wanted = np.asarray(list(source_ids), dtype=np.int64)
        where = np.searchsorted(own[order], wanted)
        ok = (where < own.size) & (own[order][np.minimum(where, own.size - 1)] == wanted)
        if not ok.all():
            raise InputError(f"basin {self.names[b]} has no reach {wanted[~ok][0]}.", ids=wanted[~ok].tolist())
        return (self.network.ids[part][order[where]]).tolist()


def merge_basins(networks: Sequence[RiverNetwork], runoffs: Sequence[Any], *,
                 names: Sequence[str] | None = None) -> Merged:
    """Join ``networks`` (each with its runoff [N_b, T], the same T and step) into one :class:`Merged`.

    Attributes kept: length, area, slope and catchment area where every basin has them, and every field of
    ``attrs`` that every basin has.
    """
    if not networks or len(networks) != len(runoffs):
        raise InputError(f"merge_basins needs as many runoff arrays as networks (got {len(networks)} networks and "
                         f"{len(runoffs)} runoff arrays).")
    names = [str(n) for n in (names if names is not None else range(len(networks)))]
    arrays = [np.asarray(r, dtype=np.float64) for r in runoffs]
    for name, net, r in zip(names, networks, arrays):
        if r.ndim != 2 or r.shape[0] != net.n_reaches or r.shape[1] != arrays[0].shape[1]:
            raise InputError(f"basin {name}: runoff has shape {r.shape}; expected [{net.n_reaches:,} reaches, "
                             f"{arrays[0].shape[1]:,} steps] (every basin over the same steps).", field="runoff")
    sizes = np.array([n.n_reaches for n in networks])
    starts = np.r_[0, np.cumsum(sizes)]
    downstream = np.concatenate([np.where(n.downstream >= 0, n.downstream + s, -1)
                                 for n, s in zip(networks, starts[:-1])])
    ids = np.arange(1, starts[-1] + 1, dtype=np.int64)

    def joined(get) -> np.ndarray | None:
        parts = [get(n) for n in networks]
        return None if any(p is None for p in parts) else np.concatenate([np.asarray(p, np.float64) for p in parts])

    common = set.intersection(*(set(n.attrs) for n in networks))
    attrs = {k: np.concatenate([np.asarray(n.attrs[k]) for n in networks]) for k in sorted(common)}
    attrs["basin"] = np.repeat(np.arange(len(networks)), sizes)
    attrs["source_id"] = np.concatenate([n.ids for n in networks])
    network = from_arrays(ids, np.where(downstream >= 0, downstream + 1, -1), joined(lambda n: n.length),
                          joined(lambda n: n.area), slope=joined(lambda n: n.slope),
                          catchment_area=joined(lambda n: n.catchment_area), attrs=attrs,
                          source=Source(path=None, schema="merged", fields={"id": "id"}))
    return Merged(network, np.concatenate(arrays, axis=0), names, starts)
