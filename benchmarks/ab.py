"""A/B test of the GEMM correlation kernel: this working tree's against another revision's,
in one process, calls alternated.

    python benchmarks/ab.py --base HEAD                   # ResNet-50 / VGG shapes, batch 1
    python benchmarks/ab.py --base 2e0fe28 --shapes 1x3x224:64k7s2p3 1x512x14:512k3p1
    python benchmarks/ab.py --base HEAD --kernel winograd --shapes 8x128x14:128k3p1
    python benchmarks/ab.py --base HEAD --cold        # caches evicted before each call
    python benchmarks/ab.py --base HEAD --float64 --shapes 1x256x56:64k1   # double precision
    python benchmarks/ab.py --base HEAD --models resnet50 vgg19 --budget 20   # whole networks
    python benchmarks/ab.py --base HEAD --kernel avgpool      # the kernel set's average pooling
    python benchmarks/ab.py --set avx512 --against avx2    # two built kernel sets, no base build
    python benchmarks/ab.py --base 7c9c309 --set avx512 --kernel direct   # depthwise layers

Why: on a shared VM two processes of the same build differ by up to 30 % (a vCPU that
runs slower for seconds, frequency drift), far more than most kernel changes. Within one
process, with the two versions called in turn (base, new, base, new, ...), both see the
same machine state, and the median of the per-pair ratios is stable to about 1-2 % --
untouched layers read 1.00 run after run. This script builds the base revision's kernel
set (``git archive`` into a temporary directory; its ``_kernels_<set>.pyx`` compiled under
another module name, with setup.py's flags) and imports it beside the working tree's
build (which must be built: ``python setup.py build_ext --inplace``). ``--against SET``
compares the working tree's ``--set`` with another of its own built kernel sets instead
(which set a CPU should run: the AVX-512 set on a core that splits 512-bit operations
into two halves, say); their outputs may differ in the last bits (other tile shapes).

Output per shape (or model): both medians and new / base time (< 1: the working tree is
faster).
Only a raw kernel entry is timed (no Python checks, no algorithm choice): ``conv2d_igemm``,
with ``--kernel direct`` ``conv2d_direct`` on depthwise shapes (O = C, groups = C; preset
``depthwise``, MobileNetV2's),
or with ``--kernel winograd`` / ``winograd2x2`` the Winograd convolution given the same
transformed filter (3x3 stride-1 shapes; the filter transform itself is not timed),
with ``--kernel winograd_weights`` / ``winograd2_weights`` that filter transform alone
(C_out x C_in filters of the shape).
``--kernel avgpool`` compares the kernel set's ``avg_pool2d_forward`` (_pooling.pxi) on
NxCxH:kK[sS][pP] shapes (count_include_pad, as PyTorch's default); a base from before
the pooling kernels moved into the kernel sets is built as its ``pyconv._pool`` (one
module for every CPU, the common flags only). A direction for development, not a benchmark result: the suites
(benchmarks/run.py) compare pyconv with its peers.
"""

import argparse
import collections
import importlib.util
import os
import re
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

