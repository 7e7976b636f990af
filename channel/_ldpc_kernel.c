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
#ifndef SEMCOM_I8_PASS
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

#define API __attribute__((visibility("default")))

API int semcom_ldpc_version(void) { return 4; }

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

/* ---------------------------------------------------------------------------------------
 * Fixed point: 8-bit layered normalised min-sum, SIMD across frames.
 *
 * AFF3CT's inter-frame layout: W = 32 frames are decoded together, one frame per byte of
 * a 256-bit vector, so the LLRs of a group are n_vars vectors (variable v of frame l at
 * byte v * W + l) and every message update is one vector operation on 32 frames; cyclic
 * shifts are plain index arithmetic, shared by the lanes.
 *
 * Quantisation, per frame: the channel LLRs are scaled so that their mean magnitude
 * (over the sent bits: 0 < |x| < clip) is `target`, rounded and saturated to +-ch_max;
 * bits with |x| >= clip (filler bits) become +-127, NaN becomes 0. Normalised min-sum
 * is invariant to a positive scaling of its input, so the scale changes only the
 * quantisation, and it follows the SNR. Messages and posteriors saturate at +-127 (never
 * -128, so |x| fits). The check-node magnitude is min((alpha_q * min + 128) >> 8, r_max)
 * with alpha_q = round(256 alpha): capping the check messages below the posteriors'
 * range keeps saturated posteriors from drifting over many iterations.
 *
 * Early stopping is per frame: after every iteration the syndrome of each lane is
 * tested; a frame whose checks all hold keeps the posteriors of that iteration (what it
 * would return decoded alone) while the group goes on until every lane is done or
 * max_iter is reached.
 *
 * The same template is compiled twice: with AVX2 intrinsics (when the compiler targets
 * AVX2) and with portable byte loops, `semcom_ldpc_decode_i8_ref`, which gives identical
 * results and is what the tests compare the vector version against.
 * ------------------------------------------------------------------------------------- */
#define I8W 32

/* n bytes aligned to 32 (C99 has no aligned_alloc); *raw is what to free */
static void *amalloc(size_t n, void **raw)
{
    *raw = malloc(n + 32);
    if (!*raw) return NULL;
    return (void *)(((uintptr_t)*raw + 31) & ~(uintptr_t)31);
}

static inline int8_t sat8(int v) { return (int8_t)(v > 127 ? 127 : (v < -127 ? -127 : v)); }

typedef struct { int8_t b[I8W]; } sv;
static inline sv sv_load(const int8_t *p) { sv r; memcpy(r.b, p, I8W); return r; }
static inline void sv_store(int8_t *p, sv a) { memcpy(p, a.b, I8W); }
static inline sv sv_set1(int8_t x) { sv r; for (int i = 0; i < I8W; i++) r.b[i] = x; return r; }
static inline sv sv_subs(sv a, sv b) { sv r; for (int i = 0; i < I8W; i++) r.b[i] = sat8(a.b[i] - b.b[i]); return r; }
static inline sv sv_adds(sv a, sv b) { sv r; for (int i = 0; i < I8W; i++) r.b[i] = sat8(a.b[i] + b.b[i]); return r; }
static inline sv sv_abs(sv a) { sv r; for (int i = 0; i < I8W; i++) r.b[i] = (int8_t)(a.b[i] < 0 ? -a.b[i] : a.b[i]); return r; }
static inline sv sv_min(sv a, sv b) { sv r; for (int i = 0; i < I8W; i++) r.b[i] = a.b[i] < b.b[i] ? a.b[i] : b.b[i]; return r; }
static inline sv sv_max(sv a, sv b) { sv r; for (int i = 0; i < I8W; i++) r.b[i] = a.b[i] > b.b[i] ? a.b[i] : b.b[i]; return r; }
static inline sv sv_gt(sv a, sv b) { sv r; for (int i = 0; i < I8W; i++) r.b[i] = (int8_t)(a.b[i] > b.b[i] ? -1 : 0); return r; }
static inline sv sv_eq(sv a, sv b) { sv r; for (int i = 0; i < I8W; i++) r.b[i] = (int8_t)(a.b[i] == b.b[i] ? -1 : 0); return r; }
static inline sv sv_blend(sv a, sv b, sv m) { sv r; for (int i = 0; i < I8W; i++) r.b[i] = m.b[i] ? b.b[i] : a.b[i]; return r; }
static inline sv sv_xor(sv a, sv b) { sv r; for (int i = 0; i < I8W; i++) r.b[i] = (int8_t)(a.b[i] ^ b.b[i]); return r; }
static inline sv sv_negif(sv a, sv s) { sv r; for (int i = 0; i < I8W; i++) r.b[i] = (int8_t)(s.b[i] < 0 ? -a.b[i] : a.b[i]); return r; }
static inline sv sv_scale(sv a, int aq) { sv r; for (int i = 0; i < I8W; i++) r.b[i] = (int8_t)((a.b[i] * aq + 128) >> 8); return r; }
static inline uint32_t sv_signs(sv a) { uint32_t m = 0; for (int i = 0; i < I8W; i++) m |= (uint32_t)(a.b[i] < 0) << i; return m; }

