import numpy as np
import pytest
import xarray as xr

from geoclim.baselines.persistence import PersistenceBaseline
from geoclim.baselines.references import reference_forecasts
from geoclim.baselines.trees import LightGBMBaseline
from geoclim.data.assemble import truth_at_valid_time
from geoclim.data.datamodule import GeoDataModule
from geoclim.errors import DataError
from geoclim.evaluation.score import metrics_summary, observed, score_at_stations, score_run
from tests.conftest import make_grid, make_stations


def _dm(ds, target="pm25", quantiles=()):
    dm = GeoDataModule(
        ds,
        dict(
            targets=[target],
            past_inputs=["t2m"],
            input_steps=6,
            horizon=4,
            quantiles=list(quantiles),
        ),
    )
    dm.setup()
    return dm


@pytest.fixture(scope="module")
def grid_dm():
    return _dm(make_grid(nt=240, seed=11))


def test_perfect_forecast_scores(grid_dm):
    dm = grid_dm
    persistence = PersistenceBaseline().fit(dm).predict(dm, "test")
    perfect = truth_at_valid_time(persistence, observed(dm.ds, ["pm25"]))
    perfect["pm25"].attrs = persistence["pm25"].attrs
    scores = score_run(perfect, dm, references=reference_forecasts(dm, "test"), n_boot=0)["pm25"]
    np.testing.assert_array_equal(scores.sel(metric="rmse").values, 0.0)
    np.testing.assert_array_equal(scores.sel(metric="skill_persistence").values, 1.0)
    np.testing.assert_array_equal(scores.sel(metric="skill_climatology").values, 1.0)
    np.testing.assert_allclose(scores.sel(metric=["corr", "acc"]).values, 1.0)
    assert (scores.sel(metric="n").values > 0).all()


def test_imputed_truth_is_not_scored():
    ds = make_grid(nt=240, seed=12, nan_fraction=0.0)
    rng = np.random.default_rng(0)
    mask = xr.DataArray(rng.random(ds.pm25.shape) < 0.2, dims=ds.pm25.dims)
    ds = ds.assign(pm25_imputed=mask)
    dm = _dm(ds)
    fc = PersistenceBaseline().fit(dm).predict(dm, "test")
    n = score_run(fc, dm, references=reference_forecasts(dm, "test"), n_boot=0)["pm25"].sel(
        metric="n"
    )
    verified = truth_at_valid_time(fc, ds[["pm25"]].where(~mask))["pm25"].notnull()
    expected = (verified & fc["pm25"].notnull()).sum(["init_time", "latitude", "longitude"])
    np.testing.assert_array_equal(n.values, expected.values)
    all_points = (fc["pm25"].notnull()).sum(["init_time", "latitude", "longitude"])
    assert (n.values < all_points.values).all()


def test_summary_names_are_identical_across_models(grid_dm):
    dm = grid_dm
    runs = [
        PersistenceBaseline().fit(dm).predict(dm, "test"),
        LightGBMBaseline(params={"n_estimators": 20}, max_train_samples=500)
        .fit(dm)
        .predict(dm, "test"),
    ]
    summaries = [
        metrics_summary(
            score_run(fc, dm, references=reference_forecasts(dm, "test"), n_boot=10), prefix="test"
        )
        for fc in runs
    ]
    assert summaries[0].keys() == summaries[1].keys()
    keys = summaries[0]
    for name in (
        "test/rmse/pm25",
        "test/mae/pm25",
        "test/skill_persistence/pm25",
        "test/skill_climatology/pm25",
        "test/rmse/pm25/lead_4",
        "test/skill_persistence/pm25/lead_1",
        "test/rmse_ci_lower/pm25",
    ):
        assert name in keys
    per_lead = [keys[f"test/rmse/pm25/lead_{k}"] for k in range(1, 5)]
    assert keys["test/rmse/pm25"] == pytest.approx(np.mean(per_lead))
    assert (
        keys["test/rmse_ci_lower/pm25"] <= keys["test/rmse/pm25"] <= keys["test/rmse_ci_upper/pm25"]
    )


