"""Partitioning: basins and clusters cover the network, balance packs work, piecewise routing == whole routing."""
from __future__ import annotations

import itertools
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from thalweg.errors import InputError, ThalwegWarning
from thalweg.network import from_arrays, scheidegger_network
from thalweg.params import resolve_params
from thalweg.routing import route, route_reference
from thalweg.scale import (Piece, balance, basins, clusters, inflow_of, merge, piece_params, route_partitioned,
                           route_piece, stages)

DT = 3600.0
SCHEMES = ["muskingum_nonneg", "muskingum", "muskingum_substep", "linear_storage", "pure_lag", "nash_cascade",
           "hayami"]


@pytest.fixture(scope="module")
def forest():
    """Several basins, one of them deep (cut into clusters over several stages)."""
    deep = scheidegger_network(900, seed=7, single_basin=True)
    many = scheidegger_network(300, seed=11)
    ids = np.r_[deep.ids, many.ids + 10_000]
    down = np.r_[np.where(deep.downstream >= 0, deep.ids[np.maximum(deep.downstream, 0)], -1),
                 np.where(many.downstream >= 0, many.ids[np.maximum(many.downstream, 0)] + 10_000, -1)]
    return from_arrays(ids, down, np.r_[deep.length, many.length], np.r_[deep.area, many.area])


def _runoff(net, steps, batch=None, seed=0):
    rng = np.random.default_rng(seed)
    shape = (net.n_reaches, steps) if batch is None else (batch, net.n_reaches, steps)
    return rng.gamma(2.0, 1.5, size=shape)


def _params(net, scheme):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        return resolve_params(net, scheme)[0]


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        return fn(*args, **kwargs)


def _check_cover(net, pieces):
    count = np.zeros(net.n_reaches, int)
    for p in pieces:
        np.add.at(count, p.reaches, 1)
    assert np.all(count == 1)


def test_basins_are_the_independent_basins(forest):
    pieces = basins(forest)
    _check_cover(forest, pieces)
    assert len(pieces) == forest.outlets.size
    assert [p.n_reaches for p in pieces] == sorted((p.n_reaches for p in pieces), reverse=True)
    for p in pieces:
        assert np.unique(forest.basin[p.reaches]).size == 1 and p.stage == 0 and not p.inflow_from.size
        # post-order: every reach after all its upstream reaches in the piece
        where = np.empty(forest.n_reaches, int)
        where[p.reaches] = np.arange(p.n_reaches)
        ds = forest.downstream[p.reaches]
        assert np.all(where[ds[ds >= 0]] > where[p.reaches[ds >= 0]])
        assert p.subnetwork(forest).outlets.size == 1


def test_clusters_cut_deep_basins_with_exact_links(forest):
    limit = 60
    pieces = clusters(forest, limit)
    _check_cover(forest, pieces)
    assert [p.index for p in pieces] == list(range(len(pieces)))
    piece_of = np.empty(forest.n_reaches, int)
    for p in pieces:
        piece_of[p.reaches] = p.index
    ds = forest.downstream
    crossing = np.flatnonzero((ds >= 0) & (piece_of != piece_of[np.maximum(ds, 0)]))
    # every link between pieces is an inflow of the downstream piece, and nothing else is
    listed = sorted(int(r) for p in pieces for r in p.inflow_from)
    assert listed == sorted(crossing.tolist())
    for p in pieces:
        assert np.array_equal(p.reaches[p.inflow_into], ds[p.inflow_from])
        assert set(p.upstream) == set(piece_of[p.inflow_from].tolist())
        assert all(pieces[u].stage < p.stage for u in p.upstream)
        assert p.stage == (1 + max(pieces[u].stage for u in p.upstream) if p.upstream else 0)
        sub = p.subnetwork(forest)
        assert sub.outlets.size == 1  # a cluster is a connected subtree
        # no branch into the cluster outlet holds max_reaches or more uncut reaches
        assert p.n_reaches <= limit * max(1, int(np.sum(sub.downstream == sub.outlets[0]))) + 1
    small = [p for p in basins(forest) if p.n_reaches <= limit]
    assert sum(1 for p in pieces if not p.upstream and not p.inflow_from.size
               and np.all(forest.downstream[p.reaches[-1]] < 0)) >= len(small)
    assert len(stages(pieces)) > 2
    assert clusters(forest, forest.n_reaches)[0].n_reaches == basins(forest)[0].n_reaches


