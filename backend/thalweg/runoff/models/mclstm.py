"""The mass-conserving LSTM (MC-LSTM) of paper 004 (Hoedt et al. 2021; Nearing et al.): precipitation is the
conserved input, the cell states are storages (mm), and every gate is a normalised activation, so water is never
made or lost inside the cell.

Per step, with the mass input x (mm), the auxiliary inputs a (standardised forcings and static attributes) and the
storages c [H] (mm), and c_hat = c / (sum c + eps) the storages' shares:

    i = softmax(W_i [a, c_hat] + b_i)                 input split over the storages, sums to 1
    R = softmax_rows(W_r [a, c_hat] + B_r)            redistribution, each row (a storage's water) sums to 1
    o = sigmoid(W_o [a, c_hat] + b_o)                 outflow share of each storage
    m = R^T c + i x;  outflow = o m;  c <- (1 - o) m
    runoff = sum over storages 1..H-1 of outflow;  loss (ET and other unobserved sinks) = outflow of storage 0

so, to float rounding, x = runoff + loss + (sum c_new - sum c_old) at every step and catchment (tested).

References
----------
Hoedt, P.-J. et al. (2021), MC-LSTM: Mass-conserving LSTM, ICML, PMLR 139, 4275-4286.
Nearing, G. et al., a mass-conserving LSTM for streamflow (paper 004 in ../shared/reference), eqs. 4-8.
Kratzert, F. et al. (2022), neuralhydrology ``modelzoo/mclstm.py``.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ...errors import InputError, opt
from .base import RunoffModel

__all__ = ["MCLSTM"]

_EPS = 1e-5  # mm: keeps the storage shares finite when every storage is empty


class MCLSTM(RunoffModel):
    """MC-LSTM per catchment, weights shared (module docstring).

    Parameters
    ----------
    mass_input : the conserved forcing (default 'precipitation').
    hidden : number of storages H (>= 2: storage 0 is the sink).
    seed : initialisation seed.
    The others as :class:`RunoffModel`.

    State: ``{"c": [B, C, H]}`` (mm).
    """

    kind = "mclstm"
    mass_conserving = True

    def __init__(self, inputs: Sequence[str], *, n_catchments: int, mass_input: str = "precipitation",
                 hidden: int = 16, seed: int = 0, **kwargs: Any) -> None:
        if mass_input not in inputs:
            raise InputError(f"the MC-LSTM's mass input '{mass_input}' is not among the forcings "
                             f"({', '.join(inputs) or 'none'}).", field="mass_input",
                             hint=f"Give that forcing, or name another with {opt('train.mass_input', 'precipitation')}.")
        super().__init__(inputs, n_catchments=n_catchments, **kwargs)
        if int(hidden) < 2:
            raise InputError(f"the MC-LSTM needs at least 2 storages (got {hidden}).", field="hidden",
                             hint=f"E.g. {opt('train.hidden', '16')}.")
        self.mass_input, self.hidden, self.seed = mass_input, int(hidden), int(seed)
        self.aux = [j for j, v in enumerate(self.inputs) if v != mass_input]
        n_aux = len(self.aux) + int(self.static.shape[1])
        h = self.hidden
        n_in = n_aux + h
        generator = torch.Generator().manual_seed(self.seed)

        def linear(n_out: int) -> torch.nn.Linear:
            lin = torch.nn.Linear(n_in, n_out)
            with torch.no_grad():
                r = 1.0 / n_in ** 0.5
                lin.weight.copy_(torch.empty_like(lin.weight).uniform_(-r, r, generator=generator))
                lin.bias.zero_()
            return lin

        self.gate_in, self.gate_out, self.gate_redist = linear(h), linear(h), linear(h * h)
        with torch.no_grad():
            self.gate_out.bias.fill_(-3.0)  # storages start by keeping most of their water
            self.gate_redist.bias.copy_((3.0 * torch.eye(h)).reshape(-1))  # and by keeping it where it is

    def config(self) -> dict[str, Any]:
        return {"mass_input": self.mass_input, "hidden": self.hidden, "seed": self.seed}

    def forward(self, forcings: torch.Tensor, state: dict | None = None, *,
                diagnostics: bool = False) -> tuple[torch.Tensor, dict]:
        """Runoff [B, C, T] mm per step and the state; ``diagnostics=True`` adds 'fluxes': the sink's outflow
        ('loss') and the total storage after each step ('storage'), [B, C, T]."""
        self.check_forcings(forcings)
        b, c, t, _ = forcings.shape
        dtype = self.gate_in.weight.dtype
        h = self.hidden
        x = forcings[..., self.index_of(self.mass_input)].to(dtype).reshape(b * c, t)
        aux = self.standardised(forcings).to(dtype)[..., self.aux]
        if self.static.shape[1]:
            aux = torch.cat([aux, self.static.to(dtype)[None, :, None, :].expand(b, c, t, -1)], dim=-1)
        aux = aux.reshape(b * c, t, -1)
        cell = torch.zeros(b * c, h, dtype=dtype, device=forcings.device) if state is None \
            else state["c"].to(dtype).reshape(b * c, h)
        out, lost, stored = [], [], []
        for k in range(t):
            share = cell / (cell.sum(-1, keepdim=True) + _EPS)
            g = torch.cat([aux[:, k], share], dim=-1)
            i = torch.softmax(self.gate_in(g), dim=-1)
            o = torch.sigmoid(self.gate_out(g))
            r = torch.softmax(self.gate_redist(g).reshape(-1, h, h), dim=-1)
            m = torch.bmm(cell[:, None, :], r)[:, 0] + i * x[:, k, None]
            flow = o * m
            cell = m - flow
            out.append(flow[:, 1:].sum(-1))
            if diagnostics:
                lost.append(flow[:, 0])
                stored.append(cell.sum(-1))
        runoff = torch.stack(out, dim=-1).reshape(b, c, t).to(forcings.dtype)
        new_state: dict = {"c": cell.reshape(b, c, h)}
        if diagnostics:
            new_state["fluxes"] = {"loss": torch.stack(lost, -1).reshape(b, c, t),
                                   "storage": torch.stack(stored, -1).reshape(b, c, t)}
        return runoff, new_state
