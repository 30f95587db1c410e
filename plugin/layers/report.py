"""The printable report: a QGIS print layout of a Thalweg result layer, exported to PDF.

Pages (A4 landscape):

1. the map: the styled layer, its legend (m³/s; the title says what is mapped), a scale bar, a north arrow, the
   title, the date made and the period routed, the data sources and the CRS;
2. hydrographs at the gauges (simulated in colour, observed in black; a panel per gauge), when the report has
   gauges (the backend's ``hydrographs`` job);
3. a table of the gauges' metrics (peak and mean flows, NSE, KGE, PBIAS) and, for a comparison, the reaches most
   changed.

Used by the panel (*Report (PDF)...*) and by ``thalweg:report``; both call :func:`build_report` and
:func:`export_pdf` on the main thread (layouts and their export are not thread-safe).
"""
from __future__ import annotations

import datetime as _dt
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from qgis.core import (Qgis, QgsFeature, QgsGeometry, QgsLayerTree, QgsLayoutExporter, QgsLayoutFrame,
                       QgsLayoutItemLabel, QgsLayoutItemLegend, QgsLayoutItemManualTable, QgsLayoutItemMap,
                       QgsLayoutItemPage, QgsLayoutItemPicture, QgsLayoutItemScaleBar, QgsLayoutMeasurement,
                       QgsLayoutPoint, QgsLayoutSize, QgsLayoutTable, QgsLegendRenderer, QgsLegendStyle,
                       QgsMarkerSymbol, QgsPalLayerSettings, QgsPrintLayout, QgsProject, QgsTableCell,
                       QgsTextBufferSettings, QgsTextFormat, QgsUnitTypes, QgsVectorLayer,
                       QgsVectorLayerSimpleLabeling)
from qgis.PyQt.QtGui import QColor, QFont

from ..errors import PluginError
from .planning import describe_field, layer_text, statistic_name, style_planning_layer, table_of
from .results import UNITS

__all__ = ["build_report", "export_pdf", "hydrograph_figure", "metric_rows", "most_changed_rows", "NORTH_ARROW"]

MM = QgsUnitTypes.LayoutMillimeters
PAGE_W, PAGE_H = 297.0, 210.0
MARGIN = 10.0
NORTH_ARROW = Path("/usr/share/qgis/svg/arrows/NorthArrow_02.svg")
FONT = "DejaVu Sans"
WHAT = {"stats": "Flood-frequency flows", "compare": "Scenario comparison", "exceedance": "Threshold exceedance",
        "summary": "Routed discharge"}


def _label(layout, text: str, x: float, y: float, w: float, h: float, size: float = 9.0, bold: bool = False,
           page: int = 0, html: bool = False) -> QgsLayoutItemLabel:
    item = QgsLayoutItemLabel(layout)
    item.setText(text)
    font = QFont(FONT)
    font.setPointSizeF(size)
    font.setBold(bold)
    item.setFont(font)
    if html:
        item.setMode(QgsLayoutItemLabel.ModeHtml)
    layout.addLayoutItem(item)
    item.attemptMove(QgsLayoutPoint(x, y, MM), page=page)
    item.attemptResize(QgsLayoutSize(w, h, MM))
    return item


def _add_page(layout) -> int:
    page = QgsLayoutItemPage(layout)
    page.setPageSize("A4", QgsLayoutItemPage.Landscape)
    layout.pageCollection().addPage(page)
    return layout.pageCollection().pageCount() - 1


def metric_rows(gauges: list[dict[str, Any]]) -> list[list[str]]:
    """The gauge table's rows (strings): gauge, name, reach, peak and mean simulated and observed (m³/s), NSE,
    KGE, PBIAS (%, + is simulated too low: hydroeval's sign, as the backend) and the observations used."""
    def num(v, fmt="{:.2f}"):
        return "–" if v is None or not math.isfinite(float(v)) else fmt.format(float(v))

    rows = []
    for g in gauges:
        obs = np.array([np.nan if v is None else v for v in (g.get("observed") or [])], dtype=np.float64)
        m = g.get("metrics") or {}
        has_obs = obs.size and np.isfinite(obs).any()
        name = str(g.get("name") or "")
        rows.append([str(g["gauge_id"]), "" if name == str(g["gauge_id"]) else name, str(g["reach_id"]),
                     num(g.get("peak"), "{:,.1f}"), num(np.nanmax(obs) if has_obs else None, "{:,.1f}"),
                     num(g.get("mean"), "{:,.2f}"), num(np.nanmean(obs) if has_obs else None, "{:,.2f}"),
                     num(m.get("nse")), num(m.get("kge")), num(m.get("pbias"), "{:+.1f}"),
                     str(int(m["n"])) if m.get("n") is not None else "0"])
        if "scenario_peak" in g:
            rows[-1].insert(4, num(g["scenario_peak"], "{:,.1f}"))
    return rows