#define SEMCOM_I8_PASS 1
#define V(op) sv_##op
#define VT sv
#define I8_NAME semcom_ldpc_decode_i8_ref
#include "_ldpc_kernel.c"
#undef V
#undef VT
#undef I8_NAME
#undef SEMCOM_I8_PASS

#if defined(__AVX2__)
typedef __m256i av;
static inline av av_load(const int8_t *p) { return _mm256_load_si256((const __m256i *)p); }
static inline void av_store(int8_t *p, av a) { _mm256_store_si256((__m256i *)p, a); }
static inline av av_set1(int8_t x) { return _mm256_set1_epi8(x); }
static inline av av_subs(av a, av b) { return _mm256_max_epi8(_mm256_subs_epi8(a, b), _mm256_set1_epi8(-127)); }
static inline av av_adds(av a, av b) { return _mm256_max_epi8(_mm256_adds_epi8(a, b), _mm256_set1_epi8(-127)); }
static inline av av_abs(av a) { return _mm256_abs_epi8(a); }
static inline av av_min(av a, av b) { return _mm256_min_epi8(a, b); }
static inline av av_max(av a, av b) { return _mm256_max_epi8(a, b); }
static inline av av_gt(av a, av b) { return _mm256_cmpgt_epi8(a, b); }
static inline av av_eq(av a, av b) { return _mm256_cmpeq_epi8(a, b); }
static inline av av_blend(av a, av b, av m) { return _mm256_blendv_epi8(a, b, m); }
static inline av av_xor(av a, av b) { return _mm256_xor_si256(a, b); }
/* -a where s < 0: _mm256_sign_epi8 zeroes where s == 0, so s is or-ed with 1 */
static inline av av_negif(av a, av s) { return _mm256_sign_epi8(a, _mm256_or_si256(s, _mm256_set1_epi8(1))); }
static inline av av_scale(av a, int aq)
{
    const __m256i q = _mm256_set1_epi16((short)aq), h = _mm256_set1_epi16(128);
    __m256i lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(a));
    __m256i hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(a, 1));
    lo = _mm256_srai_epi16(_mm256_add_epi16(_mm256_mullo_epi16(lo, q), h), 8);
    hi = _mm256_srai_epi16(_mm256_add_epi16(_mm256_mullo_epi16(hi, q), h), 8);
    return _mm256_permute4x64_epi64(_mm256_packs_epi16(lo, hi), 0xD8);
}
static inline uint32_t av_signs(av a) { return (uint32_t)_mm256_movemask_epi8(a); }

#define SEMCOM_I8_PASS 2
#define V(op) av_##op
#define VT av
#define I8_NAME semcom_ldpc_decode_i8
#include "_ldpc_kernel.c"
#undef V
#undef VT
#undef I8_NAME
#undef SEMCOM_I8_PASS
API int semcom_ldpc_i8_simd(void) { return 1; }
#else
API int semcom_ldpc_decode_i8(int32_t n_blocks, int32_t z, int32_t n_vars, int32_t n_rows,
                              const int32_t *row_ptr, const int32_t *e_col,
                              const int32_t *e_shift, float alpha, int32_t max_iter,
                              int32_t early_stop, float target, int32_t ch_max,
                              int32_t r_max, float clip, float *llr, int32_t *iters,
                              uint8_t *ok)
{
    return semcom_ldpc_decode_i8_ref(n_blocks, z, n_vars, n_rows, row_ptr, e_col, e_shift,
                                     alpha, max_iter, early_stop, target, ch_max, r_max, clip,
                                     llr, iters, ok);
}
API int semcom_ldpc_i8_simd(void) { return 0; }
#endif

