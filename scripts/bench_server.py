"""Latency of the job service and the overhead of routing through it.

Measures, against a real ``python -m thalweg.server`` on a free loopback port:

- submit: POST /jobs of a tiny inline route job (3 reaches), the round trip until the job id is back;
- poll: GET /jobs/{id}, with a new connection per request (urllib, as thalweg.client) and on a kept-alive
  connection (as QNetworkAccessManager in the plugin);
- overhead: a route job end to end through the API (submit, poll every 10 ms, until succeeded) against the
  same work called directly in this process: ``thalweg.routing.route`` alone, and ``run_route`` (route +
  write the NetCDF), for inline networks of several sizes.

Usage: ``.venv/bin/python scripts/bench_server.py [--repeat 5] [--sizes 300x96,3000x720] [--json out.json]``
"""
from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def _stats(samples: list[float]) -> dict[str, float]:
    ms = sorted(1e3 * s for s in samples)
    return {"median_ms": statistics.median(ms), "p95_ms": ms[min(len(ms) - 1, int(0.95 * len(ms)))],
            "min_ms": ms[0], "n": len(ms)}


def _inputs(n_reaches: int, steps: int):
    from thalweg.network import scheidegger_network

    net = scheidegger_network(n_reaches, seed=1)
    rng = np.random.default_rng(0)
    runoff = rng.gamma(2.0, 0.5, (net.n_reaches, steps)).astype(np.float32)
    ds = net.downstream
    body = {"kind": "route", "write_gpkg": False,
            "network": {"ids": net.ids.tolist(),
                        "downstream_ids": np.where(ds >= 0, net.ids[np.clip(ds, 0, None)], -1).tolist(),
                        "length": net.length.tolist(), "area": (net.area / 1e6).tolist(), "area_unit": "km2"},
            "runoff": {"values": runoff.tolist(), "dt": 3600.0, "start": "2020-01-01T00:00:00Z"}}
    return net, runoff, body


