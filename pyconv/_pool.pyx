"""Pooling kernels over planes: max (with indices), average, adaptive average/max.

Every kernel sees the input as independent planes x (P, H, W) -- P = N*C, 1-D pooling
runs as 2-D with H = 1 -- and writes y (P, OH, OW). Contract for the window of output
(i, j) with leading pads ph, pw:

    rows  i*sh - ph + u*dh  for u < kh,   columns  j*sw - pw + v*dw  for v < kw;

taps outside the input are padding: ignored by max, zero for average. A window made
of padding only yields 0 (index -1) -- never -inf or NaN. Max: NaN is the maximum of
any window holding one and its index points at it (the last NaN in row-major order,
as PyTorch's CPU kernel does); indices are flat positions ih*W + iw in the plane.

Data flow: def entry (checks, releases the GIL) -> cdef nogil function on raw
pointers (the same one behind the C API: column tables malloc'd once per call) ->
prange over (plane, row block) units, each output element owned by one unit
(bitwise identical for any thread count), guided schedule (a global pool of a batch
is 16k units of 49 inputs each: handing them out one by one, schedule dynamic, cost
more than the sums) -> per output row, one pass per kernel tap
over the row's output columns that tap reads inside the input (no per-element
bounds checks; the stride-1 passes vectorise).

C API: _pool.pxd declares max_pool2d / avg_pool2d / adaptive_avg_pool2d /
adaptive_max_pool2d for float (_f32) and double (_f64); the contract is in capi.pxd.
"""

from libc.math cimport INFINITY
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc
from cython cimport floating
from cython.parallel cimport prange

from pyconv._common cimport block_end, rows_per_unit, tap_range

cdef extern from "_openmp.h" nogil:
    int omp_get_max_threads()


cdef Py_ssize_t* _column_tables(Py_ssize_t wd, Py_ssize_t ow_n, Py_ssize_t kw, Py_ssize_t sw,
                                Py_ssize_t pw, Py_ssize_t pw_end, Py_ssize_t dw) noexcept nogil:
    """One malloc'd block (the caller frees it; NULL when out of memory) of five tables:

        [0, kw)        lo[v]           per tap v, the output columns [lo, hi) where it
        [kw, 2kw)      hi[v]           reads real input
        then ow_n each cols_in[ow]     per output column: how many taps read real input,
                       cols_padded[ow] how many read the padded input,
                       first_col[ow]   the first real input column it reads (-1 if none)

    Computed once per call (the divisions stay out of the per-element loops) and
    shared by every plane and row."""
    cdef Py_ssize_t* t = <Py_ssize_t*>malloc((2 * kw + 3 * ow_n) * sizeof(Py_ssize_t))
    if t == NULL:
        return NULL
    cdef Py_ssize_t* lo = t
    cdef Py_ssize_t* hi = t + kw
    cdef Py_ssize_t* cols_in = t + 2 * kw
    cdef Py_ssize_t* cols_padded = cols_in + ow_n
    cdef Py_ssize_t* first_col = cols_padded + ow_n
    cdef Py_ssize_t v, ow, a, e
    for ow in range(ow_n):
        cols_in[ow] = 0
        first_col[ow] = -1
    for v in range(kw - 1, -1, -1):  # backwards: the last write is the first tap
        tap_range(v * dw - pw, sw, ow_n, wd, &a, &e)
        for ow in range(a, e):
            first_col[ow] = ow * sw + v * dw - pw
    for v in range(kw):
        tap_range(v * dw - pw, sw, ow_n, wd, &a, &e)
        lo[v] = a
        hi[v] = e
        for ow in range(a, e):
            cols_in[ow] += 1
    for ow in range(ow_n):
        tap_range(ow * sw, dw, kw, wd + pw + pw_end, &a, &e)  # taps inside the padded row
        cols_padded[ow] = e - a
    return t


