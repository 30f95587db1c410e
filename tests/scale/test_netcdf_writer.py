"""The NetCDF writers write through netCDF4 directly (no xarray objects: building them imports dask and distributed
where installed, a second of a streamed CPU run): the files are the ones xarray's ``to_netcdf`` wrote before, and a
streamed ``thalweg route`` NetCDF in -> NetCDF out imports neither ``dask.array`` nor ``distributed``."""
from __future__ import annotations

import json
import subprocess
import sys

import netCDF4
import numpy as np
import pytest
from thalweg.results import writers
from thalweg.results.discharge import Discharge


def _discharge(n: int = 1100, t: int = 70, ids_scale: int = 3) -> Discharge:
    rng = np.random.default_rng(0)
    q = rng.random((n, t)).astype(np.float32)
    q[3, 4] = np.nan
    time = np.datetime64("2001-01-01T01:00", "ms") + np.arange(t) * np.timedelta64(3600, "s")
    return Discharge(q, np.arange(1, n + 1) * ids_scale, time, 3600.0, {"scheme": "x", "runoff": "r.nc", "n": 3,
                                                                          "f": 1.5})


def _xarray_write(path, layout, data, compression):
    """The oracle: the same layout written by xarray's to_netcdf with the encoding the writers gave it before."""
    ds = writers._to_xarray(layout)
    encoding = {name: {"_FillValue": None} for name in ds.variables}
    for name in data:
        var = ds[name]
        chunks = tuple(writers._chunk(size, writers._CHUNK_STEPS if dim == "time" else writers._CHUNK_REACHES)
                       for dim, size in zip(var.dims, var.shape))
        encoding[name] = {"_FillValue": writers._FILL, "dtype": "float32", "chunksizes": chunks,
                          **({"zlib": True, "complevel": compression, "shuffle": True} if compression else {})}
    ds.to_netcdf(path, format="NETCDF4", engine="netcdf4", encoding=encoding, unlimited_dims=["time"])


def _describe(path) -> dict:
    with netCDF4.Dataset(path) as ds:
        ds.set_auto_maskandscale(False)
        out = {"dims": [(k, len(v), v.isunlimited()) for k, v in ds.dimensions.items()],
               "global": [(k, str(ds.getncattr(k))) for k in ds.ncattrs() if k != "history"],
               "order": list(ds.variables)}
        for name, v in ds.variables.items():
            out[name] = (str(v.dtype), v.dimensions, v.chunking(), v.filters(),
                         [(a, repr(v.getncattr(a))) for a in v.ncattrs()], np.asarray(v[...]).tobytes())
    return out


@pytest.mark.parametrize("kind, options", [
    ("q", {"compression": 0}),
    ("q", {"compression": 1, "located": True, "id_name": "river_id"}),
    ("qout_mean", {"compression": 0, "located": True}),
    ("qout_end", {"compression": 2}),
    ("qout_mean", {"compression": 0, "id_name": "river_id", "big_ids": True}),
])
def test_netcdf_files_are_the_ones_xarray_wrote(tmp_path, kind, options):
    d = _discharge(ids_scale=2**33 if options.get("big_ids") else 3)  # int64 ids beyond int32
    n = d.n_reaches
    lat, lon = (np.linspace(0, 1, n), np.linspace(2, 3, n)) if options.get("located") else (None, None)
    compression = options["compression"]
    if kind == "q":
        rid = options.get("id_name", "riverId")
        layout, data = writers._q_layout(d, rid, lat, lon), ["Q"]
        writers.write_q(tmp_path / "new.nc", d, id_name=rid, lat=lat, lon=lon, compression=compression)
    else:
        convention = kind.split("_")[1]
        rid = options.get("id_name", "rivid")
        writers.write_qout(tmp_path / "new.nc", d, convention, lat=lat, lon=lon, id_name=rid, compression=compression)
        # the layout write_qout builds, captured on its way to the file
        captured = {}
        real = writers._write_netcdf
        try:
            writers._write_netcdf = lambda path, lay, dat, comp: captured.update(layout=lay, data=dat)
            writers.write_qout(tmp_path / "unused.nc", d, convention, lat=lat, lon=lon, id_name=rid,
                               compression=compression)
        finally:
            writers._write_netcdf = real
        layout, data = captured["layout"], captured["data"]
    _xarray_write(tmp_path / "old.nc", layout, data, compression)
    new, old = _describe(tmp_path / "new.nc"), _describe(tmp_path / "old.nc")
    assert new.keys() == old.keys()
    for key in old:
        assert new[key] == old[key], key


def test_streamed_netcdf_run_imports_neither_dask_array_nor_distributed(tmp_path):
    from thalweg.network import scheidegger_network

    net = scheidegger_network(200, seed=3)
    down = np.where(net.downstream >= 0, net.ids[np.maximum(net.downstream, 0)], -1)
    import pandas as pd
    import xarray as xr

    pd.DataFrame({"reach_id": net.ids, "downstream_id": down, "length_m": net.length, "area_m2": net.area}
                 ).to_parquet(tmp_path / "net.parquet")
    time = np.datetime64("2020-01-01T01:00", "ns") + np.arange(48) * np.timedelta64(3600, "s")
    values = np.random.default_rng(2).gamma(1.5, 1.0, (48, net.n_reaches)).astype(np.float32)
    xr.Dataset({"qlateral": (("time", "river_id"), values, {"units": "m3 s-1"})},
               coords={"time": time, "river_id": net.ids}).to_netcdf(tmp_path / "runoff.nc")
    code = ("import json, sys\nfrom thalweg.cli import main\n"
            "rc = main(sys.argv[1:])\n"
            "print(json.dumps({'rc': rc, 'loaded': sorted(m for m in ('dask.array', 'distributed') "
            "if m in sys.modules)}))\n")
    proc = subprocess.run([sys.executable, "-c", code, "route", str(tmp_path / "net.parquet"),
                           str(tmp_path / "runoff.nc"), "-o", str(tmp_path / "q.nc"), "--stream", "always",
                           "--chunk-steps", "16", "--no-gpkg", "-q"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {"rc": 0, "loaded": []}
    with netCDF4.Dataset(tmp_path / "q.nc") as ds:
        assert ds["Q"].shape == (net.n_reaches, 48)
