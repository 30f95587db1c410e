"""The real service as a subprocess on a free port, driven through thalweg.client; inputs built here."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from thalweg.client import ClientError, start_server
from thalweg.network import scheidegger_network

START = np.datetime64("2020-01-01T00:00:00", "ns")
DT = 3600.0


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """One service for the module-independent tests (workspace in a temporary folder)."""
    proc = start_server(tmp_path_factory.mktemp("workspace"), python=sys.executable)
    yield proc
    code = proc.stop()
    assert code == 0, proc.output()


@pytest.fixture(scope="session")
def client(server):
    return server.client()


@pytest.fixture(scope="session")
def network():
    """About 300 reaches in several basins, with realistic depth."""
    return scheidegger_network(300, seed=11)


def inline_network(net, order=None) -> dict:
    """The JSON body part of an inline network, rows in ``order`` (areas in km2, lengths in m)."""
    order = np.arange(net.n_reaches) if order is None else np.asarray(order)
    ds = net.downstream
    ds_ids = np.where(ds >= 0, net.ids[np.clip(ds, 0, None)], -1)
    return {"ids": net.ids[order].tolist(), "downstream_ids": ds_ids[order].tolist(),
            "length": net.length[order].tolist(), "length_unit": "m",
            "area": (net.area[order] / 1e6).tolist(), "area_unit": "km2"}


def synthetic_runoff(net, steps: int, seed: int = 3) -> np.ndarray:
    """Runoff [N, T] in m3/s: a storm passing over gamma noise; float32 like the routing input."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    storm = 5.0 * np.exp(-0.5 * ((t - steps / 3) / (steps / 12)) ** 2)
    values = rng.gamma(2.0, 0.05, (net.n_reaches, steps)) + storm * rng.uniform(0.2, 1.0, (net.n_reaches, 1))
    return values.astype(np.float32)


def inline_runoff(values: np.ndarray, ids=None) -> dict:
    body = {"values": values.tolist(), "dt": DT, "start": "2020-01-01T00:00:00"}
    if ids is not None:
        body["ids"] = np.asarray(ids).tolist()
    return body


def assert_flows_close(actual, expected, scale=None) -> None:
    """Discharge from two float32 routings agrees to float32 rounding.

    Sums with cancellation (negative Muskingum taps) differ by a few ulps of the largest flow between
    CPUs and summation orders, so the absolute tolerance scales with the flows, not with each value.
    """
    expected = np.asarray(expected, dtype=np.float64)
    scale = float(np.abs(expected).max()) if scale is None else scale
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), expected, rtol=1e-5, atol=2e-5 * scale)


def expect_error(call, status: int, *fragments: str) -> ClientError:
    """Run ``call``; it must fail with ``status`` and a message holding every fragment."""
    with pytest.raises(ClientError) as info:
        call()
    err = info.value
    assert err.status == status, f"expected {status}, got {err.status}: {err.message}"
    for fragment in fragments:
        assert fragment in err.message, f"{fragment!r} not in {err.message!r}"
    return err


def write_m3_riv(path, net, values: np.ndarray, dt: float = DT, start=START):
    """A RAPID m3_riv NetCDF (volumes per step, time stamps at step starts)."""
    import xarray as xr

    steps = values.shape[1]
    seconds = start.astype("datetime64[s]").astype(np.int64) + (np.arange(steps) * dt).astype(np.int64)
    ds = xr.Dataset({"m3_riv": (("time", "rivid"), (values.T * dt).astype(np.float32), {"units": "m3"})},
                    coords={"rivid": ("rivid", net.ids),
                            "time": ("time", seconds, {"units": "seconds since 1970-01-01 00:00:00"})})
    ds.to_netcdf(path)
    return path


@pytest.fixture(scope="session")
def long_job(tmp_path_factory):
    """A route job that runs for seconds with a safe point every few milliseconds: a tall, deep network
    (thousands of topological levels) and a runoff file of 10,000 reaches x 1,500 steps."""
    net = scheidegger_network(height=16000, width=4, seed=7)
    steps = 1500
    values = np.zeros((net.n_reaches, steps), dtype=np.float32)
    values[net.headwaters[:50], :] = 1.0
    path = write_m3_riv(tmp_path_factory.mktemp("long") / "m3_riv.nc", net, values)
    return {"network": inline_network(net), "runoff": str(path), "n_reaches": net.n_reaches,
            "levels": net.n_levels, "write_gpkg": False}


def finished_route_jobs(workspace: Path, n_jobs: int, steps: int = 72) -> dict:
    """A workspace holding ``n_jobs`` succeeded route jobs (400 reaches, different runoff each), made by a
    service that has stopped again: a service started on it next has none of their results in memory.
    Returns the job ids, a reach id and the network."""
    net = scheidegger_network(400, seed=4)
    with start_server(workspace, python=sys.executable) as server:
        client = server.client(timeout=60)
        jobs = [client.route(inline_network(net), inline_runoff(synthetic_runoff(net, steps, seed=seed)),
                             write_gpkg=False)["id"] for seed in range(n_jobs)]
        for job in jobs:
            client.wait(job, interval=0.05, timeout=300, check=True)
    return {"jobs": jobs, "reach": int(net.ids[7]), "network": net}
