"""Launch shapes of the exact engine's Triton recursions on a GPU (not a test).

A 1M-reach Scheidegger tree x 1000 hourly steps and the same reaches as independent rows (every reach its own
basin: no waits), Muskingum with GEOGloWS parameters; kernel time by CUDA events, median of 7. Each argument is
BT,WARPS,PROGRAMS_PER_SM; ``MODE=bwd`` times forward+backward with those backward shapes (tree only). At the
end, each compiled variant's registers per thread, spills and the resident programs per SM they allow. The
figures in docs/routing-engines.md came from::

    python3 scripts/bench_triton_shapes.py 256,1,16 256,1,32 256,2,32 256,4,32 512,1,32 512,2,32 1024,2,32
    MODE=bwd python3 scripts/bench_triton_shapes.py 128,1,32 256,1,32 512,1,32 256,2,32 256,1,16

``MODE=conv``: the convolution kernels on Hayami, 100k reaches x 1000 hourly steps (bench_routing's
parameters: supports of about 1000 taps). Each argument is BT,R,WARPS,PROGRAMS_PER_SM of the tensor-core
kernels (``_triton/toeplitz.py``), optionally then the precision (default ``_gpu.TOEPLITZ_PRECISION``,
fp16x3; tf32x3, tf32, ieee, bf16x3), then the kernel gradient's steps per product (``_gpu.TOEPLITZ_UB``, 32);
``0,0,W,P`` the shifted-row kernels (``_triton/fir.py``). Each line:
the kernel alone (tree; the same kernels on independent rows, no waits; forward+backward) and route()
(kernels built per call, as users call it; forward+backward in the runoff, and in the runoff and parameters)::

    MODE=conv python3 scripts/bench_triton_shapes.py 0,0,4,16 1024,32,4,16 1024,32,2,16 1024,16,4,16 1024,32,4,16,tf32

``MODE=taps``: Hayami's taps built by the Triton kernels (``_triton/hayami.py``) on the same case, kernel by kernel
(the support, the taps, their backward). Each argument is KERNEL,BLOCK,WARPS with KERNEL one of support, taps,
backward (``irf.hayami``'s GPU_SUPPORT_BLOCK, GPU_TAPS_*, GPU_BACKWARD_*)::

    MODE=taps python3 scripts/bench_triton_shapes.py taps,1024,4 taps,256,4 taps,256,2 backward,1024,4 backward,256,2
"""
from __future__ import annotations

import functools
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import bench_routing as br  # noqa: E402  (this folder's benchmark: its parameter rule)
from thalweg.irf import SCHEMES  # noqa: E402
from thalweg.network import from_arrays, scheidegger_network  # noqa: E402
from thalweg.routing import _gpu  # noqa: E402
from thalweg.routing.params import scheme_params as per_reach  # noqa: E402
from thalweg.routing.topology import topology  # noqa: E402

DEV = torch.device("cuda")


def case(net, t_len: int):
    s = SCHEMES["muskingum"]
    p = per_reach(net, s, br.scheme_params(net, "muskingum"), dtype=torch.float64, device=DEV)
    coef = s.recursion(p, 3600.0).stacked().contiguous()
    q = torch.distributions.Gamma(torch.full((1, net.n_reaches, t_len), 2.0, device=DEV), 1.0).sample()
    return topology(net), coef, q


def median_ms(fn, reps: int = 7) -> float:
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return float(np.median(times))


def forward(topo, coef, q):
    return lambda: _gpu.iir_route(q, coef, topo)


def forward_backward(topo, coef, q):
    cc, qq = coef.clone().requires_grad_(True), q.clone().requires_grad_(True)

    def step():
        qq.grad = cc.grad = None
        out, _ = _gpu.iir_route(qq, cc, topo)
        out.backward(torch.ones_like(out))
    return step


