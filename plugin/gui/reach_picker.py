"""The map tool that picks a reach of a Thalweg result layer (for its hydrograph)."""
from __future__ import annotations

from collections.abc import Callable

from qgis.core import QgsVectorLayer, QgsWkbTypes
from qgis.gui import QgsMapToolIdentify, QgsRubberBand
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor

__all__ = ["ReachPicker"]


class ReachPicker(QgsMapToolIdentify):
    """Click a reach: ``reachPicked(layer, reach_id)`` for the topmost result layer under the cursor.

    ``layers`` returns the layers to pick from (the project's visible Thalweg result layers); the picked
    reach is outlined until the next pick or until the tool is deactivated.
    """

    reachPicked = pyqtSignal(object, int)

    def __init__(self, canvas, layers: Callable[[], list[QgsVectorLayer]], field: str = "reach_id") -> None:
        super().__init__(canvas)
        self.layers, self.field = layers, field
        self.setCursor(Qt.PointingHandCursor)
        self.band = QgsRubberBand(canvas, QgsWkbTypes.LineGeometry)
        self.band.setColor(QColor(230, 60, 30, 200))
        self.band.setWidth(4)

    def canvasReleaseEvent(self, event) -> None:  # noqa: N802  (QGIS's name)
        if event.button() != Qt.LeftButton:
            return
        layers = [lyr for lyr in self.layers() if lyr.fields().indexOf(self.field) >= 0]
        if not layers:
            return
        found = self.identify(event.x(), event.y(), layers, QgsMapToolIdentify.TopDownStopAtFirst)
        if not found:
            return
        hit = found[0]
        self.band.setToGeometry(hit.mFeature.geometry(), hit.mLayer)
        self.reachPicked.emit(hit.mLayer, int(hit.mFeature[self.field]))

    def deactivate(self) -> None:
        self.band.reset()
        super().deactivate()

    def unload(self) -> None:
        """Remove the outline from the canvas (the plugin's unload)."""
        self.band.reset()
        scene = self.canvas().scene() if self.canvas() is not None else None
        if scene is not None:
            scene.removeItem(self.band)
