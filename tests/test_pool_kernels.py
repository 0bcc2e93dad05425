"""The pooling kernels' own paths (pyconv/_pooling.pxi, compiled into every kernel set:
the tests below run on each one this CPU has, the `kernel_set` fixture), against
tests/reference.py.

The kernels pool each input row along the row, then fold the window's rows; they
choose between a "flat" path (whole chunks of rows pooled by one fold, when
W % sw == 0 and OW <= W / sw), a "deep" one (stride-1 rows folded as one run) and a
ring of single rows (every other width); interior columns are folded, edge columns
checked tap by tap; rows without NaN take MAXPS folds, the others an exact select.
The shapes below are chosen to land on each of them: widths 1..70 (not multiples of
any vector width), every stride 1..4 with kernels 1..7, dilations 1..3, ceil-mode
overhangs, heights spanning several flat chunks.
"""

import itertools

import numpy as np
import pytest

import pyconv
import pyconv.functional as F
import reference as ref
from conftest import DTYPES, assert_close, same_for_any_threads
from pyconv import _dispatch

UINT = {np.dtype(np.float32): np.uint32, np.dtype(np.float64): np.uint64}


def _bits(a):
    return np.ascontiguousarray(a).view(UINT[a.dtype])


def _check_max(x, *args, **kwargs):
    """pyconv's max pool with indices equals the reference bit for bit, its values
    are the input elements its indices point at, and asking for the indices
    changes no value."""
    y, idx = F.max_pool2d(x, *args, return_indices=True, **kwargs)
    ry, ridx = ref.max_pool2d(x, *args, return_indices=True, **kwargs)
    np.testing.assert_array_equal(idx, ridx)
    np.testing.assert_array_equal(y, ry.astype(x.dtype))
    planes = x.reshape(-1, x.shape[-2] * x.shape[-1])
    flat = idx.reshape(planes.shape[0], -1)
    picked = np.where(flat >= 0, np.take_along_axis(planes, np.maximum(flat, 0), 1), 0)
    np.testing.assert_array_equal(_bits(y.reshape(flat.shape)), _bits(picked.astype(x.dtype)))
    np.testing.assert_array_equal(_bits(F.max_pool2d(x, *args, **kwargs)), _bits(y))


