import csv
from pathlib import Path

import numpy as np
import pytest

from geoclim.training.train import train


@pytest.mark.parametrize(
    ("overrides", "max_epochs", "patience"),
    [
        pytest.param(["model=lstm", "model.budget.max_epochs=13"], 13, 3, id="model-budget"),
        pytest.param(["model=tft", "model.budget.patience=6"], 8, 6, id="model-patience"),
        pytest.param(["model=persistence"], 8, 3, id="baseline-default"),
        pytest.param(
            ["model=lstm", "model.budget.max_epochs=13", "debug=smoke"], 1, 3, id="debug-wins"
        ),
        pytest.param(
            ["model=lstm", "model.budget.max_epochs=13", "trainer.max_epochs=2"],
            2,
            3,
            id="trainer-override-wins",
        ),
    ],
)
def test_per_model_budgets_compose(compose_cfg, overrides, max_epochs, patience):
    cfg = compose_cfg(*overrides, tiny=False)
    assert cfg.trainer.max_epochs == max_epochs
    assert cfg.callbacks.early_stopping.patience == patience


def test_multirun_jobs_get_their_own_models_budget(compose_cfg):
    lstm = compose_cfg("model=lstm", "model.budget.max_epochs=5", tiny=False)
    cnn = compose_cfg("model=cnn", tiny=False)
    assert (lstm.trainer.max_epochs, cnn.trainer.max_epochs) == (5, cnn.model.budget.max_epochs)


def test_checkpoints_and_early_stopping_watch_the_denormalised_rmse(compose_cfg):
    cfg = compose_cfg(tiny=False)
    assert cfg.monitor == "val/rmse" and cfg.optimized_metric == "val/rmse"
    assert cfg.callbacks.model_checkpoint.monitor == "val/rmse"
    assert cfg.callbacks.early_stopping.monitor == "val/rmse"


def _val_history(run_dir: Path, key: str) -> list[float]:
    rows = list(csv.DictReader((run_dir / "csv" / "metrics.csv").open()))
    return [float(r[key]) for r in rows if r.get(key) and r.get("epoch")]  # not the final row


@pytest.mark.parametrize("monitor", ["val/rmse", "val/loss"])
def test_best_checkpoint_is_the_epoch_with_the_best_monitored_metric(compose_cfg, monitor):
    cfg = compose_cfg(
        "model=lstm",
        f"monitor={monitor}",
        "trainer.max_epochs=4",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=null",  # the whole split, as the final evaluation
        "callbacks.early_stopping=null",
        "model.optimizer.lr=0.05",  # large steps: the epochs' scores differ
    )
    metrics = train(cfg)
    history = _val_history(Path(cfg.paths.output_dir), monitor)
    assert len(history) == 4
    assert metrics["checkpoint/best_epoch"] == int(np.argmin(history))
    assert metrics[monitor] == pytest.approx(min(history), rel=1e-5)


def test_val_rmse_is_the_mean_of_the_targets_rmse(compose_cfg):
    metrics = train(compose_cfg("model=lstm", "task=synthetic_pm25_quantiles"))
    per_target = [metrics["val/rmse/pm25"], metrics["val/rmse/no2"]]
    assert metrics["val/rmse"] == pytest.approx(np.mean(per_target), rel=1e-6)
