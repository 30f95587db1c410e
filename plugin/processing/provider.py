"""The ``thalweg`` Processing provider: registration only (each algorithm lives in its own module)."""
from __future__ import annotations

import os

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

ICON = os.path.join(os.path.dirname(os.path.dirname(__file__)), "resources", "icons", "thalweg.svg")


def algorithm_classes() -> list[type]:
    """The algorithm classes, in the toolbox's order."""
    from .calibrate import CalibrateAlgorithm
    from .compare import CompareAlgorithm
    from .exceedance import ExceedanceAlgorithm
    from .extract_network import ExtractNetworkAlgorithm
    from .report import ReportAlgorithm
    from .route import RouteAlgorithm
    from .stats import StatsAlgorithm
    from .summarize import SummarizeAlgorithm

    return [ExtractNetworkAlgorithm, RouteAlgorithm, CalibrateAlgorithm, SummarizeAlgorithm, StatsAlgorithm,
            CompareAlgorithm, ExceedanceAlgorithm, ReportAlgorithm]


class ThalwegProvider(QgsProcessingProvider):
    def id(self) -> str:
        return "thalweg"

    def name(self) -> str:
        return "Thalweg"

    def longName(self) -> str:  # noqa: N802  (QGIS's name)
        return "Thalweg river routing"

    def icon(self) -> QIcon:
        return QIcon(ICON) if os.path.exists(ICON) else QgsProcessingProvider.icon(self)

    def loadAlgorithms(self) -> None:  # noqa: N802  (QGIS's name)
        for cls in algorithm_classes():
            self.addAlgorithm(cls())
