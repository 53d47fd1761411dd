import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from geoclim.data import drift
from geoclim.data.synthetic import make_dataset, make_station_dataset
from geoclim.errors import ConfigError, SchemaError
from geoclim.evaluation import plots


def _stations(values: dict[str, np.ndarray]) -> xr.Dataset:
    n_t, n_s = next(iter(values.values())).shape
    return xr.Dataset(
        {k: (("time", "station"), v.astype(np.float32)) for k, v in values.items()},
        coords={
            "time": pd.date_range("2024-01-01", periods=n_t, freq="h"),
            "station": [f"s{i}" for i in range(n_s)],
            "latitude": ("station", np.linspace(40, 41, n_s)),
            "longitude": ("station", np.linspace(-100, -99, n_s)),
        },
    )


def test_psi_of_hand_made_fractions():
    expected = np.array([0.5, 0.5])
    actual = np.array([0.25, 0.75])
    want = (0.25 - 0.5) * np.log(0.25 / 0.5) + (0.75 - 0.5) * np.log(0.75 / 0.5)
    assert drift.psi(expected, actual) == pytest.approx(want)
    assert drift.psi(expected, expected) == 0.0


def test_bin_fractions_are_right_closed_and_skip_nan():
    edges = np.array([1.0, 2.0])
    fr = drift.bin_fractions(np.array([0.5, 1.0, 1.5, 2.0, 3.0, np.nan]), edges)
    np.testing.assert_allclose(fr, [0.4, 0.4, 0.2])


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=30, max_size=200))
def test_a_sample_has_no_shift_against_itself(values):
    a = np.asarray(values)
    row = drift._pair(a, a, (-np.inf, np.inf), drift.Thresholds())
    got = dict(zip(drift.METRICS, row, strict=True))
    assert got["psi"] == pytest.approx(0.0, abs=1e-12)
    assert got["ks_statistic"] == 0.0
    assert got["wasserstein"] == pytest.approx(0.0, abs=1e-9)
    assert got["out_of_range"] == 0.0


def test_compare_exact_missing_range_and_bounds():
    rng = np.random.default_rng(0)
    ref = rng.uniform(0, 10, (100, 2))
    new = ref.copy()
    new[:20, 0] = np.nan  # station 0: 20 % missing
    new[:5, 1] = -1.0  # station 1: 5 % below the reference min and below 0 (no2 >= 0)
    report = drift.compare(_stations({"no2": ref}), _stations({"no2": new}))
    r = report.sel(variable="no2")
    np.testing.assert_allclose(r["missing_new"].values, [0.2, 0.0])
    np.testing.assert_allclose(r["missing_change"].values, [0.2, 0.0])
    np.testing.assert_allclose(r["out_of_range"].values, [0.0, 0.05])
    np.testing.assert_allclose(r["out_of_bounds"].values, [0.0, 0.05])
    assert r["drift_missing"].values.tolist() == [True, False]
    assert r["drift_range"].values.tolist() == [False, True]
    assert float(r["missing_new_pooled"]) == pytest.approx(0.1)
    assert r["count_new"].values.tolist() == [80, 100]


def test_compare_flags_a_shifted_distribution_only():
    rng = np.random.default_rng(1)
    ref = rng.normal(20, 5, (500, 3))
    same = rng.normal(20, 5, (500, 3))
    report = drift.compare(
        _stations({"o3": ref, "t2m": ref + 270}),
        _stations({"o3": same, "t2m": same + 280}),  # +10 K
    )
    assert report["drift_pooled"].sel(variable="o3").item() is False
    assert report["drift_psi_pooled"].sel(variable="t2m").item() is True
    assert report["drift_ks"].sel(variable="t2m").values.all()
    w = float(report["wasserstein_pooled"].sel(variable="t2m"))
    assert w == pytest.approx(10, abs=0.7)


def test_compare_grid_report_has_cell_dims_and_plot(tmp_path):
    ref = make_dataset(("no2", "t2m"), nlat=3, nlon=4, days=3, static=())
    new = ref.copy()
    new["t2m"] = new["t2m"] + 5
    report = drift.compare(ref, new)
    assert report["psi"].dims == ("variable", "latitude", "longitude")
    assert not report["drift_pooled"].sel(variable="no2").item()
    assert report["drift"].sel(variable="t2m").values.all()
    png = plots.plot_drift(report, tmp_path / "drift.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_too_few_values_give_no_distribution_statistics():
    ref = np.arange(10.0).reshape(10, 1)
    report = drift.compare(_stations({"no2": ref}), _stations({"no2": ref}))
    assert np.isnan(report["psi"].values).all()
    assert not report["drift"].values.any()


def test_compare_refuses_layout_mismatch_and_missing_variables():
    st_ds = make_station_dataset(3, ("no2",), days=2)
    grid = make_dataset(("no2",), nlat=2, nlon=2, days=2, static=())
    with pytest.raises(SchemaError, match="station dataset but new is a grid"):
        drift.compare(st_ds, grid)
    both = st_ds.assign(o3=st_ds["no2"])
    with pytest.raises(SchemaError, match=r"new dataset lacks time-varying variable\(s\) \['o3'\]"):
        drift.compare(both, st_ds, variables=["o3"])
    with pytest.raises(ConfigError, match="bins must be >= 2"):
        drift.Thresholds(bins=1)


def test_reference_summary_round_trip_matches_compare():
    rng = np.random.default_rng(2)
    ref = rng.gamma(2, 3, (400, 2))
    new = rng.gamma(2, 4, (400, 2))
    summary = drift.reference_summary(_stations({"no2": ref}), ["no2", "absent"])
    assert list(summary) == ["no2"]
    s = summary["no2"]
    assert s["min"] == pytest.approx(ref.min(), rel=1e-6) and s["missing_rate"] == 0.0
    report = drift.compare(_stations({"no2": ref}), _stations({"no2": new}))
    assert drift.psi_against(s, new) == pytest.approx(float(report["psi_pooled"].item()), rel=1e-4)
    assert np.isnan(drift.psi_against(s, np.full(3, np.nan)))
