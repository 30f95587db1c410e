"""thalweg.client stands alone (the QGIS plugin ships the file): standard library only, no server needed."""
from __future__ import annotations

import base64
import subprocess
import sys

import numpy as np
import pytest

import thalweg.client as tc
from thalweg.client import ClientError, ThalwegClient, pack


def test_client_file_imports_only_the_standard_library():
    code = ("import importlib.util, sys; spec = importlib.util.spec_from_file_location('tc', sys.argv[1]); "
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
            "print(sorted({k.split('.')[0] for k in sys.modules} - set(sys.stdlib_module_names)"
            " - {'tc', '__main__', '_distutils_hack'}))")  # the last one is setuptools' .pth hook, always there
    out = subprocess.run([sys.executable, "-I", "-c", code, tc.__file__], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_pack_lists_and_arrays_alike():
    table = np.array([[1.5, 2.0, -3.25], [0.0, np.nan, 7.0]], dtype=np.float64)
    from_numpy = pack(table)
    from_lists = pack([[1.5, 2.0, -3.25], [0.0, None, 7.0]])
    assert from_numpy == from_lists and from_numpy["shape"] == [2, 3] and from_numpy["dtype"] == "float32"
    back = np.frombuffer(base64.b64decode(from_numpy["data"]), "<f4").reshape(2, 3)
    np.testing.assert_array_equal(back, table.astype(np.float32))
    wide = pack(table, "float64")
    np.testing.assert_array_equal(np.frombuffer(base64.b64decode(wide["data"]), "<f8").reshape(2, 3), table)
    with pytest.raises(ValueError, match="same number of steps"):
        pack([[1.0, 2.0], [3.0]])
    with pytest.raises(ValueError, match="2-D"):
        pack(np.zeros(4))


def test_unreachable_service_and_bad_connection_file(tmp_path):
    with pytest.raises(ClientError) as info:
        ThalwegClient("http://127.0.0.1:9", "x", timeout=2).status("a")  # port 9 (discard): nothing listens
    assert info.value.status is None and "cannot reach the Thalweg service" in info.value.message
    with pytest.raises(ClientError, match="cannot read the connection file"):
        ThalwegClient.from_connection_file(tmp_path / "none.json")
