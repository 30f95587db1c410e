"""Scheme parameters typed as text (the panel's field, a Processing parameter): one reading of NAME=VALUE lists."""
from __future__ import annotations

from .errors import PluginError

__all__ = ["parse_params"]


def parse_params(text: str, where: str = "the parameter values") -> dict[str, float | str]:
    """``"k=36000, x=0.2"`` (commas or semicolons) -> ``{"k": 36000.0, "x": 0.2}``; a value that is not a number
    names a network field. PluginError naming ``where`` for a part that is not NAME=VALUE."""
    out: dict[str, float | str] = {}
    for part in (text or "").replace(";", ",").split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise PluginError(f"'{part.strip()}' in {where} is not NAME=VALUE; write e.g. k=36000, x=0.2 (SI units) "
                              f"or k=K_FIELD.")
        name, value = (s.strip() for s in part.split("=", 1))
        try:
            out[name] = float(value)
        except ValueError:
            out[name] = value
    return out
