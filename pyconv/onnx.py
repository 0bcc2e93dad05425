"""pyconv.onnx -- run ONNX models (exported from PyTorch, TensorFlow, Caffe2, ...) with pyconv.

    model = pyconv.onnx.load("resnet50.onnx")        # a path, bytes, a file or a ModelProto
    probs = model(x)                                 # inputs in graph order -> one array
                                                     # (a list when the graph has several outputs)
    outs = model.run({"data": x})                    # {output name: array}, in graph order

Loading needs the ``onnx`` package (``pip install pyconv[onnx]``); running needs only
NumPy and pyconv. Everything that can fail on the model fails in :func:`load`:

    ModelProto --parse--> nodes (unsupported op / attribute / opset: UnsupportedError)
      --fold constants-->        nodes whose inputs are all initializers/Constants run once
      --BatchNorm into Conv-->   BN (and per-channel Mul/Add after it) scale the conv weights
      --activation into clamp--> Relu / Clip(min, max) after Conv, BN, Gemm, Add, Sum
      --drop dead nodes--> --compile--> steps [(fn, inputs, outputs)]
    run: feeds -> steps in order, each freeing the values it used last -> outputs

Operators are in :mod:`pyconv._onnx_ops` (one compiler per op type; ``SUPPORTED_OPS``
lists them). Convolution and pooling run on pyconv's kernels with ONNX semantics
(pads ``[x1_begin, x2_begin, ..., x1_end, x2_end]``, ``auto_pad``, -inf max-pool padding,
``count_include_pad=0`` by default); opsets 7 and later.
"""

import os

import numpy as np

from pyconv._onnx_ops import OPS, Node, OnnxError, UnsupportedError
from pyconv._onnx_ops import batch_norm_affine, clip_bounds

__all__ = ["load", "Model", "OnnxError", "UnsupportedError", "SUPPORTED_OPS", "MIN_OPSET"]

MIN_OPSET = 7
SUPPORTED_OPS = tuple(sorted(name for name in OPS if not name.startswith("_")))
_DEFAULT_DOMAINS = ("", "ai.onnx")


def _import_onnx():
    try:
        import onnx
        import onnx.numpy_helper  # noqa: F401
        import onnx.shape_inference  # noqa: F401
    except ImportError as exc:
        raise ImportError("pyconv.onnx.load needs the 'onnx' package to read models: "
                          "pip install 'pyconv[onnx]' (or pip install onnx)") from exc
    return onnx


def load(model):
    """Load an ONNX model for inference: ``model`` is a path, bytes, a binary file object
    or an ``onnx.ModelProto``. Returns a :class:`Model`.

    Raises :class:`UnsupportedError` (a ``ValueError`` and ``NotImplementedError``) naming
    the node (index, name and op_type) for an unsupported operator, attribute or value,
    and :class:`OnnxError` for a malformed graph -- at load time, never half-way through a run.
    """
    onnx = _import_onnx()
    if isinstance(model, (str, os.PathLike)):
        proto = onnx.load(os.fspath(model))
    elif isinstance(model, (bytes, bytearray, memoryview)):
        proto = onnx.load_from_string(bytes(model))
    elif hasattr(model, "read"):
        proto = onnx.load(model)
    elif isinstance(model, onnx.ModelProto):
        proto = model
    else:
        raise TypeError(f"model must be a path, bytes, a file or an onnx.ModelProto, "
                        f"got {type(model).__name__}")
    return Model(proto, _onnx=onnx)


class _Context:
    """What an op compiler may ask at load time: constants, tensor ranks, tensor protos."""

    def __init__(self, onnx, consts, ranks):
        self._onnx, self.consts, self.ranks = onnx, consts, ranks

    def const(self, name):
        return None if name is None else self.consts.get(name)

    def rank(self, name):
        return None if name is None else self.ranks.get(name)

    def tensor(self, proto):
        return self._onnx.numpy_helper.to_array(proto)

    def numpy_dtype(self, node, elem_type):
        try:
            return np.dtype(self._onnx.helper.tensor_dtype_to_np_dtype(elem_type))
        except Exception:
            node.fail(f"data type {elem_type} is not supported")


