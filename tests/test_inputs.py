"""Dtypes and memory layouts of the operands, and ``out=``.

* float32 and float64 compute natively; the result dtype is ``np.result_type`` of the
  operands; integer and bool operands compute in float64; float16 computes in float32
  and is returned as float16; Python lists are accepted.
* Any layout -- strided, negative strides, Fortran order, read-only, big-endian,
  misaligned -- gives *bitwise* the result of the contiguous native copy, and no input
  is ever modified.
* ``out=`` is written and returned (the same object), equal to the call without it.
"""
import numpy as np
import pytest

import pyconv.functional as F

RNG_SEED = 1234

# name -> (function, shapes of (input, weight, bias) -- None where absent, keyword arguments).
# Spatial sizes are odd and not multiples of any vector width.
OPS = {
    "conv1d": (F.conv1d, ((2, 3, 13), (4, 3, 3), (4,)), {"stride": 2, "padding": 1}),
    "conv2d": (F.conv2d, ((2, 4, 9, 11), (6, 2, 3, 2), (6,)), {"padding": (1, 2), "groups": 2}),
    "conv2d_reflect": (F.conv2d, ((1, 3, 7, 8), (2, 3, 3, 3), (2,)),
                       {"padding": 2, "padding_mode": "reflect", "dilation": (1, 2)}),
    "conv2d_same": (F.conv2d, ((1, 2, 8, 7), (3, 2, 4, 2), None), {"padding": "same", "stride": 2}),
    "convolve1d": (F.convolve1d, ((2, 2, 11), (3, 2, 4), (3,)), {"dilation": 2}),
    "convolve2d": (F.convolve2d, ((1, 3, 9, 10), (2, 3, 3, 4), (2,)), {"stride": (2, 1)}),
    "conv_transpose1d": (F.conv_transpose1d, ((2, 4, 7), (4, 3, 3), (3,)),
                         {"stride": 2, "output_padding": 1, "padding": 1}),
    "conv_transpose2d": (F.conv_transpose2d, ((2, 4, 5, 6), (4, 1, 3, 2), (2,)),
                         {"stride": (2, 3), "groups": 2, "dilation": (1, 2)}),
    # Many output channels: what an algorithm choice by shape would route elsewhere.
    "conv2d_wide": (F.conv2d, ((1, 5, 9, 13), (19, 5, 3, 3), (19,)), {"padding": 1, "stride": (1, 2)}),
    "conv_transpose2d_wide": (F.conv_transpose2d, ((1, 6, 5, 7), (6, 11, 3, 2), (22,)),
                              {"stride": 2, "groups": 2, "padding": (1, 0)}),
    "max_pool1d": (F.max_pool1d, ((2, 3, 17), None, None),
                   {"kernel_size": 3, "stride": 2, "padding": 1, "return_indices": True}),
    "max_pool2d": (F.max_pool2d, ((2, 3, 11, 9), None, None),
                   {"kernel_size": (3, 2), "ceil_mode": True, "return_indices": True}),
    "avg_pool1d": (F.avg_pool1d, ((2, 3, 17), None, None),
                   {"kernel_size": 4, "stride": 3, "padding": 2, "count_include_pad": False}),
    "avg_pool2d": (F.avg_pool2d, ((2, 3, 11, 9), None, None),
                   {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    "adaptive_avg_pool1d": (F.adaptive_avg_pool1d, ((2, 3, 17), None, None), {"output_size": 5}),
    "adaptive_avg_pool2d": (F.adaptive_avg_pool2d, ((2, 3, 11, 9), None, None), {"output_size": (4, 3)}),
    "adaptive_max_pool1d": (F.adaptive_max_pool1d, ((2, 3, 17), None, None),
                            {"output_size": 6, "return_indices": True}),
    "adaptive_max_pool2d": (F.adaptive_max_pool2d, ((2, 3, 11, 9), None, None),
                            {"output_size": (3, 4), "return_indices": True}),
}


def _operands(name, dtype=np.float64):
    """The op's (input, weight, bias) as arrays of ``dtype`` (None where absent)."""
    rng = np.random.default_rng(RNG_SEED)
    shapes = OPS[name][1]
    return [None if s is None else rng.standard_normal(s).astype(dtype) for s in shapes]


def _run(name, arrays, **extra):
    f, _, kwargs = OPS[name]
    x, w, b = arrays
    if w is None:
        return f(x, **kwargs, **extra)
    return f(x, w, b, **kwargs, **extra)


def _as_tuple(result):
    return result if isinstance(result, tuple) else (result,)


def _assert_bitwise(actual, expected):
    actual, expected = _as_tuple(actual), _as_tuple(expected)
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert a.dtype == e.dtype and a.shape == e.shape
        assert a.tobytes() == e.tobytes()


# ---------------------------------------------------------------------------------------
# Layouts
# ---------------------------------------------------------------------------------------

def _strided(a):
    """A view with every other element along each axis of a larger array."""
    big = np.zeros(tuple(2 * s + 1 for s in a.shape), a.dtype)
    view = big[tuple(slice(1, None, 2) for _ in a.shape)]
    view[...] = a
    return view


def _negative_strides(a):
    return np.ascontiguousarray(a[(slice(None, None, -1),) * a.ndim])[(slice(None, None, -1),) * a.ndim]


def _fortran(a):
    return np.asfortranarray(a)


def _readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def _big_endian(a):
    return a.astype(a.dtype.newbyteorder(">"))


def _misaligned(a):
    """A view into a byte buffer at offset 1 (never aligned for 4- or 8-byte floats)."""
    buffer = np.zeros(a.nbytes + 1, np.uint8)
    view = buffer[1:].view(a.dtype).reshape(a.shape)
    view[...] = a
    return view


def _transposed_copy(a):
    """Same values, a permuted-axes view of a contiguous array (the last axes swapped)."""
    if a.ndim < 2:
        return a[::-1].copy()[::-1]
    return np.ascontiguousarray(np.swapaxes(a, -1, -2)).swapaxes(-1, -2)


def _big_endian_misaligned_strided(a):
    """Every oddity at once: a big-endian, misaligned, strided view."""
    dtype = a.dtype.newbyteorder(">")
    big_shape = tuple(2 * s + 1 for s in a.shape)
    buffer = np.zeros(int(np.prod(big_shape)) * dtype.itemsize + 1, np.uint8)
    big = buffer[1:].view(dtype).reshape(big_shape)
    view = big[tuple(slice(1, None, 2) for _ in a.shape)]
    view[...] = a
    return view


LAYOUTS = {
    "strided": _strided, "negative_strides": _negative_strides, "fortran": _fortran,
    "readonly": _readonly, "big_endian": _big_endian, "misaligned": _misaligned,
    "swapped_axes": _transposed_copy, "all_at_once": _big_endian_misaligned_strided,
}


def test_layout_helpers_make_what_they_say():
    a = np.arange(24.0).reshape(2, 3, 4)
    assert not _strided(a).flags.c_contiguous
    assert any(s < 0 for s in _negative_strides(a).strides)
    assert _fortran(a).flags.f_contiguous and not _fortran(a).flags.c_contiguous
    assert not _readonly(a).flags.writeable
    assert not _big_endian(a).dtype.isnative
    assert not _misaligned(a).flags.aligned
    assert not _transposed_copy(a).flags.c_contiguous
    odd = _big_endian_misaligned_strided(a)
    assert not (odd.flags.aligned or odd.dtype.isnative or odd.flags.c_contiguous)
    for make in LAYOUTS.values():
        np.testing.assert_array_equal(make(a), a)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(OPS))
def test_any_layout_gives_bitwise_the_contiguous_result(name, dtype, layout):
    arrays = _operands(name, dtype)
    expected = _run(name, arrays)
    odd = [None if a is None else LAYOUTS[layout](a) for a in arrays]
    copies = [None if a is None else a.copy() for a in odd]
    _assert_bitwise(_run(name, odd), expected)
    for a, a0 in zip(odd, copies):  # never modified
        if a is not None:
            assert a.tobytes() == a0.tobytes() and a.dtype == a0.dtype


@pytest.mark.parametrize("name,operand", [(n, i) for n in OPS for i in (0, 1, 2) if OPS[n][1][i] is not None])
def test_one_odd_operand_among_contiguous_ones(name, operand):
    arrays = _operands(name, np.float32)
    expected = _run(name, arrays)
    odd = list(arrays)
    odd[operand] = _big_endian_misaligned_strided(arrays[operand])
    _assert_bitwise(_run(name, odd), expected)


@pytest.mark.parametrize("name", list(OPS))
def test_unbatched_input_is_the_batched_result(name):
    arrays = _operands(name)
    batched = _as_tuple(_run(name, [arrays[0][:1]] + arrays[1:]))
    unbatched = _as_tuple(_run(name, [arrays[0][0]] + arrays[1:]))
    for u, b in zip(unbatched, batched):
        assert u.shape == b.shape[1:]
        assert u.tobytes() == b[0].tobytes()


@pytest.mark.parametrize("name", list(OPS))
def test_broadcast_input_gives_the_copy_result(name):
    """A zero-stride (np.broadcast_to) input, as a read-only view with repeated rows."""
    arrays = _operands(name)
    x = np.broadcast_to(arrays[0][:, :, ..., :1], arrays[0].shape)
    _assert_bitwise(_run(name, [x] + arrays[1:]), _run(name, [x.copy()] + arrays[1:]))


# ---------------------------------------------------------------------------------------
# Dtypes
# ---------------------------------------------------------------------------------------

DTYPES = [np.float16, np.float32, np.float64, np.int8, np.uint8, np.int16, np.int32,
          np.int64, np.uint64, np.bool_]


def _cast(arrays, dtype):
    out = []
    for a in arrays:
        if a is None:
            out.append(None)
        elif np.dtype(dtype).kind == "b":
            out.append(a > 0)
        elif np.dtype(dtype).kind in "iu":
            out.append(np.clip(np.round(4 * a), 0 if np.dtype(dtype).kind == "u" else -8, 8).astype(dtype))
        else:
            out.append(a.astype(dtype))
    return out


def _expected_dtypes(dtypes):
    """(result dtype, compute dtype) by the documented rule."""
    result = np.result_type(*dtypes)
    if result.kind != "f":
        result = np.dtype(np.float64)
    compute = np.dtype(np.float32) if result.itemsize <= 4 else np.dtype(np.float64)
    return result, compute


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(OPS))
def test_one_dtype_for_all_operands(name, dtype):
    arrays = _cast(_operands(name), dtype)
    result, compute = _expected_dtypes([dtype])
    y = _as_tuple(_run(name, arrays))
    assert y[0].dtype == result
    if len(y) > 1:
        assert y[1].dtype == np.int64
    # Bitwise the same as computing on the operands cast to the compute dtype.
    reference = _as_tuple(_run(name, [None if a is None else a.astype(compute) for a in arrays]))
    assert y[0].tobytes() == reference[0].astype(result).tobytes()
    for a, r in zip(y[1:], reference[1:]):
        np.testing.assert_array_equal(a, r)


