"""The networks' context options compose, smoke-run and survive the checkpoint."""

from pathlib import Path

import numpy as np
import pytest
import torch

from geoclim.data.normalize import location_stats
from geoclim.models.module import ForecastModule
from geoclim.training.instantiate import build_datamodule, build_module, location_dims
from geoclim.training.train import train

OPTIONS = {
    "embedding": ["model.net.location_embedding=4"],
    "lags": ["model.net.recent_lags=[0,1,5]", "model.net.recent_windows=[3,12]"],
    "location_norm": ["model.net.location_norm=true"],
}
ALL = [o for group in OPTIONS.values() for o in group]


@pytest.mark.slow  # two trainings (about 20 s each on the shared machine)
@pytest.mark.parametrize("model", ["lstm", "cnn"])
def test_every_context_option_together_smoke_runs_and_reloads(compose_cfg, model):
    cfg = compose_cfg(f"model={model}", *ALL)
    metrics = train(cfg)
    assert np.isfinite(metrics["test/rmse/no2"])
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt"
    module = ForecastModule.from_checkpoint(ckpt)
    scaler = module.net.context.scaler
    assert scaler is not None and not torch.all(scaler.std == 1)  # statistics travelled


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_each_context_option_builds_alone(compose_cfg, option):
    cfg = compose_cfg("model=lstm", *OPTIONS[option])
    dm = build_datamodule(cfg)
    dm.setup()
    net = build_module(cfg, dm).net
    assert (net.context.embedding is not None) == (option == "embedding")
    assert (net.context.summary is not None) == (option == "lags")
    assert (net.context.scaler is not None) == (option == "location_norm")


def test_location_norm_gets_the_train_statistics_of_the_data(compose_cfg):
    cfg = compose_cfg("model=lstm", "model.net.location_norm=true")
    dm = build_datamodule(cfg)
    dm.setup()
    dims = location_dims(dm)
    assert dims == {"n_lat": dm.ds.sizes["latitude"], "n_lon": dm.ds.sizes["longitude"]}
    net = build_module(cfg, dm).net
    mean, std = location_stats(dm.ds, dm.normalizer, dm.task.targets, dm.splits.train)
    np.testing.assert_array_equal(net.context.scaler.mean.numpy(), mean)
    np.testing.assert_array_equal(net.context.scaler.std.numpy(), std)