class Model:
    """An ONNX graph compiled for pyconv: call it, or :meth:`run` it, with NumPy arrays.

    Attributes: ``inputs`` and ``outputs`` (names, in graph order), ``input_shapes``
    (declared shapes, None for a symbolic dim), ``opset``, ``steps`` (the compiled
    node count after folding and fusion).
    """

    def __init__(self, proto, *, _onnx=None):
        onnx = _onnx or _import_onnx()
        graph = proto.graph
        self.opset = self._opset(proto)
        consts = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
        if len(graph.sparse_initializer):
            raise UnsupportedError("sparse initializers are not supported")
        inputs = [v for v in graph.input if v.name not in consts]
        self.inputs = [v.name for v in inputs]
        self.outputs = [v.name for v in graph.output]
        self._input_types = {v.name: self._declared(onnx, v) for v in inputs}
        self.input_shapes = {name: shape for name, (_, shape) in self._input_types.items()}
        nodes = self._nodes(onnx, graph)
        ctx = _Context(onnx, consts, self._ranks(onnx, proto))

        nodes = _fold_constants(nodes, ctx, set(self.outputs))
        nodes = _fuse(nodes, ctx, set(self.outputs))
        nodes = _live(nodes, self.outputs)
        self._steps = self._compile(nodes, ctx)
        self.steps = len(self._steps)
        self._const_outputs = {n: ctx.consts[n] for n in self.outputs if n in ctx.consts}

    # -- loading ----------------------------------------------------------------------

    @staticmethod
    def _opset(proto):
        versions = [o.version for o in proto.opset_import if o.domain in _DEFAULT_DOMAINS]
        opset = max(versions) if versions else 1
        if opset < MIN_OPSET:
            raise UnsupportedError(f"opset {opset} is not supported (pyconv.onnx reads opset "
                                   f"{MIN_OPSET} and later; upgrade it with "
                                   f"onnx.version_converter.convert_version)")
        return opset

    @staticmethod
    def _declared(onnx, value_info):
        """(NumPy dtype or None, shape tuple with None for symbolic dims) of a graph input."""
        t = value_info.type.tensor_type
        dtype = None
        if t.elem_type:
            try:
                dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type))
            except Exception:
                dtype = None
        shape = None
        if t.HasField("shape"):
            shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
        return dtype, shape

    def _nodes(self, onnx, graph):
        nodes = []
        for i, p in enumerate(graph.node):
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in p.attribute}
            node = Node(i, p.name, p.op_type, p.input, p.output, attrs, self.opset)
            if p.domain not in _DEFAULT_DOMAINS:
                node.fail(f"domain {p.domain!r} is not supported (only the default ONNX domain)")
            if p.op_type not in OPS:
                node.fail(f"operator {p.op_type!r} is not supported; supported operators: "
                          f"{', '.join(SUPPORTED_OPS)}")
            nodes.append(node)
        return nodes

    @staticmethod
    def _ranks(onnx, proto):
        """Tensor ranks from ONNX shape inference (used to fold per-channel Mul/Add).

        Inference runs on a copy without the large initializers' data (declared as
        inputs of the same type and shape instead): serialising hundreds of MB of
        weights would cost more than everything else in loading.
        """
        graph = proto.graph
        light = onnx.ModelProto()
        light.ir_version = max(proto.ir_version, 4)  # initializers need not be inputs
        light.opset_import.extend(proto.opset_import)
        g = light.graph
        g.node.extend(graph.node)
        g.output.extend(graph.output)
        g.value_info.extend(graph.value_info)
        declared = {v.name for v in graph.input}
        g.input.extend(graph.input)
        for t in graph.initializer:
            if np.prod(t.dims, dtype=np.int64) <= 64:   # shape tensors: inference reads their values
                g.initializer.append(t)
            elif t.name not in declared:
                g.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
        try:
            inferred = onnx.shape_inference.infer_shapes(light).graph
        except Exception:
            inferred = graph
        ranks = {}
        for v in list(inferred.value_info) + list(inferred.input) + list(inferred.output):
            t = v.type.tensor_type
            if t.HasField("shape"):
                ranks[v.name] = len(t.shape.dim)
        return ranks

    def _compile(self, nodes, ctx):
        known = set(self.inputs) | set(ctx.consts)
        steps, last_use = [], {}
        for node in nodes:
            ins = []
            for name in node.inputs:
                if not name:
                    ins.append((0, None))
                elif name in ctx.consts:
                    ins.append((0, ctx.consts[name]))
                elif name in known:
                    ins.append((1, name))
                    last_use[name] = len(steps)
                else:
                    raise OnnxError(f"{node.label}: input {name!r} is neither a graph input, "
                                    f"an initializer nor the output of an earlier node")
            while ins and ins[-1][0] == 0 and ins[-1][1] is None:  # omitted trailing optional inputs
                ins.pop()
            fn = _compile_node(node, ctx)
            known.update(o for o in node.outputs if o)
            steps.append([fn, tuple(ins), tuple(node.outputs), node.label, ()])
        for name in self.outputs:
            if name not in known:
                raise OnnxError(f"graph output {name!r} is not produced by any node")
        keep = set(self.outputs)
        frees = [[] for _ in steps]
        for name, i in last_use.items():
            if name not in keep:
                frees[i].append(name)
        for i, step in enumerate(steps):  # outputs nobody reads are dropped at once
            frees[i] += [o for o in step[2] if o and o not in keep and o not in last_use]
            step[4] = tuple(frees[i])
        return [tuple(s) for s in steps]

    # -- running ----------------------------------------------------------------------

    def _feeds(self, feeds):
        if isinstance(feeds, dict):
            unknown = set(feeds) - set(self.inputs)
            if unknown:
                raise ValueError(f"unknown input name(s) {sorted(unknown)}; the model's inputs "
                                 f"are {self.inputs}")
            missing = [n for n in self.inputs if n not in feeds]
            if missing:
                raise ValueError(f"missing input(s) {missing}; the model's inputs are {self.inputs}")
            items = [(n, feeds[n]) for n in self.inputs]
        else:
            feeds = list(feeds)
            if len(feeds) != len(self.inputs):
                raise ValueError(f"the model takes {len(self.inputs)} input(s) {self.inputs}, "
                                 f"got {len(feeds)}")
            items = list(zip(self.inputs, feeds))
        env = {}
        for name, value in items:
            dtype, shape = self._input_types[name]
            array = np.asarray(value) if dtype is None else np.asarray(value, dtype=dtype)
            if shape is not None and array.ndim != len(shape):
                raise ValueError(f"input {name!r} must be {len(shape)}-D (declared shape "
                                 f"{tuple('?' if d is None else d for d in shape)}), got shape {array.shape}")
            env[name] = array
        return env

    def run(self, feeds, outputs=None):
        """Run the model: ``feeds`` is ``{input name: array}`` (or a sequence in input
        order). Returns ``{output name: array}`` for ``outputs`` (default: all, in graph order)."""
        env = self._feeds(feeds)
        for fn, ins, outs, label, frees in self._steps:
            args = [value if kind == 0 else env[value] for kind, value in ins]
            try:
                result = fn(*args)
            except Exception as exc:
                if hasattr(exc, "add_note"):
                    exc.add_note(f"while running {label}")
                raise
            if len(outs) == 1:
                env[outs[0]] = result
            else:
                for name, value in zip(outs, result):
                    if name:
                        env[name] = value
            for name in frees:
                env.pop(name, None)
        wanted = self.outputs if outputs is None else list(outputs)
        result = {}
        for name in wanted:
            if name in self._const_outputs:
                result[name] = np.array(self._const_outputs[name])
            elif name in env:
                result[name] = np.asarray(env[name])
            else:
                raise ValueError(f"{name!r} is not an output of the model; outputs: {self.outputs}")
        return result

    def __call__(self, *inputs):
        """``model(x)``: inputs in graph order; the output array, or a list of them when
        the graph has several outputs."""
        out = self.run(inputs)
        values = [out[n] for n in self.outputs]
        return values[0] if len(values) == 1 else values

    def __repr__(self):
        return (f"pyconv.onnx.Model(inputs={self.inputs}, outputs={self.outputs}, "
                f"opset={self.opset}, steps={self.steps})")


