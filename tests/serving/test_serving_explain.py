import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from geoclim.errors import ConfigError
from geoclim.explain.captum import attribute_batch
from geoclim.explain.layout import InputLayout
from geoclim.explain.target import ExplainTarget
from geoclim.serving import inputs as request
from geoclim.serving.adapter import Forecaster
from geoclim.serving.app import ServedModel, ServeSettings, create_app
from geoclim.serving.explain import request_batch
from geoclim.serving.security import KeyStore, Principal


@pytest.fixture(scope="module")
def station(station_export):
    f = Forecaster.from_onnx(station_export.path, name="no2_station", max_missing=1.0)
    return f, station_export.datamodule.ds.isel(time=slice(20, 32))


def test_onnx_ablation_equals_torch_captum_ablation_on_the_same_model(station, station_export):
    f, history = station
    ds = f.explain(history, quantile=0.9)
    batch, _ = request_batch(f, request.from_dataset(f.metadata, history, None, None))
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}
    task = f.task
    target = ExplainTarget(quantile=0.9).resolve(task)
    out = attribute_batch(
        station_export.net, tensors, "feature_ablation", target, InputLayout.from_task(task)
    )
    stats = f.metadata.normalizer.stats["no2"]
    scale = 1.0 if stats.log else stats.std
    np.testing.assert_allclose(ds["attribution"].values, out["cube"] * scale, atol=1e-6)
    assert ds["attribution"].dims == ("sample", "lead_time", "input_variable", "lag")
    assert list(ds["station"].values) == list(history.station.values)
    assert ds.attrs["method"] == "onnx_ablation" and ds.attrs["target_quantile"] == 0.9


@pytest.mark.slow  # SHAP's import and ~180 graph runs per sample: tens of seconds here
def test_onnx_shap_values_are_efficient(station):
    f, history = station
    one = history.isel(station=slice(0, 2))
    ablated = f.explain(one)
    values = f.explain(one, method="shap", max_evals=200)
    # permutation SHAP: each sample's values sum to f(x) - f(baseline) exactly
    total = values["attribution"].sum(["input_variable", "lag"])
    change = values["prediction"] - ablated["baseline_prediction"]
    np.testing.assert_allclose(total, change, atol=1e-5)


def test_grid_occlusion_and_ablation_of_an_exported_cnn(cnn_export):
    f = Forecaster.from_onnx(cnn_export.path, max_missing=1.0)
    history = cnn_export.datamodule.ds.isel(time=slice(10, 22))
    occ = f.explain(history, method="occlusion", block=2)
    assert occ["attribution"].dims == (
        "sample",
        "lead_time",
        "input_variable",
        "latitude",
        "longitude",
    )
    np.testing.assert_array_equal(occ["latitude"], history.latitude)
    abl = f.explain(history)
    assert abl.sizes["sample"] == 1 and np.isfinite(abl["prediction"]).all()
    with pytest.raises(ConfigError, match="point models"):
        f.explain(history, method="shap")
    with pytest.raises(ConfigError, match="unknown explain method"):
        f.explain(history, method="lime")


def test_explain_route_answers_with_the_forecast_routes_auth_and_errors(station):
    f, _ = station
    keys = KeyStore()
    keys.add("alice.k1", Principal("alice"), method="sha256")
    app = create_app([ServedModel("no2_station", f, "x.onnx")], ServeSettings(keys=keys))
    body = f.example_request(2)
    with TestClient(app) as client:
        assert client.post("/v1/explain", json=body).status_code == 401
        r = client.post("/v1/explain", json=body, headers={"X-API-Key": "alice.k1"})
        assert r.status_code == 200, r.text
        out = r.json()
        n_var, n_lag = len(out["input_variables"]), len(out["lags"])
        attr = np.array(out["explanations"][0]["attributions"], dtype=float)
        assert attr.shape == (f.task.horizon, n_var, n_lag)
        assert out["lags"][0] == -f.task.horizon and out["explanations"][1]["station"]
        bad = client.post(
            "/v1/explain", json={**body, "quantile": 0.3}, headers={"X-API-Key": "alice.k1"}
        )
        assert bad.status_code == 422 and "0.3" in bad.json()["message"]
        bad = client.post(
            "/v1/explain", json={**body, "method": "lime"}, headers={"X-API-Key": "alice.k1"}
        )
        assert bad.status_code == 422 and "method" in bad.json()["message"]
