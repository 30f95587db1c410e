/* Thalweg's CPU routing kernels (built at first use by _native/__init__.py, called through ctypes).
 *
 * One batch element per call; the tree is walked in subtree post-order (every reach right after its
 * upstream). The inflow U of the reach being routed lives in a stack of rows indexed by the reach's
 * depth (links to its outlet): in post-order the reaches with partial inflow are exactly the reaches
 * on the path from the current reach to its outlet, one per depth, so the stack holds depth x chunk
 * doubles, which stay in cache, instead of an N x T inflow array that would not.
 * The backward passes walk the reverse post-order (each reach before its upstream) with the same
 * stack holding the adjoint of each open reach's inflow.
 *
 * Filters (ROUTING.md sections 2, 3):
 *   IIR:  Q[t] = r Q[t-1] + b0 U[t] + b1 U[t-1] + c0 q[t] + c1 q[t-1]   (coef rows r b0 b1 c0 c1)
 *   FIR:  Q[t] = sum_k h[k] U[t-k] + g[k] q[t-k], k in each reach's support [k0, k1)
 * Accumulation is in double whatever the storage type.
 */
#include <stdint.h>
#include <string.h>
#include <math.h>

typedef int64_t i64;
#ifndef PF
#define PF 4
#endif

/* The links of a network whose rivers split (routing/dag.py's native plan), NULL for a tree. The main tree
 * keeps each split reach's main link; the order is a post-order of it in which every minor link's source
 * comes before its receiver. A split reach sends f Q down each of its links: into the stack row of an
 * ancestor (its main receiver, or a minor receiver downstream on its main path, whose inflow is still open)
 * or into a side row, which its receiver adds to its inflow when it is routed. Side rows are shared by
 * receivers whose [first source, receiver] spans of the order do not overlap. The backward pass reads the
 * receivers' inflow adjoints from the same rows (a receiver copies its adjoint into its side row). */
typedef struct {
    const i64 *link_ptr;     /* [n + 1] CSR over reaches: the links out of each split reach (none elsewhere) */
    const i64 *link_row;     /* [E] >= 0: the side row the link's water goes to; < 0: stack row -row - 1 */
    const double *link_frac; /* [E] the links' fractions */
    const i64 *side_of;      /* [n] the side row each reach takes inflow from, -1 for none */
    const i64 *in_ptr;       /* [n + 1] CSR over reaches: the links of split reaches into each reach */
    const i64 *in_src;       /* their source reaches (backward: rebuilding U) */
    const double *in_frac;   /* their fractions */
    double *side;            /* side rows x chunk doubles, zero on entry */
    double *wbuf;            /* chunk doubles (backward) */
    double *dfrac;           /* [E] (backward): dL/df of each link is added here */
} split_links;

