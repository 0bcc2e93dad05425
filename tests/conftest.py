"""Shared test helpers: per-dtype tolerances, a seeded generator, random arrays.

Test modules import these directly (``from conftest import assert_close``) next to
``import reference``; pytest puts tests/ on sys.path.
"""

import os

import numpy as np
import pytest

DTYPES = (np.float32, np.float64)

# Tolerance per result dtype, relative to the largest magnitude in the expected result
# (scikit-learn style): float32 accumulates in float32, the reference in float64.
TOLERANCE = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-12}


def subprocess_env():
    """os.environ for a child Python that must import the pyconv under test: its
    root goes first on PYTHONPATH, so an in-place build (a checkout or worktree that
    is not the installed one) tests itself."""
    import pyconv

    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(pyconv.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def assert_close(actual, expected, dtype=None):
    """pyconv's ``actual`` equals the float64 reference ``expected``: same shape, the
    expected dtype (if given), NaN where NaN, and within the tolerance of its dtype."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    if dtype is not None:
        assert actual.dtype == np.dtype(dtype), (actual.dtype, dtype)
    tol = TOLERANCE[actual.dtype]
    scale = max(1.0, float(np.max(np.abs(expected[np.isfinite(expected)]), initial=0.0)))
    np.testing.assert_allclose(actual.astype(np.float64), expected, rtol=tol, atol=tol * scale)


def random_array(rng, shape, dtype=np.float64):
    """Standard-normal values of ``dtype`` (cast from float64, so the reference sees
    exactly what pyconv sees)."""
    return rng.standard_normal(shape).astype(dtype)


def _dispatch_sets():
    from pyconv import _dispatch

    return _dispatch.supported()


def same_for_any_threads(call, threads=(1, 2, 3)):
    """``call(t)`` for each thread count t, run inside ``pyconv.num_threads(t)`` (for the
    functional API; kernels take t as their argument): the results must be bitwise
    equal, NaN where NaN. Returns the first."""
    import pyconv

    results = []
    for t in threads:
        with pyconv.num_threads(t):
            results.append(call(t))
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])
    return results[0]


@pytest.fixture(params=_dispatch_sets())
def kernel_set(request):
    """Each kernel set this CPU can run (avx512, avx2, generic), made the active one for
    the test; yields its module."""
    from pyconv import _dispatch

    previous = _dispatch.use(request.param)
    yield _dispatch.kernels
    _dispatch.use(previous)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(autouse=True)
def _parallel_even_when_small(monkeypatch):
    """Tests use small shapes; pyconv runs calls below a work threshold on one thread
    (a performance choice). Lowering it to 0 makes every test exercise the parallel
    split -- what the thread-count and concurrency tests are about. The threshold
    itself is tested in test_threads.py::test_small_calls_run_on_one_thread."""
    import pyconv.functional

    monkeypatch.setattr(pyconv.functional, "_PARALLEL_MIN_WORK", 0)
