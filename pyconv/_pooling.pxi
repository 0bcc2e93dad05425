# The general pooling kernels -- max (with indices, any dilation), average, adaptive
# average/max -- compiled into each kernel set with its ISA flags (included by
# _kernels_<set>.pyx; max pooling without indices and dilation has its own, faster
# kernel in _maxpool.pxi). pyconv._pool's C API calls the kernel set chosen at import
# through the capsules of c_api_pool(); pyconv.functional calls the Python entries
# below on the active set.
#
# Every kernel sees the input as independent planes x (P, H, W) -- P = N*C, 1-D pooling
# runs as 2-D with H = 1 -- and writes y (P, OH, OW). Contract for the window of output
# (i, j) with leading pads ph, pw:
#
#     rows  i*sh - ph + u*dh  for u < kh,   columns  j*sw - pw + v*dw  for v < kw;
#
# taps outside the input are padding: ignored by max, zero for average. A window made
# of padding only yields 0 (index -1) -- never -inf or NaN. Max: NaN is the maximum of
# any window holding one and its index points at it (the last NaN in row-major order,
# as PyTorch's CPU kernel does); indices are flat positions ih*W + iw in the plane.
#
# Data flow: def entry (checks, releases the GIL) -> cdef nogil function on raw
# pointers (the same one behind the C API: tap tables malloc'd once per call, scratch
# once per thread) -> prange over (plane, row block) units, each output element owned
# by one unit (bitwise identical for any thread count), guided schedule (a global pool
# of a batch is 16k units of 49 inputs each: handing them out one by one, schedule
# dynamic, cost more than the sums) -> separable windows:
#
#     input rows --split into sw column phases (unit stride)--> fold the kw taps
#       = pooled rows (each input row once per unit) --fold the kh rows--> output row
#
# Folds take up to three rows per pass in registers (no load+store per tap). Pooled
# rows live in a ring of single rows, or -- "flat", when W % sw == 0 and OW <= W/sw,
# the layers of real networks -- a chunk of rows is pooled by one fold as one long
# row (its per-row edge columns recomputed), and with sh == 1 the output rows with
# all-real windows are folded as one run too: short rows cost no per-row overhead.
# Max without NaN folds with MAXPS (`v > m ? v : m` keeps the first maximum); a chunk
# holding a NaN, or asking for indices, takes the exact select instead.

from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy
from cython cimport floating
from cython.parallel cimport parallel, prange
from cpython.pycapsule cimport PyCapsule_New
from pyconv._common cimport block_end, rows_per_unit, tap_range


cdef struct _Window:
    # One call's geometry, shared read-only by every thread.
    Py_ssize_t h, wd, ow_n, kh, kw, sh, sw, ph, pw, dh, dw
    Py_ssize_t ca, cb         # interior output columns [ca, cb): every tap reads real input
    Py_ssize_t x_lo, x_n      # the input columns [x_lo, x_lo + x_n) the interior reads
    Py_ssize_t pl             # the phase buffer's pitch: phase r starts at r*pl
    bint flat                 # rows pooled a chunk at a time (see _rows_max)
    Py_ssize_t pitch          # flat: a pooled row's pitch, wd / sw
    Py_ssize_t chunk          # flat: output rows per chunk
    bint deep                 # flat, sh == 1 and pitch == ow_n: see _deep_rows
    Py_ssize_t ring           # not flat: pooled rows a thread keeps, row ih in slot ih & (ring-1)
    Py_ssize_t hold, split    # elements of a thread's pooled rows and of its phase buffer
    const Py_ssize_t* tap_at  # tap v of output column ow reads src[tap_at[v] + ow] (_phases)
    const Py_ssize_t* real    # output column ow's real taps: [real[2ow], real[2ow + 1])
    bint indices              # max pooling with indices: the ring holds them too


cdef enum:
    FLAT_INPUTS = 4096  # inputs per flat chunk: its phases and pooled rows stay in L1
    GLOBAL_PLANES = 64  # planes per work unit of global average pooling


