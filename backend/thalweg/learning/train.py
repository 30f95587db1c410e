"""Train a runoff model through the differentiable routing, from discharge at gauges only.

runoff model (forcings per catchment -> depth per step) -> x catchment area / dt -> m3/s into each reach ->
:func:`thalweg.routing.route` (only the gauged reaches returned) -> a loss of :mod:`thalweg.learning.losses` at the
training gauges over the calibration period. Modes:

- ``end-to-end``: the runoff model and the routing parameter model (:mod:`thalweg.params.models`) together;
- ``two-step``: the runoff model with the routing frozen at its prior, then the routing parameter model on the
  runoff of the trained model (that second step is :func:`thalweg.learning.fit.fit`, unchanged);
- ``runoff``: the runoff model only, routing at its prior.

Conceptual models run the whole period at each iteration; sequence models may train on random sub-windows of the
calibration period (``window`` steps scored after ``spinup`` steps from a cold start, ``batch`` windows per
iteration, neuralhydrology's practice), scored with NSE* (each gauge's squared error over its calibration
variance, so a short window's own mean does not enter); the state kept is then the best full-period calibration
loss, evaluated every ``eval_every`` iterations. After 5 scored iterations in a row whose loss rose, training goes
back to the best state with half the learning rates and fresh Adam moments (Adam's momentum overshoots near a
minimum of these smooth losses). The validation period and held-out gauges never enter the
training loss. Metrics per gauge and period before and after, a checkpoint to resume, progress and cancel, as
:func:`thalweg.learning.fit.fit`, whose report functions (:mod:`thalweg.learning.report`) print and plot the result.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import Cancelled, InputError, ThalwegError, ThalwegWarning, opt
from ..network import RiverNetwork
from ..params.models import ParameterModel, build_model
from ..runoff.models import RunoffModel
from .checkpoint import digest, load_checkpoint, save_checkpoint
from .fit import _as_period, _metrics, fit
from .gauges import check_series, gauge_roles
from .losses import get_loss
from .splits import Period, check_held_out, period_mask

__all__ = ["train", "TrainResult", "MODES", "depth_to_discharge"]

MODES = ("end-to-end", "two-step", "runoff")
PATIENCE = 25
TOLERANCE = 1e-6
PLATEAU = 5  # iterations with a worse loss: back to the best state, learning rates halved, Adam's moments reset


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` found (the attributes :mod:`thalweg.learning.report` reads, as a ``FitResult``).

    Attributes
    ----------
    runoff_model : the runoff model at its best state.
    routing_model : the routing parameter model at its best state.
    params : routing parameters per reach, name -> float64 [N], SI.
    runoff : float32 [N, T] lateral runoff of the best state, m3/s (what ``route`` takes).
    history, iterations, best_iteration, stopped, loss, validation_loss, metrics_before, metrics_after, settings :
        as :class:`thalweg.learning.fit.FitResult` (history of the runoff stage; in 'two-step' the routing
        stage's fit is in ``routing_fit``).
    routing_fit : the second step's FitResult ('two-step'), else None.
    """

    runoff_model: RunoffModel
    routing_model: ParameterModel
    params: dict[str, np.ndarray]
    runoff: np.ndarray
    history: list[dict[str, Any]]
    iterations: int
    best_iteration: int
    stopped: str
    loss: float
    validation_loss: float | None
    metrics_before: dict[str, dict[str, Any]]
    metrics_after: dict[str, dict[str, Any]]
    settings: dict[str, Any]
    routing_fit: Any = None


def depth_to_discharge(depth: torch.Tensor, area: torch.Tensor, dt: float) -> torch.Tensor:
    """Runoff depth [..., N, T] mm per step over catchments of ``area`` [N] m2 -> m3/s (step means)."""
    return depth * (area[:, None] * (1e-3 / dt))


def _forcing_tensor(forcings: Any, network: RiverNetwork) -> tuple[torch.Tensor, tuple[str, ...] | None]:
    names = getattr(forcings, "names", None)
    values = getattr(forcings, "values", forcings)
    t = values if isinstance(values, torch.Tensor) else torch.as_tensor(np.asarray(values))
    if t.ndim != 3 or t.shape[0] != network.n_reaches:
        raise InputError(f"forcings have shape {tuple(t.shape)}; training needs [{network.n_reaches:,} catchments, "
                         f"time, variables].", field="forcings")
    return t, None if names is None else tuple(names)


