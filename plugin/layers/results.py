"""Routing results in the map: the reach layer with its summary fields, saved beside the project, styled
from ``resources/styles`` and animated by the temporal controller.

One feature per reach (the backend's summary GeoPackage: reach_id, downstream_id, length_m, area_km2, mean,
max, time_of_max, q05, q50, q95; m3/s) and, for the animation, the discharge of one step at a time looked
up by :mod:`..expressions` (``thalweg_frame``) from a :class:`~..expressions.FrameSource`:

- :class:`ServiceFrames`: one ``/jobs/{id}/snapshot`` per frame from the running backend (it keeps recent
  results in memory); used right after a run;
- :class:`NetcdfFrames`: one time slice of the discharge NetCDF saved beside the project, read with GDAL;
  used when a saved project is opened again (no backend needed to animate it).

The layer remembers its result in the custom property :data:`RESULT_PROPERTY` (JSON: job id, time axis,
gauges, file names), saved with the project; :func:`restore_layers` registers its frames again on reading.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
from qgis.core import (QgsDateTimeRange, QgsFeatureRequest, QgsGraduatedSymbolRenderer, QgsInterval, QgsProject,
                       QgsRendererRange, QgsTask, QgsUnitTypes, QgsVectorLayer, QgsVectorLayerTemporalProperties)
from qgis.PyQt.QtCore import QDateTime, Qt

from .. import expressions
from ..errors import PluginError

__all__ = ["RESULT_PROPERTY", "FRAME_EXPRESSION", "ANIMATED_STYLE", "ServiceFrames", "NetcdfFrames",
           "result_info", "load_results", "apply_style", "set_temporal", "configure_navigation", "restore_layers",
           "result_layers", "time_axis", "nice_breaks", "discharge_label", "register_frames", "LoadResultsTask",
           "read_file_columns", "saved_hydrograph", "render_frame", "step_time", "discharge_of"]

RESULT_PROPERTY = "thalweg/result"
LAYER_NAME = "discharge"  # the layer inside the backend's summary GeoPackage
STYLES = Path(__file__).resolve().parents[1] / "resources" / "styles"
ANIMATED_STYLE = STYLES / "discharge_animated.qml"
# the frame's discharge while the temporal controller runs, the reach's mean discharge otherwise (no
# coalesce() here: the function gives the means itself; each function node costs ~3 us x 2 per feature)
FRAME_EXPRESSION = "array_get(thalweg_frame(@layer_id, @map_start_time), $id)"
UNITS = "m³/s"
LOWEST = -1e9  # m3/s: lower limit of the first class
RESULTS_FOLDER = "thalweg_results"
ORDER_BY_LIMIT = 20_000  # features: above, drawing order by drainage area (a sort per frame) costs ~0.5 s
_loading: set[str] = set()  # layers load_results is adding (main thread only)


# ---------------------------------------------------------------- frame sources
def time_axis(info: dict[str, Any]) -> np.ndarray:
    """Ends of the result's steps, epoch seconds [T] (from the job record's first_time, dt and steps; UTC)."""
    first = _dt.datetime.fromisoformat(str(info["first_time"]).replace("Z", "+00:00"))
    if first.tzinfo is None:
        first = first.replace(tzinfo=_dt.timezone.utc)
    return first.timestamp() + float(info["dt"]) * np.arange(int(info["steps"]), dtype=np.float64)


class ServiceFrames(expressions.FrameSource):
    """Frames from the backend's ``/jobs/{id}/snapshot`` (one request per frame, never the whole series).

    ``client`` is the plugin's :class:`..service.client.ThalwegClient`. The row order (``ids``) comes with
    the first snapshot, fetched by the first render (a render thread), not when the layer is loaded.
    """

    def __init__(self, client, job_id: str, times: np.ndarray, timeout: float = 120.0) -> None:
        self.client, self.job_id, self.times, self.timeout = client, job_id, np.asarray(times, np.float64), timeout
        self._ids: np.ndarray | None = None
        self._lock = threading.Lock()

    def _snapshot(self, step: int) -> np.ndarray:
        snap = self.client.snapshot(self.job_id, int(step), timeout=self.timeout)
        if self._ids is None:
            with self._lock:
                self._ids = np.asarray(snap["reach_ids"], dtype=np.int64)
        return np.array(snap["values"], dtype=np.float64)  # JSON null (missing) becomes NaN

    @property
    def ids(self) -> np.ndarray:  # type: ignore[override]
        if self._ids is None:
            self._snapshot(0)
        return self._ids

    def frame(self, step: int) -> np.ndarray:
        return self._snapshot(step)

    def describe(self) -> str:
        return f"job {self.job_id} on {getattr(self.client, 'url', 'the backend')}"


class NetcdfFrames(expressions.FrameSource):
    """Frames from a river-route ``Q(riverId, time)`` NetCDF (the backend's ``q`` output), one time slice per
    frame through GDAL's multidimensional API (QGIS ships it; no netCDF4 in QGIS's Python)."""

    def __init__(self, path: str | os.PathLike, times: np.ndarray) -> None:
        from osgeo import gdal

        self.path = str(path)
        self.times = np.asarray(times, np.float64)
        self._lock = threading.Lock()  # one GDAL dataset, read by the render threads in turn
        self._ds = gdal.OpenEx(self.path, gdal.OF_MULTIDIM_RASTER | gdal.OF_VERBOSE_ERROR)
        if self._ds is None:
            raise PluginError(f"cannot open the discharge file {self.path}: {gdal.GetLastErrorMsg()}; route "
                              f"again from the Thalweg panel to recreate it.")
        root = self._ds.GetRootGroup()
        self._q = root.OpenMDArray("Q")
        if self._q is None or [d.GetName() for d in self._q.GetDimensions()] != ["riverId", "time"]:
            raise PluginError(f"{self.path} has no Q(riverId, time) variable; it is not a Thalweg discharge file "
                              f"(river-route Q).")
        self.ids = np.asarray(root.OpenMDArray("riverId").ReadAsArray(), dtype=np.int64)
        steps = self._q.GetDimensions()[1].GetSize()
        if steps != self.times.size:
            raise PluginError(f"{self.path} has {steps:,} steps but the layer's result has {self.times.size:,}; "
                              f"the file was replaced: route again from the Thalweg panel.")

    def frame(self, step: int) -> np.ndarray:
        with self._lock:
            return np.asarray(self._q[:, int(step)].ReadAsArray(), dtype=np.float64)

    def series(self, reach_id: int) -> np.ndarray:
        """The discharge of one reach at the end of every step [T], m3/s (one contiguous row of the file)."""
        rows = np.flatnonzero(self.ids == int(reach_id))
        if not rows.size:
            raise PluginError(f"reach {reach_id} is not in {self.path}; pick a reach of the result layer.")
        with self._lock:
            return np.asarray(self._q[int(rows[0]), :].ReadAsArray(), dtype=np.float64)

    def describe(self) -> str:
        return self.path


# ---------------------------------------------------------------- the layer
def result_info(record: dict[str, Any]) -> dict[str, Any]:
    """What a result layer remembers of a succeeded route/calibrate job record."""
    result, outputs = record.get("result") or {}, record.get("outputs") or {}
    if "gpkg" not in outputs or "q" not in outputs:
        raise PluginError(f"job {record.get('id')} wrote no map layer (outputs: {', '.join(outputs) or 'none'}); "
                          f"route with a network that has line geometries.")
    return {"job_id": record["id"], "kind": record.get("kind", "route"), "label": record.get("label") or "",
            "first_time": result["first_time"], "last_time": result["last_time"], "dt": float(result["dt"]),
            "steps": int(result["steps"]), "reaches": int(result.get("reaches", 0)),
            "gauges": list(result.get("gauges") or []), "scheme": result.get("scheme", ""),
            "gpkg": outputs["gpkg"], "q": outputs["q"]}


def results_folder(project: QgsProject) -> Path | None:
    """``<project folder>/thalweg_results``, or None for a project never saved."""
    if not project.fileName():
        return None
    return Path(project.absolutePath()) / RESULTS_FOLDER


def _copy(src: Path, dst: Path, link: bool) -> None:
    """Copy (or hard-link: instant for a large NetCDF on the same disk) atomically."""
    tmp = dst.with_name(f".{dst.name}.part")
    if tmp.exists():
        tmp.unlink()
    try:
        if not link:
            raise OSError
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def save_beside_project(info: dict[str, Any], project: QgsProject | None, folder: Path | None = None
                        ) -> dict[str, Any]:
    """Copy the result's GeoPackage and discharge NetCDF into the project's ``thalweg_results`` folder
    (or ``folder``, when given: then no project is touched, and it may run in a worker thread).

    Returns ``info`` with ``gpkg``/``q`` pointing at the copies; unchanged for a project never saved (the
    files then stay in the backend's workspace, until the project is saved and the run repeated).
    """
    if folder is None and project is not None:
        folder = results_folder(project)
    if folder is None:
        return dict(info)
    folder.mkdir(parents=True, exist_ok=True)
    # job ids are <date>-<time>-<random>: unique per run, and they sort by time in the folder
    job = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(info["job_id"]))
    stem = f"{Path(info['gpkg']).stem}_{job}"
    gpkg, nc = folder / f"{stem}.gpkg", folder / f"{stem}.nc"
    _copy(Path(info["gpkg"]), gpkg, link=False)  # the layer is editable: never share the backend's file
    _copy(Path(info["q"]), nc, link=True)
    return {**info, "gpkg": str(gpkg), "q": str(nc)}


def _info_of(layer) -> dict[str, Any] | None:
    raw = layer.customProperty(RESULT_PROPERTY)
    if not raw:
        return None
    try:
        info = json.loads(raw)
    except ValueError:
        return None
    # the NetCDF sits beside the GeoPackage (the layer's source, which QGIS keeps relative to the project)
    source = layer.source().split("|", 1)[0]
    info["q"] = str(Path(source).with_name(info.get("q_name") or Path(info["q"]).name))
    return info


def result_layers(project: QgsProject | None = None) -> list[QgsVectorLayer]:
    """The project's Thalweg result layers."""
    project = project or QgsProject.instance()
    return [lyr for lyr in project.mapLayers().values() if lyr.customProperty(RESULT_PROPERTY)]


def discharge_label(value: float) -> str:
    """A discharge for a legend: 3 significant digits at most, no trailing zeros."""
    if value == 0:
        return "0"
    digits = max(0, 2 - int(math.floor(math.log10(abs(value)))))
    return f"{value:,.{digits}f}".rstrip("0").rstrip(".") if digits else f"{value:,.0f}"


def nice_breaks(low: float, high: float, classes: int = 7) -> list[float]:
    """Class limits between ``low`` and ``high`` (m3/s) on a 1-2-5 (or 1-3, 1-10) log ladder, about
    ``classes`` classes: discharge spans orders of magnitude from headwaters to the outlet."""
    high = max(float(high), 1e-6)
    low = min(max(float(low), high * 1e-5), high / 10.0)
    for ladder in ((1, 2, 5), (1, 3), (1,), ):
        values = [m * 10.0 ** e for e in range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1)
                  for m in ladder]
        inner = [v for v in values if low <= v < high]
        if len(inner) <= classes - 1:
            break
    if len(inner) > classes - 1:  # more than 6 decades: thin the 1-10 ladder
        step = math.ceil(len(inner) / (classes - 1))
        inner = inner[::step]
    return inner


