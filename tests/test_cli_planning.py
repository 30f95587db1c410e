"""The planners' commands end to end: thalweg route -> stats / compare / exceed, files checked with real readers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from thalweg.cli import main
from thalweg.network import scheidegger_network
from thalweg.params import geoglows_muskingum
from thalweg.results import Discharge, read_discharge, write_q
from thalweg.results.frequency import flow_statistics
from thalweg.routing import route

SAMPLE = Path(__file__).resolve().parents[1] / "resources" / "sample"
DAY = 86400.0


@pytest.fixture(scope="module")
def decades(tmp_path_factory):
    """A 40-reach network routed over 14 water years of daily runoff (a seasonal cycle plus storms)."""
    net = scheidegger_network(40, seed=3, with_geometry=True)
    rng = np.random.default_rng(8)
    t = 14 * 365 + 4
    season = 1.0 + 0.8 * np.sin(2 * np.pi * np.arange(t) / 365.25)
    runoff = (season * rng.gamma(0.6, 2.0, size=(net.n_reaches, t))).astype(np.float32)
    q = route(net, runoff, geoglows_muskingum(net), "muskingum_substep", dt=DAY).numpy()
    time = np.datetime64("1990-10-01", "ns") + np.arange(1, t + 1) * np.timedelta64(1, "D")
    folder = tmp_path_factory.mktemp("decades")
    path = write_q(folder / "base.nc", Discharge(q, net.ids, time, DAY))
    scen = write_q(folder / "scen.nc", Discharge(q * np.where(net.ids == net.ids[5], 1.5, 1.0)[:, None],
                                                 net.ids, time, DAY))
    return net, path, scen


def _network_file(net, folder: Path) -> Path:
    from thalweg.testing.layers import write_layer

    ds = np.where(net.downstream >= 0, net.ids[np.maximum(net.downstream, 0)], -1)
    return write_layer(folder / "rivers.gpkg", "hydrorivers", net.ids, ds, lengths=net.length, areas=net.area,
                       geometry=net.geometry)


def test_stats_csv_matches_the_library(decades, tmp_path, capsys):
    net, path, _ = decades
    out = tmp_path / "stats.csv"
    assert main(["stats", str(path), "-o", str(out), "--return-periods", "2", "10", "--bootstrap", "30"]) == 0
    table = pd.read_csv(out).set_index("reach_id")
    expected = flow_statistics(read_discharge(path), return_periods=(2, 10), n_boot=30,
                               rng=np.random.default_rng(0))
    np.testing.assert_allclose(table[["q2y", "q10y", "q10y_lo", "q10y_hi", "mam7"]].to_numpy(),
                               expected[["q2y", "q10y", "q10y_lo", "q10y_hi", "mam7"]].to_numpy(), rtol=1e-9)
    assert "14 complete water years (1991..2004)" in capsys.readouterr().err


def test_stats_gpkg_layer_opens_with_ogr(decades, tmp_path):
    pyogrio = pytest.importorskip("pyogrio")
    net, path, _ = decades
    rivers = _network_file(net, tmp_path)
    out = tmp_path / "stats.gpkg"
    assert main(["stats", str(path), "-o", str(out), "--network", str(rivers), "--bootstrap", "0", "-q"]) == 0
    layer = pyogrio.read_dataframe(out)
    assert len(layer) == net.n_reaches and layer.geometry.notna().all()
    assert (layer["q100y"] > layer["q2y"]).all()


@pytest.fixture(scope="module")
def sample_q(tmp_path_factory):
    """The sample basin routed: four months of hourly steps, not one complete water year."""
    q = tmp_path_factory.mktemp("sample") / "Q.nc"
    assert main(["route", str(SAMPLE / "cance_rivers.gpkg"), str(SAMPLE / "cance_runoff.nc"), "--layer", "rivers",
                 "-o", str(q), "--no-gpkg", "-q"]) == 0
    return q


def test_stats_of_a_short_run_computes_what_it_allows_and_says_what_it_skipped(sample_q, tmp_path, capsys):
    out = tmp_path / "s.csv"
    assert main(["stats", str(sample_q), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    d = read_discharge(sample_q)
    first = np.datetime_as_string(d.time[0], "m").replace("T", " ")
    assert first == "2014-09-15 00:00"  # the file's first stamp: the end of the first step
    assert f"steps ending {first} .. " in err and "2014-09-14" not in err
    assert "skipped      q2y, q5y, q10y, q20y, q50y, q100y (flood frequency): a GEV fit needs at least 10 complete " \
           "water years (water years October to September); the run" in err and "has 0" in err
    assert "skipped      mean_annual, mam7: they need at least 1 complete water year" in err
    table = pd.read_csv(out).set_index("reach_id")
    assert not [c for c in table.columns if c.startswith("q") and c.endswith("y")] and "mam7" not in table
    # the duration statistics: numpy on the file's values, an independent oracle
    q = d.values.astype(np.float64)
    np.testing.assert_allclose(table.loc[d.ids, "mean"], q.mean(axis=1), rtol=1e-9)
    np.testing.assert_allclose(table.loc[d.ids, "max"], q.max(axis=1), rtol=1e-6)
    np.testing.assert_allclose(table.loc[d.ids, "q05"], np.percentile(q, 95, axis=1), rtol=1e-9)
    np.testing.assert_allclose(table.loc[d.ids, "q95"], np.percentile(q, 5, axis=1), rtol=1e-9, atol=1e-30)
    window = 7 * 24
    c = np.cumsum(np.c_[np.zeros(len(q)), q], axis=1)
    np.testing.assert_allclose(table.loc[d.ids, "min7"], ((c[:, window:] - c[:, :-window]) / window).min(axis=1),
                               rtol=1e-6, atol=1e-12)
    assert (table["years"] == 0).all()
    assert main(["stats", str(sample_q), "-o", str(tmp_path / "d.csv"), "--statistics", "duration", "-q"]) == 0
    assert list(pd.read_csv(tmp_path / "d.csv").columns) == ["reach_id", "mean", "max", "q05", "q50", "q95", "min7",
                                                             "fit", "years"]


def test_stats_refuses_a_short_run_when_asked_for_what_needs_years(sample_q, tmp_path, capsys):
    assert main(["stats", str(sample_q), "-o", str(tmp_path / "s.csv"), "--statistics", "all"]) != 0
    err = capsys.readouterr().err
    assert "(steps ending 2014-09-15 00:00 .. " in err and "has 0 complete water years; a GEV fit needs at least " \
                                                            "10" in err
    assert "--distribution gumbel" in err and "--statistics auto" in err, err
    assert main(["stats", str(sample_q), "-o", str(tmp_path / "s.csv"), "--return-periods", "2", "10"]) != 0
    err = capsys.readouterr().err
    assert "the return-period flows asked for cannot be fitted: a GEV fit needs at least 10 complete water years" \
           in err and "leave --return-periods out" in err, err
    assert not (tmp_path / "s.csv").exists()


def test_planners_name_the_variable_flag(sample_q, tmp_path, capsys):
    assert main(["stats", str(sample_q), "-o", str(tmp_path / "s.csv"), "--variable", "Qx"]) != 0
    err = capsys.readouterr().err
    assert "no variable 'Qx'; its variables: Q" in err and "with --variable NAME" in err, err
    assert main(["stats", str(sample_q), "-o", str(tmp_path / "s.csv"), "--variable", "Q", "-q",
                 "--statistics", "duration"]) == 0


def test_compare_finds_the_changed_reach(decades, tmp_path, capsys):
    net, base, scen = decades
    out = tmp_path / "change.csv"
    assert main(["compare", str(base), str(scen), "-o", str(out), "--statistic", "max", "--top", "3"]) == 0
    table = pd.read_csv(out).set_index("reach_id")
    changed = table.index[table["difference"] != 0].tolist()
    assert changed == [int(net.ids[5])]
    assert table.loc[int(net.ids[5]), "relative"] == pytest.approx(0.5, rel=1e-5)
    assert f"1 of {net.n_reaches} reaches changed" in capsys.readouterr().err


def test_compare_refuses_other_periods(decades, tmp_path, capsys):
    _, base, _ = decades
    ds = xr.open_dataset(base)
    other = tmp_path / "other.nc"
    d = read_discharge(base)
    write_q(other, Discharge(d.values[:, :400], d.ids, d.time[:400], d.dt))
    ds.close()
    assert main(["compare", str(base), str(other), "-o", str(tmp_path / "c.csv")]) != 0
    assert "different periods" in capsys.readouterr().err


def test_exceed_return_period_and_value(decades, tmp_path, capsys):
    _, path, _ = decades
    out = tmp_path / "ex.csv"
    assert main(["exceed", str(path), "-o", str(out), "--return-period", "2"]) == 0
    table = pd.read_csv(out).set_index("reach_id")
    # the 2-year flow is exceeded in about half the years: every reach at least once, none on most days
    assert table["exceeded"].all() and (table["events"] >= 2).all()
    assert (table["duration_h"] < 0.05 * 14 * 365 * 24).all()
    assert main(["exceed", str(path), "-o", str(out), "--threshold", "1e12"]) == 0
    assert not pd.read_csv(out)["exceeded"].any()
    assert main(["exceed", str(path), "-o", str(tmp_path / "f.csv"), "--threshold-field", "whatever"]) != 0
    assert "--threshold-field needs the routed network" in capsys.readouterr().err


def test_compare_names_two_files_of_the_same_name_by_their_folders(decades, tmp_path, capsys):
    from thalweg.results.planning import run_names

    _, base, _ = decades
    d = read_discharge(base)
    (tmp_path / "r1").mkdir()
    (tmp_path / "y1").mkdir()
    write_q(tmp_path / "r1" / "Q.nc", d)
    write_q(tmp_path / "y1" / "Q.nc", Discharge(d.values[:-1], d.ids[:-1], d.time, d.dt))
    assert main(["compare", str(tmp_path / "r1" / "Q.nc"), str(tmp_path / "y1" / "Q.nc"),
                 "-o", str(tmp_path / "c.csv")]) != 0
    err = capsys.readouterr().err
    assert f"1 reach only in {Path('r1', 'Q.nc')} ({d.ids[-1]})" in err, err
    assert run_names("a/b/Q.nc", "a/c/Q.nc") == (str(Path("b", "Q.nc")), str(Path("c", "Q.nc")))
    assert run_names("x/base.nc", "x/scen.nc") == ("base.nc", "scen.nc")
    same = run_names("x/Q.nc", "x/Q.nc")
    assert same[0] == same[1] == str(Path("x/Q.nc").absolute())


def _flags_of(parser) -> dict[str, object]:
    return {max(a.option_strings, key=len): a for a in parser._actions if a.option_strings}


def test_planners_options_have_one_definition_for_the_cli_and_the_service():
    import argparse

    from thalweg.cli import build_parser
    from thalweg.config import PlanningSettings, options
    from thalweg.results.frequency import DEFAULT_RETURN_PERIODS, DISTRIBUTIONS, STATISTICS
    from thalweg.server.bodies import CompareJob, ExceedanceJob, StatsJob

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    table = options(PlanningSettings)
    groups = {"stats": ("discharge reading", "frequency", "stats"), "compare": ("discharge reading", "frequency",
                                                                               "compare"),
              "exceed": ("discharge reading", "frequency")}
    bodies = {"stats": StatsJob, "compare": CompareJob, "exceed": ExceedanceJob}
    for command, wanted in groups.items():
        flags = _flags_of(sub[command])
        body = bodies[command].model_fields
        for name, (f, o) in table.items():
            if o.group in wanted:
                assert o.flag in flags and flags[o.flag].dest == name, (command, name)
                assert o.help in flags[o.flag].help
                assert body[name].description == o.help  # the same words in the OpenAPI schema
                assert body[name].default == f.default
            else:
                assert o.flag not in flags and name not in body, (command, name)
    # the settings model's literals agree with the library's (config stays free of numpy)
    from thalweg import config

    assert config.STATISTICS == STATISTICS and tuple(table["distribution"][1].choices) == DISTRIBUTIONS
    assert "2 5 10 20 50 100" in table["return_periods"][1].help
    assert " ".join(f"{p:g}" for p in DEFAULT_RETURN_PERIODS) == "2 5 10 20 50 100"


def test_no_gpkg_help_says_that_it_leaves_the_layer_out():
    import argparse

    from thalweg.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    text = _flags_of(sub["route"])["--no-gpkg"].help
    assert "leaves it out" in text and not text.startswith("write")


def test_compare_of_a_short_run_takes_min7_and_refuses_mam7_with_the_years(sample_q, tmp_path, capsys):
    out = tmp_path / "c.csv"
    assert main(["compare", str(sample_q), str(sample_q), "-o", str(out), "--statistic", "min7", "-q"]) == 0
    d = read_discharge(sample_q)
    c = np.cumsum(np.c_[np.zeros(d.n_reaches), d.values.astype(np.float64)], axis=1)
    window = 7 * 24
    np.testing.assert_allclose(pd.read_csv(out).set_index("reach_id").loc[d.ids, "baseline"],
                               ((c[:, window:] - c[:, :-window]) / window).min(axis=1), rtol=1e-6, atol=1e-12)
    assert main(["compare", str(sample_q), str(sample_q), "-o", str(out), "--statistic", "mam7"]) != 0
    err = capsys.readouterr().err
    assert "mam7 cannot be compared: they need at least 1 complete water year" in err and "has 0" in err, err
    assert "--statistic mean" in err