def test_native_dtypes_and_small_integers_by_name():
    x = np.ones((1, 1, 4, 4), np.float32)
    assert F.conv2d(x, np.ones((1, 1, 2, 2), np.float32)).dtype == np.float32
    assert F.conv2d(x.astype(np.float64), np.ones((1, 1, 2, 2))).dtype == np.float64
    assert F.conv2d(x.astype(np.int32), np.ones((1, 1, 2, 2), np.int32)).dtype == np.float64
    assert F.conv2d(x.astype(bool), np.ones((1, 1, 2, 2), bool)).dtype == np.float64
    assert F.conv2d(x.astype(np.float16), np.ones((1, 1, 2, 2), np.float16)).dtype == np.float16
    assert F.max_pool2d(x.astype(np.uint8), 2).dtype == np.float64
    assert F.avg_pool2d(x.astype(np.float16), 2).dtype == np.float16


MIXED = [
    (np.float32, np.float64, None), (np.float64, np.float32, None), (np.float32, np.float32, np.float64),
    (np.float16, np.float32, None), (np.float16, np.float16, np.float32), (np.float16, np.int8, None),
    (np.float16, np.int16, None), (np.float32, np.int64, None), (np.int64, np.float32, np.float32),
    (np.bool_, np.float32, None), (np.uint8, np.float16, np.float16), (np.int32, np.bool_, np.int8),
    (np.float32, np.float16, np.float16), (np.bool_, np.bool_, np.bool_),
]


