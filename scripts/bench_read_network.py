"""Benchmark of ``read_network`` (not a test): GeoPackage and GeoParquet with geometry, parquet with ids
only, and plain lines whose topology comes from the geometry.

    .venv/bin/python scripts/bench_read_network.py --reaches 200000
"""
from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from thalweg.hydrography import read_network
from thalweg.network import scheidegger_network
from thalweg.testing import write_layer


def _time(label: str, fn) -> None:
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = fn()
    print(f"  {label:<52} {time.perf_counter() - t:7.2f} s  ({net.n_reaches:,} reaches)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reaches", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    net = scheidegger_network(args.reaches, seed=args.seed, with_geometry=True)
    ds = np.where(net.downstream >= 0, net.ids[np.maximum(net.downstream, 0)], -1)
    perm = np.random.default_rng(args.seed).permutation(net.n_reaches)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        common = dict(lengths=net.length[perm], areas=net.area[perm], crs=net.crs)
        gpkg = write_layer(folder / "rivers.gpkg", "hydrorivers", net.ids[perm], ds[perm],
                           geometry=net.geometry[perm], **common)
        gpq = write_layer(folder / "rivers.parquet", "geoglows", net.ids[perm], ds[perm],
                          geometry=net.geometry[perm], **common)
        ids_only = write_layer(folder / "ids.parquet", "merit", net.ids[perm], ds[perm], **common)
        lines = write_layer(folder / "lines.gpkg", "lines", net.ids[perm], ds[perm], geometry=net.geometry[perm],
                            crs=net.crs)
        print(f"read_network on {net.n_reaches:,} reaches (rows shuffled):")
        _time("GeoPackage (HydroRIVERS fields) with geometry", lambda: read_network(gpkg))
        _time("GeoPackage without keeping geometry", lambda: read_network(gpkg, keep_geometry=False))
        _time("GeoParquet (GEOGloWS fields) with geometry", lambda: read_network(gpq))
        _time("parquet with ids only (MERIT fields)", lambda: read_network(ids_only))
        _time("plain lines, topology from geometry", lambda: read_network(lines))


if __name__ == "__main__":
    main()
