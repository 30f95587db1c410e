"""The ``thalweg`` command: parse arguments -> settings -> call the library.

The options of ``route`` and ``calibrate`` are built from the settings model (``thalweg.config``: help,
defaults, allowed values); a saved ``settings.json`` can be given back with ``--settings`` (flags override it).
Errors exit with one readable line (``--debug`` shows the traceback) and a code that says whose problem it is
(:data:`EXIT_CODES`); hints name this command's flags (``errors.option_names``). ThalwegWarnings print as one
``warning:`` line each, through the progress bar's writer. ``thalweg --version`` and ``--help`` import neither
torch nor the GIS libraries.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import os
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from . import __version__
from .config import CalibrateSettings, Choices, Option, RouteSettings, kind_of, options
from .errors import InputError, ThalwegError, ThalwegWarning, opt, option_names

__all__ = ["main", "build_parser", "option_table", "EXIT_CODES"]

EXIT_OK, EXIT_BUG, EXIT_USAGE, EXIT_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_CODES = {EXIT_OK: "success", EXIT_BUG: "internal error (a bug: run again with --debug and report it)",
              EXIT_USAGE: "usage error (unknown option, invalid value or combination of options)",
              EXIT_INPUT: "input error (a file, its data, the settings or an output path cannot be used; the "
                          "message says what, where and the fix)",
              EXIT_INTERRUPTED: "interrupted (Ctrl-C)"}
EPILOG = ("exit codes:\n" + "\n".join(f"  {code:<4}{text}" for code, text in EXIT_CODES.items())
          + "\n\nshell completion (bash, zsh or tcsh):\n"
            "  thalweg completion bash > ~/.local/share/bash-completion/completions/thalweg")

# shtab's "complete a file name" marker (shtab.FILE), spelled out so that building the parser needs no shtab
_FILE = {"bash": "_shtab_compgen_files", "zsh": "_files", "tcsh": "f"}
_ROUTE_OPTIONS = options(RouteSettings)
_ALL_OPTIONS = options(CalibrateSettings)
_FIELD_ROLES = ("id", "downstream", "length", "area")
# paths made absolute where the command runs (a checkpoint may not exist yet, so it is not an input path)
_PATH_SETTINGS = [name for name, (_, o) in _ALL_OPTIONS.items()
                  if o.path or name in ("network", "runoff", "checkpoint")]


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's layout, and does not look up lazy choices (scheme and engine names import torch)."""

    def _expand_help(self, action):
        if isinstance(action.choices, Choices):
            action = copy.copy(action)
            action.choices = None
        return super()._expand_help(action)


def _help(f, opt: Option) -> str:
    default = f.default
    text = opt.help.replace("%", "%%")
    if default not in (None, dataclasses.MISSING, "") and not isinstance(default, bool):
        text += f" (default: {default})"
    return text


def _pattern_type(name: str, opt: Option):
    import re

    def check(text: str) -> str:
        if not re.fullmatch(opt.pattern, text):
            raise argparse.ArgumentTypeError(f"'{text}' is not {opt.help.split(' (')[0]}")
        return text

    check.__name__ = name  # argparse names the type in its message
    return check


def _add_settings(group, names: list[str], table: dict[str, tuple[Any, Option]] = _ALL_OPTIONS) -> None:
    """One flag per setting, built from its :class:`Option`; SUPPRESS keeps a flag not given out of the
    namespace, so that a settings file's value stands unless the flag overrides it."""
    for name in names:
        f, opt = table[name]
        kind = kind_of(f).rstrip("?")
        kw: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS, "help": _help(f, opt)}
        if kind == "bool" and opt.negatable:  # --X / --no-X: the Option names the --no- form, the default on
            if not (f.default is True and opt.flag.startswith("--no-")):
                raise AssertionError(f"negatable setting {name}: default {f.default!r}, flag {opt.flag}")
            kw["action"] = argparse.BooleanOptionalAction
            group.add_argument("--" + opt.flag[len("--no-"):], **kw)
            continue
        if kind == "bool":
            kw["action"] = "store_false" if f.default else "store_true"
        elif kind == "bounds":
            kw["action"] = _BoundAction
        elif kind == "list[str]":
            kw["action"] = _NamesAction
        elif kind.startswith("list"):
            kw.update(action="append", type=int)
        else:
            kw["type"] = {"float": float, "int": int}.get(kind, str)
            if opt.pattern:
                kw["type"] = _pattern_type(name, opt)
        if opt.choices is not None:
            kw["choices"] = opt.choices
        if opt.metavar and kind != "bool":
            kw["metavar"] = opt.metavar
        action = group.add_argument(opt.flag, **kw)
        if opt.path:
            action.complete = _FILE