def most_changed_rows(layer: QgsVectorLayer, n: int = 10) -> list[list[str]]:
    """The ``n`` reaches of a comparison layer with the largest change in m³/s (baseline, scenario, change, %)."""
    rows = []
    for f in layer.getFeatures():
        d = f["difference"]
        if isinstance(d, (int, float)) and math.isfinite(d):
            rows.append((abs(d), f))
    rows.sort(key=lambda r: -r[0])
    out = []
    for _, f in rows[:n]:
        rel = f["relative"]
        rel_text = f"{100 * rel:+.1f}" if isinstance(rel, (int, float)) and math.isfinite(rel) else "–"
        out.append([str(f["reach_id"]), f"{f['baseline']:,.2f}", f"{f['scenario']:,.2f}",
                    f"{f['difference']:+,.2f}", rel_text])
    return out


def hydrograph_figure(doc: dict[str, Any], path: Path, width_mm: float, height_mm: float) -> Path:
    """The hydrograph page's figure as SVG (vector in the PDF): one panel per gauge, simulated and observed."""
    import matplotlib.dates as mdates
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure

    gauges = doc["gauges"]
    t = np.array([s.rstrip("Z") for s in doc["time"]], dtype="datetime64[s]")
    fig = Figure(figsize=(width_mm / 25.4, height_mm / 25.4))
    FigureCanvasSVG(fig)
    axes = fig.subplots(len(gauges), 1, sharex=True, squeeze=False)[:, 0]
    for ax, g in zip(axes, gauges):
        sim = np.array([np.nan if v is None else v for v in g["simulated"]], dtype=np.float64)
        ax.plot(t, sim, color="#1f77b4", linewidth=1.1, label="simulated" + (", baseline" if "scenario" in g else ""))
        if g.get("scenario") is not None:
            scen = np.array([np.nan if v is None else v for v in g["scenario"]], dtype=np.float64)
            ax.plot(t, scen, color="#d62728", linewidth=1.0, linestyle="--", label="simulated, scenario")
        if g.get("observed") is not None:
            obs = np.array([np.nan if v is None else v for v in g["observed"]], dtype=np.float64)
            ax.plot(t, obs, color="black", linewidth=0.9, label="observed")
        m = g.get("metrics") or {}
        fit = []
        for key, name, fmt in (("nse", "NSE", "{:.2f}"), ("kge", "KGE", "{:.2f}"), ("pbias", "PBIAS", "{:+.1f} %")):
            v = m.get(key)
            if v is not None and math.isfinite(v):
                fit.append(f"{name} {fmt.format(v)}")
        name = f" {g['name']}" if g.get("name") and g["name"] != g["gauge_id"] else ""
        ax.set_title(f"{g['gauge_id']}{name} (reach {g['reach_id']})" + (f"    {' · '.join(fit)}" if fit else ""),
                     loc="left", fontsize=9)
        ax.set_ylabel(f"Q [{UNITS}]", fontsize=8)
        ax.set_ylim(bottom=0)
        ax.grid(True, color="#dddddd", linewidth=0.5)
        ax.tick_params(labelsize=7)
        ax.legend(loc="upper right", fontsize=7, frameon=True, framealpha=0.85)
    locator = mdates.AutoDateLocator(minticks=4, maxticks=10)
    axes[-1].xaxis.set_major_locator(locator)
    axes[-1].xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    axes[-1].set_xlabel("Time (UTC, end of each step)", fontsize=8)
    fig.tight_layout(h_pad=1.0)
    fig.savefig(str(path), format="svg")
    return path


