"""The ideas of the course notes (shared/DOMAIN.md) as properties of pyconv's operators.

The worked example lives in test_worked_example.py. Here: translation equivariance,
convolution vs correlation, associativity and commutativity of true convolution, the
adjoint identity of transposed convolution, the parameter count, the output-size
formulas, the receptive field through depth and the translation tolerance of pooling.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pyconv
import pyconv.functional as F
import reference as ref
from conftest import assert_close, random_array

GAUSSIAN_5X5 = np.array([[1, 4, 7, 4, 1],
                         [4, 16, 26, 16, 4],
                         [7, 26, 41, 26, 7],
                         [4, 16, 26, 16, 4],
                         [1, 4, 7, 4, 1]]) / 273


def single(a):
    """A 1- or 2-D array as one image with one channel, (1, 1, *spatial)."""
    return np.asarray(a)[None, None]


def full(op, a, b):
    """``op`` ('conv2d', 'convolve1d', ...) of single-channel a by kernel b with 'full'
    padding, k - 1 on each side: every overlap of the two is an output."""
    padding = tuple(k - 1 for k in np.shape(b))
    return getattr(F, op)(single(a), single(b), padding=padding)[0, 0]


# ---------------------------------------------------------------------------------------
# Translation equivariance
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("shift", [(1, 0), (0, 2), (3, 1), (2, 5)])
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_shifting_the_input_shifts_the_output(shift, stride, rng):
    """Shift the input by stride*(a, b): the output shifts by (a, b) -- exactly, away
    from the border where new pixels enter (stride 1: the output shifts by the shift)."""
    a, b = shift
    h, w = 13, 17
    canvas = random_array(rng, (2, 3, h + stride * a, w + stride * b))
    x = canvas[..., stride * a:, stride * b:]      # x[i, j]
    moved = canvas[..., :h, :w]                    # moved[i + s*a, j + s*b] == x[i, j]
    weight = random_array(rng, (4, 3, 3, 2))
    y = F.conv2d(x, weight, stride=stride)
    y_moved = F.conv2d(moved, weight, stride=stride)
    oh, ow = y.shape[2:]
    assert a < oh and b < ow
    assert_close(y_moved[..., a:, b:], y[..., :oh - a, :ow - b])


@pytest.mark.parametrize("shift", [1, 4])
def test_shifting_a_1d_signal_shifts_the_output(shift, rng):
    canvas = random_array(rng, (1, 2, 17 + shift))
    x, moved = canvas[..., shift:], canvas[..., :17]
    weight = random_array(rng, (3, 2, 4))
    y, y_moved = F.conv1d(x, weight, padding=2), F.conv1d(moved, weight, padding=2)
    # away from the borders (2 padded columns, then the shifted-in columns)
    assert_close(y_moved[..., 2 + shift:-3], y[..., 2:-3 - shift])


def test_correlation_is_not_rotation_equivariant(rng):
    """Rotating the input rotates the output only if the kernel is rotated too."""
    x, w = random_array(rng, (1, 1, 7, 7)), random_array(rng, (1, 1, 3, 3))
    rotated_output = np.rot90(F.conv2d(x, w), axes=(2, 3))
    assert_close(F.conv2d(np.rot90(x, axes=(2, 3)), np.rot90(w, axes=(2, 3))), rotated_output)
    assert not np.allclose(F.conv2d(np.rot90(x, axes=(2, 3)), w), rotated_output)


# ---------------------------------------------------------------------------------------
# Convolution and correlation
# ---------------------------------------------------------------------------------------

def test_convolve2d_is_the_textbook_sum(rng):
    """(F * I)(x, y) = sum_{i, j} F(i, j) I(x - i, y - j), over every overlap ('full')."""
    image, kernel = random_array(rng, (6, 5)), random_array(rng, (3, 4))
    expected = np.zeros((6 + 3 - 1, 5 + 4 - 1))
    for x in range(expected.shape[0]):
        for y in range(expected.shape[1]):
            for i in range(3):
                for j in range(4):
                    if 0 <= x - i < 6 and 0 <= y - j < 5:
                        expected[x, y] += kernel[i, j] * image[x - i, y - j]
    assert_close(full("convolve2d", image, kernel), expected)


def _first_dim(kwargs):
    """The 1-D version of 2-D keyword arguments (their last dim)."""
    return {k: v[-1:] if isinstance(v, tuple) else v for k, v in kwargs.items()}


@pytest.mark.parametrize("kwargs", [
    {},
    dict(stride=2, padding=1),
    dict(stride=(1, 3), padding=((2, 0), (1, 3)), dilation=(2, 1)),
    dict(groups=2, padding="same"),
    dict(padding=2, padding_mode="reflect"),
])
def test_convolution_is_correlation_with_the_flipped_kernel(kwargs, rng):
    x, w = random_array(rng, (2, 4, 9, 7)), random_array(rng, (6, 4 // kwargs.get("groups", 1), 3, 4))
    b = random_array(rng, 6)
    flipped = w[..., ::-1, ::-1]
    assert_close(F.convolve2d(x, w, b, **kwargs), F.conv2d(x, flipped, b, **kwargs))
    assert not np.allclose(F.convolve2d(x, w, b, **kwargs), F.conv2d(x, w, b, **kwargs))
    assert_close(F.convolve1d(x[:, :, 0], w[:, :, 0], b, **_first_dim(kwargs)),
                 F.conv1d(x[:, :, 0], w[:, :, 0, ::-1], b, **_first_dim(kwargs)))


def test_convolution_with_the_symmetric_gaussian_equals_correlation(rng):
    assert np.array_equal(GAUSSIAN_5X5, GAUSSIAN_5X5[::-1, ::-1])
    x = random_array(rng, (2, 1, 13, 11))
    w = single(GAUSSIAN_5X5)
    assert_close(F.convolve2d(x, w, padding=2), F.conv2d(x, w, padding=2))
    np.testing.assert_allclose(F.conv2d(np.ones((1, 1, 5, 5)), w), [[[[1.0]]]], rtol=1e-12)  # it sums to 1


# ---------------------------------------------------------------------------------------
# Associativity and commutativity (true convolution only)
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("shapes", [((9, 7), (3, 2), (2, 4)), ((13, 5), (1, 3), (5, 5)), ((17,), (3,), (4,))],
                         ids=["2d", "2d-1xk", "1d"])
def test_true_convolution_is_associative_and_correlation_is_not(shapes, rng):
    """(x * f) * g == x * (f * g) with full padding, f * g being the full convolution of
    the kernels; the same bracketing with correlation gives a different result."""
    x, f, g = (random_array(rng, s) for s in shapes)
    nd = len(shapes[0])
    sizes = tuple(n + kf + kg - 2 for n, kf, kg in zip(*shapes))
    for op in (f"convolve{nd}d", f"conv{nd}d"):
        left, right = full(op, full(op, x, f), g), full(op, x, full(op, f, g))
        assert left.shape == right.shape == sizes
        if op.startswith("convolve"):
            assert_close(left, right)
        else:
            assert not np.allclose(left, right)


@pytest.mark.parametrize("shapes", [((7, 5), (3, 4)), ((1, 9), (2, 2)), ((13,), (4,))],
                         ids=["2d", "2d-row", "1d"])
def test_true_convolution_is_commutative_and_correlation_is_not(shapes, rng):
    """x * f == f * x with full padding; for correlation, f . x is x . f reversed."""
    x, f = (random_array(rng, s) for s in shapes)
    nd = len(shapes[0])
    assert_close(full(f"convolve{nd}d", x, f), full(f"convolve{nd}d", f, x))
    correlation = full(f"conv{nd}d", x, f)
    assert not np.allclose(correlation, full(f"conv{nd}d", f, x))
    assert_close(full(f"conv{nd}d", f, x), correlation[(slice(None, None, -1),) * nd])


# ---------------------------------------------------------------------------------------
# Transposed convolution is the adjoint of correlation
# ---------------------------------------------------------------------------------------

@st.composite
def adjoint_configs(draw):
    """A correlation (any stride, padding pairs, dilation, groups) and the
    output_padding that makes its transposed convolution give back the input's shape."""
    nd = draw(st.sampled_from([1, 2]))
    groups = draw(st.integers(1, 3))
    c_in, c_out = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    dims = []
    for _ in range(nd):
        n, s, d = draw(st.integers(1, 11)), draw(st.integers(1, 4)), draw(st.integers(1, 3))
        pad = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
        k = draw(st.integers(1, min(5, (n + sum(pad) - 1) // d + 1)))
        out = (n + sum(pad) - d * (k - 1) - 1) // s + 1
        # the input rows the stride skipped at the end come back as output_padding (< s)
        output_padding = n - ((out - 1) * s - sum(pad) + d * (k - 1) + 1)
        dims.append((n, k, s, d, pad, output_padding))
    sizes, kernel, stride, dilation, pads, output_padding = zip(*dims)
    one_int = len(set(pads)) == 1 and pads[0][0] == pads[0][1] and draw(st.booleans())
    return (nd, (draw(st.integers(1, 2)), c_in, *sizes), (c_out, c_in // groups, *kernel),
            dict(stride=stride, padding=pads[0][0] if one_int else pads, dilation=dilation, groups=groups),
            output_padding)


@settings(max_examples=150, deadline=None)
@given(config=adjoint_configs(), seed=st.integers(0, 2**32 - 1))
def test_conv_transpose_is_the_adjoint_of_correlation(config, seed):
    """<conv(x, w), y> == <x, conv_transpose(y, w)>: conv_transpose is the backward
    pass of correlation with respect to its input (same weight array)."""
    nd, x_shape, w_shape, kwargs, output_padding = config
    rng = np.random.default_rng(seed)
    x, w = random_array(rng, x_shape), random_array(rng, w_shape)
    conv_x = getattr(F, f"conv{nd}d")(x, w, **kwargs)
    y = random_array(rng, conv_x.shape)
    back = getattr(F, f"conv_transpose{nd}d")(y, w, output_padding=output_padding, **kwargs)
    assert back.shape == x.shape
    lhs, rhs = np.vdot(conv_x, y), np.vdot(x, back)
    scale = np.linalg.norm(conv_x) * np.linalg.norm(y) + np.linalg.norm(x) * np.linalg.norm(back)
    assert abs(lhs - rhs) <= 1e-12 * max(scale, 1.0), (lhs, rhs)


def test_conv_transpose_is_the_gradient_of_correlation(rng):
    """d/dx sum(conv(x, w) * y) = conv_transpose(y, w), checked by central differences."""
    x, w = random_array(rng, (1, 2, 5, 6)), random_array(rng, (3, 2, 3, 2))
    kwargs = dict(stride=2, padding=((1, 0), (2, 1)))
    y = random_array(rng, F.conv2d(x, w, **kwargs).shape)
    grad = F.conv_transpose2d(y, w, output_padding=(1, 1), **kwargs)
    def loss(x):
        return np.vdot(F.conv2d(x, w, **kwargs), y)
    eps, numeric = 1e-6, np.zeros_like(x)
    for i in np.ndindex(*x.shape):
        e = np.zeros_like(x)
        e[i] = eps
        numeric[i] = (loss(x + e) - loss(x - e)) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------------
# Parameter sharing: the parameter count
# ---------------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(groups=st.integers(1, 4), c_in_group=st.integers(1, 5), c_out_group=st.integers(1, 5),
       kernel=st.tuples(st.integers(1, 7), st.integers(1, 7)))
def test_parameter_count(groups, c_in_group, c_out_group, kernel):
    """(kh*kw*C_in/groups + 1)*C_out, and that is the size of the weight and bias that
    conv2d takes for such a layer."""
    c_in, c_out = groups * c_in_group, groups * c_out_group
    (kh, kw) = kernel
    count = pyconv.conv_param_count(c_in, c_out, kernel, groups)
    assert count == (kh * kw * c_in // groups + 1) * c_out
    weight, bias = np.zeros((c_out, c_in // groups, kh, kw)), np.zeros(c_out)
    F.conv2d(np.zeros((c_in, kh, kw)), weight, bias, groups=groups)  # the layout conv2d takes
    assert count == weight.size + bias.size
    assert pyconv.conv_param_count(c_in, c_out, kernel, groups, bias=False) == weight.size
    assert pyconv.conv_param_count(c_in, c_out, kh, groups) == (kh * c_in // groups + 1) * c_out


def test_parameter_count_of_the_notes_layer():
    """A 3x3 conv from 3 to 64 channels: 64 filters of 3*3*3 weights and a bias, 1792
    parameters whatever the image size (a dense layer would need H*W*3 * H*W*64)."""
    assert pyconv.conv_param_count(3, 64, (3, 3)) == 1792


# ---------------------------------------------------------------------------------------
# Output sizes
# ---------------------------------------------------------------------------------------

@st.composite
def geometries(draw, nd, strings=True):
    """(sizes, kernel, stride, padding argument, its (begin, end) pairs, dilation) of a
    window that fits in the padded input, the padding in every accepted form."""
    sizes = tuple(draw(st.integers(1, 40)) for _ in range(nd))
    stride = tuple(draw(st.integers(1, 5)) for _ in range(nd))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    form = draw(st.sampled_from(["int", "ints", "pairs"] + (["same", "valid"] if strings else [])))
    if form == "same":
        kernel = tuple(draw(st.integers(1, 6)) for _ in range(nd))
        pairs = ref.padding_pairs("same", sizes, kernel, stride, dilation)
        return sizes, kernel, stride, "same", pairs, dilation
    if form == "int":
        p = draw(st.integers(0, 4))
        padding, pairs = p, ((p, p),) * nd
    elif form == "ints":
        padding = tuple(draw(st.integers(0, 4)) for _ in range(nd))
        pairs = tuple((p, p) for p in padding)
    elif form == "pairs":
        padding = pairs = tuple((draw(st.integers(0, 4)), draw(st.integers(0, 4))) for _ in range(nd))
    else:
        padding, pairs = "valid", ((0, 0),) * nd
    kernel = tuple(draw(st.integers(1, min(7, (n + sum(p) - 1) // d + 1)))
                   for n, p, d in zip(sizes, pairs, dilation))
    return sizes, kernel, stride, padding, pairs, dilation


@settings(max_examples=100, deadline=None)
@given(geometry=geometries(2))
def test_conv_output_size(geometry):
    """floor((in + p_begin + p_end - d*(k - 1) - 1) / s) + 1, from the helper and from conv2d;
    'same' gives ceil(in / s)."""
    sizes, kernel, stride, padding, pairs, dilation = geometry
    expected = tuple((n + sum(p) - d * (k - 1) - 1) // s + 1
                     for n, k, s, p, d in zip(sizes, kernel, stride, pairs, dilation))
    assert pyconv.conv_output_size(sizes, kernel, stride, padding, dilation) == expected
    y = F.conv2d(np.zeros((1,) + sizes), np.zeros((1, 1) + kernel), stride=stride,
                 padding=padding, dilation=dilation)
    assert y.shape[1:] == expected
    if padding == "same":
        assert expected == tuple(-(-n // s) for n, s in zip(sizes, stride))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), k=st.integers(1, 7), s=st.integers(1, 5), p=st.integers(0, 4))
def test_the_notes_formula(n, k, s, p):
    """(W - F + 2P)/S + 1 with symmetric padding and no dilation; an int for an int size."""
    if n + 2 * p < k:
        return
    size = pyconv.conv_output_size(n, k, s, p)
    assert isinstance(size, int)
    assert size == (n - k + 2 * p) // s + 1
    assert F.conv1d(np.zeros((1, n)), np.zeros((1, 1, k)), stride=s, padding=p).shape == (1, size)


@settings(max_examples=80, deadline=None)
@given(n=st.integers(1, 20), k=st.integers(1, 6), s=st.integers(1, 5), d=st.integers(1, 3),
       pads=st.tuples(st.integers(0, 4), st.integers(0, 4)), data=st.data())
def test_conv_transpose_output_size(n, k, s, d, pads, data):
    """(in - 1)*s - p_begin - p_end + d*(k - 1) + output_padding + 1."""
    op = data.draw(st.integers(0, max(s, d) - 1), label="output_padding")
    expected = (n - 1) * s - sum(pads) + d * (k - 1) + op + 1
    if expected < 1:
        return
    size = pyconv.conv_transpose_output_size(n, k, s, (pads,), op, d)
    assert size == expected
    y = F.conv_transpose1d(np.zeros((1, n)), np.zeros((1, 1, k)), stride=s, padding=(pads,),
                           output_padding=op, dilation=d)
    assert y.shape == (1, size)


@settings(max_examples=100, deadline=None)
@given(geometry=geometries(2), ceil_mode=st.booleans(), default_stride=st.booleans())
def test_pool_output_size(geometry, ceil_mode, default_stride):
    """The helper, max_pool2d and avg_pool2d agree with the reference's window count;
    in floor mode that is the conv formula, in ceil mode at most one more."""
    sizes, kernel, stride, padding, pairs, dilation = geometry
    if default_stride:
        stride, pairs = None, ref.padding_pairs(padding, sizes, kernel, kernel, dilation)
    steps = kernel if stride is None else stride
    expected = tuple(ref.pool_output_size(*a, ceil_mode) for a in zip(sizes, kernel, steps, pairs, dilation))
    assert pyconv.pool_output_size(sizes, kernel, stride, padding, dilation, ceil_mode) == expected
    x = np.zeros((1,) + sizes)
    assert F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode).shape[1:] == expected
    assert F.avg_pool2d(x, kernel, stride, padding, ceil_mode, dilation=dilation).shape[1:] == expected
    floor = tuple((n + sum(p) - d * (k - 1) - 1) // s + 1
                  for n, k, s, p, d in zip(sizes, kernel, steps, pairs, dilation))
    if not ceil_mode:
        assert expected == floor


# ---------------------------------------------------------------------------------------
# Receptive field through depth
# ---------------------------------------------------------------------------------------

def bump_each_pixel(layers, shape):
    """changed[r, c, i, j]: does output (i, j) of a stack of single-channel correlations,
    layers = [(kernel, stride), ...], change when input pixel (r, c) does?

    Image 0 of a batch is the input, image 1 + r*W + c the input with pixel (r, c)
    bumped; weights and inputs are positive, so no cancellation can hide a change.
    """
    rng = np.random.default_rng(0)
    x = rng.random(shape)
    batch = np.repeat(x[None, None], 1 + x.size, axis=0)
    for p, pixel in enumerate(np.ndindex(*shape)):
        batch[(1 + p, 0) + pixel] += 1.0
    for kernel, stride in layers:
        batch = F.conv2d(batch, rng.random((1, 1) + kernel) + 0.5, stride=stride)
    return (batch[1:, 0] != batch[0, 0]).reshape(shape + batch.shape[2:])


@pytest.mark.parametrize("layers, size", [
    ([((3, 3), 1)], 3),
    ([((3, 3), 1), ((3, 3), 1)], 5),            # 3 + (3 - 1)*1
    ([((3, 3), 1), ((3, 3), 1), ((3, 3), 1)], 7),
    ([((3, 3), 2), ((3, 3), 1)], 7),            # 3 + (3 - 1)*2: the jump doubled
    ([((2, 2), 2), ((3, 3), 1)], 6),            # 2 + (3 - 1)*2
])
def test_receptive_field_grows_with_depth(layers, size):
    """Output (1, 1) of the stack sees a size x size block of the input, starting one
    jump in: the receptive field grows by (k - 1)*jump per layer, and the jump
    multiplies by each layer's stride."""
    field = bump_each_pixel(layers, (9, 9))[:, :, 1, 1]
    jump = int(np.prod([stride for _, stride in layers]))
    expected = np.zeros((9, 9), bool)
    expected[jump:jump + size, jump:jump + size] = True
    np.testing.assert_array_equal(field, expected)


def test_one_input_pixel_reaches_a_5x5_block_through_two_3x3_convs():
    """Output (i, j) of two valid 3x3 convs sees input [i:i+5, j:j+5], so pixel (r, c)
    reaches the outputs i in [r-4, r], j in [c-4, c] (clipped at the borders)."""
    changed = bump_each_pixel([((3, 3), 1), ((3, 3), 1)], (9, 9))
    assert changed.shape == (9, 9, 5, 5)
    np.testing.assert_array_equal(changed[4, 4], np.ones((5, 5), bool))
    expected = np.zeros((5, 5), bool)
    expected[2:5, 0:3] = True
    np.testing.assert_array_equal(changed[6, 2], expected)
    assert changed.sum(axis=(2, 3)).max() == 25


# ---------------------------------------------------------------------------------------
# Pooling: tolerance to small translations
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("peak_at", [(2, 3), (3, 2), (3, 3)])
def test_max_pool_ignores_a_small_shift_of_a_peak_within_its_window(peak_at, rng):
    """A 2x2 max pool: moving a single peak within its window leaves the output as it was;
    moving it into the next window does not."""
    background = rng.random((1, 1, 8, 8))

    def pooled(at):
        x = background.copy()
        x[(0, 0) + at] = 10.0
        return F.max_pool2d(x, 2)
    np.testing.assert_array_equal(pooled(peak_at), pooled((2, 2)))
    assert pooled((2, 2))[0, 0, 1, 1] == 10.0
    assert not np.array_equal(pooled((2, 4)), pooled((2, 2)))


def test_correlation_does_see_the_same_shift(rng):
    """The tolerance comes from pooling: the conv output itself moves with the peak."""
    x = np.zeros((1, 1, 8, 8))
    x[0, 0, 2, 2] = 10.0
    moved = np.roll(x, 1, axis=3)
    w = random_array(rng, (1, 1, 3, 3))
    assert not np.allclose(F.conv2d(x, w), F.conv2d(moved, w))


@given(size=st.integers(0, 40), kernel=st.integers(1, 6), stride=st.integers(1, 5),
       dilation=st.integers(1, 3), begin=st.integers(0, 12), end=st.integers(0, 12))
@settings(max_examples=300, deadline=None)
def test_ceil_mode_never_gives_fewer_windows_than_floor(size, kernel, stride, dilation, begin, end):
    """pyconv's pooling padding may exceed half the kernel; ceil mode then still only
    *adds* the partial last window (when it starts inside the input or leading pad)."""
    args = (size, kernel, stride, ((begin, end),), dilation)
    try:
        floor = pyconv.pool_output_size(*args, ceil_mode=False)
    except ValueError:  # kernel larger than the padded input
        return
    ceil = pyconv.pool_output_size(*args, ceil_mode=True)
    assert floor <= ceil <= floor + 1
    assert pyconv.pool_output_size(1, 1, 1, 1, ceil_mode=True) == 3 == pyconv.pool_output_size(1, 1, 1, 1)
