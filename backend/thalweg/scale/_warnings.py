"""ThalwegWarnings from threads, without touching the process-wide warning filters.

``warnings.catch_warnings()`` saves and restores the filters of the whole process: in a reader thread it hid
(or let through) the warnings the main thread raised at the same time, so a streamed run lost the scheme's
"x lowered on 46 reaches" warning. Here the filters are never changed; a hook on ``warnings.showwarning``
(installed while a block needs it, the one it replaced called for everything else) drops the ThalwegWarnings of
a thread inside :func:`muted` and shows each other ThalwegWarning text once inside :func:`once`.
"""
from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import ThalwegWarning

__all__ = ["muted", "once"]

_lock = threading.RLock()
_local = threading.local()
_users = 0
_previous = None
_seen: list[set[str]] = []  # the texts shown by each open once() block


def _hook(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, ThalwegWarning):
        if getattr(_local, "muted", 0):
            return
        text = str(message)
        with _lock:
            if any(text in seen for seen in _seen):
                return
            for seen in _seen:
                seen.add(text)
    previous = _previous if _previous is not None else warnings._showwarning_orig
    previous(message, category, filename, lineno, file, line)


@contextmanager
def _installed() -> Iterator[None]:
    global _users, _previous
    with _lock:
        if _users == 0 or warnings.showwarning is not _hook:
            if warnings.showwarning is not _hook:
                _previous = warnings.showwarning
            warnings.showwarning = _hook
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0 and warnings.showwarning is _hook:
                warnings.showwarning, _previous = _previous, None


@contextmanager
def muted() -> Iterator[None]:
    """Within the block, this thread's ThalwegWarnings are not shown (the caller says them for the whole);
    other threads' warnings are untouched."""
    with _installed():
        _local.muted = getattr(_local, "muted", 0) + 1
        try:
            yield
        finally:
            _local.muted -= 1


@contextmanager
def once() -> Iterator[None]:
    """Within the block, each ThalwegWarning text is shown once, whichever thread raises it (a streamed run's
    chunks would repeat the first chunk's warnings)."""
    seen: set[str] = set()
    with _installed():
        with _lock:
            _seen.append(seen)
        try:
            yield
        finally:
            with _lock:
                _seen.remove(seen)
