"""thalweg:report: a printable PDF of a Thalweg result layer (map, legend in m3/s, scale bar, north arrow, title,
date, data sources), with hydrographs at the gauges and a table of their metrics when gauges are given."""
from __future__ import annotations

import json
from pathlib import Path

from qgis.core import (QgsProcessing, QgsProcessingException, QgsProcessingOutputNumber,
                       QgsProcessingParameterFeatureSource, QgsProcessingParameterField, QgsProcessingParameterFile,
                       QgsProcessingParameterFileDestination, QgsProcessingParameterString,
                       QgsProcessingParameterVectorLayer, QgsProcessingUtils, QgsProject)

from ..errors import PluginError
from .planning import PlanningAlgorithm


def plugin_version() -> str:
    for line in (Path(__file__).resolve().parents[1] / "metadata.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith("version="):
            return line.split("=", 1)[1].strip()
    return "?"


class ReportAlgorithm(PlanningAlgorithm):
    LAYER = "LAYER"
    FIELD = "FIELD"
    TITLE = "TITLE"
    DISCHARGE = "DISCHARGE"
    SCENARIO = "SCENARIO"
    GAUGES = "GAUGES"
    OBSERVED = "OBSERVED"
    SOURCES = "SOURCES"
    OUTPUT = "OUTPUT"
    PAGES = "PAGES"

    def name(self) -> str:
        return "report"

    def displayName(self) -> str:  # noqa: N802
        return "Printable report (PDF)"

    def flags(self):
        # print layouts and their export belong to the main thread
        return super().flags() | self.FlagNoThreading

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Makes a PDF report (A4 landscape) of a Thalweg result layer: flood-frequency flows (thalweg:stats), a "
                "scenario change (thalweg:compare), an exceedance map (thalweg:exceedance) or a discharge summary "
                "(thalweg:route, thalweg:summarize). Page 1: the map styled by its kind, a legend in m3/s, a scale "
                "bar, a north arrow, the title, the date, the period routed and the data sources. With a discharge "
                "file, the routed network and a gauges CSV (and observed discharge): a page of hydrographs at the "
                "gauges and a table of their metrics (NSE, KGE, PBIAS); a comparison also lists the reaches most "
                "changed. Data sources: extra lines separated by ';'.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterVectorLayer(self.LAYER, "Result layer to map",
                                                            [QgsProcessing.TypeVectorLine]))
        self.addParameter(QgsProcessingParameterField(self.FIELD, "Field to map (default: the layer kind's)",
                                                      parentLayerParameterName=self.LAYER, optional=True,
                                                      type=QgsProcessingParameterField.Numeric))
        self.addParameter(QgsProcessingParameterString(self.TITLE, "Title", defaultValue="Thalweg river routing"))
        self.addParameter(QgsProcessingParameterFeatureSource(self.NETWORK, "River network that was routed (for "
                                                                            "the gauges)",
                                                              [QgsProcessing.TypeVectorLine], optional=True))
        self.addParameter(QgsProcessingParameterFile(self.DISCHARGE, "Discharge file (NetCDF, for the hydrographs)",
                                                     optional=True, extension="nc"))
        self.addParameter(QgsProcessingParameterFile(self.SCENARIO, "Scenario discharge (NetCDF, drawn beside it)",
                                                     optional=True, extension="nc"))
        self.addParameter(QgsProcessingParameterFile(self.GAUGES, "Gauges CSV (gauge_id, reach id)", optional=True,
                                                     extension="csv"))
        self.addParameter(QgsProcessingParameterFile(self.OBSERVED, "Observed discharge CSV", optional=True,
                                                     extension="csv"))
        self.addParameter(QgsProcessingParameterString(self.SOURCES, "Data sources (lines separated by ';')",
                                                       optional=True, multiLine=True))
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT, "Report (PDF)", "PDF files (*.pdf)"))
        self.addOutput(QgsProcessingOutputNumber(self.PAGES, "Pages"))

    def checkParameterValues(self, parameters, context):  # noqa: N802  (QGIS's name: checked before the run)
        def given(name):
            return parameters.get(name) not in (None, "")

        if given(self.GAUGES) and not given(self.DISCHARGE):
            return False, "the gauges' hydrographs need the discharge file too"
        if given(self.GAUGES) and not given(self.NETWORK):
            return False, ("the gauges need the routed network (their reach ids are its ids): give the river network "
                           "too")
        return super().checkParameterValues(parameters, context)

    def prepareAlgorithm(self, parameters, context, feedback) -> bool:  # noqa: N802
        def file(name):
            return self.parameterAsFile(parameters, name, context)

        self._source, self._body, self._scenario = None, None, file(self.SCENARIO) or None
        discharge, gauges = file(self.DISCHARGE), file(self.GAUGES)
        ok, message = self.checkParameterValues(parameters, context)
        if not ok:
            raise QgsProcessingException(message)
        if discharge and not gauges:
            feedback.pushInfo("no gauges CSV: the report is the map (give gauges for the hydrograph pages)")
        if gauges:
            self._source = self.network_source(parameters, context)
            self._body = {"kind": "hydrographs", "label": "QGIS Processing: thalweg:report", "discharge": discharge,
                          "gauges": gauges}
            if file(self.OBSERVED):
                self._body["observed"] = file(self.OBSERVED)
            feedback.pushInfo(f"network: {self._source.describe()}")
        return True

    def sources(self, parameters, context, layer) -> list[str]:
        """The report's data sources: its inputs by file name, then the user's lines."""
        temporary = Path(QgsProcessingUtils.tempFolder()).resolve()

        def name(path):
            if not path:
                return None
            # a model's intermediate file (.../processing_xyz/<id>/OUTPUT_Q.nc) says nothing to a reader
            return "routed in this run" if temporary in Path(path).resolve().parents else Path(path).name

        lines = [f"Map layer: {name(layer.source().split('|', 1)[0]) or layer.name()}"]
        if self._source is not None:
            lines.append(f"River network: {name(self._source.path) if self._source.path else 'layer ' + layer.name()}")
        for label, key in (("Discharge", self.DISCHARGE), ("Scenario discharge", self.SCENARIO),
                           ("Gauges", self.GAUGES), ("Observed discharge", self.OBSERVED)):
            value = self.parameterAsFile(parameters, key, context)
            if value:
                lines.append(f"{label}: {name(value)}")
        extra = self.parameterAsString(parameters, self.SOURCES, context)
        lines += [line.strip() for line in extra.replace("\n", ";").split(";") if line.strip()]
        lines.append(f"Routing and statistics: Thalweg {plugin_version()}")
        return lines

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from ..layers.report import build_report, export_pdf

        doc, period = None, None
        if self._body is not None:
            record = self.run_job(feedback)
            doc = json.loads(Path(record["outputs"]["hydrographs"]).read_text(encoding="utf-8"))
            result = record.get("result") or {}
            if self._scenario:
                self._body = {**self._body, "discharge": self._scenario, "label": "QGIS Processing: thalweg:report "
                                                                                  "(scenario)"}
                other = json.loads(Path(self.run_job(feedback)["outputs"]["hydrographs"]).read_text(encoding="utf-8"))
                if other["time"] != doc["time"]:
                    raise QgsProcessingException("the scenario's discharge covers other steps than the baseline's; "
                                                 "give runs of the same period")
                for g, s in zip(doc["gauges"], other["gauges"]):
                    g["scenario"], g["scenario_peak"] = s["simulated"], s["peak"]
            if result.get("first_time"):
                period = f"{result['first_time'][:16].replace('T', ' ')} – {result['last_time'][:16].replace('T', ' ')}"
        layer = self.parameterAsVectorLayer(parameters, self.LAYER, context)
        if layer is None:
            raise QgsProcessingException(f"cannot open the layer {parameters.get(self.LAYER)!r}")
        copy = layer.clone()  # the report restyles its own copy: the project's layer keeps its style
        out = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        try:
            layout = build_report(copy, title=self.parameterAsString(parameters, self.TITLE, context) or "Thalweg",
                                  project=context.project() or QgsProject.instance(),
                                  field=self.parameterAsString(parameters, self.FIELD, context) or None,
                                  hydrographs=doc, sources=self.sources(parameters, context, layer), period=period)
            feedback.pushInfo(f"exporting {layout.pageCollection().pageCount()} pages to {out}")
            export_pdf(layout, out)
        except PluginError as exc:
            raise QgsProcessingException(exc.message) from None
        return {self.OUTPUT: out, self.PAGES: layout.pageCollection().pageCount()}
