"""``python -m pyconv``: a first look at what pyconv does on this machine.

1. the build configuration (version, compiler flags, OpenMP, threads, kernels);
2. every operator checked against a naive NumPy loop on a few awkward shapes;
3. timings of conv2d, conv_transpose2d and pooling on ResNet-style layers, in GFLOP/s;
4. a real network end to end: ResNet-50 (pyconv.models), batch 1, as built and fused.

Options: ``--quick`` (smaller timing layers and a 64x64 ResNet-50 input, for CI), ``--threads N``.
"""

import argparse
import sys
import time

import numpy as np

import pyconv
import pyconv.functional as F
from pyconv import models, nn


# ---------------------------------------------------------------------------------------
# Naive references: one loop per output position, written to be read (the test suite's
# tests/reference.py has the complete set; these few keep the main job self-contained).
# ---------------------------------------------------------------------------------------

def _ref_conv2d(x, w, b, s, p, d, g):
    n, c, h, wd = x.shape
    co, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    oh, ow = (h + 2 * p - d * (kh - 1) - 1) // s + 1, (wd + 2 * p - d * (kw - 1) - 1) // s + 1
    y = np.empty((n, co, oh, ow))
    og = co // g
    for i in range(oh):
        for j in range(ow):
            win = xp[:, :, i * s:i * s + d * (kh - 1) + 1:d, j * s:j * s + d * (kw - 1) + 1:d]
            for gi in range(g):
                y[:, gi * og:(gi + 1) * og, i, j] = np.einsum(
                    "ncuv,ocuv->no", win[:, gi * cg:(gi + 1) * cg], w[gi * og:(gi + 1) * og])
    return y + b[None, :, None, None]


def _ref_conv_transpose2d(x, w, s, p):
    n, c, h, wd = x.shape
    _, co, kh, kw = w.shape
    full = np.zeros((n, co, (h - 1) * s + kh, (wd - 1) * s + kw))
    for i in range(h):
        for j in range(wd):
            full[:, :, i * s:i * s + kh, j * s:j * s + kw] += np.einsum("nc,cokl->nokl", x[:, :, i, j], w)
    return full[:, :, p:full.shape[2] - p, p:full.shape[3] - p]


def _ref_pool2d(x, k, s, p, reduce):
    pad_value = -np.inf if reduce is np.max else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=pad_value)
    oh, ow = (x.shape[2] + 2 * p - k) // s + 1, (x.shape[3] + 2 * p - k) // s + 1
    y = np.empty(x.shape[:2] + (oh, ow))
    for i in range(oh):
        for j in range(ow):
            y[:, :, i, j] = reduce(xp[:, :, i * s:i * s + k, j * s:j * s + k], axis=(2, 3))
    return y