def gauge_marks(layer: QgsVectorLayer, gauges: list[dict[str, Any]]) -> QgsVectorLayer | None:
    """A point layer 'Gauges' at the downstream end of each gauge's reach (where its discharge is), labelled with
    the gauge id; None when none of the gauges' reaches is in ``layer``."""
    where = {int(g["reach_id"]): str(g["gauge_id"]) for g in gauges}
    marks = QgsVectorLayer(f"Point?crs={layer.crs().authid() or layer.crs().toWkt()}&field=gauge_id:string",
                           "Gauges", "memory")
    features = []
    for f in layer.getFeatures():
        rid = f["reach_id"]
        if isinstance(rid, int) and rid in where and not f.geometry().isEmpty():
            vertices = list(f.geometry().vertices())
            point = QgsFeature(marks.fields())
            point.setGeometry(QgsGeometry(vertices[-1].clone()))
            point.setAttributes([where[rid]])
            features.append(point)
    if not features:
        return None
    marks.dataProvider().addFeatures(features)
    symbol = QgsMarkerSymbol.createSimple({"name": "triangle", "color": "#000000", "outline_color": "#ffffff",
                                           "outline_width": "0.3", "size": "3.2"})
    marks.renderer().setSymbol(symbol)
    labels = QgsPalLayerSettings()
    labels.fieldName = "gauge_id"
    fmt = QgsTextFormat()
    fmt.setFont(QFont(FONT))
    fmt.setSize(7.5)
    buffer = QgsTextBufferSettings()
    buffer.setEnabled(True)
    buffer.setSize(0.8)
    fmt.setBuffer(buffer)
    labels.setFormat(fmt)
    labels.placement = QgsPalLayerSettings.OrderedPositionsAroundPoint
    marks.setLabeling(QgsVectorLayerSimpleLabeling(labels))
    marks.setLabelsEnabled(True)
    return marks


def _table(layout, page: int, x: float, y: float, w: float, h: float, header: list[str], rows: list[list[str]],
           widths: list[float]) -> QgsLayoutItemManualTable:
    table = QgsLayoutItemManualTable.create(layout)
    layout.addMultiFrame(table)
    head = []
    for text in header:
        cell = QgsTableCell(text)
        cell.setBackgroundColor(QColor("#e8eef5"))
        head.append(cell)
    body = [[QgsTableCell(v) for v in row] for row in rows]
    table.setTableContents([head, *body])
    table.setIncludeTableHeader(False)
    table.setWrapBehavior(QgsLayoutTable.WrapText)  # long headers on two lines, never cut
    table.setColumnWidths(widths)
    fmt = QgsTextFormat()
    font = QFont(FONT)
    font.setPointSizeF(8.0)
    fmt.setFont(font)
    fmt.setSize(8.0)
    table.setContentTextFormat(fmt)
    table.setCellMargin(1.2)
    table.setGridStrokeWidth(0.2)
    table.setGridColor(QColor("#9a9a9a"))
    frame = QgsLayoutFrame(layout, table)
    frame.attemptMove(QgsLayoutPoint(x, y, MM), page=page)
    frame.attemptResize(QgsLayoutSize(w, h, MM))
    table.addFrame(frame)
    return table


