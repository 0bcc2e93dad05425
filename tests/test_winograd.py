"""Winograd F(4x4, 3x3) and F(2x2, 3x3) kernels (_winograd.pxi), every kernel set this
CPU can run, both tile sizes (the `tile` fixture: every kernel-level test runs twice).

winograd(2)_weights + winograd(2)_conv2d are called directly and compared with the direct
kernel computed in float64 (an independent implementation, itself tested against
tests/reference.py): sizes that are not multiples of the 4x4 tile, of the vector
width or of NR, so that edge tiles, clipped outputs, partial lane groups and edge
panels all occur; padding 0/1/2 and asymmetric (the trailing pad is implied by y's
shape); batches whose tile blocks span images; bias, clamp and NaN.
"""
import numpy as np
import pytest

import pyconv.functional as F
from conftest import same_for_any_threads

# The documented accuracy per output tile m, on He-initialised layers with unit-variance
# input: ||y - ref|| / ||ref|| and max |y - ref| per element. Measured (up to 512
# channels): F(4, 3) 2.4e-6 and 6.4e-5, F(2, 3) 4e-7 and 3.2e-6 (the GEMM kernel: 2.3e-7
# and 3.4e-6).
NORM_TOL = {4: 1e-5, 2: 2e-6}
ELEM_TOL = {4: 5e-4, 2: 5e-5}


@pytest.fixture
def kernels(kernel_set):
    """The kernel-set module under test (conftest's kernel_set: each set this CPU runs)."""
    return kernel_set


@pytest.fixture(params=[4, 2], ids=["F4x4", "F2x2"])
def tile(request):
    """The output tile m of F(m x m, 3x3)."""
    return request.param


def entry_points(k, m):
    """(weights transform, convolution, transform points) of F(m x m, 3x3) in kernel set k."""
    if m == 4:
        return k.winograd_weights, k.winograd_conv2d, 36
    return k.winograd2_weights, k.winograd2_conv2d, 16


def he_layer(rng, n, c_in, h, w, c_out):
    """Unit-variance input, He-initialised 3x3 weights (std sqrt(2 / (9 c_in))), bias."""
    x = rng.standard_normal((n, c_in, h, w)).astype(np.float32)
    g = (rng.standard_normal((c_out, c_in, 3, 3)) * np.sqrt(2 / (9 * c_in))).astype(np.float32)
    b = rng.standard_normal(c_out).astype(np.float32)
    return x, g, b


def winograd(k, m, x, g, b, pads, lo=-np.inf, hi=np.inf, threads=1):
    """y from F(m x m, 3x3) of the kernel set k with pads (top, bottom, left, right)."""
    (pt, pb, pl, pr), (n, _, h, w), c_out = pads, x.shape, g.shape[0]
    weights, conv, points = entry_points(k, m)
    u = np.empty((points, c_out, g.shape[1]), np.float32)
    weights(g, u)
    y = np.full((n, c_out, h + pt + pb - 2, w + pl + pr - 2), 1234.5, np.float32)
    conv(x, u, b, y, pt, pl, lo, hi, threads)
    return y


def reference(x, g, b, pads):
    """The direct kernel in float64 on the explicitly zero-padded input."""
    pt, pb, pl, pr = pads
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    return F.conv2d(xp, g.astype(np.float64), b.astype(np.float64), algorithm="direct")


def assert_accurate(y, ref, m):
    err = np.abs(y.astype(np.float64) - ref)
    assert np.linalg.norm(err) <= NORM_TOL[m] * np.linalg.norm(ref), np.linalg.norm(err) / np.linalg.norm(ref)
    assert err.max() <= ELEM_TOL[m], err.max()


