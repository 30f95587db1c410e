"""The CPU recursions' vector passes (routing.c, AVX-512: blocks of 8 steps, scans, streaming stores) against
the scalar passes they replace, at every block edge: series of 1 to 23 steps, chunks that end inside a block,
rows at every offset in a cache line, warm and cold states, forward and backward."""
from __future__ import annotations

import ctypes
import numpy as np
import pytest
import torch
from thalweg.network import scheidegger_network
from thalweg.routing import _cpu, _native
from thalweg.routing.topology import topology

pytestmark = pytest.mark.skipif(not _cpu.available(), reason="needs the compiled CPU engine")


def _stride(chunk: int) -> int:  # IIR_STRIDE in routing.c: the stack rows' length
    return (chunk + 1 + 7) // 8 * 8


@pytest.fixture(scope="module")
def case():
    """A 400-reach lattice and random coefficients (r, b0, b1, c0, c1): every term of the recursion non-zero (the
    Muskingum schemes' c1 is 0), r < 0 on some reaches (C2 < 0 at dt > 2K(1-x)) and close to 1 on others."""
    net = scheidegger_network(400, seed=3)
    rng = np.random.default_rng(5)
    n = net.n_reaches
    coef = np.stack([rng.uniform(-0.9, 0.995, n), rng.uniform(-0.3, 0.8, n), rng.uniform(-0.3, 0.8, n),
                     rng.uniform(-0.5, 1.0, n), rng.uniform(-0.5, 1.0, n)], axis=1)
    return topology(net), np.ascontiguousarray(coef), rng


def _rows(rng, shape, dtype, offset):
    """Random rows [N, T] whose first element lies ``offset`` elements past a 64-byte boundary."""
    buf = np.zeros(int(np.prod(shape)) + 64, dtype=dtype)
    start = (-(buf.ctypes.data // buf.itemsize) + offset) % (64 // buf.itemsize)
    rows = buf[start:start + int(np.prod(shape))].reshape(shape)
    rows[:] = rng.gamma(2.0, 1.0, size=shape)
    rows[rng.random(shape) < 0.2] = 0.0
    assert (rows.ctypes.data // buf.itemsize) % (64 // buf.itemsize) == offset
    return rows


def _forward(name, topo, coef, q, state, chunk):
    lib = _native.load()
    n, t_len = q.shape
    out = np.full_like(q, np.nan)
    st = state.copy()
    depth = int(topo.depth.max()) + 1
    stack, xbuf = np.zeros(depth * _stride(chunk)), np.zeros(chunk)
    p = _native.ptr
    assert getattr(lib, name)(n, t_len, chunk, p(topo.order), p(topo.depth), p(topo.downstream), p(coef), p(q),
                              p(out), p(st), p(stack), p(xbuf), None) == 0
    assert not stack.any()  # left zero for the next work item
    return out, st


def _backward(name, topo, coef, q, out, grad, prev, chunk):
    lib = _native.load()
    n, t_len = q.shape
    dq = np.full_like(q, np.nan)
    dcoef = np.zeros((n, 5))
    depth = int(topo.depth.max()) + 1
    lam, stack = np.zeros(n), np.zeros(depth * _stride(chunk))
    abuf, ubuf = np.zeros(chunk + 1), np.zeros(chunk + 1)
    p = _native.ptr
    assert getattr(lib, name)(n, t_len, chunk, p(topo.order), p(topo.depth), p(topo.downstream),
                              p(topo.child_ptr), p(topo.child_idx), p(coef), p(q), p(out), p(grad), p(prev),
                              p(dq), p(dcoef), p(lam), p(stack), p(abuf), p(ubuf), None) == 0
    return dq, dcoef


def _close(got, want, rtol, what):
    scale = np.abs(want).max(axis=-1, keepdims=True) + 1e-300
    err = float((np.abs(got - want) / scale).max())
    assert np.isfinite(got).all() and err <= rtol, (what, err)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("t_len,chunk", [(1, 1), (7, 7), (8, 8), (9, 9), (23, 23), (23, 5), (23, 8), (40, 17)])
@pytest.mark.parametrize("warm", [False, True])
def test_vector_recursion_equals_the_scalar_one(case, dtype, t_len, chunk, warm):
    topo, coef, rng = case
    n = topo.n
    suf = "f64" if dtype == np.float64 else "f32"
    rtol = 1e-12 if dtype == np.float64 else 3e-7  # float32: both round the same double to float, or 1 ulp apart
    for offset in (0, 3, 8 - 1):
        q = _rows(rng, (n, t_len), dtype, offset)
        state = rng.gamma(2.0, 1.0, size=(n, 3)) if warm else np.zeros((n, 3))
        out_v, st_v = _forward(f"iir_forward_{suf}", topo, coef, q, state, chunk)
        out_s, st_s = _forward(f"iir_forward_scalar_{suf}", topo, coef, q, state, chunk)
        _close(out_v.astype(np.float64), out_s.astype(np.float64), rtol, "Q")
        _close(st_v, st_s, 1e-6 if dtype == np.float32 else 1e-12, "state")
        grad = _rows(rng, (n, t_len), dtype, (offset + 5) % 8) - 1.0
        prev = state if warm else None
        dq_v, dc_v = _backward(f"iir_backward_{suf}", topo, coef, q, out_s, grad, prev, chunk)
        dq_s, dc_s = _backward(f"iir_backward_scalar_{suf}", topo, coef, q, out_s, grad, prev, chunk)
        _close(dq_v.astype(np.float64), dq_s.astype(np.float64), rtol, "dq")
        _close(dc_v.T, dc_s.T, 1e-10, "dcoef")  # per coefficient, against its largest over the reaches


def test_threads_split_a_batch_like_one_thread(case):
    """The items of a pass in 1 and 2 threads started in C: the same Q, dq and coefficient gradients."""
    topo, coef, rng = case
    q = torch.as_tensor(rng.gamma(2.0, 1.0, size=(3, topo.n, 50)))
    w = torch.as_tensor(rng.normal(size=q.shape))
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            items = _cpu._items(topo, 3, 50, threads=threads)
            assert len(items) == (3 if threads == 1 else 3 * len(_cpu._segments(topo, 3)))
            qq = q.clone().requires_grad_(True)
            cc = torch.as_tensor(coef).clone().requires_grad_(True)
            out, _ = _cpu.iir_route(qq, cc, topo)
            (out * w).sum().backward()
            results.append((out.detach(), qq.grad, cc.grad))
    finally:
        torch.set_num_threads(before)
    for a, b in zip(*results):
        assert float((a - b).abs().max()) <= 1e-12 * float(b.abs().max())


def test_items_cover_each_batch_element_once_biggest_first(case):
    topo, _, _ = case
    items = _cpu._items(topo, 2, 366, threads=2)
    assert items.dtype == np.int64 and items.flags.c_contiguous and items.shape[1] == 5
    assert (np.diff(items[:, 2]) <= 0).all()
    for k in (0, 1):
        mine = items[items[:, 0] == k]
        assert mine[:, 2].sum() == topo.n and sorted(mine[:, 1].tolist())[0] == 0
    depth = [int(topo.depth[topo.order[a:a + c]].max()) + 1 for a, c in items[:, 1:3]]
    assert items[:, 3].tolist() == depth and (items[:, 4] == _cpu._chunk(366, int(items[0, 3]))).any()
    assert ctypes.sizeof(ctypes.c_int64) * items.size == items.nbytes
