"""The hydrograph dock: discharge of the reaches picked on the map (matplotlib in Qt), observed discharge and
NSE/KGE/bias at gauges, several reaches overlaid, export as PNG and CSV.

Hydrographs come from the backend's ``/jobs/{id}/hydrograph`` in a :class:`HydrographTask` (the request runs
in a worker thread; the plot is drawn on the main thread, in ``finished``).
"""
from __future__ import annotations

import csv
import math
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from qgis.core import QgsApplication, QgsTask
from qgis.gui import QgsDockWidget
from qgis.PyQt.QtWidgets import (QFileDialog, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QVBoxLayout,
                                 QWidget)

__all__ = ["HydrographDock", "HydrographTask", "series_label", "UNITS"]

UNITS = "m³/s"
MAX_SERIES = 8  # overlaid reaches; the oldest goes first


def _metric(metrics: dict[str, Any] | None, key: str) -> float | None:
    value = (metrics or {}).get(key)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def series_label(data: dict[str, Any]) -> str:
    """``Reach 101 · gauge V3524010 · NSE 0.71 · KGE 0.65 · PBIAS +3.2 %`` (metrics where a gauge has data)."""
    parts = [f"Reach {data['reach_id']}"]
    if data.get("gauge_id"):
        parts.append(f"gauge {data['gauge_id']}")
    nse, kge, bias = (_metric(data.get("metrics"), k) for k in ("nse", "kge", "pbias"))
    if nse is not None:
        parts.append(f"NSE {nse:.2f}")
    if kge is not None:
        parts.append(f"KGE {kge:.2f}")
    if bias is not None:
        # hydroeval's sign, as the backend: + means the simulation is too low
        parts.append(f"PBIAS {bias:+.1f} %" if abs(bias) >= 0.05 else "PBIAS 0.0 %")
    return " · ".join(parts)


class HydrographTask(QgsTask):
    """Fetch one reach's hydrograph; ``on_finished(data, error_message)`` on the main thread."""

    def __init__(self, client, job_id: str, reach_id: int,
                 on_finished: Callable[[dict[str, Any] | None, str | None], Any]) -> None:
        super().__init__(f"Thalweg: hydrograph of reach {reach_id}", QgsTask.CanCancel)
        self.client, self.job_id, self.reach_id, self.on_finished = client, job_id, int(reach_id), on_finished
        self.data: dict[str, Any] | None = None
        self.error: str | None = None
        self.status_code: int | None = None

    def run(self) -> bool:
        try:
            self.data = self.client.hydrograph(self.job_id, self.reach_id, timeout=120)
            return True
        except Exception as exc:  # noqa: BLE001  (raising in run() crashes QGIS; reported in finished)
            self.status_code = getattr(exc, "status", None)
            message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            self.error = f"no hydrograph for reach {self.reach_id}: {message}"
            return False

    def finished(self, result: bool) -> None:
        self.on_finished(self.data if result else None, None if result else (self.error or "cancelled"))


