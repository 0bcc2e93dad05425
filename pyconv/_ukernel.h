/* pyconv micro-kernels: the innermost register-blocked tile of the GEMM family.
 *
 * Contract (one for every ISA; BLIS's micro-kernel contract):
 *
 *     C[m*ldc + j] (+)= sum_{k < kc} A[m*lda + k] * B[k*ldb + j]     m < mr, j < NR
 *
 *   A  the weights in place: row m (output channel m of the panel) lda apart, k
 *      contiguous. No packed copy of the weights is needed: each k broadcasts one
 *      value from each of MR row streams, which the prefetchers follow as well as
 *      a packed panel (packing them cost up to 18 % of a 512-channel 7x7 layer).
 *      Rows m >= mr (the last panel of a layer) re-read row mr - 1; those results
 *      are never stored;
 *   B  packed input columns, rows of ldb values per k (the tile reads NR of them:
 *      NR output pixels), zero-padded, rows aligned to PYCONV_ALIGN bytes;
 *   C  the output tile, rows ldc apart (NCHW: ldc = OH*OW), any alignment;
 *   accumulate = 0 writes C without reading it (first K block), 1 adds to it.
 *
 * One source for every ISA: the tile is written with GCC/Clang vector extensions
 * and compiled once per kernel set with that set's flags only (-mavx512f, -mavx2
 * -mfma, or none), so the compiler emits zmm/ymm/xmm FMAs (or mul+add) from the same
 * code. The tile shape per set keeps every accumulator in a register:
 *
 *   set      float MR x NR   double MR x NR   accumulators / registers
 *   avx512   14 x 32         14 x 16          28 / 32 zmm
 *   avx2      6 x 16          6 x  8          12 / 16 ymm
 *   generic   6 x  8          6 x  4          12 / 16 xmm (SSE2 baseline)
 *
 * Edge tiles (fewer than MR channels or NR pixels) are computed in full into a
 * local tile -- the packed zero columns and the re-read rows are harmless -- and only
 * the valid part is copied out (pyconv_ukr_*_edge).
 */
#ifndef PYCONV_UKERNEL_H
#define PYCONV_UKERNEL_H

#include <stdint.h>
#include <string.h>
#if defined(__AVX__)
#include <immintrin.h>
#endif

#if defined(__AVX512F__)
#define PYCONV_VBYTES 64
#define PYCONV_MR 14
#define PYCONV_KERNEL_SET "avx512"
#elif defined(__AVX2__) && defined(__FMA__)
#define PYCONV_VBYTES 32
#define PYCONV_MR 6
#define PYCONV_KERNEL_SET "avx2"
#else
#define PYCONV_VBYTES 16
#define PYCONV_MR 6
#define PYCONV_KERNEL_SET "generic"
#endif

#define PYCONV_NR_F32 (2 * PYCONV_VBYTES / 4)  /* two vectors per tile row */
#define PYCONV_NR_F64 (2 * PYCONV_VBYTES / 8)
#define PYCONV_ALIGN 64

/* Aligned vectors for packed B; "u" variants for the unaligned output tile. */
typedef float pyconv_vf __attribute__((vector_size(PYCONV_VBYTES)));
typedef double pyconv_vd __attribute__((vector_size(PYCONV_VBYTES)));
typedef float pyconv_vfu __attribute__((vector_size(PYCONV_VBYTES), aligned(4)));
typedef double pyconv_vdu __attribute__((vector_size(PYCONV_VBYTES), aligned(8)));

/* Broadcast one packed A value to a vector. Written so that the compiler emits a
 * broadcast *from memory* (a load-port op): a load plus a register broadcast would
 * occupy an FP pipe that the FMAs need -- measured here as half the FMA rate. */
#if defined(__AVX512F__)
#define PYCONV_BCAST_F(p) ((pyconv_vf)_mm512_set1_ps(*(p)))
#define PYCONV_BCAST_D(p) ((pyconv_vd)_mm512_set1_pd(*(p)))
#elif defined(__AVX__)
#define PYCONV_BCAST_F(p) ((pyconv_vf)_mm256_broadcast_ss(p))
#define PYCONV_BCAST_D(p) ((pyconv_vd)_mm256_broadcast_sd(p))
#else
#define PYCONV_BCAST_F(p) ((pyconv_vf){0} + *(p))
#define PYCONV_BCAST_D(p) ((pyconv_vd){0} + *(p))
#endif

/* Row m of the tile as named variables: arrays of vectors are not reliably kept in
 * registers by GCC (it spilled all 12 accumulators to the stack on every k), named
 * locals always are. PYCONV_ROWS(X) applies X to every row index m < MR. */
