"""Benchmark of Thalweg's routing engines (and DiffRoute 0.1.0 on the same GPU, same run).

Scheidegger-lattice networks, Muskingum with GEOGloWS parameters (k = length / velocity(area),
x = 0.25), dt = 3600 s, gamma runoff. For each engine: preparation (first call minus a warm call),
forward and forward+backward times (median of --reps), reach-steps per second, peak memory, and the
max relative error per reach against a float64 run of the exact engine (itself tested against the
float64 numpy recursion; on sizes <= --reference-max it is also checked against that recursion).

DiffRoute routes with g = h (one kernel for runoff and inflow), so its error is judged against
Thalweg's float64 routing of the same kernels (for Muskingum the scheme 'muskingum_gh', registered here;
pure lag, Nash and Hayami have g = h already: ``--scheme`` picks DiffRoute's IRF too, ``diffroute_case``). Its
reach order is the subtree post-order (``nodes_idx``), its parameters come through ``param_df``, and
``max_delay`` is the first of --diffroute-delays that fits in memory.

Examples::

    python scripts/bench_routing.py --device cpu --threads 1 --sizes 100000 --steps 366
    python scripts/bench_routing.py --device cuda --sizes 10000 100000 1000000 --steps 1000 8784 --diffroute
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import warnings

import numpy as np
import torch
from thalweg.errors import ThalwegWarning
from thalweg.irf import SCHEMES, Recursion, Scheme, register_scheme
from thalweg.irf import muskingum as _musk
from thalweg.network import scheidegger_network
from thalweg.params import geoglows_muskingum
from thalweg.routing import PreparedRoute, route, route_reference
from thalweg.routing.topology import build as build_topology
from thalweg.testing import max_relative_error

DT = 3600.0  # set by --dt


def _gh_kernel(params, dt, n_steps):
    h, _ = _musk.kernel(params, dt, n_steps)
    return h, None


def _gh_recursion(params, dt):
    c0, c1, c2 = _musk.coefficients(params["k"], params["x"], dt)
    return Recursion(r=c2, b0=c0, b1=c1, c0=c0, c1=c1)


if "muskingum_gh" not in SCHEMES:
    register_scheme(Scheme(name="muskingum_gh", parameters=SCHEMES["muskingum"].parameters, kernel=_gh_kernel,
                           travel_time=SCHEMES["muskingum"].travel_time, recursion=_gh_recursion,
                           description="Muskingum with g = h (DiffRoute's convention), benchmark only"))


def scheme_params(net, scheme: str) -> dict:
    """GEOGloWS-derived parameters for any scheme: k = length / velocity(area) sets each time scale."""
    p = geoglows_muskingum(net)
    k = np.clip(p["k"], 60.0, 30 * 86400.0)
    if scheme in ("muskingum", "muskingum_substep", "muskingum_gh"):
        return {"k": k, "x": p["x"]}
    if scheme == "linear_storage":
        return {"tau": k}
    if scheme == "pure_lag":
        return {"lag": k}
    if scheme == "nash_cascade":
        return {"tau": k / 3.0, "n": np.full(k.size, 3.0)}
    if scheme == "hayami":
        return {"celerity": np.clip(net.length / k, 0.05, 10.0), "diffusivity": np.full(k.size, 1e4)}
    raise SystemExit(f"no benchmark parameters for scheme {scheme}")


def diffroute_case(net, scheme: str):
    """(Thalweg's scheme of the same kernel with g = h, its parameters, DiffRoute's IRF name, DiffRoute's parameter
    columns) for the benchmark's scheme. DiffRoute's unit of time is the step (its dt = 1); its Nash cascade has
    n = 3 (the benchmark's n); its Hayami kernel is the density at each step's end normalised to its window, not
    the step-integrated inverse Gaussian (ROUTING.md section 3), so that error measures the kernel, not the routing."""
    if scheme in ("muskingum", "muskingum_gh"):
        p = scheme_params(net, "muskingum_gh")
        return "muskingum_gh", p, "muskingum", {"x": np.asarray(p["x"], float), "k": np.asarray(p["k"], float) / DT}
    p = scheme_params(net, scheme)
    if scheme == "pure_lag":
        return scheme, p, "pure_lag", {"delay": p["lag"] / DT}
    if scheme == "nash_cascade":
        return scheme, p, "nash_cascade", {"tau": p["tau"] / DT}
    if scheme == "hayami":
        return scheme, p, "hayami", {"L": np.asarray(net.length, float), "D": p["diffusivity"] * DT,
                                     "c": p["celerity"] * DT}
    raise SystemExit(f"DiffRoute has no counterpart of scheme {scheme}")


def deep_params(net, scheme: str, celerity: float) -> dict:
    """The deep slow case (closure engine): every reach's time scale is its length over ``celerity``."""
    if scheme != "muskingum":
        raise SystemExit("--deep is a Muskingum case")
    return {"k": np.asarray(net.length, dtype=np.float64) / celerity, "x": np.full(net.n_reaches, 0.25)}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, reps):
    times = []
    result = None
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        result = fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), result


