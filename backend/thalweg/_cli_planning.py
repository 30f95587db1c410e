"""The planners' commands of ``thalweg``: ``stats``, ``compare`` and ``exceed`` (registered by cli.py).

Each reads discharge files written by ``thalweg route`` (or RAPID/GEOGloWS/river-route), calls
:mod:`thalweg.results.frequency` / :mod:`thalweg.results.compare`, and writes a per-reach table: a CSV, or a
GeoPackage map layer when the output ends in .gpkg (``--network`` gives the reach lines).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from .config import PlanningSettings, kind_of, options
from .errors import InputError, ThalwegError, option_names, render_options

__all__ = ["add_planning_commands", "option_flags", "planning_settings"]


def option_flags() -> dict[str, str]:
    """Library keyword -> CLI flag of these commands' options, for hints (errors.opt placeholders)."""
    table = {"write_reach_table.network": "--network"}
    for _, (_, o) in options(PlanningSettings).items():
        for keyword in (o.keyword, *o.aliases):
            if keyword and o.flag:
                table[keyword] = o.flag
    return table


def _add_planning_options(p: argparse.ArgumentParser, groups: tuple[str, ...]) -> None:
    """The flags of :class:`thalweg.config.PlanningSettings` in ``groups``, built from their Options (as route's
    are), so that the command line and the service's job bodies share help, defaults, values and bounds."""
    from .cli import _add_settings, _help

    table = options(PlanningSettings)
    for group in groups:
        g = p.add_argument_group(group)
        names = [n for n, (_, o) in table.items() if o.group == group and o.flag]
        for name in [n for n in names if kind_of(table[n][0]).startswith("list[float]")]:
            f, o = table[name]
            g.add_argument(o.flag, dest=name, type=float, nargs="+", metavar=o.metavar, default=argparse.SUPPRESS,
                           help=_help(f, o))
        _add_settings(g, [n for n in names if not kind_of(table[n][0]).startswith("list[float]")], table)


def planning_settings(args: argparse.Namespace) -> PlanningSettings:
    """The :class:`PlanningSettings` of a parsed command line (flags not given: the defaults)."""
    return PlanningSettings(**{name: getattr(args, name) for name in options(PlanningSettings) if hasattr(args, name)})


def add_planning_commands(sub, common: argparse.ArgumentParser,
                          add_network_options: Callable[[argparse.ArgumentParser], None],
                          network_reading: Callable[[argparse.Namespace], dict]) -> dict[str, Callable]:
    """Add ``stats``, ``compare`` and ``exceed`` to the ``thalweg`` subparsers; return their handlers.

    ``add_network_options`` and ``network_reading`` are the CLI's own: the same network flags as ``route``,
    turned into ``read_network`` keywords the same way."""
    table = "output table: OUT.csv, or OUT.gpkg (a map layer; needs --network)"

    st = sub.add_parser("stats", parents=[common], help="flood-frequency flows, flow-duration quantiles and low "
                                                         "flows per reach, from a routed discharge file")
    st.add_argument("discharge", help="discharge NetCDF (thalweg route's Q or Qout, RAPID, GEOGloWS, river-route)")
    st.add_argument("-o", "--output", required=True, help=table)
    st.add_argument("--network", dest="network_file", help="the routed network's file (for a .gpkg output)")
    _add_planning_options(st, ("discharge reading", "frequency", "stats"))
    add_network_options(st)

    cp = sub.add_parser("compare", parents=[common], help="per-reach change of a statistic between two runs "
                                                           "(scenario minus baseline)")
    cp.add_argument("baseline", help="discharge file of the baseline run")
    cp.add_argument("scenario", help="discharge file of the scenario run (same network and period)")
    cp.add_argument("-o", "--output", required=True, help=table)
    cp.add_argument("--network", dest="network_file", help="the routed network's file (for a .gpkg output)")
    _add_planning_options(cp, ("discharge reading", "frequency", "compare"))
    add_network_options(cp)

    ex = sub.add_parser("exceed", parents=[common], help="where and when discharge exceeds a threshold")
    ex.add_argument("discharge", help="discharge NetCDF")
    ex.add_argument("-o", "--output", required=True, help=table)
    what = ex.add_mutually_exclusive_group(required=True)
    what.add_argument("--threshold", type=float, metavar="M3S", help="one threshold for every reach, m3/s")
    what.add_argument("--threshold-field", metavar="FIELD", help="a network field holding each reach's threshold, "
                                                                 "m3/s (needs --network)")
    what.add_argument("--return-period", type=float, metavar="YEARS",
                      help="each reach's flow of this return period (fitted on the same run)")
    ex.add_argument("--network", dest="network_file",
                    help="the routed network's file (for --threshold-field or a .gpkg output)")
    _add_planning_options(ex, ("discharge reading", "frequency"))
    add_network_options(ex)
    handlers = {"stats": _cmd_stats, "compare": _cmd_compare, "exceed": _cmd_exceed}
    for name, parser in (("stats", st), ("compare", cp), ("exceed", ex)):
        parser.set_defaults(handler=_in_cli_terms(handlers[name]), network_reading=network_reading)
    return handlers


