"""Several processes (2 CPU processes with gloo here; GPUs with NCCL where there are): the same discharge as one
process bit for bit, the same loss curve and gradients as a one-process loop, the environment of every child,
and the refusals. Each test starts its processes once (process start, torch's import, dominates their time)."""
from __future__ import annotations

import copy
import os
import warnings

import numpy as np
import pytest
import torch
from thalweg.distributed import NO_MULTICAST, fit, launch, plan, resolve_world, route
from thalweg.errors import InputError, ThalwegWarning
from thalweg.learning.losses import get_loss
from thalweg.network import from_arrays, scheidegger_network
from thalweg.params import resolve_params
from thalweg.params.models import build_model
from thalweg.routing import route as route_one
from thalweg.routing import route_reference
from thalweg.scale import clusters, route_partitioned

DT = 3600.0


@pytest.fixture(scope="module")
def forest():
    """Many basins of unequal size and one deep basin (cut into clusters over several stages)."""
    deep = scheidegger_network(500, seed=7, single_basin=True)
    many = scheidegger_network(400, seed=11)
    ids = np.r_[deep.ids, many.ids + 10_000]
    down = np.r_[np.where(deep.downstream >= 0, deep.ids[np.maximum(deep.downstream, 0)], -1),
                 np.where(many.downstream >= 0, many.ids[np.maximum(many.downstream, 0)] + 10_000, -1)]
    return from_arrays(ids, down, np.r_[deep.length, many.length], np.r_[deep.area, many.area])


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        return fn(*args, **kwargs)


def test_two_processes_route_bit_identical_to_one(forest):
    params = _quiet(resolve_params, forest, "muskingum_nonneg")[0]
    q = np.random.default_rng(1).gamma(2.0, 1.5, size=(2, forest.n_reaches, 120)).astype(np.float32)
    whole = _quiet(route_one, forest, q, params, dt=DT).numpy()
    got, times = _quiet(route, forest, q, params, dt=DT, world_size=2, device="cpu", return_times=True)
    assert got.dtype == np.float32 and got.shape == whole.shape
    assert np.array_equal(got, whole)  # the same kernels on the same rows: bit for bit
    assert [t.rank for t in times] == [0, 1] and sum(t.reaches for t in times) == forest.n_reaches
    assert min(t.reaches for t in times) > 0.4 * forest.n_reaches  # balanced by work


def test_cut_basins_hand_outflow_between_processes_chunk_by_chunk(forest):
    """Clusters over 2 processes: outflow of upstream clusters crosses ranks (all_gather) stage by stage, in time
    chunks with the warm state carried."""
    params = _quiet(resolve_params, forest, "muskingum")[0]
    q = np.random.default_rng(2).gamma(2.0, 1.5, size=(forest.n_reaches, 90))
    stages_plan = plan(forest, 2, max_reaches=40)
    assert len(stages_plan) > 2
    # some stage-1+ piece of one rank takes inflow routed by the other rank: the transfer is exercised
    owner = np.empty(forest.n_reaches, int)
    for bins in stages_plan:
        for rank, p in enumerate(bins):
            if p is not None:
                owner[p.reaches] = rank
    assert any(np.any(owner[p.inflow_from] != rank) for bins in stages_plan[1:] for rank, p in enumerate(bins)
               if p is not None)
    # time chunks too: each rank carries its pieces' warm state (and the transfer filter's) from chunk to chunk
    got = _quiet(route, forest, q, params, "muskingum", dt=DT, world_size=2, device="cpu", max_reaches=40,
                 dtype=torch.float64, chunk_steps=40)
    states, parts = None, []
    for a, b in ((0, 40), (40, 80), (80, 90)):
        part, states = _quiet(route_partitioned, forest, clusters(forest, 40), q[:, a:b], params, "muskingum", dt=DT,
                              n_bins=2, dtype=torch.float64, states=states, return_state=True)
        parts.append(part)
    assert np.array_equal(got, np.concatenate(parts, axis=-1))  # the same pieces, chunks and transfers
    expect = _quiet(route_reference, forest, q, params, "muskingum", dt=DT)  # the float64 recursion
    np.testing.assert_allclose(got, expect, rtol=1e-9, atol=1e-9 * np.abs(expect).max())


