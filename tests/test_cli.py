"""The ``thalweg`` command end to end: files in, files out, numbers checked against the library."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr

from thalweg.cli import main
from thalweg.network import scheidegger_network
from thalweg.params import geoglows_muskingum
from thalweg.results import read_discharge
from thalweg.routing import route
from thalweg.testing.layers import write_layer

DT = 3 * 3600.0


@pytest.fixture(scope="module")
def lattice():
    return scheidegger_network(150, seed=21, with_geometry=True)


def _ds_ids(net):
    return np.where(net.downstream >= 0, net.ids[np.maximum(net.downstream, 0)], -1)


def _write_m3_riv(path, net, volumes):
    """RAPID m3_riv(time, rivid): volumes [m3] per 3-hour step, time stamps at step starts."""
    seconds = np.arange(volumes.shape[1]) * int(DT)
    xr.Dataset({"m3_riv": (("time", "rivid"), volumes.T.astype("float32"), {"units": "m3"}),
                "rivid": (("rivid",), net.ids.astype("int32")),
                "time": (("time",), seconds, {"units": "seconds since 2010-01-01 00:00:00"})}).to_netcdf(path)
    return path


@pytest.fixture
def volumes(lattice):
    rng = np.random.default_rng(3)
    return rng.gamma(1.5, 2000.0, size=(lattice.n_reaches, 40)).astype("float32")


def test_route_geoglows_table_with_rapid_runoff(tmp_path, lattice, volumes, capsys):
    rng = np.random.default_rng(0)
    k = rng.uniform(3 * 3600, 12 * 3600, lattice.n_reaches)
    x = rng.uniform(0.1, 0.3, lattice.n_reaches)
    network = write_layer(tmp_path / "streams.parquet", "geoglows", lattice.ids, _ds_ids(lattice),
                          lengths=lattice.length, areas=lattice.area, muskingum_k=k, muskingum_x=x)
    runoff = _write_m3_riv(tmp_path / "m3_riv.nc", lattice, volumes)
    out = tmp_path / "out" / "Qout.nc"
    assert main(["route", str(network), str(runoff), "-o", str(out), "--convention", "both", "--scheme", "muskingum",
                 "-q"]) == 0

    expected = route(lattice, torch.from_numpy(volumes / DT), {"k": k, "x": x}, "muskingum", dt=DT).numpy()
    end = read_discharge(out)
    order = end.index_of(lattice.ids)
    np.testing.assert_allclose(end.values[order], expected, rtol=1e-5, atol=1e-4)
    assert end.dt == DT
    assert end.time[0] == np.datetime64("2010-01-01T03:00:00")  # end of the first step
    with xr.open_dataset(out) as ds:  # a Qout name gets the RAPID file; the river-route Q goes beside it
        assert ds.attrs["thalweg_time_convention"] != xr.open_dataset(out.with_name("Qout_Q.nc")).attrs[
            "thalweg_time_convention"]
        mean = ds["Qout"].transpose("rivid", "time").values[order]
    # RAPID's step mean is our end-of-step value of the previous step (cold start: 0)
    np.testing.assert_allclose(mean[:, 1:], expected[:, :-1], rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(mean[:, 0], 0.0)
    settings = json.loads(out.with_name("Qout.settings.json").read_text())
    assert settings["scheme"] == "muskingum" and settings["runoff"] == str(runoff)


def test_route_without_k_uses_the_geoglows_rule(tmp_path, lattice, volumes, capsys):
    network = write_layer(tmp_path / "rivers.gpkg", "geoglows", lattice.ids, _ds_ids(lattice),
                          lengths=lattice.length, areas=lattice.area, geometry=lattice.geometry, crs=lattice.crs)
    runoff = _write_m3_riv(tmp_path / "m3_riv.nc", lattice, volumes)
    out = tmp_path / "Q.nc"
    assert main(["route", str(network), str(runoff), "-o", str(out), "--scheme", "muskingum"]) == 0
    err = capsys.readouterr().err
    assert "parameter k: GEOGloWS rule" in err
    params = geoglows_muskingum(lattice)
    expected = route(lattice, torch.from_numpy(volumes / DT), params, "muskingum", dt=DT).numpy()
    got = read_discharge(out)
    np.testing.assert_allclose(got.values[got.index_of(lattice.ids)], expected, rtol=1e-5, atol=1e-4)
    import geopandas as gpd

    layer = gpd.read_file(out.with_suffix(".gpkg"))
    assert len(layer) == lattice.n_reaches and {"mean", "max", "q05", "q50", "q95"} <= set(layer.columns)


def test_route_writes_uncompressed_netcdf_unless_asked(tmp_path, lattice, volumes):
    """--compression defaults to 0 (zlib level 1 wrote the 100k x 8,784 case 5.7x slower); 1 still compresses."""
    import netCDF4

    network = write_layer(tmp_path / "rivers.gpkg", "geoglows", lattice.ids, _ds_ids(lattice),
                          lengths=lattice.length, areas=lattice.area, geometry=lattice.geometry, crs=lattice.crs)
    runoff = _write_m3_riv(tmp_path / "m3_riv.nc", lattice, volumes)
    for flags, zlib in (([], False), (["--compression", "1"], True)):
        out = tmp_path / f"Q{len(flags)}.nc"
        assert main(["route", str(network), str(runoff), "-o", str(out), "--no-gpkg", "-q", *flags]) == 0
        with netCDF4.Dataset(out) as nc:
            data = nc.variables["Qout" if "Qout" in nc.variables else "Q"]
            assert data.filters()["zlib"] is zlib, flags


def test_other_schemes_take_parameters_as_constants_or_fields(tmp_path, lattice, volumes):
    network = write_layer(tmp_path / "rivers.parquet", "geoglows", lattice.ids, _ds_ids(lattice),
                          lengths=lattice.length, areas=lattice.area)
    runoff = _write_m3_riv(tmp_path / "m3_riv.nc", lattice, volumes)
    out = tmp_path / "hayami.nc"
    assert main(["route", str(network), str(runoff), "-o", str(out), "--scheme", "hayami", "--param",
                 "celerity=1.1", "--param", "diffusivity=4000", "-q"]) == 0
    expected = route(lattice, torch.from_numpy(volumes / DT), {"celerity": 1.1, "diffusivity": 4000.0}, "hayami",
                     dt=DT).numpy()
    got = read_discharge(out)
    np.testing.assert_allclose(got.values[got.index_of(lattice.ids)], expected, rtol=1e-5, atol=1e-4)
    with xr.open_dataset(out) as ds:
        assert "celerity: constant 1.1" in ds.attrs["parameters"]


@pytest.mark.parametrize("engine", ["exact", "closure", "fft"])
def test_engine_option_gives_the_same_discharge(tmp_path, lattice, volumes, engine):
    network = write_layer(tmp_path / "rivers.parquet", "geoglows", lattice.ids, _ds_ids(lattice),
                          lengths=lattice.length, areas=lattice.area)
    runoff = _write_m3_riv(tmp_path / "m3_riv.nc", lattice, volumes[:, :16])
    out = tmp_path / f"{engine}.nc"
    assert main(["route", str(network), str(runoff), "-o", str(out), "--scheme", "nash_cascade", "--param",
                 "n=2.5", "--param", "tau=5000", "--engine", engine, "-q"]) == 0
    expected = route(lattice, torch.from_numpy(volumes[:, :16] / DT), {"n": 2.5, "tau": 5000.0}, "nash_cascade",
                     dt=DT, engine="exact").numpy()
    got = read_discharge(out)
    np.testing.assert_allclose(got.values[got.index_of(lattice.ids)], expected, rtol=1e-5,
                               atol=1e-5 * np.abs(expected).max())
    with xr.open_dataset(out) as ds:
        assert ds.attrs["engine"] == engine and ds.attrs["scheme"] == "nash_cascade"


def test_unknown_engine_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["route", "a.gpkg", "b.nc", "-o", str(tmp_path / "q.nc"), "--engine", "warp"])
    assert exit_.value.code == 2 and "invalid choice: 'warp'" in capsys.readouterr().err


def test_gauges_write_hydrographs(tmp_path, lattice, volumes):
    network = write_layer(tmp_path / "rivers.parquet", "geoglows", lattice.ids, _ds_ids(lattice),
                          lengths=lattice.length, areas=lattice.area)
    runoff = _write_m3_riv(tmp_path / "m3_riv.nc", lattice, volumes)
    outlet = int(lattice.ids[np.argmax(lattice.area)])
    gauges = tmp_path / "gauges.csv"
    gauges.write_text(f"gauge_id,LINKNO\nG1,{outlet}\n")
    out = tmp_path / "Q.nc"
    assert main(["route", str(network), str(runoff), "-o", str(out), "--gauges", str(gauges),
                 "--hydrograph", str(int(lattice.ids[0])), "-q"]) == 0
    import pandas as pd

    csv = pd.read_csv(out.with_name("Q_hydrographs.csv"))
    assert list(csv.columns[1:]) == ["G1 [m3/s]", f"reach {int(lattice.ids[0])} [m3/s]"]  # gauges by gauge id
    q = read_discharge(out)
    np.testing.assert_allclose(csv["G1 [m3/s]"].to_numpy(), q.series(outlet), rtol=1e-6)


def test_input_errors_are_one_line_and_leave_no_output(tmp_path, capsys):
    network = write_layer(tmp_path / "rivers.gpkg", "hydrorivers", [1, 2, 3, 4], [2, 3, 1, 0],
                          lengths=[1000.0] * 4, areas=[1e6, 2e6, 3e6, 1e6])
    out = tmp_path / "Q.nc"
    runoff = tmp_path / "runoff.nc"
    runoff.write_bytes(b"")  # never read: the network fails first
    code = main(["route", str(network), str(runoff), "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 3  # an input error (2 is for usage errors)
    assert err.count("\n") == 0 and "Traceback" not in err
    assert "CycleError" in err and "1 -> 2 -> 3 -> 1" in err and "NEXT_DOWN" in err
    assert not out.exists() and not list(tmp_path.glob("Q*"))
    from thalweg.errors import CycleError

    with pytest.raises(CycleError):
        main(["--debug", "route", str(network), str(runoff), "-o", str(out)])


def test_runoff_missing_reaches_is_an_error_naming_them(tmp_path, lattice, volumes, capsys):
    network = write_layer(tmp_path / "rivers.parquet", "geoglows", lattice.ids, _ds_ids(lattice),
                          lengths=lattice.length, areas=lattice.area)
    part = scheidegger_network(150, seed=21).take(np.arange(1, lattice.n_reaches))
    runoff = _write_m3_riv(tmp_path / "m3_riv.nc", part, volumes[1:])
    out = tmp_path / "Q.nc"
    assert main(["route", str(network), str(runoff), "-o", str(out)]) == 3
    err = capsys.readouterr().err
    assert "RunoffMismatchError" in err and str(int(lattice.ids[0])) in err
    assert not out.exists()
    assert main(["route", str(network), str(runoff), "-o", str(out), "--missing", "zero", "-q"]) == 0
    assert out.exists()


def test_info_reports_schema_counts_and_problems(tmp_path, lattice, capsys):
    network = write_layer(tmp_path / "rivers.gpkg", "hydrorivers", lattice.ids, _ds_ids(lattice),
                          lengths=lattice.length, areas=lattice.area, geometry=lattice.geometry, crs=lattice.crs)
    assert main(["info", str(network)]) == 0
    text = capsys.readouterr().out
    assert "hydrorivers" in text and f"{lattice.n_reaches:,}" in text
    assert f"max depth      {int(lattice.depth.max())}" in text
    assert main(["info", str(network), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["reaches"] == lattice.n_reaches and data["outlets"] == lattice.outlets.size
    assert data["fields"]["downstream"] == "NEXT_DOWN" and data["problems"] == []


def test_bad_output_suffix_and_unknown_setting(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:  # a usage error: argparse's exit code and usage line
        main(["route", "a.gpkg", "b.nc", "-o", str(tmp_path / "q.csv")])
    assert exit_.value.code == 2 and "must be a NetCDF file" in capsys.readouterr().err
    from thalweg.config import RouteSettings
    from thalweg.errors import InputError

    with pytest.raises(InputError, match="unknown setting.*colour.*Known settings"):
        RouteSettings.from_dict({"network": "a", "runoff": "b", "colour": "red"})
    with pytest.raises(InputError, match="'convention' is 'middle'"):
        RouteSettings(network="a", runoff="b", convention="middle")
    with pytest.raises(InputError, match="'engine' is 'warp'") as err:
        RouteSettings(network="a", runoff="b", engine="warp")
    assert "auto, exact, closure, fft" in err.value.hint
    with pytest.raises(InputError, match="'scheme' is 'muskinghum'") as err:
        RouteSettings(network="a", runoff="b", scheme="muskinghum")
    assert "muskingum" in err.value.hint


def test_demo_runs_on_the_sample_basin(tmp_path, capsys):
    import pandas as pd

    out = tmp_path / "demo"
    # the demo's own budget is 40 iterations; 2 keep the test fast and exercise the same path
    assert main(["demo", "--out", str(out), "--device", "cpu", "--train-iterations", "2"]) == 0
    for name in ("cance_discharge.nc", "cance_discharge_Qout.nc", "cance_discharge.gpkg",
                 "cance_discharge_hydrographs.csv", "cance_discharge_map.png", "cance_hydrographs.png",
                 "metrics.json", "cance_learned_hydrographs.png", "cance_gr4_runoff_model.pt",
                 "cance_gr4_train.json", "cance_gr4_params.csv", "cance_gr4_runoff.nc"):
        assert (out / name).stat().st_size > 0, name
    scores = json.loads((out / "metrics.json").read_text())
    assert set(scores) == {"V3524010", "V3515010", "V3517010"}
    for s in scores.values():
        assert np.isfinite(s["nse"]) and np.isfinite(s["kge"])
    # the runoff was scaled so that the outlet's volume matches the observations (sample README)
    assert abs(scores["V3524010"]["pbias"]) < 2.0
    assert (out / "cance_discharge_map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "cance_learned_hydrographs.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the prior's scores per period against plain numpy on the hydrograph CSV and the observations
    sim = pd.read_csv(out / "cance_discharge_hydrographs.csv", index_col=0)
    sim.index = pd.to_datetime(sim.index).tz_localize(None)
    from thalweg.demo import sample_dir

    obs = pd.read_csv(sample_dir() / "cance_qobs.csv", index_col=0, parse_dates=True)
    reach = {gid: f"{gid} [m3/s]" for gid in ("V3524010", "V3515010", "V3517010")}  # headed by gauge id
    for period, (lo, hi) in {"calibration": ("2014-09-15", "2014-11-14"),
                             "validation": ("2014-11-15", "2015-01-15")}.items():
        days = (sim.index - pd.Timedelta("1s")).normalize()  # a step belongs to the day it runs in
        inside = (days >= lo) & (days <= hi)
        for gid, column in reach.items():
            o = obs[gid].reindex(sim.index)[inside].to_numpy()
            q = sim[column][inside].to_numpy()
            ok = np.isfinite(o)
            nse = 1 - np.sum((q[ok] - o[ok]) ** 2) / np.sum((o[ok] - o[ok].mean()) ** 2)
            assert scores[gid]["prior"][period]["nse"] == pytest.approx(nse, abs=1e-4), (gid, period)
            assert scores[gid]["prior"][period]["n"] == ok.sum()
    # the learned model's scores, from routing its written runoff and parameters, equal the training's own
    report = json.loads((out / "cance_gr4_train.json").read_text())
    assert report["iterations"] == 2 and report["settings"]["mode"] == "end-to-end"
    for gid, s in scores.items():
        for period in ("calibration", "validation"):
            after = report["metrics"]["after"][gid][period]
            for metric in ("nse", "kge", "pbias"):
                assert s["learned"][period][metric] == pytest.approx(after[metric], abs=1e-4), (gid, period)
    err = capsys.readouterr().err
    assert "learned NSE" in err and "cance_learned_hydrographs.png" in err


def test_demo_without_training(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--device", "cpu", "--no-train"]) == 0
    scores = json.loads((out / "metrics.json").read_text())
    assert all("learned" not in s for s in scores.values())
    assert not (out / "cance_learned_hydrographs.png").exists() and not list(out.glob("cance_gr4_*"))


# ---- command-line polish (issue 7 item 6) ----

class _Terminal:
    """stderr as a terminal (tqdm draws only there), keeping everything written."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True

    @property
    def text(self) -> str:
        return "".join(self.parts)


