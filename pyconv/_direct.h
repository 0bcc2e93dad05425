/* pyconv direct-correlation kernels: the register tiles of the direct family
 * (pyconv/_direct.pxi), for layers with few channels per group (depthwise 3x3 ...).
 *
 * Contract (every ISA): rows [0, nrows) of one output channel from a band of packed
 * input rows,
 *
 *     for i < nrows, j < ow:
 *         s = accumulate ? Y[i*ow + j] : 0
 *         for c < nc, u < kh, v < kw (in that order):
 *             s += W[(c*kh + u)*kw + v] * X[c*cs + (i*sh + u*dh)*rs + off[v] + j]
 *         Y[i*ow + j] = finish ? clamp(s + bias, lo, hi) : s
 *
 *   X  the band: input rows of nc channels, cs apart, rows rs apart, each a
 *      zero-padded copy of an input row (or a row of zeros for a padding row) split
 *      into stride phases, so that tap v of output column j reads X[... + off[v] + j]:
 *      unit stride whatever the stride. Each row is readable up to off[v] + ow
 *      rounded up to a whole vector (the last vector of a row is computed whole);
 *   W  the taps of the output channel, (channel, u, v) contiguous;
 *   Y  the nrows x ow output rows. Stores never pass yend: a row's partial last
 *      vector is stored whole when its tail lands below yend, in rows stored later
 *      (columns are walked right to left, rows top down), else through a buffer;
 *   accumulate = 1 (a later block of input channels) starts the sums from Y, so
 *      that blocking the channels never changes a bit of the result (and then no
 *      vector is stored whole past the row); finish = 1 (the last block) adds the
 *      bias and clamps in the same store -- NaN passes the clamp, as in _ukernel.h.
 *
 * Every output element is one accumulator lane, summed in one fixed order whatever
 * the tile it falls in: results do not depend on the tiling (hence on the threads).
 * Row tiles are balanced (9 rows as 5 + 4, not 7 + 2: a tile of few rows is a few
 * lone chains of kh*kw dependent FMAs).
 *
 * Two row tiles, both straight-line code for each row count (switch on a constant),
 * and, at the end of this file, a channels-last tile for depthwise layers on small
 * planes (pyconv_dwcl_*):
 *
 *   3x3, dilation 1, stride 1 (taps at 0, 1, 2) or stride 2 (taps at 0 and 1 of
 *   the even phase, 0 of the odd one) -- every depthwise layer of MobileNet: the
 *   9 taps live in registers, and a tile of up to 7 rows x 1 vector walks the
 *   (rows-1)*sh + 3 input rows it needs once, each loaded vector feeding every
 *   row of the tile that reads it: 27 loads for 63 FMAs at stride 1 instead of a
 *   load per FMA; 7 accumulators + 9 taps fill the 16 registers (a 7x7 map is
 *   one tile; 6-row tiles measured up to 7 % slower).
 *
 *   any other kernel: up to 8 rows x 1 vector (rows of one vector: 7x7 maps) or
 *   4 rows x 2 vectors, one tap broadcast per step shared by the 8 accumulators --
 *   enough independent FMA chains to cover the FMA latency.
 */
#ifndef PYCONV_DIRECT_H
#define PYCONV_DIRECT_H

#include "_ukernel.h"

/* Vectors read from packed rows / written to Y at any alignment; may_alias: they
 * access plain float/double arrays. */
typedef float pyconv_dvf __attribute__((vector_size(PYCONV_VBYTES), aligned(4), may_alias));
typedef double pyconv_dvd __attribute__((vector_size(PYCONV_VBYTES), aligned(8), may_alias));

#define PYCONV_DIRECT_RB3 7  /* rows of a 3x3 tile (PYCONV_T3_* name rows 0..6) */
#define PYCONV_DIRECT_RB1 8  /* rows of a generic tile one vector wide */
#define PYCONV_DIRECT_RB2 4  /* ... and two vectors wide */

/* dst[0:n] = src[0:n] for n < PYCONV_VBYTES bytes (a multiple of 4), in 32-, 16-,
 * 8-, 4-byte moves: the partial last vector of an output row. */
static inline void pyconv_direct_copy_part(char *d, const char *s, int64_t n)
{
#if PYCONV_VBYTES > 32
    if (n & 32) { memcpy(d, s, 32); d += 32; s += 32; }
#endif
#if PYCONV_VBYTES > 16
    if (n & 16) { memcpy(d, s, 16); d += 16; s += 16; }
#endif
    if (n & 8) { memcpy(d, s, 8); d += 8; s += 8; }
    if (n & 4) memcpy(d, s, 4);
}

