"""The Python API (issue 7, item 4): route takes numpy, torch, dask, xarray and Runoff; labelled runoff gives a
Discharge; dt comes from the runoff; unknown engine options are refused; the top level exports real objects."""
from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest
import torch
from _routing_cases import DT
from thalweg.errors import InputError, RunoffMismatchError, ThalwegWarning
from thalweg.network import scheidegger_network
from thalweg.routing import route

xr = pytest.importorskip("xarray")

T = 120
START = np.datetime64("2021-03-01T00:00:00", "ns")


@pytest.fixture(scope="module")
def case():
    net = scheidegger_network(60, seed=3)
    rng = np.random.default_rng(1)
    q = rng.gamma(2.0, 1.0, (net.n_reaches, T)).astype(np.float32)
    time = START + np.arange(T) * np.timedelta64(int(DT), "s")
    return net, q, time


PARAMS = {"k": 7200.0, "x": 0.2}


def _ref(net, q, scheme="muskingum_nonneg", **kw):
    return route(net, q, PARAMS if scheme.startswith("muskingum") else {"tau": 5000.0, "n": 2.5}, scheme, dt=DT,
                 dtype=torch.float64, device="cpu", **kw).numpy()


def test_numpy_and_torch_stay_tensors(case):
    net, q, _ = case
    out = route(net, q, PARAMS, dt=DT, device="cpu")
    assert isinstance(out, torch.Tensor) and out.shape == q.shape
    t_in = torch.as_tensor(q, dtype=torch.float64)
    out_t = route(net, t_in, PARAMS, dt=DT)
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32


def test_labelled_dataarray_is_aligned_and_gives_a_discharge(case):
    from thalweg.results import Discharge

    net, q, time = case
    perm = np.random.default_rng(0).permutation(net.n_reaches)
    da = xr.DataArray(q[perm], dims=("river_id", "time"), coords={"river_id": net.ids[perm], "time": time})
    d = route(net, da, PARAMS, dtype=torch.float64)  # dt from the time axis
    assert isinstance(d, Discharge) and d.dt == DT
    np.testing.assert_array_equal(d.ids, net.ids)
    assert d.time[0] == time[0] + np.timedelta64(int(DT), "s")  # stamped at the end of each step
    np.testing.assert_allclose(d.values, _ref(net, q), rtol=1e-6)
    ds = d.to_xarray()
    assert ds["Q"].dims == ("reach", "time") and ds.attrs["scheme"] == "muskingum_nonneg"
    # a Dataset holding one variable, and at= keeping some reaches by id
    some = net.ids[[4, 1]]
    d2 = route(net, xr.Dataset({"m3_riv": da}), PARAMS, at=some, dtype=torch.float64)
    np.testing.assert_array_equal(d2.ids, some)
    np.testing.assert_allclose(d2.values, _ref(net, q)[[4, 1]], rtol=1e-6)