# ---------------------------------------------------------------------------------------
# Graph passes
# ---------------------------------------------------------------------------------------

def _compile_node(node, ctx):
    fn = OPS[node.impl](node, ctx)
    _check_attributes(node)
    return fn


def _check_attributes(node):
    unused = sorted(set(node.attrs) - node.used)
    if unused:
        node.fail(f"attribute {unused[0]!r} is not supported")


def _fold_constants(nodes, ctx, graph_outputs):
    """Run every node whose inputs are all constant once, now (Shape/Gather/Reshape chains
    on initializers, ConstantOfShape, Constant, ...)."""
    kept = []
    for node in nodes:
        names = [n for n in node.inputs if n]
        if not all(n in ctx.consts for n in names):  # every supported op is deterministic
            kept.append(node)
            continue
        fn = _compile_node(node, ctx)
        args = [ctx.consts[n] if n else None for n in node.inputs]
        while args and args[-1] is None:
            args.pop()
        try:
            result = fn(*args)
        except Exception as exc:
            raise OnnxError(f"{node.label}: folding it on its constant inputs failed: {exc}") from exc
        values = [result] if len(node.outputs) == 1 else list(result)
        for name, value in zip(node.outputs, values):
            if name:
                value = np.asarray(value)
                value.flags.writeable = False  # shared by every run
                ctx.consts[name] = value
    return kept


