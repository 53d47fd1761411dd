"""Categorical (CF flag) inputs and calendar / cftime time steps export and serve.

Each case trains a tiny LSTM run on a plain-xarray file (``data=file``, ``debug=smoke``),
exports it with ``geoclim-export --exporter torchscript`` and checks that the serving adapter
reproduces the run's ``predictions.nc`` at the same init times, valid times included. (The
default exporter, dynamo, takes about 30x longer; the smoke-run export of ``conftest.py`` and
the categorical explanations of ``tests/explain/flags.py`` go through it.)
"""

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from geoclim.cli.export import main as export_main
from geoclim.data.timeaxis import TimeStep
from geoclim.errors import SchemaError
from geoclim.export.onnx import read_metadata
from geoclim.serving.adapter import Forecaster
from tests.export.conftest import train_run

FILE = ["data=file", "model=lstm", "task.quantiles=[]"]
WD = {"flag_values": np.arange(4, dtype=np.int8), "flag_meanings": "N E S W"}
SITE = {"flag_values": np.array([1, 2], dtype=np.int8), "flag_meanings": "urban rural"}


def _stations(times, seed=0):
    # three stations: NO2 driven by a wind-sector flag, and a static site-type flag
    rng = np.random.default_rng(seed)
    n = len(times)
    wd = rng.integers(0, 4, (n, 3)).astype(np.int8)
    no2 = 20 + 4 * (wd == 2) + rng.normal(0, 1, (n, 3))
    return xr.Dataset(
        {
            "no2": (("time", "station"), no2.astype(np.float32), {"units": "ppb"}),
            "wd": (("time", "station"), wd, WD),
            "site": ("station", np.array([1, 2, 1], np.int8), SITE),
        },
        coords={
            "time": times,
            "station": ["a", "b", "c"],
            "latitude": ("station", [40.0, 41.0, 42.0]),
            "longitude": ("station", [-80.0, -79.0, -78.0]),
        },
    )


def _exported(tmp_path, ds, *task):
    path = tmp_path / "data.nc"
    ds.to_netcdf(path)
    run = train_run(tmp_path / "run", [*FILE, f"data.source.path={path}", *task])
    assert export_main([str(run), "--parity-batches", "2", "--exporter", "torchscript"]) == 0
    model = run / "export" / "model.onnx"
    saved = xr.open_dataset(run / "predictions.nc").load()
    history = xr.open_dataset(path).load()
    return model, saved, history


def _same_forecasts(model, saved, history, n_inits=5):
    inits = saved.init_time.values[:n_inits]
    out = Forecaster.from_onnx(model).predict(history, init_times=inits, max_missing=1.0)
    xr.testing.assert_allclose(
        out.no2, saved.no2.sel(init_time=inits).transpose(*out.no2.dims), rtol=1e-4, atol=1e-3
    )
    np.testing.assert_array_equal(out.valid_time.values, saved.valid_time.sel(init_time=inits))
    return out


@pytest.fixture(scope="module")
def flags_export(tmp_path_factory):
    ds = _stations(pd.date_range("2021-01-01", periods=24 * 30, freq="h"))
    return _exported(
        tmp_path_factory.mktemp("flags"),
        ds,
        "task.targets=[no2]",
        "task.past_inputs=[wd]",
        "task.future_inputs=[hour_sin,hour_cos,wd]",
        "task.static_inputs=[site]",
    )


def test_lstm_with_cf_flag_inputs_exports_and_serves_the_runs_predictions(flags_export):
    model, saved, history = flags_export
    meta = read_metadata(model)
    assert meta.task.categories == {
        "wd": {"N": 0, "E": 1, "S": 2, "W": 3},
        "site": {"urban": 1, "rural": 2},
    }
    assert meta.task.known_channels == ("hour_sin", "hour_cos", "wd=N", "wd=E", "wd=S", "wd=W")
    assert meta.task.static_channels == ("site=urban", "site=rural")
    assert meta.step == TimeStep.fixed("1h") and meta.time_step_seconds == 3600
    _same_forecasts(model, saved, history)
    forecaster = Forecaster.from_onnx(model)
    forecaster.warmup()
    answer = forecaster.predict_records(forecaster.example_request(2))
    assert len(answer["forecasts"]) == 2 and answer["lead_time_hours"][:2] == [1.0, 2.0]


