"""Thread-count control for pyconv's OpenMP kernels, and what the build was compiled with.

Policy (see pyconv.set_num_threads): the thread count a kernel uses is
``min(process-wide limit, omp_get_max_threads())`` where the process-wide limit is set by
``pyconv.set_num_threads`` (default: none) and ``omp_get_max_threads()`` is OpenMP's
own per-thread setting -- which ``OMP_NUM_THREADS`` and threadpoolctl's
``threadpool_limits`` control. So all three knobs work and the smallest wins.
"""

cdef extern from "_openmp.h" nogil:
    int PYCONV_HAVE_OPENMP
    int omp_get_max_threads()
    void omp_set_num_threads(int n)
    int omp_get_num_procs()

cdef extern from "_pyconv_build_info.h":
    const char* PYCONV_BUILD_COMPILER
    const char* PYCONV_BUILD_CFLAGS
    const char* PYCONV_BUILD_LDFLAGS
    int PYCONV_BUILD_DEBUG

cdef int _limit = 0  # process-wide limit from set_num_threads; 0 = none
cdef bint _used_parallel = False  # a kernel has run with more than one thread
cdef bint _serial_after_fork = False  # this process is a fork of one that had
cdef int _initial_omp = omp_get_max_threads()  # OpenMP's setting at import, restored by set_limit(0)


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(PYCONV_HAVE_OPENMP)


def build_info():
    """The compiler command and flags this build used (recorded by setup.py)."""
    return {
        "compiler": PYCONV_BUILD_COMPILER.decode(),
        "extra_compile_args": PYCONV_BUILD_CFLAGS.decode(),
        "extra_link_args": PYCONV_BUILD_LDFLAGS.decode(),
        "debug": bool(PYCONV_BUILD_DEBUG),
        "openmp": bool(PYCONV_HAVE_OPENMP),
    }


def num_procs():
    """Processors OpenMP sees (1 without OpenMP)."""
    return omp_get_num_procs()


def set_limit(int n):
    """Set the process-wide limit and OpenMP's setting for this thread; 0 removes the
    limit and restores OpenMP's setting from import time."""
    global _limit
    _limit = n
    omp_set_num_threads(n if n > 0 else _initial_omp)


def get_limit():
    return _limit


def effective_num_threads():
    """Threads the next kernel called from this Python thread will use."""
    global _used_parallel
    if _serial_after_fork:
        return 1
    cdef int n = omp_get_max_threads()
    if _limit > 0 and _limit < n:
        n = _limit
    if n > 1:
        _used_parallel = True
    return n if n > 0 else 1


def at_fork_in_child():
    """Called in a child after fork(): if the parent had started OpenMP threads, run
    every kernel serially here. GNU libgomp's thread pool does not survive fork(),
    and the first parallel region in such a child would hang forever."""
    global _serial_after_fork
    if _used_parallel:
        _serial_after_fork = True


def serial_after_fork():
    """True in a forked child whose parent had used OpenMP threads (kernels run serially)."""
    return bool(_serial_after_fork)


def omp_max_threads():
    """OpenMP's own setting for this thread (omp_get_max_threads)."""
    return omp_get_max_threads()


def set_omp_max_threads(int n):
    """Set OpenMP's own setting for this thread (omp_set_num_threads)."""
    if n > 0:
        omp_set_num_threads(n)


cdef extern from "_cpu.h" nogil:
    int pyconv_cpu_has_avx2_fma()
    int pyconv_cpu_has_avx512f()


def cpu_features():
    """The instruction sets this CPU (and OS) can run, for the kernel-set dispatch."""
    return {"avx2": bool(pyconv_cpu_has_avx2_fma()), "avx512": bool(pyconv_cpu_has_avx512f())}
