"""Invalid arguments: every one raises ValueError or TypeError naming the parameter and
showing its value -- before anything is written, so a preallocated ``out`` and the
inputs are left as they were -- and nothing crashes.

Every operator in ``pyconv.functional`` and every helper in ``pyconv`` is covered; the
tables below are expanded by ``pytest.mark.parametrize`` into one test per case.
"""
import re

import numpy as np
import pytest

import pyconv
import pyconv.functional as F
from pyconv import _threads

CONV_OPS = ["conv1d", "conv2d", "convolve1d", "convolve2d"]
TRANSPOSE_OPS = ["conv_transpose1d", "conv_transpose2d"]
MAX_OPS = ["max_pool1d", "max_pool2d"]
AVG_OPS = ["avg_pool1d", "avg_pool2d"]
ADAPTIVE_OPS = ["adaptive_avg_pool1d", "adaptive_avg_pool2d",
                "adaptive_max_pool1d", "adaptive_max_pool2d"]
ALL_OPS = CONV_OPS + TRANSPOSE_OPS + MAX_OPS + AVG_OPS + ADAPTIVE_OPS

# Integer parameters of each operator: name -> smallest valid value.
INT_PARAMS = {
    **{op: {"stride": 1, "dilation": 1, "padding": 0, "groups": 1} for op in CONV_OPS},
    **{op: {"stride": 1, "dilation": 1, "padding": 0, "output_padding": 0, "groups": 1}
       for op in TRANSPOSE_OPS},
    **{op: {"kernel_size": 1, "stride": 1, "padding": 0, "dilation": 1} for op in MAX_OPS},
    **{op: {"kernel_size": 1, "stride": 1, "padding": 0, "dilation": 1, "divisor_override": 1}
       for op in AVG_OPS},
    **{op: {"output_size": 1} for op in ADAPTIVE_OPS},
}
# Parameters that take an int or a tuple with one int per spatial dimension.
TUPLE_PARAMS = {"stride", "dilation", "padding", "output_padding", "kernel_size", "output_size"}


def _nd(op):
    return 2 if op.endswith("2d") else 1


def _data(op, batch=2, dtype=np.float64):
    """(input, weight, bias) for ``op``: 4 input channels, spatial sizes 9 (and 10)."""
    nd = _nd(op)
    rng = np.random.default_rng(0)
    spatial = (9, 10)[-nd:]
    x = rng.standard_normal((batch, 4) + spatial).astype(dtype)
    if op in CONV_OPS:
        return x, rng.standard_normal((6, 4) + (3,) * nd).astype(dtype), rng.standard_normal(6).astype(dtype)
    if op in TRANSPOSE_OPS:
        return x, rng.standard_normal((4, 3) + (3,) * nd).astype(dtype), rng.standard_normal(3).astype(dtype)
    return x, None, None


_DEFAULT = object()


def _call(op, x=_DEFAULT, w=_DEFAULT, b=_DEFAULT, **kwargs):
    """Call ``op`` on its default data, with any of the arrays or arguments replaced."""
    x0, w0, b0 = _data(op)
    x = x0 if x is _DEFAULT else x
    f = getattr(F, op)
    if op in CONV_OPS + TRANSPOSE_OPS:
        return f(x, w0 if w is _DEFAULT else w, b0 if b is _DEFAULT else b, **kwargs)
    if op in ADAPTIVE_OPS:
        kwargs.setdefault("output_size", 3)
        return f(x, **kwargs)
    kwargs.setdefault("kernel_size", 3)
    return f(x, **kwargs)


def _msg(name, value):
    """Regex: the parameter's name, then (anywhere later) its value as repr shows it."""
    return re.escape(name) + r".*" + re.escape(repr(value))


@pytest.fixture(autouse=True)
def _restore_threads():
    """Some cases call set_num_threads: whatever happens, restore the thread settings."""
    limit, omp = _threads.get_limit(), _threads.omp_max_threads()
    yield
    _threads.set_limit(limit)
    _threads.set_omp_max_threads(omp)


# ---------------------------------------------------------------------------------------
# Integer parameters: too small, wrong type, wrong length, too large
# ---------------------------------------------------------------------------------------

def _too_small_cases():
    for op, params in INT_PARAMS.items():
        for name, minimum in params.items():
            for value in {minimum - 1, -1, -7}:
                yield pytest.param(op, name, value, id=f"{op}-{name}={value}")


@pytest.mark.parametrize("op,name,value", list(_too_small_cases()))
def test_int_parameter_too_small(op, name, value):
    with pytest.raises(ValueError, match=_msg(name, value)):
        _call(op, **{name: value})


def _too_small_tuple_cases():
    for op, params in INT_PARAMS.items():
        for name, minimum in params.items():
            if name in TUPLE_PARAMS and name != "output_size":
                value = (minimum,) * (_nd(op) - 1) + (minimum - 1,)
                yield pytest.param(op, name, value, id=f"{op}-{name}={value}")


