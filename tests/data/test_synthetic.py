import numpy as np
import pytest
import xarray as xr

from geoclim.data import schema, synthetic_physics
from geoclim.data.synthetic import (
    DRIVERS,
    STATIC_VARIABLES,
    VARIABLES,
    make_dataset,
    make_station_dataset,
)
from geoclim.errors import ConfigError, GeoclimError


@pytest.fixture(scope="module")
def tiny():
    return make_dataset()


@pytest.fixture(scope="module")
def fortnight():
    # Starts on a Sunday: two weekends, 14 days, every variable.
    return make_dataset(VARIABLES, nlat=12, nlon=12, days=14, seed=3)


def test_default_dataset_is_canonical(tiny):
    schema.validate(tiny, ["pm25", "o3", "no2", "t2m", "u10", "v10", "blh", "ssrd"])
    assert dict(tiny.sizes) == {"time": 72, "latitude": 8, "longitude": 8}
    assert tiny["pm25"].dims == ("time", "latitude", "longitude")
    assert tiny["elevation"].dims == ("latitude", "longitude")
    assert set(tiny.data_vars) == {
        "pm25",
        "o3",
        "no2",
        "t2m",
        "u10",
        "v10",
        "blh",
        "ssrd",
        *STATIC_VARIABLES,
    }
    assert all(da.dtype == np.float32 for da in tiny.data_vars.values())
    assert (np.diff(tiny.latitude) > 0).all()
    assert tiny.time.values[0] == np.datetime64("2023-01-01T00:00")
    assert tiny.attrs["source"] == "geoclim synthetic generator"
    assert tiny.attrs["seed"] == 0
    assert tiny.attrs["title"]
    assert "o3: ssrd, t2m" in tiny.attrs["drivers"]
    assert tiny["no2"].attrs["units"] == "ppb"
    assert tiny["no2"].attrs["drivers"] == ", ".join(DRIVERS["no2"])


def test_every_variable_validates_without_nan(fortnight):
    schema.validate(fortnight, VARIABLES + STATIC_VARIABLES)
    for name, da in fortnight.data_vars.items():
        assert np.isfinite(da.values).all(), name


def test_same_seed_same_data_other_seed_differs(tiny):
    make_dataset.cache_clear()  # simulate again, not a kept copy
    xr.testing.assert_identical(make_dataset(), tiny)
    other = make_dataset(seed=1)
    for name in ("pm25", "o3", "t2m", "emissions"):
        assert not np.allclose(other[name].values, tiny[name].values), name


def test_requesting_a_subset_does_not_change_the_values(tiny):
    only = make_dataset(["o3"], static=())
    assert list(only.data_vars) == ["o3"]
    xr.testing.assert_identical(only["o3"], tiny["o3"])


def test_shapes_follow_the_arguments():
    ds = make_dataset(
        ["pm25"],
        nlat=3,
        nlon=5,
        days=0.5,
        freq="30min",
        grid_deg=1.0,
        lat0=10.0,
        lon0=20.0,
        start="2024-06-01",
    )
    assert dict(ds.sizes) == {"time": 24, "latitude": 3, "longitude": 5}
    np.testing.assert_allclose(ds.latitude, [9.0, 10.0, 11.0])
    np.testing.assert_allclose(ds.longitude, [18.0, 19.0, 20.0, 21.0, 22.0])
    assert ds.time.values[1] - ds.time.values[0] == np.timedelta64(30, "m")


def test_coarse_freq_averages_the_hourly_model_steps():
    hourly = make_dataset(["t2m", "tp"], days=3, static=())
    daily = make_dataset(["t2m", "tp"], days=3, freq="1D", static=())
    assert daily.sizes["time"] == 3
    np.testing.assert_allclose(daily.t2m, hourly.t2m.resample(time="1D").mean(), rtol=1e-5)
    np.testing.assert_allclose(daily.tp, hourly.tp.resample(time="1D").sum(), atol=1e-4)


def test_values_are_in_plausible_ranges(fortnight):
    summer = make_dataset(VARIABLES, nlat=12, nlon=12, days=7, seed=3, start="2023-07-10")
    bounds = {
        "pm25": (0, 150),
        "pm10": (0, 200),
        "o3": (0, 120),
        "no2": (0, 150),
        "nox": (0, 200),
        "so2": (0, 200),
        "co": (0, 10),
        "t2m": (230, 320),
        "rh": (0, 100),
        "u10": (-30, 30),
        "v10": (-30, 30),
        "ws": (0, 40),
        "wd": (0, 360),
        "sp": (7e4, 1.1e5),
        "blh": (50, 3000),
        "tp": (0, 50),
        "ssrd": (0, 1100),
    }
    for ds in (fortnight, summer):
        for name, (lo, hi) in bounds.items():
            assert lo <= ds[name].min() and ds[name].max() <= hi, name
    # Typical values: the bulk sits where real networks report.
    for name, (lo, hi) in {
        "pm25": (2, 40),
        "o3": (5, 60),
        "no2": (0.3, 40),
        "t2m": (255, 305),
    }.items():
        median = float(fortnight[name].median())
        assert lo < median < hi, (name, median)
    assert 260 < float(fortnight.t2m.mean()) < 285  # January near 40N
    assert float(summer.t2m.mean()) > float(fortnight.t2m.mean()) + 10
    assert float(summer.o3.max()) > 40


