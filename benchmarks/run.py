"""pyconv against its peers, layer by layer, on the shapes of real networks.

    python benchmarks/run.py --suite resnet50 --threads 2
    python benchmarks/run.py --suite all --threads 2 --json benchmarks/results/latest.json \\
        --plot benchmarks/results/speedup.png --update-readme
    python benchmarks/run.py --quick                  # a few cheap layers: the CI smoke test
    python benchmarks/run.py --list                   # the suites' layers, nothing timed
    python benchmarks/run.py --render benchmarks/results/latest.json --update-readme   # re-render a saved run

For each layer (benchmarks/suites.py) and each library (benchmarks/peers.py: pyconv,
PyTorch, ONNX Runtime, NumPy im2col + matmul -- each peer optional):

    warm-up ──> interleaved repeats: pyconv, torch, ort, numpy, pyconv, torch, ... ──> medians
      │   (before each turn: a pause until no thread spins, then untimed calls:
      │    2, and more until 1 ms has passed since the second)
      └──> first outputs vs a float64 NumPy result: max error
    one pyconv call in a fresh process (memory.py): peak extra resident memory

and prints a Markdown table per suite: median times, speedup = peer time / pyconv time
(> 1: pyconv is faster) with its geometric mean, pyconv's GFLOP/s (2 * MACs / time) and
percentage of the float32 peak measured in the same run (a large NumPy matmul), the
max errors and the extra MiB. Method and caveats: benchmarks/README.md.
"""

import argparse
import dataclasses
import datetime
import gc
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import peers  # noqa: E402
from suites import SUITE_PEERS, SUITES  # noqa: E402

REPO = os.path.dirname(HERE)
README = os.path.join(REPO, "README.md")
START, END = "<!-- performance:start -->", "<!-- performance:end -->"
MiB = 2.0 ** 20


# ---------------------------------------------------------------------------------------
# The machine
# ---------------------------------------------------------------------------------------

def cpu_model():
    """The 'model name' of /proc/cpuinfo (a VM may show only the family), else platform's guess."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def physical_cores():
    """Distinct (physical id, core id) pairs of /proc/cpuinfo; None where it does not say."""
    try:
        with open("/proc/cpuinfo") as f:
            blocks = f.read().strip().split("\n\n")
    except OSError:
        return None
    cores = set()
    for block in blocks:
        fields = dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        if "core id" in fields:
            cores.add((fields.get("physical id"), fields["core id"]))
    return len(cores) or None


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return [f for f in ("avx2", "fma", "avx512f", "avx512_bf16") if f in flags]
    except OSError:
        pass
    return []


def limit_blas_threads(threads):
    """NumPy's BLAS (the NumPy peer and the peak matmul) on ``threads`` threads, via threadpoolctl."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return "threadpoolctl is not installed, so NumPy's BLAS threads were not limited"
    threadpool_limits(limits=threads, user_api="blas")  # process-wide until exit
    return None


def measure_peak(dtype, size, repeats):
    """Best GFLOP/s of a ``size``-square NumPy matmul: what this machine's BLAS reaches."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size)).astype(dtype)
    b = rng.standard_normal((size, size)).astype(dtype)
    out = a @ b  # warm-up, and the output buffer
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
    return 2 * size ** 3 / best / 1e9


# ---------------------------------------------------------------------------------------
# One layer
# ---------------------------------------------------------------------------------------

def max_error(y, ref):
    """max |y - ref| / max |ref|: the error relative to the output's scale."""
    y = np.asarray(y, dtype=np.float64)
    if y.shape != ref.shape:
        return math.nan
    return float(np.max(np.abs(y - ref)) / max(np.max(np.abs(ref)), np.finfo(np.float64).tiny))


def pause(min_s, max_s=1.0, slice_s=0.01):
    """Sleep ``min_s``, then on until no other thread of this process is using the CPU.

    After a call, OpenMP (pyconv, PyTorch), OpenBLAS (NumPy) and ONNX Runtime keep their
    worker threads spinning for a while, waiting for more work -- OpenBLAS for ~0.1 s --
    and a spinning thread competes with the next library's threads for the cores. While
    this (main) thread sleeps, any CPU time the process uses is such spinning; the pause
    ends at the first ``slice_s`` in which it used under 10 % of a core (or at ``max_s``).
    """
    start = time.perf_counter()
    time.sleep(min_s)
    while time.perf_counter() - start < max_s:
        cpu, wall = time.process_time(), time.perf_counter()
        time.sleep(slice_s)
        if time.process_time() - cpu < 0.1 * (time.perf_counter() - wall):
            return