@pytest.mark.parametrize("op,name,value", list(_too_small_tuple_cases()))
def test_int_tuple_element_too_small(op, name, value):
    with pytest.raises(ValueError, match=re.escape(name) + r".*" + str(value[-1])):
        _call(op, **{name: value})


@pytest.mark.parametrize("op", ADAPTIVE_OPS)
@pytest.mark.parametrize("position", [0, -1])
def test_adaptive_output_size_element_not_positive(op, position):
    value = [2] * _nd(op)
    value[position] = 0
    with pytest.raises(ValueError, match=r"output_size.*0"):
        _call(op, output_size=tuple(value))


WRONG_TYPES = ["2", 2.0, True, np.float32(2.0), np.bool_(False), b"2", 2 + 0j, object()]


def _wrong_type_cases():
    for op, params in INT_PARAMS.items():
        for name in params:
            for value in WRONG_TYPES:
                shown = "object()" if type(value) is object else repr(value)
                yield pytest.param(op, name, value, id=f"{op}-{name}={shown}")


@pytest.mark.parametrize("op,name,value", list(_wrong_type_cases()))
def test_int_parameter_wrong_type(op, name, value):
    # A string for padding is a bad padding string (ValueError); everything else is a TypeError.
    exc = ValueError if name == "padding" and isinstance(value, str) else TypeError
    with pytest.raises(exc, match=_msg(name, value)):
        _call(op, **{name: value})


def _wrong_type_in_tuple_cases():
    for op, params in INT_PARAMS.items():
        for name in params:
            if name in TUPLE_PARAMS:
                for value in [2.0, True, "2"]:
                    t = (2,) * (_nd(op) - 1) + (value,)
                    yield pytest.param(op, name, t, value, id=f"{op}-{name}={t!r}")


@pytest.mark.parametrize("op,name,value,bad", list(_wrong_type_in_tuple_cases()))
def test_int_tuple_element_wrong_type(op, name, value, bad):
    with pytest.raises(TypeError, match=_msg(name, bad)):
        _call(op, **{name: value})


def _wrong_length_cases():
    for op, params in INT_PARAMS.items():
        nd = _nd(op)
        for name in params:
            if name in TUPLE_PARAMS:
                for value in [(), [], (1,) * (nd + 1), [2] * (nd + 2)]:
                    yield pytest.param(op, name, value, id=f"{op}-{name}={value!r}")


@pytest.mark.parametrize("op,name,value", list(_wrong_length_cases()))
def test_int_tuple_wrong_length(op, name, value):
    with pytest.raises(ValueError, match=_msg(name, value)):
        _call(op, **{name: value})


@pytest.mark.parametrize("op", CONV_OPS + TRANSPOSE_OPS)
@pytest.mark.parametrize("value", [(1,), [1, 1], ()])
def test_groups_is_not_a_tuple(op, value):
    with pytest.raises(TypeError, match=_msg("groups", value)):
        _call(op, groups=value)


def _huge_cases():
    for op, params in INT_PARAMS.items():
        for name in params:
            for value in [2**62, 2**64 + 1, -(2**70)]:
                yield pytest.param(op, name, value, id=f"{op}-{name}={value}")


@pytest.mark.parametrize("op,name,value", list(_huge_cases()))
def test_int_parameter_beyond_64_bits(op, name, value):
    with pytest.raises(ValueError, match=re.escape(name) + r".*" + re.escape(str(value))):
        _call(op, **{name: value})


@pytest.mark.parametrize("op", CONV_OPS + MAX_OPS + AVG_OPS)
@pytest.mark.parametrize("value", [2**61, 2**62 - 1])
def test_padding_whose_padded_size_overflows(op, value):
    # Each pad is below the 2**62 limit, the padded size (in + 2*pad) is not.
    with pytest.raises(ValueError, match=r"padding.*size"):
        _call(op, padding=value)


@pytest.mark.parametrize("op", CONV_OPS + MAX_OPS + AVG_OPS + TRANSPOSE_OPS)
def test_dilation_whose_span_overflows(op):
    # A 3-tap kernel with dilation 2**61 spans 2**62 + 1 elements: the message must
    # blame dilation (not another parameter).
    with pytest.raises(ValueError, match=r"dilation"):
        _call(op, dilation=2**61)


@pytest.mark.parametrize("op", TRANSPOSE_OPS)
@pytest.mark.parametrize("value", [2**61, 2**62 - 1])
def test_transpose_stride_whose_output_overflows(op, value):
    with pytest.raises(ValueError, match=r"stride.*size"):
        _call(op, stride=value)


# ---------------------------------------------------------------------------------------
# Output shapes with too many elements (the arrays are zero-stride views, never allocated)
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("op", TRANSPOSE_OPS)
def test_transpose_output_with_too_many_elements(op):
    nd = _nd(op)
    x = np.ones((1, 1) + (2,) * nd, np.float32)
    w = np.broadcast_to(np.float32(0), (1, 2**30) + (1,) * nd)  # 2**30 output channels
    with pytest.raises(ValueError, match=r"output shape.*elements"):
        getattr(F, op)(x, w, stride=2**40)


