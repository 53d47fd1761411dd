"""``known_past``: the known inputs at the input steps (the TFT's encoder reads them)."""

import dataclasses

import numpy as np
import pytest

from geoclim.data.windows import WindowArrays, WindowSpec, gather


def _arrays(h=1, w=1):
    t = 10
    # dynamic channels: target, a past input, a future-only variable (value = 100 c + step)
    dyn = np.arange(t, dtype=np.float32)[:, None, None, None] + 100 * np.arange(3)
    dyn = np.broadcast_to(dyn, (t, h, w, 3)) + 1000 * np.arange(h * w).reshape(1, h, w, 1)
    calendar = np.stack([np.arange(t) * 0.5, -np.arange(t)], 1).astype(np.float32)  # (T, 2)
    return WindowArrays(
        dynamic=np.ascontiguousarray(dyn, np.float32),
        calendar=calendar,
        static=np.zeros((h, w, 0), np.float32),
        n_past=2,
        n_targets=1,
        known_sources=(("calendar", 1), ("dynamic", 2)),
    )


@pytest.mark.parametrize("patch", [1, 2], ids=["point", "patch"])
def test_known_past_holds_the_known_channels_at_the_input_steps(patch):
    arrays = _arrays(2, 2)
    spec = WindowSpec(input_steps=3, lead_steps=2, patch=patch)
    t, y, x = np.array([2, 6]), np.array([0, 0]), np.array([0, 0])
    batch = gather(arrays, spec, t, y, x)
    known_past, known_future = batch["known_past"], batch["known_future"]
    assert known_past.shape == (2, 3, 2, patch, patch)
    assert known_future.shape == (2, 2, 2, patch, patch)
    steps = t[:, None] + np.arange(-2, 1)  # (B, T_in): t - 2 .. t
    np.testing.assert_array_equal(known_past[:, :, 0, 0, 0], -steps)  # calendar column 1
    np.testing.assert_array_equal(known_past[:, :, 1, 0, 0], 200 + steps)  # dynamic channel 2
    if patch == 2:  # each cell its own dynamic values, the calendar everywhere
        np.testing.assert_array_equal(known_past[:, :, 1, 1, 1], 3200 + steps)
        np.testing.assert_array_equal(known_past[:, :, 0, 1, 1], -steps)
    leads = t[:, None] + np.arange(1, 3)
    np.testing.assert_array_equal(known_future[:, :, 1, 0, 0], 200 + leads)


def test_known_past_of_a_calendar_only_task_is_the_calendar():
    arrays = _arrays()
    arrays = dataclasses.replace(arrays, known_sources=(("calendar", 0),))
    zero = np.zeros(1, np.int64)
    batch = gather(arrays, WindowSpec(input_steps=4, lead_steps=1), np.array([5]), zero, zero)
    np.testing.assert_array_equal(batch["known_past"][0, :, 0, 0, 0], np.arange(2, 6) * 0.5)
    assert batch["known_past"].dtype == np.float32