def prime(call, calls, settle_s):
    """Untimed calls before a timed one: ``calls``, then more until ``settle_s`` has passed
    since the last of them (at least one more).

    After a pause the library's thread pool -- and, on a VM, the idle vCPU each worker
    runs on -- has gone to sleep; waking them took 4-10 ms per call for the first one or
    two calls here, a cost that calls made back to back (a network's layers) never pay.
    Two calls were not always enough: pyconv's third call of a 0.08 ms layer still took
    twice its steady time (it pays a second wake-up on its second call), PyTorch's was
    steady; 1 ms of further calls made both steady.
    """
    for _ in range(calls):
        call()
    start = time.perf_counter()
    call()
    while time.perf_counter() - start < settle_s:
        call()


def timed(call):
    t0 = time.perf_counter()
    out = call()
    return time.perf_counter() - t0, out


def extra_memory(layer, threads):
    """Peak extra memory of one pyconv call, measured by memory.py in a fresh process:
    {"rss_bytes", "traced_bytes"}, or {} (and a message on stderr) when that fails."""
    spec = json.dumps(dataclasses.asdict(layer))
    proc = subprocess.run([sys.executable, os.path.join(HERE, "memory.py"), spec, str(threads)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"note: memory of {layer.name} not measured: {proc.stderr.strip()[-300:]}", file=sys.stderr)
        return {}
    return json.loads(proc.stdout)


def bench_layer(layer, libs, opts, peak, rng):
    """Warm up every library, then interleaved repeats; medians, speedups, errors, memory."""
    x, w, b = peers.make_inputs(layer, rng)
    ref = peers.reference(layer, x, w, b)
    result = {
        "suite_layer": layer.name, "aliases": list(layer.aliases), "shape": layer.label,
        "op": layer.op, "dtype": layer.dtype, "input_shape": list(layer.input_shape),
        "weight_shape": layer.weight_shape and list(layer.weight_shape),
        "output_shape": list(layer.output_shape), "macs": layer.macs, "flops": layer.flops,
        "times_s": {}, "median_ms": {}, "speedup": {}, "max_error": {}, "unsupported": {},
    }

    calls = {}
    for lib in libs:
        try:
            call = lib.prepare(layer, x, w, b)
            for i in range(opts.warmup):
                pause(opts.sleep)
                t, out = timed(call)
                if i == 0:
                    result["max_error"][lib.name] = max_error(lib.fetch(out), ref)
                del out
        except peers.Unsupported as exc:
            result["unsupported"][lib.name] = str(exc)
            continue
        except Exception as exc:  # noqa: BLE001 -- a peer failing must not stop the run
            result["unsupported"][lib.name] = f"{type(exc).__name__}: {str(exc).strip()[:120]}"
            continue
        calls[lib.name] = (call, t)
    if "pyconv" not in calls:
        raise RuntimeError(f"pyconv failed on {layer.name}: {result['unsupported'].get('pyconv')}")

    # Repeats: fixed, or as many rounds as fit the time budget (at least 3, odd: a true median).
    if opts.repeats:
        repeats = opts.repeats
    else:
        round_s = sum(t + (0 if opts.cold else t * opts.primers + max(t, opts.prime_ms)) + opts.sleep
                      for _, t in calls.values())
        repeats = int(min(max(opts.budget / round_s, opts.min_repeats), opts.max_repeats)) | 1
    times = {name: [] for name in calls}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            for name, (call, _) in calls.items():
                pause(opts.sleep)  # let the previous library's threads stop spinning
                if not opts.cold:
                    prime(call, opts.primers, opts.prime_ms)
                t, out = timed(call)
                del out
                times[name].append(t)
    finally:
        if gc_was_enabled:
            gc.enable()

    median = {name: statistics.median(ts) for name, ts in times.items()}
    result["repeats"] = repeats
    result["times_s"] = times
    result["median_ms"] = {name: 1e3 * t for name, t in median.items()}
    result["speedup"] = {name: t / median["pyconv"] for name, t in median.items() if name != "pyconv"}
    result["gflops"] = layer.flops / median["pyconv"] / 1e9
    result["pct_peak"] = 100 * result["gflops"] / peak[layer.dtype] if layer.is_conv else None
    memory = extra_memory(layer, opts.threads)
    result["extra_mib"] = memory["rss_bytes"] / MiB if memory else None
    result["traced_mib"] = memory["traced_bytes"] / MiB if memory else None
    result["output_mib"] = ref.size * np.dtype(layer.dtype).itemsize / MiB
    return result


# ---------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------

def fmt_ms(ms):
    if ms is None:
        return "n/a"
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}" if ms >= 1 else f"{ms:.3f}"


