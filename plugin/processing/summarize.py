"""thalweg:summarize: a discharge NetCDF -> a styled layer of reaches with its per-reach statistics."""
from __future__ import annotations

from qgis.core import QgsProcessingOutputString, QgsProcessingParameterFeatureSink, QgsProcessingParameterFile

from .base import ThalwegAlgorithm, style_on_load


class SummarizeAlgorithm(ThalwegAlgorithm):
    DISCHARGE = "DISCHARGE"
    OUTPUT = "OUTPUT"
    JOB_ID = "JOB_ID"

    def name(self) -> str:
        return "summarize"

    def displayName(self) -> str:  # noqa: N802
        return "Summarize discharge"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Joins a discharge file (Thalweg, RAPID/GEOGloWS Qout or river-route Q NetCDF) to the reaches of a "
                "river network layer: mean, max, time of max and Q5/Q50/Q95 (m3/s; Q5 is exceeded 5 % of the time) "
                "per reach, in a layer styled by discharge.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_network_parameters()
        self.addParameter(QgsProcessingParameterFile(self.DISCHARGE, "Discharge file (NetCDF)", extension="nc"))
        self.addParameter(QgsProcessingParameterFeatureSink(self.OUTPUT, "Discharge summary"))
        self.addOutput(QgsProcessingOutputString(self.JOB_ID, "Backend job id"))

    def job_body(self, parameters, context, feedback):
        return {"kind": "summarize", "label": "QGIS Processing: thalweg:summarize",
                "discharge": self.parameterAsFile(parameters, self.DISCHARGE, context)}

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        record = self.run_job(feedback)
        dest = self.layer_to_sink(record["outputs"]["gpkg"], "discharge", parameters, self.OUTPUT, context, feedback)
        style_on_load(context, dest)
        return {self.OUTPUT: dest, self.JOB_ID: record["id"]}
