from geoclim.data.datamodule import GeoDataModule
from geoclim.data.fingerprint import data_fingerprint
from tests.conftest import make_grid


def _dm(ds):
    return GeoDataModule(ds, dict(targets=["pm25"], past_inputs=["t2m"], input_steps=4, horizon=2))


def test_fingerprint_sees_the_train_block_only():
    ds = make_grid(nt=120, nan_fraction=0.0)
    dm = _dm(ds)
    a = dm.fingerprint
    later = ds.copy(deep=True)
    later["pm25"][dm.splits.train[1] :] += 1.0
    assert _dm(later).fingerprint == a
    earlier = ds.copy(deep=True)
    earlier["pm25"][0, 0, 0] += 1.0
    assert _dm(earlier).fingerprint != a
    assert a.startswith("sha256:")
    assert a == data_fingerprint(dm.ds, ["pm25", "t2m"], dm.splits.train)
