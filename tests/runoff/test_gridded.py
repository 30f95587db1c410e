"""Gridded runoff (NetCDF, GeoTIFF) aggregated to catchments by exact cell-polygon intersection areas."""
from __future__ import annotations

import os

import numpy as np
import pytest

from thalweg.errors import MissingValueError, RunoffError, RunoffMismatchError, ThalwegWarning, UnitError
from thalweg.runoff import read_runoff, weights

CRS = "EPSG:32631"  # UTM: planar areas by hand, scaled to the ellipsoid by pyproj's geodesic cell areas
X0, Y0, CELL = 500000.0, 4000.0, 1000.0  # a 4 x 4 grid of 1 km cells, north-up, rows from the top
T = 3


def hand_weights() -> np.ndarray:
    """Intersection areas [reach (10, 20, 30), row, col] in m^2 of the three square catchments below."""
    a = np.zeros((3, 4, 4))
    a[0, 2:4, 0:2] = 1e6  # reach 10: x 0-2 km, y 0-2 km -> four whole cells
    a[1, 2, 2], a[1, 2, 3], a[1, 3, 2], a[1, 3, 3] = 1e6, 0.5e6, 0.5e6, 0.25e6  # reach 20: x 2-3.5, y 0.5-2
    a[2, 0, 0] = a[2, 0, 1] = 0.5e6  # reach 30: x 0.5-1.5, y 2.5-4
    a[2, 1, 0] = a[2, 1, 1] = 0.25e6
    return a * _cell_scale()


def _cell_scale() -> np.ndarray:
    """[4, 4] geodesic area / planar area of each UTM cell (Thalweg measures areas on the ellipsoid; UTM's
    planar areas are 0.08 % smaller at the central meridian)."""
    from pyproj import Geod, Transformer

    to_geo = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    geod = Geod(ellps="WGS84")
    scale = np.zeros((4, 4))
    for r in range(4):
        for c in range(4):
            x = X0 + CELL * np.array([c, c + 1, c + 1, c])
            y = Y0 - CELL * np.array([r, r, r + 1, r + 1])
            lon, lat = to_geo.transform(x, y)
            scale[r, c] = abs(geod.polygon_area_perimeter(lon, lat)[0]) / CELL ** 2
    return scale


def grid_values() -> np.ndarray:
    """[T, 4, 4] depths: step t, row r, col c -> (t + 1) * (4 r + c + 1)."""
    return np.array([(t + 1) * (np.arange(16).reshape(4, 4) + 1) for t in range(T)], dtype="float32")


@pytest.fixture
def catchments(tmp_path):
    import geopandas as gpd
    import shapely

    boxes = [shapely.box(X0, 0, X0 + 2000, 2000), shapely.box(X0 + 2000, 500, X0 + 3500, 2000),
             shapely.box(X0 + 500, 2500, X0 + 1500, 4000)]
    path = tmp_path / "catchments.gpkg"
    gpd.GeoDataFrame({"LINKNO": [10, 20, 30]}, geometry=boxes, crs=CRS).to_file(path)
    return path


def write_grid_nc(path, values, *, units="mm", var="ro", hours=24):
    import xarray as xr
    from pyproj import CRS as ProjCRS

    t = np.arange(values.shape[0]) * hours
    xr.Dataset({var: (("time", "y", "x"), values, {"units": units, "grid_mapping": "crs"}),
                "crs": ((), 0, {"crs_wkt": ProjCRS(CRS).to_wkt()})},
               coords={"x": X0 + CELL / 2 + CELL * np.arange(4), "y": Y0 - CELL / 2 - CELL * np.arange(4),
                       "time": (("time",), t, {"units": "hours since 2001-01-01"})}).to_netcdf(path)
    return path


def write_tif(path, values, *, units=None):
    import rasterio
    from rasterio.transform import Affine

    with rasterio.open(path, "w", driver="GTiff", width=4, height=4, count=values.shape[0], dtype="float32",
                       crs=CRS, transform=Affine(CELL, 0.0, X0, 0.0, -CELL, Y0), nodata=-9999.0) as dst:
        dst.write(np.where(np.isnan(values), -9999.0, values).astype("float32"))
        if units:
            dst.update_tags(units=units)
    return path


