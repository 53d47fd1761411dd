import shutil

import pytest
import xarray as xr
from omegaconf import OmegaConf

from geoclim.cli.evaluate import evaluate
from geoclim.errors import ConfigError, DataError
from geoclim.training.rundir import read_config


def _cfg(**kw):
    base = {
        "run_dir": None,
        "ckpt_path": None,
        "split": "test",
        "n_boot": 10,
        "by_location": False,
        "out": None,
    }
    return OmegaConf.create({**base, **kw})


@pytest.fixture
def run_dir(multirun_dir, tmp_path):
    path = tmp_path / "run"
    shutil.copytree(multirun_dir / "0", path)
    (path / "scores.nc").unlink()
    return path


def test_rescoring_a_run_dir_reproduces_its_scores(run_dir, multirun_dir):
    out = evaluate(_cfg(run_dir=str(run_dir)))
    assert out == run_dir / "scores.nc"
    new = xr.open_dataset(out)
    old = xr.open_dataset(multirun_dir / "0" / "scores.nc")
    xr.testing.assert_allclose(
        new.sel(metric=["rmse", "skill_climatology", "acc"]),
        old.sel(metric=["rmse", "skill_climatology", "acc"]),
    )


def test_by_location_and_explicit_out(run_dir, tmp_path):
    out = evaluate(_cfg(run_dir=str(run_dir), by_location=True, out=str(tmp_path / "s.nc")))
    assert "latitude" in xr.open_dataset(out).dims


def test_clear_errors_for_missing_or_invalid_run_dirs(run_dir, tmp_path):
    with pytest.raises(DataError, match="no such directory"):
        evaluate(_cfg(run_dir=str(tmp_path / "missing")))
    with pytest.raises(DataError, match="not a run directory"):
        read_config(tmp_path)
    with pytest.raises(ConfigError, match="nothing to evaluate"):
        evaluate(_cfg())
    with pytest.raises(ConfigError, match="valid splits"):
        evaluate(_cfg(run_dir=str(run_dir), split="dev"))
    with pytest.raises(DataError, match="no such checkpoint"):
        evaluate(_cfg(ckpt_path=str(tmp_path / "best.ckpt")))
    (run_dir / "predictions.nc").unlink()
    with pytest.raises(DataError, match="no predictions.nc"):
        evaluate(_cfg(run_dir=str(run_dir)))


def test_pooled_and_regions_options(run_dir, tmp_path):
    regions = {"north": {"lat": [0, 90]}, "west": {"lon": [-180, 0]}}
    out = evaluate(
        _cfg(
            run_dir=str(run_dir), n_boot=0, pooled=True, regions=regions, out=str(tmp_path / "s.nc")
        )
    )
    scores = xr.open_dataset(out)
    assert list(scores["region"].values) == ["all", "north", "west"]
    assert scores.attrs["convention"] == "pooled"
    with pytest.raises(ConfigError, match="valid keys"):
        evaluate(_cfg(run_dir=str(run_dir), regions={"x": {"box": [0, 1]}}))