cdef void _max_rows(const floating* x, floating* y, int64_t* idx,
                    Py_ssize_t h, Py_ssize_t wd, Py_ssize_t oh0, Py_ssize_t oh1, Py_ssize_t ow_n,
                    Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                    Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw,
                    const Py_ssize_t* col_lo, const Py_ssize_t* col_hi,
                    const Py_ssize_t* cols_in, const Py_ssize_t* first_col) noexcept nogil:
    """Rows [oh0, oh1) of one plane of max pooling; idx may be NULL.

    Tap-major: for each kernel tap (u, v) in row-major order, one pass over the
    output row -- the candidates of every output are still seen in row-major window
    order, so ties keep the first maximum and NaN the last NaN, as per element.
    [col_lo[v], col_hi[v]) are the output columns whose tap v reads real input and
    cols_in[ow] counts them (0: the window holds padding only), first_col[ow] is the
    first input column it reads.
    """
    cdef Py_ssize_t oh, ow, u, v, ih, h0, off, rows, ua, ue
    cdef floating val, cur
    cdef bint take
    cdef floating* yr
    cdef int64_t* ir
    cdef const floating* xr
    for oh in range(oh0, oh1):
        yr = y + oh * ow_n
        ir = NULL if idx == NULL else idx + oh * ow_n
        h0 = oh * sh - ph
        for ow in range(ow_n):
            yr[ow] = -INFINITY
        if ir != NULL:
            # Start each index at the window's first real element, so that a window
            # of -inf points there (as PyTorch's) and the loop needs no "unset" test.
            tap_range(h0, dh, kh, h, &ua, &ue)
            for ow in range(ow_n):
                ir[ow] = (h0 + ua * dh) * wd + first_col[ow] if ua < ue and cols_in[ow] else -1
        rows = 0
        for u in range(kh):
            ih = h0 + u * dh
            if ih < 0 or ih >= h:
                continue
            rows = rows + 1
            xr = x + ih * wd
            for v in range(kw):
                off = v * dw - pw  # output column ow reads input column ow*sw + off
                if ir == NULL:
                    for ow in range(col_lo[v], col_hi[v]):
                        val = xr[ow * sw + off]
                        cur = yr[ow]
                        yr[ow] = val if (val > cur or val != val) else cur  # NaN wins
                else:  # selects, not branches: random data would mispredict half of them
                    for ow in range(col_lo[v], col_hi[v]):
                        val = xr[ow * sw + off]
                        cur = yr[ow]
                        take = (val > cur) | (val != val)
                        yr[ow] = val if take else cur
                        ir[ow] = ih * wd + ow * sw + off if take else ir[ow]
        for ow in range(ow_n):
            if rows == 0 or cols_in[ow] == 0:  # padding only: 0, never -inf
                yr[ow] = 0


cdef void _avg_rows(const floating* x, floating* y,
                    Py_ssize_t h, Py_ssize_t wd, Py_ssize_t oh0, Py_ssize_t oh1, Py_ssize_t ow_n,
                    Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                    Py_ssize_t ph, Py_ssize_t ph_end, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw,
                    const Py_ssize_t* col_lo, const Py_ssize_t* col_hi,
                    const Py_ssize_t* cols_in, const Py_ssize_t* cols_padded,
                    bint count_include_pad, Py_ssize_t divisor_override) noexcept nogil:
    """Rows [oh0, oh1) of one plane of average pooling, tap-major like _max_rows.

    Divisor: divisor_override if > 0; else with count_include_pad the taps inside the
    *padded* input (a ceil-mode overhang past the trailing pad is never counted), else
    the taps inside the real input; 0 taps give 0.
    """
    cdef Py_ssize_t oh, ow, u, v, ih, h0, off, rows_in, rows_padded, count
    cdef floating* yr
    cdef const floating* xr
    for oh in range(oh0, oh1):
        yr = y + oh * ow_n
        for ow in range(ow_n):
            yr[ow] = 0
        h0 = oh * sh - ph
        rows_in = 0
        rows_padded = 0
        for u in range(kh):
            ih = h0 + u * dh
            if ih < h + ph_end:  # ih >= -ph always
                rows_padded = rows_padded + 1
            if ih < 0 or ih >= h:
                continue
            rows_in = rows_in + 1
            xr = x + ih * wd
            for v in range(kw):
                off = v * dw - pw
                for ow in range(col_lo[v], col_hi[v]):
                    yr[ow] = yr[ow] + xr[ow * sw + off]
        for ow in range(ow_n):
            if divisor_override > 0:
                count = divisor_override
            elif count_include_pad:
                count = rows_padded * cols_padded[ow]
            else:
                count = rows_in * cols_in[ow]
            yr[ow] = yr[ow] / count if count > 0 else 0


