"""A sweep's runs scored on their common mask: exact values on tiny hand-made cases."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from omegaconf import OmegaConf

from geoclim.baselines.persistence import PersistenceBaseline
from geoclim.baselines.references import reference_forecasts
from geoclim.cli.compare import compare_main
from geoclim.data.assemble import truth_at_valid_time
from geoclim.errors import DataError
from geoclim.evaluation import common
from geoclim.evaluation import leaderboard as lb
from geoclim.evaluation.score import observed, score_run
from tests.evaluation.conftest import DATA, MODELS, TASK, write_run_dir

INITS = pd.date_range("2024-01-01", periods=3, freq="6h")


def _forecast(values, inits=INITS) -> xr.Dataset:
    """``(init_time, lead_time=1, station=2)`` forecast of ``no2``."""
    data = np.asarray(values, dtype=float)[:, None, :]
    return xr.Dataset(
        {"no2": (("init_time", "lead_time", "station"), data)},
        coords={
            "init_time": inits,
            "lead_time": pd.to_timedelta([1], "h"),
            "station": ["a", "b"],
        },
    )


def test_common_mask_is_where_every_forecast_is_defined_on_shared_coordinates():
    first = _forecast([[1, np.nan], [1, 1], [1, 1]])
    second = _forecast([[2, 2], [np.nan, 2]], inits=INITS[1:])  # no first init
    mask = common.common_mask([first, second], ["no2"])
    assert list(mask.init_time.values) == list(INITS[1:].values)
    np.testing.assert_array_equal(mask["no2"].values[:, 0, :], [[True, True], [False, True]])


def test_common_mask_names_what_is_wrong():
    first = _forecast([[1, 1], [1, 1], [1, 1]])
    with pytest.raises(DataError, match=r"lacks target\(s\) \['o3'\]"):
        common.common_mask([first], ["o3"])
    apart = _forecast([[1, 1]], inits=INITS[:1]), _forecast([[1, 1]], inits=INITS[2:])
    with pytest.raises(DataError, match="share no point.*--mask own"):
        common.common_mask(list(apart), ["no2"])


class _Fixed:
    """An estimator whose test forecast is given (the truth plus a chosen error)."""

    def __init__(self, forecast):
        self.forecast = forecast

    def fit(self, dm):
        return self

    def predict(self, dm, split):
        return self.forecast


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Two runs on one data set: ``wide`` everywhere, ``narrow`` on column 0 only.

    ``wide`` = truth + 1 on column 0 and truth + 3 elsewhere, ``narrow`` = truth + 2 on
    column 0 and NaN elsewhere, so on the common mask (column 0) their RMSEs are exactly 1
    and 2, while on its own mask ``wide`` averages in the larger errors.
    """
    from geoclim.training.instantiate import build_datamodule

    root = tmp_path_factory.mktemp("sweep")
    cfg = {"seed": 0, "data": DATA, "task": TASK, "model": MODELS["persistence"]}
    dm = build_datamodule(OmegaConf.create(cfg))
    dm.setup()
    template = PersistenceBaseline().fit(dm).predict(dm, "test")
    truth = truth_at_valid_time(template, observed(dm.ds, ["no2"]))
    column0 = truth["longitude"] == truth["longitude"][0]
    wide = template.copy(data={"no2": (truth["no2"] + xr.where(column0, 1.0, 3.0)).values})
    narrow = template.copy(data={"no2": (truth["no2"] + 2.0).where(column0).values})
    for job, (name, fc) in enumerate({"wide": wide, "narrow": narrow}.items()):
        write_run_dir(root / str(job), name, _Fixed(fc), dm, {**cfg, "model": {"kind": name}})
    return root, dm, wide, narrow


def test_runs_of_a_sweep_are_rescored_on_their_common_mask(sweep):
    root, dm, wide, narrow = sweep
    runs = [lb.load_run(p) for p in lb.find_runs([root])]
    own = {r.path.name: r.metrics["test/rmse/no2"] for r in runs}
    assert own["1"] == pytest.approx(2.0)
    assert own["0"] > 1.5  # its own mask adds the columns with error 3

    rescored, info = common.rescore(runs, n_boot=0)
    values = {r.path.name: r.metrics for r in rescored}
    assert values["0"]["test/rmse/no2"] == pytest.approx(1.0, abs=1e-6)
    assert values["1"]["test/rmse/no2"] == pytest.approx(2.0, abs=1e-6)
    assert values["0"]["test/rmse/no2/lead_1"] == pytest.approx(1.0, abs=1e-6)
    assert values["0"]["test/n/no2"] == values["1"]["test/n/no2"]  # the same points verified
    assert values["0"]["test/n/no2"] < runs[0].metrics["test/n/no2"]
    assert {m.kind for m in info.values()} == {"common"}
    described = info[rescored[0].path].describe()
    assert described.startswith("common/2 runs/")
    assert rescored[0].scores().attrs["mask"] == described

    board = lb.leaderboard(rescored, masks={p: m.describe() for p, m in info.items()})
    assert list(board["model"]) == ["wide", "narrow"]
    assert set(board["mask"]) == {described}


def test_score_run_with_a_mask_verifies_only_its_points(sweep):
    _, dm, wide, narrow = sweep
    mask = common.common_mask([wide, narrow], ["no2"])
    refs = reference_forecasts(dm, "test")
    scores = score_run(wide, dm, "test", references=refs, n_boot=0, mask=mask)
    np.testing.assert_allclose(scores["no2"].sel(metric="rmse").values, 1.0, atol=1e-6)
    with pytest.raises(DataError, match=r"mask lacks target\(s\) \['no2'\]"):
        score_run(wide, dm, "test", references=refs, mask=mask.rename(no2="o3"))
    with pytest.raises(DataError, match="no true point"):
        score_run(wide, dm, "test", references=refs, mask=mask & False)


def test_compare_cli_states_the_mask(sweep, capsys):
    root, *_ = sweep
    assert compare_main([str(root), "--format", "csv", "--n-boot", "0"]) == 0
    text = capsys.readouterr().out
    assert "common/2 runs/" in text
    assert compare_main([str(root), "--mask", "own", "--no-maps"]) == 0
    out = capsys.readouterr().out
    assert "own mask" in out and "common/" not in out
