"""Any variable can be a target or an input; names are checked against the dataset."""

import numpy as np
import pytest

from geoclim.data import datamodule, schema
from geoclim.data.datamodule import GeoDataModule, cycle_length, derive_batch_size, derive_stride
from geoclim.data.task import ForecastTask
from geoclim.errors import ConfigError
from tests.conftest import make_grid, make_stations


def _with_unregistered(ds):
    ds = ds.assign(dew=ds.t2m.assign_attrs(units="degC", long_name="dew point"))
    ds = ds.assign(depth=ds.elevation.assign_attrs(units="m", long_name="depth"))
    return schema.annotate(ds)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(targets=("pm2.5",)), "task.targets: no variable 'pm2.5'; the dataset has"),
        (dict(targets=("dew",), future_inputs=("moon",)), "calendar features"),
        (dict(targets=("dew",), static_inputs=("t2m",)), "'t2m' has a time dim"),
        (dict(targets=("dew",), past_inputs=("depth",)), "'depth' has no time dim"),
    ],
)
def test_task_names_are_checked_against_the_data(kwargs, message):
    ds = _with_unregistered(make_grid())
    with pytest.raises(ConfigError, match=message) as err:
        ForecastTask(**kwargs).check_variables(ds)
    assert "'dew'" in str(err.value) or "moon" in str(err.value) or "depth" in str(err.value)


def test_unregistered_target_and_static_input_train_through_the_datamodule():
    ds = _with_unregistered(make_grid(nt=80))
    task = ForecastTask(
        targets=("dew",), past_inputs=("pm25",), static_inputs=("depth",), input_steps=4, horizon=2
    )
    task.check_variables(ds)
    dm = GeoDataModule(ds, task, window={"stride": None, "patch": 1}, batch_size=None)
    dm.setup()
    batch = next(iter(dm.loader("train", shuffle=False)))
    assert tuple(batch["static"].shape[1:]) == (1, 1, 1)
    n = len(dm.index["train"])  # 12 cells x 51 inits, less the windows with NaN targets
    assert dm.spec.stride == 1 and 400 < n <= 612 and dm.batch_size == 16
    assert dm.normalizer.stats["dew"].log is False


def test_derived_stride_hits_the_sample_budget_and_rotates_through_the_cycle():
    assert derive_stride(100, 24) == 1
    assert derive_stride(16384 * 47, 24) == 47
    assert derive_stride(16384 * 48, 24) == 49  # 48 shares factors with 24
    assert derive_stride(16384 * 14, 7) == 15  # weekly cycle of daily data
    assert derive_stride(16384 * 12, 12) == 13
    # whole NAPS grids, hourly: 6084 training inits, 1024 spatial samples -> 6, coprime: 7
    assert derive_stride(6084, 24, datamodule.TARGET_SPATIAL_SAMPLES) == 7


def test_cycle_length_follows_the_step():
    def t(freq, n=5):
        import pandas as pd

        return pd.date_range("2020-01-01", periods=n, freq=freq).values

    assert cycle_length(t("h")) == 24
    assert cycle_length(t("3h")) == 8
    assert cycle_length(t("D")) == 7
    assert cycle_length(t("MS")) == 12
    assert cycle_length(t("7D")) == 1


@pytest.mark.parametrize(("n", "size"), [(0, 8), (100, 8), (1024, 32), (5000, 128), (10**6, 256)])
def test_derived_batch_size(n, size):
    assert derive_batch_size(n) == size


def test_datamodule_derives_stride_for_station_data():
    ds = make_stations(nt=24 * 40, n=30)
    task = ForecastTask(targets=("no2",), input_steps=24, horizon=24)
    dm = GeoDataModule(ds, task, window={"stride": None}, batch_size=None)
    dm.setup()
    # 30 stations x (672 - 47) inits at stride 1 = 18750 > 16384 -> stride 2 would share 2
    # with 24, so 5 (the next coprime one)
    assert dm.spec.stride == 5
    assert len(dm.index["train"]) == int(np.ceil((672 - 47) / 5)) * 30
    assert dm.batch_size == 64
    assert datamodule.TARGET_SAMPLES == 16384


def test_explicit_stride_and_batch_are_kept():
    ds = make_stations(nt=200, n=3)
    task = ForecastTask(targets=("no2",), input_steps=6, horizon=3)
    dm = GeoDataModule(ds, task, window={"stride": 7}, batch_size=16)
    dm.setup()
    assert dm.spec.stride == 7 and dm.batch_size == 16
