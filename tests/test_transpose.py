"""The tiled matrix transpose (_conv.transpose, functional._transposed) behind the
GEMM formulations' layout changes: col2im's transposed weights and input pixels,
linear's input rows and output."""
import numpy as np
import pytest

import pyconv.functional as F
from pyconv import _conv
from conftest import DTYPES, random_array, same_for_any_threads

# Sizes on both sides of the 32 x 32 tile, one-element edges, a single row or column.
SHAPES = [(1, 1, 1), (1, 31, 33), (3, 32, 32), (2, 65, 7), (1, 1, 100), (5, 100, 1),
          (2, 33, 97), (1, 128, 1024)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_numpy(rng, dtype, shape):
    a = random_array(rng, shape, dtype)
    before = a.copy()
    out = np.full((shape[0], shape[2], shape[1]), np.nan, dtype)
    _conv.transpose(a, out, 2)                          # the kernel, whatever the size
    np.testing.assert_array_equal(out, a.transpose(0, 2, 1))
    y = F._transposed(a)                                # NumPy below _TRANSPOSE_MIN elements
    assert y.shape == out.shape and y.dtype == dtype and y.flags.c_contiguous
    np.testing.assert_array_equal(y, out)
    np.testing.assert_array_equal(a, before)           # the input is never modified


@pytest.mark.parametrize("dtype", DTYPES)
def test_threads_bitwise_into_out(rng, dtype):
    a = random_array(rng, (3, 70, 45), dtype)
    a[0, 3, 4] = np.nan
    def run(t):
        out = np.full((3, 45, 70), 7.0, dtype)
        _conv.transpose(a, out, t)
        return out
    y = same_for_any_threads(run)
    np.testing.assert_array_equal(y, a.transpose(0, 2, 1))   # NaN where NaN


@pytest.mark.parametrize("shape", [(1, 3, 5), (2, 128, 64)])    # NumPy's side, the kernel's
def test_into_out_on_both_sides_of_the_size_rule(rng, shape):
    a = random_array(rng, shape, np.float32)
    out = np.empty((shape[0], shape[2], shape[1]), np.float32)
    assert F._transposed(a, out) is out
    np.testing.assert_array_equal(out, a.transpose(0, 2, 1))


def test_empty():
    for shape in [(0, 4, 5), (2, 0, 5), (2, 4, 0)]:
        a = np.zeros(shape, np.float32)
        assert F._transposed(a).shape == (shape[0], shape[2], shape[1])


def test_bad_arguments():
    a = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match=r"out must have shape \(2, 4, 3\), got \(2, 3, 4\)"):
        _conv.transpose(a, np.zeros((2, 3, 4), np.float32), 1)
    with pytest.raises(ValueError, match="dtype mismatch"):   # a and out: one dtype
        _conv.transpose(a, np.zeros((2, 4, 3), np.float64), 1)
    with pytest.raises(ValueError):                    # a strided view is not C-contiguous
        _conv.transpose(np.zeros((2, 3, 8), np.float32)[:, :, ::2], np.zeros((2, 4, 3), np.float32), 1)
