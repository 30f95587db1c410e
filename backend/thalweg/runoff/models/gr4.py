"""GR4 in its hourly form (GR4H), differentiable in its parameters and inputs, parameters per catchment.

The equations are airGR's GR4H (Perrin et al. 2003; Mathevet 2005; airGR ``frun_GR4H``), per step of length dt
(the constants are the hourly ones: percolation (21/4)^4, unit-hydrograph exponent 5/4):

- net rainfall / evaporation: Pn = max(P - E, 0), En = max(E - P, 0);
- production store S (capacity x1): Ps = x1 (1 - (S/x1)^2) tanh(Pn/x1) / (1 + S/x1 tanh(Pn/x1)),
  Es = S (2 - S/x1) tanh(En/x1) / (1 + (1 - S/x1) tanh(En/x1)) (tanh arguments capped at 13);
  percolation Perc = S (1 - (1 + (S / (21/4 x1))^4)^(-1/4));  Pr = Pn - Ps + Perc;
- 90 % of Pr through UH1 (base x4 steps), 10 % through UH2 (base 2 x4), S curves (t/x4)^(5/4);
- groundwater exchange F = x2 (R/x3)^(7/2);
- routing store R (capacity x3): R <- max(0, R + Q9 + F), Qr = R (1 - (1 + (R/x3)^4)^(-1/4));
- direct flow Qd = max(0, Q1 + F); runoff Q = Qr + Qd (mm per step).

The production store runs as a loop over steps, the unit hydrographs as a convolution over the whole chunk (they
do not feed back), the routing store as a second loop. State: production and routing store levels [B, C] (mm) and
the last L - 1 values of Pr (the unit hydrographs' memory), so time chunks equal one pass. Without a state, the
stores start at ``s0 x1`` and ``r0 x3`` (s0, r0: learned fill fractions, as any other parameter).

References
----------
Perrin, C., Michel, C., Andreassian, V. (2003), J. Hydrol. 279, 275-289.
Mathevet, T. (2005), PhD thesis, ENGREF / Cemagref (GR4H).
Coron, L. et al. (2017), Environ. Model. Softw. 94, 166-171 (airGR).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .base import RunoffModel
from .parameters import CatchmentParameters, ParameterSpec

__all__ = ["GR4", "GR4_PARAMETERS", "unit_hydrographs", "PERCOLATION", "UH_EXPONENT", "UH_SPLIT"]

PERCOLATION = (21.0 / 4.0) ** 4  # GR4H; GR4J's is (9/4)^4
UH_EXPONENT = 1.25  # GR4H's S-curve exponent; GR4J's is 5/2
UH_SPLIT = 0.9  # share of Pr through UH1 (then the routing store)
_TANH_CAP = 13.0

GR4_PARAMETERS = (
    ParameterSpec("x1", "mm", 10.0, 3000.0, 300.0, "production store capacity"),
    ParameterSpec("x2", "mm per step", -5.0, 5.0, 0.0, "groundwater exchange coefficient (+: gain)"),
    ParameterSpec("x3", "mm", 1.0, 3000.0, 100.0, "routing store capacity"),
    ParameterSpec("x4", "steps", 0.5, 48.0, 6.0, "unit hydrograph time base"),
    ParameterSpec("s0", "1", 0.0, 1.0, 0.5, "production store's initial level / x1 (a run without state)"),
    ParameterSpec("r0", "1", 0.0, 1.0, 0.5, "routing store's initial level / x3 (a run without state)"),
)


def unit_hydrographs(x4: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ordinates [C, length] of UH1 and UH2 for time bases x4 [C] (steps): h[k] = SH(k+1) - SH(k).

    ``length`` must cover 2 max(x4) (UH2's base); both sum to 1.
    """
    k = torch.arange(length + 1, dtype=x4.dtype, device=x4.device)[None, :]
    u1 = torch.clamp(k / x4[:, None], max=1.0)
    sh1 = u1 ** UH_EXPONENT
    u2 = torch.clamp(k / x4[:, None], max=2.0)
    low = torch.clamp(u2, max=1.0)
    high = torch.clamp(2.0 - u2, min=0.0, max=1.0)
    sh2 = torch.where(u2 <= 1.0, 0.5 * low ** UH_EXPONENT, 1.0 - 0.5 * high ** UH_EXPONENT)
    return sh1[:, 1:] - sh1[:, :-1], sh2[:, 1:] - sh2[:, :-1]


