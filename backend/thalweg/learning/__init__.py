"""Learning on top of routing: gauges and observations, calibration (runoff models come later)."""
from .calibrate import CalibrationResult, calibrate
from .gauges import Gauges, read_gauges

__all__ = ["Gauges", "read_gauges", "calibrate", "CalibrationResult"]
