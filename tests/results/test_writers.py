"""Qout / Q NetCDF round trips and conventions, summaries, GeoPackage and CSV writers, atomic failure."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from thalweg.errors import GeometryError, NetworkError, ThalwegWarning
from thalweg.network import from_arrays, scheidegger_network
from thalweg.results import (Discharge, read_discharge, summarize, write_hydrographs_csv, write_q, write_qout,
                             write_summary_gpkg)


def assert_same(a: Discharge, b: Discharge) -> None:
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.time, b.time)
    assert a.dt == b.dt and a.attrs == b.attrs


@pytest.mark.parametrize("writer", [lambda p, d: write_qout(p, d, "mean"), lambda p, d: write_qout(p, d, "end"),
                                    write_q], ids=["qout-mean", "qout-end", "q"])
def test_round_trip_is_exact(tmp_path, discharge, writer):
    path = writer(tmp_path / "out.nc", discharge)
    assert_same(read_discharge(path), discharge)


def test_round_trip_of_large_ids_and_sub_second_steps(tmp_path):
    d = Discharge(np.arange(6, dtype=np.float32).reshape(2, 3) / 7, [3_000_000_000, 5],
                  np.datetime64("2000-01-01T00:00:00.5", "ns") + np.arange(3) * np.timedelta64(500, "ms"), 0.5)
    for conv in ("mean", "end"):
        assert_same(read_discharge(write_qout(tmp_path / f"{conv}.nc", d, conv)), d)


def test_provenance_with_numpy_values_round_trips(tmp_path, discharge):
    import dataclasses

    d = dataclasses.replace(discharge, attrs={"k": np.float64(0.5), "levels": np.int64(3), "ids": np.array([1, 2]),
                                              "path": tmp_path})
    back = read_discharge(write_q(tmp_path / "q.nc", d))
    assert back.attrs == {"k": 0.5, "levels": 3, "ids": [1, 2], "path": str(tmp_path)}


def test_mean_convention_is_the_shifted_end_of_step_series(tmp_path, discharge):
    import xarray as xr

    path = write_qout(tmp_path / "Qout.nc", discharge, "mean")
    with xr.open_dataset(path) as ds:
        qout = ds["Qout"].values  # (time, rivid)
        assert ds["Qout"].dims == ("time", "rivid") and ds["Qout"].dtype == np.float32
        assert ds["Qout"].attrs["cell_methods"] == "time: mean" and ds["Qout"].attrs["units"] == "m3 s-1"
        assert ds.attrs["thalweg_time_convention"] == "mean"
        # RAPID stamps a step mean at the step start, with bounds [start, end]
        np.testing.assert_array_equal(ds["time"].values, discharge.start_time)
        np.testing.assert_array_equal(ds["time_bnds"].values[:, 1], discharge.time)
        np.testing.assert_array_equal(ds["rivid"].values, [10, 20, 30])
        np.testing.assert_array_equal(ds["Qfinal"].values, discharge.values[:, -1])
    np.testing.assert_array_equal(qout[0], 0.0)  # cold start: Q[-1] = 0
    np.testing.assert_array_equal(qout[1:], discharge.values[:, :-1].T)
    write_qout(tmp_path / "warm.nc", discharge, "mean", initial=np.array([7.0, 8.0, 9.0]))
    with xr.open_dataset(tmp_path / "warm.nc") as ds:
        np.testing.assert_array_equal(ds["Qout"].values[0], [7, 8, 9])


def test_end_convention_and_optional_coordinates(tmp_path, discharge):
    import xarray as xr

    path = write_qout(tmp_path / "Qout.nc", discharge, "end", lat=[45.0, 45.5, 46.0], lon=[4.0, 4.5, 5.0])
    with xr.open_dataset(path) as ds:
        np.testing.assert_array_equal(ds["Qout"].values, discharge.values.T)
        np.testing.assert_array_equal(ds["time"].values, discharge.time)
        assert ds["Qout"].attrs["cell_methods"] == "time: point" and {"lat", "lon"} <= set(ds["Qout"].coords)
        assert ds.attrs["thalweg_time_convention"] == "end" and "Qfinal" not in ds
        np.testing.assert_array_equal(ds["lat"].values, [45.0, 45.5, 46.0])
        assert ds.attrs["Conventions"] == "CF-1.8" and ds.attrs["scheme"] == "muskingum"
    with pytest.raises(ValueError, match="convention"):
        write_qout(tmp_path / "x.nc", discharge, "instant")


def test_river_route_q_layout(tmp_path, discharge):
    import xarray as xr

    with xr.open_dataset(write_q(tmp_path / "Q.nc", discharge)) as ds:
        assert ds["Q"].dims == ("riverId", "time") and ds["Q"].attrs["cell_methods"] == "time: point"
        np.testing.assert_array_equal(ds["Q"].values, discharge.values)
        np.testing.assert_array_equal(ds["time"].values, discharge.time)


def test_foreign_rapid_qout_keeps_step_means(tmp_path):
    import xarray as xr

    t = np.arange(3) * 10800
    xr.Dataset({"Qout": (("time", "rivid"), np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], "f4"),
                         {"units": "m3 s-1"}),
                "rivid": (("rivid",), np.array([7, 8], "i4")),
                "time": (("time",), t, {"units": "seconds since 1970-01-01 00:00:00"})}).to_netcdf(tmp_path / "r.nc")
    with pytest.warns(ThalwegWarning, match="kept as step means"):
        d = read_discharge(tmp_path / "r.nc")
    np.testing.assert_array_equal(d.values, [[1, 3, 5], [2, 4, 6]])
    assert d.time[0] == np.datetime64("1970-01-01T03:00", "ns") and d.dt == 10800
    assert d.attrs["values"] == "step mean"


def test_summary_uses_exceedance_quantiles(discharge):
    s = summarize(discharge)
    assert list(s.columns) == ["mean", "max", "time_of_max", "q05", "q50", "q95"] and s.index.name == "reach_id"
    row = s.loc[10]  # series 1, 3, 2, 5, 4
    assert row["mean"] == pytest.approx(3.0) and row["max"] == 5.0 and row["q50"] == pytest.approx(3.0)
    assert row["time_of_max"] == pd.Timestamp("2021-03-01T04:00")
    # exceeded 5 % of the time = 95th percentile: 4 + 0.8 * (5 - 4); exceeded 95 %: 1 + 0.2 * (2 - 1)
    assert row["q05"] == pytest.approx(4.8) and row["q95"] == pytest.approx(1.2)
    assert s.loc[20, "time_of_max"] == pd.Timestamp("2021-03-01T01:00")
    assert s.loc[30, "q05"] == pytest.approx(48.0)


def test_summary_gpkg(tmp_path):
    import geopandas as gpd

    net = scheidegger_network(40, seed=3, with_geometry=True)
    values = np.tile(np.arange(1, 6, dtype=np.float32), (net.n_reaches, 1)) * np.arange(1, net.n_reaches + 1)[:, None]
    d = Discharge(values, net.ids, np.datetime64("2020-01-01T01", "ns") + np.arange(5) * np.timedelta64(1, "h"),
                  3600.0)
    path = write_summary_gpkg(tmp_path / "map.gpkg", net, d)
    gdf = gpd.read_file(path, layer="discharge")
    assert len(gdf) == net.n_reaches and gdf.crs == net.crs
    assert {"reach_id", "downstream_id", "length_m", "area_km2", "mean", "max", "time_of_max", "q05", "q50",
            "q95"} <= set(gdf.columns)
    gdf = gdf.set_index("reach_id").loc[net.ids]
    np.testing.assert_allclose(gdf["mean"], 3.0 * np.arange(1, net.n_reaches + 1), rtol=1e-6)
    np.testing.assert_allclose(gdf["length_m"], net.length)
    outlet = net.ids[net.downstream < 0][0]
    assert gdf.loc[outlet, "downstream_id"] == -1
    inner = np.flatnonzero(net.downstream >= 0)[0]
    assert gdf.loc[net.ids[inner], "downstream_id"] == net.ids[net.downstream[inner]]
    assert gdf.geometry.iloc[0].equals(net.geometry[0])
    assert (pd.to_datetime(gdf["time_of_max"]) == pd.Timestamp("2020-01-01T05:00", tz="UTC")).all()
    np.testing.assert_allclose(gdf["q05"], (4 + 0.8) * np.arange(1, net.n_reaches + 1), rtol=1e-6)


def test_summary_gpkg_errors(tmp_path, discharge):
    plain = from_arrays([10, 20, 30], [30, 30, -1], [1.0, 1.0, 1.0])
    with pytest.raises(GeometryError, match="no reach geometry.*keep_geometry=True"):
        write_summary_gpkg(tmp_path / "m.gpkg", plain, discharge)
    net = scheidegger_network(20, seed=1, with_geometry=True)
    with pytest.raises(NetworkError, match="not in the network"):
        write_summary_gpkg(tmp_path / "m.gpkg", net, discharge)
    assert not list(tmp_path.iterdir())


def test_hydrographs_csv(tmp_path, discharge):
    path = write_hydrographs_csv(tmp_path / "h.csv", discharge, [30, 10])
    lines = path.read_text().splitlines()
    assert lines[0] == "time,30 [m3/s],10 [m3/s]"
    assert lines[1] == "2021-03-01T01:00:00Z,10.0,1.0" and lines[-1] == "2021-03-01T05:00:00Z,40.0,4.0"
    with pytest.raises(NetworkError, match="99"):
        write_hydrographs_csv(tmp_path / "bad.csv", discharge, [99])
    assert not (tmp_path / "bad.csv").exists()


def test_failing_writes_leave_nothing(tmp_path, discharge, monkeypatch):
    import netCDF4

    def half_then_fail(path, *args, **kwargs):  # the NetCDF writers write through netCDF4.Dataset
        open(path, "wb").write(b"CDF partial")
        raise OSError("disk full")

    monkeypatch.setattr(netCDF4, "Dataset", half_then_fail)
    for writer in (lambda p: write_qout(p, discharge), lambda p: write_q(p, discharge)):
        with pytest.raises(OSError, match="disk full"):
            writer(tmp_path / "out.nc")
    monkeypatch.setattr(pd.DataFrame, "to_csv", lambda self, path, **kw: (open(path, "w").write("time"),
                                                                         1 / 0))
    with pytest.raises(ZeroDivisionError):
        write_hydrographs_csv(tmp_path / "h.csv", discharge, [10])
    import pyogrio

    def gpkg_fails(table, path, **kwargs):
        open(path, "wb").write(b"SQLite format 3")
        open(str(path) + "-journal", "wb").write(b"")
        raise RuntimeError("GDAL error")

    monkeypatch.setattr(pyogrio, "write_arrow", gpkg_fails)
    net = scheidegger_network(20, seed=1, with_geometry=True)
    d = Discharge(np.ones((net.n_reaches, 2), np.float32), net.ids,
                  np.array(["2020-01-01T01", "2020-01-01T02"], "datetime64[ns]"), 3600.0)
    with pytest.raises(RuntimeError, match="GDAL error"):
        write_summary_gpkg(tmp_path / "map.gpkg", net, d)
    assert list(tmp_path.iterdir()) == []
    # and an existing file survives a failed rewrite untouched
    monkeypatch.undo()
    good = write_q(tmp_path / "keep.nc", discharge)
    before = good.read_bytes()
    monkeypatch.setattr(netCDF4, "Dataset", half_then_fail)
    with pytest.raises(OSError):
        write_q(good, discharge)
    assert good.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["keep.nc"]


def _observed_gauges(discharge, positions=(2, 0)):
    from thalweg.learning.gauges import Gauges

    obs = pd.DataFrame({"A": [9.0, 31.0, np.nan, 48.0, 41.0], "B": [1.5, 2.5, 2.0, 4.0, 5.0]},
                       index=pd.DatetimeIndex(discharge.time))
    return Gauges(np.array(["A", "B"]), np.array([30, 10]), np.array(positions), ["A", "B"], observed=obs), obs


def test_hydrographs_at_gauges_are_headed_by_gauge_id_with_the_observations(tmp_path, discharge):
    from thalweg.results.writers import write_hydrographs_long_csv

    gauges, obs = _observed_gauges(discharge)
    path = write_hydrographs_csv(tmp_path / "h.csv", discharge, [30, 10, 20], gauges=gauges)
    frame = pd.read_csv(path)
    assert list(frame.columns) == ["time", "A [m3/s]", "A observed [m3/s]", "B [m3/s]", "B observed [m3/s]",
                                   "reach 20 [m3/s]"]
    np.testing.assert_array_equal(frame["A [m3/s]"].to_numpy(np.float32), discharge.series(30))
    np.testing.assert_array_equal(frame["A observed [m3/s]"].to_numpy(), obs["A"].to_numpy())  # NaN kept empty
    np.testing.assert_array_equal(frame["reach 20 [m3/s]"].to_numpy(np.float32), discharge.series(20))
    long = pd.read_csv(write_hydrographs_long_csv(tmp_path / "l.csv", discharge, [20], gauges=gauges),
                       dtype={"gauge_id": str}, keep_default_na=False, na_values=[""])
    assert list(long.columns) == ["reach_id", "gauge_id", "time_utc", "q", "observed", "units"]
    b = long[long.gauge_id == "B"]
    assert (b["reach_id"] == 10).all()
    np.testing.assert_array_equal(b["observed"].to_numpy(), obs["B"].to_numpy())
    assert long[long.reach_id == 20]["observed"].isna().all()
    import dataclasses

    gauges = dataclasses.replace(gauges, observed=None)  # no observations: no observed columns
    assert "observed" not in pd.read_csv(write_hydrographs_long_csv(tmp_path / "n.csv", discharge, gauges=gauges))
    assert list(pd.read_csv(write_hydrographs_csv(tmp_path / "n2.csv", discharge, [30], gauges=gauges)).columns) \
        == ["time", "A [m3/s]", "B [m3/s]"]


def test_gauges_layer_carries_the_scores_against_the_observations(tmp_path):
    import geopandas as gpd
    from thalweg.learning.gauges import Gauges

    net = scheidegger_network(12, seed=2, with_geometry=True)
    rng = np.random.default_rng(0)
    t = np.datetime64("2020-01-01T01", "ns") + np.arange(48) * np.timedelta64(1, "h")
    d = Discharge(rng.gamma(2.0, 1.0, (net.n_reaches, 48)).astype(np.float32), net.ids, t, 3600.0)
    pos = np.array([0, 5])
    obs = pd.DataFrame({"A": rng.gamma(2.0, 1.0, 48), "B": rng.gamma(2.0, 1.0, 48)}, index=pd.DatetimeIndex(t))
    obs.iloc[3, 0] = np.nan
    gauges = Gauges(np.array(["A", "B"]), net.ids[pos], pos, ["A", "B"], observed=obs)
    layer = gpd.read_file(write_summary_gpkg(tmp_path / "m.gpkg", net, d, gauges=gauges), layer="gauges")
    for i, g in enumerate("AB"):  # the textbook formulas, on the observed steps only
        sim, o = d.values[pos[i]].astype(np.float64), obs[g].to_numpy()
        ok = np.isfinite(o)
        sim, o = sim[ok], o[ok]
        nse = 1 - ((sim - o) ** 2).sum() / ((o - o.mean()) ** 2).sum()
        r = np.corrcoef(sim, o)[0, 1]
        kge = 1 - np.sqrt((r - 1) ** 2 + (sim.std() / o.std() - 1) ** 2 + (sim.mean() / o.mean() - 1) ** 2)
        row = layer.set_index("gauge_id").loc[g]
        assert row["nse"] == pytest.approx(nse, rel=1e-6) and row["kge"] == pytest.approx(kge, rel=1e-6)
        assert row["pbias"] == pytest.approx(100 * (o.sum() - sim.sum()) / o.sum(), rel=1e-6)  # Moriasi's sign
        assert row["n_obs"] == ok.sum()
    plain = gpd.read_file(write_summary_gpkg(tmp_path / "p.gpkg", net, d, gauges=Gauges(
        gauges.ids, gauges.reach_ids, pos, ["A", "B"])), layer="gauges")
    assert "nse" not in plain.columns


def test_route_with_observed_writes_them_beside_the_simulation(tmp_path):
    """route --gauges --observed on the sample: the observed series in both CSVs, the scores on the map."""
    from pathlib import Path

    import geopandas as gpd
    from thalweg.cli import main
    from thalweg.learning import read_gauges
    from thalweg.metrics import nse
    from thalweg.results.planning import gauge_hydrographs

    sample = Path(__file__).resolve().parents[2] / "resources" / "sample"
    out = tmp_path / "Q.nc"
    assert main(["route", str(sample / "cance_rivers.gpkg"), str(sample / "cance_runoff.nc"), "-q",
                 "--gauges", str(sample / "cance_gauges.csv"), "--observed", str(sample / "cance_qobs.csv"),
                 "-o", str(out)]) == 0
    obs = pd.read_csv(sample / "cance_qobs.csv", index_col=0)
    wide = pd.read_csv(out.with_name("Q_hydrographs.csv"))
    assert [c for c in wide.columns if "observed" in c] == [f"{g} observed [m3/s]" for g in obs.columns]
    q = read_discharge(out)
    stamps = pd.to_datetime(wide["time"]).dt.tz_localize(None)
    on = obs.set_axis(pd.to_datetime(obs.index)).reindex(stamps)
    for g in obs.columns:
        np.testing.assert_allclose(wide[f"{g} observed [m3/s]"].to_numpy(), on[g].to_numpy(), equal_nan=True)
    long = pd.read_csv(out.with_name("Q_hydrographs_long.csv"), dtype={"gauge_id": str})
    assert "observed" in long.columns and long["observed"].notna().any()
    layer = gpd.read_file(out.with_name("Q.gpkg"), layer="gauges").set_index("gauge_id")
    from thalweg.hydrography import read_network

    gauges = read_gauges(sample / "cance_gauges.csv", read_network(sample / "cance_rivers.gpkg"),
                         observed=sample / "cance_qobs.csv")
    for row in gauge_hydrographs(q, gauges):
        assert layer.loc[row["gauge_id"], "nse"] == pytest.approx(float(nse(row["simulated"], row["observed"])),
                                                                  rel=1e-6)
