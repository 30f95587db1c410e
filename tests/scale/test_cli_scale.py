"""``thalweg route`` streamed, on Dask or over GPUs from the command line: the user trial's findings (replacing a
zarr store, --resume and --overwrite, combinations of flags that were ignored, warnings that were lost or printed
twice, refusals that name the CLI's flags)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from thalweg.cli import EXIT_INPUT, main

SAMPLE = Path(__file__).resolve().parents[2] / "resources" / "sample"
N, R = SAMPLE / "cance_rivers.gpkg", SAMPLE / "cance_runoff.nc"

pytestmark = pytest.mark.skipif(not N.exists(), reason="the Cance sample is not there")


def _route(out, *extra, network=N, runoff=R):
    return main(["route", str(network), str(runoff), "-o", str(out), "-q", *extra])


def _errors(capsys) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    return [x for x in err.strip().split("\n") if x]


def _q(path):
    with (xr.open_zarr(path, decode_times=False) if str(path).endswith(".zarr") else xr.open_dataset(path)) as ds:
        return np.asarray(ds["Q"].values)


@pytest.mark.parametrize("stream", ["never", "always"])
def test_overwrite_replaces_a_zarr_store(tmp_path, capsys, stream):
    out = tmp_path / "z1" / "Q.zarr"
    assert _route(out, "--stream", stream) == 0
    first = _q(out)
    assert (out / "zarr.json").exists() or (out / ".zgroup").exists()
    capsys.readouterr()
    assert _route(out, "--stream", stream) == EXIT_INPUT  # exists: not replaced without --overwrite
    err = _errors(capsys)[-1]
    assert "exists" in err and "--overwrite" in err and "OUT.zarr" in err, err
    (out / "stale").write_text("from the first run")
    assert _route(out, "--stream", stream, "--overwrite", "--k", "7200") == 0, capsys.readouterr().err
    assert not (out / "stale").exists()  # the store was replaced as a whole
    second = _q(out)
    assert second.shape == first.shape and not np.allclose(second, first)
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".Q.")]  # no side names left


def test_a_folder_that_is_not_a_zarr_store_is_still_refused(tmp_path, capsys):
    out = tmp_path / "Q.zarr"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert _route(out, "--overwrite") == EXIT_INPUT
    err = _errors(capsys)[-1]
    assert "not a zarr store" in err and "OUT.zarr" in err, err
    assert (out / "notes.txt").exists()
