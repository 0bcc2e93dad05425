"""pyconv.functional -- convolution, transposed convolution and pooling on NumPy arrays.

Names, argument order, defaults and semantics follow ``torch.nn.functional``. Beyond
PyTorch (keyword-compatible, as ONNX and TensorFlow models need):

* ``padding`` may give (begin, end) pairs per spatial dim, e.g. ``((top, bottom), (left,
  right))``; ``'same'`` works for any stride and even kernels (the extra pad goes at
  the end, like TensorFlow/ONNX SAME_UPPER) and ``'valid'`` means no padding -- for
  convolution and pooling;
* ``padding_mode='zeros'|'reflect'|'replicate'|'circular'`` for convolution;
* ``dilation`` for average pooling;
* pooling padding is not limited to half the kernel; a window of padding only yields 0
  (its max-pool index is -1);
* ``out=``: a preallocated C-contiguous array of the exact shape and dtype;
* ``algorithm='auto'|'direct'|'gemm'|'winograd'|'winograd2x2'`` for convolution: 'gemm'
  is the implicit-GEMM kernel (register-blocked micro-kernels, chosen per CPU: see
  ``pyconv.show_config()``), 'direct' the direct kernel (zero-padded input rows summed
  tap by tap in registers, also chosen per CPU), 'winograd' F(4x4, 3x3) for
  float32 3x3 stride-1 layers (4x fewer multiplications; error about 2e-6 normwise vs
  1e-7, and a NaN spreads to its whole 4x4 output tile), 'winograd2x2' F(2x2, 3x3) for
  the same layers (2.25x fewer multiplications, errors about 5x smaller normwise and
  10x per element than 'winograd'; faster on small images). 'auto' takes one of the
  two where it pays (>= 16 channels, enough tiles, and a large enough image or
  read-only weights, whose transformed filter is cached: see _auto_algorithm), else
  'gemm' unless a group has fewer than 8 output channels (depthwise layers), else
  'direct'. ``algorithm='direct'`` gives PyTorch-level accuracy. Transposed convolution
  takes 'auto', 'gemm' and 'direct'; 'gemm' is, by shape, one outer-product GEMM (a 1x1
  input without padding), GEMM + col2im (inputs up to twice the weights' size, or
  windows that do not overlap, as 2x2/2; >= 32 input channels, one group) or
  stride-phase sub-correlations on the GEMM kernel;
  'auto' runs 'gemm' unless a group has fewer than 8 output channels and fewer than 64
  taps per phase;
* true convolution (the flipped kernel): :func:`convolve1d`, :func:`convolve2d`.

Arrays: input ``(N, C, *spatial)`` or unbatched ``(C, *spatial)``; conv weight
``(C_out, C_in/groups, *k)``; transposed-conv weight ``(C_in, C_out/groups, *k)``.
Any array-like is accepted; float32 and float64 are computed natively, float16 in
float32; the result dtype is ``np.result_type`` of the operands, with integer and bool
operands computed in (and returned as) float64. Complex, object and string arrays are
a TypeError. Any memory layout, byte order or alignment gives exactly the result of a
contiguous copy, and inputs are never modified.

Each function here only checks arguments, normalises arrays and allocates; the work
is done GIL-free by the compiled kernels in ``pyconv._kernels_<set>`` (correlation,
pooling) and ``pyconv._conv`` (transposed convolution).
"""

import collections
import math

import numpy as np

from pyconv import _args, _dispatch
from pyconv import _conv as _conv_kernels
from pyconv._threads import effective_num_threads

__all__ = [
    "conv1d", "conv2d", "convolve1d", "convolve2d", "linear",
    "conv_transpose1d", "conv_transpose2d",
    "max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d",
    "adaptive_max_pool1d", "adaptive_max_pool2d",
]

_NP_PAD_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}
ALGORITHMS = ("auto", "direct", "gemm", "winograd", "winograd2x2")
# Below this many output channels per group a GEMM tile (4 or 8 channels tall)
# would be mostly padding: depthwise and narrow grouped layers run the direct kernel.
_GEMM_MIN_CHANNELS = 8
# ... unless the group sums over at least this many taps (input channels x kernel
# taps): then even a partial tile beats the row kernel (transposed convolution).
_GEMM_MIN_TAPS = 64
_NO_CLAMP = (-np.inf, np.inf)
# Below this many multiply-adds (or window taps) a call runs on one thread: waking a
# thread team costs microseconds on an idle machine and a scheduler tick (milliseconds)
# on a busy one, more than the work itself. Results do not depend on the thread count.
_PARALLEL_MIN_WORK = 1 << 18
_TRANSPOSE_MIN = 1 << 14   # elements: smaller transposes by NumPy (_transposed)
# Work per element of a one-pass, memory-bound kernel (a plane sum): its elements cost
# more than a multiply-add each. Measured: a 2048 x 7x7 plane sum (100K elements) takes
# 17.6 us on one thread, 9.9 us on two.
_READ_BOUND = 4


# ---------------------------------------------------------------------------------------
# Arrays in and out
# ---------------------------------------------------------------------------------------

def _as_array(value, name):
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise TypeError(f"{name} must be an array-like of numbers: {exc}") from None


_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


def _dtypes(op, operands):
    """(result dtype, compute dtype) for ``operands`` = [(array, name), ...]."""
    first = operands[0][0].dtype
    if (first == _F32 or first == _F64) and all(a.dtype == first for a, _ in operands):
        return first, first   # the common case, without np.result_type's cost
    for array, name in operands:
        kind = array.dtype.kind
        if kind == "c":
            raise TypeError(f"{op}: {name} is complex ({array.dtype}); only real numbers are supported")
        if kind not in "biuf":
            raise TypeError(f"{op}: {name} must hold numbers, got dtype {array.dtype}")
    result = np.result_type(*(array.dtype for array, _ in operands))
    if result.kind != "f":
        result = np.dtype(np.float64)
    compute = np.dtype(np.float32) if result.itemsize <= 4 else np.dtype(np.float64)
    return result, compute


def _native(array, dtype):
    """C-contiguous, aligned, native-byte-order copy of ``array`` as ``dtype`` (no copy if already so)."""
    flags = array.flags
    if array.dtype == dtype and flags.c_contiguous and flags.aligned:  # np.require costs ~3 us
        return array
    return np.require(array, dtype=dtype, requirements=["C", "A"])


def _transposed(a, out=None):
    """Each of the matrices of ``a`` (B, R, C; native float, C-contiguous) transposed
    into ``out`` (B, C, R; a new C-contiguous array if None), by pyconv's tiled kernel:
    NumPy's copy of a transposed view walks one side a whole row apart per element:
    ``benchmarks/paths.py transpose`` (Zen 3, 2 threads) 128 x 1024 float32 0.42 ms
    against 0.076, 64 x 25088 3.7 ms against 0.93. Below _TRANSPOSE_MIN elements
    NumPy's strided copy, whose call costs less than the kernel's (64 x 48: 3 us
    against 7); matrices narrower than the kernel's 32 x 32 tile stay on the kernel,
    within 2 times NumPy's time at 1 thread (8 x 512 x 16: 75 us against 40) and
    level at 2."""
    if a.size < _TRANSPOSE_MIN:
        if out is None:
            return np.ascontiguousarray(a.transpose(0, 2, 1))
        out[...] = a.transpose(0, 2, 1)
        return out
    if out is None:
        out = _conv_kernels.empty((a.shape[0], a.shape[2], a.shape[1]), a.dtype)
    _conv_kernels.transpose(a, out, _threads(a.size * 8))
    return out


def _check_out(op, out, shape, dtype, inputs):
    if out is None:
        return
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{op}: out must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != tuple(shape):
        raise ValueError(f"{op}: out has shape {out.shape}, the result has shape {tuple(shape)}")
    if out.dtype != dtype:
        raise ValueError(f"{op}: out has dtype {out.dtype}, the result has dtype {dtype}")
    if not out.flags.c_contiguous or not out.flags.aligned or not out.dtype.isnative:
        raise ValueError(f"{op}: out must be a C-contiguous, aligned, native-byte-order array")
    if not out.flags.writeable:
        raise ValueError(f"{op}: out is read-only")
    for array, name in inputs:
        if array is not None and np.may_share_memory(out, array):
            raise ValueError(f"{op}: out overlaps {name}")


def _result_buffer(out, shape, result, compute):
    """Where the kernel writes: ``out`` itself when it has the compute dtype, else a new array."""
    if out is not None and result == compute:
        return out
    return _conv_kernels.empty(shape, compute)   # from freed outputs: no fresh pages


def _finish(y, out, result):
    """Deliver ``y`` as ``result`` dtype, into ``out`` if given."""
    if out is not None:
        if y is not out:
            out[...] = y
        return out
    return y if y.dtype == result else y.astype(result)


