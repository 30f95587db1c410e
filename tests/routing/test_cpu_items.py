"""CPU work items: consecutive basins packed into segments, routed in one compiled call each."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from _routing_cases import DT, runoff, scheme_params
from thalweg.errors import ThalwegWarning
from thalweg.irf import SCHEMES
from thalweg.network import scheidegger_network
from thalweg.routing import _cpu, route, route_reference
from thalweg.routing.topology import topology
from thalweg.testing import assert_discharge_close


@pytest.fixture(scope="module")
def many_basins():
    net = scheidegger_network(600, seed=2)
    assert net.outlets.size > 10
    return net


@pytest.mark.parametrize("parts", [1, 3, 8, 10_000])
def test_segments_cover_every_reach_once_at_basin_ends(many_basins, parts):
    topo = topology(many_basins)
    seg = _cpu._segments(topo, parts)
    assert seg[0][0] == 0 and seg[-1][1] == topo.n
    assert all(a1 == b0 for (_, a1), (b0, _) in zip(seg, seg[1:]))
    assert set(b for _, b in seg) <= set(int(x) for x in topo.basin_ptr)
    # none past the target unless it is a single basin; none that could take in its successor's first basin
    # (so at most 2 parts + 1 segments)
    target = -(-topo.n // parts)
    bp = np.asarray(topo.basin_ptr)
    for i, (a, b) in enumerate(seg):
        single = bp[np.searchsorted(bp, a) + 1] == b
        assert b - a <= target or single
        if i + 1 < len(seg):
            assert bp[np.searchsorted(bp, b) + 1] - a > target
    assert len(seg) <= 2 * max(parts, 1) + 1


@pytest.mark.parametrize("scheme", ["muskingum", "hayami"])
def test_threads_and_segments_route_like_the_reference(many_basins, scheme):
    if not _cpu.available():
        pytest.skip("needs the compiled CPU engine")
    rng = np.random.default_rng(11)
    params = scheme_params(SCHEMES[scheme], many_basins, rng, max_travel=2 * DT)
    q = runoff(many_basins, rng, batch=3, steps=120)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        ref = route_reference(many_basins, q, params, scheme, dt=DT)
        before = torch.get_num_threads()
        try:
            outs = []
            for threads in (1, 2):
                torch.set_num_threads(threads)
                qq = torch.as_tensor(q).requires_grad_(True)
                out = route(many_basins, qq, params, scheme, dt=DT, engine="exact", dtype=torch.float64)
                out.sum().backward()
                outs.append((out.detach(), qq.grad))
        finally:
            torch.set_num_threads(before)
    assert_discharge_close(outs[0][0], ref, rtol=1e-10, ids=many_basins.ids)
    for a, b in zip(*outs):
        assert float((a - b).abs().max()) <= 1e-12 * float(b.abs().max())
