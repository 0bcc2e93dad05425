# Winograd F(4x4, 3x3): float32 3x3 stride-1 correlation with 36 GEMMs instead of 9
# taps per output (2.25x fewer multiplications at full tiles, 4x per interior 4x4 tile).
#
# Included by each kernel-set module after _igemm.pxi (it uses its _aligned_malloc,
# KC and the micro-kernel declarations), so it is compiled once per ISA.
#
# Lavin & Gray's F(4, 3) (points 0, +-1, +-2, inf). For one 6x6 input tile d, one
# 3x3 filter g and the 4x4 output tile y:
#
#     y = A^T [ (G g G^T) .* (B^T d B) ] A      (.* : per transform point t < 36)
#
# and summed over input channels the point-wise product is a GEMM per point:
#
#     M[t] (C_out x tiles) = U[t] (C_out x C_in) * V[t] (C_in x tiles)
#
#   winograd_weights            U = G g G^T, once per layer (the caller caches it),
#                               stored u[t][o][c]: each U[t] is a micro-kernel A
#                               operand read in place (lda = C_in)
#   winograd_conv2d             def: checks, releases the GIL
#    '- prange over work units  unit = (block of TB tiles over all images, block of
#         |                     output-channel panels); one unit owns its output
#         |                     elements and sums them in one fixed order: bitwise
#         |                     identical for any thread count
#         |- _wino_input        B^T d B for every channel of the block's tiles, VL
#         |                     tiles per vector -> per-thread V (36 x C_in x TB),
#         |                     rows of TB tiles: the micro-kernel's packed B
#         '- per block of OB output channels:
#              for t < 36, K block (KC channels), MR-channel panel, NR-tile tile:
#                  micro-kernel  M[t] (+)= U[t] * V[t]          (_ukernel.h)
#              _wino_output      A^T m A, + bias, clamp, VL tiles per vector; the
#                                4x4 outputs scattered into y, clipped at the edges
#
# Workspace per thread: V (36 x C_in x TB floats, TB chosen to keep it near 1 MiB)
# and M (36 x OB x TB, about 512 KiB) -- bounded by C_in, never by the image.
# The transforms are straight-line C on GCC/Clang vector types (the width of the
# kernel set), written as Cython verbatim C so that they stay in this file.

