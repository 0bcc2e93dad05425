# Winograd F(4x4, 3x3) and F(2x2, 3x3): float32 3x3 stride-1 correlation with 36 (16)
# GEMMs instead of 9 taps per output (2.25x fewer multiplications at full tiles, 4x per
# interior 4x4 tile; F(2x2, 3x3): 2.25x per 2x2 tile, with errors a few times smaller).
#
# Included by each kernel-set module after _igemm.pxi (it uses its _aligned_malloc,
# KC and the micro-kernel declarations), so it is compiled once per ISA.
#
# Lavin & Gray's F(m, 3), m = 4 (points 0, +-1, +-2, inf) or m = 2 (0, +-1, inf). For
# one (m + 2) x (m + 2) input tile d, one 3x3 filter g and the m x m output tile y:
#
#     y = A^T [ (G g G^T) .* (B^T d B) ] A      (.* : per transform point t < P = (m + 2)^2)
#
# and summed over input channels the point-wise product is a GEMM per point:
#
#     M[t] (C_out x tiles) = U[t] (C_out x C_in) * V[t] (C_in x tiles)
#
#   winograd_weights            U = G g G^T, once per layer (the caller caches it),
#   (winograd2_weights: m = 2)  stored u[t][o][c]: each U[t] is a micro-kernel A
#                               operand read in place (lda = C_in)
#   winograd_conv2d             def: checks, releases the GIL (both share
#   (winograd2_conv2d: m = 2)   _winograd_conv2d: only the transforms differ)
#    '- schedule                private: prange over units = blocks of TB tiles over
#         |                     all images, V per thread; shared (few tiles): per
#         |                     chunk of tiles, the threads transform one V together,
#         |                     then prange over blocks of output-channel panels.
#         |                     Each output element is summed by one unit in one
#         |                     fixed order: bitwise identical for any thread count
#         |                     and either schedule
#         |- _wino(2)_input     B^T d B for every channel of the block's tiles, per
#         |                     run of tiles in one tile row: its m + 2 input rows
#         |                     staged with zero padding, VL adjacent tiles per vector
#         |                     (m = 4: a 4 x VL transpose of row segments; m = 2: even
#         |                     and odd lanes) -> V (P x C_in x tiles), rows of the
#         |                     block's tiles: the micro-kernel's packed B
#         '- _wino_gemm_output, per block of OB output channels:
#              for t < P, K block (KC channels), NR-tile tile, MR-channel panel:
#                  micro-kernel  M[t] (+)= U[t] * V[t]          (_ukernel.h)
#              _wino(2)_output   A^T m A, + bias, clamp, VL tiles per vector; per
#                                output row the inverse shuffle: VL tiles' m VL
#                                contiguous outputs, clipped at the edges
#
# Workspace per thread: V (P x C_in x TB floats, TB chosen to keep it near 1 MiB; the
# shared schedule's one V: at most 16 MiB), M (P x OB x TB, about 512 KiB) and the
# staged rows ((m + 2) x m (TB + VL) floats) -- bounded, never by the image.
# (Tried: V in blocks of NR tiles, so that a B tile is one contiguous run: 5-20 %
# faster on shared-schedule layers, 10-15 % slower on private ones at batch 8, where
# runs of tiles straddle the blocks and their vector stores split; not kept. Tried
# again for the shared schedule alone, after the prefetch of U: 512@28x28 b1 1.01x the
# time, 512@14 1.00, 256@14 1.00, 256@28 0.97, 128@28 1.10, 8 x 512@7 1.09: not kept.)
# (Tried 2026-12, benchmarks/ab.py --set avx512 --kernel winograd, Zen 4, 2 threads:
# the input transform reading its rows in place, masked loads at the edges, instead of
# the staged copy -- 64@56x56 b1 1.00x the time, 128@28 1.01, 8x64@56 0.99, 8x128@28
# 1.00, 256@14 0.96, 64@224 1.13; software prefetch of the next channel's input rows
# and M lines -- 1.00, 1.00, 1.00, 1.00, 0.99, 1.04. Not kept. Where the time goes:
# benchmarks/winograd_phases.py -- at 64 and 128 channels the two transforms take
# 35-45 % of a call, the GEMMs run at 170-217 GFLOP/s; since the masked edge stores
# (pyconv_wino_storen), input + output: 1x64@56 17 + 12 %, 8x64@56 26 + 18 %, 8x128@28
# 19 + 11 %.)
# The transforms are straight-line C on GCC/Clang vector types (the width of the
# kernel set), written as Cython verbatim C so that they stay in this file.

