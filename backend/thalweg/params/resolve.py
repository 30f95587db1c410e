"""``resolve_params``: per-reach parameter arrays for a scheme, from what the user gave, the network's own
fields, and the priors the scheme's Parameter declarations name (GEOGloWS v2 rule, or the default)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import InputError, NetworkError, format_ids, opt
from ..irf import Scheme, get_scheme
from ..network import RiverNetwork
from .checks import check_constant, check_names, check_values
from .prior import geoglows_velocity

__all__ = ["resolve_params"]

_TRAVEL = "GEOGloWS rule: length / max(0.25, exp(0.16842 ln A - 4.68))"


def _need_lengths(network: RiverNetwork, what: str) -> None:
    bad = ~np.isfinite(network.length)
    if bad.any():
        raise NetworkError(
            f"{int(bad.sum()):,} reaches have no length, which {what} needs: {format_ids(network.ids[bad])}.",
            path=network.source.path, ids=network.ids[bad].tolist(),
            hint="Give line geometries or a length field, or give the parameters as constants or fields.")


def _need_areas(network: RiverNetwork, what: str) -> None:
    bad = ~(np.isfinite(network.area) & (network.area > 0))
    if bad.any():
        raise NetworkError(
            f"{int(bad.sum()):,} reaches have no drainage area, which the default {what} (GEOGloWS velocity rule) "
            f"needs: {format_ids(network.ids[bad])}.", path=network.source.path,
            field=network.source.field("area"), ids=network.ids[bad].tolist(),
            hint=f"Map an area field, give a flow-accumulation raster, or give {what} as a constant or field "
                 f"({opt('route.params')}).")


def _travel_time(network: RiverNetwork, what: str) -> np.ndarray:
    _need_lengths(network, f"the default {what} (GEOGloWS rule)")
    _need_areas(network, what)
    return network.length / geoglows_velocity(network.area)


# units of the network's own per-reach quantities (RiverNetwork fields and the attributes readers map)
_ROLE_UNITS = {"length": "m", "area": "m2", "catchment_area": "m2", "slope": "1", "stream_order": "1",
               "muskingum_k": "s", "muskingum_x": "1"}
_ROLE_NAMES = {"stream_order": "stream order", "catchment_area": "catchment area", "area": "drainage area",
               "muskingum_k": "Muskingum k", "muskingum_x": "Muskingum x"}


def _field(network: RiverNetwork, name: str, field: str, unit: str) -> np.ndarray:
    """The values of the network field ``field`` (an attribute name, or the file's field name) for parameter
    ``name``; errors say whether the field is absent, not numeric, or holds another quantity than ``name``."""
    by_file_name = {f: role for role, f in network.source.fields.items() if f}
    role = field if field in network.attrs or field in _ROLE_UNITS else by_file_name.get(field)
    core = role in ("length", "area", "catchment_area", "slope")
    if role is None or not (role in network.attrs or (core and getattr(network, role) is not None)):
        names = sorted({*network.attrs, *(f for f, r in by_file_name.items() if r in network.attrs)})
        raise InputError(f"field '{field}' for parameter '{name}' is not among the network's fields.",
                         path=network.source.path, field=field,
                         hint=f"Fields available: {', '.join(names) or 'none'}; or give {name} as a number in {unit}.")
    shown = field if role == field else f"{field} ({_ROLE_NAMES.get(role, role)})"
    raw = np.asarray(getattr(network, role) if core else network.attrs[role])
    if raw.dtype.kind not in "iuf":
        sample = ", ".join(repr(v) for v in raw[:3].tolist())
        raise InputError(f"field {shown} for parameter '{name}' is not numeric (values {sample}); {name} needs "
                         f"numbers in {unit}.", path=network.source.path, field=field,
                         hint=f"Choose a numeric field holding {name} in {unit}, or give {name} as a number.")
    role_unit = _ROLE_UNITS.get(role)
    if role_unit is not None and role_unit != unit:
        what = _ROLE_NAMES.get(role, role)
        raise InputError(f"field {shown} holds the network's {what} (unit {role_unit}), not {name} in {unit}.",
                         path=network.source.path, field=field,
                         hint=f"Give a field holding {name} in {unit}, or {name} as a number "
                              f"({opt('route.params')}); leave {name} out to use its prior.")
    return raw.astype(np.float64)


def _value(value: float, unit: str) -> str:
    """``3600 s``; a dimensionless value without its unit ('1')."""
    return f"{value:g}" if unit in ("1", "-", "") else f"{value:g} {unit}"


def resolve_params(network: RiverNetwork, scheme: str | Scheme,
                   spec: Mapping[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Per-reach parameter arrays for ``scheme`` and a note on where each came from.

    Parameters
    ----------
    network : the river network (N reaches).
    scheme : a name in ``thalweg.irf.SCHEMES`` or a Scheme (registered or not).
    spec : parameter name -> a constant (number, SI units) or the name of a network attribute (str).

    Returns
    -------
    (params, used) : ``params`` name -> float64 [N] (SI units), every parameter of the scheme; ``used`` name ->
        where it came from, for logs and provenance.

    Each parameter not in ``spec`` comes from the first of: the network attribute its declaration names
    (``Parameter.network_field``, e.g. ``muskingum_k``); its declared prior (``Parameter.prior``): 'travel_time'
    is the GEOGloWS v2 travel time length / max(0.25, exp(0.16842 ln A - 4.68)) s (divided by
    ``prior_divisor``'s value where declared), 'velocity' that velocity in m/s, 'default' the declared default.
    A user-registered scheme gets its priors the same way, from its own declarations.

    Raises
    ------
    InputError naming the parameter: an unknown name, a constant outside its bounds, a field that is absent or
    not numeric; NetworkError naming the reaches when a prior needs lengths or areas they lack. Per-reach
    values are checked against the bounds by the routing.
    """
    sch = get_scheme(scheme)
    spec = dict(spec or {})
    check_names(sch, spec)
    # constants first: a bad n must be reported as n, not as the tau derived from it
    constants = {name: check_constant(sch, name, value) for name, value in spec.items() if not isinstance(value, str)}
    fields = {name: _field(network, name, value, next(p.unit for p in sch.parameters if p.name == name))
              for name, value in spec.items() if isinstance(value, str)}
    for name, values in fields.items():
        check_values(network, next(p for p in sch.parameters if p.name == name), values)
    n = network.n_reaches
    if sch.uses_length:
        _need_lengths(network, f"the '{sch.name}' scheme")
    params: dict[str, np.ndarray] = {}
    used: dict[str, str] = {}
    pending = []
    for p in sch.parameters:
        if p.name in constants:
            params[p.name] = np.full(n, constants[p.name])
            used[p.name] = f"constant {_value(constants[p.name], p.unit)}"
        elif p.name in fields:
            params[p.name] = fields[p.name]
            used[p.name] = f"field {spec[p.name]}"
        elif p.network_field and p.network_field in network.attrs:
            params[p.name] = np.asarray(network.attrs[p.network_field], dtype=np.float64)
            used[p.name] = f"network field {network.source.field(p.network_field) or p.network_field}"
        elif p.prior == "travel_time":
            pending.append(p)
        elif p.prior == "velocity":
            _travel_time(network, p.name)
            params[p.name] = geoglows_velocity(network.area)
            used[p.name] = "GEOGloWS velocity rule"
        else:
            params[p.name] = np.full(n, p.default)
            used[p.name] = f"default {_value(p.default, p.unit)}"
    for p in pending:  # after the others, so a divisor (Nash n) is known whatever the declaration order
        travel = _travel_time(network, p.name)
        used[p.name] = _TRAVEL
        if p.prior_divisor:
            travel = travel / params[p.prior_divisor]
            used[p.name] += f", divided by {p.prior_divisor}"
        params[p.name] = travel
    return {p.name: params[p.name] for p in sch.parameters}, {p.name: used[p.name] for p in sch.parameters}
