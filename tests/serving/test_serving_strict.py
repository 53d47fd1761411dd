import re

import numpy as np
import pytest
from fastapi.testclient import TestClient

from geoclim.errors import DataError, SchemaError
from geoclim.serving.adapter import Forecaster
from geoclim.serving.app import ServedModel, ServeSettings, create_app


@pytest.fixture(scope="module")
def point(station_export):
    return Forecaster.from_onnx(station_export.path, name="pt")


@pytest.fixture(scope="module")
def grid(grid_export):
    return grid_export, Forecaster.from_onnx(grid_export.path, name="grid")


def _client(forecaster, path, **settings):
    app = create_app(
        [ServedModel(forecaster.name, forecaster, str(path))], ServeSettings(**settings)
    )
    return TestClient(app)


@pytest.fixture(scope="module")
def client(point, station_export):
    with _client(point, station_export.path) as c:
        yield c


def history(demo, start=100, steps=12):
    return demo.datamodule.ds.isel(time=slice(start, start + steps))


def future(demo, start=100, steps=12):
    return demo.datamodule.ds[["u10"]].isel(time=slice(start + steps, start + steps + 6))


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        pytest.param(
            lambda b: b["locations"][0].update(latitude=b["locations"][0]["latitude"] + 30),
            r"locations\[0\] \(latitude .*\) is outside the model's domain",
            id="off-domain",
        ),
        pytest.param(
            lambda b: [loc["past"].update(pm25=[1.0] * 12) for loc in b["locations"]],
            r"past: unknown variable\(s\) \['pm25'\]",
            id="unknown-variable",
        ),
        pytest.param(
            lambda b: [loc.setdefault("future", {}).update(o3=[1.0] * 6) for loc in b["locations"]],
            r"future: unknown variable\(s\) \['o3'\]",
            id="unknown-future-variable",
        ),
        pytest.param(
            lambda b: b.update(units={"pm25": "ug m-3"}),
            r"units: unknown variable\(s\) \['pm25'\]",
            id="units-for-a-variable-the-model-lacks",
        ),
    ],
)
def test_strict_inputs_are_422_naming_the_field(client, point, edit, match):
    body = point.example_request(2)
    edit(body)
    r = client.post("/v1/forecast", json=body)
    assert r.status_code == 422, r.text
    assert re.search(match, r.json()["message"]), r.json()["message"]