def test_serving_one_hot_encodes_like_the_datamodule(flags_export):
    # a wind sector the model reads: changing it must change the forecast
    model, saved, history = flags_export
    forecaster = Forecaster.from_onnx(model)
    init = saved.init_time.values[3]
    base = forecaster.predict(history, init_times=[init], max_missing=1.0).no2
    turned = history.copy(deep=True)
    turned["wd"][:] = (history.wd.values + 1) % 4
    other = forecaster.predict(turned, init_times=[init], max_missing=1.0).no2
    assert float(np.abs(base - other).max()) > 1e-4


@pytest.mark.parametrize("where", ["history", "static"])
def test_codes_outside_the_flags_are_refused_naming_the_variable(flags_export, where):
    model, saved, history = flags_export
    bad = history.copy(deep=True)
    name = "wd" if where == "history" else "site"
    bad[name].values.flat[1] = 7
    forecaster = Forecaster.from_onnx(model)
    valid = r"\[0, 1, 2, 3\] \(N E S W\)" if name == "wd" else r"\[1, 2\] \(urban rural\)"
    with pytest.raises(SchemaError, match=rf"'{name}' has code\(s\) \[7.0\].*{valid}"):
        forecaster.predict(bad, init_times=saved.init_time.values[:1], max_missing=1.0)


