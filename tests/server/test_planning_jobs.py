"""The planners' job kinds (stats, compare, exceedance, hydrographs) through the real service: the same tables as
the library (oracles: thalweg.results.frequency / compare, thalweg.metrics), map layers read back with geopandas."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from thalweg.network import scheidegger_network
from thalweg.params import geoglows_muskingum
from thalweg.results import Discharge, read_discharge, write_q
from thalweg.routing import route

from .conftest import expect_error

DAY = 86400.0
SAMPLE = Path(__file__).resolve().parents[2] / "resources" / "sample"


@pytest.fixture(scope="module")
def years(tmp_path_factory):
    """A 30-reach network with lines (a GeoPackage), routed over 12 water years of daily runoff, and a scenario
    that raises one reach's discharge by half."""
    from thalweg.testing.layers import write_layer

    net = scheidegger_network(30, seed=5, with_geometry=True)
    rng = np.random.default_rng(2)
    t = 12 * 365 + 3
    runoff = ((1 + 0.7 * np.sin(2 * np.pi * np.arange(t) / 365.25)) * rng.gamma(0.6, 2.0, (net.n_reaches, t)))
    q = route(net, runoff.astype(np.float32), geoglows_muskingum(net), "muskingum_substep", dt=DAY).numpy()
    time = np.datetime64("2000-10-01", "ns") + np.arange(1, t + 1) * np.timedelta64(1, "D")
    folder = tmp_path_factory.mktemp("planning")
    base = write_q(folder / "base.nc", Discharge(q, net.ids, time, DAY))
    changed = net.ids[7]
    scen = write_q(folder / "scen.nc", Discharge(q * np.where(net.ids == changed, 1.5, 1.0)[:, None], net.ids, time,
                                                 DAY))
    ds = np.where(net.downstream >= 0, net.ids[np.maximum(net.downstream, 0)], -1)
    rivers = write_layer(folder / "rivers.gpkg", "hydrorivers", net.ids, ds, lengths=net.length, areas=net.area,
                         geometry=net.geometry)
    return {"net": net, "base": str(base), "scen": str(scen), "rivers": str(rivers), "changed": int(changed)}


def _layer(path: str, layer: str):
    import geopandas as gpd

    return gpd.read_file(path, layer=layer).set_index("reach_id")


def test_stats_job_matches_the_library(client, years):
    from thalweg.results.frequency import flow_statistics

    job = client.submit({"kind": "stats", "network": years["rivers"], "discharge": years["base"],
                         "return_periods": [2, 10, 50], "bootstrap": 50, "seed": 4})
    done = client.wait(job["id"], timeout=120, check=True)
    got = _layer(done["outputs"]["gpkg"], "stats")
    want = flow_statistics(read_discharge(years["base"]), return_periods=[2, 10, 50], n_boot=50,
                           rng=np.random.default_rng(4))
    assert len(got) == years["net"].n_reaches and got.geometry.notna().all()
    for column in ("q2y", "q10y", "q50y", "q10y_lo", "q10y_hi", "mam7", "q95", "mean_annual"):
        np.testing.assert_allclose(got.loc[want.index, column].to_numpy(), want[column].to_numpy(), rtol=1e-9)
    assert done["result"]["layer"] == "stats" and len(done["result"]["years"]) == 12
    assert "GEV by L-moments" in done["result"]["method"]


def test_stats_job_on_a_short_run_gives_what_it_allows_or_refuses_what_was_asked(client, tmp_path):
    routed = client.wait(client.route(str(SAMPLE / "cance_rivers.gpkg"), str(SAMPLE / "cance_runoff.nc"),
                                      write_gpkg=False)["id"], timeout=120, check=True)
    body = {"kind": "stats", "network": str(SAMPLE / "cance_rivers.gpkg"), "layer": "rivers",
            "discharge": routed["outputs"]["q"]}
    done = client.wait(client.submit(body)["id"], timeout=120, check=True)  # statistics 'auto', the default
    got = _layer(done["outputs"]["gpkg"], "stats")
    d = read_discharge(routed["outputs"]["q"])
    np.testing.assert_allclose(got.loc[d.ids, "mean"], d.values.astype(np.float64).mean(axis=1), rtol=1e-9)
    kinds = {s["kind"]: s["reason"] for s in done["result"]["skipped"]}
    assert set(kinds) == {"annual", "frequency"} and "needs at least 10 complete water years" in kinds["frequency"]
    assert "q2y" not in got.columns and done["result"]["years"] == []
    for extra, words in (({"statistics": "all"}, '"statistics": "auto"'),
                         ({"return_periods": [2, 10]}, "leave return_periods out")):
        record = client.wait(client.submit({**body, **extra})["id"], timeout=120)
        assert record["state"] == "failed" and record["error"]["error"] == "InputError"
        message = record["error"]["message"] + " " + (record["error"].get("hint") or "")
        assert "complete water year" in message and "needs at least 10" in message, message
        assert words in message, message
    expect_error(lambda: client.submit({**body, "confidence": 1.0}), 422, "confidence")
    expect_error(lambda: client.submit({**body, "return_periods": [1.0]}), 422, "return_periods")


