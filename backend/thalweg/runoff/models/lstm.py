"""An LSTM runoff model, neuralhydrology's CudaLSTM shape: standardised forcings with the static attributes
concatenated to every step, one ``torch.nn.LSTM`` shared by every catchment, a linear head.

The head's output goes through a softplus times ``scale`` (mm per step), so runoff is never negative (routing and
log-space losses need that) and starts near ``scale`` times softplus(bias). The forget gate's bias starts at
``forget_bias`` (neuralhydrology's ``initial_forget_bias``), so the cell state keeps its memory early in training.

References
----------
Kratzert, F. et al. (2019), Hydrol. Earth Syst. Sci. 23, 5089-5110.
Kratzert, F. et al. (2022), neuralhydrology, J. Open Source Softw. 7(71), 4050 (``modelzoo/cudalstm.py``).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .base import RunoffModel

__all__ = ["LSTMRunoff"]


class LSTMRunoff(RunoffModel):
    """LSTM per catchment, weights shared (module docstring).

    Parameters
    ----------
    hidden : width of the LSTM's state.
    scale : mm per step of the head's softplus (default 1).
    forget_bias : initial bias of the forget gate.
    seed : initialisation seed.
    The others as :class:`RunoffModel`.

    State: ``{"h": [B, C, H], "c": [B, C, H]}``.
    """

    kind = "lstm"

    def __init__(self, inputs: Sequence[str], *, n_catchments: int, hidden: int = 32, scale: float = 1.0,
                 forget_bias: float = 3.0, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(inputs, n_catchments=n_catchments, **kwargs)
        self.hidden, self.scale, self.forget_bias, self.seed = int(hidden), float(scale), float(forget_bias), int(seed)
        n_in = len(self.inputs) + int(self.static.shape[1])
        generator = torch.Generator().manual_seed(self.seed)
        self.lstm = torch.nn.LSTM(n_in, self.hidden, batch_first=True)
        self.head = torch.nn.Linear(self.hidden, 1)
        with torch.no_grad():
            for p in list(self.lstm.parameters()) + list(self.head.parameters()):
                r = 1.0 / self.hidden ** 0.5
                p.copy_(torch.empty_like(p).uniform_(-r, r, generator=generator))
            h = self.hidden  # gate order of torch.nn.LSTM: input, forget, cell, output
            self.lstm.bias_hh_l0[h:2 * h] = self.forget_bias
            self.lstm.bias_ih_l0[h:2 * h] = 0.0
            self.head.bias.fill_(-1.0)

    def config(self) -> dict[str, Any]:
        return {"hidden": self.hidden, "scale": self.scale, "forget_bias": self.forget_bias, "seed": self.seed}

    def forward(self, forcings: torch.Tensor, state: dict | None = None) -> tuple[torch.Tensor, dict]:
        self.check_forcings(forcings)
        b, c, t, _ = forcings.shape
        dtype = self.head.weight.dtype
        x = self.standardised(forcings).to(dtype)
        if self.static.shape[1]:
            s = self.static.to(dtype)[None, :, None, :].expand(b, c, t, -1)
            x = torch.cat([x, s], dim=-1)
        x = x.reshape(b * c, t, -1)
        hc = None
        if state is not None:
            hc = (state["h"].reshape(1, b * c, -1).contiguous(), state["c"].reshape(1, b * c, -1).contiguous())
        out, (h, cell) = self.lstm(x, hc)
        y = torch.nn.functional.softplus(self.head(out)[..., 0]) * self.scale
        return y.reshape(b, c, t).to(forcings.dtype), {"h": h.reshape(b, c, -1), "c": cell.reshape(b, c, -1)}
