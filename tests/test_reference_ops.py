"""Every operator of pyconv.functional against its naive NumPy reference (reference.py).

Shapes are awkward on purpose (1, 5, 7, 13, 17: never a multiple of a tile or vector
width). Parametrised tables cover the named corner cases; hypothesis then draws random
valid configurations for each operator family.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pyconv.functional as F
import reference as ref
from conftest import DTYPES, assert_close, random_array

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def both(name, *args, **kwargs):
    """(pyconv's result, the reference's result) of operator ``name``."""
    return getattr(F, name)(*args, **kwargs), getattr(ref, name)(*args, **kwargs)


def values(rng, shape, kind, dtype):
    """Test inputs: 'normal' values, 'ties' (small integers, many equal maxima),
    'nan' (a fifth NaN) or '-inf' (half -inf, some windows all -inf)."""
    if kind == "ties":
        x = rng.integers(-2, 3, shape).astype(np.float64)
    else:
        x = rng.standard_normal(shape)
    if kind == "nan":
        x[rng.random(shape) < 0.2] = np.nan
    if kind == "-inf":
        x[rng.random(shape) < 0.5] = -np.inf
    return x.astype(dtype)


def unbatch(shape, batched):
    return shape if batched else shape[1:]


# ---------------------------------------------------------------------------------------
# Correlation and true convolution
# ---------------------------------------------------------------------------------------

# (id, input shape (N, C_in, *spatial), weight shape (C_out, C_in/groups, *k), kwargs)
CONV_CASES = [
    ("1d-plain", (2, 3, 7), (4, 3, 3), {}),
    ("1d-groups", (1, 6, 13), (4, 3, 2), dict(groups=2)),
    ("1d-depthwise", (2, 5, 13), (5, 1, 3), dict(groups=5, padding=1)),
    ("1d-dilation-stride", (1, 2, 17), (3, 2, 3), dict(dilation=3, stride=2)),
    ("1d-stride-beyond-kernel", (1, 2, 17), (3, 2, 2), dict(stride=5)),
    ("1d-pad-pair", (1, 2, 7), (3, 2, 3), dict(padding=((3, 1),))),
    ("1d-same-even-stride", (1, 2, 13), (3, 2, 4), dict(padding="same", stride=3)),
    ("1d-valid", (1, 2, 7), (3, 2, 2), dict(padding="valid", stride=2)),
    ("1d-1tap", (2, 5, 7), (3, 5, 1), {}),
    ("1d-kernel-is-input", (2, 3, 7), (4, 3, 7), {}),
    ("2d-plain", (2, 3, 7, 5), (4, 3, 3, 3), {}),
    ("2d-groups", (1, 6, 7, 9), (9, 2, 3, 1), dict(groups=3)),
    ("2d-depthwise", (2, 5, 9, 7), (5, 1, 3, 3), dict(groups=5, padding=1)),
    ("2d-depthwise-x2", (1, 3, 7, 7), (6, 1, 3, 3), dict(groups=3, stride=2)),
    ("2d-dilation", (1, 2, 13, 11), (3, 2, 3, 2), dict(dilation=(2, 3))),
    ("2d-stride-beyond-kernel", (1, 2, 17, 13), (3, 2, 2, 2), dict(stride=(5, 3))),
    ("2d-pad-beyond-kernel", (1, 2, 5, 7), (3, 2, 3, 3), dict(padding=4)),
    ("2d-pad-ints", (2, 2, 7, 5), (3, 2, 3, 3), dict(padding=(1, 2))),
    ("2d-pad-pairs", (1, 2, 7, 5), (3, 2, 3, 3), dict(padding=((2, 0), (1, 3)))),
    ("2d-same", (1, 3, 7, 5), (2, 3, 3, 5), dict(padding="same")),
    ("2d-same-even-stride", (1, 2, 13, 7), (3, 2, 4, 2), dict(padding="same", stride=(3, 2))),
    ("2d-same-dilation-stride", (1, 2, 11, 17), (3, 2, 3, 3),
     dict(padding="same", dilation=2, stride=(2, 3))),
    ("2d-valid", (1, 2, 7, 5), (3, 2, 2, 3), dict(padding="valid", stride=2)),
    ("2d-1x1", (2, 5, 7, 5), (3, 5, 1, 1), {}),
    ("2d-1x1-stride", (1, 5, 7, 5), (3, 5, 1, 1), dict(stride=2)),
    ("2d-kernel-is-input", (2, 3, 5, 7), (4, 3, 5, 7), {}),
    ("2d-one-pixel", (1, 1, 1, 1), (1, 1, 1, 1), {}),
    ("2d-everything", (2, 4, 13, 11), (6, 2, 3, 2),
     dict(stride=(2, 3), padding=((1, 2), (0, 3)), dilation=(2, 1), groups=2)),
]


@pytest.mark.parametrize("x_shape, w_shape, kwargs",
                         [pytest.param(*c[1:], id=c[0]) for c in CONV_CASES])
@pytest.mark.parametrize("op", ["conv", "convolve"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("with_bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
def test_conv_matches_reference(x_shape, w_shape, kwargs, op, dtype, with_bias, batched, rng):
    name = f"{op}{len(w_shape) - 2}d"
    x = random_array(rng, unbatch(x_shape, batched), dtype)
    w = random_array(rng, w_shape, dtype)
    b = random_array(rng, w_shape[0], dtype) if with_bias else None
    assert_close(*both(name, x, w, b, **kwargs), dtype)


PADDING_MODE_CASES = [
    ("1d-pad-pair", (2, 2, 7), (3, 2, 3), dict(padding=((3, 1),))),
    ("1d-same-even-dilation", (1, 2, 9), (2, 2, 2), dict(padding="same", dilation=3)),
    ("1d-pad-size-minus-1", (1, 1, 4), (1, 1, 3), dict(padding=3)),
    ("2d-pad-pairs", (2, 2, 7, 5), (3, 2, 3, 3), dict(padding=((2, 0), (1, 3)))),
    ("2d-groups-stride", (1, 4, 9, 7), (4, 2, 3, 3), dict(padding=2, groups=2, stride=2)),
    ("2d-same-even-stride", (1, 2, 13, 7), (3, 2, 4, 2), dict(padding="same", stride=(3, 2))),
    ("2d-pad-size-minus-1", (1, 2, 3, 4), (2, 2, 3, 3), dict(padding=((2, 2), (3, 3)))),
    ("2d-dilation", (1, 2, 7, 9), (2, 2, 3, 3), dict(padding=(2, 3), dilation=(2, 3))),
]


@pytest.mark.parametrize("x_shape, w_shape, kwargs",
                         [pytest.param(*c[1:], id=c[0]) for c in PADDING_MODE_CASES])
@pytest.mark.parametrize("padding_mode", PADDING_MODES)
@pytest.mark.parametrize("op", ["conv", "convolve"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_padding_modes_match_reference(x_shape, w_shape, kwargs, padding_mode, op, dtype, rng):
    name = f"{op}{len(w_shape) - 2}d"
    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, w_shape, dtype)
    b = random_array(rng, w_shape[0], dtype)
    assert_close(*both(name, x, w, b, padding_mode=padding_mode, **kwargs), dtype)


@pytest.mark.parametrize("nd", [1, 2])
def test_circular_padding_of_the_whole_input(nd, rng):
    """Circular padding may wrap the input around once completely (pad == size)."""
    x = random_array(rng, (1, 2) + (3, 2)[:nd])
    w = random_array(rng, (2, 2) + (3, 3)[:nd])
    pads = ((3, 3), (2, 2))[:nd]
    assert_close(*both(f"conv{nd}d", x, w, padding=pads, padding_mode="circular"))


@pytest.mark.parametrize("nd", [1, 2])
def test_replicate_padding_beyond_the_input(nd, rng):
    """PyTorch's replicate padding has no size limit (only reflect and circular do):
    torch.nn.Conv2d(..., padding=1, padding_mode='replicate') runs on a 1x1 feature map."""
    x = random_array(rng, (1, 2) + (1, 2)[:nd])
    w = random_array(rng, (3, 2) + (3, 3)[:nd])
    pads = ((2, 3), (4, 1))[:nd]
    assert_close(*both(f"conv{nd}d", x, w, padding=pads, padding_mode="replicate"))


def test_mixed_dtypes_compute_in_the_wider_one(rng):
    x = random_array(rng, (2, 3, 7, 5), np.float32)
    w = random_array(rng, (4, 3, 3, 3), np.float64)
    assert_close(*both("conv2d", x, w, padding=1), np.float64)


# ---------------------------------------------------------------------------------------
# Transposed convolution
# ---------------------------------------------------------------------------------------

# (id, input shape (N, C_in, *spatial), weight shape (C_in, C_out/groups, *k), kwargs)
CONV_TRANSPOSE_CASES = [
    ("1d-plain", (2, 3, 7), (3, 4, 3), {}),
    ("1d-stride-output-padding", (1, 2, 5), (2, 3, 3), dict(stride=3, output_padding=2)),
    ("1d-stride-beyond-kernel", (1, 2, 5), (2, 3, 2), dict(stride=5)),
    ("1d-dilation-output-padding", (1, 2, 7), (2, 3, 3), dict(dilation=3, output_padding=2)),
    ("1d-groups-pad-pair", (2, 4, 7), (4, 2, 3), dict(groups=2, stride=2, padding=((2, 0),))),
    ("1d-depthwise", (1, 5, 13), (5, 1, 3), dict(groups=5, padding=1)),
    ("1d-1tap", (2, 5, 7), (5, 3, 1), dict(stride=2)),
    ("2d-plain", (2, 3, 5, 7), (3, 4, 3, 3), {}),
    ("2d-stride", (1, 2, 5, 7), (2, 3, 3, 2), dict(stride=(2, 3))),
    ("2d-stride-beyond-kernel", (1, 2, 5, 4), (2, 3, 2, 2), dict(stride=(5, 3))),
    ("2d-output-padding", (1, 2, 5, 7), (2, 3, 3, 3), dict(stride=3, output_padding=(2, 1))),
    ("2d-output-padding-dilation", (1, 2, 5, 7), (2, 3, 3, 3), dict(dilation=3, output_padding=2)),
    ("2d-padding", (2, 2, 7, 5), (2, 3, 3, 3), dict(padding=1, stride=2)),
    ("2d-pad-pairs", (1, 2, 7, 5), (2, 3, 3, 5), dict(padding=((2, 0), (1, 3)), stride=2, output_padding=1)),
    ("2d-groups", (1, 6, 5, 7), (6, 2, 3, 3), dict(groups=3, stride=2)),
    ("2d-depthwise", (2, 5, 7, 5), (5, 1, 3, 3), dict(groups=5, padding=1)),
    ("2d-dilation", (1, 2, 7, 5), (2, 3, 3, 2), dict(dilation=(2, 3))),
    ("2d-1x1", (2, 5, 7, 5), (5, 3, 1, 1), {}),
    ("2d-1x1-stride", (1, 5, 7, 5), (5, 3, 1, 1), dict(stride=2)),
    ("2d-crop-to-one", (1, 2, 5, 5), (2, 1, 3, 3), dict(padding=((3, 3), (4, 2)))),
    ("2d-one-pixel", (1, 1, 1, 1), (1, 1, 1, 1), {}),
    ("2d-everything", (2, 4, 5, 7), (4, 3, 3, 2),
     dict(stride=(2, 3), padding=((1, 2), (0, 3)), dilation=(2, 1), groups=2, output_padding=(1, 2))),
]


@pytest.mark.parametrize("x_shape, w_shape, kwargs",
                         [pytest.param(*c[1:], id=c[0]) for c in CONV_TRANSPOSE_CASES])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("with_bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
def test_conv_transpose_matches_reference(x_shape, w_shape, kwargs, dtype, with_bias, batched, rng):
    name = f"conv_transpose{len(w_shape) - 2}d"
    x = random_array(rng, unbatch(x_shape, batched), dtype)
    w = random_array(rng, w_shape, dtype)
    b = random_array(rng, w_shape[1] * kwargs.get("groups", 1), dtype) if with_bias else None
    assert_close(*both(name, x, w, b, **kwargs), dtype)


# ---------------------------------------------------------------------------------------
# Max and average pooling
# ---------------------------------------------------------------------------------------

# (id, input shape (N, C, *spatial), kwargs)
POOL_CASES = [
    ("1d-k2", (2, 3, 7), dict(kernel_size=2)),
    ("1d-k3-s2-p1-ceil", (1, 2, 13), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ("1d-dilation-ceil", (1, 2, 17), dict(kernel_size=3, stride=4, dilation=2, padding=1, ceil_mode=True)),
    ("1d-pad-beyond-half", (1, 2, 5), dict(kernel_size=2, stride=1, padding=3)),
    ("1d-pad-pair", (1, 2, 7), dict(kernel_size=3, stride=2, padding=((0, 3),), ceil_mode=True)),
    ("1d-same-even", (1, 2, 7), dict(kernel_size=4, stride=3, padding="same")),
    ("2d-k2", (2, 3, 7, 5), dict(kernel_size=2)),
    ("2d-k3-s2-p1", (2, 3, 7, 5), dict(kernel_size=3, stride=2, padding=1)),
    ("2d-ceil", (1, 2, 7, 5), dict(kernel_size=2, ceil_mode=True)),
    ("2d-ceil-pad", (1, 2, 13, 7), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ("2d-ceil-rect", (1, 2, 17, 13), dict(kernel_size=(3, 2), stride=(4, 3), padding=1, ceil_mode=True)),
    ("2d-dilation", (1, 2, 13, 11), dict(kernel_size=3, stride=1, dilation=(2, 3))),
    ("2d-dilation-ceil", (1, 2, 13, 11),
     dict(kernel_size=2, stride=3, dilation=2, padding=1, ceil_mode=True)),
    ("2d-stride-beyond-kernel", (1, 2, 17, 13), dict(kernel_size=2, stride=(5, 3))),
    ("2d-pad-beyond-half", (1, 2, 5, 7), dict(kernel_size=3, stride=1, padding=3)),
    ("2d-pad-pairs", (1, 2, 7, 5), dict(kernel_size=(3, 2), stride=(2, 1), padding=((2, 0), (0, 3)))),
    ("2d-same-even-stride", (1, 2, 7, 5), dict(kernel_size=4, stride=3, padding="same")),
    ("2d-same-dilation", (1, 2, 7, 5), dict(kernel_size=3, stride=1, dilation=2, padding="same")),
    ("2d-valid", (1, 2, 7, 5), dict(kernel_size=(2, 3), stride=2, padding="valid")),
    ("2d-kernel-is-input", (2, 3, 5, 7), dict(kernel_size=(5, 7))),
    ("2d-kernel-is-input-stride1-ceil", (1, 5, 7, 7), dict(kernel_size=7, stride=1, ceil_mode=True)),
    ("1d-kernel-is-input", (2, 3, 9), dict(kernel_size=9)),
    ("2d-1x1-stride", (1, 2, 5, 7), dict(kernel_size=1, stride=2)),
]
POOL_PARAMS = [pytest.param(*c[1:], id=c[0]) for c in POOL_CASES]


@pytest.mark.parametrize("x_shape, kwargs", POOL_PARAMS)
@pytest.mark.parametrize("kind", ["normal", "ties", "nan", "-inf"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
def test_max_pool_matches_reference(x_shape, kwargs, kind, dtype, batched, rng):
    name = f"max_pool{len(x_shape) - 2}d"
    x = values(rng, unbatch(x_shape, batched), kind, dtype)
    (y, idx), (y_ref, idx_ref) = both(name, x, return_indices=True, **kwargs)
    assert_close(y, y_ref, dtype)
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(idx, idx_ref)


@pytest.mark.parametrize("x_shape, kwargs", POOL_PARAMS)
@pytest.mark.parametrize("count_include_pad", [True, False], ids=["include-pad", "exclude-pad"])
@pytest.mark.parametrize("divisor_override", [None, 5], ids=["divisor-auto", "divisor-5"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_avg_pool_matches_reference(x_shape, kwargs, count_include_pad, divisor_override, dtype, rng):
    name = f"avg_pool{len(x_shape) - 2}d"
    x = random_array(rng, x_shape, dtype)
    kwargs = dict(kwargs, count_include_pad=count_include_pad, divisor_override=divisor_override)
    assert_close(*both(name, x, **kwargs), dtype)
    assert_close(*both(name, x[0], **kwargs), dtype)  # unbatched


@pytest.mark.parametrize("nd", [1, 2])
def test_max_pool_nan_is_the_max_and_the_last_nan_is_its_index(nd):
    x = np.zeros((1, 1) + ((2, 5) if nd == 2 else (10,)))
    plane = x.reshape(-1)
    plane[[1, 6]] = np.nan  # (0, 1) and (1, 1) in 2-D
    plane[8] = 7.0
    y, idx = getattr(F, f"max_pool{nd}d")(x, x.shape[2:], return_indices=True)
    assert np.isnan(y).all()
    np.testing.assert_array_equal(idx.reshape(-1), [6])


@pytest.mark.parametrize("size, kernel, stride, padding, expected", [
    (6, 3, 2, 1, 4),   # windows start at -1, 1, 3 (floor); the 4th starts at 5, in the input: kept
    (5, 2, 2, 1, 3),   # the 4th window would start at 5, in the trailing padding: dropped
    (7, 2, 3, 0, 3),   # the 3rd starts at 6, inside the input: kept although it overhangs
])
def test_ceil_mode_keeps_a_last_window_only_if_it_starts_before_the_trailing_padding(
        size, kernel, stride, padding, expected, rng):
    x = random_array(rng, (2, size))
    assert ref.pool_output_size(size, kernel, stride, (padding, padding), 1, True) == expected
    assert F.max_pool1d(x, kernel, stride, padding, ceil_mode=True).shape == (2, expected)
    assert_close(*both("avg_pool1d", x, kernel, stride, padding, ceil_mode=True))


def test_max_pool_ignores_padding_even_when_all_real_values_are_negative_infinity():
    x = np.full((1, 1, 3, 3), -np.inf)
    (y, idx), (y_ref, idx_ref) = both("max_pool2d", x, 2, stride=2, padding=1, return_indices=True)
    np.testing.assert_array_equal(y, np.full((1, 1, 2, 2), -np.inf))
    np.testing.assert_array_equal(idx, [[[[0, 1], [3, 4]]]])
    np.testing.assert_array_equal(y_ref, y)
    np.testing.assert_array_equal(idx_ref, idx)


# ---------------------------------------------------------------------------------------
# Adaptive pooling
# ---------------------------------------------------------------------------------------

# (id, input shape (N, C, *spatial), output_size)
ADAPTIVE_CASES = [
    ("1d-shrink", (2, 3, 13), 5),
    ("1d-grow", (1, 2, 5), 7),
    ("1d-global", (2, 3, 7), 1),
    ("2d-shrink", (2, 3, 7, 5), (3, 2)),
    ("2d-identity", (1, 2, 5, 7), (5, 7)),
    ("2d-grow", (1, 2, 5, 7), (7, 13)),
    ("2d-keep-width", (1, 2, 13, 17), (4, None)),
    ("2d-from-one-pixel", (1, 2, 1, 1), 3),
    ("2d-global", (2, 3, 7, 5), 1),
]


@pytest.mark.parametrize("x_shape, output_size",
                         [pytest.param(*c[1:], id=c[0]) for c in ADAPTIVE_CASES])
@pytest.mark.parametrize("kind", ["normal", "ties", "nan"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
def test_adaptive_pools_match_reference(x_shape, output_size, kind, dtype, batched, rng):
    nd = len(x_shape) - 2
    x = values(rng, unbatch(x_shape, batched), kind, dtype)
    assert_close(*both(f"adaptive_avg_pool{nd}d", x, output_size), dtype)
    (y, idx), (y_ref, idx_ref) = both(f"adaptive_max_pool{nd}d", x, output_size, return_indices=True)
    assert_close(y, y_ref, dtype)
    np.testing.assert_array_equal(idx, idx_ref)


# ---------------------------------------------------------------------------------------
# One large plane
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_one_large_plane_matches_reference(dtype, rng):
    """One image with one channel: the kernels cut its rows into blocks for the threads."""
    x = random_array(rng, (1, 1, 45, 37), dtype)
    w = random_array(rng, (1, 1, 3, 5), dtype)
    assert_close(*both("conv2d", x, w, padding=(1, 2)), dtype)
    assert_close(*both("conv_transpose2d", x, w, stride=(2, 1), padding=1), dtype)
    (y, idx), (y_ref, idx_ref) = both("max_pool2d", x, 3, 1, 1, return_indices=True)
    assert_close(y, y_ref, dtype)
    np.testing.assert_array_equal(idx, idx_ref)
    assert_close(*both("avg_pool2d", x, (2, 3), 2, 1, ceil_mode=True), dtype)
    assert_close(*both("adaptive_avg_pool2d", x, (13, 7)), dtype)


# ---------------------------------------------------------------------------------------
# Empty arrays
# ---------------------------------------------------------------------------------------

# name -> (input shape, the other arguments), for an input with an empty batch
EMPTY_BATCH = {
    "conv1d": ((0, 3, 7), [np.ones((4, 3, 3))], {}),
    "conv2d": ((0, 3, 7, 5), [np.ones((4, 3, 3, 2))], dict(padding=1)),
    "convolve1d": ((0, 3, 7), [np.ones((4, 3, 3))], {}),
    "convolve2d": ((0, 3, 7, 5), [np.ones((4, 3, 3, 2))], {}),
    "conv_transpose1d": ((0, 3, 7), [np.ones((3, 2, 3))], dict(stride=2)),
    "conv_transpose2d": ((0, 3, 7, 5), [np.ones((3, 2, 3, 2))], dict(stride=2)),
    "max_pool1d": ((0, 3, 7), [3], {}),
    "max_pool2d": ((0, 3, 7, 5), [2], dict(ceil_mode=True)),
    "avg_pool1d": ((0, 3, 7), [3], {}),
    "avg_pool2d": ((0, 3, 7, 5), [2], {}),
    "adaptive_avg_pool1d": ((0, 3, 7), [3], {}),
    "adaptive_avg_pool2d": ((0, 3, 7, 5), [(2, 3)], {}),
    "adaptive_max_pool1d": ((0, 3, 7), [3], {}),
    "adaptive_max_pool2d": ((0, 3, 7, 5), [(2, 3)], {}),
}


@pytest.mark.parametrize("name", sorted(EMPTY_BATCH))
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_empty_batch_gives_an_empty_result_of_the_right_shape(name, dtype):
    shape, args, kwargs = EMPTY_BATCH[name]
    args = [a.astype(dtype) if isinstance(a, np.ndarray) else a for a in args]
    y, y_ref = both(name, np.zeros(shape, dtype), *args, **kwargs)
    assert_close(y, y_ref, dtype)


@pytest.mark.parametrize("nd", [1, 2])
@pytest.mark.parametrize("op", ["conv", "convolve", "conv_transpose"])
@pytest.mark.parametrize("with_bias", [False, True], ids=["nobias", "bias"])
def test_no_input_channels_gives_the_bias(nd, op, with_bias, rng):
    """C_in = 0: the sums are empty, every output is its channel's bias (or 0)."""
    x = np.zeros((2, 0) + (7, 5)[:nd])
    w = np.zeros(((3, 0) if op != "conv_transpose" else (0, 3)) + (3, 2)[:nd])
    b = random_array(rng, 3) if with_bias else None
    y, y_ref = both(f"{op}{nd}d", x, w, b, stride=2)
    assert_close(y, y_ref)
    bias = (b if with_bias else np.zeros(3)).reshape((1, 3) + (1,) * nd)
    np.testing.assert_array_equal(y, np.broadcast_to(bias, y.shape))


