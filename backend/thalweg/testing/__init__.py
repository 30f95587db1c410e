"""Public test helpers: assertions on discharge, markers for optional hardware and packages."""
from .assertions import assert_discharge_close, max_relative_error
from .layers import catchment_from_upstream, write_layer

__all__ = ["assert_discharge_close", "max_relative_error", "write_layer", "catchment_from_upstream"]