def test_locations_without_data_are_masked_not_forecast(client, point):
    body = point.example_request(3)
    body["locations"][0]["past"] = {k: [None] * 12 for k in body["locations"][0]["past"]}
    body["locations"][1]["past"]["t2m"][3] = None  # one gap of 12: filled with max_missing 0.1
    body["max_missing"] = 0.1
    r = client.post("/v1/forecast", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    f0, f1, f2 = out["forecasts"]
    assert (f0["valid"], f1["valid"], f2["valid"]) == (False, True, True)
    assert all(v is None for v in f0["values"]["no2"])
    assert all(v is not None for v in f1["values"]["no2"])
    assert (f1["inputs_filled"], f2["inputs_filled"]) == (1, 0)
    assert out["masked_locations"] == 1
    assert any("1 location(s) masked" in w for w in out["warnings"])
    # with max_missing = 1 an empty history is still masked, never a forecast
    body["max_missing"] = 1.0
    assert client.post("/v1/forecast", json=body).json()["forecasts"][0]["valid"] is False


def test_a_request_where_every_location_is_masked_is_422(client, point):
    body = point.example_request(1)
    body["locations"][0]["past"]["t2m"][0] = None
    r = client.post("/v1/forecast", json=body)  # default max_missing = 0
    assert r.status_code == 422
    assert "no forecast can be made" in r.json()["message"]


def test_the_models_own_grid_with_uncovered_cells_is_served_masked(grid):
    demo, f = grid
    hist = history(demo).copy(deep=True)
    for v in ("no2", "o3", "t2m", "u10"):
        hist[v][:, 0, 0] = np.nan  # one cell outside the network's reach
    out = f.predict(hist, future=future(demo))  # default max_missing = 0
    assert not out.forecast_valid.values[0, 0, 0] and out.forecast_valid.values.sum() == 11
    assert np.isnan(out.no2.values[0, :, 0, 0]).all()
    assert np.isfinite(out.no2.values[0, :, 1:, :]).all()
    assert int(out.inputs_filled.values[0, 0, 0]) == 12 * 4


def test_extra_variables_and_station_data_to_a_grid_model_are_refused(grid, cnn_export):
    demo, f = grid
    with pytest.raises(SchemaError, match=r"variable\(s\) \['pm10'\] the model does not read"):
        f.predict(history(demo).assign(pm10=history(demo).no2), future=future(demo))
    cnn = Forecaster.from_onnx(cnn_export.path)
    stations = history(cnn_export).stack(station=("latitude", "longitude")).reset_index("station")
    stations = stations.assign_coords(station=[f"s{i}" for i in range(stations.sizes["station"])])
    with pytest.raises(SchemaError, match="needs a .* grid history; the request is a station"):
        cnn.predict(stations, future=future(cnn_export))


def test_off_domain_grid_location_is_refused_even_with_statics(grid):
    demo, f = grid
    hist = history(demo)
    moved = hist.assign_coords(longitude=hist.longitude + 40)
    with pytest.raises(DataError, match="outside the model's domain: outside the training grid"):
        f.predict(moved, future=future(demo))


def test_longitudes_in_0_360_are_the_same_domain(grid):
    demo, f = grid
    hist = history(demo)
    wrapped = hist.assign_coords(longitude=hist.longitude % 360)
    a = f.predict(hist, future=future(demo)).no2.values
    fut = future(demo)
    b = f.predict(wrapped, future=fut.assign_coords(longitude=fut.longitude % 360)).no2.values
    np.testing.assert_allclose(a, b, rtol=1e-6)


def _shifted(forecaster, shift):
    body = forecaster.example_request(4)
    rng = np.random.default_rng(0)
    ref = forecaster.metadata.reference["t2m"]
    for loc in body["locations"]:
        values = rng.uniform(ref["edges"][0], ref["edges"][-1], 12) + shift
        loc["past"]["t2m"] = values.round(3).tolist()
        loc["past"]["no2"] = [float(ref["edges"][4])] * 6 + [float(ref["edges"][5])] * 6
    return body


def test_drift_warns_sets_the_gauge_and_blocks_only_when_configured(point, station_export):
    meta = point.metadata
    assert {"no2", "t2m"} <= set(meta.reference)
    with _client(point, station_export.path) as c:
        r = c.post("/v1/forecast", json=_shifted(point, 40.0))
        assert r.status_code == 200
        drift = [w for w in r.json()["warnings"] if "'t2m'" in w]
        assert drift and "outside the training range" in drift[0]
        text = c.get("/metrics").text
        line = next(x for x in text.splitlines() if x.startswith("geoclim_input_drift_psi{"))
        assert 'variable="' in line and float(line.split()[-1]) >= 0
        psi_t2m = next(
            float(x.split()[-1])
            for x in text.splitlines()
            if x.startswith("geoclim_input_drift_psi{") and 'variable="t2m"' in x
        )
        assert psi_t2m > 0.25
    blocking = Forecaster.from_onnx(station_export.path, name="pt")
    with _client(blocking, station_export.path, drift_block=True) as c:
        r = c.post("/v1/forecast", json=_shifted(blocking, 40.0))
        assert r.status_code == 422
        assert "blocks drifting inputs" in r.json()["message"] and "'t2m'" in r.json()["message"]


def test_docs_and_redoc_load_only_local_assets(client):
    for page in ("/docs", "/redoc"):
        r = client.get(page)
        assert r.status_code == 200
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", r.text)
        urls += re.findall(r"url: *['\"]([^'\"]+)['\"]", r.text)
        assert urls and not [u for u in urls if "//" in u], urls
        for u in urls:
            assert client.get(u).status_code == 200, u


def test_drift_warning_travels_with_xarray_forecasts(grid):
    from geoclim.serving.drift import InputDrift

    demo, _ = grid
    f = Forecaster.from_onnx(demo.path)
    f.drift = InputDrift(f.metadata)
    hist = history(demo)
    assert "warnings" not in f.predict(hist, future=future(demo)).attrs
    hot = hist.assign(t2m=hist.t2m + 30.0)
    out = f.predict(hot, future=future(demo))
    assert "input drift in 't2m'" in out.attrs["warnings"]
    f.drift = InputDrift(f.metadata, block=True)
    with pytest.raises(DataError, match="blocks drifting inputs.*'t2m'"):
        f.predict(hot, future=future(demo))


def test_running_psi_warns_once_it_covers_enough_values(point):
    from geoclim.serving.drift import InputDrift

    monitor = InputDrift(point.metadata, min_running=100)
    ref = point.metadata.reference["t2m"]
    top = (ref["edges"][-1] + ref["max"]) / 2  # inside the range, all in the top decile
    body = point.example_request(4)
    for loc in body["locations"]:
        loc["past"]["t2m"] = [top] * 12
    inputs = point.predict_points(
        body["init_time"],
        {v: np.array([loc["past"][v] for loc in body["locations"]]) for v in ("no2", "t2m")},
        latitude=[loc["latitude"] for loc in body["locations"]],
        longitude=[loc["longitude"] for loc in body["locations"]],
        station=[loc["station"] for loc in body["locations"]],
    ).inputs
    assert not [w for w in monitor.check(inputs) if "'t2m'" in w]  # 48 values: too few
    assert monitor.running_psi()["t2m"] > 0.25
    for _ in range(2):
        warnings = monitor.check(inputs)
    assert any("'t2m'" in w and "values served" in w for w in warnings)
