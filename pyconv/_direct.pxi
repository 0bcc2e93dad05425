# Direct correlation: the fast path for layers with few output channels per group
# (depthwise 3x3 above all), where a GEMM tile would be mostly padding.
#
# Included by each kernel-set module after _igemm.pxi (it uses its _aligned_malloc),
# so it is compiled once per ISA. The contract is pyconv._conv's (2-D correlation,
# any groups, stride, dilation, leading pads ph/pw, fused bias + clamp):
#
#     y[n, o, i, j] = clamp(b[o] + sum_{c, u, v} w[o, c, u, v] * x[n, g*C_g + c, i*sh - ph + u*dh, j*sw - pw + v*dw],
#                           lo, hi)
#
#   conv2d_direct                 def: checks, releases the GIL
#    '- direct_conv2d             raw C-level entry (also a capsule: c_api_direct)
#        |- depthwise float32 on AVX-512, at most DWCL_MAX_OW output columns:
#        |    _direct_dwcl            prange over (image, block of VL channels): the
#        |                            block channels-last, one channel per lane
#        |                            (pyconv_dwcl_*, _direct.h; the same sums)
#        '- prange over work units     unit = (image, group, block of output rows), or
#             |                        several whole (image, group) planes when they
#             |                        are small; each output element is owned by one
#             |                        unit and summed in one fixed order: bitwise
#             |                        identical for any thread count
#             '- _direct_rows: per chunk of output rows (its input rows fit
#                DIRECT_BUDGET) and block of input channels (all of them, unless a
#                band of DIRECT_MIN_ROWS rows of each would not fit):
#                  _pack_rows          the band: each input row the chunk reads, copied
#                                      once into a per-thread buffer, zero-padded left
#                                      and right and split into stride phases, so that
#                                      every tap reads a unit-stride vector; rows of
#                                      zeros for the padding rows
#                  for each output channel of the group:
#                    pyconv_direct_rows_*   the register tiles (_direct.h): all taps
#                                      of all the block's channels summed in
#                                      registers, + bias and clamp in the one store
#
# Why pack: the padding then costs no branch in the tiles, stride 2 reads contiguous
# vectors, and the last vector of a row reads zeros instead of past the input. The
# band is re-read from L1 by every tap row, by up to two output rows per input row at
# stride 2 and three at stride 1, and by every output channel of the group (channel
# multipliers). Workspace per thread: the band, <= DIRECT_BUDGET bytes except for
# rows too wide for it -- bounded by the budget, never by the image.

from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset
from cython cimport floating
from cython.parallel cimport parallel, prange
from cpython.pycapsule cimport PyCapsule_New

from pyconv._common cimport block_end, rows_per_unit, tap_range

cdef extern from "_direct.h" nogil:
    void pyconv_direct_pack1_f32(float* d, int64_t ds, const float* s, int64_t ss,
                                 int64_t rows, int64_t n)
    void pyconv_direct_pack1_f64(double* d, int64_t ds, const double* s, int64_t ss,
                                 int64_t rows, int64_t n)
    void pyconv_direct_pack2_f32(float* d, int64_t ds, int64_t ps, const float* s, int64_t ss,
                                 int64_t rows, int64_t n,
                                 int64_t lo0, int64_t hi0, int64_t lo1, int64_t hi1)
    void pyconv_direct_pack2_f64(double* d, int64_t ds, int64_t ps, const double* s, int64_t ss,
                                 int64_t rows, int64_t n,
                                 int64_t lo0, int64_t hi0, int64_t lo1, int64_t hi1)
    void pyconv_direct_zero_f32(float* p, int64_t n)
    void pyconv_direct_zero_f64(double* p, int64_t n)
    void pyconv_direct_rows_f32(const float* X, int64_t rs, int64_t cs, int64_t nc,
                                int64_t kh, int64_t kw, int64_t sh, int64_t dh,
                                const int64_t* off, const float* W, float* Y, int64_t ow,
                                int64_t nrows, const float* yend, int accumulate, int finish,
                                float bias, float lo, float hi)
    void pyconv_dwcl_f32(const float* T, int64_t tw, const float* W, const float* B,
                         int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t dh, int64_t dw,
                         float* O, int64_t oh, int64_t ow, float lo, float hi)
    void pyconv_dwcl_f64(const double* T, int64_t tw, const double* W, const double* B,
                         int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t dh, int64_t dw,
                         double* O, int64_t oh, int64_t ow, double lo, double hi)
    void pyconv_dwcl_in_f32(float* T, int64_t tw, const float* x, int64_t cs, int64_t ws,
                            int64_t nl, int64_t nc, int64_t ph, int64_t pw, int64_t r0, int64_t r1)
    void pyconv_dwcl_in_f64(double* T, int64_t tw, const double* x, int64_t cs, int64_t ws,
                            int64_t nl, int64_t nc, int64_t ph, int64_t pw, int64_t r0, int64_t r1)
    int PYCONV_DWCL_F32
    void pyconv_dwcl_out_f32(float* y, int64_t cs, int64_t nl, const float* O, int64_t np)
    void pyconv_dwcl_out_f64(double* y, int64_t cs, int64_t nl, const double* O, int64_t np)
    void pyconv_direct_rows_f64(const double* X, int64_t rs, int64_t cs, int64_t nc,
                                int64_t kh, int64_t kw, int64_t sh, int64_t dh,
                                const int64_t* off, const double* W, double* Y, int64_t ow,
                                int64_t nrows, const double* yend, int accumulate, int finish,
                                double bias, double lo, double hi)