def compiled_stats(jit_fn) -> list[dict]:
    """Registers, spills and the resident programs per SM those allow, for every variant of ``jit_fn`` compiled
    in this process (Triton's per-device caches: walked defensively, their layout is not a public API)."""
    found, seen = [], set()

    def walk(obj, depth=0):
        if depth > 4 or id(obj) in seen:
            return
        seen.add(id(obj))
        if hasattr(obj, "n_regs") and hasattr(obj, "metadata"):
            found.append(obj)
        elif isinstance(obj, dict):
            for v in obj.values():
                walk(v, depth + 1)
        elif isinstance(obj, (tuple, list)):
            for v in obj:
                walk(v, depth + 1)

    walk(getattr(jit_fn, "device_caches", {}))
    walk(getattr(jit_fn, "cache", {}))
    props = torch.cuda.get_device_properties(DEV)
    regs_per_sm = getattr(props, "regs_per_multiprocessor", 65536)
    out = []
    for k in found:
        warps = int(getattr(k.metadata, "num_warps", 1))
        regs = int(k.n_regs)
        by_regs = regs_per_sm // max(1, regs * 32 * warps)
        out.append({"kernel": jit_fn.__name__, "num_warps": warps, "n_regs": regs, "n_spills": int(k.n_spills),
                    "shared_bytes": int(getattr(k.metadata, "shared", 0)),
                    "resident_programs_per_sm": int(min(by_regs, 64 // warps))})
    return out


def convolution(argv: list[str]) -> None:
    from thalweg import route
    from thalweg.routing import _cpu

    n, t_len = 100_000, 1000
    net = scheidegger_network(n, seed=1)
    rows = from_arrays(np.arange(1, net.n_reaches + 1), np.full(net.n_reaches, -1), length=np.asarray(net.length),
                       area=np.full(net.n_reaches, 100.0))
    params = br.scheme_params(net, "hayami")
    s = SCHEMES["hayami"]
    q = torch.distributions.Gamma(torch.full((1, net.n_reaches, t_len), 2.0, device=DEV), 1.0).sample()
    kern = s.kernels(per_reach(net, s, params, dtype=torch.float64, device=DEV), 3600.0, t_len)
    k0, k1 = _cpu.kernel_support_on(kern.h, None, _cpu.support_tol(torch.float32))
    kn = (k1 - k0).clamp(min=1)
    hc, _ = _gpu.compact_kernels(kern.h, None, k0, kn, dtype=torch.float32)
    print(json.dumps({"taps_mean": float(kn.double().mean()), "taps_max": int(kn.max())}), flush=True)
    topo, topo_rows = topology(net), topology(rows)
    ref = route(net, q, params, "hayami", dt=3600.0, engine="exact", dtype=torch.float64)  # the float64 run
    # the kernels' build: [N, T] float64 kernels, their supports and the cut (before), against the compact taps
    # built by the Triton kernels (route()'s path now)
    p64 = per_reach(net, s, params, dtype=torch.float64, device=DEV)
    tol = _cpu.support_tol(torch.float32)

    def full_build():
        kk = s.kernels(p64, 3600.0, t_len)
        a, b = _cpu.kernel_support_on(kk.h, None, tol)
        return _gpu.compact_kernels(kk.h, None, a, (b - a).clamp(min=1), dtype=torch.float32)
    comp = s.compact(p64, 3600.0, t_len, tol)
    print(json.dumps({"full_kernels_build_ms": round(median_ms(full_build), 3),
                      "compact_taps_ms": round(median_ms(lambda: s.compact(p64, 3600.0, t_len, tol)), 3),
                      "compact_width": int(comp.taps.shape[1]), "compact_taps_mean": float(comp.count.double().mean()),
                      "compact_taps_max_abs_diff": float((comp.taps[:, :hc.shape[1]].float()
                                                          - hc[:, :comp.taps.shape[1]]).abs().max())}), flush=True)
    del comp
    for arg in argv:
        vals = arg.split(",")
        bt, r, warps, per_sm = (int(v) for v in vals[:4])
        prec = vals[4] if len(vals) > 4 else _gpu.TOEPLITZ_PRECISION
        _gpu.TOEPLITZ_UB = int(vals[5]) if len(vals) > 5 else 32
        _gpu.NUM_WARPS, _gpu.TOEPLITZ_WARPS, _gpu.PROGRAMS_PER_SM = warps, warps, per_sm
        _gpu.TOEPLITZ_PRECISION = prec
        if r:
            _gpu.BT, _gpu.TOEPLITZ_R, _gpu.TOEPLITZ_MIN_TAPS = bt, r, 1
        else:
            _gpu.BT, _gpu.TOEPLITZ_MIN_TAPS = 1024, 1 << 30
        rec = {"case": "hayami 100k x 1000", "BT": bt, "R": r, "warps": warps, "programs_per_sm": per_sm,
               "precision": prec, "UB": _gpu.TOEPLITZ_UB}
        rec["kernel_ms"] = round(median_ms(lambda: _gpu._FIR.apply(q, hc, None, topo, k0, kn)), 3)
        rec["kernel_rows_ms"] = round(median_ms(lambda: _gpu._FIR.apply(q, hc, None, topo_rows, k0, kn)), 3)
        hg = hc.clone().requires_grad_(True)

        def kstep(hg=hg):
            hg.grad = None
            o = _gpu._FIR.apply(q, hg, None, topo, k0, kn)
            o.backward(torch.ones_like(o))
        rec["kernel_fwd_bwd_ms"] = round(median_ms(kstep, 5), 3)
        rec["route_ms"] = round(median_ms(lambda: route(net, q, params, "hayami", dt=3600.0, engine="exact")), 3)
        out = route(net, q, params, "hayami", dt=3600.0, engine="exact")
        err = float(((out.double() - ref).abs().amax(-1) / ref.abs().amax(-1).clamp(min=1e-30)).max())
        del out
        qq = q.clone().requires_grad_(True)

        def step(qq=qq):
            qq.grad = None
            o = route(net, qq, params, "hayami", dt=3600.0, engine="exact")
            o.backward(torch.ones_like(o))
        rec["route_fwd_bwd_ms"] = round(median_ms(step, 5), 3)
        # calibration's case: gradients in the parameters (through the taps' backward) and the runoff
        cel = torch.as_tensor(params["celerity"], device=DEV).requires_grad_(True)
        dif = torch.as_tensor(params["diffusivity"], device=DEV).requires_grad_(True)

        def pstep(qq=qq, cel=cel, dif=dif):
            qq.grad = cel.grad = dif.grad = None
            o = route(net, qq, {"celerity": cel, "diffusivity": dif}, "hayami", dt=3600.0, engine="exact")
            o.backward(torch.ones_like(o))
        rec["route_fwd_bwd_params_ms"] = round(median_ms(pstep, 5), 3)
        rec["max_rel_error_vs_float64"] = f"{err:.2e}"
        print(json.dumps(rec), flush=True)
    from thalweg.routing._triton import fir, hayami, toeplitz

    for kern in (fir.fir_forward_kernel, fir.fir_backward_kernel, toeplitz.toeplitz_forward_kernel,
                 toeplitz.toeplitz_backward_kernel, hayami.hayami_support_kernel, hayami.hayami_taps_kernel,
                 hayami.hayami_taps_backward_kernel):
        for rec in compiled_stats(kern):
            print(json.dumps(rec), flush=True)


def taps(argv: list[str]) -> None:
    from thalweg.irf import hayami
    from thalweg.routing import _cpu
    from thalweg.routing._triton import hayami as kernels

    n, t_len, dt = 100_000, 1000, 3600.0
    net = scheidegger_network(n, seed=1)
    s = SCHEMES["hayami"]
    p64 = per_reach(net, s, br.scheme_params(net, "hayami"), dtype=torch.float64, device=DEV)
    mu, lam = hayami._shape(p64)
    n = mu.shape[0]  # the generated tree's reaches (a few more than asked)
    tol = _cpu.support_tol(torch.float32)
    cp = hayami._gpu_constants(dt, tol, DEV)
    got = hayami._gpu_compact(mu, lam, dt, t_len, tol)
    first, count = got.first, got.count
    width = got.taps.shape[1]
    want = got.taps.clone()
    grad = torch.randn_like(want)
    print(json.dumps({"case": "hayami 100k x 1000", "taps_mean": float(count.double().mean()), "width": width}),
          flush=True)
    iters = (t_len - 1).bit_length()
    for arg in argv:
        kind, block, warps = arg.split(",")
        block, warps = int(block), int(warps)
        rec = {"kernel": kind, "BLOCK": block, "warps": warps}
        shape = {"BLOCK": block, "num_warps": warps}
        if kind == "support":
            f2, c2 = torch.empty_like(first), torch.empty_like(count)
            launch = functools.partial(kernels.hayami_support_kernel[(-(-n // block),)], mu, lam, cp, f2, c2, n,
                                       t_len, iters, **shape)
            rec["ms"] = round(median_ms(launch), 4)
            rec["same"] = bool(torch.equal(f2, first) and torch.equal(c2, count))
        elif kind == "taps":
            out = torch.empty_like(want)
            launch = functools.partial(kernels.hayami_taps_kernel[(n, -(-width // (block - 1)))], mu, lam, cp, first,
                                       count, out, width, **shape)
            rec["ms"] = round(median_ms(launch), 4)
            rec["max_abs_diff"] = float((out - want).abs().max())
        else:
            dmu, dlam = torch.empty_like(mu), torch.empty_like(lam)
            launch = functools.partial(kernels.hayami_taps_backward_kernel[(n,)], mu, lam, cp, first, count, grad,
                                       dmu, dlam, width, **shape)
            rec["ms"] = round(median_ms(launch), 4)
            rec["dmu_sum"], rec["dlam_sum"] = float(dmu.sum()), float(dlam.sum())
        print(json.dumps(rec), flush=True)
    for kern in (kernels.hayami_support_kernel, kernels.hayami_taps_kernel, kernels.hayami_taps_backward_kernel):
        for rec in compiled_stats(kern):
            print(json.dumps(rec), flush=True)


def main(argv: list[str]) -> None:
    warnings.simplefilter("ignore")
    mode = os.environ.get("MODE", "fwd")
    if mode == "conv":
        return convolution(argv)
    if mode == "taps":
        return taps(argv)
    shapes = [tuple(int(v) for v in a.split(",")) for a in argv]
    n, t_len = 1_000_000, 1000
    cases = [("tree 1M x 1000", scheidegger_network(n, seed=1))]
    if mode != "bwd":
        cases.append(("independent rows 1M x 1000", from_arrays(np.arange(1, n + 1), np.full(n, -1),
                                                                length=np.full(n, 5000.0), area=np.full(n, 100.0))))
    for name, net in cases:
        topo, coef, q = case(net, t_len)
        for bt, warps, per_sm in shapes:
            if mode == "bwd":
                _gpu.BWD_BT, _gpu.BWD_WARPS, _gpu.BWD_PROGRAMS_PER_SM = bt, warps, per_sm
                ms = median_ms(forward_backward(topo, coef, q), 5)
            else:
                _gpu.FWD_BT, _gpu.FWD_WARPS, _gpu.FWD_PROGRAMS_PER_SM = bt, warps, per_sm
                ms = median_ms(forward(topo, coef, q))
            print(json.dumps({"case": name, "mode": mode, "BT": bt, "warps": warps, "programs_per_sm": per_sm,
                              "ms": round(ms, 3), "reach_steps_per_s": f"{net.n_reaches * t_len / ms * 1e3:.3g}"}),
                  flush=True)
        del q
        torch.cuda.empty_cache()
    from thalweg.routing._triton import iir

    for kern in (iir.iir_forward_kernel, iir.iir_backward_kernel):
        for rec in compiled_stats(kern):
            print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
