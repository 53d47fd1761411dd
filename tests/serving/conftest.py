"""Fixtures: untrained demo exports (the real export path), built once per session."""

import pytest

from geoclim.data.task import ForecastTask

TASK = ForecastTask(
    targets=("no2",),
    past_inputs=("o3", "t2m", "u10"),
    future_inputs=("hour_sin", "hour_cos", "u10"),
    static_inputs=("elevation", "emissions"),
    input_steps=12,
    horizon=6,
)
POINT_TASK = ForecastTask(
    targets=("no2",),
    past_inputs=("t2m",),
    future_inputs=("hour_sin", "hour_cos"),
    static_inputs=("elevation",),
    input_steps=12,
    horizon=6,
    quantiles=(0.1, 0.5, 0.9),
)


@pytest.fixture(scope="session")
def grid_export(tmp_path_factory):
    from tests.support.demo_export import demo_export

    return demo_export(
        tmp_path_factory.mktemp("grid") / "lstm.onnx",
        model="lstm",
        task=TASK,
        grid=(4, 3),
        hidden_size=16,
    )


@pytest.fixture(scope="session")
def station_export(tmp_path_factory):
    from tests.support.demo_export import demo_export

    return demo_export(
        tmp_path_factory.mktemp("station") / "lstm_q.onnx",
        model="lstm",
        task=POINT_TASK,
        layout="station",
        grid=(5, 1),
        hidden_size=8,
    )


@pytest.fixture(scope="session")
def cnn_export(tmp_path_factory):
    from tests.support.demo_export import demo_export

    return demo_export(
        tmp_path_factory.mktemp("cnn") / "cnn.onnx", model="cnn", task=TASK, grid=(6, 5)
    )