@pytest.mark.parametrize("kind", ["regression", "per-reach"])  # weights shared by every basin; one per reach + penalty
def test_data_parallel_fit_has_the_one_process_loss_curve_and_gradients(forest, kind):
    scheme, steps, iterations = "muskingum", 100, 4
    prior = _quiet(resolve_params, forest, scheme)[0]
    rng = np.random.default_rng(5)
    runoff = rng.gamma(2.0, 1.5, size=(forest.n_reaches, steps))
    # gauges at outlets of several basins (both ranks get some) and inside the deep one
    outlets = forest.outlets[np.argsort(-np.bincount(forest.basin)[forest.basin[forest.outlets]])][:5]
    gauges = forest.ids[np.r_[outlets, np.flatnonzero(forest.basin == forest.basin[outlets[0]])[10]]]
    truth = {"k": prior["k"] * 1.6, "x": np.full(forest.n_reaches, 0.2)}
    observed = _quiet(route_one, forest, runoff, truth, scheme, dt=DT, at=gauges, dtype=torch.float64).numpy()
    model = build_model(kind, forest, scheme, hidden=(6,), seed=3) if kind == "regression" else \
        build_model(kind, forest, scheme, prior_weight=1e-2, smooth_weight=1e-1)

    result = _quiet(fit, copy.deepcopy(model), forest, runoff, dt=DT, gauges=gauges, observed=observed,
                    world_size=2, iterations=iterations, learning_rate=0.05, warmup=10, device="cpu",
                    dtype=torch.float64, record_gradients=True)
    assert sorted(result.gauges_per_rank) != [0, gauges.size] and sum(result.gauges_per_rank) == gauges.size

    # the oracle: one process, the whole network, the plain loss over all gauges
    oracle = copy.deepcopy(model)
    weights = [w for w in oracle.parameters() if w.requires_grad]
    opt = torch.optim.Adam(weights, lr=0.05)
    obs = torch.as_tensor(np.where(np.arange(steps) < 10, np.nan, observed))
    std = torch.as_tensor(np.nanstd(obs.numpy(), axis=-1))
    losses, grads = [], []
    for _ in range(iterations):
        opt.zero_grad()
        q = _quiet(route_one, forest, torch.as_tensor(runoff), oracle(), scheme, dt=DT, at=gauges.tolist(),
                   dtype=torch.float64)
        value = get_loss("nse")(q, obs, std) + oracle.penalty()
        value.backward()
        losses.append(float(value.detach()))
        grads.append({n: w.grad.numpy().copy() for n, w in oracle.named_parameters() if w.requires_grad})
        opt.step()
    np.testing.assert_allclose(result.losses, losses, rtol=1e-10)
    assert losses[-1] < losses[0]  # it learns
    for got, want in zip(result.gradients, grads):
        assert got.keys() == want.keys()
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-8, atol=1e-12 * np.abs(want[name]).max(),
                                       err_msg=name)
    assert any(np.abs(g).max() > 0 for g in result.gradients[-1].values())
    if kind == "per-reach":  # the penalty counts once, not once per process
        assert float(oracle.penalty().detach()) > 0
    for name, value in oracle.state_dict().items():
        np.testing.assert_allclose(result.state[name], value.numpy(), rtol=1e-8, atol=1e-12, err_msg=name)


