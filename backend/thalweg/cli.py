"""The ``thalweg`` command: parse arguments -> settings -> call the library.

Errors exit non-zero with one readable line (``--debug`` shows the traceback); ThalwegWarnings print as
one ``warning:`` line each.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from . import __version__
from .config import AREA_POLICIES, CONVENTIONS, NAN_POLICIES, ZONINGS, CalibrateSettings, RouteSettings
from .errors import InputError, ThalwegError, ThalwegWarning

__all__ = ["main", "build_parser"]


def _field_overrides(args: argparse.Namespace) -> dict[str, str] | None:
    fields = {role: getattr(args, f"{role}_field") for role in ("id", "downstream", "length", "area")
              if getattr(args, f"{role}_field", None)}
    return fields or None


def _add_network_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("network reading")
    g.add_argument("--schema", help="hydrography schema (default: detected), e.g. geoglows, hydrorivers, merit")
    g.add_argument("--layer", help="layer of a multi-layer file (GeoPackage)")
    g.add_argument("--id-field", help="field holding reach ids (overrides detection)")
    g.add_argument("--downstream-field", help="field holding downstream reach ids")
    g.add_argument("--length-field", help="field holding reach lengths")
    g.add_argument("--area-field", help="field holding upstream drainage areas")
    g.add_argument("--check-area", choices=AREA_POLICIES, default="error",
                   help="drainage area decreasing downstream: error (default), warn or ignore")


def _param(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"'{text}' is not NAME=VALUE (a number, or a field name)")
    name, value = text.split("=", 1)
    try:
        return name.strip(), float(value)
    except ValueError:
        return name.strip(), value.strip()


def _add_route_arguments(p: argparse.ArgumentParser, *, calibrating: bool) -> None:
    """Arguments shared by ``route`` and ``calibrate`` (for calibrate, the parameters given are the prior)."""
    p.add_argument("network", help="hydrography file")
    p.add_argument("runoff", help="runoff file (RAPID m3_riv, river-route catchment_runoff, CSV/parquet)")
    p.add_argument("-o", "--output", required=True, help="output NetCDF path (OUT.nc); extras go beside it")
    from .irf import SCHEMES

    p.add_argument("--scheme", default="muskingum_nonneg", choices=sorted(SCHEMES), help="routing scheme")
    p.add_argument("--k", type=float, help="Muskingum K for every reach, s")
    p.add_argument("--x", type=float, help="Muskingum x for every reach")
    p.add_argument("--k-field", help="network field holding Muskingum K [s]")
    p.add_argument("--x-field", help="network field holding Muskingum x")
    p.add_argument("--param", type=_param, action="append", default=[], metavar="NAME=VALUE",
                   help="any scheme parameter as a constant (SI) or a field name; repeatable")
    p.add_argument("--convention", choices=CONVENTIONS, default="end",
                   help="end: river-route Q at step ends (default); mean: RAPID Qout step means; both")
    from .routing import ENGINES

    p.add_argument("--engine", default="auto", choices=ENGINES,
                   help="routing engine: exact (each reach's filter in topological order), closure (DiffRoute's "
                        "transitive closure), fft (portable torch), auto (the fastest for the device; default)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (GPU when there is one)")
    p.add_argument("--nan", choices=NAN_POLICIES, default="error", help="runoff NaN policy")
    p.add_argument("--missing", choices=NAN_POLICIES, default="error",
                   help="network reaches absent from the runoff: error (default) or zero")
    p.add_argument("--catchments", help="catchment polygons (id field = reach id) for gridded runoff")
    p.add_argument("--gauges", required=calibrating,
                   help="CSV of gauges (gauge_id, reach id): hydrographs are written there"
                        + (" and parameters are fitted to them" if calibrating else ""))
    p.add_argument("--observed", required=calibrating,
                   help="CSV of observed discharge (time at the end of each step + one column per gauge_id)")
    p.add_argument("--hydrograph", type=int, action="append", default=[], metavar="REACH_ID",
                   help="also write this reach's hydrograph to the CSV; repeatable")
    p.add_argument("--no-gpkg", action="store_true", help="do not write the GeoPackage summary layer")
    _add_network_options(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thalweg", description="River routing on GPU or CPU (DiffRoute method).")
    parser.add_argument("--version", action="version", version=f"thalweg {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info lines")
    # the same switches after the command; SUPPRESS keeps a value given before the command
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = sub.add_parser("info", parents=[common],
                          help="describe a river network file: schema, fields, size, problems")
    info.add_argument("network", help="hydrography file (GeoPackage, Shapefile, parquet, GeoJSON, CSV, NetCDF)")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    _add_network_options(info)

    rt = sub.add_parser("route", parents=[common],
                        help="route runoff through a network and write discharge")
    _add_route_arguments(rt, calibrating=False)

    cal = sub.add_parser("calibrate", parents=[common],
                         help="fit travel-time parameters to observed discharge, then route with them")
    _add_route_arguments(cal, calibrating=True)
    g = cal.add_argument_group("calibration")
    g.add_argument("--iterations", type=int, default=200, help="most gradient steps (default 200; fewer when the "
                                                                "loss stops improving)")
    g.add_argument("--learning-rate", type=float, default=0.05, help="Adam step on the log-multipliers "
                                                                     "(default 0.05)")
    g.add_argument("--zones", choices=ZONINGS, default="gauges",
                   help="gauges: one multiplier per sub-basin between gauges (default); global: one for all reaches")
    g.add_argument("--warmup", type=int, default=0, metavar="STEPS",
                   help="first runoff steps left out of the loss and metrics (default 0)")
    g.add_argument("--calibrate", action="append", default=[], metavar="PARAM",
                   help="a parameter to calibrate; repeatable (default: those in s or m/s: k, tau, lag, celerity)")

    demo = sub.add_parser("demo", parents=[common],
                          help="route the bundled sample basin and draw maps and hydrographs")
    demo.add_argument("--out", default="thalweg-demo", help="output folder (default: ./thalweg-demo)")
    demo.add_argument("--device", default="auto", help="cpu, cuda or auto")

    sub.add_parser("schemes", parents=[common], help="list routing schemes and their parameters")

    serve = sub.add_parser("serve", parents=[common],
                           help="run the local job service for the QGIS plugin and scripts")
    from .server import add_serve_arguments

    add_serve_arguments(serve)
    return parser


class _Progress:
    """A tqdm bar over 0..1 (silent when quiet or not a terminal)."""

    def __init__(self, quiet: bool) -> None:
        self.bar = None
        if not quiet:
            from tqdm import tqdm

            self.bar = tqdm(total=1000, bar_format="{l_bar}{bar}| {elapsed}<{remaining} {desc}", file=sys.stderr,
                            disable=None, leave=False)

    def __call__(self, fraction: float, message: str) -> None:
        if self.bar is not None:
            self.bar.n = int(1000 * min(max(fraction, 0.0), 1.0))
            self.bar.set_description_str(message, refresh=False)
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _cmd_info(args: argparse.Namespace) -> int:
    from .hydrography import detect_schema, read_network

    caught: list[str] = []
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always", ThalwegWarning)
        net = read_network(args.network, schema=args.schema, fields=_field_overrides(args), layer=args.layer,
                           check_area=args.check_area)
        caught = [str(w.message) for w in record if issubclass(w.category, ThalwegWarning)]
    summary = net.summary()
    summary["file"] = str(args.network)
    summary["problems"] = caught
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    del detect_schema
    lines = [
        f"file           {args.network}",
        f"schema         {summary['schema']}",
        "fields         " + ", ".join(f"{k}={v}" for k, v in summary["fields"].items()),
        f"reaches        {summary['reaches']:,}",
        f"outlets        {summary['outlets']:,}",
        f"headwaters     {summary['headwaters']:,}",
        f"max depth      {summary['max_depth']:,} links ({summary['levels']:,} topological levels)",
        f"total length   {summary['total_length_km']:,.1f} km",
        "largest basin  " + (f"{summary['largest_basin_km2']:,.1f} km2" if summary["largest_basin_km2"]
                              else "unknown (no drainage area)"),
        f"crs            {summary['crs']}",
        f"attributes     {', '.join(sorted(net.attrs)) or 'none'}",
        f"problems       {len(caught) or 'none found'}",
    ]
    lines += [f"  - {p}" for p in caught]
    print("\n".join(lines))
    return 0


def _route_settings(args: argparse.Namespace) -> RouteSettings:
    params: dict[str, Any] = dict(args.param)
    for flag, name in (("k", "k"), ("x", "x"), ("k_field", "k"), ("x_field", "x")):
        value = getattr(args, flag)
        if value is not None:
            if name in params:
                raise InputError(f"parameter '{name}' is given twice.", hint="Give --k or --k-field, not both.")
            params[name] = value
    out = Path(args.output)
    if out.suffix.lower() not in (".nc", ".nc4"):
        raise InputError(f"the output '{out}' must be a NetCDF file ending in .nc.", hint="Use -o OUT.nc.")
    return RouteSettings(
        network=str(args.network), runoff=str(args.runoff), out_dir=str(out.parent), name=out.stem,
        scheme=args.scheme, params=params, engine=args.engine, device=args.device, convention=args.convention,
        schema=args.schema, fields=_field_overrides(args), layer=args.layer, nan=args.nan,
        missing=args.missing, catchments=args.catchments, check_area=args.check_area, gauges=args.gauges,
        observed=args.observed, write_gpkg=not args.no_gpkg,
        hydrograph_reaches=list(args.hydrograph))


def _cmd_route(args: argparse.Namespace) -> int:
    from .workflow import run_route

    settings = _route_settings(args)
    bar = _Progress(args.quiet)
    start = time.perf_counter()
    try:
        result = run_route(settings, progress=bar)
    finally:
        bar.close()
    if not args.quiet:
        d = result.discharge
        print(f"routed {d.values.shape[0]:,} reaches x {d.values.shape[1]:,} steps of {d.dt:g} s "
              f"({settings.scheme}) in {time.perf_counter() - start:.1f} s "
              f"(route {result.timings['route']:.2f} s)", file=sys.stderr)
        for name, origin in result.params_used.items():
            print(f"  parameter {name}: {origin}", file=sys.stderr)
        for kind, path in result.outputs.items():
            print(f"  {kind:<12} {path}", file=sys.stderr)
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from .workflow import run_calibrate

    route = _route_settings(args).to_dict()
    settings = CalibrateSettings(**route, iterations=args.iterations, learning_rate=args.learning_rate,
                                 zones=args.zones, warmup=args.warmup, calibrate=list(args.calibrate))
    bar = _Progress(args.quiet)
    start = time.perf_counter()
    try:
        run = run_calibrate(settings, progress=bar)
    finally:
        bar.close()
    if not args.quiet:
        res = run.calibration
        state = "converged" if res.converged else "stopped at the iteration limit"
        print(f"calibrated {', '.join(res.calibrated)} ({settings.scheme}, {settings.zones} zones) in "
              f"{res.iterations:,} iterations ({state}), {time.perf_counter() - start:.1f} s "
              f"(calibration {run.timings['calibrate']:.2f} s)", file=sys.stderr)
        for gauge, reach in zip(run.gauges.ids, run.gauges.reach_ids):
            before, after = res.metrics_before[int(reach)], res.metrics_after[int(reach)]
            print(f"  gauge {gauge} (reach {int(reach)}): NSE {before['nse']:.3f} -> {after['nse']:.3f}, "
                  f"KGE {before['kge']:.3f} -> {after['kge']:.3f}", file=sys.stderr)
        for z, reach in enumerate(res.zone_gauges.tolist()):
            where = "all reaches" if reach < 0 else f"zone of reach {reach}"
            factors = ", ".join(f"{name} x {m[z]:.4g}" for name, m in res.multipliers.items())
            print(f"  {where}: {factors}", file=sys.stderr)
        for kind, path in run.outputs.items():
            print(f"  {kind:<12} {path}", file=sys.stderr)
    return 0


def _cmd_schemes(args: argparse.Namespace) -> int:
    from .irf import SCHEMES

    for name in sorted(SCHEMES):
        s = SCHEMES[name]
        params = ", ".join(f"{p.name} [{p.unit}] {p.lower:g}..{p.upper:g}" for p in s.parameters)
        extra = " (+ reach length)" if s.uses_length else ""
        print(f"{name:<18} {params}{extra}\n{'':<18} {s.description}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(Path(args.out), device=args.device, quiet=args.quiet)
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from .server import serve_from_args

    return serve_from_args(args)


COMMANDS = {"info": _cmd_info, "route": _cmd_route, "calibrate": _cmd_calibrate, "demo": _cmd_demo,
            "schemes": _cmd_schemes, "serve": _cmd_serve}


def _show_warning(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, ThalwegWarning):
        print(f"warning: {message}", file=sys.stderr)
    else:
        logging.getLogger("py.warnings").debug("%s:%s: %s: %s", filename, lineno, category.__name__, message)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    previous = warnings.showwarning
    if not args.debug:
        warnings.showwarning = _show_warning
    try:
        return COMMANDS[args.command](args)
    except ThalwegError as exc:
        if args.debug:
            raise
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the CLI is one of the three edges allowed to catch everything
        if args.debug:
            raise
        print(f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback and report it)",
              file=sys.stderr)
        return 1
    finally:
        warnings.showwarning = previous


if __name__ == "__main__":
    sys.exit(main())
