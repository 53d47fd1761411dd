"""What the request path prepares once (per model, axis, task or init time) answers as the
per-request computation it replaced: domain cells, wrapped longitudes, static lookups, units,
validity windows, drift counts and bins, sample positions, normalisation and time fields."""

import dataclasses
import datetime as dt

import numpy as np
import pytest

from geoclim.data import variables
from geoclim.data.drift import bin_fractions
from geoclim.data.normalize import Normalizer, VariableStats
from geoclim.serving import inputs as serving_inputs
from geoclim.serving import points, records, validity
from geoclim.serving.adapter import Forecaster
from geoclim.serving.drift import InputDrift
from geoclim.serving.inputs import Inputs

AXES = {
    "regular": np.arange(30.0, 40.0, 0.25),
    "float32": np.arange(-10.0, 10.0, 0.75, dtype=np.float32),
    "irregular": np.array([-3.0, -1.0, 0.5, 0.75, 4.0, 9.0]),
    "huge": np.array([1e16, 1e16 + 2.0, 1e16 + 4.0]),  # ties of rounded distances
    "one": np.array([5.0]),
    "decreasing": np.array([3.0, 2.0, 1.0, 0.0]),  # not increasing: numpy's path
}


def _reference_cell(axis, x):
    idx = np.argmin(np.abs(x[..., None] - axis), axis=-1)
    half = np.abs(np.diff(axis)).min() / 2 if axis.size > 1 else 0.5
    return idx, np.abs(axis[idx] - x) <= half + 1e-9


