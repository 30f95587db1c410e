"""Index arrays the engines share, computed once per network and cached (numpy, vectorised).

``Topology`` holds the subtree post-order, each reach's depth (links to its outlet), its upstream
reaches as CSR, the topological levels, and the post-order segment of each basin. Engines move
what they need to their device once (``on(device)``).
"""
from __future__ import annotations

import dataclasses
import weakref

import numpy as np
import torch

from ..network import RiverNetwork
from ..network.order import children, level_sort

__all__ = ["Topology", "topology"]


@dataclasses.dataclass(frozen=True, eq=False)
class Topology:
    """Routing order of a network.

    Attributes
    ----------
    n : number of reaches.
    downstream : int64 [n], position of the downstream reach, -1 at an outlet.
    order : int64 [n], reaches in subtree post-order (each right after its whole upstream).
    position : int64 [n], post-order position of each reach.
    size : int64 [n], reaches upstream of each reach, itself included.
    depth : int64 [n], links from each reach to its outlet.
    child_ptr, child_idx : CSR of the reaches flowing directly into each reach (ascending position).
    levels : int64 [n], 0 at headwaters, 1 + the largest upstream level elsewhere.
    level_ptr, level_order : reaches grouped by level, level 0 first.
    basin_ptr : int64 [n_basins + 1], post-order segments of the independent basins.
    """

    n: int
    downstream: np.ndarray
    order: np.ndarray
    position: np.ndarray
    size: np.ndarray
    depth: np.ndarray
    child_ptr: np.ndarray
    child_idx: np.ndarray
    levels: np.ndarray
    level_ptr: np.ndarray
    level_order: np.ndarray
    basin_ptr: np.ndarray
    _device_cache: dict = dataclasses.field(default_factory=dict, repr=False)

    @property
    def max_depth(self) -> int:
        return int(self.depth.max(initial=0))

    @property
    def n_levels(self) -> int:
        return int(self.level_ptr.size - 1)

    def on(self, device: torch.device | str) -> dict[str, torch.Tensor]:
        """The index arrays as int64 tensors on ``device`` (cached)."""
        key = str(torch.device(device))
        if key not in self._device_cache:
            names = ("downstream", "order", "depth", "child_ptr", "child_idx", "level_ptr", "level_order")
            # network arrays are read-only; torch shares CPU memory and warns about that, so copy those
            self._device_cache[key] = {n: torch.as_tensor(_writable(getattr(self, n)), device=device) for n in names}
        return self._device_cache[key]


def _writable(arr: np.ndarray) -> np.ndarray:
    return arr if arr.flags.writeable else arr.copy()


_CACHE: weakref.WeakKeyDictionary[RiverNetwork, Topology] = weakref.WeakKeyDictionary()
_children = children  # the upstream CSR under the name routing/dag.py imports


def build(network: RiverNetwork) -> Topology:
    """Compute the topology of ``network`` (no caching; see :func:`topology`)."""
    downstream = np.ascontiguousarray(network.downstream, dtype=np.int64)
    n = downstream.size
    order = np.ascontiguousarray(network.postorder, dtype=np.int64)
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    levels = np.ascontiguousarray(network.levels, dtype=np.int64)
    level_order, level_ptr = level_sort(levels)
    child_ptr, child_idx = children(downstream)
    basin_ends = position[downstream < 0]  # each outlet closes its basin's post-order segment
    basin_ptr = np.r_[0, np.sort(basin_ends) + 1].astype(np.int64)
    return Topology(n=n, downstream=downstream, order=order, position=position,
                    size=np.ascontiguousarray(network.n_upstream, dtype=np.int64),
                    depth=np.ascontiguousarray(network.depth, dtype=np.int64), child_ptr=child_ptr,
                    child_idx=child_idx, levels=levels, level_ptr=level_ptr, level_order=level_order,
                    basin_ptr=basin_ptr)


def topology(network: RiverNetwork) -> Topology:
    """The cached :class:`Topology` of ``network``."""
    topo = _CACHE.get(network)
    if topo is None:
        topo = build(network)
        _CACHE[network] = topo
    return topo