def test_pm10_is_at_least_pm25(fortnight):
    assert (fortnight.pm10 >= fortnight.pm25).all()


def test_ssrd_is_zero_at_night_and_positive_by_day(tiny):
    seconds = tiny.time.values.astype("datetime64[s]").astype(float)
    cosz = np.stack(
        [
            synthetic_physics.solar_cos_zenith(t, tiny.latitude.values, tiny.longitude.values)
            for t in seconds
        ]
    )
    ssrd = tiny.ssrd.values
    assert (ssrd[cosz <= 0] == 0).all()
    assert (ssrd[cosz > 0.05] > 0).all()
    assert 0.3 < (ssrd == 0).mean() < 0.8  # long January nights


def test_t2m_has_a_diurnal_cycle_and_rh_runs_against_it(fortnight):
    local_hour = (fortnight.time.dt.hour + fortnight.longitude / 15.0) % 24
    afternoon = fortnight.t2m.where((local_hour > 13) & (local_hour < 17)).mean()
    dawn = fortnight.t2m.where((local_hour > 4) & (local_hour < 7)).mean()
    assert afternoon > dawn + 2
    t = fortnight.t2m - fortnight.t2m.mean("time")
    rh = fortnight.rh - fortnight.rh.mean("time")
    assert float(xr.corr(t, rh)) < -0.3


def test_boundary_layer_is_deeper_in_the_afternoon_than_at_night(fortnight):
    local_hour = (fortnight.time.dt.hour + fortnight.longitude / 15.0) % 24
    afternoon = fortnight.blh.where((local_hour > 12) & (local_hour < 16)).mean()
    night = fortnight.blh.where((local_hour > 0) & (local_hour < 5)).mean()
    assert afternoon > 1.5 * night


def test_o3_is_higher_by_day_than_at_night(tiny, fortnight):
    for ds in (tiny, fortnight):
        day = ds.ssrd > 0
        assert ds.o3.where(day).mean() > ds.o3.where(~day).mean() + 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no2_is_higher_near_sources_and_o3_is_titrated_there_at_night(seed):
    ds = make_dataset(["no2", "o3", "ssrd"], nlat=12, nlon=12, days=4, seed=seed)
    emissions = ds.emissions.values
    near = emissions >= np.quantile(emissions, 0.9)
    far = emissions <= np.quantile(emissions, 0.5)
    no2 = ds.no2.mean("time").values
    assert no2[near].mean() > 3 * no2[far].mean()
    night = ds.ssrd == 0
    night_o3 = ds.o3.where(night).mean("time").values
    night_no2 = ds.no2.where(night).mean("time").values
    assert night_o3[near].mean() < night_o3[far].mean() - 1
    assert np.corrcoef(night_no2.ravel(), night_o3.ravel())[0, 1] < -0.4


def test_no2_is_higher_on_weekdays_than_weekends(fortnight):
    emissions = fortnight.emissions.values
    near = xr.DataArray(emissions >= np.quantile(emissions, 0.9), dims=("latitude", "longitude"))
    no2 = fortnight.no2.where(near).mean(("latitude", "longitude"))
    local_time = fortnight.time + np.timedelta64(-400, "m")  # solar time at 100 W
    weekday = local_time.dt.dayofweek < 5
    assert no2.where(weekday).mean() > 1.2 * no2.where(~weekday).mean()


def test_advect_moves_a_pulse_one_cell_downwind():
    c = np.zeros((1, 5, 6))
    c[0, 2, 1] = 1.0
    boundary = np.zeros(1)
    east = synthetic_physics.advect(c, np.zeros((5, 6)), np.ones((5, 6)), boundary)
    assert east[0, 2, 2] == pytest.approx(1.0) and east.sum() == pytest.approx(1.0)
    north_half = synthetic_physics.advect(c, np.full((5, 6), 0.5), np.zeros((5, 6)), boundary)
    assert north_half[0, 2, 1] == pytest.approx(0.5) and north_half[0, 3, 1] == pytest.approx(0.5)


