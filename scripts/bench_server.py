"""Latency of the job service and the overhead of routing through it.

Measures, against a real ``python -m thalweg.server`` on a free loopback port:

- submit: POST /jobs of a tiny inline route job (3 reaches), the round trip until the job id is back;
- poll: GET /jobs/{id}, with a new connection per request (urllib, as thalweg.client) and on a kept-alive
  connection (as QNetworkAccessManager in the plugin);
- overhead: a route job end to end through the API (submit, poll every 10 ms, until succeeded) against the
  same work called directly in this process: ``thalweg.routing.route`` alone, and ``run_route`` (route +
  write the NetCDF), for inline networks of several sizes.

Usage: ``.venv/bin/python scripts/bench_server.py [--repeat 5] [--sizes 300x96,3000x720] [--json out.json]``

``--load`` measures instead the plugin's expected load on one large finished job (default 100,000 reaches x
365 steps; issue 8's target: every request under 200 ms at the 95th percentile): a map animation fetching
snapshots at 10 per second, a hydrograph dock reading a reach twice a second, a summary read every 2 s and
a job's status polled 5 times a second, while route jobs of the same size run one after another on the
compute lane. Each reader keeps its connection alive (as QNetworkAccessManager does). Two phases: the
animation asks for JSON snapshots, then for packed float32 ones (``format=f32``, reach ids once from
``/axes``). p50/p95/max latency per endpoint and phase:
``.venv/bin/python scripts/bench_server.py --load [--load-size 100000x365] [--duration 20]``
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


class _Reader:
    """One kept-alive connection (as the plugin's QNetworkAccessManager keeps one), timing each GET."""

    def __init__(self, port: int, token: str) -> None:
        self.port, self.headers = port, {"Authorization": f"Bearer {token}"}
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get(self, path: str) -> tuple[float, int, bytes]:
        t0 = time.perf_counter()
        try:
            self.conn.request("GET", path, headers=self.headers)
            resp = self.conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException):  # a dropped keep-alive connection: reconnect once
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            self.conn.request("GET", path, headers=self.headers)
            resp = self.conn.getresponse()
            body = resp.read()
        return time.perf_counter() - t0, resp.status, body