@pytest.mark.parametrize("op", CONV_OPS)
def test_conv_output_with_too_many_elements(op):
    nd = _nd(op)
    x = np.broadcast_to(np.bool_(False), (2**20, 1) + (1,) * nd)
    w = np.broadcast_to(np.float32(0), (2**20, 1) + (1,) * nd)
    with pytest.raises(ValueError, match=r"output shape.*elements"):
        getattr(F, op)(x, w, padding=2**22)


@pytest.mark.parametrize("op", MAX_OPS + AVG_OPS)
def test_pool_output_with_too_many_elements(op):
    x = np.broadcast_to(np.bool_(False), (2**20, 2**20) + (4,) * _nd(op))
    with pytest.raises(ValueError, match=r"output shape.*elements"):
        getattr(F, op)(x, 1, padding=2**21)


@pytest.mark.parametrize("op", ADAPTIVE_OPS)
def test_adaptive_output_with_too_many_elements(op):
    x = np.broadcast_to(np.bool_(False), (2**20, 2**20) + (4,) * _nd(op))
    with pytest.raises(ValueError, match=r"output shape.*elements"):
        getattr(F, op)(x, 2**30)


# ---------------------------------------------------------------------------------------
# Arrays: number of dimensions, channels, groups, bias, kernel size
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("op", ALL_OPS)
@pytest.mark.parametrize("extra", [-1, 1, 2])
def test_input_with_wrong_number_of_dims(op, extra):
    x = _data(op)[0]
    x = x[0, 0] if extra == -1 else x.reshape((1,) * extra + x.shape)
    with pytest.raises(ValueError, match=r"input.*" + re.escape(str(x.shape))):
        _call(op, x=x)


@pytest.mark.parametrize("op", ALL_OPS)
def test_scalar_input(op):
    with pytest.raises(ValueError, match=r"input.*\(\)"):
        _call(op, x=np.float64(1.0))


@pytest.mark.parametrize("op", CONV_OPS + TRANSPOSE_OPS)
@pytest.mark.parametrize("extra", [-1, 1])
def test_weight_with_wrong_number_of_dims(op, extra):
    w = _data(op)[1]
    w = w[0] if extra == -1 else w[None]
    with pytest.raises(ValueError, match=r"weight.*" + re.escape(str(w.shape))):
        _call(op, w=w)


@pytest.mark.parametrize("op", CONV_OPS)
@pytest.mark.parametrize("groups,w_shape,pattern", [
    (3, (6, 1), r"groups=3.*input channels \(4\)"),          # 3 does not divide C_in = 4
    (4, (6, 1), r"groups=4.*output channels.*\(6, 1"),       # 4 does not divide C_out = 6
    (2, (6, 4), r"weight shape \(6, 4.*groups=2.*8 input channels.*4"),
    (1, (6, 3), r"weight shape \(6, 3.*groups=1.*3 input channels.*4"),
    (1, (6, 5), r"weight shape \(6, 5.*groups=1.*5 input channels.*4"),
])
def test_conv_groups_and_channels_mismatch(op, groups, w_shape, pattern):
    w = np.ones(w_shape + (3,) * _nd(op))
    with pytest.raises(ValueError, match=pattern):
        _call(op, w=w, groups=groups)


@pytest.mark.parametrize("op", TRANSPOSE_OPS)
@pytest.mark.parametrize("groups,w_shape,pattern", [
    (3, (4, 1), r"groups=3.*input channels \(4\)"),
    (8, (4, 1), r"groups=8.*input channels \(4\)"),
    (1, (5, 3), r"weight shape \(5, 3.*4"),
    (2, (2, 3), r"weight shape \(2, 3.*4"),
])
def test_transpose_groups_and_channels_mismatch(op, groups, w_shape, pattern):
    w = np.ones(w_shape + (3,) * _nd(op))
    with pytest.raises(ValueError, match=pattern):
        _call(op, w=w, groups=groups)


@pytest.mark.parametrize("op", CONV_OPS + TRANSPOSE_OPS)
@pytest.mark.parametrize("shape", [(5,), (7,), (6, 1), (1, 6), (), (0,)])
def test_bias_with_wrong_shape(op, shape):
    c_out = 6 if op in CONV_OPS else 3
    if shape == (c_out,):
        shape = (c_out + 1,)
    with pytest.raises(ValueError, match=r"bias.*" + re.escape(str(shape))):
        _call(op, b=np.ones(shape))


@pytest.mark.parametrize("op", CONV_OPS + TRANSPOSE_OPS)
def test_weight_with_a_zero_kernel_size(op):
    w = _data(op)[1][..., :0]
    with pytest.raises(ValueError, match=r"kernel size.*" + re.escape(str(w.shape))):
        _call(op, w=w)


