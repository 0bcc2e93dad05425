/* The vector parts of max pooling without indices (_maxpool.pxi): an input row's
 * interior horizontal maxima, and the fold of pooled rows into an output row.
 *
 * max as pooling defines it: v replaces m when greater, or when v is NaN (so a NaN
 * anywhere wins); an equal v does not (the first is kept: +0 and -0 compare equal).
 * A lane computes what _maxpool.pxi's scalar loop computes for its column, so the two
 * are interchangeable: each function does the columns it can, VL at a time, and
 * returns the first column it left to the scalar loop.
 *
 * The kernel sets compile this header with their ISA flags: AVX2 takes 8-lane vector
 * paths, AVX-512 16-lane ones for float32 (8-lane for float64); the generic set has
 * none (every column goes to the scalar loop).
 */
#ifndef PYCONV_MAXPOOL_H
#define PYCONV_MAXPOOL_H

#include <stddef.h>
#include <string.h>

#if defined(__AVX2__)
#include <immintrin.h>

static inline __m256 pyconv_pool_vmax_f32(__m256 m, __m256 v)
{
    __m256 take = _mm256_or_ps(_mm256_cmp_ps(v, m, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    return _mm256_blendv_ps(m, v, take);
}

static inline __m256d pyconv_pool_vmax_f64(__m256d m, __m256d v)
{
    __m256d take = _mm256_or_pd(_mm256_cmp_pd(v, m, _CMP_GT_OQ), _mm256_cmp_pd(v, v, _CMP_UNORD_Q));
    return _mm256_blendv_pd(m, v, take);
}

/* p[0], p[2], ..., p[2*VL - 2] as one vector (two loads, which read p[2*VL - 1] too). */
static inline __m256 pyconv_pool_even_f32(const float* p)
{
    __m256 pairs = _mm256_shuffle_ps(_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8), 0x88);
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(pairs), 0xD8));
}

static inline __m256d pyconv_pool_even_f64(const double* p)
{
    return _mm256_permute4x64_pd(_mm256_unpacklo_pd(_mm256_loadu_pd(p), _mm256_loadu_pd(p + 4)), 0xD8);
}

/* Lanes [0, n) of a vector set (all ones), the others clear: the mask of a masked
 * load or store, which neither reads nor writes the clear lanes' addresses -- short
 * rows (7, 14, 28 columns: the deep layers) then run in vectors to their end, where a
 * scalar tail took most of the time. */
static inline __m256i pyconv_pool_lanes_f32(ptrdiff_t n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static inline __m256i pyconv_pool_lanes_f64(ptrdiff_t n)
{
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
}

/* p[0], p[2], ..., p[2*(n - 1)] in the first n lanes, by masked loads. */
static inline __m256 pyconv_pool_even_part_f32(const float* p, ptrdiff_t n)
{
    __m256 lo = _mm256_maskload_ps(p, pyconv_pool_lanes_f32(2 * n - 1));
    __m256 hi = _mm256_maskload_ps(p + 8, pyconv_pool_lanes_f32(2 * n - 9));
    __m256 pairs = _mm256_shuffle_ps(lo, hi, 0x88);
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(pairs), 0xD8));
}

static inline __m256d pyconv_pool_even_part_f64(const double* p, ptrdiff_t n)
{
    __m256d lo = _mm256_maskload_pd(p, pyconv_pool_lanes_f64(2 * n - 1));
    __m256d hi = _mm256_maskload_pd(p + 4, pyconv_pool_lanes_f64(2 * n - 5));
    return _mm256_permute4x64_pd(_mm256_unpacklo_pd(lo, hi), 0xD8);
}
#endif

#if defined(__AVX512F__)
/* float32 on AVX-512: 16 lanes, comparisons into mask registers, and the even and odd
 * elements of 32 each in one permute (AVX2's needs a shuffle and a permute per tap).
 * Measured against the AVX2 path: see the top of _maxpool.pxi. */
