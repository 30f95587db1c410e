"""Start one process per GPU (or per CPU worker) on this host, torchrun-style, from Thalweg itself.

:func:`launch` runs ``fn(rank_info, payload)`` in ``world_size`` fresh Python processes (``subprocess``, never
``fork``: a CUDA context or OpenMP pool of the caller is not inherited). Each child gets the torchrun variables
(``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``) and :data:`NO_MULTICAST` (NVLink
multicast off: on a shared host it can put GPUs out of service), joins one ``torch.distributed`` process group
(``nccl`` on CUDA, ``gloo`` on the CPU) and pins its GPU (``cuda:LOCAL_RANK``). The payload and the children's
results travel as pickles in a job folder; large arrays go beside them as ``.npy`` files that the children map
(:func:`job_folder` puts it in ``/dev/shm`` when there is room).

When a child fails, the others are stopped (by their process ids), and the parent raises the child's
:class:`~thalweg.errors.ThalwegError` as it was raised (same class, message, path, field, ids, hint), or a
``RuntimeError`` holding the child's traceback for anything else (a bug).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .. import errors as _errors
from ..errors import InputError, ThalwegError, ThalwegWarning, opt

__all__ = ["NO_MULTICAST", "RankInfo", "launch", "resolve_world", "job_folder", "child_environment"]

log = logging.getLogger(__name__)

# set in every process Thalweg starts (the rule: NVLink SHARP / multicast can take a shared host's GPUs down)
NO_MULTICAST = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
_START_TIMEOUT = 600.0  # seconds a process group may take to form (first CUDA/NCCL start on a cold host)


@dataclasses.dataclass(frozen=True)
class RankInfo:
    """What a child knows about itself: ``rank`` of ``world_size``, its torch ``device`` ('cuda:K' or 'cpu'),
    the process group's ``backend`` ('nccl' or 'gloo') and the job ``folder`` (payload, arrays, results)."""

    rank: int
    world_size: int
    device: str
    backend: str
    folder: Path


def resolve_world(world_size: int, device: Any = "auto") -> tuple[str, str, str | None]:
    """(device kind 'cuda' or 'cpu', backend 'nccl' or 'gloo', a note when GPUs were asked for but the CPU is used)
    for ``world_size`` processes on ``device`` ('auto', 'cpu', 'cuda').

    'auto' takes the GPUs when torch sees at least one, and falls back to ``world_size`` CPU processes (gloo)
    when it sees none, saying so in the note; fewer GPUs than processes is an InputError with the count and the
    fix, as is 'cuda' without a GPU or a single 'cuda:K' for several processes.
    """
    import torch

    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise InputError(f"the number of processes must be a whole number >= 1 (got {world_size!r}).",
                         field="gpus", hint=f"E.g. {opt('route.gpus', 2)}.")
    text = "auto" if device is None else str(device)
    if text.startswith("cuda:"):
        raise InputError(f"the device '{text}' is one GPU; {world_size} processes take one GPU each.",
                         field="device", hint=f"Give {opt('route.device', 'cuda')} (GPUs 0..{world_size - 1}; "
                                              f"choose them with CUDA_VISIBLE_DEVICES) or "
                                              f"{opt('route.device', 'cpu')}.")
    if text == "cpu":
        return "cpu", "gloo", None
    if text not in ("auto", "cuda"):
        raise InputError(f"unknown device '{text}'.", field="device",
                         hint=f"Use {opt('route.device', 'auto')}, cuda or cpu.")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        if text == "cuda":
            raise InputError(f"{world_size} GPU(s) were asked for, but torch sees no GPU.", field="gpus",
                             hint=f"Use {opt('route.device', 'cpu')} for {world_size} CPU processes, or install "
                                  "a CUDA build of torch (README: GPU).")
        return "cpu", "gloo", (f"torch sees no GPU: running {world_size} CPU processes (gloo) instead of "
                               f"{world_size} GPU(s)")
    if world_size > count:
        raise InputError(f"{world_size} GPUs were asked for; torch sees {count} on this host.", field="gpus",
                         hint=f"Give {opt('route.gpus', count)} or fewer (CUDA_VISIBLE_DEVICES may hide some), or "
                              f"{opt('route.device', 'cpu')} for CPU processes.")
    return "cuda", "nccl", None