@pytest.mark.parametrize("op", CONV_OPS)
@pytest.mark.parametrize("k,kwargs", [
    (11, {}),                              # 11 > 10 (and > 9 in 2-D)
    (13, {"padding": 1}),                  # 13 > 10 + 2
    (3, {"dilation": 6}),                  # spans 13
    (2, {"dilation": 10}),                 # spans 11
    (11, {"padding": "valid"}),
])
def test_conv_kernel_larger_than_padded_input(op, k, kwargs):
    w = np.ones((6, 4) + (k,) * _nd(op))
    with pytest.raises(ValueError, match=r"kernel size \d+.*dilation.*padded input"):
        _call(op, w=w, **kwargs)


@pytest.mark.parametrize("op", MAX_OPS + AVG_OPS)
@pytest.mark.parametrize("kwargs", [
    {"kernel_size": 11},
    {"kernel_size": 13, "padding": 1},
    {"kernel_size": 3, "dilation": 6},
    {"kernel_size": (11,) * 2},
])
def test_pool_kernel_larger_than_padded_input(op, kwargs):
    if isinstance(kwargs["kernel_size"], tuple):
        kwargs = dict(kwargs, kernel_size=kwargs["kernel_size"][:_nd(op)])
    with pytest.raises(ValueError, match=r"kernel_size \d+.*dilation.*padded input"):
        _call(op, **kwargs)


@pytest.mark.parametrize("op", TRANSPOSE_OPS)
@pytest.mark.parametrize("stride,dilation,output_padding", [
    (1, 1, 1), (2, 1, 2), (2, 2, 2), (1, 3, 3), (3, 2, 5), (2, 1, 3),
])
def test_output_padding_not_smaller_than_stride_or_dilation(op, stride, dilation, output_padding):
    with pytest.raises(ValueError, match=rf"output_padding \({output_padding}\).*stride \({stride}\)"
                                         rf".*dilation \({dilation}\)"):
        _call(op, stride=stride, dilation=dilation, output_padding=output_padding)


@pytest.mark.parametrize("op", TRANSPOSE_OPS)
@pytest.mark.parametrize("padding", [6, 10, ((0, 12),) * 2])
def test_transpose_padding_removes_the_whole_output(op, padding):
    # Full output size: (9 - 1) + 2 + 1 = 11 (and 12); padding 6 on both sides leaves < 1.
    if isinstance(padding, tuple):
        padding = padding[:_nd(op)]
    with pytest.raises(ValueError, match=r"padding.*removes the whole output"):
        _call(op, padding=padding)


@pytest.mark.parametrize("op", TRANSPOSE_OPS)
def test_transpose_empty_spatial_input(op):
    x = _data(op)[0][..., :0]
    with pytest.raises(ValueError, match=r"input.*" + re.escape(str(x.shape))):
        _call(op, x=x)


@pytest.mark.parametrize("op", ADAPTIVE_OPS)
def test_adaptive_empty_spatial_input(op):
    x = _data(op)[0][..., :0]
    with pytest.raises(ValueError, match=r"input.*" + re.escape(str(x.shape))):
        _call(op, x=x)


@pytest.mark.parametrize("op", ADAPTIVE_OPS)
def test_adaptive_output_size_none(op):
    with pytest.raises(TypeError, match=r"output_size.*None"):
        _call(op, output_size=None)


# ---------------------------------------------------------------------------------------
# Padding strings, pairs and padding modes
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("op", CONV_OPS + MAX_OPS + AVG_OPS)
@pytest.mark.parametrize("value", ["SAME", "full", "", "same ", "causal", "Valid"])
def test_bad_padding_string(op, value):
    with pytest.raises(ValueError, match=_msg("padding", value)):
        _call(op, padding=value)


@pytest.mark.parametrize("op", TRANSPOSE_OPS)
@pytest.mark.parametrize("value", ["same", "valid", "full"])
def test_transpose_rejects_padding_strings(op, value):
    with pytest.raises(ValueError, match=_msg("padding", value)):
        _call(op, padding=value)


@pytest.mark.parametrize("op", CONV_OPS + TRANSPOSE_OPS + MAX_OPS + AVG_OPS)
@pytest.mark.parametrize("pair", [(1, 2, 3), (1,), (), (1, -1), (-2, 0), (1.0, 1), (1, "1")])
def test_bad_padding_pair(op, pair):
    padding = (pair,) * _nd(op)
    exc = TypeError if any(isinstance(p, (float, str)) for p in pair) else ValueError
    pattern = r"padding" if exc is TypeError else r"padding.*" + re.escape(repr(padding))
    with pytest.raises(exc, match=pattern):
        _call(op, padding=padding)


@pytest.mark.parametrize("op", CONV_OPS)
@pytest.mark.parametrize("mode", ["zero", "Zeros", "REFLECT", "mirror", "symmetric", "", None, 0, "wrap"])
def test_bad_padding_mode(op, mode):
    with pytest.raises((ValueError, TypeError), match=_msg("padding_mode", mode)):
        _call(op, padding=1, padding_mode=mode)


