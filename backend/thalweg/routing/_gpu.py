"""GPU exact engine: the Triton recursion kernels of ``_triton/iir.py`` behind an autograd Function.

One launch for the forward pass and one for the backward, whatever the depth of the tree.
``available()`` says whether Triton can run here (a CUDA device, or ``TRITON_INTERPRET=1`` for tests
on CPU tensors).
"""
from __future__ import annotations

import functools
import os

import torch

from .topology import Topology

__all__ = ["BT", "available", "iir_route"]

# measured on an H100, 1M reaches x 1000 steps (ms): BT 512 / 4 warps 21.1; 1024 / 8 warps 26.3;
# 1024 / 4 warps / prefetch / 16 programs per SM 19.3; 2048 / 8 warps 50.7. Items are latency-bound.
BT = 1024  # time steps per work item: long items amortise the per-item latency chain (atomics, loads)
NUM_WARPS = 4
PROGRAMS_PER_SM = 16
PREFETCH = True  # take the next ticket while working on the current one


@functools.lru_cache(maxsize=1)
def _triton_ok() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def available(device: torch.device) -> bool:
    """Triton kernels run on ``device``: CUDA with triton installed, or the interpreter on CPU."""
    if not _triton_ok():
        return False
    if device.type == "cuda":
        return True
    return device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1"


def _grid(items: int, device: torch.device) -> int:
    if device.type != "cuda":
        return 1  # the interpreter runs programs one after the other: one program takes every ticket
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    return max(1, min(items, sms * PROGRAMS_PER_SM))


class _IIR(torch.autograd.Function):
    @staticmethod
    def forward(ctx, runoff, coef, topo: Topology, state):
        from ._triton.iir import iir_forward_kernel

        b, n, t_len = runoff.shape
        dev = runoff.device
        q = runoff.detach().contiguous()
        c = coef.detach().to(torch.float64).contiguous()
        idx = topo.on(dev)
        st = (torch.zeros(b, n, 3, dtype=torch.float64, device=dev) if state is None
              else state.detach().to(device=dev, dtype=torch.float64).clone().contiguous())
        prev = st.clone() if state is not None else None
        out = torch.empty_like(q)
        n_chunks = -(-t_len // BT)
        flags = torch.zeros(b * n, dtype=torch.int32, device=dev)
        ticket = torch.zeros(1, dtype=torch.int32, device=dev)
        items = n_chunks * n * b
        iir_forward_kernel[(_grid(items, dev),)](
            q, out, c, st, idx["level_order"], idx["child_ptr"], idx["child_idx"], flags, ticket,
            n, b, t_len, n_chunks, PREFETCH=PREFETCH, BT=BT, num_warps=NUM_WARPS)
        ctx.topo = topo
        ctx.has_prev = prev is not None
        ctx.save_for_backward(q, c, out, prev if prev is not None else torch.empty(0, device=dev))
        ctx.mark_non_differentiable(st)
        return out, st

    @staticmethod
    def backward(ctx, grad_out, _grad_state):
        from ._triton.iir import iir_backward_kernel

        q, c, out, prev = ctx.saved_tensors
        topo: Topology = ctx.topo
        b, n, t_len = q.shape
        dev = q.device
        idx = topo.on(dev)
        grad = grad_out.contiguous().to(q.dtype)
        dq = torch.empty_like(q)
        adj = torch.empty_like(q)
        dcoef = torch.zeros(b, n, 5, dtype=torch.float64, device=dev)
        lam = torch.zeros(b * n, dtype=torch.float64, device=dev)
        n_chunks = -(-t_len // BT)
        flags = torch.zeros(b * n, dtype=torch.int32, device=dev)
        ticket = torch.zeros(1, dtype=torch.int32, device=dev)
        items = n_chunks * n * b
        iir_backward_kernel[(_grid(items, dev),)](
            q, out, grad, dq, adj, dcoef, c, prev if ctx.has_prev else c, lam, idx["level_order"],
            idx["downstream"], idx["child_ptr"], idx["child_idx"], flags, ticket, n, b, t_len, n_chunks,
            HAS_PREV=ctx.has_prev, PREFETCH=PREFETCH, BT=BT, num_warps=NUM_WARPS)
        return dq, dcoef.sum(0), None, None


def iir_route(runoff: torch.Tensor, coef: torch.Tensor, topo: Topology, state: torch.Tensor | None = None):
    """Q [B, N, T] and the final filter state [B, N, 3] (float64); see ``_cpu.iir_route``."""
    return _IIR.apply(runoff, coef, topo, state)
