"""Training throughput: geoclim's TFT and LSTM against pytorch-forecasting's TFT.

Same data (a bundled sample through the same GeoDataModule), same task, same samples, same
hidden size, batch size and dropout, one process; both TFTs read the known (calendar) inputs
in their encoder and decoder. geoclim's networks are built as ``geoclim-train`` builds them
(``conf/model/<name>.yaml``: network, loss, optimiser), pytorch-forecasting's TFT with its
own defaults (Adam). Each model trains ``--batches`` batches
(one epoch, no validation) end to end, data loading included; the pytorch-forecasting
``TimeSeriesDataSet`` construction is timed separately (setup), as is geoclim's
``dm.setup()``. The models take turns for ``--repeats`` rounds and the best round of each
counts (other jobs on a shared machine only ever slow a round down). Reports samples/s of
wall time and of process CPU time and the ratios against pf_tft: of the best rounds, and the
median over rounds of the ratio of each round to pf_tft's round run beside it (paired).

    .venv/bin/python scripts/bench_train.py [--data naps_no2] [--batches 40] [--repeats 3]
    .venv/bin/python scripts/bench_train.py --save   # also record under experiments/bench_train/

Nothing is written unless ``--save`` (or ``--json PATH``) is given.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir

from geoclim.fileio import write_text
from geoclim.models.reference.pf_tft import PFTemporalFusionTransformer
from geoclim.training.instantiate import build_datamodule, build_module
from geoclim.training.loaders import WindowLoaders

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
OUT = ROOT / "experiments" / "bench_train"
log = logging.getLogger("bench_train")


def trainer(batches: int) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        limit_train_batches=batches,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )


def timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def geoclim_fit(dm, cfg):
    """A function training ``n`` batches of the geoclim network of ``cfg.model`` (warmed up).

    The module is built as ``geoclim-train`` builds it (:func:`build_module`: the model
    config's network, loss and optimiser; no scheduler, there is no validation here).
    """
    torch.manual_seed(0)
    module = build_module(cfg, dm)
    loaders = WindowLoaders(dm)
    trainer(2).fit(module, datamodule=loaders)  # warm-up (allocator, first-call costs)
    return (lambda n: trainer(n).fit(module, datamodule=loaders)), 0.0


def pf_fit(dm, hidden: int, heads: int, dropout: float, continuous: int):
    """A function training ``n`` batches of pytorch-forecasting's TFT, and its setup time."""
    from pytorch_forecasting import TemporalFusionTransformer
    from pytorch_forecasting.metrics import RMSE

    ref = PFTemporalFusionTransformer(
        hidden_size=hidden,
        attention_head_size=heads,
        dropout=dropout,
        hidden_continuous_size=continuous,
    )
    holder = {}
    setup_wall, _ = timed(lambda: holder.update(train=ref.split_dataset(dm, "train")))
    train = holder["train"]
    torch.manual_seed(0)
    model = TemporalFusionTransformer.from_dataset(
        train,
        loss=RMSE(),
        output_size=1,
        log_interval=-1,
        learning_rate=3e-3,
        **{k: v for k, v in ref.hparams.items() if k != "learning_rate"},
    )
    loader = train.to_dataloader(train=True, batch_size=dm.batch_size, num_workers=0)
    trainer(2).fit(model, train_dataloaders=loader)
    return (lambda n: trainer(n).fit(model, train_dataloaders=loader)), setup_wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="naps_no2", help="conf/data option")
    parser.add_argument("--task", default="no2_24h", help="conf/task option")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument(
        "--hidden-continuous", type=int, default=16, help="per-variable embedding size (both TFTs)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--save",
        action="store_true",
        help="record the results as experiments/bench_train/<data>_b<batch>.json",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")  # library deprecation chatter, not results
    torch.set_num_threads(args.threads)

    base = [
        f"data={args.data}",
        f"task={args.task}",
        f"data.batch_size={args.batch_size}",
        "paths.output_dir=/tmp/bench_train",
    ]
    net = {"hidden_size": args.hidden, "dropout": args.dropout}
    tft = {**net, "attention_heads": args.heads, "hidden_continuous_size": args.hidden_continuous}
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=base)
        models = {
            name: compose(
                "train",
                overrides=[
                    *base,
                    f"model={name}",
                    "model.scheduler=null",
                    *(f"model.net.{k}={v}" for k, v in sizes.items()),
                ],
            )
            for name, sizes in (("tft", tft), ("lstm", net))
        }
    dm = build_datamodule(cfg)
    setup_wall, _ = timed(dm.setup)
    samples = min(args.batches * args.batch_size, len(dm.index["train"]))
    fits = {
        "tft": geoclim_fit(dm, models["tft"]),
        "lstm": geoclim_fit(dm, models["lstm"]),
        "pf_tft": pf_fit(dm, args.hidden, args.heads, args.dropout, args.hidden_continuous),
    }
    rounds: dict[str, list[tuple[float, float]]] = {name: [] for name in fits}
    for _ in range(args.repeats):
        for name, (fit, _) in fits.items():
            rounds[name].append(timed(lambda fit=fit: fit(args.batches)))
    results = {}
    for name, (_, setup) in fits.items():
        wall = min(w for w, _ in rounds[name])
        cpu = min(c for _, c in rounds[name])
        results[name] = {
            "setup_s": setup or setup_wall,
            "wall_s": wall,
            "cpu_s": cpu,
            "rounds": rounds[name],
            "samples": samples,
            "samples_per_s": samples / wall,
            "samples_per_cpu_s": samples / cpu,
        }
    ref = results["pf_tft"]
    for r in results.values():  # the models alternate: round i of each ran side by side
        pairs = list(zip(r["rounds"], ref["rounds"], strict=True))
        r["paired_median_wall"] = statistics.median(p[0] / m[0] for m, p in pairs)
        r["paired_median_cpu"] = statistics.median(p[1] / m[1] for m, p in pairs)
    log.info(
        "data=%s task=%s train samples=%d (timed %d), batch=%d, hidden=%d, heads=%d, "
        "hidden_continuous=%d, dropout=%.2f, threads=%d, best of %d rounds, load average "
        "%s",
        args.data,
        args.task,
        len(dm.index["train"]),
        samples,
        args.batch_size,
        args.hidden,
        args.heads,
        args.hidden_continuous,
        args.dropout,
        args.threads,
        args.repeats,
        os.getloadavg(),
    )
    log.info(
        "%-8s %10s %14s %16s %12s %12s %14s %14s",
        "model",
        "setup_s",
        "samples/s",
        "samples/cpu_s",
        "x pf (wall)",
        "x pf (cpu)",
        "paired (wall)",
        "paired (cpu)",
    )
    for name, r in results.items():
        log.info(
            "%-8s %10.2f %14.0f %16.0f %12.2f %12.2f %14.2f %14.2f",
            name,
            r["setup_s"],
            r["samples_per_s"],
            r["samples_per_cpu_s"],
            r["samples_per_s"] / ref["samples_per_s"],
            r["samples_per_cpu_s"] / ref["samples_per_cpu_s"],
            r["paired_median_wall"],
            r["paired_median_cpu"],
        )
    record = {
        "args": vars(args) | {"json": str(args.json)},
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "lightning": L.__version__,
        },
        "load_average_at_end": os.getloadavg(),
        "ratios_vs_pf_tft": {
            name: {
                "wall": r["samples_per_s"] / ref["samples_per_s"],
                "cpu": r["samples_per_cpu_s"] / ref["samples_per_cpu_s"],
                "paired_median_wall": r["paired_median_wall"],
                "paired_median_cpu": r["paired_median_cpu"],
            }
            for name, r in results.items()
        },
        "results": results,
    }
    paths = [args.json] if args.json else []
    if args.save:
        paths.append(OUT / f"{args.data}_b{args.batch_size}.json")
    for path in paths:
        write_text(path, json.dumps(record, indent=2) + "\n")
        log.info("wrote %s", path)


if __name__ == "__main__":
    main()
