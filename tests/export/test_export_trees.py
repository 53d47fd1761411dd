import json

import numpy as np
import pytest
import xarray as xr
from omegaconf import OmegaConf

from geoclim.baselines.trees import (
    LightGBMBaseline,
    RandomForestBaseline,
    TreeBaseline,
    XGBoostBaseline,
)
from geoclim.cli.export import main as export_main
from geoclim.data.datamodule import GeoDataModule
from geoclim.data.synthetic import make_dataset
from geoclim.data.task import ForecastTask
from geoclim.errors import ConfigError, DataError
from geoclim.export.onnx import read_metadata
from geoclim.export.parity import ParityError
from geoclim.export.trees import export_tree, export_tree_run
from geoclim.serving.adapter import Forecaster

TASK = ForecastTask(
    targets=("no2", "o3"),
    past_inputs=("t2m", "u10"),
    future_inputs=("hour_sin", "u10"),
    static_inputs=("elevation",),
    input_steps=24,
    horizon=4,
)


@pytest.fixture(scope="module")
def dm():
    ds = make_dataset(("no2", "o3", "t2m", "u10"), nlat=3, nlon=3, days=16, static=("elevation",))
    ds["no2"][dict(time=slice(300, 305))] = np.nan  # gaps inside the test block
    module = GeoDataModule(ds, TASK, window={"patch": 1}, splits={"fractions": (0.5, 0.25, 0.25)})
    module.setup()
    return module


def served_vs_baseline(baseline, dm, path, max_missing=1.0):
    report = export_tree(baseline, dm, path)
    ref = baseline.predict(dm, "test")
    forecaster = Forecaster.from_onnx(path)
    inits = ref.init_time.values[:12]
    out = forecaster.predict(dm.ds, init_times=inits, max_missing=max_missing)
    return report, out, ref.sel(init_time=inits)


@pytest.mark.parametrize(
    "cls,kw",
    [
        pytest.param(XGBoostBaseline, {}, id="xgboost"),
        pytest.param(LightGBMBaseline, {"quantiles": [0.1, 0.5, 0.9]}, id="lightgbm-quantiles"),
        pytest.param(LightGBMBaseline, {"strategy": "per_lead"}, id="lightgbm-per-lead"),
    ],
)
def test_tree_exports_serve_the_baselines_own_predictions(dm, tmp_path, cls, kw):
    baseline = cls(params={"n_estimators": 15}, max_train_samples=3000, **kw).fit(dm)
    report, out, ref = served_vs_baseline(baseline, dm, tmp_path / "tree.onnx")
    assert report["parity"]["passed"] and report["nan_inputs"] == "pass"
    assert set(report["inputs"]) == {"past", "known_future", "static", "calendar", "coordinates"}
    for name in ("no2", "o3"):
        np.testing.assert_allclose(out[name].values, ref[name].values, rtol=1e-4, atol=1e-3)
    meta = read_metadata(tmp_path / "tree.onnx")
    assert meta.io.kind == "tree" and meta.io.output_space == "physical"
    assert meta.task.quantiles == tuple(kw.get("quantiles", ()))


def test_random_forest_export_refuses_missing_inputs(dm, tmp_path):
    baseline = RandomForestBaseline(
        params={"n_estimators": 10, "max_depth": 6}, max_train_samples=3000
    ).fit(dm)
    report = export_tree(baseline, dm, tmp_path / "rf.onnx")
    assert report["nan_inputs"] == "refuse" and report["parity"]["passed"]
    forecaster = Forecaster.from_onnx(tmp_path / "rf.onnx", max_missing=1.0)
    with pytest.raises(DataError, match="'no2'.*missing"):
        forecaster.predict(dm.ds, init_times=dm.ds.time.values[[310]])
    complete = dm.ds.time.values[[330]]
    assert np.isfinite(forecaster.predict(dm.ds, init_times=complete).no2).all()


def test_xgboost_multi_quantile_export_fails_its_parity_check(dm, tmp_path):
    baseline = XGBoostBaseline(
        params={"n_estimators": 3, "max_depth": 3}, max_train_samples=500, quantiles=[0.1, 0.9]
    ).fit(dm)
    with pytest.raises(ParityError, match="does not reproduce"):
        export_tree(baseline, dm, tmp_path / "xq.onnx")


@pytest.mark.parametrize(
    "cls,kw",
    [
        pytest.param(XGBoostBaseline, {}, id="xgboost"),
        pytest.param(LightGBMBaseline, {"quantiles": [0.1, 0.5, 0.9]}, id="lightgbm-quantiles"),
        pytest.param(LightGBMBaseline, {"strategy": "per_lead"}, id="lightgbm-per-lead"),
        pytest.param(RandomForestBaseline, {"params": {"n_estimators": 5}}, id="random_forest"),
    ],
)
def test_saved_trees_load_back_to_the_same_predictions(dm, tmp_path, cls, kw):
    kw = {"params": {"n_estimators": 10}, **kw}
    baseline = cls(max_train_samples=2000, **kw).fit(dm)
    folder = baseline.save(tmp_path / "model")
    assert sorted(p.suffix for p in folder.iterdir())[-1] in (".json", ".ubj", ".txt")
    loaded = TreeBaseline.load(folder, dm)
    assert type(loaded) is cls and loaded.quantiles == baseline.quantiles
    xr.testing.assert_equal(loaded.predict(dm, "test"), baseline.predict(dm, "test"))


def test_a_loaded_lightgbm_model_exports_with_parity(dm, tmp_path):
    baseline = LightGBMBaseline(params={"n_estimators": 10}, max_train_samples=2000).fit(dm)
    loaded = TreeBaseline.load(baseline.save(tmp_path / "model"), dm)
    report, out, ref = served_vs_baseline(loaded, dm, tmp_path / "tree.onnx")
    assert report["parity"]["passed"]
    np.testing.assert_allclose(out["no2"].values, ref["no2"].values, rtol=1e-4, atol=1e-3)


def test_loading_refuses_a_folder_without_a_model_or_other_features(dm, tmp_path):
    with pytest.raises(DataError, match="no saved tree model"):
        TreeBaseline.load(tmp_path, dm)
    baseline = XGBoostBaseline(params={"n_estimators": 3}, max_train_samples=500).fit(dm)
    folder = baseline.save(tmp_path / "model")
    state = json.loads((folder / "tree.json").read_text())
    state["feature_names"] = state["feature_names"][:-1]
    (folder / "tree.json").write_text(json.dumps(state))
    with pytest.raises(DataError, match="the model was fitted on"):
        TreeBaseline.load(folder, dm)
    with pytest.raises(DataError, match="holds a xgboost model, not lightgbm"):
        LightGBMBaseline.load(folder, dm)
    with pytest.raises(DataError, match="not fitted; nothing to save"):
        XGBoostBaseline().save(tmp_path / "empty")


def test_export_of_a_tree_run_without_a_saved_model_is_refused(tmp_path):
    from tests.training.compose import compose_train

    cfg = compose_train(tmp_path, "model=lightgbm")
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(cfg, tmp_path / ".hydra" / "config.yaml")
    with pytest.raises(ConfigError, match="has no saved tree model"):
        export_tree_run(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        export_main([str(tmp_path)])
    assert exit_info.value.code == 2