#define DEFINE_IIR_FORWARD(NAME, REAL, SPLIT)                                                        \
int NAME(i64 n, i64 t_len, i64 chunk, const i64 *order, const i64 *depth, const i64 *down,            \
         const double *coef, const REAL *q, REAL *out, double *state, double *stack, double *xbuf,    \
         const split_links *sl)                                                                       \
{                                                                                                     \
    for (i64 t0 = 0; t0 < t_len; t0 += chunk) {                                                       \
        i64 m = (t_len - t0 < chunk) ? (t_len - t0) : chunk;                                          \
        for (i64 p = 0; p < n; ++p) {                                                                 \
            i64 i = order[p];                                                                         \
            double *u = stack + depth[i] * chunk;                                                     \
            const REAL *qi = q + i * t_len + t0;                                                      \
            REAL *oi = out + i * t_len + t0;                                                          \
            const double *c = coef + 5 * i;                                                           \
            double r = c[0], b0 = c[1], b1 = c[2], c0 = c[3], c1 = c[4];                              \
            double *st = state + 3 * i;                                                               \
            if (p + PF < n) { /* rows are visited out of memory order: fetch rows PF reaches ahead */ \
                const REAL *qn = q + order[p + PF] * t_len + t0;                                      \
                REAL *on = out + order[p + PF] * t_len + t0;                                           \
                for (i64 k = 0; k < m; k += 64 / (i64)sizeof(REAL)) {                                 \
                    __builtin_prefetch(qn + k, 0, 0);                                                 \
                    __builtin_prefetch(on + k, 1, 0);                                                 \
                }                                                                                     \
            }                                                                                         \
            if (SPLIT && sl->side_of[i] >= 0) { /* water of minor links from reaches routed earlier */  \
                double *sr = sl->side + sl->side_of[i] * chunk;                                           \
                for (i64 k = 0; k < m; ++k) { u[k] += sr[k]; sr[k] = 0.0; }                               \
            }                                                                                         \
            double y = st[0], up = st[1], qp = st[2];                                                 \
            /* inputs first (vectorisable), then the recursion four steps at a time: */               \
            /* y[t+3] = r^4 y[t-1] + s3 keeps one multiply-add per four steps on the chain */         \
            xbuf[0] = b0 * u[0] + b1 * up + c0 * (double)qi[0] + c1 * qp;                             \
            for (i64 t = 1; t < m; ++t)                                                               \
                xbuf[t] = b0 * u[t] + b1 * u[t - 1] + c0 * (double)qi[t] + c1 * (double)qi[t - 1];    \
            double r2 = r * r, r3 = r2 * r, r4 = r2 * r2;                                             \
            i64 t = 0;                                                                                \
            for (; t + 4 <= m; t += 4) {                                                              \
                double x0 = xbuf[t], x1 = xbuf[t + 1], x2 = xbuf[t + 2], x3 = xbuf[t + 3];             \
                double s1 = r * x0 + x1, s2 = r * s1 + x2, s3 = r * s2 + x3;                          \
                oi[t] = (REAL)(r * y + x0);                                                           \
                oi[t + 1] = (REAL)(r2 * y + s1);                                                      \
                oi[t + 2] = (REAL)(r3 * y + s2);                                                      \
                y = r4 * y + s3;                                                                      \
                oi[t + 3] = (REAL)y;                                                                  \
            }                                                                                         \
            for (; t < m; ++t) {                                                                      \
                y = r * y + xbuf[t];                                                                  \
                oi[t] = (REAL)y;                                                                      \
            }                                                                                         \
            st[0] = y; st[1] = u[m - 1]; st[2] = (double)qi[m - 1];                                   \
            i64 d = down[i];                                                                          \
            if (SPLIT && sl->link_ptr[i + 1] > sl->link_ptr[i]) { /* a split reach: f Q down each link */ \
                for (i64 e = sl->link_ptr[i]; e < sl->link_ptr[i + 1]; ++e) {                         \
                    i64 row = sl->link_row[e];                                                        \
                    double f = sl->link_frac[e];                                                      \
                    double *ud = row >= 0 ? sl->side + row * chunk : stack + (-row - 1) * chunk;      \
                    for (i64 k = 0; k < m; ++k) ud[k] += f * (double)oi[k];                           \
                }                                                                                     \
            } else if (d >= 0) {                                                                      \
                double *ud = u - chunk;                                                               \
                for (i64 k = 0; k < m; ++k) ud[k] += (double)oi[k];                                   \
            }                                                                                         \
            memset(u, 0, (size_t)m * sizeof(double));                                                 \
        }                                                                                             \
    }                                                                                                 \
    return 0;                                                                                         \
}

/* SPLIT = 0: a tree (sl unused, the split code compiled out); SPLIT = 1: a network whose rivers split */
DEFINE_IIR_FORWARD(iir_forward_f32, float, 0)
DEFINE_IIR_FORWARD(iir_forward_f64, double, 0)
DEFINE_IIR_FORWARD(iir_forward_split_f32, float, 1)
DEFINE_IIR_FORWARD(iir_forward_split_f64, double, 1)

/* Reverse-mode of the IIR pass. grad: dL/dQ; out: the forward Q; q: the runoff; prev: the forward's
 * initial state (Q, U, q at t = -1) or NULL for a cold start. Writes dq, adds into dcoef [n, 5].
 * Time runs backwards in chunks; lam[i] carries lambda at the first step of the later chunk, where
 * lambda[t] = A[t] + r lambda[t+1] and A = dL/dQ plus the adjoint of the downstream reach's inflow.
 * With split links (sl): child_ptr/child_idx list only the upstream reaches that do not split (the links of
 * split reaches are sl's in_* CSR); a split reach's A sums f times its receivers' inflow adjoints, and
 * dL/df = sum_t adjU_receiver[t] Q[t] is added into sl->dfrac. */
