"""Naive NumPy versions of every operator in ``pyconv.functional`` -- the executable spec.

Each function follows the definition of its operator as directly as NumPy allows: pad
the input, walk the output positions one by one, cut each window out with slicing and
reduce it. Nothing is clever and nothing is fast; every line can be checked against
shared/DOMAIN.md, and the tests check pyconv against these lines. Everything is
computed in float64 and returned as float64 (indices as int64).

Conventions, as in ``pyconv.functional`` (signatures and defaults are the same):

* input ``(N, C, *spatial)`` or unbatched ``(C, *spatial)``; one n-D code path serves
  1-D and 2-D;
* conv weight ``(C_out, C_in/groups, *k)``; transposed-conv weight ``(C_in, C_out/groups, *k)``;
* ``padding``: an int, one int per spatial dim, one ``(begin, end)`` pair per dim, or
  (not for transposed convolution) ``'same'`` / ``'valid'``.
"""

import numpy as np

__all__ = [
    "conv1d", "conv2d", "convolve1d", "convolve2d",
    "conv_transpose1d", "conv_transpose2d",
    "max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d",
    "adaptive_max_pool1d", "adaptive_max_pool2d",
]


# ---------------------------------------------------------------------------------------
# Arguments and shapes
# ---------------------------------------------------------------------------------------