cdef extern from *:
    """
    #include "_ukernel.h"

    /* Vectors of VL tiles, read and written through float buffers. */
    typedef float pyconv_wvu __attribute__((vector_size(PYCONV_VBYTES), aligned(4), may_alias));
    #define PYCONV_WVL (PYCONV_VBYTES / 4)

    /* o = B^T x for one 6-vector of tile vectors (x[k*xs], o[k*os], in floats):
     *   B^T = [4  0 -5  0 1 0; 0 -4 -4  1 1 0; 0  4 -4 -1 1 0;
     *          0 -2 -1  2 1 0; 0  2 -1 -2 1 0; 0  4  0 -5 0 1]   */
    static inline void pyconv_wino_bt6_f32(const float *x, int64_t xs, float *o, int64_t os)
    {
    #define PYCONV_WX(k) (*(const pyconv_wvu *)(x + (k) * xs))
    #define PYCONV_WO(k) (*(pyconv_wvu *)(o + (k) * os))
        pyconv_vf x0 = PYCONV_WX(0), x1 = PYCONV_WX(1), x2 = PYCONV_WX(2);
        pyconv_vf x3 = PYCONV_WX(3), x4 = PYCONV_WX(4), x5 = PYCONV_WX(5);
        pyconv_vf a = x4 - x2, b = x3 - x1;
        PYCONV_WO(0) = 4.0f * (x0 - x2) + a;
        PYCONV_WO(1) = (x3 + x4) - 4.0f * (x1 + x2);
        PYCONV_WO(2) = (x4 - x3) + 4.0f * (x1 - x2);
        PYCONV_WO(3) = a + 2.0f * b;
        PYCONV_WO(4) = a - 2.0f * b;
        PYCONV_WO(5) = 4.0f * (x1 - x3) + (x5 - x3);
    #undef PYCONV_WO
    #undef PYCONV_WX
    }

    /* o = A^T m for one 6-vector: A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1] */
    static inline void pyconv_wino_at6_f32(const pyconv_vf *m, int64_t ms, pyconv_vf *o, int64_t os)
    {
        pyconv_vf m1 = m[ms], m2 = m[2 * ms], m3 = m[3 * ms], m4 = m[4 * ms];
        pyconv_vf s12 = m1 + m2, d12 = m1 - m2, s34 = m3 + m4, d34 = m3 - m4;
        o[0] = m[0] + s12 + s34;
        o[os] = d12 + 2.0f * d34;
        o[2 * os] = s12 + 4.0f * s34;
        o[3 * os] = d12 + 8.0f * d34 + m[5 * ms];
    }

    /* Input transform of tiles [t0, t0 + nt) (numbered over images, tile rows, tile
     * columns; tw tiles per row, tpi per image), every channel:
     *   v[t*ldt + c*ldb + j] = (B^T d B)[t] of channel c of tile t0 + j,
     * for j < nt rounded up to VL (lanes past nt are zeros). Each vector holds VL
     * tiles; the 6x6 inputs are gathered lane by lane (zeros where a tile reads
     * padding), then transformed 6 rows and 6 columns at a time. */
    static void pyconv_wino_input_f32(const float *x, int64_t c_in, int64_t h, int64_t w,
                                      int64_t tw, int64_t tpi, int64_t ph, int64_t pw,
                                      int64_t t0, int64_t nt, float *v, int64_t ldb, int64_t ldt)
    {
        enum { VL = PYCONV_WVL };
        float d[36 * VL] __attribute__((aligned(PYCONV_ALIGN)));
        float tmp[36 * VL] __attribute__((aligned(PYCONV_ALIGN)));
        int64_t off[VL], r0[VL], r1[VL], q0[VL], q1[VL];
        int full[VL];
        const int64_t hw = h * w;
        for (int64_t j0 = 0; j0 < nt; j0 += VL) {
            for (int64_t l = 0; l < VL; l++) {
                if (j0 + l >= nt) {            /* past the block: an all-padding tile */
                    off[l] = 0; r0[l] = r1[l] = q0[l] = q1[l] = 0; full[l] = 0;
                    continue;
                }
                int64_t tile = t0 + j0 + l, n = tile / tpi, rem = tile % tpi;
                int64_t iy = 4 * (rem / tw) - ph, ix = 4 * (rem % tw) - pw;
                r0[l] = iy < 0 ? -iy : 0;  r1[l] = h - iy < 6 ? h - iy : 6;
                q0[l] = ix < 0 ? -ix : 0;  q1[l] = w - ix < 6 ? w - ix : 6;
                off[l] = n * c_in * hw + iy * w + ix;  /* may point before x: only read in range */
                full[l] = !(r0[l] | q0[l] | (r1[l] - 6) | (q1[l] - 6));
            }
            for (int64_t c = 0; c < c_in; c++) {
                const float *xc = x + c * hw;
                /* Gather lane by lane: a tile inside the image is 36 plain copies (the
                 * common case, decided per lane: a vector of tiles usually holds one at
                 * an image edge); an edge tile is zeros plus its valid rectangle. */
                for (int64_t l = 0; l < VL; l++) {
                    if (full[l]) {
                        const float *s = xc + off[l];
                        for (int r = 0; r < 6; r++)
                            for (int q = 0; q < 6; q++)
                                d[(r * 6 + q) * VL + l] = s[r * w + q];
                    } else {
                        for (int k = 0; k < 36; k++)
                            d[k * VL + l] = 0.0f;
                        for (int64_t r = r0[l]; r < r1[l]; r++)
                            for (int64_t q = q0[l]; q < q1[l]; q++)
                                d[(r * 6 + q) * VL + l] = xc[off[l] + r * w + q];
                    }
                }
                for (int r = 0; r < 6; r++)          /* rows: tmp[r][q'] = (d B)[r][q'] */
                    pyconv_wino_bt6_f32(d + 6 * r * VL, VL, tmp + 6 * r * VL, VL);
                float *vc = v + c * ldb + j0;        /* columns: V[p'][q'] = (B^T d B) */
                for (int q = 0; q < 6; q++)
                    pyconv_wino_bt6_f32(tmp + q * VL, 6 * VL, vc + q * ldt, 6 * ldt);
            }
        }
    }

    /* Output transform of tiles [t0, t0 + nt), channels o < n_o:
     *   y[n, o, 4*ty + i, 4*tx + k] = clamp((A^T m A)[i][k] + bias[o], lo, hi)
     * with m[t] = m[t*ldt + o*ldm + j] for tile t0 + j = (n, ty, tx); y points at
     * channel 0 of the block (c_out channels per image), outputs past (oh, ow) are
     * not written. NaN passes the clamp. */
    static void pyconv_wino_output_f32(const float *m, int64_t ldm, int64_t ldt, int64_t n_o,
                                       const float *bias, float lo, float hi, float *y,
                                       int64_t c_out, int64_t oh, int64_t ow,
                                       int64_t tw, int64_t tpi, int64_t t0, int64_t nt)
    {
        enum { VL = PYCONV_WVL };
        float yl[16 * VL] __attribute__((aligned(PYCONV_ALIGN)));
        pyconv_vf mv[36], tmp[24], yv[16];
        int64_t off[VL], rows[VL], cols[VL];
        const int64_t ohw = oh * ow;
        const pyconv_vf lov = (pyconv_vf){0} + lo, hiv = (pyconv_vf){0} + hi;
        for (int64_t j0 = 0; j0 < nt; j0 += VL) {
            int64_t nl = nt - j0 < VL ? nt - j0 : VL;
            for (int64_t l = 0; l < nl; l++) {
                int64_t tile = t0 + j0 + l, n = tile / tpi, rem = tile % tpi;
                int64_t oy = 4 * (rem / tw), ox = 4 * (rem % tw);
                rows[l] = oh - oy < 4 ? oh - oy : 4;
                cols[l] = ow - ox < 4 ? ow - ox : 4;
                off[l] = n * c_out * ohw + oy * ow + ox;
            }
            for (int64_t o = 0; o < n_o; o++) {
                const float *mo = m + o * ldm + j0;
                for (int t = 0; t < 36; t++)
                    mv[t] = *(const pyconv_wvu *)(mo + t * ldt);
                for (int q = 0; q < 6; q++)          /* columns: tmp[i][q] = (A^T m)[i][q] */
                    pyconv_wino_at6_f32(mv + q, 6, tmp + q, 6);
                for (int i = 0; i < 4; i++)          /* rows: yv[i][k] = (A^T m A)[i][k] */
                    pyconv_wino_at6_f32(tmp + 6 * i, 1, yv + 4 * i, 1);
                pyconv_vf bv = (pyconv_vf){0} + bias[o];
                for (int k = 0; k < 16; k++)
                    *(pyconv_wvu *)(yl + k * VL) = pyconv_clamp_float(yv[k] + bv, lov, hiv);
                float *yo = y + o * ohw;
                for (int64_t l = 0; l < nl; l++) {
                    float *dst = yo + off[l];
                    if (rows[l] == 4 && cols[l] == 4) {
                        for (int i = 0; i < 4; i++)
                            for (int k = 0; k < 4; k++)
                                dst[i * ow + k] = yl[(i * 4 + k) * VL + l];
                    } else {
                        for (int64_t i = 0; i < rows[l]; i++)
                            for (int64_t k = 0; k < cols[l]; k++)
                                dst[i * ow + k] = yl[(i * 4 + k) * VL + l];
                    }
                }
            }
        }
    }
    """
    int PYCONV_WVL
    void pyconv_wino_input_f32(const float* x, int64_t c_in, int64_t h, int64_t w,
                               int64_t tw, int64_t tpi, int64_t ph, int64_t pw,
                               int64_t t0, int64_t nt, float* v, int64_t ldb, int64_t ldt) nogil
    void pyconv_wino_output_f32(const float* m, int64_t ldm, int64_t ldt, int64_t n_o,
                                const float* bias, float lo, float hi, float* y,
                                int64_t c_out, int64_t oh, int64_t ow,
                                int64_t tw, int64_t tpi, int64_t t0, int64_t nt) nogil

