"""Smoke test of benchmarks/run.py: --quick on two tiny layers yields a table and the JSON.

It runs the real entry point in a subprocess, with whatever peers are installed (each
is optional), and checks the output's structure, never the timings.
"""
import json
import os
import re
import subprocess
import sys

import pytest
from conftest import subprocess_env

RUN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "run.py")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "results.json"
    proc = subprocess.run(
        [sys.executable, RUN, "--quick", "--suite", "pooling,float64", "--layers", "stem maxpool",
         "--threads", "1", "--sleep", "5", "--json", str(path)],
        capture_output=True, text=True, timeout=120, env=subprocess_env())
    assert proc.returncode == 0, proc.stderr
    with open(path) as f:
        return proc.stdout, json.load(f)


def test_prints_a_markdown_table_per_suite(quick_run):
    stdout, _ = quick_run
    assert "### pooling" in stdout and "### float64" in stdout
    assert "| layer | shape | pyconv ms |" in stdout
    assert "| ResNet stem maxpool | max 3x3/2 64 @112 |" in stdout
    assert "| **geometric mean** |" in stdout


def test_json_holds_every_measurement(quick_run):
    _, results = quick_run
    assert results["meta"]["threads"] == 1
    assert results["meta"]["peak_gflops"]["float32"] > 0
    assert set(results["suites"]) == {"pooling", "float64"}
    for suite in results["suites"].values():
        (layer,) = suite["layers"]
        assert layer["output_shape"] == [1, 64, 56, 56]
        assert len(layer["times_s"]["pyconv"]) == layer["repeats"] == 3
        assert layer["median_ms"]["pyconv"] > 0
        assert layer["max_error"]["pyconv"] == 0.0          # max pooling is exact
        assert layer["extra_mib"] >= 0.9 * layer["output_mib"] > 0   # RSS grows by pages
        assert set(layer["speedup"]) == set(layer["median_ms"]) - {"pyconv"}


@pytest.mark.parametrize("args", [["transposed", "--shapes", "1x32x5:8k2s2", "2x32x3:4k4s2p1"],
                                  ["transposed", "--read-only", "--shapes", "1x32x5:8k2s2"],
                                  ["maxpool", "--shapes", "1x8x20:k2s2", "2x3x15:k3s2p1c"],
                                  ["maxpool", "--against", "generic", "--shapes", "1x8x37:k3s2p1"],
                                  ["join", "--shapes", "resnet50:1"],
                                  ["rerun", "--shapes", "squeezenet:1"],
                                  ["layout", "--in-place", "--shapes", "1x40x12:11k1", "2x16x9:32k1"],
                                  ["transpose", "--shapes", "1x33x70", "2x5x3"],
                                  ["transpose", "--float64", "--shapes", "3x64x40"]])
def test_paths_alternates_both_paths(args):
    """benchmarks/paths.py runs both paths of each shape and prints one line per shape."""
    if args[0] in ("join", "rerun"):
        pytest.importorskip("onnx")
    paths = os.path.join(os.path.dirname(RUN), "paths.py")
    proc = subprocess.run([sys.executable, paths, *args, "--budget", "0", "--threads", "1"],
                          capture_output=True, text=True, timeout=120, env=subprocess_env())
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if "ratio" in line]
    assert len(lines) == len(args) - args.index("--shapes") - 1
    if args[0] in ("join", "rerun", "layout", "transpose") or "--against" in args:   # the same output, bit for bit
        assert all("bitwise" in line for line in lines), lines


def test_auto_ab_shows_where_the_choice_differs():
    """benchmarks/auto_ab.py: with the streamed-filter rule off on the base side, ResNet-50's
    256@14x14 layers choose F(4, 3) there and F(2, 3) as the code is, marked with '*'."""
    pytest.importorskip("onnx")
    script = os.path.join(os.path.dirname(RUN), "auto_ab.py")
    proc = subprocess.run([sys.executable, script, "--model", "resnet50", "--rounds", "1",
                           "--threads", "1", "--set", "_WINOGRAD_STREAMED_BYTES=inf"],
                          capture_output=True, text=True, timeout=300, env=subprocess_env())
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| 256 | 14 | 256 | 3 | 14 |")]
    assert rows and "| winograd | winograd2x2 * |" in rows[0], proc.stdout
    assert "whole passes: base" in proc.stdout
    bad = subprocess.run([sys.executable, script, "--set", "_NO_SUCH=1"], capture_output=True,
                         text=True, timeout=120, env=subprocess_env())
    assert bad.returncode != 0 and "_NO_SUCH" in bad.stderr


