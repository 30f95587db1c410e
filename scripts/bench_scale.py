"""Benchmark of global-scale routing (not a test): network preparation, streamed routing with writing, memory.

Cases:

- ``--case global``: a synthetic global-like forest (Scheidegger basins from tiny coastal ones to a few
  Amazon-deep ones, ``--reaches`` in all) x ``--years`` simulated years of daily steps (or ``--days`` steps),
  runoff generated on the fly chunk by chunk (on the device: no 0.8 TB file), streamed in ``--chunk-steps``
  chunks (a year each by default) through :func:`thalweg.scale.stream.stream_route`, once per ``--write`` mode
  (``none``: routing alone; ``zarr``, ``nc``: the discharge written, of every reach or, with ``--discharge-at
  outlets``, of each basin's outlet). Reports network preparation (validation,
  topology, partition), and per mode the first chunk (the stream's first call: allocations, first launches, the
  writer's first file and imports) apart from the steady state (the chunks after it: seconds per simulated
  year), the write throughput (GB/s of discharge), GPU and host peak memory, and the 85-year extrapolation
  (first chunk + the rest at the steady rate).
- ``--case cpu``: ``thalweg route`` itself, NetCDF in -> NetCDF out, for ``--reaches`` x ``--steps`` hourly
  steps (the issue's target: 100,000 x 8,784 in <= 13 s and <= 5 GiB on 2 cores), as a subprocess: wall, the
  command's own time (the rest is the interpreter's start and exit), CPU seconds, peak resident memory
  (getrusage of the child) and the load average before it; ``--runs`` picks the runs (whole, streamed,
  default, dask_2_workers; ``--dask`` adds the last), ``--repeat`` repeats each (ranges reported), ``--row-order
  basin`` writes the runoff file's rows basin by basin (each Dask worker then reads about its own share of the
  rows; the default, the network's order, makes every basin a strip across the whole file), and ``--out`` with
  ``--keep`` keeps the input for the next call, which reuses it.

    .venv/bin/python scripts/bench_scale.py --case global --reaches 6800000 --years 4 --device cuda
    .venv/bin/python scripts/bench_scale.py --case cpu --reaches 100000 --steps 8784 --dask
    .venv/bin/python scripts/bench_scale.py --case cpu --reaches 100000 --runs default --repeat 3 --out /tmp/c --keep
    .venv/bin/python scripts/bench_scale.py --case cpu --reaches 100000 --runs streamed,dask_2_workers --row-order basin

Prints one JSON object (``--json FILE`` also writes it).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def _subbasin(net, target: int):
    """The basin upstream of the reach whose upstream count is nearest ``target`` (a smaller deep basin of the
    same lattice: same Hack's-law shape), renumbered from 1; ``net`` itself when it is not larger."""
    if net.n_reaches <= target:
        return net
    size = np.asarray(net.n_upstream)
    best = int(np.argmin(np.abs(size - target)))
    sub = net.upstream(int(net.ids[best]))
    down = np.where(sub.downstream >= 0, sub.downstream + 1, -1)
    from thalweg.network import from_arrays

    return from_arrays(np.arange(1, sub.n_reaches + 1), down, sub.length, sub.area, catchment_area=sub.catchment_area)


def _fill(net, target: int, seed: int):
    """``net`` less whole basins drawn in a seeded random order, each dropped while at least ``target`` reaches
    stay: about ``target`` reaches (over it by less than the smallest basin left in), the lattice's mix of tiny to
    large basins kept (a basin larger than the surplus is never dropped)."""
    if net.n_reaches <= target:
        return net
    order = np.asarray(net.postorder)
    basin_of = np.asarray(net.basin)[order]
    bounds = np.flatnonzero(np.r_[True, basin_of[1:] != basin_of[:-1], True])
    sizes = np.diff(bounds)
    keep = np.ones(sizes.size, dtype=bool)
    total = net.n_reaches
    for j in np.random.default_rng(seed).permutation(sizes.size).tolist():  # per basin, not per reach
        if total - sizes[j] >= target:
            keep[j] = False
            total -= int(sizes[j])
            if total == target:
                break
    return net.take(np.sort(order[np.repeat(keep, sizes)]))


def forest(n_reaches: int, seed: int = 0):
    """A forest of ``n_reaches`` (within 1 % from 10,000 up; exact but for a few reaches): four single deep basins (tall
    lattices, 15, 8, 5 and 2 % of all reaches: the deepest an Amazon), and the rest, about 70 %, whole basins of a
    wide lattice (many basins, tiny to large).

    A tall lattice's largest basin comes out about 1.5 times the size asked for, so each deep basin is asked at
    1/1.5 of its share and, when still too large, cut to the sub-basin nearest its share; the wide lattice is made
    3 % larger than what remains and whole basins, drawn at random among those smaller than the surplus, are
    dropped from it (:func:`_fill`)."""
    from thalweg.network import from_arrays, scheidegger_network

    parts = []
    for k, share in enumerate((0.15, 0.08, 0.05, 0.02)):
        want = max(50, int(share * n_reaches))
        deep = scheidegger_network(max(50, int(want / 1.5)), seed=seed + 1 + k, single_basin=True)
        parts.append(_subbasin(deep, want))
    rest = n_reaches - sum(p.n_reaches for p in parts)
    scale = 1.03
    while rest > 0:  # the lattice's count is known only once it is made (within a few %: one try in practice)
        wide = scheidegger_network(max(8, int(scale * rest)), seed=seed)
        if wide.n_reaches >= rest:
            break
        scale *= 1.1 * rest / max(wide.n_reaches, 1)
    if rest > 0:
        parts.insert(0, _fill(wide, rest, seed))
    ids, down, length, area = [], [], [], []
    offset = 0
    for net in parts:
        ids.append(net.ids.astype(np.int64) + offset)
        down.append(np.where(net.downstream >= 0, net.ids[np.maximum(net.downstream, 0)] + offset, -1))
        length.append(net.length)
        area.append(net.area)
        offset += int(net.ids.max()) + 1
    return np.concatenate(ids), np.concatenate(down), np.concatenate(length), np.concatenate(area), from_arrays


@dataclasses.dataclass
class _Chunk:
    values: object
    ids: np.ndarray
    time: np.ndarray
    dt: float
    source: str | None = None

    @property
    def n_steps(self) -> int:
        return int(self.time.size)


class GeneratedRunoff:
    """Runoff made on the fly, chunk by chunk, on ``device``: a per-reach rate times a seasonal and daily
    signal (deterministic: the same chunk is the same values). No file: the point is the routing and writing."""

    def __init__(self, network, n_steps: int, dt: float, device: str) -> None:
        import torch

        self.ids, self.n_steps, self.dt, self.device = network.ids, int(n_steps), float(dt), device
        rng = np.random.default_rng(0)
        base = (network.catchment_area if network.catchment_area is not None else network.area) * 1e-9
        self.base = torch.as_tensor(np.nan_to_num(base) * rng.uniform(0.5, 1.5, network.n_reaches),
                                    dtype=torch.float32, device=device)
        step = np.timedelta64(int(dt * 1000), "ms")
        self.time = np.datetime64("2001-01-01", "ms") + step * np.arange(self.n_steps)

    def read(self, a: int, b: int) -> _Chunk:
        import torch

        t = torch.arange(a, b, dtype=torch.float32, device=self.device) * (self.dt / 86400.0)
        signal = 1.0 + 0.8 * torch.sin(2 * np.pi * t / 365.25) + 0.3 * torch.sin(2 * np.pi * t / 7.3) ** 2
        values = self.base[:, None] * signal[None, :]
        if self.device == "cpu":
            values = values.numpy()
        return _Chunk(values, self.ids, self.time[a:b], self.dt)

    def close(self) -> None:
        pass


def _peak_host_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _timed(timings: dict, name: str, fn, *fn_args):
    t0 = time.perf_counter()
    value = fn(*fn_args)
    timings[name] = time.perf_counter() - t0
    return value


def prepare(args, net_arrays) -> tuple[dict, dict]:
    """The network preparation of the global case, step by step: (timings in s, what was made)."""
    import torch
    from thalweg.params import resolve_params
    from thalweg.routing.topology import topology
    from thalweg.scale import basins, clusters
    from thalweg.scale.stream import LocalRouter

    ids, down, length, area, from_arrays = net_arrays
    t: dict[str, float] = {}
    net = _timed(t, "validate", from_arrays, ids, down, length, area)  # ids, links, cycles (levels)
    # post-order, depth, upstream CSR, level groups, basin segments; cached on the network, as the route looks it up
    _timed(t, "topology", topology, net)
    pieces = _timed(t, "partition", lambda: clusters(net, args.max_reaches) if args.max_reaches else basins(net))
    dt = 86400.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        params, _ = _timed(t, "parameters", resolve_params, net, args.scheme)
        source = GeneratedRunoff(net, _steps(args), dt, args.device)

        def route_parameters():
            router = LocalRouter(net, params, args.scheme, dt=dt, device=args.device)
            router.prepare()  # parameters checked and put on the device once per stream (else in the first chunk)
            return router

        router = _timed(t, "route_parameters", route_parameters)

        def warmup():  # one chunk's steps, cold then warm: the first launches compile the GPU kernels, the cold
            # start's and the warm start's (each chunk after the first is a warm start). Triton compiles a kernel
            # per specialisation of its integer arguments (== 1, multiple of 16): a 2-step warm-up (one time
            # chunk) left both of a year's chunk variants to compile in the stream's first two chunks (0.4 s each).
            # The CPU compiles nothing: no warm-up there.
            if args.warmup and _on_gpu(args):
                x = source.read(0, _chunk(args) or source.n_steps).values
                _, state = router.prepared(x, None, return_state=True)
                router.prepared(x, state, return_state=True)
                torch.cuda.synchronize()

        _timed(t, "warmup", warmup)
    t["total"] = sum(t.values())
    return t, {"net": net, "pieces": pieces, "params": params, "source": source, "router": router, "dt": dt}


def _on_gpu(args) -> bool:
    """Whether the global case runs on a CUDA device (``--device cuda...`` and one present)."""
    import torch

    return torch.cuda.is_available() and str(args.device).startswith("cuda")


def _steps(args) -> int:
    """Daily steps of the global case: ``--years`` of 365 days, else ``--days``."""
    return int(round(args.years * 365)) if args.years else int(args.days)


def _chunk(args) -> int:
    """Steps per streamed chunk of the global case: ``--chunk-steps``, else a year with ``--years``, else 0 (as
    many as the memory budget holds); never more than the run's steps."""
    return min(args.chunk_steps or (365 if args.years else 0), _steps(args))


def case_global(args) -> dict:
    import torch

    t0 = time.perf_counter()
    arrays = forest(args.reaches, args.seed)
    generate = time.perf_counter() - t0
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        timings, made = profiler.runcall(prepare, args, arrays)
        profiler.dump_stats(args.profile)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(30)
    else:
        timings, made = prepare(args, arrays)
    net, pieces, params, source, router, dt = (made[k] for k in ("net", "pieces", "params", "source", "router",
                                                                  "dt"))
    out = {"case": "global", "reaches": net.n_reaches, "basins": int(net.outlets.size),
           "deepest_basin_depth": int(net.depth.max()), "levels": net.n_levels, "pieces": len(pieces),
           "device": args.device, "generate_network_s": round(generate, 2),
           "prepare_s": {k: round(v, 2) for k, v in timings.items()}}
    if args.prep_only:
        out["host_peak_gib"] = round(_peak_host_gib(), 2)
        return out
    steps = _steps(args)
    chunk = _chunk(args)
    folder = Path(args.out or tempfile.mkdtemp(prefix="bench_scale_"))
    out.update({"steps": steps, "simulated_years": round(steps * dt / _YEAR, 3), "streams": {}})
    for mode in args.write.split(","):
        router.set_state(None)  # each mode routes the same run from a cold start
        out["streams"][mode] = _stream(args, net, source, params, router, steps, chunk, dt, mode, folder / mode)
    out["host_peak_gib"] = round(_peak_host_gib(), 2)
    if _on_gpu(args):
        out["gpu_peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        out["gpu"] = torch.cuda.get_device_name()
    if not args.keep and not args.out:
        shutil.rmtree(folder, ignore_errors=True)
    return out


_YEAR = 365.25 * 86400.0


def _stream(args, net, source, params, router, steps: int, chunk: int, dt: float, mode: str, folder: Path) -> dict:
    """One streamed run of ``steps`` in ``chunk``-step chunks, writing ``mode`` (none, zarr, nc): the first chunk
    apart from the steady state (the chunks after it), per simulated year."""
    import torch
    from thalweg.results.outputs import output_paths
    from thalweg.scale.stream import stream_route

    fmt = {"nc": "river-route", "zarr": "zarr", "none": None}[mode]
    folder.mkdir(parents=True, exist_ok=True)
    outs = output_paths(folder, "Q", fmt, "end") if fmt else {}
    on_gpu = _on_gpu(args)
    at = None if args.discharge_at == "all" else np.asarray(net.ids)[np.asarray(net.outlets)]
    written = net.n_reaches if at is None else at.size

    def wait(fraction, message):  # routing alone: a chunk is done when its kernels are, not when launched
        if on_gpu and not outs:
            torch.cuda.synchronize()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stream_route(net, source, params, args.scheme, outputs=outs, checkpoint=folder / ".Q.stream",
                           chunk_steps=chunk or None, router=router, compression=0, progress=wait, at=at,
                           id_names={k: "river_id" if fmt == "zarr" else "riverId" for k in outs})
    done = [t for _, _, t in res.finished]
    years = [(b - a) * dt / _YEAR for a, b, _ in res.finished]
    per_chunk = np.diff([0.0, *done])  # the first from the call (opening, allocations), then chunk to chunk
    # written runs checkpoint their last chunk (the state of every reach, once a run: 0.3 s at 6.8 M reaches) and
    # every stream.CHECKPOINT_SECONDS: with three chunks or more the steady state is the chunks between
    last_apart = bool(outs) and len(done) > 2
    mid = slice(1, -1) if last_apart else slice(1, None)
    steady = float(np.sum(per_chunk[mid]) / max(np.sum(years[mid]), 1e-12)) if len(done) > 1 else None
    bytes_per_year = 4.0 * written * _YEAR / dt  # float32 discharge
    result = {"chunk_steps": res.chunk_steps, "chunks": len(done), "wall_s": round(res.timings["wall"], 3),
              "busy_s": {k: round(v, 3) for k, v in res.timings.items() if k != "wall"},
              "first_chunk_s": round(float(per_chunk[0]), 3),
              "chunk_s": [round(float(x), 3) for x in per_chunk],
              "steady_s_per_simulated_year": None if steady is None else round(steady, 4),
              "reaches_written": int(written) if outs else 0}
    if last_apart:
        result["last_chunk_s"] = round(float(per_chunk[-1]), 3)
    if steady is not None:
        rest = 85.0 - years[0] - (years[-1] if last_apart else 0.0)
        once = float(per_chunk[0]) + (float(per_chunk[-1]) if last_apart else 0.0)
        result["extrapolated_85_years_s"] = round(once + rest * steady, 1)
        if outs:
            result["write_gb_per_s"] = round(bytes_per_year / steady / 1e9, 3)  # discharge written, steady state
    if outs:
        result["bytes_per_simulated_year_gb"] = round(bytes_per_year / 1e9, 3)
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return result


def _row_order(net, order: str) -> np.ndarray:
    """The runoff file's rows as reach positions: ``network`` (the network's order: on the lattice each basin is a
    strip across the whole file) or ``basin`` (post-order: each basin's reaches consecutive, as in files written
    basin by basin; Dask workers then each read about their own share of the rows, ``--worker-read``)."""
    return np.arange(net.n_reaches) if order == "network" else np.asarray(net.postorder)


def _write_runoff(net, steps: int, path: Path, order: str = "network") -> None:
    """river-route 2.x qlateral(time, river_id), m3/s, hourly, rows in ``order`` (:func:`_row_order`), written in
    blocks of steps (never whole)."""
    import netCDF4

    rng = np.random.default_rng(1)
    rows = _row_order(net, order)
    with netCDF4.Dataset(path, "w") as ds:
        ds.row_order = order  # read back by _input_matches
        ds.createDimension("time", steps)
        ds.createDimension("river_id", net.n_reaches)
        t = ds.createVariable("time", "f8", ("time",))
        t.units, t.calendar = "seconds since 2001-01-01 00:00:00", "standard"
        t[:] = 3600.0 * np.arange(1, steps + 1)
        ds.createVariable("river_id", "i8", ("river_id",))[:] = net.ids[rows]
        q = ds.createVariable("qlateral", "f4", ("time", "river_id"), chunksizes=(min(steps, 256), net.n_reaches))
        q.units = "m3 s-1"
        for a in range(0, steps, 256):
            b = min(a + 256, steps)
            q[a:b] = rng.gamma(1.5, 1.0, size=(b - a, net.n_reaches)).astype(np.float32)


_CHILD = (
    "import json, resource, sys, time\n"
    "t0 = time.perf_counter()\n"
    "from thalweg.cli import main\n"
    "rc = main(sys.argv[2:])\n"
    "run = time.perf_counter() - t0\n"
    "usage = resource.getrusage(resource.RUSAGE_SELF)\n"
    "open(sys.argv[1], 'w').write(json.dumps({'rc': rc, 'peak_kib': usage.ru_maxrss, 'run_s': run,\n"
    "                                         'cpu_s': usage.ru_utime + usage.ru_stime}))\n"
    "sys.exit(rc)\n")


def _cli(args_list: list[str]) -> dict:
    """``thalweg ARGS`` in a child process: wall; inside it, the time from importing the CLI to the command's end
    (``run_s``: the rest of the wall is the interpreter's start and exit), CPU seconds and peak resident memory."""
    report = Path(tempfile.mktemp(suffix=".json"))
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(report), *args_list], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(proc.stderr)
    child = json.loads(report.read_text())
    report.unlink()
    return {"wall_s": round(wall, 2), "run_s": round(child["run_s"], 2), "cpu_s": round(child["cpu_s"], 1),
            "peak_gib": round(child["peak_kib"] / 2**20, 2), "load_1min": round(load, 2)}


def _repeated(args_list: list[str], times: int, output: Path) -> dict:
    """:func:`_cli` ``times`` times: every run, and the range of the wall. Before each, outside the timing, the
    output is removed and the dirty page cache written back (``sync``), so that no run waits for the disk to
    write an earlier run's gigabytes."""
    runs = []
    for _ in range(times):
        output.unlink(missing_ok=True)
        os.sync()
        runs.append(_cli(args_list))
    walls = [r["wall_s"] for r in runs]
    return {"wall_range_s": [min(walls), max(walls)], "runs": runs}


def _input_matches(runoff: Path, network: Path, n_reaches: int, steps: int, order: str) -> bool:
    """Whether ``--out`` already holds this case's input (kept by an earlier ``--keep`` run), rows in ``order``."""
    if not (runoff.is_file() and network.is_file()):
        return False
    import netCDF4

    try:
        with netCDF4.Dataset(runoff) as ds:
            return ds["qlateral"].shape == (steps, n_reaches) and getattr(ds, "row_order", "network") == order
    except (OSError, KeyError, IndexError):
        return False


def case_cpu(args) -> dict:
    from thalweg.network import scheidegger_network

    folder = Path(args.out or tempfile.mkdtemp(prefix="bench_scale_cpu_"))
    folder.mkdir(parents=True, exist_ok=True)
    net = scheidegger_network(args.reaches, seed=args.seed)
    network = folder / "net.parquet"
    runoff = folder / "runoff.nc"
    out = {"case": "cpu", "reaches": net.n_reaches, "steps": args.steps, "row_order": args.row_order}
    if _input_matches(runoff, network, net.n_reaches, args.steps, args.row_order):
        out["input"] = "reused"
    else:
        import pandas as pd

        down = np.where(net.downstream >= 0, net.ids[np.maximum(net.downstream, 0)], -1)
        pd.DataFrame({"reach_id": net.ids, "downstream_id": down, "length_m": net.length, "area_m2": net.area}
                     ).to_parquet(network)
        t0 = time.perf_counter()
        _write_runoff(net, args.steps, runoff, args.row_order)
        out["write_input_s"] = round(time.perf_counter() - t0, 1)
    out["runoff_gib"] = round(runoff.stat().st_size / 2**30, 2)
    base = [str(network), str(runoff), "--no-gpkg", "--compression", "0", "--overwrite",
            "--discharge-at", args.discharge_at]
    chunk = ["--chunk-steps", str(args.chunk_steps)] if args.chunk_steps else []
    flags = {"default": chunk, "whole": ["--stream", "never"], "streamed": ["--stream", "always", *chunk],
             "dask_2_workers": ["--stream", "always", *chunk, "--dask", "--dask-workers", "2"]}
    runs = args.runs.split(",") + (["dask_2_workers"] if args.dask and "dask_2_workers" not in args.runs else [])
    for name in runs:
        output = folder / f"{name}.nc"
        out[name] = _repeated(["route", *base, "-o", str(output), *flags[name]], args.repeat, output)
    if "dask_2_workers" in out and "streamed" in out:
        out["dask_overhead_s"] = round(min(r["wall_s"] for r in out["dask_2_workers"]["runs"])
                                       - min(r["wall_s"] for r in out["streamed"]["runs"]), 2)
    if not args.keep:
        outputs = [f"{name}{ext}" for name in flags for ext in (".nc", ".settings.json")]
        for name in ("runoff.nc", "net.parquet", *outputs):
            (folder / name).unlink(missing_ok=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", choices=("global", "cpu"), default="global")
    p.add_argument("--reaches", type=int, default=200_000)
    p.add_argument("--days", type=int, default=365, help="global case: daily steps (without --years)")
    p.add_argument("--years", type=float, default=0,
                   help="global case: simulated years of daily steps, streamed a year per chunk by default")
    p.add_argument("--steps", type=int, default=8784, help="cpu case: hourly steps")
    p.add_argument("--chunk-steps", type=int, default=0, help="0: as many as the memory budget holds")
    p.add_argument("--max-reaches", type=int, default=0, help="global case: cut basins larger than this")
    p.add_argument("--scheme", default="muskingum_nonneg")
    p.add_argument("--device", default="cuda" if os.environ.get("CUDA_VISIBLE_DEVICES", "x") != "" else "cpu")
    p.add_argument("--write", default="none,zarr,nc",
                   help="global case: comma-separated modes, each a streamed run: none (routing alone), zarr, nc")
    p.add_argument("--discharge-at", choices=("all", "outlets"), default="all",
                   help="the reaches written (thalweg route --discharge-at): every reach, or each basin's outlet "
                        "(global case: in the written modes)")
    p.add_argument("--dask", action="store_true", help="cpu case: also on a LocalCluster of 2 workers")
    p.add_argument("--runs", default="whole,streamed",
                   help="cpu case: comma-separated runs of thalweg route: default (no flags: streams by itself when "
                        "the run does not fit), whole (--stream never), streamed (--stream always), dask_2_workers")
    p.add_argument("--row-order", choices=("network", "basin"), default="network",
                   help="cpu case: the runoff file's rows in the network's order (each basin a strip across the file) "
                        "or basin by basin (each Dask worker reads about its own share)")
    p.add_argument("--repeat", type=int, default=1, help="cpu case: times each run is repeated (ranges reported)")
    p.add_argument("--out", help="folder for the files (default: a temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the files written")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-warmup", dest="warmup", action="store_false",
                   help="global case: leave the kernels' first launch (compilation) inside the streamed run")
    p.add_argument("--prep-only", action="store_true",
                   help="global case: time the network preparation only (no streamed routing)")
    p.add_argument("--profile", metavar="FILE",
                   help="global case: cProfile the preparation into FILE (top 30 by cumulative time on stderr)")
    p.add_argument("--json", help="also write the result here")
    args = p.parse_args()
    unknown = set(args.write.split(",")) - {"none", "zarr", "nc"}
    if unknown:
        p.error(f"--write takes none, zarr and nc (comma-separated), not {', '.join(sorted(unknown))}")
    unknown = set(args.runs.split(",")) - {"default", "whole", "streamed", "dask_2_workers"}
    if unknown:
        p.error(f"--runs takes default, whole, streamed and dask_2_workers, not {', '.join(sorted(unknown))}")
    if args.case == "global" and args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            args.device = "cpu"
    result = case_global(args) if args.case == "global" else case_cpu(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text)


if __name__ == "__main__":
    main()
