"""The only place where unit factors and unit detection live.

Inside Thalweg everything is SI: m, m^2, s, m^3/s. Readers convert with :func:`to_si`; writers
convert back with :func:`from_si`.
"""
from __future__ import annotations

import warnings

import numpy as np

from .errors import ThalwegWarning, UnitError, opt, render_options

__all__ = ["LENGTH", "AREA", "DEPTH", "DISCHARGE", "to_si", "from_si", "parse_unit", "guess_length_unit",
           "guess_area_unit", "TIME_UNITS"]

LENGTH = {"m": 1.0, "meter": 1.0, "meters": 1.0, "metre": 1.0, "metres": 1.0, "km": 1e3, "kilometer": 1e3,
          "kilometers": 1e3, "kilometre": 1e3, "kilometres": 1e3, "mi": 1609.344, "ft": 0.3048}
AREA = {"m2": 1.0, "m^2": 1.0, "m**2": 1.0, "km2": 1e6, "km^2": 1e6, "km**2": 1e6, "skm": 1e6, "sqkm": 1e6,
        "ha": 1e4, "mi2": 2589988.110336, "sqmi": 2589988.110336}
# depths of water over an area, to m
DEPTH = {"m": 1.0, "mm": 1e-3, "kg m-2": 1e-3, "kg/m2": 1e-3, "kg m**-2": 1e-3, "kg/m^2": 1e-3, "cm": 1e-2,
         "0.1 mm": 1e-4}
DISCHARGE = {"m3 s-1": 1.0, "m3/s": 1.0, "m^3/s": 1.0, "m**3/s": 1.0, "m3.s-1": 1.0, "cms": 1.0,
             "ft3 s-1": 0.028316846592, "cfs": 0.028316846592, "ft3/s": 0.028316846592, "l/s": 1e-3}
VOLUME = {"m3": 1.0, "m^3": 1.0, "m**3": 1.0}
TIME_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0, "hr": 3600.0, "hrs": 3600.0,
              "min": 60.0, "minute": 60.0, "minutes": 60.0,
              "h": 3600.0, "hour": 3600.0, "hours": 3600.0, "d": 86400.0, "day": 86400.0, "days": 86400.0}

_TABLES = {"length": LENGTH, "area": AREA, "depth": DEPTH, "discharge": DISCHARGE, "volume": VOLUME,
           "time": TIME_UNITS}


def parse_unit(unit: str, kind: str) -> float:
    """Factor that converts ``unit`` of ``kind`` ('length', 'area', ...) to SI; UnitError if unknown."""
    table = _TABLES[kind]
    key = " ".join(str(unit).strip().lower().split())
    if key in table:
        return table[key]
    raise UnitError(f"unknown {kind} unit '{unit}'.", hint=f"Use one of: {', '.join(sorted(table))}.")


def to_si(values, unit: str, kind: str) -> np.ndarray:
    return np.asarray(values, dtype="float64") * parse_unit(unit, kind)


def from_si(values, unit: str, kind: str) -> np.ndarray:
    return np.asarray(values, dtype="float64") / parse_unit(unit, kind)


def _from_name(name: str, table: dict[str, float]) -> str | None:
    lowered = name.lower()
    for unit in sorted(table, key=len, reverse=True):
        tokens = {f"_{unit}", f"{unit}_", f"({unit})", f"[{unit}]"}
        if lowered.endswith(unit) and len(lowered) > len(unit) or any(t in lowered for t in tokens):
            if unit in ("m", "m2") and lowered.endswith(("km", "km2", "skm", "sqkm")):
                continue
            return unit
    return None


def guess_length_unit(name: str, values, *, declared: str | None = None, source: str = "") -> str:
    """Unit of a length field from its name (``LENGTH_KM``, ``lengthkm``, ``Length_m``) or, failing that,
    from its values (a median under 100 can only be km for river reaches); warns when it guesses."""
    if declared:
        parse_unit(declared, "length")
        return declared
    unit = _from_name(name, {"km": 1e3, "m": 1.0, "meters": 1.0})
    if unit:
        return "m" if unit == "meters" else unit
    finite = np.asarray(values, dtype="float64")
    finite = finite[np.isfinite(finite)]
    unit = "km" if finite.size and np.median(finite) < 100.0 else "m"
    warnings.warn(render_options(f"{source}: field {name} has no unit in its name; its values (median "
                  f"{np.median(finite) if finite.size else float('nan'):.3g}) look like {unit}. "
                  f"Name the unit to silence this ({opt('read_network.length_unit', unit)})."),
                  ThalwegWarning, stacklevel=3)
    return unit


def guess_area_unit(name: str, values, *, declared: str | None = None, source: str = "") -> str:
    """Unit of an area field from its name (``UPLAND_SKM``, ``uparea`` = km2 in MERIT, ``DSContArea`` = m2)
    or its values (a median above 1e5 cannot be km2 for reach catchments)."""
    if declared:
        parse_unit(declared, "area")
        return declared
    unit = _from_name(name, {"km2": 1e6, "skm": 1e6, "sqkm": 1e6, "m2": 1.0})
    if unit:
        return "m2" if unit == "m2" else "km2"
    finite = np.asarray(values, dtype="float64")
    finite = finite[np.isfinite(finite)]
    unit = "m2" if finite.size and np.median(finite) > 1e5 else "km2"
    warnings.warn(render_options(f"{source}: field {name} has no unit in its name; its values (median "
                  f"{np.median(finite) if finite.size else float('nan'):.3g}) look like {unit}. "
                  f"Name the unit to silence this ({opt('read_network.area_unit', unit)})."),
                  ThalwegWarning, stacklevel=3)
    return unit
