"""The bundled Cance sample basin (resources/sample/, made by scripts/make_sample_basin.py) is consistent.

Reads the committed files with plain geopandas / xarray / pandas: the network is one valid tree with
GEOGloWS v2 fields, the gauges sit on reaches of the right drainage area, the runoff covers the same reaches
and period and carries the observed outlet volume.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from thalweg.testing.checks import cf_problems

SAMPLE = Path(__file__).resolve().parents[1] / "resources" / "sample"
OFFICIAL_KM2 = {"V3524010": 381.7, "V3515010": 107.0, "V3517010": 25.3}
OUTLET = "V3524010"
DT = pd.Timedelta(hours=1)


@pytest.fixture(scope="module")
def rivers():
    import geopandas as gpd

    return gpd.read_file(SAMPLE / "cance_rivers.gpkg", layer="rivers")


@pytest.fixture(scope="module")
def catchments():
    import geopandas as gpd

    return gpd.read_file(SAMPLE / "cance_rivers.gpkg", layer="catchments")


@pytest.fixture(scope="module")
def runoff():
    import xarray as xr

    with xr.open_dataset(SAMPLE / "cance_runoff.nc") as ds:
        yield ds.load()


@pytest.fixture(scope="module")
def gauges():
    return pd.read_csv(SAMPLE / "cance_gauges.csv", dtype={"gauge_id": str}).set_index("gauge_id")


@pytest.fixture(scope="module")
def qobs():
    return pd.read_csv(SAMPLE / "cance_qobs.csv", parse_dates=["time_end"])


def downstream_positions(rivers) -> np.ndarray:
    pos = pd.Series(np.arange(len(rivers)), index=rivers.LINKNO.to_numpy())
    ds = rivers.DSLINKNO.to_numpy()
    return np.where(ds == -1, -1, pos.reindex(ds).fillna(-2).to_numpy().astype(int))


def test_files_small_and_documented():
    files = {p.name: p.stat().st_size for p in SAMPLE.iterdir()}
    for name in ("cance_rivers.gpkg", "cance_runoff.nc", "cance_gauges.csv", "cance_qobs.csv", "README.md"):
        assert name in files, f"{name} missing from {SAMPLE}"
    assert sum(files.values()) < 5 * 1024 ** 2, files
    readme = (SAMPLE / "README.md").read_text()
    for fragment in ("hydro-smash", "GPL-3.0", "scripts/make_sample_basin.py", "NOT a rainfall-runoff model",
                     "START", "END"):
        assert fragment in readme, f"README.md does not mention {fragment!r}"


def test_rivers_form_one_tree_with_geoglows_fields(rivers):
    assert {"LINKNO", "DSLINKNO", "LengthGeodesicMeters", "DSContArea", "strmOrder"} <= set(rivers.columns)
    assert rivers.crs.to_epsg() == 2154
    assert 50 <= len(rivers) <= 300
    assert rivers.LINKNO.is_unique
    ds = downstream_positions(rivers)
    assert (ds != -2).all(), f"DSLINKNO not in LINKNO: {rivers.DSLINKNO[ds == -2].tolist()}"
    assert (ds == -1).sum() == 1, "exactly one outlet (DSLINKNO = -1)"
    # Every reach reaches the outlet within N steps (no cycle).
    ptr = np.arange(len(rivers))
    for _ in range(len(rivers)):
        ptr = np.where(ptr >= 0, ds[np.maximum(ptr, 0)], -1)
    assert (ptr == -1).all()
    assert (rivers.LengthGeodesicMeters > 0).all()


def test_drainage_area_grows_downstream_and_equals_catchment_sums(rivers, catchments):
    ds = downstream_positions(rivers)
    area = rivers.DSContArea.to_numpy()
    inner = ds >= 0
    assert (area[ds[inner]] >= area[inner]).all(), "DSContArea decreases downstream"
    # DSContArea = own catchment + drainage areas of the reaches flowing in.
    assert set(catchments.LINKNO) == set(rivers.LINKNO)
    own = catchments.set_index("LINKNO").Shape_Area.reindex(rivers.LINKNO).to_numpy()
    inflow = np.bincount(ds[inner], weights=area[inner], minlength=len(rivers))
    np.testing.assert_allclose(own + inflow, area, rtol=1e-9)
    np.testing.assert_allclose(catchments.geometry.area, catchments.Shape_Area, rtol=1e-9)


def test_lines_meet_their_downstream_reach(rivers):
    ds = downstream_positions(rivers)
    first = np.array([g.coords[0] for g in rivers.geometry])
    last = np.array([g.coords[-1] for g in rivers.geometry])
    inner = ds >= 0
    np.testing.assert_allclose(last[inner], first[ds[inner]])
    # Geodesic length is close to the Lambert-93 length (scale error < 0.2 % here).
    np.testing.assert_allclose(rivers.LengthGeodesicMeters, rivers.geometry.length, rtol=2e-3)


def test_strahler_order(rivers):
    ds = downstream_positions(rivers)
    order = rivers.strmOrder.to_numpy()
    for i in range(len(rivers)):
        up = order[ds == i]
        expected = 1 if up.size == 0 else up.max() + int((up == up.max()).sum() >= 2)
        assert order[i] == expected, f"LINKNO {rivers.LINKNO[i]}: strmOrder {order[i]}, expected {expected}"


def test_gauges_on_reaches_of_the_official_area(rivers, gauges):
    assert set(gauges.index) == set(OFFICIAL_KM2)
    by_id = rivers.set_index("LINKNO")
    for gid, official in OFFICIAL_KM2.items():
        reach = by_id.loc[gauges.loc[gid, "LINKNO"]]
        km2 = reach.DSContArea / 1e6
        assert abs(km2 / official - 1) <= 0.10, f"{gid}: reach area {km2:.1f} km2 vs official {official}"
        assert gauges.loc[gid, "area_km2"] == official
        assert gauges.loc[gid, "area_km2_reach"] == pytest.approx(km2)
    assert by_id.loc[gauges.loc[OUTLET, "LINKNO"]].DSLINKNO == -1, "the outlet gauge is on the outlet reach"


def test_runoff_matches_network_and_period(runoff, rivers):
    q = runoff.catchment_runoff
    assert q.dims == ("riverId", "time")
    assert q.dtype == np.float32
    assert q.attrs["units"] == "m3"
    assert set(runoff.riverId.values.tolist()) == set(rivers.LINKNO.tolist())
    assert runoff.riverId.size == len(rivers)
    values = q.values
    assert np.isfinite(values).all() and (values >= 0).all()
    assert values.sum() > 0
    time = pd.DatetimeIndex(runoff.time.values)
    assert (time[1:] - time[:-1] == DT).all(), "time is not hourly"
    assert time[0] <= pd.Timestamp("2014-09-15") and time[-1] >= pd.Timestamp("2015-01-15")
    assert "START" in runoff.time.attrs["comment"]


def test_runoff_volume_equals_observed_outlet_volume(runoff, qobs):
    time = pd.DatetimeIndex(runoff.time.values)
    ends = pd.DatetimeIndex(qobs.time_end)
    assert ends.equals(time + DT), "observations are not on the runoff steps (labelled by their end)"
    observed = qobs[OUTLET].sum() * DT.total_seconds()
    assert qobs[OUTLET].notna().all()
    total = runoff.catchment_runoff.values.astype(np.float64).sum()
    assert total == pytest.approx(observed, rel=0.01)
    assert 0 < runoff.attrs["runoff_coefficient"] < 1, "runoff cannot exceed precipitation over 4 months"


def test_qobs_has_the_three_gauges(qobs):
    assert set(OFFICIAL_KM2) <= set(qobs.columns)
    for gid in OFFICIAL_KM2:
        present = qobs[gid].dropna()
        assert len(present) > 0.9 * len(qobs) and (present >= 0).all(), gid
    # Nested basins: the outlet carries more water than each upstream gauge.
    assert qobs[OUTLET].sum() > qobs["V3515010"].sum() > qobs["V3517010"].sum()




def test_demo_outputs_pass_the_same_checks(tmp_path):
    """The demo writes through the same writers, so its files pass the same checks as any run's."""
    import sqlite3

    import netCDF4
    import pyogrio

    from thalweg.demo import run_demo

    run_demo(tmp_path, device="cpu", quiet=True, train=False)  # the routing outputs; training: test_cli
    for name in ("cance_discharge.nc", "cance_discharge_Qout.nc"):
        assert cf_problems(tmp_path / name) == [], name
    with netCDF4.Dataset(tmp_path / "cance_discharge_Qout.nc") as nc:  # RAPIDpy-style, with the reaches' positions
        assert nc.variables["Qout"].dimensions == ("time", "rivid") and nc.dimensions["time"].isunlimited()
        lat, lon = nc.variables["lat"][:], nc.variables["lon"][:]
        assert 44.8 < lat.min() < lat.max() < 45.4 and 4.3 < lon.min() < lon.max() < 4.9  # the Cance, Ardeche
    con = sqlite3.connect(tmp_path / "cance_discharge.gpkg")
    try:
        assert con.execute("PRAGMA user_version").fetchone()[0] == 10300
        assert con.execute("SELECT count(*) FROM layer_styles WHERE useAsDefault").fetchone()[0] == 1
    finally:
        con.close()
    gauges = pyogrio.read_dataframe(tmp_path / "cance_discharge.gpkg", layer="gauges")
    assert sorted(gauges["gauge_id"]) == sorted(OFFICIAL_KM2)
    long = pd.read_csv(tmp_path / "cance_discharge_hydrographs_long.csv", dtype={"gauge_id": str})
    assert set(long["gauge_id"]) == set(OFFICIAL_KM2) and (long["units"] == "m3/s").all()
    for png in ("cance_discharge_map.png", "cance_hydrographs.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_format_flags_on_the_sample(tmp_path):
    """-o NAME.zarr gets a river-route 3 store (+ RAPID Qout beside it with --convention both); --river-id-name and
    --compression reach the files."""
    import netCDF4
    import xarray as xr

    from thalweg.cli import main

    rivers, runoff = SAMPLE / "cance_rivers.gpkg", SAMPLE / "cance_runoff.nc"
    out = tmp_path / "run.zarr"
    assert main(["route", str(rivers), str(runoff), "--layer", "rivers", "-o", str(out), "--convention", "both",
                 "--river-id-name", "river_id", "--compression", "0", "-q"]) == 0
    with xr.open_zarr(out) as ds:
        assert ds["Q"].dims == ("river_id", "time")
    with netCDF4.Dataset(tmp_path / "run_Qout.nc") as nc:
        assert nc.variables["Qout"].dimensions == ("time", "river_id")
        assert not nc.variables["Qout"].filters()["zlib"]
    with pytest.raises(SystemExit) as usage:  # a name that contradicts --format is a usage error
        main(["route", str(rivers), str(runoff), "--layer", "rivers", "-o", str(tmp_path / "x.nc"),
              "--format", "zarr", "-q"])
    assert usage.value.code == 2
