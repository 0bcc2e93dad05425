"""The direct correlation kernel of every kernel set (_direct.pxi, _direct.h): the fast
path for layers with fewer than 8 output channels per group (depthwise above all).

Compared with tests/reference.py on shapes chosen to hit every edge of its blocking:
widths that are not multiples of any vector width (one vector, two, a partial last
one, a single column), the 3x3 stride-1/stride-2 register tile and the generic tile
(1x1, 5x5, 7x7, 1x7, even kernels, dilation, stride 3, mixed strides), asymmetric
padding, channel multipliers and groups of several input channels, input-channel
blocks (a wide group whose band does not fit the budget), several row chunks per
unit, batches. Also: 1, 2 and 3 threads give bitwise the same result, NaN and inf
propagate as in the reference, the fused clamp, inputs are never modified, and the
packing never reads outside the input array (arrays flush against a PROT_NONE page).
"""
import ctypes
import mmap
import sys

import numpy as np
import pytest

import pyconv
import pyconv.functional as F
import reference
from conftest import assert_close, same_for_any_threads

DTYPES = (np.float32, np.float64)


# (n, c_in, h, w, c_out, groups, (kh, kw), stride, padding, dilation, bias)
CASES = [
    # depthwise 3x3, stride 1: the 3x3 register tile
    (1, 5, 7, 7, 5, 5, (3, 3), 1, 1, 1, True),                    # 7 columns: one partial vector
    (2, 3, 15, 18, 3, 3, (3, 3), 1, ((0, 2), (3, 1)), 1, True),   # asymmetric pads, batch
    (1, 2, 9, 70, 2, 2, (3, 3), 1, 0, 1, False),                  # wide rows, no padding
    (1, 4, 6, 1, 4, 4, (3, 3), 1, 1, 1, True),                    # a single column
    # depthwise 3x3, stride 2: the stride-phase packing and the 3x3 tile
    (1, 3, 14, 13, 3, 3, (3, 3), 2, 1, 1, True),
    (3, 2, 9, 1, 2, 2, (3, 3), 2, 1, 1, True),                    # width 1, batch 3
    (1, 2, 23, 45, 2, 2, (3, 3), 2, ((2, 0), (0, 3)), 1, False),
    # other strides, dilations and kernels: the generic tile
    (1, 3, 20, 31, 3, 3, (3, 3), 3, 1, 1, True),
    (1, 2, 17, 19, 2, 2, (3, 3), 1, 2, 2, True),                  # dilation 2
    (1, 2, 16, 29, 2, 2, (3, 3), (2, 1), 1, (1, 2), True),        # mixed strides and dilations
    (1, 2, 12, 37, 2, 2, (5, 5), 1, 2, 1, True),
    (1, 2, 15, 70, 2, 2, (7, 7), 2, 3, 1, False),
    (1, 3, 6, 33, 3, 3, (1, 1), 1, 0, 1, True),
    (1, 2, 5, 41, 2, 2, (1, 7), 1, ((0, 0), (3, 3)), 1, True),
    (2, 2, 10, 27, 2, 2, (2, 2), 1, 0, 1, True),                  # even kernels
    (1, 2, 11, 26, 2, 2, (4, 4), 2, ((1, 2), (2, 1)), 1, False),
    (2, 3, 1, 65, 3, 3, (1, 5), (1, 3), ((0, 0), (2, 1)), 1, True),  # one row (conv1d)
    # channel multipliers, groups of several input channels
    (1, 4, 11, 18, 8, 4, (3, 3), 1, 1, 1, True),                  # multiplier 2
    (1, 3, 13, 29, 9, 3, (3, 3), 2, 1, 1, False),                 # multiplier 3, stride 2
    (1, 6, 9, 20, 6, 3, (3, 3), 1, 1, 1, True),                   # 2 in, 2 out per group
    (2, 10, 8, 17, 4, 2, (3, 3), 1, 1, 1, True),                  # 5 in, 2 out
    (1, 8, 12, 22, 6, 2, (3, 2), (1, 2), (1, 0), (2, 1), True),   # 4 in, 3 out
    (1, 12, 9, 11, 7, 1, (3, 3), 1, 1, 1, True),                  # groups=1, 7 outputs
]


