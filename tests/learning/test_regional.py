"""Regionalisation: a regression model trained across basins at once, scored on a basin held out of the training."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from thalweg.errors import InputError
from thalweg.learning.fit import fit
from thalweg.learning.regional import merge_basins
from thalweg.params.models import build_model, prior_params

from ._fit_cases import basin, observe, true_k

pytestmark = pytest.mark.filterwarnings("ignore::thalweg.errors.ThalwegWarning")
DT = 3600.0


def test_merged_basins_route_as_each_basin_alone():
    parts = [basin(12, s, 80) for s in (1, 2)]
    merged = merge_basins([p.network for p in parts], [p.runoff for p in parts], names=["a", "b"])
    assert merged.network.n_reaches == sum(p.network.n_reaches for p in parts)
    for b, part in enumerate(parts):
        own = part.network.ids[part.network.outlets].tolist()
        alone = observe(part.network, part.runoff, prior_params(part.network, "muskingum"), own, DT)
        joined = observe(merged.network, merged.runoff, prior_params(merged.network, "muskingum"),
                         merged.reach_ids(["a", "b"][b], own), DT)
        np.testing.assert_allclose(joined, alone, rtol=1e-12)
    with pytest.raises(InputError, match="basin b has no reach 999"):
        merged.reach_ids("b", [999])


def test_regression_across_basins_scores_an_unseen_basin():
    parts = [basin(20, s, 240) for s in (1, 4, 7)]
    merged = merge_basins([p.network for p in parts], [p.runoff for p in parts], names=["a", "b", "c"])
    net = merged.network
    gauges, held = [], []
    for b, part in enumerate(parts):
        top = part.network.ids[np.argsort(part.network.n_upstream)[::-1][[0, 4]]].tolist()
        ids = merged.reach_ids(b, top)
        gauges += ids
        held += ids if b == 2 else []  # basin c: spatial validation only
    obs = observe(net, merged.runoff, {"k": true_k(net), "x": 0.25}, gauges, DT)
    model = build_model("regression", net, learn=["k"], seed=0)
    res = fit(model, net, merged.runoff, dt=DT, gauges=gauges, observed=obs, validation_gauges=held,
              iterations=20, optimiser="lbfgs", dtype=torch.float64, engine="exact")
    unseen = [res.metrics_after[str(g)] for g in held]
    assert all(m["role"] == "held-out" for m in unseen)
    assert min(m["calibration"]["nse"] for m in unseen) >= 0.999, unseen
    assert max(res.metrics_before[str(g)]["calibration"]["nse"] for g in held) < 0.99
    # the printed report says the spatial-validation skill: the median over the held-out gauges
    from thalweg.learning.report import format_metrics

    line = next(ln for ln in format_metrics(res).splitlines() if "held-out gauges (spatial validation)" in ln)
    assert f"NSE {np.median([m['calibration']['nse'] for m in unseen]):.4f}" in line
    assert line.startswith("median over 2 held-out gauges")
