import json

import numpy as np
import pytest
import xarray as xr

from geoclim.data.normalize import Normalizer
from geoclim.errors import DataError, SchemaError
from tests.conftest import make_grid


def test_stats_use_train_block_only():
    ds = make_grid(nt=50, nan_fraction=0)
    a = Normalizer.fit(ds, ["t2m"], time_range=(0, 30))
    changed = ds.copy(deep=True)
    changed["t2m"][30:] = 1e6
    b = Normalizer.fit(changed, ["t2m"], time_range=(0, 30))
    assert a == b
    train = ds.t2m.values[:30]
    assert a.stats["t2m"].mean == pytest.approx(train.mean(), rel=1e-6)
    assert a.stats["t2m"].std == pytest.approx(train.std(), rel=1e-5)


def test_log_transform_for_skewed_pollutants_and_roundtrip():
    ds = make_grid(nt=40)
    norm = Normalizer.fit(ds, ["pm25", "t2m", "elevation"], time_range=(0, 40))
    assert norm.stats["pm25"].log and not norm.stats["t2m"].log
    z = norm.transform(ds)
    assert abs(float(z.t2m.mean())) < 1e-5
    back = norm.inverse(z)
    xr.testing.assert_allclose(back.pm25, ds.pm25, rtol=1e-5)
    assert back.pm25.attrs == ds.pm25.attrs
    np.testing.assert_array_equal(np.isnan(back.pm25.values), np.isnan(ds.pm25.values))


def test_negative_readings_are_clipped_before_log():
    norm = Normalizer.fit(make_grid(nt=30), ["pm25"])
    assert norm.decode(norm.encode(np.array([-3.0]), "pm25"), "pm25")[0] == pytest.approx(
        0, abs=1e-5
    )


def test_json_roundtrip():
    norm = Normalizer.fit(make_grid(nt=30), ["pm25", "t2m"])
    again = Normalizer.from_json(norm.to_json())
    assert again == norm
    assert set(json.loads(norm.to_json())) == {"pm25", "t2m"}


def test_errors():
    ds = make_grid(nt=30)
    with pytest.raises(SchemaError, match="cannot normalise 'o3': not in dataset"):
        Normalizer.fit(ds, ["o3"])
    empty = ds.assign(pm25=ds.pm25 * np.nan)
    with pytest.raises(DataError, match="no observed value in the train block"):
        Normalizer.fit(empty, ["pm25"])
    norm = Normalizer.fit(ds, ["pm25"])
    with pytest.raises(SchemaError, match="no statistics for 't2m'"):
        norm.encode(np.zeros(2), "t2m")
    with pytest.raises(SchemaError, match="malformed"):
        Normalizer.from_json('{"pm25": {"mean": 1}}')


def test_matches_allows_summation_order_but_not_changed_data():
    from geoclim.data.normalize import Normalizer, VariableStats

    a = Normalizer({"no2": VariableStats(10.0, 2.0, True)})
    assert a.matches(Normalizer({"no2": VariableStats(10.0 + 1e-7, 2.0 * (1 + 1e-7), True)}))
    assert not a.matches(Normalizer({"no2": VariableStats(10.01, 2.0, True)}))
    assert not a.matches(Normalizer({"no2": VariableStats(10.0, 2.0, False)}))
    assert not a.matches(Normalizer({"o3": VariableStats(10.0, 2.0, True)}))


def test_channels_encode_like_each_variable_alone():
    ds = make_grid(nt=40)
    norm = Normalizer.fit(ds, ["pm25", "t2m"], log=("pm25",))
    values = np.stack([ds.pm25.values, ds.t2m.values], axis=-1)  # (T, H, W, 2), NaN kept
    values[0, 0, 0, 0] = -3.0  # clipped to 0 before the log, as one by one
    got = norm.channels(["pm25", "t2m"]).encode(values)
    want = np.stack([norm.encode(values[..., 0], "pm25"), norm.encode(values[..., 1], "t2m")], -1)
    np.testing.assert_array_equal(got, want, strict=True)
    with pytest.raises(SchemaError, match="o3"):
        norm.channels(["o3"])
