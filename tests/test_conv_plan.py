"""A convolution layer keeps its last checked call (functional._ConvPlan) and reuses it
for the next call with the same arguments. Whatever changes between calls -- the input's
shape, dtype or layout, the weight's values, object or freezing, the layer's
attributes, the thread count -- the result must be what a fresh functional call gives."""
import copy
import pickle

import numpy as np
import pytest

import pyconv
import pyconv.functional as F
import pyconv.nn as nn


def fresh(layer, x):
    """The layer's result from the functional API, without its plan."""
    return F._conv(layer._op, layer._nd, x, layer.weight, layer.bias, layer.stride,
                   layer.padding, layer.dilation, layer.groups, layer.padding_mode,
                   out=None, flip=False, clamp=layer._clamp())


def rand(*shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("kernel, channels, groups, size", [
    (1, 16, 1, 7),     # 1x1: the GEMM kernel
    (3, 64, 1, 12),    # 3x3 stride 1, 64 channels: Winograd once the weights are frozen
    (3, 12, 12, 9),    # depthwise: the direct kernel
])
def test_reused_call_matches_a_fresh_one(kernel, channels, groups, size):
    layer = nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=groups, rng=0)
    x = rand(2, channels, size, size)
    y1 = layer(x)
    assert layer._plan.state is not None                   # the call was kept
    np.testing.assert_array_equal(layer(x), y1)            # ... and reused
    np.testing.assert_array_equal(y1, fresh(layer, x))
    layer.weight.flags.writeable = False                   # frozen: 'auto' may pick Winograd
    np.testing.assert_array_equal(layer(x), fresh(layer, x))


def test_every_change_between_calls_is_seen():
    layer = nn.Conv2d(6, 8, 3, padding=1, rng=1)
    x = rand(1, 6, 10, 11)
    layer(x)
    cases = []
    cases.append(rand(3, 6, 10, 11, seed=1))                 # another batch size
    cases.append(rand(1, 6, 13, 9, seed=2))                  # another image size
    cases.append(rand(1, 6, 10, 11, seed=3, dtype=np.float64))  # another dtype
    cases.append(rand(1, 6, 11, 20, seed=4)[:, :, :, ::2])   # not contiguous
    for xi in cases:
        np.testing.assert_allclose(layer(xi), fresh(layer, xi), rtol=1e-6, atol=1e-6)
        assert layer(xi).dtype == xi.dtype
    layer(x)
    layer.weight[0] += 1.0                                   # weights changed in place
    np.testing.assert_array_equal(layer(x), fresh(layer, x))
    layer.bias[:] = 5.0                                      # so is the bias
    np.testing.assert_array_equal(layer(x), fresh(layer, x))
    layer.weight = rand(8, 6, 3, 3, seed=5)                  # a new weight array
    np.testing.assert_array_equal(layer(x), fresh(layer, x))
    layer.stride, layer.padding = (2, 1), (0, 1)             # other attributes
    assert layer(x).shape == (1, 8, 4, 11)
    np.testing.assert_array_equal(layer(x), fresh(layer, x))
    layer.clamp = (0.0, 6.0)                                 # a fused activation
    y = layer(x)
    assert y.min() >= 0 and y.max() <= 6
    np.testing.assert_array_equal(y, fresh(layer, x))


def test_same_bits_for_any_thread_count_through_the_plan():
    layer = nn.Conv2d(32, 48, 3, padding=1, rng=2)
    x = rand(2, 32, 15, 15)
    results = []
    for threads in (1, 2, 3):
        with pyconv.num_threads(threads):
            results.append(layer(x))
    for y in results[1:]:
        np.testing.assert_array_equal(y, results[0])


def test_copies_and_pickles_start_without_the_plan():
    layer = nn.Conv2d(4, 4, 3, rng=3)
    x = rand(1, 4, 8, 8)
    y = layer(x)
    for other in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        assert other._plan.state is None
        np.testing.assert_array_equal(other(x), y)
        other.weight[...] = 0                                # the copy's own weights
        np.testing.assert_array_equal(other(x), np.broadcast_to(other.bias[:, None, None], y.shape[1:])[None])
    np.testing.assert_array_equal(layer(x), y)


def test_a_fused_model_called_on_two_batch_sizes():
    import pyconv.models as models
    model = models.resnet18(num_classes=10, rng=0)
    fused = model.fuse()
    for batch in (1, 3, 1):
        x = rand(batch, 3, 32, 32, seed=batch)
        np.testing.assert_allclose(fused(x), model(x), rtol=0, atol=1e-4 * np.abs(model(x)).max())
