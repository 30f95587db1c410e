"""Errors and warnings of Thalweg.

Every user-facing problem is a :class:`ThalwegError` subclass that carries the facts a person
needs to fix it (``path``, ``field``, ``ids``, ``hint``) both as attributes and in one readable
message. The CLI prints the message, the server returns it as a 422 body, the plugin shows it in
the message bar. Bugs raise ``AssertionError``/``RuntimeError`` instead.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

__all__ = [
    "ThalwegError",
    "InputError",
    "SchemaError",
    "NetworkError",
    "CycleError",
    "DuplicateIdError",
    "GeometryError",
    "UnitError",
    "RunoffError",
    "RunoffMismatchError",
    "MissingValueError",
    "OutputError",
    "Cancelled",
    "count",
    "ThalwegWarning",
    "format_ids",
    "opt",
    "option_names",
    "render_options",
]

# Hints name options in the user's own terms: a reader writes ``opt("read_runoff.units", "mm/h")`` into its
# hint, and the edge that shows the message decides how it reads: ``units='mm/h'`` in Python (the default),
# ``--runoff-units mm/h`` on the command line, a JSON key in the service, a widget in QGIS.
_OPTION = re.compile(r"\{opt:([A-Za-z_][\w.]*)(?:=([^{}]*))?\}")
_OPTION_NAMES: ContextVar[Mapping[str, str] | None] = ContextVar("thalweg_option_names", default=None)
_OPTION_STYLE: ContextVar[str] = ContextVar("thalweg_option_style", default="python")


def opt(keyword: str, example: Any = None) -> str:
    """A placeholder for a library option in a hint.

    Parameters
    ----------
    keyword : ``function.keyword`` of the public function the user called (``read_runoff.units``), or a
        settings key (``route.engine``); the part after the last dot is the Python keyword.
    example : an example value, shown with the option (``units='mm/h'``, ``--runoff-units mm/h``).
    """
    return "{opt:%s}" % keyword if example is None else "{opt:%s=%s}" % (keyword, example)


@contextmanager
def option_names(names: Mapping[str, str], style: str = "cli") -> Iterator[None]:
    """Within the block, hints name options as ``names[keyword]`` (e.g. ``{"read_runoff.units": "--runoff-units"}``).

    ``style`` says how an example value is attached: ``cli`` (``--flag VALUE``), ``json`` (``"key": VALUE``)
    or ``label`` (``Widget: VALUE``). Keywords missing from ``names`` fall back to the Python form.
    """
    if style not in ("cli", "json", "label"):
        raise ValueError(f"style must be 'cli', 'json' or 'label', not {style!r}")
    # nested blocks add to the names of the block around them (a command adds its own options to the CLI's)
    t_names, t_style = _OPTION_NAMES.set({**(_OPTION_NAMES.get() or {}), **names}), _OPTION_STYLE.set(style)
    try:
        yield
    finally:
        _OPTION_NAMES.reset(t_names)
        _OPTION_STYLE.reset(t_style)


def render_options(text: str) -> str:
    """Replace every ``opt()`` placeholder in ``text`` by the option's name where the user is."""
    names, style = _OPTION_NAMES.get() or {}, _OPTION_STYLE.get()

    def one(match: re.Match) -> str:
        keyword, example = match.group(1), match.group(2)
        name = names.get(keyword)
        if name is None:  # Python: the keyword of the function called
            kw = keyword.rsplit(".", 1)[-1]
            return f"{kw}=" if example is None else f"{kw}={_python_literal(example)}"
        if example is None:
            return name
        if style == "cli":
            return f"{name} {example}" if " " not in example else f"{name} '{example}'"
        if style == "json":
            return f'"{name}": {_python_literal(example).replace(chr(39), chr(34))}'
        return f"{name}: {example}"

    return _OPTION.sub(one, text)


def _python_literal(example: str) -> str:
    try:
        float(example)
        return example
    except ValueError:
        return example if example[:1] in "[({'\"" or example in ("True", "False", "None") else repr(example)


