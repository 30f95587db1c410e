"""Schema detection, explicit schema= and fields=, layer choice, and units (by name, by value, given)."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from thalweg.errors import SchemaError, ThalwegWarning
from thalweg.hydrography import SCHEMAS, Schema, detect_schema, read_network, register_schema
from thalweg.testing.layers import write_layer


def _parquet(path, columns):
    pd.DataFrame(columns).to_parquet(path, index=False)
    return path


def test_detection_names_the_deciding_fields(tmp_path, net, ds_ids):
    path = write_layer(tmp_path / "streams.gpkg", "geoglows", net.ids, ds_ids, lengths=net.length, areas=net.area,
                       geometry=net.geometry, crs="EPSG:3857", layer="streams")
    match = detect_schema(path)
    assert match.name == "geoglows" and match.layer == "streams"
    assert match.fields == {"id": "LINKNO", "downstream": "DSLINKNO", "length": "LengthGeodesicMeters",
                            "area": "DSContArea"}
    assert "LINKNO (id)" in match.reasons and match.schema is SCHEMAS["geoglows"]


def test_ambiguous_schema_names_both_and_the_fix(tmp_path):
    path = _parquet(tmp_path / "streams.parquet", {"COMID": [1, 2], "NextDownID": [2, 0], "TOCOMID": [2, 0]})
    with pytest.raises(SchemaError) as err:
        read_network(path)
    text = str(err.value)
    assert "streams.parquet: cannot tell the schema" in text
    assert "'merit' (COMID, NextDownID)" in text and "'nhdplus' (COMID, TOCOMID)" in text
    assert "schema='merit' or schema='nhdplus'" in text and "id_field='FIELD'" in text
    assert err.value.path == str(path)
    with pytest.raises(SchemaError, match="cannot tell"):
        detect_schema(path)


def test_explicit_schema_resolves_ambiguity(tmp_path):
    path = _parquet(tmp_path / "streams.parquet", {"COMID": [1, 2], "NextDownID": [2, 0], "TOCOMID": [0, 0],
                                                   "lengthkm": [1.5, 2.0]})
    merit = read_network(path, schema="merit")
    nhd = read_network(path, schema="nhdplus")
    np.testing.assert_array_equal(merit.downstream, [1, -1])
    np.testing.assert_array_equal(nhd.downstream, [-1, -1])
    np.testing.assert_allclose(merit.length, [1500.0, 2000.0])
    assert merit.source.fields["downstream"] == "NextDownID" and nhd.source.fields["downstream"] == "TOCOMID"


def test_no_schema_lists_partial_matches_and_fields(tmp_path):
    path = _parquet(tmp_path / "t.parquet", {"HYRIV_ID": [1, 2], "flows_to": [2, 0]})
    with pytest.raises(SchemaError) as err:
        read_network(path)
    text = str(err.value)
    assert "no known hydrography schema fits the fields (HYRIV_ID, flows_to)" in text
    assert "'hydrorivers' (HYRIV_ID) only in part" in text and "schema='hydrorivers'" in text


def test_fields_override_detection_with_units_from_names(tmp_path):
    path = _parquet(tmp_path / "custom.parquet", {"reach": [10, 11, 12], "to_reach": [12, 12, -1],
                                                  "len_km": [1.0, 2.0, 3.0], "up_area_km2": [5.0, 6.0, 12.0]})
    with warnings.catch_warnings():
        warnings.simplefilter("error", ThalwegWarning)  # names say the units: no guessing, no warning
        read = read_network(path, fields={"id": "reach", "downstream": "to_reach", "length": "len_km",
                                          "area": "up_area_km2"})
    assert read.source.schema == "fields"
    assert read.source.fields == {"id": "reach", "downstream": "to_reach", "length": "len_km", "area": "up_area_km2"}
    np.testing.assert_allclose(read.length, [1000.0, 2000.0, 3000.0])
    np.testing.assert_allclose(read.area, [5e6, 6e6, 12e6])
    np.testing.assert_array_equal(read.downstream, [2, 2, -1])


def test_fields_override_one_role_of_a_detected_schema(tmp_path, net, ds_ids):
    path = write_layer(tmp_path / "rivers.parquet", "hydrorivers", net.ids, ds_ids, lengths=net.length,
                       areas=net.area, extra={"LEN_M": net.length * 2})
    read = read_network(path, fields={"length": "len_m"})  # case is ignored
    order = read.index_of(net.ids)
    assert read.source.schema == "hydrorivers" and read.source.fields["length"] == "LEN_M"
    np.testing.assert_allclose(read.length[order], net.length * 2)


def test_fields_none_drops_a_role_so_lengths_come_from_lines(tmp_path, net, ds_ids):
    path = write_layer(tmp_path / "rivers.gpkg", "hydrorivers", net.ids, ds_ids, lengths=net.length * 3,
                       geometry=net.geometry, crs="EPSG:3857")
    read = read_network(path, fields={"length": None})
    np.testing.assert_allclose(read.length[read.index_of(net.ids)], net.length, rtol=1e-12)
    assert read.source.fields["length"] == "geometry"


@pytest.mark.parametrize("values,unit,factor", [([2.5, 3.0, 40.0], "km", 1e3), ([2500.0, 3000.0, 4e4], "m", 1.0)])
def test_length_unit_guessed_from_values_with_a_warning(tmp_path, values, unit, factor):
    path = _parquet(tmp_path / "t.parquet", {"a": [1, 2, 3], "b": [2, 3, 0], "len": values})
    with pytest.warns(ThalwegWarning, match=f"field len has no unit in its name.*look like {unit}"):
        read = read_network(path, fields={"id": "a", "downstream": "b", "length": "len"})
    np.testing.assert_allclose(read.length, np.array(values) * factor)


@pytest.mark.parametrize("values,unit,factor", [([3.0, 8.0, 20.0], "km2", 1e6), ([3e6, 8e6, 2e7], "m2", 1.0)])
def test_area_unit_guessed_from_values_with_a_warning(tmp_path, values, unit, factor):
    path = _parquet(tmp_path / "t.parquet", {"a": [1, 2, 3], "b": [2, 3, 0], "length_m": [10.0, 10.0, 10.0],
                                             "drained": values})
    with pytest.warns(ThalwegWarning, match=f"field drained has no unit in its name.*look like {unit}"):
        read = read_network(path, fields={"id": "a", "downstream": "b", "length": "length_m", "area": "drained"})
    np.testing.assert_allclose(read.area, np.array(values) * factor)


def test_explicit_units_override_schema_and_guess(tmp_path):
    path = _parquet(tmp_path / "t.parquet", {"HYRIV_ID": [1, 2], "NEXT_DOWN": [2, 0], "LENGTH_KM": [1500.0, 800.0],
                                             "UPLAND_SKM": [2e6, 5e6]})
    with warnings.catch_warnings():
        warnings.simplefilter("error", ThalwegWarning)
        read = read_network(path, length_unit="m", area_unit="m2")
    np.testing.assert_allclose(read.length, [1500.0, 800.0])
    np.testing.assert_allclose(read.area, [2e6, 5e6])


def test_unknown_roles_and_schemas_are_refused(tmp_path, net, ds_ids):
    path = write_layer(tmp_path / "r.parquet", "merit", net.ids, ds_ids, lengths=net.length)
    with pytest.raises(SchemaError, match="unknown roles in fields: lenght") as err:
        read_network(path, fields={"lenght": "lengthkm"})
    assert "length" in err.value.hint
    with pytest.raises(SchemaError, match="unknown schema 'hydroriver'") as err:
        read_network(path, schema="hydroriver")
    assert "hydrorivers" in err.value.hint


def test_missing_field_names_the_available_ones(tmp_path, net, ds_ids):
    path = write_layer(tmp_path / "r.parquet", "merit", net.ids, ds_ids, lengths=net.length)
    with pytest.raises(SchemaError) as err:
        read_network(path, fields={"area": "UPAREA_KM2"})
    assert err.value.field == "UPAREA_KM2" and "there is no field UPAREA_KM2" in str(err.value)
    assert "COMID, NextDownID, lengthkm" in str(err.value)
    with pytest.raises(SchemaError) as err:
        read_network(path, schema="hydrorivers")
    assert "no field for the id (HYRIV_ID), the downstream (NEXT_DOWN)" in str(err.value)
    assert "COMID" in str(err.value) and err.value.field == "HYRIV_ID"


def test_layer_with_the_network_is_chosen_and_several_need_layer(tmp_path, net, ds_ids):
    import geopandas
    import shapely

    path = write_layer(tmp_path / "data.gpkg", "hydrorivers", net.ids, ds_ids, lengths=net.length,
                       geometry=net.geometry, crs="EPSG:3857", layer="rivers")
    geopandas.GeoDataFrame({"HYBAS_ID": [1]}, geometry=[shapely.box(0, 0, 1, 1)], crs="EPSG:3857").to_file(
        path, layer="basins")
    assert detect_schema(path).layer == "rivers"
    assert read_network(path).source.layer == "rivers"
    write_layer(tmp_path / "other.gpkg", "hydrorivers", net.ids, ds_ids, lengths=net.length,
                geometry=net.geometry, crs="EPSG:3857", layer="copy")
    geopandas.read_file(tmp_path / "other.gpkg").to_file(path, layer="copy")
    with pytest.raises(SchemaError, match="several layers hold a river network: 'rivers' .hydrorivers., 'copy'"):
        read_network(path)
    assert read_network(path, layer="copy").source.layer == "copy"


def test_registered_schema_is_detected(tmp_path):
    schema = Schema(name="testriv", title="a test dataset", fields={"id": ("RID",), "downstream": ("RDOWN",),
                                                                    "length": ("RLEN_FT",)},
                    units={"RLEN_FT": "ft"}, outlet_codes=(-9,))
    register_schema(schema)
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_schema(schema)
        path = _parquet(tmp_path / "t.parquet", {"RID": [1, 2], "RDOWN": [2, -9], "RLEN_FT": [1000.0, 10.0]})
        read = read_network(path)
        assert read.source.schema == "testriv"
        np.testing.assert_allclose(read.length, [304.8, 3.048])
    finally:
        SCHEMAS.pop("testriv")
