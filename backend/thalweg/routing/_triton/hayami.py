"""Triton kernels of the Hayami kernels over each reach's support (``irf.hayami.compact`` on a GPU): the support
rule by bisection, the taps, and their backward, each reach's work in registers, no [N, T] array.

The same mathematics and the same float64 operations as routing.c's ``hayami_support`` / ``hayami_taps`` /
``hayami_taps_backward`` (its comment block derives them; ROUTING.md section 3): with a = sqrt(lam/s)(s/mu - 1),
b = sqrt(lam/s)(s/mu + 1) and the Mills ratio R(x) = Phi(-x) / phi(x) as R(x) (1 + sqrt2 x) = G(y),
y = (x - KX) / (x + KX), G a degree-23 polynomial,

    a <= 0:  F(s) = phi(a) (R(-a) + R(b)),        a > 0:  1 - F(s) = phi(a) (R(a) - R(b)),

so a kernel's head and tail each come to their own precision. The polynomial and the constants that are not
exact in float32 come from a float64 array (``CONSTANTS``, from routing.c's table; with the step and tol):
Triton makes float32 constants of Python floats, which would cost float64 runs 1e-8 of accuracy. The support
kernel bisects BLOCK reaches in lockstep; the taps kernel evaluates F once at each of BLOCK points of one reach
per program and takes the BLOCK - 1 taps between them; the backward reduces each reach's dL/dtaps against dF/dmu
and dF/dlam at the points of its support. H200, Hayami 100k reaches x 1,000 hourly steps (supports of 992 taps):
the support 0.06 ms, the taps 1.74 ms (3.27 when each point was evaluated twice), their backward 1.04 ms, against
14.8 ms for the [N, T] kernels, their supports and their cut.
"""
from __future__ import annotations

import triton
import triton.language as tl

__all__ = ["CONSTANTS", "DT", "TOL", "hayami_support_kernel", "hayami_taps_backward_kernel", "hayami_taps_kernel"]

# routing.c's IG_G (G's coefficients in powers of y), then KX = 3.75 sqrt 2, sqrt 2 and 1 / sqrt(2 pi)
CONSTANTS = (
    1.5509920753355469, -1.7576552483285416e-1, 4.4936519161007805e-3, 1.0311859952190936e-1,
    -1.3636550384301392e-1, 1.1568631064561137e-1, -7.3561266203208076e-2, 3.5546843255642239e-2,
    -1.2215526107508384e-2, 2.2003507012702564e-3, 3.6811638233657528e-4, -3.6365421114161721e-4,
    6.4729325868651009e-5, 2.8054483386115727e-5, -1.4335467303487416e-5, -1.2201763821036186e-6,
    2.1832508663529284e-6, -7.1712417327199153e-8, -3.1153787739675582e-7, 2.91564843483754e-8,
    4.0080067076983098e-8, -4.6926714275489117e-9, -3.2875775218585426e-9, 3.8996034436975052e-10,
    5.3033008588991064, 1.4142135623730951, 0.39894228040143268)
# a launch's float64 array: CONSTANTS, then the step dt (s) and the support rule's tol (Triton passes Python floats
# as float32 arguments). R(x) < 1e-100 past x = 1e100 (a float64 constant, being past float32's range): x and b
# are clamped there so that no product overflows.
DT, TOL = len(CONSTANTS), len(CONSTANTS) + 1
# the positions in that array, for the kernels
_KX, _SQRT2, _INV_SQRT_2PI = tl.constexpr(24), tl.constexpr(25), tl.constexpr(26)
_DT, _TOL = tl.constexpr(DT), tl.constexpr(TOL)


@triton.jit
def _g(y, cp):
    """G(y), even and odd powers apart (two short dependency chains)."""
    y2 = y * y
    e = tl.load(cp + 22) + y2 * 0.0
    o = tl.load(cp + 23) + y2 * 0.0
    for k in tl.static_range(10, -1, -1):
        e = e * y2 + tl.load(cp + 2 * k)
        o = o * y2 + tl.load(cp + 2 * k + 1)
    return o * y + e


