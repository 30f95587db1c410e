"""NSE/KGE per gauge on the Cance sample for the prior, zones, per-reach and regression parameter models.

Calibration 2014-09-15 .. 2014-11-14, validation 2014-11-15 .. 2015-01-15 (the sample's runoff, which has no soil
storage: the numbers are what routing alone can do with it), plus a leave-one-gauge-out row per gauge for the
regression model (that gauge held out of the training, scored on both periods).

    PYTHONPATH=backend python scripts/cance_parameters.py --out /tmp/cance   # writes table.md, results.json, PNGs

Settings are the library defaults unless given: NSE loss, L-BFGS, 48 h warm-up.
"""
from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "resources" / "sample"
CALIBRATION = ("2014-09-15", "2014-11-14")
VALIDATION = ("2014-11-15", "2015-01-15")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("cance_parameters"), help="output folder")
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--optimiser", default="lbfgs", choices=("adam", "lbfgs"))
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--loss", default="nse")
    parser.add_argument("--warmup", type=int, default=48, help="steps (hours) left out after the cold start")
    parser.add_argument("--models", default="prior,zones,per-reach,regression")
    parser.add_argument("--no-logo", action="store_true", help="skip the leave-one-gauge-out fits")
    args = parser.parse_args()

    from thalweg.errors import ThalwegWarning
    from thalweg.hydrography import read_network
    from thalweg.learning import read_gauges
    from thalweg.learning.fit import fit, leave_one_gauge_out
    from thalweg.learning.report import fit_record, format_metrics, plot_metrics, write_parameter_table
    from thalweg.learning.splits import period_of
    from thalweg.params.model_file import save_model
    from thalweg.params.models import build_model
    from thalweg.runoff import read_runoff

    warnings.simplefilter("ignore", ThalwegWarning)
    network = read_network(SAMPLE / "cance_rivers.gpkg", layer="rivers")
    runoff = read_runoff(SAMPLE / "cance_runoff.nc", network)
    gauges = read_gauges(SAMPLE / "cance_gauges.csv", network, observed=SAMPLE / "cance_qobs.csv")
    end = runoff.time + np.timedelta64(int(round(runoff.dt * 1e9)), "ns")  # Q[t] is stamped at the step's end
    observed = gauges.observed_on(end)
    cal = period_of(end, *CALIBRATION, label="calibration")
    val = period_of(end, *VALIDATION, label="validation")
    gauge_reaches = [int(r) for r in gauges.reach_ids]
    names = [str(g) for g in gauges.ids]
    options = dict(dt=runoff.dt, gauges=gauge_reaches, observed=observed, calibration=cal, validation=val,
                   warmup=args.warmup, loss=args.loss, optimiser=args.optimiser, iterations=args.iterations,
                   learning_rate=args.learning_rate, gauge_names=names, engine="exact")
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"{network!r}; steps {runoff.values.shape[1]:,} of {runoff.dt:g} s; calibration steps {cal.start}..{cal.end}"
          f", validation {val.start}..{val.end}; gauges {', '.join(names)}")

    def make(kind: str, train: list[int]):
        return build_model(kind, network, "muskingum", gauges=train, seed=0)

    rows, record = [], {"settings": {k: v for k, v in vars(args).items() if k != "out"}, "models": {}}
    for kind in args.models.split(","):
        t0 = time.perf_counter()
        res = fit(make(kind, gauge_reaches), network, runoff.values, **options)
        seconds = time.perf_counter() - t0
        print(f"\n{kind}: {seconds:.1f} s\n{format_metrics(res)}")
        plot_metrics(res, args.out / f"{kind}.png", title=f"Cance, {kind} model")
        write_parameter_table(args.out / f"{kind}_params.csv", network, res.params)
        if kind == "regression":
            save_model(res.model, args.out / "regression_model.json")
        record["models"][kind] = dict(fit_record(res), seconds=seconds)
        rows += [(kind, name, res.metrics_after[name]) for name in names]
    if not args.no_logo:
        t0 = time.perf_counter()
        logo = leave_one_gauge_out(lambda train: make("regression", train), network, runoff.values,
                                   **{k: v for k, v in options.items() if k not in ("gauges", "observed",
                                                                                     "gauge_names")},
                                   gauges=gauge_reaches, observed=observed, gauge_names=names)
        print(f"\nleave-one-gauge-out (regression): {time.perf_counter() - t0:.1f} s")
        for name in names:
            rows.append(("regression, gauge held out", name, logo[name]))
        record["leave_one_gauge_out"] = logo

    lines = ["| model | gauge | NSE cal | KGE cal | NSE val | KGE val |", "|---|---|---|---|---|---|"]
    for kind, name, m in rows:
        c, v = m["calibration"], m["validation"]
        lines.append(f"| {kind} | {name} | {c['nse']:.3f} | {c['kge']:.3f} | {v['nse']:.3f} | {v['kge']:.3f} |")
    table = "\n".join(lines)
    print("\n" + table)
    (args.out / "table.md").write_text(table + "\n")
    (args.out / "results.json").write_text(json.dumps(record, indent=1, default=float))


if __name__ == "__main__":
    main()
