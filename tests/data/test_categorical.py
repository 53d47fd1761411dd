# CF flag variables as categorical inputs: one-hot channels, never normalised, named by meaning.

import numpy as np
import pytest
import xarray as xr

from geoclim.data import categorical, schema, sources
from geoclim.data.datamodule import GeoDataModule
from geoclim.data.task import ForecastTask
from geoclim.errors import ConfigError, SchemaError
from tests.conftest import make_grid, make_stations

FLAGS = {"flag_values": np.array([0, 1, 2, 3], np.int8), "flag_meanings": "N E S W"}


def _with_wind_sectors(nt=80, seed=0):
    ds = make_stations(nt=nt, n=3, seed=seed, nan_fraction=0.0)
    codes = np.random.default_rng(seed).integers(0, 4, (nt, 3)).astype(np.float64)
    codes[5, 1] = np.nan  # a missing sector
    return ds.assign(wd=(("time", "station"), codes, dict(FLAGS, long_name="wind sector")))


def _dm(ds, **task):
    spec = dict(targets=["no2"], past_inputs=["wd"], input_steps=4, horizon=2) | task
    dm = GeoDataModule(ds, spec, batch_size=512)
    dm.setup()
    return dm


def test_categories_from_flags():
    da = xr.DataArray([0, 1], attrs={"flag_values": "0 1", "flag_meanings": "sea land"})
    assert categorical.categories(da, "lsm") == {"sea": 0, "land": 1}
    np.testing.assert_array_equal(
        categorical.one_hot(np.array([1.0, np.nan, 0.0]), {"sea": 0, "land": 1}),
        [[0, 1], [0, 0], [1, 0]],
    )


def test_one_hot_channels_exact_and_not_normalised():
    ds = _with_wind_sectors()
    dm = _dm(ds)
    assert dm.task.categories == {"wd": {"N": 0, "E": 1, "S": 2, "W": 3}}
    assert dm.task.past_channels == ("no2", "wd=N", "wd=E", "wd=S", "wd=W")
    assert dm.dims["c_past"] == 5
    assert "wd" not in dm.normalizer.stats
    batch = dm.dataset("train")[np.arange(len(dm.index["train"]))]
    t, y, _ = dm.index["train"].decode()
    past = batch["past"].numpy()  # (B, T_in, C, 1, 1)
    codes = ds["wd"].values[t[:, None] + np.arange(-3, 1), y[:, None]]  # (B, T_in)
    want = np.stack([(codes == k) for k in range(4)], -1).astype(np.float32)
    np.testing.assert_array_equal(past[:, :, 1:, 0, 0], want)
    assert ((past[:, :, 1:].sum(2) == 1) | np.isnan(codes)[..., None, None]).all()


def test_static_and_known_future_categorical():
    ds = make_grid(nt=100, nlat=2, nlon=3, nan_fraction=0.0, variables=("pm25", "wd"))
    lsm = np.array([[0, 1, 1], [1, 0, 1]], np.int8)
    flags = {"flag_values": [0, 1], "flag_meanings": "sea land"}
    ds["land_sea_mask"] = (("latitude", "longitude"), lsm, flags)
    ds["wd"] = ds["wd"].copy(data=np.tile(np.arange(100)[:, None, None] % 4, (1, 2, 3)))
    ds["wd"].attrs = dict(FLAGS)
    dm = GeoDataModule(
        schema.validate(ds),
        dict(
            targets=["pm25"],
            future_inputs=["wd", "hour_sin"],
            static_inputs=["land_sea_mask", "elevation"],
            input_steps=3,
            horizon=2,
        ),
        batch_size=8,
    )
    dm.setup()
    assert dm.task.static_channels == ("land_sea_mask=sea", "land_sea_mask=land", "elevation")
    assert dm.task.known_channels == ("wd=N", "wd=E", "wd=S", "wd=W", "hour_sin")
    assert dm.dims["c_static"] == 3 and dm.dims["c_known"] == 5
    batch = dm.dataset("train")[np.arange(8)]
    t, y, x = dm.index["train"].decode(np.arange(8))
    np.testing.assert_array_equal(batch["static"][:, 1, 0, 0].numpy(), lsm[y, x])
    lead_code = (t[:, None] + np.arange(1, 3)) % 4  # (B, L)
    for k in range(4):
        np.testing.assert_array_equal(batch["known_future"][:, :, k, 0, 0].numpy(), lead_code == k)


def test_flag_variable_survives_loading(tmp_path):
    ds = _with_wind_sectors()
    ds["wd"].encoding = {"dtype": "int8", "_FillValue": -1}
    ds.to_netcdf(tmp_path / "f.nc")
    back = sources.open_dataset(tmp_path / "f.nc")
    assert categorical.is_categorical(back["wd"]) and np.isnan(back["wd"].values[5, 1])
    assert _dm(back).task.past_channels[1:] == ("wd=N", "wd=E", "wd=S", "wd=W")


def test_bad_flags_are_refused():
    ds = _with_wind_sectors()
    bad = ds.copy()
    bad["wd"] = bad["wd"].where(bad["wd"] != 2, 7.0)
    with pytest.raises(SchemaError, match=r"'wd' has code\(s\) \[7.0\] outside its flag_values"):
        schema.validate(bad)
    bad = ds.copy()
    bad["wd"].attrs["flag_meanings"] = "N E S"
    with pytest.raises(SchemaError, match="'wd' has 4 flag_values but 3 flag_meanings"):
        schema.validate(bad)


def test_categorical_target_and_mismatched_declaration():
    with pytest.raises(ConfigError, match="'wd' is categorical"):
        ForecastTask(targets=("wd",), past_inputs=("wd",), categories={"wd": {"a": 0}})
    with pytest.raises(ConfigError, match=r"task.categories\['wd'\]"):
        _dm(_with_wind_sectors(), categories={"wd": {"N": 0, "E": 1}})
    task = ForecastTask(targets=("no2",), past_inputs=("wd",), categories={"wd": {"N": 0}})
    assert ForecastTask.from_dict(task.to_dict()) == task