# name: NxCxH:OkKsSpP (stride, padding default 1 / 0), square images and kernels.
PRESETS = {
    "resnet50": ["1x3x224:64k7s2p3", "1x64x56:64k3p1", "1x256x56:128k1", "1x128x56:128k3s2p1",
                 "1x512x28:256k1", "1x256x28:256k3s2p1", "1x256x14:1024k1", "1x256x14:256k3p1",
                 "1x512x14:512k3s2p1", "1x2048x7:512k1", "1x512x7:2048k1", "1x512x7:512k3p1",
                 "8x256x14:256k3p1", "8x512x28:256k1"],
    "vgg16": ["1x3x224:64k3p1", "1x256x56:256k3p1", "1x512x28:512k3p1", "1x512x14:512k3p1"],
    # --kernel direct: MobileNetV2's depthwise 3x3 layers (7 to 112 columns)
    "depthwise": ["1x576x14:576k3s2p1", "1x960x7:960k3p1", "8x960x7:960k3p1", "1x384x14:384k3p1",
                  "1x576x14:576k3p1", "1x192x28:192k3s2p1", "1x192x28:192k3p1",
                  "1x144x56:144k3s2p1", "1x32x112:32k3p1"],
    # --kernel avgpool: Inception-v3's 3x3/1 pools, a 2x2/2 and a 3x3/2 one, a 7x7 global
    "pooling": ["1x768x17:k3s1p1", "1x192x35:k3s1p1", "1x64x112:k2s2", "1x64x56:k3s2p1",
                "1x2048x7:k7s1"],
}
SHAPE = re.compile(r"^(\d+)x(\d+)x(\d+):(\d+)k(\d+)(?:s(\d+))?(?:p(\d+))?$")
POOL = re.compile(r"^(\d+)x(\d+)x(\d+):k(\d+)(?:s(\d+))?(?:p(\d+))?$")


