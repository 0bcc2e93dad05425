"""Correlation and transposed-convolution kernels, NCHW, float32 and float64.

One contract for the family (2-D; 1-D runs as 2-D with a height of 1):

    y[n, o, i, j] = clamp(b[o] + sum_{c, u, v} w[o, c, u, v] * x[n, g*C_g + c, i*sh - ph + u*dh, j*sw - pw + v*dw],
                          lo, hi)

with taps that fall outside the input counted as zero (zero padding); ph, pw are the
*leading* pads -- the trailing pads are implied by the output shape. ``clamp`` is the
fused activation (lo = -inf, hi = +inf for none; NaN passes through). Transposed
convolution is the adjoint of that map with respect to x.

Data flow:

    conv2d_forward(x, w, b, y, ...)          def: shape checks, then releases the GIL
      '- _conv2d_direct                      cdef nogil, raw pointers (also behind the C API)
           '- prange over work units         unit = (image, output channel, block of rows);
                |                            each output element is owned by one unit,
                |                            summed in one fixed order: results are
                |                            bitwise identical for any thread count
                '- _corr_rows                one output row at a time, kept in L1:
                     for c, u: input row read in place (no im2col, no padded copy)
                       for v: _axpy  row[a:e] += w * x[...]
                              ([a, e): the columns tap v reads inside the input, a
                              table computed once per call -- no division per row)
                     then the output pass: + bias, clamp

C API (declared in _conv.pxd, documented in capi.pxd): conv2d_f32/f64 check their
arguments and run a kernel of the kernel set chosen at import (function pointers
taken from its capsules): the implicit-GEMM kernel when a group has >= 8 output
channels, else its vectorised direct kernel (_direct.pxi) -- the choice
functional's algorithm='auto' makes; the direct kernel above only runs when no
kernel set could be bound. conv_transpose2d_f32/f64 run the direct transposed kernel.

The kernel sets' direct kernel is the fast path for correlation (functional's
algorithm='direct'); _conv2d_direct here stays the portable row-by-row version
(conv2d_forward), and the transposed kernel is its adjoint.
"""

from libc.stdlib cimport calloc, free, malloc
from cython cimport floating
from cython.parallel cimport prange
from cpython.pycapsule cimport PyCapsule_GetPointer
from cpython.buffer cimport PyBUF_FORMAT, PyBUF_ND

import numpy as np

from pyconv._common cimport block_end, rows_per_unit, tap_range
from pyconv._kernels cimport conv2d_f32_fn, conv2d_f64_fn

cdef extern from "_openmp.h" nogil:
    int omp_get_max_threads()

# Below this many output channels per group a GEMM tile would be mostly padding
# (pyconv.functional._GEMM_MIN_CHANNELS, the same rule).
cdef enum:
    GEMM_MIN_CHANNELS = 8


cdef Py_ssize_t* _tap_table(Py_ssize_t kw, Py_ssize_t dw, Py_ssize_t pw, Py_ssize_t s,
                            Py_ssize_t n_i, Py_ssize_t n_j) noexcept nogil:
    """For each kernel column v: [t[2v], t[2v+1]) = the i < n_i with 0 <= i*s + v*dw - pw < n_j.

    A malloc'd table (the caller frees it), NULL when out of memory."""
    cdef Py_ssize_t* table = <Py_ssize_t*>malloc(2 * kw * sizeof(Py_ssize_t))
    cdef Py_ssize_t v
    if table != NULL:
        for v in range(kw):
            tap_range(v * dw - pw, s, n_i, n_j, &table[2 * v], &table[2 * v + 1])
    return table


cdef inline void _axpy(floating* y, const floating* x, floating a, Py_ssize_t n,
                       Py_ssize_t y_stride, Py_ssize_t x_stride) noexcept nogil:
    """y[t*y_stride] += a * x[t*x_stride] for t < n; unit strides get their own loop so
    the compiler vectorises it."""
    cdef Py_ssize_t t
    if y_stride == 1 and x_stride == 1:
        for t in range(n):
            y[t] += a * x[t]
    else:
        for t in range(n):
            y[t * y_stride] += a * x[t * x_stride]


cdef inline void _output_pass(floating* row, Py_ssize_t n, floating b,
                              floating lo, floating hi) noexcept nogil:
    """row = clamp(row + b, lo, hi); a NaN fails both comparisons and stays NaN."""
    cdef Py_ssize_t t
    cdef floating v
    for t in range(n):
        v = row[t] + b
        if v < lo:
            v = lo
        if v > hi:
            v = hi
        row[t] = v


cdef void _corr_rows(const floating* x, const floating* w, floating b, floating* y,
                     Py_ssize_t c_in, Py_ssize_t h, Py_ssize_t wd,
                     Py_ssize_t kh, Py_ssize_t kw,
                     Py_ssize_t oh0, Py_ssize_t oh1, Py_ssize_t ow_n,
                     Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                     Py_ssize_t dh, Py_ssize_t dw, floating lo, floating hi,
                     const Py_ssize_t* taps) noexcept nogil:
    """Rows [oh0, oh1) of one output plane of correlation.

    x: (c_in, h, wd), the image's channels of this group; w: (c_in, kh, kw), one output
    channel's filter; y: the (oh, ow_n) output plane; taps: _tap_table for the columns.
    """
    cdef Py_ssize_t oh, ow, c, u, v, ih, off, a, e
    cdef floating* row
    cdef const floating* xrow
    cdef const floating* wrow
    for oh in range(oh0, oh1):
        row = y + oh * ow_n
        for ow in range(ow_n):
            row[ow] = 0
        for c in range(c_in):
            for u in range(kh):
                ih = oh * sh - ph + u * dh
                if ih < 0 or ih >= h:
                    continue  # the whole kernel row lies in the padding
                xrow = x + (c * h + ih) * wd
                wrow = w + (c * kh + u) * kw
                for v in range(kw):
                    off = v * dw - pw  # output column ow reads input column ow*sw + off
                    a, e = taps[2 * v], taps[2 * v + 1]
                    if a < e:
                        _axpy(row + a, xrow + a * sw + off, wrow[v], e - a, 1, sw)
        _output_pass(row, ow_n, b, lo, hi)


