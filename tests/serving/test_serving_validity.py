"""Which served forecasts have real inputs, and how many inputs were filled (exact counts)."""

import numpy as np
import pandas as pd
import pytest

from geoclim.data.task import ForecastTask
from geoclim.errors import DataError
from geoclim.serving.inputs import Inputs
from geoclim.serving.validity import input_validity

TASK = ForecastTask(
    targets=("no2",),
    past_inputs=("t2m",),
    future_inputs=("hour_sin", "blh"),  # blh: a forecast the model gets for the leads only
    input_steps=3,
    horizon=2,
)


def _inputs(blh_history: bool) -> Inputs:
    # one station, one init at position 2: inputs at steps 0..2, leads at 3..4
    names = TASK.dynamic_variables
    dynamic = np.ones((5, 1, 1, len(names)), np.float32)
    dynamic[:3, ..., names.index("blh")] = 1.0 if blh_history else np.nan
    dynamic[0, ..., names.index("t2m")] = np.nan  # one missing past value
    return Inputs(
        layout="station",
        times=pd.date_range("2024-01-01", periods=5, freq="h").values,
        dynamic=dynamic,
        static=np.zeros((1, 1, 0), np.float32),
        inits=np.array([2]),
        latitude=np.array([45.0]),
        longitude=np.array([-73.0]),
        station=("s0",),
    )


def test_known_only_inputs_count_over_the_input_steps_when_the_encoder_reads_them():
    assert "blh" in TASK.future_variables and "blh" not in TASK.past_variables
    valid, filled = input_validity(TASK, _inputs(blh_history=False), max_missing=1.0)
    assert valid.tolist() == [[[True]]] and filled.tolist() == [[[1]]]  # the t2m gap only
    valid, filled = input_validity(
        TASK, _inputs(blh_history=False), max_missing=1.0, known_past=True
    )
    assert filled.tolist() == [[[4]]]  # + blh at the 3 input steps
    with pytest.raises(DataError, match="blh"):  # nothing of blh before the init
        input_validity(TASK, _inputs(blh_history=False), max_missing=0.5, known_past=True)
    _, filled = input_validity(TASK, _inputs(blh_history=True), max_missing=0.5, known_past=True)
    assert filled.tolist() == [[[1]]]