def read_columns(layer: QgsVectorLayer, names: list[str]) -> dict[str, np.ndarray]:
    """One pass over the layer's features without geometry: ``{"fid": [F] int64, name: [F] float64 ...}``
    (NULL and non-numbers as NaN)."""
    fields = layer.fields()
    index = [fields.indexOf(n) for n in names]
    present = [(n, i) for n, i in zip(names, index) if i >= 0]
    request = QgsFeatureRequest().setFlags(QgsFeatureRequest.NoGeometry).setSubsetOfAttributes(
        [i for _, i in present])
    fids, cols = [], {n: [] for n, _ in present}
    for f in layer.dataProvider().getFeatures(request):
        fids.append(f.id())
        for n, i in present:
            v = f.attribute(i)
            cols[n].append(v if isinstance(v, (int, float)) else np.nan)
    out = {"fid": np.array(fids, dtype=np.int64)}
    out.update({n: np.array(v, dtype=np.float64) for n, v in cols.items()})
    return out


def apply_style(layer: QgsVectorLayer, style: Path = ANIMATED_STYLE, columns: dict[str, np.ndarray] | None = None
                ) -> None:
    """Load the QML style and fit its classes to this result (log classes from low flows to the largest peak).

    The style's renderer is graduated on :data:`FRAME_EXPRESSION`; its colour ramp and the widths of its
    first and last class are kept, the limits and labels (m³/s) are set from the layer's summary fields
    (``columns``: :func:`read_columns` of max and q50, read here when not given).
    """
    # loadFromLocalDb=True: read this file, not the default style the GeoPackage carries (the backend embeds a
    # static one for other tools; QGIS's GeoPackage provider would load that instead)
    message, ok = layer.loadNamedStyle(str(style), True)
    if not ok:
        raise PluginError(f"cannot load the style {style}: {message}; reinstall the Thalweg plugin.")
    renderer = layer.renderer()
    if not isinstance(renderer, QgsGraduatedSymbolRenderer) or not renderer.ranges():
        raise AssertionError(f"{style} must hold a graduated renderer with classes")
    if columns is None or "max" not in columns or "q50" not in columns:
        columns = read_columns(layer, ["max", "q50"])
    peaks, medians = columns["max"], columns["q50"]
    high = float(np.nanmax(peaks)) if peaks.size and np.isfinite(peaks).any() else 1.0
    positive = medians[np.isfinite(medians) & (medians > 0)]
    low = float(np.percentile(positive, 5)) if positive.size else high / 1000.0
    inner = nice_breaks(low, high)
    # the first class takes everything below its limit: small negative values of Muskingum's negative
    # coefficients, and frames lower than any summary statistic
    limits = [LOWEST, *inner, max(high, inner[-1] * 1.000001 if inner else high)]
    template = renderer.ranges()
    w0 = template[0].symbol().width()
    w1 = template[-1].symbol().width()
    ramp = renderer.sourceColorRamp()
    n = len(limits) - 1
    ranges = []
    for i in range(n):
        symbol = template[min(i, len(template) - 1)].symbol().clone()
        frac = i / max(n - 1, 1)
        if ramp is not None:
            symbol.setColor(ramp.color(frac))
        symbol.setWidth(w0 + (w1 - w0) * frac)
        lo, hi = limits[i], limits[i + 1]
        if i == 0:
            label = f"< {discharge_label(hi)} {UNITS}"
        elif i == n - 1:
            label = f"≥ {discharge_label(lo)} {UNITS} (peak {discharge_label(high)})"
        else:
            label = f"{discharge_label(lo)} – {discharge_label(hi)} {UNITS}"
        ranges.append(QgsRendererRange(lo, hi, symbol, label))
    fitted = QgsGraduatedSymbolRenderer(renderer.classAttribute(), ranges)
    if ramp is not None:
        fitted.setSourceColorRamp(ramp.clone())
    if renderer.orderByEnabled() and layer.featureCount() <= ORDER_BY_LIMIT:
        fitted.setOrderBy(renderer.orderBy())  # main stems drawn over their tributaries
        fitted.setOrderByEnabled(True)
    layer.setRenderer(fitted)
    layer.triggerRepaint()


