"""thalweg:calibrate: fit travel-time parameters to observed discharge at gauges, then route with them."""
from __future__ import annotations

from qgis.core import (QgsProcessingOutputString, QgsProcessingParameterEnum, QgsProcessingParameterFile,
                       QgsProcessingParameterFileDestination, QgsProcessingParameterNumber)

from .route import RouteAlgorithm

ZONES = ("gauges", "global")


class CalibrateAlgorithm(RouteAlgorithm):
    ITERATIONS = "ITERATIONS"
    ZONES_PARAM = "ZONES"
    WARMUP = "WARMUP"
    OUTPUT_CALIBRATION = "OUTPUT_CALIBRATION"
    METRICS = "METRICS"
    KIND = "calibrate"

    def name(self) -> str:
        return "calibrate"

    def displayName(self) -> str:  # noqa: N802
        return "Calibrate at gauges"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Fits the routing scheme's travel-time parameters (one multiplier per sub-basin between gauges, or "
                "one for the whole network) to observed discharge with the Thalweg backend (gradient descent through "
                "the differentiable routing), then routes with them. Writes the discharge NetCDF, the calibration "
                "record (JSON: multipliers, loss, NSE/KGE/bias per gauge) and the summary layer.")

    def add_gauge_parameters(self) -> None:
        self.addParameter(QgsProcessingParameterFile(self.GAUGES, "Gauges CSV (gauge_id, reach id)", extension="csv"))
        self.addParameter(QgsProcessingParameterFile(self.OBSERVED, "Observed discharge CSV", extension="csv"))
        self.addParameter(QgsProcessingParameterNumber(self.ITERATIONS, "Iterations (most)", defaultValue=200,
                                                       minValue=1, maxValue=100000))
        self.addParameter(QgsProcessingParameterEnum(self.ZONES_PARAM, "Zones", options=list(ZONES), defaultValue=0))
        self.addParameter(QgsProcessingParameterNumber(self.WARMUP, "Warm-up steps (left out of the loss)",
                                                       defaultValue=0, minValue=0))

    def initAlgorithm(self, config=None):  # noqa: N802
        super().initAlgorithm(config)
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT_CALIBRATION, "Calibration record (JSON)",
                                                                "JSON files (*.json)", optional=True))
        self.addOutput(QgsProcessingOutputString(self.METRICS, "Metrics at gauges (JSON)"))

    def job_body(self, parameters, context, feedback):
        body = super().job_body(parameters, context, feedback)
        body["iterations"] = self.parameterAsInt(parameters, self.ITERATIONS, context)
        body["zones"] = ZONES[self.parameterAsEnum(parameters, self.ZONES_PARAM, context)]
        body["warmup"] = self.parameterAsInt(parameters, self.WARMUP, context)
        return body

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        import json

        results = super().processAlgorithm(parameters, context, feedback)
        record = self._record
        dest = self.parameterAsFileOutput(parameters, self.OUTPUT_CALIBRATION, context)
        if dest and "calibration" in record["outputs"]:
            results[self.OUTPUT_CALIBRATION] = self.copy_output(record, "calibration", dest)
        results[self.METRICS] = json.dumps(record["result"].get("metrics"))
        return results