cdef void _tconv_rows(const floating* x, const floating* w, Py_ssize_t w_cstride,
                      floating b, floating* y,
                      Py_ssize_t c_in, Py_ssize_t h, Py_ssize_t wd,
                      Py_ssize_t kh, Py_ssize_t kw,
                      Py_ssize_t oh0, Py_ssize_t oh1, Py_ssize_t ow_n,
                      Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                      Py_ssize_t dh, Py_ssize_t dw, floating lo, floating hi,
                      const Py_ssize_t* taps) noexcept nogil:
    """Rows [oh0, oh1) of one output plane of transposed convolution.

    The adjoint of _corr_rows: input (ih, iw) feeds output (ih*sh - ph + u*dh,
    iw*sw - pw + v*dw). Output rows are *gathered* (for each tap row u only the input
    row with ih*sh = oh + ph - u*dh contributes, if the division is exact) and
    columns are *scattered* with stride sw -- the stride-phase form: no zero-inserted
    input, no col2im buffer, and each output row is still owned by one unit.
    x: (c_in, h, wd); w: c_in filters (kh, kw), w_cstride apart; y: (oh, ow_n);
    taps: _tap_table of the input columns each kernel column scatters from.
    """
    cdef Py_ssize_t oh, ow, c, u, v, ih, t, off, a, e
    cdef floating* row
    cdef const floating* xrow
    cdef const floating* wrow
    for oh in range(oh0, oh1):
        row = y + oh * ow_n
        for ow in range(ow_n):
            row[ow] = 0
        for c in range(c_in):
            for u in range(kh):
                t = oh + ph - u * dh
                if t < 0 or t % sh != 0:
                    continue
                ih = t // sh
                if ih >= h:
                    continue
                xrow = x + (c * h + ih) * wd
                wrow = w + c * w_cstride + u * kw
                for v in range(kw):
                    off = v * dw - pw  # input column iw writes output column iw*sw + off
                    a, e = taps[2 * v], taps[2 * v + 1]
                    if a < e:
                        _axpy(row + a * sw + off, xrow + a, wrow[v], e - a, sw, 1)
        _output_pass(row, ow_n, b, lo, hi)


cdef int _conv2d_direct(const floating* xp, const floating* wp, const floating* bp, floating* yp,
                        Py_ssize_t n_img, Py_ssize_t c_all, Py_ssize_t h, Py_ssize_t wd,
                        Py_ssize_t c_out, Py_ssize_t kh, Py_ssize_t kw,
                        Py_ssize_t oh_n, Py_ssize_t ow_n,
                        Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                        Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups,
                        floating lo, floating hi, int num_threads) noexcept nogil:
    """Direct correlation on raw C-contiguous arrays, the argument order of
    igemm_conv2d (pyconv/_kernels.pxd). Arguments must be valid; 0, or -1 when the
    tap table cannot be allocated (y untouched)."""
    cdef Py_ssize_t c_in = c_all // groups, c_out_g = c_out // groups
    cdef Py_ssize_t* taps = _tap_table(kw, dw, pw, sw, ow_n, wd)
    if taps == NULL:
        return -1
    cdef Py_ssize_t rows = rows_per_unit(n_img * c_out, oh_n, num_threads)
    cdef Py_ssize_t blocks = (oh_n + rows - 1) // rows
    cdef Py_ssize_t unit, plane, n, o, g, oh0, oh1
    for unit in prange(n_img * c_out * blocks, num_threads=num_threads, schedule="dynamic"):
        plane = unit // blocks
        n = plane // c_out
        o = plane % c_out
        g = o // c_out_g
        oh0 = (unit % blocks) * rows
        oh1 = block_end(oh0, rows, oh_n)
        _corr_rows(xp + (n * c_all + g * c_in) * h * wd, wp + o * c_in * kh * kw, bp[o],
                   yp + plane * oh_n * ow_n, c_in, h, wd, kh, kw, oh0, oh1, ow_n,
                   sh, sw, ph, pw, dh, dw, lo, hi, taps)
    free(taps)
    return 0


cdef int _conv_transpose2d_direct(const floating* xp, const floating* wp, const floating* bp,
                                  floating* yp, Py_ssize_t n_img, Py_ssize_t c_all,
                                  Py_ssize_t h, Py_ssize_t wd, Py_ssize_t c_out,
                                  Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t oh_n, Py_ssize_t ow_n,
                                  Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                                  Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups,
                                  floating lo, floating hi, int num_threads) noexcept nogil:
    """Direct transposed convolution on raw C-contiguous arrays: x (n_img, c_all, h, wd),
    w (c_all, c_out/groups, kh, kw), y (n_img, c_out, oh_n, ow_n). Arguments must be
    valid; 0, or -1 when the tap table cannot be allocated (y untouched)."""
    cdef Py_ssize_t c_in = c_all // groups, c_out_g = c_out // groups
    cdef Py_ssize_t w_cstride = c_out_g * kh * kw  # from filter (c, oo) to (c + 1, oo)
    cdef Py_ssize_t* taps = _tap_table(kw, dw, pw, sw, wd, ow_n)
    if taps == NULL:
        return -1
    cdef Py_ssize_t rows = rows_per_unit(n_img * c_out, oh_n, num_threads)
    cdef Py_ssize_t blocks = (oh_n + rows - 1) // rows
    cdef Py_ssize_t unit, plane, n, o, g, oh0, oh1
    for unit in prange(n_img * c_out * blocks, num_threads=num_threads, schedule="dynamic"):
        plane = unit // blocks
        n = plane // c_out
        o = plane % c_out
        g = o // c_out_g
        oh0 = (unit % blocks) * rows
        oh1 = block_end(oh0, rows, oh_n)
        _tconv_rows(xp + (n * c_all + g * c_in) * h * wd,
                    wp + (g * c_in * c_out_g + o % c_out_g) * kh * kw, w_cstride, bp[o],
                    yp + plane * oh_n * ow_n, c_in, h, wd, kh, kw, oh0, oh1, ow_n,
                    sh, sw, ph, pw, dh, dw, lo, hi, taps)
    free(taps)
    return 0


