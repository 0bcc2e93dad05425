"""Where a whole network's time goes: pyconv.onnx step by step beside ONNX Runtime node
by node, in one process, on the same ONNX file (a light model of the ``onnx`` package with
seeded weights, as in bench_models.py).

    python benchmarks/profile_model.py --model resnet50 --batch 1 --threads 2
    python benchmarks/profile_model.py --model mobilenet_v2      # a pyconv.models export

pyconv's steps are timed in place during whole forward passes (each step's median over
--repeats passes); ORT's nodes come from its own profiler (``enable_profiling``). ORT
fuses nodes (a Conv with the following Add and ReLU), so convolutions are compared by
shape (C_in, H, C_out, k, OH) with each side's whole time for that shape: read a ratio
as "this layer in a network, with what each runtime fuses into it". Other operators
are listed per type. The per-layer suites (run.py) repeat one layer with its weights
hot in cache; here the weights of a ResNet-50 (100 MB) come from DRAM, as in use.
"""

import argparse
import collections
import json
import os
import sys
import tempfile
import time

import numpy as np

import pyconv
import pyconv.onnx as ponnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_models  # noqa: E402


def conv_key(shapes):
    """(C_in, H, C_out, k, OH) from (input, weight, output) shapes."""
    (x, w, y) = shapes
    return (x[1], x[2], w[0], w[2], y[2])


def timed_steps(model, times, shapes, key=lambda i: i):
    """Wrap every step of the pyconv.onnx ``model`` so that each call appends its time
    to times[key(i)] and records shapes[i] = [shapes of its first two array arguments
    (input, weight), the result's shape]. Returns the steps as they were."""
    wrapped = []
    for i, (fn, ins, outs, label, frees) in enumerate(model._steps):
        def step(*args, _fn=fn, _i=i):
            t0 = time.perf_counter()
            result = _fn(*args)
            times[key(_i)].append(time.perf_counter() - t0)
            arrays = [a.shape for a in args[:2] if hasattr(a, "shape")]
            shapes[_i] = arrays + [getattr(result, "shape", None)]
            return result
        wrapped.append((step, ins, outs, label, frees))
    steps, model._steps = model._steps, wrapped
    return steps


def profile_pyconv(model, x, repeats):
    times, shapes = collections.defaultdict(list), {}
    ops = {i: label.rsplit("(", 1)[-1].rstrip(")") for i, (_, _, _, label, _) in enumerate(model._steps)}
    steps = timed_steps(model, times, shapes)
    try:
        for _ in range(3):
            model(x)
        times.clear()
        total = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            total.append(time.perf_counter() - t0)
    finally:
        model._steps = steps
    per = [(ops[i], shapes[i], float(np.median(v)) * 1e3) for i, v in times.items()]
    return float(np.median(total)) * 1e3, per


def profile_ort(data, x, threads, repeats):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.enable_profiling = True
    so.log_severity_level = 3
    so.profile_file_prefix = os.path.join(tempfile.mkdtemp(prefix="pyconv-ortprof-"), "ort")
    sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    for _ in range(3):
        sess.run(None, {name: x})
    total = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run(None, {name: x})
        total.append(time.perf_counter() - t0)
    with open(sess.end_profiling()) as f:
        events = json.load(f)
    durs, info = collections.defaultdict(list), {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            node = e["name"][:-len("_kernel_time")]
            durs[node].append(e["dur"] / 1e3)
            a = e.get("args", {})
            ins = [list(d.values())[0] for d in a.get("input_type_shape", [])]
            outs = [list(d.values())[0] for d in a.get("output_type_shape", [])]
            info[node] = (a.get("op_name"), ins[:2] + outs[:1])
    per = [(info[k][0], info[k][1], float(np.median(v[-repeats:]))) for k, v in durs.items()]
    return float(np.median(total)) * 1e3, per


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet50",
                    help="a light model of the onnx package, or a pyconv.models name (its PyTorch "
                         "twin's ONNX export, as in bench_models.py; needs torch)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    opts = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    if opts.model in bench_models.NATIVE:
        data, shape = bench_models.native_model(opts.model)[:2]
    else:
        data, shape = bench_models.light_model(opts.model, rng)
    x = rng.standard_normal((opts.batch,) + shape[1:]).astype(np.float32)
    pyconv.set_num_threads(opts.threads)
    ours_total, ours = profile_pyconv(ponnx.load(data), x, opts.repeats)
    theirs_total, theirs = profile_ort(data, x, opts.threads, opts.repeats)
    print(f"{opts.model} b{opts.batch}, {opts.threads} threads: pyconv.onnx {ours_total:.2f} ms, "
          f"ORT {theirs_total:.2f} ms (median whole passes; ORT / pyconv {theirs_total / ours_total:.2f})\n")
    conv = [collections.defaultdict(list), collections.defaultdict(list)]
    other = [collections.defaultdict(float), collections.defaultdict(float)]
    for side, per in enumerate((ours, theirs)):
        for op, shapes, ms in per:
            if op == "Conv" and len(shapes) == 3 and all(shapes):
                conv[side][conv_key([tuple(s) for s in shapes])].append(ms)
            else:
                other[side][op] += ms
    print("| C_in | H | C_out | k | OH | layers | pyconv ms | ORT ms | ORT / pyconv |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for key in sorted(conv[0], key=lambda k: -sum(conv[0][k])):
        a, b = sum(conv[0][key]), sum(conv[1].get(key, []))
        ratio = f"{b / a:.2f}" if b else "–"
        print("| " + " | ".join(map(str, key)) + f" | {len(conv[0][key])} | {a:.2f} | {b:.2f} | {ratio} |")
    print("\nother operators (ms, summed per type; ORT fuses some into its convolutions):")
    for side, name in ((0, "pyconv"), (1, "ORT")):
        items = sorted(other[side].items(), key=lambda kv: -kv[1])
        print(f"  {name}: " + ", ".join(f"{op} {ms:.3f}" for op, ms in items))


if __name__ == "__main__":
    main()
