"""Benchmark: onnxruntime against torch eager for the served networks, in one process.

For each network (LSTM and TFT at their ``conf/model/*.yaml`` sizes, the CNN on a 32 x 32
grid) the demo export path builds the network on synthetic data with the 24 h -> 24 h task
of :data:`tests.support.demo_export.DEMO_TASK` (untrained weights: speed does not depend on them)
and exports it. Then, on the same real batch gathered by the datamodule:

* the bare network, ``torch.inference_mode()`` eager, vs ``onnxruntime`` ``session.run``
  at batch 1 (one location) and batch 256 (point models) -- median, p95, ratio;
* the full serving path for one location, ``Forecaster.predict_arrays`` (validation, units,
  normalisation, calendar, gather, onnxruntime, de-normalisation) -- median, p95.

Both runtimes use the same thread count (``--threads``, default 1: the service runs one
inference per request thread). Nothing is written unless ``--save`` is given; then the
results, with the machine and its load average, go to ``experiments/bench_serving/serving.json``.

    python -m scripts.bench_serving              # all models, prints only
    python -m scripts.bench_serving --save       # ... and records them
    python -m scripts.bench_serving --quick      # fewer repeats, LSTM only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from omegaconf import OmegaConf

from geoclim.fileio import write_text
from geoclim.serving.adapter import Forecaster
from tests.support.demo_export import DEMO_TASK, demo_export

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "bench_serving"


def timed(fn, repeats: int, warmup: int = 10) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return {
        "median_ms": statistics.median(times),
        "p95_ms": times[min(len(times) - 1, int(np.ceil(0.95 * len(times))) - 1)],
    }


def net_sizes(model: str) -> dict:
    cfg = OmegaConf.load(ROOT / "conf" / "model" / f"{model}.yaml")
    net = OmegaConf.to_container(cfg.net)
    return {k: v for k, v in net.items() if k not in ("_target_",)}


def tile(batch: dict, n: int) -> dict:
    idx = np.arange(n) % batch["past"].shape[0]
    return {k: v[idx].contiguous() for k, v in batch.items()}


def bench_model(model: str, tmp: Path, repeats: int, threads: int) -> dict:
    sizes = net_sizes(model)
    grid = (32, 32) if model == "cnn" else (6, 5)
    demo = demo_export(tmp / f"{model}.onnx", model=model, grid=grid, days=16, **sizes)
    dm = demo.datamodule
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(demo.path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    batch = next(iter(dm.test_dataloader()))
    rows = {
        "model": model,
        "sizes": sizes,
        "grid": list(grid),
        "exporter": demo.result.exporter,
        "cases": {},
    }
    for bs in (1,) if model == "cnn" else (1, 256):
        b = tile(batch, bs)
        feed = {k: b[k].numpy() for k in names}
        with torch.inference_mode():
            eager = timed(lambda b=b: demo.net(b), repeats)
        onnx = timed(lambda feed=feed: session.run(None, feed), repeats)
        rows["cases"][f"batch_{bs}"] = {
            "torch_eager": eager,
            "onnxruntime": onnx,
            "speedup_median": eager["median_ms"] / onnx["median_ms"],
            "speedup_p95": eager["p95_ms"] / onnx["p95_ms"],
        }
    if model != "cnn":
        f = Forecaster.from_onnx(demo.path, threads=threads)
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
    parser.add_argument(
        "--save", action="store_true", help="write experiments/bench_serving/serving.json"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = ["lstm"] if args.quick else ["lstm", "tft", "cnn"]
    repeats = 50 if args.quick else args.repeats
    results = {
        "task": DEMO_TASK.to_dict(),
        "threads": args.threads,
        "repeats": repeats,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "onnxruntime": ort.__version__,
        },
        "models": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            row = bench_model(model, Path(tmp), repeats, args.threads)
            results["models"].append(row)
            for case, r in row["cases"].items():
                if "onnxruntime" in r:
                    print(
                        f"{model:5s} {case:10s} eager {r['torch_eager']['median_ms']:8.3f} ms "
                        f"(p95 {r['torch_eager']['p95_ms']:8.3f})  onnxruntime "
                        f"{r['onnxruntime']['median_ms']:8.3f} ms (p95 "
                        f"{r['onnxruntime']['p95_ms']:8.3f})  ratio "
                        f"{r['speedup_median']:5.2f}x"
                    )
                else:
                    print(
                        f"{model:5s} {case:21s} median {r['median_ms']:.3f} ms, "
                        f"p95 {r['p95_ms']:.3f} ms"
                    )
    results["load_average_at_end"] = os.getloadavg()
    print(f"load average (1, 5, 15 min): {results['load_average_at_end']}")
    if args.save and not args.quick:
        OUT.mkdir(parents=True, exist_ok=True)
        write_text(OUT / "serving.json", json.dumps(results, indent=2) + "\n")
        print(f"wrote {OUT / 'serving.json'}")


if __name__ == "__main__":
    main()
