"""Benchmark of the whole ``thalweg route`` command (not a test).

Writes a GEOGloWS-style table (LINKNO, DSLINKNO, LengthGeodesicMeters, DSContArea; no musk_k, so the
GEOGloWS rule sets k) for a Scheidegger-lattice network and river-route runoff (``catchment_runoff``, m3 per
daily step), then times ``thalweg route`` as a subprocess and reads its peak memory from /usr/bin/time or
from getrusage.

    .venv/bin/python scripts/bench_cli_route.py --reaches 100000 --steps 366
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_inputs(folder: Path, n_reaches: int, n_steps: int, seed: int) -> tuple[Path, Path, int]:
    import pandas as pd
    import xarray as xr

    from thalweg.network import scheidegger_network

    net = scheidegger_network(n_reaches, seed=seed)
    linkno = net.ids
    ds = np.where(net.downstream >= 0, linkno[np.maximum(net.downstream, 0)], -1)
    table = pd.DataFrame({"LINKNO": linkno, "DSLINKNO": ds, "LengthGeodesicMeters": net.length,
                          "DSContArea": net.area})
    network = folder / "streams.parquet"
    table.to_parquet(network)
    rng = np.random.default_rng(seed)
    depth_m = rng.gamma(0.6, 0.002, size=(net.n_reaches, n_steps))  # ~1.2 mm/day mean
    volumes = (depth_m * net.catchment_area[:, None]).astype("float32")
    time_index = pd.date_range("2020-01-01", periods=n_steps, freq="D")
    ds_out = xr.Dataset({"catchment_runoff": (("riverId", "time"), volumes, {"units": "m3"})},
                        coords={"riverId": linkno, "time": time_index})
    runoff = folder / "runoff.nc"
    ds_out.to_netcdf(runoff)
    return network, runoff, net.n_reaches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reaches", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=366)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", help="write the inputs and outputs here instead of a temporary folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        network, runoff, n = write_inputs(folder, args.reaches, args.steps, args.seed)
        print(f"inputs: {n:,} reaches x {args.steps} daily steps written in {time.perf_counter() - t:.1f} s")
        cmd = [str(Path(sys.executable).parent / "thalweg"), "route", str(network), str(runoff),
               "-o", str(folder / "Q.nc"), "--no-gpkg"]
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        print(proc.stderr.strip())
        if proc.returncode:
            sys.exit(f"thalweg route failed with exit code {proc.returncode}")
        print(f"thalweg route: wall {wall:.1f} s, peak memory {peak_kib / 1024:.0f} MiB "
              f"({n * args.steps / wall:.3g} reach-steps/s end to end)")


if __name__ == "__main__":
    main()
