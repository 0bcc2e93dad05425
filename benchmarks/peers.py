"""The libraries pyconv is measured against, each behind the same small interface.

    peer = Torch(threads)                       # raises ImportError when not installed
    call = peer.prepare(layer, x, w, b)         # everything that is not the operator
    y = peer.fetch(call())                      # call() is what gets timed; fetch -> ndarray

``prepare`` does the one-time work outside the timed region (wrapping arrays as
tensors, building the ONNX Runtime session); ``call()`` runs exactly one operator and
returns its output; ``fetch`` turns that output into a NumPy array for the error check.
``prepare`` raises :class:`Unsupported` when a peer has no kernel for a layer (ONNX
Runtime has no float64 Conv on CPU, for instance); the table then shows "n/a".

The NumPy baseline is also the float64 reference every result is checked against:
:func:`reference` runs it on float64 copies of the inputs.
"""

import re

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

import pyconv
import pyconv.functional as F


class Unsupported(Exception):
    """This peer cannot run this layer (a missing kernel, a missing dtype)."""


# ---------------------------------------------------------------------------------------
# NumPy: im2col + matmul (convolution), matmul + col2im (transposed convolution),
# sliding windows (pooling)
# ---------------------------------------------------------------------------------------

def np_conv2d(x, w, b, stride, padding, groups):
    """im2col + one matmul per group: cols (g, N*OH*OW, C_in/g*k*k) @ w (g, C_in/g*k*k, C_out/g)."""
    n, c_in = x.shape[:2]
    c_out, cg, k, _ = w.shape
    g, og = groups, c_out // groups
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding))) if padding else x
    win = sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]  # (n, c, oh, ow, k, k), a view
    oh, ow = win.shape[2:4]
    cols = (win.reshape(n, g, cg, oh, ow, k, k)
               .transpose(1, 0, 3, 4, 2, 5, 6)
               .reshape(g, n * oh * ow, cg * k * k))                         # the im2col copy
    y = cols @ w.reshape(g, og, cg * k * k).transpose(0, 2, 1)               # (g, n*oh*ow, og)
    y = y.reshape(g, n, oh, ow, og).transpose(1, 0, 4, 2, 3).reshape(n, c_out, oh, ow)
    return np.ascontiguousarray(y + b.reshape(-1, 1, 1))


def np_conv_transpose2d(x, w, b, stride, padding, groups):
    """One matmul per group, x (g, N*H*W, C_in/g) @ w (g, C_in/g, C_out/g*k*k), then col2im:
    one strided add per kernel tap into the uncropped output, cropped by ``padding``."""
    n, c_in, h, wd = x.shape
    _, og, k, _ = w.shape
    g, cg = groups, c_in // groups
    xm = x.reshape(n, g, cg, h * wd).transpose(1, 0, 3, 2).reshape(g, n * h * wd, cg)
    cols = (xm @ w.reshape(g, cg, og * k * k)).reshape(g, n, h, wd, og, k, k)
    cols = cols.transpose(1, 0, 4, 5, 6, 2, 3)                               # (n, g, og, k, k, h, w)
    full_h, full_w = (h - 1) * stride + k, (wd - 1) * stride + k
    full = np.zeros((n, g, og, full_h, full_w), dtype=np.result_type(x, w))
    for i in range(k):
        for j in range(k):
            full[..., i:i + (h - 1) * stride + 1:stride, j:j + (wd - 1) * stride + 1:stride] += cols[:, :, :, i, j]
    y = full.reshape(n, g * og, full_h, full_w)[:, :, padding:full_h - padding, padding:full_w - padding]
    return np.ascontiguousarray(y + b.reshape(-1, 1, 1))


def np_pool2d(x, layer):
    """Max or average (padding counted, as PyTorch's default) over sliding windows."""
    if layer.op == "global_avg_pool2d":
        return x.mean(axis=(2, 3), keepdims=True)
    k, s, p, out = layer.k, layer.stride, layer.padding, layer.out_size
    extra = max(0, (out - 1) * s + k - (layer.h + 2 * p))                   # ceil_mode: a partial last window
    fill = -np.inf if layer.op == "max_pool2d" else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), (p, p + extra), (p, p + extra)), constant_values=fill)
    win = sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::s, ::s][:, :, :out, :out]
    if layer.op == "max_pool2d":
        return win.max(axis=(4, 5))
    return win.sum(axis=(4, 5)) / (k * k)


def run_numpy(layer, x, w, b):
    if layer.op == "conv2d":
        return np_conv2d(x, w, b, layer.stride, layer.padding, layer.groups)
    if layer.op == "conv_transpose2d":
        return np_conv_transpose2d(x, w, b, layer.stride, layer.padding, layer.groups)
    return np_pool2d(x, layer)


