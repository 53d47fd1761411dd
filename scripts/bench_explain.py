"""Benchmark: samples explained per second, for every attribution method.

One synthetic task (NO2 from 24 h of NO2, t2m, u10, blh, forecast hour-of-day and wind,
elevation; 12 leads) on a 12 x 12 grid (144 "stations" per init time): untrained but
realistically sized networks (the conf/model defaults), a LightGBM tree baseline, and the
LSTM exported to ONNX for the model-agnostic methods. Each method explains the same test
samples (every lead: one attribution per lead) and the script prints samples per second and
the ratio to feature ablation of the same model (the cheapest exact method).

    python -m scripts.bench_explain            # prints
    python -m scripts.bench_explain --save     # also writes experiments/bench_explain/
    python -m scripts.bench_explain --quick    # fewer samples, no ONNX export
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch

import geoclim.explain.captum as explain_captum
from geoclim.data.datamodule import GeoDataModule
from geoclim.data.synthetic import make_dataset
from geoclim.data.task import ForecastTask
from geoclim.explain.network import explain_network
from geoclim.explain.tft import explain_tft
from geoclim.explain.tree_shap import explain_trees
from geoclim.fileio import write_text
from tests.support.demo_export import build_net

OUT = Path(__file__).resolve().parents[1] / "experiments" / "bench_explain"
TASK = ForecastTask(
    targets=("no2",),
    past_inputs=("t2m", "u10", "blh"),
    future_inputs=("hour_sin", "hour_cos", "u10"),
    static_inputs=("elevation",),
    input_steps=24,
    horizon=12,
)
SIZES = {"lstm": {"hidden_size": 64}, "tft": {"hidden_size": 32}, "cnn": {"base_channels": 16}}


def datamodule(patch: int | None) -> GeoDataModule:
    ds = make_dataset(
        TASK.dynamic_variables, nlat=12, nlon=12, days=20, static=TASK.static_inputs, seed=0
    )
    dm = GeoDataModule(ds, TASK, window={"patch": patch}, batch_size=64)
    dm.setup()
    return dm


ONE_PASS = "feature_ablation (1 group/pass)"  # the reference: Captum's default batching


def one_group_per_pass() -> contextlib.AbstractContextManager:
    """Feature ablation as Captum runs it by default: one perturbed group per forward."""
    return mock.patch.object(explain_captum, "_per_eval", lambda inputs: 1)


def timed(fn, n: int) -> dict[str, float]:
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    return {"samples": n, "seconds": round(seconds, 3), "samples_per_s": round(n / seconds, 2)}


def network_rows(dm: GeoDataModule, n: int) -> dict[str, dict]:
    rows = {}
    for model in ("lstm", "tft"):
        torch.manual_seed(0)
        net = build_net(model, dm.dims, **SIZES[model])
        for method, opts in (
            ("feature_ablation", {}),
            ("integrated_gradients", {"n_steps": 32}),
            ("gradient_shap", {"n_samples": 16}),
        ):
            rows[f"{model}/{method}"] = timed(
                lambda net=net, m=method, o=opts: explain_network(
                    net, dm, method=m, max_samples=n, progress=False, **o
                ),
                n,
            )
        with one_group_per_pass():
            rows[f"{model}/{ONE_PASS}"] = timed(
                lambda net=net: explain_network(
                    net, dm, method="feature_ablation", max_samples=n, progress=False
                ),
                n,
            )
        if model == "tft":
            rows["tft/own_weights"] = timed(
                lambda net=net: explain_tft(net, dm, max_samples=n * 8, progress=False), n * 8
            )
    return rows


def main() -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--save", action="store_true", help="write experiments/bench_explain/")
    parser.add_argument("--quick", action="store_true", help="a small smoke version")
    args = parser.parse_args()
    n = 16 if args.quick else 64
    torch.set_num_threads(max(1, torch.get_num_threads()))
    point, grid = datamodule(1), datamodule(None)
    rows = network_rows(point, n)
    torch.manual_seed(0)
    cnn = build_net("cnn", grid.dims, **SIZES["cnn"])
    n_grid = min(8, len(grid.index["test"]))
    for method, opts in (("feature_ablation", {}), ("occlusion", {"block": 3})):
        rows[f"cnn/{method}"] = timed(
            lambda m=method, o=opts: explain_network(
                cnn, grid, method=m, max_samples=n_grid, progress=False, **o
            ),
            n_grid,
        )
    with one_group_per_pass():
        rows[f"cnn/{ONE_PASS}"] = timed(
            lambda: explain_network(
                cnn, grid, method="feature_ablation", max_samples=n_grid, progress=False
            ),
            n_grid,
        )
    from geoclim.baselines.trees import LightGBMBaseline

    tree = LightGBMBaseline(params={"n_estimators": 100}, max_train_samples=20_000).fit(point)
    rows["lightgbm/tree_shap"] = timed(
        lambda: explain_trees(tree, point, max_samples=n * 4, progress=False), n * 4
    )
    if not args.quick:
        rows |= onnx_rows(n)
    print(f"{'model/method':<36}{'samples/s':>12}{'x ablation':>12}")
    for key, row in rows.items():
        model = key.split("/")[0]
        ref = rows.get(f"{model}/feature_ablation") or rows.get(f"{model}/ablation")
        ratio = row["samples_per_s"] / ref["samples_per_s"] if ref else float("nan")
        print(f"{key:<36}{row['samples_per_s']:>12.1f}{ratio:>12.2f}")
    if args.save:
        report = {
            "task": TASK.to_dict(),
            "grid": "12 x 12, 20 days hourly",
            "machine": platform.platform(),
            "torch_threads": torch.get_num_threads(),
            "results": rows,
        }
        write_text(OUT / "results.json", json.dumps(report, indent=2) + "\n")
        print(f"wrote {OUT / 'results.json'}")


def onnx_rows(n: int) -> dict[str, dict]:
    """The exported LSTM explained over onnxruntime (no torch in the loop)."""
    from geoclim.serving.adapter import Forecaster
    from tests.support.demo_export import demo_export

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        export = demo_export(
            Path(tmp) / "lstm.onnx", model="lstm", task=TASK, layout="station", grid=(n, 1)
        )
        forecaster = Forecaster.from_onnx(export.path, max_missing=1.0)
        history = export.datamodule.ds.isel(time=slice(0, TASK.input_steps))
        rows["onnx/ablation"] = timed(lambda: forecaster.explain(history), n)
        few = history.isel(station=slice(0, 4))
        rows["onnx/shap"] = timed(lambda: forecaster.explain(few, method="shap"), 4)
    return rows


if __name__ == "__main__":
    main()
