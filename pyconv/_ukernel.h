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
 *      NR output pixels), zero-padded, rows aligned to PYCONV_VBYTES bytes (ldb = NR
 *      where B is tile-major, _igemm.pxi's _pack_b);
 *   C  the output tile, rows ldc apart (NCHW: ldc = OH*OW), any alignment;
 *   accumulate = 0 writes C without reading it (first K block), 1 adds to it;
 *   bias != NULL (last K block): then C = clamp(C + bias[m], lo, hi) in the same
 *      store -- the output pass (bias, fused ReLU/ReLU6) costs no extra sweep.
 *
 * One source for every ISA: the tile is written with GCC/Clang vector extensions
 * and compiled once per kernel set with that set's flags only (-mavx512f, -mavx2
 * -mfma, or none), so the compiler emits zmm/ymm/xmm FMAs (or mul+add) from the same
 * code. The tile shape per set keeps every accumulator in a register:
 *
 *   set      float MR x NR   double MR x NR   accumulators / registers
 *   avx512    8 x 48          8 x 24          24 / 32 zmm
 *   avx2      4 x 24          4 x 12          12 / 16 ymm
 *   generic   4 x 12          4 x  6          12 / 16 xmm (SSE2 baseline)
 *
 * Per k the tile loads NV vectors of B and broadcasts MR values of A for MR*NV FMAs
 * (4 + 3 loads per 12 FMAs on AVX2, within the two load ports' budget).
 *
 * Edge tiles (fewer than MR channels or NR pixels) are computed into a local tile
 * -- 1, 2 or 3 vectors wide, whichever covers the pixels; the packed zero columns
 * and the re-read rows are harmless -- and only the valid part is copied out
 * (pyconv_ukr_*_edge). An image's last tile of at most one vector of pixels (a 7x7
 * image is 24+24+1 pixels) goes to the tail kernel instead, whose vectors run along
 * k (pyconv_tail_*).
 */
#ifndef PYCONV_UKERNEL_H
#define PYCONV_UKERNEL_H

#include <stdint.h>
#include <string.h>
#if defined(__AVX__)
#include <immintrin.h>
#endif

/* MR output channels x NV vectors of pixels. MR divides the channel counts CNNs use
 * (multiples of 8 or 16): a 6-row tile left 64 channels with a 4-row edge panel
 * that cost 8 % of a 1x1 layer. */
#if defined(__AVX512F__)
#define PYCONV_VBYTES 64
#define PYCONV_MR 8
#define PYCONV_NV 3
#define PYCONV_KERNEL_SET "avx512"
#elif defined(__AVX2__) && defined(__FMA__)
#define PYCONV_VBYTES 32
#define PYCONV_MR 4
#define PYCONV_NV 3
#define PYCONV_KERNEL_SET "avx2"
#else
#define PYCONV_VBYTES 16
#define PYCONV_MR 4
#define PYCONV_NV 3
#define PYCONV_KERNEL_SET "generic"
#endif

#define PYCONV_NR_F32 (PYCONV_NV * PYCONV_VBYTES / 4)
#define PYCONV_NR_F64 (PYCONV_NV * PYCONV_VBYTES / 8)
#define PYCONV_ALIGN 64

/* Prefetch into L2 `rows` rows of `bytes` bytes each, `stride` bytes apart: the next
 * panel's weights, which the micro-kernels read in place (rows of the filter, lda
 * apart) -- a few short runs that the hardware prefetchers pick up too late when the
 * weights come from DRAM, as in a whole network at batch 1 (no weights stay in cache
 * from one pass to the next) or for a 512-channel Winograd filter (38 MB). Called once
 * per panel, while the current one is computed (about 1500 cycles). Into L2 (locality
 * 2, prefetcht1), not L1: the current panel and B tile use L1 (t0: 8-17 % slower). */
static inline void pyconv_prefetch_rows(const void *a, int64_t stride, int64_t bytes, int64_t rows)
{
    const char *p = (const char *)a;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t b = 0; b < bytes; b += 64)
            __builtin_prefetch(p + r * stride + b, 0, 2);
}

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

/* The output pass, fused into the last K block's store: clamp(v, lo, hi) lane-wise,
 * with NaN passing through (both comparisons are false for it) -- the semantics of
 * a ReLU/ReLU6 after the convolution. */
typedef int32_t pyconv_vfi __attribute__((vector_size(PYCONV_VBYTES)));
typedef int64_t pyconv_vdi __attribute__((vector_size(PYCONV_VBYTES)));
static inline pyconv_vf pyconv_clamp_float(pyconv_vf v, pyconv_vf lo, pyconv_vf hi)
{
    pyconv_vfi below = v < lo, above = v > hi;
    v = (pyconv_vf)(((pyconv_vfi)lo & below) | ((pyconv_vfi)v & ~below));
    return (pyconv_vf)(((pyconv_vfi)hi & above) | ((pyconv_vfi)v & ~above));
}
static inline pyconv_vd pyconv_clamp_double(pyconv_vd v, pyconv_vd lo, pyconv_vd hi)
{
    pyconv_vdi below = v < lo, above = v > hi;
    v = (pyconv_vd)(((pyconv_vdi)lo & below) | ((pyconv_vdi)v & ~below));
    return (pyconv_vd)(((pyconv_vdi)hi & above) | ((pyconv_vdi)v & ~above));
}

