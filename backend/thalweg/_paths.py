"""The checks every reader makes on an input path before opening it.

A path must exist and be a regular file (or, where the format allows it, a folder). FIFOs, sockets and
devices are refused: reading ``/dev/zero`` or a named pipe never ends, and would hang a service's job lane
or grow memory without limit. A symbolic link is judged by its target.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from .errors import InputError

__all__ = ["check_input", "kind_of", "kind_of_mode", "sniff", "describe_content"]


def kind_of(path: Path) -> str:
    """'file', 'folder', 'missing', or what else the path is ('named pipe (FIFO)', 'character device', ...)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "missing"
    except OSError as exc:  # a broken link loop, a path through a file, no permission on a folder
        return f"unreachable ({exc.strerror or exc})"
    return kind_of_mode(mode)


def kind_of_mode(mode: int) -> str:
    """What an ``os.stat`` mode is: 'file', 'folder', 'named pipe (FIFO)', 'character device', ..."""
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISFIFO(mode):
        return "named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "special file"


def check_input(path: str | os.PathLike, *, what: str = "input file", error: type[InputError] = InputError,
                folder: bool = False, hint: str | None = None, **where: Any) -> Path:
    """``path`` as a Path, or ``error`` saying why it cannot be read.

    Parameters
    ----------
    what : what the path should be, for the message ('runoff file', 'catchment layer').
    folder : whether a folder is acceptable (RAPID input folders, folders of GeoTIFFs, FileGDB).
    where : further ``field=`` / ``layer=`` for the error.
    """
    p = Path(path)
    kind = kind_of(p)
    if kind == "file" or (kind == "folder" and folder):
        if kind == "file" and not os.access(p, os.R_OK):
            raise error(f"the {what} cannot be read (no read permission).", path=p,
                        hint="Give read permission on it (chmod u+r), or copy it somewhere readable.", **where)
        return p
    if kind == "missing":
        raise error(f"the {what} does not exist.", path=p,
                    hint=hint or f"Check the path (looked in {p.parent.resolve()}).", **where)
    if kind == "folder":
        raise error(f"the {what} is a folder, not a file.", path=p,
                    hint=hint or "Give the file inside it.", **where)
    if kind.startswith("unreachable"):
        raise error(f"the {what} cannot be reached: {kind[len('unreachable ('):-1]}.", path=p,
                    hint="Check the path and the permissions of the folders above it.", **where)
    target = f" (it points to {os.path.realpath(p)})" if p.is_symlink() else ""
    raise error(f"the {what} is a {kind}{target}, not a regular file; reading it could block or never end.",
                path=p, hint="Copy the data into a regular file and give that path.", **where)


def sniff(path: Path) -> str:
    """What the first bytes of a file say it is: 'netcdf' (classic), 'hdf5' (NetCDF-4), 'sqlite' (GeoPackage),
    'empty', 'text', or 'binary'."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError:
        return "binary"
    if not head:
        return "empty"
    if head[:3] == b"CDF" and head[3:4] in (b"\x01", b"\x02", b"\x05"):
        return "netcdf"
    if head[:8] == b"\x89HDF\r\n\x1a\n":
        return "hdf5"
    if head[:16] == b"SQLite format 3\x00":
        return "sqlite"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[:4] == b"PAR1":
        return "parquet"
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 13))
    try:
        head[:-4].decode("utf-8")  # the last bytes may cut a character in two
    except UnicodeDecodeError:
        return "binary"
    return "text" if controls == 0 else "binary"


def describe_content(path: Path) -> str:
    kind = sniff(path)
    if kind == "empty":
        return "empty (0 bytes)"
    if kind == "text":
        with open(path, "rb") as fh:
            first = fh.readline(80).decode("utf-8", "replace").strip()
        return f"a text file starting '{first}'"
    return {"sqlite": "an SQLite database (a GeoPackage?)", "tiff": "a TIFF image (a GeoTIFF?)",
            "parquet": "a parquet table", "netcdf": "a NetCDF file", "hdf5": "an HDF5 (NetCDF-4) file"}.get(
        kind, "binary data of an unknown format")
