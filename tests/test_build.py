"""The build without OpenMP: PYCONV_NO_OPENMP=1 builds the same kernels serially, and
they give bitwise the results of the OpenMP build (run here on one thread and on two).

Slow (it compiles pyconv again, with only the kernel set it runs: about a minute and a
half on 2 cores): `python -m pytest -m slow`.
"""
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent("""
    import sys, numpy as np, pyconv, pyconv.functional as F
    assert pyconv.__file__.startswith(sys.argv[1]), pyconv.__file__
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 12, 19, 23)).astype(np.float32)
    w = rng.standard_normal((16, 6, 3, 3)).astype(np.float32)
    wt = rng.standard_normal((12, 5, 4, 4)).astype(np.float32)
    outs = [F.conv2d(x, w, None, 1, 1, 1, 2), F.conv2d(x, w, None, 2, (1, 2), 2, 2, algorithm="direct"),
            F.conv_transpose2d(x, wt, None, 2, 1), F.conv_transpose2d(x, wt, None, 2, 1, algorithm="direct"),
            *F.max_pool2d(x, 3, 2, 1, return_indices=True), F.avg_pool2d(x, 3, 2, 1, ceil_mode=True),
            F.adaptive_avg_pool2d(x, 5)]
    np.savez(sys.argv[2], openmp=pyconv.openmp_enabled(), kernels=pyconv._dispatch.name, *outs)
""")


def _results(python_path, out_file, threads):
    env = dict(os.environ, PYTHONPATH=python_path, OMP_NUM_THREADS=str(threads))
    subprocess.run([sys.executable, "-c", SCRIPT, python_path, out_file], env=env, check=True,
                   cwd=os.path.dirname(out_file))
    import numpy as np
    data = np.load(out_file)
    return (bool(data["openmp"]), str(data["kernels"]),
            [data[k] for k in sorted(data.files) if k.startswith("arr_")])


@pytest.mark.slow
def test_serial_build_matches_the_openmp_build(tmp_path):
    parallel = {t: _results(ROOT, str(tmp_path / f"omp{t}.npz"), t) for t in (1, 2)}
    assert all(openmp for openmp, _, _ in parallel.values())
    kernel_set = parallel[1][1]                 # the set a child process runs here
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        "build", "dist", "*.so", "*.c", ".git", "__pycache__", ".hypothesis", "*.egg-info"))
    # Only that kernel set (PYCONV_KERNEL_SETS): the other two would triple the build's
    # time, and are not called.
    env = dict(os.environ, PYCONV_NO_OPENMP="1", PYCONV_KERNEL_SETS=kernel_set)
    build = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=src,
                           env=env, capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    assert "-fopenmp" not in build.stdout.split("PYCONV_NO_OPENMP")[-1]
    assert [p.name.split(".")[0] for p in (src / "pyconv").glob("_kernels_*.so")] == [
        f"_kernels_{kernel_set}"]
    serial_openmp, serial_set, serial = _results(str(src), str(tmp_path / "serial.npz"), 2)
    assert serial_openmp is False and serial_set == kernel_set
    for _, parallel_set, outs in parallel.values():
        assert parallel_set == kernel_set
        assert len(serial) == len(outs) == 8
        for a, b in zip(serial, outs):
            assert a.dtype == b.dtype and a.shape == b.shape
            assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("name, value", [("PYCONV_OPT", "-Ofast"), ("PYCONV_OPT", "-O3 -march=native"),
                                         ("PYCONV_KERNEL_SETS", "avx512,sse9")])
def test_bad_build_settings_stop_the_build_at_once(name, value):
    """setup.py refuses a bad PYCONV_OPT or PYCONV_KERNEL_SETS before it builds anything
    (``--version`` runs nothing else), naming the variable and the value."""
    proc = subprocess.run([sys.executable, "setup.py", "--version"], cwd=ROOT, text=True,
                          capture_output=True, env=dict(os.environ, **{name: value}))
    assert proc.returncode != 0
    assert name in proc.stderr and value in proc.stderr


def _stub_names(path):
    """The public names a .pyi stub declares, following its ``from pyconv.X import *``."""
    import ast
    tree = ast.parse(open(path).read())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif (isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pyconv.")
              and any(alias.name == "*" for alias in node.names)):
            other = os.path.join(os.path.dirname(path), node.module.split(".", 1)[1] + ".pyi")
            names |= _stub_names(other)
    return {n for n in names if not n.startswith("_")}


@pytest.mark.parametrize("module", ["_conv", "_pool", "_threads", "_kernels_generic",
                                    "_kernels_avx2", "_kernels_avx512"])
def test_each_compiled_module_stub_names_what_the_module_has(module):
    import importlib
    import types
    import pyconv
    stub = os.path.join(os.path.dirname(pyconv.__file__), module + ".pyi")
    from pyconv import _dispatch
    try:
        if module.startswith("_kernels_"):   # a set this CPU lacks must not be imported: SIGILL
            compiled = _dispatch.load(module[len("_kernels_"):])
        else:
            compiled = importlib.import_module("pyconv." + module)
    except ImportError as error:   # an ISA set not built, or not runnable, here
        pytest.skip(f"pyconv.{module}: {error}")
    public = {n for n, v in vars(compiled).items()
              if not n.startswith("_") and not isinstance(v, types.ModuleType)}
    declared = _stub_names(stub)
    assert public - declared == set(), f"{module}.pyi lacks {sorted(public - declared)}"
    assert declared - public == set(), f"{module}.pyi declares {sorted(declared - public)}, not in the module"