def test_balance_is_longest_first_and_near_optimal():
    rng = np.random.default_rng(3)
    empty = np.empty(0, np.int64)
    sizes = rng.integers(1, 50, size=9)
    pieces = [Piece(i, np.arange(s), empty, empty, (), 0, (i,)) for i, s in enumerate(sizes)]
    bins = balance(pieces, 3, steps=10)
    assert sorted(p.index for b in bins for p in b) == list(range(9))
    worst = max(sum(p.work(10) for p in b) for b in bins)
    best = min(max(sum(int(sizes[i]) for i in range(9) if a[i] == k) for k in range(3))
               for a in itertools.product(range(3), repeat=9)) * 10  # brute force over every assignment
    assert best <= worst <= 4 / 3 * best
    assert balance(pieces, 3, steps=10) == bins  # deterministic
    assert len(balance(pieces[:2], 5)) == 2
    with pytest.raises(InputError):
        balance(pieces, 0)


def _in_file_order(sizes, seed):
    """Pieces of ``sizes`` reaches (positions 0..N-1 in piece order) and the row of each reach in a file that
    keeps each piece's rows together, the pieces in a shuffled order, each piece's rows shuffled inside it."""
    rng = np.random.default_rng(seed)
    empty = np.empty(0, np.int64)
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    pieces = [Piece(i, np.arange(a, a + s), empty, empty, (), 0, (i,)) for i, (a, s) in enumerate(zip(starts, sizes))]
    rows = np.empty(int(np.sum(sizes)), np.int64)
    at = 0
    for i in rng.permutation(len(sizes)):
        rows[pieces[i].reaches] = at + rng.permutation(int(sizes[i]))
        at += int(sizes[i])
    return pieces, rows


def test_balance_by_file_rows_keeps_each_bin_together():
    """Given each reach's file row, the bins are runs of pieces consecutive in the file (each bin's rows one span,
    the spans disjoint, in file order), the least largest bin of any such cut (brute force over every cut)."""
    sizes = np.random.default_rng(5).integers(1, 40, size=10)
    pieces, rows = _in_file_order(sizes, seed=1)
    bins = balance(pieces, 3, steps=10, rows=rows, tolerance=1.0)
    assert sorted(p.index for b in bins for p in b) == list(range(10))
    spans = [(int(rows[np.concatenate([p.reaches for p in b])].min()),
              int(rows[np.concatenate([p.reaches for p in b])].max()) + 1, sum(p.n_reaches for p in b)) for b in bins]
    assert all(hi - lo == n for lo, hi, n in spans)  # each bin reads only its own rows
    assert [lo for lo, _, _ in spans] == sorted(lo for lo, _, _ in spans) and spans[0][0] == 0
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:])) and spans[-1][1] == rows.size
    in_file = [int(sizes[i]) for i in np.argsort([rows[p.reaches].min() for p in pieces])]
    best = min(max(sum(in_file[a:b]) for a, b in zip((0, i, j), (i, j, 10)))
               for i in range(0, 11) for j in range(i, 11))  # brute force over every cut into 3 runs
    assert max(sum(p.n_reaches for p in b) for b in bins) == best
    assert balance(pieces, 3, steps=10, rows=rows, tolerance=1.0) == bins  # deterministic


def test_balance_by_file_rows_keeps_lpt_where_runs_would_be_uneven():
    """The runs are kept within the tolerance of LPT's largest bin; a large piece in the middle of the file
    makes any cut into two runs uneven (work 64 + 1 against 64: LPT's 65 and 64), so LPT's bins come back."""
    sizes = np.array([1] * 32 + [64] + [1] * 32)
    empty = np.empty(0, np.int64)
    pieces = [Piece(i, np.arange(a, a + s), empty, empty, (), 0, (i,))
              for i, (a, s) in enumerate(zip(np.r_[0, np.cumsum(sizes)[:-1]], sizes))]
    rows = np.arange(int(sizes.sum()))  # the file in the pieces' order: the large piece in the middle
    lpt = balance(pieces, 2)
    assert max(sum(p.n_reaches for p in b) for b in lpt) == 64
    assert balance(pieces, 2, rows=rows) == lpt  # runs: 64 + 32 = 96 > 1.1 x 64
    runs = balance(pieces, 2, rows=rows, tolerance=0.5)
    assert [[p.index for p in b] for b in runs] == [list(range(33)), list(range(33, 65))]  # 96 <= 1.5 x 64
    pieces3 = pieces + [Piece(65, np.arange(128, 160), empty, empty, (), 0, (65,))]
    runs3 = balance(pieces3, 3, rows=np.arange(160))  # three runs: 32 | 64 | 32 + 32, LPT's largest 64
    assert [sum(p.n_reaches for p in b) for b in runs3] == [32, 64, 64]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_piecewise_equals_whole(forest, scheme):
    params = _params(forest, scheme)
    q = _runoff(forest, 150 if scheme.startswith(("musk", "linear")) else 40)  # convolutions cost T^2 here
    whole = _quiet(route, forest, q, params, scheme, dt=DT, dtype=torch.float64).numpy()
    cases = [(basins(forest), 1), (basins(forest), 3), (clusters(forest, 40), 2)]
    if not scheme.startswith(("musk", "linear", "pure")):  # convolving by level costs seconds per stage here
        cases = [(basins(forest), 3), (clusters(forest, 250), 2)]
    for pieces, n_bins in cases:
        got = _quiet(route_partitioned, forest, pieces, q, params, scheme, dt=DT, n_bins=n_bins,
                     dtype=torch.float64)
        np.testing.assert_allclose(got, whole, rtol=1e-11, atol=1e-11 * np.abs(whole).max())