class _NamesAction(argparse.Action):
    """A repeatable list of names; one value may also hold several, comma-separated (``--validate-gauges A,B``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        names = [v.strip() for v in str(values).split(",") if v.strip()]
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest, None) or []), *names])


class _BoundAction(argparse.Action):
    """``--bound NAME=LOW:HIGH``, repeatable, into one name -> [low, high] mapping."""

    def __call__(self, parser, namespace, values, option_string=None):
        name, sep, pair = str(values).partition("=")
        low, colon, high = pair.partition(":")
        try:
            bounds = [float(low), float(high)] if sep and colon and name.strip() else None
        except ValueError:
            bounds = None
        if bounds is None:
            parser.error(f"argument {option_string}: '{values}' is not NAME=LOW:HIGH (e.g. k=3600:172800)")
        setattr(namespace, self.dest, {**(getattr(namespace, self.dest, None) or {}), name.strip(): bounds})


def _names(group: str, table: dict[str, tuple[Any, Option]] = _ALL_OPTIONS) -> list[str]:
    return [name for name, (_, o) in table.items() if o.group == group and o.flag]


def _add_network_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("network reading")
    _add_settings(g, [n for n in _names("network reading") if n != "check_area"])
    for role in _FIELD_ROLES:
        g.add_argument(f"--{role}-field", default=argparse.SUPPRESS,
                       help=f"field holding reach {'ids' if role == 'id' else role + 's'}"
                            f"{' (ids of the downstream reach)' if role == 'downstream' else ''} (overrides "
                            f"detection)")
    _add_settings(g, ["check_area"])


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
    for name in ("network", "runoff"):
        f, opt = _ALL_OPTIONS[name]
        p.add_argument(name, nargs="?", help=opt.help + " (may come from --settings)").complete = _FILE
    p.add_argument("-o", "--output", help="output discharge file: OUT.nc (river-route Q), a name holding Qout "
                                          "(RAPID Qout) or OUT.zarr; extras go beside it (OUT.gpkg, "
                                          "OUT_hydrographs.csv, OUT.settings.json)").complete = _FILE
    p.add_argument("--settings", metavar="FILE",
                   help="start from a settings.json that a run wrote; the flags given override it").complete = _FILE
    p.add_argument("--overwrite", action="store_true", help="replace outputs that exist (refused without it)")
    g = p.add_argument_group("routing")
    _add_settings(g, ["scheme"])
    g.add_argument("--k", type=float, help="Muskingum K for every reach, s")
    g.add_argument("--x", type=float, help="Muskingum x for every reach")
    g.add_argument("--k-field", help="network field holding Muskingum K [s]")
    g.add_argument("--x-field", help="network field holding Muskingum x")
    g.add_argument("--param", type=_param, action="append", default=[], metavar="NAME=VALUE",
                   help="any scheme parameter as a constant (SI) or a field name; repeatable")
    _add_settings(g, [n for n in _names("routing") if n != "scheme"])
    _add_settings(p.add_argument_group("runoff reading"), _names("runoff reading"))
    out = p.add_argument_group("outputs")
    _add_settings(out, _names("outputs"))
    if calibrating:  # the gauges and observations are what calibration fits to
        for action in out._group_actions:
            if action.dest in ("gauges", "observed"):
                action.help += " (required)"
    _add_network_options(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thalweg", description="River routing on GPU or CPU (DiffRoute method).",
                                     epilog=EPILOG, formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"thalweg {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info lines")
    # the same switches after the command; SUPPRESS keeps a value given before the command
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help, description=help, epilog=EPILOG,
                           formatter_class=_Formatter)
        p.set_defaults(_parser=p)
        return p

    info = command("info", "describe a river network file: schema, fields, size, problems")
    info.add_argument("network", help="hydrography file (GeoPackage, Shapefile, parquet, GeoJSON, CSV, "
                                      "NetCDF)").complete = _FILE
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    _add_network_options(info)

    rt = command("route", "route runoff through a network and write discharge")
    _add_route_arguments(rt, calibrating=False)

    cal = command("calibrate", "fit travel-time parameters to observed discharge, then route with them")
    _add_route_arguments(cal, calibrating=True)
    _add_settings(cal.add_argument_group("calibration"), _names("calibration"))

    demo = command("demo", "route the bundled sample basin and draw maps and hydrographs")
    demo.add_argument("--out", default="thalweg-demo", help="output folder (default: ./thalweg-demo)")
    demo.add_argument("--device", default="auto", type=_pattern_type("device", _ALL_OPTIONS["device"][1]),
                      help="cpu, cuda or auto")
    demo.add_argument("--no-train", dest="train", action="store_false",
                      help="skip training the sample's GR4 runoff model (the learned model's figure and scores)")
    demo.add_argument("--train-iterations", type=int, default=None, metavar="N",
                      help="iterations of the demo's training (default: 40, under a minute on one CPU core)")

    command("schemes", "list routing schemes and their parameters")
    from ._cli_planning import add_planning_commands

    add_planning_commands(sub, common, _add_network_options, _network_reading)  # stats, compare, exceed
    from ._cli_train import add_train_command

    add_train_command(sub, common)

    exp = command("export-params", "write the Muskingum k and x per reach in RAPID's and river-route's layouts")
    exp.add_argument("network", help="hydrography file").complete = _FILE
    exp.add_argument("-o", "--output", required=True, metavar="DIR",
                     help="folder for rapid_connect.csv, riv_bas_id.csv, k.csv, x.csv and params.parquet")
    exp.add_argument("--layout", action="append", choices=("rapid", "river-route"), default=[],
                     help="rapid and/or river-route (default both); repeatable")
    exp.add_argument("--scheme", default="muskingum", help="a Muskingum scheme (default muskingum)")
    exp.add_argument("--k", type=float, help="Muskingum K for every reach, s")
    exp.add_argument("--x", type=float, help="Muskingum x for every reach")
    exp.add_argument("--k-field", help="network field holding Muskingum K [s]")
    exp.add_argument("--x-field", help="network field holding Muskingum x")
    _add_network_options(exp)

    comp = command("completion", "print a shell completion script (bash, zsh or tcsh)")
    comp.add_argument("shell", choices=("bash", "zsh", "tcsh"))

    serve = command("serve", "run the local job service for the QGIS plugin and scripts")
    from .server import add_serve_arguments

    add_serve_arguments(serve)
    return parser


def option_table(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Library keyword -> flag of this parser (``read_runoff.units`` -> ``--runoff-units``), for hints.

    Built from the parser itself, so a hint never names a flag the command does not have; ``route.<setting>``
    keys too (``route.engine`` -> ``--engine``).
    """
    table: dict[str, str] = {"route.params": "--param", "route.out_dir": "-o", "route.name": "-o",
                             "read_network.fields": "/".join(f"--{r}-field" for r in _FIELD_ROLES),
                             "route.settings": "--settings", "route.overwrite": "--overwrite",
                             **{f"read_network.{r}_field": f"--{r}-field" for r in _FIELD_ROLES}}
    seen: list[argparse.ArgumentParser] = [parser]
    while seen:
        p = seen.pop()
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                seen.extend(action.choices.values())
            elif action.dest in _ALL_OPTIONS and action.option_strings:
                flag = max(action.option_strings, key=len)
                opt = _ALL_OPTIONS[action.dest][1]
                if opt.flag and flag != opt.flag:  # another command's setting of the same name (train's own)
                    continue
                table.setdefault(f"route.{action.dest}", flag)  # -o stays route.name's flag, not train's --name
                for keyword in (opt.keyword, *opt.aliases):
                    if keyword:
                        table[keyword] = flag
    return table


