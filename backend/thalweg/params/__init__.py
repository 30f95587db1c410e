"""Parameters of routing schemes, in one place: priors (``resolve_params``, the GEOGloWS rule) and the checks
on names, values and calibration choices. What each parameter takes is declared once, on the scheme's
:class:`~thalweg.irf.Parameter` objects."""
from .checks import (CALIBRATED_UNITS, CELERITY_RANGE, check_calibrated, check_celerity, check_constant,
                     check_missing, check_names, check_values, default_calibrated, parameter)
from .prior import geoglows_muskingum, geoglows_velocity
from .resolve import resolve_params

__all__ = ["resolve_params", "geoglows_muskingum", "geoglows_velocity", "check_names", "check_missing",
           "check_constant", "check_values", "check_calibrated", "default_calibrated", "parameter",
           "CALIBRATED_UNITS", "CELERITY_RANGE", "check_celerity"]
