"""Benchmark of the QGIS plugin: from Run to a styled result layer on a large network (a benchmark, not a test).

Run it under QGIS's Python, with the backend's venv for the backend:

    QT_QPA_PLATFORM=offscreen .venv-qgis/bin/python scripts/bench_plugin.py            # 100,000 reaches x 365 days
    QT_QPA_PLATFORM=offscreen .venv-qgis/bin/python scripts/bench_plugin.py --reaches 5000 --steps 30   # quick

The network is a Scheidegger lattice with line geometry (made by the backend's ``scheidegger_network``, written
as a GeoPackage with GEOGloWS field names, plus a RAPID m3_riv runoff NetCDF of daily steps); the layer the user
routes is that GeoPackage loaded into a memory layer (``--source memory``, the default: the plugin extracts its
features into arrays and sends them inline with their lines as WKB) or the file itself (``--source file``: sent by
path). "Run" is what the panel's Run button does: a JobTask (extraction in the worker thread, the upload, the
backend job polled with short requests), then loading the result layer with its style and temporal settings on
the main thread. Phases timed: extraction, transfer (upload + the backend building the network), routing
(reading runoff + routing), writing (NetCDF + GeoPackage), loading (styled layer in the project). A QTimer
heartbeat (every 10 ms) on the main thread measures its longest stall from Run to the styled layer; then one
animation frame of the layer is rendered as the temporal controller would. Goals on the 2-core CI machine:
Run -> styled layer <= 30 s, longest stall <= 200 ms, one frame <= 1 s.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MAKE_INPUTS = r"""
import json, sys
import numpy as np
import geopandas as gpd
import xarray as xr
from thalweg.network import scheidegger_network

args = json.loads(sys.argv[1])
net = scheidegger_network(args["reaches"], seed=3, with_geometry=True)
ds = net.downstream
frame = gpd.GeoDataFrame({"LINKNO": net.ids, "DSLINKNO": np.where(ds >= 0, net.ids[np.clip(ds, 0, None)], -1),
                          "LengthGeodesicMeters": net.length, "DSContArea": net.area},
                         geometry=list(net.geometry), crs="EPSG:3035")
frame.to_file(args["gpkg"], layer="rivers", driver="GPKG")
steps, dt = args["steps"], 86400.0
rng = np.random.default_rng(1)
t = np.arange(steps)
storm = 1.0 + 4.0 * np.exp(-0.5 * ((t - steps / 3) / (steps / 20)) ** 2)
volume = (rng.gamma(2.0, 0.05, (steps, net.n_reaches)) * storm[:, None] * dt).astype(np.float32)
seconds = np.datetime64("2020-01-01", "s").astype(np.int64) + (np.arange(steps) * dt).astype(np.int64)
xr.Dataset({"m3_riv": (("time", "rivid"), volume, {"units": "m3"})},
           coords={"rivid": ("rivid", net.ids),
                   "time": ("time", seconds, {"units": "seconds since 1970-01-01 00:00:00"})}).to_netcdf(args["runoff"])