def test_progress_bar_has_one_label_moves_through_the_stages_and_warnings_keep_their_own_line(
        tmp_path, lattice, volumes, monkeypatch):
    network = write_layer(tmp_path / "rivers.gpkg", "geoglows", lattice.ids, _ds_ids(lattice),
                          lengths=lattice.length, areas=lattice.area, geometry=lattice.geometry, crs=lattice.crs)
    runoff = _write_m3_riv(tmp_path / "m3_riv.nc", lattice, volumes)
    term = _Terminal()
    monkeypatch.setattr("sys.stderr", term)
    # short k against the 3-hour step: plain Muskingum warns about negative coefficients mid-bar
    assert main(["route", str(network), str(runoff), "-o", str(tmp_path / "Q.nc"), "--k", "3600",
                 "--x", "0.45", "--scheme", "muskingum"]) == 0
    frames = [f for f in term.text.replace("\r", "\n").split("\n") if "%|" in f]
    labels = [f.split("%|")[0].rsplit(" ", 1)[0].strip() for f in frames]
    for frame, label in zip(frames, labels):
        if label:
            assert frame.count(label) == 1, frame  # the label once, not twice
    stages = {label.split(" ")[0] for label in labels}
    assert {"reading", "routing", "writing"} <= stages, stages
    percents = [int(f.split("%|")[0].split()[-1]) for f in frames]
    assert percents == sorted(percents) and percents[-1] > percents[0]
    warned = [line for line in term.text.replace("\r", "\n").split("\n") if "warning:" in line]
    assert warned and all(line.startswith("warning: Muskingum") for line in warned), warned