def _mixed_cases():
    for name, (_, shapes, _) in OPS.items():
        for dtypes in MIXED:
            if shapes[1] is not None and (shapes[2] is not None or dtypes[2] is None):
                ids = "-".join("none" if t is None else np.dtype(t).name for t in dtypes)
                yield pytest.param(name, dtypes, id=f"{name}-{ids}")


@pytest.mark.parametrize("name,dtypes", list(_mixed_cases()))
def test_mixed_dtypes(name, dtypes):
    arrays = _operands(name)
    arrays = [None if a is None or t is None else _cast([a], t)[0] for a, t in zip(arrays, dtypes)]
    result, compute = _expected_dtypes([a.dtype for a in arrays if a is not None])
    y = _run(name, arrays)
    assert y.dtype == result
    reference = _run(name, [None if a is None else a.astype(compute) for a in arrays])
    assert y.tobytes() == reference.astype(result).tobytes()


def test_float32_input_with_float64_weight_computes_in_float64():
    # 1 + 2**-30 is exact in float64, not in float32: a float32 computation would lose it.
    x = np.ones((1, 1, 3), np.float32)
    w = np.full((1, 1, 1), 1 + 2**-30)
    y = F.conv1d(x, w)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, 1 + 2**-30)


@pytest.mark.parametrize("name", list(OPS))
def test_python_lists(name):
    arrays = _operands(name)
    expected = _run(name, arrays)
    lists = [None if a is None else a.tolist() for a in arrays]
    _assert_bitwise(_run(name, lists), expected)


