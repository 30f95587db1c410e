"""thalweg:route: route runoff through a river network layer; discharge NetCDF and a summary layer."""
from __future__ import annotations

from qgis.core import (QgsProcessingOutputString, QgsProcessingParameterEnum, QgsProcessingParameterFeatureSink,
                       QgsProcessingParameterFile, QgsProcessingParameterFileDestination,
                       QgsProcessingParameterString)

from .base import ThalwegAlgorithm, parse_params, style_on_load

CONVENTIONS = ("end", "mean", "both")


class RouteAlgorithm(ThalwegAlgorithm):
    RUNOFF = "RUNOFF"
    CATCHMENTS = "CATCHMENTS"
    SCHEME = "SCHEME"
    PARAMS = "PARAMS"
    ENGINE = "ENGINE"
    DEVICE = "DEVICE"
    CONVENTION = "CONVENTION"
    GAUGES = "GAUGES"
    OBSERVED = "OBSERVED"
    OUTPUT_Q = "OUTPUT_Q"
    OUTPUT = "OUTPUT"
    JOB_ID = "JOB_ID"
    KIND = "route"

    def name(self) -> str:
        return "route"

    def displayName(self) -> str:  # noqa: N802
        return "Route runoff"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Routes lateral runoff (a NetCDF or CSV file: RAPID m3_riv, catchment runoff, ...) through the river "
                "network of a line layer with the Thalweg backend (linear time-invariant routing: Muskingum, linear "
                "storage, Nash cascade, lag, Hayami). Writes the discharge NetCDF (Q at the end of each step, m3/s) "
                "and a layer of reaches with mean, max, time of max and Q5/Q50/Q95. Fields are detected by the "
                "backend; override them under Advanced parameters. Scheme parameters: name=value pairs (SI units) "
                "or name=field, e.g. 'k=36000; x=0.2'; unset ones follow the GEOGloWS rule.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_network_parameters()
        self.addParameter(QgsProcessingParameterFile(self.RUNOFF, "Runoff file (NetCDF or CSV)"))
        self.add_routing_parameters()
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT_Q, "Discharge (NetCDF)",
                                                                "NetCDF files (*.nc)"))
        self.addParameter(QgsProcessingParameterFeatureSink(self.OUTPUT, "Discharge summary", optional=True))
        self.addOutput(QgsProcessingOutputString(self.JOB_ID, "Backend job id"))

    def add_routing_parameters(self) -> None:
        optional_file = dict(optional=True)
        self.addParameter(QgsProcessingParameterFile(self.CATCHMENTS, "Catchment polygons (for gridded runoff)",
                                                     **optional_file))
        self.addParameter(QgsProcessingParameterString(
            self.SCHEME, "Routing scheme (muskingum_nonneg, muskingum, muskingum_substep, linear_storage, "
                         "nash_cascade, pure_lag, hayami)", defaultValue="muskingum_nonneg"))
        self.addParameter(QgsProcessingParameterString(self.PARAMS, "Scheme parameters (name=value; ...)",
                                                       optional=True))
        engine = QgsProcessingParameterString(self.ENGINE, "Engine (auto, exact, closure, fft)", defaultValue="auto")
        device = QgsProcessingParameterString(self.DEVICE, "Device (auto, cpu, cuda)", defaultValue="auto")
        convention = QgsProcessingParameterEnum(self.CONVENTION, "Output time convention", options=list(CONVENTIONS),
                                                defaultValue=0)
        for param in (engine, device, convention):
            param.setFlags(param.flags() | param.FlagAdvanced)
            self.addParameter(param)
        self.add_gauge_parameters()

    def add_gauge_parameters(self) -> None:
        self.addParameter(QgsProcessingParameterFile(self.GAUGES, "Gauges CSV (gauge_id, reach id)", optional=True,
                                                     extension="csv"))
        self.addParameter(QgsProcessingParameterFile(self.OBSERVED, "Observed discharge CSV", optional=True,
                                                     extension="csv"))

    def job_body(self, parameters, context, feedback):
        def text(name):
            return self.parameterAsString(parameters, name, context)

        body = {"kind": self.KIND, "runoff": self.parameterAsFile(parameters, self.RUNOFF, context),
                "scheme": text(self.SCHEME) or "muskingum_nonneg", "params": parse_params(text(self.PARAMS)),
                "engine": text(self.ENGINE) or "auto", "device": text(self.DEVICE) or "auto",
                "convention": CONVENTIONS[self.parameterAsEnum(parameters, self.CONVENTION, context)],
                "write_gpkg": True, "label": f"QGIS Processing: thalweg:{self.name()}"}
        for key, name in (("catchments", self.CATCHMENTS), ("gauges", self.GAUGES), ("observed", self.OBSERVED)):
            value = self.parameterAsFile(parameters, name, context)
            if value:
                body[key] = value
        return body

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        record = self._record = self.run_job(feedback)
        results = {self.JOB_ID: record["id"]}
        kind = "q" if "q" in record["outputs"] else "qout"
        results[self.OUTPUT_Q] = self.copy_output(record, kind, self.parameterAsFileOutput(parameters, self.OUTPUT_Q,
                                                                                           context))
        if parameters.get(self.OUTPUT) is not None and "gpkg" in record["outputs"]:
            dest = self.layer_to_sink(record["outputs"]["gpkg"], "discharge", parameters, self.OUTPUT, context,
                                      feedback)
            style_on_load(context, dest)
            results[self.OUTPUT] = dest
        return results
