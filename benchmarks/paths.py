"""A/B test of two of pyconv's own paths for one operator, in one process, calls
alternated: the evidence behind an 'auto' rule or a kernel choice.

    python benchmarks/paths.py transposed                      # col2im vs stride phases
    python benchmarks/paths.py transposed --read-only --shapes 1x1024x28:512k2s2
    python benchmarks/paths.py maxpool                         # kernel set's vs general
    python benchmarks/paths.py maxpool --shapes 1x480x28:k3s2c 8x64x112:k3s2p1
    python benchmarks/paths.py join                            # ONNX Conv + Add: 2 steps vs 1
    python benchmarks/paths.py rerun                           # ONNX Conv: kept call checked whole vs by its input
    PYCONV_KERNELS=avx2 python benchmarks/paths.py depthwise   # row tiles vs channels-last tile
    python benchmarks/paths.py layout --float64                # GEMM's packed B: rows vs tile-major
    python benchmarks/paths.py layout --in-place               # GEMM's B: packed rows vs the input read in place
    python benchmarks/paths.py transpose                       # matrix transposes: NumPy vs tiled kernel

Pairs (A / B; the ratio printed is B's time / A's, < 1: B is faster):

* ``transposed``: conv_transpose2d through GEMM + col2im (A) or the stride phases (B),
  whatever functional._col2im_pays would choose; ``--read-only`` makes the weights
  read-only (cached transforms: col2im's transposed weights, the phases' gathered ones).
  Shapes NxCxH:OkKsSpP (padding default 0).
* ``maxpool``: max pooling without indices by the kernel set's general kernel
  (_pooling.pxi, A) or its vectorised one (_maxpool.pxi, B), raw kernel entries on the
  same planes. Shapes
  NxCxH:kKsS[pP][c] (c: ceil mode). ``--against SET``: A is that kernel set's
  _maxpool.pxi instead (e.g. ``--against avx2`` on an AVX-512 machine), "bitwise" when
  both give the same output.
* ``depthwise``: a depthwise layer by the kernel set's ``conv2d_direct`` (A: what it takes --
  the row tiles, or the channels-last tile where _direct.pxi's DWCL rule holds) or by
  ``conv2d_depthwise_cl`` (B: the channels-last tile, on any set), raw kernel entries;
  "bitwise" when both give the same output. Shapes NxCxH:kKsS[pP] (C channels).
* ``layout``: a 1x1 stride-1 correlation by the kernel set's ``conv2d_igemm`` with its
  packed B in rows of the pixel block (A) or tile-major (B), forced with
  ``set_b_layout`` (_igemm.pxi's _tiled_b); "bitwise" when both give the same output.
  Shapes NxCxH:OkK as for ab.py (1x1 only), ``--float64`` for double precision;
  ``--in-place``: B is the input itself, read in place (_in_place_b), not tile-major.
* ``transpose``: B matrices of R x C transposed into a new C-contiguous (B, C, R)
  array by NumPy (``np.ascontiguousarray(a.transpose(0, 2, 1))``, A) or by pyconv's tiled
  kernel (functional._transposed, B), as col2im's weights and pixels and linear's input
  and output need them. Shapes BxRxC; ``--float64`` for double precision; "bitwise" when
  both give the same output.
* ``join``: whole forward passes of a light ONNX model (bench_models.py) through
  pyconv.onnx, loaded without (A) and with (B) the residual join (onnx._fold_residual:
  Conv -> Add as one step). Shapes MODEL:BATCH; "bitwise" when both give the same output.
* ``rerun``: whole forward passes of a model through pyconv.onnx, each Conv node's kept
  call matched whole (A: functional._ConvPlan.rerun stubbed out, so every call goes
  through _conv's lookup) or by its input only (B: rerun, as the code is). Shapes
  MODEL:BATCH -- a light ONNX model or a pyconv.models name (its PyTorch twin's export,
  bench_models.py; needs torch); "bitwise" when both give the same output.

Why in one process: on a shared VM two processes of the same build differ by up to 30 %;
called in turn (A, B, A, B, ...) both see the same machine state, and the median of
the per-pair ratios is stable to a few percent. A direction for development, not a
benchmark result: the suites (benchmarks/run.py) compare pyconv with its peers.
"""

