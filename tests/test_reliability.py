"""Reliability: Python threads, nested pools, fork/spawn/forkserver children, memory
(flat RSS, MemoryError, nothing written on error), >2**31-element arrays, Ctrl-C, and
reproducers of the robustness bugs the fuzzer found.

Anything that could crash or hang runs in a subprocess or under a timeout, so that it
fails the test instead of the test run. Tests marked ``slow`` run only with
``PYCONV_SLOW=1`` (they need ~9 GB of memory and a minute).
"""
import concurrent.futures
import json
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import pyconv
import pyconv.functional as F
import reference
from pyconv import _threads, nn

UNDER_ASAN = "asan" in os.environ.get("LD_PRELOAD", "")
slow = pytest.mark.skipif(os.environ.get("PYCONV_SLOW", "") in ("", "0"),
                          reason="slow: set PYCONV_SLOW=1 to run")


@pytest.fixture(autouse=True)
def _restore_threads():
    limit, omp = _threads.get_limit(), _threads.omp_max_threads()
    yield
    _threads.set_limit(limit)
    _threads.set_omp_max_threads(omp)


def _run_python(code, timeout=120, env=None):
    """Run ``code`` in a fresh interpreter; (returncode, stdout, stderr). A hang is a failure."""
    try:
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                              text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail(f"no result in {timeout} s (hang):\n{textwrap.dedent(code)}")
    return proc.returncode, proc.stdout, proc.stderr


# ---------------------------------------------------------------------------------------
# Threads
# ---------------------------------------------------------------------------------------

def _layers():
    rng = np.random.default_rng(0)
    conv = nn.Conv2d(3, 16, 3, padding=1, rng=1)
    pool = nn.MaxPool2d(3, stride=2, padding=1, return_indices=True)
    wt = rng.standard_normal((3, 5, 3, 3)).astype(np.float32)

    def work(x):
        y, idx = pool(x)
        return [conv(x).tobytes(), y.tobytes(), idx.tobytes(),
                F.conv_transpose2d(x, wt, stride=2, padding=1).tobytes(),
                F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False).tobytes()]
    inputs = [rng.standard_normal((2, 3, 29 + i, 23)).astype(np.float32) for i in range(8)]
    return work, inputs


def test_eight_python_threads_give_the_serial_results_bitwise():
    work, inputs = _layers()
    with pyconv.num_threads(1):
        serial = [work(x) for x in inputs]
    iterations = 5
    results, errors = [[None] * iterations for _ in inputs], []
    start = threading.Barrier(len(inputs))

    def run(i):
        try:
            start.wait(timeout=30)
            for it in range(iterations):
                results[i][it] = work(inputs[i])
        except BaseException as exc:  # reported below, never swallowed
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "deadlock: a thread did not finish"
    assert not errors, errors
    for i, per_thread in enumerate(results):
        for it, got in enumerate(per_thread):
            assert got == serial[i], f"thread {i}, iteration {it} differs from the serial run"


def test_nested_pool_of_four_with_two_openmp_threads_each():
    work, inputs = _layers()
    expected = [work(x) for x in inputs]

    def call(x):
        with pyconv.num_threads(2):
            return work(x)

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(3):
            futures = [pool.submit(call, x) for x in inputs]
            got = [f.result(timeout=120) for f in futures]  # TimeoutError = deadlock
            assert got == expected


# ---------------------------------------------------------------------------------------
# fork / spawn / forkserver children
# ---------------------------------------------------------------------------------------

def _child_work():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4, 40, 37)).astype(np.float32)
    w = rng.standard_normal((12, 4, 3, 3)).astype(np.float32)
    wt = rng.standard_normal((12, 3, 2, 2)).astype(np.float32)
    y = F.conv2d(x, w, padding=1)
    return y.tobytes() + F.max_pool2d(y, 2).tobytes() + F.conv_transpose2d(y, wt, stride=2).tobytes()


def _child(queue):
    queue.put((_child_work(), pyconv.show_config(open(os.devnull, "w"))["serial_after_fork"]))


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_child_process_after_multithreaded_use(method):
    with pyconv.num_threads(2):
        expected = _child_work()   # the parent has now run OpenMP threads
    ctx = multiprocessing.get_context(method)
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue,))
    proc.start()
    try:
        got, serial = queue.get(timeout=120)
    except Exception:
        proc.kill()
        pytest.fail(f"{method} child gave no result in 120 s (hang or crash, "
                    f"exit code {proc.exitcode})")
    proc.join(timeout=30)
    assert proc.exitcode == 0
    assert got == expected
    if pyconv.openmp_enabled():
        assert serial is (method == "fork")


# ---------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------

