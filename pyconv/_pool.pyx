"""The C API of pooling (pyconv/_pool.pxd; the contract is written in pyconv/capi.pxd):
max (with indices), average, adaptive average/max pooling over planes, on raw pointers.

The kernels are the kernel set's, chosen at import (pyconv._dispatch): its general
ones (_pooling.pxi: any window, indices, dilation) and, for max pooling without indices
and dilation, its vectorised one (_maxpool.pxi) -- the same values, as pyconv.functional
computes them. _bind_kernel_set takes their C entries from the set's capsules; this
module checks the arguments and passes them on.
"""

from libc.stdint cimport int64_t
from cpython.pycapsule cimport PyCapsule_GetPointer

cdef extern from "_openmp.h" nogil:
    int omp_get_max_threads()


# ---------------------------------------------------------------------------------------
# C API (pyconv/_pool.pxd; the contract is written in pyconv/capi.pxd)
# ---------------------------------------------------------------------------------------

cdef inline int _thread_count(int num_threads) noexcept nogil:
    """num_threads, or OpenMP's own setting (OMP_NUM_THREADS ...) when it is <= 0."""
    if num_threads > 0:
        return num_threads
    num_threads = omp_get_max_threads()
    return num_threads if num_threads > 0 else 1


cdef inline bint _bad_planes(Py_ssize_t planes, Py_ssize_t h, Py_ssize_t wd,
                             Py_ssize_t oh_n, Py_ssize_t ow_n) noexcept nogil:
    return planes < 0 or h < 1 or wd < 1 or oh_n < 1 or ow_n < 1


cdef inline bint _bad_window(Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                             Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh,
                             Py_ssize_t dw) noexcept nogil:
    return kh < 1 or kw < 1 or sh < 1 or sw < 1 or ph < 0 or pw < 0 or dh < 1 or dw < 1


# The kernel set's entries (_bind_kernel_set): the general kernels (_pooling.pxi) and
# the vectorised max pooling (_maxpool.pxi).
ctypedef int (*max_f32_fn)(const float*, float*, int64_t*, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                           Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                           Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, int) noexcept nogil
ctypedef int (*max_f64_fn)(const double*, double*, int64_t*, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                           Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                           Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, int) noexcept nogil
ctypedef int (*avg_f32_fn)(const float*, float*, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                           Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                           Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, bint,
                           Py_ssize_t, int) noexcept nogil
ctypedef int (*avg_f64_fn)(const double*, double*, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                           Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                           Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, bint,
                           Py_ssize_t, int) noexcept nogil
ctypedef int (*adaptive_f32_fn)(const float*, float*, int64_t*, bint, Py_ssize_t, Py_ssize_t,
                                Py_ssize_t, Py_ssize_t, Py_ssize_t, int) noexcept nogil
ctypedef int (*adaptive_f64_fn)(const double*, double*, int64_t*, bint, Py_ssize_t, Py_ssize_t,
                                Py_ssize_t, Py_ssize_t, Py_ssize_t, int) noexcept nogil
ctypedef int (*maxpool_f32_fn)(const float*, float*, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                               Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                               Py_ssize_t, Py_ssize_t, Py_ssize_t, int) noexcept nogil
ctypedef int (*maxpool_f64_fn)(const double*, double*, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                               Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                               Py_ssize_t, Py_ssize_t, Py_ssize_t, int) noexcept nogil
cdef max_f32_fn _max_f32
cdef max_f64_fn _max_f64
cdef avg_f32_fn _avg_f32
cdef avg_f64_fn _avg_f64
cdef adaptive_f32_fn _adaptive_f32
cdef adaptive_f64_fn _adaptive_f64
cdef maxpool_f32_fn _fast_max_f32
cdef maxpool_f64_fn _fast_max_f64


cdef void* _entry(dict api, str name) except NULL:
    return PyCapsule_GetPointer(api[name], ("pyconv." + name).encode())


def _bind_kernel_set(kernels):
    """Point the C API at ``kernels`` (a pyconv._kernels_<set> module)."""
    global _max_f32, _max_f64, _avg_f32, _avg_f64, _adaptive_f32, _adaptive_f64
    global _fast_max_f32, _fast_max_f64
    api = kernels.c_api()
    _max_f32 = <max_f32_fn>_entry(api, "pool_max_f32")
    _max_f64 = <max_f64_fn>_entry(api, "pool_max_f64")
    _avg_f32 = <avg_f32_fn>_entry(api, "pool_avg_f32")
    _avg_f64 = <avg_f64_fn>_entry(api, "pool_avg_f64")
    _adaptive_f32 = <adaptive_f32_fn>_entry(api, "pool_adaptive_f32")
    _adaptive_f64 = <adaptive_f64_fn>_entry(api, "pool_adaptive_f64")
    _fast_max_f32 = <maxpool_f32_fn>_entry(api, "maxpool_f32")
    _fast_max_f64 = <maxpool_f64_fn>_entry(api, "maxpool_f64")


