"""Threads: the thread-count knobs, bitwise determinism across thread counts, calls
from several Python threads at once, and the GIL released inside the kernels."""
import concurrent.futures
import os
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import pyconv
import pyconv.functional as F
from pyconv import _threads

needs_openmp = pytest.mark.skipif(not pyconv.openmp_enabled(),
                                  reason="a serial build (no OpenMP) always runs one thread")



@pytest.fixture(autouse=True)
def _restore_threads():
    """Whatever a test does (or fails to undo), put the thread settings back."""
    limit, omp = _threads.get_limit(), _threads.omp_max_threads()
    yield
    _threads.set_limit(limit)
    _threads.set_omp_max_threads(omp)


def _python(code, env):
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


# ---------------------------------------------------------------------------------------
# The knobs
# ---------------------------------------------------------------------------------------

@needs_openmp
@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_set_num_threads(n):
    pyconv.set_num_threads(n)
    assert pyconv.get_num_threads() == n


def test_get_num_threads_is_a_positive_int():
    n = pyconv.get_num_threads()
    assert isinstance(n, int) and n >= 1
    assert isinstance(pyconv.openmp_enabled(), bool)


@needs_openmp
def test_set_num_threads_none_removes_the_limit():
    before = pyconv.get_num_threads()
    pyconv.set_num_threads(1)
    assert pyconv.get_num_threads() == 1
    pyconv.set_num_threads(None)
    # "None removes it": back to what it was before the limit, not stuck at 1.
    assert pyconv.get_num_threads() == before


@needs_openmp
@pytest.mark.parametrize("n", [1, 2, 3])
def test_num_threads_context_manager_restores(n):
    before = pyconv.get_num_threads()
    with pyconv.num_threads(n) as value:
        assert value == n
        assert pyconv.get_num_threads() == n
    assert pyconv.get_num_threads() == before


@needs_openmp
def test_num_threads_nested_and_on_exception():
    before = pyconv.get_num_threads()
    with pytest.raises(RuntimeError, match="inside"):
        with pyconv.num_threads(1):
            with pyconv.num_threads(3):
                assert pyconv.get_num_threads() == 3
            assert pyconv.get_num_threads() == 1
            raise RuntimeError("inside")
    assert pyconv.get_num_threads() == before


@needs_openmp
def test_num_threads_restores_an_explicit_limit():
    pyconv.set_num_threads(1)
    with pyconv.num_threads(2):
        assert pyconv.get_num_threads() == 2
    assert pyconv.get_num_threads() == 1


@needs_openmp
def test_limit_is_process_wide():
    """set_num_threads in the main thread also limits kernels called from another thread."""
    pyconv.set_num_threads(1)
    seen = []
    t = threading.Thread(target=lambda: seen.append(pyconv.get_num_threads()))
    t.start()
    t.join()
    assert seen == [1]


@needs_openmp
@pytest.mark.skipif(not pyconv.openmp_enabled(), reason="built without OpenMP")
def test_omp_num_threads_is_respected():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    assert _python("import pyconv; print(pyconv.get_num_threads())", env) == "1"
    # And it still computes, on that one thread.
    code = ("import numpy as np, pyconv.functional as F; "
            "print(F.conv2d(np.ones((1, 2, 5, 5)), np.ones((3, 2, 3, 3)))[0, 0, 0, 0])")
    assert _python(code, env) == "18.0"


def _pyconv_openmp_library():
    """The OpenMP runtime the compiled kernels link against, from ldd."""
    if shutil.which("ldd") is None:
        pytest.skip("ldd is not available to read pyconv's shared-library dependencies")
    from pyconv import _conv
    output = subprocess.run(["ldd", _conv.__file__], capture_output=True, text=True).stdout
    for line in output.splitlines():
        if "=>" in line and any(lib in line for lib in ("libgomp", "libomp", "libiomp")):
            return os.path.realpath(line.split("=>")[1].split("(")[0].strip())
    pytest.fail(f"no OpenMP runtime in ldd output of {_conv.__file__}:\n{output}")


@pytest.mark.skipif(not pyconv.openmp_enabled(), reason="built without OpenMP")
def test_threadpoolctl_sees_pyconvs_openmp_runtime():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    library = _pyconv_openmp_library()
    openmp = [info for info in threadpoolctl.threadpool_info() if info["user_api"] == "openmp"]
    assert library in [os.path.realpath(info["filepath"]) for info in openmp], openmp


