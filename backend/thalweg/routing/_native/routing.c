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
 * Accumulation is in double whatever the storage type (the FIR passes sum each pass of 16 taps in float32
 * pairwise before adding it to the double accumulator; see fir_forward).
 */
#include <stdint.h>
#include <string.h>
#include <math.h>

typedef int64_t i64;
#ifndef PF
#define PF 4
#endif
/* The vector recursions' prefetches of the rows PF reaches ahead go into L2 (prefetcht1), not past the caches
 * (prefetchnta): on this VM's AVX-512 Xeon, Muskingum 100k x 366 on one thread, the prepared forward took 51-56 ->
 * 37-43 ms and forward+backward 240 -> 180 ms (A/B alternated); the convolution's (locality 1) measured the same
 * at 2. */
#define IIR_PF_LOCALITY 2
/* The same sitting, more prefetches PF reaches ahead: the forward's per-reach records (coefficients, state, depth,
 * downstream: 37.5-44.1 -> 35.9-38.7 ms), the backward's dq row for writing (its masked stores waited on reads for
 * ownership: forward+backward 176-186 -> 151-155 ms) and the two coefficient-gradient rows it adds to (-> 145-148).
 * The scalar passes (networks whose rivers split; builds without AVX-512) at this locality too, and their backward
 * now fetches its rows PF reaches on: a 106k-reach DAG x 366 steps, one thread, forward 103-110 -> 71-73 ms,
 * forward+backward 408 -> 315-318 ms. */

/* Prefetch the first `bytes` of each row in rows[] (rows[0] for writing; NULL rows skipped), a line at a time, at
 * `locality` (a constant). Statements, not a function: gcc deletes calls of a function that only prefetches. */
#define PREFETCH_ROWS(rows, bytes, locality)                                                        \
    do {                                                                                              \
        for (i64 b2_ = 0; b2_ < (bytes); b2_ += 64) {                                                 \
            for (int r_ = 0; r_ < (int)(sizeof(rows) / sizeof(rows[0])); ++r_)                        \
                if (rows[r_]) __builtin_prefetch((const char *)rows[r_] + b2_, r_ == 0, locality);    \
        }                                                                                             \
    } while (0)

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
                i64 j = order[p + PF];                                                                \
                const void *rows[2] = {out + j * t_len + t0, q + j * t_len + t0};                     \
                PREFETCH_ROWS(rows, m * (i64)sizeof(REAL), IIR_PF_LOCALITY);                          \
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

/* SPLIT = 0: a tree (sl unused, the split code compiled out); SPLIT = 1: a network whose rivers split. The trees'
 * passes are the vector ones below where AVX-512 is there; these scalar ones stay as their reference. */
DEFINE_IIR_FORWARD(iir_forward_scalar_f32, float, 0)
DEFINE_IIR_FORWARD(iir_forward_scalar_f64, double, 0)
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
            if (p >= PF) { /* rows are visited out of memory order: fetch the rows PF reaches on */   \
                i64 j = order[p - PF];                                                                \
                const void *rows[4] = {dq + j * t_len + t0, grad + j * t_len + t0, q + j * t_len + t0,  \
                                       out + j * t_len + t0};                                         \
                PREFETCH_ROWS(rows, m * (i64)sizeof(REAL), IIR_PF_LOCALITY);                          \
            }                                                                                         \
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

DEFINE_IIR_BACKWARD(iir_backward_scalar_f32, float, 0)
DEFINE_IIR_BACKWARD(iir_backward_scalar_f64, double, 0)
DEFINE_IIR_BACKWARD(iir_backward_split_f32, float, 1)
DEFINE_IIR_BACKWARD(iir_backward_split_f64, double, 1)

/* Vector IIR passes for trees (AVX-512; the scalar passes above elsewhere and for networks whose rivers split).
 *
 * A row of one reach goes in blocks of 8 steps, one double per lane, and the recursion of a block is a scan:
 * with x the block's input terms (b0 U[t] + b1 U[t-1] + c0 q[t] + c1 q[t-1]), three shift-and-multiply-add steps
 * give s[j] = sum_{k <= j} r^(j-k) x[k], and Q[t0 + j] = s[j] + r^(j+1) Y with Y the outflow before the block;
 * Y itself goes on as Y' = r^8 Y + s[7], held in all lanes, so the dependency chain between blocks is one
 * multiply-add per 8 steps. Everything else is independent across blocks. The blocks follow the alignment of the
 * output row (the first block starts s lanes before the row, those lanes masked), so the output goes out in whole
 * 32-byte (float) or 64-byte (double) pieces: the cache lines that lie wholly in the row are written with
 * streaming stores (no read of the line before it is written; nothing reads Q again in the pass), the shared ones
 * at the row's ends with masked stores. The runoff rows PF reaches ahead are prefetched a line per block, spread
 * over the row rather than in a burst (a burst of 23 prefetches at each reach filled the miss buffers: 66 ms
 * against 58 ms at 100k x 366 here, 2-core EPYC VM, loaded).
 * The backward pass walks blocks backwards in time with the same scan reversed; each reach keeps its adjoint
 * lambda in a row of a depth-indexed stack (row stride IIR_STRIDE(chunk), one slot past the chunk for lambda at
 * the first step of the later chunk), and its upstream reaches read it there: a reach's own A = dL/dQ + b0' lambda'
 * + b1' lambda'[t+1] from its downstream reach's row and coefficients, and it adds its share of the downstream
 * reach's b0 and b1 gradients (lambda' Q and lambda' Q[t-1]), so no reach rebuilds its inflow from its upstream
 * rows. */
#define IIR_STRIDE(chunk) ((((chunk) + 1) + 7) & ~(i64)7)

#if defined(__AVX512F__) && defined(__AVX512VL__)
#include <immintrin.h>
#define THALWEG_AVX512 1
#define V_ALIGNR(a, b, k) _mm512_castsi512_pd(_mm512_alignr_epi64(_mm512_castpd_si512(a), _mm512_castpd_si512(b), k))
#define V_MASK(lo, hi) ((__mmask8)((0xffu >> (8 - (hi))) & (0xffu << (lo)))) /* lanes [lo, hi) */

/* storage-type loads and stores of 8 steps as doubles; the stores return the stored values as doubles */
static inline __m512d v_ld_f32(__mmask8 mk, const float *p) { return _mm512_cvtps_pd(_mm256_maskz_loadu_ps(mk, p)); }
static inline __m512d v_ld_f64(__mmask8 mk, const double *p) { return _mm512_maskz_loadu_pd(mk, p); }
static inline __m512d v_st_f32(float *p, __mmask8 mk, __m512d y, int stream)
{
    __m256 f = _mm512_cvtpd_ps(y);
    if (stream) _mm256_stream_ps(p, f);
    else _mm256_mask_storeu_ps(p, mk, f);
    return _mm512_cvtps_pd(f);
}
static inline __m512d v_st_f64(double *p, __mmask8 mk, __m512d y, int stream)
{
    if (stream) _mm512_stream_pd(p, y);
    else _mm512_mask_storeu_pd(p, mk, y);
    return y;
}
static inline double v_lane(__m512d v, i64 j) { return _mm512_cvtsd_f64(_mm512_permutexvar_pd(_mm512_set1_epi64(j), v)); }

/* s[j] = sum_{k <= j} r^(j-k) x[k] (forward) */
static inline __m512d v_scan(__m512d x, __m512d r1, __m512d r2, __m512d r4)
{
    const __m512d z = _mm512_setzero_pd();
    x = _mm512_fmadd_pd(r1, V_ALIGNR(x, z, 7), x);
    x = _mm512_fmadd_pd(r2, V_ALIGNR(x, z, 6), x);
    return _mm512_fmadd_pd(r4, V_ALIGNR(x, z, 4), x);
}
/* s[j] = sum_{k >= j} r^(k-j) x[k] (backward) */
static inline __m512d v_rscan(__m512d x, __m512d r1, __m512d r2, __m512d r4)
{
    const __m512d z = _mm512_setzero_pd();
    x = _mm512_fmadd_pd(r1, V_ALIGNR(z, x, 1), x);
    x = _mm512_fmadd_pd(r2, V_ALIGNR(z, x, 2), x);
    return _mm512_fmadd_pd(r4, V_ALIGNR(z, x, 4), x);
}

#define DEFINE_IIR_VFORWARD(SUF, REAL)                                                                  \
static void iir_vrow_##SUF(i64 m, const double *c, const REAL *qi, REAL *oi, double *u, double *ud,       \
                           double *st, const char *pf)                                                 \
{                                                                                                      \
    const i64 line = 64 / (i64)sizeof(REAL);                                                           \
    double r = c[0], r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;                                           \
    const __m512d R1 = _mm512_set1_pd(r), R2 = _mm512_set1_pd(r2), R4 = _mm512_set1_pd(r4);           \
    const __m512d R8 = _mm512_set1_pd(r8), RP = _mm512_set_pd(r8, r4 * r2 * r, r4 * r2, r4 * r, r4, r2 * r, r2, r); \
    const __m512d B0 = _mm512_set1_pd(c[1]), B1 = _mm512_set1_pd(c[2]);                                \
    const __m512d C0 = _mm512_set1_pd(c[3]), C1 = _mm512_set1_pd(c[4]);                                \
    const __m512d Z = _mm512_setzero_pd();                                                              \
    const __m512i I7 = _mm512_set1_epi64(7);                                                           \
    double u_last = u[m - 1], q_last = (double)qi[m - 1];                                              \
    uintptr_t a0 = (uintptr_t)oi / sizeof(REAL);                                                       \
    i64 s = (i64)(a0 & 7), nb = (m + s + 7) >> 3;                                                      \
    /* the steps [la, lb) of the row fill whole cache lines */                                          \
    i64 la = (line - (i64)(a0 & (line - 1))) & (line - 1), lb = m - (i64)((a0 + m) & (line - 1));       \
    const REAL *qb = qi - s;                                                                           \
    REAL *ob = oi - s;                                                                                 \
    double *ub = u - s, *udb = ud ? ud - s : 0;                                                        \
    __m512d qprev = _mm512_set1_pd(st[2]), uprev = _mm512_set1_pd(st[1]);                              \
    __m512d yb = s ? Z : _mm512_set1_pd(st[0]), y = Z;                                                  \
    for (i64 b = 0; b < nb; ++b) {                                                                     \
        i64 lo = b ? 0 : s, hi = b == nb - 1 ? m + s - 8 * b : 8;                                      \
        __mmask8 mk = V_MASK(lo, hi);                                                                  \
        __m512d qv = v_ld_##SUF(mk, qb + 8 * b), uv = _mm512_maskz_loadu_pd(mk, ub + 8 * b);            \
        __m512d qs = V_ALIGNR(qv, qprev, 7), us = V_ALIGNR(uv, uprev, 7);                               \
        if (lo) { /* lane s takes q and U before the row from the state */                             \
            qs = _mm512_mask_mov_pd(qs, (__mmask8)(1u << s), _mm512_set1_pd(st[2]));                   \
            us = _mm512_mask_mov_pd(us, (__mmask8)(1u << s), _mm512_set1_pd(st[1]));                   \
        }                                                                                              \
        __m512d x = _mm512_fmadd_pd(B0, uv, _mm512_fmadd_pd(B1, us, _mm512_fmadd_pd(C0, qv, _mm512_mul_pd(C1, qs)))); \
        if (lo) /* lane s - 1 holds the outflow before the row, the lanes before it nothing */         \
            x = _mm512_mask_mov_pd(_mm512_maskz_mov_pd(mk, x), (__mmask8)(1u << (s - 1)), _mm512_set1_pd(st[0])); \
        x = v_scan(x, R1, R2, R4);                                                                     \
        y = _mm512_fmadd_pd(RP, yb, x);                                                                \
        yb = _mm512_fmadd_pd(R8, yb, _mm512_permutexvar_pd(I7, x));                                    \
        i64 t = 8 * b - s;                                                                             \
        __m512d yo = v_st_##SUF(ob + 8 * b, mk, y, mk == 0xff && t >= la && t + 8 <= lb);               \
        if (udb) _mm512_mask_storeu_pd(udb + 8 * b, mk, _mm512_add_pd(_mm512_maskz_loadu_pd(mk, udb + 8 * b), yo)); \
        _mm512_mask_storeu_pd(ub + 8 * b, mk, Z);                                                      \
        if (pf) __builtin_prefetch(pf + 8 * (i64)sizeof(REAL) * b, 0, IIR_PF_LOCALITY);                \
        qprev = qv;                                                                                    \
        uprev = uv;                                                                                    \
    }                                                                                                  \
    if (pf) __builtin_prefetch(pf + m * (i64)sizeof(REAL) - 1, 0, IIR_PF_LOCALITY);                    \
    st[0] = v_lane(y, m + s - 8 * (nb - 1) - 1);                                                       \
    st[1] = u_last;                                                                                    \
    st[2] = q_last;                                                                                    \
}                                                                                                      \
int iir_forward_##SUF(i64 n, i64 t_len, i64 chunk, const i64 *order, const i64 *depth, const i64 *down,  \
                      const double *coef, const REAL *q, REAL *out, double *state, double *stack,       \
                      double *xbuf, const split_links *sl)                                             \
{                                                                                                      \
    (void)xbuf; (void)sl;                                                                              \
    i64 cs = IIR_STRIDE(chunk);                                                                        \
    for (i64 t0 = 0; t0 < t_len; t0 += chunk) {                                                        \
        i64 m = (t_len - t0 < chunk) ? (t_len - t0) : chunk;                                           \
        for (i64 p = 0; p < n; ++p) {                                                                  \
            i64 i = order[p];                                                                          \
            double *u = stack + depth[i] * cs;                                                         \
            const char *pf = p + PF < n ? (const char *)(q + order[p + PF] * t_len + t0) : 0;          \
            if (p + PF < n) { /* the reach's records PF ahead: its rows are not in memory order */     \
                i64 j = order[p + PF];                                                                 \
                __builtin_prefetch(coef + 5 * j, 0, IIR_PF_LOCALITY);                                  \
                __builtin_prefetch(state + 3 * j, 1, IIR_PF_LOCALITY);                                 \
                __builtin_prefetch(depth + j, 0, IIR_PF_LOCALITY);                                     \
                __builtin_prefetch(down + j, 0, IIR_PF_LOCALITY);                                      \
            }                                                                                          \
            iir_vrow_##SUF(m, coef + 5 * i, q + i * t_len + t0, out + i * t_len + t0, u,                 \
                           down[i] >= 0 ? u - cs : 0, state + 3 * i, pf);                              \
        }                                                                                              \
    }                                                                                                  \
    _mm_sfence(); /* the streaming stores are visible to whoever reads Q next */                       \
    return 0;                                                                                          \
}

