"""Goodness-of-fit metrics of simulated against observed discharge (ROUTING.md section 5).

Every metric takes ``sim`` and ``obs`` of the same shape [..., T] as numpy arrays or torch tensors
(torch in, torch out, gradients flowing through ``sim``), reduces over the last (time) axis and masks
time steps where ``obs`` is NaN. A series with no valid observation gives NaN; so does a zero
denominator (constant observations for NSE, KGE and r^2).

- NSE = 1 - sum (s - o)^2 / sum (o - mean o)^2
- KGE = 1 - sqrt((r - 1)^2 + (alpha - 1)^2 + (beta - 1)^2), r Pearson, alpha = std s / std o,
  beta = mean s / mean o (Gupta et al. 2009)
- pbias = 100 * sum (o - s) / sum o: positive when the simulation is too dry (underestimates), negative
  when it is too wet; the sign of hydroeval, of Moriasi et al. (2007) and of most hydrology software
  (the tests compare with hydroeval)
- r2 = r^2, the squared Pearson correlation
- FHV = 100 * sum (s_h - o_h) / sum o_h over the top 2 % of each sorted series (Yilmaz et al. 2008)
- FLV over the lowest 30 %, in log space (Yilmaz et al. 2008; zero and negative flows set to 1e-6)
- NSE* (MC-LSTM paper, reference 004, eq. 9; Kratzert et al. 2019): mean over valid steps of
  (s - o)^2 / (s_b + eps)^2, eps = 0.1. Eq. 9 as printed calls s_b "the variance" of the basin's
  hydrograph, but (s_b + eps)^2 squares it again: the original definition and neuralhydrology's NSELoss
  use the standard deviation, which is what this does (pass ``std`` to use the training period's).
  As a loss it is minimised; eq. 9 sums over time, ``reduction='sum'`` does that.

References
----------
Gupta, H. V., Kling, H., Yilmaz, K. K., Martinez, G. F. (2009), J. Hydrol. 377, 80-91.
Yilmaz, K. K., Gupta, H. V., Wagener, T. (2008), Water Resour. Res. 44, W09417.
Kratzert, F. et al. (2019), Hydrol. Earth Syst. Sci. 23, 5089-5110.
Moriasi, D. N. et al. (2007), Trans. ASABE 50(3), 885-900.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["nse", "kge", "pbias", "r2", "fhv", "flv", "nse_star", "all_metrics", "METRICS"]


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _prepare(sim: Any, obs: Any):
    """(sim, obs with NaN -> 0, mask, n valid) on one backend, float; torch if either input is torch."""
    if _is_torch(sim) or _is_torch(obs):
        import torch

        ref = sim if _is_torch(sim) else obs
        dtype = ref.dtype if ref.dtype.is_floating_point else torch.float64
        sim = torch.as_tensor(sim, device=ref.device).to(dtype)
        obs = torch.as_tensor(obs, device=ref.device).to(dtype)
        sim, obs = torch.broadcast_tensors(sim, obs)
        mask = ~torch.isnan(obs)
        where = torch.where
        zero = torch.zeros((), dtype=dtype, device=ref.device)
    else:
        sim, obs = np.broadcast_arrays(np.asarray(sim, dtype=np.float64), np.asarray(obs, dtype=np.float64))
        mask = ~np.isnan(obs)
        where = np.where
        zero = 0.0
    # fill before any arithmetic: a NaN in the unused branch of where() poisons torch gradients
    obs0 = where(mask, obs, zero)
    n = mask.sum(-1)
    return sim, obs0, mask, n, where, zero


def _moments(sim, obs0, mask, n, where, zero):
    ms = where(mask, sim, zero).sum(-1) / n
    mo = obs0.sum(-1) / n
    ds = where(mask, sim - ms[..., None], zero)
    do = where(mask, obs0 - mo[..., None], zero)
    return ms, mo, ds, do


def _div(a, b, where):
    """a / b, NaN where b == 0 (a zero denominator: no information, not an infinitely bad score).

    The NaN is a constant, not ``b * nan``: where() sends a zero gradient to the branch it does not take, and
    0 * the gradient of ``b * nan`` (NaN) would still be NaN, poisoning every gradient through ``b``.
    """
    zero = b == 0
    if _is_torch(b):
        import torch

        nan = torch.full_like(b, float("nan"))
    else:
        nan = np.full(np.shape(b), np.nan)
    return where(zero, nan, a / where(zero, b + 1, b))


def _root(x, where):
    """sqrt(x) for x >= 0 whose gradient is finite everywhere (0 at x = 0, where sqrt's is infinite: an untaken
    or zero-weighted branch would otherwise give 0 * inf = NaN); NaN stays NaN."""
    positive = x > 0
    return where(positive, where(positive, x, 1.0) ** 0.5, x * 0)


def _quiet(fn):
    def wrapped(*args, **kwargs):
        with np.errstate(divide="ignore", invalid="ignore"):
            return fn(*args, **kwargs)
    wrapped.__name__, wrapped.__doc__, wrapped.__wrapped__ = fn.__name__, fn.__doc__, fn
    return wrapped


@_quiet
def nse(sim: Any, obs: Any) -> Any:
    """Nash-Sutcliffe efficiency [...], 1 for a perfect simulation."""
    sim, obs0, mask, n, where, zero = _prepare(sim, obs)
    _, _, _, do = _moments(sim, obs0, mask, n, where, zero)
    err = where(mask, sim - obs0, zero)
    return 1 - _div((err ** 2).sum(-1), (do ** 2).sum(-1), where)


def _r_alpha_beta(sim, obs):
    sim, obs0, mask, n, where, zero = _prepare(sim, obs)
    ms, mo, ds, do = _moments(sim, obs0, mask, n, where, zero)
    vs, vo = (ds ** 2).sum(-1), (do ** 2).sum(-1)
    r = _div((ds * do).sum(-1), _root(vs * vo, where), where)
    return r, _root(_div(vs, vo, where), where), _div(ms, mo, where)


@_quiet
def kge(sim: Any, obs: Any) -> Any:
    """Kling-Gupta efficiency [...], 1 for a perfect simulation."""
    r, alpha, beta = _r_alpha_beta(sim, obs)
    if _is_torch(r):
        import torch

        where = torch.where
    else:
        where = np.where
    return 1 - _root((r - 1) ** 2 + (alpha - 1) ** 2 + (beta - 1) ** 2, where)


@_quiet
def r2(sim: Any, obs: Any) -> Any:
    """Squared Pearson correlation [...]."""
    return _r_alpha_beta(sim, obs)[0] ** 2


@_quiet
def pbias(sim: Any, obs: Any) -> Any:
    """Percent bias [...], 100 * sum(o - s) / sum(o), over the steps with an observation.

    Positive when the simulation underestimates the observed volume (too dry), negative when it overestimates
    (too wet): the convention of hydroeval and of Moriasi et al. (2007). FHV and FLV keep Yilmaz et al.'s
    opposite sign (positive: too much water), as published.
    """
    sim, obs0, mask, n, where, zero = _prepare(sim, obs)
    return 100 * _div(where(mask, obs0 - sim, zero).sum(-1), obs0.sum(-1), where)


@_quiet
def nse_star(sim: Any, obs: Any, std: Any = None, *, eps: float = 0.1, reduction: str = "mean") -> Any:
    """Basin-normalised squared error NSE* [...] (a loss: 0 is perfect).

    std : per-series standard deviation of the observations, m3/s [...] (e.g. over the training period);
        by default that of ``obs`` over its valid steps (population std).
    reduction : 'mean' over valid steps (neuralhydrology's NSELoss) or 'sum' (eq. 9 as printed).
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', not {reduction!r}")
    sim, obs0, mask, n, where, zero = _prepare(sim, obs)
    if std is None:
        _, _, _, do = _moments(sim, obs0, mask, n, where, zero)
        std = ((do ** 2).sum(-1) / n) ** 0.5
    elif _is_torch(sim):
        import torch

        std = torch.as_tensor(std, dtype=sim.dtype, device=sim.device)
    else:
        std = np.asarray(std, dtype=np.float64)
    total = (where(mask, sim - obs0, zero) ** 2).sum(-1) / (std + eps) ** 2
    return total / n if reduction == "mean" else total


def _per_series(sim: Any, obs: Any, fn) -> Any:
    """Apply ``fn(s, o)`` (1-D, valid steps only) to every series; same backend as the inputs."""
    torch_in = _is_torch(sim) or _is_torch(obs)
    if torch_in:
        import torch

        ref = sim if _is_torch(sim) else obs
        dtype = ref.dtype if ref.dtype.is_floating_point else torch.float64
        sim = torch.as_tensor(sim, device=ref.device).to(dtype)
        obs = torch.as_tensor(obs, device=ref.device).to(dtype)
        sim, obs = torch.broadcast_tensors(sim, obs)
    else:
        sim, obs = np.broadcast_arrays(np.asarray(sim, np.float64), np.asarray(obs, np.float64))
    lead = tuple(sim.shape[:-1])
    s2, o2 = sim.reshape(-1, sim.shape[-1]), obs.reshape(-1, obs.shape[-1])
    out = []
    for s, o in zip(s2, o2):
        valid = ~(torch.isnan(o) if torch_in else np.isnan(o))
        out.append(fn(s[valid], o[valid], torch_in) if int(valid.sum()) else float("nan"))
    if torch_in:
        stacked = torch.stack([x if torch.is_tensor(x) else torch.tensor(x, dtype=sim.dtype, device=sim.device)
                               for x in out]) if out else torch.zeros(0, dtype=sim.dtype)
        return stacked.reshape(lead)
    return np.asarray(out, dtype=np.float64).reshape(lead)


def _desc(x, torch_in: bool):
    if torch_in:
        import torch

        return torch.sort(x, descending=True).values
    return np.sort(x)[::-1]


@_quiet
def fhv(sim: Any, obs: Any, h: float = 0.02) -> Any:
    """Percent bias of the high-flow segment of the flow-duration curve (top ``h`` of flows) [...]."""
    def one(s, o, torch_in):
        k = max(1, int(round(h * o.shape[0])))
        sh, oh = _desc(s, torch_in)[:k], _desc(o, torch_in)[:k]
        return 100 * (sh - oh).sum() / oh.sum()
    return _per_series(sim, obs, one)


@_quiet
def flv(sim: Any, obs: Any, low: float = 0.3) -> Any:
    """Percent bias of the low-flow segment (lowest ``low`` of flows) in log space, Yilmaz et al. 2008 [...]."""
    def one(s, o, torch_in):
        if torch_in:
            import torch

            log = torch.log
            s = torch.where(s <= 0, torch.full_like(s, 1e-6), s)
            o = torch.where(o <= 0, torch.full_like(o, 1e-6), o)
        else:
            log = np.log
            s, o = np.where(s <= 0, 1e-6, s), np.where(o <= 0, 1e-6, o)
        start = min(int(round((1 - low) * o.shape[0])), o.shape[0] - 1)
        sl, ol = log(_desc(s, torch_in)[start:]), log(_desc(o, torch_in)[start:])
        qsl = (sl - sl.min()).sum()
        qol = (ol - ol.min()).sum()
        return -100 * (qsl - qol) / (qol + 1e-6)
    return _per_series(sim, obs, one)


METRICS = {"nse": nse, "kge": kge, "pbias": pbias, "r2": r2, "fhv": fhv, "flv": flv, "nse_star": nse_star}


def all_metrics(sim: Any, obs: Any) -> dict[str, Any]:
    """Every metric of ``METRICS`` plus ``n`` (valid observations), as numpy arrays [...] (floats for 1-D)."""
    def plain(x):
        if _is_torch(x):
            x = x.detach().cpu().numpy()
        x = np.asarray(x, dtype=np.float64)
        return float(x) if x.ndim == 0 else x
    out = {name: plain(fn(sim, obs)) for name, fn in METRICS.items()}
    o = obs.detach().cpu().numpy() if _is_torch(obs) else np.asarray(obs, np.float64)
    count = (~np.isnan(np.broadcast_to(o, np.broadcast_shapes(np.shape(o), tuple(np.shape(sim)))))).sum(-1)
    out["n"] = int(count) if np.ndim(count) == 0 else count
    return out
