/* Thalweg's network-order kernels (built at first use by network/_native.py, called through ctypes).
 *
 * The same results as the numpy kernels of network/order.py (tests/test_prep_fast.py compares them), in one
 * or two linear passes: the numpy kernels need one pass per topological level, and a basin as deep as the
 * Amazon's has thousands. Every array is int64; ``down[i]`` is the position of reach i's downstream reach, -1
 * at an outlet. No recursion: the depth-first walk keeps its own stack.
 */
#include <stdint.h>

typedef int64_t i64;

/* Topological levels (0 at headwaters, 1 + the largest upstream level elsewhere). ``rem`` [n] is work space.
 * From each headwater, walk downstream while the reach reached has no upstream reach left to finish (its level
 * is then final): every reach is finished once. Reaches on or below a cycle never are: level -1. Returns how
 * many they are. */
i64 kahn_levels(i64 n, const i64 *down, i64 *levels, i64 *rem)
{
    for (i64 i = 0; i < n; i++) {
        rem[i] = 0;
        levels[i] = 0;
    }
    for (i64 i = 0; i < n; i++)
        if (down[i] >= 0)
            rem[down[i]]++;
    for (i64 i = 0; i < n; i++) {
        if (rem[i] != 0)  /* 0: a headwater not walked from yet (finished reaches hold -1) */
            continue;
        i64 u = i;
        rem[u] = -1;
        for (;;) {
            i64 d = down[u];
            if (d < 0)
                break;
            if (levels[u] + 1 > levels[d])
                levels[d] = levels[u] + 1;
            if (--rem[d] > 0)
                break;
            rem[d] = -1;  /* its last upstream reach finished: its level is final */
            u = d;
        }
    }
    i64 stuck = 0;
    for (i64 i = 0; i < n; i++) {
        if (rem[i] > 0) {
            levels[i] = -1;
            stuck++;
        }
    }
    return stuck;
}

/* Reaches flowing directly into each reach as CSR (ascending position): ``ptr`` [n + 1], ``idx`` [edges]. */
void children(i64 n, const i64 *down, i64 *ptr, i64 *idx)
{
    for (i64 i = 0; i <= n; i++)
        ptr[i] = 0;
    for (i64 i = 0; i < n; i++)
        if (down[i] >= 0)
            ptr[down[i] + 1]++;
    for (i64 i = 0; i < n; i++)
        ptr[i + 1] += ptr[i];
    /* fill in ascending position, with ptr[d] as the cursor of d; then shift the cursors back */
    for (i64 i = 0; i < n; i++)
        if (down[i] >= 0)
            idx[ptr[down[i]]++] = i;
    for (i64 i = n; i > 0; i--)
        ptr[i] = ptr[i - 1];
    ptr[0] = 0;
}

/* Stable counting sort of ``key`` in [0, n_keys): ``order`` [n] (ascending position within a key) and ``ptr``
 * [n_keys + 1]. */
void counting_sort(i64 n, const i64 *key, i64 n_keys, i64 *ptr, i64 *order)
{
    for (i64 k = 0; k <= n_keys; k++)
        ptr[k] = 0;
    for (i64 i = 0; i < n; i++)
        ptr[key[i] + 1]++;
    for (i64 k = 0; k < n_keys; k++)
        ptr[k + 1] += ptr[k];
    for (i64 i = 0; i < n; i++)
        order[ptr[key[i]]++] = i;
    for (i64 k = n_keys; k > 0; k--)
        ptr[k] = ptr[k - 1];
    ptr[0] = 0;
}

/* Subtree post-order of an acyclic network: outlets in ascending position, each reach's upstream reaches in
 * ascending position, each reach right after its whole upstream. From the CSR of ``children``: ``order``,
 * ``position``, ``size`` (reaches upstream, itself included), ``depth`` (links to the outlet) and ``basin``
 * (the outlet) [n]. ``stack`` [3 n] is work space: the open reaches from the outlet down to the current one,
 * each with its next child and its block's first position (the stack's height is the depth), so each reach's
 * outputs are written once, when it is placed. Returns the number of reaches placed (n for a valid network). */
i64 postorder(i64 n, const i64 *down, const i64 *ptr, const i64 *idx, i64 *order, i64 *position, i64 *size,
              i64 *depth, i64 *basin, i64 *stack)
{
    i64 *node = stack, *next = stack + n, *first = stack + 2 * n;
    i64 pos = 0;
    for (i64 r = 0; r < n; r++) {
        if (down[r] >= 0)
            continue;
        i64 top = 0;
        node[0] = r;
        next[0] = ptr[r];
        first[0] = pos;
        while (top >= 0) {
            i64 u = node[top];
            if (next[top] < ptr[u + 1]) {
                i64 c = idx[next[top]++];
                top++;
                node[top] = c;
                next[top] = ptr[c];
                first[top] = pos;
            } else {
                order[pos] = u;
                position[u] = pos;
                size[u] = pos + 1 - first[top];
                depth[u] = top;
                basin[u] = r;
                pos++;
                top--;
            }
        }
    }
    return pos;
}

/* Cluster outlets of scale/partition.py's ``clusters``: walking ``level_order`` (headwaters first), a reach
 * with a downstream reach whose uncut upstream holds at least ``max_reaches`` reaches is cut (``cut`` [n], 0/1),
 * else its uncut upstream count joins its downstream reach's (``open_size`` [n], work space). Then, walking
 * back (outlets' levels first), ``root`` [n] is the first cut reach or outlet at or below each reach. */
void cut_clusters(i64 n, const i64 *down, const i64 *level_order, i64 max_reaches, int8_t *cut, i64 *root,
                  i64 *open_size)
{
    for (i64 i = 0; i < n; i++)
        open_size[i] = 1;
    for (i64 k = 0; k < n; k++) {
        i64 u = level_order[k], d = down[u];
        cut[u] = d >= 0 && open_size[u] >= max_reaches;
        if (d >= 0 && !cut[u])
            open_size[d] += open_size[u];
    }
    for (i64 k = n - 1; k >= 0; k--) {
        i64 u = level_order[k], d = down[u];
        root[u] = (cut[u] || d < 0) ? u : root[d];
    }
}
