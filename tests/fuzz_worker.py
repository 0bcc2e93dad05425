"""Fuzz worker: hypothesis-generated hostile calls of pyconv's public API, one target
per process, so that a segfault or abort is a failed test and not a dead test run.

    python tests/fuzz_worker.py TARGET --examples N --seed S --case-file PATH
    python tests/fuzz_worker.py --replay BASE64        # re-run one reported case

A *case* is plain data (picklable, printable): the target's name, its positional and
keyword arguments, where an array is a spec -- ("array", shape, dtype, layout, fill,
seed) -- built only when the case runs. Before each call the worker writes the case
(base64 pickle) to ``--case-file``; if the process dies, test_fuzz.py reports that file
as the reproducer. Hypothesis's own failures (an assertion below) are shrunk and printed
with the same replay line.

The contract checked for every call:

* it returns, or raises ValueError / TypeError / OverflowError with a message that
  names a parameter, or MemoryError -- nothing else, and never a crash;
* inputs and a preallocated ``out=`` are unchanged on error; inputs are unchanged on
  success;
* on success the result has the shape of ``tests/reference.py`` and the dtype
  ``np.result_type`` of the operands (float64 for integer/bool), values equal to the
  reference for small outputs, and ``out=`` (when given) is the returned array.
"""

import argparse
import base64
import faulthandler
import inspect
import math
import os
import pickle
import re
import resource
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import reference  # noqa: E402  (tests/ on sys.path first)

import pyconv  # noqa: E402
import pyconv.functional as F  # noqa: E402
from pyconv import nn  # noqa: E402

ALLOWED_ERRORS = (ValueError, TypeError, OverflowError, MemoryError)
VALUE_CHECK_LIMIT = 1500    # compare values with the (slow) reference up to this many outputs

# ---------------------------------------------------------------------------------------
# Hostile values
# ---------------------------------------------------------------------------------------


class IndexLike:
    """Has __index__ but is not an Integral: pyconv's ints must reject it (TypeError)."""

    def __init__(self, value):
        self.value = value

    def __index__(self):
        return self.value

    def __repr__(self):
        return f"IndexLike({self.value})"


HUGE_INTS = [2**31 - 1, 2**31, 2**32, 2**62 - 1, 2**62, 2**63, 2**64, 2**100,
             -1, -2**31, -2**63, 0]
HOSTILE = HUGE_INTS + [
    1.0, 2.5, -0.0, math.nan, math.inf, "2", "same", "valid", "", b"x", None, True, False,
    (), (1,), (1, 2, 3), (1, (2, 3)), ((1, 2), (3,)), ((1, 2, 3), (1, 2)), [[[1]]],
    (None, None), (1.5, 1), ("a", 1), [2, 2], {"a": 1}, complex(1, 0), IndexLike(2),
    ("np.int64", 2), ("np.uint64", 2**63), ("np.float64", 2.0), ("np.bool_", True),
    ("np.array", (2, 2)), ("np.array", ((1, 1), (1, 1))), ("np.array", 2), ("np.array", ()),
]

DTYPES = ["bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
          "float16", "float32", "float64", "longdouble", "complex64", "complex128",
          "object", "<U3", "datetime64[s]", "timedelta64[ms]", "V4"]
FLOAT_DTYPES = ["float32", "float64", "float32", "float64", "float16", "int32", "uint8", "bool",
                "int64", "uint64", "longdouble"]
LAYOUTS = ["C", "F", "reversed", "strided", "readonly", "bigendian", "misaligned",
           "broadcast", "list", "nested-ragged", "scalar"]


def realize(value):
    """Turn the plain-data markers of a case into the objects they stand for."""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        kind, arg = value
        if kind == "np.array":
            return np.array(arg)
        if kind.startswith("np.") and kind[3:] in ("int64", "uint64", "float64", "bool_"):
            return getattr(np, kind[3:])(arg)
    if isinstance(value, tuple) and len(value) == 6 and value[0] == "array":
        return build_array(*value[1:])
    if isinstance(value, tuple):
        return tuple(realize(v) for v in value)
    if isinstance(value, list):
        return [realize(v) for v in value]
    return value


def _values(rng, shape, fill):
    if fill == "special":
        pool = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 1e38, -1e-45, 65504.0])
        return rng.choice(pool, size=shape) * rng.choice([1.0, 1.0, 1.0, 0.5], size=shape)
    if fill == "ints":
        return rng.integers(-3, 4, size=shape).astype(np.float64)   # ties in max pooling
    return rng.standard_normal(shape)