def _percentiles(samples: list[float]) -> dict[str, float]:
    ms = np.sort(1e3 * np.asarray(samples))
    return {"n": int(ms.size), "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "max_ms": float(ms[-1])}


def _load(args) -> dict:
    """The plugin's expected load on one large job (see the module's note)."""
    import threading

    import xarray as xr

    from thalweg.client import start_server
    from thalweg.network import scheidegger_network

    n, steps = (int(x) for x in args.load_size.lower().split("x"))
    report: dict = {"python": sys.version.split()[0], "reaches": n, "steps": steps, "duration_s": args.duration}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        net = scheidegger_network(n, seed=1)
        rng = np.random.default_rng(0)
        volumes = rng.gamma(2.0, 0.5, (steps, net.n_reaches)).astype(np.float32) * 3600.0
        runoff = Path(tmp) / "m3_riv.nc"
        xr.Dataset({"m3_riv": (("time", "rivid"), volumes, {"units": "m3"})},
                   coords={"rivid": ("rivid", net.ids),
                           "time": ("time", 1577836800 + 3600 * np.arange(steps),
                                    {"units": "seconds since 1970-01-01 00:00:00"})}).to_netcdf(runoff)
        del volumes
        ds = net.downstream
        body = {"kind": "route", "write_gpkg": False, "runoff": str(runoff),
                "network": {"ids": net.ids.tolist(),
                            "downstream_ids": np.where(ds >= 0, net.ids[np.clip(ds, 0, None)], -1).tolist(),
                            "length": net.length.tolist(), "area": (net.area / 1e6).tolist(), "area_unit": "km2"}}
        report["inputs_s"] = time.perf_counter() - t0
        with start_server(Path(tmp) / "ws", python=sys.executable) as server:
            client = server.client(timeout=600)
            t0 = time.perf_counter()
            job = client.wait(client.submit(body)["id"], interval=0.2, timeout=3600, check=True)
            report["first_job_s"] = time.perf_counter() - t0
            report["job_timings"] = job["timings"]
            report["device"] = client.health()["device"]
            job_id = job["id"]
            reader = _Reader(server.port, client.token)
            first = reader.get(f"/jobs/{job_id}/snapshot?time=0")
            report["first_snapshot_ms"] = 1e3 * first[0]
            axes = reader.get(f"/jobs/{job_id}/axes")
            report["axes"] = {"ms": 1e3 * axes[0], "bytes": len(axes[2])}
            summary = reader.get(f"/jobs/{job_id}/summary")  # computed once per job, then kept encoded
            report["first_summary_ms"] = 1e3 * summary[0]
            assert first[1] == 200 and axes[1] == 200 and summary[1] == 200, (first[1], axes[1], summary[1])

            running: dict = {"id": None, "jobs": 0}
            stop = threading.Event()

            def background() -> None:  # route jobs of the same size, one after another
                while not stop.is_set():
                    running["id"] = client.submit(body)["id"]
                    while not stop.is_set() and client.status(running["id"])["state"] not in (
                            "succeeded", "failed", "cancelled"):
                        time.sleep(0.2)
                    running["jobs"] += 1
                if running["id"]:
                    try:
                        client.cancel(running["id"])
                    except Exception:  # noqa: BLE001  it finished meanwhile
                        pass

            def paced(name: str, rate: float, path_of, samples: dict, busy: list, deadline: float) -> None:
                conn = _Reader(server.port, client.token)
                k, start = 0, time.perf_counter()
                while time.perf_counter() < deadline:
                    took, status, data = conn.get(path_of(k))
                    if status != 200:
                        raise AssertionError(f"{name}: HTTP {status}: {data[:300]!r}")
                    samples.setdefault(name, []).append(took)
                    samples.setdefault(name + "_bytes", []).append(len(data))
                    if name == "poll":
                        busy.append(json.loads(data)["state"] == "running")
                    k += 1
                    pause = start + k / rate - time.perf_counter()  # a fixed rate, as a timer would fire
                    if pause > 0:
                        time.sleep(pause)

            feeder = threading.Thread(target=background, daemon=True)
            feeder.start()
            while running["id"] is None or client.status(running["id"])["state"] != "running":
                time.sleep(0.1)
            report["phases"] = {}
            for phase in ("json", "f32"):
                samples: dict = {}
                busy: list = []
                deadline = time.perf_counter() + args.duration
                suffix = "&format=f32" if phase == "f32" else ""
                streams = [
                    ("snapshot", 10.0, lambda k, s=suffix: f"/jobs/{job_id}/snapshot?time={k % steps}{s}"),
                    ("hydrograph", 2.0, lambda k: f"/jobs/{job_id}/hydrograph?reach={int(net.ids[(k * 7919) % n])}"),
                    ("summary", 0.5, lambda k: f"/jobs/{job_id}/summary"),
                    ("poll", 5.0, lambda k: f"/jobs/{running['id']}"),
                ]
                threads = [threading.Thread(target=paced, args=(name, rate, path, samples, busy, deadline))
                           for name, rate, path in streams]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                row = {}
                for name, rate, _ in streams:
                    row[name] = _percentiles(samples[name]) | {
                        "rate_per_s": len(samples[name]) / args.duration, "target_per_s": rate,
                        "kb": float(np.mean(samples[name + "_bytes"])) / 1e3}
                row["routing_busy"] = float(np.mean(busy)) if busy else 0.0
                report["phases"][phase] = row
            stop.set()
            feeder.join(120)
            report["background_jobs"] = running["jobs"]
    return report


def _print_load(report: dict) -> None:
    print(f"load: {report['reaches']:,} reaches x {report['steps']} steps; device {report['device']['type']} "
          f"({report['device']['name']}); first job {report['first_job_s']:.1f} s "
          f"(timings {', '.join(f'{k} {v:.2f}' for k, v in report['job_timings'].items())})")
    print(f"first snapshot {report['first_snapshot_ms']:.0f} ms; axes {report['axes']['ms']:.0f} ms "
          f"({report['axes']['bytes'] / 1e6:.2f} MB, once per job); first summary {report['first_summary_ms']:.0f} ms "
          f"(computed once per job)")
    print(f"{'phase':<6} {'endpoint':<11} {'n':>5} {'rate/s':>7} {'KB':>8} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for phase, row in report["phases"].items():
        for name in ("snapshot", "hydrograph", "summary", "poll"):
            r = row[name]
            print(f"{phase:<6} {name:<11} {r['n']:>5} {r['rate_per_s']:>4.1f}/{r['target_per_s']:<3g} {r['kb']:>7.1f} "
                  f"{r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} {r['max_ms']:>8.1f}")
        print(f"{phase:<6} a route job was running {row['routing_busy']:.0%} of the polls")
    worst = max(r[name]["p95_ms"] for r in report["phases"].values() for name in ("snapshot", "hydrograph",
                                                                                     "summary", "poll"))
    print(f"worst p95 {worst:.1f} ms (goal: under 200 ms); {report['background_jobs']} route jobs ran meanwhile")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=5, help="runs of each routing size")
    p.add_argument("--requests", type=int, default=200, help="requests for the submit and poll latencies")
    p.add_argument("--sizes", default="300x96,3000x720", help="comma-separated REACHESxSTEPS")
    p.add_argument("--json", help="also write the numbers here")
    p.add_argument("--load", action="store_true", help="measure the plugin's expected load instead (see above)")
    p.add_argument("--load-size", default="100000x365", help="REACHESxSTEPS of the job the load reads")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of each load phase")
    args = p.parse_args(argv)
    if args.load:
        warnings.simplefilter("ignore")
        report = _load(args)
        _print_load(report)
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2))
        return 0

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
