"""Streaming in time: route a runoff file larger than memory chunk by chunk, writing the discharge as it goes.

One pass: a reader thread reads chunk k+1 (``runoff.readers.RunoffChunks``: the same values as one read) while
chunk k is routed with the exact warm state of chunk k-1 and a writer thread writes chunk k-1
(``results.writers.DischargeAppender``: the layout of the one-shot writers). On a GPU the reader copies each
chunk to the device from pinned memory on its own CUDA stream and the result comes back on another, so copies,
compute and disk overlap; on the CPU the same threads overlap reading, routing and writing.

A run keeps a checkpoint beside its outputs (``.NAME.stream/``): the partial discharge files, the warm state
after a chunk written and a journal, every ``CHECKPOINT_SECONDS`` of wall time and after the last chunk (the
state of every reach is large: saving it after each chunk cost more than routing it on a GPU). The journal is
written last, after the chunk's discharge and state, so ``--resume`` continues from the last checkpointed chunk
(the chunks after it are routed and written again), and the result equals an uninterrupted
run bit for bit on the same machine and thread count (the state is stored exactly; a rewritten chunk writes the
same values). The finished files are published together with the rest of the outputs (``_files.OutputSet``), so
a failed run never leaves a half file under the final name.

Where the pieces are routed: in this process (``route`` of the whole network), in threads over basin partitions
(``partition.route_partitioned``), or on Dask workers (``distributed.DaskRouter``, whose workers read a runoff
file's chunks themselves: the router's ``chunk_source`` gives what the reader thread reads, times only).
"""
from __future__ import annotations

import contextvars
import dataclasses
import hashlib
import json
import logging
import os
import queue
import shutil
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import physical_memory as _physical_memory  # a module name here: tests set the machine's size
from ..errors import Cancelled, InputError, ThalwegWarning, opt
from ..routing._inputs import Labels
from ._warnings import once

__all__ = ["STREAM_MODES", "LocalRouter", "PartitionRouter", "StreamResult", "chunk_steps_for", "stream_route",
           "streamable", "budget_bytes"]

log = logging.getLogger(__name__)

STREAM_MODES = ("auto", "always", "never")
_PER_STEP_FACTOR = 10.0  # float32 chunk arrays budgeted: six in flight (being read, read, routed in and out, to
# write, being written), the rest for the engine's temporaries and the file libraries' buffers
_FIXED = 300 * 2**20
# wall seconds between a stream's checkpoints: the state of every reach (24 bytes each: 163 MB for 6.8 M reaches),
# saved and synced, took 0.3 s a chunk on the H200 host, 13x the routing of a simulated year; an interrupted run
# redoes at most this much (0: a checkpoint after every chunk)
CHECKPOINT_SECONDS = 30.0
_JOURNAL = "journal.json"
_STATE = "state.pt"


def budget_bytes(memory_gb: float | None, *, gpu: bool = False) -> int | None:
    """The memory budget: ``memory_gb`` (``--memory``), else ``config.DEFAULT_MEMORY_FRACTION`` of the physical
    memory, or the memory available now when that is less (None when neither is known). A run on a GPU keeps the
    memory available (its chunks are bounded by the device, and every chunk costs launches: fewer is faster)."""
    if memory_gb is not None:
        return int(memory_gb * 1e9)
    from ..config import DEFAULT_MEMORY_FRACTION
    from ..workflow import _available_memory

    if gpu:
        return _available_memory()
    physical = _physical_memory()
    known = [m for m in (_available_memory(), physical and int(DEFAULT_MEMORY_FRACTION * physical)) if m]
    return min(known) if known else None


def routes_on_gpu(device: Any) -> bool:
    """Whether ``device`` (a device setting; None and 'auto' included) routes on a GPU."""
    if device is None or device == "auto":
        return torch.cuda.is_available()
    return torch.device(device).type == "cuda" and torch.cuda.is_available()