def _consumers(nodes):
    table = {}
    for node in nodes:
        for name in node.inputs:
            if name:
                table.setdefault(name, []).append(node)
    return table


def _per_channel(value, rank, channels):
    """A constant as a (channels,) vector if it broadcasts only along axis 1 of a rank-``rank``
    tensor with ``channels`` channels (or is a scalar), else None."""
    value = np.asarray(value)
    if value.dtype.kind != "f":
        return None
    if value.size == 1 and value.ndim <= (rank or value.ndim):
        return np.full(channels, float(value.reshape(())))
    if rank is None or value.ndim > rank or value.size != channels:
        return None
    shape = (1,) * (rank - value.ndim) + value.shape
    if rank < 2 or shape[1] != channels or any(s != 1 for i, s in enumerate(shape) if i != 1):
        return None
    return value.reshape(-1).astype(np.float64)


def _fuse(nodes, ctx, graph_outputs):
    """BatchNormalization -> channel affine; affine (and per-channel Mul/Add/Sub/Div by a
    constant) folded into the preceding Conv or affine; a Conv joined with the Add of a
    residual (_fold_residual); Relu/Clip folded into the clamp of the preceding Conv,
    ConvTranspose, affine, Gemm, Add or Sum."""
    counter = [0]

    def new_const(base, value):
        counter[0] += 1
        name = f"{base}::folded{counter[0]}"
        ctx.consts[name] = value
        return name

    for node in nodes:
        if node.op_type == "BatchNormalization":
            affine = batch_norm_affine(node, ctx.const)
            _check_attributes(node)
            if affine is not None:
                node.impl, node.attrs, node.used = "_ChannelAffine", {}, set()
                node.inputs = [node.inputs[0], new_const(node.outputs[0] + "/scale", affine[0]),
                               new_const(node.outputs[0] + "/shift", affine[1])]

    # Affine folds first, to a fixed point, so that an activation is attached only to
    # the last node of a Conv/BN -> Mul -> Add chain; then residual joins, whose
    # activation (ResNet's Add -> Relu) folds last, into the joined node.
    nodes = _fold_pairs(nodes, graph_outputs, lambda node, user: _fold_affine(node, user, ctx, new_const))
    nodes = _fold_residual(nodes, graph_outputs)
    return _fold_pairs(nodes, graph_outputs, lambda node, user: _fold_activation(node, user, ctx))


def _fold_residual(nodes, graph_outputs):
    """Conv -> Add (or a two-input Sum) with another tensor, the Conv's output read by
    the Add only: one node "_ConvAdd" in the Add's place -- the Conv with the other
    tensor as a fourth input (its bias input "" where absent) -- which adds it while
    each block of the output is in cache (F._conv's residual) instead of a separate
    pass over three tensors. The Conv moves to the Add's place: the other tensor may be
    computed after it (a ResNet block's projection shortcut), never after the Add."""
    producer = {o: n for n in nodes for o in n.outputs if o}
    consumers = _consumers(nodes)
    joined = {}     # id(Add) -> the Conv that replaces it
    moved = set()   # id(Conv) moved
    for node in nodes:
        if (node.impl not in ("Add", "Sum") or len(node.inputs) != 2 or not all(node.inputs)
                or node.attrs or node.clamp is not None or node.inputs[0] == node.inputs[1]):
            continue
        for i in (0, 1):
            conv = producer.get(node.inputs[i])
            if (conv is None or conv.impl != "Conv" or conv.clamp is not None
                    or len(conv.outputs) != 1 or conv.outputs[0] in graph_outputs
                    or consumers.get(conv.outputs[0]) != [node] or id(conv) in moved):
                continue
            conv.impl = "_ConvAdd"
            conv.inputs = (conv.inputs + [""] * 3)[:3] + [node.inputs[1 - i]]
            conv.outputs = list(node.outputs)
            joined[id(node)] = conv
            moved.add(id(conv))
            break
    return [joined.get(id(n), n) for n in nodes if id(n) not in moved]


