# Implicit-GEMM correlation: the fast path for convolutions with many output channels.
#
# Included by each kernel-set module (_kernels_generic/_avx2/_avx512.pyx), which are
# the same code compiled with different ISA flags; _ukernel.h picks the tile shape.
#
# Per group, correlation is a GEMM   Y[o, p] = sum_k W[o, k] * X_col[k, p]   with
# o = output channel, p = output pixel (oh*OW + ow) of one image, k = (c, u, v) a
# kernel tap. X_col (im2col) is never built whole; the three BLIS levels are:
#
#   conv2d_igemm                    def: checks, releases the GIL
#    '- prange over work units      unit = (image, group, block of <= NC pixels,
#         |                          block of output-channel panels); one unit owns
#         |                          its output elements and sums them in one fixed
#         |                          order: bitwise identical for any thread count
#         |                          (small images of a batch: _igemm_folded)
#         '- for each K block (KC taps):
#              _pack_b               the unit's im2col rows for this K block, copied
#                                    from input row segments (zeros for padding) into
#                                    a per-thread KC x NC buffer: it stays in L2, and
#                                    the micro-kernel reads its NR-pixel tiles in place
#                                    (in rows of the block; tile-major for AVX2's 1x1
#                                    layers and AVX-512's float64 ones, _tiled_b);
#                                    a 1x1 reduce layer's whole tiles skip it and read
#                                    the input's rows in place (_in_place_b)
#              for each M block of MC_ROWS channels (MC_ROWS / MR panels; their
#                                    weights, read in place, 32 KiB, stay in L1/L2; a
#                                    large filter's next panel is prefetched into L2):
#                for each NR-pixel tile (KC x NR, stays in L1 across the panels):
#                  for each panel of MR channels:
#                                    micro-kernel  C (+)= A * B   (_ukernel.h; an
#                                    image's last tile of <= one vector of pixels:
#                                    the tail kernel, on those columns transposed)
#              the last K block's store adds the bias and clamps (fused output pass)
#         '- with a residual (ONNX's Conv -> Add): the store leaves the clamp, and the
#            unit adds its block of the residual while the block is in cache, then clamps
#
# Workspace: one KC x NC buffer per thread (<= 512 KiB float32) -- bounded, never a
# full im2col, and no packed copy of the weights. (Tried 2026-12: the weights copied
# once into panel-contiguous blocks, MR rows x KC taps per K block, each A panel one
# sequential 8 KiB run instead of MR rows lda apart -- benchmarks/ab.py --set avx512
# --kernel gemm --cold (Zen 4, 2 threads, b1): 3x3/2 512@14 1.20x the time, 1x1
# 2048 -> 512 @7 1.20, 512 -> 2048 @7 1.04, 1024 -> 256 @14 1.05, 3x3 256@14 1.06,
# 3x3/2 256@28 1.06. Not kept: the rows read in place, with _prefetch_weights, stream
# from DRAM at least as well.)

from libc.math cimport INFINITY
from libc.stdint cimport int64_t, uintptr_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset
from cython cimport floating
from cython.parallel cimport parallel, prange
from cpython.pycapsule cimport PyCapsule_New

from pyconv._common cimport tap_range

cdef extern from "_ukernel.h" nogil:
    const char* PYCONV_KERNEL_SET
    int PYCONV_MR
    int PYCONV_NR_F32
    int PYCONV_NR_F64
    int PYCONV_ALIGN
    int PYCONV_VBYTES
    void pyconv_ukr_f32(int64_t kc, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                        int64_t ldc, int accumulate, const float* bias, float lo, float hi)
    void pyconv_ukr_f64(int64_t kc, const double* A, int64_t lda, const double* B, int64_t ldb, double* C,
                        int64_t ldc, int accumulate, const double* bias, double lo, double hi)
    void pyconv_ukr_f32_edge(int64_t kc, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                             int64_t ldc, int accumulate, const float* bias, float lo, float hi,
                             int64_t mr, int64_t nr)
    void pyconv_tail_f32(int64_t kc, const float* A, int64_t lda, const float* Bt, int64_t ldbt,
                         float* C, int64_t ldc, int accumulate, const float* bias, float lo,
                         float hi, int64_t mr, int64_t nt)
    void pyconv_tail_f64(int64_t kc, const double* A, int64_t lda, const double* Bt, int64_t ldbt,
                         double* C, int64_t ldc, int accumulate, const double* bias, double lo,
                         double hi, int64_t mr, int64_t nt)
    int PYCONV_WIDE_MR2
    int PYCONV_WIDE_MR1
    void pyconv_ukr_f32_narrow(int64_t rows, int64_t kc, const float* A, int64_t lda,
                               const float* B, int64_t ldb, float* C, int64_t ldc, int accumulate)
    void pyconv_prefetch_rows(const void* a, int64_t stride, int64_t bytes, int64_t rows)
    void pyconv_gather2z_f32(float* dst, const float* row, int64_t i0, int64_t n, int64_t wd)
    void pyconv_gather2z_f64(double* dst, const double* row, int64_t i0, int64_t n, int64_t wd)
    void pyconv_ukr_f64_edge(int64_t kc, const double* A, int64_t lda, const double* B, int64_t ldb, double* C,
                             int64_t ldc, int accumulate, const double* bias, double lo, double hi,
                             int64_t mr, int64_t nr)

KERNEL_SET = PYCONV_KERNEL_SET.decode()
MR = PYCONV_MR
NR_F32 = PYCONV_NR_F32
NR_F64 = PYCONV_NR_F64

# KC: taps per K block -- the micro-kernel's A (MR x KC) and B (KC x NR) panels
# together fit the 32 KiB L1 of the smallest targeted cores.
# NC_MAX: pixels per work unit -- the packed KC x NC block (<= 512 KiB) stays in L2.
# Loop order: per k the micro-kernel loads NR/VL vectors of B and MR scalars of A, so
# B is the heavy stream: a B tile stays in L1 while the A panels stream from L2
# (the other order, one A panel over all tiles, read B from L2 at ~16 B/cycle:
# 53 instead of 71 GFLOP/s for 256 -> 256 3x3 at 14x14 on one core).
# MC_ROWS: output channels per M block, the panels that pass one B tile. Each tile
# writes NR pixels of each of the block's rows, NCHW rows p_n floats apart: an M
# block of all the panels (256 channels) left 256 partial rows in flight per tile,
# and where y is not in cache -- in a network, whose outputs outgrow L2 -- every
# store missed, unprefetched. 32 rows (4 panels on AVX-512, 8 on AVX2) advance
# through the block's pixels as a few forward streams, at the cost of reading each
# B tile from L2 once per M block. In-process A/B (Intel AVX-512, 2 threads; y one
# of 4 rotating arrays, as in a network), the time against all panels in one block:
# 1x1 64 -> 256 @56 b1 0.68, 128 -> 512 @28 0.86, others 0.95-1.03 (1 thread: 64 ->
# 256 0.87, 3x3 64@56 0.73); with y in cache 0.90-1.01. Whole networks (benchmarks/
# ab.py --models): ResNet-50 b1 0.955, b8 0.965, VGG-19 b1 0.985 (its 3x3 layers are
# Winograd's); the AVX2 set, ResNet-50 b1 0.975 (16 rows, toggled ad hoc: 0.99).
cdef enum:
    KC = 256
    NC_MAX = 512
    MC_ROWS = 32     # channels per M block (see the loop order above)
    FOLD_TILES = 8   # images of at most this many tiles are folded (_igemm_folded)
    STAGE_BYTES = 1 << 18  # _igemm_folded's staging block
    # Filters prefetched panel by panel (_prefetch_weights). benchmarks/ab.py --cold
    # (caches evicted before each call, as in a network at batch 1), 2 threads, 1x1
    # at b1: 256 -> 1024 @14 0.89-0.91 the time, 512 -> 2048 @7 0.89-0.90, 2048 -> 512
    # @7 0.91-0.98, 1024 -> 256 @14 0.99-1.00; 3x3/2 512@14 0.92.
    PREFETCH_MIN_BYTES = 1 << 19
    ROW_B_MAX_K = 64    # taps up to which B stays in rows of the block (_tiled_b)


