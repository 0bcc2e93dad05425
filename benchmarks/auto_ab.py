"""A/B test of the 'auto' algorithm choice in a whole network: pyconv.functional's
thresholds as they are against the same with some overridden, in one process.

    python benchmarks/auto_ab.py --model resnet50 --batch 1 --set _WINOGRAD_STREAMED_BYTES=inf
    python benchmarks/auto_ab.py --model vgg19 --set _WINOGRAD4_MIN_TILES=17 --rounds 8

Why: the per-layer suites (run.py) and benchmarks/ab.py call one layer over and over, so
its weights (or Winograd's filter transform, 2.25-4x their size) stay in cache. In a
network at batch 1 nothing does from one pass to the next, and a choice measured on a hot
layer can lose in place. Here two copies of a light ONNX model (bench_models.py) are
loaded, one under each setting (a Conv node keeps the algorithm it chose on its first
call), and whole forward passes alternate between them, in shuffled order per round.
Every step is timed in place, as in profile_model.py.

Output: per convolution shape (C_in, H, C_out, k, OH) the algorithm each side chose, its
summed time per pass (medians) and new / base; then whole passes, the median of the
per-round ratios. base = the overridden setting, new = the code as it is (< 1: the code
as it is is faster). A direction for development, not a benchmark result.
"""

import argparse
import collections
import os
import random
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import bench_models  # noqa: E402
from profile_model import conv_key, timed_steps  # noqa: E402
import pyconv  # noqa: E402
import pyconv.functional as F  # noqa: E402
import pyconv.onnx as ponnx  # noqa: E402


def parse_setting(text):
    name, sep, value = text.partition("=")
    if not sep or not name.startswith("_") or not hasattr(F, name):
        sys.exit(f"--set {text!r}: expected NAME=VALUE with NAME a constant of pyconv.functional")
    current = getattr(F, name)
    if not isinstance(current, (int, float)) or isinstance(current, bool):
        sys.exit(f"--set {text!r}: {name} is not a number ({current!r})")
    return name, float(value) if value in ("inf", "-inf") or "." in value else int(value)


def first_calls(model, x, settings):
    """Call ``model`` twice with ``settings`` in force; return what 'auto' chose, by
    (C_in, C_out, kh, OH, Winograd possible): the Conv nodes resolve (and keep) their
    algorithm here."""
    chosen = {}
    real = F._auto_algorithm

    def recording(w, w4, y4, groups, fits):
        algorithm = real(w, w4, y4, groups, fits)
        chosen[(w4.shape[1] * groups, w4.shape[0], w4.shape[2], y4.shape[2], bool(fits))] = algorithm
        return algorithm

    saved = {name: getattr(F, name) for name in settings}
    try:
        for name, value in settings.items():
            setattr(F, name, value)
        F._auto_algorithm = recording
        model(x)
        model(x)
    finally:
        F._auto_algorithm = real
        for name, value in saved.items():
            setattr(F, name, value)
    return chosen


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet50", help="a light model of the onnx package")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=12, help="rounds of passes (3 per side each)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="a constant of pyconv.functional for the base side (repeatable)")
    opts = ap.parse_args(argv)
    if not opts.set:
        ap.error("give at least one --set NAME=VALUE (the base side's setting)")
    settings = dict(parse_setting(s) for s in opts.set)
    pyconv.set_num_threads(opts.threads)
    data, shape = bench_models.light_model(opts.model, np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((opts.batch,) + shape[1:]).astype(np.float32)

    sides = {"base": (ponnx.load(data), settings), "new": (ponnx.load(data), {})}
    chosen = {side: first_calls(model, x, s) for side, (model, s) in sides.items()}
    times, shapes = collections.defaultdict(list), {}
    for side, (model, _) in sides.items():
        timed_steps(model, times, shapes, key=lambda i, _side=side: (_side, i))
    whole = {side: [] for side in sides}
    rng = random.Random(0)
    for _ in range(opts.rounds):
        order = list(sides)
        rng.shuffle(order)
        for side in order:
            model = sides[side][0]
            model(x)                   # settles the caches after the other side's pass
            t = []
            for _ in range(3):
                t0 = time.perf_counter()
                model(x)
                t.append(time.perf_counter() - t0)
            whole[side].append(min(t))

    per = collections.defaultdict(lambda: {"base": 0.0, "new": 0.0})
    for (side, i), t in times.items():
        sh = shapes[i]
        if len(sh) == 3 and all(s is not None and len(s) == 4 for s in sh):
            per[conv_key(sh)][side] += float(np.median(t)) * 1e3
    settings_text = ", ".join(f"{k}={v}" for k, v in settings.items())
    print(f"{opts.model} b{opts.batch}, {opts.threads} threads; base: {settings_text}; "
          f"new: pyconv.functional as it is (new/base < 1: as it is is faster)\n")
    print("| C_in | H | C_out | k | OH | base | new | base ms | new ms | new/base |")
    print("| ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: |")
    for key in sorted(per, key=lambda k: -per[k]["base"]):
        c_in, h, c_out, k, oh = key
        stride1_3x3 = k == 3 and h == oh          # (the models' 3x3 layers pad by 1)
        alg = [chosen[side].get((c_in, c_out, k, oh, stride1_3x3), "?") for side in ("base", "new")]
        b, n = per[key]["base"], per[key]["new"]
        mark = " *" if alg[0] != alg[1] else ""
        print(f"| {c_in} | {h} | {c_out} | {k} | {oh} | {alg[0]} | {alg[1]}{mark} | "
              f"{b:.2f} | {n:.2f} | {n / b:.2f} |")
    b, n = np.array(whole["base"]), np.array(whole["new"])
    print(f"\nwhole passes: base {np.median(b) * 1e3:.2f} ms, new {np.median(n) * 1e3:.2f} ms, "
          f"new/base {np.median(n / b):.3f} (median of {len(b)} rounds; quartiles "
          f"{np.quantile(n / b, 0.25):.3f}-{np.quantile(n / b, 0.75):.3f})")


if __name__ == "__main__":
    main()