def _ref_adaptive_avg2d(x, o):
    h, wd = x.shape[2:]
    y = np.empty(x.shape[:2] + (o, o))
    for i in range(o):
        for j in range(o):
            y[:, :, i, j] = x[:, :, i * h // o:-(-(i + 1) * h // o), j * wd // o:-(-(j + 1) * wd // o)].mean(axis=(2, 3))
    return y


def check_operators(rng):
    """Each operator against its naive reference on awkward (non-tile-multiple) shapes."""
    x = rng.standard_normal((2, 6, 13, 11))
    w = rng.standard_normal((10, 3, 3, 3))
    b = rng.standard_normal(10)
    wt = rng.standard_normal((6, 5, 4, 4))
    checks = [
        ("conv2d 3x3 s1 p1 groups=2", lambda x: F.conv2d(x, w, b, 1, 1, 1, 2),
         lambda: _ref_conv2d(x, w, b, 1, 1, 1, 2)),
        ("conv2d 3x3 s2 p2 dilation=2", lambda x: F.conv2d(x, w, b, 2, 2, 2, 2),
         lambda: _ref_conv2d(x, w, b, 2, 2, 2, 2)),
        ("conv_transpose2d 4x4 s2 p1", lambda x: F.conv_transpose2d(x, wt, None, 2, 1),
         lambda: _ref_conv_transpose2d(x, wt, 2, 1)),
        ("max_pool2d 3x3 s2 p1", lambda x: F.max_pool2d(x, 3, 2, 1),
         lambda: _ref_pool2d(x, 3, 2, 1, np.max)),
        ("avg_pool2d 3x3 s1 p1", lambda x: F.avg_pool2d(x, 3, 1, 1),
         lambda: _ref_pool2d(x, 3, 1, 1, np.sum) / 9),
        ("adaptive_avg_pool2d 5x5", lambda x: F.adaptive_avg_pool2d(x, 5),
         lambda: _ref_adaptive_avg2d(x, 5)),
    ]
    ok = True
    print("\nCorrectness against naive NumPy references (max |error|):")
    for name, fast, ref in checks:
        expected = ref()
        e64 = np.max(np.abs(fast(x) - expected))
        e32 = np.max(np.abs(fast(x.astype(np.float32)) - expected)) / max(1.0, np.max(np.abs(expected)))
        good = e64 < 1e-10 and e32 < 1e-5
        ok &= good
        print(f"  {name:32s} float64 {e64:8.1e}   float32 (rel) {e32:8.1e}   {'ok' if good else 'FAILED'}")
    return ok


def _median_time(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def time_layers(rng, quick):
    """Median time and GFLOP/s (2 * multiply-adds / time) on ResNet-style layers."""
    s = 2 if quick else 1  # --quick halves the spatial size
    layers = [
        ("conv2d 7x7/2 stem 3->64 @224", "conv", (1, 3, 224 // s, 224 // s), (64, 3, 7, 7), 2, 3),
        ("conv2d 3x3 64->64 @56", "conv", (1, 64, 56 // s, 56 // s), (64, 64, 3, 3), 1, 1),
        ("conv2d 1x1 256->64 @56", "conv", (1, 256, 56 // s, 56 // s), (64, 256, 1, 1), 1, 0),
        ("conv2d 3x3/2 128->128 @56", "conv", (1, 128, 56 // s, 56 // s), (128, 128, 3, 3), 2, 1),
        ("conv_transpose2d 4x4/2 128->64 @16", "tconv", (1, 128, 16, 16), (128, 64, 4, 4), 2, 1),
        ("max_pool2d 3x3/2 64 @112", "max", (1, 64, 112 // s, 112 // s), 3, 2, 1),
        ("avg_pool2d 3x3/1 192 @28", "avg", (1, 192, 28, 28), 3, 1, 1),
        ("adaptive_avg_pool2d 2048 @7 -> 1", "gap", (1, 2048, 7, 7), 1, 1, 0),
    ]
    print(f"\nTimings, float32, {pyconv.get_num_threads()} thread(s), median of repeats:")
    print(f"  {'layer':38s} {'ms':>9s} {'GFLOP/s':>9s}")
    for name, kind, xshape, wshape, stride, pad in layers:
        x = rng.standard_normal(xshape).astype(np.float32)
        if kind in ("conv", "tconv"):
            w = rng.standard_normal(wshape).astype(np.float32)
            if kind == "conv":
                fn = lambda: F.conv2d(x, w, None, stride, pad)  # noqa: E731
                y_shape = fn().shape
                flops = 2 * np.prod(y_shape) * np.prod(wshape[1:])
            else:
                fn = lambda: F.conv_transpose2d(x, w, None, stride, pad)  # noqa: E731
                flops = 2 * np.prod(xshape) * np.prod(wshape[1:])
        else:
            k = wshape
            fn = {
                "max": lambda: F.max_pool2d(x, k, stride, pad),
                "avg": lambda: F.avg_pool2d(x, k, stride, pad),
                "gap": lambda: F.adaptive_avg_pool2d(x, 1),
            }[kind]
            y_shape = fn().shape
            taps = x.shape[2] * x.shape[3] if kind == "gap" else k * k
            flops = np.prod(y_shape) * taps
        t = _median_time(fn, 3 if quick else 7)
        print(f"  {name:38s} {t * 1e3:9.2f} {flops / t / 1e9:9.1f}")


# ---------------------------------------------------------------------------------------
# A real network end to end
# ---------------------------------------------------------------------------------------

def time_resnet50(quick):
    """ResNet-50 with seeded random weights, batch 1: latency and images/s, as built and
    fused (BatchNorm folded into the convolutions, ReLU applied in their output pass).
    Returns whether the two agree."""
    size = 64 if quick else 224
    model = models.resnet50(rng=0).eval()
    x = np.random.default_rng(1).standard_normal((1, 3, size, size)).astype(np.float32)
    macs = nn.summary(model, x.shape, verbose=False).total_macs  # runs the model once: a warm-up
    fused = model.fuse()
    y = model(x)
    err = np.max(np.abs(fused(x) - y)) / np.max(np.abs(y))
    print(f"\nResNet-50, seeded random weights, float32, batch 1 at {size}x{size} "
          f"({macs / 1e9:.2f} G multiply-adds), median of repeats:")
    print(f"  {'model':38s} {'ms':>9s} {'images/s':>9s} {'GFLOP/s':>9s}")
    for label, net in (("as built", model), ("fused (conv+BN+ReLU)", fused)):
        t = _median_time(lambda: net(x), 3)  # noqa: B023  (called before net changes)
        print(f"  {label:38s} {t * 1e3:9.1f} {1 / t:9.2f} {2 * macs / t / 1e9:9.1f}")
    good = err < 1e-4
    print(f"  fused vs as built: max relative difference {err:.1e}   {'ok' if good else 'FAILED'}")
    return good


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m pyconv", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small timing layers (for CI)")
    parser.add_argument("--threads", type=int, default=None, help="OpenMP threads (default: all)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        pyconv.set_num_threads(args.threads)
    print("pyconv build configuration:")
    pyconv.show_config()
    rng = np.random.default_rng(0)
    ok = check_operators(rng)
    time_layers(rng, args.quick)
    ok &= time_resnet50(args.quick)
    if not ok:
        print("\nSOME OPERATORS FAILED THEIR CHECK", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
