/* Layered normalised min-sum decoding of quasi-cyclic LDPC codes (5G NR base graphs).
 *
 * Part of semcom's channel package (channel/decoders.py builds and loads it with the
 * system C compiler, and holds a numpy implementation of exactly the same arithmetic).
 *
 * Data layout: one block's LLRs are n_cols * z floats (base column c, lifting index j at
 * c * z + j), LLR = log P(0)/P(1). The layers are the base rows given in CSR form
 * (row_ptr, e_col, e_shift); edge e of a row connects check j of the row to variable
 * e_col * z + (j + e_shift) % z. Each layer's z checks are independent and are updated
 * together, vectorised over j (gcc -O3 auto-vectorises the inner loops).
 *
 * Per layer and edge t: Q_t = L - R_t; R_t' = alpha * sign * min_{t' != t} |Q_t'|;
 * L = Q_t + R_t'. After each iteration the parity checks of all given rows are tested on
 * the signs of L; a block stops when they all hold (early_stop != 0).
 *
 * Build: cc -O3 -march=native -ffp-contract=off -fno-math-errno -shared -fPIC
 * (-ffp-contract=off keeps the results identical to the numpy implementation).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#define API __attribute__((visibility("default")))

API int semcom_ldpc_version(void) { return 3; }

static int syndrome_ok(const float *L, int32_t z, int32_t n_rows, const int32_t *row_ptr,
                       const int32_t *e_col, const int32_t *e_shift, uint8_t *par)
{
    for (int32_t r = 0; r < n_rows; r++) {
        memset(par, 0, (size_t)z);
        for (int32_t e = row_ptr[r]; e < row_ptr[r + 1]; e++) {
            const float *v = L + (size_t)e_col[e] * z;
            const int32_t s = e_shift[e];
            const int32_t n1 = z - s;
            for (int32_t j = 0; j < n1; j++) par[j] ^= (uint8_t)(v[j + s] < 0.0f);
            for (int32_t j = n1; j < z; j++) par[j] ^= (uint8_t)(v[j + s - z] < 0.0f);
        }
        uint8_t any = 0;
        for (int32_t j = 0; j < z; j++) any |= par[j];
        if (any) return 0;
    }
    return 1;
}

/* Decode n_blocks blocks in place.
 *   llr     [n_blocks, n_vars]  in: channel LLRs; out: a-posteriori LLRs
 *   iters   [n_blocks]          out: iterations run
 *   ok      [n_blocks]          out: 1 if every given parity check holds at the end
 * Returns 0, or -1 if scratch memory could not be allocated. */
API int semcom_ldpc_decode(int32_t n_blocks, int32_t z, int32_t n_vars, int32_t n_rows,
                           const int32_t *row_ptr, const int32_t *e_col,
                           const int32_t *e_shift, float alpha, int32_t max_iter,
                           int32_t early_stop, float *llr, int32_t *iters, uint8_t *ok)
{
    const int32_t n_edges = row_ptr[n_rows];
    int32_t d_max = 0;
    for (int32_t r = 0; r < n_rows; r++) {
        int32_t d = row_ptr[r + 1] - row_ptr[r];
        if (d > d_max) d_max = d;
    }
    float *R = (float *)malloc(sizeof(float) * (size_t)n_edges * z);
    float *Q = (float *)malloc(sizeof(float) * (size_t)(d_max > 0 ? d_max : 1) * z);
    float *min1 = (float *)malloc(sizeof(float) * (size_t)z);
    float *min2 = (float *)malloc(sizeof(float) * (size_t)z);
    int32_t *pos = (int32_t *)malloc(sizeof(int32_t) * (size_t)z);
    uint8_t *sgn = (uint8_t *)malloc((size_t)z);
    if (!R || !Q || !min1 || !min2 || !pos || !sgn) {
        free(R); free(Q); free(min1); free(min2); free(pos); free(sgn);
        return -1;
    }
    for (int32_t b = 0; b < n_blocks; b++) {
        float *L = llr + (size_t)b * n_vars;
        memset(R, 0, sizeof(float) * (size_t)n_edges * z);
        int32_t it = 0;
        int32_t good = early_stop ? syndrome_ok(L, z, n_rows, row_ptr, e_col, e_shift, sgn) : 0;
        while (!good && it < max_iter) {
            for (int32_t r = 0; r < n_rows; r++) {
                const int32_t e0 = row_ptr[r], d = row_ptr[r + 1] - e0;
                for (int32_t j = 0; j < z; j++) {
                    min1[j] = INFINITY; min2[j] = INFINITY; pos[j] = 0; sgn[j] = 0;
                }
                /* pass 1: gather Q = L - R and find min1, min2, argmin, sign parity */
                for (int32_t t = 0; t < d; t++) {
                    const float *v = L + (size_t)e_col[e0 + t] * z;
                    const float *Rt = R + (size_t)(e0 + t) * z;
                    float *Qt = Q + (size_t)t * z;
                    const int32_t s = e_shift[e0 + t], n1 = z - s;
                    for (int32_t j = 0; j < n1; j++) Qt[j] = v[j + s] - Rt[j];
                    for (int32_t j = n1; j < z; j++) Qt[j] = v[j + s - z] - Rt[j];
                    for (int32_t j = 0; j < z; j++) {
                        const float q = Qt[j];
                        const float a = q < 0.0f ? -q : q;
                        const float m1 = min1[j];
                        const float hi = a > m1 ? a : m1;           /* max(a, min1) */
                        min2[j] = hi < min2[j] ? hi : min2[j];       /* second smallest */
                        pos[j] = a < m1 ? t : pos[j];
                        min1[j] = a < m1 ? a : m1;
                        sgn[j] ^= (uint8_t)(q < 0.0f);
                    }
                }
                /* pass 2: new messages and posteriors */
                for (int32_t t = 0; t < d; t++) {
                    float *v = L + (size_t)e_col[e0 + t] * z;
                    float *Rt = R + (size_t)(e0 + t) * z;
                    const float *Qt = Q + (size_t)t * z;
                    const int32_t s = e_shift[e0 + t], n1 = z - s;
                    for (int32_t j = 0; j < z; j++) {
                        const float q = Qt[j];
                        const float mag = alpha * (pos[j] == t ? min2[j] : min1[j]);
                        const uint8_t neg = sgn[j] ^ (uint8_t)(q < 0.0f);
                        Rt[j] = neg ? -mag : mag;
                    }
                    for (int32_t j = 0; j < n1; j++) v[j + s] = Qt[j] + Rt[j];
                    for (int32_t j = n1; j < z; j++) v[j + s - z] = Qt[j] + Rt[j];
                }
            }
            it++;
            if (early_stop) good = syndrome_ok(L, z, n_rows, row_ptr, e_col, e_shift, sgn);
        }
        if (!early_stop) good = syndrome_ok(L, z, n_rows, row_ptr, e_col, e_shift, sgn);
        iters[b] = it;
        ok[b] = (uint8_t)good;
    }
    free(R); free(Q); free(min1); free(min2); free(pos); free(sgn);
    return 0;
}