@pytest.mark.parametrize("stride", [1, 2, 3, 4])
@pytest.mark.parametrize("kernel", [1, 2, 3, 4, 5, 6, 7])
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_stride_kernel_dilation(kernel_set, stride, kernel, dtype):
    rng = np.random.default_rng(1000 * stride + kernel)
    for dilation, ceil_mode in itertools.product([1, 2, 3], [False, True]):
        width = int(rng.integers(1, 71))
        height = int(rng.integers(1, 9))
        extent = dilation * (kernel - 1) + 1
        pad = int(rng.integers(0, kernel // 2 + 1))
        if width + 2 * pad < extent or height + 2 * pad < extent:
            width, height = extent, extent
        x = rng.standard_normal((2, 1, height, width)).astype(dtype)
        args = (kernel, stride, pad, dilation, ceil_mode)
        _check_max(x, *args)
        assert_close(F.avg_pool2d(x, kernel, stride, pad, ceil_mode, dilation=dilation),
                     ref.avg_pool2d(x, kernel, stride, pad, ceil_mode, dilation=dilation), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel, stride, padding, ceil_mode", [
    ((3, 3), (2, 2), (1, 1), False),   # ResNet stem
    ((3, 3), (2, 2), (0, 0), True),    # GoogLeNet: ceil-mode overhang on the right
    ((2, 2), (2, 2), (0, 0), False),   # VGG
    ((3, 3), (1, 1), (1, 1), False),   # Inception avg: the deep path
    ((1, 4), (1, 3), (0, 2), True),
])
def test_widths_1_to_70(kernel_set, dtype, kernel, stride, padding, ceil_mode):
    rng = np.random.default_rng(7)
    for width in range(1, 71):
        if width + 2 * padding[1] < kernel[1]:
            continue
        x = rng.standard_normal((1, 2, 5, width)).astype(dtype)
        _check_max(x, kernel, stride, padding, 1, ceil_mode)
        for cip in (True, False):
            assert_close(F.avg_pool2d(x, kernel, stride, padding, ceil_mode, cip),
                         ref.avg_pool2d(x, kernel, stride, padding, ceil_mode, cip), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("height, width, stride", [(150, 64, 1), (150, 64, 2), (97, 30, 3),
                                                   (131, 33, 2)])
def test_tall_planes_span_several_chunks(kernel_set, dtype, height, width, stride):
    """Chunk boundaries (a flat chunk holds about 4096 inputs) and ring wrap-around."""
    rng = np.random.default_rng(height + width)
    x = rng.integers(-3, 4, (1, 1, height, width)).astype(dtype)  # many ties
    for dilation in (1, 2):
        _check_max(x, 3, stride, 1, dilation, True)
        assert_close(F.avg_pool2d(x, 3, stride, 1, True, False, dilation=dilation),
                     ref.avg_pool2d(x, 3, stride, 1, True, False, dilation=dilation), dtype)
        assert_close(F.avg_pool2d(x, (4, 2), stride, (2, 1), False, True, 5, dilation=dilation),
                     ref.avg_pool2d(x, (4, 2), stride, (2, 1), False, True, 5, dilation=dilation),
                     dtype)


def _nan(dtype, payload):
    """A quiet NaN whose mantissa carries ``payload``: which NaN won is visible."""
    bits = {np.dtype(np.float32): 0x7FC00000, np.dtype(np.float64): 0x7FF8000000000000}
    return np.array(bits[np.dtype(dtype)] + payload, UINT[np.dtype(dtype)]).view(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_nan_placement_last_nan_wins(kernel_set, dtype, stride):
    """NaN first or last in its window, several NaNs with distinct payloads, inf and
    -inf around them: the value is the last NaN of the window in row-major order
    (its payload), the index points at it; other windows of the same rows -- folded
    exactly once a NaN is seen -- are unchanged."""
    rng = np.random.default_rng(stride)
    base = rng.integers(-2, 3, (1, 1, 9, 23)).astype(dtype)
    base[0, 0, 1, 5] = np.inf
    base[0, 0, 4, 7] = -np.inf
    clean = F.max_pool2d(base, 3, stride, 1, 1, True)
    for spots in [[(0, 0)], [(2, 2)], [(0, 0), (2, 2)], [(3, 4), (3, 5), (4, 4)],
                  [(8, 22)], [(4, 9), (5, 8), (5, 10), (6, 9)]]:
        x = base.copy()
        for payload, (i, j) in enumerate(spots, start=1):
            x[0, 0, i, j] = _nan(dtype, payload)
        _check_max(x, 3, stride, 1, 1, True)
        y = F.max_pool2d(x, 3, stride, 1, 1, True)
        hit = np.isnan(y)
        assert hit.any()
        np.testing.assert_array_equal(_bits(y[~hit]), _bits(clean[~hit]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_signed_zero_ties_keep_the_first(kernel_set, dtype):
    """0.0 and -0.0 are equal: the first in row-major order wins, with or without a
    NaN elsewhere in the plane (the MAXPS fold and the exact one agree bit for bit)."""
    rng = np.random.default_rng(3)
    x = np.where(rng.random((2, 3, 12, 37)) < 0.5, 0.0, -0.0).astype(dtype)
    for kernel, stride in [(2, 2), (3, 2), (3, 1), ((2, 5), (1, 3))]:
        _check_max(x, kernel, stride)
        y = F.max_pool2d(x, kernel, stride)
        with_nan = x.copy()
        with_nan[:, :, -1, -1] = np.nan
        y2 = F.max_pool2d(with_nan, kernel, stride)
        keep = ~np.isnan(y2)
        np.testing.assert_array_equal(_bits(y2[keep]), _bits(y[keep]))
        assert (np.signbit(y) != np.signbit(y.flat[0])).any() or y.size == 1


@pytest.mark.parametrize("dtype", DTYPES)
def test_windows_of_minus_inf_and_of_padding_only(kernel_set, dtype):
    x = np.full((1, 1, 4, 6), -np.inf, dtype)
    y, idx = F.max_pool2d(x, 3, 2, 1, return_indices=True)
    assert np.all(y == -np.inf)
    np.testing.assert_array_equal(idx, ref.max_pool2d(x, 3, 2, 1, return_indices=True)[1])
    # padding 3 with kernel 2 dilation 1: the first and last windows see padding only
    x = np.ones((1, 1, 2, 2), dtype)
    y, idx = F.max_pool2d(x, 2, 1, 3, return_indices=True)
    ry, ridx = ref.max_pool2d(x, 2, 1, 3, return_indices=True)
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_array_equal(idx, ridx)
    assert (idx == -1).any() and (y == 0).any()
    assert_close(F.avg_pool2d(x, 2, 1, 3, count_include_pad=False),
                 ref.avg_pool2d(x, 2, 1, 3, count_include_pad=False), dtype)


def _out(n, k, s, pb, pe, d):
    return (n + pb + pe - d * (k - 1) - 1) // s + 1


@pytest.mark.parametrize("dtype", DTYPES)
def test_threads_1_2_3_bitwise_equal(kernel_set, dtype):
    """Each output element is owned by one work unit: any thread count, same bits
    (per-thread scratch, rings and chunks are private)."""
    rng = np.random.default_rng(11)
    cases = [(5, 112, 112, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1),
             (7, 35, 35, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1),
             (3, 41, 29, 3, 2, 2, 3, 1, 0, 2, 1, 2, 2),
             (4, 60, 70, 4, 5, 3, 2, 2, 2, 1, 2, 3, 1),
             (2, 1, 67, 1, 5, 1, 2, 0, 2, 1, 1, 0, 3)]
    for planes, h, w, kh, kw, sh, sw, ph, pw, dh, dw, phe, pwe in cases:
        x = rng.standard_normal((planes, h, w)).astype(dtype)
        x[0, h // 2, w // 3] = np.nan
        oh, ow = _out(h, kh, sh, ph, phe, dh), _out(w, kw, sw, pw, pwe, dw)
        results = []
        for threads in (1, 2, 3):
            y = np.empty((planes, oh, ow), dtype)
            yi = np.empty((planes, oh, ow), dtype)
            idx = np.empty((planes, oh, ow), np.int64)
            ya = np.empty((planes, oh, ow), dtype)
            _dispatch.kernels.max_pool2d_forward(x, y, None, kh, kw, sh, sw, ph, pw, dh, dw, threads)
            _dispatch.kernels.max_pool2d_forward(x, yi, idx, kh, kw, sh, sw, ph, pw, dh, dw, threads)
            _dispatch.kernels.avg_pool2d_forward(x, ya, kh, kw, sh, sw, ph, pw, phe, pwe, dh, dw,
                                     True, 0, threads)
            np.testing.assert_array_equal(_bits(y), _bits(yi))
            results.append((_bits(y).copy(), idx, _bits(ya).copy()))
        for other in results[1:]:
            for a, b in zip(results[0], other):
                np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_kernel_entry_matches_reference_with_asymmetric_pads(kernel_set, dtype):
    """The kernel entries themselves, trailing pads unlike the leading ones."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 13, 22)).astype(dtype)
    for (kh, kw, sh, sw, ph, pw, phe, pwe, dh, dw) in [(3, 3, 2, 2, 0, 1, 2, 0, 1, 1),
                                                       (2, 4, 1, 3, 1, 0, 0, 3, 2, 1),
                                                       (5, 1, 3, 1, 2, 0, 4, 0, 1, 1)]:
        oh, ow = _out(13, kh, sh, ph, phe, dh), _out(22, kw, sw, pw, pwe, dw)
        for cip, dov in [(True, 0), (False, 0), (True, 7)]:
            y = np.empty((3, oh, ow), dtype)
            _dispatch.kernels.avg_pool2d_forward(x, y, kh, kw, sh, sw, ph, pw, phe, pwe, dh, dw, cip, dov, 2)
            expected = np.zeros((3, oh, ow))
            xp = np.zeros((3, 13 + ph + phe + kh * dh, 22 + pw + pwe + kw * dw))
            xp[:, ph:ph + 13, pw:pw + 22] = x
            real = np.zeros(xp.shape[1:])
            real[ph:ph + 13, pw:pw + 22] = 1
            padded = np.zeros(xp.shape[1:])
            padded[:13 + ph + phe, :22 + pw + pwe] = 1
            for i, j in itertools.product(range(oh), range(ow)):
                rows = i * sh + dh * np.arange(kh)
                cols = j * sw + dw * np.arange(kw)
                window = np.ix_(rows, cols)
                count = dov or (padded if cip else real)[window].sum()
                expected[:, i, j] = xp[(slice(None),) + window].sum(axis=(1, 2)) / count if count else 0
            assert_close(y, expected, dtype)


def test_input_is_not_modified_and_read_only_input_works():
    x = np.random.default_rng(0).standard_normal((2, 3, 17, 31)).astype(np.float32)
    x[0, 0, 3, 3] = np.nan
    keep = x.copy()
    x.setflags(write=False)
    F.max_pool2d(x, 3, 2, 1, return_indices=True)
    F.avg_pool2d(x, 3, 1, 1)
    np.testing.assert_array_equal(_bits(x), _bits(keep))


@pytest.mark.parametrize("n", [1, 2, 3])
def test_through_the_public_api_on_n_threads(n):
    x = np.random.default_rng(n).standard_normal((2, 8, 30, 30)).astype(np.float64)
    with pyconv.num_threads(n):
        y, idx = F.max_pool2d(x, 3, 2, 1, ceil_mode=True, return_indices=True)
        a = F.avg_pool2d(x, 3, 1, 1)
    with pyconv.num_threads(1):
        y1, idx1 = F.max_pool2d(x, 3, 2, 1, ceil_mode=True, return_indices=True)
        a1 = F.avg_pool2d(x, 3, 1, 1)
    np.testing.assert_array_equal(idx, idx1)
    np.testing.assert_array_equal(_bits(y), _bits(y1))
    np.testing.assert_array_equal(_bits(a), _bits(a1))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (3, 130, 7, 5), (2, 64, 1, 33), (1, 200, 13, 1)])
def test_global_average_pooling(kernel_set, dtype, shape):
    """Output 1x1 (global average, planes in blocks of 64): the mean of each plane, the
    same for any thread count; NaN stays in its plane."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal(shape).astype(dtype)
    x.reshape(-1, shape[2] * shape[3])[-1, 0] = np.nan
    y = same_for_any_threads(lambda t: F.adaptive_avg_pool2d(x, 1))
    expected = x.astype(np.float64).mean(axis=(2, 3), keepdims=True)
    assert_close(y, expected, dtype)
    assert np.isnan(y.reshape(-1)[-1]) and not np.isnan(y.reshape(-1)[:-1]).any()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel, stride", [(1, 1), (2, 2), (3, 2), (3, 1), (2, 1), (4, 3), (5, 2),
                                            ((2, 5), (1, 2)), ((3, 3), (2, 3))])
def test_fast_max_pool_matches_the_general_kernel(kernel_set, dtype, kernel, stride):
    """The kernel sets' max pool without indices (_maxpool.pxi: vectors over the row
    interior, masked loads at its end, scalar edges) gives the general kernel's values
    bit for bit -- NaN (anywhere in a window) and signed-zero ties included -- for
    widths 1..37 (every vector remainder; AVX-512's float32 at column stride 2, widths
    to 71: every remainder of two of its 16-lane vectors), pads up to half the kernel, an
    extra (ceil-mode) output row and column, and 1, 2 or 3 threads. Where W == OW*sw
    the rows pool as one long row."""
    (kh, kw), (sh, sw) = np.broadcast_to(kernel, 2), np.broadcast_to(stride, 2)
    rng = np.random.default_rng(kh * 10 + kw + sh)
    widest = 71 if kernel_set.KERNEL_SET == "avx512" and sw == 2 and dtype == np.float32 else 37
    for width in range(max(kw, 1), widest + 1):
        height = 3 + width % 7 + kh
        x = rng.standard_normal((3, height, width)).astype(dtype)
        x[0][rng.random((height, width)) < 0.1] = np.nan
        x[1] = np.where(rng.random((height, width)) < 0.5, 0.0, -0.0)
        for ph, pw, extra in [(0, 0, 0), (0, 0, 1), (kh // 2, kw // 2, 1)]:
            oh = (height + 2 * ph - kh) // sh + 1 + extra
            ow = (width + 2 * pw - kw) // sw + 1 + extra
            expect = np.empty((3, oh, ow), dtype)
            _dispatch.kernels.max_pool2d_forward(x, expect, None, kh, kw, sh, sw, ph, pw, 1, 1, 1)
            for threads in (1, 2, 3):
                got = np.full((3, oh, ow), 7, dtype)
                kernel_set.max_pool2d_fast(x, got, kh, kw, sh, sw, ph, pw, threads)
                np.testing.assert_array_equal(_bits(got), _bits(expect),
                                              err_msg=f"width {width} pads {ph, pw} threads {threads}")


def test_fast_max_pool_checks_its_arguments(kernel_set):
    x = np.zeros((2, 4, 4), np.float32)
    with pytest.raises(ValueError, match="planes"):
        kernel_set.max_pool2d_fast(x, np.zeros((3, 2, 2), np.float32), 2, 2, 2, 2, 0, 0, 1)
    with pytest.raises(ValueError, match="must be >= 1"):
        kernel_set.max_pool2d_fast(x, np.zeros((2, 2, 2), np.float32), 2, 0, 2, 2, 0, 0, 1)
    with pytest.raises(ValueError, match="empty planes"):
        kernel_set.max_pool2d_fast(np.zeros((2, 0, 4), np.float32), np.zeros((2, 2, 2), np.float32),
                                   2, 2, 2, 2, 0, 0, 1)
