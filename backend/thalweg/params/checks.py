"""The checks on routing parameters, in one place: names, given values, per-reach values, calibration choices.

Every caller (``route``, ``resolve_params``, ``calibrate``, the CLI settings and the service's bodies) uses
these, so one mistake gives one message wherever it is made. Bounds and positivity come from the scheme's
:class:`~thalweg.irf.Parameter` declarations.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ..errors import InputError, ThalwegWarning, format_ids, opt, render_options
from ..irf import Parameter, Scheme, get_scheme

__all__ = ["CALIBRATED_UNITS", "CELERITY_RANGE", "check_bounds", "check_celerity", "implied_celerity",
           "check_calibrated", "check_constant", "check_missing", "check_names", "check_values", "default_calibrated",
           "parameter"]

# parameters that scale travel times: a multiplier on them is what calibration usually means
CALIBRATED_UNITS = ("s", "m s-1")

# the plausible celerity of a flood wave along a reach, m/s (docs/parameters.md "Plausible celerities"): fitted
# travel times implying celerities outside it usually compensate for errors of the runoff or the observations
CELERITY_RANGE = (0.05, 5.0)


def parameter(scheme: str | Scheme, name: str) -> Parameter:
    """The declaration of ``name`` in ``scheme``; InputError (via :func:`check_names`) when it has none."""
    sch = get_scheme(scheme)
    check_names(sch, [name])
    return next(p for p in sch.parameters if p.name == name)


def check_names(scheme: str | Scheme, names: Iterable[str], *, option: str = "route.params") -> None:
    """InputError naming the parameters ``scheme`` does not take, with the ones it does."""
    sch = get_scheme(scheme)
    unknown = sorted(set(names) - set(sch.parameter_names))
    if unknown:
        raise InputError(f"the '{sch.name}' scheme takes no parameter(s) {', '.join(unknown)}.",
                         field=option.rsplit(".", 1)[-1],
                         hint=f"Its parameters are: {', '.join(sch.parameter_names)} (or choose another scheme with "
                              f"{opt('route.scheme')}).")


def check_missing(scheme: str | Scheme, given: Iterable[str], *, what: str = "parameter(s)") -> None:
    """InputError naming the parameters of ``scheme`` absent from ``given``."""
    sch = get_scheme(scheme)
    have = set(given)
    missing = [p.name for p in sch.parameters if p.name not in have]
    if missing:
        raise InputError(f"the '{sch.name}' scheme needs {what} {', '.join(missing)}.",
                         hint=f"Give {', '.join(missing)} per reach (an array or a field) or as constants, or "
                              f"resolve them all with thalweg.params.resolve_params (priors).")


def check_constant(scheme: str | Scheme, name: str, value: Any) -> float:
    """``value`` (a number given for the whole network) as a float; InputError when it is not a number or is
    outside the parameter's bounds (naming that parameter, whatever other parameters derive from it)."""
    spec = parameter(scheme, name)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputError(f"parameter '{name}' must be a number in {spec.unit} or a field name (got {value!r}).",
                         field=name)
    number = float(value)
    if bool(spec.outside(np.float64(number))):
        raise InputError(f"parameter '{name}' = {number:g} is outside {spec.bounds_text()} ({spec.description}).",
                         field=name, hint=f"Give {name} inside its physical bounds.")
    return number


def check_values(network: Any, spec: Parameter, values: Any) -> None:
    """InputError naming the reaches (count, first ids, first values) where per-reach ``values`` [N] (numpy or
    torch) are missing or outside the bounds of ``spec``."""
    # the bounds are an interval, so every value is inside when the smallest and the largest are (NaN, which
    # min and max propagate, is outside): two values through ``outside`` and one device sync, in place of a mask
    # over N (isfinite alone took 0.16 ms at 100k reaches on the CPU, the mask 0.4 ms); the mask only to name them
    if type(values).__module__.startswith("torch"):
        import torch

        with torch.no_grad():
            v = values.detach()
            if v.numel() and not spec.outside(torch.stack(torch.aminmax(v)).double().cpu().numpy()).any():
                return
            bad = spec.outside(v)
            if not bool(bad.any()):
                return
            bad_idx = torch.nonzero(bad).flatten().cpu().numpy()
            shown = v[bad][:3].double().cpu().numpy()
    else:
        arr = np.asarray(values, dtype=np.float64)
        if arr.size and not spec.outside(np.array([arr.min(), arr.max()])).any():
            return
        bad = spec.outside(arr)
        if not bad.any():
            return
        bad_idx = np.flatnonzero(bad)
        shown = arr[bad][:3]
    ids = network.ids[bad_idx]
    raise InputError(
        f"parameter '{spec.name}' is missing or outside {spec.bounds_text()} at {bad_idx.size:,} reaches: "
        f"{format_ids(ids)} (values {', '.join(f'{v:.4g}' for v in shown)}).",
        path=network.source.path, ids=ids.tolist(),
        hint="Correct those values or their field; bounds are physical limits of the scheme.")


