"""End-to-end model benchmark: pyconv.onnx vs ONNX Runtime vs PyTorch, whole networks.

    python benchmarks/bench_models.py            # every model, batch 1 and 8
    python benchmarks/bench_models.py --quick    # three small models, fewer repeats

Per model and batch size: the median time of one forward pass (batch 1: latency) and
images per second (batch 8: throughput) for

* ``pyconv.onnx`` -- the ONNX graph loaded with :func:`pyconv.onnx.load` (BatchNorm folded,
  activations fused into the convolutions);
* ``pyconv.models`` -- the same architecture built natively and ``.fuse()``-d, where
  pyconv.models has it;
* ``ORT`` -- ONNX Runtime on the same ONNX file, ``intra_op_num_threads`` = the thread
  count, all graph optimisations on;
* ``torch`` -- PyTorch eager (``torch.no_grad``), where the architecture exists in
  pyconv.models (the torch.nn twins of tests/test_models.py, whose ONNX export is the
  file the other two run).

Every runner gets the same thread count (pyconv's limit, ORT's intra-op pool,
``torch.set_num_threads``, NumPy's BLAS through threadpoolctl). Repeats are interleaved
-- one call of each runner per round -- so a change in machine load hits all of them
alike; each runner is warmed up first. Ratios are peer time / pyconv.onnx time (>1:
pyconv is faster). "max err" is max |pyconv.onnx - ORT| relative to max |ORT|.

Before each timed call: the pause of ``run.py`` (until no other thread of the process
uses the CPU -- ONNX Runtime's idle workers spin well past 5 ms after a run, and a
pyconv run started 5 ms after one took 122 ms instead of 70 for ResNet-50), then one
untimed call (after an idle second the VM's vCPUs and the thread pools wake slowly: the
same run took 90 ms) -- the same for every runner.

The light models of the ``onnx`` package ship with ConstantOfShape(0.02) weights; they
are given seeded random weights here (a realistic value distribution), and for batch 8
their hard-coded batch-1 Reshape targets become -1 (for both runtimes alike).
"""

import argparse
import glob
import io
import os
import statistics
import sys
import time
import warnings

import numpy as np

import pyconv
import pyconv.onnx as ponnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import pause  # noqa: E402

LIGHT_QUICK = ("squeezenet", "shufflenet")
NATIVE = {  # pyconv.models name -> input shape (batch 1)
    "lenet5": (1, 1, 32, 32),
    "resnet18": (1, 3, 224, 224),
    "mobilenet_v2": (1, 3, 224, 224),
    "resnet50": (1, 3, 224, 224),
    "vgg16": (1, 3, 224, 224),
}
NATIVE_QUICK = ("resnet18",)


# ---------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------

def light_dir():
    import onnx
    return os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


def light_names():
    return sorted(os.path.basename(p)[len("light_"):-len(".onnx")]
                  for p in glob.glob(os.path.join(light_dir(), "light_*.onnx")))


