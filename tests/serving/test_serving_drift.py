"""The service's drift check scores every variable at once: same numbers as one at a time,
and binning requests in batches gives the same running state as binning each at once."""

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geoclim.data.drift import bin_fractions, psi
from geoclim.serving import drift as drift_module
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
    monitor = InputDrift(meta, window=200, min_running=50)
    rng = np.random.default_rng(3)
    counts = {n: np.zeros(len(r["fractions"])) for n, r in monitor.reference.items()}
    for shift in (0.0, 0.0, 25.0, 25.0, 25.0, -3.0):  # running state decays across calls
        inputs = _inputs(meta, rng, shift, task.input_steps, task.horizon)
        warnings = monitor.check(inputs)
        seen = monitor.running_psi()
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
    monitor = InputDrift(meta)
    rng = np.random.default_rng(0)
    first = next(iter(monitor.reference))
    inputs = _inputs(meta, rng, 0.0, task.input_steps, task.horizon)
    inputs.dynamic[..., task.dynamic_variables.index(first)] = np.nan
    monitor.check(inputs)
    assert set(monitor.running_psi()) == set(monitor.reference) - {first}  # never seen
    monitor.check(_inputs(meta, rng, 0.0, task.input_steps, task.horizon))
    before, psi_before = monitor._running[0].copy(), monitor.running_psi()[first]
    assert before.any()  # the call counted its values
    monitor.check(inputs)
    np.testing.assert_array_equal(monitor._running[0], before)  # not decayed, not counted
    assert monitor.running_psi()[first] == psi_before


def test_a_model_without_reference_statistics_checks_nothing(point):
    meta = point.metadata
    bare = dataclasses.replace(meta, reference={})
    monitor = InputDrift(bare)
    inputs = _inputs(meta, np.random.default_rng(1), 99.0, meta.task.input_steps, meta.task.horizon)
    assert monitor.check(inputs) == []


def _range_warned(warnings):
    return {w.split("'")[1] for w in warnings if "outside the training range" in w}


@given(
    batch=st.integers(1, 6),
    calls=st.lists(
        st.tuples(
            st.sampled_from([0.0, 0.0, 25.0, -3.0]),  # shift: in range or drifting
            st.integers(1, 4),  # locations
            st.booleans(),  # read the running PSI (a scrape) after this call
        ),
        min_size=1,
        max_size=14,
    ),
    seed=st.integers(0, 2**16),
    one_pass=st.booleans(),  # False: every request large enough to be binned at once
)
@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_batched_binning_matches_binning_each_request(point, batch, calls, seed, one_pass):
    meta, task = point.metadata, point.task
    each = InputDrift(meta, window=200, min_running=50)
    batched = InputDrift(meta, window=200, min_running=50, batch=batch)
    rng = np.random.default_rng(seed)
    old = drift_module._BIN_AT_ONCE
    drift_module._BIN_AT_ONCE = old if one_pass else 0
    try:
        for shift, n, scrape in calls:
            inputs = _inputs(meta, rng, shift, task.input_steps, task.horizon, n=n)
            exact, mine = each.check(inputs), batched.check(inputs)
            assert _range_warned(mine) == _range_warned(exact)  # the request's own values
            if not batched._pending:  # just binned: the running-PSI warnings agree too
                assert mine == exact
            if scrape:  # a read bins what is pending: the gauge is the per-request one
                assert batched.running_psi() == each.running_psi()
                np.testing.assert_array_equal(batched._running, each._running, strict=True)
        assert batched.running_psi() == each.running_psi()
        np.testing.assert_array_equal(batched._running, each._running, strict=True)
    finally:
        drift_module._BIN_AT_ONCE = old


def test_the_service_bins_in_batches_but_every_request_when_blocking(point, station_export):
    from prometheus_client import CollectorRegistry, generate_latest

    from geoclim.serving.app import ServedModel

    for block, batch in ((False, drift_module.SERVICE_BATCH), (True, 1)):
        f = Forecaster.from_onnx(station_export.path, name="pt")
        registry = CollectorRegistry()
        drift_module.install([ServedModel("pt", f, "x")], registry, block=block)
        assert f.drift is not None and f.drift.batch == batch
        assert "geoclim_input_drift_psi{" not in generate_latest(registry).decode()
        task = f.task
        inputs = _inputs(f.metadata, np.random.default_rng(0), 0.0, task.input_steps, task.horizon)
        f.drift.check(inputs)
        text = generate_latest(registry).decode()  # the scrape bins the pending request
        lines = [x for x in text.splitlines() if x.startswith("geoclim_input_drift_psi{")]
        psi_now = f.drift.running_psi()
        assert len(lines) == len(psi_now) > 0
        for name, value in psi_now.items():
            line = next(x for x in lines if f'variable="{name}"' in x and 'model="pt"' in x)
            assert float(line.split()[-1]) == pytest.approx(value, rel=1e-12)
