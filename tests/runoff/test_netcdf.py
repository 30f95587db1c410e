"""RAPID m3_riv, river-route catchment_runoff and other reach NetCDF files -> Runoff."""
from __future__ import annotations

import numpy as np
import pytest

from thalweg.errors import (MissingValueError, RunoffError, RunoffMismatchError, ThalwegWarning, UnitError)
from thalweg.runoff import Runoff, read_runoff

H3 = 3 * 3600
T0 = np.datetime64("2000-01-01T00:00", "ns")


def volumes(t=4, ids=(30, 10, 20)):
    """[T, M] volumes: step k, file column j -> 100 * (k * M + j + 1) m3."""
    return 100.0 * (np.arange(t * len(ids)).reshape(t, len(ids)) + 1)


def test_m3_riv_volumes_become_rates_in_network_order(tmp_path, net3, reach_nc):
    v = volumes()
    path = reach_nc(tmp_path / "m3_riv.nc", v, [30, 10, 20], np.arange(4) * H3)
    r = read_runoff(path, net3)
    assert isinstance(r, Runoff) and r.values.dtype == np.float32
    np.testing.assert_array_equal(r.ids, [10, 20, 30])
    expected = v[:, [1, 2, 0]].T / H3  # file columns 30, 10, 20 -> network rows 10, 20, 30
    np.testing.assert_allclose(r.values, expected, rtol=1e-6)
    assert r.dt == H3
    # without bounds RAPID stamps mark step starts
    np.testing.assert_array_equal(r.time, T0 + np.arange(4) * np.timedelta64(H3, "s"))
    assert r.attrs["format"] == "rapid_m3_riv" and r.attrs["units"] == "m3"
    assert r.volume() == pytest.approx(v.sum(), rel=1e-6)


def test_time_bounds_decide_the_step_start(tmp_path, net3, reach_nc):
    starts = np.arange(4) * H3 + 7 * 3600
    # stamps at the step ends, as some producers write them: the bounds say where the steps lie
    path = reach_nc(tmp_path / "m3_riv.nc", volumes(), [30, 10, 20], starts + H3,
                    bounds=np.stack([starts, starts + H3], axis=1))
    r = read_runoff(path, net3)
    np.testing.assert_array_equal(r.time, T0 + starts.astype("timedelta64[s]"))
    assert r.attrs["time_stamps"] == "time bounds"


@pytest.mark.parametrize("id_dim", ["rivid", "river_id", "riverId"])
def test_reach_dimension_names_of_rapid_and_geoglows(tmp_path, net3, reach_nc, id_dim):
    path = reach_nc(tmp_path / "m3.nc", volumes(), [30, 10, 20], np.arange(4) * H3, id_dim=id_dim)
    r = read_runoff(path, net3)
    np.testing.assert_allclose(r.values[2], volumes()[:, 0] / H3, rtol=1e-6)


@pytest.mark.parametrize("unit, factor", [("m3", None), ("m", 1.0), ("mm", 1e-3), ("kg m-2", 1e-3)])
def test_catchment_runoff_units(tmp_path, net3, reach_nc, unit, factor):
    v = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])  # [T, M], file reaches 10, 20, 30
    area = np.array([5e5, 1e6, 2e6])  # the file's areas win over the network's
    ends = (np.arange(2) + 1) * 3600
    path = reach_nc(tmp_path / "cr.nc", v, [10, 20, 30], ends, var="catchment_runoff", units=unit, id_dim="riverId",
                    layout=("id", "time"), extra={"catchment_area": (("riverId",), area, {"units": "m2"})})
    r = read_runoff(path, net3)
    expected = v.T / 3600 if factor is None else v.T * factor * area[:, None] / 3600
    np.testing.assert_allclose(r.values, expected, rtol=1e-6)
    # river-route stamps mark step ends
    np.testing.assert_array_equal(r.time, T0 + np.array([0, 3600], "timedelta64[s]"))
    assert r.attrs["format"] == "river_route_catchment_runoff"


@pytest.mark.parametrize("unit, to_m_per_s", [("kg m-2 s-1", 1e-3), ("mm/h", 1e-3 / 3600), ("m s-1", 1.0)])
def test_depth_rates_times_catchment_area(tmp_path, net3, reach_nc, unit, to_m_per_s):
    v = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    path = reach_nc(tmp_path / "r.nc", v, [10, 20, 30], [0, 86400], var="catchment_runoff", units=unit,
                    id_dim="riverId", extra={"catchment_area": (("riverId",), np.array([1.0, 2.0, 3.0]),
                                                                {"units": "km2"})})
    r = read_runoff(path, net3, time_label="start")
    np.testing.assert_allclose(r.values, v.T * to_m_per_s * np.array([1e6, 2e6, 3e6])[:, None], rtol=1e-6)
    assert r.dt == 86400 and r.time[0] == T0


