"""The expression function behind the animated discharge map: ``thalweg_frame(@layer_id, @map_start_time)``.

A result layer holds one feature per reach; the map's colour comes from
``array_get(thalweg_frame(@layer_id, @map_start_time), $id)``: the discharge of every reach at the frame's
time, as an array indexed by feature id, looked up per feature in C++. The function is *static* for a
render (its arguments are variables, the same for every feature), so QGIS evaluates it once per render and
symbol, not once per feature: a Python call per feature costs about 25 us, 2.5 s per frame of 100,000 reaches.

Frames come from a :class:`FrameSource` registered for the layer (:func:`register_layer`, on the main
thread: it reads the layer's feature ids once). Render threads only read the registry; a frame is fetched
once (one snapshot, not the whole series) and the last few are kept.
"""
from __future__ import annotations

import collections
import threading
from typing import Any

import numpy as np
from qgis.core import QgsExpression, QgsExpressionFunction, QgsExpressionNode

__all__ = ["FUNCTION_NAME", "FrameSource", "register_function", "unregister_function", "register_layer",
           "unregister_layer", "registered_layers", "frame_for", "step_at", "clear", "source_of", "errors_of",
           "missing_of", "cached_steps"]

FUNCTION_NAME = "thalweg_frame"
CACHE_FRAMES = 12  # frames kept per layer: a few steps back and forth while scrubbing the time slider


class FrameSource:
    """Where the frames of one result come from.

    Attributes
    ----------
    ids : array [R] int64, the reach id of each row of a frame.
    times : array [T] float64, seconds since 1970-01-01 UTC, the END of each step (the instant of Q[t]).
    """

    ids: np.ndarray
    times: np.ndarray

    def frame(self, step: int) -> np.ndarray:
        """Discharge of every row at the end of ``step`` (array [R] float64, m3/s, NaN where missing)."""
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__


def step_at(times: np.ndarray, seconds: float) -> int | None:
    """The step whose end is nearest to ``seconds`` (epoch s), or None outside the steps (half a step of slack)."""
    n = times.size
    if n == 0:
        return None
    half = 0.5 * (float(times[1] - times[0]) if n > 1 else 1.0)
    if seconds < times[0] - half or seconds > times[-1] + half:
        return None
    i = int(np.searchsorted(times, seconds))
    if i >= n:
        return n - 1
    if i > 0 and seconds - times[i - 1] <= times[i] - seconds:
        return i - 1
    return i