def test_point_requests_refuse_bad_codes_and_one_hot_good_ones(flags_export):
    model, saved, history = flags_export
    forecaster = Forecaster.from_onnx(model)
    init = pd.Timestamp(saved.init_time.values[2])
    window = history.sel(time=slice(init - pd.Timedelta(hours=11), init + pd.Timedelta(hours=6)))
    past = {v: window[v].values[:12].T for v in ("no2", "wd")}
    kw = dict(latitude=[40.0, 41.0, 42.0], longitude=[-80.0, -79.0, -78.0], max_missing=1.0)
    kw |= dict(station=["a", "b", "c"], static={"site": np.array([1, 2, 1])})
    values, valid_time = forecaster.predict_arrays(
        init.to_datetime64(), past, future={"wd": window.wd.values[12:].T}, **kw
    )
    want = saved.no2.sel(init_time=init.to_datetime64()).transpose("station", "lead_time")
    np.testing.assert_allclose(values["no2"], want.values, rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(valid_time, saved.valid_time.sel(init_time=init).values)
    with pytest.raises(SchemaError, match=r"'wd' has code\(s\) \[9.0\]"):
        forecaster.predict_arrays(
            init.to_datetime64(), past, future={"wd": np.full((3, 6), 9.0)}, **kw
        )


@pytest.mark.slow  # ~25 s: trains and exports a run
def test_monthly_model_with_mid_month_stamps_serves_its_predictions(tmp_path):
    times = pd.date_range("1990-01-01", periods=150, freq="MS") + pd.Timedelta("14D")
    ds = _stations(times)
    model, saved, history = _exported(
        tmp_path,
        ds,
        "task.targets=[no2]",
        "task.past_inputs=[wd]",
        "task.future_inputs=[month_sin,month_cos]",
        "task.static_inputs=[site]",
        "task.input_steps=4",
        "task.horizon=3",
        "data.batch_size=8",
    )
    meta = read_metadata(model)
    assert meta.step == TimeStep(1, "month") and meta.summary()["time_step"] == "1 month"
    window = json.loads(read_metadata(model).to_props()["geoclim.window"])
    assert window["time_step"] == {"count": 1, "unit": "month"}
    _same_forecasts(model, saved, history)
    # the last init's leads lie past the file: advanced by whole months, mid-month kept
    forecaster = Forecaster.from_onnx(model)
    out = forecaster.predict(history, max_missing=1.0)
    assert [str(t)[:10] for t in out.valid_time.values.ravel()] == [
        "2002-07-15",
        "2002-08-15",
        "2002-09-15",
    ]
    daily = history.isel(time=slice(-6, None)).assign_coords(
        time=pd.date_range("2002-01-01", periods=6, freq="D")
    )
    with pytest.raises(
        SchemaError, match="time step 1D does not match the model's time step 1 month"
    ):
        forecaster.predict(daily)


@pytest.mark.slow  # ~25 s: trains and exports a run
def test_noleap_daily_model_serves_its_predictions(tmp_path):
    times = xr.date_range("2001-01-01", periods=400, freq="D", calendar="noleap", use_cftime=True)
    ds = _stations(times)
    model, saved, history = _exported(
        tmp_path,
        ds,
        "task.targets=[no2]",
        "task.past_inputs=[wd]",
        "task.future_inputs=[doy_sin,doy_cos]",
        "task.static_inputs=[site]",
        "task.input_steps=5",
        "task.horizon=3",
        "data.batch_size=16",
    )
    meta = read_metadata(model)
    assert meta.time_calendar == "noleap" and meta.step == TimeStep.fixed("1D")
    _same_forecasts(model, saved, history)
    forecaster = Forecaster.from_onnx(model)
    out = forecaster.predict(history, max_missing=1.0)
    assert [str(t)[:10] for t in out.valid_time.values.ravel()] == [
        "2002-02-05",
        "2002-02-06",
        "2002-02-07",
    ]
    standard = history.convert_calendar("standard", use_cftime=False)
    with pytest.raises(SchemaError, match="'standard' calendar.*trained on the 'noleap'"):
        forecaster.predict(standard)


@pytest.mark.parametrize(
    "times,feature",
    [
        pytest.param(
            pd.date_range("2021-01-01", periods=24 * 30, freq="h"), "hour_sin", id="hourly"
        ),
        pytest.param(
            pd.date_range("1980-01-01", periods=300, freq="MS") + pd.Timedelta("14D"),
            "month_sin",
            id="mid-monthly",
        ),
        pytest.param(
            xr.date_range("2001-01-01", periods=400, freq="D", calendar="noleap", use_cftime=True),
            "doy_sin",
            id="noleap-daily",
        ),
    ],
)
def test_tree_export_with_a_categorical_input_serves_the_baselines_predictions(
    tmp_path, times, feature
):
    from geoclim.baselines.trees import LightGBMBaseline
    from geoclim.data import schema
    from geoclim.data.datamodule import GeoDataModule
    from geoclim.export.trees import export_tree

    task = dict(
        targets=["no2"],
        past_inputs=["wd"],
        future_inputs=[feature, "wd"],
        static_inputs=["site"],
        input_steps=4,
        horizon=2,
    )
    dm = GeoDataModule(schema.annotate(_stations(times)), task, window={"patch": 1})
    dm.setup()
    baseline = LightGBMBaseline(params={"n_estimators": 10}).fit(dm)
    report = export_tree(baseline, dm, tmp_path / "tree.onnx")
    assert report["parity"]["passed"]
    ref = baseline.predict(dm, "test")
    inits = ref.init_time.values[:8]
    forecaster = Forecaster.from_onnx(tmp_path / "tree.onnx")
    assert forecaster.metadata.task.past_channels == ("no2", "wd=N", "wd=E", "wd=S", "wd=W")
    out = forecaster.predict(dm.ds, init_times=inits, max_missing=1.0)
    want = ref.no2.sel(init_time=inits).transpose(*out.no2.dims)
    np.testing.assert_allclose(out.no2.values, want.values, rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(out.valid_time.values, ref.valid_time.sel(init_time=inits))
    _same_json_forecast(forecaster, dm.ds, ref)
    bad = dm.ds.copy(deep=True)
    bad["wd"].values[-1, 0] = 5
    with pytest.raises(SchemaError, match=r"'wd' has code\(s\) \[5.0\]"):
        forecaster.predict(bad, max_missing=1.0)


def _same_json_forecast(forecaster, ds, ref):
    # POST /v1/forecast's body for the first test init: the records path, same numbers
    init, i = ref.init_time.values[0], int(ds.indexes["time"].get_loc(ref.init_time.values[0]))
    past, lead = slice(i - 3, i + 1), slice(i + 1, i + 3)
    locations = [
        {
            "station": str(s),
            "latitude": float(ds.latitude[k]),
            "longitude": float(ds.longitude[k]),
            "past": {v: ds[v].values[past, k].astype(float).tolist() for v in ("no2", "wd")},
            "future": {"wd": ds.wd.values[lead, k].astype(float).tolist()},
            "static": {"site": float(ds.site.values[k])},
        }
        for k, s in enumerate(ds.station.values)
    ]
    stamp = str(init)[:19].replace(" ", "T")
    body = {"init_time": stamp + "Z", "locations": locations, "max_missing": 1.0}
    answer = forecaster.predict_records(body)
    got = np.array([f["values"]["no2"] for f in answer["forecasts"]])
    want = ref.no2.sel(init_time=init).transpose("station", "lead_time").values
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
    valid = [str(t)[:19].replace(" ", "T") + "Z" for t in ref.valid_time.sel(init_time=init).values]
    assert answer["valid_time"] == valid
    step = ref.valid_time.sel(init_time=init).values
    hours = [pd.Timedelta(t - init) / pd.Timedelta(hours=1) for t in step]
    assert answer["lead_time_hours"] == hours