class _Progress:
    """One tqdm bar over 0..1 with one label (the stage), redrawn every half second so that its clock moves
    during long stages; silent when quiet or not a terminal. Warnings go through :meth:`write`."""

    active: _Progress | None = None

    def __init__(self, quiet: bool, width: int = 28) -> None:
        self.bar = None
        self._stop = threading.Event()
        if not quiet:
            from tqdm import tqdm

            # width: characters of the stage label (a calibration's holds the iteration and its losses)
            self.bar = tqdm(total=1000, desc="starting",
                            bar_format=f"{{desc:<{width}.{width}}} {{percentage:3.0f}}%|{{bar}}| {{elapsed}}",
                            file=sys.stderr, disable=None, leave=False, dynamic_ncols=True)
            if self.bar.disable:
                self.bar = None
        if self.bar is not None:
            _Progress.active = self
            self._lock = threading.Lock()
            self._ticker = threading.Thread(target=self._tick, daemon=True, name="thalweg-progress")
            self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            with self._lock:
                if self.bar is not None:
                    self.bar.refresh()

    def __call__(self, fraction: float, message: str) -> None:
        if self.bar is not None:
            with self._lock:
                self.bar.n = int(1000 * min(max(fraction, 0.0), 1.0))
                self.bar.set_description_str(message, refresh=False)
                self.bar.refresh()

    def write(self, text: str) -> None:
        if self.bar is not None:
            with self._lock:
                self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr)

    def close(self) -> None:
        self._stop.set()
        if self.bar is not None:
            with self._lock:
                self.bar.close()
                self.bar = None
        if _Progress.active is self:
            _Progress.active = None


