"""``scripts/skill_ensemble.py``: seed ensembles as run directories, exact on tiny cases."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from omegaconf import OmegaConf

from geoclim.baselines.persistence import PersistenceBaseline
from geoclim.data.assemble import truth_at_valid_time
from geoclim.evaluation import leaderboard as lb
from geoclim.evaluation.score import observed
from tests.evaluation.conftest import DATA, MODELS, TASK, write_run_dir
from tests.evaluation.test_common_mask import _Fixed

_SPEC = importlib.util.spec_from_file_location(
    "skill_ensemble", Path(__file__).resolve().parents[2] / "scripts" / "skill_ensemble.py"
)
skill_ensemble = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(skill_ensemble)


def _member(values):
    return xr.Dataset(
        {"no2": (("init_time", "station"), np.asarray(values, float), {"units": "ppb"})},
        coords={"init_time": pd.date_range("2024-01-01", periods=2, freq="h"), "station": [0]},
    )


def test_ensemble_is_the_member_mean_with_its_spread():
    out = skill_ensemble.ensemble([_member([[1], [4]]), _member([[3], [8]])], ["no2"])
    np.testing.assert_allclose(out["no2"].values[:, 0], [2.0, 6.0])
    np.testing.assert_allclose(out["no2_spread"].values[:, 0], [np.sqrt(2), np.sqrt(8)])
    assert out["no2_spread"].attrs["units"] == "ppb" and out.attrs["members"] == 2


def test_ensemble_run_directory_is_ranked_with_its_members(tmp_path):
    from geoclim.training.instantiate import build_datamodule

    cfg = {"seed": 0, "data": DATA, "task": TASK, "model": MODELS["persistence"]}
    dm = build_datamodule(OmegaConf.create(cfg))
    dm.setup()
    template = PersistenceBaseline().fit(dm).predict(dm, "test")
    truth = truth_at_valid_time(template, observed(dm.ds, ["no2"]))["no2"]
    members = []
    for job, error in enumerate((-1.0, 3.0)):  # mean: truth + 1, spread: sqrt(8)
        fc = template.copy(data={"no2": (truth + error).values})
        members.append(
            write_run_dir(tmp_path / str(job), "lstm", _Fixed(fc), dm, {**cfg, "model": {}})
        )
    metrics = skill_ensemble.build(members, tmp_path / "ens", None)
    assert metrics["test/rmse/no2"] == pytest.approx(1.0, abs=1e-5)
    assert metrics["test/spread_skill/no2"] == pytest.approx(np.sqrt(8), rel=1e-5)
    saved = json.loads((tmp_path / "ens" / "metrics.json").read_text())
    assert saved["ensemble/members"] == 2
    runs = [lb.load_run(p) for p in lb.find_runs([tmp_path])]
    assert {r.model for r in runs} == {"lstm", "lstm_ens2"}
    with pytest.raises(SystemExit, match="at least two"):
        skill_ensemble.build(members[:1], tmp_path / "one", None)