@pytest.mark.parametrize("op", CONV_OPS)
@pytest.mark.parametrize("mode,padding", [
    ("reflect", 10), ("reflect", 11), ("reflect", ((0, 10),) * 2), ("reflect", ((12, 0),) * 2),
    ("circular", 11), ("circular", ((0, 11),) * 2), ("circular", 40),
])
def test_padding_too_large_for_padding_mode(op, mode, padding):
    # The input is 10 wide in 1-D, 9 x 10 in 2-D: reflect needs pad < size, circular pad <= size.
    if isinstance(padding, tuple):
        padding = padding[:_nd(op)]
    w = np.ones((6, 4) + (1,) * _nd(op))
    with pytest.raises(ValueError, match=r"padding.*too large.*padding_mode=" + re.escape(repr(mode))):
        _call(op, w=w, padding=padding, padding_mode=mode)


# ---------------------------------------------------------------------------------------
# Arrays of the wrong kind
# ---------------------------------------------------------------------------------------

BAD_ARRAYS = {
    "complex64": lambda a: a.astype(np.complex64),
    "complex128": lambda a: a.astype(np.complex128),
    "object": lambda a: a.astype(object),
    "str": lambda a: a.astype(str),
    "datetime": lambda a: a.astype(np.int64).astype("datetime64[s]"),
    "void": lambda a: a.astype(np.float64).view(np.dtype((np.void, 8))),
}


def _bad_array_cases():
    for op in ALL_OPS:
        operands = ["input", "weight", "bias"] if op in CONV_OPS + TRANSPOSE_OPS else ["input"]
        for operand in operands:
            for kind in BAD_ARRAYS:
                yield pytest.param(op, operand, kind, id=f"{op}-{operand}-{kind}")


@pytest.mark.parametrize("op,operand,kind", list(_bad_array_cases()))
def test_array_of_the_wrong_kind(op, operand, kind):
    x, w, b = _data(op)
    arrays = {"input": x, "weight": w, "bias": b}
    bad = BAD_ARRAYS[kind](arrays[operand])
    arrays[operand] = bad
    with pytest.raises(TypeError, match=re.escape(operand) + r".*" + re.escape(str(bad.dtype))):
        _call(op, x=arrays["input"], w=arrays["weight"], b=arrays["bias"])


@pytest.mark.parametrize("op", ALL_OPS)
@pytest.mark.parametrize("value", [None, "abc", [[1, 2], [3]], {"a": 1}, [[["x"]]]])
def test_input_that_is_not_an_array_of_numbers(op, value):
    with pytest.raises(TypeError, match=r"input"):
        _call(op, x=value)


@pytest.mark.parametrize("op", CONV_OPS + TRANSPOSE_OPS)
@pytest.mark.parametrize("value", ["abc", [[1, 2], [3]], object()])
def test_weight_and_bias_that_are_not_arrays_of_numbers(op, value):
    with pytest.raises(TypeError, match=r"weight"):
        _call(op, w=value)
    with pytest.raises(TypeError, match=r"bias"):
        _call(op, b=value)


# ---------------------------------------------------------------------------------------
# Booleans
# ---------------------------------------------------------------------------------------

BOOL_PARAMS = {
    **{op: ["ceil_mode", "return_indices"] for op in MAX_OPS},
    **{op: ["ceil_mode", "count_include_pad"] for op in AVG_OPS},
    "adaptive_max_pool1d": ["return_indices"], "adaptive_max_pool2d": ["return_indices"],
}


@pytest.mark.parametrize("op,name", [(op, n) for op, names in BOOL_PARAMS.items() for n in names])
@pytest.mark.parametrize("value", [1, 0, "True", None, 1.0, np.int64(1)])
def test_bool_parameter_wrong_type(op, name, value):
    with pytest.raises(TypeError, match=_msg(name, value)):
        _call(op, **{name: value})


# ---------------------------------------------------------------------------------------
# out=
# ---------------------------------------------------------------------------------------

def _result_shape(op):
    y = _call(op)
    return y.shape


def _bad_out_cases():
    for op in ALL_OPS:
        for kind in ["shape", "shape_transposed", "extra_dim", "dtype32", "dtype_int", "fortran",
                     "strided", "readonly", "bigendian", "overlap_input", "list"]:
            yield pytest.param(op, kind, id=f"{op}-{kind}")
        if op in CONV_OPS + TRANSPOSE_OPS:
            yield pytest.param(op, "overlap_weight", id=f"{op}-overlap_weight")
            yield pytest.param(op, "overlap_bias", id=f"{op}-overlap_bias")