@pytest.mark.parametrize("model", ["squeezenet", "lenet5"])   # a light model, a pyconv.models export
def test_profile_model_compares_convolutions_by_shape(model):
    """benchmarks/profile_model.py: pyconv.onnx step by step beside ORT's profiler, one
    table row per convolution shape."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    if model == "lenet5":
        pytest.importorskip("torch")
    script = os.path.join(os.path.dirname(RUN), "profile_model.py")
    proc = subprocess.run([sys.executable, script, "--model", model, "--threads", "1", "--repeats", "2"],
                          capture_output=True, text=True, timeout=180, env=subprocess_env())
    assert proc.returncode == 0, proc.stderr
    assert f"{model} b1, 1 threads: pyconv.onnx" in proc.stdout
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) >= 3   # the header and at least two convolution shapes


@pytest.mark.parametrize("m", ["4", "2"])
def test_winograd_phases_splits_a_call_and_leaves_the_kernels_whole(m):
    script = os.path.join(os.path.dirname(RUN), "winograd_phases.py")
    proc = subprocess.run([sys.executable, script, "--shapes", "1x8x9:5", "2x16x6:16", "--m", m,
                           "--budget", "0", "--threads", "1"],
                          capture_output=True, text=True, timeout=120, env=subprocess_env())
    assert proc.returncode == 0, proc.stderr
    assert "GFLOP/s" in proc.stdout
    for shape in ("1x8x9:5", "2x16x6:16"):
        assert re.search(rf"^  {re.escape(shape)} +\d+\.\d+ ", proc.stdout, re.M), proc.stdout


def test_winograd_set_phases_leaves_out_parts_and_restores_the_whole_call():
    import numpy as np
    from pyconv import _dispatch
    kernels = _dispatch.kernels
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 8, 9, 9)).astype(np.float32)
    w = rng.standard_normal((5, 8, 3, 3)).astype(np.float32)
    u = np.empty((36, 5, 8), np.float32)
    kernels.winograd_weights(w, u)
    b = np.zeros(5, np.float32)

    def run(skip):
        y = np.full((1, 5, 9, 9), 7.0, np.float32)
        previous = kernels.set_phases(skip)
        try:
            kernels.winograd_conv2d(x, u, b, y, 1, 1, -np.inf, np.inf, 1)
        finally:
            kernels.set_phases(previous)
        return y

    whole = run(0)
    assert not np.all(whole == 7.0)
    assert np.all(run(4) == 7.0) and np.all(run(2) == 7.0)   # no output transform: y untouched
    assert np.array_equal(run(0), whole)
    with pytest.raises(ValueError, match="skip"):
        kernels.set_phases(8)
    assert kernels.set_phases(0) == 0


@pytest.mark.parametrize("dtype_flag", [[], ["--float64"], ["--kernel", "winograd_weights"],
                                        ["--kernel", "winograd2_weights"]])
def test_ab_against_a_built_set(dtype_flag):
    """benchmarks/ab.py --against: two built kernel sets (here the same one), no base
    build; one line per shape, and no 'outputs differ' note for the same kernels."""
    script = os.path.join(os.path.dirname(RUN), "ab.py")
    proc = subprocess.run([sys.executable, script, "--set", "generic", "--against", "generic",
                           *dtype_flag, "--shapes", "1x16x9:8k3p1", "2x8x13:16k3p1",
                           "--budget", "0", "--threads", "1"],
                          capture_output=True, text=True, timeout=120, env=subprocess_env())
    assert proc.returncode == 0, proc.stderr
    assert len([line for line in proc.stdout.splitlines() if " ms  new/base " in line]) == 2
    assert "differ" not in proc.stdout
