"""QGIS layer -> the network of a job: by path for a file read whole, inline arrays otherwise; checked against
the backend's own reading of the same file (its reader, units and upstream rule are the oracles)."""
from __future__ import annotations

import base64

import pytest
from qgis.core import (QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsFeature, QgsFeatureRequest,
                       QgsGeometry, QgsProject, QgsVectorLayer)

READ_SAMPLE = """
from thalweg.hydrography import read_network
net = read_network(ARGS["path"], layer="rivers")
out = {"ids": net.ids.tolist(), "length": net.length.tolist(), "area": net.area.tolist(),
       "downstream": [int(net.ids[d]) if d >= 0 else -1 for d in net.downstream]}
if ARGS.get("upstream_of") is not None:
    out["upstream"] = sorted(int(i) for i in net.ids[net.upstream_of(ARGS["upstream_of"])])
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def sample_network(backend_exec, sample):
    """The sample network as the backend reads it (ids, downstream ids, length m, area m2)."""
    return backend_exec(READ_SAMPLE, path=str(sample["rivers"]), upstream_of=37)


def _inline(layer, backend, **options):
    from thalweg.layers.extract import network_source

    source = network_source(layer, **options)
    assert source.kind == "inline"
    return source, source.job_fields(backend.client)["network"]


def test_file_layer_is_sent_by_path(rivers_layer, sample, backend):
    from thalweg.layers.extract import network_source

    source = network_source(rivers_layer)
    assert source.kind == "file"
    assert source.job_fields(backend.client) == {"network": str(sample["rivers"]), "layer": "rivers"}
    with_fields = network_source(rivers_layer, fields={"area": None})
    assert with_fields.job_fields(backend.client)["fields"] == {"area": None}


def test_memory_layer_is_sent_inline_as_the_backend_reads_the_file(rivers_layer, backend, sample_network):
    memory = rivers_layer.materialize(QgsFeatureRequest())
    assert memory.providerType() == "memory" and memory.featureCount() == 123
    source, net = _inline(memory, backend)
    assert source.detection["schema"] == "geoglows" and source.id_field == "LINKNO"
    assert net["length_unit"] == "m" and net["area_unit"] == "m2"
    expect = dict(zip(sample_network["ids"], zip(sample_network["downstream"], sample_network["length"],
                                                 sample_network["area"])))
    assert sorted(net["ids"]) == sorted(expect)
    for i, d, length, area in zip(net["ids"], net["downstream_ids"], net["length"], net["area"]):
        assert (d if d in expect else -1) == expect[i][0]
        assert length == pytest.approx(expect[i][1], rel=1e-12)
        assert area == pytest.approx(expect[i][2], rel=1e-12)
    geometry = net["geometry"]
    assert len(geometry["sizes"]) == 123 and ("2154" in geometry["crs"] or "Lambert-93" in geometry["crs"])
    raw = base64.b64decode(geometry["wkb"])
    first = QgsGeometry()
    first.fromWkb(raw[:geometry["sizes"][0]])
    feature = next(memory.getFeatures())
    assert first.equals(feature.geometry())


def test_selection_and_upstream_subsets(rivers_layer, backend, sample_network):
    rivers_layer.selectByExpression('"LINKNO" IN (101, 37, 19)')
    _, net = _inline(rivers_layer, backend, selected_only=True, with_geometry=False)
    assert sorted(net["ids"]) == [19, 37, 101] and "geometry" not in net
    _, up = _inline(rivers_layer, backend, upstream_of=37, with_geometry=False)
    assert sorted(up["ids"]) == sample_network["upstream"] and len(up["ids"]) > 3
    assert up["downstream_ids"][up["ids"].index(37)] == -1  # the picked reach is the outlet of the subset
    from thalweg.errors import PluginError

    with pytest.raises(PluginError, match=r"reach 999999 is not among its 123 reaches \(LINKNO\)"):
        _inline(rivers_layer, backend, upstream_of=999999)
    rivers_layer.removeSelection()
    with pytest.raises(PluginError, match="has no selected features"):
        _inline(rivers_layer, backend, selected_only=True)


def _memory_lines(crs: str, rows, fields="id:integer&field=next:integer"):
    layer = QgsVectorLayer(f"LineString?crs={crs}&field={fields}", "lines", "memory")
    features = []
    for values, wkt in rows:
        f = QgsFeature(layer.fields())
        f.setAttributes(list(values))
        f.setGeometry(QgsGeometry.fromWkt(wkt))
        features.append(f)
    assert layer.dataProvider().addFeatures(features)[0]
    return layer


GEODESIC = """
from pyproj import Geod
geod = Geod(ellps="WGS84")
print(json.dumps([geod.line_length(*zip(*line)) for line in ARGS["lines"]]))
"""


def test_geographic_layer_without_length_field_gets_geodesic_lengths(backend, backend_exec):
    lines = [[(2.0, 45.0), (2.1, 45.05), (2.2, 45.0)], [(2.2, 45.0), (2.3, 44.9)], [(2.3, 44.9), (2.3, 44.8)]]
    rows = [((1, 2), "LINESTRING(" + ", ".join(f"{x} {y}" for x, y in lines[0]) + ")"),
            ((2, 3), "LINESTRING(" + ", ".join(f"{x} {y}" for x, y in lines[1]) + ")"),
            ((3, -1), "LINESTRING(" + ", ".join(f"{x} {y}" for x, y in lines[2]) + ")")]
    layer = _memory_lines("EPSG:4326", rows, "LINKNO:integer&field=DSLINKNO:integer")
    _, net = _inline(layer, backend)
    expected = backend_exec(GEODESIC, lines=lines)  # pyproj's geodesic on WGS84: an independent oracle
    assert net["length_unit"] == "m"
    assert net["length"] == pytest.approx(expected, rel=1e-6)
    # a projected layer: planar lengths in metres
    proj = QgsCoordinateTransform(QgsCoordinateReferenceSystem("EPSG:4326"), QgsCoordinateReferenceSystem("EPSG:2154"),
                                  QgsProject.instance())
    projected_rows = []
    for values, wkt in rows:
        g = QgsGeometry.fromWkt(wkt)
        g.transform(proj)
        projected_rows.append((values, g.asWkt(6)))
    _, planar = _inline(_memory_lines("EPSG:2154", projected_rows, "LINKNO:integer&field=DSLINKNO:integer"), backend)
    assert planar["length"] == pytest.approx([QgsGeometry.fromWkt(w).length() for _, w in projected_rows], rel=1e-9)


def test_layer_without_id_fields_says_what_to_do(backend):
    from thalweg.errors import PluginError

    layer = _memory_lines("EPSG:2154", [((1, 2), "LINESTRING(0 0, 1 1)")], "a:integer&field=b:integer")
    with pytest.raises(PluginError, match="Choose the reach id and downstream id fields in the Thalweg panel"):
        _inline(layer, backend)
    # the user's mapping in the panel makes it work
    from thalweg.layers.extract import network_source

    source = network_source(layer, fields={"id": "a", "downstream": "b"})
    net = source.job_fields(backend.client)["network"]
    assert net["ids"] == [1] and net["downstream_ids"] == [2] and net["length"] == pytest.approx([2 ** 0.5])


def test_cycle_error_names_the_reaches_and_selects_them(backend, wait_task):
    from thalweg.layers.extract import network_source, select_reaches
    from thalweg.service.tasks import JobTask

    rows = [((10, 11), "LINESTRING(0 0, 1 0)"), ((11, 12), "LINESTRING(1 0, 2 0)"), ((12, 10), "LINESTRING(2 0, 3 0)"),
            ((13, -1), "LINESTRING(5 0, 6 0)")]
    layer = _memory_lines("EPSG:2154", rows, "LINKNO:integer&field=DSLINKNO:integer")
    source = network_source(layer)
    got = []
    body = lambda: {"kind": "extract", **source.job_fields(backend.client)}  # noqa: E731  (built in the worker)
    wait_task(JobTask("Thalweg test: cycle", body, layer=layer.id(), on_finished=lambda r, e: got.append(e)))
    (error,) = got
    assert error is not None and error.error == "CycleError", error and error.message
    assert sorted(error.ids) == [10, 11, 12] and error.layer == layer.id()
    assert "10 -> 11 -> 12 -> 10" in error.message
    assert select_reaches(layer, error.ids, source.id_field) == 3
    assert sorted(f["LINKNO"] for f in layer.selectedFeatures()) == [10, 11, 12]


def test_base64_in_pieces_is_base64():
    import os

    from thalweg.layers.extract import _base64

    for size in (0, 1, 2, 3, 786_431, 786_432, 786_433, 2_000_003):
        data = os.urandom(size)
        assert _base64(data) == base64.b64encode(data).decode("ascii"), size
