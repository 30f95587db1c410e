"""The planners' layers in the map: which table a layer holds, and its style fitted to its values.

Layers come from the backend's ``stats``, ``compare`` and ``exceedance`` jobs (``thalweg stats|compare|exceed``):
GeoPackage layers named ``stats``, ``change`` and ``exceedance`` (thalweg.results.planning.LAYERS). Each style in
``resources/styles`` (made by QGIS with scripts/make_planning_styles.py) gives the symbols; the class limits and
the legend's labels (m³/s, hours) are set here from the layer's own values:

- ``stats``: log classes (1-2-5 ladder) of a return-period flow, as the discharge maps; a route result's
  summary layer likewise, by its mean discharge (the static map of a report);
- ``change``: a diverging ramp centred on zero, symmetric limits from the largest change, a grey "no change"
  class in the middle (changes below a hundredth of the largest are called no change);
- ``exceedance``: reaches never above the threshold thin grey, the others by hours above it.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
from qgis.core import QgsFeatureRequest, QgsGraduatedSymbolRenderer, QgsRendererRange, QgsVectorLayer

from ..errors import PluginError
from .results import STYLES, UNITS, discharge_label, nice_breaks, read_columns

__all__ = ["TABLES", "STYLE_OF", "table_of", "style_planning_layer", "default_field", "describe_field",
           "fit_change", "fit_duration", "statistic_name", "layer_text"]

TABLES = ("stats", "compare", "exceedance")
STYLE_OF = {"stats": STYLES / "stats.qml", "compare": STYLES / "change.qml", "exceedance": STYLES / "exceedance.qml",
            "summary": STYLES / "discharge_summary.qml"}
_PERIOD = re.compile(r"^q(\d+(?:\.\d+)?)y$")
EXCEEDED = 'if("exceeded", "duration_h", -1)'


def table_of(layer: QgsVectorLayer) -> str | None:
    """``stats``, ``compare``, ``exceedance``, ``summary`` (the route/summarize layer) or None, from its fields."""
    names = set(layer.fields().names())
    if {"baseline", "scenario", "difference", "relative"} <= names:
        return "compare"
    if {"exceeded", "duration_h", "threshold"} <= names:
        return "exceedance"
    if any(_PERIOD.match(n) for n in names) and "mam7" in names:
        return "stats"
    if {"mean", "max", "q50"} <= names:
        return "summary"
    return None


def default_field(layer: QgsVectorLayer, table: str) -> str:
    """The field a table is mapped by: the longest return period's flow (stats; the peak without one), the change
    in m³/s (compare), the hours above the threshold (exceedance), the mean (summary)."""
    if table == "stats":
        periods = sorted((float(m.group(1)), n) for n in layer.fields().names() if (m := _PERIOD.match(n)))
        if periods:
            return periods[-1][1]
        for name in ("max", "mean"):  # a run too short for a fit: its peak
            if layer.fields().indexOf(name) >= 0:
                return name
        raise PluginError(f"layer '{layer.name()}' holds no return-period flow (q2y, q100y, ...) nor a peak.")
    return {"compare": "difference", "exceedance": "duration_h", "summary": "mean"}[table]


STATISTIC_NAMES = {"mean": "mean discharge", "max": "peak discharge", "q05": "Q5 (high flow)",
                   "q50": "median discharge", "q95": "Q95 (low flow)", "mean_annual": "mean annual flow",
                   "mam7": "MAM7 low flow", "min7": "lowest 7-day mean flow"}


def statistic_name(statistic: str) -> str:
    """``max`` -> 'peak discharge', ``q100y`` -> '100-year flood' (the words of a comparison's statistic)."""
    m = _PERIOD.match(statistic or "")
    if m:
        return f"{float(m.group(1)):g}-year flood"
    return STATISTIC_NAMES.get(statistic, statistic or "statistic")


def layer_text(layer: QgsVectorLayer, field: str) -> str | None:
    """The value of a text column that is the same on every row (``statistic``, ``fit``), or None."""
    if layer.fields().indexOf(field) < 0:
        return None
    request = QgsFeatureRequest().setFlags(QgsFeatureRequest.NoGeometry).setSubsetOfAttributes([field],
                                                                                              layer.fields())
    request.setLimit(1)
    for f in layer.getFeatures(request):
        value = f[field]
        return str(value) if isinstance(value, str) and value else None
    return None


def describe_field(table: str, field: str, layer: QgsVectorLayer | None = None) -> str:
    """What the map shows, in words with units (the legend's title)."""
    if table == "stats":
        m = _PERIOD.match(field)
        if m:
            return f"{float(m.group(1)):g}-year flow [{UNITS}]"
    if table == "compare":
        what = statistic_name(layer_text(layer, "statistic")) if layer is not None else "statistic"
        return {"difference": f"Change in {what}, scenario − baseline [{UNITS}]",
                "relative": f"Relative change in {what}, scenario vs baseline [%]"}.get(field, field)
    if table == "exceedance":
        return "Hours above the threshold [h]"
    names = {"mean": "Mean discharge", "max": "Peak discharge", "q05": "Q5, high flow", "q50": "Median discharge",
             "q95": "Q95, low flow", "mean_annual": "Mean annual flow", "mam7": "MAM7 low flow"}
    return f"{names.get(field, field)} [{UNITS}]"


def _template(layer: QgsVectorLayer, style: Path) -> list:
    message, ok = layer.loadNamedStyle(str(style), True)  # this file, not the GeoPackage's embedded style
    if not ok:
        raise PluginError(f"cannot load the style {style}: {message}; reinstall the Thalweg plugin.")
    renderer = layer.renderer()
    if not isinstance(renderer, QgsGraduatedSymbolRenderer) or not renderer.ranges():
        raise AssertionError(f"{style} must hold a graduated renderer with classes")
    return [r.symbol().clone() for r in renderer.ranges()]


def _apply(layer: QgsVectorLayer, attribute: str, ranges: list[QgsRendererRange]) -> None:
    renderer = QgsGraduatedSymbolRenderer(attribute, ranges)
    layer.setRenderer(renderer)
    layer.triggerRepaint()


def fit_change(largest: float, n: int = 3) -> list[float]:
    """``n`` positive class limits of a diverging map, smallest first, on a 1-2-5 ladder below the largest change:
    the first (about a hundredth of the largest) bounds the grey 'no change' class, the last the outer classes."""
    largest = float(largest)
    if not math.isfinite(largest) or largest <= 0:
        return [1e-9 * 10.0 ** k for k in range(n)]  # nothing changed: every reach in the grey class
    ladder = [m * 10.0 ** e for e in range(math.floor(math.log10(largest)) - 6, math.ceil(math.log10(largest)) + 1)
              for m in (1, 2, 5)]
    inner = [v for v in ladder if largest / 100 <= v < largest]
    if len(inner) < n:
        inner = [v for v in ladder if v < largest][-n:]
    picks = sorted(set(np.linspace(0, len(inner) - 1, n).round().astype(int).tolist()))
    return [inner[i] for i in picks]


def fit_duration(longest: float, classes: int = 4) -> list[float]:
    """Upper limits of hours-above classes (6 h, 1 day, 3 days, ...), the last at or above ``longest``."""
    steps = [1, 3, 6, 12, 24, 48, 72, 168, 336, 720, 2160, 8760, 87600]
    longest = max(float(longest), 1.0) if math.isfinite(float(longest)) else 1.0
    top = next((s for s in steps if s >= longest), longest)
    lower = [s for s in steps if s < top][-(classes - 1):]
    return [*lower, top]


def _hours(h: float) -> str:
    return f"{h / 24:g} d" if h >= 48 and h % 24 == 0 else f"{h:g} h"


def style_planning_layer(layer: QgsVectorLayer, table: str | None = None, field: str | None = None) -> str:
    """Style a planners' layer (or a discharge summary layer) from its style file, classes fitted to its values;
    returns the field it is mapped by."""
    table = table or table_of(layer)
    if table is None:
        raise PluginError(f"layer '{layer.name()}' is not a Thalweg result (no stats, change, exceedance or "
                          f"discharge fields).")
    field = field or default_field(layer, table)
    if layer.fields().indexOf(field) < 0:
        raise PluginError(f"layer '{layer.name()}' has no field '{field}'.")
    symbols = _template(layer, STYLE_OF[table])
    values = read_columns(layer, [field])[field]
    finite = values[np.isfinite(values)]
    ranges = []
    if table in ("stats", "summary"):  # flows: log classes of this field's own values
        high = float(finite.max()) if finite.size else 1.0
        positive = finite[finite > 0]
        low = float(np.percentile(positive, 5)) if positive.size else high / 1000.0
        inner = nice_breaks(low, high, classes=len(symbols))
        limits = [-1e9, *inner, max(high, inner[-1] * 1.000001 if inner else high)]
        n = len(limits) - 1
        for i in range(n):
            # the palette's darkest symbols for the largest flows, whatever the count of classes
            sym = symbols[max(len(symbols) - n, 0) + min(i, len(symbols) - 1)].clone()
            lo, hi = limits[i], limits[i + 1]
            label = (f"< {discharge_label(hi)} {UNITS}" if i == 0 else
                     f"≥ {discharge_label(lo)} {UNITS}" if i == n - 1 else
                     f"{discharge_label(lo)} – {discharge_label(hi)} {UNITS}")
            ranges.append(QgsRendererRange(lo, hi, sym, label))
        _apply(layer, field, ranges)
    elif table == "compare":
        relative = field == "relative"
        scale = 100.0 if relative else 1.0
        largest = float(np.abs(finite).max()) * scale if finite.size else 0.0
        pos = fit_change(largest, (len(symbols) - 1) // 2)
        unit = "%" if relative else UNITS
        edges = [-1e12, *[-v for v in reversed(pos)], *pos, 1e12]

        def fmt(v: float) -> str:
            return ("+" if v > 0 else "−" if v < 0 else "") + (f"{abs(v):g}" if relative else discharge_label(abs(v)))

        n = len(edges) - 1
        middle, first = n // 2, (len(symbols) - n) // 2
        for i in range(n):
            lo, hi = edges[i], edges[i + 1]
            if i == 0:
                label = f"< {fmt(hi)} {unit} (less water)"
            elif i == n - 1:
                label = f"> {fmt(lo)} {unit} (more water)"
            elif i == middle:
                label = f"no change (within ±{fmt(hi)[1:]} {unit})"
            else:
                label = f"{fmt(lo)} to {fmt(hi)} {unit}"
            ranges.append(QgsRendererRange(lo, hi, symbols[first + i].clone(), label))
        _apply(layer, f'"{field}" * 100' if relative else field, ranges)
    else:  # exceedance
        exceeded = read_columns(layer, ["exceeded"])["exceeded"] > 0
        longest = float(values[exceeded & np.isfinite(values)].max()) if (exceeded & np.isfinite(values)).any() \
            else 1.0
        tops = fit_duration(longest, len(symbols) - 1)
        ranges.append(QgsRendererRange(-1e9, -0.5, symbols[0].clone(), "never above the threshold"))
        lo = -0.5
        for i, hi in enumerate(tops):
            label = f"above for up to {_hours(hi)}" if i == 0 else f"{_hours(tops[i - 1])} – {_hours(hi)} above"
            if i == len(tops) - 1:
                label = f"above for more than {_hours(tops[i - 1])}" if i else label
                hi = 1e12
            ranges.append(QgsRendererRange(lo, hi, symbols[i + 1].clone(), label))
            lo = hi
        _apply(layer, EXCEEDED, ranges)
    return field
