"""geoclim's verification metrics against independent implementations (xskillscore, scoringrules).

``geoclim.evaluation.metrics`` writes its scores out (two-stage weighted means, masks,
bootstrap replicates) and the other tests pin them on hand-made cases; here the same scores
are recomputed by the libraries the field uses for verification, on random data with gaps
and latitude weights. Both libraries compile numba kernels at import (3-5 s per process),
so these checks run with ``make test-all``.
"""

import numpy as np
import pytest
import xarray as xr

from geoclim.evaluation import metrics as m

pytestmark = pytest.mark.slow

SPACE = ["latitude", "longitude"]
ALL = ["init_time", *SPACE]


def _case(seed=0, gaps=False):
    rng = np.random.default_rng(seed)
    shape = (12, 2, 5, 4)  # init_time, lead_time, latitude, longitude
    coords = {
        "init_time": np.arange(12),
        "lead_time": [1, 2],
        "latitude": np.linspace(-60, 60, 5),
        "longitude": np.arange(4.0),
    }
    dims = ("init_time", "lead_time", "latitude", "longitude")
    o = rng.gamma(2.0, 5.0, shape)
    f = o + rng.normal(1.0, 3.0, shape)
    if gaps:
        o[rng.random(shape) < 0.15] = np.nan
    truth = xr.Dataset({"no2": (dims, o)}, coords=coords)
    forecast = xr.Dataset({"no2": (dims, f)}, coords=coords)
    return forecast, truth


def _weights(ds):
    return np.cos(np.deg2rad(ds["latitude"])).rename("w")


@pytest.mark.parametrize("gaps", [False, True], ids=["complete", "gaps"])
def test_pooled_scores_equal_xskillscore_over_all_dims(gaps):
    xs = pytest.importorskip("xskillscore")
    f, o = _case(gaps=gaps)
    a, b = f["no2"], o["no2"]
    for ours, theirs in (
        (m.rmse, xs.rmse),
        (m.mae, xs.mae),
        (m.bias, xs.me),
        (m.correlation, xs.pearson_r),
    ):
        got = ours(f, o, reduce_dims=ALL, pooled=True)["no2"]
        want = theirs(a, b, dim=ALL, skipna=True)
        np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=ours.__name__)


def test_latitude_weighted_pooled_scores_equal_xskillscore():
    xs = pytest.importorskip("xskillscore")
    f, o = _case(seed=1)
    a, b = f["no2"], o["no2"]
    w = _weights(f).broadcast_like(a.isel(lead_time=0, drop=True))
    for ours, theirs in ((m.rmse, xs.rmse), (m.mae, xs.mae), (m.correlation, xs.pearson_r)):
        got = ours(f, o, reduce_dims=ALL, weights=_weights(f), pooled=True)["no2"]
        want = theirs(a, b, dim=ALL, weights=w)
        np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=ours.__name__)


def test_two_stage_rmse_is_the_root_of_the_mean_per_init_xskillscore_mse():
    xs = pytest.importorskip("xskillscore")
    f, o = _case(seed=2)
    w = _weights(f).broadcast_like(f["no2"].isel(lead_time=0, init_time=0, drop=True))
    per_init = xs.mse(f["no2"], o["no2"], dim=SPACE, weights=w)  # (init_time, lead_time)
    got = m.rmse(f, o, reduce_dims=ALL, weights=_weights(f))["no2"]
    np.testing.assert_allclose(got, np.sqrt(per_init.mean("init_time")), rtol=1e-12)


def test_the_closed_form_gaussian_crps_equals_scoringrules():
    sr = pytest.importorskip("scoringrules")
    from tests.evaluation.test_probabilistic import gaussian_crps

    rng = np.random.default_rng(3)
    mu, sigma = rng.normal(0, 2, 1000), rng.uniform(0.5, 2.0, 1000)
    y = rng.normal(mu, sigma)
    want = sr.crps_normal(y, mu, sigma)
    np.testing.assert_allclose(gaussian_crps(y, mu, sigma), want, rtol=1e-10)


def _quantile_case(levels, seed=4, n=400):
    """Random quantile forecasts (sorted per point) at ``levels``, 10 % of observations missing."""
    rng = np.random.default_rng(seed)
    y = rng.gamma(2.0, 5.0, n)
    q = np.sort(y[:, None] + rng.normal(0.5, 4.0, (n, len(levels))), axis=1)
    y[rng.random(n) < 0.1] = np.nan
    dims = ("init_time", "lead_time", "station")
    fq = xr.Dataset(
        {"x": (dims + ("quantile",), q.reshape(n, 1, 1, -1))}, coords={"quantile": list(levels)}
    )
    return fq, xr.Dataset({"x": (dims, y.reshape(n, 1, 1))}), q, y


@pytest.mark.parametrize("levels", [(0.1, 0.5, 0.9), tuple(np.arange(1, 20) / 20)])
def test_quantile_score_equals_scoringrules_crps_quantile(levels):
    from geoclim.evaluation import probabilistic as p

    sr = pytest.importorskip("scoringrules")
    fq, truth, q, y = _quantile_case(levels)
    got = p.quantile_score(fq, truth, reduce_dims=["init_time", "station"], pooled=True)
    want = np.nanmean(sr.crps_quantile(y, q, np.asarray(levels), backend="numpy"))
    np.testing.assert_allclose(got["x"].item(), want, rtol=1e-12)


def test_trapezoidal_crps_is_scoringrules_crps_quantile_rescaled_on_even_levels():
    # on the levels k / (Q + 1) every trapezoid weight is 1 / (Q + 1): crps = Q / (Q + 1) x
    # the equally weighted score
    from geoclim.evaluation import probabilistic as p

    sr = pytest.importorskip("scoringrules")
    levels = tuple(np.arange(1, 10) / 10)
    fq, truth, q, y = _quantile_case(levels, seed=5)
    got = p.crps(fq, truth, reduce_dims=["init_time", "station"], pooled=True)["x"].item()
    want = np.nanmean(sr.crps_quantile(y, q, np.asarray(levels), backend="numpy")) * 9 / 10
    np.testing.assert_allclose(got, want, rtol=1e-12)
