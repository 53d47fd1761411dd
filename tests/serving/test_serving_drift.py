"""The service's drift check scores every variable at once: same numbers as one at a time."""

import dataclasses

import numpy as np
import pytest

from geoclim.data.drift import bin_fractions, psi
from geoclim.serving.adapter import Forecaster
from geoclim.serving.drift import InputDrift
from geoclim.serving.inputs import Inputs


def _one_at_a_time(monitor, counts, inputs, name):
    """The check as it was written per variable (geoclim.data.drift's functions)."""
    ref = monitor.reference[name]
    v = monitor.values(inputs, name)
    if not v.size:
        return None, counts, None
    edges, expected = np.asarray(ref["edges"]), np.asarray(ref["fractions"])
    keep = max(0.0, 1.0 - v.size / monitor.window)
    counts = counts * keep + bin_fractions(v, edges) * v.size
    running = psi(expected, counts / counts.sum())
    return running, counts, float(np.mean((v < ref["min"]) | (v > ref["max"])))


def _inputs(meta, rng, shift, t_in, horizon, n=3):
    c = len(meta.task.dynamic_variables)
    dynamic = np.empty((t_in + horizon, n, 1, c), np.float32)
    for i, name in enumerate(meta.task.dynamic_variables):
        edges = meta.reference[name]["edges"] if name in meta.reference else [0.0, 1.0]
        dynamic[..., i] = rng.uniform(edges[0], edges[-1], dynamic.shape[:3]) + shift
    dynamic[rng.random(dynamic.shape) < 0.2] = np.nan  # gaps everywhere
    dynamic[:, 0, 0, 0] = np.nan  # one location without the first variable at all
    times = np.datetime64("2024-01-01T00", "ns") + np.arange(t_in + horizon) * np.timedelta64(
        1, "h"
    )
    return Inputs(
        "station",
        times,
        dynamic,
        np.zeros((n, 1, 0), np.float32),
        np.array([t_in - 1]),
        np.zeros(n),
        np.zeros(n),
    )


@pytest.fixture(scope="module")
def point(station_export):
    return Forecaster.from_onnx(station_export.path, name="pt")


def test_all_variables_at_once_match_one_at_a_time(point):
    meta, task = point.metadata, point.task
    seen = {}
    monitor = InputDrift(meta, gauge=seen.__setitem__, window=200, min_running=50)
    rng = np.random.default_rng(3)
    counts = {n: np.zeros(len(r["fractions"])) for n, r in monitor.reference.items()}
    for shift in (0.0, 0.0, 25.0, 25.0, 25.0, -3.0):  # running state decays across calls
        inputs = _inputs(meta, rng, shift, task.input_steps, task.horizon)
        warnings = monitor.check(inputs)
        for name in monitor.reference:
            running, counts[name], outside = _one_at_a_time(monitor, counts[name], inputs, name)
            assert seen[name] == pytest.approx(running, rel=1e-9, abs=1e-12)
            total = counts[name].sum()
            psi_warned = total >= monitor.min_running and running > monitor.thresholds.psi
            range_warned = outside > monitor.thresholds.out_of_range
            mine = [w for w in warnings if w.startswith(f"input drift in {name!r}")]
            assert len(mine) == (psi_warned or range_warned)
            assert ("values served" in "".join(mine)) == psi_warned
            assert ("outside the training range" in "".join(mine)) == range_warned
    assert any("values served" in w for w in warnings)  # the shifted calls did drift


def test_a_variable_without_values_leaves_its_state_alone(point):
    meta, task = point.metadata, point.task
    seen = {}
    monitor = InputDrift(meta, gauge=seen.__setitem__)
    rng = np.random.default_rng(0)
    monitor.check(_inputs(meta, rng, 0.0, task.input_steps, task.horizon))
    first = next(iter(monitor.reference))
    before = monitor._running[0].copy()
    assert before.any()  # the first call counted its values
    seen.clear()
    inputs = _inputs(meta, rng, 0.0, task.input_steps, task.horizon)
    inputs.dynamic[..., task.dynamic_variables.index(first)] = np.nan
    monitor.check(inputs)
    np.testing.assert_array_equal(monitor._running[0], before)  # not decayed, not counted
    assert first not in seen
    assert set(seen) == set(monitor.reference) - {first}


def test_a_model_without_reference_statistics_checks_nothing(point):
    meta = point.metadata
    bare = dataclasses.replace(meta, reference={})
    monitor = InputDrift(bare)
    inputs = _inputs(meta, np.random.default_rng(1), 99.0, meta.task.input_steps, meta.task.horizon)
    assert monitor.check(inputs) == []