def _in_cli_terms(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """``handler`` with its hints naming these commands' flags."""
    def run(args: argparse.Namespace) -> int:
        with option_names(option_flags(), "cli"):
            try:
                return handler(args)
            except ThalwegError as exc:  # fix the hint's wording while these flags are known
                exc.message, exc.hint = render_options(exc.message), exc.hint and render_options(exc.hint)
                raise
    return run


def _network(args: argparse.Namespace, needed_for: str | None):
    if not args.network_file:
        if needed_for:
            raise InputError(f"{needed_for} needs the routed network.", hint="Give it with --network FILE.")
        return None
    from .hydrography import read_network

    return read_network(args.network_file, **args.network_reading(args))


def _needs_map(args: argparse.Namespace) -> str | None:
    return "a .gpkg output" if Path(args.output).suffix.lower() == ".gpkg" else None


def _frequency_kwargs(settings: PlanningSettings) -> dict:
    return {"distribution": settings.distribution, "water_year_start": settings.water_year_start}


def _check_output(args: argparse.Namespace, inputs: list[str]) -> None:
    out = Path(args.output).resolve()
    for given in inputs:
        if given and Path(given).resolve() == out:
            raise InputError(f"the output {args.output} is one of the inputs.", path=args.output,
                             hint="Write the table to another file with -o.")


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(text, file=sys.stderr)


def _cmd_stats(args: argparse.Namespace) -> int:
    from .results import read_discharge
    from .results.planning import LAYERS, stats_summary, stats_table, units_of
    from .results.tables import write_reach_table

    settings = planning_settings(args)
    _check_output(args, [args.discharge, args.network_file])
    network = _network(args, _needs_map(args))
    d = read_discharge(args.discharge, variable=settings.variable)
    stats = stats_table(d, return_periods=settings.return_periods, n_boot=settings.bootstrap,
                        confidence=settings.confidence, seed=settings.seed, statistics=settings.statistics,
                        **_frequency_kwargs(settings))
    path = write_reach_table(args.output, stats, network=network, units=units_of("stats", stats),
                             layer=_layer(args, LAYERS["stats"]))
    _say(args, f"{d.n_reaches:,} reaches, {stats_summary(stats)}\n  table        {path}")
    return 0


def _layer(args: argparse.Namespace, name: str) -> str | None:
    """The map layer's name: the plugin's (``stats``, ``change``, ``exceedance``) unless the file names another."""
    return name if _needs_map(args) else None


def _cmd_compare(args: argparse.Namespace) -> int:
    from .results import read_discharge
    from .results.compare import most_changed
    from .results.planning import LAYERS, compare_table, run_names, units_of
    from .results.tables import write_reach_table

    settings = planning_settings(args)
    _check_output(args, [args.baseline, args.scenario, args.network_file])
    network = _network(args, _needs_map(args))
    base = read_discharge(args.baseline, variable=settings.variable)
    scen = read_discharge(args.scenario, variable=settings.variable)
    frame = compare_table(base, scen, statistic=settings.statistic,
                          names=run_names(args.baseline, args.scenario), **_frequency_kwargs(settings))
    path = write_reach_table(args.output, frame, network=network, units=units_of("compare", frame),
                             layer=_layer(args, LAYERS["compare"]))
    top = most_changed(frame, n=settings.top)
    lines = [f"{settings.statistic}: {int((frame['difference'] != 0).sum()):,} of {len(frame):,} reaches changed; "
             f"the {len(top)} most changed (relative):",
             f"  {'reach':>12} {'baseline':>12} {'scenario':>12} {'change':>12} {'relative':>9}"]
    for rid, row in top.iterrows():
        lines.append(f"  {rid:>12} {row['baseline']:>12.4g} {row['scenario']:>12.4g} {row['difference']:>+12.4g} "
                     f"{row['relative']:>+9.1%}")
    lines.append(f"  table        {path}")
    _say(args, "\n".join(lines))
    return 0


def _cmd_exceed(args: argparse.Namespace) -> int:
    from .results import read_discharge
    from .results.planning import LAYERS, exceedance_table, units_of
    from .results.tables import write_reach_table

    settings = planning_settings(args)
    _check_output(args, [args.discharge, args.network_file])
    needed = "--threshold-field" if args.threshold_field else _needs_map(args)
    network = _network(args, needed)
    d = read_discharge(args.discharge, variable=settings.variable)
    frame, what = exceedance_table(d, network=network, threshold=args.threshold, field=args.threshold_field,
                                   return_period=args.return_period, **_frequency_kwargs(settings))
    path = write_reach_table(args.output, frame, network=network, units=units_of("exceedance", frame),
                             layer=_layer(args, LAYERS["exceedance"]))
    _say(args, f"{int(frame['exceeded'].sum()):,} of {len(frame):,} reaches exceed {what} at least once\n"
               f"  table        {path}")
    return 0
