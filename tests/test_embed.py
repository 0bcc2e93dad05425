"""The C API (pyconv/capi.pxd) from another Cython extension: examples/embed is built
against the installed pyconv and its results must equal pyconv.functional's bitwise
(the same kernels run both ways).

Skipped only where no C compiler (or Cython) is available, e.g. the wheel check's
compiler-free venv.
"""

import os
import shutil
import subprocess
import sys
import sysconfig

import numpy as np
import pytest

import pyconv
import pyconv.functional as F
from pyconv import _conv, _dispatch
from conftest import subprocess_env

EXAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "examples", "embed")
DTYPES = (np.float32, np.float64)


def _have_compiler():
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(os.environ.get("CC", cc).split()[0]) is not None


@pytest.fixture(scope="module")
def embed(tmp_path_factory):
    if not _have_compiler():
        pytest.skip("no C compiler")
    pytest.importorskip("Cython")
    if not os.path.isdir(EXAMPLE):
        pytest.skip("examples/embed is not next to the tests (installed test copy)")
    work = tmp_path_factory.mktemp("embed")
    for name in ("embed_example.pyx", "setup.py"):
        shutil.copy(os.path.join(EXAMPLE, name), work)
    proc = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=work,
                          capture_output=True, text=True, env=subprocess_env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    sys.path.insert(0, str(work))
    try:
        import embed_example
    finally:
        sys.path.remove(str(work))
    # The C API binds the GEMM kernel of the set chosen at import; compare with the same.
    previous = _dispatch.use(_conv.c_api_kernel_set())
    yield embed_example
    _dispatch.use(previous)


