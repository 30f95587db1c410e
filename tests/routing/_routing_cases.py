"""Shared cases for the routing tests: parameters per scheme, runoff, a small hand-made tree."""
from __future__ import annotations

import os
import subprocess
import sys
from importlib.util import find_spec

import numpy as np
import pytest
import torch
from thalweg.irf import Scheme
from thalweg.network import from_arrays

DT = 3600.0

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
requires_triton = pytest.mark.skipif(find_spec("triton") is None, reason="needs triton")


def run_check(script: str, *args: str, interpreter: bool = False, timeout: int = 1800) -> None:
    """Run a check script in a fresh Python (TRITON_INTERPRET must be set before triton is imported, so
    interpreted runs cannot share this process) and assert that it exited cleanly and printed OK."""
    env = dict(os.environ, TRITON_INTERPRET="1") if interpreter else None
    proc = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-4000:]


def scheme_params(scheme: Scheme, network, rng: np.random.Generator, *, max_travel: float = 6 * DT) -> dict:
    """Random in-bounds parameters for every reach, with travel times under ``max_travel`` s.

    Short kernels keep the float64 reference quick; the sub-stepped Muskingum needs 2K(1-x) >= dt/4
    (at most 4 sub-steps) for the same reason. Hayami keeps a Peclet number c L / D >= 2.
    """
    n = network.n_reaches
    p = {k: np.asarray(v, dtype=np.float64) for k, v in scheme.sample_params(n, rng).items()}
    tt_params = {k: torch.as_tensor(v) for k, v in p.items()}
    if scheme.uses_length:
        tt_params["length"] = torch.as_tensor(network.length)
    tt = scheme.travel_time(tt_params, DT).numpy()
    scale = np.minimum(max_travel / tt, 1.0)
    for spec in scheme.parameters:
        if spec.unit == "s":
            p[spec.name] = np.clip(p[spec.name] * scale, spec.lower, spec.upper)
        elif spec.unit == "m s-1":
            p[spec.name] = np.clip(p[spec.name] / scale, spec.lower, spec.upper)
    if scheme.name in ("muskingum_substep", "muskingum_nonneg"):
        p["k"] = np.maximum(p["k"], DT / (7.3 * (1.0 - p["x"])))  # s <= 4, off the ceil() boundary
    if "diffusivity" in p:
        p["diffusivity"] = np.clip(np.minimum(p["diffusivity"], p["celerity"] * network.length / 2.0), 10.0, None)
    return p


def runoff(network, rng: np.random.Generator, *, batch: int = 2, steps: int = 300) -> np.ndarray:
    """Gamma-distributed lateral runoff [batch, N, steps], m3/s, with some dry steps."""
    q = rng.gamma(2.0, 1.0, size=(batch, network.n_reaches, steps))
    q[rng.random(q.shape) < 0.2] = 0.0
    return q


def small_tree():
    """Nine reaches: two confluences, a chain and an outlet, rows not in topological order.

    ::

        7   3   5
         \\ /    |
          2     8   9
           \\   /   /
             1 ---
             |
             4 -> outlet,  6 -> its own outlet
    """
    ids = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9])
    down = np.array([4, 1, 2, -1, 8, -1, 2, 1, 1])
    length = np.linspace(900.0, 4000.0, 9)
    area = np.arange(1, 10) * 1e6
    return from_arrays(ids, down, length, area, check_area="ignore")
