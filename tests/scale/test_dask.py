"""Dask: basin partitions and time chunks on a LocalCluster of 2 workers give the one-process results (to float32
rounding)."""
from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
from thalweg.errors import InputError, ThalwegWarning
from thalweg.network import scheidegger_network
from thalweg.params import resolve_params
from thalweg.routing import route
from thalweg.scale import basins, clusters, route_partitioned, route_piece

distributed = pytest.importorskip("distributed")

from thalweg.scale.distributed import DaskRouter  # noqa: E402

DT = 3600.0


@pytest.fixture(scope="module")
def cluster():
    """Two workers in this process (starting worker processes costs seconds on 2 cores; pickling is tested
    apart, below), reached through the scheduler's TCP address like a remote cluster."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as c:
        yield c


@pytest.fixture(scope="module")
def client(cluster):
    with distributed.Client(cluster.scheduler_address) as c:
        c.wait_for_workers(2, timeout="60s")
        yield c


@pytest.fixture(scope="module")
def net():
    return scheidegger_network(1500, seed=21)


def _params(net):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        return resolve_params(net, "muskingum_nonneg")[0]


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        return fn(*args, **kwargs)


@pytest.mark.parametrize("cut", [None, 120])
def test_dask_equals_one_process(client, net, cut):
    params = _params(net)
    q = np.random.default_rng(5).gamma(2.0, 1.0, size=(net.n_reaches, 160)).astype(np.float32)
    pieces = basins(net) if cut is None else clusters(net, cut)
    router = _quiet(DaskRouter, net, params, "muskingum_nonneg", dt=DT, client=client, pieces=pieces)
    assert len(router.stages) == (1 if cut is None else len({p.stage for p in pieces}))
    first = _quiet(router, q[:, :70])
    saved = router.get_state()  # fetched from the workers, as a checkpoint does
    second = _quiet(router, q[:, 70:])  # the second time chunk continues from the state left on the workers
    ref1, states = _quiet(route_partitioned, net, pieces, q[:, :70], params, dt=DT, n_bins=2, return_state=True)
    ref2 = _quiet(route_partitioned, net, pieces, q[:, 70:], params, dt=DT, n_bins=2, states=states)
    # the numbers of one process with the same partition: equal but for torch's last bits (its vectorised
    # elementwise math rounds by where a thread's share of the reaches starts, and workers run other thread counts)
    for got, ref in ((first, ref1), (second, ref2)):
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-7 * ref.max())
    whole = _quiet(route, net, q, params, dt=DT).numpy()
    np.testing.assert_allclose(np.concatenate([first, second], 1), whole, rtol=2e-6, atol=1e-6 * whole.max())
    assert set(saved) == set(states)
    router.set_state(saved)  # a resumed run puts it back
    again = _quiet(router, q[:, 70:])
    np.testing.assert_allclose(again, second, rtol=1e-6, atol=1e-7 * second.max())
    with pytest.raises(InputError, match="another number"):
        router.set_state({(999,): None})


def test_what_goes_to_workers_pickles(net):
    """Workers in other processes get pieces, sub-networks, parameters and states by pickle."""
    params = _params(net)
    piece = clusters(net, 100)[-1]
    static = pickle.loads(pickle.dumps((piece, piece.subnetwork(net), {k: np.asarray(v)[piece.reaches]
                                                                       for k, v in params.items()})))
    q = np.ones((piece.n_reaches, 5))
    inflow = np.ones((piece.inflow_from.size, 5))
    a, state = _quiet(route_piece, static[0], static[1], q, static[2], dt=DT, inflow=inflow, return_state=True)
    b, _ = _quiet(route_piece, piece, piece.subnetwork(net), q, static[2], dt=DT, inflow=inflow,
                  state=pickle.loads(pickle.dumps(state)), return_state=True)
    c, _ = _quiet(route_piece, piece, piece.subnetwork(net), q, static[2], dt=DT, inflow=inflow, state=state,
                  return_state=True)
    assert np.array_equal(b, c) and np.isfinite(a).all()


def test_thalweg_route_on_a_scheduler_equals_one_process(cluster, tmp_path):
    from thalweg.cli import main
    from thalweg.results.reader import read_discharge

    sample = Path(__file__).resolve().parents[2] / "resources" / "sample"
    args = [str(sample / "cance_rivers.gpkg"), str(sample / "cance_runoff.nc"), "--quiet", "--chunk-steps", "1000"]
    assert main(["route", *args, "-o", str(tmp_path / "local.nc"), "--stream", "always"]) == 0
    assert main(["route", *args, "-o", str(tmp_path / "dask.nc"), "--scheduler", cluster.scheduler_address]) == 0
    local, dask = read_discharge(tmp_path / "local.nc"), read_discharge(tmp_path / "dask.nc")
    np.testing.assert_allclose(dask.values, local.values, rtol=2e-6, atol=1e-6 * local.values.max())
    assert json.loads((tmp_path / "dask.settings.json").read_text())["scheduler"] == cluster.scheduler_address
