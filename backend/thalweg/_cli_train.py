"""``thalweg train``: fit a runoff model through the routing to discharge at gauges (registered by cli.py).

Its options come from :class:`thalweg.config.TrainSettings` (help, defaults, allowed values), like ``route``'s;
``--forcing NAME=PATH[:VARIABLE]`` is repeatable. The run is :func:`thalweg.learning.train_run.run_train`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_train_command"]


def _forcing(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"'{text}' is not NAME=PATH (e.g. precipitation=forcings.nc)")
    name, path = text.split("=", 1)
    return name.strip(), path.strip()


def add_train_command(sub, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``train`` to the ``thalweg`` subparsers (its handler is set as the parser's default)."""
    from .cli import EPILOG, _FILE, _add_settings, _Formatter
    from .config import TrainSettings, options

    table = options(TrainSettings)
    text = "train a runoff model (GR4, LSTM, MC-LSTM) through the routing on observed discharge at gauges"
    p = sub.add_parser("train", parents=[common], help=text, description=text, epilog=EPILOG,
                       formatter_class=_Formatter)
    p.set_defaults(_parser=p, handler=_cmd_train)
    p.add_argument("network", help=table["network"][1].help).complete = _FILE
    p.add_argument("--forcing", type=_forcing, action="append", default=[], metavar="NAME=PATH",
                   help="a forcing (precipitation, pet, ...) and its file, PATH or PATH:VARIABLE; repeatable")
    p.add_argument("-o", "--out", default=".", help="output folder (default: .)").complete = _FILE
    p.add_argument("--name", dest="stem", default="trained", help="stem of the output files (default: trained)")
    for group in ("inputs", "training"):
        names = [n for n, (_, o) in table.items() if o.group == group and o.flag]
        _add_settings(p.add_argument_group(group), names, table)
    return p


def _train_flags() -> dict[str, str]:
    """Library keyword -> train's flag, for hints (``train.forcings`` -> ``--forcing``)."""
    from .config import TrainSettings, options

    table = {"train.forcings": "--forcing", "train.out_dir": "-o", "train.name": "--name"}
    for _, o in options(TrainSettings).values():
        if o.flag:
            for keyword in (o.keyword, *o.aliases):
                if keyword and keyword not in table:
                    table[keyword] = o.flag
    return table


def _cmd_train(args: argparse.Namespace) -> int:
    from .cli import _Progress
    from .config import TrainSettings, options
    from .errors import ThalwegError, option_names, render_options
    from .learning.train_run import run_train

    values = {name: getattr(args, name) for name in options(TrainSettings) if hasattr(args, name)}
    values.update(network=args.network, forcings=dict(args.forcing) or None, out_dir=args.out, name=args.stem)
    with option_names(_train_flags(), "cli"):  # hints name train's flags (--forcing NAME=PATH, ...)
        try:
            settings = TrainSettings.from_dict(values)
            bar = _Progress(args.quiet)
            try:
                run = run_train(settings, progress=bar)
            finally:
                bar.close()
        except ThalwegError as exc:  # rendered here, where train's names are known
            exc.message = render_options(exc.message)
            exc.hint = render_options(exc.hint) if exc.hint else exc.hint
            raise
    if not args.quiet:
        print(run.table, file=sys.stderr)
        print(f"trained in {run.timings['train']:.1f} s (reading {run.timings['read']:.1f} s)", file=sys.stderr)
        for kind, path in run.outputs.items():
            print(f"  {kind:<8} {Path(path)}", file=sys.stderr)
    return 0
