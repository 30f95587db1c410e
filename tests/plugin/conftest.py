"""Plugin tests: real QGIS 3.22 (offscreen) and a real backend process; no mock server.

Run under QGIS's Python (``.venv-qgis/bin/python``), never the backend's venv:

    QT_QPA_PLATFORM=offscreen .venv-qgis/bin/python -m pytest -c tests/plugin/pytest.ini tests/plugin

The plugin is imported as QGIS imports it: as a package named after its install folder (``thalweg``, a
symlink to ``plugin/`` in a temporary plugins folder), so its relative imports are exercised. The backend
is ``$THALWEG_BACKEND_PYTHON`` (default ``<repo>/.venv/bin/python``) running this checkout's ``backend/``.

Fixtures for every plugin test file: ``qgis_app``, ``plugin_package``, ``backend_settings``, ``backend``,
``sample`` (paths of the sample basin), ``rivers_layer``, ``project`` (a cleared QgsProject),
``run_cli`` (the ``thalweg`` CLI of the backend), ``wait_task`` (run a QgsTask to its end through qtbot).
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "resources" / "sample"
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

# the plugin as QGIS sees it: <plugins folder>/thalweg -> plugin/ (nothing of the backend is importable here)
PLUGINS_DIR = Path(tempfile.mkdtemp(prefix="thalweg-plugins-"))
(PLUGINS_DIR / "thalweg").symlink_to(ROOT / "plugin", target_is_directory=True)
sys.path.insert(0, str(PLUGINS_DIR))
sys.path.append("/usr/share/qgis/python/plugins")  # QGIS's own Processing plugin

from qgis.core import QgsApplication, QgsProject, QgsVectorLayer  # noqa: E402

log = logging.getLogger("qgis")


def backend_python() -> str:
    """The backend's interpreter: ``$THALWEG_BACKEND_PYTHON``, else the checkout's ``.venv``."""
    python = os.environ.get("THALWEG_BACKEND_PYTHON") or str(ROOT / ".venv" / "bin" / "python")
    if not os.path.isfile(python):
        raise RuntimeError(f"no backend Python at {python}: run `bash scripts/setup.sh`, or set "
                           f"THALWEG_BACKEND_PYTHON to the interpreter of a venv with thalweg[gis,server]")
    return python


@pytest.fixture(scope="session", autouse=True)
def qgis_app(tmp_path_factory):
    """One QgsApplication (GUI enabled, offscreen) with a throwaway profile, and Processing initialised."""
    profile = tmp_path_factory.mktemp("qgis-profile")
    app = QgsApplication([], True, str(profile))
    app.setPrefixPath("/usr", True)
    app.initQgis()
    from processing.core.Processing import Processing

    Processing.initialize()

    def forward(message, tag, level):  # the QGIS message log, visible in pytest's captured logging
        log.log(logging.WARNING if int(level) >= 1 else logging.INFO, "%s: %s", tag, message)

    QgsApplication.messageLog().messageReceived.connect(forward)
    yield app
    QgsApplication.messageLog().messageReceived.disconnect(forward)
    from thalweg.service.process import stop_shared

    stop_shared()
    app.exitQgis()


@pytest.fixture(scope="session")
def plugin_package():
    """The plugin package (``thalweg``, imported from the temporary plugins folder)."""
    import thalweg

    assert Path(thalweg.__file__).resolve().parent == ROOT / "plugin", thalweg.__file__
    return thalweg


@pytest.fixture(scope="session")
def backend_settings(tmp_path_factory):
    """Settings that start this checkout's backend in a temporary workspace."""
    from thalweg.settings import Settings

    return Settings(backend_python=backend_python(), pythonpath=str(ROOT / "backend"),
                    workspace=str(tmp_path_factory.mktemp("workspace")), start_timeout=240.0)


@pytest.fixture(scope="session")
def backend(backend_settings):
    """The session's backend (the same one the plugin's code gets from ``process.shared``)."""
    from thalweg.service import process

    b = process.shared(backend_settings)
    assert b.owned and b.running()
    yield b
    if process.current() is b:
        process.stop_shared()


@pytest.fixture(scope="session")
def sample() -> dict[str, Path]:
    """Paths of the sample basin (resources/sample, see its README)."""
    paths = {"rivers": SAMPLE / "cance_rivers.gpkg", "runoff": SAMPLE / "cance_runoff.nc",
             "gauges": SAMPLE / "cance_gauges.csv", "observed": SAMPLE / "cance_qobs.csv"}
    for path in paths.values():
        assert path.exists(), path
    return paths


@pytest.fixture
def project():
    """The project, cleared before and after the test."""
    QgsProject.instance().clear()
    yield QgsProject.instance()
    QgsProject.instance().clear()


@pytest.fixture
def rivers_layer(sample):
    """The sample basin's 'rivers' layer (GeoPackage-backed, EPSG:2154, 'LINKNO'/'DSLINKNO' fields)."""
    layer = QgsVectorLayer(f"{sample['rivers']}|layername=rivers", "rivers", "ogr")
    assert layer.isValid()
    return layer


