"""Invalid request bodies: each gets a 422 whose one-line message names the field and what is wrong."""
from __future__ import annotations

import json
import urllib.request

import pytest

from .conftest import expect_error

NET = {"ids": [1, 2, 3], "downstream_ids": [3, 3, -1], "length": [1000.0, 1500.0, 2000.0],
       "area": [10.0, 12.0, 30.0], "area_unit": "km2"}
RUNOFF = {"values": [[1.0, 2.0], [0.0, 1.0], [1.0, 1.0]], "dt": 3600.0, "start": "2020-01-01T00:00:00"}


def job(**changes):
    body = {"kind": "route", "network": dict(NET), "runoff": dict(RUNOFF)}
    for key, value in changes.items():
        part, _, sub = key.partition("__")
        if sub:
            body[part] = {**body[part], sub: value}
            if value is None:
                del body[part][sub]
        elif value is None:
            del body[part]
        else:
            body[part] = value
    return body


CASES = {
    "no kind": ({"network": "/tmp"}, ["kind: the body needs 'kind', one of: route, extract"]),
    "calibrate without gauges": (job(kind="calibrate"), ["gauges: Field required"]),
    "train without inputs": ({"kind": "train"}, ["network: Field required", "forcings: Field required",
                                                 "gauges: Field required", "observed: Field required"]),
    "unknown kind": ({"kind": "simulate"}, ["unknown job kind 'simulate'"]),
    "misspelt option": (job(sheme="muskingum"), ["sheme: unknown option; did you mean 'scheme'?"]),
    "missing runoff": (job(runoff=None), ["runoff: Field required"]),
    "lengths differ": (job(network__length=[1000.0]), ["network.length: has 1 values but 'ids' has 3"]),
    "area without unit": (job(network__area_unit=None), ["network.area_unit: is required with 'area'",
                                                         "'m2' or 'km2'"]),
    "area unit": (job(network__area_unit="acres"), ["network.area_unit: Input should be 'm2' or 'km2'"]),
    "id too large": (job(network__ids=[1, 2, 2**70]), ["network.ids.2", "less than or equal to"]),
    "ragged runoff": (job(runoff__values=[[1.0, 2.0], [1.0], [1.0, 1.0]]),
                      ["runoff.values: not a table: row 0 has 2 steps but row 1 has 1"]),
    "rows": (job(runoff__values=[[1.0, 2.0]]), ["runoff.values: has 1 rows but the network has 3 reaches"]),
    "dt zero": (job(runoff__dt=0), ["runoff.dt: Input should be greater than 0"]),
    "no start": (job(runoff__start=None), ["runoff.start: Field required"]),
    "bad start": (job(runoff__start="yesterday"), ["runoff.start", "datetime"]),
    "far future": (job(runoff__start="3020-01-01T00:00:00"), ["outside the supported years"]),
    "relative path": (job(runoff="data/m3_riv.nc"), ["runoff: 'data/m3_riv.nc' is a relative path",
                                                     "absolute path"]),
    "missing file": (job(runoff="/no/such/m3_riv.nc"), ["runoff: '/no/such/m3_riv.nc' does not exist"]),
    "unknown scheme": (job(scheme="muskinghum"), ["scheme: Input should be", "'muskingum'", "(got 'muskinghum')"]),
    "unknown parameter": (job(params={"kk": 3600.0}), ["params: the 'muskingum_nonneg' scheme takes no parameter(s) kk",
                                                        "Its parameters are: k, x"]),
    "parameter bounds": (job(params={"x": 0.9}), ["params.x: parameter 'x' = 0.9 is outside [0, 0.5]"]),
    "output name": (job(name="../../etc/x"), ["name: String should match pattern"]),
    "device": (job(device="tpu"), ["device: String should match pattern"]),
    "duplicate gauge": (job(gauges=[{"gauge_id": "A", "reach_id": 3}, {"gauge_id": "A", "reach_id": 1}]),
                        ["gauges: gauge id 'A' appears twice"]),
    "observed length": (job(gauges=[{"gauge_id": "A", "reach_id": 3, "observed": [1.0]}]),
                        ["gauges.observed: gauge 'A' has 1 values but the runoff has 2 steps"]),
    "network type": (job(network=5), ["network: expected a string (a path) or an object (got 5)"]),
    "packed size": (job(runoff__values={"dtype": "float32", "shape": [3, 2], "data": "AAAAAA=="}),
                    ["runoff.values.data: holds 4 bytes but shape [3, 2] of float32 needs 24"]),
    "packed base64": (job(runoff__values={"dtype": "float32", "shape": [3, 2], "data": "not base64!"}),
                      ["runoff.values.data: is not valid base64"]),
    "packed dims": (job(runoff__values={"dtype": "float32", "shape": [6], "data": "A" * 32}),
                    ["runoff.values.shape: List should have at least 2 items"]),
    "extract path": ({"kind": "extract", "network": "/no/such/rivers.gpkg"},
                     ["network: '/no/such/rivers.gpkg' does not exist"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_invalid_body_gets_a_readable_422(client, case):
    body, fragments = CASES[case]
    err = expect_error(lambda: client.submit(body), 422, *fragments)
    assert err.error == "ValidationError" and len(err.message) < 400, err.message
    assert err.body["errors"] and all({"field", "message"} <= set(e) for e in err.body["errors"])


@pytest.mark.parametrize("raw, fragment", [
    (b'{"kind": "route",', "body: not valid JSON at character"),
    (b"[1, 2]", "Input should be a valid dictionary"),
    (b"", "body: Field required"),
    (json.dumps(job(network__length=[1.0, float("nan"), 2.0])).encode(), "network.length.1: Input should be a "
                                                                          "finite number"),
])
def test_broken_json_gets_a_422(server, client, raw, fragment):
    req = urllib.request.Request(server.url + "/jobs", data=raw, method="POST",
                                 headers={"Authorization": f"Bearer {client.token}",
                                          "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=10)
    body = json.loads(info.value.read())
    assert info.value.code == 422 and fragment in body["message"], body


def test_body_without_json_content_type(server, client):
    req = urllib.request.Request(server.url + "/jobs", data=json.dumps(job()).encode(), method="POST",
                                 headers={"Authorization": f"Bearer {client.token}",
                                          "Content-Type": "text/plain"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=10)
    body = json.loads(info.value.read())
    assert info.value.code == 422 and "Content-Type: application/json" in body["message"]


def test_unknown_endpoint_and_method(client):
    expect_error(lambda: client.request("GET", "/nothing"), 404, "no endpoint GET /nothing")
    expect_error(lambda: client.request("PUT", "/jobs"), 405, "/jobs does not take PUT")
