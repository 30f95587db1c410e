"""Interop and reliability of network reading (issues 7 and 8): river-route 2.x tables, data frames in and out,
catchment layers of multi-layer files, hints in the user's terms, uint64 ids, non-regular files."""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

from thalweg.errors import InputError, NetworkError, SchemaError, ThalwegWarning, option_names
from thalweg.hydrography import detect_schema, read_network
from thalweg.testing.layers import write_layer
from thalweg.testing.checks import finishes

CLI = {"read_network.schema": "--schema", "read_network.id_field": "--id-field",
       "read_network.downstream_field": "--downstream-field", "read_network.layer": "--layer",
       "read_network.area_raster_unit": "--area-raster-unit", "read_runoff.catchment_layer": "--catchment-layer"}


def _river_route_2(path, ids, ds_ids, k, x):
    """params.parquet as river-route 2.x documents it (river_id, downstream_river_id, k, x), written by pandas."""
    import pandas as pd

    pd.DataFrame({"river_id": ids, "downstream_river_id": ds_ids, "k": k, "x": x}).to_parquet(path)
    return path


def test_river_route_2_params_are_detected(tmp_path, net, ds_ids, same_topology):
    k = net.length / 0.7
    x = np.linspace(0.1, 0.3, net.n_reaches)
    path = _river_route_2(tmp_path / "params.parquet", net.ids, ds_ids, k, x)
    assert detect_schema(path).name == "riverroute2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)  # no lengths: said in a warning
        read = read_network(path)
    order = same_topology(read, net.ids, ds_ids)
    np.testing.assert_allclose(read.attrs["muskingum_k"][order], k, rtol=1e-12)
    np.testing.assert_allclose(read.attrs["muskingum_x"][order], x, rtol=1e-12)
    assert read.source.fields["id"] == "river_id" and read.source.fields["downstream"] == "downstream_river_id"


def test_hints_name_options_where_the_user_is(tmp_path):
    import pandas as pd

    path = tmp_path / "streams.parquet"
    pd.DataFrame({"COMID": [1, 2], "NextDownID": [2, 0], "TOCOMID": [2, 0]}).to_parquet(path)
    with pytest.raises(SchemaError) as err:
        read_network(path)
    assert "schema='merit' or schema='nhdplus'" in str(err.value) and "id_field='FIELD'" in str(err.value)
    with option_names(CLI):
        text = str(err.value)
    assert "--schema merit or --schema nhdplus" in text and "--id-field FIELD and --downstream-field FIELD" in text
    assert "schema=" not in text and "fields=" not in text


def test_layer_hint_renders_on_the_command_line(tmp_path, net, ds_ids):
    path = write_layer(tmp_path / "two.gpkg", "hydrorivers", net.ids, ds_ids, lengths=net.length, areas=net.area,
                       geometry=net.geometry, crs="EPSG:3857", layer="rivers")
    with pytest.raises(InputError) as err:
        read_network(path, layer="nope")
    with option_names(CLI):
        assert "--layer rivers" in str(err.value)
    assert "layer='rivers'" in str(err.value)


def _two_layer_catchments(tmp_path, net):
    import geopandas as gpd
    import shapely

    polygons = shapely.buffer(net.geometry, 300.0, cap_style="flat")
    path = tmp_path / "basins.gpkg"
    gpd.GeoDataFrame({"HYRIV_ID": net.ids}, geometry=list(polygons), crs="EPSG:3857").to_file(path, layer="small")
    gpd.GeoDataFrame({"HYRIV_ID": net.ids}, geometry=list(shapely.buffer(polygons, 200.0)),
                     crs="EPSG:3857").to_file(path, layer="large")
    return path, polygons


def test_catchment_layer_of_a_multi_layer_geopackage(tmp_path, net, ds_ids):
    from thalweg.hydrography.catchments import polygon_areas

    rivers = write_layer(tmp_path / "r.gpkg", "hydrorivers", net.ids, ds_ids, lengths=net.length,
                         geometry=net.geometry, crs="EPSG:3857")
    cats, polygons = _two_layer_catchments(tmp_path, net)
    with pytest.raises(SchemaError, match=r"several polygon layers \('small', 'large'\)") as err:
        read_network(rivers, catchments=cats)
    with option_names(CLI):
        assert "--catchment-layer small" in str(err.value)
    read = read_network(rivers, catchments=cats, catchment_layer="small")
    expected = polygon_areas(polygons, "EPSG:3857")
    np.testing.assert_allclose(read.catchment_area[read.index_of(net.ids)], expected, rtol=1e-12)
    assert read.source.fields["catchment_area"] == "basins.gpkg:HYRIV_ID"


