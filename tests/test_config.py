"""The settings model is the one source of the CLI's options, the service's job bodies and saved runs."""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import typing

import numpy as np
import pytest
import xarray as xr

from thalweg.cli import build_parser, main, option_table
from thalweg.config import CalibrateSettings, RouteSettings, TrainSettings, option_keys, options, reading_kwargs
from thalweg.errors import InputError, opt, option_names, render_options
from thalweg.network import scheidegger_network
from thalweg.results import read_discharge
from thalweg.testing.layers import write_layer

DT = 3600.0


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def _by_dest(p: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in p._actions}


@pytest.mark.parametrize("command, cls", [("route", RouteSettings), ("calibrate", CalibrateSettings)])
def test_every_flagged_setting_is_a_cli_option_with_the_models_help_and_choices(command, cls):
    actions = _by_dest(_subparser(command))
    for name, (_, o) in options(cls).items():
        if not o.flag:
            continue
        a = actions[name]
        assert o.flag in a.option_strings, name
        assert a.help.startswith(o.help.replace("%", "%%")), name
        if o.choices is not None:
            assert list(a.choices) == list(o.choices), name
        # the default lives in the model only: a flag not given leaves the setting to the model (or the file)
        assert a.default is argparse.SUPPRESS, name


def test_job_bodies_derive_their_settings_fields_from_the_model():
    from thalweg.server.bodies import CalibrateJob, ExtractJob, RouteJob

    for model, cls, groups in ((RouteJob, RouteSettings, {"routing", "runoff reading", "outputs", "network reading"}),
                               (CalibrateJob, CalibrateSettings, {"calibration", "routing", "network reading"}),
                               (ExtractJob, RouteSettings, {"network reading"})):
        schema = model.model_json_schema(by_alias=True)["properties"]
        for name, (f, o) in options(cls).items():
            if not o.server or o.group not in groups:
                continue
            prop = schema[name]  # the JSON key is the setting's name (schema too, an alias)
            assert prop["description"] == o.help, (model.__name__, name)
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if name not in ("gauges", "observed") or model is not CalibrateJob:
                field = model.model_fields["network_schema" if name == "schema" else name]
                assert field.get_default(call_default_factory=True) == default, (model.__name__, name)
            if o.choices is not None:
                enum = prop.get("enum") or next(x["enum"] for x in prop["anyOf"] if "enum" in x)
                assert sorted(enum) == sorted(o.choices), (model.__name__, name)
    # a body's settings go to RouteSettings as they are
    body = RouteJob.model_validate({"kind": "route", "network": "/", "runoff": "/", "runoff_units": "mm/h",
                                    "schema": "geoglows", "tolerance": 0.5, "engine": "exact"})
    fields = body.settings_fields()
    assert fields["runoff_units"] == "mm/h" and fields["schema"] == "geoglows" and fields["tolerance"] == 0.5
    settings = RouteSettings(network="a", runoff="b", **fields)
    assert settings.engine == "exact" and settings.runoff_units == "mm/h"


def test_unknown_and_mistyped_settings_fail_with_the_list():
    with pytest.raises(InputError, match="unknown setting.*colour.*Known settings: .*area_raster") as err:
        RouteSettings.from_dict({"network": "a", "runoff": "b", "colour": "red"})
    assert "runoff_units" in err.value.hint
    with pytest.raises(InputError, match="'tolerance' is -1.0; it must be above 0"):
        RouteSettings(network="a", runoff="b", tolerance=-1.0)
    with pytest.raises(InputError, match="'time_label' is 'middle'") as err:
        RouteSettings(network="a", runoff="b", time_label="middle")
    assert err.value.hint == "Use one of: start, end."
    with pytest.raises(InputError, match="'device' is 'tpu'") as err:
        RouteSettings(network="a", runoff="b", device="tpu")
    assert "cpu, cuda" in err.value.hint
    with pytest.raises(InputError, match="'iterations' is 0; it must be at least 1"):
        CalibrateSettings(network="a", runoff="b", gauges="g", observed="o", iterations=0)
    with pytest.raises(InputError, match="'hydrograph_reaches' is .*a list of reach ids"):
        RouteSettings(network="a", runoff="b", hydrograph_reaches=["x"])


