"""The planners' algorithms in QGIS (thalweg:stats, compare, exceedance, report) through a real backend, their
styles, the printable report (PDF pages rendered and their pixels checked) and the scenario model run by
qgis_process.bin. Oracles: the backend's own library and CLI (thalweg.results.frequency, thalweg compare)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from gui_helpers import QGIS_PROCESS
from qgis.core import QgsApplication, QgsProcessingException, QgsVectorLayer
from qgis.PyQt.QtGui import QImage

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "resources" / "models" / "thalweg_scenarios.model3"

YEARS = """
import numpy as np
from pathlib import Path
from thalweg.network import scheidegger_network
from thalweg.params import geoglows_muskingum
from thalweg.results import Discharge, read_discharge, write_q
from thalweg.results.frequency import exceedance, flow_statistics
from thalweg.routing import route
from thalweg.testing.layers import write_layer

folder = Path(ARGS["folder"])
net = scheidegger_network(30, seed=5, with_geometry=True)
rng = np.random.default_rng(2)
t = 12 * 365 + 3
runoff = (1 + 0.7 * np.sin(2 * np.pi * np.arange(t) / 365.25)) * rng.gamma(0.6, 2.0, (net.n_reaches, t))
q = route(net, runoff.astype(np.float32), geoglows_muskingum(net), "muskingum_substep", dt=86400.0).numpy()
time = np.datetime64("2000-10-01", "ns") + np.arange(1, t + 1) * np.timedelta64(1, "D")
base = write_q(folder / "base.nc", Discharge(q, net.ids, time, 86400.0))
changed = int(net.ids[7])
scen = write_q(folder / "scen.nc", Discharge(q * np.where(net.ids == changed, 1.5, 1.0)[:, None], net.ids, time,
                                             86400.0))
short = write_q(folder / "short.nc", Discharge(q[:, :-30], net.ids, time[:-30], 86400.0))
ds = np.where(net.downstream >= 0, net.ids[np.maximum(net.downstream, 0)], -1)
rivers = write_layer(folder / "rivers.gpkg", "hydrorivers", net.ids, ds, lengths=net.length, areas=net.area,
                     geometry=net.geometry)
d = read_discharge(base)
stats = flow_statistics(d, return_periods=[2, 10], n_boot=20, rng=np.random.default_rng(0))
threshold = float(np.median(d.values.max(axis=1)))  # about half the reaches above it at some time
ex = exceedance(d, threshold)
print(json.dumps({"base": str(base), "scen": str(scen), "short": str(short), "rivers": str(rivers),
                  "changed": changed, "ids": d.ids.tolist(), "q10y": stats["q10y"].tolist(),
                  "q10y_hi": stats["q10y_hi"].tolist(), "duration_h": ex["duration_h"].tolist(),
                  "exceeded": ex["exceeded"].tolist(), "threshold": threshold}))
