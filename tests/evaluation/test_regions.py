import numpy as np
import pytest
import xarray as xr

from geoclim.errors import ConfigError
from geoclim.evaluation.regions import Region, parse_regions
from geoclim.evaluation.score import compute_scores, metrics_summary
from tests.conftest import make_grid, make_stations


def test_boxes_masks_and_station_subsets_select_locations():
    ds = make_grid(nt=4, nlat=3, nlon=4)
    lat, lon = ds.latitude.values, ds.longitude.values
    box = Region("b", lat=(lat[1], lat[2]), lon=(lon[0], lon[1])).select(ds)
    assert int(box.sum()) == 4 and bool(box.sel(latitude=lat[0]).any()) is False
    wrap = Region("w", lon=(lon[3] % 360, lon[0] % 360)).select(ds)  # wraps through 0
    assert int(wrap.sum()) == 2 * 3
    ds["land"] = xr.DataArray(np.eye(3, 4), dims=("latitude", "longitude"))
    assert int(Region("m", mask="land").select(ds).sum()) == 3
    st = make_stations(nt=4, n=5)
    ids = list(st.station.values.astype(str))
    assert int(Region("s", stations=tuple(ids[:2])).select(st).sum()) == 2
    with pytest.raises(ConfigError, match="stations \\['nope'\\] are not in the data"):
        Region("s", stations=("nope",)).select(st)
    with pytest.raises(ConfigError, match="mask variable 'sea'"):
        Region("m", mask="sea").select(ds)
    with pytest.raises(ConfigError, match="selects no location"):
        Region("e", lat=(80.0, 89.0)).select(ds)


def test_parse_regions_names_bad_specs():
    (r,) = parse_regions({"east": {"lat": [10, 20], "lon": [0, 30]}})
    assert r.lat == (10.0, 20.0) and r.lon == (0.0, 30.0)
    with pytest.raises(ConfigError, match="regions.x: unknown or missing keys \\['latitude'\\]"):
        parse_regions({"x": {"latitude": [0, 1]}})
    with pytest.raises(ConfigError, match="expected \\[low, high\\]"):
        parse_regions({"x": {"lat": [0, 1, 2]}})
    with pytest.raises(ConfigError, match="whole domain"):
        parse_regions({"all": {"lat": [0, 1]}})


def test_scores_of_a_region_use_only_its_points():
    rng = np.random.default_rng(0)
    dims = ("init_time", "lead_time", "station")
    coords = {"station": list("abcd"), "lead_time": [np.timedelta64(1, "h")]}
    truth = xr.Dataset({"x": (dims, rng.normal(size=(20, 1, 4)))}, coords=coords)
    err = np.zeros((20, 1, 4))
    err[..., :2] = 1.0  # stations a, b off by 1, c, d perfect
    fc = truth + err
    region = Region("ab", stations=("a", "b")).select(truth)
    kw = {"reduce_dims": ["init_time", "station"]}
    whole = compute_scores(fc, truth, **kw)["x"].sel(metric="rmse").item()
    part = compute_scores(fc, truth.where(region), **kw)["x"].sel(metric="rmse").item()
    assert whole == pytest.approx(np.sqrt(0.5)) and part == pytest.approx(1.0)
    scores = xr.concat(
        [compute_scores(fc, truth, **kw), compute_scores(fc, truth.where(region), **kw)],
        dim=xr.DataArray(["all", "ab"], dims="region", name="region"),
    )
    summary = metrics_summary(scores)
    assert summary["test/rmse/x"] == pytest.approx(np.sqrt(0.5))
    assert summary["test_ab/rmse/x"] == pytest.approx(1.0)