DEFINE_IIR_VFORWARD(f32, float)
DEFINE_IIR_VFORWARD(f64, double)

#define DEFINE_IIR_VBACKWARD(SUF, REAL)                                                                 \
int iir_backward_##SUF(i64 n, i64 t_len, i64 chunk, const i64 *order, const i64 *depth, const i64 *down, \
                       const i64 *child_ptr, const i64 *child_idx, const double *coef, const REAL *q,    \
                       const REAL *out, const REAL *grad, const double *prev, REAL *dq, double *dcoef,  \
                       double *lam, double *stack, double *abuf, double *ubuf, const split_links *sl)   \
{                                                                                                      \
    (void)child_ptr; (void)child_idx; (void)abuf; (void)ubuf; (void)sl;                                \
    const __m512d Z = _mm512_setzero_pd();                                                              \
    i64 cs = IIR_STRIDE(chunk), n_chunks = (t_len + chunk - 1) / chunk;                                \
    for (i64 ci = n_chunks - 1; ci >= 0; --ci) {                                                       \
        i64 t0 = ci * chunk, m = (t_len - t0 < chunk) ? (t_len - t0) : chunk;                          \
        i64 nb = (m + 7) >> 3, e = m - 1 - 8 * (nb - 1); /* the last block's last lane */             \
        for (i64 p = n - 1; p >= 0; --p) {                                                             \
            i64 i = order[p], d = down[i];                                                             \
            const double *c = coef + 5 * i;                                                            \
            double r = c[0], r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;                                   \
            const __m512d R1 = _mm512_set1_pd(r), R2 = _mm512_set1_pd(r2), R4 = _mm512_set1_pd(r4);   \
            const __m512d R8 = _mm512_set1_pd(r8);                                                     \
            const __m512d RP = _mm512_set_pd(r, r2, r2 * r, r4, r4 * r, r4 * r2, r4 * r2 * r, r8);     \
            const __m512d C0 = _mm512_set1_pd(c[3]), C1 = _mm512_set1_pd(c[4]);                        \
            const __m512d B0d = _mm512_set1_pd(d >= 0 ? coef[5 * d + 1] : 0.0);                        \
            const __m512d B1d = _mm512_set1_pd(d >= 0 ? coef[5 * d + 2] : 0.0);                        \
            const REAL *gi = grad + i * t_len + t0, *qi = q + i * t_len + t0, *oi = out + i * t_len + t0; \
            REAL *dqi = dq + i * t_len + t0;                                                           \
            double *lr = stack + depth[i] * cs; /* this reach's lambda, for its upstream reaches */    \
            const double *lp = d >= 0 ? lr - cs : 0; /* the downstream reach's */                      \
            const char *pf0 = 0, *pf1 = 0, *pf2 = 0, *pf3 = 0;                                         \
            if (p >= PF) {                                                                             \
                i64 j = order[p - PF];                                                                 \
                pf0 = (const char *)(grad + j * t_len + t0);                                           \
                pf1 = (const char *)(q + j * t_len + t0);                                              \
                pf2 = (const char *)(out + j * t_len + t0);                                            \
                pf3 = (const char *)(dq + j * t_len + t0); /* for writing: dq is not streamed */       \
            }                                                                                          \
            __builtin_prefetch(dcoef + 5 * i, 1, IIR_PF_LOCALITY); /* added to after the row */        \
            if (d >= 0) __builtin_prefetch(dcoef + 5 * d, 1, IIR_PF_LOCALITY);                         \
            double carry = lam[i]; /* lambda at t0 + m */                                              \
            lr[m] = carry;                                                                             \
            double o_before = 0.0, q_before = 0.0;                                                     \
            if (t0 == 0 && prev) { o_before = prev[3 * i]; q_before = prev[3 * i + 2]; }              \
            __m512d lb = e < 7 ? Z : _mm512_set1_pd(carry);                                            \
            __m512d dr = Z, dc0 = Z, dc1 = Z, db0 = Z, db1 = Z;                                        \
            for (i64 b = nb - 1; b >= 0; --b) {                                                        \
                __mmask8 mk = V_MASK(0, b == nb - 1 ? e + 1 : 8);                                      \
                __m512d a = v_ld_##SUF(mk, gi + 8 * b), lpv = Z;                                       \
                if (lp) {                                                                              \
                    lpv = _mm512_maskz_loadu_pd(mk, lp + 8 * b);                                       \
                    a = _mm512_fmadd_pd(B0d, lpv, _mm512_fmadd_pd(B1d, _mm512_maskz_loadu_pd(mk, lp + 8 * b + 1), a)); \
                }                                                                                      \
                if (b == nb - 1 && e < 7) /* lane e + 1 holds lambda after the chunk */                 \
                    a = _mm512_mask_mov_pd(a, (__mmask8)(1u << (e + 1)), _mm512_set1_pd(carry));       \
                __m512d x = v_rscan(a, R1, R2, R4);                                                    \
                __m512d l = _mm512_fmadd_pd(RP, lb, x);                                                \
                __m512d ln = V_ALIGNR(lb, l, 1); /* lambda[t + 1] */                                   \
                lb = _mm512_fmadd_pd(R8, lb, _mm512_permutexvar_pd(_mm512_setzero_si512(), x));       \
                v_st_##SUF(dqi + 8 * b, mk, _mm512_fmadd_pd(C0, l, _mm512_mul_pd(C1, ln)), 0);          \
                _mm512_mask_storeu_pd(lr + 8 * b, mk, l);                                              \
                __mmask8 m1 = (b == 0 && t0 == 0) ? (__mmask8)(mk & 0xfe) : mk; /* t - 1 >= 0 */        \
                __m512d qo = v_ld_##SUF(mk, oi + 8 * b), qo1 = v_ld_##SUF(m1, oi + 8 * b - 1);          \
                __m512d qv = v_ld_##SUF(mk, qi + 8 * b), qv1 = v_ld_##SUF(m1, qi + 8 * b - 1);          \
                if (lp) {                                                                              \
                    db0 = _mm512_fmadd_pd(lpv, qo, db0);                                               \
                    db1 = _mm512_fmadd_pd(lpv, qo1, db1);                                              \
                }                                                                                      \
                if (m1 != mk) {                                                                        \
                    qo1 = _mm512_mask_mov_pd(qo1, 1, _mm512_set1_pd(o_before));                        \
                    qv1 = _mm512_mask_mov_pd(qv1, 1, _mm512_set1_pd(q_before));                        \
                }                                                                                      \
                dr = _mm512_fmadd_pd(l, qo1, dr);                                                      \
                dc0 = _mm512_fmadd_pd(l, qv, dc0);                                                     \
                dc1 = _mm512_fmadd_pd(l, qv1, dc1);                                                    \
                if (pf0) {                                                                             \
                    i64 off = 8 * (i64)sizeof(REAL) * b;                                               \
                    __builtin_prefetch(pf0 + off, 0, IIR_PF_LOCALITY);                                 \
                    __builtin_prefetch(pf1 + off, 0, IIR_PF_LOCALITY);                                 \
                    __builtin_prefetch(pf2 + off, 0, IIR_PF_LOCALITY);                                 \
                    __builtin_prefetch(pf3 + off, 1, IIR_PF_LOCALITY);                                 \
                }                                                                                      \
            }                                                                                          \
            double l0 = _mm512_cvtsd_f64(lb);                                                          \
            lam[i] = l0;                                                                               \
            double *dc = dcoef + 5 * i;                                                                \
            dc[0] += _mm512_reduce_add_pd(dr);                                                         \
            dc[3] += _mm512_reduce_add_pd(dc0);                                                        \
            dc[4] += _mm512_reduce_add_pd(dc1);                                                        \
            if (t0 == 0 && prev) dc[2] += l0 * prev[3 * i + 1]; /* U before the run */                 \
            if (lp) {                                                                                  \
                dcoef[5 * d + 1] += _mm512_reduce_add_pd(db0);                                         \
                dcoef[5 * d + 2] += _mm512_reduce_add_pd(db1);                                         \
            }                                                                                          \
        }                                                                                              \
    }                                                                                                  \
    return 0;                                                                                          \
}

DEFINE_IIR_VBACKWARD(f32, float)
DEFINE_IIR_VBACKWARD(f64, double)
#endif /* AVX-512 */

#ifndef THALWEG_AVX512 /* no vector passes: the trees' passes are the scalar ones */
#define IIR_SCALAR_ALIAS(SUF, REAL)                                                                     \
int iir_forward_##SUF(i64 n, i64 t_len, i64 chunk, const i64 *order, const i64 *depth, const i64 *down,  \
                      const double *coef, const REAL *q, REAL *out, double *state, double *stack,       \
                      double *xbuf, const split_links *sl)                                             \
{                                                                                                      \
    return iir_forward_scalar_##SUF(n, t_len, chunk, order, depth, down, coef, q, out, state, stack, xbuf, sl); \
}                                                                                                      \
int iir_backward_##SUF(i64 n, i64 t_len, i64 chunk, const i64 *order, const i64 *depth, const i64 *down, \
                       const i64 *child_ptr, const i64 *child_idx, const double *coef, const REAL *q,    \
                       const REAL *out, const REAL *grad, const double *prev, REAL *dq, double *dcoef,  \
                       double *lam, double *stack, double *abuf, double *ubuf, const split_links *sl)   \
{                                                                                                      \
    return iir_backward_scalar_##SUF(n, t_len, chunk, order, depth, down, child_ptr, child_idx, coef, q, out, \
                                     grad, prev, dq, dcoef, lam, stack, abuf, ubuf, sl);               \
}
IIR_SCALAR_ALIAS(f32, float)
IIR_SCALAR_ALIAS(f64, double)
#endif

/* FIR passes (ROUTING.md section 2): Q[t] = sum_k h[k] U[t-k] + g[k] q[t-k] over each reach's support
 * [k0, k1) (taps outside it are zero). One reach at a time, whole rows, in time tiles of FIR_TILE steps
 * so that a tile's accumulator and inputs stay in L1 whatever the series length. Taps go 16 per pass
 * (8 or 4 for the last few): a pass forms the sum of its taps' products in the storage type (float32
 * runs: at most 16 terms summed pairwise, a few ulp) and adds it to a double accumulator, so there is
 * about one load per multiply-add, the loops vectorise (gcc -O3 -march=native: 16 float lanes on
 * AVX-512) and the long sums over the support stay in double. Rows are padded (zeros before t = 0,
 * and after T for the adjoints) and passes run over whole vectors (T rounded up to FIR_VL), so no
 * loop needs a bounds test or a scalar tail. Rows are visited in post-order, not in memory order, so
 * the rows of the reach PF places ahead are prefetched.
 * Work buffers are allocated here, once per call (a call routes a whole work item); -1 if that fails. */