#define DEFINE_IIR_BACKWARD(NAME, REAL, SPLIT)                                                       \
int NAME(i64 n, i64 t_len, i64 chunk, const i64 *order, const i64 *depth, const i64 *down,            \
         const i64 *child_ptr, const i64 *child_idx, const double *coef, const REAL *q,               \
         const REAL *out, const REAL *grad, const double *prev, REAL *dq, double *dcoef,              \
         double *lam, double *stack, double *abuf, double *ubuf, const split_links *sl)               \
{                                                                                                     \
    i64 n_chunks = (t_len + chunk - 1) / chunk;                                                       \
    for (i64 ci = n_chunks - 1; ci >= 0; --ci) {                                                      \
        i64 t0 = ci * chunk;                                                                          \
        i64 m = (t_len - t0 < chunk) ? (t_len - t0) : chunk;                                          \
        for (i64 p = n - 1; p >= 0; --p) {                                                            \
            i64 i = order[p];                                                                         \
            const double *c = coef + 5 * i;                                                           \
            double r = c[0], b0 = c[1], b1 = c[2], c0 = c[3], c1 = c[4];                              \
            const REAL *gi = grad + i * t_len + t0;                                                   \
            const REAL *qi = q + i * t_len + t0;                                                      \
            const REAL *oi = out + i * t_len + t0;                                                    \
            double *adj_u = stack + depth[i] * chunk;                                                 \
            const double *adj_down = (down[i] >= 0) ? adj_u - chunk : 0;                             \
            /* lambda, backwards in time; abuf[k] = lambda[t0 + k], abuf[m] = lambda[t0 + m] */       \
            double l = lam[i];                                                                        \
            abuf[m] = l;                                                                              \
            if (SPLIT && sl->link_ptr[i + 1] > sl->link_ptr[i]) { /* a split reach: A over its links */   \
                double *w = sl->wbuf;                                                                 \
                for (i64 k = 0; k < m; ++k) w[k] = (double)gi[k];                                     \
                for (i64 e = sl->link_ptr[i]; e < sl->link_ptr[i + 1]; ++e) {                         \
                    i64 row = sl->link_row[e];                                                        \
                    double f = sl->link_frac[e], s = 0.0;                                             \
                    const double *ad = row >= 0 ? sl->side + row * chunk : stack + (-row - 1) * chunk; \
                    for (i64 k = 0; k < m; ++k) { w[k] += f * ad[k]; s += ad[k] * (double)oi[k]; }    \
                    sl->dfrac[e] += s;                                                                \
                }                                                                                     \
                for (i64 k = m - 1; k >= 0; --k) {                                                    \
                    l = w[k] + r * l;                                                                 \
                    abuf[k] = l;                                                                      \
                }                                                                                     \
            } else {                                                                                  \
                for (i64 k = m - 1; k >= 0; --k) {                                                    \
                    double a = (double)gi[k] + (adj_down ? adj_down[k] : 0.0);                        \
                    l = a + r * l;                                                                    \
                    abuf[k] = l;                                                                      \
                }                                                                                     \
            }                                                                                         \
            lam[i] = l;                                                                               \
            /* U of this reach over [t0 - 1, t0 + m): the sum of its upstream reaches' outflow */     \
            for (i64 k = 0; k <= m; ++k) ubuf[k] = 0.0;                                               \
            for (i64 e = child_ptr[i]; e < child_ptr[i + 1]; ++e) {                                   \
                const REAL *oc = out + child_idx[e] * t_len + t0;                                     \
                for (i64 k = 0; k < m; ++k) ubuf[k + 1] += (double)oc[k];                             \
                if (t0 > 0) ubuf[0] += (double)oc[-1];                                                \
            }                                                                                         \
            if (SPLIT) for (i64 e = sl->in_ptr[i]; e < sl->in_ptr[i + 1]; ++e) {                      \
                const REAL *os = out + sl->in_src[e] * t_len + t0;                                    \
                double f = sl->in_frac[e];                                                            \
                for (i64 k = 0; k < m; ++k) ubuf[k + 1] += f * (double)os[k];                         \
                if (t0 > 0) ubuf[0] += f * (double)os[-1];                                            \
            }                                                                                         \
            double q_before, o_before;                                                                \
            if (t0 > 0) { q_before = (double)qi[-1]; o_before = (double)oi[-1]; }                    \
            else if (prev) { o_before = prev[3 * i]; ubuf[0] = prev[3 * i + 1]; q_before = prev[3 * i + 2]; } \
            else { q_before = 0.0; o_before = 0.0; ubuf[0] = 0.0; }                                  \
            double dr = 0, db0 = 0, db1 = 0, dc0 = 0, dc1 = 0;                                        \
            double o_prev = o_before, q_prev = q_before;                                              \
            for (i64 k = 0; k < m; ++k) {                                                             \
                double lk = abuf[k], ln = abuf[k + 1];                                                \
                double qk = (double)qi[k];                                                            \
                dr += lk * o_prev; db0 += lk * ubuf[k + 1]; db1 += lk * ubuf[k];                      \
                dc0 += lk * qk; dc1 += lk * q_prev;                                                   \
                o_prev = (double)oi[k]; q_prev = qk;                                                  \
                adj_u[k] = b0 * lk + b1 * ln;                                                         \
                dq[i * t_len + t0 + k] = (REAL)(c0 * lk + c1 * ln);                                   \
            }                                                                                         \
            double *dc = dcoef + 5 * i;                                                               \
            dc[0] += dr; dc[1] += db0; dc[2] += db1; dc[3] += dc0; dc[4] += dc1;                      \
            if (SPLIT && sl->side_of[i] >= 0) /* for the sources of its minor links, visited later */ \
                memcpy(sl->side + sl->side_of[i] * chunk, adj_u, (size_t)m * sizeof(double));        \
        }                                                                                             \
    }                                                                                                 \
    return 0;                                                                                         \
}