# Blocking. TB (tiles per unit, a multiple of NR): V = 36 x C_in x TB floats stays
# near WINO_V_BYTES (in the 2 MiB L2 with room for U's panels): 96 tiles at 64
# channels, 24 at 256 and more. OB (output channels per M block, a multiple of MR):
# M = 36 x OB x TB floats near WINO_M_BYTES, so that the output transform reads it
# from L2 right after the GEMMs wrote it.
cdef enum:
    WINO_TB_MAX_NR = 4
    WINO_V_BYTES = 1 << 20
    WINO_M_BYTES = 1 << 19


cdef inline Py_ssize_t _odd_lines(Py_ssize_t n) noexcept nogil:
    """The least odd multiple of 16 floats (one 64-byte line) >= n."""
    n = (n + 15) // 16
    return (n if n % 2 else n + 1) * 16


def winograd_weights(const float[:, :, :, ::1] w, float[:, :, ::1] u):
    """u[t, o, c] = (G g G^T)[t // 6, t % 6] for g = w[o, c] (C_out, C_in, 3, 3), u of
    shape (36, C_out, C_in); computed in double, rounded once. G is F(4, 3)'s
    [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]."""
    cdef Py_ssize_t c_out = w.shape[0], c_in = w.shape[1]
    if (w.shape[2] != 3 or w.shape[3] != 3 or u.shape[0] != 36
            or u.shape[1] != c_out or u.shape[2] != c_in):
        raise ValueError("winograd_weights: w must be (C_out, C_in, 3, 3) and u (36, C_out, C_in)")
    cdef double gm[18]          # G, row-major 6 x 3
    gm[:] = [0.25, 0.0, 0.0,
             -1.0 / 6, -1.0 / 6, -1.0 / 6,
             -1.0 / 6, 1.0 / 6, -1.0 / 6,
             1.0 / 24, 1.0 / 12, 1.0 / 6,
             1.0 / 24, -1.0 / 12, 1.0 / 6,
             0.0, 0.0, 1.0]
    cdef double tg[6][3]
    cdef double s
    cdef Py_ssize_t o, c, i, j, k
    with nogil:
        for o in range(c_out):
            for c in range(c_in):
                for i in range(6):      # tg = G g  (6 x 3)
                    for j in range(3):
                        s = 0.0
                        for k in range(3):
                            s = s + gm[i * 3 + k] * w[o, c, k, j]
                        tg[i][j] = s
                for i in range(6):      # u = tg G^T  (6 x 6)
                    for j in range(6):
                        s = 0.0
                        for k in range(3):
                            s = s + tg[i][k] * gm[j * 3 + k]
                        u[i * 6 + j, o, c] = <float>s


