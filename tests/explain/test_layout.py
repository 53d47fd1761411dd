import numpy as np
import xarray as xr

from geoclim.explain.layout import InputLayout, attribution_dataset, importance

LAYOUT = InputLayout(("no2", "u10"), ("hour_sin", "u10"), ("elevation",), 3, 2)


def test_cube_puts_past_steps_at_positive_lags_and_leads_at_negative_lags():
    past = np.arange(6, dtype=np.float32).reshape(1, 3, 2)  # step i, channel c -> 2 i + c
    known = 100 + np.arange(4, dtype=np.float32).reshape(1, 2, 2)  # lead k, channel c
    static = np.array([[7.0]], np.float32)
    cube = LAYOUT.to_cube(past, known, static)[0]  # (V, lag) with lags -2 .. 2
    assert LAYOUT.variables == ("no2", "u10", "hour_sin", "elevation")
    np.testing.assert_array_equal(LAYOUT.lags, [-2, -1, 0, 1, 2])
    # no2: lag 0 = last step (4), lag 2 = first step (0); no known-future no2
    np.testing.assert_array_equal(cube[0], [np.nan, np.nan, 4, 2, 0])
    # u10: past channel 1 at lags >= 0 and known channel 1 at lags -1 (lead 1), -2 (lead 2)
    np.testing.assert_array_equal(cube[1], [103, 101, 5, 3, 1])
    np.testing.assert_array_equal(cube[2], [102, 100, np.nan, np.nan, np.nan])
    np.testing.assert_array_equal(cube[3], [np.nan, np.nan, 7, np.nan, np.nan])
    assert LAYOUT.kinds() == ["past", "past+future", "calendar", "static"]


def test_to_fields_inverts_to_cube_with_space_dims():
    rng = np.random.default_rng(0)
    fields = {
        "past": rng.normal(size=(2, 3, 2, 4, 5)),
        "known_future": rng.normal(size=(2, 2, 2, 4, 5)),
        "static": rng.normal(size=(2, 1, 4, 5)),
    }
    cube = LAYOUT.to_cube(*fields.values(), space_ndim=2)
    assert cube.shape == (2, 4, 5, 4, 5)
    back = LAYOUT.to_fields(cube)
    for name, value in fields.items():
        np.testing.assert_allclose(back[name], value, rtol=1e-6)


def test_attribution_dataset_coords_and_importance():
    cube = np.ones((3, 2, 4, 5), np.float32)
    cube[:, :, 0, :2] = np.nan  # no2 has no future lags
    lead = np.array([1, 2]) * np.timedelta64(1, "h")
    ds = attribution_dataset(
        cube, LAYOUT, lead, sample_coords={"init_time": np.arange(3) * np.timedelta64(1, "D")}
    )
    assert ds["attribution"].dims == ("sample", "lead_time", "input_variable", "lag")
    assert list(ds["input_kind"].values) == LAYOUT.kinds()
    assert ds["lag"].attrs["units"] == "steps"
    imp = importance(ds)
    assert imp.dims == ("lead_time", "input_variable")
    np.testing.assert_array_equal(imp.sel(lead_time=lead[0]).values, [3, 5, 5, 5])
    xr.testing.assert_equal(importance(ds, by="lag"), abs(ds["attribution"]).mean("sample"))
