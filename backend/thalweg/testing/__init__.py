"""Public test helpers: assertions on discharge, markers for optional hardware and packages."""
from .assertions import assert_discharge_close, max_relative_error

__all__ = ["assert_discharge_close", "max_relative_error"]
