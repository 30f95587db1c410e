"""Seeded Scheidegger-lattice networks for tests, benchmarks and demos (DATA.md section 4).

Each cell of a ``height`` x ``width`` lattice drains to one of its two lower neighbours (chosen at
random); cells whose accumulation reaches ``threshold`` are channels; chains of channel cells
between confluences are contracted into reaches. Such networks follow Hack's law, so their depth is
realistic, unlike random attachment trees. Fully vectorised: one numpy pass per lattice row.
"""
from __future__ import annotations

import math

import numpy as np

from .build import from_arrays
from .links import Links
from .model import RiverNetwork, Source

__all__ = ["scheidegger_network", "scheidegger_dag", "lattice_size_for"]


def lattice_size_for(n_reaches: int, threshold: int = 4) -> tuple[int, int]:
    """(height, width) of a lattice that yields about ``n_reaches`` reaches (measured: ~0.117 reaches
    per cell at threshold 4, scaling as 1/threshold)."""
    cells = n_reaches / (0.117 * 4 / threshold)
    height = max(8, int(round(math.sqrt(cells / 2))))
    return height, max(8, int(round(cells / height)))


def scheidegger_network(
    n_reaches: int | None = None,
    *,
    height: int | None = None,
    width: int | None = None,
    threshold: int = 4,
    cell_size: float = 1000.0,
    seed: int = 0,
    single_basin: bool = False,
    with_geometry: bool = False,
) -> RiverNetwork:
    """A synthetic river network.

    Parameters
    ----------
    n_reaches : approximate number of reaches wanted (sets ``height`` and ``width``).
    height, width : lattice size in cells (rows drain downwards; the last row holds the outlets).
    threshold : accumulation (cells) above which a cell is a channel.
    cell_size : m; reach lengths and areas scale with it.
    seed : random seed; the same seed gives the same network.
    single_basin : keep only the largest basin.
    with_geometry : build shapely lines through the cell centres (needs shapely).
    """
    if n_reaches is not None:
        height, width = lattice_size_for(int(n_reaches * (3.0 if single_basin else 1.0)), threshold)
        if single_basin:
            height, width = height * 2, max(8, width // 2)  # tall lattices make deep basins
    if height is None or width is None:
        raise ValueError("give n_reaches, or height and width")
    rng = np.random.default_rng(seed)
    n_cells = height * width
    col = np.arange(width)
    step = rng.integers(0, 2, size=(height, width))
    target_col = np.clip(col[None, :] + step, 0, width - 1)
    ds_cell = (np.arange(1, height + 1)[:, None] * width + target_col).reshape(-1)
    ds_cell[(height - 1) * width:] = -1
    diagonal = (target_col != col[None, :]).reshape(-1)

    acc = np.ones((height, width), dtype=np.int64)
    for r in range(height - 1):
        acc[r + 1] += np.bincount(target_col[r], weights=acc[r], minlength=width).astype(np.int64)
    acc = acc.reshape(-1)

    channel = acc >= threshold
    cells = np.flatnonzero(channel)
    inflow = np.zeros(n_cells, dtype=np.int64)
    ds_of_channel = ds_cell[cells]
    np.add.at(inflow, ds_of_channel[ds_of_channel >= 0], 1)
    head = channel & (inflow != 1)
    # each non-head channel cell has exactly one channel cell upstream: follow it up to the head
    up = np.full(n_cells, -1, dtype=np.int64)
    keep = ds_of_channel >= 0
    single = inflow[ds_of_channel[keep]] == 1
    up[ds_of_channel[keep][single]] = cells[keep][single]
    top = np.where(head, np.arange(n_cells), up)
    live = cells[~head[cells]]
    while live.size:
        top[live] = top[top[live]]
        live = live[~head[top[live]]]
    # reach = cells sharing a head; its last cell drains into a head cell or off the lattice
    heads = np.flatnonzero(head)
    reach_of_head = np.full(n_cells, -1, dtype=np.int64)
    reach_of_head[heads] = np.arange(heads.size)
    reach = reach_of_head[top[cells]]
    step_len = np.where(diagonal[cells], math.sqrt(2.0), 1.0) * cell_size
    nxt = ds_cell[cells]
    last = (nxt < 0) | head[np.maximum(nxt, 0)]
    n_r = heads.size
    length = np.bincount(reach, weights=np.where(nxt < 0, 0.5 * cell_size, step_len), minlength=n_r)
    last_cell = np.empty(n_r, dtype=np.int64)
    last_cell[reach[last]] = cells[last]
    nxt_last = ds_cell[last_cell]
    downstream = np.where(nxt_last >= 0, reach_of_head[np.maximum(nxt_last, 0)], -1)
    area = acc[last_cell].astype(np.float64) * cell_size**2
    up_area = np.zeros(n_r)
    has_ds = downstream >= 0
    np.add.at(up_area, downstream[has_ds], area[has_ds])
    catchment = area - up_area

    geometry = None
    if with_geometry:
        import shapely

        order = np.lexsort((acc[cells], reach))  # along each reach, accumulation grows downstream
        xs = (cells[order] % width) * cell_size
        ys = -(cells[order] // width) * cell_size
        ends = np.r_[np.flatnonzero(np.diff(reach[order])) + 1, cells.size]
        starts = np.r_[0, ends[:-1]]
        nx_last = np.where(nxt_last >= 0, (nxt_last % width) * cell_size, (last_cell % width) * cell_size)
        ny_last = np.where(nxt_last >= 0, -(nxt_last // width) * cell_size, -(last_cell // width + 0.5) * cell_size)
        lines = []
        for r, (a, b) in enumerate(zip(starts, ends)):
            coords = np.column_stack([np.r_[xs[a:b], nx_last[r]], np.r_[ys[a:b], ny_last[r]]])
            lines.append(shapely.LineString(coords))
        geometry = np.array(lines, dtype=object)

    ids = np.arange(1, n_r + 1, dtype=np.int64)
    net = from_arrays(ids, np.where(downstream >= 0, downstream + 1, -1), length, area,
                      catchment_area=catchment, geometry=geometry, crs="EPSG:3857" if with_geometry else None,
                      source=Source(path=None, schema="synthetic",
                                    fields={"id": "id", "downstream": "downstream_id"}))
    if single_basin:
        net = net.split()[0]
        net = from_arrays(net.ids, np.where(net.downstream >= 0, net.ids[np.maximum(net.downstream, 0)], -1),
                          net.length, net.area, catchment_area=net.catchment_area, geometry=net.geometry,
                          crs=net.crs, source=net.source)
    return net


def scheidegger_dag(
    n_reaches: int | None = None,
    *,
    split_share: float = 0.02,
    delta: float = 0.5,
    max_outlets: int = 3,
    seed: int = 0,
    fractions: str = "random",
    **tree_options,
) -> RiverNetwork:
    """A synthetic network with splits: a Scheidegger tree (:func:`scheidegger_network`) with branches added.

    About ``split_share`` of the reaches split. A share ``delta`` of the splits are distributaries near the
    outlets (reaches at most 3 links from an outlet): each adds 1 to ``max_outlets - 1`` new reaches that
    leave the split reach and end as new outlets (a delta). The others are braids mid-network: a new reach
    leaves the split reach and rejoins the river two links downstream (or, at random, the split reach gets
    a bypass link straight to the reach two links down). ``fractions``: 'random' (Dirichlet shares, the main
    path the largest), 'equal', or 'none' (no fractions: the default rule applies, by drainage area).
    Seeded; the tree is ``scheidegger_network(n_reaches, seed=seed, **tree_options)``.
    """
    tree = scheidegger_network(n_reaches, seed=seed, **tree_options)
    rng = np.random.default_rng(seed + 1)
    n = tree.n_reaches
    down = np.asarray(tree.downstream)
    depth = np.asarray(tree.depth)
    ds2 = np.where(down >= 0, down[np.maximum(down, 0)], -1)
    n_split = max(1, int(round(split_share * n)))
    near = np.flatnonzero(depth <= 3)
    mid = np.flatnonzero((depth > 3) & (ds2 >= 0))
    n_delta = min(near.size, int(round(delta * n_split)))
    n_braid = min(mid.size, n_split - n_delta)
    deltas = rng.choice(near, n_delta, replace=False) if n_delta else np.zeros(0, np.int64)
    braids = rng.choice(mid, n_braid, replace=False) if n_braid else np.zeros(0, np.int64)
    ids = list(tree.ids.tolist())
    ds_ids = [int(tree.ids[d]) if d >= 0 else -1 for d in down.tolist()]
    length, area = list(tree.length.tolist()), list(tree.area.tolist())
    catchment = list(np.asarray(tree.catchment_area).tolist())
    f_ids, t_ids = [], []
    next_id = int(tree.ids.max()) + 1

    def new_reach(downstream_id: int, of: int, share: float) -> int:
        nonlocal next_id
        rid = next_id
        next_id += 1
        ids.append(rid)
        ds_ids.append(downstream_id)
        length.append(float(tree.length[of]) * rng.uniform(0.5, 1.5))
        own = float(tree.length[of]) * 200.0  # a thin strip of own catchment, m2
        area.append(share * float(tree.area[of]) + own)
        catchment.append(own)
        return rid

    fr_list: list[float] = []

    def shares(k: int) -> np.ndarray:
        if fractions == "equal":
            return np.full(k, 1.0 / k)
        w = np.sort(rng.dirichlet(np.full(k, 2.0)))[::-1]  # main path (first) the largest
        return w

    for u in deltas.tolist():
        k = int(rng.integers(2, max_outlets + 1))
        w = shares(k)
        outs = [ds_ids[u]] if ds_ids[u] >= 0 else [new_reach(-1, u, w[0])]
        outs += [new_reach(-1, u, w[j]) for j in range(1, k)]
        f_ids += [int(tree.ids[u])] * k
        t_ids += outs
        fr_list += w.tolist()
    for u in braids.tolist():
        w = shares(2)
        target = int(tree.ids[ds2[u]])
        other = target if rng.random() < 0.3 else new_reach(target, u, w[1])
        f_ids += [int(tree.ids[u])] * 2
        t_ids += [ds_ids[u], other]
        fr_list += w.tolist()
    links = Links(np.asarray(f_ids, np.int64), np.asarray(t_ids, np.int64),
                  None if fractions == "none" else np.asarray(fr_list))
    return from_arrays(np.asarray(ids), np.asarray(ds_ids), np.asarray(length), np.asarray(area),
                       catchment_area=np.asarray(catchment), links=links,
                       bifurcations="split", check_area="ignore",
                       source=Source(path=None, schema="synthetic",
                                     fields={"id": "id", "downstream": "downstream_id"}))
