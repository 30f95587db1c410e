"""CPU work items: consecutive basins packed into segments, routed in one compiled call each."""
from __future__ import annotations

import collections
import gc
import os
import threading
import warnings

import numpy as np
import pytest
import torch
from _routing_cases import DT, runoff, scheme_params
from thalweg.errors import ThalwegWarning
from thalweg.irf import SCHEMES
from thalweg.network import scheidegger_network
from thalweg.routing import _cpu, route, route_reference
from thalweg.routing.topology import topology
from thalweg.testing import assert_discharge_close


@pytest.fixture(scope="module")
def many_basins():
    net = scheidegger_network(600, seed=2)
    assert net.outlets.size > 10
    return net


@pytest.mark.parametrize("parts", [1, 3, 8, 10_000])
def test_segments_cover_every_reach_once_at_basin_ends(many_basins, parts):
    topo = topology(many_basins)
    seg = _cpu._segments(topo, parts)
    assert seg[0][0] == 0 and seg[-1][1] == topo.n
    assert all(a1 == b0 for (_, a1), (b0, _) in zip(seg, seg[1:]))
    assert set(b for _, b in seg) <= set(int(x) for x in topo.basin_ptr)
    # none past the target unless it is a single basin; none that could take in its successor's first basin
    # (so at most 2 parts + 1 segments)
    target = -(-topo.n // parts)
    bp = np.asarray(topo.basin_ptr)
    for i, (a, b) in enumerate(seg):
        single = bp[np.searchsorted(bp, a) + 1] == b
        assert b - a <= target or single
        if i + 1 < len(seg):
            assert bp[np.searchsorted(bp, b) + 1] - a > target
    assert len(seg) <= 2 * max(parts, 1) + 1


@pytest.mark.parametrize("scheme", ["muskingum", "hayami"])
def test_threads_and_segments_route_like_the_reference(many_basins, scheme):
    if not _cpu.available():
        pytest.skip("needs the compiled CPU engine")
    rng = np.random.default_rng(11)
    params = scheme_params(SCHEMES[scheme], many_basins, rng, max_travel=2 * DT)
    q = runoff(many_basins, rng, batch=3, steps=120)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        ref = route_reference(many_basins, q, params, scheme, dt=DT)
        before = torch.get_num_threads()
        try:
            outs = []
            for threads in (1, 2):
                torch.set_num_threads(threads)
                qq = torch.as_tensor(q).requires_grad_(True)
                out = route(many_basins, qq, params, scheme, dt=DT, engine="exact", dtype=torch.float64)
                out.sum().backward()
                outs.append((out.detach(), qq.grad))
        finally:
            torch.set_num_threads(before)
    assert_discharge_close(outs[0][0], ref, rtol=1e-10, ids=many_basins.ids)
    for a, b in zip(*outs):
        assert float((a - b).abs().max()) <= 1e-12 * float(b.abs().max())


def test_freed_output_buffers_are_reused_bounded_and_never_while_in_use(monkeypatch):
    """_cpu.empty: a freed large buffer serves the next one of exactly its size; one that a view still uses is
    not handed out; the pool keeps at most POOL_BYTES (0: none)."""
    if not hasattr(_cpu.mmap, "MADV_HUGEPAGE"):
        pytest.skip("huge-page buffers are Linux's")
    gc.collect()  # earlier tests' tensors in reference cycles: freed now, not into this test's pool
    monkeypatch.setattr(_cpu, "_freed", [])
    monkeypatch.setattr(_cpu, "_returned", collections.deque())
    monkeypatch.setattr(_cpu, "POOL_BYTES", 64 << 20)
    shape = (4, 1 << 20)  # 16 MiB of float32, the smallest size that is pooled
    a = _cpu.empty(shape, torch.float32)
    ptr = a.data_ptr()
    del a
    assert [size for size, _ in _cpu._freed] == [16 << 20]
    b = _cpu.empty(shape, torch.float32)
    assert b.data_ptr() == ptr and not _cpu._freed
    view = b[1:3]
    del b
    c = _cpu.empty(shape, torch.float32)  # the view keeps the buffer: a new one
    assert c.data_ptr() != ptr
    c.fill_(1.0)
    assert view.data_ptr() == ptr + (1 << 22)
    del view, c
    assert sorted(size for size, _ in _cpu._freed) == [16 << 20, 16 << 20]
    assert _cpu.empty((2, 1 << 20), torch.float64).data_ptr() == ptr  # the same bytes in float64: the oldest one
    big = [_cpu.empty((8, 1 << 20), torch.float64) for _ in range(2)]  # 2 x 64 MiB: over the cap together
    del big
    assert sum(size for size, _ in _cpu._freed) <= 64 << 20
    monkeypatch.setattr(_cpu, "POOL_BYTES", 0)
    del_me = _cpu.empty(shape, torch.float32)
    del del_me
    assert not _cpu._freed


@pytest.mark.parametrize("scheme", ["muskingum", "pure_lag", "nash_cascade", "hayami"])
def test_reused_buffers_full_of_nan_route_like_fresh_ones(monkeypatch, scheme):
    """Every element of a pooled output or gradient buffer is written: routing into buffers left full of NaN by
    earlier tensors gives the discharge and gradients of fresh (zeroed) pages, bit for bit."""
    if not _cpu.available():
        pytest.skip("needs the compiled CPU engine")
    net = scheidegger_network(20_000, seed=4)
    rng = np.random.default_rng(5)
    params = scheme_params(SCHEMES[scheme], net, rng, max_travel=2 * DT)
    q = torch.as_tensor(runoff(net, rng, batch=1, steps=256), dtype=torch.float32)  # 20 MB: pooled sizes

    def run():
        qq = q.clone().requires_grad_(True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ThalwegWarning)
            out = route(net, qq, params, scheme, dt=DT, engine="exact")
        (out * torch.linspace(0.5, 1.5, out.shape[-1])).sum().backward()
        return (out.detach().clone(), qq.grad.clone()), {out.data_ptr(), qq.grad.data_ptr()}

    gc.collect()
    monkeypatch.setattr(_cpu, "_freed", [])
    monkeypatch.setattr(_cpu, "_returned", collections.deque())
    monkeypatch.setattr(_cpu, "POOL_BYTES", 0)
    fresh, _ = run()
    monkeypatch.setattr(_cpu, "POOL_BYTES", 1 << 30)
    poisoned = [_cpu.empty(q.shape, torch.float32).fill_(float("nan")) for _ in range(4)]
    poisoned += [_cpu.empty(q.shape, torch.float64).fill_(float("nan")) for _ in range(2)]
    ptrs = {t.data_ptr() for t in poisoned}
    del poisoned
    reused, used = run()
    assert used <= ptrs  # the discharge and dL/dq went into poisoned buffers
    for a, b in zip(fresh, reused):
        assert torch.equal(a, b)


def test_a_buffer_freed_inside_a_pool_operation_never_waits_for_the_pool(monkeypatch):
    """A tensor freed by a garbage collection that starts inside _take (its finalizer runs in the thread holding the
    pool's lock) goes back without waiting for that lock, and serves the next buffer of its size; a forked child
    starts with an empty pool and a free lock, whatever the parent held."""
    if not hasattr(_cpu.mmap, "MADV_HUGEPAGE"):
        pytest.skip("huge-page buffers are Linux's")
    gc.collect()
    monkeypatch.setattr(_cpu, "_freed", [])
    monkeypatch.setattr(_cpu, "_returned", collections.deque())
    monkeypatch.setattr(_cpu, "POOL_BYTES", 64 << 20)
    shape = (4, 1 << 20)

    class Cycle:
        pass

    def free_in_a_collection_while_holding_the_lock():
        box = Cycle()
        box.me, box.t = box, _cpu.empty(shape, torch.float32)
        ptr.append(box.t.data_ptr())
        del box
        with _cpu._freed_lock:
            gc.collect()  # the finalizer runs here, as from an allocation inside _take

    ptr: list[int] = []
    worker = threading.Thread(target=free_in_a_collection_while_holding_the_lock, daemon=True)
    worker.start()
    worker.join(20)
    assert not worker.is_alive(), "the finalizer waited for the pool's lock (deadlock)"
    assert _cpu.empty(shape, torch.float32).data_ptr() == ptr[0]  # settled by the next take, then reused
    if not hasattr(os, "fork"):
        return
    held, release = threading.Event(), threading.Event()

    def hold_the_lock():
        with _cpu._freed_lock:
            held.set()
            release.wait(20)

    holder = threading.Thread(target=hold_the_lock, daemon=True)
    holder.start()
    held.wait(20)
    pid = os.fork()
    if pid == 0:  # the child: a fresh lock, no pooled pages of the parent's
        import signal

        signal.alarm(20)
        ok = not _cpu._freed and _cpu.empty(shape, torch.float32).shape == shape
        os._exit(0 if ok else 1)
    release.set()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
