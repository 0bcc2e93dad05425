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
    """Inputs up to twice the weights' size, or windows that do not overlap: GEMM +
    col2im (the path is checked to run)."""
    calls = []
    original = F._conv_transpose_col2im
    monkeypatch.setattr(F, "_conv_transpose_col2im", lambda *a: calls.append(1) or original(*a))
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
    out = np.full((groups * c_out_g, c_in_g, th, tw), np.nan, dtype)
    kernel_set.gather_phase_weights(w, out, groups, u0, du, v0, dv)
    assert np.array_equal(out, expect)


def test_large_input_with_overlapping_windows_takes_the_phases(rng, monkeypatch):
    """4x4/2 windows overlap: with an input far larger than the weights the stride
    phases run, not col2im (which would add 1/C_in of the products again, scattered)."""
    calls = []
    original = F._conv_transpose_col2im
    monkeypatch.setattr(F, "_conv_transpose_col2im", lambda *a: calls.append(1) or original(*a))
    x, w, b = _layer(rng, 1, 32, (24, 24), 16, (4, 4), np.float32)
    assert_close(F.conv_transpose2d(x, w, b, 2, 1), ref.conv_transpose2d(x, w, b, 2, 1))
    assert not calls
