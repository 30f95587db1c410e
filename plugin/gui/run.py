"""What the panel's buttons do: build a job from the panel's choices, run it as a QgsTask, show its progress,
load the result layer, show errors (with 'Select these reaches'), remember the choices in the project.

Every slot here runs on the main thread; the only work done in a worker thread is the job body built by
:meth:`PanelController._body_builder` (layer reading through a thread-safe feature source) and the job loop
of :class:`..service.tasks.JobTask`.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

from qgis.core import Qgis, QgsMessageLog, QgsProject, QgsVectorLayer
from qgis.PyQt.QtCore import QObject, QTimer

from ..errors import LEVEL_INFO, PluginError
from ..layers import extract, results
from ..params import parse_params
from ..service import process, tasks
from ..settings import PROJECT_SCOPE, Settings

__all__ = ["PanelController", "parse_params", "CHOICE_KEYS"]

CHOICE_KEYS = ("layer", "selected_only", "runoff", "catchments", "gauges", "observed", "scheme", "param_source",
               "param_values", "engine", "device", "iterations")


class PanelController(QObject):
    """Drives a :class:`.dock.ThalwegDock` (and a :class:`.hydrograph.HydrographDock`).

    ``iface`` may be None (tests): results then go to the project only and messages to the panel.
    """

    def __init__(self, panel, *, iface=None, hydrograph=None, settings=None) -> None:
        super().__init__(panel)
        self.panel, self.iface, self.hydrograph, self.settings = panel, iface, hydrograph, settings
        self.task = None  # the running JobTask, then the LoadResultsTask of its result
        self.backend_task = None
        self.last_error: PluginError | None = None
        self.last_layer: QgsVectorLayer | None = None
        self._error_layer_id: str | None = None
        self._restoring = False
        self._unloaded = False
        self._connections: list[tuple[Any, Any]] = []
        for signal, slot in ((panel.runRequested, self.run), (panel.calibrateRequested, self.calibrate),
                             (panel.cancelRequested, self.cancel), (panel.selectRequested, self.select_error_reaches),
                             (panel.restartRequested, self.restart_backend), (panel.choicesChanged, self.save_choices),
                             (panel.backendSettingsSaved, self.save_backend_settings)):
            signal.connect(slot)
            self._connections.append((signal, slot))
        self.show_backend_settings()

    # ---- backend ----
    def start_backend(self) -> None:
        """Start (or reach) the backend in a task; the panel shows the device or the fix."""
        if self.backend_task is not None:
            return
        self.panel.set_device("Backend: starting…", False)

        def done(backend, error):
            self.backend_task = None
            if self._unloaded:  # the plugin was unloaded while the backend started
                return
            if error is not None:
                self.panel.set_device(f"Backend unavailable: {error.message}", False)
                return
            self._show_backend(backend)

        self.backend_task = tasks.start(tasks.StartBackendTask(self.settings, on_finished=done))

    def _show_backend(self, backend, schemes: bool = True) -> None:
        version = backend.health.get("version", "")
        self.panel.set_device(f"Backend {version}: {backend.device_label}", True)
        if not schemes:
            return
        try:
            self.panel.set_schemes(backend.client.schemes())
        except Exception as exc:  # noqa: BLE001  (the default scheme list stays)
            QgsMessageLog.logMessage(f"cannot list the backend's schemes: {exc}", "Thalweg", Qgis.Warning)

    def _settings(self) -> Settings:
        return self.settings if self.settings is not None else Settings.load()

    def show_backend_settings(self) -> None:
        s = self._settings()
        self.panel.set_backend_values({"backend_python": s.backend_python, "pythonpath": s.pythonpath,
                                       "backend_url": s.backend_url})

    def save_backend_settings(self) -> None:
        """The panel's backend settings into QgsSettings (or the settings given to the controller), then restart."""
        settings = dataclasses.replace(self._settings(), **self.panel.backend_values())
        if self.settings is not None:
            self.settings = settings
        else:
            settings.save()
        self.restart_backend()

    def restart_backend(self) -> None:
        if self.task is not None:
            self.panel.show_error("A job is running: cancel it before restarting the backend.")
            return
        process.stop_shared()
        self.start_backend()

    # ---- choices per project ----
    def save_choices(self) -> None:
        """Write the panel's choices into the project (not while a project is being read: its layers
        arriving in the combo boxes must not overwrite the choices it holds)."""
        if self._restoring:
            return
        project = QgsProject.instance()
        project.writeEntry(PROJECT_SCOPE, "panel/choices", json.dumps(self.panel.choices()))

    def project_cleared(self) -> None:
        """A project is being closed or read: hold saving until the event loop runs again."""
        self._restoring = True
        QTimer.singleShot(0, self._restored)

    def _restored(self) -> None:
        self._restoring = False

    def load_choices(self) -> None:
        raw, ok = QgsProject.instance().readEntry(PROJECT_SCOPE, "panel/choices", "")
        if ok and raw:
            restoring, self._restoring = self._restoring, True
            try:
                self.panel.set_choices(json.loads(raw))
            except ValueError:
                pass
            finally:
                self._restoring = restoring

    # ---- run ----
    def run(self) -> None:
        self._start("calibrate" if self.panel.choices()["param_source"] == "calibrated" else "route")

    def calibrate(self) -> None:
        self._start("calibrate")

    def _layer(self, layer_id: str) -> QgsVectorLayer | None:
        layer = QgsProject.instance().mapLayer(layer_id) if layer_id else None
        return layer if isinstance(layer, QgsVectorLayer) else None

    def _options(self, kind: str, c: dict[str, Any]) -> dict[str, Any]:
        """The job body's keys other than the network (main thread: layer paths are read here)."""
        if not c["runoff"]:
            raise PluginError("no runoff file: choose one in the Thalweg panel (Runoff file).")
        body: dict[str, Any] = {"kind": kind, "runoff": c["runoff"], "scheme": c["scheme"], "engine": c["engine"],
                                "device": c["device"]}
        if c["param_source"] in ("constant", "field"):
            body["params"] = parse_params(c["param_values"], "the panel's parameter values")
            if not body["params"]:
                raise PluginError("no parameter values: write them in the panel's 'Values / fields' (e.g. "
                                  "k=36000, x=0.2), or choose the GEOGloWS prior.")
        if c["catchments"]:
            layer = self._layer(c["catchments"])
            ref = extract.file_reference(layer) if layer is not None else None
            if ref is None:
                raise PluginError("the catchment layer is not a file; save it as a GeoPackage and choose that "
                                  "(Catchments).")
            body["catchments"] = ref[0]
        if c["gauges"]:
            body["gauges"] = c["gauges"]
        if c["observed"]:
            if not c["gauges"]:
                raise PluginError("observed discharge needs the gauges file too (Gauges).")
            body["observed"] = c["observed"]
        if kind == "calibrate":
            if not (c["gauges"] and c["observed"]):
                raise PluginError("calibration needs gauges and observed discharge: choose both files in the panel.")
            body["iterations"] = int(c.get("iterations") or 200)
        return body

    def _start(self, kind: str) -> None:
        if self.task is not None:
            self.panel.show_error("A job is already running; cancel it or wait.")
            return
        c = self.panel.choices()
        self.save_choices()
        layer = self._layer(c["layer"])
        try:
            if layer is None:
                raise PluginError("no hydrography layer: add a river line layer to the project and choose it "
                                  "(Hydrography layer).")
            options = self._options(kind, c)
            options["label"] = layer.name()
            source = extract.network_source(layer, selected_only=c["selected_only"])
        except PluginError as exc:
            self._show_error(exc, layer)
            return
        self.source = source
        self._error_layer_id = layer.id()
        verb = "calibrating" if kind == "calibrate" else "routing"
        task = tasks.JobTask(f"Thalweg: {verb} {layer.name()}", self._body_builder(source, options),
                             on_finished=self._finished, settings=self.settings, layer=layer.id())
        task.recordChanged.connect(self._record)
        self.task = task
        self.panel.set_running(True)
        self.panel.set_progress(0.0, f"{verb.capitalize()} {source.describe()}…")
        tasks.start(task)

    @staticmethod
    def _body_builder(source, options: dict[str, Any]):
        def build() -> dict[str, Any]:  # worker thread: reads features through a thread-safe source
            backend = process.shared()
            return {**source.job_fields(backend.client), **options}

        return build

    def _record(self, record: dict[str, Any]) -> None:
        if self._unloaded:
            return
        progress = record.get("progress") or {}
        self.panel.set_progress(float(progress.get("fraction") or 0.0), str(progress.get("message") or ""))

    def cancel(self) -> None:
        if self.task is not None and isinstance(self.task, tasks.JobTask):
            self.panel.show_message("Cancelling…")
            self.task.cancel()

    def _finished(self, record: dict[str, Any] | None, error: PluginError | None) -> None:
        self.task = None
        if self._unloaded:
            return
        self.panel.set_running(False)
        if error is not None:
            if error.level == LEVEL_INFO:
                self.panel.set_progress(0.0, "Cancelled.")
                return
            self._show_error(error, self._layer(self._error_layer_id or ""))
            return
        backend = process.current()
        if backend is not None:
            self._show_backend(backend, schemes=False)  # the job may have started it
        res = record.get("result") or {}
        self.panel.set_running(True)  # until the layer is in the map
        self.panel.set_progress(0.99, "Loading the result layer…")

        def loaded(layer, error):
            self.task = None
            if self._unloaded:
                return
            self.panel.set_running(False)
            if error is not None:
                self._show_error(error, None)
                return
            self.last_layer = layer
            canvas = self.iface.mapCanvas() if self.iface is not None else None
            results.configure_navigation(canvas.temporalController() if canvas is not None else None, layer)
            self.panel.set_progress(1.0, f"Routed {res.get('reaches', 0):,} reaches × {res.get('steps', 0):,} "
                                         f"steps: layer '{layer.name()}' (animate it with the temporal "
                                         f"controller).")
            if self.iface is not None:
                self.iface.messageBar().pushMessage("Thalweg", f"Result layer '{layer.name()}' added.",
                                                    Qgis.Success, 5)

        # copying the files and reading the columns run in a task: the main thread only builds the layer
        self.task = tasks.start(results.LoadResultsTask(record, loaded,
                                                        client=backend.client if backend is not None else None))

    # ---- errors ----
    def _show_error(self, error: PluginError, layer: QgsVectorLayer | None) -> None:
        self.last_error = error
        self.panel.show_error(error.message, can_select=bool(error.ids) and layer is not None)
        if error.details:
            QgsMessageLog.logMessage(f"{error.message}\n{error.details}", "Thalweg", Qgis.Warning)
        if self.iface is not None and error.level > LEVEL_INFO:
            self.iface.messageBar().pushMessage("Thalweg", error.message, Qgis.Warning, 10)

    def select_error_reaches(self) -> int:
        """Select the reaches the last error names (a cycle, duplicate ids, ...) on its layer; how many."""
        error, layer = self.last_error, self._layer(self._error_layer_id or "")
        if error is None or not error.ids or layer is None:
            return 0
        id_field = getattr(getattr(self, "source", None), "id_field", None)
        if not id_field:
            backend = process.current()
            try:
                id_field = extract.detect_fields(backend.client, layer)["fields"]["id"] if backend else None
            except Exception as exc:  # noqa: BLE001
                self.panel.show_error(f"cannot tell the reach id field of '{layer.name()}': {exc}")
                return 0
        if not id_field:
            return 0
        count = extract.select_reaches(layer, error.ids, id_field)
        if self.iface is not None:
            self.iface.mapCanvas().zoomToSelected(layer)
        return count

    def unload(self) -> None:
        self._unloaded = True
        for signal, slot in self._connections:
            try:
                signal.disconnect(slot)
            except (TypeError, RuntimeError):
                pass
        self._connections.clear()
        if self.task is not None:
            self.task.cancel()