def test_compare_job_changes_exactly_the_reach_and_lists_it_first(client, years):
    job = client.submit({"kind": "compare", "network": years["rivers"], "baseline": years["base"],
                         "scenario": years["scen"], "statistic": "max", "top": 3})
    done = client.wait(job["id"], timeout=120, check=True)
    got = _layer(done["outputs"]["gpkg"], "change")
    moved = got.index[got["difference"] != 0].tolist()
    assert moved == [years["changed"]] and done["result"]["changed"] == 1
    np.testing.assert_allclose(got.loc[years["changed"], "relative"], 0.5, rtol=1e-6)
    assert done["result"]["top"][0]["reach_id"] == years["changed"] and len(done["result"]["top"]) == 3


def test_compare_job_refuses_runs_of_other_periods(client, years, tmp_path):
    d = read_discharge(years["base"])
    short = write_q(tmp_path / "short.nc", Discharge(d.values[:, :-30], d.ids, d.time[:-30], d.dt))
    job = client.submit({"kind": "compare", "network": years["rivers"], "baseline": years["base"],
                         "scenario": str(short)})
    record = client.wait(job["id"], timeout=120)
    assert record["state"] == "failed" and "different periods" in record["error"]["message"]


def test_exceedance_job_of_a_return_period_matches_the_library(client, years):
    from thalweg.results.frequency import exceedance, flow_statistics

    job = client.submit({"kind": "exceedance", "network": years["rivers"], "discharge": years["base"],
                         "return_period": 5})
    done = client.wait(job["id"], timeout=120, check=True)
    got = _layer(done["outputs"]["gpkg"], "exceedance")
    d = read_discharge(years["base"])
    want = exceedance(d, flow_statistics(d, return_periods=[5], n_boot=0)["q5y"].to_numpy())
    np.testing.assert_allclose(got.loc[want.index, "duration_h"].to_numpy(), want["duration_h"].to_numpy())
    assert got["exceeded"].dtype == bool and (got.loc[want.index, "exceeded"].to_numpy() == want["exceeded"]).all()
    assert done["result"]["exceeded"] == int(want["exceeded"].sum()) > 0
    assert "5-year flow" in done["result"]["threshold"]


def test_exceedance_body_needs_exactly_one_rule(client, years):
    body = {"kind": "exceedance", "network": years["rivers"], "discharge": years["base"]}
    expect_error(lambda: client.submit(body), 422, "give exactly one of 'threshold'")
    expect_error(lambda: client.submit({**body, "threshold": 1.0, "return_period": 10}), 422,
                 "got threshold, return_period")


def test_hydrographs_job_gives_series_and_the_metrics_of_thalweg_metrics(client):
    import pandas as pd

    from thalweg.metrics import all_metrics

    rivers, gauges, observed = (str(SAMPLE / n) for n in ("cance_rivers.gpkg", "cance_gauges.csv", "cance_qobs.csv"))
    routed = client.wait(client.route(rivers, str(SAMPLE / "cance_runoff.nc"), write_gpkg=False)["id"], timeout=120,
                         check=True)
    job = client.submit({"kind": "hydrographs", "network": rivers, "layer": "rivers",
                         "discharge": routed["outputs"]["q"], "gauges": gauges, "observed": observed})
    done = client.wait(job["id"], timeout=120, check=True)
    import json

    doc = json.loads(Path(done["outputs"]["hydrographs"]).read_text())
    table = pd.read_csv(gauges)
    assert [g["gauge_id"] for g in doc["gauges"]] == table["gauge_id"].astype(str).tolist()
    d = read_discharge(routed["outputs"]["q"])
    qobs = pd.read_csv(observed, index_col=0, parse_dates=True)
    qobs.index = qobs.index.tz_localize(None) if qobs.index.tz is not None else qobs.index
    for g in doc["gauges"]:
        sim = d.values[d.index_of([g["reach_id"]])[0]].astype(np.float64)
        np.testing.assert_allclose(np.array(g["simulated"], float), sim, rtol=1e-7)
        obs = qobs[g["gauge_id"]].reindex(pd.DatetimeIndex(d.time)).to_numpy(np.float64)
        want = all_metrics(sim, obs)
        assert g["metrics"]["nse"] == pytest.approx(want["nse"], rel=1e-9)
        assert g["metrics"]["pbias"] == pytest.approx(want["pbias"], rel=1e-9)
    assert len(doc["time"]) == d.n_steps