def _say(text: str) -> None:
    if _Progress.active is not None:
        _Progress.active.write(text)
    else:
        print(text, file=sys.stderr)


def _given(args: argparse.Namespace, names) -> dict[str, Any]:
    return {name: getattr(args, name) for name in names if hasattr(args, name)}


def _field_overrides(args: argparse.Namespace) -> dict[str, str]:
    return {role: getattr(args, f"{role}_field") for role in _FIELD_ROLES if getattr(args, f"{role}_field", None)}


def _network_reading(args: argparse.Namespace) -> dict[str, Any]:
    """read_network's keywords from the flags of ``info`` (defaults from the settings model)."""
    from .config import reading_kwargs

    values = {name: f.default for name, (f, o) in _ROUTE_OPTIONS.items() if o.group == "network reading"}
    values.update(_given(args, values))
    values["fields"] = _field_overrides(args) or None
    for name in _PATH_SETTINGS:
        if values.get(name):
            values[name] = os.path.abspath(values[name])
    return reading_kwargs(values, "read_network")


def _cmd_info(args: argparse.Namespace) -> int:
    from .hydrography import read_network
    from .workflow import network_problems

    caught: list[str] = []
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always", ThalwegWarning)
        net = read_network(args.network, **_network_reading(args))
        caught = [str(w.message) for w in record if issubclass(w.category, ThalwegWarning)]
    caught += network_problems(net)
    summary = net.summary()
    summary["file"] = str(args.network)
    summary["problems"] = caught
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
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
        f"splits         {_splits_line(summary)}",
        f"crs            {summary['crs']}",
        f"attributes     {', '.join(sorted(net.attrs)) or 'none'}",
        f"problems       {len(caught) or 'none found'}",
    ]
    lines += [f"  - {p}" for p in caught]
    print("\n".join(lines))
    return 0


def _splits_line(summary: dict) -> str:
    """'none (a tree)', or the split reaches, their links, the largest multi-path region and the fractions' origin."""
    if not summary.get("splits"):
        return "none (a tree)"
    from .errors import count

    return (f"{count(summary['splits'], 'reach splits', 'reaches split')} "
            f"({count(summary['split_links'], 'link')}, fractions: {summary['split_fractions']}); largest "
            f"multi-path region {count(summary['largest_multipath_region'], 'reach', 'reaches')}")


def _usage(args: argparse.Namespace, message: str) -> None:
    args._parser.error(message)  # prints the usage and exits 2


