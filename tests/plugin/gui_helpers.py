"""Helpers of the plugin GUI tests (results layer, hydrograph, panel): a routed sample job and an oracle that
reads the backend's NetCDF with the backend's own Python (xarray), independent of the plugin's readers."""
from __future__ import annotations

import json
import subprocess

OUTLET = 101  # LINKNO of the reach ending at the outlet gauge V3524010 (resources/sample/README.md)
GAUGE_REACHES = {"V3524010": 101, "V3515010": 37, "V3517010": 19}
QGIS_PROCESS = "/usr/bin/qgis_process.bin"  # /usr/bin/qgis_process passes --noversioncheck, which 3.22 rejects


def route_body(sample, **extra):
    """The route job of the sample basin, with its gauges and observations."""
    return {"kind": "route", "network": str(sample["rivers"]), "layer": "rivers", "runoff": str(sample["runoff"]),
            "gauges": str(sample["gauges"]), "observed": str(sample["observed"]), "label": "Cance", **extra}


def run_route(backend, sample, **extra):
    """Run the sample's route job to its end (blocking, in the test's thread); the succeeded record."""
    from thalweg.service.tasks import run_job

    record = run_job(backend, route_body(sample, **extra), is_canceled=lambda: False)
    assert record["state"] == "succeeded", record
    return record


_ORACLE = """
import json, sys
import numpy as np, xarray as xr
ds = xr.open_dataset(sys.argv[1])
ids = ds["riverId"].values.astype("int64")
out = {"ids": ids.tolist(), "time": [str(t)[:19] for t in ds["time"].values]}
steps = json.loads(sys.argv[2]); reaches = json.loads(sys.argv[3])
q = ds["Q"].values.astype("float64")
out["steps"] = {str(s): q[:, s].tolist() for s in steps}
out["reaches"] = {str(r): q[list(ids).index(r)].tolist() for r in reaches}
print(json.dumps(out))
"""


def netcdf_oracle(backend_settings, path, steps=(), reaches=()):
    """The backend's NetCDF read by the backend's Python (xarray): ids, times (step ends), some columns (steps)
    and rows (reaches), m3/s."""
    from thalweg.service.process import clean_environment

    proc = subprocess.run([backend_settings.backend_python, "-c", _ORACLE, str(path), json.dumps(list(steps)),
                           json.dumps(list(reaches))], capture_output=True, text=True,
                          env=clean_environment(backend_settings), timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


class WindowIface:
    """The part of QGIS's ``iface`` the plugin uses, over real widgets (a main window, a map canvas, a
    message bar, a toolbar and a plugin menu): QgisApp itself cannot be built from Python."""

    def __init__(self) -> None:
        from qgis.gui import QgsMapCanvas, QgsMessageBar
        from qgis.PyQt.QtWidgets import QMainWindow, QMenu, QToolBar, QVBoxLayout, QWidget

        self.window = QMainWindow()
        self.canvas = QgsMapCanvas()
        self.bar = QgsMessageBar()
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.addWidget(self.bar)
        layout.addWidget(self.canvas, 1)
        self.window.setCentralWidget(central)
        self.toolbar = QToolBar("Plugins")
        self.window.addToolBar(self.toolbar)
        self.menus: dict[str, QMenu] = {}
        self.window.resize(1400, 900)
        self.active_layer = None  # what the Layers panel has selected

    def activeLayer(self):  # noqa: N802
        return self.active_layer

    def mainWindow(self):  # noqa: N802  (iface's names)
        return self.window

    def mapCanvas(self):  # noqa: N802
        return self.canvas

    def messageBar(self):  # noqa: N802
        return self.bar

    def addDockWidget(self, area, dock):  # noqa: N802
        self.window.addDockWidget(area, dock)

    def removeDockWidget(self, dock):  # noqa: N802
        self.window.removeDockWidget(dock)

    def addToolBarIcon(self, action):  # noqa: N802
        self.toolbar.addAction(action)

    def removeToolBarIcon(self, action):  # noqa: N802
        self.toolbar.removeAction(action)

    def addPluginToMenu(self, name, action):  # noqa: N802
        from qgis.PyQt.QtWidgets import QMenu

        self.menus.setdefault(name, QMenu(name, self.window)).addAction(action)

    def removePluginMenu(self, name, action):  # noqa: N802
        menu = self.menus.get(name)
        if menu is not None:
            menu.removeAction(action)
            if not menu.actions():
                del self.menus[name]