#include <stdlib.h>

#pragma GCC push_options
/* 32-byte vectors in the passes: most of their loads start inside a cache line (x[t - j] for 16 j), and a 64-byte
 * load at such an offset reads two lines; 32-byte ones cross half as often. Hayami 100k x 366 daily, the compiled
 * forward on one thread (2-core EPYC VM, AVX-512): 169-183 ms against 192-206 ms with 64-byte vectors. */
#pragma GCC target("prefer-vector-width=256")
#define FIR_TILE 512
#define FIR_VL 16

static i64 fir_round(i64 a) { return (a + FIR_VL - 1) & ~(i64)(FIR_VL - 1); }

/* Prefetch taps [a_, b_) of the kernel rows hrow and grow (grow may be NULL). Statements, not a function: gcc
 * deletes calls of a function that only prefetches. */
#define FIR_PREFETCH_TAPS(hrow, grow, a_, b_)                                                         \
    do {                                                                                              \
        for (i64 k_ = (a_); k_ < (b_); k_ += 8) {                                                     \
            __builtin_prefetch((hrow) + k_, 0, 1);                                                    \
            if (grow) __builtin_prefetch((grow) + k_, 0, 1);                                          \
        }                                                                                             \
    } while (0)

/* Prefetch the first `bytes` of each row in rows[] (rows[0] for writing) and taps [a_, b_) of the kernel
 * rows. */
#define FIR_PREFETCH(rows, bytes, hrow, grow, a_, b_)                                          \
    do {                                                                                              \
        PREFETCH_ROWS(rows, bytes, 1);                                                                \
        FIR_PREFETCH_TAPS(hrow, grow, a_, b_);                                                        \
    } while (0)

/* The taps [a, b) of one kernel row as the storage type, zero-padded to whole vectors. */
#define DEFINE_FIR_TAPS(SUF, REAL)                                                                   \
static void fir_taps_##SUF(const double *hi, i64 a, i64 b, REAL *dst)                                 \
{                                                                                                     \
    i64 len = fir_round(b - a);                                                                       \
    for (i64 k = 0; k < len; ++k) dst[k] = (a + k < b) ? (REAL)hi[a + k] : (REAL)0;                   \
}

/* acc[t] += sum_{j < 16} w[j] x[t - j] (conv: forward, x shifted by the pass's first tap) or
 * sum_j w[j] x[t + j] (corr: adjoint), t in [0, m); 8- and 4-tap variants for the last taps. */
#define DEFINE_FIR_KERNELS(SUF, REAL)                                                                \
static void fir_conv16_##SUF(double *restrict acc, const REAL *restrict x, i64 m, const REAL *restrict w)\
{                                                                                                     \
    const REAL w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5], w6 = w[6], w7 = w[7];\
    const REAL w8 = w[8], w9 = w[9], w10 = w[10], w11 = w[11], w12 = w[12], w13 = w[13], w14 = w[14], w15 = w[15];\
    for (i64 t = 0; t < m; ++t) {                                                                     \
        REAL s0 = ((w0 * x[t] + w1 * x[t - 1]) + (w2 * x[t - 2] + w3 * x[t - 3]));                    \
        REAL s1 = ((w4 * x[t - 4] + w5 * x[t - 5]) + (w6 * x[t - 6] + w7 * x[t - 7]));                \
        REAL s2 = ((w8 * x[t - 8] + w9 * x[t - 9]) + (w10 * x[t - 10] + w11 * x[t - 11]));            \
        REAL s3 = ((w12 * x[t - 12] + w13 * x[t - 13]) + (w14 * x[t - 14] + w15 * x[t - 15]));        \
        acc[t] += (double)((s0 + s1) + (s2 + s3));                                                    \
    }                                                                                                 \
}                                                                                                     \
static void fir_conv8_##SUF(double *restrict acc, const REAL *restrict x, i64 m, const REAL *restrict w)\
{                                                                                                     \
    const REAL w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5], w6 = w[6], w7 = w[7];\
    for (i64 t = 0; t < m; ++t) {                                                                     \
        REAL s0 = ((w0 * x[t] + w1 * x[t - 1]) + (w2 * x[t - 2] + w3 * x[t - 3]));                    \
        REAL s1 = ((w4 * x[t - 4] + w5 * x[t - 5]) + (w6 * x[t - 6] + w7 * x[t - 7]));                \
        acc[t] += (double)(s0 + s1);                                                                  \
    }                                                                                                 \
}                                                                                                     \
static void fir_conv4_##SUF(double *restrict acc, const REAL *restrict x, i64 m, const REAL *restrict w)\
{                                                                                                     \
    const REAL w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];                                            \
    for (i64 t = 0; t < m; ++t) {                                                                     \
        REAL s0 = ((w0 * x[t] + w1 * x[t - 1]) + (w2 * x[t - 2] + w3 * x[t - 3]));                    \
        acc[t] += (double)s0;                                                                         \
    }                                                                                                 \
}                                                                                                     \
static void fir_corr16_##SUF(double *restrict acc, const REAL *restrict x, i64 m, const REAL *restrict w)\
{                                                                                                     \
    const REAL w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5], w6 = w[6], w7 = w[7];\
    const REAL w8 = w[8], w9 = w[9], w10 = w[10], w11 = w[11], w12 = w[12], w13 = w[13], w14 = w[14], w15 = w[15];\
    for (i64 t = 0; t < m; ++t) {                                                                     \
        REAL s0 = ((w0 * x[t] + w1 * x[t + 1]) + (w2 * x[t + 2] + w3 * x[t + 3]));                    \
        REAL s1 = ((w4 * x[t + 4] + w5 * x[t + 5]) + (w6 * x[t + 6] + w7 * x[t + 7]));                \
        REAL s2 = ((w8 * x[t + 8] + w9 * x[t + 9]) + (w10 * x[t + 10] + w11 * x[t + 11]));            \
        REAL s3 = ((w12 * x[t + 12] + w13 * x[t + 13]) + (w14 * x[t + 14] + w15 * x[t + 15]));        \
        acc[t] += (double)((s0 + s1) + (s2 + s3));                                                    \
    }                                                                                                 \
}                                                                                                     \
static void fir_corr8_##SUF(double *restrict acc, const REAL *restrict x, i64 m, const REAL *restrict w)\
{                                                                                                     \
    const REAL w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5], w6 = w[6], w7 = w[7];\
    for (i64 t = 0; t < m; ++t) {                                                                     \
        REAL s0 = ((w0 * x[t] + w1 * x[t + 1]) + (w2 * x[t + 2] + w3 * x[t + 3]));                    \
        REAL s1 = ((w4 * x[t + 4] + w5 * x[t + 5]) + (w6 * x[t + 6] + w7 * x[t + 7]));                \
        acc[t] += (double)(s0 + s1);                                                                  \
    }                                                                                                 \
}                                                                                                     \
static void fir_corr4_##SUF(double *restrict acc, const REAL *restrict x, i64 m, const REAL *restrict w)\
{                                                                                                     \
    const REAL w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];                                            \
    for (i64 t = 0; t < m; ++t) {                                                                     \
        REAL s0 = ((w0 * x[t] + w1 * x[t + 1]) + (w2 * x[t + 2] + w3 * x[t + 3]));                    \
        acc[t] += (double)s0;                                                                         \
    }                                                                                                 \
}

/* acc[t0..t0+m) += the convolution (fwd) or correlation of x with the cnt taps w[] of which the first
 * is tap a: forward x index t - a - j, adjoint t + a + j */
#define DEFINE_FIR_APPLY(SUF, REAL)                                                                  \
static void fir_apply_##SUF(double *acc, const REAL *x, i64 t0, i64 m, const REAL *w, i64 a, i64 cnt, int fwd) \
{                                                                                                     \
    for (i64 j = 0; j < cnt; ) {                                                                      \
        i64 left = cnt - j, step = left > 8 ? 16 : (left > 4 ? 8 : 4);                                \
        const REAL *src = fwd ? x + t0 - a - j : x + t0 + a + j;                                      \
        if (fwd) {                                                                                    \
            if (step == 16) fir_conv16_##SUF(acc + t0, src, m, w + j);                                \
            else if (step == 8) fir_conv8_##SUF(acc + t0, src, m, w + j);                             \
            else fir_conv4_##SUF(acc + t0, src, m, w + j);                                            \
        } else {                                                                                      \
            if (step == 16) fir_corr16_##SUF(acc + t0, src, m, w + j);                                \
            else if (step == 8) fir_corr8_##SUF(acc + t0, src, m, w + j);                             \
            else fir_corr4_##SUF(acc + t0, src, m, w + j);                                            \
        }                                                                                             \
        j += step;                                                                                    \
    }                                                                                                 \
}

/* dh[j] += sum_t ad[t + j] u[t], j < 8, t in [0, m) with m a multiple of 8 (u zero-padded): eight
 * lanes per tap so the sums vectorise without reassociation (no -ffast-math). */
static void fir_dot8(double *restrict dh, const double *restrict ad, const double *restrict u, i64 m)
{
    double s[8][8] = {{0}};
    for (i64 t = 0; t < m; t += 8)
        for (int l = 0; l < 8; ++l) {
            double uv = u[t + l];
            const double *av = ad + t + l;
            s[0][l] += av[0] * uv; s[1][l] += av[1] * uv; s[2][l] += av[2] * uv; s[3][l] += av[3] * uv;
            s[4][l] += av[4] * uv; s[5][l] += av[5] * uv; s[6][l] += av[6] * uv; s[7][l] += av[7] * uv;
        }
    for (int j = 0; j < 8; ++j) {
        double v = 0.0;
        for (int l = 0; l < 8; ++l) v += s[j][l];
        dh[j] += v;
    }
}

/* Each reach's support [k0, k1) and kernel row offset (0 without hoff) in visiting order, [n][3]: read in turn by the
 * passes instead of at random reaches (those loads, and the prefetch addresses that need them, stalled at each
 * reach). NULL if out of memory. */
static i64 *fir_meta(i64 n, const i64 *order, const i64 *k0, const i64 *k1, const i64 *hoff)
{
    i64 *meta = malloc((size_t)(3 * n + 1) * sizeof(i64));
    if (!meta) return 0;
    for (i64 p = 0; p < n; ++p) {
        i64 i = order[p];
        meta[3 * p] = k0[i];
        meta[3 * p + 1] = k1[i];
        meta[3 * p + 2] = hoff ? hoff[i] : 0;
    }
    return meta;
}

/* The largest tap index + 1 the passes meet: klen, or more where kernel rows start at an offset. */
static i64 fir_span(i64 n, i64 klen, const i64 *meta, int offset)
{
    i64 ks = klen;
    if (offset)
        for (i64 p = 0; p < n; ++p)
            if (meta[3 * p + 1] > ks) ks = meta[3 * p + 1];
    return ks;
}

/* The forward's row work around the passes, with the recursions' lessons (session 8): the next rows' lines are
 * prefetched one per 16 steps as the inflow is built (a burst of both rows' 2 x 23 lines at each reach filled the
 * miss buffers), the inflow row of the stack is zeroed as it is read, and the output lines that lie wholly in the
 * row go out by streaming stores (no read of a line before it is written; nothing reads Q again in the pass; the
 * two shared lines at the row's ends are prefetched for writing). Hayami 100k x 366 daily, one thread, the
 * prepared call (2-core EPYC VM): 8 % faster (docs/routing-engines.md, session 12). */
#define FIR_PF_ROWS 6 /* rows prefetched for the backward's next reach: dL/dQ, q and up to 4 upstream reaches' Q */
#if defined(__AVX2__)
#include <immintrin.h>
#define FIR_SFENCE() _mm_sfence()
#else
#define FIR_SFENCE() ((void)0)
#endif