@pytest.mark.parametrize("scheme", ["muskingum_nonneg", "nash_cascade"])
def test_dask_backed_runoff_is_routed_chunk_by_chunk_with_the_warm_state(case, scheme):
    dask_array = pytest.importorskip("dask.array")
    from thalweg.irf import SCHEMES

    net, q, time = case
    da = xr.DataArray(q, dims=("rivid", "time"), coords={"rivid": net.ids, "time": time}).chunk({"time": 37})
    params = PARAMS if scheme.startswith("muskingum") else {"tau": 5000.0, "n": 2.5}
    seen = []
    d = route(net, da, params, scheme, dtype=torch.float64, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    if scheme == "nash_cascade":  # convolutions carry a history as long as the scheme's automatic kernel
        p = {k: torch.full((net.n_reaches,), v, dtype=torch.float64) for k, v in params.items()}
        length = SCHEMES[scheme].auto_length(p, DT)
        expect = _ref(net, q, scheme, kernel_length=length)
    else:  # recursions carry their filter state: identical to one pass
        expect = _ref(net, q, scheme)
    np.testing.assert_allclose(d.values, expect, rtol=1e-6, atol=1e-9)
    # a bare dask array: a tensor, like numpy
    out = route(net, dask_array.from_array(q, chunks=(net.n_reaches, 50)), params, scheme, dt=DT,
                dtype=torch.float64, device="cpu")
    assert isinstance(out, torch.Tensor)
    if scheme != "nash_cascade":
        np.testing.assert_allclose(out.numpy(), expect, rtol=1e-10)


def test_runoff_object_gives_discharge_and_dt_must_agree(case):
    from thalweg.results import Discharge
    from thalweg.runoff import Runoff

    net, q, time = case
    runoff = Runoff(q, net.ids, time, DT, source="made.nc")
    d, state = route(net, runoff, PARAMS, dtype=torch.float64, return_state=True)
    assert isinstance(d, Discharge) and state.steps == T
    np.testing.assert_allclose(d.values, _ref(net, q), rtol=1e-6)
    assert route(net, runoff, PARAMS, dt=DT).n_steps == T  # the same dt is fine
    with pytest.raises(InputError, match=r"dt is 60 s, but the runoff's time step .* says 3600 s") as err:
        route(net, runoff, PARAMS, dt=60.0)
    assert "Leave out dt=" in str(err.value)


def test_plain_arrays_need_dt_and_missing_reaches_are_named(case):
    net, q, time = case
    with pytest.raises(InputError, match="the step length dt is needed") as err:
        route(net, q, PARAMS)
    assert "dt=3600" in str(err.value)
    da = xr.DataArray(q[:-2], dims=("rivid", "time"), coords={"rivid": net.ids[:-2], "time": time})
    with pytest.raises(RunoffMismatchError, match=r"2 reaches of the network have no runoff in dimension 'rivid'"):
        route(net, da, PARAMS)


def test_unknown_engine_options_are_refused_with_the_valid_ones(case):
    net, q, _ = case
    with pytest.raises(InputError, match=r"the 'exact' engine takes no option\(s\) bogus; it takes no options") as e:
        route(net, q, PARAMS, dt=DT, engine="exact", bogus=1)
    assert "closure: block_size, cluster_length, precision, tol, max_pairs" in e.value.hint
    with pytest.raises(InputError, match=r"'closure' engine takes no option\(s\) blocksize; its options are "
                                         r"block_size"):
        route(net, q, PARAMS, dt=DT, engine="closure", blocksize=16)


def test_top_level_exports_real_objects_with_their_signatures():
    import thalweg
    from thalweg.hydrography import read_network
    from thalweg.runoff import read_runoff

    for name in thalweg.__all__:
        assert hasattr(thalweg, name), name
        obj = getattr(thalweg, name)
        assert obj is not None, name
        if callable(obj) and not isinstance(obj, type):
            assert obj.__doc__, f"thalweg.{name} has no docstring"
            assert "*args" not in str(inspect.signature(obj)), name
    assert thalweg.read_network is read_network and thalweg.read_runoff is read_runoff
    assert "layer" in inspect.signature(thalweg.read_network).parameters
    for name in ("Scheme", "Parameter", "Runoff", "Discharge", "RoutingState", "Cancelled", "resolve_params"):
        assert name in thalweg.__all__, name


def test_import_thalweg_loads_no_gis_library():
    import subprocess
    import sys

    code = ("import sys, thalweg; heavy = [m for m in ('geopandas', 'pyogrio', 'rasterio', 'shapely', 'pyproj', "
            "'xarray', 'netCDF4', 'pandas', 'fiona') if m in sys.modules]; print(heavy); assert not heavy")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_scheme_parameter_warnings_stay_once_across_chunks(case):
    """muskingum_nonneg's one warning (x lowered) is given once, not once per time chunk."""
    pytest.importorskip("dask.array")
    net, q, time = case
    da = xr.DataArray(q, dims=("rivid", "time"), coords={"rivid": net.ids, "time": time}).chunk({"time": 30})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        route(net, da, {"k": 86400.0, "x": 0.3})
    assert sum("x lowered" in str(w.message) for w in caught if issubclass(w.category, ThalwegWarning)) == 1


@pytest.mark.parametrize("scheme, params", [
    ("muskingum_nonneg", {"k": 7200.0, "x": 0.25}), ("muskingum", {"k": 7200.0, "x": 0.25}),
    ("linear_storage", {"tau": 5000.0}), ("pure_lag", {"lag": 5000.0}), ("nash_cascade", {"tau": 3600.0, "n": 2.0}),
    ("hayami", {"celerity": 1.0, "diffusivity": 1e4})])
def test_route_leaves_no_reference_cycles(case, scheme, params):
    """Everything a route() call makes is freed when its result is: a cycle would hold the call's parameters and
    coefficients until Python's cyclic collector ran (a prepared route's recursion once closed over the cache that
    held it), so the next call's buffers came from fresh pages and, on a GPU, the memory stayed taken."""
    import gc

    net, q, _ = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        route(net, q, params, scheme, dt=DT, device="cpu")
        gc.collect()
        gc.disable()
        try:
            for _ in range(3):
                route(net, q, params, scheme, dt=DT, device="cpu")
                _, state = route(net, q, params, scheme, dt=DT, device="cpu", return_state=True)
                route(net, q, params, scheme, dt=DT, device="cpu", state=state)
            if scheme == "muskingum":  # gradients too
                k = torch.full((net.n_reaches,), 7200.0, dtype=torch.float64, requires_grad=True)
                route(net, q, {"k": k, "x": 0.25}, scheme, dt=DT, device="cpu").sum().backward()
            found = gc.collect()
        finally:
            gc.enable()
    assert found == 0