# ---------------------------------------------------------------------------------------
# C API (pyconv/_conv.pxd; the contract is written in pyconv/capi.pxd)
# ---------------------------------------------------------------------------------------

# The GEMM and direct kernels of the kernel set chosen at import (pyconv._dispatch),
# taken from its capsules; NULL (then _conv2d_direct above runs) until _bind_gemm
# succeeds.
cdef conv2d_f32_fn _gemm_f32 = NULL
cdef conv2d_f64_fn _gemm_f64 = NULL
cdef conv2d_f32_fn _direct_f32 = NULL
cdef conv2d_f64_fn _direct_f64 = NULL
_gemm_kernel_set = None


def _bind_gemm(kernels):
    """Point the C API's GEMM and direct paths at ``kernels`` (a
    pyconv._kernels_<set> module)."""
    global _gemm_f32, _gemm_f64, _direct_f32, _direct_f64, _gemm_kernel_set
    api = kernels.c_api()
    _gemm_f32 = <conv2d_f32_fn>PyCapsule_GetPointer(api["conv2d_f32"], b"pyconv.igemm_conv2d_f32")
    _gemm_f64 = <conv2d_f64_fn>PyCapsule_GetPointer(api["conv2d_f64"], b"pyconv.igemm_conv2d_f64")
    _direct_f32 = <conv2d_f32_fn>PyCapsule_GetPointer(api["direct_f32"], b"pyconv.direct_conv2d_f32")
    _direct_f64 = <conv2d_f64_fn>PyCapsule_GetPointer(api["direct_f64"], b"pyconv.direct_conv2d_f64")
    _gemm_kernel_set = kernels.KERNEL_SET


def c_api_kernel_set():
    """The kernel set whose GEMM and direct kernels the C API (conv2d_f32/f64) uses:
    the one pyconv._dispatch chose at import (pyconv._dispatch.use() does not change it)."""
    return _gemm_kernel_set


cdef inline int _thread_count(int num_threads) noexcept nogil:
    """num_threads, or OpenMP's own setting (OMP_NUM_THREADS ...) when it is <= 0."""
    if num_threads > 0:
        return num_threads
    num_threads = omp_get_max_threads()
    return num_threads if num_threads > 0 else 1


cdef inline bint _bad_conv_args(Py_ssize_t n_img, Py_ssize_t c_all, Py_ssize_t h, Py_ssize_t wd,
                                Py_ssize_t c_out, Py_ssize_t kh, Py_ssize_t kw,
                                Py_ssize_t oh_n, Py_ssize_t ow_n,
                                Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                                Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups) noexcept nogil:
    return (n_img < 0 or groups < 1 or c_all < groups or h < 1 or wd < 1 or c_out < groups
            or kh < 1 or kw < 1 or oh_n < 1 or ow_n < 1 or sh < 1 or sw < 1
            or ph < 0 or pw < 0 or dh < 1 or dw < 1 or c_all % groups or c_out % groups)


cdef int _conv2d_api(const floating* x, const floating* w, const floating* bias, floating* y,
                     Py_ssize_t n, Py_ssize_t c_in, Py_ssize_t h, Py_ssize_t w_in,
                     Py_ssize_t c_out, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t oh, Py_ssize_t ow,
                     Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                     Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups,
                     floating lo, floating hi, int num_threads) noexcept nogil:
    if _bad_conv_args(n, c_in, h, w_in, c_out, kh, kw, oh, ow, sh, sw, ph, pw, dh, dw, groups):
        return -2
    if n == 0:
        return 0
    cdef floating* zeros = NULL
    cdef int status
    if bias == NULL:  # no bias: zeros, as functional passes them
        zeros = <floating*>calloc(c_out, sizeof(floating))
        if zeros == NULL:
            return -1
        bias = zeros
    num_threads = _thread_count(num_threads)
    cdef conv2d_f32_fn kernel_f32 = _gemm_f32 if c_out // groups >= GEMM_MIN_CHANNELS else _direct_f32
    cdef conv2d_f64_fn kernel_f64 = _gemm_f64 if c_out // groups >= GEMM_MIN_CHANNELS else _direct_f64
    if floating is float and kernel_f32 != NULL:
        status = kernel_f32(x, w, bias, y, n, c_in, h, w_in, c_out, kh, kw, oh, ow,
                            sh, sw, ph, pw, dh, dw, groups, lo, hi, num_threads)
    elif floating is double and kernel_f64 != NULL:
        status = kernel_f64(x, w, bias, y, n, c_in, h, w_in, c_out, kh, kw, oh, ow,
                            sh, sw, ph, pw, dh, dw, groups, lo, hi, num_threads)
    else:
        status = _conv2d_direct(x, w, bias, y, n, c_in, h, w_in, c_out, kh, kw, oh, ow,
                                sh, sw, ph, pw, dh, dw, groups, lo, hi, num_threads)
    free(zeros)
    return status