cdef extern from *:
    """
    #include "_ukernel.h"

    /* Vectors of VL tiles, read and written through float buffers at any offset. */
    typedef float pyconv_wvu __attribute__((vector_size(PYCONV_VBYTES), aligned(4), may_alias));
    #define PYCONV_WVL (PYCONV_VBYTES / 4)

    /* PYCONV_WSHUF(a, b, i...): lane k of the result is lane i_k of a:b (a's lanes are
     * 0..VL-1, b's VL..2VL-1); constant indices, so the compiler picks the shuffles. */
    #if defined(__clang__)
    #define PYCONV_WSHUF(a, b, ...) __builtin_shufflevector((a), (b), __VA_ARGS__)
    #else
    #define PYCONV_WSHUF(a, b, ...) __builtin_shuffle((a), (b), (pyconv_vfi){__VA_ARGS__})
    #endif

    /* Index lists per width. A vector is VL/4 blocks of 4 lanes (128 bits: one tile's 4
     * columns): PYCONV_WLANES repeats a 4-lane pattern in every block (in-lane shuffles
     * only: unpck/shufps), PYCONV_WNEXT shifts by one lane, taking lane 0 of b last. */
    #if PYCONV_WVL == 4
    #define PYCONV_WLANES(a, b, c, d) a, b, c, d
    #define PYCONV_WNEXT 1, 2, 3, 4
    #elif PYCONV_WVL == 8
    #define PYCONV_WLANES(a, b, c, d) a, b, c, d, (a) + 4, (b) + 4, (c) + 4, (d) + 4
    #define PYCONV_WNEXT 1, 2, 3, 4, 5, 6, 7, 8
    #elif PYCONV_WVL == 16
    #define PYCONV_WLANES(a, b, c, d) a, b, c, d, (a) + 4, (b) + 4, (c) + 4, (d) + 4, \\
        (a) + 8, (b) + 8, (c) + 8, (d) + 8, (a) + 12, (b) + 12, (c) + 12, (d) + 12
    #define PYCONV_WNEXT 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16
    #else
    #error "pyconv Winograd: unsupported vector width"
    #endif
    #define PYCONV_WV PYCONV_WVL

    /* The 4 x VL transpose between a row segment of 4 VL floats and "column q of tile l"
     * vectors, in two steps that are each cheap on every width:
     *   row segment A_0..A_3 (tile l = block l % (VL/4) of A_{l / (VL/4)})
     *     <-> blocks B_0..B_3 (block k of B_i = tile 4k + i)     whole-block moves
     *     <-> columns c_0..c_3 (lane l of c_q = column q of tile l)   in-block 4x4 transposes
     * The in-block transpose is its own inverse; the block step is for VL = 4, 16. */
    static inline void pyconv_wino_t4(pyconv_vf r[4])
    {
        enum { V = PYCONV_WV };
        pyconv_vf t0 = PYCONV_WSHUF(r[0], r[1], PYCONV_WLANES(0, V, 1, V + 1));
        pyconv_vf t1 = PYCONV_WSHUF(r[0], r[1], PYCONV_WLANES(2, V + 2, 3, V + 3));
        pyconv_vf t2 = PYCONV_WSHUF(r[2], r[3], PYCONV_WLANES(0, V, 1, V + 1));
        pyconv_vf t3 = PYCONV_WSHUF(r[2], r[3], PYCONV_WLANES(2, V + 2, 3, V + 3));
        r[0] = PYCONV_WSHUF(t0, t2, PYCONV_WLANES(0, 1, V, V + 1));
        r[1] = PYCONV_WSHUF(t0, t2, PYCONV_WLANES(2, 3, V + 2, V + 3));
        r[2] = PYCONV_WSHUF(t1, t3, PYCONV_WLANES(0, 1, V, V + 1));
        r[3] = PYCONV_WSHUF(t1, t3, PYCONV_WLANES(2, 3, V + 2, V + 3));
    }

    /* Row segment -> blocks (in = 1) or blocks -> row segment (in = 0). */
    static inline void pyconv_wino_blocks(pyconv_vf r[4], int in)
    {
    #if PYCONV_WVL == 8
        pyconv_vf a0 = r[0], a1 = r[1], a2 = r[2], a3 = r[3];
        if (in) {           /* B_i = (tile i, tile 4 + i) */
            r[0] = PYCONV_WSHUF(a0, a2, 0, 1, 2, 3, 8, 9, 10, 11);
            r[1] = PYCONV_WSHUF(a0, a2, 4, 5, 6, 7, 12, 13, 14, 15);
            r[2] = PYCONV_WSHUF(a1, a3, 0, 1, 2, 3, 8, 9, 10, 11);
            r[3] = PYCONV_WSHUF(a1, a3, 4, 5, 6, 7, 12, 13, 14, 15);
        } else {            /* A_m = (tile 2m, tile 2m + 1) */
            r[0] = PYCONV_WSHUF(a0, a1, 0, 1, 2, 3, 8, 9, 10, 11);
            r[1] = PYCONV_WSHUF(a2, a3, 0, 1, 2, 3, 8, 9, 10, 11);
            r[2] = PYCONV_WSHUF(a0, a1, 4, 5, 6, 7, 12, 13, 14, 15);
            r[3] = PYCONV_WSHUF(a2, a3, 4, 5, 6, 7, 12, 13, 14, 15);
        }
    #elif PYCONV_WVL == 16
        /* Block k of B_i = block i of A_k: a 4 x 4 transpose of blocks, its own inverse. */
        (void)in;
        pyconv_vf c0 = PYCONV_WSHUF(r[0], r[1], 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
        pyconv_vf c1 = PYCONV_WSHUF(r[0], r[1], 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
        pyconv_vf c2 = PYCONV_WSHUF(r[2], r[3], 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
        pyconv_vf c3 = PYCONV_WSHUF(r[2], r[3], 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
        r[0] = PYCONV_WSHUF(c0, c2, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
        r[1] = PYCONV_WSHUF(c1, c3, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
        r[2] = PYCONV_WSHUF(c0, c2, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
        r[3] = PYCONV_WSHUF(c1, c3, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
    #else
        (void)r; (void)in;  /* one block per vector: B_i = A_i */
    #endif
    }

    /* x[0..5] := B^T x for a 6-vector of tile vectors:
     *   B^T = [4  0 -5  0 1 0; 0 -4 -4  1 1 0; 0  4 -4 -1 1 0;
     *          0 -2 -1  2 1 0; 0  2 -1 -2 1 0; 0  4  0 -5 0 1]   */
    static inline void pyconv_wino_bt6(pyconv_vf *x, int xs, pyconv_vf *o, int os)
    {
        pyconv_vf x0 = x[0], x1 = x[xs], x2 = x[2 * xs], x3 = x[3 * xs], x4 = x[4 * xs], x5 = x[5 * xs];
        pyconv_vf a = x4 - x2, b = x3 - x1;
        o[0] = 4.0f * (x0 - x2) + a;
        o[os] = (x3 + x4) - 4.0f * (x1 + x2);
        o[2 * os] = (x4 - x3) + 4.0f * (x1 - x2);
        o[3 * os] = a + 2.0f * b;
        o[4 * os] = a - 2.0f * b;
        o[5 * os] = 4.0f * (x1 - x3) + (x5 - x3);
    }

    /* o = A^T m for one 6-vector: A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1] */
    static inline void pyconv_wino_at6(const pyconv_vf *m, int ms, pyconv_vf *o, int os)
    {
        pyconv_vf m1 = m[ms], m2 = m[2 * ms], m3 = m[3 * ms], m4 = m[4 * ms];
        pyconv_vf s12 = m1 + m2, d12 = m1 - m2, s34 = m3 + m4, d34 = m3 - m4;
        o[0] = m[0] + s12 + s34;
        o[os] = d12 + 2.0f * d34;
        o[2 * os] = s12 + 4.0f * s34;
        o[3 * os] = d12 + 8.0f * d34 + m[5 * ms];
    }

    /* One run of tiles [j, j + len) of a block (tiles numbered over images, tile rows,
     * tile columns; tw per row, tpi per image) that lies in one tile row: image n, tile
     * row ty, columns tx.. Both transforms work on such runs, VL adjacent tiles at a
     * time, so that a vector of tiles is a contiguous row segment of the image. */
    typedef struct { int64_t len, n, ty, tx; } pyconv_wino_run;

    static inline pyconv_wino_run pyconv_wino_run_at(int64_t tile, int64_t left, int64_t tw, int64_t tpi)
    {
        pyconv_wino_run r;
        int64_t rem = tile % tpi;
        r.n = tile / tpi; r.ty = rem / tw; r.tx = rem % tw;
        r.len = tw - r.tx < left ? tw - r.tx : left;
        return r;
    }

    /* stage[r][q] = plane[iy + r][ix + q], r < rows, q < ws: a run's input window of one
     * channel plane (h x w; stage rows ldst apart). The padding outside the image is the
     * same for every channel: zero = 1 (the run's first channel) writes its zeros. */
    static inline void pyconv_wino_stage(const float *plane, int64_t h, int64_t w, int64_t iy,
                                         int64_t ix, int rows, int64_t ws, float *stage,
                                         int64_t ldst, int zero)
    {
        int64_t r0 = iy < 0 ? -iy : 0, r1 = h - iy < rows ? h - iy : rows;
        int64_t q0 = ix < 0 ? -ix : 0, q1 = w - ix < ws ? w - ix : ws;
        if (zero)
            for (int r = 0; r < rows; r++)
                memset(stage + r * ldst, 0, ws * sizeof(float));
        for (int64_t r = r0; r < r1; r++) {
            const float *src = plane + (iy + r) * w + ix + q0;
            float *dst = stage + r * ldst + q0;
            for (int64_t q = 0; q < q1 - q0; q++)
                dst[q] = src[q];
        }
    }

    /* p[l] = lane l of d for l < n (0 <= n <= VL), nothing written at or past p + n: a
     * masked store where the kernel set has one, else lane by lane. The transforms'
     * vectors of tiles end short at a run's or an image's edge (a 56-wide image is 14
     * tiles, a vector 16): staging each through a buffer and copying the lanes out
     * took 10 % of the input transform (perf, 64@56x56). */
    static inline void pyconv_wino_storen(float *p, pyconv_vf d, int64_t n)
    {
    #if defined(__AVX512F__) && PYCONV_WVL == 16
        _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1), (__m512)d);
    #elif defined(__AVX2__) && PYCONV_WVL == 8
        const pyconv_vfi iota = {0, 1, 2, 3, 4, 5, 6, 7};
        _mm256_maskstore_ps(p, (__m256i)(iota < (int)n), (__m256)d);
    #else
        for (int64_t l = 0; l < n; l++)
            p[l] = d[l];
    #endif
    }

    /* A whole vector at p when lanes >= VL, else its first `lanes` lanes. */
    static inline void pyconv_wino_put(float *p, pyconv_vf d, int64_t lanes)
    {
        if (lanes >= PYCONV_WVL)
            *(pyconv_wvu *)p = d;
        else
            pyconv_wino_storen(p, d, lanes);
    }

    /* Zeros in V's columns nt .. nt rounded up to VL (read by the GEMMs, never stored by
     * a transform), np points, c_in rows of ldb columns per point: one masked vector per
     * row (nt % VL == 0: nothing). */
    static inline void pyconv_wino_zero_tail(float *v, int64_t c_in, int np, int64_t nt,
                                             int64_t ldb, int64_t ldt)
    {
        const int64_t n = (PYCONV_WVL - nt % PYCONV_WVL) % PYCONV_WVL;
        if (n == 0)
            return;
        for (int64_t c = 0; c < c_in; c++)
            for (int t = 0; t < np; t++)
                pyconv_wino_storen(v + t * ldt + c * ldb + nt, (pyconv_vf){0}, n);
    }

    /* Input transform of tiles [t0, t0 + nt), channels c < c_in of x (images c_img
     * channels apart: x may point at a later channel than an image's first):
     *   v[t*ldt + c*ldb + j] = (B^T d B)[t] of channel c of tile t0 + j,   j < nt,
     * and zeros for nt <= j < nt rounded up to VL (<= ldb). The stores of a run's last
     * VL tiles may pass its end, into the next run's columns (which that run then
     * writes), never past column ldb. Per run and channel, the run's 6 input rows are copied into `stage`
     * (6 rows of ldst >= 4 (nt + VL) + 2 floats) with zeros where the tiles read
     * padding -- so that every tile, at the image edges too, takes the one vector path:
     * per VL tiles and input row, four loads of 4 VL floats, the 4 x VL transpose into
     * columns 0..3 of the VL tiles, and columns 4, 5 as columns 0, 1 shifted by a tile;
     * then B^T on the rows and the columns in registers. */
    static void pyconv_wino_input_f32(const float *x, int64_t c_in, int64_t c_img, int64_t h, int64_t w,
                                      int64_t tw, int64_t tpi, int64_t ph, int64_t pw,
                                      int64_t t0, int64_t nt, float *v, int64_t ldb, int64_t ldt,
                                      float *stage, int64_t ldst)
    {
        enum { VL = PYCONV_WVL };
        pyconv_vf d[36], e[36];
        const int64_t hw = h * w;
        for (int64_t j = 0; j < nt;) {
            pyconv_wino_run run = pyconv_wino_run_at(t0 + j, nt - j, tw, tpi);
            int64_t groups = (run.len + VL - 1) / VL, ws = 4 * VL * groups + 2;
            int64_t iy = 4 * run.ty - ph, ix = 4 * run.tx - pw;
            for (int64_t c = 0; c < c_in; c++) {
                pyconv_wino_stage(x + (run.n * c_img + c) * hw, h, w, iy, ix, 6, ws,
                                  stage, ldst, c == 0);
                for (int64_t g = 0; g < groups; g++) {
                    const float *s = stage + 4 * VL * g;
                    for (int r = 0; r < 6; r++) {    /* d[r][q] = column q of row r */
                        const float *sr = s + r * ldst;
                        pyconv_vf *dr = d + 6 * r;
                        for (int k = 0; k < 4; k++)
                            dr[k] = *(const pyconv_wvu *)(sr + k * VL);
                        pyconv_wino_blocks(dr, 1);
                        pyconv_wino_t4(dr);
                        dr[4] = PYCONV_WSHUF(dr[0], (pyconv_vf){0} + sr[4 * VL], PYCONV_WNEXT);
                        dr[5] = PYCONV_WSHUF(dr[1], (pyconv_vf){0} + sr[4 * VL + 1], PYCONV_WNEXT);
                        pyconv_wino_bt6(dr, 1, e + 6 * r, 1);    /* rows: e = d B */
                    }
                    int64_t jg = j + VL * g, lanes = ldb - jg;
                    float *vc = v + c * ldb + jg;
                    for (int q = 0; q < 6; q++) {              /* columns: B^T d B, into V */
                        pyconv_vf o[6];
                        pyconv_wino_bt6(e + q, 6, o, 1);
                        for (int i = 0; i < 6; i++)
                            pyconv_wino_put(vc + (6 * i + q) * ldt, o[i], lanes);
                    }
                }
            }
            j += run.len;
        }
        pyconv_wino_zero_tail(v, c_in, 36, nt, ldb, ldt);
    }

    /* Output transform of tiles [t0, t0 + nt), channels o < n_o:
     *   y[n, o, 4*ty + i, 4*tx + k] = clamp((A^T m A)[i][k] + bias[o], lo, hi)
     * with m[t] = m[t*ldt + o*ldm + j] for tile t0 + j = (n, ty, tx); y points at
     * channel 0 of the block (c_out channels per image), outputs past (oh, ow) are
     * not written. NaN passes the clamp. m is read up to VL - 1 floats past the last
     * tile (lanes never stored). Per run (as in the input transform) and VL tiles, each
     * output row is the inverse 4 x VL transpose of 4 vectors: 4 VL contiguous floats,
     * stored whole inside the image, clipped at its right edge and at the run's end. */
    static void pyconv_wino_output_f32(const float *m, int64_t ldm, int64_t ldt, int64_t n_o,
                                       const float *bias, float lo, float hi, float *y,
                                       int64_t c_out, int64_t oh, int64_t ow,
                                       int64_t tw, int64_t tpi, int64_t t0, int64_t nt)
    {
        enum { VL = PYCONV_WVL };
        pyconv_vf mv[36], tmp[24], yv[16];
        const int64_t ohw = oh * ow;
        const pyconv_vf lov = (pyconv_vf){0} + lo, hiv = (pyconv_vf){0} + hi;
        for (int64_t j = 0; j < nt;) {
            pyconv_wino_run run = pyconv_wino_run_at(t0 + j, nt - j, tw, tpi);
            int64_t oy = 4 * run.ty, rows = oh - oy < 4 ? oh - oy : 4;
            for (int64_t o = 0; o < n_o; o++) {
                const pyconv_vf bv = (pyconv_vf){0} + bias[o];
                for (int64_t g = 0; g * VL < run.len; g++) {
                    const float *mo = m + o * ldm + j + VL * g;
                    for (int t = 0; t < 36; t++)
                        mv[t] = *(const pyconv_wvu *)(mo + t * ldt);
                    for (int q = 0; q < 6; q++)          /* columns: tmp[i][q] = (A^T m)[i][q] */
                        pyconv_wino_at6(mv + q, 6, tmp + q, 6);
                    for (int i = 0; i < 4; i++)          /* rows: yv[i][k] = (A^T m A)[i][k] */
                        pyconv_wino_at6(tmp + 6 * i, 1, yv + 4 * i, 1);
                    for (int k = 0; k < 16; k++)
                        yv[k] = pyconv_clamp_float(yv[k] + bv, lov, hiv);
                    int64_t ox = 4 * (run.tx + VL * g);
                    int64_t tiles = run.len - VL * g < VL ? run.len - VL * g : VL;
                    int64_t cols = ow - ox < 4 * tiles ? ow - ox : 4 * tiles;
                    float *dst = y + (run.n * c_out + o) * ohw + oy * ow + ox;
                    for (int64_t i = 0; i < rows; i++, dst += ow) {
                        pyconv_vf *yr = yv + 4 * i;
                        pyconv_wino_t4(yr);
                        pyconv_wino_blocks(yr, 0);
                        for (int k = 0; k < 4 && k * VL < cols; k++)
                            pyconv_wino_put(dst + k * VL, yr[k], cols - k * VL);
                    }
                }
            }
            j += run.len;
        }
    }

    /* ---- F(2x2, 3x3): 4x4 input tiles 2 apart, 16 points ----
     * VL adjacent tiles read a row segment of 2 VL + 2 floats: columns 0, 1 of tile l
     * are floats 2l, 2l + 1 (the even and odd lanes of the first 2 VL floats), columns
     * 2, 3 are columns 0, 1 shifted by a tile. Each output row of VL tiles is the
     * inverse: their 2 output columns interleaved into 2 VL contiguous floats. */
    #if PYCONV_WVL == 4
    #define PYCONV_WEVEN 0, 2, 4, 6
    #define PYCONV_WODD 1, 3, 5, 7
    #define PYCONV_WZIPLO 0, 4, 1, 5
    #define PYCONV_WZIPHI 2, 6, 3, 7
    #elif PYCONV_WVL == 8
    #define PYCONV_WEVEN 0, 2, 4, 6, 8, 10, 12, 14
    #define PYCONV_WODD 1, 3, 5, 7, 9, 11, 13, 15
    #define PYCONV_WZIPLO 0, 8, 1, 9, 2, 10, 3, 11
    #define PYCONV_WZIPHI 4, 12, 5, 13, 6, 14, 7, 15
    #else
    #define PYCONV_WEVEN 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30
    #define PYCONV_WODD 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31
    #define PYCONV_WZIPLO 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23
    #define PYCONV_WZIPHI 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31
    #endif

    /* x[0..3] := B^T x for a 4-vector of tile vectors: B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1] */
    static inline void pyconv_wino2_bt4(const pyconv_vf *x, int xs, pyconv_vf *o, int os)
    {
        pyconv_vf x0 = x[0], x1 = x[xs], x2 = x[2 * xs], x3 = x[3 * xs];
        o[0] = x0 - x2;
        o[os] = x1 + x2;
        o[2 * os] = x2 - x1;
        o[3 * os] = x1 - x3;
    }

    /* o = A^T m for one 4-vector: A^T = [1 1 1 0; 0 1 -1 -1] */
    static inline void pyconv_wino2_at4(const pyconv_vf *m, int ms, pyconv_vf *o, int os)
    {
        o[0] = m[0] + m[ms] + m[2 * ms];
        o[os] = (m[ms] - m[2 * ms]) - m[3 * ms];
    }

    /* The F(2, 3) input transform: pyconv_wino_input_f32's contract with 4x4 tiles 2
     * apart (v[t*ldt + c*ldb + j], t < 16); per run and channel its 4 input rows staged. */
    static void pyconv_wino2_input_f32(const float *x, int64_t c_in, int64_t c_img, int64_t h, int64_t w,
                                       int64_t tw, int64_t tpi, int64_t ph, int64_t pw,
                                       int64_t t0, int64_t nt, float *v, int64_t ldb, int64_t ldt,
                                       float *stage, int64_t ldst)
    {
        enum { VL = PYCONV_WVL };
        pyconv_vf d[16], e[16];
        const int64_t hw = h * w;
        for (int64_t j = 0; j < nt;) {
            pyconv_wino_run run = pyconv_wino_run_at(t0 + j, nt - j, tw, tpi);
            int64_t groups = (run.len + VL - 1) / VL, ws = 2 * VL * groups + 2;
            int64_t iy = 2 * run.ty - ph, ix = 2 * run.tx - pw;
            for (int64_t c = 0; c < c_in; c++) {
                pyconv_wino_stage(x + (run.n * c_img + c) * hw, h, w, iy, ix, 4, ws,
                                  stage, ldst, c == 0);
                for (int64_t g = 0; g < groups; g++) {
                    const float *s = stage + 2 * VL * g;
                    for (int r = 0; r < 4; r++) {    /* d[r][q] = column q of row r */
                        const float *sr = s + r * ldst;
                        pyconv_vf a = *(const pyconv_wvu *)sr, b = *(const pyconv_wvu *)(sr + VL);
                        pyconv_vf *dr = d + 4 * r;
                        dr[0] = PYCONV_WSHUF(a, b, PYCONV_WEVEN);
                        dr[1] = PYCONV_WSHUF(a, b, PYCONV_WODD);
                        dr[2] = PYCONV_WSHUF(dr[0], (pyconv_vf){0} + sr[2 * VL], PYCONV_WNEXT);
                        dr[3] = PYCONV_WSHUF(dr[1], (pyconv_vf){0} + sr[2 * VL + 1], PYCONV_WNEXT);
                        pyconv_wino2_bt4(dr, 1, e + 4 * r, 1);   /* rows: e = d B */
                    }
                    int64_t jg = j + VL * g, lanes = ldb - jg;
                    float *vc = v + c * ldb + jg;
                    for (int q = 0; q < 4; q++) {              /* columns: B^T d B, into V */
                        pyconv_vf o[4];
                        pyconv_wino2_bt4(e + q, 4, o, 1);
                        for (int i = 0; i < 4; i++)
                            pyconv_wino_put(vc + (4 * i + q) * ldt, o[i], lanes);
                    }
                }
            }
            j += run.len;
        }
        pyconv_wino_zero_tail(v, c_in, 16, nt, ldb, ldt);
    }

    /* The F(2, 3) output transform: pyconv_wino_output_f32's contract with 2x2 tiles
     * (y[n, o, 2*ty + i, 2*tx + k], m[t], t < 16). */
    static void pyconv_wino2_output_f32(const float *m, int64_t ldm, int64_t ldt, int64_t n_o,
                                        const float *bias, float lo, float hi, float *y,
                                        int64_t c_out, int64_t oh, int64_t ow,
                                        int64_t tw, int64_t tpi, int64_t t0, int64_t nt)
    {
        enum { VL = PYCONV_WVL };
        pyconv_vf mv[16], tmp[8], yv[4], row[2];
        const int64_t ohw = oh * ow;
        const pyconv_vf lov = (pyconv_vf){0} + lo, hiv = (pyconv_vf){0} + hi;
        for (int64_t j = 0; j < nt;) {
            pyconv_wino_run run = pyconv_wino_run_at(t0 + j, nt - j, tw, tpi);
            int64_t oy = 2 * run.ty, rows = oh - oy < 2 ? oh - oy : 2;
            for (int64_t o = 0; o < n_o; o++) {
                const pyconv_vf bv = (pyconv_vf){0} + bias[o];
                for (int64_t g = 0; g * VL < run.len; g++) {
                    const float *mo = m + o * ldm + j + VL * g;
                    for (int t = 0; t < 16; t++)
                        mv[t] = *(const pyconv_wvu *)(mo + t * ldt);
                    for (int q = 0; q < 4; q++)          /* columns: tmp[i][q] = (A^T m)[i][q] */
                        pyconv_wino2_at4(mv + q, 4, tmp + q, 4);
                    for (int i = 0; i < 2; i++)          /* rows: yv[i][k] = (A^T m A)[i][k] */
                        pyconv_wino2_at4(tmp + 4 * i, 1, yv + 2 * i, 1);
                    for (int k = 0; k < 4; k++)
                        yv[k] = pyconv_clamp_float(yv[k] + bv, lov, hiv);
                    int64_t ox = 2 * (run.tx + VL * g);
                    int64_t tiles = run.len - VL * g < VL ? run.len - VL * g : VL;
                    int64_t cols = ow - ox < 2 * tiles ? ow - ox : 2 * tiles;
                    float *dst = y + (run.n * c_out + o) * ohw + oy * ow + ox;
                    for (int64_t i = 0; i < rows; i++, dst += ow) {
                        row[0] = PYCONV_WSHUF(yv[2 * i], yv[2 * i + 1], PYCONV_WZIPLO);
                        row[1] = PYCONV_WSHUF(yv[2 * i], yv[2 * i + 1], PYCONV_WZIPHI);
                        pyconv_wino_put(dst, row[0], cols);
                        if (cols > VL)
                            pyconv_wino_put(dst + VL, row[1], cols - VL);
                    }
                }
            }
            j += run.len;
        }
    }

    /* Filter transform of one output channel: u[t*ldt + c] = (G g_c G^T)[t], t < (m + 2)^2,
     * for the 3x3 filters g_c = w[9c .. 9c + 9), c < c_in; in double (VL/2 channels per
     * vector), rounded once. G (m + 2 rows) is applied to 3 values by pyconv_wino_g3:
     *   m = 4: [1/4 0 0], -[1 1 1]/6, -[1 -1 1]/6, [1/4 1/2 1]/6, [1/4 -1/2 1]/6, [0 0 1]
     *          (shared sums make the 6 rows 10 operations);
     *   m = 2: [1 0 0], [1 1 1]/2, [1 -1 1]/2, [0 0 1].
     * Channels go in blocks of WINO_WCB, transformed into a local [36][WINO_WLD] block
     * and then copied out plane by plane: the planes are ldt = C_out x C_in floats apart,
     * a power of two for the usual channel counts, so storing each vector straight into
     * its plane kept 36 lines of one cache set in flight (every store missed L1 and L2).
     * One core, F(4, 3), per 3x3 filter: 58 -> 17 ns at 128 channels, 57 -> 27 at 256
     * (where the 9.4 MB of U mostly goes to L3). */
    typedef float pyconv_wfh __attribute__((vector_size(PYCONV_VBYTES / 2)));
    enum { WINO_WCB = 256, WINO_WLD = WINO_WCB + 16 };  /* WLD: an odd number of lines */

    static inline void pyconv_wino_g3(int m, pyconv_vd g0, pyconv_vd g1, pyconv_vd g2, pyconv_vd *o, int os)
    {
        if (m == 4) {
            pyconv_vd s = g0 + g2, q = 0.25 * g0 + g2, h = 0.5 * g1;
            o[0] = 0.25 * g0;
            o[os] = (s + g1) * (-1.0 / 6);
            o[2 * os] = (s - g1) * (-1.0 / 6);
            o[3 * os] = (q + h) * (1.0 / 6);
            o[4 * os] = (q - h) * (1.0 / 6);
            o[5 * os] = g2;
        } else {
            pyconv_vd s = 0.5 * (g0 + g2), h = 0.5 * g1;
            o[0] = g0;
            o[os] = s + h;
            o[2 * os] = s - h;
            o[3 * os] = g2;
        }
    }

    static void pyconv_wino_weights_f32(const float *w, int64_t c_in, float *u, int64_t ldt, int m)
    {
        enum { WD = PYCONV_VBYTES / 8 };
        const int n = m + 2;
        double gd[9 * WD] __attribute__((aligned(PYCONV_ALIGN)));
        float ub[36 * WINO_WLD] __attribute__((aligned(PYCONV_ALIGN)));
        pyconv_vd gv[9], tg[18], uv[36];
        for (int64_t cb = 0; cb < c_in; cb += WINO_WCB) {
            int64_t ncb = c_in - cb < WINO_WCB ? c_in - cb : WINO_WCB;
            for (int64_t c0 = 0; c0 < ncb; c0 += WD) {
                for (int k = 0; k < 9; k++)       /* gd[k][l] = tap k of channel cb + c0 + l */
                    for (int l = 0; l < WD; l++)
                        gd[k * WD + l] = c0 + l < ncb ? w[(cb + c0 + l) * 9 + k] : 0.0;
                for (int k = 0; k < 9; k++)
                    gv[k] = *(const pyconv_vd *)(gd + k * WD);
                for (int jc = 0; jc < 3; jc++)    /* tg = G g (n x 3) */
                    pyconv_wino_g3(m, gv[jc], gv[3 + jc], gv[6 + jc], tg + jc, 3);
                for (int i = 0; i < n; i++)       /* u = tg G^T (n x n) */
                    pyconv_wino_g3(m, tg[3 * i], tg[3 * i + 1], tg[3 * i + 2], uv + n * i, 1);
                for (int t = 0; t < n * n; t++)   /* (lanes past ncb: never copied out) */
                    *(pyconv_wfh *)(ub + t * WINO_WLD + c0) = __builtin_convertvector(uv[t], pyconv_wfh);
            }
            for (int t = 0; t < n * n; t++)
                memcpy(u + t * ldt + cb, ub + t * WINO_WLD, ncb * sizeof(float));
        }
    }
    """
    int PYCONV_WVL
    void pyconv_wino_input_f32(const float* x, int64_t c_in, int64_t c_img, int64_t h, int64_t w,
                               int64_t tw, int64_t tpi, int64_t ph, int64_t pw,
                               int64_t t0, int64_t nt, float* v, int64_t ldb, int64_t ldt,
                               float* stage, int64_t ldst) nogil
    void pyconv_wino_output_f32(const float* m, int64_t ldm, int64_t ldt, int64_t n_o,
                                const float* bias, float lo, float hi, float* y,
                                int64_t c_out, int64_t oh, int64_t ow,
                                int64_t tw, int64_t tpi, int64_t t0, int64_t nt) nogil
    void pyconv_wino2_input_f32(const float* x, int64_t c_in, int64_t c_img, int64_t h, int64_t w,
                                int64_t tw, int64_t tpi, int64_t ph, int64_t pw,
                                int64_t t0, int64_t nt, float* v, int64_t ldb, int64_t ldt,
                                float* stage, int64_t ldst) nogil
    void pyconv_wino2_output_f32(const float* m, int64_t ldm, int64_t ldt, int64_t n_o,
                                 const float* bias, float lo, float hi, float* y,
                                 int64_t c_out, int64_t oh, int64_t ow,
                                 int64_t tw, int64_t tpi, int64_t t0, int64_t nt) nogil
    void pyconv_wino_weights_f32(const float* w, int64_t c_in, float* u, int64_t ldt, int m) nogil

