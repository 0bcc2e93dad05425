# The C-level signature every kernel set exports (pyconv._kernels_<set>.c_api()):
#
#   int conv2d(x, w, bias, y, n, c_in, h, w_in, c_out, kh, kw, oh, ow,
#              sh, sw, ph, pw, dh, dw, groups, lo, hi, num_threads) nogil
#
# y (n, c_out, oh, ow) = clamp(bias + correlation(x (n, c_in, h, w_in),
# w (c_out, c_in/groups, kh, kw)), lo, hi) on raw C-contiguous arrays, (ph, pw) the
# leading zero pads. Returns 0, or -1 when a workspace cannot be allocated.

ctypedef int (*conv2d_f32_fn)(const float*, const float*, const float*, float*,
                              Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                              Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                              Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                              Py_ssize_t, Py_ssize_t, Py_ssize_t,
                              float, float, int) noexcept nogil

ctypedef int (*conv2d_f64_fn)(const double*, const double*, const double*, double*,
                              Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                              Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                              Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                              Py_ssize_t, Py_ssize_t, Py_ssize_t,
                              double, double, int) noexcept nogil