@pytest.mark.parametrize("op,kind", list(_bad_out_cases()))
def test_bad_out(op, kind):
    x, w, b = _data(op)
    shape = _result_shape(op)
    size = int(np.prod(shape))
    out, exc, pattern = None, ValueError, None
    if kind == "shape":
        out, pattern = np.full(shape[:-1] + (shape[-1] + 1,), 7.0), r"out.*shape"
    elif kind == "shape_transposed":
        out, pattern = np.full(shape[::-1], 7.0), r"out.*shape"
    elif kind == "extra_dim":
        out, pattern = np.full((1,) + shape, 7.0), r"out.*shape"
    elif kind == "dtype32":
        out, pattern = np.full(shape, 7.0, np.float32), r"out.*dtype.*float32"
    elif kind == "dtype_int":
        out, pattern = np.full(shape, 7, np.int64), r"out.*dtype.*int64"
    elif kind == "fortran":
        out, pattern = np.asfortranarray(np.full(shape, 7.0)), r"out.*C-contiguous"
    elif kind == "strided":
        out, pattern = np.full(shape[:-1] + (2 * shape[-1],), 7.0)[..., ::2], r"out.*C-contiguous"
    elif kind == "readonly":
        out, pattern = np.full(shape, 7.0), r"out.*read-only"
        out.flags.writeable = False
    elif kind == "bigendian":
        out, pattern = np.full(shape, 7.0, ">f8"), r"out"
    elif kind == "list":
        out, exc, pattern = np.full(shape, 7.0).tolist(), TypeError, r"out.*list"
    elif kind.startswith("overlap_"):
        name = kind[len("overlap_"):]
        # The operand and out share one buffer and overlap by one element.
        base = {"input": x, "weight": w, "bias": b}[name]
        buffer = np.zeros(size + base.size)
        buffer[:base.size] = base.ravel()
        view = buffer[:base.size].reshape(base.shape)
        out = buffer[base.size - 1: base.size - 1 + size].reshape(shape)
        if name == "input":
            x = view
        elif name == "weight":
            w = view
        else:
            b = view
        pattern = r"out overlaps " + name
    before = np.array(out, copy=True)
    inputs = [a.copy() for a in (x, w, b) if a is not None]
    with pytest.raises(exc, match=pattern):
        _call(op, x=x, w=w, b=b, out=out)
    np.testing.assert_array_equal(np.asarray(out), before)  # out untouched
    for a, a0 in zip([a for a in (x, w, b) if a is not None], inputs):
        np.testing.assert_array_equal(a, a0)                  # inputs unchanged


def _error_with_out_cases():
    for op, params in INT_PARAMS.items():
        for name, minimum in params.items():
            yield pytest.param(op, {name: minimum - 1}, False, id=f"{op}-{name}")
            yield pytest.param(op, {name: 2**70}, False, id=f"{op}-{name}-huge")
        yield pytest.param(op, {}, True, id=f"{op}-complex-input")


@pytest.mark.parametrize("op,kwargs,complex_input", list(_error_with_out_cases()))
def test_error_leaves_out_and_inputs_untouched(op, kwargs, complex_input):
    x, w, b = _data(op)
    if complex_input:
        x = x.astype(np.complex128)
    out = np.full(_result_shape(op), 7.0)
    copies = [a.copy() for a in (x, w, b) if a is not None]
    with pytest.raises((ValueError, TypeError)):
        _call(op, x=x, w=w, b=b, out=out, **kwargs)
    assert np.all(out == 7.0)
    for a, a0 in zip([a for a in (x, w, b) if a is not None], copies):
        np.testing.assert_array_equal(a, a0)


# ---------------------------------------------------------------------------------------
# Empty batch: not an error
# ---------------------------------------------------------------------------------------

EMPTY_BATCH_KWARGS = {
    "conv1d": [{}, {"padding": 2, "padding_mode": "reflect"}, {"stride": 2, "padding": "same"}],
    "conv2d": [{}, {"padding": 1, "padding_mode": "circular"}, {"groups": 2, "bias": None}],
    "convolve1d": [{}], "convolve2d": [{"dilation": 2}],
    "conv_transpose1d": [{}, {"stride": 2, "output_padding": 1}],
    "conv_transpose2d": [{}, {"stride": 3, "padding": 1}],
    "max_pool1d": [{}, {"return_indices": True, "ceil_mode": True, "stride": 2}],
    "max_pool2d": [{}, {"return_indices": True, "padding": 1}],
    "avg_pool1d": [{}, {"padding": 1, "count_include_pad": False}],
    "avg_pool2d": [{}, {"divisor_override": 3, "stride": 2}],
    "adaptive_avg_pool1d": [{}], "adaptive_avg_pool2d": [{"output_size": (None, 4)}],
    "adaptive_max_pool1d": [{"return_indices": True}], "adaptive_max_pool2d": [{"return_indices": True}],
}


@pytest.mark.parametrize("op,kwargs", [(op, kw) for op, kws in EMPTY_BATCH_KWARGS.items() for kw in kws])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_empty_batch_gives_an_empty_result(op, kwargs, dtype):
    x, w, b = _data(op, dtype=dtype)
    kwargs = dict(kwargs)
    if op in CONV_OPS + TRANSPOSE_OPS and kwargs.pop("groups", 1) == 2:
        w = w[:, :2]
        kwargs["groups"] = 2
    if "bias" in kwargs:
        b = kwargs.pop("bias")
        f = getattr(F, op)
        full, empty = f(x, w, None, **kwargs), f(x[:0], w, None, **kwargs)
    else:
        full, empty = _call(op, x=x, w=w, b=b, **kwargs), _call(op, x=x[:0], w=w, b=b, **kwargs)
    full = full if isinstance(full, tuple) else (full,)
    empty = empty if isinstance(empty, tuple) else (empty,)
    assert len(full) == len(empty)
    for f_, e_ in zip(full, empty):
        assert e_.shape == (0,) + f_.shape[1:]
        assert e_.dtype == f_.dtype