# Blocking. TB (tiles per unit, a multiple of NR): V = P x C_in x TB floats stays
# near WINO_V_BYTES, at most WINO_TB_MAX_NR x NR tiles (48 on AVX2: measured better
# than 96 at 64 and 128 channels, batch 1 and 8 -- V and U then share the 1 MiB L2
# of this machine's cores), 24 at 256 channels and more. OB (output channels per M
# block, a multiple of MR): M = P x OB x TB floats near WINO_M_BYTES, so that the
# output transform reads it from L2 right after the GEMMs wrote it.
# F(2x2, 3x3) takes the same TB: 2, 4 and 8 NR measured within noise of each other
# (64@56^2 ... 512@7^2, batch 1 and 8), 2 at most 5 % ahead.
# Schedules (_winograd_conv2d): private when there are WINO_PRIVATE_UNITS tile blocks
# per thread (and 4 at least), else shared, in chunks of tiles with V up to
# WINO_SHARED_BYTES (a 512-channel F(4x4) layer at 28x28, 49 tiles, in one chunk: 10.0
# ms instead of 12.0 in two, batch 1, 2 threads), WINO_SHARED_UNITS panel units per
# thread (1, 2 and 4 measured within 5 % of each other; 2 balances a noisy machine),
# the input transform in WINO_UNITS_PER_THREAD channel blocks per thread. Against the
# private schedule with split panels (2 threads, batch 1): 128@28 1.3x, 256@14 1.5x,
# 512@14 1.3x, 512@7 b8 1.4x faster; F(2x2) 512@7 b8 5 % slower. But from 2 blocks per
# thread the private one wins (V stays in the thread's L2; the shared V goes through
# L3): it took 4 until 2026-11 -- 2 threads, F(4, 3) 64@14x14 b8 0.65x, 128@14 b8
# 0.74x, 256@14 b8 0.90x, 64@28 b2 0.73x the time, F(2, 3) 512@7 b8 0.95x
# (in-process A/B of the two builds).
# U's rows are prefetched panel by panel (pyconv_prefetch_rows, _ukernel.h) for filters of
# at least WINO_PREFETCH_MIN_BYTES, which stream from L3 or DRAM: in-process A/B (2
# threads, benchmarks/ab.py) F(4, 3) 512@28x28 b1 0.89-0.95, 512@14 0.91, 512@7 0.92,
# 8x512@14 0.88, 256@14 0.88-0.97 the time; F(2, 3) 512@7 0.86, 256@14 0.97. Below it
# (64 and 128 channels: 0.6 and 2.4 MB, in L2 and L3) it cost 1-8 %.
cdef enum:
    WINO_PREFETCH_MIN_BYTES = 4 << 20
    WINO_TB_MAX_NR = 2
    WINO_V_BYTES = 1 << 20
    WINO_M_BYTES = 1 << 19
    WINO_SHARED_BYTES = 16 << 20
    WINO_UNITS_PER_THREAD = 4
    WINO_PRIVATE_UNITS = 2
    # Private blocks of this many tiles where whole NR give too few (_winograd_conv2d):
    # as large as AVX2's NR (24), which the private-schedule measurements above used.
    WINO_SPLIT_TILES = 32
    WINO_SHARED_UNITS = 2
    # Tiles past the last whole vector that the tail kernel does (_wino_tail_tiles).
    # In-process A/B (benchmarks/ab.py, 2 threads, Intel AVX-512 and its AVX2 set):
    # 49 tiles (28x28 at b1, and F(2, 3) at 14x14) 0.88-0.97 the time on both sets;
    # 4 tiles (196) and 8 (392) were 5-8 % slower -- every tail column pays a full
    # pass over the A rows and a reduction across lanes per row.
    WINO_TAIL_MAX = 2

