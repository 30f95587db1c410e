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

__all__ = ["RouteSettings", "CalibrateSettings", "CONVENTIONS", "NAN_POLICIES", "AREA_POLICIES", "ZONINGS"]

CONVENTIONS = ("end", "mean", "both")
NAN_POLICIES = ("error", "zero")
AREA_POLICIES = ("error", "warn", "ignore")
ZONINGS = ("gauges", "global")


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
    scheme: str = "muskingum_nonneg"
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


@dataclasses.dataclass
class CalibrateSettings(RouteSettings):
    """A calibration run: the routing settings (the prior and the outputs) plus the optimisation.

    ``gauges`` and ``observed`` are required. Outputs: ``<name>_params.csv``, ``<name>_calibration.json`` and the
    calibrated routing's outputs (as :class:`RouteSettings`; ``<name>.settings.json`` holds these settings).

    Attributes
    ----------
    iterations : most gradient steps (fewer when the loss stops improving).
    learning_rate : Adam step on the log-multipliers.
    zones : 'gauges' (one multiplier per sub-basin between gauges) or 'global' (one for every reach).
    warmup : first runoff steps left out of the loss and metrics.
    calibrate : names of the parameters to calibrate; empty: those in s or m/s (k, tau, lag, celerity).
    """

    iterations: int = 200
    learning_rate: float = 0.05
    zones: str = "gauges"
    warmup: int = 0
    calibrate: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        import math

        super().__post_init__()
        from .irf import get_scheme

        if not self.gauges or not self.observed:
            absent = " and ".join(n for n in ("gauges", "observed") if not getattr(self, n))
            raise InputError(f"calibration needs gauges and observed discharge; setting(s) {absent} missing.",
                             field=absent.split(" ")[0],
                             hint="Give a gauge table (gauge_id, reach id) and a CSV of observed discharge "
                                  "(time + one column per gauge_id).")
        if self.zones not in ZONINGS:
            raise InputError(f"setting 'zones' is '{self.zones}'.", hint=f"Use one of: {', '.join(ZONINGS)}.")
        for name in ("iterations", "warmup"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "iterations" else 0):
                raise InputError(f"setting '{name}' must be a whole number {'>= 1' if name == 'iterations' else '>= 0'}"
                                 f" (got {value!r}).")
        lr = self.learning_rate
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and lr > 0):
            raise InputError(f"setting 'learning_rate' must be a positive number (got {lr!r}).")
        names = get_scheme(self.scheme).parameter_names
        if not isinstance(self.calibrate, list):
            raise InputError(f"setting 'calibrate' must be a list of parameter names (got {self.calibrate!r}).")
        unknown = [n for n in self.calibrate if n not in names]
        if unknown:
            raise InputError(f"setting 'calibrate' names {', '.join(map(str, unknown))}, which the '{self.scheme}' "
                             f"scheme does not have.", field="calibrate",
                             hint=f"Its parameters are: {', '.join(names)}.")
