# Matrix-vector products for a few input rows: functional.linear's path at batch <= 8.
#
# Included by each kernel-set module after _igemm.pxi (vector types of _ukernel.h), so
# it is compiled once per ISA.
#
# y[r, o] = clamp(bias[o] + sum_k w[o, k] * x[r, k], lo, hi),  r < R <= 8.
#
# At batch 1 a linear layer is a matrix-vector product: each weight is used once, so
# the layer streams its weight matrix from memory and nothing else matters (VGG's
# first classifier layer: 411 MB). The GEMM kernel would pad the one input row to a
# micro-tile of NR = 24 pixels and run at a third of the memory's speed (32.7 ms
# where a streaming product takes 12 here). So: each output o reads its weight row
# once, contiguous, for up to GEMV_ROWS input rows at a time (their rows stay in L2),
# in vectors with 2 accumulators per input row; the sums are reduced in one fixed
# order -- bitwise the same for any thread count (threads take blocks of outputs).

cdef extern from *:
    """
    #include "_ukernel.h"

    /* Horizontal sum of a vector, lanes in a fixed order. */
    #define PYCONV_HSUM(T, v, n, out) do { T s_ = 0; for (int l_ = 0; l_ < (n); l_++) s_ += (v)[l_]; (out) = s_; } while (0)

    /* One output o for nr (<= 4, a constant after inlining) rows of x, 2 vector
     * accumulators per row; the tail (k % (2 VL)) in scalars. */
    #define PYCONV_GEMV_BODY(T, VT, VL)                                                 \\
        VT acc0[4], acc1[4];                                                            \\
        T tail[4];                                                                      \\
        for (int r = 0; r < nr; r++) { acc0[r] = (VT){0}; acc1[r] = (VT){0}; tail[r] = 0; } \\
        int64_t k = 0;                                                                  \\
        for (; k + 2 * VL <= kk; k += 2 * VL) {                                         \\
            VT w0, w1;                                                                  \\
            __builtin_prefetch(wo + k + 512 / sizeof(T) * 8);                           \\
            memcpy(&w0, wo + k, sizeof(VT));                                            \\
            memcpy(&w1, wo + k + VL, sizeof(VT));                                       \\
            for (int r = 0; r < nr; r++) {                                              \\
                VT x0, x1;                                                              \\
                memcpy(&x0, x + r * ldx + k, sizeof(VT));                               \\
                memcpy(&x1, x + r * ldx + k + VL, sizeof(VT));                          \\
                acc0[r] += w0 * x0;                                                     \\
                acc1[r] += w1 * x1;                                                     \\
            }                                                                           \\
        }                                                                               \\
        for (; k < kk; k++)                                                             \\
            for (int r = 0; r < nr; r++)                                                \\
                tail[r] += wo[k] * x[r * ldx + k];                                      \\
        for (int r = 0; r < nr; r++) {                                                  \\
            T s;                                                                        \\
            VT a = acc0[r] + acc1[r];                                                   \\
            PYCONV_HSUM(T, a, VL, s);                                                   \\
            s = (s + tail[r]) + b;                                                      \\
            s = s < lo ? lo : s;          /* NaN passes: comparisons with it are false */ \\
            y[r * ldy] = s > hi ? hi : s;                                               \\
        }

    static inline __attribute__((always_inline)) void pyconv_gemv_f32_one(
        const float *x, int64_t ldx, int nr, int64_t kk, const float *wo, float b,
        float lo, float hi, float *y, int64_t ldy)
    {
        enum { VL = PYCONV_VBYTES / 4 };
        PYCONV_GEMV_BODY(float, pyconv_vf, VL)
    }

    static inline __attribute__((always_inline)) void pyconv_gemv_f64_one(
        const double *x, int64_t ldx, int nr, int64_t kk, const double *wo, double b,
        double lo, double hi, double *y, int64_t ldy)
    {
        enum { VL = PYCONV_VBYTES / 8 };
        PYCONV_GEMV_BODY(double, pyconv_vd, VL)
    }

    /* Outputs [o0, o1) for rows [0, rows) of x (rows ldx apart), y rows ldy apart:
     * rows in groups of 4, each group streaming the weight rows once. */
    #define PYCONV_GEMV_RANGE(NAME, ONE, T)                                             \\
    static void NAME(const T *x, int64_t rows, int64_t ldx, int64_t kk, const T *w,     \\
                     const T *bias, T lo, T hi, T *y, int64_t ldy, int64_t o0, int64_t o1) \\
    {                                                                                   \\
        for (int64_t r0 = 0; r0 < rows; r0 += 4) {                                      \\
            int nr = rows - r0 < 4 ? (int)(rows - r0) : 4;                              \\
            const T *xr = x + r0 * ldx;                                                 \\
            T *yr = y + r0 * ldy;                                                       \\
            for (int64_t o = o0; o < o1; o++) {                                         \\
                const T *wo = w + o * kk;                                               \\
                switch (nr) {   /* a constant row count for each inlined copy */        \\
                case 1: ONE(xr, ldx, 1, kk, wo, bias[o], lo, hi, yr + o, ldy); break;   \\
                case 2: ONE(xr, ldx, 2, kk, wo, bias[o], lo, hi, yr + o, ldy); break;   \\
                case 3: ONE(xr, ldx, 3, kk, wo, bias[o], lo, hi, yr + o, ldy); break;   \\
                default: ONE(xr, ldx, 4, kk, wo, bias[o], lo, hi, yr + o, ldy); break;  \\
                }                                                                       \\
            }                                                                           \\
        }                                                                               \\
    }
    PYCONV_GEMV_RANGE(pyconv_gemv_f32, pyconv_gemv_f32_one, float)
    PYCONV_GEMV_RANGE(pyconv_gemv_f64, pyconv_gemv_f64_one, double)
    """
    void pyconv_gemv_f32(const float* x, int64_t rows, int64_t ldx, int64_t kk, const float* w,
                         const float* bias, float lo, float hi, float* y, int64_t ldy,
                         int64_t o0, int64_t o1) nogil
    void pyconv_gemv_f64(const double* x, int64_t rows, int64_t ldx, int64_t kk, const double* w,
                         const double* bias, double lo, double hi, double* y, int64_t ldy,
                         int64_t o0, int64_t o1) nogil

