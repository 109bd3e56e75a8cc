/* The loops of service/runtimes/lean/conv.py around its BLAS products, compiled at
 * install time: the Winograd F(2x2, 3x3) input and output transforms, the bias + ReLU
 * (+ max pool) pass after im2col, and the stand-alone pools.
 *
 * Built by setuptools as an extension module but not a Python module: plain C, no
 * Python headers (a C compiler is all an install needs), loaded with ctypes, which
 * releases the GIL for the call. Every array is float32,
 * C-contiguous, and its shape is the one passed beside it: convloops.py checks both.
 * Maxima let NaN win, as numpy's do.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Each loop is compiled for AVX-512, AVX2 and plain x86-64, the widest the CPU runs picked
 * at load time (glibc's ifunc): numba compiled for the host, and a build for the oldest CPU
 * only was up to 1.4x slower on some loops. Adds and maxima only: no FMA contraction, so
 * every version gives the same floats. */
#if defined(__x86_64__) && defined(__linux__) && defined(__GLIBC__) && defined(__GNUC__) && \
    !defined(__clang__)
#define WIDEST __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define WIDEST
#endif

/* Python's max(o, v) with NaN winning, as in numpy. `||`, not `|`: gcc 12 vectorises
 * nested selects of this form only. */
static inline float maxnan(float o, float v) { return v > o || v != v ? v : o; }

/* Python's max(v, 0.0): NaN stays NaN. */
static inline float relu0(float v) { return 0.0f > v ? 0.0f : v; }

/* B^T applied across four rows of channels: o0..o3 = a0 - a2, a1 + a2, a2 - a1, a1 - a3. */
static inline void b_transpose(const float *restrict a0, const float *restrict a1,
                               const float *restrict a2, const float *restrict a3, int64_t c,
                               float *restrict o0, float *restrict o1, float *restrict o2,
                               float *restrict o3)
{
    for (int64_t k = 0; k < c; k++) {
        o0[k] = a0[k] - a2[k];
        o1[k] = a1[k] + a2[k];
        o2[k] = a2[k] - a1[k];
        o3[k] = a1[k] - a3[k];
    }
}

/* o = the max of a, b, c and d (then ReLU). */
static inline void max4(const float *restrict a, const float *restrict b,
                        const float *restrict c, const float *restrict d, int64_t f, int relu,
                        float *restrict o)
{
    if (relu)
        for (int64_t k = 0; k < f; k++)
            o[k] = relu0(maxnan(maxnan(a[k], b[k]), maxnan(c[k], d[k])));
    else
        for (int64_t k = 0; k < f; k++)
            o[k] = maxnan(maxnan(a[k], b[k]), maxnan(c[k], d[k]));
}

/* v[4i+j, tile, :] = (B^T d B)[i, j] for each 4x4 tile d of x (zeros outside x), the
 * tile at (ty, tx) starting at row 2ty - top, column 2tx - left. v is (16, n*th*tw, c). */
WIDEST int winograd_in(const float *restrict x, int64_t n, int64_t h, int64_t w, int64_t c,
                       int64_t top, int64_t left, int64_t th, int64_t tw, float *restrict v)
{
    /* d: one tile after B^T, d[4i+j] holding its channels; zeros: the cells outside x. */
    float *d = malloc(17 * c * sizeof(float));
    if (d == NULL)
        return -1;
    float *zeros = d + 16 * c;
    memset(zeros, 0, c * sizeof(float));
    const int64_t tiles = n * th * tw;
    for (int64_t b = 0; b < n; b++)
        for (int64_t ty = 0; ty < th; ty++)
            for (int64_t tx = 0; tx < tw; tx++) {
                const int64_t t = (b * th + ty) * tw + tx;
                for (int64_t j = 0; j < 4; j++) {
                    const int64_t col = 2 * tx - left + j;
                    const float *a[4];
                    for (int64_t i = 0; i < 4; i++) {
                        const int64_t y = 2 * ty - top + i;
                        const int inside = 0 <= y && y < h && 0 <= col && col < w;
                        a[i] = inside ? x + ((b * h + y) * w + col) * c : zeros;
                    }
                    b_transpose(a[0], a[1], a[2], a[3], c, d + j * c, d + (4 + j) * c,
                                d + (8 + j) * c, d + (12 + j) * c);
                }
                for (int64_t i = 0; i < 4; i++) { /* then B along the columns, into v */
                    const float *e = d + 4 * i * c;
                    float *o = v + ((4 * i) * tiles + t) * c;
                    b_transpose(e, e + c, e + 2 * c, e + 3 * c, c, o, o + tiles * c,
                                o + 2 * tiles * c, o + 3 * tiles * c);
                }
            }
    free(d);
    return 0;
}

/* out's 2x2 tile = A^T M A + bias (then ReLU), cropped to out's height and width; with
 * pooled, out's cell is the max of that tile (a valid 2x2 max pool). m is
 * (16, n*th*tw, f), out (n, ho, wo, f). */
