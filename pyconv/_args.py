"""Argument checking and shape arithmetic shared by the functional API and the layers.

Every public entry point turns its arguments into plain tuples of Python ints here,
*before* anything is allocated. Anything invalid raises ``TypeError`` (wrong kind of
value) or ``ValueError`` (right kind, bad value) with a message that names the
parameter and the value -- never an ``assert`` and never a crash in the kernels.

Sizes are computed with Python's unbounded ints and then checked against ``SIZE_LIMIT``
so that every index the kernels compute fits comfortably in a signed 64-bit integer.
"""

import numbers
import operator

import numpy as np

SIZE_LIMIT = 2**62  # every size and intermediate index stays below this (int64-safe)
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def as_int(value, name, expected="an int"):
    """``value`` as a Python int; bools, floats and strings are a TypeError."""
    if type(value) is int and -SIZE_LIMIT < value < SIZE_LIMIT:
        return value  # the common case, without the ABC checks (a few us per call)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be {expected}, got {value!r}")
    value = operator.index(value)
    if abs(value) >= SIZE_LIMIT:
        raise ValueError(f"{name}={value} is too large (the limit is 2**62)")
    return value


def _is_sequence(value):
    return isinstance(value, (tuple, list)) or (isinstance(value, np.ndarray) and value.ndim == 1)


def int_tuple(value, n, name, minimum):
    """An int or a length-``n`` sequence of ints, each ``>= minimum``, as an n-tuple."""
    if type(value) is int and minimum <= value < SIZE_LIMIT:
        return (value,) * n  # the common case, without the generic checks below
    if _is_sequence(value):
        items = list(value)
        if len(items) != n:
            raise ValueError(f"{name} must be an int or a tuple of {n} ints, got {value!r}")
    else:
        items = [value] * n
    result = tuple(as_int(v, name, "an int or a tuple of ints") for v in items)
    for v in result:
        if v < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return result


def positive_int(value, name):
    v = as_int(value, name)
    if v < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return v


def as_bool(value, name):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be a bool, got {value!r}")


def padding_spec(padding, n, name="padding", allow_strings=True):
    """Parse ``padding`` without resolving 'same'.

    Accepted: an int (all sides); n ints (both sides of each dim); n (begin, end)
    pairs; and, where ``allow_strings``, 'valid' or 'same'. Returns the string or a
    tuple of n (begin, end) pairs.
    """
    if type(padding) is int and 0 <= padding < SIZE_LIMIT:
        return ((padding, padding),) * n  # the common case
    if isinstance(padding, str):
        if allow_strings and padding in ("same", "valid"):
            return padding
        allowed = "an int, a tuple of ints or (begin, end) pairs" + (
            ", 'same' or 'valid'" if allow_strings else ""
        )
        raise ValueError(f"{name} must be {allowed}, got {padding!r}")
    if _is_sequence(padding):
        items = list(padding)
        if len(items) != n:
            raise ValueError(
                f"{name} must be an int, a tuple of {n} ints or {n} (begin, end) pairs, got {padding!r}"
            )
    else:
        items = [padding] * n
    pairs = []
    for item in items:
        if _is_sequence(item):
            if len(item) != 2:
                raise ValueError(f"{name} pairs must be (begin, end), got {padding!r}")
            pair = (as_int(item[0], name, "ints"), as_int(item[1], name, "ints"))
        else:
            p = as_int(item, name, "an int, a tuple of ints or (begin, end) pairs")
            pair = (p, p)
        if pair[0] < 0 or pair[1] < 0:
            raise ValueError(f"{name} must be non-negative, got {padding!r}")
        pairs.append(pair)
    return tuple(pairs)


def same_padding(size, kernel, stride, dilation):
    """(begin, end) pads for 'same': output ceil(size/stride), the odd one at the end."""
    total = max((-(-size // stride) - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    return (total // 2, total - total // 2)


def resolve_padding(spec, sizes, kernels, strides, dilations):
    """Turn a padding_spec result into n (begin, end) pairs for these input sizes."""
    if spec == "valid":
        return tuple((0, 0) for _ in sizes)
    if spec == "same":
        return tuple(same_padding(*a) for a in zip(sizes, kernels, strides, dilations))
    return spec


def conv_sizes(op, sizes, kernels, strides, pads, dilations):
    """Output sizes of correlation: floor((in + pb + pe - d*(k-1) - 1) / s) + 1, each >= 1."""
    out = []
    for size, k, s, (pb, pe), d in zip(sizes, kernels, strides, pads, dilations):
        padded, span = _padded_and_span(op, "kernel size", size, k, pb, pe, d)
        out.append((padded - span) // s + 1)
    return tuple(out)


def _padded_and_span(op, what, size, k, pb, pe, d):
    """(padded input size, window span d*(k-1)+1), checked: both int64-safe, and the
    window no larger than the padded input."""
    padded, span = size + pb + pe, d * (k - 1) + 1
    check_size(op, "padding", padded)
    check_size(op, "dilation", span)
    if span > padded:
        raise ValueError(
            f"{op}: {what} {k} with dilation {d} spans {span} elements, more than "
            f"the padded input ({size} + {pb} + {pe} = {padded})"
        )
    return padded, span


def conv_transpose_sizes(op, sizes, kernels, strides, pads, dilations, output_padding):
    """Output sizes of transposed convolution: (in-1)*s - pb - pe + d*(k-1) + op + 1, each >= 1."""
    out = []
    for size, k, s, (pb, pe), d, op_ in zip(sizes, kernels, strides, pads, dilations, output_padding):
        if op_ >= s and op_ >= d:
            raise ValueError(
                f"{op}: output_padding ({op_}) must be smaller than either stride ({s}) "
                f"or dilation ({d})"
            )
        check_size(op, "dilation", d * (k - 1) + 1)
        check_size(op, "stride", (size - 1) * s + 1)
        full = (size - 1) * s + d * (k - 1) + op_ + 1
        check_size(op, "stride and dilation", full)
        o = full - pb - pe
        if o < 1:
            raise ValueError(
                f"{op}: padding ({pb}, {pe}) removes the whole output (full size {full}); "
                f"the output size would be {o}"
            )
        out.append(o)
    return tuple(out)


def pool_sizes(op, sizes, kernels, strides, pads, dilations, ceil_mode):
    """Output sizes of pooling, each >= 1: the windows that fit in the padded input,
    and in ceil mode one more, partial window if it starts inside the input or the
    leading padding (PyTorch's rule; ceil mode never gives fewer windows than floor
    mode, also with pads beyond half the kernel)."""
    out = []
    for size, k, s, (pb, pe), d in zip(sizes, kernels, strides, pads, dilations):
        padded, span = _padded_and_span(op, "kernel_size", size, k, pb, pe, d)
        o = (padded - span) // s + 1
        if ceil_mode and (o - 1) * s + span < padded and o * s < size + pb:
            o += 1
        out.append(o)
    return tuple(out)


def check_size(op, name, value):
    if value >= SIZE_LIMIT:
        raise ValueError(f"{op}: {name} gives a size of {value}, beyond 64-bit indexing (2**62)")


def check_elements(op, shape):
    """Raise if an array of ``shape`` is beyond 64-bit indexing -- also an empty one
    (N*C = 0) whose other dims alone overflow: NumPy refuses such a shape too."""
    total = nonzero = 1
    for s in shape:
        total *= s
        nonzero *= max(s, 1)
    if nonzero * 8 >= SIZE_LIMIT:
        raise ValueError(f"{op}: the output shape {tuple(shape)} is beyond 64-bit indexing "
                         f"({total} elements; the limit is 2**59 non-empty elements)")