/* oi[t] = (REAL)acc[t] and, where ud, ud[t] += oi[t] as a double, t < t_len */
static void fir_out_f32(float *restrict oi, double *restrict ud, const double *restrict acc, i64 t_len)
{
    i64 t = 0;
#if defined(__AVX2__)
    for (; t < t_len && ((uintptr_t)(oi + t) & 31); ++t) { float o = (float)acc[t]; oi[t] = o; if (ud) ud[t] += (double)o; }
    for (; t + 8 <= t_len; t += 8) {
        __m128 f0 = _mm256_cvtpd_ps(_mm256_loadu_pd(acc + t)), f1 = _mm256_cvtpd_ps(_mm256_loadu_pd(acc + t + 4));
        _mm256_stream_ps(oi + t, _mm256_insertf128_ps(_mm256_castps128_ps256(f0), f1, 1));
        if (ud) {
            _mm256_storeu_pd(ud + t, _mm256_add_pd(_mm256_loadu_pd(ud + t), _mm256_cvtps_pd(f0)));
            _mm256_storeu_pd(ud + t + 4, _mm256_add_pd(_mm256_loadu_pd(ud + t + 4), _mm256_cvtps_pd(f1)));
        }
    }
#endif
    for (; t < t_len; ++t) { float o = (float)acc[t]; oi[t] = o; if (ud) ud[t] += (double)o; }
}
static void fir_out_f64(double *restrict oi, double *restrict ud, const double *restrict acc, i64 t_len)
{
    i64 t = 0;
#if defined(__AVX2__)
    for (; t < t_len && ((uintptr_t)(oi + t) & 31); ++t) { oi[t] = acc[t]; if (ud) ud[t] += acc[t]; }
    for (; t + 4 <= t_len; t += 4) {
        __m256d a = _mm256_loadu_pd(acc + t);
        _mm256_stream_pd(oi + t, a);
        if (ud) _mm256_storeu_pd(ud + t, _mm256_add_pd(_mm256_loadu_pd(ud + t), a));
    }
#endif
    for (; t < t_len; ++t) { oi[t] = acc[t]; if (ud) ud[t] += acc[t]; }
}

/* Forward. h, g: [n, klen] (g == h when same != 0); support [k0, k1) per reach; hoff: NULL, or [n]
 * the tap index of each kernel row's first column (short rows for kernels far from tap 0: a lag's
 * two taps). hist_u, hist_q:
 * [n, hlen] the inputs before t = 0 (oldest first), or NULL for a cold start; on return they hold the
 * last hlen inputs (the warm state for the next call). stack: (max depth + 1) x t_len doubles. */
#define DEFINE_FIR_FORWARD(SUF, REAL)                                                                \
DEFINE_FIR_TAPS(SUF, REAL)                                                                            \
int fir_forward_##SUF(i64 n, i64 t_len, i64 klen, i64 hlen, const i64 *order, const i64 *depth,       \
                      const i64 *down, const double *h, const double *g, int same, const i64 *k0,     \
                      const i64 *k1, const i64 *hoff, const REAL *q, REAL *out, double *hist_u,       \
                      double *hist_q, double *stack)                                                  \
{                                                                                                     \
    i64 *meta = fir_meta(n, order, k0, k1, hoff);                                                     \
    if (!meta) return -1;                                                                             \
    i64 ks = fir_span(n, klen, meta, hoff != 0);                                                      \
    i64 tl = fir_round(t_len), pad = fir_round(ks) + FIR_VL, w = pad + hlen + tl + FIR_VL;            \
    i64 wl = fir_round(ks) + FIR_VL;                                                                  \
    REAL *xbuf = calloc((size_t)(2 * w + 2 * wl), sizeof(REAL));                                      \
    double *acc = malloc((size_t)tl * sizeof(double));                                               \
    if (!xbuf || !acc) { free(xbuf); free(acc); free(meta); return -1; }                             \
    REAL *xu = xbuf + pad, *xq = xbuf + w + pad, *wh = xbuf + 2 * w, *wg = wh + wl;                   \
    for (i64 p = 0; p < n; ++p) {                                                                     \
        i64 i = order[p];                                                                             \
        const char *pq = 0; /* the runoff row PF reaches ahead: prefetched a line per 16 steps below */ \
        if (p + PF < n) {                                                                             \
            i64 j = order[p + PF];                                                                    \
            const char *oj = (const char *)(out + j * t_len);                                         \
            const i64 *mj = meta + 3 * (p + PF);                                                      \
            pq = (const char *)(q + j * t_len);                                                       \
            __builtin_prefetch(oj, 1, 1); /* the output row's shared lines, for writing */           \
            __builtin_prefetch(oj + t_len * (i64)sizeof(REAL) - 1, 1, 1);                             \
            FIR_PREFETCH_TAPS(h + j * klen, same ? 0 : g + j * klen, mj[0] - mj[2], mj[1] - mj[2]);     \
        }                                                                                             \
        double *u = stack + depth[i] * t_len;                                                         \
        const REAL *qi = q + i * t_len;                                                               \
        REAL *oi = out + i * t_len;                                                                   \
        double *hu = hist_u ? hist_u + i * hlen : 0, *hq = hist_q ? hist_q + i * hlen : 0;             \
        REAL *ux = xu + hlen, *qx = xq + hlen; /* step t of this call at index t */                   \
        if (same) for (i64 k = 0; k < hlen; ++k) xu[k] = hu ? (REAL)(hu[k] + hq[k]) : (REAL)0;         \
        else for (i64 k = 0; k < hlen; ++k) { xu[k] = hu ? (REAL)hu[k] : (REAL)0; xq[k] = hq ? (REAL)hq[k] : (REAL)0; } \
        i64 t1 = 0;                                                                                   \
        for (; t1 + 16 <= t_len; t1 += 16) {                                                          \
            if (same) for (int l = 0; l < 16; ++l) ux[t1 + l] = (REAL)(u[t1 + l] + (double)qi[t1 + l]);  \
            else for (int l = 0; l < 16; ++l) { ux[t1 + l] = (REAL)u[t1 + l]; qx[t1 + l] = qi[t1 + l]; } \
            if (!hu) for (int l = 0; l < 16; ++l) u[t1 + l] = 0.0; /* zeroed as read (the history reads it) */ \
            if (pq) for (i64 b_ = 0; b_ < 16 * (i64)sizeof(REAL); b_ += 64)                            \
                __builtin_prefetch(pq + t1 * (i64)sizeof(REAL) + b_, 0, 1);                           \
        }                                                                                             \
        for (; t1 < t_len; ++t1) {                                                                    \
            if (same) ux[t1] = (REAL)(u[t1] + (double)qi[t1]);                                        \
            else { ux[t1] = (REAL)u[t1]; qx[t1] = qi[t1]; }                                           \
            if (!hu) u[t1] = 0.0;                                                                     \
        }                                                                                             \
        if (pq) __builtin_prefetch(pq + t_len * (i64)sizeof(REAL) - 1, 0, 1);                          \
        /* taps past hlen + t_len meet only the zero padding */                                       \
        const i64 *mi = meta + 3 * p;                                                                 \
        i64 a = mi[0], b = mi[1] < hlen + t_len ? mi[1] : hlen + t_len, cnt = b > a ? b - a : 0;      \
        i64 off = mi[2]; /* tap k is at column k - off of the kernel rows */                          \
        fir_taps_##SUF(h + i * klen, a - off, a - off + cnt, wh);                                     \
        if (!same) fir_taps_##SUF(g + i * klen, a - off, a - off + cnt, wg);                          \
        memset(acc, 0, (size_t)tl * sizeof(double));                                                 \
        for (i64 t0 = 0; t0 < tl; t0 += FIR_TILE) {                                                   \
            i64 m = (tl - t0 < FIR_TILE) ? tl - t0 : FIR_TILE;                                        \
            fir_apply_##SUF(acc, ux, t0, m, wh, a, cnt, 1);                                           \
            if (!same) fir_apply_##SUF(acc, qx, t0, m, wg, a, cnt, 1);                                \
        }                                                                                             \
        fir_out_##SUF(oi, down[i] >= 0 ? u - t_len : 0, acc, t_len);                                 \
        if (hu) { /* the last hlen inputs of [history, this call] (u and q apart) */                 \
            i64 keep = hlen > t_len ? hlen - t_len : 0;                                               \
            memmove(hu, hu + (hlen - keep), (size_t)keep * sizeof(double));                          \
            memmove(hq, hq + (hlen - keep), (size_t)keep * sizeof(double));                          \
            for (i64 k = keep; k < hlen; ++k) {                                                       \
                i64 t = t_len - hlen + k;                                                             \
                hu[k] = u[t]; hq[k] = (double)qi[t];                                                  \
            }                                                                                         \
            memset(u, 0, (size_t)t_len * sizeof(double));                                            \
        }                                                                                             \
    }                                                                                                 \
    FIR_SFENCE(); /* the streaming stores are visible to whoever reads Q next */                      \
    free(xbuf); free(acc); free(meta);                                                                \
    return 0;                                                                                         \
}

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
/* The float32 passes in 32-byte vectors written out: one base pointer for the shifted inputs, and each pass's 16
 * products summed as four fused multiply-add chains of four (taps j = c, c+4, c+8, c+12), the chains then pairwise,
 * before the float sum is widened into the double accumulator. gcc's own vectorisation of the loops above kept
 * one pointer per tap (reloaded from vector registers) and the pairwise tree of products: 19 instead of 23 vector
 * operations per 16 taps. One pass over 368 steps in L1 (2-core EPYC VM): 39-40 against 28-31 multiply-adds per ns
 * (64- or 32-byte vectors, gcc's loops); 64-byte vectors of these chains did no better than gcc's loops (28-29). */
static inline void fir_widen_f32(double *acc, __m256 s)
{
#ifdef THALWEG_AVX512
    _mm512_storeu_pd(acc, _mm512_add_pd(_mm512_loadu_pd(acc), _mm512_cvtps_pd(s)));
#else
    _mm256_storeu_pd(acc, _mm256_add_pd(_mm256_loadu_pd(acc), _mm256_cvtps_pd(_mm256_castps256_ps128(s))));
    _mm256_storeu_pd(acc + 4, _mm256_add_pd(_mm256_loadu_pd(acc + 4), _mm256_cvtps_pd(_mm256_extractf128_ps(s, 1))));
#endif
}
/* TAPS in {4, 8, 16}; D = -1: convolution (x[t - j]), D = +1: correlation (x[t + j]) */
#define FIR_V(NAME, TAPS, D)                                                                            \
static void NAME(double *restrict acc, const float *restrict x, i64 m, const float *restrict w)          \
{                                                                                                      \
    __m256 w_[TAPS];                                                                                   \
    for (int j = 0; j < TAPS; ++j) w_[j] = _mm256_set1_ps(w[j]);                                       \
    for (i64 t = 0; t < m; t += 8) {                                                                   \
        const float *p = x + t;                                                                        \
        __m256 c0 = _mm256_mul_ps(w_[0], _mm256_loadu_ps(p)), c1 = _mm256_mul_ps(w_[1], _mm256_loadu_ps(p + D)); \
        __m256 c2 = _mm256_mul_ps(w_[2], _mm256_loadu_ps(p + 2 * D));                                  \
        __m256 c3 = _mm256_mul_ps(w_[3], _mm256_loadu_ps(p + 3 * D));                                  \
        for (int j = 4; j < TAPS; j += 4) {                                                            \
            c0 = _mm256_fmadd_ps(w_[j], _mm256_loadu_ps(p + j * D), c0);                               \
            c1 = _mm256_fmadd_ps(w_[j + 1], _mm256_loadu_ps(p + (j + 1) * D), c1);                     \
            c2 = _mm256_fmadd_ps(w_[j + 2], _mm256_loadu_ps(p + (j + 2) * D), c2);                     \
            c3 = _mm256_fmadd_ps(w_[j + 3], _mm256_loadu_ps(p + (j + 3) * D), c3);                     \
        }                                                                                              \
        fir_widen_f32(acc + t, _mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)));           \
    }                                                                                                  \
}
FIR_V(fir_conv16_f32, 16, -1)
FIR_V(fir_conv8_f32, 8, -1)
FIR_V(fir_conv4_f32, 4, -1)
FIR_V(fir_corr16_f32, 16, 1)
FIR_V(fir_corr8_f32, 8, 1)
FIR_V(fir_corr4_f32, 4, 1)
#else
DEFINE_FIR_KERNELS(f32, float)
#endif



DEFINE_FIR_KERNELS(f64, double)
DEFINE_FIR_APPLY(f32, float)
DEFINE_FIR_APPLY(f64, double)

DEFINE_FIR_FORWARD(f32, float)
DEFINE_FIR_FORWARD(f64, double)

/* Reverse-mode of the FIR pass. Adds dL/dh and dL/dg into dh, dg [n, klen] (dg unused when same), writes
 * dq. The adjoint A of each reach's outflow (dL/dQ plus its downstream reach's inflow adjoint) gives:
 * inflow adjoint sum_k h[k] A[t+k] (into the stack, for the upstream reaches), dq[t] = sum_k g[k] A[t+k],
 * dh[k] = sum_t A[t+k] U[t] (U + q when same), dg[k] = sum_t A[t+k] q[t]; U is rebuilt from the upstream
 * outflow. hist_u, hist_q: NULL for a cold start, else [n, hlen] the inputs before t = 0 that the forward was
 * given (oldest first): the taps' terms in them are added (the histories themselves get no gradient). */