from cython.parallel cimport threadid


cdef inline Py_ssize_t _odd_lines(Py_ssize_t n) noexcept nogil:
    """The least odd multiple of 16 floats (one 64-byte line) >= n."""
    n = (n + 15) // 16
    return (n if n % 2 else n + 1) * 16


def winograd_weights(const float[:, :, :, ::1] w, float[:, :, ::1] u, int num_threads=1):
    """u[t, o, c] = (G g G^T)[t // 6, t % 6] for g = w[o, c] (C_out, C_in, 3, 3), u of
    shape (36, C_out, C_in): F(4x4, 3x3); computed in double, rounded once; output
    channels in parallel (each is independent)."""
    _winograd_weights(w, u, num_threads, 4)


def winograd2_weights(const float[:, :, :, ::1] w, float[:, :, ::1] u, int num_threads=1):
    """winograd_weights for F(2x2, 3x3): u (16, C_out, C_in), u[t] = (G g G^T)[t // 4, t % 4]."""
    _winograd_weights(w, u, num_threads, 2)


cdef _winograd_weights(const float[:, :, :, ::1] w, float[:, :, ::1] u, int num_threads, int m):
    cdef Py_ssize_t c_out = w.shape[0], c_in = w.shape[1], npt = (m + 2) * (m + 2)
    if (w.shape[2] != 3 or w.shape[3] != 3 or u.shape[0] != npt
            or u.shape[1] != c_out or u.shape[2] != c_in):
        raise ValueError(f"winograd{'' if m == 4 else '2'}_weights: w must be (C_out, C_in, 3, 3) "
                         f"and u ({npt}, C_out, C_in)")
    if c_out == 0 or c_in == 0:
        return
    cdef const float* wp = &w[0, 0, 0, 0]
    cdef float* up = &u[0, 0, 0]
    cdef Py_ssize_t o
    with nogil:
        for o in prange(c_out, num_threads=num_threads, schedule="static"):
            pyconv_wino_weights_f32(wp + o * c_in * 9, c_in, up + o * c_in, c_out * c_in, m)