import argparse
import os
import re
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import pyconv  # noqa: E402
import pyconv.functional as F  # noqa: E402
from pyconv import _dispatch  # noqa: E402

PRESETS = {
    # DCGAN generator (4x4/2, windows overlap), U-Net up-convolutions (2x2/2, apart)
    "transposed": ["8x512x4:256k4s2p1", "8x256x8:128k4s2p1", "8x128x16:64k4s2p1",
                   "1x1024x28:512k2s2", "1x512x52:256k2s2", "1x256x100:128k2s2",
                   "1x128x196:64k2s2", "8x512x14:256k2s2", "2x64x96:64k2s2"],
    # VGG's 2x2/2, ResNet's stem, GoogLeNet's ceil-mode 3x3/2
    "join": ["resnet50:1", "resnet50:8"],
    # small networks at batch 1, where a step's Python is a visible share, and ResNet-50
    "rerun": ["mobilenet_v2:1", "squeezenet:1", "shufflenet:1", "resnet50:1"],
    # MobileNetV2's depthwise 3x3 layers: 7, 14 and 28 output columns
    "depthwise": ["1x576x14:k3s2p1", "1x960x7:k3s1p1", "1x384x14:k3s1p1", "1x192x28:k3s2p1",
                  "1x192x28:k3s1p1", "1x144x56:k3s2p1"],
    # ResNet-50's 1x1 layers (b1, b8) and MobileNetV2's 64 -> 64 edge case
    "layout": ["1x256x56:128k1", "1x512x28:256k1", "1x128x28:512k1", "1x1024x14:256k1",
               "1x2048x7:512k1", "8x2048x7:512k1", "8x512x28:128k1", "8x64x56:64k1",
               "1x256x56:64k1"],
    # col2im's weights (DCGAN 128 -> 64 4x4, 512 -> 256 4x4) and pixels (8x512x4x4),
    # linear's input and output at 64 rows (VGG's classifier: 25088 -> 4096 -> 1000)
    "transpose": ["1x128x1024", "1x512x4096", "8x512x16", "1x64x25088", "1x1000x64"],
    "maxpool": ["1x64x224:k2s2", "1x128x112:k2s2", "1x512x28:k2s2", "1x512x14:k2s2",
                "1x64x112:k3s2p1", "1x192x56:k3s2c", "1x480x28:k3s2c"],
}
CONV = re.compile(r"^(\d+)x(\d+)x(\d+):(\d+)k(\d+)(?:s(\d+))?(?:p(\d+))?$")
POOL = re.compile(r"^(\d+)x(\d+)x(\d+):k(\d+)(?:s(\d+))?(?:p(\d+))?(c?)$")


def transposed_pair(shape, read_only, rng):
    m = CONV.match(shape)
    if not m:
        raise SystemExit(f"bad shape {shape!r}: want NxCxH:OkKsSpP")
    n, c, h, o, k, s, p = (int(g) if g else None for g in m.groups())
    s, p = s or 1, p or 0
    x = rng.standard_normal((n, c, h, h), dtype=np.float32)
    w = rng.standard_normal((c, o, k, k), dtype=np.float32)
    w.flags.writeable = not read_only
    chosen = F._col2im_pays

    def run(col2im):
        F._col2im_pays = lambda *args: col2im
        try:
            F.conv_transpose2d(x, w, stride=s, padding=p)
        finally:
            F._col2im_pays = chosen
    auto = "col2im" if chosen(x, w, 1, (s, s), (1, 1), w) else "phases"
    return (lambda: run(True)), (lambda: run(False)), f"auto: {auto}"


def maxpool_pair(shape, threads, rng, against=None):
    m = POOL.match(shape)
    if not m:
        raise SystemExit(f"bad shape {shape!r}: want NxCxH:kKsS[pP][c]")
    n, c, h, k, s, p = (int(g) if g else None for g in m.groups()[:6])
    s, p, ceil = s or k, p or 0, bool(m.group(7))
    out = F.max_pool2d(np.zeros((1, 1, h, h), np.float32), k, s, p, ceil_mode=ceil).shape[-1]
    x = rng.standard_normal((n * c, h, h), dtype=np.float32)
    y = np.empty((n * c, out, out), np.float32)
    kernel_set = lambda: _dispatch.kernels.max_pool2d_fast(x, y, k, k, s, s, p, p, threads)
    if against is None:
        general = lambda: _dispatch.kernels.max_pool2d_forward(x, y, None, k, k, s, s, p, p, 1, 1, threads)
        return general, kernel_set, ""
    other = _dispatch.load(against)   # ImportError where this CPU cannot run the set
    y_other = np.empty_like(y)
    kernel_set()
    other.max_pool2d_fast(x, y_other, k, k, s, s, p, p, threads)
    same = np.array_equal(y, y_other)
    return (lambda: other.max_pool2d_fast(x, y_other, k, k, s, s, p, p, threads), kernel_set,
            "bitwise" if same else "OUTPUTS DIFFER")