/* Row m of the tile as named variables: arrays of vectors are not reliably kept in
 * registers by GCC (it spilled all 12 accumulators to the stack on every k), named
 * locals always are. PYCONV_ROWS(X) applies X to every row index m < MR. */
#define PYCONV_ROWS4(X) X(0) X(1) X(2) X(3)
#define PYCONV_ROWS6(X) PYCONV_ROWS4(X) X(4) X(5)
#define PYCONV_ROWS8(X) PYCONV_ROWS4(X) X(4) X(5) X(6) X(7)
#define PYCONV_ROWS12(X) PYCONV_ROWS8(X) X(8) X(9) X(10) X(11)
#if PYCONV_MR == 8
#define PYCONV_ROWS PYCONV_ROWS8
#else
#define PYCONV_ROWS PYCONV_ROWS4
#endif

/* The tile body, shared by float and double; it expects in scope: S the scalar,
 * V the vector type, VU its unaligned twin, VL lanes per vector, BCAST, CLAMP, and
 * the arguments kc, A, lda, B, ldb, C, ldc, accumulate, bias, lo, hi, mr. */
#define PYCONV_ACC_DECL(m)                                                         \
    const S *a##m = A + (m < mr ? m : mr - 1) * lda;                               \
    V c##m##_0 = (V){0}, c##m##_1 = (V){0}, c##m##_2 = (V){0};
