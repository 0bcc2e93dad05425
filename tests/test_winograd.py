"""Winograd F(4x4, 3x3) kernels (_winograd.pxi), every kernel set this CPU can run.

winograd_weights + winograd_conv2d are called directly and compared with the direct
kernel computed in float64 (an independent implementation, itself tested against
tests/reference.py): sizes that are not multiples of the 4x4 tile, of the vector
width or of NR, so that edge tiles, clipped outputs, partial lane groups and edge
panels all occur; padding 0/1/2 and asymmetric (the trailing pad is implied by y's
shape); batches whose tile blocks span images; bias, clamp and NaN.
"""
import numpy as np
import pytest

import pyconv.functional as F
from pyconv import _dispatch

SETS = _dispatch.supported()
NORM_TOL = 1e-5   # ||y - ref|| / ||ref|| on He-initialised layers, unit-variance input
ELEM_TOL = 5e-4   # max |y - ref| per element, same layers


@pytest.fixture(params=SETS)
def kernels(request):
    previous = _dispatch.use(request.param)
    yield _dispatch.kernels
    _dispatch.use(previous)


def he_layer(rng, n, c_in, h, w, c_out):
    """Unit-variance input, He-initialised 3x3 weights (std sqrt(2 / (9 c_in))), bias."""
    x = rng.standard_normal((n, c_in, h, w)).astype(np.float32)
    g = (rng.standard_normal((c_out, c_in, 3, 3)) * np.sqrt(2 / (9 * c_in))).astype(np.float32)
    b = rng.standard_normal(c_out).astype(np.float32)
    return x, g, b


def winograd(k, x, g, b, pads, lo=-np.inf, hi=np.inf, threads=1):
    """y from the kernel set k with pads (top, bottom, left, right)."""
    (pt, pb, pl, pr), (n, _, h, w), c_out = pads, x.shape, g.shape[0]
    u = np.empty((36, c_out, g.shape[1]), np.float32)
    k.winograd_weights(g, u)
    y = np.full((n, c_out, h + pt + pb - 2, w + pl + pr - 2), 1234.5, np.float32)
    k.winograd_conv2d(x, u, b, y, pt, pl, lo, hi, threads)
    return y


def reference(x, g, b, pads):
    """The direct kernel in float64 on the explicitly zero-padded input."""
    pt, pb, pl, pr = pads
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    return F.conv2d(xp, g.astype(np.float64), b.astype(np.float64), algorithm="direct")


def assert_accurate(y, ref):
    err = np.abs(y.astype(np.float64) - ref)
    assert np.linalg.norm(err) <= NORM_TOL * np.linalg.norm(ref), np.linalg.norm(err) / np.linalg.norm(ref)
    assert err.max() <= ELEM_TOL, err.max()


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
    (5, 3, 30, 30, 4, (1, 1, 1, 1)),       # many tiles: several tile blocks
    (1, 16, 2, 30, 24, (1, 2, 0, 1)),      # a thin image
    (1, 9, 30, 1, 11, (2, 1, 1, 1)),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_matches_direct_float64(kernels, case):
    n, c_in, h, w, c_out, pads = case
    rng = np.random.default_rng(abs(hash(case)) % 2**32)
    x, g, b = he_layer(rng, n, c_in, h, w, c_out)
    assert_accurate(winograd(kernels, x, g, b, pads), reference(x, g, b, pads))


def test_sizes_1_to_30(kernels):
    """Every H = W from 1 to 30 with pad 1 (and a few with pad 0): each tile edge."""
    rng = np.random.default_rng(7)
    for s in range(1, 31):
        for pads in [(1, 1, 1, 1)] + ([(0, 0, 0, 0)] if s >= 3 else []):
            x, g, b = he_layer(rng, 2, 3, s, s + (s % 3), 5)
            assert_accurate(winograd(kernels, x, g, b, pads), reference(x, g, b, pads))