cdef inline floating _sum(const floating* x, Py_ssize_t n) noexcept nogil:
    """x[0] + ... + x[n-1] as 8 interleaved partial sums, added pairwise at the end:
    a fixed order (the same result for any thread count) that the compiler
    vectorises -- one running sum is a chain of n dependent adds (4 cycles each)."""
    cdef floating s[8]
    cdef Py_ssize_t i = 0, j
    for j in range(8):
        s[j] = 0
    while i + 8 <= n:
        for j in range(8):
            s[j] = s[j] + x[i + j]
        i = i + 8
    for j in range(n - i):
        s[j] = s[j] + x[i + j]
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]))


cdef void _adaptive_rows(const floating* x, floating* y, int64_t* idx, bint is_max,
                         Py_ssize_t h, Py_ssize_t wd, Py_ssize_t oh0, Py_ssize_t oh1,
                         Py_ssize_t oh_n, Py_ssize_t ow_n) noexcept nogil:
    """Rows [oh0, oh1) of one plane of adaptive pooling.

    Output i covers input rows [floor(i*H/OH), ceil((i+1)*H/OH)), likewise columns;
    windows are never empty. idx (max only) may be NULL.
    """
    cdef Py_ssize_t oh, ow, ih, iw, ha, he, wa, we, pos, best_pos
    cdef floating acc, val
    for oh in range(oh0, oh1):
        ha = (oh * h) // oh_n
        he = ((oh + 1) * h + oh_n - 1) // oh_n
        for ow in range(ow_n):
            wa = (ow * wd) // ow_n
            we = ((ow + 1) * wd + ow_n - 1) // ow_n
            if is_max:
                best_pos = ha * wd + wa
                acc = x[best_pos]
                for ih in range(ha, he):
                    for iw in range(wa, we):
                        pos = ih * wd + iw
                        val = x[pos]
                        if val > acc or val != val:
                            acc = val
                            best_pos = pos
                if idx != NULL:
                    idx[oh * ow_n + ow] = best_pos
            elif wa == 0 and we == wd:  # whole rows (global pooling): one contiguous run
                acc = _sum(x + ha * wd, (he - ha) * wd) / ((he - ha) * wd)
            else:
                acc = 0
                for ih in range(ha, he):
                    acc = acc + _sum(x + ih * wd + wa, we - wa)
                acc = acc / ((he - ha) * (we - wa))
            y[oh * ow_n + ow] = acc


cdef int _max_pool2d(const floating* xp, floating* yp, int64_t* ip,
                     Py_ssize_t planes, Py_ssize_t h, Py_ssize_t wd, Py_ssize_t oh_n, Py_ssize_t ow_n,
                     Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                     Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw,
                     int num_threads) noexcept nogil:
    """Max pooling of planes xp (planes, h, wd) into yp (planes, oh_n, ow_n), indices
    into ip (same shape) unless NULL. Arguments must be valid; 0, or -1 when the
    column tables cannot be allocated (nothing written)."""
    cdef Py_ssize_t* t = _column_tables(wd, ow_n, kw, sw, pw, 0, dw)
    if t == NULL:
        return -1
    cdef Py_ssize_t rows = rows_per_unit(planes, oh_n, num_threads)
    cdef Py_ssize_t blocks = (oh_n + rows - 1) // rows
    cdef Py_ssize_t unit, p, oh0, oh1
    for unit in prange(planes * blocks, num_threads=num_threads, schedule="guided"):
        p = unit // blocks
        oh0 = (unit % blocks) * rows
        oh1 = block_end(oh0, rows, oh_n)
        _max_rows(xp + p * h * wd, yp + p * oh_n * ow_n,
                  NULL if ip == NULL else ip + p * oh_n * ow_n,
                  h, wd, oh0, oh1, ow_n, kh, kw, sh, sw, ph, pw, dh, dw,
                  t, t + kw, t + 2 * kw, t + 2 * kw + 2 * ow_n)
    free(t)
    return 0


cdef int _avg_pool2d(const floating* xp, floating* yp,
                     Py_ssize_t planes, Py_ssize_t h, Py_ssize_t wd, Py_ssize_t oh_n, Py_ssize_t ow_n,
                     Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                     Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t ph_end, Py_ssize_t pw_end,
                     Py_ssize_t dh, Py_ssize_t dw, bint count_include_pad,
                     Py_ssize_t divisor_override, int num_threads) noexcept nogil:
    """Average pooling of planes xp (planes, h, wd) into yp (planes, oh_n, ow_n).
    Arguments must be valid; 0, or -1 when the column tables cannot be allocated."""
    cdef Py_ssize_t* t = _column_tables(wd, ow_n, kw, sw, pw, pw_end, dw)
    if t == NULL:
        return -1
    cdef Py_ssize_t rows = rows_per_unit(planes, oh_n, num_threads)
    cdef Py_ssize_t blocks = (oh_n + rows - 1) // rows
    cdef Py_ssize_t unit, p, oh0, oh1
    for unit in prange(planes * blocks, num_threads=num_threads, schedule="guided"):
        p = unit // blocks
        oh0 = (unit % blocks) * rows
        oh1 = block_end(oh0, rows, oh_n)
        _avg_rows(xp + p * h * wd, yp + p * oh_n * ow_n, h, wd, oh0, oh1, ow_n,
                  kh, kw, sh, sw, ph, ph_end, pw, dh, dw,
                  t, t + kw, t + 2 * kw, t + 2 * kw + ow_n,
                  count_include_pad, divisor_override)
    free(t)
    return 0


