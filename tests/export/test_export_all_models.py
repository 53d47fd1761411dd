"""Every exportable model of conf/model: train -> geoclim-export -> adapter == predictions.nc."""

import json

import pytest
import xarray as xr

from geoclim.cli.export import main
from geoclim.serving.adapter import Forecaster
from geoclim.training import rundir
from tests.registry import models, params


@pytest.mark.slow
@pytest.mark.parametrize("entry", params(models(exportable=True)))
def test_every_model_exports_and_serves_its_test_predictions(tmp_path, entry, make_run):
    run_dir = make_run(tmp_path / entry.name, [f"model={entry.name}", *entry.fast_overrides()])
    assert main([str(run_dir)]) == 0
    report = json.loads((run_dir / "export" / "export.json").read_text())
    assert report["parity"]["passed"]
    saved = xr.open_dataset(run_dir / "predictions.nc").load()
    ds = rundir.load_datamodule(run_dir).ds
    forecaster = Forecaster.from_onnx(report["model"])
    out = forecaster.predict(ds, init_times=saved.init_time.values, max_missing=1.0)
    for name in saved.data_vars:
        xr.testing.assert_allclose(out[name], saved[name], rtol=1e-4, atol=1e-3)
