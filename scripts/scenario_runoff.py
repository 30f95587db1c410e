"""Write a runoff scenario: a runoff NetCDF with the runoff of the reaches upstream of one reach (itself included)
scaled by a factor (a land-use change, say: sealed soils in an upper basin giving half as much runoff again).

Every variable over the reach-id dimension is scaled; the file keeps its layout, units and time stamps, so
``thalweg route`` reads it as it reads the original.

Usage (the backend's Python):
    .venv/bin/python scripts/scenario_runoff.py resources/sample/cance_rivers.gpkg \
        resources/sample/cance_runoff.nc /tmp/cance_runoff_upper_x1.5.nc --upstream-of 37 --factor 1.5
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import xarray as xr

from thalweg.hydrography import read_network


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("network")
    p.add_argument("runoff")
    p.add_argument("output")
    p.add_argument("--upstream-of", type=int, required=True, metavar="REACH_ID")
    p.add_argument("--factor", type=float, required=True)
    p.add_argument("--layer", default=None)
    args = p.parse_args(argv)
    net = read_network(args.network, layer=args.layer)
    upstream = net.ids[np.atleast_1d(net.upstream_of(args.upstream_of))]
    with xr.open_dataset(args.runoff) as ds:
        out = ds.load()
    dims = [d for d in out.dims
            if d in out.coords and out[d].dtype.kind in "iu" and np.isin(out[d].values, net.ids).any()]
    if len(dims) != 1:
        raise SystemExit(f"{args.runoff}: cannot tell the reach-id dimension (candidates: {dims or 'none'})")
    dim = dims[0]
    scale = xr.DataArray(np.where(np.isin(out[dim].values, upstream), args.factor, 1.0), dims=[dim])
    for name, var in list(out.data_vars.items()):
        if dim in var.dims and np.issubdtype(var.dtype, np.floating):
            scaled = (var * scale).astype(var.dtype).transpose(*var.dims)
            scaled.attrs, scaled.encoding = var.attrs, var.encoding
            out[name] = scaled
    out.attrs["history"] = (f"{out.attrs.get('history', '')}\nrunoff of the {upstream.size} reaches upstream of "
                            f"reach {args.upstream_of} x {args.factor:g} (scripts/scenario_runoff.py)").strip()
    out.to_netcdf(args.output)
    print(f"{upstream.size} of {net.n_reaches} reaches scaled by {args.factor:g}: {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