def make_inputs(layer, rng):
    """Random input; He-scaled weights (std sqrt(2/fan_in)) so that outputs are O(1), as in a
    network. Drawn directly in the layer's dtype: no float64 temporaries (memory.py relies on it)."""
    dtype = np.dtype(layer.dtype)
    x = rng.standard_normal(layer.input_shape, dtype=dtype)
    if not layer.is_conv:
        return x, None, None
    w = rng.standard_normal(layer.weight_shape, dtype=dtype)
    w *= np.sqrt(2.0 / (layer.c_in // layer.groups * layer.k * layer.k)).astype(dtype)
    b = rng.standard_normal(layer.c_out, dtype=dtype)
    b *= dtype.type(0.1)
    return x, w, b


def reference(layer, x, w, b):
    """The float64 result every library's output is compared with."""
    as64 = (lambda a: None if a is None else a.astype(np.float64))
    return run_numpy(layer, as64(x), as64(w), as64(b))


# ---------------------------------------------------------------------------------------
# The libraries
# ---------------------------------------------------------------------------------------

class Pyconv:
    name = "pyconv"

    def __init__(self, threads):
        pyconv.set_num_threads(threads)
        self.version = pyconv.__version__

    def prepare(self, layer, x, w, b):
        op, s, p = layer.op, layer.stride, layer.padding
        if op == "conv2d" and layer.algorithm.startswith("winograd"):
            w = w.copy()
            w.flags.writeable = False  # read-only weights: the transformed filter is cached
        if op == "conv2d":
            return lambda: F.conv2d(x, w, b, s, p, 1, layer.groups, algorithm=layer.algorithm)
        if op == "conv_transpose2d":
            return lambda: F.conv_transpose2d(x, w, b, s, p, 0, layer.groups)
        if op == "max_pool2d":
            return lambda: F.max_pool2d(x, layer.k, s, p, ceil_mode=layer.ceil_mode)
        if op == "avg_pool2d":
            return lambda: F.avg_pool2d(x, layer.k, s, p)
        return lambda: F.adaptive_avg_pool2d(x, 1)

    @staticmethod
    def fetch(y):
        return y


class NumPy:
    """The textbook NumPy way: BLAS does the arithmetic, NumPy the data movement."""
    name = "numpy"

    def __init__(self, threads):
        self.version = np.__version__  # its BLAS threads are limited by run.py, for the peak matmul too

    def prepare(self, layer, x, w, b):
        return lambda: run_numpy(layer, x, w, b)

    @staticmethod
    def fetch(y):
        return y


class Torch:
    """PyTorch CPU, ``torch.nn.functional`` on tensors sharing the NumPy arrays' memory."""
    name = "torch"

    def __init__(self, threads):
        import torch
        import torch.nn.functional as TF
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # only settable before the first parallel work
            pass
        torch.set_grad_enabled(False)
        self.torch, self.TF, self.version = torch, TF, torch.__version__

    def prepare(self, layer, x, w, b):
        TF, t = self.TF, self.torch.from_numpy
        xt = t(x)
        op, s, p = layer.op, layer.stride, layer.padding
        if op == "conv2d":
            wt, bt = t(w), t(b)
            return lambda: TF.conv2d(xt, wt, bt, s, p, 1, layer.groups)
        if op == "conv_transpose2d":
            wt, bt = t(w), t(b)
            return lambda: TF.conv_transpose2d(xt, wt, bt, s, p, 0, layer.groups)
        if op == "max_pool2d":
            return lambda: TF.max_pool2d(xt, layer.k, s, p, ceil_mode=layer.ceil_mode)
        if op == "avg_pool2d":
            return lambda: TF.avg_pool2d(xt, layer.k, s, p)
        return lambda: TF.adaptive_avg_pool2d(xt, 1)

    @staticmethod
    def fetch(y):
        return y.numpy()


class OnnxRuntime:
    """ONNX Runtime's CPU provider running a one-node model (weights as initializers,
    so that the session may pre-pack them, as it does for a real model)."""
    name = "onnxruntime"
    OPSET = 17

    def __init__(self, threads):
        import onnx
        import onnxruntime as ort
        self.onnx, self.ort = onnx, ort
        self.version = ort.__version__
        self.options = ort.SessionOptions()
        self.options.intra_op_num_threads = threads
        self.options.inter_op_num_threads = 1
        self.options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.options.log_severity_level = 3

    def model(self, layer, w, b):
        """A one-node ONNX model: input X, output Y, weight and bias as initializers."""
        helper, numpy_helper, TensorProto = self.onnx.helper, self.onnx.numpy_helper, self.onnx.TensorProto
        elem = TensorProto.DOUBLE if layer.dtype == "float64" else TensorProto.FLOAT
        k, s, p = layer.k, layer.stride, layer.padding
        inputs, initializers, attrs = ["X"], [], {}
        if layer.is_conv:
            initializers = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")]
            inputs += ["W", "B"]
            attrs = dict(kernel_shape=[k, k], strides=[s, s], pads=[p] * 4, group=layer.groups)
            op_type = "Conv" if layer.op == "conv2d" else "ConvTranspose"
        elif layer.op == "global_avg_pool2d":
            op_type = "GlobalAveragePool"
        else:
            attrs = dict(kernel_shape=[k, k], strides=[s, s], pads=[p] * 4)
            if layer.op == "max_pool2d":
                op_type = "MaxPool"
                attrs["ceil_mode"] = int(layer.ceil_mode)
            else:
                op_type = "AveragePool"
                attrs["count_include_pad"] = 1                             # PyTorch's default
        node = helper.make_node(op_type, inputs, ["Y"], **attrs)
        graph = helper.make_graph(
            [node], layer.name,
            [helper.make_tensor_value_info("X", elem, list(layer.input_shape))],
            [helper.make_tensor_value_info("Y", elem, None)],
            initializer=initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.OPSET)])
        model.ir_version = 8                                               # readable by older runtimes too
        return model

    def prepare(self, layer, x, w, b):
        try:
            session = self.ort.InferenceSession(self.model(layer, w, b).SerializeToString(), self.options,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 -- ORT raises its own exception types
            first_line = str(exc).strip().splitlines()[0]
            message = re.sub(r"^\[ONNXRuntimeError\] : \d+ : | node with name '.*'$", "", first_line)
            raise Unsupported(message[:120]) from None
        feed = {"X": x}
        return lambda: session.run(None, feed)

    @staticmethod
    def fetch(y):
        return y[0]


PEERS = {"torch": Torch, "onnxruntime": OnnxRuntime, "numpy": NumPy}
