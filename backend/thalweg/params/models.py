"""Parameter models: reach attributes -> every parameter of a routing scheme, within its physical bounds.

One interface, :class:`ParameterModel` (a ``torch.nn.Module`` whose ``forward()`` returns float64 tensors [N],
one per parameter of the scheme, SI units, differentiable in the model's weights), and four kinds:

- ``prior``: the fixed prior (the GEOGloWS v2 rule, constants or fields; :func:`prior_params`);
- ``zones``: one multiplier per sub-basin between gauges (the zones of ``learning.calibrate.gauge_zones``), clamped to
  the bounds, as ``thalweg calibrate`` has always fitted;
- ``per-reach``: one free value per reach, regularised towards the prior (:meth:`PerReachModel.penalty`);
- ``regression``: a small MLP of standardised reach attributes (:class:`RegressionModel`).

Every parameter learned by ``per-reach`` and ``regression`` goes through one bounded map (:class:`Bound`): its
prior is moved to an unbounded coordinate ``z = logit(u)`` with ``u`` the prior's position between the parameter's
bounds (in log space when the lower bound is positive, as for k, tau or celerity; linear otherwise, as for
Muskingum x in [0, 0.5]); a model adds its own offset to ``z`` and maps back with a sigmoid, so any offset gives a
value within bounds, and an offset of 0 gives the prior back (to float64 rounding). Near the lower bound the
sigmoid is an exponential, so an offset there acts as a log-multiplier.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import InputError, format_ids, opt
from ..irf import Scheme, get_scheme
from ..network import RiverNetwork

__all__ = ["Bound", "ParameterModel", "PriorModel", "ZonesModel", "PerReachModel", "RegressionModel",
           "MODELS", "build_model", "prior_params", "attribute_values", "DEFAULT_ATTRIBUTES", "zero_output_mlp"]

MODELS = ("prior", "zones", "per-reach", "regression")
DEFAULT_ATTRIBUTES = ("length", "area")
# attributes standardised in log space by default when all their values are positive (they span decades)
LOG_ATTRIBUTES = ("length", "area", "catchment_area", "slope")
_EDGE = 1e-12  # priors at a bound sit this close inside it (logit of 0 or 1 is infinite)


@dataclasses.dataclass(frozen=True)
class Bound:
    """The bounded map of one parameter.

    Attributes
    ----------
    name : parameter name.
    lower, upper : physical bounds, SI (the scheme's ``Parameter.lower/upper``, or narrower).
    space : 'log' (the map runs on log p; needs lower > 0) or 'linear'.
    """

    name: str
    lower: float
    upper: float
    space: str

    @classmethod
    def of(cls, scheme: Scheme, name: str, bounds: Mapping[str, Sequence[float]] | None = None) -> Bound:
        """The bound of parameter ``name``: the scheme's, or ``bounds[name]`` when given (must lie inside it)."""
        from .checks import check_bounds

        spec = {p.name: p for p in scheme.parameters}[name]
        lo, hi = spec.lower, spec.upper
        if bounds and name in bounds:
            lo, hi = check_bounds(scheme, {name: bounds[name]})[name]
        return cls(name, float(lo), float(hi), "log" if lo > 0 else "linear")

    def _unit(self, p: torch.Tensor) -> torch.Tensor:
        if self.space == "log":
            return (torch.log(p) - math.log(self.lower)) / (math.log(self.upper) - math.log(self.lower))
        return (p - self.lower) / (self.upper - self.lower)

    def to_free(self, p: torch.Tensor) -> torch.Tensor:
        """Unbounded coordinate z [N] of values p [N] (clipped just inside the bounds)."""
        return torch.logit(torch.clamp(self._unit(p), _EDGE, 1.0 - _EDGE))

    def from_free(self, z: torch.Tensor) -> torch.Tensor:
        """Values [N] within [lower, upper] of the unbounded coordinate z [N]; differentiable."""
        u = torch.sigmoid(z)
        if self.space == "log":
            p = torch.exp(math.log(self.lower) + (math.log(self.upper) - math.log(self.lower)) * u)
        else:
            p = self.lower + (self.upper - self.lower) * u
        # exp(log(upper)) can round past the bound, which the routing refuses
        return torch.clamp(p, self.lower, self.upper)

    def relative(self, p: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        """Departure from the prior: log(p / prior) in log space, (p - prior) / (upper - lower) otherwise."""
        if self.space == "log":
            return torch.log(p) - torch.log(prior)
        return (p - prior) / (self.upper - self.lower)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def prior_params(network: RiverNetwork, scheme: str | Scheme,
                 spec: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """The prior of every parameter of ``scheme`` per reach, float64 [N], SI.

    ``spec`` maps a parameter name to a constant (SI) or a network field name; the others come from the network's
    own fields or the GEOGloWS v2 rule (``resolve_params``: k = length / max(0.25, exp(0.16842 ln A - 4.68)) s,
    x = 0.25, the scheme's defaults elsewhere).
    """
    from .resolve import resolve_params

    return resolve_params(network, scheme, spec)[0]


def _learned(scheme: Scheme, learn: Sequence[str] | None) -> tuple[str, ...]:
    names = tuple(scheme.parameter_names if learn is None else learn)
    unknown = [n for n in names if n not in scheme.parameter_names]
    if unknown:
        raise InputError(f"the '{scheme.name}' scheme has no parameter {', '.join(unknown)} to learn.",
                         field="learn", hint=f"Its parameters are: {', '.join(scheme.parameter_names)}; e.g. "
                                             f"{opt('build_model.learn', repr(list(scheme.parameter_names[:1])))}.")
    if not names:
        raise InputError("nothing to learn: the list of parameters is empty.", field="learn",
                         hint=f"Name some of {', '.join(scheme.parameter_names)}, or use the 'prior' model.")
    return names


class ParameterModel(torch.nn.Module):
    """Reach attributes -> every parameter of a scheme, per reach, within the parameter's bounds.

    Parameters
    ----------
    scheme : the routing scheme (name or Scheme).
    prior : name -> float64 [N] (or scalar), the prior of every parameter of the scheme, SI.
    learn : names of the parameters the model changes (default: all of the scheme's); the others stay at the prior.
    bounds : name -> (lower, upper), narrower bounds than the scheme's physical ones (optional).
    prior_spec : how the prior was made (``prior_params``'s ``spec``), kept so that a saved model can rebuild
        the prior on another network; None when the prior was given as arrays.

    Attributes
    ----------
    kind : 'prior', 'zones', 'per-reach' or 'regression'.
    learned : names of the parameters the model changes.
    bounds : name -> :class:`Bound` of each learned parameter.
    n_reaches : N.

    ``forward()`` returns name -> float64 tensor [N] for every parameter of the scheme; ``penalty()`` a scalar
    regularisation term added to the loss (0 unless the kind has one); ``table()`` the values as numpy arrays.
    """

    kind = "base"

    def __init__(self, scheme: str | Scheme, prior: Mapping[str, Any], *, learn: Sequence[str] | None = None,
                 bounds: Mapping[str, Sequence[float]] | None = None, prior_spec: Mapping[str, Any] | None = None,
                 n_reaches: int | None = None) -> None:
        super().__init__()
        self.scheme = get_scheme(scheme)
        missing = [n for n in self.scheme.parameter_names if n not in prior]
        if missing:
            raise InputError(f"the prior lacks parameter(s) {', '.join(missing)} of the '{self.scheme.name}' scheme.",
                             field="prior", hint="Build the prior with thalweg.params.models.prior_params(network, "
                                                 "scheme).")
        arrays = {n: np.asarray(prior[n], dtype=np.float64) for n in self.scheme.parameter_names}
        if n_reaches is None:
            sizes = {a.size for a in arrays.values() if a.ndim > 0}
            n_reaches = sizes.pop() if len(sizes) == 1 else None
        if n_reaches is None:
            raise InputError("the prior's arrays must all have one value per reach (N).", field="prior")
        self.n_reaches = int(n_reaches)
        self.learned = _learned(self.scheme, learn) if self.kind != "prior" else ()
        self.bounds = {n: Bound.of(self.scheme, n, bounds) for n in self.learned}
        self.prior_spec = None if prior_spec is None else dict(prior_spec)
        for name, a in arrays.items():
            a = np.broadcast_to(a, (self.n_reaches,)).copy()
            if name in self.bounds:
                b = self.bounds[name]
                bad = ~np.isfinite(a) | (a < b.lower) | (a > b.upper)
                if b.space == "log":
                    bad |= ~(a > 0)
                if bad.any():
                    where = np.flatnonzero(bad)
                    raise InputError(f"the prior of '{name}' is missing or outside [{b.lower:g}, {b.upper:g}] at "
                                     f"{where.size:,} reaches (positions {format_ids(where)}; values "
                                     f"{', '.join(f'{v:.4g}' for v in a[where[:3]])}).", field="prior",
                                     hint="Give a prior within the bounds for every reach, or widen "
                                          f"{opt('build_model.bounds')}.")
            self.register_buffer(f"prior_{name}", torch.as_tensor(a, dtype=torch.float64))
        for name, b in self.bounds.items():
            self.register_buffer(f"free_prior_{name}", b.to_free(self.prior_of(name)))

    def prior_of(self, name: str) -> torch.Tensor:
        """The prior of parameter ``name``, float64 [N]."""
        return getattr(self, f"prior_{name}")

    def offsets(self) -> dict[str, torch.Tensor]:
        """name -> offset [N] added to the unbounded coordinate of each learned parameter (0: the prior)."""
        raise NotImplementedError

    def forward(self) -> dict[str, torch.Tensor]:
        out = {name: self.prior_of(name) for name in self.scheme.parameter_names}
        for name, delta in self.offsets().items():
            out[name] = self.bounds[name].from_free(getattr(self, f"free_prior_{name}") + delta)
        return out

    def penalty(self) -> torch.Tensor:
        """Regularisation added to the loss, a scalar tensor (0 here)."""
        return torch.zeros((), dtype=torch.float64, device=self.prior_of(self.scheme.parameter_names[0]).device)

    def table(self) -> dict[str, np.ndarray]:
        """Every parameter per reach, float64 [N], SI (the current values, detached)."""
        with torch.no_grad():
            return {n: v.detach().cpu().numpy().astype(np.float64) for n, v in self.forward().items()}

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary: kind, scheme, learned parameters, bounds, size."""
        return {"kind": self.kind, "scheme": self.scheme.name, "learned": list(self.learned),
                "bounds": {n: b.to_dict() for n, b in self.bounds.items()}, "reaches": self.n_reaches,
                "weights": int(sum(p.numel() for p in self.parameters()))}


class PriorModel(ParameterModel):
    """The prior itself, nothing learned (the baseline every other model starts from)."""

    kind = "prior"

    def offsets(self) -> dict[str, torch.Tensor]:
        return {}


class ZonesModel(ParameterModel):
    """One multiplier per zone and learned parameter, as ``thalweg calibrate`` has always fitted them:
    ``p = clamp(prior * exp(theta[zone]), lower, upper)`` (a clamped value gets no gradient, as before); reaches
    of zone -1 (no gauge downstream) keep the prior exactly.

    Parameters
    ----------
    zones : int64 [N], zone of each reach in 0..Z-1, -1 for none (``learning.calibrate.gauge_zones``).
    The others as :class:`ParameterModel`.
    """

    kind = "zones"

    def __init__(self, scheme, prior, zones: np.ndarray, **kwargs) -> None:
        zones = np.asarray(zones, dtype=np.int64)
        super().__init__(scheme, prior, n_reaches=zones.size, **kwargs)
        self.n_zones = int(zones.max(initial=-1)) + 1
        # zone -1 reads a fixed offset of 0 appended after the Z free ones
        self.register_buffer("zone_index", torch.as_tensor(np.where(zones >= 0, zones, self.n_zones)))
        self.theta = torch.nn.ParameterDict(
            {n: torch.nn.Parameter(torch.zeros(self.n_zones, dtype=torch.float64)) for n in self.learned})

    def offsets(self) -> dict[str, torch.Tensor]:
        """name -> log-multiplier [N] of each reach (0 in zone -1)."""
        out = {}
        for name in self.learned:
            theta = self.theta[name]
            out[name] = torch.cat([theta, theta.new_zeros(1)])[self.zone_index]
        return out

    def forward(self) -> dict[str, torch.Tensor]:
        out = {name: self.prior_of(name) for name in self.scheme.parameter_names}
        for name, log_m in self.offsets().items():
            b = self.bounds[name]
            value = torch.clamp(self.prior_of(name) * torch.exp(log_m), b.lower, b.upper)
            out[name] = torch.where(self.zone_index == self.n_zones, self.prior_of(name), value)
        return out

    def multipliers(self) -> dict[str, np.ndarray]:
        """name -> multiplier [Z] of each zone (before clamping to the bounds)."""
        return {name: torch.exp(t.detach()).cpu().numpy() for name, t in self.theta.items()}


class PerReachModel(ParameterModel):
    """One free offset per reach and learned parameter, regularised towards the prior.

    Parameters
    ----------
    downstream : int64 [N], position of each reach's downstream reach (-1 at outlets), for the smoothness term.
    prior_weight : weight of mean over reaches of r^2, r = log(p / p_prior) (or the bounded-range difference for
        parameters with a zero lower bound, see :meth:`Bound.relative`).
    smooth_weight : weight of mean over links of (r_i - r_d(i))^2, the departure's differences between a reach and
        its downstream neighbour.
    The others as :class:`ParameterModel`.
    """

    kind = "per-reach"

    def __init__(self, scheme, prior, downstream: np.ndarray, *, prior_weight: float = 1e-3,
                 smooth_weight: float = 1e-2, **kwargs) -> None:
        downstream = np.asarray(downstream, dtype=np.int64)
        super().__init__(scheme, prior, n_reaches=downstream.size, **kwargs)
        for name, w in (("prior_weight", prior_weight), ("smooth_weight", smooth_weight)):
            if not (math.isfinite(w) and w >= 0):
                raise InputError(f"{name} must be a number >= 0 (got {w!r}).", field=name,
                                 hint=f"E.g. {opt('build_model.' + name, '0.001')}.")
        self.prior_weight, self.smooth_weight = float(prior_weight), float(smooth_weight)
        linked = np.flatnonzero(downstream >= 0)
        self.register_buffer("link_up", torch.as_tensor(linked))
        self.register_buffer("link_down", torch.as_tensor(downstream[linked]))
        self.theta = torch.nn.ParameterDict(
            {n: torch.nn.Parameter(torch.zeros(self.n_reaches, dtype=torch.float64)) for n in self.learned})

    def offsets(self) -> dict[str, torch.Tensor]:
        return {name: self.theta[name] for name in self.learned}

    def penalty(self) -> torch.Tensor:
        total = super().penalty()
        values = self.forward()
        for name in self.learned:
            r = self.bounds[name].relative(values[name], self.prior_of(name))
            total = total + self.prior_weight * (r ** 2).mean()
            if self.link_up.numel():
                total = total + self.smooth_weight * ((r[self.link_up] - r[self.link_down]) ** 2).mean()
        return total


def attribute_values(network: RiverNetwork, name: str) -> np.ndarray:
    """Values [N] of reach attribute ``name``: 'length' (m), 'area' (upstream, m2), 'catchment_area' (m2), 'slope'
    (m/m), 'order' (the stream order field), or any numeric field in ``network.attrs``."""
    builtin = {"length": network.length, "area": network.area, "catchment_area": network.catchment_area,
               "slope": network.slope if network.slope is not None else network.attrs.get("slope")}
    if name in builtin and builtin[name] is not None:
        values = builtin[name]
    elif name in network.attrs:
        values = network.attrs[name]
    elif name == "order" and "stream_order" in network.attrs:
        values = network.attrs["stream_order"]
    else:
        have = [n for n, v in builtin.items() if v is not None] + sorted(network.attrs)
        raise InputError(f"the network has no reach attribute '{name}'.", path=network.source.path, field=name,
                         hint=f"Attributes available: {', '.join(have)}; e.g. "
                              f"{' '.join(opt('build_model.attributes', a) for a in DEFAULT_ATTRIBUTES)} (the "
                              f"default).")
    try:
        values = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"reach attribute '{name}' is not numeric.", path=network.source.path, field=name,
                         hint="Choose numeric attributes for the regression.") from None
    bad = ~np.isfinite(values)
    if bad.any():
        raise InputError(f"reach attribute '{name}' is missing at {int(bad.sum()):,} reaches: "
                         f"{format_ids(network.ids[bad])}.", path=network.source.path, field=name,
                         ids=network.ids[bad].tolist(), hint="Fill the field on every reach, or leave it out of "
                                                              f"{opt('build_model.attributes')}.")
    return values


@dataclasses.dataclass(frozen=True)
class Standardisation:
    """How one attribute enters the regression: ``(log(v) if log else v - mean) / std``."""

    name: str
    log: bool
    mean: float
    std: float

    @classmethod
    def fit(cls, name: str, values: np.ndarray, log: bool | None = None) -> Standardisation:
        if log is None:
            log = name in LOG_ATTRIBUTES and bool((values > 0).all())
        if log and not (values > 0).all():
            raise InputError(f"reach attribute '{name}' has values <= 0, so it cannot be standardised in log space.",
                             field=name, hint="Standardise it linearly, or give positive values.")
        t = np.log(values) if log else values
        std = float(t.std())
        return cls(name, bool(log), float(t.mean()), std if std > 0 else 1.0)

    def apply(self, values: np.ndarray) -> np.ndarray:
        if self.log and not (values > 0).all():
            raise InputError(f"reach attribute '{self.name}' has values <= 0; the model standardises it in log "
                             f"space.", field=self.name, hint="Give positive values on every reach.")
        return ((np.log(values) if self.log else values) - self.mean) / self.std


def zero_output_mlp(widths: Sequence[int], seed: int) -> torch.nn.Sequential:
    """A float64 MLP of ``widths`` with tanh between layers whose output is 0 for any input (last layer zeroed),
    so that a model built on it starts at its prior; hidden layers get torch's default (Kaiming-uniform) range,
    drawn from a generator seeded with ``seed``. Shared by the routing and the runoff parameter regressions."""
    layers: list[torch.nn.Module] = []
    generator = torch.Generator().manual_seed(int(seed))
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        lin = torch.nn.Linear(a, b, dtype=torch.float64)
        with torch.no_grad():
            if i == len(widths) - 2:
                lin.weight.zero_()
                lin.bias.zero_()
            else:
                bound = 1.0 / math.sqrt(a)
                lin.weight.uniform_(-bound, bound, generator=generator)
                lin.bias.uniform_(-bound, bound, generator=generator)
        layers.append(lin)
        if i < len(widths) - 2:
            layers.append(torch.nn.Tanh())
    return torch.nn.Sequential(*layers)


class RegressionModel(ParameterModel):
    """A small MLP of standardised reach attributes: ``z = z_prior + f(a)``, ``p = bound(z)``.

    ``f``: Linear(A, H) - tanh - ... - Linear(H, P) with the last layer at zero, so the model starts at the prior
    exactly; P = number of learned parameters.

    Parameters
    ----------
    features : float64 [N, A], the standardised attributes (build with :meth:`from_network`).
    standardisation : one :class:`Standardisation` per attribute [A] (saved with the model).
    hidden : widths of the hidden layers.
    seed : seed of the hidden layers' initialisation (the same seed gives the same weights).
    The others as :class:`ParameterModel`.
    """

    kind = "regression"

    def __init__(self, scheme, prior, features: np.ndarray, standardisation: Sequence[Standardisation], *,
                 hidden: Sequence[int] = (16, 16), seed: int = 0, **kwargs) -> None:
        features = np.asarray(features, dtype=np.float64)
        super().__init__(scheme, prior, n_reaches=features.shape[0], **kwargs)
        self.standardisation = tuple(standardisation)
        self.hidden = tuple(int(h) for h in hidden)
        self.register_buffer("features", torch.as_tensor(features, dtype=torch.float64))
        self.mlp = zero_output_mlp([features.shape[1], *self.hidden, len(self.learned)], seed)

    @classmethod
    def from_network(cls, network: RiverNetwork, scheme, prior, *, attributes: Sequence[str] = DEFAULT_ATTRIBUTES,
                     standardisation: Sequence[Standardisation] | None = None, **kwargs) -> RegressionModel:
        """A regression model on ``network``'s attributes, standardised on this network unless
        ``standardisation`` (e.g. a trained model's) is given."""
        if standardisation is None:
            if not attributes:
                raise InputError("the regression needs at least one attribute.", field="attributes",
                                 hint=f"E.g. {opt('build_model.attributes', repr(list(DEFAULT_ATTRIBUTES)))}.")
            standardisation = [Standardisation.fit(a, attribute_values(network, a)) for a in attributes]
        features = np.column_stack([s.apply(attribute_values(network, s.name)) for s in standardisation])
        return cls(scheme, prior, features, standardisation, **kwargs)

    @property
    def attributes(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.standardisation)

    def offsets(self) -> dict[str, torch.Tensor]:
        f = self.mlp(self.features)
        return {name: f[:, j] for j, name in enumerate(self.learned)}

    def for_network(self, network: RiverNetwork, prior: Mapping[str, Any] | None = None) -> RegressionModel:
        """The same trained model applied to another network with the same attributes (its prior rebuilt from
        ``prior_spec`` unless given)."""
        if prior is None:
            if self.prior_spec is None:
                raise InputError("this regression model was built on a prior given as arrays, so it cannot rebuild "
                                 "the prior of another network.", field="prior",
                                 hint="Pass the other network's prior, or build the model with build_model(..., "
                                      f"{opt('build_model.params', '{}')}).")
            prior = prior_params(network, self.scheme, self.prior_spec)
        other = RegressionModel.from_network(
            network, self.scheme, prior, standardisation=self.standardisation, hidden=self.hidden,
            learn=self.learned, bounds={n: (b.lower, b.upper) for n, b in self.bounds.items()},
            prior_spec=self.prior_spec)
        other.mlp.load_state_dict(self.mlp.state_dict())
        return other.to(self.features.device)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update(attributes=[dataclasses.asdict(s) for s in self.standardisation], hidden=list(self.hidden))
        return out


def build_model(kind: str, network: RiverNetwork, scheme: str | Scheme = "muskingum", *,
                params: Mapping[str, Any] | None = None, prior: Mapping[str, Any] | None = None,
                learn: Sequence[str] | None = None, bounds: Mapping[str, Sequence[float]] | None = None,
                gauges: Sequence[int] | None = None, attributes: Sequence[str] = DEFAULT_ATTRIBUTES,
                hidden: Sequence[int] = (16, 16), seed: int = 0, prior_weight: float = 1e-3,
                smooth_weight: float = 1e-2, zoning: str = "gauges") -> ParameterModel:
    """A parameter model of ``kind`` on ``network``.

    Parameters
    ----------
    kind : 'prior', 'zones', 'per-reach' or 'regression'.
    network : the river network (N reaches).
    scheme : routing scheme name or Scheme.
    params : the prior's spec (parameter -> constant SI or field name), as ``thalweg route``'s parameters; the rest
        from the GEOGloWS rule (:func:`prior_params`). Ignored when ``prior`` is given.
    prior : name -> float64 [N], the prior itself (then a regression model cannot be applied to other networks).
    learn : parameters to learn (default: every parameter of the scheme; for 'zones', those in s or m/s, as
        ``thalweg calibrate``).
    bounds : narrower bounds per parameter, name -> (lower, upper), SI.
    gauges : reach ids of the gauges ('zones': one zone per sub-basin between them).
    attributes : 'regression': reach attributes by name (:func:`attribute_values`).
    hidden, seed : 'regression': hidden layer widths and initialisation seed.
    prior_weight, smooth_weight : 'per-reach': regularisation weights (:class:`PerReachModel`).
    zoning : 'zones': 'gauges' (one zone per sub-basin between gauges) or 'global' (one zone for every reach).
    """
    sch = get_scheme(scheme)
    if kind not in MODELS:
        raise InputError(f"unknown parameter model '{kind}'.", field="model",
                         hint=f"Use one of: {', '.join(MODELS)}, e.g. {opt('build_model.kind', 'regression')}.")
    spec = dict(params or {})
    prior_arrays = prior if prior is not None else prior_params(network, sch, spec)
    common = dict(bounds=bounds, prior_spec=None if prior is not None else spec)
    if kind == "prior":
        return PriorModel(sch, prior_arrays, n_reaches=network.n_reaches, **common)
    if kind == "zones":
        from ..learning.calibrate import gauge_zones

        from .checks import default_calibrated

        if zoning not in ("gauges", "global"):
            raise InputError(f"zoning is '{zoning}'.", field="zones",
                             hint=f"Use gauges or global, e.g. {opt('build_model.zoning', 'gauges')}.")
        if zoning == "global":
            zones = np.zeros(network.n_reaches, dtype=np.int64)
        elif not gauges:
            raise InputError("the 'zones' model needs gauges (one zone per sub-basin between them).", field="gauges",
                             hint=f"Give the gauges' reach ids, e.g. {opt('build_model.gauges', '[101, 37]')}.")
        else:
            zones, _ = gauge_zones(network, network.index_of(list(gauges), what="gauge reach ids"))
        return ZonesModel(sch, prior_arrays, zones, learn=default_calibrated(sch) if learn is None else learn,
                          **common)
    if kind == "per-reach":
        return PerReachModel(sch, prior_arrays, network.downstream, learn=learn, prior_weight=prior_weight,
                             smooth_weight=smooth_weight, **common)
    return RegressionModel.from_network(network, sch, prior_arrays, attributes=attributes, hidden=hidden, seed=seed,
                                        learn=learn, **common)
