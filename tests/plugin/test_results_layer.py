"""The result layer: saved beside the project, styled (m³/s), temporal, animated frame by frame from the
backend (a real ``thalweg serve``), and the same after closing and reopening the project."""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
from gui_helpers import OUTLET, netcdf_oracle, run_route

SUMMARY_FIELDS = ("reach_id", "downstream_id", "length_m", "area_km2", "mean", "max", "time_of_max", "q05", "q50",
                  "q95")


@pytest.fixture(scope="module")
def routed(backend, sample):
    return run_route(backend, sample)


@pytest.fixture
def function():
    from thalweg import expressions

    assert expressions.register_function()
    yield expressions
    expressions.unregister_function()


@pytest.fixture
def saved_project(project, tmp_path):
    project.setFileName(str(tmp_path / "cance.qgz"))
    assert project.write()
    return project


def _class_of(layer, value):
    ranges = layer.renderer().ranges()
    for i, r in enumerate(ranges):
        last = i == len(ranges) - 1
        if r.lowerValue() <= value < r.upperValue() or (last and value >= r.lowerValue()):
            return i
    raise AssertionError(f"{value} m3/s is in no class of {[(r.lowerValue(), r.upperValue()) for r in ranges]}")


def _midpoint_extent(layer, reach_id, half=150.0):
    from qgis.core import QgsRectangle

    feature = next(f for f in layer.getFeatures() if f["reach_id"] == reach_id)
    geom = feature.geometry()
    p = geom.interpolate(geom.length() / 2).asPoint()
    return QgsRectangle(p.x() - half, p.y() - half, p.x() + half, p.y() + half), feature.id()


