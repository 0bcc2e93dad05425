"""Build script for pyconv's compiled kernels.

Everything static (name, version, dependencies) lives in pyproject.toml; this file
only declares the Cython extensions and decides, at build time, how to compile them:

* OpenMP: the flag is found by compiling a tiny test program with each known flag.
  If none works the same kernels are built serially (``prange`` becomes a plain loop)
  and a loud warning is printed. ``PYCONV_NO_OPENMP=1`` forces the serial build.
* Cython directives are set once, here. ``PYCONV_DEBUG=1`` turns bounds checking,
  wrap-around and initialisation checks back on (and drops optimisation) for debugging.
* No host-specific flags (never ``-march=native``): the build must run on any x86-64
  and compile on aarch64.
"""

import json
import os
import platform
import re
import shutil
import sys
import tempfile
import textwrap

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

OPENMP_TEST_PROGRAM = textwrap.dedent(
    """
    #include <omp.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        return n > 0 ? 0 : 1;
    }
    """
)

# Candidate flags, in order: GCC/Clang on Linux, MSVC, Apple Clang with libomp.
OPENMP_FLAGS = [
    (["-fopenmp"], ["-fopenmp"]),
    (["/openmp"], []),
    (["-Xpreprocessor", "-fopenmp"], ["-lomp"]),
]


def env_flag(name):
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def c_string(text):
    """A C string literal for ``text`` (JSON's escapes are valid C for ASCII text)."""
    return json.dumps(text.encode("ascii", "replace").decode("ascii"))


def find_openmp_flags(compiler):
    """Return (compile_args, link_args) that build an OpenMP program, or None."""
    tmp = tempfile.mkdtemp(prefix="pyconv-openmp-")
    try:
        src = os.path.join(tmp, "test_openmp.c")
        with open(src, "w") as f:
            f.write(OPENMP_TEST_PROGRAM)
        for cflags, ldflags in OPENMP_FLAGS:
            try:
                objects = compiler.compile([src], output_dir=tmp, extra_postargs=cflags)
                compiler.link_executable(
                    objects, "test_openmp", output_dir=tmp, extra_postargs=ldflags
                )
            except Exception:  # any compile or link failure: try the next flag
                continue
            return cflags, ldflags
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class BuildExt(build_ext):
    """build_ext that adds OpenMP (when the compiler has it) and portable optimisation flags."""

    def finalize_options(self):
        super().finalize_options()
        # The extensions compile in parallel unless -j says otherwise: the three kernel
        # sets are most of a from-source install (3.5 -> 1.6 min on 2 cores).
        if not self.parallel:
            self.parallel = os.cpu_count() or 1

    def build_extensions(self):
        is_msvc = self.compiler.compiler_type == "msvc"
        if is_msvc:
            common = ["/O2"]
        else:
            # Python's own CFLAGS carry -fwrapv, which blocks loop optimisations on
            # signed index arithmetic; -fno-wrapv given later wins.
            # PYCONV_OPT replaces -O3 (tools/sanitize.sh builds with -O1: an ASan +
            # UBSan build at -O3 took 8 of a CI run's 21 minutes).
            common = [os.environ.get("PYCONV_OPT", "").strip() or "-O3", "-fno-wrapv",
                      "-fno-math-errno"]
            if not re.fullmatch(r"-O[0-3sgz]", common[0]):
                raise SystemExit(f"setup.py: PYCONV_OPT must be -O0, -O1, -O2, -O3, -Os, -Og "
                                 f"or -Oz (not -Ofast: it breaks NaN semantics), got {common[0]!r}")
            if env_flag("PYCONV_DEBUG"):
                common = ["-O0", "-g"]
        openmp = None
        if env_flag("PYCONV_NO_OPENMP"):
            print("pyconv: PYCONV_NO_OPENMP is set: building the serial kernels.")
        else:
            openmp = find_openmp_flags(self.compiler)
            if openmp is None:
                bar = "!" * 78
                print(
                    f"\n{bar}\npyconv: WARNING: the C compiler has no working OpenMP flag.\n"
                    "pyconv will be built WITHOUT OpenMP: every kernel runs on one thread\n"
                    "(results are identical, only slower). Install an OpenMP runtime\n"
                    f"(e.g. libgomp or libomp) and rebuild to run in parallel.\n{bar}\n",
                    file=sys.stderr,
                )
        cflags, ldflags = openmp if openmp else ([], [])
        for ext in self.extensions:
            ext.extra_compile_args = common + cflags + ext.extra_compile_args
            ext.extra_link_args = ldflags + ext.extra_link_args
        # What this build was compiled with, baked into pyconv._threads as C string
        # constants for pyconv.show_config(); a generated header, never committed.
        os.makedirs(self.build_temp, exist_ok=True)
        with open(os.path.join(self.build_temp, "_pyconv_build_info.h"), "w") as f:
            f.write(
                "/* Generated by setup.py at build time. */\n"
                f"#define PYCONV_BUILD_COMPILER {c_string(' '.join(self.compiler.compiler_so))}\n"
                f"#define PYCONV_BUILD_CFLAGS {c_string(' '.join(common + cflags))}\n"
                f"#define PYCONV_BUILD_LDFLAGS {c_string(' '.join(ldflags))}\n"
                f"#define PYCONV_BUILD_DEBUG {int(env_flag('PYCONV_DEBUG'))}\n"
            )
        for ext in self.extensions:
            ext.include_dirs.append(self.build_temp)
        super().build_extensions()


# Kernel sets: the same source compiled with each ISA's flags, on those files only.
# pyconv._dispatch picks one at import by CPU detection (PYCONV_KERNELS forces one).
KERNEL_SETS = {"generic": []}
if platform.machine().lower() in ("x86_64", "amd64", "i686", "x86"):
    KERNEL_SETS["avx2"] = ["-mavx2", "-mfma"]
    KERNEL_SETS["avx512"] = ["-mavx512f"]


def extensions():
    debug = env_flag("PYCONV_DEBUG")
    directives = {
        "language_level": 3,
        "boundscheck": debug,
        "wraparound": debug,
        "initializedcheck": debug,
        "cdivision": True,
        "nonecheck": False,
        "embedsignature": True,
    }
    exts = [
        Extension(f"pyconv.{name}", [f"pyconv/{name}.pyx"], include_dirs=["pyconv"])
        for name in ["_threads", "_conv", "_pool"]
    ]
    for name, flags in KERNEL_SETS.items():
        exts.append(Extension(f"pyconv._kernels_{name}", [f"pyconv/_kernels_{name}.pyx"],
                              include_dirs=["pyconv"], extra_compile_args=list(flags),
                              depends=["pyconv/_ukernel.h", "pyconv/_direct.h", "pyconv/_workspace.h",
                                       "pyconv/_igemm.pxi", "pyconv/_direct.pxi", "pyconv/_winograd.pxi",
                                       "pyconv/_gemv.pxi", "pyconv/_maxpool.pxi", "pyconv/_maxpool.h"]))
    # nthreads: the six modules are translated in parallel (about 30 s of Cython on one
    # core, once per build of a fresh tree -- CI builds three).
    return cythonize(exts, compiler_directives=directives, force=debug,
                     nthreads=os.cpu_count() or 1)


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
