"""Fake run directories built with the real scoring functions (no training CLI needed)."""

import json

import pytest
import yaml
from omegaconf import OmegaConf

from geoclim.baselines.climatology import ClimatologyBaseline
from geoclim.baselines.persistence import PersistenceBaseline
from geoclim.baselines.references import reference_forecasts
from geoclim.data.sources import write_netcdf
from geoclim.evaluation.score import metrics_summary, score_run

DATA = {
    "_target_": "geoclim.data.datamodule.GeoDataModule",
    "source": {
        "_target_": "geoclim.data.synthetic.make_dataset",
        "_partial_": True,
        "variables": ["no2", "t2m"],
        "nlat": 3,
        "nlon": 3,
        "days": 8,
        "seed": 0,
    },
    "window": {"patch": 1},
    "splits": {"fractions": [0.7, 0.15, 0.15]},
    "batch_size": 64,
    "seed": "${seed}",
}
TASK = {"targets": ["no2"], "past_inputs": ["t2m"], "input_steps": 6, "horizon": 3}
MODELS = {
    "persistence": {
        "_target_": "geoclim.baselines.persistence.PersistenceBaseline",
        "kind": "baseline",
        "period": None,
    },
    "climatology": {
        "_target_": "geoclim.baselines.climatology.ClimatologyBaseline",
        "kind": "baseline",
        "smoothing_days": 15.0,
        "prior_weight": 2.0,
    },
}


def write_run_dir(path, model, estimator, dm, cfg):
    predictions = estimator.fit(dm).predict(dm, "test")
    scores = score_run(
        predictions, dm, "test", references=reference_forecasts(dm, "test"), n_boot=20
    )
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    (path / ".hydra" / "hydra.yaml").write_text(
        yaml.safe_dump({"hydra": {"runtime": {"choices": {"model": model, "data": "tiny"}}}})
    )
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"model={model}"]))
    metrics = {k: (None if v != v else v) for k, v in metrics_summary(scores).items()}
    (path / "metrics.json").write_text(json.dumps(metrics))
    write_netcdf(predictions, path / "predictions.nc")
    write_netcdf(scores, path / "scores.nc")
    return path


@pytest.fixture(scope="session")
def multirun_dir(tmp_path_factory):
    from geoclim.training.instantiate import build_datamodule

    root = tmp_path_factory.mktemp("multirun")
    estimators = {"persistence": PersistenceBaseline(), "climatology": ClimatologyBaseline()}
    for job, model in enumerate(MODELS):
        cfg = {"seed": 0, "data": DATA, "task": TASK, "model": MODELS[model]}
        dm = build_datamodule(OmegaConf.create(cfg))
        dm.setup()
        write_run_dir(root / str(job), model, estimators[model], dm, cfg)
    return root
