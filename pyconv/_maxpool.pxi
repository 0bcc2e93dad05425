# Max pooling without indices, dilation 1 -- the layers of real networks (VGG's 2x2/2,
# ResNet's and GoogLeNet's 3x3/2) -- compiled into each kernel set with its ISA flags
# (included by _kernels_<set>.pyx; the vector parts are in _maxpool.h).
#
# Contract: _pooling.pxi's (see its header), without the indices: output (i, j) is
# the maximum of the input taps (i*sh - ph + u, j*sw - pw + v), u < kh, v < kw, inside
# the plane; NaN is the maximum of any window holding one; of equal values the first
# in row-major order is kept; a window of padding only yields 0.
#
#   max_pool2d_fast(x, y, ...)        def: checks, then releases the GIL
#     '- prange over work units       unit = (plane, block of output rows), each output
#          |                          element written by one unit: bitwise the same for
#          |                          any thread count
#          |- _maxpool_rows           per output row: its input rows, each pooled across
#          |    |                     once into a ring of kh rows (_hmax), then the
#          |    |                     ring's rows folded into the output row (_fold_rows)
#          |    '- _hmax              one input row's horizontal maxima: the interior
#          |                          columns by _interior (vectors of _maxpool.h), the
#          |                          edges' clipped windows by _edge
#          '- _maxpool_rows_flat      short rows exactly OW*sw wide (28 -> 14): the
#                                     unit's rows pooled across as one long row, edge
#                                     columns redone per row, then the same folds
#
# Folding across a row first and then down the rows, each keeping its first maximum,
# keeps the first maximum in row-major order, as the general kernel (_pool) does. The
# general kernel is for what this one leaves out (indices, dilation): it splits every
# row into its sw column phases and checks each chunk for NaN before folding, more
# passes than max pooling's one comparison per tap needs -- ONNX Runtime ran the
# 3x3/2 pools of GoogLeNet twice as fast. `benchmarks/paths.py maxpool` (2 threads,
# this kernel / the general one): 2x2/2 64@224 0.70, 128@112 0.78, 512@28 0.83,
# 512@14 0.79; 3x3/2 64@112 0.84, 192@56 0.87, 480@28 0.77.
# The AVX-512 set's float32 vectors (_maxpool.h, 16 lanes) against the AVX2 set's,
# `benchmarks/paths.py maxpool --against avx2` (Intel, 2 threads | 1 thread): 3x3/2
# 64@112 0.70 | 0.62, 192@56 ceil 0.62 | 0.66, 480@28 ceil 0.62 | 0.61; 2x2/2 64@224
# 0.69 | 0.77, 512@28 0.60 | 0.58; 3x3/1 192@35 0.67 | 0.66.

from libc.stdlib cimport calloc
from pyconv._common cimport block_end, rows_per_unit

cdef extern from "_maxpool.h" nogil:
    Py_ssize_t pyconv_pool_interior_f32(const float* xr, Py_ssize_t w, float* hrow, Py_ssize_t j0,
                                        Py_ssize_t cb, Py_ssize_t kw, Py_ssize_t sw, Py_ssize_t pw)
    Py_ssize_t pyconv_pool_interior_f64(const double* xr, Py_ssize_t w, double* hrow, Py_ssize_t j0,
                                        Py_ssize_t cb, Py_ssize_t kw, Py_ssize_t sw, Py_ssize_t pw)
    Py_ssize_t pyconv_pool_rows_f32(float* out, const float* const* rows, Py_ssize_t n, Py_ssize_t ow)
    Py_ssize_t pyconv_pool_rows_f64(double* out, const double* const* rows, Py_ssize_t n, Py_ssize_t ow)
    float pyconv_pool_max1_f32(float m, float v)
    double pyconv_pool_max1_f64(double m, double v)


cdef enum:
    RING_PAD = 16  # a vector's room past each pooled row: full loads and stores only
    FLAT_ELEMS = 8192   # pooled elements a unit may hold to pool its rows as one (32 KiB)


cdef inline floating _pool_max(floating m, floating v) noexcept nogil:
    """v replaces m when greater or NaN (a NaN wins); an equal v does not."""
    if floating is float:
        return pyconv_pool_max1_f32(m, v)
    else:
        return pyconv_pool_max1_f64(m, v)


cdef inline floating _window_max(const floating* p, Py_ssize_t n) noexcept nogil:
    """The max of p[0 .. n), n >= 1, in order."""
    cdef floating m = p[0]
    cdef Py_ssize_t v
    for v in range(1, n):
        m = _pool_max(m, p[v])
    return m