def test_advect_brings_in_boundary_values_and_diffusion_conserves_the_interior():
    c = np.zeros((1, 4, 4))
    inflow = synthetic_physics.advect(c, np.zeros((4, 4)), np.ones((4, 4)), np.array([7.0]))
    assert (inflow[0, :, 0] == 7.0).all() and (inflow[0, :, 1:] == 0.0).all()
    c = np.zeros((1, 5, 5))
    c[0, 2, 2] = 1.0
    spread = synthetic_physics.diffuse(c, 0.1, 0.1, np.zeros(1))
    assert spread.sum() == pytest.approx(1.0)
    assert spread[0, 2, 2] == pytest.approx(0.6) and spread[0, 1, 2] == pytest.approx(0.1)


def _lag_correlation(x, y):
    # corr(x[t], y[t + 1]) per cell
    x, y = x[:-1] - x[:-1].mean(0), y[1:] - y[1:].mean(0)
    return (x * y).mean(0) / (x.std(0) * y.std(0))


@pytest.mark.parametrize("u", [5.0, -5.0], ids=["eastward", "westward"])
def test_uniform_wind_carries_no2_downwind(u):
    ds = make_dataset(["no2"], nlat=8, nlon=12, days=4, wind=(u, 0.0))
    no2 = ds.no2.values
    west, east = no2[:, :, :-1], no2[:, :, 1:]
    # West-to-east lagged correlation beats east-to-west when the wind blows east.
    asymmetry = np.mean(_lag_correlation(west, east) - _lag_correlation(east, west))
    assert np.sign(asymmetry) == np.sign(u) and abs(asymmetry) > 0.05
    # The time-mean plume sits downwind of the emission centroid.
    x = np.arange(ds.sizes["longitude"])
    weight = ds.emissions.values.sum(0)
    plume = (ds.no2.mean("time").values - ds.no2.mean("time").values.min()).sum(0)
    shift = (plume * x).sum() / plume.sum() - (weight * x).sum() / weight.sum()
    assert np.sign(shift) == np.sign(u)
    assert np.allclose(make_dataset(["u10"], days=1, wind=(u, 0.0)).u10, u)


def test_station_dataset_samples_the_grid():
    kwargs = dict(variables=["pm25", "no2", "t2m"], nlat=6, nlon=7, days=2, seed=4)
    grid = make_dataset(**kwargs)
    stations = make_station_dataset(5, **kwargs)
    schema.validate(stations, ["pm25", "no2", "t2m", "elevation"])
    assert dict(stations.sizes) == {"time": 48, "station": 5}
    assert stations.latitude.dims == ("station",)
    assert stations.station.to_index().is_unique
    lat, lon = stations.latitude, stations.longitude
    assert ((lat >= grid.latitude.min()) & (lat <= grid.latitude.max())).all()
    assert ((lon >= grid.longitude.min()) & (lon <= grid.longitude.max())).all()
    at_stations = grid.sel(latitude=lat, longitude=lon)
    for name in ("pm25", "no2", "t2m", "elevation"):
        np.testing.assert_array_equal(stations[name].values, at_stations[name].values)
    assert stations.attrs["seed"] == 4
    assert not np.array_equal(make_station_dataset(5, **{**kwargs, "seed": 5}).latitude, lat)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"variables": ["pm2.5"]}, r"unknown variable 'pm2\.5'.*'pm25'", id="variable"),
        pytest.param(
            {"static": ["soil"]}, r"unknown static field 'soil'.*'elevation'", id="static"
        ),
        pytest.param({"nlat": 0}, r"nlat=0 must be an integer >= 1", id="nlat"),
        pytest.param({"nlon": -3}, r"nlon=-3", id="nlon"),
        pytest.param({"days": 0}, r"days=0 must be a positive", id="days"),
        pytest.param({"days": 1, "freq": "1D"}, r"gives 1 time step", id="too-short"),
        pytest.param(
            {"freq": "fortnightly"}, r"freq='fortnightly' is not a positive fixed", id="freq"
        ),
        pytest.param({"freq": "-1h"}, r"freq='-1h'", id="negative-freq"),
        pytest.param({"start": "yesterday-ish"}, r"start='yesterday-ish'", id="start"),
        pytest.param({"grid_deg": 30.0}, r"within -90\.\.90", id="off-globe"),
        pytest.param({"grid_deg": 0.0}, r"grid_deg=0.0 must be > 0", id="grid-deg"),
        pytest.param({"seed": -1}, r"seed=-1", id="seed"),
    ],
)
def test_bad_input_raises_config_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        make_dataset(**kwargs)


def test_bad_station_count_raises_config_error():
    with pytest.raises(GeoclimError, match=r"n_stations=10 must be an integer in \[1, .* = 4\]"):
        make_station_dataset(10, nlat=2, nlon=2)


