import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from geoclim.data.assemble import to_forecast_dataset
from geoclim.errors import ConfigError, DataError, SchemaError
from geoclim.serving.adapter import Forecaster


@pytest.fixture(scope="module")
def grid(grid_export):
    return grid_export, Forecaster.from_onnx(grid_export.path)


def history(demo, start=100, steps=12):
    return demo.datamodule.ds.isel(time=slice(start, start + steps))


def future(demo, start=100, steps=12):
    """The known-future variable (u10) over the 6 leads after ``history``."""
    return demo.datamodule.ds[["u10"]].isel(time=slice(start + steps, start + steps + 6))


def predict(f, demo, hist=None, **kw):
    return f.predict(history(demo) if hist is None else hist, future=future(demo), **kw)


def test_forecast_dataset_has_coordinates_units_and_valid_time(grid):
    demo, f = grid
    hist = history(demo)
    out = predict(f, demo)
    assert dict(out.sizes) == {"init_time": 1, "lead_time": 6, "latitude": 4, "longitude": 3}
    assert out.init_time.values[0] == hist.time.values[-1]
    np.testing.assert_array_equal(out.lead_time.values, np.arange(1, 7) * np.timedelta64(1, "h"))
    assert out.no2.attrs["units"] == "ppb"
    assert (out.valid_time.values[0] == hist.time.values[-1] + out.lead_time.values).all()


def test_adapter_equals_the_torch_network_on_the_datamodules_batches(grid):
    demo, f = grid
    dm = demo.datamodule
    t, y, x = dm.index["test"].decode(slice(0, 40))
    batch = dm.dataset("test")[np.arange(40)]
    with torch.no_grad():
        want = demo.net(batch)["prediction"].numpy()
    expected = to_forecast_dataset(want, t, y, x, dm.ds, dm.task.targets, normalizer=dm.normalizer)
    got = f.predict(dm.ds, init_times=expected.init_time.values, max_missing=1.0)
    mask = np.isfinite(expected.no2)
    np.testing.assert_allclose(
        got.no2.values[mask], expected.no2.values[mask], rtol=1e-4, atol=1e-4
    )


def test_numpy_path_equals_the_xarray_path(grid):
    demo, f = grid
    hist = history(demo)
    ds_out = f.predict(hist, future=future(demo).assign(u10=future(demo).u10 + 5))
    cells = [(0, 0), (2, 1), (3, 2)]
    past = {v: np.stack([hist[v].values[:, i, j] for i, j in cells]) for v in f.task.past_variables}
    later = demo.datamodule.ds.isel(time=slice(112, 118))
    known = {"u10": np.stack([later["u10"].values[:, i, j] for i, j in cells])}
    values, valid = f.predict_arrays(
        hist.time.values[-1],
        past,
        future=known,
        latitude=[float(hist.latitude[i]) for i, _ in cells],
        longitude=[float(hist.longitude[j]) for _, j in cells],
    )
    expected_future = f.predict(hist, future=later[["u10"]])
    for k, (i, j) in enumerate(cells):
        np.testing.assert_allclose(
            values["no2"][k], expected_future.no2.values[0, :, i, j], rtol=1e-5
        )
    assert valid[0] == hist.time.values[-1] + np.timedelta64(1, "h")
    assert not np.allclose(ds_out.no2.values, expected_future.no2.values)  # u10 matters


def test_units_are_converted_when_possible_and_refused_otherwise(grid):
    demo, f = grid
    hist = history(demo)
    base = predict(f, demo)
    kelvin = hist.copy()
    kelvin["t2m"] = (hist.t2m - 273.15).assign_attrs(units="degC")
    xr.testing.assert_allclose(predict(f, demo, kelvin).no2, base.no2, rtol=1e-4)
    bad = hist.copy()
    bad["t2m"] = hist.t2m.assign_attrs(units="ppb")
    with pytest.raises(SchemaError, match="'t2m'.*send it in 'K'"):
        predict(f, demo, bad)


@pytest.mark.parametrize(
    "edit,error,match",
    [
        pytest.param(
            lambda ds: ds.drop_vars("o3"),
            SchemaError,
            r"lacks variable\(s\) \['o3'\]",
            id="missing-variable",
        ),
        pytest.param(
            lambda ds: ds.isel(time=slice(0, None, 2)),
            SchemaError,
            "time step 0 days 02:00:00 .* does not match the model's time step",
            id="wrong-time-step",
        ),
        pytest.param(
            lambda ds: ds.isel(time=slice(6, None)),
            DataError,
            "fewer than input_steps = 12",
            id="too-short",
        ),
        pytest.param(
            lambda ds: ds.assign(no2=ds.no2.where(ds.time != ds.time[3])),
            DataError,
            "'no2'.*missing",
            id="nan",
        ),
        pytest.param(
            lambda ds: ds.assign_coords(latitude=ds.latitude + 20).drop_vars(
                ["elevation", "emissions"]
            ),
            DataError,
            "outside the training grid",
            id="outside-domain",
        ),
        pytest.param(
            lambda ds: ds.isel(time=[0, 1, 3, 2, 4, 5, 6, 7, 8, 9, 10, 11]),
            SchemaError,
            "does not match the model's time step",
            id="unordered",
        ),
    ],
)
def test_bad_requests_raise_clear_errors(grid, edit, error, match):
    demo, f = grid
    with pytest.raises(error, match=match):
        predict(f, demo, edit(history(demo)))


