"""Skill and speed of runoff models trained through the routing (``thalweg train``).

``cance``: the issue's table on the sample basin (Cance, hourly, 3 nested gauges; calibrate 2014-09-15 ..
2014-11-14, validate 2014-11-15 .. 2015-01-15 from one continuous run): NSE and KGE per gauge and period for the
prior routing of the sample's simple runoff (0.649 x precipitation) and for each configuration given with
``--config`` (default: all of them), each through :func:`thalweg.learning.train_run.run_train`, the code path of
``thalweg train``. One JSON line per configuration (``--json``) or a table.

``speed``: one training iteration (forward + backward) of the end-to-end model on a synthetic Scheidegger network
of ``--reaches`` reaches and ``--steps`` hourly steps of gamma "precipitation", gauges at every outlet.

Examples::

    PYTHONPATH=backend python scripts/bench_train.py cance --iterations 100
    PYTHONPATH=backend python scripts/bench_train.py cance --config gr4-regression-e2e --iterations 200
    PYTHONPATH=backend python scripts/bench_train.py speed --reaches 100000 --steps 720 --model lstm --device cuda
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "resources" / "sample"
CAL, VAL = "2014-09-15/2014-11-14", "2014-11-15/2015-01-15"
# name -> TrainSettings fields beyond the inputs
CONFIGS = {
    "gr4-uniform-runoff": {"runoff_model": "gr4", "parameter_model": "uniform", "mode": "runoff"},
    "gr4-uniform-two-step": {"runoff_model": "gr4", "parameter_model": "uniform", "mode": "two-step"},
    "gr4-uniform-e2e": {"runoff_model": "gr4", "parameter_model": "uniform", "mode": "end-to-end"},
    "gr4-regression-e2e": {"runoff_model": "gr4", "parameter_model": "regression", "mode": "end-to-end",
                           "static": ["slope", "drainage_density"]},
    "gr4-per-catchment-e2e": {"runoff_model": "gr4", "parameter_model": "per-catchment", "mode": "end-to-end"},
    "lstm-e2e": {"runoff_model": "lstm", "mode": "end-to-end", "hidden": [16],
                 "static": ["slope", "drainage_density", "catchment_area"]},
    "mclstm-e2e": {"runoff_model": "mclstm", "mode": "end-to-end", "hidden": [8],
                   "static": ["slope", "drainage_density", "catchment_area"]},
}


def baseline() -> dict:
    """NSE/KGE per gauge and period of the sample's runoff routed with the prior (the demo's numbers)."""
    import thalweg
    from thalweg.learning.gauges import read_gauges
    from thalweg.learning.splits import period_mask, period_of
    from thalweg.metrics import kge, nse

    net = thalweg.read_network(SAMPLE / "cance_rivers.gpkg")
    runoff = thalweg.read_runoff(SAMPLE / "cance_runoff.nc", net)
    params, _ = thalweg.resolve_params(net, "muskingum_nonneg")
    gauges = read_gauges(SAMPLE / "cance_gauges.csv", net, observed=SAMPLE / "cance_qobs.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = thalweg.route(net, runoff.values, params, dt=runoff.dt, at=gauges.reach_ids.tolist()).numpy()
    obs = gauges.observed_on(runoff.end_time)
    out = {}
    for period, text in (("calibration", CAL), ("validation", VAL)):
        p = period_of(runoff.end_time, *text.split("/"), label=period)
        o = period_mask(obs, p)
        out[period] = {str(g): {"nse": float(nse(q[i], o[i])), "kge": float(kge(q[i], o[i]))}
                       for i, g in enumerate(gauges.ids)}
    return out


def cance(args: argparse.Namespace) -> None:
    from thalweg.config import TrainSettings
    from thalweg.learning.train_run import run_train

    rows = []
    if not args.config or "baseline" in args.config:
        rows.append({"config": "prior routing of the simple runoff", "metrics": baseline(), "train_s": 0.0})
        emit(rows[-1], args)
    for name in args.config or list(CONFIGS):
        if name == "baseline":
            continue
        spec = dict(CONFIGS[name])
        spec.update(network=str(SAMPLE / "cance_rivers.gpkg"),
                    forcings={"precipitation": str(SAMPLE / "cance_forcings.nc"),
                              "pet": str(SAMPLE / "cance_forcings.nc")},
                    gauges=str(SAMPLE / "cance_gauges.csv"), observed=str(SAMPLE / "cance_qobs.csv"),
                    static_file=str(SAMPLE / "cance_forcings.nc"), calibration=CAL, validation=VAL,
                    iterations=args.iterations, seed=args.seed, device=args.device, out_dir=str(args.out / name),
                    name=name)
        if args.learning_rate:
            spec["learning_rate"] = args.learning_rate
        settings = TrainSettings.from_dict(spec)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run = run_train(settings, write=args.write)
        res = run.result
        metrics = {period: {g: {k: m[period][k] for k in ("nse", "kge")} for g, m in res.metrics_after.items()}
                   for period in ("calibration", "validation")}
        rows.append({"config": name, "metrics": metrics, "train_s": round(run.timings["train"], 1),
                     "iterations": res.iterations, "best_iteration": res.best_iteration,
                     "routing_iterations": None if res.routing_fit is None else res.routing_fit.iterations})
        emit(rows[-1], args)


def emit(row: dict, args: argparse.Namespace) -> None:
    if args.json:
        print(json.dumps(row), flush=True)
        return
    m = row["metrics"]
    gauges = list(m["validation"])
    cells = "  ".join(f"{m[p][g]['nse']:6.3f}/{m[p][g]['kge']:6.3f}" for p in ("calibration", "validation")
                      for g in gauges)
    print(f"{row['config']:<36} {cells}  ({row['train_s']} s)", flush=True)


def speed(args: argparse.Namespace) -> None:
    import torch

    from thalweg.errors import ThalwegWarning
    from thalweg.learning.losses import get_loss
    from thalweg.learning.train import depth_to_discharge
    from thalweg.network import scheidegger_network
    from thalweg.params.models import build_model
    from thalweg.routing import resolve_device, route
    from thalweg.runoff.models import build_runoff_model

    warnings.simplefilter("ignore", ThalwegWarning)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    net = scheidegger_network(args.reaches, seed=0)
    rng = np.random.default_rng(0)
    p = rng.gamma(0.3, 1.0, (net.n_reaches, args.steps)) * (rng.random((net.n_reaches, args.steps)) < 0.2)
    f = torch.as_tensor(np.stack([p, np.full_like(p, 0.05)], -1), dtype=torch.float32, device=dev)
    model = build_runoff_model(args.model, ["precipitation", "pet"], n_catchments=net.n_reaches).to(dev)
    routing = build_model("regression", net, "muskingum_nonneg", seed=0).to(dev)
    gauges = net.ids[net.outlets].tolist()
    area = torch.as_tensor(np.array(net.catchment_area), dtype=torch.float32, device=dev)
    with torch.no_grad():
        obs = route(net, depth_to_discharge(model(f[None])[0], area, 3600.0)[0] * 1.1, routing(), "muskingum_nonneg",
                    dt=3600.0, at=gauges, device=dev)
    loss_fn = get_loss("nse")
    std = obs.std(-1)

    def iteration() -> float:
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        model.zero_grad()
        q = route(net, depth_to_discharge(model(f[None])[0], area, 3600.0)[0], routing(), "muskingum_nonneg",
                  dt=3600.0, at=gauges, device=dev)
        loss_fn(q, obs, std).backward()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t

    iteration()
    times = [iteration() for _ in range(args.reps)]
    out = {"reaches": net.n_reaches, "steps": args.steps, "model": args.model, "device": str(dev),
           "threads": torch.get_num_threads(), "iteration_s": round(statistics.median(times), 3)}
    if dev.type == "cuda":
        out["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2 ** 20)
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    c = sub.add_parser("cance")
    c.add_argument("--config", action="append", choices=["baseline", *CONFIGS])
    c.add_argument("--iterations", type=int, default=100)
    c.add_argument("--learning-rate", type=float)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--device", default="cpu")
    c.add_argument("--out", type=Path, default=Path("bench-train"))
    c.add_argument("--write", action="store_true", help="write each run's outputs into --out")
    c.add_argument("--json", action="store_true")
    s = sub.add_parser("speed")
    s.add_argument("--reaches", type=int, default=100_000)
    s.add_argument("--steps", type=int, default=720)
    s.add_argument("--model", default="gr4", choices=["gr4", "lstm", "mclstm"])
    s.add_argument("--device", default="cpu")
    s.add_argument("--reps", type=int, default=3)
    s.add_argument("--threads", type=int)
    args = parser.parse_args()
    (cance if args.what == "cance" else speed)(args)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
