"""Forcings: depths per catchment from runoff-like files, units converted, put on one step."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from thalweg.errors import InputError, RunoffError
from thalweg.network import from_arrays
from thalweg.runoff.forcings import read_forcings, read_static

AREA = np.array([1e6, 2e6, 3e6])


@pytest.fixture
def net():
    return from_arrays([10, 20, 30], [30, 30, -1], [1000.0, 2000.0, 1500.0], catchment_area=AREA)


def write(path, var, values, start, step_s, units):
    """values [M, T] over (riverId, time); time = step starts with bounds."""
    t = np.datetime64(start, "s") + np.arange(values.shape[1]) * np.timedelta64(step_s, "s")
    ds = xr.Dataset({var: (("riverId", "time"), values.astype("float64"), {"units": units}),
                     "time_bnds": (("time", "nv"), np.stack([t, t + np.timedelta64(step_s, "s")], 1))},
                    coords={"riverId": [10, 20, 30], "time": ("time", t, {"bounds": "time_bnds"})})
    units = {"units": "seconds since 2000-01-01 00:00:00"}
    ds.to_netcdf(path, encoding={"time": units, "time_bnds": units})
    return path


def test_rates_become_depths_and_daily_values_spread_over_hours(net, tmp_path):
    rng = np.random.default_rng(0)
    rain = rng.random((3, 48))  # kg m-2 s-1 -> mm per hour = 3600 x value
    pet = rng.random((3, 2)) * 5.0  # mm per day
    p = write(tmp_path / "p.nc", "precipitation", rain, "2020-01-01T00:00", 3600, "kg m-2 s-1")
    e = write(tmp_path / "e.nc", "pet", pet, "2020-01-01T00:00", 86400, "mm")
    f = read_forcings({"precipitation": p, "pet": e}, net)
    assert f.dt == 3600.0 and f.n_steps == 48 and f.names == ("precipitation", "pet")
    np.testing.assert_allclose(f.variable("precipitation"), rain * 3600.0, rtol=1e-5)
    np.testing.assert_allclose(f.variable("pet"), np.repeat(pet / 24.0, 24, axis=1), rtol=1e-5)


def test_finer_forcing_is_summed_and_the_common_span_kept(net, tmp_path):
    hourly = np.arange(3 * 30, dtype=float).reshape(3, 30)
    p = write(tmp_path / "p.nc", "precipitation", hourly, "2020-01-01T00:00", 3600, "mm")
    f = read_forcings({"precipitation": p}, net, dt=3 * 3600.0)
    assert f.n_steps == 10
    np.testing.assert_allclose(f.variable("precipitation"), hourly.reshape(3, 10, 3).sum(-1), rtol=1e-6)
    e = write(tmp_path / "e.nc", "pet", np.ones((3, 20)), "2020-01-01T06:00", 3600, "mm")
    both = read_forcings({"precipitation": p, "pet": e}, net)
    assert both.n_steps == 20 and str(both.time[0]) == "2020-01-01T06:00:00.000"
    np.testing.assert_allclose(both.variable("precipitation"), hourly[:, 6:26], rtol=1e-6)


def test_a_discharge_is_not_a_forcing(net, tmp_path):
    p = write(tmp_path / "q.nc", "precipitation", np.ones((3, 4)), "2020-01-01", 3600, "m3 s-1")
    with pytest.raises(InputError, match="forcings are depths"):
        read_forcings({"precipitation": p}, net)


def test_forcings_need_catchment_areas(tmp_path):
    bare = from_arrays([1, 2], [2, -1], [1000.0, 1000.0])
    with pytest.raises(InputError, match="no catchment areas"):
        read_forcings({"precipitation": tmp_path / "none.nc"}, bare)


def test_too_short_forcings_are_refused(net, tmp_path):
    p = write(tmp_path / "p.nc", "precipitation", np.ones((3, 4)), "2020-01-01", 3600, "mm")
    with pytest.raises(RunoffError, match="4 steps"):
        read_forcings({"precipitation": p}, net, n_steps=10)


def test_static_attributes_from_a_file_and_the_network(net, tmp_path):
    path = tmp_path / "s.nc"
    xr.Dataset({"slope": (("riverId",), [0.3, 0.1, 0.2])}, coords={"riverId": [30, 10, 20]}).to_netcdf(path)
    values = read_static(["slope", "catchment_area"], net, path)
    np.testing.assert_allclose(values, np.column_stack([[0.1, 0.2, 0.3], AREA]))
    table = tmp_path / "s.csv"
    table.write_text("reach_id,dd\n10,1.5\n20,2.5\n")
    with pytest.raises(InputError, match="lacks 1 reaches"):
        read_static(["dd"], net, table)


def test_an_absent_variable_after_the_path_is_named_in_the_forcing_syntax(net, tmp_path):
    """'PATH:VARIABLE' naming a variable the file lacks: the hint gives the forcing's own syntax (every surface
    takes it: --forcing NAME=PATH:VARIABLE, sources={NAME: 'PATH:VARIABLE'}), not route's --variable."""
    p = write(tmp_path / "p.nc", "precipitation", np.ones((3, 24)), "2020-01-01T00:00", 3600, "mm")
    with pytest.raises(InputError) as info:
        read_forcings({"rain": f"{p}:nosuch"}, net)
    text = str(info.value)
    assert "forcing 'rain': no variable nosuch (variables: precipitation" in text, text
    assert f"as rain's source '{p}:VARIABLE'" in text and "--variable" not in text and "variable=" not in text
    # the variable named after the path is read, and a forcing named like the file's variable needs no name
    assert read_forcings({"rain": f"{p}:precipitation"}, net).names == ("rain",)
    assert read_forcings({"precipitation": p}, net).names == ("precipitation",)
