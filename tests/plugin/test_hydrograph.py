"""The hydrograph dock and the reach picker: a gauge reach picked on the map, its simulated discharge equal to
the backend's NetCDF, its observations equal to the sample's CSV, NSE/KGE/bias shown; overlay; PNG and CSV."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from gui_helpers import GAUGE_REACHES, OUTLET, netcdf_oracle, run_route


@pytest.fixture(scope="module")
def routed(backend, sample):
    return run_route(backend, sample)


@pytest.fixture
def result_layer(backend, routed, project, tmp_path):
    from thalweg import expressions
    from thalweg.layers.results import load_results

    project.setFileName(str(tmp_path / "cance.qgz"))
    expressions.register_function()
    layer = load_results(routed, project=project, client=backend.client)
    yield layer
    expressions.unregister_function()


@pytest.fixture
def dock(qtbot):
    from thalweg.gui.hydrograph import HydrographDock

    dock = HydrographDock()
    qtbot.addWidget(dock)
    dock.resize(800, 360)
    dock.show()
    yield dock
    dock.unload()


def _observed(sample, gauge):
    with open(sample["observed"], newline="") as fh:
        return np.array([float(row[gauge]) if row[gauge] else np.nan for row in csv.DictReader(fh)])


def _fetch(qtbot, dock, backend, job_id, reach):
    before = len(dock.series)
    task = dock.fetch(backend.client, job_id, reach)
    qtbot.waitUntil(lambda: len(dock.series) > before or not dock.tasks, timeout=60_000)
    assert (job_id, reach) in dock.series, dock.status.text()
    return task


def test_picking_the_outlet_gauge_shows_its_hydrograph(qtbot, backend, backend_settings, routed, result_layer, dock,
                                                       sample):
    from qgis.gui import QgsMapCanvas, QgsMapMouseEvent
    from qgis.PyQt.QtCore import QEvent, QPoint, Qt

    from thalweg.gui.reach_picker import ReachPicker
    from thalweg.layers.results import job_of

    canvas = QgsMapCanvas()
    qtbot.addWidget(canvas)
    canvas.resize(400, 400)
    canvas.setDestinationCrs(result_layer.crs())
    canvas.setLayers([result_layer])
    feature = next(f for f in result_layer.getFeatures() if f["reach_id"] == OUTLET)
    point = feature.geometry().interpolate(feature.geometry().length() / 2).asPoint()
    canvas.setExtent(feature.geometry().boundingBox().buffered(300))
    canvas.show()
    canvas.refresh()
    picked = []
    tool = ReachPicker(canvas, lambda: [result_layer])
    tool.reachPicked.connect(lambda layer, reach: picked.append((layer.id(), reach)))
    canvas.setMapTool(tool)
    pixel = canvas.getCoordinateTransform().transform(point)
    event = QgsMapMouseEvent(canvas, QEvent.MouseButtonRelease, QPoint(int(pixel.x()), int(pixel.y())),
                             Qt.LeftButton, Qt.LeftButton)
    tool.canvasReleaseEvent(event)
    assert picked == [(result_layer.id(), OUTLET)]
    _fetch(qtbot, dock, backend, job_of(result_layer), OUTLET)
    data = dock.series[(routed["id"], OUTLET)]
    oracle = netcdf_oracle(backend_settings, routed["outputs"]["q"], reaches=[OUTLET])
    np.testing.assert_allclose(np.array(data["simulated"], float), oracle["reaches"][str(OUTLET)], rtol=1e-6)
    assert [t[:19] for t in data["time"]] == oracle["time"]
    assert data["gauge_id"] == "V3524010"
    np.testing.assert_allclose(np.array(data["observed"], float), _observed(sample, "V3524010"), equal_nan=True)
    # what the user sees: one simulated and one observed line, metrics in the legend, m³/s on the axis
    lines = dock.axes.get_lines()
    assert len(lines) == 2
    np.testing.assert_allclose(lines[0].get_ydata(), oracle["reaches"][str(OUTLET)], rtol=1e-6)
    labels = [t.get_text() for t in dock.axes.get_legend().get_texts()]
    assert "NSE" in labels[0] and "KGE" in labels[0] and "PBIAS" in labels[0] and "V3524010" in labels[0]
    assert "m³/s" in dock.axes.get_ylabel()
    nse = data["metrics"]["nse"]
    assert f"NSE {nse:.2f}" in labels[0]
    tool.unload()


def test_overlay_and_export(qtbot, backend, routed, result_layer, dock, tmp_path):
    job = routed["id"]
    for reach in (OUTLET, GAUGE_REACHES["V3515010"], 5):
        _fetch(qtbot, dock, backend, job, reach)
    assert [key[1] for key in dock.series] == [OUTLET, 37, 5]
    assert len(dock.axes.get_lines()) == 5  # three simulated, two observed (reach 5 has no gauge)
    png = dock.export_png(tmp_path / "h.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    path = dock.export_csv(tmp_path / "h.csv")
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    header = rows[0]
    assert header == ["time", "reach_101_simulated_m3s", "gauge_V3524010_observed_m3s", "reach_37_simulated_m3s",
                      "gauge_V3515010_observed_m3s", "reach_5_simulated_m3s"]
    assert len(rows) == 1 + routed["result"]["steps"]
    column = np.array([float(r[5]) for r in rows[1:]])
    np.testing.assert_allclose(column, dock.series[(job, 5)]["simulated"], rtol=1e-12)
    dock.clear()
    assert not dock.series and not dock.axes.get_lines()
    with pytest.raises(ValueError, match="no hydrograph"):
        dock.export_csv(tmp_path / "empty.csv")


def test_unknown_reach_says_so(qtbot, backend, routed, dock):
    dock.fetch(backend.client, routed["id"], 999_999)
    qtbot.waitUntil(lambda: not dock.tasks, timeout=60_000)
    assert "999999" in dock.status.text() and "not in the results" in dock.status.text()
    assert not dock.series


def test_without_the_job_the_saved_results_give_the_simulated_series(qtbot, backend, backend_settings, routed,
                                                                     result_layer, dock):
    from thalweg.layers.results import saved_hydrograph

    oracle = netcdf_oracle(backend_settings, routed["outputs"]["q"], reaches=[OUTLET])
    saved = saved_hydrograph(result_layer, OUTLET)
    np.testing.assert_allclose(np.array(saved["simulated"], float), oracle["reaches"][str(OUTLET)], rtol=1e-6)
    assert saved["time"] == oracle["time"] and saved["gauge_id"] == "V3524010" and saved["observed"] is None
    reasons = []
    dock.fetch(backend.client, "no-such-job", OUTLET, fallback=reasons.append)
    qtbot.waitUntil(lambda: not dock.tasks, timeout=60_000)
    assert reasons == ["the backend has no job no-such-job"]
    dock.fetch(backend.client, routed["id"], 999_999, fallback=reasons.append)  # a wrong reach is no fallback
    qtbot.waitUntil(lambda: not dock.tasks, timeout=60_000)
    assert len(reasons) == 1 and "999999" in dock.status.text()
