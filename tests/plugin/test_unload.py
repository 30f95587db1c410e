"""Loading the plugin into a window adds the panel, the hydrograph dock, the reach picker, the toolbar action,
the expression function and project signals; unload() takes every one of them away and stops the backend.

This file stops the session's backend (unload does): it sorts last among the plugin tests on purpose.
"""
from __future__ import annotations

import os

import pytest
from qgis.PyQt.QtCore import Qt
from gui_helpers import WindowIface, run_route


def _flush_deletes() -> None:
    """Delete widgets waiting for deleteLater (QGIS's layer combo boxes are connected to the project too)."""
    from qgis.PyQt.QtCore import QCoreApplication, QEvent

    QCoreApplication.sendPostedEvents(None, QEvent.DeferredDelete)


def _receivers(obj, signal) -> int:
    return obj.receivers(signal)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child counts as gone
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def iface(qtbot):
    iface = WindowIface()
    qtbot.addWidget(iface.window)
    iface.window.show()
    return iface


def test_unload_leaves_nothing_behind(qtbot, iface, plugin_package, backend_settings, sample, project, tmp_path):
    from qgis.core import QgsApplication, QgsExpression, QgsProject
    from qgis.gui import QgsDockWidget

    from thalweg import expressions
    from thalweg.gui.reach_picker import ReachPicker
    from thalweg.layers.results import load_results
    from thalweg.service import process

    backend_settings.save()  # the plugin reads its settings from QgsSettings, as in QGIS
    project.setFileName(str(tmp_path / "unload.qgz"))
    proj = QgsProject.instance()
    app = QgsApplication.instance()
    signals = [(proj, proj.layersAdded), (proj, proj.layersWillBeRemoved), (proj, proj.readProject),
               (proj, proj.cleared), (app, app.aboutToQuit)]
    _flush_deletes()
    before = [_receivers(o, s) for o, s in signals]
    assert not QgsExpression.isFunctionName("thalweg_frame")

    plugin = plugin_package.classFactory(iface)
    plugin.initGui()
    gui = plugin.gui
    # the backend starts when the panel is first shown (the window shows the dock in its event loop)
    qtbot.waitUntil(lambda: process.current() is not None and gui.controller.backend_task is None,
                    timeout=240_000)
    backend = process.current()
    assert backend is not None and backend.running(), gui.panel.device_label.text()
    pid = backend.health["pid"]
    docks = {d.objectName() for d in iface.window.findChildren(QgsDockWidget)}
    assert {"ThalwegDock", "ThalwegHydrographDock"} <= docks
    assert iface.toolbar.actions() and "&Thalweg" in iface.menus
    assert QgsExpression.isFunctionName("thalweg_frame")
    assert all(_receivers(o, s) > b for (o, s), b in zip(signals, before))
    # use it: a result layer (frames registered), the picker active, a hydrograph shown
    layer = load_results(run_route(backend, sample), client=backend.client)
    assert expressions.registered_layers() == [layer.id()]
    gui.panel.hydrographToolRequested.emit()
    assert isinstance(iface.canvas.mapTool(), ReachPicker)
    gui.show_hydrograph(layer, 101)
    qtbot.waitUntil(lambda: bool(gui.hydrograph.series) or not gui.hydrograph.tasks, timeout=60_000)
    assert gui.hydrograph.series

    plugin.unload()
    qtbot.wait(50)
    _flush_deletes()  # the docks were deleteLater'd
    assert plugin.gui is None
    assert not [d for d in iface.window.findChildren(QgsDockWidget) if d.objectName().startswith("Thalweg")]
    assert not iface.toolbar.actions() and not iface.menus
    assert iface.canvas.mapTool() is None
    assert not QgsExpression.isFunctionName("thalweg_frame") and not expressions.registered_layers()
    assert [_receivers(o, s) for o, s in signals] == before
    assert process.current() is None
    qtbot.waitUntil(lambda: not _alive(pid), timeout=20_000)
    assert QgsApplication.processingRegistry().providerById("thalweg") is None
    # and QGIS still works: the result layer still renders (without its animation) and the project clears
    assert layer.isValid()
    proj.clear()


def test_missing_backend_says_how_to_set_it_up_and_the_panel_fixes_it(qtbot, backend_settings, tmp_path, monkeypatch):
    """Runs after the unload test (no backend left): a wrong backend Python gives one sentence with the setup
    command in the panel, not a traceback; the panel's backend settings then start the right one."""
    from thalweg.gui import Gui
    from thalweg.service import process
    from thalweg.settings import Settings

    process.stop_shared()
    monkeypatch.delenv("THALWEG_BACKEND_PYTHON", raising=False)
    bad = Settings(backend_python=str(tmp_path / "no-venv" / "bin" / "python"), workspace=str(tmp_path / "ws"))
    bad.save()
    gui = Gui(None)
    try:
        qtbot.addWidget(gui.panel)
        gui.panel.show()
        qtbot.waitUntil(lambda: gui.controller.backend_task is None, timeout=60_000)
        text = gui.panel.device_label.text()
        assert text.startswith("Backend unavailable:") and "no-venv/bin/python does not exist" in text
        assert "bash scripts/setup.sh" in text and "Traceback" not in text
        assert gui.panel.backend_values()["backend_python"] == bad.backend_python
        gui.panel.set_backend_values({"backend_python": backend_settings.backend_python,
                                      "pythonpath": backend_settings.pythonpath, "backend_url": ""})
        qtbot.mouseClick(gui.panel.backend_save, Qt.LeftButton)
        assert Settings.load().backend_python == backend_settings.backend_python
        qtbot.waitUntil(lambda: gui.controller.backend_task is None, timeout=240_000)
        assert process.current() is not None and process.current().device_label in gui.panel.device_label.text()
    finally:
        gui.unload()
        process.stop_shared()
        backend_settings.save()