def chunk_steps_for(n_reaches: int, n_steps: int, budget: int | None, *, minimum: int = 1) -> int:
    """Steps per chunk that keep the streamed run within ``budget`` bytes (all steps when it fits or is unknown)."""
    if budget is None:
        return int(n_steps)
    per_step = 4.0 * max(n_reaches, 1) * _PER_STEP_FACTOR
    state = 3 * 8 * n_reaches * 2
    fixed = min(_FIXED, 20 * 4 * n_reaches)  # the workflow's estimate's fixed part, for one step
    room = budget - fixed - state
    if room < per_step * minimum:
        gib = 2.0**30
        raise InputError(f"the memory budget ({budget / gib:,.2f} GiB) cannot hold even one step of "
                         f"{n_reaches:,} reaches while streaming (about {(per_step + fixed + state) / gib:,.2f} GiB).",
                         hint=f"Raise {opt('route.memory', 8)}, or route on a machine with more memory.")
    return int(max(minimum, min(n_steps, room // per_step)))


def streamable(path: Any) -> bool:
    """Whether a runoff input can be streamed: a NetCDF file or a zarr store (a per-reach variable)."""
    p = Path(str(path))
    return p.suffix.lower() in (".nc", ".nc4", ".netcdf", ".zarr") or (p.is_dir() and (
        (p / ".zgroup").exists() or (p / "zarr.json").exists()))


# ---- routers: what routes one chunk, keeping the warm state between chunks ----------------------------
class LocalRouter:
    """The whole network through :func:`thalweg.route` in this process (CPU threads or one GPU): a
    :class:`thalweg.routing.PreparedRoute` (``prepared``, made by :meth:`prepare` or the first chunk) routes
    every chunk, with the parameters checked and the coefficients computed once."""

    def __init__(self, network, params, scheme, *, dt: float, engine: str = "auto", device: Any = None,
                 dtype: torch.dtype = torch.float32, kernel_length: int | None = None) -> None:
        from .partition import history_length

        self.network, self.params, self.scheme, self.dt = network, params, scheme, float(dt)
        self.engine, self.device, self.dtype = engine, device, dtype
        self.kernel_length = kernel_length if kernel_length is not None else \
            history_length(network, params, scheme, dt, engine=engine)
        self.state = None
        self.prepared = None

    def prepare(self, device: Any = None) -> None:
        """Check and convert the parameters and report the reaches the scheme adjusts, once for the whole stream
        (the first chunk does it otherwise), with the recursion coefficients where the engine runs a recursion."""
        from ..routing import PreparedRoute

        if self.prepared is None:
            self.prepared = PreparedRoute(self.network, self.params, self.scheme, dt=self.dt, engine=self.engine,
                                           device=self.device if self.device is not None else device,
                                           dtype=self.dtype, kernel_length=self.kernel_length)

    def __call__(self, values: Any) -> Any:
        self.prepare(values.device if isinstance(values, torch.Tensor) else None)
        q, self.state = self.prepared(values, self.state, return_state=True)
        return q

    def get_state(self) -> Any:
        return self.state

    def set_state(self, state: Any) -> None:
        self.state = state


class PartitionRouter:
    """Basin partitions (:mod:`.partition`) routed in a thread pool, one state per merged piece."""

    def __init__(self, network, params, scheme, *, dt: float, pieces=None, n_bins: int | None = None,
                 engine: str = "auto", device: Any = None, dtype: torch.dtype = torch.float32,
                 kernel_length: int | None = None) -> None:
        from concurrent.futures import ThreadPoolExecutor

        from .partition import basins, history_length

        self.network, self.params, self.scheme, self.dt = network, params, scheme, float(dt)
        self.pieces = basins(network) if pieces is None else pieces
        self.n_bins = n_bins or max(1, torch.get_num_threads())
        self.engine, self.device, self.dtype = engine, device, dtype
        self.kernel_length = kernel_length if kernel_length is not None else \
            history_length(network, params, scheme, dt, engine=engine)
        self.pool = ThreadPoolExecutor(self.n_bins)
        self.state = None

    def __call__(self, values: Any) -> Any:
        from .partition import route_partitioned

        arr = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else values
        q, self.state = route_partitioned(self.network, self.pieces, arr, self.params, self.scheme, dt=self.dt,
                                          n_bins=self.n_bins, states=self.state, return_state=True,
                                          map=self.pool.map, engine=self.engine, dtype=self.dtype,
                                          device=self.device, kernel_length=self.kernel_length)
        return q

    def get_state(self) -> Any:
        return self.state

    def set_state(self, state: Any) -> None:
        self.state = state


# ---- the checkpoint ------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Checkpoint:
    folder: Path
    key: str
    parts: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # what the key is a digest of

    @property
    def journal(self) -> Path:
        return self.folder / _JOURNAL

    def done(self) -> int:
        """Steps completed by the run that left this checkpoint (0 without one, or one of another run)."""
        try:
            data = json.loads(self.journal.read_text())
        except (OSError, ValueError):
            return 0
        return int(data["done"]) if data.get("key") == self.key else -1

    def differences(self) -> list[str]:
        """What differs between the run that left this checkpoint and this one (``name X != Y``, the
        checkpoint's value first); empty when the checkpoint does not say (written by an older version)."""
        try:
            theirs = json.loads(self.journal.read_text()).get("parts") or {}
        except (OSError, ValueError, AttributeError):
            return []
        ours = json.loads(json.dumps(dict(self.parts), sort_keys=True, default=str))
        return [f"{name} {theirs.get(name)!r} != {ours.get(name)!r}".replace("'", "")
                for name in sorted(set(theirs) | set(ours)) if theirs.get(name) != ours.get(name)]

    def load_state(self) -> tuple[Any, np.ndarray | None]:
        blob = torch.load(self.folder / _STATE, weights_only=False)
        return blob["state"], blob["last"]

    def commit(self, done: int, state: Any, last: np.ndarray | None) -> None:
        tmp = self.folder / f".{_STATE}.tmp"
        torch.save({"state": _cpu_state(state), "last": last}, tmp)
        _fsync(tmp)
        os.replace(tmp, self.folder / _STATE)
        text = json.dumps({"key": self.key, "done": int(done), "parts": dict(self.parts)}, default=str)
        tmp = self.folder / f".{_JOURNAL}.tmp"
        tmp.write_text(text)
        _fsync(tmp)
        os.replace(tmp, self.journal)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _cpu_state(state: Any) -> Any:
    if state is None:
        return None
    if hasattr(state, "to") and hasattr(state, "tensors"):
        return state.to("cpu")
    if isinstance(state, dict):
        return {k: _cpu_state(v) for k, v in state.items()}
    if dataclasses.is_dataclass(state) and hasattr(state, "routing"):
        return dataclasses.replace(state, routing=_cpu_state(state.routing))
    return state


def run_key(parts: Mapping[str, Any]) -> str:
    """A digest of what decides a streamed run's values (a resumed run must be the same run)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


@dataclasses.dataclass
class StreamResult:
    """What :func:`stream_route` did: the files written (final name -> partial path until published), steps,
    chunks, where it resumed, timings (read, route, write: busy seconds of each thread; wall) and ``finished``:
    (first step, end step, seconds since the call) of each chunk when it was done (written, and checkpointed
    where ``CHECKPOINT_SECONDS`` had passed; without outputs, routed: on a GPU its kernels launched, unless
    ``progress`` waits for them)."""

    files: dict[str, Path]
    n_reaches: int
    n_steps: int
    dt: float
    chunk_steps: int
    resumed_at: int
    timings: dict[str, float]
    checkpoint: Path
    start: np.ndarray | None = None  # datetime64: the start of the first step
    finished: list[tuple[int, int, float]] = dataclasses.field(default_factory=list)

    @property
    def simulated_per_second(self) -> float:
        return self.n_steps * self.dt / max(self.timings.get("wall", 0.0), 1e-9)


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _pinned(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).pin_memory()


def stream_route(network, runoff: Any, params: Mapping[str, Any], scheme: str = "muskingum_nonneg", *,
                 outputs: Mapping[str, tuple[Path, str, str]], checkpoint: str | Path, chunk_steps: int | None = None,
                 memory: float | None = None, resume: bool = False, key: Mapping[str, Any] | None = None,
                 router: Any = None, engine: str = "auto", device: Any = None, dtype: torch.dtype = torch.float32,
                 id_names: Mapping[str, str] | None = None, lat=None, lon=None, compression: int = 1,
                 attrs: Mapping[str, Any] | None = None, reading: Mapping[str, Any] | None = None,
                 progress: Callable[[float, str], None] | None = None,
                 should_stop: Callable[[], bool] | None = None, at: Any = None,
                 checkpoint_every: float | None = None) -> StreamResult:
    """Route ``runoff`` (a NetCDF file or zarr store of per-reach runoff, or a chunk source: ``RunoffChunks`` or
    any object with ``n_steps``, ``dt`` and ``read(a, b) -> Runoff``, e.g. runoff generated on the fly) chunk by
    chunk.

    Parameters
    ----------
    outputs : kind -> (final path, format, convention) of the discharge files (``results.outputs.output_paths``);
        they are written inside ``checkpoint`` and returned for the caller to publish.
    checkpoint : the checkpoint folder (``.NAME.stream`` beside the outputs); removed by the caller once published.
    chunk_steps : steps per chunk (default: what ``memory`` GB, else the memory available, holds).
    resume : continue the run that left ``checkpoint`` (the same ``key``); without it a checkpoint is replaced.
    key : what decides the values (settings); a checkpoint of another run is refused on ``resume``.
    router : what routes a chunk (default :class:`LocalRouter`: the whole network in this process).
    reading : ``read_runoff`` keywords. progress : ``progress(fraction, message)``, the message giving the
    simulated time routed per second of wall time. should_stop : polled between chunks (raises Cancelled).
    at : reach ids whose discharge is written (``results.outputs.discharge_reaches``: a global run's outlets),
        taken from each routed chunk where it was routed (on the GPU: only they come back to the host); None:
        every reach. ``lat`` and ``lon`` are then those reaches'. The whole network is routed either way.
    checkpoint_every : wall seconds between checkpoints (default ``CHECKPOINT_SECONDS``; 0: after every chunk); the
        last chunk is always checkpointed. ``resume`` continues from the last checkpoint, writing the chunks after
        it again (the same values).
    """
    from ..results.discharge import Discharge, check_unique_ids
    from ..results.writers import DischargeAppender
    from ..runoff.readers import RunoffChunks, open_runoff_chunks

    from ..irf import get_scheme
    from ..routing.engines import resolve

    report = progress or (lambda fraction, message: None)
    t_wall = time.perf_counter()
    attrs = {"scheme": get_scheme(scheme).name, "engine": resolve(getattr(router, "engine", engine)),
             **dict(attrs or {})}
    given = isinstance(runoff, RunoffChunks) or (hasattr(runoff, "read") and hasattr(runoff, "n_steps"))
    source = runoff if given else open_runoff_chunks(runoff, network, **dict(reading or {}))
    try:
        n, steps, dt = network.n_reaches, source.n_steps, float(source.dt)
        if chunk_steps is None or chunk_steps <= 0:
            where = getattr(router, "device", device) if router is not None else device
            chunk_steps = chunk_steps_for(n, steps, budget_bytes(memory, gpu=routes_on_gpu(where)))
            on_disk = getattr(source, "time_chunk", None)  # whole on-disk chunks: each is read once, by one read
            if on_disk and chunk_steps > on_disk:
                chunk_steps -= chunk_steps % on_disk
        chunk_steps = int(min(chunk_steps, steps))
        folder = Path(checkpoint)
        rows = None
        if at is not None:
            check_unique_ids(at, "reach ids of the discharge written (at)")
            rows = network.index_of(at, what="reach ids of the discharge written (at)")
        parts = {**dict(key or {}), "chunk_steps": chunk_steps, "n_steps": steps, "n_reaches": n, "dt": dt}
        if rows is not None:  # the reaches written decide the files (a digest: a global run has 10^5 outlets)
            parts["written_reaches"] = hashlib.sha256(np.ascontiguousarray(rows, np.int64).tobytes()).hexdigest()[:16]
        ck = _Checkpoint(folder, run_key(parts), parts)
        partial = {kind: folder / path.name for kind, (path, _, _) in outputs.items()}
        done = ck.done() if resume else 0
        if resume and done < 0:
            differ = ck.differences()
            what = f" ({'; '.join(differ)}; the checkpoint's value first)" if differ else \
                " (other settings, inputs or chunking)"
            raise InputError(f"the checkpoint {folder.resolve()} is of another run{what}, so it cannot be resumed.",
                             path=folder,
                             hint=f"Give the settings of the interrupted run, or run again without "
                                  f"{opt('route.resume')} to start over (it replaces the checkpoint).")
        if not resume or done <= 0:
            done = 0
            shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        if router is None:
            router = LocalRouter(network, params, scheme, dt=dt, engine=engine, device=device, dtype=dtype)
        # a router whose workers read the runoff themselves gives the source the reader thread reads through
        chunks = router.chunk_source(source) if hasattr(router, "chunk_source") else source
        attrs["engine"] = resolve(getattr(router, "engine", engine))
        writers = {kind: DischargeAppender(partial[kind], fmt, conv, id_name=(id_names or {}).get(kind, "riverId"),
                                           lat=lat, lon=lon, compression=compression)
                   for kind, (_, fmt, conv) in outputs.items()}
        last = None
        if done:
            state, last = ck.load_state()
            router.set_state(state)
            for w in writers.values():
                w.truncate(done)
            when = getattr(source, "time", None)
            when = f" ({str(np.asarray(when)[done - 1])[:16]})" if when is not None and len(when) >= done else ""
            warnings.warn(f"resuming at step {done:,} of {steps:,}{when}: the checkpoint {folder.resolve()} "
                          f"holds the steps before.", ThalwegWarning, stacklevel=1)
        bounds = [(a, min(a + chunk_steps, steps)) for a in range(done, steps, chunk_steps)]
        on_gpu = False
        if isinstance(router, LocalRouter):
            from ..routing import resolve_device

            dev = resolve_device(router.device)
            on_gpu = dev.type == "cuda"  # else the CPU path: the same threads, plain arrays
        busy = {"read": 0.0, "route": 0.0, "write": 0.0}
        row_index: dict = {}  # device -> the rows written, as a tensor there
        finished: list[tuple[int, int, float]] = []
        # one chunk waits in each queue: the reader reads chunk k+1 while k is routed and k-1 written (the memory in
        # flight: the chunk being read, one read, the one routed and its discharge, one routed, the one written)
        read_q: queue.Queue = queue.Queue(maxsize=1)
        write_q: queue.Queue = queue.Queue(maxsize=1)
        stop = threading.Event()
        copy_stream = torch.cuda.Stream(dev) if on_gpu else None
        back_stream = torch.cuda.Stream(dev) if on_gpu else None

        def reader() -> None:
            try:
                for a, b in bounds:
                    if stop.is_set():
                        return
                    t0 = time.perf_counter()
                    chunk = chunks.read(a, b)  # a chunk's repeated warnings are shown once (once() below)
                    values: Any = chunk.values
                    event = None
                    if on_gpu and not (isinstance(values, torch.Tensor) and values.is_cuda):
                        # pinned host memory -> device on the copy stream, overlapping the compute
                        host = _pinned(values)
                        with torch.cuda.stream(copy_stream):
                            values = host.to(dev, non_blocking=True)
                            event = torch.cuda.Event()
                            event.record(copy_stream)
                    busy["read"] += time.perf_counter() - t0
                    read_q.put((a, b, chunk, values, event))
                    chunk = values = None  # not held here: its array is reused once routed
                read_q.put(None)
            except BaseException as exc:  # handed to the main thread
                read_q.put(_Failed(exc))

        every = CHECKPOINT_SECONDS if checkpoint_every is None else float(checkpoint_every)
        committed = [time.perf_counter()]

        def writer() -> None:
            try:
                while True:
                    item = write_q.get()
                    if item is None:
                        return
                    a, b, chunk, q, event, state, initial = item
                    t0 = time.perf_counter()
                    if event is not None:
                        event.synchronize()
                    values = q.numpy() if isinstance(q, torch.Tensor) else np.asarray(q)
                    d = Discharge.from_routing(values, chunk, attrs)
                    for w in writers.values():
                        w.write(a, d, initial)
                    if b == steps or time.perf_counter() - committed[0] >= every:
                        ck.commit(b, state, d.values[:, -1].copy())
                        committed[0] = time.perf_counter()
                    finished.append((a, b, time.perf_counter() - t_wall))
                    item = q = values = d = None  # not held while waiting for the next chunk
                    busy["write"] += time.perf_counter() - t0
            except BaseException as exc:
                errors.append(exc)
                stop.set()
                while write_q.get() is not None:  # let the main thread finish putting
                    pass

        errors: list[BaseException] = []
        # each thread in a copy of this context: the caller's option names (the CLI's flags in the reader's warnings)
        threads = [threading.Thread(target=contextvars.copy_context().run, args=(reader,), name="thalweg-reader",
                                    daemon=True),
                   threading.Thread(target=contextvars.copy_context().run, args=(writer,), name="thalweg-writer",
                                    daemon=True)]
        routed = done
        t_start = time.perf_counter()
        # every chunk (read in the reader thread, routed here) would repeat the first one's warnings: each text is
        # shown once, without changing the process-wide filters while the threads run (thread-safe)
        shown_once = once()
        shown_once.__enter__()
        for t in threads:
            t.start()
        try:
            if isinstance(router, LocalRouter):  # parameters and coefficients while the first chunk is read
                with torch.no_grad():
                    router.prepare(dev)
            while True:
                item = read_q.get()
                if item is None:
                    break
                if isinstance(item, _Failed):
                    raise item.exc
                if errors:
                    raise errors[0]
                if should_stop is not None and should_stop():
                    raise Cancelled("routing")
                a, b, chunk, values, event = item
                t0 = time.perf_counter()
                with torch.no_grad():
                    if event is not None:
                        torch.cuda.current_stream(dev).wait_event(event)
                        values.record_stream(torch.cuda.current_stream(dev))  # made on the copy stream
                    q = _rows(router(values), rows, row_index)
                    back = end = None
                    if not writers:  # nothing to write: no copy to the host, no discharge, no checkpoint
                        pass
                    elif on_gpu and isinstance(q, torch.Tensor) and q.is_cuda:  # device -> pinned host, own stream
                        end = q[..., -1].cpu().numpy()
                        host = torch.empty(q.shape, dtype=q.dtype, pin_memory=True)
                        back_stream.wait_stream(torch.cuda.current_stream(dev))
                        q.record_stream(back_stream)  # not reused before the copy is done
                        with torch.cuda.stream(back_stream):
                            host.copy_(q, non_blocking=True)
                            back = torch.cuda.Event()
                            back.record(back_stream)
                        q = host
                    else:
                        q = q.detach().cpu().numpy() if isinstance(q, torch.Tensor) else np.asarray(q)
                        end = q[..., -1].copy()
                state = router.get_state()
                # the runoff is not held any longer: not while the discharge waits to be written, nor while the next
                # chunk is awaited (the writer needs the chunk's reach ids and times only)
                written = np.asarray(chunk.ids) if rows is None else np.asarray(chunk.ids)[rows]
                chunk = Labels(written, np.asarray(chunk.time), chunk.dt, getattr(chunk, "source", None))
                item = values = None
                if not writers and b == steps and on_gpu:
                    torch.cuda.synchronize(dev)  # the last chunk's routing done (nothing else waits for it)
                busy["route"] += time.perf_counter() - t0
                if writers:
                    write_q.put((a, b, chunk, q, back, state, last))
                    q = None
                last = end
                routed = b
                elapsed = max(time.perf_counter() - t_start, 1e-9)
                rate = (routed - done) * dt / elapsed
                report(routed / steps, f"routed to {str(chunk.time[-1])[:16]} ({_rate(rate)})")
                if not writers:
                    finished.append((a, b, time.perf_counter() - t_wall))
        finally:
            stop.set()
            write_q.put(None)
            threads[1].join()
            while threads[0].is_alive():  # unblock a reader waiting on a full queue
                try:
                    read_q.get_nowait()
                except queue.Empty:
                    pass
                threads[0].join(0.05)
            shown_once.__exit__(None, None, None)
        if errors:
            raise errors[0]
        timings = {**busy, "wall": time.perf_counter() - t_wall}
        return StreamResult(files={kind: partial[kind] for kind in outputs}, n_reaches=n, n_steps=steps, dt=dt,
                            chunk_steps=chunk_steps, resumed_at=done, timings=timings, checkpoint=folder,
                            start=np.asarray(source.time[0]) if getattr(source, "time", None) is not None else None,
                            finished=finished)
    finally:
        if not given:
            source.close()


def _rows(q: Any, rows: np.ndarray | None, on: dict) -> Any:
    """The routed chunk's rows ``rows`` (reaches on the second-last axis; a tensor stays on its device, where
    ``on`` keeps the index from chunk to chunk)."""
    if rows is None:
        return q
    if isinstance(q, torch.Tensor):
        if q.device not in on:
            on[q.device] = torch.as_tensor(rows, device=q.device)
        return q.index_select(-2, on[q.device])
    return np.take(np.asarray(q), rows, axis=-2)


def _rate(seconds_per_second: float) -> str:
    """Simulated time per wall-clock second, in the unit that reads best."""
    for unit, size in (("years", 365.25 * 86400), ("days", 86400.0), ("h", 3600.0)):
        if seconds_per_second >= size:
            return f"{seconds_per_second / size:,.1f} simulated {unit}/s"
    return f"{seconds_per_second:,.0f} simulated s/s"
