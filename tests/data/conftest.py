"""Fixtures of the lazy-backend tests: one chunked zarr grid, read-only."""

import pytest

from tests.conftest import make_grid

LAZY_TASK = dict(
    targets=["pm25"],
    past_inputs=["t2m"],
    future_inputs=["hour_sin", "t2m"],
    static_inputs=["elevation"],
    input_steps=6,
    horizon=4,
)
"""The task the lazy-backend tests window :func:`store` with."""


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    """A 400-step 4 x 5 grid as zarr, chunked every 24 steps (shared: tests only read it)."""
    path = tmp_path_factory.mktemp("lazy") / "grid.zarr"
    make_grid(nt=400, nlat=4, nlon=5, seed=3).chunk({"time": 24}).to_zarr(path)
    return path