def nan_tiles(shape, m, pads, i, iy, ix):
    """The outputs a NaN at input (image i, row iy, column ix) may reach: the m x m
    output tiles whose (m + 2) x (m + 2) input windows hold it."""
    expect = np.zeros(shape, bool)
    oh, ow = shape[2:]
    for ty in range(-(-oh // m)):
        for tx in range(-(-ow // m)):
            y0, x0 = m * ty - pads[0], m * tx - pads[2]
            if y0 <= iy < y0 + m + 2 and x0 <= ix < x0 + m + 2:
                expect[i, :, m * ty:m * ty + m, m * tx:m * tx + m] = True
    return expect


# (n, c_in, h, w, c_out, (top, bottom, left, right))
CASES = [
    (1, 1, 1, 1, 1, (1, 1, 1, 1)),         # one pixel: a single tile, 3x3 of it padding
    (1, 3, 3, 3, 2, (0, 0, 0, 0)),         # one output pixel
    (1, 2, 5, 7, 3, (0, 0, 0, 0)),         # 3x5 outputs: clipped tiles
    (2, 5, 9, 11, 7, (1, 1, 1, 1)),        # batch: tile blocks span images
    (1, 4, 30, 29, 13, (2, 2, 2, 2)),      # pad 2, 30x29 outputs
    (3, 7, 13, 6, 9, (1, 0, 2, 1)),        # asymmetric pads
    (1, 6, 17, 23, 5, (0, 2, 1, 0)),
    (2, 70, 10, 14, 66, (1, 1, 1, 1)),     # > 64 channels; 66 = edge panel
    (1, 67, 12, 12, 70, (0, 1, 0, 1)),
    (1, 300, 6, 9, 10, (1, 1, 1, 1)),      # C_in > KC = 256: two K blocks
    (1, 20, 14, 14, 26, (1, 1, 1, 1)),     # 16 tiles (F(4x4)): 6-row tiles, 2 rows left
    (1, 9, 7, 7, 8, (1, 1, 1, 1)),         # 16 tiles (F(2x2)): one 6-row tile + 2 rows
    (3, 17, 8, 8, 31, (0, 0, 0, 0)),       # 3 x 9 tiles (F(2x2)): 12-row tiles, a short panel
    (2, 20, 7, 7, 26, (1, 1, 1, 1)),       # 8 tiles (F(4x4)): 12-row tiles, 2 rows left
    (5, 3, 30, 30, 4, (1, 1, 1, 1)),       # many tiles: several tile blocks
    (1, 16, 2, 30, 24, (1, 2, 0, 1)),      # a thin image
    (1, 9, 30, 1, 11, (2, 1, 1, 1)),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_matches_direct_float64(kernels, tile, case):
    n, c_in, h, w, c_out, pads = case
    rng = np.random.default_rng(abs(hash(case)) % 2**32)
    x, g, b = he_layer(rng, n, c_in, h, w, c_out)
    assert_accurate(winograd(kernels, tile, x, g, b, pads), reference(x, g, b, pads), tile)


def test_sizes_1_to_30(kernels, tile):
    """Every H = W from 1 to 30 with pad 1 (and a few with pad 0): each tile edge."""
    rng = np.random.default_rng(7)
    for s in range(1, 31):
        for pads in [(1, 1, 1, 1)] + ([(0, 0, 0, 0)] if s >= 3 else []):
            x, g, b = he_layer(rng, 2, 3, s, s + (s % 3), 5)
            assert_accurate(winograd(kernels, tile, x, g, b, pads), reference(x, g, b, pads), tile)


def test_clamp_and_nan(kernels, tile):
    rng = np.random.default_rng(3)
    x, g, b = he_layer(rng, 2, 7, 11, 13, 10)
    x[1, 3, 4, 5] = np.nan
    b[2] = np.nan
    pads = (1, 1, 1, 1)
    y = winograd(kernels, tile, x, g, b, pads, 0.0, 0.5)
    ref = reference(x, g, b, pads)
    nan = np.isnan(ref)
    assert nan.any() and np.isnan(y)[nan].all()  # NaN passes the clamp
    assert np.isnan(y[:, 2]).all()               # a NaN bias: its whole channel
    # An input NaN may reach outputs of each m x m tile whose (m + 2)^2 input holds it,
    # not only the 3x3 windows that hold it.
    spread = nan_tiles(y.shape, tile, pads, 1, 4, 5)
    spread[:, 2] = True
    assert not np.isnan(y[~spread]).any()
    ok = ~spread
    np.testing.assert_allclose(y[ok], np.clip(ref[ok], 0.0, 0.5), rtol=0, atol=ELEM_TOL[tile])
    assert y[ok].min() == 0.0 and y[ok].max() == 0.5


@pytest.mark.parametrize("shape", [(1, 16, 30, 33, 24), (4, 8, 12, 12, 70), (1, 64, 7, 7, 64),
                                   (3, 5, 13, 37, 7), (2, 3, 40, 70, 9)])
def test_threads_bitwise(kernels, tile, shape):
    n, c, h, w, co = shape
    rng = np.random.default_rng(2)
    x, g, b = he_layer(rng, n, c, h, w, co)
    pads = (1, 1, 1, 1)
    same_for_any_threads(lambda t: winograd(kernels, tile, x, g, b, pads, threads=t))


# Many input channels and few tiles: the kernel's shared schedule (the threads transform
# one V together, then split the output channels), in several chunks of tiles (V is
# capped at 16 MiB), or -- with 2 blocks of tiles per thread and 4 at least -- the
# private one. With AVX2's blocks of 24 tiles: (1, 2048, 24, 28): F(2x2) 168 tiles = 7
# blocks, private at 1 to 3 threads, 2 chunks at 4; F(4x4) 42 tiles, shared.
# (1, 1024, 44, 44): F(4x4) 121 tiles = 6 blocks, private at 1 to 3 threads, 2 chunks
# at 4. On AVX-512 (blocks of 48 tiles), 97-191 tiles take private blocks of 32 where
# blocks of 48 are too few: (8, 20, 14, 13, 24) has 128 F(4x4) tiles, (8, 20, 7, 8, 24)
# 128 F(2x2) ones -- private in blocks of 32 at 1 and 2 threads, shared at 3 and 4.
# Both schedules sum in the same order: bitwise equal.
@pytest.mark.parametrize("shape", [(1, 2048, 24, 28, 8), (1, 1024, 44, 44, 12),
                                   (8, 20, 14, 13, 24), (8, 20, 7, 8, 24)])
def test_schedules_and_chunks_agree_bitwise(kernels, tile, shape):
    n, c, h, w, co = shape
    rng = np.random.default_rng(5)
    x, g, b = he_layer(rng, n, c, h, w, co)
    pads = (1, 1, 1, 1)
    y = same_for_any_threads(lambda t: winograd(kernels, tile, x, g, b, pads, threads=t),
                             threads=(1, 2, 3, 4))
    assert_accurate(y, reference(x, g, b, pads), tile)


# The last tiles past a whole vector, when only 1 or 2 (WINO_TAIL_MAX), go to the tail
# kernel (vectors along the channels): all tiles (1 or 2 in all), after a few vectors
# (the shared schedule), after many (private blocks at few threads, shared at more);
# one K block and two (C_in > KC = 256), a short last panel (C_out 13); one image
# or a batch whose last image holds the tail. The tail tiles are the same for every
# schedule and thread count: bitwise equal.
@pytest.mark.parametrize("rest", [1, 2])
@pytest.mark.parametrize("vectors", [0, 3, 15, 41])
@pytest.mark.parametrize("c_in, c_out", [(5, 13), (300, 9)])
def test_tail_tiles(kernels, tile, rest, vectors, c_in, c_out):
    vl = kernels.NR_F32 // 3
    tiles = vectors * vl + rest
    n = 2 if tiles % 2 == 0 and vectors else 1     # one row of tiles per image
    h, w = tile, tile * (tiles // n) - 1            # the last tile of each row clipped
    rng = np.random.default_rng(tiles + c_in)
    x, g, b = he_layer(rng, n, c_in, h, w, c_out)
    pads = (1, 1, 1, 1)
    y = same_for_any_threads(lambda t: winograd(kernels, tile, x, g, b, pads, threads=t),
                             threads=(1, 2, 3, 5))
    assert_accurate(y, reference(x, g, b, pads), tile)


# F(4, 3)'s and F(2, 3)'s G, for the float64 reference of the filter transform.
G = {4: np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                  [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]]),
     2: np.array([[1, 0, 0], [1 / 2, 1 / 2, 1 / 2], [1 / 2, -1 / 2, 1 / 2], [0, 0, 1]])}


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (7, 13), (17, 33), (2, 70), (3, 256), (2, 300), (1, 517)])
def test_weights_transform_vs_float64(kernels, tile, shape):
    """u = G g G^T computed in double and rounded once: within half a float ulp of the
    float64 product (plus double rounding, relative to the filter's size), for channel
    counts that are not multiples of the vector width nor of the transform's channel
    block (256); 1 and 3 threads bitwise equal."""
    c_out, c_in = shape
    rng = np.random.default_rng(c_out * 100 + c_in)
    g = rng.standard_normal((c_out, c_in, 3, 3)).astype(np.float32)
    g[0, 0] = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]      # exact sums and cancellations
    weights, _, points = entry_points(kernels, tile)
    ref = np.einsum("ik,ockl,jl->ijoc", G[tile], g.astype(np.float64), G[tile]).reshape(points, c_out, c_in)
    u = np.full((points, c_out, c_in), np.nan, np.float32)
    g_before = g.copy()
    weights(g, u)
    assert np.array_equal(g, g_before)
    err = np.abs(u.astype(np.float64) - ref)
    assert np.all(err <= np.abs(ref) * 2.0 ** -24 + 1e-14 * np.abs(g).max()), err.max()
    u3 = np.empty_like(u)
    weights(g, u3, 3)
    assert np.array_equal(u, u3)


def test_tile_runs_of_every_length(kernels, tile):
    """Both transforms work on runs of tiles in one tile row, VL tiles at a time: output
    widths 1..40 (and some to 72, past 16 + 1 tiles for the widest vectors) give runs of
    every length around the vector width (VL tiles are 2 VL outputs for F(2, 3)), odd
    heights clip the last tile row, batch 2
    and odd channel counts, and pads 0, 1, 2 and asymmetric put padding on every side
    of a run's staged rows."""
    rng = np.random.default_rng(21)
    widths = list(range(1, 41)) + list(range(43, 73, 6))
    pads_list = [(1, 1, 1, 1), (0, 0, 0, 0), (2, 2, 2, 2), (0, 2, 1, 0), (2, 1, 0, 2)]
    for i, ow in enumerate(widths):
        pads = pads_list[i % len(pads_list)]
        pt, pb, pl, pr = pads
        oh = 1 + 2 * (i % 4)                         # odd heights 1, 3, 5, 7
        h, w = oh + 2 - pt - pb, ow + 2 - pl - pr
        if h < 1 or w < 1:
            continue
        x, g, b = he_layer(rng, 2, 3 + i % 3, h, w, 5)
        assert_accurate(winograd(kernels, tile, x, g, b, pads), reference(x, g, b, pads), tile)


@pytest.mark.parametrize("shape", [(2, 3, 33, 41, 5), (1, 5, 9, 70, 7), (3, 2, 6, 6, 3)])
def test_nan_reaches_exactly_its_tiles(kernels, tile, shape):
    """A NaN input reaches outputs of the m x m tiles whose (m + 2)^2 inputs hold it (which ones
    depends on where in the tile it is: B^T's zeros skip it) and no other: the lanes that
    a run's last vector computes past the run (other tiles, or past the block) never
    reach the output."""
    n, c, h, w, co = shape
    rng = np.random.default_rng(31)
    x, g, b = he_layer(rng, n, c, h, w, co)
    pads = (1, 1, 1, 1)
    for _ in range(6):
        xn = x.copy()
        i, ci, iy, ix = rng.integers(n), rng.integers(c), rng.integers(h), rng.integers(w)
        xn[i, ci, iy, ix] = np.nan
        y = winograd(kernels, tile, xn, g, b, pads)
        expect = nan_tiles(y.shape, tile, pads, i, iy, ix)
        nan = np.isnan(y)
        assert nan.any() and not nan[~expect].any()


@pytest.mark.parametrize("shape", [(2, 64, 20, 21, 64), (1, 256, 9, 11, 40), (3, 128, 7, 7, 24)])
def test_accuracy_realistic_layers(kernels, tile, shape):
    """The documented bound (NORM_TOL, ELEM_TOL vs float64) on He-initialised layers with
    realistic channel counts, where errors sum over many channels."""
    n, c, h, w, co = shape
    rng = np.random.default_rng(41)
    x, g, b = he_layer(rng, n, c, h, w, co)
    x_before, g_before = x.copy(), g.copy()
    pads = (1, 1, 1, 1)
    y = winograd(kernels, tile, x, g, b, pads)
    assert np.array_equal(x, x_before) and np.array_equal(g, g_before)
    assert_accurate(y, reference(x, g, b, pads), tile)


@pytest.mark.parametrize("shape", [(2, 64, 20, 21, 64), (1, 256, 9, 11, 40)])
def test_f2x2_is_several_times_more_accurate(kernels, shape):
    """F(2, 3)'s points (0, +-1, inf) give a better-conditioned transform than F(4, 3)'s
    (+-2 too): measured 5-6x smaller errors normwise, 15-20x per element."""
    n, c, h, w, co = shape
    rng = np.random.default_rng(43)
    x, g, b = he_layer(rng, n, c, h, w, co)
    pads = (1, 1, 1, 1)
    ref = reference(x, g, b, pads)
    err4, err2 = (np.abs(winograd(kernels, m, x, g, b, pads) - ref) for m in (4, 2))
    assert np.linalg.norm(err2) * 3 <= np.linalg.norm(err4)
    assert err2.max() * 5 <= err4.max()


def test_bad_shapes(kernels, tile):
    weights, conv, points = entry_points(kernels, tile)
    x = np.zeros((1, 3, 8, 8), np.float32)
    u = np.zeros((points, 4, 3), np.float32)
    b = np.zeros(4, np.float32)
    with pytest.raises(ValueError):
        weights(np.zeros((4, 3, 5, 5), np.float32), u)
    with pytest.raises(ValueError):                  # the other variant's number of points
        weights(np.zeros((4, 3, 3, 3), np.float32), np.zeros((52 - points, 4, 3), np.float32))
    with pytest.raises(ValueError):
        conv(x, np.zeros((52 - points, 4, 3), np.float32), b, np.zeros((1, 4, 8, 8), np.float32),
             1, 1, -np.inf, np.inf, 1)
    with pytest.raises(ValueError):
        conv(x, u, np.zeros(5, np.float32), np.zeros((1, 4, 8, 8), np.float32),
             1, 1, -np.inf, np.inf, 1)
    with pytest.raises(ValueError):
        conv(x, u, b, np.zeros((1, 4, 8, 8), np.float32), -1, 1, -np.inf, np.inf, 1)


# ---------------------------------------------------------------------------------------
# Through pyconv.functional: algorithm='winograd', the 'auto' choice and the cache
# ---------------------------------------------------------------------------------------

def _he_layer(rng, n, c_in, c_out, h, w):
    x = rng.standard_normal((n, c_in, h, w)).astype(np.float32)
    weight = (rng.standard_normal((c_out, c_in, 3, 3)) * np.sqrt(2 / (9 * c_in))).astype(np.float32)
    return x, weight


@pytest.mark.parametrize("algorithm", ["winograd", "winograd2x2"])
@pytest.mark.parametrize("padding", [0, 1, 2, ((1, 2), (0, 1)), "same"])
def test_functional_winograd_accuracy(padding, algorithm):
    rng = np.random.default_rng(11)
    x, w = _he_layer(rng, 2, 20, 24, 23, 18)
    b = rng.standard_normal(24).astype(np.float32)
    y = F.conv2d(x, w, b, padding=padding, algorithm=algorithm)
    ref = F.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), padding=padding)
    m = F._WINOGRAD_TILE[algorithm]
    assert y.dtype == np.float32 and y.shape == ref.shape
    assert np.linalg.norm(y - ref) / np.linalg.norm(ref) <= NORM_TOL[m]
    assert np.max(np.abs(y - ref)) <= ELEM_TOL[m]