@needs_openmp
@pytest.mark.skipif(not pyconv.openmp_enabled(), reason="built without OpenMP")
def test_threadpool_limits_is_respected_and_restored():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = pyconv.get_num_threads()
    with threadpoolctl.threadpool_limits(1):
        assert pyconv.get_num_threads() == 1
        y1 = F.conv2d(np.ones((1, 1, 40, 9)), np.ones((2, 1, 3, 3)))
    assert pyconv.get_num_threads() == before
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert pyconv.get_num_threads() == 1
    assert pyconv.get_num_threads() == before
    np.testing.assert_array_equal(y1, 9.0)


@needs_openmp
@pytest.mark.skipif(not pyconv.openmp_enabled(), reason="built without OpenMP")
def test_smallest_setting_wins():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with pyconv.num_threads(2):
        with threadpoolctl.threadpool_limits(1):
            assert pyconv.get_num_threads() == 1


# ---------------------------------------------------------------------------------------
# Bitwise equality for every thread count
# ---------------------------------------------------------------------------------------

def _ops(shape_kind):
    """(name, call) pairs for every operator, on shapes where the parallel split differs:
    'rows' = batch 1, one or two channels, many rows (the units are row blocks);
    'planes' = batch 3, many channels (the units are whole planes)."""
    rng = np.random.default_rng(7)
    if shape_kind == "rows":
        n, c, h, w, length = 1, 2, 67, 23, 301
    else:
        n, c, h, w, length = 3, 12, 13, 11, 37
    x2 = rng.standard_normal((n, c, h, w)).astype(np.float32)
    x1 = rng.standard_normal((n, c, length))
    w2 = rng.standard_normal((5, c, 3, 4)).astype(np.float32)
    w1 = rng.standard_normal((4, c // 2, 5))
    wt2 = rng.standard_normal((c, 3, 3, 2)).astype(np.float32)
    wt1 = rng.standard_normal((c, 2, 4))
    w_wide = rng.standard_normal((20, c, 3, 3)).astype(np.float32)   # many output channels
    wt_wide = rng.standard_normal((c, 17, 2, 3))
    b5, b4, b3 = rng.standard_normal(5), rng.standard_normal(4), rng.standard_normal(3)
    return {
        "conv2d": lambda: F.conv2d(x2, w2, b5.astype(np.float32), padding=(1, 2)),
        "conv2d_strided": lambda: F.conv2d(x2, w2, stride=(2, 3), dilation=(2, 1), padding="same"),
        "conv2d_circular": lambda: F.conv2d(x2, w2, padding=2, padding_mode="circular"),
        "conv2d_wide": lambda: F.conv2d(x2, w_wide, padding=1),
        "conv_transpose2d_wide": lambda: F.conv_transpose2d(x2.astype(np.float64), wt_wide, stride=(2, 1)),
        "conv1d": lambda: F.conv1d(x1, w1, b4, groups=2, padding=3),
        "convolve1d": lambda: F.convolve1d(x1, w1, groups=2, stride=2),
        "convolve2d": lambda: F.convolve2d(x2, w2, b5),
        "conv_transpose2d": lambda: F.conv_transpose2d(x2, wt2, b3, stride=2, padding=1, output_padding=1),
        "conv_transpose1d": lambda: F.conv_transpose1d(x1, wt1, None, stride=3, dilation=2),
        "max_pool2d": lambda: F.max_pool2d(x2, 3, stride=2, padding=1, ceil_mode=True, return_indices=True),
        "max_pool1d": lambda: F.max_pool1d(x1, 4, dilation=2, return_indices=True),
        "avg_pool2d": lambda: F.avg_pool2d(x2, (2, 3), padding=1, count_include_pad=False),
        "avg_pool1d": lambda: F.avg_pool1d(x1, 5, stride=2, padding=2, ceil_mode=True),
        "adaptive_avg_pool2d": lambda: F.adaptive_avg_pool2d(x2, (5, 4)),
        "adaptive_avg_pool1d": lambda: F.adaptive_avg_pool1d(x1, 17),
        "adaptive_max_pool2d": lambda: F.adaptive_max_pool2d(x2, (6, 5), return_indices=True),
        "adaptive_max_pool1d": lambda: F.adaptive_max_pool1d(x1, 9, return_indices=True),
    }


def _bytes(result):
    return [r.tobytes() for r in (result if isinstance(result, tuple) else (result,))]


@needs_openmp
@pytest.mark.parametrize("shape_kind", ["rows", "planes"])
def test_bitwise_identical_on_1_2_and_3_threads(shape_kind):
    ops = _ops(shape_kind)
    results = {}
    for threads in (1, 2, 3):
        with pyconv.num_threads(threads):
            assert pyconv.get_num_threads() == threads
            results[threads] = {name: _bytes(call()) for name, call in ops.items()}
    for name in ops:
        assert results[2][name] == results[1][name], name
        assert results[3][name] == results[1][name], name


# ---------------------------------------------------------------------------------------
# Several Python threads at once
# ---------------------------------------------------------------------------------------

def test_concurrent_calls_from_python_threads():
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((2, 3, 31, 29)).astype(np.float32) for _ in range(8)]
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)

    def work(x):
        return [F.conv2d(x, w, padding=1).tobytes(),
                *_bytes(F.max_pool2d(x, 3, stride=2, return_indices=True)),
                F.conv2d(x, w, stride=2).tobytes()]

    serial = [work(x) for x in xs]
    for _ in range(3):
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            parallel = list(pool.map(work, xs))
        assert parallel == serial