cdef enum:
    GEMV_ROWS = 8          # functional.linear takes this path up to this many rows
    GEMV_BLOCK = 16        # outputs per work unit (16 weight rows: 1.6 MB at K = 25088)


def gemv(const floating[:, ::1] x, const floating[:, ::1] w, const floating[::1] bias,
         floating[:, ::1] y, double lo, double hi, int num_threads):
    """y = clamp(x @ w.T + bias, lo, hi) for x (R, K), w (O, K), bias (O,), y (R, O):
    the weight matrix streamed once per 4 rows of x; outputs in parallel blocks."""
    cdef Py_ssize_t rows = x.shape[0], kk = x.shape[1], n_out = w.shape[0]
    if w.shape[1] != kk or bias.shape[0] != n_out or y.shape[0] != rows or y.shape[1] != n_out:
        raise ValueError("gemv: x (R, K), w (O, K), bias (O,) and y (R, O) do not match")
    if rows == 0 or n_out == 0:
        return
    if kk == 0:
        raise ValueError("gemv: K = 0")
    cdef const floating* xp = &x[0, 0]
    cdef const floating* wp = &w[0, 0]
    cdef const floating* bp = &bias[0]
    cdef floating* yp = &y[0, 0]
    cdef Py_ssize_t blk, o0, nblk = (n_out + GEMV_BLOCK - 1) // GEMV_BLOCK
    with nogil:
        for blk in prange(nblk, num_threads=num_threads, schedule="static"):
            o0 = blk * GEMV_BLOCK
            if floating is float:
                pyconv_gemv_f32(xp, rows, kk, kk, wp, bp, <float>lo, <float>hi, yp, n_out,
                                o0, min(o0 + GEMV_BLOCK, n_out))
            else:
                pyconv_gemv_f64(xp, rows, kk, kk, wp, bp, lo, hi, yp, n_out,
                                o0, min(o0 + GEMV_BLOCK, n_out))


GEMV_MAX_ROWS = GEMV_ROWS