# ---------------------------------------------------------------------------------------
# Random configurations (hypothesis)
# ---------------------------------------------------------------------------------------

def pad_limit(mode, size):
    """The largest pad drawn for a padding mode: reflect needs a mirror element, circular
    wraps at most once (PyTorch's limits); zeros and replicate take any pad."""
    return {"reflect": size - 1, "circular": size}.get(mode, 3)


@st.composite
def padding_specs(draw, sizes, limits):
    """(padding argument, its (begin, end) pairs) with every pad <= its axis' limit;
    'same' is left to the caller (it depends on the kernel)."""
    form = draw(st.sampled_from(["int", "ints", "pairs", "valid"]))
    if form == "valid":
        return "valid", [(0, 0)] * len(sizes)
    if form == "int":
        p = draw(st.integers(0, min(limits)))
        return p, [(p, p)] * len(sizes)
    if form == "ints":
        ps = [draw(st.integers(0, limit)) for limit in limits]
        return tuple(ps), [(p, p) for p in ps]
    pairs = [(draw(st.integers(0, limit)), draw(st.integers(0, limit))) for limit in limits]
    return tuple(pairs), pairs


@st.composite
def conv_configs(draw):
    """(nd, input shape, weight shape, kwargs) of a valid correlation."""
    nd = draw(st.sampled_from([1, 2]))
    groups = draw(st.integers(1, 3))
    c_in, c_out = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    mode = draw(st.sampled_from(PADDING_MODES))
    sizes = [draw(st.integers(1, 9)) for _ in range(nd)]
    stride = tuple(draw(st.integers(1, 4)) for _ in range(nd))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    limits = [pad_limit(mode, n) for n in sizes]
    if draw(st.booleans()):  # 'same': any kernel, pads follow from it
        padding = "same"
        kernel = [draw(st.integers(1, 4)) for _ in range(nd)]
        pads = ref.padding_pairs("same", sizes, kernel, stride, dilation)
        if any(max(pair) > limit for pair, limit in zip(pads, limits)):
            mode = "zeros"
    else:
        padding, pads = draw(padding_specs(sizes, limits))
        kernel = [draw(st.integers(1, min(4, (n + sum(pair) - 1) // d + 1)))
                  for n, pair, d in zip(sizes, pads, dilation)]
    batch = (draw(st.integers(1, 2)),) if draw(st.booleans()) else ()
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, padding_mode=mode)
    return nd, batch + (c_in, *sizes), (c_out, c_in // groups, *kernel), kwargs


@st.composite
def conv_transpose_configs(draw):
    """(nd, input shape, weight shape, kwargs) of a valid transposed convolution."""
    nd = draw(st.sampled_from([1, 2]))
    groups = draw(st.integers(1, 3))
    c_in, c_out_group = groups * draw(st.integers(1, 2)), draw(st.integers(1, 2))
    dims = []
    for _ in range(nd):
        n, k, s, d = (draw(st.integers(1, 6)), draw(st.integers(1, 4)),
                      draw(st.integers(1, 4)), draw(st.integers(1, 3)))
        output_padding = draw(st.integers(0, max(s, d) - 1))
        full = (n - 1) * s + d * (k - 1) + output_padding + 1
        begin = draw(st.integers(0, min(3, full - 1)))  # at least one output is left
        end = draw(st.integers(0, min(3, full - 1 - begin)))
        dims.append((n, k, s, d, output_padding, (begin, end)))
    sizes, kernel, stride, dilation, output_padding, pads = zip(*dims)
    batch = (draw(st.integers(1, 2)),) if draw(st.booleans()) else ()
    kwargs = dict(stride=stride, padding=pads, dilation=dilation, groups=groups,
                  output_padding=output_padding)
    return nd, batch + (c_in, *sizes), (c_in, c_out_group, *kernel), kwargs


@st.composite
def pool_configs(draw):
    """(nd, input shape, kwargs) of a valid max/avg pooling, pads up to 3 (beyond half
    the kernel included), 'same', ceil_mode and dilation."""
    nd = draw(st.sampled_from([1, 2]))
    sizes = [draw(st.integers(1, 9)) for _ in range(nd)]
    stride = draw(st.none() | st.tuples(*[st.integers(1, 4)] * nd))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    if draw(st.booleans()):
        padding = "same"
        kernel = tuple(draw(st.integers(1, 4)) for _ in range(nd))
    else:
        padding, pads = draw(padding_specs(sizes, [3] * nd))
        kernel = tuple(draw(st.integers(1, min(4, (n + sum(pair) - 1) // d + 1)))
                       for n, pair, d in zip(sizes, pads, dilation))
    batch = (draw(st.integers(1, 2)),) if draw(st.booleans()) else ()
    kwargs = dict(kernel_size=kernel, stride=stride, padding=padding, dilation=dilation,
                  ceil_mode=draw(st.booleans()))
    return nd, batch + (draw(st.integers(1, 3)), *sizes), kwargs


SETTINGS = settings(max_examples=80, deadline=None)


@SETTINGS
@given(config=conv_configs(), data=st.data())
def test_random_conv_matches_reference(config, data):
    nd, x_shape, w_shape, kwargs = config
    op = data.draw(st.sampled_from(["conv", "convolve"]), label="op")
    dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    x, w = random_array(rng, x_shape, dtype), random_array(rng, w_shape, dtype)
    b = random_array(rng, w_shape[0], dtype) if data.draw(st.booleans(), label="bias") else None
    assert_close(*both(f"{op}{nd}d", x, w, b, **kwargs), dtype)


@SETTINGS
@given(config=conv_transpose_configs(), data=st.data())
def test_random_conv_transpose_matches_reference(config, data):
    nd, x_shape, w_shape, kwargs = config
    dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    x, w = random_array(rng, x_shape, dtype), random_array(rng, w_shape, dtype)
    with_bias = data.draw(st.booleans(), label="bias")
    b = random_array(rng, w_shape[1] * kwargs["groups"], dtype) if with_bias else None
    assert_close(*both(f"conv_transpose{nd}d", x, w, b, **kwargs), dtype)


@SETTINGS
@given(config=pool_configs(), data=st.data())
def test_random_max_pool_matches_reference(config, data):
    nd, x_shape, kwargs = config
    kind = data.draw(st.sampled_from(["normal", "ties", "nan", "-inf"]), label="kind")
    dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    x = values(rng, x_shape, kind, dtype)
    (y, idx), (y_ref, idx_ref) = both(f"max_pool{nd}d", x, return_indices=True, **kwargs)
    assert_close(y, y_ref, dtype)
    np.testing.assert_array_equal(idx, idx_ref)


@SETTINGS
@given(config=pool_configs(), data=st.data())
def test_random_avg_pool_matches_reference(config, data):
    nd, x_shape, kwargs = config
    kwargs["count_include_pad"] = data.draw(st.booleans(), label="count_include_pad")
    kwargs["divisor_override"] = data.draw(st.none() | st.integers(1, 7), label="divisor_override")
    dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    x = random_array(rng, x_shape, dtype)
    assert_close(*both(f"avg_pool{nd}d", x, **kwargs), dtype)


@SETTINGS
@given(data=st.data())
def test_random_adaptive_pools_match_reference(data):
    nd = data.draw(st.sampled_from([1, 2]), label="nd")
    sizes = data.draw(st.tuples(*[st.integers(1, 9)] * nd), label="sizes")
    output_size = data.draw(st.tuples(*[st.integers(1, 10)] * nd), label="output_size")
    kind = data.draw(st.sampled_from(["normal", "ties", "nan"]), label="kind")
    dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    x = values(rng, (2, 3) + sizes, kind, dtype)
    assert_close(*both(f"adaptive_avg_pool{nd}d", x, output_size), dtype)
    (y, idx), (y_ref, idx_ref) = both(f"adaptive_max_pool{nd}d", x, output_size, return_indices=True)
    assert_close(y, y_ref, dtype)
    np.testing.assert_array_equal(idx, idx_ref)