cdef extern from "_workspace.h" nogil:
    void* pyconv_ws_malloc(size_t size)
    void pyconv_ws_free(void* p)
    size_t pyconv_ws_cached


cdef inline void* _aligned_malloc(size_t size) noexcept nogil:
    """A workspace block aligned to 64 bytes, from the cache of freed ones where one fits
    (_workspace.h: fresh pages cost a page fault each)."""
    return pyconv_ws_malloc(size)


cdef inline void _aligned_free(void* p) noexcept nogil:
    pyconv_ws_free(p)


def workspace_cached_bytes():
    """Bytes of freed workspace blocks this kernel set keeps for its next calls."""
    return pyconv_ws_cached


cdef inline Py_ssize_t _odd_line_stride(Py_ssize_t n, Py_ssize_t itemsize) noexcept nogil:
    """The least row stride >= n elements that is an odd number of 64-byte lines. A
    micro-kernel's B tile is KC rows of one such stride: with an even number of lines
    (16 tiles of 24 floats: 24 lines) its rows fall in a few L1 sets and evict each
    other; with an odd one they cover every set."""
    cdef Py_ssize_t per_line = 64 // itemsize
    cdef Py_ssize_t lines = (n + per_line - 1) // per_line
    return (lines if lines % 2 else lines + 1) * per_line


cdef inline Py_ssize_t _vl(floating dummy) noexcept nogil:
    """Lanes per vector of this kernel set."""
    return PYCONV_VBYTES // sizeof(floating)


cdef inline Py_ssize_t _tail_pixels(Py_ssize_t p_n, Py_ssize_t nr, Py_ssize_t vl) noexcept nogil:
    """How many of the last pixels of p_n go to the tail kernel (_ukernel.h): the last
    tile's, when fewer than one vector of them (else the edge variant does them, at
    least as fast: a whole vector wastes none of its lanes). Pixel blocks are whole
    tiles from pixel 0, so this set does not depend on the blocking, nor on the
    thread count. (A whole vector went to the tail kernel until 2026-11: AVX-512's
    28x28 layers, 784 = 16 x 48 + 16 pixels, then ran 0.88-0.91 the time on the edge
    variant, 56x56 0.97-0.98, ResNet-50 b1 0.97 -- in-process A/B, benchmarks/ab.py.)"""
    cdef Py_ssize_t t = p_n - (p_n - 1) // nr * nr
    return t if t < vl else 0


cdef inline void _transpose_tail(const floating* b, Py_ssize_t ldb, Py_ssize_t kc, Py_ssize_t nt,
                                 Py_ssize_t vl, floating* bt) noexcept nogil:
    """bt[j*KC + k] = b[k*ldb + j] for j < nt, k < kc, zeros on to the next multiple
    of vl: the tail's packed columns as the tail kernel's Bt."""
    cdef Py_ssize_t j, k, kp = (kc + vl - 1) // vl * vl
    for j in range(nt):
        for k in range(kc):
            bt[j * KC + k] = b[k * ldb + j]
        for k in range(kc, kp):
            bt[j * KC + k] = 0


cdef inline Py_ssize_t _nr(floating dummy) noexcept nogil:
    if floating is float:
        return PYCONV_NR_F32
    else:
        return PYCONV_NR_F64


cdef inline bint _tiled_b(floating dummy, bint plain_1x1, Py_ssize_t k_n) noexcept nogil:
    """Whether B is packed tile-major (_pack_b) rather than in rows of the block: for
    1x1 stride-1 unpadded layers (their packing is a copy) of more than ROW_B_MAX_K
    input channels, on the AVX2 set. There a row-layout tile's KC rows of 96 bytes
    spread over KC line pairs, 32 KiB of L1 for 24 KiB of data, that the A panels
    evict before the next panel reuses them; a tile-major one is a contiguous 24 KiB.
    benchmarks/paths.py layout (Zen 3, 2 threads, tile-major / rows time), float32:
    256 -> 128 @56 0.94-0.97, 512 -> 256 @28 0.92-0.96, 128 -> 512 @28 0.94,
    1024 -> 256 @14 0.96-0.97, 2048 -> 512 @7 b8 0.94-0.98, 7x7 b1 0.99-1.01; 64 taps
    (64 -> 64 @56 b8) 1.00-1.01, where both layouts fit L1; float64 (--float64)
    0.89-0.94. Not for other layers: their rows are built from input row segments,
    and copying them on into tiles cost about what the micro-kernel saved (a version
    that packed every layer tile-major gained nothing on 3x3 layers; not kept). Not on
    the SSE2 set (PYCONV_KERNELS=generic: 0.99-1.07), nor for float32 on AVX-512, whose
    48-float rows are 3 whole lines: PYCONV_KERNELS=avx512 benchmarks/paths.py layout
    (Zen 4, 2 threads) 0.98-1.02 on the same nine layers, 8 x 512 -> 128 @28 1.02; its
    float64 (--float64, 24-double rows) 0.98-1.00 on all nine: tile-major there too."""
    if _b_layout != 0:
        return plain_1x1 and _b_layout == 1
    return ((PYCONV_VBYTES == 32 or (PYCONV_VBYTES == 64 and floating is double))
            and plain_1x1 and k_n > ROW_B_MAX_K)


cdef inline bint _plain_1x1(Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                            Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t h, Py_ssize_t wd,
                            Py_ssize_t oh_n, Py_ssize_t ow_n) noexcept nogil:
    """A 1x1 stride-1 layer without padding (nor output rows past the input): every
    block takes _pack_b's copy path, the only one that packs tile-major."""
    return (kh == 1 and kw == 1 and sh == 1 and sw == 1 and ph == 0 and pw == 0
            and ow_n == wd and oh_n <= h)