def winograd_conv2d(const float[:, :, :, ::1] x, const float[:, :, ::1] u,
                    const float[::1] bias, float[:, :, :, ::1] y,
                    Py_ssize_t ph, Py_ssize_t pw, double lo, double hi, int num_threads):
    """y = clamp(bias + correlation(x, g), lo, hi) for 3x3 filters g given as
    u = winograd_weights(g): stride 1, dilation 1, one group, zero padding ph, pw
    before the input (after it: whatever y's shape implies, OH = H + ph + ph_end - 2).
    x (N, C_in, H, W), u (36, C_out, C_in), bias (C_out,), y (N, C_out, OH, OW)."""
    _winograd_conv2d(x, u, bias, y, ph, pw, lo, hi, num_threads, 4)


def winograd2_conv2d(const float[:, :, :, ::1] x, const float[:, :, ::1] u,
                     const float[::1] bias, float[:, :, :, ::1] y,
                     Py_ssize_t ph, Py_ssize_t pw, double lo, double hi, int num_threads):
    """winograd_conv2d with F(2x2, 3x3): u = winograd2_weights(g), (16, C_out, C_in)."""
    _winograd_conv2d(x, u, bias, y, ph, pw, lo, hi, num_threads, 2)


# The layer, as the schedules and the unit body see it.
ctypedef struct _WinoLayer:
    int m
    int prefetch    # fetch each next panel's U rows into L2 (WINO_PREFETCH_MIN_BYTES)
    Py_ssize_t npt, c_in, c_out, h, wd, oh, ow, ph, pw, tw, tpi
    Py_ssize_t tiles    # of all images
    Py_ssize_t tail     # the last tiles, done by the tail kernel (_wino_tail)
    const float* x
    const float* u
    const float* bias
    float* y
    float lo, hi