def test_every_reading_keyword_of_the_library_has_a_cli_option():
    from thalweg.hydrography import read_network
    from thalweg.runoff import read_runoff

    # given another way: the path, the network object, geometry kept for the maps, the weight cache beside the
    # outputs; GeoTIFF band dates (a list) and the network's own catchment areas (with their layer and id
    # field) have no flag yet; reach ids of an in-memory array are Python-only
    other = {"path", "network", "keep_geometry", "weights_cache", "time", "read_network.catchments",
             "read_network.catchment_layer", "read_network.catchment_id_field", "read_runoff.ids"}
    table = option_table(build_parser())
    for fn in (read_network, read_runoff):
        for kw in inspect.signature(fn).parameters:
            key = f"{fn.__name__}.{kw}"
            if kw in other or key in other:
                continue
            assert key in table, f"{key} has no CLI option"
    flags = [*_subparser("route")._actions, *_subparser("calibrate")._actions]
    for key, flag in table.items():  # every flag a hint can name exists
        for one in flag.split("/"):
            assert any(one in a.option_strings for a in flags), (key, one)
    assert table["read_runoff.units"] == "--runoff-units" and table["read_network.layer"] == "--layer"
    assert table["route.engine"] == "--engine" and table["read_runoff.catchment_layer"] == "--catchment-layer"
    # each flagged setting's keyword maps to its own flag
    for name, (_, o) in options(CalibrateSettings).items():
        if o.flag and o.keyword:
            assert table[o.keyword] == o.flag, name


def test_hints_render_as_cli_flags_and_json_keys():
    text = f"Give {opt('read_runoff.units', 'mm/h')} or {opt('read_network.layer')}."
    assert render_options(text) == "Give units='mm/h' or layer=."  # Python, outside any edge
    with option_names(option_table(build_parser()), "cli"):
        assert render_options(text) == "Give --runoff-units mm/h or --layer."
    with option_names(option_keys(), "json"):
        assert render_options(text) == 'Give "runoff_units": "mm/h" or layer.'
    assert "route.out_dir" not in option_keys()  # the service picks the folder itself


def test_reading_kwargs_pass_each_reading_setting_under_its_keyword():
    s = RouteSettings(network="a", runoff="b", runoff_units="mm/h", time_label="end", length_unit="km",
                      tolerance=2.0, layer="rivers")
    assert reading_kwargs(dataclasses.asdict(s), "read_runoff") == {"units": "mm/h", "time_label": "end",
                                                                   "nan": "error", "missing": "error"}
    assert reading_kwargs(dataclasses.asdict(s), "read_network") == {"layer": "rivers", "length_unit": "km",
                                                                    "tolerance": 2.0, "check_area": "error"}


@pytest.fixture
def files(tmp_path):
    net = scheidegger_network(60, seed=4)
    ds = np.where(net.downstream >= 0, net.ids[np.maximum(net.downstream, 0)], -1)
    network = write_layer(tmp_path / "streams.parquet", "geoglows", net.ids, ds, lengths=net.length, areas=net.area)
    rng = np.random.default_rng(1)
    volumes = rng.gamma(1.5, 200.0, size=(net.n_reaches, 24)).astype("float32")
    runoff = tmp_path / "runoff.nc"
    # no units attribute: the CLI must be able to say them (--runoff-units)
    xr.Dataset({"m3_riv": (("time", "rivid"), volumes.T)}, coords={
        "rivid": net.ids.astype("int32"),
        "time": np.datetime64("2020-01-01") + np.arange(24) * np.timedelta64(3600, "s")}).to_netcdf(runoff)
    return net, network, runoff, volumes