def build_array(shape, dtype, layout, fill, seed):
    rng = np.random.default_rng(seed)
    values = _values(rng, shape, fill)
    dt = np.dtype(dtype)
    with np.errstate(all="ignore"):
        if dt.kind in "biu":
            base = np.nan_to_num(values, nan=0, posinf=100, neginf=-100)
            base = np.clip(base, -100, 100)
            a = np.abs(base).astype(dt) if dt.kind == "u" else base.astype(dt)
        elif dt.kind in "fc":
            a = values.astype(dt)
        elif dt.kind in "Mm":
            a = np.nan_to_num(values).astype(np.int64).astype(dt)
        elif dt.kind == "O":
            a = values.astype(object)
        elif dt.kind == "U":
            a = values.astype(dt)
        else:
            a = np.zeros(shape, dt)
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "reversed":
        return a[(slice(None, None, -1),) * a.ndim]
    if layout == "strided":
        big = np.repeat(a, 2, axis=-1) if a.ndim else a
        return big[..., ::2] if a.ndim else big
    if layout == "readonly":
        a.setflags(write=False)
        return a
    if layout == "bigendian":
        return a.astype(dt.newbyteorder(">")) if dt.itemsize > 1 and dt.kind in "biufc" else a
    if layout == "misaligned":
        raw = np.empty(a.nbytes + 1, np.uint8)[1:]
        if dt.kind == "O":
            return a
        b = raw.view(dt).reshape(a.shape)
        b[...] = a
        return b
    if layout == "broadcast" and a.ndim:
        return np.broadcast_to(a[..., :1], a.shape)
    if layout == "list":
        return a.tolist()
    if layout == "nested-ragged":
        return [a.tolist(), [1.0]] if a.ndim else [[1.0, 2.0], [1.0]]
    if layout == "scalar":
        return 1.5
    return a


# ---------------------------------------------------------------------------------------
# Case strategies (hypothesis)
# ---------------------------------------------------------------------------------------

