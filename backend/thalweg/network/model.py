"""RiverNetwork: frozen arrays indexed 0..N-1 plus a thin method API over ``network.order``."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

import numpy as np

from ..errors import NetworkError, format_ids
from . import order as _order
from .dag import Splits, split_summary

__all__ = ["RiverNetwork", "Source"]


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a network came from, so that errors and outputs can name the file and fields."""

    path: str | None = None
    layer: str | None = None
    schema: str | None = None
    fields: Mapping[str, str] = dataclasses.field(default_factory=dict)  # role -> field name

    def field(self, role: str) -> str | None:
        return self.fields.get(role)


def _frozen(value: Any) -> np.ndarray:
    """``value`` as a read-only array: a copy when it is writable (so the caller's own array stays writable)."""
    arr = np.asarray(value)
    if arr.flags.writeable:
        arr = arr.copy()
        arr.setflags(write=False)
    return arr


class _FrozenAttrs(dict):
    """The per-reach attributes: read-only arrays in a mapping that refuses assignment."""

    def _refuse(self, *args, **kwargs):
        raise TypeError("RiverNetwork.attrs is read-only; build a new network with "
                        "dataclasses.replace(network, attrs={...}).")

    __setitem__ = __delitem__ = update = pop = popitem = clear = setdefault = _refuse  # type: ignore[assignment]
    __ior__ = _refuse  # type: ignore[assignment]

    def __reduce__(self):
        return (_FrozenAttrs, (dict(self),))


