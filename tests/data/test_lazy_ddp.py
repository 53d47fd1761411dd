import json

import pytest

from geoclim.data.synthetic import make_dataset
from tests.support.cli import geoclim_train


@pytest.mark.slow
def test_ddp_on_the_lazy_backend_matches_single_process(tmp_path):
    store = tmp_path / "tiny.zarr"
    make_dataset(nlat=6, nlon=5, days=14, seed=0).chunk({"time": 48}).to_zarr(store)
    common = [
        "data=file",
        f"data.source.path={store}",
        "data.source.chunks={}",
        "data.lazy.block_steps=48",
        "task=synthetic_no2",
        "trainer.max_epochs=2",
        "trainer.enable_progress_bar=false",
        "logger=csv",
    ]
    single = geoclim_train(
        *common, f"hydra.run.dir={tmp_path / 'single'}", cwd=tmp_path, subprocess=True
    )
    assert single.returncode == 0, single.stderr[-3000:]
    assert "lazy backend" in single.stdout + single.stderr
    ddp = geoclim_train(
        *common,
        "trainer=ddp_cpu",
        f"hydra.run.dir={tmp_path / 'ddp'}",
        cwd=tmp_path,
        subprocess=True,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "Starting with 2 processes" in ddp.stdout + ddp.stderr
    m1, m2 = (
        json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("single", "ddp")
    )
    assert m2["train/steps"] == m1["train/steps"]
    # every global batch is split over the 2 ranks (disjoint shares of the same block-grouped
    # order) and gradients averaged: the trajectory is the single-process one up to float
    # summation order
    assert m2["val/loss"] == pytest.approx(m1["val/loss"], rel=1e-3)
    assert m2["test/rmse/no2"] == pytest.approx(m1["test/rmse/no2"], rel=1e-3)
