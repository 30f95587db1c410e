"""Regenerate resources/models/thalweg_scenarios.model3 with QGIS's own Python (run with /usr/bin/python3).

The Processing model a planner runs for a runoff scenario: route the baseline runoff and the scenario runoff over
one network (thalweg:route twice), compare a statistic of the two runs (thalweg:compare: a diverging map of the
change) and print the report (thalweg:report: the change map, the gauges' hydrographs of both runs, their metrics
and the reaches most changed). Several scenarios: run it in batch mode (one row per scenario file) or once per
scenario from qgis_process.bin. Built through QGIS's model API with the plugin's algorithms registered, so QGIS
3.22 writes the file it reads.
Usage:
    QT_QPA_PLATFORM=offscreen /usr/bin/python3 scripts/make_scenario_model.py resources/models/thalweg_scenarios.model3
"""
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = Path(tempfile.mkdtemp(prefix="thalweg-plugins-"))
(PLUGINS / "thalweg").symlink_to(ROOT / "plugin", target_is_directory=True)
sys.path.insert(0, str(PLUGINS))

from qgis.core import (QgsApplication, QgsProcessing, QgsProcessingModelAlgorithm,  # noqa: E402
                       QgsProcessingModelChildAlgorithm, QgsProcessingModelChildParameterSource,
                       QgsProcessingModelOutput, QgsProcessingModelParameter, QgsProcessingParameterFeatureSink,
                       QgsProcessingParameterFile, QgsProcessingParameterFileDestination, QgsProcessingParameterString,
                       QgsProcessingParameterVectorLayer)
from qgis.PyQt.QtCore import QPointF  # noqa: E402

QgsApplication.setPrefixPath("/usr", True)
app = QgsApplication([], False)
app.initQgis()
import thalweg  # noqa: E402  (the plugin package, from the temporary plugins folder)

plugin = thalweg.classFactory(None)
plugin.initProcessing()

model = QgsProcessingModelAlgorithm("Route and compare a runoff scenario", "Thalweg", "thalweg")
model.setHelpContent({"ALG_DESC": "Routes a baseline runoff and a scenario runoff over one river network with "
                                  "Thalweg, compares a statistic of the two runs per reach (scenario minus baseline, "
                                  "m3/s) and prints a PDF report: the change map, hydrographs of both runs at the "
                                  "gauges with their metrics, and the reaches most changed. For several scenarios, "
                                  "run the model in batch mode, one row per scenario."})


def model_input(param, x: float, y: float) -> None:
    component = QgsProcessingModelParameter(param.name())
    component.setPosition(QPointF(x, y))
    component.setDescription(param.description())
    model.addModelParameter(param, component)


def source(name: str):
    return [QgsProcessingModelChildParameterSource.fromModelParameter(name)]


def child_output(child: str, output: str):
    return [QgsProcessingModelChildParameterSource.fromChildOutput(child, output)]


model_input(QgsProcessingParameterVectorLayer("network", "River network (line layer)",
                                              [QgsProcessing.TypeVectorLine]), 120, 60)
model_input(QgsProcessingParameterFile("baseline_runoff", "Baseline runoff (NetCDF or CSV)"), 120, 130)
model_input(QgsProcessingParameterFile("scenario_runoff", "Scenario runoff (NetCDF or CSV)"), 120, 200)
model_input(QgsProcessingParameterString("statistic", "Statistic to compare (mean, max, q05, q50, q95, "
                                                      "mean_annual, mam7, min7, q100y, ...)", defaultValue="max"),
            120, 270)
model_input(QgsProcessingParameterFile("gauges", "Gauges CSV (gauge_id, reach id)", optional=True,
                                       extension="csv"), 120, 340)
model_input(QgsProcessingParameterFile("observed", "Observed discharge CSV", optional=True, extension="csv"), 120, 410)
model_input(QgsProcessingParameterString("title", "Report title", defaultValue="Runoff scenario"), 120, 480)


def add_child(alg_id: str, child_id: str, description: str, sources: dict, x: float, y: float,
              outputs: dict | None = None) -> None:
    child = QgsProcessingModelChildAlgorithm(alg_id)
    assert child.algorithm() is not None, f"{alg_id} is not registered"
    child.setChildId(child_id)
    child.setDescription(description)
    child.setPosition(QPointF(x, y))
    for name, value in sources.items():
        child.addParameterSources(name, value)
    if outputs:
        mapped = {}
        for name, (child_output_name, label) in outputs.items():
            out = QgsProcessingModelOutput(name, label)
            out.setChildId(child_id)
            out.setChildOutputName(child_output_name)
            mapped[name] = out
        child.setModelOutputs(mapped)
    model.addChildAlgorithm(child)


add_child("thalweg:route", "route_baseline", "Route the baseline runoff",
          {"NETWORK": source("network"), "RUNOFF": source("baseline_runoff")}, 420, 120)
add_child("thalweg:route", "route_scenario", "Route the scenario runoff",
          {"NETWORK": source("network"), "RUNOFF": source("scenario_runoff")}, 420, 220)
add_child("thalweg:compare", "compare", "Compare scenario with baseline",
          {"NETWORK": source("network"), "BASELINE": child_output("route_baseline", "OUTPUT_Q"),
           "SCENARIO": child_output("route_scenario", "OUTPUT_Q"), "STATISTIC": source("statistic")}, 700, 170,
          outputs={"change": ("OUTPUT", "Change per reach")})
add_child("thalweg:report", "report", "Print the report",
          {"LAYER": child_output("compare", "OUTPUT"), "TITLE": source("title"), "NETWORK": source("network"),
           "DISCHARGE": child_output("route_baseline", "OUTPUT_Q"),
           "SCENARIO": child_output("route_scenario", "OUTPUT_Q"), "GAUGES": source("gauges"),
           "OBSERVED": source("observed"),
           "SOURCES": [QgsProcessingModelChildParameterSource.fromExpression(
               "'Baseline runoff: ' || file_name(@baseline_runoff) || ';Scenario runoff: ' || "
               "file_name(@scenario_runoff) || ';Statistic compared: ' || @statistic")]}, 960, 170,
          outputs={"report": ("OUTPUT", "Report (PDF)")})
for child in model.childAlgorithms().values():
    print(child.childId(), child.algorithmId())
# the model's own destination parameters for the two outputs
assert {p.name() for p in model.destinationParameterDefinitions()} >= {"compare:change", "report:report"}, \
    [p.name() for p in model.destinationParameterDefinitions()]
assert isinstance(model.parameterDefinition("compare:change"), QgsProcessingParameterFeatureSink)
assert isinstance(model.parameterDefinition("report:report"), QgsProcessingParameterFileDestination)
out = Path(sys.argv[1])
out.parent.mkdir(parents=True, exist_ok=True)
assert model.toFile(str(out)), out
print(out)