def _probe(info, payload):
    """Run in each child: what it sees of itself."""
    import torch.distributed as dist

    seen = torch.tensor([float(info.rank + 1)], device=info.device)  # NCCL reduces GPU tensors
    dist.all_reduce(seen)
    if payload == "fail" and info.rank == 1:
        raise InputError("rank 1 refuses.", path="x.nc", field="runoff", ids=[7, 8], hint="Do it otherwise.")
    names = list(NO_MULTICAST) + ["RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"]
    return {"env": {k: os.environ.get(k) for k in names}, "backend": dist.get_backend(), "sum": float(seen),
            "device": info.device, "pid": os.getpid()}


def test_children_get_the_torchrun_variables_and_multicast_off(monkeypatch):
    monkeypatch.setenv("NCCL_NVLS_ENABLE", "1")  # whatever the caller's environment says, children get 0
    out = launch(_probe, None, 2, device="cpu")
    assert [r["env"]["RANK"] for r in out] == ["0", "1"]
    for rank, r in enumerate(out):
        assert r["env"]["NCCL_NVLS_ENABLE"] == "0" and r["env"]["TORCH_SYMM_MEM_DISABLE_MULTICAST"] == "1"
        assert r["env"]["NVSHMEM_DISABLE_NVLS"] == "1"
        assert r["env"]["WORLD_SIZE"] == "2" and r["env"]["LOCAL_RANK"] == str(rank)
        assert r["backend"] == "gloo" and r["device"] == "cpu" and r["sum"] == 3.0  # one process group
    assert out[0]["pid"] != out[1]["pid"] != os.getpid()


def test_a_child_error_reaches_the_caller_as_raised():
    with pytest.raises(InputError, match="rank 1 refuses") as err:
        launch(_probe, "fail", 2, device="cpu")
    assert err.value.path == "x.nc" and err.value.field == "runoff" and err.value.ids == [7, 8]
    assert err.value.hint == "Do it otherwise."


def test_more_gpus_than_the_host_has_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_world(2, "auto") == ("cuda", "nccl", None)
    with pytest.raises(InputError, match="4 GPUs were asked for; torch sees 2") as err:
        resolve_world(4, "auto")
    assert err.value.field == "gpus"
    with pytest.raises(InputError, match="one GPU"):
        resolve_world(2, "cuda:1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(InputError, match="torch sees no GPU"):
        resolve_world(2, "cuda")
    kind, backend, note = resolve_world(3, "auto")  # no GPU: CPU processes, and it says so
    assert (kind, backend) == ("cpu", "gloo") and "3 CPU processes (gloo)" in note
    with pytest.raises(InputError, match=">= 1"):
        resolve_world(0, "cpu")


requires_two_gpus = pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2,
                                       reason="needs 2 CUDA GPUs")


@pytest.mark.gpu
@requires_two_gpus
def test_two_gpus_route_bit_identical_to_one_gpu(forest):
    """NCCL: each rank on its own GPU, the same discharge as one GPU bit for bit; the cut basins' outflow crosses
    GPUs through NCCL."""
    params = _quiet(resolve_params, forest, "muskingum_nonneg")[0]
    q = np.random.default_rng(1).gamma(2.0, 1.5, size=(forest.n_reaches, 200)).astype(np.float32)
    one_gpu = _quiet(route_one, forest, torch.as_tensor(q, device="cuda"), params, dt=DT).cpu().numpy()
    got = _quiet(route, forest, q, params, dt=DT, world_size=2, device="cuda")
    assert np.array_equal(got, one_gpu)
    cut = _quiet(route, forest, q, params, dt=DT, world_size=2, device="cuda", max_reaches=40)
    np.testing.assert_allclose(cut, one_gpu, rtol=2e-5, atol=1e-5 * np.abs(one_gpu).max())
    out = launch(_probe, None, 2, device="cuda")
    assert [r["backend"] for r in out] == ["nccl", "nccl"] and [r["device"] for r in out] == ["cuda:0", "cuda:1"]
    assert all(r["env"]["NCCL_NVLS_ENABLE"] == "0" for r in out)
