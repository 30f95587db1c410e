"""The plugin zip: one top folder 'thalweg', what the plugin needs at run time and nothing else; it installs
into a fresh QGIS profile and loads there (qgis_process lists its algorithms; qgis.utils starts it)."""
from __future__ import annotations

import configparser
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
QGIS_PROCESS = "/usr/bin/qgis_process.bin"


def _build_plugin():
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_plugin", ROOT / "scripts" / "build_plugin.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return _build_plugin().build(tmp_path_factory.mktemp("dist"))


def test_zip_holds_the_plugin_and_nothing_else(built):
    with zipfile.ZipFile(built) as zf:
        names = zf.namelist()
        assert {n.split("/", 1)[0] for n in names} == {"thalweg"}
        for needed in ("metadata.txt", "LICENSE", "__init__.py", "main.py", "settings.py", "errors.py",
                       "service/process.py", "service/tasks.py", "service/client.py", "layers/extract.py",
                       "processing/provider.py", "processing/route.py", "resources/icons/thalweg.svg",
                       "processing/report.py", "layers/report.py", "resources/styles/change.qml",
                       "resources/models/thalweg_scenarios.model3"):
            assert f"thalweg/{needed}" in names, needed
        assert any(n.startswith("thalweg/resources/styles/") and n.endswith(".qml") for n in names)
        for banned in ("backend/", "tests/", "scripts/", "sample/", "__pycache__", ".pyc", "cance_"):
            assert not any(banned in n for n in names), banned
        # the client is the backend's own file (one implementation), written out, not a link
        assert zf.read("thalweg/service/client.py") == (ROOT / "backend" / "thalweg" / "client.py").read_bytes()
        assert all((info.external_attr >> 28) != 0o12 for info in zf.infolist())  # no symlinks
        meta = configparser.ConfigParser(interpolation=None)
        meta.read_string(zf.read("thalweg/metadata.txt").decode("utf-8"))
    general = meta["general"]
    assert general["qgisMinimumVersion"] == "3.22" and general["hasProcessingProvider"] == "yes"
    assert built.name == f"thalweg-{general['version']}.zip"


def test_no_backend_or_torch_import_in_the_plugin():
    """QGIS's Python must never import torch or the backend package: the plugin's sources name neither."""
    for path in (ROOT / "plugin").rglob("*.py"):
        if path.name == "client.py":
            continue
        text = path.read_text(encoding="utf-8")
        assert "import torch" not in text and "from thalweg" not in text and "import thalweg" not in text, path


LOAD = """
import sys
from qgis.core import QgsApplication
app = QgsApplication([], False, sys.argv[1])
app.setPrefixPath("/usr", True)
app.initQgis()
sys.path.append("/usr/share/qgis/python/plugins")
from processing.core.Processing import Processing
Processing.initialize()
import qgis.utils
qgis.utils.plugin_paths = [sys.argv[2]]
sys.path.insert(0, sys.argv[2])  # as QGIS puts each plugins folder on sys.path
qgis.utils.updateAvailablePlugins()
assert "thalweg" in qgis.utils.available_plugins, qgis.utils.available_plugins
assert qgis.utils.loadPlugin("thalweg")
assert qgis.utils.startProcessingPlugin("thalweg")
provider = QgsApplication.processingRegistry().providerById("thalweg")
print(sys.modules["thalweg"].__file__)
print(sorted(a.id() for a in provider.algorithms()))
qgis.utils.unloadPlugin("thalweg")
print(QgsApplication.processingRegistry().providerById("thalweg") is None)
"""


def test_zip_installs_into_a_fresh_profile_and_loads(built, tmp_path):
    config = tmp_path / "config"
    installed = _build_plugin().install(built, config / "profiles", "default")
    assert installed == config / "profiles" / "default" / "python" / "plugins" / "thalweg"
    assert not installed.is_symlink() and (installed / "service" / "client.py").is_file()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(QGIS_CUSTOM_CONFIG_PATH=str(config), QT_QPA_PLATFORM="offscreen")
    enable = subprocess.run([QGIS_PROCESS, "plugins", "enable", "thalweg"], env=env, capture_output=True, text=True,
                            timeout=300)
    assert enable.returncode == 0, enable.stdout + enable.stderr
    listed = subprocess.run([QGIS_PROCESS, "list"], env=env, capture_output=True, text=True, timeout=300)
    for alg in ("thalweg:extractnetwork", "thalweg:route", "thalweg:calibrate", "thalweg:summarize", "thalweg:report"):
        assert alg in listed.stdout, listed.stdout[-2000:] + listed.stderr[-2000:]
    load = subprocess.run([sys.executable, "-c", LOAD, str(config / "profiles" / "default"), str(installed.parent)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert load.returncode == 0, load.stderr[-3000:]
    path, algorithms, unloaded = load.stdout.strip().splitlines()[-3:]
    assert Path(path).resolve() == (installed / "__init__.py").resolve()
    assert algorithms == str(sorted(["thalweg:extractnetwork", "thalweg:route", "thalweg:calibrate",
                                     "thalweg:summarize", "thalweg:stats", "thalweg:compare", "thalweg:exceedance",
                                     "thalweg:report"]))
    assert unloaded == "True"


def test_dev_install_links_the_checkout(tmp_path):
    build = _build_plugin()
    link = build.dev_install(tmp_path / "profiles", "default")
    assert link.is_symlink() and link.resolve() == (ROOT / "plugin").resolve()
    assert (link / "metadata.txt").read_text() == (ROOT / "metadata.txt").read_text()
    assert build.dev_install(tmp_path / "profiles", "default") == link  # again: replaced, not refused