cdef int _b_layout = 0   # override of _tiled_b and _in_place_b: 0 their rules, 1
                         # tile-major (plain 1x1), 2 rows, 3 in place (plain 1x1)


cdef inline bint _in_place_b(bint plain_1x1, bint tiled, Py_ssize_t m_n, Py_ssize_t k_n) noexcept nogil:
    """Whether _igemm_conv2d's micro-kernels read B from the input itself, with no
    packing: for 1x1 stride-1 unpadded layers whose B would be packed in rows of the
    block -- X_col is then x, whose channel rows (h*wd apart) serve as B's rows -- with
    fewer output channels than input channels (m_n < k_n), in the pixel blocks of
    whole tiles without the tail kernel's pixels (the others pack as before); not on
    the SSE2 set (aligned B loads, _ukernel.h). Bitwise the packed result: the same
    products in the same order. A reduce layer packs its large input for few output
    panels; an expand layer reuses its small packed block across many, and read in
    place lost. benchmarks/paths.py layout --in-place (Zen 4, AVX-512, 2 threads, in
    place / packed rows time): 256 -> 64 @56 0.90, 144 -> 24 @56 0.90, 32 -> 16 @112
    0.76, 512 -> 256 @28 1.01; 16 -> 96 @112 1.28, 24 -> 144 @56 1.06, 64 -> 256 @56
    0.98, 96 -> 576 @14 1.00, 8 x 64 -> 64 @56 1.03."""
    if PYCONV_VBYTES < 32 or not plain_1x1:
        return False
    return _b_layout == 3 if _b_layout != 0 else (not tiled and m_n < k_n)


def set_b_layout(int layout):
    """For tests and benchmarks: the GEMM's B for 1x1 stride-1 unpadded layers -- 0 =
    by the rules of _tiled_b and _in_place_b, 1 = packed tile-major, 2 = packed in rows,
    3 = read in place from the input (packed in rows on the SSE2 set; all give bitwise
    the same results); returns the previous setting. Not for use while a call runs."""
    global _b_layout
    if layout not in (0, 1, 2, 3):
        raise ValueError(f"set_b_layout: layout must be 0, 1, 2 or 3, got {layout}")
    previous = _b_layout
    _b_layout = layout
    return previous


cdef inline Py_ssize_t _tile_stride(floating dummy) noexcept nogil:
    """From one tile-major B tile (KC x NR, _pack_b) to the next: KC*NR and one more
    line, so that the tiles' rows k do not all fall in one L1 set -- _pack_b writes row
    k of every tile in turn, and KC*NR floats are whole pages (AVX2: 24 KiB, 6 pages)."""
    return KC * _nr(<floating>0) + 64 // sizeof(floating)


cdef struct _PackedB:
    # One call's packed-B layout (_pack_b), the same for every block of the call:
    bint tiled           # tile-major (_tiled_b), else in rows of ld
    Py_ssize_t ts        # tile j starts at b + j*ts
    Py_ssize_t ld        # a tile's rows ld apart
    Py_ssize_t pack_ld   # _pack_b's row stride argument (0: tile-major)
    Py_ssize_t size      # elements of a block of up to ldb columns: the start of a
                         # per-thread packing buffer, then the tail's columns (KC x vl)


cdef inline _PackedB _packed_b(floating dummy, bint plain_1x1, Py_ssize_t k_n,
                               Py_ssize_t ldb) noexcept nogil:
    """The layout of a call's packed blocks of up to ldb columns (ldb: their row stride
    in rows of the block), tile-major where _tiled_b says so."""
    cdef _PackedB b
    cdef Py_ssize_t nr = _nr(<floating>0)
    b.tiled = _tiled_b(<floating>0, plain_1x1, k_n)
    b.ts = _tile_stride(<floating>0) if b.tiled else nr
    b.ld = nr if b.tiled else ldb
    b.pack_ld = 0 if b.tiled else ldb
    b.size = (ldb + nr - 1) // nr * _tile_stride(<floating>0) if b.tiled else KC * ldb
    return b