def _route_settings(args: argparse.Namespace, cls: type[RouteSettings] = RouteSettings) -> RouteSettings:
    """The settings of a route/calibrate command: the settings file (if any), then the flags given."""
    data: dict[str, Any] = {}
    base = Path(".")
    if args.settings:
        data = cls.read_file(args.settings)
        base = Path(args.settings).parent
        for name in _PATH_SETTINGS + ["out_dir"]:  # paths saved relative to where that run was started
            if isinstance(data.get(name), str) and not os.path.isabs(data[name]):
                data[name] = os.path.abspath(base / data[name])
    given = _given(args, [n for n in options(cls) if n not in ("network", "runoff")])
    if args.network is not None:
        given["network"] = args.network
    if args.runoff is not None:
        given["runoff"] = args.runoff
    for name in _PATH_SETTINGS:
        if given.get(name):
            given[name] = os.path.abspath(given[name])
    absent = [what for what, ok in (("NETWORK", "network" in given or "network" in data),
                                    ("RUNOFF", "runoff" in given or "runoff" in data),
                                    ("-o OUT.nc", args.output or "name" in data)) if not ok]
    if absent:
        _usage(args, f"missing {', '.join(absent)} (give them, or a --settings file that holds them)")
    if args.output:
        from .results.outputs import output_format

        out = Path(args.output)
        try:  # the format follows the name (.zarr, a Qout name) unless --format says it
            given["format"] = output_format(out, given.get("format", data.get("format", "auto")),
                                            given.get("convention", data.get("convention", "end")))
        except InputError as exc:
            _usage(args, str(exc))
        given["out_dir"], given["name"] = os.path.abspath(out.parent), out.stem
    params: dict[str, Any] = dict(data.get("params") or {})
    flags: dict[str, Any] = dict(args.param)
    for flag, name in (("k", "k"), ("x", "x"), ("k_field", "k"), ("x_field", "x")):
        value = getattr(args, flag)
        if value is not None:
            if name in flags:
                _usage(args, f"parameter '{name}' is given twice (give --{name} or --{name}-field, not both)")
            flags[name] = value
    if flags or "params" not in data:
        given["params"] = params | flags
    fields = _field_overrides(args)
    if fields:
        given["fields"] = dict(data.get("fields") or {}) | fields
    if given.get("observed") and not (given.get("gauges") or data.get("gauges")):
        _usage(args, "--observed needs --gauges (the table saying which reach each gauge sits on)")
    try:
        return cls.from_dict({**data, **given})
    except InputError as exc:
        own = f"setting '{exc.field}'"
        if exc.field in given and exc.message.startswith(own):
            # a flag given here: name the flag (--chunk-steps), as the user typed it, not the settings key
            raise InputError(opt(f"route.{exc.field}") + exc.message[len(own):], hint=exc.hint) from None
        if args.settings:  # the file's keys are the user's: name the file
            raise InputError(exc.message, path=args.settings, field=exc.field, hint=exc.hint) from None
        raise


def _cmd_route(args: argparse.Namespace) -> int:
    from .workflow import run_route

    settings = _route_settings(args)
    bar = _Progress(args.quiet)
    start = time.perf_counter()
    try:
        from .scale.run import run_streaming, wants_stream  # streamed when larger than the memory budget

        run = run_streaming if wants_stream(settings) else run_route
        result = run(settings, progress=bar, overwrite=args.overwrite, settings_file=args.settings)
    finally:
        bar.close()
    if not args.quiet:
        d = result.discharge
        if d is None:  # streamed (thalweg.scale): the discharge went to the files chunk by chunk
            shape, dt = (int(result.timings["reaches"]), int(result.timings["steps"])), result.timings["dt"]
        else:
            shape, dt = d.values.shape, d.dt
        print(f"routed {shape[0]:,} reaches x {shape[1]:,} steps of {dt:g} s "
              f"({settings.scheme}) in {time.perf_counter() - start:.1f} s "
              f"(route {result.timings['route']:.2f} s)", file=sys.stderr)
        for name, origin in result.params_used.items():
            print(f"  parameter {name}: {origin}", file=sys.stderr)
        for kind, path in result.outputs.items():
            print(f"  {kind:<12} {path}", file=sys.stderr)
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from .workflow import run_calibrate

    if not (args.settings or (getattr(args, "gauges", None) and getattr(args, "observed", None))):
        _usage(args, "calibrate needs --gauges and --observed (or a --settings file that holds them)")
    settings = _route_settings(args, CalibrateSettings)
    bar = _Progress(args.quiet, width=64)
    start = time.perf_counter()
    try:
        run = run_calibrate(settings, progress=bar, overwrite=args.overwrite, settings_file=args.settings)
    finally:
        bar.close()
    if not args.quiet and run.fit is not None:
        _print_fit(run, settings, time.perf_counter() - start)
    elif not args.quiet:
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


