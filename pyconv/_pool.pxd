# C API of pyconv._pool: pooling on raw pointers. The contract (shapes, layouts, pads,
# threads, status) is written once, in pyconv/capi.pxd -- cimport from there:
# `from pyconv.capi cimport max_pool2d_f32`.

from libc.stdint cimport int64_t

cdef int max_pool2d_f32(const float* x, float* y, int64_t* indices,
                        Py_ssize_t planes, Py_ssize_t h, Py_ssize_t w, Py_ssize_t oh, Py_ssize_t ow,
                        Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                        Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw,
                        int num_threads) noexcept nogil
cdef int max_pool2d_f64(const double* x, double* y, int64_t* indices,
                        Py_ssize_t planes, Py_ssize_t h, Py_ssize_t w, Py_ssize_t oh, Py_ssize_t ow,
                        Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                        Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw,
                        int num_threads) noexcept nogil

cdef int avg_pool2d_f32(const float* x, float* y,
                        Py_ssize_t planes, Py_ssize_t h, Py_ssize_t w, Py_ssize_t oh, Py_ssize_t ow,
                        Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                        Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t ph_end, Py_ssize_t pw_end,
                        Py_ssize_t dh, Py_ssize_t dw, bint count_include_pad,
                        Py_ssize_t divisor_override, int num_threads) noexcept nogil
cdef int avg_pool2d_f64(const double* x, double* y,
                        Py_ssize_t planes, Py_ssize_t h, Py_ssize_t w, Py_ssize_t oh, Py_ssize_t ow,
                        Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                        Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t ph_end, Py_ssize_t pw_end,
                        Py_ssize_t dh, Py_ssize_t dw, bint count_include_pad,
                        Py_ssize_t divisor_override, int num_threads) noexcept nogil

cdef int adaptive_avg_pool2d_f32(const float* x, float* y, Py_ssize_t planes, Py_ssize_t h,
                                 Py_ssize_t w, Py_ssize_t oh, Py_ssize_t ow,
                                 int num_threads) noexcept nogil
cdef int adaptive_avg_pool2d_f64(const double* x, double* y, Py_ssize_t planes, Py_ssize_t h,
                                 Py_ssize_t w, Py_ssize_t oh, Py_ssize_t ow,
                                 int num_threads) noexcept nogil

cdef int adaptive_max_pool2d_f32(const float* x, float* y, int64_t* indices, Py_ssize_t planes,
                                 Py_ssize_t h, Py_ssize_t w, Py_ssize_t oh, Py_ssize_t ow,
                                 int num_threads) noexcept nogil
cdef int adaptive_max_pool2d_f64(const double* x, double* y, int64_t* indices, Py_ssize_t planes,
                                 Py_ssize_t h, Py_ssize_t w, Py_ssize_t oh, Py_ssize_t ow,
                                 int num_threads) noexcept nogil
