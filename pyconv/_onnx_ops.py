"""ONNX operators for :mod:`pyconv.onnx`: one *compiler* per op type.

    load time:  Node (op_type, attributes, input names) + constants --compile--> fn
    run time:   fn(*input arrays) -> output array (or a tuple, for several outputs)

A compiler reads every attribute it understands through ``node.attr`` and checks
every value it cannot honour with ``node.fail`` -- so an unsupported operator, an
unknown attribute or an unsupported attribute value is reported at load time, naming
the node. The functions it returns are NumPy and pyconv only: convolution and pooling
go to ``pyconv.functional`` (with the fused activation as the conv's clamp), the rest
are a few NumPy lines each. Constant inputs (weights) are converted once, here.

ONNX semantics that differ from PyTorch and are mapped here: ``pads`` are
``[x1_begin, x2_begin, ..., x1_end, x2_end]`` (-> pyconv's (begin, end) pairs);
``auto_pad`` SAME_UPPER/SAME_LOWER/VALID; AveragePool's ``count_include_pad`` defaults
to 0; MaxPool pads with -inf and returns indices flat over the whole tensor; Softmax
before opset 13 flattens the input to 2-D at ``axis``; Clip, Squeeze, Unsqueeze,
Pad, Split, Slice and the reductions moved attributes to inputs over the opsets.
"""

import numpy as np

from pyconv import functional as F


class OnnxError(ValueError):
    """A model pyconv.onnx cannot load: malformed, or using something unsupported."""


class UnsupportedError(OnnxError, NotImplementedError):
    """An operator, attribute or attribute value pyconv.onnx does not implement."""


OPS = {}  # op_type -> compiler(node, ctx) -> fn


def op(*names):
    def register(compiler):
        for name in names:
            OPS[name] = compiler
        return compiler
    return register


class Node:
    """One ONNX node at load time; graph passes may rewrite its inputs/outputs/clamp."""

    def __init__(self, index, name, op_type, inputs, outputs, attrs, opset):
        self.index, self.name, self.op_type = index, name, op_type
        self.inputs, self.outputs, self.attrs = list(inputs), list(outputs), dict(attrs)
        self.opset = opset
        self.impl = op_type  # the compiler to use; graph passes may switch it (BN -> _ChannelAffine)
        self.clamp = None  # (lo, hi) fused activation, set by the graph passes
        self.used = set()

    @property
    def label(self):
        name = f" {self.name!r}" if self.name else ""
        return f"node {self.index}{name} ({self.op_type})"

    def attr(self, name, default=None):
        self.used.add(name)
        value = self.attrs.get(name, default)
        return value.decode() if isinstance(value, bytes) else value

    def fail(self, message):
        raise UnsupportedError(f"{self.label}: {message}")

    def input(self, i):
        """The i-th input name, or None where it is absent or empty (an omitted optional input)."""
        return self.inputs[i] if i < len(self.inputs) and self.inputs[i] else None

    def n_outputs(self):
        """Number of outputs actually requested (trailing empty names do not count)."""
        n = len(self.outputs)
        while n and not self.outputs[n - 1]:
            n -= 1
        return n

    def max_outputs(self, k):
        if self.n_outputs() > k:
            self.fail(f"only {k} output(s) supported, the model asks for {self.n_outputs()}")


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------

def weight_array(a):
    """A constant weight as a contiguous float32 array (float64 stays float64)."""
    a = np.asarray(a)
    a = np.array(a, dtype=np.float64 if a.dtype == np.float64 else np.float32, order="C")
    a.flags.writeable = False  # a private constant: lets pyconv cache its Winograd transform
    return a


def _clip_fn(clamp):
    """In-place activation for a fresh result array, or None."""
    if clamp is None:
        return None
    lo, hi = clamp
    if hi == np.inf:
        return lambda y: np.maximum(y, lo, out=y)
    return lambda y: np.clip(y, lo, hi, out=y)


def _ints(value, name, node, n=None, default=None):
    if value is None:
        return default
    value = [int(v) for v in value]
    if n is not None and len(value) != n:
        node.fail(f"{name} has {len(value)} values, expected {n}")
    return tuple(value)


