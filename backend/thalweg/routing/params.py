"""Turning user parameters (arrays, scalars, tensors) into checked per-reach tensors for a scheme."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..errors import InputError, format_ids
from ..irf import Scheme
from ..network import RiverNetwork

__all__ = ["scheme_params"]


def scheme_params(network: RiverNetwork, scheme: Scheme, params: Mapping[str, Any], *,
                  dtype: torch.dtype, device: torch.device | str) -> dict[str, torch.Tensor]:
    """Per-reach parameter tensors [N] of ``dtype`` on ``device``; scalars broadcast to every reach.

    Tensors that require grad are kept as they are (only moved/cast), so gradients reach them.
    Raises InputError naming missing parameters, or reaches with non-finite or out-of-bounds values.
    """
    n = network.n_reaches
    missing = [p.name for p in scheme.parameters if p.name not in params]
    if missing:
        raise InputError(f"the '{scheme.name}' scheme needs parameter(s) {', '.join(missing)}.",
                         hint=f"Give {', '.join(missing)} per reach (a field) or as constants.")
    unknown = sorted(set(params) - set(scheme.parameter_names))
    if unknown:
        raise InputError(f"the '{scheme.name}' scheme takes no parameter(s) {', '.join(unknown)}.",
                         hint=f"Its parameters are: {', '.join(scheme.parameter_names)}.")
    out: dict[str, torch.Tensor] = {}
    for spec in scheme.parameters:
        value = params[spec.name]
        tensor = torch.as_tensor(value, device=device)
        tensor = tensor.to(dtype=dtype)
        if tensor.ndim == 0:
            tensor = tensor.expand(n)
        if tensor.shape != (n,):
            raise InputError(f"parameter '{spec.name}' has shape {tuple(tensor.shape)}; the network has {n:,} "
                             f"reaches.", hint="Give one value per reach, in the network's order, or one constant.")
        with torch.no_grad():
            bad = ~torch.isfinite(tensor) | (tensor < spec.lower) | (tensor > spec.upper)
            if spec.lower == 0.0 and spec.name in ("k", "tau", "celerity", "diffusivity"):
                bad |= tensor <= 0
        if bool(bad.any()):
            bad_idx = torch.nonzero(bad).flatten().cpu().numpy()
            values = tensor.detach()[bad].cpu().numpy()[:3]
            raise InputError(
                f"parameter '{spec.name}' is missing or outside [{spec.lower:g}, {spec.upper:g}] {spec.unit} at "
                f"{bad_idx.size:,} reaches: {format_ids(network.ids[bad_idx])} (values "
                f"{', '.join(f'{v:.4g}' for v in values)}).",
                path=network.source.path, ids=network.ids[bad_idx].tolist(),
                hint="Correct those values or their field; bounds are physical limits of the scheme.")
        out[spec.name] = tensor
    if scheme.uses_length:
        out["length"] = torch.as_tensor(np.asarray(network.length), dtype=dtype, device=device)
    return out
