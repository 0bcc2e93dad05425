"""Pooling kernels over planes: max (with indices), average, adaptive average/max.

Every kernel sees the input as independent planes x (P, H, W) -- P = N*C, 1-D pooling
runs as 2-D with H = 1 -- and writes y (P, OH, OW). Contract for the window of output
(i, j) with leading pads ph, pw:

    rows  i*sh - ph + u*dh  for u < kh,   columns  j*sw - pw + v*dw  for v < kw;

taps outside the input are padding: ignored by max, zero for average. A window made
of padding only yields 0 (index -1) -- never -inf or NaN. Max: NaN is the maximum of
any window holding one and its index points at it (the last NaN in row-major order,
as PyTorch's CPU kernel does); indices are flat positions ih*W + iw in the plane.

Data flow: def entry (checks, releases the GIL) -> prange over (plane, row block)
units, each output element owned by one unit (bitwise identical for any thread
count) -> per-row loops over the window taps that lie inside the input.
"""

from libc.stdint cimport int64_t
from cython cimport floating
from cython.parallel cimport prange

from pyconv._common cimport rows_per_unit, tap_range


cdef void _max_rows(const floating* x, floating* y, int64_t* idx,
                    Py_ssize_t h, Py_ssize_t wd, Py_ssize_t oh0, Py_ssize_t oh1, Py_ssize_t ow_n,
                    Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                    Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw) noexcept nogil:
    """Rows [oh0, oh1) of one plane of max pooling; idx may be NULL."""
    cdef Py_ssize_t oh, ow, u, v, ua, ue, va, ve, h0, w0, pos, best_pos
    cdef floating val, best
    for oh in range(oh0, oh1):
        h0 = oh * sh - ph
        tap_range(h0, dh, kh, h, &ua, &ue)  # kernel rows inside the input
        for ow in range(ow_n):
            w0 = ow * sw - pw
            tap_range(w0, dw, kw, wd, &va, &ve)
            best = 0
            best_pos = -1
            if ua < ue and va < ve:
                best_pos = (h0 + ua * dh) * wd + w0 + va * dw
                best = x[best_pos]
                for u in range(ua, ue):
                    for v in range(va, ve):
                        pos = (h0 + u * dh) * wd + w0 + v * dw
                        val = x[pos]
                        if val > best or val != val:  # val != val: NaN wins
                            best = val
                            best_pos = pos
            y[oh * ow_n + ow] = best
            if idx != NULL:
                idx[oh * ow_n + ow] = best_pos


cdef void _avg_rows(const floating* x, floating* y,
                    Py_ssize_t h, Py_ssize_t wd, Py_ssize_t oh0, Py_ssize_t oh1, Py_ssize_t ow_n,
                    Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                    Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t ph_end, Py_ssize_t pw_end,
                    Py_ssize_t dh, Py_ssize_t dw, bint count_include_pad,
                    Py_ssize_t divisor_override) noexcept nogil:
    """Rows [oh0, oh1) of one plane of average pooling.

    Divisor: divisor_override if > 0; else with count_include_pad the taps inside the
    *padded* input (a ceil-mode overhang past the trailing pad is never counted), else
    the taps inside the real input.
    """
    cdef Py_ssize_t oh, ow, u, v, ua, ue, va, ve, pa, pe, qa, qe, h0, w0, count
    cdef floating acc
    for oh in range(oh0, oh1):
        h0 = oh * sh - ph
        tap_range(h0, dh, kh, h, &ua, &ue)
        tap_range(h0 + ph, dh, kh, h + ph + ph_end, &pa, &pe)
        for ow in range(ow_n):
            w0 = ow * sw - pw
            tap_range(w0, dw, kw, wd, &va, &ve)
            acc = 0
            for u in range(ua, ue):
                for v in range(va, ve):
                    acc = acc + x[(h0 + u * dh) * wd + w0 + v * dw]
            if divisor_override > 0:
                count = divisor_override
            elif count_include_pad:
                tap_range(w0 + pw, dw, kw, wd + pw + pw_end, &qa, &qe)
                count = (pe - pa) * (qe - qa)
            else:
                count = (ue - ua) * (ve - va)
            y[oh * ow_n + ow] = acc / count if count > 0 else 0


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
            else:
                acc = 0
                for ih in range(ha, he):
                    for iw in range(wa, we):
                        acc = acc + x[ih * wd + iw]
                acc = acc / ((he - ha) * (we - wa))
            y[oh * ow_n + ow] = acc


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
    cdef Py_ssize_t rows = rows_per_unit(planes, oh_n, num_threads)
    cdef Py_ssize_t blocks = (oh_n + rows - 1) // rows
    cdef const floating* xp = &x[0, 0, 0]
    cdef floating* yp = &y[0, 0, 0]
    cdef Py_ssize_t unit, p, oh0, oh1
    for unit in prange(planes * blocks, nogil=True, num_threads=num_threads, schedule="dynamic"):
        p = unit // blocks
        oh0 = (unit % blocks) * rows
        oh1 = oh0 + rows
        if oh1 > oh_n:
            oh1 = oh_n
        _max_rows(xp + p * h * wd, yp + p * oh_n * ow_n,
                  NULL if ip == NULL else ip + p * oh_n * ow_n,
                  h, wd, oh0, oh1, ow_n, kh, kw, sh, sw, ph, pw, dh, dw)


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
    cdef Py_ssize_t rows = rows_per_unit(planes, oh_n, num_threads)
    cdef Py_ssize_t blocks = (oh_n + rows - 1) // rows
    cdef const floating* xp = &x[0, 0, 0]
    cdef floating* yp = &y[0, 0, 0]
    cdef Py_ssize_t unit, p, oh0, oh1
    for unit in prange(planes * blocks, nogil=True, num_threads=num_threads, schedule="dynamic"):
        p = unit // blocks
        oh0 = (unit % blocks) * rows
        oh1 = oh0 + rows
        if oh1 > oh_n:
            oh1 = oh_n
        _avg_rows(xp + p * h * wd, yp + p * oh_n * ow_n, h, wd, oh0, oh1, ow_n,
                  kh, kw, sh, sw, ph, pw, ph_end, pw_end, dh, dw,
                  count_include_pad, divisor_override)


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
    cdef Py_ssize_t rows = rows_per_unit(planes, oh_n, num_threads)
    cdef Py_ssize_t blocks = (oh_n + rows - 1) // rows
    cdef const floating* xp = &x[0, 0, 0]
    cdef floating* yp = &y[0, 0, 0]
    cdef Py_ssize_t unit, p, oh0, oh1
    for unit in prange(planes * blocks, nogil=True, num_threads=num_threads, schedule="dynamic"):
        p = unit // blocks
        oh0 = (unit % blocks) * rows
        oh1 = oh0 + rows
        if oh1 > oh_n:
            oh1 = oh_n
        _adaptive_rows(xp + p * h * wd, yp + p * oh_n * ow_n,
                       NULL if ip == NULL else ip + p * oh_n * ow_n, is_max,
                       h, wd, oh0, oh1, oh_n, ow_n)
