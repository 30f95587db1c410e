"""Linear diffusive wave (Hayami), cell-integrated inverse Gaussian (ROUTING.md section 3).

mu = L / c, lambda = L^2 / (2 D); F(s) = Phi(sqrt(lambda/s)(s/mu - 1))
+ exp(2 lambda / mu) Phi(-sqrt(lambda/s)(s/mu + 1)), the second term in log space; h[k] = F((k+1)dt) - F(k dt).

``compact`` gives the same taps over each reach's support only (``Scheme.compact``): compiled (routing.c's
``hayami_support`` / ``hayami_taps``, analytic derivatives in ``hayami_taps_backward``) on CPU tensors when the C
library builds, the same functions as Triton kernels (``routing/_triton/hayami.py``) on CUDA tensors when Triton
runs there, torch (:func:`cdf` and autograd) elsewhere.
"""
from __future__ import annotations

import ctypes

import torch

from .base import Compact, Parameter, Scheme, cdf_support, steps_index

__all__ = ["SCHEME", "cdf", "compact", "kernel"]


def cdf(s: torch.Tensor, mu: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Inverse-Gaussian CDF at s > 0 (s = 0 gives 0)."""
    # evaluate the unselected branch at s = 1 s, not at a tiny s: its infinities would turn the gradient
    # into NaN (0 * inf) through torch.where
    positive = s > 0
    s_pos = torch.where(positive, s, torch.ones_like(s))
    root = torch.sqrt(lam / s_pos)
    # Phi(a) as erfc(-a / sqrt2) / 2: torch's ndtr is 0 below a = -8.3 (1 + erf), which dropped the head of
    # slow reaches' kernels (up to half of each tap of ~1e-17 there)
    first = 0.5 * torch.special.erfc(root * (s_pos / mu - 1.0) * -0.7071067811865476)
    second = torch.exp(2.0 * lam / mu + torch.special.log_ndtr(-root * (s_pos / mu + 1.0)))
    return torch.where(positive, first + second, torch.zeros_like(first))


def _shape(params) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu, lambda) [N] of every reach, differentiable in length, celerity and diffusivity."""
    length = params["length"]
    return length / params["celerity"], length**2 / (2.0 * params["diffusivity"])


def kernel(params, dt: float, n_steps: int):
    mu, lam = _shape(params)
    mu, lam = mu[:, None], lam[:, None]
    k = steps_index(n_steps + 1, mu)
    f = cdf(k * dt, mu, lam)
    return f[:, 1:] - f[:, :-1], None


# --- the kernels over their supports only ---------------------------------------------------------------------

_DECLARED: list = []  # the library once its Hayami functions are declared ([] before the first use)
CHUNK = 16384  # reaches per compiled call when several threads run them


def _library():
    """The compiled routing library with the Hayami functions declared, or None (no compiler: torch)."""
    from ..routing import _native  # here, not at import: routing imports irf

    lib = _native.load()
    if lib is None:
        return None
    if not _DECLARED:
        p, i64, f64 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double
        lib.hayami_support.argtypes = [i64, i64, f64, p, p, f64, p, p]
        lib.hayami_taps.argtypes = [i64, i64, f64, p, p, p, p, i64, p]
        lib.hayami_taps_backward.argtypes = [i64, i64, f64, p, p, p, p, i64, p, p, p]
        for fn in (lib.hayami_support, lib.hayami_taps, lib.hayami_taps_backward):
            fn.restype = ctypes.c_int
        _DECLARED.append(lib)
    return lib


def _cpu_empty(shape) -> torch.Tensor:
    """An uninitialised float64 CPU tensor on huge pages where Linux offers them (``routing._cpu.empty``: the
    first-touch page faults of [100k, 115] taps cost 36 ms on 4 KiB pages, 10 ms on huge pages)."""
    from ..routing import _cpu  # here, not at import: routing imports irf

    return _cpu.empty(shape, torch.float64)


def _by_chunks(n: int, call) -> None:
    """``call(start, stop)`` over [0, n) in chunks of reaches, in threads when torch runs several (ctypes
    releases the GIL); RuntimeError naming the return code of a failed call."""
    threads = max(1, torch.get_num_threads())
    spans = [(a, min(n, a + CHUNK)) for a in range(0, n, CHUNK)] if threads > 1 else [(0, n)]
    if len(spans) == 1:
        codes = [call(*spans[0])]
    else:
        from ..routing import _cpu  # the routing's per-process pool; here, not at import: routing imports irf

        codes = list(_cpu._pool(threads).map(lambda ab: call(*ab), spans))
    bad = [c for c in codes if c != 0]
    if bad:
        raise RuntimeError(f"irf.hayami: a compiled Hayami call returned {bad[0]}")


def _at(t: torch.Tensor, start: int, row: int = 1) -> int:
    """Address of row ``start`` of a contiguous CPU tensor with ``row`` elements per row."""
    return t.data_ptr() + start * row * t.element_size()


def _native_support(lib, mu, lam, dt, n_steps, tol):
    n = mu.shape[0]
    first = torch.empty(n, dtype=torch.int64)
    count = torch.empty(n, dtype=torch.int64)
    _by_chunks(n, lambda a, b: lib.hayami_support(b - a, n_steps, dt, _at(mu, a), _at(lam, a), tol,
                                                  _at(first, a), _at(count, a)))
    return first, count


class _Taps(torch.autograd.Function):
    """The compiled taps [N, K] over each reach's support; backward: dL/dmu and dL/dlambda from the analytic
    derivatives of the CDF (routing.c's ``hayami_taps_backward``)."""

    @staticmethod
    def forward(ctx, mu, lam, first, count, width: int, dt: float, n_steps: int):
        lib = _library()
        mu64 = mu.detach().to(torch.float64).contiguous()
        lam64 = lam.detach().to(torch.float64).contiguous()
        n = mu64.shape[0]
        taps = _cpu_empty((n, width))
        _by_chunks(n, lambda a, b: lib.hayami_taps(b - a, n_steps, dt, _at(mu64, a), _at(lam64, a), _at(first, a),
                                                   _at(count, a), width, _at(taps, a, width)))
        ctx.save_for_backward(mu64, lam64, first, count)
        ctx.dims = (width, dt, n_steps)
        ctx.dtypes = (mu.dtype, lam.dtype)
        return taps

    @staticmethod
    def backward(ctx, grad):
        mu64, lam64, first, count = ctx.saved_tensors
        width, dt, n_steps = ctx.dims
        lib = _library()
        g = grad.detach().to(torch.float64).contiguous()
        n = mu64.shape[0]
        dmu = torch.empty(n, dtype=torch.float64)
        dlam = torch.empty(n, dtype=torch.float64)
        _by_chunks(n, lambda a, b: lib.hayami_taps_backward(
            b - a, n_steps, dt, _at(mu64, a), _at(lam64, a), _at(first, a), _at(count, a), width,
            _at(g, a, width), _at(dmu, a), _at(dlam, a)))
        return dmu.to(ctx.dtypes[0]), dlam.to(ctx.dtypes[1]), None, None, None, None, None


class _GpuTaps(torch.autograd.Function):
    """The taps [N, width] over each reach's support by the Triton kernels (``cp``: their float64 constants, dt and
    tol); backward: dL/dmu and dL/dlambda from the same analytic derivatives as ``_Taps``."""

    @staticmethod
    def forward(ctx, mu, lam, first, count, width: int, cp):
        from ..routing._triton.hayami import hayami_taps_kernel

        mu64 = mu.detach().to(torch.float64).contiguous()
        lam64 = lam.detach().to(torch.float64).contiguous()
        n = mu64.shape[0]
        taps = torch.empty((n, width), dtype=torch.float64, device=mu64.device)
        if n:
            hayami_taps_kernel[(n, -(-width // (GPU_TAPS_BLOCK - 1)))](
                mu64, lam64, cp, first, count, taps, width, BLOCK=GPU_TAPS_BLOCK, num_warps=GPU_TAPS_WARPS)
        ctx.save_for_backward(mu64, lam64, first, count, cp)
        ctx.dtypes = (mu.dtype, lam.dtype)
        return taps

    @staticmethod
    def backward(ctx, grad):
        from ..routing._triton.hayami import hayami_taps_backward_kernel

        mu64, lam64, first, count, cp = ctx.saved_tensors
        g = grad.detach().to(torch.float64).contiguous()
        n, width = g.shape
        dmu = torch.empty_like(mu64)
        dlam = torch.empty_like(lam64)
        if n:
            hayami_taps_backward_kernel[(n,)](mu64, lam64, cp, first, count, g, dmu, dlam, width,
                                              BLOCK=GPU_BACKWARD_BLOCK, num_warps=GPU_BACKWARD_WARPS)
        return dmu.to(ctx.dtypes[0]), dlam.to(ctx.dtypes[1]), None, None, None, None


# Launch shapes of the Triton kernels: float64 work bound by registers and latency (scripts/bench_triton_shapes.py
# MODE=taps sweeps them). H200, 100k reaches x 1,000 hourly steps (supports of 992 taps): the taps (points per
# program, each program writing one fewer taps; warps) 1.75 ms at 256 / 2 warps, 1.92 at 1024 / 4 (each point
# evaluated twice, before: 3.27 ms); the taps' backward (points per loop trip, a program per reach) 1.04 ms at
# 256 / 2 warps, 1.96 at 1024 / 4.
GPU_TAPS_BLOCK, GPU_TAPS_WARPS = 256, 2
GPU_BACKWARD_BLOCK, GPU_BACKWARD_WARPS = 256, 2
GPU_SUPPORT_BLOCK = 256  # reaches bisected together per Triton program of the support (routing.c's IG_BLOCK)


def _gpu_constants(dt: float, tol: float, device: torch.device) -> torch.Tensor:
    """The Triton kernels' float64 array: their constants, then dt and tol (``_triton/hayami.py``)."""
    from ..routing._triton.hayami import CONSTANTS

    return torch.tensor(CONSTANTS + (dt, tol), dtype=torch.float64, device=device)


def _gpu_compact(mu, lam, dt: float, n_steps: int, tol: float) -> Compact:
    """:func:`compact` by the Triton kernels: the support, then the taps (width: the longest count rounded up to
    a multiple of 4, the GPU convolution's row width, so that it takes them as they are)."""
    from ..routing import _gpu  # here, not at import: routing imports irf
    from ..routing._triton.hayami import hayami_support_kernel

    dev = mu.device
    cp = _gpu_constants(dt, tol, dev)
    n = mu.shape[0]
    with torch.no_grad():
        mu64 = mu.detach().to(torch.float64).contiguous()
        lam64 = lam.detach().to(torch.float64).contiguous()
        first = torch.empty(n, dtype=torch.int64, device=dev)
        count = torch.empty(n, dtype=torch.int64, device=dev)
        if n:
            iters = max(0, (n_steps - 1).bit_length())  # ceil(log2 n_steps), as the C and torch rules
            hayami_support_kernel[(-(-n // GPU_SUPPORT_BLOCK),)](mu64, lam64, cp, first, count, n, n_steps, iters,
                                                                 BLOCK=GPU_SUPPORT_BLOCK)
    width = _gpu._tap_width(int(count.max()) if n else 1)
    return Compact(first, count, _GpuTaps.apply(mu, lam, first, count, width, cp))


def _torch_compact(mu, lam, dt: float, n_steps: int, tol: float) -> Compact:
    """:func:`compact` in torch on any device: the support rule by bisection on :func:`cdf`, then the CDF over
    each reach's support only, through autograd."""
    first, count = cdf_support(lambda m: cdf(m * dt, mu.detach(), lam.detach()), n_steps, tol, mu)
    width = int(count.max()) if count.numel() else 1
    j = torch.arange(width + 1, device=mu.device)
    f = cdf((first[:, None] + j[None, :]).to(mu.dtype) * dt, mu[:, None], lam[:, None])
    taps = torch.where(j[None, :-1] < count[:, None], f[:, 1:] - f[:, :-1], torch.zeros((), dtype=f.dtype,
                                                                                         device=f.device))
    return Compact(first, count, taps.to(torch.float64))


def compact(params, dt: float, n_steps: int, tol: float, *, native: bool | None = None) -> Compact:
    """The kernels of ``kernel`` cut to each reach's support by the support rule at ``tol`` (``Scheme.compact``),
    without [N, n_steps] arrays: the compiled path (C for CPU tensors when the library builds, Triton for CUDA
    tensors) when ``native`` is None, the torch one otherwise (``native=False`` forces it; ``True`` requires the
    compiled one)."""
    if n_steps < 1:
        raise ValueError(f"hayami.compact: n_steps must be >= 1, not {n_steps}")
    mu, lam = _shape(params)
    dt = float(dt)
    if mu.device.type == "cuda" and native is not False:
        from ..routing import _gpu  # here, not at import: routing imports irf

        if _gpu.available(mu.device):
            return _gpu_compact(mu, lam, dt, int(n_steps), float(tol))
    lib = _library() if native is not False and mu.device.type == "cpu" else None
    if native and lib is None:
        raise RuntimeError("hayami.compact: the compiled path needs CPU tensors and the compiled routing library, "
                           "or CUDA tensors and Triton")
    if lib is None:
        return _torch_compact(mu, lam, dt, int(n_steps), float(tol))
    with torch.no_grad():
        mu64 = mu.detach().to(torch.float64).contiguous()
        lam64 = lam.detach().to(torch.float64).contiguous()
        first, count = _native_support(lib, mu64, lam64, dt, int(n_steps), float(tol))
    width = int(count.max()) if count.numel() else 1
    taps = _Taps.apply(mu, lam, first, count, width, dt, int(n_steps))
    return Compact(first, count, taps)


SCHEME = Scheme(
    name="hayami",
    parameters=(
        Parameter("celerity", "m s-1", "wave celerity", 0.05, 10.0, 1.0, positive=True, prior="velocity"),
        Parameter("diffusivity", "m2 s-1", "hydraulic diffusivity", 10.0, 1e6, 1e4, positive=True),
    ),
    kernel=kernel,
    travel_time=lambda p, dt: p["length"] / p["celerity"],
    description="linear diffusive wave (Hayami), inverse-Gaussian kernel integrated over each step",
    uses_length=True,
    compact=compact,
)