cdef void _hmax(const floating* xr, Py_ssize_t w, floating* hrow, Py_ssize_t ow, Py_ssize_t kw,
                Py_ssize_t sw, Py_ssize_t pw, Py_ssize_t ca, Py_ssize_t cb) noexcept nogil:
    """hrow[j] = max_{v < kw} xr[j*sw - pw + v] over the taps inside the row (w
    elements), 0 for a column without any; [ca, cb): the columns whose taps all are."""
    cdef Py_ssize_t j = 0
    while j < ow:
        if j == ca and ca < cb:
            j = _interior(xr, w, hrow, j, cb, kw, sw, pw)
            continue
        _edge(xr, w, hrow, j, kw, sw, pw)
        j += 1


cdef inline Py_ssize_t _interior(const floating* xr, Py_ssize_t w, floating* hrow, Py_ssize_t j0,
                                 Py_ssize_t cb, Py_ssize_t kw, Py_ssize_t sw,
                                 Py_ssize_t pw) noexcept nogil:
    """hrow[j] for the columns [j0, cb) whose taps all lie inside xr[0, w): vectors
    (_maxpool.h), then the scalar loop for what they left. Returns cb."""
    cdef Py_ssize_t j
    if floating is float:
        j = pyconv_pool_interior_f32(xr, w, hrow, j0, cb, kw, sw, pw)
    else:
        j = pyconv_pool_interior_f64(xr, w, hrow, j0, cb, kw, sw, pw)
    while j < cb:
        hrow[j] = _window_max(xr + j * sw - pw, kw)
        j += 1
    return cb


cdef inline void _edge(const floating* xr, Py_ssize_t w, floating* hrow, Py_ssize_t j,
                       Py_ssize_t kw, Py_ssize_t sw, Py_ssize_t pw) noexcept nogil:
    """hrow[j] for an edge column: its window clipped to the row, 0 if nothing is left."""
    cdef Py_ssize_t lo = max(j * sw - pw, 0), hi = min(j * sw - pw + kw, w)
    hrow[j] = _window_max(xr + lo, hi - lo) if lo < hi else 0


cdef inline void _fold_rows(floating* out, const floating** rows, Py_ssize_t n,
                            Py_ssize_t ow) noexcept nogil:
    """out[j] = the max of rows[0][j], ..., rows[n - 1][j], in order (n >= 1)."""
    cdef Py_ssize_t j, r
    cdef floating m
    if floating is float:
        j = pyconv_pool_rows_f32(out, rows, n, ow)
    else:
        j = pyconv_pool_rows_f64(out, rows, n, ow)
    while j < ow:
        m = rows[0][j]
        for r in range(1, n):
            m = _pool_max(m, rows[r][j])
        out[j] = m
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
        _fold_rows(out, rows, r1 - r0, ow)


cdef void _maxpool_rows_flat(const floating* x, Py_ssize_t h, Py_ssize_t w, floating* y,
                             Py_ssize_t o0, Py_ssize_t o1, Py_ssize_t ow, Py_ssize_t kh,
                             Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph,
                             Py_ssize_t pw, Py_ssize_t ca, Py_ssize_t cb, floating* pooled,
                             const floating** rows) noexcept nogil:
    """_maxpool_rows for rows exactly ow*sw wide (w == ow*sw: 28 -> 14, 14 -> 7), short
    rows where the per-row calls cost more than the work. The unit's input rows are
    pooled across as one long row: column t = r*ow + j of it reads x[r*w + j*sw - pw +
    v], so from the first row's interior to the last row's it is one strided sequence
    (the vectors run on across row ends); the edge columns of every row, whose taps
    that sequence took from the neighbouring row, are then redone clipped to their
    row. pooled: the rows, ow apart (+ RING_PAD)."""
    cdef Py_ssize_t r_lo = max(o0 * sh - ph, 0), r_hi = min((o1 - 1) * sh - ph + kh, h)
    cdef Py_ssize_t n_rows = r_hi - r_lo, o, r, r0, r1, j
    cdef const floating* xs = x + r_lo * w
    if n_rows > 0 and ca < cb:
        _interior(xs, n_rows * w, pooled, ca, (n_rows - 1) * ow + cb, kw, sw, pw)
    for r in range(max(n_rows, 0)):
        for j in range(ca):
            _edge(xs + r * w, w, pooled + r * ow, j, kw, sw, pw)
        for j in range(max(cb, ca), ow):
            _edge(xs + r * w, w, pooled + r * ow, j, kw, sw, pw)
    for o in range(o0, o1):
        r0 = max(o * sh - ph, 0)
        r1 = min(o * sh - ph + kh, h)
        if r0 >= r1:                       # rows of padding only
            for j in range(ow):
                y[o * ow + j] = 0
            continue
        for r in range(r0, r1):
            rows[r - r0] = pooled + (r - r_lo) * ow
        _fold_rows(y + o * ow, rows, r1 - r0, ow)