def test_version_and_help_import_neither_torch_nor_numpy():
    import subprocess
    import sys

    code = ("import sys\nfrom thalweg.cli import main\n"
            "for argv in (['--version'], ['--help'], ['route', '--help'], ['calibrate', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "heavy = [m for m in ('torch', 'numpy', 'pandas', 'xarray') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "thalweg 0.1.0" in proc.stdout and "--runoff-units" in proc.stdout


def test_help_documents_the_exit_codes(capsys):
    with pytest.raises(SystemExit):
        main(["route", "--help"])
    out = capsys.readouterr().out
    assert "exit codes:" in out
    for line in ("0   success", "1   internal error", "2   usage error", "3   input error"):
        assert line in out


def test_usage_input_and_internal_errors_have_distinct_exit_codes(tmp_path, lattice, volumes, capsys, monkeypatch):
    with pytest.raises(SystemExit) as exit_:
        main(["route", "a.gpkg", "b.nc", "-o", str(tmp_path / "q.nc"), "--bogus"])
    assert exit_.value.code == 2
    assert main(["route", str(tmp_path / "none.gpkg"), str(tmp_path / "none.nc"), "-o", str(tmp_path / "q.nc")]) == 3
    assert "the network file does not exist" in capsys.readouterr().err
    network = write_layer(tmp_path / "rivers.parquet", "geoglows", lattice.ids, _ds_ids(lattice),
                          lengths=lattice.length, areas=lattice.area)
    runoff = _write_m3_riv(tmp_path / "m3_riv.nc", lattice, volumes)

    def bug(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("thalweg.routing.route", bug)
    assert main(["route", str(network), str(runoff), "-o", str(tmp_path / "q.nc"), "-q"]) == 1
    assert "internal error: ZeroDivisionError: a bug" in capsys.readouterr().err


def test_existing_outputs_are_refused_without_overwrite(tmp_path, lattice, volumes, capsys):
    network = write_layer(tmp_path / "rivers.parquet", "geoglows", lattice.ids, _ds_ids(lattice),
                          lengths=lattice.length, areas=lattice.area)
    runoff = _write_m3_riv(tmp_path / "m3_riv.nc", lattice, volumes)
    out = tmp_path / "Q.nc"
    args = ["route", str(network), str(runoff), "-o", str(out), "-q", "--convention", "both"]
    out.with_name("Q_Qout.nc").write_text("keep me")
    assert main(args) == 3
    err = capsys.readouterr().err
    assert "OutputError" in err and "Q_Qout.nc: the qout output exists" in err and "--overwrite" in err
    assert out.with_name("Q_Qout.nc").read_text() == "keep me" and not out.exists()  # nothing written
    assert main(args + ["--overwrite"]) == 0
    assert read_discharge(out.with_name("Q_Qout.nc")).n_reaches == lattice.n_reaches


def test_shell_completion_script_lists_the_options(capsys):
    assert main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    assert "_shtab_thalweg" in script and "--runoff-units" in script and "--catchment-layer" in script
