"""The kernel-support rule (taps holding all but 1e-13 of each kernel's mass): the torch version the GPU
engine computes on the device against the compiled one, and the mass it leaves out."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from thalweg.irf import SCHEMES
from thalweg.irf.base import taps_support
from thalweg.routing import _cpu

N = 400


def _params(name: str, rng: np.random.Generator) -> dict:
    def u(lo, hi):
        return torch.as_tensor(rng.uniform(lo, hi, N))

    return {"hayami": {"celerity": u(0.1, 3.0), "diffusivity": u(10.0, 1e4), "length": u(100.0, 8000.0)},
            "pure_lag": {"lag": u(0.0, 40 * 3600.0)},
            "nash_cascade": {"tau": u(60.0, 40000.0), "n": u(0.3, 6.0)}}[name]


@pytest.mark.parametrize("name", ["hayami", "pure_lag", "nash_cascade"])
def test_torch_support_matches_compiled_and_keeps_the_mass(name):
    if not _cpu.available():
        pytest.skip("needs the compiled CPU engine")
    k = SCHEMES[name].kernels(_params(name, np.random.default_rng(1)), 3600.0, 1000)
    c0, c1 = _cpu.kernel_support(k.h, None)
    t0, t1 = taps_support(k.h, None, 1e-13)
    # the tail sum is total - head (one scan): its rounding moves the cut by a few taps of ~1e-15 mass each
    assert np.abs(c0 - t0.numpy()).max() <= 8 and np.abs(c1 - t1.numpy()).max() <= 8
    h = k.h.abs()
    taps = torch.arange(h.shape[-1])[None, :]
    inside = (taps >= t0[:, None]) & (taps < t1[:, None])
    left_out = (h * ~inside).sum(-1) / h.sum(-1)
    assert float(left_out.max()) <= 3e-13
    if name == "pure_lag":  # two taps (one where the lag is a whole number of steps)
        assert int((t1 - t0).max()) <= 2
