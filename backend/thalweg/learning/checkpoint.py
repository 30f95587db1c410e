"""Checkpoints of a fit: written atomically, read back only by the fit that wrote them.

A checkpoint is a ``torch.save`` file of plain tensors, numbers, strings, lists and dicts (model and optimiser
state, history, best state), read with ``torch.load(weights_only=True)``, which refuses arbitrary pickled objects.
It carries the fit's fingerprint (model, scheme, data, split, loss, optimiser): a checkpoint of another fit is
refused with the list of what differs, never silently resumed.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._files import atomic_path
from ..errors import InputError, opt

__all__ = ["save_checkpoint", "load_checkpoint", "digest", "CHECKPOINT_VERSION"]

CHECKPOINT_VERSION = 1


def digest(value: Any) -> str:
    """A short sha256 of an array, tensor or JSON-like value (for fingerprints)."""
    h = hashlib.sha256()
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        h.update(str((value.dtype.str, value.shape)).encode())
        h.update(np.ascontiguousarray(value).tobytes())
    else:
        h.update(repr(value).encode())
    return h.hexdigest()[:16]


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (with ``fingerprint``) to ``path`` atomically: an interruption leaves the previous one."""
    with atomic_path(path) as tmp:
        torch.save({"version": CHECKPOINT_VERSION, **state}, tmp)
    return Path(path)


def load_checkpoint(path: str | Path, fingerprint: dict[str, str]) -> dict[str, Any] | None:
    """The state saved at ``path`` (None when there is no file), after checking it belongs to this fit."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise InputError(f"cannot read the checkpoint: {exc}.", path=path,
                         hint=f"Delete it to start afresh, or give another {opt('fit.checkpoint', 'fit.ckpt')}.") \
            from None
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise InputError(f"the checkpoint has version {state.get('version') if isinstance(state, dict) else None}; "
                         f"this Thalweg writes version {CHECKPOINT_VERSION}.", path=path,
                         hint="Delete it to start afresh.")
    saved = state.get("fingerprint", {})
    differ = sorted(k for k in set(saved) | set(fingerprint) if saved.get(k) != fingerprint.get(k))
    if differ:
        raise InputError(f"the checkpoint was written by a different fit (differs in: {', '.join(differ)}).",
                         path=path, hint=f"Give the same inputs and settings to resume it, or another "
                                         f"{opt('fit.checkpoint', 'new.ckpt')} to start afresh.")
    return state
