"""thalweg export-params: the routing parameters per reach in RAPID's and river-route's layouts (issue 7)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from thalweg.cli import main
from thalweg.errors import InputError, NetworkError
from thalweg.network import from_arrays, scheidegger_network
from thalweg.results.params_export import export_params
from thalweg.workflow import resolve_params


@pytest.fixture
def net():
    return scheidegger_network(60, seed=7)


def test_rapid_layout_is_consistent_and_holds_the_routing_parameters(tmp_path, net):
    files, used = export_params(tmp_path, net, "muskingum", {"x": 0.2}, ["rapid"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.csv", "rapid_connect.csv", "riv_bas_id.csv", "x.csv"]
    connect = pd.read_csv(files["rapid_connect.csv"], header=None).to_numpy()
    ids = pd.read_csv(files["riv_bas_id.csv"], header=None)[0].to_numpy()
    k = pd.read_csv(files["k.csv"], header=None)[0].to_numpy()
    x = pd.read_csv(files["x.csv"], header=None)[0].to_numpy()
    assert len(ids) == len(k) == len(x) == len(connect) == net.n_reaches
    np.testing.assert_array_equal(connect[:, 0], ids)
    row = {int(r): i for i, r in enumerate(ids)}
    width = connect.shape[1] - 3
    for i, (rid, down, n_up) in enumerate(connect[:, :3]):
        p = int(net.index_of([rid])[0])
        expected_down = 0 if net.downstream[p] < 0 else int(net.ids[net.downstream[p]])
        assert down == expected_down
        if down:
            assert row[int(down)] > i  # every reach before the reach it drains to
        ups = sorted(int(u) for u in net.ids[net.downstream == p])
        assert n_up == len(ups) and sorted(connect[i, 3:3 + n_up].tolist()) == ups
        assert (connect[i, 3 + n_up:] == 0).all()
    assert width == max(np.bincount(net.downstream[net.downstream >= 0]))
    # the same numbers as the routing uses (GEOGloWS rule for k here), in the file's order
    params, _ = resolve_params(net, "muskingum", {"x": 0.2})
    order = net.index_of(ids)
    np.testing.assert_allclose(k, params["k"][order], rtol=1e-9)
    assert (x == 0.2).all() and used["x"].startswith("constant")


def test_river_route_layout(tmp_path, net):
    import pyarrow.parquet as pq

    files, _ = export_params(tmp_path, net, "muskingum", {"k": 7200.0, "x": 0.3}, ["river-route"])
    table = pq.read_table(files["params.parquet"]).to_pandas()
    assert list(table.columns) == ["river_id", "downstream_river_id", "k", "x"]
    assert len(table) == net.n_reaches and (table.k == 7200.0).all() and (table.x == 0.3).all()
    pos = {int(r): i for i, r in enumerate(table.river_id)}
    for i, d in enumerate(table.downstream_river_id):
        assert d == -1 or pos[int(d)] > i
    assert int((table.downstream_river_id == -1).sum()) == net.outlets.size


def test_export_refusals(tmp_path):
    net = from_arrays([0, 2, 3], [3, 3, -1], [1000.0, 1000.0, 1000.0], [1e6, 1e6, 3e6])
    with pytest.raises(NetworkError, match="0 or negative.*layouts='river-route'"):
        export_params(tmp_path, net, "muskingum", {"k": 3600.0}, ["rapid", "river-route"])
    assert not [p for p in tmp_path.iterdir() if not p.name.startswith(".params.lock")]
    with pytest.raises(InputError, match="Muskingum k and x"):
        export_params(tmp_path, net, "linear_storage", {}, ["river-route"])
    with pytest.raises(InputError, match=r"'x' = 0.7 is outside \[0, 0.5\]"):  # the parameters' one check
        export_params(tmp_path, net, "muskingum", {"k": 3600.0, "x": 0.7}, ["river-route"])


def test_cli_export_params(tmp_path, net, capsys):
    from thalweg.testing import write_layer

    ds_ids = np.where(net.downstream >= 0, net.ids[np.maximum(net.downstream, 0)], -1)
    path = write_layer(tmp_path / "rivers.parquet", "geoglows", net.ids, ds_ids, lengths=net.length, areas=net.area)
    out = tmp_path / "params"
    assert main(["export-params", str(path), "-o", str(out), "--k", "5400", "--x", "0.1"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["k.csv", "params.parquet", "rapid_connect.csv",
                                                      "riv_bas_id.csv", "x.csv"]
    assert (pd.read_csv(out / "k.csv", header=None)[0] == 5400).all()
    assert main(["export-params", str(path), "-o", str(out), "--k", "5400", "--k-field", "k"]) == 3
    assert "given twice" in capsys.readouterr().err