def test_route_settings_file_reruns_a_run_and_flags_override_it(tmp_path, files, capsys, monkeypatch):
    net, network, runoff, volumes = files
    out = tmp_path / "a" / "Q.nc"
    assert main(["route", str(network), str(runoff), "-o", str(out), "--runoff-units", "m3", "--k", "7200",
                 "--x", "0.2", "-q"]) == 0
    saved = out.with_name("Q.settings.json")
    record = json.loads(saved.read_text())
    assert record["runoff_units"] == "m3" and record["params"] == {"k": 7200.0, "x": 0.2}
    first = read_discharge(out)
    # from another folder, into another output, with one flag changed
    monkeypatch.chdir(tmp_path)
    again = tmp_path / "b" / "Q2.nc"
    assert main(["route", "--settings", str(saved), "-o", str(again), "--convention", "both", "-q"]) == 0
    second = read_discharge(again)
    np.testing.assert_array_equal(second.values, first.values)
    assert again.with_name("Q2_Qout.nc").exists()
    rerun = json.loads(again.with_name("Q2.settings.json").read_text())
    assert rerun["convention"] == "both" and rerun["params"] == record["params"] and rerun["network"] == str(network)
    # the same file in place needs --overwrite, and is then replaced by the settings of the new run
    assert main(["route", "--settings", str(saved), "--x", "0.1", "-q"]) == 3
    assert "exists; it is not replaced without --overwrite" in capsys.readouterr().err
    assert main(["route", "--settings", str(saved), "--x", "0.1", "--overwrite", "-q"]) == 0
    assert json.loads(saved.read_text())["params"] == {"k": 7200.0, "x": 0.1}


def test_settings_file_errors_name_the_file(tmp_path, capsys):
    bad = tmp_path / "s.json"
    bad.write_text(json.dumps({"network": "a", "runoff": "b", "out_dir": ".", "name": "Q", "colour": 1}))
    assert main(["route", "--settings", str(bad)]) == 3
    err = capsys.readouterr().err
    assert "s.json: unknown setting(s) colour" in err and "Known settings" in err
    # a misspelt key (route and calibrate read settings files in one place): the file, the key, the closest ones
    bad.write_text(json.dumps({"network": "a", "runoff": "b", "out_dir": ".", "name": "Q", "warmpu": 48,
                               "validate_gauge": ["A"]}))
    assert main(["calibrate", "--settings", str(bad)]) == 3
    err = capsys.readouterr().err
    assert "s.json: unknown setting(s) validate_gauge, warmpu in the calibrate settings." in err
    assert "'validate_gauge': did you mean validate_gauges?; 'warmpu': did you mean warmup?" in err, err
    assert main(["route", "--settings", str(bad)]) == 3  # route has no warm-up: nothing close to suggest
    err = capsys.readouterr().err
    assert "in the route settings" in err and "'warmpu'" not in err
    with pytest.raises(InputError, match="unknown setting.*bogus in the train settings"):
        TrainSettings.from_dict({"network": "a", "bogus": 1})
    bad.write_text("[1, 2]")
    assert main(["route", "--settings", str(bad)]) == 3
    assert "holds a JSON list, not an object" in capsys.readouterr().err


def test_reading_options_reach_the_reader(tmp_path, files):
    net, network, runoff, volumes = files
    out = tmp_path / "Q.nc"
    base = ["route", str(network), str(runoff), "-o", str(out), "--k", "7200", "--x", "0.2", "-q", "--overwrite"]
    assert main(base) == 0  # m3_riv without units: m3 per step (RAPID)
    volume = read_discharge(out).values
    assert main(base + ["--runoff-units", "m3 s-1"]) == 0
    rate = read_discharge(out).values
    # routing is linear: runoff read as a rate instead of a volume per 3600 s step is 3600 times larger
    np.testing.assert_allclose(rate, volume * DT, rtol=1e-5, atol=1e-3)
    assert json.loads(out.with_name("Q.settings.json").read_text())["runoff_units"] == "m3 s-1"


def test_annotations_are_kinds_the_model_checks():
    from thalweg.config import kind_of

    for cls in (RouteSettings, CalibrateSettings):
        for f in dataclasses.fields(cls):
            kind_of(f)  # KeyError for a type the checks do not know
    assert typing.get_type_hints(RouteSettings)["memory"] == float | None


def test_held_out_gauges_are_one_setting_and_one_flag_for_calibrate_and_train():
    cal, train = options(CalibrateSettings)["validate_gauges"][1], options(TrainSettings)["validate_gauges"][1]
    assert (cal.flag, cal.keyword, cal.help) == (train.flag, train.keyword, train.help) == \
        ("--validate-gauges", "run_fit.validate_gauges", cal.help)
    for command in ("calibrate", "train"):
        p = _subparser(command)
        args = p.parse_args([*(["n", "r"] if command == "calibrate" else ["n"]), "--validate-gauges", "A,B",
                             "--validate-gauges", "C"])
        assert args.validate_gauges == ["A", "B", "C"], command
    # hints written with train's keyword name the same flag
    assert option_table(build_parser())["train.validate_gauges"] == "--validate-gauges"
