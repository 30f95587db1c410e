"""Benchmark of one calibration iteration with the regression parameter model: forward and backward.

A Scheidegger network of --reaches reaches, --steps hourly steps of gamma runoff, gauges at every outlet (so every
reach is routed) plus --interior interior gauges; the regression model (MLP 16x16 on log length and log area) gives
k and x of Muskingum; the loss is 1 - NSE at the gauges. One iteration = model forward, routing to the gauges
(``at=``), loss, backward into the MLP's weights. Reported: median seconds of --reps iterations (after one warm
iteration), reach-steps per second, peak memory, and the number of autograd nodes of the loss's graph at T steps and
at T/10 steps: equal counts show that no autograd tape runs over time steps (the routing's gradient is the engine's
own adjoint).

Examples::

    PYTHONPATH=backend python scripts/bench_calibrate.py --reaches 10000 --steps 1000 --device cpu
    PYTHONPATH=backend python scripts/bench_calibrate.py --reaches 100000 --steps 1000 --device cpu
    PYTHONPATH=backend python scripts/bench_calibrate.py --reaches 100000 --steps 1000 --device cuda
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
import warnings

import numpy as np
import torch


def graph_nodes(tensor: torch.Tensor) -> int:
    """Number of autograd nodes reachable from ``tensor``'s grad_fn."""
    seen, stack = set(), [tensor.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(n for n, _ in node.next_functions)
    return len(seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reaches", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--interior", type=int, default=100, help="interior gauges besides the outlets")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--engine", default="auto")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from thalweg.errors import ThalwegWarning
    from thalweg.learning.losses import get_loss
    from thalweg.network import scheidegger_network
    from thalweg.params.models import build_model
    from thalweg.routing import resolve_device, route

    warnings.simplefilter("ignore", ThalwegWarning)
    dev = resolve_device(args.device)
    dtype = getattr(torch, args.dtype)
    t0 = time.perf_counter()
    net = scheidegger_network(args.reaches, seed=0)
    rng = np.random.default_rng(0)
    interior = rng.choice(np.setdiff1d(np.arange(net.n_reaches), net.outlets), args.interior, replace=False)
    gauges = net.ids[np.r_[net.outlets, interior]].tolist()
    runoff = torch.as_tensor(rng.gamma(2.0, 0.5, (net.n_reaches, args.steps)), dtype=dtype, device=dev)
    model = build_model("regression", net, "muskingum", attributes=["length", "area"], seed=0)
    with torch.no_grad():  # off the zero last layer, so every weight gets a gradient
        model.mlp[-1].weight.normal_(0.0, 0.1, generator=torch.Generator().manual_seed(1))
    model.to(dev)
    with torch.no_grad():
        obs = route(net, runoff, model(), "muskingum", dt=3600.0, at=gauges, dtype=dtype, device=dev,
                    engine=args.engine) * 1.1
    loss_fn = get_loss("nse")
    std = torch.ones(len(gauges), dtype=dtype, device=dev)
    setup = time.perf_counter() - t0

    def iteration(steps: int = args.steps, backward: bool = True):
        model.zero_grad()
        q = route(net, runoff[:, :steps], model(), "muskingum", dt=3600.0, at=gauges, dtype=dtype, device=dev,
                  engine=args.engine)
        loss = loss_fn(q, obs[:, :steps], std)
        if backward:
            loss.backward()
        return loss

    def timed(fn) -> float:
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t

    iteration()  # warm: topology, compiled kernels
    forward = statistics.median(timed(lambda: iteration(backward=False)) for _ in range(args.reps))
    both = statistics.median(timed(iteration) for _ in range(args.reps))
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads), "a weight got no finite gradient"
    nodes_full = graph_nodes(iteration(backward=False))
    nodes_short = graph_nodes(iteration(max(1, args.steps // 10), backward=False))
    out = {"reaches": net.n_reaches, "steps": args.steps, "gauges": len(gauges), "device": str(dev),
           "dtype": args.dtype, "engine": args.engine, "threads": torch.get_num_threads(),
           "setup_s": round(setup, 3), "forward_s": round(forward, 4), "forward_backward_s": round(both, 4),
           "reach_steps_per_s": round(net.n_reaches * args.steps / both), "autograd_nodes": nodes_full,
           "autograd_nodes_at_tenth_steps": nodes_short,
           "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    if dev.type == "cuda":
        out["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2 ** 20)
    if args.json:
        print(json.dumps(out))
    else:
        for key, value in out.items():
            print(f"{key:>30}: {value}")


if __name__ == "__main__":
    main()
