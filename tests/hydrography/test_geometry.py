"""Topology and lengths from line geometry: end vertex meets start vertex; geodesic or planar lengths."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import shapely
from pyproj import Geod, Transformer

from thalweg.errors import GeometryError, ThalwegWarning
from thalweg.hydrography import read_network
from thalweg.testing.layers import write_layer


def _interior(net):
    """Positions of reaches with a reach upstream and one downstream."""
    has_up = np.isin(np.arange(net.n_reaches), net.downstream)
    return np.flatnonzero(has_up & (net.downstream >= 0))


@pytest.mark.parametrize("suffix", ["gpkg", "parquet", "geojson"])
def test_topology_from_shuffled_lines_is_exact(tmp_path, net, ds_ids, same_topology, suffix):
    perm = np.random.default_rng(5).permutation(net.n_reaches)
    path = write_layer(tmp_path / f"lines.{suffix}", "lines", net.ids[perm], ds_ids[perm],
                       geometry=net.geometry[perm], crs="EPSG:3857", extra={"rid": net.ids[perm]})
    with warnings.catch_warnings():
        warnings.simplefilter("error", ThalwegWarning)  # an id field named: nothing guessed
        read = read_network(path, fields={"id": "rid"})
    order = same_topology(read, net.ids, ds_ids)
    np.testing.assert_allclose(read.length[order], net.length, rtol=1e-12)
    assert read.source.schema == "lines" and read.source.fields["id"] == "rid"
    assert read.source.fields["downstream"].startswith("geometry")


def test_plain_lines_without_fields_use_row_numbers(tmp_path, net, ds_ids):
    perm = np.random.default_rng(6).permutation(net.n_reaches)
    path = write_layer(tmp_path / "plain.gpkg", "lines", net.ids, ds_ids, geometry=net.geometry[perm],
                       crs="EPSG:3857")
    with pytest.warns(ThalwegWarning, match="building the topology from the line geometry"):
        read = read_network(path)
    np.testing.assert_array_equal(read.ids, np.arange(1, net.n_reaches + 1))
    truth = net.ids[perm]  # row k holds reach truth[k]
    got = np.where(read.downstream >= 0, truth[np.maximum(read.downstream, 0)], -1)
    np.testing.assert_array_equal(got, ds_ids[perm])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ThalwegWarning)
        read_network(path, schema="lines")  # the explicit schema silences the warning


def test_reversed_interior_lines_are_named(tmp_path, net, ds_ids):
    flipped = _interior(net)[[0, 3, 7]]
    geometry = net.geometry.copy()
    geometry[flipped] = shapely.reverse(geometry[flipped])
    path = write_layer(tmp_path / "rev.gpkg", "lines", net.ids, ds_ids, geometry=geometry, crs="EPSG:3857",
                       extra={"rid": net.ids, "up_km2": net.area / 1e6})
    with pytest.raises(GeometryError) as err:
        read_network(path, fields={"id": "rid"})
    assert sorted(err.value.ids) == sorted(net.ids[flipped])
    assert "digitised against the flow" in str(err.value) and "Reverse those lines" in str(err.value)
    assert "first vertex shared" in str(err.value) and err.value.path == str(path) and err.value.layer == "rev"
    with pytest.raises(GeometryError) as err:  # with drainage areas the larger one is the reversed one
        read_network(path, fields={"id": "rid", "area": "up_km2"})
    assert sorted(err.value.ids) == sorted(net.ids[flipped]) and "larger drainage area" in str(err.value)


def test_reversed_outlet_is_named_from_area(tmp_path, net, ds_ids):
    outlet = int(np.argmax(np.where(net.downstream < 0, net.area, 0)))  # the largest basin's outlet
    geometry = net.geometry.copy()
    geometry[outlet] = shapely.reverse(geometry[outlet])
    path = write_layer(tmp_path / "rev.gpkg", "lines", net.ids, ds_ids, geometry=geometry, crs="EPSG:3857",
                       extra={"rid": net.ids, "up_km2": net.area / 1e6})
    with pytest.raises(GeometryError) as err:
        read_network(path, fields={"id": "rid", "area": "up_km2"})
    assert err.value.ids == [net.ids[outlet]]
    with pytest.raises(GeometryError) as err:  # without areas: every line of that confluence is named
        read_network(path, fields={"id": "rid"})
    upstream = net.ids[net.downstream == outlet]
    assert sorted(err.value.ids) == sorted([net.ids[outlet], *upstream])


def test_reversed_headwater(tmp_path, net, ds_ids):
    headwaters = np.setdiff1d(np.arange(net.n_reaches), net.downstream)
    below = net.downstream[headwaters]
    h = int(headwaters[(below >= 0) & (net.downstream[np.maximum(below, 0)] >= 0)][0])
    geometry = net.geometry.copy()
    geometry[h] = shapely.reverse(geometry[h])
    path = write_layer(tmp_path / "rev.gpkg", "lines", net.ids, ds_ids, geometry=geometry, crs="EPSG:3857",
                       extra={"rid": net.ids, "up_km2": net.area / 1e6})
    with pytest.raises(GeometryError, match=r"main outflow already drains their area .*reversed headwaters") as err:
        read_network(path, fields={"id": "rid", "area": "up_km2"})
    assert err.value.ids == [net.ids[h]]
    # without areas it looks like a distributary: one branch is kept and the other reported
    with pytest.warns(ThalwegWarning, match=rf"minor paths .*-> {net.ids[h]}\b"):
        read = read_network(path, fields={"id": "rid"})
    assert read.downstream[read.index_of([net.ids[h]])[0]] == -1


def test_bifurcation_keeps_one_branch_with_a_warning(tmp_path, net, ds_ids):
    i = _interior(net)[0]
    end = shapely.get_point(net.geometry[i], -1)
    x, y = shapely.get_x(end), shapely.get_y(end)
    branch = shapely.LineString([(x, y), (x + 300.0, y + 5000.0)])  # leaves the junction, reaches nothing
    geometry = np.r_[net.geometry, [branch]]
    ids = np.r_[net.ids, 9999]
    # a distributary carries (nearly) all the area of the junction, less than the main stem
    small = np.r_[net.area, 0.99 * net.area[net.downstream[i]]]
    path = write_layer(tmp_path / "bif.gpkg", "lines", ids, np.r_[ds_ids, -1], geometry=geometry, crs="EPSG:3857",
                       extra={"rid": ids, "up_m2": small})
    with pytest.warns(ThalwegWarning, match=rf"minor paths .*\b{net.ids[i]} -> 9999.*ignored"):
        read = read_network(path, fields={"id": "rid", "area": "up_m2"}, area_unit="m2")
    pos = read.index_of([net.ids[i]])[0]
    assert read.ids[read.downstream[pos]] == ds_ids[i]  # the branch with the larger area is kept
    assert read.downstream[read.index_of([9999])[0]] == -1


def test_line_ending_on_another_lines_interior_is_an_error(tmp_path, net, ds_ids):
    j = _interior(net)[2]
    coords = shapely.get_coordinates(net.geometry[j])
    mid = (coords[0] + coords[1]) / 2  # a point inside line j, away from its vertices' ends
    tributary = shapely.LineString([mid + [-2500.0, 1700.0], mid])
    path = write_layer(tmp_path / "t.gpkg", "lines", np.r_[net.ids, 777], np.r_[ds_ids, -1],
                       geometry=np.r_[net.geometry, [tributary]], crs="EPSG:3857", extra={"rid": np.r_[net.ids, 777]})
    with pytest.raises(GeometryError, match=rf"777 on {net.ids[j]}.*not split at confluences") as err:
        read_network(path, fields={"id": "rid"})
    assert err.value.ids == [777] and "Split" in err.value.hint


def test_tolerance_snaps_nearby_vertices(tmp_path, net, ds_ids, same_topology):
    rng = np.random.default_rng(2)
    jitter = shapely.transform(net.geometry, lambda xy: xy + rng.uniform(-0.3, 0.3, xy.shape))
    path = write_layer(tmp_path / "j.gpkg", "lines", net.ids, ds_ids, geometry=jitter, crs="EPSG:3857",
                       extra={"rid": net.ids})
    loose = read_network(path, fields={"id": "rid"}, tolerance=1.0)
    same_topology(loose, net.ids, ds_ids)
    strict = read_network(path, fields={"id": "rid"})  # default 0.01 m: the jittered ends do not meet
    assert strict.outlets.size > loose.outlets.size


def _to_degrees(geometry):
    # move the lattice to 45 N so that geodesic and planar lengths differ clearly
    forward = Transformer.from_crs("EPSG:3857", "EPSG:4326", always_xy=True)
    return shapely.transform(geometry, lambda xy: np.column_stack(forward.transform(xy[:, 0] + 1e6, xy[:, 1] + 5.6e6)))


def test_geodesic_lengths_in_degrees_match_pyproj(tmp_path, net, ds_ids, same_topology):
    lines = _to_degrees(net.geometry)
    path = write_layer(tmp_path / "deg.gpkg", "lines", net.ids, ds_ids, geometry=lines, crs="EPSG:4326",
                       extra={"rid": net.ids})
    with pytest.warns(ThalwegWarning, match="EPSG:4326 .degrees. and has no length field; using geodesic"):
        read = read_network(path, fields={"id": "rid"})
    order = same_topology(read, net.ids, ds_ids)
    geod = Geod(ellps="WGS84")
    expected = np.array([geod.geometry_length(g) for g in lines])
    np.testing.assert_allclose(read.length[order], expected, rtol=1e-10)
    assert read.source.fields["length"] == "geometry (geodesic)"
    assert np.all(np.abs(read.length[order] / net.length - 1) > 0.2)  # Mercator lengths are far off at 45 N


def test_no_crs_and_degree_coordinates_warn_and_measure_on_the_ellipsoid(tmp_path, net, ds_ids):
    lines = _to_degrees(net.geometry)
    path = write_layer(tmp_path / "deg.csv", "lines", net.ids, ds_ids, geometry=lines, extra={"rid": net.ids})
    with pytest.warns(ThalwegWarning, match="has no CRS and its coordinates look like degrees; assuming WGS 84"):
        read = read_network(path, fields={"id": "rid"})
    geod = Geod(ellps="WGS84")
    order = read.index_of(net.ids)
    np.testing.assert_allclose(read.length[order], [geod.geometry_length(g) for g in lines], rtol=1e-9)


def test_no_crs_and_metric_coordinates_warn(tmp_path, net, ds_ids):
    path = write_layer(tmp_path / "m.csv", "lines", net.ids, ds_ids, geometry=net.geometry, extra={"rid": net.ids})
    with pytest.warns(ThalwegWarning, match="has no CRS and no length field; measuring lengths in its coordinate"):
        read = read_network(path, fields={"id": "rid"})
    np.testing.assert_allclose(read.length[read.index_of(net.ids)], net.length, rtol=1e-12)


def test_multilinestrings_that_join_are_merged(tmp_path, net, ds_ids, same_topology):
    geometry = net.geometry.copy()
    long = [k for k, g in enumerate(geometry) if shapely.get_num_points(g) >= 3][:5]
    for k in long:
        c = shapely.get_coordinates(geometry[k])
        geometry[k] = shapely.MultiLineString([c[:2], c[1:]])
    path = write_layer(tmp_path / "multi.gpkg", "lines", net.ids, ds_ids, geometry=geometry, crs="EPSG:3857",
                       extra={"rid": net.ids})
    read = read_network(path, fields={"id": "rid"})
    order = same_topology(read, net.ids, ds_ids)
    np.testing.assert_allclose(read.length[order], net.length, rtol=1e-12)
    assert shapely.get_type_id(read.geometry).max() == 1


def test_multilinestrings_with_gaps_are_an_error(tmp_path, net, ds_ids):
    geometry = net.geometry.copy()
    c = shapely.get_coordinates(geometry[4])
    geometry[4] = shapely.MultiLineString([c, c + 5000.0])
    path = write_layer(tmp_path / "gap.gpkg", "hydrorivers", net.ids, ds_ids, geometry=geometry, crs="EPSG:3857")
    with pytest.raises(GeometryError, match="do not join end to start") as err:
        read_network(path)
    assert err.value.ids == [net.ids[4]]


@pytest.mark.parametrize("tolerance,scale", [(0.01, 1.0), (0.5, 1.0), (3.0, 1.0), (0.01, 1e6)])
def test_near_pairs_matches_brute_force(tolerance, scale):
    from thalweg.hydrography.topology import near_pairs

    rng = np.random.default_rng(4)
    a = rng.uniform(-20, 20, (300, 2)).round(1) * scale  # many exact coincidences; 1e6: a global extent in m
    b = np.r_[a[:100] + rng.uniform(-tolerance, tolerance, (100, 2)) * 0.7, rng.uniform(-20, 20, (200, 2)) * scale]
    i, j = near_pairs(a, b, tolerance)
    d = np.hypot(*(a[:, None, :] - b[None, :, :]).transpose(2, 0, 1))
    assert set(zip(i.tolist(), j.tolist())) == set(zip(*np.nonzero(d <= tolerance)))
    i, j = near_pairs(a, a, tolerance)
    d = np.hypot(*(a[:, None, :] - a[None, :, :]).transpose(2, 0, 1))
    np.fill_diagonal(d, np.inf)
    assert set(zip(i.tolist(), j.tolist())) == set(zip(*np.nonzero(d <= tolerance)))