def _check_choice(op, name, value, choices):
    if not isinstance(value, str):
        raise TypeError(f"{op}: {name} must be a string, one of {choices}, got {value!r}")
    if value not in choices:
        raise ValueError(f"{op}: {name} must be one of {choices}, got {value!r}")


def _check_ndim(op, name, array, ndims):
    if array.ndim not in ndims:
        want = " or ".join(str(d) for d in ndims)
        raise ValueError(f"{op}: {name} must be {want}-dimensional, got shape {array.shape}")


# ---------------------------------------------------------------------------------------
# Correlation / true convolution
# ---------------------------------------------------------------------------------------

class _ConvPlan:
    """A checked and resolved call of :func:`_conv`, kept by its caller (a convolution
    layer, an ONNX Conv node) for the next call with the same arguments: the checks,
    padding, output size and algorithm choice cost ~15 us per call in Python, as much
    as a small layer's kernel at batch 1 (MobileNetV2 has 52 of them).

    A call matches when its weight and bias are the same objects (with the same shape,
    dtype and strides), its other arguments compare equal, and its input is a
    C-contiguous, aligned ndarray of the same shape and dtype. Only calls whose input,
    weight and bias the kernel reads as they are (no converted copy) are kept, so
    in-place changes to their values are seen. The kept call is one tuple, replaced
    whole, so concurrent calls each see a consistent one. Never pickled: a copy
    starts empty."""
    __slots__ = ("state",)

    def __init__(self):
        self.state = None

    def __reduce__(self):
        return _ConvPlan, ()

    def lookup(self, x, weight, bias, args):
        st = self.state
        if (st is not None and st[0] is weight and st[1] is bias and _takes(st, x)
                and st[2] == args
                and (weight.shape, weight.dtype, weight.strides, _frozen(weight)) == st[5]):
            return st
        return None

    def keep(self, weight, bias, args, x, shape, x4, y4, w4, bc, kernel_fn, tile, params,
             join=None):
        # join (a call with a residual, see _conv): None without one; "fused" where the
        # GEMM kernel adds it; else the clamp that run() applies after adding it.
        self.state = (weight, bias, args, x.shape, x.dtype,
                      (weight.shape, weight.dtype, weight.strides, _frozen(weight)),
                      shape, x4.shape, y4.shape, w4, bc, kernel_fn, tile, params,
                      y4.size * w4[0].size, join)

    def rerun(self, x, residual=None):
        """The kept call again, or None where x (or the residual) does not fit it -- for
        a caller whose weight, bias and other arguments never change (an ONNX Conv
        node's constants; pads resolved from the input's shape): only what lookup
        checks of the input is checked, which is what varies from call to call."""
        st = self.state
        if st is None or not _takes(st, x) or st[2][-1] != (residual is not None):
            return None
        if residual is not None and not _residual_fits(residual, st[6], st[4]):
            return None
        return self.run(st, x, residual)

    @staticmethod
    def run(st, x, residual=None):
        weight, shape, x4_shape, y4_shape, w4, bc, kernel_fn, tile, params, work, join = (
            st[0], *st[6:])
        y = _conv_kernels.empty(shape, x.dtype)
        x4, y4 = x.reshape(x4_shape), y.reshape(y4_shape)
        if tile:
            u = _winograd_weights(weight, w4, tile)   # from the cache when frozen
            kernel_fn(x4, u, bc, y4, *params, _threads(work))
        elif join == "fused":
            kernel_fn(x4, w4, bc, y4, *params, _threads(work), residual=residual.reshape(y4_shape))
        else:
            kernel_fn(x4, w4, bc, y4, *params, _threads(work))
        if join is not None and join != "fused":
            _join_residual(y, residual, join)
        return y


def _takes(st, x):
    """Whether the kept call st (_ConvPlan) reads x as it is: an ndarray of its input's
    shape and dtype, C-contiguous and aligned."""
    return (type(x) is np.ndarray and x.shape == st[3] and x.dtype == st[4]
            and x.flags.c_contiguous and x.flags.aligned)


def _join_residual(y, residual, clamp):
    """y = clamp(y + residual) in place (y and residual C-contiguous, one shape and dtype)."""
    _conv_kernels.add_clamp(y.reshape(-1), residual.reshape(-1), y.reshape(-1),
                            clamp[0], clamp[1], _threads(y.size * 8))


def _residual_fits(residual, shape, dtype):
    """Whether _conv can add ``residual`` to its output of ``shape`` and ``dtype`` itself."""
    return (type(residual) is np.ndarray and residual.shape == shape and residual.dtype == dtype
            and residual.dtype.isnative and residual.flags.c_contiguous and residual.flags.aligned)


def _conv(op, nd, input, weight, bias, stride, padding, dilation, groups,
          padding_mode, out, flip, clamp=_NO_CLAMP, algorithm="auto", plan=None, residual=None):
    """The convolutions' common body. residual (ONNX's Conv -> Add -> ReLU, see
    pyconv/onnx.py): the result is then clamp(convolution + residual), bit for bit the
    convolution without the clamp followed by _add_clamp(y, residual, clamp) -- which is
    what runs when residual is not a C-contiguous array of the output's shape and dtype;
    when it is, the GEMM kernel adds it block by block while the block is in cache, the
    other kernels in one pass afterwards."""
    if plan is not None and out is None:
        args = (stride, padding, dilation, groups, padding_mode, flip, clamp, algorithm,
                residual is not None)
        st = plan.lookup(input, weight, bias, args)
        if st is not None and (residual is None or _residual_fits(residual, st[6], st[4])):
            return plan.run(st, input, residual)
    x = _as_array(input, "input")
    w = _as_array(weight, "weight")
    b = None if bias is None else _as_array(bias, "bias")
    result, compute = _dtypes(op, [(x, "input"), (w, "weight")] + ([] if b is None else [(b, "bias")]))
    _check_ndim(op, "input", x, (nd + 1, nd + 2))
    _check_ndim(op, "weight", w, (nd + 2,))
    stride = _args.int_tuple(stride, nd, "stride", 1)
    dilation = _args.int_tuple(dilation, nd, "dilation", 1)
    groups = _args.positive_int(groups, "groups")
    spec = _args.padding_spec(padding, nd)
    _check_choice(op, "padding_mode", padding_mode, _args.PADDING_MODES)
    _check_choice(op, "algorithm", algorithm, ALGORITHMS)

    batched = x.ndim == nd + 2
    c_in, sizes = x.shape[-nd - 1], x.shape[-nd:]
    c_out, kernel = w.shape[0], w.shape[2:]
    if c_in % groups:
        raise ValueError(f"{op}: groups={groups} does not divide the input channels ({c_in})")
    if c_out % groups:
        raise ValueError(f"{op}: groups={groups} does not divide the output channels "
                         f"(weight shape {w.shape})")
    if w.shape[1] * groups != c_in:
        raise ValueError(f"{op}: weight shape {w.shape} with groups={groups} expects "
                         f"{w.shape[1] * groups} input channels, input has {c_in} (shape {x.shape})")
    if any(k == 0 for k in kernel):
        raise ValueError(f"{op}: kernel size must be >= 1, weight has shape {w.shape}")
    if b is not None and b.shape != (c_out,):
        raise ValueError(f"{op}: bias must have shape ({c_out},), got {b.shape}")
    pads = _args.resolve_padding(spec, sizes, kernel, stride, dilation)
    if padding_mode != "zeros":
        # PyTorch's limits: reflect needs pad < size, circular pad <= size, replicate
        # any pad of a non-empty input.
        for size, (pb, pe) in zip(sizes, pads):
            limit = {"reflect": size - 1, "circular": size}.get(padding_mode, _args.SIZE_LIMIT)
            if max(pb, pe) > limit or (size == 0 and pb + pe > 0):
                raise ValueError(f"{op}: padding {pads} is too large for padding_mode="
                                 f"{padding_mode!r} on an input of size {tuple(sizes)}")
    out_sizes = _args.conv_sizes(op, sizes, kernel, stride, pads, dilation)
    shape = ((x.shape[0],) if batched else ()) + (c_out,) + out_sizes
    _args.check_elements(op, shape)
    _check_out(op, out, shape, result, [(x, "input"), (w, "weight"), (b, "bias")])
    if residual is not None and (out is not None or result != compute
                                 or not _residual_fits(residual, shape, result)):
        # Another shape (broadcast), dtype or layout: the convolution, then NumPy's rules.
        y = _conv(op, nd, input, weight, bias, stride, padding, dilation, groups,
                  padding_mode, None, flip, _NO_CLAMP, algorithm, plan)
        return _add_clamp(y, residual, clamp, out=out)
    join = None if residual is None else clamp   # the clamp, applied after the residual join

    # Normalise: batched, native, contiguous; non-zero padding modes pad in NumPy.
    xc = _native(x if batched else x[None], compute)
    wc = _native(np.flip(w, axis=tuple(range(2, nd + 2))) if flip else w, compute)
    bc = np.zeros(c_out, compute) if b is None else _native(b, compute)
    if padding_mode != "zeros" and any(p for pair in pads for p in pair):
        xc = np.pad(xc, [(0, 0), (0, 0)] + list(pads), mode=_NP_PAD_MODE[padding_mode])
        pads = tuple((0, 0) for _ in pads)
    y = _result_buffer(out, shape, result, compute)
    y4 = y.reshape((xc.shape[0], c_out) + (1,) * (2 - nd) + out_sizes)
    if y4.size:
        if xc.size == 0:  # no input channels or an empty input: only bias and activation
            y4[...] = bc.reshape(-1, 1, 1) if join else np.clip(bc.reshape(-1, 1, 1), *clamp)
            if join:
                _join_residual(y, residual, join)
        else:
            x4 = xc.reshape(xc.shape[:2] + (1,) * (2 - nd) + xc.shape[2:])
            w4 = wc.reshape(wc.shape[:2] + (1,) * (2 - nd) + wc.shape[2:])
            (sh, sw), (dh, dw), (ph, pw) = _hw(stride, 1), _hw(dilation, 1), _hw([p[0] for p in pads], 0)
            fits = _winograd_fits(w4, compute, (sh, sw), (dh, dw), groups)
            if algorithm in _WINOGRAD_TILE and not fits:
                raise ValueError(f"{op}: algorithm={algorithm!r} needs float32 and a 3x3 kernel with "
                                 f"stride 1, dilation 1 and groups=1 (2-D)")
            if algorithm == "auto":
                algorithm = _auto_algorithm(w, w4, y4, groups, fits and not flip)
            threads = _threads(y4.size * w4[0].size)
            # With a residual the kernel's own clamp waits: the GEMM kernel joins it itself
            # ("fused"), the others leave it to one pass afterwards (_join_residual).
            lo, hi = clamp if join is None or algorithm == "gemm" else _NO_CLAMP
            if join is not None and algorithm == "gemm":
                join = "fused"
            if algorithm in _WINOGRAD_TILE:
                m = _WINOGRAD_TILE[algorithm]
                u = _winograd_weights(w if not flip else None, w4, m)
                kernel_fn = (_dispatch.kernels.winograd_conv2d if m == 4
                             else _dispatch.kernels.winograd2_conv2d)
                params = (ph, pw, lo, hi)
                kernel_fn(x4, u, bc, y4, *params, threads)
            else:
                m = 0
                kernel_fn = (_dispatch.kernels.conv2d_igemm if algorithm == "gemm"
                             else _dispatch.kernels.conv2d_direct)
                params = (sh, sw, ph, pw, dh, dw, groups, lo, hi)
                if join == "fused":
                    kernel_fn(x4, w4, bc, y4, *params, threads, residual=residual.reshape(y4.shape))
                else:
                    kernel_fn(x4, w4, bc, y4, *params, threads)
            if join is not None and join != "fused":
                _join_residual(y, residual, join)
            if (plan is not None and out is None and xc is input and wc is weight and not flip
                    and (bc is bias or bias is None) and y.dtype == result):
                plan.keep(weight, bias, args, x, shape, x4, y4, w4, bc, kernel_fn, m, params, join)
    return _finish(y, out, result)