def test_clamp_and_nan(kernels):
    rng = np.random.default_rng(3)
    x, g, b = he_layer(rng, 2, 7, 11, 13, 10)
    x[1, 3, 4, 5] = np.nan
    b[2] = np.nan
    pads = (1, 1, 1, 1)
    y = winograd(kernels, x, g, b, pads, 0.0, 0.5)
    ref = reference(x, g, b, pads)
    nan = np.isnan(ref)
    assert nan.any() and np.isnan(y)[nan].all()  # NaN passes the clamp
    assert np.isnan(y[:, 2]).all()               # a NaN bias: its whole channel
    # An input NaN reaches every output of each 4x4 tile whose 6x6 input holds it
    # (rows/columns 4..7 of image 1 here), not only the 3x3 windows that hold it.
    spread = np.zeros_like(nan)
    spread[1, :, 0:8, 4:8] = True
    spread[:, 2] = True
    assert not np.isnan(y[~spread]).any()
    ok = ~spread
    np.testing.assert_allclose(y[ok], np.clip(ref[ok], 0.0, 0.5), rtol=0, atol=ELEM_TOL)
    assert y[ok].min() == 0.0 and y[ok].max() == 0.5


@pytest.mark.parametrize("shape", [(1, 16, 30, 33, 24), (4, 8, 12, 12, 70), (1, 64, 7, 7, 64),
                                   (3, 5, 13, 37, 7), (2, 3, 40, 70, 9)])
def test_threads_bitwise(kernels, shape):
    n, c, h, w, co = shape
    rng = np.random.default_rng(2)
    x, g, b = he_layer(rng, n, c, h, w, co)
    pads = (1, 1, 1, 1)
    results = [winograd(kernels, x, g, b, pads, threads=t) for t in (1, 2, 3)]
    assert np.array_equal(results[0], results[1]) and np.array_equal(results[0], results[2])


# F(4, 3)'s G, for the float64 reference of the filter transform.
G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
              [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (7, 13), (17, 33), (2, 70)])
def test_weights_transform_vs_float64(kernels, shape):
    """u = G g G^T computed in double and rounded once: within half a float ulp of the
    float64 product (plus double rounding, relative to the filter's size), for channel
    counts that are not multiples of the vector width; 1 and 3 threads bitwise equal."""
    c_out, c_in = shape
    rng = np.random.default_rng(c_out * 100 + c_in)
    g = rng.standard_normal((c_out, c_in, 3, 3)).astype(np.float32)
    g[0, 0] = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]      # exact sums and cancellations
    ref = np.einsum("ik,ockl,jl->ijoc", G, g.astype(np.float64), G).reshape(36, c_out, c_in)
    u = np.full((36, c_out, c_in), np.nan, np.float32)
    g_before = g.copy()
    kernels.winograd_weights(g, u)
    assert np.array_equal(g, g_before)
    err = np.abs(u.astype(np.float64) - ref)
    assert np.all(err <= np.abs(ref) * 2.0 ** -24 + 1e-14 * np.abs(g).max()), err.max()
    u3 = np.empty_like(u)
    kernels.winograd_weights(g, u3, 3)
    assert np.array_equal(u, u3)


