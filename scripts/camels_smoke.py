"""CAMELS-US smoke test of the runoff models: LSTM against MC-LSTM on the 4 daily basins of
``../shared/datasets/camels_us`` (neuralhydrology's test data: Daymet basin-mean forcing, USGS streamflow 2000-2002,
the CAMELS attribute tables), trained on 2000-2001, tested on 2002 from one continuous run; NSE and KGE per basin.

A lumped basin is a one-reach network: the four basins are four outlets of one network built with
:func:`thalweg.network.from_arrays` (each reach's catchment area is the basin's area, ``area_gages2``), routed with
``pure_lag`` at its prior (the reaches are 1 m long, a lag of about 4 s in a 1-day step: the outlet discharge is the
basin's runoff). One model per kind is trained over the four basins (weights shared, static attributes
concatenated to every step, neuralhydrology's practice) through :func:`thalweg.learning.train.train`, mode
'runoff', the same code as ``thalweg train``; the first ``--warmup`` days are left out of the loss (cold start).

This is a smoke test of the runoff models on real daily data, not a benchmark: 4 basins, 2 years of training,
small models, few iterations, one CPU thread.

Example::

    PYTHONPATH=backend python scripts/camels_smoke.py --iterations 150 --hidden 16
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# ../shared of the checkout (shared/ inside it, or beside a worktree's parent folder)
DATA = next((d / "shared" / "datasets" / "camels_us" for d in (ROOT, ROOT.parent, ROOT.parent.parent)
             if (d / "shared" / "datasets" / "camels_us").is_dir()), ROOT.parent / "shared" / "datasets" / "camels_us")
FORCINGS = ("precipitation", "tmax", "tmin", "srad", "vp", "dayl")  # Daymet columns, precipitation first
COLUMNS = {"precipitation": "prcp(mm/day)", "tmax": "tmax(C)", "tmin": "tmin(C)", "srad": "srad(W/m2)",
           "vp": "vp(Pa)", "dayl": "dayl(s)"}
STATIC = ("p_mean", "pet_mean", "aridity", "frac_snow", "elev_mean", "slope_mean", "area_gages2", "frac_forest")
TRAIN, TEST = ("2000-01-01", "2001-12-31"), ("2002-01-01", "2002-12-31")
CFS = 0.028316846592  # m3/s per ft3/s


def read_camels(folder: Path) -> dict:
    """Daily forcings [B, T, F] (Daymet), observed discharge [B, T] m3/s, static attributes [B, A], areas m2."""
    import pandas as pd

    flows = sorted((folder / "usgs_streamflow").glob("*_streamflow_qc.txt"))
    basins = [p.name.split("_")[0] for p in flows]
    if not basins:
        raise SystemExit(f"{folder}: no usgs_streamflow/*_streamflow_qc.txt (give the camels_us folder with --data)")
    days = pd.date_range(TRAIN[0], TEST[1], freq="D")
    forcing, observed = [], []
    for basin, flow in zip(basins, flows):
        path = folder / "basin_mean_forcing" / "daymet" / f"{basin}_lump_cida_forcing_leap.txt"
        frame = pd.read_csv(path, sep=r"\s+", skiprows=3)
        frame.index = pd.to_datetime(dict(year=frame["Year"], month=frame["Mnth"], day=frame["Day"]))
        frame = frame.reindex(days)
        if frame[list(COLUMNS.values())].isna().any().any():
            raise SystemExit(f"{path}: days missing between {TRAIN[0]} and {TEST[1]}")
        forcing.append(np.stack([frame[COLUMNS[v]].to_numpy(np.float64) for v in FORCINGS], axis=-1))
        q = pd.read_csv(flow, sep=r"\s+", header=None, names=["basin", "year", "month", "day", "q", "flag"])
        q.index = pd.to_datetime(dict(year=q["year"], month=q["month"], day=q["day"]))
        q = q["q"].where(q["q"] >= 0).reindex(days)  # -999: missing
        observed.append(q.to_numpy(np.float64) * CFS)
    attrs = None
    for name in ("clim", "topo", "vege"):
        table = pd.read_csv(folder / "camels_attributes_v2.0" / f"camels_{name}.txt", sep=";",
                            dtype={"gauge_id": str}).set_index("gauge_id")
        attrs = table if attrs is None else attrs.join(table)
    attrs = attrs.loc[basins]
    return {"basins": basins, "days": days.to_numpy(), "forcings": np.stack(forcing),
            "observed": np.stack(observed), "static": attrs[list(STATIC)].to_numpy(np.float64),
            "area": attrs["area_gages2"].to_numpy(np.float64) * 1e6}


def lumped_network(basins: list[str], area: np.ndarray):
    """The basins as one-reach networks (one outlet each) of 1 m reaches, catchment area = basin area."""
    from thalweg.network import from_arrays

    ids = np.array([int(b) for b in basins])
    return from_arrays(ids, np.full(ids.size, -1), length=np.ones(ids.size), area=area, catchment_area=area)


def run(kind: str, data: dict, args: argparse.Namespace) -> dict:
    from thalweg.learning.splits import period_of
    from thalweg.learning.train import train
    from thalweg.params.models import build_model
    from thalweg.runoff.models import build_runoff_model

    net = lumped_network(data["basins"], data["area"])
    end = data["days"] + np.timedelta64(1, "D")  # a day's step ends at the next midnight
    cal, test = period_of(end, *TRAIN, label="calibration"), period_of(end, *TEST, label="validation")
    f = data["forcings"]
    stats = {v: [float(f[:, cal.start:cal.end, j].mean()), float(f[:, cal.start:cal.end, j].std())]
             for j, v in enumerate(FORCINGS)}
    model = build_runoff_model(kind, FORCINGS, n_catchments=net.n_reaches, static=data["static"],
                               static_names=STATIC, input_stats=stats, hidden=args.hidden, seed=args.seed)
    routing = build_model("prior", net, "pure_lag")
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = train(model, net, f, dt=86400.0, gauges=net.ids.tolist(), observed=data["observed"],
                    routing_model=routing, mode="runoff", calibration=cal, validation=test, warmup=args.warmup,
                    iterations=args.iterations, learning_rate=args.learning_rate, seed=args.seed, threads=1,
                    device="cpu", gauge_names=data["basins"])
    return {"model": kind, "hidden": args.hidden, "iterations": res.iterations, "best_iteration": res.best_iteration,
            "train_s": round(time.perf_counter() - t0, 1),
            "metrics": {b: {p: {k: m[p][k] for k in ("nse", "kge")} for p in ("calibration", "validation")}
                        for b, m in res.metrics_after.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA, help="the camels_us folder")
    parser.add_argument("--models", nargs="+", default=["lstm", "mclstm"], choices=["lstm", "mclstm"])
    parser.add_argument("--hidden", type=int, default=16, help="LSTM state size / MC-LSTM storages")
    parser.add_argument("--iterations", type=int, default=150, help="Adam steps over the whole training period")
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--warmup", type=int, default=90, help="first days left out of the loss and the metrics")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="one JSON line per model instead of a table")
    args = parser.parse_args(argv)
    data = read_camels(args.data)
    rows = [run(kind, data, args) for kind in args.models]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print(f"CAMELS-US, {len(data['basins'])} basins, daily Daymet; train {TRAIN[0]} .. {TRAIN[1]}, test "
          f"{TEST[0]} .. {TEST[1]}; hidden {args.hidden}, {args.iterations} iterations, 1 CPU thread")
    print(f"{'basin':<10} " + "  ".join(f"{r['model'] + ' train NSE/KGE':>22} {r['model'] + ' test NSE/KGE':>22}"
                                        for r in rows))
    for basin in data["basins"]:
        cells = []
        for r in rows:
            m = r["metrics"][basin]
            cells.append(f"{m['calibration']['nse']:>11.3f}/{m['calibration']['kge']:<10.3f} "
                         f"{m['validation']['nse']:>11.3f}/{m['validation']['kge']:<10.3f}")
        print(f"{basin:<10} " + "  ".join(cells))
    for r in rows:
        print(f"{r['model']}: {r['train_s']} s, best iteration {r['best_iteration']} of {r['iterations']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
