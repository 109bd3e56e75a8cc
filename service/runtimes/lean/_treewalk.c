/* The tree walk of service/runtimes/lean/forest.py, compiled at install time.
 *
 * Built by setuptools as an extension module but not a Python module: plain C, no
 * Python headers (a C compiler is all an install needs), loaded with ctypes, which
 * releases the GIL for the call. Every node array was checked by
 * PackedTrees.validate(): children come after their parent and stay inside the
 * arrays, features are below the row width.
 */
#include <stdint.h>

#define LANES 8 /* trees walked in lockstep: their memory loads overlap */

void sum_leaves(const double *x, int64_t rows, int64_t cols, const int32_t *link,
                const double *threshold, const double *value, int64_t outputs,
                const int64_t *roots, int64_t trees, double *out)
{
    int64_t node[LANES];
    /* Trees outermost: a block of LANES trees stays in cache while every row walks it
     * (rows outermost would stream the whole forest from memory once per row). */
    for (int64_t first = 0; first < trees; first += LANES) {
        int64_t lanes = trees - first < LANES ? trees - first : LANES;
        for (int64_t r = 0; r < rows; r++) {
            const double *row = x + r * cols;
            double *acc = out + r * outputs;
            for (int64_t j = 0; j < lanes; j++)
                node[j] = roots[first + j];
            int moving = 1;
            while (moving) {
                moving = 0;
                for (int64_t j = 0; j < lanes; j++) {
                    const int32_t *l = link + 3 * node[j];
                    if (l[0] >= 0) {
                        moving = 1;
                        node[j] = row[l[0]] <= threshold[node[j]] ? l[1] : l[2];
                    }
                }
            }
            for (int64_t j = 0; j < lanes; j++)
                for (int64_t k = 0; k < outputs; k++)
                    acc[k] += value[node[j] * outputs + k];
        }
    }
}