def light_model(name, rng):
    """The light model with seeded random weights and a symbolic batch dimension."""
    import onnx
    from onnx import TensorProto, numpy_helper

    proto = onnx.load(os.path.join(light_dir(), f"light_{name}.onnx"))
    graph = proto.graph
    ints = {t.name: t for t in graph.initializer if t.data_type == TensorProto.INT64}
    pool = rng.standard_normal(1_000_003, np.float32)
    consumers = {}
    for node in graph.node:
        for i, n in enumerate(node.input):
            consumers.setdefault(n, []).append((node, i))
    kept = []
    for node in graph.node:
        if node.op_type != "ConstantOfShape" or node.input[0] not in ints:
            kept.append(node)
            continue
        shape = [int(s) for s in numpy_helper.to_array(ints[node.input[0]])]
        value = np.resize(np.roll(pool, -int(rng.integers(len(pool)))), shape)
        user, index = consumers[node.output[0]][0]
        while user.op_type == "Unsqueeze":
            user, index = consumers[user.output[0]][0]
        if user.op_type in ("Conv", "Gemm") and index == 1:   # He-normal: activations stay O(1)
            trans_b = any(a.name == "transB" and a.i for a in user.attribute)
            fan_in = np.prod(shape[1:]) if user.op_type == "Conv" or trans_b else shape[0]
            value *= np.float32(np.sqrt(2.0 / fan_in))
        elif (user.op_type == "BatchNormalization" and index in (1, 4)) or user.op_type == "Mul":
            value = np.abs(value) * np.float32(0.5) + np.float32(0.5)   # scales, variances
        else:
            value *= np.float32(0.1)                                     # biases, means
        t = graph.initializer.add()
        t.name, t.data_type, t.raw_data = node.output[0], TensorProto.FLOAT, value.tobytes()
        t.dims.extend(shape)
    reshape_targets = {n.input[1] for n in kept if n.op_type == "Reshape"}
    for t in graph.initializer:   # batch-1 Reshape targets -> -1 (any batch)
        if t.name in reshape_targets:
            shape = numpy_helper.to_array(t).copy()
            if shape[0] == 1 and -1 not in shape:
                shape[0] = -1
                t.CopyFrom(numpy_helper.from_array(shape, t.name))
    del graph.node[:]
    graph.node.extend(kept)
    inits = {t.name for t in graph.initializer}
    (inp,) = [v for v in graph.input if v.name not in inits]
    inp.type.tensor_type.shape.dim[0].dim_param = "N"
    for out in graph.output:
        out.type.tensor_type.shape.dim[0].dim_param = "N"
    del graph.value_info[:]
    shape = tuple(d.dim_value for d in inp.type.tensor_type.shape.dim[1:])
    return proto.SerializeToString(), (1,) + shape


def torch_twin(name):
    """The torch.nn twin of a pyconv.models architecture (tests/test_models.py), or None."""
    try:
        import torch
    except ImportError:
        return None, None
    tests = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")
    sys.path.insert(0, tests)
    try:
        from test_models import torch_models
        from test_nn import randomize_batch_norms
    finally:
        sys.path.remove(tests)
    torch.manual_seed(0)
    return torch, randomize_batch_norms(torch, torch_models(torch)[name]()).eval()


