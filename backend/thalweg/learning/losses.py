"""Training losses on discharge at gauges, built on :mod:`thalweg.metrics` (one implementation of each metric).

Each loss takes ``sim`` and ``obs`` [G, T] (torch, NaN in ``obs`` where a step is not in the loss) and ``std`` [G]
(the observations' standard deviation over the calibration period, m3/s) and returns a scalar to minimise:
the mean over gauges of

- ``nse``: 1 - NSE;
- ``kge``: 1 - KGE;
- ``nse_star``: NSE* (the basin-normalised squared error of paper 004, eq. 9, mean over steps, with ``std`` of the
  calibration period, so a large gauge does not outweigh a small one);
- ``log_nse``: 1 - NSE of log(Q + eps), eps = mean(obs) / 100 per gauge (Pushpalatha et al. 2012), which weighs
  low flows.

References
----------
Pushpalatha, R., Perrin, C., Le Moine, N., Andreassian, V. (2012), J. Hydrol. 420-421, 171-182.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import InputError, opt
from ..metrics import kge, nse, nse_star

__all__ = ["LOSSES", "get_loss"]


def _nse(sim: torch.Tensor, obs: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (1.0 - nse(sim, obs)).mean()


def _kge(sim: torch.Tensor, obs: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (1.0 - kge(sim, obs)).mean()


def _nse_star(sim: torch.Tensor, obs: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return nse_star(sim, obs, std).mean()


def _log_nse(sim: torch.Tensor, obs: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    valid = ~torch.isnan(obs)
    filled = torch.where(valid, obs, torch.zeros_like(obs))
    eps = (filled.sum(-1) / valid.sum(-1).clamp(min=1) / 100.0)[..., None]
    # a routed Q can dip below 0 with negative Muskingum coefficients: keep the log finite
    low = torch.clamp(sim, min=0.0) + eps
    return (1.0 - nse(torch.log(low), torch.log(torch.clamp(obs, min=0.0) + eps))).mean()


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "nse": _nse, "kge": _kge, "nse_star": _nse_star, "log_nse": _log_nse}


def get_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss called ``name`` (a key of :data:`LOSSES`)."""
    try:
        return LOSSES[name]
    except KeyError:
        raise InputError(f"unknown loss '{name}'.", field="loss",
                         hint=f"Use one of: {', '.join(LOSSES)}, e.g. {opt('fit.loss', 'nse')}.") from None