def test_discharge_units_pass_through(tmp_path, net3, reach_nc):
    v = np.array([[1.0, 2.0, 3.0]])
    path = reach_nc(tmp_path / "q.nc", v, [10, 20, 30], [0], var="runoff", units="m3 s-1", bounds=[[0, 600]])
    r = read_runoff(path, net3)
    np.testing.assert_allclose(r.values[:, 0], [1, 2, 3])
    assert r.dt == 600


def test_depth_without_file_area_uses_the_network(tmp_path, net3, reach_nc):
    path = reach_nc(tmp_path / "cr.nc", np.ones((2, 3)), [10, 20, 30], [0, 3600], var="catchment_runoff",
                    units="mm", id_dim="riverId")
    r = read_runoff(path, net3)
    np.testing.assert_allclose(r.values[:, 0], np.array([1e6, 2e6, 3e6]) * 1e-3 / 3600, rtol=1e-6)
    assert r.attrs["catchment_area"] == "network.catchment_area"


def test_depth_without_any_area_is_a_unit_error(tmp_path, reach_nc):
    from thalweg.network import from_arrays

    net = from_arrays([10, 20, 30], [30, 30, -1], [1.0, 1.0, 1.0])
    path = reach_nc(tmp_path / "cr.nc", np.ones((2, 3)), [10, 20, 30], [0, 3600], var="catchment_runoff",
                    units="mm", id_dim="riverId")
    with pytest.raises(UnitError, match="catchment areas") as err:
        read_runoff(path, net)
    assert err.value.field == "catchment_runoff"


def test_unknown_unit_names_variable_and_unit(tmp_path, net3, reach_nc):
    path = reach_nc(tmp_path / "m3_riv.nc", volumes(), [30, 10, 20], np.arange(4) * H3, units="furlongs")
    with pytest.raises(UnitError, match=r"m3_riv\.nc, field m3_riv: unknown runoff unit 'furlongs'") as err:
        read_runoff(path, net3)
    assert err.value.field == "m3_riv"


def test_catchment_runoff_without_units_is_refused(tmp_path, net3, reach_nc):
    path = reach_nc(tmp_path / "cr.nc", np.ones((2, 3)), [10, 20, 30], [0, 3600], var="catchment_runoff",
                    units=None, id_dim="riverId")
    with pytest.raises(UnitError, match="no units.*units="):
        read_runoff(path, net3)
    r = read_runoff(path, net3, units="m3")
    np.testing.assert_allclose(r.values, 1 / 3600, rtol=1e-6)


def test_irregular_time_names_the_first_odd_step(tmp_path, net3, reach_nc):
    seconds = np.array([0, 1, 2, 4, 5]) * H3
    path = reach_nc(tmp_path / "m3_riv.nc", volumes(5), [30, 10, 20], seconds)
    with pytest.raises(RunoffError, match=r"step 3 \(2000-01-01T06:00 to 2000-01-01T12:00\) lasts 21,600 s "
                                          r"where the others last 10,800 s") as err:
        read_runoff(path, net3)
    assert err.value.ids == ["2000-01-01T12:00"]


def test_time_must_increase(tmp_path, net3, reach_nc):
    path = reach_nc(tmp_path / "m3_riv.nc", volumes(3), [30, 10, 20], np.array([0, 2, 1]) * H3)
    with pytest.raises(RunoffError, match="does not increase at step 2"):
        read_runoff(path, net3)


def test_single_step_needs_bounds_or_dt(tmp_path, net3, reach_nc):
    path = reach_nc(tmp_path / "m3_riv.nc", volumes(1), [30, 10, 20], [0])
    with pytest.raises(RunoffError, match="single time step.*Give it with dt=3600"):
        read_runoff(path, net3)
    r = read_runoff(path, net3, dt=3600)
    np.testing.assert_allclose(r.values[:, 0], volumes(1)[0, [1, 2, 0]] / 3600, rtol=1e-6)


def test_dt_given_must_match_the_file(tmp_path, net3, reach_nc):
    path = reach_nc(tmp_path / "m3_riv.nc", volumes(), [30, 10, 20], np.arange(4) * H3)
    with pytest.raises(RunoffError, match="a step length of 3600 s was given but the file.s steps last 10800 s"):
        read_runoff(path, net3, dt=3600)


def test_cf_units_and_noleap_calendar(tmp_path, net3, reach_nc):
    path = reach_nc(tmp_path / "m3_riv.nc", volumes(3), [30, 10, 20], [0, 24, 48],
                    time_units="hours since 2001-02-27 00:00:00", calendar="noleap")
    with pytest.warns(ThalwegWarning, match="noleap"):
        r = read_runoff(path, net3)
    np.testing.assert_array_equal(r.time, np.array(["2001-02-27", "2001-02-28", "2001-03-01"], "datetime64[ns]"))
    assert r.dt == 86400


