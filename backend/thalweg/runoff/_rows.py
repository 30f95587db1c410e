"""Some reaches' rows of a per-reach runoff file, read where they are routed (a Dask worker), judged for the whole.

:meth:`.readers.RunoffChunks.rows` describes the file once (a :class:`ReachRows`: path, variable, dimensions,
unit, catchment areas and the file row of every reach; no numbers). A worker reads its piece's rows of a time
chunk with :meth:`ReachRows.read`: the same slices, unit conversion (:func:`._align.to_m3s`) and checks
(:class:`._align.Aligner`) as :meth:`.readers.RunoffChunks.read`, so the numbers are the client's bit for bit.
What the checks found (NaN, infinite, too large, negative: rows, steps, counts) is not worded on the worker: it
comes back as the aligner's :class:`._align.Findings`, and :meth:`.readers.RunoffChunks.judge` words the findings
of every piece for the whole network (``Aligner.absorb``, then ``finish``), with the messages, ids and counts a
read of the whole chunk gives.
"""
from __future__ import annotations

import dataclasses
import threading
from typing import Any

import numpy as np

from .._files import HDF5_IO
from ..errors import RunoffError
from ._align import Aligner, UnitInfo, routable_limit, to_m3s

__all__ = ["ReachRows"]


@dataclasses.dataclass(eq=False)
class ReachRows:
    """A per-reach runoff file described for reading some reaches' rows elsewhere (module docstring). The file is
    opened at the first read and kept open by this object (a worker holds one for the whole run: one open, and
    its warnings, per worker, not per chunk); a copy by pickle opens its own.

    path : the file or zarr store (the same path on every machine that reads it).
    variable, tdim, rdim : the runoff variable and its time and reach dimensions.
    shape : (file rows, steps) of the variable, to tell that a worker opened the same file.
    info : the unit's conversion to m3/s; area : m2 [file rows] where the unit is a depth, else None.
    column : int64 [N], the file row of each network reach (-1: none, zero runoff with ``missing='zero'``).
    nan : the NaN policy ('error' or 'zero').
    """

    path: str
    variable: str
    tdim: str
    rdim: str
    shape: tuple[int, int]
    info: UnitInfo
    area: np.ndarray | None
    column: np.ndarray
    nan: str

    def __post_init__(self) -> None:
        self._ds, self._lock = None, threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_ds", "_lock")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__post_init__()

    def _variable(self):
        """The runoff variable of the file, opened once; RunoffError where it is not the file described."""
        from .readers import open_lazy

        with self._lock:
            if self._ds is None:
                self._ds = open_lazy(self.path)
            ds = self._ds
        da = ds[self.variable] if self.variable in ds.data_vars else None
        got = None if da is None else (int(da.sizes.get(self.rdim, -1)), int(da.sizes.get(self.tdim, -1)))
        if got != tuple(self.shape):
            here = f"{got[0]:,} reaches x {got[1]:,} steps" if got else "absent"
            raise RunoffError(f"the runoff file read here is not the one described: variable {self.variable} is "
                              f"{here} here, {self.shape[0]:,} x {self.shape[1]:,} there.",
                              path=self.path, field=self.variable,
                              hint="Give every machine that reads it the same file at the same path (a shared "
                                   "file system).")
        return da

    def close(self) -> None:
        with self._lock:
            if self._ds is not None:
                self._ds.close()
                self._ds = None

    def read(self, reaches: np.ndarray, piece_network, a: int, b: int, step: float) -> tuple[np.ndarray, Aligner]:
        """The runoff of ``reaches`` (positions in the whole network; ``piece_network`` is the network of those
        reaches, in that order) for steps a..b-1 of ``step`` seconds: float32 [n, b - a] m3/s, and the aligner
        holding what its checks found (its ``findings``, for the client; nothing is warned or raised here)."""
        from .readers import _block_steps

        reaches = np.asarray(reaches, dtype=np.int64)
        cols = self.column[reaches]
        present = cols >= 0
        n, steps = reaches.size, int(b) - int(a)
        aligner = Aligner(piece_network.ids, piece_network, steps, path=None, field=self.variable,
                                nan=self.nan, missing="error")
        aligner.limit = routable_limit(self.column.size, steps)  # the whole network's bound, as one read judges
        if not present.any() or steps <= 0:
            aligner.put(0, np.zeros((n, max(steps, 0)), np.float32))
            return aligner.out, aligner
        lo, hi = int(cols[present].min()), int(cols[present].max()) + 1
        take = cols[present] - lo
        area = None if self.area is None else self.area[cols[present]]
        ids = piece_network.ids[present]
        da = self._variable()
        time_first = da.dims[0] == self.tdim
        block = _block_steps(da, self.tdim, hi - lo)
        for t0 in range(int(a), int(b), block):
            t1 = min(t0 + block, int(b))
            # the file's own order, a span of its rows, then this piece's rows of it (a gather, then the aligner's
            # one transpose); a dask-backed (zarr) block is computed here, not sent to the cluster
            with HDF5_IO:
                raw = np.asarray(da.isel({self.tdim: slice(t0, t1), self.rdim: slice(lo, hi)})
                                 .compute(scheduler="synchronous").values)
            part = np.take(raw, take, axis=1).T if time_first else np.take(raw, take, axis=0)
            part = to_m3s(part, self.info, step, area, ids=ids, path=None, variable=self.variable)
            if not present.all():  # reaches without a file row: zeros, which no check counts
                full = np.zeros((n, part.shape[1]), dtype=part.dtype)
                full[present] = part
                part = full
            aligner.put(t0 - int(a), part)
        return aligner.out, aligner
