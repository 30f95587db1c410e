"""The ``thalweg`` Processing provider: through processing.run and through qgis_process.bin, compared number
for number with ``thalweg route`` on the command line (the backend's own CLI is the oracle)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from gui_helpers import QGIS_PROCESS
from qgis.core import QgsApplication, QgsFeatureRequest, QgsProcessingException, QgsVectorLayer

ROOT = Path(__file__).resolve().parents[2]
ALGORITHMS = ["thalweg:extractnetwork", "thalweg:route", "thalweg:calibrate", "thalweg:summarize", "thalweg:stats",
              "thalweg:compare", "thalweg:exceedance", "thalweg:report"]

COMPARE = """
import numpy as np
from thalweg.results import read_discharge
a, b = read_discharge(ARGS["a"]), read_discharge(ARGS["b"])
order = np.argsort(a.ids); other = np.argsort(b.ids)
va, vb = a.values[order].astype(np.float64), b.values[other].astype(np.float64)
print(json.dumps({"same_ids": bool(np.array_equal(a.ids[order], b.ids[other])),
                  "same_time": bool(np.array_equal(a.time, b.time)), "shape": list(va.shape),
                  "max_abs": float(np.abs(va - vb).max()), "peak": float(np.abs(va).max()),
                  "mean": dict(zip(map(str, a.ids.tolist()), a.values.astype(np.float64).mean(axis=1).tolist()))}))