@pytest.mark.parametrize("name", list(AXES))
def test_cells_of_a_few_points_are_numpys_argmin_ties_included(name):
    axis = AXES[name]
    a = axis.astype(np.float64)
    rng = np.random.default_rng(0)
    centres, mids = a, (a[:-1] + a[1:]) / 2  # exact centres and ties between two cells
    span = a.max() - a.min() + 1.0
    others = rng.uniform(a.min() - span, a.max() + span, 40)
    for x in (centres, mids, others, a[:1] - 1e-9, a[-1:] + 0.6, np.array([1e16 + 1.0])):
        for part in np.array_split(x, max(1, x.size // 5)):  # sizes of 16 or fewer
            for shape in ((part.size,), (part.size, 1)):
                p = part.reshape(shape)
                got, want = serving_inputs._cell(axis, p), _reference_cell(axis, p)
                for g, w in zip(got, want, strict=True):
                    np.testing.assert_array_equal(g, w, strict=True)


def test_wrapped_longitudes_of_few_and_many_points_agree():
    reference = np.arange(-120.0, -80.0, 0.5)
    centre = (reference.min() + reference.max()) / 2
    lon = np.array([centre + 180.0, centre - 180.0, 359.75, -179.9, 0.0, 200.125, -100.3, 180.0])
    few = serving_inputs._wrap_longitude(lon, reference)
    many = serving_inputs._wrap_longitude(np.tile(lon, 5), reference)  # numpy's path
    np.testing.assert_array_equal(few, many[: lon.size], strict=True)


@pytest.fixture(scope="module")
def grid(grid_export):
    return Forecaster.from_onnx(grid_export.path, threads=1)


@pytest.fixture(scope="module")
def station(station_export):
    return Forecaster.from_onnx(station_export.path, threads=1)


def _request(f, n, rng, gaps=0.0):
    task, domain = f.task, f.metadata.domain
    at = rng.integers(0, domain.latitude.size, n)
    if domain.layout == "grid":
        lat, lon = domain.latitude[at], domain.longitude[rng.integers(0, domain.longitude.size, n)]
    else:
        lat, lon = domain.latitude[at], domain.longitude[at]
    past = {v: rng.uniform(1.0, 300.0, (n, task.input_steps)) for v in task.past_variables}
    future = {
        v: rng.uniform(-5.0, 5.0, (n, task.horizon))
        for v in task.future_variables
        if v not in past and v in task.dynamic_variables
    }
    for series in (*past.values(), *future.values()):
        series[rng.random(series.shape) < gaps] = np.nan
    return past, future, lat, lon


@pytest.mark.parametrize("layout", ["grid", "station"])
def test_static_fields_from_the_domain_are_the_field_by_field_lookup(layout, grid, station):
    f = grid if layout == "grid" else station
    meta, rng = f.metadata, np.random.default_rng(1)
    past, future, lat, lon = _request(f, 5, rng)
    inputs = serving_inputs.from_arrays(
        meta, "2024-03-01T12:00", past, latitude=lat, longitude=lon, future=future or None
    )
    rows, cols = inputs.domain_rows, inputs.domain_cols
    want = np.empty_like(inputs.static)
    for c, name in enumerate(f.task.static_inputs):
        field = meta.domain.static[name]
        want[..., c] = field[rows, cols] if field.ndim == 2 else field[rows]
    np.testing.assert_array_equal(inputs.static, want, strict=True)
    assert inputs.static.flags.writeable and inputs.static.flags.c_contiguous
    sent = {f.task.static_inputs[0]: np.arange(5.0)}  # one sent: the field-by-field path
    given = serving_inputs.from_arrays(
        meta,
        "2024-03-01T12:00",
        past,
        latitude=lat,
        longitude=lon,
        future=future or None,
        static=sent,
    )
    np.testing.assert_array_equal(given.static[:, 0, 0], np.arange(5.0, dtype=np.float32))
    np.testing.assert_array_equal(given.static[..., 1:], want[..., 1:], strict=True)


def test_series_in_other_units_are_converted_and_the_rest_cast_as_before(grid):
    meta, task, rng = grid.metadata, grid.task, np.random.default_rng(2)
    past, future, lat, lon = _request(grid, 4, rng, gaps=0.2)
    past["t2m"] = rng.uniform(-20.0, 35.0, past["t2m"].shape)  # degrees Celsius
    inputs = serving_inputs.from_arrays(
        meta,
        np.datetime64("2024-03-01T12:00"),
        past,
        latitude=lat,
        longitude=lon,
        future=future or None,
        units={"t2m": "degC"},
    )
    for c, name in enumerate(task.dynamic_variables):
        if name not in past:
            continue
        want = (
            variables.convert(past[name], name, "degC").astype(np.float32)
            if name == "t2m"
            else np.asarray(past[name], dtype=np.float32)
        )
        got = inputs.dynamic[: task.input_steps, :, 0, c].T
        np.testing.assert_array_equal(got, want, strict=True)
    assert np.nanmin(inputs.dynamic[..., task.dynamic_variables.index("t2m")]) > 200.0


def test_fixed_axes_in_integers_are_numpys_datetime_arithmetic():
    for step in (np.timedelta64(1, "h"), np.timedelta64(90, "m"), np.timedelta64(1, "D")):
        step = step.astype("timedelta64[ns]")
        init = np.datetime64("2024-02-28T23:00", "ns")
        got = serving_inputs._fixed_axis(init, step, 24, 48)
        np.testing.assert_array_equal(got, init + (np.arange(48) - 23) * step, strict=True)
    nat = serving_inputs._fixed_axis(np.datetime64("NaT", "ns"), step, 2, 3)
    assert np.isnat(nat).all()


@pytest.mark.parametrize("known_past", [False, True])
@pytest.mark.parametrize("max_missing", [0.0, 0.1, 0.5, 1.0])
def test_validity_of_one_init_is_that_of_the_running_counts(grid, known_past, max_missing):
    task, rng = grid.task, np.random.default_rng(3)
    t, c = task.input_steps + task.horizon, len(task.dynamic_variables)
    for gaps in (0.05, 0.3):
        dynamic = rng.uniform(0, 1, (t, 6, 1, c)).astype(np.float32)
        dynamic[rng.random(dynamic.shape) < gaps] = np.nan
        dynamic[rng.random(dynamic.shape) < 0.02] = np.inf
        static = rng.uniform(0, 1, (6, 1, len(task.static_inputs))).astype(np.float32)
        static[rng.random(static.shape) < gaps] = np.nan
        one = Inputs(
            "station",
            np.arange(t).astype("datetime64[h]").astype("datetime64[ns]"),
            dynamic,
            static,
            np.array([task.input_steps - 1]),
            np.zeros(6),
            np.zeros(6),
            tuple(f"s{i}" for i in range(6)),
        )
        twice = dataclasses.replace(one, inits=np.repeat(one.inits, 2))  # the generic path
        try:
            got = validity.input_validity(task, one, max_missing, known_past=known_past)
        except Exception as err:  # noqa: BLE001 - the same error either way
            with pytest.raises(type(err), match="no forecast can be made"):
                validity.input_validity(task, twice, max_missing, known_past=known_past)
            continue
        want = validity.input_validity(task, twice, max_missing, known_past=known_past)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g[0], w[0], strict=True)


def test_drift_counts_with_kept_rows_and_searched_bins_are_per_variable(station):
    meta, task = station.metadata, station.task
    monitor = InputDrift(meta)
    rng = np.random.default_rng(4)
    c = len(task.dynamic_variables)
    for extra in (0, 3, 0, 5):  # requests of different lengths: different row masks
        t = task.input_steps + extra + task.horizon
        dynamic = rng.uniform(-50, 400, (t, 3, 1, c)).astype(np.float32)
        dynamic[rng.random(dynamic.shape) < 0.2] = np.nan
        dynamic[rng.random(dynamic.shape) < 0.05] = -np.inf
        inputs = Inputs(
            "station",
            np.arange(t).astype("datetime64[h]").astype("datetime64[ns]"),
            dynamic,
            np.zeros((3, 1, 0), np.float32),
            np.array([task.input_steps + extra - 1]),
            np.zeros(3),
            np.zeros(3),
        )
        v, use, n, outside = monitor._request_values(inputs)
        counts = monitor._bin_counts(v, use, np.zeros(len(v), np.intp), 1)[0]
        for i, name in enumerate(monitor._names):
            ref = monitor.reference[name]
            values = monitor.values(inputs, name)
            assert n[i] == values.size
            assert outside[i] == np.count_nonzero((values < ref["min"]) | (values > ref["max"]))
            k = len(ref["edges"])
            want = bin_fractions(values, np.asarray(ref["edges"])) * max(values.size, 1)
            np.testing.assert_array_equal(counts[i, : k + 1], np.rint(want))
            assert not counts[i, k + 1 :].any()


@pytest.mark.parametrize("inits", [[17], [30, 17, 25]])
@pytest.mark.parametrize("shape", [(1, 1), (5, 1), (3, 4)])
def test_samples_are_the_meshgrid_of_inits_and_places(grid, shape, inits):
    h, w = shape
    inputs = Inputs(
        "grid" if w > 1 else "station",
        np.arange(40).astype("datetime64[h]"),
        np.zeros((40, h, w, 1), np.float32),
        np.zeros((h, w, 0), np.float32),
        np.array(inits),
        np.zeros(h),
        np.zeros(w),
    )
    got = grid._samples(inputs)
    want = np.meshgrid(inputs.inits, np.arange(h), np.arange(w), indexing="ij")
    for g, m in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, m.ravel().astype(np.int64), strict=True)


