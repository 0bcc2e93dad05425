"""functional.linear (and the nn.Linear / ONNX Gemm and MatMul paths on it): the GEMM
kernel with the input's rows as pixels, against NumPy's matmul."""
import numpy as np
import pytest

import pyconv.functional as F
from conftest import DTYPES, assert_close, random_array, same_for_any_threads


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, out_f", [((3, 7), 5), ((2, 4, 9), 1), ((11,), 3), ((1, 300), 257),
                                          ((37, 33), 29), ((2, 3, 4, 5), 6)])
def test_matches_numpy(rng, dtype, shape, out_f):
    x = random_array(rng, shape, dtype)
    w = random_array(rng, (out_f, shape[-1]), dtype)
    b = random_array(rng, (out_f,), dtype)
    x0, w0 = x.copy(), w.copy()
    y = F.linear(x, w, b)
    assert y.shape == shape[:-1] + (out_f,) and y.dtype == dtype
    assert_close(y, x.astype(np.float64) @ w.T.astype(np.float64) + b)
    assert_close(F.linear(x, w), x.astype(np.float64) @ w.T.astype(np.float64))
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(w, w0)


def test_empty_and_degenerate(rng):
    w = random_array(rng, (3, 5))
    b = random_array(rng, (3,))
    assert F.linear(np.zeros((0, 5)), w, b).shape == (0, 3)
    np.testing.assert_array_equal(F.linear(np.zeros((2, 0)), np.zeros((3, 0)), b), np.tile(b, (2, 1)))


def test_dtypes_layouts_and_out(rng):
    x = random_array(rng, (6, 4))
    w = random_array(rng, (5, 4))
    expected = x @ w.T
    assert_close(F.linear(np.asfortranarray(x), w[:, ::-1][:, ::-1]), expected)
    assert F.linear(x.astype(np.int32), w.astype(np.int64)).dtype == np.float64
    assert F.linear(x.astype(np.float16), w.astype(np.float16)).dtype == np.float16
    out = np.empty((6, 5))
    assert F.linear(x, w, out=out) is out
    assert_close(out, expected)


@pytest.mark.parametrize("kwargs, match", [
    (dict(x=(3, 4), w=(5, 3)), "last dimension"),
    (dict(x=(3, 4), w=(5, 4, 1)), "weight"),
    (dict(x=(3, 4), w=(5, 4), b=(4,)), "bias"),
    (dict(x=(), w=(5, 4)), "at least 1 dimension"),
])
def test_errors_name_the_argument(kwargs, match):
    b = None if "b" not in kwargs else np.zeros(kwargs["b"])
    with pytest.raises(ValueError, match=match):
        F.linear(np.zeros(kwargs["x"]), np.zeros(kwargs["w"]), b)


def test_threads_bitwise_and_clamp(rng):
    x = random_array(rng, (9, 300), np.float32)
    w = random_array(rng, (130, 300), np.float32)
    y = same_for_any_threads(lambda t: F.linear(x, w))
    clamped = F._linear("linear", x, w, None, (0.0, 6.0), None)
    np.testing.assert_array_equal(clamped, np.clip(y, 0.0, 6.0))
    x[4, 7] = np.nan
    y = F.linear(x, w)
    assert np.isnan(y[4]).all() and not np.isnan(np.delete(y, 4, axis=0)).any()


def test_matches_torch(rng):
    torch = pytest.importorskip("torch")
    x = random_array(rng, (4, 3, 50), np.float32)
    w = random_array(rng, (20, 50), np.float32)
    b = random_array(rng, (20,), np.float32)
    expected = torch.nn.functional.linear(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b))
    assert_close(F.linear(x, w, b), expected.numpy())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 8, 9])
@pytest.mark.parametrize("in_f", [1, 7, 16, 17, 33, 1000])
def test_few_rows_matrix_vector_path(rng, dtype, rows, in_f):
    """Up to GEMV_MAX_ROWS (8) rows take the matrix-vector kernel (rows in groups of 4,
    2 vectors a step, a scalar tail); 9 the GEMM kernel. Both against float64."""
    x = random_array(rng, (rows, in_f), dtype)
    w = random_array(rng, (37, in_f), dtype)
    b = random_array(rng, (37,), dtype)
    expected = x.astype(np.float64) @ w.T.astype(np.float64) + b
    assert_close(F.linear(x, w, b), expected)
    assert_close(F._linear("linear", x, w, b, (0.0, 0.5), None), np.clip(expected, 0.0, 0.5))


def test_matrix_vector_threads_nan_and_out(rng):
    from pyconv import _dispatch
    assert _dispatch.kernels.GEMV_MAX_ROWS == 8
    x = random_array(rng, (3, 2500), np.float32)
    w = random_array(rng, (1000, 2500), np.float32)   # 63 blocks of 16 outputs
    same_for_any_threads(lambda t: F.linear(x, w))
    x[1, 2499] = np.nan    # in the scalar tail
    w[5, 0] = np.nan
    y = F.linear(x, w)
    assert np.isnan(y[1]).all() and np.isnan(y[:, 5]).all()
    assert not np.isnan(np.delete(np.delete(y, 1, axis=0), 5, axis=1)).any()
    x[1, 2499] = 0.0
    w[5, 0] = 0.0
    out = np.full((3, 1000), -1.0, np.float32)
    assert F.linear(x, w, out=out) is out
    np.testing.assert_array_equal(out, F.linear(x, w))
