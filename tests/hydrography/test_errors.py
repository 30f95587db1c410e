"""Errors are behaviour: class, message fragments with the ids, and the attributes (path, layer, field, ids)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shapely

from thalweg.errors import (CycleError, DuplicateIdError, GeometryError, InputError, NetworkError, SchemaError,
                            ThalwegWarning)
from thalweg.hydrography import read_network
from thalweg.testing.layers import write_layer


def test_cycle_names_its_reaches(tmp_path):
    path = write_layer(tmp_path / "r.gpkg", "hydrorivers", ids=[1, 2, 3], downstream=[2, 3, 1],
                       lengths=[1000.0, 1000.0, 1000.0])
    with pytest.raises(CycleError, match=r"1 -> 2 -> 3 -> 1") as err:
        read_network(path)
    assert err.value.field == "NEXT_DOWN" and sorted(err.value.ids) == [1, 2, 3]
    assert err.value.path == str(path) and err.value.layer == "r"
    assert str(err.value).startswith("r.gpkg, layer 'r', field NEXT_DOWN: reaches 1 -> 2 -> 3 -> 1 form a cycle")


def test_duplicate_ids(tmp_path):
    path = write_layer(tmp_path / "d.parquet", "geoglows", ids=[5, 6, 5, 7], downstream=[6, 7, 7, -1],
                       lengths=[10.0, 10.0, 10.0, 10.0])
    with pytest.raises(DuplicateIdError, match="1 reach ids appear more than once: 5") as err:
        read_network(path)
    assert err.value.ids == [5] and err.value.field == "LINKNO"


def test_bad_lengths_name_field_and_ids(tmp_path):
    path = write_layer(tmp_path / "l.parquet", "merit", ids=[1, 2, 3], downstream=[2, 3, 0],
                       lengths=[1000.0, 0.0, -5.0])
    with pytest.raises(NetworkError, match="2 reaches have a missing, zero or negative length: 2, 3") as err:
        read_network(path)
    assert err.value.field == "lengthkm" and err.value.ids == [2, 3]


def test_text_in_a_numeric_field(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("HYRIV_ID,NEXT_DOWN,LENGTH_KM\n1,2,1.5\n2,0,about 3\n")
    with pytest.raises(SchemaError, match="field LENGTH_KM holds text, not numbers \\('about 3'\\)") as err:
        read_network(path)
    assert err.value.field == "LENGTH_KM" and err.value.path == str(path)


def test_clipped_extract_warns_and_makes_outlets(tmp_path):
    path = write_layer(tmp_path / "c.parquet", "hydrorivers", ids=[1, 2, 3], downstream=[2, 99, 98],
                       lengths=[1000.0] * 3)
    with pytest.warns(ThalwegWarning, match="2 values in NEXT_DOWN are not reach ids .98, 99."):
        read = read_network(path)
    np.testing.assert_array_equal(read.downstream, [1, -1, -1])


def test_area_decreasing_downstream(tmp_path):
    path = write_layer(tmp_path / "a.parquet", "hydrorivers", ids=[1, 2], downstream=[2, 0], lengths=[1e3, 1e3],
                       areas=[5e6, 2e6])
    with pytest.raises(NetworkError, match=r"1 \(5 km2\) -> 2 \(2 km2\)") as err:
        read_network(path)
    assert err.value.field == "UPLAND_SKM" and err.value.ids == [1]
    with pytest.warns(ThalwegWarning, match="drainage area decreases"):
        read_network(path, check_area="warn")


def test_points_are_not_lines(tmp_path):
    geometry = [shapely.LineString([(0, 0), (1, 1)]), shapely.Point(3, 3), shapely.box(0, 0, 1, 1)]
    path = write_layer(tmp_path / "p.gpkg", "hydrorivers", ids=[11, 12, 13], downstream=[0, 0, 0],
                       lengths=[1e3] * 3, geometry=geometry, crs="EPSG:3857")
    with pytest.raises(GeometryError, match=r"2 features are not lines .*12 \(Point\), 13 \(Polygon\)") as err:
        read_network(path)
    assert err.value.ids == [12, 13] and err.value.path == str(path) and "LineString" in err.value.hint


def test_points_only_with_fields_are_read_without_geometry(tmp_path):
    geometry = [shapely.Point(0, 0), shapely.Point(3, 3)]
    path = write_layer(tmp_path / "route_link.gpkg", "nwm", ids=[11, 12], downstream=[12, 0], lengths=[500.0, 700.0],
                       geometry=geometry, crs="EPSG:4326")
    with pytest.warns(ThalwegWarning, match="the features are Point, not lines"):
        read = read_network(path)
    assert read.geometry is None and read.crs is None
    np.testing.assert_allclose(read.length, [500.0, 700.0])
    geometry = [shapely.Point(0, 0), shapely.Point(3, 3)]
    path = write_layer(tmp_path / "points.gpkg", "nwm", ids=[11, 12], downstream=[12, 0], geometry=geometry,
                       crs="EPSG:4326")
    with pytest.raises(GeometryError, match=r"2 features are not lines \(Point\)"):  # lengths would need lines
        read_network(path)


def test_empty_geometries(tmp_path, net, ds_ids):
    geometry = net.geometry.copy()
    geometry[[2, 9]] = shapely.LineString()
    path = write_layer(tmp_path / "e.gpkg", "geoglows", net.ids, ds_ids, geometry=geometry, crs="EPSG:3857")
    with pytest.raises(GeometryError, match="2 features have no geometry") as err:  # lengths must come from lines
        read_network(path)
    assert err.value.ids == list(net.ids[[2, 9]])
    path = write_layer(tmp_path / "f.gpkg", "geoglows", net.ids, ds_ids, lengths=net.length, geometry=geometry,
                       crs="EPSG:3857")
    with pytest.warns(ThalwegWarning, match="2 features have no geometry"):  # lengths from a field: only a warning
        read = read_network(path)
    assert read.geometry[read.index_of([net.ids[2]])[0]] is None


def test_empty_layer(tmp_path):
    import geopandas

    geopandas.GeoDataFrame({"HYRIV_ID": np.array([], dtype=np.int64), "NEXT_DOWN": np.array([], dtype=np.int64)},
                           geometry=[], crs="EPSG:4326").to_file(tmp_path / "empty.gpkg", layer="rivers")
    with pytest.raises(InputError, match="the layer has no features") as err:
        read_network(tmp_path / "empty.gpkg")
    assert err.value.layer == "rivers" and err.value.path == str(tmp_path / "empty.gpkg")


@pytest.mark.parametrize("name", ["broken.gpkg", "broken.parquet", "broken.nc", "broken.shp"])
def test_unreadable_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"this is not a " + name.encode() + b" file at all\x00\x01\x02" * 40)
    with pytest.raises(InputError, match="cannot read the file|the file is not NetCDF: it is binary data") as err:
        read_network(path)
    assert err.value.path == str(path)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="the file does not exist") as err:
        read_network(tmp_path / "nowhere.gpkg")
    assert err.value.path == str(tmp_path / "nowhere.gpkg")


def test_unknown_layer(tmp_path, net, ds_ids):
    path = write_layer(tmp_path / "r.gpkg", "hydrorivers", net.ids, ds_ids, lengths=net.length, layer="rivers")
    with pytest.raises(InputError, match="there is no layer 'streams'; the file has 'rivers'") as err:
        read_network(path, layer="streams")
    assert err.value.layer == "streams"


@pytest.mark.parametrize("variant", ["plusflow", "hydroseq"])
def test_nhdplus_minor_paths_are_dropped_with_a_warning(tmp_path, net, ds_ids, same_topology, variant):
    # a minor path: an interior reach also drains into a headwater reach, which gets Divergence = 2
    headwater = int(net.ids[np.setdiff1d(np.arange(net.n_reaches), net.downstream)][0])
    source = int(net.ids[np.flatnonzero(np.isin(np.arange(net.n_reaches), net.downstream))[0]])
    path = write_layer(tmp_path / "nhd.gpkg", "nhdplus", net.ids, ds_ids, lengths=net.length, areas=net.area,
                       variant=variant, minor={source: headwater})
    with pytest.warns(ThalwegWarning, match=rf"minor paths {source} -> {headwater} are ignored"):
        read = read_network(path, check_area="ignore")
    same_topology(read, net.ids, ds_ids)
    expected = "layer PlusFlow: TOCOMID" if variant == "plusflow" else "DnHydroseq -> Hydroseq"
    assert read.source.fields["downstream"] == expected


def test_nhdplus_without_downstream_information(tmp_path):
    path = tmp_path / "flowlines.parquet"
    pd.DataFrame({"COMID": [1, 2], "LENGTHKM": [1.0, 2.0], "StreamOrde": [1, 2]}).to_parquet(path)
    with pytest.raises(SchemaError, match="NHDPlus flowlines need a TOCOMID field, a PlusFlow table") as err:
        read_network(path)
    assert err.value.field == "TOCOMID"


def test_hydrofabric_nexus_ids_without_nexus_table(tmp_path):
    path = tmp_path / "flowpaths.parquet"
    pd.DataFrame({"id": ["wb-1", "wb-2"], "toid": ["nex-2", "tnx-9"], "lengthkm": [1.0, 2.0]}).to_parquet(path)
    with pytest.raises(SchemaError, match=r"2 flowpaths drain into nexus ids \(nex-2, tnx-9\)") as err:
        read_network(path)
    assert err.value.field == "toid" and err.value.ids == ["nex-2", "tnx-9"]


def test_rapid_parameter_file_of_the_wrong_length(tmp_path):
    path = write_layer(tmp_path / "rapid", "rapid", [1, 2, 3], [2, 3, 0], muskingum_k=[3600.0, 3600.0, 3600.0])
    (tmp_path / "rapid" / "x.csv").write_text("0.3\n0.3\n")
    with pytest.raises(SchemaError, match="x.csv has 2 values but rapid_connect.csv has 3 reaches") as err:
        read_network(path)
    assert err.value.path == str(tmp_path / "rapid" / "x.csv")


def test_rapid_basin_subset_and_folder_path(tmp_path, same_topology):
    folder = tmp_path / "rapid"
    write_layer(folder, "rapid", [1, 2, 3, 4], [2, 3, 0, 0], muskingum_k=[100.0, 200.0, 300.0, 400.0],
                muskingum_x=[0.1, 0.2, 0.3, 0.4], riv_bas_id=[3, 1, 2])
    with pytest.warns(ThalwegWarning, match="no reach lengths"):
        read = read_network(folder)
    np.testing.assert_array_equal(read.ids, [3, 1, 2])  # riv_bas_id order
    same_topology(read, [1, 2, 3], [2, 3, 0])
    np.testing.assert_allclose(read.attrs["muskingum_k"], [300.0, 100.0, 200.0])
    assert read.source.fields["downstream"] == "column 2"
