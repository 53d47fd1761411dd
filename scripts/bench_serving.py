"""Benchmark: onnxruntime against torch eager for the served networks, in one process.

For each network (LSTM and TFT at their ``conf/model/*.yaml`` sizes, the CNN on a 32 x 32
grid) the demo export path builds the network on synthetic data with the 24 h -> 24 h task
of :data:`tests.support.demo_export.DEMO_TASK` (untrained weights: speed does not depend on them)
and exports it. Then, on the same real batch gathered by the datamodule:

* the bare network, ``torch.inference_mode()`` eager, vs onnxruntime as the service runs it
  (``Forecaster.run``: the adapter's session options and chunking) at batch 1 (one location,
  or one grid for the CNN) and at a bulk batch -- 256 locations for the point models, 16
  grids (inits) for the CNN -- the two taking turns call by call, in random order:
  median and p95 wall time,
  median CPU time, ratios (a bulk batch runs a quarter of ``--repeats``, the CNN's a tenth);
  with ``--block N`` each takes N calls in a row per turn (steady state, as a server);
* ``--rounds`` paired rounds of all that (the machine is shared): every round's ratios are
  kept and the reported ratio is their median;
* with ``--plain``, also the graph exported without the graph forms
  (:mod:`geoclim.export.graph_forms`: LSTM segments, folded step constants), taking turns
  with the other two: the rewrite's own gain, paired;
* the full serving path for one location, ``Forecaster.predict_arrays`` (validation, units,
  normalisation, calendar, gather, onnxruntime, de-normalisation) -- median, p95;
* with ``--profile``, where each runtime spends its time at batch 1: onnxruntime's own node
  profile (``SessionOptions.enable_profiling``, the service's optimisation level) and
  ``torch.profiler``'s self CPU time, both per operator type and per call.

Both runtimes use the same thread count (``--threads``, default 1: the service runs one
inference per request thread). Nothing is written unless ``--save`` (all models) or
``--json PATH`` is given; then the results, with the machine and its load average, go to
``experiments/bench_serving/serving.json`` (or ``PATH``).

    python -m scripts.bench_serving              # all models, prints only
    python -m scripts.bench_serving --save       # ... and records them
    python -m scripts.bench_serving --quick      # fewer repeats, LSTM only
    python -m scripts.bench_serving --models cnn --rounds 5
    python -m scripts.bench_serving --models lstm --plain   # ... and the graph without its forms
    python -m scripts.bench_serving --models cnn --profile  # ... and per-operator profiles
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from omegaconf import OmegaConf

from geoclim.export.onnx import export_net, write_metadata
from geoclim.fileio import write_text
from geoclim.serving.adapter import Forecaster
from tests.support.demo_export import DEMO_TASK, demo_export

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "bench_serving"


def timed(fn, repeats: int, warmup: int = 10) -> dict[str, float]:
    """Median and p95 wall time, and median process CPU time, of ``fn`` in ms."""
    for _ in range(warmup):
        fn()
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    times.sort()
    return {
        "median_ms": statistics.median(times),
        "p95_ms": times[min(len(times) - 1, int(np.ceil(0.95 * len(times))) - 1)],
        "cpu_median_ms": statistics.median(cpu),
    }


def interleaved(
    fns: dict, repeats: int, warmup: int = 5, block: int = 1
) -> dict[str, dict[str, float]]:
    """:func:`timed` of each of ``fns``, taking turns (load hits all alike).

    Each turn runs the functions in a fresh (seeded) random order: the call right after
    torch eager finds the caches emptied by it (at batch 1 it ran 10-30 % slower than in the
    next place), so every function follows every other one equally often. With ``block``
    > 1 a turn runs each function ``block`` times in a row (every call timed), as a server
    running only that model would: the first call of a block still follows another runtime.

    Args:
        fns: the functions to time, by name.
        repeats: timed calls of each function (rounded up to whole blocks).
        warmup: untimed calls of each function first.
        block: consecutive calls of one function per turn.

    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    calls = {k: [] for k in fns}
    keys, rng = list(fns), random.Random(0)
    for _ in range(-(-repeats // block)):
        for k in rng.sample(keys, len(keys)):
            calls[k].extend(timed(fns[k], 1, warmup=0) for _ in range(block))
    out = {}
    for k, rows in calls.items():
        wall = sorted(r["median_ms"] for r in rows)
        out[k] = {
            "median_ms": statistics.median(wall),
            "p95_ms": wall[min(len(wall) - 1, int(np.ceil(0.95 * len(wall))) - 1)],
            "cpu_median_ms": statistics.median(r["cpu_median_ms"] for r in rows),
        }
    return out


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo`` on Linux), else what :mod:`platform` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def net_sizes(model: str) -> dict:
    cfg = OmegaConf.load(ROOT / "conf" / "model" / f"{model}.yaml")
    net = OmegaConf.to_container(cfg.net)
    return {k: v for k, v in net.items() if k not in ("_target_",)}


def tile(batch: dict, n: int) -> dict:
    idx = np.arange(n) % batch["past"].shape[0]
    return {k: v[idx].contiguous() for k, v in batch.items()}


BULK_BATCH = {"lstm": 256, "tft": 256, "cnn": 16}
"""The bulk batch of each network: 256 locations for point models, 16 whole grids (inits)."""


def plain_forecaster(demo, batch: dict, tmp: Path, threads: int) -> Forecaster:
    """The demo network exported again without the graph forms, served the same way."""
    path = tmp / f"{demo.path.stem}_plain.onnx"
    export_net(
        demo.net, batch, path, dynamic_spatial=demo.result.dynamic_spatial, graph_forms=False
    )
    write_metadata(path, demo.metadata)
    return Forecaster.from_onnx(path, threads=threads)


def ort_node_profile(trace: list[dict], calls: int) -> dict[str, float]:
    """Kernel time per operator type and call (us), from an onnxruntime profile trace.

    Args:
        trace: the events of the JSON file ``InferenceSession.end_profiling`` wrote.
        calls: the profiled ``run`` calls: each node's time is its median over its last
            ``calls`` runs (earlier ones are warm-up), summed over the nodes of each type.

    Returns:
        ``{op_type: us per call}``, largest first.

    """
    per_node: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    for event in trace:
        name = event.get("name", "")
        if event.get("cat") == "Node" and name.endswith("_kernel_time"):
            per_node[(event["args"]["op_name"], name)].append(float(event["dur"]))
    by_op: dict[str, float] = collections.defaultdict(float)
    for (op, _), durations in per_node.items():
        by_op[op] += statistics.median(durations[-calls:])
    return dict(sorted(by_op.items(), key=lambda kv: -kv[1]))


def profile_batch_1(f: Forecaster, path: Path, net, batch: dict, threads: int, calls: int) -> dict:
    """Per-operator time of onnxruntime (as the service runs it) and torch eager, batch 1."""
    from torch.profiler import ProfilerActivity, profile

    options = ort.SessionOptions()
    options.graph_optimization_level = f.session.get_session_options().graph_optimization_level
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.enable_profiling = True
    options.profile_file_prefix = str(path.with_suffix(""))
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {k: batch[k].numpy() for k in f.metadata.io.inputs}
    for _ in range(calls + 10):  # 10 warm-up calls
        session.run(None, feed)
    trace = json.loads(Path(session.end_profiling()).read_text())
    with torch.inference_mode():
        for _ in range(10):
            net(batch)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(calls):
                net(batch)
    eager = {
        e.key: e.self_cpu_time_total / calls
        for e in sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
        if e.self_cpu_time_total > 0
    }
    return {"calls": calls, "onnxruntime_us": ort_node_profile(trace, calls), "torch_us": eager}


def print_profile(model: str, prof: dict, top: int = 12) -> None:
    """The largest operator types of both runtimes, us per call."""
    for runtime in ("onnxruntime_us", "torch_us"):
        ops = prof[runtime]
        rows = ", ".join(f"{op} {us:.0f}" for op, us in list(ops.items())[:top])
        print(f"{model:5s} profile {runtime[:-3]:11s} total {sum(ops.values()):7.0f} us: {rows}")


def bench_model(
    model: str,
    tmp: Path,
    repeats: int,
    threads: int,
    rounds: int = 1,
    plain: bool = False,
    profile: bool = False,
    block: int = 1,
) -> dict:
    sizes = net_sizes(model)
    grid = (32, 32) if model == "cnn" else (6, 5)
    demo = demo_export(tmp / f"{model}.onnx", model=model, grid=grid, days=16, **sizes)
    dm = demo.datamodule
    # onnxruntime as the service runs it: the adapter's session options and chunked run()
    f = Forecaster.from_onnx(demo.path, threads=threads)
    names = list(f.metadata.io.inputs)
    batch = next(iter(dm.test_dataloader()))
    f_plain = plain_forecaster(demo, batch, tmp, threads) if plain else None
    rows = {
        "model": model,
        "sizes": sizes,
        "grid": list(grid),
        "exporter": demo.result.exporter,
        "opset": demo.result.opset,
        "graph_optimization": str(f.session.get_session_options().graph_optimization_level),
        "run_chunk": f.run_chunk,
        "graph_rewrites": list(demo.result.rewrites),
        "cases": {},
    }
    for bs in (1, BULK_BATCH[model]):
        b = tile(batch, bs)
        feed = {k: b[k].numpy() for k in names}
        calls = repeats if bs == 1 else max(repeats // (10 if model == "cnn" else 4), 10)
        runs = []
        for _ in range(rounds):
            fns = {"eager": lambda b=b: demo.net(b), "ort": lambda feed=feed: f.run(feed)}
            if f_plain is not None:
                fns["plain"] = lambda feed=feed: f_plain.run(feed)
            with torch.inference_mode():
                got = interleaved(fns, calls, block=block)
            run = {
                "torch_eager": got["eager"],
                "onnxruntime": got["ort"],
                "speedup_median": got["eager"]["median_ms"] / got["ort"]["median_ms"],
                "speedup_cpu_median": got["eager"]["cpu_median_ms"] / got["ort"]["cpu_median_ms"],
            }
            if "plain" in got:  # the same network, its graph as traced
                run["onnxruntime_plain_graph"] = got["plain"]
                run["speedup_plain_graph_median"] = (
                    got["eager"]["median_ms"] / got["plain"]["median_ms"]
                )
                run["speedup_plain_graph_cpu_median"] = (
                    got["eager"]["cpu_median_ms"] / got["plain"]["cpu_median_ms"]
                )
            runs.append(run)
        middle = sorted(runs, key=lambda r: r["speedup_median"])[len(runs) // 2]
        rows["cases"][f"batch_{bs}"] = {
            "torch_eager": middle["torch_eager"],  # the round with the median ratio
            "onnxruntime": middle["onnxruntime"],
            "speedup_median": statistics.median(r["speedup_median"] for r in runs),
            "speedup_cpu_median": statistics.median(r["speedup_cpu_median"] for r in runs),
            "rounds": runs,
        }
        if f_plain is not None:
            rows["cases"][f"batch_{bs}"]["speedup_plain_graph_median"] = statistics.median(
                r["speedup_plain_graph_median"] for r in runs
            )
    if profile:
        rows["profile_batch_1"] = profile_batch_1(
            f, demo.path, demo.net, tile(batch, 1), threads, calls=min(repeats, 200)
        )
    if model != "cnn":
        body = f.example_request(1)
        loc = body["locations"][0]
        past = {k: np.array([v]) for k, v in loc["past"].items()}
        future = {k: np.array([v]) for k, v in loc["future"].items()}
        init = np.datetime64(body["init_time"].rstrip("Z"))
        rows["cases"]["adapter_one_location"] = timed(
            lambda: f.predict_arrays(
                init, past, future=future, latitude=[loc["latitude"]], longitude=[loc["longitude"]]
            ),
            repeats,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3, help="paired rounds per case")
    parser.add_argument("--models", nargs="+", help="a subset of lstm tft cnn")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--plain", action="store_true", help="also time the graph without the graph forms"
    )
    parser.add_argument(
        "--block", type=int, default=1, help="consecutive calls of one runtime per turn"
    )
    parser.add_argument(
        "--profile", action="store_true", help="also profile both runtimes per operator"
    )
    parser.add_argument(
        "--save", action="store_true", help="write experiments/bench_serving/serving.json"
    )
    args = parser.parse_args()
    if args.block < 1:
        parser.error(f"--block must be >= 1 (consecutive calls per turn); got {args.block}")
    torch.set_num_threads(args.threads)
    models = args.models or (["lstm"] if args.quick else ["lstm", "tft", "cnn"])
    repeats = 50 if args.quick else args.repeats
    results = {
        "task": DEMO_TASK.to_dict(),
        "threads": args.threads,
        "repeats": repeats,
        "rounds": args.rounds,
        "block": args.block,
        "command": "python -m scripts.bench_serving " + " ".join(sys.argv[1:]),
        "machine": {
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "onnxruntime": ort.__version__,
        },
        "models": [],
    }
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            row = bench_model(
                model,
                Path(tmp),
                repeats,
                args.threads,
                args.rounds,
                args.plain,
                args.profile,
                args.block,
            )
            results["models"].append(row)
            if "profile_batch_1" in row:
                print_profile(model, row["profile_batch_1"])
            for case, r in row["cases"].items():
                if "onnxruntime" in r:
                    each = ", ".join(f"{x['speedup_median']:.2f}" for x in r["rounds"])
                    print(
                        f"{model:5s} {case:10s} eager {r['torch_eager']['median_ms']:8.3f} ms "
                        f"(p95 {r['torch_eager']['p95_ms']:8.3f})  onnxruntime "
                        f"{r['onnxruntime']['median_ms']:8.3f} ms (p95 "
                        f"{r['onnxruntime']['p95_ms']:8.3f})  ratio "
                        f"{r['speedup_median']:5.2f}x wall, {r['speedup_cpu_median']:5.2f}x cpu "
                        f"(median of rounds {each})"
                    )
                    if "speedup_plain_graph_median" in r:
                        plain = ", ".join(
                            f"{x['speedup_plain_graph_median']:.2f}" for x in r["rounds"]
                        )
                        print(
                            f"{'':5s} {case:10s} graph without its forms: ratio "
                            f"{r['speedup_plain_graph_median']:5.2f}x wall (rounds {plain})"
                        )
                else:
                    print(
                        f"{model:5s} {case:21s} median {r['median_ms']:.3f} ms, "
                        f"p95 {r['p95_ms']:.3f} ms"
                    )
    results["load_average_at_end"] = os.getloadavg()
    print(f"load average (1, 5, 15 min): {results['load_average_at_end']}")
    results["load_average_at_start"] = load_start
    paths = [args.json] if args.json else []
    if args.save and not args.quick and not args.models:
        paths.append(OUT / "serving.json")
    for path in paths:
        write_text(path, json.dumps(results, indent=2) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