def format_ids(ids: Iterable[Any], limit: int = 3) -> str:
    """``[5071, 5093, 6120, 1, 2]`` -> ``'5071, 5093, 6120 and 2 more'``."""
    # sequences and arrays (numpy, torch, pandas) are sliced: 80,000 ids are not listed to show five (2 ms)
    if not (isinstance(ids, (list, tuple, range)) or hasattr(ids, "__array__")):
        ids = list(ids)
    total = len(ids)
    shown = ", ".join(str(_plain(i)) for i in ids[:limit])
    if total > limit:
        shown += f" and {total - limit:,} more"
    return shown


def count(n: int, singular: str, plural: str | None = None) -> str:
    """``count(1, 'reach', 'reaches')`` -> ``'1 reach'``; ``count(1200, 'link')`` -> ``'1,200 links'``."""
    n = int(n)
    return f"{n:,} {singular if n == 1 else (plural or singular + 's')}"


def _plain(value: Any) -> Any:
    # numpy scalars print as np.int64(3) under numpy 2; people want 3
    item = getattr(value, "item", None)
    return item() if callable(item) else value


class ThalwegError(Exception):
    """Base class of every error Thalweg raises on purpose.

    Parameters
    ----------
    message : what is wrong, in one sentence.
    path : the file concerned, if any.
    field : the field (column, variable) concerned, if any.
    ids : the external ids concerned (reach ids, times), if any.
    hint : how to fix it.
    layer : the layer inside ``path``, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        field: str | None = None,
        ids: Sequence[Any] | None = None,
        hint: str | None = None,
        layer: str | None = None,
    ) -> None:
        self.message = message
        self.path = None if path is None else str(path)
        self.field = field
        self.layer = layer
        self.ids = [_plain(i) for i in ids] if ids is not None else []
        self.hint = hint
        super().__init__(str(self))

    def where(self) -> str:
        parts = []
        if self.path:
            parts.append(Path(self.path).name)
        if self.layer:
            parts.append(f"layer '{self.layer}'")
        if self.field:
            parts.append(f"field {self.field}")
        return ", ".join(parts)

    def __str__(self) -> str:
        where = self.where()
        text = f"{where}: {self.message}" if where else self.message
        if self.hint:
            text += f" {self.hint}"
        return render_options(text)

    def to_dict(self) -> dict[str, Any]:
        """The same facts, for a JSON error body."""
        return {
            "error": type(self).__name__,
            "message": str(self),
            "path": self.path,
            "layer": self.layer,
            "field": self.field,
            "ids": self.ids[:100],
            "hint": render_options(self.hint) if self.hint else self.hint,
        }


class InputError(ThalwegError):
    """The user's input cannot be used as it is."""


class SchemaError(InputError):
    """The fields of a layer or file do not match what is needed."""


class NetworkError(InputError):
    """The river network's topology or attributes are wrong."""


class CycleError(NetworkError):
    """Downstream links form a cycle."""


class DuplicateIdError(NetworkError):
    """The same reach id appears more than once."""


class GeometryError(InputError):
    """Geometries are missing, empty or of the wrong type."""


class UnitError(InputError):
    """A unit is missing, unknown or inconsistent."""


class RunoffError(InputError):
    """Runoff input cannot be used."""


class RunoffMismatchError(RunoffError):
    """Runoff reaches do not match the network's reaches."""


class MissingValueError(RunoffError):
    """Runoff holds NaN values."""


class OutputError(ThalwegError):
    """An output cannot be written where asked: the path is a folder or below a file, the folder is read-only,
    the name is too long, the disk is full, it would replace an input or (without overwrite) an existing file."""


class Cancelled(ThalwegError):
    """The run was asked to stop and stopped at a safe point (``stage``: the step it had not started);
    nothing was written. The CLI, the service's workers and the plugin's tasks all raise and catch this one."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        super().__init__(f"cancelled before {stage}.")


class ThalwegWarning(UserWarning):
    """Something odd that Thalweg can survive; the message says what it did and how to silence it."""
