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

__all__ = ["check_input", "kind_of"]


def kind_of(path: Path) -> str:
    """'file', 'folder', 'missing', or what else the path is ('named pipe (FIFO)', 'character device', ...)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "missing"
    except OSError as exc:  # a broken link loop, a path through a file, no permission on a folder
        return f"unreachable ({exc.strerror or exc})"
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