def expected_rates(values, factor, dt):
    return np.einsum("rij,tij->rt", hand_weights(), values.astype(np.float64) * factor) / dt


def test_weight_table_matches_hand_computed_areas(catchments, net3):
    from rasterio.transform import Affine

    grid = weights.Grid.from_transform(Affine(CELL, 0.0, X0, 0.0, -CELL, Y0), 4, 4, CRS)
    cats = weights.load_catchments(catchments, None, net3)
    assert cats.id_field == "LINKNO"
    table = weights.compute_weights(grid, cats, progress=False)
    got = np.zeros((3, 4, 4))
    np.add.at(got, (np.searchsorted([10, 20, 30], table.reach_id), table.row, table.col), table.area)
    np.testing.assert_allclose(got, hand_weights(), rtol=1e-7)
    assert (table.area > 0).all() and table.cell.max() < 16


def test_netcdf_grid_depths(tmp_path, catchments, net3):
    path = write_grid_nc(tmp_path / "grid.nc", grid_values())
    r = read_runoff(path, net3, catchments=catchments, weights_cache=tmp_path / "cache")
    np.testing.assert_allclose(r.values, expected_rates(grid_values(), 1e-3, 86400), rtol=1e-6)
    assert r.dt == 86400 and r.time[0] == np.datetime64("2001-01-01", "ns")
    assert r.attrs["format"] == "grid" and r.attrs["catchment_id_field"] == "LINKNO"


def test_netcdf_grid_rates_and_summed_variables(tmp_path, catchments, net3):
    import xarray as xr

    path = write_grid_nc(tmp_path / "grid.nc", grid_values(), units="kg m-2 s-1", var="RUNSF", hours=3)
    with xr.open_dataset(path) as ds:
        ds = ds.load()
    ds["RUNSB"] = ds["RUNSF"] * 2
    ds.to_netcdf(tmp_path / "both.nc")
    with pytest.raises(Exception, match="several gridded variables"):
        read_runoff(tmp_path / "both.nc", net3, catchments=catchments)
    r = read_runoff(tmp_path / "both.nc", net3, variable=["RUNSF", "RUNSB"], catchments=catchments)
    # a rate: m/s times m^2 is m3/s whatever the step
    np.testing.assert_allclose(r.values, expected_rates(3 * grid_values(), 1e-3, 1.0), rtol=1e-6)
    assert r.dt == 3 * 3600


def test_multiband_geotiff_with_given_times(tmp_path, catchments, net3):
    path = write_tif(tmp_path / "runoff.tif", grid_values(), units="mm")
    times = ["2010-05-01T00:00", "2010-05-01T01:00", "2010-05-01T02:00"]
    r = read_runoff(path, net3, catchments=catchments, time=times)
    np.testing.assert_allclose(r.values, expected_rates(grid_values(), 1e-3, 3600), rtol=1e-6)
    np.testing.assert_array_equal(r.time, np.array(times, dtype="datetime64[ns]"))
    with pytest.raises(RunoffError, match="cannot tell the time of the 3 bands"):
        read_runoff(path, net3, catchments=catchments)


def test_folder_of_geotiffs_dated_by_name(tmp_path, catchments, net3):
    folder = tmp_path / "tifs"
    folder.mkdir()
    values = grid_values()
    for k in (2, 0, 1):  # written out of order: the dates in the names decide
        write_tif(folder / f"rain_precipitation_20140915{k:02d}00.tif", values[k:k + 1])
    with pytest.raises(UnitError, match="no units.*units="):
        read_runoff(folder, net3, catchments=catchments)
    r = read_runoff(folder, net3, catchments=catchments, units="0.1 mm")
    np.testing.assert_allclose(r.values, expected_rates(values, 1e-4, 3600), rtol=1e-6)
    assert r.time[0] == np.datetime64("2014-09-15T00:00", "ns") and r.dt == 3600
    glob_r = read_runoff(str(folder / "rain_*.tif"), net3, catchments=catchments, units="0.1 mm")
    np.testing.assert_array_equal(glob_r.values, r.values)


