"""pyconv.onnx: ONNX models run on pyconv match their stored outputs, ONNX Runtime and PyTorch.

* the light models shipped with the ``onnx`` package (AlexNet ... ZFNet-512) against their
  stored reference outputs -- their weights are ConstantOfShape(0.02), so the references
  are nearly constant; hence also
* the same graphs with seeded random weights (and BatchNorm statistics) against ONNX
  Runtime, comparing the logits (the Softmax input, added as an output) as well;
* one-node graphs per operator and attribute form (auto_pad, ceil_mode, count_include_pad,
  output_shape, storage_order, opset-dependent Softmax/Clip/Squeeze/Unsqueeze/Pad forms)
  against ONNX Runtime;
* pyconv.models architectures written in torch.nn (tests/test_models.py's twins),
  exported with ``torch.onnx.export`` at several opsets, against PyTorch;
* load-time errors naming the node; graph passes (BatchNorm folding, clamp fusion,
  constant folding) visible in the step count.
"""
import glob
import io
import os
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import pyconv.functional as F  # noqa: E402
import pyconv.onnx as ponnx  # noqa: E402

LIGHT_DIR = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
LIGHT = sorted(os.path.basename(p)[len("light_"):-len(".onnx")]
               for p in glob.glob(os.path.join(LIGHT_DIR, "light_*.onnx")))
RTOL = 1e-4  # relative to the largest magnitude of the expected output (float32 nets)