cdef int max_pool2d_f32(const float* x, float* y, int64_t* indices,
                        Py_ssize_t planes, Py_ssize_t h, Py_ssize_t w, Py_ssize_t oh, Py_ssize_t ow,
                        Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                        Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw,
                        int num_threads) noexcept nogil:
    if _bad_planes(planes, h, w, oh, ow) or _bad_window(kh, kw, sh, sw, ph, pw, dh, dw):
        return -2
    if indices == NULL and dh == 1 and dw == 1:
        return _fast_max_f32(x, y, planes, h, w, oh, ow, kh, kw, sh, sw, ph, pw,
                             _thread_count(num_threads))
    return _max_f32(x, y, indices, planes, h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw,
                    _thread_count(num_threads))


cdef int max_pool2d_f64(const double* x, double* y, int64_t* indices,
                        Py_ssize_t planes, Py_ssize_t h, Py_ssize_t w, Py_ssize_t oh, Py_ssize_t ow,
                        Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                        Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw,
                        int num_threads) noexcept nogil:
    if _bad_planes(planes, h, w, oh, ow) or _bad_window(kh, kw, sh, sw, ph, pw, dh, dw):
        return -2
    if indices == NULL and dh == 1 and dw == 1:
        return _fast_max_f64(x, y, planes, h, w, oh, ow, kh, kw, sh, sw, ph, pw,
                             _thread_count(num_threads))
    return _max_f64(x, y, indices, planes, h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw,
                    _thread_count(num_threads))


cdef int avg_pool2d_f32(const float* x, float* y,
                        Py_ssize_t planes, Py_ssize_t h, Py_ssize_t w, Py_ssize_t oh, Py_ssize_t ow,
                        Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                        Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t ph_end, Py_ssize_t pw_end,
                        Py_ssize_t dh, Py_ssize_t dw, bint count_include_pad,
                        Py_ssize_t divisor_override, int num_threads) noexcept nogil:
    if (_bad_planes(planes, h, w, oh, ow) or _bad_window(kh, kw, sh, sw, ph, pw, dh, dw)
            or ph_end < 0 or pw_end < 0):
        return -2
    return _avg_f32(x, y, planes, h, w, oh, ow, kh, kw, sh, sw, ph, pw, ph_end, pw_end,
                    dh, dw, count_include_pad, divisor_override, _thread_count(num_threads))


cdef int avg_pool2d_f64(const double* x, double* y,
                        Py_ssize_t planes, Py_ssize_t h, Py_ssize_t w, Py_ssize_t oh, Py_ssize_t ow,
                        Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                        Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t ph_end, Py_ssize_t pw_end,
                        Py_ssize_t dh, Py_ssize_t dw, bint count_include_pad,
                        Py_ssize_t divisor_override, int num_threads) noexcept nogil:
    if (_bad_planes(planes, h, w, oh, ow) or _bad_window(kh, kw, sh, sw, ph, pw, dh, dw)
            or ph_end < 0 or pw_end < 0):
        return -2
    return _avg_f64(x, y, planes, h, w, oh, ow, kh, kw, sh, sw, ph, pw, ph_end, pw_end,
                    dh, dw, count_include_pad, divisor_override, _thread_count(num_threads))


cdef int adaptive_avg_pool2d_f32(const float* x, float* y, Py_ssize_t planes, Py_ssize_t h,
                                 Py_ssize_t w, Py_ssize_t oh, Py_ssize_t ow,
                                 int num_threads) noexcept nogil:
    if _bad_planes(planes, h, w, oh, ow):
        return -2
    return _adaptive_f32(x, y, NULL, False, planes, h, w, oh, ow, _thread_count(num_threads))


cdef int adaptive_avg_pool2d_f64(const double* x, double* y, Py_ssize_t planes, Py_ssize_t h,
                                 Py_ssize_t w, Py_ssize_t oh, Py_ssize_t ow,
                                 int num_threads) noexcept nogil:
    if _bad_planes(planes, h, w, oh, ow):
        return -2
    return _adaptive_f64(x, y, NULL, False, planes, h, w, oh, ow, _thread_count(num_threads))


cdef int adaptive_max_pool2d_f32(const float* x, float* y, int64_t* indices, Py_ssize_t planes,
                                 Py_ssize_t h, Py_ssize_t w, Py_ssize_t oh, Py_ssize_t ow,
                                 int num_threads) noexcept nogil:
    if _bad_planes(planes, h, w, oh, ow):
        return -2
    return _adaptive_f32(x, y, indices, True, planes, h, w, oh, ow, _thread_count(num_threads))


cdef int adaptive_max_pool2d_f64(const double* x, double* y, int64_t* indices, Py_ssize_t planes,
                                 Py_ssize_t h, Py_ssize_t w, Py_ssize_t oh, Py_ssize_t ow,
                                 int num_threads) noexcept nogil:
    if _bad_planes(planes, h, w, oh, ow):
        return -2
    return _adaptive_f64(x, y, indices, True, planes, h, w, oh, ow, _thread_count(num_threads))


from pyconv import _dispatch  # noqa: E402  (after the definitions; imports _threads only)

_bind_kernel_set(_dispatch.kernels)
