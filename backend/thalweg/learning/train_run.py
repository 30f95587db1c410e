"""One training run from files, with its outputs: what ``thalweg train`` and a server ``train`` job run.

Reads the network (with catchment areas), the forcings, the static attributes, the gauges and observations; builds
the runoff model and the routing parameter model; trains (:func:`thalweg.learning.train.train`); writes, each
atomically and only once training has finished: ``<name>_runoff_model.pt``, ``<name>_train.json``,
``<name>_train.png``, ``<name>_params.csv`` and ``<name>_runoff.nc``.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .._files import atomic_path, atomic_write_text
from ..config import TrainSettings
from ..errors import InputError, opt

__all__ = ["TrainRun", "run_train", "read_training_inputs"]


@dataclasses.dataclass
class TrainRun:
    """What :func:`run_train` did: the result, the printed table, the files written, timings (s)."""

    result: Any
    table: str
    outputs: dict[str, Path]
    timings: dict[str, float]


def _catchment_source(settings: TrainSettings) -> tuple[str | None, str | None]:
    if settings.catchments:
        return settings.catchments, settings.catchment_layer
    if Path(settings.network).suffix.lower() == ".gpkg":
        import pyogrio

        if "catchments" in [name for name, _ in pyogrio.list_layers(settings.network)]:
            return settings.network, "catchments"
    return None, None


def read_training_inputs(settings: TrainSettings) -> dict[str, Any]:
    """network, forcings, static [N, A], gauges, observed [G, T] (on the forcings' step ends) of ``settings``."""
    from ..hydrography import read_network
    from ..runoff.forcings import read_forcings, read_static
    from .gauges import read_gauges

    catchments, layer = _catchment_source(settings)
    network = read_network(settings.network, catchments=catchments, catchment_layer=layer)
    forcings = read_forcings(dict(settings.forcings or {}), network, catchments=catchments, catchment_layer=layer)
    static = read_static(settings.static, network, settings.static_file)
    gauges = read_gauges(settings.gauges, network, observed=settings.observed)
    observed = gauges.observed_on(forcings.end_time)
    return {"network": network, "forcings": forcings, "static": static, "gauges": gauges, "observed": observed}


def _period(time_end: np.ndarray, text: str | None, label: str):
    from .splits import period_of

    if text is None:
        return None
    if "/" not in text:
        raise InputError(f"{label} '{text}' is not START/END.", field=label,
                         hint=f"Write it as START/END, e.g. {opt('train.' + label, '2014-09-15/2014-11-14')}.")
    start, end = text.split("/", 1)
    return period_of(time_end, start, end, label=label, what=label)


def run_train(settings: TrainSettings, *, progress: Callable[[float, str], None] | None = None,
              should_stop: Callable[[], bool] | None = None, write: bool = True) -> TrainRun:
    """Read, train, report and write the outputs of ``settings`` (module docstring)."""
    import time

    import torch

    from ..params.models import build_model
    from ..runoff.models import build_runoff_model, save_runoff_model
    from .report import fit_record, format_metrics, plot_metrics, write_parameter_table
    from .train import train
    from ..params.checks import check_celerity
    from .splits import check_held_out

    report = progress or (lambda fraction, message: None)
    t0 = time.perf_counter()
    inputs = read_training_inputs(settings)
    network, forcings, gauges = inputs["network"], inputs["forcings"], inputs["gauges"]
    timings = {"read": time.perf_counter() - t0}
    end = forcings.end_time
    cal, val = _period(end, settings.calibration, "calibration"), _period(end, settings.validation, "validation")
    window = cal if cal is not None else None
    lo, hi = (window.start, window.end) if window is not None else (0, forcings.n_steps)
    stats = {n: [float(forcings.variable(n)[:, lo:hi].mean()), float(forcings.variable(n)[:, lo:hi].std())]
             for n in forcings.names}
    options: dict[str, Any] = {"seed": settings.seed}
    if settings.runoff_model == "gr4":
        options.update(parameter_model=settings.parameter_model, hidden=list(settings.hidden))
    elif settings.hidden:
        options["hidden"] = int(settings.hidden[0])
    model = build_runoff_model(settings.runoff_model, forcings.names, n_catchments=network.n_reaches,
                               static=inputs["static"] if settings.static else None, static_names=settings.static,
                               input_stats=stats, **options)
    held = [gauges.reach_of(g) for g in settings.validate_gauges]
    train_ids = [int(r) for r in gauges.reach_ids if int(r) not in held]
    check_held_out(len(gauges.reach_ids), len(gauges.reach_ids) - len(train_ids), leave_one_out=False)
    kind = "prior" if settings.mode == "runoff" else settings.routing_model
    routing = build_model(kind, network, settings.scheme, gauges=train_ids, attributes=("length", "area"),
                          seed=settings.seed)
    t1 = time.perf_counter()
    result = train(model, network, forcings, dt=forcings.dt, gauges=gauges.reach_ids.tolist(),
                   observed=inputs["observed"], routing_model=routing, mode=settings.mode, calibration=cal,
                   validation=val, validation_gauges=held, warmup=settings.warmup, loss=settings.loss,
                   iterations=settings.iterations, routing_iterations=settings.routing_iterations or None,
                   learning_rate=settings.learning_rate, routing_learning_rate=settings.routing_learning_rate,
                   window=settings.window or None, spinup=settings.spinup, batch=settings.batch, seed=settings.seed,
                   checkpoint=settings.checkpoint, engine=settings.engine, device=settings.device,
                   threads=settings.threads,
                   progress=report, should_stop=should_stop, gauge_names=[str(g) for g in gauges.ids])
    timings["train"] = time.perf_counter() - t1
    if kind != "prior":
        check_celerity(network, routing.scheme, result.params, names=routing.learned, what="trained",
                       prior={n: routing.prior_of(n) for n in routing.learned},
                       bound_option=None, fix=f"Learn fewer routing parameters ({opt('train.routing_model', 'zones')}) "
                                              f"or keep the routing prior ({opt('train.mode', 'runoff')}).")
    table = format_metrics(result)
    outputs: dict[str, Path] = {}
    if write:
        out = Path(settings.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        stem = settings.name
        outputs["model"] = save_runoff_model(out / f"{stem}_runoff_model.pt", model, extra={
            "settings": settings.to_dict(), "scheme": routing.scheme.name,
            "routing_params": {k: torch.as_tensor(v) for k, v in result.params.items()},
            "reach_ids": torch.as_tensor(network.ids)})
        record = dict(fit_record(result), timings=timings, settings_file=settings.to_dict())
        outputs["report"] = atomic_write_text(out / f"{stem}_train.json",
                                              json.dumps(record, indent=1, default=_json_default, allow_nan=False))
        outputs["plot"] = plot_metrics(result, out / f"{stem}_train.png",
                                       title=f"{settings.runoff_model} runoff model, {settings.mode}")
        outputs["params"] = write_parameter_table(out / f"{stem}_params.csv", network, result.params)
        outputs["runoff"] = write_runoff(out / f"{stem}_runoff.nc", network, result.runoff, forcings,
                                         title=f"lateral runoff of the trained {settings.runoff_model} model")
    report(1.0, "done")
    return TrainRun(result=result, table=table, outputs=outputs, timings=timings)


def write_runoff(path: Path, network, runoff: np.ndarray, forcings, *, title: str) -> Path:
    """The lateral runoff [N, T] m3/s as river-route ``catchment_runoff`` (m3 per step, time = step start with
    ``time_bnds``), which ``thalweg route`` reads."""
    import xarray as xr

    starts = forcings.time.astype("datetime64[ns]")
    ends = forcings.end_time.astype("datetime64[ns]")
    ds = xr.Dataset(
        {"catchment_runoff": (("riverId", "time"), (runoff.astype(np.float64) * forcings.dt).astype(np.float32),
                              {"units": "m3", "long_name": "lateral runoff volume entering each reach during the "
                                                           "step", "cell_methods": "time: sum"}),
         "time_bnds": (("time", "nv"), np.stack([starts, ends], axis=1))},
        coords={"riverId": ("riverId", network.ids), "time": ("time", starts, {"bounds": "time_bnds"})},
        attrs={"title": title, "Conventions": "CF-1.8"})
    units = f"seconds since {str(starts[0])[:19].replace('T', ' ')}"
    enc = {"catchment_runoff": {"zlib": True, "complevel": 4}, "time": {"units": units, "dtype": "int64"},
           "time_bnds": {"units": units, "dtype": "int64"}}
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, encoding=enc, engine="netcdf4")
    return Path(path)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")