def peak_reset(device):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_bytes(device):
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # process peak RSS


def bench_engine(net, runoff, params, engine, device, reps, opts, scheme="muskingum", ref=None, forward_only=False):
    """Times and peaks of one engine; the error against ``ref`` is taken before the backward runs, so the
    forward's output is freed first (1M x 8,784 forward+backward fits on one H200 only so)."""
    rec = {"engine": engine}
    n, t_len = runoff.shape[1], runoff.shape[2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        sync(device)
        t0 = time.perf_counter()
        out = route(net, runoff, params, scheme, dt=DT, engine=engine, device=device, **opts)
        sync(device)
        first = time.perf_counter() - t0
        del out
        peak_reset(device)
        fwd, out = timed(lambda: route(net, runoff, params, scheme, dt=DT, engine=engine, device=device, **opts),
                         device, reps)
        rec["peak_fwd_bytes"] = peak_bytes(device)
        rec["first_call_s"] = first
        rec["forward_s"] = fwd
        rec["reach_steps_per_s"] = n * t_len * runoff.shape[0] / fwd
        # by slices of reaches: a reduction over one [B, N, T] mask allocated an int64 copy of it (65.6 GiB at
        # 1M x 8,784 on the H200)
        rec["nonfinite"] = sum(int((~torch.isfinite(part)).sum()) for part in out.split(4096, dim=1))
        if ref is not None:
            rec["max_rel_error"] = float(max_relative_error(out.cpu(), ref).max())
        del out
        # the same forward through a PreparedRoute (parameters to coefficients once, as calibration and streaming
        # call it): the routing itself, without route()'s per-call preparation
        prepared = PreparedRoute(net, params, scheme, dt=DT, engine=engine, device=device, **opts)
        prepared(runoff)
        rec["prepared_forward_s"], res = timed(lambda p=prepared: p(runoff), device, reps)
        rec["prepared_reach_steps_per_s"] = n * t_len * runoff.shape[0] / rec["prepared_forward_s"]
        del prepared, res
        if device.type == "cuda":
            # route() with the parameters already on the GPU, as a calibration or training loop holds them: no
            # pageable upload of float64 arrays per call (about 1.2 ms at 1M reaches on the H200)
            on_dev = {name: torch.as_tensor(v, device=device) for name, v in params.items()}
            rec["device_params_forward_s"], res = timed(
                lambda: route(net, runoff, on_dev, scheme, dt=DT, engine=engine, device=device, **opts), device, reps)
            rec["device_params_reach_steps_per_s"] = n * t_len * runoff.shape[0] / rec["device_params_forward_s"]
            del on_dev, res
        if forward_only:
            return rec
        try:
            first_name = SCHEMES[scheme].parameter_names[0]
            k = torch.as_tensor(params[first_name], device=device).clone().requires_grad_(True)
            q = runoff.detach().requires_grad_(True)  # shares runoff's storage: no copy

            def fwd_bwd():
                q.grad = k.grad = None  # as a training step does: the last call's dL/dq is no part of the peak
                o = route(net, q, {**params, first_name: k}, scheme, dt=DT, engine=engine, device=device, **opts)
                o.sum().backward()

            fwd_bwd()
            peak_reset(device)
            fb, _ = timed(fwd_bwd, device, max(1, reps // 2))
            rec["forward_backward_s"] = fb
            rec["peak_fwd_bwd_bytes"] = peak_bytes(device)
            rec["bwd_over_fwd"] = fb / fwd
            rec["io_bytes"] = 2 * runoff.numel() * runoff.element_size()
            rec["peak_fwd_bwd_over_io"] = rec["peak_fwd_bwd_bytes"] / rec["io_bytes"]
        except (torch.cuda.OutOfMemoryError, MemoryError, RuntimeError, NotImplementedError) as exc:
            rec["forward_backward_s"] = None
            rec["backward_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    return rec


def run_diffroute(net, runoff, irf, columns, ref_gh, device, delays, reps):
    """DiffRoute 0.1.0 on the same network and parameters (``irf``, ``columns``: ``diffroute_case``); returns a
    record (or the reason it did not run)."""
    rec = {}
    try:
        import networkx as nx
        import pandas as pd
        from diffroute import LTIRouter, RivTree
    except ImportError as exc:
        rec["error"] = f"not importable: {exc}"
        return [{**rec, "engine": "diffroute-0.1.0"}]
    n = net.n_reaches
    topo = build_topology(net)
    t0 = time.perf_counter()
    g = nx.DiGraph()
    g.add_nodes_from(range(n))
    has = net.downstream >= 0
    g.add_edges_from(zip(np.flatnonzero(has).tolist(), net.downstream[has].tolist()))
    nodes_idx = pd.Series(np.arange(n), index=topo.order)  # subtree post-order
    df = pd.DataFrame(columns, index=np.arange(n))
    tree = RivTree(g, irf_fn=irf, param_df=df, nodes_idx=nodes_idx).to(device)
    rec["prep_s"] = time.perf_counter() - t0
    x = runoff[:, topo.order].contiguous()  # DiffRoute's channel order is nodes_idx
    runs = []
    for delay in delays:
        r = {"max_delay": int(delay)}
        try:
            router = LTIRouter(max_delay=int(delay), dt=1).to(device)
            peak_reset(device)
            with torch.no_grad():
                router(x, tree)
                fwd, y = timed(lambda r=router: r(x, tree), device, reps)
            r.update(forward_s=fwd, peak_fwd_bytes=peak_bytes(device),
                     reach_steps_per_s=n * runoff.shape[-1] * runoff.shape[0] / fwd)
            out = torch.empty_like(y)
            out[:, topo.order] = y
            err = max_relative_error(out.double().cpu(), ref_gh)
            r["max_rel_error"] = float(err.max())
            r["reaches_over_1e-3"] = int((err > 1e-3).sum())
            del y, out
            try:
                xg = x.clone().requires_grad_(True)
                router(xg, tree).sum().backward()
                peak_reset(device)

                def fb(r=router, xg=xg):
                    xg.grad = None
                    r(xg, tree).sum().backward()

                t_fb, _ = timed(fb, device, max(1, reps // 2))
                r["forward_backward_s"] = t_fb
                r["peak_fwd_bwd_bytes"] = peak_bytes(device)
            except (torch.cuda.OutOfMemoryError, RuntimeError) as exc:
                r["forward_backward_s"] = None
                r["backward_error"] = f"{type(exc).__name__}: {str(exc)[:160]}"
        except (torch.cuda.OutOfMemoryError, RuntimeError) as exc:
            r["error"] = f"{type(exc).__name__}: {str(exc)[:120]}"
        torch.cuda.empty_cache()
        runs.append({**rec, **r, "engine": f"diffroute-0.1.0 (max_delay {delay})"})
    return runs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--steps", type=int, nargs="+", default=[1000])
    ap.add_argument("--engines", nargs="+", default=["exact", "closure"])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (the CPU target is 1)")
    ap.add_argument("--reference-max", type=int, default=20_000,
                    help="largest reach count checked against the numpy float64 recursion")
    ap.add_argument("--judge-max", type=int, default=2_000_000_000,
                    help="largest B x N x T judged by a float64 run (it needs 16 bytes per reach-step on the device)")
    ap.add_argument("--closure-max", type=int, default=150_000, help="largest reach count for the closure engine")
    ap.add_argument("--scheme", default="muskingum", help="scheme of the runs (DiffRoute too)")
    ap.add_argument("--dt", type=float, default=3600.0, help="step, s")
    ap.add_argument("--diffroute", action="store_true", help="also run DiffRoute 0.1.0 (GPU)")
    ap.add_argument("--diffroute-max", type=int, default=150_000)
    ap.add_argument("--diffroute-delays", type=int, nargs="+", default=[48, 256, 1024])
    ap.add_argument("--precision", default="ieee", help="closure engine: ieee, tf32x3 or tf32")
    # closure engine: the deep slow case of issue 13 (one deep basin, slow water: long path kernels)
    ap.add_argument("--postorder", action="store_true",
                    help="route the lattice renumbered in its post-order (RiverNetwork.in_postorder()): the compiled "
                         "CPU passes then read and write the rows in memory order (about 15 %% faster)")
    ap.add_argument("--deep", action="store_true",
                    help="one deep basin per size (scheidegger_network(size, seed=1, single_basin=True): "
                         "--sizes 3500 gives 4,999 reaches, 127 levels), Muskingum k = length / --deep-celerity, "
                         "x = 0.25; e.g. --deep --sizes 3500 --steps 2000 --engines closure exact")
    ap.add_argument("--deep-celerity", type=float, default=0.3, help="m/s, with --deep")
    ap.add_argument("--forward-only", action="store_true", help="time the forward only (no backward runs)")
    ap.add_argument("--closure-gpu-fft-taps", type=int, default=None,
                    help="closure on GPU: target blocks with kernels this long go by FFT (closure.GPU_FFT_MIN_TAPS)")
    ap.add_argument("--out", default=None, help="write the records as JSON lines here")
    ap.add_argument("--diffroute-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    global DT
    DT = args.dt
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.closure_gpu_fft_taps is not None:
        from thalweg.routing import closure

        closure.GPU_FFT_MIN_TAPS = args.closure_gpu_fft_taps
    device = torch.device(args.device)
    records = []

    def emit(rec):
        records.append(rec)
        print(json.dumps(rec), flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(rec) + "\n")

    if args.diffroute_child:  # one DiffRoute configuration, in its own process (its crashes kill CUDA contexts)
        size, steps = args.sizes[0], args.steps[0]
        net = scheidegger_network(size, seed=1)
        torch.manual_seed(0)
        runoff = torch.distributions.Gamma(2.0, 1.0).sample((args.batch, net.n_reaches, steps)).to(device)
        gh_scheme, gh_params, irf, columns = diffroute_case(net, args.scheme)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ThalwegWarning)
            ref_gh = route(net, runoff.double(), gh_params, gh_scheme, dt=DT, engine="exact", device=device,
                           dtype=torch.float64).cpu()
        for rec in run_diffroute(net, runoff, irf, columns, ref_gh, device, args.diffroute_delays, args.reps):
            print("DIFFROUTE " + json.dumps(rec), flush=True)
        return []
    for size in args.sizes:
        t0 = time.perf_counter()
        net = scheidegger_network(size, seed=1, single_basin=args.deep)
        if args.postorder:
            net = net.in_postorder()
        t_net = time.perf_counter() - t0
        t0 = time.perf_counter()
        build_topology(net)
        t_topo = time.perf_counter() - t0
        params = deep_params(net, args.scheme, args.deep_celerity) if args.deep else scheme_params(net, args.scheme)
        for steps in args.steps:
            torch.manual_seed(0)
            try:  # sampled on the device: 1M x 8,784 gamma draws on the host take minutes
                conc = torch.full((), 2.0, device=device)
                runoff = torch.distributions.Gamma(conc, torch.ones_like(conc)).sample(
                    (args.batch, net.n_reaches, steps))
            except torch.cuda.OutOfMemoryError:
                emit({"size": net.n_reaches, "steps": steps, "error": "runoff does not fit on the device"})
                continue
            runoff_cpu = runoff.cpu() if net.n_reaches <= args.reference_max else None
            base = {"size": net.n_reaches, "levels": net.n_levels, "steps": steps, "batch": args.batch,
                    "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                    "threads": torch.get_num_threads(), "network_build_s": t_net, "topology_s": t_topo,
                    "reach_order": "post-order" if args.postorder else "lattice"}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ThalwegWarning)
                ref = None
                if runoff.numel() <= args.judge_max:  # the judge: float64 exact engine (recursion in double)
                    try:
                        ref = route(net, runoff.double(), params, args.scheme, dt=DT, engine="exact",
                                    device=device, dtype=torch.float64).cpu()
                    except torch.cuda.OutOfMemoryError:
                        ref = None
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                if ref is not None and net.n_reaches <= args.reference_max:
                    numpy_ref = route_reference(net, runoff_cpu.double().numpy(), params, args.scheme, dt=DT)
                    base["judge_vs_numpy_recursion"] = float(max_relative_error(ref, numpy_ref).max())
            for engine in args.engines:
                if engine == "closure" and net.n_reaches > args.closure_max:
                    continue
                opts = {"precision": args.precision} if engine == "closure" else {}
                try:
                    rec = bench_engine(net, runoff, params, engine, device, args.reps, opts, args.scheme, ref,
                                       forward_only=args.forward_only)
                    rec["scheme"] = args.scheme
                    if ref is not None:
                        rec["judge_nonfinite"] = int((~torch.isfinite(ref)).sum())
                except (torch.cuda.OutOfMemoryError, MemoryError) as exc:
                    rec = {"engine": engine, "error": f"out of memory: {str(exc)[:160]}"}
                emit({**base, **rec})
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            if args.diffroute and device.type == "cuda" and net.n_reaches <= args.diffroute_max:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ThalwegWarning)
                    gh_scheme, gh_params, _, _ = diffroute_case(net, args.scheme)
                    ref_gh = route(net, runoff.double(), gh_params, gh_scheme, dt=DT, engine="exact",
                                   device=device, dtype=torch.float64).cpu()
                    mine = bench_engine(net, runoff, gh_params, "exact", device, args.reps, {}, gh_scheme, ref_gh)
                    mine["engine"] = "exact (g = h)"
                    mine["scheme"] = gh_scheme
                emit({**base, **mine})
                for rec in _diffroute_isolated(args, net.n_reaches, size, steps):
                    emit({**base, **rec})
            del runoff
            if device.type == "cuda":
                torch.cuda.empty_cache()
    _table(records)
    return records


def _diffroute_isolated(args, n_reaches, size, steps):
    import subprocess

    out = []
    for delay in args.diffroute_delays:
        cmd = [sys.executable, __file__, "--diffroute-child", "--device", args.device, "--sizes", str(size),
               "--steps", str(steps), "--diffroute-delays", str(delay), "--reps", str(args.reps), "--batch",
               str(args.batch), "--dt", str(args.dt), "--scheme", args.scheme]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False)
            recs = [json.loads(line[10:]) for line in res.stdout.splitlines() if line.startswith("DIFFROUTE ")]
            if not recs:
                recs = [{"engine": f"diffroute-0.1.0 (max_delay {delay})",
                         "error": (res.stderr.strip().splitlines() or ["no output"])[-1][:200]}]
        except subprocess.TimeoutExpired:
            recs = [{"engine": f"diffroute-0.1.0 (max_delay {delay})", "error": "timed out (240 s)"}]
        out.extend(recs)
    return out


def _fmt(v, unit=""):
    if v is None:
        return "-"
    if isinstance(v, float):
        if unit == "B":
            return f"{v / 2**30:.2f} GiB"
        return f"{v:.3g}"
    return str(v)


def _table(records):
    cols = [("size", ""), ("steps", ""), ("engine", ""), ("forward_s", ""), ("prepared_forward_s", ""),
            ("forward_backward_s", ""), ("reach_steps_per_s", ""), ("peak_fwd_bytes", "B"), ("peak_fwd_bwd_bytes", "B"),
            ("max_rel_error", ""), ("first_call_s", "")]
    print("\n" + " | ".join(c for c, _ in cols))
    for r in records:
        print(" | ".join(_fmt(float(r[c]) if isinstance(r.get(c), int) and u == "B" else r.get(c), u)
                         for c, u in cols))


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
