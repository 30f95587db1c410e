"""Screenshot of QGIS with the Thalweg panel, the styled discharge map of the sample basin and the hydrograph
dock at the outlet gauge: the real QGIS desktop under Xvfb, driven by this same file through ``qgis --code``.

    .venv/bin/python scripts/screenshot_qgis.py --out docs/qgis_screenshot.png

Outside QGIS (the launcher): a throwaway QGIS profile with the plugin linked in and enabled and the backend
configured (this checkout's ``.venv`` and ``backend/``), then ``xvfb-run qgis --code scripts/screenshot_qgis.py``.
Inside QGIS (``THALWEG_SHOT`` is set): load the sample basin, press Run in the panel, wait for the result
layer, move the temporal controller to the outlet's peak, open the hydrograph of the outlet reach, grab the
main window, quit.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

# qgis --code exec()s this file without __file__: the launcher passes the checkout in THALWEG_ROOT
ROOT = Path(os.environ.get("THALWEG_ROOT") or Path(globals().get("__file__", ".")).resolve().parents[1])
SAMPLE = ROOT / "resources" / "sample"
OUTLET = 101  # the reach ending at gauge V3524010, La Cance à Sarras (resources/sample/README.md)


# ------------------------------------------------------------------ launcher (any Python)
def launch(out: Path, backend_python: str, size: str, timeout: float) -> int:
    if shutil.which("qgis") is None or shutil.which("xvfb-run") is None:
        print("needs the QGIS desktop (Debian's qgis package) and xvfb-run: bash scripts/setup.sh installs both",
              file=sys.stderr)
        return 2
    profiles = Path(tempfile.mkdtemp(prefix="thalweg-shot-"))
    profile = profiles / "profiles" / "default"
    plugins = profile / "python" / "plugins"
    plugins.mkdir(parents=True)
    (plugins / "thalweg").symlink_to(ROOT / "plugin", target_is_directory=True)
    ini = profile / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True)
    workspace = profiles / "workspace"
    ini.write_text("\n".join([
        "[PythonPlugins]", "thalweg=true", "",
        "[thalweg]", f"backend_python={backend_python}", f"pythonpath={ROOT / 'backend'}",
        f"workspace={workspace}", "start_timeout=240", "",
        "[qgis]", "showTips322=false", "checkVersion=false", "allowVersionCheck=false", "",
        "[core]", "NewsFeed\\httpsfeedqgisorg\\disabled=true", ""]), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(THALWEG_SHOT=str(out.resolve()), THALWEG_ROOT=str(ROOT), QT_QPA_PLATFORM="xcb",
               LANG="en_GB.UTF-8", LC_ALL="C.UTF-8")
    cmd = ["xvfb-run", "-a", "-s", f"-screen 0 {size}x24", "qgis", "--profiles-path", str(profiles), "--nologo",
           "--noversioncheck", "--code", str(ROOT / "scripts" / "screenshot_qgis.py")]
    if out.exists():
        out.unlink()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # its own process group: Xvfb, QGIS and the backend end together
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
        proc = None
    log = profiles / "shot.log"
    if log.exists():
        print(log.read_text(encoding="utf-8"))
    if proc is None:
        print(f"QGIS did not finish within {timeout:g} s", file=sys.stderr)
        return 1
    if not out.exists():
        print(output[-4000:], file=sys.stderr)
        return 1
    print(f"wrote {out}")
    shutil.rmtree(profiles, ignore_errors=True)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "qgis_screenshot.png")
    parser.add_argument("--backend-python", default=os.environ.get("THALWEG_BACKEND_PYTHON")
                        or str(ROOT / ".venv" / "bin" / "python"))
    parser.add_argument("--size", default="1600x1000", help="screen size, WIDTHxHEIGHT")
    parser.add_argument("--timeout", type=float, default=400.0, help="seconds allowed for QGIS")
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    return launch(args.out, args.backend_python, args.size, args.timeout)


# ------------------------------------------------------------------ inside QGIS (qgis --code)
def inside_qgis(out: Path) -> None:  # noqa: C901  (one scripted session, step by step)
    import qgis.utils
    from qgis.core import (QgsApplication, QgsPalLayerSettings, QgsProject, QgsTextFormat, QgsVectorLayer,
                           QgsVectorLayerSimpleLabeling)
    from qgis.PyQt.QtCore import Qt, QTimer
    from qgis.PyQt.QtGui import QColor, QFont
    from qgis.PyQt.QtWidgets import QDockWidget

    iface = qgis.utils.iface
    log_lines: list[str] = []

    def log(text: str) -> None:
        log_lines.append(text)
        profiles = Path(QgsApplication.qgisSettingsDirPath()).parents[1]
        (profiles / "shot.log").write_text("\n".join(log_lines), encoding="utf-8")

    def finish(code: int = 0) -> None:
        QgsProject.instance().setDirty(False)
        QTimer.singleShot(200, lambda: QgsApplication.instance().exit(code))

    if "thalweg" not in qgis.utils.plugins:
        qgis.utils.loadPlugin("thalweg")
        qgis.utils.startPlugin("thalweg")
    plugin = qgis.utils.plugins["thalweg"]
    gui = plugin.gui
    win = iface.mainWindow()
    win.showNormal()
    win.setGeometry(0, 0, 1600, 1000)
    browser = win.findChild(QDockWidget, "Browser")
    if browser is not None:
        browser.hide()
    project = QgsProject.instance()

    # context layers: catchments (pale), the gauges with their codes
    catch = QgsVectorLayer(f"{SAMPLE / 'cance_rivers.gpkg'}|layername=catchments", "Catchments", "ogr")
    catch.renderer().symbol().setColor(QColor(246, 244, 236))
    catch.renderer().symbol().symbolLayer(0).setStrokeColor(QColor(222, 218, 204))
    catch.renderer().symbol().symbolLayer(0).setStrokeWidth(0.1)
    rivers = QgsVectorLayer(f"{SAMPLE / 'cance_rivers.gpkg'}|layername=rivers", "Cance rivers", "ogr")
    gauges = QgsVectorLayer(f"{SAMPLE / 'cance_rivers.gpkg'}|layername=gauges", "Gauges", "ogr")
    gauges.renderer().symbol().setColor(QColor(200, 30, 30))
    gauges.renderer().symbol().setSize(3.2)
    labels = QgsPalLayerSettings()
    names = gauges.fields().names()
    labels.fieldName = next((n for n in ("gauge_id", "code", "name") if n in names), names[-1])
    fmt = QgsTextFormat()
    fmt.setFont(QFont("DejaVu Sans", 9, QFont.Bold))
    fmt.setSize(9)
    buffer = fmt.buffer()
    buffer.setEnabled(True)
    buffer.setSize(1.0)
    fmt.setBuffer(buffer)
    labels.setFormat(fmt)
    labels.placement = QgsPalLayerSettings.OrbitalPlacement if hasattr(QgsPalLayerSettings, "OrbitalPlacement") \
        else labels.placement
    gauges.setLabeling(QgsVectorLayerSimpleLabeling(labels))
    gauges.setLabelsEnabled(True)
    for layer in (catch, rivers, gauges):
        project.addMapLayer(layer)
    root = project.layerTreeRoot()
    root.findLayer(rivers.id()).setItemVisibilityChecked(False)
    log(f"layers: {[lyr.name() for lyr in project.mapLayers().values()]}")

    panel = gui.panel
    panel.layer_combo.setLayer(rivers)
    panel.runoff_file.setFilePath(str(SAMPLE / "cance_runoff.nc"))
    panel.gauges_file.setFilePath(str(SAMPLE / "cance_gauges.csv"))
    panel.observed_file.setFilePath(str(SAMPLE / "cance_qobs.csv"))
    panel.show()
    panel.raise_()
    state = {"ticks": 0, "ran": False}

    def wait_backend() -> None:
        state["ticks"] += 1
        if gui.controller.backend_task is None:
            log(f"backend: {panel.device_label.text()}")
            gui.controller.run()
            state["ran"] = True
            QTimer.singleShot(500, wait_run)
        elif state["ticks"] > 600:
            log("backend did not start")
            finish(1)
        else:
            QTimer.singleShot(500, wait_backend)

    def wait_run() -> None:
        c = gui.controller
        if c.task is not None:
            QTimer.singleShot(500, wait_run)
            return
        if c.last_layer is None:
            log(f"run failed: {c.last_error and c.last_error.message}")
            finish(1)
            return
        layer = c.last_layer
        log(f"result layer: {layer.name()}")
        # the result comes in on top; the gauges go above it
        root.findLayer(gauges.id()).setItemVisibilityChecked(True)
        gauge_node = root.findLayer(gauges.id())
        root.insertChildNode(0, gauge_node.clone())
        gauge_node.parent().removeChildNode(gauge_node)
        root.findLayer(layer.id()).setExpanded(True)  # the legend's classes in m³/s
        temporal = win.findChild(QDockWidget, "Temporal Controller")
        if temporal is not None:
            temporal.show()
        iface.messageBar().clearWidgets()
        docks = [d for d in (temporal, gui.hydrograph) if d is not None]
        win.resizeDocks(docks, [120, 330][-len(docks):], Qt.Vertical)
        win.resizeDocks([panel], [430], Qt.Horizontal)
        gui.show_hydrograph(layer, OUTLET)
        QTimer.singleShot(500, lambda: wait_hydrograph(layer))

    def wait_hydrograph(layer) -> None:
        h = gui.hydrograph
        if not h.series:
            if h.tasks:
                QTimer.singleShot(500, lambda: wait_hydrograph(layer))
            else:
                log(f"hydrograph failed: {h.status.text()}")
                finish(1)
            return
        import numpy as np

        data = next(iter(h.series.values()))
        peak = int(np.nanargmax(np.array(data["simulated"], dtype=float)))
        canvas = iface.mapCanvas()
        nav = canvas.temporalController()
        if hasattr(nav, "setCurrentFrameNumber"):
            nav.setCurrentFrameNumber(peak)
        log(f"frame {peak}: {data['time'][peak]}")
        extent = layer.extent()
        extent.scale(1.08)
        canvas.setExtent(extent)
        canvas.refresh()
        QTimer.singleShot(6000, grab)

    def grab() -> None:
        canvas = iface.mapCanvas()
        if canvas.isDrawing():
            QTimer.singleShot(500, grab)
            return
        iface.messageBar().clearWidgets()
        iface.layerTreeView().expandAll()  # the result's classes in m³/s in the legend
        pixmap = win.grab()
        pixmap.save(str(out), "PNG")
        log(f"saved {out} ({pixmap.width()}x{pixmap.height()})")
        finish(0)

    QTimer.singleShot(1500, wait_backend)


if os.environ.get("THALWEG_SHOT") and "qgis.utils" in sys.modules:
    try:
        inside_qgis(Path(os.environ["THALWEG_SHOT"]))
    except Exception:  # noqa: BLE001  (report it, and let QGIS quit: nobody is there to close it)
        import traceback

        from qgis.core import QgsApplication

        Path(os.environ["THALWEG_SHOT"]).with_suffix(".error.txt").write_text(traceback.format_exc())
        QgsApplication.instance().exit(1)
elif __name__ == "__main__":
    sys.exit(main())
