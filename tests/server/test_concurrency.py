"""Concurrent result reads against a real service (issue 8, finding 1): HDF5 is not thread-safe, so reads
of discharge files in the service's thread pool must never overlap; the service stays up, every answer 200."""
from __future__ import annotations

import concurrent.futures
import sys
import threading

import pytest

from thalweg.client import ClientError, start_server

from .conftest import finished_route_jobs

N_JOBS = 6  # more than the service's 4-job result cache
THREADS = 8
ROUNDS = 6


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A workspace with N_JOBS succeeded route jobs, and the answers of one client thread (the oracle for the
    concurrent ones), read by a service that has since stopped."""
    workspace = tmp_path_factory.mktemp("concurrent")
    made = finished_route_jobs(workspace, N_JOBS)
    jobs, reach = made["jobs"], made["reach"]
    with start_server(workspace, python=sys.executable) as server:
        client = server.client(timeout=60)
        expected = {j: {"hydrograph": client.hydrograph(j, reach)["simulated"],
                        "snapshot": client.snapshot(j, 40)["values"],
                        "summary": client.summary(j)["data"]["mean"]} for j in jobs}
    return {"workspace": workspace, "jobs": jobs, "expected": expected, "reach": reach}


def test_concurrent_result_reads_keep_the_service_alive(finished):
    """A fresh start (empty cache, every job read from its NetCDF file), 8 threads reading hydrographs,
    snapshots and summaries of 6 jobs in different orders: every answer is 200 and equals the single-thread
    answer, and the service is still alive afterwards."""
    jobs, expected, reach = finished["jobs"], finished["expected"], finished["reach"]
    with start_server(finished["workspace"], python=sys.executable) as server:
        client = server.client(timeout=60)
        barrier = threading.Barrier(THREADS)

        def reader(worker: int) -> int:
            barrier.wait()  # all threads start at once: the first reads of each job overlap
            answers = 0
            for r in range(ROUNDS):
                for k in range(N_JOBS):
                    job = jobs[(worker + r + k) % N_JOBS]
                    what = ("hydrograph", "snapshot", "summary")[(worker + k) % 3]
                    if what == "hydrograph":
                        got = client.hydrograph(job, reach)["simulated"]
                    elif what == "snapshot":
                        got = client.snapshot(job, 40)["values"]
                    else:
                        got = client.summary(job)["data"]["mean"]
                    assert got == expected[job][what], (job, what)
                    answers += 1
            return answers

        with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
            futures = [pool.submit(reader, w) for w in range(THREADS)]
            errors = []
            done = 0
            for f in futures:
                try:
                    done += f.result(timeout=300)
                except ClientError as exc:  # a 500, or no answer at all from a crashed service
                    errors.append(str(exc))
        assert not errors, f"{len(errors)} failed reads, first: {errors[0]}\n{server.output()[-3000:]}"
        assert done == THREADS * ROUNDS * N_JOBS
        assert server.running(), server.output()
        assert client.health()["status"] == "ok"
    assert server.process.returncode == 0, server.output()