@pytest.mark.parametrize("algorithm", ["winograd", "winograd2x2"])
def test_functional_winograd_rejects_what_it_cannot_do(algorithm):
    x = np.ones((1, 4, 8, 8), np.float32)
    for kwargs in (dict(stride=2), dict(dilation=2), dict(groups=2)):
        with pytest.raises(ValueError, match=algorithm):
            F.conv2d(x, np.ones((4, 4 // kwargs.get("groups", 1), 3, 3), np.float32),
                     algorithm=algorithm, **kwargs)
    with pytest.raises(ValueError, match=algorithm):
        F.conv2d(x.astype(np.float64), np.ones((4, 4, 3, 3)), algorithm=algorithm)
    with pytest.raises(ValueError, match=algorithm):
        F.conv2d(x, np.ones((4, 4, 5, 5), np.float32), algorithm=algorithm)


def _record_kernels(monkeypatch):
    """Calls of each convolution kernel through pyconv.functional, by name."""
    calls = []
    for name in ("winograd_conv2d", "winograd2_conv2d", "conv2d_igemm"):
        real = getattr(F._dispatch.kernels, name)
        monkeypatch.setattr(F._dispatch.kernels, name,
                            lambda *a, _n=name, _f=real: (calls.append(_n), _f(*a))[1])
    return calls


# (N, C_in, C_out, H, W with padding 1, read-only weights) -> the kernel the heuristic
# in pyconv.functional picks (F(4, 3) = winograd_conv2d, F(2, 3) = winograd2_conv2d).
AUTO_CASES = [
    ((1, 64, 64, 56, 56, True), "winograd_conv2d"),     # ResNet-50 / VGG-16 layers
    ((1, 128, 128, 28, 28, True), "winograd_conv2d"),
    ((1, 128, 128, 14, 14, True), "winograd_conv2d"),   # 16 4x4 tiles: the threshold
    ((1, 256, 256, 14, 14, True), "winograd2_conv2d"),  # ... but a 9.4 MB filter streams
    ((1, 256, 256, 15, 15, True), "winograd2_conv2d"),
    ((1, 256, 256, 17, 17, True), "winograd_conv2d"),   # 25 tiles
    ((2, 256, 256, 14, 14, True), "winograd_conv2d"),   # 32 over the batch
    ((1, 512, 512, 7, 7, True), "conv2d_igemm"),        # 16 2x2 tiles, 16.8 MB filter
    ((1, 512, 512, 9, 9, True), "winograd2_conv2d"),    # 25 tiles
    ((1, 128, 128, 7, 7, True), "winograd2_conv2d"),    # 16 tiles, 1 MB filter
    ((1, 256, 256, 8, 8, True), "winograd2_conv2d"),    # 16 tiles, 4 MiB: the limit
    ((1, 320, 320, 8, 8, True), "conv2d_igemm"),        # 6.6 MB
    ((8, 256, 256, 7, 7, True), "winograd_conv2d"),
    ((4, 128, 128, 7, 7, True), "winograd_conv2d"),     # 16 tiles over the batch
    ((3, 128, 128, 7, 7, True), "winograd2_conv2d"),    # 12
    ((8, 64, 64, 14, 14, True), "winograd_conv2d"),     # narrow rows: still F(4, 3)
    ((1, 32, 32, 28, 28, True), "winograd_conv2d"),     # 32 channels: the threshold
    ((1, 24, 32, 56, 56, True), "winograd2_conv2d"),    # 24: F(4, 3) no faster
    ((1, 16, 16, 8, 8, True), "winograd2_conv2d"),      # 16 2x2 tiles: pays
    ((1, 64, 64, 6, 6, True), "conv2d_igemm"),          # 9 2x2 tiles: too few
    ((1, 8, 64, 28, 28, True), "conv2d_igemm"),         # 8 input channels: too few
    ((1, 128, 128, 20, 20, False), "winograd2_conv2d"),  # per call: F(4, 3)'s transform
    ((1, 128, 128, 28, 28, False), "winograd_conv2d"),  # ... pays from 500 pixels
    ((1, 384, 384, 28, 28, False), "winograd2_conv2d"),  # ... while its filter is <= 16 MB
    ((1, 512, 512, 14, 14, False), "winograd2_conv2d"),
    ((1, 512, 512, 7, 7, False), "conv2d_igemm"),       # F(2, 3)'s from 196 pixels
    ((4, 128, 128, 7, 7, False), "winograd2_conv2d"),
]


@pytest.mark.parametrize("case, expected", AUTO_CASES, ids=str)
def test_auto_picks_what_the_heuristic_says(monkeypatch, case, expected):
    n, c_in, c_out, h, w, read_only = case
    calls = _record_kernels(monkeypatch)
    x = np.zeros((n, c_in, h, w), np.float32)
    weight = np.zeros((c_out, c_in, 3, 3), np.float32)
    weight.flags.writeable = read_only is False
    F.conv2d(x, weight, padding=1)
    assert calls == [expected]


def test_auto_never_picks_winograd_where_it_cannot(monkeypatch):
    calls = _record_kernels(monkeypatch)
    rng = np.random.default_rng(12)
    x, w = _he_layer(rng, 1, 64, 64, 56, 56)
    w.flags.writeable = False
    F.conv2d(x.astype(np.float64), w, padding=1)        # float64
    F.conv2d(x, w, padding=1, stride=2)                 # strided
    F.conv2d(x, w, padding=2, dilation=2)               # dilated
    F.convolve2d(x, w, padding=1)                       # flipped: a transform per call
    assert "winograd_conv2d" not in calls and "winograd2_conv2d" not in calls


def test_transform_cache_follows_the_weights():
    rng = np.random.default_rng(13)
    x, w = _he_layer(rng, 1, 16, 16, 20, 20)
    w.flags.writeable = False
    first = F.conv2d(x, w, padding=1, algorithm="winograd")
    assert F._cache_key(w) in F._TRANSFORM_CACHE
    again = F.conv2d(x, w, padding=1, algorithm="winograd")
    assert again.tobytes() == first.tobytes()
    w2 = np.array(w) * 2                                # new weights (writable): not cached
    doubled = F.conv2d(x, w2, padding=1, algorithm="winograd")
    np.testing.assert_allclose(doubled, 2 * first, rtol=1e-4, atol=1e-4)
    w2.flags.writeable = False
    assert F._cache_key(w2) not in F._TRANSFORM_CACHE
    view = w2[...]                                      # a view of a read-only array: frozen
    assert F._frozen(view)
    writable = np.array(w)
    ro_view = writable.view()
    ro_view.flags.writeable = False                     # but its base can still change
    assert not F._frozen(ro_view)
    F.conv2d(x, ro_view, padding=1, algorithm="winograd")
    assert F._cache_key(ro_view) not in F._TRANSFORM_CACHE
    writable *= 3                                       # ...and the next call sees it
    np.testing.assert_allclose(F.conv2d(x, ro_view, padding=1, algorithm="winograd"),
                               3 * first, rtol=1e-4, atol=1e-4)


def test_transform_caches_per_tile_size(monkeypatch):
    """F(4, 3) and F(2, 3) of the same read-only weights are cached side by side (a key
    per tile size: neither returns the other's 36- or 16-point transform); each is
    computed once, a new read-only array misses, and the LRU bound holds."""
    rng = np.random.default_rng(14)
    x, w = _he_layer(rng, 1, 16, 16, 20, 20)
    b = rng.standard_normal(16).astype(np.float32)
    w.flags.writeable = False
    ref = F.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), padding=1)
    transforms = []
    for name in ("winograd_weights", "winograd2_weights"):
        real = getattr(F._dispatch.kernels, name)
        monkeypatch.setattr(F._dispatch.kernels, name,
                            lambda *a, _n=name, _f=real: (transforms.append(_n), _f(*a))[1])
    results = {}
    for algorithm in ("winograd", "winograd2x2", "winograd", "winograd2x2"):
        y = F.conv2d(x, w, b, padding=1, algorithm=algorithm)
        m = F._WINOGRAD_TILE[algorithm]
        assert np.linalg.norm(y - ref) <= NORM_TOL[m] * np.linalg.norm(ref)
        assert results.setdefault(algorithm, y.tobytes()) == y.tobytes()
    assert transforms == ["winograd_weights", "winograd2_weights"]      # once each
    assert F._TRANSFORM_CACHE[F._cache_key(w, 4)][1].shape == (36, 16, 16)
    assert F._TRANSFORM_CACHE[F._cache_key(w, 2)][1].shape == (16, 16, 16)
    assert results["winograd"] != results["winograd2x2"]               # different roundings
    w2 = np.array(w) * 2                                                # new weights
    w2.flags.writeable = False
    doubled = F.conv2d(x, w2, b, padding=1, algorithm="winograd2x2")
    assert transforms[-1] == "winograd2_weights" and len(transforms) == 3
    np.testing.assert_allclose(doubled - b[:, None, None], 2 * (ref - b[:, None, None]),
                               rtol=0, atol=1e-4)
    writable = np.array(w)                                              # never cached
    F.conv2d(x, writable, b, padding=1, algorithm="winograd2x2")
    writable *= 3
    np.testing.assert_allclose(F.conv2d(x, writable, b, padding=1, algorithm="winograd2x2")
                               - b[:, None, None], 3 * (ref - b[:, None, None]), rtol=0, atol=1e-4)
    assert F._cache_key(writable, 2) not in F._TRANSFORM_CACHE
    one = 16 * 16 * 16 * 4                                              # an F(2, 3) transform
    monkeypatch.setattr(F, "_TRANSFORM_CACHE_BYTES", 8 * one)             # LRU bound, in bytes
    for _ in range(10):
        extra = np.array(w)
        extra.flags.writeable = False
        F.conv2d(x, extra, padding=1, algorithm="winograd2x2")
    assert sum(entry[1].nbytes for entry in F._TRANSFORM_CACHE.values()) <= 8 * one
    assert F._cache_key(w, 4) not in F._TRANSFORM_CACHE