WIDEST int winograd_out(const float *restrict m, const float *restrict bias, int relu,
                        int pooled, int64_t th, int64_t tw, int64_t n, int64_t ho, int64_t wo,
                        int64_t f, float *restrict out)
{
    float *tile = malloc(4 * f * sizeof(float));
    if (tile == NULL)
        return -1;
    float *q0 = tile, *q1 = tile + f, *q2 = tile + 2 * f, *q3 = tile + 3 * f;
    const int64_t tiles = n * th * tw;
    for (int64_t b = 0; b < n; b++)
        for (int64_t ty = 0; ty < th; ty++)
            for (int64_t tx = 0; tx < tw; tx++) {
                if (pooled && (ty >= ho || tx >= wo))
                    continue; /* the odd last row or column, dropped by a valid pool */
                const int64_t t = (b * th + ty) * tw + tx;
                const float *mt[16];
                for (int64_t i = 0; i < 16; i++)
                    mt[i] = m + (i * tiles + t) * f;
                for (int64_t k = 0; k < f; k++) {
                    const float r00 = mt[0][k] + mt[4][k] + mt[8][k];
                    const float r01 = mt[1][k] + mt[5][k] + mt[9][k];
                    const float r02 = mt[2][k] + mt[6][k] + mt[10][k];
                    const float r03 = mt[3][k] + mt[7][k] + mt[11][k];
                    const float r10 = mt[4][k] - mt[8][k] - mt[12][k];
                    const float r11 = mt[5][k] - mt[9][k] - mt[13][k];
                    const float r12 = mt[6][k] - mt[10][k] - mt[14][k];
                    const float r13 = mt[7][k] - mt[11][k] - mt[15][k];
                    q0[k] = r00 + r01 + r02 + bias[k];
                    q1[k] = r01 - r02 - r03 + bias[k];
                    q2[k] = r10 + r11 + r12 + bias[k];
                    q3[k] = r11 - r12 - r13 + bias[k];
                }
                if (pooled) {
                    float *o = out + ((b * ho + ty) * wo + tx) * f;
                    max4(q0, q1, q2, q3, f, relu, o);
                    continue;
                }
                for (int64_t q = 0; q < 4; q++) {
                    const int64_t y = 2 * ty + q / 2, col = 2 * tx + q % 2;
                    if (y >= ho || col >= wo)
                        continue;
                    float *o = out + ((b * ho + y) * wo + col) * f;
                    const float *s = tile + q * f;
                    if (relu)
                        for (int64_t k = 0; k < f; k++)
                            o[k] = relu0(s[k]);
                    else
                        memcpy(o, s, f * sizeof(float));
                }
            }
    free(tile);
    return 0;
}

/* out = max over the nb blocks of (p, f), + bias, then ReLU. */
WIDEST void max_bias_relu(const float *restrict blocks, int64_t nb, int64_t p, int64_t f,
                          const float *restrict bias, int relu, float *restrict out)
{
    for (int64_t i = 0; i < p; i++) {
        float *o = out + i * f;
        memcpy(o, blocks + i * f, f * sizeof(float));
        for (int64_t j = 1; j < nb; j++) {
            const float *s = blocks + (j * p + i) * f;
            for (int64_t k = 0; k < f; k++)
                o[k] = maxnan(o[k], s[k]);
        }
        if (relu)
            for (int64_t k = 0; k < f; k++)
                o[k] = relu0(o[k] + bias[k]);
        else
            for (int64_t k = 0; k < f; k++)
                o[k] += bias[k];
    }
}

/* A ph x pw max or average pool, strides (sh, sw), the first window at (-top, -left);
 * padded cells do not count. TF's padding leaves every window at least one real cell,
 * so -inf never survives. x is (n, h, w, c), out (n, ho, wo, c). */
WIDEST void pool(const float *restrict x, int64_t n, int64_t h, int64_t w, int64_t c,
                 int64_t ph, int64_t pw, int64_t sh, int64_t sw, int64_t top, int64_t left,
                 int average, int64_t ho, int64_t wo, float *restrict out)
{
    for (int64_t b = 0; b < n; b++)
        for (int64_t oy = 0; oy < ho; oy++) {
            const int64_t y0 = oy * sh - top > 0 ? oy * sh - top : 0;
            const int64_t y1 = oy * sh - top + ph < h ? oy * sh - top + ph : h;
            for (int64_t ox = 0; ox < wo; ox++) {
                const int64_t x0 = ox * sw - left > 0 ? ox * sw - left : 0;
                const int64_t x1 = ox * sw - left + pw < w ? ox * sw - left + pw : w;
                float *o = out + ((b * ho + oy) * wo + ox) * c;
                for (int64_t k = 0; k < c; k++)
                    o[k] = average ? 0.0f : -INFINITY;
                for (int64_t y = y0; y < y1; y++)
                    for (int64_t xx = x0; xx < x1; xx++) {
                        const float *s = x + ((b * h + y) * w + xx) * c;
                        if (average)
                            for (int64_t k = 0; k < c; k++)
                                o[k] += s[k];
                        else
                            for (int64_t k = 0; k < c; k++)
                                o[k] = maxnan(o[k], s[k]);
                    }
                if (average) {
                    const float count = (float)((y1 - y0) * (x1 - x0));
                    for (int64_t k = 0; k < c; k++)
                        o[k] /= count;
                }
            }
        }
}
