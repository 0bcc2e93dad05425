# Max pooling without indices, dilation 1 -- the layers of real networks (VGG's 2x2/2,
# ResNet's and GoogLeNet's 3x3/2) -- compiled into each kernel set with its ISA flags
# (included by _kernels_<set>.pyx; the vector parts are in _maxpool.h).
#
# Contract: pyconv._pool's (see its docstring), without the indices: output (i, j) is
# the maximum of the input taps (i*sh - ph + u, j*sw - pw + v), u < kh, v < kw, inside
# the plane; NaN is the maximum of any window holding one; of equal values the first
# in row-major order is kept; a window of padding only yields 0.
#
#   max_pool2d_fast(x, y, ...)        def: checks, then releases the GIL
#     '- prange over work units       unit = (plane, block of output rows), each output
#          |                          element written by one unit: bitwise the same for
#          |                          any thread count
#          '- _maxpool_rows           per output row: its input rows, each pooled across
#               |                     once into a ring of kh rows (_hmax), then the
#               |                     ring's rows folded into the output row
#               '- _hmax              one input row's horizontal maxima: the interior
#                                     columns by pyconv_pool_interior (vectors), the
#                                     edges' clipped windows by the scalar loop
#
# Folding across a row first and then down the rows, each keeping its first maximum,
# keeps the first maximum in row-major order, as the general kernel (_pool) does. The
# general kernel is for what this one leaves out (indices, dilation): it splits every
# row into its sw column phases and checks each chunk for NaN before folding, more
# passes than max pooling's one comparison per tap needs -- ONNX Runtime ran the
# 3x3/2 pools of GoogLeNet twice as fast.

from libc.stdlib cimport calloc
from pyconv._common cimport block_end, rows_per_unit

cdef extern from "_maxpool.h" nogil:
    Py_ssize_t pyconv_pool_interior_f32(const float* xr, Py_ssize_t w, float* hrow, Py_ssize_t j0,
                                        Py_ssize_t cb, Py_ssize_t kw, Py_ssize_t sw, Py_ssize_t pw)
    Py_ssize_t pyconv_pool_interior_f64(const double* xr, Py_ssize_t w, double* hrow, Py_ssize_t j0,
                                        Py_ssize_t cb, Py_ssize_t kw, Py_ssize_t sw, Py_ssize_t pw)
    Py_ssize_t pyconv_pool_rows_f32(float* out, const float* const* rows, Py_ssize_t n, Py_ssize_t ow)
    Py_ssize_t pyconv_pool_rows_f64(double* out, const double* const* rows, Py_ssize_t n, Py_ssize_t ow)


cdef enum:
    RING_PAD = 8   # a vector's room past each pooled row: full loads and stores only


cdef inline floating _pool_max(floating m, floating v) noexcept nogil:
    """v replaces m when greater or NaN (a NaN wins); an equal v does not."""
    return v if (v > m or v != v) else m


cdef void _hmax(const floating* xr, Py_ssize_t w, floating* hrow, Py_ssize_t ow, Py_ssize_t kw,
                Py_ssize_t sw, Py_ssize_t pw, Py_ssize_t ca, Py_ssize_t cb) noexcept nogil:
    """hrow[j] = max_{v < kw} xr[j*sw - pw + v] over the taps inside the row (w
    elements), 0 for a column without any; [ca, cb): the columns whose taps all are."""
    cdef Py_ssize_t j = 0, v, lo, hi
    cdef floating m
    while j < ow:
        if j == ca and ca < cb:
            if floating is float:
                j = pyconv_pool_interior_f32(xr, w, hrow, j, cb, kw, sw, pw)
            else:
                j = pyconv_pool_interior_f64(xr, w, hrow, j, cb, kw, sw, pw)
            while j < cb:                  # what the vectors left
                m = xr[j * sw - pw]
                for v in range(1, kw):
                    m = _pool_max(m, xr[j * sw - pw + v])
                hrow[j] = m
                j += 1
            continue
        lo = max(j * sw - pw, 0)           # an edge column: its window clipped
        hi = min(j * sw - pw + kw, w)
        if lo >= hi:
            hrow[j] = 0
        else:
            m = xr[lo]
            for v in range(lo + 1, hi):
                m = _pool_max(m, xr[v])
            hrow[j] = m
        j += 1