cdef Py_ssize_t* _window_init(_Window* g, Py_ssize_t h, Py_ssize_t wd, Py_ssize_t ow_n,
                              Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                              Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw,
                              bint indices) noexcept nogil:
    """Fill g; returns its tables (tap_at, then real), malloc'd in one block (the
    caller frees it; NULL: no memory)."""
    cdef Py_ssize_t a0, e0, a1, e1, v, off, r, n, ow, span = (kh - 1) * dh + 1
    cdef Py_ssize_t* tap_at = <Py_ssize_t*>malloc((kw + 2 * ow_n) * sizeof(Py_ssize_t))
    g.h, g.wd, g.ow_n, g.kh, g.kw, g.sh, g.sw = h, wd, ow_n, kh, kw, sh, sw
    g.ph, g.pw, g.dh, g.dw, g.indices = ph, pw, dh, dw, indices
    g.tap_at, g.real = tap_at, tap_at + kw
    # Taps move right with v, so a column is interior iff its first tap is past the
    # left edge and its last tap before the right one.
    tap_range(-pw, sw, ow_n, wd, &a0, &e0)
    tap_range((kw - 1) * dw - pw, sw, ow_n, wd, &a1, &e1)
    g.ca = a0
    g.cb = e1 if e1 > a0 else a0
    if sw > wd:  # a column per phase at most: all edges, and no sw-sized phase buffer
        g.ca = g.cb = 0
    g.x_lo = g.ca * sw - pw
    g.x_n = (g.cb - 1) * sw - pw + (kw - 1) * dw + 1 - g.x_lo if g.cb > g.ca else 0
    g.flat = wd % sw == 0 and ow_n <= wd // sw
    g.deep = False
    # The rows of one window fall in distinct slots (they lie within `span`
    # consecutive rows, or are among the h rows), so a window's rows can all be held
    # at once, and each input row is pooled along the row once per work unit. A power
    # of two: the slot is a mask, not a 40-cycle division, several per output row.
    g.ring = 1
    if g.flat:
        # A chunk of rows pooled at once: up to FLAT_INPUTS inputs, at least a window.
        g.pitch = wd // sw
        n = FLAT_INPUTS // wd
        n = n if n > span else span
        n = n if n < h else h  # (a window's real rows, too, are at most h)
        g.chunk = (n - span) // sh + 1 if n >= span else 1
        g.pl = n * g.pitch
        g.hold = n * g.pitch
        g.deep = sh == 1 and g.pitch == ow_n
    else:
        while g.ring < span and g.ring < h:
            g.ring = 2 * g.ring
        g.pl = (wd + sw - 1) // sw
        g.hold = g.ring * ow_n
    g.split = sw * g.pl if sw > 1 and g.cb > g.ca else 0
    if tap_at != NULL:
        for v in range(kw):  # column ow*sw + off is element ow + (off - r)/sw of phase r
            off = v * dw - pw
            r = off % sw
            if r < 0:
                r = r + sw
            tap_at[v] = r * g.pl + (off - r) // sw
        for ow in range(ow_n):  # the edges' divisions, once per call
            tap_range(ow * sw - pw, dw, kw, wd, tap_at + kw + 2 * ow, tap_at + kw + 2 * ow + 1)
    return tap_at


cdef Py_ssize_t* _column_counts(const _Window* g, Py_ssize_t pw_end) noexcept nogil:
    """cols_in[ow] (taps of output column ow inside the input) then cols_padded[ow]
    (inside the padded input), one malloc'd block the caller frees (NULL: no memory)."""
    cdef Py_ssize_t* t = <Py_ssize_t*>malloc(2 * g.ow_n * sizeof(Py_ssize_t))
    if t == NULL:
        return NULL
    cdef Py_ssize_t ow, a, e
    for ow in range(g.ow_n):
        tap_range(ow * g.sw - g.pw, g.dw, g.kw, g.wd, &a, &e)
        t[ow] = e - a
        tap_range(ow * g.sw, g.dw, g.kw, g.wd + g.pw + pw_end, &a, &e)
        t[g.ow_n + ow] = e - a
    return t


cdef inline Py_ssize_t _max_k(const _Window* g) noexcept nogil:
    return g.kh if g.kh > g.kw else g.kw


cdef void* _scratch(const _Window* g, size_t elem) noexcept nogil:
    """One thread's scratch (NULL: no memory), laid out as _carve reads it: ring
    tags and flags (ring each), row pointers (2 max(kh, kw)), pooled indices (hold,
    with indices), pooled rows (hold), column phases (split)."""
    cdef size_t n = (2 * g.ring + 2 * _max_k(g)) * sizeof(Py_ssize_t)
    n = n + g.hold * (elem + (sizeof(int64_t) if g.indices else 0)) + g.split * elem
    return malloc(n)


