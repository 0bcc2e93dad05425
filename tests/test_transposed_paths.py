"""The algorithm paths of transposed convolution that 'auto' picks by shape, each
against the NumPy reference: the outer-product GEMM (1x1 input, no padding), the
stride-phase GEMM for narrow outputs with many taps, and their near misses."""
import numpy as np
import pytest

import pyconv
import pyconv.functional as F
import reference as ref
from conftest import DTYPES, assert_close, random_array, same_for_any_threads


def _layer(rng, n, c_in, size, c_out, k, dtype):
    x = random_array(rng, (n, c_in) + size, dtype)
    w = random_array(rng, (c_in, c_out) + k, dtype)
    b = random_array(rng, (c_out,), dtype)
    return x, w, b


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, c_in, c_out, k, stride", [
    (8, 100, 19, (4, 4), 1), (1, 3, 1, (1, 1), 1), (3, 7, 5, (3, 5), 2), (2, 33, 9, (7, 2), (3, 1)),
    (5, 1, 30, (2, 3), 4)])
def test_outer_product_path(rng, monkeypatch, dtype, n, c_in, c_out, k, stride):
    """1x1 input, no padding: the single-GEMM path, any stride (it never matters)."""
    calls = []
    original = F._conv_transpose_outer
    monkeypatch.setattr(F, "_conv_transpose_outer", lambda *a: calls.append(1) or original(*a))
    x, w, b = _layer(rng, n, c_in, (1, 1), c_out, k, dtype)
    x0, w0 = x.copy(), w.copy()
    got = F.conv_transpose2d(x, w, b, stride)
    assert got.shape == (n, c_out) + k
    assert_close(got, ref.conv_transpose2d(x, w, b, stride))
    assert_close(F.conv_transpose2d(x, w, None, stride), ref.conv_transpose2d(x, w, None, stride))
    assert len(calls) == 2
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(w, w0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_outer_product_1d_and_unbatched(rng, dtype):
    x = random_array(rng, (4, 6, 1), dtype)
    w = random_array(rng, (6, 3, 5), dtype)
    assert_close(F.conv_transpose1d(x, w, stride=3), ref.conv_transpose1d(x, w, stride=3))
    assert_close(F.conv_transpose1d(x[0], w), ref.conv_transpose1d(x[:1], w)[0])


@pytest.mark.parametrize("kwargs", [
    dict(padding=1), dict(stride=2, output_padding=1), dict(dilation=2), dict(groups=2)])
def test_outer_product_near_misses(rng, kwargs):
    """Padding, output padding, dilation or groups: not an outer product; still right."""
    groups = kwargs.get("groups", 1)
    x, w, _ = _layer(rng, 3, 4, (1, 1), 6 // groups, (3, 3), np.float64)
    b = random_array(rng, (6,), np.float64)
    assert_close(F.conv_transpose2d(x, w, b, **kwargs), ref.conv_transpose2d(x, w, b, **kwargs))


def test_outer_product_fused_clamp_and_nan(rng):
    """The clamp (fused activation of nn/onnx) and NaN: NaN passes the clamp, as in
    every kernel, and reaches only the outputs its input feeds (all of them here)."""
    x, w, b = _layer(rng, 2, 5, (1, 1), 4, (3, 3), np.float32)
    got = F._conv_transpose("conv_transpose2d", 2, x, w, b, 1, 0, 0, 1, 1, None, clamp=(0.0, 6.0))
    assert_close(got, np.clip(ref.conv_transpose2d(x, w, b), 0.0, 6.0))
    x[1, 2] = np.nan
    got = F._conv_transpose("conv_transpose2d", 2, x, w, b, 1, 0, 0, 1, 1, None, clamp=(0.0, 6.0))
    assert np.isnan(got[1]).all() and not np.isnan(got[0]).any()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c_out, k, stride, padding", [(3, (4, 4), 2, 1), (1, (3, 3), 1, 1), (7, (5, 3), (2, 3), (2, 1))])
def test_narrow_output_many_taps(rng, dtype, c_out, k, stride, padding):
    """Fewer than 8 output channels but >= 64 taps per phase: 'auto' takes the GEMM
    phases; the same result as 'direct' and the reference."""
    x, w, b = _layer(rng, 2, 64, (9, 11), c_out, k, dtype)
    expected = ref.conv_transpose2d(x, w, b, stride, padding)
    for algorithm in ("auto", "gemm", "direct"):
        assert_close(F.conv_transpose2d(x, w, b, stride, padding, algorithm=algorithm), expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_narrow_output_phases_with_groups_dilation_and_clamp(rng, dtype):
    """The phases of a narrow layer run on the direct correlation kernel (where their
    padding is not negative): groups, dilation and the fused clamp go through it."""
    x = random_array(rng, (2, 64, 7, 8), dtype)
    w = random_array(rng, (64, 3, 4, 3), dtype)   # 2 groups of 3 output channels
    b = random_array(rng, (6,), dtype)
    args = ((2, 3), (1, 2), (1, 0), 2, (2, 1))     # stride, padding, output_padding, groups, dilation
    expected = ref.conv_transpose2d(x, w, b, *args)
    assert_close(F.conv_transpose2d(x, w, b, *args, algorithm="gemm"), expected)
    got = F._conv_transpose("conv_transpose2d", 2, x, w, b, *args, None, clamp=(-1.0, 1.0),
                            algorithm="gemm")
    assert_close(got, np.clip(expected, -1.0, 1.0))


@pytest.mark.parametrize("shape", [((8, 100, 1, 1), (100, 19, 4, 4), 1, 0), ((2, 64, 9, 11), (64, 3, 4, 4), 2, 1)])
def test_threads_bitwise(rng, shape):
    xs, ws, stride, padding = shape
    x = random_array(rng, xs, np.float32)
    w = random_array(rng, ws, np.float32)
    same_for_any_threads(lambda t: F.conv_transpose2d(x, w, None, stride, padding))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, c_in, size, c_out, k, stride, padding, output_padding, dilation", [
    (8, 40, (4, 4), 9, (4, 4), 2, 1, 0, 1),        # a DCGAN-like up-convolution
    (2, 40, (3, 5), 7, (3, 3), 1, 1, 0, 1),        # overlapping patches, stride 1
    (3, 32, (2, 3), 5, (5, 4), (3, 2), (2, 1), (1, 0), (1, 2)),  # strides, pads, dilation
    (1, 50, (7, 7), 16, (2, 2), 2, 0, 0, 1),       # U-Net-like: patches that do not overlap
    (2, 32, (1, 6), 3, (1, 7), (1, 3), (0, 2), 0, 1),  # a 1-D-like row
    (2, 64, (2, 2), 4, (9, 9), 4, 6, 3, 1),        # padding that crops most of each patch
    (1, 32, (30, 29), 16, (2, 2), 2, 0, 0, 1),     # windows apart, input 28x the weights
    (2, 32, (9, 11), 8, (2, 3), (4, 5), (1, 0), (2, 0), (2, 2)),  # apart by dilation
])
def test_col2im_path(rng, monkeypatch, dtype, n, c_in, size, c_out, k, stride, padding,
                     output_padding, dilation):
    """GEMM + col2im, in both of its GEMM orientations (the path is made to run; when
    'auto' takes it is test_col2im_or_phases)."""
    calls = []
    original = F._conv_transpose_col2im
    monkeypatch.setattr(F, "_conv_transpose_col2im", lambda *a: calls.append(1) or original(*a))
    monkeypatch.setattr(F, "_col2im_pays", lambda *a: True)
    x, w, b = _layer(rng, n, c_in, size, c_out, k, dtype)
    args = (stride, padding, output_padding, 1, dilation)
    expected = ref.conv_transpose2d(x, w, b, *args)
    assert_close(F.conv_transpose2d(x, w, b, *args), expected)
    assert calls, "the col2im path did not run"
    assert_close(F.conv_transpose2d(x, w, b, *args, algorithm="direct"), expected)
    got = F._conv_transpose("conv_transpose2d", 2, x, w, b, stride, padding, output_padding, 1,
                            dilation, None, clamp=(-0.5, 0.5))
    assert_close(got, np.clip(expected, -0.5, 0.5))
    # Read-only weights: their transpose is cached, and the GEMM is W^T X (planes per
    # tap) whichever operand is smaller -- the other formulation than above for most.
    w.flags.writeable = False
    assert_close(F.conv_transpose2d(x, w, b, *args), expected)
    got = F._conv_transpose("conv_transpose2d", 2, x, w, b, stride, padding, output_padding, 1,
                            dilation, None, clamp=(-0.5, 0.5))
    assert_close(got, np.clip(expected, -0.5, 0.5))
    assert len(calls) == 4


@pytest.mark.parametrize("n, c_in, size, c_out, k, stride, dilation, col2im", [
    (8, 40, (4, 4), 9, (4, 4), 2, 1, (True, True)),         # overlapping, x <= 2 w
    (8, 40, (9, 9), 17, (4, 4), 2, 1, (False, False)),      # overlapping, x > 2 w
    (8, 40, (7, 7), 9, (4, 4), 2, 1, (True, True)),         # ... but few output channels
    (2, 40, (12, 12), 3, (4, 4), 2, 1, (True, True)),       # a generator's RGB layer
    (1, 64, (7, 7), 16, (2, 2), 2, 1, (True, False)),       # apart, x <= w: not read-only
    (1, 64, (9, 9), 16, (2, 2), 2, 1, (False, False)),      # apart, w < x <= 2 w
    (2, 32, (9, 11), 8, (2, 3), (4, 5), (2, 2), (False, False)),  # apart by dilation
    (8, 31, (4, 4), 9, (4, 4), 2, 1, (False, False)),       # too few input channels
])
def test_col2im_or_phases(rng, monkeypatch, n, c_in, size, c_out, k, stride, dilation, col2im):
    """Which path 'auto' takes (writable weights, then read-only), and that it is right."""
    calls = []
    original = F._conv_transpose_col2im
    monkeypatch.setattr(F, "_conv_transpose_col2im", lambda *a: calls.append(1) or original(*a))
    x, w, b = _layer(rng, n, c_in, size, c_out, k, np.float32)
    expected = ref.conv_transpose2d(x, w, b, stride, 1, 0, 1, dilation)
    for read_only, takes_col2im in zip((False, True), col2im):
        w.flags.writeable = not read_only
        calls.clear()
        assert_close(F.conv_transpose2d(x, w, b, stride, 1, 0, 1, dilation), expected)
        assert bool(calls) == takes_col2im, f"read_only={read_only}"


@pytest.mark.parametrize("read_only", [False, True])   # cols = X^T W, then W^T X
def test_col2im_threads_bitwise_and_nan(rng, read_only):
    x, w, b = _layer(rng, 4, 48, (5, 6), 6, (4, 4), np.float32)
    w.flags.writeable = not read_only
    x[1, 3, 2, 4] = np.nan
    nan = np.isnan(same_for_any_threads(lambda t: F.conv_transpose2d(x, w, b, 2, 1)))
    # The NaN reaches exactly the outputs its pixel's patch covers, in every channel.
    expected = np.zeros(nan.shape, bool)
    expected[1, :, 2 * 2 - 1:2 * 2 + 3, 2 * 4 - 1:2 * 4 + 3] = True
    np.testing.assert_array_equal(nan, expected)


def test_col2im_kernel_checks_shapes():
    y = np.zeros((1, 2, 3, 3))
    with pytest.raises(ValueError, match="cols must be"):
        pyconv._conv.col2im_add(np.zeros((1, 5, 2, 2)), y, 1, 1, 1, 1, 0, 0, 1, 1, -np.inf, np.inf, 1)
    with pytest.raises(ValueError, match="must be >= 1"):
        pyconv._conv.col2im_add(np.zeros((1, 2, 2, 2)), y, 1, 1, 0, 1, 0, 0, 1, 1, -np.inf, np.inf, 1)
    with pytest.raises(ValueError, match="cols must be"):
        pyconv._conv.col2im_add_pixels(np.zeros((4, 5)), y, 2, 2, 1, 1, 1, 1, 0, 0, 1, 1, -np.inf, np.inf, 1)
    with pytest.raises(ValueError, match="must be >= 1"):
        pyconv._conv.col2im_add_pixels(np.zeros((4, 2)), y, 2, 2, 1, 1, 0, 1, 0, 0, 1, 1, -np.inf, np.inf, 1)


def test_col2im_caches_the_transposed_weights_of_read_only_weights(rng):
    x, w, b = _layer(rng, 2, 48, (4, 5), 6, (4, 4), np.float32)
    expected = ref.conv_transpose2d(x, w, b, 2, 1)
    assert_close(F.conv_transpose2d(x, w, b, 2, 1), expected)
    assert F._cache_key(w, "T") not in F._TRANSFORM_CACHE       # writable: never cached
    w.flags.writeable = False
    for _ in range(2):
        assert_close(F.conv_transpose2d(x, w, b, 2, 1), expected)
        assert F._TRANSFORM_CACHE[F._cache_key(w, "T")][1].shape == (6 * 16, 48, 1, 1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c_all, c_out_g, groups, k, taps", [
    (70, 45, 1, (5, 4), ((4, -2), (3, -2))),    # blocks of 32 cut at 70 and 45
    (70, 33, 2, (3, 3), ((0, 2), (2, -1))),     # 35 input channels per group: 32 + 3
    (96, 64, 3, (2, 2), ((1, 1), (0, 1))),      # 32 per group: one block each
    (1024, 64, 1, (2, 2), ((1, 1), (1, 1))),    # U-Net's 2x2/2: one tap per phase
    (5, 1, 5, (4, 4), ((3, -2), (1, -1))),      # depthwise
])
def test_gather_phase_weights_matches_numpy(kernel_set, dtype, c_all, c_out_g, groups, k, taps):
    """One phase's weights, gathered in blocks of 32 x 32 channels, equal NumPy's fancy
    indexing with the transpose: out[g*C_out_g + o, c, j, l] = w[g*C_in_g + c, o, u, v]."""
    rng = np.random.default_rng(c_all + c_out_g)
    kh, kw = k
    (u0, du), (v0, dv) = taps
    th = len(range(u0, -1 if du < 0 else kh, du))
    tw = len(range(v0, -1 if dv < 0 else kw, dv))
    w = rng.standard_normal((c_all, c_out_g, kh, kw)).astype(dtype)
    c_in_g = c_all // groups
    rows, cols = u0 + du * np.arange(th), v0 + dv * np.arange(tw)
    expect = (w[:, :, rows][:, :, :, cols].reshape(groups, c_in_g, c_out_g, th, tw)
              .transpose(0, 2, 1, 3, 4).reshape(groups * c_out_g, c_in_g, th, tw))
    for threads in (1, 2, 3):   # units of 32 input channels, split among the threads
        out = np.full((groups * c_out_g, c_in_g, th, tw), np.nan, dtype)
        kernel_set.gather_phase_weights(w, out, groups, u0, du, v0, dv, threads)
        assert np.array_equal(out, expect)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, c, out_hw, stride", [
    (2, 3, (7, 9), (2, 2)), (1, 5, (8, 6), (2, 3)), (3, 1, (5, 4), (3, 1)),
    (1, 2, (1, 3), (2, 4)),         # fewer output rows (and columns) than the stride
    (2, 4, (6, 6), (1, 1)),
])
def test_interleave_phases_matches_numpy(dtype, n, c, out_hw, stride):
    """Phases of uneven sizes, one after another in a flat buffer, woven into y the way
    NumPy's strided slices y[:, :, rh::sh, rw::sw] place them, on any thread count."""
    rng = np.random.default_rng(n * 100 + c)
    (oh, ow), (sh, sw) = out_hw, stride
    expect = rng.standard_normal((n, c) + out_hw).astype(dtype)
    chunks, offsets, start = [], np.full(sh * sw, -1, np.intp), 7   # a gap before phase 0
    chunks.append(np.full(start, np.nan, dtype))
    for rh in range(min(sh, oh)):
        for rw in range(min(sw, ow)):
            offsets[rh * sw + rw] = start
            chunks.append(expect[:, :, rh::sh, rw::sw].ravel())
            start += chunks[-1].size
    phases = np.concatenate(chunks)
    for threads in (1, 2, 3):
        y = np.full(expect.shape, np.nan, dtype)
        pyconv._conv.interleave_phases(phases, offsets, y, sh, sw, threads)
        np.testing.assert_array_equal(y, expect)
    with pytest.raises(ValueError, match="outside phases"):
        pyconv._conv.interleave_phases(phases[:-1], offsets, y, sh, sw, 1)
    with pytest.raises(ValueError, match="an offset per phase"):
        pyconv._conv.interleave_phases(phases, offsets[:-1], y, sh, sw, 1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_phases_cache_the_gathered_weights_of_read_only_weights(rng, monkeypatch, dtype):
    """Read-only weights: the phases' weights are gathered once (per stride, padding,
    dilation, groups and the phases the output has), then taken from the cache --
    also for an output smaller than the stride, which has fewer phases."""
    gathered = []
    original = F._gather_phases
    monkeypatch.setattr(F, "_gather_phases", lambda *a: gathered.append(1) or original(*a))
    monkeypatch.setattr(F, "_col2im_pays", lambda *a: False)   # small inputs: phases all the same
    x, w, b = _layer(rng, 2, 40, (9, 7), 12, (4, 3), dtype)
    args = ((2, 3), (1, 1), (1, 0), 1, 1)
    expected = ref.conv_transpose2d(x, w, b, *args)
    assert_close(F.conv_transpose2d(x, w, b, *args, algorithm="gemm"), expected)
    w.flags.writeable = False
    first = F.conv_transpose2d(x, w, b, *args, algorithm="gemm")
    assert_close(first, expected)
    np.testing.assert_array_equal(F.conv_transpose2d(x, w, b, *args, algorithm="gemm"), first)
    assert len(gathered) == 2                       # writable: per call; read-only: once
    x1 = x[:, :, :1, :1]                            # a 3x1 output: phases (0..1, 0) only
    for _ in range(2):
        assert_close(F.conv_transpose2d(x1, w, b, *args, algorithm="gemm"),
                     ref.conv_transpose2d(x1, w, b, *args))
    assert len(gathered) == 3


def test_large_input_with_overlapping_windows_takes_the_phases(rng, monkeypatch):
    """4x4/2 windows overlap: with an input far larger than the weights the stride
    phases run, not col2im (which would add 1/C_in of the products again, scattered)."""
    calls = []
    original = F._conv_transpose_col2im
    monkeypatch.setattr(F, "_conv_transpose_col2im", lambda *a: calls.append(1) or original(*a))
    x, w, b = _layer(rng, 1, 32, (24, 24), 16, (4, 4), np.float32)
    assert_close(F.conv_transpose2d(x, w, b, 2, 1), ref.conv_transpose2d(x, w, b, 2, 1))
    assert not calls


def _col2im_in_order(planes, y, kh, kw, sh, sw, ph, pw, dh, dw, taps_first):
    """col2im's adds one term at a time, in planes' dtype: per output, its terms by tap
    (u, v) then input pixel (taps_first: col2im_add's order) or by pixel then tap
    (col2im_add_pixels'); the bits each kernel must give."""
    y = y.copy()
    n, c, oh, ow = y.shape
    h, wd = planes.shape[2:]
    taps = planes.reshape(n, c, kh, kw, h, wd)
    order = [(u, v, ih, iw) for u in range(kh) for v in range(kw) for ih in range(h)
             for iw in range(wd)]
    if not taps_first:
        order.sort(key=lambda t: (t[2], t[3], t[0], t[1]))
    for u, v, ih, iw in order:
        oy, ox = ih * sh - ph + u * dh, iw * sw - pw + v * dw
        if 0 <= oy < oh and 0 <= ox < ow:
            y[:, :, oy, ox] += taps[:, :, u, v, ih, iw]
    return y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kh, kw, sh, sw, ph, pw, dh, dw, extra", [
    (4, 4, 2, 2, 1, 1, 1, 1, 0),     # DCGAN's 4x4/2: the interleaved tap pairs
    (3, 5, 2, 2, 0, 2, 1, 1, 1),     # an odd tap left after the pairs, output padding
    (2, 3, 1, 2, 1, 0, 2, 1, 1),     # row dilation
    (3, 3, 2, 2, 2, 2, 1, 2, 0),     # column dilation: the scalar path
    (2, 2, 3, 3, 0, 1, 1, 1, 2),     # stride 3
    (3, 4, 1, 1, 1, 2, 1, 1, 0)])    # stride 1: whole rows