print(json.dumps({"reaches": int(net.n_reaches), "steps": steps}))
"""


def backend_python(arg: str | None) -> str:
    python = arg or os.environ.get("THALWEG_BACKEND_PYTHON") or str(ROOT / ".venv" / "bin" / "python")
    if not os.path.isfile(python):
        raise SystemExit(f"error: no backend Python at {python}; run scripts/setup.sh or pass --backend-python")
    return python


def make_inputs(python: str, folder: Path, reaches: int, steps: int) -> dict:
    """The GeoPackage and runoff NetCDF (cached in ``folder`` by size)."""
    folder.mkdir(parents=True, exist_ok=True)
    gpkg, runoff = folder / f"lattice_{reaches}.gpkg", folder / f"runoff_{reaches}_{steps}.nc"
    meta = folder / f"inputs_{reaches}_{steps}.json"
    if not (gpkg.exists() and runoff.exists() and meta.exists()):
        for path in (gpkg, runoff):
            if path.exists():
                path.unlink()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "QGIS"))}
        env["PYTHONPATH"] = str(ROOT / "backend")
        t0 = time.perf_counter()
        out = subprocess.run([python, "-c", MAKE_INPUTS, json.dumps({"reaches": reaches, "steps": steps,
                                                                      "gpkg": str(gpkg), "runoff": str(runoff)})],
                             capture_output=True, text=True, env=env, check=False)
        if out.returncode != 0:
            raise SystemExit(f"error: making the inputs failed:\n{out.stderr}")
        meta.write_text(out.stdout.strip().splitlines()[-1])
        print(f"inputs made in {time.perf_counter() - t0:.1f} s: {gpkg.name}, {runoff.name}", flush=True)
    return {"gpkg": gpkg, "runoff": runoff, **json.loads(meta.read_text())}


class Heartbeat:
    """The main thread's longest gap between two ticks of a 10 ms QTimer (a stall the user would feel)."""

    def __init__(self, interval_ms: int = 10) -> None:
        from qgis.PyQt.QtCore import QTimer

        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.last = None
        self.longest = 0.0
        self.where = ""
        self.phase = ""
        self.by_phase: dict[str, float] = {}

    def _tick(self) -> None:
        # a gap is charged to the phase named when it ends: a blocking call on the main thread sets its name
        # before it starts and the next phase's name only after the event loop has run again
        now = time.perf_counter()
        if self.last is not None:
            gap = now - self.last
            self.by_phase[self.phase] = max(self.by_phase.get(self.phase, 0.0), gap)
            if gap > self.longest:
                self.longest, self.where = gap, self.phase
        self.last = now

    def start(self) -> None:
        self.last = time.perf_counter()
        self.timer.start()

    def stop(self) -> None:
        self._tick()
        self.timer.stop()


def _profiler(on: bool):
    if not on:
        return None
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    return profiler