#else /* SEMCOM_I8_PASS: the template, with V(op) the vector operations and VT the type */

/* lanes of the group whose parity checks do not all hold */
static uint32_t V(unsatisfied)(const int8_t *L, int32_t z, int32_t n_rows,
                               const int32_t *row_ptr, const int32_t *e_col,
                               const int32_t *e_shift)
{
    VT acc = V(set1)(0);
    for (int32_t r = 0; r < n_rows; r++) {
        for (int32_t j = 0; j < z; j++) {
            VT p = V(set1)(0);
            for (int32_t e = row_ptr[r]; e < row_ptr[r + 1]; e++) {
                int32_t jj = j + e_shift[e];
                if (jj >= z) jj -= z;
                p = V(xor)(p, V(load)(L + ((size_t)e_col[e] * z + jj) * I8W));
            }
            acc = V(min)(acc, p); /* negative where any parity was odd */
        }
    }
    return V(signs)(acc);
}

/* Decode n_blocks blocks; llr [n_blocks, n_vars] float32 in: channel LLRs, out: the
 * dequantised a-posteriori LLRs (only their signs are meaningful beyond 127 / scale).
 * Returns 0, or -1 if scratch memory could not be allocated. */
API int I8_NAME(int32_t n_blocks, int32_t z, int32_t n_vars, int32_t n_rows,
                const int32_t *row_ptr, const int32_t *e_col, const int32_t *e_shift,
                float alpha, int32_t max_iter, int32_t early_stop, float target,
                int32_t ch_max, int32_t r_max, float clip, float *llr, int32_t *iters,
                uint8_t *ok)
{
    const VT rmax = V(set1)((int8_t)(r_max < 1 ? 1 : (r_max > 127 ? 127 : r_max)));
    const int32_t n_edges = row_ptr[n_rows];
    const int aq = (int)lrintf(alpha * 256.0f);
    int32_t d_max = 1;
    for (int32_t r = 0; r < n_rows; r++)
        if (row_ptr[r + 1] - row_ptr[r] > d_max) d_max = row_ptr[r + 1] - row_ptr[r];
    void *raw[3];
    int8_t *L = (int8_t *)amalloc((size_t)n_vars * I8W, &raw[0]);
    int8_t *R = (int8_t *)amalloc((size_t)(n_edges > 0 ? n_edges : 1) * z * I8W, &raw[1]);
    int8_t *Q = (int8_t *)amalloc((size_t)d_max * I8W, &raw[2]);
    int32_t *off = (int32_t *)malloc(sizeof(int32_t) * (size_t)(n_edges > 0 ? n_edges : 1));
    if (!L || !R || !Q || !off) {
        free(L ? raw[0] : NULL); free(R ? raw[1] : NULL); free(Q ? raw[2] : NULL); free(off);
        return -1;
    }
    for (int32_t e = 0; e < n_edges; e++) off[e] = e_col[e] * z;
    for (int32_t g = 0; g < n_blocks; g += I8W) {
        const int32_t nl = n_blocks - g < I8W ? n_blocks - g : I8W;
        float scale[I8W];
        /* quantise and interleave; unused lanes hold the all-zero codeword */
        memset(L, 127, (size_t)n_vars * I8W);
        for (int32_t l = 0; l < nl; l++) {
            const float *x = llr + (size_t)(g + l) * n_vars;
            double sum = 0.0;
            int32_t cnt = 0;
            for (int32_t v = 0; v < n_vars; v++) {
                const float a = fabsf(x[v]);
                if (a > 0.0f && a < clip) { sum += a; cnt++; }
            }
            double ds = (cnt && sum > 0.0) ? (double)target * cnt / sum : 1.0;
            if (ds > 3.4e38) ds = 3.4e38; /* below FLT_MAX: no infinite scale */
            const float s = (float)ds;
            scale[l] = s;
            for (int32_t v = 0; v < n_vars; v++) {
                const float a = x[v];
                int q;
                if (a >= clip) q = 127;
                else if (a <= -clip) q = -127;
                else if (!(a * s == a * s)) q = 0; /* NaN (or 0 * inf): no information */
                else {
                    const float t = nearbyintf(a * s);
                    q = t > (float)ch_max ? ch_max : (t < (float)-ch_max ? -ch_max : (int)t);
                }
                L[(size_t)v * I8W + l] = (int8_t)q;
            }
        }
        memset(R, 0, (size_t)n_edges * z * I8W);
        const uint32_t all = nl == 32 ? 0xFFFFFFFFu : ((1u << nl) - 1u);
        uint32_t done = 0;
        int32_t it = 0;
#define I8_EMIT(lanes, nit, good)                                                        \
        for (int32_t l = 0; l < nl; l++) {                                               \
            if (!(((lanes) >> l) & 1u)) continue;                                        \
            float *x = llr + (size_t)(g + l) * n_vars;                                   \
            const float inv = 1.0f / scale[l];                                           \
            for (int32_t v = 0; v < n_vars; v++) x[v] = (float)L[(size_t)v * I8W + l] * inv; \
            iters[g + l] = (nit);                                                        \
            ok[g + l] = (uint8_t)(good);                                                 \
        }
        if (early_stop) {
            const uint32_t sat = ~V(unsatisfied)(L, z, n_rows, row_ptr, e_col, e_shift) & all;
            I8_EMIT(sat, 0, 1)
            done = sat;
        }
        while (done != all && it < max_iter) {
            for (int32_t r = 0; r < n_rows; r++) {
                const int32_t e0 = row_ptr[r], d = row_ptr[r + 1] - e0;
                for (int32_t j = 0; j < z; j++) {
                    VT m1 = V(set1)(127), m2 = V(set1)(127), pos = V(set1)(0);
                    VT sg = V(set1)(0);
                    for (int32_t t = 0; t < d; t++) {
                        int32_t jj = j + e_shift[e0 + t];
                        if (jj >= z) jj -= z;
                        const int8_t *lv = L + ((size_t)off[e0 + t] + jj) * I8W;
                        const int8_t *rv = R + ((size_t)(e0 + t) * z + j) * I8W;
                        const VT q = V(subs)(V(load)(lv), V(load)(rv));
                        V(store)(Q + (size_t)t * I8W, q);
                        const VT a = V(abs)(q);
                        const VT lt = V(gt)(m1, a);
                        m2 = V(min)(m2, V(max)(m1, a));
                        pos = V(blend)(pos, V(set1)((int8_t)t), lt);
                        m1 = V(min)(m1, a);
                        sg = V(xor)(sg, q);
                    }
                    const VT s1 = V(min)(V(scale)(m1, aq), rmax), s2 = V(min)(V(scale)(m2, aq), rmax);
                    for (int32_t t = 0; t < d; t++) {
                        int32_t jj = j + e_shift[e0 + t];
                        if (jj >= z) jj -= z;
                        int8_t *lv = L + ((size_t)off[e0 + t] + jj) * I8W;
                        int8_t *rv = R + ((size_t)(e0 + t) * z + j) * I8W;
                        const VT q = V(load)(Q + (size_t)t * I8W);
                        const VT mag = V(blend)(s1, s2, V(eq)(pos, V(set1)((int8_t)t)));
                        const VT rn = V(negif)(mag, V(xor)(sg, q));
                        V(store)(rv, rn);
                        V(store)(lv, V(adds)(q, rn));
                    }
                }
            }
            it++;
            if (early_stop) {
                const uint32_t sat = ~V(unsatisfied)(L, z, n_rows, row_ptr, e_col, e_shift) & all;
                const uint32_t fresh = sat & ~done;
                I8_EMIT(fresh, it, 1)
                done |= fresh;
            }
        }
        {
            const uint32_t rest = all & ~done;
            const uint32_t bad = early_stop ? rest
                                 : V(unsatisfied)(L, z, n_rows, row_ptr, e_col, e_shift);
            for (int32_t l = 0; l < nl; l++) {
                if (!((rest >> l) & 1u)) continue;
                float *x = llr + (size_t)(g + l) * n_vars;
                const float inv = 1.0f / scale[l];
                for (int32_t v = 0; v < n_vars; v++) x[v] = (float)L[(size_t)v * I8W + l] * inv;
                iters[g + l] = it;
                ok[g + l] = (uint8_t)!((bad >> l) & 1u);
            }
        }
#undef I8_EMIT
    }
    free(raw[0]); free(raw[1]); free(raw[2]); free(off);
    return 0;
}
#endif /* SEMCOM_I8_PASS */
