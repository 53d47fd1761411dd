"""Every trainable model of conf/model: train -> geoclim-export -> adapter == predictions.nc."""

import json

import pytest
import xarray as xr

from geoclim.cli.export import main
from geoclim.export.run import load_run
from geoclim.serving.adapter import Forecaster


@pytest.mark.slow
@pytest.mark.parametrize("model", ["cnn", "tft", "lightgbm", "xgboost", "random_forest"])
def test_every_model_exports_and_serves_its_test_predictions(tmp_path, model, make_run):
    overrides = [f"model={model}"]
    if model in ("lightgbm", "xgboost", "random_forest"):
        overrides += ["model.params.n_estimators=20", "model.max_train_samples=5000"]
    run_dir = make_run(tmp_path / model, overrides)
    assert main([str(run_dir)]) == 0
    report = json.loads((run_dir / "export" / "export.json").read_text())
    assert report["parity"]["passed"]
    saved = xr.open_dataset(run_dir / "predictions.nc").load()
    if model in ("lightgbm", "xgboost", "random_forest"):
        from geoclim.training.instantiate import build_datamodule

        dm = build_datamodule(load_cfg(run_dir))
        dm.setup()
        ds = dm.ds
    else:
        ds = load_run(run_dir).datamodule.ds
    forecaster = Forecaster.from_onnx(report["model"])
    out = forecaster.predict(ds, init_times=saved.init_time.values, max_missing=1.0)
    for name in saved.data_vars:
        xr.testing.assert_allclose(out[name], saved[name], rtol=1e-4, atol=1e-3)


def load_cfg(run_dir):
    from omegaconf import OmegaConf

    return OmegaConf.load(run_dir / ".hydra" / "config.yaml")
