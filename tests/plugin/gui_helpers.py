"""Helpers of the plugin GUI tests (results layer, hydrograph, panel): a routed sample job and an oracle that
reads the backend's NetCDF with the backend's own Python (xarray), independent of the plugin's readers."""
from __future__ import annotations

import json
import subprocess

OUTLET = 101  # LINKNO of the reach ending at the outlet gauge V3524010 (resources/sample/README.md)
GAUGE_REACHES = {"V3524010": 101, "V3515010": 37, "V3517010": 19}


def route_body(sample, **extra):
    """The route job of the sample basin, with its gauges and observations."""
    return {"kind": "route", "network": str(sample["rivers"]), "layer": "rivers", "runoff": str(sample["runoff"]),
            "gauges": str(sample["gauges"]), "observed": str(sample["observed"]), "label": "Cance", **extra}


def run_route(backend, sample, **extra):
    """Run the sample's route job to its end (blocking, in the test's thread); the succeeded record."""
    from thalweg.service.tasks import run_job

    record = run_job(backend, route_body(sample, **extra), is_canceled=lambda: False)
    assert record["state"] == "succeeded", record
    return record


_ORACLE = """
import json, sys
import numpy as np, xarray as xr
ds = xr.open_dataset(sys.argv[1])
ids = ds["riverId"].values.astype("int64")
out = {"ids": ids.tolist(), "time": [str(t)[:19] for t in ds["time"].values]}
steps = json.loads(sys.argv[2]); reaches = json.loads(sys.argv[3])
q = ds["Q"].values.astype("float64")
out["steps"] = {str(s): q[:, s].tolist() for s in steps}
out["reaches"] = {str(r): q[list(ids).index(r)].tolist() for r in reaches}
print(json.dumps(out))
"""


def netcdf_oracle(backend_settings, path, steps=(), reaches=()):
    """The backend's NetCDF read by the backend's Python (xarray): ids, times (step ends), some columns (steps)
    and rows (reaches), m3/s."""
    from thalweg.service.process import clean_environment

    proc = subprocess.run([backend_settings.backend_python, "-c", _ORACLE, str(path), json.dumps(list(steps)),
                           json.dumps(list(reaches))], capture_output=True, text=True,
                          env=clean_environment(backend_settings), timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)
