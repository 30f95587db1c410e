"""``thalweg calibrate`` end to end: network, runoff, gauge and observation files in; parameters, a report and
calibrated discharge out, checked against the known factors and the library's routing."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from thalweg.cli import main
from thalweg.hydrography import read_network
from thalweg.results import read_discharge
from thalweg.routing import route
from thalweg.testing.layers import write_layer
from thalweg.workflow import resolve_params

from .conftest import DT, START, TRUE_FACTORS

pytestmark = pytest.mark.filterwarnings("ignore::thalweg.errors.ThalwegWarning")


@pytest.fixture(scope="module")
def files(case, tmp_path_factory):
    """The case written as a GEOGloWS parquet table, a RAPID m3_riv file, a gauge table and observations
    (at step ends, with gaps and a -9999 missing-data code), observed = routed with the true factors."""
    net = case.network
    folder = tmp_path_factory.mktemp("calibrate_cli")
    ds = np.where(net.downstream >= 0, net.ids[np.maximum(net.downstream, 0)], -1)
    network = write_layer(folder / "streams.parquet", "geoglows", net.ids, ds, lengths=net.length, areas=net.area)
    steps = case.runoff.shape[1]
    seconds = (START.astype("datetime64[s]").astype(np.int64) + np.arange(steps) * int(DT))
    xr.Dataset({"m3_riv": (("time", "rivid"), (case.runoff.T * DT).astype("float32"), {"units": "m3"}),
                "rivid": (("rivid",), net.ids.astype("int32")),
                "time": (("time",), seconds, {"units": "seconds since 1970-01-01 00:00:00"})}
               ).to_netcdf(folder / "m3_riv.nc")
    # the prior as the CLI resolves it from the file (lengths and areas pass through units)
    read = read_network(network)
    prior, _ = resolve_params(read, "muskingum")
    pos = read.index_of(net.ids)
    k_true = np.empty(read.n_reaches)
    k_true[pos] = prior["k"][pos] * np.asarray(TRUE_FACTORS)[case.zones]
    gauge_ids = net.ids[case.gauges]
    q = route(read, case.runoff[np.argsort(pos)], {"k": k_true, "x": 0.25}, "muskingum", dt=DT, at=gauge_ids,
              engine="exact").numpy()
    names = ["G-out", "G-mid", "G-top"]
    pd.DataFrame({"gauge_id": names, "name": ["outlet", "middle", "top"], "LINKNO": gauge_ids}).to_csv(
        folder / "gauges.csv", index=False)
    end = START + np.timedelta64(int(DT), "s") * np.arange(1, steps + 1)
    obs = pd.DataFrame(q.T.astype(np.float64), columns=names)
    obs.iloc[100:110, 0] = np.nan
    obs.iloc[200:205, 1] = -9999.0
    obs.insert(0, "time_end", pd.to_datetime(end).strftime("%Y-%m-%dT%H:%M:%S"))
    obs.to_csv(folder / "qobs.csv", index=False)
    return {"network": network, "runoff": folder / "m3_riv.nc", "gauges": folder / "gauges.csv",
            "observed": folder / "qobs.csv", "k_true": k_true, "read": read, "gauge_ids": gauge_ids,
            "names": names, "folder": folder}


def test_calibrate_writes_parameters_report_and_discharge(files, capsys):
    out = files["folder"] / "out" / "Q.nc"
    args = ["calibrate", str(files["network"]), str(files["runoff"]), "-o", str(out), "--gauges",
            str(files["gauges"]), "--observed", str(files["observed"]), "--iterations", "300", "--warmup", "24",
            "--scheme", "muskingum"]  # the observations were routed with plain Muskingum
    assert main(args) == 0
    err = capsys.readouterr().err
    for name, reach in zip(files["names"], files["gauge_ids"]):
        line = next(ln for ln in err.splitlines() if f"gauge {name} (reach {reach}): NSE" in ln)
        before, after = (float(v) for v in line.split("NSE ")[1].split(",")[0].split(" -> "))
        assert before < 0.95 and after > 0.999, line
    assert "Q_params.csv" in err and "Q_calibration.json" in err

    read = files["read"]
    table = pd.read_csv(out.with_name("Q_params.csv"))
    assert list(table.columns) == ["reach_id", "zone", "zone_gauge", "k", "x"]
    k = table.set_index("reach_id").loc[read.ids, "k"].to_numpy().copy()
    np.testing.assert_allclose(k, files["k_true"], rtol=0.03)
    np.testing.assert_array_equal(table["x"], 0.25)
    assert set(table["zone_gauge"].astype(int)) == set(files["gauge_ids"].tolist())

    report = json.loads(out.with_name("Q_calibration.json").read_text())
    assert report["calibrated"] == ["k"] and report["settings"]["warmup"] == 24
    got = {z["gauge_reach_id"]: z["multipliers"]["k"] for z in report["zones"]}
    np.testing.assert_allclose([got[int(r)] for r in files["gauge_ids"]], TRUE_FACTORS, rtol=0.03)
    assert [z["gauge_ids"] for z in report["zones"]] == [[n] for n in files["names"]]
    assert sum(z["reaches"] for z in report["zones"]) == read.n_reaches
    assert all(m["after"]["nse"] > 0.999 and m["before"]["nse"] < m["after"]["nse"] for m in report["metrics"])
    assert report["iterations"] == len(report["history"]) <= 300

    # the discharge written is the routing with the calibrated parameters, every reach
    q = read_discharge(out)
    runoff = xr.open_dataset(files["runoff"])["m3_riv"].transpose("rivid", "time").values / DT
    expected = route(read, runoff[read.index_of(files["read"].ids)], {"k": k, "x": 0.25}, "muskingum", dt=DT).numpy()
    np.testing.assert_allclose(q.values[q.index_of(read.ids)], expected, rtol=1e-4, atol=1e-4)
    hydro = pd.read_csv(out.with_name("Q_hydrographs.csv"))
    assert hydro.shape[0] == q.n_steps
    settings = json.loads(out.with_name("Q.settings.json").read_text())
    assert settings["iterations"] == 300 and settings["zones"] == "gauges"


def test_calibrate_global_zone(files, capsys):
    out = files["folder"] / "global" / "Q.nc"
    assert main(["calibrate", str(files["network"]), str(files["runoff"]), "-o", str(out), "--gauges",
                 str(files["gauges"]), "--observed", str(files["observed"]), "--zones", "global", "-q", "--scheme",
                 "muskingum",
                 "--iterations", "60", "--no-gpkg"]) == 0
    report = json.loads(out.with_name("Q_calibration.json").read_text())
    assert len(report["zones"]) == 1 and report["zones"][0]["gauge_reach_id"] is None
    assert report["zones"][0]["gauge_ids"] == files["names"]
    table = pd.read_csv(out.with_name("Q_params.csv"))
    assert table["zone_gauge"].isna().all() and (table["zone"] == 0).all()


def test_observations_outside_the_runoff_period(files, tmp_path, capsys):
    obs = pd.read_csv(files["observed"])
    obs["time_end"] = pd.to_datetime(obs["time_end"]) + pd.Timedelta(days=365)
    obs.to_csv(tmp_path / "late.csv", index=False)
    code = main(["calibrate", str(files["network"]), str(files["runoff"]), "-o", str(tmp_path / "Q.nc"),
                 "--gauges", str(files["gauges"]), "--observed", str(tmp_path / "late.csv")])
    err = capsys.readouterr().err
    assert code == 3 and "late.csv" in err and "no observation falls on the routed time steps" in err, err
    assert not list(tmp_path.glob("Q*"))


def test_unknown_parameter_and_missing_gauges(files, tmp_path, capsys):
    base = ["calibrate", str(files["network"]), str(files["runoff"]), "-o", str(tmp_path / "Q.nc"), "--scheme",
            "muskingum"]
    code = main(base + ["--gauges", str(files["gauges"]), "--observed", str(files["observed"]),
                        "--calibrate", "tau"])
    err = capsys.readouterr().err
    assert code == 3 and "the 'muskingum' scheme has no parameter tau to calibrate" in err, err
    with pytest.raises(SystemExit):
        main(base + ["--observed", str(files["observed"])])
    assert "--gauges" in capsys.readouterr().err


CAL, VAL = "2020-01-01/2020-01-10", "2020-01-11/2020-01-17"


def _cli(files, out, *extra):
    return ["calibrate", str(files["network"]), str(files["runoff"]), "-o", str(out), "--gauges",
            str(files["gauges"]), "--observed", str(files["observed"]), "--scheme", "muskingum", "--no-gpkg",
            *extra]


def test_per_reach_model_with_periods_and_a_held_out_gauge(files, capsys):
    out = files["folder"] / "per_reach" / "Q.nc"
    assert main(_cli(files, out, "--model", "per-reach", "--calibrate", "k", "--calibration", CAL,
                     "--validation", VAL, "--validate-gauges", "G-top", "--optimiser", "lbfgs", "--iterations", "12",
                     "--warmup", "24")) == 0
    err = capsys.readouterr().err
    assert "per-reach model" in err and "leave-one-gauge-out" not in err, err
    held = [ln for ln in err.splitlines() if ln.startswith("G-top") and "held-out" in ln]
    assert [ln.split()[2] for ln in held] == ["calibration", "validation"], err
    for kind in ("Q_params.csv", "Q_calibration.json", "Q_calibration.png"):
        assert (out.parent / kind).is_file() and kind in err, kind
    assert not (out.parent / "Q_model.json").exists()  # only a regression is a model file

    report = json.loads(out.with_name("Q_calibration.json").read_text())
    steps = json.loads(out.with_name("Q.settings.json").read_text())
    assert steps["model"] == "per-reach" and steps["validate_gauges"] == ["G-top"]
    end = START + np.timedelta64(int(DT), "s") * np.arange(1, 401)
    in_val = (end > np.datetime64("2020-01-11")) & (end <= np.datetime64("2020-01-18"))
    assert report["settings"]["validation"] == {"start": int(np.argmax(in_val)), "end": int(in_val.sum())
                                                + int(np.argmax(in_val)), "label": "validation"}
    after = report["metrics"]["after"]
    assert after["G-top"]["role"] == "held-out" and after["G-out"]["role"] == "calibration"
    # validation scores count the validation period's observations only (G-mid's -9999 lie in calibration)
    assert after["G-mid"]["validation"]["n"] == int(in_val.sum())
    before = report["metrics"]["before"]
    assert after["G-out"]["calibration"]["nse"] > 0.999 > before["G-out"]["calibration"]["nse"]
    assert after["G-out"]["validation"]["nse"] > max(0.95, before["G-out"]["validation"]["nse"])
    assert report["leave_one_gauge_out"] is None
    assert report["prior"]["k"].startswith("GEOGloWS rule") and report["run_settings"]["model"] == "per-reach"

    # the saved settings run again, a flag overriding them (the prior's scores on the same split and roles)
    again = files["folder"] / "per_reach_again" / "Q.nc"
    assert main(["calibrate", "--settings", str(out.with_name("Q.settings.json")), "--model", "prior", "-o",
                 str(again), "-q"]) == 0
    prior_run = json.loads(again.with_name("Q_calibration.json").read_text())
    assert prior_run["run_settings"]["model"] == "prior" and prior_run["settings"]["validation"] == \
        report["settings"]["validation"]
    assert prior_run["metrics"]["after"]["G-top"]["role"] == "held-out"
    assert prior_run["metrics"]["after"] == prior_run["metrics"]["before"] == report["metrics"]["before"]

    # the discharge written is the routing with the fitted table
    read = files["read"]
    table = pd.read_csv(out.with_name("Q_params.csv"))
    assert list(table.columns) == ["reach_id", "k", "x"]
    k = table.set_index("reach_id").loc[read.ids, "k"].to_numpy().copy()
    q = read_discharge(out)
    runoff = xr.open_dataset(files["runoff"])["m3_riv"].transpose("rivid", "time").values / DT
    expected = route(read, runoff[read.index_of(read.ids)], {"k": k, "x": 0.25}, "muskingum", dt=DT).numpy()
    np.testing.assert_allclose(q.values[q.index_of(read.ids)], expected, rtol=1e-4, atol=1e-4)
    # the provenance counts the gauges trained on, not the held-out one
    with xr.open_dataset(out) as ds:
        assert "per-reach model fitted at 2 gauge(s), 1 held out" in ds.attrs["parameters"], ds.attrs["parameters"]

    # route --parameters takes the per-reach table: the same discharge as the calibrated routing
    routed = files["folder"] / "per_reach_routed" / "Q.nc"
    assert main(["route", str(files["network"]), str(files["runoff"]), "-o", str(routed), "--scheme", "muskingum",
                 "--parameters", str(out.with_name("Q_params.csv")), "--no-gpkg", "-q"]) == 0
    np.testing.assert_allclose(read_discharge(routed).values, q.values, rtol=1e-6, atol=1e-6)
    with xr.open_dataset(routed) as ds:
        assert "parameter table Q_params.csv" in ds.attrs["parameters"]


def test_leave_one_gauge_out_scores_each_gauge_held_out(files, capsys):
    """--leave-one-out fits once more per gauge with that gauge held out: its scores are those of a fit that
    never saw it (here zones, whose held-out gauge's zone falls back to the prior or the zone below it)."""
    out = files["folder"] / "logo" / "Q.nc"
    assert main(_cli(files, out, "--model", "zones", "--leave-one-out", "--iterations", "3", "--warmup", "24")) == 0
    err = capsys.readouterr().err
    rows = err.split("leave-one-gauge-out (each gauge held out in turn, scored as if ungauged):")[1].splitlines()
    report = json.loads(out.with_name("Q_calibration.json").read_text())
    logo = report["leave_one_gauge_out"]
    assert sorted(logo) == sorted(files["names"])
    for name in files["names"]:
        assert logo[name]["role"] == "held-out" and logo[name]["validation"] is None
        line = next(ln for ln in rows if ln.startswith(name))
        assert f"{logo[name]['calibration']['nse']:.4f}" in line
    # the main fit trained on every gauge: no held-out role there
    assert {m["role"] for m in report["metrics"]["after"].values()} == {"calibration"}


def test_regression_model_file_routes_the_same_discharge_and_a_checkpoint_resumes(files, tmp_path, capsys):
    """calibrate --model regression writes a model file; route --parameters with it gives the calibrated discharge;
    a fit stopped after 2 iterations and resumed from its checkpoint to 3 ends as an uninterrupted 3."""
    ck = tmp_path / "fit.ckpt"
    common = ("--model", "regression", "--attribute", "length", "--attribute", "area", "--calibration", CAL,
              "--validation", VAL, "--seed", "2", "--learning-rate", "0.01", "--bound", "x=0.1:0.4", "-q")
    assert main(_cli(files, tmp_path / "a" / "Q.nc", *common, "--iterations", "2", "--checkpoint", str(ck),
                     "--checkpoint-every", "2")) == 0
    assert ck.is_file()
    assert main(_cli(files, tmp_path / "b" / "Q.nc", *common, "--iterations", "3", "--checkpoint", str(ck),
                     "--checkpoint-every", "2")) == 0
    assert main(_cli(files, tmp_path / "c" / "Q.nc", *common, "--iterations", "3")) == 0
    resumed, fresh = (json.loads((tmp_path / d / "Q_calibration.json").read_text()) for d in ("b", "c"))
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in fresh["history"]]
    assert len(fresh["history"]) == 3 and resumed["metrics"] == fresh["metrics"]
    model = tmp_path / "c" / "Q_model.json"
    saved = json.loads(model.read_text())
    assert saved["attributes"][0]["name"] == "length"
    assert (saved["bounds"]["x"]["lower"], saved["bounds"]["x"]["upper"]) == (0.1, 0.4)
    x = pd.read_csv(tmp_path / "c" / "Q_params.csv")["x"]
    assert x.between(0.1, 0.4).all() and (x != 0.25).any()
    assert main(["route", str(files["network"]), str(files["runoff"]), "-o", str(tmp_path / "r" / "Q.nc"),
                 "--scheme", "muskingum", "--parameters", str(model), "--no-gpkg", "-q"]) == 0
    calibrated, routed = read_discharge(tmp_path / "c" / "Q.nc"), read_discharge(tmp_path / "r" / "Q.nc")
    np.testing.assert_allclose(routed.values, calibrated.values, rtol=1e-6, atol=1e-6)
    capsys.readouterr()