cdef inline Py_ssize_t _wino_ldb(Py_ssize_t nt) noexcept nogil:
    """Columns of V and M per channel for blocks of at most nt tiles: nt rounded up to VL
    -- so that the GEMMs read no columns that hold no tile (a 7x7 image is 16 tiles)
    -- and an odd number of vectors, so that the rows of a K block spread over every
    L1 set."""
    cdef Py_ssize_t vl = PYCONV_WVL, ldb = (nt + vl - 1) // vl
    return (ldb + 1 - ldb % 2) * vl


cdef inline Py_ssize_t _wino_m_panels(const _WinoLayer* L, Py_ssize_t ldb, Py_ssize_t most) noexcept nogil:
    """Output-channel panels per M block: M = P x OB x ldb floats near WINO_M_BYTES, so
    that the output transform reads it from L2 right after the GEMMs wrote it."""
    cdef Py_ssize_t obp = WINO_M_BYTES // (L.npt * PYCONV_MR * ldb * sizeof(float))
    return max(1, min(obp, most))


cdef inline Py_ssize_t _wino_mbuf_floats(Py_ssize_t npt, Py_ssize_t ldt_m) noexcept nogil:
    """A unit's M buffer: P x ldt_m floats, then one line (the output transform reads
    up to VL - 1 floats past M's last tile: zeros) and the tail's transposed V
    (_wino_tail: at most WINO_TAIL_MAX columns of KC, 64-byte aligned)."""
    return npt * ldt_m + PYCONV_ALIGN // sizeof(float) + WINO_TAIL_MAX * KC


cdef inline void _wino_input(const _WinoLayer* L, Py_ssize_t c0, Py_ssize_t nc, Py_ssize_t t0,
                             Py_ssize_t nt, float* v, Py_ssize_t ldb, Py_ssize_t ldt_v,
                             float* stage, Py_ssize_t ldst) noexcept nogil:
    """V rows c0 .. c0 + nc (channels of x) for tiles [t0, t0 + nt); v points at row c0."""
    cdef const float* xc = L.x + c0 * L.h * L.wd
    if L.m == 4:
        pyconv_wino_input_f32(xc, nc, L.c_in, L.h, L.wd, L.tw, L.tpi, L.ph, L.pw, t0, nt,
                              v, ldb, ldt_v, stage, ldst)
    else:
        pyconv_wino2_input_f32(xc, nc, L.c_in, L.h, L.wd, L.tw, L.tpi, L.ph, L.pw, t0, nt,
                               v, ldb, ldt_v, stage, ldst)


cdef inline Py_ssize_t _wino_tail_tiles(Py_ssize_t tiles) noexcept nogil:
    """How many of the last tiles (of all images) the tail kernel does: those past the
    last whole vector, when at most WINO_TAIL_MAX -- a column of a vector's width
    would spend VL lanes on them (49 tiles, a 28x28 image at batch 1: 48 + 1, the last
    vector 17 % of the layer's time on AVX-512). Every schedule's blocks of tiles are
    whole NR, so the last block always holds these: the set does not depend on the
    schedule, nor on the thread count."""
    cdef Py_ssize_t rest = tiles % PYCONV_WVL
    return rest if rest <= WINO_TAIL_MAX else 0


