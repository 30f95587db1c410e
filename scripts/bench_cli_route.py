"""Benchmark of the whole ``thalweg route`` command (not a test).

Writes a GEOGloWS-style table (LINKNO, DSLINKNO, LengthGeodesicMeters, DSContArea; no musk_k, so the
GEOGloWS rule sets k) for a Scheidegger-lattice network, as GeoParquet with line geometries (so the GeoPackage
summary layer is written too; ``--no-geometry`` for a plain table), and river-route runoff
(``catchment_runoff``, m3 per step), then times ``thalweg route`` as a subprocess: total wall, peak memory
(the child's maximum resident set, getrusage) and the phases (reading, routing, summary, writing), timed in
the child by wrapping the library functions the command calls (exclusive times: the summary inside the
GeoPackage writer counts as summary, not writing; "other" is start-up, imports and the rest).

    .venv/bin/python scripts/bench_cli_route.py --reaches 200000 --steps 2160 --dt 3600 --convention both

Run it with PYTHONPATH=<checkout>/backend to time another checkout's code with this script.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# Runs in the child: wraps the library functions by phase, runs the CLI, dumps the exclusive times as JSON.
_DRIVER = r'''
import functools, json, sys, time
import thalweg.cli as cli

phases, stack = {}, []

def wrap(module, name, phase):
    fn = getattr(module, name, None)
    if fn is None or getattr(fn, "_bench", False):
        return
    @functools.wraps(fn)
    def timed(*a, **k):
        t = time.perf_counter()
        stack.append([phase, 0.0])
        try:
            return fn(*a, **k)
        finally:
            ph, inner = stack.pop()
            took = time.perf_counter() - t
            phases[ph] = phases.get(ph, 0.0) + took - inner
            if stack:
                stack[-1][1] += took
    timed._bench = True
    setattr(module, name, timed)

import thalweg.hydrography, thalweg.runoff, thalweg.routing, thalweg.results
import thalweg.results.writers as writers, thalweg.results.summary as summary
wrap(thalweg.hydrography, "read_network", "reading")
wrap(thalweg.runoff, "read_runoff", "reading")
wrap(thalweg.routing, "route", "routing")
for mod in (summary, writers, thalweg.results):
    wrap(mod, "summarize", "summary")
for mod in (thalweg.results, writers):
    for name in ("write_q", "write_qout", "write_summary_gpkg", "write_hydrographs_csv", "write_outputs",
                 "write_zarr", "write_discharge"):
        wrap(mod, name, "writing")
t0 = time.perf_counter()
rc = cli.main(sys.argv[2:])
phases["cli_main"] = time.perf_counter() - t0
with open(sys.argv[1], "w") as f:
    json.dump(phases, f)
sys.exit(rc)
'''


def write_inputs(folder: Path, n_reaches: int, n_steps: int, dt: float, seed: int,
                 geometry: bool) -> tuple[Path, Path, int]:
    import pandas as pd
    import xarray as xr

    from thalweg.network import scheidegger_network

    net = scheidegger_network(n_reaches, seed=seed, with_geometry=geometry)
    linkno = net.ids
    ds = np.where(net.downstream >= 0, linkno[np.maximum(net.downstream, 0)], -1)
    table = pd.DataFrame({"LINKNO": linkno, "DSLINKNO": ds, "LengthGeodesicMeters": net.length,
                          "DSContArea": net.area})
    network = folder / "streams.parquet"
    if geometry:
        import geopandas as gpd

        gpd.GeoDataFrame(table, geometry=list(net.geometry), crs="EPSG:3857").to_parquet(network)
    else:
        table.to_parquet(network)
    rng = np.random.default_rng(seed)
    # ~1.2 mm/day mean, spread over the step
    depth_m = rng.gamma(0.6, 0.002 * dt / 86400.0, size=(net.n_reaches, n_steps)).astype("float32")
    depth_m *= net.catchment_area[:, None].astype("float32")
    time_index = pd.date_range("2020-01-01", periods=n_steps, freq=pd.Timedelta(seconds=dt))
    ds_out = xr.Dataset({"catchment_runoff": (("riverId", "time"), depth_m, {"units": "m3"})},
                        coords={"riverId": linkno, "time": time_index})
    runoff = folder / "runoff.nc"
    ds_out.to_netcdf(runoff)
    return network, runoff, net.n_reaches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reaches", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=366)
    parser.add_argument("--dt", type=float, default=86400.0, help="runoff step, s (3600: hourly)")
    parser.add_argument("--convention", choices=("end", "mean", "both"), default="end")
    parser.add_argument("--no-geometry", action="store_true", help="plain table: no GeoPackage summary layer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", help="write the inputs and outputs here instead of a temporary folder (a later "
                                       "run with the same sizes reuses the inputs)")
    parser.add_argument("--extra", default="", help="more arguments for thalweg route, one string")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        marker = folder / f"inputs-{args.reaches}x{args.steps}x{args.dt:g}-{args.seed}-{not args.no_geometry}.json"
        if args.keep and marker.exists():  # the same inputs, kept by an earlier run
            network, runoff, n = folder / "streams.parquet", folder / "runoff.nc", json.loads(marker.read_text())
        else:
            network, runoff, n = write_inputs(folder, args.reaches, args.steps, args.dt, args.seed,
                                              not args.no_geometry)
            marker.write_text(json.dumps(n))
        print(f"inputs: {n:,} reaches x {args.steps:,} steps of {args.dt:g} s ready in "
              f"{time.perf_counter() - t:.1f} s ({runoff.stat().st_size / 2**20:,.0f} MiB runoff)")
        phases_file = folder / "phases.json"
        route_args = ["route", str(network), str(runoff), "-o", str(folder / "Q.nc"),
                      "--convention", args.convention, *args.extra.split()]
        if "--overwrite" in _help(route_args):
            route_args.append("--overwrite")  # --keep reruns replace the outputs (newer CLIs refuse without it)
        cmd = [sys.executable, "-c", _DRIVER, str(phases_file), *route_args]
        print("thalweg " + " ".join(route_args))
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
        wall = time.perf_counter() - t
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        print(proc.stderr.strip()[-4000:])
        if proc.returncode:
            sys.exit(f"thalweg route failed with exit code {proc.returncode}")
        phases = json.loads(phases_file.read_text())
        known = sum(phases.get(p, 0.0) for p in ("reading", "routing", "summary", "writing"))
        print(f"thalweg route: wall {wall:.1f} s, peak memory {peak_kib / 1024:,.0f} MiB "
              f"({n * args.steps / wall:.3g} reach-steps/s end to end)")
        print("phases: " + ", ".join(f"{p} {phases.get(p, 0.0):.1f} s" for p in ("reading", "routing", "summary",
                                                                               "writing"))
              + f", other {wall - known:.1f} s (start-up, imports, parameters, checks)")


def _help(route_args: list[str]) -> str:
    proc = subprocess.run([sys.executable, "-m", "thalweg.cli", "route", "--help"], capture_output=True, text=True)
    return proc.stdout


if __name__ == "__main__":
    main()
