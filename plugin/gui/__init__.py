"""What the plugin adds to the QGIS window: the panel, the hydrograph dock, the reach picker, the toolbar
action, the ``thalweg_frame`` expression function and the project signals of result layers.

:class:`Gui` is built by ``ThalwegPlugin.initGui`` and :meth:`Gui.unload` undoes every step (Plugin Reloader).
"""
from __future__ import annotations

from pathlib import Path

from qgis.core import QgsProject, QgsVectorLayer
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

from .. import expressions
from ..layers import results

__all__ = ["Gui", "ICON"]

ICON = Path(__file__).resolve().parents[1] / "resources" / "icons" / "thalweg.svg"
MENU = "&Thalweg"


class Gui:
    """The plugin's GUI parts; ``iface`` may be None (tests build the same parts without a QGIS window)."""

    def __init__(self, iface, settings=None) -> None:
        from .dock import ThalwegDock
        from .hydrograph import HydrographDock
        from .run import PanelController

        self.iface = iface
        expressions.register_function()
        window = iface.mainWindow() if iface is not None else None
        self.panel = ThalwegDock(window)
        self.hydrograph = HydrographDock(window)
        self.controller = PanelController(self.panel, iface=iface, hydrograph=self.hydrograph, settings=settings)
        self.picker = None
        self.actions: list[QAction] = []
        project = QgsProject.instance()
        self._project_signals = [(project.layersAdded, results.restore_layers),
                                 (project.layersWillBeRemoved, results.forget_layers),
                                 (project.cleared, self.controller.project_cleared),
                                 (project.readProject, self._project_read)]
        for signal, slot in self._project_signals:
            signal.connect(slot)
        self.panel.hydrographToolRequested.connect(self.activate_picker)
        self.panel.planningRequested.connect(self.open_planning)
        results.restore_layers(project.mapLayers().values())  # a project opened before the plugin loaded
        self.controller.load_choices()
        if iface is not None:
            from .reach_picker import ReachPicker

            iface.addDockWidget(Qt.RightDockWidgetArea, self.panel)
            iface.addDockWidget(Qt.BottomDockWidgetArea, self.hydrograph)
            self.hydrograph.hide()
            canvas = iface.mapCanvas()
            self.picker = ReachPicker(canvas, lambda: [lyr for lyr in results.result_layers()
                                                       if QgsProject.instance().layerTreeRoot().findLayer(lyr.id())
                                                       and QgsProject.instance().layerTreeRoot().findLayer(
                                                           lyr.id()).isVisible()])
            self.picker.reachPicked.connect(self.show_hydrograph)
            icon = QIcon(str(ICON))
            toggle = self.panel.toggleViewAction()
            toggle.setIcon(icon)
            toggle.setText("Thalweg panel")
            iface.addToolBarIcon(toggle)
            iface.addPluginToMenu(MENU, toggle)
            pick = QAction(icon, "Thalweg hydrograph of a reach", window)
            pick.setCheckable(True)
            pick.triggered.connect(self.activate_picker)
            self.picker.setAction(pick)
            iface.addPluginToMenu(MENU, pick)
            self.actions = [toggle, pick]
        # the backend (torch: seconds and memory) starts when the panel is first shown or a job needs it
        self.panel.visibilityChanged.connect(self._panel_visible)
        if self.panel.isVisible():
            self._panel_visible(True)

    def _panel_visible(self, visible: bool) -> None:
        from ..service import process

        if visible and process.current() is None:
            self.controller.start_backend()
        elif visible and self.controller.backend_task is None:
            self.controller._show_backend(process.current())

    def _project_read(self, *args) -> None:
        self.controller.load_choices()

    def activate_picker(self) -> None:
        if self.picker is not None and self.iface is not None:
            self.iface.mapCanvas().setMapTool(self.picker)
            self.hydrograph.show()

    def show_hydrograph(self, layer, reach_id: int) -> None:
        """The reach's hydrograph from the backend that ran it, or, when that backend does not know the job
        (a project reopened elsewhere, the backend not running), the simulated series saved beside the project."""
        from ..errors import PluginError
        from ..service import process

        self.hydrograph.show()
        job = results.job_of(layer)
        backend = process.current()

        def saved(reason: str | None = None) -> None:
            try:
                self.hydrograph.add(results.saved_hydrograph(layer, reach_id))
                if reason:
                    self.hydrograph.status.setText(f"{self.hydrograph.status.text()} (from the saved results: "
                                                   f"{reason}; observations and metrics need the backend)")
            except PluginError as exc:
                self.hydrograph.status.setText(exc.message)

        if backend is None or job is None:
            saved("the backend is not running")
            return
        self.hydrograph.fetch(backend.client, job, reach_id, fallback=saved)

    def planning_layer(self):
        """The layer the planners' buttons work on: the active layer when it is a Thalweg result (a route result,
        or a stats, change or exceedance layer), else the project's latest route result; None without one."""
        from ..layers.planning import table_of

        active = self.iface.activeLayer() if self.iface is not None else None
        if isinstance(active, QgsVectorLayer) and table_of(active) is not None:
            return active
        layers = results.result_layers()
        return layers[-1] if layers else None

    def planning_parameters(self, key: str) -> dict:
        """The Processing parameters of ``thalweg:<key>`` filled from the panel: its network layer, the gauges
        and observations, the planning layer and its discharge file."""
        choices = self.panel.choices()
        network = self.panel.layer_combo.currentLayer()
        layer = self.planning_layer()
        discharge = results.discharge_of(layer) if layer is not None else None
        params: dict = {}
        if network is not None:
            params["NETWORK"] = network.id()
        if key in ("stats", "exceedance") and discharge:
            params["DISCHARGE"] = discharge
        elif key == "compare" and discharge:
            params["BASELINE"] = discharge
        elif key == "report":
            if layer is not None:
                params["LAYER"] = layer.id()
                params["TITLE"] = QgsProject.instance().title() or f"Thalweg: {layer.name()}"
            if discharge:
                params["DISCHARGE"] = discharge
            if discharge and choices.get("gauges"):
                params["GAUGES"] = choices["gauges"]
                if choices.get("observed"):
                    params["OBSERVED"] = choices["observed"]
        return params

    def open_planning(self, key: str) -> None:
        """Open the dialog of ``thalweg:<key>`` filled in from the panel (the user picks the output and runs)."""
        if self.iface is None:
            return
        import processing

        processing.execAlgorithmDialog(f"thalweg:{key}", self.planning_parameters(key))

    def unload(self) -> None:
        """Undo everything ``__init__`` did, in reverse."""
        self.controller.unload()
        self.panel.hydrographToolRequested.disconnect(self.activate_picker)
        self.panel.planningRequested.disconnect(self.open_planning)
        self.panel.visibilityChanged.disconnect(self._panel_visible)
        for signal, slot in self._project_signals:
            try:
                signal.disconnect(slot)
            except (TypeError, RuntimeError):
                pass
        self._project_signals = []
        if self.iface is not None:
            canvas = self.iface.mapCanvas()
            if self.picker is not None:
                if canvas.mapTool() is self.picker:
                    canvas.unsetMapTool(self.picker)
                self.picker.reachPicked.disconnect(self.show_hydrograph)
                self.picker.unload()
            for action in self.actions:
                self.iface.removePluginMenu(MENU, action)
                self.iface.removeToolBarIcon(action)
            self.iface.removeDockWidget(self.panel)
            self.iface.removeDockWidget(self.hydrograph)
        self.actions = []
        self.picker = None
        self.hydrograph.unload()
        for dock in (self.panel, self.hydrograph):
            dock.close()
            dock.setParent(None)
            dock.deleteLater()
        expressions.unregister_function()