def _qdatetime(seconds: float) -> QDateTime:
    return QDateTime.fromMSecsSinceEpoch(int(round(seconds * 1000)), Qt.UTC)


def set_temporal(layer: QgsVectorLayer, times: np.ndarray) -> QgsDateTimeRange:
    """Make the layer temporal over the run (first to last step end); the range."""
    rng = QgsDateTimeRange(_qdatetime(times[0]), _qdatetime(times[-1]))
    props = layer.temporalProperties()
    props.setMode(QgsVectorLayerTemporalProperties.ModeFixedTemporalRange)
    props.setFixedTemporalRange(rng)
    props.setIsActive(True)
    return rng


def configure_navigation(navigation, layer: QgsVectorLayer, project: QgsProject | None = None) -> None:
    """Set a temporal controller (``QgsTemporalNavigationObject``) and the project's time settings to the
    layer's run: one frame per step, frame k starting at the end of step k (the instant of Q[k])."""
    info = _info_of(layer)
    if info is None:
        return
    times = time_axis(info)
    dt = float(info["dt"])
    extent = QgsDateTimeRange(_qdatetime(times[0]), _qdatetime(times[-1] + dt))
    project = project or QgsProject.instance()
    project.timeSettings().setTemporalRange(extent)
    if hasattr(project.timeSettings(), "setTimeStep"):
        project.timeSettings().setTimeStep(dt)
        project.timeSettings().setTimeStepUnit(QgsUnitTypes.TemporalSeconds)
    if navigation is not None:
        navigation.setTemporalExtents(extent)
        navigation.setFrameDuration(QgsInterval(dt))
        navigation.setNavigationMode(navigation.Animated)
        navigation.setCurrentFrameNumber(0)


