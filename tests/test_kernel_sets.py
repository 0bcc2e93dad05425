"""Every kernel set this CPU can run (avx512 / avx2 / generic), checked directly.

The implicit-GEMM kernels are the same source compiled per ISA; each set is forced in
turn and compared with the direct row kernel (an independent implementation, itself
tested against tests/reference.py) on shapes chosen to hit every edge of the blocking:
channel counts that are not multiples of MR, pixel counts not multiples of NR, more
than one K block (K > 256) and more than one pixel block (> 512 pixels per image),
and batches of small images (the folded GEMM: tiles that straddle two images).
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import pyconv
import pyconv.functional as F
from pyconv import _dispatch
from conftest import same_for_any_threads

SETS = _dispatch.supported()
TOL = {np.float32: 2e-5, np.float64: 1e-12}


# (n, c_in, h, w, c_out, kh, kw, stride, padding, dilation, groups)
CASES = [
    (1, 3, 17, 23, 13, 3, 3, 1, 1, 1, 1),       # edge panel (13 = 2*6 + 1), edge tile
    (2, 5, 9, 7, 8, 1, 1, 1, 0, 1, 1),           # 1x1, 63 pixels
    (1, 37, 11, 13, 29, 3, 3, 1, 1, 1, 1),       # K = 333 > 256: two K blocks
    (1, 4, 31, 29, 9, 3, 3, 1, 1, 1, 1),         # 899 pixels > 512: two pixel blocks
    (2, 6, 19, 21, 20, 5, 3, 2, (2, 1), (1, 2), 2),  # strides, dilation, groups
    (1, 3, 40, 41, 16, 7, 7, 2, 3, 1, 1),        # a ResNet-like stem
    (1, 64, 5, 5, 70, 3, 3, 1, 0, 1, 1),         # few pixels: channel blocks split over threads
    (3, 2, 1, 50, 11, 1, 5, 3, (0, 4), 1, 1),    # a 1-D-like row, stride 3
    # 1x1 stride 1 without padding: packed as one contiguous segment per channel
    (1, 300, 29, 31, 17, 1, 1, 1, 0, 1, 1),      # 899 pixels in two blocks, two K blocks
    (2, 12, 13, 11, 18, 1, 1, 1, 0, 1, 3),       # groups: a later group's channels
    (1, 5, 9, 10, 8, 1, 1, 1, 1, 1, 1),          # 1x1 with padding: row by row
    (2, 6, 5, 7, 9, 1, 1, 1, ((0, 3), (0, 0)), 1, 1),  # padding only after: rows past the input
    # Batches of small images: the folded GEMM, whose tiles run across images
    (12, 7, 5, 7, 19, 3, 3, 1, 1, 1, 1),         # 420 pixels: three pixel blocks, straddling tiles
    (3, 30, 4, 4, 33, 3, 3, 1, 1, 1, 1),         # two K blocks, edge panel
    (8, 3, 5, 5, 700, 3, 3, 1, 1, 1, 1),         # more channels than one staging block holds
    (4, 6, 3, 5, 10, 3, 3, 1, 1, 1, 2),          # groups
    (5, 4, 9, 9, 12, 3, 3, 2, 1, 1, 1),          # stride 2: 5x5 outputs
    (3, 8, 4, 6, 9, 1, 1, 1, 0, 1, 1),           # 24 pixels, whole tiles: not folded
]
# An image's last tile of fewer than one vector of pixels goes to the tail kernel
# (vectors along K): 7x7 = 49 and 14x14 = 196 pixels leave 1 and 4 for every tile width
# here; a whole vector left (28x28 = 784: 16 on AVX-512, 4 on the generic set) goes to
# the edge variant, VL - 1 (63 pixels: 15 on AVX-512, 3 on the generic set) to the tail.
TAIL_CASES = [
    (1, 300, 7, 7, 13, 1, 1, 1, 0, 1, 1),        # 1 pixel; two K blocks, K % VL != 0; edge panel
    (1, 37, 14, 14, 10, 3, 3, 1, 1, 1, 1),       # 4 pixels; K = 333
    (1, 19, 14, 14, 9, 3, 3, 2, 1, 1, 1),        # stride 2 to 7x7; one K block of 171
    (3, 10, 5, 5, 11, 3, 3, 1, 1, 1, 1),         # folded: the batch's last 3 of 75 pixels
    (2, 64, 7, 7, 40, 1, 1, 1, 0, 1, 2),         # groups: each group's tail
    # The tail rides with the last pixel block, beyond the others' width: 506 pixels =
    # 21 tiles + 2 (2 threads: blocks of 11 tiles, then 10 + tail); 1012 = 42 tiles + 4
    # (two NC-wide blocks, the last one a tile wider than NC with its tail).
    (1, 8, 23, 22, 6, 3, 3, 1, 1, 1, 1),
    (1, 3, 46, 23, 5, 3, 3, 1, (0, 1), 1, 1),
    (1, 20, 28, 28, 9, 1, 1, 1, 0, 1, 1),        # 784 pixels
    (1, 21, 7, 9, 10, 3, 3, 1, 1, 1, 1),         # 63 pixels
]
CASES += TAIL_CASES


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_gemm_matches_direct(kernel_set, case, dtype):
    n, c_in, h, w, c_out, kh, kw, stride, padding, dilation, groups = case
    rng = np.random.default_rng(abs(hash(case)) % 2**32)
    x = rng.standard_normal((n, c_in, h, w)).astype(dtype)
    weight = rng.standard_normal((c_out, c_in // groups, kh, kw)).astype(dtype)
    bias = rng.standard_normal(c_out).astype(dtype)
    args = (x, weight, bias, stride, padding, dilation, groups)
    fast = F.conv2d(*args, algorithm="gemm")
    direct = F.conv2d(*args, algorithm="direct")
    scale = np.sqrt(c_in // groups * kh * kw)
    np.testing.assert_allclose(fast, direct, rtol=TOL[dtype], atol=TOL[dtype] * scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_stride2_every_row_length(kernel_set, dtype):
    """Stride-2 packing copies every second input column (_ukernel.h's gather2z: whole
    vectors, then the last 1..16 columns masked on AVX-512): output rows of 1..40
    columns, with and without the padding that clips a row's first and last taps."""
    rng = np.random.default_rng(3)
    for w in range(1, 80, 2):
        for padding in (0, 1):
            if w + 2 * padding < 3:
                continue
            x = rng.standard_normal((1, 3, 5, w)).astype(dtype)
            weight = rng.standard_normal((8, 3, 3, 3)).astype(dtype)
            fast = F.conv2d(x, weight, None, 2, padding, algorithm="gemm")
            direct = F.conv2d(x, weight, None, 2, padding, algorithm="direct")
            np.testing.assert_allclose(fast, direct, rtol=TOL[dtype], atol=TOL[dtype] * 6,
                                       err_msg=f"width {w} padding {padding}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_stride2_padding_and_dilation(kernel_set, dtype):
    """Stride-2 packing reads each run in one call, its padded columns zeroed
    (_ukernel.h's gather2z): runs that start in the padding by 1..5 columns (the
    AVX-512 step's shifted permute), end in it, or lie in it whole (padding wider than
    the kernel), with dilated taps, on rows narrower and wider than two vectors."""
    rng = np.random.default_rng(4)
    for w in (1, 2, 5, 14, 15, 16, 17, 31, 32, 33, 34, 47, 65, 100):
        for kw, padding, dilation in ((1, 0, 1), (1, 2, 1), (3, 1, 2), (3, 3, 1), (5, 2, 1),
                                      (5, 5, 2), (7, 3, 1), (7, 4, 2)):
            if w + 2 * padding < dilation * (kw - 1) + 1:
                continue
            x = rng.standard_normal((1, 3, 4, w)).astype(dtype)
            weight = rng.standard_normal((8, 3, 1, kw)).astype(dtype)
            args = (x, weight, None, (1, 2), (0, padding), (1, dilation))
            fast = F.conv2d(*args, algorithm="gemm")
            direct = F.conv2d(*args, algorithm="direct")
            np.testing.assert_allclose(fast, direct, rtol=TOL[dtype], atol=TOL[dtype] * 4,
                                       err_msg=f"width {w} kernel {kw} padding {padding} "
                                               f"dilation {dilation}")


# 1x1 stride-1 unpadded layers, whose B may be packed tile-major (_igemm.pxi, _tiled_b)
# or read in place (_in_place_b: pixel blocks of whole tiles, here 96 and 192 pixels):
# tile-straddling pixel counts, the tail kernel, two K and two pixel blocks, groups,
# the folded GEMM (a tile across images), and channel counts around ROW_B_MAX_K = 64.
LAYOUT_CASES = [
    (1, 300, 29, 31, 17),   # 899 pixels: two pixel blocks; two K blocks (300 taps)
    (1, 130, 7, 7, 13),     # 49 pixels: folded, the tail's 1 pixel; an edge panel
    (5, 96, 3, 5, 10),      # folded: 75 pixels, tiles across images
    (2, 65, 13, 11, 9),     # 143 pixels, just above 64 taps
    (1, 64, 10, 10, 8),     # 64 taps: rows under the rule
    (1, 257, 14, 14, 20),   # 196 pixels, the tail's 4; 257 taps
    (3, 200, 8, 6, 12, 2),  # groups (100 taps each)
    (1, 40, 12, 8, 11),     # 96 pixels: whole tiles on every set, no tail
    (2, 300, 16, 12, 24, 2),  # 192 pixels, two groups of 150 taps
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", LAYOUT_CASES)
def test_gemm_b_layouts_bitwise(kernel_set, case, dtype):
    """Both packed-B layouts (tile-major and rows of the block), B read in place from
    the input (forced with set_b_layout) and the default rule give bitwise the same
    output -- the
    micro-kernel sums the same products in the same order -- for any thread count,
    and match the direct kernel."""
    n, c_in, h, w, c_out, *rest = case
    groups = rest[0] if rest else 1
    rng = np.random.default_rng(c_in * 1000 + h)
    x = rng.standard_normal((n, c_in, h, w)).astype(dtype)
    weight = rng.standard_normal((c_out, c_in // groups, 1, 1)).astype(dtype)
    bias = rng.standard_normal(c_out).astype(dtype)
    outputs = []
    for layout in (1, 2, 3, 0):
        previous = kernel_set.set_b_layout(layout)
        try:
            outputs.append(same_for_any_threads(
                lambda t: F.conv2d(x, weight, bias, groups=groups, algorithm="gemm")))
        finally:
            kernel_set.set_b_layout(previous)
    for other in outputs[1:]:
        np.testing.assert_array_equal(other, outputs[0])
    direct = F.conv2d(x, weight, bias, groups=groups, algorithm="direct")
    np.testing.assert_allclose(outputs[0], direct, rtol=TOL[dtype],
                               atol=TOL[dtype] * np.sqrt(c_in // groups))


def test_set_b_layout_checks_its_argument(kernel_set):
    with pytest.raises(ValueError, match="layout must be 0, 1, 2 or 3, got 4"):
        kernel_set.set_b_layout(4)


def test_fused_clamp_and_nan(kernel_set):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 7, 9, 10)).astype(np.float32)
    x[0, 3, 4, 5] = np.nan
    w = rng.standard_normal((10, 7, 3, 3)).astype(np.float32)
    b = rng.standard_normal(10).astype(np.float32)
    y = F._conv("conv2d", 2, x, w, b, 1, 1, 1, 1, "zeros", None, False,
                clamp=(0.0, 6.0), algorithm="gemm")
    ref = F.conv2d(x, w, b, 1, 1, algorithm="direct")
    nan = np.isnan(ref)
    assert nan.any() and np.array_equal(np.isnan(y), nan)  # NaN passes the clamp
    np.testing.assert_allclose(y[~nan], np.clip(ref[~nan], 0, 6), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 16, 30, 33, 24), (4, 8, 12, 12, 70)])
def test_threads_bitwise(kernel_set, shape):
    n, c, h, w, co = shape
    rng = np.random.default_rng(2)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    weight = rng.standard_normal((co, c, 3, 3)).astype(np.float32)
    same_for_any_threads(lambda t: F.conv2d(x, weight, padding=1, algorithm="gemm"))


def _config_in_subprocess(env_value):
    env = dict(os.environ, PYCONV_KERNELS=env_value)
    code = "import warnings, pyconv; from pyconv import _dispatch; print(_dispatch.name)"
    out = subprocess.run([sys.executable, "-W", "always", "-c", code], env=env,
                         capture_output=True, text=True, check=True)
    return out.stdout.strip(), out.stderr


@pytest.mark.parametrize("name", SETS)
def test_environment_variable_forces_a_set(name):
    chosen, _ = _config_in_subprocess(name)
    assert chosen == name


def test_unavailable_set_falls_back_with_a_warning():
    chosen, err = _config_in_subprocess("no-such-isa")
    assert chosen == SETS[0]
    assert "PYCONV_KERNELS" in err


@pytest.mark.parametrize("name", ["avx512", "avx2"])
def test_a_set_the_cpu_lacks_is_refused_before_its_import(monkeypatch, name):
    """_dispatch.load checks the CPU first: the module's own initialisation is compiled
    with the set's flags, and importing it on a CPU without them is a SIGILL (seen on
    a Zen 3 with the avx512 set). The CPU here is made to lack the set."""
    monkeypatch.setattr(_dispatch, "_features", dict(_dispatch._features, **{name: False}))
    with pytest.raises(ImportError, match=f"kernel set '{name}' needs"):
        _dispatch.load(name)
    assert name not in _dispatch.supported()
    with pytest.raises(ValueError, match="is not available here"):
        _dispatch.use(name)
    with pytest.raises(ValueError, match="kernel set must be one of"):
        _dispatch.load("sse9")
    assert _dispatch.load("generic").__name__ == "pyconv._kernels_generic"


def test_show_config_reports_the_set():
    info = pyconv.show_config(file=open(os.devnull, "w"))
    assert info["kernels"] == _dispatch.name
    assert "generic" in info["kernels_supported"]


@pytest.mark.parametrize("case", [c for c in CASES if c[0] > 1])
def test_gemm_bitwise_for_any_thread_count(kernel_set, case):
    n, c_in, h, w, c_out, kh, kw, stride, padding, dilation, groups = case
    rng = np.random.default_rng(7)
    x = rng.standard_normal((n, c_in, h, w)).astype(np.float32)
    weight = rng.standard_normal((c_out, c_in // groups, kh, kw)).astype(np.float32)
    same_for_any_threads(lambda t: F.conv2d(x, weight, None, stride, padding, dilation, groups,
                                            algorithm="gemm"), threads=(1, 2, 3, 5))


@pytest.mark.parametrize("case", TAIL_CASES)
def test_tail_bitwise_for_any_thread_count(kernel_set, case):
    # More threads split an image into more pixel blocks; the tail stays the same
    # pixels, summed in the same order.
    n, c_in, h, w, c_out, kh, kw, stride, padding, dilation, groups = case
    rng = np.random.default_rng(8)
    x = rng.standard_normal((n, c_in, h, w)).astype(np.float32)
    weight = rng.standard_normal((c_out, c_in // groups, kh, kw)).astype(np.float32)
    bias = rng.standard_normal(c_out).astype(np.float32)
    same_for_any_threads(lambda t: F.conv2d(x, weight, bias, stride, padding, dilation, groups,
                                            algorithm="gemm"), threads=(1, 2, 3, 5))