@pytest.mark.parametrize("op", ALL_OPS)
def test_empty_batch_with_out(op):
    shape = (0,) + _result_shape(op)[1:]
    out = np.empty(shape)
    y = _call(op, x=_data(op)[0][:0], out=out)
    assert y is out


# ---------------------------------------------------------------------------------------
# Shape helpers and thread control
# ---------------------------------------------------------------------------------------

HELPER_CASES = [
    # (function, args, kwargs, exception, pattern)
    ("conv_output_size", (10, 3), {"stride": 0}, ValueError, r"stride.*0"),
    ("conv_output_size", (10, 3), {"stride": -2}, ValueError, r"stride.*-2"),
    ("conv_output_size", (10, 0), {}, ValueError, r"kernel_size.*0"),
    ("conv_output_size", (10, -3), {}, ValueError, r"kernel_size.*-3"),
    ("conv_output_size", (10, 3), {"dilation": 0}, ValueError, r"dilation.*0"),
    ("conv_output_size", (10, 3), {"padding": -1}, ValueError, r"padding.*-1"),
    ("conv_output_size", (10, 3), {"padding": "full"}, ValueError, r"padding.*'full'"),
    ("conv_output_size", (10, 3), {"padding": []}, ValueError, r"padding.*\[\]"),
    ("conv_output_size", (10, 3), {"stride": ()}, ValueError, r"stride.*\(\)"),
    ("conv_output_size", ((10, 10), 3), {"stride": (1, 1, 1)}, ValueError, r"stride.*\(1, 1, 1\)"),
    ("conv_output_size", ((10, 10), (3,)), {}, ValueError, r"kernel_size.*\(3,\)"),
    ("conv_output_size", (10, 3.0), {}, TypeError, r"kernel_size.*3\.0"),
    ("conv_output_size", (10, True), {}, TypeError, r"kernel_size.*True"),
    ("conv_output_size", (10, "3"), {}, TypeError, r"kernel_size.*'3'"),
    ("conv_output_size", (10.0, 3), {}, TypeError, r"input_size.*10\.0"),
    ("conv_output_size", ("10", 3), {}, TypeError, r"input_size.*'10'"),
    ("conv_output_size", (None, 3), {}, TypeError, r"input_size.*None"),
    ("conv_output_size", (-1, 3), {}, ValueError, r"input_size.*-1"),
    ("conv_output_size", ((10, -1), 3), {}, ValueError, r"input_size.*\(10, -1\)"),
    ("conv_output_size", (2, 3), {}, ValueError, r"kernel size 3"),
    ("conv_output_size", (10, 3), {"dilation": 5}, ValueError, r"dilation 5"),
    ("conv_output_size", (10, 3), {"padding": 2**62}, ValueError, r"padding.*4611686018427387904"),
    ("conv_output_size", (10, 3), {"padding": 2**70}, ValueError, r"padding.*" + str(2**70)),
    ("conv_output_size", (10, 3), {"padding": 2**61}, ValueError, r"padding.*size"),
    ("conv_output_size", (2**62, 3), {}, ValueError, r"input_size.*" + str(2**62)),
    ("conv_output_size", (10, 3), {"dilation": 2**61}, ValueError, r"dilation"),
    ("conv_output_size", (10, 2**64), {}, ValueError, r"kernel_size.*" + str(2**64)),
    ("conv_transpose_output_size", (0, 3), {}, ValueError, r"input_size.*0"),
    ("conv_transpose_output_size", (10, 3), {"padding": "same"}, ValueError, r"padding.*'same'"),
    ("conv_transpose_output_size", (10, 3), {"output_padding": -1}, ValueError, r"output_padding.*-1"),
    ("conv_transpose_output_size", (10, 3), {"output_padding": 1}, ValueError, r"output_padding \(1\)"),
    ("conv_transpose_output_size", (10, 3), {"stride": 2, "output_padding": 2}, ValueError,
     r"output_padding \(2\)"),
    ("conv_transpose_output_size", (10, 3), {"stride": 0}, ValueError, r"stride.*0"),
    ("conv_transpose_output_size", (10, 3), {"padding": 7}, ValueError, r"padding.*removes"),
    ("conv_transpose_output_size", (10, 3), {"stride": 2**61}, ValueError, r"stride.*size"),
    ("conv_transpose_output_size", (10, 3), {"dilation": 2**61}, ValueError, r"dilation"),
    ("conv_transpose_output_size", (10, 3), {"output_padding": 2.0}, TypeError, r"output_padding.*2\.0"),
    ("conv_transpose_output_size", ((4, 4), 3), {"output_padding": ()}, ValueError,
     r"output_padding.*\(\)"),
    ("pool_output_size", (10, 0), {}, ValueError, r"kernel_size.*0"),
    ("pool_output_size", (10, 3), {"stride": 0}, ValueError, r"stride.*0"),
    ("pool_output_size", (10, 3), {"padding": -1}, ValueError, r"padding.*-1"),
    ("pool_output_size", (10, 3), {"dilation": -1}, ValueError, r"dilation.*-1"),
    ("pool_output_size", (10, 3), {"ceil_mode": 1}, TypeError, r"ceil_mode.*1"),
    ("pool_output_size", (10, 3), {"ceil_mode": "yes"}, TypeError, r"ceil_mode.*'yes'"),
    ("pool_output_size", (2, 3), {}, ValueError, r"kernel_size 3"),
    ("pool_output_size", ((10, 10), (3, 3, 3)), {}, ValueError, r"kernel_size.*\(3, 3, 3\)"),
    ("pool_output_size", (10, 3), {"padding": "bad"}, ValueError, r"padding.*'bad'"),
    ("pool_output_size", (10, 3), {"padding": 2**61}, ValueError, r"padding.*size"),
    ("conv_param_count", (0, 8, 3), {}, ValueError, r"in_channels.*0"),
    ("conv_param_count", (3, -8, 3), {}, ValueError, r"out_channels.*-8"),
    ("conv_param_count", (3, 8, 0), {}, ValueError, r"kernel_size.*0"),
    ("conv_param_count", (3, 8, (3, -1)), {}, ValueError, r"kernel_size.*-1"),
    ("conv_param_count", (3, 8, 3), {"groups": 0}, ValueError, r"groups.*0"),
    ("conv_param_count", (3, 8, 3), {"groups": 2}, ValueError, r"groups=2.*in_channels=3"),
    ("conv_param_count", (4, 6, 3), {"groups": 4}, ValueError, r"groups=4.*out_channels=6"),
    ("conv_param_count", (3, 8, 3), {"bias": 1}, TypeError, r"bias.*1"),
    ("conv_param_count", (3.0, 8, 3), {}, TypeError, r"in_channels.*3\.0"),
    ("conv_param_count", (3, 8, "3"), {}, TypeError, r"kernel_size.*'3'"),
    ("conv_param_count", (3, 8, (3, 3.0)), {}, TypeError, r"kernel_size.*3\.0"),
    ("conv_param_count", (2**62, 8, 3), {}, ValueError, r"in_channels.*" + str(2**62)),
    ("set_num_threads", (0,), {}, ValueError, r"\bn\b.*0"),
    ("set_num_threads", (-1,), {}, ValueError, r"\bn\b.*-1"),
    ("set_num_threads", (2.0,), {}, TypeError, r"\bn\b.*2\.0"),
    ("set_num_threads", ("2",), {}, TypeError, r"\bn\b.*'2'"),
    ("set_num_threads", (True,), {}, TypeError, r"\bn\b.*True"),
    ("set_num_threads", (2**70,), {}, ValueError, r"\bn\b.*" + str(2**70)),
    ("set_num_threads", (2**40,), {}, ValueError, r"\bn\b.*" + str(2**40)),
    ("set_num_threads", (2**31,), {}, ValueError, r"\bn\b.*" + str(2**31)),
]


