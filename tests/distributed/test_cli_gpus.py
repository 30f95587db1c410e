"""``thalweg route --gpus N``: the flag from the one settings model, the same files as one process, bit for bit,
and the CPU fallback said once."""
from __future__ import annotations

import json

import numpy as np
import xarray as xr
from thalweg.cli import main
from thalweg.network import scheidegger_network
from thalweg.results import read_discharge
from thalweg.testing.layers import write_layer

DT = 3 * 3600.0


def test_route_gpus_writes_what_one_process_writes(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # this machine's case in CI: no GPU
    net = scheidegger_network(400, seed=21)
    ds = np.where(net.downstream >= 0, net.ids[np.maximum(net.downstream, 0)], -1)
    network = write_layer(tmp_path / "streams.parquet", "geoglows", net.ids, ds, lengths=net.length, areas=net.area)
    volumes = np.random.default_rng(3).gamma(1.5, 2000.0, size=(net.n_reaches, 30)).astype("float32")
    xr.Dataset({"m3_riv": (("time", "rivid"), volumes.T, {"units": "m3"}), "rivid": (("rivid",), net.ids),
                "time": (("time",), np.arange(30) * int(DT), {"units": "seconds since 2010-01-01 00:00:00"})}
               ).to_netcdf(tmp_path / "m3_riv.nc")
    runs = {}
    for name, extra in (("one", []), ("two", ["--gpus", "2"])):
        out = tmp_path / name / "Q.nc"
        assert main(["route", str(network), str(tmp_path / "m3_riv.nc"), "-o", str(out), "-q", *extra]) == 0
        runs[name] = out
    err = capsys.readouterr().err
    assert err.count("torch sees no GPU: running 2 CPU processes (gloo) instead of 2 GPU(s)") == 1
    one, two = read_discharge(runs["one"]), read_discharge(runs["two"])
    assert np.array_equal(one.values, two.values) and np.array_equal(one.ids, two.ids)
    assert np.abs(one.values).max() > 0
    saved = json.loads((tmp_path / "two" / "Q.settings.json").read_text())
    assert saved["gpus"] == 2 and json.loads((tmp_path / "one" / "Q.settings.json").read_text())["gpus"] == 0
