# Served explanations of categorical (CF flag) inputs and of quantile models.

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from geoclim.explain.baselines import train_modes
from geoclim.explain.captum import attribute_batch
from geoclim.explain.layout import InputLayout
from geoclim.explain.target import ExplainTarget
from geoclim.serving import inputs as request
from geoclim.serving.adapter import Forecaster
from geoclim.serving.app import ServedModel, ServeSettings, create_app
from geoclim.serving.explain import request_batch
from geoclim.serving.security import KeyStore, Principal
from tests.explain.flags import export_flag_model, flag_dm, train_flag_net
from tests.support.demo_export import build_net
from tests.support.shared import build_once

KEY = {"X-API-Key": "alice.k1"}


@pytest.fixture(scope="module")
def flags(tmp_path_factory):
    torch.set_num_threads(1)
    dm = flag_dm()

    def train_and_export(folder):
        net = train_flag_net(dm, epochs=4)
        torch.save(net.state_dict(), folder / "net.pt")
        export_flag_model(folder / "flags.onnx", dm, net)

    folder = build_once(tmp_path_factory, "flags_lstm", train_and_export)
    net = build_net("lstm", dm.dims, hidden_size=16)  # the trained weights, read back
    net.load_state_dict(torch.load(folder / "net.pt", weights_only=True))
    net.eval()
    forecaster = Forecaster.from_onnx(folder / "flags.onnx", name="flags", max_missing=1.0)
    history = dm.ds.isel(time=slice(100, 104))
    return forecaster, net, dm, history


def _client(forecaster, name):
    keys = KeyStore()
    keys.add("alice.k1", Principal("alice"), method="sha256")
    return TestClient(
        create_app([ServedModel(name, forecaster, "x.onnx")], ServeSettings(keys=keys))
    )


@pytest.mark.parametrize("modes", [None, "train"], ids=["missing-state", "train-mode"])
def test_onnx_ablation_of_categoricals_equals_captum_on_the_same_net(flags, modes):
    f, net, dm, history = flags
    modes = train_modes(dm) if modes == "train" else None
    ds = f.explain(history, category_baseline=modes)
    assert list(ds["input_variable"].values) == ["no2", "wd", "sky", "noise", "site"]
    assert list(ds["category"].values)[:4] == ["wd=N", "wd=E", "wd=S", "wd=W"]
    batch, _ = request_batch(f, request.from_dataset(f.metadata, history, None, None))
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}
    layout = InputLayout.from_task(f.task)
    target = ExplainTarget().resolve(f.task)
    out = attribute_batch(net, tensors, "feature_ablation", target, layout, category_baseline=modes)
    stats = f.metadata.normalizer.stats["no2"]
    scale = 1.0 if stats.log else stats.std
    np.testing.assert_allclose(ds["attribution"].values, out["cube"] * scale, atol=1e-5)
    np.testing.assert_allclose(
        ds["category_attribution"].values, out["category_cube"] * scale, atol=1e-5
    )
    np.testing.assert_allclose(
        ds["baseline_prediction"].values, out["baseline_prediction"] * scale, atol=1e-5
    )


@pytest.mark.slow  # SHAP's import and a permutation per location
def test_onnx_shap_players_are_whole_one_hot_variables(flags):
    f, _, dm, history = flags
    modes = train_modes(dm)
    one = history.isel(station=slice(0, 2))
    ablated = f.explain(one, category_baseline=modes)
    values = f.explain(one, method="shap", max_evals=300, category_baseline=modes)
    total = values["attribution"].sum(["input_variable", "lag"])
    np.testing.assert_allclose(
        total, values["prediction"] - ablated["baseline_prediction"], atol=1e-5
    )
    wd = values["category_attribution"].where(values["category_variable"] == "wd", 0.0)
    np.testing.assert_allclose(
        wd.sum("category"), values["attribution"].sel(input_variable="wd").fillna(0.0), atol=1e-6
    )


def test_explain_route_reports_categories_and_checks_the_category_baseline(flags):
    f, _, dm, _ = flags
    body = f.example_request(2)
    with _client(f, "flags") as client:
        r = client.post("/v1/explain", json={**body, "category_baseline": {"wd": "E"}}, headers=KEY)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["input_variables"] == ["no2", "wd", "sky", "noise", "site"]
        assert out["categories"] == [
            "wd=N", "wd=E", "wd=S", "wd=W", "sky=clear", "sky=cloudy", "site=urban", "site=rural"
        ]  # fmt: skip
        per_cat = np.array(out["explanations"][0]["category_attributions"], dtype=float)
        attr = np.array(out["explanations"][0]["attributions"], dtype=float)
        assert per_cat.shape == (f.task.horizon, 8, len(out["lags"]))
        wd = np.nansum(per_cat[:, :4], axis=1)  # (lead, lag)
        np.testing.assert_allclose(wd, np.nan_to_num(attr[:, 1]), atol=1e-6)
        bad = client.post(
            "/v1/explain", json={**body, "category_baseline": {"wd": "NE"}}, headers=KEY
        )
        assert bad.status_code == 422 and "'NE' is not a category" in bad.json()["message"]


def test_explain_route_explains_any_quantile_and_defaults_to_the_median(station_export):
    f = Forecaster.from_onnx(station_export.path, name="q", max_missing=1.0)
    assert f.task.quantiles == (0.1, 0.5, 0.9)
    body = f.example_request(2)
    with _client(f, "q") as client:
        answers = {}
        for q in (None, 0.1, 0.5, 0.9):
            r = client.post("/v1/explain", json={**body, "quantile": q}, headers=KEY)
            assert r.status_code == 200, r.text
            answers[q] = r.json()
    assert answers[None]["quantile"] == 0.5 and answers[0.9]["quantile"] == 0.9
    median = [e["prediction"] for e in answers[0.5]["explanations"]]
    assert [e["prediction"] for e in answers[None]["explanations"]] == median
    low = np.array([e["prediction"] for e in answers[0.1]["explanations"]], dtype=float)
    high = np.array([e["prediction"] for e in answers[0.9]["explanations"]], dtype=float)
    assert not np.allclose(low, high)  # each quantile's own forecast is explained
    a = np.array(answers[0.9]["explanations"][0]["attributions"], dtype=float)
    assert not np.allclose(
        np.nan_to_num(a),
        np.nan_to_num(np.array(answers[0.1]["explanations"][0]["attributions"], dtype=float)),
    )