def winograd_conv2d(const float[:, :, :, ::1] x, const float[:, :, ::1] u,
                    const float[::1] bias, float[:, :, :, ::1] y,
                    Py_ssize_t ph, Py_ssize_t pw, double lo, double hi, int num_threads):
    """y = clamp(bias + correlation(x, g), lo, hi) for 3x3 filters g given as
    u = winograd_weights(g): stride 1, dilation 1, one group, zero padding ph, pw
    before the input (after it: whatever y's shape implies, OH = H + ph + ph_end - 2).
    x (N, C_in, H, W), u (36, C_out, C_in), bias (C_out,), y (N, C_out, OH, OW)."""
    cdef Py_ssize_t n_img = x.shape[0], c_in = x.shape[1], h = x.shape[2], wd = x.shape[3]
    cdef Py_ssize_t c_out = u.shape[1], oh_n = y.shape[2], ow_n = y.shape[3]
    if (u.shape[0] != 36 or u.shape[2] != c_in or y.shape[0] != n_img or y.shape[1] != c_out
            or bias.shape[0] != c_out):
        raise ValueError("winograd_conv2d: inconsistent shapes")
    if ph < 0 or pw < 0:
        raise ValueError("winograd_conv2d: padding must be >= 0")
    if n_img == 0 or c_out == 0 or oh_n == 0 or ow_n == 0:
        return
    if c_in == 0 or h == 0 or wd == 0:
        raise ValueError("winograd_conv2d: empty input")

    cdef Py_ssize_t nr = PYCONV_NR_F32, vl = PYCONV_WVL
    cdef Py_ssize_t th = (oh_n + 3) // 4, tw = (ow_n + 3) // 4
    cdef Py_ssize_t tpi = th * tw, tiles = n_img * tpi
    # Tiles per unit: whole NR tiles, V near WINO_V_BYTES, no more than the image has.
    cdef Py_ssize_t tb_nr = WINO_V_BYTES // (36 * c_in * nr * sizeof(float))
    if tb_nr > WINO_TB_MAX_NR:
        tb_nr = WINO_TB_MAX_NR
    if tb_nr > (tiles + nr - 1) // nr:
        tb_nr = (tiles + nr - 1) // nr
    if tb_nr < 1:
        tb_nr = 1
    cdef Py_ssize_t tb = tb_nr * nr
    cdef Py_ssize_t tblocks = (tiles + tb - 1) // tb
    cdef Py_ssize_t panels = (c_out + PYCONV_MR - 1) // PYCONV_MR
    # Too few tile blocks for the threads: also split the output-channel panels (each
    # such unit transforms its own input; results are unchanged).
    cdef Py_ssize_t want = 4 * <Py_ssize_t>num_threads, mblocks = 1
    if tblocks < want:
        mblocks = (want + tblocks - 1) // tblocks
        if mblocks > panels:
            mblocks = panels
    cdef Py_ssize_t ppm = (panels + mblocks - 1) // mblocks
    mblocks = (panels + ppm - 1) // ppm
    cdef Py_ssize_t units = tblocks * mblocks
    # Panels per M block.
    cdef Py_ssize_t obp = WINO_M_BYTES // (36 * PYCONV_MR * tb * sizeof(float))
    if obp < 1:
        obp = 1
    if obp > ppm:
        obp = ppm
    cdef Py_ssize_t ob = obp * PYCONV_MR
    # Distance between transform points in V and M: an odd number of cache lines. A
    # multiple of 4 KiB put the 36 stores of one tile's transform in one L1 set
    # (measured: the input transform took twice as long as the GEMMs at 64 channels).
    cdef Py_ssize_t ldt_v = _odd_lines(c_in * tb), ldt_m = _odd_lines(ob * tb)
    cdef Py_ssize_t n_kb = (c_in + KC - 1) // KC

    cdef const float* xp = &x[0, 0, 0, 0]
    cdef const float* up = &u[0, 0, 0]
    cdef const float* bp = &bias[0]
    cdef float* yp = &y[0, 0, 0, 0]
    cdef float flo = <float>lo
    cdef float fhi = <float>hi
    cdef Py_ssize_t unit, ob_i, tbk, mb, t0, nt, nt_v, n_j, p_lo, p_hi, pb0, pb1, o0, n_o
    cdef Py_ssize_t t, kb, k0, kc, p, j, mr, nrj
    cdef float* vbuf
    cdef float* mbuf
    cdef const float* a_panel
    cdef int failed = 0
    cdef int* failed_flag = &failed  # written through a pointer: parallel() privatises assignments

    with nogil, parallel(num_threads=num_threads):
        vbuf = <float*>_aligned_malloc(36 * ldt_v * sizeof(float))
        mbuf = <float*>_aligned_malloc(36 * ldt_m * sizeof(float))
        if vbuf == NULL or mbuf == NULL:
            failed_flag[0] = 1
        for unit in prange(units, schedule="dynamic"):
            if vbuf == NULL or mbuf == NULL:
                continue
            mb = unit % mblocks
            tbk = unit // mblocks
            t0 = tbk * tb
            nt = tiles - t0
            if nt > tb:
                nt = tb
            nt_v = (nt + vl - 1) // vl * vl    # columns of V that hold tiles (or zeros)
            n_j = (nt_v + nr - 1) // nr
            pyconv_wino_input_f32(xp, c_in, h, wd, tw, tpi, ph, pw, t0, nt, vbuf, tb, ldt_v)
            p_lo = mb * ppm
            p_hi = p_lo + ppm
            if p_hi > panels:
                p_hi = panels
            for ob_i in range((p_hi - p_lo + obp - 1) // obp):
                pb0 = p_lo + ob_i * obp
                pb1 = pb0 + obp
                if pb1 > p_hi:
                    pb1 = p_hi
                o0 = pb0 * PYCONV_MR
                n_o = pb1 * PYCONV_MR
                if n_o > c_out:
                    n_o = c_out
                n_o = n_o - o0
                for t in range(36):
                    for kb in range(n_kb):
                        k0 = kb * KC
                        kc = c_in - k0
                        if kc > KC:
                            kc = KC
                        for p in range(pb0, pb1):
                            a_panel = up + (t * c_out + p * PYCONV_MR) * c_in + k0
                            mr = c_out - p * PYCONV_MR
                            if mr > PYCONV_MR:
                                mr = PYCONV_MR
                            for j in range(n_j):
                                nrj = nt_v - j * nr
                                if nrj > nr:
                                    nrj = nr
                                if mr == PYCONV_MR and nrj == nr:
                                    pyconv_ukr_f32(kc, a_panel, c_in, vbuf + t * ldt_v + k0 * tb + j * nr, tb,
                                                   mbuf + t * ldt_m + (p - pb0) * PYCONV_MR * tb + j * nr, tb,
                                                   kb > 0, NULL, 0.0, 0.0)
                                else:
                                    pyconv_ukr_f32_edge(kc, a_panel, c_in, vbuf + t * ldt_v + k0 * tb + j * nr, tb,
                                                        mbuf + t * ldt_m + (p - pb0) * PYCONV_MR * tb + j * nr, tb,
                                                        kb > 0, NULL, 0.0, 0.0, mr, nrj)
                pyconv_wino_output_f32(mbuf, tb, ldt_m, n_o, bp + o0, flo, fhi,
                                       yp + o0 * oh_n * ow_n, c_out, oh_n, ow_n, tw, tpi, t0, nt)
        _aligned_free(mbuf)
        _aligned_free(vbuf)
    if failed:
        raise MemoryError("winograd_conv2d: cannot allocate a per-thread buffer")
