# pyconv's C-level API: the GIL-free kernels behind pyconv.functional, for other
# Cython extensions.
#
#     from pyconv.capi cimport conv2d, max_pool2d, PYCONV_OK
#
# cimport resolves this file through Cython's include path: pass
# os.path.dirname(pyconv.get_include()) as cythonize(..., include_path=[...]) (an
# installed, non-editable pyconv is also found on sys.path). At run time the cimporting
# module imports pyconv._conv and pyconv._pool, which import pyconv. See
# examples/embed/ for a complete extension and its setup.py.
#
# Contract, every function:
#
# * Arrays are raw pointers to C-contiguous (row-major) memory, NCHW; nothing is
#   copied, inputs are never written, outputs are fully overwritten. float (_f32) and
#   double (_f64) versions, plus fused inline wrappers (conv2d, ...) that pick one.
#   Outputs must not overlap inputs.
# * `noexcept nogil`: callable with or without the GIL, never raises, never touches a
#   Python object. Returns a status:
#       PYCONV_OK      0   done
#       PYCONV_ENOMEM -1   a workspace could not be malloc'd (y is incomplete)
#       PYCONV_EINVAL -2   invalid sizes (see each function); nothing was written
# * 1-D operators are the 2-D ones with a height of 1 (h = oh = kh = 1, sh = dh = 1,
#   ph = 0), as pyconv.functional runs them.
# * Padding: ph, pw are the *leading* (top, left) pads, >= 0; the trailing pads are
#   implied by the output size the caller passes (oh, ow) -- any oh, ow >= 1 is
#   memory-safe, taps outside the input being padding. Compute oh, ow as
#   pyconv.conv_output_size / pool_output_size / conv_transpose_output_size do.
# * num_threads: the OpenMP threads to use; <= 0 means OpenMP's own setting
#   (omp_get_max_threads(): OMP_NUM_THREADS, threadpoolctl). pyconv.set_num_threads()
#   is a Python-level limit and is NOT seen here: pass pyconv.get_num_threads() if you
#   want it. Results are bitwise identical for every thread count.
# * Results are bitwise identical to pyconv.functional's for the same arguments and
#   kernel set (except conv_transpose2d, see there). Calling from inside your own
#   OpenMP parallel region nests; pass num_threads=1 there.
#
# Correlation (conv2d):
#     y (n, c_out, oh, ow) = clamp(bias + correlation(x (n, c_in, h, w_in),
#                                   w (c_out, c_in/groups, kh, kw)), lo, hi)
#     y[b, o, i, j] = clamp(bias[o] + sum_{c, u, v} w[o, c, u, v] *
#                           x[b, g*c_in/groups + c, i*sh - ph + u*dh, j*sw - pw + v*dw], lo, hi)
#   with g = o // (c_out/groups) and zero padding. bias may be NULL (zeros). lo/hi is
#   the fused activation: -INFINITY/INFINITY for none, 0/INFINITY for ReLU, 0/6 for
#   ReLU6; NaN passes through. Algorithm: the implicit-GEMM kernel of the kernel set
#   pyconv chose at import (avx512/avx2/generic; pyconv._conv.c_api_kernel_set()) when
#   c_out/groups >= 8, else that set's direct kernel -- functional's algorithm='auto'.
#   EINVAL unless n >= 0, groups >= 1 dividing c_in and c_out, c_in, h, w_in, c_out,
#   kh, kw, oh, ow, sh, sw, dh, dw >= 1, ph, pw >= 0. n = 0 does nothing.
#
# Transposed convolution (conv_transpose2d): the adjoint of conv2d in x:
#     x (n, c_in, h, w_in), w (c_in, c_out/groups, kh, kw), y (n, c_out, oh, ow),
#     oh = (h - 1)*sh - ph - ph_end + dh*(kh - 1) + output_padding_h + 1 (likewise ow);
#   ph, pw: the leading pads cropped from the full output; bias (NULL: zeros), lo, hi,
#   checks as conv2d. Always the direct kernel: bitwise equal to
#   functional.conv_transpose2d(..., algorithm='direct'); 'auto' with >= 8 output
#   channels per group takes a GEMM route there and differs by rounding only.
#
# Pooling works on planes: x (planes, h, w) -> y (planes, oh, ow), planes = N*C.
#   max_pool2d: window of output (i, j): rows i*sh - ph + u*dh (u < kh), columns
#     j*sw - pw + v*dw (v < kw); padding is ignored, a window of padding only gives 0
#     (index -1); NaN wins. indices (planes, oh, ow) int64 flat positions ih*w + iw in
#     the plane, or NULL for none (then, with dilation 1, the vectorised kernel of the
#     kernel set chosen at import runs: the same values).
#   avg_pool2d: same windows; (ph, ph_end), (pw, pw_end) leading and trailing pads
#     (>= 0). Divisor: divisor_override if > 0; else with count_include_pad the taps in
#     the padded input, else the taps in the real input; 0 taps give 0.
#   adaptive_avg_pool2d / adaptive_max_pool2d: output i covers input rows
#     [floor(i*h/oh), ceil((i+1)*h/oh)), likewise columns; indices may be NULL.
#   EINVAL unless planes >= 0, h, w, oh, ow >= 1 and window sizes, strides,
#   dilations >= 1, pads >= 0.

