import numpy as np
import pytest
import xarray as xr
from scipy.stats import norm

from geoclim.errors import DataError
from geoclim.evaluation import probabilistic as p

DIMS = ("init_time", "lead_time", "station")
REDUCE = ["init_time", "station"]


def _ds(values):
    return xr.Dataset({"x": (DIMS, np.asarray(values, dtype=np.float64))})


def _quantiles(o, offsets=(-1.0, 0.0, 1.0), levels=(0.1, 0.5, 0.9)):
    fq = xr.concat([o + d for d in offsets], dim="quantile")
    return fq.assign_coords(quantile=list(levels)).transpose(..., "quantile")


def gaussian_crps(y, mu, sigma):
    """CRPS of ``N(mu, sigma^2)`` at ``y``: ``sigma (z (2 Phi(z) - 1) + 2 phi(z) - 1 / sqrt(pi))``.

    The closed form given by Gneiting & Raftery (2007); ``test_metrics_references`` checks it
    against ``scoringrules.crps_normal``.
    """
    z = (y - mu) / sigma
    return sigma * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / np.sqrt(np.pi))


def _gaussian_case(levels, n=50_000, seed=0):
    rng = np.random.default_rng(seed)
    mu, sigma = rng.normal(0, 2, n), rng.uniform(0.5, 2.0, n)
    y = rng.normal(mu, sigma)
    q = norm.ppf(np.asarray(levels))[None, :] * sigma[:, None] + mu[:, None]  # (n, Q)
    fq = xr.Dataset(
        {"x": (("init_time", "lead_time", "station", "quantile"), q.reshape(n, 1, 1, -1))},
        coords={"quantile": list(levels)},
    )
    exact = float(np.mean(gaussian_crps(y, mu, sigma)))
    return fq, _ds(y.reshape(n, 1, 1)), exact


@pytest.mark.parametrize(
    "levels, ratio, tol",
    [
        (np.arange(1, 20) / 20, 0.996, 0.004),  # 19 levels: within 2 % (-0.4 %)
        (np.arange(1, 10) / 10, 0.985, 0.004),
        ((0.1, 0.5, 0.9), 0.877, 0.004),  # the error stated in the docstring
    ],
    ids=["19-levels", "deciles", "3-levels"],
)
def test_crps_matches_the_closed_form_gaussian_crps(levels, ratio, tol):
    fq, y, exact = _gaussian_case(levels)
    got = p.crps(fq, y, reduce_dims=REDUCE)["x"].item()
    assert got / exact == pytest.approx(ratio, abs=tol)
    if len(levels) == 19:
        assert abs(got / exact - 1) < 0.02
        qs = p.quantile_score(fq, y, reduce_dims=REDUCE)["x"].item()
        assert qs / exact == pytest.approx(1.048, abs=0.004)


def test_quantile_score_and_crps_hand_values():
    o = _ds(np.random.default_rng(6).normal(10, 3, (4, 2, 3)))
    fq = _quantiles(o)
    # rho_0.1(1) = 0.1, rho_0.5(0) = 0, rho_0.9(-1) = 0.1
    np.testing.assert_allclose(p.quantile_score(fq, o, reduce_dims=REDUCE)["x"], 2 * 0.2 / 3)
    # trapezoid weights over nodes 0, 0.1, 0.5, 0.9, 1: (0.5 - 0) / 2, 0.4, (1 - 0.5) / 2
    np.testing.assert_allclose(p.trapezoid_weights([0.1, 0.5, 0.9]), [0.25, 0.4, 0.25])
    np.testing.assert_allclose(p.crps(fq, o, reduce_dims=REDUCE)["x"], 2 * (0.25 * 0.1 * 2))


def test_quantile_metrics_mask_where_any_level_is_missing():
    o = _ds(np.zeros((2, 1, 2)))
    fq = _quantiles(o)
    fq["x"][0, 0, 0, 0] = np.nan  # outer level missing at one point
    fq["x"][1, 0, 0, 0] = 100.0  # a bad lower quantile elsewhere
    # point (0, 0) is dropped from every score; the rest: 3 points
    qs_bad = 2 * (0.9 * 100 + 0.1) / 3
    qs = p.quantile_score(fq, o, reduce_dims=REDUCE, pooled=True)["x"].item()
    assert qs == pytest.approx((2 * 0.2 / 3 * 2 + qs_bad) / 3)
    cov = p.interval_coverage(fq, o, 0.1, 0.9, reduce_dims=REDUCE, pooled=True)["x"].item()
    assert cov == pytest.approx(2 / 3)  # the bad point lies below its lower quantile
    crps = p.crps(fq, o, reduce_dims=REDUCE, pooled=True)
    assert np.isfinite(crps["x"].item())


def test_interval_coverage_refuses_levels_that_are_not_forecast():
    o = _ds(np.zeros((2, 1, 2)))
    fq = _quantiles(o)
    assert p.interval_coverage(fq, o, 0.1, 0.9, reduce_dims=REDUCE)["x"].item() == 1.0
    assert p.interval_coverage(fq + 5, o, 0.1, 0.9, reduce_dims=REDUCE)["x"].item() == 0.0
    with pytest.raises(DataError, match=r"0.25 is not forecast.*\[0.1, 0.5, 0.9\]"):
        p.interval_coverage(fq, o, 0.25, 0.75, reduce_dims=REDUCE)
    with pytest.raises(DataError, match="lower < upper"):
        p.interval_coverage(fq, o, 0.9, 0.1, reduce_dims=REDUCE)
    with pytest.raises(DataError, match="quantile"):
        p.crps(o, o, reduce_dims=REDUCE)
    assert p.central_intervals([0.05, 0.1, 0.5, 0.9, 0.95]) == [(0.05, 0.95), (0.1, 0.9)]