def test_global_coarse_grid_is_supported():
    ds = make_dataset(["t2m", "o3"], nlat=6, nlon=12, grid_deg=30.0, lat0=0.0, lon0=165.0, days=2)
    schema.validate(ds)
    assert ds.latitude.values[0] == -75.0 and ds.longitude.values[-1] == 330.0


def _counting(monkeypatch):
    """Count the simulations :func:`make_dataset` runs."""
    from geoclim.data import synthetic

    calls, original = [], synthetic._simulate

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(synthetic, "_simulate", counted)
    make_dataset.cache_clear()
    return calls


def test_a_repeated_call_returns_a_private_copy_of_the_same_data(monkeypatch):
    from omegaconf import OmegaConf

    calls = _counting(monkeypatch)
    args = {"nlat": 3, "nlon": 4, "days": 1, "seed": 11}
    first = make_dataset(["no2", "t2m"], **args)
    first["no2"][:] = -1.0  # the caller owns what it gets
    first.attrs["title"] = "changed"
    again = make_dataset(OmegaConf.create(["no2", "t2m"]), **args)  # a list as Hydra passes it
    assert len(calls) == 1  # simulated once
    assert float(again["no2"].min()) > 0 and again.attrs["title"] != "changed"
    make_dataset.cache_clear()
    xr.testing.assert_identical(again, make_dataset(["no2", "t2m"], **args))
    assert len(calls) == 2
    other = make_dataset(["no2", "t2m"], **{**args, "seed": 12})
    assert len(calls) == 3 and not other["no2"].equals(again["no2"])


def test_failed_calls_and_large_results_are_not_kept(monkeypatch):
    from geoclim.data import synthetic

    calls = _counting(monkeypatch)
    with pytest.raises(ConfigError):
        make_dataset(["no2"], nlat=0)
    monkeypatch.setattr(synthetic, "MEMO_BYTES", 0)
    make_dataset(["no2"], nlat=2, nlon=2, days=1)
    make_dataset(["no2"], nlat=2, nlon=2, days=1)
    assert len(calls) == 2  # over MEMO_BYTES: simulated each time


def test_meteorology_of_a_block_equals_the_steps_one_at_a_time():
    grid = synthetic_physics.Grid(np.array([-0.5, 0.5, 1.5]), np.array([10.0, 11.0]), 1.0)
    rng = np.random.default_rng(4)
    static = synthetic_physics.make_static(rng, grid)
    met = synthetic_physics.Meteorology(rng, grid, static, 30, 3600.0, 1.7e9)
    block = met.block(5, 30)
    assert block.t2m.shape == (25, 3, 2) and block.local_hour.shape == (25, 1, 2)
    assert block.doy.shape == (25,)
    emitted = synthetic_physics.emissions(static, block)
    assert emitted.shape == (25, len(synthetic_physics.TRACERS), 3, 2)
    for j in (0, 7, 24):
        one = met.at(5 + j)
        assert one.t2m.shape == (3, 2) and one.weekday.shape == (1, 2)
        assert isinstance(one.doy, float) and one.doy == block.doy[j]
        # equal up to the last bit of float64 (numpy's SIMD loops round a few functions,
        # such as the power, differently from its one-element loops)
        for name in ("t2m", "rh", "u10", "v10", "blh", "ssrd", "sp", "tp", "weekday"):
            got, want = getattr(block.step(j), name), getattr(one, name)
            np.testing.assert_allclose(got, want, rtol=1e-14, atol=0, err_msg=name)
        want = synthetic_physics.emissions(static, one)
        np.testing.assert_allclose(emitted[j], want, rtol=1e-14, atol=0)
    cosz = synthetic_physics.solar_cos_zenith(np.array([0.0, 43200.0]), grid.lat, grid.lon)
    np.testing.assert_allclose(
        cosz[1], synthetic_physics.solar_cos_zenith(43200.0, grid.lat, grid.lon), rtol=1e-14
    )


@pytest.mark.parametrize("freq", ["1h", "3h"])
def test_the_size_of_the_meteorology_blocks_does_not_change_the_data(monkeypatch, freq):
    from geoclim.data import synthetic

    args = {"nlat": 3, "nlon": 4, "days": 2, "seed": 7, "freq": freq}
    whole = make_dataset.__wrapped__(VARIABLES, **args)  # one block (default size)
    monkeypatch.setattr(synthetic, "BLOCK_CELL_STEPS", 5 * 12)  # blocks of 5 steps
    blocks = make_dataset.__wrapped__(VARIABLES, **args)
    assert blocks.attrs == whole.attrs
    xr.testing.assert_allclose(blocks, whole, rtol=1e-6, atol=0)  # float32 data