@pytest.mark.parametrize("extra, code, fragments", [
    (("--model", "per-reach", "--validate-gauges", "G-top,ZZ"), 3,
     ["validation gauge(s) ZZ are not among the gauges (G-out, G-mid, G-top)", "--validate-gauges G-out"]),
    (("--model", "per-reach", "--validate-gauges", "G-out,G-mid", "--validate-gauges", "G-top"), 3,
     ["every gauge (3) is held out, so nothing is left to train on", "(--validate-gauges)",
      "held out in turn with --leave-one-out"]),
    (("--attribute", "slope"), 3, ["attributes are for the regression model, not 'zones'", "--model regression"]),
    (("--model", "per-reach", "--early-stopping", "5"), 3,
     ["early stopping needs a validation period or held-out gauges", "--validation"]),
    (("--model", "regression", "--attribute", "colour"), 3,
     ["no reach attribute 'colour'", "e.g. --attribute length --attribute area (the default)"]),
    (("--model", "per-reach", "--calibration", "2020-01-12/2020-01-05"), 3,
     ["calibration 2020-01-12/2020-01-05 starts after it ends", "--calibration 2020-01-05/2020-01-12"]),
    (("--calibration", "2020-01-05"), 2, ["--calibration", "START/END"]),
    (("--model", "mlp"), 2, ["--model", "invalid choice: 'mlp'"]),
    (("--model", "per-reach", "--bound", "x=0:0.7"), 3,
     ["bounds of 'x' are [0, 0.7]", "physical bounds [0, 0.5]", "(--bound)"]),
    (("--model", "per-reach", "--bound", "tau=1:2"), 3, ["takes no parameter(s) tau"]),
    (("--bound", "k=3600"), 2, ["--bound: 'k=3600' is not NAME=LOW:HIGH"]),
    (("--model", "per-reach", "--calibration", "2020-01-01/2020-01-12", "--validation", VAL), 3,
     ["the calibration period 2020-01-01T01:00 .. 2020-01-13T00:00 (step ends) and validation period "
      "2020-01-11T01:00 .. 2020-01-17T16:00 (step ends) overlap"]),
])
def test_fit_option_errors_name_the_flag(files, tmp_path, capsys, extra, code, fragments):
    with pytest.raises(SystemExit) if code == 2 else _no_raise() as exit_info:
        assert main(_cli(files, tmp_path / "Q.nc", "--iterations", "2", *extra)) == code
    if code == 2:
        assert exit_info.value.code == 2
    err = capsys.readouterr().err
    for fragment in fragments:
        assert fragment in err, err
    assert not list(tmp_path.glob("Q*"))


class _no_raise:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