def test_weight_cache_is_reused(tmp_path, catchments, net3, monkeypatch):
    path = write_grid_nc(tmp_path / "grid.nc", grid_values())
    first = read_runoff(path, net3, catchments=catchments)
    cache = tmp_path / first.attrs["weights_cache"].rsplit("/", 1)[-1]
    assert cache.exists() and first.attrs["weights_reused"] is False
    assert cache.read_text().startswith(f"# thalweg grid weights v2 key={first.attrs['weights_key']}")
    mtime = os.stat(cache).st_mtime_ns

    def must_not_run(*args, **kwargs):
        raise AssertionError("weights recomputed although the cache matches")

    monkeypatch.setattr(weights, "compute_weights", must_not_run)
    second = read_runoff(path, net3, catchments=catchments)
    assert second.attrs["weights_reused"] is True and os.stat(cache).st_mtime_ns == mtime
    np.testing.assert_array_equal(second.values, first.values)
    # other catchments -> another key -> computed again
    import geopandas as gpd

    moved = gpd.read_file(catchments)
    moved["geometry"] = moved.translate(xoff=100.0)
    moved.to_file(tmp_path / "moved.gpkg")
    with pytest.raises(AssertionError, match="recomputed"):
        read_runoff(path, net3, catchments=tmp_path / "moved.gpkg")


def test_explicit_cache_file_with_a_stale_key_is_replaced(tmp_path, catchments, net3):
    path = write_grid_nc(tmp_path / "grid.nc", grid_values())
    cache = tmp_path / "w.csv"
    cache.write_text("# thalweg grid weights v1 key=0000\nreach_id,cell,row,col,area_m2\n10,0,0,0,1.0\n")
    with pytest.warns(ThalwegWarning, match="another grid"):
        r = read_runoff(path, net3, catchments=catchments, weights_cache=cache)
    np.testing.assert_allclose(r.values, expected_rates(grid_values(), 1e-3, 86400), rtol=1e-6)
    assert f"key={r.attrs['weights_key']}" in cache.read_text().splitlines()[0]


def test_geographic_grid_uses_geodesic_areas(tmp_path, net3):
    import geopandas as gpd
    import shapely
    import xarray as xr

    lon, lat = np.arange(10.5, 13.5, 1.0), np.arange(45.5, 48.5, 1.0)  # 3 x 3 one-degree cells
    values = np.ones((2, 3, 3), dtype="float32")
    xr.Dataset({"runoff": (("time", "lat", "lon"), values, {"units": "mm"})},
               coords={"lon": lon, "lat": lat, "time": (("time",), [0, 1], {"units": "days since 2000-01-01"})}
               ).to_netcdf(tmp_path / "geo.nc")
    cells = [shapely.box(10, 45, 11, 46), shapely.box(11, 46, 12, 47), shapely.box(12, 47, 13, 48)]
    gpd.GeoDataFrame({"id": [10, 20, 30]}, geometry=cells, crs="EPSG:4326").to_file(tmp_path / "c.gpkg")
    r = read_runoff(tmp_path / "geo.nc", net3, catchments=tmp_path / "c.gpkg", weights_cache=False)
    radius = 6371007.2  # authalic sphere: a lat-lon cell has R^2 dlon (sin lat2 - sin lat1)
    sphere = [radius ** 2 * np.radians(1) * (np.sin(np.radians(a + 1)) - np.sin(np.radians(a))) for a in (45, 46, 47)]
    np.testing.assert_allclose(r.values[:, 0], np.array(sphere) * 1e-3 / 86400, rtol=3e-3)


def test_nan_cells_inside_catchments_follow_the_nan_policy(tmp_path, catchments, net3):
    values = grid_values()
    values[:, 0, 3] = np.nan  # a cell outside every catchment: harmless
    values[1, 3, 3] = np.nan  # inside reach 20 at the second step
    path = write_grid_nc(tmp_path / "grid.nc", values)
    with pytest.raises(MissingValueError, match=r"in 1 reaches \(20\) at 1 times \(2001-01-02T00:00\)"):
        read_runoff(path, net3, catchments=catchments)
    with pytest.warns(ThalwegWarning, match="treated as zero"):
        r = read_runoff(path, net3, catchments=catchments, nan="zero")
    assert r.values[1, 1] == 0 and np.isfinite(r.values).all()