# ---------------------------------------------------------------------------------------
# The GIL is released inside the kernels
# ---------------------------------------------------------------------------------------

def _long_conv_inputs(seconds):
    """Inputs for a single-threaded conv2d taking about ``seconds``, calibrated here."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((16, 16, 3, 3))
    x = rng.standard_normal((1, 16, 256, 32))
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        F.conv2d(x, w)
        best = min(best, time.perf_counter() - start)
    per_row = best / 256
    rows = int(min(max(seconds / max(per_row, 1e-7), 64), 20000))
    return rng.standard_normal((1, 16, rows, 32)), w


def _progress_during_kernel(x, w):
    """Run conv2d on a worker thread; count main-thread loop iterations while it runs and
    the longest gap in the main thread's progress, *measured from the moment the worker
    starts the call* (a kernel holding the GIL shows up as a first gap as long as the
    kernel: the main thread cannot even begin its loop). Returns (iterations, longest
    gap, kernel time) in seconds."""
    started, done = threading.Event(), threading.Event()
    times = {}

    def worker():
        times["start"] = time.perf_counter()
        started.set()
        F.conv2d(x, w)
        times["end"] = time.perf_counter()
        done.set()

    thread = threading.Thread(target=worker)
    thread.start()
    started.wait()
    count, last, max_gap = 0, times["start"], 0.0
    while not done.is_set():
        now = time.perf_counter()
        max_gap = max(max_gap, now - last)
        last = now
        count += 1
    thread.join()
    return count, max_gap, times["end"] - times["start"]


def test_gil_is_released_during_a_long_conv2d():
    """If the kernel held the GIL, the main thread would stall for the whole call: its
    longest gap would be the kernel time and it would count (almost) nothing."""
    with pyconv.num_threads(1):
        x, w = _long_conv_inputs(0.2)
        attempts = []
        for _ in range(3):  # robust on a loaded machine: one clean run suffices
            count, max_gap, elapsed = _progress_during_kernel(x, w)
            attempts.append((count, round(max_gap, 4), round(elapsed, 4)))
            if count > 10_000 and max_gap < 0.5 * elapsed:
                break
        else:
            pytest.fail(f"main thread stalled while conv2d ran: (iterations, longest gap s, "
                        f"kernel s) = {attempts}")


@needs_openmp
def test_small_calls_run_on_one_thread(monkeypatch):
    """Below the work threshold a call takes one thread (no team wake-up), above it all
    of them; the result is the same either way."""
    import pyconv.functional as functional

    monkeypatch.setattr(functional, "_PARALLEL_MIN_WORK", 1 << 18)
    with pyconv.num_threads(2):
        assert functional._threads(1000) == 1
        assert functional._threads(1 << 20) == 2
    x = np.random.default_rng(3).standard_normal((1, 4, 40, 40)).astype(np.float32)
    w = np.random.default_rng(4).standard_normal((8, 4, 3, 3)).astype(np.float32)
    small = F.conv2d(x, w, padding=1)                    # 460,800 MACs: parallel
    monkeypatch.setattr(functional, "_PARALLEL_MIN_WORK", 1 << 30)
    assert F.conv2d(x, w, padding=1).tobytes() == small.tobytes()  # serial, same bits