class _LayerFrames:
    """A source and the layer's feature ids: frames reordered into arrays indexed by feature id.

    ``still`` is what the map shows without a time (the temporal controller off): the reaches' mean
    discharge, by feature id. The source's row order is matched to the features at the first frame (in a
    render thread: a source may need a request to know it), not at registration.
    """

    def __init__(self, source: FrameSource, fids: np.ndarray, reach_ids: np.ndarray,
                 still: np.ndarray | None = None) -> None:
        self.source = source
        self.size = int(fids.max()) + 1 if fids.size else 0
        self._fids_all, self._reach_ids = fids.astype(np.int64), reach_ids.astype(np.int64)
        self.fids: np.ndarray | None = None
        self.rows: np.ndarray | None = None
        self.missing = 0
        self.still = _as_list(self._by_fid(self._fids_all, still)) if still is not None else None
        self.lock = threading.Lock()
        self.cache: collections.OrderedDict[int, list] = collections.OrderedDict()
        self.pending: dict[int, threading.Event] = {}
        self.errors: list[str] = []

    def _by_fid(self, fids: np.ndarray, values: np.ndarray) -> np.ndarray:
        out = np.full(self.size, np.nan)
        out[fids] = values
        return out

    def _match(self) -> None:
        if self.rows is not None:
            return
        ids = np.asarray(self.source.ids, dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        pos = np.searchsorted(ids[order], self._reach_ids)
        pos = np.clip(pos, 0, max(ids.size - 1, 0))
        found = ids[order][pos] == self._reach_ids if ids.size else np.zeros(self._reach_ids.size, bool)
        self.fids, self.rows = self._fids_all[found], order[pos][found]
        self.missing = int((~found).sum())

    def values(self, step: int, ahead: bool = True) -> list | None:
        """The frame of ``step`` as a list indexed by feature id (None where a feature has no value); with
        ``ahead``, the next step is then fetched in the background."""
        while True:
            with self.lock:
                if step in self.cache:
                    self.cache.move_to_end(step)
                    return self.cache[step]
                event = self.pending.get(step)
                if event is None:  # this thread fetches; parallel renders of the same frame wait for it
                    event = self.pending[step] = threading.Event()
                    break
            event.wait(120)
            with self.lock:
                if step not in self.cache and step not in self.pending:
                    return None  # the fetch failed (recorded in errors)
        try:
            frame = np.asarray(self.source.frame(step), dtype=np.float64)
            with self.lock:
                self._match()
            values = _as_list(self._by_fid(self.fids, frame[self.rows]))
        except Exception as exc:  # noqa: BLE001  (a render thread must not raise; the map shows no value)
            values = None
            with self.lock:
                self.errors.append(f"{self.source.describe()}: step {step}: {type(exc).__name__}: {exc}")
                del self.errors[:-20]
        with self.lock:
            self.pending.pop(step).set()
            if values is not None:
                self.cache[step] = values
                while len(self.cache) > CACHE_FRAMES:
                    self.cache.popitem(last=False)
            nxt = step + 1
            prefetch = (ahead and values is not None and nxt < self.source.times.size and nxt not in self.cache
                        and nxt not in self.pending)
        if prefetch:  # the animation's next frame, fetched while this one is drawn
            threading.Thread(target=self.values, args=(nxt, False), daemon=True,
                             name=f"thalweg-frame-{nxt}").start()
        return values


def _as_list(values: np.ndarray) -> list:
    """A float array as a list with None (QGIS's NULL) where it is not finite."""
    out = values.tolist()
    for i in np.flatnonzero(~np.isfinite(values)):
        out[i] = None
    return out


_registry: dict[str, _LayerFrames] = {}
_registry_lock = threading.Lock()


def register_layer(layer, source: FrameSource, field: str = "reach_id", still_field: str | None = "mean", *,
                   fids: np.ndarray | None = None, reach_ids: np.ndarray | None = None,
                   still: np.ndarray | None = None) -> None:
    """Serve ``layer``'s frames from ``source`` (main thread).

    The layer's feature ids, reach ids (``field``) and still values (``still_field``: shown without a time)
    are read here unless given (``fids``, ``reach_ids``, ``still``: arrays [F] from one pass the caller made).
    """
    if fids is None or reach_ids is None:
        from qgis.core import QgsFeatureRequest

        names = [field] + ([still_field] if still_field and layer.fields().indexOf(still_field) >= 0 else [])
        index = [layer.fields().indexOf(n) for n in names]
        if index[0] < 0:
            raise AssertionError(f"layer {layer.name()} has no field {field!r}")
        request = QgsFeatureRequest().setFlags(QgsFeatureRequest.NoGeometry).setSubsetOfAttributes(index)
        rows = [(f.id(), *(f.attribute(i) for i in index)) for f in layer.dataProvider().getFeatures(request)]
        fids = np.array([r[0] for r in rows], dtype=np.int64)
        reach_ids = np.array([r[1] for r in rows], dtype=np.int64)
        if len(index) > 1:
            still = np.array([r[2] if isinstance(r[2], (int, float)) else np.nan for r in rows], dtype=np.float64)
    entry = _LayerFrames(source, np.asarray(fids), np.asarray(reach_ids), still)
    with _registry_lock:
        _registry[layer.id()] = entry


def cached_steps(layer_id: str) -> list[int]:
    """Steps whose frames are in memory for the layer (oldest first)."""
    with _registry_lock:
        entry = _registry.get(layer_id)
    if entry is None:
        return []
    with entry.lock:
        return list(entry.cache)


def missing_of(layer_id: str) -> int:
    """Features of the layer without a row in its source (known after the first frame)."""
    with _registry_lock:
        entry = _registry.get(layer_id)
    return entry.missing if entry is not None else 0


def unregister_layer(layer_id: str) -> None:
    with _registry_lock:
        _registry.pop(layer_id, None)


def registered_layers() -> list[str]:
    with _registry_lock:
        return list(_registry)


def source_of(layer_id: str) -> FrameSource | None:
    with _registry_lock:
        entry = _registry.get(layer_id)
    return entry.source if entry is not None else None


def errors_of(layer_id: str) -> list[str]:
    with _registry_lock:
        entry = _registry.get(layer_id)
    return list(entry.errors) if entry is not None else []


def clear() -> None:
    with _registry_lock:
        _registry.clear()


def _seconds(value: Any) -> float | None:
    """Epoch seconds of a QDateTime (or a Python datetime); None for NULL."""
    if value is None:
        return None
    if hasattr(value, "toMSecsSinceEpoch"):
        if hasattr(value, "isValid") and not value.isValid():
            return None
        return value.toMSecsSinceEpoch() / 1000.0
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    return None


def frame_for(layer_id: str, when: Any) -> list | None:
    """The frame of ``layer_id`` at ``when`` (QDateTime), indexed by feature id; without a time (NULL) the
    still values (mean discharge); None outside the run or for a layer not registered."""
    if not layer_id:
        return None
    with _registry_lock:
        entry = _registry.get(str(layer_id))
    if entry is None:
        return None
    seconds = _seconds(when)
    if seconds is None:
        return entry.still
    step = step_at(entry.source.times, seconds)
    return None if step is None else entry.values(step)


def _static_argument(node, parent, context) -> bool:
    """A literal, or a variable (@layer_id, @map_start_time): the same for every feature of a render."""
    if node.isStatic(parent, context):
        return True
    if node.nodeType() == QgsExpressionNode.ntFunction:
        function = QgsExpression.Functions()[node.fnIndex()]
        if function.name() == "var":
            args = node.args().list() if node.args() is not None else []
            return bool(args) and args[0].isStatic(parent, context)
    return False


class FrameFunction(QgsExpressionFunction):
    """``thalweg_frame(layer_id, time)``: the discharge [m3/s] of every reach of a Thalweg result layer at the
    step nearest ``time``, as an array indexed by feature id (``array_get(..., $id)``); the mean discharge
    without a time (the temporal controller off); NULL outside the run."""

    HELP = ("<h3>thalweg_frame(layer_id, time)</h3><p>Discharge [m³/s] of every reach of a Thalweg result layer "
            "at the routing step nearest to <i>time</i>, as an array indexed by feature id. Use "
            "<code>array_get(thalweg_frame(@layer_id, @map_start_time), $id)</code> in a style to animate the "
            "layer with the temporal controller. Without a time (temporal navigation off) the reaches' mean "
            "discharge; NULL outside the routed period.</p>")

    def __init__(self) -> None:
        super().__init__(FUNCTION_NAME, 2, "Thalweg", self.HELP)

    def func(self, values, context, parent, node):  # noqa: D102  (QGIS's signature)
        layer_id, when = values
        try:
            return frame_for(str(layer_id) if layer_id is not None else "", when)
        except Exception as exc:  # noqa: BLE001  (an exception here would end the render thread's Python)
            parent.setEvalErrorString(f"thalweg_frame: {type(exc).__name__}: {exc}")
            return None

    def handlesNull(self) -> bool:  # noqa: N802  (QGIS's name)
        return True

    def usesGeometry(self, node) -> bool:  # noqa: N802
        return False

    def referencedColumns(self, node):  # noqa: N802
        # none: the default (all attributes) makes every render fetch and parse every field of every feature
        return set()

    def isStatic(self, node, parent, context) -> bool:  # noqa: N802
        # once per render, not per feature: the arguments are variables that are the same for every feature
        args = node.args().list() if node.args() is not None else []
        return all(_static_argument(a, parent, context) for a in args)


_function: FrameFunction | None = None


def register_function() -> bool:
    """Register ``thalweg_frame`` with QGIS's expression engine (once); True when it is registered."""
    global _function
    if _function is None:
        function = FrameFunction()
        if not QgsExpression.registerFunction(function):
            return QgsExpression.isFunctionName(FUNCTION_NAME)
        _function = function  # QGIS does not own Python functions: keep the object alive
    return True


def unregister_function() -> None:
    """Unregister ``thalweg_frame`` and forget every layer's frames (the plugin's unload)."""
    global _function
    if _function is not None:
        QgsExpression.unregisterFunction(FUNCTION_NAME)
        _function = None
    clear()