def _tanh(x: torch.Tensor) -> torch.Tensor:
    return torch.tanh(torch.clamp(x, max=_TANH_CAP))


class GR4(RunoffModel):
    """GR4 (hourly form) per catchment (module docstring).

    Parameters
    ----------
    inputs : forcing names; must hold 'precipitation' and 'pet' (mm per step).
    parameter_model : 'uniform', 'per-catchment' or 'regression' (:class:`CatchmentParameters`).
    prior, bounds, hidden, seed : of the parameter model.
    The others as :class:`RunoffModel`.
    """

    kind = "gr4"
    required = ("precipitation", "pet")

    def __init__(self, inputs: Sequence[str], *, n_catchments: int, parameter_model: str = "uniform",
                 prior: Mapping[str, float] | None = None, bounds: Mapping[str, Sequence[float]] | None = None,
                 hidden: Sequence[int] = (), seed: int = 0, **kwargs: Any) -> None:
        super().__init__(inputs, n_catchments=n_catchments, **kwargs)
        self.params = CatchmentParameters(GR4_PARAMETERS, self.n_catchments, kind=parameter_model,
                                          static=self.static, prior=prior, bounds=bounds, hidden=hidden, seed=seed)
        self.uh_length = 2 * math.ceil(self.params.bounds["x4"].upper) + 1
        self._config = {"parameter_model": parameter_model, "prior": dict(prior or {}),
                        "bounds": {k: list(v) for k, v in (bounds or {}).items()}, "hidden": list(hidden),
                        "seed": int(seed)}

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    def parameter_values(self) -> dict[str, torch.Tensor]:
        """name -> float64 [C], every parameter per catchment."""
        return self.params(self.static)

    def penalty(self) -> torch.Tensor:
        return self.params.penalty()

    def initial_state(self, batch: int, values: Mapping[str, torch.Tensor], dtype: torch.dtype) -> dict:
        c = self.n_catchments
        x1, x3 = values["x1"].to(dtype), values["x3"].to(dtype)
        s = (values["s0"].to(dtype) * x1).expand(batch, c)
        r = (values["r0"].to(dtype) * x3).expand(batch, c)
        history = torch.zeros(batch, c, self.uh_length - 1, dtype=dtype, device=x1.device)
        return {"production": s, "routing": r, "history": history}

    def forward(self, forcings: torch.Tensor, state: dict | None = None, *, diagnostics: bool = False,
                engine: str = "adjoint") -> tuple[torch.Tensor, dict]:
        """Runoff [B, C, T] mm per step, and the state after the last step.

        ``engine`` : 'adjoint' (the stores as numpy loops with their hand-derived adjoint, :mod:`._gr4_stores`;
        gradients reach the parameters and initial states, not the forcings) or 'autograd' (the same equations
        in torch, recorded by autograd: slower, gradients everywhere). ``diagnostics=True`` ('autograd') also
        returns, in the state under 'fluxes', the actual evaporation and exchange [B, C, T] (mm per step).
        """
        self.check_forcings(forcings)
        dtype = forcings.dtype
        values = self.parameter_values()
        x1, x2, x3, x4 = (values[n].to(dtype) for n in ("x1", "x2", "x3", "x4"))
        if state is None:
            state = self.initial_state(forcings.shape[0], values, dtype)
        p = forcings[..., self.index_of("precipitation")]
        e = forcings[..., self.index_of("pet")]
        n_steps = p.shape[-1]

        if engine == "adjoint" and not diagnostics:
            return self._forward_adjoint(p, e, x1, x2, x3, x4, state)
        if engine not in ("adjoint", "autograd"):
            raise ValueError(f"unknown GR4 engine {engine!r}")
        # production store: Pr per step
        s = state["production"]
        pr_steps, ae_steps = [], []
        pn_all = torch.relu(p - e)
        en_all = torch.relu(e - p)
        for t in range(n_steps):
            pn, en = pn_all[..., t], en_all[..., t]
            sr = s / x1
            tp, te = _tanh(pn / x1), _tanh(en / x1)
            ps = x1 * (1.0 - sr * sr) * tp / (1.0 + sr * tp)
            es = s * (2.0 - sr) * te / (1.0 + (1.0 - sr) * te)
            s = torch.clamp(s + ps - es, min=0.0)
            perc = s * (1.0 - (1.0 + (s / x1) ** 4 / PERCOLATION) ** -0.25)
            s = s - perc
            pr_steps.append(pn - ps + perc)
            if diagnostics:
                ae_steps.append(es + torch.minimum(p[..., t], e[..., t]))
        pr = torch.stack(pr_steps, dim=-1)

        full, q9, q1 = self._unit_hydrographs(pr, x4, state["history"])

        # routing store and direct flow
        r = state["routing"]
        out, exch_steps = [], []
        for t in range(n_steps):
            exch = x2 * (r / x3) ** 3.5
            r_new = torch.clamp(r + q9[..., t] + exch, min=0.0)
            qr = r_new * (1.0 - (1.0 + (r_new / x3) ** 4) ** -0.25)
            direct = q1[..., t] + exch
            qd = torch.relu(direct)
            if diagnostics:  # the exchange actually applied: limited by what the store and the branch hold
                exch_steps.append((r_new - r - q9[..., t]) + (qd - q1[..., t]))
            r = r_new - qr
            out.append(qr + qd)
        runoff = torch.stack(out, dim=-1)
        new_state = {"production": s, "routing": r, "history": full[..., -(self.uh_length - 1):]}
        if diagnostics:
            new_state["fluxes"] = {"evaporation": torch.stack(ae_steps, dim=-1),
                                   "exchange": torch.stack(exch_steps, dim=-1), "pr": pr}
        return runoff, new_state

    def _unit_hydrographs(self, pr: torch.Tensor, x4: torch.Tensor, history: torch.Tensor):
        """(Pr with the previous chunk's memory before it, Q9, Q1), the unit hydrographs over the chunk."""
        h1, h2 = unit_hydrographs(x4.to(pr.dtype), self.uh_length)
        full = torch.cat([history, pr], dim=-1)
        b, c, _ = full.shape
        # one causal filter per catchment: a grouped cross-correlation with the flipped ordinates
        weight = torch.cat([h1, h2]).flip(-1)[:, None, :]
        both = torch.nn.functional.conv1d(full.reshape(b, c, -1).repeat(1, 2, 1), weight, groups=2 * c)
        q9, q1 = both[:, :c], both[:, c:]
        return full, UH_SPLIT * q9, (1.0 - UH_SPLIT) * q1

    def _forward_adjoint(self, p, e, x1, x2, x3, x4, state):
        from ._gr4_stores import production, routing

        b, c, t = p.shape

        def flat(v: torch.Tensor) -> torch.Tensor:
            return v.expand(b, c).reshape(b * c)

        pn, en = torch.relu(p - e).reshape(b * c, t), torch.relu(e - p).reshape(b * c, t)
        pr, s = production(pn, en, flat(x1), flat(state["production"]), PERCOLATION)
        full, q9, q1 = self._unit_hydrographs(pr.reshape(b, c, t), x4, state["history"])
        q, r = routing(q9.reshape(b * c, t), q1.reshape(b * c, t), flat(x2), flat(x3), flat(state["routing"]))
        return q.reshape(b, c, t), {"production": s.reshape(b, c), "routing": r.reshape(b, c),
                                    "history": full[..., -(self.uh_length - 1):]}
