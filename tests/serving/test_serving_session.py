"""The adapter's onnxruntime session: optimisation level, chunked runs, a served TFT."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

from geoclim.data.assemble import to_forecast_dataset
from geoclim.data.windows import WindowSpec
from geoclim.errors import ConfigError
from geoclim.serving.adapter import Forecaster
from geoclim.serving.session import RUN_CHUNK, optimization_level

LEVEL = ort.GraphOptimizationLevel


def test_optimization_level_by_choice_and_window():
    point, patch, whole = WindowSpec(4, 2), WindowSpec(4, 2, patch=2), WindowSpec(4, 2, patch=None)
    assert optimization_level("auto", point) == LEVEL.ORT_ENABLE_BASIC
    assert optimization_level("auto", patch) == LEVEL.ORT_ENABLE_ALL
    assert optimization_level("auto", whole) == LEVEL.ORT_ENABLE_ALL
    assert optimization_level("extended", point) == LEVEL.ORT_ENABLE_EXTENDED
    assert optimization_level("all") == LEVEL.ORT_ENABLE_ALL
    with pytest.raises(ConfigError, match="'fast'.*auto, basic, extended, all"):
        optimization_level("fast")


def test_sessions_get_the_level_of_their_model(grid_export, cnn_export):
    def level(f):
        return f.session.get_session_options().graph_optimization_level

    assert level(Forecaster.from_onnx(grid_export.path)) == LEVEL.ORT_ENABLE_BASIC
    assert level(Forecaster.from_onnx(cnn_export.path)) == LEVEL.ORT_ENABLE_ALL
    chosen = Forecaster.from_onnx(grid_export.path, optimization="all")
    assert level(chosen) == LEVEL.ORT_ENABLE_ALL
    with pytest.raises(ConfigError, match="optimization"):
        Forecaster.from_onnx(grid_export.path, optimization="O3")


def test_chunked_runs_equal_one_run(grid_export):
    dm = grid_export.datamodule
    batch = {k: v.numpy() for k, v in dm.dataset("test")[np.arange(23)].items()}
    whole = Forecaster.from_onnx(grid_export.path, run_chunk=4096)
    chunked = Forecaster.from_onnx(grid_export.path, run_chunk=5)  # 5 + 5 + 5 + 5 + 3
    assert Forecaster.from_onnx(grid_export.path).run_chunk == RUN_CHUNK
    np.testing.assert_allclose(chunked.run(batch), whole.run(batch), rtol=1e-6, atol=1e-6)
    with pytest.raises(ConfigError, match="run_chunk"):
        Forecaster.from_onnx(grid_export.path, run_chunk=0)


def test_served_tft_reads_known_inputs_at_the_input_steps_like_torch(tft_export):
    f = Forecaster.from_onnx(tft_export.path, run_chunk=16)
    assert "known_past" in f.metadata.io.inputs  # the encoder's known inputs are a graph input
    dm = tft_export.datamodule
    t, y, x = dm.index["test"].decode(slice(0, 40))
    with torch.no_grad():
        want = tft_export.net(dm.dataset("test")[np.arange(40)])["prediction"].numpy()
    expected = to_forecast_dataset(want, t, y, x, dm.ds, dm.task.targets, normalizer=dm.normalizer)
    got = f.predict(dm.ds, init_times=expected.init_time.values, max_missing=1.0)
    mask = np.isfinite(expected.no2)
    np.testing.assert_allclose(
        got.no2.values[mask], expected.no2.values[mask], rtol=1e-4, atol=1e-4
    )