"""


@pytest.fixture(scope="module")
def provider(plugin_package, backend):
    """The plugin loaded as QGIS loads it (classFactory, initProcessing), unloaded afterwards."""
    plugin = plugin_package.classFactory(None)
    plugin.initProcessing()
    yield QgsApplication.processingRegistry().providerById("thalweg")
    QgsApplication.processingRegistry().removeProvider(plugin.provider)


@pytest.fixture(scope="module")
def cli_route(run_cli, sample, tmp_path_factory):
    """``thalweg route`` of the sample basin on the command line: the oracle."""
    out = tmp_path_factory.mktemp("cli") / "Q.nc"
    run_cli("route", sample["rivers"], sample["runoff"], "-o", out)
    return out


def _compare(backend_exec, a, b):
    got = backend_exec(COMPARE, a=str(a), b=str(b))
    assert got["same_ids"] and got["same_time"] and got["shape"] == [123, got["shape"][1]]
    # the same backend code on the same inputs: equal to float32 rounding
    assert got["max_abs"] <= 1e-6 * got["peak"], got["max_abs"]
    return got


def test_provider_registers_the_eight_algorithms(provider):
    assert provider is not None and provider.name() == "Thalweg"
    assert sorted(a.id() for a in provider.algorithms()) == sorted(ALGORITHMS)
    for alg_id in ALGORITHMS:
        alg = QgsApplication.processingRegistry().algorithmById(alg_id)
        assert alg.shortHelpString() and alg.displayName()
        fresh = alg.create()  # batch mode and the modeler make fresh instances
        assert fresh is not alg and fresh.id() == alg_id and type(fresh) is type(alg)


def test_route_through_processing_matches_the_cli(provider, sample, cli_route, tmp_path, backend_exec):
    import processing

    out = tmp_path / "q.nc"
    result = processing.run("thalweg:route", {"NETWORK": str(sample["rivers"]), "RUNOFF": str(sample["runoff"]),
                                              "OUTPUT_Q": str(out), "OUTPUT": str(tmp_path / "summary.gpkg")})
    assert Path(result["OUTPUT_Q"]) == out and out.exists() and result["JOB_ID"]
    got = _compare(backend_exec, out, cli_route)
    summary = QgsVectorLayer(result["OUTPUT"], "summary", "ogr")
    assert summary.featureCount() == 123
    means = {str(f["reach_id"]): f["mean"] for f in summary.getFeatures()}
    assert means == pytest.approx(got["mean"], rel=1e-5)


def test_route_of_a_memory_layer_matches_the_cli(provider, rivers_layer, sample, cli_route, tmp_path, backend_exec):
    """A memory layer is extracted into arrays by the plugin and sent inline: same numbers as the file."""
    import processing

    memory = rivers_layer.materialize(QgsFeatureRequest())
    out = tmp_path / "q.nc"
    processing.run("thalweg:route", {"NETWORK": memory, "RUNOFF": str(sample["runoff"]), "OUTPUT_Q": str(out)})
    _compare(backend_exec, out, cli_route)


def test_validation_error_names_the_cycle(provider):
    import processing
    from qgis.core import QgsFeature, QgsGeometry

    layer = QgsVectorLayer("LineString?crs=EPSG:2154&field=LINKNO:integer&field=DSLINKNO:integer", "loop", "memory")
    features = []
    for i, (a, b) in enumerate([(1, 2), (2, 3), (3, 1)]):
        f = QgsFeature(layer.fields())
        f.setAttributes([a, b])
        f.setGeometry(QgsGeometry.fromWkt(f"LINESTRING({i} 0, {i + 1} 0)"))
        features.append(f)
    layer.dataProvider().addFeatures(features)
    with pytest.raises(QgsProcessingException, match=r"1 -> 2 -> 3 -> 1"):
        processing.run("thalweg:extractnetwork", {"NETWORK": layer, "OUTPUT": "memory:"})


def test_extract_network_writes_the_validated_reaches(provider, rivers_layer):
    import processing

    result = processing.run("thalweg:extractnetwork", {"NETWORK": rivers_layer, "OUTPUT": "memory:"})
    out = result["OUTPUT"]
    out = out if isinstance(out, QgsVectorLayer) else QgsVectorLayer(out)
    assert result["REACHES"] == 123 and result["OUTLETS"] == 1
    assert out.featureCount() == 123
    names = set(out.fields().names())
    assert {"reach_id", "downstream_id", "length_m", "area_km2", "level", "depth", "outlet_id"} <= names
    by_id = {f["LINKNO"]: (f["DSLINKNO"], f["LengthGeodesicMeters"]) for f in rivers_layer.getFeatures()}
    for f in out.getFeatures():
        down, length = by_id[f["reach_id"]]
        assert f["downstream_id"] == down and f["length_m"] == pytest.approx(length)
    assert json.loads(result["SUMMARY"])["reaches"] == 123


def test_summarize_maps_a_discharge_file(provider, sample, cli_route, backend_exec, tmp_path):
    import processing

    result = processing.run("thalweg:summarize", {"NETWORK": str(sample["rivers"]), "DISCHARGE": str(cli_route),
                                                  "OUTPUT": str(tmp_path / "s.gpkg")})
    layer = QgsVectorLayer(result["OUTPUT"], "s", "ogr")
    means = {str(f["reach_id"]): f["mean"] for f in layer.getFeatures()}
    expected = _compare(backend_exec, cli_route, cli_route)["mean"]
    assert means == pytest.approx(expected, rel=1e-6)


def test_calibrate_through_processing(provider, sample, tmp_path, run_cli, backend_exec):
    import processing

    params = {"NETWORK": str(sample["rivers"]), "RUNOFF": str(sample["runoff"]), "GAUGES": str(sample["gauges"]),
              "OBSERVED": str(sample["observed"]), "ITERATIONS": 3, "OUTPUT_Q": str(tmp_path / "q.nc"),
              "OUTPUT_CALIBRATION": str(tmp_path / "calibration.json")}
    result = processing.run("thalweg:calibrate", params)
    record = json.loads(Path(result["OUTPUT_CALIBRATION"]).read_text())
    metrics = json.loads(result["METRICS"])
    assert metrics and record["iterations"] <= 3
    cli = tmp_path / "cli.nc"
    run_cli("calibrate", sample["rivers"], sample["runoff"], "--gauges", sample["gauges"], "--observed",
            sample["observed"], "--iterations", "3", "-o", cli)
    _compare(backend_exec, tmp_path / "q.nc", cli)


# ---------------------------------------------------------------- qgis_process.bin (fixture in conftest.py)
def test_route_through_qgis_process_matches_the_cli(qgis_process_env, sample, cli_route, tmp_path, backend_exec):
    env = qgis_process_env["env"]
    listed = subprocess.run([QGIS_PROCESS, "list"], env=env, capture_output=True, text=True, timeout=300)
    assert all(a in listed.stdout for a in ALGORITHMS), listed.stdout[-2000:] + listed.stderr
    out = tmp_path / "q.nc"
    run = subprocess.run([QGIS_PROCESS, "run", "thalweg:route", "--", f"NETWORK={sample['rivers']}",
                          f"RUNOFF={sample['runoff']}", f"OUTPUT_Q={out}"], env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "JOB_ID" in run.stdout
    _compare(backend_exec, out, cli_route)
    # qgis_process started its own backend in its workspace and stopped it on exit
    assert not (qgis_process_env["workspace"] / "connection.json").exists()