def test_tile_runs_of_every_length(kernels):
    """Both transforms work on runs of tiles in one tile row, VL tiles at a time: output
    widths 1..40 (and some to 72, past 16 + 1 tiles for the widest vectors) give runs of
    every length around the vector width, odd heights clip the last tile row, batch 2
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
        assert_accurate(winograd(kernels, x, g, b, pads), reference(x, g, b, pads))


@pytest.mark.parametrize("shape", [(2, 3, 33, 41, 5), (1, 5, 9, 70, 7), (3, 2, 6, 6, 3)])
def test_nan_reaches_exactly_its_tiles(kernels, shape):
    """A NaN input reaches outputs of the 4x4 tiles whose 6x6 inputs hold it (which ones
    depends on where in the tile it is: B^T's zeros skip it) and no other: the lanes that
    a run's last vector computes past the run (other tiles, or past the block) never
    reach the output."""
    n, c, h, w, co = shape
    rng = np.random.default_rng(31)
    x, g, b = he_layer(rng, n, c, h, w, co)
    pads = (1, 1, 1, 1)
    oh, ow = h, w
    for _ in range(6):
        xn = x.copy()
        i, ci, iy, ix = rng.integers(n), rng.integers(c), rng.integers(h), rng.integers(w)
        xn[i, ci, iy, ix] = np.nan
        y = winograd(kernels, xn, g, b, pads)
        expect = np.zeros(y.shape, bool)
        for ty in range(-(-oh // 4)):
            for tx in range(-(-ow // 4)):
                if 4 * ty - 1 <= iy < 4 * ty + 5 and 4 * tx - 1 <= ix < 4 * tx + 5:
                    expect[i, :, 4 * ty:4 * ty + 4, 4 * tx:4 * tx + 4] = True
        nan = np.isnan(y)
        assert nan.any() and not nan[~expect].any()


@pytest.mark.parametrize("shape", [(2, 64, 20, 21, 64), (1, 256, 9, 11, 40), (3, 128, 7, 7, 24)])
def test_accuracy_realistic_layers(kernels, shape):
    """The documented bound (normwise 1e-5, per element 5e-4 vs float64) on He-initialised
    layers with realistic channel counts, where errors sum over many channels."""
    n, c, h, w, co = shape
    rng = np.random.default_rng(41)
    x, g, b = he_layer(rng, n, c, h, w, co)
    x_before, g_before = x.copy(), g.copy()
    pads = (1, 1, 1, 1)
    y = winograd(kernels, x, g, b, pads)
    assert np.array_equal(x, x_before) and np.array_equal(g, g_before)
    assert_accurate(y, reference(x, g, b, pads))


def test_bad_shapes(kernels):
    x = np.zeros((1, 3, 8, 8), np.float32)
    u = np.zeros((36, 4, 3), np.float32)
    b = np.zeros(4, np.float32)
    with pytest.raises(ValueError):
        kernels.winograd_weights(np.zeros((4, 3, 5, 5), np.float32), u)
    with pytest.raises(ValueError):
        kernels.winograd_conv2d(x, u, np.zeros(5, np.float32), np.zeros((1, 4, 8, 8), np.float32),
                                1, 1, -np.inf, np.inf, 1)
    with pytest.raises(ValueError):
        kernels.winograd_conv2d(x, u, b, np.zeros((1, 4, 8, 8), np.float32), -1, 1, -np.inf, np.inf, 1)


# ---------------------------------------------------------------------------------------
# Through pyconv.functional: algorithm='winograd', the 'auto' choice and the cache
# ---------------------------------------------------------------------------------------

def _he_layer(rng, n, c_in, c_out, h, w):
    x = rng.standard_normal((n, c_in, h, w)).astype(np.float32)
    weight = (rng.standard_normal((c_out, c_in, 3, 3)) * np.sqrt(2 / (9 * c_in))).astype(np.float32)
    return x, weight


@pytest.mark.parametrize("padding", [0, 1, 2, ((1, 2), (0, 1)), "same"])
def test_functional_winograd_accuracy(padding):
    rng = np.random.default_rng(11)
    x, w = _he_layer(rng, 2, 20, 24, 23, 18)
    b = rng.standard_normal(24).astype(np.float32)
    y = F.conv2d(x, w, b, padding=padding, algorithm="winograd")
    ref = F.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), padding=padding)
    assert y.dtype == np.float32 and y.shape == ref.shape
    assert np.linalg.norm(y - ref) / np.linalg.norm(ref) <= 1e-5
    assert np.max(np.abs(y - ref)) <= 5e-4


def test_functional_winograd_rejects_what_it_cannot_do():
    x = np.ones((1, 4, 8, 8), np.float32)
    for kwargs in (dict(stride=2), dict(dilation=2), dict(groups=2)):
        with pytest.raises(ValueError, match="winograd"):
            F.conv2d(x, np.ones((4, 4 // kwargs.get("groups", 1), 3, 3), np.float32),
                     algorithm="winograd", **kwargs)
    with pytest.raises(ValueError, match="winograd"):
        F.conv2d(x.astype(np.float64), np.ones((4, 4, 3, 3)), algorithm="winograd")
    with pytest.raises(ValueError, match="winograd"):
        F.conv2d(x, np.ones((4, 4, 5, 5), np.float32), algorithm="winograd")


def test_auto_picks_winograd_only_where_it_pays(monkeypatch):
    calls = []
    real = F._dispatch.kernels.winograd_conv2d
    monkeypatch.setattr(F._dispatch.kernels, "winograd_conv2d",
                        lambda *a: (calls.append(a[3].shape), real(*a))[1])
    rng = np.random.default_rng(12)
    big_x, w = _he_layer(rng, 1, 16, 16, 48, 48)        # 2304 pixels: pays even uncached
    F.conv2d(big_x, w, padding=1)
    assert calls == [(1, 16, 48, 48)]
    F.conv2d(big_x[:, :, :20, :20], w, padding=1)       # 400 pixels, writable weights: GEMM
    F.conv2d(big_x.astype(np.float64), w, padding=1)    # float64: never
    F.conv2d(big_x, w, padding=1, stride=2)             # strided: never
    F.conv2d(big_x[:, :, :8, :8], w, padding=1)         # 4 tiles: too few
    assert len(calls) == 1
    w.flags.writeable = False                           # read-only: cached transform, pays
    F.conv2d(big_x[:, :, :20, :20], w, padding=1)
    assert len(calls) == 2


def test_transform_cache_follows_the_weights():
    rng = np.random.default_rng(13)
    x, w = _he_layer(rng, 1, 16, 16, 20, 20)
    w.flags.writeable = False
    first = F.conv2d(x, w, padding=1, algorithm="winograd")
    assert F._cache_key(w) in F._WINOGRAD_CACHE
    again = F.conv2d(x, w, padding=1, algorithm="winograd")
    assert again.tobytes() == first.tobytes()
    w2 = np.array(w) * 2                                # new weights (writable): not cached
    doubled = F.conv2d(x, w2, padding=1, algorithm="winograd")
    np.testing.assert_allclose(doubled, 2 * first, rtol=1e-4, atol=1e-4)
    w2.flags.writeable = False
    assert F._cache_key(w2) not in F._WINOGRAD_CACHE
    view = w2[...]                                      # a view of a read-only array: frozen
    assert F._frozen(view)
    writable = np.array(w)
    ro_view = writable.view()
    ro_view.flags.writeable = False                     # but its base can still change
    assert not F._frozen(ro_view)
    F.conv2d(x, ro_view, padding=1, algorithm="winograd")
    assert F._cache_key(ro_view) not in F._WINOGRAD_CACHE
    writable *= 3                                       # ...and the next call sees it
    np.testing.assert_allclose(F.conv2d(x, ro_view, padding=1, algorithm="winograd"),
                               3 * first, rtol=1e-4, atol=1e-4)


def test_transform_cache_holds_a_network_and_evicts_by_bytes(monkeypatch):
    """Every layer of a deep network stays cached (LRU by bytes, not by count), and
    beyond the byte budget the least recently used transform goes first."""
    rng = np.random.default_rng(14)
    monkeypatch.setattr(F, "_WINOGRAD_CACHE", F.collections.OrderedDict())
    x = rng.standard_normal((1, 16, 12, 12)).astype(np.float32)
    weights = []
    for _ in range(12):
        w = (rng.standard_normal((16, 16, 3, 3)) * 0.1).astype(np.float32)
        w.flags.writeable = False
        weights.append(w)
        F.conv2d(x, w, padding=1, algorithm="winograd")
    assert all(F._cache_key(w) in F._WINOGRAD_CACHE for w in weights)
    one = 36 * 16 * 16 * 4
    monkeypatch.setattr(F, "_WINOGRAD_CACHE_BYTES", 3 * one)
    F.conv2d(x, weights[0], padding=1, algorithm="winograd")   # a hit: most recent now
    w = weights[5].copy()
    w.flags.writeable = False
    F.conv2d(x, w, padding=1, algorithm="winograd")            # a miss: evicts down to 3
    assert list(F._WINOGRAD_CACHE) == [F._cache_key(k) for k in (weights[11], weights[0], w)]