cdef inline void _wino_tail(const _WinoLayer* L, const float* v, Py_ssize_t ldb, Py_ssize_t kc,
                            Py_ssize_t n_tail, float* bt, const float* a, Py_ssize_t n_o,
                            float* c, int accumulate) noexcept nogil:
    """M (+)= U * V on the tail tiles for one transform point and K block, on the
    tail kernel (_ukernel.h: vectors along the channels): v, c at the first tail
    tile's column of V and M, a at U's first row (n_o rows, one M block)."""
    cdef Py_ssize_t vl = PYCONV_WVL, p, r0
    _transpose_tail(v, ldb, kc, n_tail, vl, bt)     # as the GEMM kernel's tail (_igemm.pxi)
    for p in range((n_o + PYCONV_MR - 1) // PYCONV_MR):
        r0 = p * PYCONV_MR
        _ukr_tail(kc, a + r0 * L.c_in, L.c_in, bt, c + r0 * ldb, ldb, accumulate,
                  NULL, 0.0, 0.0, min(PYCONV_MR, n_o - r0), n_tail)
    if not accumulate:   # the rest of the vector, which the output transform reads: zeros
        for r0 in range(n_o):
            memset(c + r0 * ldb + n_tail, 0, (vl - n_tail) * sizeof(float))


cdef void _wino_gemm_output(const _WinoLayer* L, const float* v, Py_ssize_t ldb, Py_ssize_t ldt_v,
                            Py_ssize_t t0, Py_ssize_t nt, Py_ssize_t p_lo, Py_ssize_t p_hi,
                            Py_ssize_t obp, float* mbuf, Py_ssize_t ldt_m) noexcept nogil:
    """The unit body after the input transform: for tiles [t0, t0 + nt) (V's columns)
    and output-channel panels [p_lo, p_hi), in M blocks of obp panels:
        for t < P, K block (KC channels), NR-tile column, MR-channel panel:
            micro-kernel  M[t] (+)= U[t] * V[t]        (_ukernel.h)
        then the output transform of the block (A^T m A + bias, clamp) into y.
    The NR-tile column is outside the panel loop: its B tile (KC x NR) stays in L1
    while the panels' A rows stream past it. A column of two vectors (16 tiles, on
    AVX2) goes 6 rows at a time, one of one vector 12 rows at a time, where the set has
    those kernels (PYCONV_WIDE_MR2, PYCONV_WIDE_MR1). The last one or two tiles of all
    images, past a whole vector, go to the tail kernel instead (_wino_tail)."""
    cdef Py_ssize_t nr = PYCONV_NR_F32, vl = PYCONV_WVL, c_in = L.c_in, c_out = L.c_out
    cdef Py_ssize_t n_tail = L.tail if t0 + nt == L.tiles else 0   # the last tiles of all
    cdef Py_ssize_t nt_v = (nt - n_tail + vl - 1) // vl * vl   # columns of V that hold tiles (or zeros)
    cdef float* bt = mbuf + L.npt * ldt_m + PYCONV_ALIGN // sizeof(float)   # the tail's V, transposed
    cdef Py_ssize_t n_j = (nt_v + nr - 1) // nr, n_kb = (c_in + KC - 1) // KC
    cdef Py_ssize_t pb0, pb1, o0, n_o, t, kb, k0, kc, p, j, mr, nrj, r0, wide
    cdef const float* a_panel
    cdef const float* b_tile
    cdef float* c_tile
    cdef Py_ssize_t ob_i
    for ob_i in range((p_hi - p_lo + obp - 1) // obp):
        pb0 = p_lo + ob_i * obp
        pb1 = min(pb0 + obp, p_hi)
        o0 = pb0 * PYCONV_MR
        n_o = min(pb1 * PYCONV_MR, c_out) - o0
        for t in range(L.npt):
            for kb in range(n_kb):
                k0 = kb * KC
                kc = min(c_in - k0, KC)
                for j in range(n_j):
                    nrj = min(nt_v - j * nr, nr)
                    b_tile = v + t * ldt_v + k0 * ldb + j * nr
                    p = pb0
                    wide = (PYCONV_WIDE_MR2 if nrj == 2 * vl else
                            PYCONV_WIDE_MR1 if nrj == vl else 0)
                    if wide:
                        r0 = 0                  # rows of the M block, 6 or 12 at a time
                        while r0 + wide <= n_o:
                            if L.prefetch and j == 0 and r0 + 2 * wide <= n_o:   # the next rows'
                                pyconv_prefetch_rows(L.u + (t * c_out + o0 + r0 + wide) * c_in + k0,
                                                     c_in * sizeof(float), kc * sizeof(float), wide)
                            pyconv_ukr_f32_narrow(wide, kc, L.u + (t * c_out + o0 + r0) * c_in + k0,
                                                  c_in, b_tile, ldb,
                                                  mbuf + t * ldt_m + r0 * ldb + j * nr, ldb, kb > 0)
                            r0 = r0 + wide
                        if r0 % PYCONV_MR:      # the rest of a panel begun: on its own
                            if r0 < n_o:
                                pyconv_ukr_f32_edge(kc, L.u + (t * c_out + o0 + r0) * c_in + k0,
                                                    c_in, b_tile, ldb,
                                                    mbuf + t * ldt_m + r0 * ldb + j * nr, ldb,
                                                    kb > 0, NULL, 0.0, 0.0,
                                                    min(PYCONV_MR - r0 % PYCONV_MR, n_o - r0), nrj)
                            r0 = r0 + PYCONV_MR - r0 % PYCONV_MR
                        p = pb0 + r0 // PYCONV_MR  # then whole panels, as below
                    for p in range(p, pb1):
                        a_panel = L.u + (t * c_out + p * PYCONV_MR) * c_in + k0
                        if L.prefetch and j == 0 and p + 1 < pb1:   # the next panel's
                            pyconv_prefetch_rows(a_panel + PYCONV_MR * c_in, c_in * sizeof(float),
                                                 kc * sizeof(float), PYCONV_MR)
                        c_tile = mbuf + t * ldt_m + (p - pb0) * PYCONV_MR * ldb + j * nr
                        mr = min(c_out - p * PYCONV_MR, PYCONV_MR)
                        if mr == PYCONV_MR and nrj == nr:
                            pyconv_ukr_f32(kc, a_panel, c_in, b_tile, ldb, c_tile, ldb,
                                           kb > 0, NULL, 0.0, 0.0)
                        else:
                            pyconv_ukr_f32_edge(kc, a_panel, c_in, b_tile, ldb, c_tile, ldb,
                                                kb > 0, NULL, 0.0, 0.0, mr, nrj)
                if n_tail:
                    _wino_tail(L, v + t * ldt_v + k0 * ldb + nt_v, ldb, kc, n_tail, bt,
                               L.u + (t * c_out + o0) * c_in + k0, n_o,
                               mbuf + t * ldt_m + nt_v, kb > 0)
        if _skip & 4:
            pass
        elif L.m == 4:
            pyconv_wino_output_f32(mbuf, ldb, ldt_m, n_o, L.bias + o0, L.lo, L.hi,
                                   L.y + o0 * L.oh * L.ow, c_out, L.oh, L.ow, L.tw, L.tpi, t0, nt)
        else:
            pyconv_wino2_output_f32(mbuf, ldb, ldt_m, n_o, L.bias + o0, L.lo, L.hi,
                                    L.y + o0 * L.oh * L.ow, c_out, L.oh, L.ow, L.tw, L.tpi, t0, nt)


cdef int _skip = 0   # set_phases: parts of the unit body left out (benchmarks only)


def set_phases(int skip):
    """For benchmarks (benchmarks/winograd_phases.py): leave parts of the Winograd
    convolutions out -- bit 1 the input transform (V keeps what it held), bit 2 the
    GEMMs and output transforms, bit 4 the output transforms (y is not written) -- to
    time the others in place; 0 (the default) runs everything. Outputs are wrong while
    any bit is set. Returns the previous setting. Not for use while a call runs."""
    global _skip
    if skip < 0 or skip > 7:
        raise ValueError(f"set_phases: skip must be a bit mask in 0..7, got {skip}")
    previous = _skip
    _skip = skip
    return previous


cdef int _wino_private(const _WinoLayer* L, Py_ssize_t tiles, Py_ssize_t tb, int num_threads) noexcept nogil:
    """Units = blocks of tb tiles, each transforming its own input into a per-thread V
    (P x C_in x tb floats) and doing every output channel (_winograd_conv2d takes this
    schedule only with WINO_PRIVATE_UNITS blocks per thread; fewer go to
    _wino_shared). Returns 1 when out of memory."""
    cdef Py_ssize_t vl = PYCONV_WVL, npt = L.npt, m = L.m
    cdef Py_ssize_t ldb = _wino_ldb(min(tiles, tb))
    cdef Py_ssize_t panels = (L.c_out + PYCONV_MR - 1) // PYCONV_MR
    cdef Py_ssize_t units = (tiles + tb - 1) // tb, unit, t0, nt
    cdef Py_ssize_t obp = _wino_m_panels(L, ldb, panels)
    # Distance between transform points in V and M: an odd number of cache lines. A
    # multiple of 4 KiB put the 36 stores of one tile's transform in one L1 set
    # (measured: the input transform took twice as long as the GEMMs at 64 channels).
    cdef Py_ssize_t ldt_v = _odd_lines(L.c_in * ldb), ldt_m = _odd_lines(obp * PYCONV_MR * ldb)
    # The input transform's m + 2 staged rows: a run is at most tb tiles (+ VL - 1 rounding).
    cdef Py_ssize_t ldst = m * (tb + vl) + vl
    cdef float* vbuf
    cdef float* mbuf
    cdef float* sbuf
    cdef int failed = 0
    cdef int* failed_flag = &failed  # written through a pointer: parallel() privatises assignments
    with parallel(num_threads=num_threads):
        vbuf = <float*>_aligned_malloc(npt * ldt_v * sizeof(float))
        mbuf = <float*>_aligned_malloc(_wino_mbuf_floats(npt, ldt_m) * sizeof(float))
        sbuf = <float*>_aligned_malloc((m + 2) * ldst * sizeof(float))
        if vbuf == NULL or mbuf == NULL or sbuf == NULL:
            failed_flag[0] = 1
        else:
            memset(mbuf + npt * ldt_m, 0, vl * sizeof(float))
        for unit in prange(units, schedule="dynamic"):
            if vbuf == NULL or mbuf == NULL or sbuf == NULL:
                continue
            t0 = unit * tb
            nt = min(tiles - t0, tb)
            if not _skip & 1:
                _wino_input(L, 0, L.c_in, t0, nt, vbuf, ldb, ldt_v, sbuf, ldst)
            if not _skip & 2:
                _wino_gemm_output(L, vbuf, ldb, ldt_v, t0, nt, 0, panels, obp, mbuf, ldt_m)
        _aligned_free(sbuf)
        _aligned_free(mbuf)
        _aligned_free(vbuf)
    return failed


cdef int _wino_shared(const _WinoLayer* L, Py_ssize_t tiles, int num_threads) noexcept nogil:
    """Per chunk of tiles (V = P x C_in x chunk floats near WINO_SHARED_BYTES): the
    input transform with the channels split among the threads, then units of
    output-channel panels (a few per thread, balanced by a dynamic schedule) doing the
    GEMMs and output transforms of the whole chunk. Returns 1 when out of memory."""
    cdef Py_ssize_t vl = PYCONV_WVL, nr = PYCONV_NR_F32, npt = L.npt, m = L.m, c_in = L.c_in
    # Chunk: whole NR tiles, V near WINO_SHARED_BYTES, chunks as even as whole NR allow.
    cdef Py_ssize_t tiles_nr = (tiles + nr - 1) // nr
    cdef Py_ssize_t chunk_nr = max(1, WINO_SHARED_BYTES // (npt * c_in * nr * sizeof(float)))
    cdef Py_ssize_t nchunks = (tiles_nr + chunk_nr - 1) // chunk_nr
    cdef Py_ssize_t chunk = (tiles_nr + nchunks - 1) // nchunks * nr
    nchunks = (tiles + chunk - 1) // chunk
    cdef Py_ssize_t ldb = _wino_ldb(min(tiles, chunk))
    cdef Py_ssize_t ldt_v = _odd_lines(c_in * ldb)
    cdef Py_ssize_t panels = (L.c_out + PYCONV_MR - 1) // PYCONV_MR
    # Panel units: WINO_SHARED_UNITS per thread -- each reads all of V, so few.
    cdef Py_ssize_t ppu = max(1, (panels + WINO_SHARED_UNITS * num_threads - 1)
                                 // (WINO_SHARED_UNITS * num_threads))
    cdef Py_ssize_t obp = _wino_m_panels(L, ldb, ppu)
    cdef Py_ssize_t punits = (panels + ppu - 1) // ppu
    cdef Py_ssize_t ldt_m = _odd_lines(obp * PYCONV_MR * ldb)
    # Channel blocks of the input transform: a few per thread.
    cdef Py_ssize_t cpb = max(1, (c_in + WINO_UNITS_PER_THREAD * num_threads - 1)
                                 // (WINO_UNITS_PER_THREAD * num_threads))
    cdef Py_ssize_t cblocks = (c_in + cpb - 1) // cpb
    cdef Py_ssize_t ldst = m * (chunk + vl) + vl
    cdef Py_ssize_t mstride = _wino_mbuf_floats(npt, ldt_m), sstride = (m + 2) * ldst
    cdef float* vbuf = <float*>_aligned_malloc(npt * ldt_v * sizeof(float))
    cdef float* mbufs = <float*>_aligned_malloc(num_threads * mstride * sizeof(float))
    cdef float* sbufs = <float*>_aligned_malloc(num_threads * sstride * sizeof(float))
    cdef Py_ssize_t ci, t0, nt, cb, c0, pu, p_lo
    cdef int tid
    if vbuf == NULL or mbufs == NULL or sbufs == NULL:
        _aligned_free(sbufs)
        _aligned_free(mbufs)
        _aligned_free(vbuf)
        return 1
    for tid in range(num_threads):
        # + VL: the output transform reads up to VL - 1 floats past the last tile of M
        memset(mbufs + tid * mstride + npt * ldt_m, 0, vl * sizeof(float))
    for ci in range(nchunks):
        t0 = ci * chunk
        nt = min(tiles - t0, chunk)
        for cb in prange(0 if _skip & 1 else cblocks, num_threads=num_threads, schedule="dynamic"):
            c0 = cb * cpb
            _wino_input(L, c0, min(c_in - c0, cpb), t0, nt, vbuf + c0 * ldb, ldb, ldt_v,
                        sbufs + threadid() * sstride, ldst)
        for pu in prange(0 if _skip & 2 else punits, num_threads=num_threads, schedule="dynamic"):
            p_lo = pu * ppu
            _wino_gemm_output(L, vbuf, ldb, ldt_v, t0, nt, p_lo, min(p_lo + ppu, panels), obp,
                              mbufs + threadid() * mstride, ldt_m)
    _aligned_free(sbufs)
    _aligned_free(mbufs)
    _aligned_free(vbuf)
    return 0


cdef _winograd_conv2d(const float[:, :, :, ::1] x, const float[:, :, ::1] u,
                      const float[::1] bias, float[:, :, :, ::1] y,
                      Py_ssize_t ph, Py_ssize_t pw, double lo, double hi, int num_threads, int m):
    """F(m x m, 3x3), m = 4 or 2: only the transforms and the sizes below depend on m.

    Two schedules, the same sums in the same order (results do not depend on which):
      private  many tiles (a large image or batch): a unit is a block of TB tiles and
               transforms their input itself (V per thread, in L2);
      shared   few tiles for the threads (a small image at batch 1, where private
               units would have to split the output channels and each transform the
               same input again): per chunk of tiles, all threads first transform the
               input together (channels split among them) into one V, then units of
               output-channel panels do the GEMMs -- U (36 x C_out x C_in) is streamed
               once per chunk, not once per block of TB tiles."""
    cdef str name = "winograd_conv2d" if m == 4 else "winograd2_conv2d"
    cdef Py_ssize_t npt = (m + 2) * (m + 2)     # transform points P
    cdef Py_ssize_t n_img = x.shape[0], c_in = x.shape[1], h = x.shape[2], wd = x.shape[3]
    cdef Py_ssize_t c_out = u.shape[1], oh_n = y.shape[2], ow_n = y.shape[3]
    if (u.shape[0] != npt or u.shape[2] != c_in or y.shape[0] != n_img or y.shape[1] != c_out
            or bias.shape[0] != c_out):
        raise ValueError(f"{name}: inconsistent shapes")
    if ph < 0 or pw < 0:
        raise ValueError(f"{name}: padding must be >= 0")
    if n_img == 0 or c_out == 0 or oh_n == 0 or ow_n == 0:
        return
    if c_in == 0 or h == 0 or wd == 0:
        raise ValueError(f"{name}: empty input")
    cdef _WinoLayer L
    L.m = m
    L.prefetch = npt * c_out * c_in * sizeof(float) >= WINO_PREFETCH_MIN_BYTES
    L.npt = npt
    L.c_in = c_in
    L.c_out = c_out
    L.h = h
    L.wd = wd
    L.oh = oh_n
    L.ow = ow_n
    L.ph = ph
    L.pw = pw
    L.tw = (ow_n + m - 1) // m
    L.tpi = ((oh_n + m - 1) // m) * L.tw
    L.tiles = n_img * L.tpi
    L.tail = _wino_tail_tiles(L.tiles)
    L.x = &x[0, 0, 0, 0]
    L.u = &u[0, 0, 0]
    L.bias = &bias[0]
    L.y = &y[0, 0, 0, 0]
    L.lo = <float>lo
    L.hi = <float>hi
    cdef Py_ssize_t tiles = n_img * L.tpi, nr = PYCONV_NR_F32
    cdef Py_ssize_t panels = (c_out + PYCONV_MR - 1) // PYCONV_MR
    # Tiles per private unit: whole NR tiles, V near WINO_V_BYTES, no more than the
    # image has -- and the same number of blocks, as even as whole NR allow (196 tiles
    # in blocks of 96 left one of 4, which read all of U for them).
    cdef Py_ssize_t tb_nr = WINO_V_BYTES // (npt * c_in * nr * sizeof(float))
    tb_nr = max(1, min(tb_nr, WINO_TB_MAX_NR, (tiles + nr - 1) // nr))
    cdef Py_ssize_t tiles_nr = (tiles + nr - 1) // nr
    cdef Py_ssize_t nblocks = (tiles_nr + tb_nr - 1) // tb_nr
    tb_nr = (tiles_nr + nblocks - 1) // nblocks
    cdef Py_ssize_t tblocks = (tiles + tb_nr * nr - 1) // (tb_nr * nr)
    # Blocks of one NR tile where the threads' last round is then shorter by 15 %: the
    # rounds of whole blocks decide a call's time (196 tiles = 9 NR: 5 blocks of 2 take
    # 3 rounds of 2 on 2 threads, 9 of 1 take 5 rounds of 1; F(4, 3) 64@56x56 b1 0.80 ->
    # 0.69 ms, F(2, 3) 128@28x28 b1 1.60 -> 1.14). Otherwise 2 (each block reads all of
    # U: 784 tiles in blocks of 1 NR were 13 % slower at 64 channels).
    if tb_nr > 1 and (tiles_nr + num_threads - 1) // num_threads * 20 <= (
            (tblocks + num_threads - 1) // num_threads * tb_nr * 17):
        tb_nr = 1
        tblocks = tiles_nr
    cdef Py_ssize_t tb = tb_nr * nr
    # Too few blocks of whole NR tiles for the private schedule, but enough of
    # WINO_SPLIT_TILES: blocks of those, on the GEMMs' 2-vector edge tile. Only AVX-512's
    # NR (48) is larger: 97-191 tiles, e.g. a 14x14 image's 4x4 tiles at batch 8, took
    # the shared schedule, whose V goes through L3. benchmarks/ab.py --set avx512 (Zen 4,
    # 2 threads) F(4, 3) 8x64@14 0.86 the time, 8x128@14 0.88, 8x256@14 0.96, 8x512@14
    # 0.95, F(2, 3) 8x256@7 0.92, 8x512@7 0.99. Each tile's sums are the same products
    # in the same order in either tile, and the tail tiles (past the last whole vector)
    # are still the last block's.
    cdef Py_ssize_t private_min = max(WINO_PRIVATE_UNITS * num_threads, 4)
    if (tblocks < private_min and tb > WINO_SPLIT_TILES and WINO_SPLIT_TILES % PYCONV_WVL == 0
            and (tiles + WINO_SPLIT_TILES - 1) // WINO_SPLIT_TILES >= private_min):
        tb = WINO_SPLIT_TILES
        tblocks = (tiles + tb - 1) // tb
    cdef int failed
    with nogil:
        if tblocks >= private_min:
            failed = _wino_private(&L, tiles, tb, num_threads)
        else:
            failed = _wino_shared(&L, tiles, num_threads)
    if failed:
        raise MemoryError(f"{name}: cannot allocate a per-thread buffer")