def strategies():
    """The case strategy for each target, built lazily (hypothesis imports on use)."""
    from hypothesis import strategies as st

    small = st.integers(0, 5)

    def maybe_hostile(valid, p_hostile=0.05):
        return st.floats(0, 1).flatmap(
            lambda u: st.sampled_from(HOSTILE) if u < p_hostile else valid)

    def array(shape_st, dtypes=FLOAT_DTYPES, p_odd=0.06):
        """An array spec: mostly float dtypes and C layout, sometimes anything."""
        dtype = st.floats(0, 1).flatmap(
            lambda u: st.sampled_from(DTYPES if u < p_odd else dtypes))
        layout = st.floats(0, 1).flatmap(
            lambda u: st.sampled_from(LAYOUTS if u < 0.08 else LAYOUTS[:8] if u < 0.4 else ["C"]))
        fill = st.sampled_from(["normal", "normal", "normal", "ints", "special"])
        return st.tuples(st.just("array"), shape_st, dtype, layout, fill, st.integers(0, 2**16))

    def odd_shape(nd_ok):
        """Mostly a shape with an allowed rank, sometimes 0-d .. 5-d."""
        return st.floats(0, 1).flatmap(
            lambda u: st.lists(small, min_size=0, max_size=5).map(tuple) if u < 0.1
            else st.sampled_from(nd_ok).flatmap(
                lambda n: st.lists(st.integers(0, 6), min_size=n, max_size=n).map(tuple)))

    def ints(nd, lo, hi):
        v = st.integers(lo, hi)
        return st.one_of(v, st.lists(v, min_size=nd, max_size=nd).map(tuple))

    def padding(nd, strings=True):
        p = st.integers(0, 3)
        options = [p, st.lists(p, min_size=nd, max_size=nd).map(tuple),
                   st.lists(st.tuples(p, p), min_size=nd, max_size=nd).map(tuple)]
        if strings:
            options.append(st.sampled_from(["same", "valid"]))
        return st.one_of(*options)

    def kwargs(**params):
        """Each parameter: left out (its default) or drawn, sometimes hostile."""
        items = [st.one_of(st.just(None), st.tuples(st.just(k), v)) for k, v in params.items()]
        return st.tuples(*items).map(lambda kv: dict(x for x in kv if x is not None))

    def out_spec():
        return st.one_of(st.just(None), st.just(None), st.just(None),
                         st.sampled_from(["exact", "exact", "wrong-shape", "wrong-dtype",
                                          "fortran", "readonly", "input", "list", "strided"]))

    def conv(nd, transposed, flip=False):
        @st.composite
        def case(draw):
            g = draw(st.integers(1, 3))
            c_in, c_out = g * draw(st.integers(0, 2)), g * draw(st.integers(0, 3))
            n = draw(st.integers(0, 2))
            sizes = tuple(draw(st.integers(0, 7)) for _ in range(nd))
            k = tuple(draw(st.integers(0, 3)) for _ in range(nd))
            x_shape = ((n,) if draw(st.booleans()) else ()) + (c_in,) + sizes
            w_shape = ((c_in, c_out // g) if transposed else (c_out, c_in // g)) + k
            if draw(st.integers(0, 9)) == 0:  # a mismatched shape now and then
                x_shape = draw(odd_shape([nd + 1, nd + 2]))
            if draw(st.integers(0, 9)) == 0:
                w_shape = draw(odd_shape([nd + 2]))
            x = draw(array(st.just(x_shape)))
            w = draw(array(st.just(w_shape)))
            bias = draw(st.one_of(st.just(None), array(st.one_of(
                st.just((c_out,)), st.just((c_out,)), odd_shape([1])))))
            params = dict(stride=maybe_hostile(ints(nd, 1, 3)),
                          padding=maybe_hostile(padding(nd, strings=not transposed)),
                          dilation=maybe_hostile(ints(nd, 1, 3)),
                          groups=maybe_hostile(st.sampled_from([g, g, 1])),
                          algorithm=maybe_hostile(st.sampled_from(["auto", "direct", "gemm"])))
            if transposed:
                params["output_padding"] = maybe_hostile(ints(nd, 0, 2))
            else:
                params["padding_mode"] = maybe_hostile(st.sampled_from(
                    ["zeros", "reflect", "replicate", "circular"]))
            kw = draw(kwargs(**params))
            if draw(st.booleans()):
                kw["bias"] = bias
            out = draw(out_spec())
            if out is not None:
                kw["out"] = ("out", out)
            return {"args": (x, w), "kwargs": kw}
        return case()

    def pool(nd, kind):
        @st.composite
        def case(draw):
            x = draw(array(odd_shape([nd + 1, nd + 2])))
            if kind in ("adaptive_avg", "adaptive_max"):
                o = st.one_of(st.integers(1, 6), st.lists(
                    st.one_of(st.integers(1, 6), st.none()), min_size=nd, max_size=nd).map(tuple))
                args = (x, draw(maybe_hostile(o, 0.2)))
                params = {}
                if kind == "adaptive_max":
                    params["return_indices"] = maybe_hostile(st.booleans())
            else:
                args = (x, draw(maybe_hostile(ints(nd, 1, 4), 0.15)))
                params = dict(stride=maybe_hostile(st.one_of(st.none(), ints(nd, 1, 3))),
                              padding=maybe_hostile(padding(nd)),
                              dilation=maybe_hostile(ints(nd, 1, 3)),
                              ceil_mode=maybe_hostile(st.booleans()))
                if kind == "max":
                    params["return_indices"] = maybe_hostile(st.booleans())
                else:
                    params["count_include_pad"] = maybe_hostile(st.booleans())
                    params["divisor_override"] = maybe_hostile(st.one_of(st.none(), st.integers(1, 5)))
            kw = draw(kwargs(**params))
            out = draw(out_spec())
            if out is not None:
                kw["out"] = ("out", out)
            return {"args": args, "kwargs": kw}
        return case()

    def helper(name):
        @st.composite
        def case(draw):
            nd = draw(st.integers(1, 3))
            size = draw(maybe_hostile(st.one_of(st.integers(0, 40), st.lists(
                st.integers(0, 40), min_size=nd, max_size=nd).map(tuple))))
            if name == "conv_param_count":
                args = tuple(draw(maybe_hostile(st.integers(1, 8))) for _ in range(2)) + (
                    draw(maybe_hostile(ints(nd, 1, 5))),)
                kw = draw(kwargs(groups=maybe_hostile(st.integers(1, 4)),
                                 bias=maybe_hostile(st.booleans())))
                return {"args": args, "kwargs": kw}
            params = dict(stride=maybe_hostile(ints(nd, 1, 4)),
                          dilation=maybe_hostile(ints(nd, 1, 3)))
            if name == "conv_transpose_output_size":
                params.update(padding=maybe_hostile(padding(nd, strings=False)),
                              output_padding=maybe_hostile(ints(nd, 0, 2)))
            else:
                params["padding"] = maybe_hostile(padding(nd))
            if name == "pool_output_size":
                params["ceil_mode"] = maybe_hostile(st.booleans())
            return {"args": (size, draw(maybe_hostile(ints(nd, 1, 5)))), "kwargs": draw(kwargs(**params))}
        return case()

    def threads(name):
        return st.fixed_dictionaries({"args": st.tuples(maybe_hostile(st.integers(1, 64), 0.4)),
                                      "kwargs": st.just({})})

    def layer(name):
        @st.composite
        def case(draw):
            c_in = draw(st.integers(1, 4))
            if name in ("Conv2d", "ConvTranspose2d"):
                g = draw(st.sampled_from([1, 1, c_in]))
                ctor = (draw(maybe_hostile(st.just(c_in), 0.1)),
                        draw(maybe_hostile(st.integers(1, 3).map(lambda m: m * g), 0.1)),
                        draw(maybe_hostile(ints(2, 1, 3), 0.1)))
                params = dict(stride=maybe_hostile(ints(2, 1, 3)), dilation=maybe_hostile(ints(2, 1, 2)),
                              groups=maybe_hostile(st.just(g)), bias=maybe_hostile(st.booleans()),
                              padding=maybe_hostile(padding(2, strings=name == "Conv2d")))
                if name == "Conv2d":
                    params["padding_mode"] = maybe_hostile(st.sampled_from(
                        ["zeros", "reflect", "replicate", "circular"]))
                else:
                    params["output_padding"] = maybe_hostile(ints(2, 0, 1))
            elif name in ("MaxPool2d", "AvgPool2d"):
                ctor = (draw(maybe_hostile(ints(2, 1, 3))),)
                params = dict(stride=maybe_hostile(st.one_of(st.none(), ints(2, 1, 3))),
                              padding=maybe_hostile(ints(2, 0, 1)),
                              ceil_mode=maybe_hostile(st.booleans()))
            else:  # AdaptiveAvgPool2d
                ctor = (draw(maybe_hostile(ints(2, 1, 4))),)
                params = {}
            kw = draw(kwargs(**params))
            x = draw(array(st.one_of(st.tuples(st.integers(0, 2), st.just(c_in), st.integers(1, 7),
                                               st.integers(1, 7)), odd_shape([3, 4])), p_odd=0.1))
            return {"args": ctor, "kwargs": kw, "input": x}
        return case()

    @st.composite
    def linear(draw):
        lead = tuple(draw(st.lists(st.integers(0, 4), min_size=0, max_size=3)))
        in_f, out_f = draw(st.integers(0, 9)), draw(st.integers(0, 9))
        x_shape = lead + (in_f,) if draw(st.integers(0, 9)) else draw(odd_shape([1, 2, 3]))
        w_shape = (out_f, in_f) if draw(st.integers(0, 9)) else draw(odd_shape([2]))
        kw = {}
        if draw(st.booleans()):
            kw["bias"] = draw(array(st.one_of(st.just((out_f,)), st.just((out_f,)), odd_shape([1]))))
        out = draw(out_spec())
        if out is not None:
            kw["out"] = ("out", out)
        return {"args": (draw(array(st.just(x_shape))), draw(array(st.just(w_shape)))), "kwargs": kw}

    table = {"linear": linear()}
    for nd in (1, 2):
        table[f"conv{nd}d"] = conv(nd, False)
        table[f"convolve{nd}d"] = conv(nd, False, flip=True)
        table[f"conv_transpose{nd}d"] = conv(nd, True)
        table[f"max_pool{nd}d"] = pool(nd, "max")
        table[f"avg_pool{nd}d"] = pool(nd, "avg")
        table[f"adaptive_avg_pool{nd}d"] = pool(nd, "adaptive_avg")
        table[f"adaptive_max_pool{nd}d"] = pool(nd, "adaptive_max")
    for name in ("conv_output_size", "conv_transpose_output_size", "pool_output_size",
                 "conv_param_count"):
        table[name] = helper(name)
    for name in ("set_num_threads", "num_threads"):
        table[name] = threads(name)
    for name in ("Conv2d", "ConvTranspose2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d"):
        table["nn." + name] = layer(name)
    return table


TARGETS = sorted(F.__all__) + ["conv_output_size", "conv_transpose_output_size",
                               "pool_output_size", "conv_param_count", "set_num_threads",
                               "num_threads", "nn.Conv2d", "nn.ConvTranspose2d", "nn.MaxPool2d",
                               "nn.AvgPool2d", "nn.AdaptiveAvgPool2d"]

# ---------------------------------------------------------------------------------------
# Running one case and checking the contract
# ---------------------------------------------------------------------------------------


def _arrays(values):
    """Every ndarray among ``values`` (one level into lists/tuples), for the unchanged check."""
    found = []
    for v in values:
        if isinstance(v, np.ndarray):
            found.append(v)
        elif isinstance(v, (list, tuple)):
            found.extend(x for x in v if isinstance(x, np.ndarray))
    return found


def _snapshot(arrays):
    return [(a, a.copy(), a.dtype, a.shape, a.strides) for a in arrays]


def _assert_unchanged(snapshots, what):
    for a, copy, dtype, shape, strides in snapshots:
        assert (a.dtype, a.shape, a.strides) == (dtype, shape, strides), f"{what} was reshaped"
        same = np.array_equal(a, copy) if a.dtype.hasobject else a.tobytes() == copy.tobytes()
        assert same, f"{what} was modified"


def _expected_dtype(operands):
    """The documented result dtype: result_type of the operands, float64 if not floating."""
    dt = np.result_type(*(np.asarray(o).dtype for o in operands))
    return dt if dt.kind == "f" else np.dtype(np.float64)


def _names(fn):
    # "output shape": a size check on the result, whose cause is the arguments together.
    names = set(inspect.signature(fn).parameters) | {"input", "weight", "bias", "kernel", "out",
                                                     "output shape"}
    return names | {n.replace("_", " ") for n in names}


def _check_error(exc, fn, label):
    if isinstance(exc, MemoryError):
        return
    msg = str(exc)
    assert any(re.search(rf"\b{re.escape(n)}\b", msg) for n in _names(fn)), (
        f"{label}: {type(exc).__name__} message names no parameter: {msg!r}")


def _plain(v):
    """Arguments as the reference takes them: Python ints and tuples."""
    if isinstance(v, np.ndarray):
        return _plain(v.tolist())
    if isinstance(v, (list, tuple)):
        return tuple(_plain(x) for x in v)
    if isinstance(v, (np.integer, np.bool_)):
        return v.item()
    return v


def _make_out(spec, shape, dtype, x):
    if spec == "exact":
        return np.full(shape, 7, dtype)
    if spec == "wrong-shape":
        return np.full(tuple(s + 1 for s in shape), 7, dtype)
    if spec == "wrong-dtype":
        return np.full(shape, 7, np.float32 if dtype != np.float32 else np.float64)
    if spec == "fortran":
        return np.asfortranarray(np.full(shape, 7, dtype)) if len(shape) > 1 and min(shape) > 1 \
            else np.full(shape + (2,), 7, dtype)[..., 0]
    if spec == "readonly":
        out = np.full(shape, 7, dtype)
        out.setflags(write=False)
        return out
    if spec == "input":
        return x if isinstance(x, np.ndarray) else np.full(shape, 7, dtype)
    if spec == "list":
        return np.full(shape, 7, dtype).tolist()
    return np.full(shape + (2,), 7, dtype)[..., 0]  # strided


def _compare(actual, expected, dtype, label):
    assert actual.shape == expected.shape, f"{label}: shape {actual.shape} != reference {expected.shape}"
    assert actual.dtype == dtype, f"{label}: dtype {actual.dtype}, expected {dtype}"
    if actual.size > VALUE_CHECK_LIMIT:
        return
    tol = {2: 2e-3, 4: 1e-4}.get(dtype.itemsize, 1e-12)
    exp = np.asarray(expected, np.float64)
    finite = exp[np.isfinite(exp)]
    scale = max(1.0, float(np.max(np.abs(finite), initial=0.0)))
    act = actual.astype(np.float64)
    if dtype == np.float16:  # a float16 result overflows where float64 does not
        exp = exp.astype(np.float16).astype(np.float64)
    np.testing.assert_allclose(act, exp, rtol=tol, atol=tol * scale, err_msg=label)


def run_functional(name, case):
    fn = getattr(F, name)
    args = [realize(a) for a in case["args"]]
    kwargs = {k: realize(v) for k, v in case["kwargs"].items() if k != "out"}
    out_spec = case["kwargs"].get("out")
    inputs = _snapshot(_arrays(args + list(kwargs.values())))
    out = None
    if out_spec is not None:
        # Learn the result's shape and dtype first (the call must then also succeed with out).
        try:
            probe = fn(*args, **kwargs)
        except ALLOWED_ERRORS:
            probe = None
        first = probe[0] if isinstance(probe, tuple) else probe
        if first is not None:
            out = _make_out(out_spec[1], first.shape, first.dtype, args[0])
            kwargs["out"] = out
    outs = _snapshot(_arrays([out]))
    try:
        result = fn(*args, **kwargs)
    except ALLOWED_ERRORS as exc:
        _check_error(exc, fn, name)
        _assert_unchanged(inputs, f"{name}: an input (after {type(exc).__name__})")
        _assert_unchanged(outs, f"{name}: out (after {type(exc).__name__})")
        return "error"
    _assert_unchanged(inputs, f"{name}: an input")
    y, idx = result if isinstance(result, tuple) else (result, None)
    assert isinstance(y, np.ndarray), f"{name} returned {type(y)}"
    if out is not None:
        assert y is out, f"{name}: out= given but another array returned"
    if out_spec is not None:
        harmless = out_spec[1] == "exact" or out.size == 0 or (
            out_spec[1] == "input" and out is not args[0]) or (
            out_spec[1] in ("fortran", "strided") and out.flags.c_contiguous)
        assert harmless, f"{name}: accepted a bad out= ({out_spec[1]})"

    x = np.asarray(args[0])
    operands = [x] + [np.asarray(a) for a in args[1:2] if name.startswith("conv")] + (
        [np.asarray(kwargs["bias"])] if kwargs.get("bias") is not None else [])
    dtype = _expected_dtype(operands)
    ref_kwargs = {k: _plain(v) for k, v in kwargs.items() if k not in ("out", "algorithm")}
    if ref_kwargs.get("bias") is not None:
        ref_kwargs["bias"] = np.asarray(kwargs["bias"], np.float64)
    ref_args = [np.asarray(args[0], np.float64)] + [
        np.asarray(a, np.float64) if name.startswith("conv") else _plain(a) for a in args[1:]]
    assert y.dtype == dtype, f"{name}: dtype {y.dtype}, expected {dtype}"
    assert y.shape == _reference_shape(name, ref_args, ref_kwargs), \
        f"{name}: shape {y.shape}, the reference's formulas give {_reference_shape(name, ref_args, ref_kwargs)}"
    spatial = math.prod(y.shape[-int(name[-2]):])  # the reference loops over these even when N*C = 0
    if (y.size == 0 or y.size > VALUE_CHECK_LIMIT or spatial > VALUE_CHECK_LIMIT
            or ref_args[0].size > 20000 or _largest_int([ref_args[1:], ref_kwargs]) > 64):
        return "ok-large"
    ref_fn = getattr(reference, name)
    expected = ref_fn(*ref_args, **ref_kwargs)
    e_y, e_idx = expected if isinstance(expected, tuple) else (expected, None)
    _compare(y, e_y, dtype, name)
    if idx is not None:
        assert idx.dtype == np.int64 and idx.shape == y.shape, f"{name}: indices {idx.dtype} {idx.shape}"
        np.testing.assert_array_equal(idx, e_idx, err_msg=f"{name}: indices")
    return "ok"


def _largest_int(value):
    """The largest int anywhere in ``value`` (the reference loops over kernel taps too)."""
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return max((_largest_int(v) for v in value), default=0)
    return abs(value) if isinstance(value, int) else 0


def _reference_shape(name, ref_args, kw):
    """The output shape by the reference module's own formulas (cheap, any size)."""
    x = ref_args[0]
    nd = int(name[-2])
    sizes, lead = x.shape[-nd:], x.shape[:-nd]
    if name.startswith("adaptive"):
        o = reference.as_tuple(ref_args[1], nd)
        return lead + tuple(s if v is None else v for v, s in zip(o, sizes))
    if "pool" in name:
        _, out_sizes, _ = reference._pool_geometry(
            nd, x, ref_args[1], kw.get("stride"), kw.get("padding", 0), kw.get("dilation", 1),
            kw.get("ceil_mode", False))
        return lead + out_sizes
    w = ref_args[1]
    k = w.shape[2:]
    s, d = reference.as_tuple(kw.get("stride", 1), nd), reference.as_tuple(kw.get("dilation", 1), nd)
    lead = x.shape[:-nd - 1]
    if "transpose" in name:
        pads = reference.padding_pairs(kw.get("padding", 0), sizes, k, s, d)
        op = reference.as_tuple(kw.get("output_padding", 0), nd)
        out = tuple((n - 1) * si - pb - pe + di * (ki - 1) + o + 1
                    for n, si, (pb, pe), di, ki, o in zip(sizes, s, pads, d, k, op))
        return lead + (w.shape[1] * kw.get("groups", 1),) + out
    pads = reference.padding_pairs(kw.get("padding", 0), sizes, k, s, d)
    out = tuple(reference.window_count(n + pb + pe, ki, si, di)
                for n, (pb, pe), ki, si, di in zip(sizes, pads, k, s, d))
    return lead + (w.shape[0],) + out


def run_helper(name, case):
    fn = getattr(pyconv, name)
    args = [realize(a) for a in case["args"]]
    kwargs = {k: realize(v) for k, v in case["kwargs"].items()}
    try:
        result = fn(*args, **kwargs)
    except ALLOWED_ERRORS as exc:
        _check_error(exc, fn, name)
        return "error"
    if name == "conv_param_count":
        c_in, c_out, k = (_plain(a) for a in args)
        taps = math.prod(k if isinstance(k, tuple) else (k,))
        expected = (taps * (c_in // kwargs.get("groups", 1)) + int(kwargs.get("bias", True))) * c_out
        assert result == expected, (result, expected)
        return "ok"
    if _largest_int([_plain(args), {k: _plain(v) for k, v in kwargs.items()}]) > 10**6:
        return "ok-large"  # the reference's pool_output_size loops over windows
    size = _plain(args[0])
    sizes = size if isinstance(size, tuple) else (size,)
    nd = len(sizes)
    k = reference.as_tuple(_plain(args[1]), nd)
    d = reference.as_tuple(_plain(kwargs.get("dilation", 1)), nd)
    if name == "conv_transpose_output_size":
        s = reference.as_tuple(_plain(kwargs.get("stride", 1)), nd)
        pads = reference.padding_pairs(_plain(kwargs.get("padding", 0)), sizes, k, s, d)
        op = reference.as_tuple(_plain(kwargs.get("output_padding", 0)), nd)
        expected = tuple((n - 1) * si - pb - pe + di * (ki - 1) + o + 1
                         for n, si, (pb, pe), di, ki, o in zip(sizes, s, pads, d, k, op))
    else:
        s = kwargs.get("stride", 1 if name == "conv_output_size" else None)
        s = k if s is None else reference.as_tuple(_plain(s), nd)
        pads = reference.padding_pairs(_plain(kwargs.get("padding", 0)), sizes, k, s, d)
        if name == "conv_output_size":
            expected = tuple(reference.window_count(n + pb + pe, ki, si, di)
                             for n, (pb, pe), ki, si, di in zip(sizes, pads, k, s, d))
        else:
            expected = tuple(reference.pool_output_size(n, ki, si, p, di, kwargs.get("ceil_mode", False))
                             for n, ki, si, p, di in zip(sizes, k, s, pads, d))
    expected = expected if isinstance(size, tuple) else expected[0]
    assert result == expected, f"{name}{tuple(args)}{kwargs}: {result} != {expected}"
    return "ok"


_BASELINE = {}


def _tiny_work():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 23, 19)).astype(np.float32)
    w = rng.standard_normal((9, 3, 3, 3)).astype(np.float32)
    return F.conv2d(x, w, padding=1).tobytes() + F.max_pool2d(x, 3, 2, 1).tobytes()


def run_threads(name, case):
    if not _BASELINE:
        with pyconv.num_threads(1):
            _BASELINE["serial"] = _tiny_work()
    (n,) = [realize(a) for a in case["args"]]
    before = pyconv.get_num_threads()
    try:
        if name == "set_num_threads":
            try:
                pyconv.set_num_threads(n)
            except ALLOWED_ERRORS as exc:
                _check_error(exc, pyconv.set_num_threads, name)
                assert pyconv.get_num_threads() == before, "a rejected n changed the thread count"
                return "error"
            if n is not None:
                assert pyconv.get_num_threads() == int(n), (pyconv.get_num_threads(), n)
            assert _tiny_work() == _BASELINE["serial"], f"set_num_threads({n!r}): results differ"
        else:
            try:
                with pyconv.num_threads(n) as got:
                    assert got == int(n) and pyconv.get_num_threads() == int(n)
                    assert _tiny_work() == _BASELINE["serial"], f"num_threads({n!r}): results differ"
            except ALLOWED_ERRORS as exc:
                _check_error(exc, pyconv.num_threads, name)
                assert pyconv.get_num_threads() == before, "a rejected n changed the thread count"
                return "error"
            assert pyconv.get_num_threads() == before, "num_threads did not restore"
    finally:
        pyconv.set_num_threads(None)
    return "ok"


def run_layer(name, case):
    cls = getattr(nn, name.split(".")[1])
    args = [realize(a) for a in case["args"]]
    kwargs = {k: realize(v) for k, v in case["kwargs"].items()}
    try:
        layer = cls(*args, **kwargs)
    except ALLOWED_ERRORS as exc:
        _check_error(exc, cls, name)
        return "error"
    x = realize(case["input"])
    inputs = _snapshot(_arrays([x]))
    # The layer must agree with its functional form on the layer's own attributes.
    if name in ("nn.Conv2d", "nn.ConvTranspose2d"):
        fname = "conv2d" if name == "nn.Conv2d" else "conv_transpose2d"
        fkw = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                   groups=layer.groups)
        if fname == "conv2d":
            fkw["padding_mode"] = layer.padding_mode
        else:
            fkw["output_padding"] = layer.output_padding
        ref_call = lambda: getattr(F, fname)(x, layer.weight, layer.bias, **fkw)  # noqa: E731
    elif name == "nn.AdaptiveAvgPool2d":
        ref_call = lambda: F.adaptive_avg_pool2d(x, layer.output_size)  # noqa: E731
    elif name == "nn.MaxPool2d":
        ref_call = lambda: F.max_pool2d(x, layer.kernel_size, layer.stride, layer.padding,  # noqa: E731
                                        layer.dilation, layer.ceil_mode)
    else:
        ref_call = lambda: F.avg_pool2d(x, layer.kernel_size, layer.stride, layer.padding,  # noqa: E731
                                        layer.ceil_mode, layer.count_include_pad,
                                        layer.divisor_override)
    try:
        y = layer(x)
    except ALLOWED_ERRORS as exc:
        _check_error(exc, cls, name) if not isinstance(exc, MemoryError) else None
        _assert_unchanged(inputs, f"{name}: the input")
        try:
            ref_call()
        except ALLOWED_ERRORS:
            return "error"
        raise AssertionError(f"{name} raised {exc!r} where the functional form succeeds")
    _assert_unchanged(inputs, f"{name}: the input")
    expected = ref_call()
    np.testing.assert_array_equal(y, expected, err_msg=name)
    assert y.dtype == expected.dtype
    return "ok"


def run_linear(case):
    """linear: the contract (errors name a parameter, inputs unchanged, out=) and the
    values against a float64 matmul."""
    args = [realize(a) for a in case["args"]]
    kwargs = {k: realize(v) for k, v in case["kwargs"].items() if k != "out"}
    inputs = _snapshot(_arrays(args + list(kwargs.values())))
    out_spec = case["kwargs"].get("out")
    if out_spec is not None:
        try:
            probe = F.linear(*args, **kwargs)
        except ALLOWED_ERRORS:
            probe = None
        if probe is not None:
            kwargs["out"] = _make_out(out_spec[1], probe.shape, probe.dtype, args[0])
    try:
        y = F.linear(*args, **kwargs)
    except ALLOWED_ERRORS as exc:
        _check_error(exc, F.linear, "linear")
        _assert_unchanged(inputs, "linear: an input (after an error)")
        return "error"
    _assert_unchanged(inputs, "linear: an input")
    operands = [np.asarray(args[0]), np.asarray(args[1])] + (
        [np.asarray(kwargs["bias"])] if kwargs.get("bias") is not None else [])
    dtype = _expected_dtype(operands)
    assert y.dtype == dtype, f"linear: dtype {y.dtype}, expected {dtype}"
    x64, w64 = (np.asarray(a, np.float64) for a in args[:2])
    with np.errstate(all="ignore"):  # inf * 0 in the special values: NaN, as in the kernel
        expected = x64 @ w64.T
        if kwargs.get("bias") is not None:
            expected = expected + np.asarray(kwargs["bias"], np.float64)
    assert y.shape == expected.shape, f"linear: shape {y.shape}, expected {expected.shape}"
    with np.errstate(over="ignore"):  # a float32 result is inf where float64 exceeds its range
        expected = expected.astype(dtype)
    _compare(y, expected, dtype, "linear")
    return "ok"


def run_case(target, case):
    if target == "linear":
        return run_linear(case)
    if target.startswith("nn."):
        return run_layer(target, case)
    if target in ("set_num_threads", "num_threads"):
        return run_threads(target, case)
    if target in F.__all__:
        return run_functional(target, case)
    return run_helper(target, case)


# ---------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------

def encode(target, case):
    return base64.b64encode(pickle.dumps((target, case))).decode()


def limit_memory(gib):
    """Cap the address space so a valid-but-huge output is a quick MemoryError, not an
    OOM kill. Not under AddressSanitizer (it reserves terabytes of shadow memory; there
    ASAN_OPTIONS=allocator_may_return_null=1:max_allocation_size_mb=... do this job)."""
    if "asan" in os.environ.get("LD_PRELOAD", ""):
        return
    resource.setrlimit(resource.RLIMIT_AS, (gib << 30, gib << 30))


def fuzz(target, examples, seed, case_file, shrink):
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed

    counts = {}

    @hypothesis_seed(seed)
    @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck), print_blob=False,
              report_multiple_bugs=False,
              phases=[p for p in Phase if shrink or p not in (Phase.shrink, Phase.explain)])
    @given(case=strategies()[target])
    def check(case):
        line = encode(target, case)
        with open(case_file, "w") as f:
            f.write(line + "\n" + repr(case) + "\n")
        try:
            outcome = run_case(target, case)
        except Exception as exc:
            raise AssertionError(f"{exc}\n  case: {case!r}\n  replay: python tests/fuzz_worker.py "
                                 f"--replay {line}") from exc
        counts[outcome] = counts.get(outcome, 0) + 1

    check()
    print(f"{target}: {examples} examples, outcomes {counts}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", nargs="?", choices=TARGETS)
    parser.add_argument("--examples", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--case-file", default=os.devnull)
    parser.add_argument("--replay")
    parser.add_argument("--memory-gib", type=int, default=4)
    parser.add_argument("--no-shrink", action="store_true",
                        help="report the first failing case as found (bounded time, for CI)")
    opts = parser.parse_args()
    faulthandler.enable()
    limit_memory(opts.memory_gib)
    if opts.replay:
        target, case = pickle.loads(base64.b64decode(opts.replay))
        print(target, repr(case))
        print(run_case(target, case))
        return
    fuzz(opts.target, opts.examples, opts.seed, opts.case_file, not opts.no_shrink)


if __name__ == "__main__":
    main()
