"""Learning on top of routing: gauges and observations (calibration and runoff models come later)."""
from .gauges import Gauges, read_gauges

__all__ = ["Gauges", "read_gauges"]
