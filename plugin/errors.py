"""User-facing errors of the plugin: one class, shown in the message bar with details behind "More info".

A :class:`PluginError` is something the user can fix (a missing backend, a layer with a cycle, a file
that cannot be read); its message is one sentence with the fix. Any other exception is a bug and is
shown as such, with its traceback in the log.
"""
from __future__ import annotations

from typing import Any

__all__ = ["PluginError", "from_client_error", "from_job_error", "LEVEL_INFO", "LEVEL_WARNING", "LEVEL_CRITICAL"]

# the values of Qgis.Info / Qgis.Warning / Qgis.Critical (kept as ints so this module imports without QGIS)
LEVEL_INFO, LEVEL_WARNING, LEVEL_CRITICAL = 0, 1, 2


class PluginError(Exception):
    """A problem the user can fix.

    Parameters
    ----------
    message : one line: what is wrong, where, which ids, and the fix, in the user's terms (widgets, settings).
    details : longer text for "More info" (the backend's output, the full error body).
    level : LEVEL_INFO, LEVEL_WARNING or LEVEL_CRITICAL.
    error : the backend's error class when it came from the backend (``CycleError``, ``SchemaError``, ...).
    ids : offending reach ids (e.g. the reaches of a cycle), as the backend gave them.
    field : the field those ids are values of (e.g. ``LINKNO``), or None.
    layer : the QGIS layer id the error is about, when known (so the panel can select the features).
    """

    def __init__(self, message: str, details: str = "", level: int = LEVEL_CRITICAL, *, error: str | None = None,
                 ids: list[Any] | None = None, field: str | None = None, layer: str | None = None,
                 hint: str | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.message, self.details, self.level = message, details, level
        self.error, self.ids, self.field, self.layer, self.hint, self.body = (
            error, list(ids or []), field, layer, hint, body)

    def __str__(self) -> str:
        return self.message


def from_job_error(error: dict[str, Any], *, layer: str | None = None) -> PluginError:
    """A PluginError from a failed job's ``error`` record (``{"error", "message", "ids", "field", ...}``)."""
    message = str(error.get("message") or error.get("error") or "the job failed")
    hint = error.get("hint")
    if hint and hint not in message:
        message = f"{message} {hint}"
    details = "\n".join(f"{k}: {v}" for k, v in error.items() if k not in ("message", "traceback") and v)
    if error.get("traceback"):
        details += "\n\n" + str(error["traceback"])
    return PluginError(message, details, error=error.get("error"), ids=error.get("ids") or [],
                       field=error.get("field"), layer=layer, hint=hint, body=error)


def from_client_error(exc: Any, *, layer: str | None = None) -> PluginError:
    """A PluginError from ``thalweg.client.ClientError``: the server's one-line message, its body in details."""
    body = exc.body if isinstance(getattr(exc, "body", None), dict) else {}
    if body.get("message"):
        err = from_job_error({**body, "error": body.get("error") or exc.error}, layer=layer)
    else:
        err = PluginError(exc.message, "", error=exc.error, layer=layer)
    if exc.status is None:
        err.message = (f"{exc.message}. Restart the backend from the Thalweg panel, or check its "
                       f"Backend settings.")
    return err