def _rand(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_relu_maxpool_block(embed, rng, dtype):
    x, w, b = _rand(rng, (2, 3, 11, 13), dtype), _rand(rng, (16, 3, 3, 3), dtype), _rand(rng, 16, dtype)
    pooled, idx = embed.conv_relu_maxpool(x, w, b, 1, 2)
    ref, ref_idx = F.max_pool2d(np.maximum(F.conv2d(x, w, b, padding=1), 0), 2, return_indices=True)
    np.testing.assert_array_equal(pooled, ref)
    np.testing.assert_array_equal(idx, ref_idx)


# (c_in, c_out, groups, kernel, stride, pads, dilation, bias): GEMM (>= 8 channels per
# group) and direct paths, odd sizes, asymmetric pads.
CONV_CASES = [
    (3, 16, 1, (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), True),
    (4, 10, 2, (3, 2), (2, 1), ((0, 2), (1, 0)), (1, 2), False),
    (6, 6, 6, (3, 3), (1, 2), ((1, 1), (2, 1)), (2, 1), True),     # depthwise: direct
    (5, 7, 1, (1, 5), (1, 3), ((0, 0), (2, 2)), (1, 1), True),     # 7 channels: direct
    (8, 8, 8, (3, 3), (2, 2), ((1, 1), (1, 1)), (1, 1), True),     # depthwise 3x3 stride 2
    (4, 12, 4, (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), False),   # channel multiplier 3
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d(embed, rng, dtype, case):
    c_in, c_out, groups, k, stride, pads, dilation, has_bias = case
    x = _rand(rng, (2, c_in, 9, 14), dtype)
    w = _rand(rng, (c_out, c_in // groups) + k, dtype)
    b = _rand(rng, c_out, dtype) if has_bias else None
    ref = F.conv2d(x, w, b, stride, pads, dilation, groups)
    for threads in (0, 1, 3):
        y = np.full_like(ref, np.nan)
        embed.conv2d_nchw(x, w, y, stride, (pads[0][0], pads[1][0]), dilation, groups, b, threads)
        np.testing.assert_array_equal(y, ref)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv1d_as_height_one(embed, rng, dtype):
    x, w = _rand(rng, (3, 4, 29), dtype), _rand(rng, (9, 4, 4), dtype)
    ref = F.conv1d(x, w, None, 2, 3, 2)
    y = np.empty((3, 9, 1, ref.shape[-1]), dtype)
    embed.conv2d_nchw(x[:, :, None], w[:, :, None], y, (1, 2), (0, 3), (1, 2), 1)
    np.testing.assert_array_equal(y[:, :, 0], ref)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c_out_g, groups, stride, padding, output_padding, dilation", [
    (3, 1, (2, 2), (1, 0), (1, 0), (1, 1)),
    (2, 2, (3, 1), (0, 2), (2, 0), (1, 2)),
    (9, 1, (1, 2), (1, 1), (0, 1), (2, 1)),
])
def test_conv_transpose2d(embed, rng, dtype, c_out_g, groups, stride, padding, output_padding,
                          dilation):
    x = _rand(rng, (2, 4, 5, 7), dtype)
    w = _rand(rng, (4, c_out_g, 3, 2), dtype)
    ref = F.conv_transpose2d(x, w, None, stride, padding, output_padding, groups, dilation,
                             algorithm="direct")
    y = np.full_like(ref, np.nan)
    embed.conv_transpose2d_nchw(x, w, y, stride, padding, dilation, groups)
    np.testing.assert_array_equal(y, ref)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel, stride, padding, dilation, ceil_mode", [
    ((3, 3), (2, 2), (1, 1), (1, 1), False),
    ((2, 3), (1, 2), (0, 1), (2, 1), True),
    ((3, 2), (3, 3), (1, 0), (1, 1), True),
])
def test_max_pool2d(embed, rng, dtype, kernel, stride, padding, dilation, ceil_mode):
    x = _rand(rng, (2, 3, 10, 11), dtype)
    x[0, 0, 2, 3] = np.nan
    ref, ref_idx = F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode, True)
    planes = x.reshape(-1, 10, 11)
    for indices in (np.empty(ref.shape, np.int64).reshape(-1, *ref.shape[2:]), None):
        y = np.empty(ref.shape, dtype).reshape(-1, *ref.shape[2:])
        embed.max_pool2d_planes(planes, y, indices, kernel, stride, padding, dilation)
        np.testing.assert_array_equal(y.reshape(ref.shape), ref)
        if indices is not None:
            np.testing.assert_array_equal(indices.reshape(ref.shape), ref_idx)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pads, count_include_pad, divisor_override, ceil_mode", [
    (((1, 1), (1, 1)), True, None, False),
    (((0, 1), (1, 0)), False, None, True),
    (((1, 1), (0, 0)), True, 5, True),
])
def test_avg_pool2d(embed, rng, dtype, pads, count_include_pad, divisor_override, ceil_mode):
    x = _rand(rng, (2, 3, 9, 8), dtype)
    ref = F.avg_pool2d(x, 3, 2, pads, ceil_mode, count_include_pad, divisor_override)
    y = np.empty(ref.shape, dtype).reshape(-1, *ref.shape[2:])
    # Leading and trailing pads as given; a ceil-mode overhang past them is never counted.
    embed.avg_pool2d_planes(x.reshape(-1, 9, 8), y, (3, 3), (2, 2), pads, (1, 1),
                            count_include_pad, divisor_override or 0)
    np.testing.assert_array_equal(y.reshape(ref.shape), ref)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("is_max", [False, True])
def test_adaptive_pool2d(embed, rng, dtype, is_max):
    x = _rand(rng, (2, 3, 10, 7), dtype)
    if is_max:
        ref, ref_idx = F.adaptive_max_pool2d(x, (4, 3), return_indices=True)
    else:
        ref = F.adaptive_avg_pool2d(x, (4, 3))
    y = np.empty((6, 4, 3), dtype)
    idx = np.empty((6, 4, 3), np.int64) if is_max else None
    embed.adaptive_pool2d_planes(x.reshape(6, 10, 7), y, is_max, idx)
    np.testing.assert_array_equal(y.reshape(ref.shape), ref)
    if is_max:
        np.testing.assert_array_equal(idx.reshape(ref.shape), ref_idx)


def test_invalid_arguments_return_einval(embed):
    assert embed.status_of_invalid_call() == -2


def test_get_include_holds_the_api():
    include = pyconv.get_include()
    for name in ("capi.pxd", "_conv.pxd", "_pool.pxd"):
        assert os.path.isfile(os.path.join(include, name)), name