@dataclasses.dataclass(frozen=True, eq=False)
class RiverNetwork:
    """A river network as a tree of reaches.

    Parameters
    ----------
    ids : int64 [N], external reach ids (unique).
    downstream : int64 [N], position of the downstream reach, -1 at an outlet.
    length : float64 [N], reach length, m.
    area : float64 [N], upstream drainage area at the reach's downstream end, m^2 (NaN where unknown).
    slope : float64 [N] or None, m/m.
    catchment_area : float64 [N] or None, the reach's own catchment area, m^2.
    attrs : extra per-reach attributes, name -> array [N].
    geometry : optional per-reach geometries (shapely array), kept for maps; the core ignores it.
    crs : optional CRS (WKT, or 'EPSG:xxxx') of ``geometry``.
    source : where the network was read from.
    splits : None for a tree; else the reaches whose outflow divides between several downstream reaches
        (:class:`thalweg.network.dag.Splits`: outlets and fractions). ``downstream`` is then the main path,
        which everything that only knows trees sees; the routing engines route the splits.

    Build one with :func:`thalweg.network.from_arrays`, which validates; the constructor trusts its input.
    The arrays are read-only (a writable array given is copied first): the topology cached from them (levels,
    post-order, ...) can never go stale. Change a network with ``take`` or ``dataclasses.replace``, which
    build a new one.
    """

    ids: np.ndarray
    downstream: np.ndarray
    length: np.ndarray
    area: np.ndarray
    slope: np.ndarray | None = None
    catchment_area: np.ndarray | None = None
    attrs: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    geometry: Any = None
    crs: Any = None
    source: Source = dataclasses.field(default_factory=Source)
    splits: Splits | None = None

    def __post_init__(self) -> None:
        for name in ("ids", "downstream", "length", "area", "slope", "catchment_area"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _frozen(value))
        object.__setattr__(self, "attrs", _FrozenAttrs({k: _frozen(v) for k, v in dict(self.attrs).items()}))

    def __setstate__(self, state: dict) -> None:
        # pickle and copy restore the fields without __init__; unpickled arrays are writable again
        self.__dict__.update({k: _frozen(v) if isinstance(v, np.ndarray) else v for k, v in state.items()})
        self.__post_init__()

    # ---- sizes -----------------------------------------------------------------------------
    @property
    def n_reaches(self) -> int:
        return int(self.ids.size)

    def __len__(self) -> int:
        return self.n_reaches

    def __repr__(self) -> str:
        name = f" from {self.source.path}" if self.source.path else ""
        splits = f", {self.splits.n_splits:,} splits" if self.splits is not None else ""
        return (f"<RiverNetwork{name}: {self.n_reaches:,} reaches, {self.outlets.size:,} outlets, "
                f"{self.n_levels:,} levels{splits}>")

    # ---- cached topology (computed once, on first use) ------------------------------------
    @cached_property
    def levels(self) -> np.ndarray:
        """Topological level: 0 at headwaters, 1 + the largest level upstream elsewhere."""
        levels, stuck = _order.kahn_levels(self.downstream)
        if stuck.size:
            raise AssertionError("RiverNetwork holds a cycle; build it with from_arrays, which validates")
        return _frozen(levels)

    @property
    def n_levels(self) -> int:
        return int(self.levels.max(initial=-1)) + 1

    @cached_property
    def level_groups(self) -> list[np.ndarray]:
        """Reach positions of each topological level, headwaters first."""
        return _order.level_groups(self.levels)

    @cached_property
    def _tree(self) -> tuple[np.ndarray, ...]:
        return _order.tree_order(self.downstream, self.levels)

    @property
    def _postorder(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self._tree[:3]

    @property
    def postorder(self) -> np.ndarray:
        """Reach positions in DFS post-order: each reach right after its whole upstream block."""
        return self._tree[0]

    @property
    def n_upstream(self) -> np.ndarray:
        """Number of reaches upstream of each reach, itself included."""
        return self._tree[2]

    @property
    def depth(self) -> np.ndarray:
        """Number of links from each reach to its outlet (0 at an outlet)."""
        return self._tree[3]

    @property
    def basin(self) -> np.ndarray:
        """Position of the outlet each reach drains to."""
        return self._tree[4]

    @cached_property
    def outlets(self) -> np.ndarray:
        return _frozen(np.flatnonzero(self.downstream < 0))

    @cached_property
    def headwaters(self) -> np.ndarray:
        has_up = np.zeros(self.n_reaches, dtype=bool)
        has_up[self.downstream[self.downstream >= 0]] = True
        return _frozen(np.flatnonzero(~has_up))

    @cached_property
    def _id_sort(self) -> np.ndarray:
        return _frozen(np.argsort(self.ids, kind="stable"))

    # ---- lookups -----------------------------------------------------------------------------
    def index_of(self, reach_ids: Sequence[Any] | np.ndarray, *, what: str = "reach ids") -> np.ndarray:
        """Positions of external ids; NetworkError naming the ids that are not in the network."""
        wanted = np.atleast_1d(np.asarray(reach_ids))
        try:
            wanted = wanted.astype(self.ids.dtype, casting="same_kind" if wanted.dtype.kind != "U" else "unsafe")
        except (ValueError, TypeError) as exc:
            raise NetworkError(f"{what} must be integers like the network's ids: {exc}") from None
        sorted_ids = self.ids[self._id_sort]
        where = np.searchsorted(sorted_ids, wanted)
        where = np.clip(where, 0, max(self.n_reaches - 1, 0))
        found = self.n_reaches > 0
        ok = (sorted_ids[where] == wanted) if found else np.zeros(wanted.shape, bool)
        if not ok.all():
            missing = wanted[~ok]
            raise NetworkError(
                f"{missing.size:,} of the {what} are not in the network: {format_ids(missing)}.",
                path=self.source.path, field=self.source.field("id"), ids=missing.tolist(),
                hint="Check the ids against the network's id field (thalweg info NETWORK lists it).")
        return self._id_sort[where]

    def upstream_of(self, reach_id: Any) -> np.ndarray:
        """Positions of every reach upstream of ``reach_id`` (itself included), in post-order."""
        (i,) = self.index_of([reach_id])
        pos = self._postorder[1][i]
        return self.postorder[pos - self.n_upstream[i] + 1: pos + 1]

    # ---- derived networks ------------------------------------------------------------------
    def take(self, positions: np.ndarray) -> RiverNetwork:
        """The sub-network of the given reaches (in that order); links leaving it become outlets."""
        positions = np.asarray(positions, dtype=np.int64)
        new_index = np.full(self.n_reaches, -1, dtype=np.int64)
        new_index[positions] = np.arange(positions.size)
        ds = self.downstream[positions]
        new_ds = np.where(ds >= 0, new_index[np.maximum(ds, 0)], -1)

        def pick(a):
            return None if a is None else a[positions]

        geometry = None
        if self.geometry is not None:
            geometry = self.geometry[positions] if not hasattr(self.geometry, "iloc") else \
                self.geometry.iloc[positions].reset_index(drop=True)
        splits = None
        if self.splits is not None:
            splits, new_ds = self.splits.take(new_index, new_ds)
        return dataclasses.replace(
            self, ids=self.ids[positions], downstream=new_ds, length=self.length[positions],
            area=self.area[positions], slope=pick(self.slope), catchment_area=pick(self.catchment_area),
            attrs={k: v[positions] for k, v in self.attrs.items()}, geometry=geometry, splits=splits)

    def upstream(self, reach_id: Any) -> RiverNetwork:
        """The network upstream of ``reach_id`` (itself included), in post-order, ``reach_id`` its outlet."""
        return self.take(self.upstream_of(reach_id))

    def in_postorder(self) -> RiverNetwork:
        """The same network with its rows in subtree post-order."""
        return self.take(self.postorder)

    def split(self) -> list[RiverNetwork]:
        """Independent basins (one per outlet), largest first, each in post-order."""
        order = self.postorder
        basin = self.basin
        if self.splits is not None:  # a branch into another basin (a delta's distributaries) joins the basins
            src, dst = self.splits.source, self.splits.to
            label = np.array(basin)
            while True:
                low = np.minimum(label[basin[src]], label[basin[dst]])
                new = label.copy()
                np.minimum.at(new, basin[src], low)
                np.minimum.at(new, basin[dst], low)
                new = new[new]
                if np.array_equal(new, label):
                    break
                label = new
            basin = label[basin]
            order = order[np.argsort(basin[order], kind="stable")]
        basin_of = basin[order]
        bounds = np.flatnonzero(np.r_[True, basin_of[1:] != basin_of[:-1], True])
        parts = [order[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        parts.sort(key=len, reverse=True)
        return [self.take(p) for p in parts]

    def to_geodataframe(self):
        """The reaches as a geopandas GeoDataFrame (ids, downstream ids, SI quantities, attributes, lines) that
        :func:`thalweg.read_network` reads back; see :func:`thalweg.hydrography.frames.to_geodataframe`."""
        from ..hydrography.frames import to_geodataframe  # geopandas only when asked for

        return to_geodataframe(self)

    def summary(self) -> dict[str, Any]:
        """Counts and totals for ``thalweg info`` and the server."""
        known_area = np.isfinite(self.area)
        return {
            "reaches": self.n_reaches,
            "outlets": int(self.outlets.size),
            "headwaters": int(self.headwaters.size),
            "levels": self.n_levels,
            "max_depth": int(self.depth.max(initial=0)),
            "total_length_km": float(np.nansum(self.length) / 1e3),
            "largest_basin_km2": float(np.nanmax(self.area) / 1e6) if known_area.any() else None,
            "reaches_without_area": int((~known_area).sum()),
            "schema": self.source.schema,
            "fields": dict(self.source.fields),
            "crs": None if self.crs is None else str(self.crs),
            **split_summary(self),
        }