cdef int _maxpool_planes(const floating* xp, floating* yp, Py_ssize_t planes, Py_ssize_t h,
                         Py_ssize_t w, Py_ssize_t oh_n, Py_ssize_t ow, Py_ssize_t kh,
                         Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph,
                         Py_ssize_t pw, int num_threads) noexcept nogil:
    """Max pooling of planes xp (planes, h, w) into yp (planes, oh_n, ow), no indices,
    dilation 1. Arguments must be valid (h, w >= 1); 0, or -1 when a thread's pooled
    rows cannot be allocated. Behind max_pool2d_fast and, through c_api, pyconv._pool's
    C API."""
    # Interior columns [ca, cb): j*sw - pw >= 0 and j*sw - pw + kw <= w.
    cdef Py_ssize_t ca = min((pw + sw - 1) // sw, ow)
    cdef Py_ssize_t cb = min((w - kw + pw) // sw + 1, ow) if w - kw + pw >= 0 else 0
    cb = max(cb, ca)
    cdef Py_ssize_t rows = rows_per_unit(planes, oh_n, num_threads)
    cdef Py_ssize_t blocks = (oh_n + rows - 1) // rows, unit, plane, o0
    # Short rows that pool as one long row (see _maxpool_rows_flat), when a unit's input
    # rows fit FLAT_ELEMS; else the ring of kh rows.
    cdef Py_ssize_t span = min((rows - 1) * sh + kh, h)
    cdef bint flat = w == ow * sw and span * ow <= FLAT_ELEMS
    cdef Py_ssize_t held = span * ow + RING_PAD if flat else kh * (ow + RING_PAD)
    cdef floating* ring
    cdef Py_ssize_t* ring_row
    cdef const floating** row_ptrs
    cdef int failed = 0
    cdef int* failed_flag = &failed  # written through a pointer: parallel() privatises assignments
    with parallel(num_threads=num_threads):
        ring = <floating*>calloc(held, sizeof(floating))
        ring_row = <Py_ssize_t*>malloc(kh * sizeof(Py_ssize_t))
        row_ptrs = <const floating**>malloc(kh * sizeof(floating*))
        if ring == NULL or ring_row == NULL or row_ptrs == NULL:
            failed_flag[0] = 1
        for unit in prange(planes * blocks, schedule="guided"):
            if ring == NULL or ring_row == NULL or row_ptrs == NULL:
                continue
            plane = unit // blocks
            o0 = (unit % blocks) * rows
            if flat:
                _maxpool_rows_flat(xp + plane * h * w, h, w, yp + plane * oh_n * ow, o0,
                                   block_end(o0, rows, oh_n), ow, kh, kw, sh, sw, ph, pw,
                                   ca, cb, ring, row_ptrs)
            else:
                _maxpool_rows(xp + plane * h * w, h, w, yp + plane * oh_n * ow, o0,
                              block_end(o0, rows, oh_n), ow, kh, kw, sh, sw, ph, pw, ca, cb,
                              ring, ring_row, row_ptrs)
        free(ring)
        free(ring_row)
        free(row_ptrs)
    return -1 if failed else 0


def max_pool2d_fast(const floating[:, :, ::1] x, floating[:, :, ::1] y,
                    Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                    Py_ssize_t ph, Py_ssize_t pw, int num_threads):
    """Max pooling of planes x (P, H, W) into y (P, OH, OW), no indices, dilation 1
    (max_pool2d_forward's contract otherwise, _pooling.pxi; bitwise the same values)."""
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
    cdef int status
    with nogil:
        status = _maxpool_planes(&x[0, 0, 0], &y[0, 0, 0], planes, h, w, oh_n, ow, kh, kw,
                                 sh, sw, ph, pw, num_threads)
    if status != 0:
        raise MemoryError("max_pool2d_fast: cannot allocate a thread's pooled rows")


def c_api_maxpool():
    """{'maxpool_f32': capsule, 'maxpool_f64': capsule}: _maxpool_planes as C function
    pointers, for pyconv._pool's C API (max pooling without indices, dilation 1)."""
    return {
        "maxpool_f32": PyCapsule_New(<void*>_maxpool_planes[float], b"pyconv.maxpool_f32", NULL),
        "maxpool_f64": PyCapsule_New(<void*>_maxpool_planes[double], b"pyconv.maxpool_f64", NULL),
    }
