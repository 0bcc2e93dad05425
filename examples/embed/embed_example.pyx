"""An extension that uses pyconv's C API: a conv -> ReLU -> max-pool block run
entirely without the GIL, plus one thin wrapper per operator (tests/test_embed.py
checks them bitwise against pyconv.functional).

Build: python setup.py build_ext --inplace   (see setup.py: pyconv.get_include()).
"""

from libc.math cimport INFINITY
from libc.stdint cimport int64_t
from cython cimport floating

import numpy as np

from pyconv.capi cimport (PYCONV_OK, adaptive_avg_pool2d, adaptive_max_pool2d, avg_pool2d,
                          conv2d, conv_transpose2d, max_pool2d)


cdef int _check(int status) except -1:
    if status != PYCONV_OK:
        raise MemoryError("pyconv: out of memory") if status == -1 else ValueError(
            f"pyconv: invalid arguments (status {status})")
    return 0


def conv_relu_maxpool(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                      const floating[::1] bias, int padding, int pool, int num_threads=0):
    """max_pool2d(relu(conv2d(x, w, bias, padding=padding)), pool) and its indices.

    The conv output stays an intermediate buffer; both kernels run in one nogil block.
    """
    cdef Py_ssize_t n = x.shape[0], c_in = x.shape[1], h = x.shape[2], wd = x.shape[3]
    cdef Py_ssize_t c_out = w.shape[0], kh = w.shape[2], kw = w.shape[3]
    cdef Py_ssize_t oh = h + 2 * padding - kh + 1, ow = wd + 2 * padding - kw + 1
    cdef Py_ssize_t ph = oh // pool, pw = ow // pool
    dtype = np.float32 if floating is float else np.float64
    conv_out = np.empty((n, c_out, oh, ow), dtype)
    pooled = np.empty((n, c_out, ph, pw), dtype)
    indices = np.empty((n, c_out, ph, pw), np.int64)
    cdef floating[:, :, :, ::1] cv = conv_out
    cdef floating[:, :, :, ::1] pv = pooled
    cdef int64_t[:, :, :, ::1] iv = indices
    cdef int status
    with nogil:
        status = conv2d(&x[0, 0, 0, 0], &w[0, 0, 0, 0], &bias[0], &cv[0, 0, 0, 0],
                        n, c_in, h, wd, c_out, kh, kw, oh, ow,
                        1, 1, padding, padding, 1, 1, 1,
                        0, INFINITY, num_threads)  # fused ReLU: clamp to [0, inf)
        if status == PYCONV_OK:
            status = max_pool2d(&cv[0, 0, 0, 0], &pv[0, 0, 0, 0], &iv[0, 0, 0, 0],
                                n * c_out, oh, ow, ph, pw, pool, pool, pool, pool,
                                0, 0, 1, 1, num_threads)
    _check(status)
    return pooled, indices


def conv2d_nchw(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                floating[:, :, :, ::1] y, stride, padding, dilation, Py_ssize_t groups,
                bias=None, int num_threads=0):
    """conv2d into y; padding = leading pads (ph, pw); bias: None or a 1-D array."""
    cdef const floating[::1] b
    cdef const floating* bp = NULL
    if bias is not None:
        b = bias
        bp = &b[0]
    cdef Py_ssize_t sh = stride[0], sw = stride[1], ph = padding[0], pw = padding[1]
    cdef Py_ssize_t dh = dilation[0], dw = dilation[1]
    cdef int status
    with nogil:
        status = conv2d(&x[0, 0, 0, 0], &w[0, 0, 0, 0], bp, &y[0, 0, 0, 0],
                        x.shape[0], x.shape[1], x.shape[2], x.shape[3],
                        w.shape[0], w.shape[2], w.shape[3], y.shape[2], y.shape[3],
                        sh, sw, ph, pw, dh, dw, groups, -INFINITY, INFINITY, num_threads)
    _check(status)


