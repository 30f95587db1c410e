"""One typed settings model for the CLI, the server's job bodies and saved runs.

Unknown keys fail with the list of known ones; the resolved settings are saved beside the outputs.
Library functions never read settings: only ``cli``, ``server`` and ``workflow`` do.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from .errors import InputError

__all__ = ["RouteSettings", "CONVENTIONS", "NAN_POLICIES", "AREA_POLICIES"]

CONVENTIONS = ("end", "mean", "both")
NAN_POLICIES = ("error", "zero")
AREA_POLICIES = ("error", "warn", "ignore")


@dataclasses.dataclass
class RouteSettings:
    """Everything a routing run needs.

    Attributes
    ----------
    network : path of the hydrography file (any format/schema ``read_network`` reads).
    runoff : path of the runoff file (``read_runoff``).
    out_dir : folder for the outputs.
    name : stem of the output files (``<name>.nc``, ``<name>.gpkg``, ``<name>_hydrographs.csv``).
    scheme : routing scheme (``thalweg.irf.SCHEMES``).
    params : parameter name -> constant (float, SI) or the name of a network attribute/field (str).
        Parameters not given come from the network (``muskingum_k``/``muskingum_x`` fields) or the GEOGloWS
        prior (travel time = length / velocity(area)).
    engine, device : routing engine and device ('auto', 'cpu', 'cuda').
    convention : 'end' writes river-route ``Q`` (end of step), 'mean' RAPID ``Qout`` (step mean), 'both'.
    schema, fields, layer : override the hydrography schema detection.
    nan : runoff NaN policy ('error' or 'zero').
    missing : reaches of the network absent from the runoff: 'error' or 'zero'.
    catchments : polygon file of reach catchments, for gridded runoff (area weights).
    check_area : drainage area decreasing downstream: 'error', 'warn' or 'ignore'.
    gauges : CSV table of gauges (gauge_id and the reach id they sit on); hydrographs are written there.
    observed : CSV of observed discharge (time column + one column per gauge_id), for metrics and plots.
    write_gpkg : write the GeoPackage summary layer (needs geometries).
    hydrograph_reaches : more reach ids whose hydrographs go to the CSV.
    """

    network: str
    runoff: str
    out_dir: str = "."
    name: str = "discharge"
    scheme: str = "muskingum"
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    engine: str = "auto"
    device: str = "auto"
    convention: str = "end"
    schema: str | None = None
    fields: dict[str, str] | None = None
    layer: str | None = None
    nan: str = "error"
    missing: str = "error"
    catchments: str | None = None
    check_area: str = "error"
    gauges: str | None = None
    observed: str | None = None
    write_gpkg: bool = True
    hydrograph_reaches: list[int] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        from .irf import SCHEMES
        from .routing import ENGINES

        for name, allowed in (("convention", CONVENTIONS), ("nan", NAN_POLICIES), ("missing", NAN_POLICIES),
                              ("check_area", AREA_POLICIES), ("engine", ENGINES), ("scheme", tuple(sorted(SCHEMES)))):
            value = getattr(self, name)
            if value not in allowed:
                raise InputError(f"setting '{name}' is '{value}'.", hint=f"Use one of: {', '.join(allowed)}.")
        for key, value in self.params.items():
            if not isinstance(value, (int, float, str)) or isinstance(value, bool):
                raise InputError(f"parameter '{key}' must be a number or a field name (got {value!r}).")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RouteSettings:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"unknown setting(s) {', '.join(unknown)}.",
                             hint=f"Known settings: {', '.join(sorted(known))}.")
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                   and f.name not in data]
        if missing:
            raise InputError(f"missing setting(s) {', '.join(missing)}.")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def load(cls, path: str | Path) -> RouteSettings:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read settings: {exc}.", path=path) from None
        return cls.from_dict(data)
