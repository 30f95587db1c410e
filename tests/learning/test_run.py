"""run_fit: the one call behind `thalweg calibrate --model` and calibrate jobs, with its files."""
from __future__ import annotations

import json

import numpy as np
import pytest

from thalweg.errors import InputError
from thalweg.learning.run import run_fit
from thalweg.params.model_file import apply_model
from thalweg.params.models import prior_params

from ._fit_cases import basin, observe, true_k

pytestmark = pytest.mark.filterwarnings("ignore::thalweg.errors.ThalwegWarning")


def test_run_fit_writes_every_output_and_the_model_routes_again(tmp_path):
    b = basin(12, 2, 96)
    net = b.network
    reaches = net.ids[np.argsort(net.n_upstream)[::-1][:3]].tolist()
    obs = observe(net, b.runoff, {"k": true_k(net), "x": 0.25}, reaches, 3600.0)
    end = np.datetime64("2020-01-01T01:00", "ns") + np.arange(96) * np.timedelta64(1, "h")
    messages = []
    run = run_fit(net, b.runoff, dt=3600.0, time_end=end, gauge_reaches=reaches, observed=obs,
                  gauge_names=["A", "B", "C"], model="regression", calibration="2020-01-01/2020-01-02",
                  validation="2020-01-03/2020-01-04", validate_gauges=["C"], leave_one_out=True, iterations=3,
                  out_dir=tmp_path, name="t", progress=lambda f, m: messages.append((f, m)))
    assert sorted(run.outputs) == ["model", "params", "plot", "report"]
    record = json.loads(run.outputs["report"].read_text())
    assert record["settings"]["calibration"] == {"start": 0, "end": 48, "label": "calibration"}
    assert record["settings"]["validation"] == {"start": 48, "end": 96, "label": "validation"}
    assert record["metrics"]["after"]["C"]["role"] == "held-out" and sorted(record["leave_one_gauge_out"]) == \
        ["A", "B", "C"]
    assert "leave-one-gauge-out" in run.table and messages[-1] == (1.0, "done")
    assert any("loss" in m for _, m in messages)
    np.testing.assert_allclose(apply_model(run.outputs["model"], net)["k"], run.result.params["k"], rtol=1e-12)
    assert (apply_model(run.outputs["model"], net)["k"] != prior_params(net, "muskingum")["k"]).any()
    with pytest.raises(InputError, match=r"validation gauge\(s\) Z are not among the gauges \(A, B, C\)"):
        run_fit(net, b.runoff, dt=3600.0, time_end=end, gauge_reaches=reaches, observed=obs,
                gauge_names=["A", "B", "C"], validate_gauges=["Z"])
    with pytest.raises(InputError, match="is not START/END"):
        run_fit(net, b.runoff, dt=3600.0, time_end=end, gauge_reaches=reaches, observed=obs, calibration="2020")