def _helper_id(case):
    func, args, kwargs = case[:3]
    text = ",".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()])
    return f"{func}({text})"


@pytest.mark.parametrize("func,args,kwargs,exc,pattern", HELPER_CASES, ids=[_helper_id(c) for c in HELPER_CASES])
def test_helper_errors(func, args, kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        getattr(pyconv, func)(*args, **kwargs)


@pytest.mark.parametrize("value,exc", [
    (0, ValueError), (-3, ValueError), (2.0, TypeError), ("1", TypeError), (None, TypeError),
    (True, TypeError), (2**70, ValueError), (2**40, ValueError), (2**31, ValueError),
])
def test_num_threads_context_manager_errors(value, exc):
    before = pyconv.get_num_threads()
    with pytest.raises(exc, match=r"\bn\b.*" + re.escape(repr(value))):
        with pyconv.num_threads(value):
            pass  # pragma: no cover
    assert pyconv.get_num_threads() == before


def test_helpers_accept_valid_arguments():
    """The counterpart of the table above: the same helpers on valid arguments."""
    assert pyconv.conv_output_size(10, 3) == 8
    assert pyconv.conv_output_size((10, 9), 3, padding="same", stride=2) == (5, 5)
    assert pyconv.conv_transpose_output_size(4, 3, stride=2, output_padding=1) == 10
    assert pyconv.pool_output_size(10, 3, ceil_mode=True) == 4
    assert pyconv.conv_param_count(3, 8, (3, 3)) == (27 + 1) * 8


@pytest.mark.parametrize("op", CONV_OPS + TRANSPOSE_OPS)
@pytest.mark.parametrize("value", ["fast", "GEMM", "", None, 1])
def test_bad_algorithm(op, value):
    import inspect
    if "algorithm" not in inspect.signature(getattr(F, op)).parameters:
        pytest.skip(f"{op} has no algorithm= argument in this version")
    with pytest.raises((ValueError, TypeError), match=_msg("algorithm", value)):
        _call(op, algorithm=value)