def depthwise_pair(shape, threads, rng):
    m = POOL.match(shape)
    if not m or m.group(7):
        raise SystemExit(f"bad shape {shape!r}: want NxCxH:kKsS[pP]")
    n, c, h, k, s, p = (int(g) if g else None for g in m.groups()[:6])
    s, p = s or 1, p or 0
    out = (h + 2 * p - k) // s + 1
    x = rng.standard_normal((n, c, h, h), dtype=np.float32)
    w = rng.standard_normal((c, 1, k, k), dtype=np.float32)
    b = rng.standard_normal(c, dtype=np.float32)
    ya, yb = (np.empty((n, c, out, out), np.float32) for _ in range(2))
    kernels = _dispatch.kernels
    a = lambda: kernels.conv2d_direct(x, w, b, ya, s, s, p, p, 1, 1, c, -np.inf, np.inf, threads)
    b_ = lambda: kernels.conv2d_depthwise_cl(x, w, b, yb, s, s, p, p, 1, 1, -np.inf, np.inf, threads)
    a()
    b_()
    return a, b_, "bitwise" if np.array_equal(ya, yb) else "OUTPUTS DIFFER"


def layout_pair(shape, threads, rng, dtype, in_place=False):
    m = CONV.match(shape)
    if not m or m.group(5) != "1" or m.group(6) not in (None, "1") or m.group(7) not in (None, "0"):
        raise SystemExit(f"bad shape {shape!r}: want NxCxH:Ok1 (1x1, stride 1, no padding)")
    n, c, h, o = (int(g) for g in m.groups()[:4])
    x = rng.standard_normal((n, c, h, h)).astype(dtype)
    w = (rng.standard_normal((o, c, 1, 1)) / np.sqrt(c)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    ya, yb = (np.empty((n, o, h, h), dtype) for _ in range(2))
    kernels = _dispatch.kernels

    def run(layout, y):
        previous = kernels.set_b_layout(layout)
        try:
            kernels.conv2d_igemm(x, w, b, y, 1, 1, 0, 0, 1, 1, 1, -np.inf, np.inf, threads)
        finally:
            kernels.set_b_layout(previous)

    a, b_ = lambda: run(2, ya), lambda: run(3 if in_place else 1, yb)
    a()
    b_()
    return a, b_, "bitwise" if np.array_equal(ya, yb) else "OUTPUTS DIFFER"


def transpose_pair(shape, rng, dtype):
    m = re.match(r"^(\d+)x(\d+)x(\d+)$", shape)
    if not m:
        raise SystemExit(f"bad shape {shape!r}: want BxRxC")
    a = rng.standard_normal(tuple(int(g) for g in m.groups())).astype(dtype)
    by_numpy, by_pyconv = (lambda: np.ascontiguousarray(a.transpose(0, 2, 1))), (lambda: F._transposed(a))
    return by_numpy, by_pyconv, "bitwise" if np.array_equal(by_numpy(), by_pyconv()) else "OUTPUTS DIFFER"


def model_input(shape, rng):
    """(ONNX bytes, input) for MODEL:BATCH: a light ONNX model or a pyconv.models name."""
    import bench_models

    name, _, batch = shape.partition(":")
    if name in bench_models.NATIVE:
        data, in_shape = bench_models.native_model(name)[:2]
    else:
        data, in_shape = bench_models.light_model(name, rng)
    return data, rng.standard_normal((int(batch or 1),) + tuple(in_shape[1:])).astype(np.float32)


def join_pair(shape, rng):
    import pyconv.onnx as ponnx

    data, x = model_input(shape, rng)
    joined = ponnx.load(data)
    fold, ponnx._fold_residual = ponnx._fold_residual, lambda nodes, graph_outputs: nodes
    try:
        two_steps = ponnx.load(data)
    finally:
        ponnx._fold_residual = fold
    same = np.array_equal(two_steps(x), joined(x))
    extra = f"{two_steps.steps} -> {joined.steps} steps, " + ("bitwise" if same else "OUTPUTS DIFFER")
    return lambda: two_steps(x), lambda: joined(x), extra


def rerun_pair(shape, rng):
    import pyconv.onnx as ponnx

    data, x = model_input(shape, rng)
    whole, by_input = ponnx.load(data), ponnx.load(data)
    rerun = F._ConvPlan.rerun

    def checked_whole():
        F._ConvPlan.rerun = lambda plan, x, residual=None: None   # every call through lookup
        try:
            return whole(x)
        finally:
            F._ConvPlan.rerun = rerun

    same = np.array_equal(checked_whole(), by_input(x))
    return checked_whole, lambda: by_input(x), "bitwise" if same else "OUTPUTS DIFFER"


def alternate(a, b, budget):
    """Median times of a and b and the median of the per-pair ratios b / a."""
    for _ in range(3):
        a()
        b()
    ta, tb = [], []
    end = time.perf_counter() + budget
    while time.perf_counter() < end or len(ta) < 5:
        t0 = time.perf_counter()
        a()
        t1 = time.perf_counter()
        b()
        t2 = time.perf_counter()
        ta.append(t1 - t0)
        tb.append(t2 - t1)
    ratio = statistics.median(y / x for x, y in zip(ta, tb))
    return statistics.median(ta), statistics.median(tb), ratio, len(ta)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pair", choices=sorted(PRESETS))
    parser.add_argument("--shapes", nargs="+", help="default: the pair's preset")
    parser.add_argument("--read-only", action="store_true", help="transposed: read-only weights")
    parser.add_argument("--against", choices=("generic", "avx2", "avx512"),
                        help="maxpool: compare with this kernel set's kernel, not the general one")
    parser.add_argument("--float64", action="store_true", help="layout, transpose: double precision")
    parser.add_argument("--in-place", action="store_true",
                        help="layout: B read in place from the input instead of tile-major")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget", type=float, default=2.0, help="seconds per shape")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    names = {"transposed": ("col2im", "phases"), "maxpool": ("general", "kernel set"),
             "join": ("two steps", "joined"), "depthwise": ("direct", "channels-last"),
             "layout": ("rows", "tile-major"), "rerun": ("whole", "by input"),
             "transpose": ("numpy", "pyconv")}[args.pair]
    if args.pair == "maxpool" and args.against:
        names = (args.against, _dispatch.name)
    if args.pair == "layout" and args.in_place:
        names = ("rows", "in place")
    print(f"{args.pair}: {names[1]} / {names[0]} time, {args.threads} threads, "
          f"kernel set {_dispatch.name}" + (", read-only weights" if args.read_only else ""))
    with pyconv.num_threads(args.threads):
        for shape in args.shapes or PRESETS[args.pair]:
            if args.pair == "transposed":
                a, b, extra = transposed_pair(shape, args.read_only, rng)
            elif args.pair == "join":
                a, b, extra = join_pair(shape, rng)
            elif args.pair == "rerun":
                a, b, extra = rerun_pair(shape, rng)
            elif args.pair == "transpose":
                a, b, extra = transpose_pair(shape, rng, np.float64 if args.float64 else np.float32)
            elif args.pair == "depthwise":
                a, b, extra = depthwise_pair(shape, args.threads, rng)
            elif args.pair == "layout":
                a, b, extra = layout_pair(shape, args.threads, rng,
                                          np.float64 if args.float64 else np.float32, args.in_place)
            else:
                a, b, extra = maxpool_pair(shape, args.threads, rng, args.against)
            ta, tb, ratio, pairs = alternate(a, b, args.budget)
            print(f"  {shape:22s} {names[0]} {ta * 1e3:8.3f} ms  {names[1]} {tb * 1e3:8.3f} ms  "
                  f"ratio {ratio:5.2f}  ({pairs} pairs) {extra}")


if __name__ == "__main__":
    main()
