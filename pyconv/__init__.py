"""pyconv: fast CPU convolution, transposed convolution and pooling for NumPy.

    import numpy as np, pyconv.functional as F
    y = F.conv2d(x, w, b, stride=2, padding=1)      # torch.nn.functional semantics

Layers: ``pyconv.functional`` (this package's operators), shape helpers here
(:func:`conv_output_size` ...), thread control (:func:`set_num_threads`,
:func:`num_threads`) and :func:`show_config`.
"""

import contextlib
import os

from pyconv import _args, _threads
from pyconv._version import __version__

__all__ = [
    "__version__", "functional", "nn", "models",
    "set_num_threads", "get_num_threads", "num_threads", "openmp_enabled", "show_config",
    "get_include",
    "conv_output_size", "conv_transpose_output_size", "pool_output_size", "conv_param_count",
]


# ---------------------------------------------------------------------------------------
# Threads
# ---------------------------------------------------------------------------------------

def set_num_threads(n):
    """Limit every pyconv kernel to ``n`` OpenMP threads (process-wide; ``None`` removes it).

    A kernel uses ``min(this limit, omp_get_max_threads())``: ``OMP_NUM_THREADS`` and
    ``threadpoolctl.threadpool_limits`` keep working and the smallest setting wins. In
    the calling thread the OpenMP setting is also set to ``n``, so ``n`` may exceed the
    default there. Results are bitwise identical for every thread count.
    """
    if n is None:
        _threads.set_limit(0)
        return
    _threads.set_limit(_thread_count(n))


def get_num_threads():
    """The number of threads a pyconv kernel called from this thread will use."""
    return _threads.effective_num_threads()


def _thread_count(n):
    n = _args.positive_int(n, "n")
    if n > _MAX_THREADS:
        raise ValueError(f"n must be at most {_MAX_THREADS} threads, got {n}")
    return n


_MAX_THREADS = 256  # beyond any CPU this targets; OpenMP aborts the process when it cannot create threads


@contextlib.contextmanager
def num_threads(n):
    """Context manager: ``with pyconv.num_threads(1): ...`` runs kernels on ``n`` threads."""
    n = _thread_count(n)
    saved_limit, saved_omp = _threads.get_limit(), _threads.omp_max_threads()
    _threads.set_limit(n)
    try:
        yield n
    finally:
        _threads.set_limit(saved_limit)
        _threads.set_omp_max_threads(saved_omp)


# Fork safety: a child forked after pyconv ran multi-threaded computes serially (same
# results, never a hang); spawn/forkserver children start fresh and use all threads.
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_threads.at_fork_in_child)


def openmp_enabled():
    """True when pyconv's kernels were compiled with OpenMP (else they run serially)."""
    return _threads.openmp_enabled()