def ceil_div(a, b):
    """ceil(a / b) for ints, exactly."""
    return -(-a // b)


def as_tuple(value, nd):
    """An int or a sequence of nd ints, as an nd-tuple."""
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * nd


def same_padding(size, kernel, stride=1, dilation=1):
    """(begin, end) pads for 'same': the output has ceil(size/stride) elements; the total
    pad is split with the smaller half first (TensorFlow / ONNX SAME_UPPER)."""
    span = dilation * (kernel - 1) + 1
    total = max((ceil_div(size, stride) - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


def padding_pairs(padding, sizes, kernel, stride, dilation):
    """Any padding argument as one (begin, end) pair per spatial dim."""
    nd = len(sizes)
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * nd
        if padding != "same":
            raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}")
        return tuple(same_padding(*args) for args in zip(sizes, kernel, stride, dilation))
    return tuple((p, p) if np.ndim(p) == 0 else tuple(p) for p in as_tuple(padding, nd))


def window_count(padded, kernel, stride, dilation):
    """How many windows of kernel taps, dilation apart, fit in a padded axis when their
    starts are stride apart: floor((padded - span) / stride) + 1."""
    span = dilation * (kernel - 1) + 1
    return (padded - span) // stride + 1


def pool_output_size(size, kernel, stride, pads, dilation, ceil_mode):
    """Windows along one axis of pooling, counted one by one.

    Floor mode: the windows that fit in the padded input. Ceil mode: one more, partial
    window when the padded input is not covered yet -- kept only if it starts inside
    the input or the leading padding (PyTorch's rule). Ceil mode never has fewer
    windows than floor mode, also with pads beyond half the kernel.
    """
    (begin, end), span = pads, dilation * (kernel - 1) + 1
    padded = begin + size + end
    count = 0
    while count * stride + span <= padded:
        count += 1
    if ceil_mode and (count - 1) * stride + span < padded and count * stride < begin + size:
        count += 1
    return count


def _batched(x, nd):
    """(x as float64 (N, C, *spatial), whether it was batched)."""
    x = np.asarray(x, dtype=np.float64)
    return (x, True) if x.ndim == nd + 2 else (x[None], False)


def _taps(starts, kernel, dilation):
    """Slices that pick the taps start + u*dilation, u < k, along each spatial axis."""
    return tuple(slice(s, s + d * (k - 1) + 1, d) for s, k, d in zip(starts, kernel, dilation))


# ---------------------------------------------------------------------------------------
# Padding
# ---------------------------------------------------------------------------------------

def source_index(i, n, mode):
    """The element of an axis of n elements that position i of the padded axis shows
    (i < 0: leading padding, i >= n: trailing padding); None for a zero.

    reflect mirrors about the end elements without repeating them (-1 -> 1, n -> n-2),
    replicate repeats the end element, circular wraps around.
    """
    if 0 <= i < n:
        return i
    if mode == "zeros":
        return None
    if mode == "replicate":
        return min(max(i, 0), n - 1)
    if mode == "circular":
        return i % n
    if mode == "reflect":
        period = max(2 * (n - 1), 1)
        i %= period
        return i if i < n else period - i
    raise ValueError(f"unknown padding mode {mode!r}")


def pad(x, pads, mode="zeros"):
    """x padded on its last len(pads) axes by pads = ((begin, end), ...), one axis at a time."""
    x = np.asarray(x, dtype=np.float64)
    for axis, (begin, end) in zip(range(x.ndim - len(pads), x.ndim), pads):
        n = x.shape[axis]
        along = np.moveaxis(x, axis, 0)
        padded = np.zeros((begin + n + end,) + along.shape[1:])
        for j, i in enumerate(range(-begin, n + end)):
            source = source_index(i, n, mode)
            if source is not None:
                padded[j] = along[source]
        x = np.moveaxis(padded, 0, axis)
    return x


# ---------------------------------------------------------------------------------------
# Correlation and true convolution
# ---------------------------------------------------------------------------------------

def _correlate(nd, input, weight, bias, stride, padding, dilation, groups, padding_mode):
    """y[n, o, i] = bias[o] + sum over the channels c of o's group and the taps u of
    weight[o, c, u] * padded_x[n, c, i*stride + u*dilation]."""
    x, batched = _batched(input, nd)
    w = np.asarray(weight, dtype=np.float64)
    stride, dilation = as_tuple(stride, nd), as_tuple(dilation, nd)
    c_out, c_in_group, kernel = w.shape[0], w.shape[1], w.shape[2:]
    pads = padding_pairs(padding, x.shape[2:], kernel, stride, dilation)
    xp = pad(x, pads, padding_mode)
    out_sizes = tuple(window_count(*a) for a in zip(xp.shape[2:], kernel, stride, dilation))

    y = np.zeros((x.shape[0], c_out) + out_sizes)
    c_out_group = c_out // groups
    for o in range(c_out):
        g = o // c_out_group
        group_input = xp[:, g * c_in_group:(g + 1) * c_in_group]  # the filter spans its group
        for pos in np.ndindex(*out_sizes):
            starts = [i * s for i, s in zip(pos, stride)]
            window = group_input[(slice(None), slice(None)) + _taps(starts, kernel, dilation)]
            y[(slice(None), o) + pos] = np.sum(window * w[o], axis=tuple(range(1, nd + 2)))
        if bias is not None:
            y[:, o] += np.asarray(bias, dtype=np.float64)[o]
    return y if batched else y[0]


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           padding_mode="zeros"):
    return _correlate(1, input, weight, bias, stride, padding, dilation, groups, padding_mode)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           padding_mode="zeros"):
    return _correlate(2, input, weight, bias, stride, padding, dilation, groups, padding_mode)


def convolve1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
               padding_mode="zeros"):
    """True convolution: correlation with the kernel flipped, (F * I)(x) = sum F(i) I(x - i)."""
    flipped = np.asarray(weight)[..., ::-1]
    return _correlate(1, input, flipped, bias, stride, padding, dilation, groups, padding_mode)


def convolve2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
               padding_mode="zeros"):
    """True convolution: correlation with the kernel flipped in both spatial axes."""
    flipped = np.asarray(weight)[..., ::-1, ::-1]
    return _correlate(2, input, flipped, bias, stride, padding, dilation, groups, padding_mode)


# ---------------------------------------------------------------------------------------
# Transposed convolution
# ---------------------------------------------------------------------------------------

