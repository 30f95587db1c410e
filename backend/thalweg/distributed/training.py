"""Data-parallel training over several processes: the gauged basins spread over ranks, gradients all-reduced.

Every rank holds the whole parameter model (:class:`thalweg.params.models.ParameterModel`, its weights broadcast
from rank 0 so that the replicas start equal), computes every reach's parameters, and routes only the basins of
its gauges (whole basins, balanced by work with :func:`thalweg.scale.balance`), returning discharge at its gauges
(``at=``: the engines' own adjoint, no tape over time steps). The loss is the mean over all G gauges of a
per-gauge loss (:mod:`thalweg.learning.losses`: every loss there is such a mean), so rank r contributes its own
gauges' mean times G_r / G; the model's penalty is added once (rank 0). ``torch.distributed.all_reduce`` sums the
gradients and the loss over ranks; every rank then takes the same optimiser step (Adam), so the replicas stay
equal and the loss curve is that of one process to float rounding (tests/distributed).

Basins are routed whole: gradients do not cross ranks. (A basin cut into clusters over ranks would need the
adjoint of the transfer sent back upstream; not built.)
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..errors import InputError, ThalwegWarning, format_ids
from ..network import RiverNetwork
from ..scale import Piece, balance, basins, merge
from .launch import RankInfo, launch

__all__ = ["FitHistory", "fit", "gauged_plan"]


@dataclasses.dataclass
class FitHistory:
    """What :func:`fit` did.

    Attributes
    ----------
    losses : the training loss (+ penalty) at the start of each iteration, summed over ranks (float64).
    state : the model's state after the last step, name -> numpy array (load with ``model.load_state_dict``
        after ``torch.as_tensor``).
    gradients : per iteration, name -> the all-reduced gradient of each trainable weight (only with
        ``record_gradients``).
    gauges_per_rank : how many gauges each rank scored.
    """

    losses: list[float]
    state: dict[str, np.ndarray]
    gradients: list[dict[str, np.ndarray]]
    gauges_per_rank: list[int]


def gauged_plan(network: RiverNetwork, gauge_positions: np.ndarray, world_size: int) -> list[Piece | None]:
    """The merged piece each rank trains on: the basins holding a gauge, balanced by work; None: no gauge."""
    has = np.zeros(network.n_reaches, dtype=bool)
    has[gauge_positions] = True
    pieces = [p for p in basins(network) if has[p.reaches].any()]
    bins: list[Piece | None] = [merge(group) for group in balance(pieces, world_size)]
    return bins + [None] * (world_size - len(bins))


def _std(obs: np.ndarray) -> np.ndarray:
    """Population standard deviation per gauge over the valid (non-NaN) steps, as learning.fit's."""
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(np.nanstd(obs, axis=-1), nan=0.0)


def _rank_fit(info: RankInfo, job: dict[str, Any]) -> dict[str, Any]:
    import torch.distributed as dist

    from ..learning.losses import get_loss
    from ..routing import route

    dev = torch.device(info.device)
    dtype = job["dtype"]
    network: RiverNetwork = job["network"]
    model = job["model"].to(dev)
    weights = [w for w in model.parameters() if w.requires_grad]
    with torch.no_grad():
        for w in model.parameters():
            dist.broadcast(w.data, src=0)  # equal replicas, whatever each process's initialisation did
    piece: Piece | None = job["plan"][info.rank]
    gauges = job["gauges"]  # positions [G]
    total = gauges.size
    loss_fn = get_loss(job["loss"])
    mine = np.empty(0, np.int64)
    if piece is not None:
        mine = np.flatnonzero(np.isin(gauges, piece.reaches))  # rows of the gauges in this rank's basins, in order
    sub = piece.subnetwork(network) if piece is not None else None
    reaches = None if piece is None else torch.as_tensor(piece.reaches, device=dev)
    runoff = np.load(info.folder / "runoff.npy", mmap_mode="r")
    q_in = None if piece is None else torch.as_tensor(np.ascontiguousarray(runoff[piece.reaches]), device=dev,
                                                      dtype=dtype)
    obs = torch.as_tensor(job["observed"][mine], dtype=dtype, device=dev)
    std = torch.as_tensor(job["std"][mine], dtype=dtype, device=dev)
    at = network.ids[gauges[mine]].tolist()
    share = mine.size / total
    optimiser = torch.optim.Adam(weights, lr=job["learning_rate"]) if weights else None
    losses, gradients = [], []
    for _ in range(job["iterations"]):
        if optimiser is not None:
            optimiser.zero_grad()
        params = model()
        local = torch.zeros((), dtype=torch.float64, device=dev)
        if mine.size:
            q = route(sub, q_in, {k: v.index_select(0, reaches) for k, v in params.items()}, job["scheme"],
                      dt=job["dt"], engine=job["engine"], at=at, dtype=dtype, device=dev)
            local = local + loss_fn(q, obs, std).to(torch.float64) * share
        if info.rank == 0:
            local = local + model.penalty().to(torch.float64)
        # every rank takes part in backward (a zero gradient where it has no gauge) and in every all-reduce
        anchor = sum((w.sum() * 0.0 for w in weights), torch.zeros((), dtype=torch.float64, device=dev))
        (local + anchor).backward()
        value = local.detach().clone()
        dist.all_reduce(value)
        for w in weights:
            dist.all_reduce(w.grad)
        losses.append(float(value))
        if not math.isfinite(losses[-1]):
            raise InputError(f"the training loss is not finite at iteration {len(losses)}.", field="observed",
                             hint="Check the runoff and observations for extreme values, or lower the learning "
                                  "rate.")
        if job["record_gradients"]:
            gradients.append({n: w.grad.detach().cpu().numpy().copy() for n, w in model.named_parameters()
                              if w.requires_grad})
        if optimiser is not None:
            optimiser.step()
    state = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()} if info.rank == 0 else {}
    return {"losses": losses, "state": state, "gradients": gradients, "gauges": int(mine.size)}


