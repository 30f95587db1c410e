"""The float64 reference router: the plain recursion of ROUTING.md section 3, reach by reach order.

Slow and obvious; tests use it to judge the engines. Recursive schemes (Muskingum, linear storage,
sub-stepped Muskingum) run their recursions; the others convolve with their float64 kernels.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..irf import get_scheme
from ..irf.muskingum import nonneg_substeps, substeps
from ..network import RiverNetwork, dag
from .params import scheme_params

__all__ = ["route_reference"]


def _muskingum(k, x, dt, inflow, lateral, prev_u):
    d = 2.0 * k * (1.0 - x) + dt
    c0, c1, c2 = (dt - 2.0 * k * x) / d, (dt + 2.0 * k * x) / d, (2.0 * k * (1.0 - x) - dt) / d
    out = np.empty_like(inflow)
    q_prev = np.zeros(inflow.shape[:-1])
    for t in range(inflow.shape[-1]):
        u_prev = inflow[..., t - 1] if t else prev_u
        q_prev = c2 * q_prev + c0 * inflow[..., t] + c1 * u_prev + (c0 + c1) * lateral[..., t]
        out[..., t] = q_prev
    return out


def route_reference(network: RiverNetwork, runoff: np.ndarray, params: Mapping[str, Any],
                    scheme: str = "muskingum", *, dt: float, fractions: Any = None) -> np.ndarray:
    """Route ``runoff`` [B, N, T] (m3/s, float64) and return Q [B, N, T] (m3/s at each step's end).

    A network with splits is routed on its DAG: each link carries its fraction of the reach's outflow
    (``fractions`` [E] replaces ``network.splits.fraction``), reaches in DAG topological order.
    """
    sch = get_scheme(scheme)
    q = np.asarray(runoff, dtype=np.float64)
    squeeze = q.ndim == 2
    q = q[None] if squeeze else q
    _b, _n, t_len = q.shape
    p = {k: v.numpy() for k, v in scheme_params(network, sch, params, dtype=torch.float64, device="cpu").items()}
    if sch.name not in ("muskingum", "linear_storage", "muskingum_substep", "muskingum_nonneg"):
        kern = sch.kernels({k: torch.from_numpy(v) for k, v in p.items()}, dt, t_len)
        h_all, g_all = kern.h.numpy(), kern.g.numpy()
    out = np.zeros_like(q)
    inflow = np.zeros_like(q)
    src, dst, frac = dag.edges(network, None if fractions is None else np.asarray(fractions, dtype=np.float64))
    levels, _ = dag.dag_levels(network.n_reaches, src, dst)
    groups = [np.flatnonzero(levels == lv) for lv in range(int(levels.max(initial=-1)) + 1)]
    for group in groups:
        u, lat = inflow[:, group], q[:, group]
        if sch.name == "muskingum":
            res = _muskingum(p["k"][group], p["x"][group], dt, u, lat, 0.0)
        elif sch.name in ("muskingum_substep", "muskingum_nonneg"):
            tp = {k: torch.from_numpy(v) for k, v in p.items()}
            if sch.name == "muskingum_substep":
                s_all, x_all = substeps(tp, dt).numpy(), p["x"]
            else:
                s_t, x_t, _ = nonneg_substeps(tp, dt)
                s_all, x_all = s_t.numpy(), x_t.numpy()
            s_all, x_all = s_all.astype(int)[group], x_all[group]
            res = np.empty_like(u)
            for s in np.unique(s_all):
                sel = s_all == s
                fine = _muskingum(p["k"][group][sel], x_all[sel], dt / s, np.repeat(u[:, sel], s, axis=-1),
                                  np.repeat(lat[:, sel], s, axis=-1), 0.0)
                res[:, sel] = fine[..., s - 1::s]
        elif sch.name == "linear_storage":
            a = dt / (p["tau"][group] + dt)
            res = np.empty_like(u)
            prev = np.zeros(u.shape[:-1])
            for t in range(t_len):
                prev = (1.0 - a) * prev + a * (u[..., t] + lat[..., t])
                res[..., t] = prev
        else:
            h, g = h_all[group], g_all[group]
            res = np.zeros_like(u)
            for lag in range(t_len):
                res[..., lag:] += h[:, lag, None] * u[..., : t_len - lag] + g[:, lag, None] * lat[..., : t_len - lag]
        out[:, group] = res
        links = np.flatnonzero(levels[src] == levels[group[0]])
        np.add.at(inflow, (slice(None), dst[links]), out[:, src[links]] * frac[links, None])
    return out[0] if squeeze else out
