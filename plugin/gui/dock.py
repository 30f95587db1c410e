"""The Thalweg panel: widgets and their values, nothing else (the run logic is :mod:`.run`).

``choices()`` gives the user's choices as a plain dict, ``set_choices()`` puts them back (per project);
the buttons emit ``runRequested``, ``calibrateRequested``, ``cancelRequested``, ``selectRequested``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import QgsMapLayerProxyModel, QgsProject
from qgis.gui import QgsCollapsibleGroupBox, QgsDockWidget, QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit,
                                 QProgressBar, QPushButton, QScrollArea, QSpinBox, QVBoxLayout, QWidget)

__all__ = ["ThalwegDock", "PARAMETER_SOURCES", "ENGINES", "DEVICES", "DEFAULT_SCHEMES", "help_url", "PLANNING_ACTIONS"]

PARAMETER_SOURCES = (("prior", "GEOGloWS prior (k from length and area, x = 0.25)"),
                     ("constant", "Constant values"),
                     ("field", "Fields of the layer"),
                     ("calibrated", "Calibrated at the gauges (Calibrate)"))
ENGINES = ("auto", "exact", "closure", "fft")
DEVICES = ("auto", "cpu", "cuda")
DEFAULT_SCHEMES = ("muskingum_nonneg", "muskingum", "muskingum_substep", "linear_storage", "nash_cascade", "pure_lag",
                   "hayami")
HELP_URL = "https://github.com/thalweg/thalweg/blob/main/docs/qgis.md"
# the planners' buttons: Processing algorithm -> (button, tooltip); each opens the algorithm's dialog filled in
PLANNING_ACTIONS = {
    "stats": ("Flood frequency…", "Return-period flows, flow-duration quantiles and low flows per reach of the "
                                  "result's discharge (thalweg:stats)"),
    "compare": ("Compare scenarios…", "The change of a statistic between two runs, on a diverging map "
                                      "(thalweg:compare)"),
    "exceedance": ("Exceedance…", "Where and when discharge exceeds a threshold (thalweg:exceedance)"),
    "report": ("Report (PDF)…", "A printable report of the active Thalweg layer: map, legend, scale bar, "
                                "hydrographs and metrics at the gauges (thalweg:report)"),
}


def help_url() -> str:
    """The user guide: docs/qgis.md of a development checkout when there is one, else the online copy."""
    local = Path(__file__).resolve().parents[2] / "docs" / "qgis.md"
    return local.as_uri() if local.exists() else HELP_URL


def _file_widget(filter_: str, placeholder: str) -> QgsFileWidget:
    w = QgsFileWidget()
    w.setFilter(filter_)
    w.setStorageMode(QgsFileWidget.GetFile)
    w.lineEdit().setPlaceholderText(placeholder)
    return w


class ThalwegDock(QgsDockWidget):
    """The panel."""

    runRequested = pyqtSignal()
    calibrateRequested = pyqtSignal()
    cancelRequested = pyqtSignal()
    selectRequested = pyqtSignal()
    restartRequested = pyqtSignal()
    backendSettingsSaved = pyqtSignal()
    hydrographToolRequested = pyqtSignal()
    planningRequested = pyqtSignal(str)  # a key of PLANNING_ACTIONS
    choicesChanged = pyqtSignal()

    def __init__(self, parent=None) -> None:
        super().__init__("Thalweg", parent)
        self.setObjectName("ThalwegDock")
        self.setMinimumWidth(360)
        body = QWidget()
        outer = QVBoxLayout(body)
        outer.setContentsMargins(6, 6, 6, 6)

        # ---- backend ----
        self.device_label = QLabel("Backend: not started")
        self.device_label.setWordWrap(True)
        self.device_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.restart_button = QPushButton("Start backend")
        self.restart_button.clicked.connect(self.restartRequested)
        row = QHBoxLayout()
        row.addWidget(self.device_label, 1)
        row.addWidget(self.restart_button)
        outer.addLayout(row)
        self.backend_group = QgsCollapsibleGroupBox("Backend settings")
        self.backend_group.setCollapsed(True)
        form = QFormLayout(self.backend_group)
        self.backend_python = QgsFileWidget()
        self.backend_python.setStorageMode(QgsFileWidget.GetFile)
        self.backend_python.lineEdit().setPlaceholderText("<Thalweg checkout>/.venv/bin/python")
        self.backend_python.setToolTip("The Python of the Thalweg backend (bash scripts/setup.sh makes .venv)")
        form.addRow("Backend Python", self.backend_python)
        self.backend_pythonpath = QLineEdit()
        self.backend_pythonpath.setPlaceholderText("development checkouts only: <checkout>/backend")
        form.addRow("PYTHONPATH", self.backend_pythonpath)
        self.backend_url = QLineEdit()
        self.backend_url.setPlaceholderText("empty: the plugin starts the backend; or http://127.0.0.1:PORT")
        form.addRow("Backend URL", self.backend_url)
        self.backend_save = QPushButton("Save and restart")
        self.backend_save.clicked.connect(self.backendSettingsSaved)
        form.addRow("", self.backend_save)
        outer.addWidget(self.backend_group)

        # ---- inputs ----
        inputs = QGroupBox("Inputs")
        form = QFormLayout(inputs)
        self.layer_combo = QgsMapLayerComboBox()
        self.layer_combo.setFilters(QgsMapLayerProxyModel.LineLayer)
        self.layer_combo.setToolTip("The river lines: any line layer QGIS can open (GEOGloWS, HydroRIVERS, MERIT, "
                                    "NHDPlus, plain lines, ...). The backend detects its fields.")
        form.addRow("Hydrography layer", self.layer_combo)
        self.selected_only = QCheckBox("Selected features only")
        form.addRow("", self.selected_only)
        self.runoff_file = _file_widget("Runoff (*.nc *.csv *.parquet);;All files (*)",
                                        "m3_riv / catchment_runoff NetCDF, or a table")
        form.addRow("Runoff file", self.runoff_file)
        self.catchment_combo = QgsMapLayerComboBox()
        self.catchment_combo.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.catchment_combo.setAllowEmptyLayer(True)
        self.catchment_combo.setLayer(None)
        self.catchment_combo.setToolTip("Only for gridded runoff: the catchment polygon of each reach "
                                        "(id field = reach id)")
        form.addRow("Catchments", self.catchment_combo)
        self.gauges_file = _file_widget("Gauges (*.csv);;All files (*)", "optional: gauge_id, reach id")
        form.addRow("Gauges", self.gauges_file)
        self.observed_file = _file_widget("Observed discharge (*.csv);;All files (*)",
                                          "optional: time + one column per gauge, m³/s")
        form.addRow("Observed discharge", self.observed_file)
        outer.addWidget(inputs)

        # ---- routing ----
        routing = QGroupBox("Routing")
        form = QFormLayout(routing)
        self.scheme_combo = QComboBox()
        self.set_schemes([{"name": n} for n in DEFAULT_SCHEMES])
        form.addRow("Scheme", self.scheme_combo)
        self.param_source = QComboBox()
        for key, text in PARAMETER_SOURCES:
            self.param_source.addItem(text, key)
        form.addRow("Parameters", self.param_source)
        self.param_values = QLineEdit()
        self.param_values.setPlaceholderText("k=36000, x=0.2   (SI units; or field names: k=K_FIELD)")
        form.addRow("Values / fields", self.param_values)
        self.engine_combo = QComboBox()
        self.engine_combo.addItems(ENGINES)
        form.addRow("Engine", self.engine_combo)
        self.device_combo = QComboBox()
        self.device_combo.addItems(DEVICES)
        form.addRow("Device", self.device_combo)
        self.iterations = QSpinBox()
        self.iterations.setRange(1, 100_000)
        self.iterations.setValue(200)
        self.iterations.setToolTip("Most gradient steps of a calibration (fewer when the fit stops improving)")
        form.addRow("Calibration steps", self.iterations)
        outer.addWidget(routing)
        self.param_source.currentIndexChanged.connect(self._param_source_changed)
        self._param_source_changed()

        # ---- run ----
        buttons = QHBoxLayout()
        self.run_button = QPushButton("Run")
        self.calibrate_button = QPushButton("Calibrate")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.run_button.clicked.connect(self.runRequested)
        self.calibrate_button.clicked.connect(self.calibrateRequested)
        self.cancel_button.clicked.connect(self.cancelRequested)
        for b in (self.run_button, self.calibrate_button, self.cancel_button):
            buttons.addWidget(b)
        outer.addLayout(buttons)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        outer.addWidget(self.progress)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextSelectableByMouse)
        outer.addWidget(self.message)
        self.select_button = QPushButton("Select these reaches")
        self.select_button.setVisible(False)
        self.select_button.clicked.connect(self.selectRequested)
        outer.addWidget(self.select_button)
        self.hydrograph_button = QPushButton("Hydrograph of a reach…")
        self.hydrograph_button.setToolTip("Pick a reach of a result layer on the map to plot its discharge")
        self.hydrograph_button.clicked.connect(self.hydrographToolRequested)
        outer.addWidget(self.hydrograph_button)
        # ---- planning ----
        self.planning_group = QgsCollapsibleGroupBox("Planning: flood frequency, scenarios, report")
        self.planning_group.setCollapsed(True)
        column = QVBoxLayout(self.planning_group)
        self.planning_buttons: dict[str, QPushButton] = {}
        for key, (text, tip) in PLANNING_ACTIONS.items():
            button = QPushButton(text)
            button.setToolTip(tip)
            button.clicked.connect(lambda _checked=False, key=key: self.planningRequested.emit(key))
            column.addWidget(button)
            self.planning_buttons[key] = button
        outer.addWidget(self.planning_group)
        self.help_label = QLabel(f'<a href="{help_url()}">User guide: the Thalweg panel, first run, Processing</a>')
        self.help_label.setOpenExternalLinks(True)
        outer.addWidget(self.help_label)
        outer.addStretch(1)

        for combo in (self.layer_combo, self.catchment_combo, self.scheme_combo, self.param_source,
                      self.engine_combo, self.device_combo):
            # long layer names and choices must not widen the dock past the window
            combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(12)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setWidget(body)
        self.setWidget(scroll)
        for signal in (self.layer_combo.layerChanged, self.catchment_combo.layerChanged,
                       self.runoff_file.fileChanged, self.gauges_file.fileChanged, self.observed_file.fileChanged,
                       self.scheme_combo.currentIndexChanged, self.param_source.currentIndexChanged,
                       self.param_values.editingFinished, self.engine_combo.currentIndexChanged,
                       self.device_combo.currentIndexChanged, self.selected_only.toggled,
                       self.iterations.valueChanged):
            signal.connect(self.choicesChanged)

    # ---- values ----
    def _param_source_changed(self) -> None:
        self.param_values.setEnabled(self.param_source.currentData() in ("constant", "field"))

    def set_schemes(self, schemes: list[dict[str, Any]]) -> None:
        """Fill the scheme list (from the backend's /schemes), keeping the current choice."""
        current = self.scheme_combo.currentText()
        self.scheme_combo.blockSignals(True)
        self.scheme_combo.clear()
        for s in schemes:
            self.scheme_combo.addItem(s["name"])
            if s.get("description"):
                self.scheme_combo.setItemData(self.scheme_combo.count() - 1, s["description"], Qt.ToolTipRole)
        index = self.scheme_combo.findText(current or "muskingum_nonneg")
        self.scheme_combo.setCurrentIndex(max(index, 0))
        self.scheme_combo.blockSignals(False)

    def choices(self) -> dict[str, Any]:
        """The panel's values: layer ids, file paths, scheme, parameter source and values, engine, device."""
        layer = self.layer_combo.currentLayer()
        catchments = self.catchment_combo.currentLayer()
        return {"layer": layer.id() if layer is not None else "", "selected_only": self.selected_only.isChecked(),
                "runoff": self.runoff_file.filePath(), "catchments": catchments.id() if catchments else "",
                "gauges": self.gauges_file.filePath(), "observed": self.observed_file.filePath(),
                "scheme": self.scheme_combo.currentText(), "param_source": self.param_source.currentData(),
                "param_values": self.param_values.text(), "engine": self.engine_combo.currentText(),
                "device": self.device_combo.currentText(), "iterations": self.iterations.value()}

    def set_choices(self, values: dict[str, Any]) -> None:
        """Put saved values back (unknown layers and empty values leave the widget as it is)."""
        project = QgsProject.instance()
        if values.get("layer") and project.mapLayer(values["layer"]) is not None:
            self.layer_combo.setLayer(project.mapLayer(values["layer"]))
        if values.get("catchments") and project.mapLayer(values["catchments"]) is not None:
            self.catchment_combo.setLayer(project.mapLayer(values["catchments"]))
        for key, widget in (("runoff", self.runoff_file), ("gauges", self.gauges_file),
                            ("observed", self.observed_file)):
            if key in values:
                widget.setFilePath(values[key] or "")
        if "selected_only" in values:
            self.selected_only.setChecked(bool(values["selected_only"]))
        for key, combo in (("scheme", self.scheme_combo), ("engine", self.engine_combo),
                           ("device", self.device_combo)):
            if values.get(key) and combo.findText(values[key]) >= 0:
                combo.setCurrentIndex(combo.findText(values[key]))
        if values.get("param_source"):
            index = self.param_source.findData(values["param_source"])
            if index >= 0:
                self.param_source.setCurrentIndex(index)
        if values.get("iterations"):
            self.iterations.setValue(int(values["iterations"]))
        if "param_values" in values:
            self.param_values.setText(values["param_values"] or "")

    # ---- state ----
    def set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.calibrate_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if running:
            self.progress.setValue(0)
            self.show_error(None)

    def set_progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(round(100 * max(0.0, min(1.0, fraction)))))
        self.message.setText(message)

    def show_message(self, text: str) -> None:
        self.message.setText(text)
        self.select_button.setVisible(False)

    def show_error(self, text: str | None, can_select: bool = False) -> None:
        """An error in the panel (one sentence with the fix); ``can_select`` shows 'Select these reaches'."""
        self.message.setText(f'<span style="color:#b00020">{_escape(text)}</span>' if text else "")
        self.select_button.setVisible(bool(text) and can_select)

    def backend_values(self) -> dict[str, str]:
        return {"backend_python": self.backend_python.filePath().strip(),
                "pythonpath": self.backend_pythonpath.text().strip(), "backend_url": self.backend_url.text().strip()}

    def set_backend_values(self, values: dict[str, str]) -> None:
        self.backend_python.setFilePath(values.get("backend_python", ""))
        self.backend_pythonpath.setText(values.get("pythonpath", ""))
        self.backend_url.setText(values.get("backend_url", ""))

    def set_device(self, text: str, ready: bool) -> None:
        self.device_label.setText(text)
        self.restart_button.setText("Restart backend" if ready else "Start backend")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
