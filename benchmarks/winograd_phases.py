"""Where a Winograd convolution's time goes: the input transform, the GEMMs and the
output transform, each timed in place by leaving it out of the call (the kernel set's
``set_phases``), four variants called in turn in one process.

    python benchmarks/winograd_phases.py                          # ResNet-50 / VGG-16 3x3 layers
    python benchmarks/winograd_phases.py --shapes 8x64x56:64 --m 2   # F(2x2, 3x3)

Per shape (NxCxH:O, 3x3 stride 1 padding 1), the median times of

    W  the whole call                       A  without the input transform
    B  without the output transform         I  the input transform alone

and what they give: input = W - A and output = W - B (each as it costs in the call,
with what it does to the caches of the other parts), GEMMs = W - input - output, with
their GFLOP/s (2 x P x C_out x C_in x tiles, P = 36 or 16 transform points), and
``input alone`` = I, which is less than W - A by what running the input transform
right before the GEMMs costs them (V and U competing for L2). The transformed filter is
computed once, not timed. A direction for development (which part to make faster), not
a benchmark result: the suites (benchmarks/run.py) compare pyconv with its peers.
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
from pyconv import _dispatch  # noqa: E402

# The 3x3 stride-1 layers of ResNet-50 (batch 1 and 8) and VGG-16 (batch 1).
PRESET = ["1x64x56:64", "1x128x28:128", "1x256x14:256", "1x512x7:512",
          "8x64x56:64", "8x128x28:128", "8x256x14:256",
          "1x64x224:64", "1x128x112:128", "1x256x56:256", "1x512x28:512"]
SHAPE = re.compile(r"^(\d+)x(\d+)x(\d+):(\d+)$")
SKIP = {"W": 0, "A": 1, "B": 4, "I": 2}    # set_phases bits: 1 input, 2 GEMMs + output, 4 output


def layer(shape, m, threads, rng):
    """A call of the raw kernel entry for shape, and the transformed problem's GEMM flops."""
    match = SHAPE.match(shape)
    if not match:
        raise SystemExit(f"bad shape {shape!r}: want NxCxH:O (3x3, stride 1, padding 1)")
    n, c, h, o = (int(g) for g in match.groups())
    kernels = _dispatch.kernels
    x = rng.standard_normal((n, c, h, h)).astype(np.float32)
    w = (rng.standard_normal((o, c, 3, 3)) * np.sqrt(2 / (9 * c))).astype(np.float32)
    b = np.zeros(o, np.float32)
    npt = (m + 2) ** 2
    u = np.empty((npt, o, c), np.float32)
    (kernels.winograd_weights if m == 4 else kernels.winograd2_weights)(w, u, threads)
    y = np.empty((n, o, h, h), np.float32)
    conv = kernels.winograd_conv2d if m == 4 else kernels.winograd2_conv2d
    tiles = n * (-(-h // m)) ** 2

    def call():
        conv(x, u, b, y, 1, 1, -np.inf, np.inf, threads)

    return call, 2.0 * npt * o * c * tiles


def timed(call, skip):
    previous = _dispatch.kernels.set_phases(skip)
    try:
        t0 = time.perf_counter()
        call()
        return time.perf_counter() - t0
    finally:
        _dispatch.kernels.set_phases(previous)


def measure(call, budget):
    """Median time of each variant, the variants called in turn (W, A, B, I, W, ...)."""
    for skip in SKIP.values():
        timed(call, skip)
    times = {name: [] for name in SKIP}
    end = time.perf_counter() + budget
    while time.perf_counter() < end or len(times["W"]) < 5:
        for name, skip in SKIP.items():
            times[name].append(timed(call, skip))
    return {name: statistics.median(t) for name, t in times.items()}, len(times["W"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", nargs="+", default=PRESET, help="NxCxH:O (default: %(default)s)")
    parser.add_argument("--m", type=int, choices=(2, 4), default=4,
                        help="F(m x m, 3x3): 4 (algorithm='winograd') or 2 ('winograd2x2')")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget", type=float, default=2.0, help="seconds per shape")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"F({args.m}x{args.m}, 3x3), kernel set {_dispatch.name}, {args.threads} threads; "
          "ms (share of the whole call)")
    print(f"  {'shape':14s} {'whole':>7s} {'input':>14s} {'GEMMs':>14s} {'GFLOP/s':>7s} "
          f"{'output':>14s} {'input alone':>11s}")
    with pyconv.num_threads(args.threads):
        for shape in args.shapes:
            call, flops = layer(shape, args.m, args.threads, rng)
            t, rounds = measure(call, args.budget)
            whole, inp, out = t["W"], t["W"] - t["A"], t["W"] - t["B"]
            gemm = whole - inp - out

            def part(v):
                return f"{v * 1e3:7.3f} ({v / whole:4.0%})"

            print(f"  {shape:14s} {whole * 1e3:7.3f} {part(inp)} {part(gemm)} "
                  f"{flops / gemm / 1e9 if gemm > 0 else float('nan'):7.1f} {part(out)} "
                  f"{t['I'] * 1e3:11.3f}  ({rounds} rounds)")


if __name__ == "__main__":
    main()