DEFINE_IIR_BACKWARD(iir_backward_f32, float, 0)
DEFINE_IIR_BACKWARD(iir_backward_f64, double, 0)
DEFINE_IIR_BACKWARD(iir_backward_split_f32, float, 1)
DEFINE_IIR_BACKWARD(iir_backward_split_f64, double, 1)

/* FIR pass over whole rows. h, g: [n, klen] (g == h when same != 0); support [k0, k1) per reach
 * (taps outside it are zero). hist_u, hist_q: [n, hlen] the inputs before t = 0 (oldest first), or
 * NULL for a cold start; on return they hold the last hlen inputs (the warm state for the next call).
 * ext: 2 x (hlen + t_len) doubles; acc: t_len doubles; stack: (max depth + 1) x t_len doubles. */
#define DEFINE_FIR_FORWARD(NAME, REAL)                                                               \
int NAME(i64 n, i64 t_len, i64 klen, i64 hlen, const i64 *order, const i64 *depth, const i64 *down,   \
         const double *h, const double *g, int same, const i64 *k0, const i64 *k1, const REAL *q,     \
         REAL *out, double *hist_u, double *hist_q, double *stack, double *ext, double *acc)          \
{                                                                                                     \
    i64 w = hlen + t_len;                                                                             \
    double *xu = ext, *xq = ext + w;                                                                  \
    for (i64 p = 0; p < n; ++p) {                                                                     \
        i64 i = order[p];                                                                             \
        double *u = stack + depth[i] * t_len;                                                         \
        const REAL *qi = q + i * t_len;                                                               \
        for (i64 k = 0; k < hlen; ++k) {                                                              \
            xu[k] = hist_u ? hist_u[i * hlen + k] : 0.0;                                              \
            xq[k] = hist_q ? hist_q[i * hlen + k] : 0.0;                                              \
        }                                                                                             \
        for (i64 t = 0; t < t_len; ++t) { xu[hlen + t] = u[t]; xq[hlen + t] = (double)qi[t]; }         \
        if (same) for (i64 t = 0; t < w; ++t) xu[t] += xq[t];                                         \
        for (i64 t = 0; t < t_len; ++t) acc[t] = 0.0;                                                 \
        const double *hi = h + i * klen, *gi = g + i * klen;                                          \
        for (i64 k = k0[i]; k < k1[i]; ++k) {                                                         \
            double hk = hi[k];                                                                        \
            const double *src = xu + hlen - k;                                                        \
            i64 t = (k > hlen) ? k - hlen : 0;                                                        \
            if (same) { for (; t < t_len; ++t) acc[t] += hk * src[t]; }                               \
            else {                                                                                    \
                double gk = gi[k];                                                                    \
                const double *srq = xq + hlen - k;                                                    \
                for (; t < t_len; ++t) acc[t] += hk * src[t] + gk * srq[t];                           \
            }                                                                                         \
        }                                                                                             \
        REAL *oi = out + i * t_len;                                                                   \
        for (i64 t = 0; t < t_len; ++t) oi[t] = (REAL)acc[t];                                         \
        if (hist_u) {                                                                                 \
            if (same) for (i64 t = 0; t < w; ++t) xu[t] -= xq[t];                                     \
            for (i64 k = 0; k < hlen; ++k) {                                                          \
                hist_u[i * hlen + k] = xu[t_len + k];                                                 \
                hist_q[i * hlen + k] = xq[t_len + k];                                                 \
            }                                                                                         \
        }                                                                                             \
        if (down[i] >= 0) {                                                                           \
            double *ud = u - t_len;                                                                   \
            for (i64 t = 0; t < t_len; ++t) ud[t] += (double)oi[t];                                   \
        }                                                                                             \
        memset(u, 0, (size_t)t_len * sizeof(double));                                                \
    }                                                                                                 \
    return 0;                                                                                         \
}

DEFINE_FIR_FORWARD(fir_forward_f32, float)
DEFINE_FIR_FORWARD(fir_forward_f64, double)