def fit(model: Any, network: RiverNetwork, runoff: Any, *, dt: float, gauges: Sequence[int], observed: Any,
        world_size: int, loss: str = "nse", iterations: int = 50, learning_rate: float = 0.02, warmup: int = 0,
        engine: str = "auto", device: Any = "auto", dtype: torch.dtype = torch.float32,
        record_gradients: bool = False) -> FitHistory:
    """Train ``model`` on observed discharge at gauges, data-parallel over ``world_size`` processes.

    Parameters
    ----------
    model : a :class:`thalweg.params.models.ParameterModel` built on ``network`` (not changed; the trained state is
        in the result).
    network : the river network (N reaches).
    runoff : [N, T] lateral runoff, m3/s, reaches in network order.
    dt : step length, s.
    gauges : reach ids [G] of the gauged reaches.
    observed : [G, T] observed discharge, m3/s, aligned to the routed Q (end of each step); NaN where missing.
    world_size : processes (GPUs; CPU processes with gloo without a GPU, said by a ThalwegWarning).
    loss : a loss of :mod:`thalweg.learning.losses` ('nse', 'kge', 'nse_star', 'log_nse').
    iterations, learning_rate : Adam steps and step size.
    warmup : first steps left out of the loss.
    engine, device, dtype : as :func:`thalweg.route` (device: 'auto', 'cuda' or 'cpu').
    record_gradients : keep every iteration's all-reduced gradients in the result.

    Returns
    -------
    FitHistory
    """
    from ..learning.losses import get_loss

    get_loss(loss)  # an unknown loss fails here, not in every process
    gauge_ids = np.asarray(list(gauges), dtype=np.int64).ravel()
    if gauge_ids.size == 0:
        raise InputError("training needs at least one gauge; none was given.", field="gauges")
    positions = network.index_of(gauge_ids, what="gauge reach ids")
    values = runoff.detach().cpu().numpy() if isinstance(runoff, torch.Tensor) else np.asarray(runoff)
    obs = np.array(observed, dtype=np.float64)
    if values.shape[:1] != (network.n_reaches,) or values.ndim != 2:
        raise InputError(f"runoff has shape {values.shape}; expected [{network.n_reaches:,} reaches, time].")
    if obs.shape != (gauge_ids.size, values.shape[1]):
        raise InputError(f"observed has shape {obs.shape}; expected [{gauge_ids.size} gauges, {values.shape[1]:,} "
                         f"steps].", field="observed")
    if not 0 <= int(warmup) < values.shape[1]:
        raise InputError(f"the warm-up of {warmup} steps leaves nothing of {values.shape[1]:,} steps.",
                         field="warmup")
    obs[:, :int(warmup)] = np.nan
    empty = np.flatnonzero(~np.isfinite(obs).any(axis=1))
    if empty.size:
        raise InputError(f"gauge(s) {format_ids(gauge_ids[empty])} have no observation after the warm-up.",
                         field="observed", ids=gauge_ids[empty].tolist())
    from .launch import job_folder

    job = {"network": dataclasses.replace(network, geometry=None), "model": model, "gauges": positions,
           "observed": obs, "std": _std(obs), "plan": gauged_plan(network, positions, world_size),
           "scheme": model.scheme.name, "dt": float(dt), "engine": engine, "dtype": dtype, "loss": loss,
           "iterations": int(iterations), "learning_rate": float(learning_rate),
           "record_gradients": bool(record_gradients)}
    with job_folder(values.nbytes) as folder:
        np.save(folder / "runoff.npy", values, allow_pickle=False)
        with warnings.catch_warnings():
            warnings.simplefilter("always", ThalwegWarning)
            results = launch(_rank_fit, job, world_size, device=device, folder=folder)
    first = results[0]
    return FitHistory(losses=first["losses"], state=first["state"], gradients=first["gradients"],
                      gauges_per_rank=[r["gauges"] for r in results])