def _conv_transpose(nd, input, weight, bias, stride, padding, output_padding, groups, dilation):
    """The scatter-add definition: each input element x[n, c, i] stamps its filters
    weight[c] (dilated, scaled by it) into the full output at i*stride; output_padding
    adds rows at the end that no stamp reaches; then the padding is cropped off."""
    x, batched = _batched(input, nd)
    w = np.asarray(weight, dtype=np.float64)
    stride, dilation = as_tuple(stride, nd), as_tuple(dilation, nd)
    output_padding = as_tuple(output_padding, nd)
    c_in, sizes = x.shape[1], x.shape[2:]
    c_out_group, kernel = w.shape[1], w.shape[2:]
    pads = padding_pairs(padding, sizes, kernel, stride, dilation)
    full = tuple((i - 1) * s + d * (k - 1) + 1 + op
                 for i, k, s, d, op in zip(sizes, kernel, stride, dilation, output_padding))

    y = np.zeros((x.shape[0], c_out_group * groups) + full)
    for c in range(c_in):
        g = c // (c_in // groups)
        group_outputs = slice(g * c_out_group, (g + 1) * c_out_group)
        for pos in np.ndindex(*sizes):
            value = x[(slice(None), c) + pos].reshape((-1,) + (1,) * (nd + 1))  # (N, 1, 1...)
            starts = [i * s for i, s in zip(pos, stride)]
            y[(slice(None), group_outputs) + _taps(starts, kernel, dilation)] += value * w[c]
    crop = tuple(slice(begin, f - end) for f, (begin, end) in zip(full, pads))
    y = y[(slice(None), slice(None)) + crop]
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64).reshape((-1,) + (1,) * nd)
    return y if batched else y[0]


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                     groups=1, dilation=1):
    return _conv_transpose(1, input, weight, bias, stride, padding, output_padding, groups, dilation)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                     groups=1, dilation=1):
    return _conv_transpose(2, input, weight, bias, stride, padding, output_padding, groups, dilation)


# ---------------------------------------------------------------------------------------
# Pooling
# ---------------------------------------------------------------------------------------

def _pool_windows(out_sizes, sizes, kernel, stride, pads, dilation):
    """For every output position: (position, the in-input tap coordinates per axis, the
    number of taps inside the *padded* input).

    Tap u of output o along an axis sits at o*stride - begin + u*dilation; taps outside
    [0, size) are padding, taps at or beyond size + end are the ceil-mode overhang.
    """
    for pos in np.ndindex(*out_sizes):
        inside, in_padded = [], 1
        for o, n, k, s, (begin, end), d in zip(pos, sizes, kernel, stride, pads, dilation):
            coords = [o * s - begin + u * d for u in range(k)]
            inside.append([c for c in coords if 0 <= c < n])
            in_padded *= sum(1 for c in coords if -begin <= c < n + end)
        yield pos, inside, in_padded


def _planes(x, nd):
    """x (..., *spatial) as (P, *spatial): every (n, c) plane is pooled on its own."""
    return x.reshape((int(np.prod(x.shape[:-nd])),) + x.shape[-nd:])


def _pool_geometry(nd, x, kernel_size, stride, padding, dilation, ceil_mode):
    """(x as float64 planes, output sizes, the arguments for _pool_windows)."""
    x = np.asarray(x, dtype=np.float64)
    sizes = x.shape[-nd:]
    kernel = as_tuple(kernel_size, nd)
    stride = kernel if stride is None else as_tuple(stride, nd)
    dilation = as_tuple(dilation, nd)
    pads = padding_pairs(padding, sizes, kernel, stride, dilation)
    out_sizes = tuple(pool_output_size(*a, ceil_mode) for a in zip(sizes, kernel, stride, pads, dilation))
    return _planes(x, nd), out_sizes, (out_sizes, sizes, kernel, stride, pads, dilation)


def _window_values(planes, taps, sizes):
    """(values (P, taps) in row-major window order, their flat positions in the plane)."""
    grid = np.meshgrid(*(np.asarray(t, dtype=np.intp) for t in taps), indexing="ij")
    values = planes[(slice(None),) + tuple(grid)].reshape(planes.shape[0], grid[0].size)
    return values, np.ravel_multi_index(grid, sizes).ravel()


def argmax_nan_last(values):
    """Which element of a window is its max: the first of equal maxima, except that NaN
    beats everything and then the *last* NaN in row-major order wins (PyTorch's CPU kernel)."""
    nans = np.flatnonzero(np.isnan(values))
    return int(nans[-1]) if nans.size else int(np.argmax(values))


