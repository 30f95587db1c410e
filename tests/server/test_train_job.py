"""Train jobs through the real service: the sample basin's forcings, gauges and observations."""
from __future__ import annotations

from pathlib import Path

import pytest

from thalweg.demo import sample_dir


@pytest.mark.filterwarnings("ignore::thalweg.errors.ThalwegWarning")
@pytest.mark.parametrize("mode", ["end-to-end", "two-step"])
def test_train_job_on_the_sample_basin(client, mode):
    s = sample_dir()
    forcings = str(s / "cance_forcings.nc")
    job = client.submit({"kind": "train", "label": f"train {mode}", "network": str(s / "cance_rivers.gpkg"),
                         "forcings": {"precipitation": forcings, "pet": forcings},
                         "gauges": str(s / "cance_gauges.csv"),
                         "observed": str(s / "cance_qobs.csv"), "calibration": "2014-09-15/2014-11-14",
                         "validation": "2014-11-15/2015-01-15", "iterations": 1, "routing_iterations": 1,
                         "mode": mode, "name": "cance"})
    assert job["kind"] == "train"
    final = client.wait(job["id"], interval=0.1, timeout=300)
    assert final["state"] == "succeeded", final["error"]
    assert {"model", "report", "plot", "params", "runoff"} <= set(final["outputs"])
    assert all(Path(p).is_file() for p in final["outputs"].values())
    result = final["result"]
    assert result["mode"] == mode and result["runoff_model"] == "gr4"
    after = result["metrics"]["after"]
    assert set(after) == {"V3524010", "V3515010", "V3517010"}
    assert all(after[g]["validation"]["n"] > 1000 for g in after)


def test_train_job_refuses_an_unknown_model(client):
    from thalweg.client import ClientError

    s = sample_dir()
    with pytest.raises(ClientError, match="runoff_model"):
        client.submit({"kind": "train", "network": str(s / "cance_rivers.gpkg"),
                       "forcings": {"precipitation": str(s / "cance_forcings.nc")},
                       "gauges": str(s / "cance_gauges.csv"),
                       "observed": str(s / "cance_qobs.csv"), "runoff_model": "gr5"})
