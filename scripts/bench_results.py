"""Benchmark the result writers on their own: summary statistics, GeoPackage summary, NetCDF and zarr.

The issue's size (200,000 reaches x 2,160 hourly steps) is the default; ``scripts/bench_cli_route.py`` times the
whole command. Point PYTHONPATH at another checkout's ``backend`` to time that code (e.g. the code before a
change), with the same data: every function used here exists there too.

    PYTHONPATH=backend .venv/bin/python scripts/bench_results.py --reaches 200000 --steps 2160
    PYTHONPATH=backend .venv/bin/python scripts/bench_results.py --reaches 20000 --steps 500 --skip netcdf
"""
from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reaches", type=int, default=200_000)
    parser.add_argument("--steps", type=int, default=2160)
    parser.add_argument("--skip", action="append", default=[], choices=("summary", "gpkg", "netcdf", "zarr"))
    parser.add_argument("--keep", help="folder to write into and keep (default: a temporary folder)")
    parser.add_argument("--compression", type=int, help="zlib level of the NetCDF files (default: the writers')")
    args = parser.parse_args()

    import thalweg
    from thalweg.network import scheidegger_network
    from thalweg.results import Discharge, summarize, write_q, write_qout, write_summary_gpkg

    t0 = time.perf_counter()
    net = scheidegger_network(args.reaches, seed=1, with_geometry=True)
    rng = np.random.default_rng(0)
    # lognormal flows varying in time: realistic spread for the percentiles, compressible like real discharge
    base = rng.lognormal(0.0, 2.0, net.n_reaches).astype(np.float32)
    wave = (1.0 + 0.5 * np.sin(np.arange(args.steps, dtype=np.float32) / 50.0)).astype(np.float32)
    values = base[:, None] * wave[None, :]
    values *= rng.uniform(0.9, 1.1, values.shape).astype(np.float32)
    time_ = np.datetime64("2020-01-01T01", "ns") + np.arange(args.steps) * np.timedelta64(3600, "s")
    d = Discharge(values, net.ids, time_, 3600.0)
    print(f"thalweg {thalweg.__file__}\n{net.n_reaches:,} reaches x {args.steps:,} steps "
          f"({values.nbytes / 2**30:.2f} GiB float32), made in {time.perf_counter() - t0:.1f} s")

    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="thalweg-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    rows = []

    def timed(name, fn):
        t = time.perf_counter()
        out = fn()
        rows.append((name, time.perf_counter() - t))
        print(f"  {name:<32} {rows[-1][1]:8.2f} s", flush=True)
        return out

    try:
        if "summary" not in args.skip:
            timed("summarize", lambda: summarize(d))
        if "gpkg" not in args.skip:
            timed("write_summary_gpkg (with summary)", lambda: write_summary_gpkg(folder / "Q.gpkg", net, d))
        if "netcdf" not in args.skip:
            kw = {} if args.compression is None else {"compression": args.compression}
            timed("write_q (river-route Q)", lambda: write_q(folder / "Q.nc", d, **kw))
            timed("write_qout (RAPID, mean)", lambda: write_qout(folder / "Qout.nc", d, "mean", **kw))
        if "zarr" not in args.skip:
            try:
                from thalweg.results import write_zarr
            except ImportError:
                print("  write_zarr: not in this version")
            else:
                timed("write_zarr (river-route 3)", lambda: write_zarr(folder / "Q.zarr", d))
        for p in sorted(folder.iterdir()):
            size = sum(f.stat().st_size for f in p.rglob("*")) if p.is_dir() else p.stat().st_size
            print(f"  {p.name:<32} {size / 2**20:8.1f} MiB")
        print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