def default_calibrated(scheme: str | Scheme) -> list[str]:
    """Names of the parameters calibrated by default: those in seconds or m/s (k, tau, lag, celerity)."""
    return [p.name for p in get_scheme(scheme).parameters if p.unit in CALIBRATED_UNITS]


def check_calibrated(scheme: str | Scheme, names: Iterable[str] | None) -> list[str]:
    """The parameters to calibrate: ``names`` checked (parameters of the scheme), or the default ones; InputError
    when a name is not a parameter or when there is nothing to calibrate."""
    sch = get_scheme(scheme)
    chosen = list(default_calibrated(sch) if names is None else names)
    unknown = [n for n in chosen if n not in sch.parameter_names]
    if unknown:
        raise InputError(f"the '{sch.name}' scheme has no parameter {', '.join(map(str, unknown))} to calibrate.",
                         field="calibrate", hint=f"Its parameters are: {', '.join(sch.parameter_names)}.")
    if not chosen:
        raise InputError(f"nothing to calibrate: the '{sch.name}' scheme has no parameter in s or m/s.",
                         field="calibrate",
                         hint=f"Name the parameters to calibrate among {', '.join(sch.parameter_names)} "
                              f"({opt('calibrate.parameters')}).")
    return chosen


def check_bounds(scheme: str | Scheme, bounds: Any) -> dict[str, tuple[float, float]]:
    """Narrower bounds of learned parameters, name -> (lower, upper) SI, checked: parameters of the scheme, two
    finite increasing numbers inside the parameter's physical bounds. Returns them as floats."""
    sch = get_scheme(scheme)
    bounds = dict(bounds or {})
    check_names(sch, bounds, option="run_fit.bounds")
    out = {}
    for name, pair in bounds.items():
        spec = parameter(sch, name)
        try:
            lo, hi = (float(v) for v in pair)
        except (TypeError, ValueError):
            raise InputError(f"bounds of '{name}' are {pair!r}; give two numbers, lower and upper.", field="bounds",
                             hint=f"Give {opt('run_fit.bounds')} a lower and an upper value in {spec.unit}.") from None
        if not (np.isfinite(lo) and np.isfinite(hi) and spec.lower <= lo < hi <= spec.upper):
            raise InputError(f"bounds of '{name}' are [{lo:g}, {hi:g}] {spec.unit}; they must be increasing and inside "
                             f"the '{sch.name}' scheme's physical bounds [{spec.lower:g}, {spec.upper:g}].",
                             field="bounds", hint=f"Narrow them within the physical bounds ({opt('run_fit.bounds')})"
                                                  ", or leave them out to keep the scheme's own.")
        out[name] = (lo, hi)
    return out