#define PYCONV_ROWS6(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define PYCONV_ROWS14(X) PYCONV_ROWS6(X) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13)
#if PYCONV_MR == 14
#define PYCONV_ROWS PYCONV_ROWS14
#else
#define PYCONV_ROWS PYCONV_ROWS6
#endif

/* The tile body, shared by float and double; it expects in scope: S the scalar,
 * V the vector type, VU its unaligned twin, VL lanes per vector, BCAST, and the
 * arguments kc, A, lda, B, ldb, C, ldc, accumulate, mr. */
#define PYCONV_ACC_DECL(m)                                                         \
    const S *a##m = A + (m < mr ? m : mr - 1) * lda;                               \
    V c##m##_0 = (V){0}, c##m##_1 = (V){0};
#define PYCONV_ACC_FMA(m)                                                          \
    { V a = BCAST(a##m + k); c##m##_0 += a * b0; c##m##_1 += a * b1; }
#define PYCONV_ACC_STORE(m)                                                        \
    { VU *p0 = (VU *)(C + m * ldc), *p1 = (VU *)(C + m * ldc + VL);                \
      *p0 = accumulate ? *p0 + c##m##_0 : c##m##_0;                                \
      *p1 = accumulate ? *p1 + c##m##_1 : c##m##_1; }
#define PYCONV_UKR_BODY                                                            \
    PYCONV_ROWS(PYCONV_ACC_DECL)                                                   \
    for (int64_t k = 0; k < kc; k++) {                                             \
        V b0 = *(const V *)(B + k * ldb), b1 = *(const V *)(B + k * ldb + VL);     \
        PYCONV_ROWS(PYCONV_ACC_FMA)                                                \
    }                                                                              \
    PYCONV_ROWS(PYCONV_ACC_STORE)

/* The full tile, C (+)= A * B on MR x NR; mr < MR only when called by the edge
 * variant (into its local tile). */
static inline void pyconv_ukr_f32_rows(int64_t kc, const float *restrict A, int64_t lda,
                                       const float *restrict B, int64_t ldb,
                                       float *restrict C, int64_t ldc, int accumulate,
                                       int64_t mr)
{
    typedef float S;
    typedef pyconv_vf V;
    typedef pyconv_vfu VU;
    enum { VL = PYCONV_VBYTES / 4 };
#define BCAST PYCONV_BCAST_F
    PYCONV_UKR_BODY
#undef BCAST
}

static inline void pyconv_ukr_f64_rows(int64_t kc, const double *restrict A, int64_t lda,
                                       const double *restrict B, int64_t ldb,
                                       double *restrict C, int64_t ldc, int accumulate,
                                       int64_t mr)
{
    typedef double S;
    typedef pyconv_vd V;
    typedef pyconv_vdu VU;
    enum { VL = PYCONV_VBYTES / 8 };
#define BCAST PYCONV_BCAST_D
    PYCONV_UKR_BODY
#undef BCAST
}

static inline void pyconv_ukr_f32(int64_t kc, const float *A, int64_t lda, const float *B,
                                  int64_t ldb, float *C, int64_t ldc, int accumulate)
{
    pyconv_ukr_f32_rows(kc, A, lda, B, ldb, C, ldc, accumulate, PYCONV_MR);
}

static inline void pyconv_ukr_f64(int64_t kc, const double *A, int64_t lda, const double *B,
                                  int64_t ldb, double *C, int64_t ldc, int accumulate)
{
    pyconv_ukr_f64_rows(kc, A, lda, B, ldb, C, ldc, accumulate, PYCONV_MR);
}

/* Edge tile: only the first mr rows and nr columns of C exist. */
#define PYCONV_UKR_EDGE(T, NR, ROWS)                                               \
    T tile[PYCONV_MR * NR] __attribute__((aligned(PYCONV_ALIGN)));                 \
    ROWS(kc, A, lda, B, ldb, tile, NR, 0, mr);                                     \
    for (int64_t m = 0; m < mr; m++)                                               \
        for (int64_t j = 0; j < nr; j++)                                           \
            C[m * ldc + j] = accumulate ? C[m * ldc + j] + tile[m * NR + j]        \
                                        : tile[m * NR + j];

static inline void pyconv_ukr_f32_edge(int64_t kc, const float *A, int64_t lda,
                                       const float *B, int64_t ldb, float *C, int64_t ldc,
                                       int accumulate, int64_t mr, int64_t nr)
{
    PYCONV_UKR_EDGE(float, PYCONV_NR_F32, pyconv_ukr_f32_rows)
}

static inline void pyconv_ukr_f64_edge(int64_t kc, const double *A, int64_t lda,
                                       const double *B, int64_t ldb, double *C, int64_t ldc,
                                       int accumulate, int64_t mr, int64_t nr)
{
    PYCONV_UKR_EDGE(double, PYCONV_NR_F64, pyconv_ukr_f64_rows)
}

#endif