def _report(profiler, what: str) -> None:
    if profiler is None:
        return
    import pstats

    profiler.disable()
    print(f"---- profile: {what}")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reaches", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=365, help="daily steps")
    parser.add_argument("--source", choices=["memory", "file"], default="memory")
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "thalweg-bench-plugin")
    parser.add_argument("--backend-python", default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    parser.add_argument("--profile", action="store_true", help="print cProfile tables of the loading and the frame")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    python = backend_python(args.backend_python)
    inputs = make_inputs(python, args.data_dir, args.reaches, args.steps)

    plugins = Path(tempfile.mkdtemp(prefix="thalweg-bench-plugins-"))
    (plugins / "thalweg").symlink_to(ROOT / "plugin", target_is_directory=True)
    sys.path.insert(0, str(plugins))
    from qgis.core import QgsApplication, QgsFeatureRequest, QgsProject, QgsVectorLayer
    from qgis.PyQt.QtCore import QEventLoop, QTimer

    profile = tempfile.mkdtemp(prefix="thalweg-bench-profile-")
    app = QgsApplication([], True, profile)
    app.setPrefixPath("/usr", True)
    app.initQgis()

    import thalweg as plugin_package  # the plugin (installed as 'thalweg'), not the backend
    from thalweg import expressions
    from thalweg.layers import results
    from thalweg.layers.extract import network_source
    from thalweg.service import process
    from thalweg.service.tasks import JobTask, start
    from thalweg.settings import Settings

    assert Path(plugin_package.__file__).resolve().parent == ROOT / "plugin"
    expressions.register_function()  # as initGui does: the style's thalweg_frame()
    work = Path(tempfile.mkdtemp(prefix="thalweg-bench-"))
    settings = Settings(backend_python=python, pythonpath=str(ROOT / "backend"), workspace=str(work / "workspace"),
                        start_timeout=300)
    t0 = time.perf_counter()
    backend = process.shared(settings)
    t_backend = time.perf_counter() - t0
    print(f"backend started in {t_backend:.1f} s on {backend.device_label}", flush=True)

    project = QgsProject.instance()
    project.setFileName(str(work / "bench.qgz"))
    project.write()  # results are saved beside the project, as for a user
    file_layer = QgsVectorLayer(f"{inputs['gpkg']}|layername=rivers", "rivers", "ogr")
    assert file_layer.isValid() and file_layer.featureCount() == inputs["reaches"]
    t0 = time.perf_counter()
    layer = file_layer.materialize(QgsFeatureRequest()) if args.source == "memory" else file_layer
    t_materialize = time.perf_counter() - t0
    project.addMapLayer(layer)

    # ---- the machine's own noise: the longest gap of an idle main thread over 2 s ----
    idle = Heartbeat()
    idle.start()
    wait = QEventLoop()
    QTimer.singleShot(2000, wait.quit)
    wait.exec_()
    idle.stop()

    # ---- Run ----
    beat = Heartbeat()
    loop = QEventLoop()

    def run_task(make):
        """Start the task ``make(callback)`` builds and run the event loop until its callback: its arguments."""
        got: list = []

        def callback(*args):
            got.append(args)
            loop.quit()

        task = make(callback)
        start(task)
        loop.exec_()
        return task, got[0]

    beat.start()
    t_run = time.perf_counter()
    beat.phase = "preparing the source"
    source = network_source(layer)  # main thread: what the panel does on Run
    body_parts = {"kind": "route", "runoff": str(inputs["runoff"]), "write_gpkg": True, "label": "bench_plugin"}

    def body():
        return {**body_parts, **source.job_fields(backend.client)}

    beat.phase = "running the job (worker thread)"
    task, (record, error) = run_task(lambda done: JobTask("Thalweg: bench", body, backend=backend, on_finished=done,
                                                          layer=layer.id()))
    if error is not None:
        raise SystemExit(f"error: {error.message}\n{error.details}")
    t_job_done = time.perf_counter()
    beat.phase = "loading the styled result layer"
    profiler = _profiler(args.profile)
    # as the panel does: the files and columns in a task, the layer built and styled on the main thread
    _, (result_layer, load_error) = run_task(
        lambda done: results.LoadResultsTask(record, done, project=project, client=backend.client))
    if load_error is not None:
        raise SystemExit(f"error: {load_error.message}")
    t_loaded = time.perf_counter()
    _report(profiler, "loading")
    app.processEvents()
    beat.phase = "after loading"
    beat.stop()

    timings = record["timings"]
    plugin_t = task.timings
    phases = {
        "extraction": plugin_t.get("prepare", 0.0),
        "transfer": plugin_t.get("submit", 0.0) + timings.get("read_network", 0.0),
        "routing": timings.get("read_runoff", 0.0) + timings.get("route", 0.0),
        "writing": timings.get("write", 0.0),
        "loading": t_loaded - t_job_done,
    }
    total = t_loaded - t_run

    # ---- one animation frame ----
    renderer_ok = result_layer.renderer() is not None and result_layer.temporalProperties().isActive()
    step = record["result"]["steps"] // 3
    results.render_frame(result_layer, 0)  # the first render opens the file and fills caches
    profiler = _profiler(args.profile)
    image, t_frame = results.render_frame(result_layer, step)
    _report(profiler, "one frame")

    numbers = {"reaches": record["result"]["reaches"], "steps": record["result"]["steps"], "source": args.source,
               "device": backend.device_label, "backend_start_s": round(t_backend, 2),
               "materialize_s": round(t_materialize, 2), "run_to_styled_layer_s": round(total, 2),
               "phases_s": {k: round(v, 3) for k, v in phases.items()},
               "backend_timings_s": {k: round(float(v), 3) for k, v in timings.items()},
               "longest_stall_ms": round(1000 * beat.longest, 1), "stall_phase": beat.where,
               "stall_by_phase_ms": {k: round(1000 * v, 1) for k, v in beat.by_phase.items()},
               "idle_longest_gap_ms": round(1000 * idle.longest, 1),
               "frame_s": round(t_frame, 3), "frame_size": [image.width(), image.height()],
               "styled_and_temporal": bool(renderer_ok)}
    print(json.dumps(numbers, indent=2))
    goals = [("Run -> styled layer", total, 30.0, "s"), ("longest main-thread stall", beat.longest, 0.2, "s"),
             ("one animation frame", t_frame, 1.0, "s")]
    for name, value, goal, unit in goals:
        print(f"{name:28s} {value:8.3f} {unit}  (goal <= {goal:g} {unit}: {'met' if value <= goal else 'MISSED'})")
    if args.json:
        args.json.write_text(json.dumps(numbers, indent=2))
    process.stop_shared()
    project.clear()
    app.exitQgis()
    return 0


if __name__ == "__main__":
    sys.exit(main())