cdef int _adaptive_pool2d(const floating* xp, floating* yp, int64_t* ip, bint is_max,
                          Py_ssize_t planes, Py_ssize_t h, Py_ssize_t wd,
                          Py_ssize_t oh_n, Py_ssize_t ow_n, int num_threads) noexcept nogil:
    """Adaptive average (is_max False) or max pooling of xp (planes, h, wd) into
    yp (planes, oh_n, ow_n); indices into ip (max only) unless NULL. Always 0."""
    cdef Py_ssize_t rows = rows_per_unit(planes, oh_n, num_threads)
    cdef Py_ssize_t blocks = (oh_n + rows - 1) // rows
    cdef Py_ssize_t unit, p, oh0, oh1
    for unit in prange(planes * blocks, num_threads=num_threads, schedule="guided"):
        p = unit // blocks
        oh0 = (unit % blocks) * rows
        oh1 = block_end(oh0, rows, oh_n)
        _adaptive_rows(xp + p * h * wd, yp + p * oh_n * ow_n,
                       NULL if ip == NULL else ip + p * oh_n * ow_n, is_max,
                       h, wd, oh0, oh1, oh_n, ow_n)
    return 0


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


cdef int max_pool2d_f32(const float* x, float* y, int64_t* indices,
                        Py_ssize_t planes, Py_ssize_t h, Py_ssize_t w, Py_ssize_t oh, Py_ssize_t ow,
                        Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                        Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw,
                        int num_threads) noexcept nogil:
    if _bad_planes(planes, h, w, oh, ow) or _bad_window(kh, kw, sh, sw, ph, pw, dh, dw):
        return -2
    return _max_pool2d(x, y, indices, planes, h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw,
                       _thread_count(num_threads))