# DIRECT_BUDGET: bytes of packed input rows per thread -- the band stays in L1 while
# the tiles read it (rows of a 56x56 stride-1 plane: 13 KiB). DIRECT_MIN_ROWS:
# output rows per chunk before input channels are split into blocks -- fewer would
# re-pack the rows that consecutive chunks share too often.
cdef enum:
    DIRECT_BUDGET = 32 * 1024
    DIRECT_MIN_ROWS = 8

DIRECT_BAND_BUDGET = DIRECT_BUDGET
DIRECT_MIN_CHUNK_ROWS = DIRECT_MIN_ROWS


cdef inline Py_ssize_t _band_rows(Py_ssize_t rows, Py_ssize_t sh, Py_ssize_t span) noexcept nogil:
    """Input rows (padding rows included) that `rows` consecutive output rows read."""
    return (rows - 1) * sh + span


cdef void _pack_rows(const floating* x, floating* dst, Py_ssize_t rows, Py_ssize_t wd,
                     Py_ssize_t row_len, const Py_ssize_t* cols, Py_ssize_t pw, Py_ssize_t sw,
                     Py_ssize_t stride, Py_ssize_t x_off, Py_ssize_t x_size) noexcept nogil:
    """Pack `rows` consecutive input rows (x, wd apart, x_off values into an input
    array of x_size) into band rows (dst, row_len apart):

        dst[r*row_len + q*stride + t] = x[r*wd + t*sw + q - pw]   q < sw, t in [cols[2q], cols[2q+1])

    the t that read inside the input row. Padding positions are never written but
    with zeros (the band is zeroed when allocated), nor is anything past a phase's
    slack. Strides 1 and 2 go by whole vectors (pyconv_direct_pack*), but for the
    rows at either end of the input array, where those would read outside it."""
    cdef Py_ssize_t vl = _vl(<floating>0), q, r, t, a = 0, n = 0, first = 0, last = 0
    cdef Py_ssize_t lo = rows, hi = rows
    cdef floating* d
    cdef const floating* xr
    if sw <= 2:
        # Columns a .. a + n of each phase in one pass, the union of their runs;
        # whole vectors read x[first .. last) around each row (first >= -1).
        a = cols[0] if sw == 1 or cols[0] < cols[2] else cols[2]
        n = (cols[1] if sw == 1 or cols[1] > cols[3] else cols[3]) - a
        first = sw * a - pw
        last = first + sw * ((n + vl - 1) // vl * vl)
        if 0 < n < 1 << 30:
            lo = 0
            while lo < rows and x_off + lo * wd + first < 0:
                lo = lo + 1
            while hi > lo and x_off + (hi - 1) * wd + last > x_size:
                hi = hi - 1
    if hi > lo:
        if sw == 1:
            if floating is float:
                pyconv_direct_pack1_f32(dst + lo * row_len + a, row_len, x + lo * wd + first, wd,
                                        hi - lo, n)
            else:
                pyconv_direct_pack1_f64(dst + lo * row_len + a, row_len, x + lo * wd + first, wd,
                                        hi - lo, n)
        else:
            if floating is float:
                pyconv_direct_pack2_f32(dst + lo * row_len + a, row_len, stride, x + lo * wd + first,
                                        wd, hi - lo, n, cols[0] - a, cols[1] - a, cols[2] - a,
                                        cols[3] - a)
            else:
                pyconv_direct_pack2_f64(dst + lo * row_len + a, row_len, stride, x + lo * wd + first,
                                        wd, hi - lo, n, cols[0] - a, cols[1] - a, cols[2] - a,
                                        cols[3] - a)
    for r in range(rows):
        if lo <= r < hi:
            continue
        xr = x + r * wd
        for q in range(sw):
            d = dst + r * row_len + q * stride
            for t in range(cols[2 * q], cols[2 * q + 1]):
                d[t] = xr[t * sw + q - pw]


cdef void _direct_rows(const floating* xg, const floating* wg, const floating* bg, floating* yg,
                       Py_ssize_t c_in, Py_ssize_t c_out_g, Py_ssize_t h, Py_ssize_t wd,
                       Py_ssize_t oh_n, Py_ssize_t ow_n, Py_ssize_t kh, Py_ssize_t kw,
                       Py_ssize_t sh, Py_ssize_t dh, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t sw,
                       Py_ssize_t oh0, Py_ssize_t oh1, Py_ssize_t chunk, Py_ssize_t cb,
                       floating* band, Py_ssize_t stride, const Py_ssize_t* cols,
                       const int64_t* off, Py_ssize_t xg_off, Py_ssize_t x_size,
                       floating lo, floating hi) noexcept nogil:
    """Rows [oh0, oh1) of the c_out_g output planes of one group (one work unit).

    xg: the group's input channels (c_in, h, wd) of one image, xg_off values into an
    input array of x_size values; wg, bg: the group's filters (c_out_g, c_in, kh, kw)
    and biases; yg: its output planes (c_out_g, oh_n, ow_n). Per chunk of output rows
    and block of cb input channels: pack the band, then run the tiles over it for
    every output channel of the group.
    """
    cdef Py_ssize_t row_len = sw * stride, span = (kh - 1) * dh + 1
    cdef Py_ssize_t r0 = oh0, r1, t0, nb, ta, tb, c0, c1, c, t, m
    cdef floating* row
    cdef floating* yo
    while r0 < oh1:
        # The chunk's band: input rows t0 .. t0 + nb - 1 of each channel of the
        # block, rows of zeros where they are padding.
        r1 = block_end(r0, chunk, oh1)
        t0 = r0 * sh - ph
        nb = _band_rows(r1 - r0, sh, span)
        c0 = 0
        while c0 < c_in:
            c1 = block_end(c0, cb, c_in)
            # Band rows [ta, tb) are input rows; those above and below, padding.
            ta = -t0 if t0 < 0 else 0
            tb = h - t0 if h - t0 < nb else nb
            if tb < ta:
                tb = ta
            for c in range(c1 - c0):
                row = band + c * nb * row_len
                for t in range(nb):
                    if t < ta or t >= tb:
                        if floating is float:
                            pyconv_direct_zero_f32(row + t * row_len, row_len)
                        else:
                            pyconv_direct_zero_f64(row + t * row_len, row_len)
                if tb > ta:
                    _pack_rows(xg + ((c0 + c) * h + t0 + ta) * wd, row + ta * row_len, tb - ta,
                               wd, row_len, cols, pw, sw, stride,
                               xg_off + ((c0 + c) * h + t0 + ta) * wd, x_size)
            for m in range(c_out_g):
                yo = yg + m * oh_n * ow_n
                if floating is float:
                    pyconv_direct_rows_f32(band, row_len, nb * row_len, c1 - c0, kh, kw, sh, dh,
                                           off, wg + (m * c_in + c0) * kh * kw, yo + r0 * ow_n,
                                           ow_n, r1 - r0, yo + oh1 * ow_n, c0 > 0, c1 == c_in,
                                           bg[m], lo, hi)
                else:
                    pyconv_direct_rows_f64(band, row_len, nb * row_len, c1 - c0, kh, kw, sh, dh,
                                           off, wg + (m * c_in + c0) * kh * kw, yo + r0 * ow_n,
                                           ow_n, r1 - r0, yo + oh1 * ow_n, c0 > 0, c1 == c_in,
                                           bg[m], lo, hi)
            c0 = c1
        r0 = r1


# Depthwise layers (one channel per group, as many outputs) in float32 on AVX-512, on
# planes of at most DWCL_MAX_OW output columns, take the channels-last tile, VL channels
# at a time (_direct_dwcl), when the block's padded input fits DWCL_MAX_BYTES. Against
# the row tiles (benchmarks/ab.py --base 7c9c309 --set avx512 --kernel direct, 2 threads,
# Zen 4; the same bits): 576@14/2 (7 columns) 0.54 the time, 960@7 0.57, 8 x 960@7 0.49,
# 384@14 0.77, 576@14 0.84. At 28 columns and more the row tiles keep them
# (benchmarks/paths.py depthwise, channels-last / row tiles: 192@28 0.92, 144@56/2 1.03,
# 32@112 1.30).
cdef enum:
    DWCL_MAX_OW = 16
    DWCL_MAX_BYTES = 256 * 1024


cdef int _direct_dwcl(const floating* xp, const floating* wp, const floating* bp, floating* yp,
                      Py_ssize_t n_img, Py_ssize_t c, Py_ssize_t h, Py_ssize_t wd,
                      Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t oh_n, Py_ssize_t ow_n,
                      Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                      Py_ssize_t dh, Py_ssize_t dw, floating lo, floating hi,
                      int num_threads) noexcept nogil:
    """Depthwise correlation (groups = C_in = C_out) in blocks of VL channels: a unit is
    (image, block); it copies the block's input planes into a zero-padded channels-last
    tile T, its taps and bias into channels-last vectors, runs pyconv_dwcl_* (_direct.h)
    into a channels-last output tile and copies that back to the NCHW planes. Lanes past
    the last channel compute zeros that are never stored. Returns -1 when out of
    memory. (Why: a 7x7 map fills 7 of a row tile's 16 lanes, and packing its rows one
    by one cost more than their arithmetic; here every lane is a channel.)"""
    cdef Py_ssize_t vl = _vl(<floating>0), kk = kh * kw
    cdef Py_ssize_t th = (oh_n - 1) * sh + (kh - 1) * dh + 1   # the tile's rows and columns:
    cdef Py_ssize_t tw = (ow_n - 1) * sw + (kw - 1) * dw + 1   # input rows r - ph, columns q - pw
    cdef Py_ssize_t t_n = th * tw * vl, o_n = oh_n * ow_n * vl, w_n = kk * vl
    cdef Py_ssize_t cblocks = (c + vl - 1) // vl, units = n_img * cblocks
    cdef Py_ssize_t r0 = min(ph, th), r1 = min(h + ph, th)    # the tile's rows that hold input
    cdef Py_ssize_t q0 = min(pw, tw), q1 = min(wd + pw, tw)   # ... and columns
    cdef Py_ssize_t unit, n, c0, nl, l, t
    cdef const floating* plane
    cdef floating* buf
    cdef floating* tt
    cdef floating* ww
    cdef floating* bb
    cdef floating* oo
    cdef int failed = 0
    cdef int* failed_flag = &failed  # written through a pointer: parallel() privatises assignments
    with parallel(num_threads=num_threads):
        buf = <floating*>_aligned_malloc((t_n + o_n + w_n + vl) * sizeof(floating))
        if buf == NULL:
            failed_flag[0] = 1
        else:
            memset(buf, 0, t_n * sizeof(floating))   # the pads: never written below
        for unit in prange(units, schedule="dynamic"):
            if buf == NULL:
                continue
            tt = buf
            oo = buf + t_n
            ww = oo + o_n
            bb = ww + w_n
            n = unit // cblocks
            c0 = (unit % cblocks) * vl
            nl = min(vl, c - c0)
            plane = xp + (n * c + c0) * h * wd
            if floating is float:
                pyconv_dwcl_in_f32(tt, tw, plane, h * wd, wd, nl, q1 - q0, ph, pw, r0, r1)
            else:
                pyconv_dwcl_in_f64(tt, tw, plane, h * wd, wd, nl, q1 - q0, ph, pw, r0, r1)
            for l in range(vl):   # lanes past the last channel: zero taps and bias
                for t in range(kk):
                    ww[t * vl + l] = wp[(c0 + l) * kk + t] if l < nl else 0
                bb[l] = bp[c0 + l] if l < nl else 0
            if floating is float:
                pyconv_dwcl_f32(tt, tw, ww, bb, kh, kw, sh, sw, dh, dw, oo, oh_n, ow_n, lo, hi)
            else:
                pyconv_dwcl_f64(tt, tw, ww, bb, kh, kw, sh, sw, dh, dw, oo, oh_n, ow_n, lo, hi)
            if floating is float:
                pyconv_dwcl_out_f32(yp + (n * c + c0) * oh_n * ow_n, oh_n * ow_n, nl, oo, oh_n * ow_n)
            else:
                pyconv_dwcl_out_f64(yp + (n * c + c0) * oh_n * ow_n, oh_n * ow_n, nl, oo, oh_n * ow_n)
        _aligned_free(buf)
    return -1 if failed else 0


cdef inline bint _dwcl_fits(Py_ssize_t c_all, Py_ssize_t c_out, Py_ssize_t groups,
                            Py_ssize_t oh_n, Py_ssize_t ow_n, Py_ssize_t kh, Py_ssize_t kw,
                            Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
                            Py_ssize_t itemsize, Py_ssize_t vl) noexcept nogil:
    """The layers _direct_dwcl takes (see DWCL_MAX_OW): float32 (itemsize 4) where the
    kernel set has its transposes."""
    if not PYCONV_DWCL_F32 or itemsize != 4 or groups != c_all or c_out != c_all:
        return False
    cdef Py_ssize_t th = (oh_n - 1) * sh + (kh - 1) * dh + 1
    cdef Py_ssize_t tw = (ow_n - 1) * sw + (kw - 1) * dw + 1
    # each factor bounded before the product (a huge dilation must not overflow it)
    return (ow_n <= DWCL_MAX_OW and th <= DWCL_MAX_BYTES and tw <= DWCL_MAX_BYTES
            and th * tw * vl * itemsize <= DWCL_MAX_BYTES)


cdef int direct_conv2d(const floating* xp, const floating* wp, const floating* bp, floating* yp,
                       Py_ssize_t n_img, Py_ssize_t c_all, Py_ssize_t h, Py_ssize_t wd,
                       Py_ssize_t c_out, Py_ssize_t kh, Py_ssize_t kw,
                       Py_ssize_t oh_n, Py_ssize_t ow_n,
                       Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                       Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups,
                       floating lo, floating hi, int num_threads) noexcept nogil:
    """The direct correlation on raw C-contiguous NCHW arrays (the C-level entry, also
    exported as a capsule by c_api_direct()), the signature of igemm_conv2d
    (pyconv/_kernels.pxd). Arguments must be valid (non-empty, groups dividing both
    channel counts). Returns 0, or -1 when a workspace cannot be allocated (y is then
    incomplete)."""
    cdef Py_ssize_t c_in = c_all // groups, c_out_g = c_out // groups
    cdef Py_ssize_t vl = _vl(<floating>0), span = (kh - 1) * dh + 1
    if _dwcl_fits(c_all, c_out, groups, oh_n, ow_n, kh, kw, sh, sw, dh, dw, sizeof(floating), vl):
        return _direct_dwcl(xp, wp, bp, yp, n_img, c_all, h, wd, kh, kw, oh_n, ow_n,
                            sh, sw, ph, pw, dh, dw, lo, hi, num_threads)
    # Packed row: sw phases of phase_len values; output column j, tap v reads phase
    # (v*dw) % sw at j + (v*dw) // sw, for j up to ow_n rounded up to whole vectors.
    cdef Py_ssize_t phase_len = (ow_n + vl - 1) // vl * vl + (kw - 1) * dw // sw
    # Phases start `stride` apart: a vector of slack after each, for the packing's
    # whole-vector stores (pyconv_direct_pack*).
    cdef Py_ssize_t stride = phase_len + vl
    cdef Py_ssize_t row_len = sw * stride
    cdef Py_ssize_t row_bytes = row_len * sizeof(floating)

    # Channel block: all channels, unless DIRECT_MIN_ROWS rows of each do not fit
    # (a wide group of a narrow layer); it depends on the layer only, not on the
    # threads (and the tile starts a later block's sums from y: blocks change no bit).
    cdef Py_ssize_t min_rows = DIRECT_MIN_ROWS if oh_n > DIRECT_MIN_ROWS else oh_n
    cdef Py_ssize_t cb = DIRECT_BUDGET // (_band_rows(min_rows, sh, span) * row_bytes)
    if cb > c_in:
        cb = c_in
    if cb < 1:
        cb = 1
    # Rows per unit, then rows per chunk: as many as the budget holds, at least
    # min_rows (rows wider than the budget still get a band of min_rows rows).
    # Small planes go several to a unit: scheduling a unit costs about as much as
    # a 7x7 plane's arithmetic.
    cdef Py_ssize_t planes = n_img * groups
    cdef Py_ssize_t rows = rows_per_unit(planes, oh_n, num_threads)
    cdef Py_ssize_t blocks = (oh_n + rows - 1) // rows, per_unit = 1
    if blocks == 1 and planes > 4 * num_threads:
        per_unit = planes // (4 * num_threads)
    cdef Py_ssize_t fit = DIRECT_BUDGET // (cb * row_bytes), chunk = rows
    if _band_rows(rows, sh, span) > fit:
        chunk = (fit - span) // sh + 1 if fit >= span else 1
        if chunk < min_rows:
            chunk = min_rows
        if chunk > rows:
            chunk = rows
    cdef Py_ssize_t band_n = _band_rows(chunk, sh, span)

    # off[v]: where tap v's run starts in a packed row; cols[2q], cols[2q+1]: the
    # positions of phase q that hold input columns (the same for every row).
    cdef int64_t* off = <int64_t*>malloc(kw * sizeof(int64_t) + 2 * sw * sizeof(Py_ssize_t))
    if off == NULL:
        return -1
    cdef Py_ssize_t* cols = <Py_ssize_t*>(off + kw)
    cdef Py_ssize_t v, q
    for v in range(kw):
        off[v] = (v * dw) % sw * stride + (v * dw) // sw
    for q in range(sw):
        tap_range(q - pw, sw, phase_len, wd, &cols[2 * q], &cols[2 * q + 1])

    cdef Py_ssize_t units = (planes + per_unit - 1) // per_unit * blocks
    cdef Py_ssize_t unit, plane, p1, n, g, oh0, xg_off
    cdef floating* band
    cdef int failed = 0
    cdef int* failed_flag = &failed  # written through a pointer: parallel() privatises assignments

    with parallel(num_threads=num_threads):
        band = <floating*>_aligned_malloc(cb * band_n * row_bytes)
        if band == NULL:
            failed_flag[0] = 1
        else:
            memset(band, 0, cb * band_n * row_bytes)  # _pack_rows never writes the pads
        for unit in prange(units, schedule="dynamic"):
            if band == NULL:
                continue
            plane = unit // blocks * per_unit
            p1 = block_end(plane, per_unit, planes)
            oh0 = (unit % blocks) * rows
            while plane < p1:
                n = plane // groups
                g = plane % groups
                xg_off = (n * c_all + g * c_in) * h * wd
                _direct_rows(xp + xg_off, wp + g * c_out_g * c_in * kh * kw,
                             bp + g * c_out_g, yp + (n * c_out + g * c_out_g) * oh_n * ow_n,
                             c_in, c_out_g, h, wd, oh_n, ow_n, kh, kw, sh, dh, ph, pw, sw,
                             oh0, block_end(oh0, rows, oh_n), chunk, cb, band, stride,
                             cols, off, xg_off, n_img * c_all * h * wd, lo, hi)
                plane = plane + 1
        _aligned_free(band)
    free(off)
    return -1 if failed else 0


def conv2d_direct(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                  const floating[::1] bias, floating[:, :, :, ::1] y,
                  Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                  Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups,
                  double lo, double hi, int num_threads):
    """y = clamp(bias + correlation(x, w), lo, hi) -- the same contract and arguments
    as pyconv._conv.conv2d_forward: x (N, C_in, H, W), w (C_out, C_in/groups, kh, kw),
    bias (C_out,), y (N, C_out, OH, OW), ph/pw the leading zero pads."""
    cdef Py_ssize_t n_img = x.shape[0], c_all = x.shape[1], h = x.shape[2], wd = x.shape[3]
    cdef Py_ssize_t c_out = w.shape[0], c_in = w.shape[1], kh = w.shape[2], kw = w.shape[3]
    cdef Py_ssize_t oh_n = y.shape[2], ow_n = y.shape[3]
    if (y.shape[0] != n_img or y.shape[1] != c_out or bias.shape[0] != c_out or groups < 1
            or c_in * groups != c_all or c_out % groups != 0):
        raise ValueError("conv2d_direct: inconsistent shapes")
    if sh < 1 or sw < 1 or dh < 1 or dw < 1 or ph < 0 or pw < 0:
        raise ValueError("conv2d_direct: strides and dilations must be >= 1, pads >= 0")
    if y.size == 0 or x.size == 0 or w.size == 0:
        raise ValueError("conv2d_direct: empty arrays")
    cdef int status
    with nogil:
        status = direct_conv2d(&x[0, 0, 0, 0], &w[0, 0, 0, 0], &bias[0], &y[0, 0, 0, 0],
                               n_img, c_all, h, wd, c_out, kh, kw, oh_n, ow_n,
                               sh, sw, ph, pw, dh, dw, groups, <floating>lo, <floating>hi,
                               num_threads)
    if status != 0:
        raise MemoryError("conv2d: cannot allocate a per-thread row buffer")


def conv2d_depthwise_cl(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                        const floating[::1] bias, floating[:, :, :, ::1] y,
                        Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                        Py_ssize_t dh, Py_ssize_t dw, double lo, double hi, int num_threads):
    """The channels-last depthwise tile (_direct_dwcl) whatever conv2d_direct would take:
    x (N, C, H, W), w (C, 1, kh, kw), bias (C,), y (N, C, OH, OW), the arguments of
    conv2d_direct with groups = C -- for the tests and benchmarks of every kernel set."""
    cdef Py_ssize_t n_img = x.shape[0], c = x.shape[1], h = x.shape[2], wd = x.shape[3]
    cdef Py_ssize_t kh = w.shape[2], kw = w.shape[3], oh_n = y.shape[2], ow_n = y.shape[3]
    if (w.shape[0] != c or w.shape[1] != 1 or bias.shape[0] != c or y.shape[0] != n_img
            or y.shape[1] != c):
        raise ValueError("conv2d_depthwise_cl: inconsistent shapes (depthwise only)")
    if sh < 1 or sw < 1 or dh < 1 or dw < 1 or ph < 0 or pw < 0:
        raise ValueError("conv2d_depthwise_cl: strides and dilations must be >= 1, pads >= 0")
    if y.size == 0 or x.size == 0:
        raise ValueError("conv2d_depthwise_cl: empty arrays")
    cdef int status
    with nogil:
        status = _direct_dwcl(&x[0, 0, 0, 0], &w[0, 0, 0, 0], &bias[0], &y[0, 0, 0, 0],
                              n_img, c, h, wd, kh, kw, oh_n, ow_n, sh, sw, ph, pw, dh, dw,
                              <floating>lo, <floating>hi, num_threads)
    if status != 0:
        raise MemoryError("conv2d_depthwise_cl: cannot allocate a per-thread tile")


def c_api_direct():
    """{'direct_f32': capsule, 'direct_f64': capsule}: this kernel set's direct_conv2d
    as C function pointers (the signature of pyconv/_kernels.pxd); merged into c_api()."""
    return {
        "direct_f32": PyCapsule_New(<void*>direct_conv2d[float], b"pyconv.direct_conv2d_f32", NULL),
        "direct_f64": PyCapsule_New(<void*>direct_conv2d[double], b"pyconv.direct_conv2d_f64", NULL),
    }