def _same_pads(sizes, kernel, strides, dilations, lower):
    """(begin, end) pairs for SAME_UPPER/SAME_LOWER: output ceil(in/stride)."""
    pairs = []
    for size, k, s, d in zip(sizes, kernel, strides, dilations):
        total = max((-(-size // s) - 1) * s + d * (k - 1) + 1 - size, 0)
        small, big = total // 2, total - total // 2
        pairs.append((big, small) if lower else (small, big))
    return tuple(pairs)


def _window_attrs(node, nd):
    """strides, dilations and a padding resolver(sizes, kernel) for Conv and pooling."""
    strides = _ints(node.attr("strides"), "strides", node, nd, (1,) * nd)
    dilations = _ints(node.attr("dilations"), "dilations", node, nd, (1,) * nd)
    if min(strides) < 1 or min(dilations) < 1:
        node.fail(f"strides {strides} and dilations {dilations} must be positive")
    auto_pad = node.attr("auto_pad", "NOTSET")
    pads = _ints(node.attr("pads"), "pads", node, 2 * nd, (0,) * (2 * nd))
    if min(pads) < 0:
        node.fail(f"negative pads {pads} are not supported")
    if auto_pad == "NOTSET":
        pairs = tuple((pads[i], pads[i + nd]) for i in range(nd))
        resolve = lambda sizes, kernel: pairs  # noqa: E731
    elif auto_pad == "VALID":
        resolve = lambda sizes, kernel: ((0, 0),) * nd  # noqa: E731
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        lower = auto_pad == "SAME_LOWER"
        resolve = lambda sizes, kernel: _same_pads(sizes, kernel, strides, dilations, lower)  # noqa: E731
    else:
        node.fail(f"auto_pad={auto_pad!r} is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID")
    return strides, dilations, resolve, auto_pad


def _spatial_rank(node, ctx, kernel_attr, weight=None):
    """nd of a Conv/pool from its kernel_shape, weight or input rank; only 1-D and 2-D run."""
    nd = None
    if kernel_attr is not None:
        nd = len(kernel_attr)
    elif weight is not None:
        nd = weight.ndim - 2
    elif ctx.rank(node.input(0)) is not None:
        nd = ctx.rank(node.input(0)) - 2
    if nd is None:
        node.fail("cannot tell the number of spatial dimensions (no kernel_shape, weight or input rank)")
    if nd not in (1, 2):
        node.fail(f"{nd}-D windows are not supported (pyconv implements 1-D and 2-D)")
    return nd


def _check_rank(node, x, nd):
    if x.ndim != nd + 2:
        raise ValueError(f"{node.label}: input must be {nd + 2}-D (N, C, *spatial), got shape {x.shape}")


# ---------------------------------------------------------------------------------------
# Convolution
# ---------------------------------------------------------------------------------------

@op("Conv", "_ConvAdd")
def conv(node, ctx):
    """Conv; "_ConvAdd" (onnx._fold_residual): a Conv whose fourth input is added to its
    output before the clamp."""
    node.max_outputs(1)
    w_const, b_const = ctx.const(node.input(1)), ctx.const(node.input(2))
    kernel_attr = _ints(node.attr("kernel_shape"), "kernel_shape", node)
    nd = _spatial_rank(node, ctx, kernel_attr, w_const)
    if w_const is not None and kernel_attr is not None and tuple(w_const.shape[2:]) != kernel_attr:
        node.fail(f"kernel_shape {kernel_attr} does not match the weight shape {w_const.shape}")
    groups = int(node.attr("group", 1))
    strides, dilations, resolve, _ = _window_attrs(node, nd)
    clamp = node.clamp if node.clamp is not None else F._NO_CLAMP
    w_ready = None if w_const is None else weight_array(w_const)
    b_ready = None if b_const is None else weight_array(b_const)
    has_bias = node.input(2) is not None
    plan = F._ConvPlan()   # this node's checked call, for the next run on the same shapes
    # Constant weight and bias: a call on an input of the last call's shape repeats the
    # kept call with only the input checked (plan.rerun), without resolving the pads
    # and matching the whole call: `benchmarks/paths.py rerun` (Zen 4, 2 threads, b1)
    # MobileNetV2 0.98 the time, SqueezeNet 0.99, ShuffleNet 0.98, ResNet-50 0.99.
    fixed = w_ready is not None and (b_ready is not None or not has_bias)

    def run(x, w, b=None, residual=None):
        if fixed:
            y = plan.rerun(x, residual)
            if y is not None:
                return y
        _check_rank(node, x, nd)
        w = w_ready if w_ready is not None else w
        b = b_ready if b_ready is not None else (b if has_bias else None)
        pads = resolve(x.shape[2:], w.shape[2:])
        return F._conv("Conv", nd, x, w, b, strides, pads, dilations, groups, "zeros",
                       None, False, clamp=clamp, plan=plan, residual=residual)
    return run


@op("ConvTranspose")
def conv_transpose(node, ctx):
    node.max_outputs(1)
    w_const, b_const = ctx.const(node.input(1)), ctx.const(node.input(2))
    kernel_attr = _ints(node.attr("kernel_shape"), "kernel_shape", node)
    nd = _spatial_rank(node, ctx, kernel_attr, w_const)
    groups = int(node.attr("group", 1))
    strides = _ints(node.attr("strides"), "strides", node, nd, (1,) * nd)
    dilations = _ints(node.attr("dilations"), "dilations", node, nd, (1,) * nd)
    out_pad = _ints(node.attr("output_padding"), "output_padding", node, nd, (0,) * nd)
    pads = _ints(node.attr("pads"), "pads", node, 2 * nd, (0,) * (2 * nd))
    output_shape = _ints(node.attr("output_shape"), "output_shape", node)
    if output_shape is not None:
        output_shape = output_shape[-nd:]
    auto_pad = node.attr("auto_pad", "NOTSET")
    if auto_pad not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
        node.fail(f"auto_pad={auto_pad!r} is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID")
    clamp = node.clamp if node.clamp is not None else F._NO_CLAMP
    w_ready = None if w_const is None else weight_array(w_const)
    b_ready = None if b_const is None else weight_array(b_const)
    has_bias = node.input(2) is not None

    def geometry(sizes, kernel):
        """(pairs, output_padding) per the ONNX spec's total_padding equations."""
        target = output_shape
        if target is None and auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            target = tuple(i * s for i, s in zip(sizes, strides))
        if target is None:
            pairs = tuple((pads[i], pads[i + nd]) for i in range(nd))
            return pairs, out_pad if auto_pad != "VALID" else out_pad
        pairs, extra = [], []
        for i in range(nd):
            total = (strides[i] * (sizes[i] - 1) + out_pad[i]
                     + (kernel[i] - 1) * dilations[i] + 1 - target[i])
            if total < 0:  # the output is larger than the full result: grow output_padding
                pairs.append((0, 0))
                extra.append(out_pad[i] - total)
                continue
            small, big = total // 2, total - total // 2
            pairs.append((small, big) if auto_pad == "SAME_UPPER" else (big, small))
            extra.append(out_pad[i])
        return tuple(pairs), tuple(extra)

    def run(x, w, b=None):
        _check_rank(node, x, nd)
        w = w_ready if w_ready is not None else w
        b = b_ready if b_ready is not None else (b if has_bias else None)
        pairs, output_padding = geometry(x.shape[2:], w.shape[2:])
        return F._conv_transpose("ConvTranspose", nd, x, w, b, strides, pairs, output_padding,
                                 groups, dilations, None, clamp=clamp)
    return run


# ---------------------------------------------------------------------------------------
# Pooling
# ---------------------------------------------------------------------------------------

def _pool_common(node, ctx):
    kernel = _ints(node.attr("kernel_shape"), "kernel_shape", node)
    if kernel is None:
        node.fail("kernel_shape is required")
    nd = _spatial_rank(node, ctx, kernel)
    strides, dilations, resolve, auto_pad = _window_attrs(node, nd)
    ceil_mode = bool(node.attr("ceil_mode", 0))
    if auto_pad != "NOTSET":
        ceil_mode = False  # SAME/VALID fix the output size; ceil_mode does not apply
    return kernel, nd, strides, dilations, resolve, ceil_mode


@op("MaxPool")
def max_pool(node, ctx):
    node.max_outputs(2)
    kernel, nd, strides, dilations, resolve, ceil_mode = _pool_common(node, ctx)
    storage_order = int(node.attr("storage_order", 0))
    if storage_order not in (0, 1):
        node.fail(f"storage_order={storage_order} must be 0 or 1")
    want_indices = node.n_outputs() == 2
    spans = [d * (k - 1) + 1 for k, d in zip(kernel, dilations)]
    pool = F.max_pool1d if nd == 1 else F.max_pool2d

    def run(x):
        _check_rank(node, x, nd)
        pads = resolve(x.shape[2:], kernel)
        source, real_pads = x, pads
        if any(max(p) >= span for p, span in zip(pads, spans)):
            # A window of padding only: ONNX pads with -inf where pyconv gives 0, so pad here.
            x = np.pad(np.asarray(x, np.float32 if x.dtype.itemsize <= 4 else np.float64),
                       [(0, 0), (0, 0)] + list(pads), constant_values=-np.inf)
            pads = ((0, 0),) * nd
        result = pool(x, kernel, strides, pads, dilations, ceil_mode, return_indices=want_indices)
        y, idx = result if want_indices else (result, None)
        if y.dtype != source.dtype:
            y = y.astype(source.dtype)
        if not want_indices:
            return y
        sizes = source.shape[2:]
        if x is not source:  # positions in the -inf-padded input -> in the real one
            coords = np.unravel_index(idx, x.shape[2:])
            coords = [np.clip(c - p[0], 0, s - 1) for c, p, s in zip(coords, real_pads, sizes)]
            idx = np.ravel_multi_index(coords, sizes)
        plane = int(np.prod(sizes))
        if storage_order == 1 and nd == 2:  # column-major position within the plane
            h, w = np.divmod(idx, sizes[1])
            idx = w * sizes[0] + h
        base = np.arange(idx.shape[0] * idx.shape[1], dtype=np.int64).reshape(idx.shape[:2] + (1,) * nd)
        return y, idx + base * plane
    return run


@op("AveragePool")
def avg_pool(node, ctx):
    node.max_outputs(1)
    kernel, nd, strides, dilations, resolve, ceil_mode = _pool_common(node, ctx)
    count_include_pad = bool(node.attr("count_include_pad", 0))
    pool = F.avg_pool1d if nd == 1 else F.avg_pool2d

    def run(x):
        _check_rank(node, x, nd)
        pads = resolve(x.shape[2:], kernel)
        y = pool(x, kernel, strides, pads, ceil_mode, count_include_pad, dilation=dilations)
        return y if y.dtype == x.dtype else y.astype(x.dtype)
    return run


@op("GlobalAveragePool", "GlobalMaxPool")
def global_pool(node, ctx):
    node.max_outputs(1)
    is_max = node.op_type == "GlobalMaxPool"

    def run(x):
        if x.ndim < 3:
            raise ValueError(f"{node.label}: input must be (N, C, *spatial), got shape {x.shape}")
        if x.ndim == 4 and x.dtype == np.float32 and x.shape[2] * x.shape[3] > 0:
            return (F.adaptive_max_pool2d if is_max else F.adaptive_avg_pool2d)(x, 1)
        axes = tuple(range(2, x.ndim))
        return x.max(axis=axes, keepdims=True) if is_max else x.mean(axis=axes, keepdims=True, dtype=x.dtype)
    return run


@op("LRN")
def lrn(node, ctx):
    node.max_outputs(1)
    size = int(node.attr("size"))
    alpha, beta, bias = float(node.attr("alpha", 1e-4)), float(node.attr("beta", 0.75)), float(node.attr("bias", 1.0))
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2

    def run(x):
        """y = x / (bias + alpha/size * sum of x^2 over channels [c - lo, c + hi]) ** beta."""
        sq = np.square(x)
        c = x.shape[1]
        total = sq.copy()
        for shift in range(1, max(lo, hi) + 1):
            if shift <= lo and shift < c:   # channel c - shift
                total[:, shift:] += sq[:, :c - shift]
            if shift <= hi and shift < c:   # channel c + shift
                total[:, :c - shift] += sq[:, shift:]
        total *= alpha / size
        total += bias
        return x / np.power(total, beta, out=total)
    return run


# ---------------------------------------------------------------------------------------
# Normalisation, dense layers, activations
# ---------------------------------------------------------------------------------------

def batch_norm_affine(node, consts_of):
    """(scale, shift) with BatchNormalization(x) == x*scale[c] + shift[c], or None if not constant."""
    eps = float(node.attr("epsilon", 1e-5))
    node.attr("momentum")
    node.attr("is_test")
    if int(node.attr("spatial", 1)) != 1:
        node.fail("spatial=0 is not supported")
    if int(node.attr("training_mode", 0)) != 0:
        node.fail("training_mode=1 is not supported (inference only)")
    node.max_outputs(1)
    params = [consts_of(node.input(i)) for i in range(1, 5)]
    if any(p is None for p in params):
        return None
    gamma, beta, mean, var = (np.asarray(p, np.float64) for p in params)
    scale = gamma / np.sqrt(var + eps)
    return scale, beta - mean * scale


@op("BatchNormalization")
def batch_norm(node, ctx):
    affine = batch_norm_affine(node, ctx.const)
    if affine is not None:
        return _affine_fn(node, *affine)
    eps = float(node.attr("epsilon", 1e-5))

    def run(x, gamma, beta, mean, var):
        scale = gamma / np.sqrt(var + eps)
        return _affine_fn(node, scale, beta - mean * scale)(x)
    return run


@op("_ChannelAffine")
def channel_affine(node, ctx):
    """Internal: y = x*scale[c] + shift[c] (a BatchNormalization with Mul/Add folded in)."""
    return _affine_fn(node, ctx.const(node.input(1)), ctx.const(node.input(2)))


def _affine_fn(node, scale, shift):
    clip = _clip_fn(node.clamp)
    scale32, shift32 = weight_array(scale), weight_array(shift)

    def run(x, *unused):
        if x.ndim < 2 or x.shape[1] != scale32.size:
            raise ValueError(f"{node.label}: input shape {x.shape} does not have {scale32.size} channels")
        view = (-1,) + (1,) * (x.ndim - 2)
        y = x * scale32.astype(x.dtype, copy=False).reshape(view)
        y += shift32.astype(x.dtype, copy=False).reshape(view)
        if clip is not None:
            clip(y)
        return y
    return run


@op("Gemm")
def gemm(node, ctx):
    node.max_outputs(1)
    alpha, beta = float(node.attr("alpha", 1.0)), float(node.attr("beta", 1.0))
    trans_a, trans_b = int(node.attr("transA", 0)), int(node.attr("transB", 0))
    node.attr("broadcast")  # opset < 7 only; broadcasting is unidirectional from 7 on
    b_const, c_const = ctx.const(node.input(1)), ctx.const(node.input(2))
    b_ready = None
    if b_const is not None:
        # B as stored (times alpha): a transposed view goes to BLAS as a flag, no copy.
        b_ready = weight_array(b_const * alpha if alpha != 1 else b_const)
        b_ready = b_ready.T if trans_b else b_ready
    c_ready = None if c_const is None else weight_array(c_const * beta if beta != 1 else c_const)
    has_c = node.input(2) is not None
    clip = _clip_fn(node.clamp)
    linear = _linear_fn(b_ready, c_ready if has_c and beta != 0 else None, has_c and beta != 0,
                        node.clamp)

    def run(a, b, c=None):
        if linear is not None and not trans_a and a.ndim == 2 and a.dtype == b_ready.dtype:
            return linear(a)
        a = a.T if trans_a else a
        if b_ready is not None:
            y = a @ b_ready.astype(a.dtype, copy=False)
        else:
            y = a @ (b.T if trans_b else b)
            if alpha != 1:
                y *= alpha
        if has_c and beta != 0:
            y += c_ready.astype(y.dtype, copy=False) if c_ready is not None else beta * c
        if clip is not None:
            clip(y)
        return y
    return run


@op("MatMul")
def matmul(node, ctx):
    node.max_outputs(1)
    b_const = ctx.const(node.input(1))
    b_ready = None if b_const is None or b_const.dtype.kind != "f" else weight_array(b_const)

    linear = None if b_ready is None or b_ready.ndim != 2 else _linear_fn(b_ready, None, False, None)

    def run(a, b):
        if linear is not None and a.ndim >= 1 and a.dtype == b_ready.dtype:
            return linear(a)
        return np.matmul(a, b_ready.astype(a.dtype, copy=False) if b_ready is not None else b)
    return run


def _linear_fn(b_ready, c_ready, has_c, clamp):
    """``a @ b_ready + c`` (c: a bias over the last axis, or absent) on pyconv's GEMM
    kernel (functional.linear: BLAS threads left spinning after a NumPy matmul halved
    the speed of the next convolutions), the weights transposed once, here; None when
    the node is not of that form."""
    if b_ready is None or b_ready.ndim != 2 or b_ready.dtype not in (np.float32, np.float64):
        return None
    bias = None
    if has_c:
        if c_ready is None or c_ready.size != b_ready.shape[1] or c_ready.ndim > 2 \
                or (c_ready.ndim == 2 and c_ready.shape[0] != 1):
            return None
        bias = weight_array(np.ascontiguousarray(c_ready.reshape(-1), dtype=b_ready.dtype))
    weight = weight_array(np.ascontiguousarray(b_ready.T))
    limits = (-np.inf, np.inf) if clamp is None else clamp
    return lambda a: F._linear("Gemm", a, weight, bias, limits, None)


def _float_attr(node, name, default):
    return float(node.attr(name, default))


@op("Relu", "Sigmoid", "Tanh", "Exp", "Log", "Sqrt", "Neg", "Abs", "Reciprocal", "Floor",
    "Ceil", "Identity", "LeakyRelu", "Elu", "HardSigmoid", "HardSwish", "Softplus", "Not",
    "Round", "Sign", "Erf")
def unary(node, ctx):
    node.max_outputs(1)
    kind = node.op_type
    if kind == "LeakyRelu":
        alpha = _float_attr(node, "alpha", 0.01)
        return lambda x: np.where(x >= 0, x, x * np.asarray(alpha, x.dtype))
    if kind == "Elu":
        alpha = _float_attr(node, "alpha", 1.0)
        return lambda x: np.where(x > 0, x, (np.exp(np.minimum(x, 0)) - 1) * np.asarray(alpha, x.dtype))
    if kind == "HardSigmoid":
        alpha, beta = _float_attr(node, "alpha", 0.2), _float_attr(node, "beta", 0.5)
        return lambda x: np.clip(x * np.asarray(alpha, x.dtype) + np.asarray(beta, x.dtype), 0, 1)
    if kind == "Erf":
        import math
        erf = np.vectorize(math.erf, otypes=[np.float64])
        return lambda x: erf(x).astype(x.dtype)
    table = {
        "Relu": lambda x: np.maximum(x, np.zeros((), x.dtype)),
        # 1/(1+e^-x) without overflow warnings: 0.5*(1 + tanh(x/2)).
        "Sigmoid": lambda x: (np.tanh(x * np.asarray(0.5, x.dtype)) + 1) * np.asarray(0.5, x.dtype),
        "Tanh": np.tanh, "Exp": np.exp, "Log": np.log, "Sqrt": np.sqrt, "Neg": np.negative,
        "Abs": np.abs, "Reciprocal": np.reciprocal, "Floor": np.floor, "Ceil": np.ceil,
        "Identity": lambda x: x, "Not": np.logical_not, "Round": np.round, "Sign": np.sign,
        "HardSwish": lambda x: x * np.clip(x / np.asarray(6, x.dtype) + np.asarray(0.5, x.dtype), 0, 1),
        "Softplus": lambda x: np.logaddexp(np.zeros((), x.dtype), x),
    }
    return table[kind]


@op("PRelu")
def prelu(node, ctx):
    node.max_outputs(1)
    return lambda x, slope: np.where(x >= 0, x, x * slope)


@op("Clip")
def clip(node, ctx):
    node.max_outputs(1)
    bounds = clip_bounds(node, ctx.const)
    if bounds is not None:
        lo, hi = bounds
        return lambda x, *unused: np.clip(x, np.asarray(lo).astype(x.dtype), np.asarray(hi).astype(x.dtype))

    def run(x, lo=None, hi=None):
        return np.clip(x, -np.inf if lo is None else lo, np.inf if hi is None else hi).astype(x.dtype)
    return run


def clip_bounds(node, consts_of):
    """(lo, hi) of a Clip: attributes before opset 11, optional inputs from 11; None if not constant."""
    if node.opset < 11:
        return float(node.attr("min", -np.inf)), float(node.attr("max", np.inf))
    bounds = []
    for i, default in ((1, -np.inf), (2, np.inf)):
        name = node.input(i)
        if name is None:
            bounds.append(default)
            continue
        value = consts_of(name)
        if value is None:
            return None
        bounds.append(float(np.asarray(value).reshape(())))
    return tuple(bounds)


@op("Softmax", "LogSoftmax")
def softmax(node, ctx):
    node.max_outputs(1)
    legacy = node.opset < 13
    axis = int(node.attr("axis", 1 if legacy else -1))
    log = node.op_type == "LogSoftmax"

    def normalise(z, axes):
        z = z - z.max(axis=axes, keepdims=True)
        if log:
            return z - np.log(np.exp(z).sum(axis=axes, keepdims=True))
        np.exp(z, out=z)
        z /= z.sum(axis=axes, keepdims=True)
        return z

    def run(x):
        a = axis + x.ndim if axis < 0 else axis
        if legacy:  # coerced to 2-D: (prod(shape[:axis]), prod(shape[axis:]))
            return normalise(x.reshape(int(np.prod(x.shape[:a])), -1), 1).reshape(x.shape)
        return normalise(x, a)
    return run


@op("Dropout")
def dropout(node, ctx):
    node.attr("ratio")
    node.attr("seed")
    node.attr("is_test")
    node.max_outputs(2)
    if node.input(2) is not None:
        mode = ctx.const(node.input(2))
        if mode is None or bool(np.asarray(mode)):
            node.fail("training_mode must be a constant False (inference only)")
    if node.n_outputs() == 2:
        return lambda x, *unused: (x, np.ones(x.shape, bool))
    return lambda x, *unused: x


# ---------------------------------------------------------------------------------------
# Element-wise arithmetic
# ---------------------------------------------------------------------------------------

def _divide(a, b):
    """ONNX Div: true division for floats, truncation toward zero for integers."""
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":
        q = np.floor_divide(a, b)
        fix = (np.remainder(a, b) != 0) & ((a < 0) != (b < 0))
        return q + fix
    return np.divide(a, b)


_BINARY = {
    "Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": _divide,
    "Equal": np.equal, "Less": np.less, "Greater": np.greater, "LessOrEqual": np.less_equal,
    "GreaterOrEqual": np.greater_equal, "And": np.logical_and, "Or": np.logical_or,
}


@op(*_BINARY)
def binary(node, ctx):
    node.max_outputs(1)
    node.attr("broadcast")  # opset < 7 only
    node.attr("axis")
    fn = _BINARY[node.op_type]
    if node.op_type == "Add":   # a residual join (+ ReLU): one parallel pass
        clamp = F._NO_CLAMP if node.clamp is None else node.clamp
        return lambda a, b: F._add_clamp(a, b, clamp)
    clip = _clip_fn(node.clamp)
    if clip is None:
        return fn

    def run(a, b):
        y = fn(a, b)
        clip(y)
        return y
    return run


@op("Pow")
def power(node, ctx):
    node.max_outputs(1)
    return lambda a, b: np.power(a, b).astype(a.dtype, copy=False)


@op("Sum", "Max", "Min", "Mean")
def variadic(node, ctx):
    node.max_outputs(1)
    fn = {"Sum": np.add, "Max": np.maximum, "Min": np.minimum, "Mean": np.add}[node.op_type]
    clip = _clip_fn(node.clamp)
    mean = node.op_type == "Mean"

    join = node.op_type == "Sum"   # two inputs: a residual join (+ ReLU), one parallel pass
    clamp = F._NO_CLAMP if node.clamp is None else node.clamp

    def run(*xs):
        if join and len(xs) == 2:
            return F._add_clamp(xs[0], xs[1], clamp)
        y = xs[0].copy() if len(xs) == 1 else fn(xs[0], xs[1])
        for x in xs[2:]:
            if x.shape == y.shape:
                fn(y, x, out=y)
            else:
                y = fn(y, x)
        if mean:
            y = y / np.asarray(len(xs), y.dtype)
        if clip is not None:
            clip(y)
        return y
    return run


@op("Where")
def where(node, ctx):
    node.max_outputs(1)
    return np.where


@op("Cast")
def cast(node, ctx):
    node.max_outputs(1)
    node.attr("saturate")
    dtype = ctx.numpy_dtype(node, int(node.attr("to")))
    return lambda x: x.astype(dtype)


# ---------------------------------------------------------------------------------------
# Shapes and data movement
# ---------------------------------------------------------------------------------------

def _axes_arg(node, ctx, attr_name="axes", input_index=1):
    """Axes from the attribute (older opsets) or from an input (newer ones): a getter."""
    attr = node.attr(attr_name)
    if attr is not None:
        fixed = tuple(int(a) for a in attr)
        return lambda args: fixed
    name = node.input(input_index)
    if name is None:
        return lambda args: None
    return lambda args: tuple(int(a) for a in np.asarray(args[input_index]).reshape(-1))


@op("Reshape")
def reshape(node, ctx):
    node.max_outputs(1)
    allowzero = int(node.attr("allowzero", 0))

    def run(x, shape):
        shape = [int(s) for s in np.asarray(shape).reshape(-1)]
        if not allowzero:
            shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
        return x.reshape(shape)
    return run


@op("Flatten")
def flatten(node, ctx):
    node.max_outputs(1)
    axis = int(node.attr("axis", 1))

    def run(x):
        a = axis + x.ndim if axis < 0 else axis
        return x.reshape(int(np.prod(x.shape[:a])), int(np.prod(x.shape[a:])))
    return run


@op("Transpose")
def transpose(node, ctx):
    node.max_outputs(1)
    perm = node.attr("perm")
    perm = None if perm is None else tuple(int(p) for p in perm)
    return lambda x: np.ascontiguousarray(np.transpose(x, perm))


@op("Squeeze")
def squeeze(node, ctx):
    node.max_outputs(1)
    axes_of = _axes_arg(node, ctx)

    def run(*args):
        x, axes = args[0], axes_of(args)
        if axes is None:
            axes = tuple(i for i, s in enumerate(x.shape) if s == 1)
        return np.squeeze(x, axis=tuple(a % x.ndim for a in axes))
    return run


@op("Unsqueeze")
def unsqueeze(node, ctx):
    node.max_outputs(1)
    axes_of = _axes_arg(node, ctx)

    def run(*args):
        x, axes = args[0], axes_of(args)
        if axes is None:
            raise ValueError(f"{node.label}: axes are required")
        rank = x.ndim + len(axes)  # axes index the output
        return np.expand_dims(x, tuple(sorted(a % rank for a in axes)))
    return run


@op("Concat")
def concat(node, ctx):
    node.max_outputs(1)
    axis = int(node.attr("axis"))
    return lambda *xs: np.concatenate(xs, axis=axis)


@op("Split")
def split(node, ctx):
    n = len(node.outputs)
    axis = int(node.attr("axis", 0))
    sizes_of = _axes_arg(node, ctx, "split", 1)
    node.attr("num_outputs")

    def run(*args):
        x, sizes = args[0], sizes_of(args)
        dim = x.shape[axis]
        if sizes is None:  # equal parts, the last one smaller (opset 18)
            part = -(-dim // n)
            sizes = [part] * (n - 1) + [dim - part * (n - 1)]
        bounds = np.cumsum(sizes)[:-1]
        return tuple(np.split(x, bounds, axis=axis))
    return run


@op("Slice")
def slice_(node, ctx):
    node.max_outputs(1)
    if node.opset < 10:
        starts, ends = node.attr("starts"), node.attr("ends")
        axes = node.attr("axes")
        fixed = (starts, ends, axes, None)
        get = lambda args: fixed  # noqa: E731
    else:
        def get(args):
            vals = [None if i >= len(args) or args[i] is None else
                    [int(v) for v in np.asarray(args[i]).reshape(-1)] for i in range(1, 5)]
            return vals

    def run(*args):
        x = args[0]
        starts, ends, axes, steps = get(args)
        axes = list(range(len(starts))) if axes is None else axes
        steps = [1] * len(starts) if steps is None else steps
        index = [slice(None)] * x.ndim
        for s, e, a, st in zip(starts, ends, axes, steps):
            dim = x.shape[a]
            s, e = s + dim if s < 0 else s, e + dim if e < 0 else e
            if st > 0:  # clamp as ONNX does (INT64_MAX/MIN sentinels included)
                s, e = min(max(s, 0), dim), min(max(e, 0), dim)
            else:       # end -1 means "before the first element", which Python spells None
                s, e = min(max(s, 0), dim - 1), min(max(e, -1), dim - 1)
            index[a] = slice(s, None if e < 0 else e, st)
        return x[tuple(index)]
    return run


@op("Shape")
def shape(node, ctx):
    node.max_outputs(1)
    start, end = node.attr("start", 0), node.attr("end")
    return lambda x: np.asarray(x.shape[start:end], dtype=np.int64)


@op("Size")
def size(node, ctx):
    node.max_outputs(1)
    return lambda x: np.asarray(x.size, dtype=np.int64)


@op("Gather")
def gather(node, ctx):
    node.max_outputs(1)
    axis = int(node.attr("axis", 0))
    return lambda x, idx: np.take(x, np.asarray(idx, np.int64), axis=axis)


@op("Expand")
def expand(node, ctx):
    node.max_outputs(1)

    def run(x, shape):
        target = np.broadcast_shapes(x.shape, tuple(int(s) for s in np.asarray(shape).reshape(-1)))
        return np.array(np.broadcast_to(x, target))
    return run


@op("Constant")
def constant(node, ctx):
    node.max_outputs(1)
    forms = {
        "value": lambda v: ctx.tensor(v),
        "value_float": lambda v: np.asarray(v, np.float32),
        "value_floats": lambda v: np.asarray(v, np.float32),
        "value_int": lambda v: np.asarray(v, np.int64),
        "value_ints": lambda v: np.asarray(v, np.int64),
    }
    present = [k for k in node.attrs if k in forms]
    for key in node.attrs:
        if key not in forms:
            node.fail(f"attribute {key!r} is not supported")
    if len(present) != 1:
        node.fail("exactly one value attribute is required")
    value = forms[present[0]](node.attr(present[0]))
    return lambda: value


@op("ConstantOfShape")
def constant_of_shape(node, ctx):
    node.max_outputs(1)
    v = node.attr("value")
    fill = np.zeros(1, np.float32) if v is None else ctx.tensor(v).reshape(-1)

    def run(shape):
        return np.full(tuple(int(s) for s in np.asarray(shape).reshape(-1)), fill[0], dtype=fill.dtype)
    return run


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "edge", "wrap": "wrap"}


@op("Pad")
def pad(node, ctx):
    node.max_outputs(1)
    mode = node.attr("mode", "constant")
    if mode not in _PAD_MODES:
        node.fail(f"mode={mode!r} is not one of {tuple(_PAD_MODES)}")
    if node.opset < 11:
        fixed = [int(p) for p in node.attr("pads")]
        value = float(node.attr("value", 0.0))
        get = lambda args: (fixed, value, None)  # noqa: E731
    else:
        def get(args):
            def given(i):
                return i < len(args) and args[i] is not None and np.size(args[i]) > 0

            pads = [int(p) for p in np.asarray(args[1]).reshape(-1)]
            value = np.asarray(args[2]).reshape(-1)[0] if given(2) else 0
            axes = [int(a) for a in np.asarray(args[3]).reshape(-1)] if given(3) else None
            return pads, value, axes

    def run(*args):
        x = args[0]
        pads, value, axes = get(args)
        axes = list(range(x.ndim)) if axes is None else [a % x.ndim for a in axes]
        k = len(axes)
        if len(pads) != 2 * k:
            raise ValueError(f"{node.label}: pads has {len(pads)} values for {k} axes")
        widths = [(0, 0)] * x.ndim
        crop = [slice(None)] * x.ndim
        for i, a in enumerate(axes):
            b, e = pads[i], pads[i + k]
            widths[a] = (max(b, 0), max(e, 0))  # negative pads crop
            crop[a] = slice(max(-b, 0), x.shape[a] - max(-e, 0))
        x = x[tuple(crop)]
        if mode == "constant":
            return np.pad(x, widths, mode="constant", constant_values=value)
        return np.pad(x, widths, mode=_PAD_MODES[mode])
    return run


def _reduce(node, ctx, fn):
    node.max_outputs(1)
    keepdims = bool(node.attr("keepdims", 1))
    noop = bool(node.attr("noop_with_empty_axes", 0))
    axes_of = _axes_arg(node, ctx)

    def run(*args):
        x, axes = args[0], axes_of(args)
        if not axes:
            if noop:
                return x
            axes = None
        return fn(x, axis=axes, keepdims=keepdims)
    return run


@op("ReduceMean")
def reduce_mean(node, ctx):
    return _reduce(node, ctx, lambda x, axis, keepdims: np.mean(x, axis=axis, keepdims=keepdims, dtype=x.dtype))


@op("ReduceSum")
def reduce_sum(node, ctx):
    return _reduce(node, ctx, np.sum)


@op("ReduceMax")
def reduce_max(node, ctx):
    return _reduce(node, ctx, np.max)


@op("ReduceMin")
def reduce_min(node, ctx):
    return _reduce(node, ctx, np.min)