cdef int _conv_transpose2d_api(const floating* x, const floating* w, const floating* bias,
                               floating* y, Py_ssize_t n, Py_ssize_t c_in, Py_ssize_t h,
                               Py_ssize_t w_in, Py_ssize_t c_out, Py_ssize_t kh, Py_ssize_t kw,
                               Py_ssize_t oh, Py_ssize_t ow,
                               Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                               Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups,
                               floating lo, floating hi, int num_threads) noexcept nogil:
    if _bad_conv_args(n, c_in, h, w_in, c_out, kh, kw, oh, ow, sh, sw, ph, pw, dh, dw, groups):
        return -2
    if n == 0:
        return 0
    cdef floating* zeros = NULL
    cdef int status
    if bias == NULL:
        zeros = <floating*>calloc(c_out, sizeof(floating))
        if zeros == NULL:
            return -1
        bias = zeros
    status = _conv_transpose2d_direct(x, w, bias, y, n, c_in, h, w_in, c_out, kh, kw, oh, ow,
                                      sh, sw, ph, pw, dh, dw, groups, lo, hi,
                                      _thread_count(num_threads))
    free(zeros)
    return status


cdef int conv2d_f32(const float* x, const float* w, const float* bias, float* y,
                    Py_ssize_t n, Py_ssize_t c_in, Py_ssize_t h, Py_ssize_t w_in,
                    Py_ssize_t c_out, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t oh, Py_ssize_t ow,
                    Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                    Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups,
                    float lo, float hi, int num_threads) noexcept nogil:
    return _conv2d_api(x, w, bias, y, n, c_in, h, w_in, c_out, kh, kw, oh, ow,
                       sh, sw, ph, pw, dh, dw, groups, lo, hi, num_threads)


cdef int conv2d_f64(const double* x, const double* w, const double* bias, double* y,
                    Py_ssize_t n, Py_ssize_t c_in, Py_ssize_t h, Py_ssize_t w_in,
                    Py_ssize_t c_out, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t oh, Py_ssize_t ow,
                    Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                    Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups,
                    double lo, double hi, int num_threads) noexcept nogil:
    return _conv2d_api(x, w, bias, y, n, c_in, h, w_in, c_out, kh, kw, oh, ow,
                       sh, sw, ph, pw, dh, dw, groups, lo, hi, num_threads)


cdef int conv_transpose2d_f32(const float* x, const float* w, const float* bias, float* y,
                              Py_ssize_t n, Py_ssize_t c_in, Py_ssize_t h, Py_ssize_t w_in,
                              Py_ssize_t c_out, Py_ssize_t kh, Py_ssize_t kw,
                              Py_ssize_t oh, Py_ssize_t ow,
                              Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                              Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups,
                              float lo, float hi, int num_threads) noexcept nogil:
    return _conv_transpose2d_api(x, w, bias, y, n, c_in, h, w_in, c_out, kh, kw, oh, ow,
                                 sh, sw, ph, pw, dh, dw, groups, lo, hi, num_threads)


cdef int conv_transpose2d_f64(const double* x, const double* w, const double* bias, double* y,
                              Py_ssize_t n, Py_ssize_t c_in, Py_ssize_t h, Py_ssize_t w_in,
                              Py_ssize_t c_out, Py_ssize_t kh, Py_ssize_t kw,
                              Py_ssize_t oh, Py_ssize_t ow,
                              Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                              Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups,
                              double lo, double hi, int num_threads) noexcept nogil:
    return _conv_transpose2d_api(x, w, bias, y, n, c_in, h, w_in, c_out, kh, kw, oh, ow,
                                 sh, sw, ph, pw, dh, dw, groups, lo, hi, num_threads)


# ---------------------------------------------------------------------------------------
# Python entries (pyconv.functional)
# ---------------------------------------------------------------------------------------

def conv2d_forward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                   const floating[::1] bias, floating[:, :, :, ::1] y,
                   Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                   Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups,
                   double lo, double hi, int num_threads):
    """y = clamp(bias + correlation(x, w), lo, hi), written in place (the direct kernel).

    x (N, C_in, H, W), w (C_out, C_in/groups, kh, kw), bias (C_out,), y (N, C_out, OH, OW);
    ph, pw are the leading zero pads. All arrays non-empty; the caller has checked
    every argument (pyconv.functional).
    """
    cdef Py_ssize_t n_img = x.shape[0], c_all = x.shape[1], h = x.shape[2], wd = x.shape[3]
    cdef Py_ssize_t c_out = w.shape[0], c_in = w.shape[1], kh = w.shape[2], kw = w.shape[3]
    cdef Py_ssize_t oh_n = y.shape[2], ow_n = y.shape[3]
    if (y.shape[0] != n_img or y.shape[1] != c_out or bias.shape[0] != c_out
            or c_in * groups != c_all or c_out % groups != 0):
        raise ValueError("conv2d_forward: inconsistent shapes")
    cdef int status
    with nogil:
        status = _conv2d_direct(&x[0, 0, 0, 0], &w[0, 0, 0, 0], &bias[0], &y[0, 0, 0, 0],
                                n_img, c_all, h, wd, c_out, kh, kw, oh_n, ow_n,
                                sh, sw, ph, pw, dh, dw, groups, <floating>lo, <floating>hi,
                                num_threads)
    if status != 0:
        raise MemoryError("conv2d_forward: cannot allocate the tap table")


