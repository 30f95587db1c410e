"""The Thalweg panel through qtbot, against a real backend: Run on the sample basin gives the styled temporal
result layer; Cancel stops the backend job within a second and QGIS stays responsive; a layer with a cycle
shows the cycle's ids and selects those features; the choices are remembered per project."""
from __future__ import annotations

import json
import time

import pytest
from qgis.core import QgsFeature, QgsVectorLayer
from qgis.PyQt.QtCore import Qt, QTimer


@pytest.fixture
def gui(qtbot, backend, backend_settings, project):
    from thalweg.gui import Gui

    gui = Gui(None, settings=backend_settings)
    qtbot.addWidget(gui.panel)
    gui.panel.show()
    qtbot.waitUntil(lambda: gui.controller.backend_task is None, timeout=120_000)
    yield gui
    gui.unload()


def _choose(panel, layer, sample, *, gauges=True):
    panel.layer_combo.setLayer(layer)
    panel.runoff_file.setFilePath(str(sample["runoff"]))
    if gauges:
        panel.gauges_file.setFilePath(str(sample["gauges"]))
        panel.observed_file.setFilePath(str(sample["observed"]))


def _wait_idle(qtbot, gui, timeout=180_000):
    qtbot.waitUntil(lambda: gui.controller.task is None, timeout=timeout)


def test_backend_device_is_shown(gui, backend):
    label = gui.panel.device_label.text()
    assert backend.device_label in label and "Backend" in label
    schemes = [gui.panel.scheme_combo.itemText(i) for i in range(gui.panel.scheme_combo.count())]
    assert set(schemes) == {s["name"] for s in backend.client.schemes()}


def test_run_from_the_panel_adds_the_styled_temporal_result(qtbot, gui, project, rivers_layer, sample, tmp_path):
    from thalweg.layers.results import FRAME_EXPRESSION, result_layers

    project.setFileName(str(tmp_path / "cance.qgz"))
    project.addMapLayer(rivers_layer)
    _choose(gui.panel, rivers_layer, sample)
    fractions = []
    gui.panel.progress.valueChanged.connect(fractions.append)
    qtbot.mouseClick(gui.panel.run_button, Qt.LeftButton)
    assert not gui.panel.run_button.isEnabled() and gui.panel.cancel_button.isEnabled()
    _wait_idle(qtbot, gui)
    assert gui.controller.last_error is None, gui.controller.last_error and gui.controller.last_error.message
    layer, = result_layers(project)
    assert layer is gui.controller.last_layer
    assert layer.renderer().classAttribute() == FRAME_EXPRESSION
    assert layer.temporalProperties().isActive()
    assert layer.featureCount() == rivers_layer.featureCount()
    assert fractions and fractions[-1] == 100 and "123 reaches" in gui.panel.message.text()
    assert gui.panel.run_button.isEnabled() and not gui.panel.cancel_button.isEnabled()
    # the project's temporal settings follow the run: one frame per hourly step
    ts = project.timeSettings()
    assert ts.temporalRange().begin().toString(Qt.ISODate).startswith("2014-09-15T00:00:00")
    # the choices are remembered by the project
    raw, ok = project.readEntry("thalweg", "panel/choices", "")
    saved = json.loads(raw)
    assert ok and saved["layer"] == rivers_layer.id() and saved["runoff"] == str(sample["runoff"])


def test_choices_survive_closing_and_reopening_the_project(qtbot, gui, project, rivers_layer, sample, tmp_path):
    project.setFileName(str(tmp_path / "choices.qgz"))
    project.addMapLayer(rivers_layer)
    _choose(gui.panel, rivers_layer, sample)
    gui.panel.engine_combo.setCurrentText("closure")
    gui.panel.param_source.setCurrentIndex(gui.panel.param_source.findData("constant"))
    gui.panel.param_values.setText("k=7200, x=0.3")
    gui.controller.save_choices()
    before = gui.panel.choices()
    assert project.write()
    project.clear()
    gui.panel.runoff_file.setFilePath("")
    gui.panel.engine_combo.setCurrentText("auto")
    assert project.read(str(tmp_path / "choices.qgz"))
    after = gui.panel.choices()
    assert after == before and after["engine"] == "closure" and after["param_values"] == "k=7200, x=0.3"