from libc.stdint cimport int64_t
from cython cimport floating

from pyconv._conv cimport (conv2d_f32, conv2d_f64,
                           conv_transpose2d_f32, conv_transpose2d_f64)
from pyconv._pool cimport (max_pool2d_f32, max_pool2d_f64, avg_pool2d_f32, avg_pool2d_f64,
                           adaptive_avg_pool2d_f32, adaptive_avg_pool2d_f64,
                           adaptive_max_pool2d_f32, adaptive_max_pool2d_f64)

cdef enum:
    PYCONV_OK = 0
    PYCONV_ENOMEM = -1
    PYCONV_EINVAL = -2


# Fused wrappers: one name for float and double (resolved at compile time).

cdef inline int conv2d(const floating* x, const floating* w, const floating* bias, floating* y,
                       Py_ssize_t n, Py_ssize_t c_in, Py_ssize_t h, Py_ssize_t w_in,
                       Py_ssize_t c_out, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t oh, Py_ssize_t ow,
                       Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                       Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups,
                       floating lo, floating hi, int num_threads) noexcept nogil:
    if floating is float:
        return conv2d_f32(x, w, bias, y, n, c_in, h, w_in, c_out, kh, kw, oh, ow,
                          sh, sw, ph, pw, dh, dw, groups, lo, hi, num_threads)
    else:
        return conv2d_f64(x, w, bias, y, n, c_in, h, w_in, c_out, kh, kw, oh, ow,
                          sh, sw, ph, pw, dh, dw, groups, lo, hi, num_threads)


cdef inline int conv_transpose2d(const floating* x, const floating* w, const floating* bias,
                                 floating* y, Py_ssize_t n, Py_ssize_t c_in, Py_ssize_t h,
                                 Py_ssize_t w_in, Py_ssize_t c_out, Py_ssize_t kh, Py_ssize_t kw,
                                 Py_ssize_t oh, Py_ssize_t ow,
                                 Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                                 Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups,
                                 floating lo, floating hi, int num_threads) noexcept nogil:
    if floating is float:
        return conv_transpose2d_f32(x, w, bias, y, n, c_in, h, w_in, c_out, kh, kw, oh, ow,
                                    sh, sw, ph, pw, dh, dw, groups, lo, hi, num_threads)
    else:
        return conv_transpose2d_f64(x, w, bias, y, n, c_in, h, w_in, c_out, kh, kw, oh, ow,
                                    sh, sw, ph, pw, dh, dw, groups, lo, hi, num_threads)


cdef inline int max_pool2d(const floating* x, floating* y, int64_t* indices,
                           Py_ssize_t planes, Py_ssize_t h, Py_ssize_t w, Py_ssize_t oh,
                           Py_ssize_t ow, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh,
                           Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh,
                           Py_ssize_t dw, int num_threads) noexcept nogil:
    if floating is float:
        return max_pool2d_f32(x, y, indices, planes, h, w, oh, ow, kh, kw, sh, sw,
                              ph, pw, dh, dw, num_threads)
    else:
        return max_pool2d_f64(x, y, indices, planes, h, w, oh, ow, kh, kw, sh, sw,
                              ph, pw, dh, dw, num_threads)


cdef inline int avg_pool2d(const floating* x, floating* y,
                           Py_ssize_t planes, Py_ssize_t h, Py_ssize_t w, Py_ssize_t oh,
                           Py_ssize_t ow, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh,
                           Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t ph_end,
                           Py_ssize_t pw_end, Py_ssize_t dh, Py_ssize_t dw,
                           bint count_include_pad, Py_ssize_t divisor_override,
                           int num_threads) noexcept nogil:
    if floating is float:
        return avg_pool2d_f32(x, y, planes, h, w, oh, ow, kh, kw, sh, sw, ph, pw, ph_end,
                              pw_end, dh, dw, count_include_pad, divisor_override, num_threads)
    else:
        return avg_pool2d_f64(x, y, planes, h, w, oh, ow, kh, kw, sh, sw, ph, pw, ph_end,
                              pw_end, dh, dw, count_include_pad, divisor_override, num_threads)


cdef inline int adaptive_avg_pool2d(const floating* x, floating* y, Py_ssize_t planes,
                                    Py_ssize_t h, Py_ssize_t w, Py_ssize_t oh, Py_ssize_t ow,
                                    int num_threads) noexcept nogil:
    if floating is float:
        return adaptive_avg_pool2d_f32(x, y, planes, h, w, oh, ow, num_threads)
    else:
        return adaptive_avg_pool2d_f64(x, y, planes, h, w, oh, ow, num_threads)


cdef inline int adaptive_max_pool2d(const floating* x, floating* y, int64_t* indices,
                                    Py_ssize_t planes, Py_ssize_t h, Py_ssize_t w,
                                    Py_ssize_t oh, Py_ssize_t ow, int num_threads) noexcept nogil:
    if floating is float:
        return adaptive_max_pool2d_f32(x, y, indices, planes, h, w, oh, ow, num_threads)
    else:
        return adaptive_max_pool2d_f64(x, y, indices, planes, h, w, oh, ow, num_threads)