"""


@pytest.fixture(scope="module")
def provider(plugin_package, backend):
    plugin = plugin_package.classFactory(None)
    plugin.initProcessing()
    yield QgsApplication.processingRegistry().providerById("thalweg")
    QgsApplication.processingRegistry().removeProvider(plugin.provider)


@pytest.fixture(scope="module")
def years(backend_exec, tmp_path_factory):
    """12 water years of daily discharge on a 30-reach network (a GeoPackage with lines), a scenario with one
    reach's discharge raised by half, a run 30 days shorter, and the library's statistics of the baseline."""
    return backend_exec(YEARS, folder=str(tmp_path_factory.mktemp("years")))


def _layer(path: str, name: str) -> QgsVectorLayer:
    """The output layer (Processing names a GeoPackage sink's layer after its file)."""
    layer = QgsVectorLayer(path, name, "ogr")
    assert layer.isValid(), path
    return layer


def _by_reach(layer, field):
    return {f["reach_id"]: f[field] for f in layer.getFeatures()}


def test_stats_algorithm_matches_the_library_and_is_styled_by_the_longest_return_period(provider, years, tmp_path):
    import processing

    from thalweg.layers.planning import style_planning_layer

    out = tmp_path / "stats.gpkg"
    result = processing.run("thalweg:stats", {"NETWORK": years["rivers"], "DISCHARGE": years["base"],
                                              "RETURN_PERIODS": "2, 10", "BOOTSTRAP": 20, "OUTPUT": str(out)})
    layer = _layer(result["OUTPUT"], "stats")
    got = _by_reach(layer, "q10y")
    want = dict(zip(years["ids"], years["q10y"]))
    assert got == pytest.approx(want, rel=1e-9)
    assert _by_reach(layer, "q10y_hi") == pytest.approx(dict(zip(years["ids"], years["q10y_hi"])), rel=1e-9)
    assert {f["fit"] for f in layer.getFeatures()} == {"GEV by L-moments, water years 2001-2012"}
    assert style_planning_layer(layer) == "q10y"
    ranges = layer.renderer().ranges()
    assert layer.renderer().classAttribute() == "q10y"
    assert all("m³/s" in r.label() for r in ranges)
    assert [r.lowerValue() for r in ranges[1:]] == [r.upperValue() for r in ranges[:-1]]
    assert ranges[-1].upperValue() >= max(want.values()) and ranges[-1].lowerValue() < max(want.values())


def test_stats_algorithm_on_a_short_run_maps_what_it_allows_or_refuses_what_was_asked(provider, sample, tmp_path,
                                                                                       run_cli):
    import processing

    from thalweg.layers.planning import style_planning_layer

    q = tmp_path / "Q.nc"
    run_cli("route", sample["rivers"], sample["runoff"], "-o", q, "-q")  # Q.gpkg: the route's own summary
    # the default: what four months allow (no return-period flow), mapped by the peak
    result = processing.run("thalweg:stats", {"NETWORK": str(sample["rivers"]), "DISCHARGE": str(q),
                                              "OUTPUT": str(tmp_path / "s.gpkg")})
    layer = _layer(result["OUTPUT"], "stats")
    names = set(layer.fields().names())
    assert {"mean", "max", "q05", "q50", "q95", "min7"} <= names and not any(n.startswith("q") and n.endswith("y")
                                                                           for n in names)
    assert style_planning_layer(layer, "stats") == "max"
    summary = _layer(f"{tmp_path / 'Q.gpkg'}|layername=discharge", "discharge")
    peaks = _by_reach(summary, "max")
    assert _by_reach(layer, "max") == pytest.approx(peaks, rel=1e-6)
    for asked in ({"STATISTICS": 1}, {"RETURN_PERIODS": "2, 10"}):  # all, or periods other than the default
        with pytest.raises(QgsProcessingException, match=r"(?=.*GEV fit needs at least 10)(?=.*has 0)"):
            processing.run("thalweg:stats", {"NETWORK": str(sample["rivers"]), "DISCHARGE": str(q),
                                             "OUTPUT": str(tmp_path / "s2.gpkg"), **asked})


def test_compare_changes_exactly_the_scenarios_reach_on_a_style_centred_on_zero(provider, years, tmp_path):
    import processing

    from thalweg.layers.planning import style_planning_layer

    result = processing.run("thalweg:compare", {"NETWORK": years["rivers"], "BASELINE": years["base"],
                                                "SCENARIO": years["scen"], "STATISTIC": "max",
                                                "OUTPUT": str(tmp_path / "change.gpkg")})
    layer = _layer(result["OUTPUT"], "change")
    diff = _by_reach(layer, "difference")
    assert [r for r, v in diff.items() if v != 0] == [years["changed"]]
    assert _by_reach(layer, "relative")[years["changed"]] == pytest.approx(0.5, rel=1e-6)
    style_planning_layer(layer)
    ranges = layer.renderer().ranges()
    lows, highs = [r.lowerValue() for r in ranges], [r.upperValue() for r in ranges]
    assert len(ranges) == 7 and lows[1:] == highs[:-1]
    # centred on zero: the limits mirror each other, the middle class holds 0 and is grey
    assert lows[1:4] == pytest.approx([-h for h in reversed(highs[3:6])])
    middle = ranges[3]
    assert middle.lowerValue() < 0 < middle.upperValue() and middle.label().startswith("no change")
    colour = middle.symbol().color()
    assert colour.red() == colour.green() == colour.blue()
    # the one changed reach (more water) falls in a red class, its largest change in the last one
    largest = diff[years["changed"]]
    assert ranges[-1].lowerValue() <= largest and "more water" in ranges[-1].label()
    assert ranges[-1].symbol().color().red() > ranges[-1].symbol().color().blue()
    assert ranges[0].symbol().color().blue() > ranges[0].symbol().color().red()
    assert all("m³/s" in r.label() for r in ranges)
    style_planning_layer(layer, field="relative")  # the same map in percent
    assert layer.renderer().classAttribute() == '"relative" * 100'
    assert all("%" in r.label() for r in layer.renderer().ranges())


def test_compare_refuses_runs_of_other_periods(provider, years, tmp_path):
    import processing

    with pytest.raises(QgsProcessingException, match="different periods"):
        processing.run("thalweg:compare", {"NETWORK": years["rivers"], "BASELINE": years["base"],
                                           "SCENARIO": years["short"], "OUTPUT": str(tmp_path / "c.gpkg")})


def test_exceedance_of_a_value_matches_the_library_on_a_warning_style(provider, years, tmp_path):
    import processing

    from thalweg.layers.planning import style_planning_layer

    result = processing.run("thalweg:exceedance", {"NETWORK": years["rivers"], "DISCHARGE": years["base"],
                                                   "THRESHOLD": years["threshold"],
                                                   "OUTPUT": str(tmp_path / "ex.gpkg")})
    layer = _layer(result["OUTPUT"], "exceedance")
    assert _by_reach(layer, "duration_h") == pytest.approx(dict(zip(years["ids"], years["duration_h"])))
    assert {r: bool(v) for r, v in _by_reach(layer, "exceeded").items()} == dict(zip(years["ids"],
                                                                                     years["exceeded"]))
    assert 0 < sum(years["exceeded"]) < len(years["ids"])  # both kinds of reach on the map
    style_planning_layer(layer)
    ranges = layer.renderer().ranges()
    assert ranges[0].label() == "never above the threshold" and ranges[0].upperValue() < 0
    grey, worst = ranges[0].symbol().color(), ranges[-1].symbol().color()
    assert grey.red() == grey.green() == grey.blue() and worst.red() > 150 > worst.green()
    assert ranges[-1].symbol().width() > ranges[0].symbol().width()
    longest = max(years["duration_h"])
    assert any(r.lowerValue() < longest <= r.upperValue() for r in ranges[1:])
    with pytest.raises(QgsProcessingException, match="exactly one of"):
        processing.run("thalweg:exceedance", {"NETWORK": years["rivers"], "DISCHARGE": years["base"],
                                              "OUTPUT": str(tmp_path / "none.gpkg")})


# ---------------------------------------------------------------- the report
def _pdf_pages(pdf: Path) -> int:
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    return int(next(line.split()[-1] for line in info.splitlines() if line.startswith("Pages:")))


def _render(pdf: Path, page: int, folder: Path, dpi: int = 50) -> np.ndarray:
    """Page ``page`` (1-based) as an RGB array [H, W, 3], rendered by poppler's pdftoppm."""
    assert shutil.which("pdftoppm"), "pdftoppm is missing: bash scripts/setup.sh installs poppler-utils"
    stem = folder / f"page{page}"
    subprocess.run(["pdftoppm", "-r", str(dpi), "-png", "-f", str(page), "-l", str(page), "-singlefile",
                    str(pdf), str(stem)], check=True)
    image = QImage(str(stem) + ".png").convertToFormat(QImage.Format_RGB888)
    ptr = image.constBits()
    ptr.setsize(image.sizeInBytes())
    rows = np.frombuffer(ptr, np.uint8).reshape(image.height(), image.bytesPerLine())
    return rows[:, :image.width() * 3].reshape(image.height(), image.width(), 3).astype(np.int32)


def _colour_fraction(rgb: np.ndarray, test) -> float:
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return float(test(r, g, b).mean())


@pytest.fixture(scope="module")
def cance_scenario(sample, run_cli, backend_settings, tmp_path_factory):
    """The sample basin routed twice: as given, and with the runoff upstream of gauge V3515010 (reach 37) x 1.5
    (scripts/scenario_runoff.py); the CLI's comparison of their peaks (a 'change' layer)."""
    from thalweg.service.process import clean_environment

    folder = tmp_path_factory.mktemp("cance")
    scen_runoff = folder / "runoff_x1.5.nc"
    subprocess.run([backend_settings.backend_python, str(ROOT / "scripts" / "scenario_runoff.py"),
                    str(sample["rivers"]), str(sample["runoff"]), str(scen_runoff), "--upstream-of", "37",
                    "--factor", "1.5", "--layer", "rivers"], check=True, env=clean_environment(backend_settings),
                   capture_output=True, timeout=300)
    run_cli("route", sample["rivers"], sample["runoff"], "-o", folder / "base.nc", "--no-gpkg", "-q")
    run_cli("route", sample["rivers"], scen_runoff, "-o", folder / "scen.nc", "--no-gpkg", "-q")
    run_cli("compare", folder / "base.nc", folder / "scen.nc", "-o", folder / "change.gpkg", "--network",
            sample["rivers"], "--layer", "rivers", "--statistic", "max", "-q")
    return {"folder": folder, "runoff": scen_runoff, "base": folder / "base.nc", "scen": folder / "scen.nc",
            "change": folder / "change.gpkg"}


def _check_report(pdf: Path, folder: Path, *, scenario: bool = True) -> None:
    """Three pages; the map page shows red (more water) and grey reaches of a comparison (blue reaches of a
    discharge map), the hydrograph page blue (and red: the scenario) and black lines; no page is blank."""
    assert pdf.exists() and _pdf_pages(pdf) == 3
    page1 = _render(pdf, 1, folder)
    h, w, _ = page1.shape
    map_area = page1[int(0.14 * h):int(0.92 * h), int(0.04 * w):int(0.70 * w)]
    red = _colour_fraction(map_area, lambda r, g, b: (r > 150) & (g < 110) & (b < 110))
    grey = _colour_fraction(map_area, lambda r, g, b: (abs(r - g) < 8) & (abs(g - b) < 8) & (r > 150) & (r < 235))
    blue = _colour_fraction(map_area, lambda r, g, b: (b > 120) & (b - r > 50))
    if scenario:
        assert red > 0.003 and grey > 0.003, (red, grey)
    else:
        assert blue > 0.003, blue
    page2 = _render(pdf, 2, folder, dpi=72)  # thin lines: enough pixels to tell their colours
    blue = _colour_fraction(page2, lambda r, g, b: (b > 140) & (b - r > 60))
    red = _colour_fraction(page2, lambda r, g, b: (r > 140) & (r - b > 60))
    black = _colour_fraction(page2, lambda r, g, b: (r < 60) & (g < 60) & (b < 60))
    assert blue > 5e-4 and black > 2e-3 and (red > 2e-4) == scenario, (blue, red, black)
    page3 = _render(pdf, 3, folder)
    assert _colour_fraction(page3, lambda r, g, b: r < 128) > 0.005  # the tables' text and grid


def test_report_of_a_comparison_with_gauges(provider, sample, cance_scenario, tmp_path, project):
    import processing

    layer = QgsVectorLayer(f"{cance_scenario['change']}|layername=change", "change", "ogr")
    project.addMapLayer(layer)
    style_before = layer.renderer().dump()
    pdf = tmp_path / "report.pdf"
    result = processing.run("thalweg:report", {
        "LAYER": layer, "TITLE": "The Cance at Sarras: upper-basin runoff +50 %", "NETWORK": str(sample["rivers"]),
        "DISCHARGE": str(cance_scenario["base"]), "SCENARIO": str(cance_scenario["scen"]),
        "GAUGES": str(sample["gauges"]), "OBSERVED": str(sample["observed"]),
        "SOURCES": "Scenario: runoff upstream of V3515010 x 1.5", "OUTPUT": str(pdf)})
    assert Path(result["OUTPUT"]) == pdf and result["PAGES"] == 3
    _check_report(pdf, tmp_path)
    assert layer.renderer().dump() == style_before  # the report styled its own copy


def test_report_from_the_panel_of_a_routed_result(qtbot, backend, backend_settings, provider, project, sample,
                                                 rivers_layer, tmp_path):
    """The panel's Report button fills thalweg:report from the panel (network, gauges, observations) and the
    result layer (its discharge file): the PDF of the routed sample basin."""
    import processing

    from gui_helpers import run_route
    from thalweg.gui import Gui
    from thalweg.layers.results import load_results

    gui = Gui(None, settings=backend_settings)
    qtbot.addWidget(gui.panel)
    try:
        project.addMapLayer(rivers_layer)
        gui.panel.layer_combo.setLayer(rivers_layer)
        gui.panel.gauges_file.setFilePath(str(sample["gauges"]))
        gui.panel.observed_file.setFilePath(str(sample["observed"]))
        layer = load_results(run_route(backend, sample), client=backend.client)
        assert set(gui.panel.planning_buttons) == {"stats", "compare", "exceedance", "report"}
        params = gui.planning_parameters("report")
        assert params["LAYER"] == layer.id() and params["NETWORK"] == rivers_layer.id()
        assert Path(params["DISCHARGE"]).exists() and params["GAUGES"] == str(sample["gauges"])
        pdf = tmp_path / "panel.pdf"
        result = processing.run("thalweg:report", {**params, "OUTPUT": str(pdf)})
        assert result["PAGES"] == 3
        _check_report(pdf, tmp_path, scenario=False)
        assert gui.planning_parameters("stats")["DISCHARGE"] == params["DISCHARGE"]
    finally:
        gui.unload()


def test_report_layout_items(sample, cance_scenario):
    """The map page holds what a printed map needs, the legend says m³/s and what changed, the gauge table has
    one row per gauge with the backend's metrics."""
    from qgis.core import (QgsLayoutItemLabel, QgsLayoutItemLegend, QgsLayoutItemMap, QgsLayoutItemPicture,
                           QgsLayoutItemScaleBar)

    from thalweg.layers.report import build_report, metric_rows

    layer = QgsVectorLayer(f"{cance_scenario['change']}|layername=change", "change", "ogr")
    doc = {"time": ["2020-01-01T01:00:00", "2020-01-01T02:00:00"], "units": "m3/s", "gauges": [
        {"gauge_id": "V3524010", "name": "La Cance à Sarras", "reach_id": 101, "simulated": [1.0, 3.0],
         "observed": [1.5, None], "metrics": {"nse": 0.5, "kge": 0.25, "pbias": 10.0, "n": 1}, "peak": 3.0,
         "mean": 2.0}]}
    layout = build_report(layer, title="T", hydrographs=doc, sources=["a source"], period="P")
    items = {type(i).__name__: i for i in layout.items() if not type(i).__name__.endswith("Page")}
    assert {"QgsLayoutItemMap", "QgsLayoutItemLegend", "QgsLayoutItemScaleBar", "QgsLayoutItemPicture",
            "QgsLayoutItemLabel"} <= set(items)
    maps = [i for i in layout.items() if isinstance(i, QgsLayoutItemMap)]
    assert len(maps) == 1 and not maps[0].extent().isEmpty() and maps[0].extent().contains(layer.extent())
    legend = next(i for i in layout.items() if isinstance(i, QgsLayoutItemLegend))
    assert "peak discharge" in legend.title() and "m³/s" in legend.title()
    bar = next(i for i in layout.items() if isinstance(i, QgsLayoutItemScaleBar))
    assert bar.linkedMap() is maps[0] and bar.unitLabel() == "km"
    pictures = [i for i in layout.items() if isinstance(i, QgsLayoutItemPicture)]
    assert any("NorthArrow" in p.picturePath() for p in pictures)
    texts = " ".join(i.text() for i in layout.items() if isinstance(i, QgsLayoutItemLabel))
    assert "a source" in texts and "Made" in texts and "EPSG:2154" in texts and "P (UTC)" in texts
    assert layout.pageCollection().pageCount() == 3
    assert metric_rows(doc["gauges"]) == [["V3524010", "La Cance à Sarras", "101", "3.0", "1.5", "2.00", "1.50",
                                           "0.50", "0.25", "+10.0", "1"]]


@pytest.mark.slow
def test_scenario_model_routes_compares_and_reports_in_qgis_process(qgis_process_env, sample, cance_scenario,
                                                                    tmp_path, backend_exec):
    """resources/models/thalweg_scenarios.model3, headless: two routes, the comparison and the report."""
    change, pdf = tmp_path / "change.gpkg", tmp_path / "report.pdf"
    run = subprocess.run([QGIS_PROCESS, "run", str(MODEL), "--", f"network={sample['rivers']}",
                          f"baseline_runoff={sample['runoff']}", f"scenario_runoff={cance_scenario['runoff']}",
                          "statistic=max", f"gauges={sample['gauges']}", f"observed={sample['observed']}",
                          "title=Cance scenario", f"compare:change={change}", f"report:report={pdf}"],
                         env=qgis_process_env["env"], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    _check_report(pdf, tmp_path)
    # the model's comparison is the CLI's
    got = backend_exec("""
import geopandas as gpd
a = gpd.read_file(ARGS["a"]).set_index("reach_id")["difference"]
b = gpd.read_file(ARGS["b"], layer="change").set_index("reach_id")["difference"]
print(json.dumps({"n": len(a), "max_abs": float((a - b.loc[a.index]).abs().max()), "changed": int((a != 0).sum())}))
""", a=str(change), b=str(cance_scenario["change"]))
    assert got["n"] == 123 and got["max_abs"] <= 1e-6 and got["changed"] > 0
