"""Interleaved A/B of whole TFT training steps: a git revision's TFT against the worktree's.

Copies ``geoclim/models/components/tft`` at ``--base`` (``git archive``) into a temporary
package, builds both TFTs as ``geoclim-train`` does (``conf/model/tft.yaml`` at the benchmark's
sizes, same seed, the worktree's weights loaded into the base network), checks that one step
with the same seed gives the same loss and gradients, then alternates ``--pairs`` times two
training steps (forward, loss, backward, the module's AdamW) of each, in alternating order,
and prints the median ratio of CPU times (new / base). Nothing is written.

    .venv/bin/python scripts/bench_tft_step.py --base 6cb27f6 --pairs 40
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from geoclim.training.instantiate import build_datamodule, build_module
from geoclim.training.loaders import WindowLoaders

ROOT = Path(__file__).resolve().parents[1]
TFT = "geoclim/models/components/tft"
SIZES = ["hidden_size=32", "dropout=0.1", "attention_heads=4", "hidden_continuous_size=16"]


def base_package(revision: str, into: Path) -> str:
    """Extract the TFT package at ``revision`` as the importable package ``tftbase``."""
    tar = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, TFT], check=True, capture_output=True
    ).stdout
    tarfile.open(fileobj=io.BytesIO(tar)).extractall(into, filter="data")
    package = into / "tftbase"
    (into / TFT).rename(package)
    for path in package.glob("*.py"):
        path.write_text(path.read_text().replace("geoclim.models.components.tft.", "tftbase."))
    sys.path.insert(0, str(into))
    return "tftbase.net.TemporalFusionTransformer"


def main() -> None:
    """Parse the arguments, extract the base TFT and run the A/B."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="main", help="git revision of the base TFT")
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        target = base_package(args.base, Path(tmp))
        overrides = [
            "data=naps_no2",
            "task=no2_24h",
            "data.batch_size=256",
            f"paths.output_dir={tmp}/out",
            "model=tft",
            "model.scheduler=null",
            *(f"model.net.{s}" for s in SIZES),
        ]
        with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
            configs = {
                "base": compose("train", overrides=[*overrides, f"model.net._target_={target}"]),
                "new": compose("train", overrides=overrides),
            }
        dm = build_datamodule(configs["new"])
        dm.setup()
        run(dm, configs, args.pairs)


def run(dm, configs, pairs: int) -> None:
    """Build both modules, check one step agrees, and time alternating training steps."""
    modules = {}
    for name, cfg in configs.items():
        torch.manual_seed(0)
        module = build_module(cfg, dm).train()
        optimizer = module.configure_optimizers()
        if isinstance(optimizer, dict):  # with a scheduler
            optimizer = optimizer["optimizer"]
        modules[name] = (module, optimizer)
    modules["base"][0].load_state_dict(modules["new"][0].state_dict())
    batches = [b for _, b in zip(range(10), WindowLoaders(dm).train_dataloader(), strict=False)]

    def step(name, batch, seed=None, update=True):
        module, optimizer = modules[name]
        if seed is not None:
            torch.manual_seed(seed)
        prediction = module(batch)["prediction"]
        loss = module.loss_fn(prediction, batch["target"], batch["target_mask"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if update:
            optimizer.step()
        return loss.item()

    losses = [step(name, batches[0], seed=1, update=False) for name in ("base", "new")]
    grads = [dict(m.named_parameters()) for m, _ in (modules["base"], modules["new"])]
    diff = max((grads[0][k].grad - p.grad).abs().max().item() for k, p in grads[1].items())
    print(f"same step: loss base {losses[0]:.7f} new {losses[1]:.7f}, max grad diff {diff:.1e}")
    times, ratios = {"base": [], "new": []}, []
    for i in range(pairs):
        for name in ("base", "new") if i % 2 == 0 else ("new", "base"):
            cpu = time.process_time()
            for k in range(2):
                step(name, batches[(2 * i + k) % len(batches)])
            times[name].append((time.process_time() - cpu) / 2)
        ratios.append(times["new"][-1] / times["base"][-1])
    print(
        f"new / base step CPU time: median {statistics.median(ratios):.3f} "
        f"(base {statistics.median(times['base']) * 1e3:.1f} ms, "
        f"new {statistics.median(times['new']) * 1e3:.1f} ms per step)"
    )


if __name__ == "__main__":
    main()
