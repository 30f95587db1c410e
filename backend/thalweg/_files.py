"""Atomic writes: every writer goes through here, so a failure never leaves half a file, and a run's
outputs appear together or not at all.

``atomic_path`` writes one file (or folder, for a zarr store) under a temporary name and renames it into
place. ``OutputSet`` stages all the outputs of one run under temporary names, then publishes them together
behind a journal: a run killed while publishing is completed by the next run on the same outputs, and a run
killed before publishing leaves only temporary parts, which the next run sweeps.
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = ["HDF5_IO", "atomic_path", "atomic_write_text", "OutputSet", "sweep_parts"]

# The HDF5 library under netCDF4 is not thread-safe, and xarray's own netCDF4 lock does not cover every call a
# lazily opened dataset makes: a streamed run's reader thread (runoff slices) and writer thread (discharge
# chunks) take this lock around their HDF5 reads and writes (a streamed test once failed with "NetCDF: HDF
# error" without it). Re-entrant; the work around the I/O (transposes, unit checks) stays outside.
HDF5_IO = threading.RLock()

_SIDE_FILES = ("-journal", "-wal", "-shm")  # SQLite (GeoPackage) companions of a file being written


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _replace(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` onto ``final``; a folder (zarr store) replaces a folder through a short-lived side name."""
    if tmp.is_dir() and final.is_dir() and not final.is_symlink():
        old = final.with_name(f".{final.stem}.{secrets.token_hex(4)}.old{final.suffix}")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def _temp_name(final: Path, suffix: str | None = None) -> Path:
    suffix = final.suffix if suffix is None else suffix
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=f".part{suffix}", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # writers create the file themselves (some refuse to open an existing one)
    return tmp


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary file keeps the final suffix (drivers such as GDAL pick the format from it). A folder
    written there (a zarr store) replaces a folder at ``path`` as a whole. On any exception the temporary
    file or folder is removed and ``path`` is left as it was.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(final, suffix)
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"writer produced no file at {tmp}")
        _replace(tmp, final)
    finally:
        for leftover in (tmp, *(Path(str(tmp) + side) for side in _SIDE_FILES)):
            _remove(leftover)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def _parts_of(final: Path) -> list[Path]:
    """Temporary parts that Thalweg's writers leave beside ``final`` when killed: ``.STEM.*.part*`` (and the
    parts of a part, ``..STEM.*``), SQLite side files, and ``.STEM.*.old*`` folders of a store swap."""
    folder, stem = final.parent, glob.escape(final.stem)
    found: set[Path] = set()
    for pattern in (f".{stem}.*.part*", f"..{stem}.*.part*", f".{stem}.*.old{glob.escape(final.suffix)}"):
        found.update(Path(p) for p in glob.glob(str(folder / pattern), include_hidden=True))
    return sorted(found)


def sweep_parts(finals: Iterable[str | os.PathLike]) -> list[Path]:
    """Remove the stale temporary parts of these outputs (see :func:`_parts_of`); returns what was removed."""
    removed = []
    for final in finals:
        for part in _parts_of(Path(final)):
            _remove(part)
            removed.append(part)
    return removed


class OutputSet:
    """The outputs of one run, written under temporary names and published together.

    Use ``with OutputSet(folder, name, members) as out:``, write each output to ``out.path(final)`` (a
    temporary name beside ``final``), and leave the block: the staged files are renamed onto their final
    names one after the other behind a journal (``.NAME.publish.json``), so that a run killed while
    publishing is completed by the next run on the same set. If the block fails, nothing is published and
    every staged file is removed. Entering sweeps the stale parts of every possible member (``members``: the
    final paths this kind of run may write) and refuses to run while another process writes the same set.

    Parameters
    ----------
    folder : the output folder.
    name : the set's name (the outputs' common stem).
    members : every final path a run of this kind may write (swept of stale parts on entry).
    """

    def __init__(self, folder: str | os.PathLike, name: str, members: Iterable[str | os.PathLike] = ()) -> None:
        self.folder = Path(folder)
        self.name = name
        self.members = [Path(m) for m in members]
        self.staged: dict[Path, Path] = {}  # final -> temporary
        self._lock = None

    @property
    def journal(self) -> Path:
        return self.folder / f".{self.name}.publish.json"

    def __enter__(self) -> OutputSet:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._acquire()
        self.recover()
        sweep_parts(self.members)
        return self

    def _acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock; two runs on one set must not be started at once
            return
        from .errors import InputError

        lock = open(self.folder / f".{self.name}.lock", "a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise InputError(f"another Thalweg run is writing the outputs '{self.name}' in this folder.",
                             path=self.folder, hint="Wait for it to finish, or write to another name.") from None
        self._lock = lock

    def _release(self) -> None:
        if self._lock is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._lock.name)
            self._lock.close()
            self._lock = None

    def recover(self) -> None:
        """Finish a publication that a killed run started (every staged file still there goes in place)."""
        if not self.journal.exists():
            return
        try:
            pairs = json.loads(self.journal.read_text())
        except (OSError, ValueError):
            pairs = []  # a journal is written atomically; an unreadable one is not Thalweg's: leave the files
        for tmp, final in pairs:
            tmp_path, final_path = self.folder / tmp, self.folder / final
            if tmp_path.exists():
                _replace(tmp_path, final_path)
        self.journal.unlink()

    def path(self, final: str | os.PathLike) -> Path:
        """The temporary path to write ``final`` to (published when the set is)."""
        final = Path(final)
        if final.parent.resolve() != self.folder.resolve():
            raise AssertionError(f"{final} is not in the set's folder {self.folder}")
        if final not in self.staged:
            self.staged[final] = _temp_name(final)
        return self.staged[final]

    def publish(self) -> None:
        missing = [str(f) for f, t in self.staged.items() if not t.exists()]
        if missing:
            raise RuntimeError(f"writers produced no file for {', '.join(missing)}")
        atomic_write_text(self.journal, json.dumps([[t.name, f.name] for f, t in self.staged.items()]))
        for final, tmp in self.staged.items():
            _replace(tmp, final)
        self.journal.unlink()

    def discard(self) -> None:
        for tmp in self.staged.values():
            for leftover in (tmp, *(Path(str(tmp) + side) for side in _SIDE_FILES)):
                _remove(leftover)

    def __exit__(self, kind, value, traceback) -> None:
        try:
            if kind is None:
                self.publish()
            else:
                self.discard()
        finally:
            self._release()