def fmt_err(e):
    return "n/a" if e is None else "nan" if math.isnan(e) else "0" if e == 0 else f"{e:.0e}"


def geomean(values):
    values = [v for v in values if v is not None and v > 0]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def fmt_mean(mean, covered, total):
    """A geometric mean, with how many of the suite's layers it covers when not all."""
    if not mean:
        return "n/a"
    return f"{mean:.2f}" + ("" if covered == total else f" ({covered}/{total})")


def covered(results, peer):
    return sum(peer in r["speedup"] for r in results)


def suite_geomeans(results, peer_names):
    return {p: geomean([r["speedup"].get(p) for r in results]) for p in peer_names}


def markdown_table(results, peer_names):
    head = (["layer", "shape", "pyconv ms"] + [f"{p} ms" for p in peer_names]
            + [f"vs {p}" for p in peer_names]
            + ["GFLOP/s", "% peak", "max err", "peers' max err", "extra MiB"])
    align = ["---", "---"] + ["---:"] * (len(head) - 2)
    rows = [head, align]
    for r in results:
        name = r["suite_layer"] + (f" (+{len(r['aliases'])})" if r["aliases"] else "")
        rows.append(
            [name, r["shape"] + ("" if r["dtype"] == "float32" else f" {r['dtype']}"),
             fmt_ms(r["median_ms"]["pyconv"])]
            + [fmt_ms(r["median_ms"].get(p)) for p in peer_names]
            + [f"{r['speedup'][p]:.2f}" if p in r["speedup"] else "n/a" for p in peer_names]
            + [f"{r['gflops']:.1f}", "–" if r["pct_peak"] is None else f"{r['pct_peak']:.1f}",
               fmt_err(r["max_error"].get("pyconv")),
               " / ".join(fmt_err(r["max_error"].get(p)) for p in peer_names),
               "n/a" if r["extra_mib"] is None else f"{r['extra_mib']:.1f}"])
    means = suite_geomeans(results, peer_names)
    rows.append(["**geometric mean**", "", ""] + [""] * len(peer_names)
                + [f"**{fmt_mean(means[p], covered(results, p), len(results))}**" if means[p] else "n/a"
                   for p in peer_names]
                + [""] * 5)
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    notes = sorted({f"{p}: {why}" for r in results for p, why in r["unsupported"].items()})
    lines += [""] + [f"n/a — {note}" for note in notes] if notes else []
    return "\n".join(lines)


def legend(peer_names, memory_note=True):
    parts = [
        "Times: medians of interleaved repeats, in ms. `vs X` = X's time / pyconv's time "
        "(> 1: pyconv is faster). GFLOP/s: pyconv's, 2·MACs / time (pooling: window elements / time); "
        "% peak: of the float{32,64} NumPy-matmul peak measured in the same run. "
        "max err: max |y − y₆₄| / max |y₆₄| against a float64 NumPy result"
        + (f" (peers in the order {' / '.join(peer_names)})" if peer_names else "") + ".",
    ]
    if memory_note:
        parts.append("extra MiB: how far one pyconv call grows the resident set (peak RSS in a fresh "
                     "process; its output and the kernels' workspaces included). "
                     "(+N): N more layers of the network have this shape.")
    return " ".join(parts)


# ---------------------------------------------------------------------------------------
# Output: JSON, plot, README
# ---------------------------------------------------------------------------------------

def write_json(path, meta, suites):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"meta": meta, "suites": suites}, f, indent=1, allow_nan=True)


