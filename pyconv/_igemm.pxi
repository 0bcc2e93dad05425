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
#         '- for each K block (KC taps):
#              _pack_b               the unit's im2col rows for this K block, copied
#                                    from input row segments (zeros for padding) into
#                                    a per-thread KC x NC buffer: it stays in L2, and
#                                    the micro-kernel reads its NR-pixel tiles in place
#              for each panel of MR channels (its weights, MR x KC, read in place,
#                                    stay in L1 across the pixel tiles):
#                for each NR-pixel tile:  micro-kernel  C (+)= A * B   (_ukernel.h)
#              the last K block's store adds the bias and clamps (fused output pass)
#
# Workspace: one KC x NC buffer per thread (<= 512 KiB float32) -- bounded, never a
# full im2col, and no packed copy of the weights.

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
    void pyconv_ukr_f32(int64_t kc, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                        int64_t ldc, int accumulate, const float* bias, float lo, float hi)
    void pyconv_ukr_f64(int64_t kc, const double* A, int64_t lda, const double* B, int64_t ldb, double* C,
                        int64_t ldc, int accumulate, const double* bias, double lo, double hi)
    void pyconv_ukr_f32_edge(int64_t kc, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                             int64_t ldc, int accumulate, const float* bias, float lo, float hi,
                             int64_t mr, int64_t nr)
    void pyconv_gather2_f32(float* dst, const float* src, int64_t n)
    void pyconv_gather2_f64(double* dst, const double* src, int64_t n)
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
cdef enum:
    KC = 256
    NC_MAX = 512


cdef void* _aligned_malloc(size_t size) noexcept nogil:
    """malloc aligned to PYCONV_ALIGN; the raw pointer is kept just below the block."""
    cdef void* raw = malloc(size + PYCONV_ALIGN + sizeof(void*))
    if raw == NULL:
        return NULL
    cdef uintptr_t p = (<uintptr_t>raw + sizeof(void*) + PYCONV_ALIGN - 1) & ~(<uintptr_t>PYCONV_ALIGN - 1)
    (<void**>p - 1)[0] = raw
    return <void*>p


cdef void _aligned_free(void* p) noexcept nogil:
    if p != NULL:
        free((<void**>p - 1)[0])


cdef inline Py_ssize_t _nr(floating dummy) noexcept nogil:
    if floating is float:
        return PYCONV_NR_F32
    else:
        return PYCONV_NR_F64


