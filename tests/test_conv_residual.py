"""A convolution joined with a residual: clamp(conv(x) + r) in one call -- ONNX's
Conv -> Add (-> Relu), ResNet's block ends (pyconv/onnx.py _fold_residual).

The joined call must give, bit for bit, what the two steps give: the convolution without
its clamp, then the residual join _add_clamp(y, r, clamp) (itself checked against NumPy in
test_residual.py). The GEMM kernel adds the residual itself, unit by unit
(conv2d_igemm's residual); the other kernels and the shapes it cannot take fall back to
the two steps.
"""
import numpy as np
import pytest

import pyconv.functional as F
from pyconv import _conv
from conftest import same_for_any_threads
from test_kernel_sets import CASES

CLAMPS = [F._NO_CLAMP, (0.0, np.inf), (-0.5, 0.25)]


def layer(case, dtype, seed=0):
    n, c_in, h, w, c_out, kh, kw, stride, padding, dilation, groups = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c_in, h, w)).astype(dtype)
    weight = rng.standard_normal((c_out, c_in // groups, kh, kw)).astype(dtype)
    bias = rng.standard_normal(c_out).astype(dtype)
    y = F.conv2d(x, weight, bias, stride, padding, dilation, groups, algorithm="direct")
    residual = rng.standard_normal(y.shape).astype(dtype)
    return x, weight, bias, residual, (stride, padding, dilation, groups)


def two_steps(x, weight, bias, residual, conv_args, clamp, algorithm="gemm"):
    stride, padding, dilation, groups = conv_args
    y = F._conv("conv2d", 2, x, weight, bias, stride, padding, dilation, groups, "zeros",
                None, False, F._NO_CLAMP, algorithm)
    return F._add_clamp(y, residual, clamp)


def kernel_args(conv_args):
    """conv2d_igemm's (sh, sw, ph, pw, dh, dw, groups) for a CASES layer (the padding
    before the input; after it, what the output's shape implies)."""
    stride, padding, dilation, groups = conv_args

    def pair(v):
        return (v, v) if isinstance(v, int) else tuple(v)
    (sh, sw), (dh, dw) = pair(stride), pair(dilation)
    ph, pw = (p if isinstance(p, int) else p[0] for p in pair(padding))
    return (sh, sw, ph, pw, dh, dw, groups)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_gemm_kernel_joins_the_residual_bitwise(kernel_set, case, dtype):
    # Every edge of the blocking, the folded batches and the tail kernel included.
    x, weight, bias, residual, conv_args = layer(case, dtype)
    r0 = residual.copy()
    for clamp in CLAMPS:
        expected = two_steps(x, weight, bias, residual, conv_args, clamp)
        joined = np.full_like(expected, 1234.5)
        kernel_set.conv2d_igemm(x, weight, bias, joined, *kernel_args(conv_args),
                                clamp[0], clamp[1], 2, residual=residual)
        np.testing.assert_array_equal(joined, expected)
    np.testing.assert_array_equal(residual, r0)   # read only


@pytest.mark.parametrize("case", [c for c in CASES if c[0] > 1][:6])
def test_gemm_join_bitwise_for_any_thread_count(kernel_set, case):
    x, weight, bias, residual, conv_args = layer(case, np.float32, seed=3)
    args = kernel_args(conv_args)

    def call(t):
        y = np.empty_like(residual)
        kernel_set.conv2d_igemm(x, weight, bias, y, *args, 0.0, np.inf, t, residual=residual)
        return y
    same_for_any_threads(call, threads=(1, 2, 3, 5))


def test_nan_and_infinity_pass_as_in_the_two_steps(kernel_set):
    x, weight, bias, residual, conv_args = layer(CASES[0], np.float32)
    x[0, 1, 4, 5] = np.nan
    residual[0, 3, 2, 2] = np.nan
    residual[0, 4, 0, 0] = -np.inf
    y = F._conv("conv2d", 2, x, weight, bias, *conv_args, "zeros", None, False, (0.0, 6.0),
                "gemm", None, residual)
    expected = two_steps(x, weight, bias, residual, conv_args, (0.0, 6.0))
    assert np.isnan(expected).sum() > 1 and expected[0, 4, 0, 0] == 0.0
    np.testing.assert_array_equal(y, expected)


def test_kernel_argument_errors(kernel_set):
    x, weight, bias, residual, conv_args = layer(CASES[1], np.float32)
    args = kernel_args(conv_args)
    y = np.empty_like(residual)
    with pytest.raises(ValueError, match="residual must have y's shape"):
        kernel_set.conv2d_igemm(x, weight, bias, y, *args, -np.inf, np.inf, 1,
                                residual=residual[:, :, :-1].copy())
    with pytest.raises(ValueError, match="residual must not be y"):
        kernel_set.conv2d_igemm(x, weight, bias, y, *args, -np.inf, np.inf, 1, residual=y)


# Functional level: every algorithm, the kept call (plan), and the fallbacks.
ALGORITHM_CASES = [  # (algorithm, case, read-only weights)
    ("gemm", (2, 16, 9, 9, 24, 1, 1, 1, 0, 1, 1), False),
    ("direct", (1, 3, 11, 10, 4, 3, 3, 2, 1, 1, 1), False),
    ("winograd", (1, 32, 14, 14, 40, 3, 3, 1, 1, 1, 1), True),
    ("winograd2x2", (2, 20, 9, 11, 24, 3, 3, 1, 1, 1, 1), False),
    ("auto", (1, 64, 7, 7, 256, 1, 1, 1, 0, 1, 1), True),
]


@pytest.mark.parametrize("algorithm, case, frozen", ALGORITHM_CASES)
@pytest.mark.parametrize("clamp", CLAMPS)
def test_every_algorithm_and_the_kept_call(algorithm, case, frozen, clamp):
    x, weight, bias, residual, conv_args = layer(case, np.float32, seed=5)
    weight.flags.writeable = not frozen
    expected = two_steps(x, weight, bias, residual, conv_args, clamp, algorithm)
    plan = F._ConvPlan()
    for _ in range(3):   # the first call keeps its checked form; the next ones use it
        y = F._conv("conv2d", 2, x, weight, bias, *conv_args, "zeros", None, False, clamp,
                    algorithm, plan, residual)
        np.testing.assert_array_equal(y, expected)
    join = plan.state[-1]
    assert join == ("fused" if algorithm in ("gemm", "auto") else clamp)


def test_a_residual_the_kernels_cannot_take_falls_back_to_numpy_rules():
    x, weight, bias, residual, conv_args = layer(ALGORITHM_CASES[0][1], np.float32)
    for other in (residual[:1, :, :1, :1].copy(),          # broadcast
                  residual.astype(np.float64),              # promotes the result
                  np.asfortranarray(residual),              # not C-contiguous
                  residual.tolist()):                       # not an array
        y = F._conv("conv2d", 2, x, weight, bias, *conv_args, "zeros", None, False,
                    (0.0, np.inf), "gemm", None, other)
        conv = two_steps(x, weight, bias, np.zeros_like(residual), conv_args, F._NO_CLAMP)
        expected = np.maximum(conv + np.asarray(other), 0)
        assert y.dtype == expected.dtype
        np.testing.assert_array_equal(y, expected)


def test_join_matches_add_clamp_kernel_directly():
    # The kernel's join is _conv.add_clamp's arithmetic: one rounding of conv + r.
    x, weight, bias, residual, conv_args = layer(CASES[2], np.float32, seed=9)
    y = F._conv("conv2d", 2, x, weight, bias, *conv_args, "zeros", None, False,
                (0.0, np.inf), "gemm", None, residual)
    conv = F.conv2d(x, weight, bias, *conv_args, algorithm="gemm")
    expected = np.empty_like(conv)
    _conv.add_clamp(conv.reshape(-1), residual.reshape(-1), expected.reshape(-1), 0.0, np.inf, 1)
    np.testing.assert_array_equal(y, expected)