def write_plot(path, suites, peer_names):
    import matplotlib
    import matplotlib.ticker
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s for s in suites if suites[s]["layers"]]
    counts = [len(suites[s]["layers"]) for s in names]
    fig, axes = plt.subplots(len(names), 1, figsize=(12, 1.2 * len(names) + 0.22 * sum(counts)),
                             gridspec_kw={"height_ratios": [c + 2 for c in counts]}, squeeze=False)
    bar = 0.8 / max(1, len(peer_names))
    all_values = [v for s in names for r in suites[s]["layers"] for v in r["speedup"].values() if v > 0]
    span = max([2.0] + [max(v, 1 / v) for v in all_values]) * 1.3        # symmetric about 1 on a log axis
    for ax, suite in zip(axes[:, 0], names):
        layers = suites[suite]["layers"]
        ys = np.arange(len(layers))
        for i, p in enumerate(peer_names):
            values = np.array([r["speedup"].get(p, np.nan) for r in layers])
            mean = suites[suite]["geomean"].get(p)
            label = f"vs {p}" + (f" (geomean {mean:.2f})" if mean else "")
            # Bars start at 1 so that "pyconv slower" points left and "pyconv faster" right.
            ax.barh(ys + (i - (len(peer_names) - 1) / 2) * bar, values - 1, left=1, height=bar, label=label)
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_xlim(1 / span, span)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_yticks(ys, [f"{r['suite_layer']}  ({r['shape']})" for r in layers], fontsize=7)
        ax.invert_yaxis()
        ax.set_title(f"{suite}: peer time / pyconv time (> 1: pyconv faster)", fontsize=9)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.grid(axis="x", which="major", alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def performance_section(meta, suites, peer_names, tables, plot=None):
    m = meta
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    peaks = ", ".join(f"{d} {g:.0f} GFLOP/s" for d, g in m["peak_gflops"].items())
    lines = [
        "_Generated by `benchmarks/run.py` — do not edit by hand; re-run the command below "
        "(method and caveats: [benchmarks/README.md](benchmarks/README.md))._",
        "",
        f"- Command: `{m['command']}` ({m['runtime_s'] / 60:.1f} min)",
        f"- Date: {m['date']}",
        f"- Machine: {m['cpu']} ({', '.join(m['cpu_flags']) or 'no AVX flags'}), "
        f"{m['physical_cores'] or '?'} cores / {m['logical_cpus']} logical CPUs, "
        f"{m['threads']} threads for every library",
        f"- Peak (NumPy matmul, best of {m['peak_repeats']}): {peaks}",
        f"- Versions: {versions}",
    ]
    lines += [f"- Note: {note}" for note in m["notes"]]
    lines += ["", "Geometric mean of the speedup (peer time / pyconv time; > 1: pyconv is faster; "
              "(k/n): over the k layers of n that the peer can run):", ""]
    lines.append("| suite | layers | " + " | ".join(f"vs {p}" for p in peer_names) + " |")
    lines.append("|---|---:|" + "---:|" * len(peer_names))
    for name, suite in suites.items():
        layers = suite["layers"]
        lines.append(f"| {name} | {len(layers)} | "
                     + " | ".join(fmt_mean(suite["geomean"].get(p), covered(layers, p), len(layers))
                                  for p in peer_names) + " |")
    if plot:
        rel = os.path.relpath(os.path.abspath(plot), os.path.dirname(os.path.abspath(README)))
        lines += ["", f"![pyconv's speedup over each peer, per layer]({rel})"]
    lines += ["", legend(peer_names), ""]
    for name, table in tables.items():
        lines += [f"<details><summary>{name}</summary>", "", table, "", "</details>", ""]
    return "\n".join(lines).rstrip() + "\n"


def update_readme(section):
    with open(README) as f:
        text = f.read()
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise SystemExit(f"README.md needs exactly one {START} ... {END} pair")
    head, rest = text.split(START)
    _, tail = rest.split(END)
    with open(README, "w") as f:
        f.write(head + START + "\n" + section + END + tail)


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------

def parse_args(argv):
    default_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default="resnet50",
                    help=f"comma-separated suites, or 'all': {', '.join(SUITES)} (default resnet50); "
                         "'models' runs whole networks (benchmarks/bench_models.py)")
    ap.add_argument("--threads", type=int, default=default_threads,
                    help=f"threads for pyconv and for every peer (default {default_threads})")
    ap.add_argument("--peers", default=",".join(peers.PEERS),
                    help="comma-separated peers to compare with (default: all; uninstalled ones are skipped)")
    ap.add_argument("--layers", default=None, help="only layers whose name contains this text")
    ap.add_argument("--quick", action="store_true",
                    help="a few cheap layers per suite, 3 repeats, small peak matmul (CI smoke test)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="timed calls per library (default: fill --budget, between 3 and 11)")
    ap.add_argument("--budget", type=float, default=1.5, help="seconds of timed calls per layer (default 1.5)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed calls per library first (default 1)")
    ap.add_argument("--sleep", type=float, default=50,
                    help="pause in ms before every library's turn, then on until no thread spins (default 50)")
    ap.add_argument("--primers", type=int, default=2,
                    help="untimed calls after each pause (default 2), then --prime-ms of more")
    ap.add_argument("--prime-ms", type=float, default=1.0,
                    help="after the --primers calls, untimed calls until this many ms have "
                         "passed (at least one), then the timed one (default 1)")
    ap.add_argument("--cold", action="store_true",
                    help="time the first call after each pause (thread-pool and vCPU wake-up "
                         "included) instead of one right after --primers untimed calls")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", metavar="PATH", help="save all results (times of every repeat included)")
    ap.add_argument("--plot", metavar="PATH.png", help="bar chart of the speedups (needs matplotlib)")
    ap.add_argument("--update-readme", action="store_true",
                    help="rewrite README.md's Performance section with this run's tables")
    ap.add_argument("--list", action="store_true", help="print the suites' layers and exit")
    ap.add_argument("--render", metavar="PATH.json",
                    help="time nothing: print the tables (and --plot, --update-readme) of a saved --json run")
    opts = ap.parse_args(argv)

    opts.suites = list(SUITES) if opts.suite == "all" else opts.suite.split(",")
    for s in opts.suites:
        if s not in SUITES:
            ap.error(f"unknown suite {s!r}; choose from {', '.join(SUITES)} or all")
    opts.peer_names = [p for p in opts.peers.split(",") if p]
    for p in opts.peer_names:
        if p not in peers.PEERS:
            ap.error(f"unknown peer {p!r}; choose from {', '.join(peers.PEERS)}")
    if opts.threads < 1:
        ap.error("--threads must be >= 1")
    if opts.update_readme and not opts.render and (opts.quick or opts.layers):
        ap.error("--update-readme records whole suites: not with --quick or --layers")
    opts.sleep /= 1e3
    opts.prime_ms /= 1e3
    opts.min_repeats, opts.max_repeats = 3, 11
    if opts.quick:
        opts.repeats = opts.repeats or 3
    return opts


def selected_layers(opts, suite):
    layers = SUITES[suite]
    if opts.quick:
        layers = [layer for layer in layers if layer.quick]
    if opts.layers:
        layers = [layer for layer in layers if opts.layers.lower() in layer.name.lower()]
    return layers


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--suite" in argv and argv[argv.index("--suite") + 1:][:1] == ["models"]:
        # Whole networks (ONNX light models and pyconv.models, vs ONNX Runtime and
        # PyTorch): a harness of its own, benchmarks/bench_models.py.
        import bench_models

        passed = [a for i, a in enumerate(argv) if a == "--quick" or (
            i > 0 and argv[i - 1] == "--threads") or a == "--threads"]
        return bench_models.main(passed)
    opts = parse_args(argv)
    if opts.list:
        for suite in opts.suites:
            print(f"{suite}:")
            for layer in selected_layers(opts, suite):
                print(f"  {layer.name:28s} {layer.label:30s} {layer.dtype}  {layer.macs / 1e6:9.1f} MMAC"
                      + (f"  also {', '.join(layer.aliases)}" if layer.aliases else ""))
        return 0

    if opts.render:
        with open(opts.render) as f:
            saved = json.load(f)
        meta, suites = saved["meta"], saved["suites"]
        print(f"rendering {opts.render} (measured {meta['date']}), nothing timed", file=sys.stderr)
    else:
        meta, suites = measure(opts, argv)
        if not suites:
            print("no layers selected", file=sys.stderr)
            return 1
    report(meta, suites, opts)
    return 0


def measure(opts, argv):
    """Run the selected suites: (meta, {suite: {"layers": [result, ...], "geomean": {...}}})."""
    started = time.perf_counter()
    notes = []
    blas_note = limit_blas_threads(opts.threads)
    if blas_note:
        notes.append(blas_note)
    libs = [peers.Pyconv(opts.threads)]
    for name in opts.peer_names:
        try:
            libs.append(peers.PEERS[name](opts.threads))
        except ImportError as exc:
            note = f"{name} skipped: not importable ({exc})"
            print(f"note: {note}", file=sys.stderr)
            notes.append(note)
    peer_names = [lib.name for lib in libs[1:]]

    work = {suite: selected_layers(opts, suite) for suite in opts.suites}
    dtypes = {layer.dtype for layers in work.values() for layer in layers} | {"float32"}
    peak_size, peak_repeats = (1024, 3) if opts.quick else (4096, 3)
    peak = {d: measure_peak(np.dtype(d), peak_size if d == "float32" else peak_size // 2, peak_repeats)
            for d in sorted(dtypes, reverse=True)}
    print(f"peak: {', '.join(f'{d} {g:.1f} GFLOP/s' for d, g in peak.items())} "
          f"({peak_size}² matmul, {opts.threads} threads)", file=sys.stderr)

    rng = np.random.default_rng(opts.seed)
    suites = {}
    for suite, layers in work.items():
        results = []
        # The winograd suite compares pyconv's algorithms on layers the other suites
        # already time against every peer: PyTorch alone is the yardstick there.
        suite_libs = [lib for lib in libs if lib.name in SUITE_PEERS.get(suite, (lib.name,))
                      or lib is libs[0]]
        for i, layer in enumerate(layers, 1):
            r = bench_layer(layer, suite_libs, opts, peak, rng)
            results.append(r)
            print(f"[{suite} {i}/{len(layers)}] {layer.name:28s} pyconv {fmt_ms(r['median_ms']['pyconv'])} ms, "
                  + ", ".join(f"{p} x{s:.2f}" for p, s in r["speedup"].items())
                  + f"  ({r['repeats']} repeats)", file=sys.stderr)
        if not results:
            continue
        suites[suite] = {"layers": results, "geomean": suite_geomeans(results, peer_names)}
        print(f"\n### {suite} ({opts.threads} threads)\n\n{markdown_table(results, peer_names)}\n", flush=True)

    versions = {"pyconv": libs[0].version, "numpy": np.__version__}
    versions.update({lib.name: lib.version for lib in libs[1:] if lib.name != "numpy"})
    versions["python"] = platform.python_version()
    meta = {
        "command": "python benchmarks/run.py " + shlex.join(argv),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu_model(), "cpu_flags": cpu_flags(), "physical_cores": physical_cores(),
        "logical_cpus": os.cpu_count(),
        "threads": opts.threads, "peers": peer_names, "versions": versions,
        "peak_gflops": peak, "peak_matmul_size": peak_size, "peak_repeats": peak_repeats,
        "method": {"warmup": opts.warmup, "cold": opts.cold, "primers": opts.primers,
                   "prime_ms": opts.prime_ms * 1e3,
                   "repeats": opts.repeats or f"auto {opts.min_repeats}..{opts.max_repeats}",
                   "budget_s": opts.budget, "sleep_ms": opts.sleep * 1e3, "statistic": "median",
                   "memory": "extra_mib: peak RSS growth of one pyconv call in a fresh process (memory.py), "
                             "output and C workspaces included; traced_mib: tracemalloc peak of the same call",
                   "error": "max|y - y64| / max|y64|, y64 = NumPy im2col/col2im/windows in float64"},
        "notes": notes,
    }
    meta["runtime_s"] = time.perf_counter() - started
    return meta, suites


def report(meta, suites, opts):
    """The legend, and the JSON, the plot and README.md's section where asked for."""
    peer_names = meta.get("peers") or [p for p in peers.PEERS
                                        if any(p in r["median_ms"] for s in suites.values() for r in s["layers"])]
    tables = {name: markdown_table(suite["layers"], peer_names) for name, suite in suites.items()}
    if opts.render:
        for name, table in tables.items():
            print(f"\n### {name} ({meta['threads']} threads)\n\n{table}\n")
    print(legend(peer_names) + "\n", flush=True)
    if opts.json:
        write_json(opts.json, meta, suites)
        print(f"results: {opts.json}", file=sys.stderr)
    if opts.plot:
        try:
            write_plot(opts.plot, suites, peer_names)
            print(f"plot: {opts.plot}", file=sys.stderr)
        except ImportError:
            print("note: --plot needs matplotlib (pip install 'pyconv[bench]'); no plot written", file=sys.stderr)
    if opts.update_readme:
        update_readme(performance_section(meta, suites, peer_names, tables, opts.plot))
        print("README.md: Performance section rewritten", file=sys.stderr)
    print(f"done; the measurements took {meta['runtime_s']:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