def test_cancel_stops_the_backend_job_within_a_second(qtbot, gui, backend, project, rivers_layer, sample):
    project.addMapLayer(rivers_layer)
    _choose(gui.panel, rivers_layer, sample)
    gui.panel.iterations.setValue(100_000)
    ticks = []
    heartbeat = QTimer()
    heartbeat.timeout.connect(lambda: ticks.append(time.monotonic()))
    heartbeat.start(20)
    qtbot.mouseClick(gui.panel.calibrate_button, Qt.LeftButton)
    controller = gui.controller
    qtbot.waitUntil(lambda: controller.task is not None and controller.task.job_id is not None, timeout=60_000)
    job_id = controller.task.job_id
    qtbot.waitUntil(lambda: backend.client.status(job_id)["state"] == "running"
                    and "iteration" in backend.client.status(job_id)["progress"]["message"].lower(), timeout=120_000)
    clicked = time.monotonic()
    qtbot.mouseClick(gui.panel.cancel_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: backend.client.status(job_id)["state"] in ("cancelled", "failed", "succeeded"),
                    timeout=10_000)
    ended = time.monotonic() - clicked
    record = backend.client.status(job_id)
    assert record["state"] == "cancelled", record
    assert ended <= 1.0, f"the backend job took {ended:.2f} s to stop after Cancel"
    _wait_idle(qtbot, gui, timeout=10_000)
    heartbeat.stop()
    assert gui.panel.message.text() == "Cancelled." and gui.panel.run_button.isEnabled()
    # QGIS stayed responsive: the main thread's timer kept ticking while the job ran and stopped
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert gaps and max(gaps) < 0.5, f"longest main-thread stall {max(gaps):.3f} s"


def _cycle_layer(rivers):
    """A memory copy of the sample's rivers where reach 101 (the outlet) drains into 100, which drains into it."""
    layer = QgsVectorLayer(f"LineString?crs={rivers.crs().authid()}", "rivers with a cycle", "memory")
    layer.dataProvider().addAttributes(rivers.fields().toList())
    layer.updateFields()
    downstream_of = {f["LINKNO"]: f["DSLINKNO"] for f in rivers.getFeatures()}
    upstream = next(k for k, v in downstream_of.items() if v == 101)
    features = []
    for f in rivers.getFeatures():
        g = QgsFeature(layer.fields())
        g.setGeometry(f.geometry())
        attrs = f.attributes()
        if f["LINKNO"] == 101:
            attrs[rivers.fields().indexOf("DSLINKNO")] = upstream
        g.setAttributes(attrs)
        features.append(g)
    layer.dataProvider().addFeatures(features)
    return layer, {101, upstream}


def test_a_cycle_shows_its_ids_and_selects_its_reaches(qtbot, gui, project, rivers_layer, sample):
    layer, cycle = _cycle_layer(rivers_layer)
    project.addMapLayer(layer)
    _choose(gui.panel, layer, sample, gauges=False)
    qtbot.mouseClick(gui.panel.run_button, Qt.LeftButton)
    _wait_idle(qtbot, gui)
    error = gui.controller.last_error
    assert error is not None and error.error == "CycleError", error and error.message
    text = gui.panel.message.text()
    for reach in cycle:
        assert str(reach) in text
    assert "Traceback" not in text
    assert gui.panel.select_button.isVisibleTo(gui.panel)
    qtbot.mouseClick(gui.panel.select_button, Qt.LeftButton)
    selected = {f["LINKNO"] for f in layer.selectedFeatures()}
    assert selected == cycle == {int(i) for i in error.ids}


def test_missing_runoff_says_which_widget(qtbot, gui, project, rivers_layer):
    project.addMapLayer(rivers_layer)
    gui.panel.layer_combo.setLayer(rivers_layer)
    gui.panel.runoff_file.setFilePath("")
    qtbot.mouseClick(gui.panel.run_button, Qt.LeftButton)
    assert gui.controller.task is None
    assert "Runoff file" in gui.panel.message.text()
