"""What the Thalweg algorithms share: the network parameters, the backend job loop, copying results out.

Each algorithm declares its parameters (names are class constants), builds the job body in
``prepareAlgorithm`` (main thread: the layer is read there, as the panel does, with
:func:`..layers.extract.network_source`) and runs the job in ``processAlgorithm`` (Processing's thread) with
:func:`..service.tasks.run_job`, the same loop the panel's tasks use, cancelled through ``feedback``.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from qgis.core import (QgsApplication, QgsFeatureSink, QgsProcessing, QgsProcessingAlgorithm, QgsProcessingException,
                       QgsProcessingFeatureSourceDefinition, QgsProcessingParameterBoolean,
                       QgsProcessingParameterFeatureSource, QgsProcessingParameterField, QgsVectorLayer)

from ..errors import PluginError
from ..params import parse_params as _parse_params

__all__ = ["ThalwegAlgorithm", "parse_params"]

GROUP = "Routing"


def parse_params(text: str) -> dict[str, Any]:
    """The plugin's one reading of ``k=36000; x=0.2`` (:func:`..params.parse_params`), as a Processing error."""
    try:
        return _parse_params(text, "the scheme parameters")
    except PluginError as exc:
        raise QgsProcessingException(str(exc)) from None


class ThalwegAlgorithm(QgsProcessingAlgorithm):
    """Base of the algorithms: network input and field overrides, the job, its errors and outputs."""

    NETWORK = "NETWORK"
    ID_FIELD = "ID_FIELD"
    DOWNSTREAM_FIELD = "DOWNSTREAM_FIELD"
    LENGTH_FIELD = "LENGTH_FIELD"
    AREA_FIELD = "AREA_FIELD"
    WITH_GEOMETRY = True  # send the lines of inline networks (the job writes a map layer)

    def __init__(self) -> None:
        super().__init__()
        self._body: dict[str, Any] | None = None
        self._source = None

    # ---- QgsProcessingAlgorithm boilerplate ----
    def createInstance(self):  # noqa: N802  (QGIS's name)
        return type(self)()

    def group(self) -> str:
        return GROUP

    def groupId(self) -> str:  # noqa: N802
        return "routing"

    def tr(self, text: str) -> str:
        return text

    # ---- parameters ----
    def add_network_parameters(self, description: str = "River network (line layer)") -> None:
        self.addParameter(QgsProcessingParameterFeatureSource(self.NETWORK, description,
                                                              [QgsProcessing.TypeVectorLine]))
        for name, label in ((self.ID_FIELD, "Reach id field"), (self.DOWNSTREAM_FIELD, "Downstream id field"),
                            (self.LENGTH_FIELD, "Length field"), (self.AREA_FIELD, "Drainage area field")):
            param = QgsProcessingParameterField(name, f"{label} (default: detected by the backend)",
                                                parentLayerParameterName=self.NETWORK, optional=True)
            param.setFlags(param.flags() | param.FlagAdvanced)
            self.addParameter(param)

    def add_flag(self, name: str, label: str, default: bool = False) -> None:
        self.addParameter(QgsProcessingParameterBoolean(name, label, defaultValue=default))

    def field_overrides(self, parameters, context) -> dict[str, str]:
        out = {}
        for name, role in ((self.ID_FIELD, "id"), (self.DOWNSTREAM_FIELD, "downstream"),
                           (self.LENGTH_FIELD, "length"), (self.AREA_FIELD, "area")):
            value = self.parameterAsString(parameters, name, context)
            if value:
                out[role] = value
        return out

    def network_source(self, parameters, context):
        """The layer's network, as :func:`..layers.extract.network_source` sends it (main thread)."""
        from ..layers.extract import network_source

        value = parameters.get(self.NETWORK)
        selected = isinstance(value, QgsProcessingFeatureSourceDefinition) and value.selectedFeaturesOnly
        layer = self.parameterAsVectorLayer(parameters, self.NETWORK, context)
        if layer is None:
            raise QgsProcessingException(f"cannot open the network layer {value!r}")
        try:
            return network_source(layer, selected_only=selected, fields=self.field_overrides(parameters, context),
                                  with_geometry=self.WITH_GEOMETRY)
        except PluginError as exc:
            raise QgsProcessingException(exc.message) from None

    def parameterAsFile(self, parameters, name, context) -> str:  # noqa: N802  (QGIS's name)
        """The file parameter as an absolute path ('' when not given): the backend runs in its own working
        folder, so a relative path (qgis_process run ... RUNOFF=data/runoff.nc) must be resolved here."""
        value = super().parameterAsFile(parameters, name, context)
        return os.path.abspath(value) if value else value

    # ---- the job ----
    def job_body(self, parameters, context, feedback) -> dict[str, Any]:
        """The job's body without the network keys (subclasses)."""
        raise NotImplementedError

    def prepareAlgorithm(self, parameters, context, feedback) -> bool:  # noqa: N802  (main thread)
        self._source = self.network_source(parameters, context)
        self._body = self.job_body(parameters, context, feedback)
        feedback.pushInfo(f"network: {self._source.describe()}")
        return True

    def run_job(self, feedback) -> dict[str, Any]:
        """Build the network part (inline extraction happens here, off the main thread), submit, poll with the
        feedback's progress and cancel; the succeeded record, or QgsProcessingException with the backend's line."""
        from ..service.process import shared
        from ..service.tasks import run_job

        seen = {"message": None}

        def on_record(record: dict[str, Any]) -> None:
            progress = record.get("progress") or {}
            feedback.setProgress(100.0 * float(progress.get("fraction") or 0.0))
            message = progress.get("message")
            if message and message != seen["message"]:
                seen["message"] = message
                feedback.pushInfo(message)

        try:
            feedback.pushInfo("connecting to the Thalweg backend")
            backend = shared()
            feedback.pushInfo(f"backend {backend.url} on {backend.device_label}")
            body = {**self._body, **self._source.job_fields(backend.client)}
            if feedback.isCanceled():
                raise QgsProcessingException("cancelled")
            record = run_job(backend, body, is_canceled=feedback.isCanceled, on_record=on_record,
                             layer=self._source.layer_id)
        except PluginError as exc:
            if exc.ids:
                feedback.reportError(f"reaches: {', '.join(map(str, exc.ids[:20]))}"
                                     f"{' and more' if len(exc.ids) > 20 else ''}")
            raise QgsProcessingException(exc.message) from None
        finally:
            if QgsApplication.instance().platform() == "qgis_process":
                # qgis_process exits without finalising Python (no atexit): one run, one backend, stopped here
                from ..service.process import stop_shared

                stop_shared()
        for warning in record.get("warnings") or []:
            feedback.pushWarning(warning) if hasattr(feedback, "pushWarning") else feedback.pushInfo(warning)
        return record

    # ---- outputs ----
    @staticmethod
    def copy_output(record: dict[str, Any], kind: str, destination: str) -> str:
        """Copy the job's output ``kind`` (q, qout, gpkg, ...) to ``destination``; the destination."""
        src = record.get("outputs", {}).get(kind)
        if not src:
            raise QgsProcessingException(f"the job wrote no '{kind}' output (outputs: "
                                         f"{', '.join(record.get('outputs', {})) or 'none'})")
        Path(destination).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, destination)
        return destination

    def layer_to_sink(self, path: str, layer_name: str, parameters, name: str, context, feedback) -> str:
        """Copy the GeoPackage layer ``path|layer_name`` into the feature sink parameter ``name``; its id."""
        layer = QgsVectorLayer(f"{path}|layername={layer_name}", layer_name, "ogr")
        if not layer.isValid():
            raise QgsProcessingException(f"cannot open the job's layer {path} ({layer_name})")
        sink, dest_id = self.parameterAsSink(parameters, name, context, layer.fields(), layer.wkbType(), layer.crs())
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, name))
        total = max(layer.featureCount(), 1)
        for i, feature in enumerate(layer.getFeatures()):
            if feedback.isCanceled():
                break
            sink.addFeature(feature, QgsFeatureSink.FastInsert)
            if i % 1000 == 0:
                feedback.setProgress(100.0 * i / total)
        return dest_id


_POST_PROCESSORS: list = []  # Processing keeps only a C++ pointer: the Python objects must stay alive


def style_on_load(context, dest_id: str, style=None) -> None:
    """Style the output layer ``dest_id`` when Processing loads it: ``style(layer)`` (default: the plugin's
    discharge style, :func:`..layers.results.apply_style`)."""
    from qgis.core import QgsProcessingLayerPostProcessorInterface

    class Styler(QgsProcessingLayerPostProcessorInterface):
        def postProcessLayer(self, layer, context, feedback):  # noqa: N802  (QGIS's name)
            from ..layers.results import apply_style

            if isinstance(layer, QgsVectorLayer):
                try:
                    (style or apply_style)(layer)
                except PluginError as exc:
                    feedback.reportError(exc.message)

    if context.willLoadLayerOnCompletion(dest_id):
        styler = Styler()
        _POST_PROCESSORS.append(styler)
        context.layerToLoadOnCompletionDetails(dest_id).setPostProcessor(styler)
