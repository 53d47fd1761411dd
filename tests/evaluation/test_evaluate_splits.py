"""``geoclim-eval run_dir=RUN split=val`` works as the README shows it."""

import logging
import shutil

import pytest
import xarray as xr
from omegaconf import OmegaConf

from geoclim.cli.evaluate import evaluate, forecasts_for
from geoclim.errors import DataError
from geoclim.training import rundir


def _cfg(**kw):
    base = {"run_dir": None, "ckpt_path": None, "split": "test", "n_boot": 0}
    return OmegaConf.create({**base, "by_location": False, "out": None, **kw})


@pytest.fixture
def run_dir(multirun_dir, tmp_path):
    path = tmp_path / "run"
    shutil.copytree(multirun_dir / "0", path)  # persistence
    return path


def test_val_of_a_baseline_run_is_predicted_and_said_so(run_dir, caplog):
    with caplog.at_level(logging.INFO, logger="geoclim.cli.evaluate"):
        out = evaluate(_cfg(run_dir=str(run_dir), split="val"))
    assert out == run_dir / "scores_val.nc"
    assert "predicting the 'val' split with PersistenceBaseline fitted again" in caplog.text
    assert "val scores of" in caplog.text and "skill vs climatology" in caplog.text
    predicted = xr.open_dataset(run_dir / "predictions_val.nc")
    test_inits = xr.open_dataset(run_dir / "predictions.nc")["init_time"].values
    assert predicted.sizes["init_time"] > 0
    assert predicted["init_time"].values.max() < test_inits.min()  # the val block
    scores = xr.open_dataset(out)
    assert float(scores["no2"].sel(metric="skill_persistence").mean()) == pytest.approx(0.0)


def test_test_split_reads_predictions_nc(run_dir):
    forecast = forecasts_for(run_dir, rundir.load_datamodule(run_dir), "test")
    xr.testing.assert_identical(forecast, xr.open_dataset(run_dir / "predictions.nc").load())
    assert not list(run_dir.glob("predictions_*.nc"))


def test_network_without_checkpoint_says_what_to_add(run_dir):
    cfg = rundir.read_config(run_dir)
    cfg.model = {"_target_": "geoclim.models.module.ForecastModule", "kind": "network"}
    (run_dir / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    with pytest.raises(DataError, match=r"no checkpoints/best.ckpt.*pass ckpt_path=") as err:
        evaluate(_cfg(run_dir=str(run_dir), split="val"))
    assert str(run_dir) in str(err.value) and "split=test" in str(err.value)
