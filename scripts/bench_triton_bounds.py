"""What bounds the exact engine's Triton recursion (not a test), on 1M independent rows x 1000 steps: a plain copy,
one program per row with the float64 (and float32) scan and no tickets, then the ticket, release-flag and
acquire-wait protocol added step by step. ``python3 scripts/bench_triton_bounds.py`` on a CUDA GPU; the H200
figures are in docs/routing-engines.md."""
import sys
from pathlib import Path

import torch
import triton
import triton.language as tl

sys.path.insert(0, str(Path(__file__).parent))
from bench_triton_shapes import median_ms as bench  # noqa: E402  (the same CUDA-event timer)


@triton.jit
def _affine(a1, b1, a2, b2):
    return a1 * a2, b1 * a2 + b2


@triton.jit
def k_plain(q_ptr, out_ptr, r_ptr, t_len, F64: tl.constexpr, BT: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    r = tl.load(r_ptr + row)
    if F64:
        y = r * 0.0
    else:
        r = r.to(tl.float32)
        y = r * 0.0
    offs = tl.arange(0, BT)
    for t0 in range(0, t_len, BT):
        t = t0 + offs
        m = t < t_len
        x = tl.load(q_ptr + row * t_len + t, mask=m, other=0.0)
        if F64:
            x = x.to(tl.float64)
        a = tl.where(m, r, 1.0) + tl.zeros([BT], dtype=x.dtype)
        pa, px = tl.associative_scan((a, x), 0, _affine)
        yv = px + pa * y
        tl.store(out_ptr + row * t_len + t, yv.to(tl.float32), mask=m)
        y = tl.sum(tl.where(t == tl.minimum(t0 + BT, t_len) - 1, yv, 0.0), axis=0)


@triton.jit
def k_ticket(q_ptr, out_ptr, r_ptr, flag_ptr, ticket_ptr, n, t_len, MODE: tl.constexpr, BT: tl.constexpr):
    # MODE 0: tickets only; 1: + release flag per item; 2: + acquire wait on own flag before the item
    offs = tl.arange(0, BT)
    ticket = tl.atomic_add(ticket_ptr, 1)
    while ticket < n:
        nxt = tl.atomic_add(ticket_ptr, 1)
        row = ticket.to(tl.int64)
        if MODE == 2:
            seen = tl.atomic_add(flag_ptr + row, 0, sem="acquire")
            while seen < 0:
                seen = tl.atomic_add(flag_ptr + row, 0, sem="acquire")
        r = tl.load(r_ptr + row)
        y = r * 0.0
        for t0 in range(0, t_len, BT):
            t = t0 + offs
            m = t < t_len
            x = tl.load(q_ptr + row * t_len + t, mask=m, other=0.0).to(tl.float64)
            a = tl.where(m, r, 1.0) + tl.zeros([BT], dtype=tl.float64)
            pa, px = tl.associative_scan((a, x), 0, _affine)
            yv = px + pa * y
            tl.store(out_ptr + row * t_len + t, yv.to(tl.float32), mask=m)
            y = tl.sum(tl.where(t == tl.minimum(t0 + BT, t_len) - 1, yv, 0.0), axis=0)
        if MODE >= 1:
            tl.debug_barrier()
            tl.atomic_xchg(flag_ptr + row, 1, sem="release")
        ticket = nxt


n, T = 1_000_000, 1000
q = torch.rand(n, T, device="cuda")
out = torch.empty_like(q)
r = torch.rand(n, device="cuda", dtype=torch.float64) * 0.9
sms = torch.cuda.get_device_properties(0).multi_processor_count
res = []
res.append(("copy q->out (torch)", bench(lambda: out.copy_(q))))
for bt in (256, 512, 1024):
    for w in (1, 2, 4):
        for f64 in (True, False):
            res.append((f"plain grid=N BT={bt} warps={w} f64={f64}",
                        bench(lambda f64=f64, bt=bt, w=w: k_plain[(n,)](q, out, r, T, F64=f64, BT=bt, num_warps=w))))
for mode in (0, 1, 2):
    for bt, w in ((512, 1), (1024, 2), (1024, 4)):
        for pps in (8, 32):
            def go(mode=mode, bt=bt, w=w, pps=pps):
                flags = torch.zeros(n, dtype=torch.int32, device="cuda")
                tk = torch.zeros(1, dtype=torch.int32, device="cuda")
                k_ticket[(sms * pps,)](q, out, r, flags, tk, n, T, MODE=mode, BT=bt, num_warps=w)
            res.append((f"ticket mode={mode} BT={bt} warps={w} pps={pps}", bench(go)))
for name, ms in res:
    print(f"{ms:8.3f} ms  {n * T / ms / 1e6:7.1f} G reach-steps/s  {name}", flush=True)