def _max_pool(nd, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices):
    planes, out_sizes, geometry = _pool_geometry(
        nd, input, kernel_size, stride, padding, dilation, ceil_mode)
    y = np.zeros((planes.shape[0],) + out_sizes)            # a window of padding only: 0 ...
    indices = np.full(y.shape, -1, dtype=np.int64)          # ... at index -1
    for pos, taps, _ in _pool_windows(*geometry):
        if min(len(t) for t in taps) == 0:
            continue
        values, positions = _window_values(planes, taps, planes.shape[1:])
        for p in range(planes.shape[0]):
            best = argmax_nan_last(values[p])
            y[(p,) + pos] = values[p, best]
            indices[(p,) + pos] = positions[best]
    shape = np.shape(input)[:-nd] + out_sizes
    return (y.reshape(shape), indices.reshape(shape)) if return_indices else y.reshape(shape)


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    return _max_pool(1, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    return _max_pool(2, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def _avg_pool(nd, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
              divisor_override, dilation):
    """Sum of the real taps (padding is zero) / divisor, where the divisor is
    divisor_override if given; else with count_include_pad the taps inside the padded
    input (never the ceil-mode overhang); else the real taps. A divisor of 0 gives 0."""
    planes, out_sizes, geometry = _pool_geometry(
        nd, input, kernel_size, stride, padding, dilation, ceil_mode)
    y = np.zeros((planes.shape[0],) + out_sizes)
    for pos, taps, in_padded in _pool_windows(*geometry):
        values, _ = _window_values(planes, taps, planes.shape[1:])
        if divisor_override is not None:
            divisor = divisor_override
        elif count_include_pad:
            divisor = in_padded
        else:
            divisor = values.shape[1]
        y[(slice(None),) + pos] = values.sum(axis=1) / divisor if divisor else 0.0
    return y.reshape(np.shape(input)[:-nd] + out_sizes)


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None, *, dilation=1):
    return _avg_pool(1, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override, dilation)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None, *, dilation=1):
    return _avg_pool(2, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override, dilation)


# ---------------------------------------------------------------------------------------
# Adaptive pooling
# ---------------------------------------------------------------------------------------

def adaptive_range(i, size, out_size):
    """Output i of out_size covers input [floor(i*size/out_size), ceil((i+1)*size/out_size))."""
    return (i * size) // out_size, ceil_div((i + 1) * size, out_size)


def _adaptive(nd, input, output_size, is_max, return_indices):
    x = np.asarray(input, dtype=np.float64)
    sizes = x.shape[-nd:]
    out_sizes = tuple(s if o is None else o for o, s in zip(as_tuple(output_size, nd), sizes))
    planes = _planes(x, nd)
    y = np.zeros((planes.shape[0],) + out_sizes)
    indices = np.zeros(y.shape, dtype=np.int64)
    for pos in np.ndindex(*out_sizes):
        taps = [list(range(*adaptive_range(i, n, o))) for i, n, o in zip(pos, sizes, out_sizes)]
        values, positions = _window_values(planes, taps, sizes)
        for p in range(planes.shape[0]):
            if is_max:
                best = argmax_nan_last(values[p])
                y[(p,) + pos], indices[(p,) + pos] = values[p, best], positions[best]
            else:
                y[(p,) + pos] = values[p].mean()
    shape = x.shape[:-nd] + out_sizes
    return (y.reshape(shape), indices.reshape(shape)) if return_indices else y.reshape(shape)


def adaptive_avg_pool1d(input, output_size):
    return _adaptive(1, input, output_size, False, False)


def adaptive_avg_pool2d(input, output_size):
    return _adaptive(2, input, output_size, False, False)


def adaptive_max_pool1d(input, output_size, return_indices=False):
    return _adaptive(1, input, output_size, True, return_indices)


def adaptive_max_pool2d(input, output_size, return_indices=False):
    return _adaptive(2, input, output_size, True, return_indices)