def test_nested_lists_of_ints_and_tuples():
    y = F.conv2d([[[3, 3, 2], [0, 0, 1], [3, 1, 2]]], [[[(0, 1), (2, 2)]]], [1])
    assert y.dtype == np.float64
    # y[i, j] = 1 + sum_uv w[u, v] * x[i + u, j + v], w = [[0, 1], [2, 2]]
    np.testing.assert_array_equal(y, [[[3 + 0 + 0 + 1, 2 + 0 + 2 + 1], [0 + 6 + 2 + 1, 1 + 2 + 4 + 1]]])


def test_numpy_scalars_and_zero_d_bias_values():
    x = np.arange(10.0).reshape(1, 1, 10)
    y = F.conv1d(x, [[[np.float32(1), np.int8(1)]]], (np.float64(0.5),))
    np.testing.assert_array_equal(y, x[..., :-1] + x[..., 1:] + 0.5)


# ---------------------------------------------------------------------------------------
# out=
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("name", list(OPS))
def test_out_is_written_and_returned(name, dtype):
    arrays = _operands(name, dtype)
    expected = _as_tuple(_run(name, arrays))
    out = np.full(expected[0].shape, np.nan, expected[0].dtype)
    copies = [None if a is None else a.copy() for a in arrays]
    result = _as_tuple(_run(name, arrays, out=out))
    assert result[0] is out
    _assert_bitwise(result, expected)
    for a, a0 in zip(arrays, copies):
        if a is not None:
            assert a.tobytes() == a0.tobytes()


@pytest.mark.parametrize("name", list(OPS))
def test_out_with_odd_layout_inputs(name):
    arrays = _operands(name, np.float32)
    expected = _as_tuple(_run(name, arrays))
    out = np.empty_like(expected[0])
    result = _as_tuple(_run(name, [None if a is None else _big_endian_misaligned_strided(a) for a in arrays],
                            out=out))
    assert result[0] is out
    _assert_bitwise(result, expected)


@pytest.mark.parametrize("name", ["conv2d", "conv_transpose1d", "avg_pool2d"])
def test_out_with_integer_operands_is_float64(name):
    arrays = _cast(_operands(name), np.int16)
    expected = _run(name, arrays)
    out = np.zeros(expected.shape, np.float64)
    assert _run(name, arrays, out=out) is out
    assert out.tobytes() == expected.tobytes()


def test_out_reused_across_calls_is_overwritten():
    rng = np.random.default_rng(0)
    x1, x2 = rng.standard_normal((2, 1, 2, 9, 9))
    w = rng.standard_normal((3, 2, 3, 3))
    out = np.empty((1, 3, 7, 7))
    F.conv2d(x1, w, out=out)
    assert F.conv2d(x2, w, out=out) is out
    np.testing.assert_array_equal(out, F.conv2d(x2, w))


def test_out_may_be_a_contiguous_view_of_a_larger_array():
    x = np.random.default_rng(0).standard_normal((2, 3, 10))
    store = np.full((4, 3, 5), -1.0)
    y = F.max_pool1d(x, 2, out=store[1:3])
    assert y.base is store
    np.testing.assert_array_equal(store[1:3], F.max_pool1d(x, 2))
    np.testing.assert_array_equal(store[[0, 3]], -1.0)