def test_one_area_method_for_networks_and_grid_weights(tmp_path, net, ds_ids):
    """read_network(catchments=) and the grid weights measure a catchment alike: on the ellipsoid (pyproj's
    geodesic area is the independent oracle), even in Web Mercator, whose planar areas are 2.2x too large here."""
    import geopandas as gpd
    import shapely
    from pyproj import Geod, Transformer

    from thalweg.runoff import weights

    polygons = shapely.buffer(net.geometry, 300.0, cap_style="flat")
    shifted = shapely.transform(polygons, lambda xy: xy + np.array([0.0, 5.5e6]))  # to about 44 N
    path = tmp_path / "cat.gpkg"
    gpd.GeoDataFrame({"HYRIV_ID": net.ids}, geometry=list(shifted), crs="EPSG:3857").to_file(path)
    to_deg = Transformer.from_crs("EPSG:3857", "EPSG:4326", always_xy=True)
    geod = Geod(ellps="WGS84")
    dense = shapely.segmentize(shifted, 50.0)
    truth = np.array([abs(geod.geometry_area_perimeter(shapely.transform(
        p, lambda xy: np.column_stack(to_deg.transform(xy[:, 0], xy[:, 1]))))[0]) for p in dense])
    rivers = write_layer(tmp_path / "r.gpkg", "hydrorivers", net.ids, ds_ids, lengths=net.length,
                         geometry=net.geometry, crs="EPSG:3857")
    read = read_network(rivers, catchments=path)
    np.testing.assert_allclose(read.catchment_area[read.index_of(net.ids)], truth, rtol=1e-6)
    assert shapely.area(shifted).sum() / truth.sum() > 1.9  # the planar areas a second method would give
    cats = weights.load_catchments(path, None, read)
    assert cats.id_field == "HYRIV_ID"
    np.testing.assert_allclose(cats.areas(), truth, rtol=1e-5)


def test_geodataframe_round_trip(net, ds_ids, same_topology):
    import pandas as pd

    frame = net.to_geodataframe()
    assert list(frame.columns[:4]) == ["reach_id", "downstream_id", "length_m", "area_m2"]
    np.testing.assert_array_equal(frame["downstream_id"], np.where(ds_ids > 0, ds_ids, -1))
    read = read_network(frame)
    order = same_topology(read, net.ids, ds_ids)
    np.testing.assert_allclose(read.length[order], net.length, rtol=1e-12)
    np.testing.assert_allclose(read.area[order], net.area, rtol=1e-12)
    assert read.source.schema == "thalweg" and read.source.path is None and read.crs == "EPSG:3857"
    assert all(a.equals(b) for a, b in zip(read.geometry[order], net.geometry))
    # a plain DataFrame of another schema, without geometry
    plain = pd.DataFrame({"HYRIV_ID": net.ids, "NEXT_DOWN": np.where(ds_ids > 0, ds_ids, 0),
                          "LENGTH_KM": net.length / 1e3, "UPLAND_SKM": net.area / 1e6})
    again = read_network(plain)
    order = same_topology(again, net.ids, ds_ids)
    np.testing.assert_allclose(again.length[order], net.length, rtol=1e-12)
    assert again.geometry is None and again.source.schema == "hydrorivers"


def test_frame_errors_name_the_frame():
    import pandas as pd

    with pytest.raises(SchemaError, match=r"^GeoDataFrame: no known hydrography schema fits the fields \(a, b\)"):
        read_network(pd.DataFrame({"a": [1, 2], "b": [2, 0]}))


def test_uint64_ids_above_int64_are_refused_with_the_ids(tmp_path):
    import pandas as pd

    big = np.array([2**63 + 5, 2**63 + 7, 12], dtype=np.uint64)
    path = tmp_path / "rivers.parquet"
    pd.DataFrame({"HYRIV_ID": big, "NEXT_DOWN": np.array([12, 12, 0], dtype=np.uint64),
                  "LENGTH_KM": [1.0, 2.0, 3.0], "UPLAND_SKM": [1.0, 1.0, 3.0]}).to_parquet(path)
    with pytest.raises(NetworkError, match="2 reach ids are larger than the largest 64-bit signed integer") as err:
        read_network(path)
    assert err.value.ids == [2**63 + 5, 2**63 + 7] and err.value.field == "HYRIV_ID"
    assert "9223372036854775813" in str(err.value)
    # uint64 ids that fit stay exact
    ok = tmp_path / "ok.parquet"
    pd.DataFrame({"HYRIV_ID": np.array([2**62 + 1, 2**62 + 2], np.uint64), "NEXT_DOWN": np.array([2**62 + 2, 0],
                  np.uint64), "LENGTH_KM": [1.0, 2.0], "UPLAND_SKM": [1.0, 2.0]}).to_parquet(ok)
    assert read_network(ok).ids.tolist() == [2**62 + 1, 2**62 + 2]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_fifo_network_is_refused_not_read(tmp_path):
    """Finding 8.10: an extract job on a FIFO stayed 'running' forever."""
    fifo = tmp_path / "rivers.gpkg"
    os.mkfifo(fifo)
    done, exc = finishes(lambda: read_network(fifo))
    assert done, "read_network blocked on a FIFO"
    assert isinstance(exc, InputError)
    assert "rivers.gpkg: the file is a named pipe (FIFO), not a regular file" in str(exc)
    link = tmp_path / "zero.csv"
    link.symlink_to("/dev/zero")
    done, exc = finishes(lambda: read_network(link))
    assert done and isinstance(exc, InputError) and "character device (it points to /dev/zero)" in str(exc)


@pytest.mark.parametrize("content,what", [(b"", "it is empty (0 bytes)"),
                                          (b"SQLite format 3\x00" + bytes(100), "an SQLite database (a GeoPackage?)")])
def test_a_network_named_nc_that_is_not_netcdf(tmp_path, content, what):
    path = tmp_path / "Route_Link.nc"
    path.write_bytes(content)
    with pytest.raises(InputError, match=r"Route_Link\.nc: the file is not NetCDF: ") as err:
        read_network(path)
    assert what in str(err.value) and "\n" not in str(err.value) and "IO backends" not in str(err.value)
