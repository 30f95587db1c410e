"""``thalweg route --parameters MODEL``: a saved regression model sets every reach's parameters."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from thalweg.cli import main
from thalweg.network import scheidegger_network
from thalweg.params.model_file import apply_model, save_model
from thalweg.params.models import build_model
from thalweg.results import read_discharge
from thalweg.routing import route
from thalweg.testing.layers import write_layer

DT = 3600.0


@pytest.fixture
def files(tmp_path):
    net = scheidegger_network(120, seed=5)
    ds = np.where(net.downstream >= 0, net.ids[np.maximum(net.downstream, 0)], -1)
    rivers = write_layer(tmp_path / "streams.parquet", "geoglows", net.ids, ds, lengths=net.length, areas=net.area)
    volumes = np.random.default_rng(2).gamma(1.5, 2000.0, size=(net.n_reaches, 48)).astype("float32")
    runoff = tmp_path / "m3_riv.nc"
    xr.Dataset({"m3_riv": (("time", "rivid"), volumes.T, {"units": "m3"}),
                "rivid": (("rivid",), net.ids.astype("int32")),
                "time": (("time",), np.arange(48) * int(DT), {"units": "seconds since 2010-01-01 00:00:00"})}
               ).to_netcdf(runoff)
    model = build_model("regression", net, "muskingum", params={}, seed=3)
    with torch.no_grad():  # a model that is not the prior: its last layer moved off zero
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p, generator=torch.Generator().manual_seed(1)))
    path = save_model(model, tmp_path / "model.json")
    return net, rivers, runoff, volumes, path


@pytest.mark.filterwarnings("ignore::thalweg.errors.ThalwegWarning")
def test_route_with_a_parameter_model_equals_routing_with_its_table(files, tmp_path):
    net, rivers, runoff, volumes, model = files
    out = tmp_path / "Q.nc"
    assert main(["route", str(rivers), str(runoff), "-o", str(out), "--scheme", "muskingum",
                 "--parameters", str(model), "-q", "--no-gpkg"]) == 0
    from thalweg.hydrography import read_network

    read = read_network(rivers)
    params = apply_model(model, read)
    runoff_m3s = _aligned(read, net, volumes) / DT
    expected = route(read, runoff_m3s, params, "muskingum", dt=DT).numpy()
    got = read_discharge(out)
    order = got.index_of(read.ids)
    np.testing.assert_allclose(got.values[order], expected, rtol=1e-5, atol=1e-6)
    uniform = route(read, runoff_m3s, {"k": np.full_like(params["k"], np.median(params["k"])), "x": params["x"]},
                    "muskingum", dt=DT).numpy()
    assert not np.allclose(expected, uniform)  # the model's per-reach k reach the routing


def _aligned(read, net, volumes):
    """The volumes [reach, time] in the order of ``read`` (read back from the file)."""
    pos = {int(r): i for i, r in enumerate(net.ids)}
    return volumes[[pos[int(r)] for r in read.ids]]


def test_a_model_for_another_scheme_or_with_constants_is_refused(files, tmp_path, capsys):
    _, rivers, runoff, _, model = files
    assert main(["route", str(rivers), str(runoff), "-o", str(tmp_path / "Q.nc"), "--parameters", str(model)]) == 3
    err = capsys.readouterr().err
    assert "is for the scheme 'muskingum', not 'muskingum_nonneg'" in err and "--scheme muskingum" in err
    assert main(["route", str(rivers), str(runoff), "-o", str(tmp_path / "Q.nc"), "--scheme", "muskingum",
                 "--parameters", str(model), "--k", "3600"]) == 3
    err = capsys.readouterr().err
    assert "given twice: by model.json and as k" in err, err
    # the hint names what the user gave (k) and the flag to drop, not --param they never typed
    assert "Leave out k to route with the file's values, or leave out --parameters to route with k." in err, err


@pytest.mark.filterwarnings("ignore::thalweg.errors.ThalwegWarning")
def test_route_takes_a_per_reach_parameter_table(files, tmp_path, capsys):
    """--parameters PARAMS.csv (reach_id + every parameter, as calibrate and train write, in any row order, extra
    columns ignored) routes with exactly those values; a table missing reaches or columns is refused by name."""
    import pandas as pd

    from thalweg.hydrography import read_network

    net, rivers, runoff, volumes, _ = files
    read = read_network(rivers)
    rng = np.random.default_rng(7)
    k = rng.uniform(1800.0, 20000.0, read.n_reaches)
    x = rng.uniform(0.1, 0.3, read.n_reaches)
    order = rng.permutation(read.n_reaches)
    table = pd.DataFrame({"reach_id": read.ids[order], "zone": 0, "k": k[order], "x": x[order]})
    path = tmp_path / "fit_params.csv"
    table.to_csv(path, index=False, float_format="%.17g")
    out = tmp_path / "Q.nc"
    assert main(["route", str(rivers), str(runoff), "-o", str(out), "--scheme", "muskingum", "--parameters",
                 str(path), "-q", "--no-gpkg"]) == 0
    expected = route(read, _aligned(read, net, volumes) / DT, {"k": k, "x": x}, "muskingum", dt=DT).numpy()
    got = read_discharge(out)
    np.testing.assert_allclose(got.values[got.index_of(read.ids)], expected, rtol=1e-5, atol=1e-6)

    table.iloc[1:].to_csv(tmp_path / "short.csv", index=False)
    table.drop(columns="x").to_csv(tmp_path / "no_x.csv", index=False)
    for name, fragment in (("short.csv", f"no row for 1 of the network's reaches: {read.ids[order[0]]}"),
                           ("no_x.csv", "has no column x, which the 'muskingum' scheme needs")):
        assert main(["route", str(rivers), str(runoff), "-o", str(tmp_path / "bad.nc"), "--scheme", "muskingum",
                     "--parameters", str(tmp_path / name), "-q", "--no-gpkg"]) == 3
        err = capsys.readouterr().err
        assert name in err and fragment in err, err