def register_frames(layer: QgsVectorLayer, source: expressions.FrameSource,
                    columns: dict[str, np.ndarray] | None = None) -> None:
    """Serve ``layer``'s animation from ``source`` (main thread); ``columns`` from :func:`read_columns` with
    reach_id and mean, when the caller has read them."""
    if columns is None or "reach_id" not in columns:
        columns = read_columns(layer, ["reach_id", "mean"])
    expressions.register_layer(layer, source, fids=columns["fid"], reach_ids=columns["reach_id"].astype(np.int64),
                               still=columns.get("mean"))


def read_file_columns(gpkg: str | os.PathLike, names: list[str], layer: str = LAYER_NAME) -> dict[str, np.ndarray]:
    """:func:`read_columns` from the file with OGR (its own dataset: safe in a worker thread), through GDAL's
    Arrow batches when it has them (GDAL >= 3.6: 100,000 features in a fraction of a second)."""
    from osgeo import ogr

    ds = ogr.Open(str(gpkg))
    if ds is None:
        raise PluginError(f"cannot open the result layer {gpkg}; route again from the Thalweg panel.")
    lyr = ds.GetLayerByName(layer)
    defn = lyr.GetLayerDefn()
    have = [defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())]
    wanted = [n for n in names if n in have]
    lyr.SetIgnoredFields([n for n in have if n not in wanted] + ["OGR_GEOMETRY", "OGR_STYLE"])
    parts: dict[str, list] = {"fid": [], **{n: [] for n in wanted}}
    if hasattr(lyr, "GetArrowStreamAsNumPy"):
        for batch in lyr.GetArrowStreamAsNumPy(options=["INCLUDE_FID=YES"]):
            fid_key = next(k for k in batch if k.lower() in ("fid", "ogc_fid"))
            parts["fid"].append(np.asarray(batch[fid_key]))
            for n in wanted:
                parts[n].append(np.asarray(batch[n], dtype=np.float64))
        out = {k: (np.concatenate(v) if v else np.array([])) for k, v in parts.items()}
    else:
        for f in lyr:
            parts["fid"].append(f.GetFID())
            for n in wanted:
                v = f.GetField(n)
                parts[n].append(np.nan if v is None else v)
        out = {k: np.asarray(v) for k, v in parts.items()}
    out["fid"] = out["fid"].astype(np.int64)
    for n in wanted:
        out[n] = out[n].astype(np.float64)
    return out