def implied_celerity(network: Any, scheme: str | Scheme, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Parameter name -> the celerity [N] m/s that its per-reach values imply: length / travel time for the
    parameters whose prior is a travel time (k, tau: times their ``prior_divisor``, e.g. Nash n), the values
    themselves for velocity parameters (celerity). Parameters absent from ``params`` are left out."""
    sch = get_scheme(scheme)
    out: dict[str, np.ndarray] = {}
    for p in sch.parameters:
        if p.name not in params or p.prior not in ("travel_time", "velocity"):
            continue
        values = np.asarray(_numpy(params[p.name]), dtype=np.float64)
        if p.prior == "velocity":
            out[p.name] = values
            continue
        if network.length is None:
            continue
        travel = values * (np.asarray(_numpy(params[p.prior_divisor]), dtype=np.float64)
                           if p.prior_divisor and p.prior_divisor in params else 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[p.name] = np.asarray(network.length, dtype=np.float64) / travel
    return out


def _round(value: float, up: bool = False) -> str:
    """A bound as people write it: whole numbers from 10 up (rounded outwards), 3 significant digits below."""
    if value >= 10:
        return f"{math.ceil(value) if up else math.floor(value):.0f}"
    return f"{value:.3g}"


def _numpy(values: Any) -> Any:
    if type(values).__module__.startswith("torch"):
        return values.detach().cpu().double().numpy()
    return values


def check_celerity(network: Any, scheme: str | Scheme, params: Mapping[str, Any], *,
                   names: Iterable[str] | None = None, what: str = "fitted",
                   bound_option: str | None = "run_fit.bounds", fix: str | None = None,
                   prior: Mapping[str, Any] | None = None) -> int:
    """Warn (ThalwegWarning) when per-reach ``params`` imply celerities outside :data:`CELERITY_RANGE`: the one
    plausibility rule of fitted parameters (calibrate, train, the service). Returns how many reaches are outside.

    ``names``: the parameters to check (default: every travel-time or velocity parameter given); ``what``: how
    the message calls them; ``bound_option``: the setting that narrows their bounds, suggested as the fix (None:
    the surface has none); ``fix``: another fix to say (a surface without bounds); ``prior``: name -> the prior
    [N] the fit started from, kept inside the suggested bounds (a model's bounds must hold its prior).
    """
    lo, hi = CELERITY_RANGE
    sch = get_scheme(scheme)
    wanted = None if names is None else set(names)
    worst = 0
    for name, celerity in implied_celerity(network, sch, params).items():
        if wanted is not None and name not in wanted:
            continue
        bad = ~((celerity >= lo) & (celerity <= hi))
        count = int(bad.sum())
        worst = max(worst, count)
        if not count:
            continue
        spec = parameter(sch, name)
        ids = network.ids[bad]
        values = np.asarray(_numpy(params[name]), dtype=np.float64)
        finite = celerity[np.isfinite(celerity)]
        span = f"{finite.min():.3g} to {finite.max():.3g} m/s" if finite.size else "none finite"
        text = (f"{count:,} of {network.n_reaches:,} reaches have a {what} {name} implying a celerity outside the "
                f"plausible {lo:g}-{hi:g} m/s ({span}; {name} from {values.min():.4g} to {values.max():.4g} "
                f"{spec.unit}) at reaches {format_ids(ids)}. Such values usually compensate for errors in the "
                f"runoff or the observations rather than describe the river.")
        if bound_option is not None:
            if spec.prior == "velocity":
                low, high, why = lo, hi, "the plausible range"
            else:  # travel times keeping every reach inside the range, when the lengths allow one bound for all
                lengths = np.asarray(network.length, dtype=np.float64)
                low, high = float(np.nanmax(lengths)) / hi, float(np.nanmin(lengths)) / lo
                why = f"every reach's {name} at {lo:g}-{hi:g} m/s"
                if not low < high:  # lengths spread over more than hi/lo: the median reach's range
                    length = float(np.nanmedian(lengths))
                    low, high, why = length / hi, length / lo, f"a median reach's {name} at {lo:g}-{hi:g} m/s"
            if prior is not None and name in prior:  # the bounds must hold the prior the fit starts from
                start = np.asarray(_numpy(prior[name]), dtype=np.float64)
                if float(np.nanmin(start)) < low or float(np.nanmax(start)) > high:
                    low, high = min(low, float(np.nanmin(start))), max(high, float(np.nanmax(start)))
                    why += ", widened to hold the prior"
            low, high = max(low, spec.lower), min(high, spec.upper)
            example = f"{name}={_round(low)}:{_round(high, up=True)}"
            text += f" Narrow {name}, e.g. {opt(bound_option, example)} ({why})."
        if fix:
            text += f" {fix}"
        warnings.warn(render_options(text), ThalwegWarning, stacklevel=2)
    return worst