/* Reverse-mode of the FIR pass (cold start). Adds dL/dh and dL/dg into dh, dg [n, klen] (dg unused
 * when same), writes dq. ubuf: t_len doubles (the reach's inflow, rebuilt from its upstream outflow);
 * abuf: t_len doubles. */
#define DEFINE_FIR_BACKWARD(NAME, REAL)                                                              \
int NAME(i64 n, i64 t_len, i64 klen, const i64 *order, const i64 *depth, const i64 *down,             \
         const i64 *child_ptr, const i64 *child_idx, const double *h, const double *g, int same,      \
         const i64 *k0, const i64 *k1, const REAL *q, const REAL *out, const REAL *grad, REAL *dq,    \
         double *dh, double *dg, double *stack, double *abuf, double *ubuf, double *acc)              \
{                                                                                                     \
    for (i64 p = n - 1; p >= 0; --p) {                                                                \
        i64 i = order[p];                                                                             \
        double *adj_u = stack + depth[i] * t_len;                                                     \
        const double *adj_down = (down[i] >= 0) ? adj_u - t_len : 0;                                 \
        const REAL *gi = grad + i * t_len, *qi = q + i * t_len;                                       \
        for (i64 t = 0; t < t_len; ++t) abuf[t] = (double)gi[t] + (adj_down ? adj_down[t] : 0.0);    \
        for (i64 t = 0; t < t_len; ++t) ubuf[t] = 0.0;                                                \
        for (i64 e = child_ptr[i]; e < child_ptr[i + 1]; ++e) {                                       \
            const REAL *oc = out + child_idx[e] * t_len;                                              \
            for (i64 t = 0; t < t_len; ++t) ubuf[t] += (double)oc[t];                                 \
        }                                                                                             \
        if (same) for (i64 t = 0; t < t_len; ++t) ubuf[t] += (double)qi[t];                           \
        const double *hi = h + i * klen, *gg = g + i * klen;                                          \
        double *dhi = dh + i * klen, *dgi = dg + i * klen;                                            \
        for (i64 t = 0; t < t_len; ++t) { adj_u[t] = 0.0; acc[t] = 0.0; }                             \
        for (i64 k = k0[i]; k < k1[i] && k < t_len; ++k) {                                            \
            double hk = hi[k], gk = same ? 0.0 : gg[k], sh = 0.0, sg = 0.0;                           \
            for (i64 t = 0; t + k < t_len; ++t) {                                                     \
                double a = abuf[t + k];                                                               \
                adj_u[t] += hk * a;                                                                   \
                acc[t] += gk * a;                                                                     \
                sh += a * ubuf[t];                                                                    \
                if (!same) sg += a * (double)qi[t];                                                   \
            }                                                                                         \
            dhi[k] += sh;                                                                             \
            if (!same) dgi[k] += sg;                                                                  \
        }                                                                                             \
        REAL *dqi = dq + i * t_len;                                                                   \
        for (i64 t = 0; t < t_len; ++t) dqi[t] = (REAL)(same ? adj_u[t] : acc[t]);                    \
    }                                                                                                 \
    return 0;                                                                                         \
}

DEFINE_FIR_BACKWARD(fir_backward_f32, float)
DEFINE_FIR_BACKWARD(fir_backward_f64, double)

/* Per-reach support [k0, k1) of kernels h (and g unless NULL), [n, klen]: the taps holding all but
 * tol of the absolute mass at either end (one pass per row; the torch version costs seconds at 1e5 x 1e3). */
int kernel_support(i64 n, i64 klen, const double *h, const double *g, double tol, i64 *k0, i64 *k1)
{
    for (i64 i = 0; i < n; ++i) {
        const double *hi = h + i * klen, *gi = g ? g + i * klen : 0;
        double total = 0.0;
        for (i64 k = 0; k < klen; ++k) total += fabs(hi[k]) + (gi ? fabs(gi[k]) : 0.0);
        double cut = tol * (total > 1e-300 ? total : 1e-300), acc = 0.0;
        i64 a = 0;
        while (a < klen) {
            acc += fabs(hi[a]) + (gi ? fabs(gi[a]) : 0.0);
            if (acc > cut) break;
            ++a;
        }
        acc = 0.0;
        i64 b = klen;
        while (b > a + 1) {
            acc += fabs(hi[b - 1]) + (gi ? fabs(gi[b - 1]) : 0.0);
            if (acc > cut) break;
            --b;
        }
        k0[i] = a < klen ? a : klen - 1;
        k1[i] = b > k0[i] ? b : k0[i] + 1;
    }
    return 0;
}