#define DEFINE_FIR_BACKWARD(SUF, REAL)                                                               \
int fir_backward_##SUF(i64 n, i64 t_len, i64 klen, const i64 *order, const i64 *depth, const i64 *down, \
                       const i64 *child_ptr, const i64 *child_idx, const double *h, const double *g,  \
                       int same, const i64 *k0, const i64 *k1, const i64 *hoff, const REAL *q,        \
                       const REAL *out, const REAL *grad, REAL *dq, double *dh, double *dg, i64 hlen,  \
                       const double *hist_u, const double *hist_q, double *stack)                     \
{                                                                                                     \
    i64 *meta = fir_meta(n, order, k0, k1, hoff);                                                     \
    if (!meta) return -1;                                                                             \
    i64 ks = fir_span(n, klen, meta, hoff != 0);                                                      \
    i64 tl = fir_round(t_len), tail = fir_round(ks) + 2 * FIR_VL, wl = fir_round(ks) + FIR_VL;         \
    REAL *abuf = calloc((size_t)(tl + tail + 2 * wl), sizeof(REAL));                                 \
    double *dbuf = calloc((size_t)(tl + tail + 4 * tl), sizeof(double));                             \
    if (!abuf || !dbuf) { free(abuf); free(dbuf); free(meta); return -1; }                           \
    REAL *wh = abuf + tl + tail, *wg = wh + wl;                                                       \
    /* zero past t_len: ad (the adjoint, double), ub, qb (the inputs), au, ag (the correlations) */   \
    double *ad = dbuf, *ub = dbuf + tl + tail, *qb = ub + tl, *au = qb + tl, *ag = au + tl;           \
    for (i64 p = n - 1; p >= 0; --p) {                                                                \
        i64 i = order[p];                                                                             \
        /* the rows of the reach PF ahead (dL/dQ, q and its upstream reaches' Q, up to FIR_PF_ROWS of them) are \
         * prefetched a line per 16 steps as A is built, as in the forward; dq's shared lines for writing */ \
        const char *pfr[FIR_PF_ROWS];                                                                 \
        int npf = 0;                                                                                  \
        if (p - PF >= 0) {                                                                            \
            i64 j = order[p - PF];                                                                    \
            const i64 *mj = meta + 3 * (p - PF);                                                      \
            const char *dj = (const char *)(dq + j * t_len);                                          \
            __builtin_prefetch(dj, 1, 1);                                                             \
            __builtin_prefetch(dj + t_len * (i64)sizeof(REAL) - 1, 1, 1);                             \
            FIR_PREFETCH_TAPS(h + j * klen, same ? 0 : g + j * klen, mj[0] - mj[2], mj[1] - mj[2]);     \
            pfr[npf++] = (const char *)(grad + j * t_len);                                            \
            pfr[npf++] = (const char *)(q + j * t_len);                                               \
            for (i64 e = child_ptr[j]; e < child_ptr[j + 1] && npf < FIR_PF_ROWS; ++e)                \
                pfr[npf++] = (const char *)(out + child_idx[e] * t_len);                              \
        }                                                                                             \
        double *adj_u = stack + depth[i] * t_len;                                                     \
        const double *adj_down = (down[i] >= 0) ? adj_u - t_len : 0;                                 \
        const REAL *gi = grad + i * t_len, *qi = q + i * t_len;                                       \
        i64 t1 = 0;                                                                                   \
        for (; t1 + 16 <= t_len; t1 += 16) {                                                          \
            if (adj_down) for (int l = 0; l < 16; ++l) ad[t1 + l] = (double)gi[t1 + l] + adj_down[t1 + l]; \
            else for (int l = 0; l < 16; ++l) ad[t1 + l] = (double)gi[t1 + l];                        \
            for (int l = 0; l < 16; ++l) abuf[t1 + l] = (REAL)ad[t1 + l];                             \
            for (int r_ = 0; r_ < npf; ++r_)                                                          \
                for (i64 b_ = 0; b_ < 16 * (i64)sizeof(REAL); b_ += 64)                                \
                    __builtin_prefetch(pfr[r_] + t1 * (i64)sizeof(REAL) + b_, 0, 1);                  \
        }                                                                                             \
        for (; t1 < t_len; ++t1) {                                                                    \
            ad[t1] = (double)gi[t1] + (adj_down ? adj_down[t1] : 0.0);                                \
            abuf[t1] = (REAL)ad[t1];                                                                  \
        }                                                                                             \
        for (int r_ = 0; r_ < npf; ++r_) __builtin_prefetch(pfr[r_] + t_len * (i64)sizeof(REAL) - 1, 0, 1); \
        for (i64 t = 0; t < t_len; ++t) ub[t] = 0.0;                                                  \
        for (i64 e = child_ptr[i]; e < child_ptr[i + 1]; ++e) {                                       \
            const REAL *oc = out + child_idx[e] * t_len;                                              \
            for (i64 t = 0; t < t_len; ++t) ub[t] += (double)oc[t];                                   \
        }                                                                                             \
        if (same) for (i64 t = 0; t < t_len; ++t) ub[t] += (double)qi[t];                             \
        else for (i64 t = 0; t < t_len; ++t) qb[t] = (double)qi[t];                                   \
        /* taps at or past t_len reach no output of this call */                                      \
        const i64 *mi = meta + 3 * p;                                                                 \
        i64 a = mi[0], b = mi[1] < t_len ? mi[1] : t_len, cnt = b > a ? b - a : 0;                    \
        i64 off = mi[2]; /* tap k is at column k - off of the kernel rows */                          \
        fir_taps_##SUF(h + i * klen, a - off, a - off + cnt, wh);                                     \
        if (!same) fir_taps_##SUF(g + i * klen, a - off, a - off + cnt, wg);                          \
        /* inflow adjoint (and dq) */                                                                 \
        memset(au, 0, (size_t)tl * sizeof(double));                                                  \
        if (!same) memset(ag, 0, (size_t)tl * sizeof(double));                                       \
        for (i64 t0 = 0; t0 < tl; t0 += FIR_TILE) {                                                   \
            i64 m = (tl - t0 < FIR_TILE) ? tl - t0 : FIR_TILE;                                        \
            fir_apply_##SUF(au, abuf, t0, m, wh, a, cnt, 0);                                          \
            if (!same) fir_apply_##SUF(ag, abuf, t0, m, wg, a, cnt, 0);                               \
        }                                                                                             \
        memcpy(adj_u, au, (size_t)t_len * sizeof(double));                                           \
        fir_out_##SUF(dq + i * t_len, 0, same ? au : ag, t_len); /* dq: streaming stores */            \
        /* kernel gradients: 8 taps per pass over t in [0, t_len - a) */                             \
        double *dhi = dh + i * klen, *dgi = dg + i * klen;                                            \
        for (i64 j = 0; j < cnt; j += 8) {                                                            \
            i64 m = (t_len - a - j + 7) & ~(i64)7;                                                    \
            double part[8] = {0}, partg[8] = {0};                                                     \
            fir_dot8(part, ad + a + j, ub, m);                                                        \
            if (!same) fir_dot8(partg, ad + a + j, qb, m);                                            \
            for (i64 l = 0; l < 8 && j + l < cnt; ++l) {                                              \
                dhi[a - off + j + l] += part[l];                                                      \
                if (!same) dgi[a - off + j + l] += partg[l];                                          \
            }                                                                                         \
        }                                                                                             \
        if (hist_u) { /* a warm start: tap k met the inputs before the call, X[t - k] for t < k (the forward's \
                       * taps reach hlen steps back; U and q apart, or their sum when same) */          \
            const double *hu = hist_u + i * hlen, *hq = hist_q + i * hlen;                            \
            i64 kb = mi[1] < hlen + t_len ? mi[1] : hlen + t_len;                                     \
            for (i64 k = a > 1 ? a : 1; k < kb; ++k) {                                                \
                i64 t_beg = k > hlen ? k - hlen : 0, t_end = k < t_len ? k : t_len;                   \
                double su = 0.0, sq = 0.0;                                                            \
                for (i64 t = t_beg; t < t_end; ++t) {                                                 \
                    i64 x = hlen + t - k;                                                             \
                    su += ad[t] * (same ? hu[x] + hq[x] : hu[x]);                                     \
                    sq += ad[t] * hq[x];                                                              \
                }                                                                                     \
                dhi[k - off] += su;                                                                   \
                if (!same) dgi[k - off] += sq;                                                        \
            }                                                                                         \
        }                                                                                             \
    }                                                                                                 \
    FIR_SFENCE();                                                                                     \
    free(abuf); free(dbuf); free(meta);                                                               \
    return 0;                                                                                         \
}

DEFINE_FIR_BACKWARD(f32, float)
DEFINE_FIR_BACKWARD(f64, double)
#pragma GCC pop_options

/* Nash cascade with a whole number of reservoirs (ROUTING.md section 3): reach i's kernel
 * a^n C(k+n-1, k) (1-a)^k is the n-fold convolution of the linear-storage kernel a (1-a)^k, so
 * Q = n passes of y[t] = (1 - a) y[t-1] + a x[t] over x = U + q (g = h), cold start, in double.
 * Cost per step: n recursions whatever the kernel's length. av: [n] a = dt / (tau + dt); nres: [n]
 * reservoirs per reach (>= 1). xbuf: t_len doubles; stack: (max depth + 1) x t_len doubles. */
/* Up to four reservoirs in one pass over x (in place): y_s[t] = r y_s[t-1] + a y_{s-1}[t]. Each stage's
 * chain is one fused multiply-add per step and the stages overlap, so a pass costs about one stage's
 * latency per step, not four. */
static void cascade_stages(double *x, i64 t_len, double a, double r, i64 stages)
{
    double y0 = 0.0, y1 = 0.0, y2 = 0.0, y3 = 0.0;
    switch (stages) {
    case 1:
        for (i64 t = 0; t < t_len; ++t) { y0 = fma(r, y0, a * x[t]); x[t] = y0; }
        break;
    case 2:
        for (i64 t = 0; t < t_len; ++t) { y0 = fma(r, y0, a * x[t]); y1 = fma(r, y1, a * y0); x[t] = y1; }
        break;
    case 3:
        for (i64 t = 0; t < t_len; ++t) {
            y0 = fma(r, y0, a * x[t]); y1 = fma(r, y1, a * y0); y2 = fma(r, y2, a * y1); x[t] = y2;
        }
        break;
    default:
        for (i64 t = 0; t < t_len; ++t) {
            y0 = fma(r, y0, a * x[t]); y1 = fma(r, y1, a * y0); y2 = fma(r, y2, a * y1);
            y3 = fma(r, y3, a * y2); x[t] = y3;
        }
    }
}

#define DEFINE_CASCADE_FORWARD(SUF, REAL)                                                            \
int cascade_forward_##SUF(i64 n, i64 t_len, const i64 *order, const i64 *depth, const i64 *down,      \
                          const double *av, const i64 *nres, const REAL *q, REAL *out, double *stack, \
                          double *xbuf)                                                               \
{                                                                                                     \
    for (i64 p = 0; p < n; ++p) {                                                                     \
        i64 i = order[p];                                                                             \
        if (p + PF < n) {                                                                             \
            i64 j = order[p + PF];                                                                    \
            const void *rows[2] = {out + j * t_len, q + j * t_len};                                   \
            FIR_PREFETCH(rows, t_len * (i64)sizeof(REAL), av, (const double *)0, 0, 0);            \
        }                                                                                             \
        double *u = stack + depth[i] * t_len;                                                         \
        const REAL *qi = q + i * t_len;                                                               \
        REAL *oi = out + i * t_len;                                                                   \
        double a = av[i], r = 1.0 - a;                                                                \
        for (i64 t = 0; t < t_len; ++t) xbuf[t] = u[t] + (double)qi[t];                               \
        for (i64 s = 0; s < nres[i]; s += 4) cascade_stages(xbuf, t_len, a, r, nres[i] - s);          \
        double *ud = down[i] >= 0 ? u - t_len : 0;                                                    \
        if (ud) for (i64 t = 0; t < t_len; ++t) { REAL o = (REAL)xbuf[t]; oi[t] = o; ud[t] += (double)o; } \
        else for (i64 t = 0; t < t_len; ++t) oi[t] = (REAL)xbuf[t];                                   \
        memset(u, 0, (size_t)t_len * sizeof(double));                                                \
    }                                                                                                 \
    return 0;                                                                                         \
}

DEFINE_CASCADE_FORWARD(f32, float)
DEFINE_CASCADE_FORWARD(f64, double)

/* Reverse-mode of the cascade. Writes dq, adds dL/da into da [n]. The stage inputs are recomputed
 * from the upstream outflow and q (xs: (max nres + 1) x t_len doubles); through each stage, backwards
 * in time: lambda[t] = A[t] + (1 - a) lambda[t+1], the stage input's adjoint is a lambda[t] and
 * dL/da += lambda[t] (x[t] - y[t-1]). */
