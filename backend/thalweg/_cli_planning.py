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

from .config import Choices
from .errors import InputError, ThalwegError, option_names, render_options

__all__ = ["add_planning_commands", "OPTION_FLAGS"]

# library keyword -> CLI flag, for hints (errors.opt placeholders)
OPTION_FLAGS = {
    "flow_statistics.water_year_start": "--water-year-start",
    "flow_statistics.distribution": "--distribution",
    "return_period_flows.distribution": "--distribution",
    "return_period_flows.return_periods": "--return-periods",
    "return_period_flows.confidence": "--confidence",
    "compare.statistic": "--statistic",
    "write_reach_table.network": "--network",
}


def _distributions() -> tuple[str, ...]:
    from .results.frequency import DISTRIBUTIONS

    return DISTRIBUTIONS


def _add_frequency_options(p: argparse.ArgumentParser) -> None:
    # no numpy here: `thalweg --help` stays fast (the library's names are looked up when used)
    g = p.add_argument_group("flood frequency")
    g.add_argument("--return-periods", type=float, nargs="+", metavar="YEARS",
                   help="return periods, years (default: 2 5 10 20 50 100)")
    g.add_argument("--distribution", choices=Choices(_distributions, "distributions"), default="gev",
                   help="annual-maximum distribution, fitted by L-moments (default: gev; gumbel needs fewer years)")
    g.add_argument("--water-year-start", type=int, default=10, metavar="MONTH",
                   help="month the water year starts in, 1-12 (default 10: October; 1: calendar years)")
    g.add_argument("--bootstrap", type=int, default=200, metavar="N",
                   help="bootstrap resamples for the confidence intervals (default 200; 0: none)")
    g.add_argument("--confidence", type=float, default=0.9, help="confidence level of the intervals (default 0.9)")
    g.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0: same numbers each run)")


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
    _add_frequency_options(st)
    add_network_options(st)

    cp = sub.add_parser("compare", parents=[common], help="per-reach change of a statistic between two runs "
                                                           "(scenario minus baseline)")
    cp.add_argument("baseline", help="discharge file of the baseline run")
    cp.add_argument("scenario", help="discharge file of the scenario run (same network and period)")
    cp.add_argument("-o", "--output", required=True, help=table)
    cp.add_argument("--statistic", default="mean",
                    help="mean (default), max, q05, q50, q95, mean_annual, mam7, min7, or q{T}y (e.g. q100y)")
    cp.add_argument("--top", type=int, default=10, metavar="N", help="print the N most changed reaches (default 10)")
    cp.add_argument("--network", dest="network_file", help="the routed network's file (for a .gpkg output)")
    _add_frequency_options(cp)
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
    _add_frequency_options(ex)
    add_network_options(ex)
    handlers = {"stats": _cmd_stats, "compare": _cmd_compare, "exceed": _cmd_exceed}
    for name, parser in (("stats", st), ("compare", cp), ("exceed", ex)):
        parser.set_defaults(handler=_in_cli_terms(handlers[name]), network_reading=network_reading)
    return handlers


def _in_cli_terms(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """``handler`` with its hints naming these commands' flags."""
    def run(args: argparse.Namespace) -> int:
        with option_names(OPTION_FLAGS, "cli"):
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


def _return_periods(args: argparse.Namespace):
    from .results.frequency import DEFAULT_RETURN_PERIODS

    return args.return_periods or DEFAULT_RETURN_PERIODS


def _frequency_kwargs(args: argparse.Namespace) -> dict:
    return {"distribution": args.distribution, "water_year_start": args.water_year_start}


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
    from .results.planning import LAYERS, stats_table, units_of
    from .results.tables import write_reach_table

    _check_output(args, [args.discharge, args.network_file])
    network = _network(args, _needs_map(args))
    d = read_discharge(args.discharge)
    stats = stats_table(d, return_periods=_return_periods(args), n_boot=args.bootstrap, confidence=args.confidence,
                        seed=args.seed, **_frequency_kwargs(args))
    path = write_reach_table(args.output, stats, network=network, units=units_of("stats", stats),
                             layer=_layer(args, LAYERS["stats"]))
    years = stats.attrs["years"]
    _say(args, f"{d.n_reaches:,} reaches, {len(years)} complete water years ({years[0]}..{years[-1]}): "
               f"{stats.attrs['method']}\n  table        {path}")
    return 0


def _layer(args: argparse.Namespace, name: str) -> str | None:
    """The map layer's name: the plugin's (``stats``, ``change``, ``exceedance``) unless the file names another."""
    return name if _needs_map(args) else None


def _cmd_compare(args: argparse.Namespace) -> int:
    from .results import read_discharge
    from .results.compare import most_changed
    from .results.planning import LAYERS, compare_table, run_names, units_of
    from .results.tables import write_reach_table

    _check_output(args, [args.baseline, args.scenario, args.network_file])
    network = _network(args, _needs_map(args))
    base, scen = read_discharge(args.baseline), read_discharge(args.scenario)
    frame = compare_table(base, scen, statistic=args.statistic,
                          names=run_names(args.baseline, args.scenario), **_frequency_kwargs(args))
    path = write_reach_table(args.output, frame, network=network, units=units_of("compare", frame),
                             layer=_layer(args, LAYERS["compare"]))
    top = most_changed(frame, n=args.top)
    lines = [f"{args.statistic}: {int((frame['difference'] != 0).sum()):,} of {len(frame):,} reaches changed; "
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

    _check_output(args, [args.discharge, args.network_file])
    needed = "--threshold-field" if args.threshold_field else _needs_map(args)
    network = _network(args, needed)
    d = read_discharge(args.discharge)
    frame, what = exceedance_table(d, network=network, threshold=args.threshold, field=args.threshold_field,
                                   return_period=args.return_period, **_frequency_kwargs(args))
    path = write_reach_table(args.output, frame, network=network, units=units_of("exceedance", frame),
                             layer=_layer(args, LAYERS["exceedance"]))
    _say(args, f"{int(frame['exceeded'].sum()):,} of {len(frame):,} reaches exceed {what} at least once\n"
               f"  table        {path}")
    return 0