def _print_fit(run: Any, settings: CalibrateSettings, seconds: float) -> None:
    """The summary of a fitted parameter model: what was fitted, the metrics table, where the files are."""
    res = run.calibration
    learned = ", ".join(res.model.learned) or "nothing"
    print(f"fitted {learned} ({settings.scheme}, {settings.model} model, {res.model.describe()['weights']:,} "
          f"weights, loss {settings.loss}, {settings.optimiser}) in {res.iterations:,} iterations (stopped: "
          f"{res.stopped}; kept iteration {res.best_iteration}), {seconds:.1f} s (fit {run.timings['calibrate']:.2f} "
          f"s)", file=sys.stderr)
    print(run.fit.table, file=sys.stderr)
    for name, origin in run.route.params_used.items():
        print(f"  parameter {name}: {origin}", file=sys.stderr)
    for kind, path in run.outputs.items():
        print(f"  {kind:<16} {path}", file=sys.stderr)


def _cmd_schemes(args: argparse.Namespace) -> int:
    from .irf import SCHEMES

    for name in sorted(SCHEMES):
        s = SCHEMES[name]
        params = ", ".join(f"{p.name} [{p.unit}] {p.lower:g}..{p.upper:g}" for p in s.parameters)
        extra = " (+ reach length)" if s.uses_length else ""
        print(f"{name:<18} {params}{extra}\n{'':<18} {s.description}")
    return 0


def _cmd_export_params(args: argparse.Namespace) -> int:
    from .hydrography import read_network
    from .results.params_export import LAYOUTS, export_params

    spec: dict[str, Any] = {}
    for flag, name in (("k", "k"), ("x", "x"), ("k_field", "k"), ("x_field", "x")):
        if getattr(args, flag) is not None:
            if name in spec:
                raise InputError(f"parameter '{name}' is given twice.", hint=f"Give --{name} or --{name}-field, "
                                                                             f"not both.")
            spec[name] = getattr(args, flag)
    net = read_network(args.network, **_network_reading(args))
    files, used = export_params(args.output, net, args.scheme, spec, args.layout or LAYOUTS)
    if not args.quiet:
        print(f"exported k and x of {net.n_reaches:,} reaches ({args.scheme})", file=sys.stderr)
        for name, origin in used.items():
            print(f"  parameter {name}: {origin}", file=sys.stderr)
        for name, path in files.items():
            print(f"  {name:<18} {path}", file=sys.stderr)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    from .workflow import check_output_folder

    check_output_folder(Path(args.out), flag="--out")
    extra = {} if args.train_iterations is None else {"iterations": args.train_iterations}
    run_demo(Path(args.out), device=args.device, quiet=args.quiet, train=args.train, **extra)
    return 0


def _cmd_completion(args: argparse.Namespace) -> int:
    try:
        import shtab
    except ImportError:
        raise InputError("shell completion needs the shtab package.", hint="pip install shtab") from None
    print(shtab.complete(build_parser(), shell=args.shell))
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from .server import serve_from_args

    return serve_from_args(args)


COMMANDS = {"info": _cmd_info, "route": _cmd_route, "calibrate": _cmd_calibrate, "demo": _cmd_demo,
            "schemes": _cmd_schemes, "completion": _cmd_completion, "serve": _cmd_serve,
            "export-params": _cmd_export_params}


def _show_warning(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, ThalwegWarning):
        _say(f"warning: {message}")
    else:
        logging.getLogger("py.warnings").debug("%s:%s: %s: %s", filename, lineno, category.__name__, message)


class _BarHandler(logging.StreamHandler):
    """Log lines through the progress bar's writer, so that they never split its line."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _say(self.format(record))
        except Exception:  # logging must never raise
            self.handleError(record)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = _BarHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, handlers=[handler])
    previous = warnings.showwarning
    if not args.debug:
        warnings.showwarning = _show_warning
    try:
        with option_names(option_table(parser), "cli"):  # hints name this command's flags
            try:
                return (COMMANDS.get(args.command) or args.handler)(args)
            except ThalwegError as exc:
                if args.debug:
                    raise
                print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
                return EXIT_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # the CLI is one of the three edges allowed to catch everything
        if args.debug:
            raise
        print(f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback and report it)",
              file=sys.stderr)
        return EXIT_BUG
    finally:
        warnings.showwarning = previous


if __name__ == "__main__":
    sys.exit(main())
