"""Fuzzing the whole public API with hostile arguments, each target in its own process.

``tests/fuzz_worker.py`` draws the cases (hypothesis) and checks the contract on each:
return the reference's result (shape and dtype always, values for small outputs) or
raise ValueError/TypeError/OverflowError naming a parameter, or MemoryError; inputs and
``out=`` untouched on error. Running it in a child process turns a segfault, an abort or
a hang into a failed test that prints the case being run (with its replay command).

CI runs a bounded number of examples per target with a fixed seed (reproducible; about
1-2 s per target); ``tools/fuzz_long.sh`` runs many more with fresh seeds and shrinking.
Environment: PYCONV_FUZZ_EXAMPLES (default 60), PYCONV_FUZZ_SEED (default 0),
PYCONV_FUZZ_SHRINK=1 to shrink failures (slower), PYCONV_FUZZ_TIMEOUT (s, default 120).
"""
import os
import signal
import subprocess
import sys

import pytest
from conftest import subprocess_env

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from fuzz_worker import TARGETS  # noqa: E402

EXAMPLES = int(os.environ.get("PYCONV_FUZZ_EXAMPLES", "60"))
SEED = int(os.environ.get("PYCONV_FUZZ_SEED", "0"))
TIMEOUT = float(os.environ.get("PYCONV_FUZZ_TIMEOUT", "120"))


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz(target, tmp_path):
    case_file = tmp_path / "case.txt"
    cmd = [sys.executable, os.path.join(HERE, "fuzz_worker.py"), target,
           "--examples", str(EXAMPLES), "--seed", str(SEED), "--case-file", str(case_file)]
    if os.environ.get("PYCONV_FUZZ_SHRINK", "") in ("", "0"):
        cmd.append("--no-shrink")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT,
                              env=subprocess_env())
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{target}: no result in {TIMEOUT:.0f} s (a hang?); the case being run:\n"
                    f"{_last_case(case_file)}\n{(exc.stderr or b'')[-3000:]!r}")
    if proc.returncode == 0:
        return
    if proc.returncode < 0:
        how = f"killed by {signal.Signals(-proc.returncode).name}"
    else:
        how = f"exit status {proc.returncode}"
    pytest.fail(f"{target}: worker {how}.\nLast case:\n{_last_case(case_file)}\n"
                f"--- output ---\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}", pytrace=False)


def _last_case(case_file):
    """The case written just before the call that died (replay line, then its repr)."""
    if not case_file.exists():
        return "(none: the worker died before its first case)"
    line, *rest = case_file.read_text().splitlines() or [""]
    return "\n".join(rest) + f"\nreplay: python tests/fuzz_worker.py --replay {line}"
