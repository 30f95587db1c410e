"""Every setting of the plugin, in one place: key, type, default and meaning.

Global settings live in QgsSettings under ``thalweg/``; per-project choices of the panel (layers, scheme,
...) are the GUI's and live in the project (``QgsProject.writeEntry``) under :data:`PROJECT_SCOPE`.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

__all__ = ["Settings", "PREFIX", "PROJECT_SCOPE", "default_workspace"]

PREFIX = "thalweg/"
PROJECT_SCOPE = "thalweg"
ENV_PYTHON = "THALWEG_BACKEND_PYTHON"  # the backend's Python when no backend is set in QgsSettings


def default_workspace() -> str:
    """``<QGIS settings folder>/thalweg/workspace``: jobs and the backend's connection file."""
    from qgis.core import QgsApplication

    return str(Path(QgsApplication.qgisSettingsDirPath()) / "thalweg" / "workspace")


@dataclasses.dataclass
class Settings:
    """The backend connection and job polling.

    Attributes
    ----------
    backend_python : the Python interpreter of the Thalweg backend (``<checkout>/.venv/bin/python``); the
        plugin starts ``<python> -m thalweg.server``. Empty: use ``backend_command``, else ``$THALWEG_BACKEND_PYTHON``,
        else ``thalweg`` on PATH. Also editable in QGIS's Settings > Options > Advanced (``thalweg/backend_python``).
    backend_command : the ``thalweg`` executable (``thalweg serve`` is started); used when no Python is set.
    backend_url : the URL of a backend you started yourself (``thalweg serve``); nothing is started then,
        and the token is read from ``connection_file``.
    connection_file : the connection file of that backend (default ``<workspace>/connection.json``).
    workspace : the backend's folder for jobs and results (default :func:`default_workspace`).
    pythonpath : PYTHONPATH given to the backend, for a development checkout (``<checkout>/backend``);
        QGIS's own PYTHONPATH is never passed on.
    start_timeout : seconds to wait for the backend's READY line (the first start imports torch).
    poll_interval : seconds between two polls of a running job.
    request_timeout : seconds allowed for one request (polls are short: a stuck backend is noticed).
    """

    backend_python: str = ""
    backend_command: str = ""
    backend_url: str = ""
    connection_file: str = ""
    workspace: str = ""
    pythonpath: str = ""
    start_timeout: float = 180.0
    poll_interval: float = 0.2
    request_timeout: float = 10.0

    @classmethod
    def load(cls) -> Settings:
        """The settings saved in QgsSettings (defaults for keys never saved)."""
        from qgis.core import QgsSettings

        qs = QgsSettings()
        values = {}
        for f in dataclasses.fields(cls):
            default = f.default
            raw = qs.value(PREFIX + f.name, default)
            try:
                values[f.name] = type(default)(raw) if raw is not None else default
            except (TypeError, ValueError):
                values[f.name] = default
        if not values["backend_python"] and not values["backend_command"] and not values["backend_url"]:
            values["backend_python"] = os.environ.get(ENV_PYTHON, "")  # headless runs (qgis_process, CI)
        return cls(**values)

    def save(self) -> None:
        from qgis.core import QgsSettings

        qs = QgsSettings()
        for f in dataclasses.fields(self):
            qs.setValue(PREFIX + f.name, getattr(self, f.name))

    @property
    def resolved_workspace(self) -> str:
        return os.path.expanduser(self.workspace) if self.workspace else default_workspace()

    @property
    def resolved_connection_file(self) -> str:
        if self.connection_file:
            return os.path.expanduser(self.connection_file)
        return str(Path(self.resolved_workspace) / "connection.json")
