import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from geoclim.models.module import ForecastModule
from geoclim.training.instantiate import net_dims

from .conftest import DIMS, make_batch

LSTM = "geoclim.models.components.lstm.LSTMNet"
NET_CONFIG = {"_target_": LSTM, "hidden_size": 8, **net_dims(LSTM, DIMS)}
TASK = {"targets": ["no2", "o3"], "quantiles": []}
NORM = {
    "no2": {"mean": 2.0, "std": 0.5, "log": True},
    "o3": {"mean": 30.0, "std": 10.0, "log": False},
}


def make_module(**kwargs):
    torch.manual_seed(0)
    return ForecastModule(net=dict(NET_CONFIG), task=TASK, normalizer=NORM, **kwargs)


def test_denormalize_applies_each_targets_statistics():
    module = make_module()
    z = torch.zeros(1, 1, 2, 1, 1)
    physical = module.denormalize(z)
    assert physical[0, 0, 0].item() == pytest.approx(torch.expm1(torch.tensor(2.0)).item())
    assert physical[0, 0, 1].item() == pytest.approx(30.0)


def test_loss_ignores_masked_targets():
    module = make_module()
    batch = make_batch(b=3)
    batch["target_mask"][:, :, 1] = 0.0
    loss_a = module.loss_fn(module(batch)["prediction"], batch["target"], batch["target_mask"])
    batch["target"][:, :, 1] = 1e4
    loss_b = module.loss_fn(module(batch)["prediction"], batch["target"], batch["target_mask"])
    assert torch.equal(loss_a, loss_b)


def test_auto_loss_is_quantile_when_the_task_has_quantiles():
    module = ForecastModule(
        net={**NET_CONFIG, "n_quantiles": 3},
        task={"targets": ["no2", "o3"], "quantiles": [0.1, 0.5, 0.9]},
    )
    assert module.loss_fn.name == "quantile"
    assert make_module().loss_fn.name == "mse"


def test_predict_step_returns_prediction_and_positions():
    out = make_module().predict_step(make_batch(b=3), 0)
    assert set(out) == {"prediction", "time_idx", "lat_idx", "lon_idx"}
    assert out["prediction"].shape == (3, DIMS["horizon"], 2, 1, 1)


def test_optimizer_and_scheduler_partials_are_used():
    from functools import partial

    module = make_module(
        optimizer=partial(torch.optim.SGD, lr=0.1),
        scheduler=partial(torch.optim.lr_scheduler.StepLR, step_size=1),
    )
    config = module.configure_optimizers()
    assert isinstance(config["optimizer"], torch.optim.SGD)
    assert config["lr_scheduler"]["monitor"] == "val/loss"


def test_metrics_in_physical_units_and_checkpoint_is_self_contained(tmp_path):
    module = make_module()
    batches = [make_batch(b=4, seed=s) for s in range(2)]
    trainer = L.Trainer(
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    trainer.fit(module, DataLoader(batches, batch_size=None), DataLoader(batches, batch_size=None))
    metrics = trainer.callback_metrics
    assert {"val/loss", "val/rmse/no2", "val/mae/o3"} <= set(metrics)
    # RMSE in physical units: recompute by hand for o3 (std 10) on the val batches
    with torch.no_grad():
        errors = torch.cat(
            [(module(b)["prediction"] - b["target"])[:, :, 1].flatten() * 10 for b in batches]
        )
    assert metrics["val/rmse/o3"].item() == pytest.approx(
        errors.square().mean().sqrt().item(), rel=1e-4
    )
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    restored = ForecastModule.from_checkpoint(path)
    assert restored.task == TASK and restored.normalizer == NORM
    batch = make_batch(b=2, seed=5)
    module.eval()
    torch.testing.assert_close(restored(batch)["prediction"], module(batch)["prediction"])
