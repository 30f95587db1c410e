"""thalweg:stats: flood-frequency flows (with confidence intervals), flow-duration quantiles and low flows per
reach of a discharge file, as a layer styled by a return-period flow."""
from __future__ import annotations

from qgis.core import (QgsProcessingParameterEnum, QgsProcessingParameterFile, QgsProcessingParameterNumber,
                       QgsProcessingParameterString)

from .planning import PlanningAlgorithm, parse_years


class StatsAlgorithm(PlanningAlgorithm):
    DISCHARGE = "DISCHARGE"
    RETURN_PERIODS = "RETURN_PERIODS"
    STATISTICS = "STATISTICS"
    # the backend's --statistics choices (thalweg.config.PlanningSettings.statistics), in this order
    STATISTICS_CHOICES = (("auto", "What the run allows (say what is skipped)"),
                          ("all", "All (refuse a run too short for the flood-frequency fit)"),
                          ("duration", "Flow-duration only (mean, max, Q5/Q50/Q95, 7-day low flow)"))
    DEFAULT_PERIODS = "2, 5, 10, 20, 50, 100"
    BOOTSTRAP = "BOOTSTRAP"
    CONFIDENCE = "CONFIDENCE"
    TABLE, LAYER, OUTPUT_NAME = "stats", "stats", "Flow statistics"

    def name(self) -> str:
        return "stats"

    def displayName(self) -> str:  # noqa: N802
        return "Flood frequency and low flows"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Per reach of a routed discharge file (Thalweg, RAPID/GEOGloWS Qout, river-route Q): annual maxima by "
                "water year, a GEV (or Gumbel) fit by L-moments (Hosking & Wallis 1997), the flows of the return "
                "periods asked (q2y ... q100y, m3/s) with bootstrap confidence intervals (q100y_lo, q100y_hi), the "
                "flow-duration quantiles Q5/Q50/Q95, the mean annual flow and the 7-day low flows (MAM7, min7). "
                "Only complete water years count. 'What the run allows' computes, on a run too short for a fit, the "
                "statistics that need no years and says what it skipped (years it has and needs); return periods "
                "other than the default count as asked for, and a run too short for them is refused. The layer is "
                "styled by the longest return period's flow (m3/s), or by the peak when the run has none.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_network_parameters("River network that was routed (line layer)")
        self.addParameter(QgsProcessingParameterFile(self.DISCHARGE, "Discharge file (NetCDF)", extension="nc"))
        self.addParameter(QgsProcessingParameterString(self.RETURN_PERIODS, "Return periods, years",
                                                       defaultValue=self.DEFAULT_PERIODS))
        self.addParameter(QgsProcessingParameterEnum(self.STATISTICS, "Statistics",
                                                     options=[label for _, label in self.STATISTICS_CHOICES],
                                                     defaultValue=0))
        self.add_frequency_parameters(advanced=False)
        boot = QgsProcessingParameterNumber(self.BOOTSTRAP, "Bootstrap resamples of the intervals (0: none)",
                                            QgsProcessingParameterNumber.Integer, defaultValue=200, minValue=0,
                                            maxValue=10000)
        conf = QgsProcessingParameterNumber(self.CONFIDENCE, "Confidence level of the intervals",
                                            QgsProcessingParameterNumber.Double, defaultValue=0.9, minValue=0.5,
                                            maxValue=0.999)
        for param in (boot, conf):
            param.setFlags(param.flags() | param.FlagAdvanced)
            self.addParameter(param)
        self.add_outputs()

    def job_body(self, parameters, context, feedback):
        statistics = self.STATISTICS_CHOICES[self.parameterAsEnum(parameters, self.STATISTICS, context)][0]
        periods = parse_years(self.parameterAsString(parameters, self.RETURN_PERIODS, context))
        # the default periods are left to the backend, so that 'auto' may skip them on a short run
        asked = None if periods == parse_years(self.DEFAULT_PERIODS) else periods
        return {"kind": "stats", "label": "QGIS Processing: thalweg:stats", "name": "stats",
                "discharge": self.parameterAsFile(parameters, self.DISCHARGE, context),
                "statistics": statistics, "return_periods": asked,
                "bootstrap": self.parameterAsInt(parameters, self.BOOTSTRAP, context),
                "confidence": self.parameterAsDouble(parameters, self.CONFIDENCE, context),
                **self.frequency_fields(parameters, context)}