def _direct(net, runoff, out_dir: Path) -> tuple[float, float]:
    """Seconds of route() alone and of run_route (route + write), as the job does them."""
    import torch

    from thalweg.config import RouteSettings
    from thalweg.runoff import Runoff
    from thalweg.routing import route
    from thalweg.workflow import resolve_params, run_route

    params, _ = resolve_params(net, "muskingum")
    t0 = time.perf_counter()
    with torch.no_grad():
        route(net, runoff, params, "muskingum", dt=3600.0)
    t_route = time.perf_counter() - t0
    time_axis = np.datetime64("2020-01-01T00:00:00", "ns") + np.timedelta64(3600, "s") * np.arange(runoff.shape[1])
    r = Runoff(values=runoff, ids=net.ids, time=time_axis, dt=3600.0)
    settings = RouteSettings(network="inline", runoff="inline", out_dir=str(out_dir), write_gpkg=False)
    t0 = time.perf_counter()
    run_route(settings, network=net, runoff=r)
    return t_route, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=5, help="runs of each routing size")
    p.add_argument("--requests", type=int, default=200, help="requests for the submit and poll latencies")
    p.add_argument("--sizes", default="300x96,3000x720", help="comma-separated REACHESxSTEPS")
    p.add_argument("--json", help="also write the numbers here")
    args = p.parse_args(argv)

    from thalweg.client import pack, start_server

    warnings.simplefilter("ignore")
    report: dict = {"python": sys.version.split()[0]}
    with tempfile.TemporaryDirectory() as tmp, start_server(Path(tmp) / "ws", python=sys.executable) as server:
        client = server.client(timeout=120)
        tiny = {"kind": "route", "write_gpkg": False,
                "network": {"ids": [1, 2, 3], "downstream_ids": [3, 3, -1], "length": [1e3, 1.5e3, 2e3],
                            "area": [10.0, 12.0, 30.0], "area_unit": "km2"},
                "runoff": {"values": [[1.0] * 24] * 3, "dt": 3600.0, "start": "2020-01-01T00:00:00Z"}}
        client.wait(client.submit(tiny)["id"], interval=0.05, timeout=300)  # the worker is warm from here on
        report["device"] = client.health()["device"]

        submits, ids = [], []
        for _ in range(min(args.requests, 50)):  # each submit queues a (tiny) job
            t0 = time.perf_counter()
            ids.append(client.submit(tiny)["id"])
            submits.append(time.perf_counter() - t0)
        report["submit"] = _stats(submits)
        polls = []
        for i in range(args.requests):
            t0 = time.perf_counter()
            client.status(ids[i % len(ids)])
            polls.append(time.perf_counter() - t0)
        report["poll"] = _stats(polls)
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        headers = {"Authorization": f"Bearer {client.token}"}
        kept = []
        for i in range(args.requests):
            t0 = time.perf_counter()
            conn.request("GET", f"/jobs/{ids[i % len(ids)]}", headers=headers)
            conn.getresponse().read()
            kept.append(time.perf_counter() - t0)
        conn.close()
        report["poll_keepalive"] = _stats(kept)
        for job_id in ids:
            client.wait(job_id, interval=0.05, timeout=300)

        report["routing"] = []
        for size in args.sizes.split(","):
            n, steps = (int(x) for x in size.lower().split("x"))
            net, runoff, body = _inputs(n, steps)
            direct_route, direct_run = [], []
            for i in range(args.repeat):
                r, w = _direct(net, runoff, Path(tmp) / f"direct{i}")
                direct_route.append(r)
                direct_run.append(w)
            for encoding in ("json", "packed"):
                if encoding == "packed":  # the encoding is part of what a caller pays, so it is timed too
                    body = {**body, "runoff": {**body["runoff"], "values": runoff}}
                api, run, in_job_route = [], [], []
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    if encoding == "packed":
                        sent = {**body, "runoff": {**body["runoff"], "values": pack(runoff)}}
                    else:
                        sent = body
                    job = client.submit(sent)
                    final = client.wait(job["id"], interval=0.01, timeout=600, check=True)
                    api.append(time.perf_counter() - t0)
                    run.append(final["timings"]["run"])
                    in_job_route.append(final["timings"]["route"])
                payload_mb = len(json.dumps(sent)) / 1e6
                row = {"reaches": net.n_reaches, "steps": steps, "runoff": encoding, "payload_mb": round(payload_mb, 2),
                       "direct_route_s": statistics.median(direct_route),
                       "direct_run_route_s": statistics.median(direct_run),
                       "api_end_to_end_s": statistics.median(api), "job_run_s": statistics.median(run),
                       "job_route_s": statistics.median(in_job_route)}
                row["overhead_vs_run_route_s"] = row["api_end_to_end_s"] - row["direct_run_route_s"]
                row["overhead_vs_route_s"] = row["api_end_to_end_s"] - row["direct_route_s"]
                report["routing"].append(row)

    print(f"device: {report['device']['type']} ({report['device']['name']})")
    for key in ("submit", "poll", "poll_keepalive"):
        s = report[key]
        print(f"{key:<15} median {s['median_ms']:7.2f} ms   p95 {s['p95_ms']:7.2f} ms   min {s['min_ms']:6.2f} ms"
              f"   (n={s['n']})")
    print(f"{'reaches x steps':>16} {'runoff':>7} {'body MB':>8} {'route()':>9} {'run_route':>10} {'API e2e':>9} "
          f"{'job run':>8} {'overhead':>9}")
    for r in report["routing"]:
        print(f"{r['reaches']:>8,} x {r['steps']:<5} {r['runoff']:>7} {r['payload_mb']:8.2f} "
              f"{r['direct_route_s']:8.3f}s {r['direct_run_route_s']:9.3f}s {r['api_end_to_end_s']:8.3f}s "
              f"{r['job_run_s']:7.3f}s "
              f"{r['overhead_vs_run_route_s']:+8.3f}s")
    print("overhead = API end to end (encode, submit, run in the worker, poll every 10 ms) - run_route called "
          "directly (route + write NetCDF)")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