static inline __m512 pyconv_pool_vmax16(__m512 m, __m512 v)
{
    __mmask16 take = _mm512_cmp_ps_mask(v, m, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    return _mm512_mask_mov_ps(m, take, v);
}

/* The first n (< 16 bits) lanes. */
static inline __mmask16 pyconv_pool_mask16(ptrdiff_t n)
{
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

static inline ptrdiff_t pyconv_pool_interior16(const float* xr, ptrdiff_t w, float* hrow,
                                               ptrdiff_t j, ptrdiff_t cb, ptrdiff_t kw,
                                               ptrdiff_t sw, ptrdiff_t pw)
{
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    for (; j < cb; j += 16) {
        ptrdiff_t n = cb - j < 16 ? cb - j : 16;
        const float* p = xr + j * sw - pw;
        __m512 m;
        if (sw == 1) {
            __mmask16 lanes = pyconv_pool_mask16(n);
            m = _mm512_maskz_loadu_ps(lanes, p);
            for (ptrdiff_t v = 1; v < kw; v++)
                m = pyconv_pool_vmax16(m, _mm512_maskz_loadu_ps(lanes, p + v));
        } else if (n == 16 && 2 * (j + 16) - pw + kw - 1 <= w) {
            /* Taps v and v + 1 from the same 32 elements: their even and odd ones. */
            __m512 a = _mm512_loadu_ps(p), b = _mm512_loadu_ps(p + 16);
            m = _mm512_permutex2var_ps(a, even, b);
            if (kw > 1)
                m = pyconv_pool_vmax16(m, _mm512_permutex2var_ps(a, odd, b));
            for (ptrdiff_t v = 2; v < kw; v += 2) {
                a = _mm512_loadu_ps(p + v);
                b = _mm512_loadu_ps(p + v + 16);
                m = pyconv_pool_vmax16(m, _mm512_permutex2var_ps(a, even, b));
                if (v + 1 < kw)
                    m = pyconv_pool_vmax16(m, _mm512_permutex2var_ps(a, odd, b));
            }
        } else {           /* masked loads: nothing past a tap of the last column */
            __mmask16 lo = pyconv_pool_mask16(2 * n - 1), hi = pyconv_pool_mask16(2 * n - 17);
            m = _mm512_permutex2var_ps(_mm512_maskz_loadu_ps(lo, p), even,
                                       _mm512_maskz_loadu_ps(hi, p + 16));
            for (ptrdiff_t v = 1; v < kw; v++)
                m = pyconv_pool_vmax16(m, _mm512_permutex2var_ps(_mm512_maskz_loadu_ps(lo, p + v), even,
                                                                 _mm512_maskz_loadu_ps(hi, p + v + 16)));
        }
        _mm512_storeu_ps(hrow + j, m);   /* lanes past cb: overwritten or unused */
    }
    return j < cb ? j : cb;
}
#endif

/* One value: m, or v when v > m or v is NaN -- without a branch where there are
 * vector units (the branch mispredicted on every other value: the edge columns of
 * short rows, a 28x28 plane's last one, took a third of a 3x3/2 pool). */
static inline float pyconv_pool_max1_f32(float m, float v)
{
#if defined(__AVX2__)
    __m128 a = _mm_set_ss(m), b = _mm_set_ss(v);
    __m128 take = _mm_or_ps(_mm_cmpgt_ss(b, a), _mm_cmpunord_ss(b, b));
    return _mm_cvtss_f32(_mm_blendv_ps(a, b, take));
#else
    return (v > m || v != v) ? v : m;
#endif
}

static inline double pyconv_pool_max1_f64(double m, double v)
{
#if defined(__AVX2__)
    __m128d a = _mm_set_sd(m), b = _mm_set_sd(v);
    __m128d take = _mm_or_pd(_mm_cmpgt_sd(b, a), _mm_cmpunord_sd(b, b));
    return _mm_cvtsd_f64(_mm_blendv_pd(a, b, take));
#else
    return (v > m || v != v) ? v : m;
#endif
}

/* hrow[j] = max_{v < kw} xr[j*sw - pw + v] for the interior columns j in [j0, cb) (every
 * tap inside the row of w elements), for sw 1 or 2, VL columns at a time: full loads
 * while they stay inside the row (for sw == 2 they read one element past the last
 * tap), masked loads for the rest; full stores (hrow must have VL - 1 elements of
 * room past cb). Returns the first column not done (j0 for other strides, and where
 * there are no vectors). */
static inline ptrdiff_t pyconv_pool_interior_f32(const float* xr, ptrdiff_t w, float* hrow,
                                                 ptrdiff_t j0, ptrdiff_t cb, ptrdiff_t kw,
                                                 ptrdiff_t sw, ptrdiff_t pw)
{
    ptrdiff_t j = j0;
#if defined(__AVX512F__)
    if (sw == 1 || sw == 2)
        j = pyconv_pool_interior16(xr, w, hrow, j, cb, kw, sw, pw);
#elif defined(__AVX2__)
    if (sw != 1 && sw != 2)
        return j;
    for (; j < cb; j += 8) {
        ptrdiff_t n = cb - j < 8 ? cb - j : 8;
        const float* p = xr + j * sw - pw;
        __m256 m;
        if (sw == 1) {
            __m256i lanes = pyconv_pool_lanes_f32(n);
            m = _mm256_maskload_ps(p, lanes);
            for (ptrdiff_t v = 1; v < kw; v++)
                m = pyconv_pool_vmax_f32(m, _mm256_maskload_ps(p + v, lanes));
        } else if (n == 8 && 2 * (j + 8) - pw + kw - 1 <= w) {
            m = pyconv_pool_even_f32(p);
            for (ptrdiff_t v = 1; v < kw; v++)
                m = pyconv_pool_vmax_f32(m, pyconv_pool_even_f32(p + v));
        } else {
            m = pyconv_pool_even_part_f32(p, n);
            for (ptrdiff_t v = 1; v < kw; v++)
                m = pyconv_pool_vmax_f32(m, pyconv_pool_even_part_f32(p + v, n));
        }
        _mm256_storeu_ps(hrow + j, m);   /* lanes past cb: overwritten or unused */
    }
#endif
    return j < cb ? j : cb;
}

static inline ptrdiff_t pyconv_pool_interior_f64(const double* xr, ptrdiff_t w, double* hrow,
                                                 ptrdiff_t j0, ptrdiff_t cb, ptrdiff_t kw,
                                                 ptrdiff_t sw, ptrdiff_t pw)
{
    ptrdiff_t j = j0;
#if defined(__AVX2__)
    if (sw != 1 && sw != 2)
        return j;
    for (; j < cb; j += 4) {
        ptrdiff_t n = cb - j < 4 ? cb - j : 4;
        const double* p = xr + j * sw - pw;
        __m256d m;
        if (sw == 1) {
            __m256i lanes = pyconv_pool_lanes_f64(n);
            m = _mm256_maskload_pd(p, lanes);
            for (ptrdiff_t v = 1; v < kw; v++)
                m = pyconv_pool_vmax_f64(m, _mm256_maskload_pd(p + v, lanes));
        } else if (n == 4 && 2 * (j + 4) - pw + kw - 1 <= w) {
            m = pyconv_pool_even_f64(p);
            for (ptrdiff_t v = 1; v < kw; v++)
                m = pyconv_pool_vmax_f64(m, pyconv_pool_even_f64(p + v));
        } else {
            m = pyconv_pool_even_part_f64(p, n);
            for (ptrdiff_t v = 1; v < kw; v++)
                m = pyconv_pool_vmax_f64(m, pyconv_pool_even_part_f64(p + v, n));
        }
        _mm256_storeu_pd(hrow + j, m);
    }
#endif
    return j < cb ? j : cb;
}

/* out[j] = the max of rows[0][j], rows[1][j], ..., rows[n - 1][j], in that order, for
 * j < ow, VL at a time (the rows are readable VL - 1 elements past ow); the last
 * vector goes through a buffer: a masked store (VMASKMOVPS) is microcoded on AMD
 * cores, and took a third of the time. Returns the first column not done. */
static inline ptrdiff_t pyconv_pool_rows_f32(float* out, const float* const* rows, ptrdiff_t n,
                                             ptrdiff_t ow)
{
    ptrdiff_t j = 0;
#if defined(__AVX512F__)
    for (; j < ow; j += 16) {
        __m512 m = _mm512_loadu_ps(rows[0] + j);
        for (ptrdiff_t r = 1; r < n; r++)
            m = pyconv_pool_vmax16(m, _mm512_loadu_ps(rows[r] + j));
        /* AVX-512's masked store, unlike AVX2's VMASKMOVPS, is not microcoded on AMD */
        _mm512_mask_storeu_ps(out + j, pyconv_pool_mask16(ow - j), m);
    }
#elif defined(__AVX2__)
    for (; j < ow; j += 8) {
        __m256 m = _mm256_loadu_ps(rows[0] + j);
        for (ptrdiff_t r = 1; r < n; r++)
            m = pyconv_pool_vmax_f32(m, _mm256_loadu_ps(rows[r] + j));
        if (j + 8 <= ow) {
            _mm256_storeu_ps(out + j, m);
        } else {
            float last[8];
            _mm256_storeu_ps(last, m);
            memcpy(out + j, last, (size_t)(ow - j) * sizeof(float));
        }
    }
#endif
    return j < ow ? j : ow;
}

static inline ptrdiff_t pyconv_pool_rows_f64(double* out, const double* const* rows, ptrdiff_t n,
                                             ptrdiff_t ow)
{
    ptrdiff_t j = 0;
#if defined(__AVX2__)
    for (; j < ow; j += 4) {
        __m256d m = _mm256_loadu_pd(rows[0] + j);
        for (ptrdiff_t r = 1; r < n; r++)
            m = pyconv_pool_vmax_f64(m, _mm256_loadu_pd(rows[r] + j));
        if (j + 4 <= ow) {
            _mm256_storeu_pd(out + j, m);
        } else {
            double last[4];
            _mm256_storeu_pd(last, m);
            memcpy(out + j, last, (size_t)(ow - j) * sizeof(double));
        }
    }
#endif
    return j < ow ? j : ow;
}

#endif /* PYCONV_MAXPOOL_H */