def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _all_ops(rng, i):
    """One call of every operator on a small input whose shape varies with i."""
    h, w = 5 + i % 4, 6 + i % 3
    x = rng.standard_normal((1 + i % 2, 2, h, w)).astype(np.float32 if i % 3 else np.float64)
    x1 = x[:, :, 0]
    k2 = np.ones((4, 2, 2, 2), x.dtype)
    k1 = np.ones((4, 2, 2), x.dtype)
    F.conv2d(x, k2, padding=1)
    F.convolve2d(x, k2)
    F.conv1d(x1, k1, stride=2)
    F.convolve1d(x1, k1)
    F.conv_transpose2d(x, k2.swapaxes(0, 1), stride=2)
    F.conv_transpose1d(x1, k1.swapaxes(0, 1))
    F.max_pool2d(x, 2, return_indices=True)
    F.max_pool1d(x1, 2, padding=1)
    F.avg_pool2d(x, 3, padding=1)
    F.avg_pool1d(x1, 2)
    F.adaptive_avg_pool2d(x, (3, 2))
    F.adaptive_avg_pool1d(x1, 3)
    F.adaptive_max_pool2d(x, 2, return_indices=True)
    F.adaptive_max_pool1d(x1, 4)


def _rss_growth(calls):
    rng = np.random.default_rng(0)
    for i in range(200):  # warm-up: allocator pools, OpenMP threads, lazy imports
        _all_ops(rng, i)
    before = _rss()
    for i in range(calls):
        _all_ops(rng, i)
    return _rss() - before


@pytest.mark.skipif(UNDER_ASAN, reason="ASan's quarantine holds freed memory by design")
def test_resident_memory_flat_over_2000_calls_of_each_operator():
    growth = _rss_growth(2000)
    assert growth < 4 << 20, f"RSS grew by {growth / 2**20:.1f} MiB over 2000 calls per operator"


@slow
@pytest.mark.slow
@pytest.mark.skipif(UNDER_ASAN, reason="ASan's quarantine holds freed memory by design")
def test_resident_memory_flat_over_10000_calls_of_each_operator():
    growth = _rss_growth(10000)
    assert growth < 4 << 20, f"RSS grew by {growth / 2**20:.1f} MiB over 10000 calls per operator"


@pytest.mark.skipif(UNDER_ASAN, reason="RLIMIT_AS cannot cap ASan's shadow memory")
def test_unallocatable_output_is_a_memory_error_and_the_process_lives_on():
    rc, out, err = _run_python("""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
        import numpy as np, pyconv.functional as F
        x = np.ones((1, 1, 1, 1), np.float32)
        # 2**40 outputs: valid for 64-bit indexing, 4 TiB of memory.
        for call in (lambda: F.max_pool2d(x, 1, padding=2**19),
                     lambda: F.avg_pool2d(x, 1, padding=2**19),
                     lambda: F.adaptive_avg_pool2d(x, 2**20),
                     lambda: F.conv2d(x, np.ones((1, 1, 1, 1), np.float32), padding=2**19),
                     lambda: F.conv_transpose2d(np.ones((1, 1, 2, 2), np.float32), x, stride=2**20)):
            try:
                call()
                print("no error")
            except MemoryError:
                print("MemoryError")
            except ValueError as exc:
                print("ValueError", exc)
        y = F.max_pool2d(np.arange(16.0).reshape(1, 1, 4, 4), 2)
        assert (y.ravel() == [5, 7, 13, 15]).all()
        print("usable")
    """)
    assert rc == 0, err
    lines = out.split("\n")
    assert lines[:5] == ["MemoryError"] * 5, out
    assert "usable" in out


def test_nothing_is_written_on_error():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 2, 6, 6))
    w = rng.standard_normal((3, 2, 3, 3))
    out = np.full((1, 3, 4, 4), 7.0)
    x0, w0 = x.copy(), w.copy()
    bad_calls = [
        lambda: F.conv2d(x, w, np.zeros(3, complex), out=out),            # complex bias
        lambda: F.conv2d(x, w, stride=0, out=out),
        lambda: F.conv2d(x, w, groups=2, out=out),
        lambda: F.conv2d(x, w, padding_mode="nope", out=out),
        lambda: F.conv2d(x, w, out=out.astype(np.float32)),
        lambda: F.max_pool2d(x, 3, out=out),                             # wrong shape
        lambda: F.conv2d(x, w, out=x),                                   # out overlaps input
    ]
    for call in bad_calls:
        with pytest.raises((ValueError, TypeError)):
            call()
        assert (out == 7.0).all()
        np.testing.assert_array_equal(x, x0)
        np.testing.assert_array_equal(w, w0)


# ---------------------------------------------------------------------------------------
# Arrays of more than 2**31 elements (slow: ~9 GB)
# ---------------------------------------------------------------------------------------

