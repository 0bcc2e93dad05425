# C API of pyconv._conv: correlation and transposed convolution on raw pointers.
# The contract (shapes, layouts, pads, clamp, threads, status) is written once, in
# pyconv/capi.pxd -- cimport from there: `from pyconv.capi cimport conv2d_f32`.

cdef int conv2d_f32(const float* x, const float* w, const float* bias, float* y,
                    Py_ssize_t n, Py_ssize_t c_in, Py_ssize_t h, Py_ssize_t w_in,
                    Py_ssize_t c_out, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t oh, Py_ssize_t ow,
                    Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                    Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups,
                    float lo, float hi, int num_threads) noexcept nogil

cdef int conv2d_f64(const double* x, const double* w, const double* bias, double* y,
                    Py_ssize_t n, Py_ssize_t c_in, Py_ssize_t h, Py_ssize_t w_in,
                    Py_ssize_t c_out, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t oh, Py_ssize_t ow,
                    Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                    Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups,
                    double lo, double hi, int num_threads) noexcept nogil

cdef int conv_transpose2d_f32(const float* x, const float* w, const float* bias, float* y,
                              Py_ssize_t n, Py_ssize_t c_in, Py_ssize_t h, Py_ssize_t w_in,
                              Py_ssize_t c_out, Py_ssize_t kh, Py_ssize_t kw,
                              Py_ssize_t oh, Py_ssize_t ow,
                              Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                              Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups,
                              float lo, float hi, int num_threads) noexcept nogil

cdef int conv_transpose2d_f64(const double* x, const double* w, const double* bias, double* y,
                              Py_ssize_t n, Py_ssize_t c_in, Py_ssize_t h, Py_ssize_t w_in,
                              Py_ssize_t c_out, Py_ssize_t kh, Py_ssize_t kw,
                              Py_ssize_t oh, Py_ssize_t ow,
                              Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                              Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups,
                              double lo, double hi, int num_threads) noexcept nogil