# ---------------------------------------------------------------------------------------
# Algorithm choice
# ---------------------------------------------------------------------------------------

# Winograd F(4x4, 3x3) ('winograd') and F(2x2, 3x3) ('winograd2x2') do a 3x3 stride-1
# layer with 4x and 2.25x fewer multiplications. Measured on a 2-core AVX2 machine (2
# threads, read-only weights, C_in = C_out; times in ms, F(4, 3) / F(2, 3) / GEMM):
#
# * F(4, 3) wins from 16 of its 4x4 tiles over the batch and 32 channels, at any row
#   width: 256@14x14 b1 1.10 / 1.36 / 2.04, 128@14x14 b1 0.26 / 0.34, 128@7x7 b4 0.44 /
#   0.52, 64@14x14 b8 0.52 / 0.65, 32@112x112 b1 1.42 / 1.78, 32@28x28 b8 0.78 / 0.99;
#   the closest calls 64@7x7 b8 0.27 / 0.27, 32@56x56 b1 0.43 / 0.45. With 4 tiles (7x7
#   and 8x8 images at batch 1) it streams its 36 x C_out x C_in filter for too little
#   work: 512@7x7 3.40 / 1.94 / 2.86, 256@8x8 0.60 / 0.35. Below 32 channels the two
#   tie (16@56x56 b1 0.20 / 0.20, 24@56x56 0.37 / 0.36): F(2, 3), the more accurate.
#   (The 32-channel threshold was 48 until F(4, 3)'s small layers took the private
#   schedule, _winograd.pxi.)
# * F(2, 3) beats the GEMM kernel from 16 of its 2x2 tiles (16@8x8 b1: 1.2x; 64@4x4 b1
#   = 4 tiles: 0.7x).
# * The filter transform, paid per call unless the weights are read-only (then cached),
#   costs about 17-28 ns (F(4, 3)) and 9-14 ns (F(2, 3)) per C_out x C_in filter on one
#   core (its output, 36 or 16 floats per filter, mostly goes to L3). With writable
#   weights (2 threads, ms, GEMM / F(2, 3) / F(4, 3), transform included): F(2, 3) pays
#   from 196 output pixels (128@14x14 b1 0.45 / 0.38 / 0.39, 256@14x14 1.66 / 1.39 /
#   1.50, 512@14x14 6.31 / 6.16 / 15.3), F(4, 3) from about 500 (400: 128@20x20 0.95 /
#   0.65 / 0.79; 576: 256@24x24 4.60 / 3.72 / 3.35; 784: 128@28x28 1.59 / 0.98 / 0.79)
#   -- while its filter fits in half the L3: 384@28x28 (21 MB) 17.1 / 10.0 / 11.8,
#   512@28x28 (38 MB) 25.9 / 18.0 / 19.3 (a fresh 38 MB array also pays its page faults
#   on every call).
# * In a network at batch 1 nothing stays in cache from one pass to the next, and a
#   filter transform beyond _WINOGRAD_STREAMED_BYTES comes from DRAM on every call. At
#   the fewest tiles (_WINOGRAD_FEW_TILES: a 14x14 image's 4x4 tiles, a 7x7 one's 2x2)
#   that costs more than the multiplications saved, so the smaller filter goes first:
#   in whole networks (Intel AVX-512, 2 threads, each layer timed in place, models
#   built under each rule and run alternately) F(2, 3) instead of F(4, 3) at 256@14x14
#   took 0.88-0.92 the time (ResNet-50), at 512@14x14 0.94 (VGG-19); the GEMM kernel
#   instead of F(2, 3) at 512@7x7 0.90-0.96 (ResNet-50). Small filters stay as above.
_WINOGRAD_TILE = {"winograd": 4, "winograd2x2": 2}   # algorithm -> output tile m
_WINOGRAD_MIN_CHANNELS = 16   # min(C_in, C_out), for either
_WINOGRAD2_MIN_TILES = 16     # 2x2 tiles over the batch, for F(2, 3) at all
_WINOGRAD4_MIN_TILES = 16     # 4x4 tiles over the batch, for F(4, 3)
_WINOGRAD4_MIN_CHANNELS = 32
_WINOGRAD_MIN_PIXELS = 500    # output pixels over the batch: F(4, 3), transforming per call
_WINOGRAD2_MIN_PIXELS = 196   # the same for F(2, 3)
_WINOGRAD_PER_CALL_BYTES = 16 << 20  # F(4, 3)'s filter, transformed per call: at most this
_WINOGRAD_FEW_TILES = 16      # at most this many tiles, a filter transform of more than
_WINOGRAD_STREAMED_BYTES = 4 << 20   # this many bytes is not worth streaming
# Transforms of read-only weights, kept for the next call: Winograd's filters (tag:
# the tile m) and the transposed-convolution GEMM's transposed weights (tag "T").
_TRANSFORM_CACHE = collections.OrderedDict()  # (tag, read-only weights) -> (weights, transform)
# Least recently used transforms go first beyond this many bytes: a whole network's
# (VGG-16's 3x3 layers: 235 MB, 4x their weights) -- a count limit of 8 made every
# layer of a 10-layer network miss.
_TRANSFORM_CACHE_BYTES = 1 << 30