def close(actual, expected, rtol=RTOL):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    if expected.dtype.kind not in "fc":
        np.testing.assert_array_equal(actual, expected)
        return
    finite = expected[np.isfinite(expected)]
    scale = max(1.0, float(np.max(np.abs(finite), initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale)


def ort_run(model, feeds, threads=2):
    ort = pytest.importorskip("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3   # no warnings about unused initializers
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


# ---------------------------------------------------------------------------------------
# The light models of the ONNX backend test suite
# ---------------------------------------------------------------------------------------

def light_model(name):
    return onnx.load(os.path.join(LIGHT_DIR, f"light_{name}.onnx"))


def light_input(proto):
    """The input the ONNX backend runner feeds them: arange(n)/n in the declared shape."""
    inits = {t.name for t in proto.graph.initializer}
    (value,) = [v for v in proto.graph.input if v.name not in inits]
    shape = tuple(d.dim_value for d in value.type.tensor_type.shape.dim)
    n = int(np.prod(shape))
    return value.name, (np.arange(n).reshape(shape) / n).astype(np.float32)


def test_light_models_are_installed():
    assert set(LIGHT) >= {"bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50",
                          "shufflenet", "squeezenet", "vgg19", "zfnet512"}


@pytest.mark.parametrize("name", LIGHT)
def test_light_model_matches_its_stored_output(name):
    proto = light_model(name)
    reference = numpy_helper.to_array(onnx.load_tensor(os.path.join(LIGHT_DIR, f"light_{name}_output_0.pb")))
    model = ponnx.load(proto)
    input_name, x = light_input(proto)
    y = model(x)
    close(y, reference, rtol=1e-5)
    assert model.run({input_name: x})[model.outputs[0]].shape == reference.shape


def _consumer_role(consumers, name):
    """(op_type, input index, node) of the op that finally uses ``name``, through Unsqueeze/Reshape."""
    while True:
        node, i = consumers[name][0]
        if node.op_type in ("Unsqueeze", "Reshape", "Identity") and i == 0:
            name = node.output[0]
            continue
        return node.op_type, i, node


def randomized(proto, seed=0):
    """The light model (edited in place) with seeded random weights in place of its
    ConstantOfShape(0.02) ones, scaled per role so activations stay O(1) through 100+
    layers, and the logits (the Softmax input) as an extra output."""
    rng = np.random.default_rng(seed)
    # Big layers (VGG's 100M-weight fc6) take their values from one seeded pool of
    # normals, at a random offset: generating 140M fresh normals would dominate the test.
    pool = rng.standard_normal(3_000_017, np.float32)

    def normal(shape):
        if int(np.prod(shape)) <= 100_000:
            return rng.standard_normal(shape, np.float32)
        return np.resize(np.roll(pool, -int(rng.integers(len(pool)))), shape)

    graph = proto.graph
    shapes = {t.name: numpy_helper.to_array(t) for t in graph.initializer if t.data_type == TensorProto.INT64}
    consumers = {}
    for node in graph.node:
        for i, n in enumerate(node.input):
            consumers.setdefault(n, []).append((node, i))
    kept = []
    for node in graph.node:
        if node.op_type != "ConstantOfShape" or node.input[0] not in shapes:
            kept.append(node)
            continue
        shape = tuple(int(s) for s in shapes[node.input[0]])
        op_type, index, user = _consumer_role(consumers, node.output[0])
        if op_type in ("Conv", "Gemm") and index == 1:
            trans_b = any(a.name == "transB" and a.i for a in user.attribute)
            fan_in = int(np.prod(shape[1:])) if op_type == "Conv" or trans_b else shape[0]
            value = normal(shape)
            value *= np.float32(np.sqrt(2.0 / fan_in))
        elif (op_type == "BatchNormalization" and index in (1, 4)) or op_type == "Mul":
            value = rng.uniform(0.5, 1.5, shape).astype(np.float32)   # scales, variances
        else:
            value = normal(shape) * np.float32(0.1)                   # biases, means
        t = graph.initializer.add()
        t.name, t.data_type, t.raw_data = node.output[0], TensorProto.FLOAT, value.tobytes()
        t.dims.extend(shape)
    softmax = [n for n in kept if n.op_type == "Softmax"]
    copies = [onnx.NodeProto() for _ in kept]
    for c, n in zip(copies, kept):
        c.CopyFrom(n)
    del graph.node[:]
    graph.node.extend(copies)
    if softmax:
        graph.output.append(helper.make_tensor_value_info(softmax[-1].input[0], TensorProto.FLOAT, None))
    return proto


@pytest.mark.parametrize("name", LIGHT)
def test_light_model_with_random_weights_matches_onnxruntime(name):
    pytest.importorskip("onnxruntime")
    proto = randomized(light_model(name))
    input_name, _ = light_input(proto)
    x = np.random.default_rng(1).random((1, 3, 224, 224), np.float32)
    expected = ort_run(proto, {input_name: x})
    actual = ponnx.load(proto).run({input_name: x})
    assert list(actual) == list(expected)
    for key in expected:
        assert np.std(expected[key]) > 1e-6, f"{key} is constant: the random weights do not reach it"
        close(actual[key], expected[key])


# ---------------------------------------------------------------------------------------
# One node at a time, against ONNX Runtime
# ---------------------------------------------------------------------------------------

def one_node(op_type, inputs, attrs=None, opset=17, outputs=1, consts=()):
    """A model of one node: ``inputs`` is [(name, array)], those named in ``consts`` become
    initializers (the rest graph inputs); returns (model, feeds)."""
    out_names = [f"y{i}" for i in range(outputs)]
    node = helper.make_node(op_type, [n for n, _ in inputs], out_names, name=f"the_{op_type.lower()}",
                            **(attrs or {}))
    graph_inputs, inits, feeds = [], [], {}
    for name, value in inputs:
        if not name:
            continue
        value = np.asarray(value)
        if name in consts:
            inits.append(numpy_helper.from_array(value, name))
        else:
            dtype = helper.np_dtype_to_tensor_dtype(value.dtype)
            graph_inputs.append(helper.make_tensor_value_info(name, dtype, value.shape))
            feeds[name] = value
    graph = helper.make_graph([node], "g", graph_inputs, [helper.make_empty_tensor_value_info(n) for n in out_names],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return typed_outputs(model), feeds


def typed_outputs(model):
    """The model with its outputs' element types filled in by ONNX shape inference."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    for out in model.graph.output:
        elem = types[out.name].tensor_type.elem_type if out.name in types else TensorProto.FLOAT
        out.CopyFrom(helper.make_tensor_value_info(out.name, elem or TensorProto.FLOAT, None))
    return model


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


X = rand(2, 4, 9, 11)
W = rand(6, 2, 3, 4, seed=1)
WT = rand(4, 3, 3, 4, seed=2)  # ConvTranspose (C_in, C_out/groups, kh, kw)
B6 = rand(6, seed=3)
C = ("w", "b")

NODE_CASES = [
    # Conv
    ("Conv", [("x", X), ("w", W), ("b", B6)], dict(group=2, pads=[1, 0, 2, 1], strides=[2, 1], dilations=[1, 2]), 17, 1, C),
    ("Conv", [("x", X), ("w", W)], dict(group=2, auto_pad="SAME_UPPER", strides=[2, 3]), 11, 1, C),
    ("Conv", [("x", X), ("w", W)], dict(group=2, auto_pad="SAME_LOWER", strides=[2, 2]), 11, 1, C),
    ("Conv", [("x", X), ("w", W), ("b", B6)], dict(group=2, auto_pad="VALID", kernel_shape=[3, 4]), 7, 1, C),
    ("Conv", [("x", X), ("w", W), ("b", B6)], dict(group=2), 13, 1, ()),   # weights as inputs
    ("Conv", [("x", rand(2, 4, 17)), ("w", rand(5, 4, 3, seed=1))], dict(pads=[2, 1], strides=[2]), 13, 1, C),
    # ConvTranspose
    ("ConvTranspose", [("x", X), ("w", WT), ("b", rand(6))], dict(group=2, strides=[2, 3], pads=[1, 0, 0, 2], output_padding=[1, 2]), 17, 1, C),
    ("ConvTranspose", [("x", X), ("w", WT)], dict(strides=[2, 2], output_shape=[20, 23]), 11, 1, C),
    ("ConvTranspose", [("x", X), ("w", WT)], dict(strides=[2, 2], auto_pad="SAME_UPPER"), 11, 1, C),
    ("ConvTranspose", [("x", X), ("w", WT)], dict(strides=[2, 2], auto_pad="SAME_LOWER"), 11, 1, C),
    ("ConvTranspose", [("x", X), ("w", WT)], dict(strides=[2, 1], dilations=[2, 1], pads=[1, 1, 0, 1]), 13, 1, C),
    # MaxPool
    ("MaxPool", [("x", X)], dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]), 7, 1, ()),
    ("MaxPool", [("x", X)], dict(kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 1], ceil_mode=1), 12, 2, ()),
    ("MaxPool", [("x", X)], dict(kernel_shape=[2, 3], strides=[1, 2], dilations=[2, 2]), 12, 2, ()),
    ("MaxPool", [("x", X)], dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], storage_order=1), 12, 2, ()),
    ("MaxPool", [("x", X)], dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"), 11, 1, ()),
    ("MaxPool", [("x", X)], dict(kernel_shape=[2, 2], strides=[2, 2], auto_pad="SAME_LOWER"), 11, 1, ()),
    ("MaxPool", [("x", rand(2, 3, 10))], dict(kernel_shape=[3], strides=[2], pads=[1, 1]), 12, 2, ()),
    # AveragePool
    ("AveragePool", [("x", X)], dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]), 7, 1, ()),
    ("AveragePool", [("x", X)], dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1), 11, 1, ()),
    ("AveragePool", [("x", X)], dict(kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 1], ceil_mode=1), 11, 1, ()),
    ("AveragePool", [("x", X)], dict(kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 1], ceil_mode=1, count_include_pad=1), 11, 1, ()),
    ("AveragePool", [("x", X)], dict(kernel_shape=[2, 2], strides=[1, 2], dilations=[2, 2]), 19, 1, ()),
    ("AveragePool", [("x", X)], dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"), 11, 1, ()),
    ("GlobalAveragePool", [("x", X)], {}, 7, 1, ()),
    ("GlobalMaxPool", [("x", X)], {}, 7, 1, ()),
    ("GlobalAveragePool", [("x", rand(2, 3, 5))], {}, 13, 1, ()),
    # Normalisation, dense, activations
    ("BatchNormalization", [("x", X), ("s", rand(4) + 1), ("bb", rand(4)), ("m", rand(4)), ("v", rand(4) ** 2 + 0.5)],
     dict(epsilon=1e-3), 9, 1, ("s", "bb", "m", "v")),
    ("BatchNormalization", [("x", X), ("s", rand(4) + 1), ("bb", rand(4)), ("m", rand(4)), ("v", rand(4) ** 2 + 0.5)],
     {}, 15, 1, ()),
    ("LRN", [("x", X)], dict(size=3, alpha=1e-2, beta=0.75, bias=2.0), 13, 1, ()),
    ("Gemm", [("a", rand(5, 7)), ("w", rand(3, 7)), ("b", rand(3))], dict(transB=1, alpha=0.5, beta=2.0), 13, 1, C),
    ("Gemm", [("a", rand(7, 5)), ("w", rand(7, 3)), ("b", rand(1, 3))], dict(transA=1), 9, 1, ()),
    ("MatMul", [("a", rand(2, 5, 7)), ("w", rand(7, 3))], {}, 13, 1, C),
    ("Softmax", [("x", rand(2, 3, 4))], dict(axis=1), 11, 1, ()),   # 2-D coercion
    ("Softmax", [("x", rand(2, 3, 4))], dict(axis=1), 13, 1, ()),   # one axis
    ("Softmax", [("x", rand(2, 3, 4))], {}, 9, 1, ()),
    ("Softmax", [("x", rand(2, 3, 4))], {}, 13, 1, ()),
    ("LogSoftmax", [("x", rand(2, 3, 4))], dict(axis=-1), 13, 1, ()),
    ("Clip", [("x", X)], dict(min=-0.5, max=0.7), 7, 1, ()),
    ("Clip", [("x", X), ("lo", np.float32(-0.5)), ("hi", np.float32(0.7))], {}, 13, 1, ("lo", "hi")),
    ("Clip", [("x", X), ("", None), ("hi", np.float32(0.7))], {}, 13, 1, ("hi",)),
    ("Relu", [("x", X)], {}, 13, 1, ()),
    ("LeakyRelu", [("x", X)], dict(alpha=0.2), 13, 1, ()),
    ("LeakyRelu", [("x", X)], {}, 7, 1, ()),
    ("Sigmoid", [("x", X * 30)], {}, 13, 1, ()),
    ("Tanh", [("x", X)], {}, 13, 1, ()),
    ("HardSigmoid", [("x", X)], {}, 13, 1, ()),
    ("Dropout", [("x", X)], dict(ratio=0.3), 7, 1, ()),
    ("Dropout", [("x", X)], {}, 13, 2, ()),
    ("Identity", [("x", X)], {}, 13, 1, ()),
    # Arithmetic
    ("Add", [("x", X), ("c", rand(4, 1, 1))], {}, 13, 1, ("c",)),
    ("Sub", [("x", X), ("c", rand(11))], {}, 7, 1, ()),
    ("Mul", [("x", X), ("c", rand(1, 4, 1, 1))], {}, 13, 1, ()),
    ("Div", [("x", X), ("c", rand(9, 1) + 3)], {}, 13, 1, ()),
    ("Div", [("x", np.array([7, -7, 6, -6], np.int64)), ("c", np.array([2, 2, -4, 4], np.int64))], {}, 13, 1, ()),
    ("Sum", [("x", X), ("c", rand(11)), ("d", rand(4, 1, 1))], {}, 13, 1, ()),
    ("Sum", [("x", X)], {}, 8, 1, ()),
    ("Max", [("x", X), ("c", rand(11))], {}, 13, 1, ()),
    # Shapes and data movement
    ("Concat", [("x", X), ("c", rand(2, 4, 9, 2))], dict(axis=-1), 13, 1, ()),
    ("Reshape", [("x", X), ("s", np.array([0, -1, 11], np.int64))], {}, 13, 1, ("s",)),
    ("Reshape", [("x", X), ("s", np.array([2, 0, 99], np.int64))], {}, 7, 1, ("s",)),
    ("Reshape", [("x", rand(0, 4)), ("s", np.array([4, 0], np.int64))], dict(allowzero=1), 14, 1, ("s",)),
    ("Flatten", [("x", X)], {}, 9, 1, ()),
    ("Flatten", [("x", X)], dict(axis=0), 9, 1, ()),
    ("Flatten", [("x", X)], dict(axis=-1), 13, 1, ()),
    ("Transpose", [("x", X)], dict(perm=[0, 2, 3, 1]), 13, 1, ()),
    ("Transpose", [("x", X)], {}, 13, 1, ()),
    ("Squeeze", [("x", rand(2, 1, 3, 1))], dict(axes=[1]), 11, 1, ()),
    ("Squeeze", [("x", rand(2, 1, 3, 1))], {}, 11, 1, ()),
    ("Squeeze", [("x", rand(2, 1, 3, 1)), ("a", np.array([-1], np.int64))], {}, 13, 1, ("a",)),
    ("Unsqueeze", [("x", rand(2, 3))], dict(axes=[0, 3]), 11, 1, ()),
    ("Unsqueeze", [("x", rand(2, 3)), ("a", np.array([-1, 1], np.int64))], {}, 13, 1, ("a",)),
    ("Unsqueeze", [("x", rand(2, 3)), ("a", np.array([0], np.int64))], {}, 13, 1, ()),  # runtime axes
    ("Shape", [("x", X)], {}, 13, 1, ()),
    ("Shape", [("x", X)], dict(start=1, end=-1), 15, 1, ()),
    ("Gather", [("x", X), ("i", np.array([[0, -1], [2, 1]], np.int64))], dict(axis=1), 13, 1, ("i",)),
    ("Gather", [("x", np.array([3, 4, 5], np.int64)), ("i", np.array(1, np.int64))], {}, 13, 1, ()),
    ("ConstantOfShape", [("s", np.array([2, 3], np.int64))], dict(value=numpy_helper.from_array(np.array([1.5], np.float32))), 13, 1, ()),
    ("ConstantOfShape", [("s", np.array([2, 3], np.int64))], {}, 9, 1, ()),
    ("Constant", [], dict(value=numpy_helper.from_array(rand(2, 3))), 13, 1, ()),
    ("Constant", [], dict(value_ints=[1, 2, 3]), 13, 1, ()),
    ("Pad", [("x", X)], dict(pads=[0, 0, 1, 2, 0, 0, 3, 0], mode="reflect"), 7, 1, ()),
    ("Pad", [("x", X)], dict(pads=[0, 1, 1, 2, 0, 0, 0, 1], value=-2.0), 10, 1, ()),
    ("Pad", [("x", X), ("p", np.array([0, 0, 2, 1, 0, 0, 1, 3], np.int64))], dict(mode="edge"), 13, 1, ("p",)),
    ("Pad", [("x", X), ("p", np.array([0, 0, -1, 2, 0, 0, 1, -3], np.int64)), ("v", np.float32(0.5))], {}, 13, 1, ("p", "v")),
    ("Pad", [("x", X), ("p", np.array([1, 2, 0, 1], np.int64)), ("", None), ("a", np.array([1, 3], np.int64))],
     dict(mode="reflect"), 18, 1, ("p", "a")),
    ("Slice", [("x", X), ("s", np.array([1, -4], np.int64)), ("e", np.array([100, -1], np.int64)),
               ("a", np.array([2, 3], np.int64)), ("st", np.array([2, 1], np.int64))], {}, 13, 1, ("s", "e", "a", "st")),
    ("Slice", [("x", X), ("s", np.array([-1, 2**62], np.int64)), ("e", np.array([-2**62, 1], np.int64)),
               ("a", np.array([3, 2], np.int64)), ("st", np.array([-2, -3], np.int64))], {}, 13, 1, ()),
    ("Split", [("x", X), ("sp", np.array([3, 6], np.int64))], dict(axis=2), 13, 2, ("sp",)),
    ("Cast", [("x", X)], dict(to=TensorProto.INT64), 13, 1, ()),
    ("ReduceMean", [("x", X)], dict(axes=[2, 3]), 13, 1, ()),
]


@pytest.mark.parametrize("op_type, inputs, attrs, opset, outputs, consts", NODE_CASES,
                         ids=[f"{c[0]}-opset{c[3]}-{i}" for i, c in enumerate(NODE_CASES)])
def test_node_matches_onnxruntime(op_type, inputs, attrs, opset, outputs, consts):
    model, feeds = one_node(op_type, inputs, attrs, opset, outputs, consts)
    expected = ort_run(model, feeds)
    actual = ponnx.load(model).run(feeds)
    assert list(actual) == list(expected)
    for key in expected:
        close(actual[key], expected[key], rtol=1e-5)


def test_lrn_with_an_even_size_follows_the_spec():
    # ONNX Runtime only implements odd sizes (and onnx.reference's LRN loops over the batch
    # instead of the channels), so: the spec's formula, window [c - 1, c + 2] for size 4.
    model, feeds = one_node("LRN", [("x", X)], dict(size=4, alpha=0.1, beta=0.6, bias=1.5), 13)
    x = X.astype(np.float64)
    square_sum = np.stack([(x[:, max(0, c - 1):c + 3] ** 2).sum(axis=1) for c in range(x.shape[1])], axis=1)
    expected = (x / (1.5 + 0.1 / 4 * square_sum) ** 0.6).astype(np.float32)
    close(ponnx.load(model).run(feeds)["y0"], expected, rtol=1e-5)


def test_max_pool_pads_with_minus_infinity():
    x = -np.abs(rand(1, 2, 5, 5)) - 1   # all negative: a 0 pad would win
    model, feeds = one_node("MaxPool", [("x", x)], dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]), 12, 2)
    actual, expected = ponnx.load(model).run(feeds), ort_run(model, feeds)
    close(actual["y0"], expected["y0"])
    close(actual["y1"], expected["y1"])
    assert (actual["y0"] < 0).all()


# ---------------------------------------------------------------------------------------
# Graph passes and the runtime API
# ---------------------------------------------------------------------------------------

def chain(nodes, inits, x_shape, outputs=("y",), opset=13):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def conv_bn_relu_model(opset=13, clip=False):
    inits = {"w": rand(8, 3, 3, 3), "s": rand(8) + 2, "bb": rand(8), "m": rand(8), "v": rand(8) ** 2 + 0.5,
             "k": rand(8, 1, 1), "lo": np.float32(0), "hi": np.float32(6)}
    act = (helper.make_node("Clip", ["z", "lo", "hi"], ["y"]) if clip else helper.make_node("Relu", ["z"], ["y"]))
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["n"]),
             helper.make_node("Mul", ["n", "k"], ["z"]), act]
    return chain(nodes, inits, [2, 3, 10, 10], opset=opset)


@pytest.mark.parametrize("clip", [False, True])
def test_conv_batchnorm_mul_and_activation_fold_into_one_conv(clip):
    model = conv_bn_relu_model(clip=clip)
    x = rand(2, 3, 10, 10, seed=7)
    m = ponnx.load(model)
    assert m.steps == 1
    close(m(x), ort_run(model, {"x": x})["y"])


def test_repeated_runs_match_onnxruntime():
    # Each Conv node keeps its checked call for the next run (functional._ConvPlan).
    model = conv_bn_relu_model()
    m = ponnx.load(model)
    for seed in (1, 2, 1):
        x = rand(2, 3, 10, 10, seed=seed)
        close(m(x), ort_run(model, {"x": x})["y"])


def test_a_conv_node_repeats_its_call_only_for_an_input_that_fits(monkeypatch):
    # A Conv with constant weights repeats its kept call (functional._ConvPlan.rerun)
    # without the checks when the input has the last call's shape; any other input
    # takes the full path (new pads from auto_pad, a new plan).
    w, b = rand(5, 3, 3, 3, seed=41), rand(5, seed=42)
    model = chain([helper.make_node("Conv", ["x", "w", "b"], ["y"], auto_pad="SAME_UPPER", strides=[2, 2])],
                  {"w": w, "b": b}, [None, 3, None, None])
    m = ponnx.load(model)
    x = rand(2, 3, 9, 8, seed=43)
    first = m(x)
    full = F._conv
    with monkeypatch.context() as patch:
        def no_full_path(*args, **kwargs):
            raise AssertionError("the full path ran")
        patch.setattr(F, "_conv", no_full_path)
        np.testing.assert_array_equal(m(x.copy()), first)     # the same shape: repeated
        with pytest.raises(AssertionError, match="full path"):
            m(rand(2, 3, 9, 9, seed=44))                      # another shape: checked again
    for xi in (rand(1, 3, 11, 6, seed=45), rand(3, 3, 9, 8, seed=46), x):
        y = m(xi)
        np.testing.assert_array_equal(m(xi), y)
        np.testing.assert_array_equal(y, ponnx.load(model)(xi))
        close(y, ort_run(model, {"x": xi})["y"])
    assert F._conv is full


def test_plan_rerun_refuses_what_does_not_fit():
    plan = F._ConvPlan()
    x, w = rand(1, 4, 6, 6, seed=51), rand(8, 4, 1, 1, seed=52)
    w.flags.writeable = False
    assert plan.rerun(x) is None                                  # nothing kept yet
    y = F._conv("Conv", 2, x, w, None, (1, 1), ((0, 0), (0, 0)), (1, 1), 1, "zeros", None, False, plan=plan)
    np.testing.assert_array_equal(plan.rerun(x), y)
    assert plan.rerun(rand(1, 4, 6, 7)) is None                   # another shape
    assert plan.rerun(x.astype(np.float64)) is None               # another dtype
    assert plan.rerun(np.asfortranarray(x)) is None               # not C-contiguous
    assert plan.rerun(x, residual=np.zeros_like(y)) is None       # kept without a residual
    r = rand(1, 8, 6, 6, seed=53)
    yr = F._conv("Conv", 2, x, w, None, (1, 1), ((0, 0), (0, 0)), (1, 1), 1, "zeros", None, False,
                 plan=plan, residual=r)
    np.testing.assert_array_equal(plan.rerun(x, residual=r), yr)
    assert plan.rerun(x) is None                                  # kept with a residual
    assert plan.rerun(x, residual=np.asfortranarray(r)) is None   # a residual the kernel cannot add


def test_batchnorm_after_concat_becomes_one_affine_step():
    inits = {"s": rand(8) + 2, "bb": rand(8), "m": rand(8), "v": rand(8) ** 2 + 0.5, "k": rand(8, 1, 1)}
    nodes = [helper.make_node("Concat", ["x", "x"], ["c"], axis=1),
             helper.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["n"]),
             helper.make_node("Mul", ["n", "k"], ["z"]), helper.make_node("Add", ["z", "k"], ["r"]),
             helper.make_node("Relu", ["r"], ["y"])]
    model = chain(nodes, inits, [2, 4, 5, 5])
    m = ponnx.load(model)
    assert m.steps == 2   # Concat, then BN+Mul+Add+Relu as one affine
    x = rand(2, 4, 5, 5)
    close(m(x), ort_run(model, {"x": x})["y"])


def test_a_conv_output_read_twice_is_not_folded():
    inits = {"w": rand(4, 3, 1, 1), "s": rand(4) + 2, "bb": rand(4), "m": rand(4), "v": rand(4) ** 2 + 0.5}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]),
             helper.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["n"]),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("Add", ["n", "r"], ["y"])]
    model = chain(nodes, inits, [1, 3, 4, 4])
    x = rand(1, 3, 4, 4)
    close(ponnx.load(model)(x), ort_run(model, {"x": x})["y"])


def residual_block_model(projection=True, relu=True, extra_outputs=()):
    """A ResNet block end: x -> Conv -> Conv -> "c", the shortcut "s" (a 1x1 projection
    Conv of x listed *after* c's Conv, or x itself), Add(c, s) (-> Relu) -> y."""
    inits = {"w1": rand(6, 4, 3, 3, seed=11), "b1": rand(6, seed=12), "w2": rand(8, 6, 1, 1, seed=13),
             "w3": rand(8, 4, 1, 1, seed=14), "b3": rand(8, seed=15)}
    if not projection:
        inits["w2"] = rand(4, 6, 1, 1, seed=13)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["a", "w2"], ["c"])]
    if projection:
        nodes.append(helper.make_node("Conv", ["x", "w3", "b3"], ["s"]))
    nodes.append(helper.make_node("Add", ["c", "s" if projection else "x"], ["z" if relu else "y"]))
    if relu:
        nodes.append(helper.make_node("Relu", ["z"], ["y"]))
    return chain(nodes, inits, [2, 4, 9, 7], outputs=("y",) + tuple(extra_outputs))


def unfused(model, monkeypatch):
    """The model loaded without the residual fold: the reference, step by step."""
    with monkeypatch.context() as m:
        m.setattr(ponnx, "_fold_residual", lambda nodes, graph_outputs: nodes)
        return ponnx.load(model)


@pytest.mark.parametrize("projection", [True, False])
@pytest.mark.parametrize("relu", [True, False])
def test_conv_add_relu_join_into_one_step(projection, relu, monkeypatch):
    model = residual_block_model(projection, relu)
    m, ref = ponnx.load(model), unfused(model, monkeypatch)
    # Conv, (projection Conv,) Conv + Add (+ Relu): one step fewer than the Add (+ Relu).
    assert m.steps == 2 + projection and ref.steps == m.steps + 1
    x = rand(2, 4, 9, 7, seed=21)
    x0 = x.copy()
    for _ in range(2):   # the second run takes the kept call (the Conv's plan)
        y = m(x)
        np.testing.assert_array_equal(y, ref(x))   # the joined step's arithmetic is the two steps'
    np.testing.assert_array_equal(x, x0)           # the shortcut x is read, never written
    close(y, ort_run(model, {"x": x})["y"])


def test_a_conv_output_the_graph_returns_is_not_joined(monkeypatch):
    # c is a graph output, so its Conv stays whole; the projection Conv joins the Add
    # instead, c being its residual.
    model = residual_block_model(extra_outputs=("c",))
    m = ponnx.load(model)
    assert m.steps == 3 and unfused(model, monkeypatch).steps == 4
    x = rand(2, 4, 9, 7, seed=22)
    np.testing.assert_array_equal(m.run({"x": x})["y"], unfused(model, monkeypatch).run({"x": x})["y"])
    got, want = m.run({"x": x}), ort_run(model, {"x": x})
    close(got["y"], want["y"])
    close(got["c"], want["c"])


def test_a_broadcast_residual_joins_by_numpy_rules(monkeypatch):
    # The other addend is a (1, C, 1, 1) graph input: the joined step falls back to the
    # convolution and a broadcasting add.
    w = rand(5, 3, 3, 3, seed=31)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Add", ["r", "c"], ["z"]), helper.make_node("Relu", ["z"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6]),
         helper.make_tensor_value_info("r", TensorProto.FLOAT, [1, 5, 1, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    m = ponnx.load(model)
    assert m.steps == 1
    feeds = {"x": rand(1, 3, 6, 6, seed=32), "r": rand(1, 5, 1, 1, seed=33)}
    np.testing.assert_array_equal(m.run(feeds)["y"], unfused(model, monkeypatch).run(feeds)["y"])
    close(m.run(feeds)["y"], ort_run(model, feeds)["y"])


def test_shape_chains_on_initializers_are_folded():
    inits = {"t": rand(3, 4, 5), "i": np.array(1, np.int64), "z": np.array([0], np.int64)}
    nodes = [helper.make_node("Shape", ["t"], ["s"]), helper.make_node("Gather", ["s", "i"], ["g"]),
             helper.make_node("Unsqueeze", ["g", "z"], ["u"]),
             helper.make_node("Concat", ["z", "u"], ["shape"], axis=0),   # [0, 4]
             helper.make_node("Reshape", ["x", "shape"], ["y"])]
    model = chain(nodes, inits, [2, 2, 2])
    m = ponnx.load(model)
    assert m.steps == 1
    np.testing.assert_array_equal(m(rand(2, 2, 2)), rand(2, 2, 2).reshape(2, 4))


def test_run_api():
    model = conv_bn_relu_model()
    m = ponnx.load(model.SerializeToString())
    x = rand(2, 3, 10, 10)
    y = m(x)
    assert isinstance(y, np.ndarray) and y.shape == (2, 8, 10, 10) and y.dtype == np.float32
    np.testing.assert_array_equal(m.run({"x": x})["y"], y)
    np.testing.assert_array_equal(m.run([x])["y"], y)
    np.testing.assert_array_equal(m(x.astype(np.float64)), y)   # cast to the declared dtype
    assert m.inputs == ["x"] and m.outputs == ["y"] and m.input_shapes == {"x": (2, 3, 10, 10)}
    assert "steps=1" in repr(m)
    with pytest.raises(ValueError, match="missing input"):
        m.run({})
    with pytest.raises(ValueError, match="unknown input"):
        m.run({"x": x, "q": x})
    with pytest.raises(ValueError, match="4-D"):
        m(x[0])
    with pytest.raises(TypeError, match="path, bytes"):
        ponnx.load(42)


def test_load_from_path_file_and_proto(tmp_path):
    model = conv_bn_relu_model()
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    x = rand(2, 3, 10, 10)
    expected = ponnx.load(model)(x)
    for source in (str(path), path, open(path, "rb")):
        np.testing.assert_array_equal(ponnx.load(source)(x), expected)


def test_several_outputs_come_back_as_a_list():
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Neg", ["x"], ["b"])]
    model = chain(nodes, {}, [2, 3], outputs=("a", "b"))
    a, b = ponnx.load(model)(rand(2, 3))
    np.testing.assert_array_equal(a, np.maximum(rand(2, 3), 0))
    np.testing.assert_array_equal(b, -rand(2, 3))
    assert list(ponnx.load(model).run({"x": rand(2, 3)}, outputs=["b"])) == ["b"]


# ---------------------------------------------------------------------------------------
# Errors at load time, naming the node
# ---------------------------------------------------------------------------------------

def test_unsupported_operator_is_named_at_load_time():
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Resize", ["a"], ["y"], name="upsample1")]
    with pytest.raises(ponnx.UnsupportedError, match=r"node 1 'upsample1' \(Resize\).*operator 'Resize' is not supported"):
        ponnx.load(chain(nodes, {}, [1, 1, 2, 2]))


def test_unsupported_attribute_is_named_at_load_time():
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv7", frobnicate=3)]
    with pytest.raises(ponnx.UnsupportedError, match=r"conv7.*\(Conv\).*attribute 'frobnicate'"):
        ponnx.load(chain(nodes, {"w": rand(2, 1, 3, 3)}, [1, 1, 5, 5]))


@pytest.mark.parametrize("node, inits, match", [
    (helper.make_node("Conv", ["x", "w"], ["y"]), {"w": rand(2, 1, 3, 3, 3)}, r"node 0 \(Conv\): 3-D windows"),
    (helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], auto_pad="SAME"), {}, "auto_pad='SAME'"),
    (helper.make_node("Pad", ["x", "p"], ["y"], mode="mirror"), {"p": np.zeros(8, np.int64)}, "mode='mirror'"),
    (helper.make_node("BatchNormalization", ["x", "w", "w", "w", "w"], ["y"], training_mode=1),
     {"w": np.ones(1, np.float32)}, "training_mode"),
    (helper.make_node("Relu", ["x"], ["y"], domain="com.example"), {}, "domain 'com.example'"),
    (helper.make_node("MaxPool", ["x"], ["y", "i", "extra"], kernel_shape=[2, 2]), {}, "only 2 output"),
])
def test_unsupported_values_are_named_at_load_time(node, inits, match):
    with pytest.raises(ponnx.UnsupportedError, match=match):
        ponnx.load(chain([node], inits, [1, 1, 5, 5]))


def test_the_current_opset_loads():
    opset = onnx.defs.onnx_opset_version()
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Unsqueeze", ["r", "a"], ["u"]), helper.make_node("Squeeze", ["u", "a"], ["y"])]
    w, x = rand(2, 1, 3, 3), rand(1, 1, 5, 5)
    model = chain(nodes, {"w": w, "a": np.array([0], np.int64)}, [1, 1, 5, 5], opset=opset)
    m = ponnx.load(model)
    assert m.opset == opset
    import pyconv.functional as F
    close(m(x), np.maximum(F.conv2d(x, w, padding=1), 0))


def test_old_opsets_are_refused():
    model = chain([helper.make_node("Relu", ["x"], ["y"])], {}, [1], opset=6)
    with pytest.raises(ponnx.UnsupportedError, match="opset 6"):
        ponnx.load(model)


def test_missing_onnx_package_gives_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"pyconv\[onnx\]"):
        ponnx.load(b"")


def test_runtime_errors_name_the_node():
    nodes = [helper.make_node("Add", ["x", "x"], ["a"]), helper.make_node("Reshape", ["a", "s"], ["y"], name="r")]
    m = ponnx.load(chain(nodes, {"s": np.array([7], np.int64)}, ["n"]))
    with pytest.raises(ValueError) as info:
        m(np.zeros(3, np.float32))
    assert "node 1 'r' (Reshape)" in "".join(getattr(info.value, "__notes__", [])) + str(info.value)


# ---------------------------------------------------------------------------------------
# Round trip from PyTorch: torch.nn twins of pyconv.models, exported, against torch
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, shape, opset", [
    ("lenet5", (2, 1, 32, 32), 9),
    ("lenet5", (2, 1, 32, 32), 17),
    ("resnet18", (2, 3, 64, 64), 13),
    ("resnet18", (1, 3, 64, 64), 9),
    ("mobilenet_v2", (1, 3, 32, 32), 10),   # ReLU6 as Clip with attributes
    ("mobilenet_v2", (2, 3, 64, 64), 17),   # ReLU6 as Clip with inputs
    pytest.param("vgg16", (1, 3, 32, 32), 13, marks=pytest.mark.slow),   # 138M weights: ~10 s
])
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_pytorch_export_round_trip(name, shape, opset):
    torch = pytest.importorskip("torch")
    from test_models import torch_models
    from test_nn import randomize_batch_norms

    torch.manual_seed(0)
    theirs = randomize_batch_norms(torch, torch_models(torch)[name]()).eval()
    if name == "vgg16":
        # At 32x32 the features are 1x1, and AdaptiveAvgPool2d((7, 7)) of a 1x1 map is a
        # broadcast: the exporter cannot write an adaptive pool whose output size does not
        # divide the input, so the same computation is written as expand().
        class Broadcast7(torch.nn.Module):
            def forward(self, x):
                return x.expand(-1, -1, 7, 7)
        theirs.avgpool = Broadcast7()
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    buffer = io.BytesIO()
    try:
        with torch.no_grad():
            torch.onnx.export(theirs, (torch.from_numpy(x),), buffer, dynamo=False, opset_version=opset,
                              input_names=["image"], output_names=["logits"],
                              dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    except Exception as exc:  # pragma: no cover - depends on the installed exporter
        pytest.skip(f"torch.onnx.export cannot export {name} at opset {opset} here: {exc}")
    with torch.no_grad():
        expected = theirs(torch.from_numpy(x)).numpy()
    model = ponnx.load(buffer.getvalue())
    assert model.inputs == ["image"] and model.outputs == ["logits"]
    y = model(x)
    assert expected.std() > 0
    close(y, expected)
    if shape[0] == 1:   # the exported graph keeps the batch dimension dynamic
        x4 = np.concatenate([x] * 3)
        close(model(x4), np.concatenate([expected] * 3))