def conv_transpose2d_forward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                             const floating[::1] bias, floating[:, :, :, ::1] y,
                             Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                             Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups,
                             double lo, double hi, int num_threads):
    """y = clamp(bias + conv_transpose(x, w), lo, hi), written in place.

    x (N, C_in, H, W), w (C_in, C_out/groups, kh, kw), bias (C_out,), y (N, C_out, OH, OW);
    ph, pw are the leading pads removed from the full output (output_padding and the
    trailing pads are implied by y's shape). All arrays non-empty, arguments checked.
    """
    cdef Py_ssize_t n_img = x.shape[0], c_all = x.shape[1], h = x.shape[2], wd = x.shape[3]
    cdef Py_ssize_t c_out_g = w.shape[1], kh = w.shape[2], kw = w.shape[3]
    cdef Py_ssize_t c_out = y.shape[1], oh_n = y.shape[2], ow_n = y.shape[3]
    if (y.shape[0] != n_img or w.shape[0] != c_all or c_all % groups != 0
            or c_out_g * groups != c_out or bias.shape[0] != c_out):
        raise ValueError("conv_transpose2d_forward: inconsistent shapes")
    cdef int status
    with nogil:
        status = _conv_transpose2d_direct(&x[0, 0, 0, 0], &w[0, 0, 0, 0], &bias[0],
                                          &y[0, 0, 0, 0], n_img, c_all, h, wd, c_out, kh, kw,
                                          oh_n, ow_n, sh, sw, ph, pw, dh, dw, groups,
                                          <floating>lo, <floating>hi, num_threads)
    if status != 0:
        raise MemoryError("conv_transpose2d_forward: cannot allocate the tap table")


# ---------------------------------------------------------------------------------------
# Output arrays from a cache of freed blocks
# ---------------------------------------------------------------------------------------
#
# A layer's output is a fresh array, freed a layer or two later. glibc hands blocks
# above its mmap threshold (at most 32 MiB) straight back to the system, and trims
# smaller ones off the heap, so the next call's output touches fresh pages: the
# system zeroes each on first touch. That cost 30 % of a MobileNetV2 forward pass at
# batch 8 here (its 112x112x96 activations are 38 MiB). Blocks of at least
# OUTPUT_MIN_BYTES are therefore taken from, and returned to, a cache of freed blocks
# (_workspace.h: at most 32 blocks, 256 MiB) -- the role of the memory arenas of
# ONNX Runtime and PyTorch.

cdef extern from *:
    """
    #define PYCONV_WS_BYTES ((size_t)256 << 20)
    #include "_workspace.h"
    """
    void* pyconv_ws_malloc(size_t size) nogil
    void pyconv_ws_free(void* p) nogil
    size_t pyconv_ws_cached

DEF OUTPUT_MIN_BYTES = 1 << 17   # smaller arrays stay on malloc's heap, recycled there


cdef class _OutputBlock:
    """The memory of one output array (its base), given back to the cache when the
    array is gone."""
    cdef void* data
    cdef Py_ssize_t nbytes

    def __dealloc__(self):
        pyconv_ws_free(self.data)

    def __getbuffer__(self, Py_buffer* buffer, int flags):
        buffer.buf = self.data
        buffer.obj = self
        buffer.len = self.nbytes
        buffer.readonly = 0
        buffer.itemsize = 1
        buffer.format = NULL     # unsigned bytes
        if flags & PyBUF_FORMAT:
            buffer.format = b"B"
        buffer.ndim = 1
        buffer.shape = NULL
        if flags & PyBUF_ND:
            buffer.shape = &self.nbytes
        buffer.strides = NULL
        buffer.suboffsets = NULL
        buffer.internal = NULL

    def __releasebuffer__(self, Py_buffer* buffer):
        pass


def empty(shape, dtype):
    """``numpy.empty(shape, dtype)``, C-contiguous and 64-byte aligned; from the cache of
    freed output blocks when at least OUTPUT_MIN_BYTES (the block returns to it when
    the array and its views are gone)."""
    dtype = np.dtype(dtype)
    cdef Py_ssize_t count = 1, extent
    for extent in shape:
        count *= extent
    cdef Py_ssize_t nbytes = count * dtype.itemsize
    if nbytes < OUTPUT_MIN_BYTES:
        return np.empty(shape, dtype)
    cdef _OutputBlock block = _OutputBlock.__new__(_OutputBlock)
    block.data = pyconv_ws_malloc(nbytes)
    if block.data == NULL:
        raise MemoryError(f"cannot allocate an output of {nbytes} bytes")
    block.nbytes = nbytes
    return np.frombuffer(block, dtype, count).reshape(shape)


def output_cached_bytes():
    """Bytes of freed output blocks kept for the next calls (see ``empty``)."""
    return pyconv_ws_cached


from pyconv import _dispatch  # noqa: E402  (after the definitions; imports _threads only)

_bind_gemm(_dispatch.kernels)


# ---------------------------------------------------------------------------------------
# col2im: the scatter half of transposed convolution as GEMM + col2im
# ---------------------------------------------------------------------------------------