def test_missing_values_are_accepted_up_to_max_missing(grid):
    demo, f = grid
    hist = history(demo)
    gappy = hist.assign(no2=hist.no2.where(hist.time != hist.time[3]))
    out = predict(f, demo, gappy, max_missing=0.1)
    assert np.isfinite(out.no2).all()


def test_static_inputs_come_from_the_domain_or_the_request(grid):
    demo, f = grid
    hist = history(demo)
    without = predict(f, demo, hist.drop_vars(["elevation", "emissions"]))
    xr.testing.assert_allclose(without.no2, predict(f, demo).no2)
    changed = hist.assign(elevation=hist.elevation + 500)
    assert not np.allclose(predict(f, demo, changed).no2, without.no2)


def test_several_init_times_in_one_call(grid):
    demo, f = grid
    hist = history(demo, steps=36)
    inits = hist.time.values[[11, 20, 29]]
    out = f.predict(hist, init_times=inits)
    assert list(out.init_time.values) == list(inits)
    single = f.predict(hist.isel(time=slice(9, 27)), init_times=inits[1:2])
    xr.testing.assert_allclose(out.no2.sel(init_time=inits[1]), single.no2.isel(init_time=0))


def test_station_quantile_model(station_export):
    f = Forecaster.from_onnx(station_export.path)
    ds = station_export.datamodule.ds.isel(time=slice(50, 62))
    out = f.predict(ds)
    assert dict(out.sizes) == {"init_time": 1, "lead_time": 6, "station": 5, "quantile": 3}
    assert list(out.station.values) == list(ds.station.values)
    values, _ = f.predict_arrays(
        ds.time.values[-1],
        {v: ds[v].values.T for v in ("no2", "t2m")},
        latitude=ds.latitude.values,
        longitude=ds.longitude.values,
        station=list(ds.station.values),
    )
    np.testing.assert_allclose(values["no2"], out.no2.values[0].transpose(1, 0, 2), rtol=1e-5)
    point = {v: ds[v].values.T[:1] for v in ("no2", "t2m")}
    with pytest.raises(DataError, match="outside the model's domain"):
        f.predict_arrays(ds.time.values[-1], point, latitude=[10.0], longitude=[10.0])
    lat, lon = float(ds.latitude.mean()) + 0.01, float(ds.longitude.mean()) + 0.01
    with pytest.raises(DataError, match="no training station"):  # inside, but statics unknown
        f.predict_arrays(ds.time.values[-1], point, latitude=[lat], longitude=[lon])
    values, _ = f.predict_arrays(
        ds.time.values[-1],
        point,
        latitude=[lat],
        longitude=[lon],
        static={"elevation": np.array([100.0])},
    )
    assert values["no2"].shape == (1, 6, 3)


def test_whole_grid_cnn_on_its_grid_and_on_a_sub_grid(cnn_export):
    f = Forecaster.from_onnx(cnn_export.path)
    ds = cnn_export.datamodule.ds.isel(time=slice(40, 58))
    full = f.predict(ds, init_times=ds.time.values[11:12])
    assert dict(full.sizes) == {"init_time": 1, "lead_time": 6, "latitude": 6, "longitude": 5}
    sub = f.predict(
        ds.isel(latitude=slice(1, 5), longitude=slice(0, 3)), init_times=ds.time.values[11:12]
    )
    assert dict(sub.sizes)["latitude"] == 4 and np.isfinite(sub.no2).all()
    with pytest.raises(ConfigError, match="spatial patches"):
        f.predict_arrays(
            ds.time.values[-1], {"no2": np.zeros((1, 12))}, latitude=[40], longitude=[-100]
        )


def test_example_request_is_valid(grid):
    _, f = grid
    body = f.example_request(2)
    loc = body["locations"][0]
    values, valid = f.predict_arrays(
        pd.Timestamp(body["init_time"]).tz_localize(None),
        {k: np.array([v]) for k, v in loc["past"].items()},
        future={k: np.array([v]) for k, v in loc["future"].items()},
        latitude=[loc["latitude"]],
        longitude=[loc["longitude"]],
    )
    assert np.isfinite(values["no2"]).all() and valid.size == 6