def build_report(layer: QgsVectorLayer, *, title: str, project: QgsProject | None = None, field: str | None = None,
                 hydrographs: dict[str, Any] | None = None, sources: list[str] | None = None,
                 period: str | None = None, today: _dt.date | None = None) -> QgsPrintLayout:
    """A print layout of ``layer`` (styled here by its kind), with the gauges' pages when ``hydrographs`` (the
    backend's ``hydrographs.json``) holds gauges. Keep the returned layout (and ``layout.thalweg_keep``) alive
    until exported."""
    project = project or QgsProject.instance()
    table = table_of(layer)
    if table is None:
        raise PluginError(f"layer '{layer.name()}' is not a Thalweg result layer (stats, change, exceedance or "
                          f"discharge summary); map one made by Thalweg.")
    field = style_planning_layer(layer, table, field)
    legend_title = describe_field(table, field, layer)
    layout = QgsPrintLayout(project)
    layout.initializeDefaults()  # one A4 landscape page
    layout.setName(title)
    keep: list[Any] = []
    today = today or _dt.date.today()
    # ---- page 1: the map ----
    _label(layout, title, MARGIN, 7, PAGE_W - 2 * MARGIN, 11, size=18, bold=True)
    subtitle = f"{WHAT[table]}: {legend_title}"
    fit = layer_text(layer, "fit")
    if table == "stats" and fit:
        subtitle += f"; {fit}"
    if table == "exceedance":
        thresholds = [f["threshold"] for f in layer.getFeatures() if isinstance(f["threshold"], (int, float))]
        if thresholds and np.allclose(thresholds, thresholds[0]):
            subtitle += f"; threshold {thresholds[0]:,.3g} {UNITS}"
        elif thresholds:
            subtitle += f"; each reach's own threshold ({min(thresholds):,.3g} – {max(thresholds):,.3g} {UNITS})"
    _label(layout, subtitle, MARGIN, 18, PAGE_W - 2 * MARGIN, 7, size=10)
    map_w, map_h, map_y = 200.0, 168.0, 28.0
    item = QgsLayoutItemMap(layout)
    layout.addLayoutItem(item)  # before sizing: an item outside a layout keeps no size, and zooms to nothing
    item.attemptMove(QgsLayoutPoint(MARGIN, map_y, MM))
    item.attemptResize(QgsLayoutSize(map_w, map_h, MM))
    item.setCrs(layer.crs())
    gauges = list((hydrographs or {}).get("gauges") or [])
    marks = gauge_marks(layer, gauges) if gauges else None
    item.setLayers([marks, layer] if marks is not None else [layer])
    item.setKeepLayerSet(True)
    extent = layer.extent()
    if extent.isEmpty():
        raise PluginError(f"layer '{layer.name()}' has no geometries to map.")
    extent.scale(1.08)
    item.setExtent(extent)  # a fresh map has no extent (zoomToExtent keeps it empty); this changes the item's height
    item.attemptResize(QgsLayoutSize(map_w, map_h, MM))
    item.zoomToExtent(extent)  # the whole layer, at the item's aspect ratio
    item.setFrameEnabled(True)
    item.setFrameStrokeWidth(QgsLayoutMeasurement(0.3, MM))
    item.setBackgroundColor(QColor("#ffffff"))
    # north arrow in the map's top right corner
    arrow = QgsLayoutItemPicture(layout)
    arrow.setPicturePath(str(NORTH_ARROW))
    layout.addLayoutItem(arrow)
    arrow.attemptMove(QgsLayoutPoint(MARGIN + map_w - 16, map_y + 3, MM))
    arrow.attemptResize(QgsLayoutSize(12, 14, MM))
    arrow.setLinkedMap(item)
    arrow.setNorthMode(QgsLayoutItemPicture.GridNorth)
    # scale bar in its bottom left corner
    bar = QgsLayoutItemScaleBar(layout)
    bar.setStyle("Single Box")
    bar.setLinkedMap(item)
    bar.setUnits(QgsUnitTypes.DistanceKilometers)
    bar.setUnitLabel("km")
    bar.setMapUnitsPerScaleBarUnit(1000.0 if layer.crs().mapUnits() == QgsUnitTypes.DistanceMeters else 1.0)
    bar.setNumberOfSegments(2)
    bar.setNumberOfSegmentsLeft(0)
    bar.setHeight(2.0)
    bar.setBackgroundEnabled(True)
    bar.setBackgroundColor(QColor(255, 255, 255, 220))
    layout.addLayoutItem(bar)
    bar.applyDefaultSize(QgsUnitTypes.DistanceKilometers)
    bar.setUnitLabel("km")
    bar.attemptMove(QgsLayoutPoint(MARGIN + 4, map_y + map_h - 14, MM))
    # legend beside the map: only this layer, titled with what is mapped and its unit
    legend = QgsLayoutItemLegend(layout)
    root = QgsLayerTree()
    node = root.addLayer(layer)
    QgsLegendRenderer.setNodeLegendStyle(node, QgsLegendStyle.Hidden)  # the legend's title names what is mapped
    if marks is not None:
        root.addLayer(marks)
        keep.append(marks)
    keep.append(root)
    legend.setAutoUpdateModel(False)
    legend.model().setRootGroup(root)
    legend.setLinkedMap(item)
    # the unit, and what follows a comma, on lines of their own ('|' is the legend's wrap string)
    legend.setTitle(legend_title.replace(", ", ",|").replace(" [", "|["))
    legend.setStyleFont(QgsLegendStyle.Title, QFont(FONT, 11, QFont.Bold))
    legend.setStyleFont(QgsLegendStyle.Subgroup, QFont(FONT, 9, QFont.Bold))
    legend.setStyleFont(QgsLegendStyle.SymbolLabel, QFont(FONT, 8))
    legend.setSymbolWidth(9)
    legend.setWrapString("|")
    layout.addLayoutItem(legend)
    legend.attemptMove(QgsLayoutPoint(MARGIN + map_w + 6, map_y, MM))
    legend.attemptResize(QgsLayoutSize(PAGE_W - 2 * MARGIN - map_w - 6, 95, MM))
    legend.setResizeToContents(True)
    # what, when, from what
    crs = layer.crs()
    notes = [f"<b>Made</b> {today.isoformat()} with Thalweg and QGIS {Qgis.QGIS_VERSION.split('-')[0]}"]
    if period:
        notes.append(f"<b>Period routed</b> {period} (UTC)")
    notes.append(f"<b>Map layer</b> {layer.name()}: {layer.featureCount():,} reaches")
    notes.append(f"<b>CRS</b> {crs.authid()} {crs.description()}")
    if sources:
        notes.append("<b>Data sources</b><br>" + "<br>".join(sources))
    style = "font-family: DejaVu Sans; font-size: 7.5pt; line-height: 1.3; text-align: left"
    text = f"<div style='{style}'>" + "<br>".join(notes) + "</div>"
    _label(layout, text, MARGIN + map_w + 6, map_y + 98, PAGE_W - 2 * MARGIN - map_w - 6, map_h - 98, html=True)
    # ---- pages 2 and 3: gauges ----
    if gauges:
        page = _add_page(layout)
        _label(layout, "Hydrographs at the gauges", MARGIN, 7, PAGE_W - 2 * MARGIN, 10, size=14, bold=True,
               page=page)
        folder = Path(tempfile.mkdtemp(prefix="thalweg-report-"))
        svg = hydrograph_figure(hydrographs, folder / "hydrographs.svg", PAGE_W - 2 * MARGIN, PAGE_H - 30)
        picture = QgsLayoutItemPicture(layout)
        picture.setPicturePath(str(svg))
        layout.addLayoutItem(picture)
        picture.attemptMove(QgsLayoutPoint(MARGIN, 20, MM), page=page)
        picture.attemptResize(QgsLayoutSize(PAGE_W - 2 * MARGIN, PAGE_H - 30, MM))
        keep.append(folder)
    rows = metric_rows(gauges) if gauges else []
    changed = most_changed_rows(layer) if table == "compare" else []
    if rows or changed:
        page = _add_page(layout)
        y = 7.0
        if rows:
            _label(layout, "Gauges: simulated against observed discharge", MARGIN, y, PAGE_W - 2 * MARGIN, 10,
                   size=14, bold=True, page=page)
            header = ["Gauge", "Name", "Reach", f"Peak sim. [{UNITS}]", f"Peak obs. [{UNITS}]",
                      f"Mean sim. [{UNITS}]", f"Mean obs. [{UNITS}]", "NSE", "KGE", "PBIAS [%]", "Obs. steps"]
            widths = [24, 44, 14, 25, 25, 25, 25, 13, 13, 18, 18]
            if "scenario_peak" in gauges[0]:
                header[3] = f"Peak sim., baseline [{UNITS}]"
                header.insert(4, f"Peak sim., scenario [{UNITS}]")
                widths = [22, 36, 12, 25, 25, 23, 23, 23, 12, 12, 17, 17]
            height = 7.0 * (len(rows) + 2) + 2  # the header may take two lines
            _table(layout, page, MARGIN, y + 12, PAGE_W - 2 * MARGIN, height, header, rows, widths)
            y += 14 + height
            _label(layout, "NSE and KGE: 1 is a perfect fit; NSE 0 is no better than the observed mean. PBIAS: "
                           "percent bias of the volume, + when the simulation is too low (hydroeval's sign). Metrics "
                           "of the (baseline) simulation, over the steps where the gauge has observations.", MARGIN, y,
                   PAGE_W - 2 * MARGIN, 9, size=8,
                   page=page)
            y += 16
        if changed:
            what = statistic_name(layer_text(layer, "statistic") or "")
            _label(layout, f"Reaches most changed: {what}, scenario − baseline", MARGIN, y, PAGE_W - 2 * MARGIN, 10,
                   size=14, bold=True, page=page)
            header = ["Reach", f"Baseline [{UNITS}]", f"Scenario [{UNITS}]", f"Change [{UNITS}]", "Change [%]"]
            widths = [24, 32, 32, 32, 24]
            height = 7.0 * (len(changed) + 2) + 2
            _table(layout, page, MARGIN, y + 12, sum(widths) + 14, height, header, changed, widths)
    layout.thalweg_keep = keep  # the legend's tree and the figure's folder live as long as the layout
    return layout


def export_pdf(layout: QgsPrintLayout, path: str | Path) -> Path:
    """Export ``layout`` to the PDF ``path`` (vector, 300 dpi for any raster); PluginError naming the cause."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    settings = QgsLayoutExporter.PdfExportSettings()
    settings.dpi = 300
    settings.rasterizeWholeImage = False
    settings.forceVectorOutput = True
    result = QgsLayoutExporter(layout).exportToPdf(str(path), settings)
    if result != QgsLayoutExporter.Success:
        reasons = {QgsLayoutExporter.FileError: "the file cannot be written (folder missing or read-only?)",
                   QgsLayoutExporter.PrintError: "the printer could not start",
                   QgsLayoutExporter.MemoryError: "not enough memory", QgsLayoutExporter.Canceled: "cancelled"}
        raise PluginError(f"cannot export the report to {path}: {reasons.get(result, f'error {result}')}.")
    return path