/* Packing input rows (pyconv/_direct.pxi _pack_rows) with whole vectors:
 *
 *   pyconv_direct_pack1_*:  d[t] = s[t]                       t in [0, n)
 *   pyconv_direct_pack2_*:  d0[t] = s[2t], d1[t] = s[2t + 1]  t in [0, n)  (stride 2)
 *
 * where a lane t outside [lo, hi) (lo0/hi0, lo1/hi1 per phase for pack2) is
 * written as 0: a padding column. Both read and write whole vectors past n (up to
 * n rounded up to a vector, twice that for s): the caller checks that the reads
 * stay inside the input array, and packed rows have a vector of slack after each
 * phase for the writes. Row by row, a masked vector costs less than an exact copy
 * of the 7 to 56 values of a depthwise row and its edges one by one.
 *
 * Stride 2 splits two input vectors into their even and odd values: on AVX2 four
 * half-vector loads placed by lane and two in-lane shuffles (two pyconv_gather2
 * passes took three times the shuffles, and the packing was half of a stride-2
 * layer's time); elsewhere the compiler's two-vector shuffles. */
#if PYCONV_VBYTES == 64
#define PYCONV_ODD_F 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31
#define PYCONV_ODD_D 1, 3, 5, 7, 9, 11, 13, 15
#define PYCONV_IOTA_F 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
#define PYCONV_IOTA_D 0, 1, 2, 3, 4, 5, 6, 7
#elif PYCONV_VBYTES == 32
#define PYCONV_ODD_F 1, 3, 5, 7, 9, 11, 13, 15
#define PYCONV_ODD_D 1, 3, 5, 7
#define PYCONV_IOTA_F 0, 1, 2, 3, 4, 5, 6, 7
#define PYCONV_IOTA_D 0, 1, 2, 3
#else
#define PYCONV_ODD_F 1, 3, 5, 7
#define PYCONV_ODD_D 1, 3
#define PYCONV_IOTA_F 0, 1, 2, 3
#define PYCONV_IOTA_D 0, 1
#endif

#if defined(__AVX2__) && !defined(__AVX512F__)
/* (s0 s1 s2 s3 | s8 s9 s10 s11) and (s4 .. s7 | s12 .. s15): shufps then gives
 * the even and the odd values in order. */
#define PYCONV_SPLIT2_F(a, b, s)                                                   \
    __m256 lo_ = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(s)), _mm_loadu_ps((s) + 8), 1); \
    __m256 hi_ = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps((s) + 4)), _mm_loadu_ps((s) + 12), 1); \
    a = (pyconv_vf)_mm256_shuffle_ps(lo_, hi_, 0x88);                              \
    b = (pyconv_vf)_mm256_shuffle_ps(lo_, hi_, 0xDD);
#define PYCONV_SPLIT2_D(a, b, s)                                                   \
    __m256d lo_ = _mm256_insertf128_pd(_mm256_castpd128_pd256(_mm_loadu_pd(s)), _mm_loadu_pd((s) + 4), 1); \
    __m256d hi_ = _mm256_insertf128_pd(_mm256_castpd128_pd256(_mm_loadu_pd((s) + 2)), _mm_loadu_pd((s) + 6), 1); \
    a = (pyconv_vd)_mm256_unpacklo_pd(lo_, hi_);                                   \
    b = (pyconv_vd)_mm256_unpackhi_pd(lo_, hi_);
#else
#define PYCONV_SPLIT2_F(a, b, s)                                                   \
    pyconv_vf u_ = *(const pyconv_dvf *)(s), v_ = *(const pyconv_dvf *)((s) + PYCONV_VBYTES / 4); \
    a = PYCONV_EVEN(u_, v_, pyconv_vfi, PYCONV_EVEN_F);                            \
    b = PYCONV_EVEN(u_, v_, pyconv_vfi, PYCONV_ODD_F);
#define PYCONV_SPLIT2_D(a, b, s)                                                   \
    pyconv_vd u_ = *(const pyconv_dvd *)(s), v_ = *(const pyconv_dvd *)((s) + PYCONV_VBYTES / 8); \
    a = PYCONV_EVEN(u_, v_, pyconv_vdi, PYCONV_EVEN_D);                            \
    b = PYCONV_EVEN(u_, v_, pyconv_vdi, PYCONV_ODD_D);
#endif