cdef int max_pool2d_f64(const double* x, double* y, int64_t* indices,
                        Py_ssize_t planes, Py_ssize_t h, Py_ssize_t w, Py_ssize_t oh, Py_ssize_t ow,
                        Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                        Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw,
                        int num_threads) noexcept nogil:
    if _bad_planes(planes, h, w, oh, ow) or _bad_window(kh, kw, sh, sw, ph, pw, dh, dw):
        return -2
    return _max_pool2d(x, y, indices, planes, h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw,
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
    return _avg_pool2d(x, y, planes, h, w, oh, ow, kh, kw, sh, sw, ph, pw, ph_end, pw_end,
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
    return _avg_pool2d(x, y, planes, h, w, oh, ow, kh, kw, sh, sw, ph, pw, ph_end, pw_end,
                       dh, dw, count_include_pad, divisor_override, _thread_count(num_threads))


cdef int adaptive_avg_pool2d_f32(const float* x, float* y, Py_ssize_t planes, Py_ssize_t h,
                                 Py_ssize_t w, Py_ssize_t oh, Py_ssize_t ow,
                                 int num_threads) noexcept nogil:
    if _bad_planes(planes, h, w, oh, ow):
        return -2
    return _adaptive_pool2d(x, y, NULL, False, planes, h, w, oh, ow, _thread_count(num_threads))


cdef int adaptive_avg_pool2d_f64(const double* x, double* y, Py_ssize_t planes, Py_ssize_t h,
                                 Py_ssize_t w, Py_ssize_t oh, Py_ssize_t ow,
                                 int num_threads) noexcept nogil:
    if _bad_planes(planes, h, w, oh, ow):
        return -2
    return _adaptive_pool2d(x, y, NULL, False, planes, h, w, oh, ow, _thread_count(num_threads))


cdef int adaptive_max_pool2d_f32(const float* x, float* y, int64_t* indices, Py_ssize_t planes,
                                 Py_ssize_t h, Py_ssize_t w, Py_ssize_t oh, Py_ssize_t ow,
                                 int num_threads) noexcept nogil:
    if _bad_planes(planes, h, w, oh, ow):
        return -2
    return _adaptive_pool2d(x, y, indices, True, planes, h, w, oh, ow,
                            _thread_count(num_threads))


cdef int adaptive_max_pool2d_f64(const double* x, double* y, int64_t* indices, Py_ssize_t planes,
                                 Py_ssize_t h, Py_ssize_t w, Py_ssize_t oh, Py_ssize_t ow,
                                 int num_threads) noexcept nogil:
    if _bad_planes(planes, h, w, oh, ow):
        return -2
    return _adaptive_pool2d(x, y, indices, True, planes, h, w, oh, ow,
                            _thread_count(num_threads))


# ---------------------------------------------------------------------------------------
# Python entries (pyconv.functional)
# ---------------------------------------------------------------------------------------

def max_pool2d_forward(const floating[:, :, ::1] x, floating[:, :, ::1] y, int64_t[:, :, ::1] indices,
                       Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                       Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw,
                       int num_threads):
    """Max pooling of planes x (P, H, W) into y (P, OH, OW); indices (P, OH, OW) or None.

    ph, pw are the leading pads; the trailing ones are implied by y's shape.
    """
    cdef Py_ssize_t planes = x.shape[0], h = x.shape[1], wd = x.shape[2]
    cdef Py_ssize_t oh_n = y.shape[1], ow_n = y.shape[2]
    if y.shape[0] != planes or (indices is not None and (
            indices.shape[0] != planes or indices.shape[1] != oh_n or indices.shape[2] != ow_n)):
        raise ValueError("max_pool2d_forward: inconsistent shapes")
    cdef int64_t* ip = NULL if indices is None else &indices[0, 0, 0]
    cdef int status
    with nogil:
        status = _max_pool2d(&x[0, 0, 0], &y[0, 0, 0], ip, planes, h, wd, oh_n, ow_n,
                             kh, kw, sh, sw, ph, pw, dh, dw, num_threads)
    if status != 0:
        raise MemoryError("max_pool2d_forward: cannot allocate the column tables")


def avg_pool2d_forward(const floating[:, :, ::1] x, floating[:, :, ::1] y,
                       Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                       Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t ph_end, Py_ssize_t pw_end,
                       Py_ssize_t dh, Py_ssize_t dw, bint count_include_pad,
                       Py_ssize_t divisor_override, int num_threads):
    """Average pooling of planes x (P, H, W) into y (P, OH, OW).

    (ph, ph_end), (pw, pw_end) are the leading and trailing pads; divisor_override <= 0
    means none.
    """
    cdef Py_ssize_t planes = x.shape[0], h = x.shape[1], wd = x.shape[2]
    cdef Py_ssize_t oh_n = y.shape[1], ow_n = y.shape[2]
    if y.shape[0] != planes:
        raise ValueError("avg_pool2d_forward: inconsistent shapes")
    cdef int status
    with nogil:
        status = _avg_pool2d(&x[0, 0, 0], &y[0, 0, 0], planes, h, wd, oh_n, ow_n,
                             kh, kw, sh, sw, ph, pw, ph_end, pw_end, dh, dw,
                             count_include_pad, divisor_override, num_threads)
    if status != 0:
        raise MemoryError("avg_pool2d_forward: cannot allocate the column tables")


def adaptive_pool2d_forward(const floating[:, :, ::1] x, floating[:, :, ::1] y,
                            int64_t[:, :, ::1] indices, bint is_max, int num_threads):
    """Adaptive average (is_max False) or max pooling of x (P, H, W) into y (P, OH, OW);
    indices (P, OH, OW) or None, for max only."""
    cdef Py_ssize_t planes = x.shape[0], h = x.shape[1], wd = x.shape[2]
    cdef Py_ssize_t oh_n = y.shape[1], ow_n = y.shape[2]
    if y.shape[0] != planes or (indices is not None and (
            indices.shape[0] != planes or indices.shape[1] != oh_n or indices.shape[2] != ow_n)):
        raise ValueError("adaptive_pool2d_forward: inconsistent shapes")
    cdef int64_t* ip = NULL if indices is None else &indices[0, 0, 0]
    with nogil:
        _adaptive_pool2d(&x[0, 0, 0], &y[0, 0, 0], ip, is_max, planes, h, wd, oh_n, ow_n,
                         num_threads)
