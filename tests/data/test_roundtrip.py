# The data path's first property: windows -> batches -> assembly puts values back in place.

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from geoclim.data.assemble import to_forecast_dataset, truth_at_valid_time
from geoclim.data.datamodule import GeoDataModule
from geoclim.errors import ConfigError
from tests.conftest import make_grid, make_stations


def _collect(dm, split, fn):
    out = {k: [] for k in ("pred", "t", "y", "x")}
    for batch in _loader(dm, split):
        out["pred"].append(fn(batch))
        out["t"].append(batch["time_idx"].numpy())
        out["y"].append(batch["lat_idx"].numpy())
        out["x"].append(batch["lon_idx"].numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def _loader(dm, split):
    return {"train": dm.train_dataloader, "val": dm.val_dataloader, "test": dm.test_dataloader}[
        split
    ]()


def _datamodule(ds, window, input_steps=5, horizon=3, future=("hour_cos",), **kw):
    target = "pm25" if "pm25" in ds else "no2"
    return GeoDataModule(
        ds,
        dict(
            targets=[target],
            past_inputs=["t2m"],
            future_inputs=list(future),
            input_steps=input_steps,
            horizon=horizon,
        ),
        window=window,
        batch_size=13,
        **kw,
    )


def _persistence(batch):
    # last input step of the target channel, repeated over leads
    last = batch["past"][:, -1:, :1].numpy()  # (B, 1, 1, h, w)
    return np.repeat(last, batch["target"].shape[1], axis=1)


CASES = [
    pytest.param(lambda s: make_grid(nt=120, seed=s), {"patch": 1}, id="grid-points"),
    pytest.param(
        lambda s: make_grid(nt=120, seed=s),
        {"patch": 2, "patch_stride": 1},
        id="grid-overlapping-patches",
    ),
    pytest.param(lambda s: make_grid(nt=120, seed=s), {"patch": None}, id="whole-grid"),
    pytest.param(lambda s: make_stations(nt=120, seed=s), {}, id="stations"),
]


@pytest.mark.parametrize(("make", "window"), CASES)
@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 1000), split=st.sampled_from(["train", "val", "test"]))
def test_target_as_prediction_equals_source_at_valid_time(make, window, seed, split):
    dm = _datamodule(make(seed), window)
    dm.setup()
    target = dm.task.targets[0]
    got = _collect(dm, split, lambda b: b["target"].numpy())
    fc = to_forecast_dataset(
        got["pred"], got["t"], got["y"], got["x"], dm.ds, dm.task.targets, normalizer=dm.normalizer
    )
    truth = truth_at_valid_time(fc, dm.ds)[target]
    observed = truth.notnull()
    assert int(observed.sum()) > 0
    np.testing.assert_allclose(fc[target].where(observed).values, truth.values, rtol=2e-5)
    np.testing.assert_array_equal(
        fc.valid_time.values, fc.init_time.values[:, None] + fc.lead_time.values[None, :]
    )


@pytest.mark.parametrize(("make", "window"), CASES)
def test_persistence_equals_source_at_init_time(make, window):
    ds = make(7)
    dm = _datamodule(ds, window)
    dm.setup()
    target = dm.task.targets[0]
    got = _collect(dm, "test", _persistence)
    fc = to_forecast_dataset(
        got["pred"], got["t"], got["y"], got["x"], dm.ds, dm.task.targets, normalizer=dm.normalizer
    )
    at_init = ds[target].sel(time=fc.init_time.values).rename(time="init_time")
    expected = at_init.broadcast_like(fc[target])
    have = at_init.notnull().broadcast_like(fc[target]) & fc[target].notnull()
    assert int(have.sum()) > 0
    np.testing.assert_allclose(
        fc[target].values[have.values], expected.values[have.values], rtol=2e-5
    )
    # init times are the last input step: the first init of the test split
    first = dm.splits.test[0] + dm.task.input_steps - 1
    assert fc.init_time.values[0] == ds.time.values[first]


def _mid_monthly_grid(seed):
    times = pd.date_range("1990-01-01", periods=150, freq="MS") + pd.Timedelta("14D")
    return make_grid(nt=150, seed=seed).assign_coords(time=times)


def _noleap_stations(seed):
    times = xr.date_range("2001-02-20", periods=120, freq="D", calendar="noleap", use_cftime=True)
    return make_stations(nt=120, seed=seed).assign_coords(time=times)


def _yearly_stations(seed):
    times = xr.date_range(
        "1850-07-01", periods=150, freq="12MS", calendar="360_day", use_cftime=True
    )
    return make_stations(nt=150, seed=seed).assign_coords(time=times)


CALENDAR_CASES = [
    pytest.param(_mid_monthly_grid, ("month_sin",), id="mid-monthly-grid"),
    pytest.param(_noleap_stations, ("doy_cos", "dow_sin"), id="noleap-daily-stations"),
    pytest.param(_yearly_stations, (), id="yearly-360day-stations"),
]


