"""ThalwegPlugin: the object QGIS holds. initProcessing registers the provider (also under qgis_process, where
there is no iface); initGui adds the GUI; unload undoes both, step by step, and stops the backend."""
from __future__ import annotations

from qgis.core import QgsApplication


class ThalwegPlugin:
    def __init__(self, iface) -> None:
        self.iface = iface
        self.provider = None
        self._quit_connected = False
        self.gui = None  # plugin/gui: panel, hydrograph dock, reach picker, expression function

    # ---- Processing (qgis_process calls only this) ----
    def initProcessing(self) -> None:  # noqa: N802  (QGIS's name)
        from .processing.provider import ThalwegProvider

        if self.provider is None:
            self.provider = ThalwegProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    # ---- GUI ----
    def initGui(self) -> None:  # noqa: N802  (QGIS's name)
        self.initProcessing()
        from .service.process import stop_shared

        QgsApplication.instance().aboutToQuit.connect(stop_shared)  # QGIS's exit stops the backend
        self._quit_connected = True
        from .gui import Gui

        self.gui = Gui(self.iface)

    def unload(self) -> None:
        from .service.process import stop_shared

        if self.gui is not None:
            self.gui.unload()
            self.gui = None
        if self._quit_connected:
            try:
                QgsApplication.instance().aboutToQuit.disconnect(stop_shared)
            except (TypeError, RuntimeError):
                pass
            self._quit_connected = False
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
        stop_shared()