def test_quantile_forecasts_get_probabilistic_scores():
    dm = _dm(make_grid(nt=240, seed=13), quantiles=(0.1, 0.5, 0.9))
    fc = (
        LightGBMBaseline(params={"n_estimators": 20}, max_train_samples=500)
        .fit(dm)
        .predict(dm, "test")
    )
    scores = score_run(fc, dm, references=reference_forecasts(dm, "test"), n_boot=20)["pm25"]
    for metric in ("quantile_score", "crps", "coverage_80", "crps_ci_lower"):
        assert np.isfinite(scores.sel(metric=metric).values).all()
    # trapezoid weights (0.3, 0.4, 0.3) vs equal thirds: the two scores differ
    assert not np.allclose(scores.sel(metric="crps"), scores.sel(metric="quantile_score"))
    assert ((scores.sel(metric="coverage_80") >= 0) & (scores.sel(metric="coverage_80") <= 1)).all()


def test_by_location_keeps_space_and_scores_write_to_netcdf(grid_dm, tmp_path):
    dm = grid_dm
    fc = PersistenceBaseline().fit(dm).predict(dm, "test")
    scores = score_run(fc, dm, references=reference_forecasts(dm, "test"), by_location=True)
    assert set(scores["pm25"].dims) == {"metric", "lead_time", "latitude", "longitude"}
    with pytest.raises(ValueError, match="by_location"):
        metrics_summary(scores)
    score_run(fc, dm, references=reference_forecasts(dm, "test"), n_boot=5).to_netcdf(
        tmp_path / "scores.nc"
    )
    back = xr.open_dataset(tmp_path / "scores.nc")
    assert "rmse_ci_lower_lead_mean" in back["pm25"].attrs


def test_score_run_errors_name_the_problem(grid_dm):
    dm = grid_dm
    fc = PersistenceBaseline().fit(dm).predict(dm, "test")
    with pytest.raises(DataError, match="lacks target"):
        score_run(fc.rename(pm25="o3"), dm, references=reference_forecasts(dm, "test"))
    with pytest.raises(DataError, match="do not overlap the 'val' split"):
        score_run(fc, dm, "val", references=reference_forecasts(dm, "val"))


def test_score_at_stations_of_a_perfect_grid_forecast():
    ds = make_grid(nt=240, seed=14, nan_fraction=0.0)
    dm = _dm(ds)
    fc = PersistenceBaseline().fit(dm).predict(dm, "test")
    perfect = truth_at_valid_time(fc, ds[["pm25"]])
    # stations exactly on cell centres observe the grid values
    cells = [(0, 0), (1, 2), (2, 3)]
    stations = make_stations(nt=240, n=len(cells), variables=("pm25", "t2m"))
    stations = stations.assign_coords(
        latitude=("station", [float(ds.latitude[i]) for i, _ in cells]),
        longitude=("station", [float(ds.longitude[j]) for _, j in cells]),
    )
    values = np.stack([ds.pm25.values[:, i, j] for i, j in cells], axis=1)
    stations["pm25"] = stations["pm25"].copy(data=values)
    for method in ("nearest", "bilinear"):
        scores = score_at_stations(perfect, stations, method=method)["pm25"]
        np.testing.assert_allclose(scores.sel(metric="rmse").values, 0.0, atol=1e-5)
        np.testing.assert_allclose(scores.sel(metric="skill_persistence").values, 1.0)
    per_station = score_at_stations(fc, stations, by_location=True)
    assert per_station["pm25"].sizes["station"] == 3


def test_score_run_with_regions_adds_a_region_dim(grid_dm):
    from geoclim.evaluation.regions import parse_regions

    dm = grid_dm
    refs = reference_forecasts(dm, "test")
    lat = float(dm.ds.latitude.values[0])
    regions = parse_regions({"south": {"lat": [lat - 0.5, lat + 0.5]}})
    scores = score_run(refs["persistence"], dm, references=refs, n_boot=0, regions=regions)
    assert list(scores["region"].values) == ["all", "south"]
    n = scores["pm25"].sel(metric="n")
    assert (n.sel(region="south") < n.sel(region="all")).all()
    keys = metrics_summary(scores)
    assert "test/rmse/pm25" in keys and "test_south/rmse/pm25" in keys
