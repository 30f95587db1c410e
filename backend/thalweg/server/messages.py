"""Readable 422 messages from pydantic's validation errors.

pydantic reports every branch of a union and locations such as ``('body', 'route', 'network',
'InlineNetwork', 'length')``; people want ``network.length: has 1 values but ids has 3``. This turns the
error list into one line naming each bad field once, and a clean list for programs.
"""
from __future__ import annotations

import difflib
import functools
import re
from typing import Any

from .. import __version__
from .bodies import JOB_KINDS, PLANNED_KINDS

__all__ = ["readable"]

_MEMBER_PREFIXES = ("list[", "dict[", "function-", "json-or-python[", "lax-", "union[", "tagged-union[",
                    "nullable[", "constrained-", "literal[")
_MEMBERS = {"str", "int", "float", "bool", "none", "datetime", "InlineNetwork", "InlineRunoff", "InlineGauge",
            "RouteJob", "ExtractJob", "CalibrateJob", "PackedArray"}
# error types that only say "this union branch has another type": dropped when a branch says more
_WRONG_TYPE = {"string_type": "a string (a path)", "model_type": "an object", "model_attributes_type": "an object",
               "dict_type": "an object", "list_type": "a list", "float_type": "a number", "int_type": "an integer",
               "none_required": "null", "bool_type": "true or false", "datetime_type": "a date-time",
               "is_instance_of": "an object"}
# model-level validators start their messages with the field they are about: "length: has 1 values ..."
_FIELD_PREFIX = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*): (.+)$", re.S)


def _is_member(part: Any) -> bool:
    return isinstance(part, str) and (part in _MEMBERS or part.startswith(_MEMBER_PREFIXES))


@functools.cache
def _known_keys() -> list[str]:
    from . import bodies

    keys: set[str] = set()
    for model in (bodies.RouteJob, bodies.ExtractJob, bodies.CalibrateJob, bodies.InlineNetwork,
                  bodies.InlineRunoff, bodies.InlineGauge, bodies.PackedArray):
        keys.update(f.alias or name for name, f in model.model_fields.items())
    return sorted(keys)


def _shown(value: Any) -> str | None:
    if isinstance(value, (dict, list, bytes)):
        return None
    text = repr(value)
    return text if len(text) <= 60 else None


def _one(e: dict[str, Any]) -> dict[str, Any]:
    loc = list(e.get("loc") or ())
    where = loc[0] if loc and loc[0] in ("body", "query", "path", "header") else None
    if where:
        loc = loc[1:]
    if where == "body" and loc and loc[0] in JOB_KINDS:
        loc = loc[1:]  # the discriminator's tag
    kind = str(e.get("type", ""))
    ctx = e.get("ctx") or {}
    if kind == "json_invalid":
        return {"field": "body", "type": kind,
                "message": f"not valid JSON at character {loc[0] if loc else '?'} ({ctx.get('error', 'decode error')})"}
    if where == "body" and not loc and isinstance(e.get("input"), (bytes, str)):
        return {"field": "body", "type": "body_type",
                "message": "the body must be a JSON object, sent with 'Content-Type: application/json'"}
    field = ".".join(str(p) for p in loc if not _is_member(p))
    if where == "query":
        field = f"query parameter {field}"
    msg = str(e.get("msg", "invalid")).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind == "union_tag_invalid":
        tag = ctx.get("tag")
        field = "kind"
        if tag in PLANNED_KINDS:
            kinds = [repr(k) for k in JOB_KINDS]
            msg = (f"'{tag}' jobs are not available in Thalweg {__version__}; this version runs "
                   f"{', '.join(kinds[:-1])} and {kinds[-1]} jobs")
        else:
            msg = f"unknown job kind {tag!r}; use one of: {', '.join(JOB_KINDS)}"
    elif kind == "union_tag_not_found":
        field, msg = "kind", f"the body needs 'kind', one of: {', '.join(JOB_KINDS)}"
    elif kind == "extra_forbidden":
        name = str(loc[-1]) if loc else "?"
        close = difflib.get_close_matches(name, _known_keys(), n=1)
        msg = "unknown option" + (f"; did you mean '{close[0]}'?" if close else "")
    elif kind == "value_error" and (m := _FIELD_PREFIX.match(msg)):
        field = f"{field}.{m.group(1)}" if field else m.group(1)
        msg = m.group(2)
    elif kind not in ("missing", "value_error", "assertion_error") and "input" in e:
        shown = _shown(e["input"])
        if shown is not None:
            msg += f" (got {shown})"
    return {"field": field or "body", "message": msg, "type": kind, "input": e.get("input")}


def readable(errors: list[dict[str, Any]], limit: int = 8) -> tuple[str, list[dict[str, Any]]]:
    """(one line naming each bad field, a list of {field, message, type}) from pydantic's errors."""
    items = [_one(e) for e in errors]
    kept = [i for i in items if not (i["type"] in _WRONG_TYPE and any(
        j["type"] not in _WRONG_TYPE and (j["field"] == i["field"] or j["field"].startswith(i["field"] + "."))
        for j in items))]
    merged: dict[str, list[dict[str, Any]]] = {}
    for i in kept:
        merged.setdefault(i["field"], []).append(i)
    parts = []
    for field, found in merged.items():
        if len(found) > 1 and all(i["type"] in _WRONG_TYPE for i in found):
            # every branch of a union refused the value's type: say what would do
            wanted = list(dict.fromkeys(_WRONG_TYPE[i["type"]] for i in found))
            shown = _shown(found[0].get("input"))
            parts.append(f"{field}: expected {' or '.join(wanted)}" + (f" (got {shown})" if shown else ""))
        else:
            parts.append(f"{field}: " + " or ".join(dict.fromkeys(i["message"] for i in found)))
    text = "; ".join(parts[:limit]) + (f"; and {len(parts) - limit} more problems" if len(parts) > limit else "")
    clean = [{k: i[k] for k in ("field", "message", "type")} for i in kept[:100]]
    return text, clean
