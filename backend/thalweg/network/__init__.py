"""The river network: a tree of reaches as frozen arrays (see ``model``), built by ``from_arrays``."""
from .build import from_arrays
from .model import RiverNetwork, Source
from .synthetic import scheidegger_network

__all__ = ["RiverNetwork", "Source", "from_arrays", "scheidegger_network"]