def _inputs(case, dtype):
    n, c_in, h, w, c_out, groups, k, stride, padding, dilation, bias = case
    rng = np.random.default_rng(abs(hash(case)) % 2**32)
    x = rng.standard_normal((n, c_in, h, w)).astype(dtype)
    wt = rng.standard_normal((c_out, c_in // groups) + k).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype) if bias else None
    return x, wt, b, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


_REFERENCE = {}


def _reference(case, dtype):
    """The reference on exactly the values pyconv sees (cached across kernel sets)."""
    key = (case, np.dtype(dtype).name)
    if key not in _REFERENCE:
        x, wt, b, kw = _inputs(case, dtype)
        _REFERENCE[key] = reference.conv2d(x, wt, b, **kw)
    return _REFERENCE[key]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES)
def test_matches_reference(kernel_set, case, dtype):
    x, wt, b, kw = _inputs(case, dtype)
    copies = [a.copy() for a in (x, wt, b) if a is not None]
    y = F.conv2d(x, wt, b, algorithm="direct", **kw)
    assert_close(y, _reference(case, dtype), dtype)
    for a, before in zip([a for a in (x, wt, b) if a is not None], copies):
        np.testing.assert_array_equal(a, before)  # inputs never modified


@pytest.mark.parametrize("case", CASES[:3] + CASES[17:19])
def test_auto_takes_the_direct_kernel(kernel_set, case):
    """Fewer than 8 output channels per group: 'auto' is this kernel, bit for bit."""
    x, wt, b, kw = _inputs(case, np.float32)
    assert np.array_equal(F.conv2d(x, wt, b, **kw), F.conv2d(x, wt, b, algorithm="direct", **kw))


@pytest.mark.parametrize("dtype", DTYPES)
def test_input_channel_blocks_and_row_chunks(kernel_set, dtype):
    """A wide group whose band of DIRECT_MIN_CHUNK_ROWS rows does not fit the budget:
    the input channels go in blocks (later blocks start from the stored partial sums)
    and the rows in several chunks -- and the result is bitwise that of one thread."""
    n, c_in, h, w, c_out = 1, 40, 41, 150, 2
    vl = 64 // np.dtype(dtype).itemsize                    # at most an AVX-512 vector
    row_bytes = (w + 2 + 2 * vl) * np.dtype(dtype).itemsize  # at least a packed row
    band = (kernel_set.DIRECT_MIN_CHUNK_ROWS - 1) + 3
    assert kernel_set.DIRECT_BAND_BUDGET // (band * row_bytes) < c_in  # blocks happen
    case = (n, c_in, h, w, c_out, 1, (3, 3), 1, 1, 1, True)
    x, wt, b, kw = _inputs(case, dtype)
    with pyconv.num_threads(1):
        y1 = F.conv2d(x, wt, b, algorithm="direct", **kw)
    with pyconv.num_threads(2):
        y2 = F.conv2d(x, wt, b, algorithm="direct", **kw)
    assert np.array_equal(y1, y2)
    assert_close(y1, reference.conv2d(x, wt, b, **kw), dtype)


# Few planes (rows split between threads: units end inside a plane) and many small
# planes (several planes per unit).
THREAD_CASES = [
    (1, 2, 37, 45, 2, 2, (3, 3), 1, 1, 1, True),
    (1, 3, 29, 30, 3, 3, (3, 3), 2, 1, 1, True),
    (2, 1, 23, 13, 3, 1, (5, 3), 1, (2, 1), 1, True),
    (1, 40, 7, 7, 40, 40, (3, 3), 1, 1, 1, True),
    (2, 24, 14, 14, 24, 24, (3, 3), 2, 1, 1, False),
    (1, 30, 9, 10, 60, 30, (3, 3), 1, 1, 1, True),
    (1, 20, 41, 150, 2, 1, (3, 3), 1, 1, 1, True),  # channel blocks and row chunks
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", THREAD_CASES)
def test_threads_bitwise(kernel_set, case, dtype):
    x, wt, b, kw = _inputs(case, dtype)
    y = same_for_any_threads(lambda t: F.conv2d(x, wt, b, algorithm="direct", **kw))
    if case[1] * case[2] * case[3] < 20000:  # (the reference is slow)
        assert_close(y, reference.conv2d(x, wt, b, **kw), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("stride", [1, 2])
def test_nan_and_inf_propagate_like_the_reference(kernel_set, dtype, stride):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 4, 13, 19)).astype(dtype)
    x[0, 1, 3, 4] = np.nan
    x[1, 2, 0, 18] = np.inf
    x[1, 2, 12, 0] = -np.inf
    x[0, 3, 6, 6] = np.inf
    w = rng.standard_normal((8, 1, 3, 3)).astype(dtype)
    w[6, 0, 1, 1] = np.inf  # an infinite tap: times the zero padding it gives NaN
    b = rng.standard_normal(8).astype(dtype)
    y = F.conv2d(x, w, b, stride, 1, 1, 4, algorithm="direct")
    with np.errstate(invalid="ignore"):  # inf - inf in the reference's sums
        ref = reference.conv2d(x, w, b, stride, 1, 1, 4)
    assert np.isnan(ref).any() and np.isinf(ref).any()
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    np.testing.assert_array_equal(np.isposinf(y), np.isposinf(ref))
    np.testing.assert_array_equal(np.isneginf(y), np.isneginf(ref))
    assert_close(y, ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", [CASES[0], CASES[4], CASES[10], CASES[20]])
def test_fused_clamp(kernel_set, case, dtype):
    x, wt, b, kw = _inputs(case, dtype)
    x[0, 0, 0, 0] = np.nan
    y = F._conv("conv2d", 2, x, wt, b, kw["stride"], kw["padding"], kw["dilation"],
                kw["groups"], "zeros", None, False, clamp=(-0.5, 1.25), algorithm="direct")
    ref = reference.conv2d(x, wt, b, **kw)
    assert np.isnan(ref).any() and (ref < -0.5).any() and (ref > 1.25).any()
    assert_close(y, np.clip(ref, -0.5, 1.25), dtype)  # NaN passes the clamp
    assert np.array_equal(np.isnan(y), np.isnan(ref))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", [CASES[1], CASES[9], CASES[21]])
def test_portable_row_kernel_matches_reference(case, dtype):
    """pyconv._conv.conv2d_forward, the row-by-row kernel the C API falls back on when
    no kernel set is bound, keeps the same contract."""
    from pyconv import _conv

    def pair(v):
        return v if isinstance(v, tuple) else (v, v)

    x, wt, b, kw = _inputs(case, dtype)
    ref = _reference(case, dtype)
    pt, pl = [pair(p)[0] for p in pair(kw["padding"])]  # the leading pads
    (sh, sw), (dh, dw) = pair(kw["stride"]), pair(kw["dilation"])
    y = np.empty(ref.shape, dtype)
    bias = b if b is not None else np.zeros(wt.shape[0], dtype)
    _conv.conv2d_forward(x, wt, bias, y, sh, sw, pt, pl, dh, dw, kw["groups"], -np.inf, np.inf, 2)
    assert_close(y, ref, dtype)


def test_kernel_checks_its_arguments(kernel_set):
    x = np.zeros((1, 4, 5, 5), np.float32)
    w = np.zeros((4, 1, 3, 3), np.float32)
    b = np.zeros(4, np.float32)
    y = np.zeros((1, 4, 3, 3), np.float32)
    kernel_set.conv2d_direct(x, w, b, y, 1, 1, 0, 0, 1, 1, 4, -np.inf, np.inf, 1)
    with pytest.raises(ValueError):
        kernel_set.conv2d_direct(x, w, b, y, 1, 1, 0, 0, 1, 1, 2, -np.inf, np.inf, 1)  # groups
    with pytest.raises(ValueError):
        kernel_set.conv2d_direct(x, w, b[:3], y, 1, 1, 0, 0, 1, 1, 4, -np.inf, np.inf, 1)
    with pytest.raises(ValueError):
        kernel_set.conv2d_direct(x, w, b, y, 0, 1, 0, 0, 1, 1, 4, -np.inf, np.inf, 1)  # stride
    with pytest.raises(ValueError):
        kernel_set.conv2d_direct(x, w, b, y, 1, 1, -1, 0, 1, 1, 4, -np.inf, np.inf, 1)  # pad
    assert {"direct_f32", "direct_f64"} <= set(kernel_set.c_api())


# ---------------------------------------------------------------------------------------
# Reads stay inside the input array: the packing reads whole vectors past the ends of
# a row, but never past the ends of the array (a PROT_NONE page right after or right
# before it turns such a read into a crash).
# ---------------------------------------------------------------------------------------

PAGE = mmap.PAGESIZE


def _guarded(shape, dtype, at_end):
    """An array of `shape` flush against a PROT_NONE page: after its last byte
    (at_end) or before its first."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    data_pages = -(-nbytes // PAGE)
    region = mmap.mmap(-1, (data_pages + 2) * PAGE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(region))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    for page in (0, data_pages + 1):
        assert libc.mprotect(base + page * PAGE, PAGE, 0) == 0  # PROT_NONE
    offset = (data_pages + 1) * PAGE - nbytes if at_end else PAGE
    return np.frombuffer(region, dtype, int(np.prod(shape)), offset).reshape(shape), region


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mprotect through libc")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("at_end", [True, False])
@pytest.mark.parametrize("stride, width", [(1, 1), (1, 5), (1, 13), (2, 2), (2, 7),
                                           (2, 14), (2, 33)])
def test_reads_stay_inside_the_input(kernel_set, dtype, at_end, stride, width):
    rng = np.random.default_rng(width)
    shape = (1, 3, 4, width)
    x, region = _guarded(shape, dtype, at_end)
    x[...] = rng.standard_normal(shape)
    w = rng.standard_normal((3, 1, 3, 3)).astype(dtype)
    for padding in (1, ((0, 2), (1, 2))):
        y = F.conv2d(x, w, None, stride, padding, 1, 3, algorithm="direct")
        assert_close(y, reference.conv2d(x, w, None, stride, padding, 1, 3), dtype)
    del x


# The channels-last depthwise tile (_direct_dwcl: blocks of VL channels, the pads inside
# a channels-last copy, AVX-512 16 x 16 transposes in and out), which conv2d_direct takes
# for float32 depthwise layers of at most 16 output columns on AVX-512. Called directly
# on every kernel set and dtype; channel counts that leave a partial last block (1, 5,
# 17, 33 against blocks of 2 to 16), planes of 1 to 20 columns (input rows wider than a
# transpose's 16 columns), kernels 1x1 to 5x5 and 2x3, strides 1-3, pads that the tile
# clips, dilation, batches. It sums each output as the row tiles do (taps in order,
# then bias and clamp): bitwise equal to conv2d_direct's row tiles.
DW_CASES = [
    # (n, c, h, w, (kh, kw), stride, (ph, pw), dilation)
    (1, 5, 7, 7, (3, 3), 1, (1, 1), 1),
    (2, 17, 14, 14, (3, 3), 2, (1, 1), 1),
    (1, 33, 14, 13, (3, 3), 1, (1, 1), 1),
    (1, 1, 1, 1, (1, 1), 1, (0, 0), 1),
    (1, 16, 9, 20, (3, 3), 2, (0, 2), 1),
    (3, 7, 11, 34, (5, 5), 3, (2, 2), 1),
    (1, 18, 8, 9, (2, 3), (1, 2), (1, 0), (2, 1)),
    (1, 9, 12, 12, (3, 3), 1, (2, 2), 2),
    (1, 20, 5, 3, (3, 3), 1, (2, 1), 1),
]


def _dw_layer(case, dtype, seed=0):
    n, c, h, w, k, stride, pads, dilation = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((c, 1) + k).astype(dtype)
    b = rng.standard_normal(c).astype(dtype)
    s = (stride, stride) if isinstance(stride, int) else stride
    d = (dilation, dilation) if isinstance(dilation, int) else dilation
    oh = (h + 2 * pads[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1
    ow = (w + 2 * pads[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1
    return x, wt, b, s, d, (oh, ow)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", DW_CASES)
def test_depthwise_channels_last_tile(kernel_set, case, dtype):
    x, wt, b, s, d, (oh, ow) = _dw_layer(case, dtype)
    ph, pw = case[6]
    c = x.shape[1]
    args = (s[0], s[1], ph, pw, d[0], d[1])
    ref = reference.conv2d(x, wt, b, stride=s, padding=(ph, pw), dilation=d, groups=c)
    y = np.full((x.shape[0], c, oh, ow), np.nan, dtype)
    kernel_set.conv2d_depthwise_cl(x, wt, b, y, *args, -np.inf, np.inf, 2)
    assert_close(y, ref)
    rows = np.empty_like(y)
    kernel_set.conv2d_direct(x, wt, b, rows, *args, c, -np.inf, np.inf, 2)
    assert np.array_equal(y, rows)      # the same sums as the row tiles (or the tile itself)
    clamped = np.empty_like(y)
    same = same_for_any_threads(lambda t: (kernel_set.conv2d_depthwise_cl(
        x, wt, b, clamped, *args, 0.0, 0.5, t), clamped.copy())[1])
    assert_close(same, np.clip(ref, 0.0, 0.5))


def test_depthwise_channels_last_tile_is_taken_bitwise(kernel_set):
    """Through F.conv2d (whichever path the set takes) the depthwise result equals the
    row tiles' bitwise: the two sum alike."""
    for case in DW_CASES:
        x, wt, b, s, d, _ = _dw_layer(case, np.float32, seed=1)
        c = x.shape[1]
        y = F.conv2d(x, wt, b, s, case[6], d, c, algorithm="direct")
        rows = np.empty_like(y)
        kernel_set.conv2d_direct(x, wt, b, rows, s[0], s[1], case[6][0], case[6][1], d[0], d[1],
                                 c, -np.inf, np.inf, 1)
        cl = np.empty_like(y)
        kernel_set.conv2d_depthwise_cl(x, wt, b, cl, s[0], s[1], case[6][0], case[6][1],
                                       d[0], d[1], -np.inf, np.inf, 1)
        assert np.array_equal(y, rows) and np.array_equal(y, cl), case
