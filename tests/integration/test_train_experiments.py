"""Every ``conf/experiment/*.yaml`` composes and smoke-runs on synthetic data."""

from pathlib import Path

import numpy as np
import pytest

from geoclim.training.train import train
from tests.training.compose import compose_train

EXPERIMENTS = sorted(
    p.stem for p in (Path(__file__).resolve().parents[2] / "conf" / "experiment").glob("*.yaml")
)


def test_there_are_experiments():
    assert len(EXPERIMENTS) >= 5


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_with_its_real_data(tmp_path, name):
    cfg = compose_train(tmp_path, f"experiment={name}", tiny=False)
    assert cfg.model.kind in ("network", "baseline", "reference")
    assert cfg.data._target_ == "geoclim.data.datamodule.GeoDataModule"


@pytest.mark.slow  # one training per experiment; their models are smoke-run in tests/training
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_smoke_runs_on_synthetic_data(tmp_path, name):
    cfg = compose_train(
        tmp_path,
        f"experiment={name}",
        "data/source=synthetic",
        "debug=smoke",
        "logger=none",
        "trainer.enable_progress_bar=false",
        tiny=False,
    )
    metrics = train(cfg)
    assert np.isfinite(metrics["test/rmse/no2"])
