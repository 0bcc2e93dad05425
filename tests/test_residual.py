"""The residual join clamp(a + b) (_conv.add_clamp, functional._add_clamp): ResNet blocks
and the ONNX Add / Sum (+ ReLU or Clip) nodes run on it. Against NumPy's add and clip."""
import numpy as np
import pytest

import pyconv.functional as F
from pyconv import _conv
from conftest import DTYPES, random_array, same_for_any_threads

CLAMPS = [F._NO_CLAMP, (0.0, np.inf), (0.0, 6.0), (-0.5, 0.25)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5, 11), (2, 3, 97, 131), (16384 + 13,)])
@pytest.mark.parametrize("clamp", CLAMPS)
def test_matches_numpy(rng, dtype, shape, clamp):
    a = random_array(rng, shape, dtype)
    b = random_array(rng, shape, dtype)
    a0, b0 = a.copy(), b.copy()
    y = F._add_clamp(a, b, clamp)
    assert y.dtype == dtype and y.shape == shape
    # One rounding of the sum, then exact comparisons: bitwise NumPy's result.
    np.testing.assert_array_equal(y, np.clip(a + b, *clamp))
    np.testing.assert_array_equal(a, a0)   # inputs are never modified
    np.testing.assert_array_equal(b, b0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_in_place_and_nan(rng, dtype):
    a = random_array(rng, (2, 8, 33, 35), dtype)
    b = random_array(rng, a.shape, dtype)
    a[0, 1, 2, 3] = np.nan
    b[1, 7, 32, 34] = np.nan
    b[1, 0, 0, 0] = np.inf
    expected = np.maximum(a + b, 0)   # NaN passes, as torch.relu
    out = a.copy()
    assert F._add_clamp(out, b, out=out) is out
    np.testing.assert_array_equal(out, expected)
    assert np.isnan(out[0, 1, 2, 3]) and np.isnan(out[1, 7, 32, 34]) and out[1, 0, 0, 0] == np.inf


def test_threads_bitwise(rng):
    a = random_array(rng, (3, 64, 57, 57), np.float32)
    b = random_array(rng, a.shape, np.float32)
    same_for_any_threads(lambda t: F._add_clamp(a, b, (0.0, 6.0)))


def test_other_inputs_take_numpy(rng):
    a = random_array(rng, (4, 5), np.float32)
    row = random_array(rng, (5,), np.float32)
    np.testing.assert_array_equal(F._add_clamp(a, row), np.maximum(a + row, 0))       # broadcast
    np.testing.assert_array_equal(F._add_clamp(a.T, a.T), np.maximum(a.T + a.T, 0))   # strided
    ints = np.arange(6).reshape(2, 3) - 3
    np.testing.assert_array_equal(F._add_clamp(ints, ints), np.maximum(2 * ints, 0))
    assert F._add_clamp(a, a.astype(np.float64)).dtype == np.float64                  # promotes
    assert F._add_clamp(np.float32(-2), np.float32(1)) == 0


def test_kernel_checks_sizes():
    with pytest.raises(ValueError, match="same size"):
        _conv.add_clamp(np.zeros(3, np.float32), np.zeros(4, np.float32), np.zeros(3, np.float32),
                        0.0, 1.0, 1)


@pytest.mark.parametrize("op, act", [("Add", "Relu"), ("Sum", "Relu"), ("Add", "Clip"), ("Sum", None)])
def test_onnx_join_with_fused_activation(rng, op, act):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    import pyconv.onnx as ponnx

    x = random_array(rng, (2, 3, 9, 7), np.float32)
    r = random_array(rng, x.shape, np.float32)
    nodes = [helper.make_node(op, ["x", "r"], ["s" if act else "y"])]
    if act == "Relu":
        nodes.append(helper.make_node("Relu", ["s"], ["y"]))
    elif act == "Clip":
        nodes.append(helper.make_node("Clip", ["s", "lo", "hi"], ["y"]))
    inits = [numpy_helper.from_array(r, "r"), numpy_helper.from_array(np.float32(-0.25), "lo"),
             numpy_helper.from_array(np.float32(0.5), "hi")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    loaded = ponnx.load(model)
    assert loaded.steps == 1   # the activation is fused into the join
    clamp = {"Relu": (0, np.inf), "Clip": (-0.25, 0.5), None: (-np.inf, np.inf)}[act]
    np.testing.assert_array_equal(loaded(x), np.clip(x + r, *clamp))