def _winograd_fits(w4, compute, stride, dilation, groups):
    return (compute == np.float32 and w4.shape[2:] == (3, 3) and stride == (1, 1)
            and dilation == (1, 1) and groups == 1)


def _frozen(array):
    """True when ``array``'s values cannot change: read-only, and every NumPy array it
    views is read-only too (a writable base could be changed behind its back)."""
    while isinstance(array, np.ndarray):
        if array.flags.writeable:
            return False
        array = array.base
    return True


def _cache_key(w, tag=4):
    return (tag, id(w), w.__array_interface__["data"][0], w.shape, w.strides, w.dtype.str)


def _cached_transform(w, tag, make):
    """``make()``, a transform of the weights ``w``, from _TRANSFORM_CACHE when ``w`` is
    read-only (as ``Conv2d`` layers after ``fuse()`` and ONNX models hold them; None:
    never cached)."""
    frozen = w is not None and _frozen(w)
    if frozen:
        key = _cache_key(w, tag)
        hit = _TRANSFORM_CACHE.get(key)
        if hit is not None and hit[0] is w:
            _TRANSFORM_CACHE.move_to_end(key)
            return hit[1]
    u = make()
    if frozen:
        _TRANSFORM_CACHE[key] = (w, u)  # holding w keeps its id from being reused
        total = sum(entry[1].nbytes for entry in _TRANSFORM_CACHE.values())
        while total > _TRANSFORM_CACHE_BYTES and len(_TRANSFORM_CACHE) > 1:
            total -= _TRANSFORM_CACHE.popitem(last=False)[1][1].nbytes
    return u


def _narrow(c_out_per_group):
    """Too few output channels per group for a GEMM tile: the direct kernel's case."""
    return c_out_per_group < _GEMM_MIN_CHANNELS


def _auto_algorithm(w, w4, y4, groups, winograd_fits):
    """'auto': F(4x4, 3x3) or F(2x2, 3x3) for 3x3 stride-1 float32 layers where they pay
    (the measurements above), the GEMM kernel for everything with at least 8 output
    channels per group, else the direct kernel."""
    c_out, c_in = w4.shape[:2]
    channels = min(c_out, c_in)
    if winograd_fits and channels >= _WINOGRAD_MIN_CHANNELS:
        n, _, oh, ow = y4.shape
        tiles4, tiles2 = n * -(-oh // 4) * -(-ow // 4), n * -(-oh // 2) * -(-ow // 2)
        cached = _frozen(w)   # transformed once, then from _TRANSFORM_CACHE

        def streamed(tiles, points):   # the filter transform, from DRAM for few tiles
            return tiles <= _WINOGRAD_FEW_TILES and points * 4 * c_out * c_in > _WINOGRAD_STREAMED_BYTES

        if (tiles4 >= _WINOGRAD4_MIN_TILES and channels >= _WINOGRAD4_MIN_CHANNELS
                and not streamed(tiles4, 36)
                and (cached or (n * oh * ow >= _WINOGRAD_MIN_PIXELS
                                and 36 * 4 * c_out * c_in <= _WINOGRAD_PER_CALL_BYTES))):
            return "winograd"
        if (tiles2 >= _WINOGRAD2_MIN_TILES and not streamed(tiles2, 16)
                and (cached or n * oh * ow >= _WINOGRAD2_MIN_PIXELS)):
            return "winograd2x2"
    return "direct" if _narrow(c_out // groups) else "gemm"


def _winograd_weights(w, w4, m=4):
    """The transformed filter U ((m + 2)^2, C_out, C_in) of w4 for F(m x m, 3x3); cached
    for read-only weights ``w`` (None: not cacheable), per m."""
    def make():
        u = np.empty(((m + 2) ** 2,) + w4.shape[:2], np.float32)
        transform = _dispatch.kernels.winograd_weights if m == 4 else _dispatch.kernels.winograd2_weights
        transform(w4, u, _threads(u.size * 9))
        return u
    return _cached_transform(w, m, make)


def _threads(work):
    """Threads for a call doing ``work`` multiply-adds or taps."""
    return effective_num_threads() if work >= _PARALLEL_MIN_WORK else 1


def _hw(values, fill):
    """2-D (h, w) values from 1-D or 2-D ones: 1-D runs as 2-D with a height of 1."""
    values = tuple(values)
    return values if len(values) == 2 else (fill,) + values


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           padding_mode="zeros", algorithm="auto", out=None):
    """1-D correlation (what CNNs call convolution), like ``torch.nn.functional.conv1d``.

    ``y[n, o, j] = bias[o] + sum_{c, v} weight[o, c, v] * x[n, g*C_in/groups + c, j*stride - pad + v*dilation]``.
    ``padding``: int, ``((begin, end),)``, ``'same'`` or ``'valid'``.
    """
    return _conv("conv1d", 1, input, weight, bias, stride, padding, dilation, groups,
                 padding_mode, out, flip=False, algorithm=algorithm)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           padding_mode="zeros", algorithm="auto", out=None):
    """2-D correlation (what CNNs call convolution), like ``torch.nn.functional.conv2d``.

    input ``(N, C_in, H, W)`` or ``(C_in, H, W)``, weight ``(C_out, C_in/groups, kh, kw)``,
    bias ``(C_out,)`` or None. ``padding``: int, (ph, pw), ``((top, bottom), (left,
    right))``, ``'same'`` or ``'valid'``; ``padding_mode`` as ``torch.nn.Conv2d``.
    """
    return _conv("conv2d", 2, input, weight, bias, stride, padding, dilation, groups,
                 padding_mode, out, flip=False, algorithm=algorithm)


def convolve1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
               padding_mode="zeros", algorithm="auto", out=None):
    """True 1-D convolution: :func:`conv1d` with the kernel flipped (``weight[..., ::-1]``)."""
    return _conv("convolve1d", 1, input, weight, bias, stride, padding, dilation, groups,
                 padding_mode, out, flip=True, algorithm=algorithm)


def convolve2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
               padding_mode="zeros", algorithm="auto", out=None):
    """True 2-D convolution: :func:`conv2d` with the kernel flipped in both spatial axes.

    Unlike correlation it is commutative and associative (with 'full' padding), and
    the convolution theorem holds for it.
    """
    return _conv("convolve2d", 2, input, weight, bias, stride, padding, dilation, groups,
                 padding_mode, out, flip=True, algorithm=algorithm)


# ---------------------------------------------------------------------------------------
# Transposed convolution
# ---------------------------------------------------------------------------------------

