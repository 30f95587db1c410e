"""Fit a parameter model to observed discharge through the differentiable routing.

:func:`fit` routes with :func:`thalweg.routing.route` (only the gauged reaches are returned, ``at=``; the
routing's gradient is the engines' own adjoint, so no autograd tape runs over time steps), minimises a loss of
:mod:`thalweg.learning.losses` on the training gauges over the calibration period (plus the model's penalty),
and measures NSE/KGE/bias per gauge on the calibration and validation periods, before and after.

Splits: the calibration period trains; the validation period and the held-out gauges (``validation_gauges``)
never enter the training loss; they only choose the stopping point when ``early_stopping`` is set. The routing
for the training loss runs only up to the last step the loss or the validation needs.
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

from ..errors import Cancelled, InputError, ThalwegError, ThalwegWarning, format_ids, opt
from ..network import RiverNetwork
from ..params.models import ParameterModel
from .checkpoint import digest, load_checkpoint, save_checkpoint
from .gauges import check_series, gauge_roles
from .losses import get_loss
from .splits import Period, check_held_out, leave_one_out, period_mask

__all__ = ["fit", "FitResult", "OPTIMISERS", "leave_one_gauge_out", "MIN_OBSERVATIONS"]

OPTIMISERS = ("adam", "lbfgs")
MIN_OBSERVATIONS = 10
PATIENCE = 25  # iterations without a relative gain > TOLERANCE of the best training loss: converged
TOLERANCE = 1e-6


@dataclasses.dataclass
class FitResult:
    """What :func:`fit` found.

    Attributes
    ----------
    params : name -> float64 [N], every parameter of the scheme per reach at the best state, SI.
    model : the parameter model, at its best state.
    history : one dict per iteration: ``iteration`` (1-based), ``loss`` (training loss + penalty) and
        ``validation_loss`` (None without a validation set), both at the state the iteration started from.
    iterations : iterations run (including those of a resumed checkpoint).
    best_iteration : the iteration whose starting state was kept (0: nothing was trained).
    stopped : 'iterations', 'converged', 'early-stopping' or 'nothing to learn'.
    loss, validation_loss : at the best state.
    metrics_before, metrics_after : gauge label -> {"reach_id", "role" ('calibration' or 'held-out'),
        "calibration": {nse, kge, pbias, n}, "validation": {...} or None}, at the model's initial state and at the
        result, over valid observations after the warm-up.
    settings : the fit's settings and split, JSON-ready.
    """

    params: dict[str, np.ndarray]
    model: ParameterModel
    history: list[dict[str, Any]]
    iterations: int
    best_iteration: int
    stopped: str
    loss: float
    validation_loss: float | None
    metrics_before: dict[str, dict[str, Any]]
    metrics_after: dict[str, dict[str, Any]]
    settings: dict[str, Any]


def _as_period(value: Any, n_steps: int, what: str) -> Period | None:
    if value is None or isinstance(value, Period):
        period = value
    else:
        try:
            start, end = (int(v) for v in value)
        except (TypeError, ValueError):
            raise InputError(f"{what} must be a Period or (start, end) step indices (got {value!r}).", field=what,
                             hint=f"E.g. {opt('fit.' + what, '(0, 1000)')}; thalweg.learning.splits.period_of "
                                  "turns dates into one.") from None
        period = Period(start, end, what)
    if period is not None and period.end > n_steps:
        raise InputError(f"the {what} period ends at step {period.end:,}, after the series' {n_steps:,} steps.",
                         field=what, hint="Choose a period inside the runoff's time span.")
    return period


def _metrics(q: np.ndarray, obs: np.ndarray) -> dict[str, float]:
    from ..metrics import kge, nse, pbias

    n = int(np.isfinite(obs).sum())
    if n == 0:
        return {"nse": math.nan, "kge": math.nan, "pbias": math.nan, "n": 0}
    return {"nse": float(nse(q, obs)), "kge": float(kge(q, obs)), "pbias": float(pbias(q, obs)), "n": n}


def fit(model: ParameterModel, network: RiverNetwork, runoff: Any, *, dt: float, gauges: Sequence[int],
        observed: Any, calibration: Period | tuple[int, int] | None = None,
        validation: Period | tuple[int, int] | None = None, validation_gauges: Sequence[int] = (),
        warmup: int = 0, loss: str = "nse", optimiser: str = "adam", iterations: int = 200,
        learning_rate: float | None = None, weight_decay: float = 0.0, early_stopping: int | None = None,
        checkpoint: str | Path | None = None, checkpoint_every: int = 10, engine: str = "auto", device: Any = None,
        dtype: torch.dtype = torch.float32, progress: Callable[[float, str], None] | None = None,
        should_stop: Callable[[], bool] | None = None, gauge_names: Sequence[str] | None = None) -> FitResult:
    """Fit ``model`` to observed discharge at gauges.

    Parameters
    ----------
    model : a :class:`thalweg.params.models.ParameterModel` built on ``network`` (changed in place: it ends at its
        best state).
    network : the river network (N reaches).
    runoff : [N, T] lateral runoff, m3/s (mean over each step), reaches in network order.
    dt : step length, s.
    gauges : reach ids [G] of the gauged reaches.
    observed : [G, T] observed discharge, m3/s, aligned to the routed Q (end of each step); NaN where missing.
    calibration : steps of the training loss, a :class:`Period` or (start, end); default every step before the
        validation period (or all steps).
    validation : steps of the validation metrics (and of early stopping); default none.
    validation_gauges : reach ids of held-out gauges, a subset of ``gauges``: never in the training loss.
    warmup : first steps left out of every loss and metric (spin-up from the cold start).
    loss : 'nse', 'kge', 'nse_star' or 'log_nse' (:mod:`thalweg.learning.losses`).
    optimiser : 'adam' or 'lbfgs' (one L-BFGS iteration, strong-Wolfe line search, per iteration).
    iterations : most iterations (fewer on convergence or early stopping).
    learning_rate : Adam's step (default 0.02; the offsets live on the logit scale of each bound) or L-BFGS's
        (default 1).
    weight_decay : Adam's weight decay (L2 on the model's weights), e.g. for the regression's MLP.
    early_stopping : stop after this many iterations without a better validation loss, and keep the best
        validation state (needs a validation period or held-out gauges); None: keep the best training loss.
    checkpoint : file to save the state to every ``checkpoint_every`` iterations and on cancel; an existing
        checkpoint of the same fit is resumed, and the resumed fit ends where an uninterrupted one would.
    engine, device, dtype : as in :func:`thalweg.routing.route`.
    progress : ``progress(fraction, message)`` after each iteration (the message holds the losses).
    should_stop : polled before each iteration; True saves the checkpoint and raises :class:`Cancelled`.
    gauge_names : labels [G] of the gauges in metrics and messages (default: the reach ids).

    Returns
    -------
    FitResult
    """
    from ..routing import resolve_device, route

    report = progress or (lambda fraction, message: None)
    loss_fn = get_loss(loss)
    if optimiser not in OPTIMISERS:
        raise InputError(f"unknown optimiser '{optimiser}'.", field="optimiser",
                         hint=f"Use one of: {', '.join(OPTIMISERS)}, e.g. {opt('fit.optimiser', 'adam')}.")
    if isinstance(iterations, bool) or int(iterations) != iterations or iterations < 0:
        raise InputError(f"iterations must be a whole number >= 0 (got {iterations!r}).", field="iterations",
                         hint=f"E.g. {opt('fit.iterations', '200')}.")
    lr = (0.02 if optimiser == "adam" else 1.0) if learning_rate is None else float(learning_rate)
    if not (math.isfinite(lr) and lr > 0):
        raise InputError(f"learning_rate must be a positive number (got {learning_rate!r}).", field="learning_rate",
                         hint=f"E.g. {opt('fit.learning_rate', '0.02')}.")
    if model.n_reaches != network.n_reaches:
        raise InputError(f"the parameter model was built for {model.n_reaches:,} reaches; the network has "
                         f"{network.n_reaches:,}.", field="model",
                         hint="Build the model on this network (build_model(kind, network, ...)).")
    gauge_ids, labels, held = gauge_roles(network, gauges, validation_gauges, gauge_names, what="fitting",
                                          hint=f"Give the gauged reaches' ids, e.g. {opt('fit.gauges', '[101]')}.")
    check_held_out(gauge_ids.size, int(held.sum()))
    runoff_t = runoff if isinstance(runoff, torch.Tensor) else torch.as_tensor(np.asarray(runoff))
    n_steps, obs_all = check_series(network, runoff_t, observed, gauge_ids.size, warmup, what="fitting",
                                    warmup_hint=f"E.g. {opt('fit.warmup', '48')}.")
    obs_all = np.where(np.isfinite(obs_all), obs_all, np.nan)
    val_period = _as_period(validation, n_steps, "validation")
    cal_period = _as_period(calibration, n_steps, "calibration")
    if cal_period is None:
        cal_end = val_period.start if val_period is not None and val_period.start > warmup else n_steps
        cal_period = Period(0, cal_end, "calibration")
    if val_period is not None and max(cal_period.start, val_period.start) < min(cal_period.end, val_period.end):
        raise InputError(f"the calibration period {cal_period.describe()} and validation period "
                         f"{val_period.describe()} overlap, so validation would score trained "
                         f"steps.", field="validation", hint="Give disjoint periods.")
    has_validation = val_period is not None or bool(held.any())
    if early_stopping is not None:
        if isinstance(early_stopping, bool) or int(early_stopping) != early_stopping or early_stopping < 1:
            raise InputError(f"early_stopping must be a whole number of iterations >= 1 (got {early_stopping!r}).",
                             field="early_stopping", hint=f"E.g. {opt('fit.early_stopping', '20')}.")
        if not has_validation:
            raise InputError("early stopping needs a validation period or held-out gauges.", field="early_stopping",
                             hint=f"Give {opt('fit.validation', '(1000, 1500)')} or "
                                  f"{opt('fit.validation_gauges', '[37]')}.")

    # the training cells: training gauges x calibration period; the validation cells: every gauge x the
    # validation period, or without one, the held-out gauges x the calibration period
    train_rows = np.flatnonzero(~held)
    obs_train = period_mask(obs_all[train_rows], cal_period, int(warmup))
    counts = np.isfinite(obs_train).sum(axis=1)
    with np.errstate(invalid="ignore"):
        spread = np.nanmax(np.where(counts[:, None] > 0, obs_train, 0.0), axis=1) - \
            np.nanmin(np.where(counts[:, None] > 0, obs_train, 0.0), axis=1)
    bad = np.flatnonzero((counts < MIN_OBSERVATIONS) | ~(spread > 0))
    if bad.size:
        which = [labels[train_rows[i]] for i in bad]
        raise InputError(f"gauge(s) {format_ids(which)} have {', '.join(str(int(counts[i])) for i in bad[:3])} valid "
                         f"observations in the calibration period after the warm-up (or constant ones); fitting "
                         f"needs at least {MIN_OBSERVATIONS} varying values per training gauge.", field="observed",
                         ids=which, hint="Widen the calibration period, shorten the warm-up, or hold those gauges "
                                         f"out with {opt('fit.validation_gauges')}.")
    if val_period is not None:
        val_rows = np.arange(gauge_ids.size)
        obs_val = period_mask(obs_all, val_period, int(warmup))
    else:
        val_rows = np.flatnonzero(held)
        obs_val = period_mask(obs_all[val_rows], cal_period, int(warmup))
    if has_validation and not np.isfinite(obs_val).any():
        raise InputError("no observation falls in the validation period at any gauge (or at the held-out gauges in "
                         "the calibration period), so validation would score nothing.", field="observed",
                         hint=f"Choose a {opt('fit.validation')} period the observations cover.")
    horizon = max(cal_period.end, val_period.end if val_period is not None else 0) if has_validation \
        else cal_period.end

    dev = resolve_device(device)
    model.to(dev)
    q_in = runoff_t.to(device=dev, dtype=dtype)
    obs_train_t = torch.as_tensor(obs_train[:, :horizon], dtype=dtype, device=dev)
    obs_val_t = torch.as_tensor(obs_val[:, :horizon], dtype=dtype, device=dev)

    def spread_of(o: torch.Tensor) -> torch.Tensor:
        valid = ~torch.isnan(o)
        n = valid.sum(-1).clamp(min=1)
        filled = torch.where(valid, o, torch.zeros_like(o))
        mean = filled.sum(-1) / n
        return torch.sqrt((torch.where(valid, o - mean[:, None], torch.zeros_like(o)) ** 2).sum(-1) / n)

    std_train, std_val = spread_of(obs_train_t), spread_of(obs_val_t)
    train_idx = torch.as_tensor(train_rows, device=dev)
    val_idx = torch.as_tensor(val_rows, device=dev)
    at = gauge_ids.tolist()
    scheme = model.scheme
    # only reaches at or upstream of a gauge change the discharge at the gauges: route that part alone
    from .calibrate import gauge_zones

    zones, _ = gauge_zones(network, network.index_of(gauge_ids))
    needed = np.flatnonzero(zones >= 0)
    routed = network if needed.size == network.n_reaches else network.take(needed)
    keep = None if routed is network else torch.as_tensor(needed, device=dev)
    if keep is not None:
        q_in = q_in.index_select(0, keep)

    def simulate(params: dict[str, torch.Tensor], steps: int) -> torch.Tensor:
        if keep is not None:
            params = {name: value.index_select(0, keep) for name, value in params.items()}
        return route(routed, q_in[:, :steps], params, scheme, dt=dt, engine=engine, at=at, dtype=dtype, device=dev)

    def evaluate() -> dict[str, dict[str, Any]]:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", ThalwegWarning)
            q = simulate(model(), n_steps).cpu().numpy().astype(np.float64)
        out = {}
        for g, label in enumerate(labels):
            cal = _metrics(q[g], period_mask(obs_all[g][None], cal_period, int(warmup))[0])
            val = None if val_period is None else _metrics(q[g], period_mask(obs_all[g][None], val_period,
                                                                              int(warmup))[0])
            out[label] = {"reach_id": int(gauge_ids[g]), "role": "held-out" if held[g] else "calibration",
                          "calibration": cal, "validation": val}
        return out

    settings = {"model": model.describe(), "loss": loss, "optimiser": optimiser, "learning_rate": lr,
                "weight_decay": float(weight_decay), "iterations": int(iterations), "warmup": int(warmup),
                "early_stopping": early_stopping, "calibration": cal_period.to_dict(),
                "validation": None if val_period is None else val_period.to_dict(),
                "gauges": [{"label": lab, "reach_id": int(r), "role": "held-out" if h else "calibration"}
                           for lab, r, h in zip(labels, gauge_ids.tolist(), held.tolist())],
                "dt": float(dt), "dtype": str(dtype).replace("torch.", ""), "engine": engine}
    with warnings.catch_warnings():
        metrics_before = evaluate()  # the prior's warnings (e.g. negative coefficients) show once, below

    weights = [p for p in model.parameters() if p.requires_grad]
    history: list[dict[str, Any]] = []
    best = {"loss": math.inf, "validation": math.inf, "iteration": 0,
            "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
    trace: list[float] = []
    stale = 0
    stopped = "iterations"
    start_it = 1
    if not weights or iterations == 0:
        stopped = "nothing to learn" if not weights else "iterations"
        iterations = 0
    if weights:
        if optimiser == "adam":
            opt_ = torch.optim.Adam(weights, lr=lr, weight_decay=float(weight_decay))
        else:
            opt_ = torch.optim.LBFGS(weights, lr=lr, max_iter=1, max_eval=12, history_size=10,
                                     line_search_fn="strong_wolfe")
    # hashing the data costs about a second per 400 MB: only a checkpoint needs it
    fingerprint: dict[str, str] = {}
    if checkpoint is not None:
        fingerprint = {
            "model": digest((model.kind, model.describe(), [digest(v) for v in model.state_dict().values()])),
            "network": digest(network.ids), "runoff": digest(runoff_t), "observed": digest(obs_all),
            "gauges": digest((gauge_ids.tolist(), held.tolist())), "split": digest((cal_period, val_period,
                                                                                   int(warmup))),
            "loss": loss, "optimiser": digest((optimiser, lr, float(weight_decay))),
            "early_stopping": str(early_stopping), "routing": digest((float(dt), str(dtype), engine))}

    def snapshot(it: int) -> dict[str, Any]:
        return {"fingerprint": fingerprint, "iteration": it, "model": model.state_dict(),
                "optimiser": opt_.state_dict(), "history": history, "best": best, "trace": trace, "stale": stale}

    if checkpoint is not None and weights:
        state = load_checkpoint(checkpoint, fingerprint)
        if state is not None:
            model.load_state_dict(state["model"])
            opt_.load_state_dict(state["optimiser"])
            history[:] = state["history"]
            best = state["best"]
            trace[:] = state["trace"]
            stale = int(state["stale"])
            start_it = int(state["iteration"]) + 1
            report(min(1.0, state["iteration"] / max(iterations, 1)),
                   f"resumed from checkpoint {Path(checkpoint).name} at iteration {state['iteration']:,}")

    def objective(record: list) -> torch.Tensor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ThalwegWarning)
            q = simulate(model(), horizon)
        train = loss_fn(q.index_select(0, train_idx), obs_train_t, std_train) + model.penalty().to(q.dtype)
        if not record:
            value = float(train.detach())
            if not math.isfinite(value):
                raise InputError("the training loss is not finite.", field="observed",
                                 hint="Check the runoff and observations for extreme values, or lower "
                                      f"{opt('fit.learning_rate')}.")
            val = None
            if has_validation:
                val = float(loss_fn(q.detach().index_select(0, val_idx), obs_val_t, std_val))
            record.append((value, val, {k: v.detach().clone() for k, v in model.state_dict().items()}))
        return train

    it = start_it - 1
    for it in range(start_it, int(iterations) + 1):
        if should_stop is not None and should_stop():
            if checkpoint is not None:
                save_checkpoint(checkpoint, snapshot(it - 1))
            raise Cancelled(f"fit iteration {it}")
        record: list = []

        def closure(record=record, it=it) -> torch.Tensor:
            opt_.zero_grad()
            value = objective(record)
            value.backward()
            if not all(bool(torch.isfinite(w.grad).all()) for w in weights if w.grad is not None):
                raise ThalwegError(f"the gradient of the '{loss}' loss is not finite at iteration {it}.")
            return value

        opt_.step(closure)
        value, val, state_before = record[0]
        history.append({"iteration": it, "loss": value, "validation_loss": val})
        improved_val = val is not None and val < best["validation"]
        if early_stopping is not None:
            if improved_val:
                best.update(loss=value, validation=val, iteration=it, state=state_before)
                stale = 0
            else:
                stale += 1
        elif value < best["loss"]:
            best.update(loss=value, validation=math.inf if val is None else val, iteration=it, state=state_before)
        trace.append(min(trace[-1], value) if trace else value)
        shown = f"loss {value:.5g}" + (f", validation {val:.5g}" if val is not None else "")
        report(it / max(int(iterations), 1), f"fit iteration {it:,} of {int(iterations):,}: {shown}")
        if checkpoint is not None and it % int(checkpoint_every) == 0:
            save_checkpoint(checkpoint, snapshot(it))
        if early_stopping is not None and stale >= int(early_stopping):
            stopped = "early-stopping"
            break
        if early_stopping is None and len(trace) > PATIENCE:
            old = trace[-1 - PATIENCE]
            if old - trace[-1] <= TOLERANCE * abs(old):
                stopped = "converged"
                break

    if best["iteration"] > 0:
        # the last step's result was never scored: scoring it costs one more routing, and the kept state is
        # the best scored one
        model.load_state_dict(best["state"])
    metrics_after = evaluate()
    params = model.table()
    if not all(np.isfinite(v).all() for v in params.values()):
        raise ThalwegError("the fitted parameters are not finite.")
    if best["iteration"] == 0:
        with torch.no_grad():
            record = []
            objective(record)
        best.update(loss=record[0][0], validation=record[0][1] if record[0][1] is not None else math.inf)
    return FitResult(params=params, model=model, history=history, iterations=len(history),
                     best_iteration=int(best["iteration"]), stopped=stopped, loss=float(best["loss"]),
                     validation_loss=None if not has_validation else float(best["validation"]),
                     metrics_before=metrics_before, metrics_after=metrics_after, settings=settings)


def leave_one_gauge_out(make_model: Callable[[list[int]], ParameterModel], network: RiverNetwork, runoff: Any, *,
                        gauges: Sequence[int], observed: Any, gauge_names: Sequence[str] | None = None,
                        **fit_options: Any) -> dict[str, dict[str, Any]]:
    """Fit once per gauge with that gauge held out; the held-out gauge's metrics measure transfer to ungauged
    reaches.

    Parameters
    ----------
    make_model : ``make_model(training_gauge_reach_ids) -> ParameterModel`` (a fresh model each time; 'zones'
        depends on the training gauges).
    gauges, observed, gauge_names : as :func:`fit`; the other keywords go to :func:`fit` (not
        ``validation_gauges``).

    Returns
    -------
    gauge label -> the held-out gauge's entry of ``metrics_after`` (and ``before``: its ``metrics_before``).
    """
    gauges = [int(g) for g in gauges]
    labels = [str(g) for g in (gauge_names if gauge_names is not None else gauges)]
    out = {}
    for train, held in leave_one_out(gauges):
        result = fit(make_model(train), network, runoff, gauges=gauges, observed=observed, validation_gauges=[held],
                     gauge_names=labels, **fit_options)
        label = labels[gauges.index(held)]
        out[label] = dict(result.metrics_after[label], before=result.metrics_before[label])
    return out
