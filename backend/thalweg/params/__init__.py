"""Parameters of routing schemes: priors from reach attributes."""
from .prior import geoglows_muskingum, geoglows_velocity

__all__ = ["geoglows_muskingum", "geoglows_velocity"]