cdef inline const floating* _phases(const floating* xr, Py_ssize_t width, floating* buf,
                                    const _Window* g) noexcept nogil:
    """buf[r*pl + q] = xr[q*sw + r] for q*sw + r < width: the row split into its sw
    column phases, so that every tap of a strided window reads unit-stride
    (vectorisable) memory; xr itself when sw == 1."""
    cdef Py_ssize_t q, r, s = g.sw, pl = g.pl, n
    if s == 1:
        return xr
    if s == 2:  # the common case, as one loop the compiler vectorises with shuffles
        n = width // 2
        for q in range(n):
            buf[q] = xr[2 * q]
            buf[pl + q] = xr[2 * q + 1]
        if width % 2:
            buf[n] = xr[width - 1]
        return buf
    for r in range(s):
        for q in range((width - r + s - 1) // s):
            buf[r * pl + q] = xr[q * s + r]
    return buf


# ---------------------------------------------------------------------------------------
# Micro level: folds of k unit-stride rows of n elements into one, in a fixed order
# (the same kernels pool the kw taps along an input row, then the kh pooled rows of a
# window). The fast folds take three rows per pass into registers, one store.
#
# Max is separable exactly in that order: a row's winner is its first maximum (or its
# last NaN), and folding rows in increasing u keeps the first maximum / last NaN of the
# whole window in row-major order, bit for bit (0.0 vs -0.0 ties and NaN payloads
# included). Without NaN, `v > m ? v : m` is that fold and one MAXPS; rows holding a
# NaN, and every fold with indices, take the exact select `v > m or v != v`.
# ---------------------------------------------------------------------------------------

cdef inline bint _has_nan(const floating* x, Py_ssize_t n) noexcept nogil:
    """Whether x[0:n] holds a NaN (a vectorised OR of x != x)."""
    cdef int seen = 0
    cdef Py_ssize_t j
    for j in range(n):
        seen = seen | (x[j] != x[j])
    return seen != 0


cdef inline bint _split2_nan(const floating* xr, Py_ssize_t width, floating* buf,
                            Py_ssize_t pl) noexcept nogil:
    """_phases for sw == 2, also telling whether xr[0:width] holds a NaN (one pass
    over the input instead of two)."""
    cdef Py_ssize_t q, n = width // 2
    cdef floating a, b
    cdef int seen = 0
    for q in range(n):
        a = xr[2 * q]
        b = xr[2 * q + 1]
        buf[q] = a
        buf[pl + q] = b
        seen = seen | (a != a) | (b != b)
    if width % 2:
        a = xr[width - 1]
        buf[n] = a
        seen = seen | (a != a)
    return seen != 0


cdef inline void _max3(floating* out, const floating* a, const floating* b,
                       const floating* c, Py_ssize_t n) noexcept nogil:
    """out = max(a, b, c) (c may be NULL), elementwise, the first of equal maxima;
    NaN-free rows."""
    cdef Py_ssize_t j
    cdef floating m, v
    if c == NULL:
        for j in range(n):
            m = a[j]
            v = b[j]
            out[j] = v if v > m else m
    else:
        for j in range(n):
            m = a[j]
            v = b[j]
            m = v if v > m else m
            v = c[j]
            out[j] = v if v > m else m


cdef inline void _max_into(floating* out, const floating* b, const floating* c,
                           Py_ssize_t n) noexcept nogil:
    """out = max(out, b, c) (c may be NULL), out winning ties; NaN-free rows."""
    cdef Py_ssize_t j
    cdef floating m, v
    if c == NULL:
        for j in range(n):
            m = out[j]
            v = b[j]
            out[j] = v if v > m else m
    else:
        for j in range(n):
            m = out[j]
            v = b[j]
            m = v if v > m else m
            v = c[j]
            out[j] = v if v > m else m


cdef void _fold_max(floating* out, const floating** p, Py_ssize_t k, Py_ssize_t n) noexcept nogil:
    """out = max of the rows p[0], ..., p[k-1] (k >= 1), the first of equal maxima;
    NaN-free rows."""
    cdef Py_ssize_t i
    if k == 1:
        memcpy(out, p[0], n * sizeof(floating))
        return
    _max3(out, p[0], p[1], p[2] if k > 2 else NULL, n)
    i = 3
    while i < k:
        _max_into(out, p[i], p[i + 1] if i + 1 < k else NULL, n)
        i = i + 2


cdef void _fold_max_exact(floating* out, int64_t* oi, const floating** p,
                          const int64_t** pi, Py_ssize_t k, Py_ssize_t n) noexcept nogil:
    """_fold_max for any rows: a later NaN wins (so the last NaN); with indices oi
    (pi[i] the indices of row p[i]) unless oi is NULL."""
    cdef Py_ssize_t i, j
    cdef floating m, v
    cdef bint take
    memcpy(out, p[0], n * sizeof(floating))
    if oi != NULL:
        memcpy(oi, pi[0], n * sizeof(int64_t))
    for i in range(1, k):
        if oi == NULL:
            for j in range(n):
                v = p[i][j]
                m = out[j]
                out[j] = v if (v > m) | (v != v) else m
        else:  # selects, not branches: random data would mispredict half of them
            for j in range(n):
                v = p[i][j]
                m = out[j]
                take = (v > m) | (v != v)
                out[j] = v if take else m
                oi[j] = pi[i][j] if take else oi[j]


cdef void _fold_sum(floating* out, const floating** p, Py_ssize_t k, Py_ssize_t n) noexcept nogil:
    """out = ((p[0] + p[1]) + p[2]) + ... + p[k-1], elementwise (k >= 1)."""
    cdef Py_ssize_t i, j
    cdef const floating* a = p[0]
    cdef const floating* b
    cdef const floating* c
    if k == 1:
        memcpy(out, a, n * sizeof(floating))
        return
    b = p[1]
    if k == 2:
        for j in range(n):
            out[j] = a[j] + b[j]
    else:
        c = p[2]
        for j in range(n):
            out[j] = (a[j] + b[j]) + c[j]
    i = 3
    while i < k:
        b = p[i]
        if i + 1 < k:
            c = p[i + 1]
            for j in range(n):
                out[j] = (out[j] + b[j]) + c[j]
        else:
            for j in range(n):
                out[j] = out[j] + b[j]
        i = i + 2


cdef void _fold_sum_div(floating* out, const floating** p, Py_ssize_t k, Py_ssize_t n,
                        const floating* div) noexcept nogil:
    """out = _fold_sum(p, k) / div, elementwise: the same values, in one pass for a
    3-row window (the divisions, a pass of their own, took a quarter of a 3x3/1 pool
    of 17x17 planes)."""
    cdef Py_ssize_t j
    cdef const floating* a = p[0]
    cdef const floating* b
    cdef const floating* c
    if k == 3:
        b = p[1]
        c = p[2]
        for j in range(n):
            out[j] = ((a[j] + b[j]) + c[j]) / div[j]
        return
    _fold_sum(out, p, k, n)
    for j in range(n):
        out[j] = out[j] / div[j]


# ---------------------------------------------------------------------------------------
# One input row pooled along the row: the interior columns fold the kw taps (each a
# unit-stride row of the column phases), the few edge columns check every tap.
# ---------------------------------------------------------------------------------------

cdef bint _rows_max(const floating* xr, Py_ssize_t n, floating* phases, const floating** taps,
                    floating* hv, int64_t* hi, Py_ssize_t base, const _Window* g) noexcept nogil:
    """Rows xr[0:n*wd] pooled along the row: hv[i*pitch + ow] = max of row i over the
    taps of output column ow, taken in tap order (first of equal maxima, last NaN);
    hi likewise = base + the winner's flat position from xr (hi may be NULL). A
    column whose taps are all padding gets 0 and -1. n > 1 only when g.flat: then the
    rows, split into phases, are one long row whose columns ow + i*pitch are row i's,
    pooled by one fold (the columns between a row's last interior column and the next
    row's first are edges, recomputed). Returns whether the rows folded with these need
    the exact fold: hv may hold a NaN (it may say so of rows without one, never the
    reverse), or hi is given. taps: room for kw pointers."""
    cdef Py_ssize_t ow, v, i, m = (n - 1) * g.pitch + g.cb - g.ca
    cdef const floating* src
    cdef bint exact = hi != NULL
    if g.cb > g.ca:
        if g.sw == 2 and hi == NULL:  # the split checks for NaN on its way
            exact = _split2_nan(xr, n * g.wd, phases, g.pl)
            src = phases + g.ca
        else:
            src = _phases(xr, n * g.wd, phases, g) + g.ca
            exact = hi != NULL or _has_nan(xr + g.x_lo, (n - 1) * g.wd + g.x_n)
        for v in range(g.kw):
            taps[v] = src + g.tap_at[v]
        if hi != NULL:  # (i*pitch + ow)*sw = i*wd + ow*sw: the position is affine
            _taps_max_indexed(hv + g.ca, hi + g.ca, taps, base + g.ca * g.sw - g.pw, g, m)
        elif exact:
            _fold_max_exact(hv + g.ca, NULL, taps, NULL, g.kw, m)
        else:
            _fold_max(hv + g.ca, taps, g.kw, m)
    for i in range(n):  # the edges: a few columns, each over its real taps
        for ow in range(g.ca):
            exact = _edge_max(xr + i * g.wd, hv + i * g.pitch, hi, base + i * g.wd,
                              i * g.pitch, ow, g) | exact
        for ow in range(g.cb, g.ow_n):
            exact = _edge_max(xr + i * g.wd, hv + i * g.pitch, hi, base + i * g.wd,
                              i * g.pitch, ow, g) | exact
    return exact


cdef void _taps_max_indexed(floating* hv, int64_t* hi, const floating** taps, Py_ssize_t col,
                            const _Window* g, Py_ssize_t n) noexcept nogil:
    """_fold_max_exact of the kw taps with indices: the winner of column j, read by
    tap v, is input column col + j*sw + v*dw (plus the row's base, folded into col)."""
    cdef Py_ssize_t j, v, s = g.sw, c
    cdef const floating* t
    cdef floating val, cur
    cdef bint take
    for j in range(n):
        hv[j] = taps[0][j]
        hi[j] = col + j * s
    for v in range(1, g.kw):
        t = taps[v]
        c = col + v * g.dw
        for j in range(n):  # selects, not branches: random data would mispredict half
            val = t[j]
            cur = hv[j]
            take = (val > cur) | (val != val)
            hv[j] = val if take else cur
            hi[j] = c + j * s if take else hi[j]


cdef inline bint _edge_max(const floating* xr, floating* hv, int64_t* hi, Py_ssize_t base,
                           Py_ssize_t at, Py_ssize_t ow, const _Window* g) noexcept nogil:
    """_rows_max for column ow of one row (its indices at hi + at), over its real taps
    (from g.real); whether its maximum is NaN."""
    cdef Py_ssize_t v, va = g.real[2 * ow], ve = g.real[2 * ow + 1]
    cdef Py_ssize_t c = ow * g.sw + va * g.dw - g.pw, best_c = -1
    cdef floating val, best = 0
    cdef bint take
    if va < ve:
        best = xr[c]
        best_c = base + c
    for v in range(va + 1, ve):  # selects: random data would mispredict branches
        c = c + g.dw
        val = xr[c]
        take = (val > best) | (val != val)
        best = val if take else best
        best_c = base + c if take else best_c
    hv[ow] = best
    if hi != NULL:
        hi[at + ow] = best_c
    return best != best


cdef void _rows_sum(const floating* xr, Py_ssize_t n, floating* phases, const floating** taps,
                    floating* hs, const _Window* g) noexcept nogil:
    """Rows xr[0:n*wd] pooled along the row as _rows_max does: hs[i*pitch + ow] = sum
    of row i over the real taps of output column ow, in tap order (0 when there are
    none). taps: room for kw pointers."""
    cdef Py_ssize_t ow, v, i
    cdef const floating* src
    if g.cb > g.ca:
        src = _phases(xr, n * g.wd, phases, g) + g.ca
        for v in range(g.kw):
            taps[v] = src + g.tap_at[v]
        _fold_sum(hs + g.ca, taps, g.kw, (n - 1) * g.pitch + g.cb - g.ca)
    for ow in range(g.ca):
        _edge_sums(xr, n, hs, ow, g)
    for ow in range(g.cb, g.ow_n):
        _edge_sums(xr, n, hs, ow, g)


cdef inline void _edge_sums(const floating* xr, Py_ssize_t n, floating* hs, Py_ssize_t ow,
                            const _Window* g) noexcept nogil:
    """_rows_sum for edge column ow of the n rows: its real taps (from g.real) only,
    each row's sum from 0 in tap order. Column by column, so that the tap range is
    looked up once for all rows (per row and column it took a third of a 3x3/1 pool
    of 17x17 planes). With _fold_sum_div, `benchmarks/ab.py --kernel avgpool` against
    the commit before them (Intel, 1 | 2 threads): 3x3/1 pad 1 768@17 0.76 | 0.77 the
    time, 192@35 0.75 | 0.77, 3x3/2 64@56 0.87 | 0.88, 2x2/2 64@112 0.93 | 0.91, 7x7
    2048@7 0.89 | 0.89; the same bits."""
    cdef Py_ssize_t i, v, va = g.real[2 * ow], ve = g.real[2 * ow + 1]
    cdef Py_ssize_t c0 = ow * g.sw + va * g.dw - g.pw, dw = g.dw, wd = g.wd, pitch = g.pitch
    cdef const floating* t
    cdef floating acc
    for i in range(n):
        t = xr + i * wd + c0
        acc = 0
        for v in range(ve - va):
            acc = acc + t[v * dw]
        hs[i * pitch + ow] = acc


# ---------------------------------------------------------------------------------------
# Macro level: the rows [oh0, oh1) of one plane. Each input row is pooled along the row
# once into the thread's ring (consecutive output rows share kh - sh of them), then the
# window's rows are folded into the output row, top to bottom.
# ---------------------------------------------------------------------------------------

cdef struct _Scratch:
    # A thread's scratch, carved out of one _scratch block.
    Py_ssize_t* tags     # the input row held by each ring slot (-1: none)
    Py_ssize_t* exact    # per slot: _rows_max's answer for that row
    void** ptrs          # 2 * max(kh, kw) row pointers
    int64_t* ring_idx    # ring * ow_n pooled indices (max with indices)
    void* ring           # ring * ow_n pooled rows
    void* phases         # sw * pl column phases


cdef inline _Scratch _carve(void* block, const _Window* g, size_t elem) noexcept nogil:
    """The parts of a _scratch block; no slot holds a row yet."""
    cdef _Scratch sc
    cdef Py_ssize_t i
    sc.tags = <Py_ssize_t*>block
    sc.exact = sc.tags + g.ring
    sc.ptrs = <void**>(sc.exact + g.ring)
    sc.ring_idx = <int64_t*>(sc.ptrs + 2 * _max_k(g))
    sc.ring = <void*>(sc.ring_idx + (g.hold if g.indices else 0))
    sc.phases = <void*>(<char*>sc.ring + g.hold * elem)
    for i in range(g.ring):
        sc.tags[i] = -1
    return sc


cdef inline void _window_rows(Py_ssize_t h0, const _Window* g, Py_ssize_t* ua,
                              Py_ssize_t* ue) noexcept nogil:
    """[ua, ue): the taps u whose row h0 + u*dh is real (tap_range without its two
    divisions when dh == 1, the common case)."""
    if g.dh != 1:
        tap_range(h0, g.dh, g.kh, g.h, ua, ue)
        return
    ua[0] = -h0 if h0 < 0 else 0
    ue[0] = g.h - h0 if g.h - h0 < g.kh else g.kh
    if ue[0] < ua[0]:
        ue[0] = ua[0]


cdef inline Py_ssize_t _pooled_at(Py_ssize_t ih, Py_ssize_t r0, const _Window* g) noexcept nogil:
    """Where pooled input row ih is held: in the flat chunk starting at row r0, or in
    its ring slot."""
    return (ih - r0) * g.pitch if g.flat else (ih & (g.ring - 1)) * g.ow_n


cdef inline void _deep_rows(Py_ssize_t o0, Py_ssize_t o1, Py_ssize_t r0, const _Window* g,
                           void* pooled, size_t elem, const void** rows,
                           Py_ssize_t* fa, Py_ssize_t* fb) noexcept nogil:
    """[fa, fb): the output rows of [o0, o1) whose kh rows are all real, when g.deep.
    Their pooled rows are then one run too -- output (oh, ow) = oh*ow_n + ow reads
    pooled row oh - ph + u*dh at (oh - ph + u*dh - r0)*ow_n + ow -- so one fold over
    rows[u] (set here) of (fb - fa)*ow_n elements gives them all. fa = fb otherwise."""
    cdef Py_ssize_t u, span = (g.kh - 1) * g.dh + 1
    fa[0] = o0 if o0 > g.ph else g.ph
    fb[0] = o1 if o1 < g.h - span + g.ph + 1 else g.h - span + g.ph + 1
    if not g.deep or fb[0] <= fa[0]:
        fb[0] = fa[0]
        return
    for u in range(g.kh):
        rows[u] = <char*>pooled + (fa[0] - g.ph + u * g.dh - r0) * g.ow_n * elem


cdef void _max_rows(const floating* x, floating* y, int64_t* idx, Py_ssize_t oh0, Py_ssize_t oh1,
                    const _Window* g, void* block) noexcept nogil:
    """Rows [oh0, oh1) of one plane of max pooling; idx may be NULL."""
    cdef _Scratch sc = _carve(block, g, sizeof(floating))
    cdef Py_ssize_t ow_n = g.ow_n, wd = g.wd, span = (g.kh - 1) * g.dh + 1
    cdef floating* pooled = <floating*>sc.ring
    cdef int64_t* pooled_idx = NULL if idx == NULL else sc.ring_idx
    cdef floating* phases = <floating*>sc.phases
    cdef const floating** rows = <const floating**>sc.ptrs
    cdef const int64_t** rows_idx = <const int64_t**>(sc.ptrs + _max_k(g))
    cdef Py_ssize_t o0 = oh0, o1, r0 = 0, r1, oh, ow, u, ua, ue, ih, h0, slot, at, k, fa, fb
    cdef bint exact, chunk_exact = False
    cdef floating* yr
    cdef int64_t* ir
    while o0 < oh1:
        o1 = oh1
        if g.flat:  # pool the chunk's input rows [r0, r1), all at once
            o1 = o0 + g.chunk if o0 + g.chunk < oh1 else oh1
            r0 = o0 * g.sh - g.ph
            r0 = r0 if r0 > 0 else 0
            r1 = (o1 - 1) * g.sh - g.ph + span
            r1 = r1 if r1 < g.h else g.h
            if r0 < r1:
                chunk_exact = _rows_max(x + r0 * wd, r1 - r0, phases, rows, pooled,
                                        pooled_idx, r0 * wd, g)
        _deep_rows(o0, o1, r0, g, pooled, sizeof(floating), <const void**>rows, &fa, &fb)
        if fa < fb:
            if idx == NULL and not chunk_exact:
                _fold_max(y + fa * ow_n, rows, g.kh, (fb - fa) * ow_n)
            else:
                for u in range(g.kh):
                    rows_idx[u] = NULL if idx == NULL else pooled_idx + (rows[u] - pooled)
                _fold_max_exact(y + fa * ow_n, NULL if idx == NULL else idx + fa * ow_n,
                                rows, rows_idx, g.kh, (fb - fa) * ow_n)
        for oh in range(o0, o1):
            if fa <= oh < fb:
                continue
            yr = y + oh * ow_n
            ir = NULL if idx == NULL else idx + oh * ow_n
            h0 = oh * g.sh - g.ph
            _window_rows(h0, g, &ua, &ue)
            if ua == ue:  # padding only: 0, never -inf
                for ow in range(ow_n):
                    yr[ow] = 0
                if ir != NULL:
                    for ow in range(ow_n):
                        ir[ow] = -1
                continue
            if g.kh == 1 and not g.flat:  # one row per window: pool straight into y
                _rows_max(x + h0 * wd, 1, phases, rows, yr, ir, h0 * wd, g)
                continue
            exact = chunk_exact
            if not g.flat:
                for u in range(ua, ue):  # pool the rows not held yet (rows lends room to taps)
                    ih = h0 + u * g.dh
                    slot = ih & (g.ring - 1)
                    if sc.tags[slot] != ih:
                        sc.exact[slot] = _rows_max(x + ih * wd, 1, phases, rows,
                                                   pooled + slot * ow_n,
                                                   NULL if ir == NULL else pooled_idx + slot * ow_n,
                                                   ih * wd, g)
                        sc.tags[slot] = ih
                    exact = exact | (sc.exact[slot] != 0)
            k = ue - ua
            for u in range(k):
                at = _pooled_at(h0 + (ua + u) * g.dh, r0, g)
                rows[u] = pooled + at
                rows_idx[u] = pooled_idx + at if ir != NULL else NULL
            if not exact:
                _fold_max(yr, rows, k, ow_n)
            else:
                _fold_max_exact(yr, ir, rows, rows_idx, k, ow_n)
        o0 = o1


cdef void _avg_rows(const floating* x, floating* y, Py_ssize_t oh0, Py_ssize_t oh1,
                    const _Window* g, void* block, Py_ssize_t ph_end,
                    const Py_ssize_t* cols_in, const Py_ssize_t* cols_padded,
                    const floating* full_divisor, bint count_include_pad,
                    Py_ssize_t divisor_override) noexcept nogil:
    """Rows [oh0, oh1) of one plane of average pooling, pooled rows held as _max_rows
    holds them.

    Divisor: divisor_override if > 0; else with count_include_pad the taps inside the
    *padded* input (a ceil-mode overhang past the trailing pad is never counted), else
    the taps inside the real input; 0 taps give 0. full_divisor[ow] is the divisor of
    a window whose kh rows are all real (never 0: such a column's sum is 0 anyway),
    repeated for g.chunk rows when g.deep.
    """
    cdef _Scratch sc = _carve(block, g, sizeof(floating))
    cdef Py_ssize_t ow_n = g.ow_n, wd = g.wd, span = (g.kh - 1) * g.dh + 1
    cdef floating* pooled = <floating*>sc.ring
    cdef floating* phases = <floating*>sc.phases
    cdef const floating** rows = <const floating**>sc.ptrs
    cdef Py_ssize_t o0 = oh0, o1, r0 = 0, r1, oh, ow, u, ua, ue, ih, h0, slot, pa, pe, count, fa, fb
    cdef floating* yr
    cdef floating d
    while o0 < oh1:
        o1 = oh1
        if g.flat:
            o1 = o0 + g.chunk if o0 + g.chunk < oh1 else oh1
            r0 = o0 * g.sh - g.ph
            r0 = r0 if r0 > 0 else 0
            r1 = (o1 - 1) * g.sh - g.ph + span
            r1 = r1 if r1 < g.h else g.h
            if r0 < r1:
                _rows_sum(x + r0 * wd, r1 - r0, phases, rows, pooled, g)
        _deep_rows(o0, o1, r0, g, pooled, sizeof(floating), <const void**>rows, &fa, &fb)
        if fa < fb:
            yr = y + fa * ow_n
            if divisor_override > 0:
                _fold_sum(yr, rows, g.kh, (fb - fa) * ow_n)
                d = divisor_override
                for ow in range((fb - fa) * ow_n):
                    yr[ow] = yr[ow] / d
            else:  # full_divisor holds chunk rows of divisors
                _fold_sum_div(yr, rows, g.kh, (fb - fa) * ow_n, full_divisor)
        for oh in range(o0, o1):
            if fa <= oh < fb:
                continue
            yr = y + oh * ow_n
            h0 = oh * g.sh - g.ph
            _window_rows(h0, g, &ua, &ue)
            if ua == ue:
                for ow in range(ow_n):
                    yr[ow] = 0
                continue
            if g.kh == 1 and not g.flat:  # one row per window: sum straight into y
                _rows_sum(x + h0 * wd, 1, phases, rows, yr, g)
            else:
                if not g.flat:
                    for u in range(ua, ue):  # pool the rows not held yet
                        ih = h0 + u * g.dh
                        slot = ih & (g.ring - 1)
                        if sc.tags[slot] != ih:
                            _rows_sum(x + ih * wd, 1, phases, rows, pooled + slot * ow_n, g)
                            sc.tags[slot] = ih
                for u in range(ue - ua):
                    rows[u] = pooled + _pooled_at(h0 + (ua + u) * g.dh, r0, g)
                _fold_sum(yr, rows, ue - ua, ow_n)
            if divisor_override > 0:
                d = divisor_override
                for ow in range(ow_n):
                    yr[ow] = yr[ow] / d
                continue
            if ue - ua == g.kh:  # every row real (so inside the padded input too)
                for ow in range(ow_n):
                    yr[ow] = yr[ow] / full_divisor[ow]
                continue
            tap_range(oh * g.sh, g.dh, g.kh, g.h + g.ph + ph_end, &pa, &pe)
            for ow in range(ow_n):
                if count_include_pad:
                    count = (pe - pa) * cols_padded[ow]
                else:
                    count = (ue - ua) * cols_in[ow]
                yr[ow] = yr[ow] / count if count > 0 else 0
        o0 = o1


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
    into ip (same shape) unless NULL. Arguments must be valid; 0, or -1 when the tap
    table or a thread's scratch cannot be allocated."""
    cdef _Window g
    cdef Py_ssize_t* tap_at = _window_init(&g, h, wd, ow_n, kh, kw, sh, sw, ph, pw, dh, dw,
                                           ip != NULL)
    if tap_at == NULL:
        return -1
    cdef Py_ssize_t rows = rows_per_unit(planes, oh_n, num_threads)
    cdef Py_ssize_t blocks = (oh_n + rows - 1) // rows
    cdef Py_ssize_t unit, p, oh0, oh1
    cdef void* block
    cdef int failed = 0
    cdef int* failed_flag = &failed  # written through a pointer: parallel() privatises assignments
    with parallel(num_threads=num_threads):
        block = _scratch(&g, sizeof(floating))  # once per thread, for all its units
        if block == NULL:
            failed_flag[0] = 1
        for unit in prange(planes * blocks, schedule="guided"):
            if block == NULL:
                continue
            p = unit // blocks
            oh0 = (unit % blocks) * rows
            oh1 = block_end(oh0, rows, oh_n)
            _max_rows(xp + p * h * wd, yp + p * oh_n * ow_n,
                      NULL if ip == NULL else ip + p * oh_n * ow_n, oh0, oh1, &g, block)
        free(block)
    free(tap_at)
    return -1 if failed else 0


cdef int _avg_pool2d(const floating* xp, floating* yp,
                     Py_ssize_t planes, Py_ssize_t h, Py_ssize_t wd, Py_ssize_t oh_n, Py_ssize_t ow_n,
                     Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                     Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t ph_end, Py_ssize_t pw_end,
                     Py_ssize_t dh, Py_ssize_t dw, bint count_include_pad,
                     Py_ssize_t divisor_override, int num_threads) noexcept nogil:
    """Average pooling of planes xp (planes, h, wd) into yp (planes, oh_n, ow_n).
    Arguments must be valid; 0, or -1 when the tables or a thread's scratch cannot
    be allocated."""
    cdef _Window g
    cdef Py_ssize_t* tap_at = _window_init(&g, h, wd, ow_n, kh, kw, sh, sw, ph, pw, dh, dw,
                                           False)
    cdef Py_ssize_t* cols = _column_counts(&g, pw_end)
    cdef Py_ssize_t tiles = g.chunk if g.deep else 1
    cdef floating* full_divisor = <floating*>malloc(tiles * ow_n * sizeof(floating))
    cdef Py_ssize_t ow, count
    if tap_at == NULL or cols == NULL or full_divisor == NULL:
        free(tap_at)
        free(cols)
        free(full_divisor)
        return -1
    for ow in range(ow_n):
        count = kh * (cols[ow_n + ow] if count_include_pad else cols[ow])
        full_divisor[ow] = count if count > 0 else 1
    for ow in range(ow_n, tiles * ow_n):
        full_divisor[ow] = full_divisor[ow - ow_n]
    cdef Py_ssize_t rows = rows_per_unit(planes, oh_n, num_threads)
    cdef Py_ssize_t blocks = (oh_n + rows - 1) // rows
    cdef Py_ssize_t unit, p, oh0, oh1
    cdef void* block
    cdef int failed = 0
    cdef int* failed_flag = &failed
    with parallel(num_threads=num_threads):
        block = _scratch(&g, sizeof(floating))
        if block == NULL:
            failed_flag[0] = 1
        for unit in prange(planes * blocks, schedule="guided"):
            if block == NULL:
                continue
            p = unit // blocks
            oh0 = (unit % blocks) * rows
            oh1 = block_end(oh0, rows, oh_n)
            _avg_rows(xp + p * h * wd, yp + p * oh_n * ow_n, oh0, oh1, &g, block, ph_end,
                      cols, cols + ow_n, full_divisor, count_include_pad, divisor_override)
        free(block)
    free(tap_at)
    free(cols)
    free(full_divisor)
    return -1 if failed else 0


cdef int _adaptive_pool2d(const floating* xp, floating* yp, int64_t* ip, bint is_max,
                          Py_ssize_t planes, Py_ssize_t h, Py_ssize_t wd,
                          Py_ssize_t oh_n, Py_ssize_t ow_n, int num_threads) noexcept nogil:
    """Adaptive average (is_max False) or max pooling of xp (planes, h, wd) into
    yp (planes, oh_n, ow_n); indices into ip (max only) unless NULL. Always 0."""
    cdef Py_ssize_t rows = rows_per_unit(planes, oh_n, num_threads)
    cdef Py_ssize_t blocks = (oh_n + rows - 1) // rows
    cdef Py_ssize_t unit, p, oh0, oh1, hw = h * wd
    if not is_max and oh_n == 1 and ow_n == 1:
        # Global average pooling (a classifier's input): one sum per plane, planes in
        # blocks of GLOBAL_PLANES -- per-plane units cost more than a 7x7 plane's sum
        # (ResNet-50's 8 x 2048 planes). The same sums as _adaptive_rows: the same bits.
        for unit in prange((planes + GLOBAL_PLANES - 1) // GLOBAL_PLANES, num_threads=num_threads,
                           schedule="static"):
            for p in range(unit * GLOBAL_PLANES, block_end(unit * GLOBAL_PLANES, GLOBAL_PLANES, planes)):
                yp[p] = _sum(xp + p * hw, hw) / hw
        return 0
    for unit in prange(planes * blocks, num_threads=num_threads, schedule="guided"):
        p = unit // blocks
        oh0 = (unit % blocks) * rows
        oh1 = block_end(oh0, rows, oh_n)
        _adaptive_rows(xp + p * h * wd, yp + p * oh_n * ow_n,
                       NULL if ip == NULL else ip + p * oh_n * ow_n, is_max,
                       h, wd, oh0, oh1, oh_n, ow_n)
    return 0


# ---------------------------------------------------------------------------------------
# Python entries (pyconv.functional, through pyconv._dispatch.kernels)
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
        raise MemoryError("max_pool2d_forward: cannot allocate the scratch buffers")


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
        raise MemoryError("avg_pool2d_forward: cannot allocate the scratch buffers")


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


def c_api_pool():
    """{'pool_max_f32': capsule, ...}: the general kernels' raw entries (_max_pool2d,
    _avg_pool2d, _adaptive_pool2d, float and double) as C function pointers, for
    pyconv._pool's C API (its typedefs give the signatures)."""
    return {
        "pool_max_f32": PyCapsule_New(<void*>_max_pool2d[float], b"pyconv.pool_max_f32", NULL),
        "pool_max_f64": PyCapsule_New(<void*>_max_pool2d[double], b"pyconv.pool_max_f64", NULL),
        "pool_avg_f32": PyCapsule_New(<void*>_avg_pool2d[float], b"pyconv.pool_avg_f32", NULL),
        "pool_avg_f64": PyCapsule_New(<void*>_avg_pool2d[double], b"pyconv.pool_avg_f64", NULL),
        "pool_adaptive_f32": PyCapsule_New(<void*>_adaptive_pool2d[float], b"pyconv.pool_adaptive_f32", NULL),
        "pool_adaptive_f64": PyCapsule_New(<void*>_adaptive_pool2d[double], b"pyconv.pool_adaptive_f64", NULL),
    }