def _fold_pairs(nodes, graph_outputs, fold):
    """Merge each node with the sole reader of its single output where ``fold`` says it can."""
    changed = True
    while changed:
        changed = False
        consumers = _consumers(nodes)
        removed = set()
        for node in nodes:
            if id(node) in removed or node.clamp is not None or len(node.outputs) != 1:
                continue
            out = node.outputs[0]
            users = consumers.get(out, [])
            if len(users) != 1 or out in graph_outputs or id(users[0]) in removed:
                continue
            if fold(node, users[0]):
                node.outputs = [users[0].outputs[0]]
                removed.add(id(users[0]))
                changed = True
        nodes = [n for n in nodes if id(n) not in removed]
    return nodes


def _conv_params(node, ctx):
    """(weight, bias) of a Conv with constant weights (bias zeros if absent), else None."""
    if node.impl != "Conv":
        return None
    w = ctx.const(node.input(1))
    b = ctx.const(node.input(2)) if node.input(2) else None
    if w is None or w.dtype.kind != "f" or (node.input(2) and b is None):
        return None
    return np.asarray(w, np.float64), (np.zeros(w.shape[0]) if b is None else np.asarray(b, np.float64))


def _user_affine(node, user, ctx, rank, channels):
    """The (scale, shift) that ``user`` applies per channel to ``node``'s output, or None."""
    if user.impl == "_ChannelAffine":
        return np.asarray(ctx.const(user.input(1)), np.float64), np.asarray(ctx.const(user.input(2)), np.float64)
    if (user.impl not in ("Mul", "Add", "Sub", "Div") or len(user.inputs) != 2 or user.attrs
            or user.clamp is not None):
        return None
    x, other = user.inputs
    if x != node.outputs[0]:
        if user.impl in ("Sub", "Div"):
            return None  # c - x and c / x are not affine in x with these forms
        x, other = other, x
    if x == other:
        return None
    c = ctx.const(other)
    if c is None:
        return None
    vec = _per_channel(c, rank, channels)
    if vec is None:
        return None
    ones, zeros = np.ones(channels), np.zeros(channels)
    return {"Mul": (vec, zeros), "Div": (1 / vec, zeros), "Add": (ones, vec), "Sub": (ones, -vec)}[user.impl]


def _fold_affine(node, user, ctx, new_const):
    if node.impl == "Conv":
        params = _conv_params(node, ctx)
        if params is None:
            return False
        w, b = params
        affine = _user_affine(node, user, ctx, w.ndim, w.shape[0])
        if affine is None:
            return False
        scale, shift = affine
        w = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
        b = b * scale + shift
        dtype = np.float64 if ctx.const(node.input(1)).dtype == np.float64 else np.float32
        base = node.outputs[0]
        node.inputs = [node.inputs[0], new_const(base + "/weight", w.astype(dtype)),
                       new_const(base + "/bias", b.astype(dtype))]
        return True
    if node.impl == "_ChannelAffine":
        s0 = np.asarray(ctx.const(node.input(1)), np.float64)
        t0 = np.asarray(ctx.const(node.input(2)), np.float64)
        affine = _user_affine(node, user, ctx, ctx.rank(node.input(0)), s0.size)
        if affine is None:
            return False
        scale, shift = affine
        base = node.outputs[0]
        node.inputs = [node.inputs[0], new_const(base + "/scale", s0 * scale),
                       new_const(base + "/shift", t0 * scale + shift)]
        return True
    return False


_CLAMPABLE = ("Conv", "_ConvAdd", "ConvTranspose", "_ChannelAffine", "Gemm", "Add", "Sum")


def _fold_activation(node, user, ctx):
    if node.impl not in _CLAMPABLE:
        return False
    if user.impl == "Relu" and not user.attrs:
        node.clamp = (0.0, np.inf)
        return True
    if user.impl == "Clip":
        bounds = clip_bounds(user, ctx.const)
        _check_attributes(user)
        if bounds is None or bounds[0] > bounds[1]:
            return False
        node.clamp = (float(bounds[0]), float(bounds[1]))
        return True
    return False


def _live(nodes, outputs):
    """Drop nodes none of whose outputs reach a graph output (Dropout masks, dead shape math)."""
    needed = set(outputs)
    kept = []
    for node in reversed(nodes):
        if any(o in needed for o in node.outputs if o):
            kept.append(node)
            needed.update(n for n in node.inputs if n)
    return kept[::-1]