@pytest.fixture(scope="session")
def run_cli(backend_settings):
    """``run_cli(*args)``: the backend's ``thalweg`` CLI (this checkout), its CompletedProcess; fails loudly."""

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        from thalweg.service.process import clean_environment

        proc = subprocess.run([backend_settings.backend_python, "-m", "thalweg.cli", *map(str, args)],
                              capture_output=True, text=True, env=clean_environment(backend_settings), timeout=600)
        if check and proc.returncode != 0:
            raise AssertionError(f"thalweg {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    return run


@pytest.fixture(scope="session")
def backend_exec(backend_settings):
    """``backend_exec(code, **args)``: run Python ``code`` in the backend's interpreter (this checkout's
    package importable; ``args`` as the JSON dict ``ARGS``) and return what it printed last, decoded as JSON.
    Inputs the tests need (synthetic networks, runoff files) are made with the backend's own writers."""

    def run(code: str, **args):
        from thalweg.service.process import clean_environment

        script = "import json, sys\nARGS = json.loads(sys.argv[1])\n" + code
        proc = subprocess.run([backend_settings.backend_python, "-c", script, json.dumps(args, default=str)],
                              capture_output=True, text=True, env=clean_environment(backend_settings), timeout=600)
        if proc.returncode != 0:
            raise AssertionError(f"backend code failed ({proc.returncode}):\n{proc.stderr}")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    return run


@pytest.fixture(scope="session")
def long_job(backend_exec, tmp_path_factory):
    """Inputs of a route job that runs for seconds with a safe point every few milliseconds: a tall, deep
    inline network (thousands of levels) and a runoff file of ~64,000 reaches x 1,500 steps."""
    folder = tmp_path_factory.mktemp("long")
    return backend_exec(LONG_JOB, folder=str(folder))


LONG_JOB = """
import numpy as np
import xarray as xr
from pathlib import Path
from thalweg.network import scheidegger_network

net = scheidegger_network(height=16000, width=4, seed=7)
steps, dt = 1500, 3600
values = np.zeros((steps, net.n_reaches), dtype=np.float32)
values[:, net.headwaters[:50]] = dt
seconds = np.datetime64("2020-01-01", "s").astype(np.int64) + np.arange(steps) * dt
path = Path(ARGS["folder"]) / "m3_riv.nc"
xr.Dataset({"m3_riv": (("time", "rivid"), values, {"units": "m3"})},
           coords={"rivid": ("rivid", net.ids),
                   "time": ("time", seconds, {"units": "seconds since 1970-01-01 00:00:00"})}).to_netcdf(path)
ds = net.downstream
network = {"ids": net.ids.tolist(), "downstream_ids": np.where(ds >= 0, net.ids[np.clip(ds, 0, None)], -1).tolist(),
           "length": net.length.tolist(), "area": (net.area / 1e6).tolist(), "area_unit": "km2"}
print(json.dumps({"network": network, "runoff": str(path), "levels": int(net.n_levels)}))
"""


@pytest.fixture
def wait_task(qtbot):
    """``wait_task(task, timeout=...)``: start a QgsTask through the plugin (kept referenced) and wait, with
    the event loop running, until its ``finished()`` has run; returns the task."""
    from qgis.core import QgsTask

    from thalweg.service.tasks import start

    def wait(task: QgsTask, timeout: float = 120.0) -> QgsTask:
        ended = []
        task.taskCompleted.connect(lambda: ended.append(True))
        task.taskTerminated.connect(lambda: ended.append(False))
        start(task)
        qtbot.waitUntil(lambda: bool(ended), timeout=int(timeout * 1000))
        return task

    return wait


# ---------------------------------------------------------------- qgis_process.bin
@pytest.fixture(scope="module")
def qgis_process_env(tmp_path_factory, backend_settings):
    """A fresh QGIS profile folder (the user's is untouched) with the plugin installed (a symlink, as the
    development install makes it), enabled, and its backend settings; the environment to run qgis_process in."""
    config = tmp_path_factory.mktemp("qgis-config")
    profile = config / "profiles" / "default"
    (profile / "python" / "plugins").mkdir(parents=True)
    (profile / "python" / "plugins" / "thalweg").symlink_to(ROOT / "plugin", target_is_directory=True)
    (profile / "QGIS").mkdir()
    workspace = tmp_path_factory.mktemp("qgis-process-workspace")
    (profile / "QGIS" / "QGIS3.ini").write_text(
        "[thalweg]\n"
        f"backend_python={backend_settings.backend_python}\n"
        f"pythonpath={backend_settings.pythonpath}\n"
        f"workspace={workspace}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(QGIS_CUSTOM_CONFIG_PATH=str(config), QT_QPA_PLATFORM="offscreen")
    from gui_helpers import QGIS_PROCESS

    enable = subprocess.run([QGIS_PROCESS, "plugins", "enable", "thalweg"], env=env, capture_output=True,
                            text=True, timeout=300)
    assert enable.returncode == 0, enable.stdout + enable.stderr
    return {"env": env, "workspace": workspace}


# ---------------------------------------------------------------- process exit
@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Leave without Python's interpreter teardown once pytest has reported: QGIS 3.22's Qt objects (print layouts,
    layer registries) can crash in their destructors after ``exitQgis()`` (a segfault, rc 139, after every test
    passed). The exit status is pytest's own."""
    status = getattr(config, "_thalweg_exitstatus", None)
    if status is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(status))


def pytest_sessionfinish(session, exitstatus):
    session.config._thalweg_exitstatus = exitstatus