def col2im_add(const floating[:, :, :, ::1] cols, floating[:, :, :, ::1] y,
               Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
               Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw,
               double lo, double hi, int num_threads):
    """y[n, o, ih*sh - ph + u*dh, iw*sw - pw + v*dw] += cols[n, (o*kh + u)*kw + v, ih, iw]
    for every term that lands inside y, then y = clamp(y, lo, hi) (NaN passes).

    cols (N, C_out*kh*kw, h, wd): per image and per (output channel, tap) the plane of
    every input pixel's contribution (the transposed convolution's GEMM, W^T X); y
    (N, C_out, OH, OW) holds the bias on entry. A unit is one output plane (n, o),
    which stays in L1 while its kh*kw planes of cols are read row by row: each input
    row adds, in place, into one output row -- contiguous for stride 1, every sw-th
    element otherwise -- over the columns that land inside it (found once per tap).
    Its sums run in one fixed order (u, v, ih): bitwise the same for any thread count."""
    cdef Py_ssize_t n_img = y.shape[0], c_out = y.shape[1], oh_n = y.shape[2], ow_n = y.shape[3]
    cdef Py_ssize_t h = cols.shape[2], wd = cols.shape[3], kk = kh * kw
    if cols.shape[0] != n_img or cols.shape[1] != c_out * kk:
        raise ValueError("col2im_add: cols must be (N, C_out*kh*kw, h, w)")
    if min(kh, kw, sh, sw, dh, dw) < 1 or ph < 0 or pw < 0:
        raise ValueError("col2im_add: sizes, strides and dilations must be >= 1, pads >= 0")
    if y.size == 0 or cols.size == 0:
        return
    cdef const floating* cp = &cols[0, 0, 0, 0]
    cdef floating* yp = &y[0, 0, 0, 0]
    cdef floating flo = <floating>lo
    cdef floating fhi = <floating>hi
    cdef Py_ssize_t plane, u, v, ih, iw, iw0, iw1
    # Per tap row u: the input rows [rows[u, 0], rows[u, 1]) that land inside the output;
    # per tap column v: the input columns likewise (found before the parallel loop,
    # whose variables tap_range's pointer outputs would not privatise).
    cdef Py_ssize_t* rows = <Py_ssize_t*>malloc(2 * (kh + kw) * sizeof(Py_ssize_t))
    if rows == NULL:
        raise MemoryError("col2im_add: cannot allocate the tap table")
    cdef Py_ssize_t* columns = rows + 2 * kh
    for u in range(kh):
        tap_range(u * dh - ph, sh, h, oh_n, &rows[2 * u], &rows[2 * u + 1])
    for v in range(kw):
        tap_range(v * dw - pw, sw, wd, ow_n, &columns[2 * v], &columns[2 * v + 1])
    cdef const floating* src
    cdef floating* dst
    cdef floating* row
    with nogil:
        for plane in prange(n_img * c_out, num_threads=num_threads, schedule="guided"):
            dst = yp + plane * oh_n * ow_n
            for u in range(kh):
                for v in range(kw):
                    iw0 = columns[2 * v]
                    iw1 = columns[2 * v + 1]
                    src = cp + (plane * kk + u * kw + v) * h * wd  # plane = n*C_out + o
                    for ih in range(rows[2 * u], rows[2 * u + 1]):
                        row = dst + (ih * sh - ph + u * dh) * ow_n + v * dw - pw
                        if sw == 1:
                            _add_row(row, src + ih * wd, iw0, iw1)
                        else:
                            for iw in range(iw0, iw1):
                                row[iw * sw] += src[ih * wd + iw]
            _clamp_plane(dst, oh_n * ow_n, flo, fhi)
    free(rows)


cdef inline void _clamp_plane(floating* p, Py_ssize_t n, floating lo, floating hi) noexcept nogil:
    """p[:n] = clamp(p[:n], lo, hi); NaN passes (both comparisons are false for it)."""
    cdef Py_ssize_t t
    cdef floating val
    for t in range(n):
        val = p[t]
        if val < lo:
            val = lo
        if val > hi:
            val = hi
        p[t] = val


cdef inline void _add_row(floating* row, const floating* src, Py_ssize_t a, Py_ssize_t e) noexcept nogil:
    """row[i] += src[i] for a <= i < e (its own function: the two pointers do not alias
    within one call, which the compiler checks once and then vectorises)."""
    cdef Py_ssize_t i
    for i in range(a, e):
        row[i] += src[i]