def _centre_colour(image):
    c = image.pixelColor(image.width() // 2, image.height() // 2)
    return np.array([c.red(), c.green(), c.blue()], dtype=float)


def test_nice_breaks_span_the_orders_of_magnitude():
    from thalweg.layers.results import discharge_label, nice_breaks

    assert nice_breaks(0.013, 180.0) == [0.1, 1, 10, 100]  # 1-2-5 and 1-3 give more than 6 inner limits
    assert nice_breaks(2.0, 30.0) == [2, 5, 10, 20]
    b = nice_breaks(0.3, 40.0)
    assert b == [0.5, 1, 2, 5, 10, 20] and all(0.3 <= v < 40 for v in b)
    assert discharge_label(0.0512) == "0.0512" and discharge_label(1234.5) == "1,234" and discharge_label(2.0) == "2"


def test_result_layer_is_saved_beside_the_project_styled_and_temporal(backend, routed, saved_project, function,
                                                                      tmp_path, sample):
    from qgis.core import QgsGraduatedSymbolRenderer, QgsVectorLayerTemporalProperties

    from thalweg.layers.results import FRAME_EXPRESSION, load_results, result_layers, time_axis, result_info

    layer = load_results(routed, project=saved_project, client=backend.client)
    assert result_layers(saved_project) == [layer]
    assert layer.name() == "Discharge [m³/s] – Cance"
    source = Path(layer.source().split("|")[0])
    assert source.parent == tmp_path / "thalweg_results" and source.exists()
    assert source.with_suffix(".nc").exists() and routed["id"] in source.name
    # a second run beside the same project gets its own files
    again = load_results(run_route(backend, sample), project=saved_project, client=backend.client)
    assert Path(again.source().split("|")[0]) != source and len(result_layers(saved_project)) == 2
    assert layer.featureCount() == routed["result"]["reaches"] == 123
    assert set(SUMMARY_FIELDS) <= set(layer.fields().names())
    renderer = layer.renderer()
    assert isinstance(renderer, QgsGraduatedSymbolRenderer) and renderer.classAttribute() == FRAME_EXPRESSION
    labels = [r.label() for r in renderer.ranges()]
    assert len(labels) >= 4 and all("m³/s" in label for label in labels), labels
    widths = [r.symbol().width() for r in renderer.ranges()]
    assert widths == sorted(widths) and widths[0] < widths[-1]  # bigger discharge, wider line
    peak = max(f["max"] for f in layer.getFeatures())
    assert renderer.ranges()[-1].upperValue() >= peak and renderer.ranges()[0].lowerValue() < 0
    props = layer.temporalProperties()
    assert props.isActive() and props.mode() == QgsVectorLayerTemporalProperties.ModeFixedTemporalRange
    times = time_axis(result_info(routed))
    rng = props.fixedTemporalRange()
    assert rng.begin().toMSecsSinceEpoch() / 1000 == times[0] and rng.end().toMSecsSinceEpoch() / 1000 == times[-1]
    assert routed["result"]["first_time"] == "2014-09-15T00:00:00"  # the first step's end (sample README)


def test_two_frames_differ_as_the_discharge_does(backend, backend_settings, routed, saved_project, function):
    from thalweg import expressions
    from thalweg.layers.results import NetcdfFrames, load_results, render_frame, step_time

    layer = load_results(routed, project=saved_project, client=backend.client)
    oracle = netcdf_oracle(backend_settings, routed["outputs"]["q"], reaches=[OUTLET])
    q = np.array(oracle["reaches"][str(OUTLET)])
    low, high = int(np.argmin(q[24:])) + 24, int(np.argmax(q))
    extent, fid = _midpoint_extent(layer, OUTLET)
    steps = {}
    for step in (low, high):
        # the frame the expression function serves is the backend's NetCDF column, reordered by feature id
        frame = function.frame_for(layer.id(), step_time(layer, step))
        assert frame[fid] == pytest.approx(q[step], rel=1e-6)
        image, seconds = render_frame(layer, step, extent=extent, size=(61, 61))
        steps[step] = _centre_colour(image)
    ranges = layer.renderer().ranges()  # keep the copies alive while their symbols are read
    colours = [np.array(ranges[_class_of(layer, q[s])].symbol().color().getRgb()[:3], float) for s in (low, high)]
    assert _class_of(layer, q[low]) < _class_of(layer, q[high]), (q[low], q[high])
    for step, expected in zip((low, high), colours):
        assert np.abs(steps[step] - expected).max() <= 12, (step, steps[step], expected)
    assert np.abs(steps[low] - steps[high]).max() > 30
    # the other frame source (the NetCDF beside the project, read with GDAL) serves the same frames
    saved = NetcdfFrames(Path(layer.source().split("|")[0]).with_suffix(".nc"), expressions.source_of(layer.id()).times)
    service = expressions.source_of(layer.id())
    assert list(saved.ids) == list(service.ids) == oracle["ids"]
    np.testing.assert_allclose(saved.frame(high), service.frame(high), rtol=1e-6)
    assert not function.errors_of(layer.id()) and function.missing_of(layer.id()) == 0
    # the next frame of the animation is fetched in the background while one is drawn
    deadline = time.monotonic() + 30
    while high + 1 not in function.cached_steps(layer.id()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert {low, low + 1, high, high + 1} <= set(function.cached_steps(layer.id()))


def test_frames_outside_the_run_or_without_time_are_null(backend, routed, saved_project, function):
    from qgis.core import QgsExpression, QgsExpressionContext, QgsExpressionContextScope

    from thalweg.layers.results import load_results, step_time

    layer = load_results(routed, project=saved_project, client=backend.client)
    still = function.frame_for(layer.id(), None)  # no time: the mean discharge of each feature
    assert all(still[f.id()] == pytest.approx(f["mean"]) for f in layer.getFeatures())
    assert function.frame_for(layer.id(), step_time(layer, 0).addDays(-2)) is None
    assert function.frame_for(layer.id(), step_time(layer, -1).addDays(2)) is None
    assert function.frame_for("no such layer", step_time(layer, 0)) is None
    # as QGIS evaluates it: with the temporal controller off the style falls back to the mean
    feature = next(layer.getFeatures())
    context = QgsExpressionContext()
    scope = QgsExpressionContextScope()
    scope.setVariable("layer_id", layer.id())
    context.appendScope(scope)
    context.setFeature(feature)
    value = QgsExpression(layer.renderer().classAttribute())
    assert value.evaluate(context) == pytest.approx(feature["mean"])
    scope.setVariable("map_start_time", step_time(layer, 10))
    value = QgsExpression(layer.renderer().classAttribute())  # prepared anew, as each render does
    assert value.evaluate(context) != pytest.approx(feature["mean"])


def test_results_survive_closing_and_reopening_the_project(backend, backend_settings, routed, saved_project,
                                                           function):
    from qgis.core import QgsGraduatedSymbolRenderer, QgsProject

    from thalweg.layers import results

    layer = results.load_results(routed, project=saved_project, client=backend.client)
    classes = [(r.lowerValue(), r.upperValue(), r.label()) for r in layer.renderer().ranges()]
    path = saved_project.fileName()
    assert saved_project.write()
    saved_project.clear()
    function.clear()
    restored: list[str] = []
    project = QgsProject.instance()
    project.layersAdded.connect(lambda layers: restored.extend(results.restore_layers(layers)))
    try:
        assert project.read(path)
    finally:
        project.layersAdded.disconnect()
    layer, = results.result_layers(project)
    assert restored == [layer.id()]
    assert isinstance(layer.renderer(), QgsGraduatedSymbolRenderer)
    assert [(r.lowerValue(), r.upperValue(), r.label()) for r in layer.renderer().ranges()] == classes
    assert layer.temporalProperties().isActive()
    assert isinstance(function.source_of(layer.id()), results.NetcdfFrames)
    oracle = netcdf_oracle(backend_settings, routed["outputs"]["q"], steps=[100])
    frame = function.frame_for(layer.id(), results.step_time(layer, 100))
    for feature in layer.getFeatures():
        expected = oracle["steps"]["100"][oracle["ids"].index(feature["reach_id"])]
        assert frame[feature.id()] == pytest.approx(expected, rel=1e-6) or (math.isnan(expected)
                                                                           and frame[feature.id()] is None)


def test_loading_in_a_task_gives_the_same_layer(qtbot, backend, routed, saved_project, function):
    from thalweg.layers.results import LoadResultsTask, load_results, read_columns, read_file_columns
    from thalweg.service.tasks import start

    got = []
    start(LoadResultsTask(routed, lambda layer, error: got.append((layer, error)), project=saved_project,
                          client=backend.client))
    qtbot.waitUntil(lambda: bool(got), timeout=60_000)
    (layer, error), = got
    assert error is None, error
    direct = load_results(routed, project=saved_project, client=backend.client, add=False)
    assert [(r.lowerValue(), r.upperValue(), r.label()) for r in layer.renderer().ranges()] == \
        [(r.lowerValue(), r.upperValue(), r.label()) for r in direct.renderer().ranges()]
    assert layer.temporalProperties().isActive() and layer.id() in function.registered_layers()
    # the worker thread's OGR columns are QGIS's own
    names = ["reach_id", "mean", "max", "q50"]
    ogr_cols = read_file_columns(layer.source().split("|")[0], names)
    qgis_cols = read_columns(layer, names)
    for name in ["fid", *names]:
        np.testing.assert_array_equal(ogr_cols[name], qgis_cols[name])
