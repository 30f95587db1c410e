"""CSV and parquet runoff tables, wide and long."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from thalweg.errors import MissingValueError, SchemaError, ThalwegWarning, UnitError
from thalweg.runoff import read_runoff

T0 = np.datetime64("2020-01-01T00:00", "ns")


def test_wide_csv_with_units_argument(tmp_path, net3):
    path = tmp_path / "q.csv"
    # rows out of order on purpose: they are sorted by time
    path.write_text("time,30,10,20\n2020-01-01T01:00,6,4,5\n2020-01-01T00:00,3,1,2\n")
    r = read_runoff(path, net3, units="m3 s-1")
    np.testing.assert_allclose(r.values, [[1, 4], [2, 5], [3, 6]])
    np.testing.assert_array_equal(r.time, [T0, T0 + np.timedelta64(1, "h")])
    assert r.dt == 3600 and r.attrs["format"] == "table_wide"


def test_wide_csv_units_in_column_names_use_network_areas(tmp_path, net3):
    path = tmp_path / "depth.csv"
    path.write_text("date,10 [mm],20 [mm],30 [mm]\n2020-01-01,1,2,3\n2020-01-02,4,5,6\n")
    r = read_runoff(path, net3)
    area = np.array([1e6, 2e6, 3e6])[:, None]
    np.testing.assert_allclose(r.values, np.array([[1, 4], [2, 5], [3, 6]]) * 1e-3 * area / 86400, rtol=1e-6)


def test_underscore_unit_suffix_and_end_labels(tmp_path, net3):
    path = tmp_path / "v.csv"
    path.write_text("time,10_m3,20_m3,30_m3\n2020-01-01T01:00,3600,7200,0\n2020-01-01T02:00,0,0,3600\n")
    r = read_runoff(path, net3, time_label="end")
    np.testing.assert_allclose(r.values, [[1, 0], [2, 0], [0, 1]])
    assert r.time[0] == T0


def test_long_parquet(tmp_path, net3):
    rows = [(t, rid, 10.0 * rid + k) for k, t in enumerate(pd.date_range("2020-01-01", periods=3, freq="6h"))
            for rid in (30, 20, 10)]
    df = pd.DataFrame(rows, columns=["time", "rivid", "runoff [m3]"])
    path = tmp_path / "long.parquet"
    df.sample(frac=1.0, random_state=1).to_parquet(path)
    r = read_runoff(path, net3)
    expected = (10.0 * np.array([10, 20, 30])[:, None] + np.arange(3)) / 21600
    np.testing.assert_allclose(r.values, expected, rtol=1e-6)
    assert r.dt == 21600 and r.attrs["format"] == "table_long"


def test_long_table_gaps_are_nan(tmp_path, net3):
    path = tmp_path / "long.csv"
    path.write_text("time,reach_id,value\n2020-01-01,10,1\n2020-01-01,20,1\n2020-01-01,30,1\n"
                    "2020-01-02,10,2\n2020-01-02,30,2\n")
    with pytest.raises(MissingValueError, match=r"in 1 reaches \(20\) at 1 times \(2020-01-02T00:00\)"):
        read_runoff(path, net3, units="m3")
    with pytest.warns(ThalwegWarning, match="treated as zero"):
        r = read_runoff(path, net3, units="m3", nan="zero")
    assert r.values[1, 1] == 0 and r.values[1, 0] == pytest.approx(1 / 86400)


def test_units_are_required_and_must_agree(tmp_path, net3):
    path = tmp_path / "q.csv"
    path.write_text("time,10,20,30\n2020-01-01,1,2,3\n2020-01-02,1,2,3\n")
    with pytest.raises(UnitError, match="no units.*units="):
        read_runoff(path, net3)
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("time,10 [mm],20 [m3],30 [mm]\n2020-01-01,1,2,3\n2020-01-02,1,2,3\n")
    with pytest.raises(UnitError, match="different units"):
        read_runoff(mixed, net3)
    given = tmp_path / "given.csv"
    given.write_text("time,10 [mm],20 [mm],30 [mm]\n2020-01-01,1,2,3\n2020-01-02,1,2,3\n")
    with pytest.raises(UnitError, match="the unit 'm3' was given but the columns say 'mm'. Leave units= out"):
        read_runoff(given, net3, units="m3")


def test_table_schema_errors(tmp_path, net3):
    path = tmp_path / "bad.csv"
    path.write_text("when,10,20,30\n2020-01-01,1,2,3\n")
    with pytest.raises(SchemaError, match="no time column"):
        read_runoff(path, net3, units="m3")
    path.write_text("time,10,twenty,30\n2020-01-01,1,2,3\n2020-01-02,1,2,3\n")
    with pytest.raises(SchemaError, match="not ids: twenty"):
        read_runoff(path, net3, units="m3")