def build_base(rev, kernel_set, workdir, source=None):
    """Compile revision ``rev``'s kernel set (or its module ``source``, e.g. _pool.pyx,
    with the common flags only) as the module ``_kbase`` in ``workdir``."""
    src = os.path.join(workdir, "src")
    os.makedirs(src)
    archive = subprocess.run(["git", "-C", ROOT, "archive", rev, "pyconv"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", src], input=archive, check=True)
    pkg = os.path.join(src, "pyconv")
    shutil.copy(os.path.join(pkg, source or f"_kernels_{kernel_set}.pyx"), os.path.join(pkg, "_kbase.pyx"))
    flags = [] if source else {"generic": [], "avx2": ["-mavx2", "-mfma"], "avx512": ["-mavx512f", "-mprefer-vector-width=256"]}[kernel_set]
    script = f"""
from setuptools import Extension, setup
from Cython.Build import cythonize
ext = Extension("_kbase", ["pyconv/_kbase.pyx"], include_dirs=["pyconv"],
                extra_compile_args=["-O3", "-fno-wrapv", "-fno-math-errno", "-fopenmp"] + {flags!r},
                extra_link_args=["-fopenmp"])
setup(ext_modules=cythonize([ext], quiet=True, compiler_directives=dict(
    language_level=3, boundscheck=False, wraparound=False, initializedcheck=False,
    cdivision=True, nonecheck=False)), script_args=["build_ext", "--build-lib", {workdir!r}])
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=src, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"building {rev}'s kernels failed:\n{proc.stderr[-3000:]}")
    path = os.path.join(workdir, "_kbase" + sysconfig.get_config_var("EXT_SUFFIX"))
    spec = importlib.util.spec_from_file_location("_kbase", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_shape(text):
    m = SHAPE.match(text)
    if not m:
        sys.exit(f"bad shape {text!r}: expected NxCxH:OkK[sS][pP], e.g. 1x256x14:256k3p1")
    n, c, h, o, k = (int(g) for g in m.groups()[:5])
    s, p = int(m.group(6) or 1), int(m.group(7) or 0)
    return n, c, h, o, k, s, p


def evict(buf=[]):
    """Push the caches' contents out to DRAM: write one float per 64-byte line of a
    buffer twice the size of a large L3 (64 MiB)."""
    if not buf:
        buf.append(np.zeros(16 << 20, np.float32))
    buf[0][::16] += 1.0


def ab(base, new, shape, threads, pairs, rng, kernel="gemm", cold=False, dtype=np.float32):
    n, c, h, o, k, s, p = shape
    oh = (h + 2 * p - k) // s + 1
    x = rng.standard_normal((n, c, h, h)).astype(dtype)
    w = (rng.standard_normal((o, c, k, k)) * np.sqrt(2 / (c * k * k))).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    y0, y1 = np.empty((n, o, oh, oh), dtype), np.empty((n, o, oh, oh), dtype)
    if kernel == "gemm":
        args = (s, s, p, p, 1, 1, 1, -np.inf, np.inf, threads)
        calls = [lambda: base.conv2d_igemm(x, w, b, y0, *args),
                 lambda: new.conv2d_igemm(x, w, b, y1, *args)]
    elif kernel == "direct":   # depthwise: one input channel per output channel
        if o != c:
            sys.exit(f"--kernel direct: depthwise shapes only (O = C), got {shape}")
        w = np.ascontiguousarray(w[:, :1])
        args = (s, s, p, p, 1, 1, c, -np.inf, np.inf, threads)
        calls = [lambda: base.conv2d_direct(x, w, b, y0, *args),
                 lambda: new.conv2d_direct(x, w, b, y1, *args)]
    elif kernel.endswith("_weights"):   # the filter transform itself: U of (C_out, C_in, 3, 3)
        npt = 36 if kernel == "winograd_weights" else 16
        y0, y1 = (np.empty((npt, o, c), np.float32) for _ in range(2))
        calls = [lambda: getattr(base, kernel)(w, y0, threads),
                 lambda: getattr(new, kernel)(w, y1, threads)]
    else:
        m = 4 if kernel == "winograd" else 2
        # Each build transforms its own filter: the layout of U is the kernel set's own.
        u0, u1 = (np.empty(((m + 2) ** 2, o, c), np.float32) for _ in range(2))
        for k, u in ((base, u0), (new, u1)):
            (k.winograd_weights if m == 4 else k.winograd2_weights)(w, u, threads)
        name = "winograd_conv2d" if m == 4 else "winograd2_conv2d"
        args = (p, p, -np.inf, np.inf, threads)
        calls = [lambda: getattr(base, name)(x, u0, b, y0, *args),
                 lambda: getattr(new, name)(x, u1, b, y1, *args)]
    for call in calls * 3:
        call()
    if not np.array_equal(y0, y1):
        print(f"  note: outputs differ (max |diff| {np.abs(y0 - y1).max():.2e})")
    return alternate(calls, pairs, cold)


def alternate(calls, pairs, cold=False):
    """Each pair of calls in turn, the order alternating (a drift within a pair hits
    both ways): both medians and the median of the per-pair ratios new / base."""
    times = ([], [])
    for i in range(pairs):
        for j in ((0, 1) if i % 2 == 0 else (1, 0)):
            if cold:
                evict()
            t0 = time.perf_counter()
            calls[j]()
            times[j].append(time.perf_counter() - t0)
    ratio = statistics.median(t1 / t0 for t0, t1 in zip(*times))
    return statistics.median(times[0]), statistics.median(times[1]), ratio


def ab_pool(base, new, text, threads, budget, rng):
    """avg_pool2d_forward of both builds on the planes of one shape,
    calls alternated for about ``budget`` seconds; a note when the outputs differ."""
    m = POOL.match(text)
    if not m:
        sys.exit(f"bad pool shape {text!r}: expected NxCxH:kK[sS][pP], e.g. 1x768x17:k3s1p1")
    n, c, h, k = (int(g) for g in m.groups()[:4])
    s, p = int(m.group(5) or k), int(m.group(6) or 0)
    x = rng.standard_normal((n * c, h, h), dtype=np.float32)
    oh = (h + 2 * p - k) // s + 1
    y0, y1 = np.empty((n * c, oh, oh), np.float32), np.empty((n * c, oh, oh), np.float32)
    args = (k, k, s, s, p, p, p, p, 1, 1, True, 0, threads)
    calls = [lambda: base.avg_pool2d_forward(x, y0, *args), lambda: new.avg_pool2d_forward(x, y1, *args)]
    t = time.perf_counter()
    for call in calls * 3:
        call()
    once = max((time.perf_counter() - t) / 6, 1e-5)
    if not np.array_equal(y0, y1):
        print(f"  note: outputs differ (max |diff| {np.abs(y0 - y1).max():.2e})")
    pairs = int(min(max(budget / (2 * once), 9), 10001)) | 1
    return alternate(calls, pairs) + (pairs,)


def ab_model(base, new, name, batch, threads, budget, rng):
    """Whole forward passes of a light ONNX model (bench_models.py) through pyconv.onnx,
    alternating the two kernel sets as ``pyconv._dispatch.kernels`` -- what the
    convolutions (GEMM, direct, Winograd) call. Each set runs its own copy of the
    model, first called under that set: a Conv node keeps the kernel it resolved on
    its first call (functional._ConvPlan), so one shared model would run the first
    set's kernels in both halves (so it did until 2026-11-22: whole-model ratios
    taken before then compared a build with itself). Each set keeps its own cache of
    transformed filters. (The max-pooling kernels, bound at import, stay the working
    tree's.) Returns both medians and the median of the per-pair ratios."""
    import bench_models
    import pyconv
    import pyconv.functional as F
    import pyconv.onnx as ponnx
    from pyconv import _dispatch

    data, shape = bench_models.light_model(name, rng)
    x = rng.standard_normal((batch,) + shape[1:]).astype(np.float32)
    pyconv.set_num_threads(threads)
    models = {id(base): ponnx.load(data), id(new): ponnx.load(data)}
    caches = {id(base): collections.OrderedDict(), id(new): collections.OrderedDict()}
    saved = _dispatch.kernels, F._TRANSFORM_CACHE

    def run(kernels):
        _dispatch.kernels, F._TRANSFORM_CACHE = kernels, caches[id(kernels)]
        t0 = time.perf_counter()
        models[id(kernels)](x)
        return time.perf_counter() - t0

    try:
        once = max(run(base), run(new), run(base), run(new))
        pairs = int(min(max(budget / (2 * once), 7), 201)) | 1
        times = ([], [])
        for i in range(pairs):
            for j in ((0, 1) if i % 2 == 0 else (1, 0)):
                times[j].append(run((base, new)[j]))
    finally:
        _dispatch.kernels, F._TRANSFORM_CACHE = saved
    ratio = statistics.median(t1 / t0 for t0, t1 in zip(*times))
    return statistics.median(times[0]), statistics.median(times[1]), ratio, pairs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default="HEAD", help="git revision to compare with (default HEAD)")
    ap.add_argument("--set", default="avx2", choices=["generic", "avx2", "avx512"],
                    help="kernel set built for both (default avx2; the CPU must have it)")
    ap.add_argument("--against", choices=["generic", "avx2", "avx512"],
                    help="instead of a base revision: this build's own kernel set SET as the base")
    ap.add_argument("--shapes", nargs="+",
                    help="NxCxH:OkK[sS][pP] shapes (--kernel avgpool: NxCxH:kK[sS][pP]) or "
                         "presets: " + ", ".join(PRESETS) + " (default resnet50; avgpool: pooling)")
    ap.add_argument("--kernel", default="gemm",
                    choices=["gemm", "direct", "winograd", "winograd2x2", "winograd_weights",
                             "winograd2_weights", "avgpool"],
                    help="the kernel to compare (default gemm; Winograd and its filter transforms: "
                         "3x3 stride-1 shapes; "
                         "avgpool: the kernel set's average pooling, pool shapes, default preset pooling)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--float64", action="store_true",
                    help="double precision (--kernel gemm or direct; Winograd is float32 only)")
    ap.add_argument("--cold", action="store_true",
                    help="evict the caches before each call (weights and input from DRAM, as "
                         "in a whole network at batch 1)")
    ap.add_argument("--models", nargs="+", default=[],
                    help="instead of shapes: whole light ONNX models (bench_models.py), e.g. resnet50")
    ap.add_argument("--batch", type=int, default=1, help="batch of --models (default 1)")
    ap.add_argument("--budget", type=float, default=3.0, help="seconds of calls per shape (default 3)")
    opts = ap.parse_args(argv)

    import pyconv
    from pyconv import _dispatch
    if opts.kernel == "avgpool":
        return main_pool(opts)
    new = _dispatch.load(opts.set)
    if opts.float64 and opts.kernel not in ("gemm", "direct"):
        sys.exit(f"--float64: --kernel gemm or direct only, not {opts.kernel}")
    default = ["depthwise" if opts.kernel == "direct" else "resnet50"]
    shapes = [s for name in opts.shapes or default for s in PRESETS.get(name, [name])]
    if opts.kernel.startswith("winograd"):
        shapes = [s for s in shapes if parse_shape(s)[4:6] == (3, 1)] or sys.exit(
            f"--kernel {opts.kernel}: no 3x3 stride-1 shape among {opts.shapes or ['resnet50']}")
    rng = np.random.default_rng(0)
    dtype = np.float64 if opts.float64 else np.float32
    with tempfile.TemporaryDirectory(prefix="pyconv-ab-") as workdir:
        if opts.against:
            base = _dispatch.load(opts.against)
            opts.base = f"set {opts.against}"
        else:
            base = build_base(opts.base, opts.set, workdir)
        print(f"base {opts.base} vs working tree ({pyconv.__version__}), set {opts.set}, "
              f"kernel {opts.kernel}, {opts.threads} threads{', cold caches' if opts.cold else ''}; "
              f"new/base < 1: the working tree is faster")
        for name in opts.models:
            t0, t1, ratio, pairs = ab_model(base, new, name, opts.batch, opts.threads,
                                            opts.budget, rng)
            print(f"{name + ' b' + str(opts.batch):22s} base {t0 * 1e3:8.3f} ms  new {t1 * 1e3:8.3f} ms  "
                  f"new/base {ratio:5.3f}  ({pairs} pairs)", flush=True)
        for text in shapes if not opts.models else []:
            shape = parse_shape(text)
            t = time.perf_counter()
            ab(base, new, shape, opts.threads, 2, rng, opts.kernel, opts.cold, dtype)
            once = max((time.perf_counter() - t) / 10, 1e-5)
            pairs = int(min(max(opts.budget / (2 * once), 9), 401)) | 1
            t0, t1, ratio = ab(base, new, shape, opts.threads, pairs, rng, opts.kernel, opts.cold,
                               dtype)
            print(f"{text:22s} base {t0 * 1e3:8.3f} ms  new {t1 * 1e3:8.3f} ms  "
                  f"new/base {ratio:5.3f}  ({pairs} pairs)", flush=True)


def main_pool(opts):
    """--kernel avgpool: the working tree's average pooling (its --set kernel set's)
    against the base revision's."""
    import pyconv
    from pyconv import _dispatch

    new = _dispatch.load(opts.set)

    shapes = [s for name in opts.shapes or ["pooling"] for s in PRESETS.get(name, [name])]
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="pyconv-ab-") as workdir:
        moved = subprocess.run(["git", "-C", ROOT, "cat-file", "-e", f"{opts.base}:pyconv/_pooling.pxi"],
                               capture_output=True).returncode == 0
        base = (build_base(opts.base, opts.set, workdir) if moved   # else: its pyconv._pool
                else build_base(opts.base, None, workdir, source="_pool.pyx"))
        print(f"base {opts.base} vs working tree ({pyconv.__version__}), set {opts.set}, avg_pool2d, "
              f"{opts.threads} threads; new/base < 1: the working tree is faster")
        for text in shapes:
            t0, t1, ratio, pairs = ab_pool(base, new, text, opts.threads, opts.budget, rng)
            print(f"{text:22s} base {t0 * 1e3:8.3f} ms  new {t1 * 1e3:8.3f} ms  "
                  f"new/base {ratio:5.3f}  ({pairs} pairs)", flush=True)


if __name__ == "__main__":
    main()
