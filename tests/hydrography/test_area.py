"""Drainage area when the layer has none: from a flow-accumulation raster, from catchment polygons, or by
accumulating a catchment-area field."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
import shapely
from pyproj import Geod, Transformer
from affine import Affine

from thalweg.errors import GeometryError, ThalwegWarning, UnitError
from thalweg.hydrography import read_network
from thalweg.testing.layers import write_layer

CELL = 1000.0  # the synthetic lattice's cell size (m); its lines run through cell centres


def _accumulation_raster(path, net, *, dtype="int32", scale=1.0, crop_cols=None):
    """Upstream cell counts on the lattice: each reach's own last cell holds its area; other cells 1.

    The last vertex of a line is the first cell of the next reach (or off the lattice), so a reader that
    sampled there would get another reach's value.
    """
    coords, index = shapely.get_coordinates(net.geometry, return_index=True)
    rows = np.rint(-coords[:, 1] / CELL).astype(int)
    cols = np.rint(coords[:, 0] / CELL).astype(int)
    height, width = rows.max() + 2, cols.max() + 2
    grid = np.ones((height, width))
    last_cell = np.r_[np.flatnonzero(np.diff(index)), index.size - 1] - 1  # second-to-last vertex of each line
    grid[rows[last_cell], cols[last_cell]] = net.area[index[last_cell]] / CELL**2
    if crop_cols is not None:
        grid = grid[:, :crop_cols]
    with rasterio.open(path, "w", driver="GTiff", height=grid.shape[0], width=grid.shape[1], count=1, dtype=dtype,
                       crs="EPSG:3857", transform=Affine(CELL, 0, -CELL / 2, 0, -CELL, CELL / 2), nodata=0) as dst:
        dst.write((grid * scale).astype(dtype), 1)
    return path


def _upstream_sums(net, values):
    """Sum of ``values`` over each reach and everything upstream, by walking down from every reach."""
    out = np.zeros(net.n_reaches)
    for i in range(net.n_reaches):
        j = i
        while j >= 0:
            out[j] += values[i]
            j = net.downstream[j]
    return out


@pytest.fixture
def merit_without_area(tmp_path, net, ds_ids):
    return write_layer(tmp_path / "merit.gpkg", "merit", net.ids, ds_ids, lengths=net.length,
                       geometry=net.geometry, crs="EPSG:3857")


def test_area_from_cell_counts(tmp_path, net, merit_without_area):
    raster = _accumulation_raster(tmp_path / "acc.tif", net)
    read = read_network(merit_without_area, area_raster=raster, area_raster_unit="cells")
    np.testing.assert_allclose(read.area[read.index_of(net.ids)], net.area, rtol=1e-12)
    assert read.source.fields["area"] == "raster acc.tif"


def test_area_from_km2_raster(tmp_path, net, merit_without_area):
    raster = _accumulation_raster(tmp_path / "acc.tif", net, dtype="float32", scale=CELL**2 / 1e6)
    read = read_network(merit_without_area, area_raster=raster, area_raster_unit="km2")
    np.testing.assert_allclose(read.area[read.index_of(net.ids)], net.area, rtol=1e-6)


def test_raster_unit_guess_and_refusal(tmp_path, net, merit_without_area):
    raster = _accumulation_raster(tmp_path / "acc.tif", net)
    with pytest.warns(ThalwegWarning, match="taken as accumulated cell counts"):
        read_network(merit_without_area, area_raster=raster)
    floats = _accumulation_raster(tmp_path / "accf.tif", net, dtype="float32")
    with pytest.raises(UnitError, match="unit of the flow-accumulation raster") as err:
        read_network(merit_without_area, area_raster=floats)
    assert "area_raster_unit" in err.value.hint and err.value.path == str(floats)


def test_raster_in_another_crs(tmp_path, net, ds_ids):
    to_deg = Transformer.from_crs("EPSG:3857", "EPSG:4326", always_xy=True)
    lines = shapely.transform(net.geometry, lambda xy: np.column_stack(to_deg.transform(xy[:, 0], xy[:, 1])))
    path = write_layer(tmp_path / "deg.parquet", "merit", net.ids, ds_ids, lengths=net.length, geometry=lines,
                       crs="EPSG:4326")
    raster = _accumulation_raster(tmp_path / "acc.tif", net)
    read = read_network(path, area_raster=raster, area_raster_unit="cells")
    np.testing.assert_allclose(read.area[read.index_of(net.ids)], net.area, rtol=1e-12)


def test_reaches_off_the_raster_have_unknown_area(tmp_path, net, merit_without_area):
    raster = _accumulation_raster(tmp_path / "acc.tif", net, crop_cols=10)
    with pytest.warns(ThalwegWarning, match="reaches fall outside the raster or on nodata"):
        read = read_network(merit_without_area, area_raster=raster, area_raster_unit="cells", check_area="ignore")
    order = read.index_of(net.ids)
    own_cell_x = np.array([shapely.get_coordinates(g)[-2, 0] for g in net.geometry])  # second-to-last vertex
    off = np.rint(own_cell_x / CELL) >= 10
    assert off.any() and (~off).any()
    np.testing.assert_array_equal(np.isnan(read.area[order]), off)
    np.testing.assert_allclose(read.area[order][~off], net.area[~off], rtol=1e-12)


def test_geographic_raster_cells_have_geodesic_areas(tmp_path):
    size = 0.01
    grid = np.full((3, 3), 7, dtype="int32")
    with rasterio.open(tmp_path / "g.tif", "w", driver="GTiff", height=3, width=3, count=1, dtype="int32",
                       crs="EPSG:4326", transform=Affine(size, 0, 10.0, 0, -size, 45.03)) as dst:
        dst.write(grid, 1)
    line = shapely.LineString([(10.012, 45.015), (10.018, 45.015)])  # inside the middle cell
    path = write_layer(tmp_path / "one.gpkg", "merit", [1], [0], lengths=[500.0], geometry=[line], crs="EPSG:4326")
    read = read_network(path, area_raster=tmp_path / "g.tif", area_raster_unit="cells")
    cell = abs(Geod(ellps="WGS84").polygon_area_perimeter([10.01, 10.02, 10.02, 10.01],
                                                          [45.02, 45.02, 45.01, 45.01])[0])
    np.testing.assert_allclose(read.area, [7 * cell], rtol=1e-9)


def _catchment_polygons(net):
    to_deg = Transformer.from_crs("EPSG:3857", "EPSG:4326", always_xy=True)
    shapes = shapely.buffer(net.geometry, 350.0, cap_style="flat")
    return shapely.transform(shapes, lambda xy: np.column_stack(to_deg.transform(xy[:, 0], xy[:, 1] + 5.5e6)))


def test_area_accumulated_from_catchment_polygons(tmp_path, net, merit_without_area):
    import geopandas

    polygons = _catchment_polygons(net)
    geopandas.GeoDataFrame({"COMID": net.ids}, geometry=list(polygons), crs="EPSG:4326").to_file(
        tmp_path / "cat.gpkg")
    geod = Geod(ellps="WGS84")
    own = np.array([abs(geod.geometry_area_perimeter(p)[0]) for p in polygons])
    read = read_network(merit_without_area, catchments=tmp_path / "cat.gpkg")
    order = read.index_of(net.ids)
    np.testing.assert_allclose(read.catchment_area[order], own, rtol=1e-6)
    np.testing.assert_allclose(read.area[order], _upstream_sums(net, own), rtol=1e-6)
    assert read.source.fields["area"] == "accumulated catchment_area"
    assert read.source.fields["catchment_area"] == "cat.gpkg:COMID"


def test_catchments_with_string_ids_and_a_missing_polygon(tmp_path, net, merit_without_area):
    import geopandas

    polygons = _catchment_polygons(net)
    keep = np.arange(net.n_reaches) != 5
    geopandas.GeoDataFrame({"divide_id": [f"cat-{i}" for i in net.ids[keep]], "other": np.arange(keep.sum())},
                           geometry=list(polygons[keep]), crs="EPSG:4326").to_file(tmp_path / "divides.gpkg")
    with pytest.warns(ThalwegWarning, match=rf"1 reaches have no catchment polygon \({net.ids[5]}\)"):
        read = read_network(merit_without_area, catchments=tmp_path / "divides.gpkg")
    assert read.catchment_area[read.index_of([net.ids[5]])[0]] == 0.0
    assert read.source.fields["catchment_area"] == "divides.gpkg:divide_id"


def test_catchments_must_be_polygons(tmp_path, net, merit_without_area):
    import geopandas

    geopandas.GeoDataFrame({"COMID": net.ids}, geometry=list(net.geometry), crs="EPSG:3857").to_file(
        tmp_path / "cat.gpkg")
    with pytest.raises(GeometryError, match="catchments are not polygons") as err:
        read_network(merit_without_area, catchments=tmp_path / "cat.gpkg")
    assert err.value.field == "COMID" and len(err.value.ids) == net.n_reaches


def test_catchment_field_accumulates_without_an_area_field(tmp_path, net, ds_ids):
    path = write_layer(tmp_path / "rivers.shp", "hydrorivers", net.ids, ds_ids, lengths=net.length,
                       catchment_areas=net.catchment_area, geometry=net.geometry, crs="EPSG:3857")
    read = read_network(path)
    order = read.index_of(net.ids)
    np.testing.assert_allclose(read.area[order], net.area, rtol=1e-9)
    np.testing.assert_allclose(read.area[order], _upstream_sums(net, net.catchment_area), rtol=1e-9)
    assert read.source.fields["area"] == "accumulated catchment_area"
    assert read.source.fields["catchment_area"] == "CATCH_SKM"
