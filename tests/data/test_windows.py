import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geoclim.data.windows import WindowArrays, WindowSpec, build_index, gather, patch_origins
from geoclim.errors import ConfigError, DataError


def _arrays(rng, nt, h, w, c_dyn=3, n_past=2, n_targets=1, c_static=2, nan=0.1):
    dyn = rng.normal(size=(nt, h, w, c_dyn)).astype(np.float32)
    dyn[rng.random(dyn.shape) < nan] = np.nan
    cal = rng.normal(size=(nt, 2)).astype(np.float32)
    static = rng.normal(size=(h, w, c_static)).astype(np.float32)
    return WindowArrays(
        dyn,
        cal,
        static,
        n_past,
        n_targets,
        known_sources=(("calendar", 1), ("dynamic", 2), ("calendar", 0)),
    )


@st.composite
def cases(draw):
    nt = draw(st.integers(10, 60))
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    tin, lead = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    patch = draw(st.sampled_from([1, 2, None]))
    if patch == 2 and (h < 2 or w < 2):
        patch = 1
    stride = draw(st.integers(1, 3))
    start = draw(st.integers(0, nt // 3))
    stop = draw(st.integers(start + tin + lead, nt + 5))
    return nt, h, w, WindowSpec(tin, lead, stride=stride, patch=patch), (start, stop)


@settings(max_examples=80, deadline=None)
@given(cases(), st.integers(0, 2**16))
def test_samples_stay_inside_the_split_and_equal_naive_slicing(case, seed):
    nt, h, w, spec, split = case
    rng = np.random.default_rng(seed)
    arr = _arrays(rng, nt, h, w)
    try:
        index = build_index(arr.target_valid(), (h, w), nt, spec, split)
    except DataError:
        assert min(split[1], nt) - split[0] < spec.input_steps + spec.lead_steps
        return
    t, y, x = index.decode()
    assert (t - spec.input_steps + 1 >= split[0]).all() and (
        t + spec.lead_steps < min(split[1], nt)
    ).all()
    assert ((t - (split[0] + spec.input_steps - 1)) % spec.stride == 0).all()
    if len(index) == 0:
        return
    rows = rng.choice(len(index), size=min(5, len(index)), replace=False)
    b = gather(arr, spec, t[rows], y[rows], x[rows])
    ph, pw = spec.patch_shape((h, w))
    for i, r in enumerate(rows):
        ti, yi, xi = t[r], y[r], x[r]
        cells = (slice(yi, yi + ph), slice(xi, xi + pw))
        naive_past = arr.dynamic[ti - spec.input_steps + 1 : ti + 1, cells[0], cells[1], :2]
        np.testing.assert_array_equal(b["past"][i], np.nan_to_num(naive_past.transpose(0, 3, 1, 2)))
        fut = arr.dynamic[ti + 1 : ti + spec.lead_steps + 1, cells[0], cells[1]]
        target = fut[..., :1].transpose(0, 3, 1, 2)
        np.testing.assert_array_equal(b["target_mask"][i], np.isfinite(target))
        np.testing.assert_array_equal(b["target"][i], np.nan_to_num(target))
        cal = arr.calendar[ti + 1 : ti + spec.lead_steps + 1]
        np.testing.assert_array_equal(
            b["known_future"][i, :, 0],
            np.broadcast_to(cal[:, 1, None, None], (spec.lead_steps, ph, pw)),
        )
        np.testing.assert_array_equal(b["known_future"][i, :, 1], np.nan_to_num(fut[..., 2]))
        np.testing.assert_array_equal(
            b["known_future"][i, :, 2],
            np.broadcast_to(cal[:, 0, None, None], (spec.lead_steps, ph, pw)),
        )
        np.testing.assert_array_equal(b["static"][i], arr.static[cells].transpose(2, 0, 1))
        # every kept sample has at least one valid target in its window
        assert b["target_mask"][i].any()


def test_index_keeps_exactly_windows_with_enough_valid_targets():
    valid = np.ones((10, 1, 1), bool)
    valid[5:8] = False
    spec = WindowSpec(input_steps=2, lead_steps=3)
    idx = build_index(valid, (1, 1), 10, spec, (0, 10))
    np.testing.assert_array_equal(idx.time, [1, 2, 3, 5, 6])  # init 4 -> targets 5,6,7 all missing
    idx = build_index(valid, (1, 1), 10, spec, (0, 10), min_target_fraction=0.6)
    np.testing.assert_array_equal(idx.time, [1, 2, 6])


def test_index_is_small_and_decodes():
    idx = build_index(None, (4, 5), 100, WindowSpec(3, 2), (0, 100))
    assert idx.flat.dtype == np.int32 and len(idx) == 96 * 20
    t, y, x = idx.decode(np.array([0, 21]))
    assert list(zip(t, y, x, strict=True)) == [(2, 0, 0), (3, 0, 1)]


def test_patch_origins_cover_the_edge():
    np.testing.assert_array_equal(patch_origins(7, 3, 3), [0, 3, 4])
    np.testing.assert_array_equal(patch_origins(6, 3, 3), [0, 3])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(input_steps=0, lead_steps=1), "window.input_steps must be >= 1"),
        (dict(input_steps=1, lead_steps=1, stride=0), "window.stride must be >= 1"),
        (dict(input_steps=1, lead_steps=1, patch=0), "window.patch must be >= 1 or null"),
        (dict(input_steps=1, lead_steps=1, patch_stride=0), "patch_stride must be >= 1"),
    ],
)
def test_bad_spec(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        WindowSpec(**kwargs)


def test_patch_larger_than_grid_and_short_split():
    with pytest.raises(ConfigError, match="larger than the grid 3 x 4"):
        WindowSpec(2, 2, patch=5).patch_shape((3, 4))
    with pytest.raises(DataError, match="no window fits in time positions \\[0, 3\\)"):
        build_index(None, (1, 1), 3, WindowSpec(2, 2), (0, 3))


@pytest.mark.parametrize("nan", [0.0, 0.2], ids=["all-finite", "with-missing"])
def test_gather_layout_exclusions_and_kept_missing_values(nan):
    rng = np.random.default_rng(1)
    arr = _arrays(rng, 30, 3, 4, nan=nan)
    arr.exclude = rng.random((30, 3, 4, 1)) < 0.3
    spec = WindowSpec(4, 3, patch=2)
    t, y, x = np.array([5, 12, 20]), np.array([0, 1, 1]), np.array([2, 0, 1])
    b = gather(arr, spec, t, y, x)
    kept = gather(arr, spec, t, y, x, fill_missing=False)
    for i in range(3):
        cells = (slice(y[i], y[i] + 2), slice(x[i], x[i] + 2))
        fut = arr.dynamic[t[i] + 1 : t[i] + 4, cells[0], cells[1], :1].transpose(0, 3, 1, 2)
        excl = arr.exclude[t[i] + 1 : t[i] + 4, cells[0], cells[1]].transpose(0, 3, 1, 2)
        want_mask = np.isfinite(fut) & ~excl
        np.testing.assert_array_equal(b["target_mask"][i], want_mask)
        np.testing.assert_array_equal(b["target"][i], np.where(want_mask, fut, 0.0))
        past = arr.dynamic[t[i] - 3 : t[i] + 1, cells[0], cells[1], :2].transpose(0, 3, 1, 2)
        np.testing.assert_array_equal(kept["past"][i], past)  # NaN kept for tree models
    assert not np.isnan(b["past"]).any() and not np.isnan(b["known_future"]).any()
    for key in ("past", "known_future", "static", "target", "target_mask"):
        assert b[key].dtype == np.float32 and b[key].flags.c_contiguous, key
    assert b["past"].shape == (3, 4, 2, 2, 2) and b["known_future"].shape == (3, 3, 3, 2, 2)


def test_gather_refuses_windows_outside_the_time_axis():
    arr = _arrays(np.random.default_rng(0), 20, 2, 2)
    spec = WindowSpec(4, 3)
    one = np.array([0])
    with pytest.raises(DataError, match="init positions 2..2 reach outside the 20 time steps"):
        gather(arr, spec, np.array([2]), one, one)  # needs 3 steps before its init
    with pytest.raises(DataError, match="3 after"):
        gather(arr, spec, np.array([17]), one, one)
    b = gather(arr, spec, np.array([3, 16]), np.array([0, 1]), np.array([1, 0]))  # both edges
    np.testing.assert_array_equal(b["time_idx"], [3, 16])


@pytest.mark.parametrize("n_past", [3, 2], ids=["all-dynamic-past", "some-dynamic-past"])
def test_point_gather_equals_slicing_and_is_contiguous(n_past):
    rng = np.random.default_rng(4)
    arr = _arrays(rng, 40, 3, 5, c_dyn=3, n_past=n_past, nan=0.0)
    spec = WindowSpec(5, 4)
    t, y, x = np.array([4, 30, 12, 35]), np.array([2, 0, 1, 2]), np.array([4, 0, 3, 1])
    b = gather(arr, spec, t, y, x)
    for i in range(t.size):
        past = arr.dynamic[t[i] - 4 : t[i] + 1, y[i], x[i], :n_past]
        np.testing.assert_array_equal(b["past"][i, :, :, 0, 0], past)
        known = np.stack(
            [
                arr.calendar[t[i] + 1 : t[i] + 5, 1],
                arr.dynamic[t[i] + 1 : t[i] + 5, y[i], x[i], 2],
                arr.calendar[t[i] + 1 : t[i] + 5, 0],
            ],
            -1,
        )
        np.testing.assert_array_equal(b["known_future"][i, :, :, 0, 0], known)
        np.testing.assert_array_equal(b["static"][i, :, 0, 0], arr.static[y[i], x[i]])
        np.testing.assert_array_equal(
            b["target"][i, :, 0, 0, 0], arr.dynamic[t[i] + 1 : t[i] + 5, y[i], x[i], 0]
        )
    for key, value in b.items():
        assert value.flags.c_contiguous, key
    assert b["past"].shape == (4, 5, n_past, 1, 1) and b["static"].shape == (4, 2, 1, 1)


def test_missing_static_values_are_filled_even_when_the_series_are_complete():
    arr = _arrays(np.random.default_rng(2), 20, 2, 2, nan=0.0)
    arr.static[1, 0, 1] = np.nan
    b = gather(arr, WindowSpec(2, 2), np.array([5, 6]), np.array([1, 0]), np.array([0, 0]))
    assert b["static"][0, 1, 0, 0] == 0.0 and np.isfinite(b["static"]).all()
    kept = gather(
        arr, WindowSpec(2, 2), np.array([5]), np.array([1]), np.array([0]), fill_missing=False
    )
    assert np.isnan(kept["static"][0, 1, 0, 0])


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 4),
    st.integers(1, 9),
    st.sampled_from([1, 2]),
    st.floats(0, 1),
    st.integers(0, 2**16),
)
def test_index_keeps_what_naive_counting_keeps_for_dense_and_sparse_inits(
    lead, stride, patch, fraction, seed
):
    rng = np.random.default_rng(seed)
    valid = rng.random((150, 3, 4)) < 0.6
    spec = WindowSpec(2, lead, stride=stride, patch=patch)
    index = build_index(valid, (3, 4), 150, spec, (0, 150), min_target_fraction=fraction)
    need = max(1, int(np.ceil(fraction * lead * patch * patch)))
    ys = np.arange(3) if patch == 1 else patch_origins(3, 2, 2)
    xs = np.arange(4) if patch == 1 else patch_origins(4, 2, 2)
    want = [
        (t * 3 + y) * 4 + x
        for t in range(1, 150 - lead, stride)
        for y in ys
        for x in xs
        if valid[t + 1 : t + lead + 1, y : y + patch, x : x + patch].sum() >= need
    ]
    np.testing.assert_array_equal(index.flat, want)