#define DEFINE_CASCADE_BACKWARD(SUF, REAL)                                                           \
int cascade_backward_##SUF(i64 n, i64 t_len, const i64 *order, const i64 *depth, const i64 *down,     \
                           const i64 *child_ptr, const i64 *child_idx, const double *av,              \
                           const i64 *nres, const REAL *q, const REAL *out, const REAL *grad,         \
                           REAL *dq, double *da, double *stack, double *xs, double *lam)              \
{                                                                                                     \
    for (i64 p = n - 1; p >= 0; --p) {                                                                \
        i64 i = order[p];                                                                             \
        double *adj_u = stack + depth[i] * t_len;                                                     \
        const double *adj_down = (down[i] >= 0) ? adj_u - t_len : 0;                                 \
        const REAL *gi = grad + i * t_len, *qi = q + i * t_len;                                       \
        double a = av[i], r = 1.0 - a;                                                                \
        i64 m = nres[i];                                                                              \
        if (p >= PF) { /* the rows PF reaches on (rows are visited out of memory order) */            \
            i64 j = order[p - PF];                                                                    \
            const void *rows[3] = {dq + j * t_len, grad + j * t_len, q + j * t_len};                  \
            PREFETCH_ROWS(rows, t_len * (i64)sizeof(REAL), IIR_PF_LOCALITY);                          \
        }                                                                                             \
        double *x0 = xs;                                                                              \
        for (i64 t = 0; t < t_len; ++t) x0[t] = (double)qi[t];                                        \
        for (i64 e = child_ptr[i]; e < child_ptr[i + 1]; ++e) {                                       \
            const REAL *oc = out + child_idx[e] * t_len;                                              \
            for (i64 t = 0; t < t_len; ++t) x0[t] += (double)oc[t];                                   \
        }                                                                                             \
        for (i64 s = 0; s < m; ++s) { /* xs row s + 1: stage s's output */                           \
            const double *xi = xs + s * t_len;                                                        \
            double *yo = xs + (s + 1) * t_len, y = 0.0;                                               \
            for (i64 t = 0; t < t_len; ++t) { y = r * y + a * xi[t]; yo[t] = y; }                     \
        }                                                                                             \
        if (adj_down) for (i64 t = 0; t < t_len; ++t) lam[t] = (double)gi[t] + adj_down[t];           \
        else for (i64 t = 0; t < t_len; ++t) lam[t] = (double)gi[t];                                  \
        double dsum = 0.0;                                                                            \
        for (i64 s = m - 1; s >= 0; --s) { /* lam holds the adjoint of stage s's output */           \
            const double *xi = xs + s * t_len, *yo = xs + (s + 1) * t_len;                            \
            double l = 0.0;                                                                           \
            for (i64 t = t_len - 1; t >= 0; --t) {                                                    \
                l = lam[t] + r * l;                                                                   \
                dsum += l * (xi[t] - (t > 0 ? yo[t - 1] : 0.0));                                      \
                lam[t] = a * l;                                                                       \
            }                                                                                         \
        }                                                                                             \
        da[i] += dsum;                                                                                \
        REAL *dqi = dq + i * t_len;                                                                   \
        for (i64 t = 0; t < t_len; ++t) { adj_u[t] = lam[t]; dqi[t] = (REAL)lam[t]; }                 \
    }                                                                                                 \
    return 0;                                                                                         \
}

DEFINE_CASCADE_BACKWARD(f32, float)
DEFINE_CASCADE_BACKWARD(f64, double)

/* Work items in threads. A work item is a run of whole basins of one batch element (a post-order segment:
 * every reach's upstream lies in it), so items touch disjoint reaches and run in any order on any thread.
 * The *_items entry points take the items as int64 rows (batch element, first post-order position, reaches,
 * largest depth + 1, time steps per pass) and route them all in one call: the calling thread and threads - 1
 * pthreads (64 in all at most) take items in turn (biggest first, as the caller sorts them), each with its own
 * zeroed scratch (inflow stack and buffers), so one call from Python routes everything and no Python runs
 * meanwhile. Before, a Python thread pool made one ctypes call per item. The passes leave their stacks zero, so a
 * thread's scratch serves all its items.
 * Returns the first non-zero code of an item, -1 if a scratch buffer cannot be had (a thread that cannot be
 * started leaves its share to the others). */
#include <pthread.h>

#define ITEM_W 5 /* k, start, count, depth, chunk */

typedef struct pool pool_t;
struct pool {
    int (*fn)(const pool_t *, const i64 *item, double *scratch);
    const i64 *items;
    i64 n_items, next;
    size_t scratch; /* doubles per thread */
    int rc;
};

static void *pool_worker(void *arg)
{
    pool_t *pl = (pool_t *)arg;
    double *scratch = calloc(pl->scratch + 64, sizeof(double));
    if (!scratch) {
        __atomic_store_n(&pl->rc, -1, __ATOMIC_RELAXED);
        return 0;
    }
    for (;;) {
        i64 j = __atomic_fetch_add(&pl->next, 1, __ATOMIC_RELAXED);
        if (j >= pl->n_items || __atomic_load_n(&pl->rc, __ATOMIC_RELAXED)) break;
        int rc = pl->fn(pl, pl->items + ITEM_W * j, scratch);
        if (rc) __atomic_store_n(&pl->rc, rc, __ATOMIC_RELAXED);
    }
    free(scratch);
    return 0;
}

static int pool_run(pool_t *pl, int threads)
{
    pthread_t tid[64];
    int started = 0;
    pl->next = 0;
    pl->rc = 0;
    if (threads > pl->n_items) threads = (int)pl->n_items;
    if (threads > 64) threads = 64;
    for (int k = 1; k < threads; ++k) {
        if (pthread_create(&tid[started], 0, pool_worker, pl) != 0) break; /* the others do its share */
        ++started;
    }
    pool_worker(pl);
    for (int k = 0; k < started; ++k) pthread_join(tid[k], 0);
    return pl->rc;
}

/* the largest depth x stride over the items */
static size_t items_stack(const i64 *items, i64 n_items, int iir)
{
    size_t most = 0;
    for (i64 j = 0; j < n_items; ++j) {
        const i64 *it = items + ITEM_W * j;
        size_t need = (size_t)it[3] * (size_t)(iir ? IIR_STRIDE(it[4]) : it[4]);
        if (need > most) most = need;
    }
    return most;
}

static i64 items_longest(const i64 *items, i64 n_items)
{
    i64 most = 0;
    for (i64 j = 0; j < n_items; ++j)
        if (items[ITEM_W * j + 4] > most) most = items[ITEM_W * j + 4];
    return most;
}

/* pointer to batch element k of an array of rows of `per` elements of `size` bytes */
#define AT(p, k, per, size) ((p) ? (void *)((char *)(p) + (size_t)(k) * (size_t)(per) * (size_t)(size)) : (void *)0)

typedef struct {
    pool_t pl;
    i64 n, t_len, n_side, n_links, stack, chunk;
    const i64 *order, *depth, *down, *child_ptr, *child_idx;
    const double *coef, *prev;
    const void *q, *out, *grad;
    void *res, *dq;
    double *state, *dcoef, *dfrac;
    const split_links *sl;
    size_t es;
} iir_job;

