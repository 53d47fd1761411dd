import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geoclim.data import folds
from geoclim.data.datamodule import GeoDataModule
from geoclim.errors import ConfigError, DataError
from tests.conftest import make_grid, make_stations


@settings(max_examples=200, deadline=None)
@given(
    n_time=st.integers(60, 3000),
    k=st.integers(2, 6),
    gap=st.integers(1, 20),
    val_fraction=st.floats(0.05, 0.5),
)
def test_blocked_time_folds_never_share_a_test_sample_and_keep_gaps(n_time, k, gap, val_fraction):
    layouts = []
    for fold in range(k):
        cv = folds.CVConfig("blocked_time", k, fold, val_fraction)
        try:
            layouts.append(folds.blocked_time_splits(n_time, cv, gap))
        except DataError as err:
            assert "one window needs" in str(err)
            return
    tested = np.zeros(n_time, int)
    for s in layouts:
        assert 0 <= s.train[0] and s.test[1] <= n_time
        assert s.train[1] + gap <= s.val[0] and s.val[1] + gap <= s.test[0]  # gaps respected
        assert all(stop - start >= gap for start, stop in (s.train, s.val, s.test))
        tested[s.test[0] : s.test[1]] += 1
    assert tested.max() == 1  # no time step is tested in two folds


def test_parse_cv_names_bad_values():
    assert folds.parse_cv({"name": "none"}) is None
    assert folds.parse_cv({"name": "blocked_time", "k": 3, "fold": 2}).fold == 2
    with pytest.raises(ConfigError, match="valid are"):
        folds.parse_cv({"name": "random"})
    with pytest.raises(ConfigError, match="fold=3"):
        folds.parse_cv({"name": "spatial_blocks", "k": 3, "fold": 3})
    with pytest.raises(ConfigError, match="unknown cv key"):
        folds.parse_cv({"name": "spatial_blocks", "folds": 3})


def test_spatial_blocks_partition_locations_in_longitude_order():
    ds = make_grid(nt=10, nlat=2, nlon=6)
    blocks = folds.spatial_blocks(ds, 3).reshape(2, 6)
    np.testing.assert_array_equal(blocks[0], [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(blocks[1], blocks[0])
    with pytest.raises(DataError, match="at least 30 locations"):
        folds.spatial_blocks(ds, 30)


def _dm(ds, cv):
    task = dict(targets=["pm25"], past_inputs=["t2m"], input_steps=4, horizon=2)
    dm = GeoDataModule(ds, task, window={"patch": 1}, cv=cv)
    dm.setup()
    return dm


def test_datamodule_folds_hold_out_time_blocks_and_regions():
    ds = make_grid(nt=200, nlat=2, nlon=4, seed=3)
    a = _dm(ds, {"name": "blocked_time", "k": 3, "fold": 0})
    b = _dm(ds, {"name": "blocked_time", "k": 3, "fold": 1})
    assert a.splits.test[1] <= b.splits.test[0]
    assert set(a.index["test"].time) & set(b.index["test"].time) == set()
    sp = _dm(ds, {"name": "spatial_blocks", "k": 2, "fold": 1})
    cells = {s: set(zip(*sp.index[s].decode()[1:], strict=True)) for s in sp.index}
    assert cells["test"] and cells["train"] and not cells["test"] & cells["train"]
    assert all(x >= 2 for _, x in cells["test"])  # the eastern half
    stations = make_stations(nt=200, n=6, variables=("pm25", "t2m"))
    st_dm = _dm(stations, {"name": "spatial_blocks", "k": 3, "fold": 0})
    tested = set(st_dm.index["test"].decode()[1])
    assert len(tested) == 2 and not tested & set(st_dm.index["train"].decode()[1])
    with pytest.raises(ConfigError, match="point sampling"):
        GeoDataModule(
            ds,
            dict(targets=["pm25"], past_inputs=["t2m"], input_steps=4, horizon=2),
            window={"patch": 2},
            cv={"name": "spatial_blocks", "k": 2, "fold": 0},
        ).setup()