def _openmp_runtime():
    """Path of the OpenMP runtime library loaded in this process (Linux), or a note."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1]
                if any(name in path for name in ("libgomp", "libomp", "libiomp")):
                    return path
    except OSError:
        pass
    return "unknown" if _threads.openmp_enabled() else "none (serial build)"


def show_config(file=None):
    """Print (and return as a dict) the build configuration: version, compiler and flags,
    OpenMP, threads, kernel set."""
    import platform
    import sys

    from pyconv import _dispatch

    info = {
        "version": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        **_threads.build_info(),
        "num_threads": get_num_threads(),
        "serial_after_fork": _threads.serial_after_fork(),
        "num_procs": _threads.num_procs(),
        "openmp_runtime": _openmp_runtime(),
        "kernels": _dispatch.name,
        "kernels_supported": ", ".join(_dispatch.supported()),
        "cpu_features": ", ".join(k for k, v in _threads.cpu_features().items() if v) or "baseline",
    }
    for key, value in info.items():
        print(f"{key:>18}: {value}", file=file)
    return info


def get_include():
    """The directory holding pyconv's ``.pxd`` and ``.h`` files (the package directory),
    for building Cython extensions against its C API (``pyconv/capi.pxd``).

    Headers: ``Extension(..., include_dirs=[pyconv.get_include()])``; ``cimport
    pyconv.capi``: ``cythonize(..., include_path=[os.path.dirname(pyconv.get_include())])``.
    """
    return os.path.dirname(os.path.abspath(__file__))


# ---------------------------------------------------------------------------------------
# Shape helpers (the course notes' formulas)
# ---------------------------------------------------------------------------------------

def _sizes(input_size, name="input_size"):
    """An int or a tuple of ints -> (tuple, was_int)."""
    if isinstance(input_size, (tuple, list)):
        if len(input_size) == 0:
            raise ValueError(f"{name} must be an int or a non-empty tuple of ints, got {input_size!r}")
        return tuple(_args.as_int(s, name) for s in input_size), False
    return (_args.as_int(input_size, name),), True


def _spatial_sizes(input_size):
    sizes, scalar = _sizes(input_size)
    if any(s < 0 for s in sizes):
        raise ValueError(f"input_size must be non-negative, got {input_size!r}")
    return sizes, scalar


def conv_output_size(input_size, kernel_size, stride=1, padding=0, dilation=1):
    """Output size of correlation: ``floor((in + p_begin + p_end - d*(k-1) - 1) / s) + 1``.

    ``input_size`` is an int (returns an int) or a tuple of spatial sizes (returns a
    tuple); the other arguments as in :func:`pyconv.functional.conv2d`, 'same' included.
    """
    sizes, scalar = _spatial_sizes(input_size)
    nd = len(sizes)
    kernel = _args.int_tuple(kernel_size, nd, "kernel_size", 1)
    stride = _args.int_tuple(stride, nd, "stride", 1)
    dilation = _args.int_tuple(dilation, nd, "dilation", 1)
    pads = _args.resolve_padding(_args.padding_spec(padding, nd), sizes, kernel, stride, dilation)
    out = _args.conv_sizes("conv_output_size", sizes, kernel, stride, pads, dilation)
    return out[0] if scalar else out


def conv_transpose_output_size(input_size, kernel_size, stride=1, padding=0,
                               output_padding=0, dilation=1):
    """Output size of transposed convolution:
    ``(in - 1)*s - p_begin - p_end + d*(k - 1) + output_padding + 1``."""
    sizes, scalar = _spatial_sizes(input_size)
    nd = len(sizes)
    if any(s < 1 for s in sizes):
        raise ValueError(f"input_size must be positive, got {input_size!r}")
    kernel = _args.int_tuple(kernel_size, nd, "kernel_size", 1)
    stride = _args.int_tuple(stride, nd, "stride", 1)
    dilation = _args.int_tuple(dilation, nd, "dilation", 1)
    output_padding = _args.int_tuple(output_padding, nd, "output_padding", 0)
    pads = _args.padding_spec(padding, nd, allow_strings=False)
    out = _args.conv_transpose_sizes("conv_transpose_output_size", sizes, kernel, stride,
                                     pads, dilation, output_padding)
    return out[0] if scalar else out


def pool_output_size(input_size, kernel_size, stride=None, padding=0, dilation=1,
                     ceil_mode=False):
    """Output size of max/average pooling (PyTorch's rule, ceil_mode included)."""
    sizes, scalar = _spatial_sizes(input_size)
    nd = len(sizes)
    kernel = _args.int_tuple(kernel_size, nd, "kernel_size", 1)
    stride = kernel if stride is None else _args.int_tuple(stride, nd, "stride", 1)
    dilation = _args.int_tuple(dilation, nd, "dilation", 1)
    ceil_mode = _args.as_bool(ceil_mode, "ceil_mode")
    pads = _args.resolve_padding(_args.padding_spec(padding, nd), sizes, kernel, stride, dilation)
    out = _args.pool_sizes("pool_output_size", sizes, kernel, stride, pads, dilation, ceil_mode)
    return out[0] if scalar else out


def conv_param_count(in_channels, out_channels, kernel_size, groups=1, bias=True):
    """Parameters of a convolution layer: ``(prod(kernel) * in_channels/groups + bias) * out_channels``.

    ``kernel_size`` is an int (1-D) or a tuple, e.g. ``(3, 3)`` gives
    ``(3*3*C_in/groups + 1) * C_out`` -- the notes' parameter-sharing count.
    """
    c_in = _args.positive_int(in_channels, "in_channels")
    c_out = _args.positive_int(out_channels, "out_channels")
    groups = _args.positive_int(groups, "groups")
    bias = _args.as_bool(bias, "bias")
    if c_in % groups or c_out % groups:
        raise ValueError(f"groups={groups} must divide in_channels={c_in} and out_channels={c_out}")
    kernel = kernel_size if isinstance(kernel_size, (tuple, list)) else (kernel_size,)
    if len(kernel) == 0:
        raise ValueError(f"kernel_size must be an int or a non-empty tuple of ints, got {kernel_size!r}")
    taps = 1
    for k in _args.int_tuple(kernel, len(kernel), "kernel_size", 1):
        taps *= k
    return (taps * (c_in // groups) + int(bias)) * c_out


from pyconv import functional  # noqa: E402  (after the helpers it does not need)


def __getattr__(name):
    """``pyconv.nn``, ``pyconv.models`` and ``pyconv.onnx`` are imported on first use (PEP 562)."""
    if name in ("nn", "models", "onnx"):
        import importlib

        return importlib.import_module(f"pyconv.{name}")
    raise AttributeError(f"module 'pyconv' has no attribute {name!r}")