def native_model(name):
    """(ONNX bytes exported from the torch twin, input shape, pyconv model, torch model)."""
    from pyconv import models

    torch, theirs = torch_twin(name)
    shape = NATIVE[name]
    ours = getattr(models, name)(rng=0).eval()
    if theirs is None:
        return None, shape, ours.fuse(), None
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()}, strict=True)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(theirs, (torch.zeros(shape),), buffer, dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    return buffer.getvalue(), shape, ours.fuse(), theirs


# ---------------------------------------------------------------------------------------
# Runners: name -> call(x) returning a NumPy array
# ---------------------------------------------------------------------------------------

def ort_runner(onnx_bytes, threads):
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    name, out = session.get_inputs()[0].name, session.get_outputs()[0].name
    return lambda x: session.run([out], {name: x})[0]


def torch_runner(model, threads):
    import torch
    torch.set_num_threads(threads)

    def call(x):
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()
    return call


def timed(call, x):
    t = time.perf_counter()
    y = call(x)
    return time.perf_counter() - t, y


def bench(runners, x, repeats):
    """Interleaved repeats after one warm-up call each: {runner: (median s, output)}."""
    outputs = {name: call(x) for name, call in runners.items()}   # warm-up
    times = {name: [] for name in runners}
    for _ in range(repeats):
        for name, call in runners.items():
            pause(0.005)   # the previous runner's idle workers stop spinning
            call(x)        # untimed: wakes this runner's threads
            dt, outputs[name] = timed(call, x)
            times[name].append(dt)
    return {name: (statistics.median(times[name]), outputs[name]) for name in runners}


# ---------------------------------------------------------------------------------------
# Table
# ---------------------------------------------------------------------------------------

COLUMNS = ("pyconv.onnx", "pyconv.models", "ORT", "torch")


def fmt(seconds, batch):
    if seconds is None:
        return "n/a"
    return f"{seconds * 1e3:.1f} ms" if batch == 1 else f"{batch / seconds:.1f} img/s"


def ratio(peer, base):
    return "n/a" if peer is None or base is None else f"{peer / base:.2f}"


def markdown(rows, threads):
    head = ("| model | batch | " + " | ".join(COLUMNS) + " | ORT / pyconv | torch / pyconv | max err |")
    lines = [f"Threads: {threads}. Batch 1: median latency; batch 8: throughput "
             f"(images/s). Ratios: peer time / pyconv.onnx time (>1: pyconv faster).", "",
             head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        t = r["times"]
        cells = [fmt(t.get(c), r["batch"]) for c in COLUMNS]
        err = "n/a" if r["err"] is None else f"{r['err']:.1e}"
        lines.append(f"| {r['model']} | {r['batch']} | " + " | ".join(cells) +
                     f" | {ratio(t.get('ORT'), t.get('pyconv.onnx'))} | "
                     f"{ratio(t.get('torch'), t.get('pyconv.onnx'))} | {err} |")
    return "\n".join(lines)


def rel_err(a, b):
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


# ---------------------------------------------------------------------------------------

def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="three small models, 3 repeats")
    ap.add_argument("--threads", type=int, default=None, help="threads for every runner (default: pyconv's)")
    ap.add_argument("--repeats", type=int, default=None, help="timed calls per runner (default 7, quick 3)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--models", nargs="+", default=None,
                    help="light model names (e.g. resnet50) and/or pyconv.models names (e.g. resnet18)")
    return ap.parse_args(argv)


def main(argv=None):
    opts = parse_args(argv)
    threads = opts.threads or pyconv.get_num_threads()
    repeats = opts.repeats or (3 if opts.quick else 7)
    pyconv.set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(limits=threads, user_api="blas")   # pyconv's Gemm/MatMul go to NumPy's BLAS
    except ImportError:
        print("threadpoolctl is not installed: NumPy's BLAS threads are not limited", file=sys.stderr)
    light = [n for n in light_names() if opts.models is None or n in opts.models]
    native = [n for n in NATIVE if opts.models is None or n in opts.models]
    if opts.quick and opts.models is None:
        light = [n for n in light if n in LIGHT_QUICK]
        native = [n for n in native if n in NATIVE_QUICK]
    rng = np.random.default_rng(0)

    jobs = []   # (label, onnx bytes, input shape, pyconv.models model or None, torch model or None)
    for name in light:
        data, shape = light_model(name, rng)
        jobs.append((f"{name} (onnx light)", data, shape, None, None))
    for name in native:
        data, shape, ours, theirs = native_model(name)
        jobs.append((f"{name} (pyconv.models)", data, shape, ours, theirs))

    rows = []
    for label, data, shape, ours, theirs in jobs:
        runners = {}
        if data is not None:
            model = ponnx.load(data)
            runners["pyconv.onnx"] = model
        if ours is not None:
            runners["pyconv.models"] = ours
        if data is not None:
            ort = ort_runner(data, threads)
            if ort is not None:
                runners["ORT"] = ort
        if theirs is not None:
            runners["torch"] = torch_runner(theirs, threads)
        for batch in opts.batches:
            x = np.random.default_rng(batch).standard_normal((batch,) + shape[1:]).astype(np.float32)
            result = bench(runners, x, repeats)
            err = None
            if "pyconv.onnx" in result and "ORT" in result:
                err = rel_err(result["pyconv.onnx"][1], result["ORT"][1])
            rows.append({"model": label, "batch": batch, "err": err,
                         "times": {k: v[0] for k, v in result.items()}})
            print(f"  {label} batch {batch}: " + ", ".join(f"{k} {fmt(v[0], batch)}" for k, v in result.items()),
                  file=sys.stderr, flush=True)
    print(markdown(rows, threads))


if __name__ == "__main__":
    main()
