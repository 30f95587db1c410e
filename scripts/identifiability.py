"""The identifiability recipe of docs/parameters.md section 3, with its numbers.

A 26-basin Scheidegger network (2 km cells) with a synthetic slope field; true k = length / (0.3 (A/km2)^0.2) s and
x = 0.05 + 0.4 sigmoid(2 (log10 slope + 2.5)); observations at the outlets of the 4 largest basins only. The
regression model on (length, area, slope) learns k and x with L-BFGS; printed: the validation NSE at the gauges,
and the errors of k and x at ungauged interior reaches and in the ungauged basins, against the prior's.

    PYTHONPATH=backend python scripts/identifiability.py                       # hourly steps (the test's case)
    PYTHONPATH=backend python scripts/identifiability.py --dt 86400 --scheme muskingum_substep   # daily steps
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "learning"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dt", type=float, default=3600.0, help="step, s")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--scheme", default="muskingum")
    args = parser.parse_args()

    from _fit_cases import basin, observe, true_k, true_x, with_slope
    from thalweg.errors import ThalwegWarning
    from thalweg.learning.fit import fit
    from thalweg.params.models import build_model, prior_params

    warnings.simplefilter("ignore", ThalwegWarning)
    b = basin(120, 11, args.steps, cell_size=2000.0, single=False)
    net = with_slope(b.network, 11)
    sizes = np.bincount(net.basin, minlength=net.n_reaches)
    outlets = net.outlets[np.argsort(sizes[net.outlets])[::-1][:4]]
    gauges = net.ids[outlets].tolist()
    truth = {"k": true_k(net), "x": true_x(net)}
    print(f"{net!r}; gauged basins of {sizes[outlets].tolist()} reaches; true k {truth['k'].min() / 3600:.2f} .. "
          f"{truth['k'].max() / 3600:.1f} h, x {truth['x'].min():.2f} .. {truth['x'].max():.2f}; dt {args.dt:g} s")
    obs = observe(net, b.runoff, truth, gauges, args.dt, args.scheme)
    model = build_model("regression", net, args.scheme, attributes=["length", "area", "slope"], seed=0)
    split = int(0.7 * args.steps)
    t0 = time.perf_counter()
    res = fit(model, net, b.runoff, dt=args.dt, gauges=gauges, observed=obs, calibration=(0, split),
              validation=(split, args.steps), iterations=args.iterations, optimiser="lbfgs", dtype=torch.float64,
              engine="exact")
    nses = ", ".join(f"{m['validation']['nse']:.6f}" for m in res.metrics_after.values())
    print(f"fit: {time.perf_counter() - t0:.1f} s, {res.iterations} iterations ({res.stopped}), loss {res.loss:.3g}, "
          f"validation NSE {nses}")
    prior = prior_params(net, args.scheme)
    interior = np.setdiff1d(np.flatnonzero(np.isin(net.basin, outlets)), outlets)
    ungauged = np.flatnonzero(~np.isin(net.basin, outlets))
    print(f"{'reaches':<32} {'k: median':>10} {'p90':>6} {'prior':>6}   {'x: median':>10} {'x=0.25':>7}")
    for label, where in (("interior of the gauged basins", interior), ("ungauged basins", ungauged)):
        ek = np.abs(np.log(res.params["k"][where] / truth["k"][where]))
        e0 = np.abs(np.log(prior["k"][where] / truth["k"][where]))
        ex = np.abs(res.params["x"][where] - truth["x"][where])
        x0 = np.abs(0.25 - truth["x"][where])
        print(f"{label + f' ({where.size})':<32} {np.median(ek):>10.3f} {np.percentile(ek, 90):>6.3f} "
              f"{np.median(e0):>6.3f}   {np.median(ex):>10.3f} {np.median(x0):>7.3f}")


if __name__ == "__main__":
    main()