def col2im_add_pixels(const floating[:, ::1] cols, floating[:, :, :, ::1] y,
               Py_ssize_t h, Py_ssize_t wd, Py_ssize_t kh, Py_ssize_t kw,
               Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
               Py_ssize_t dh, Py_ssize_t dw, double lo, double hi, int num_threads):
    """col2im_add for cols laid out by pixel: y[n, o, ih*sh - ph + u*dh, iw*sw - pw + v*dw]
    += cols[(n*h + ih)*wd + iw, (o*kh + u)*kw + v] for every term that lands inside y,
    then y = clamp(y, lo, hi) (NaN passes).

    cols (N*h*wd, C_out*kh*kw): each input pixel's contribution to its output patch,
    one GEMM row per pixel (X^T W: the GEMM that transposes the input, not the
    weights); y (N, C_out, OH, OW) holds the bias on entry. A unit is one image's
    block of output planes: it reads its pixels' rows in order, each a contiguous run
    of the block's patches, and adds every patch row into its plane. (A unit of one
    plane read 16 floats of every pixel's row, a row apart -- 8 KiB at 128 outputs of
    4x4 taps, more than a page, which no prefetcher follows: DCGAN's 256 -> 128 layer
    spent 27 % of its time here.) Each output's sum runs in one fixed order
    (ih, iw, u, v), bitwise the same for any thread count and blocking."""
    cdef Py_ssize_t n_img = y.shape[0], c_out = y.shape[1], oh_n = y.shape[2], ow_n = y.shape[3]
    cdef Py_ssize_t kk = kh * kw
    if cols.shape[0] != n_img * h * wd or cols.shape[1] != c_out * kk:
        raise ValueError("col2im_add_pixels: cols must be (N*h*w, C_out*kh*kw)")
    if min(h, wd, kh, kw, sh, sw, dh, dw) < 1 or ph < 0 or pw < 0:
        raise ValueError("col2im_add_pixels: sizes, strides and dilations must be >= 1, pads >= 0")
    if y.size == 0 or cols.size == 0:
        return
    cdef const floating* cp = &cols[0, 0]
    cdef floating* yp = &y[0, 0, 0, 0]
    cdef floating flo = <floating>lo
    cdef floating fhi = <floating>hi
    # Plane blocks: about 8 units per thread over the batch (dynamic: FCN-16s' 21
    # planes of one image in 7 units would split 4 | 3 on 2 threads),
    # whole images where the batch alone gives that many, and each pixel's run at
    # least 256 values (16 lines) long.
    cdef Py_ssize_t ob_min = max(1, (256 + kk - 1) // kk)
    cdef Py_ssize_t blocks = min((c_out + ob_min - 1) // ob_min,
                                 max(1, (8 * num_threads + n_img - 1) // n_img))
    cdef Py_ssize_t ob = (c_out + blocks - 1) // blocks
    blocks = (c_out + ob - 1) // ob
    cdef Py_ssize_t unit, n, o, o0, o1
    with nogil:
        for unit in prange(n_img * blocks, num_threads=num_threads, schedule="dynamic"):
            n = unit // blocks
            o0 = unit % blocks * ob
            o1 = min(c_out, o0 + ob)
            _col2im_pixels_block(cp, yp, n, o0, o1, c_out, h, wd, kh, kw, sh, sw, ph, pw,
                                 dh, dw, oh_n, ow_n)
            for o in range(o0, o1):
                _clamp_plane(yp + (n * c_out + o) * oh_n * ow_n, oh_n * ow_n, flo, fhi)


cdef inline void _col2im_pixels_block(const floating* cp, floating* yp, Py_ssize_t n,
                                      Py_ssize_t o0, Py_ssize_t o1, Py_ssize_t c_out,
                                      Py_ssize_t h, Py_ssize_t wd, Py_ssize_t kh, Py_ssize_t kw,
                                      Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                                      Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t oh_n,
                                      Py_ssize_t ow_n) noexcept nogil:
    """Image n's planes [o0, o1) of col2im_add_pixels, without the clamp: for each
    pixel, the taps that land inside y found once (tap_range: a contiguous range of u
    and of v), then each plane's patch rows added -- a contiguous run when dw = 1."""
    cdef Py_ssize_t kk = kh * kw, plane = oh_n * ow_n
    cdef Py_ssize_t ih, iw, u, v, o, y0, x0, u_lo, u_hi, v_lo, v_hi
    cdef const floating* src
    cdef const floating* srow
    cdef floating* drow
    for ih in range(h):
        y0 = ih * sh - ph
        tap_range(y0, dh, kh, oh_n, &u_lo, &u_hi)
        for iw in range(wd):
            x0 = iw * sw - pw
            tap_range(x0, dw, kw, ow_n, &v_lo, &v_hi)
            if u_lo >= u_hi or v_lo >= v_hi:
                continue
            src = cp + ((n * h + ih) * wd + iw) * c_out * kk
            for o in range(o0, o1):
                for u in range(u_lo, u_hi):
                    srow = src + o * kk + u * kw
                    drow = yp + (n * c_out + o) * plane + (y0 + u * dh) * ow_n + x0
                    if dw == 1:
                        _add_row(drow, srow, v_lo, v_hi)
                    else:
                        for v in range(v_lo, v_hi):
                            drow[v * dw] += srow[v]


def interleave_phases(const floating[::1] phases, const Py_ssize_t[::1] offsets,
                      floating[:, :, :, ::1] y, Py_ssize_t sh, Py_ssize_t sw, int num_threads):
    """y[n, c, qh*sh + rh, qw*sw + rw] = P[rh*sw + rw][n, c, qh, qw]: the stride phases of
    a transposed convolution, computed apart, woven into their output.

    Phase p = rh*sw + rw (rh < sh, rw < sw; only those with rh < OH and rw < OW) is the
    C-contiguous (N, C, ceil((OH - rh)/sh), ceil((OW - rw)/sw)) array that starts at
    phases[offsets[p]]. A unit is one output plane (n, c), written once, row by row
    in order: each output row reads one row of each of its sw phases (a NumPy copy
    into y[:, :, rh::sh, rw::sw] per phase wrote every output line sh*sw times over,
    on one thread)."""
    cdef Py_ssize_t n_img = y.shape[0], c_all = y.shape[1], oh_n = y.shape[2], ow_n = y.shape[3]
    if sh < 1 or sw < 1 or offsets.shape[0] < sh * sw:
        raise ValueError("interleave_phases: strides must be >= 1, with an offset per phase")
    if y.size == 0:
        return
    cdef Py_ssize_t p, rh, rw, hp, wp, end = 0
    for rh in range(min(sh, oh_n)):
        for rw in range(min(sw, ow_n)):
            p = rh * sw + rw
            hp = (oh_n - rh + sh - 1) // sh
            wp = (ow_n - rw + sw - 1) // sw
            end = offsets[p] + n_img * c_all * hp * wp
            if offsets[p] < 0 or end > phases.shape[0]:
                raise ValueError(f"interleave_phases: phase ({rh}, {rw}) lies outside phases")
    cdef const floating* pp = &phases[0]
    cdef const Py_ssize_t* op = &offsets[0]
    cdef floating* yp = &y[0, 0, 0, 0]
    cdef Py_ssize_t plane, oh, q
    cdef const floating* src
    cdef floating* row
    with nogil:
        for plane in prange(n_img * c_all, num_threads=num_threads, schedule="static"):
            for oh in range(oh_n):
                rh = oh % sh
                hp = (oh_n - rh + sh - 1) // sh
                row = yp + (plane * oh_n + oh) * ow_n
                for rw in range(min(sw, ow_n)):
                    wp = (ow_n - rw + sw - 1) // sw
                    src = pp + op[rh * sw + rw] + (plane * hp + oh // sh) * wp
                    for q in range(wp):
                        row[q * sw + rw] = src[q]


# ---------------------------------------------------------------------------------------
# Residual join: y = clamp(a + b), the Add (+ ReLU) after a ResNet block
# ---------------------------------------------------------------------------------------

cdef enum:
    ADD_BLOCK = 16384   # elements per work unit: 64 KiB of float32, a few microseconds

def add_clamp(const floating[::1] a, const floating[::1] b, floating[::1] y,
              double lo, double hi, int num_threads):
    """y = clamp(a + b, lo, hi) elementwise (NaN passes), in one pass over memory; y may
    be a or b (in place). A residual network's join -- NumPy's add then maximum is two
    single-threaded passes, 8 % of a ResNet-50 forward pass at batch 1 here."""
    cdef Py_ssize_t n = y.shape[0]
    if a.shape[0] != n or b.shape[0] != n:
        raise ValueError(f"add_clamp: a, b and y must have the same size, got "
                         f"{a.shape[0]}, {b.shape[0]} and {n}")
    if n == 0:
        return
    cdef const floating* ap = &a[0]
    cdef const floating* bp = &b[0]
    cdef floating* yp = &y[0]
    cdef floating flo = <floating>lo
    cdef floating fhi = <floating>hi
    cdef Py_ssize_t blk, i, i0, i1
    cdef floating v
    with nogil:
        for blk in prange((n + ADD_BLOCK - 1) // ADD_BLOCK, num_threads=num_threads,
                          schedule="static"):
            i0 = blk * ADD_BLOCK
            i1 = i0 + ADD_BLOCK
            if i1 > n:
                i1 = n
            for i in range(i0, i1):
                v = ap[i] + bp[i]
                v = flo if v < flo else v       # comparisons with NaN are false:
                yp[i] = fhi if v > fhi else v   # NaN passes, as in the kernels' clamp


# ---------------------------------------------------------------------------------------
# Transposes: the layout changes of the GEMM formulations (col2im, linear)
# ---------------------------------------------------------------------------------------

cdef enum:
    TRANSPOSE_TILE = 32   # a 32 x 32 tile: 4 KiB of float32, staged in L1

def transpose(const floating[:, :, ::1] a, floating[:, :, ::1] out, int num_threads):
    """out[b, j, i] = a[b, i, j]: each of a's B matrices transposed, tile by tile.

    NumPy's copy of a transposed view walks one side a whole row apart per element:
    (1, 128, 1024) float32 0.42 ms against 0.076 here, 1 thread (benchmarks/paths.py
    transpose, Zen 3). A unit here is one TRANSPOSE_TILE square: its source rows are
    read whole into a staging tile on the stack, transposed there, and written out as
    whole target rows -- the tile's rows lie a power of two apart in memory, and
    walking them in the inner loop (either side) kept 32 lines of one L1 set in
    flight: 10 cycles an element. out must not overlap a."""
    cdef Py_ssize_t nb = a.shape[0], rows = a.shape[1], cols = a.shape[2]
    if out.shape[0] != nb or out.shape[1] != cols or out.shape[2] != rows:
        raise ValueError(f"transpose: out must have shape ({nb}, {cols}, {rows}), got "
                         f"({out.shape[0]}, {out.shape[1]}, {out.shape[2]})")
    if a.size == 0:
        return
    cdef const floating* ap = &a[0, 0, 0]
    cdef floating* op = &out[0, 0, 0]
    cdef Py_ssize_t tr = (rows + TRANSPOSE_TILE - 1) // TRANSPOSE_TILE
    cdef Py_ssize_t tc = (cols + TRANSPOSE_TILE - 1) // TRANSPOSE_TILE
    cdef Py_ssize_t unit
    with nogil:
        for unit in prange(nb * tr * tc, num_threads=num_threads, schedule="static"):
            _transpose_tile(ap, op, rows, cols, unit // (tr * tc),
                            (unit // tc) % tr * TRANSPOSE_TILE, unit % tc * TRANSPOSE_TILE)


cdef inline void _transpose_tile(const floating* a, floating* out, Py_ssize_t rows,
                                 Py_ssize_t cols, Py_ssize_t b, Py_ssize_t i0,
                                 Py_ssize_t j0) noexcept nogil:
    """The tile of rows [i0, i0 + 32) and columns [j0, j0 + 32) of matrix b (clipped
    at its edges), through a staging tile t[j][i]."""
    cdef floating t[TRANSPOSE_TILE * TRANSPOSE_TILE]
    cdef Py_ssize_t ni = min(TRANSPOSE_TILE, rows - i0), nj = min(TRANSPOSE_TILE, cols - j0)
    cdef const floating* src = a + (b * rows + i0) * cols + j0
    cdef floating* dst = out + (b * cols + j0) * rows + i0
    if ni == TRANSPOSE_TILE and nj == TRANSPOSE_TILE:
        # A whole tile: literal bounds, which the compiler unrolls and vectorises.
        _staged(src, dst, t, TRANSPOSE_TILE, TRANSPOSE_TILE, rows, cols)
    else:
        _staged(src, dst, t, ni, nj, rows, cols)


cdef inline void _staged(const floating* src, floating* dst, floating* t, Py_ssize_t ni,
                         Py_ssize_t nj, Py_ssize_t rows, Py_ssize_t cols) noexcept nogil:
    """dst[j*rows + i] = src[i*cols + j] for i < ni, j < nj, through t[j][i]."""
    cdef Py_ssize_t i, j
    for i in range(ni):
        for j in range(nj):
            t[j * TRANSPOSE_TILE + i] = src[i * cols + j]
    for j in range(nj):
        for i in range(ni):
            dst[j * rows + i] = t[j * TRANSPOSE_TILE + i]