def child_environment(rank: int, world_size: int, port: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of child ``rank``: the caller's, the torchrun variables, :data:`NO_MULTICAST` (forced,
    whatever the caller's environment says), one share of the host's cores for its thread pool, and a PYTHONPATH
    that finds this Thalweg and the caller's modules."""
    env = dict(os.environ if base is None else base)
    # this Thalweg first, then the caller's import path (as multiprocessing's spawn does), so that the function
    # run is found wherever the caller found it
    package_root = str(Path(__file__).resolve().parents[2])  # the folder holding thalweg/
    paths = [package_root] + [p for p in sys.path if p and os.path.isdir(p)] + env.get("PYTHONPATH", "").split(
        os.pathsep)
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p for p in paths if p))
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
               WORLD_SIZE=str(world_size), LOCAL_WORLD_SIZE=str(world_size), GROUP_RANK="0")
    env.update(NO_MULTICAST)
    # every process would otherwise start one thread per core: share the cores instead of fighting over them
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // world_size)))
    return env


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def job_folder(nbytes: int = 0):
    """A fresh folder for one job's payload, arrays and results, removed afterwards: in ``/dev/shm`` (memory, no
    disk traffic) when it has room for ``nbytes`` and half as much again, else the temporary folder
    (``TMPDIR``)."""
    base = None
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        try:
            if shutil.disk_usage(shm).free > 1.5 * nbytes + 2**26:
                base = str(shm)
        except OSError:
            base = None
    folder = Path(tempfile.mkdtemp(prefix="thalweg-gpus-", dir=base))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class _JobPickler(pickle.Pickler):
    """Pickles schemes by name (their kernels are closures): the child takes the same scheme from its registry."""

    def persistent_id(self, obj: Any) -> Any:
        from ..irf.base import Scheme

        if isinstance(obj, Scheme):
            return ("scheme", obj.name)
        return None


class _JobUnpickler(pickle.Unpickler):
    def persistent_load(self, pid: Any) -> Any:
        from ..irf import get_scheme

        kind, name = pid
        if kind != "scheme":
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        return get_scheme(name)


def _error_record(exc: BaseException) -> dict[str, Any]:
    import traceback

    record = {"type": type(exc).__name__, "module": type(exc).__module__, "traceback": traceback.format_exc(),
              "text": str(exc), "time": time.time()}
    if isinstance(exc, ThalwegError):
        record["facts"] = {"message": exc.message, "path": exc.path, "field": exc.field, "ids": exc.ids,
                           "hint": exc.hint, "layer": exc.layer}
    return record


def _raise_child_error(rank: int, record: dict[str, Any]) -> None:
    facts = record.get("facts")
    cls = getattr(_errors, record["type"], None) if record["module"] == _errors.__name__ else None
    if facts is not None and isinstance(cls, type) and issubclass(cls, ThalwegError):
        raise cls(facts["message"], path=facts["path"], field=facts["field"], ids=facts["ids"] or None,
                  hint=facts["hint"], layer=facts["layer"])
    raise RuntimeError(f"process {rank} failed with {record['type']}: {record['text']}\n"
                       f"--- its traceback ---\n{record['traceback']}")