def test_piecewise_equals_the_float64_reference(forest):
    """Against the independent reference router (plain recursion, reach by reach)."""
    params = _params(forest, "muskingum")
    q = _runoff(forest, 80, batch=2, seed=4)
    expect = _quiet(route_reference, forest, q, params, "muskingum", dt=DT)
    got = _quiet(route_partitioned, forest, clusters(forest, 25), q, params, "muskingum", dt=DT, dtype=torch.float64,
                 map=ThreadPoolExecutor(2).map)
    np.testing.assert_allclose(got, expect, rtol=1e-9, atol=1e-9 * np.abs(expect).max())


def test_float32_pieces_within_float32_rounding(forest):
    params = _params(forest, "muskingum_nonneg")
    q = _runoff(forest, 100).astype(np.float32)
    whole = _quiet(route, forest, q, params, dt=DT).numpy()
    got = _quiet(route_partitioned, forest, clusters(forest, 30), q, params, dt=DT)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, whole, rtol=2e-5, atol=1e-5 * np.abs(whole).max())


@pytest.mark.parametrize("scheme", ["muskingum_nonneg", "pure_lag"])
def test_time_chunks_of_pieces_equal_one_pass(forest, scheme):
    params = _params(forest, scheme)
    q = _runoff(forest, 300, batch=2, seed=9)
    pieces = clusters(forest, 50)
    length = 48 if scheme == "pure_lag" else None  # convolving schemes carry a fixed-length history
    whole = _quiet(route, forest, q, params, scheme, dt=DT, dtype=torch.float64, kernel_length=length).numpy()
    states, parts = None, []
    for a, b in ((0, 1), (1, 120), (120, 300)):
        part, states = _quiet(route_partitioned, forest, pieces, q[..., a:b], params, scheme, dt=DT, n_bins=2,
                              dtype=torch.float64, states=states, return_state=True, kernel_length=length)
        parts.append(part)
    np.testing.assert_allclose(np.concatenate(parts, -1), whole, rtol=1e-10, atol=1e-10 * np.abs(whole).max())


def test_route_piece_by_hand_and_its_refusals(forest):
    params = _params(forest, "muskingum")
    q = _runoff(forest, 60)
    pieces = clusters(forest, 40)
    whole = _quiet(route, forest, q, params, "muskingum", dt=DT, dtype=torch.float64).numpy()
    out = np.zeros_like(whole)
    for stage in stages(pieces):
        piece = merge(stage)
        got, _ = _quiet(route_piece, piece, piece.subnetwork(forest), piece.rows(q), piece_params(params, piece),
                        "muskingum", dt=DT, inflow=inflow_of(piece, out), dtype=torch.float64)
        out[piece.reaches] = got
    np.testing.assert_allclose(out, whole, rtol=1e-11, atol=1e-11 * np.abs(whole).max())
    cut = next(p for p in pieces if p.inflow_from.size)
    sub = cut.subnetwork(forest)
    with pytest.raises(InputError, match="no inflow"):
        route_piece(cut, sub, cut.rows(q), piece_params(params, cut), "muskingum", dt=DT)
    with pytest.raises(InputError, match="exactly"):  # closure's truncated kernels have no exact transfer
        _quiet(route_piece, cut, sub, cut.rows(q), piece_params(params, cut), "muskingum", dt=DT,
               inflow=inflow_of(cut, whole), engine="closure")
    with pytest.raises(InputError, match="one stage"):
        merge([pieces[0], cut])
    with pytest.raises(InputError, match="cover"):
        route_partitioned(forest, pieces[1:], q, params, "muskingum", dt=DT)


def test_networks_whose_rivers_split_route_by_joined_basins():
    from thalweg.network import scheidegger_dag

    dag = scheidegger_dag(600, seed=4)
    assert dag.splits is not None
    params = _params(dag, "muskingum_nonneg")
    q = _runoff(dag, 60)
    whole = _quiet(route, dag, q, params, dt=DT, dtype=torch.float64).numpy()
    pieces = basins(dag)
    _check_cover(dag, pieces)
    got = _quiet(route_partitioned, dag, pieces, q, params, dt=DT, n_bins=3, dtype=torch.float64)
    np.testing.assert_allclose(got, whole, rtol=1e-11, atol=1e-11 * np.abs(whole).max())
    with pytest.raises(InputError, match="not cut"):
        clusters(dag, 5)
    assert len(clusters(dag, dag.n_reaches)) == len(pieces)