COLUMNS = ["reach_id", "mean", "max", "q50"]  # what the style and the frames need


class LoadResultsTask(QgsTask):
    """The slow part of loading a result, off the main thread: copying the files beside the project and
    reading the columns the style and the animation need. ``on_loaded(layer, error)`` gets the layer,
    built, styled and added to the project on the main thread in ``finished``."""

    def __init__(self, record: dict[str, Any], on_loaded, *, project: QgsProject | None = None, client=None,
                 name: str | None = None) -> None:
        super().__init__("Thalweg: loading the result layer", QgsTask.CanCancel)
        self.record, self.on_loaded, self.client, self.name = record, on_loaded, client, name
        self.project = project or QgsProject.instance()
        self.folder = results_folder(self.project)  # read here, on the main thread
        self.saved: dict[str, Any] | None = None
        self.columns: dict[str, np.ndarray] | None = None
        self.error: PluginError | None = None

    def run(self) -> bool:
        try:
            self.saved = save_beside_project(result_info(self.record), None, self.folder)
            self.columns = read_file_columns(self.saved["gpkg"], COLUMNS)
            return True
        except PluginError as exc:
            self.error = exc
        except Exception as exc:  # noqa: BLE001  (raising in run() crashes QGIS; reported in finished)
            self.error = PluginError(f"cannot load the result of job {self.record.get('id')}: "
                                     f"{type(exc).__name__}: {exc}")
        return False

    def finished(self, result: bool) -> None:
        layer = None
        if result:
            try:
                layer = load_results(self.record, project=self.project, client=self.client, name=self.name,
                                     saved=self.saved, columns=self.columns)
            except PluginError as exc:
                self.error = exc
        self.on_loaded(layer, None if layer is not None else (self.error or PluginError("cancelled")))