def test_catchment_outside_the_grid(tmp_path, catchments, net3):
    import geopandas as gpd
    import shapely

    gdf = gpd.read_file(catchments)
    gdf.loc[2, "geometry"] = shapely.box(X0 + 9000, 9000, X0 + 10000, 10000)
    gdf.to_file(tmp_path / "far.gpkg")
    path = write_grid_nc(tmp_path / "grid.nc", grid_values())
    with pytest.warns(ThalwegWarning, match=r"1 catchments do not overlap the runoff grid \(30\)"):
        with pytest.raises(RunoffMismatchError, match="missing 1: 30"):
            read_runoff(path, net3, catchments=tmp_path / "far.gpkg")


def test_gridded_runoff_needs_catchments(tmp_path, net3):
    path = write_grid_nc(tmp_path / "grid.nc", grid_values())
    with pytest.raises(RunoffError, match="needs catchment polygons.*catchments="):
        read_runoff(path, net3)


def test_grid_needs_depth_units(tmp_path, catchments, net3):
    path = write_grid_nc(tmp_path / "grid.nc", grid_values(), units="m3")
    with pytest.raises(UnitError, match="is a volume, which this format does not take") as err:
        read_runoff(path, net3, catchments=catchments)
    assert err.value.field == "ro"


def test_time_from_file_names():
    from thalweg.runoff.gridded import time_from_name

    assert time_from_name("rain_precipitation_201409150100.tif") == np.datetime64("2014-09-15T01:00", "ns")
    assert time_from_name("era5_2014-09-15T06:30.tif") == np.datetime64("2014-09-15T06:30", "ns")
    assert time_from_name("runoff_20200102.tiff") == np.datetime64("2020-01-02", "ns")
    assert time_from_name("runoff.tif") is None


def test_aggregation_in_blocks_equals_one_pass(catchments, net3):
    from rasterio.transform import Affine

    grid = weights.Grid.from_transform(Affine(CELL, 0.0, X0, 0.0, -CELL, Y0), 4, 4, CRS)
    table = weights.compute_weights(grid, weights.load_catchments(catchments, "LINKNO", net3), progress=False)
    values = grid_values().astype(np.float64)

    def read(t0, t1, window):
        r0, r1, c0, c1 = window
        return values[t0:t1, r0:r1, c0:c1]

    ids, whole = weights.aggregate(table, read, T)
    blocks = list(weights.aggregate_blocks(table, read, T, block_values=16))
    assert [t0 for t0, _ in blocks] == [0, 1, 2]
    np.testing.assert_allclose(np.concatenate([b for _, b in blocks], axis=1), whole)
    np.testing.assert_allclose(whole, np.einsum("rij,tij->rt", hand_weights(), values), rtol=1e-7)
    np.testing.assert_array_equal(ids, [10, 20, 30])


def test_catchment_fields_and_geometries_are_checked(tmp_path, net3):
    import geopandas as gpd
    import shapely

    from thalweg.errors import GeometryError, SchemaError

    gdf = gpd.GeoDataFrame({"name": ["a", "b"], "reach": [10, 20]},
                           geometry=[shapely.box(0, 0, 1, 1), shapely.Point(0, 0)], crs=CRS)
    other = gdf.assign(reach=[1, 2])  # no field meets the network's ids
    with pytest.raises(SchemaError, match=r"no field of the catchments holds the reach ids \(fields: name, reach\)"):
        weights.load_catchments(other, None, net3)
    with pytest.raises(SchemaError, match="no field 'basin'"):
        weights.load_catchments(gdf, "basin", net3)
    for field in ("reach", None):  # named, or found by its values
        with pytest.raises(GeometryError, match=r"1 catchments are not polygons or are empty: 20\.") as err:
            weights.load_catchments(gdf, field, net3)
    assert err.value.ids == [20]
