"""Which schema and which layer: the detection step of ``read_network`` and ``detect_schema``."""
from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from pathlib import Path

from ..errors import SchemaError, ThalwegError, ThalwegWarning, opt, render_options
from ._schema import CORE_ROLES, SCHEMAS, STANDARD_ATTRS, Schema, SchemaMatch, get_schema, match_columns
from .vector import LayerInfo, describe, format_of, list_layers

__all__ = ["choose", "Choice", "custom_schema"]


@dataclasses.dataclass(frozen=True)
class Choice:
    schema: Schema
    layer: str | None
    info: LayerInfo | None
    match: SchemaMatch


def custom_schema(fields: Mapping[str, str | None]) -> Schema:
    """A schema made only of the fields the user named (units guessed from names or values)."""
    return Schema(name="fields", title="fields named by the user",
                  fields={role: (name,) for role, name in fields.items() if name}, required=("id", "downstream"))


def _by_file_name(path: Path) -> Schema | None:
    for schema in SCHEMAS.values():
        if not schema.file_names:
            continue
        names = {n.lower() for n in schema.file_names}
        if path.name.lower() in names:
            return schema
        if path.is_dir() and any((path / n).exists() for n in schema.file_names):
            return schema
    return None


def _infos(path: Path, layer: str | None) -> list[LayerInfo]:
    if layer is not None or format_of(path) != "ogr":
        return [describe(path, layer)]
    layers = list_layers(path)
    return [describe(path, name) for name in layers] if len(layers) > 1 else [describe(path, None)]


def _pick(matched: list[tuple[LayerInfo, SchemaMatch]], path: Path) -> tuple[LayerInfo, SchemaMatch]:
    if len(matched) == 1:
        return matched[0]
    preferred = [(i, m) for i, m in matched if i.layer and i.layer.lower() in
                 {n.lower() for n in m.schema.layers}]
    if len(preferred) == 1:
        return preferred[0]
    pool = preferred or matched
    lines = [(i, m) for i, m in pool if i.has_lines] or pool
    best = max(m.score for _, m in lines)
    top = [(i, m) for i, m in lines if m.score == best]
    if len(top) == 1:
        return top[0]
    listing = ", ".join(f"'{i.layer}' ({m.name})" for i, m in top)
    raise SchemaError(f"several layers hold a river network: {listing}.", path=path,
                      hint=f"Choose one with {opt('read_network.layer', top[0][0].layer)}.")


def choose(path: Path, *, schema: str | None, fields: Mapping[str, str | None], layer: str | None,
           infos: list[LayerInfo] | None = None) -> Choice:
    """The schema and layer to read; user ``fields`` override detected ones (None removes a role).

    ``infos`` describes a table already in memory (a data frame): no file is looked at.
    """
    known_roles = set(CORE_ROLES) | set(STANDARD_ATTRS)
    for chosen in ([get_schema(schema, path=path, layer=layer)] if schema else SCHEMAS.values()):
        known_roles |= set(chosen.fields)
    unknown = sorted(set(fields) - known_roles)
    if unknown:
        raise SchemaError(f"unknown roles in fields: {', '.join(unknown)}.", path=path, layer=layer,
                          hint=f"Use roles among: {', '.join(sorted(known_roles))}.")

    if schema is not None:
        chosen = get_schema(schema, path=path, layer=layer)
        if chosen.open is not None:
            return Choice(chosen, None, None, SchemaMatch(chosen.name, {}, ("schema given",), None))
        infos = infos or _infos(path, layer)
        pool = [(i, SchemaMatch(chosen.name, chosen.find(i.columns), ("schema given",), i.layer,
                                chosen.score(i.columns))) for i in infos]
        info, match = _pick(pool, path) if len(pool) > 1 else pool[0]
        return Choice(chosen, info.layer, info, match)

    by_name = None if infos else _by_file_name(path)
    if by_name is not None:
        found = {role: by_name.fields[role][0] for role in ("id", "downstream") if by_name.fields.get(role)}
        return Choice(by_name, None, None, SchemaMatch(by_name.name, found, (f"file name {path.name}",), None))

    infos = infos or _infos(path, layer)
    matched, errors = [], []
    for info in infos:
        try:
            found = match_columns(info.columns, path=path, layer=info.layer, quiet=True)
        except ThalwegError as exc:  # ambiguous: remember it, another layer may still be clear
            errors.append(exc)
            continue
        if found is not None:
            matched.append((info, dataclasses.replace(found, layer=info.layer)))
    if matched:
        info, match = _pick(matched, path)
        return Choice(match.schema, info.layer, info, match)
    if errors and not fields.get("id"):
        raise errors[0]

    line_layers = [i for i in infos if i.has_lines]
    info = infos[0] if len(infos) == 1 else (line_layers[0] if len(line_layers) == 1 else None)
    if info is None:
        names = ", ".join(repr(i.layer) for i in infos)
        raise SchemaError(f"no layer matches a known schema, and the file has several layers ({names}).",
                          path=path, hint=f"Choose one with {opt('read_network.layer', infos[0].layer)}, and name the "
                                         f"schema with {opt('read_network.schema')} or the fields with "
                                         f"{opt('read_network.id_field', 'FIELD')} and "
                                         f"{opt('read_network.downstream_field', 'FIELD')}.")
    if fields.get("id") and fields.get("downstream"):
        custom = custom_schema(fields)
        return Choice(custom, info.layer, info, SchemaMatch(custom.name, dict(custom.find(info.columns)),
                                                            ("fields given",), info.layer))
    if fields.get("id") or info.has_lines:
        lines = SCHEMAS["lines"]
        if not fields.get("id"):
            warnings.warn(render_options(f"{path.name}: no known hydrography schema fits the fields "
                          f"({', '.join(info.columns[:10]) or 'none'}); building the topology from the line "
                          f"geometry (each line drains into the line starting at its last vertex). Pass "
                          f"{opt('read_network.schema', 'lines')} to silence this."), ThalwegWarning, stacklevel=4)
        return Choice(lines, info.layer, info, SchemaMatch("lines", {}, ("line geometry",), info.layer))
    match_columns(info.columns, path=path, layer=info.layer)  # raises the no-match SchemaError
    raise AssertionError("match_columns returned without a match or an error")