def train(*args: Any, threads: int | None = None, **kwargs: Any) -> TrainResult:
    """Train ``runoff_model`` (and the routing) on observed discharge at gauges; see :func:`_train` for the
    parameters (``threads``: torch's CPU threads during training, restored after; None leaves them)."""
    if threads is None:
        return _train(*args, **kwargs)
    if isinstance(threads, bool) or int(threads) != threads or threads < 1:
        raise InputError(f"threads must be a whole number >= 1 (got {threads!r}).", field="threads",
                         hint=f"E.g. {opt('train.threads', '1')}.")
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        return _train(*args, **kwargs)
    finally:
        torch.set_num_threads(before)


def _train(runoff_model: RunoffModel, network: RiverNetwork, forcings: Any, *, dt: float, gauges: Sequence[int],
          observed: Any, routing_model: ParameterModel | None = None, mode: str = "end-to-end",
          calibration: Period | tuple[int, int] | None = None, validation: Period | tuple[int, int] | None = None,
          validation_gauges: Sequence[int] = (), warmup: int = 0, loss: str = "nse", iterations: int = 100,
          routing_iterations: int | None = None, learning_rate: float | None = None,
          routing_learning_rate: float = 0.02, window: int | None = None, spinup: int = 0, batch: int = 4,
          eval_every: int = 10, seed: int = 0, early_stopping: int | None = None,
          checkpoint: str | Path | None = None, checkpoint_every: int = 10, engine: str = "auto", device: Any = None,
          dtype: torch.dtype = torch.float32, progress: Callable[[float, str], None] | None = None,
          should_stop: Callable[[], bool] | None = None, gauge_names: Sequence[str] | None = None) -> TrainResult:
    """Train ``runoff_model`` (and the routing) on observed discharge at gauges.

    Parameters
    ----------
    runoff_model : a :class:`thalweg.runoff.models.RunoffModel` for the network's N catchments (changed in place).
    network : the river network (N reaches, one catchment each, with catchment areas).
    forcings : :class:`thalweg.runoff.forcings.Forcings` or an array [N, T, F] in the model's input order, mm per
        step, on the routing step.
    dt : step length, s.
    gauges, observed, gauge_names, validation_gauges, calibration, validation, warmup, loss, early_stopping,
        checkpoint, checkpoint_every, engine, device, dtype, progress, should_stop : as
        :func:`thalweg.learning.fit.fit`.
    routing_model : a routing parameter model (default: the 'zones' model of the muskingum_nonneg scheme on the
        training gauges for 'end-to-end' and 'two-step', the 'prior' for 'runoff').
    mode : 'end-to-end', 'two-step' or 'runoff' (module docstring).
    iterations : runoff-model iterations (Adam steps).
    routing_iterations : 'two-step': iterations of the routing step (default ``iterations``).
    learning_rate : the runoff model's Adam step (default 0.05 for gr4, 0.005 for lstm, 0.01 for mclstm).
    routing_learning_rate : the routing model's Adam step.
    window, spinup, batch, eval_every : sub-window training (module docstring); None: the whole period.
    seed : seed of the window draws.
    threads : torch's CPU threads during training, restored after (None: leave them). The models step through
        time on small tensors, where more threads than free cores cost far more than they give (an MC-LSTM
        iteration on the Cance took 80 s with 2 threads on a loaded 2-core machine, 5 s with 1).

    Returns
    -------
    TrainResult
    """
    from ..routing import resolve_device, route

    report = progress or (lambda fraction, message: None)
    if mode not in MODES:
        raise InputError(f"unknown training mode '{mode}'.", field="mode",
                         hint=f"Use one of: {', '.join(MODES)}, e.g. {opt('train.mode', 'end-to-end')}.")
    if network.catchment_area is None:
        raise InputError("training turns runoff depths into discharge, and the network has no catchment areas.",
                         path=network.source.path, field="catchment_area",
                         hint=f"Read the network with {opt('read_network.catchments', 'catchments.gpkg')}.")
    for name, value, low in (("iterations", iterations, 0), ("batch", batch, 1), ("eval_every", eval_every, 1),
                             ("spinup", spinup, 0)):
        if isinstance(value, bool) or int(value) != value or value < low:
            raise InputError(f"{name} must be a whole number >= {low} (got {value!r}).", field=name,
                             hint=f"E.g. {opt('train.' + name, '10')}.")
    loss_fn = get_loss(loss)
    f_all, names = _forcing_tensor(forcings, network)
    if names is not None and tuple(names) != tuple(runoff_model.inputs):
        missing = [v for v in runoff_model.inputs if v not in names]
        if missing:
            raise InputError(f"the forcings lack {', '.join(missing)}, an input of the '{runoff_model.kind}' model.",
                             field="forcings", hint="Give every forcing the model was built with.")
        f_all = f_all[..., [list(names).index(v) for v in runoff_model.inputs]]
    if runoff_model.n_catchments != network.n_reaches:
        raise InputError(f"the runoff model was built for {runoff_model.n_catchments:,} catchments; the network has "
                         f"{network.n_reaches:,} reaches.", field="runoff_model",
                         hint="Build the model on this network's catchments.")
    gauge_ids, labels, held = gauge_roles(network, gauges, validation_gauges, gauge_names, what="training",
                                          hint=f"Give the gauged reaches' ids, e.g. {opt('train.gauges', '[101]')}.")
    check_held_out(gauge_ids.size, int(held.sum()), leave_one_out=False)
    n_steps, obs_all = check_series(network, f_all[..., 0], observed, gauge_ids.size, warmup, what="training")
    obs_all = np.where(np.isfinite(obs_all), obs_all, np.nan)
    val_period = _as_period(validation, n_steps, "validation")
    cal_period = _as_period(calibration, n_steps, "calibration")
    if cal_period is None:
        cal_period = Period(0, val_period.start if val_period is not None and val_period.start > warmup else n_steps,
                            "calibration")
    if val_period is not None and max(cal_period.start, val_period.start) < min(cal_period.end, val_period.end):
        raise InputError(f"the calibration period {cal_period.describe()} and validation period "
                         f"{val_period.describe()} overlap.", field="validation",
                         hint="Give disjoint periods.")
    if window is not None:
        window = int(window)
        if window < 2 or window + int(spinup) > cal_period.steps + cal_period.start:
            raise InputError(f"window {window} + spin-up {spinup} steps do not fit before the end of the calibration "
                             f"period (step {cal_period.end:,}).", field="window",
                             hint=f"Shorten them, or train on the whole period ({opt('train.window', 'null')}).")
    if routing_model is None:
        train_ids = gauge_ids[~held].tolist()
        routing_model = build_model("prior" if mode == "runoff" else "zones", network, "muskingum_nonneg",
                                    gauges=train_ids)
    if routing_model.n_reaches != network.n_reaches:
        raise InputError("the routing parameter model was built on another network.", field="routing_model",
                         hint="Build it on this network (build_model(kind, network, ...)).")
    lr = learning_rate if learning_rate is not None else {"gr4": 0.05, "lstm": 0.005, "mclstm": 0.01}.get(
        runoff_model.kind, 0.01)

    dev = resolve_device(device)
    runoff_model.to(dev)
    routing_model.to(dev)
    f_dev = f_all.to(device=dev, dtype=dtype)
    area = torch.as_tensor(np.array(network.catchment_area), dtype=dtype, device=dev)
    train_rows = np.flatnonzero(~held)
    obs_train = period_mask(obs_all[train_rows], cal_period, int(warmup))
    if val_period is not None:
        val_rows, obs_val = np.arange(gauge_ids.size), period_mask(obs_all, val_period, int(warmup))
    else:
        val_rows, obs_val = np.flatnonzero(held), period_mask(obs_all[np.flatnonzero(held)], cal_period, int(warmup))
    has_validation = val_period is not None or bool(held.any())
    if np.isfinite(obs_train).sum(axis=1).min() < 10:
        raise InputError("a training gauge has fewer than 10 observations in the calibration period.",
                         field="observed", hint="Widen the calibration period or hold that gauge out.")
    horizon = max(cal_period.end, val_period.end if val_period is not None else 0)
    obs_train_t = torch.as_tensor(obs_train, dtype=dtype, device=dev)
    obs_val_t = torch.as_tensor(obs_val, dtype=dtype, device=dev)

    def spread(o: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.nanstd(o, axis=1) if o.size else np.zeros(0), dtype=dtype, device=dev)

    std_train, std_val = spread(obs_train), spread(obs_val)
    train_idx, val_idx = torch.as_tensor(train_rows, device=dev), torch.as_tensor(val_rows, device=dev)

    from .calibrate import gauge_zones

    zones, _ = gauge_zones(network, network.index_of(gauge_ids))
    needed = np.flatnonzero(zones >= 0)
    routed = network if needed.size == network.n_reaches else network.take(needed)
    keep = None if routed is network else torch.as_tensor(needed, device=dev)
    at = gauge_ids.tolist()
    scheme = routing_model.scheme

    def lateral(f: torch.Tensor) -> torch.Tensor:
        depth, _ = runoff_model(f)
        q = depth_to_discharge(depth, area, dt)
        return q if keep is None else q.index_select(1, keep)

    def route_q(q: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        if keep is not None:
            params = {k: v.index_select(0, keep) for k, v in params.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ThalwegWarning)
            return route(routed, q, params, scheme, dt=dt, engine=engine, at=at, dtype=dtype, device=dev)

    def full(steps: int) -> torch.Tensor:
        return route_q(lateral(f_dev[None, :, :steps]), routing_model())[0]

    def cal_loss(q: torch.Tensor) -> torch.Tensor:
        return loss_fn(q.index_select(0, train_idx), obs_train_t[:, :q.shape[-1]], std_train)

    def evaluate() -> dict[str, dict[str, Any]]:
        with torch.no_grad():
            q = full(n_steps).cpu().numpy().astype(np.float64)
        out = {}
        for g, label in enumerate(labels):
            cal = _metrics(q[g], period_mask(obs_all[g][None], cal_period, int(warmup))[0])
            val = None if val_period is None else _metrics(q[g], period_mask(obs_all[g][None], val_period,
                                                                              int(warmup))[0])
            out[label] = {"reach_id": int(gauge_ids[g]), "role": "held-out" if held[g] else "calibration",
                          "calibration": cal, "validation": val}
        return out

    settings = {"model": {**runoff_model.describe(), "routing": routing_model.describe()}, "mode": mode,
                "loss": loss if window is None else "nse_star (windows)", "optimiser": "adam", "learning_rate": lr,
                "routing_learning_rate": routing_learning_rate, "iterations": int(iterations),
                "routing_iterations": routing_iterations, "window": window, "spinup": int(spinup),
                "batch": int(batch), "seed": int(seed), "warmup": int(warmup), "calibration": cal_period.to_dict(),
                "validation": None if val_period is None else val_period.to_dict(),
                "gauges": [{"label": lab, "reach_id": int(r), "role": "held-out" if h else "calibration"}
                           for lab, r, h in zip(labels, gauge_ids.tolist(), held.tolist())],
                "dt": float(dt), "dtype": str(dtype).replace("torch.", ""), "engine": engine}
    metrics_before = evaluate()

    groups = [{"params": [p for p in runoff_model.parameters() if p.requires_grad], "lr": lr}]
    if mode == "end-to-end":
        routing_weights = [p for p in routing_model.parameters() if p.requires_grad]
        if routing_weights:
            groups.append({"params": routing_weights, "lr": routing_learning_rate})
    optimiser = torch.optim.Adam(groups)
    generator = np.random.default_rng(int(seed))
    window_loss = get_loss("nse_star")

    def objective() -> tuple[torch.Tensor, float, float | None]:
        """(loss to minimise, its value, the validation loss or None)."""
        if window is None:
            q = full(horizon)
            value = cal_loss(q)
            val = float(loss_fn(q.detach().index_select(0, val_idx), obs_val_t[:, :horizon], std_val)) \
                if has_validation else None
        else:
            lo = max(cal_period.start, int(spinup))
            starts = generator.integers(lo, cal_period.end - window + 1, size=int(batch))
            f = torch.stack([f_dev[:, s - spinup:s + window] for s in starts])
            q = route_q(lateral(f), routing_model())[..., spinup:]
            o = torch.stack([obs_train_t[:, s:s + window] for s in starts])
            value = window_loss(q.index_select(1, train_idx).reshape(-1, window), o.reshape(-1, window),
                                std_train.repeat(int(batch)))
            val = None
        penalty = getattr(runoff_model, "penalty", None)
        total = value + (penalty().to(value.dtype) if penalty is not None else 0.0) + routing_model.penalty().to(
            value.dtype) * (mode == "end-to-end")
        return total, float(total.detach()), val

    fingerprint: dict[str, str] = {}
    if checkpoint is not None:
        fingerprint = {"runoff_model": digest((runoff_model.spec(), [digest(v) for v in
                                                                     runoff_model.state_dict().values()])),
                       "routing_model": digest((routing_model.describe(), [digest(v) for v in
                                                                           routing_model.state_dict().values()])),
                       "network": digest(network.ids), "forcings": digest(f_all), "observed": digest(obs_all),
                       "settings": digest({k: v for k, v in settings.items() if k not in ("model",)})}
    history: list[dict[str, Any]] = []
    best = {"loss": math.inf, "validation": math.inf, "iteration": 0, "state": _states(runoff_model, routing_model)}
    trace: list[float] = []
    stale, start_it, stopped = 0, 1, "iterations"
    plateau = 0

    def snapshot(it: int) -> dict[str, Any]:
        return {"fingerprint": fingerprint, "iteration": it, "state": _states(runoff_model, routing_model),
                "optimiser": optimiser.state_dict(), "history": history, "best": best, "trace": trace,
                "stale": stale, "plateau": plateau, "rng": generator.bit_generator.state}

    if checkpoint is not None:
        saved = load_checkpoint(checkpoint, fingerprint)
        if saved is not None:
            _load_states(runoff_model, routing_model, saved["state"])
            optimiser.load_state_dict(saved["optimiser"])
            history[:], trace[:] = saved["history"], saved["trace"]
            best, stale, start_it = saved["best"], int(saved["stale"]), int(saved["iteration"]) + 1
            plateau = int(saved["plateau"])
            generator.bit_generator.state = saved["rng"]
            report(min(1.0, saved["iteration"] / max(iterations, 1)),
                   f"resumed from checkpoint {Path(checkpoint).name} at iteration {saved['iteration']:,}")
    share = 0.5 if mode == "two-step" else 1.0
    for it in range(start_it, int(iterations) + 1):
        if should_stop is not None and should_stop():
            if checkpoint is not None:
                save_checkpoint(checkpoint, snapshot(it - 1))
            raise Cancelled(f"training iteration {it}")
        state_before = _states(runoff_model, routing_model)
        optimiser.zero_grad()
        total, value, val = objective()
        if not math.isfinite(value):
            raise InputError(f"the training loss is not finite at iteration {it}.", field="observed",
                             hint=f"Check the forcings and observations, or lower {opt('train.learning_rate')}.")
        total.backward()
        for group in groups:
            for w in group["params"]:
                if w.grad is not None and not bool(torch.isfinite(w.grad).all()):
                    raise ThalwegError(f"the gradient of the '{loss}' loss is not finite at iteration {it}.")
        optimiser.step()
        if window is not None and (it % int(eval_every) == 0 or it == int(iterations)):
            with torch.no_grad():
                q = full(horizon)
                value = float(cal_loss(q))
                val = float(loss_fn(q.index_select(0, val_idx), obs_val_t[:, :horizon], std_val)) \
                    if has_validation else None
            state_before = _states(runoff_model, routing_model)  # scored after this step
        elif window is not None:
            history.append({"iteration": it, "loss": value, "validation_loss": None, "scored": False})
            report(share * it / max(int(iterations), 1), f"training iteration {it:,}: window loss {value:.5g}")
            continue
        history.append({"iteration": it, "loss": value, "validation_loss": val})
        if early_stopping is not None and val is not None:
            if val < best["validation"]:
                best.update(loss=value, validation=val, iteration=it, state=state_before)
                stale = 0
            else:
                stale += 1
        elif value < best["loss"]:
            best.update(loss=value, validation=math.inf if val is None else val, iteration=it, state=state_before)
        if trace and value >= trace[-1]:
            plateau += 1
            if plateau >= PLATEAU and early_stopping is None and best["iteration"] > 0:
                # back to the best state with half the step and fresh moments
                _load_states(runoff_model, routing_model, best["state"])
                optimiser.state.clear()
                for group in optimiser.param_groups:
                    group["lr"] *= 0.5
                plateau = 0
        else:
            plateau = 0
        trace.append(min(trace[-1], value) if trace else value)
        shown = f"loss {value:.5g}" + (f", validation {val:.5g}" if val is not None else "")
        report(share * it / max(int(iterations), 1), f"training iteration {it:,} of {int(iterations):,}: {shown}")
        if checkpoint is not None and it % int(checkpoint_every) == 0:
            save_checkpoint(checkpoint, snapshot(it))
        if early_stopping is not None and stale >= int(early_stopping):
            stopped = "early-stopping"
            break
        if early_stopping is None and window is None and len(trace) > PATIENCE:
            old = trace[-1 - PATIENCE]
            if old - trace[-1] <= TOLERANCE * abs(old):
                stopped = "converged"
                break
    if best["iteration"] > 0:
        _load_states(runoff_model, routing_model, best["state"])
    with torch.no_grad():
        runoff_best = lateral_all(runoff_model, f_dev, area, dt)
    routing_fit = None
    if mode == "two-step":
        routing_fit = fit(routing_model, network, runoff_best, dt=dt, gauges=gauge_ids.tolist(), observed=obs_all,
                          calibration=cal_period, validation=val_period, validation_gauges=gauge_ids[held].tolist(),
                          warmup=warmup, loss=loss, iterations=int(iterations if routing_iterations is None
                                                                   else routing_iterations),
                          learning_rate=routing_learning_rate, early_stopping=early_stopping,
                          checkpoint=None if checkpoint is None else Path(str(checkpoint) + ".routing"),
                          checkpoint_every=checkpoint_every, engine=engine, device=dev, dtype=dtype,
                          progress=lambda f, m: report(0.5 + 0.5 * f, f"routing step: {m}"),
                          should_stop=should_stop, gauge_names=labels)
    metrics_after = evaluate()
    params = routing_model.table()
    if not all(np.isfinite(v).all() for v in params.values()):
        raise ThalwegError("the trained routing parameters are not finite.")
    if best["iteration"] == 0:
        with torch.no_grad():
            best["loss"] = float(cal_loss(full(horizon)))
    report(1.0, "done")
    return TrainResult(runoff_model=runoff_model, routing_model=routing_model, params=params,
                       runoff=runoff_best.cpu().numpy().astype(np.float32), history=history,
                       iterations=len(history), best_iteration=int(best["iteration"]), stopped=stopped,
                       loss=float(best["loss"]),
                       validation_loss=None if not has_validation or not math.isfinite(best["validation"])
                       else float(best["validation"]), metrics_before=metrics_before, metrics_after=metrics_after,
                       settings=settings, routing_fit=routing_fit)


def lateral_all(runoff_model: RunoffModel, forcings: torch.Tensor, area: torch.Tensor, dt: float) -> torch.Tensor:
    """Lateral runoff [N, T] m3/s of ``runoff_model`` on forcings [N, T, F] mm per step (one pass)."""
    depth, _ = runoff_model(forcings[None])
    return depth_to_discharge(depth, area, dt)[0]


def _states(runoff_model: torch.nn.Module, routing_model: torch.nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    return {"runoff": {k: v.detach().clone() for k, v in runoff_model.state_dict().items()},
            "routing": {k: v.detach().clone() for k, v in routing_model.state_dict().items()}}


def _load_states(runoff_model: torch.nn.Module, routing_model: torch.nn.Module, state: dict) -> None:
    runoff_model.load_state_dict(state["runoff"])
    routing_model.load_state_dict(state["routing"])