class HydrographDock(QgsDockWidget):
    """The dock. :meth:`add` plots a ``/hydrograph`` answer; :meth:`fetch` gets one from the backend."""

    def __init__(self, parent=None) -> None:
        super().__init__("Thalweg hydrographs", parent)
        self.setObjectName("ThalwegHydrographDock")
        from matplotlib.backends.backend_qt5agg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.series: OrderedDict[tuple[str, int], dict[str, Any]] = OrderedDict()
        self.tasks: set[QgsTask] = set()  # referenced until finished (QGIS does not keep Python tasks alive)
        self._unloaded = False
        self.figure = Figure(figsize=(7, 3.2), dpi=100, tight_layout=True)
        self.axes = self.figure.add_subplot(1, 1, 1)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.status = QLabel("Pick a reach on the map with the Thalweg hydrograph tool.")
        self.status.setWordWrap(True)
        self.clear_button = QPushButton("Clear")
        self.png_button = QPushButton("Export PNG…")
        self.csv_button = QPushButton("Export CSV…")
        self.clear_button.clicked.connect(self.clear)
        self.png_button.clicked.connect(self._ask_png)
        self.csv_button.clicked.connect(self._ask_csv)
        buttons = QHBoxLayout()
        buttons.addWidget(self.status, 1)
        for b in (self.clear_button, self.png_button, self.csv_button):
            buttons.addWidget(b)
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.canvas, 1)
        layout.addLayout(buttons)
        self.setWidget(body)
        self._draw()

    # ---- data ----
    def fetch(self, client, job_id: str, reach_id: int,
              fallback: Callable[[str], Any] | None = None) -> HydrographTask:
        """Fetch and add the hydrograph of ``reach_id`` of job ``job_id`` (in a task); the task.

        ``fallback(reason)`` is called instead of showing the error when the backend does not know the job.
        """
        self.status.setText(f"Loading reach {reach_id}…")

        def done(data, error):
            if self._unloaded:  # the dock went away while the request ran
                return
            if data is not None:
                self.add(data)
            elif fallback is not None and (task.status_code is None or (task.status_code == 404
                                                                         and "no job" in (error or ""))):
                fallback(f"the backend has no job {job_id}" if task.status_code else "the backend did not answer")
            else:
                self.status.setText(error)

        task = HydrographTask(client, job_id, reach_id, done)
        self.tasks.add(task)
        task.taskCompleted.connect(lambda: self.tasks.discard(task))
        task.taskTerminated.connect(lambda: self.tasks.discard(task))
        QgsApplication.taskManager().addTask(task)
        return task

    def add(self, data: dict[str, Any]) -> None:
        """Overlay a hydrograph (the service's ``/hydrograph`` answer: time, simulated, observed, metrics)."""
        key = (str(data.get("job_id")), int(data["reach_id"]))
        self.series.pop(key, None)
        self.series[key] = data
        while len(self.series) > MAX_SERIES:
            self.series.popitem(last=False)
        self.status.setText(series_label(data))
        self._draw()

    def clear(self) -> None:
        self.series.clear()
        self.status.setText("Pick a reach on the map with the Thalweg hydrograph tool.")
        self._draw()

    # ---- drawing ----
    def _draw(self) -> None:
        import matplotlib.dates as mdates

        ax = self.axes
        ax.clear()
        colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"]
        for i, data in enumerate(self.series.values()):
            t = np.array(data["time"], dtype="datetime64[s]")
            sim = np.array(data["simulated"], dtype=np.float64)  # JSON null -> NaN
            colour = colours[i % len(colours)]
            ax.plot(t, sim, color=colour, linewidth=1.3, label=series_label(data))
            if data.get("observed") is not None:
                obs = np.array(data["observed"], dtype=np.float64)
                # one reach: observations in black, as hydrologists draw them; several: each in its reach's colour
                single = len(self.series) == 1
                ax.plot(t, obs, color="black" if single else colour, linewidth=1.0, linestyle="-" if single else "--",
                        alpha=0.9, label=f"observed at {data.get('gauge_id') or 'gauge'}")
        ax.set_ylabel(f"Discharge [{UNITS}]")
        ax.set_xlabel("Time (UTC, end of step)")
        ax.grid(True, color="#dddddd", linewidth=0.6)
        locator = mdates.AutoDateLocator(minticks=4, maxticks=9)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        if self.series:
            ax.set_ylim(bottom=0)
            ax.legend(loc="upper right", fontsize=8, frameon=True, framealpha=0.85)
        else:
            ax.text(0.5, 0.5, "No hydrograph yet", ha="center", va="center", transform=ax.transAxes,
                    color="#888888")
        self.canvas.draw_idle()

    # ---- export ----
    def export_png(self, path: str | Path, dpi: int = 150) -> Path:
        self.figure.savefig(str(path), dpi=dpi)
        return Path(path)

    def export_csv(self, path: str | Path) -> Path:
        """One ``time`` column (ISO 8601, end of each step, UTC) and a column per series, m3/s."""
        if not self.series:
            raise ValueError("no hydrograph to export")
        series = list(self.series.values())
        times = series[0]["time"]
        columns: list[tuple[str, list]] = []
        for data in series:
            if data["time"] != times:
                raise ValueError("the hydrographs come from runs with different time steps; export them one by one")
            columns.append((f"reach_{data['reach_id']}_simulated_m3s", data["simulated"]))
            if data.get("observed") is not None:
                columns.append((f"gauge_{data.get('gauge_id')}_observed_m3s", data["observed"]))
        tmp = Path(str(path) + ".part")
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["time", *[name for name, _ in columns]])
            for i, t in enumerate(times):
                writer.writerow([t, *["" if col[i] is None else repr(float(col[i])) for _, col in columns]])
        tmp.replace(path)
        return Path(path)

    def _ask_png(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export hydrographs as PNG", "hydrographs.png", "PNG (*.png)")
        if path:
            self.export_png(path)

    def _ask_csv(self) -> None:
        if not self.series:
            self.status.setText("Nothing to export: pick a reach first.")
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export hydrographs as CSV", "hydrographs.csv", "CSV (*.csv)")
        if path:
            try:
                self.export_csv(path)
            except ValueError as exc:
                self.status.setText(str(exc))

    def unload(self) -> None:
        """Cancel pending fetches and let go of the figure (the plugin's unload)."""
        self._unloaded = True
        for task in list(self.tasks):
            task.cancel()
        self.tasks.clear()
        self.series.clear()
        self.figure.clear()