/* The lanes t + l of a vector that lie in [lo, hi), as a mask (IOTA: 0, 1, ...). */
#define PYCONV_IOTA_VF ((pyconv_vfi){PYCONV_IOTA_F})
#define PYCONV_IOTA_VD ((pyconv_vdi){PYCONV_IOTA_D})
#define PYCONV_DKEEP(VI, IOTA, t, lo, hi)                                          \
    (((IOTA + (int)(t)) >= (VI){0} + (int)(lo)) & ((IOTA + (int)(t)) < (VI){0} + (int)(hi)))

#define PYCONV_PACK1_BODY(V, VU, VI, IOTA)                                         \
    enum { VL = PYCONV_VBYTES / sizeof(*d) };                                      \
    for (int64_t t = 0; t < n; t += VL) {                                          \
        const V a = *(const VU *)(s + t);                                                \
        *(VU *)(d + t) = (V)((VI)a & PYCONV_DKEEP(VI, IOTA, t, 0, n));             \
    }
#define PYCONV_PACK2_BODY(V, VU, VI, IOTA, SPLIT)                                  \
    enum { VL = PYCONV_VBYTES / sizeof(*d0) };                                     \
    for (int64_t t = 0; t < n; t += VL) {                                          \
        V a, b;                                                                    \
        { SPLIT(a, b, s + 2 * t) }                                                 \
        *(VU *)(d0 + t) = (V)((VI)a & PYCONV_DKEEP(VI, IOTA, t, lo0, hi0));        \
        *(VU *)(d1 + t) = (V)((VI)b & PYCONV_DKEEP(VI, IOTA, t, lo1, hi1));        \
    }

/* ... for `rows` rows: d and s advance by ds and ss per row (pack2: phase 1 at d + ps). */
static void pyconv_direct_pack1_f32(float *restrict d, int64_t ds, const float *restrict s,
                                    int64_t ss, int64_t rows, int64_t n)
{
    for (int64_t r = 0; r < rows; r++, d += ds, s += ss) {
        PYCONV_PACK1_BODY(pyconv_vf, pyconv_dvf, pyconv_vfi, PYCONV_IOTA_VF)
    }
}
static void pyconv_direct_pack1_f64(double *restrict d, int64_t ds, const double *restrict s,
                                    int64_t ss, int64_t rows, int64_t n)
{
    for (int64_t r = 0; r < rows; r++, d += ds, s += ss) {
        PYCONV_PACK1_BODY(pyconv_vd, pyconv_dvd, pyconv_vdi, PYCONV_IOTA_VD)
    }
}

static void pyconv_direct_pack2_f32(float *restrict d, int64_t ds, int64_t ps,
                                    const float *restrict s, int64_t ss, int64_t rows, int64_t n,
                                    int64_t lo0, int64_t hi0, int64_t lo1, int64_t hi1)
{
    for (int64_t r = 0; r < rows; r++, d += ds, s += ss) {
        float *d0 = d, *d1 = d + ps;
        PYCONV_PACK2_BODY(pyconv_vf, pyconv_dvf, pyconv_vfi, PYCONV_IOTA_VF, PYCONV_SPLIT2_F)
    }
}
static void pyconv_direct_pack2_f64(double *restrict d, int64_t ds, int64_t ps,
                                    const double *restrict s, int64_t ss, int64_t rows, int64_t n,
                                    int64_t lo0, int64_t hi0, int64_t lo1, int64_t hi1)
{
    for (int64_t r = 0; r < rows; r++, d += ds, s += ss) {
        double *d0 = d, *d1 = d + ps;
        PYCONV_PACK2_BODY(pyconv_vd, pyconv_dvd, pyconv_vdi, PYCONV_IOTA_VD, PYCONV_SPLIT2_D)
    }
}

/* p[0:n] = 0 (n values), inline: the padding rows of a small band. */
#define PYCONV_ZERO_BODY(V, VU)                                                    \
    enum { VL = PYCONV_VBYTES / sizeof(*p) };                                      \
    int64_t t = 0;                                                                 \
    for (; t + VL <= n; t += VL) *(VU *)(p + t) = (V){0};                          \
    for (; t < n; t++) p[t] = 0;
static inline void pyconv_direct_zero_f32(float *p, int64_t n) { PYCONV_ZERO_BODY(pyconv_vf, pyconv_dvf) }
static inline void pyconv_direct_zero_f64(double *p, int64_t n) { PYCONV_ZERO_BODY(pyconv_vd, pyconv_dvd) }

