"""Regenerate resources/styles/discharge_summary.qml with QGIS's own Python (run with /usr/bin/python3).

The summary layer's default style: graduated colour and a data-defined line width, both by the mean discharge
(field ``mean``, m3/s), legend in m3/s. Written by QGIS 3.22 itself (symbology, and the fields' aliases with
units), so 3.22 loads it.
Usage:
    QT_QPA_PLATFORM=offscreen /usr/bin/python3 scripts/make_summary_style.py \
        resources/styles/discharge_summary.qml
"""
import sys
from qgis.core import (QgsApplication, QgsGraduatedSymbolRenderer, QgsMapLayer, QgsProperty, QgsRendererRange,
                       QgsSymbol, QgsSymbolLayer, QgsVectorLayer, QgsWkbTypes)
from qgis.PyQt.QtGui import QColor
QgsApplication.setPrefixPath("/usr", True)
app = QgsApplication([], False)
app.initQgis()
# the summary layer's fields (thalweg.results.writers.SUMMARY_FIELDS) and their aliases with units
FIELDS = [("reach_id", "long", "Reach id"), ("downstream_id", "long", "Downstream reach id"),
          ("length_m", "double", "Length [m]"), ("area_km2", "double", "Drainage area [km2]"),
          ("mean", "double", "Mean discharge [m3/s]"), ("max", "double", "Maximum discharge [m3/s]"),
          ("time_of_max", "datetime", "Time of maximum [UTC]"), ("q05", "double", "Q5, high flow [m3/s]"),
          ("q50", "double", "Q50, median [m3/s]"), ("q95", "double", "Q95, low flow [m3/s]")]
uri = "LineString?crs=EPSG:4326&" + "&".join(f"field={name}:{kind}" for name, kind, _ in FIELDS)
layer = QgsVectorLayer(uri, "discharge", "memory")
for k, (_name, _, alias) in enumerate(FIELDS):
    layer.setFieldAlias(k, alias)
breaks = [0.0, 0.1, 1, 10, 100, 1000, 10000, 1e9]
colors = ["#c6dbef", "#9ecae1", "#6baed6", "#4292c6", "#2171b5", "#08519c", "#08306b"]
expr = 'coalesce(min(2.5, 0.25 + 0.45 * log10(max("mean", 0.1) / 0.1)), 0.25)'
def fmt(v):
    return f"{v:,.0f}" if v >= 1 else f"{v:g}"
r = QgsGraduatedSymbolRenderer("mean")
for k, (lo, hi) in enumerate(zip(breaks[:-1], breaks[1:])):
    sym = QgsSymbol.defaultSymbol(QgsWkbTypes.LineGeometry)
    sym.setColor(QColor(colors[k]))
    sym.symbolLayer(0).setDataDefinedProperty(QgsSymbolLayer.PropertyStrokeWidth, QgsProperty.fromExpression(expr))
    label = f"{fmt(lo)} – {fmt(hi)} m³/s" if hi < 1e9 else f"> {fmt(lo)} m³/s"
    rng = QgsRendererRange(lo, hi, sym, label)
    r.addClassRange(rng)
layer.setRenderer(r)
print(layer.saveNamedStyle(sys.argv[1], categories=QgsMapLayer.Symbology | QgsMapLayer.Fields))
