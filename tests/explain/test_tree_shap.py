import numpy as np
import pytest

from geoclim.baselines.trees import LightGBMBaseline, XGBoostBaseline
from geoclim.errors import ConfigError
from geoclim.explain.tree_shap import explain_trees, feature_map, tree_layout
from tests.explain.conftest import TASK, make_dm

FEATURES = {"lags": [0, 1, 3], "rolling": [4], "calendar": ["hour_sin"]}


@pytest.fixture(scope="module")
def fitted():
    dm = make_dm(quantiles=(0.1, 0.5, 0.9))
    model = LightGBMBaseline(
        params={"n_estimators": 20, "min_child_samples": 5, "n_jobs": 1}, features=FEATURES
    )
    return dm, model.fit(dm)


def _forecast_of(pred, ds, i, **sel):
    return (
        pred["no2"]
        .sel(
            init_time=ds.init_time.values[i],
            latitude=float(ds.latitude[i]),
            longitude=float(ds.longitude[i]),
            **sel,
        )
        .values
    )


def test_shap_values_add_up_to_the_tree_forecast(fitted):
    dm, model = fitted
    out = explain_trees(model, dm, max_samples=12, target={"quantile": 0.9}, progress=False)
    ds = out.dataset
    total = ds["offset"] + ds["expected_value"] + ds["shap_values"].sum("feature")
    np.testing.assert_allclose(total, ds["prediction"], rtol=1e-5)
    pred = model.predict(dm, "test")
    for i in range(3):
        np.testing.assert_allclose(
            ds["prediction"].isel(sample=i), _forecast_of(pred, ds, i, quantile=0.9), rtol=1e-4
        )
    # the cube holds every feature's value once
    np.testing.assert_allclose(
        ds["attribution"].sum(["input_variable", "lag"]),
        ds["shap_values"].sum("feature"),
        rtol=1e-4,
        atol=1e-5,
    )
    ex = out.explanations[("no2", 1)]
    assert ex.values.shape == (12, ds.sizes["feature"])
    assert list(ex.feature_names) == list(ds["feature"].values)


def test_per_lead_estimators_explain_each_lead():
    dm = make_dm()
    model = XGBoostBaseline(
        params={"n_estimators": 10, "max_depth": 3, "n_jobs": 1},
        strategy="per_lead",
        features=FEATURES,
    ).fit(dm)
    ds = explain_trees(model, dm, max_samples=8, target={"leads": [2, 3]}, progress=False).dataset
    assert ds.sizes["lead_time"] == 2
    pred = model.predict(dm, "test")
    np.testing.assert_allclose(
        ds["prediction"].isel(sample=0), _forecast_of(pred, ds, 0)[1:], rtol=1e-4
    )
    assert "lead" not in ds["input_variable"].values  # no lead column in per-lead models


def test_feature_columns_map_to_variable_and_lag():
    names = ["no2_lag0", "u10_lag3", "no2_mean4", "u10_valid", "hour_sin", "elevation", "lead"]
    layout = tree_layout(TASK, names)
    fmap = feature_map(names, layout, lead=2, static={"elevation"})
    col = {v: i for i, v in enumerate(layout.variables)}
    lag = {int(v): i for i, v in enumerate(layout.lags)}
    assert fmap[0, col["no2"], lag[0]] == 1 and fmap[0].sum() == 1
    assert fmap[1, col["u10"], lag[3]] == 1
    np.testing.assert_allclose(fmap[2, col["no2"], [lag[0], lag[1], lag[2], lag[3]]], 0.25)
    assert fmap[3, col["u10"], lag[-2]] == 1  # forecast wind at the valid time of lead 2
    assert fmap[4, col["hour_sin"], lag[-2]] == 1
    assert fmap[5, col["elevation"], lag[0]] == 1 and fmap[6, col["lead"], lag[0]] == 1
    np.testing.assert_allclose(fmap.sum((1, 2)), 1.0)


def test_tree_explanations_check_their_input(fitted):
    dm, model = fitted
    with pytest.raises(ConfigError, match="not fitted"):
        explain_trees(LightGBMBaseline(), dm)
    with pytest.raises(ConfigError, match="per lead"):
        explain_trees(model, dm, target={"per_lead": False})
    with pytest.raises(ConfigError, match="not a quantile"):
        explain_trees(model, dm, target={"quantile": 0.25})
