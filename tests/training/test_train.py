import json
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from geoclim.errors import ConfigError, GeoclimError
from geoclim.training.train import train
from tests.registry import models, names, params
from tests.training.compose import compose_train

RUN_FILES = (
    "metrics.json",
    "predictions.nc",
    "scores.nc",
    "task.json",
    "normalizer.json",
    "checkpoints/best.ckpt",
    "checkpoints/last.ckpt",
    "csv/metrics.csv",
)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """``(cfg, metrics)`` of the tiny smoke run of a network, trained once per module."""
    runs = {}

    def _run(model):
        if model not in runs:
            cfg = compose_train(tmp_path_factory.mktemp(f"smoke_{model}"), f"model={model}")
            runs[model] = cfg, train(cfg)
        return runs[model]

    return _run


@pytest.mark.parametrize("model", names(models(kind="network")))
def test_network_smoke_run_writes_the_run_directory(smoke_run, model):
    cfg, metrics = smoke_run(model)
    out = Path(cfg.paths.output_dir)
    for name in RUN_FILES:
        assert (out / name).exists(), name
    assert np.isfinite(metrics["val/loss"]) and np.isfinite(metrics["test/rmse/no2"])
    assert "test/skill_persistence/no2" in metrics
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["val/loss"] == pytest.approx(metrics["val/loss"])


def test_predictions_sit_on_the_test_samples(compose_cfg):
    cfg = compose_cfg("model=tft", "task=synthetic_pm25_quantiles")
    train(cfg)
    from geoclim.training.instantiate import build_datamodule

    dm = build_datamodule(cfg)
    dm.setup()
    pred = xr.open_dataset(f"{cfg.paths.output_dir}/predictions.nc")
    t, _, _ = dm.index["test"].decode()
    np.testing.assert_array_equal(pred.init_time.values, dm.ds.time.values[np.unique(t)])
    assert set(pred.data_vars) == {"pm25", "no2"}
    assert pred.sizes["quantile"] == 3 and pred.sizes["lead_time"] == 6
    assert pred.no2.attrs["units"] == "ppb"


def test_same_command_gives_same_metrics(compose_cfg, smoke_run):
    _, a = smoke_run("lstm")  # the smoke run of the lstm, trained again here
    b = train(compose_cfg("model=lstm", name="b"))
    keys = [k for k in a if not k.startswith("time/")]
    assert {k: a[k] for k in keys} == {k: b[k] for k in keys}


def test_resume_ends_where_an_uninterrupted_run_ends(compose_cfg):
    common = ["model=lstm", "trainer.limit_train_batches=4", "callbacks.early_stopping=null"]
    full = compose_cfg(*common, "trainer.max_epochs=4", name="full")
    half = compose_cfg(*common, "trainer.max_epochs=2", name="half")
    m_full, _ = train(full), train(half)
    resumed = compose_cfg(
        *common,
        "trainer.max_epochs=4",
        f"ckpt_path={half.paths.output_dir}/checkpoints/last.ckpt",
        name="resumed",
    )
    m_resumed = train(resumed)
    last = [
        torch.load(f"{c.paths.output_dir}/checkpoints/last.ckpt", weights_only=False)
        for c in (full, resumed)
    ]
    assert last[0]["epoch"] == last[1]["epoch"] == 3
    for key, value in last[0]["state_dict"].items():
        torch.testing.assert_close(last[1]["state_dict"][key], value, rtol=1e-5, atol=1e-6)
    assert m_resumed["val/loss"] == pytest.approx(m_full["val/loss"], rel=1e-5)


def test_missing_checkpoint_is_a_config_error(compose_cfg):
    with pytest.raises(ConfigError, match="no such checkpoint"):
        train(compose_cfg("ckpt_path=/nonexistent/last.ckpt"))


def test_spatial_model_on_station_data_is_a_config_error(compose_cfg):
    cfg = compose_cfg("model=cnn", "task=no2_24h", "task.input_steps=6", "task.horizon=3")
    cfg.data.source = {
        "_target_": "tests.conftest.make_stations",
        "_partial_": True,
        "nt": 200,
        "variables": ["no2"],
    }
    with pytest.raises(GeoclimError, match="station network"):
        train(cfg)


@pytest.mark.parametrize("entry", params(models(kind="baseline")))
def test_baseline_is_fitted_without_lightning(compose_cfg, entry):
    cfg = compose_cfg(f"model={entry.name}", *entry.fast_overrides())
    metrics = train(cfg)
    out = Path(cfg.paths.output_dir)
    assert "test/rmse/no2" in metrics and "val/loss" not in metrics
    assert (out / "scores.nc").exists()
    assert (out / "model" / "tree.json").is_file() == entry.tree
    if entry.tree:  # the saved trees are the scored ones: they predict predictions.nc
        from geoclim.baselines.trees import TreeBaseline
        from geoclim.training.instantiate import build_datamodule

        dm = build_datamodule(cfg)
        dm.setup()
        again = TreeBaseline.load(out / "model", dm).predict(dm, "test")
        saved = xr.open_dataset(out / "predictions.nc").load()
        xr.testing.assert_allclose(again["no2"], saved["no2"], rtol=1e-6)


@pytest.mark.slow  # trains pytorch-forecasting's own TFT, a reference beside geoclim's models
def test_reference_pf_tft_predicts_the_same_samples(compose_cfg):
    cfg = compose_cfg(
        "model=pf_tft", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1"
    )
    metrics = train(cfg)
    assert np.isfinite(metrics["test/rmse/no2"])
    from geoclim.training.instantiate import build_datamodule

    dm = build_datamodule(cfg)
    dm.setup()
    pred = xr.open_dataset(f"{cfg.paths.output_dir}/predictions.nc")
    t, y, x = dm.index["test"].decode()
    assert pred.sizes["init_time"] == np.unique(t).size
    counted = np.isfinite(pred.no2.isel(lead_time=0).values).sum()
    assert counted == len(t)


def test_cnn_on_overlapping_patches_covers_the_grid(compose_cfg):
    cfg = compose_cfg("model=cnn", "model.window.patch=4", "model.window.stride=2")
    train(cfg)
    pred = xr.open_dataset(f"{cfg.paths.output_dir}/predictions.nc")
    assert dict(pred.no2.sizes)["latitude"] == 6 and dict(pred.no2.sizes)["longitude"] == 5
    assert not pred.no2.isnull().any()