def test_col2im_kernels_bitwise_in_order(rng, dtype, kh, kw, sh, sw, ph, pw, dh, dw, extra):
    """Both col2im kernels (cols by tap plane, W^T X; by pixel, X^T W) against the adds
    one at a time: bitwise, NaN where NaN, any thread count."""
    from pyconv import _conv
    n, c, h, wd = 2, 3, 5, 7
    oh = (h - 1) * sh - 2 * ph + dh * (kh - 1) + 1 + extra
    ow = (wd - 1) * sw - 2 * pw + dw * (kw - 1) + 1 + extra
    y0 = random_array(rng, (n, c, oh, ow), dtype)
    planes = random_array(rng, (n, c * kh * kw, h, wd), dtype)
    planes[1, 4, 2, 3] = np.nan
    pixels = np.ascontiguousarray(planes.reshape(n, c * kh * kw, h * wd).transpose(0, 2, 1)
                                  ).reshape(n * h * wd, c * kh * kw)
    args = (kh, kw, sh, sw, ph, pw, dh, dw, -np.inf, np.inf)

    def by_planes(t):
        y = y0.copy()
        _conv.col2im_add(planes, y, *args, t)
        return y

    def by_pixels(t):
        y = y0.copy()
        _conv.col2im_add_pixels(pixels, y, h, wd, *args, t)
        return y
    for run, taps_first in ((by_planes, True), (by_pixels, False)):
        expected = _col2im_in_order(planes, y0, *args[:8], taps_first)
        np.testing.assert_array_equal(same_for_any_threads(run), expected)