def load_results(record: dict[str, Any], *, project: QgsProject | None = None, client=None,
                 name: str | None = None, add: bool = True, saved: dict[str, Any] | None = None,
                 columns: dict[str, np.ndarray] | None = None) -> QgsVectorLayer:
    """The result layer of a succeeded route/calibrate job: saved beside the project, styled, temporal,
    its frames served from the backend (``client``) or, without one, from the saved NetCDF.

    ``saved`` and ``columns`` are what :class:`LoadResultsTask` prepared off the main thread (the files
    already copied, the columns read); without them this does all of it here (blocking: about 2 s for
    100,000 reaches).

    Raises PluginError when the job wrote no map layer or its files cannot be read.
    """
    project = project or QgsProject.instance()
    info = saved if saved is not None else save_beside_project(result_info(record), project)
    title = name or f"Discharge [{UNITS}]" + (f" – {info['label']}" if info["label"] else "")
    layer = QgsVectorLayer(f"{info['gpkg']}|layername={LAYER_NAME}", title, "ogr")
    if not layer.isValid():
        raise PluginError(f"cannot open the result layer {info['gpkg']}; route again from the Thalweg panel.")
    stored = {k: v for k, v in info.items() if k not in ("gpkg",)}
    stored["q_name"] = Path(info["q"]).name
    layer.setCustomProperty(RESULT_PROPERTY, json.dumps(stored))
    if columns is None:
        columns = read_columns(layer, COLUMNS)  # one pass for the style and the frames
    apply_style(layer, columns=columns)
    times = time_axis(info)
    set_temporal(layer, times)
    if client is not None:
        source: expressions.FrameSource = ServiceFrames(client, info["job_id"], times)
    else:
        source = NetcdfFrames(info["q"], times)
    if add:
        _loading.add(layer.id())  # layersAdded -> restore_layers: this layer's frames are registered below
        try:
            project.addMapLayer(layer)
        finally:
            _loading.discard(layer.id())
    register_frames(layer, source, columns)
    return layer


def restore_layers(layers) -> list[str]:
    """Register the frames of Thalweg result layers read from a project (``QgsProject.layersAdded``):
    their NetCDF beside the GeoPackage. Layers already registered are left alone. The ids registered."""
    done = []
    registered = set(expressions.registered_layers()) | _loading
    for layer in layers:
        if not isinstance(layer, QgsVectorLayer) or layer.id() in registered:
            continue
        info = _info_of(layer)
        if info is None:
            continue
        try:
            register_frames(layer, NetcdfFrames(info["q"], time_axis(info)))
            done.append(layer.id())
        except PluginError as exc:
            from qgis.core import Qgis, QgsMessageLog

            QgsMessageLog.logMessage(f"{layer.name()}: not animated: {exc}", "Thalweg", Qgis.Warning)
    return done


def forget_layers(layer_ids) -> None:
    """Drop the frames of removed layers (``QgsProject.layersWillBeRemoved``)."""
    for layer_id in layer_ids:
        expressions.unregister_layer(layer_id)


