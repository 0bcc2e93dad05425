"""Peak extra memory of one pyconv call, measured in a fresh process (run.py starts one per layer).

    python benchmarks/memory.py LAYER_JSON THREADS     # prints {"rss_bytes": ..., "traced_bytes": ...}

Two measures of the same call, output included in both:

* rss -- how far the resident set grows: VmHWM after the call minus VmRSS before it, the
  high-water mark reset just before (Linux: ``echo 5 > /proc/self/clear_refs``). It counts
  everything the call touches, the workspaces pyconv's C kernels malloc included. This is
  the number run.py's tables show.
* traced -- tracemalloc's peak, taken on a second call: NumPy and Python allocations only
  (a kernel's malloc is invisible to it).

Why a fresh process: a long-lived one hands freed memory back out to later allocations
without new pages being touched, so the RSS would under-count. Before measuring, a tiny
call of the same operator (a few channels, a few pixels) loads the code and starts the
OpenMP threads, so that neither is counted; its arrays stay alive, so that its freed
memory cannot be reused by the measured call.
"""

import dataclasses
import json
import os
import resource
import sys
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402
from suites import Layer  # noqa: E402


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def _reset_peak_rss():
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def tiny_twin(layer):
    """The same operator, kernel, stride and dtype on a few channels and pixels."""
    channels = 2 if layer.groups > 1 else 4
    groups = channels if layer.groups > 1 else 1
    return dataclasses.replace(layer, n=1, c_in=channels, c_out=channels if layer.is_conv else 0,
                               groups=groups, h=max(layer.k, 2) + layer.stride)


def measure(layer, threads):
    lib = peers.Pyconv(threads)
    rng = np.random.default_rng(0)
    keep = peers.make_inputs(tiny_twin(layer), rng)
    keep += (lib.prepare(tiny_twin(layer), *keep)(),)
    call = lib.prepare(layer, *peers.make_inputs(layer, rng))

    if _reset_peak_rss():
        before = _status_kib("VmRSS")
        out = call()
        rss = (_status_kib("VmHWM") - before) * 1024
    else:  # ru_maxrss is the whole process's peak: right only when the call sets it
        before = _status_kib("VmRSS")
        out = call()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before * 1024
    del out

    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    out = call()
    traced = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return {"rss_bytes": max(rss, 0), "traced_bytes": traced}


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    spec["aliases"] = tuple(spec.get("aliases", ()))
    print(json.dumps(measure(Layer(**spec), int(sys.argv[2]))))