@pytest.mark.parametrize("log", [(), ("a",), ("b", "c"), ("a", "c"), ("a", "b", "c", "d")])
def test_channel_encoding_in_place_or_gathered_is_the_per_variable_encoding(log):
    names = ("a", "b", "c", "d")
    stats = {n: VariableStats(1.5 + i, 0.5 + i, n in log) for i, n in enumerate(names)}
    norm = Normalizer(stats)
    values = np.random.default_rng(5).uniform(-2.0, 50.0, (7, 3, 4))
    values[0, 0] = [np.nan, -np.inf, -1.0, np.inf]
    got = norm.channels(names).encode(values)
    for c, name in enumerate(names):
        np.testing.assert_array_equal(got[..., c], norm.encode(values[..., c], name), strict=True)


def test_known_channels_by_slices_or_by_index_arrays_agree(grid):
    plan = grid.point_plan
    assert isinstance(plan.dyn_cut[0], slice)  # consecutive here: sliced
    rng = np.random.default_rng(6)
    past, future, lat, lon = _request(grid, 3, rng)
    inputs = serving_inputs.from_arrays(
        grid.metadata, "2024-03-01T12:00", past, latitude=lat, longitude=lon, future=future or None
    )
    window = rng.uniform(size=(3, grid.task.horizon, len(grid.task.dynamic_variables)))
    window = window.astype(np.float32)
    # the same channels gathered by (non-consecutive looking) index arrays
    gathered = dataclasses.replace(plan, dyn_from=plan.dyn_from.copy())
    object.__setattr__(gathered, "dyn_cut", (plan.dyn_at, plan.dyn_from))
    object.__setattr__(gathered, "cal_cut", (plan.cal_at, plan.cal_from))
    t0 = int(inputs.inits[0]) + 1
    np.testing.assert_array_equal(
        points._known(plan, inputs, window, t0), points._known(gathered, inputs, window, t0)
    )
    assert points._cut(np.array([2, 3, 4])) == slice(2, 5)
    assert isinstance(points._cut(np.array([0, 2])), np.ndarray)
    assert isinstance(points._cut(np.array([1, 0])), np.ndarray)


def test_init_times_kept_per_instant_tell_ambiguous_local_times_apart():
    zoneinfo = pytest.importorskip("zoneinfo")
    try:
        ny = zoneinfo.ZoneInfo("America/New_York")
    except zoneinfo.ZoneInfoNotFoundError:
        pytest.skip("no time zone data")
    first = dt.datetime(2024, 11, 3, 1, 30, tzinfo=ny)  # 01:30 happens twice that night
    second = first.replace(fold=1)
    assert first == second  # same zone: compared as local times
    same = dt.datetime(2024, 11, 3, 5, 30, tzinfo=dt.UTC)
    for value in (first, second, same, first, second, dt.datetime(2024, 11, 3, 6, 30)):
        assert records.utc(value) == records._utc(value)
    assert records.utc(second) - records.utc(first) == np.timedelta64(1, "h")
    with pytest.raises(Exception, match="between 1900-01-01 and 2200-01-01"):
        records.utc(dt.datetime(2300, 1, 1))


def test_time_fields_kept_per_stamp_unit_and_value():
    init = np.datetime64("2024-03-01T12:00", "ns")
    for unit in ("ns", "s", "h"):
        valid = (init + np.arange(1, 7) * np.timedelta64(1, "h")).astype(f"datetime64[{unit}]")
        for t0 in (init, init.astype("datetime64[s]"), init - np.timedelta64(1, "h")):
            for _ in range(2):  # computed, then kept
                got = records.time_fields(init, t0, valid)
                assert got == records._time_fields(init, t0, valid)
        got[1].append(0.0)  # a caller changing its answer changes nothing kept
        assert len(records.time_fields(init, t0, valid)[1]) == 6
