#!/usr/bin/env bash
# Build pyconv in scratch copies with (a) bounds checks (PYCONV_DEBUG=1) and (b)
# AddressSanitizer + UndefinedBehaviorSanitizer, and run the test suite against each.
#
#   tools/sanitize.sh [debug|asan|all] [pytest args...]     (default: all)
#   PYCONV_SCRATCH=/tmp/pyconv-sanitize  where the copies go (one subfolder per build)
#
# The working tree (tracked files plus untracked, non-ignored ones: what you are about to
# commit) is copied; the checkout itself is never rebuilt. Each copy is built in place
# with `setup.py build_ext --inplace` and tested from inside the copy, so its pyconv comes
# first on sys.path (ahead of any editable install). The script fails if any run fails or
# if the imported pyconv is not the scratch build.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCRATCH=${PYCONV_SCRATCH:-/tmp/pyconv-sanitize}
PYTHON=${PYTHON:-python}
MODE=${1:-all}
[[ $# -gt 0 ]] && shift
PYTEST_ARGS=("$@")
[[ ${#PYTEST_ARGS[@]} -eq 0 ]] && PYTEST_ARGS=(-q -p no:cacheprovider)

copy_tree() {  # copy_tree DEST: the working tree, without build output
    rm -rf "$1" && mkdir -p "$1"
    (cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
        | while IFS= read -r -d '' f; do [[ -e $f ]] && printf '%s\0' "$f"; done \
        | tar --null -T - -cf -) | tar -xf - -C "$1"
}

build() {  # build DEST [env assignments...]
    local dest=$1; shift
    copy_tree "$dest"
    echo "== building $dest ($*)"
    (cd "$dest" && env "$@" "$PYTHON" setup.py -q build_ext --inplace -j 2 >build.log 2>&1) \
        || { tail -50 "$dest/build.log"; return 1; }
}

run_tests() {  # run_tests DEST EXPECT_DEBUG [env assignments...]
    local dest=$1 expect_debug=$2; shift 2
    (cd "$dest" && env "$@" "$PYTHON" -c "
import pyconv, os, sys
here = os.path.realpath('pyconv')
assert os.path.dirname(os.path.realpath(pyconv.__file__)) == here, pyconv.__file__
config = pyconv.show_config(open(os.devnull, 'w'))
assert config['debug'] == $expect_debug, config
assert config['openmp'], 'the scratch build has no OpenMP: ' + str(config)
print('testing', here)")
    (cd "$dest" && env "$@" "$PYTHON" -m pytest "${PYTEST_ARGS[@]}")
}

status=0
if [[ $MODE == debug || $MODE == all ]]; then
    start=$SECONDS
    build "$SCRATCH/debug" PYCONV_DEBUG=1
    run_tests "$SCRATCH/debug" True || status=1
    echo "== debug (bounds checks): $((SECONDS - start)) s, status $status"
fi
if [[ $MODE == asan || $MODE == all ]]; then
    start=$SECONDS
    san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
    # In CC (not only CFLAGS/LDFLAGS) so that setup.py's OpenMP probe, which links a test
    # executable, also links the sanitizer runtimes; otherwise the build comes out serial.
    # PYCONV_OPT=-O0: ASan and UBSan check every access the source makes at any level
    # (at -O0 none is optimised away), and the instrumented build takes a minute, not
    # 4.7 (-O1) or 8.4 (-O3) on 2 cores; the suite on it ran 223 s (197-300 s at -O1).
    build "$SCRATCH/asan" "CC=${CC:-gcc} $san" "CFLAGS=-g" "LDFLAGS=$san" "PYCONV_OPT=-O0"
    # Python itself is not instrumented: the ASan runtime must be loaded first.
    # detect_leaks=0: CPython's interned objects and arenas look like leaks at exit.
    # allocator_may_return_null + max_allocation_size_mb: a huge allocation is NULL (a
    # MemoryError in Python, as without ASan) instead of an ASan abort or an OOM kill.
    # Subprocesses the tests start inherit LD_PRELOAD and these options.
    run_tests "$SCRATCH/asan" False \
        "LD_PRELOAD=$(gcc -print-file-name=libasan.so)" \
        "ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1:max_allocation_size_mb=8192" \
        "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1" || status=1
    echo "== asan+ubsan: $((SECONDS - start)) s, status $status"
fi
exit $status
