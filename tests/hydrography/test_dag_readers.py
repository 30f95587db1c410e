"""Readers keep every branch of rivers that split: NHDPlus divergences, plain lines, --links tables; the CLI."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from thalweg.cli import main
from thalweg.errors import CycleError, NetworkError, ThalwegWarning
from thalweg.hydrography import read_network
from thalweg.routing import route, route_reference

# 11 -> 12; 12 diverges into 13 (main, Divergence 1) and 14 (minor, Divergence 2); 13, 14 -> 15 -> 16 (outlet)
COMID = [11, 12, 13, 14, 15, 16]
AREA_KM2 = [10.0, 20.0, 20.5, 0.5, 21.5, 22.0]  # the minor path drains only its own catchment
DIVERGENCE = [0, 0, 1, 2, 0, 0]
LINKS = [(0, 11), (11, 12), (12, 13), (12, 14), (13, 15), (14, 15), (15, 16), (16, 0)]


def _flowlines(folder, *, div_frac=None, hydroseq=False):
    frame = {"COMID": COMID, "LENGTHKM": [1.5] * 6, "TotDASqKM": AREA_KM2, "Divergence": DIVERGENCE,
             "StreamOrde": [1, 1, 1, 1, 2, 2]}
    if hydroseq:  # Hydroseq decreases downstream; DnMinorHyd names the minor path
        hs = {11: 60, 12: 50, 13: 40, 14: 45, 15: 30, 16: 20}
        frame["Hydroseq"] = [hs[c] for c in COMID]
        frame["DnHydroseq"] = [50, 40, 30, 30, 20, 0]
        frame["DnMinorHyd"] = [0, 45, 0, 0, 0, 0]
    path = folder / "flowlines.parquet"
    pd.DataFrame(frame).to_parquet(path)
    if not hydroseq:
        flow = pd.DataFrame({"FROMCOMID": [a for a, _ in LINKS], "TOCOMID": [b for _, b in LINKS]})
        if div_frac is not None:
            flow["DivFrac"] = [div_frac.get((a, b), np.nan) for a, b in LINKS]
        flow.to_csv(folder / "PlusFlow.csv", index=False)
    return path


def _ids_of(net, positions):
    return net.ids[np.asarray(positions)].tolist()


def test_nhdplus_divergence_without_fractions_keeps_the_main_path(tmp_path):
    path = _flowlines(tmp_path)
    with pytest.warns(ThalwegWarning, match=r"minor paths 12 -> 14 are ignored\. Pass bifurcations='split'"):
        net = read_network(path)
    assert net.splits is None and _ids_of(net, net.downstream[net.index_of([12])]) == [13]


@pytest.mark.parametrize("hydroseq", [False, True], ids=["plusflow", "hydroseq"])
def test_nhdplus_divergence_split_by_drainage_area_and_routed(tmp_path, hydroseq):
    path = _flowlines(tmp_path, hydroseq=hydroseq)
    with pytest.warns(ThalwegWarning, match=r"1 split reach has no split fractions in the data \(12\); its "
                                            r"outflow is divided by the receiving reaches' drainage area"):
        net = read_network(path, bifurcations="split")
    s = net.splits
    assert _ids_of(net, s.reach) == [12] and _ids_of(net, s.to) == [13, 14]
    np.testing.assert_allclose(s.fraction, [20.5 / 21.0, 0.5 / 21.0])
    q = np.zeros((1, 6, 300))
    q[..., :10] = 1.0
    params = {"k": 3600.0, "x": 0.2}
    out = route(net, q.astype("float32"), params, "muskingum_nonneg", dt=3600.0).numpy()
    np.testing.assert_allclose(out, route_reference(net, q, params, "muskingum_nonneg", dt=3600.0), rtol=1e-5,
                               atol=1e-6)
    outlet = net.index_of([16])[0]
    assert abs(out[0, outlet].sum() - q.sum()) < 1e-5 * q.sum()


def test_nhdplus_flow_split_field_gives_the_fractions(tmp_path):
    path = _flowlines(tmp_path, div_frac={(12, 13): 0.9, (12, 14): 0.1})
    net = read_network(path)  # fractions in the data: split by default, no warning needed
    np.testing.assert_allclose(net.splits.fraction, [0.9, 0.1])
    assert net.splits.origin == "field"


def test_links_table_overrides_the_layer(tmp_path):
    path = _flowlines(tmp_path)
    links = tmp_path / "links.csv"
    pd.DataFrame({"from_id": [12, 12, 15], "to_id": [13, 14, 16], "fraction": [0.25, 0.75, 1.0]}).to_csv(links,
                                                                                                        index=False)
    net = read_network(path, links=links)
    np.testing.assert_allclose(net.splits.fraction, [0.25, 0.75])
    assert net.splits.origin == "links"
    pd.DataFrame({"from_id": [12, 12], "to_id": [13, 14], "fraction": [0.5, 0.4]}).to_parquet(tmp_path / "l.parquet")
    with pytest.raises(NetworkError, match=r"do not sum to 1 \(12 -> 13: 0.5 \+ 12 -> 14: 0.4 = 0.9\)") as err:
        read_network(path, links=tmp_path / "l.parquet")
    assert err.value.path.endswith("l.parquet") and err.value.ids == [12] and err.value.layer is None
    pd.DataFrame({"from_id": [16], "to_id": [11]}).to_csv(tmp_path / "cycle.csv", index=False)
    with pytest.raises(CycleError, match=r"row 16 -> 11 \(data row 1\) closes a cycle") as err:
        read_network(path, links=tmp_path / "cycle.csv")
    assert err.value.path.endswith("cycle.csv") and err.value.layer is None
    assert "DSLINKNO" not in str(err.value) and "layer" not in str(err.value)


def _lines_layer(tmp_path):
    import geopandas as gpd
    import shapely

    # A ends where B and C start (a split); B and C end where D starts (the braid closes); D is the outlet
    lines = [shapely.LineString([(0, 0), (0, 1000)]), shapely.LineString([(0, 1000), (-500, 2000)]),
             shapely.LineString([(0, 1000), (600, 2000)]), shapely.LineString([(-500, 2000), (0, 3000)]),
             shapely.LineString([(600, 2000), (0, 3000)]), shapely.LineString([(0, 3000), (0, 4000)])]
    frame = gpd.GeoDataFrame({"rid": [1, 2, 3, 4, 5, 6]}, geometry=lines, crs="EPSG:3857")
    path = tmp_path / "lines.gpkg"
    frame.to_file(path, layer="rivers")
    return path


def test_plain_lines_whose_end_meets_two_starts_split(tmp_path):
    path = _lines_layer(tmp_path)
    with pytest.warns(ThalwegWarning, match=r"in equal shares \(no drainage area\)"):
        net = read_network(path, schema="lines", fields={"id": "rid"}, bifurcations="split")
    assert _ids_of(net, net.splits.reach) == [1] and sorted(_ids_of(net, net.splits.to)) == [2, 3]
    np.testing.assert_allclose(net.splits.fraction, [0.5, 0.5])
    assert net.summary()["largest_multipath_region"] == 5  # 1, its branches 2, 3 and their reaches 4, 5
    q = np.random.default_rng(1).gamma(2.0, 1.0, size=(6, 50))
    out = route(net, torch.as_tensor(q), {"tau": 3600.0}, "linear_storage", dt=3600.0, dtype=torch.float64)
    np.testing.assert_allclose(out.numpy(), route_reference(net, q, {"tau": 3600.0}, "linear_storage", dt=3600.0),
                               rtol=1e-10)


def test_info_reports_splits_and_the_largest_multipath_region(tmp_path, capsys):
    path = _flowlines(tmp_path)
    assert main(["info", str(path), "--bifurcations", "split"]) == 0
    text = capsys.readouterr().out
    assert "splits         1 reach splits (2 links, fractions: area); largest multi-path region 3 reaches" in text
    assert "--bifurcations split" not in text  # splitting was asked for: no advice to ask for it
    assert main(["info", str(path)]) == 0
    text = capsys.readouterr().out
    assert "splits         none (a tree)" in text and "Pass --bifurcations split to route every branch" in text
    links = tmp_path / "links.csv"
    pd.DataFrame({"from_id": [12, 12], "to_id": [13, 14], "fraction": [0.6, 0.4]}).to_csv(links, index=False)
    assert main(["info", str(path), "--links", str(links), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["splits"] == 1 and data["split_fractions"] == "links" and data["largest_multipath_region"] == 3


def test_route_command_routes_every_branch(tmp_path, capsys):
    import xarray as xr
    from thalweg.results import read_discharge

    path = _flowlines(tmp_path, div_frac={(12, 13): 0.7, (12, 14): 0.3})
    rng = np.random.default_rng(2)
    volumes = rng.gamma(1.5, 2000.0, size=(6, 30)).astype("float32")
    dt = 3600
    runoff = tmp_path / "m3_riv.nc"
    xr.Dataset({"m3_riv": (("time", "rivid"), volumes.T, {"units": "m3"}),
                "rivid": (("rivid",), np.array(COMID, dtype="int32")),
                "time": (("time",), np.arange(30) * dt, {"units": "seconds since 2010-01-01 00:00:00"})}
               ).to_netcdf(runoff)
    out = tmp_path / "Q.nc"
    assert main(["route", str(path), str(runoff), "-o", str(out), "--scheme", "muskingum", "--k", "7200",
                 "--x", "0.2", "--no-gpkg", "-q"]) == 0
    net = read_network(path)
    want = route_reference(net, volumes.astype(np.float64) / dt, {"k": 7200.0, "x": 0.2}, "muskingum", dt=dt)
    got = read_discharge(out)
    np.testing.assert_allclose(got.values[got.index_of(net.ids)], want, rtol=1e-5, atol=1e-4)
    tree = read_network(path, bifurcations="main")
    assert not np.allclose(want, route_reference(tree, volumes / dt, {"k": 7200.0, "x": 0.2}, "muskingum", dt=dt))
    settings = json.loads(out.with_name("Q.settings.json").read_text())
    assert settings["bifurcations"] is None and settings["links"] is None