@triton.jit
def _side(a, b, cp):
    """F(s) where a <= 0, 1 - F(s) where a > 0 (routing.c's ig_side)."""
    kx = tl.load(cp + _KX)
    sqrt2 = tl.load(cp + _SQRT2)
    x = tl.minimum(tl.abs(a), 1e100)
    bb = tl.minimum(b, 1e100)
    px = x + kx
    qx = 1.0 + sqrt2 * x
    pb = bb + kx
    qb = 1.0 + sqrt2 * bb
    dx = px * qx
    db = pb * qb
    inv = 1.0 / (dx * db)
    ra = _g((x - kx) * qx * (db * inv), cp) * px * (db * inv)
    rb = _g((bb - kx) * qb * (dx * inv), cp) * pb * (dx * inv)
    phi = tl.load(cp + _INV_SQRT_2PI) * tl.exp(-0.5 * a * a)
    return phi * tl.where(a > 0.0, ra - rb, ra + rb)


@triton.jit
def _point(m, big_a, big_b, dt, cp):
    """(the side value, whether it is 1 - F, F) at whole step m: s = m dt."""
    sq = tl.sqrt(m * dt)
    rs = 1.0 / sq
    a = big_a * sq - big_b * rs
    b = big_a * sq + big_b * rs
    v = _side(a, b, cp)
    return v, a > 0.0, tl.where(a > 0.0, 1.0 - v, v)


@triton.jit
def _diff(v0, up0, f0, v1, up1, f1):
    """F(s1) - F(s0) from the two ends (routing.c's ig_diff): the difference of the 1 - F values where both are."""
    return tl.where(up0 & up1, v0 - v1, f1 - f0)


@triton.jit
def hayami_support_kernel(mu_ptr, lam_ptr, cp, first_ptr, count_ptr, n, n_steps, iters, BLOCK: tl.constexpr):
    """Per reach [first, first + count) by the support rule on F (irf/base.py: the taps holding all but tol of the
    mass over the horizon at either end, at least one tap), both ends by bisection on whole steps."""
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    on = i < n
    dt = tl.load(cp + _DT)
    tol = tl.load(cp + _TOL)
    mu = tl.load(mu_ptr + i, mask=on, other=1.0)
    lam = tl.load(lam_ptr + i, mask=on, other=1.0)
    sl = tl.sqrt(lam)
    big_a = sl / mu
    steps = n_steps.to(tl.float64) + 0.0 * mu
    v_t, up_t, total = _point(steps, big_a, sl, dt, cp)
    cut = tol * tl.maximum(total, 1e-300)
    _v1, _u1, f1 = _point(steps * 0.0 + 1.0, big_a, sl, dt, cp)
    # the head: the smallest step m in [1, T] with F(m dt) > cut, m = hi; F(0) = 0 <= cut at lo
    lo = steps * 0.0
    hi = tl.where(f1 > cut, 1.0, steps)
    it = 0
    while it < iters:  # a while loop: the interpreter takes no range() over a launch argument
        m = tl.floor(0.5 * (lo + hi))
        _v, _u, f = _point(m, big_a, sl, dt, cp)
        go = f > cut
        hi = tl.where(go, m, hi)
        lo = tl.where(go, lo, m)
        it += 1
    k0 = hi - 1.0  # T - 1 when even F(T dt) <= cut
    # the tail: the smallest k in (k0, T] with F(T dt) - F(k dt) <= cut, k = hi
    lo = k0
    hi = steps
    it = 0
    while it < iters:
        m = tl.floor(0.5 * (lo + hi))
        v, up, f = _point(m, big_a, sl, dt, cp)
        go = _diff(v, up, f, v_t, up_t, total) <= cut
        hi = tl.where(go, m, hi)
        lo = tl.where(go, lo, m)
        it += 1
    a0 = k0.to(tl.int64)
    a1 = hi.to(tl.int64)
    tl.store(first_ptr + i, a0, mask=on)
    tl.store(count_ptr + i, tl.maximum(a1 - a0, 1), mask=on)