/* sl: NULL for a tree; n_side, n_links: its side rows and links (dfrac [batch, n_links]) */
#define DEFINE_IIR_ITEMS(SUF, REAL)                                                                     \
static int iir_fwd_item_##SUF(const pool_t *pl, const i64 *it, double *scr)                              \
{                                                                                                      \
    const iir_job *j = (const iir_job *)pl;                                                            \
    i64 k = it[0], nt = j->n * j->t_len;                                                               \
    double *stack = scr, *xbuf = stack + j->stack, *side = xbuf + j->chunk;                            \
    const REAL *q = AT(j->q, k, nt, j->es);                                                            \
    REAL *out = AT(j->res, k, nt, j->es);                                                              \
    double *state = AT(j->state, k, 3 * j->n, 8);                                                      \
    if (!j->sl)                                                                                        \
        return iir_forward_##SUF(it[2], j->t_len, it[4], j->order + it[1], j->depth, j->down, j->coef, q, out, \
                                 state, stack, xbuf, 0);                                                \
    split_links s = *j->sl;                                                                            \
    s.side = side;                                                                                     \
    return iir_forward_split_##SUF(it[2], j->t_len, it[4], j->order + it[1], j->depth, j->down, j->coef, q, \
                                   out, state, stack, xbuf, &s);                                        \
}                                                                                                      \
static int iir_bwd_item_##SUF(const pool_t *pl, const i64 *it, double *scr)                              \
{                                                                                                      \
    const iir_job *j = (const iir_job *)pl;                                                            \
    i64 k = it[0], nt = j->n * j->t_len;                                                               \
    double *lam = scr, *stack = lam + j->n, *abuf = stack + j->stack, *ubuf = abuf + j->chunk + 1;     \
    double *side = ubuf + j->chunk + 1, *wbuf = side + j->n_side * j->chunk;                           \
    const i64 *order = j->order + it[1];                                                               \
    for (i64 p = 0; p < it[2]; ++p) lam[order[p]] = 0.0; /* an earlier item on this thread had them */ \
    const REAL *q = AT(j->q, k, nt, j->es), *out = AT(j->out, k, nt, j->es), *grad = AT(j->grad, k, nt, j->es); \
    REAL *dq = AT(j->dq, k, nt, j->es);                                                                \
    const double *prev = AT(j->prev, k, 3 * j->n, 8);                                                  \
    double *dcoef = AT(j->dcoef, k, 5 * j->n, 8);                                                      \
    if (!j->sl)                                                                                        \
        return iir_backward_##SUF(it[2], j->t_len, it[4], order, j->depth, j->down, j->child_ptr, j->child_idx, \
                                  j->coef, q, out, grad, prev, dq, dcoef, lam, stack, abuf, ubuf, 0);  \
    split_links s = *j->sl;                                                                            \
    s.side = side;                                                                                     \
    s.wbuf = wbuf;                                                                                     \
    s.dfrac = AT(j->dfrac, k, j->n_links, 8);                                                          \
    return iir_backward_split_##SUF(it[2], j->t_len, it[4], order, j->depth, j->down, j->child_ptr,      \
                                    j->child_idx, j->coef, q, out, grad, prev, dq, dcoef, lam, stack, abuf, \
                                    ubuf, &s);                                                          \
}                                                                                                      \
int iir_forward_items_##SUF(i64 n_items, const i64 *items, int threads, i64 n, i64 t_len, const i64 *order, \
                            const i64 *depth, const i64 *down, const double *coef, const REAL *q, REAL *out, \
                            double *state, const split_links *sl, i64 n_side)                          \
{                                                                                                      \
    iir_job j = {{iir_fwd_item_##SUF, items, n_items, 0, 0, 0}, n, t_len, n_side, 0, 0, 0, order, depth, down, \
                 0, 0, coef, 0, q, 0, 0, out, 0, state, 0, 0, sl, sizeof(REAL)};                       \
    j.stack = (i64)items_stack(items, n_items, 1);                                                     \
    j.chunk = items_longest(items, n_items);                                                           \
    j.pl.scratch = (size_t)(j.stack + j.chunk * (1 + (sl ? n_side : 0)));                              \
    return pool_run(&j.pl, threads);                                                                   \
}                                                                                                      \
int iir_backward_items_##SUF(i64 n_items, const i64 *items, int threads, i64 n, i64 t_len, const i64 *order, \
                             const i64 *depth, const i64 *down, const i64 *child_ptr, const i64 *child_idx, \
                             const double *coef, const REAL *q, const REAL *out, const REAL *grad,     \
                             const double *prev, REAL *dq, double *dcoef, const split_links *sl, i64 n_side, \
                             i64 n_links, double *dfrac)                                               \
{                                                                                                      \
    iir_job j = {{iir_bwd_item_##SUF, items, n_items, 0, 0, 0}, n, t_len, n_side, n_links, 0, 0, order, depth, \
                 down, child_ptr, child_idx, coef, prev, q, out, grad, 0, dq, 0, dcoef, dfrac, sl, sizeof(REAL)}; \
    j.stack = (i64)items_stack(items, n_items, 1);                                                     \
    j.chunk = items_longest(items, n_items);                                                           \
    j.pl.scratch = (size_t)(n + j.stack + (j.chunk + 1) * 2 + j.chunk * (1 + (sl ? n_side : 0)));       \
    return pool_run(&j.pl, threads);                                                                   \
}

DEFINE_IIR_ITEMS(f32, float)
DEFINE_IIR_ITEMS(f64, double)

typedef struct {
    pool_t pl;
    i64 n, t_len, klen, hlen, stack;
    const i64 *order, *depth, *down, *child_ptr, *child_idx, *k0, *k1, *hoff;
    const double *h, *g;
    int same;
    const void *q, *out, *grad;
    void *res, *dq;
    double *hist_u, *hist_q, *dh, *dg;
    size_t es;
} fir_job;

#define DEFINE_FIR_ITEMS(SUF, REAL)                                                                     \
static int fir_fwd_item_##SUF(const pool_t *pl, const i64 *it, double *scr)                              \
{                                                                                                      \
    const fir_job *j = (const fir_job *)pl;                                                            \
    i64 k = it[0], nt = j->n * j->t_len;                                                               \
    return fir_forward_##SUF(it[2], j->t_len, j->klen, j->hlen, j->order + it[1], j->depth, j->down, j->h, \
                             j->g, j->same, j->k0, j->k1, j->hoff, AT(j->q, k, nt, j->es),              \
                             AT(j->res, k, nt, j->es), AT(j->hist_u, k, j->n * j->hlen, 8),             \
                             AT(j->hist_q, k, j->n * j->hlen, 8), scr);                                 \
}                                                                                                      \
static int fir_bwd_item_##SUF(const pool_t *pl, const i64 *it, double *scr)                              \
{                                                                                                      \
    const fir_job *j = (const fir_job *)pl;                                                            \
    i64 k = it[0], nt = j->n * j->t_len;                                                               \
    return fir_backward_##SUF(it[2], j->t_len, j->klen, j->order + it[1], j->depth, j->down, j->child_ptr, \
                              j->child_idx, j->h, j->g, j->same, j->k0, j->k1, j->hoff,                 \
                              AT(j->q, k, nt, j->es), AT(j->out, k, nt, j->es), AT(j->grad, k, nt, j->es), \
                              AT(j->dq, k, nt, j->es), AT(j->dh, k, j->n * j->klen, 8),                 \
                              AT(j->dg, k, j->n * j->klen, 8), j->hlen, AT(j->hist_u, k, j->n * j->hlen, 8), \
                              AT(j->hist_q, k, j->n * j->hlen, 8), scr);                                \
}                                                                                                      \
int fir_forward_items_##SUF(i64 n_items, const i64 *items, int threads, i64 n, i64 t_len, i64 klen, i64 hlen, \
                            const i64 *order, const i64 *depth, const i64 *down, const double *h,        \
                            const double *g, int same, const i64 *k0, const i64 *k1, const i64 *hoff,    \
                            const REAL *q, REAL *out, double *hist_u, double *hist_q)                  \
{                                                                                                      \
    fir_job j = {{fir_fwd_item_##SUF, items, n_items, 0, 0, 0}, n, t_len, klen, hlen, 0, order, depth, down, \
                 0, 0, k0, k1, hoff, h, g, same, q, 0, 0, out, 0, hist_u, hist_q, 0, 0, sizeof(REAL)};  \
    j.pl.scratch = items_stack(items, n_items, 0);                                                     \
    return pool_run(&j.pl, threads);                                                                   \
}                                                                                                      \
int fir_backward_items_##SUF(i64 n_items, const i64 *items, int threads, i64 n, i64 t_len, i64 klen,      \
                             const i64 *order, const i64 *depth, const i64 *down, const i64 *child_ptr,  \
                             const i64 *child_idx, const double *h, const double *g, int same,          \
                             const i64 *k0, const i64 *k1, const i64 *hoff, const REAL *q, const REAL *out, \
                             const REAL *grad, REAL *dq, double *dh, double *dg, i64 hlen,              \
                             double *hist_u, double *hist_q)                                            \
{                                                                                                      \
    fir_job j = {{fir_bwd_item_##SUF, items, n_items, 0, 0, 0}, n, t_len, klen, hlen, 0, order, depth, down, \
                 child_ptr, child_idx, k0, k1, hoff, h, g, same, q, out, grad, 0, dq, hist_u, hist_q, dh, dg, \
                 sizeof(REAL)};                                                                         \
    j.pl.scratch = items_stack(items, n_items, 0);                                                     \
    return pool_run(&j.pl, threads);                                                                   \
}

DEFINE_FIR_ITEMS(f32, float)
DEFINE_FIR_ITEMS(f64, double)

typedef struct {
    pool_t pl;
    i64 n, t_len, stack, stages;
    const i64 *order, *depth, *down, *child_ptr, *child_idx, *nres;
    const double *av;
    const void *q, *out, *grad;
    void *res, *dq;
    double *da;
    size_t es;
} cascade_job;

#define DEFINE_CASCADE_ITEMS(SUF, REAL)                                                                 \
static int cascade_fwd_item_##SUF(const pool_t *pl, const i64 *it, double *scr)                          \
{                                                                                                      \
    const cascade_job *j = (const cascade_job *)pl;                                                    \
    i64 k = it[0], nt = j->n * j->t_len;                                                               \
    return cascade_forward_##SUF(it[2], j->t_len, j->order + it[1], j->depth, j->down, j->av, j->nres,  \
                                 AT(j->q, k, nt, j->es), AT(j->res, k, nt, j->es), scr, scr + j->stack); \
}                                                                                                      \
static int cascade_bwd_item_##SUF(const pool_t *pl, const i64 *it, double *scr)                          \
{                                                                                                      \
    const cascade_job *j = (const cascade_job *)pl;                                                    \
    i64 k = it[0], nt = j->n * j->t_len;                                                               \
    double *xs = scr + j->stack;                                                                       \
    return cascade_backward_##SUF(it[2], j->t_len, j->order + it[1], j->depth, j->down, j->child_ptr,     \
                                  j->child_idx, j->av, j->nres, AT(j->q, k, nt, j->es),                 \
                                  AT(j->out, k, nt, j->es), AT(j->grad, k, nt, j->es), AT(j->dq, k, nt, j->es), \
                                  (double *)AT(j->da, k, j->n, 8), scr, xs, xs + j->stages * j->t_len); \
}                                                                                                      \
int cascade_forward_items_##SUF(i64 n_items, const i64 *items, int threads, i64 n, i64 t_len,            \
                                const i64 *order, const i64 *depth, const i64 *down, const double *av,  \
                                const i64 *nres, const REAL *q, REAL *out)                             \
{                                                                                                      \
    cascade_job j = {{cascade_fwd_item_##SUF, items, n_items, 0, 0, 0}, n, t_len, 0, 0, order, depth, down, \
                     0, 0, nres, av, q, 0, 0, out, 0, 0, sizeof(REAL)};                                 \
    j.stack = (i64)items_stack(items, n_items, 0);                                                     \
    j.pl.scratch = (size_t)(j.stack + t_len);                                                          \
    return pool_run(&j.pl, threads);                                                                   \
}                                                                                                      \
int cascade_backward_items_##SUF(i64 n_items, const i64 *items, int threads, i64 n, i64 t_len,           \
                                 const i64 *order, const i64 *depth, const i64 *down, const i64 *child_ptr, \
                                 const i64 *child_idx, const double *av, const i64 *nres, i64 stages,   \
                                 const REAL *q, const REAL *out, const REAL *grad, REAL *dq, double *da) \
{                                                                                                      \
    cascade_job j = {{cascade_bwd_item_##SUF, items, n_items, 0, 0, 0}, n, t_len, 0, stages, order, depth, \
                     down, child_ptr, child_idx, nres, av, q, out, grad, 0, dq, da, sizeof(REAL)};       \
    j.stack = (i64)items_stack(items, n_items, 0);                                                     \
    j.pl.scratch = (size_t)(j.stack + (stages + 1) * t_len);                                           \
    return pool_run(&j.pl, threads);                                                                   \
}

DEFINE_CASCADE_ITEMS(f32, float)
DEFINE_CASCADE_ITEMS(f64, double)

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

/* Hayami kernels over each reach's support only (irf/hayami.py; ROUTING.md section 3), with no [n, T] array:
 * hayami_support finds each reach's support [first, first + count) by the support rule (irf/base.py), hayami_taps
 * evaluates the taps h[k] = F((k+1) dt) - F(k dt) over it, hayami_taps_backward gives dL/dmu and dL/dlam from
 * dL/dtaps. mu = L / c, lam = L^2 / (2 D) per reach.
 *
 * F(s) = Phi(a) + exp(2 lam/mu) Phi(-b), a = sqrt(lam/s)(s/mu - 1), b = sqrt(lam/s)(s/mu + 1) >= |a|, is written
 * with the Mills ratio R(x) = Phi(-x) / phi(x), x >= 0, and exp(2 lam/mu) phi(b) = phi(a) (b^2 - a^2 = 4 lam/mu):
 *     a <= 0 (s <= mu):   F(s)     = phi(a) (R(-a) + R(b))
 *     a >  0 (s >  mu):   1 - F(s) = phi(a) (R(a) - R(b))
 * (ig_side), so both the head and the tail of a kernel come to their own precision and nothing overflows (the
 * torch form exp(2 lam/mu + log Phi(-b)) loses eps * 2 lam/mu). R(x) (1 + sqrt2 x) = G(y) with
 * y = (x - IG_KX) / (x + IG_KX) is smooth on [0, inf) -> [-1, 1) (Shepherd & Laframboise 1981, Math. Comp. 36,
 * 249: (1 + 2z) exp(z^2) erfc z against (z - K)/(z + K), K = 3.75; here x = sqrt2 z): IG_G is its degree-23
 * Chebyshev interpolant at 80 nodes computed in mpmath (50 digits) and expanded in powers of y (R's relative
 * error, evaluated so in float64: <= 4e-16 on [0, 1e6]; tests/irf/test_compact.py holds F to mpmath). exp is
 * ig_exp. The code is branch-free so that gcc vectorises the loops over taps and over reaches (glibc's erfc and
 * exp do not vectorise: with them a tap cost ~40 ns, 5.5 ns now). */
#pragma GCC push_options
/* FP traps are never enabled here: without assuming they could be, gcc if-converts the selects below into blends
 * on vectors without masks (AVX2; on AVX-512 masks do it either way): 4x faster there */
#pragma GCC optimize("no-trapping-math")
/* 64-byte vectors: the loops are arithmetic on registers (no loads at offsets, unlike the convolution's passes), and
 * -march=native's default of 32 bytes halves the lanes. Hayami 100k x 366 daily on this VM's AVX-512 Xeon, one
 * thread: support and taps 50 -> 37 ms, route() 0.197-0.200 -> 0.181-0.184 s. Where vectors are shorter, a no-op. */
#pragma GCC target("prefer-vector-width=512")
#define IG_KX 5.3033008588991064 /* 3.75 sqrt 2 */
#define IG_HUGE 1e100            /* R(x) < 1e-100 there: x is clamped so that no product overflows */
#define IG_BLOCK 256             /* reaches bisected together (vectorised across reaches) */

static const double IG_G[24] = {
    1.5509920753355469, -1.7576552483285416e-1, 4.4936519161007805e-3, 1.0311859952190936e-1,
    -1.3636550384301392e-1, 1.1568631064561137e-1, -7.3561266203208076e-2, 3.5546843255642239e-2,
    -1.2215526107508384e-2, 2.2003507012702564e-3, 3.6811638233657528e-4, -3.6365421114161721e-4,
    6.4729325868651009e-5, 2.8054483386115727e-5, -1.4335467303487416e-5, -1.2201763821036186e-6,
    2.1832508663529284e-6, -7.1712417327199153e-8, -3.1153787739675582e-7, 2.91564843483754e-8,
    4.0080067076983098e-8, -4.6926714275489117e-9, -3.2875775218585426e-9, 3.8996034436975052e-10};

/* G(y), even and odd powers apart (two short dependency chains instead of one long one); written out, not as a
 * loop, which kept gcc from vectorising the loops that inline it. */
static inline double ig_g(double y)
{
    double y2 = y * y, e = IG_G[22], o = IG_G[23];
#define IG_STEP(k) e = fma(e, y2, IG_G[k]); o = fma(o, y2, IG_G[k + 1]);
    IG_STEP(20) IG_STEP(18) IG_STEP(16) IG_STEP(14) IG_STEP(12) IG_STEP(10)
    IG_STEP(8) IG_STEP(6) IG_STEP(4) IG_STEP(2) IG_STEP(0)
#undef IG_STEP
    return fma(o, y, e);
}

/* exp(x) for x <= 0 (0 below -708): Cody-Waite reduction by ln 2, Taylor polynomial to r^13 on |r| <= ln2/2,
 * 2^n put into the exponent bits (n comes from the rounding constant's low bits). */
static inline double ig_exp(double x)
{
    const double shift = 0x1.8p52;
    double xc = x < -708.0 ? -708.0 : x; /* selects of values computed either way: gcc vectorises them with
                                            * blends also where vectors have no masks (AVX2) */
    double t = fma(xc, 1.4426950408889634, shift), n = t - shift;
    double r = fma(n, -6.93147180369123816490e-01, xc);
    r = fma(n, -1.90821492927058770002e-10, r);
    double p = 1.0 / 6227020800.0;
    p = fma(p, r, 1.0 / 479001600.0);
    p = fma(p, r, 1.0 / 39916800.0);
    p = fma(p, r, 1.0 / 3628800.0);
    p = fma(p, r, 1.0 / 362880.0);
    p = fma(p, r, 1.0 / 40320.0);
    p = fma(p, r, 1.0 / 5040.0);
    p = fma(p, r, 1.0 / 720.0);
    p = fma(p, r, 1.0 / 120.0);
    p = fma(p, r, 1.0 / 24.0);
    p = fma(p, r, 1.0 / 6.0);
    p = fma(p, r, 0.5);
    p = fma(p, r, 1.0);
    p = fma(p, r, 1.0);
    uint64_t bits;
    memcpy(&bits, &t, sizeof bits);
    bits = (bits + 1023) << 52;
    double scale;
    memcpy(&scale, &bits, sizeof scale);
    double e = p * scale;
    return x < -708.0 ? 0.0 : e;
}

/* F(s) for a <= 0, 1 - F(s) for a > 0 (see above), one division for both Mills ratios. */
static inline double ig_side(double a, double b)
{
    double ax = fabs(a), x = ax < IG_HUGE ? ax : IG_HUGE, bb = b < IG_HUGE ? b : IG_HUGE; /* fmin does not vectorise */
    double px = x + IG_KX, qx = 1.0 + M_SQRT2 * x, pb = bb + IG_KX, qb = 1.0 + M_SQRT2 * bb;
    double dx = px * qx, db = pb * qb, inv = 1.0 / (dx * db);
    double ya = (x - IG_KX) * qx * (db * inv), yb = (bb - IG_KX) * qb * (dx * inv);
    double ra = ig_g(ya) * px * (db * inv), rb = ig_g(yb) * pb * (dx * inv);
    double phi = 0.39894228040143268 * ig_exp(-0.5 * a * a);
    double upper = ra - rb, lower = ra + rb;
    return phi * (a > 0.0 ? upper : lower);
}

/* F(s1) - F(s0) from the two sides' values v and whether each is 1 - F (up). */
static inline double ig_diff(double v0, double up0, double v1, double up1)
{
    double c0 = 1.0 - v0, c1 = 1.0 - v1, f0 = up0 != 0.0 ? c0 : v0, f1 = up1 != 0.0 ? c1 : v1;
    double both = v0 - v1, mixed = f1 - f0;
    return (up0 != 0.0 && up1 != 0.0) ? both : mixed;
}

/* floor((l + h) / 2) for whole l, h in [0, 2^50] (floor does not vectorise without -ffast-math): round to nearest of
 * (l + h) / 2 - 1/4 by the 1.5 * 2^52 shift. */
static inline double ig_half(double l, double h)
{
    return (fma(0.5, l + h, -0.25) + 0x1.8p52) - 0x1.8p52;
}

/* One bisection step on whole steps for nb reaches: m = floor((lo + hi) / 2) goes to hi where the mass condition
 * holds at m, to lo where not. Head (vT NULL): F(m dt) > cut. Tail: F(T dt) - F(m dt) <= cut, F(T dt) given by
 * its side value vT and uT (1 where that is 1 - F). */
static void ig_bisect(i64 nb, double dt, const double *restrict A, const double *restrict B,
                      const double *restrict cut, const double *restrict vT, const double *restrict uT,
                      double *restrict lo, double *restrict hi)
{
    if (!vT) {
        for (i64 j = 0; j < nb; ++j) {
            double l = lo[j], h = hi[j], m = ig_half(l, h), sq = sqrt(m * dt), rs = 1.0 / sq;
            double a = A[j] * sq - B[j] * rs, b = A[j] * sq + B[j] * rs, v = ig_side(a, b);
            double c = 1.0 - v;
            int go = (a > 0.0 ? c : v) > cut[j];
            hi[j] = go ? m : h;
            lo[j] = go ? l : m;
        }
        return;
    }
    for (i64 j = 0; j < nb; ++j) {
        double l = lo[j], h = hi[j], m = ig_half(l, h), sq = sqrt(m * dt), rs = 1.0 / sq;
        double a = A[j] * sq - B[j] * rs, b = A[j] * sq + B[j] * rs, v = ig_side(a, b);
        int go = ig_diff(v, a > 0.0 ? 1.0 : 0.0, vT[j], uT[j]) <= cut[j];
        hi[j] = go ? m : h;
        lo[j] = go ? l : m;
    }
}

/* Per reach [first, first + count) over n_steps steps of dt: the support rule (irf/base.py: the taps holding all
 * but tol of the mass over the horizon at either end, at least one tap) on F itself: the leading tap k goes while
 * F((k+1) dt) <= tol F(T dt), the trailing taps from k on while F(T dt) - F(k dt) <= tol F(T dt). Both ends by
 * bisection on whole steps (F is monotone), IG_BLOCK reaches in lockstep. -1 if n_steps < 1. */
int hayami_support(i64 n, i64 n_steps, double dt, const double *mu, const double *lam, double tol, i64 *first,
                   i64 *count)
{
    if (n_steps < 1) return -1;
    int iters = 0;
    while (((i64)1 << iters) < n_steps) ++iters;
    double steps = (double)n_steps;
    double A[IG_BLOCK], B[IG_BLOCK], vT[IG_BLOCK], uT[IG_BLOCK], cut[IG_BLOCK];
    double lo[IG_BLOCK], hi[IG_BLOCK], k0[IG_BLOCK];
    for (i64 i0 = 0; i0 < n; i0 += IG_BLOCK) {
        i64 nb = n - i0 < IG_BLOCK ? n - i0 : IG_BLOCK;
        double sT = steps * dt, sqT = sqrt(sT), rsT = 1.0 / sqT, sq1 = sqrt(dt), rs1 = 1.0 / sq1;
        int head = 0;
        for (i64 j = 0; j < nb; ++j) {
            double sl = sqrt(lam[i0 + j]);
            A[j] = sl / mu[i0 + j];
            B[j] = sl;
            double a = A[j] * sqT - B[j] * rsT, b = A[j] * sqT + B[j] * rsT;
            vT[j] = ig_side(a, b);
            uT[j] = a > 0.0 ? 1.0 : 0.0;
            double c = 1.0 - vT[j], total = a > 0.0 ? c : vT[j];
            cut[j] = tol * (total > 1e-300 ? total : 1e-300);
            double a1 = A[j] * sq1 - B[j] * rs1, b1 = A[j] * sq1 + B[j] * rs1, v1 = ig_side(a1, b1);
            double c1 = 1.0 - v1, f1 = a1 > 0.0 ? c1 : v1;
            /* the head: the smallest step m in [1, T] with F(m dt) > cut, m = hi; F(0) = 0 <= cut at lo */
            lo[j] = 0.0;
            hi[j] = f1 > cut[j] ? 1.0 : steps;
            head |= !(f1 > cut[j]);
        }
        for (int it = 0; head && it < iters; ++it) ig_bisect(nb, dt, A, B, cut, 0, 0, lo, hi);
        for (i64 j = 0; j < nb; ++j) {
            k0[j] = hi[j] - 1.0; /* T - 1 when even F(T dt) <= cut */
            /* the tail: the smallest k in (k0, T] with F(T dt) - F(k dt) <= cut, k = hi */
            lo[j] = k0[j];
            hi[j] = steps;
        }
        for (int it = 0; it < iters; ++it) ig_bisect(nb, dt, A, B, cut, vT, uT, lo, hi);
        for (i64 j = 0; j < nb; ++j) {
            i64 a0 = (i64)k0[j], a1 = (i64)hi[j];
            first[i0 + j] = a0;
            count[i0 + j] = a1 > a0 ? a1 - a0 : 1;
        }
    }
    return 0;
}

/* taps[i, j] = F((first+j+1) dt) - F((first+j) dt) for j < count[i], 0 up to width. -1 if a buffer cannot be
 * allocated, -2 if a support leaves [0, n_steps] or exceeds width. */
int hayami_taps(i64 n, i64 n_steps, double dt, const double *mu, const double *lam, const i64 *first,
                const i64 *count, i64 width, double *taps)
{
    double *sq = malloc((size_t)(n_steps + 1) * sizeof(double)), *rs = malloc((size_t)(n_steps + 1) * sizeof(double));
    double *v = malloc((size_t)(width + 1) * sizeof(double)), *up = malloc((size_t)(width + 1) * sizeof(double));
    int rc = (sq && rs && v && up) ? 0 : -1;
    for (i64 k = 0; !rc && k <= n_steps; ++k) { sq[k] = sqrt((double)k * dt); rs[k] = 1.0 / sq[k]; }
    for (i64 i = 0; !rc && i < n; ++i) {
        i64 f = first[i], c = count[i];
        if (f < 0 || c < 1 || c > width || f + c > n_steps) { rc = -2; break; }
        double sl = sqrt(lam[i]), A = sl / mu[i], B = sl;
        const double *sqi = sq + f, *rsi = rs + f;
        for (i64 j = 0; j <= c; ++j) {
            double a = A * sqi[j] - B * rsi[j], b = A * sqi[j] + B * rsi[j];
            v[j] = ig_side(a, b);
            up[j] = a > 0.0 ? 1.0 : 0.0;
        }
        double *ti = taps + i * width;
        for (i64 j = 0; j < c; ++j) ti[j] = ig_diff(v[j], up[j], v[j + 1], up[j + 1]);
        for (i64 j = c; j < width; ++j) ti[j] = 0.0;
    }
    free(sq); free(rs); free(v); free(up);
    return rc;
}

/* dmu[i], dlam[i] = sum_j grad[i, j] d taps[i, j] / d(mu, lam), j < count[i]. With E = exp(2 lam/mu) Phi(-b)
 * = phi(a) R(b): dF/dmu = -2 lam/mu^2 E and dF/dlam = 2 E/mu - phi(a)/sqrt(lam s) (the Phi terms' derivatives
 * cancel by exp(2 lam/mu) phi(b) = phi(a)); a tap's derivative is the difference of its ends'. Return codes as
 * hayami_taps. */
int hayami_taps_backward(i64 n, i64 n_steps, double dt, const double *mu, const double *lam, const i64 *first,
                         const i64 *count, i64 width, const double *grad, double *dmu, double *dlam)
{
    double *sq = malloc((size_t)(n_steps + 1) * sizeof(double)), *rs = malloc((size_t)(n_steps + 1) * sizeof(double));
    double *gm = malloc((size_t)(width + 1) * sizeof(double)), *gl = malloc((size_t)(width + 1) * sizeof(double));
    double *wt = malloc((size_t)(width + 1) * sizeof(double));
    int rc = (sq && rs && gm && gl && wt) ? 0 : -1;
    for (i64 k = 0; !rc && k <= n_steps; ++k) { sq[k] = sqrt((double)k * dt); rs[k] = 1.0 / sq[k]; }
    for (i64 i = 0; !rc && i < n; ++i) {
        i64 f = first[i], c = count[i];
        if (f < 0 || c < 1 || c > width || f + c > n_steps) { rc = -2; break; }
        double sl = sqrt(lam[i]), A = sl / mu[i], B = sl, cmu = -2.0 * lam[i] / (mu[i] * mu[i]);
        double cl = 2.0 / mu[i], rsl = 1.0 / sl;
        const double *sqi = sq + f, *rsi = rs + f, *g = grad + i * width;
        wt[0] = -g[0]; /* point j ends tap j - 1 and starts tap j */
        for (i64 j = 1; j < c; ++j) wt[j] = g[j - 1] - g[j];
        wt[c] = g[c - 1];
        for (i64 j = 0; j <= c; ++j) {
            double a = A * sqi[j] - B * rsi[j], b = A * sqi[j] + B * rsi[j];
            b = b < IG_HUGE ? b : IG_HUGE;
            double pb = b + IG_KX, qb = 1.0 + M_SQRT2 * b, inv = 1.0 / (pb * qb);
            double phi = 0.39894228040143268 * ig_exp(-0.5 * a * a);
            double e = phi * ig_g((b - IG_KX) * qb * inv) * pb * inv;
            double dl = cl * e - phi * rsi[j] * rsl;
            gm[j] = wt[j] * cmu * e;
            gl[j] = wt[j] * (phi == 0.0 ? 0.0 : dl); /* s = 0: phi = 0 and rsi = inf */
        }
        double sm = 0.0, sl2 = 0.0;
        for (i64 j = 0; j <= c; ++j) { sm += gm[j]; sl2 += gl[j]; }
        dmu[i] = sm;
        dlam[i] = sl2;
    }
    free(sq); free(rs); free(gm); free(gl); free(wt);
    return rc;
}
#pragma GCC pop_options