@pytest.mark.parametrize(("make", "future"), CALENDAR_CASES)
@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 1000), split=st.sampled_from(["train", "val", "test"]))
def test_calendar_steps_round_trip_to_the_axis_own_stamps(make, future, seed, split):
    ds = make(seed)
    dm = _datamodule(ds, {"patch": 1}, input_steps=4, horizon=3, future=future)
    dm.setup()
    target = dm.task.targets[0]
    got = _collect(dm, split, lambda b: b["target"].numpy())
    fc = to_forecast_dataset(
        got["pred"], got["t"], got["y"], got["x"], dm.ds, dm.task.targets, normalizer=dm.normalizer
    )
    truth = truth_at_valid_time(fc, dm.ds)[target]
    observed = truth.notnull()
    assert int(observed.sum()) > 0
    np.testing.assert_allclose(fc[target].where(observed).values, truth.values, rtol=2e-5)
    # valid_time is the dataset's own stamp k steps after the init (mid-month stays mid-month)
    pos = np.searchsorted(ds.time.values, fc.init_time.values)
    want = ds.time.values[pos[:, None] + np.arange(1, 4)]
    np.testing.assert_array_equal(fc.valid_time.values, want)
    persistence = _collect(dm, split, _persistence)
    fp = to_forecast_dataset(
        persistence["pred"], persistence["t"], persistence["y"], persistence["x"],
        dm.ds, dm.task.targets, normalizer=dm.normalizer,
    )  # fmt: skip
    at_init = ds[target].sel(time=fp.init_time.values).rename(time="init_time")
    have = at_init.notnull().broadcast_like(fp[target]) & fp[target].notnull()
    assert int(have.sum()) > 0
    np.testing.assert_allclose(
        fp[target].values[have.values],
        at_init.broadcast_like(fp[target]).values[have.values],
        rtol=2e-5,
    )


def test_calendar_lead_time_is_counted_in_months():
    dm = _datamodule(_mid_monthly_grid(0), {"patch": 1}, horizon=3, future=("month_cos",))
    dm.setup()
    got = _collect(dm, "test", _persistence)
    fc = to_forecast_dataset(
        got["pred"], got["t"], got["y"], got["x"], dm.ds, dm.task.targets, normalizer=dm.normalizer
    )
    np.testing.assert_array_equal(fc.lead_time.values, [1, 2, 3])
    assert fc.lead_time.attrs["units"] == "months"


def test_hour_feature_on_monthly_data_is_refused():
    with pytest.raises(ConfigError, match=r"\['hour_cos'\] do not vary .* 1 month"):
        _datamodule(_mid_monthly_grid(0), {"patch": 1}).setup()


def test_batch_layout_point_vs_spatial():
    ds = make_grid(nt=200, nlat=5, nlon=7)
    for window, hw in [({"patch": 1}, (1, 1)), ({"patch": 3}, (3, 3)), ({"patch": None}, (5, 7))]:
        dm = GeoDataModule(
            ds,
            dict(
                targets=["pm25"],
                past_inputs=["t2m"],
                future_inputs=["hour_sin", "doy_cos", "t2m"],
                static_inputs=["elevation", "land_sea_mask"],
                input_steps=6,
                horizon=4,
            ),
            window=window,
            batch_size=4,
        )
        b = next(iter(dm.train_dataloader()))
        assert b["past"].shape == (4, 6, 2, *hw)
        assert b["known_future"].shape == (4, 4, 3, *hw)
        assert b["static"].shape == (4, 2, *hw)
        assert b["target"].shape == b["target_mask"].shape == (4, 4, 1, *hw)
        assert dm.dims["c_past"] == 2 and dm.dims["c_known"] == 3 and dm.dims["c_static"] == 2


def test_imputed_targets_do_not_count():
    ds = make_grid(nt=120, nan_fraction=0.0)
    mask = xr.zeros_like(ds.pm25, dtype=bool)
    mask[:, 0, 0] = True
    ds = ds.assign(pm25_imputed=mask)
    dm = _datamodule(ds, {"patch": 1})
    dm.setup()
    t, y, x = dm.index["train"].decode()
    assert not ((y == 0) & (x == 0)).any()
    keep = _datamodule(ds, {"patch": 1}, exclude_imputed_targets=False)
    keep.setup()
    assert len(keep.index["train"]) > len(dm.index["train"])


def test_normaliser_is_fitted_on_train_only():
    ds = make_grid(nt=120, nan_fraction=0.0)
    dm = _datamodule(ds, {"patch": 1})
    dm.setup()
    spoiled = ds.copy(deep=True)
    spoiled["t2m"][dm.splits.train[1] :] = 1e4
    dm2 = _datamodule(spoiled, {"patch": 1})
    dm2.setup()
    assert dm.normalizer == dm2.normalizer


def test_bad_window_key():
    with pytest.raises(ConfigError, match="unknown data.window key\\(s\\) \\['input_steps'\\]"):
        GeoDataModule(make_grid(), dict(targets=["pm25"]), window={"input_steps": 3})
