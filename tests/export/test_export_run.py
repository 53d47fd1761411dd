import json

import numpy as np
import pytest
import torch
import xarray as xr

from geoclim.data.fingerprint import data_fingerprint
from geoclim.export.onnx import read_metadata
from geoclim.export.registry import ModelRegistry
from geoclim.serving.adapter import Forecaster


def test_export_report_records_a_passed_parity_check_and_the_int8_study(exported_run):
    report = exported_run["report"]
    assert report["inputs"] == ["past", "known_future", "static"]
    assert report["parity"]["passed"] and report["parity"]["max_abs"] < 1e-4
    assert report["parity"]["n_samples"] > 100  # the whole test split
    quant = report["quantization"]
    assert set(quant["fp32"]) == {"rmse", "mae", "skill_vs_persistence"}
    assert abs(quant["int8"]["rmse"]["no2"] - quant["fp32"]["rmse"]["no2"]) < 0.5
    assert set(quant["speedup"]) == {"1", "256"}
    assert (exported_run["model"].parent / "model.int8.onnx").is_file()


def test_embedded_metadata_describes_the_run(exported_run, loaded_run):
    meta = read_metadata(exported_run["model"])
    dm = loaded_run.datamodule
    assert meta.task == dm.task
    assert meta.normalizer == dm.normalizer
    assert meta.window == dm.spec
    assert meta.time_step_seconds == 3600
    assert meta.variables["no2"]["units"] == "ppb"
    assert meta.scores == json.loads((exported_run["run_dir"] / "metrics.json").read_text())
    assert meta.config["model"]["net"]["_target_"].endswith("LSTMNet")
    assert meta.domain.layout == "grid"
    np.testing.assert_allclose(meta.domain.latitude, dm.ds.latitude.values)
    np.testing.assert_allclose(
        meta.domain.static["elevation"], dm.ds.elevation.transpose("latitude", "longitude").values
    )
    names = (*dm.task.dynamic_variables, *dm.task.static_inputs)
    assert meta.data_fingerprint == data_fingerprint(dm.ds, names, dm.splits.train)
    assert {"geoclim_version", "git_commit", "checkpoint", "run_dir"} <= set(meta.provenance)
    assert meta.parity["passed"]


def test_adapter_reproduces_the_runs_test_predictions(exported_run, loaded_run):
    saved = xr.open_dataset(exported_run["run_dir"] / "predictions.nc").load()
    forecaster = Forecaster.from_onnx(exported_run["model"])
    out = forecaster.predict(
        loaded_run.datamodule.ds, init_times=saved.init_time.values, max_missing=1.0
    )
    xr.testing.assert_allclose(out.no2, saved.no2, rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(out.valid_time.values, saved.valid_time.values)


def test_adapter_matches_the_lightning_module_batch_by_batch(exported_run, loaded_run):
    forecaster = Forecaster.from_onnx(exported_run["model"])
    module, dm = loaded_run.module, loaded_run.datamodule
    batch = next(iter(dm.test_dataloader()))
    with torch.no_grad():
        want = module(batch)["prediction"].numpy()
    got = forecaster.run({k: v.numpy() for k, v in batch.items()})
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_export_is_registered_in_production(exported_run):
    mv = ModelRegistry(exported_run["registry"]).resolve("no2_lstm")
    assert (mv.version, mv.stage) == (1, "production")
    assert mv.data_fingerprint.startswith("sha256:")
    assert mv.scores["test/rmse/no2"] > 0


def test_int8_model_serves_close_to_float(exported_run, loaded_run):
    fp32 = Forecaster.from_onnx(exported_run["model"])
    int8 = Forecaster.from_onnx(exported_run["model"].parent / "model.int8.onnx")
    assert int8.metadata.io.quantized and not fp32.metadata.io.quantized
    ds = loaded_run.datamodule.ds
    a = fp32.predict(ds, max_missing=1.0).no2
    b = int8.predict(ds, max_missing=1.0).no2
    assert float(np.abs(a - b).max()) < 0.1 * float(np.abs(a).max())


def test_cli_refuses_a_directory_that_is_not_a_run(tmp_path, capsys):
    from geoclim.cli.export import main

    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path)])
    assert exc.value.code == 2
    assert "is not a run directory" in capsys.readouterr().err
