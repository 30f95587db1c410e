"""What the planners' algorithms (stats, compare, exceedance, report) share: the flood-frequency options, the
job's map layer copied to the output and styled by its kind (:mod:`..layers.planning`)."""
from __future__ import annotations

from qgis.core import (QgsProcessingException, QgsProcessingOutputString, QgsProcessingParameterEnum,
                       QgsProcessingParameterFeatureSink, QgsProcessingParameterNumber)

from .base import ThalwegAlgorithm, style_on_load

__all__ = ["PlanningAlgorithm", "DISTRIBUTIONS", "parse_years"]

DISTRIBUTIONS = ("gev", "gumbel")


def parse_years(text: str, what: str = "return periods") -> list[float]:
    """``"2, 5, 10"`` (commas, semicolons or spaces) -> [2.0, 5.0, 10.0]; each more than one year."""
    parts = [p for p in text.replace(";", " ").replace(",", " ").split() if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise QgsProcessingException(f"{what}: '{text}' is not a list of numbers of years (e.g. 2, 10, 100)") \
            from None
    bad = [v for v in values if not v > 1]
    if bad or not values:
        raise QgsProcessingException(f"{what}: give years above 1 (e.g. 2, 10, 100), not '{text}'")
    return values


class PlanningAlgorithm(ThalwegAlgorithm):
    """A job that writes one map layer (``TABLE``: stats, compare or exceedance) on the network's lines."""

    DISTRIBUTION = "DISTRIBUTION"
    WATER_YEAR_START = "WATER_YEAR_START"
    OUTPUT = "OUTPUT"
    JOB_ID = "JOB_ID"
    TABLE = ""
    LAYER = ""  # the layer inside the job's GeoPackage (thalweg.results.planning.LAYERS)
    OUTPUT_NAME = ""

    def group(self) -> str:
        return "Planning"

    def groupId(self) -> str:  # noqa: N802
        return "planning"

    def add_frequency_parameters(self, advanced: bool = True) -> None:
        dist = QgsProcessingParameterEnum(self.DISTRIBUTION, "Annual-maximum distribution (fitted by L-moments; "
                                                             "gumbel needs 5 years, gev 10)",
                                          options=list(DISTRIBUTIONS), defaultValue=0)
        start = QgsProcessingParameterNumber(self.WATER_YEAR_START, "Month the water year starts in (1: calendar "
                                                                    "years; 10: October)",
                                             QgsProcessingParameterNumber.Integer, defaultValue=10, minValue=1,
                                             maxValue=12)
        for param in (dist, start):
            if advanced:
                param.setFlags(param.flags() | param.FlagAdvanced)
            self.addParameter(param)

    def add_outputs(self) -> None:
        self.addParameter(QgsProcessingParameterFeatureSink(self.OUTPUT, self.OUTPUT_NAME))
        self.addOutput(QgsProcessingOutputString(self.JOB_ID, "Backend job id"))

    def frequency_fields(self, parameters, context) -> dict:
        return {"distribution": DISTRIBUTIONS[self.parameterAsEnum(parameters, self.DISTRIBUTION, context)],
                "water_year_start": self.parameterAsInt(parameters, self.WATER_YEAR_START, context)}

    def map_field(self, parameters, context) -> str | None:
        """The field the output is mapped by (None: the table's default)."""
        return None

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        record = self.run_job(feedback)
        for key in ("method", "threshold"):
            if record.get("result", {}).get(key):
                feedback.pushInfo(f"{key}: {record['result'][key]}")
        dest = self.layer_to_sink(record["outputs"]["gpkg"], self.LAYER, parameters, self.OUTPUT, context, feedback)
        table, field = self.TABLE, self.map_field(parameters, context)

        def style(layer):
            from ..layers.planning import style_planning_layer

            style_planning_layer(layer, table, field)

        style_on_load(context, dest, style)
        return {self.OUTPUT: dest, self.JOB_ID: record["id"]}