def test_transform_cache_holds_a_network_and_evicts_by_bytes(monkeypatch):
    """Every layer of a deep network stays cached (LRU by bytes, not by count), and
    beyond the byte budget the least recently used transform goes first."""
    rng = np.random.default_rng(14)
    monkeypatch.setattr(F, "_TRANSFORM_CACHE", F.collections.OrderedDict())
    x = rng.standard_normal((1, 16, 12, 12)).astype(np.float32)
    weights = []
    for _ in range(12):
        w = (rng.standard_normal((16, 16, 3, 3)) * 0.1).astype(np.float32)
        w.flags.writeable = False
        weights.append(w)
        F.conv2d(x, w, padding=1, algorithm="winograd")
    assert all(F._cache_key(w, 4) in F._TRANSFORM_CACHE for w in weights)
    one = 36 * 16 * 16 * 4
    monkeypatch.setattr(F, "_TRANSFORM_CACHE_BYTES", 3 * one)
    F.conv2d(x, weights[0], padding=1, algorithm="winograd")   # a hit: most recent now
    w = weights[5].copy()
    w.flags.writeable = False
    F.conv2d(x, w, padding=1, algorithm="winograd")            # a miss: evicts down to 3
    assert list(F._TRANSFORM_CACHE) == [F._cache_key(k, 4) for k in (weights[11], weights[0], w)]
