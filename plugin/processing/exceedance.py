"""thalweg:exceedance: where and when discharge exceeds a threshold (a value, a network field or a return-period
flow), on a warning-style map."""
from __future__ import annotations

from qgis.core import (QgsProcessingException, QgsProcessingParameterField, QgsProcessingParameterFile,
                       QgsProcessingParameterNumber)

from .planning import PlanningAlgorithm


class ExceedanceAlgorithm(PlanningAlgorithm):
    DISCHARGE = "DISCHARGE"
    THRESHOLD = "THRESHOLD"
    THRESHOLD_FIELD = "THRESHOLD_FIELD"
    RETURN_PERIOD = "RETURN_PERIOD"
    TABLE, LAYER, OUTPUT_NAME = "exceedance", "exceedance", "Exceedance"

    def name(self) -> str:
        return "exceedance"

    def displayName(self) -> str:  # noqa: N802
        return "Threshold exceedance"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Reaches where the routed discharge exceeds a threshold at any time: give one of a value (m3/s, "
                "every reach), a field of the network (each reach's own threshold, m3/s) or a return period (each "
                "reach's flow of that return period, fitted on the same run). Per reach: the threshold, whether it "
                "was exceeded, the time of the first exceedance (end of step, UTC), the hours above it, the number "
                "of separate events, the peak and the peak above the threshold. Styled as a warning map: reaches "
                "never above it thin grey, the others yellow to dark red by hours above.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_network_parameters("River network that was routed (line layer)")
        self.addParameter(QgsProcessingParameterFile(self.DISCHARGE, "Discharge file (NetCDF)", extension="nc"))
        self.addParameter(QgsProcessingParameterNumber(self.THRESHOLD, "Threshold, m3/s (every reach)",
                                                       QgsProcessingParameterNumber.Double, optional=True))
        self.addParameter(QgsProcessingParameterField(self.THRESHOLD_FIELD, "or: a field holding each reach's "
                                                                            "threshold, m3/s",
                                                      parentLayerParameterName=self.NETWORK, optional=True,
                                                      type=QgsProcessingParameterField.Numeric))
        self.addParameter(QgsProcessingParameterNumber(self.RETURN_PERIOD, "or: the flow of this return period, "
                                                                           "years",
                                                       QgsProcessingParameterNumber.Double, optional=True,
                                                       minValue=1.01))
        self.add_frequency_parameters()
        self.add_outputs()

    def _rules(self, parameters, context) -> list[str]:
        given = [key for key, name in (("threshold", self.THRESHOLD), ("return_period", self.RETURN_PERIOD))
                 if parameters.get(name) not in (None, "")]
        if self.parameterAsString(parameters, self.THRESHOLD_FIELD, context):
            given.append("threshold_field")
        return given

    def checkParameterValues(self, parameters, context):  # noqa: N802  (QGIS's name: checked before the run)
        given = self._rules(parameters, context)
        if len(given) != 1:
            return False, ("give exactly one of: a threshold (m3/s), a threshold field or a return period (given: "
                           f"{', '.join(given) or 'none'})")
        return super().checkParameterValues(parameters, context)

    def job_body(self, parameters, context, feedback):
        body = {"kind": "exceedance", "label": "QGIS Processing: thalweg:exceedance", "name": "exceedance",
                "discharge": self.parameterAsFile(parameters, self.DISCHARGE, context),
                **self.frequency_fields(parameters, context)}
        given = self._rules(parameters, context)
        if len(given) != 1:  # checkParameterValues said so already; a caller may skip it
            raise QgsProcessingException(self.checkParameterValues(parameters, context)[1])
        for key, name in (("threshold", self.THRESHOLD), ("return_period", self.RETURN_PERIOD)):
            if key in given:
                body[key] = self.parameterAsDouble(parameters, name, context)
        if "threshold_field" in given:
            body["threshold_field"] = self.parameterAsString(parameters, self.THRESHOLD_FIELD, context)
        return body
