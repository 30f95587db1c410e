"""thalweg:compare: the per-reach change of a statistic from a baseline run to a scenario run, on a diverging
map centred on zero."""
from __future__ import annotations

from qgis.core import QgsProcessingParameterEnum, QgsProcessingParameterFile, QgsProcessingParameterString

from .planning import PlanningAlgorithm

MAP_FIELDS = ("difference", "relative")


class CompareAlgorithm(PlanningAlgorithm):
    BASELINE = "BASELINE"
    SCENARIO = "SCENARIO"
    STATISTIC = "STATISTIC"
    MAP_FIELD = "MAP_FIELD"
    TABLE, LAYER, OUTPUT_NAME = "compare", "change", "Scenario change"

    def name(self) -> str:
        return "compare"

    def displayName(self) -> str:  # noqa: N802
        return "Compare scenarios"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Compares two runs on the same network and period (a baseline and a scenario: another runoff, "
                "other parameters): per reach, a statistic of each run (mean, max, q05, q50, q95, mean_annual, "
                "mam7, min7, or q{T}y: the T-year flood, e.g. q100y) and its change, scenario minus baseline, in "
                "m3/s (difference) and relative to the baseline (relative). Runs on different networks, steps or "
                "periods are refused with the reason. The map is diverging, centred on zero: red more water, "
                "blue less, grey no change.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_network_parameters("River network that was routed (line layer)")
        self.addParameter(QgsProcessingParameterFile(self.BASELINE, "Baseline discharge (NetCDF)", extension="nc"))
        self.addParameter(QgsProcessingParameterFile(self.SCENARIO, "Scenario discharge (NetCDF)", extension="nc"))
        self.addParameter(QgsProcessingParameterString(
            self.STATISTIC, "Statistic (mean, max, q05, q50, q95, mean_annual, mam7, min7, q100y, ...)",
            defaultValue="max"))
        self.addParameter(QgsProcessingParameterEnum(self.MAP_FIELD, "Map the change in",
                                                     options=["m3/s (difference)", "percent (relative)"],
                                                     defaultValue=0))
        self.add_frequency_parameters()
        self.add_outputs()

    def job_body(self, parameters, context, feedback):
        return {"kind": "compare", "label": "QGIS Processing: thalweg:compare", "name": "change",
                "baseline": self.parameterAsFile(parameters, self.BASELINE, context),
                "scenario": self.parameterAsFile(parameters, self.SCENARIO, context),
                "statistic": (self.parameterAsString(parameters, self.STATISTIC, context) or "max").strip(),
                **self.frequency_fields(parameters, context)}

    def map_field(self, parameters, context) -> str:
        return MAP_FIELDS[self.parameterAsEnum(parameters, self.MAP_FIELD, context)]
