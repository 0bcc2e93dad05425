"""Kernel-set dispatch: the CPU is detected once, at import, and the best kernel set
that it can run is imported.

A kernel set is one extension module (``pyconv._kernels_<name>``) holding the
register-blocked kernels compiled with that set's ISA flags only:

    avx512   -mavx512f          x86-64 with AVX-512F
    avx2     -mavx2 -mfma       x86-64 with AVX2 and FMA
    generic  (no ISA flags)     any CPU: SSE2 on x86-64, NEON on aarch64

``PYCONV_KERNELS=avx512|avx2|generic`` forces a set (a set the CPU cannot run falls
back, with a warning, to the best one it can); :func:`use` switches at run time (the
tests use it to check every set against the reference).
"""

import importlib
import os
import warnings

from pyconv._threads import cpu_features

ORDER = ("avx512", "avx2", "generic")

_features = cpu_features()
kernels = None  # the module in use
name = None  # its name


_NEEDS = {"avx512": "AVX-512F", "avx2": "AVX2 and FMA"}


def load(kernel_set):
    """The module of ``kernel_set``, imported only if this CPU can run it: ImportError
    otherwise, and where the build left the set out.

    Never import a ``pyconv._kernels_<name>`` module directly on a CPU without its ISA:
    the module is compiled whole with the set's flags, its initialisation included
    (GCC copies structs there with 512-bit moves), so the import itself stops the
    process with SIGILL -- as ``import pyconv._kernels_avx512`` did on a Zen 3."""
    if kernel_set not in ORDER:
        raise ValueError(f"kernel set must be one of {', '.join(ORDER)}; got {kernel_set!r}")
    if kernel_set != "generic" and not _features.get(kernel_set, False):
        raise ImportError(f"kernel set {kernel_set!r} needs {_NEEDS[kernel_set]}, which this "
                          f"CPU lacks")
    return importlib.import_module(f"pyconv._kernels_{kernel_set}")


def supported():
    """The kernel sets this CPU can run and this build contains, best first."""
    result = []
    for candidate in ORDER:
        try:
            load(candidate)
        except ImportError:  # not runnable here, or not built (aarch64 has no x86 sets)
            continue
        result.append(candidate)
    return result


def use(kernel_set):
    """Switch to ``kernel_set`` (one of :func:`supported`); returns the previous name."""
    global kernels, name
    if kernel_set not in supported():
        raise ValueError(f"kernel set {kernel_set!r} is not available here; "
                         f"supported: {supported()}")
    previous = name
    kernels = load(kernel_set)
    name = kernel_set
    return previous


def _initial():
    available = supported()
    if not available:   # a build with PYCONV_KERNEL_SETS that left out every set this CPU runs
        raise ImportError("pyconv: this build has no kernel set this CPU can run (built with "
                          "PYCONV_KERNEL_SETS?); rebuild with the generic set")
    forced = os.environ.get("PYCONV_KERNELS", "").strip().lower()
    if forced:
        if forced in available:
            return forced
        warnings.warn(f"PYCONV_KERNELS={forced!r} is not available on this machine "
                      f"(supported: {available}); using {available[0]!r}", RuntimeWarning)
    return available[0]


use(_initial())