def saved_hydrograph(layer: QgsVectorLayer, reach_id: int) -> dict[str, Any]:
    """A reach's simulated hydrograph from the NetCDF saved beside the project, shaped as the service's
    ``/hydrograph`` answer (no observations or metrics: those need the backend). For a project reopened
    without the backend that ran it."""
    info = _info_of(layer)
    if info is None:
        raise PluginError(f"{layer.name()} is not a Thalweg result layer; pick a reach of a Discharge layer.")
    times = time_axis(info)
    source = NetcdfFrames(info["q"], times)
    values = source.series(reach_id)
    stamps = [_dt.datetime.fromtimestamp(t, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") for t in times]
    gauge = next((g for g in info.get("gauges") or [] if int(g["reach_id"]) == int(reach_id)), None)
    return {"job_id": info["job_id"], "reach_id": int(reach_id), "units": "m3/s", "time": stamps,
            "simulated": [None if not math.isfinite(v) else float(v) for v in values], "observed": None,
            "gauge_id": gauge["gauge_id"] if gauge else None, "metrics": None, "source": info["q"]}


def gauges_of(layer: QgsVectorLayer) -> list[dict[str, Any]]:
    """The gauges of the layer's run: ``[{"gauge_id", "name", "reach_id"}]``."""
    info = _info_of(layer)
    return list(info.get("gauges") or []) if info else []


def discharge_of(layer: QgsVectorLayer) -> str | None:
    """The discharge NetCDF of a result layer (beside its GeoPackage), or None for another layer."""
    info = _info_of(layer)
    return info["q"] if info else None


def job_of(layer: QgsVectorLayer) -> str | None:
    info = _info_of(layer)
    return info.get("job_id") if info else None


def step_time(layer: QgsVectorLayer, step: int) -> QDateTime:
    """The instant of step ``step`` of the layer's run (its end; negative counts from the last)."""
    info = _info_of(layer)
    if info is None:
        raise AssertionError(f"{layer.name()} is not a Thalweg result layer")
    times = time_axis(info)
    return _qdatetime(float(times[step]))


def map_settings(layers, when: QDateTime | None, *, extent=None, size=(1200, 900), dt: float = 3600.0,
                 project: QgsProject | None = None):
    """QgsMapSettings for rendering ``layers`` at ``when`` (a frame of length ``dt`` s), with the expression
    context a map canvas gives (global, project, map settings: ``@map_start_time``)."""
    from qgis.core import QgsExpressionContext, QgsExpressionContextUtils, QgsMapSettings
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor

    project = project or QgsProject.instance()
    layers = list(layers)
    ms = QgsMapSettings()
    ms.setLayers(layers)
    ms.setDestinationCrs(layers[0].crs())
    ms.setOutputSize(QSize(*size))
    ms.setBackgroundColor(QColor("white"))
    ms.setTransformContext(project.transformContext())
    if extent is None:
        extent = layers[0].extent()
        extent.scale(1.05)
    ms.setExtent(extent)
    if when is not None:
        ms.setIsTemporal(True)
        ms.setTemporalRange(QgsDateTimeRange(when, when.addMSecs(int(dt * 1000))))
    context = QgsExpressionContext()
    context.appendScope(QgsExpressionContextUtils.globalScope())
    context.appendScope(QgsExpressionContextUtils.projectScope(project))
    context.appendScope(QgsExpressionContextUtils.mapSettingsScope(ms))
    ms.setExpressionContext(context)
    return ms


def render_frame(layer: QgsVectorLayer, step: int, *, extent=None, size=(1200, 900), layers=None):
    """Render the animation frame of step ``step`` the way the temporal controller does (a parallel render
    job); ``(QImage, seconds)``. For tests and scripts/bench_plugin.py (one frame of a large network)."""
    import time

    from qgis.core import QgsMapRendererParallelJob

    info = _info_of(layer) or {}
    ms = map_settings(layers or [layer], step_time(layer, step), extent=extent, size=size,
                      dt=float(info.get("dt", 3600.0)))
    job = QgsMapRendererParallelJob(ms)
    t0 = time.perf_counter()
    job.start()
    job.waitForFinished()
    return job.renderedImage(), time.perf_counter() - t0