@triton.jit
def hayami_taps_kernel(mu_ptr, lam_ptr, cp, first_ptr, count_ptr, taps_ptr, width, BLOCK: tl.constexpr):
    """taps[i, j] = F((first + j + 1) dt) - F((first + j) dt) for j < count[i], 0 up to width; program (i, block):
    F once at each of BLOCK points, the BLOCK - 1 taps between them (each point's next by tl.gather), so that
    blocks overlap by one point."""
    i = tl.program_id(0).to(tl.int64)
    lane = tl.arange(0, BLOCK)
    j = tl.program_id(1) * (BLOCK - 1) + lane  # point j starts tap j
    dt = tl.load(cp + _DT)
    sl = tl.sqrt(tl.load(lam_ptr + i))
    big_a = sl / tl.load(mu_ptr + i)
    f = tl.load(first_ptr + i)
    c = tl.load(count_ptr + i)
    v0, u0, f0 = _point((f + j).to(tl.float64), big_a, sl, dt, cp)
    nxt = tl.minimum(lane + 1, BLOCK - 1)
    v1 = tl.gather(v0, nxt, 0)
    u1 = tl.gather(u0.to(tl.int32), nxt, 0) != 0
    f1 = tl.where(u1, 1.0 - v1, v1)
    tap = tl.where(j < c, _diff(v0, u0, f0, v1, u1, f1), 0.0)
    tl.store(taps_ptr + i * width + j, tap, mask=(lane < BLOCK - 1) & (j < width))


@triton.jit
def hayami_taps_backward_kernel(mu_ptr, lam_ptr, cp, first_ptr, count_ptr, grad_ptr, dmu_ptr, dlam_ptr, width,
                                BLOCK: tl.constexpr):
    """dmu[i], dlam[i] = sum_j grad[i, j] d taps[i, j] / d(mu, lam), j < count[i] (routing.c's
    hayami_taps_backward): with E = exp(2 lam/mu) Phi(-b) = phi(a) R(b), dF/dmu = -2 lam/mu^2 E and
    dF/dlam = 2 E/mu - phi(a)/sqrt(lam s); point p of the support ends tap p - 1 and starts tap p."""
    i = tl.program_id(0).to(tl.int64)
    dt = tl.load(cp + _DT)
    kx = tl.load(cp + _KX)
    sqrt2 = tl.load(cp + _SQRT2)
    mu = tl.load(mu_ptr + i)
    lam = tl.load(lam_ptr + i)
    sl = tl.sqrt(lam)
    big_a = sl / mu
    cmu = -2.0 * lam / (mu * mu)
    cl = 2.0 / mu
    rsl = 1.0 / sl
    f = tl.load(first_ptr + i)
    c = tl.load(count_ptr + i)
    row = grad_ptr + i * width
    s_mu = tl.zeros([BLOCK], dtype=tl.float64)
    s_lam = tl.zeros([BLOCK], dtype=tl.float64)
    p0 = 0
    while p0 <= c:  # points 0..c: c + 1 of them
        p = p0 + tl.arange(0, BLOCK)
        wt = (tl.load(row + p - 1, mask=(p >= 1) & (p <= c), other=0.0)
              - tl.load(row + p, mask=p < c, other=0.0))
        m = (f + p).to(tl.float64)
        sq = tl.sqrt(m * dt)
        rs = 1.0 / sq
        a = big_a * sq - sl * rs
        b = tl.minimum(big_a * sq + sl * rs, 1e100)
        pb = b + kx
        qb = 1.0 + sqrt2 * b
        inv = 1.0 / (pb * qb)
        phi = tl.load(cp + _INV_SQRT_2PI) * tl.exp(-0.5 * a * a)
        e = phi * _g((b - kx) * qb * inv, cp) * pb * inv
        dl = cl * e - phi * rs * rsl
        on = p <= c
        s_mu += tl.where(on, wt * cmu * e, 0.0)
        s_lam += tl.where(on & (phi != 0.0), wt * dl, 0.0)  # s = 0: phi = 0 and rs = inf
        p0 += BLOCK
    tl.store(dmu_ptr + i, tl.sum(s_mu, 0))
    tl.store(dlam_ptr + i, tl.sum(s_lam, 0))