/* A vector of Y at p with n valid lanes (n may exceed VL: then all are valid). */
#define PYCONV_DLOADY(dst, p, n)                                                   \
    if ((n) >= VL) dst = *(const VU *)(p);                                         \
    else { S t_[VL] = {0}; pyconv_direct_copy_part((char *)t_, (const char *)(p), (n) * sizeof(S)); \
           dst = *(const VU *)t_; }
#define PYCONV_DSTOREY(p, src, n)                                                  \
    if ((n) >= VL || (!accumulate && yend - (p) >= VL)) *(VU *)(p) = src;          \
    else { S t_[VL]; *(VU *)t_ = src;                                              \
           pyconv_direct_copy_part((char *)(p), (const char *)t_, (n) * sizeof(S)); }

#define PYCONV_DI8(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)

/* ---- generic tile: RB rows x NV vectors at column j ---------------------------- */
#define PYCONV_GT_DECL(i)                                                          \
    const S *x##i = 0; V c##i##_0 = (V){0}, c##i##_1 = (V){0};                     \
    if (i < RB && accumulate) {                                                    \
        PYCONV_DLOADY(c##i##_0, Yt + i * ow, ncols)                                \
        if (NV > 1) { PYCONV_DLOADY(c##i##_1, Yt + i * ow + VL, ncols - VL) }      \
    }
#define PYCONV_GT_ROW(i) if (i < RB) x##i = xr + i * srs;
#define PYCONV_GT_FMA(i)                                                           \
    if (i < RB) { c##i##_0 += wv * *(const VU *)(x##i + o);                        \
                  if (NV > 1) c##i##_1 += wv * *(const VU *)(x##i + o + VL); }
#define PYCONV_GT_OUT(i)                                                           \
    if (i < RB) {                                                                  \
        if (finish) { c##i##_0 = CLAMP(c##i##_0 + bv, lov, hiv);                   \
                      if (NV > 1) c##i##_1 = CLAMP(c##i##_1 + bv, lov, hiv); }     \
        if (NV > 1) { PYCONV_DSTOREY(Yt + i * ow + VL, c##i##_1, ncols - VL) }     \
        PYCONV_DSTOREY(Yt + i * ow, c##i##_0, ncols)                               \
    }
#define PYCONV_GT_BODY                                                             \
    PYCONV_DI8(PYCONV_GT_DECL)                                                     \
    for (int64_t c = 0; c < nc; c++)                                               \
        for (int64_t u = 0; u < kh; u++) {                                         \
            const S *xr = Xt + c * cs + u * drs;                                   \
            const S *wr = W + (c * kh + u) * kw;                                   \
            PYCONV_DI8(PYCONV_GT_ROW)                                              \
            for (int64_t v = 0; v < kw; v++) {                                     \
                V wv = BCAST(wr + v);                                              \
                const int64_t o = off[v];                                          \
                PYCONV_DI8(PYCONV_GT_FMA)                                          \
            }                                                                      \
        }                                                                          \
    PYCONV_DI8(PYCONV_GT_OUT)
#define PYCONV_GT_CASE(rb_, nv_) case rb_: { enum { RB = rb_, NV = nv_ }; PYCONV_GT_BODY } break;

/* ---- 3x3 tile: RB rows x 1 vector at column j, taps in registers, stride SH ----- */
#define PYCONV_T3_DECL(i)                                                          \
    V c##i = (V){0};                                                               \
    if (i < RB && accumulate) { PYCONV_DLOADY(c##i, Yt + i * ow, ncols) }
/* Input row t of the tile feeds output row i with tap row u = t - i*SH. */
#define PYCONV_T3_FMA(t, i)                                                        \
    if (i < RB && t >= i * SH && t - i * SH < 3) {                                 \
        c##i += w[3 * (t - i * SH)] * x0;                                          \
        c##i += w[3 * (t - i * SH) + 1] * x1;                                      \
        c##i += w[3 * (t - i * SH) + 2] * x2; }
#define PYCONV_T3_ROW(t)                                                           \
    if (t <= (RB - 1) * SH + 2) {                                                  \
        const S *p = xc + t * rs;                                                  \
        V x0 = *(const VU *)p, x1 = *(const VU *)(p + O1), x2 = *(const VU *)(p + O2); \
        PYCONV_T3_FMA(t, 0) PYCONV_T3_FMA(t, 1) PYCONV_T3_FMA(t, 2)               \
        PYCONV_T3_FMA(t, 3) PYCONV_T3_FMA(t, 4) PYCONV_T3_FMA(t, 5)               \
        PYCONV_T3_FMA(t, 6) }
#define PYCONV_T3_OUT(i)                                                           \
    if (i < RB) {                                                                  \
        if (finish) c##i = CLAMP(c##i + bv, lov, hiv);                             \
        PYCONV_DSTOREY(Yt + i * ow, c##i, ncols) }
#define PYCONV_T3_BODY                                                             \
    PYCONV_T3_DECL(0) PYCONV_T3_DECL(1) PYCONV_T3_DECL(2)                          \
    PYCONV_T3_DECL(3) PYCONV_T3_DECL(4) PYCONV_T3_DECL(5) PYCONV_T3_DECL(6)        \
    for (int64_t c = 0; c < nc; c++) {                                             \
        const S *xc = Xt + c * cs;                                                 \
        V w[9];                                                                    \
        for (int k = 0; k < 9; k++) w[k] = BCAST(W + 9 * c + k);                   \
        PYCONV_T3_ROW(0) PYCONV_T3_ROW(1) PYCONV_T3_ROW(2) PYCONV_T3_ROW(3)        \
        PYCONV_T3_ROW(4) PYCONV_T3_ROW(5) PYCONV_T3_ROW(6) PYCONV_T3_ROW(7)        \
        PYCONV_T3_ROW(8) PYCONV_T3_ROW(9) PYCONV_T3_ROW(10) PYCONV_T3_ROW(11)      \
        PYCONV_T3_ROW(12) PYCONV_T3_ROW(13) PYCONV_T3_ROW(14)                      \
    }                                                                              \
    PYCONV_T3_OUT(0) PYCONV_T3_OUT(1) PYCONV_T3_OUT(2)                             \
    PYCONV_T3_OUT(3) PYCONV_T3_OUT(4) PYCONV_T3_OUT(5) PYCONV_T3_OUT(6)
#define PYCONV_T3_CASE(rb_) case rb_: { enum { RB = rb_ }; PYCONV_T3_BODY } break;

/* The contract's rows, tile by tile: row blocks top down, and in each block the
 * column tiles right to left (see Y above). Expects in scope S, V, VU, VL, BCAST,
 * CLAMP and the arguments. */
#define PYCONV_DIRECT_BODY                                                         \
    const V bv = (V){0} + bias, lov = (V){0} + lo, hiv = (V){0} + hi;              \
    /* The 3x3 tile for stride 1 (taps at 0, 1, 2) and stride 2 (phases: taps at 0,  \
     * the odd phase, 1); anything else (dilation, mixed strides) is generic. */   \
    const int t3s1 = kh == 3 && kw == 3 && dh == 1 && sh == 1                      \
                     && off[0] == 0 && off[1] == 1 && off[2] == 2;                 \
    const int t3s2 = kh == 3 && kw == 3 && dh == 1 && sh == 2                      \
                     && off[0] == 0 && off[2] == 1;                                \
    const int t3 = t3s1 || t3s2;                                                   \
    const int64_t nvmax = t3 || ow <= VL ? 1 : 2;                                  \
    const int64_t rbmax = t3 ? PYCONV_DIRECT_RB3                                   \
                          : nvmax == 1 ? PYCONV_DIRECT_RB1 : PYCONV_DIRECT_RB2;    \
    const int64_t tw = nvmax * VL, srs = sh * rs, drs = dh * rs;                   \
    const int64_t ntiles = (nrows + rbmax - 1) / rbmax;                            \
    for (int64_t i0 = 0, k = 0; i0 < nrows; k++) {                                 \
        /* balanced row tiles */                                                   \
        const int64_t rb = (nrows - i0 + (ntiles - k) - 1) / (ntiles - k);         \
        for (int64_t j = (ow - 1) / tw * tw; j >= 0; j -= tw) {                    \
            const int64_t ncols = ow - j;  /* >= the tile's columns but the last */ \
            const S *Xt = X + i0 * srs + j;                                        \
            S *Yt = Y + i0 * ow + j;                                               \
            if (t3s1) {                                                            \
                enum { SH = 1, O1 = 1, O2 = 2 };                                   \
                switch (rb) { PYCONV_T3_CASE(1) PYCONV_T3_CASE(2) PYCONV_T3_CASE(3) \
                              PYCONV_T3_CASE(4) PYCONV_T3_CASE(5) PYCONV_T3_CASE(6) \
                              PYCONV_T3_CASE(7) } \
            } else if (t3s2) {                                                     \
                enum { SH = 2, O2 = 1 };                                           \
                const int64_t O1 = off[1];                                         \
                switch (rb) { PYCONV_T3_CASE(1) PYCONV_T3_CASE(2) PYCONV_T3_CASE(3) \
                              PYCONV_T3_CASE(4) PYCONV_T3_CASE(5) PYCONV_T3_CASE(6) \
                              PYCONV_T3_CASE(7) } \
            } else if (ncols > VL && nvmax == 2) {                                 \
                switch (rb) { PYCONV_GT_CASE(1, 2) PYCONV_GT_CASE(2, 2)            \
                              PYCONV_GT_CASE(3, 2) PYCONV_GT_CASE(4, 2) }          \
            } else {                                                               \
                switch (rb) { PYCONV_GT_CASE(1, 1) PYCONV_GT_CASE(2, 1)            \
                              PYCONV_GT_CASE(3, 1) PYCONV_GT_CASE(4, 1)            \
                              PYCONV_GT_CASE(5, 1) PYCONV_GT_CASE(6, 1)            \
                              PYCONV_GT_CASE(7, 1) PYCONV_GT_CASE(8, 1) }          \
            }                                                                      \
        }                                                                          \
        i0 += rb;                                                                  \
    }

static void pyconv_direct_rows_f32(const float *X, int64_t rs, int64_t cs, int64_t nc,
                                   int64_t kh, int64_t kw, int64_t sh, int64_t dh,
                                   const int64_t *off, const float *W, float *Y, int64_t ow,
                                   int64_t nrows, const float *yend, int accumulate, int finish,
                                   float bias, float lo, float hi)
{
    typedef float S;
    typedef pyconv_vf V;
    typedef pyconv_dvf VU;
    enum { VL = PYCONV_VBYTES / 4 };
#define BCAST PYCONV_BCAST_F
#define CLAMP pyconv_clamp_float
    PYCONV_DIRECT_BODY
#undef CLAMP
#undef BCAST
}

static void pyconv_direct_rows_f64(const double *X, int64_t rs, int64_t cs, int64_t nc,
                                   int64_t kh, int64_t kw, int64_t sh, int64_t dh,
                                   const int64_t *off, const double *W, double *Y, int64_t ow,
                                   int64_t nrows, const double *yend, int accumulate, int finish,
                                   double bias, double lo, double hi)
{
    typedef double S;
    typedef pyconv_vd V;
    typedef pyconv_dvd VU;
    enum { VL = PYCONV_VBYTES / 8 };
#define BCAST PYCONV_BCAST_D
#define CLAMP pyconv_clamp_double
    PYCONV_DIRECT_BODY
#undef CLAMP
#undef BCAST
}

/* Depthwise, VL channels at once (channels-last): the tile for planes narrower than a
 * vector, where the row tiles above leave most lanes empty (a 7x7 map fills 7 of 16)
 * and packing a row costs more than its arithmetic. Contract:
 *
 *     for i < oh, j < ow, lane l < VL (channel l of the block):
 *         s = 0
 *         for u < kh, v < kw (in that order):
 *             s += W[(u*kw + v)*VL + l] * T[((i*sh + u*dh)*tw + j*sw + v*dw)*VL + l]
 *         O[(i*ow + j)*VL + l] = clamp(s + B[l], lo, hi)
 *
 *   T  the block's input planes, channels-last and zero-padded (the pads inside it,
 *      tw columns per row); W the taps, B the bias, channels-last; O the output,
 *      channels-last. The sum of each element is the one of pyconv_direct_rows (its
 *      single channel, taps in order, then bias and clamp) -- the same products in the
 *      same order, lane by lane.
 * Four output columns at a time: four independent chains of FMAs sharing each tap's
 * vector (one chain of kh*kw dependent FMAs would wait on the FMA latency). */
#define PYCONV_DWCL_BODY                                                           \
    V lov = (V){0} + lo, hiv = (V){0} + hi, bv = *(const V *)B;                    \
    for (int64_t i = 0; i < oh; i++) {                                             \
        S *o = O + i * ow * VL;                                                    \
        int64_t j = 0;                                                             \
        for (; j + 4 <= ow; j += 4) {                                              \
            V s0 = (V){0}, s1 = s0, s2 = s0, s3 = s0;                              \
            for (int64_t u = 0; u < kh; u++) {                                     \
                const S *t = T + ((i * sh + u * dh) * tw + j * sw) * VL;           \
                const S *w = W + u * kw * VL;                                      \
                for (int64_t v = 0; v < kw; v++) {                                 \
                    V wv = *(const V *)(w + v * VL);                               \
                    const S *tv = t + v * dw * VL;                                 \
                    s0 += wv * *(const V *)tv;                                     \
                    s1 += wv * *(const V *)(tv + sw * VL);                         \
                    s2 += wv * *(const V *)(tv + 2 * sw * VL);                     \
                    s3 += wv * *(const V *)(tv + 3 * sw * VL);                     \
                }                                                                  \
            }                                                                      \
            *(V *)(o + j * VL) = CLAMP(s0 + bv, lov, hiv);                         \
            *(V *)(o + (j + 1) * VL) = CLAMP(s1 + bv, lov, hiv);                   \
            *(V *)(o + (j + 2) * VL) = CLAMP(s2 + bv, lov, hiv);                   \
            *(V *)(o + (j + 3) * VL) = CLAMP(s3 + bv, lov, hiv);                   \
        }                                                                          \
        for (; j < ow; j++) {                                                      \
            V s0 = (V){0};                                                         \
            for (int64_t u = 0; u < kh; u++)                                       \
                for (int64_t v = 0; v < kw; v++)                                   \
                    s0 += *(const V *)(W + (u * kw + v) * VL)                      \
                          * *(const V *)(T + ((i * sh + u * dh) * tw + j * sw + v * dw) * VL); \
            *(V *)(o + j * VL) = CLAMP(s0 + bv, lov, hiv);                         \
        }                                                                          \
    }

static void pyconv_dwcl_f32(const float *restrict T, int64_t tw, const float *restrict W,
                            const float *restrict B, int64_t kh, int64_t kw, int64_t sh,
                            int64_t sw, int64_t dh, int64_t dw, float *restrict O,
                            int64_t oh, int64_t ow, float lo, float hi)
{
    typedef float S;
    typedef pyconv_vf V;
    enum { VL = PYCONV_VBYTES / 4 };
#define CLAMP pyconv_clamp_float
    PYCONV_DWCL_BODY
#undef CLAMP
}

static void pyconv_dwcl_f64(const double *restrict T, int64_t tw, const double *restrict W,
                            const double *restrict B, int64_t kh, int64_t kw, int64_t sh,
                            int64_t sw, int64_t dh, int64_t dw, double *restrict O,
                            int64_t oh, int64_t ow, double lo, double hi)
{
    typedef double S;
    typedef pyconv_vd V;
    enum { VL = PYCONV_VBYTES / 8 };
#define CLAMP pyconv_clamp_double
    PYCONV_DWCL_BODY
#undef CLAMP
}

/* The channels-last copies of _direct_dwcl (pyconv/_direct.pxi), a block of nl <= VL
 * channels (planes cs apart):
 *
 *   pyconv_dwcl_in_*:   T[(r*tw + q + pw)*VL + l] = x_l[(r - ph)*ws + q]   r in [r0, r1), q < nc
 *                       (x_l = x + l*cs; lanes l >= nl: 0; T's pads are left as they
 *                       are: zeros; nc: the input columns that the tile holds);
 *   pyconv_dwcl_out_*:  y_l[p] = O[p*VL + l]                            p < np, l < nl.
 *
 * On AVX-512 (float32) both go through 16 x 16 in-register transposes: 16 rows of a
 * channel in, 16 channel vectors out (one per column), or back -- the scalar copy,
 * one store per value 64 bytes apart, took most of a 7x7 layer's time (perf: the input
 * copy is still 48 % of 576@14/2 with the transposes). Elsewhere,
 * plain loops, and direct_conv2d keeps the row tiles (PYCONV_DWCL_F32 = 0). */
#if defined(__AVX512F__)
#define PYCONV_DWCL_F32 1   /* direct_conv2d takes the channels-last tile (float32) */
/* r[l] (row l: lanes = columns) -> r[q] (lanes = rows), in place. */
static inline void pyconv_t16_f32(__m512 r[16])
{
    __m512 t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {   /* u[i + j]: column 4k + j of rows i..i+3 in block k */
        u[i] = (__m512)_mm512_unpacklo_pd((__m512d)t[i], (__m512d)t[i + 2]);
        u[i + 1] = (__m512)_mm512_unpackhi_pd((__m512d)t[i], (__m512d)t[i + 2]);
        u[i + 2] = (__m512)_mm512_unpacklo_pd((__m512d)t[i + 1], (__m512d)t[i + 3]);
        u[i + 3] = (__m512)_mm512_unpackhi_pd((__m512d)t[i + 1], (__m512d)t[i + 3]);
    }
    for (int j = 0; j < 4; j++) {
        __m512 v = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88);        /* blocks 0, 2 */
        __m512 w = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xDD);        /* blocks 1, 3 */
        __m512 x = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88);
        __m512 y = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xDD);
        r[j] = _mm512_shuffle_f32x4(v, x, 0x88);
        r[8 + j] = _mm512_shuffle_f32x4(v, x, 0xDD);
        r[4 + j] = _mm512_shuffle_f32x4(w, y, 0x88);
        r[12 + j] = _mm512_shuffle_f32x4(w, y, 0xDD);
    }
}

static void pyconv_dwcl_in_f32(float *restrict T, int64_t tw, const float *restrict x, int64_t cs,
                               int64_t ws, int64_t nl, int64_t nc, int64_t ph, int64_t pw, int64_t r0, int64_t r1)
{
    for (int64_t r = r0; r < r1; r++)
        for (int64_t q0 = 0; q0 < nc; q0 += 16) {
            int64_t nq = nc - q0 < 16 ? nc - q0 : 16;
            __mmask16 m = (__mmask16)(nq == 16 ? 0xFFFF : (1u << nq) - 1);
            __m512 v[16];
            for (int64_t l = 0; l < 16; l++)
                v[l] = l < nl ? _mm512_maskz_loadu_ps(m, x + l * cs + (r - ph) * ws + q0)
                              : _mm512_setzero_ps();
            pyconv_t16_f32(v);
            float *t = T + (r * tw + pw + q0) * 16;
            for (int64_t q = 0; q < nq; q++)
                _mm512_store_ps(t + q * 16, v[q]);
        }
}

static void pyconv_dwcl_out_f32(float *restrict y, int64_t cs, int64_t nl, const float *restrict O,
                                int64_t np)
{
    for (int64_t p0 = 0; p0 < np; p0 += 16) {
        int64_t n = np - p0 < 16 ? np - p0 : 16;
        __m512 v[16];
        for (int64_t p = 0; p < 16; p++)
            v[p] = p < n ? _mm512_load_ps(O + (p0 + p) * 16) : _mm512_setzero_ps();
        pyconv_t16_f32(v);
        __mmask16 m = (__mmask16)(n == 16 ? 0xFFFF : (1u << n) - 1);
        for (int64_t l = 0; l < nl; l++)
            _mm512_mask_storeu_ps(y + l * cs + p0, m, v[l]);
    }
}
#endif

/* The plain copies, for a scalar S and VL lanes: float32 off AVX-512, and float64. */
#define PYCONV_DWCL_COPIES(IN, OUT, S, VL_)                                        \
    static void IN(S *restrict T, int64_t tw, const S *restrict x, int64_t cs, int64_t ws, \
                   int64_t nl, int64_t nc, int64_t ph, int64_t pw, int64_t r0, int64_t r1) \
    {                                                                              \
        enum { VL = VL_ };                                                         \
        for (int64_t r = r0; r < r1; r++)                                          \
            for (int64_t q = 0; q < nc; q++)                                       \
                for (int64_t l = 0; l < VL; l++)                                   \
                    T[(r * tw + pw + q) * VL + l] = l < nl ? x[l * cs + (r - ph) * ws + q] : 0; \
    }                                                                              \
    static void OUT(S *restrict y, int64_t cs, int64_t nl, const S *restrict O, int64_t np) \
    {                                                                              \
        enum { VL = VL_ };                                                         \
        for (int64_t l = 0; l < nl; l++)                                           \
            for (int64_t p = 0; p < np; p++)                                       \
                y[l * cs + p] = O[p * VL + l];                                     \
    }
#if !defined(__AVX512F__)
/* Not taken by direct_conv2d here: with these plain copies it ran 1.1-2.0x the row
 * tiles' time on AVX2 (Zen 4, PYCONV_KERNELS=avx2 benchmarks/paths.py depthwise);
 * conv2d_depthwise_cl still runs (and tests) it. */
#define PYCONV_DWCL_F32 0
PYCONV_DWCL_COPIES(pyconv_dwcl_in_f32, pyconv_dwcl_out_f32, float, PYCONV_VBYTES / 4)
#endif
PYCONV_DWCL_COPIES(pyconv_dwcl_in_f64, pyconv_dwcl_out_f64, double, PYCONV_VBYTES / 8)

#endif
