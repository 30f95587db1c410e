"""Regenerate the planners' styles in resources/styles with QGIS's own Python (run with /usr/bin/python3).

- ``stats.qml``: the ``stats`` layer (thalweg stats), graduated blues by a return-period flow (``q100y``, m3/s);
- ``change.qml``: the ``change`` layer (thalweg compare), a diverging red-blue ramp centred on zero by the
  ``difference`` (scenario - baseline, m3/s): blue less water, red more, grey "no change" in the middle;
- ``exceedance.qml``: the ``exceedance`` layer (thalweg exceed), warning colours (yellow -> dark red) and wider
  lines by the hours above the threshold, reaches never above it thin grey.

The plugin keeps each style's symbols and fits the class limits to the layer it loads
(plugin/layers/planning.py); the limits written here are placeholders. Written by QGIS 3.22 itself (symbology
and the fields' aliases with units), so 3.22 loads them.
Usage:
    QT_QPA_PLATFORM=offscreen /usr/bin/python3 scripts/make_planning_styles.py resources/styles
"""
import sys
from pathlib import Path

from qgis.core import (QgsApplication, QgsGraduatedSymbolRenderer, QgsMapLayer, QgsRendererRange, QgsSymbol,
                       QgsVectorLayer, QgsWkbTypes)
from qgis.PyQt.QtGui import QColor

QgsApplication.setPrefixPath("/usr", True)
app = QgsApplication([], False)
app.initQgis()
OUT = Path(sys.argv[1])
PERIODS = (2, 5, 10, 20, 50, 100)
STATS = [("reach_id", "long", "Reach id"), ("mean_annual", "double", "Mean annual flow [m3/s]"),
         ("q05", "double", "Q5, high flow [m3/s]"), ("q50", "double", "Q50, median [m3/s]"),
         ("q95", "double", "Q95, low flow [m3/s]"), ("mam7", "double", "MAM7, mean annual 7-day minimum [m3/s]"),
         ("min7", "double", "Lowest 7-day mean [m3/s]")]
for t in PERIODS:
    STATS += [(f"q{t}y", "double", f"{t}-year flow [m3/s]"), (f"q{t}y_lo", "double", f"{t}-year flow, lower [m3/s]"),
              (f"q{t}y_hi", "double", f"{t}-year flow, upper [m3/s]")]
CHANGE = [("reach_id", "long", "Reach id"), ("baseline", "double", "Baseline [m3/s]"),
          ("scenario", "double", "Scenario [m3/s]"), ("difference", "double", "Change, scenario - baseline [m3/s]"),
          ("relative", "double", "Relative change [-]")]
EXCEED = [("reach_id", "long", "Reach id"), ("threshold", "double", "Threshold [m3/s]"),
          ("exceeded", "integer", "Exceeded"), ("first", "datetime", "First exceedance [UTC]"),
          ("duration_h", "double", "Hours above the threshold [h]"), ("events", "integer", "Separate events"),
          ("peak", "double", "Peak [m3/s]"), ("peak_excess", "double", "Peak above the threshold [m3/s]")]


def layer_of(fields):
    uri = "LineString?crs=EPSG:4326&" + "&".join(f"field={name}:{kind}" for name, kind, _ in fields)
    layer = QgsVectorLayer(uri, "planning", "memory")
    for k, (_name, _, alias) in enumerate(fields):
        layer.setFieldAlias(k, alias)
    return layer


def symbol(color: str, width: float):
    sym = QgsSymbol.defaultSymbol(QgsWkbTypes.LineGeometry)
    sym.setColor(QColor(color))
    sym.setWidth(width)
    return sym


def save(name, fields, attribute, classes):
    layer = layer_of(fields)
    renderer = QgsGraduatedSymbolRenderer(attribute)
    for lo, hi, color, width, label in classes:
        renderer.addClassRange(QgsRendererRange(lo, hi, symbol(color, width), label))
    layer.setRenderer(renderer)
    message, ok = layer.saveNamedStyle(str(OUT / name), categories=QgsMapLayer.Symbology | QgsMapLayer.Fields)
    print(name, message)
    assert ok, message


blues = ["#c6dbef", "#9ecae1", "#6baed6", "#4292c6", "#2171b5", "#08519c", "#08306b"]
save("stats.qml", STATS, "q100y",
     [(10.0 ** (k - 2), 10.0 ** (k - 1), c, 0.3 + 0.35 * k, f"class {k}") for k, c in enumerate(blues)])
# ColorBrewer RdBu (7), reversed so that more water is red; the middle class is a neutral grey
diverging = ["#2166ac", "#67a9cf", "#d1e5f0", "#d9d9d9", "#fddbc7", "#ef8a62", "#b2182b"]
widths = [1.6, 1.2, 0.8, 0.4, 0.8, 1.2, 1.6]
save("change.qml", CHANGE, "difference",
     [(k - 3.5, k - 2.5, c, w, f"class {k}") for k, (c, w) in enumerate(zip(diverging, widths))])
# the class attribute is an expression: -1 for reaches never above the threshold, else the hours above it
warning = [("#bdbdbd", 0.25), ("#fecc5c", 0.8), ("#fd8d3c", 1.1), ("#f03b20", 1.5), ("#bd0026", 2.0)]
save("exceedance.qml", EXCEED, 'if("exceeded", "duration_h", -1)',
     [(k - 1.5, k - 0.5, c, w, f"class {k}") for k, (c, w) in enumerate(warning)])