def test_nan_is_an_error_naming_reaches_and_times(tmp_path, net3, reach_nc):
    v = volumes()
    v[2, 2] = np.nan  # reach 20 at step 3 (06:00)
    path = reach_nc(tmp_path / "m3_riv.nc", v, [30, 10, 20], np.arange(4) * H3)
    with pytest.raises(MissingValueError, match=r"1 runoff values are missing \(NaN\) in 1 reaches \(20\) at 1 "
                                                r"times \(2000-01-01T06:00\).*nan='zero'") as err:
        read_runoff(path, net3)
    assert err.value.ids == [20] and err.value.field == "m3_riv"
    with pytest.warns(ThalwegWarning, match="1 missing .NaN. runoff values"):
        r = read_runoff(path, net3, nan="zero")
    assert r.values[1, 2] == 0 and r.attrs["nan_replaced"] == 1
    assert r.values[1, 1] == pytest.approx(v[1, 2] / H3)


def test_reaches_missing_from_the_runoff(tmp_path, net3, reach_nc):
    path = reach_nc(tmp_path / "m3_riv.nc", volumes(ids=(10, 20)), [10, 20], np.arange(4) * H3)
    with pytest.raises(RunoffMismatchError, match=r"m3_riv\.nc, field m3_riv: the runoff covers 2 of the network's "
                                                  r"3 reaches; missing 1: 30\. .*missing='zero'") as err:
        read_runoff(path, net3)
    assert err.value.ids == [30]
    with pytest.warns(ThalwegWarning, match="1 of the network's 3 reaches have no runoff"):
        r = read_runoff(path, net3, missing="zero")
    assert np.all(r.values[2] == 0) and np.all(r.values[:2] > 0)


def test_unknown_reach_ids_are_warned_about_and_ignored(tmp_path, net3, reach_nc):
    path = reach_nc(tmp_path / "m3_riv.nc", volumes(ids=(10, 99, 20, 30)), [10, 99, 20, 30], np.arange(4) * H3)
    with pytest.warns(ThalwegWarning, match=r"1 reach ids are not in the network and are ignored \(99\)"):
        r = read_runoff(path, net3)
    np.testing.assert_allclose(r.values[2], volumes(ids=(10, 99, 20, 30))[:, 3] / H3, rtol=1e-6)


def test_negative_runoff_is_kept_and_warned(tmp_path, net3, reach_nc):
    v = volumes()
    v[0, 1] = -360.0  # reach 10
    path = reach_nc(tmp_path / "m3_riv.nc", v, [30, 10, 20], np.arange(4) * H3)
    with pytest.warns(ThalwegWarning, match=r"1 runoff values are negative .* in 1 reaches \(10\)"):
        r = read_runoff(path, net3)
    assert r.values[0, 0] == pytest.approx(-360.0 / H3)


def test_duplicate_reach_ids_are_refused(tmp_path, net3, reach_nc):
    path = reach_nc(tmp_path / "m3_riv.nc", volumes(ids=(10, 20, 20)), [10, 20, 20], np.arange(4) * H3)
    with pytest.raises(RunoffError, match=r"1 reach ids appear more than once: 20"):
        read_runoff(path, net3)


def test_missing_file_and_bad_variable(tmp_path, net3, reach_nc):
    with pytest.raises(RunoffError, match="does not exist"):
        read_runoff(tmp_path / "nope.nc", net3)
    path = reach_nc(tmp_path / "m3_riv.nc", volumes(), [30, 10, 20], np.arange(4) * H3)
    from thalweg.errors import SchemaError

    with pytest.raises(SchemaError, match="no variable Qlat"):
        read_runoff(path, net3, variable="Qlat")


def test_reading_in_time_blocks_gives_the_same_runoff(tmp_path, net3, reach_nc, monkeypatch):
    from thalweg.runoff import readers

    v = volumes(5)
    v[3, 0] = np.nan  # reach 30 at step 4, in a later block
    path = reach_nc(tmp_path / "m3_riv.nc", v, [30, 10, 20], np.arange(5) * H3)
    monkeypatch.setattr(readers, "BLOCK_VALUES", 6)  # 3 reaches -> 2 steps per block
    with pytest.raises(MissingValueError, match=r"in 1 reaches \(30\) at 1 times \(2000-01-01T09:00\)"):
        read_runoff(path, net3)
    with pytest.warns(ThalwegWarning):
        blocked = read_runoff(path, net3, nan="zero")
    expected = np.nan_to_num(v[:, [1, 2, 0]].T / H3)
    np.testing.assert_allclose(blocked.values, expected, rtol=1e-6)