def launch(fn: Callable[[RankInfo, Any], Any], payload: Any, world_size: int, *, device: Any = "auto",
           folder: Path | None = None, timeout: float | None = None) -> list[Any]:
    """Run ``fn(info, payload)`` in ``world_size`` processes joined in one process group; their return values,
    by rank.

    Parameters
    ----------
    fn : a module-level function (pickled by reference; the children import its module).
    payload : anything picklable, the same for every rank (large arrays: ``.npy`` files in ``folder``).
    world_size : processes, one per GPU on CUDA.
    device : 'auto', 'cuda' or 'cpu' (:func:`resolve_world`).
    folder : the job folder (:func:`job_folder`); default: a fresh temporary one.
    timeout : seconds the whole job may take (default: no limit); past it the children are stopped.

    Raises
    ------
    InputError : too many GPUs asked for (:func:`resolve_world`); a child's ThalwegError, as raised there.
    RuntimeError : a child failed otherwise (its traceback in the message), or the job timed out.
    """
    kind, backend, note = resolve_world(world_size, device)
    if note:
        warnings.warn(note + ".", ThalwegWarning, stacklevel=2)
    if folder is None:
        with job_folder() as tmp:
            return launch(fn, payload, world_size, device=kind, folder=tmp, timeout=timeout)
    folder = Path(folder)
    with open(folder / "job.pkl", "wb") as f:
        _JobPickler(f, protocol=5).dump({"fn": fn, "payload": payload, "kind": kind, "backend": backend})
    port = _free_port()
    procs: list[subprocess.Popen] = []
    started = time.monotonic()
    try:
        for rank in range(world_size):
            log.debug("starting process %d of %d (%s, %s)", rank, world_size, kind, backend)
            procs.append(subprocess.Popen([sys.executable, "-m", "thalweg.distributed._child", str(folder)],
                                          env=child_environment(rank, world_size, port)))
        failed: int | None = None
        while True:
            codes = [p.poll() for p in procs]
            bad = [r for r, c in enumerate(codes) if c not in (None, 0)]
            if bad:
                failed = bad[0]
                break
            if all(c == 0 for c in codes):
                break
            if timeout is not None and time.monotonic() - started > timeout:
                raise RuntimeError(f"the {world_size} processes did not finish in {timeout:g} s; stopped.")
            time.sleep(0.02)
        if failed is not None:
            time.sleep(0.5)  # the failures a first one causes in the others land meanwhile
            _stop(procs)
            records = {}
            for rank in range(world_size):
                path = folder / f"error-{rank}.pkl"
                if path.exists():
                    with open(path, "rb") as f:
                        records[rank] = pickle.load(f)
            if records:  # the first error raised is the cause; the others' (a peer gone) follow from it
                first = min(records, key=lambda r: (records[r]["time"], r))
                _raise_child_error(first, records[first])
            raise RuntimeError(f"process {failed} of {world_size} exited with code {procs[failed].returncode} "
                               f"before reporting (killed, or out of memory?).")
        results = []
        for rank in range(world_size):
            with open(folder / f"result-{rank}.pkl", "rb") as f:
                results.append(pickle.load(f))
        return results
    finally:
        _stop(procs)


def _stop(procs: list[subprocess.Popen]) -> None:
    """Stop the children still running (ours, by process id): terminate, then kill after a grace period."""
    alive = [p for p in procs if p.poll() is None]
    for p in alive:
        p.terminate()
    deadline = time.monotonic() + 5.0
    for p in alive:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def child_main(folder: str) -> int:
    """A child's life: read the job, join the process group, run ``fn``, write its result (or its error)."""
    import torch
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    os.environ.update(NO_MULTICAST)  # before any NCCL or NVSHMEM start, whatever launched this process
    path = Path(folder)
    try:
        with open(path / "job.pkl", "rb") as f:
            job = _JobUnpickler(f).load()
        device = "cpu"
        if job["kind"] == "cuda":
            local = int(os.environ.get("LOCAL_RANK", rank))
            torch.cuda.set_device(local)
            device = f"cuda:{local}"
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        from datetime import timedelta

        kwargs = {"device_id": torch.device(device)} if job["kind"] == "cuda" else {}
        dist.init_process_group(job["backend"], init_method="env://", rank=rank, world_size=world,
                                timeout=timedelta(seconds=_START_TIMEOUT), **kwargs)
        try:
            info = RankInfo(rank=rank, world_size=world, device=device, backend=job["backend"], folder=path)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ThalwegWarning)  # the parent gave the run's warnings once
                result = job["fn"](info, job["payload"])
            dist.barrier()
        except BaseException as exc:
            # on file before the process group goes: the others' failures that follow come later
            _write_error(path, rank, exc)
            raise
        finally:
            dist.destroy_process_group()
        tmp = path / f".result-{rank}.pkl"
        with open(tmp, "wb") as f:
            pickle.dump(result, f, protocol=5)
        os.replace(tmp, path / f"result-{rank}.pkl")
        return 0
    except BaseException as exc:  # a child's one edge: everything goes back to the parent
        if not (path / f"error-{rank}.pkl").exists():
            _write_error(path, rank, exc)
        return 1


def _write_error(folder: Path, rank: int, exc: BaseException) -> None:
    tmp = folder / f".error-{rank}.pkl"
    with open(tmp, "wb") as f:
        pickle.dump(_error_record(exc), f)
    os.replace(tmp, folder / f"error-{rank}.pkl")