def conv_transpose2d_nchw(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                          floating[:, :, :, ::1] y, stride, padding, dilation,
                          Py_ssize_t groups, int num_threads=0):
    """conv_transpose2d into y (no bias); padding = leading pads (ph, pw)."""
    cdef Py_ssize_t sh = stride[0], sw = stride[1], ph = padding[0], pw = padding[1]
    cdef Py_ssize_t dh = dilation[0], dw = dilation[1]
    cdef int status
    with nogil:
        status = conv_transpose2d(&x[0, 0, 0, 0], &w[0, 0, 0, 0], NULL, &y[0, 0, 0, 0],
                                  x.shape[0], x.shape[1], x.shape[2], x.shape[3],
                                  y.shape[1], w.shape[2], w.shape[3], y.shape[2], y.shape[3],
                                  sh, sw, ph, pw, dh, dw, groups, -INFINITY, INFINITY,
                                  num_threads)
    _check(status)


def max_pool2d_planes(const floating[:, :, ::1] x, floating[:, :, ::1] y, indices,
                      kernel, stride, padding, dilation, int num_threads=0):
    """max_pool2d of planes x (P, H, W) into y (P, OH, OW); indices None or int64 (P, OH, OW)."""
    cdef int64_t[:, :, ::1] iv
    cdef int64_t* ip = NULL
    if indices is not None:
        iv = indices
        ip = &iv[0, 0, 0]
    cdef Py_ssize_t kh = kernel[0], kw = kernel[1], sh = stride[0], sw = stride[1]
    cdef Py_ssize_t ph = padding[0], pw = padding[1], dh = dilation[0], dw = dilation[1]
    cdef int status
    with nogil:
        status = max_pool2d(&x[0, 0, 0], &y[0, 0, 0], ip, x.shape[0], x.shape[1], x.shape[2],
                            y.shape[1], y.shape[2], kh, kw, sh, sw, ph, pw, dh, dw, num_threads)
    _check(status)


def avg_pool2d_planes(const floating[:, :, ::1] x, floating[:, :, ::1] y, kernel, stride,
                      pads, dilation, bint count_include_pad, Py_ssize_t divisor_override,
                      int num_threads=0):
    """avg_pool2d of planes; pads = ((top, bottom), (left, right))."""
    cdef Py_ssize_t kh = kernel[0], kw = kernel[1], sh = stride[0], sw = stride[1]
    cdef Py_ssize_t ph = pads[0][0], ph_end = pads[0][1], pw = pads[1][0], pw_end = pads[1][1]
    cdef Py_ssize_t dh = dilation[0], dw = dilation[1]
    cdef int status
    with nogil:
        status = avg_pool2d(&x[0, 0, 0], &y[0, 0, 0], x.shape[0], x.shape[1], x.shape[2],
                            y.shape[1], y.shape[2], kh, kw, sh, sw, ph, pw, ph_end, pw_end,
                            dh, dw, count_include_pad, divisor_override, num_threads)
    _check(status)


def adaptive_pool2d_planes(const floating[:, :, ::1] x, floating[:, :, ::1] y, bint is_max,
                           indices=None, int num_threads=0):
    """Adaptive average or max pooling of planes; indices (max only) None or int64."""
    cdef int64_t[:, :, ::1] iv
    cdef int64_t* ip = NULL
    if indices is not None:
        iv = indices
        ip = &iv[0, 0, 0]
    cdef int status
    with nogil:
        if is_max:
            status = adaptive_max_pool2d(&x[0, 0, 0], &y[0, 0, 0], ip, x.shape[0], x.shape[1],
                                         x.shape[2], y.shape[1], y.shape[2], num_threads)
        else:
            status = adaptive_avg_pool2d(&x[0, 0, 0], &y[0, 0, 0], x.shape[0], x.shape[1],
                                         x.shape[2], y.shape[1], y.shape[2], num_threads)
    _check(status)


def status_of_invalid_call():
    """The status conv2d returns for groups = 0 (PYCONV_EINVAL = -2); nothing is written."""
    cdef float one = 1
    cdef int status
    with nogil:
        status = conv2d(&one, &one, NULL, &one, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                        1, 1, 0, 0, 1, 1, 0, -INFINITY, INFINITY, 1)
    return status
