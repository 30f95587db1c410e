"""The river network: a tree of reaches as frozen arrays (see ``model``), built by ``from_arrays``; rivers that
split carry their extra links and fractions (``dag``)."""
from .build import from_arrays
from .dag import Splits, softmax_fractions
from .links import Links
from .model import RiverNetwork, Source
from .synthetic import scheidegger_dag, scheidegger_network

__all__ = ["Links", "RiverNetwork", "Source", "Splits", "from_arrays", "scheidegger_dag", "scheidegger_network",
           "softmax_fractions"]
