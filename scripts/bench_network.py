"""Benchmark of network preparation (not a test): build, validate, levels, post-order, depth.

    .venv/bin/python scripts/bench_network.py --reaches 1000000
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from thalweg.network import from_arrays, scheidegger_network


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reaches", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    t = time.perf_counter()
    net = scheidegger_network(args.reaches, seed=args.seed)
    t_gen = time.perf_counter() - t
    ds_ids = np.where(net.downstream >= 0, net.ids[np.maximum(net.downstream, 0)], -1)
    perm = np.random.default_rng(args.seed).permutation(net.n_reaches)
    ids, ds_ids, length, area = net.ids[perm], ds_ids[perm], net.length[perm], net.area[perm]

    rows = []
    t = time.perf_counter()
    net2 = from_arrays(ids, ds_ids, length, area)
    rows.append(("from_arrays (ids -> index, validate, levels)", time.perf_counter() - t))
    t = time.perf_counter()
    _ = net2.postorder
    rows.append(("subtree post-order", time.perf_counter() - t))
    t = time.perf_counter()
    _ = net2.depth
    rows.append(("depth + basins (pointer jumping)", time.perf_counter() - t))
    t = time.perf_counter()
    _ = net2.level_groups
    rows.append(("level groups", time.perf_counter() - t))
    total = sum(r[1] for r in rows)
    print(f"network: {net2.n_reaches:,} reaches, {net2.outlets.size:,} outlets, {net2.n_levels:,} levels, "
          f"max depth {int(net2.depth.max()):,} (lattice generated in {t_gen:.1f} s)")
    for name, seconds in rows:
        print(f"  {name:<48} {seconds:8.3f} s")
    print(f"  {'total':<48} {total:8.3f} s")


if __name__ == "__main__":
    main()
