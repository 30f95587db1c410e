"""Benchmark: routing a network whose rivers split against the tree of the same size (issue 15).

A Scheidegger tree of --size reaches (``scheidegger_network``) and the same tree with --split-share of its
reaches split (``scheidegger_dag``: deltas near the outlets, braids mid-network), Muskingum with GEOGloWS
parameters (x = 0.25), dt = 86400 s, gamma runoff [--batch, N, --steps] float32. For each engine: the median
and minimum of --reps forward calls (interleaved tree / DAG, after one warm call each; process CPU time on the
CPU, CUDA-synchronised wall time on a GPU), the DAG / tree ratio, the path the DAG took ('native': the CPU
exact engine's one compiled pass, with its side rows; 'stages': its stages and virtual sources), and the
DAG's max relative error per reach against the float64 run of the same engine (which the tests hold to the
float64 numpy reference). The issue's goal: the exact engine's ratio <= 1.3 at 100,000 reaches, 1 % split.

Examples::

    python scripts/bench_dag.py --device cpu --threads 1 --size 100000 --steps 366
    python scripts/bench_dag.py --device cpu --threads 1 --size 100000 --steps 366 --backward
    python scripts/bench_dag.py --device cuda --size 100000 1000000 --steps 366 8784 --engines exact fft
"""
from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import torch
from thalweg.errors import ThalwegWarning
from thalweg.network import scheidegger_dag, scheidegger_network
from thalweg.params import geoglows_muskingum
from thalweg.routing import route
from thalweg.routing import _cpu
from thalweg.routing.dag import dag_plan, native_plan

DT = 86400.0


def _clock(device: torch.device):
    if device.type == "cuda":
        def now():
            torch.cuda.synchronize(device)
            return time.perf_counter()
        return now
    return time.process_time


def _params(net) -> dict:
    p = geoglows_muskingum(net)
    return {"k": np.asarray(p["k"]), "x": np.asarray(p["x"])}


def one(size: int, steps: int, args, device: torch.device) -> list[dict]:
    tree = scheidegger_network(size, seed=args.seed)
    dag = scheidegger_dag(size, split_share=args.split_share, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    cases = {}
    for name, net in (("tree", tree), ("dag", dag)):
        q = torch.as_tensor(rng.gamma(2.0, 1.0, size=(args.batch, net.n_reaches, steps)).astype("float32"),
                            device=device)
        cases[name] = (net, q, _params(net))
    now = _clock(device)
    rows = []
    for engine in args.engines:
        times = {"tree": [], "dag": []}
        outs = {}
        for name, (net, q, p) in cases.items():
            outs[name] = route(net, q, p, "muskingum", dt=DT, engine=engine)  # warm: plans, compilation
        for _ in range(args.reps):
            for name, (net, q, p) in cases.items():
                if args.backward:  # forward and backward: gradients to the runoff and to k
                    qq = q.clone().requires_grad_(True)
                    pp = {**p, "k": torch.as_tensor(p["k"]).requires_grad_(True)}
                    t0 = now()
                    route(net, qq, pp, "muskingum", dt=DT, engine=engine).sum().backward()
                else:
                    t0 = now()
                    route(net, q, p, "muskingum", dt=DT, engine=engine)
                times[name].append(now() - t0)
        net, q, p = cases["dag"]
        want = route(net, q.double(), p, "muskingum", dt=DT, engine=engine, dtype=torch.float64)
        got = outs["dag"].double()
        peak = want.abs().amax(-1, keepdim=True).clamp(min=1e-12)
        err = float(((got - want).abs() / peak).max())
        native = native_plan(dag) if engine == "exact" and device.type == "cpu" and _cpu.available() else None
        if native is not None:
            how = {"path": "native", "side_rows": native.links.n_side}
        else:
            plan = dag_plan(dag, sinks=engine == "exact" and device.type == "cpu")
            how = {"path": "stages", "stages": len(plan.stages), "virtual_sources": plan.n_virtual}
        med = {k: float(np.median(v)) for k, v in times.items()}
        rows.append({"engine": engine, "device": str(device), "backward": bool(args.backward),
                     "reaches_tree": tree.n_reaches,
                     "reaches_dag": dag.n_reaches, "splits": dag.splits.n_splits, "steps": steps,
                     "batch": args.batch, **how,
                     "tree_ms": 1e3 * med["tree"], "dag_ms": 1e3 * med["dag"],
                     "tree_min_ms": 1e3 * min(times["tree"]), "dag_min_ms": 1e3 * min(times["dag"]),
                     "ratio_median": med["dag"] / med["tree"],
                     "ratio_min": min(times["dag"]) / min(times["tree"]), "max_rel_err_vs_f64": err})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--size", type=int, nargs="+", default=[100000])
    ap.add_argument("--steps", type=int, nargs="+", default=[366])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--split-share", type=float, default=0.01)
    ap.add_argument("--engines", nargs="+", default=["exact"], choices=["exact", "fft", "closure"])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--backward", action="store_true", help="time forward + backward (gradients to runoff and k)")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", ThalwegWarning)
    device = torch.device(args.device)
    rows = [r for size in args.size for steps in args.steps for r in one(size, steps, args, device)]
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