@slow
@pytest.mark.slow
def test_pooling_and_depthwise_conv_over_more_than_2_31_elements():
    side = 46341                                        # side**2 = 2_147_488_281 > 2**31
    x = np.empty((1, 1, side, side), np.float32)
    cols = np.arange(side, dtype=np.int64)
    for start in range(0, side, 4096):                  # x[i, j] = (7i + 13j) % 1009, exact in float32
        rows = np.arange(start, min(start + 4096, side), dtype=np.int64)[:, None]
        x[0, 0, rows[:, 0]] = ((7 * rows + 13 * cols) % 1009).astype(np.float32)
    rng = np.random.default_rng(0)
    samples = [(0, 0), (side - 1, side - 1), (side - 1, 0), (0, side - 1)] + [
        tuple(rng.integers(0, side, 2)) for _ in range(200)]

    def window(i, j, k, s, p):
        r0, c0 = i * s - p, j * s - p
        return x[0, 0, max(r0, 0):r0 + k, max(c0, 0):c0 + k].astype(np.float64)

    y = F.max_pool2d(x, 3, stride=1, padding=1)
    assert y.shape == x.shape
    for i, j in samples:
        assert y[0, 0, i, j] == window(i, j, 3, 1, 1).max(), (i, j)
    del y
    y = F.avg_pool2d(x, 2, stride=2)
    assert y.shape == (1, 1, side // 2, side // 2)
    for i, j in samples:
        i, j = i // 2 % (side // 2), j // 2 % (side // 2)
        assert y[0, 0, i, j] == np.float32(window(i, j, 2, 2, 0).mean()), (i, j)
    del y
    w = np.array([[[[1, 2], [3, 4]]]], np.float32)
    y = F.conv2d(x, w, groups=1)                         # one channel: depthwise
    assert y.shape == (1, 1, side - 1, side - 1)
    for i, j in samples:
        i, j = min(i, side - 2), min(j, side - 2)
        assert y[0, 0, i, j] == (window(i, j, 2, 1, 0) * w[0, 0]).sum(), (i, j)


# ---------------------------------------------------------------------------------------
# Ctrl-C
# ---------------------------------------------------------------------------------------

def test_ctrl_c_arrives_when_the_call_returns_and_the_process_lives_on():
    rc, out, err = _run_python("""
        import json, os, signal, threading, time
        import numpy as np, pyconv.functional as F
        # Python's own handler, even where the parent ignores SIGINT (a background job
        # of a non-interactive shell: Python then keeps SIG_IGN, and no
        # KeyboardInterrupt ever comes -- the test hung there).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        x = np.ones((1, 64, 160, 160), np.float32)
        w = np.ones((64, 64, 5, 5), np.float32)
        call = lambda: F.conv2d(x, w, algorithm="direct")  # the slow kernel: a long call
        durations = []
        for _ in range(3):       # the steady duration (the first call also warms up)
            t = time.perf_counter(); call(); durations.append(time.perf_counter() - t)
        duration = min(durations)
        threading.Timer(duration / 4, os.kill, (os.getpid(), signal.SIGINT)).start()
        t = time.perf_counter()
        try:
            call()
            while True:          # the interrupt must come right after the call
                time.sleep(0.001)
        except KeyboardInterrupt:
            arrived = time.perf_counter() - t
        y = F.avg_pool2d(np.arange(4.0).reshape(1, 1, 2, 2), 2)
        print(json.dumps({"duration": duration, "arrived": arrived, "after": float(y[0, 0, 0, 0])}))
    """)
    assert rc == 0, err
    r = json.loads(out)
    # Not before the kernel finished (it runs GIL-free in C), and promptly after it.
    assert r["arrived"] > 0.6 * r["duration"], r
    assert r["arrived"] < r["duration"] * 2 + 1.0, r
    assert r["after"] == 1.5


# ---------------------------------------------------------------------------------------
# Reproducers of bugs found by the fuzzer (fail until fixed in pyconv)
# ---------------------------------------------------------------------------------------

def test_huge_pooling_window_is_not_a_hang():
    """A window of 2**34 taps over a 5-element input is valid and has one output, but
    pooling allocates and walks per-tap tables: time and memory grow with the window,
    not the input (about 1 s per 2**26 taps; 2**62-1 hung the fuzzer for minutes,
    2**34 is a MemoryError). Expected: the answer, [[4.0]] and [[2.0]], at once."""
    rc, out, err = _run_python("""
        import numpy as np, pyconv.functional as F
        x = np.arange(5.0).reshape(1, 5)
        print(F.max_pool1d(x, 2**34, stride=2**34, padding="same").tolist())
        print(F.avg_pool1d(x, 2**34, stride=2**34, padding="same", count_include_pad=False).tolist())
    """, timeout=20)
    assert rc == 0, err[-600:]
    assert out.split() == ["[[4.0]]", "[[2.0]]"]


@pytest.mark.skipif(UNDER_ASAN, reason="RLIMIT_AS cannot cap ASan's shadow memory")
def test_many_threads_under_a_memory_cap_do_not_kill_the_process():
    """If OpenMP cannot create the threads asked for (an address-space cap, a
    container's pid limit) libgomp exits the process. pyconv caps set_num_threads at
    256 (a ValueError beyond), and 256 threads fit under a 4 GiB address-space cap."""
    rc, out, err = _run_python("""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
        import numpy as np, pyconv, pyconv.functional as F
        try:
            pyconv.set_num_threads(4096)
        except ValueError as exc:
            print("refused", "n" in str(exc))
        pyconv.set_num_threads(256)
        try:
            F.conv2d(np.ones((2, 3, 64, 64), np.float32), np.ones((8, 3, 3, 3), np.float32))
        except (RuntimeError, MemoryError, ValueError) as exc:
            print("raised", type(exc).__name__)
        print("alive")
    """)
    assert rc == 0 and "alive" in out, f"exit {rc}: {err[-500:]}"
    assert "refused True" in out


@pytest.mark.parametrize("param", ["padding_mode", "algorithm"])
def test_array_valued_string_option_is_reported_by_name(param):
    x, w = np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2))
    with pytest.raises((ValueError, TypeError), match=param):
        F.conv2d(x, w, **{param: np.array(["zeros", "zeros"])})