#define PYCONV_ACC_FMA(m)                                                          \
    { V a = BCAST(a##m + k);                                                       \
      c##m##_0 += a * b0;                                                          \
      if (nv > 1) c##m##_1 += a * b1;                                              \
      if (nv > 2) c##m##_2 += a * b2; }
#define PYCONV_STORE1(m, v)                                                        \
    { VU *p = (VU *)(C + m * ldc + v * VL);                                        \
      V r = accumulate ? *p + c##m##_##v : c##m##_##v;                             \
      if (bias) r = CLAMP(r + bm, lov, hiv);                                       \
      *p = r; }
#define PYCONV_ACC_STORE(m)                                                        \
    { V bm = bias ? (V){0} + bias[m] : (V){0};                                     \
      PYCONV_STORE1(m, 0)                                                          \
      if (nv > 1) PYCONV_STORE1(m, 1)                                              \
      if (nv > 2) PYCONV_STORE1(m, 2) }
/* B's vectors: packed ones are aligned, but a 1x1 layer's B may also be the input read
 * in place (_igemm.pxi, _in_place_b), at any alignment -- so with AVX, whose unaligned
 * loads cost what aligned ones do, every B load is unaligned; the SSE2 set, whose
 * arithmetic takes only aligned memory operands, keeps aligned loads and always packs. */
#if PYCONV_VBYTES >= 32
#define PYCONV_LOADB(p) (*(const VU *)(p))
#else
#define PYCONV_LOADB(p) (*(const V *)(p))
#endif
/* KUNROLL, in scope like BCAST: the k loop's unrolling. AVX2's float32 tiles unroll
 * it by 2 (the loop's pointer and counter updates are 4 of its 23 instructions):
 * benchmarks/ab.py --base HEAD --set avx2 (Zen 3, 2 threads) 0.90-1.01 the time on
 * ResNet's 1x1, 3x3 and 7x7 layers at batch 1 and 8. Rolled: float64 (--float64
 * 0.99-1.03), the narrow tiles (--kernel winograd 1.03 at 256@14x14 unrolled) and
 * the other sets (not measured). */
#if PYCONV_VBYTES == 32
#define PYCONV_K_UNROLL_F32 _Pragma("GCC unroll 2")
#else
#define PYCONV_K_UNROLL_F32
#endif
#define PYCONV_UKR_BODY_ROWS(ROWS)                                                 \
    ROWS(PYCONV_ACC_DECL)                                                          \
    KUNROLL                                                                        \
    for (int64_t k = 0; k < kc; k++) {                                             \
        const S *bk = B + k * ldb;                                                 \
        V b0 = PYCONV_LOADB(bk), b1 = b0, b2 = b0;                                 \
        if (nv > 1) b1 = PYCONV_LOADB(bk + VL);                                    \
        if (nv > 2) b2 = PYCONV_LOADB(bk + 2 * VL);                                \
        ROWS(PYCONV_ACC_FMA)                                                       \
    }                                                                              \
    V lov = (V){0} + lo, hiv = (V){0} + hi;                                        \
    ROWS(PYCONV_ACC_STORE)
#define PYCONV_UKR_BODY PYCONV_UKR_BODY_ROWS(PYCONV_ROWS)

/* The tile, C (+)= A * B on MR rows x nv vectors (nv = 3: the full NR); mr < MR
 * and nv < 3 only when called by the edge variant, into its local tile. nv is a
 * constant at every call, so each call site compiles to its own unrolled loop --
 * forced: left to itself, GCC once compiled a single out-of-line copy with nv and mr
 * as run-time values, tested on every k (a tenth of a 3x3 layer's time). */
#define PYCONV_ALWAYS_INLINE static inline __attribute__((always_inline))
PYCONV_ALWAYS_INLINE void pyconv_ukr_f32_rows(int64_t kc, const float *restrict A, int64_t lda,
                                              const float *restrict B, int64_t ldb,
                                              float *restrict C, int64_t ldc, int accumulate,
                                              const float *bias, float lo, float hi, int64_t mr,
                                              const int nv)
{
    typedef float S;
    typedef pyconv_vf V;
    typedef pyconv_vfu VU;
    enum { VL = PYCONV_VBYTES / 4 };
#define BCAST PYCONV_BCAST_F
#define CLAMP pyconv_clamp_float
#define KUNROLL PYCONV_K_UNROLL_F32
    PYCONV_UKR_BODY
#undef KUNROLL
#undef CLAMP
#undef BCAST
}

PYCONV_ALWAYS_INLINE void pyconv_ukr_f64_rows(int64_t kc, const double *restrict A, int64_t lda,
                                              const double *restrict B, int64_t ldb,
                                              double *restrict C, int64_t ldc, int accumulate,
                                              const double *bias, double lo, double hi, int64_t mr,
                                              const int nv)
{
    typedef double S;
    typedef pyconv_vd V;
    typedef pyconv_vdu VU;
    enum { VL = PYCONV_VBYTES / 8 };
#define BCAST PYCONV_BCAST_D
#define CLAMP pyconv_clamp_double
#define KUNROLL
    PYCONV_UKR_BODY
#undef KUNROLL
#undef CLAMP
#undef BCAST
}

static inline void pyconv_ukr_f32(int64_t kc, const float *A, int64_t lda, const float *B,
                                  int64_t ldb, float *C, int64_t ldc, int accumulate,
                                  const float *bias, float lo, float hi)
{
    pyconv_ukr_f32_rows(kc, A, lda, B, ldb, C, ldc, accumulate, bias, lo, hi, PYCONV_MR, 3);
}

static inline void pyconv_ukr_f64(int64_t kc, const double *A, int64_t lda, const double *B,
                                  int64_t ldb, double *C, int64_t ldc, int accumulate,
                                  const double *bias, double lo, double hi)
{
    pyconv_ukr_f64_rows(kc, A, lda, B, ldb, C, ldc, accumulate, bias, lo, hi, PYCONV_MR, 3);
}

/* Narrow tiles, where there are 16 vector registers (MR = 4): 6 rows x 2 vectors and
 * 12 rows x 1 vector. C (+)= A * B as pyconv_ukr_f32 computes it, without bias, for a
 * B of just two vectors of columns (Winograd's 16 tiles of a 14x14 image, or of a batch
 * of 7x7 ones), or one (the 8 tiles left of a block of 32). The MR x 2 tile has 8
 * accumulators -- as many FMAs as the two pipes hold in flight, so every late
 * broadcast stalls them (it ran 63 % of a 256@14x14 F(4x4) layer) -- MR x 1 only 4;
 * these have 12. Each sum is the full tile's, bitwise: the same products in the same
 * order. PYCONV_WIDE_MR2 / PYCONV_WIDE_MR1: their rows, 0 where absent. AVX-512 has
 * none: its 8 x 1-vector edge tile already keeps the pipes busy -- 12 x 2 with 24 x 1
 * (or 16 x 1) ran 1.04-1.08 the time at 256@14x14 b1 (Intel, in-process A/B). */
#define PYCONV_UKR_NARROW(NAME, ROWS, MR_, NV_)                                     \
    static inline void NAME(int64_t kc, const float *restrict A, int64_t lda,       \
                            const float *restrict B, int64_t ldb, float *restrict C, \
                            int64_t ldc, int accumulate)                           \
    {                                                                              \
        typedef float S;                                                           \
        typedef pyconv_vf V;                                                       \
        typedef pyconv_vfu VU;                                                     \
        enum { VL = PYCONV_VBYTES / 4 };                                           \
        const int nv = NV_;                                                        \
        const int64_t mr = MR_;                                                    \
        const float *bias = 0;                                                     \
        const float lo = 0, hi = 0;                                                \
        PYCONV_UKR_BODY_ROWS(ROWS)                                                 \
    }
#if PYCONV_MR == 4
#define PYCONV_WIDE_MR2 6
#define PYCONV_WIDE_MR1 12
#define BCAST PYCONV_BCAST_F
#define CLAMP pyconv_clamp_float
#define KUNROLL
PYCONV_UKR_NARROW(pyconv_ukr_f32_6x2, PYCONV_ROWS6, 6, 2)
PYCONV_UKR_NARROW(pyconv_ukr_f32_12x1, PYCONV_ROWS12, 12, 1)
#undef KUNROLL
#undef CLAMP
#undef BCAST
#else
#define PYCONV_WIDE_MR2 0
#define PYCONV_WIDE_MR1 0
#endif

/* The narrow tile of `rows` rows (PYCONV_WIDE_MR2: 2 vectors, PYCONV_WIDE_MR1: 1);
 * never called where both are 0. */
static inline void pyconv_ukr_f32_narrow(int64_t rows, int64_t kc, const float *A, int64_t lda,
                                         const float *B, int64_t ldb, float *C, int64_t ldc,
                                         int accumulate)
{
#if PYCONV_MR == 4
    if (rows == PYCONV_WIDE_MR2)
        pyconv_ukr_f32_6x2(kc, A, lda, B, ldb, C, ldc, accumulate);
    else
        pyconv_ukr_f32_12x1(kc, A, lda, B, ldb, C, ldc, accumulate);
#else
    (void)rows; (void)kc; (void)A; (void)lda; (void)B; (void)ldb; (void)C; (void)ldc;
    (void)accumulate;
#endif
}

/* Edge tile: only the first mr rows and nr columns of C exist. The same arithmetic
 * as the full tile, in the same order: C + sum, + bias, clamp. With every row and a
 * whole number of vectors (the last 16 of a 28x28 image's pixels; Winograd's tile
 * counts, always rounded to vectors: 16 tiles at 14x14) the tile stores straight
 * into C; otherwise into a local tile, whose valid part is copied out. */
#define PYCONV_UKR_EDGE(T, NR, ROWS)                                               \
    T tile[PYCONV_MR * NR] __attribute__((aligned(PYCONV_ALIGN)));                 \
    const int64_t vl = PYCONV_VBYTES / sizeof(T);                                  \
    if (mr == PYCONV_MR && nr % vl == 0) {                                         \
        if (nr == vl)                                                              \
            ROWS(kc, A, lda, B, ldb, C, ldc, accumulate, bias, lo, hi, mr, 1);     \
        else if (nr == 2 * vl)                                                     \
            ROWS(kc, A, lda, B, ldb, C, ldc, accumulate, bias, lo, hi, mr, 2);     \
        else                                                                       \
            ROWS(kc, A, lda, B, ldb, C, ldc, accumulate, bias, lo, hi, mr, 3);     \
        return;                                                                    \
    }                                                                              \
    if (nr <= vl)          /* a narrow tile: 1 or 2 vectors wide, not 3 */         \
        ROWS(kc, A, lda, B, ldb, tile, NR, 0, (const T *)0, lo, hi, mr, 1);        \
    else if (nr <= 2 * vl)                                                         \
        ROWS(kc, A, lda, B, ldb, tile, NR, 0, (const T *)0, lo, hi, mr, 2);        \
    else                                                                           \
        ROWS(kc, A, lda, B, ldb, tile, NR, 0, (const T *)0, lo, hi, mr, 3);        \
    for (int64_t m = 0; m < mr; m++)                                               \
        for (int64_t j = 0; j < nr; j++) {                                         \
            T r = accumulate ? C[m * ldc + j] + tile[m * NR + j] : tile[m * NR + j]; \
            if (bias) {                                                            \
                r = r + bias[m];                                                   \
                r = r < lo ? lo : r;                                               \
                r = r > hi ? hi : r;                                               \
            }                                                                      \
            C[m * ldc + j] = r;                                                    \
        }

static inline void pyconv_ukr_f32_edge(int64_t kc, const float *A, int64_t lda,
                                       const float *B, int64_t ldb, float *C, int64_t ldc,
                                       int accumulate, const float *bias, float lo, float hi,
                                       int64_t mr, int64_t nr)
{
    PYCONV_UKR_EDGE(float, PYCONV_NR_F32, pyconv_ukr_f32_rows)
}

static inline void pyconv_ukr_f64_edge(int64_t kc, const double *A, int64_t lda,
                                       const double *B, int64_t ldb, double *C, int64_t ldc,
                                       int accumulate, const double *bias, double lo, double hi,
                                       int64_t mr, int64_t nr)
{
    PYCONV_UKR_EDGE(double, PYCONV_NR_F64, pyconv_ukr_f64_rows)
}

/* Tail tile: the last nt <= VL pixels of an image (a 7x7 image is 24 + 24 + 1
 * pixels, a 14x14 one 8 x 24 + 4), where the edge variant would spend a whole
 * vector and MR broadcasts per k on one to four useful lanes (a 1-pixel edge tile
 * took a sixth of a 2048 -> 512 1x1 layer at 7x7). Here the vectors run along k:
 *
 *     C[m*ldc + j] (+)= sum_{k < kc} A[m*lda + k] * Bt[j*ldbt + k]     m < mr, j < nt
 *
 *   Bt  the tail's im2col columns transposed (k contiguous), zero from kc up to the
 *       next multiple of VL; A, C, accumulate, bias, lo, hi as in the main contract.
 *
 * Per VL values of k: MR loads of A and up to 3 of Bt for up to 3 MR FMAs; each sum
 * is reduced across its lanes once, in a fixed order. The sums are ordered unlike a
 * tile's (k in sequence), so which pixels form a tail must not depend on the thread
 * count: it is always an image's (or a folded batch's) last tile. */
#define PYCONV_TAIL_DECL(m)                                                        \
    const S *a##m = A + (m < mr ? m : mr - 1) * lda;                               \
    V t##m##_0 = (V){0}, t##m##_1 = (V){0}, t##m##_2 = (V){0};
#define PYCONV_TAIL_FMA(m, n)   /* n: how many values of A's row to read (<= VL) */ \
    { V a = (V){0};                                                                \
      memcpy(&a, a##m + k, (size_t)(n) * sizeof(S));                               \
      t##m##_0 += a * b0;                                                          \
      if (nj > 1) t##m##_1 += a * b1;                                              \
      if (nj > 2) t##m##_2 += a * b2; }
#define PYCONV_TAIL_FMA_FULL(m) PYCONV_TAIL_FMA(m, VL)
#define PYCONV_TAIL_FMA_REST(m) PYCONV_TAIL_FMA(m, kc - k)
#define PYCONV_TAIL_LOAD_B                                                         \
    V b0 = *(const V *)(Bt + k), b1 = b0, b2 = b0;                                 \
    if (nj > 1) b1 = *(const V *)(Bt + ldbt + k);                                  \
    if (nj > 2) b2 = *(const V *)(Bt + 2 * ldbt + k);
#define PYCONV_TAIL_STORE1(m, j)                                                   \
    if (m < mr) {                                                                  \
        S r = PYCONV_HSUM(t##m##_##j);                                             \
        S *p = C + m * ldc + j;                                                    \
        if (accumulate) r = *p + r;                                                \
        if (bias) {                                                                \
            r = r + bias[m];                                                       \
            r = r < lo ? lo : r;                                                   \
            r = r > hi ? hi : r;                                                   \
        }                                                                          \
        *p = r;                                                                    \
    }
#define PYCONV_TAIL_STORE(m)                                                       \
    PYCONV_TAIL_STORE1(m, 0)                                                       \
    if (nj > 1) PYCONV_TAIL_STORE1(m, 1)                                           \
    if (nj > 2) PYCONV_TAIL_STORE1(m, 2)
#define PYCONV_TAIL_BODY                                                           \
    PYCONV_ROWS(PYCONV_TAIL_DECL)                                                  \
    int64_t k = 0;                                                                 \
    for (; k + VL <= kc; k += VL) {                                                \
        PYCONV_TAIL_LOAD_B                                                         \
        PYCONV_ROWS(PYCONV_TAIL_FMA_FULL)                                          \
    }                                                                              \
    if (k < kc) {   /* the last kc % VL values: A's rows end there, Bt is padded */ \
        PYCONV_TAIL_LOAD_B                                                         \
        PYCONV_ROWS(PYCONV_TAIL_FMA_REST)                                          \
    }                                                                              \
    PYCONV_ROWS(PYCONV_TAIL_STORE)

/* The lanes of v summed pairwise, halving (the same order on every call). */
#define PYCONV_HSUM_DEF(NAME, S, V)                                                \
    static inline S NAME(V v)                                                      \
    {                                                                              \
        enum { VL = sizeof(V) / sizeof(S) };                                       \
        S s[VL];                                                                   \
        memcpy(s, &v, sizeof(v));                                                  \
        for (int w = VL / 2; w >= 1; w /= 2)                                       \
            for (int l = 0; l < w; l++)                                            \
                s[l] += s[l + w];                                                  \
        return s[0];                                                               \
    }
PYCONV_HSUM_DEF(pyconv_hsum_float, float, pyconv_vf)
PYCONV_HSUM_DEF(pyconv_hsum_double, double, pyconv_vd)
#define PYCONV_HSUM(v) _Generic((v), pyconv_vf: pyconv_hsum_float, default: pyconv_hsum_double)(v)

/* nj (1..3, a constant at each call) pixels of the tail, for scalar S_, vector V_. */
#define PYCONV_TAIL_COLS_DEF(NAME, S_, V_)                                         \
    static inline void NAME(int64_t kc, const S_ *restrict A, int64_t lda,          \
                            const S_ *restrict Bt, int64_t ldbt, S_ *restrict C,    \
                            int64_t ldc, int accumulate, const S_ *bias, S_ lo,     \
                            S_ hi, int64_t mr, const int nj)                       \
    {                                                                              \
        typedef S_ S;                                                              \
        typedef V_ V;                                                              \
        enum { VL = sizeof(V) / sizeof(S) };                                       \
        PYCONV_TAIL_BODY                                                           \
    }
PYCONV_TAIL_COLS_DEF(pyconv_tail_f32_cols, float, pyconv_vf)
PYCONV_TAIL_COLS_DEF(pyconv_tail_f64_cols, double, pyconv_vd)

/* The tail tile, 3 pixels at a time (MR x 3 accumulators fit the registers). */
#define PYCONV_TAIL(COLS)                                                          \
    for (int64_t j = 0; j < nt; j += 3) {                                          \
        if (nt - j == 1)                                                           \
            COLS(kc, A, lda, Bt + j * ldbt, ldbt, C + j, ldc, accumulate, bias, lo, hi, mr, 1); \
        else if (nt - j == 2)                                                      \
            COLS(kc, A, lda, Bt + j * ldbt, ldbt, C + j, ldc, accumulate, bias, lo, hi, mr, 2); \
        else                                                                       \
            COLS(kc, A, lda, Bt + j * ldbt, ldbt, C + j, ldc, accumulate, bias, lo, hi, mr, 3); \
    }

#if defined(__AVX512F__)
/* float32 on AVX-512: the tail in blocks of 4 rows x up to 4 pixels -- the same sums
 * in the same order as pyconv_tail_f32_cols, so the same bits. That one (MR rows x 3
 * pixels per pass) spent half its time on the lane sums, a store and 15 scalar adds
 * each, and read the panel's A twice for a 14x14 image's 4 pixels (3 + 1): 8 % of a
 * 256 -> 1024 1x1 layer at 14x14 for 2 % of its products. Here a block's 16 sums are
 * reduced together by shuffles -- 4 levels halving the lanes, l + 8, l + 4, l + 2,
 * l + 1 as in HSUM -- into one 4-pixel vector per row, and each row of A is read
 * once for all 4 pixels. benchmarks/ab.py --set avx512 --threads 1 (Intel): 1x1
 * 256 -> 1024 and 1024 -> 256 at 14x14 0.94-0.95 the time, 3x3 256@14 0.95, 7x7
 * layers (1 pixel) 0.98. On AVX2 (8 lanes: cheaper sums) the same code was 1.00-1.01,
 * so the other sets keep the generic tail. */
#define PYCONV_T4_DECL(m)                                                          \
    const float *a##m = A + (m < mr ? m : mr - 1) * lda;                           \
    pyconv_vf t##m##_0 = (pyconv_vf){0}, t##m##_1 = t##m##_0, t##m##_2 = t##m##_0, \
              t##m##_3 = t##m##_0;
#define PYCONV_T4_FMA(m, n)                                                        \
    { pyconv_vf a = (pyconv_vf){0};                                                \
      memcpy(&a, a##m + k, (size_t)(n) * sizeof(float));                           \
      t##m##_0 += a * b0;                                                          \
      if (nj > 1) t##m##_1 += a * b1;                                              \
      if (nj > 2) t##m##_2 += a * b2;                                              \
      if (nj > 3) t##m##_3 += a * b3; }
#define PYCONV_T4_FMA_FULL(m) PYCONV_T4_FMA(m, VL)
#define PYCONV_T4_FMA_REST(m) PYCONV_T4_FMA(m, kc - k)
#define PYCONV_T4_LOAD_B                                                           \
    pyconv_vf b0 = *(const pyconv_vf *)(Bt + k), b1 = b0, b2 = b0, b3 = b0;        \
    if (nj > 1) b1 = *(const pyconv_vf *)(Bt + ldbt + k);                          \
    if (nj > 2) b2 = *(const pyconv_vf *)(Bt + 2 * ldbt + k);                      \
    if (nj > 3) b3 = *(const pyconv_vf *)(Bt + 3 * ldbt + k);

/* Rows m0, m1 of pixel j: lane l + lane l + 8, row m0's 8 then row m1's. */
#define PYCONV_T4_HALF(m0, m1, j)                                                  \
    _mm512_add_ps(_mm512_shuffle_f32x4((__m512)t##m0##_##j, (__m512)t##m1##_##j, 0x44), \
                  _mm512_shuffle_f32x4((__m512)t##m0##_##j, (__m512)t##m1##_##j, 0xEE))
/* Pixel j's rows 0-3, each reduced to 4 lanes (+ l + 4): 128-bit block m = row m. */
#define PYCONV_T4_QUARTER(j)                                                       \
    __m512 q##j;                                                                   \
    { __m512 u01 = PYCONV_T4_HALF(0, 1, j), u23 = PYCONV_T4_HALF(2, 3, j);          \
      q##j = _mm512_add_ps(_mm512_shuffle_f32x4(u01, u23, 0x88),                   \
                           _mm512_shuffle_f32x4(u01, u23, 0xDD)); }

PYCONV_ALWAYS_INLINE void pyconv_tail4_f32(int64_t kc, const float *restrict A, int64_t lda,
                                           const float *restrict Bt, int64_t ldbt,
                                           float *restrict C, int64_t ldc, int accumulate,
                                           const float *bias, float lo, float hi, int64_t mr,
                                           const int nj)
{
    enum { VL = PYCONV_VBYTES / 4 };
    PYCONV_ROWS4(PYCONV_T4_DECL)
    int64_t k = 0;
    for (; k + VL <= kc; k += VL) {
        PYCONV_T4_LOAD_B
        PYCONV_ROWS4(PYCONV_T4_FMA_FULL)
    }
    if (k < kc) {   /* the last kc % VL values: A's rows end there, Bt is padded */
        PYCONV_T4_LOAD_B
        PYCONV_ROWS4(PYCONV_T4_FMA_REST)
    }
    /* The sums: s[m][j] for row m, pixel j (pixels past nj: zero vectors, unused). */
    float s[4][4];
    PYCONV_T4_QUARTER(0) PYCONV_T4_QUARTER(1) PYCONV_T4_QUARTER(2) PYCONV_T4_QUARTER(3)
    /* + l + 2 (pixels 0, 1 and 2, 3 side by side), then + l + 1: block m = row m's
     * sums for pixels 0-3. */
    __m512 w01 = _mm512_add_ps(_mm512_shuffle_ps(q0, q1, 0x44), _mm512_shuffle_ps(q0, q1, 0xEE));
    __m512 w23 = _mm512_add_ps(_mm512_shuffle_ps(q2, q3, 0x44), _mm512_shuffle_ps(q2, q3, 0xEE));
    _mm512_storeu_ps(&s[0][0], _mm512_add_ps(_mm512_shuffle_ps(w01, w23, 0x88),
                                             _mm512_shuffle_ps(w01, w23, 0xDD)));
    for (int m = 0; m < 4 && m < mr; m++)
        for (int j = 0; j < nj; j++) {
            float r = s[m][j];
            float *p = C + m * ldc + j;
            if (accumulate) r = *p + r;
            if (bias) {
                r = r + bias[m];
                r = r < lo ? lo : r;
                r = r > hi ? hi : r;
            }
            *p = r;
        }
}

static inline void pyconv_tail_f32(int64_t kc, const float *A, int64_t lda, const float *Bt,
                                   int64_t ldbt, float *C, int64_t ldc, int accumulate,
                                   const float *bias, float lo, float hi, int64_t mr, int64_t nt)
{
    for (int64_t j = 0; j < nt; j += 4)
        for (int64_t m = 0; m < mr; m += 4) {
            const float *a = A + m * lda, *bt = Bt + j * ldbt, *b = bias ? bias + m : NULL;
            float *c = C + m * ldc + j;
            int64_t rows = mr - m < 4 ? mr - m : 4;
            switch (nt - j) {
            case 1: pyconv_tail4_f32(kc, a, lda, bt, ldbt, c, ldc, accumulate, b, lo, hi, rows, 1); break;
            case 2: pyconv_tail4_f32(kc, a, lda, bt, ldbt, c, ldc, accumulate, b, lo, hi, rows, 2); break;
            case 3: pyconv_tail4_f32(kc, a, lda, bt, ldbt, c, ldc, accumulate, b, lo, hi, rows, 3); break;
            default: pyconv_tail4_f32(kc, a, lda, bt, ldbt, c, ldc, accumulate, b, lo, hi, rows, 4);
            }
        }
}
#else
static inline void pyconv_tail_f32(int64_t kc, const float *A, int64_t lda, const float *Bt,
                                   int64_t ldbt, float *C, int64_t ldc, int accumulate,
                                   const float *bias, float lo, float hi, int64_t mr, int64_t nt)
{
    PYCONV_TAIL(pyconv_tail_f32_cols)
}
#endif

static inline void pyconv_tail_f64(int64_t kc, const double *A, int64_t lda, const double *Bt,
                                   int64_t ldbt, double *C, int64_t ldc, int accumulate,
                                   const double *bias, double lo, double hi, int64_t mr, int64_t nt)
{
    PYCONV_TAIL(pyconv_tail_f64_cols)
}

/* Packing helper: dst[t] = src[t * 2] for t < n -- the input columns a stride-2
 * convolution reads. Two vector loads and one even-lane shuffle per vector of
 * output (the scalar loop it replaces took a fifth of a stride-2 7x7 layer). The
 * vector loop stops one vector early, so nothing past src[2n - 2] is ever read. */
#if PYCONV_VBYTES == 64
#define PYCONV_EVEN_F 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30
#define PYCONV_EVEN_D 0, 2, 4, 6, 8, 10, 12, 14
#elif PYCONV_VBYTES == 32
#define PYCONV_EVEN_F 0, 2, 4, 6, 8, 10, 12, 14
#define PYCONV_EVEN_D 0, 2, 4, 6
#else
#define PYCONV_EVEN_F 0, 2, 4, 6
#define PYCONV_EVEN_D 0, 2
#endif
#if defined(__clang__)
#define PYCONV_EVEN(a, b, VI, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define PYCONV_EVEN(a, b, VI, ...) __builtin_shuffle(a, b, (VI){__VA_ARGS__})
#endif

#define PYCONV_GATHER2(V, VU, VI, ...)                                             \
    const int64_t vl = PYCONV_VBYTES / sizeof(*dst);                               \
    int64_t t = 0;                                                                 \
    for (; t + vl < n; t += vl) {                                                  \
        V a = *(const VU *)(src + 2 * t), b = *(const VU *)(src + 2 * t + vl);     \
        *(VU *)(dst + t) = PYCONV_EVEN(a, b, VI, __VA_ARGS__);                        \
    }                                                                              \
    for (; t < n; t++) dst[t] = src[2 * t];

static inline void pyconv_gather2_f32(float *restrict dst, const float *restrict src, int64_t n)
{
    PYCONV_GATHER2(pyconv_vf, pyconv_vfu, pyconv_vfi, PYCONV_EVEN_F)
}

static inline void pyconv_gather2_f64(double *restrict dst, const double *restrict src, int64_t n)
{
    PYCONV_GATHER2(pyconv_vd, pyconv_vdu, pyconv_vdi, PYCONV_EVEN_D)
}

/* One packed run of a stride-2 tap, padding included:
 *
 *     dst[t] = row[i0 + 2t]  where 0 <= i0 + 2t < wd,  else 0        t < n
 *
 * (row: one input row of wd values; i0 = 2 * ow + v * dw - pw for the run's first
 * output column ow and tap column v). A 3x3/2 layer's runs are an output row, 7 or 14
 * columns, one per tap and row: in pieces -- a memset call for a padded first column,
 * the in-range columns, another for the last -- the calls cost more than the copy
 * (perf, one core, Zen 4: _igemm_folded's packing 19 % of a 3x3/2 256@28 b8 layer's samples,
 * the micro-kernel 53 %). */
#define PYCONV_GATHER2Z(GATHER2)                                                   \
    int64_t a = i0 < 0 ? (1 - i0) / 2 : 0;      /* first t that reads the row */    \
    int64_t e = wd > i0 ? (wd - i0 + 1) / 2 : 0;  /* first t past its end */        \
    if (a > n) a = n;                                                              \
    if (e > n) e = n;                                                              \
    if (e < a) e = a;                                                              \
    for (int64_t t = 0; t < a; t++) dst[t] = 0;                                    \
    if (e > a) GATHER2(dst + a, row + i0 + 2 * a, e - a);                          \
    for (int64_t t = e; t < n; t++) dst[t] = 0;

#if defined(__AVX512F__)
/* AVX-512 float32: 16 columns per step from two masked loads of the 32 values they
 * span -- the masks leave out what lies outside the row, which reads as 0 -- and one
 * even-lane permute; the first step's permute is shifted where the run starts in the
 * padding (i0 < 0), and the last step's store is masked. No scalar edges, no calls;
 * the steps that lie inside the row take plain loads (the stem's 112-column runs). */
static inline void pyconv_gather2z_f32(float *restrict dst, const float *restrict row,
                                       int64_t i0, int64_t n, int64_t wd)
{
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    int64_t t = 0;
    if (i0 >= 0)    /* whole steps inside the row: plain loads */
        for (; t + 16 <= n && i0 + 2 * t + 32 <= wd; t += 16)
            _mm512_storeu_ps(dst + t, _mm512_permutex2var_ps(_mm512_loadu_ps(row + i0 + 2 * t), even,
                                                             _mm512_loadu_ps(row + i0 + 2 * t + 16)));
    for (; t < n; t += 16) {
        int64_t base = i0 + 2 * t;              /* the input column of output t */
        int64_t at = base > 0 ? base : 0;       /* the first load's column */
        int64_t s = at - base;                  /* lanes of padding before it: 0 but at t = 0 */
        int64_t avail = wd - at;                /* the row's columns from there on */
        avail = avail < 0 ? 0 : avail > 32 ? 32 : avail;
        __mmask16 mlo = (__mmask16)(avail >= 16 ? 0xFFFF : (1u << avail) - 1);
        __mmask16 mhi = (__mmask16)(avail >= 32 ? 0xFFFF : avail > 16 ? (1u << (avail - 16)) - 1 : 0);
        __m512 lo = _mm512_maskz_loadu_ps(mlo, row + at), hi = _mm512_maskz_loadu_ps(mhi, row + at + 16);
        /* output lane j reads lane 2j - s of lo:hi; lanes with 2j < s are padding */
        __mmask16 keep = (__mmask16)(s >= 32 ? 0 : 0xFFFFu << ((s + 1) / 2));
        __m512 v = _mm512_maskz_permutex2var_ps(keep, lo, _mm512_sub_epi32(even, _mm512_set1_epi32((int)(s < 32 ? s : 0))), hi);
        if (n - t >= 16)
            _mm512_storeu_ps(dst + t, v);
        else
            _mm512_mask_storeu_ps(dst + t, (__mmask16)((1u << (n - t)) - 1), v);
    }
}
#else
static inline void pyconv_gather2z_f32(float *restrict dst, const float *restrict row,
                                       int64_t i0, int64_t n, int64_t wd)
{
    PYCONV_GATHER2Z(pyconv_gather2_f32)
}
#endif

static inline void pyconv_gather2z_f64(double *restrict dst, const double *restrict row,
                                       int64_t i0, int64_t n, int64_t wd)
{
    PYCONV_GATHER2Z(pyconv_gather2_f64)
}

#endif
