"""The course notes' worked example (../shared/DOMAIN.md): a 5x5 input, a 3x3 kernel."""
import numpy as np
import pytest

import pyconv.functional as F

X = [[3, 3, 2, 1, 0], [0, 0, 1, 3, 1], [3, 1, 2, 2, 3], [2, 0, 0, 2, 2], [2, 0, 0, 0, 1]]
W = [[0, 1, 2], [2, 2, 0], [0, 1, 2]]
EXPECTED = [[12, 12, 17], [10, 17, 19], [9, 6, 14]]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_worked_example(dtype):
    x = np.array(X, dtype=dtype)[None, None]
    w = np.array(W, dtype=dtype)[None, None]
    y = F.conv2d(x, w)
    assert y.dtype == (np.float32 if dtype == np.float32 else np.float64)
    np.testing.assert_array_equal(y[0, 0], EXPECTED)


def test_neuron_sees_its_receptive_field():
    x = np.array(X, dtype=np.float64)
    w = np.array(W, dtype=np.float64)
    y = F.conv2d(x[None], w[None, None])[0]
    for i in range(3):
        for j in range(3):
            assert y[i, j] == np.sum(x[i:i + 3, j:j + 3] * w)