cdef void _pack_b(const floating* x, floating* bp, Py_ssize_t ldb,
                  Py_ssize_t k0, Py_ssize_t kc, Py_ssize_t p0, Py_ssize_t np_, Py_ssize_t nr,
                  Py_ssize_t h, Py_ssize_t wd, Py_ssize_t ow_n, Py_ssize_t kh, Py_ssize_t kw,
                  Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                  Py_ssize_t dh, Py_ssize_t dw) noexcept nogil:
    """bp[k*ldb + q] = X_col[k0 + k, p0 + q]: im2col rows for taps [k0, k0 + kc) and
    pixels [p0, p0 + np_), zeros up to the next multiple of nr.

    x: one image's channels of one group (c, h, wd). The pixels of the block split
    into runs that stay within one output row; each run of each tap is one (strided)
    copy of an input row segment -- a single memcpy for stride 1 -- with zeros where
    the tap reads padding.
    """
    cdef Py_ssize_t np_pad = (np_ + nr - 1) // nr * nr
    cdef Py_ssize_t k, c, u, v, q, oh, ow, ln, ih, off, a, e, t
    cdef floating* dst
    cdef floating* d
    cdef const floating* src
    c = k0 // (kh * kw)
    u = (k0 // kw) % kh
    v = k0 % kw
    for k in range(kc):
        dst = bp + k * ldb
        off = v * dw - pw  # output column ow reads input column ow*sw + off
        q = 0
        oh = p0 // ow_n
        ow = p0 % ow_n
        while q < np_:
            ln = ow_n - ow
            if ln > np_ - q:
                ln = np_ - q
            d = dst + q
            ih = oh * sh - ph + u * dh
            if ih < 0 or ih >= h:
                memset(d, 0, ln * sizeof(floating))
            else:
                src = x + (c * h + ih) * wd
                tap_range(off, sw, ow + ln, wd, &a, &e)  # columns that read real input
                if a < ow:
                    a = ow
                if e < a:
                    e = a
                if a > ow:
                    memset(d, 0, (a - ow) * sizeof(floating))
                if sw == 1:
                    memcpy(d + a - ow, src + a + off, (e - a) * sizeof(floating))
                elif sw == 2 and e > a:
                    if floating is float:
                        pyconv_gather2_f32(d + a - ow, src + 2 * a + off, e - a)
                    else:
                        pyconv_gather2_f64(d + a - ow, src + 2 * a + off, e - a)
                else:
                    for t in range(a, e):
                        d[t - ow] = src[t * sw + off]
                if e < ow + ln:
                    memset(d + e - ow, 0, (ow + ln - e) * sizeof(floating))
            q = q + ln
            oh = oh + 1
            ow = 0
        if np_pad > np_:
            memset(dst + np_, 0, (np_pad - np_) * sizeof(floating))
        v = v + 1
        if v == kw:
            v = 0
            u = u + 1
            if u == kh:
                u = 0
                c = c + 1


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
    cdef Py_ssize_t c_in = c_all // groups
    cdef Py_ssize_t m_n = c_out // groups          # GEMM M: output channels per group
    cdef Py_ssize_t k_n = c_in * kh * kw           # GEMM K: taps per output
    cdef Py_ssize_t p_n = oh_n * ow_n              # GEMM N: pixels per image
    cdef Py_ssize_t nr = _nr(<floating>0)
    cdef Py_ssize_t panels = (m_n + PYCONV_MR - 1) // PYCONV_MR
    cdef Py_ssize_t nc = ((p_n + nr - 1) // nr) * nr  # pixels per unit: whole tiles
    if nc > NC_MAX // nr * nr:
        nc = NC_MAX // nr * nr
    cdef Py_ssize_t pblocks = (p_n + nc - 1) // nc
    # Too few (image, group, pixel block) units for the threads: also split the
    # output-channel panels (each such unit packs its own B; results are unchanged).
    cdef Py_ssize_t want = 4 * <Py_ssize_t>num_threads, mblocks = 1
    if n_img * groups * pblocks < want:
        mblocks = (want + n_img * groups * pblocks - 1) // (n_img * groups * pblocks)
        if mblocks > panels:
            mblocks = panels
    cdef Py_ssize_t panels_per_mb = (panels + mblocks - 1) // mblocks
    mblocks = (panels + panels_per_mb - 1) // panels_per_mb
    cdef Py_ssize_t units = n_img * groups * pblocks * mblocks

    cdef Py_ssize_t unit, rest, n, g, pb, mb, p0, np_, mp, mp1, kb, k0, kc, j, mr, nrj
    cdef Py_ssize_t n_tiles, n_kb = (k_n + KC - 1) // KC
    cdef floating* buf
    cdef floating* yb
    cdef const floating* a_panel
    cdef int failed = 0
    cdef int* failed_flag = &failed  # written through a pointer: parallel() privatises assignments

    with parallel(num_threads=num_threads):
        buf = <floating*>_aligned_malloc(KC * nc * sizeof(floating))
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
            p0 = pb * nc
            np_ = p_n - p0
            if np_ > nc:
                np_ = nc
            n_tiles = (np_ + nr - 1) // nr
            mp1 = (mb + 1) * panels_per_mb
            if mp1 > panels:
                mp1 = panels
            yb = yp + (n * c_out + g * m_n) * p_n + p0
            for kb in range(n_kb):
                k0 = kb * KC
                kc = k_n - k0
                if kc > KC:
                    kc = KC
                _pack_b(xp + (n * c_all + g * c_in) * h * wd, buf, nc, k0, kc, p0, np_, nr,
                        h, wd, ow_n, kh, kw, sh, sw, ph, pw, dh, dw)
                for mp in range(mb * panels_per_mb, mp1):
                    a_panel = wp + (g * m_n + mp * PYCONV_MR) * k_n + k0
                    mr = m_n - mp * PYCONV_MR
                    if mr > PYCONV_MR:
                        mr = PYCONV_MR
                    for j in range(n_tiles):
                        nrj = np_ - j * nr
                        if nrj > nr:
                            nrj = nr
                        _ukr(kc, a_panel, k_n, buf + j * nr, nc,
                             yb + mp * PYCONV_MR * p_n + j * nr, p_n, kb > 0,
                             bp + g * m_n + mp * PYCONV_MR if kb == n_kb - 1 else NULL,
                             lo, hi, mr, nrj, nr)
        _aligned_free(buf)
    return -1 if failed else 0


def conv2d_igemm(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                 const floating[::1] bias, floating[:, :, :, ::1] y,
                 Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                 Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups,
                 double lo, double hi, int num_threads):
    """y = clamp(bias + correlation(x, w), lo, hi) -- the same contract, arguments and
    results (up to rounding) as pyconv._conv.conv2d_forward."""
    cdef Py_ssize_t n_img = x.shape[0], c_all = x.shape[1], h = x.shape[2], wd = x.shape[3]
    cdef Py_ssize_t c_out = w.shape[0], c_in = w.shape[1], kh = w.shape[2], kw = w.shape[3]
    cdef Py_ssize_t oh_n = y.shape[2], ow_n = y.shape[3]
    if (y.shape[0] != n_img or y.shape[1] != c_out or bias.shape[0] != c_out
            or c_in * groups != c_all or c_out % groups != 0):
        raise ValueError("conv2d_igemm: inconsistent shapes")
    cdef int status
    with nogil:
        status = igemm_conv2d(&x[0, 0, 0, 0], &w[0, 0, 0, 0], &bias[0], &y[0, 0, 0, 0],
                              n_img, c_all, h, wd, c_out, kh, kw, oh_n, ow_n,
                              sh, sw, ph, pw, dh, dw, groups, <floating>lo, <floating>hi,
                              num_threads)
    if status != 0:
        raise MemoryError("conv2d: cannot allocate a per-thread packing buffer")


def c_api():
    """{'conv2d_f32': capsule, 'conv2d_f64': capsule, 'direct_f32': ..., 'direct_f64': ...}:
    this kernel set's igemm_conv2d and direct_conv2d (_direct.pxi) as C function
    pointers (see pyconv/_kernels.pxd for the signature), so that C-level callers
    (pyconv's own C API) can use the kernel set chosen at run time."""
    api = {
        "conv2d_f32": PyCapsule_New(<void*>igemm_conv2d[float], b"pyconv.igemm_conv2d_f32", NULL),
        "conv2d_f64": PyCapsule_New(<void*>igemm_conv2d[double], b"pyconv.igemm_conv2d_f64", NULL),
    }
    api.update(c_api_direct())
    return api


def gather_phase_weights(const floating[:, :, :, ::1] w, floating[:, :, :, ::1] out,
                         Py_ssize_t groups, Py_ssize_t u0, Py_ssize_t du,
                         Py_ssize_t v0, Py_ssize_t dv):
    """One stride phase of transposed-convolution weights as correlation weights:
    out[g*C_out_g + o, c, j, l] = w[g*C_in_g + c, o, u0 + j*du, v0 + l*dv]
    for w (C_in, C_out/groups, kh, kw) and out (C_out, C_in/groups, th, tw); du, dv may
    be negative (the taps in reverse). One sequential pass over w (its rows are read
    in order, the small output rows written in place) -- NumPy's fancy indexing with
    a transpose took several times longer than the GEMM it feeds."""
    cdef Py_ssize_t c_all = w.shape[0], c_out_g = w.shape[1], kh = w.shape[2], kw = w.shape[3]
    cdef Py_ssize_t c_in_g = c_all // groups, th = out.shape[2], tw = out.shape[3]
    if (out.shape[0] != c_out_g * groups or out.shape[1] != c_in_g or c_all % groups
            or u0 < 0 or u0 >= kh or u0 + (th - 1) * du < 0 or u0 + (th - 1) * du >= kh
            or v0 < 0 or v0 >= kw or v0 + (tw - 1) * dv < 0 or v0 + (tw - 1) * dv >= kw):
        raise ValueError("gather_phase_weights: inconsistent shapes or taps")
    cdef const floating* src
    cdef floating* dst
    cdef Py_ssize_t i, o, j, l
    with nogil:
        for i in range(c_all):
            for o in range(c_out_g):
                src = &w[i, o, 0, 0]
                dst = &out[(i // c_in_g) * c_out_g + o, i % c_in_g, 0, 0]
                for j in range(th):
                    for l in range(tw):
                        dst[j * tw + l] = src[(u0 + j * du) * kw + v0 + l * dv]