cdef void _maxpool_rows(const floating* x, Py_ssize_t h, Py_ssize_t w, floating* y,
                        Py_ssize_t o0, Py_ssize_t o1, Py_ssize_t ow, Py_ssize_t kh, Py_ssize_t kw,
                        Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                        Py_ssize_t ca, Py_ssize_t cb, floating* ring,
                        Py_ssize_t* ring_row, const floating** rows) noexcept nogil:
    """Output rows [o0, o1) of one plane, x (h, w) -> y (OH, ow). ring: kh pooled rows
    of ow + RING_PAD elements (the vectors' room past a row), row r in slot r % kh;
    ring_row: the input row each slot holds;
    rows: kh pointers -- a thread's own scratch. Output rows come in increasing order,
    so a slot is overwritten only once its row is no longer needed."""
    cdef Py_ssize_t o, r, r0, r1, j, u, pitch = ow + RING_PAD
    cdef floating* out
    cdef floating m
    for u in range(kh):
        ring_row[u] = -1
    for o in range(o0, o1):
        out = y + o * ow
        r0 = max(o * sh - ph, 0)
        r1 = min(o * sh - ph + kh, h)
        if r0 >= r1:                       # rows of padding only
            for j in range(ow):
                out[j] = 0
            continue
        for r in range(r0, r1):
            if ring_row[r % kh] != r:
                _hmax(x + r * w, w, ring + (r % kh) * pitch, ow, kw, sw, pw, ca, cb)
                ring_row[r % kh] = r
            rows[r - r0] = ring + (r % kh) * pitch
        if floating is float:
            j = pyconv_pool_rows_f32(out, rows, r1 - r0, ow)
        else:
            j = pyconv_pool_rows_f64(out, rows, r1 - r0, ow)
        while j < ow:
            m = rows[0][j]
            for r in range(1, r1 - r0):
                m = _pool_max(m, rows[r][j])
            out[j] = m
            j += 1


def max_pool2d_fast(const floating[:, :, ::1] x, floating[:, :, ::1] y,
                    Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                    Py_ssize_t ph, Py_ssize_t pw, int num_threads):
    """Max pooling of planes x (P, H, W) into y (P, OH, OW), no indices, dilation 1
    (pyconv._pool.max_pool2d_forward's contract otherwise, bitwise the same values)."""
    cdef Py_ssize_t planes = x.shape[0], h = x.shape[1], w = x.shape[2]
    cdef Py_ssize_t oh_n = y.shape[1], ow = y.shape[2]
    if y.shape[0] != planes:
        raise ValueError(f"max_pool2d_fast: x has {planes} planes, y {y.shape[0]}")
    if min(kh, kw, sh, sw) < 1 or ph < 0 or pw < 0:
        raise ValueError("max_pool2d_fast: kernel and stride must be >= 1, pads >= 0")
    if h == 0 or w == 0:
        raise ValueError("max_pool2d_fast: empty planes (every window is padding)")
    if y.size == 0:
        return
    # Interior columns [ca, cb): j*sw - pw >= 0 and j*sw - pw + kw <= w.
    cdef Py_ssize_t ca = min((pw + sw - 1) // sw, ow)
    cdef Py_ssize_t cb = min((w - kw + pw) // sw + 1, ow) if w - kw + pw >= 0 else 0
    cb = max(cb, ca)
    cdef Py_ssize_t rows = rows_per_unit(planes, oh_n, num_threads)
    cdef Py_ssize_t blocks = (oh_n + rows - 1) // rows, unit, plane, o0
    cdef const floating* xp = &x[0, 0, 0]
    cdef floating* yp = &y[0, 0, 0]
    cdef floating* ring
    cdef Py_ssize_t* ring_row
    cdef const floating** row_ptrs
    cdef int failed = 0
    cdef int* failed_flag = &failed  # written through a pointer: parallel() privatises assignments
    with nogil, parallel(num_threads=num_threads):
        ring = <floating*>calloc(kh * (ow + RING_PAD), sizeof(floating))
        ring_row = <Py_ssize_t*>malloc(kh * sizeof(Py_ssize_t))
        row_ptrs = <const floating**>malloc(kh * sizeof(floating*))
        if ring == NULL or ring_row == NULL or row_ptrs == NULL:
            failed_flag[0] = 1
        for unit in prange(planes * blocks, schedule="guided"):
            if ring == NULL or ring_row == NULL or row_ptrs == NULL:
                continue
            plane = unit // blocks
            o0 = (unit % blocks) * rows
            _maxpool_rows(xp + plane * h * w, h, w, yp + plane * oh_n * ow, o0,
                          block_end(o0, rows, oh_n), ow, kh, kw, sh, sw, ph, pw, ca, cb,
                          ring, ring_row, row_ptrs)
        free(ring)
        free(ring_row)
        free(row_ptrs)
    if failed:
        raise MemoryError("max_pool2d_fast: cannot allocate a thread's pooled rows")
