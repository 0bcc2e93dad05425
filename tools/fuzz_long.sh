#!/usr/bin/env bash
# Long fuzz run (releases, nightly): many examples per target, a fresh seed, shrinking on.
#   tools/fuzz_long.sh [examples-per-target] [seed]      (defaults: 5000, random)
# Failures print the shrunk case and a `python tests/fuzz_worker.py --replay ...` line.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYCONV_FUZZ_EXAMPLES=${1:-5000}
export PYCONV_FUZZ_SEED=${2:-$RANDOM$RANDOM}
export PYCONV_FUZZ_SHRINK=1
export PYCONV_FUZZ_TIMEOUT=${PYCONV_FUZZ_TIMEOUT:-3600}
echo "fuzzing: $PYCONV_FUZZ_EXAMPLES examples per target, seed $PYCONV_FUZZ_SEED"
exec python -m pytest tests/test_fuzz.py -p no:cacheprovider -q "${@:3}"
