"""Global scale: the river forest in pieces (``partition``), time in chunks (``stream``), pieces and chunks on
Dask workers (``distributed``). See docs/scale.md.

Stable API (other modules, and the multi-GPU driver, build on it):

- :func:`basins`, :func:`clusters`: the pieces of a network (independent basins; huge basins cut into clusters
  whose upstream clusters' outflow is transferred);
- :func:`balance`: pieces into bins of equal work (reaches x steps, longest first);
- :func:`merge`: pieces of one stage as one (one routing call for many small basins);
- :func:`stages`: pieces grouped so that every piece's upstream pieces are in an earlier stage;
- :func:`route_piece`: route one piece (its runoff rows, the outflow entering it, its warm state);
- :func:`route_partitioned`: route every piece in stage order and assemble the whole network's discharge.
"""
from __future__ import annotations

from .partition import (Piece, PieceState, balance, basins, clusters, history_length, inflow_of, merge,
                        piece_params, route_partitioned, route_piece, stages, transfer_kind)

__all__ = ["Piece", "PieceState", "balance", "basins", "clusters", "history_length", "inflow_of", "merge",
           "piece_params", "route_partitioned", "route_piece", "stages", "transfer_kind"]