cdef inline void _put_run(floating* bp, Py_ssize_t k, Py_ssize_t q, Py_ssize_t n,
                          const floating* src) noexcept nogil:
    """Tile-major packed columns [q, q + n) of tap row k = src[0:n] (src NULL: zeros).
    Column q lies in tile q // NR, lane q % NR; a run goes on in the next tile's row k.
    From lane 0 a whole tile's row is a constant-size copy (AVX2: three vector moves)."""
    cdef Py_ssize_t nr = _nr(<floating>0)   # constants: the divisions are shifts and
    cdef Py_ssize_t ts = _tile_stride(<floating>0)   # the copies unrolled
    cdef Py_ssize_t lane = q % nr, m, t
    cdef floating* d = bp + (q // nr) * ts + k * nr + lane
    while n > 0:
        m = nr - lane
        if m > n:
            m = n
        if src == NULL:
            for t in range(m):
                d[t] = 0
        elif m == nr:
            for t in range(nr):
                d[t] = src[t]
        else:
            for t in range(m):
                d[t] = src[t]
        if src != NULL:
            src = src + m
        d = d + m + ts - nr   # the next tile's row k, from its lane 0
        lane = 0
        n = n - m


cdef void _pack_b(const floating* x, floating* bp, Py_ssize_t ldb, Py_ssize_t qb,
                  Py_ssize_t k0, Py_ssize_t kc, Py_ssize_t p0, Py_ssize_t np_,
                  Py_ssize_t h, Py_ssize_t wd, Py_ssize_t ow_n, Py_ssize_t kh, Py_ssize_t kw,
                  Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                  Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t pad_to) noexcept nogil:
    """bp[k*ldb + qb + q] = X_col[k0 + k, p0 + q]: im2col rows for taps [k0, k0 + kc) and
    pixels [p0, p0 + np_), zeros on up to packed column pad_to. ldb == 0 (1x1 stride-1
    unpadded layers only, _tiled_b): tile-major instead, [tile][k][NR] with a line
    after each tile (_tile_stride), each micro-kernel B tile one contiguous panel.

    x: one image's channels of one group (c, h, wd). The pixels of the block split
    into runs that stay within one output row; each run of each tap is one (strided)
    copy of an input row segment -- a single memcpy for stride 1 -- with zeros where
    the tap reads padding. (Tried 2026-12 for stride 2: each input row split once per
    (c, u) into its even and odd columns, every tap's run then a memcpy from them
    instead of kw gathers of the same row -- benchmarks/ab.py --set avx512 --kernel gemm,
    Zen 4, 2 threads: stem 7x7/2 b1 0.98x the time, b8 1.01, 3x3/2 128@56 1.00, 256@28
    1.00, 512@14 1.01, at b8 1.00 and 1.00. Not kept: the gathers are not what the
    packing waits for.)
    """
    cdef Py_ssize_t k, c, u, v, q, oh, ow, ln, ih, off, a, e, t, fa, fe
    cdef Py_ssize_t n_out = np_ if pad_to <= qb + np_ else pad_to - qb
    cdef floating* row
    cdef floating* d
    cdef const floating* src
    if ldb == 0 or (kh == 1 and kw == 1 and sh == 1 and sw == 1 and ph == 0 and pw == 0
                    and ow_n == wd and p0 + np_ <= h * wd):
        # 1x1, stride 1, no padding (none after the input either -- a transposed
        # convolution's phases may have output rows past it): X_col is x itself, a
        # block is one contiguous segment per channel, one memcpy (a 14x14 layer's
        # row-by-row copies of 56 bytes each cost memmove's overhead per row) -- or,
        # tile-major, NR values at a time.
        for k in range(kc):
            src = x + (k0 + k) * h * wd + p0
            if ldb > 0:
                memcpy(bp + k * ldb + qb, src, np_ * sizeof(floating))
                if n_out > np_:
                    memset(bp + k * ldb + qb + np_, 0, (n_out - np_) * sizeof(floating))
            else:
                _put_run(bp, k, qb, np_, src)
                if n_out > np_:
                    _put_run(bp, k, qb + np_, n_out - np_, NULL)
        return
    c = k0 // (kh * kw)
    u = (k0 // kw) % kh
    v = k0 % kw
    for k in range(kc):
        row = bp + k * ldb + qb
        off = v * dw - pw  # output column ow reads input column ow*sw + off
        if sw != 2:   # a whole output row's columns that read real input (gather2z finds its own)
            tap_range(off, sw, ow_n, wd, &fa, &fe)
        q = 0
        oh = p0 // ow_n
        ow = p0 % ow_n
        while q < np_:
            ln = ow_n - ow
            if ln > np_ - q:
                ln = np_ - q
            d = row + q
            ih = oh * sh - ph + u * dh
            if ih < 0 or ih >= h:
                memset(d, 0, ln * sizeof(floating))
            elif sw == 2:   # the run in one call, its padded columns included (_ukernel.h)
                if floating is float:
                    pyconv_gather2z_f32(d, x + (c * h + ih) * wd, ow * 2 + off, ln, wd)
                else:
                    pyconv_gather2z_f64(d, x + (c * h + ih) * wd, ow * 2 + off, ln, wd)
            else:
                src = x + (c * h + ih) * wd
                a = fa if fa > ow else ow  # ... within this run's columns [ow, ow + ln)
                e = fe if fe < ow + ln else ow + ln
                if e < a:
                    e = a
                if a > ow:
                    memset(d, 0, (a - ow) * sizeof(floating))
                if sw == 1:
                    memcpy(d + a - ow, src + a + off, (e - a) * sizeof(floating))
                else:
                    for t in range(a, e):
                        d[t - ow] = src[t * sw + off]
                if e < ow + ln:
                    memset(d + e - ow, 0, (ow + ln - e) * sizeof(floating))
            q = q + ln
            oh = oh + 1
            ow = 0
        if n_out > np_:
            memset(row + np_, 0, (n_out - np_) * sizeof(floating))
        v = v + 1
        if v == kw:
            v = 0
            u = u + 1
            if u == kh:
                u = 0
                c = c + 1


cdef inline int _prefetch_weights(Py_ssize_t nbytes) noexcept nogil:
    """Whether the GEMM prefetches each next panel's weights (pyconv_prefetch_rows): for
    a group's filter of nbytes >= PREFETCH_MIN_BYTES. Smaller ones stay in L2 after the
    first pixel block; prefetching them only cost time (64 -> 256 channels 1x1 at
    56x56, 64 KiB: 12 % slower)."""
    return nbytes >= PREFETCH_MIN_BYTES


cdef inline void _ukr(Py_ssize_t kc, const floating* a, Py_ssize_t lda, const floating* b,
                      Py_ssize_t ldb, floating* c, Py_ssize_t ldc, int accumulate,
                      const floating* bias, floating lo, floating hi,
                      Py_ssize_t mr, Py_ssize_t nr, Py_ssize_t nr_full) noexcept nogil:
    """The micro-kernel on one tile: the full one, or the edge variant for a partial
    tile; bias != NULL finishes the tile (+ bias, clamp) -- see _ukernel.h."""
    if mr == PYCONV_MR and nr == nr_full:
        if floating is float:
            pyconv_ukr_f32(kc, a, lda, b, ldb, c, ldc, accumulate, bias, lo, hi)
        else:
            pyconv_ukr_f64(kc, a, lda, b, ldb, c, ldc, accumulate, bias, lo, hi)
    else:
        if floating is float:
            pyconv_ukr_f32_edge(kc, a, lda, b, ldb, c, ldc, accumulate, bias, lo, hi, mr, nr)
        else:
            pyconv_ukr_f64_edge(kc, a, lda, b, ldb, c, ldc, accumulate, bias, lo, hi, mr, nr)


cdef inline void _ukr_tail(Py_ssize_t kc, const floating* a, Py_ssize_t lda, const floating* bt,
                           floating* c, Py_ssize_t ldc, int accumulate, const floating* bias,
                           floating lo, floating hi, Py_ssize_t mr, Py_ssize_t nt) noexcept nogil:
    """The tail kernel on an image's last nt pixels, Bt from _transpose_tail."""
    if floating is float:
        pyconv_tail_f32(kc, a, lda, bt, KC, c, ldc, accumulate, bias, lo, hi, mr, nt)
    else:
        pyconv_tail_f64(kc, a, lda, bt, KC, c, ldc, accumulate, bias, lo, hi, mr, nt)


cdef void _gemm_kblock(const floating* a, Py_ssize_t lda, const floating* b, Py_ssize_t ts,
                       Py_ssize_t ldb, const floating* bt, floating* c, Py_ssize_t ldc,
                       Py_ssize_t mp0, Py_ssize_t mp1, Py_ssize_t m_n, Py_ssize_t kc,
                       Py_ssize_t np_, int has_tail, int accumulate, const floating* bias,
                       floating lo, floating hi, int prefetch) noexcept nogil:
    """One packed K block's products for the panels [mp0, mp1) of a group:
    C[m, j] (+)= sum_k A[m, k] * B[k, j] for the channels m of those panels and the
    np_ pixels j of the block.

    a: the group's weights at the K block's first tap (rows lda apart); b: the packed
    block (_pack_b: tile j at b + j*ts, its rows ldb apart); bt: its last tile
    transposed where has_tail (_transpose_tail);
    c: the output row of panel mp0 at the block's first pixel (rows ldc apart);
    bias != NULL on the last K block (the store adds it and clamps). Loop order: see
    the top of this file (a B tile stays in L1 while an M block's panels stream past).
    prefetch: with the first tile, fetch the next panel's weights into L2 (see
    _prefetch_weights).
    """
    cdef Py_ssize_t nr = _nr(<floating>0)
    cdef Py_ssize_t n_tiles = (np_ + nr - 1) // nr
    cdef Py_ssize_t mcb, mc0, mc1, j, mp, mr, nrj
    cdef const floating* a_panel
    cdef floating* c_tile
    cdef Py_ssize_t mc_panels = max(1, MC_ROWS // PYCONV_MR)
    for mcb in range((mp1 - mp0 + mc_panels - 1) // mc_panels):
        mc0 = mp0 + mcb * mc_panels
        mc1 = mc0 + mc_panels
        if mc1 > mp1:
            mc1 = mp1
        for j in range(n_tiles):
            nrj = np_ - j * nr
            if nrj > nr:
                nrj = nr
            for mp in range(mc0, mc1):
                a_panel = a + mp * PYCONV_MR * lda
                if prefetch and j == 0 and mp + 1 < mp1:   # the next panel's weights
                    pyconv_prefetch_rows(a_panel + PYCONV_MR * lda, lda * sizeof(floating),
                                         kc * sizeof(floating), PYCONV_MR)
                c_tile = c + (mp - mp0) * PYCONV_MR * ldc + j * nr
                mr = m_n - mp * PYCONV_MR
                if mr > PYCONV_MR:
                    mr = PYCONV_MR
                if has_tail and j == n_tiles - 1:
                    _ukr_tail(kc, a_panel, lda, bt, c_tile, ldc, accumulate,
                              bias + mp * PYCONV_MR if bias != NULL else NULL, lo, hi, mr, nrj)
                else:
                    _ukr(kc, a_panel, lda, b + j * ts, ldb, c_tile, ldc, accumulate,
                         bias + mp * PYCONV_MR if bias != NULL else NULL, lo, hi, mr, nrj, nr)


cdef int _igemm_folded(const floating* xp, const floating* wp, const floating* bp, floating* yp,
                       Py_ssize_t n_img, Py_ssize_t c_all, Py_ssize_t h, Py_ssize_t wd,
                       Py_ssize_t c_out, Py_ssize_t kh, Py_ssize_t kw,
                       Py_ssize_t oh_n, Py_ssize_t ow_n,
                       Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                       Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups,
                       floating lo, floating hi, int num_threads, const floating* rp) noexcept nogil:
    """igemm_conv2d for a batch of small images (at most FOLD_TILES tiles, the last one
    partly empty: 7x7 images fill 49/56 of their tiles, 4x4 ones 16/24). Per image, a
    unit would also stream all the weights for those few tiles. Here the GEMM's N runs
    over the pixels of all images: a unit = (group, block of the batch's tiles, block
    of output channels), and only the batch's last tile is partial. A tile can straddle
    two images, so the micro-kernel writes a per-thread staging block (channels x
    pixels, STAGE_BYTES) that is copied into y image by image after the last K block,
    bias and clamp already applied. The channel block is what the staging block
    holds: B is packed once per channel block (all of them, mostly). rp: see
    _igemm_conv2d (the residual is added as the staging block is copied out)."""
    cdef Py_ssize_t c_in = c_all // groups
    cdef Py_ssize_t m_n = c_out // groups
    cdef Py_ssize_t k_n = c_in * kh * kw
    cdef Py_ssize_t p_n = oh_n * ow_n
    cdef Py_ssize_t p_all = n_img * p_n            # the batch's pixels, image-major
    cdef Py_ssize_t nr = _nr(<floating>0)
    cdef Py_ssize_t panels = (m_n + PYCONV_MR - 1) // PYCONV_MR
    cdef Py_ssize_t t_n = num_threads
    cdef Py_ssize_t tiles = (p_all + nr - 1) // nr
    cdef Py_ssize_t pblocks = (tiles + FOLD_TILES - 1) // FOLD_TILES
    # Few units: more pixel blocks, towards a multiple of the threads.
    while (groups * pblocks) % t_n and groups * pblocks < 4 * t_n and 2 * (pblocks + 1) <= tiles:
        pblocks = pblocks + 1
    cdef Py_ssize_t nc = (tiles + pblocks - 1) // pblocks * nr
    pblocks = (p_all + nc - 1) // nc
    cdef Py_ssize_t ldb = _odd_line_stride(nc, sizeof(floating))
    cdef _PackedB lay = _packed_b(<floating>0, _plain_1x1(kh, kw, sh, sw, ph, pw, h, wd, oh_n, ow_n),
                                  k_n, ldb)   # B's layout
    cdef Py_ssize_t ppm = STAGE_BYTES // (ldb * PYCONV_MR * sizeof(floating))  # panels per M block
    if ppm < 1:
        ppm = 1
    cdef Py_ssize_t mblocks = (panels + ppm - 1) // ppm
    ppm = (panels + mblocks - 1) // mblocks
    cdef Py_ssize_t units = groups * pblocks * mblocks
    cdef Py_ssize_t n_kb = (k_n + KC - 1) // KC
    cdef int prefetch = _prefetch_weights(m_n * k_n * sizeof(floating))
    cdef floating lo_k = lo if rp == NULL else -INFINITY   # the GEMM's clamp: after the
    cdef floating hi_k = hi if rp == NULL else INFINITY    # residual, if one is added

    cdef Py_ssize_t unit, rest, g, pb, mb, q0, np_, np_pad, n_tiles, mc0, mc1
    cdef Py_ssize_t kb, k0, kc, k, q, n, p, ln, rows, off
    cdef Py_ssize_t vl = _vl(<floating>0), tail = _tail_pixels(p_all, nr, vl)  # the batch's last pixels
    cdef int has_tail
    cdef floating* buf
    cdef floating* bt
    cdef floating* stage
    cdef int failed = 0
    cdef int* failed_flag = &failed  # written through a pointer: parallel() privatises assignments

    with parallel(num_threads=num_threads):
        buf = <floating*>_aligned_malloc((lay.size + KC * vl) * sizeof(floating))
        bt = buf + lay.size if buf != NULL else NULL   # the tail's columns, transposed
        stage = <floating*>_aligned_malloc(ppm * PYCONV_MR * ldb * sizeof(floating))
        if buf == NULL or stage == NULL:
            failed_flag[0] = 1
        for unit in prange(units, schedule="dynamic"):
            if buf == NULL or stage == NULL:
                continue
            mb = unit % mblocks
            rest = unit // mblocks
            pb = rest % pblocks
            g = rest // pblocks
            q0 = pb * nc
            np_ = p_all - q0
            if np_ > nc:
                np_ = nc
            n_tiles = (np_ + nr - 1) // nr
            np_pad = n_tiles * nr
            has_tail = tail > 0 and q0 + np_ == p_all
            mc0 = mb * ppm
            mc1 = mc0 + ppm
            if mc1 > panels:
                mc1 = panels
            for kb in range(n_kb):
                k0 = kb * KC
                kc = k_n - k0
                if kc > KC:
                    kc = KC
                q = 0                  # im2col columns, one image's run at a time
                while q < np_:
                    n = (q0 + q) // p_n
                    p = (q0 + q) % p_n
                    ln = p_n - p
                    if ln > np_ - q:
                        ln = np_ - q
                    _pack_b(xp + (n * c_all + g * c_in) * h * wd, buf, lay.pack_ld, q, k0, kc, p, ln,
                            h, wd, ow_n, kh, kw, sh, sw, ph, pw, dh, dw,
                            np_pad if q + ln == np_ else 0)   # the last run pads the tile
                    q = q + ln
                if has_tail:
                    _transpose_tail(buf + (n_tiles - 1) * lay.ts, lay.ld, kc, tail, vl, bt)
                _gemm_kblock(wp + g * m_n * k_n + k0, k_n, buf, lay.ts, lay.ld, bt, stage, ldb, mc0, mc1, m_n,
                             kc, np_, has_tail, kb > 0, bp + g * m_n if kb == n_kb - 1 else NULL,
                             lo_k, hi_k, prefetch)
            rows = m_n - mc0 * PYCONV_MR  # staging rows that hold channels
            if rows > (mc1 - mc0) * PYCONV_MR:
                rows = (mc1 - mc0) * PYCONV_MR
            q = 0
            while q < np_:
                n = (q0 + q) // p_n
                p = (q0 + q) % p_n
                ln = p_n - p
                if ln > np_ - q:
                    ln = np_ - q
                if rp == NULL:
                    for k in range(rows):
                        memcpy(yp + (n * c_out + g * m_n + mc0 * PYCONV_MR + k) * p_n + p,
                               stage + k * ldb + q, ln * sizeof(floating))
                else:
                    off = (n * c_out + g * m_n + mc0 * PYCONV_MR) * p_n + p
                    _add_residual(yp + off, stage + q, ldb, rp + off, p_n, rows, ln, lo, hi)
                q = q + ln
        _aligned_free(stage)
        _aligned_free(buf)
    return -1 if failed else 0


cdef int igemm_conv2d(const floating* xp, const floating* wp, const floating* bp, floating* yp,
                      Py_ssize_t n_img, Py_ssize_t c_all, Py_ssize_t h, Py_ssize_t wd,
                      Py_ssize_t c_out, Py_ssize_t kh, Py_ssize_t kw,
                      Py_ssize_t oh_n, Py_ssize_t ow_n,
                      Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                      Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups,
                      floating lo, floating hi, int num_threads) noexcept nogil:
    """The GEMM correlation on raw C-contiguous NCHW arrays (the C-level entry, also
    exported as a capsule by c_api()): y (n_img, c_out, oh_n, ow_n) =
    clamp(bias + correlation(x (n_img, c_all, h, wd), w (c_out, c_all/groups, kh, kw)), lo, hi).
    Arguments must be valid (non-empty, groups dividing both channel counts).
    Returns 0, or -1 when a per-thread buffer cannot be allocated (y is then incomplete)."""
    return _igemm_conv2d(xp, wp, bp, yp, n_img, c_all, h, wd, c_out, kh, kw, oh_n, ow_n,
                         sh, sw, ph, pw, dh, dw, groups, lo, hi, num_threads, NULL)


cdef inline void _add_residual(floating* y, const floating* c, Py_ssize_t ldc, const floating* r,
                               Py_ssize_t ld, Py_ssize_t rows, Py_ssize_t n,
                               floating lo, floating hi) noexcept nogil:
    """y[i, j] = clamp(c[i, j] + r[i, j], lo, hi) for i < rows, j < n (y, r rows ld apart,
    c rows ldc apart; c may be y): the residual join's arithmetic, as _conv.add_clamp
    does it (the sum rounded once, NaN passes the clamp)."""
    cdef Py_ssize_t i, j
    cdef floating v
    for i in range(rows):
        for j in range(n):
            v = c[i * ldc + j] + r[i * ld + j]
            v = lo if v < lo else v
            y[i * ld + j] = hi if v > hi else v


cdef int _igemm_conv2d(const floating* xp, const floating* wp, const floating* bp, floating* yp,
                       Py_ssize_t n_img, Py_ssize_t c_all, Py_ssize_t h, Py_ssize_t wd,
                       Py_ssize_t c_out, Py_ssize_t kh, Py_ssize_t kw,
                       Py_ssize_t oh_n, Py_ssize_t ow_n,
                       Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                       Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups,
                       floating lo, floating hi, int num_threads, const floating* rp) noexcept nogil:
    """igemm_conv2d, and with a residual rp (NULL: none; an array of y's shape):
    y = clamp(bias + correlation(x, w) + residual, lo, hi) -- a residual network's
    Conv -> Add (-> ReLU) in one call, the same values as the convolution followed
    by _conv.add_clamp, bit for bit: the GEMM stores bias + sum unclamped, and each
    unit adds its block of the residual while that block of y is still in cache."""
    cdef Py_ssize_t c_in = c_all // groups
    cdef Py_ssize_t m_n = c_out // groups          # GEMM M: output channels per group
    cdef Py_ssize_t k_n = c_in * kh * kw           # GEMM K: taps per output
    cdef Py_ssize_t p_n = oh_n * ow_n              # GEMM N: pixels per image
    cdef Py_ssize_t nr = _nr(<floating>0)
    cdef Py_ssize_t panels = (m_n + PYCONV_MR - 1) // PYCONV_MR
    cdef Py_ssize_t tiles = (p_n + nr - 1) // nr
    if n_img > 1 and tiles <= FOLD_TILES and (tiles * nr - p_n) * 10 > tiles * nr:
        return _igemm_folded(xp, wp, bp, yp, n_img, c_all, h, wd, c_out, kh, kw, oh_n, ow_n,
                             sh, sw, ph, pw, dh, dw, groups, lo, hi, num_threads, rp)
    # Work units: (image, group, block of whole NR tiles of at most NC_MAX pixels,
    # block of output-channel panels). With few units, both splits aim at a multiple
    # of the threads (7 units on 2 threads idle one thread for 1/8 of the call):
    #  - first more pixel blocks of at least 2 tiles (a block of one tile streams all
    #    the weights from L3 for it: 7x7 layers split 24 | 25 pixels were 15% slower
    #    than split by panels), where they stay within 5% of equal: each packs only
    #    its own pixels. An image's last tile, when the tail kernel takes it (at most a
    #    vector of pixels), costs a few percent of a tile: it rides with the last
    #    block and is not counted, so 14x14 = 8 tiles + 4 pixels splits 4 | 4 + tail
    #    -- except for 1x1 stride-1 layers: their packing is a copy, and panel blocks,
    #    whose weights stay in L2 for all 9 tiles, were 7% faster than pixel blocks;
    #  - then panel blocks -- each of which packs the same B again, so only as many as
    #    the balance needs, of at least 4 panels (measured: 4 panel blocks on 1 thread
    #    cost 25% at 14x14). (A team sharing one packed B across threads, with a
    #    barrier per K block, was slower here: the packed lines moved between cores.)
    cdef Py_ssize_t vl = _vl(<floating>0), tail = _tail_pixels(p_n, nr, vl)  # each image's last pixels
    cdef Py_ssize_t tiles_w = tiles  # tiles that cost a tile (for the pixel split)
    if tail > 0 and tiles > 1 and not (kh == 1 and kw == 1 and sh == 1 and sw == 1):
        tiles_w = tiles - 1
    cdef Py_ssize_t t_n = num_threads
    cdef Py_ssize_t img_units = n_img * groups
    #  Pixel blocks differ by at most one tile (block pb: tiles [pb*T/B, (pb+1)*T/B)),
    #  and their count is a multiple of the threads where that stays balanced: a
    #  112x112 image's 523 tiles make 26 blocks of 20 or 21 on 2 threads (32 on 16, not
    #  25 with 9 threads idle for the last round). On 2 threads the dynamic schedule
    #  had already absorbed the odd block (benchmarks/ab.py: 1.00).
    cdef Py_ssize_t pblocks = (tiles_w + NC_MAX // nr - 1) // (NC_MAX // nr), pb_try
    if img_units * pblocks < 16 * t_n:
        pb_try = pblocks
        while (img_units * pb_try) % t_n and 2 * (pb_try + 1) <= tiles_w:
            pb_try = pb_try + 1
        if (tiles_w + pb_try - 1) // pb_try * pb_try * 20 <= tiles_w * 21 and (
                (img_units * pb_try) % t_n == 0 or img_units * pb_try < t_n):
            pblocks = pb_try  # (fewer units than threads either way: the panels split the rest)
    cdef Py_ssize_t nc = (tiles_w + pblocks - 1) // pblocks * nr  # pixels of the widest block
    cdef Py_ssize_t nc_last = p_n - (pblocks - 1) * tiles_w // pblocks * nr  # the last (to p_n)
    cdef Py_ssize_t nc_pad = (nc_last + nr - 1) // nr * nr  # packed columns of the last block
    cdef Py_ssize_t ldb = _odd_line_stride(nc if nc > nc_pad else nc_pad, sizeof(floating))
    cdef bint plain = _plain_1x1(kh, kw, sh, sw, ph, pw, h, wd, oh_n, ow_n)
    cdef _PackedB lay = _packed_b(<floating>0, plain, k_n, ldb)   # B's layout
    cdef bint in_place = _in_place_b(plain, lay.tiled, m_n, k_n)
    cdef const floating* b_blk
    cdef Py_ssize_t b_ts, b_ld
    cdef Py_ssize_t mblocks = 1
    if img_units * pblocks < 4 * t_n:
        while (img_units * pblocks * mblocks) % t_n and 4 * (mblocks + 1) <= panels:
            mblocks = mblocks + 1
        if img_units * pblocks * mblocks < t_n:
            mblocks = (t_n + img_units * pblocks - 1) // (img_units * pblocks)
            if mblocks > panels:
                mblocks = panels
    cdef Py_ssize_t panels_per_mb = (panels + mblocks - 1) // mblocks
    mblocks = (panels + panels_per_mb - 1) // panels_per_mb
    cdef Py_ssize_t units = img_units * pblocks * mblocks

    cdef Py_ssize_t unit, rest, n, g, pb, mb, p0, np_, mp0, mp1, kb, k0, kc
    cdef Py_ssize_t n_tiles, n_kb = (k_n + KC - 1) // KC, off, rows
    cdef int prefetch = _prefetch_weights(m_n * k_n * sizeof(floating))
    cdef floating lo_k = lo if rp == NULL else -INFINITY   # the GEMM's clamp: after the
    cdef floating hi_k = hi if rp == NULL else INFINITY    # residual, if one is added
    cdef int has_tail
    cdef floating* buf
    cdef floating* bt
    cdef int failed = 0
    cdef int* failed_flag = &failed  # written through a pointer: parallel() privatises assignments

    with parallel(num_threads=num_threads):
        buf = <floating*>_aligned_malloc((lay.size + KC * vl) * sizeof(floating))
        bt = buf + lay.size if buf != NULL else NULL   # the tail's columns, transposed
        if buf == NULL:
            failed_flag[0] = 1
        for unit in prange(units, schedule="dynamic"):
            if buf == NULL:
                continue
            mb = unit % mblocks
            rest = unit // mblocks
            pb = rest % pblocks
            rest = rest // pblocks
            g = rest % groups
            n = rest // groups
            p0 = pb * tiles_w // pblocks * nr
            np_ = (pb + 1) * tiles_w // pblocks * nr - p0 if pb < pblocks - 1 else p_n - p0
            n_tiles = (np_ + nr - 1) // nr
            has_tail = tail > 0 and pb == pblocks - 1
            mp0 = mb * panels_per_mb
            mp1 = mp0 + panels_per_mb
            if mp1 > panels:
                mp1 = panels
            for kb in range(n_kb):
                k0 = kb * KC
                kc = k_n - k0
                if kc > KC:
                    kc = KC
                if in_place and not has_tail and np_ % nr == 0:   # B = x's rows (_in_place_b)
                    b_blk = xp + (n * c_all + g * c_in + k0) * h * wd + p0
                    b_ts = nr
                    b_ld = h * wd
                else:
                    _pack_b(xp + (n * c_all + g * c_in) * h * wd, buf, lay.pack_ld, 0, k0, kc, p0, np_,
                            h, wd, ow_n, kh, kw, sh, sw, ph, pw, dh, dw, n_tiles * nr)
                    if has_tail:
                        _transpose_tail(buf + (n_tiles - 1) * lay.ts, lay.ld, kc, tail, vl, bt)
                    b_blk = buf
                    b_ts = lay.ts
                    b_ld = lay.ld
                _gemm_kblock(wp + g * m_n * k_n + k0, k_n, b_blk, b_ts, b_ld, bt,
                             yp + (n * c_out + g * m_n + mp0 * PYCONV_MR) * p_n + p0, p_n,
                             mp0, mp1, m_n, kc, np_, has_tail, kb > 0,
                             bp + g * m_n if kb == n_kb - 1 else NULL, lo_k, hi_k, prefetch)
            if rp != NULL:     # the unit's block of y, + its block of the residual
                off = (n * c_out + g * m_n + mp0 * PYCONV_MR) * p_n + p0
                rows = min(mp1 * PYCONV_MR, m_n) - mp0 * PYCONV_MR
                _add_residual(yp + off, yp + off, p_n, rp + off, p_n, rows, np_, lo, hi)
        _aligned_free(buf)
    return -1 if failed else 0


def conv2d_igemm(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                 const floating[::1] bias, floating[:, :, :, ::1] y,
                 Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                 Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups,
                 double lo, double hi, int num_threads,
                 const floating[:, :, :, ::1] residual=None):
    """y = clamp(bias + correlation(x, w), lo, hi) -- the same contract, arguments and
    results (up to rounding) as pyconv._conv.conv2d_forward. With a residual (y's
    shape; not y itself): y = clamp(bias + correlation(x, w) + residual, lo, hi), bit for
    bit the convolution without the clamp followed by _conv.add_clamp(y, residual)."""
    cdef Py_ssize_t n_img = x.shape[0], c_all = x.shape[1], h = x.shape[2], wd = x.shape[3]
    cdef Py_ssize_t c_out = w.shape[0], c_in = w.shape[1], kh = w.shape[2], kw = w.shape[3]
    cdef Py_ssize_t oh_n = y.shape[2], ow_n = y.shape[3]
    if (y.shape[0] != n_img or y.shape[1] != c_out or bias.shape[0] != c_out
            or c_in * groups != c_all or c_out % groups != 0):
        raise ValueError("conv2d_igemm: inconsistent shapes")
    cdef const floating* rp = NULL
    if residual is not None:
        if (residual.shape[0] != n_img or residual.shape[1] != c_out
                or residual.shape[2] != oh_n or residual.shape[3] != ow_n):
            raise ValueError(f"conv2d_igemm: residual must have y's shape "
                             f"{(n_img, c_out, oh_n, ow_n)}, got {tuple([residual.shape[i] for i in range(4)])}")
        rp = &residual[0, 0, 0, 0]
        if <const void*>rp == <const void*>&y[0, 0, 0, 0]:
            raise ValueError("conv2d_igemm: residual must not be y")
    cdef int status
    with nogil:
        status = _igemm_conv2d(&x[0, 0, 0, 0], &w[0, 0, 0, 0], &bias[0], &y[0, 0, 0, 0],
                               n_img, c_all, h, wd, c_out, kh, kw, oh_n, ow_n,
                               sh, sw, ph, pw, dh, dw, groups, <floating>lo, <floating>hi,
                               num_threads, rp)
    if status != 0:
        raise MemoryError("conv2d: cannot allocate a per-thread packing buffer")


def c_api():
    """{'conv2d_f32': capsule, 'conv2d_f64': capsule, 'direct_f32': ..., 'direct_f64': ...}:
    this kernel set's igemm_conv2d and direct_conv2d (_direct.pxi) -- and its pooling,
    'maxpool_f32' and 'maxpool_f64' (_maxpool.pxi), 'pool_max_f32' ... (_pooling.pxi) -- as C function
    pointers (see pyconv/_kernels.pxd for the signature), so that C-level callers
    (pyconv's own C API) can use the kernel set chosen at run time."""
    api = {
        "conv2d_f32": PyCapsule_New(<void*>igemm_conv2d[float], b"pyconv.igemm_conv2d_f32", NULL),
        "conv2d_f64": PyCapsule_New(<void*>igemm_conv2d[double], b"pyconv.igemm_conv2d_f64", NULL),
    }
    api.update(c_api_direct())
    api.update(c_api_maxpool())   # _maxpool.pxi and _pooling.pxi, for pyconv._pool's C API
    api.update(c_api_pool())
    return api


def gather_phase_weights(const floating[:, :, :, ::1] w, floating[:, :, :, ::1] out,
                         Py_ssize_t groups, Py_ssize_t u0, Py_ssize_t du,
                         Py_ssize_t v0, Py_ssize_t dv, int num_threads=1):
    """One stride phase of transposed-convolution weights as correlation weights:
    out[g*C_out_g + o, c, j, l] = w[g*C_in_g + c, o, u0 + j*du, v0 + l*dv]
    for w (C_in, C_out/groups, kh, kw) and out (C_out, C_in/groups, th, tw); du, dv may
    be negative (the taps in reverse). One pass over w, in blocks of 32 input x 32
    output channels transposed into a local block whose rows are then copied out
    whole -- NumPy's fancy indexing with a transpose took several times longer than
    the GEMM it feeds. (Writing each value straight to its place, in the order of w,
    put consecutive writes C_in/groups x th x tw floats apart, a power of two for the
    usual channel counts: all in one cache set, every write missed L1.) A unit is a
    row of blocks (32 input channels, never across a group): each writes its own
    columns of out, so threads share nothing but the read of w."""
    cdef Py_ssize_t c_all = w.shape[0], c_out_g = w.shape[1], kh = w.shape[2], kw = w.shape[3]
    cdef Py_ssize_t c_in_g = c_all // groups, th = out.shape[2], tw = out.shape[3]
    if (out.shape[0] != c_out_g * groups or out.shape[1] != c_in_g or c_all % groups
            or u0 < 0 or u0 >= kh or u0 + (th - 1) * du < 0 or u0 + (th - 1) * du >= kh
            or v0 < 0 or v0 >= kw or v0 + (tw - 1) * dv < 0 or v0 + (tw - 1) * dv >= kw):
        raise ValueError("gather_phase_weights: inconsistent shapes or taps")
    if out.size == 0:
        return
    cdef const floating* wp = &w[0, 0, 0, 0]
    cdef floating* outp = &out[0, 0, 0, 0]
    cdef const floating* src
    cdef floating* dst
    cdef Py_ssize_t taps = th * tw, blocks_g = (c_in_g + 31) // 32
    cdef Py_ssize_t unit, i, o, j, l, ib, ob, ni, no, g, c
    cdef floating* block
    cdef int failed = 0
    cdef int* failed_flag = &failed  # written through a pointer: parallel() privatises assignments
    with nogil, parallel(num_threads=num_threads):
        block = <floating*>malloc(32 * 32 * taps * sizeof(floating))
        if block == NULL:
            failed_flag[0] = 1
        for unit in prange(groups * blocks_g, schedule="static"):
            if block == NULL:
                continue
            g = unit // blocks_g
            c = (unit % blocks_g) * 32
            ib = g * c_in_g + c
            ni = min(32, c_in_g - c)
            for ob in range(0, c_out_g, 32):
                no = min(32, c_out_g - ob)
                for i in range(ni):        # block[o][i][tap] = the tap of w[ib + i, ob + o]
                    for o in range(no):
                        src = wp + ((ib + i) * c_out_g + ob + o) * kh * kw
                        dst = block + (o * ni + i) * taps
                        for j in range(th):
                            for l in range(tw):
                                dst[j * tw + l] = src[(u0 + j * du) * kw + v0 + l * dv]
                for o in range(no):
                    memcpy(outp + ((g * c_out_g + ob + o) * c_in_g + c) * taps,
                           block + o * ni * taps, ni * taps * sizeof(floating))
        free(block)
    if failed:
        raise MemoryError("gather_phase_weights: cannot allocate the transpose block")