@pytest.mark.parametrize("call", [
    lambda: F.adaptive_avg_pool1d(np.zeros((0, 1)), 2**62 - 1),
    lambda: F.adaptive_max_pool2d(np.zeros((0, 1, 1)), 2**31 - 1),
    lambda: F.max_pool2d(np.zeros((0, 1, 1)), 1, padding=2**31 - 1),
], ids=["adaptive_avg_pool1d", "adaptive_max_pool2d", "max_pool2d"])
def test_empty_output_with_a_huge_spatial_shape(call):
    """N*C = 0 makes check_elements' product 0, but NumPy refuses the shape (its
    non-zero dims overflow): a bare 'array is too big' ValueError escapes. Either an
    empty result or an error naming the output shape is fine."""
    try:
        y = call()
    except ValueError as exc:
        assert "output" in str(exc), str(exc)
    else:
        assert y.size == 0


def test_reference_agrees_on_a_small_case():
    """Sanity check that this module's inputs are what the reference expects."""
    x = np.random.default_rng(2).standard_normal((1, 2, 5, 5))
    np.testing.assert_allclose(F.avg_pool2d(x, 2), reference.avg_pool2d(x, 2), rtol=1e-12)


def test_workspace_cache_is_bounded(kernel_set):
    """Freed kernel workspaces are kept for reuse (_workspace.h), at most 64 MiB per
    kernel set, however many and however large the calls that freed them."""
    rng = np.random.default_rng(3)
    for c, s in [(512, 28), (64, 56), (256, 14), (1024, 14), (2048, 24)]:
        x = rng.standard_normal((1, c, s, s)).astype(np.float32)
        w = rng.standard_normal((16, c, 3, 3)).astype(np.float32)
        for algorithm in ("gemm", "winograd", "winograd2x2"):
            F.conv2d(x, w, padding=1, algorithm=algorithm)
        assert 0 < kernel_set.workspace_cached_bytes() <= 64 << 20


def test_output_cache_reuses_freed_outputs_and_is_bounded():
    """Outputs of at least 128 KiB come from a cache of freed ones (_conv.empty): no
    fresh pages per call. The cache keeps at most 256 MiB, and an array's block goes
    back only when the array and every view of it are gone."""
    from pyconv import _conv
    x = np.random.default_rng(4).standard_normal((2, 8, 128, 128)).astype(np.float32)
    w = np.ones((8, 8, 1, 1), np.float32)
    y = F.conv2d(x, w)
    first = y.ctypes.data
    view = y[:, 1]
    del y
    second = F.conv2d(x, w).ctypes.data
    assert second != first                              # the view still holds the block
    del view
    y = F.conv2d(x, w)
    assert y.ctypes.data in (first, second)             # a freed block, reused
    np.testing.assert_allclose(y, np.broadcast_to(x.sum(axis=1, keepdims=True), y.shape),
                               rtol=1e-5, atol=1e-5)
    assert y.flags.c_contiguous and y.flags.writeable and y.ctypes.data % 64 == 0
    big = [_conv.empty((n, 1 << 20), np.float32) for n in range(8, 48)]   # 32 .. 188 MiB
    del big
    assert 0 < _conv.output_cached_bytes() <= 256 << 20
    assert _conv.empty((3, 5), np.float64).shape == (3, 5)               # small: plain NumPy
