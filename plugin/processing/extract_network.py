"""thalweg:extractnetwork: a line layer -> the validated network (ids, downstream ids, length, area, order)."""
from __future__ import annotations

import json

from qgis.core import QgsProcessingOutputNumber, QgsProcessingOutputString, QgsProcessingParameterFeatureSink

from .base import ThalwegAlgorithm


class ExtractNetworkAlgorithm(ThalwegAlgorithm):
    OUTPUT = "OUTPUT"
    REACHES = "REACHES"
    OUTLETS = "OUTLETS"
    SUMMARY = "SUMMARY"
    JOB_ID = "JOB_ID"

    def name(self) -> str:
        return "extractnetwork"

    def displayName(self) -> str:  # noqa: N802
        return "Extract river network"

    def group(self) -> str:
        return "Network"

    def groupId(self) -> str:  # noqa: N802
        return "network"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Reads the river network of a line layer with the Thalweg backend (schema and units detected from "
                "its fields, or the fields you choose under Advanced parameters), validates it (cycles, duplicate "
                "ids, missing downstream reaches, bad lengths or areas: errors name the reaches) and writes a layer "
                "of reaches with reach_id, downstream_id, length_m, area_km2, level, depth and outlet_id.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_network_parameters()
        self.addParameter(QgsProcessingParameterFeatureSink(self.OUTPUT, "Network"))
        self.addOutput(QgsProcessingOutputNumber(self.REACHES, "Reaches"))
        self.addOutput(QgsProcessingOutputNumber(self.OUTLETS, "Outlets"))
        self.addOutput(QgsProcessingOutputString(self.SUMMARY, "Summary (JSON)"))
        self.addOutput(QgsProcessingOutputString(self.JOB_ID, "Backend job id"))

    def job_body(self, parameters, context, feedback):
        return {"kind": "extract", "label": "QGIS Processing: thalweg:extractnetwork", "write_gpkg": True}

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        record = self.run_job(feedback)
        summary = record["result"]["summary"]
        feedback.pushInfo(f"{summary.get('reaches')} reaches, {summary.get('outlets')} outlets")
        dest = self.layer_to_sink(self.output_path(record), "reaches", parameters, self.OUTPUT, context, feedback)
        return {self.OUTPUT: dest, self.REACHES: summary.get("reaches"), self.OUTLETS: summary.get("outlets"),
                self.SUMMARY: json.dumps(summary), self.JOB_ID: record["id"]}

    def output_path(self, record) -> str:
        from qgis.core import QgsProcessingException

        if "gpkg" not in record["outputs"]:
            raise QgsProcessingException("the layer has no line geometries, so no network layer was written")
        return record["outputs"]["gpkg"]