def _phase_taps(r, k, s, p, d):
    """Stride phase r of one dim of a transposed convolution, as a correlation.

    Output o = s*q + r receives w[u] * x[q + t] for the taps u with
    t = (r + p - u*d) / s an integer. Those taps are u0, u0 + s', ... (s' = s/gcd(s, d))
    and their t fall by d' = d/gcd(s, d) each: a correlation with dilation d' of the
    taps in reverse order, reading input q - pad + j*d' with pad = -min(t).
    Returns (a slice picking the taps in correlation order, pad, d'), or None when no
    tap reaches phase r.
    """
    taps = [u for u in range(k) if (r + p - u * d) % s == 0]
    if not taps:
        return None
    g = math.gcd(s, d)
    stop = taps[0] - 1 if taps[0] > 0 else None
    return slice(taps[-1], stop, -(s // g)), -((r + p - taps[-1] * d) // s), d // g


def _phase_plan(w4, out_hw, stride, pads, dilation, groups):
    """The stride phases of a transposed convolution: per phase (rh, rw) of the output
    that exists, (rh, rw, its taps as _phase_taps gives them per dim, or None when no
    tap reaches it, and the shape of its correlation weights), in the order
    gather_phases packs their weights."""
    c_in, c_out_g, kh, kw = w4.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, pads, dilation
    plan = []
    for rh in range(min(sh, out_hw[0])):
        for rw in range(min(sw, out_hw[1])):
            rows, cols = _phase_taps(rh, kh, sh, ph, dh), _phase_taps(rw, kw, sw, pw, dw)
            if rows is None or cols is None:
                plan.append((rh, rw, None, None, None))
                continue
            shape = (groups * c_out_g, c_in // groups,
                     len(range(kh)[rows[0]]), len(range(kw)[cols[0]]))
            plan.append((rh, rw, rows, cols, shape))
    return plan


def _gather_phases(w4, plan, groups, dtype):
    """Every phase's correlation weights (gather_phase_weights), one after another in
    one flat array: each output tap belongs to one phase, so it holds at most the
    weights' size, and it can be cached whole for read-only weights."""
    shapes = [entry[4] for entry in plan if entry[4] is not None]
    flat = np.empty(sum(math.prod(shape) for shape in shapes), dtype)
    threads = _threads(w4.size * _READ_BOUND)
    start = 0
    for _, _, rows, cols, shape in plan:
        if shape is None:
            continue
        sub = flat[start:start + math.prod(shape)].reshape(shape)
        _dispatch.kernels.gather_phase_weights(w4, sub, groups, rows[0].start, rows[0].step,
                                               cols[0].start, cols[0].step, threads)
        start += sub.size
    return flat


def _conv_transpose_phases(x4, w4, bc, y4, stride, pads, dilation, groups, clamp, weight=None):
    """Transposed convolution as stride-phase sub-correlations on the GEMM kernel.

    Each of the sh*sw phases of the output (rows r::sh, columns c::sw) is an ordinary
    stride-1 correlation of the input with a sub-kernel of the (transposed, flipped)
    weights -- no zero-inserted input and no col2im. The phases are computed, one
    after another, into one buffer and then woven into the output in one parallel
    pass (interleave_phases), each by the kernel that 'auto' picks for a correlation
    with that many output channels: with fewer than _GEMM_MIN_CHANNELS per group the
    GEMM kernel's packed copy of the input (one per phase, taps x pixels) costs more
    than its few rows of multiply-adds (64 -> 3 4x4/2 @32 b8: packing took 47 % of
    the time, the micro-kernel 19 %). The phases' weights are gathered per call, or
    once for read-only ``weight``.
    """
    (sh, sw), (ph, pw), (dh, dw) = stride, pads, dilation
    n, c_out, oh_n, ow_n = y4.shape
    plan = _phase_plan(w4, (oh_n, ow_n), stride, pads, dilation, groups)
    tag = ("phases", sh, sw, ph, pw, dh, dw, groups, min(sh, oh_n), min(sw, ow_n))
    packed = _cached_transform(weight, tag,
                               lambda: _gather_phases(w4, plan, groups, y4.dtype))
    offsets = np.zeros(sh * sw, np.intp)
    # phase (rh, rw): output rows rh::sh and columns rw::sw, one after another in `phases`
    shapes = [(n, c_out, -(-(oh_n - rh) // sh), -(-(ow_n - rw) // sw)) for rh, rw, *_ in plan]
    phases = _conv_kernels.empty((sum(math.prod(shp) for shp in shapes),), y4.dtype)
    threads = _threads(x4.size * w4[0].size)
    few_channels = _narrow(w4.shape[1])
    start = weights_start = 0
    for (rh, rw, rows, cols, shape), phase_shape in zip(plan, shapes):
        offsets[rh * sw + rw] = start
        phase = phases[start:start + math.prod(phase_shape)].reshape(phase_shape)
        start += phase.size
        if shape is None:  # no tap lands here: bias and activation only
            phase[...] = np.clip(bc.reshape(-1, 1, 1), *clamp)
            continue
        (_, pad_h, dil_h), (_, pad_w, dil_w) = rows, cols
        sub = packed[weights_start:weights_start + math.prod(shape)].reshape(shape)
        weights_start += sub.size
        # (a phase may start past the input: a negative padding, GEMM kernel only)
        kernel_fn = (_dispatch.kernels.conv2d_direct if few_channels and min(pad_h, pad_w) >= 0
                     else _dispatch.kernels.conv2d_igemm)
        kernel_fn(x4, sub, bc, phase, 1, 1, pad_h, pad_w, dil_h, dil_w, groups,
                  clamp[0], clamp[1], threads)
    _conv_kernels.interleave_phases(phases, offsets, y4, sh, sw, _threads(y4.size * _READ_BOUND))


def _is_outer_product(x4, w4, y4, groups, dilation, pads):
    """A 1x1 input, no padding, dilation or output padding: the output is the weights
    scaled by the input, y[n, o, u, v] = sum_c x[n, c] w[c, o, u, v] (a GAN
    generator's first layer)."""
    return (x4.shape[2:] == (1, 1) and groups == 1 and dilation == (1, 1)
            and pads == (0, 0) and y4.shape[2:] == w4.shape[2:])


def _conv_transpose_outer(x4, w4, bc, y4, clamp):
    """_is_outer_product layers as one GEMM, (N x C_in) times (C_in x C_out*kh*kw), on
    the correlation kernel: a 1x1 correlation whose "image" is the weights (C_in
    channels of C_out*kh*kw pixels) and whose filters are the N input vectors. The
    stride-phase form would sum kh*kw times more taps, all but one of them padding."""
    n, c_in = x4.shape[:2]
    c_out, kh, kw = w4.shape[1:]
    image = w4.reshape(1, c_in, 1, c_out * kh * kw)
    filters = x4.reshape(n, c_in, 1, 1)
    y = y4.reshape(1, n, 1, c_out * kh * kw)
    _dispatch.kernels.conv2d_igemm(image, filters, np.zeros(n, y4.dtype), y, 1, 1, 0, 0, 1, 1, 1,
                                   -np.inf, np.inf, _threads(y4.size * c_in))
    y4 += bc.reshape(-1, 1, 1)
    if clamp != _NO_CLAMP:
        np.clip(y4, clamp[0], clamp[1], out=y4)


# GEMM + col2im holds one GEMM row per input pixel (C_out*kh*kw values): bounded.
_COL2IM_MAX_BYTES = 64 << 20
_COL2IM_FEW_OUTPUTS = 16   # C_out below this: col2im for overlapping windows (_col2im_pays)


def _col2im_pays(x4, w4, groups, stride, dilation, weight):
    """GEMM + col2im rather than stride phases: for inputs up to twice the weights' size
    (a generator's early layers, decoders' first up-convolutions), or fewer than
    _COL2IM_FEW_OUTPUTS output channels (its RGB layer), when the windows overlap, and when they do not (kernel <= stride: U-Net's 2x2/2) only for inputs
    up to the weights' size and weights that are gathered per call (writable). The
    phases gather and transpose every weight per call unless ``weight`` is read-only
    (a 512 x 256 x 4 x 4 layer: 8 MiB read four times) and, on small inputs, run GEMMs
    a few tiles wide; col2im transposes only the input and runs one GEMM as wide as
    C_out*kh*kw, but then adds 1/C_in of its multiply-adds again, scattered: not for
    few input channels. Measured (2 threads, phases -> col2im): 128->64 4x4/2 @16 b8
    (x = 2 w) 5.4 -> 4.8 ms, 21->21 32x32/16 @32 (0.05 w, 21 channels) 29 -> 31 ms.
    Without overlaps each phase is a 1x1 correlation, a plain GEMM, and the phases
    are woven into the output in one parallel pass; then col2im pays only where the
    per-call gather is large against the input. `benchmarks/paths.py transposed`
    (2 threads, 2026-11, phases / col2im time), writable weights: 1024->512 @28 (0.4 w)
    1.05, 512->256 @14 b8 (1.5 w) 0.96, 512->256 @52 (2.6 w) 0.93, 256->128 @100 0.99,
    128->64 @196 0.98, 64->64 @96 b2 0.81; read-only: 0.96-0.98, and 0.78 for the
    last. DCGAN's overlapping 4x4/2 layers (x <= 2 w) keep col2im: 1.66, 1.08, 1.12
    (read-only 1.26, 1.06, 1.20)."""
    n, c_in, h, w = x4.shape
    cols = n * h * w * w4[0].size * x4.itemsize
    kh, kw = w4.shape[2:]
    if groups != 1 or c_in < 32 or cols > _COL2IM_MAX_BYTES:
        return False
    if all((k - 1) * d + 1 <= s for k, d, s in zip((kh, kw), dilation, stride)):
        return x4.size <= w4.size and not (weight is not None and _frozen(weight))
    # Overlapping windows with few output channels (a generator's RGB layer): the
    # phases are GEMMs of under _COL2IM_FEW_OUTPUTS rows (or the direct kernel), one
    # pass each, while col2im's single GEMM is C_out*kh*kw rows wide -- col2im pays at
    # any input size. benchmarks/paths.py transposed (Zen 4, 2 threads, phases / col2im
    # time, writable | read-only): DCGAN's 64 -> 3 4x4/2 @32 b8 2.01 | 1.61, 64 -> 8
    # 1.55 | 1.53, 128 -> 1 @32 2.56 | 2.12, 128 -> 3 @16 b8 2.17, 32 -> 3 @64 b2 1.63;
    # 16 outputs 1.02-1.83, 32 outputs 0.94.
    return x4.size <= 2 * w4.size or w4.shape[1] < _COL2IM_FEW_OUTPUTS


def _conv_transpose_col2im(x4, w4, bc, y4, stride, pads, dilation, clamp, weight=None):
    """Transposed convolution as a GEMM of every input pixel's contributions to its
    output patch (C_out*kh*kw values), then col2im: the contributions added into the
    output (over the bias), and the clamp. Of the GEMM's two operands one must be
    transposed for the kernel; the smaller one is, per call -- unless ``weight`` is
    read-only, whose transpose is cached:

    * cols = W^T X (the weights transposed): per image and per (output channel, tap),
      a plane of contributions -- a 1x1 correlation of the input, read in place, with
      C_out*kh*kw filters of C_in taps. col2im_add then adds each plane's rows into
      its output plane, row to row, with the bounds found once per tap.
    * cols = X^T W (the input transposed): one row per input pixel -- a 1x1
      correlation whose "image" is the weights, read in place, and whose filters are
      the pixels' channel vectors. col2im_add_pixels scatters each row's patch.
      Transposing 8 MiB of weights per call (DCGAN's 512 -> 256 layer) cost more than
      the GEMM."""
    n, c_in, h, w = x4.shape
    c_out, kh, kw = w4.shape[1:]
    rows = c_out * kh * kw
    (sh, sw), (ph, pw), (dh, dw) = stride, pads, dilation
    cached = weight is not None and _frozen(weight)
    if cached or w4.size <= x4.size:
        wt = _cached_transform(weight, "T", lambda: _transposed(
            w4.reshape(1, c_in, rows)).reshape(rows, c_in, 1, 1))
        cols = _conv_kernels.empty((n, rows, h, w), y4.dtype)
        threads = _threads(cols.size * c_in)
        _dispatch.kernels.conv2d_igemm(x4, wt, np.zeros(rows, y4.dtype), cols, 1, 1, 0, 0, 1, 1, 1,
                                       -np.inf, np.inf, threads)
        y4[...] = bc.reshape(-1, 1, 1)
        _conv_kernels.col2im_add(cols, y4, kh, kw, sh, sw, ph, pw, dh, dw, clamp[0], clamp[1],
                                 threads)
        return
    pixels = _transposed(x4.reshape(n, c_in, h * w)).reshape(n * h * w, c_in, 1, 1)
    cols = _conv_kernels.empty((1, n * h * w, 1, rows), y4.dtype)
    threads = _threads(cols.size * c_in)
    _dispatch.kernels.conv2d_igemm(w4.reshape(1, c_in, 1, rows), pixels,
                                   np.zeros(n * h * w, y4.dtype), cols, 1, 1, 0, 0, 1, 1, 1,
                                   -np.inf, np.inf, threads)
    y4[...] = bc.reshape(-1, 1, 1)
    _conv_kernels.col2im_add_pixels(cols.reshape(n * h * w, rows), y4, h, w, kh, kw,
                                    sh, sw, ph, pw, dh, dw, clamp[0], clamp[1], threads)


def _conv_transpose(op, nd, input, weight, bias, stride, padding, output_padding, groups,
                    dilation, out, clamp=_NO_CLAMP, algorithm="auto"):
    x = _as_array(input, "input")
    w = _as_array(weight, "weight")
    b = None if bias is None else _as_array(bias, "bias")
    result, compute = _dtypes(op, [(x, "input"), (w, "weight")] + ([] if b is None else [(b, "bias")]))
    _check_ndim(op, "input", x, (nd + 1, nd + 2))
    _check_ndim(op, "weight", w, (nd + 2,))
    stride = _args.int_tuple(stride, nd, "stride", 1)
    dilation = _args.int_tuple(dilation, nd, "dilation", 1)
    output_padding = _args.int_tuple(output_padding, nd, "output_padding", 0)
    groups = _args.positive_int(groups, "groups")
    pads = _args.padding_spec(padding, nd, allow_strings=False)
    _check_choice(op, "algorithm", algorithm, ALGORITHMS)

    batched = x.ndim == nd + 2
    c_in, sizes = x.shape[-nd - 1], x.shape[-nd:]
    kernel = w.shape[2:]
    c_out = w.shape[1] * groups
    if c_in % groups:
        raise ValueError(f"{op}: groups={groups} does not divide the input channels ({c_in})")
    if w.shape[0] != c_in:
        raise ValueError(f"{op}: weight shape {w.shape} expects {w.shape[0]} input channels, "
                         f"input has {c_in} (shape {x.shape})")
    if any(k == 0 for k in kernel):
        raise ValueError(f"{op}: kernel size must be >= 1, weight has shape {w.shape}")
    if b is not None and b.shape != (c_out,):
        raise ValueError(f"{op}: bias must have shape ({c_out},), got {b.shape}")
    if any(s == 0 for s in sizes):
        raise ValueError(f"{op}: input spatial size must be >= 1, got shape {x.shape}")
    out_sizes = _args.conv_transpose_sizes(op, sizes, kernel, stride, pads, dilation, output_padding)
    shape = ((x.shape[0],) if batched else ()) + (c_out,) + out_sizes
    _args.check_elements(op, shape)
    _check_out(op, out, shape, result, [(x, "input"), (w, "weight"), (b, "bias")])

    xc = _native(x if batched else x[None], compute)
    wc = _native(w, compute)
    bc = np.zeros(c_out, compute) if b is None else _native(b, compute)
    y = _result_buffer(out, shape, result, compute)
    y4 = y.reshape((xc.shape[0], c_out) + (1,) * (2 - nd) + out_sizes)
    if y4.size:
        if xc.size == 0 or wc.size == 0:
            y4[...] = np.clip(bc.reshape(-1, 1, 1), *clamp)
        else:
            x4 = xc.reshape(xc.shape[:2] + (1,) * (2 - nd) + xc.shape[2:])
            w4 = wc.reshape(wc.shape[:2] + (1,) * (2 - nd) + wc.shape[2:])
            (sh, sw), (dh, dw), (ph, pw) = _hw(stride, 1), _hw(dilation, 1), _hw([p[0] for p in pads], 0)
            kh, kw = w4.shape[2:]
            if algorithm in ("auto", "gemm") and _is_outer_product(x4, w4, y4, groups, (dh, dw), (ph, pw)):
                algorithm = "outer"
            elif algorithm == "auto":
                # The direct transposed kernel scatters columns with stride sw, scalar:
                # the stride phases ('gemm': each phase on the correlation kernel that
                # 'auto' picks for it) win even for 3 output channels once a phase sums
                # over enough taps; only narrow, shallow layers (depthwise) stay direct.
                k_phase = (c_in // groups) * -(-kh // sh) * -(-kw // sw)
                algorithm = ("direct" if _narrow(c_out // groups) and k_phase < _GEMM_MIN_TAPS
                             else "gemm")
            cacheable = w if wc is w else None   # transforms of w itself may be cached
            if algorithm in ("auto", "gemm") and _col2im_pays(x4, w4, groups, (sh, sw), (dh, dw),
                                                              cacheable):
                algorithm = "col2im"
            if algorithm == "outer":
                _conv_transpose_outer(x4, w4, bc, y4, clamp)
            elif algorithm == "col2im":
                _conv_transpose_col2im(x4, w4, bc, y4, (sh, sw), (ph, pw), (dh, dw), clamp,
                                       cacheable)
            elif algorithm == "gemm":
                _conv_transpose_phases(x4, w4, bc, y4, (sh, sw), (ph, pw), (dh, dw), groups, clamp,
                                       cacheable)
            else:
                _conv_kernels.conv_transpose2d_forward(x4, w4, bc, y4, sh, sw, ph, pw, dh, dw,
                                                       groups, clamp[0], clamp[1],
                                                       _threads(x4.size * w4[0].size))
    return _finish(y, out, result)


def linear(input, weight, bias=None, *, out=None):
    """``y = input @ weight.T + bias``, like ``torch.nn.functional.linear``: input
    ``(*, in_features)``, weight ``(out_features, in_features)``, bias ``(out_features,)``.

    Up to 8 rows: matrix-vector products that stream the weights once (at batch 1 a
    linear layer only moves its weights: VGG's first classifier layer, 411 MB, 13 ms
    here, as ONNX Runtime); more rows: pyconv's GEMM kernel, as a 1x1 correlation whose
    pixels are the input's rows. Both in pyconv's threads -- not NumPy's BLAS, whose
    threads keep spinning for about 0.1 s after each call and so halved the speed of
    the convolutions that followed (ResNet-50 at 2 threads: 123 ms per image with the
    classifier on BLAS, 74 without).
    """
    return _linear("linear", input, weight, bias, _NO_CLAMP, out)


def _linear(op, input, weight, bias, clamp, out):
    x = _as_array(input, "input")
    w = _as_array(weight, "weight")
    b = None if bias is None else _as_array(bias, "bias")
    result, compute = _dtypes(op, [(x, "input"), (w, "weight")] + ([] if b is None else [(b, "bias")]))
    _check_ndim(op, "weight", w, (2,))
    if x.ndim < 1:
        raise ValueError(f"{op}: input must have at least 1 dimension, got shape {x.shape}")
    out_f, in_f = w.shape
    if x.shape[-1] != in_f:
        raise ValueError(f"{op}: input's last dimension ({x.shape[-1]}) must equal weight's "
                         f"in_features ({in_f}); input shape {x.shape}, weight shape {w.shape}")
    if b is not None and b.shape != (out_f,):
        raise ValueError(f"{op}: bias must have shape ({out_f},), got {b.shape}")
    shape = x.shape[:-1] + (out_f,)
    _args.check_elements(op, shape)
    _check_out(op, out, shape, result, [(x, "input"), (w, "weight"), (b, "bias")])
    rows = math.prod(x.shape[:-1])
    bc = np.zeros(out_f, compute) if b is None else _native(b, compute)
    if rows == 0 or out_f == 0 or in_f == 0:
        y = np.empty(shape, compute)
        y[...] = np.clip(bc, *clamp)
        return _finish(y, out, result)
    if rows <= _dispatch.kernels.GEMV_MAX_ROWS:
        # A few rows: matrix-vector products streaming the weights once (_gemv.pxi);
        # the GEMM kernel would pad them to a micro-tile of NR pixels.
        y = _result_buffer(out, shape, result, compute)   # C-contiguous (out= too)
        _dispatch.kernels.gemv(_native(x.reshape(rows, in_f), compute), _native(w, compute), bc,
                               y.reshape(rows, out_f), clamp[0], clamp[1], _threads(rows * out_f * in_f))
        return _finish(y, out, result)
    # The rows as the pixels of one image with in_features channels: (1, in, 1, rows).
    pixels = _transposed(_native(x.reshape(1, rows, in_f), compute)).reshape(1, in_f, 1, rows)
    wc = _native(w, compute).reshape(out_f, in_f, 1, 1)
    yt = np.empty((1, out_f, 1, rows), compute)
    _dispatch.kernels.conv2d_igemm(pixels, wc, bc, yt, 1, 1, 0, 0, 1, 1, 1, clamp[0], clamp[1],
                                   _threads(rows * out_f * in_f))
    y = _result_buffer(out, shape, result, compute)   # C-contiguous (out= too)
    _transposed(yt.reshape(1, out_f, rows), y.reshape(1, rows, out_f))
    return _finish(y, out, result)


def _add_clamp(a, b, clamp=(0.0, np.inf), out=None):
    """clamp(a + b) -- a residual join, Add + ReLU by default -- in one parallel pass
    when a and b are same-shape native float arrays (``out``: where to write, may be a);
    NumPy's broadcasting add and clip otherwise."""
    if (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape
            and a.dtype == b.dtype and a.dtype in (np.float32, np.float64)
            and a.dtype.isnative and a.flags.c_contiguous and b.flags.c_contiguous
            and (out is None or (out.shape == a.shape and out.dtype == a.dtype
                                 and out.flags.c_contiguous and out.flags.writeable))):
        y = _conv_kernels.empty(a.shape, a.dtype) if out is None else out
        _conv_kernels.add_clamp(a.reshape(-1), b.reshape(-1), y.reshape(-1),
                                clamp[0], clamp[1], _threads(a.size * 8))
        return y
    y = np.add(a, b, out=out)
    if clamp != _NO_CLAMP:   # (the bounds are floats: integer sums are clipped, then cast back)
        z = np.asarray(np.clip(y, clamp[0], clamp[1])).astype(np.result_type(y), copy=False)
        if out is None:
            return z
        out[...] = z
    return y


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                     groups=1, dilation=1, *, algorithm="auto", out=None):
    """1-D transposed convolution, like ``torch.nn.functional.conv_transpose1d``.

    The adjoint of :func:`conv1d` with respect to its input (its backward pass):
    ``<conv1d(x, w), y> == <x, conv_transpose1d(y, w)>``. weight ``(C_in, C_out/groups, k)``;
    output size ``(in - 1)*stride - pad_begin - pad_end + dilation*(k - 1) + output_padding + 1``.
    """
    return _conv_transpose("conv_transpose1d", 1, input, weight, bias, stride, padding,
                           output_padding, groups, dilation, out, algorithm=algorithm)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                     groups=1, dilation=1, *, algorithm="auto", out=None):
    """2-D transposed convolution, like ``torch.nn.functional.conv_transpose2d``.

    The adjoint of :func:`conv2d` with respect to its input. weight
    ``(C_in, C_out/groups, kh, kw)``; ``padding`` may be per-side pairs (as ONNX pads).
    """
    return _conv_transpose("conv_transpose2d", 2, input, weight, bias, stride, padding,
                           output_padding, groups, dilation, out, algorithm=algorithm)


# ---------------------------------------------------------------------------------------
# Pooling
# ---------------------------------------------------------------------------------------

def _pool_input(op, nd, input):
    """(array, result dtype, compute dtype) for a pooling input (batched or not)."""
    x = _as_array(input, "input")
    result, compute = _dtypes(op, [(x, "input")])
    _check_ndim(op, "input", x, (nd + 1, nd + 2))
    return x, result, compute


def _planes(x, compute, nd):
    """The input as contiguous planes (N*C, H, W); 1-D as (N*C, 1, L)."""
    xc = _native(x, compute)
    spatial = x.shape[-nd:]
    return xc.reshape((-1,) + (1,) * (2 - nd) + spatial)


def _window_args(op, nd, x, kernel_size, stride, padding, dilation, ceil_mode):
    kernel = _args.int_tuple(kernel_size, nd, "kernel_size", 1)
    stride = kernel if stride is None else _args.int_tuple(stride, nd, "stride", 1)
    dilation = _args.int_tuple(dilation, nd, "dilation", 1)
    ceil_mode = _args.as_bool(ceil_mode, "ceil_mode")
    sizes = x.shape[-nd:]
    pads = _args.resolve_padding(_args.padding_spec(padding, nd), sizes, kernel, stride, dilation)
    out_sizes = _args.pool_sizes(op, sizes, kernel, stride, pads, dilation, ceil_mode)
    return kernel, stride, pads, dilation, out_sizes


_CLIP_TAPS_ABOVE = 1024  # windows wider than this are clipped to the taps that can see input


def _clipped_taps(size, k, s, pad_begin, d, out):
    """The kernel taps that read the input for at least one of ``out`` windows, as
    (first tap, number of taps), or None if none does. A window of 2**34 taps over a
    5-element input then costs 5 taps, not 2**34 (the kernels' work and tables grow
    with the taps); taps that only ever read padding change no max and no real sum."""
    first = max(0, -((pad_begin - (out - 1) * s) // -d))  # ceil((pb - (out-1)s) / d)
    last = min(k - 1, (pad_begin + size - 1) // d)
    return None if last < first else (first, last - first + 1)


def _effective_window(sizes, kernel, stride, pads, dilation, out_sizes):
    """Per dim (taps, leading pad) for the kernels: the clipped window where it is huge.
    None when some dim's windows never reach the input (all padding)."""
    taps, leading = [], []
    for size, k, s, (pb, _), d, o in zip(sizes, kernel, stride, pads, dilation, out_sizes):
        if k > _CLIP_TAPS_ABOVE:
            clipped = _clipped_taps(size, k, s, pb, d, o)
            if clipped is None:
                return None
            first, k = clipped
            pb = pb - first * d
        taps.append(k)
        leading.append(pb)
    return taps, leading


def _padded_counts(size, k, s, pads, d, out):
    """Per output position: taps inside the padded input [-pb, size + pe)."""
    start = np.arange(out, dtype=np.int64) * s          # window start, in padded coordinates
    padded = size + pads[0] + pads[1]
    return np.minimum(k, np.maximum(0, (padded - 1 - start) // d + 1))


def _real_counts(size, k, s, pads, d, out):
    """Per output position: taps inside the real input [0, size)."""
    start = np.arange(out, dtype=np.int64) * s - pads[0]
    lo = np.where(start < 0, (-start + d - 1) // d, 0)
    hi = np.minimum(k, np.where(size - 1 - start >= 0, (size - 1 - start) // d + 1, 0))
    return np.maximum(hi - lo, 0)


def _max_pool(op, nd, input, kernel_size, stride, padding, dilation, ceil_mode,
              return_indices, out):
    x, result, compute = _pool_input(op, nd, input)
    kernel, stride, pads, dilation, out_sizes = _window_args(
        op, nd, x, kernel_size, stride, padding, dilation, ceil_mode)
    return_indices = _args.as_bool(return_indices, "return_indices")
    shape = x.shape[:-nd] + out_sizes
    _args.check_elements(op, shape)
    _check_out(op, out, shape, result, [(x, "input")])

    y = _result_buffer(out, shape, result, compute)
    idx = np.empty(shape, np.int64) if return_indices else None
    y3 = y.reshape((-1,) + (1,) * (2 - nd) + out_sizes)
    idx3 = None if idx is None else idx.reshape(y3.shape)
    if y3.size:
        if x.size == 0:  # empty spatial input: every window is padding only
            y3[...] = 0
            if idx3 is not None:
                idx3[...] = -1
        elif (window := _effective_window(x.shape[-nd:], kernel, stride, pads, dilation,
                                          out_sizes)) is None:  # windows of padding only
            y3[...] = 0
            if idx3 is not None:
                idx3[...] = -1
        else:
            (kh, kw), (ph, pw) = _hw(window[0], 1), _hw(window[1], 0)
            (sh, sw), (dh, dw) = _hw(stride, 1), _hw(dilation, 1)
            threads = _threads(y3.size * kh * kw)
            if idx3 is None and dh == dw == 1:   # the kernel set's vectorised kernel (_maxpool.pxi)
                _dispatch.kernels.max_pool2d_fast(_planes(x, compute, nd), y3, kh, kw, sh, sw,
                                                  ph, pw, threads)
            else:
                _dispatch.kernels.max_pool2d_forward(_planes(x, compute, nd), y3, idx3,
                                                 kh, kw, sh, sw, ph, pw, dh, dw, threads)
    y = _finish(y, out, result)
    return (y, idx) if return_indices else y


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, *, out=None):
    """1-D max pooling, like ``torch.nn.functional.max_pool1d``.

    NaN is the maximum of any window holding one. With ``return_indices`` also returns
    the int64 position of each maximum within its input row (-1 for a window of
    padding only, which yields 0).
    """
    return _max_pool("max_pool1d", 1, input, kernel_size, stride, padding, dilation,
                     ceil_mode, return_indices, out)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, *, out=None):
    """2-D max pooling, like ``torch.nn.functional.max_pool2d``.

    Indices (with ``return_indices``) are int64 flat positions ``ih*W + iw`` within each
    input plane, as PyTorch returns them; NaN wins and its index points at it.
    """
    return _max_pool("max_pool2d", 2, input, kernel_size, stride, padding, dilation,
                     ceil_mode, return_indices, out)


def _avg_pool(op, nd, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
              divisor_override, dilation, out):
    x, result, compute = _pool_input(op, nd, input)
    kernel, stride, pads, dilation, out_sizes = _window_args(
        op, nd, x, kernel_size, stride, padding, dilation, ceil_mode)
    count_include_pad = _args.as_bool(count_include_pad, "count_include_pad")
    if divisor_override is not None:
        divisor_override = _args.positive_int(divisor_override, "divisor_override")
    shape = x.shape[:-nd] + out_sizes
    _args.check_elements(op, shape)
    _check_out(op, out, shape, result, [(x, "input")])

    y = _result_buffer(out, shape, result, compute)
    y3 = y.reshape((-1,) + (1,) * (2 - nd) + out_sizes)
    if y3.size:
        if x.size == 0:
            y3[...] = 0
        elif (window := _effective_window(x.shape[-nd:], kernel, stride, pads, dilation,
                                          out_sizes)) is None:  # windows of padding only
            y3[...] = 0
        elif (tuple(kernel) == x.shape[-nd:] and not any(p for pair in pads for p in pair)
                and all(d == 1 for d in dilation) and divisor_override is None):
            # One window over the whole plane (ResNet's 7x7 average pool as ONNX writes
            # it): the adaptive kernel's plane sum -- 34 us instead of the windowed
            # kernel's 192 us at 2048 x 7x7 (its per-plane row set-up).
            _dispatch.kernels.adaptive_pool2d_forward(_planes(x, compute, nd), y3, None, False,
                                                  _threads(x.size * _READ_BOUND))
        else:
            sizes = x.shape[-nd:]
            clipped = list(window[0]) != list(kernel)
            (kh, kw), (ph, pw) = _hw(window[0], 1), _hw(window[1], 0)
            (sh, sw), (dh, dw) = _hw(stride, 1), _hw(dilation, 1)
            ph_end, pw_end = _hw([p[1] for p in pads], 0)
            # A clipped window divides by its real taps; with count_include_pad the
            # result is then rescaled to the original window's padded count.
            cip = count_include_pad and not clipped
            _dispatch.kernels.avg_pool2d_forward(_planes(x, compute, nd), y3, kh, kw, sh, sw,
                                     ph, pw, ph_end, pw_end, dh, dw, cip,
                                     divisor_override or 0, _threads(y3.size * kh * kw))
            if clipped and count_include_pad and not divisor_override:
                real, padded = 1, 1
                for axis, args in enumerate(zip(sizes, kernel, stride, pads, dilation, out_sizes)):
                    view = (-1,) + (1,) * (nd - 1 - axis)
                    real = real * _real_counts(*args).reshape(view)
                    padded = padded * _padded_counts(*args).reshape(view)
                scale = np.where(padded > 0, real / np.maximum(padded, 1), 0)
                y3 *= scale.reshape((1,) * (3 - nd) + scale.shape).astype(y3.dtype)
    return _finish(y, out, result)


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None, *, dilation=1, out=None):
    """1-D average pooling, like ``torch.nn.functional.avg_pool1d`` (plus ``dilation``
    and ``divisor_override``).

    The divisor is ``divisor_override`` if given; else, with ``count_include_pad``, the
    window clipped to the padded input; else the number of real elements in the window.
    """
    return _avg_pool("avg_pool1d", 1, input, kernel_size, stride, padding, ceil_mode,
                     count_include_pad, divisor_override, dilation, out)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None, *, dilation=1, out=None):
    """2-D average pooling, like ``torch.nn.functional.avg_pool2d`` (plus ``dilation``)."""
    return _avg_pool("avg_pool2d", 2, input, kernel_size, stride, padding, ceil_mode,
                     count_include_pad, divisor_override, dilation, out)


def _adaptive_pool(op, nd, input, output_size, is_max, return_indices, out):
    x, result, compute = _pool_input(op, nd, input)
    sizes = x.shape[-nd:]
    if output_size is None:
        raise TypeError(f"{op}: output_size must be an int or a tuple of ints, got None")
    items = list(output_size) if isinstance(output_size, (tuple, list)) else [output_size] * nd
    if len(items) != nd:
        raise ValueError(f"{op}: output_size must be an int or a tuple of {nd} ints, got {output_size!r}")
    # None in a tuple keeps that input size, as in PyTorch.
    out_sizes = tuple(s if o is None else _args.as_int(o, "output_size") for o, s in zip(items, sizes))
    if any(o < 1 for o in out_sizes):
        raise ValueError(f"{op}: output_size must be positive, got {output_size!r}")
    if any(s == 0 for s in sizes):
        raise ValueError(f"{op}: input spatial size must be >= 1, got shape {x.shape}")
    return_indices = _args.as_bool(return_indices, "return_indices")
    shape = x.shape[:-nd] + out_sizes
    _args.check_elements(op, shape)
    _check_out(op, out, shape, result, [(x, "input")])

    y = _result_buffer(out, shape, result, compute)
    idx = np.empty(shape, np.int64) if return_indices else None
    y3 = y.reshape((-1,) + (1,) * (2 - nd) + out_sizes)
    if y3.size:
        _dispatch.kernels.adaptive_pool2d_forward(_planes(x, compute, nd), y3,
                                      None if idx is None else idx.reshape(y3.shape),
                                      is_max, _threads(x.size * _READ_BOUND))
    y = _finish(y, out, result)
    return (y, idx) if return_indices else y


def adaptive_avg_pool1d(input, output_size, *, out=None):
    """1-D adaptive average pooling: output j averages input [floor(j*L/O), ceil((j+1)*L/O))."""
    return _adaptive_pool("adaptive_avg_pool1d", 1, input, output_size, False, False, out)


def adaptive_avg_pool2d(input, output_size, *, out=None):
    """2-D adaptive average pooling, like ``torch.nn.functional.adaptive_avg_pool2d``;
    ``output_size`` is an int or (oh, ow), None keeping that input size."""
    return _adaptive_pool("adaptive_avg_pool2d", 2, input, output_size, False, False, out)


def adaptive_max_pool1d(input, output_size, return_indices=False, *, out=None):
    """1-D adaptive max pooling (NaN wins; indices are positions within the row)."""
    return _adaptive_pool("adaptive_max_pool1d", 1, input, output_size, True, return_indices, out)


def adaptive_max_pool2d(input, output_size, return_indices=False, *, out=None):
    """2-D adaptive max pooling, like ``torch.nn.functional.adaptive_max_pool2d``."""
    return _adaptive_pool("adaptive_max_pool2d", 2, input, output_size, True, return_indices, out)
