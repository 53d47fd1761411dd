"""Every ``conf/experiment/*.yaml`` composes and smoke-runs on synthetic data."""

from pathlib import Path

import numpy as np
import pytest

from geoclim.data import calendar
from geoclim.data.synthetic import VARIABLES
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


def _task_variables(cfg) -> list[str]:
    task = cfg.task
    names = [*task.targets, *task.past_inputs]
    return names + [n for n in task.future_inputs if n not in calendar.FEATURES]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_smoke_runs_on_synthetic_data(tmp_path, name):
    common = [f"experiment={name}", "debug=smoke", "logger=none"]
    needed = _task_variables(compose_train(tmp_path, *common, tiny=False))
    assert set(needed) <= set(VARIABLES), f"the generator cannot simulate {needed}"
    cfg = compose_train(
        tmp_path,
        *common,
        "data/source=synthetic",
        f"data.source.variables=[{','.join(dict.fromkeys(needed))}]",
        "trainer.enable_progress_bar=false",
        tiny=False,
    )
    metrics = train(cfg)
    assert np.isfinite(metrics[f"test/rmse/{cfg.task.targets[0]}"])
